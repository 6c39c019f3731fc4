//! The content handler of `origin_status`: the counters of every worker as JSON, or as
//! Prometheus text with `?format=prometheus`.

use ngx::ffi::{
    ngx_http_discard_request_body, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, NGX_ERROR, NGX_HTTP_BAD_REQUEST, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK, NGX_OK,
};
use origin_core::metrics::Exposition;

use crate::ffi::pool::{chain_link, memory_buf};
use crate::ffi::OriginError;
use crate::respond::headers::{add_header, set_content_type};

/// The `extern "C"` shim over [`respond`].
pub unsafe extern "C" fn status_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx hands the content handler a valid request it owns for this call.
        let r = unsafe { &mut *r };
        respond(r).unwrap_or_else(|e| {
            let text = format!("ngx_origin: status endpoint: {e}");
            // SAFETY: the connection's log is valid while the request is handled.
            unsafe {
                ngx::log::log_error(
                    ngx::ffi::NGX_LOG_ERR as ngx::ffi::ngx_uint_t,
                    (*r.connection).log,
                    0,
                    text.as_bytes(),
                )
            };
            if r.header_sent() != 0 {
                NGX_ERROR as ngx_int_t
            } else {
                NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
            }
        })
    })
}

fn respond(r: &mut ngx_http_request_t) -> Result<ngx_int_t, OriginError> {
    if r.method as u32 & (NGX_HTTP_GET | NGX_HTTP_HEAD) == 0 {
        add_header(r, "Allow", "GET, HEAD")?;
        return Ok(NGX_HTTP_NOT_ALLOWED as ngx_int_t);
    }
    // SAFETY: r is the request being handled; a GET's body is never read.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return Ok(rc);
    }
    let query = crate::ffi::strings::bytes(&r.args);
    let Some(exposition) = Exposition::from_query(query) else {
        return Ok(NGX_HTTP_BAD_REQUEST as ngx_int_t);
    };
    // This worker's own counters are published first: its index store's writer thread may
    // have written since its last packaging request.
    crate::settings::caches::with(|_| ());
    let snapshot = crate::settings::metrics::snapshot()
        .ok_or(OriginError::Internal("the status zone is not mapped"))?;
    let body = exposition.render(&snapshot);

    r.headers_out.status = NGX_HTTP_OK as _;
    r.headers_out.content_length_n = body.len() as i64;
    set_content_type(r, exposition.content_type());
    // Every answer is the state of one moment: no cache may keep it.
    add_header(r, "Cache-Control", "no-store")?;
    // SAFETY: r is the request being handled; its headers are set.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return Ok(rc);
    }
    let b = memory_buf(r, body.as_bytes())?;
    // SAFETY: b was just allocated from the request pool.
    unsafe {
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
    }
    let out = chain_link(r, b)?;
    // SAFETY: out is a chain of the request's pool.
    Ok(unsafe { ngx_http_output_filter(r, out) })
}
