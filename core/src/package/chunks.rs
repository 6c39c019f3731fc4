//! A low-latency live track's chunks (each record an encoder sent): where a segment's parts
//! start, and whether the track's newest segment still grows. LL-HLS lists a segment's chunks
//! as its parts; LL-DASH sends a segment as its chunks' fragments, each as it lands.

use crate::index::TrackIndex;
use crate::live::window::LiveInfo;
use crate::presentation::Track;

/// The chunk starts of `t` in a low-latency window.
pub fn chunk_starts<'l>(live: &'l LiveInfo, t: &Track) -> &'l [u64] {
    live.cuts_of(&t.source)
        .map_or(&[][..], |c| c.chunk_starts.as_slice())
}

/// Whether the last segment of `t` in a low-latency window is still growing (each track keeps
/// its own segments there, see [`super::segments`]).
pub fn track_growing(t: &Track, live: &LiveInfo) -> bool {
    !live.ended && live.cuts_of(&t.source).is_some_and(|c| c.growing)
}

/// The sample ranges of a segment's parts: the segment split where the track's chunks
/// start inside it.
pub fn part_ranges(
    t: &Track,
    range: std::ops::Range<u32>,
    chunk_starts: &[u64],
) -> Vec<std::ops::Range<u32>> {
    let idx = t.index();
    let from = idx.dts(range.start);
    let mut bounds = vec![range.start];
    let first = chunk_starts.partition_point(|&c| c <= from);
    for &c in &chunk_starts[first..] {
        let s = idx.sample_at_or_after(c);
        if s >= range.end {
            break;
        }
        if s > *bounds.last().unwrap_or(&range.start) {
            bounds.push(s);
        }
    }
    let mut out: Vec<_> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
    if let Some(&last) = bounds.last() {
        if last < range.end {
            out.push(last..range.end);
        }
    }
    out
}

/// Seconds the samples `r` of `idx` last.
pub fn range_secs(idx: &TrackIndex, r: &std::ops::Range<u32>) -> f64 {
    let end = idx.sample_end(r.end.saturating_sub(1).max(r.start));
    (end - idx.dts(r.start)) as f64 / f64::from(idx.timescale.max(1))
}

/// The longest chunk of the last `newest` segments of `t` (seconds, 0 without chunks): what
/// a low-latency manifest announces as its part (LL-HLS) or chunk (LL-DASH) duration.
pub fn longest_chunk_secs(
    t: &Track,
    table: &crate::segment::SegmentTable,
    live: &LiveInfo,
    newest: usize,
) -> f64 {
    let chunks = chunk_starts(live, t);
    (table.len().saturating_sub(newest)..table.len())
        .filter_map(|k| table.samples(k))
        .flat_map(|r| part_ranges(t, r, chunks))
        .map(|r| range_secs(t.index(), &r))
        .fold(0.0, f64::max)
}
