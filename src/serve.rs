//! Serving a presentation: load the server manifest and the indexes of its sources (cached per
//! worker, keyed by file identity), ask the packager, and send the answer: manifests from
//! memory, fragments as generated header bytes followed by file ranges (sendfile).

use std::cell::RefCell;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_file_t, ngx_http_output_filter,
    ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_pcalloc, ngx_pool_cleanup_add,
    ngx_pool_cleanup_file, ngx_pool_cleanup_file_t, NGX_ERROR, NGX_HTTP_OK, NGX_OK,
};
use origin_core::cache::{LruCache, Weighted};
use origin_core::fragment::FragmentPlan;
use origin_core::index::{build_index, MediaIndex, Sample, TrackKind};
use origin_core::ism::{join_relative, ServerManifest};
use origin_core::package::dash::{self, DashOptions};
use origin_core::package::hls::{self, HlsOptions};
use origin_core::package::{mss, ts, PackageError, DEFAULT_SEGMENT_SECONDS};
use origin_core::presentation::{
    Presentation, PresentationError, SegmentCache, SourceLoader, Track,
};
use origin_core::source::{MmapSource, PreadSource, Source, SourceIdentity};
use origin_core::url::{
    DashTarget, HlsPlaylist, HlsSegmentFormat, HlsTarget, ManifestKind, MpdSegmentTemplate, Route,
    SegmentIndex, SmoothTarget, Target,
};

use crate::response::{add_header, set_content_type};
use crate::status::OriginError;

/// Bytes of parsed data a worker keeps without `origin_cache_size`.
pub const DEFAULT_CACHE_BYTES: usize = 104 << 20;
/// How the cache budget is shared, in 104ths: indexes, generated manifests, segment tables,
/// server manifests.
const CACHE_SHARES: [usize; 4] = [64, 16, 16, 8];
/// Largest server manifest read.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

struct Manifest(ServerManifest);

impl Weighted for Manifest {
    fn weight(&self) -> usize {
        self.0.tracks.len() * 512 + self.0.metas.len() * 64 + 256
    }
}

/// A generated manifest, its content type and ETag.
struct Generated(String, &'static str, String);

impl Weighted for Generated {
    fn weight(&self) -> usize {
        self.0.len() + 256
    }
}

thread_local! {
    /// Generated manifests, keyed by request and file versions.
    /// Whether this worker has sized its caches from the configuration yet.
    static CACHES_SIZED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static GENERATED: RefCell<LruCache<String, Generated>> =
        RefCell::new(LruCache::new(share(DEFAULT_CACHE_BYTES, 1)));
    /// Open sources (at most this many files mapped or open per worker).
    static OPEN_SOURCES: RefCell<LruCache<(PathBuf, bool), OpenSource>> =
        RefCell::new(LruCache::new(64));
    static SEGMENTS: std::rc::Rc<SegmentCache> =
        std::rc::Rc::new(SegmentCache::new(share(DEFAULT_CACHE_BYTES, 2)));
    static INDEXES: RefCell<LruCache<SourceIdentity, MediaIndex>> =
        RefCell::new(LruCache::new(share(DEFAULT_CACHE_BYTES, 0)));
    static MANIFESTS: RefCell<LruCache<SourceIdentity, Manifest>> =
        RefCell::new(LruCache::new(share(DEFAULT_CACHE_BYTES, 3)));
}

thread_local! {
    /// Files already stat'ed for the request being handled: a request looks at its manifest
    /// and sources several times (version check, open mapping, send) and one `stat` each is
    /// enough. Cleared when the next request begins.
    static REQUEST_STATS: RefCell<Vec<(PathBuf, std::fs::Metadata)>> = const { RefCell::new(Vec::new()) };
}

/// Forgets the previous request's `stat` results.
pub fn begin_request() {
    REQUEST_STATS.with(|s| s.borrow_mut().clear());
}

/// `stat` of `path`, once per request.
fn stat(path: &Path) -> std::io::Result<std::fs::Metadata> {
    if let Some(meta) = REQUEST_STATS.with(|s| {
        s.borrow()
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
    }) {
        return Ok(meta);
    }
    let meta = std::fs::metadata(path)?;
    REQUEST_STATS.with(|s| s.borrow_mut().push((path.to_path_buf(), meta.clone())));
    Ok(meta)
}

/// Cache `which`'s part of a `total` budget.
const fn share(total: usize, which: usize) -> usize {
    total / 104 * CACHE_SHARES[which]
}

/// Sizes this worker's caches from `origin_cache_size`, once (the configuration a worker
/// runs under does not change during its life).
pub fn size_caches(total: usize) {
    if CACHES_SIZED.with(|s| s.replace(true)) {
        return;
    }
    INDEXES.with(|c| c.borrow_mut().set_budget(share(total, 0)));
    GENERATED.with(|c| c.borrow_mut().set_budget(share(total, 1)));
    SEGMENTS.with(|c| c.set_budget(share(total, 2)));
    MANIFESTS.with(|c| c.borrow_mut().set_budget(share(total, 3)));
}

/// An open source kept between requests (its mapping or descriptor), valid while the file's
/// identity is unchanged.
struct OpenSource(Arc<dyn Source + Send + Sync>);

impl Weighted for OpenSource {
    fn weight(&self) -> usize {
        1
    }
}

/// Opens (or reuses) a source: one `stat` per request decides whether the open mapping still
/// shows the file's current version, so a replaced file is never read through a stale one.
fn open_source(
    path: &Path,
    disable_mmap: bool,
) -> Result<Arc<dyn Source + Send + Sync>, OriginError> {
    let shown = path.display().to_string();
    let meta = stat(path).map_err(|e| OriginError::from_io(&shown, e))?;
    if !meta.is_file() {
        return Err(OriginError::NotFound { path: shown });
    }
    let identity = SourceIdentity::of_metadata(&meta);
    let key = (path.to_path_buf(), disable_mmap);
    if let Some(open) = OPEN_SOURCES.with(|c| c.borrow_mut().get(&key)) {
        if open.0.identity() == &identity {
            return Ok(open.0.clone());
        }
    }
    let result: Result<Arc<dyn Source + Send + Sync>, _> = if disable_mmap {
        PreadSource::open(path).map(|s| Arc::new(s) as Arc<dyn Source + Send + Sync>)
    } else {
        MmapSource::open(path).map(|s| Arc::new(s) as Arc<dyn Source + Send + Sync>)
    };
    let source = result.map_err(|e| match e {
        origin_core::source::SourceError::Io { source, .. } => OriginError::from_io(&shown, source),
        other => OriginError::Media(other.to_string()),
    })?;
    OPEN_SOURCES.with(|c| {
        c.borrow_mut()
            .insert(key, Arc::new(OpenSource(source.clone())))
    });
    Ok(source)
}

/// The index of a local file, from the worker's cache when the file is unchanged.
fn index_of(path: &Path, disable_mmap: bool) -> Result<Arc<MediaIndex>, OriginError> {
    let src = open_source(path, disable_mmap)?;
    INDEXES.with(|c| {
        c.borrow_mut().get_or_try_insert(src.identity(), || {
            build_index(&*src).map_err(|e| OriginError::Media(e.to_string()))
        })
    })
}

struct FileLoader<'a> {
    dir: &'a Path,
    disable_mmap: bool,
    error: Option<OriginError>,
}

impl SourceLoader for FileLoader<'_> {
    fn load(&mut self, relative_path: &str) -> Result<Arc<MediaIndex>, PresentationError> {
        let path = self.dir.join(relative_path);
        index_of(&path, self.disable_mmap).map_err(|e| {
            let what = e.to_string();
            self.error = Some(e);
            PresentationError::Source {
                src: relative_path.to_string(),
                what,
            }
        })
    }
}

/// Loads the presentation a route names. Returns it with the manifest's mtime.
fn load(route: &Route, file: &str, disable_mmap: bool) -> Result<(Presentation, i64), OriginError> {
    let path = PathBuf::from(file);
    let meta = stat(&path).map_err(|e| OriginError::from_io(file, e))?;
    if !meta.is_file() {
        return Err(OriginError::NotFound {
            path: file.to_string(),
        });
    }
    let mtime = meta.mtime();
    if route.kind == ManifestKind::Mp4 {
        let index = index_of(&path, disable_mmap)?;
        let p =
            Presentation::from_mp4(index).map_err(|e| OriginError::Presentation(e.to_string()))?;
        return Ok((p, mtime));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(OriginError::Media(format!(
            "{file}: server manifest larger than 4 MiB"
        )));
    }
    let identity = SourceIdentity::File {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    };
    let manifest = MANIFESTS.with(|c| {
        c.borrow_mut().get_or_try_insert(&identity, || {
            let bytes = std::fs::read(&path).map_err(|e| OriginError::from_io(file, e))?;
            ServerManifest::parse(&bytes)
                .map(Manifest)
                .map_err(|e| OriginError::Media(format!("{file}: {e}")))
        })
    })?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut loader = FileLoader {
        dir,
        disable_mmap,
        error: None,
    };
    match Presentation::from_manifest(manifest.0.clone(), &mut loader) {
        Ok(p) => Ok((p, mtime)),
        Err(e) => Err(loader
            .error
            .take()
            .unwrap_or_else(|| OriginError::Presentation(format!("{file}: {e}")))),
    }
}

/// Restricts the presentation to `vbegin`..`vend`: the reference (video) file is cut at its
/// sync samples and every other file at the same instants; clips are cached like indexes.
fn subclip(p: &mut Presentation, route: &Route) -> Result<(), OriginError> {
    use origin_core::url::TimePoint;
    let offset = |t: Option<TimePoint>, name: &str| match t {
        None => Ok(None),
        Some(TimePoint::Offset(us)) => Ok(Some(us)),
        Some(TimePoint::Utc(_)) => {
            Err(OriginError::Route(origin_core::url::RouteError::BadQuery {
                name: name.into(),
                value: String::new(),
                reason: "wall-clock times apply to live presentations",
            }))
        }
    };
    let begin = offset(route.options.vbegin, "vbegin")?.unwrap_or(0);
    let end = offset(route.options.vend, "vend")?;
    let span = p
        .reference()
        .media
        .clip_span(begin, end)
        .ok_or_else(|| OriginError::NotFound {
            path: format!("{} (vbegin is past the end)", route.manifest_path),
        })?;
    p.map_media(|m| {
        let key = SourceIdentity::Subclip {
            base: Box::new(m.identity.clone()),
            begin_us: span.0,
            end_us: span.1,
        };
        INDEXES.with(|c| {
            c.borrow_mut()
                .get_or_try_insert(&key, || m.subclip(span.0, span.1).ok_or(()))
                .ok()
        })
    });
    if p.tracks.is_empty() {
        return Err(OriginError::NotFound {
            path: format!("{} (empty subclip)", route.manifest_path),
        });
    }
    Ok(())
}

fn ngx_str(s: &ngx::ffi::ngx_str_t) -> &[u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: nginx strings point at `len` bytes that live as long as the request.
    unsafe { std::slice::from_raw_parts(s.data, s.len) }
}

/// The stem of the server manifest's file name: segment URL prefix.
fn presentation_name(route: &Route) -> String {
    let file = route.manifest_path.rsplit('/').next().unwrap_or("");
    file.rsplit_once('.')
        .map_or(file, |(stem, _)| stem)
        .to_string()
}

fn package_error(e: PackageError) -> OriginError {
    match e {
        PackageError::NoSuchTrack(s) | PackageError::NoSuchSegment(s) => {
            OriginError::NotFound { path: s }
        }
        PackageError::EmptyTrack(s) => OriginError::EmptyTrack(s),
        PackageError::Unsupported(s) => OriginError::Unsupported(s),
        PackageError::Fragment(f) => OriginError::Media(f.to_string()),
        PackageError::Media(s) => OriginError::Media(s),
    }
}

/// What a packager produced.
enum Answer<'p> {
    Text(String, &'static str),
    Bytes(Vec<u8>, &'static str),
    /// Generated bytes whose ETag is known from what they were made of.
    Owned(Vec<u8>, &'static str, String),
    Fragment(&'p Track, FragmentPlan),
}

/// Serves a routed request for a presentation stored as `file`.
pub fn serve(
    r: &mut ngx_http_request_t,
    route: &Route,
    file: &str,
    disable_mmap: bool,
) -> Result<ngx_int_t, OriginError> {
    size_caches(
        crate::conf::main_conf(r)
            .and_then(|c| c.cache_size)
            .unwrap_or(DEFAULT_CACHE_BYTES),
    );
    let (mut p, mtime) = load(route, file, disable_mmap)?;
    p.segment_cache = Some(SEGMENTS.with(|c| c.clone()));
    if let Some(t) = p.empty_track() {
        return Err(OriginError::EmptyTrack(t.id()));
    }
    if let Some(text) = &route.options.filter {
        let filter = origin_core::filter::Filter::parse(text).map_err(|e| {
            OriginError::Route(origin_core::url::RouteError::BadQuery {
                name: "filter".into(),
                value: text.clone(),
                reason: e.what,
            })
        })?;
        p.apply_filter(&filter);
        if p.tracks.is_empty() {
            return Err(OriginError::NotFound {
                path: format!("{} (no track passes the filter)", route.manifest_path),
            });
        }
    }
    if let Some(max) = route.options.max_bitrate {
        p.limit_bitrate(max);
    }
    if route.options.vbegin.is_some() || route.options.vend.is_some() {
        subclip(&mut p, route)?;
    }
    let opts = p
        .manifest
        .options()
        .map_err(|e| OriginError::Media(e.to_string()))?;
    let name = presentation_name(route);
    let target_secs = DEFAULT_SEGMENT_SECONDS;
    let template = route
        .options
        .mpd_segment_template
        .or_else(|| {
            opts.mpd_segment_template
                .as_deref()
                .and_then(MpdSegmentTemplate::parse)
        })
        .unwrap_or(MpdSegmentTemplate::Time);
    // Child URLs repeat the request's query, so subclips and addressing options reach them.
    let query = if r.args.len > 0 {
        format!("?{}", String::from_utf8_lossy(ngx_str(&r.args)))
    } else {
        String::new()
    };
    let dash_opts = DashOptions {
        template,
        target_secs,
        name: name.clone(),
        query: query.clone(),
    };
    let hls_fmp4 = route.options.hls_fmp4.or(opts.hls_fmp4).unwrap_or(false);
    let hls_version = route
        .options
        .hls_client_manifest_version
        .or(opts.hls_client_manifest_version)
        .unwrap_or(4);
    let hls_opts = |fmp4: bool| HlsOptions {
        target_secs,
        name: name.clone(),
        fmp4,
        version: hls_version,
        query: query.clone(),
    };

    // Manifests are pure functions of the request and the files' versions: a worker answers a
    // repeated one from its cache (a 2-hour title's playlists take a millisecond to write).
    let manifest_key = matches!(
        route.target,
        Target::Smooth(SmoothTarget::Manifest)
            | Target::Dash(DashTarget::Manifest)
            | Target::Hls(HlsTarget::Master)
            | Target::Hls(HlsTarget::Playlist { .. })
    )
    .then(|| {
        let identities: Vec<&SourceIdentity> = p.tracks.iter().map(|t| &t.media.identity).collect();
        format!(
            "{}|{mtime}|{:?}|{:?}|{identities:?}",
            route.manifest_path, route.target, route.options
        )
    });
    if let Some(key) = &manifest_key {
        if let Some(hit) = GENERATED.with(|c| c.borrow_mut().get(key)) {
            return send_bytes(r, hit.0.as_bytes(), hit.1, mtime, Some(&hit.2));
        }
    }

    // Legacy HLS segment URLs name a start time; every packager below counts segments.
    let by_number;
    let target = match &route.target {
        Target::Hls(HlsTarget::Segment {
            variant,
            index: SegmentIndex::Time(time),
            format,
        }) => {
            let n = hls::segment_number_at(&p, variant, *time, &hls_opts(hls_fmp4))
                .map_err(package_error)?;
            by_number = Target::Hls(HlsTarget::Segment {
                variant: variant.clone(),
                index: SegmentIndex::Number(n),
                format: *format,
            });
            &by_number
        }
        other => other,
    };
    let answer = match target {
        Target::Smooth(SmoothTarget::Manifest) => Answer::Text(
            mss::manifest(&p, target_secs, &query).map_err(package_error)?,
            "application/vnd.ms-sstr+xml",
        ),
        Target::Smooth(SmoothTarget::Fragment {
            bitrate,
            track,
            time,
        }) => {
            let (t, plan) =
                mss::fragment(&p, *bitrate, track, *time, target_secs).map_err(package_error)?;
            Answer::Fragment(t, plan)
        }
        Target::Dash(DashTarget::Manifest) => {
            Answer::Text(dash::mpd(&p, &dash_opts), "application/dash+xml")
        }
        Target::Dash(DashTarget::Init { track }) => {
            let t = dash::find_track(&p, track).map_err(package_error)?;
            Answer::Bytes(
                dash::init_segment(&p, track).map_err(package_error)?,
                dash::mime_type(t.kind),
            )
        }
        Target::Dash(DashTarget::Media { track, index }) => {
            let (t, plan) =
                dash::media_segment(&p, track, *index, &dash_opts).map_err(package_error)?;
            Answer::Fragment(t, plan)
        }
        Target::Hls(HlsTarget::Master) => Answer::Text(
            hls::master(&p, &hls_opts(hls_fmp4)).map_err(package_error)?,
            "application/vnd.apple.mpegurl",
        ),
        Target::Hls(HlsTarget::Playlist {
            variant,
            kind: HlsPlaylist::Media,
            fmp4,
        }) => {
            let text = if *fmp4 {
                hls::media_playlist(&p, variant, &hls_opts(true))
            } else {
                hls::ts_playlist(&p, variant, &hls_opts(false))
            };
            Answer::Text(
                text.map_err(package_error)?,
                "application/vnd.apple.mpegurl",
            )
        }
        Target::Hls(HlsTarget::Segment {
            variant,
            index: SegmentIndex::Number(n),
            format: format @ (HlsSegmentFormat::Ts | HlsSegmentFormat::Aac),
        }) => {
            let parts = hls::ts_segment_samples(&p, variant, *n, &hls_opts(false))
                .map_err(package_error)?;
            // The segment is a pure function of its samples and the request: its ETag
            // comes from the sources' versions, not from hashing the whole segment.
            let identities: Vec<&SourceIdentity> =
                parts.iter().map(|(t, _)| &t.media.identity).collect();
            let tag =
                etag(&[format!("ts|{mtime}|{identities:?}|{:?}|{query}", route.target).as_bytes()]);
            if *format == HlsSegmentFormat::Ts {
                let bytes = ts_segment(&parts, file, disable_mmap, ts::mux)?;
                Answer::Owned(bytes, "video/MP2T", tag)
            } else {
                if !matches!(parts.as_slice(), [(t, _)] if t.kind == TrackKind::Audio) {
                    return Err(OriginError::NotFound {
                        path: format!(
                            "{} (packed audio names one audio track)",
                            route.manifest_path
                        ),
                    });
                }
                let bytes = ts_segment(&parts, file, disable_mmap, |inputs| {
                    ts::packed_audio(&inputs[0])
                })?;
                Answer::Owned(bytes, "audio/aac", tag)
            }
        }
        Target::Hls(HlsTarget::Init { variant }) => {
            let t = hls::variant_tracks(&p, variant).map_err(package_error)?;
            let kind = t
                .first()
                .map(|t| t.kind)
                .unwrap_or(origin_core::index::TrackKind::Video);
            Answer::Bytes(
                hls::init_segment(&p, variant).map_err(package_error)?,
                dash::mime_type(kind),
            )
        }
        Target::Hls(HlsTarget::Segment {
            variant,
            index: SegmentIndex::Number(n),
            format: HlsSegmentFormat::Fmp4,
        }) => {
            let (t, plan) =
                hls::fmp4_segment(&p, variant, *n, &hls_opts(true)).map_err(package_error)?;
            Answer::Fragment(t, plan)
        }
        Target::Hls(HlsTarget::Playlist {
            variant,
            kind: HlsPlaylist::IFrames,
            ..
        }) => {
            let mut key_frame_bytes = |t: &Track, sample: u32| {
                key_frame_bytes(file, disable_mmap, t, sample)
                    .map_err(|e| PackageError::Unsupported(format!("reading the key frame: {e}")))
            };
            // The request's query (or the server manifest) says which segments the master
            // listed, as for every other child URL.
            Answer::Text(
                hls::iframe_playlist(&p, variant, &hls_opts(hls_fmp4), &mut key_frame_bytes)
                    .map_err(package_error)?,
                "application/vnd.apple.mpegurl",
            )
        }
        Target::Hls(HlsTarget::Segment {
            variant,
            index: SegmentIndex::Number(n),
            format: HlsSegmentFormat::WebVtt,
        }) => {
            let plan = hls::webvtt_segment_plan(&p, variant, *n, &hls_opts(hls_fmp4))
                .map_err(package_error)?;
            Answer::Text(webvtt_segment(&plan, file, disable_mmap)?, "text/vtt")
        }
        // HLS URLs name segments by number or (legacy) by time, both handled above.
        Target::Hls(_) => {
            return Err(OriginError::Route(
                origin_core::url::RouteError::UnknownVirtualPath(String::new()),
            ))
        }
        Target::Hds(_) => {
            return Err(OriginError::Unsupported(
                "HDS packaging is not built yet".into(),
            ))
        }
        Target::Presentation | Target::Live(_) => {
            return Err(OriginError::Route(
                origin_core::url::RouteError::UnknownVirtualPath(String::new()),
            ))
        }
    };

    match answer {
        Answer::Text(text, content_type) => {
            let tag = etag(&[text.as_bytes()]);
            let rc = send_bytes(r, text.as_bytes(), content_type, mtime, Some(&tag));
            if let Some(key) = manifest_key {
                GENERATED.with(|c| {
                    c.borrow_mut()
                        .insert(key, Arc::new(Generated(text, content_type, tag)))
                });
            }
            rc
        }
        Answer::Bytes(bytes, content_type) => send_bytes(r, &bytes, content_type, mtime, None),
        Answer::Owned(bytes, content_type, tag) => send_owned(r, bytes, content_type, mtime, &tag),
        Answer::Fragment(track, plan) => send_plan(
            r,
            &plan,
            &source_path(file, track),
            dash::mime_type(track.kind),
            mtime,
            disable_mmap,
        ),
    }
}

/// Where a track's bytes are.
fn source_path(manifest_file: &str, track: &Track) -> PathBuf {
    if track.source.is_empty() {
        PathBuf::from(manifest_file)
    } else {
        PathBuf::from(join_relative(manifest_file, &track.source))
    }
}

/// Bytes of a TS segment through its key frame, when the segment starts at `sample`.
fn key_frame_bytes(
    file: &str,
    disable_mmap: bool,
    t: &Track,
    sample: u32,
) -> Result<usize, OriginError> {
    let src = open_source(&source_path(file, t), disable_mmap)?;
    let s = t
        .index()
        .samples(sample..sample + 1)
        .next()
        .ok_or_else(|| OriginError::Media(format!("track {}: no sample {sample}", t.id())))?;
    let data = src
        .bytes(s.offset, s.size as usize)
        .map_err(|e| OriginError::Media(e.to_string()))?;
    ts::key_frame_bytes(&ts::TsInput {
        entry: &t.entry,
        kind: t.kind,
        timescale: t.index().timescale,
        presentation_delay: dash::presentation_delay(t),
        samples: vec![(s, &data[..])],
    })
    .map_err(|e| OriginError::Media(e.to_string()))
}

/// Muxes an MPEG-TS segment from the samples of each track (the payload is rewritten into
/// 188-byte packets, so it is read, not sent from the file).
fn ts_segment(
    parts: &[(&Track, std::ops::Range<u32>)],
    file: &str,
    disable_mmap: bool,
    write: impl FnOnce(&[ts::TsInput<'_>]) -> Result<Vec<u8>, ts::TsError>,
) -> Result<Vec<u8>, OriginError> {
    let mut sources = Vec::with_capacity(parts.len());
    for (t, _) in parts {
        sources.push(open_source(&source_path(file, t), disable_mmap)?);
    }
    let mut data = Vec::with_capacity(parts.len());
    for ((t, range), src) in parts.iter().zip(&sources) {
        let samples = t
            .index()
            .samples(range.clone())
            .map(|s| Ok((s, src.bytes(s.offset, s.size as usize)?)))
            .collect::<Result<Vec<_>, origin_core::source::SourceError>>()
            .map_err(|e| OriginError::Media(e.to_string()))?;
        data.push(samples);
    }
    let inputs: Vec<ts::TsInput<'_>> = parts
        .iter()
        .zip(&data)
        .map(|((t, _), d)| ts::TsInput {
            entry: &t.entry,
            kind: t.kind,
            timescale: t.index().timescale,
            presentation_delay: dash::presentation_delay(t),
            samples: d.iter().map(|(s, b)| (*s, &b[..])).collect(),
        })
        .collect();
    write(&inputs).map_err(|e| OriginError::Media(e.to_string()))
}

/// A WebVTT segment: the text track's samples read and converted.
fn webvtt_segment(
    plan: &hls::TextSegment<'_>,
    file: &str,
    disable_mmap: bool,
) -> Result<String, OriginError> {
    let src = open_source(&source_path(file, plan.track), disable_mmap)?;
    let samples = plan
        .track
        .index()
        .samples(plan.samples.clone())
        .map(|s| Ok((s, src.bytes(s.offset, s.size as usize)?)))
        .collect::<Result<Vec<_>, origin_core::source::SourceError>>()
        .map_err(|e| OriginError::Media(e.to_string()))?;
    let refs: Vec<(Sample, &[u8])> = samples.iter().map(|(s, b)| (*s, &b[..])).collect();
    hls::webvtt_segment(plan, &refs).map_err(package_error)
}

fn etag(parts: &[&[u8]]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    format!("\"{:016x}\"", h.finish())
}

/// Sets the headers every generated answer has; returns the send_header result and whether
/// to stop (HEAD, 304, error).
fn send_headers(
    r: &mut ngx_http_request_t,
    len: u64,
    content_type: &'static str,
    mtime: i64,
    tag: &str,
) -> Result<Option<ngx_int_t>, OriginError> {
    r.headers_out.status = NGX_HTTP_OK as _;
    r.headers_out.content_length_n = len as i64;
    r.headers_out.last_modified_time = mtime;
    set_content_type(r, content_type);
    add_header(r, "ETag", tag)?;
    r.set_allow_ranges(1);
    // SAFETY: r is the request being handled; headers are set.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return Ok(Some(rc));
    }
    Ok(None)
}

fn memory_buf(r: &mut ngx_http_request_t, bytes: &[u8]) -> Result<*mut ngx_buf_t, OriginError> {
    // SAFETY: the buffer comes from the request pool and lives as long as the request.
    unsafe {
        let b = ngx_create_temp_buf(r.pool, bytes.len().max(1));
        if b.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), (*b).last, bytes.len());
        (*b).last = (*b).last.add(bytes.len());
        Ok(b)
    }
}

fn chain_link(
    r: &mut ngx_http_request_t,
    buf: *mut ngx_buf_t,
) -> Result<*mut ngx_chain_t, OriginError> {
    // SAFETY: pool allocation, zeroed.
    let cl = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ngx_chain_t>()) } as *mut ngx_chain_t;
    if cl.is_null() {
        return Err(OriginError::Internal("out of memory"));
    }
    // SAFETY: cl was just allocated.
    unsafe { (*cl).buf = buf };
    Ok(cl)
}

/// A zeroed buffer header from the request pool.
fn pool_buf(r: &mut ngx_http_request_t) -> Result<*mut ngx_buf_t, OriginError> {
    // SAFETY: pool allocation, zeroed.
    let b = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ngx_buf_t>()) } as *mut ngx_buf_t;
    if b.is_null() {
        return Err(OriginError::Internal("out of memory"));
    }
    Ok(b)
}

/// Links `buf` after `last` and returns the new last link.
fn append_link(
    r: &mut ngx_http_request_t,
    last: *mut ngx_chain_t,
    buf: *mut ngx_buf_t,
) -> Result<*mut ngx_chain_t, OriginError> {
    let cl = chain_link(r, buf)?;
    // SAFETY: `last` is a link of this request's chain, allocated from its pool.
    unsafe { (*last).next = cl };
    Ok(cl)
}

fn finish_last(r: &ngx_http_request_t, b: *mut ngx_buf_t) {
    let is_main = ptr::eq(r as *const _, r.main as *const _);
    // SAFETY: b is a valid buffer of this request.
    unsafe {
        (*b).set_last_buf(u32::from(is_main));
        (*b).set_last_in_chain(1);
    }
}

/// Sends generated bytes (with their ETag when already known).
fn send_bytes(
    r: &mut ngx_http_request_t,
    bytes: &[u8],
    content_type: &'static str,
    mtime: i64,
    tag: Option<&str>,
) -> Result<ngx_int_t, OriginError> {
    let computed;
    let tag = match tag {
        Some(t) => t,
        None => {
            computed = etag(&[bytes]);
            &computed
        }
    };
    if let Some(rc) = send_headers(r, bytes.len() as u64, content_type, mtime, tag)? {
        return Ok(rc);
    }
    let b = memory_buf(r, bytes)?;
    finish_last(r, b);
    let cl = chain_link(r, b)?;
    // SAFETY: the chain and buffer live in the request pool.
    Ok(unsafe { ngx_http_output_filter(r, cl) })
}

/// Sends bytes the module generated by handing the vector itself to nginx, without copying
/// it into the pool: a pool cleanup frees it when the request is done.
fn send_owned(
    r: &mut ngx_http_request_t,
    bytes: Vec<u8>,
    content_type: &'static str,
    mtime: i64,
    tag: &str,
) -> Result<ngx_int_t, OriginError> {
    if bytes.is_empty() {
        // An empty in-memory buffer is not a valid nginx buffer; the pool path handles it.
        return send_bytes(r, &bytes, content_type, mtime, Some(tag));
    }
    if let Some(rc) = send_headers(r, bytes.len() as u64, content_type, mtime, tag)? {
        return Ok(rc);
    }
    // SAFETY: the cleanup and buffer come from the request pool; the vector is leaked into the
    // cleanup, which frees it when the pool is destroyed, after the last byte was sent. The
    // vector is never touched again, so the pointers into it stay valid until then.
    unsafe {
        let cln = ngx_pool_cleanup_add(r.pool, 0);
        if cln.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        let b = pool_buf(r)?;
        let owned = Box::into_raw(Box::new(bytes));
        (*cln).data = owned as *mut std::ffi::c_void;
        (*cln).handler = Some(free_owned_bytes);
        let start = (*owned).as_mut_ptr();
        (*b).start = start;
        (*b).pos = start;
        (*b).last = start.add((*owned).len());
        (*b).end = (*b).last;
        (*b).set_memory(1);
        finish_last(r, b);
        let cl = chain_link(r, b)?;
        Ok(ngx_http_output_filter(r, cl))
    }
}

/// Pool cleanup of [`send_owned`]: frees the vector. Freeing cannot panic in practice; the
/// fence is there because every entry from nginx has one.
unsafe extern "C" fn free_owned_bytes(data: *mut std::ffi::c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the Box<Vec<u8>> leaked by send_owned, freed exactly once here.
    let owned = unsafe { Box::from_raw(data as *mut Vec<u8>) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(owned)));
}

/// Above this many payload ranges a fragment is copied rather than sent range by range: an
/// interleaved progressive file puts every video sample in a chunk of its own, and one
/// sendfile per sample costs far more than copying the samples from the page cache.
const SENDFILE_MAX_RANGES: usize = 4;
/// Largest fragment payload copied into memory (bigger ones are sent from the file).
const COPY_MAX_BYTES: u64 = 32 << 20;

/// A fragment's ETag: its generated bytes and the source's version. Also checks that the
/// payload still lies within the file (a file replaced under a cached index is refused).
fn fragment_etag(
    plan: &FragmentPlan,
    source: &Path,
    size: u64,
    mtime: i64,
) -> Result<String, OriginError> {
    let shown = source.display().to_string();
    if plan.payload.iter().any(|p| p.offset + p.len > size) {
        return Err(OriginError::Media(format!(
            "{shown}: changed while being served"
        )));
    }
    Ok(etag(&[
        &plan.header,
        shown.as_bytes(),
        &size.to_le_bytes(),
        &mtime.to_le_bytes(),
    ]))
}

/// Sends a fragment as one memory buffer: header, then each payload range read from the
/// (cached, usually memory-mapped) source.
fn send_plan_copied(
    r: &mut ngx_http_request_t,
    plan: &FragmentPlan,
    source: &Path,
    content_type: &'static str,
    mtime: i64,
    disable_mmap: bool,
) -> Result<ngx_int_t, OriginError> {
    let src = open_source(source, disable_mmap)?;
    let tag = fragment_etag(plan, source, src.len(), mtime)?;
    let total = plan.total_len() as usize;
    if let Some(rc) = send_headers(r, total as u64, content_type, mtime, &tag)? {
        return Ok(rc);
    }
    // SAFETY: the buffer is allocated from the request pool with room for `total` bytes; it is
    // filled completely below before nginx sees it.
    unsafe {
        let b = ngx_create_temp_buf(r.pool, total.max(1));
        if b.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        let buf = std::slice::from_raw_parts_mut((*b).last, total);
        buf[..plan.header.len()].copy_from_slice(&plan.header);
        let mut at = plan.header.len();
        for range in &plan.payload {
            let len = range.len as usize;
            src.read_exact_at(range.offset, &mut buf[at..at + len])
                .map_err(|e| OriginError::Media(e.to_string()))?;
            at += len;
        }
        (*b).last = (*b).last.add(total);
        finish_last(r, b);
        let cl = chain_link(r, b)?;
        Ok(ngx_http_output_filter(r, cl))
    }
}

/// Sends a fragment whose payload is scattered over the file (an interleaved progressive
/// source): nginx writes the payload ranges straight from the worker's mapping of the file,
/// one iovec each, so the bytes are copied once, by the kernel, as from a buffer of our own.
/// The request holds a reference to the mapping until it is done.
fn send_plan_mapped(
    r: &mut ngx_http_request_t,
    plan: &FragmentPlan,
    source: &Path,
    content_type: &'static str,
    mtime: i64,
) -> Result<ngx_int_t, OriginError> {
    let src = open_source(source, false)?;
    let tag = fragment_etag(plan, source, src.len(), mtime)?;
    // Borrow every range first: a source that cannot lend its bytes is sent by copy.
    let mut ranges: Vec<(*const u8, usize)> = Vec::with_capacity(plan.payload.len());
    for range in &plan.payload {
        let bytes = src
            .bytes(range.offset, range.len as usize)
            .map_err(|e| OriginError::Media(e.to_string()))?;
        match bytes {
            std::borrow::Cow::Borrowed(b) => match ranges.last_mut() {
                // Ranges that touch in the file are one iovec.
                Some((p, len)) if p.wrapping_add(*len) == b.as_ptr() => *len += b.len(),
                _ => ranges.push((b.as_ptr(), b.len())),
            },
            std::borrow::Cow::Owned(_) => {
                return send_plan_copied(r, plan, source, content_type, mtime, true)
            }
        }
    }
    if let Some(rc) = send_headers(r, plan.total_len(), content_type, mtime, &tag)? {
        return Ok(rc);
    }
    // SAFETY: the buffers point into the mapping `src`, which the pool cleanup keeps alive
    // until the request is freed, after nginx sent the last byte; nginx only reads them
    // (memory, not temporary). Everything else is allocated from the request pool.
    unsafe {
        let cln = ngx_pool_cleanup_add(r.pool, 0);
        if cln.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        (*cln).data = Box::into_raw(Box::new(src)) as *mut std::ffi::c_void;
        (*cln).handler = Some(release_source);
        let head = memory_buf(r, &plan.header)?;
        let first = chain_link(r, head)?;
        let mut last_link = first;
        let mut last_buf = head;
        for (start, len) in ranges {
            if len == 0 {
                continue;
            }
            let b = pool_buf(r)?;
            let start = start as *mut u8;
            (*b).start = start;
            (*b).pos = start;
            (*b).last = start.add(len);
            (*b).end = (*b).last;
            (*b).set_memory(1);
            last_link = append_link(r, last_link, b)?;
            last_buf = b;
        }
        finish_last(r, last_buf);
        Ok(ngx_http_output_filter(r, first))
    }
}

/// Pool cleanup of [`send_plan_mapped`]: drops the request's reference to the mapping.
unsafe extern "C" fn release_source(data: *mut std::ffi::c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the Box<Arc<…>> leaked by send_plan_mapped, released exactly once.
    let src = unsafe { Box::from_raw(data as *mut Arc<dyn Source + Send + Sync>) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(src)));
}

/// Sends a fragment: the header bytes, then the payload ranges straight from the file.
fn send_plan(
    r: &mut ngx_http_request_t,
    plan: &FragmentPlan,
    source: &Path,
    content_type: &'static str,
    mtime: i64,
    disable_mmap: bool,
) -> Result<ngx_int_t, OriginError> {
    let shown = source.display().to_string();
    if plan.payload.len() > SENDFILE_MAX_RANGES {
        if !disable_mmap {
            return send_plan_mapped(r, plan, source, content_type, mtime);
        }
        if plan.payload_len <= COPY_MAX_BYTES {
            return send_plan_copied(r, plan, source, content_type, mtime, disable_mmap);
        }
    }
    let file = File::open(source).map_err(|e| OriginError::from_io(&shown, e))?;
    let size = file
        .metadata()
        .map_err(|e| OriginError::from_io(&shown, e))?
        .len();
    let tag = fragment_etag(plan, source, size, mtime)?;
    if let Some(rc) = send_headers(r, plan.total_len(), content_type, mtime, &tag)? {
        return Ok(rc);
    }
    let name = shown.as_bytes();
    // SAFETY: every allocation is from the request pool; the cleanup closes the descriptor
    // when the request is freed, after the last buffer was sent.
    unsafe {
        let cln = ngx_pool_cleanup_add(r.pool, std::mem::size_of::<ngx_pool_cleanup_file_t>());
        let f = ngx_pcalloc(r.pool, std::mem::size_of::<ngx_file_t>()) as *mut ngx_file_t;
        let name_buf = ngx::ffi::ngx_pnalloc(r.pool, name.len() + 1) as *mut u8;
        if cln.is_null() || f.is_null() || name_buf.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        ptr::copy_nonoverlapping(name.as_ptr(), name_buf, name.len());
        *name_buf.add(name.len()) = 0;
        let fd = file.into_raw_fd();
        (*cln).handler = Some(ngx_pool_cleanup_file);
        let clnf = (*cln).data as *mut ngx_pool_cleanup_file_t;
        (*clnf).fd = fd;
        (*clnf).name = name_buf;
        (*clnf).log = (*r.connection).log;
        (*f).fd = fd;
        (*f).name.len = name.len();
        (*f).name.data = name_buf;
        (*f).log = (*r.connection).log;

        let head = memory_buf(r, &plan.header)?;
        let first = chain_link(r, head)?;
        let mut last_link = first;
        let mut last_buf = head;
        for range in &plan.payload {
            let b = pool_buf(r)?;
            (*b).file = f;
            (*b).file_pos = range.offset as i64;
            (*b).file_last = (range.offset + range.len) as i64;
            (*b).set_in_file(1);
            last_link = append_link(r, last_link, b)?;
            last_buf = b;
        }
        finish_last(r, last_buf);
        Ok(ngx_http_output_filter(r, first))
    }
}
