//! Apple HLS (RFC 8216): the master playlist with audio groups, media playlists and fMP4
//! (CMAF) segments with `EXT-X-MAP`. Segment N covers the same time as DASH segment N.

use std::fmt::Write as _;

use super::chunks::{chunk_starts, part_ranges, range_secs, track_growing};
use super::{frame_rate, segments, PackageError};
use crate::fragment::FragmentPlan;
use crate::index::{Sample, TrackIndex, TrackKind};
use crate::mp4::codec::MediaInfo;
use crate::presentation::{Presentation, Track};
use crate::url::{encode_name, excerpt, Variant};

/// How to write playlists.
#[derive(Debug, Clone)]
pub struct HlsOptions {
    pub target: super::SegmentLength,
    /// Name prefix of variant URLs: the server manifest's name.
    pub name: String,
    /// fMP4 (CMAF) segments; MPEG-TS otherwise.
    pub fmp4: bool,
    /// `hls_client_manifest_version`.
    pub version: u32,
    /// The request's query (`?vbegin=…`, or empty), repeated on every URL the playlists hold.
    pub query: String,
    /// The key of encrypted segments: `EXT-X-KEY` in media playlists, `EXT-X-SESSION-KEY` in
    /// the master, no I-frame playlists (their byte ranges cannot address encrypted data).
    pub key: Option<std::sync::Arc<crate::drm::HlsKey>>,
    /// LL-HLS delta update (`_HLS_skip=YES`): segments older than `CAN-SKIP-UNTIL` are left
    /// out of a low-latency playlist.
    pub skip: bool,
    /// How media playlists mark ad cues (`hls_ad_markers`).
    pub ad_markers: crate::ism::HlsAdMarkers,
}

/// `EXT-X-SESSION-KEY` when segments are encrypted.
fn session_key(x: &mut String, opts: &HlsOptions) {
    if let Some(key) = &opts.key {
        let _ = writeln!(x, "#EXT-X-SESSION-KEY:{}\n", key.attributes());
    }
}

/// A quoted-string attribute value (RFC 8216 §4.2) holds no `"` (nor a line break, which no
/// name or language may hold).
fn quote(s: &str) -> String {
    s.replace('"', "'")
}

/// The URL text of a variant: `<presentation>-<track>=<bitrate>[-…]`, every name encoded (see
/// [`crate::url::name`]).
fn variant_name(opts: &HlsOptions, tracks: &[&Track]) -> String {
    let ids: Vec<String> = tracks.iter().map(|t| t.url_id()).collect();
    format!("{}-{}", encode_name(&opts.name), ids.join("-"))
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
    session_key(&mut x, opts);
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
    let subtitles = subtitle_media(p, opts, "hls/", &mut x);
    let video: Vec<&Track> = p.of_kind(TrackKind::Video).collect();
    if video.is_empty() {
        // Audio-only: each audio track is a variant of its own.
        for a in &audio {
            let _ = writeln!(
                x,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"{subtitles}\nhls/{}.m3u8{}",
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
    for &v in &video {
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
        line.push_str(&subtitles);
        let _ = writeln!(
            x,
            "{line}\nhls/{}.m3u8{}",
            quote(&variant_name(opts, &[v])),
            opts.query
        );
    }
    if opts.version >= 4 {
        for v in &video {
            iframe_stream_line(&mut x, v, &variant_name(opts, &[v]), opts);
        }
    }
    Ok(x)
}

/// What an HLS URL asks of its variant. Each resource has its own track combinations, as the
/// playlists that link to it write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsResource {
    /// `<variant>.m3u8`: an MPEG-TS media playlist, or a subtitle rendition's playlist.
    TsPlaylist,
    /// `hls/<variant>.m3u8`: an fMP4 media playlist, or a subtitle rendition's playlist.
    Fmp4Playlist,
    /// `keyframes/<variant>.m3u8`: an I-frame playlist of TS or fMP4 segments.
    IFrames { fmp4: bool },
    /// `<variant>-<n>.ts`, and the legacy `Fragments(…,format=m3u8-aapl)`.
    TsSegment,
    /// `<variant>-<n>.aac`: packed audio.
    PackedAudio,
    /// `<variant>-<n>.vtt` (or `.webvtt`): a subtitle segment.
    WebVtt,
    /// `hls/<variant>.m4s` and `hls/<variant>-<n>.m4s`: fMP4 initialization and media segments.
    Fmp4,
}

impl HlsResource {
    fn describe(self) -> &'static str {
        match self {
            HlsResource::TsPlaylist => "an MPEG-TS media playlist",
            HlsResource::Fmp4Playlist => "an fMP4 media playlist",
            HlsResource::IFrames { fmp4: false } => "an MPEG-TS I-frame playlist",
            HlsResource::IFrames { fmp4: true } => "an fMP4 I-frame playlist",
            HlsResource::TsSegment => "an MPEG-TS segment",
            HlsResource::PackedAudio => "a packed-audio segment",
            HlsResource::WebVtt => "a WebVTT segment",
            HlsResource::Fmp4 => "an fMP4 segment",
        }
    }
}

/// The tracks a variant URL names, in URL order, when some playlist lists that combination for
/// `resource`; `NoSuchTrack` (404) otherwise. The one place that decides what HLS serves, so a
/// URL naming a track twice, two video tracks or an order no playlist writes is refused rather
/// than packaged:
///
/// - MPEG-TS playlists, segments and I-frame playlists: each variant [`ts_variants`] gives for
///   `hls_client_manifest_version` below 4 (first audio track, then a video track) and from 4
///   on (one video track), whichever version the request uses; and each audio track alone
///   (audio renditions, audio-only presentations). An I-frame playlist's variant has video.
/// - Packed audio: one audio track.
/// - fMP4 playlists and segments: one audio or video track; an fMP4 I-frame playlist, one
///   video track.
/// - Playlists (TS or fMP4) and WebVTT segments of a subtitle rendition: one text track that
///   HLS offers as subtitles.
pub fn listed_variant<'p>(
    p: &'p Presentation,
    v: &Variant,
    resource: HlsResource,
) -> Result<Vec<&'p Track>, PackageError> {
    let tracks = variant_tracks(p, v)?;
    let one = match tracks.as_slice() {
        [t] => Some(*t),
        _ => None,
    };
    let one_of = |kinds: &[TrackKind]| one.is_some_and(|t| kinds.contains(&t.kind));
    let subtitle = one.is_some_and(is_subtitle);
    let listed = match resource {
        HlsResource::TsPlaylist => subtitle || is_ts_variant(p, &tracks),
        HlsResource::TsSegment => is_ts_variant(p, &tracks),
        HlsResource::IFrames { fmp4: false } => {
            tracks.iter().any(|t| t.kind == TrackKind::Video) && is_ts_variant(p, &tracks)
        }
        HlsResource::IFrames { fmp4: true } => one_of(&[TrackKind::Video]),
        HlsResource::PackedAudio => one_of(&[TrackKind::Audio]),
        HlsResource::Fmp4Playlist => subtitle || one_of(&[TrackKind::Video, TrackKind::Audio]),
        HlsResource::Fmp4 => one_of(&[TrackKind::Video, TrackKind::Audio]),
        HlsResource::WebVtt => subtitle,
    };
    if !listed {
        let ids: Vec<String> = tracks.iter().map(|t| t.id()).collect();
        return Err(PackageError::NoSuchTrack(format!(
            "combination {} for {}",
            excerpt(&ids.join("+")),
            resource.describe()
        )));
    }
    Ok(tracks)
}

/// The track of a variant URL that names one, when [`listed_variant`] lists it for `resource`
/// (fMP4, packed audio, subtitles).
pub fn listed_track<'p>(
    p: &'p Presentation,
    v: &Variant,
    resource: HlsResource,
) -> Result<&'p Track, PackageError> {
    match listed_variant(p, v, resource)?.as_slice() {
        [t] => Ok(*t),
        _ => Err(PackageError::NoSuchTrack(format!(
            "a variant of several tracks for {}",
            resource.describe()
        ))),
    }
}

/// The tracks a variant URL names, looked up one by one: whether the combination is served
/// is [`listed_variant`]'s to say.
pub fn variant_tracks<'p>(
    p: &'p Presentation,
    v: &Variant,
) -> Result<Vec<&'p Track>, PackageError> {
    v.tracks
        .iter()
        .map(|r| {
            p.find(r).ok_or_else(|| {
                PackageError::NoSuchTrack(excerpt(&format!("{}={}", r.name, r.bitrate)))
            })
        })
        .collect()
}

/// True when `tracks` is an MPEG-TS variant some master playlist lists: whatever
/// `hls_client_manifest_version` the request uses ([`ts_variants`]), a video track alone, the
/// first audio track followed by a video track, or an audio track alone (renditions and
/// audio-only presentations).
fn is_ts_variant(p: &Presentation, tracks: &[&Track]) -> bool {
    match tracks {
        [t] => matches!(t.kind, TrackKind::Video | TrackKind::Audio),
        [a, v] => {
            v.kind == TrackKind::Video
                && p.of_kind(TrackKind::Audio)
                    .next()
                    .is_some_and(|first| std::ptr::eq(first, *a))
        }
        _ => false,
    }
}

/// A media playlist (fMP4).
pub fn media_playlist(
    p: &Presentation,
    v: &Variant,
    opts: &HlsOptions,
) -> Result<String, PackageError> {
    let t = listed_track(p, v, HlsResource::Fmp4Playlist)?;
    if t.kind == TrackKind::Text {
        return subtitle_playlist(p, t, opts);
    }
    let mut clock = segment_clock(p, t, opts)?;
    add_ad_markers(&mut clock, p, opts);
    let name = variant_name(opts, &[t]);
    let mut map = format!(
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{}.m4s{}\"\n",
        quote(&name),
        quote(&opts.query)
    );
    if let Some(key) = &opts.key {
        // SAMPLE-AES leaves the init segment clear; the key applies to the segments after it.
        let _ = writeln!(map, "#EXT-X-KEY:{}", key.attributes());
    }
    let mut x = write_playlist(7, &clock, &map, &name, "m4s", &opts.query);
    if clock.low_latency.is_some() && !clock.complete {
        rendition_reports(&mut x, p, t, opts);
    }
    Ok(x)
}

/// `EXT-X-RENDITION-REPORT` of every other audio and video rendition of a low-latency
/// playlist: where each one's playlist ends, so a player switching to it can ask for its
/// next part at once.
fn rendition_reports(x: &mut String, p: &Presentation, this: &Track, opts: &HlsOptions) {
    for t in p.tracks.iter().filter(|t| {
        !std::ptr::eq(*t, this) && matches!(t.kind, TrackKind::Audio | TrackKind::Video)
    }) {
        let Ok(Some(edge)) = live_edge(p, t, opts) else {
            continue;
        };
        let (msn, part) = (edge.last, edge.parts.saturating_sub(1));
        let _ = writeln!(
            x,
            "#EXT-X-RENDITION-REPORT:URI=\"{}.m3u8{}\",LAST-MSN={msn},LAST-PART={part}",
            quote(&variant_name(opts, &[t])),
            quote(&opts.query)
        );
    }
}

/// How far a low-latency media playlist reaches, against what a blocking reload asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The playlist holds what was asked (or nothing was asked).
    Ready,
    /// Not yet: the request waits for the next chunk, at most this many milliseconds in
    /// all (three target durations, RFC 8216bis §6.2.5.2).
    Wait { limit_ms: u64 },
    /// Further ahead than the playlist's next segments (400).
    TooFar,
}

/// Whether the media playlist of `v` holds segment `msn` (and its part `part`), for a
/// blocking playlist reload.
pub fn reload_state(
    p: &Presentation,
    v: &Variant,
    opts: &HlsOptions,
    msn: u64,
    part: Option<u64>,
) -> Result<Reload, PackageError> {
    let t = listed_track(p, v, HlsResource::Fmp4Playlist)?;
    let Some(edge) = live_edge(p, t, opts)? else {
        return Ok(Reload::Ready);
    };
    let last = edge.last;
    // The newest whole segment, and the newest part (of the newest segment).
    let whole = if edge.growing {
        last.checked_sub(1)
    } else {
        Some(last)
    };
    let newest_part = edge.parts.saturating_sub(1) as u64;
    let ready = match part {
        None => whole.is_some_and(|w| msn <= w),
        Some(p) => msn < last || (msn == last && p <= newest_part),
    };
    let limit_ms = hold_limit_ms(edge.target);
    Ok(if ready {
        Reload::Ready
    } else if msn > last + 2 {
        Reload::TooFar
    } else {
        Reload::Wait { limit_ms }
    })
}

/// Partial segment `part` (from 0) of fMP4 segment `n` of a low-latency live variant: where
/// it is, or whether it is the next one to come (a preload hint's), which a request waits
/// for.
pub fn fmp4_part<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    part: u64,
    opts: &HlsOptions,
) -> Result<PartAt<'p>, PackageError> {
    let t = listed_track(p, v, HlsResource::Fmp4)?;
    let missing = || PackageError::NoSuchSegment(format!("part {part} of {n} of {}", t.id()));
    let live = p
        .live
        .as_deref()
        .filter(|l| l.low_latency)
        .ok_or_else(missing)?;
    let table = segments(p, t, opts.target);
    let growing = track_growing(t, live);
    let limit_ms = hold_limit_ms(target_duration(p, t.index(), &table));
    let last = table.first_number() + table.len() as u64;
    let Some(k) = table.by_number(n) else {
        // The first part of the segment after the newest one (whole, or growing: its next
        // chunk may start the next segment).
        if n == last && part == 0 && !live.ended {
            return Ok(PartAt::Next { limit_ms });
        }
        return Err(missing());
    };
    let range = table.samples(k).ok_or_else(missing)?;
    let parts = part_ranges(t, range, chunk_starts(live, t));
    match parts.get(part as usize) {
        Some(r) => Ok(PartAt::Here(
            t,
            super::dash::cmaf_fragment_of(t, r.clone(), table.number(k))?,
        )),
        None if k + 1 == table.len() && growing && part as usize == parts.len() => {
            Ok(PartAt::Next { limit_ms })
        }
        None => Err(missing()),
    }
}

/// Where a partial segment is.
pub enum PartAt<'p> {
    Here(&'p Track, FragmentPlan),
    /// The next part to come: not ingested yet.
    Next {
        limit_ms: u64,
    },
}

/// How long a request for what a low-latency playlist does not hold yet is held: three target
/// durations (RFC 8216bis §6.2.5.2).
fn hold_limit_ms(target: u64) -> u64 {
    target.max(1) * 3000
}

/// `EXT-X-TARGETDURATION` of segments lasting `durations` seconds: the longest, rounded, at
/// least 1.
fn target_of(durations: impl IntoIterator<Item = f64>) -> u64 {
    durations.into_iter().fold(0.0, f64::max).round().max(1.0) as u64
}

/// [`target_of`] a track's segments.
fn target_duration(
    p: &Presentation,
    idx: &TrackIndex,
    table: &crate::segment::SegmentTable,
) -> u64 {
    target_of(
        (0..table.len())
            .filter_map(|k| table.samples(k))
            .map(|r| range_secs(idx, &r)),
    )
    .max(declared_target(p))
}

/// The least `EXT-X-TARGETDURATION` of a live window: the channel's declared segment length,
/// rounded. A playlist's target must not change while the stream runs, and a stream's first
/// segment (growing, in a low-latency window) is shorter than the ones after it.
fn declared_target(p: &Presentation) -> u64 {
    p.live
        .as_deref()
        .and_then(|l| l.declared_segment_secs)
        .map_or(0, |secs| secs.round().max(1.0) as u64)
}

/// Where a low-latency live playlist of a track ends, as blocking reloads and rendition
/// reports need it (without the playlist's per-segment work).
struct LiveEdge {
    /// Number of the newest segment (whole or growing).
    last: u64,
    /// How many parts it has.
    parts: usize,
    growing: bool,
    target: u64,
}

/// The [`LiveEdge`] of `t`; `None` when its playlist is not a low-latency live one.
fn live_edge(
    p: &Presentation,
    t: &Track,
    opts: &HlsOptions,
) -> Result<Option<LiveEdge>, PackageError> {
    let Some(live) = p.live.as_deref().filter(|l| l.low_latency && !l.ended) else {
        return Ok(None);
    };
    let table = segments(p, t, opts.target);
    let Some(k) = table.len().checked_sub(1) else {
        return Err(PackageError::EmptyTrack(t.id()));
    };
    let range = table.samples(k).unwrap_or(0..0);
    Ok(Some(LiveEdge {
        last: table.number(k),
        parts: part_ranges(t, range, chunk_starts(live, t)).len(),
        growing: track_growing(t, live),
        target: target_duration(p, t.index(), &table),
    }))
}

/// The fMP4 initialization segment of a variant.
pub fn init_segment(p: &Presentation, v: &Variant) -> Result<Vec<u8>, PackageError> {
    Ok(super::dash::init_for(listed_track(
        p,
        v,
        HlsResource::Fmp4,
    )?))
}

/// Media segment `n` (1-based) of a variant, fMP4.
pub fn fmp4_segment<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    opts: &HlsOptions,
) -> Result<(&'p Track, FragmentPlan), PackageError> {
    let t = listed_track(p, v, HlsResource::Fmp4)?;
    let table = segments(p, t, opts.target);
    let missing = || PackageError::NoSuchSegment(format!("{n} of {}", t.id()));
    let k = table.by_number(n).ok_or_else(missing)?;
    // A low-latency window holds the growing segment: it is served by its parts until whole.
    if let Some(live) = p.live.as_deref().filter(|l| l.low_latency) {
        if k + 1 == table.len() && track_growing(t, live) {
            return Err(missing());
        }
    }
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
    session_key(&mut x, opts);
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
    let subtitles = subtitle_media(p, opts, "", &mut x);
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
        line.push_str(&subtitles);
        let _ = writeln!(
            x,
            "{line}\n{}.m3u8{}",
            quote(&variant_name(opts, &variant)),
            opts.query
        );
    }
    if opts.version >= 4 {
        for variant in ts_variants(p, opts) {
            if let Some(v) = variant.iter().find(|t| t.kind == TrackKind::Video) {
                iframe_stream_line(&mut x, v, &variant_name(opts, &variant), opts);
            }
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
    let tracks = listed_variant(p, v, HlsResource::TsPlaylist)?;
    if let [t] = tracks.as_slice() {
        if t.kind == TrackKind::Text {
            return subtitle_playlist(p, t, opts);
        }
    }
    let reference = variant_reference(&tracks);
    let mut clock = segment_clock(p, reference, opts)?;
    add_ad_markers(&mut clock, p, opts);
    let name = variant_name(opts, &tracks);
    let mut tags = String::from("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(key) = &opts.key {
        let _ = writeln!(tags, "#EXT-X-KEY:{}", key.attributes());
    }
    Ok(write_playlist(
        opts.version.clamp(3, 7),
        &clock,
        &tags,
        &name,
        "ts",
        &opts.query,
    ))
}

/// A media playlist: the header (`extra` holds tags after it, each ending in a newline), one
/// `<name>-<n>.<ext>` entry per segment, and the end tag once the playlist is complete.
fn write_playlist(
    version: u32,
    clock: &Clock,
    extra: &str,
    name: &str,
    ext: &str,
    query: &str,
) -> String {
    let mut x =
        String::with_capacity(160 + clock.durations.len() * (24 + name.len() + query.len()));
    let ll = clock.low_latency.as_ref().filter(|_| !clock.complete);
    // LL-HLS tags need version 9 (EXT-X-SKIP; parts and hints 6 and up).
    let version = if ll.is_some() {
        version.max(9)
    } else {
        version
    };
    playlist_header(&mut x, version, clock, clock.live);
    let mut skipped = 0;
    if let Some(ll) = ll {
        let target = clock.target as f64;
        let skip_until = 6.0 * target;
        let _ = writeln!(
            x,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until:.1},\
             PART-HOLD-BACK={:.3},HOLD-BACK={:.1}",
            3.0 * ll.part_target,
            3.0 * target
        );
        let _ = writeln!(x, "#EXT-X-PART-INF:PART-TARGET={:.3}", ll.part_target);
        if clock.skip {
            // Whole segments that end more than CAN-SKIP-UNTIL before the playlist's end.
            let total: f64 = clock.durations.iter().sum();
            let mut start = 0.0;
            for d in &clock.durations {
                if total - start - d <= skip_until {
                    break;
                }
                start += d;
                skipped += 1;
            }
            skipped = skipped.min(clock.durations.len().saturating_sub(1));
            if skipped > 0 {
                let _ = writeln!(x, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            }
        }
    }
    x.push_str(extra);
    let name = quote(name);
    let count = clock.durations.len();
    for (k, d) in clock.durations.iter().enumerate().skip(skipped) {
        write_discontinuity(&mut x, clock, k);
        write_date_time(&mut x, clock, k);
        if let Some(tags) = clock.ad_markers.get(k) {
            x.push_str(tags);
        }
        let n = clock.first_number + k as u64;
        if let Some(parts) = ll.and_then(|ll| ll.parts.get(k)) {
            for (p, (duration, independent)) in parts.iter().enumerate() {
                let independent = if *independent { ",INDEPENDENT=YES" } else { "" };
                let _ = writeln!(
                    x,
                    "#EXT-X-PART:DURATION={duration:.6},URI=\"{name}-{n}.{p}.{ext}{query}\"{independent}"
                );
            }
        }
        if ll.is_some_and(|ll| ll.growing) && k + 1 == count {
            // Still growing: listed by its parts until it is whole.
            break;
        }
        let _ = writeln!(x, "#EXTINF:{d:.6},\n{name}-{n}.{ext}{query}");
    }
    if let Some(tags) = clock.ad_markers.get(count) {
        // Cues past the media listed so far (announced ahead of their splice).
        x.push_str(tags);
    }
    if let Some(ll) = ll {
        let (n, p) = match ll.parts.last() {
            Some(parts) if ll.growing && !ll.next_starts_segment => {
                (clock.first_number + count as u64 - 1, parts.len())
            }
            _ => (clock.first_number + count as u64, 0),
        };
        let _ = writeln!(
            x,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{name}-{n}.{p}.{ext}{query}\""
        );
    }
    if clock.complete {
        x.push_str("#EXT-X-ENDLIST\n");
    }
    x
}

/// The 1-based number of the MPEG-TS segment of a variant that starts at `time` (the
/// timescale of the variant's first track, as the legacy
/// `Fragments(<track>=<time>,format=m3u8-aapl)` URLs give it).
pub fn segment_number_at(
    p: &Presentation,
    v: &Variant,
    time: u64,
    opts: &HlsOptions,
) -> Result<u64, PackageError> {
    let tracks = listed_variant(p, v, HlsResource::TsSegment)?;
    let named = tracks
        .first()
        .ok_or_else(|| PackageError::NoSuchTrack("an empty variant".into()))?;
    let clock = variant_reference(&tracks);
    let table = segments(p, named, opts.target);
    let k = table
        .by_start_time(named.index(), time)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("time {time} of {}", named.id())))?;
    // Segment k of the named track covers the same time as segment k of the variant's clock.
    if k >= segments(p, clock, opts.target).len() {
        return Err(PackageError::NoSuchSegment(format!(
            "time {time} of {}",
            named.id()
        )));
    }
    Ok(table.number(k))
}

/// The samples of TS segment `n` (1-based): for each track of the variant, its sample range.
pub fn ts_segment_samples<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    opts: &HlsOptions,
) -> Result<Vec<(&'p Track, std::ops::Range<u32>)>, PackageError> {
    segment_samples(p, v, HlsResource::TsSegment, n, opts)
}

/// The samples of packed-audio segment `n` (1-based): the one audio track's sample range.
pub fn packed_audio_samples<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    opts: &HlsOptions,
) -> Result<Vec<(&'p Track, std::ops::Range<u32>)>, PackageError> {
    segment_samples(p, v, HlsResource::PackedAudio, n, opts)
}

fn segment_samples<'p>(
    p: &'p Presentation,
    v: &Variant,
    resource: HlsResource,
    n: u64,
    opts: &HlsOptions,
) -> Result<Vec<(&'p Track, std::ops::Range<u32>)>, PackageError> {
    let tracks = listed_variant(p, v, resource)?;
    let reference = variant_reference(&tracks);
    let k = segments(p, reference, opts.target)
        .by_number(n)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{n} of {}", reference.id())))?;
    let mut out = Vec::with_capacity(tracks.len());
    for t in tracks {
        let table = segments(p, t, opts.target);
        // A shorter track contributes nothing to the segments past its end.
        let range = table.samples(k).unwrap_or(0..0);
        out.push((t, range));
    }
    Ok(out)
}

/// The segments a media playlist lists: their durations (seconds), numbers and, for a live
/// channel, the wall-clock time each starts at.
struct Clock {
    durations: Vec<f64>,
    /// `EXT-X-TARGETDURATION`.
    target: u64,
    /// Number of the first segment (`EXT-X-MEDIA-SEQUENCE`).
    first_number: u64,
    /// Start of each segment, ms since the Unix epoch (live only).
    wall_clock_ms: Vec<i64>,
    /// The timeline each segment is on (live only): an encoder restart starts another, and
    /// the segment where it does is a discontinuity.
    timelines: Vec<u32>,
    /// The playlist is complete (`EXT-X-ENDLIST`): VOD, or a live stream that ended.
    complete: bool,
    /// A low-latency live playlist's parts.
    low_latency: Option<LowLatency>,
    /// A delta update was asked (`_HLS_skip=YES`).
    skip: bool,
    /// A live channel's playlist (no playlist type).
    live: bool,
    /// Start of each segment, seconds of media time, and the end of the last.
    starts_secs: Vec<f64>,
    end_secs: f64,
    /// Ad-marker tags before each segment, then after the last (empty: none).
    ad_markers: Vec<String>,
}

/// The parts of a low-latency playlist.
struct LowLatency {
    /// Each segment's parts (duration in seconds, starts with a sync sample); empty for the
    /// segments older than three target durations, whose parts are not listed.
    parts: Vec<Vec<(f64, bool)>>,
    /// `PART-TARGET`: the longest part in the window, in seconds, rounded up to the ms.
    part_target: f64,
    /// The last segment is still growing: listed by its parts only.
    growing: bool,
    /// The growing segment is about as long as the one before it: the next chunk (a GOP's
    /// first) will most likely start the next segment, which the preload hint then names.
    next_starts_segment: bool,
}

/// The segments of `t` as a playlist lists them.
fn segment_clock(p: &Presentation, t: &Track, opts: &HlsOptions) -> Result<Clock, PackageError> {
    let idx = t.index();
    let table = segments(p, t, opts.target);
    if table.is_empty() {
        return Err(PackageError::EmptyTrack(t.id()));
    }
    let ts = f64::from(idx.timescale.max(1));
    let ranges: Vec<_> = (0..table.len()).filter_map(|k| table.samples(k)).collect();
    let durations: Vec<f64> = ranges.iter().map(|r| range_secs(idx, r)).collect();
    let target = target_of(durations.iter().copied()).max(declared_target(p));
    let wall_clock_ms = match p.live.as_deref() {
        Some(live) => ranges
            .iter()
            .map(|r| {
                let ms = u128::from(idx.dts(r.start)) * 1000 / u128::from(idx.timescale.max(1));
                live.anchor_ms + ms as i64
            })
            .collect(),
        None => Vec::new(),
    };
    let timelines = match p.live.as_deref() {
        Some(live) => ranges
            .iter()
            .map(|r| live.timeline_at(idx.dts(r.start) as f64 / ts))
            .collect(),
        None => Vec::new(),
    };
    let low_latency = match p.live.as_deref() {
        Some(live) if live.low_latency && !live.ended => {
            let chunks = chunk_starts(live, t);
            // Parts are listed for the last three target durations (RFC 8216bis §4.4.4.9).
            let mut from_end = 0.0;
            let mut listed_from = durations.len();
            for (k, d) in durations.iter().enumerate().rev() {
                listed_from = k;
                from_end += d;
                if from_end >= 3.0 * target as f64 {
                    break;
                }
            }
            let mut part_target: f64 = 0.0;
            let mut parts = Vec::with_capacity(ranges.len());
            for (k, r) in ranges.iter().enumerate() {
                let split = part_ranges(t, r.clone(), chunks);
                let these: Vec<(f64, bool)> = split
                    .iter()
                    .map(|r| (range_secs(idx, r), idx.is_sync(r.start)))
                    .collect();
                for (d, _) in &these {
                    part_target = part_target.max(*d);
                }
                parts.push(if k >= listed_from { these } else { Vec::new() });
            }
            let growing = track_growing(t, live);
            let next_starts_segment = growing
                && durations.len() >= 2
                && durations[durations.len() - 1] + part_target / 2.0
                    >= durations[durations.len() - 2];
            Some(LowLatency {
                parts,
                part_target: (part_target * 1000.0).ceil() / 1000.0,
                growing,
                next_starts_segment,
            })
        }
        _ => None,
    };
    let starts_secs: Vec<f64> = ranges
        .iter()
        .map(|r| idx.dts(r.start) as f64 / ts)
        .collect();
    let end_secs = ranges
        .last()
        .map_or(0.0, |r| idx.sample_end(r.end.saturating_sub(1)) as f64 / ts);
    Ok(Clock {
        durations,
        target,
        first_number: table.first_number(),
        wall_clock_ms,
        timelines,
        complete: p.live.as_deref().is_none_or(|l| l.ended),
        low_latency,
        skip: opts.skip,
        live: p.live.is_some(),
        starts_secs,
        end_secs,
        ad_markers: Vec::new(),
    })
}

/// Puts the presentation's SCTE-35 cues into a media playlist's clock (see
/// [`super::ad_markers::hls_tags`]). Date ranges need program date-times (RFC 8216
/// §4.4.5.1): a VOD playlist with cues dates its first segment from the Unix epoch, as media
/// time.
fn add_ad_markers(clock: &mut Clock, p: &Presentation, opts: &HlsOptions) {
    let events = p.events();
    // A complete playlist shows the cues within its media.
    let cues = super::ad_markers::within_media(p, super::ad_markers::cues(&events));
    if cues.is_empty() {
        return;
    }
    let anchor_ms = p.live.as_deref().map_or(0, |l| l.anchor_ms);
    if clock.wall_clock_ms.is_empty() && opts.ad_markers.date_ranges() {
        // One date-time, on the first segment, dates the whole VOD playlist (its segments
        // follow one another): a tag per segment would double a long title's playlist.
        clock.wall_clock_ms = clock
            .starts_secs
            .first()
            .map(|s| anchor_ms + (s * 1000.0).round() as i64)
            .into_iter()
            .collect();
    }
    clock.ad_markers = super::ad_markers::hls_tags(
        &cues,
        &clock.starts_secs,
        clock.end_secs,
        anchor_ms,
        opts.ad_markers,
    );
}

/// The header of a media playlist, through `EXT-X-MEDIA-SEQUENCE` (and the playlist type of
/// VOD: a live playlist slides, and keeps no type when it ends).
fn playlist_header(x: &mut String, version: u32, clock: &Clock, live: bool) {
    let _ = write!(
        x,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        clock.target, clock.first_number
    );
    if !live {
        x.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    // Timeline numbers count the restarts before each segment, so the first listed one's
    // is the number of discontinuities that slid out of the playlist (RFC 8216 §4.3.3.3).
    if let Some(&first) = clock.timelines.first().filter(|&&n| n > 0) {
        let _ = writeln!(x, "#EXT-X-DISCONTINUITY-SEQUENCE:{first}");
    }
}

/// `EXT-X-DISCONTINUITY` before segment `k` when an encoder restart put it on another
/// timeline than the one before it.
fn write_discontinuity(x: &mut String, clock: &Clock, k: usize) {
    if k > 0 && clock.timelines.get(k) != clock.timelines.get(k - 1) {
        x.push_str("#EXT-X-DISCONTINUITY\n");
    }
}

/// `EXT-X-PROGRAM-DATE-TIME` of segment `k`, for a live channel.
fn write_date_time(x: &mut String, clock: &Clock, k: usize) {
    if let Some(&ms) = clock.wall_clock_ms.get(k) {
        let _ = writeln!(
            x,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            crate::markup::iso8601_utc(ms)
        );
    }
}

/// The I-frame playlist (`keyframes/<variant>.m3u8`) of a variant: one entry per segment, the
/// byte range of the segment's key frame. In TS that is PAT, PMT and the key frame's PES, which
/// the muxer writes first; `key_frame_bytes` gives that length for a video sample (the caller
/// reads the sample to know it). In fMP4 (`opts.fmp4`) it is the fragment's boxes up to the
/// `mdat` payload plus the key frame, the first sample.
pub fn iframe_playlist(
    p: &Presentation,
    v: &Variant,
    opts: &HlsOptions,
    key_frame_bytes: &mut dyn FnMut(&Track, u32) -> Result<usize, PackageError>,
) -> Result<String, PackageError> {
    let resource = HlsResource::IFrames { fmp4: opts.fmp4 };
    let tracks = listed_variant(p, v, resource)?;
    let video = tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .copied()
        .ok_or_else(|| {
            PackageError::NoSuchTrack("an I-frame playlist needs a video track".into())
        })?;
    let clock = segment_clock(p, video, opts)?;
    let table = segments(p, video, opts.target);
    let name = quote(&variant_name(opts, &tracks));
    let mut x = String::with_capacity(128 + clock.durations.len() * (64 + name.len()));
    let (version, map, prefix, ext) = if opts.fmp4 {
        let map = format!(
            "\n#EXT-X-MAP:URI=\"../hls/{name}.m4s{}\"",
            quote(&opts.query)
        );
        (7, map, "../hls/", "m4s")
    } else {
        (4, String::new(), "../", "ts")
    };
    playlist_header(&mut x, version, &clock, !clock.wall_clock_ms.is_empty());
    let _ = writeln!(x, "#EXT-X-I-FRAMES-ONLY{map}");
    for (k, d) in clock.durations.iter().enumerate() {
        let Some(range) = table.samples(k) else { break };
        let len = if opts.fmp4 {
            let plan = super::dash::cmaf_fragment(video, &table, k)?;
            plan.header.len() + video.index().size(range.start) as usize
        } else {
            key_frame_bytes(video, range.start)?
        };
        write_discontinuity(&mut x, &clock, k);
        write_date_time(&mut x, &clock, k);
        let _ = writeln!(
            x,
            "#EXTINF:{d:.6},\n#EXT-X-BYTERANGE:{len}@0\n{prefix}{name}-{}.{ext}{}",
            table.number(k),
            opts.query
        );
    }
    if clock.complete {
        x.push_str("#EXT-X-ENDLIST\n");
    }
    Ok(x)
}

/// `EXT-X-I-FRAME-STREAM-INF` of a video track's I-frame playlist.
fn iframe_stream_line(x: &mut String, v: &Track, variant: &str, opts: &HlsOptions) {
    if opts.key.is_some() {
        return;
    }
    let _ = write!(
        x,
        "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
        v.bitrate,
        v.entry.codec_string()
    );
    if let MediaInfo::Video { width, height, .. } = v.entry.media {
        let _ = write!(x, ",RESOLUTION={width}x{height}");
    }
    let _ = writeln!(
        x,
        ",URI=\"keyframes/{}.m3u8{}\"",
        quote(variant),
        quote(&opts.query)
    );
}

/// The group every WebVTT rendition belongs to.
const SUBTITLE_GROUP: &str = "textstream";

/// Text tracks HLS can offer: TTML (`stpp`) and WebVTT (`wvtt`), both sent as WebVTT.
fn subtitle_tracks(p: &Presentation) -> impl Iterator<Item = &Track> {
    p.tracks.iter().filter(|t| is_subtitle(t))
}

/// True for a text track HLS offers as a subtitle rendition.
fn is_subtitle(t: &Track) -> bool {
    t.kind == TrackKind::Text && matches!(&t.entry.fourcc.0, b"stpp" | b"wvtt")
}

/// Writes the `EXT-X-MEDIA` subtitle renditions (playlists under `prefix`) and returns the
/// attribute the variants carry to name their group (empty without text tracks).
fn subtitle_media(p: &Presentation, opts: &HlsOptions, prefix: &str, x: &mut String) -> String {
    let mut any = false;
    for t in subtitle_tracks(p) {
        let name = t.language.clone().unwrap_or_else(|| t.name.clone());
        let lang = t
            .language
            .as_ref()
            .map(|l| format!(",LANGUAGE=\"{}\"", quote(l)))
            .unwrap_or_default();
        let _ = writeln!(
            x,
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"{SUBTITLE_GROUP}\",NAME=\"{}\"{lang},AUTOSELECT=YES,DEFAULT=NO,FORCED=NO,URI=\"{prefix}{}.m3u8{}\"",
            quote(&name),
            quote(&variant_name(opts, &[t])),
            quote(&opts.query)
        );
        any = true;
    }
    if any {
        x.push('\n');
        format!(",SUBTITLES=\"{SUBTITLE_GROUP}\"")
    } else {
        String::new()
    }
}

/// The track whose segments time a text track's: the presentation's reference (video, else
/// audio), so subtitle segment N covers the same time as the media's segment N.
fn text_clock<'p>(p: &'p Presentation, text: &'p Track) -> &'p Track {
    let reference = p.reference();
    if reference.kind == TrackKind::Text {
        text
    } else {
        reference
    }
}

/// A WebVTT media playlist: one segment per segment of the media. `t` is a subtitle track
/// ([`listed_variant`] has checked).
fn subtitle_playlist(
    p: &Presentation,
    t: &Track,
    opts: &HlsOptions,
) -> Result<String, PackageError> {
    let clock = segment_clock(p, text_clock(p, t), opts)?;
    let name = variant_name(opts, &[t]);
    Ok(write_playlist(3, &clock, "", &name, "vtt", &opts.query))
}

/// What a WebVTT segment is made of: the text track's samples that overlap the segment's
/// time, the segment's time in milliseconds, and the 90 kHz media timestamp of time 0.
#[derive(Debug, Clone)]
pub struct TextSegment<'p> {
    pub track: &'p Track,
    pub samples: std::ops::Range<u32>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub mpegts: u64,
}

/// The samples of `idx` presented during `[t0, t1)` (track timescale).
fn samples_overlapping(idx: &TrackIndex, t0: u64, t1: u64) -> std::ops::Range<u32> {
    let n = idx.sample_count();
    let first = partition(n, |i| idx.dts(i + 1) <= t0);
    let end = partition(n, |i| idx.dts(i) < t1);
    first..end.max(first)
}

/// The first `i` in `0..n` for which `below(i)` is false (`below` is monotone).
fn partition(n: u32, below: impl Fn(u32) -> bool) -> u32 {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// WebVTT segment `n` (1-based) of a text variant.
pub fn webvtt_segment_plan<'p>(
    p: &'p Presentation,
    v: &Variant,
    n: u64,
    opts: &HlsOptions,
) -> Result<TextSegment<'p>, PackageError> {
    let t = listed_track(p, v, HlsResource::WebVtt)?;
    let clock = text_clock(p, t);
    let table = segments(p, clock, opts.target);
    let k = table
        .by_number(n)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{n} of {}", t.id())))?;
    let range = table
        .samples(k)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{n} of {}", t.id())))?;
    let c = clock.index();
    let ms = |t: u64| (u128::from(t) * 1000 / u128::from(c.timescale.max(1))) as u64;
    let (start_ms, end_ms) = (ms(c.dts(range.start)), ms(c.dts(range.end)));
    let idx = t.index();
    let to_text = |ms: u64| (u128::from(ms) * u128::from(idx.timescale) / 1000) as u64;
    // The media timestamp of presentation time 0: CMAF segments present the first frame at
    // time 0, TS segments at the TS timeline's offset.
    let mpegts = if opts.fmp4 {
        0
    } else {
        super::ts::TIMELINE_OFFSET
    };
    Ok(TextSegment {
        track: t,
        samples: samples_overlapping(idx, to_text(start_ms), to_text(end_ms).max(1)),
        start_ms,
        end_ms,
        mpegts,
    })
}

/// The WebVTT text of a segment from its samples' bytes (`samples` as listed by the plan).
pub fn webvtt_segment(
    seg: &TextSegment<'_>,
    samples: &[(Sample, &[u8])],
) -> Result<String, PackageError> {
    let ts = u128::from(seg.track.index().timescale.max(1));
    let ms = |t: u64| (u128::from(t) * 1000 / ts) as u64;
    let mut cues = Vec::new();
    for (s, data) in samples {
        let (start, end) = (ms(s.dts), ms(s.dts.saturating_add(u64::from(s.duration))));
        let read = match &seg.track.entry.fourcc.0 {
            b"wvtt" => crate::text::wvtt::cues(data, start, end),
            _ => crate::text::ttml::cues(data, start, end),
        };
        let found = read.map_err(|e| {
            PackageError::Media(format!("{} sample {}: {e}", seg.track.id(), s.index))
        })?;
        cues.extend(found);
    }
    // A cue that spans segments goes into each with its full timing, as RFC 8216 §3.5 asks;
    // players drop the repeats.
    cues.retain(|c| c.start_ms < seg.end_ms && c.end_ms > seg.start_ms);
    Ok(crate::text::webvtt::write(&cues, Some(seg.mpegts)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::fixtures::ladder;
    use crate::url::{HlsPlaylist, HlsSegmentFormat, HlsTarget, Route, RouteOptions, Target};
    use crate::url::{SegmentIndex, TrackRef};

    fn opts(fmp4: bool, version: u32) -> HlsOptions {
        HlsOptions {
            target: crate::package::DEFAULT_SEGMENT_LENGTH,
            name: "p".into(),
            fmp4,
            version,
            query: String::new(),
            key: None,
            skip: false,
            ad_markers: Default::default(),
        }
    }

    fn variant(tracks: &[(&str, u64)]) -> Variant {
        Variant {
            tracks: tracks
                .iter()
                .enumerate()
                .map(|(i, (n, b))| TrackRef {
                    // The first track carries the presentation's name, as URLs write it.
                    name: if i == 0 {
                        format!("p-{n}")
                    } else {
                        n.to_string()
                    },
                    bitrate: *b,
                })
                .collect(),
        }
    }

    const V1: (&str, u64) = ("video", 165_000);
    const V2: (&str, u64) = ("video", 273_000);
    const ENG: (&str, u64) = ("audio_eng", 128_000);
    const FRA: (&str, u64) = ("audio_fra", 128_000);
    const SUBS: (&str, u64) = ("textstream_eng", 1000);

    fn not_listed<T: std::fmt::Debug>(r: Result<T, PackageError>) {
        match r {
            Err(PackageError::NoSuchTrack(_)) => {}
            other => panic!("expected NoSuchTrack (404), got {other:?}"),
        }
    }

    #[test]
    fn a_track_named_again_and_again_is_not_a_variant() {
        let p = ladder();
        let o = opts(false, 4);
        let sixteen = variant(&[V1; 16]);
        not_listed(ts_segment_samples(&p, &sixteen, 1, &o));
        not_listed(ts_playlist(&p, &sixteen, &o));
        not_listed(segment_number_at(&p, &sixteen, 0, &o));
        not_listed(iframe_playlist(&p, &sixteen, &o, &mut |_, _| Ok(1)));
        not_listed(ts_segment_samples(&p, &variant(&[V1, V1]), 1, &o));
        not_listed(ts_segment_samples(&p, &variant(&[ENG, ENG, V1]), 1, &o));
        // The error names the combination, cut for the log line.
        let err = ts_segment_samples(&p, &sixteen, 1, &o).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
        assert!(err.to_string().contains("MPEG-TS segment"), "{err}");
    }

    #[test]
    fn ts_variants_are_the_masters_combinations() {
        let p = ladder();
        for version in [3, 4] {
            let o = opts(false, version);
            // Listed by one version or the other: a video alone, the first audio then a video,
            // an audio alone.
            for ok in [
                variant(&[V1]),
                variant(&[V2]),
                variant(&[ENG, V1]),
                variant(&[ENG, V2]),
                variant(&[ENG]),
                variant(&[FRA]),
            ] {
                assert_eq!(
                    ts_segment_samples(&p, &ok, 1, &o).unwrap().len(),
                    ok.tracks.len()
                );
                ts_playlist(&p, &ok, &o).unwrap();
            }
            for bad in [
                variant(&[V1, V2]),
                variant(&[V1, ENG]),
                variant(&[FRA, V1]),
                variant(&[ENG, FRA]),
                variant(&[ENG, V1, V2]),
                variant(&[SUBS, V1]),
            ] {
                not_listed(ts_segment_samples(&p, &bad, 1, &o));
                not_listed(ts_playlist(&p, &bad, &o));
            }
            // Subtitles have a playlist of WebVTT segments, never TS segments.
            ts_playlist(&p, &variant(&[SUBS]), &o).unwrap();
            not_listed(ts_segment_samples(&p, &variant(&[SUBS]), 1, &o));
        }
    }

    #[test]
    fn unknown_tracks_and_segments_are_404() {
        let p = ladder();
        let o = opts(false, 4);
        not_listed(ts_playlist(&p, &variant(&[("video", 1)]), &o));
        assert!(matches!(
            ts_segment_samples(&p, &variant(&[V1]), 99, &o),
            Err(PackageError::NoSuchSegment(_))
        ));
    }

    #[test]
    fn packed_audio_names_one_audio_track() {
        let p = ladder();
        let o = opts(false, 4);
        assert_eq!(
            packed_audio_samples(&p, &variant(&[FRA]), 1, &o)
                .unwrap()
                .len(),
            1
        );
        for bad in [
            variant(&[V1]),
            variant(&[ENG, V1]),
            variant(&[SUBS]),
            variant(&[ENG, ENG]),
        ] {
            not_listed(packed_audio_samples(&p, &bad, 1, &o));
        }
    }

    #[test]
    fn webvtt_segments_are_for_subtitle_tracks_only() {
        let p = ladder();
        for fmp4 in [false, true] {
            let o = opts(fmp4, 4);
            webvtt_segment_plan(&p, &variant(&[SUBS]), 1, &o).unwrap();
            for bad in [variant(&[V1]), variant(&[ENG]), variant(&[SUBS, SUBS])] {
                not_listed(webvtt_segment_plan(&p, &bad, 1, &o));
            }
        }
    }

    #[test]
    fn fmp4_names_exactly_one_audio_or_video_track() {
        let p = ladder();
        let o = opts(true, 4);
        for ok in [variant(&[V1]), variant(&[FRA])] {
            init_segment(&p, &ok).unwrap();
            fmp4_segment(&p, &ok, 1, &o).unwrap();
            media_playlist(&p, &ok, &o).unwrap();
        }
        // A subtitle rendition's fMP4 playlist lists WebVTT segments, not fMP4 ones.
        let subs = media_playlist(&p, &variant(&[SUBS]), &o).unwrap();
        assert!(subs.contains(".vtt") && !subs.contains(".m4s"), "{subs}");
        not_listed(init_segment(&p, &variant(&[SUBS])));
        not_listed(fmp4_segment(&p, &variant(&[SUBS]), 1, &o));
        for bad in [variant(&[ENG, V1]), variant(&[V1, V1]), variant(&[V1; 16])] {
            not_listed(init_segment(&p, &bad));
            not_listed(fmp4_segment(&p, &bad, 1, &o));
            not_listed(media_playlist(&p, &bad, &o));
        }
    }

    #[test]
    fn iframe_playlists_are_for_listed_video_variants() {
        let p = ladder();
        let mut key_frame = |_: &Track, _: u32| Ok(1000);
        let ts = opts(false, 4);
        iframe_playlist(&p, &variant(&[V1]), &ts, &mut key_frame).unwrap();
        iframe_playlist(&p, &variant(&[ENG, V1]), &ts, &mut key_frame).unwrap();
        let fmp4 = opts(true, 4);
        iframe_playlist(&p, &variant(&[V2]), &fmp4, &mut key_frame).unwrap();
        for (bad, o) in [
            (variant(&[ENG]), &ts),
            (variant(&[SUBS]), &ts),
            (variant(&[V1, V2]), &ts),
            (variant(&[ENG, V1]), &fmp4),
            (variant(&[FRA]), &fmp4),
        ] {
            not_listed(iframe_playlist(&p, &bad, o, &mut key_frame));
        }
    }

    #[test]
    fn other_text_tracks_are_not_subtitles() {
        let p = ladder();
        let mut t = p.tracks[5].clone();
        t.entry.fourcc = crate::mp4::FourCC(*b"tx3g");
        let mut p = p;
        p.tracks[5] = t;
        for fmp4 in [false, true] {
            let o = opts(fmp4, 4);
            assert!(!master(&p, &o).unwrap().contains("SUBTITLES"));
            not_listed(ts_playlist(&p, &variant(&[SUBS]), &o));
            not_listed(media_playlist(&p, &variant(&[SUBS]), &o));
            not_listed(webvtt_segment_plan(&p, &variant(&[SUBS]), 1, &o));
        }
    }

    /// Resolves `rel` against the directory of `base` (both under the presentation).
    fn join(base: &str, rel: &str) -> String {
        let mut dir: Vec<&str> = base.split('/').collect();
        dir.pop();
        for part in rel.split('/') {
            match part {
                ".." => {
                    dir.pop();
                }
                p => dir.push(p),
            }
        }
        dir.join("/")
    }

    fn uris(playlist: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in playlist.lines() {
            if let Some((_, rest)) = line.split_once("URI=\"") {
                out.extend(rest.split('"').next().map(str::to_string));
            } else if !line.starts_with('#') && !line.is_empty() {
                out.push(line.to_string());
            }
        }
        out
    }

    fn target(path: &str) -> HlsTarget {
        match Route::parse(path.as_bytes(), b"", RouteOptions::default()) {
            Ok(Route {
                target: Target::Hls(t),
                ..
            }) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    /// Fetches `path` as the glue would; returns the playlist text for playlists.
    fn fetch(p: &Presentation, path: &str, o: &HlsOptions) -> Option<String> {
        fn served<T>(path: &str, r: Result<T, PackageError>) -> T {
            r.unwrap_or_else(|e| panic!("{path}: {e}"))
        }
        let listed = |r| served(path, r);
        match target(path) {
            HlsTarget::Master => Some(listed(master(p, o))),
            HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::Media,
                fmp4: true,
            } => Some(listed(media_playlist(p, &variant, &opts(true, o.version)))),
            HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::Media,
                fmp4: false,
            } => Some(listed(ts_playlist(p, &variant, &opts(false, o.version)))),
            HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::IFrames,
                ..
            } => Some(listed(iframe_playlist(p, &variant, o, &mut |_, _| Ok(1)))),
            HlsTarget::Init { variant } => {
                served(path, init_segment(p, &variant));
                None
            }
            HlsTarget::Segment {
                variant,
                index: SegmentIndex::Number(n),
                format,
            } => {
                match format {
                    HlsSegmentFormat::Ts => {
                        served(path, ts_segment_samples(p, &variant, n, o));
                    }
                    HlsSegmentFormat::Aac => {
                        served(path, packed_audio_samples(p, &variant, n, o));
                    }
                    HlsSegmentFormat::WebVtt => {
                        served(path, webvtt_segment_plan(p, &variant, n, o));
                    }
                    HlsSegmentFormat::Fmp4 => {
                        served(path, fmp4_segment(p, &variant, n, o));
                    }
                }
                None
            }
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn a_delta_update_skips_what_ends_before_can_skip_until() {
        let clock = Clock {
            durations: vec![2.0; 20],
            target: 2,
            first_number: 1,
            wall_clock_ms: Vec::new(),
            timelines: Vec::new(),
            complete: false,
            live: false,
            starts_secs: (0..20).map(|k| f64::from(k) * 2.0).collect(),
            end_secs: 40.0,
            ad_markers: Vec::new(),
            low_latency: Some(LowLatency {
                parts: (0..20)
                    .map(|k| {
                        if k >= 17 {
                            vec![(1.0, true), (1.0, false)]
                        } else {
                            Vec::new()
                        }
                    })
                    .collect(),
                part_target: 1.0,
                growing: true,
                next_starts_segment: false,
            }),
            skip: true,
        };
        let x = write_playlist(7, &clock, "", "p", "m4s", "");
        // 40 s listed, CAN-SKIP-UNTIL 12 s: the 13 segments that end before 28 s are skipped.
        assert!(x.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=13\n"), "{x}");
        assert!(
            x.contains("CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=3.000"),
            "{x}"
        );
        let first = x.lines().find(|l| l.ends_with(".m4s")).unwrap();
        assert_eq!(first, "p-14.m4s", "{x}");
        // The growing segment 20 is listed by its parts, and the next one is hinted.
        assert!(!x.contains("\np-20.m4s"), "{x}");
        assert!(
            x.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p-20.2.m4s\""),
            "{x}"
        );
        let full = write_playlist(
            7,
            &Clock {
                skip: false,
                ..clock
            },
            "",
            "p",
            "m4s",
            "",
        );
        assert!(
            !full.contains("EXT-X-SKIP") && full.contains("\np-1.m4s"),
            "{full}"
        );
    }

    #[test]
    fn every_url_a_playlist_lists_is_served() {
        let p = ladder();
        for (fmp4, version) in [(false, 3), (false, 4), (true, 4)] {
            let o = opts(fmp4, version);
            let mut pending = vec!["/v/p.ism/.m3u8".to_string()];
            let mut seen = 0;
            while let Some(path) = pending.pop() {
                seen += 1;
                if let Some(text) = fetch(&p, &path, &o) {
                    pending.extend(uris(&text).iter().map(|u| join(&path, u)));
                }
            }
            assert!(seen > 10, "{seen} URLs for fmp4={fmp4} v{version}");
        }
    }
}
