//! The virtual part of a URL: everything after the server manifest.

use super::{ManifestKind, RouteError, RouteOptions};

/// Most tracks a variant name may join (`<name>-a=1-b=2-…`); real variants join two or three.
pub const MAX_TRACKS_PER_VARIANT: usize = 16;

/// What a request asks of a presentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No virtual path: the server manifest itself, or the progressive file for a bare `.mp4`.
    Presentation,
    /// Microsoft Smooth Streaming.
    Smooth(SmoothTarget),
    /// MPEG-DASH.
    Dash(DashTarget),
    /// Apple HLS (MPEG-TS, packed audio, WebVTT or fMP4 segments).
    Hls(HlsTarget),
    /// Adobe HDS.
    Hds(HdsTarget),
    /// Live ingest and the publishing-point API (`.isml` only).
    Live(LiveTarget),
}

/// A track named in a URL as `<trackName>=<systemBitrate>`.
///
/// In the first track of a DASH representation or HLS variant name the presentation name comes
/// before the track name, joined by `-` (`video-audio_eng=128000`). Track names may themselves
/// contain `-`, so the split is not made here: `name` holds everything before `=` and
/// [`TrackRef::matches`] compares it with the real track names. Names are written encoded
/// (see [`crate::url::name`]); `name` is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRef {
    /// The track name, possibly preceded by `<presentation>-`, decoded.
    pub name: String,
    /// The track's `systemBitrate`.
    pub bitrate: u64,
}

impl TrackRef {
    /// True when this reference names the track `track_name` with bitrate `bitrate`.
    pub fn matches(&self, track_name: &str, bitrate: u64) -> bool {
        if self.bitrate != bitrate {
            return false;
        }
        self.name == track_name
            || self
                .name
                .strip_suffix(track_name)
                .is_some_and(|prefix| prefix.ends_with('-'))
    }
}

/// One or more tracks served together (an HLS variant muxes audio and video; an HDS fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// The tracks in URL order.
    pub tracks: Vec<TrackRef>,
}

/// Which segment of a track a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentIndex {
    /// A 1-based segment number (HLS `-<n>.ts`, DASH `$Number$`).
    Number(u64),
    /// A start time in the track's (or manifest's) timescale.
    Time(u64),
    /// A DASH `$Time$` or `$Number$`, depending on the presentation's `mpd_segment_template`,
    /// which only the server manifest and the query know.
    Templated(u64),
}

/// Smooth Streaming requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmoothTarget {
    /// `Manifest`: the client manifest.
    Manifest,
    /// `QualityLevels(<bitrate>)/Fragments(<trackName>=<time>)`.
    Fragment {
        /// The track's `systemBitrate`.
        bitrate: u64,
        /// The StreamIndex name (the track name), decoded.
        track: String,
        /// Start time in the manifest timescale.
        time: u64,
    },
}

/// MPEG-DASH requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashTarget {
    /// `<name>.mpd`: the MPD.
    Manifest,
    /// `<name>-<trackName>=<bitrate>.dash`: an initialization segment.
    Init { track: TrackRef },
    /// `<name>-<trackName>=<bitrate>-<time|number>.dash`: a media segment.
    Media {
        track: TrackRef,
        index: SegmentIndex,
    },
}

/// Kinds of HLS media playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsPlaylist {
    /// The variant's media playlist.
    Media,
    /// `keyframes/<variant>.m3u8`: the I-frame playlist.
    IFrames,
}

/// HLS segment containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsSegmentFormat {
    /// `.ts`: MPEG-2 transport stream.
    Ts,
    /// `.aac`: packed audio (ADTS with an ID3 timestamp).
    Aac,
    /// `.webvtt` / `.vtt`: WebVTT subtitles.
    WebVtt,
    /// `.m4s` under `hls/`: fMP4 / CMAF.
    Fmp4,
}

/// HLS requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HlsTarget {
    /// `<any>.m3u8`: the master (multivariant) playlist.
    Master,
    /// `<variant>.m3u8`, `hls/<variant>.m3u8` (fMP4) or `keyframes/<variant>.m3u8`.
    Playlist {
        variant: Variant,
        kind: HlsPlaylist,
        /// Asked under `hls/`: the fMP4 (CMAF) rendition of the playlist.
        fmp4: bool,
    },
    /// `hls/<variant>.m4s`: the fMP4 initialization segment (`EXT-X-MAP`).
    Init { variant: Variant },
    /// `<variant>-<n>.ts` and the other segment forms.
    Segment {
        variant: Variant,
        index: SegmentIndex,
        format: HlsSegmentFormat,
    },
    /// `hls/<variant>-<n>.<part>.m4s`: LL-HLS partial segment `part` (from 0) of segment `n`
    /// (fMP4).
    Part {
        variant: Variant,
        segment: u64,
        part: u64,
    },
}

/// HDS requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HdsTarget {
    /// `<any>.f4m`: the manifest.
    Manifest,
    /// `<variant>Seg<segment>-Frag<fragment>`.
    Fragment {
        variant: Variant,
        segment: u32,
        fragment: u64,
    },
}

/// Live ingest and publishing-point API requests on a `.isml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveTarget {
    /// `Streams(<name>)`: an encoder's POST/PUT of one or more tracks.
    Ingest { stream: String },
    /// `state`: idle, started or stopped.
    State,
    /// `statistics`: per-stream counters.
    Statistics,
    /// `archive`: per-track archived ranges.
    Archive,
    /// `time`: the origin's clock (xs:dateTime with milliseconds), which a low-latency MPD's
    /// `UTCTiming` points players at.
    Clock,
}

impl Target {
    pub(super) fn parse(
        kind: ManifestKind,
        virtual_path: &str,
        opts: RouteOptions,
    ) -> Result<Target, RouteError> {
        let unknown = || RouteError::UnknownVirtualPath(virtual_path.to_string());
        let path = virtual_path.strip_suffix('/').unwrap_or(virtual_path);
        if path.is_empty() {
            return Ok(Target::Presentation);
        }
        if path.split('/').any(str::is_empty) {
            return Err(unknown());
        }
        if kind == ManifestKind::Live {
            if let Some(live) = parse_live(path)? {
                return Ok(Target::Live(live));
            }
        }
        if let Some(t) = parse_smooth(path, opts)? {
            return Ok(t);
        }
        if let Some(t) = parse_dash(path)? {
            return Ok(Target::Dash(t));
        }
        if let Some(t) = parse_hls(path)? {
            return Ok(Target::Hls(t));
        }
        if let Some(t) = parse_hds(path)? {
            return Ok(Target::Hds(t));
        }
        Err(unknown())
    }
}

fn malformed(path: &str, reason: &'static str) -> RouteError {
    RouteError::MalformedVirtualPath {
        path: path.to_string(),
        reason,
    }
}

/// Parses a decimal number of at most 20 digits without sign; `None` when it is not one.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Like [`parse_decimal`] for a value the URL shape says must be a number: malformed otherwise.
fn require_decimal(s: &str, path: &str, what: &'static str) -> Result<u64, RouteError> {
    parse_decimal(s).ok_or_else(|| malformed(path, what))
}

/// Matches `<name>(<inner>)` with `name` compared case-insensitively. Returns the inner text, or
/// an error when the parentheses are unbalanced or nested.
fn call<'a>(seg: &'a str, name: &str, path: &str) -> Result<Option<&'a str>, RouteError> {
    let Some(head) = seg.get(..name.len()) else {
        return Ok(None);
    };
    if !head.eq_ignore_ascii_case(name) {
        return Ok(None);
    }
    let rest = &seg[name.len()..];
    if !rest.starts_with('(') {
        return Ok(None);
    }
    let inner = rest[1..]
        .strip_suffix(')')
        .ok_or_else(|| malformed(path, "unbalanced parentheses"))?;
    if inner.contains('(') || inner.contains(')') {
        return Err(malformed(path, "unbalanced parentheses"));
    }
    Ok(Some(inner))
}

fn parse_live(path: &str) -> Result<Option<LiveTarget>, RouteError> {
    if let Some(stream) = call(path, "Streams", path)? {
        if stream.is_empty() || stream.contains('/') {
            return Err(malformed(path, "empty stream name"));
        }
        return Ok(Some(LiveTarget::Ingest {
            stream: stream.to_string(),
        }));
    }
    Ok(match path {
        "state" => Some(LiveTarget::State),
        "statistics" => Some(LiveTarget::Statistics),
        "archive" => Some(LiveTarget::Archive),
        "time" => Some(LiveTarget::Clock),
        _ => None,
    })
}

/// The legacy `format=` names of the rewrite rules.
#[derive(Clone, Copy)]
enum LegacyFormat {
    Hls,
    Dash,
    Hds,
}

fn legacy_format(value: &str) -> Option<LegacyFormat> {
    match value.to_ascii_lowercase().as_str() {
        "m3u8-aapl" | "m3u8-aapl-v3" | "m3u8-cmaf" => Some(LegacyFormat::Hls),
        "mpd-time-csf" | "mpd-time-cmaf" => Some(LegacyFormat::Dash),
        "f4m-f4f" => Some(LegacyFormat::Hds),
        _ => None,
    }
}

/// Splits `a,format=x` into (`a`, Some(`x`)); `format=x` alone gives ("", Some(x)).
fn split_format(inner: &str) -> (&str, Option<&str>) {
    match inner.rsplit_once(',') {
        Some((head, tail)) => match tail.strip_prefix("format=") {
            Some(f) => (head, Some(f)),
            None => (inner, None),
        },
        None => match inner.strip_prefix("format=") {
            Some(f) => ("", Some(f)),
            None => (inner, None),
        },
    }
}

/// The internal rewrite rules: a legacy spelling is read as its current form unless
/// `usp_skip_rewrite` turned them off, when it is an unknown path (404) like any other.
fn rewritten(path: &str, opts: RouteOptions) -> Result<(), RouteError> {
    if opts.legacy_forms {
        Ok(())
    } else {
        Err(RouteError::UnknownVirtualPath(path.to_string()))
    }
}

fn parse_smooth(path: &str, opts: RouteOptions) -> Result<Option<Target>, RouteError> {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        [one] => {
            if *one == "Manifest" {
                return Ok(Some(Target::Smooth(SmoothTarget::Manifest)));
            }
            // Rules: `manifest` in any case, and IIS's client-manifest file `<name>.ismc`.
            if one.eq_ignore_ascii_case("manifest") || has_extension(one, "ismc") {
                rewritten(path, opts)?;
                return Ok(Some(Target::Smooth(SmoothTarget::Manifest)));
            }
            let Some(inner) = call(one, "Manifest", path)? else {
                return Ok(None);
            };
            rewritten(path, opts)?;
            let ("", Some(format)) = split_format(inner) else {
                return Err(malformed(path, "expected Manifest(format=…)"));
            };
            let target = match legacy_format(format) {
                Some(LegacyFormat::Hls) => Target::Hls(HlsTarget::Master),
                Some(LegacyFormat::Dash) => Target::Dash(DashTarget::Manifest),
                Some(LegacyFormat::Hds) => Target::Hds(HdsTarget::Manifest),
                None => return Err(malformed(path, "unknown format")),
            };
            Ok(Some(target))
        }
        [levels, item] => {
            let Some(levels_inner) = call(levels, "QualityLevels", path)? else {
                return Ok(None);
            };
            // Rules: `QualityLevels`/`Fragments` in another case, and MS-SSTR's custom
            // attributes `QualityLevels(<bitrate>,<name>=<value>…)`, which name nothing here.
            let (bitrate, custom_attributes) = match levels_inner.split_once(',') {
                Some((bitrate, _)) => (bitrate, true),
                None => (levels_inner, false),
            };
            if custom_attributes || !levels.starts_with("QualityLevels(") {
                rewritten(path, opts)?;
            }
            let bitrate = require_decimal(bitrate, path, "bitrate is not a number")?;
            if let Some(inner) = call(item, "Fragments", path)? {
                if !item.starts_with("Fragments(") {
                    rewritten(path, opts)?;
                }
                let (body, format) = split_format(inner);
                let (track, time) = body
                    .split_once('=')
                    .ok_or_else(|| malformed(path, "expected Fragments(<track>=<time>)"))?;
                if track.is_empty() {
                    return Err(malformed(path, "empty track name"));
                }
                let track = track_name(track, path)?;
                let track_ref = TrackRef {
                    name: track.clone(),
                    bitrate,
                };
                let Some(format) = format else {
                    let time = require_decimal(time, path, "time is not a number")?;
                    return Ok(Some(Target::Smooth(SmoothTarget::Fragment {
                        bitrate,
                        track,
                        time,
                    })));
                };
                rewritten(path, opts)?;
                let init = time.eq_ignore_ascii_case("i");
                let index = || -> Result<SegmentIndex, RouteError> {
                    Ok(SegmentIndex::Time(require_decimal(
                        time,
                        path,
                        "time is not a number",
                    )?))
                };
                let variant = || Variant {
                    tracks: vec![track_ref.clone()],
                };
                let target = match legacy_format(format) {
                    Some(LegacyFormat::Dash) if init => Target::Dash(DashTarget::Init {
                        track: track_ref.clone(),
                    }),
                    Some(LegacyFormat::Dash) => Target::Dash(DashTarget::Media {
                        track: track_ref.clone(),
                        index: index()?,
                    }),
                    Some(LegacyFormat::Hls) => Target::Hls(HlsTarget::Segment {
                        variant: variant(),
                        index: index()?,
                        format: HlsSegmentFormat::Ts,
                    }),
                    Some(LegacyFormat::Hds) | None => {
                        return Err(malformed(path, "unknown format"))
                    }
                };
                return Ok(Some(target));
            }
            if let Some(inner) = call(item, "Manifest", path)? {
                rewritten(path, opts)?;
                let (track, Some(format)) = split_format(inner) else {
                    return Err(malformed(path, "expected Manifest(<track>,format=…)"));
                };
                if track.is_empty() {
                    return Err(malformed(path, "empty track name"));
                }
                return match legacy_format(format) {
                    Some(LegacyFormat::Hls) => Ok(Some(Target::Hls(HlsTarget::Playlist {
                        variant: Variant {
                            tracks: vec![TrackRef {
                                name: track_name(track, path)?,
                                bitrate,
                            }],
                        },
                        kind: HlsPlaylist::Media,
                        fmp4: false,
                    }))),
                    _ => Err(malformed(path, "unknown format")),
                };
            }
            Err(RouteError::UnknownVirtualPath(path.to_string()))
        }
        _ => Ok(None),
    }
}

/// A track name from its URL text: percent-decoded once more (see [`super::name`]).
fn track_name(text: &str, path: &str) -> Result<String, RouteError> {
    super::decode_name(text).map_err(|e| malformed(path, e.reason()))
}

/// Parses `<name>-<t1>=<b1>[-<t2>=<b2>…]` into its track references, each name decoded;
/// `Ok(None)` when the text does not have that shape.
fn parse_variant(stem: &str, path: &str) -> Result<Option<Variant>, RouteError> {
    let Some(mut variant) = variant_shape(stem) else {
        return Ok(None);
    };
    for t in &mut variant.tracks {
        t.name = track_name(&t.name, path)?;
    }
    Ok(Some(variant))
}

/// Splits `<name>-<t1>=<b1>[-<t2>=<b2>…]` at its `=` and `-`, names left as written; `None`
/// when the text does not have that shape. Encoded names hold no `=`, and `-` only where the
/// name does, which [`TrackRef::matches`] allows for.
fn variant_shape(stem: &str) -> Option<Variant> {
    let mut parts = stem.split('=');
    let mut name = parts.next()?.to_string();
    let mut tracks = Vec::new();
    let mut rest: Vec<&str> = parts.collect();
    if rest.is_empty() || rest.len() > MAX_TRACKS_PER_VARIANT {
        return None;
    }
    let last = rest.pop()?;
    for part in rest {
        let (bitrate, next) = part.split_once('-')?;
        if name.is_empty() || next.is_empty() {
            return None;
        }
        tracks.push(TrackRef {
            name,
            bitrate: parse_decimal(bitrate)?,
        });
        name = next.to_string();
    }
    if name.is_empty() {
        return None;
    }
    tracks.push(TrackRef {
        name,
        bitrate: parse_decimal(last)?,
    });
    Some(Variant { tracks })
}

/// Splits `<stem>-<n>` into (`stem`, n) when the text ends with a decimal number after a dash.
fn split_trailing_number(stem: &str) -> Option<(&str, u64)> {
    let (head, n) = stem.rsplit_once('-')?;
    Some((head, parse_decimal(n)?))
}

fn parse_dash(path: &str) -> Result<Option<DashTarget>, RouteError> {
    let path_in_dir = path.strip_prefix("dash/").unwrap_or(path);
    if path_in_dir.contains('/') {
        return Ok(None);
    }
    if has_extension(path_in_dir, "mpd") {
        return Ok(Some(DashTarget::Manifest));
    }
    let Some(stem) = strip_extension(path_in_dir, "dash") else {
        return Ok(None);
    };
    if let Some(v) = parse_variant(stem, path)? {
        let [track] = <[TrackRef; 1]>::try_from(v.tracks)
            .map_err(|_| malformed(path, "a DASH representation names one track"))?;
        return Ok(Some(DashTarget::Init { track }));
    }
    if let Some((rep, value)) = split_trailing_number(stem) {
        if let Some(v) = parse_variant(rep, path)? {
            let [track] = <[TrackRef; 1]>::try_from(v.tracks)
                .map_err(|_| malformed(path, "a DASH representation names one track"))?;
            return Ok(Some(DashTarget::Media {
                track,
                index: SegmentIndex::Templated(value),
            }));
        }
    }
    Err(malformed(
        path,
        "expected <name>-<track>=<bitrate>[-<time>].dash",
    ))
}

fn has_extension(name: &str, ext: &str) -> bool {
    strip_extension(name, ext).is_some()
}

/// `name` without `.ext` (case-insensitive) when it ends so.
fn strip_extension<'a>(name: &'a str, ext: &str) -> Option<&'a str> {
    let (stem, e) = name.rsplit_once('.')?;
    e.eq_ignore_ascii_case(ext).then_some(stem)
}

fn parse_hls(path: &str) -> Result<Option<HlsTarget>, RouteError> {
    let (dir, file) = match path.rsplit_once('/') {
        Some((dir, file)) => (Some(dir), file),
        None => (None, path),
    };
    match dir {
        None | Some("hls") | Some("keyframes") => {}
        Some(_) => return Ok(None),
    }
    if let Some(stem) = strip_extension(file, "m3u8") {
        return Ok(Some(match parse_variant(stem, path)? {
            Some(variant) => HlsTarget::Playlist {
                variant,
                kind: if dir == Some("keyframes") {
                    HlsPlaylist::IFrames
                } else {
                    HlsPlaylist::Media
                },
                fmp4: dir == Some("hls"),
            },
            None if dir == Some("keyframes") => {
                return Err(malformed(path, "an I-frame playlist names a variant"))
            }
            // A name with `=` is meant as a variant; serving the master for a typo hides it.
            None if stem.contains('=') => {
                return Err(malformed(path, "expected <name>-<track>=<bitrate>.m3u8"))
            }
            None => HlsTarget::Master,
        }));
    }
    if dir == Some("keyframes") {
        return Ok(None);
    }
    let segment_formats = [
        ("ts", HlsSegmentFormat::Ts),
        ("aac", HlsSegmentFormat::Aac),
        ("webvtt", HlsSegmentFormat::WebVtt),
        ("vtt", HlsSegmentFormat::WebVtt),
        ("m4s", HlsSegmentFormat::Fmp4),
    ];
    let Some((stem, format)) = segment_formats
        .iter()
        .find_map(|(ext, f)| strip_extension(file, ext).map(|s| (s, *f)))
    else {
        return Ok(None);
    };
    if format == HlsSegmentFormat::Fmp4 {
        if let Some((segment_stem, part)) = stem
            .rsplit_once('.')
            .and_then(|(head, p)| Some((head, parse_decimal(p)?)))
        {
            if let Some((variant, segment)) = split_trailing_number(segment_stem) {
                if let Some(variant) = parse_variant(variant, path)? {
                    if segment == 0 {
                        return Err(malformed(path, "HLS segment numbers start at 1"));
                    }
                    return Ok(Some(HlsTarget::Part {
                        variant,
                        segment,
                        part,
                    }));
                }
            }
        }
        if let Some(variant) = parse_variant(stem, path)? {
            return Ok(Some(HlsTarget::Init { variant }));
        }
    }
    let expected = || malformed(path, "expected <variant>-<number>");
    let (variant, n) = split_trailing_number(stem).ok_or_else(expected)?;
    let variant = parse_variant(variant, path)?.ok_or_else(expected)?;
    if n == 0 {
        return Err(malformed(path, "HLS segment numbers start at 1"));
    }
    Ok(Some(HlsTarget::Segment {
        variant,
        index: SegmentIndex::Number(n),
        format,
    }))
}

fn parse_hds(path: &str) -> Result<Option<HdsTarget>, RouteError> {
    if path.contains('/') {
        return Ok(None);
    }
    if has_extension(path, "f4m") {
        return Ok(Some(HdsTarget::Manifest));
    }
    let Some(pos) = path.rfind("Seg") else {
        return Ok(None);
    };
    let (stem, seg_frag) = path.split_at(pos);
    let Some((seg, frag)) = seg_frag["Seg".len()..].split_once("-Frag") else {
        return Ok(None);
    };
    let segment = require_decimal(seg, path, "segment is not a number")?;
    let fragment = require_decimal(frag, path, "fragment is not a number")?;
    let segment = u32::try_from(segment).map_err(|_| malformed(path, "segment out of range"))?;
    if fragment == 0 || segment == 0 {
        return Err(malformed(path, "HDS segments and fragments start at 1"));
    }
    let stem = stem.strip_suffix('-').unwrap_or(stem);
    let variant = parse_variant(stem, path)?
        .ok_or_else(|| malformed(path, "expected <variant>Seg<n>-Frag<n>"))?;
    Ok(Some(HdsTarget::Fragment {
        variant,
        segment,
        fragment,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::Route;

    fn target(path: &str) -> Result<Target, RouteError> {
        Route::parse(path.as_bytes(), b"", RouteOptions::default()).map(|r| r.target)
    }

    fn strict_target(path: &str) -> Result<Target, RouteError> {
        Route::parse(
            path.as_bytes(),
            b"",
            RouteOptions {
                legacy_forms: false,
            },
        )
        .map(|r| r.target)
    }

    fn tr(name: &str, bitrate: u64) -> TrackRef {
        TrackRef {
            name: name.to_string(),
            bitrate,
        }
    }

    fn variant(tracks: &[(&str, u64)]) -> Variant {
        Variant {
            tracks: tracks.iter().map(|(n, b)| tr(n, *b)).collect(),
        }
    }

    #[test]
    fn presentation_without_virtual_path() {
        assert_eq!(target("/v.ism"), Ok(Target::Presentation));
        assert_eq!(target("/v.ism/"), Ok(Target::Presentation));
        assert_eq!(target("/v.mp4"), Ok(Target::Presentation));
        assert!(target("/v.ism//Manifest").is_err());
    }

    #[test]
    fn smooth() {
        assert_eq!(
            target("/v.ism/Manifest"),
            Ok(Target::Smooth(SmoothTarget::Manifest))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(800000)/Fragments(video=20000000)"),
            Ok(Target::Smooth(SmoothTarget::Fragment {
                bitrate: 800000,
                track: "video".into(),
                time: 20000000
            }))
        );
        assert_eq!(
            target("/v.ism/qualitylevels(1)/fragments(audio_eng=0)"),
            Ok(Target::Smooth(SmoothTarget::Fragment {
                bitrate: 1,
                track: "audio_eng".into(),
                time: 0
            }))
        );
    }

    #[test]
    fn smooth_malformed() {
        for bad in [
            "/v.ism/QualityLevels(800000/Fragments(video=0)",
            "/v.ism/QualityLevels(800000))/Fragments(video=0)",
            "/v.ism/QualityLevels((1))/Fragments(video=0)",
            "/v.ism/QualityLevels(abc)/Fragments(video=0)",
            "/v.ism/QualityLevels(1)/Fragments(video=x)",
            "/v.ism/QualityLevels(1)/Fragments(video)",
            "/v.ism/QualityLevels(1)/Fragments(=0)",
            "/v.ism/QualityLevels(1)/Fragments(video=0",
            "/v.ism/QualityLevels(99999999999999999999999)/Fragments(video=0)",
            "/v.ism/QualityLevels(1)/Fragments(video=-1)",
            "/v.ism/QualityLevels(1)/Nonsense(video=0)",
        ] {
            let err = target(bad).unwrap_err();
            assert_eq!(
                crate::Error::from(err.clone()).status(),
                404,
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn legacy_forms() {
        assert_eq!(
            target("/v.ism/Manifest(format=m3u8-aapl)"),
            Ok(Target::Hls(HlsTarget::Master))
        );
        assert_eq!(
            target("/v.ism/manifest(format=mpd-time-csf)"),
            Ok(Target::Dash(DashTarget::Manifest))
        );
        assert_eq!(
            target("/v.ism/Manifest(format=f4m-f4f)"),
            Ok(Target::Hds(HdsTarget::Manifest))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(128000)/Manifest(audio,format=m3u8-aapl)"),
            Ok(Target::Hls(HlsTarget::Playlist {
                variant: variant(&[("audio", 128000)]),
                kind: HlsPlaylist::Media,
                fmp4: false
            }))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(128000)/Fragments(audio=10,format=m3u8-aapl)"),
            Ok(Target::Hls(HlsTarget::Segment {
                variant: variant(&[("audio", 128000)]),
                index: SegmentIndex::Time(10),
                format: HlsSegmentFormat::Ts
            }))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(128000)/Fragments(audio=i,format=mpd-time-csf)"),
            Ok(Target::Dash(DashTarget::Init {
                track: tr("audio", 128000)
            }))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(128000)/Fragments(audio=5,format=mpd-time-csf)"),
            Ok(Target::Dash(DashTarget::Media {
                track: tr("audio", 128000),
                index: SegmentIndex::Time(5)
            }))
        );
        assert!(target("/v.ism/Manifest(format=bogus)").is_err());
        assert!(target("/v.ism/Manifest(video)").is_err());
    }

    #[test]
    fn legacy_forms_refused_with_skip_rewrite() {
        for path in [
            "/v.ism/Manifest(format=m3u8-aapl)",
            "/v.ism/QualityLevels(1)/Manifest(a,format=m3u8-aapl)",
            "/v.ism/QualityLevels(1)/Fragments(a=1,format=m3u8-aapl)",
        ] {
            assert!(
                matches!(strict_target(path), Err(RouteError::UnknownVirtualPath(_))),
                "{path}"
            );
        }
        assert!(strict_target("/v.ism/Manifest").is_ok());
        assert!(strict_target("/v.ism/QualityLevels(1)/Fragments(a=1)").is_ok());
    }

    #[test]
    fn rewrite_rules_read_legacy_smooth_spellings() {
        let manifest = Ok(Target::Smooth(SmoothTarget::Manifest));
        let fragment = Ok(Target::Smooth(SmoothTarget::Fragment {
            bitrate: 128000,
            track: "audio".into(),
            time: 20,
        }));
        let rewritten = [
            ("/v.ism/manifest", &manifest),
            ("/v.ism/MANIFEST", &manifest),
            ("/v.ism/v.ismc", &manifest),
            ("/v.ism/Other.ISMC", &manifest),
            (
                "/v.ism/qualitylevels(128000)/fragments(audio=20)",
                &fragment,
            ),
            (
                "/v.ism/QualityLevels(128000)/fragments(audio=20)",
                &fragment,
            ),
            (
                "/v.ism/QUALITYLEVELS(128000)/Fragments(audio=20)",
                &fragment,
            ),
            (
                "/v.ism/QualityLevels(128000,Lang=en)/Fragments(audio=20)",
                &fragment,
            ),
        ];
        for (path, expected) in rewritten {
            assert_eq!(&target(path), expected, "{path}");
            assert!(
                matches!(strict_target(path), Err(RouteError::UnknownVirtualPath(_))),
                "{path} with usp_skip_rewrite"
            );
        }
        assert_eq!(
            strict_target("/v.ism/QualityLevels(128000)/Fragments(audio=20)"),
            fragment
        );
        assert!(target("/v.ism/QualityLevels(x,Lang=en)/Fragments(audio=20)").is_err());
    }

    #[test]
    fn dash() {
        assert_eq!(
            target("/v.ism/.mpd"),
            Ok(Target::Dash(DashTarget::Manifest))
        );
        assert_eq!(
            target("/v.ism/stream.MPD"),
            Ok(Target::Dash(DashTarget::Manifest))
        );
        assert_eq!(
            target("/v.ism/dash/v-audio_eng=128000.dash"),
            Ok(Target::Dash(DashTarget::Init {
                track: tr("v-audio_eng", 128000)
            }))
        );
        assert_eq!(
            target("/v.ism/dash/v-video=800000-180000.dash"),
            Ok(Target::Dash(DashTarget::Media {
                track: tr("v-video", 800000),
                index: SegmentIndex::Templated(180000)
            }))
        );
        assert_eq!(
            target("/v.ism/v-video=800000-0.dash"),
            Ok(Target::Dash(DashTarget::Media {
                track: tr("v-video", 800000),
                index: SegmentIndex::Templated(0)
            }))
        );
        for bad in [
            "/v.ism/dash/v-video.dash",
            "/v.ism/dash/v-video=abc.dash",
            "/v.ism/dash/v-a=1-b=2.dash",
            "/v.ism/dash/v-video=1-x.dash",
            "/v.ism/dash/=1.dash",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
        assert!(target("/v.ism/other/v-video=1.dash").is_err());
    }

    #[test]
    fn track_ref_matching_allows_dashes_in_track_names() {
        let t = tr("movie-audio-en=1", 1);
        let t = TrackRef {
            name: t.name.trim_end_matches("=1").to_string(),
            bitrate: 1,
        };
        assert!(t.matches("audio-en", 1));
        assert!(t.matches("en", 1));
        assert!(!t.matches("audio-en", 2));
        assert!(!t.matches("dio-en", 1));
        assert!(tr("video", 5).matches("video", 5));
    }

    #[test]
    fn hls() {
        assert_eq!(target("/v.ism/.m3u8"), Ok(Target::Hls(HlsTarget::Master)));
        assert_eq!(
            target("/v.ism/master.m3u8"),
            Ok(Target::Hls(HlsTarget::Master))
        );
        assert_eq!(
            target("/v.ism/v-audio_eng=128000-video=800000.m3u8"),
            Ok(Target::Hls(HlsTarget::Playlist {
                variant: variant(&[("v-audio_eng", 128000), ("video", 800000)]),
                kind: HlsPlaylist::Media,
                fmp4: false
            }))
        );
        assert_eq!(
            target("/v.ism/keyframes/v-video=800000.m3u8"),
            Ok(Target::Hls(HlsTarget::Playlist {
                variant: variant(&[("v-video", 800000)]),
                kind: HlsPlaylist::IFrames,
                fmp4: false
            }))
        );
        assert_eq!(
            target("/v.ism/v-audio_eng=128000-video=800000-12.ts"),
            Ok(Target::Hls(HlsTarget::Segment {
                variant: variant(&[("v-audio_eng", 128000), ("video", 800000)]),
                index: SegmentIndex::Number(12),
                format: HlsSegmentFormat::Ts
            }))
        );
        assert_eq!(
            target("/v.ism/hls/v-video=800000.m4s"),
            Ok(Target::Hls(HlsTarget::Init {
                variant: variant(&[("v-video", 800000)])
            }))
        );
        assert_eq!(
            target("/v.ism/hls/v-video=800000-3.m4s"),
            Ok(Target::Hls(HlsTarget::Segment {
                variant: variant(&[("v-video", 800000)]),
                index: SegmentIndex::Number(3),
                format: HlsSegmentFormat::Fmp4
            }))
        );
        assert_eq!(
            target("/v.ism/v-textstream_eng=1000-1.webvtt"),
            Ok(Target::Hls(HlsTarget::Segment {
                variant: variant(&[("v-textstream_eng", 1000)]),
                index: SegmentIndex::Number(1),
                format: HlsSegmentFormat::WebVtt
            }))
        );
        assert!(matches!(
            target("/v.ism/v-audio=1-1.aac"),
            Ok(Target::Hls(HlsTarget::Segment {
                format: HlsSegmentFormat::Aac,
                ..
            }))
        ));
        for bad in [
            "/v.ism/v-video=800000-0.ts",
            "/v.ism/v-video=800000.ts",
            "/v.ism/v-video-1.ts",
            "/v.ism/keyframes/master.m3u8",
            "/v.ism/keyframes/v-video=1-1.ts",
            "/v.ism/other/v-video=1.m3u8",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn track_names_are_decoded_once() {
        // As nginx hands the path over: the manifests wrote `%252F`, nginx made it `%2F`.
        assert_eq!(
            target("/v.ism/p-a%2Fb=1-x%22y=2-3.ts"),
            Ok(Target::Hls(HlsTarget::Segment {
                variant: variant(&[("p-a/b", 1), ("x\"y", 2)]),
                index: SegmentIndex::Number(3),
                format: HlsSegmentFormat::Ts
            }))
        );
        assert_eq!(
            target("/v.ism/dash/my%20p-v%3D1=5-0.dash"),
            Ok(Target::Dash(DashTarget::Media {
                track: tr("my p-v=1", 5),
                index: SegmentIndex::Templated(0)
            }))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(7)/Fragments(%28a%2Cb%29=0)"),
            Ok(Target::Smooth(SmoothTarget::Fragment {
                bitrate: 7,
                track: "(a,b)".into(),
                time: 0
            }))
        );
        assert_eq!(
            target("/v.ism/QualityLevels(7)/Manifest(p%25q,format=m3u8-aapl)"),
            Ok(Target::Hls(HlsTarget::Playlist {
                variant: variant(&[("p%q", 7)]),
                kind: HlsPlaylist::Media,
                fmp4: false
            }))
        );
        assert_eq!(
            target("/v.ism/hls/p-%C3%A9=1.m4s"),
            Ok(Target::Hls(HlsTarget::Init {
                variant: variant(&[("p-é", 1)])
            }))
        );
        // `%25` is decoded once: `%2541` names the track `%41`, not `A`.
        assert_eq!(
            target("/v.ism/p-%2541=1.m3u8"),
            Ok(Target::Hls(HlsTarget::Playlist {
                variant: variant(&[("p-%41", 1)]),
                kind: HlsPlaylist::Media,
                fmp4: false
            }))
        );
        for bad in [
            "/v.ism/p-a%2=1.m3u8",
            "/v.ism/p-a%zz=1-1.ts",
            "/v.ism/p-%0A=1.m3u8",
            "/v.ism/p-%C2%85=1-1.vtt",
            "/v.ism/p-%FF=1.m3u8",
            "/v.ism/dash/p-%0D=1.dash",
            "/v.ism/QualityLevels(1)/Fragments(a%0Ab=0)",
            "/v.ism/p-%00=1Seg1-Frag1",
        ] {
            let err = target(bad).unwrap_err();
            assert!(
                matches!(err, RouteError::MalformedVirtualPath { .. }),
                "{bad}: {err:?}"
            );
            assert_eq!(crate::Error::from(err.clone()).status(), 404, "{bad}");
            assert!(!err.to_string().chars().any(char::is_control), "{err}");
        }
    }

    #[test]
    fn variant_limits() {
        let many: Vec<String> = (0..=MAX_TRACKS_PER_VARIANT)
            .map(|i| format!("t{i}=1"))
            .collect();
        let path = format!("/v.ism/v-{}.m3u8", many.join("-"));
        // Too many tracks: refused, not mistaken for the master playlist.
        assert_eq!(crate::Error::from(target(&path).unwrap_err()).status(), 404);
        assert_eq!(variant_shape("a=1-=2"), None);
        assert_eq!(variant_shape("a=1-b"), None);
        assert_eq!(variant_shape("a=1--b=2").map(|v| v.tracks.len()), Some(2));
        assert_eq!(variant_shape("=1"), None);
        assert_eq!(variant_shape("a"), None);
    }

    #[test]
    fn hds() {
        assert_eq!(target("/v.ism/v.f4m"), Ok(Target::Hds(HdsTarget::Manifest)));
        assert_eq!(
            target("/v.ism/v-audio=128000-video=800000Seg1-Frag3"),
            Ok(Target::Hds(HdsTarget::Fragment {
                variant: variant(&[("v-audio", 128000), ("video", 800000)]),
                segment: 1,
                fragment: 3
            }))
        );
        assert_eq!(
            target("/v.ism/v-video=1-Seg1-Frag3"),
            Ok(Target::Hds(HdsTarget::Fragment {
                variant: variant(&[("v-video", 1)]),
                segment: 1,
                fragment: 3
            }))
        );
        for bad in [
            "/v.ism/v-video=1Seg1-Frag0",
            "/v.ism/v-video=1Seg0-Frag1",
            "/v.ism/v-video=1Segx-Frag1",
            "/v.ism/v-video=1Seg99999999999-Frag1",
            "/v.ism/videoSeg1-Frag1",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn live() {
        assert_eq!(
            target("/c.isml/Streams(video)"),
            Ok(Target::Live(LiveTarget::Ingest {
                stream: "video".into()
            }))
        );
        assert_eq!(target("/c.isml/state"), Ok(Target::Live(LiveTarget::State)));
        assert_eq!(
            target("/c.isml/statistics"),
            Ok(Target::Live(LiveTarget::Statistics))
        );
        assert_eq!(
            target("/c.isml/archive"),
            Ok(Target::Live(LiveTarget::Archive))
        );
        assert_eq!(target("/c.isml/time"), Ok(Target::Live(LiveTarget::Clock)));
        // Live manifests work on .isml like on .ism.
        assert_eq!(
            target("/c.isml/.mpd"),
            Ok(Target::Dash(DashTarget::Manifest))
        );
        assert!(target("/c.isml/Streams()").is_err());
        assert!(target("/c.isml/Streams(a").is_err());
        // Ingest and the API exist only for publishing points.
        assert!(target("/v.ism/Streams(video)").is_err());
        assert!(target("/v.ism/state").is_err());
    }

    #[test]
    fn unknown_paths() {
        for bad in [
            "/v.ism/index.html",
            "/v.ism/Manifest/extra",
            "/v.ism/a/b/c.m3u8",
            "/v.ism/QualityLevels(1)/Fragments(v=1)/x",
            "/v.ism/v.ismv",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }
}
