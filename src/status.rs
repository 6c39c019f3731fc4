//! The one place errors become HTTP statuses and error-log lines.

use std::io;

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_ERROR, NGX_LOG_CRIT, NGX_LOG_ERR, NGX_LOG_INFO,
};
use origin_core::url::RouteError;

/// Everything a request can fail with, across layers.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The URL is not one the scheme knows, or is malformed.
    #[error("{0}")]
    Route(#[from] RouteError),
    /// The server manifest or media file does not exist.
    #[error("{path}: not found")]
    NotFound { path: String },
    /// The path names something other than a regular file (a FIFO, a device, a directory).
    #[error("\"{path}\" is not a regular file")]
    NotRegularFile { path: String },
    /// A source changed (was truncated) while the request read it: what was read is not used.
    #[error("{0}")]
    Source(#[from] origin_core::source::SourceError),
    /// The file exists but the worker may not read it.
    #[error("{path}: permission denied")]
    Forbidden { path: String },
    /// A method the target does not take.
    #[error("method not allowed for this URL")]
    MethodNotAllowed,
    /// A capability that this build does not have yet.
    #[error("{0} is not supported by this build yet")]
    NotImplemented(&'static str),
    /// A local file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// nginx could not allocate or set up the response.
    #[error("{0}")]
    Internal(&'static str),
    /// A source or server manifest that cannot be read as media (names file and offset).
    #[error("{0}")]
    Media(String),
    /// The presentation cannot be assembled from its server manifest.
    #[error("{0}")]
    Presentation(String),
    /// A track without samples (`FMP4_MISSING_TFRA`).
    #[error("FMP4_MISSING_TFRA: track {0} has no samples")]
    EmptyTrack(String),
    /// A request form this build cannot package.
    #[error("{0}")]
    Unsupported(String),
}

impl OriginError {
    /// A file error: not-found and permission errors keep their meaning for the client.
    /// Mapped as nginx's static module maps them: a missing file, a path through a
    /// non-directory or a name too long is 404; no permission, or a symbolic link that
    /// `disable_symlinks` forbids, is 403.
    pub fn from_io(path: &str, source: io::Error) -> OriginError {
        match source.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => OriginError::NotFound {
                path: path.to_string(),
            },
            Some(libc::EACCES | libc::ELOOP | libc::EMLINK) => OriginError::Forbidden {
                path: path.to_string(),
            },
            _ if source.kind() == io::ErrorKind::NotFound => OriginError::NotFound {
                path: path.to_string(),
            },
            _ if source.kind() == io::ErrorKind::PermissionDenied => OriginError::Forbidden {
                path: path.to_string(),
            },
            _ => OriginError::Io {
                path: path.to_string(),
                source,
            },
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            OriginError::Route(e) => e.http_status(),
            OriginError::NotFound { .. } | OriginError::NotRegularFile { .. } => 404,
            // The file was being rewritten: a retry a moment later gets the new version.
            OriginError::Source(origin_core::source::SourceError::Changed { .. }) => 503,
            OriginError::Source(_) => 500,
            OriginError::Forbidden { .. } => 403,
            OriginError::MethodNotAllowed => 405,
            OriginError::NotImplemented(_) | OriginError::Unsupported(_) => 501,
            OriginError::EmptyTrack(_) => 415,
            OriginError::Io { .. }
            | OriginError::Internal(_)
            | OriginError::Media(_)
            | OriginError::Presentation(_) => 500,
        }
    }
}

/// Logs `err` on the request's log and returns its status for the content handler to return,
/// so nginx sends its error page (and `error_page` and header filters apply as for any status).
/// Client mistakes are logged at `info`, server faults at `error`.
/// An error found after the response header went out cannot become a status: the request is
/// aborted (NGX_ERROR closes the connection, so the client sees a short body, never a
/// complete response with wrong bytes).
pub fn fail(r: &mut ngx_http_request_t, err: &OriginError) -> ngx_int_t {
    let status = err.http_status();
    let level = match err {
        OriginError::NotRegularFile { .. } => NGX_LOG_CRIT,
        _ if status >= 500 || r.header_sent() != 0 => NGX_LOG_ERR,
        _ => NGX_LOG_INFO,
    };
    let text = format!("ngx_origin: {err}");
    // SAFETY: the request and its connection log are valid while it is being handled.
    unsafe {
        let log = (*r.connection).log;
        if (*log).log_level >= level as ngx_uint_t {
            ngx::log::log_error(level as ngx_uint_t, log, 0, text.as_bytes());
        }
    }
    if r.header_sent() != 0 {
        return NGX_ERROR as ngx_int_t;
    }
    if let OriginError::EmptyTrack(_) = err {
        let _ = crate::response::add_header(r, "X-Origin-Error", "FMP4_MISSING_TFRA");
    }
    if status == 405 {
        // nginx's error page for 405 needs an Allow header to be correct.
        let _ = crate::response::add_header(r, "Allow", "GET, HEAD");
    }
    status as ngx_int_t
}
