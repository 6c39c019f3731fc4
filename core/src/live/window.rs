//! The window of a live channel a request plays: which fragments of each track, and what the
//! packagers need to say about it (anchor, publish time, whether the stream ended, where each
//! segment starts and what it is numbered).
//!
//! While the channel is live the window is the last `dvr_window_length` seconds before the
//! live edge (the end of the newest fragment of any track); once every track has ended its
//! stream, the whole archive plays as one presentation.

use super::archive::Record;
use super::channel::{ChannelSnapshot, TrackArchive};
use super::timeline::{timeline_of, FLAG_TIMELINE_START};

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
}

/// The window of `snapshot` a request plays.
pub fn window(snapshot: &ChannelSnapshot, asked: WindowRequest) -> Window<'_> {
    let tolerance = START_TOLERANCE_MS as f64 / 1000.0;
    let stopped = snapshot.state() == "stopped";
    let live_edge = snapshot
        .tracks
        .iter()
        .filter_map(|t| t.media().next_back().map(|r| secs(r.end(), t.timescale)))
        .fold(0.0f64, f64::max);
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
    // A live playlist holds at least three segments (RFC 8216 §6.2.2), whatever the window.
    if asked.begin.is_none() && !ended {
        let third_last = snapshot
            .tracks
            .iter()
            .filter_map(|t| {
                let shown: Vec<&Record> = t
                    .media()
                    .filter(|r| secs(r.end(), t.timescale) <= edge + tolerance)
                    .collect();
                let r = shown.len().checked_sub(MIN_SEGMENTS).map(|k| shown[k])?;
                Some(secs(r.start, t.timescale))
            })
            .fold(f64::MAX, f64::min);
        if third_last < f64::MAX {
            first = first.min(third_last - tolerance);
        }
    }
    let mut tracks = Vec::new();
    let mut cuts = Vec::new();
    let mut window_start = f64::MAX;
    let mut first_timeline = None;
    let mut timeline_breaks: Vec<(f64, u32)> = Vec::new();
    for t in &snapshot.tracks {
        let records: Vec<Record> = t
            .media()
            .filter(|r| {
                secs(r.start, t.timescale) >= first
                    && secs(r.end(), t.timescale) <= edge + tolerance
            })
            .copied()
            .collect();
        let Some(head) = records.first() else {
            continue;
        };
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
        cuts.push(TrackCuts {
            src: format!("{}/{}", snapshot.archive_name, t.dir_name),
            starts: records.iter().map(|r| r.start).collect(),
            ingested_ms: records.iter().map(|r| r.ingest_ms).collect(),
            first_number: head.seq + 1,
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
    Window {
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
        },
    }
}
