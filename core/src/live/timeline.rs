//! The timeline rules of live ingest: how a fragment offered to a track is judged against
//! what the track holds (appended, a duplicate, a restart, or refused), the channel's
//! timelines (what a restarted encoder's times become), and the rewrite of a fragment's decode
//! times onto its timeline.
//!
//! A track's archive time only goes forward. What an encoder sends is judged against the live
//! edge (the end of the newest fragment held) and against the wall clock (the channel's
//! anchor maps media time to it):
//!
//! - At or after the edge: appended, unless it is too far ahead of both the edge and the wall
//!   clock ([`AHEAD_OF_EDGE_SECS`] or four fragments past the edge, and [`AHEAD_OF_CLOCK_SECS`]
//!   past now): one bogus timestamp must not become the live edge, which would expire the
//!   whole DVR window and make every later fragment look old. An encoder that resumes after a
//!   pause with real-time timestamps is not ahead of the clock, and one that pushes faster
//!   than real time is not ahead of the edge: both are taken.
//! - Before the edge, where a held fragment starts at the same time and was written
//!   recently ([`REDUNDANT_SECS`], or three fragments): a redundant encoder's copy or a
//!   re-send; the first copy stands, the other is dropped (counted as a duplicate).
//! - Before the edge, over media written recently but cut differently: a re-send with moved
//!   times, refused (409) — it would otherwise be stored over held media.
//! - Before the edge, over media written long ago (or before everything held): the encoder's
//!   clock went back, which is an encoder restart, stopped stream or not. With
//!   `restart_on_encoder_reconnect` a new timeline starts, else 409.
//!
//! A new timeline keeps everything held: the restarted encoder's times are moved forward by a
//! whole number of seconds (the same for every track of the channel, so tracks stay in sync)
//! to where the wall clock says the channel is, and never before the track's edge. Its first
//! record is marked, and manifests show the break (HLS `EXT-X-DISCONTINUITY`). The channel
//! keeps its timelines in the archive's `timelines` file; tracks of one restarted encoder
//! adopt the timeline the first of them started.

use super::ingest::IngestError;
use crate::mp4::reader::{FourCC, Reader};

/// A fragment may start this far past the live edge (or four of its durations, if longer)
/// whatever the wall clock says.
pub const AHEAD_OF_EDGE_SECS: u64 = 10;
/// A fragment further past the edge is taken while it is at most this far ahead of the wall
/// clock (as the channel's anchor maps it).
pub const AHEAD_OF_CLOCK_SECS: u64 = 60;
/// A copy of a held fragment is a duplicate while the held one was written at most this long
/// ago (or three fragment durations, if longer); older media is another timeline's.
pub const REDUNDANT_SECS: u64 = 10;
/// The next fragment may start this much before the newest one ends (and a quarter of its
/// duration at most): rounding of encoders' fragment durations, not a re-send.
pub const MAX_OVERLAP_MS: u64 = 500;
/// A track adopts the newest timeline of its channel when it was started at most this long ago
/// (the other tracks of an encoder restart arrive within seconds).
pub const ADOPT_WITHIN_SECS: u64 = 60;

/// Flag of the first record of a timeline after the first.
pub const FLAG_TIMELINE_START: u32 = 4;
/// The timeline number sits in the upper bits of a record's flags.
const TIMELINE_SHIFT: u32 = 8;
/// The highest timeline number the flags hold: a channel takes that many encoder restarts.
pub const MAX_TIMELINE: u32 = u32::MAX >> TIMELINE_SHIFT;

/// The timeline number a record's flags carry.
pub fn timeline_of(flags: u32) -> u32 {
    flags >> TIMELINE_SHIFT
}

/// Flags with `timeline` set.
pub fn with_timeline(flags: u32, timeline: u32) -> u32 {
    (flags & ((1 << TIMELINE_SHIFT) - 1)) | (timeline << TIMELINE_SHIFT)
}

/// A fragment a track holds, as far as judging needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldFragment {
    pub start: u64,
    pub duration: u64,
    /// When it was written, ms since the Unix epoch.
    pub ingest_ms: i64,
}

impl HeldFragment {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.duration)
    }
}

/// What a track holds, as an offered fragment is judged against it.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// The live edge: where the newest fragment ends.
    pub edge: u64,
    /// The newest fragment's duration.
    pub last_duration: u64,
    /// The fragment that starts at or last before the offered time, if any.
    pub covering: Option<HeldFragment>,
}

/// An offered fragment, in archive time (the encoder's time moved by its timeline's offset).
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    pub start: u64,
    pub duration: u64,
    pub timescale: u32,
}

/// What the channel's clock says.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now_ms: i64,
    /// Wall-clock time of media time 0 (`None`: not written yet).
    pub anchor_ms: Option<i64>,
}

/// How an offered fragment is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Append,
    Duplicate,
    /// The encoder's clock went back: a new timeline, if the channel allows it.
    Restart,
    /// Refused, and why (422).
    TooFarAhead(String),
    /// Refused, and why (409).
    Conflict(String),
}

fn secs_to_ticks(secs: u64, timescale: u32) -> u64 {
    secs.saturating_mul(u64::from(timescale))
}

fn ticks_to_ms(ticks: u64, timescale: u32) -> i64 {
    (u128::from(ticks) * 1000 / u128::from(timescale.max(1))).min(i64::MAX as u128) as i64
}

/// Judges `offered` against what the track holds (`None`: nothing yet).
pub fn judge(offered: Offered, held: Option<Held>, clock: Clock) -> Verdict {
    let ts = offered.timescale.max(1);
    let ahead_of_clock_ms = |start: u64| {
        clock.anchor_ms.map_or(0, |a| {
            a.saturating_add(ticks_to_ms(start, ts))
                .saturating_sub(clock.now_ms)
        })
    };
    let clock_limit_ms = (AHEAD_OF_CLOCK_SECS * 1000) as i64;
    let Some(Held {
        edge,
        last_duration,
        covering,
    }) = held
    else {
        // A track's first fragment: only the clock can say it is ahead.
        let ahead = ahead_of_clock_ms(offered.start);
        if ahead > clock_limit_ms {
            return Verdict::TooFarAhead(format!(
                "the first fragment starts {} s ahead of the channel's clock",
                ahead / 1000
            ));
        }
        return Verdict::Append;
    };
    if offered.start >= edge {
        let gap = offered.start - edge;
        let edge_limit = secs_to_ticks(AHEAD_OF_EDGE_SECS, ts)
            .max(offered.duration.max(last_duration).saturating_mul(4));
        let ahead = ahead_of_clock_ms(offered.start);
        if gap > edge_limit && ahead > clock_limit_ms {
            return Verdict::TooFarAhead(format!(
                "a fragment at {} starts {} s past the live edge ({edge}) and {} s ahead of \
                 the channel's clock",
                offered.start,
                gap / u64::from(ts),
                ahead / 1000
            ));
        }
        return Verdict::Append;
    }
    // Encoders' fragment durations are rounded (AAC frames against a 2 s cadence): the next
    // fragment may start a little before the newest one ends.
    let last_start = edge.saturating_sub(last_duration);
    let jitter = (last_duration / 4).min(u64::from(ts) * MAX_OVERLAP_MS / 1000);
    if offered.start > last_start && edge - offered.start <= jitter {
        return Verdict::Append;
    }
    let recent_ms =
        ((REDUNDANT_SECS * 1000) as i64).max(ticks_to_ms(offered.duration, ts).saturating_mul(3));
    let recent = |r: &HeldFragment| clock.now_ms.saturating_sub(r.ingest_ms) <= recent_ms;
    match covering {
        Some(c) if recent(&c) && c.start == offered.start => Verdict::Duplicate,
        Some(c) if recent(&c) => Verdict::Conflict(format!(
            "a fragment at {}..{} overlaps held media ({}..{}, written {} ms ago) without \
             matching it: a re-send with moved times is not stored over held media",
            offered.start,
            offered.start.saturating_add(offered.duration),
            c.start,
            c.end(),
            clock.now_ms.saturating_sub(c.ingest_ms)
        )),
        _ => Verdict::Restart,
    }
}

/// A length in seconds (a fraction `(numerator, denominator)`, as `*_minimum_fragment_length`
/// is written) in ticks of `timescale`, at least one.
pub fn length_ticks(length: (u64, u64), timescale: u32) -> u64 {
    let (n, d) = length;
    let ticks = u128::from(n) * u128::from(timescale) / u128::from(d.max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// The segment grid of the media timeline: which multiple of `unit` ticks `t` has reached (an
/// eighth of `unit` early counts: encoders' timestamps jitter around the line). Ingest starts
/// a segment where a chunk's cell is higher than its segment's first chunk's, and a channel
/// that declares its segment length numbers segments by their first chunk's cell: one rule,
/// so origins fed the same stream cut and number it alike.
pub fn grid_cell(t: u64, unit: u64) -> u64 {
    t.saturating_add(unit / 8) / unit.max(1)
}

/// Whether an appended chunk that asks to continue the newest segment may: it must follow the
/// newest record on the same timeline (within the jitter [`judge`] allows), and that record
/// must not have completed its segment. After a gap, a restart, an end of stream or a closed
/// segment the chunk starts a segment of its own.
pub fn continues_segment(
    offered: Offered,
    offered_timeline: u32,
    restarted: bool,
    newest: Option<(u64, u64, u32, bool)>,
) -> bool {
    let Some((newest_end, newest_duration, newest_timeline, newest_completes)) = newest else {
        return false;
    };
    let jitter = (newest_duration.max(offered.duration) / 4)
        .min(u64::from(offered.timescale.max(1)) * MAX_OVERLAP_MS / 1000);
    !restarted
        && !newest_completes
        && newest_timeline == offered_timeline
        && offered.start.abs_diff(newest_end) <= jitter
}

/// One timeline of a channel: encoders' times on it are moved forward by `offset_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub number: u32,
    pub offset_secs: u64,
    /// When it was started, ms since the Unix epoch.
    pub started_ms: i64,
}

impl Timeline {
    pub const FIRST: Timeline = Timeline {
        number: 0,
        offset_secs: 0,
        started_ms: 0,
    };

    pub fn offset_ticks(&self, timescale: u32) -> u64 {
        secs_to_ticks(self.offset_secs, timescale)
    }
}

/// The timelines of a channel after its first, as its archive's `timelines` file keeps them:
/// one line each, number, offset in seconds, start time in ms.
pub fn parse_timelines(text: &str) -> Vec<Timeline> {
    let mut timelines = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace().map(str::parse::<i64>);
        if let (Some(Ok(n)), Some(Ok(o)), Some(Ok(s))) = (f.next(), f.next(), f.next()) {
            if let (Ok(number), Ok(offset_secs)) = (u32::try_from(n), u64::try_from(o)) {
                timelines.push(Timeline {
                    number,
                    offset_secs,
                    started_ms: s,
                });
            }
        }
    }
    timelines
}

pub fn format_timelines(timelines: &[Timeline]) -> String {
    timelines
        .iter()
        .map(|t| format!("{} {} {}\n", t.number, t.offset_secs, t.started_ms))
        .collect()
}

/// The timeline numbered `number` among `timelines` (0: the first, with no offset).
pub fn timeline_numbered(timelines: &[Timeline], number: u32) -> Option<Timeline> {
    if number == 0 {
        return Some(Timeline::FIRST);
    }
    timelines.iter().find(|t| t.number == number).copied()
}

/// The timeline a restarted track goes on, and whether it is new (to be added to the
/// channel's): the newest of the channel when another track started it moments ago and this
/// track (on `current`) is not on it yet; else a new one that moves `start_ticks` (the
/// encoder's time) to the wall clock's place and at least to `at_least_ticks` (the track's
/// edge). `None` past [`MAX_TIMELINE`].
pub fn restart_timeline(
    timelines: &[Timeline],
    current: u32,
    start_ticks: u64,
    at_least_ticks: u64,
    timescale: u32,
    clock: Clock,
) -> Option<(Timeline, bool)> {
    if let Some(newest) = timelines.last() {
        let fresh =
            clock.now_ms.saturating_sub(newest.started_ms) <= (ADOPT_WITHIN_SECS * 1000) as i64;
        if fresh && newest.number > current {
            return Some((*newest, false));
        }
    }
    let ts = u64::from(timescale.max(1));
    let wall_ticks = clock.anchor_ms.map_or(0, |a| {
        (clock.now_ms.saturating_sub(a).max(0) as u128 * u128::from(ts) / 1000) as u64
    });
    let target = at_least_ticks.max(wall_ticks);
    // Whole seconds, rounded up: the same offset is exact in every track's timescale.
    let offset_secs = target.saturating_sub(start_ticks).div_ceil(ts);
    let number = timelines
        .last()
        .map_or(0, |t| t.number)
        .max(current)
        .checked_add(1)
        .filter(|&n| n <= MAX_TIMELINE)?;
    let timeline = Timeline {
        number,
        offset_secs,
        started_ms: clock.now_ms,
    };
    Some((timeline, true))
}

const TFXD: [u8; 16] = [
    0x6d, 0x1d, 0x9b, 0x05, 0x42, 0xd5, 0x44, 0xe6, 0x80, 0xe2, 0x14, 0x1d, 0xaf, 0xf7, 0x57, 0xb2,
];
const TFRF: [u8; 16] = [
    0xd4, 0x80, 0x7e, 0xf2, 0xca, 0x39, 0x46, 0x95, 0x8e, 0x54, 0x26, 0xcb, 0x9e, 0x46, 0xa7, 0x9f,
];

/// Moves every decode time the `moof` at the start of `bytes` declares (`tfdt`, Smooth
/// `tfxd` and `tfrf`) forward by `delta` ticks. A 32-bit time that would overflow is refused.
pub fn shift_decode_times(bytes: &mut [u8], delta: u64) -> Result<(), IngestError> {
    if delta == 0 {
        return Ok(());
    }
    // (offset of the field, 8 or 4 bytes wide)
    let mut fields: Vec<(usize, usize)> = Vec::new();
    {
        let mut r = Reader::new(bytes, 0);
        let Some((_, mut moof)) = r.next_box_body()? else {
            return Ok(());
        };
        while let Some((h, mut traf)) = moof.next_box_body()? {
            if h.fourcc != FourCC::new(b"traf") {
                continue;
            }
            while let Some((bh, mut body)) = traf.next_box_body()? {
                let at = bh.body_offset() as usize;
                if bh.fourcc == FourCC::new(b"tfdt") {
                    let (version, _) = body.full_box()?;
                    fields.push((at + 4, if version == 1 { 8 } else { 4 }));
                } else if let Some(user_type) = bh.uuid {
                    // The header holds the extended type: the body starts with version/flags.
                    let (version, _) = body.full_box()?;
                    let wide = if version == 1 { 8 } else { 4 };
                    if user_type == TFXD {
                        fields.push((at + 4, wide));
                    } else if user_type == TFRF {
                        let count = body.u8()?;
                        for k in 0..usize::from(count) {
                            fields.push((at + 5 + k * 2 * wide, wide));
                        }
                    }
                }
            }
        }
    }
    for (at, wide) in fields {
        let field = bytes
            .get_mut(at..at + wide)
            .ok_or_else(|| IngestError::Malformed("a short decode time box".into()))?;
        if wide == 8 {
            let old = u64::from_be_bytes(field.try_into().unwrap_or([0; 8]));
            // A negative Smooth time (audio priming, two's complement) counts as 0, as the
            // fragment's record counts it: moved, it starts where its record says.
            let new = if old > i64::MAX as u64 { 0 } else { old }.saturating_add(delta);
            field.copy_from_slice(&new.to_be_bytes());
        } else {
            let old = u32::from_be_bytes(field.try_into().unwrap_or([0; 4]));
            let new = u64::from(old)
                .checked_add(delta)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    IngestError::Conflict(
                        "a restarted timeline does not fit the fragment's 32-bit decode times \
                         (version 0 tfdt); send version 1"
                            .into(),
                    )
                })?;
            field.copy_from_slice(&new.to_be_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_chunk_continues_a_segment_only_right_after_it() {
        let offered = |start| Offered {
            start,
            duration: 500,
            timescale: 1000,
        };
        // (end, duration, timeline, completes) of the newest record.
        let open = Some((2000, 500, 0, false));
        assert!(continues_segment(offered(2000), 0, false, open));
        // Rounding jitter is not a gap.
        assert!(continues_segment(offered(2010), 0, false, open));
        assert!(!continues_segment(offered(2600), 0, false, open));
        assert!(!continues_segment(offered(2000), 1, false, open));
        assert!(!continues_segment(offered(2000), 0, true, open));
        assert!(!continues_segment(
            offered(2000),
            0,
            false,
            Some((2000, 500, 0, true))
        ));
        assert!(!continues_segment(offered(0), 0, false, None));
    }
    use super::*;

    const TS: u32 = 1000;

    fn record(start: u64, duration: u64, ingest_ms: i64) -> HeldFragment {
        HeldFragment {
            start,
            duration,
            ingest_ms,
        }
    }

    fn offered(start: u64) -> Offered {
        Offered {
            start,
            duration: 2000,
            timescale: TS,
        }
    }

    fn clock(now_ms: i64) -> Clock {
        Clock {
            now_ms,
            anchor_ms: Some(0),
        }
    }

    fn held(last: HeldFragment, covering: Option<HeldFragment>) -> Option<Held> {
        Some(Held {
            edge: last.end(),
            last_duration: last.duration,
            covering,
        })
    }

    #[test]
    fn the_next_fragment_and_a_gap_at_the_clock_are_appended() {
        let last = record(18_000, 2000, 20_000);
        assert_eq!(
            judge(offered(20_000), held(last, None), clock(22_000)),
            Verdict::Append
        );
        // A pause of five minutes with real-time timestamps: far past the edge, on the clock.
        assert_eq!(
            judge(offered(320_000), held(last, None), clock(322_000)),
            Verdict::Append
        );
        // Faster than real time: ahead of the clock, but at the edge.
        assert_eq!(
            judge(offered(20_000), held(last, None), clock(1_000)),
            Verdict::Append
        );
    }

    #[test]
    fn a_fragment_far_ahead_of_edge_and_clock_is_refused() {
        let last = record(18_000, 2000, 20_000);
        let bogus = 20_000 + 1_000_000_000;
        assert!(matches!(
            judge(offered(bogus), held(last, None), clock(22_000)),
            Verdict::TooFarAhead(_)
        ));
        // A first fragment of a new track, far ahead of the channel's clock.
        assert!(matches!(
            judge(offered(bogus), None, clock(22_000)),
            Verdict::TooFarAhead(_)
        ));
        // Without an anchor yet, the first fragment sets it.
        let first = Clock {
            now_ms: 5,
            anchor_ms: None,
        };
        assert_eq!(judge(offered(bogus), None, first), Verdict::Append);
    }

    #[test]
    fn copies_of_recent_fragments_are_duplicates_and_moved_times_conflict() {
        let covering = record(16_000, 2000, 18_000);
        let last = record(18_000, 2000, 20_000);
        assert_eq!(
            judge(offered(16_000), held(last, Some(covering)), clock(21_000)),
            Verdict::Duplicate
        );
        assert!(matches!(
            judge(offered(16_500), held(last, Some(covering)), clock(21_000)),
            Verdict::Conflict(_)
        ));
        // The newest fragment again, moved by half its length: a conflict too.
        assert!(matches!(
            judge(offered(19_000), held(last, Some(last)), clock(21_000)),
            Verdict::Conflict(_)
        ));
        // The next one starting 20 ms before the newest ends (audio frames): taken.
        assert_eq!(
            judge(offered(19_980), held(last, Some(last)), clock(21_000)),
            Verdict::Append
        );
    }

    #[test]
    fn old_times_again_are_a_restart_stopped_or_not() {
        let covering = record(0, 2000, 2_000);
        let last = record(298_000, 2000, 300_000);
        // The encoder crashed and came back at 0: the held fragment at 0 is five minutes old.
        assert_eq!(
            judge(offered(0), held(last, Some(covering)), clock(305_000)),
            Verdict::Restart
        );
        // Stopped (the edge is the end marker's) or not, the same.
        let ended = Some(Held {
            edge: 300_000,
            last_duration: 0,
            covering: Some(covering),
        });
        assert_eq!(judge(offered(0), ended, clock(305_000)), Verdict::Restart);
        // Before everything held (pruned).
        assert_eq!(
            judge(offered(0), held(last, None), clock(305_000)),
            Verdict::Restart
        );
    }

    #[test]
    fn timeline_numbers_ride_in_the_flags() {
        let flags = with_timeline(2 | FLAG_TIMELINE_START, 7);
        assert_eq!(timeline_of(flags), 7);
        assert_eq!(flags & 0xff, 2 | FLAG_TIMELINE_START);
    }

    #[test]
    fn restarted_tracks_share_one_timeline_in_whole_seconds() {
        let at = Clock {
            now_ms: 300_500,
            anchor_ms: Some(0),
        };
        // Video (90 kHz) restarts at 0 with its edge at 300 s: moved to the clock, 301 s.
        let (video, new) = restart_timeline(&[], 0, 0, 300 * 90_000, 90_000, at).unwrap();
        assert!(new);
        assert_eq!((video.number, video.offset_secs), (1, 301));
        let kept = parse_timelines(&format_timelines(&[video]));
        assert_eq!(kept, [video]);
        // Audio, moments later, adopts it.
        let later = Clock {
            now_ms: 302_000,
            ..at
        };
        let (audio, new) = restart_timeline(&kept, 0, 0, 300 * 48_000, 48_000, later).unwrap();
        assert_eq!((audio, new), (video, false));
        // A track already on it that goes back again starts another, past its edge.
        let (again, new) = restart_timeline(&kept, 1, 0, 400 * 90_000, 90_000, later).unwrap();
        assert!(new);
        assert_eq!((again.number, again.offset_secs), (2, 400));
        assert_eq!(timeline_numbered(&kept, 1), Some(video));
        assert_eq!(timeline_numbered(&kept, 0), Some(Timeline::FIRST));
        // Long after, a restart of the other track does not adopt a stale timeline.
        let (late, new) = restart_timeline(&kept, 0, 0, 0, 48_000, clock(900_000)).unwrap();
        assert!(new);
        assert_eq!(late.number, 2);
        assert_eq!(restart_timeline(&[], MAX_TIMELINE, 0, 0, 1, at), None);
    }

    #[test]
    fn decode_times_move_in_tfdt_and_tfxd() {
        fn full_box(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
            let mut b = ((12 + body.len()) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(&[version, 0, 0, 0]);
            b.extend_from_slice(body);
            b
        }
        fn wrap(kind: &[u8; 4], children: &[Vec<u8>]) -> Vec<u8> {
            let body = children.concat();
            let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(&body);
            b
        }
        let tfdt = full_box(b"tfdt", 1, &5u64.to_be_bytes());
        let mut tfxd = ((8 + 16 + 4 + 16) as u32).to_be_bytes().to_vec();
        tfxd.extend_from_slice(b"uuid");
        tfxd.extend_from_slice(&TFXD);
        tfxd.extend_from_slice(&[1, 0, 0, 0]);
        tfxd.extend_from_slice(&5u64.to_be_bytes());
        tfxd.extend_from_slice(&2u64.to_be_bytes());
        let mut moof = wrap(b"moof", &[wrap(b"traf", &[tfdt, tfxd])]);
        shift_decode_times(&mut moof, 100).unwrap();
        let times: Vec<u64> = moof
            .windows(8)
            .map(|w| u64::from_be_bytes(w.try_into().unwrap()))
            .filter(|&v| v == 105)
            .collect();
        assert_eq!(times.len(), 2);
        // A 32-bit tfdt that would overflow is refused.
        let small = full_box(b"tfdt", 0, &(u32::MAX - 1).to_be_bytes());
        let mut moof = wrap(b"moof", &[wrap(b"traf", &[small])]);
        assert!(shift_decode_times(&mut moof, 10).is_err());
    }
}
