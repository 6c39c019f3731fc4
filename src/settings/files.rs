//! Opening the files a request reads (server manifests, media sources, progressive downloads)
//! as nginx's static module opens files: non-blocking (a FIFO never stalls the worker), regular
//! files only (anything else is 404 with nginx's `[crit] "…" is not a regular file`), and with
//! `disable_symlinks` and `open_file_cache` honoured through nginx's own open-file machinery.
//! Also the worker's cache of open sources, each valid while its file's identity is unchanged.
//!
//! Two ways, chosen per location: where neither `disable_symlinks` nor `open_file_cache` is set,
//! one `stat` per file per request decides whether the source already open (mapped) still shows
//! the file's current version, and files are opened only when it does not (the segment path of
//! docs/BENCHMARKS.md makes no open at all). Otherwise every file goes through
//! `ngx_open_cached_file` exactly as the static module's, and an `fstat` of the descriptor it
//! returns gives the identity.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ngx::ffi::{
    ngx_http_core_loc_conf_t, ngx_http_request_t, ngx_http_set_disable_symlinks, ngx_int_t,
    ngx_open_cached_file, ngx_open_file_info_t, ngx_uint_t, NGX_DISABLE_SYMLINKS_OFF, NGX_OK,
};
use origin_core::cache::{LruCache, Weighted};
use origin_core::source::{MmapSource, PreadSource, SharedSource, SourceError, SourceIdentity};

use crate::ffi::OriginError;

/// A file opened (or stat'ed) for the request being handled.
#[derive(Clone)]
pub struct Opened {
    pub identity: SourceIdentity,
    pub size: u64,
    pub mtime: i64,
    /// A descriptor valid until the request ends (closed by a pool cleanup or owned by nginx's
    /// open file cache), when this way of opening produced one.
    fd: Option<i32>,
}

/// An open source kept between requests (its mapping or descriptor).
struct OpenSource(SharedSource);

impl Weighted for OpenSource {
    fn weight(&self) -> usize {
        1
    }
}

thread_local! {
    /// Open sources, at most this many per worker (requests sending from one keep it alive
    /// after it leaves the cache).
    static OPEN_SOURCES: RefCell<LruCache<(PathBuf, bool), OpenSource>> =
        RefCell::new(LruCache::new(64));
    /// Files already opened or stat'ed for the request being handled: a request looks at its
    /// manifest and sources several times, and once each is enough. Cleared when the next
    /// request begins.
    static REQUEST_FILES: RefCell<Vec<(PathBuf, Opened)>> = const { RefCell::new(Vec::new()) };
}

/// Forgets the previous request's files.
pub fn begin_request() {
    REQUEST_FILES.with(|s| s.borrow_mut().clear());
}

/// How the request being handled opens files. Lives no longer than the request's handler
/// call (it keeps the request's address).
pub struct Files {
    r: *mut ngx_http_request_t,
    /// The location's core configuration when files go through nginx's open-file machinery.
    clcf: Option<&'static ngx_http_core_loc_conf_t>,
    disable_mmap: bool,
}

impl Files {
    /// The opener of `r`'s location.
    pub fn of(r: &mut ngx_http_request_t, disable_mmap: bool) -> Files {
        let clcf = crate::settings::conf::core_loc_conf(r);
        let through_nginx = clcf.is_some_and(|c| {
            !c.open_file_cache.is_null()
                || c.disable_symlinks != NGX_DISABLE_SYMLINKS_OFF as ngx_uint_t
        });
        Files {
            r,
            clcf: clcf.filter(|_| through_nginx),
            disable_mmap,
        }
    }

    /// Opens (or stats) `path` once per request: the file's identity, size and mtime.
    pub fn open(&mut self, path: &Path) -> Result<Opened, OriginError> {
        if let Some(found) = REQUEST_FILES.with(|s| {
            s.borrow()
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, o)| o.clone())
        }) {
            return Ok(found);
        }
        let opened = match self.clcf {
            Some(clcf) => self.open_through_nginx(clcf, path)?,
            None => {
                let meta = std::fs::metadata(path).map_err(|e| from_io(path, e))?;
                opened_from(path, &meta, None)?
            }
        };
        REQUEST_FILES.with(|s| s.borrow_mut().push((path.to_path_buf(), opened.clone())));
        Ok(opened)
    }

    /// A descriptor of `path` that stays open until the request ends (for sending the whole
    /// file), with what [`Files::open`] knows of it.
    pub fn open_for_request(&mut self, path: &Path) -> Result<(i32, Opened), OriginError> {
        let opened = self.open(path)?;
        if let Some(fd) = opened.fd {
            return Ok((fd, opened));
        }
        let file = open_nonblocking(path)?;
        let meta = file.metadata().map_err(|e| from_io(path, e))?;
        let opened = opened_from(path, &meta, None)?;
        let fd = crate::ffi::pool::close_with_request(self.r, file, path)?;
        Ok((fd, opened))
    }

    /// What the request engine asks of a file: its identity, size and modification time,
    /// with its bytes (the mapping or descriptor [`Files::source`] keeps).
    pub fn opened_source(
        &mut self,
        path: &str,
    ) -> Result<origin_core::request::Opened, OriginError> {
        let path = Path::new(path);
        let modified = self.open(path)?.mtime;
        let source = self.source(path)?;
        Ok(origin_core::request::Opened {
            identity: source.identity().clone(),
            size: source.len(),
            modified,
            reader: Some(source),
        })
    }

    /// The source at `path`, from the worker's cache when its mapping (or descriptor) still
    /// shows the file's current version and nothing read through it was ever found changed.
    pub fn source(&mut self, path: &Path) -> Result<SharedSource, OriginError> {
        let opened = self.open(path)?;
        let key = (path.to_path_buf(), self.disable_mmap);
        if let Some(open) = OPEN_SOURCES.with(|c| c.borrow_mut().get(&key)) {
            if open.0.identity() == &opened.identity && open.0.intact().is_ok() {
                return Ok(open.0.clone());
            }
        }
        let file = match opened.fd {
            // SAFETY: as in `read`; try_clone duplicates it into a descriptor the source owns.
            Some(fd) => ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
                .try_clone()
                .map_err(|e| from_io(path, e))?,
            None => open_nonblocking(path)?,
        };
        let name = path.display().to_string();
        let meta = file.metadata().map_err(|e| from_io(path, e))?;
        // What is opened is what gets indexed and sent, even if the file changed since the stat.
        opened_from(path, &meta, None)?;
        let source: SharedSource = if self.disable_mmap {
            Arc::new(PreadSource::from_file(file, name).map_err(source_error)?)
        } else {
            let spare = file.try_clone().map_err(|e| from_io(path, e))?;
            match MmapSource::from_file(file, name.clone()) {
                Ok(m) => Arc::new(m),
                // A file system that cannot map, or the mapping guard's table is full.
                Err(e) => {
                    tracing::warn!("{e}");
                    Arc::new(PreadSource::from_file(spare, name).map_err(source_error)?)
                }
            }
        };
        OPEN_SOURCES.with(|c| {
            c.borrow_mut()
                .insert(key, Arc::new(OpenSource(source.clone())))
        });
        Ok(source)
    }

    /// `ngx_open_cached_file`, set up as `ngx_http_static_handler` sets it up.
    fn open_through_nginx(
        &mut self,
        clcf: &ngx_http_core_loc_conf_t,
        path: &Path,
    ) -> Result<Opened, OriginError> {
        let shown = path.display().to_string();
        let mut name = crate::ffi::strings::pool_str(self.r, shown.as_bytes())?;
        // SAFETY: `of` is plain data nginx fills in; `name` is NUL-terminated in the request
        // pool; the request and its location configuration are valid for this call. Without an
        // open file cache nginx registers a pool cleanup that closes the descriptor.
        unsafe {
            let mut of: ngx_open_file_info_t = std::mem::zeroed();
            of.read_ahead = clcf.read_ahead;
            of.directio = clcf.directio;
            of.valid = clcf.open_file_cache_valid;
            of.min_uses = clcf.open_file_cache_min_uses;
            of.set_errors(u32::from(clcf.open_file_cache_errors != 0));
            of.set_events(u32::from(clcf.open_file_cache_events != 0));
            let clcf_mut = clcf as *const _ as *mut ngx_http_core_loc_conf_t;
            if ngx_http_set_disable_symlinks(self.r, clcf_mut, &mut name, &mut of)
                != NGX_OK as ngx_int_t
            {
                return Err(OriginError::Internal("disable_symlinks: no such value"));
            }
            if ngx_open_cached_file(clcf.open_file_cache, &mut name, &mut of, (*self.r).pool)
                != NGX_OK as ngx_int_t
            {
                if of.err == 0 {
                    return Err(OriginError::Internal("could not open a file"));
                }
                return Err(from_io(path, io::Error::from_raw_os_error(of.err)));
            }
            if of.is_file() == 0 {
                return Err(OriginError::NotRegularFile { path: shown });
            }
            let file = ManuallyDrop::new(File::from_raw_fd(of.fd));
            let meta = file.metadata().map_err(|e| from_io(path, e))?;
            opened_from(path, &meta, Some(of.fd))
        }
    }
}

/// The file rules live requests of `r`'s location reach `path` under: nginx's
/// `disable_symlinks` as it applies to that path (its `from=` part evaluated for this
/// request), for the core to enforce wherever live ingest, the Live API and playout open or
/// create files.
pub fn live_open_rules(
    r: &mut ngx_http_request_t,
    path: &str,
) -> Result<origin_core::live::confined::OpenRules, OriginError> {
    use ngx::ffi::{NGX_DISABLE_SYMLINKS_NOTOWNER, NGX_DISABLE_SYMLINKS_ON};
    use origin_core::live::confined::{OpenRules, Symlinks};
    let Some(clcf) = crate::settings::conf::core_loc_conf(r) else {
        return Ok(OpenRules::default());
    };
    if clcf.disable_symlinks == NGX_DISABLE_SYMLINKS_OFF as ngx_uint_t {
        return Ok(OpenRules::default());
    }
    let mut name = crate::ffi::strings::pool_str(r, path.as_bytes())?;
    // SAFETY: `of` is plain data nginx fills in; `name` is NUL-terminated in the request pool;
    // the request and its location configuration are valid for this call, which only
    // evaluates `disable_symlinks` (and its `from=` value) into `of`.
    let (mode, from) = unsafe {
        let mut of: ngx_open_file_info_t = std::mem::zeroed();
        let clcf_mut = clcf as *const _ as *mut ngx_http_core_loc_conf_t;
        if ngx_http_set_disable_symlinks(r, clcf_mut, &mut name, &mut of) != NGX_OK as ngx_int_t {
            return Err(OriginError::Internal("disable_symlinks: no such value"));
        }
        (of.disable_symlinks(), of.disable_symlinks_from)
    };
    let symlinks = if mode == NGX_DISABLE_SYMLINKS_ON {
        Symlinks::Refuse
    } else if mode == NGX_DISABLE_SYMLINKS_NOTOWNER {
        Symlinks::RefuseIfNotOwner
    } else {
        Symlinks::Follow
    };
    Ok(OpenRules {
        symlinks,
        checked_from: from,
    })
}

/// What a request needs to know of a file from its metadata; only regular files are served.
fn opened_from(
    path: &Path,
    meta: &std::fs::Metadata,
    fd: Option<i32>,
) -> Result<Opened, OriginError> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(OriginError::NotRegularFile {
            path: path.display().to_string(),
        });
    }
    Ok(Opened {
        identity: SourceIdentity::of_metadata(meta),
        size: meta.len(),
        mtime: meta.mtime(),
        fd,
    })
}

/// Opens for reading without blocking: opening a FIFO with no writer would stall the worker.
fn open_nonblocking(path: &Path) -> Result<File, OriginError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| from_io(path, e))?;
    Ok(file)
}

/// File errors as nginx's static module maps them: missing → 404, refused → 403.
/// For a source reached through `..`: the file, with every symbolic link resolved, must lie
/// inside the document root (also resolved), or it is refused (403). A file that is not there
/// is left for the open to report.
pub fn check_inside(root: &str, path: &str) -> Result<(), OriginError> {
    let real = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(from_io(Path::new(path), e)),
    };
    let real_root = std::fs::canonicalize(root).map_err(|e| from_io(Path::new(root), e))?;
    if real.starts_with(&real_root) && real != real_root {
        Ok(())
    } else {
        Err(OriginError::SourceRefused {
            manifest: path.to_string(),
            src: real.display().to_string(),
            reason: "a symbolic link leads it outside the location's root",
        })
    }
}

pub fn from_io(path: &Path, e: io::Error) -> OriginError {
    OriginError::from_io(&path.display().to_string(), e)
}

fn source_error(e: SourceError) -> OriginError {
    OriginError::from_source(e)
}

/// Maps the first `prefix_len` bytes of the request path (the server manifest) to a file name
/// under the location's `root` or `alias`, as nginx's static module would map that path.
pub fn map_to_path(r: &mut ngx_http_request_t, prefix_len: usize) -> Result<String, OriginError> {
    map_with_root(r, prefix_len).map(|(path, _)| path)
}

/// [`map_to_path`], and the document root (`root` or `alias`) the name starts with.
pub fn map_with_root(
    r: &mut ngx_http_request_t,
    prefix_len: usize,
) -> Result<(String, String), OriginError> {
    if prefix_len > r.uri.len {
        return Err(OriginError::Internal(
            "manifest path longer than the request path",
        ));
    }
    let full_len = r.uri.len;
    r.uri.len = prefix_len;
    let mut path = ngx::ffi::ngx_str_t {
        len: 0,
        data: std::ptr::null_mut(),
    };
    let mut root_len = 0usize;
    // SAFETY: r is valid; the temporary shortening of r->uri is undone before anything else can
    // observe it (nginx is single-threaded per worker and this call does not re-enter us).
    let last = unsafe { ngx::ffi::ngx_http_map_uri_to_path(r, &mut path, &mut root_len, 0) };
    r.uri.len = full_len;
    if last.is_null() {
        return Err(OriginError::Internal(
            "could not map the URI to a file name",
        ));
    }
    // SAFETY: on success `path.data .. last` holds the mapped name (NUL at `last`).
    let len = unsafe { last.offset_from(path.data) } as usize;
    let bytes = unsafe { std::slice::from_raw_parts(path.data, len) };
    let name = String::from_utf8(bytes.to_vec())
        .map_err(|_| OriginError::Internal("file name is not UTF-8"))?;
    let root = name
        .get(..root_len.min(name.len()))
        .unwrap_or_default()
        .to_string();
    Ok((name, root))
}
