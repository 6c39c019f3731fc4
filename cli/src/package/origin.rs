//! The origin's request engine driven over local files, as the nginx driver drives it: each
//! file it asks for is opened, mapped and supplied whole with its identity. Files are opened
//! once (they do not change while a tree is written) and the engine's caches are kept across
//! requests, so a presentation is indexed once for all of its URLs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use origin_core::request::{Answer, Caches, Need, Opened, Request, Step};
use origin_core::source::{MmapSource, SharedSource, Source, SourceError};
use origin_core::url::Route;
use origin_core::Error;

/// One presentation served from its server manifest on disk.
pub struct LocalOrigin {
    /// The server manifest's file, as the engine names it (sources are joined to it).
    manifest_file: String,
    caches: Caches,
    opened: HashMap<String, Opened>,
}

impl LocalOrigin {
    pub fn new(manifest_file: &Path) -> LocalOrigin {
        LocalOrigin {
            manifest_file: manifest_file.display().to_string(),
            caches: Caches::default(),
            opened: HashMap::new(),
        }
    }

    /// The engine's answer to a routed request (`query` as the client sends it, without `?`).
    pub fn answer(&mut self, route: Route, query: &str) -> Result<Answer, Error> {
        let mut request = Request::new(route, self.manifest_file.clone(), query);
        loop {
            match request.step(&mut self.caches)? {
                Step::Done(answer) => return Ok(answer),
                Step::Need(Need::Open(paths)) => {
                    for path in paths {
                        let opened = self.open(&path);
                        request.supply_open(&path, opened);
                    }
                }
                // Every file was supplied whole: a read it does not cover means the file
                // changed while the tree was being written.
                Step::Need(Need::Read(reads)) => {
                    let name = reads.first().map(|r| r.path.clone()).unwrap_or_default();
                    return Err(SourceError::Changed { name }.into());
                }
                // Only a live channel's low-latency requests wait; the packager serves files.
                Step::Need(Need::Wait(_)) => {
                    return Err(Error::Internal("a file request asked to wait"));
                }
            }
        }
    }

    fn open(&mut self, path: &str) -> Result<Opened, Error> {
        if let Some(opened) = self.opened.get(path) {
            return Ok(opened.clone());
        }
        let opened = open_file(Path::new(path))?;
        self.opened.insert(path.to_string(), opened.clone());
        Ok(opened)
    }
}

fn open_file(path: &Path) -> Result<Opened, Error> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::from_io(&shown, e))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile { path: shown });
    }
    let source = MmapSource::open(path).map_err(Error::from_source)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    Ok(Opened {
        identity: source.identity().clone(),
        size: source.len(),
        modified,
        reader: Some(Arc::new(source) as SharedSource),
    })
}
