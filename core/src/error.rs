//! The one error a request can end with, across every layer below the glue. Each layer keeps
//! its own typed error; they meet here through `From`, and the glue maps this enum to an HTTP
//! status and a log line in exactly one function (`src/status.rs`).

use std::io;

use crate::index::IndexError;
use crate::ism::IsmError;
use crate::package::ts::TsError;
use crate::package::PackageError;
use crate::presentation::PresentationError;
use crate::source::SourceError;
use crate::url::RouteError;

/// Every token [`Error::token`] gives.
pub const ERROR_TOKENS: &[&str] = &[
    "URL_TOO_LONG",
    "PATH_ESCAPES_ROOT",
    "BAD_QUERY",
    "MALFORMED_PATH",
    "UNKNOWN_VIRTUAL_PATH",
    "NOT_FOUND",
    "NOT_A_FILE",
    "FORBIDDEN",
    "IO_ERROR",
    "SOURCE_CHANGED",
    "SOURCE_ERROR",
    "BAD_SERVER_MANIFEST",
    "BAD_MEDIA",
    "BAD_PRESENTATION",
    "INGEST_MALFORMED",
    "INGEST_TRUNCATED",
    "INGEST_UNSUPPORTED",
    "INGEST_NO_INIT",
    "INGEST_CONFLICT",
    "INGEST_STORAGE",
    "INGEST_UNKNOWN_CHANNEL",
    "FRAGMENT_NOT_FOUND",
    "FRAGMENT_MISSING",
    "FRAGMENT_NOT_AVAILABLE",
    "FMP4_MISSING_TFRA",
    "PACKAGING",
    "SOURCE_REFUSED",
    "BACKEND_TIMEOUT",
    "BACKEND_ERROR",
    "S3_SIGNING",
    "FORMAT_DISABLED",
    "BAD_DRM_CONFIG",
    "UNSUPPORTED",
    "METHOD_NOT_ALLOWED",
    "INTERNAL",
];

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not one the scheme knows, or is malformed.
    #[error("{0}")]
    Route(#[from] RouteError),
    /// The server manifest, a source, a track or a segment does not exist.
    #[error("{path}: not found")]
    NotFound { path: String },
    /// The path names something other than a regular file (a FIFO, a device, a directory).
    #[error("\"{path}\" is not a regular file")]
    NotRegularFile { path: String },
    /// The file exists but the worker may not read it.
    #[error("{path}: permission denied")]
    Forbidden { path: String },
    /// A local file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Bytes of a source could not be read, or changed while the request read them.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// A server manifest that cannot be used (its errors say "server manifest:" themselves).
    #[error("{path}: {error}")]
    Manifest { path: String, error: IsmError },
    /// A server manifest larger than any real one.
    #[error("{path}: larger than {limit} bytes")]
    ManifestTooLarge { path: String, limit: u64 },
    /// A source that cannot be indexed as MP4 (the error names the file and offset).
    #[error("{0}")]
    Index(#[from] IndexError),
    /// The presentation cannot be assembled from its server manifest.
    #[error("{path}: {error}")]
    Presentation {
        path: String,
        error: PresentationError,
    },
    /// A live ingest request refused, or its archive write failed (the error knows its status).
    #[error("{0}")]
    Ingest(#[from] crate::live::ingest::IngestError),
    /// A live segment outside what the channel holds (the status depends on the format and
    /// on where the segment falls: COMPAT.md §5).
    #[error("{what}")]
    LiveSegment {
        status: u16,
        what: String,
        token: &'static str,
    },
    /// A track without samples (`FMP4_MISSING_TFRA`).
    #[error("FMP4_MISSING_TFRA: track {0} has no samples")]
    EmptyTrack(String),
    /// Samples that cannot be packaged as their format says.
    #[error("{0}")]
    Package(PackageError),
    /// Samples that cannot be muxed into MPEG-TS or packed audio.
    #[error("{0}")]
    Ts(#[from] TsError),
    /// A server manifest names a source URL that no configured backend serves: fetching it
    /// could reach anything the origin can (a metadata service, a local admin port).
    #[error("{manifest}: source \"{src}\" is refused: {reason}")]
    SourceRefused {
        manifest: String,
        src: String,
        reason: &'static str,
    },
    /// A backend (the `ism_proxy_pass` server, S3) failed to give what was asked: no answer, a
    /// server error, a wrong range, an object that changed between reads.
    #[error("{url}: {what}")]
    Backend {
        url: String,
        what: String,
        /// It did not answer in time (504 rather than 502).
        timeout: bool,
        /// Another try may succeed (no answer, 5xx); a wrong answer is not retried.
        retry: bool,
    },
    /// An S3 request could not be signed (a credential or URL the signer refuses).
    #[error("{0}")]
    S3Sign(#[from] crate::s3::SignError),
    /// Content protection that cannot be applied: bad key material, a format switched off.
    #[error("{path}: {error}")]
    Drm {
        path: String,
        error: crate::drm::DrmError,
    },
    /// A request form or source kind this build cannot serve.
    #[error("{0}")]
    Unsupported(String),
    /// A method the target does not take.
    #[error("method not allowed for this URL")]
    MethodNotAllowed,
    /// A capability that this build does not have yet.
    #[error("{0} is not supported by this build yet")]
    NotImplemented(&'static str),
    /// The server could not set up the response (allocation, configuration).
    #[error("{0}")]
    Internal(&'static str),
}

impl From<PackageError> for Error {
    fn from(e: PackageError) -> Error {
        match e {
            PackageError::NoSuchTrack(path) | PackageError::NoSuchSegment(path) => {
                Error::NotFound { path }
            }
            PackageError::EmptyTrack(track) => Error::EmptyTrack(track),
            PackageError::Unsupported(what) => Error::Unsupported(what),
            other => Error::Package(other),
        }
    }
}

impl Error {
    /// A short, stable name for the kind of error: sent as `X-Origin-Error`, counted by the
    /// status endpoint, and what `origin_status_map` can be scoped to.
    pub fn token(&self) -> &'static str {
        use crate::live::ingest::IngestError;
        use crate::source::SourceError;
        match self {
            Error::Route(RouteError::TooLong(_)) => "URL_TOO_LONG",
            Error::Route(RouteError::PathEscapes) => "PATH_ESCAPES_ROOT",
            Error::Route(RouteError::BadQuery { .. } | RouteError::BadSubclip { .. }) => {
                "BAD_QUERY"
            }
            Error::Route(RouteError::MalformedPath(_)) => "MALFORMED_PATH",
            Error::Route(_) => "UNKNOWN_VIRTUAL_PATH",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::NotRegularFile { .. } => "NOT_A_FILE",
            Error::Forbidden { .. } => "FORBIDDEN",
            Error::Io { .. } => "IO_ERROR",
            Error::Source(SourceError::Changed { .. }) => "SOURCE_CHANGED",
            Error::Source(_) => "SOURCE_ERROR",
            Error::Manifest { .. } | Error::ManifestTooLarge { .. } => "BAD_SERVER_MANIFEST",
            Error::Index(_) => "BAD_MEDIA",
            Error::Presentation { .. } => "BAD_PRESENTATION",
            Error::Ingest(IngestError::Malformed(_) | IngestError::Mp4(_)) => "INGEST_MALFORMED",
            Error::Ingest(IngestError::Truncated { .. }) => "INGEST_TRUNCATED",
            Error::Ingest(IngestError::Unsupported(_)) => "INGEST_UNSUPPORTED",
            Error::Ingest(IngestError::NoInit(_)) => "INGEST_NO_INIT",
            Error::Ingest(IngestError::Conflict(_)) => "INGEST_CONFLICT",
            Error::Ingest(IngestError::Storage { .. }) => "INGEST_STORAGE",
            Error::Ingest(IngestError::UnknownChannel(_)) => "INGEST_UNKNOWN_CHANNEL",
            Error::LiveSegment { token, .. } => token,
            Error::EmptyTrack(_) => "FMP4_MISSING_TFRA",
            Error::Package(_) => "PACKAGING",
            Error::Ts(_) => "PACKAGING",
            Error::SourceRefused { .. } => "SOURCE_REFUSED",
            Error::Backend { timeout: true, .. } => "BACKEND_TIMEOUT",
            Error::Backend { .. } => "BACKEND_ERROR",
            Error::S3Sign(_) => "S3_SIGNING",
            Error::Drm {
                error: crate::drm::DrmError::FormatDisabled { .. },
                ..
            } => "FORMAT_DISABLED",
            Error::Drm {
                error: crate::drm::DrmError::Unsupported(_),
                ..
            } => "UNSUPPORTED",
            // A sample whose NAL units overrun it is bad media, not bad configuration.
            Error::Drm {
                error: crate::drm::DrmError::Sample(_),
                ..
            } => "BAD_MEDIA",
            Error::Drm { .. } => "BAD_DRM_CONFIG",
            Error::Unsupported(_) | Error::NotImplemented(_) => "UNSUPPORTED",
            Error::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// A file error: not-found and permission errors keep their meaning for the client. Mapped
    /// as nginx's static module maps them: a missing file, a path through a non-directory or a
    /// name too long is "not found"; no permission, or a symbolic link that `disable_symlinks`
    /// forbids, is "forbidden".
    pub fn from_io(path: &str, source: io::Error) -> Error {
        let path = path.to_string();
        match source.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => Error::NotFound { path },
            Some(libc::EACCES | libc::ELOOP | libc::EMLINK) => Error::Forbidden { path },
            _ if source.kind() == io::ErrorKind::NotFound => Error::NotFound { path },
            _ if source.kind() == io::ErrorKind::PermissionDenied => Error::Forbidden { path },
            _ => Error::Io { path, source },
        }
    }

    /// A source read error: I/O errors keep their file meaning (see [`Error::from_io`]).
    pub fn from_source(e: SourceError) -> Error {
        match e {
            SourceError::Io { name, source } => Error::from_io(&name, source),
            other => Error::Source(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_is_listed() {
        let errors = [
            Error::Route(RouteError::TooLong(1)),
            Error::Route(RouteError::NoServerManifest),
            Error::NotFound { path: "x".into() },
            Error::EmptyTrack("1".into()),
            Error::MethodNotAllowed,
            Error::Internal("x"),
            Error::LiveSegment {
                status: 412,
                what: "x".into(),
                token: crate::live::window::LivePlace::NotYet.token(),
            },
            Error::Backend {
                url: "u".into(),
                what: "w".into(),
                timeout: true,
                retry: false,
            },
        ];
        for e in &errors {
            assert!(ERROR_TOKENS.contains(&e.token()), "{e:?}");
        }
        for place in [
            crate::live::window::LivePlace::Before,
            crate::live::window::LivePlace::Gap,
            crate::live::window::LivePlace::NotYet,
        ] {
            assert!(ERROR_TOKENS.contains(&place.token()));
        }
    }
}
