//! The window of a live channel a request plays: which fragments of each track, and what the
//! packagers need to say about it (anchor, publish time, whether the stream ended, where each
//! segment starts and what it is numbered).
//!
//! While the channel is live the window is the last `dvr_window_length` seconds before the
//! live edge (the end of the newest fragment of any track); once every track has ended its
//! stream, the whole archive plays as one presentation.

use std::io;

use super::archive::{Record, FLAG_SYNC};
use super::channel::{ChannelSnapshot, TrackArchive};
use super::timeline::{grid_cell, length_ticks, timeline_of, FLAG_TIMELINE_START};

/// Tolerance at the window's start, so tracks whose fragments start a few milliseconds apart
/// (audio priming) keep the fragment that covers the window's first instant.
const START_TOLERANCE_MS: u64 = 500;
/// Fewest segments a live window lists when the channel has them.
const MIN_SEGMENTS: usize = 3;

/// What the packagers know of a live presentation.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveInfo {
    /// Wall-clock time of media time 0, ms since the Unix epoch.
    pub anchor_ms: i64,
    /// When the newest fragment was written, ms since the Unix epoch.
    pub updated_ms: i64,
    /// When the request's channel was read, ms since the Unix epoch.
    pub now_ms: i64,
    /// Every track ended its stream: the archive plays as a static presentation.
    pub ended: bool,
    /// Seconds of DVR window the manifests advertise.
    pub dvr_window_secs: u64,
    /// Seconds of media the archive keeps (`None`: all of it).
    pub retain_secs: Option<u64>,
    /// Where each track's segments start, by the track's source (as its `src`).
    pub cuts: Vec<TrackCuts>,
    /// The window in seconds of media time: its first instant and the live edge.
    pub window: (f64, f64),
    /// The timeline the window starts on (0: the channel's first; see
    /// [`super::timeline`]).
    pub first_timeline: u32,
    /// Where a later timeline starts inside the window (seconds of media time), in order.
    pub timeline_breaks: Vec<(f64, u32)>,
    /// Low-latency playout: each track's chunks are in [`TrackCuts::chunk_starts`] and its
    /// growing segment is in the window.
    pub low_latency: bool,
    /// The channel's declared segment length in seconds (`*_minimum_fragment_length`), which
    /// no segment of a stream cut on its grid is shorter than.
    pub declared_segment_secs: Option<f64>,
}

/// Where one track's segments start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackCuts {
    pub src: String,
    /// Decode times (track timescale) of the fragments in the window.
    pub starts: Vec<u64>,
    /// When each was ingested, ms since the Unix epoch.
    pub ingested_ms: Vec<i64>,
    /// Number of the first (its position in the channel, from 1).
    pub first_number: u64,
    /// Decode times of every chunk (record) in the window, in order: where LL-HLS parts
    /// start. Filled for low-latency windows only.
    pub chunk_starts: Vec<u64>,
    /// The last segment is still growing (low-latency windows only).
    pub growing: bool,
}

/// Where an instant falls against a live window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivePlace {
    /// Before the window (expired, or never archived).
    Before = 0,
    /// Inside the window, where nothing was ingested.
    Gap = 1,
    /// After the live edge: not ingested yet.
    NotYet = 2,
}

impl LivePlace {
    pub fn describe(self) -> &'static str {
        match self {
            LivePlace::Before => "before the live window",
            LivePlace::Gap => "in a gap of the live window",
            LivePlace::NotYet => "not ingested yet",
        }
    }

    /// The error token of a live fragment request that falls here.
    pub fn token(self) -> &'static str {
        match self {
            LivePlace::Before => "FRAGMENT_NOT_FOUND",
            LivePlace::Gap => "FRAGMENT_MISSING",
            LivePlace::NotYet => "FRAGMENT_NOT_AVAILABLE",
        }
    }
}

impl LiveInfo {
    /// Where `secs` (media time) falls.
    pub fn place_of(&self, secs: f64) -> LivePlace {
        if secs < self.window.0 {
            LivePlace::Before
        } else if secs >= self.window.1 {
            LivePlace::NotYet
        } else {
            LivePlace::Gap
        }
    }

    /// When the fragment of some track that starts at `start` was ingested.
    pub fn ingested_at(&self, start: u64) -> Option<i64> {
        self.cuts.iter().find_map(|c| {
            let k = c.starts.binary_search(&start).ok()?;
            c.ingested_ms.get(k).copied()
        })
    }

    /// The timeline the media at `secs` is on.
    pub fn timeline_at(&self, secs: f64) -> u32 {
        let tolerance = START_TOLERANCE_MS as f64 / 1000.0;
        self.timeline_breaks
            .iter()
            .take_while(|(at, _)| *at <= secs + tolerance)
            .last()
            .map_or(self.first_timeline, |&(_, n)| n)
    }

    pub fn cuts_of(&self, src: &str) -> Option<&TrackCuts> {
        self.cuts.iter().find(|c| c.src == src)
    }
}

/// Which fragments of which tracks a request plays.
pub struct Window<'s> {
    pub tracks: Vec<(&'s TrackArchive, Vec<Record>)>,
    pub info: LiveInfo,
}

fn secs(ticks: u64, timescale: u32) -> f64 {
    ticks as f64 / f64::from(timescale.max(1))
}

/// What a request asks of a live window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowRequest {
    /// DVR window, seconds.
    pub dvr_window_secs: u64,
    /// What the archive keeps, seconds (`None`: everything).
    pub retain_secs: Option<u64>,
    /// The window ends this long before the live edge (`time_shift`).
    pub time_shift_secs: u64,
    /// `vbegin` / `vend` as media times (seconds): a part of the archive, played as a static
    /// presentation once it lies wholly before the live edge.
    pub begin: Option<f64>,
    pub end: Option<f64>,
    /// `usp_dynamic_time_shift_buffer_depth`: the advertised depth is what the window holds.
    pub dynamic_depth: bool,
    /// The time of the request, ms since the Unix epoch (as the driver read the clock).
    pub now_ms: i64,
    /// Low-latency playout: each track's segment that is still growing is in the window with
    /// the chunks it has (else a segment shows once it is complete).
    pub growing: bool,
    /// The channel's declared segment length (seconds as a fraction, `*_minimum_fragment_length`):
    /// segments are then numbered from the media timeline (the multiple of it their start
    /// reached, as ingest cuts them), so origins fed the same stream number them alike. Without
    /// it, a segment's number is its position in the channel's archive.
    pub segment_length: Option<(u64, u64)>,
}

/// The number of a segment starting at `start` (ticks of `timescale`) on the grid of
/// `length` seconds, from 1 (see [`grid_cell`]).
pub fn number_on_grid(start: u64, timescale: u32, length: (u64, u64)) -> u64 {
    grid_cell(start, length_ticks(length, timescale)).saturating_add(1)
}

/// How many of a track's records a window may show: those of complete segments, and those of
/// the growing one when asked.
fn shown_records(t: &TrackArchive, growing: bool) -> io::Result<u64> {
    if growing {
        Ok(t.records.len())
    } else {
        t.records.complete_len()
    }
}

/// A timed-metadata track: its records carry events, not media to segment.
fn is_metadata(t: &TrackArchive) -> bool {
    t.info.kind == crate::index::TrackKind::Metadata
}

/// The window of `snapshot` a request plays. Each track's newest records are in memory; a
/// window that reaches further back (`vbegin`, a long `time_shift`, the whole archive of a
/// stopped channel) reads the older ones from the records file: the error is that read's.
pub fn window(snapshot: &ChannelSnapshot, asked: WindowRequest) -> io::Result<Window<'_>> {
    let tolerance = START_TOLERANCE_MS as f64 / 1000.0;
    let stopped = snapshot.state() == "stopped";
    let mut live_edge = 0.0f64;
    let mut showable = Vec::with_capacity(snapshot.tracks.len());
    let mut complete = Vec::with_capacity(snapshot.tracks.len());
    for t in &snapshot.tracks {
        let shown = shown_records(t, asked.growing)?;
        complete.push(if asked.growing {
            t.records.complete_len()?
        } else {
            shown
        });
        // A metadata track's samples may run ahead of the media (a cue's long sample): the
        // edge is the media's.
        if let Some(r) = t
            .records
            .last_media_before(shown)?
            .filter(|_| !is_metadata(t))
        {
            live_edge = live_edge.max(secs(r.end(), t.timescale));
        }
        showable.push(shown);
    }
    // The last instant the window shows, and its first.
    let mut edge = live_edge - asked.time_shift_secs as f64;
    let mut first = edge - asked.dvr_window_secs as f64 - tolerance;
    let mut ended = stopped;
    if stopped && asked.time_shift_secs == 0 {
        first = f64::MIN;
    }
    if let Some(end) = asked.end {
        edge = edge.min(end);
        ended |= end <= live_edge;
    }
    if let Some(begin) = asked.begin {
        first = begin - tolerance;
        if asked.end.is_none() && !stopped {
            // From vbegin to the live edge: still live.
            edge = edge.max(live_edge - asked.time_shift_secs as f64);
        }
    }
    // Records that start after this end after it too: no window holds them.
    let shown_end = |k: usize, t: &TrackArchive| -> io::Result<u64> {
        let before_edge = t
            .records
            .partition_point(|r| secs(r.start, t.timescale) <= edge + tolerance)?;
        Ok(before_edge.min(showable[k]))
    };
    // A live playlist holds at least three segments (RFC 8216 §6.2.2), whatever the window.
    if asked.begin.is_none() && !ended {
        let mut third_last = f64::MAX;
        for (k, t) in snapshot.tracks.iter().enumerate() {
            if is_metadata(t) {
                continue;
            }
            let mut shown = 0;
            t.records.visit_back(shown_end(k, t)?, |r| {
                if r.is_end_marker()
                    || secs(r.end(), t.timescale) > edge + tolerance
                    || !r.starts_segment()
                {
                    return true;
                }
                shown += 1;
                if shown == MIN_SEGMENTS {
                    third_last = third_last.min(secs(r.start, t.timescale));
                    return false;
                }
                true
            })?;
        }
        if third_last < f64::MAX {
            first = first.min(third_last - tolerance);
        }
    }
    let mut tracks = Vec::new();
    let mut cuts = Vec::new();
    let mut window_start = f64::MAX;
    let mut first_timeline = None;
    let mut timeline_breaks: Vec<(f64, u32)> = Vec::new();
    for (k, t) in snapshot.tracks.iter().enumerate() {
        let from = t
            .records
            .partition_point(|r| secs(r.start, t.timescale) < first)?;
        let mut records: Vec<Record> = Vec::new();
        // Whole segments only: chunks before the first segment start in range belong to a
        // segment that began before the window, and a segment the window's end cuts is left
        // out with all its chunks.
        let mut segment_from = 0;
        let mut cut = false;
        let mut at = from;
        // Position in the file of the newest segment's first record.
        let mut newest_segment_at = 0;
        let metadata = is_metadata(t);
        t.records.visit(from, shown_end(k, t)?, |r| {
            at += 1;
            if r.is_end_marker() {
                return true;
            }
            if metadata {
                // Events, not segments: every sample that starts in the window counts,
                // whatever its length (a cue is shown from its start).
                records.push(*r);
                return true;
            }
            if records.is_empty() && (!r.starts_segment() || r.flags & FLAG_SYNC == 0) {
                // Chunks of a segment that began before the window, or a stream's first
                // chunks before its first key frame (an origin that joined mid-GOP): not
                // playable alone, and not a segment another origin has.
                return true;
            }
            if r.starts_segment() {
                if cut {
                    records.truncate(segment_from);
                    cut = false;
                }
                segment_from = records.len();
                newest_segment_at = at - 1;
            }
            cut |= secs(r.end(), t.timescale) > edge + tolerance;
            records.push(*r);
            true
        })?;
        // A growing segment is the window's last only when the window's end did not cut it.
        let growing = asked.growing && !cut && newest_segment_at >= complete[k];
        if cut {
            records.truncate(segment_from);
        }
        let Some(head) = records.first() else {
            continue;
        };
        if metadata {
            cuts.push(TrackCuts {
                src: format!("{}/{}", snapshot.archive_name, t.dir_name),
                starts: records.iter().map(|r| r.start).collect(),
                ingested_ms: records.iter().map(|r| r.ingest_ms).collect(),
                first_number: head.seq + 1,
                chunk_starts: Vec::new(),
                growing: false,
            });
            tracks.push((t, records));
            continue;
        }
        window_start = window_start.min(secs(head.start, t.timescale));
        first_timeline = first_timeline.max(Some(timeline_of(head.flags)));
        for r in records.iter().skip(1) {
            if r.flags & FLAG_TIMELINE_START != 0 {
                let at = secs(r.start, t.timescale);
                match timeline_breaks
                    .iter_mut()
                    .find(|(_, n)| *n == timeline_of(r.flags))
                {
                    Some(seen) => seen.0 = seen.0.min(at),
                    None => timeline_breaks.push((at, timeline_of(r.flags))),
                }
            }
        }
        let mut starts = Vec::new();
        let mut ingested_ms: Vec<i64> = Vec::new();
        for r in &records {
            if r.starts_segment() {
                starts.push(r.start);
                ingested_ms.push(r.ingest_ms);
            } else if let Some(last) = ingested_ms.last_mut() {
                // A segment was written when its last chunk was.
                *last = r.ingest_ms;
            }
        }
        cuts.push(TrackCuts {
            src: format!("{}/{}", snapshot.archive_name, t.dir_name),
            starts,
            ingested_ms,
            first_number: match asked.segment_length {
                Some(length) => number_on_grid(head.start, t.timescale, length),
                None => head.seq + 1,
            },
            chunk_starts: if asked.growing {
                records.iter().map(|r| r.start).collect()
            } else {
                Vec::new()
            },
            growing,
        });
        tracks.push((t, records));
    }
    let window_start = if window_start == f64::MAX {
        0.0
    } else {
        window_start
    };
    let dvr_window_secs = if asked.dynamic_depth {
        ((edge - window_start).ceil().max(0.0) as u64).min(asked.dvr_window_secs)
    } else {
        asked.dvr_window_secs
    };
    Ok(Window {
        tracks,
        info: LiveInfo {
            anchor_ms: snapshot.anchor_ms,
            updated_ms: snapshot.updated_ms(),
            now_ms: asked.now_ms,
            ended,
            dvr_window_secs,
            retain_secs: asked.retain_secs,
            cuts,
            window: (window_start, edge.min(live_edge)),
            first_timeline: first_timeline.unwrap_or(0),
            timeline_breaks: {
                timeline_breaks.sort_by(|a, b| a.0.total_cmp(&b.0));
                timeline_breaks
            },
            low_latency: asked.growing,
            declared_segment_secs: asked
                .segment_length
                .map(|(n, d)| n as f64 / d.max(1) as f64),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::archive::{read_records, FLAG_END, FLAG_SYNC};
    use crate::live::channel::ChannelReader;
    use crate::live::records::TrackRecords;
    use crate::live::store::DirectIngest;
    use std::path::PathBuf;

    /// A channel ingested from the Smooth fixture, whose tracks' records are then replaced by
    /// `count` 2-second fragments each (the window reads records only, not media).
    fn long_channel(name: &str, count: u64) -> (PathBuf, PathBuf) {
        channel_with(name, |ts| {
            // A gap of one fragment at 1000 (so ranges and windows meet it).
            (0..count)
                .filter(|k| *k != 1000)
                .map(|k| Record {
                    start: k * 2 * ts,
                    duration: 2 * ts,
                    vpos: 4096 + k * 100,
                    file_no: 1 + (k / 300) as u32,
                    file_offset: (k % 300) * 100,
                    size: 100,
                    ingest_ms: 1_000_000 + k as i64 * 2000,
                    flags: FLAG_SYNC,
                    seq: k,
                })
                .collect()
        })
    }

    /// Record `k` of a test channel's one data file: 100 bytes at `k * 100`.
    fn chunk_record(
        k: u64,
        start: u64,
        duration: u64,
        ingest_ms: i64,
        flags: u32,
        seq: u64,
    ) -> Record {
        Record {
            start,
            duration,
            vpos: 4096 + k * 100,
            file_no: 1,
            file_offset: k * 100,
            size: 100,
            ingest_ms,
            flags,
            seq,
        }
    }

    /// A channel ingested from the Smooth fixture, whose tracks' records are then replaced by
    /// those `records_of(timescale)` makes.
    fn channel_with(name: &str, records_of: impl Fn(u64) -> Vec<Record>) -> (PathBuf, PathBuf) {
        let d = std::env::temp_dir().join(format!("origin-window-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let isml = d.join("ch.isml");
        let bytes = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smooth.ismv"),
        )
        .unwrap();
        let mut s = DirectIngest::open(&isml, "s1", true).unwrap();
        s.push(&bytes, 1_000_000).unwrap();
        let snap = ChannelReader::new().snapshot(&isml, 2_000_000).unwrap();
        for t in &snap.tracks {
            let records: Vec<u8> = records_of(u64::from(t.timescale))
                .iter()
                .flat_map(Record::encode)
                .collect();
            let path = snap.archive_dir.join(&t.dir_name).join("records");
            crate::live::archive::write_atomically(&path, &records).unwrap();
        }
        (d, isml)
    }

    /// The snapshot with every record of every track in memory, as read whole.
    fn read_whole(snapshot: &ChannelSnapshot) -> ChannelSnapshot {
        let mut whole = snapshot.clone();
        for t in &mut whole.tracks {
            let path = snapshot.archive_dir.join(&t.dir_name).join("records");
            t.records = TrackRecords::in_memory(read_records(&path).unwrap().0);
        }
        whole
    }

    fn same_window(a: &ChannelSnapshot, b: &ChannelSnapshot, asked: WindowRequest) {
        let (wa, wb) = (window(a, asked).unwrap(), window(b, asked).unwrap());
        assert_eq!(wa.info, wb.info, "{asked:?}");
        let names = |w: &Window| -> Vec<(String, Vec<Record>)> {
            w.tracks
                .iter()
                .map(|(t, r)| (t.dir_name.clone(), r.clone()))
                .collect()
        };
        assert_eq!(names(&wa), names(&wb), "{asked:?}");
    }

    #[test]
    fn windows_from_kept_records_equal_windows_from_a_whole_read() {
        let (d, isml) = long_channel("equal", 20_000);
        let mut reader = ChannelReader::new();
        let snap = reader.snapshot(&isml, 2_000_000).unwrap();
        for t in &snap.tracks {
            assert_eq!(t.records.len(), 19_999);
            // The DVR window and its margins are in memory, not the archive.
            assert!(t.records.kept().len() < 200, "{}", t.records.kept().len());
        }
        let whole = read_whole(&snap);
        let live = WindowRequest {
            dvr_window_secs: 30,
            now_ms: 50_000_000,
            ..WindowRequest::default()
        };
        assert_eq!(window(&snap, live).unwrap().tracks[0].1.len(), 15);
        for asked in [
            live,
            WindowRequest {
                dvr_window_secs: 4,
                ..live
            },
            WindowRequest {
                time_shift_secs: 20_000,
                ..live
            },
            WindowRequest {
                dvr_window_secs: 3600,
                dynamic_depth: true,
                ..live
            },
            WindowRequest {
                begin: Some(1900.0),
                end: Some(2500.0),
                ..live
            },
            WindowRequest {
                begin: Some(39_000.0),
                ..live
            },
            WindowRequest {
                end: Some(100.0),
                ..live
            },
        ] {
            same_window(&snap, &whole, asked);
        }
        // The Live API's ranges, read from the file a chunk at a time.
        for (kept, read) in snap.tracks.iter().zip(&whole.tracks) {
            let ranges = crate::live::api::ranges(kept).unwrap();
            assert_eq!(ranges, crate::live::api::ranges(read).unwrap());
            assert_eq!(ranges.len(), 2);
        }
        // Stopped: the whole archive plays, from the file.
        for t in &snap.tracks {
            let path = snap.archive_dir.join(&t.dir_name).join("records");
            let last = *t.records.last().unwrap();
            let marker = Record {
                start: last.end(),
                duration: 0,
                size: 0,
                flags: FLAG_END,
                ..last
            };
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, &marker.encode()).unwrap();
        }
        let stopped = reader.snapshot(&isml, 3_000_000).unwrap();
        assert_eq!(stopped.state(), "stopped");
        let whole = read_whole(&stopped);
        same_window(&stopped, &whole, live);
        let w = window(&stopped, live).unwrap();
        assert!(w.info.ended);
        assert_eq!(w.tracks[0].1.len(), 19_999);
        same_window(
            &stopped,
            &whole,
            WindowRequest {
                time_shift_secs: 60,
                ..live
            },
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_growing_segment_shows_only_in_low_latency_windows() {
        use crate::live::archive::{FLAG_CLOSES, FLAG_CONTINUES};
        // Half-second chunks, four to a 2-second segment; the fourth segment has two so far.
        let (d, isml) = channel_with("growing", |ts| {
            (0..14u64)
                .map(|k| {
                    let flags = if k % 4 == 0 {
                        FLAG_SYNC
                    } else {
                        FLAG_CONTINUES
                    };
                    chunk_record(
                        k,
                        k * ts / 2,
                        ts / 2,
                        1_000_000 + k as i64 * 500,
                        flags,
                        k / 4,
                    )
                })
                .collect()
        });
        let snap = ChannelReader::new().snapshot(&isml, 2_000_000).unwrap();
        let asked = WindowRequest {
            dvr_window_secs: 30,
            now_ms: 1_010_000,
            ..WindowRequest::default()
        };
        let w = window(&snap, asked).unwrap();
        let ts = u64::from(snap.tracks[0].timescale);
        assert_eq!(w.info.cuts[0].starts, vec![0, 2 * ts, 4 * ts]);
        assert_eq!(w.tracks[0].1.len(), 12);
        assert_eq!(w.info.window.1, 6.0);
        // A segment was written when its last chunk was.
        assert_eq!(w.info.cuts[0].ingested_ms[0], 1_001_500);
        let w = window(
            &snap,
            WindowRequest {
                growing: true,
                ..asked
            },
        )
        .unwrap();
        assert_eq!(w.info.cuts[0].starts, vec![0, 2 * ts, 4 * ts, 6 * ts]);
        assert_eq!(w.tracks[0].1.len(), 14);
        assert_eq!(w.info.window.1, 7.0);
        std::fs::remove_dir_all(&d).unwrap();
        // A chunk that closes its segment completes it without waiting for the next.
        let (d, isml) = channel_with("closed", |ts| {
            (0..2u64)
                .map(|k| {
                    let flags = if k == 0 {
                        FLAG_SYNC
                    } else {
                        FLAG_CONTINUES | FLAG_CLOSES
                    };
                    chunk_record(k, k * ts, ts, 1_000_000, flags, 0)
                })
                .collect()
        });
        let snap = ChannelReader::new().snapshot(&isml, 2_000_000).unwrap();
        let w = window(&snap, asked).unwrap();
        assert_eq!(w.info.cuts[0].starts, vec![0]);
        assert_eq!(w.tracks[0].1.len(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stream_s_chunks_before_its_first_key_frame_are_not_shown() {
        // An origin that joined mid-GOP: its first chunk starts a segment without a key frame.
        let (d, isml) = channel_with("joined", |ts| {
            (0..6u64)
                .map(|k| {
                    let flags = if k == 0 { 0 } else { FLAG_SYNC };
                    chunk_record(k, k * ts, ts, 1_000_000, flags, k)
                })
                .collect()
        });
        let snap = ChannelReader::new().snapshot(&isml, 2_000_000).unwrap();
        let asked = WindowRequest {
            dvr_window_secs: 30,
            now_ms: 1_010_000,
            growing: true,
            ..WindowRequest::default()
        };
        let w = window(&snap, asked).unwrap();
        let ts = u64::from(snap.tracks[0].timescale);
        assert_eq!(w.info.cuts[0].starts[0], ts);
        assert_eq!(w.info.cuts[0].first_number, 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_records_kept_follow_the_channels_dvr_window() {
        let (d, isml) = long_channel("dvr", 10_000);
        let mut reader = ChannelReader::new();
        let kept = |reader: &mut ChannelReader| {
            let snap = reader.snapshot(&isml, 2_000_000).unwrap();
            snap.tracks[0].records.kept().len()
        };
        let short = kept(&mut reader);
        // A channel with a two-hour window keeps two hours.
        let manifest = std::fs::read_to_string(&isml).unwrap();
        let longer = manifest.replacen(
            "<head>",
            "<head>\n    <meta name=\"dvr_window_length\" content=\"7200\"/>",
            1,
        );
        assert_ne!(manifest, longer);
        std::fs::write(&isml, longer).unwrap();
        let long = kept(&mut reader);
        assert!(short < 100 && long > 3600, "{short} {long}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
