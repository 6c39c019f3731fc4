//! The window of a live channel a request plays: which fragments of each track, and what the
//! packagers need to say about it (anchor, publish time, whether the stream ended, where each
//! segment starts and what it is numbered).
//!
//! While the channel is live the window is the last `dvr_window_length` seconds before the
//! live edge (the end of the newest fragment of any track); once every track has ended its
//! stream, the whole archive plays as one presentation.

use super::archive::Record;
use super::channel::{ChannelSnapshot, TrackArchive};

/// Tolerance at the window's start, so tracks whose fragments start a few milliseconds apart
/// (audio priming) keep the fragment that covers the window's first instant.
const START_TOLERANCE_MS: u64 = 500;

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
}

/// Where one track's segments start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackCuts {
    pub src: String,
    /// Decode times (track timescale) of the fragments in the window.
    pub starts: Vec<u64>,
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

/// The window of `snapshot` for a window length of `dvr_window_secs`.
pub fn window(
    snapshot: &ChannelSnapshot,
    dvr_window_secs: u64,
    retain_secs: Option<u64>,
) -> Window<'_> {
    let ended = snapshot.state() == "stopped";
    let edge = snapshot
        .tracks
        .iter()
        .filter_map(|t| t.media().next_back().map(|r| secs(r.end(), t.timescale)))
        .fold(0.0f64, f64::max);
    let first = if ended {
        f64::MIN
    } else {
        edge - dvr_window_secs as f64 - START_TOLERANCE_MS as f64 / 1000.0
    };
    let mut tracks = Vec::new();
    let mut cuts = Vec::new();
    let mut window_start = f64::MAX;
    for t in &snapshot.tracks {
        let records: Vec<Record> = t
            .media()
            .filter(|r| secs(r.start, t.timescale) >= first)
            .copied()
            .collect();
        let Some(head) = records.first() else {
            continue;
        };
        window_start = window_start.min(secs(head.start, t.timescale));
        cuts.push(TrackCuts {
            src: format!("{}/{}", snapshot.archive_name, t.dir_name),
            starts: records.iter().map(|r| r.start).collect(),
            first_number: head.seq + 1,
        });
        tracks.push((t, records));
    }
    Window {
        tracks,
        info: LiveInfo {
            anchor_ms: snapshot.anchor_ms,
            updated_ms: snapshot.updated_ms(),
            now_ms: snapshot.now_ms,
            ended,
            dvr_window_secs,
            retain_secs,
            cuts,
            window: (
                if window_start == f64::MAX {
                    0.0
                } else {
                    window_start
                },
                edge,
            ),
        },
    }
}
