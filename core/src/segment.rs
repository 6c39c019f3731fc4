//! Segmentation: cutting a presentation into segments of a target duration, aligned to the
//! reference (video) track's sync samples, with every other track cut at the same instants.
//!
//! Boundaries are sample indexes. Times are compared across timescales by exact integer
//! cross-multiplication (u128), so nothing drifts over hours of media.

use std::ops::Range;

use crate::index::{TrackIndex, TrackKind};

/// A track's segments: the first sample of each segment, then the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTable {
    /// `starts[k]` is the first sample of segment k; `starts.len()` segments.
    starts: Vec<u32>,
    end: u32,
    /// The number (HLS, DASH `$Number$`) of segment 0: 1, or for a live window the position
    /// of its first fragment in the channel.
    first_number: u64,
}

impl SegmentTable {
    /// Number of segments.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True without segments (an empty track).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The samples of segment `k` (0-based).
    pub fn samples(&self, k: usize) -> Option<Range<u32>> {
        let start = *self.starts.get(k)?;
        let end = self.starts.get(k + 1).copied().unwrap_or(self.end);
        Some(start..end)
    }

    /// The 0-based segment a segment number (HLS, DASH `$Number$`) names.
    pub fn by_number(&self, n: u64) -> Option<usize> {
        let k = usize::try_from(n.checked_sub(self.first_number)?).ok()?;
        (k < self.starts.len()).then_some(k)
    }

    /// The number of segment `k` (0-based).
    pub fn number(&self, k: usize) -> u64 {
        self.first_number + k as u64
    }

    /// The number of the first segment.
    pub fn first_number(&self) -> u64 {
        self.first_number
    }

    /// The segment whose first sample has decode time `t` exactly.
    pub fn by_start_time(&self, track: &TrackIndex, t: u64) -> Option<usize> {
        let k = self.starts.partition_point(|&s| track.dts(s) < t);
        (k < self.starts.len() && track.dts(self.starts[k]) == t).then_some(k)
    }

    /// The segment containing decode time `t`.
    pub fn containing(&self, track: &TrackIndex, t: u64) -> Option<usize> {
        if self.starts.is_empty() || t >= track.end_time() {
            return None;
        }
        let k = self.starts.partition_point(|&s| track.dts(s) <= t);
        k.checked_sub(1)
    }

    /// First samples of all segments.
    pub fn starts(&self) -> &[u32] {
        &self.starts
    }
}

/// Picks the track the others align to: the first video track, else the first track.
pub fn reference_track(tracks: &[&TrackIndex]) -> Option<usize> {
    tracks
        .iter()
        .position(|t| t.kind == TrackKind::Video)
        .or(if tracks.is_empty() { None } else { Some(0) })
}

/// Segment starts of the reference track: a new segment begins at the first sync sample at
/// least `target` seconds (`target_num / target_den`) after the current segment's start (with
/// half a sample of tolerance, so 2-second GOPs at 29.97 fps still give 2-second segments).
pub fn reference_segments(track: &TrackIndex, target_num: u64, target_den: u64) -> SegmentTable {
    let count = track.sample_count();
    let mut starts = Vec::new();
    if count == 0 {
        return SegmentTable {
            starts,
            end: 0,
            first_number: 1,
        };
    }
    // Target in track ticks, rounded down; exact enough at any real timescale.
    let target = (u128::from(target_num) * u128::from(track.timescale)
        / u128::from(target_den.max(1)))
    .max(1) as u64;
    starts.push(0);
    let mut seg_start = track.dts(0);
    let cut = |dts: u64, seg_start: u64, half: u64| dts.saturating_sub(seg_start) + half >= target;
    match track.sync_samples() {
        Some(sync) => {
            for &s in sync {
                if s == 0 {
                    continue;
                }
                let dts = track.dts(s);
                let half = u64::from(track.sample_duration(s)) / 2;
                if cut(dts, seg_start, half) {
                    starts.push(s);
                    seg_start = dts;
                }
            }
        }
        None => {
            // Every sample is a sync sample (audio, text): cut at the first sample that reaches
            // the target, found by time rather than by walking every sample.
            loop {
                let next = track.sample_at_or_after(seg_start + target);
                if next >= count {
                    break;
                }
                let prev = next.saturating_sub(1).max(*starts.last().unwrap_or(&0) + 1);
                // Prefer the sample closest to the target instant.
                let pick = if prev < next
                    && seg_start + target - track.dts(prev) < track.dts(next) - (seg_start + target)
                {
                    prev
                } else {
                    next
                };
                // A remainder shorter than half the target joins the last segment rather than
                // becoming a sliver of its own.
                if pick <= *starts.last().unwrap_or(&0)
                    || track.end_time().saturating_sub(track.dts(pick)) < target / 2
                {
                    break;
                }
                starts.push(pick);
                seg_start = track.dts(pick);
            }
        }
    }
    SegmentTable {
        starts,
        end: count,
        first_number: 1,
    }
}

/// A splice point that fell between key frames: the segment boundary went to the first key
/// frame after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissedSplice {
    /// The splice time and the boundary made for it, in track ticks.
    pub wanted: u64,
    pub cut_at: u64,
}

/// `table` (the reference track's segments) with a segment starting at each splice point
/// (`splices`: decode times in track ticks, ascending): at the key frame there, within half a
/// sample, else at the first key frame after it (reported, so the operator hears that the
/// encoder put none there). A regular boundary less than half the target after a splice is
/// dropped, so no sliver follows it.
pub fn with_splices(
    track: &TrackIndex,
    table: SegmentTable,
    splices: &[u64],
    target_ticks: u64,
) -> (SegmentTable, Vec<MissedSplice>) {
    let count = track.sample_count();
    if splices.is_empty() || count == 0 {
        return (table, Vec::new());
    }
    let mut forced: Vec<u32> = Vec::new();
    let mut missed = Vec::new();
    for &t in splices {
        let near = track.sample_at_or_after(t);
        let half = u64::from(track.sample_duration(near)) / 2;
        let mut s = track.sample_at_or_after(t.saturating_sub(half));
        while s < count && !track.is_sync(s) {
            s += 1;
        }
        if s >= count || s == 0 {
            continue;
        }
        let at = track.dts(s);
        if at > t + half {
            missed.push(MissedSplice {
                wanted: t,
                cut_at: at,
            });
        }
        forced.push(s);
    }
    forced.sort_unstable();
    forced.dedup();
    let mut starts: Vec<u32> = table
        .starts
        .iter()
        .copied()
        .filter(|&s| {
            // A regular boundary just after a splice would leave a sliver.
            let k = forced.partition_point(|&f| f <= s);
            k == 0
                || forced[k - 1] == s
                || track.dts(s) - track.dts(forced[k - 1]) >= target_ticks / 2
        })
        .chain(forced.iter().copied())
        .collect();
    starts.sort_unstable();
    starts.dedup();
    (
        SegmentTable {
            starts,
            end: table.end,
            first_number: table.first_number,
        },
        missed,
    )
}

/// A live track cut where its archived fragments start (`starts`, decode times of the
/// fragments in the window, in order), so a segment keeps its boundaries and its number while
/// the window moves. `first_number` is the number of the first fragment.
pub fn cut_at_times(track: &TrackIndex, starts: &[u64], first_number: u64) -> SegmentTable {
    let count = track.sample_count();
    let mut table = SegmentTable {
        starts: Vec::with_capacity(starts.len()),
        end: count,
        first_number,
    };
    for &t in starts {
        let s = track.sample_at_or_after(t);
        if s >= count {
            break;
        }
        // A fragment that does not start with a sync sample (an encoder cutting inside a GOP)
        // continues the segment before it.
        if !track.is_sync(s) {
            continue;
        }
        if table.starts.last().is_none_or(|&last| s > last) {
            table.starts.push(s);
        }
    }
    // Samples before the first cut (audio that began a little before the video's first
    // fragment) belong to the first segment.
    if let Some(first) = table.starts.first_mut() {
        *first = 0;
    }
    table
}

/// An fMP4 track cut where its stored fragments start (`usp_iss_pass_through`: each segment
/// is then one fragment as the file holds it). Fragments that do not start with a sync sample
/// continue the segment before them, as in [`cut_at_times`].
pub fn as_stored(track: &TrackIndex) -> SegmentTable {
    let count = track.sample_count();
    let mut starts: Vec<u32> = Vec::with_capacity(track.fragments.len());
    for f in &track.fragments {
        let s = f.first_sample;
        if s < count && track.is_sync(s) && starts.last().is_none_or(|&last| s > last) {
            starts.push(s);
        }
    }
    if let Some(first) = starts.first_mut() {
        *first = 0;
    }
    SegmentTable {
        starts,
        end: count,
        first_number: 1,
    }
}

/// Cuts `track` at the instants where `reference`'s segments start: each boundary is the first
/// sample of `track` whose decode time is at or after the reference boundary.
pub fn aligned_segments(
    track: &TrackIndex,
    reference: &TrackIndex,
    reference_table: &SegmentTable,
) -> SegmentTable {
    let count = track.sample_count();
    let first_number = reference_table.first_number;
    let mut starts = Vec::with_capacity(reference_table.len());
    if count == 0 {
        return SegmentTable {
            starts,
            end: 0,
            first_number,
        };
    }
    let ref_origin = reference.dts(0);
    let origin = track.dts(0);
    for (k, &s) in reference_table.starts.iter().enumerate() {
        if k == 0 {
            starts.push(0);
            continue;
        }
        // Boundary relative to each track's own start, in the track's timescale, rounded up.
        let rel = reference.dts(s) - ref_origin;
        let num = u128::from(rel) * u128::from(track.timescale);
        let den = u128::from(reference.timescale);
        let t = origin + num.div_ceil(den) as u64;
        let first = track.sample_at_or_after(t);
        if first >= count {
            break;
        }
        if first > *starts.last().unwrap_or(&0) {
            starts.push(first);
        }
    }
    SegmentTable {
        starts,
        end: count,
        first_number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build_index;
    use crate::source::MmapSource;
    use std::path::PathBuf;

    fn fixture(name: &str) -> crate::index::MediaIndex {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        build_index(&MmapSource::open(&p).unwrap()).unwrap()
    }

    #[test]
    fn splice_points_start_segments_at_their_key_frames() {
        let idx = fixture("progressive.mp4");
        let (video, audio) = (&idx.tracks[0], &idx.tracks[1]);
        let ts = u64::from(video.timescale);
        // Key frames every 2 s: a splice at 2 s is a boundary already; one at 1 s has no key
        // frame, so its boundary is the next key frame, reported.
        let (table, missed) = with_splices(video, reference_segments(video, 2, 1), &[2 * ts], ts);
        assert_eq!(table.starts(), reference_segments(video, 2, 1).starts());
        assert!(missed.is_empty());
        let (_, missed) = with_splices(video, reference_segments(video, 4, 1), &[ts], ts);
        assert_eq!(
            missed,
            [MissedSplice {
                wanted: ts,
                cut_at: 2 * ts
            }]
        );
        // Audio (every sample a sync sample): cut at the splice, within half a sample, and
        // the regular boundary just after it dropped.
        let ats = u64::from(audio.timescale);
        let regular = reference_segments(audio, 2, 1);
        let splice = ats * 19 / 10;
        let (table, missed) = with_splices(audio, regular, &[splice], 2 * ats);
        assert!(missed.is_empty());
        let starts: Vec<u64> = table.starts().iter().map(|&s| audio.dts(s)).collect();
        assert_eq!(starts.len(), 2, "{starts:?}");
        assert!(starts[1].abs_diff(splice) <= 512, "{starts:?}");
    }

    #[test]
    fn two_second_gops_give_two_second_segments() {
        let idx = fixture("progressive.mp4");
        let video = &idx.tracks[0];
        let table = reference_segments(video, 2, 1);
        assert_eq!(table.len(), 2);
        assert_eq!(table.samples(0), Some(0..50));
        assert_eq!(table.samples(1), Some(50..100));
        assert_eq!(table.samples(2), None);
        let audio = &idx.tracks[1];
        let a = aligned_segments(audio, video, &table);
        assert_eq!(a.len(), 2);
        // 2 s at 48 kHz is 93.75 AAC frames: the cut is the first frame at or after 2 s.
        assert_eq!(a.samples(0), Some(0..94));
        assert!(audio.dts(94) - audio.dts(0) >= 96_000);
        assert!(audio.dts(93) - audio.dts(0) < 96_000);
    }

    #[test]
    fn longer_targets_merge_gops() {
        let idx = fixture("progressive.mp4");
        let table = reference_segments(&idx.tracks[0], 4, 1);
        assert_eq!(table.len(), 1);
        assert_eq!(table.samples(0), Some(0..100));
    }

    #[test]
    fn audio_only_cuts_by_time() {
        let idx = fixture("ladder-audio-eng.mp4");
        let audio = &idx.tracks[0];
        let table = reference_segments(audio, 2, 1);
        assert_eq!(table.len(), 2);
        let first = table.samples(0).unwrap();
        let d = audio.dts(first.end) - audio.dts(0);
        assert!((95_000..=97_000).contains(&d), "{d}");
    }

    #[test]
    fn lookups_by_time() {
        let idx = fixture("progressive.mp4");
        let video = &idx.tracks[0];
        let table = reference_segments(video, 2, 1);
        let t1 = video.dts(50);
        assert_eq!(table.by_start_time(video, t1), Some(1));
        assert_eq!(table.by_start_time(video, t1 + 1), None);
        assert_eq!(table.containing(video, t1 + 1), Some(1));
        assert_eq!(table.containing(video, video.end_time()), None);
        assert_eq!(table.by_number(1), Some(0));
        assert_eq!(table.by_number(2), Some(1));
        assert_eq!(table.by_number(0), None);
        assert_eq!(table.by_number(3), None);
        assert_eq!(table.by_number(u64::MAX), None);
    }
}
