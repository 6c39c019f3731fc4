//! Serving a presentation: load the server manifest and the indexes of its sources (cached per
//! worker, keyed by file identity), ask the packager, and send the answer: manifests from
//! memory, fragments as generated header bytes followed by file ranges (sendfile).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ngx::ffi::{ngx_http_request_t, ngx_int_t};
use origin_core::cache::{LruCache, Weighted};
use origin_core::fragment::FragmentPlan;
use origin_core::index::{build_index, MediaIndex, Sample};
use origin_core::ism::{join_relative, ServerManifest};
use origin_core::package::dash::{self, DashOptions};
use origin_core::package::hls::{self, HlsOptions};
use origin_core::package::{mss, ts, PackageError, DEFAULT_SEGMENT_SECONDS};
use origin_core::presentation::{
    Presentation, PresentationError, SegmentCache, SourceLoader, Track,
};
use origin_core::source::SourceIdentity;
use origin_core::url::{
    DashTarget, HlsPlaylist, HlsSegmentFormat, HlsTarget, ManifestKind, MpdSegmentTemplate, Route,
    SegmentIndex, SmoothTarget, Target,
};

use crate::files::Files;
use crate::send::{etag, fingerprint, send_bytes, send_fragment, Fragment};
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
    /// Whether this worker has sized its caches from the configuration yet.
    static CACHES_SIZED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Generated manifests, keyed by request and file versions.
    static GENERATED: RefCell<LruCache<String, Generated>> =
        RefCell::new(LruCache::new(share(DEFAULT_CACHE_BYTES, 1)));
    static SEGMENTS: std::rc::Rc<SegmentCache> =
        std::rc::Rc::new(SegmentCache::new(share(DEFAULT_CACHE_BYTES, 2)));
    static INDEXES: RefCell<LruCache<SourceIdentity, MediaIndex>> =
        RefCell::new(LruCache::new(share(DEFAULT_CACHE_BYTES, 0)));
    static MANIFESTS: RefCell<LruCache<SourceIdentity, Manifest>> =
        RefCell::new(LruCache::new(share(DEFAULT_CACHE_BYTES, 3)));
}

/// Forgets the previous request's files.
pub fn begin_request() {
    crate::files::begin_request();
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

/// The index of a local file, from the worker's cache when the file is unchanged. An index
/// built from a mapping that was found truncated meanwhile is thrown away.
fn index_of(files: &mut Files, path: &Path) -> Result<Arc<MediaIndex>, OriginError> {
    let src = files.source(path)?;
    INDEXES.with(|c| {
        c.borrow_mut().get_or_try_insert(src.identity(), || {
            let index = build_index(&*src).map_err(|e| OriginError::Media(e.to_string()))?;
            src.intact()?;
            Ok::<_, OriginError>(index)
        })
    })
}

struct FileLoader<'a, 'f> {
    manifest_file: &'a str,
    files: &'f mut Files,
    error: Option<OriginError>,
}

impl SourceLoader for FileLoader<'_, '_> {
    fn load(&mut self, relative_path: &str) -> Result<Arc<MediaIndex>, PresentationError> {
        let path = PathBuf::from(join_relative(self.manifest_file, relative_path));
        index_of(self.files, &path).map_err(|e| {
            let what = e.to_string();
            self.error = Some(e);
            PresentationError::Source {
                src: relative_path.to_string(),
                what,
            }
        })
    }
}

/// Loads the presentation a route names. Returns it with the server manifest's mtime and
/// identity.
fn load(
    route: &Route,
    file: &str,
    files: &mut Files,
) -> Result<(Presentation, i64, SourceIdentity), OriginError> {
    let path = PathBuf::from(file);
    let opened = files.open(&path)?;
    if route.kind == ManifestKind::Mp4 {
        let index = index_of(files, &path)?;
        let p =
            Presentation::from_mp4(index).map_err(|e| OriginError::Presentation(e.to_string()))?;
        return Ok((p, opened.mtime, opened.identity));
    }
    let manifest = MANIFESTS.with(|c| {
        c.borrow_mut().get_or_try_insert(&opened.identity, || {
            let bytes = files.read(&path, &opened, MAX_MANIFEST_BYTES)?;
            ServerManifest::parse(&bytes)
                .map(Manifest)
                .map_err(|e| OriginError::Media(format!("{file}: {e}")))
        })
    })?;
    let mut loader = FileLoader {
        manifest_file: file,
        files,
        error: None,
    };
    match Presentation::from_manifest(manifest.0.clone(), &mut loader) {
        Ok(p) => Ok((p, opened.mtime, opened.identity)),
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
    /// A repackaged segment, written in pieces as the client reads.
    Stream(crate::stream::TsBody, u64, &'static str),
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
    let mut files = Files::of(r, disable_mmap);
    let files = &mut files;
    let (mut p, mtime, manifest_identity) = load(route, file, files)?;
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
            return send_bytes(r, hit.0.as_bytes(), hit.1, mtime, &hit.2);
        }
    }
    // Every generated answer's ETag covers the versions of all the files it was made from.
    let versions = fingerprint(
        std::iter::once(&manifest_identity).chain(p.tracks.iter().map(|t| &t.media.identity)),
    );

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
            let (parts, format) = if *format == HlsSegmentFormat::Ts {
                let parts = hls::ts_segment_samples(&p, variant, *n, &hls_opts(false));
                (parts, ts::TsFormat::Transport)
            } else {
                let parts = hls::packed_audio_samples(&p, variant, *n, &hls_opts(false));
                (parts, ts::TsFormat::PackedAudio)
            };
            let parts = parts.map_err(package_error)?;
            let (body, total) = ts_body(&parts, file, files, format)?;
            let content_type = match format {
                ts::TsFormat::Transport => "video/MP2T",
                ts::TsFormat::PackedAudio => "audio/aac",
            };
            Answer::Stream(body, total, content_type)
        }
        Target::Hls(HlsTarget::Init { variant }) => {
            let t =
                hls::listed_track(&p, variant, hls::HlsResource::Fmp4).map_err(package_error)?;
            Answer::Bytes(
                hls::init_segment(&p, variant).map_err(package_error)?,
                dash::mime_type(t.kind),
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
                key_frame_bytes(file, files, t, sample)
                    .map_err(|e| PackageError::Media(format!("reading the key frame: {e}")))
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
            Answer::Text(webvtt_segment(&plan, file, files)?, "text/vtt")
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
            let tag = etag(&[text.as_bytes(), &versions]);
            let rc = send_bytes(r, text.as_bytes(), content_type, mtime, &tag);
            if let Some(key) = manifest_key {
                GENERATED.with(|c| {
                    c.borrow_mut()
                        .insert(key, Arc::new(Generated(text, content_type, tag)))
                });
            }
            rc
        }
        Answer::Bytes(bytes, content_type) => {
            let tag = etag(&[&bytes, &versions]);
            send_bytes(r, &bytes, content_type, mtime, &tag)
        }
        Answer::Stream(body, total, content_type) => {
            // A repackaged segment is a pure function of its samples and the request: its
            // ETag comes from the files' versions, not from hashing the whole segment.
            let request = format!("{:?}|{query}", route.target);
            let tag = etag(&[b"ts", request.as_bytes(), &versions]);
            crate::stream::send(r, body, total, content_type, mtime, &tag)
        }
        Answer::Fragment(track, plan) => {
            let path = source_path(file, track);
            let source = files.source(&path)?;
            let shown = path.display().to_string();
            let tag = etag(&[&plan.header, &versions]);
            send_fragment(
                r,
                Fragment {
                    plan: &plan,
                    source,
                    path: &shown,
                    content_type: dash::mime_type(track.kind),
                    mtime,
                    tag,
                },
            )
        }
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
    files: &mut Files,
    t: &Track,
    sample: u32,
) -> Result<usize, OriginError> {
    let src = files.source(&source_path(file, t))?;
    let s = t
        .index()
        .samples(sample..sample + 1)
        .next()
        .ok_or_else(|| OriginError::Media(format!("track {}: no sample {sample}", t.id())))?;
    let data = src.bytes(s.offset, s.size as usize)?;
    let len = ts::key_frame_bytes(&ts::TsInput {
        entry: &t.entry,
        kind: t.kind,
        timescale: t.index().timescale,
        presentation_delay: dash::presentation_delay(t),
        samples: vec![(s, &data[..])],
    })
    .map_err(|e| OriginError::Media(e.to_string()))?;
    src.intact()?;
    Ok(len)
}

/// A repackaged segment of the samples of each track, measured and ready to be written in
/// pieces (the payload is rewritten into 188-byte packets or ADTS frames, so it is read, not
/// sent from the file).
fn ts_body(
    parts: &[(&Track, std::ops::Range<u32>)],
    file: &str,
    files: &mut Files,
    format: ts::TsFormat,
) -> Result<(crate::stream::TsBody, u64), OriginError> {
    let mut sources = Vec::with_capacity(parts.len());
    let mut tracks = Vec::with_capacity(parts.len());
    for (n, (t, range)) in parts.iter().enumerate() {
        let path = source_path(file, t);
        sources.push((files.source(&path)?, path.display().to_string()));
        tracks.push(ts::TsTrack {
            entry: t.entry.clone(),
            kind: t.kind,
            timescale: t.index().timescale,
            presentation_delay: dash::presentation_delay(t),
            samples: t.index().samples(range.clone()).collect(),
            source: n,
        });
    }
    crate::stream::TsBody::new(tracks, sources, format)
}

/// A WebVTT segment: the text track's samples read and converted.
fn webvtt_segment(
    plan: &hls::TextSegment<'_>,
    file: &str,
    files: &mut Files,
) -> Result<String, OriginError> {
    let src = files.source(&source_path(file, plan.track))?;
    let samples = plan
        .track
        .index()
        .samples(plan.samples.clone())
        .map(|s| Ok((s, src.bytes(s.offset, s.size as usize)?)))
        .collect::<Result<Vec<_>, origin_core::source::SourceError>>()?;
    let refs: Vec<(Sample, &[u8])> = samples.iter().map(|(s, b)| (*s, &b[..])).collect();
    let text = hls::webvtt_segment(plan, &refs).map_err(package_error)?;
    src.intact()?;
    Ok(text)
}
