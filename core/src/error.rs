//! The one error a request can end with, across every layer below the glue. Each layer keeps
//! its own typed error; they meet here through `From`. This file is the one place an error
//! becomes an HTTP status ([`Error::status`]), a token ([`Error::token`]), a log severity
//! ([`Error::severity`]) and, under `origin_status_map`, the status a client receives
//! ([`Error::client_status`]); the glue only logs and returns what these say.

use std::io;

use crate::config::StatusMapping;
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
    "INGEST_BAD_CUE",
    "INGEST_UNSUPPORTED",
    "INGEST_NO_INIT",
    "INGEST_CONFLICT",
    "INGEST_TOO_FAR_AHEAD",
    "INGEST_STORAGE",
    "INGEST_UNKNOWN_CHANNEL",
    "INGEST_BAD_STREAM_NAME",
    "INGEST_TOO_MANY_TRACKS",
    "INGEST_TOO_MANY_CHANNELS",
    "INGEST_TIMEOUT",
    "INGEST_TOO_LARGE",
    "INGEST_BUSY",
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
    "REQUEST_TOO_LARGE",
    "INTERNAL",
];

/// The error-log level an error is written at (nginx's `info`, `error`, `crit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    /// An encoder's fault the operator should see: media refused for its timestamps.
    Warn,
    Error,
    Crit,
}

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
    /// on where the segment falls: docs/COMPAT.md §5).
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
    /// The backend refused the origin access to an object (401 or 403): the origin's own
    /// credentials (a wrong S3 secret) or the backend's permissions are wrong, which an
    /// operator must see, although the client gets 403 as for a local file it may not read.
    #[error("{url}: permission denied by the backend (status {status})")]
    BackendDenied { url: String, status: u16 },
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
    /// A request body larger than the URL takes (a Live API PUT over its limit).
    #[error("a request body over {limit} bytes")]
    BodyTooLarge { limit: u64 },
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
            Error::Ingest(IngestError::BadCue(_)) => "INGEST_BAD_CUE",
            Error::Ingest(IngestError::Unsupported(_)) => "INGEST_UNSUPPORTED",
            Error::Ingest(IngestError::NoInit(_)) => "INGEST_NO_INIT",
            Error::Ingest(IngestError::Conflict(_)) => "INGEST_CONFLICT",
            Error::Ingest(IngestError::TooFarAhead(_)) => "INGEST_TOO_FAR_AHEAD",
            Error::Ingest(IngestError::Storage { .. }) => "INGEST_STORAGE",
            Error::Ingest(IngestError::UnknownChannel(_)) => "INGEST_UNKNOWN_CHANNEL",
            Error::Ingest(IngestError::BadStreamName(_)) => "INGEST_BAD_STREAM_NAME",
            Error::Ingest(IngestError::TooManyTracks(_)) => "INGEST_TOO_MANY_TRACKS",
            Error::Ingest(IngestError::TooManyChannels(_)) => "INGEST_TOO_MANY_CHANNELS",
            Error::Ingest(IngestError::File(e)) => e.status_and_token().1,
            Error::Ingest(IngestError::TooLarge { .. }) => "INGEST_TOO_LARGE",
            Error::Ingest(IngestError::Busy(_)) => "INGEST_BUSY",
            Error::Ingest(IngestError::TooSlow(_)) => "INGEST_TIMEOUT",
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
            Error::BackendDenied { .. } => "FORBIDDEN",
            Error::Unsupported(_) => "UNSUPPORTED",
            Error::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Error::BodyTooLarge { .. } => "REQUEST_TOO_LARGE",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status this error answers with, before `origin_status_map`.
    pub fn status(&self) -> u16 {
        use crate::drm::DrmError;
        use crate::live::ingest::IngestError;
        use crate::source::SourceError;
        match self {
            Error::Route(e) => match e {
                RouteError::TooLong(_) => 414,
                RouteError::MalformedPath(_)
                | RouteError::BadQuery { .. }
                | RouteError::BadSubclip { .. } => 400,
                RouteError::PathEscapes => 403,
                RouteError::NoServerManifest
                | RouteError::UnknownVirtualPath(_)
                | RouteError::MalformedVirtualPath { .. } => 404,
            },
            Error::NotFound { .. } | Error::NotRegularFile { .. } => 404,
            // The file was being rewritten: a retry a moment later gets the new version.
            Error::Source(SourceError::Changed { .. }) => 503,
            Error::Forbidden { .. } | Error::SourceRefused { .. } | Error::BackendDenied { .. } => {
                403
            }
            Error::Backend { timeout: true, .. } => 504,
            Error::Backend { .. } => 502,
            Error::MethodNotAllowed => 405,
            Error::BodyTooLarge { .. } => 413,
            Error::Drm { error, .. } => match error {
                DrmError::FormatDisabled { .. } => 403,
                DrmError::Unsupported(_) => 501,
                DrmError::BadOption { .. } | DrmError::Sample(_) => 500,
            },
            Error::Unsupported(_) | Error::Package(PackageError::Unsupported(_)) => 501,
            Error::EmptyTrack(_) => 415,
            // DASH-IF Live Media Ingest §6.1.
            Error::Ingest(e) => match e {
                IngestError::Malformed(_) | IngestError::Mp4(_) | IngestError::Truncated { .. } => {
                    400
                }
                IngestError::BadCue(_) => 400,
                IngestError::Unsupported(_) => 415,
                IngestError::NoInit(_) => 412,
                IngestError::Conflict(_) => 409,
                IngestError::TooFarAhead(_) => 422,
                IngestError::UnknownChannel(_) => 404,
                IngestError::BadStreamName(_) => 400,
                IngestError::TooManyTracks(_) | IngestError::TooManyChannels(_) => 403,
                IngestError::File(e) => e.status_and_token().0,
                IngestError::TooLarge { .. } => 413,
                IngestError::Busy(_) => 503,
                IngestError::TooSlow(_) => 408,
                IngestError::Storage { source, .. } => match source.raw_os_error() {
                    Some(libc::ENOSPC) | Some(libc::EDQUOT) => 507,
                    _ => 500,
                },
            },
            Error::LiveSegment { status, .. } => *status,
            Error::Source(_)
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::Manifest { .. }
            | Error::ManifestTooLarge { .. }
            | Error::Index(_)
            | Error::Presentation { .. }
            | Error::Package(_)
            | Error::Ts(_)
            | Error::S3Sign(_) => 500,
        }
    }

    /// The status a client receives: [`Error::status`], answered as another under the
    /// location's `origin_status_map` (the first mapping that matches the status and token).
    pub fn client_status(&self, maps: &[StatusMapping]) -> u16 {
        StatusMapping::remap(maps, self.status(), self.token())
    }

    /// How loudly the error is logged: client mistakes at `info`, server faults at `error`,
    /// and what an operator must look at (a server manifest that tries to make the origin
    /// fetch elsewhere, a backend refusing the origin's credentials) at `error` although the
    /// client's status is a 4xx; a path that names a device or FIFO at `crit`.
    pub fn severity(&self) -> Severity {
        match self {
            Error::NotRegularFile { .. } => Severity::Crit,
            Error::SourceRefused { .. } | Error::BackendDenied { .. } => Severity::Error,
            _ if self.status() >= 500 => Severity::Error,
            Error::Ingest(
                crate::live::ingest::IngestError::Conflict(_)
                | crate::live::ingest::IngestError::TooFarAhead(_),
            ) => Severity::Warn,
            _ => Severity::Info,
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
    use crate::drm::DrmError;
    use crate::live::ingest::IngestError;
    use crate::live::window::LivePlace;
    use crate::source::SourceError;

    /// The variant's name. The match has no wildcard, so a new variant does not compile until
    /// it is named here, and [`every_variant_has_its_token_status_and_severity`] then fails
    /// until it has a sample there.
    fn variant(e: &Error) -> &'static str {
        match e {
            Error::Route(_) => "Route",
            Error::NotFound { .. } => "NotFound",
            Error::NotRegularFile { .. } => "NotRegularFile",
            Error::Forbidden { .. } => "Forbidden",
            Error::Io { .. } => "Io",
            Error::Source(_) => "Source",
            Error::Manifest { .. } => "Manifest",
            Error::ManifestTooLarge { .. } => "ManifestTooLarge",
            Error::Index(_) => "Index",
            Error::Presentation { .. } => "Presentation",
            Error::Ingest(_) => "Ingest",
            Error::LiveSegment { .. } => "LiveSegment",
            Error::EmptyTrack(_) => "EmptyTrack",
            Error::Package(_) => "Package",
            Error::Ts(_) => "Ts",
            Error::SourceRefused { .. } => "SourceRefused",
            Error::Backend { .. } => "Backend",
            Error::BackendDenied { .. } => "BackendDenied",
            Error::S3Sign(_) => "S3Sign",
            Error::Drm { .. } => "Drm",
            Error::Unsupported(_) => "Unsupported",
            Error::MethodNotAllowed => "MethodNotAllowed",
            Error::BodyTooLarge { .. } => "BodyTooLarge",
            Error::Internal(_) => "Internal",
        }
    }

    const VARIANTS: usize = 24;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "x")
    }

    fn ingest(e: IngestError) -> Error {
        Error::Ingest(e)
    }

    fn drm(error: DrmError) -> Error {
        Error::Drm {
            path: "p".into(),
            error,
        }
    }

    fn backend(timeout: bool) -> Error {
        Error::Backend {
            url: "u".into(),
            what: "w".into(),
            timeout,
            retry: false,
        }
    }

    /// Every variant, and every inner kind that answers differently: (error, token, status).
    fn samples() -> Vec<(Error, &'static str, u16)> {
        let route = |e: RouteError| Error::Route(e);
        let bad_query = RouteError::BadQuery {
            name: "n".into(),
            value: "v".into(),
            reason: "r",
        };
        let subclip = RouteError::BadSubclip {
            vbegin: "2".into(),
            vend: "1".into(),
            order: None,
        };
        let malformed_virtual = RouteError::MalformedVirtualPath {
            path: "p".into(),
            reason: "r",
        };
        vec![
            (route(RouteError::TooLong(1)), "URL_TOO_LONG", 414),
            (route(RouteError::MalformedPath("x")), "MALFORMED_PATH", 400),
            (route(RouteError::PathEscapes), "PATH_ESCAPES_ROOT", 403),
            (
                route(RouteError::NoServerManifest),
                "UNKNOWN_VIRTUAL_PATH",
                404,
            ),
            (
                route(RouteError::UnknownVirtualPath("x".into())),
                "UNKNOWN_VIRTUAL_PATH",
                404,
            ),
            (route(malformed_virtual), "UNKNOWN_VIRTUAL_PATH", 404),
            (route(bad_query), "BAD_QUERY", 400),
            (route(subclip), "BAD_QUERY", 400),
            (Error::NotFound { path: "x".into() }, "NOT_FOUND", 404),
            (
                Error::NotRegularFile { path: "x".into() },
                "NOT_A_FILE",
                404,
            ),
            (Error::Forbidden { path: "x".into() }, "FORBIDDEN", 403),
            (
                Error::Io {
                    path: "x".into(),
                    source: io(std::io::ErrorKind::Other),
                },
                "IO_ERROR",
                500,
            ),
            (
                Error::Source(SourceError::Changed { name: "x".into() }),
                "SOURCE_CHANGED",
                503,
            ),
            (
                Error::Source(SourceError::Missing {
                    name: "x".into(),
                    offset: 0,
                    len: 1,
                }),
                "SOURCE_ERROR",
                500,
            ),
            (
                Error::Manifest {
                    path: "x".into(),
                    error: crate::ism::IsmError::NotUtf8 { position: 0 },
                },
                "BAD_SERVER_MANIFEST",
                500,
            ),
            (
                Error::ManifestTooLarge {
                    path: "x".into(),
                    limit: 1,
                },
                "BAD_SERVER_MANIFEST",
                500,
            ),
            (
                Error::Index(IndexError::NoMoov { name: "x".into() }),
                "BAD_MEDIA",
                500,
            ),
            (
                Error::Presentation {
                    path: "x".into(),
                    error: PresentationError::NoTracks,
                },
                "BAD_PRESENTATION",
                500,
            ),
            (
                ingest(IngestError::Malformed("x".into())),
                "INGEST_MALFORMED",
                400,
            ),
            (
                ingest(IngestError::Mp4(crate::mp4::Mp4Error::Truncated {
                    fourcc: crate::mp4::reader::FourCC::new(b"moov"),
                    offset: 0,
                    needed: 8,
                    available: 0,
                })),
                "INGEST_MALFORMED",
                400,
            ),
            (
                ingest(IngestError::Truncated { have: 1 }),
                "INGEST_TRUNCATED",
                400,
            ),
            (
                ingest(IngestError::Unsupported("x".into())),
                "INGEST_UNSUPPORTED",
                415,
            ),
            (
                ingest(IngestError::BadCue("x".into())),
                "INGEST_BAD_CUE",
                400,
            ),
            (
                ingest(IngestError::NoInit("x".into())),
                "INGEST_NO_INIT",
                412,
            ),
            (
                ingest(IngestError::Conflict("x".into())),
                "INGEST_CONFLICT",
                409,
            ),
            (
                ingest(IngestError::TooFarAhead("x".into())),
                "INGEST_TOO_FAR_AHEAD",
                422,
            ),
            (
                ingest(IngestError::Storage {
                    path: "x".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                }),
                "INGEST_STORAGE",
                507,
            ),
            (
                ingest(IngestError::Storage {
                    path: "x".into(),
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                }),
                "INGEST_STORAGE",
                500,
            ),
            (
                ingest(IngestError::TooLarge {
                    what: "fragment",
                    offset: 0,
                    size: 2,
                    limit: 1,
                }),
                "INGEST_TOO_LARGE",
                413,
            ),
            (ingest(IngestError::Busy("x".into())), "INGEST_BUSY", 503),
            (
                ingest(IngestError::TooSlow("x".into())),
                "INGEST_TIMEOUT",
                408,
            ),
            (
                ingest(IngestError::UnknownChannel("x".into())),
                "INGEST_UNKNOWN_CHANNEL",
                404,
            ),
            (
                ingest(IngestError::BadStreamName("x".into())),
                "INGEST_BAD_STREAM_NAME",
                400,
            ),
            (
                ingest(IngestError::TooManyTracks("x".into())),
                "INGEST_TOO_MANY_TRACKS",
                403,
            ),
            (
                ingest(IngestError::TooManyChannels("x".into())),
                "INGEST_TOO_MANY_CHANNELS",
                403,
            ),
            (
                ingest(IngestError::File(
                    crate::live::confined::FileError::WrongType {
                        path: "x".into(),
                        expected: "regular file",
                    },
                )),
                "NOT_A_FILE",
                404,
            ),
            (
                ingest(IngestError::File(
                    crate::live::confined::FileError::Symlink { path: "x".into() },
                )),
                "FORBIDDEN",
                403,
            ),
            (
                Error::LiveSegment {
                    status: 412,
                    what: "x".into(),
                    token: LivePlace::NotYet.token(),
                },
                "FRAGMENT_NOT_AVAILABLE",
                412,
            ),
            (
                Error::LiveSegment {
                    status: 404,
                    what: "x".into(),
                    token: LivePlace::Before.token(),
                },
                "FRAGMENT_NOT_FOUND",
                404,
            ),
            (
                Error::LiveSegment {
                    status: 404,
                    what: "x".into(),
                    token: LivePlace::Gap.token(),
                },
                "FRAGMENT_MISSING",
                404,
            ),
            (Error::EmptyTrack("1".into()), "FMP4_MISSING_TFRA", 415),
            (
                Error::Package(PackageError::Media("x".into())),
                "PACKAGING",
                500,
            ),
            (
                Error::Package(PackageError::Unsupported("x".into())),
                "PACKAGING",
                501,
            ),
            (
                Error::Ts(crate::package::ts::TsError::Codec("x".into())),
                "PACKAGING",
                500,
            ),
            (
                Error::SourceRefused {
                    manifest: "m".into(),
                    src: "s".into(),
                    reason: "r",
                },
                "SOURCE_REFUSED",
                403,
            ),
            (backend(true), "BACKEND_TIMEOUT", 504),
            (backend(false), "BACKEND_ERROR", 502),
            (
                Error::BackendDenied {
                    url: "u".into(),
                    status: 403,
                },
                "FORBIDDEN",
                403,
            ),
            (
                Error::S3Sign(crate::s3::SignError {
                    url: "u".into(),
                    what: "w".into(),
                }),
                "S3_SIGNING",
                500,
            ),
            (
                drm(DrmError::FormatDisabled {
                    format: "HDS",
                    why: "w",
                }),
                "FORMAT_DISABLED",
                403,
            ),
            (drm(DrmError::Unsupported("x".into())), "UNSUPPORTED", 501),
            (
                drm(DrmError::Sample(crate::crypto::CryptoError::NalOverrun {
                    size: 1,
                    at: 0,
                    nal: 2,
                })),
                "BAD_MEDIA",
                500,
            ),
            (
                drm(DrmError::BadOption {
                    option: "iss.key".into(),
                    reason: "r",
                }),
                "BAD_DRM_CONFIG",
                500,
            ),
            (Error::Unsupported("x".into()), "UNSUPPORTED", 501),
            (Error::MethodNotAllowed, "METHOD_NOT_ALLOWED", 405),
            (Error::BodyTooLarge { limit: 1 }, "REQUEST_TOO_LARGE", 413),
            (Error::Internal("x"), "INTERNAL", 500),
        ]
    }

    #[test]
    fn every_variant_has_its_token_status_and_severity() {
        let samples = samples();
        let mut seen = std::collections::BTreeSet::new();
        for (e, token, status) in &samples {
            seen.insert(variant(e));
            assert_eq!(e.token(), *token, "{e:?}");
            assert_eq!(e.status(), *status, "{e:?}");
            assert!(ERROR_TOKENS.contains(&e.token()), "{e:?}");
            let expected = match e {
                Error::NotRegularFile { .. } => Severity::Crit,
                Error::SourceRefused { .. } | Error::BackendDenied { .. } => Severity::Error,
                _ if *status >= 500 => Severity::Error,
                Error::Ingest(IngestError::Conflict(_) | IngestError::TooFarAhead(_)) => {
                    Severity::Warn
                }
                _ => Severity::Info,
            };
            assert_eq!(e.severity(), expected, "{e:?}");
        }
        assert_eq!(seen.len(), VARIANTS, "a variant without a sample: {seen:?}");
        // And every listed token is one some error gives: `nginx -t` offers no dead names.
        for token in ERROR_TOKENS {
            assert!(
                samples.iter().any(|(e, _, _)| e.token() == *token),
                "{token} is listed but no error gives it"
            );
        }
    }

    #[test]
    fn a_wrong_backend_secret_is_logged_as_an_error_but_answers_403() {
        let e = Error::BackendDenied {
            url: "http://s3/b/v.ism".into(),
            status: 403,
        };
        assert_eq!(e.status(), 403);
        assert_eq!(e.severity(), Severity::Error);
        assert!(e.to_string().contains("http://s3/b/v.ism"));
        // A local file the worker may not read stays a client-side 403 at info.
        let local = Error::Forbidden { path: "x".into() };
        assert_eq!(local.severity(), Severity::Info);
    }

    #[test]
    fn the_status_map_applies_to_the_status_and_token() {
        let maps = [
            StatusMapping::parse(&["412", "204", "FRAGMENT_NOT_AVAILABLE"]).unwrap(),
            StatusMapping::parse(&["502", "503"]).unwrap(),
        ];
        let not_yet = Error::LiveSegment {
            status: 412,
            what: "x".into(),
            token: LivePlace::NotYet.token(),
        };
        assert_eq!(not_yet.client_status(&maps), 204);
        let gap = Error::LiveSegment {
            status: 412,
            what: "x".into(),
            token: LivePlace::Gap.token(),
        };
        assert_eq!(gap.client_status(&maps), 412);
        assert_eq!(backend(false).client_status(&maps), 503);
        assert_eq!(backend(true).client_status(&maps), 504);
        assert_eq!(Error::MethodNotAllowed.client_status(&[]), 405);
    }
}
