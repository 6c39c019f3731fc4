//! The request engine: one packaging request, from its route to its answer, driven in steps by
//! whoever does the I/O (sans-IO, as rustls and quinn-proto are driven).
//!
//! ```text
//! let mut req = Request::new(route, manifest_path, query);
//! loop {
//!     match req.step(&mut caches)? {
//!         Step::Need(Need::Open(paths)) => /* stat or HEAD each, then */ req.supply_open(path, opened),
//!         Step::Need(Need::Read(reads)) => /* read each range, then */ req.supply_read(path, reader),
//!         Step::Done(answer) => return send(answer),
//!     }
//! }
//! ```
//!
//! The engine makes every decision: which files a presentation is made of (one join rule, from
//! the server manifest's path), the options in force (query over server-manifest metas over
//! defaults, merged once), track selection and subclips, the dispatch by target, HLS time to
//! segment number, manifest cache keys and ETags. It asks only for what it lacks: a file's
//! identity and size, and byte ranges of it (its head, then its moov; the samples a segment
//! needs). Local files are supplied whole (a mapping or a descriptor) together with their
//! identity, so the engine never asks twice for them; a remote object is supplied as a
//! [`SparseSource`](crate::source::SparseSource) that fills as ranges arrive. A live channel's
//! archive is asked for the same way: its data files are opened by the driver, and the clock
//! is read by the driver too ([`Request::with_live`]).
//!
//! The engine is re-entrant by design: after each supply, [`Request::step`] runs again from
//! what it knows, and memoizes the presentation once it is whole, so the steps after that cost
//! nothing but the answer. What a run finds out (files reached through `..`, files whose
//! fragments were prefetched) is kept in the request itself; what the driver needs to know of
//! the answer travels on the [`Answer`].
//!
//! The work is split by concern: `reads` (opened files, readers, read-ahead, the index and
//! server manifest of a file), `load` (the files of a presentation and the presentation
//! itself), `live` (a channel's window, the expiry of live answers, segments a window lacks),
//! `dispatch` (target → answer), `answers` and `generated` (the answer builders), `keys`
//! (manifest cache keys and ETags).

mod answers;
mod backends;
mod caches;
mod dispatch;
mod generated;
mod keys;
mod live;
#[cfg(test)]
mod live_tests;
mod load;
mod options;
mod reads;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use backends::{parse_content_range, Backend, Backends};
pub use caches::{Caches, Generated, DEFAULT_CACHE_BYTES};
pub use keys::etag;
pub use options::Options;
pub use reads::{MAX_MANIFEST_BYTES, READ_AHEAD};

use crate::drm::SegmentCipher;
use crate::error::Error;
use crate::fragment::FragmentPlan;
use crate::ism::{Meta, ServerManifest};
use crate::live::channel::ChannelSnapshot;
use crate::live::window::LiveInfo;
use crate::package::ts::{TsFormat, TsTrack};
use crate::source::{SharedSource, SourceIdentity};
use crate::url::{ManifestKind, Route};

use load::Loaded;

/// Steps one request may take: a bound for drivers whose supplies do not cover what was asked.
const MAX_STEPS: u32 = 10_000;

/// What a driver knows of a file (or remote object) it was asked to open.
#[derive(Clone)]
pub struct Opened {
    pub identity: SourceIdentity,
    pub size: u64,
    /// Last modification, seconds since the Unix epoch (Last-Modified of the answer when the
    /// file is the server manifest).
    pub modified: i64,
    /// Its bytes, when the driver can supply them along with the identity (a local file: its
    /// mapping or descriptor, which holds every byte). Otherwise the engine asks with
    /// [`Need::Read`].
    pub reader: Option<SharedSource>,
}

/// A byte range of a file the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub path: String,
    pub offset: u64,
    pub len: u64,
}

/// What the engine needs before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The identity, size and modification time of each of these files; supply each with
    /// [`Request::supply_open`].
    Open(Vec<String>),
    /// These byte ranges; supply each file's reader (holding at least the range) with
    /// [`Request::supply_read`].
    Read(Vec<Read>),
    /// A low-latency live request asks for what the channel does not hold yet (a blocking
    /// playlist reload, the next part): run the request again, from a fresh read of the
    /// channel, when one of these directories changes (a chunk was written), or at
    /// `until_ms` (ms since the Unix epoch), with [`Request::with_wait_until`] so that it
    /// then answers rather than waits again.
    Wait(Wait),
}

/// See [`Need::Wait`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub until_ms: i64,
    /// The channel's track directories: their `records` files grow by a record per chunk.
    pub watch: Vec<std::path::PathBuf>,
}

/// The outcome of a step.
pub enum Step {
    Need(Need),
    Done(Answer),
}

/// A finished answer: its body, with everything the response header says.
pub struct Answer {
    pub body: Body,
    pub content_type: &'static str,
    /// Last-Modified: the server manifest's modification time.
    pub modified: i64,
    /// A strong ETag, quoted.
    pub etag: String,
    /// How long caches may keep it (live answers; VOD leaves caching to the operator).
    pub expiry: Option<Expiry>,
    /// The media a segment answer carries and how its payload is made (`None`: a manifest,
    /// an init segment, a WebVTT segment).
    pub media: Option<MediaSpan>,
}

/// `Cache-Control: max-age` and `Sunset` of a live answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub max_age_secs: u64,
    /// When the archive drops the fragment, seconds since the Unix epoch.
    pub sunset: Option<i64>,
}

/// The part of the media timeline a segment answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSpan {
    /// Decode time of the first sample, in `timescale` ticks.
    pub start: u64,
    /// Ticks from `start` to the end of the last sample.
    pub duration: u64,
    pub timescale: u32,
    pub payload: Payload,
}

/// How a segment answer's payload is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Ranges of the indexed source, sent as they are from its file, its mapping or the bytes
    /// fetched for it ([`Body::Fragment`]).
    FromSource,
    /// Made whole in memory: encrypted, or rewritten as FLV tags ([`Body::Bytes`]).
    InMemory,
    /// Rewritten while it is written, in pieces ([`Body::Repackaged`]).
    Repackaged,
}

impl MediaSpan {
    /// The span of a fragment plan.
    fn of_plan(plan: &FragmentPlan, payload: Payload) -> MediaSpan {
        MediaSpan {
            start: plan.start_time,
            duration: plan.duration,
            timescale: plan.timescale,
            payload,
        }
    }
}

/// What an answer's body is made of.
pub enum Body {
    /// A manifest or playlist (shared with the engine's cache of generated manifests).
    Text(Arc<Generated>),
    /// Generated bytes (an init segment, WebVTT text).
    Bytes(Vec<u8>),
    /// A fragment: generated boxes, then payload ranges of `source` (the very source that was
    /// indexed: send them from its file or mapping).
    Fragment {
        plan: FragmentPlan,
        source: SharedSource,
        path: String,
    },
    /// Part of an answer that grows while it is sent (an LL-DASH segment being produced,
    /// sent with chunked transfer): the bytes after those sent before (none the first time;
    /// see [`Request::with_streamed`]), then, with `next`, the request waits as
    /// [`Need::Wait`] says and runs again with what it sent; without, the answer is complete.
    Growing { bytes: Vec<u8>, next: Option<Wait> },
    /// A segment repackaged from samples (MPEG-TS, packed audio): every payload byte is
    /// rewritten, so the driver writes it in pieces with
    /// [`RepackagedPieces`](crate::body::RepackagedPieces). `sources` are indexed by
    /// [`TsTrack::source`].
    Repackaged {
        tracks: Vec<TsTrack>,
        sources: Vec<(SharedSource, String)>,
        format: TsFormat,
        /// HLS AES-128: the segment is encrypted whole as it is written (its length padded
        /// to [`SegmentCipher::padded_len`]).
        encryption: Option<Box<SegmentCipher>>,
    },
}

/// Why a step stopped short of an answer.
enum Stop {
    Need(Need),
    Fail(Error),
}

impl<E: Into<Error>> From<E> for Stop {
    fn from(e: E) -> Stop {
        Stop::Fail(e.into())
    }
}

/// A live channel as the driver read it for one request.
struct LiveChannel {
    snapshot: Arc<ChannelSnapshot>,
    /// When the driver read it, ms since the Unix epoch.
    now_ms: i64,
    /// `usp_dynamic_time_shift_buffer_depth`.
    dynamic_depth: bool,
}

/// One request being answered.
pub struct Request {
    route: Route,
    /// The server manifest's file name (or URL): relative sources are joined to it.
    manifest_path: String,
    /// The request's query, `?…` or empty: child URLs repeat it.
    query: String,
    /// What was supplied for each file asked for (`Err`: see `failed`).
    opened: Vec<(String, Result<Opened, ()>)>,
    /// The first supplied failure: the request ends with it.
    failed: Option<Error>,
    loaded: Option<Loaded>,
    steps: u32,
    /// The backends absolute source URLs may name.
    backends: Backends,
    /// The generated-manifest cache's key for this request, when it asks for a manifest.
    cache_key: Option<String>,
    /// Files whose fragments were prefetched (or found to have no `mfra`).
    prefetched: Vec<String>,
    /// A live channel's archive, as the driver read it for this request.
    live: Option<LiveChannel>,
    /// `usp_iss_pass_through`.
    iss_pass_through: bool,
    /// The location's document root (or, for remote sources, its URL prefix): a src that
    /// climbs with `..` must stay inside it.
    root: Option<String>,
    /// Source files reached through `..`: the driver checks, symbolic links resolved, that
    /// each really lies inside `root` before supplying it.
    climbing: Vec<String>,
    /// The live presentation's server manifest (its tracks those of the window) and timing.
    live_window: Option<(Arc<ServerManifest>, Arc<LiveInfo>)>,
    /// Options the location sets over the server manifest's (`origin_drm`), last wins.
    overrides: Vec<Meta>,
    /// A held request's deadline (see [`Need::Wait`]).
    wait_until: Option<i64>,
    /// Bytes of a growing answer sent before (see [`Body::Growing`]).
    streamed: Option<u64>,
}

impl Request {
    /// A request for `route`, whose server manifest is `manifest_path`. `query` is the raw
    /// query string (without `?`).
    pub fn new(route: Route, manifest_path: String, query: &str) -> Request {
        Request {
            route,
            manifest_path,
            query: if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            },
            opened: Vec::new(),
            failed: None,
            loaded: None,
            steps: 0,
            backends: Backends::default(),
            cache_key: None,
            prefetched: Vec::new(),
            live: None,
            iss_pass_through: false,
            root: None,
            climbing: Vec::new(),
            live_window: None,
            overrides: Vec::new(),
            wait_until: None,
            streamed: None,
        }
    }

    /// The request was held (see [`Need::Wait`]) until `until_ms`: once that has passed, what
    /// it waits for is answered as not there (503) rather than waited for again.
    pub fn with_wait_until(mut self, until_ms: Option<i64>) -> Request {
        self.wait_until = until_ms;
        self
    }

    /// The request's answer grows (see [`Body::Growing`]) and its first `bytes` were sent:
    /// it goes on from there.
    pub fn with_streamed(mut self, bytes: Option<u64>) -> Request {
        self.streamed = bytes;
        self
    }

    /// Options set over the server manifest's metas for this request (`origin_drm`: key
    /// material an operator fetches per request), named as in the `.ism`
    /// (`iss.key`, `hls_playout`, …).
    pub fn with_overrides(mut self, overrides: Vec<Meta>) -> Request {
        self.overrides = overrides;
        self
    }

    /// The location's document root: sources named with `..` must stay inside it (without
    /// one, a `..` src may lead anywhere a path can).
    pub fn with_root(mut self, root: String) -> Request {
        self.root = Some(root);
        self
    }

    /// `Some(root)` when `path` was reached through a `..` src: the driver must check that the
    /// file, symbolic links resolved, lies inside `root` (403 otherwise).
    pub fn confined_to_root(&self, path: &str) -> Option<&str> {
        self.climbing
            .iter()
            .any(|p| p == path)
            .then_some(self.root.as_deref())
            .flatten()
    }

    /// `usp_iss_pass_through`: a Smooth fragment that is one whole stored fragment of its
    /// source (a Smooth `ismv`/`isma`) is sent as stored, byte for byte.
    pub fn with_iss_pass_through(mut self, on: bool) -> Request {
        self.iss_pass_through = on;
        self
    }

    /// A request on a live channel (`.isml`) plays `channel`, its archive as the driver read it
    /// at `now_ms` (ms since the Unix epoch: the engine reads no clock). The data files of the
    /// window are asked for with [`Need::Open`], as sources are.
    /// `dynamic_depth` (`usp_dynamic_time_shift_buffer_depth`): DASH `timeShiftBufferDepth`
    /// says what the window holds rather than the channel's DVR window length.
    pub fn with_live(
        mut self,
        channel: Arc<ChannelSnapshot>,
        now_ms: i64,
        dynamic_depth: bool,
    ) -> Request {
        self.live = Some(LiveChannel {
            snapshot: channel,
            now_ms,
            dynamic_depth,
        });
        self
    }

    /// Lets absolute source URLs name files of these backends (none by default: a server
    /// manifest of local files cannot make the origin fetch from the network).
    pub fn with_backends(mut self, backends: Backends) -> Request {
        self.backends = backends;
        self
    }

    /// The route being answered.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Supplies what [`Need::Open`] asked for `path`: the file, or why it cannot be opened.
    pub fn supply_open(&mut self, path: &str, opened: Result<Opened, Error>) {
        let opened = match opened {
            Ok(o) => Ok(o),
            Err(e) => {
                self.failed.get_or_insert(e);
                Err(())
            }
        };
        match self.opened.iter_mut().find(|(p, _)| p == path) {
            Some(slot) => slot.1 = opened,
            None => self.opened.push((path.to_string(), opened)),
        }
    }

    /// Supplies a reader of `path` holding the ranges [`Need::Read`] asked for (a remote
    /// driver supplies the same [`SparseSource`](crate::source::SparseSource) again after adding
    /// the bytes), or why they cannot be read.
    pub fn supply_read(&mut self, path: &str, reader: Result<SharedSource, Error>) {
        match self.opened.iter_mut().find(|(p, _)| p == path) {
            Some((_, Ok(opened))) => match reader {
                Ok(reader) => opened.reader = Some(reader),
                Err(e) => self.supply_open(path, Err(e)),
            },
            _ => self.supply_open(
                path,
                Err(reader.err().unwrap_or(Error::Internal(
                    "a read was supplied for a file that was never opened",
                ))),
            ),
        }
    }

    /// Runs the request as far as it can go: to an answer, to what it needs next, or to the
    /// error it ends with.
    pub fn step(&mut self, caches: &mut Caches) -> Result<Step, Error> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Error::Internal("the request took too many steps"));
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        // Indexes this worker built and its writer thread has since stored are swapped for the
        // stored ones at any request, a manifest answered from the cache included.
        caches.map_written_indexes();
        match self.run(caches) {
            Ok(answer) => Ok(Step::Done(self.live_headers(answer))),
            Err(Stop::Need(need)) => Ok(Step::Need(need)),
            Err(Stop::Fail(e)) => Err(e),
        }
    }

    /// One run from what is known: the presentation loaded (once), then the answer.
    fn run(&mut self, caches: &mut Caches) -> Result<Answer, Stop> {
        if self.loaded.is_none() {
            if self.route.kind == ManifestKind::Live && self.live_window.is_none() {
                self.open_live_window(caches)?;
            }
            let files = self.files(caches)?;
            // Manifests are pure functions of the request and the files' versions: a worker
            // answers a repeated one from its cache before it looks at any index (a 2-hour
            // title's playlists take a millisecond to write).
            if let Some(key) = self.manifest_cache_key(&files) {
                if let Some(hit) = caches.generated.get(&key) {
                    return Ok(answers::text_answer(hit));
                }
                self.cache_key = Some(key);
            }
            let loaded = self.load(files, caches)?;
            self.loaded = Some(loaded);
        }
        match self.answer(caches) {
            Err(Stop::Fail(Error::NotFound { path })) => Err(Stop::Fail(
                self.missing_segment(&path)
                    .unwrap_or(Error::NotFound { path }),
            )),
            other => other,
        }
    }
}
