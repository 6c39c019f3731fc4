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
//! [`SparseSource`](crate::source::SparseSource) that fills as ranges arrive.
//!
//! The engine is re-entrant by design: after each supply, [`Request::step`] runs again from
//! what it knows, and memoizes the presentation once it is whole, so the steps after that cost
//! nothing but the answer.

mod backends;
mod caches;
mod options;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use backends::{parse_content_range, Backend, Backends};
pub use caches::{Caches, Generated, DEFAULT_CACHE_BYTES};
pub use options::Options;

use crate::drm::{Drm, DrmError, Format, HlsMethod, Protection, SegmentCipher, TrackCipher};
use crate::error::Error;
use crate::fragment::{ByteRange, FragmentPlan};
use crate::index::{build_index, IndexError, MediaIndex, Sample};
use crate::ism::{climbs, is_within, join_relative, resolve_src, Meta, ServerManifest, SourceRef};
use crate::live::channel::ChannelSnapshot;
use crate::live::window::{LiveInfo, LivePlace};
use crate::package::hls::{self, HlsOptions};
use crate::package::ts::{self, TsFormat, TsTrack};
use crate::package::{dash, hds};
use crate::package::{mss, PackageError};
use crate::presentation::{Presentation, PresentationError, SourceLoader, Track};
use crate::source::{SharedSource, Source, SourceError, SourceIdentity};
use crate::url::{
    DashTarget, HdsTarget, HlsPlaylist, HlsSegmentFormat, HlsTarget, ManifestKind, Route,
    RouteError, SegmentIndex, SmoothTarget, Target, TimePoint,
};

/// Largest server manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Least bytes asked for when a read misses: the head of a file holds `ftyp` and, in a
/// faststart file, the start of the `moov`, so one read usually serves several boxes.
pub const READ_AHEAD: u64 = 256 << 10;
/// Bytes read past a missing range, for the header of the box that follows.
const NEXT_BOX_SLACK: u64 = 4096;
/// The end of a fragmented file read for its `mfra` (with `mfro`): the entries of 3,600
/// two-second fragments fit.
const MFRA_TAIL: u64 = 128 << 10;
/// Largest `mfra` read.
const MAX_MFRA: u64 = 16 << 20;
/// Fragments closer than this are read together.
const PREFETCH_JOIN_GAP: u64 = 64 << 10;
/// Reads at most this long are the index builder probing a box header.
const HEADER_PROBE: u64 = 64;
/// What a box-header probe reads: room for a fragment's `moof` and the next header.
const HEADER_READ_AHEAD: u64 = 16 << 10;
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
}

/// `Cache-Control: max-age` and `Sunset` of a live answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub max_age_secs: u64,
    /// When the archive drops the fragment, seconds since the Unix epoch.
    pub sunset: Option<i64>,
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
    /// A segment repackaged from samples (MPEG-TS, packed audio): every payload byte is
    /// rewritten, so the driver writes it in pieces with a [`ts::TsWriter`]. `sources` are
    /// indexed by [`TsTrack::source`].
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

/// A presentation as the request will use it: tracks selected, options merged.
struct Loaded {
    p: Presentation,
    options: Options,
    modified: i64,
    /// The identities of the server manifest and every source, as ETag input.
    versions: Vec<u8>,
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
    prefetched: std::cell::RefCell<Vec<String>>,
    /// A live channel's archive, as the driver read it for this request.
    live: Option<Arc<ChannelSnapshot>>,
    /// `usp_dynamic_time_shift_buffer_depth`.
    dynamic_depth: bool,
    /// `usp_iss_pass_through`.
    iss_pass_through: bool,
    /// The location's document root (or, for remote sources, its URL prefix): a src that
    /// climbs with `..` must stay inside it.
    root: Option<String>,
    /// Source files reached through `..`: the driver checks, symbolic links resolved, that
    /// each really lies inside `root` before supplying it.
    climbing: std::cell::RefCell<Vec<String>>,
    /// Start, duration and timescale of a fragment generated whole in memory (HDS), for its
    /// live expiry and Last-Modified.
    in_memory_fragment: std::cell::Cell<Option<(u64, u64, u32)>>,
    /// The live presentation's server manifest (its tracks those of the window) and timing.
    live_window: Option<(Arc<ServerManifest>, Arc<LiveInfo>)>,
    /// Options the location sets over the server manifest's (`origin_drm`), last wins.
    overrides: Vec<Meta>,
}

/// The files a presentation is made of, all opened.
struct Files {
    /// The parsed server manifest (`None`: the presentation is a bare MP4).
    manifest: Option<Arc<ServerManifest>>,
    /// Every source file, joined to the manifest's path.
    paths: Vec<String>,
    /// The identities of the manifest and every source, as ETag and cache-key input.
    versions: Vec<u8>,
    /// The server manifest's modification time.
    modified: i64,
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
            prefetched: std::cell::RefCell::new(Vec::new()),
            live: None,
            dynamic_depth: false,
            iss_pass_through: false,
            root: None,
            climbing: Default::default(),
            in_memory_fragment: Default::default(),
            live_window: None,
            overrides: Vec::new(),
        }
    }

    /// Options set over the server manifest's metas for this request (`origin_drm`: key
    /// material an operator fetches per request), named as in the `.ism`
    /// (`iss.key`, `hls_playout`, …).
    pub fn with_overrides(mut self, overrides: Vec<Meta>) -> Request {
        self.overrides = overrides;
        self
    }

    /// A request on a live channel (`.isml`) plays `channel`, its archive as the driver read it.
    /// `dynamic_depth` (`usp_dynamic_time_shift_buffer_depth`): DASH `timeShiftBufferDepth`
    /// says what the window holds rather than the channel's DVR window length.
    /// The location's document root: sources named with `..` must stay inside it (without
    /// one, a `..` src may lead anywhere a path can).
    pub fn with_root(mut self, root: String) -> Request {
        self.root = Some(root);
        self
    }

    /// `Some(root)` when `path` was reached through a `..` src: the driver must check that the
    /// file, symbolic links resolved, lies inside `root` (403 otherwise).
    pub fn confined_to_root(&self, path: &str) -> Option<&str> {
        let climbing = self.climbing.borrow();
        climbing
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

    pub fn with_live(mut self, channel: Arc<ChannelSnapshot>, dynamic_depth: bool) -> Request {
        self.live = Some(channel);
        self.dynamic_depth = dynamic_depth;
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
        match self.run(caches) {
            Ok(answer) => Ok(Step::Done(self.live_headers(answer))),
            Err(Stop::Need(need)) => Ok(Step::Need(need)),
            Err(Stop::Fail(e)) => Err(e),
        }
    }

    fn run(&mut self, caches: &mut Caches) -> Result<Answer, Stop> {
        if self.loaded.is_none() {
            if self.route.kind == ManifestKind::Live && self.live_window.is_none() {
                self.open_live_window(caches)?;
            }
            let files = self.files(caches)?;
            // Manifests are pure functions of the request and the files' versions: a worker
            // answers a repeated one from its cache before it looks at any index (a 2-hour
            // title's playlists take a millisecond to write).
            // A live MPD carries the time it was made (UTCTiming): not cached. Other live
            // manifests are keyed by the window's state too (an ended stream changes them
            // without changing the fragments in the window).
            let live_key = match &self.live_window {
                None => Some(String::new()),
                Some((_, info))
                    if !info.ended && self.route.target == Target::Dash(DashTarget::Manifest) =>
                {
                    None
                }
                Some((_, info)) => Some(format!("{}|{}|", info.ended, info.updated_ms)),
            };
            if let (true, Some(live_key)) = (is_manifest(&self.route.target), live_key) {
                let overrides = self.overrides.iter().fold(0u64, |h, m| {
                    xxhash_rust::xxh3::xxh3_64_with_seed(
                        format!("{}\0{}\0", m.name, m.content).as_bytes(),
                        h,
                    )
                });
                let mut key = format!(
                    "{}|{}|{:?}|{:?}|{}|{overrides:x}|{live_key}",
                    self.route.manifest_path,
                    files.modified,
                    self.route.target,
                    self.route.options,
                    self.iss_pass_through
                );
                for b in &files.versions {
                    key.push(char::from(b'a' + (b >> 4)));
                    key.push(char::from(b'a' + (b & 15)));
                }
                if let Some(hit) = caches.generated.get(&key) {
                    return Ok(self.text_answer(hit));
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

    /// A live answer's expiry, and a fragment's Last-Modified: when it was ingested.
    fn live_headers(&self, mut answer: Answer) -> Answer {
        if let Some((_, live)) = &self.live_window {
            let span = match &answer.body {
                Body::Fragment { plan, .. } => {
                    Some((plan.start_time, plan.duration, plan.timescale))
                }
                _ => self.in_memory_fragment.get(),
            };
            answer.expiry = Some(live_expiry(live, &answer, span));
            if let Some((start, _, _)) = span {
                if let Some(ms) = live.ingested_at(start) {
                    answer.modified = ms.div_euclid(1000);
                }
            }
        }
        answer
    }

    /// A segment a live window does not hold: before the window, in a gap of it, or not yet
    /// ingested, each with the status its format answers (COMPAT.md §5).
    fn missing_segment(&self, what: &str) -> Option<Error> {
        let (loaded, info) = self
            .loaded
            .as_ref()
            .and_then(|l| Some((l, l.p.live.clone()?)))?;
        let p = &loaded.p;
        let o = &loaded.options;
        // The requested instant, in seconds, when the URL names one.
        let at = |t: u64, timescale: u32| t as f64 / f64::from(timescale.max(1));
        let (place, statuses) = match &self.route.target {
            Target::Smooth(SmoothTarget::Fragment {
                bitrate,
                track,
                time,
            }) => {
                let t = p.find_smooth(track, *bitrate).map(|t| t.index().timescale);
                (t.map(|ts| info.place_of(at(*time, ts))), [404, 412, 412])
            }
            Target::Dash(DashTarget::Media { track, index }) => {
                let place = p.find(track).map(|t| {
                    let table = crate::package::segments(p, t, o.dash_length);
                    match (index, o.template) {
                        (SegmentIndex::Number(n), _)
                        | (SegmentIndex::Templated(n), crate::url::MpdSegmentTemplate::Number)
                        | (
                            SegmentIndex::Templated(n),
                            crate::url::MpdSegmentTemplate::NumberTimeline,
                        ) => number_place(&table, *n),
                        (SegmentIndex::Time(time), _) | (SegmentIndex::Templated(time), _) => {
                            info.place_of(at(*time, t.index().timescale))
                        }
                    }
                });
                (place, [410, 404, 404])
            }
            Target::Hds(HdsTarget::Fragment {
                variant,
                segment,
                fragment,
            }) => (
                hds::live_place(p, variant, *segment, *fragment, &o.hds()),
                [404, 503, 503],
            ),
            _ => return None,
        };
        // An unknown track stays "not found".
        let place = place?;
        Some(Error::LiveSegment {
            status: statuses[place as usize],
            what: format!("{what}: {}", place.describe()),
            token: place.token(),
        })
    }

    /// The server manifest (parsed) and every file it names, opened; their versions.
    fn files(&self, caches: &mut Caches) -> Result<Files, Stop> {
        let opened = self.opened(&self.manifest_path)?;
        let mut versions = Vec::with_capacity(256);
        opened.identity.write_fingerprint(&mut versions);
        // Live: the time the newest fragment was ingested.
        let modified = match &self.live_window {
            Some((_, info)) => info.updated_ms.div_euclid(1000),
            None => opened.modified,
        };
        if self.route.kind == ManifestKind::Mp4 {
            return Ok(Files {
                manifest: None,
                paths: Vec::new(),
                versions,
                modified,
            });
        }
        let manifest = match &self.live_window {
            Some((manifest, _)) => manifest.clone(),
            None => self.server_manifest(caches)?,
        };
        manifest.options().map_err(|error| Error::Manifest {
            path: self.manifest_path.clone(),
            error,
        })?;
        let paths = self.source_paths(&manifest)?;
        // Every file the presentation is made of is asked for at once, so that a remote
        // driver fetches them side by side.
        let unopened: Vec<String> = paths
            .iter()
            .filter(|p| !self.opened.iter().any(|(o, _)| o == *p))
            .cloned()
            .collect();
        if !unopened.is_empty() {
            return Err(Stop::Need(Need::Open(unopened)));
        }
        for path in &paths {
            self.opened(path)?.identity.write_fingerprint(&mut versions);
        }
        Ok(Files {
            manifest: Some(manifest),
            paths,
            versions,
            modified,
        })
    }

    /// A live channel's window: each track's fragments in it become a source of their own
    /// (opened here, with the identity of the records they hold), and the presentation's
    /// server manifest lists those tracks with the channel's options.
    fn open_live_window(&mut self, caches: &mut Caches) -> Result<(), Stop> {
        let channel = self
            .live
            .clone()
            .ok_or(Error::Internal("a live request without its channel"))?;
        let manifest = self.server_manifest(caches)?;
        let options = manifest.options().map_err(|error| Error::Manifest {
            path: self.manifest_path.clone(),
            error,
        })?;
        let server_dvr = options
            .dvr_window_length
            .unwrap_or(crate::live::session::DEFAULT_DVR_WINDOW_SECS);
        // A player may ask for less DVR than the channel keeps, never more.
        let dvr = match (
            is_manifest(&self.route.target),
            self.route.options.dvr_window_length,
        ) {
            (true, Some(asked)) => asked.min(server_dvr),
            _ => server_dvr,
        };
        let retain = crate::live::session::ChannelOptions::of(&manifest)
            .map_err(|error| Error::Manifest {
                path: self.manifest_path.clone(),
                error,
            })?
            .retain_secs();
        // vbegin / vend: wall-clock times (or offsets from the channel's start) select a part
        // of the archive.
        let media_secs = |t: Option<TimePoint>| {
            t.map(|t| match t {
                TimePoint::Utc(us) => (us / 1000 - channel.anchor_ms) as f64 / 1000.0,
                TimePoint::Offset(us) => us as f64 / 1_000_000.0,
            })
        };
        let asked = crate::live::window::WindowRequest {
            dvr_window_secs: dvr,
            retain_secs: retain,
            // time_shift moves what manifests show; fragments stay where they are.
            time_shift_secs: if is_manifest(&self.route.target) {
                self.route
                    .options
                    .time_shift
                    .or(options.time_shift)
                    .unwrap_or(0)
            } else {
                0
            },
            begin: media_secs(self.route.options.vbegin),
            end: media_secs(self.route.options.vend),
            dynamic_depth: self.dynamic_depth,
        };
        let window = crate::live::window::window(&channel, asked);
        if window.tracks.is_empty() {
            return Err(Stop::Fail(Error::NotFound {
                path: format!("{} (nothing was ingested yet)", self.route.manifest_path),
            }));
        }
        let modified = window.info.updated_ms.div_euclid(1000);
        let mut live_manifest = ServerManifest {
            metas: manifest.metas.clone(),
            tracks: Vec::with_capacity(window.tracks.len()),
        };
        for (track, records) in &window.tracks {
            let src = format!("{}/{}", channel.archive_name, track.dir_name);
            let path = join_relative(&self.manifest_path, &src)
                .ok_or(Error::Internal("an archive path that does not join"))?;
            let source = track.source(&path, records).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            self.opened.push((
                path,
                Ok(Opened {
                    identity: source.identity().clone(),
                    size: source.len(),
                    modified,
                    reader: Some(Arc::new(source)),
                }),
            ));
            let kind = match track.info.kind {
                crate::index::TrackKind::Video => crate::ism::TrackKind::Video,
                crate::index::TrackKind::Audio => crate::ism::TrackKind::Audio,
                _ => crate::ism::TrackKind::Text,
            };
            let mut entry = crate::ism::TrackEntry::new(kind, &src);
            entry.system_bitrate = Some(track.info.bitrate);
            entry.set_param("trackID", &track.info.track_id.to_string());
            entry.set_param("trackName", &track.info.name);
            live_manifest.tracks.push(entry);
        }
        self.live_window = Some((Arc::new(live_manifest), Arc::new(window.info)));
        Ok(())
    }

    /// What was supplied for `path`, or the need to open it.
    fn opened(&self, path: &str) -> Result<&Opened, Stop> {
        match self.opened.iter().find(|(p, _)| p == path) {
            Some((_, Ok(o))) => Ok(o),
            // A failed open ends the request at the step after the supply (see `step`).
            Some((_, Err(_))) => Err(Stop::Fail(Error::Internal("a failed file was read"))),
            None => Err(Stop::Need(Need::Open(vec![path.to_string()]))),
        }
    }

    /// The reader of an opened file, or the need to read `offset..offset + len` of it.
    fn reader(&self, path: &str, offset: u64, len: u64) -> Result<SharedSource, Stop> {
        let opened = self.opened(path)?;
        match &opened.reader {
            Some(r) => match r.missing(offset, len) {
                None => Ok(r.clone()),
                Some((at, n)) => Err(Stop::Need(Need::Read(vec![exact_read(
                    path,
                    at,
                    n,
                    opened.size,
                )]))),
            },
            None => Err(Stop::Need(Need::Read(vec![exact_read(
                path,
                offset,
                len,
                opened.size,
            )]))),
        }
    }

    /// The index of the media file at `path`, from the cache while the file is unchanged. A
    /// read the supplied bytes do not cover becomes a need; an index built from a mapping that
    /// was found truncated meanwhile is thrown away.
    fn index_of(&self, path: &str, caches: &mut Caches) -> Result<Arc<MediaIndex>, Stop> {
        let opened = self.opened(path)?;
        if let Some(index) = caches.indexes.get(&opened.identity) {
            return Ok(index);
        }
        let src = self.reader(path, 0, opened.size.min(READ_AHEAD))?;
        match caches.timed_index_build(|| build_index(&*src)) {
            Ok(index) => {
                src.intact().map_err(Error::from_source)?;
                let index = Arc::new(index);
                caches.indexes.insert(src.identity().clone(), index.clone());
                Ok(index)
            }
            Err(IndexError::Source(SourceError::Missing { offset, len, .. })) => {
                let (at, n) = src.missing(offset, len).unwrap_or((offset, len));
                // A box header past the head of a file: the fragments of a fragmented file.
                // Their moofs are read side by side when the file's mfra lists them.
                if n <= HEADER_PROBE && at > 0 {
                    if let Some(reads) = self.fragment_prefetch(path, &*src, opened.size) {
                        return Err(Stop::Need(Need::Read(reads)));
                    }
                }
                Err(Stop::Need(Need::Read(vec![index_read(
                    path,
                    at,
                    n,
                    opened.size,
                )])))
            }
            Err(IndexError::Source(e)) => Err(Stop::Fail(Error::from_source(e))),
            Err(e) => Err(e.into()),
        }
    }

    /// The reads of every `moof` of a fragmented file still missing, from the `mfra` at its
    /// end (read first when it is not held), so that a remote file's fragments are indexed with
    /// reads side by side instead of one after the other. `None` once there is nothing to
    /// prefetch (no `mfra`, or everything it lists is held): the builder then reads on.
    fn fragment_prefetch(&self, path: &str, src: &dyn Source, size: u64) -> Option<Vec<Read>> {
        if self.prefetched.borrow().iter().any(|p| p == path) || size < 16 {
            return None;
        }
        let done = || {
            self.prefetched.borrow_mut().push(path.to_string());
            None
        };
        // mfro: size, "mfro", version and flags, the mfra's size.
        let tail_len = size.min(MFRA_TAIL);
        if src.missing(size - 16, 16).is_some() {
            return Some(vec![exact_read(path, size - tail_len, tail_len, size)]);
        }
        let Ok(mfro) = src.bytes(size - 16, 16) else {
            return done();
        };
        if &mfro[4..8] != b"mfro" {
            return done();
        }
        let mfra_size = u64::from(u32::from_be_bytes([mfro[12], mfro[13], mfro[14], mfro[15]]));
        if mfra_size < 16 || mfra_size > size || mfra_size > MAX_MFRA {
            return done();
        }
        let mfra_at = size - mfra_size;
        if let Some((at, n)) = src.missing(mfra_at, mfra_size) {
            return Some(vec![exact_read(path, at, n, size)]);
        }
        let Ok(mfra) = src.bytes(mfra_at, mfra_size as usize) else {
            return done();
        };
        let mut reader = crate::mp4::Reader::new(&mfra, mfra_at);
        let tables = match reader.next_box_body() {
            Ok(Some((h, body))) if h.fourcc == crate::mp4::FourCC::new(b"mfra") => {
                crate::mp4::fragment::parse_mfra(body).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let mut offsets: Vec<u64> = tables
            .iter()
            .flat_map(|t| t.entries.iter().map(|e| e.moof_offset))
            .filter(|&o| o < size)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        // One read per run of fragments close to each other (a little media between is cheaper
        // than another request).
        let mut reads: Vec<Read> = Vec::new();
        for o in offsets {
            if src.missing(o, HEADER_PROBE.min(size - o)).is_none() {
                continue;
            }
            let end = (o + HEADER_READ_AHEAD).min(size);
            match reads.last_mut() {
                Some(r) if o <= r.offset + r.len + PREFETCH_JOIN_GAP => {
                    r.len = end.max(r.offset + r.len) - r.offset;
                }
                _ => reads.push(exact_read(path, o, end - o, size)),
            }
        }
        self.prefetched.borrow_mut().push(path.to_string());
        (!reads.is_empty()).then_some(reads)
    }

    /// The server manifest, parsed, from the cache while its file is unchanged.
    fn server_manifest(&self, caches: &mut Caches) -> Result<Arc<ServerManifest>, Stop> {
        let path = &self.manifest_path;
        let opened = self.opened(path)?;
        if let Some(m) = caches.manifests.get(&opened.identity) {
            return Ok(m);
        }
        if opened.size > MAX_MANIFEST_BYTES {
            return Err(Stop::Fail(Error::ManifestTooLarge {
                path: path.clone(),
                limit: MAX_MANIFEST_BYTES,
            }));
        }
        let src = self.reader(path, 0, opened.size)?;
        let bytes = src
            .bytes(0, opened.size as usize)
            .map_err(Error::from_source)?;
        let manifest = ServerManifest::parse(&bytes).map_err(|error| Error::Manifest {
            path: path.clone(),
            error,
        })?;
        src.intact().map_err(Error::from_source)?;
        let manifest = Arc::new(manifest);
        caches
            .manifests
            .insert(opened.identity.clone(), manifest.clone());
        Ok(manifest)
    }

    /// The presentation the route names, its tracks selected, its options merged.
    fn load(&self, files: Files, caches: &mut Caches) -> Result<Loaded, Stop> {
        let Files {
            manifest,
            paths,
            versions,
            modified,
        } = files;
        let mut p = if let Some(manifest) = manifest {
            let mut indexes = Vec::with_capacity(paths.len());
            let mut reads = Vec::new();
            for path in &paths {
                match self.index_of(path, caches) {
                    Ok(index) => indexes.push((path.clone(), index)),
                    Err(Stop::Need(Need::Read(r))) => reads.extend(r),
                    Err(other) => return Err(other),
                }
            }
            if !reads.is_empty() {
                return Err(Stop::Need(Need::Read(reads)));
            }
            let mut loaded = Loaded_ {
                request: self,
                indexes,
            };
            Presentation::from_manifest((*manifest).clone(), &mut loaded)
                .map_err(|e| self.presentation_error(e))?
        } else {
            let index = self.index_of(&self.manifest_path, caches)?;
            Presentation::from_mp4(index).map_err(|e| self.presentation_error(e))?
        };
        p.segment_cache = Some(caches.segments.clone());
        p.live = self.live_window.as_ref().map(|(_, info)| info.clone());
        if let Some(t) = p.empty_track() {
            return Err(Stop::Fail(Error::EmptyTrack(t.id())));
        }
        self.select_tracks(&mut p, caches)?;
        let mut options =
            Options::merge(&self.route, &p.manifest, &self.query).map_err(|error| {
                Error::Manifest {
                    path: self.manifest_path.clone(),
                    error,
                }
            })?;
        options.drm = if self.overrides.is_empty() {
            Drm::from_metas(&p.manifest.metas)
        } else {
            let mut metas = p.manifest.metas.clone();
            metas.extend(self.overrides.iter().cloned());
            Drm::from_metas(&metas)
        }
        .map_err(|error| self.drm_error(error))?;
        Ok(Loaded {
            p,
            options,
            modified,
            versions,
        })
    }

    /// The file of every track's source, joined to the server manifest's path (the one join
    /// rule: fragments are later sent from exactly these).
    fn source_paths(&self, manifest: &ServerManifest) -> Result<Vec<String>, Stop> {
        let mut paths: Vec<String> = Vec::with_capacity(manifest.tracks.len());
        for entry in &manifest.tracks {
            let path = self.path_of_src(&entry.src)?;
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        Ok(paths)
    }

    /// The file a track `src` names: a relative path joined to the server manifest's, or an
    /// absolute URL under one of the backends (any other URL is refused).
    fn path_of_src(&self, src: &str) -> Result<String, Error> {
        match resolve_src(src).map_err(|error| Error::Manifest {
            path: self.manifest_path.clone(),
            error,
        })? {
            SourceRef::Relative(rel) => {
                let refused = |reason| Error::SourceRefused {
                    manifest: self.manifest_path.clone(),
                    src: crate::url::excerpt(&rel),
                    reason,
                };
                let path = join_relative(&self.manifest_path, &rel)
                    .ok_or_else(|| refused("it climbs above the file system's root"))?;
                if climbs(&rel) {
                    if let Some(root) = &self.root {
                        if !is_within(&path, root) {
                            return Err(refused("it leads outside the location's root"));
                        }
                        let mut climbing = self.climbing.borrow_mut();
                        if !climbing.contains(&path) {
                            climbing.push(path.clone());
                        }
                    }
                }
                Ok(path)
            }
            SourceRef::Http(url) | SourceRef::S3(url) => {
                self.backends
                    .path_of(&url)
                    .map_err(|reason| Error::SourceRefused {
                        manifest: self.manifest_path.clone(),
                        src: crate::url::excerpt(&url),
                        reason,
                    })
            }
        }
    }

    fn presentation_error(&self, error: PresentationError) -> Error {
        Error::Presentation {
            path: self.manifest_path.clone(),
            error,
        }
    }

    /// `filter=`, `max_bitrate=`, `vbegin=` / `vend=`.
    fn select_tracks(&self, p: &mut Presentation, caches: &mut Caches) -> Result<(), Stop> {
        let query = &self.route.options;
        if let Some(text) = &query.filter {
            let filter = crate::filter::Filter::parse(text).map_err(|e| RouteError::BadQuery {
                name: "filter".into(),
                value: text.clone(),
                reason: e.what,
            })?;
            p.apply_filter(&filter);
            if p.tracks.is_empty() {
                return Err(Stop::Fail(Error::NotFound {
                    path: format!("{} (no track passes the filter)", self.route.manifest_path),
                }));
            }
        }
        if let Some(max) = query.max_bitrate {
            p.limit_bitrate(max);
        }
        // A live channel's vbegin / vend chose its window already.
        if (query.vbegin.is_some() || query.vend.is_some()) && p.live.is_none() {
            self.subclip(p, caches)?;
        }
        Ok(())
    }

    /// Restricts the presentation to `vbegin`..`vend`: the reference (video) file is cut at
    /// its sync samples and every other file at the same instants; clips are cached like
    /// indexes.
    fn subclip(&self, p: &mut Presentation, caches: &mut Caches) -> Result<(), Stop> {
        let offset = |t: Option<TimePoint>, name: &str| match t {
            None => Ok(None),
            Some(TimePoint::Offset(us)) => Ok(Some(us)),
            Some(TimePoint::Utc(_)) => Err(RouteError::BadQuery {
                name: name.into(),
                value: String::new(),
                reason: "wall-clock times apply to live presentations",
            }),
        };
        let begin = offset(self.route.options.vbegin, "vbegin")?.unwrap_or(0);
        let end = offset(self.route.options.vend, "vend")?;
        let span = p
            .reference()
            .media
            .clip_span(begin, end)
            .ok_or_else(|| Error::NotFound {
                path: format!("{} (vbegin is past the end)", self.route.manifest_path),
            })?;
        p.map_media(|m| {
            let key = SourceIdentity::Subclip {
                base: Box::new(m.identity.clone()),
                begin_us: span.0,
                end_us: span.1,
            };
            caches
                .indexes
                .get_or_try_insert(&key, || m.subclip(span.0, span.1).ok_or(()))
                .ok()
        });
        if p.tracks.is_empty() {
            return Err(Stop::Fail(Error::NotFound {
                path: format!("{} (empty subclip)", self.route.manifest_path),
            }));
        }
        Ok(())
    }

    /// The answer for the route, from the loaded presentation.
    fn answer(&self, caches: &mut Caches) -> Result<Answer, Stop> {
        let Some(loaded) = &self.loaded else {
            return Err(Stop::Fail(Error::Internal("answer before load")));
        };
        let (p, o) = (&loaded.p, &loaded.options);
        // Legacy HLS segment URLs name a start time; every packager below counts segments.
        let by_number;
        let target = match &self.route.target {
            Target::Hls(HlsTarget::Segment {
                variant,
                index: SegmentIndex::Time(time),
                format,
            }) => {
                let n = hls::segment_number_at(p, variant, *time, &o.hls(o.hls_fmp4))?;
                by_number = Target::Hls(HlsTarget::Segment {
                    variant: variant.clone(),
                    index: SegmentIndex::Number(n),
                    format: *format,
                });
                &by_number
            }
            other => other,
        };
        // A format the content protection switches off answers nothing at all.
        let format = match target {
            Target::Smooth(_) => Some(Format::Smooth),
            Target::Dash(_) => Some(Format::Dash),
            Target::Hls(_) => Some(Format::Hls),
            Target::Hds(_) => Some(Format::Hds),
            _ => None,
        };
        let protection = match format {
            Some(f) => o.drm.for_format(f).map_err(|e| self.drm_error(e))?,
            None => Protection::Clear,
        };
        let cenc = match protection {
            Protection::Cenc(c) => Some(c),
            _ => None,
        };
        let hls_key = match protection {
            Protection::Hls(k) => Some(k),
            _ => None,
        };
        // Stored fragments are clear: pass-through only serves unprotected Smooth.
        let pass_through = self.iss_pass_through && cenc.is_none();
        const M3U8: &str = "application/vnd.apple.mpegurl";
        let (body, content_type) = match target {
            Target::Smooth(SmoothTarget::Manifest) => (
                mss::manifest(p, o.smooth_length, pass_through, &self.query, cenc)?,
                "application/vnd.ms-sstr+xml",
            ),
            Target::Dash(DashTarget::Manifest) => (dash::mpd(p, &o.dash()), "application/dash+xml"),
            Target::Hls(HlsTarget::Master) => (hls::master(p, &o.hls(o.hls_fmp4))?, M3U8),
            Target::Hls(HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::Media,
                fmp4,
            }) => {
                let text = if *fmp4 {
                    hls::media_playlist(p, variant, &o.hls(true))?
                } else {
                    hls::ts_playlist(p, variant, &o.hls(false))?
                };
                (text, M3U8)
            }
            Target::Hls(HlsTarget::Playlist {
                kind: HlsPlaylist::IFrames,
                ..
            }) if hls_key.is_some() => {
                // Byte ranges cannot address key frames inside encrypted segments.
                return Err(Stop::Fail(Error::NotFound {
                    path: "I-frame playlist of encrypted HLS".into(),
                }));
            }
            Target::Hls(HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::IFrames,
                ..
            }) => (self.iframe_playlist(p, variant, &o.hls(o.hls_fmp4))?, M3U8),
            Target::Smooth(SmoothTarget::Fragment {
                bitrate,
                track,
                time,
            }) => {
                if pass_through && p.live.is_none() {
                    let (t, samples) = mss::fragment_samples(p, *bitrate, track, *time)?;
                    if let Some(stored) = self.stored_fragment_answer(loaded, t, samples)? {
                        return Ok(stored);
                    }
                }
                let (t, plan) =
                    mss::fragment(p, *bitrate, track, *time, o.smooth_length, pass_through)?;
                let cipher = match cenc {
                    Some(c) => self.cenc_cipher(c, t)?,
                    None => None,
                };
                return self.protected_fragment_answer(loaded, t, plan, cipher, true);
            }
            Target::Dash(DashTarget::Init { track }) => {
                let t = dash::find_track(p, track)?;
                let mut bytes = dash::init_segment(p, track)?;
                if let Some(c) = cenc {
                    if let Some(cipher) = self.cenc_cipher(c, t)? {
                        bytes = cipher
                            .protect_init(&bytes, &c.pssh_boxes(cipher.kid()))
                            .map_err(|e| self.drm_error(e))?;
                    }
                }
                return Ok(self.bytes_answer(loaded, bytes, dash::mime_type(t.kind)));
            }
            Target::Dash(DashTarget::Media { track, index }) => {
                let (t, plan) = dash::media_segment(p, track, *index, &o.dash())?;
                let cipher = match cenc {
                    Some(c) => self.cenc_cipher(c, t)?,
                    None => None,
                };
                return self.protected_fragment_answer(loaded, t, plan, cipher, false);
            }
            Target::Hls(HlsTarget::Init { variant }) => {
                let t = hls::listed_track(p, variant, hls::HlsResource::Fmp4)?;
                let mut bytes = hls::init_segment(p, variant)?;
                // AES-128 encrypts media segments whole; their init segment stays clear.
                if let Some(k) = hls_key.filter(|k| k.method != HlsMethod::Aes128) {
                    if let Some(cipher) = self.hls_cipher(k, t)? {
                        bytes = cipher
                            .protect_init(&bytes, &[])
                            .map_err(|e| self.drm_error(e))?;
                    }
                }
                return Ok(self.bytes_answer(loaded, bytes, dash::mime_type(t.kind)));
            }
            Target::Hls(HlsTarget::Segment {
                variant,
                index: SegmentIndex::Number(n),
                format: HlsSegmentFormat::Fmp4,
            }) => {
                let (t, plan) = hls::fmp4_segment(p, variant, *n, &o.hls(true))?;
                return match hls_key {
                    Some(k) if k.method == HlsMethod::Aes128 => {
                        self.whole_encrypted_answer(loaded, t, plan, k.segment_cipher(*n))
                    }
                    Some(k) => {
                        let cipher = self.hls_cipher(k, t)?;
                        self.protected_fragment_answer(loaded, t, plan, cipher, false)
                    }
                    None => self.fragment_answer(loaded, t, plan),
                };
            }
            Target::Hls(HlsTarget::Segment {
                variant,
                index: SegmentIndex::Number(n),
                format: format @ (HlsSegmentFormat::Ts | HlsSegmentFormat::Aac),
            }) => {
                let encryption = match hls_key {
                    Some(k) if k.method == HlsMethod::Aes128 => Some(Box::new(k.segment_cipher(*n))),
                    Some(_) => {
                        return Err(Stop::Fail(self.drm_error(DrmError::Unsupported(
                            "SAMPLE-AES is made for fMP4 segments only: set hls_fmp4 (or use AES-128 for MPEG-TS)".into(),
                        ))))
                    }
                    None => None,
                };
                let (parts, format) = if *format == HlsSegmentFormat::Ts {
                    let parts = hls::ts_segment_samples(p, variant, *n, &o.hls(false))?;
                    (parts, TsFormat::Transport)
                } else {
                    let parts = hls::packed_audio_samples(p, variant, *n, &o.hls(false))?;
                    (parts, TsFormat::PackedAudio)
                };
                return self.repackaged_answer(loaded, &parts, format, encryption);
            }
            Target::Hls(HlsTarget::Segment {
                variant,
                index: SegmentIndex::Number(n),
                format: HlsSegmentFormat::WebVtt,
            }) => {
                let plan = hls::webvtt_segment_plan(p, variant, *n, &o.hls(o.hls_fmp4))?;
                let text = self.webvtt_segment(&plan)?;
                return Ok(self.bytes_answer(loaded, text.into_bytes(), "text/vtt"));
            }
            // HLS URLs name segments by number or (legacy) by time, both handled above.
            Target::Hls(_) | Target::Presentation | Target::Live(_) => {
                return Err(Stop::Fail(
                    RouteError::UnknownVirtualPath(String::new()).into(),
                ))
            }
            Target::Hds(HdsTarget::Manifest) => {
                (hds::manifest(p, &o.hds())?, hds::MANIFEST_CONTENT_TYPE)
            }
            Target::Hds(HdsTarget::Fragment {
                variant,
                segment,
                fragment,
            }) => {
                let plan = hds::fragment(p, variant, *segment, *fragment, &o.hds())?;
                let bytes = self.hds_fragment(&plan)?;
                self.in_memory_fragment
                    .set(Some((plan.start_time, plan.duration, plan.timescale)));
                return Ok(self.bytes_answer(loaded, bytes, hds::FRAGMENT_CONTENT_TYPE));
            }
        };
        // Every generated answer's ETag covers the versions of all the files it was made from.
        let generated = Arc::new(Generated {
            etag: etag(&[body.as_bytes(), &loaded.versions]),
            text: body,
            content_type,
            modified: loaded.modified,
        });
        if let Some(key) = &self.cache_key {
            caches.generated.insert(key.clone(), generated.clone());
        }
        Ok(self.text_answer(generated))
    }

    fn text_answer(&self, generated: Arc<Generated>) -> Answer {
        Answer {
            content_type: generated.content_type,
            modified: generated.modified,
            etag: generated.etag.clone(),
            body: Body::Text(generated),
            expiry: None,
        }
    }

    fn bytes_answer(&self, loaded: &Loaded, bytes: Vec<u8>, content_type: &'static str) -> Answer {
        Answer {
            etag: etag(&[&bytes, &loaded.versions]),
            body: Body::Bytes(bytes),
            content_type,
            modified: loaded.modified,
            expiry: None,
        }
    }

    /// The file of a track's source (the manifest itself for a bare MP4).
    fn track_path(&self, track: &Track) -> Result<String, Error> {
        if track.source.is_empty() {
            Ok(self.manifest_path.clone())
        } else {
            self.path_of_src(&track.source)
        }
    }

    /// A track's reader holding all of `samples`' bytes (one span: a remote source reads
    /// it with one request).
    fn samples_reader(
        &self,
        track: &Track,
        samples: std::ops::Range<u32>,
    ) -> Result<(SharedSource, String), Stop> {
        let path = self.track_path(track)?;
        let (start, end) = track
            .index()
            .samples(samples)
            .fold((u64::MAX, 0u64), |(lo, hi), s| {
                (lo.min(s.offset), hi.max(s.offset + u64::from(s.size)))
            });
        let (offset, len) = if start < end {
            (start, end - start)
        } else {
            (0, 0)
        };
        Ok((self.reader(&path, offset, len)?, path))
    }

    fn fragment_answer(
        &self,
        loaded: &Loaded,
        track: &Track,
        plan: FragmentPlan,
    ) -> Result<Answer, Stop> {
        let (path, source) = self.payload_source(track, &plan)?;
        Ok(Answer {
            etag: etag(&[&plan.header, &loaded.versions]),
            content_type: dash::mime_type(track.kind),
            modified: loaded.modified,
            body: Body::Fragment { plan, source, path },
            expiry: None,
        })
    }

    fn drm_error(&self, error: DrmError) -> Error {
        Error::Drm {
            path: self.manifest_path.clone(),
            error,
        }
    }

    /// The Common Encryption cipher of a track (`None`: a kind that stays clear).
    fn cenc_cipher(&self, c: &crate::drm::Cenc, t: &Track) -> Result<Option<TrackCipher>, Stop> {
        Ok(c.track_cipher(t.index(), &t.entry, &t.url_id())
            .map_err(|e| self.drm_error(e))?)
    }

    /// The SAMPLE-AES (`cbcs`) cipher of an HLS track.
    fn hls_cipher(&self, k: &crate::drm::HlsKey, t: &Track) -> Result<Option<TrackCipher>, Stop> {
        Ok(k.track_cipher(t.index(), &t.entry, &t.url_id())
            .map_err(|e| self.drm_error(e))?)
    }

    /// A fragment with its samples encrypted by `cipher` (sent as planned without one).
    fn protected_fragment_answer(
        &self,
        loaded: &Loaded,
        track: &Track,
        plan: FragmentPlan,
        cipher: Option<TrackCipher>,
        piff: bool,
    ) -> Result<Answer, Stop> {
        let Some(cipher) = cipher else {
            return self.fragment_answer(loaded, track, plan);
        };
        let (path, source) = self.payload_source(track, &plan)?;
        let bytes = cipher.encrypt_fragment(&plan, track.index(), &*source, piff, &path)?;
        source.intact().map_err(Error::from_source)?;
        self.in_memory_fragment
            .set(Some((plan.start_time, plan.duration, plan.timescale)));
        // The header holds the IVs; the key's fingerprint covers a key change that keeps them.
        Ok(Answer {
            etag: etag(&[
                &bytes[..plan.header.len().min(bytes.len())],
                &cipher.fingerprint(),
                &loaded.versions,
            ]),
            content_type: dash::mime_type(track.kind),
            modified: loaded.modified,
            body: Body::Bytes(bytes),
            expiry: None,
        })
    }

    /// A fragment encrypted whole (HLS AES-128 on fMP4 segments).
    fn whole_encrypted_answer(
        &self,
        loaded: &Loaded,
        track: &Track,
        plan: FragmentPlan,
        cipher: SegmentCipher,
    ) -> Result<Answer, Stop> {
        let (path, source) = self.payload_source(track, &plan)?;
        let mut clear = crate::buffers::take(plan.total_len() as usize + crate::crypto::BLOCK);
        clear.extend_from_slice(&plan.header);
        for r in &plan.payload {
            let len = usize::try_from(r.len).map_err(|_| Error::Internal("payload too large"))?;
            clear.extend_from_slice(&source.bytes(r.offset, len).map_err(Error::from_source)?);
        }
        source.intact().map_err(Error::from_source)?;
        let _ = path;
        let fingerprint = cipher.fingerprint();
        let bytes = cipher.encrypt_all(clear);
        self.in_memory_fragment
            .set(Some((plan.start_time, plan.duration, plan.timescale)));
        Ok(Answer {
            etag: etag(&[&plan.header, &fingerprint, &loaded.versions]),
            content_type: dash::mime_type(track.kind),
            modified: loaded.modified,
            body: Body::Bytes(bytes),
            expiry: None,
        })
    }

    /// The file of a track and a reader holding the payload of `plan`.
    fn payload_source(
        &self,
        track: &Track,
        plan: &FragmentPlan,
    ) -> Result<(String, SharedSource), Stop> {
        let path = self.track_path(track)?;
        let (start, end) = plan.payload.iter().fold((u64::MAX, 0u64), |(lo, hi), r| {
            (lo.min(r.offset), hi.max(r.offset + r.len))
        });
        let source = if start < end {
            self.reader(&path, start, end - start)?
        } else {
            self.reader(&path, 0, 0)?
        };
        Ok((path, source))
    }

    /// `usp_iss_pass_through`: the stored `moof` + `mdat` that hold exactly `samples`, sent
    /// from the file as they are; `None` when the samples are not one such fragment (then the
    /// fragment is packaged as usual).
    fn stored_fragment_answer(
        &self,
        loaded: &Loaded,
        track: &Track,
        samples: std::ops::Range<u32>,
    ) -> Result<Option<Answer>, Stop> {
        let index = track.index();
        let Some(stored) = index.stored_fragment(samples.clone()) else {
            return Ok(None);
        };
        let (first, end, payload) =
            index
                .samples(samples.clone())
                .fold((u64::MAX, 0u64, 0u64), |(lo, hi, sum), s| {
                    (
                        lo.min(s.offset),
                        hi.max(s.offset + u64::from(s.size)),
                        sum + u64::from(s.size),
                    )
                });
        // The samples must fill one run right after the moof and its mdat header.
        if first <= stored.moof_offset || end - first != payload {
            return Ok(None);
        }
        let path = self.track_path(track)?;
        let span = end - stored.moof_offset;
        let source = self.reader(&path, stored.moof_offset, span)?;
        let head = source
            .bytes(stored.moof_offset, (first - stored.moof_offset) as usize)
            .map_err(Error::from_source)?;
        if !mss::is_one_track_fragment(&head, stored.moof_offset, payload) {
            return Ok(None);
        }
        drop(head);
        let start_time = index.dts(samples.start);
        let plan = FragmentPlan {
            header: Vec::new(),
            payload: vec![ByteRange {
                offset: stored.moof_offset,
                len: span,
            }],
            payload_len: span,
            start_time,
            duration: index.dts(samples.end) - start_time,
            timescale: index.timescale,
            sample_count: samples.end - samples.start,
            samples: samples.clone(),
        };
        let target = format!("{:?}", self.route.target);
        Ok(Some(Answer {
            etag: etag(&[b"stored", target.as_bytes(), &loaded.versions]),
            content_type: dash::mime_type(track.kind),
            modified: loaded.modified,
            body: Body::Fragment { plan, source, path },
            expiry: None,
        }))
    }

    /// A repackaged segment of the samples of each track, ready to be measured and written.
    fn repackaged_answer(
        &self,
        loaded: &Loaded,
        parts: &[(&Track, std::ops::Range<u32>)],
        format: TsFormat,
        encryption: Option<Box<SegmentCipher>>,
    ) -> Result<Answer, Stop> {
        let mut sources = Vec::with_capacity(parts.len());
        let mut tracks = Vec::with_capacity(parts.len());
        for (n, (t, range)) in parts.iter().enumerate() {
            sources.push(self.samples_reader(t, range.clone())?);
            tracks.push(TsTrack {
                entry: t.entry.clone(),
                kind: t.kind,
                timescale: t.index().timescale,
                presentation_delay: dash::presentation_delay(t),
                samples: t.index().samples(range.clone()).collect(),
                source: n,
            });
        }
        // A repackaged segment is a pure function of its samples and the request: its ETag
        // comes from the files' versions, not from hashing the whole segment.
        let request = format!("{:?}|{}", self.route.target, self.query);
        let key = encryption
            .as_ref()
            .map(|c| c.fingerprint())
            .unwrap_or_default();
        Ok(Answer {
            etag: etag(&[b"ts", request.as_bytes(), &key, &loaded.versions]),
            content_type: match format {
                TsFormat::Transport => "video/MP2T",
                TsFormat::PackedAudio => "audio/aac",
            },
            modified: loaded.modified,
            body: Body::Repackaged {
                tracks,
                sources,
                format,
                encryption,
            },
            expiry: None,
        })
    }

    /// The I-frame playlist, sizing each segment's key frame from its bytes.
    fn iframe_playlist(
        &self,
        p: &Presentation,
        variant: &crate::url::Variant,
        opts: &HlsOptions,
    ) -> Result<String, Stop> {
        let mut stopped: Option<Stop> = None;
        let mut key_frame_bytes = |t: &Track, sample: u32| {
            self.key_frame_bytes(t, sample).map_err(|stop| {
                stopped.get_or_insert(stop);
                PackageError::Media("reading the key frame".into())
            })
        };
        let text = hls::iframe_playlist(p, variant, opts, &mut key_frame_bytes);
        match (text, stopped) {
            (_, Some(stop)) => Err(stop),
            (text, None) => Ok(text?),
        }
    }

    /// Bytes of a TS segment through its key frame, when the segment starts at `sample`.
    fn key_frame_bytes(&self, t: &Track, sample: u32) -> Result<usize, Stop> {
        let (src, _) = self.samples_reader(t, sample..sample + 1)?;
        let s = t
            .index()
            .samples(sample..sample + 1)
            .next()
            .ok_or_else(|| PackageError::Media(format!("track {}: no sample {sample}", t.id())))?;
        let data = src
            .bytes(s.offset, s.size as usize)
            .map_err(Error::from_source)?;
        let len = ts::key_frame_bytes(&ts::TsInput {
            entry: &t.entry,
            kind: t.kind,
            timescale: t.index().timescale,
            presentation_delay: dash::presentation_delay(t),
            samples: vec![(s, &data[..])],
        })?;
        src.intact().map_err(Error::from_source)?;
        Ok(len)
    }

    /// An HDS fragment: each track's samples read, then written as FLV tags.
    fn hds_fragment(&self, plan: &hds::HdsFragment<'_>) -> Result<Vec<u8>, Stop> {
        let mut sources = Vec::with_capacity(plan.tracks.len());
        for part in &plan.tracks {
            sources.push(self.samples_reader(part.track, part.samples.clone())?.0);
        }
        let mut read = Vec::with_capacity(plan.tracks.len());
        for (part, src) in plan.tracks.iter().zip(&sources) {
            let samples = part
                .track
                .index()
                .samples(part.samples.clone())
                .map(|s| Ok((s, src.bytes(s.offset, s.size as usize)?)))
                .collect::<Result<Vec<_>, SourceError>>()
                .map_err(Error::from_source)?;
            read.push(samples);
        }
        let inputs: Vec<hds::HdsTrackSamples<'_>> = plan
            .tracks
            .iter()
            .zip(&read)
            .map(|(part, samples)| {
                part.with_bytes(samples.iter().map(|(s, b)| (*s, &b[..])).collect())
            })
            .collect();
        let bytes = plan.write(&inputs)?;
        for src in &sources {
            src.intact().map_err(Error::from_source)?;
        }
        Ok(bytes)
    }

    /// A WebVTT segment: the text track's samples read and converted.
    fn webvtt_segment(&self, plan: &hls::TextSegment<'_>) -> Result<String, Stop> {
        let (src, _) = self.samples_reader(plan.track, plan.samples.clone())?;
        let samples = plan
            .track
            .index()
            .samples(plan.samples.clone())
            .map(|s| Ok((s, src.bytes(s.offset, s.size as usize)?)))
            .collect::<Result<Vec<_>, SourceError>>()
            .map_err(Error::from_source)?;
        let refs: Vec<(Sample, &[u8])> = samples.iter().map(|(s, b)| (*s, &b[..])).collect();
        let text = hls::webvtt_segment(plan, &refs)?;
        src.intact().map_err(Error::from_source)?;
        Ok(text)
    }
}

/// The indexes a presentation's sources were loaded into, by file.
#[allow(non_camel_case_types)]
struct Loaded_<'a> {
    request: &'a Request,
    indexes: Vec<(String, Arc<MediaIndex>)>,
}

impl SourceLoader for Loaded_<'_> {
    fn load(&mut self, relative_path: &str) -> Result<Arc<MediaIndex>, PresentationError> {
        let path =
            self.request
                .path_of_src(relative_path)
                .map_err(|e| PresentationError::Source {
                    src: relative_path.to_string(),
                    what: e.to_string(),
                })?;
        self.indexes
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, index)| index.clone())
            .ok_or_else(|| PresentationError::Source {
                src: relative_path.to_string(),
                what: "not loaded".into(),
            })
    }
}

/// How long a live answer may be cached: a manifest until the next fragment may come (it
/// changes with every one), a fragment until the archive drops it (it never changes before).
fn live_expiry(live: &LiveInfo, answer: &Answer, fragment: Option<(u64, u64, u32)>) -> Expiry {
    const DAY: u64 = 86_400;
    let media_end = match &answer.body {
        _ if fragment.is_some() => {
            fragment.map(|(start, duration, timescale)| (start + duration, timescale))
        }
        Body::Repackaged { tracks, .. } => tracks.first().and_then(|t| {
            let last = t.samples.last()?;
            Some((last.dts + u64::from(last.duration), t.timescale))
        }),
        Body::Fragment { .. } | Body::Bytes(_) | Body::Text(_) => None,
    };
    match media_end {
        None if live.ended => Expiry {
            max_age_secs: 60,
            sunset: None,
        },
        None => Expiry {
            max_age_secs: 1,
            sunset: None,
        },
        Some((end, timescale)) => {
            let end_ms =
                live.anchor_ms + (u128::from(end) * 1000 / u128::from(timescale.max(1))) as i64;
            let sunset = live
                .retain_secs
                .map(|keep| (end_ms + keep as i64 * 1000).div_euclid(1000));
            let left = sunset.map_or(DAY, |s| (s - live.now_ms.div_euclid(1000)).max(1) as u64);
            Expiry {
                max_age_secs: left.min(DAY),
                sunset,
            }
        }
    }
}

/// Where a segment number falls against a live window's segments.
fn number_place(table: &crate::segment::SegmentTable, n: u64) -> LivePlace {
    if n < table.first_number() {
        LivePlace::Before
    } else if n >= table.first_number() + table.len() as u64 {
        LivePlace::NotYet
    } else {
        LivePlace::Gap
    }
}

/// Whether the target is a manifest or playlist (cached per worker).
fn is_manifest(target: &Target) -> bool {
    matches!(
        target,
        Target::Smooth(SmoothTarget::Manifest)
            | Target::Dash(DashTarget::Manifest)
            | Target::Hls(HlsTarget::Master)
            | Target::Hls(HlsTarget::Playlist { .. })
            | Target::Hds(HdsTarget::Manifest)
    )
}

/// The read of `len` missing bytes at `offset` (samples, a server manifest): just those.
fn exact_read(path: &str, offset: u64, len: u64, size: u64) -> Read {
    Read {
        path: path.to_string(),
        offset,
        len: len.min(size.saturating_sub(offset)),
    }
}

/// The read the index builder's miss of `len` bytes at `offset` becomes (the head of the file
/// was read first, [`READ_AHEAD`] bytes). A box header it probes brings [`HEADER_READ_AHEAD`]
/// bytes along: a fragment's `moof` and the header of its `mdat` in one request, never the
/// media after them. A box body (a `moov`) brings [`NEXT_BOX_SLACK`] more: the header of the
/// box that follows.
fn index_read(path: &str, offset: u64, len: u64, size: u64) -> Read {
    let want = if len <= HEADER_PROBE {
        len.max(HEADER_READ_AHEAD)
    } else {
        len.saturating_add(NEXT_BOX_SLACK)
    };
    exact_read(path, offset, want, size)
}

/// A strong ETag: XXH3-128 (the xxHash specification's, stable across builds and Rust
/// versions) over the parts, each length-prefixed so that parts cannot run into each other.
pub fn etag(parts: &[&[u8]]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("\"{:032x}\"", h.digest128())
}
