//! Content types: every type an answer of the origin (or a file it serves) carries, defined
//! once. The engine's answers, the stored-file types of `usp_prefer_static`, the DASH
//! `mimeType` attribute, the Live API and the status endpoint all take theirs from here.

use crate::index::TrackKind;

/// HLS playlists (RFC 8216 §4).
pub const M3U8: &str = "application/vnd.apple.mpegurl";
/// The DASH MPD.
pub const MPD: &str = "application/dash+xml";
/// The Smooth Streaming client manifest.
pub const SMOOTH_MANIFEST: &str = "application/vnd.ms-sstr+xml";
/// The HDS manifest.
pub const F4M: &str = "application/f4m+xml";
/// An HDS fragment.
pub const F4F: &str = "video/f4f";
/// MPEG-TS segments.
pub const TS: &str = "video/MP2T";
/// HLS packed-audio segments.
pub const PACKED_AUDIO: &str = "audio/aac";
/// WebVTT segments.
pub const WEBVTT: &str = "text/vtt";
/// Fragmented MP4 of a video track (and progressive MP4 files).
pub const VIDEO_MP4: &str = "video/mp4";
/// Fragmented MP4 of an audio track.
pub const AUDIO_MP4: &str = "audio/mp4";
/// Fragmented MP4 of any other track (text, data).
pub const APPLICATION_MP4: &str = "application/mp4";
/// The Live API's SMIL reports.
pub const SMIL: &str = "application/smil+xml";
/// JSON reports (Live API statistics, the status endpoint).
pub const JSON: &str = "application/json";
/// The Prometheus text exposition format, version 0.0.4.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";
/// Server manifests and other XML files.
pub const XML: &str = "application/xml";
/// Plain text (the clock at `<ch>.isml/time`).
pub const TEXT: &str = "text/plain";
/// Anything else.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The type of a track's segments (fragmented MP4), by the track's kind.
pub fn of_track(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Video => VIDEO_MP4,
        TrackKind::Audio => AUDIO_MP4,
        _ => APPLICATION_MP4,
    }
}

/// The type of a file a presentation's directory holds, by its extension (any case).
pub fn of_extension(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mpd") => MPD,
        Some("m3u8") => M3U8,
        Some("ts") => TS,
        Some("m4s" | "dash" | "mp4" | "ismv" | "cmfv") => VIDEO_MP4,
        Some("isma" | "cmfa" | "m4a") => AUDIO_MP4,
        Some("aac") => PACKED_AUDIO,
        Some("vtt" | "webvtt") => WEBVTT,
        Some("f4m") => F4M,
        Some("xml" | "ism" | "isml") => XML,
        _ => OCTET_STREAM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_typed_by_extension_in_any_case() {
        for (path, want) in [
            ("/s/m.ism/.mpd", MPD),
            ("/s/m.ism/a.M3U8", M3U8),
            ("/s/m.ism/m-video=1-1.ts", TS),
            ("/s/m.ism/dash/m-video=1-0.dash", VIDEO_MP4),
            ("/s/a.cmfa", AUDIO_MP4),
            ("/s/m.ism/m-audio=1-1.aac", PACKED_AUDIO),
            ("/s/m.ism/m-textstream_eng=1-1.vtt", WEBVTT),
            ("/s/m.ism/.f4m", F4M),
            ("/s/m.ism", XML),
            ("/s/m.ism/m-video=1Seg1-Frag1", OCTET_STREAM),
            ("/s/noext", OCTET_STREAM),
        ] {
            assert_eq!(of_extension(path), want, "{path}");
        }
        assert_eq!(of_track(TrackKind::Text), APPLICATION_MP4);
    }
}
