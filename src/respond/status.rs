//! Where an error ends a request: its log line and the status the core decides for it
//! (`origin_core::Error::{status, client_status, severity, token}`).

use ngx::ffi::{
    ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_NO_CONTENT, NGX_LOG_CRIT, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN,
};
use origin_core::error::Severity;

/// Everything a request can fail with: the core's one error type.
pub use origin_core::Error as OriginError;

/// Logs `err` on the request's log and returns its status for the content handler to return,
/// so nginx sends its error page (and `error_page` and header filters apply as for any status).
/// The status (under `origin_status_map`) and the log level are the core's decision.
/// An error found after the response header went out cannot become a status: the request is
/// aborted (NGX_ERROR closes the connection, so the client sees a short body, never a
/// complete response with wrong bytes).
pub fn fail(r: &mut ngx_http_request_t, err: &OriginError) -> ngx_int_t {
    let token = err.token();
    crate::settings::metrics::count_error(token);
    let level = match err.severity() {
        Severity::Crit => NGX_LOG_CRIT,
        // An error met mid-response cuts the client's body short: worth an error line.
        _ if r.header_sent() != 0 => NGX_LOG_ERR,
        Severity::Error => NGX_LOG_ERR,
        Severity::Warn => NGX_LOG_WARN,
        Severity::Info => NGX_LOG_INFO,
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
    let _ = crate::respond::headers::add_header(r, "X-Origin-Error", token);
    if err.status() == 405 {
        // nginx's error page for 405 needs an Allow header to be correct.
        let _ = crate::respond::headers::add_header(r, "Allow", "GET, HEAD");
    }
    let maps = crate::settings::conf::loc_conf(r).and_then(|c| c.settings.status_map.as_deref());
    let status = err.client_status(maps.unwrap_or_default());
    if status == 204 {
        return no_content(r);
    }
    status as ngx_int_t
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
