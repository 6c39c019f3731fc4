//! The presentation a request plays: the files it is made of (joined to the server
//! manifest's path, every one opened), their indexes, the tracks the query selects and the
//! options merged over them.

use std::sync::Arc;

use super::{Caches, Need, Options, Request, Stop};
use crate::drm::{Drm, DrmError};
use crate::error::Error;
use crate::index::MediaIndex;
use crate::ism::{climbs, is_within, join_relative, resolve_src, ServerManifest, SourceRef};
use crate::presentation::{Presentation, PresentationError, SourceLoader, Track};
use crate::source::SourceIdentity;
use crate::url::{ManifestKind, RouteError, TimePoint};

/// A presentation as the request will use it: tracks selected, options merged.
pub(super) struct Loaded {
    pub(super) p: Presentation,
    pub(super) options: Options,
    pub(super) modified: i64,
    /// The identities of the server manifest and every source, as ETag input.
    pub(super) versions: Vec<u8>,
}

/// The files a presentation is made of, all opened.
pub(super) struct Files {
    /// The parsed server manifest (`None`: the presentation is a bare MP4).
    manifest: Option<Arc<ServerManifest>>,
    /// Every source file, joined to the manifest's path.
    paths: Vec<String>,
    /// The identities of the manifest and every source, as ETag and cache-key input.
    pub(super) versions: Vec<u8>,
    /// The server manifest's modification time.
    pub(super) modified: i64,
}

/// A track `src` resolved to a file.
struct Resolved {
    path: String,
    /// Reached through `..` under a root: the driver confirms it stays inside.
    confined: bool,
}

impl Request {
    /// The server manifest (parsed) and every file it names, opened; their versions.
    pub(super) fn files(&mut self, caches: &mut Caches) -> Result<Files, Stop> {
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
            .filter(|p| !self.was_supplied(p))
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

    /// The presentation the route names, its tracks selected, its options merged.
    pub(super) fn load(&mut self, files: Files, caches: &mut Caches) -> Result<Loaded, Stop> {
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
            let mut loaded = Indexed {
                request: self,
                indexes,
            };
            Presentation::from_manifest((*manifest).clone(), &mut loaded)
                .map_err(|e| self.presentation_error(e))?
        } else {
            let path = self.manifest_path.clone();
            let index = self.index_of(&path, caches)?;
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
    /// rule: fragments are later sent from exactly these). Files reached through `..` are
    /// noted for [`Request::confined_to_root`].
    fn source_paths(&mut self, manifest: &ServerManifest) -> Result<Vec<String>, Stop> {
        let mut paths: Vec<String> = Vec::with_capacity(manifest.tracks.len());
        for entry in &manifest.tracks {
            let Resolved { path, confined } = self.resolve(&entry.src)?;
            if confined && !self.climbing.contains(&path) {
                self.climbing.push(path.clone());
            }
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        Ok(paths)
    }

    /// The file a track `src` names: a relative path joined to the server manifest's, or an
    /// absolute URL under one of the backends (any other URL is refused).
    pub(super) fn path_of_src(&self, src: &str) -> Result<String, Error> {
        self.resolve(src).map(|r| r.path)
    }

    fn resolve(&self, src: &str) -> Result<Resolved, Error> {
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
                let mut confined = false;
                if climbs(&rel) {
                    if let Some(root) = &self.root {
                        if !is_within(&path, root) {
                            return Err(refused("it leads outside the location's root"));
                        }
                        confined = true;
                    }
                }
                Ok(Resolved { path, confined })
            }
            SourceRef::Http(url) | SourceRef::S3(url) => {
                let path = self
                    .backends
                    .path_of(&url)
                    .map_err(|reason| Error::SourceRefused {
                        manifest: self.manifest_path.clone(),
                        src: crate::url::excerpt(&url),
                        reason,
                    })?;
                Ok(Resolved {
                    path,
                    confined: false,
                })
            }
        }
    }

    /// The file of a track's source (the manifest itself for a bare MP4).
    pub(super) fn track_path(&self, track: &Track) -> Result<String, Error> {
        if track.source.is_empty() {
            Ok(self.manifest_path.clone())
        } else {
            self.path_of_src(&track.source)
        }
    }

    fn presentation_error(&self, error: PresentationError) -> Error {
        Error::Presentation {
            path: self.manifest_path.clone(),
            error,
        }
    }

    pub(super) fn drm_error(&self, error: DrmError) -> Error {
        Error::Drm {
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
}

/// The indexes a presentation's sources were loaded into, by file.
struct Indexed<'a> {
    request: &'a Request,
    indexes: Vec<(String, Arc<MediaIndex>)>,
}

impl SourceLoader for Indexed<'_> {
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
