//! Typed access to the metas an operator sets with `mp4split --<fmt>.<opt>=v` (stored as
//! `<meta name="<fmt>_<opt>" content="v"/>`, docs/COMPAT.md §3).

use crate::url::{MpdSegmentTemplate, MPD_SEGMENT_TEMPLATE_VALUES};

use super::{parse_decimal, parse_decimal_u32, Decimal, IsmError, Meta};

/// The presentation options of a server manifest. `None` / empty means "not set": defaults
/// are the packagers' business.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresentationOptions {
    /// `hls_client_manifest_version`: HLS playlist `EXT-X-VERSION`.
    pub hls_client_manifest_version: Option<u32>,
    /// `hls_fmp4`: HLS with fMP4 (CMAF) segments instead of MPEG-TS.
    pub hls_fmp4: Option<bool>,
    /// `mpd_segment_template`: DASH addressing (`time`, `number_timeline`, `number`).
    pub mpd_segment_template: Option<MpdSegmentTemplate>,
    /// `dvr_window_length`, seconds.
    pub dvr_window_length: Option<u64>,
    /// `archive_length`, seconds.
    pub archive_length: Option<u64>,
    /// `archiving`.
    pub archiving: Option<bool>,
    /// `archive_segment_length`, seconds.
    pub archive_segment_length: Option<u64>,
    /// `restart_on_encoder_reconnect`.
    pub restart_on_encoder_reconnect: Option<bool>,
    /// `time_shift`, seconds: live manifests end this long before the live edge.
    pub time_shift: Option<u64>,
    /// `mpd_min_buffer_time`, seconds.
    pub mpd_min_buffer_time: Option<u64>,
    /// `mpd_suggested_presentation_delay`, seconds.
    pub mpd_suggested_presentation_delay: Option<u64>,
    /// `low_latency`: a live channel's playout shows each segment's chunks as they land
    /// (LL-HLS parts and blocking reloads, LL-DASH chunked segments).
    pub low_latency: Option<bool>,
    /// `timed_metadata`: pass the presentation's timed events (ad cues) on to the manifests;
    /// on unless set to false.
    pub timed_metadata: Option<bool>,
    /// `hls_ad_markers`: how HLS media playlists mark ad cues.
    pub hls_ad_markers: Option<HlsAdMarkers>,
    /// `splice_media`: a VOD presentation's segments start at each ad cue's splice point.
    pub splice_media: Option<bool>,
    /// `mpd_events`: where DASH carries ad cues.
    pub mpd_events: Option<MpdEvents>,
    /// `mpd_splice_periods`: a VOD MPD starts a period at each ad cue's splice point.
    pub mpd_splice_periods: Option<bool>,
    /// Every `<fmt>_minimum_fragment_length` meta, as (`<fmt>`, length), in document order;
    /// `<fmt>` is written as in the meta name (`hls`, `mpd`, `iss`, `hds`).
    pub minimum_fragment_lengths: Vec<(String, FragmentLength)>,
}

/// How an HLS media playlist marks SCTE-35 cues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HlsAdMarkers {
    /// `EXT-X-DATERANGE` with the cue's bytes (`SCTE35-OUT`/`-IN`/`-CMD`, RFC 8216 §4.4.5.1).
    #[default]
    DateRange,
    /// `EXT-X-CUE-OUT`, `EXT-X-CUE-OUT-CONT` on each segment of the break, `EXT-X-CUE-IN`:
    /// the form many ad stitchers and older players read.
    CueOut,
    /// Both.
    Both,
}

/// The values `hls_ad_markers` takes, as errors list them.
pub const HLS_AD_MARKERS_VALUES: &str = "it must be daterange, cue_out or both";

impl HlsAdMarkers {
    pub fn parse(s: &str) -> Option<HlsAdMarkers> {
        match s.to_ascii_lowercase().as_str() {
            "daterange" => Some(HlsAdMarkers::DateRange),
            "cue_out" | "cue-out" => Some(HlsAdMarkers::CueOut),
            "both" => Some(HlsAdMarkers::Both),
            _ => None,
        }
    }

    /// Writes `EXT-X-DATERANGE` tags.
    pub fn date_ranges(self) -> bool {
        self != HlsAdMarkers::CueOut
    }

    /// Writes `EXT-X-CUE-OUT` / `-CONT` / `-IN` tags.
    pub fn cue_out(self) -> bool {
        self != HlsAdMarkers::DateRange
    }
}

/// Where DASH carries SCTE-35 cues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MpdEvents {
    /// An `EventStream` in the MPD (SCTE 214-1 `xml+bin`).
    #[default]
    Inline,
    /// `emsg` boxes in the media segments, announced by an `InbandEventStream`.
    Inband,
    /// Both.
    Both,
}

/// The values `mpd_events` takes, as errors list them.
pub const MPD_EVENTS_VALUES: &str = "it must be inline, inband or both";

impl MpdEvents {
    pub fn parse(s: &str) -> Option<MpdEvents> {
        match s.to_ascii_lowercase().as_str() {
            "inline" => Some(MpdEvents::Inline),
            "inband" => Some(MpdEvents::Inband),
            "both" => Some(MpdEvents::Both),
            _ => None,
        }
    }

    pub fn inline(self) -> bool {
        self != MpdEvents::Inband
    }

    pub fn inband(self) -> bool {
        self != MpdEvents::Inline
    }
}

/// A duration in seconds written as an integer (`4`) or a fraction (`48/25`, so that fragment
/// boundaries can follow a frame rate exactly, as mp4split accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentLength {
    /// Numerator, seconds.
    pub numerator: u64,
    /// Denominator, never 0.
    pub denominator: u64,
}

impl FragmentLength {
    /// The length as floating-point seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.numerator as f64 / self.denominator as f64
    }

    /// The length in ticks of `timescale` per second, rounded down.
    pub fn ticks(self, timescale: u32) -> u64 {
        let ticks = u128::from(self.numerator) * u128::from(timescale)
            / u128::from(self.denominator.max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Parses `n` or `n/d` (ASCII digits, `d` > 0).
    pub fn parse(s: &str) -> Option<FragmentLength> {
        let (numerator, denominator) = match s.split_once('/') {
            Some((n, d)) => (decimal(n)?, decimal(d)?),
            None => (decimal(s)?, 1),
        };
        if denominator == 0 {
            return None;
        }
        Some(FragmentLength {
            numerator,
            denominator,
        })
    }
}

const MINIMUM_FRAGMENT_LENGTH_SUFFIX: &str = "_minimum_fragment_length";

pub(super) fn from_metas(metas: &[Meta]) -> Result<PresentationOptions, IsmError> {
    let find = |name: &str| metas.iter().find(|m| m.name.eq_ignore_ascii_case(name));
    let mut options = PresentationOptions {
        hls_client_manifest_version: find("hls_client_manifest_version")
            .map(|m| {
                typed(
                    m,
                    parse_decimal_u32,
                    "it must be a decimal integer below 2^32",
                )
            })
            .transpose()?,
        hls_fmp4: find("hls_fmp4").map(boolean).transpose()?,
        mpd_segment_template: find("mpd_segment_template")
            .map(|m| typed(m, MpdSegmentTemplate::parse, MPD_SEGMENT_TEMPLATE_VALUES))
            .transpose()?,
        dvr_window_length: find("dvr_window_length").map(seconds).transpose()?,
        archive_length: find("archive_length").map(seconds).transpose()?,
        archiving: find("archiving").map(boolean).transpose()?,
        archive_segment_length: find("archive_segment_length").map(seconds).transpose()?,
        restart_on_encoder_reconnect: find("restart_on_encoder_reconnect")
            .map(boolean)
            .transpose()?,
        time_shift: find("time_shift").map(seconds).transpose()?,
        mpd_min_buffer_time: find("mpd_min_buffer_time").map(seconds).transpose()?,
        mpd_suggested_presentation_delay: find("mpd_suggested_presentation_delay")
            .map(seconds)
            .transpose()?,
        low_latency: find("low_latency").map(boolean).transpose()?,
        timed_metadata: find("timed_metadata").map(boolean).transpose()?,
        splice_media: find("splice_media").map(boolean).transpose()?,
        mpd_splice_periods: find("mpd_splice_periods").map(boolean).transpose()?,
        mpd_events: find("mpd_events")
            .map(|m| typed(m, MpdEvents::parse, MPD_EVENTS_VALUES))
            .transpose()?,
        hls_ad_markers: find("hls_ad_markers")
            .map(|m| typed(m, HlsAdMarkers::parse, HLS_AD_MARKERS_VALUES))
            .transpose()?,
        minimum_fragment_lengths: Vec::new(),
    };
    for meta in metas {
        let Some(format) = strip_suffix_ignore_case(&meta.name, MINIMUM_FRAGMENT_LENGTH_SUFFIX)
        else {
            continue;
        };
        if format.is_empty() {
            continue;
        }
        let length = typed(
            meta,
            FragmentLength::parse,
            "it must be seconds as an integer or a fraction like 48/25",
        )?;
        options
            .minimum_fragment_lengths
            .push((format.to_owned(), length));
    }
    Ok(options)
}

fn typed<T>(
    meta: &Meta,
    parse: impl FnOnce(&str) -> Option<T>,
    reason: &'static str,
) -> Result<T, IsmError> {
    parse(&meta.content).ok_or_else(|| IsmError::BadMeta {
        name: meta.name.clone(),
        value: meta.content.clone(),
        reason,
    })
}

fn seconds(meta: &Meta) -> Result<u64, IsmError> {
    typed(meta, decimal, "it must be a whole number of seconds")
}

/// `true` / `false` / `1` / `0` (ASCII case-insensitive); an empty content is a bare flag, so
/// true.
fn boolean(meta: &Meta) -> Result<bool, IsmError> {
    typed(
        meta,
        |s| {
            if s.is_empty() || s == "1" || s.eq_ignore_ascii_case("true") {
                Some(true)
            } else if s == "0" || s.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        },
        "it must be true, false, 1 or 0",
    )
}

fn decimal(s: &str) -> Option<u64> {
    match parse_decimal(s) {
        Decimal::Value(v) => Some(v),
        Decimal::NotANumber | Decimal::Overflow => None,
    }
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let split = s.len().checked_sub(suffix.len())?;
    let (head, tail) = (s.get(..split)?, s.get(split..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}
