//! Apple HLS (RFC 8216): the master playlist with audio groups, media playlists and fMP4
//! (CMAF) segments with `EXT-X-MAP`. Segment N covers the same time as DASH segment N.

use std::fmt::Write as _;

use super::{frame_rate, segments, PackageError};
use crate::fragment::FragmentPlan;
use crate::index::TrackKind;
use crate::mp4::codec::MediaInfo;
use crate::presentation::{Presentation, Track};
use crate::url::Variant;

/// How to write playlists.
#[derive(Debug, Clone)]
pub struct HlsOptions {
    pub target_secs: u64,
    /// Name prefix of variant URLs: the server manifest's name.
    pub name: String,
    /// fMP4 (CMAF) segments; MPEG-TS otherwise.
    pub fmp4: bool,
    /// `hls_client_manifest_version`.
    pub version: u32,
    /// The request's query (`?vbegin=…`, or empty), repeated on every URL the playlists hold.
    pub query: String,
}

fn quote(s: &str) -> String {
    s.replace('"', "'")
}

fn variant_name(opts: &HlsOptions, tracks: &[&Track]) -> String {
    let ids: Vec<String> = tracks.iter().map(|t| t.id()).collect();
    format!("{}-{}", opts.name, ids.join("-"))
}

fn audio_group(t: &Track) -> String {
    let codec = t.entry.smooth_fourcc().to_ascii_lowercase();
    format!("audio-{}", if codec.is_empty() { "aac" } else { &codec })
}

/// The master (multivariant) playlist.
pub fn master(p: &Presentation, opts: &HlsOptions) -> Result<String, PackageError> {
    if !opts.fmp4 {
        return Ok(master_ts(p, opts));
    }
    let mut x = String::with_capacity(2048);
    let _ = writeln!(
        x,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    let audio: Vec<&Track> = p.of_kind(TrackKind::Audio).collect();
    let mut groups: Vec<(String, u64, String)> = Vec::new(); // (group, max bitrate, codecs)
    for a in &audio {
        let group = audio_group(a);
        let first_of_group = !groups.iter().any(|g| g.0 == group);
        let name = a.language.clone().unwrap_or_else(|| a.name.clone());
        let channels = match a.entry.media {
            MediaInfo::Audio { channels, .. } => format!(",CHANNELS=\"{channels}\""),
            _ => String::new(),
        };
        let lang = a
            .language
            .as_ref()
            .map(|l| format!(",LANGUAGE=\"{}\"", quote(l)))
            .unwrap_or_default();
        let _ = writeln!(
            x,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{group}\",NAME=\"{}\"{lang},AUTOSELECT=YES,DEFAULT={}{channels},URI=\"hls/{}.m3u8{}\"",
            quote(&name),
            if first_of_group { "YES" } else { "NO" },
            quote(&variant_name(opts, &[a])),
            quote(&opts.query)
        );
        match groups.iter_mut().find(|g| g.0 == group) {
            Some(g) => g.1 = g.1.max(a.bitrate),
            None => groups.push((group, a.bitrate, a.entry.codec_string())),
        }
    }
    if !audio.is_empty() {
        x.push('\n');
    }
    let video: Vec<&Track> = p.of_kind(TrackKind::Video).collect();
    if video.is_empty() {
        // Audio-only: each audio track is a variant of its own.
        for a in &audio {
            let _ = writeln!(
                x,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\nhls/{}.m3u8{}",
                a.bitrate,
                a.bitrate,
                a.entry.codec_string(),
                quote(&variant_name(opts, &[a])),
                opts.query
            );
        }
        return Ok(x);
    }
    let mut video = video;
    video.sort_by_key(|t| t.bitrate);
    for v in video {
        let mut line = String::new();
        let (group, audio_bitrate, audio_codec) =
            groups
                .first()
                .cloned()
                .unwrap_or((String::new(), 0, String::new()));
        let peak = v.bitrate + audio_bitrate;
        let mut codecs = v.entry.codec_string();
        if !audio_codec.is_empty() {
            codecs = format!("{codecs},{audio_codec}");
        }
        let _ = write!(
            line,
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={peak},CODECS=\"{codecs}\""
        );
        if let MediaInfo::Video { width, height, .. } = v.entry.media {
            let _ = write!(line, ",RESOLUTION={width}x{height}");
        }
        if let Some((n, d)) = frame_rate(v) {
            let _ = write!(line, ",FRAME-RATE={:.3}", n as f64 / d as f64);
        }
        if !group.is_empty() {
            let _ = write!(line, ",AUDIO=\"{group}\"");
        }
        let _ = writeln!(
            x,
            "{line}\nhls/{}.m3u8{}",
            quote(&variant_name(opts, &[v])),
            opts.query
        );
    }
    Ok(x)
}

/// The tracks a variant URL names.
pub fn variant_tracks<'p>(
    p: &'p Presentation,
    v: &Variant,
) -> Result<Vec<&'p Track>, PackageError> {
    v.tracks
        .iter()
        .map(|r| {
            p.find(r)
                .ok_or_else(|| PackageError::NoSuchTrack(format!("{}={}", r.name, r.bitrate)))
        })
        .collect()
}

fn single<'p>(p: &'p Presentation, v: &Variant) -> Result<&'p Track, PackageError> {
    let tracks = variant_tracks(p, v)?;
    match tracks.as_slice() {
        [t] => Ok(t),
        _ => Err(PackageError::Unsupported(
            "an fMP4 HLS playlist or segment carries exactly one track".into(),
        )),
    }
}

/// A media playlist (fMP4).
pub fn media_playlist(
    p: &Presentation,
    v: &Variant,
    opts: &HlsOptions,
) -> Result<String, PackageError> {
    let t = single(p, v)?;
    let (durations, target) = segment_durations(p, t, opts)?;
    let name = variant_name(opts, &[t]);
    let mut x = String::with_capacity(64 + durations.len() * 48);
    let _ = writeln!(
        x,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{}.m4s{}\"",
        quote(&name),
        quote(&opts.query)
    );
    for (k, d) in durations.iter().enumerate() {
        let _ = writeln!(
            x,
            "#EXTINF:{d:.6},\n{}-{}.m4s{}",
            quote(&name),
            k + 1,
            opts.query
        );
    }
    x.push_str("#EXT-X-ENDLIST\n");
    Ok(x)
}

/// The fMP4 initialization segment of a variant.
pub fn init_segment(p: &Presentation, v: &Variant) -> Result<Vec<u8>, PackageError> {
    Ok(super::dash::init_for(single(p, v)?))
}

/// Media segment `n` (1-based) of a variant, fMP4.
pub fn fmp4_segment<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    opts: &HlsOptions,
) -> Result<(&'p Track, FragmentPlan), PackageError> {
    let t = single(p, v)?;
    let table = segments(p, t, opts.target_secs);
    let k = table
        .by_number(n)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{n} of {}", t.id())))?;
    Ok((t, super::dash::cmaf_fragment(t, &table, k)?))
}

/// The variants of MPEG-TS HLS: with `hls_client_manifest_version` below 4 each video track
/// muxed with the default audio track; from 4 on, audio in `EXT-X-MEDIA` groups of audio-only
/// streams and video-only variants.
pub fn ts_variants<'p>(p: &'p Presentation, opts: &HlsOptions) -> Vec<Vec<&'p Track>> {
    let audio: Vec<&Track> = p.of_kind(TrackKind::Audio).collect();
    let mut video: Vec<&Track> = p.of_kind(TrackKind::Video).collect();
    video.sort_by_key(|t| t.bitrate);
    if video.is_empty() {
        return audio.into_iter().map(|a| vec![a]).collect();
    }
    video
        .into_iter()
        .map(|v| match (opts.version < 4, audio.first()) {
            (true, Some(a)) => vec![*a, v],
            _ => vec![v],
        })
        .collect()
}

fn master_ts(p: &Presentation, opts: &HlsOptions) -> String {
    let mut x = String::with_capacity(2048);
    let version = opts.version.clamp(3, 7);
    let _ = writeln!(
        x,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    let audio: Vec<&Track> = p.of_kind(TrackKind::Audio).collect();
    let grouped = opts.version >= 4 && p.of_kind(TrackKind::Video).next().is_some();
    let mut audio_bitrate = 0;
    let mut audio_codec = String::new();
    if grouped {
        for (i, a) in audio.iter().enumerate() {
            let name = a.language.clone().unwrap_or_else(|| a.name.clone());
            let lang = a
                .language
                .as_ref()
                .map(|l| format!(",LANGUAGE=\"{}\"", quote(l)))
                .unwrap_or_default();
            let channels = match a.entry.media {
                MediaInfo::Audio { channels, .. } => format!(",CHANNELS=\"{channels}\""),
                _ => String::new(),
            };
            let _ = writeln!(
                x,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\"{lang},AUTOSELECT=YES,DEFAULT={}{channels},URI=\"{}.m3u8{}\"",
                quote(&name),
                if i == 0 { "YES" } else { "NO" },
                quote(&variant_name(opts, &[a])),
                quote(&opts.query)
            );
            audio_bitrate = audio_bitrate.max(a.bitrate);
            if audio_codec.is_empty() {
                audio_codec = a.entry.codec_string();
            }
        }
        if !audio.is_empty() {
            x.push('\n');
        }
    }
    for variant in ts_variants(p, opts) {
        let bitrate: u64 = variant.iter().map(|t| t.bitrate).sum::<u64>()
            + if grouped { audio_bitrate } else { 0 };
        // TS overhead (packet headers, PES headers, parameter sets) is about 5 %.
        let peak = bitrate + bitrate / 20;
        let mut codecs: Vec<String> = variant.iter().map(|t| t.entry.codec_string()).collect();
        if grouped && !audio_codec.is_empty() {
            codecs.push(audio_codec.clone());
        }
        let mut line = format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={bitrate},CODECS=\"{}\"",
            codecs.join(",")
        );
        if let Some(v) = variant.iter().find(|t| t.kind == TrackKind::Video) {
            if let MediaInfo::Video { width, height, .. } = v.entry.media {
                let _ = write!(line, ",RESOLUTION={width}x{height}");
            }
            if let Some((n, d)) = frame_rate(v) {
                let _ = write!(line, ",FRAME-RATE={:.3}", n as f64 / d as f64);
            }
            if grouped && !audio.is_empty() {
                line.push_str(",AUDIO=\"audio\"");
            }
        }
        let _ = writeln!(
            x,
            "{line}\n{}.m3u8{}",
            quote(&variant_name(opts, &variant)),
            opts.query
        );
    }
    if opts.version >= 4 {
        for variant in ts_variants(p, opts) {
            let Some(v) = variant.iter().find(|t| t.kind == TrackKind::Video) else {
                continue;
            };
            let mut line = format!(
                "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
                v.bitrate,
                v.entry.codec_string()
            );
            if let MediaInfo::Video { width, height, .. } = v.entry.media {
                let _ = write!(line, ",RESOLUTION={width}x{height}");
            }
            let _ = writeln!(
                x,
                "{line},URI=\"keyframes/{}.m3u8{}\"",
                quote(&variant_name(opts, &variant)),
                quote(&opts.query)
            );
        }
    }
    x
}

/// The track that numbers a variant's segments: its video track, else its first.
fn variant_reference<'a>(tracks: &[&'a Track]) -> &'a Track {
    tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .copied()
        .unwrap_or(tracks[0])
}

/// A media playlist of MPEG-TS segments.
pub fn ts_playlist(
    p: &Presentation,
    v: &Variant,
    opts: &HlsOptions,
) -> Result<String, PackageError> {
    let tracks = variant_tracks(p, v)?;
    let reference = variant_reference(&tracks);
    let (durations, target) = segment_durations(p, reference, opts)?;
    let name = variant_name(opts, &tracks);
    let version = opts.version.clamp(3, 7);
    let mut x = String::with_capacity(64 + durations.len() * 48);
    let _ = writeln!(
        x,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS"
    );
    for (k, d) in durations.iter().enumerate() {
        let _ = writeln!(
            x,
            "#EXTINF:{d:.6},\n{}-{}.ts{}",
            quote(&name),
            k + 1,
            opts.query
        );
    }
    x.push_str("#EXT-X-ENDLIST\n");
    Ok(x)
}

/// The samples of TS segment `n` (1-based): for each track of the variant, its sample range.
pub fn ts_segment_samples<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    opts: &HlsOptions,
) -> Result<Vec<(&'p Track, std::ops::Range<u32>)>, PackageError> {
    let tracks = variant_tracks(p, v)?;
    let reference = variant_reference(&tracks);
    let k = segments(p, reference, opts.target_secs)
        .by_number(n)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{n} of {}", reference.id())))?;
    let mut out = Vec::with_capacity(tracks.len());
    for t in tracks {
        let table = segments(p, t, opts.target_secs);
        // A shorter track contributes nothing to the segments past its end.
        let range = table.samples(k).unwrap_or(0..0);
        out.push((t, range));
    }
    Ok(out)
}

/// Each segment's duration in seconds and the playlist's `EXT-X-TARGETDURATION`.
fn segment_durations(
    p: &Presentation,
    t: &Track,
    opts: &HlsOptions,
) -> Result<(Vec<f64>, u64), PackageError> {
    let idx = t.index();
    let table = segments(p, t, opts.target_secs);
    if table.is_empty() {
        return Err(PackageError::EmptyTrack(t.id()));
    }
    let ts = f64::from(idx.timescale.max(1));
    let durations: Vec<f64> = (0..table.len())
        .filter_map(|k| table.samples(k))
        .map(|r| (idx.dts(r.end) - idx.dts(r.start)) as f64 / ts)
        .collect();
    let target = durations
        .iter()
        .cloned()
        .fold(0.0, f64::max)
        .round()
        .max(1.0) as u64;
    Ok((durations, target))
}

/// The I-frame playlist (`keyframes/<variant>.m3u8`) of a TS variant: one entry per segment,
/// the byte range of the segment's key frame (PAT, PMT and the key frame's PES, which the muxer
/// writes first). `key_frame_bytes` gives that length for a video sample; the caller reads the
/// sample to know it.
pub fn iframe_playlist(
    p: &Presentation,
    v: &Variant,
    opts: &HlsOptions,
    key_frame_bytes: &mut dyn FnMut(&Track, u32) -> Result<usize, PackageError>,
) -> Result<String, PackageError> {
    let tracks = variant_tracks(p, v)?;
    let video = tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .copied()
        .ok_or_else(|| {
            PackageError::NoSuchTrack("an I-frame playlist needs a video track".into())
        })?;
    let (durations, target) = segment_durations(p, video, opts)?;
    let table = segments(p, video, opts.target_secs);
    let name = variant_name(opts, &tracks);
    let mut x = String::with_capacity(96 + durations.len() * 64);
    let _ = writeln!(
        x,
        "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY"
    );
    for (k, d) in durations.iter().enumerate() {
        let Some(range) = table.samples(k) else { break };
        let len = key_frame_bytes(video, range.start)?;
        let _ = writeln!(
            x,
            "#EXTINF:{d:.6},\n#EXT-X-BYTERANGE:{len}@0\n../{}-{}.ts{}",
            quote(&name),
            k + 1,
            opts.query
        );
    }
    x.push_str("#EXT-X-ENDLIST\n");
    Ok(x)
}
