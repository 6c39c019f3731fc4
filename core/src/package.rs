//! Packagers: pure functions from a [`Presentation`] and the request's options to manifest text
//! or fragment plans. One module per protocol; the segmentation they share is here.

pub mod ad_markers;
pub mod chunks;
pub mod dash;
pub mod hds;
pub mod hls;
pub mod mss;
pub mod ts;

use crate::index::TrackKind;
use std::sync::Arc;

use crate::presentation::{Presentation, SegmentKey, Track};
use crate::segment::{aligned_segments, reference_segments, SegmentTable};

/// A target segment duration: seconds as a fraction, so that segments can follow a frame
/// rate exactly (`48/25`), as `*_minimum_fragment_length` writes it.
pub use crate::ism::FragmentLength as SegmentLength;

/// Default target segment duration: two seconds.
pub const DEFAULT_SEGMENT_LENGTH: SegmentLength = SegmentLength {
    numerator: 2,
    denominator: 1,
};

/// The kinds of track the DASH MPD and the Smooth manifest list (an adaptation set or
/// StreamIndex each); a URL naming a track of another kind is 404.
const LISTED_KINDS: [TrackKind; 3] = [TrackKind::Video, TrackKind::Audio, TrackKind::Text];

/// Why a packager could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// The URL names a track the presentation does not have.
    #[error("no track {0} in the presentation")]
    NoSuchTrack(String),
    /// The URL names a segment or time the track does not have.
    #[error("no segment {0}")]
    NoSuchSegment(String),
    /// A track with no samples.
    #[error("track {0} is empty")]
    EmptyTrack(String),
    /// The request cannot be packaged in this format.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Fragment(#[from] crate::fragment::FragmentError),
    /// The source's samples cannot be read as their format says.
    #[error("{0}")]
    Media(String),
}

/// The segments of `track`: video tracks are cut at their own sync samples every
/// `target`; audio and text tracks at the instants the reference (first video) track is
/// cut, so every format's segment N covers the same time in every track.
pub fn segments(p: &Presentation, track: &Track, target: SegmentLength) -> Arc<SegmentTable> {
    let reference = p.reference();
    let splices = splice_points_us(p);
    let build = || {
        if let Some(live) = &p.live {
            // Live: segments are the archived fragments, so they keep their boundaries and
            // numbers while the window moves. Other tracks cut where the reference's
            // fragments start (the same instants, in their own timescale) — except in a
            // low-latency window, where every track keeps its own segments: a part is a whole
            // chunk of its track, which a cut at another track's time would split after the
            // part was served.
            if let Some(cuts) = live.cuts_of(&track.source) {
                if track.kind == TrackKind::Video
                    || std::ptr::eq(track, reference)
                    || live.low_latency
                {
                    return crate::segment::cut_at_times(
                        track.index(),
                        &cuts.starts,
                        cuts.first_number,
                    );
                }
            }
            if let Some(cuts) = live.cuts_of(&reference.source) {
                let (from, to) = (reference.index().timescale, track.index().timescale);
                let starts: Vec<u64> = cuts
                    .starts
                    .iter()
                    .map(|&t| {
                        (u128::from(t) * u128::from(to)).div_ceil(u128::from(from.max(1))) as u64
                    })
                    .collect();
                return crate::segment::cut_at_times(track.index(), &starts, cuts.first_number);
            }
        }
        if track.kind == TrackKind::Video || std::ptr::eq(track, reference) {
            return spliced(track, target, &splices);
        }
        let ref_table = spliced(reference, target, &splices);
        aligned_segments(track.index(), reference.index(), &ref_table)
    };
    match &p.segment_cache {
        Some(cache) => cache.get_or_build(
            SegmentKey {
                reference: (reference.media.identity.clone(), reference.track_no),
                track: (track.media.identity.clone(), track.track_no),
                target,
                splices: splices.clone(),
            },
            build,
        ),
        None => Arc::new(build()),
    }
}

/// Where a VOD presentation with `splice_media` on must start segments: each ad cue's
/// splice point (the start of a break, its return), µs of media time, ascending. A live
/// channel's segments are its encoder's fragments (an encoder that splices starts one at the
/// splice point), so none there.
fn splice_points_us(p: &Presentation) -> Vec<u64> {
    // Every segment request asks: a presentation without cues answers at once.
    if p.live.is_some() || !p.has_events() {
        return Vec::new();
    }
    if p.manifest.options().ok().and_then(|o| o.splice_media) != Some(true) {
        return Vec::new();
    }
    let events = p.events();
    let mut out: Vec<u64> = ad_markers::cues(&events)
        .iter()
        .filter(|c| c.role != ad_markers::CueRole::Command)
        .map(|c| {
            (u128::from(c.event.time) * 1_000_000 / u128::from(c.event.timescale.max(1))) as u64
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A track's own segments, started at the splice points (`splices`, µs) too; a splice point
/// without a key frame is logged, with where its boundary went.
fn spliced(track: &Track, target: SegmentLength, splices: &[u64]) -> SegmentTable {
    let idx = track.index();
    let table = reference_segments(idx, target.numerator, target.denominator);
    if splices.is_empty() {
        return table;
    }
    // Cue times and decode times share the media timeline (manifests place cues by it).
    let ts = u128::from(idx.timescale);
    let ticks: Vec<u64> = splices
        .iter()
        .map(|&us| (u128::from(us) * ts / 1_000_000) as u64)
        .collect();
    let (table, missed) =
        crate::segment::with_splices(idx, table, &ticks, target.ticks(idx.timescale));
    for m in missed {
        tracing::warn!(
            "splice_media: no key frame in track {} at the splice point {:.3} s; its segment \
             starts at the next key frame, {:.3} s",
            track.id(),
            m.wanted as f64 / ts as f64,
            m.cut_at as f64 / ts as f64
        );
    }
    table
}

/// Seconds as ISO 8601 (`PT1H2M3.500S`), for MPD durations.
pub fn iso8601_duration(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let s = rem as f64 / 1000.0;
    let mut out = String::from("PT");
    if h > 0 {
        out += &format!("{h}H");
    }
    if m > 0 {
        out += &format!("{m}M");
    }
    out += &format!("{s:.3}S");
    out
}

/// `num/den` reduced, or `num` when den divides it: frame rates as DASH and HLS write them.
pub fn rational(num: u64, den: u64) -> (u64, u64) {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = gcd(num, den).max(1);
    (num / g, den / g)
}

/// A video track's frame rate from its most common sample duration.
pub fn frame_rate(track: &Track) -> Option<(u64, u64)> {
    let t = track.index();
    let n = t.sample_count().min(100);
    if n == 0 {
        return None;
    }
    let mut counts: Vec<(u32, u32)> = Vec::new();
    for s in t.samples(0..n) {
        match counts.iter_mut().find(|(d, _)| *d == s.duration) {
            Some(c) => c.1 += 1,
            None => counts.push((s.duration, 1)),
        }
    }
    let (delta, _) = counts.into_iter().max_by_key(|&(_, c)| c)?;
    (delta > 0).then(|| rational(u64::from(t.timescale), u64::from(delta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(iso8601_duration(4.0), "PT4.000S");
        assert_eq!(iso8601_duration(7200.152), "PT2H0.152S");
        assert_eq!(iso8601_duration(3725.5), "PT1H2M5.500S");
    }

    #[test]
    fn rationals() {
        assert_eq!(rational(12800, 512), (25, 1));
        assert_eq!(rational(30000, 1001), (30000, 1001));
    }
}

/// Presentations of the committed fixtures (`tests/fixtures/`) for the packagers' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::index::{build_index, MediaIndex};
    use crate::ism::{ServerManifest, TrackEntry, TrackKind};
    use crate::presentation::{Presentation, PresentationError, SourceLoader};
    use crate::source::MmapSource;

    struct Files;

    impl SourceLoader for Files {
        fn load(&mut self, rel: &str) -> Result<Arc<MediaIndex>, PresentationError> {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures")
                .join(rel);
            let failed = |what: String| PresentationError::Source {
                src: rel.into(),
                what,
            };
            let src = MmapSource::open(&path).map_err(|e| failed(e.to_string()))?;
            Ok(Arc::new(
                build_index(&src).map_err(|e| failed(e.to_string()))?,
            ))
        }
    }

    /// A track: kind, fixture file, trackName, systemBitrate, systemLanguage.
    pub type Spec<'a> = (TrackKind, &'a str, &'a str, u64, Option<&'a str>);

    /// The presentation of an in-memory server manifest, its sources read from the fixtures.
    pub fn from_manifest(m: ServerManifest) -> Result<Presentation, PresentationError> {
        Presentation::from_manifest(m, &mut Files)
    }

    /// The presentation of an in-memory server manifest listing `tracks`.
    pub fn presentation(tracks: &[Spec<'_>]) -> Result<Presentation, PresentationError> {
        let mut m = ServerManifest::default();
        for &(kind, src, name, bitrate, lang) in tracks {
            let mut t = TrackEntry::new(kind, src);
            t.system_bitrate = Some(bitrate);
            t.system_language = lang.map(str::to_string);
            t.set_param("trackName", name);
            m.tracks.push(t);
        }
        Presentation::from_manifest(m, &mut Files)
    }

    /// Three video renditions, English and French audio, English TTML subtitles, with these
    /// names (video ×3, audio ×2, text).
    pub fn ladder_named(names: [&str; 6]) -> Result<Presentation, PresentationError> {
        presentation(&[
            (
                TrackKind::Video,
                "ladder-video-360.ismv",
                names[0],
                165_000,
                None,
            ),
            (
                TrackKind::Video,
                "ladder-video-480.ismv",
                names[1],
                273_000,
                None,
            ),
            (
                TrackKind::Video,
                "ladder-video-720.ismv",
                names[2],
                432_000,
                None,
            ),
            (
                TrackKind::Audio,
                "ladder-audio-eng.isma",
                names[3],
                128_000,
                Some("eng"),
            ),
            (
                TrackKind::Audio,
                "ladder-audio-fra.isma",
                names[4],
                128_000,
                Some("fra"),
            ),
            (
                TrackKind::Text,
                "subtitles-eng.mp4",
                names[5],
                1000,
                Some("eng"),
            ),
        ])
    }

    /// [`ladder_named`] with the usual names.
    pub fn ladder() -> Presentation {
        ladder_named([
            "video",
            "video",
            "video",
            "audio_eng",
            "audio_fra",
            "textstream_eng",
        ])
        .expect("the ladder fixtures load")
    }
}
