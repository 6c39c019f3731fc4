//! The one place errors become HTTP statuses and error-log lines.

use ngx::ffi::{
    ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_NO_CONTENT, NGX_LOG_CRIT, NGX_LOG_ERR, NGX_LOG_INFO,
};
use origin_core::config::StatusMapping;

/// Everything a request can fail with: the core's one error type.
pub use origin_core::Error as OriginError;

/// The HTTP status for `err`: the one place errors become statuses.
pub fn http_status(err: &OriginError) -> u16 {
    use origin_core::package::PackageError;
    use origin_core::source::SourceError;
    match err {
        OriginError::Route(e) => e.http_status(),
        OriginError::NotFound { .. } | OriginError::NotRegularFile { .. } => 404,
        // The file was being rewritten: a retry a moment later gets the new version.
        OriginError::Source(SourceError::Changed { .. }) => 503,
        OriginError::Forbidden { .. } | OriginError::SourceRefused { .. } => 403,
        OriginError::Backend { timeout: true, .. } => 504,
        OriginError::Backend { .. } => 502,
        OriginError::MethodNotAllowed => 405,
        OriginError::Drm { error, .. } => match error {
            origin_core::drm::DrmError::FormatDisabled { .. } => 403,
            origin_core::drm::DrmError::Unsupported(_) => 501,
            origin_core::drm::DrmError::BadOption { .. }
            | origin_core::drm::DrmError::Sample(_) => 500,
        },
        OriginError::NotImplemented(_)
        | OriginError::Unsupported(_)
        | OriginError::Package(PackageError::Unsupported(_)) => 501,
        OriginError::EmptyTrack(_) => 415,
        OriginError::Ingest(e) => e.http_status(),
        OriginError::LiveSegment { status, .. } => *status,
        OriginError::Source(_)
        | OriginError::Io { .. }
        | OriginError::Internal(_)
        | OriginError::Manifest { .. }
        | OriginError::ManifestTooLarge { .. }
        | OriginError::Index(_)
        | OriginError::Presentation { .. }
        | OriginError::Package(_)
        | OriginError::Ts(_)
        | OriginError::S3Sign(_) => 500,
    }
}

/// Logs `err` on the request's log and returns its status for the content handler to return,
/// so nginx sends its error page (and `error_page` and header filters apply as for any status).
/// Client mistakes are logged at `info`, server faults at `error`.
/// An error found after the response header went out cannot become a status: the request is
/// aborted (NGX_ERROR closes the connection, so the client sees a short body, never a
/// complete response with wrong bytes).
pub fn fail(r: &mut ngx_http_request_t, err: &OriginError) -> ngx_int_t {
    let status = http_status(err);
    crate::metrics::count_error(err.token());
    let level = match err {
        OriginError::NotRegularFile { .. } => NGX_LOG_CRIT,
        // A server manifest that tries to make the origin fetch elsewhere is worth a look.
        OriginError::SourceRefused { .. } => NGX_LOG_ERR,
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
    let token = err.token();
    let _ = crate::response::add_header(r, "X-Origin-Error", token);
    if status == 405 {
        // nginx's error page for 405 needs an Allow header to be correct.
        let _ = crate::response::add_header(r, "Allow", "GET, HEAD");
    }
    let mapped = crate::conf::loc_conf(r)
        .and_then(|c| c.status_map.as_deref())
        .map_or(status, |maps| StatusMapping::remap(maps, status, token));
    if mapped == 204 {
        return no_content(r);
    }
    mapped as ngx_int_t
}

/// A 204 answer (`origin_status_map … 204`): the header alone, as nginx's static module
/// answers HEAD, since nginx's error pages do not cover 2xx statuses.
fn no_content(r: &mut ngx_http_request_t) -> ngx_int_t {
    r.headers_out.status = NGX_HTTP_NO_CONTENT as ngx_uint_t;
    r.headers_out.content_length_n = -1;
    r.set_header_only(1);
    // SAFETY: r is the request being handled; its header has not been sent.
    unsafe { ngx_http_send_header(r) }
}
