//! An answer sent while it grows: an LL-DASH segment being produced goes out at once with
//! chunked transfer (no length is known), its chunks so far first, then each chunk as it
//! lands. Between pieces the request is held in the worker's event loop (see
//! [`crate::ffi::watch`]), woken by the next chunk's record from any worker; each wake runs
//! the request again, and the core answers with the bytes after those already sent. The
//! response ends when the segment is complete, or when no chunk came by the core's deadline
//! (the encoder stopped): a complete, shorter segment rather than a hang.

use ngx::ffi::{
    ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t, NGX_DONE,
    NGX_ERROR, NGX_HTTP_OK, NGX_OK,
};
use origin_core::request::{Answer, Body};

use super::answer::expiry_headers;
use super::headers::set_content_type;
use super::send::owned_buf;
use super::stream::{arm_write_event, end_if_timed_out};
use crate::ffi::pool::{chain_link, finish_last};
use crate::ffi::watch::{self, Resume};
use crate::ffi::OriginError;

/// Sends the next piece of a growing answer (the first with the response header), then holds
/// the request for the one after, or ends the response.
pub fn send(
    r: &mut ngx_http_request_t,
    answer: Answer,
    resume: Resume,
    max_held: usize,
) -> Result<ngx_int_t, OriginError> {
    let Answer {
        body: Body::Growing { bytes, next },
        content_type,
        expiry,
        ..
    } = answer
    else {
        return Err(OriginError::Internal("not a growing answer"));
    };
    if watch::streamed(r).is_none() {
        // Refused before anything is sent, while a status can still say so.
        if next.is_some() && !watch::has_room(r, max_held) {
            return Err(OriginError::LiveSegment {
                status: 503,
                what: format!(
                    "this worker already holds {max_held} requests (origin_live_max_held)"
                ),
                token: "LL_TOO_MANY_HELD",
            });
        }
        expiry_headers(r, expiry)?;
        r.headers_out.status = NGX_HTTP_OK as _;
        // No length: HTTP/1.1 sends it chunked, HTTP/1.0 until the connection closes.
        r.headers_out.content_length_n = -1;
        // Neither a validator nor ranges: the bytes are not all there yet (the complete
        // segment, asked for again, has both).
        r.headers_out.last_modified_time = -1;
        r.set_allow_ranges(0);
        set_content_type(r, content_type);
        // SAFETY: r is the request being handled; its headers are set.
        let rc = unsafe { ngx_http_send_header(r) };
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
            return Ok(rc);
        }
    }
    let sent = bytes.len() as u64;
    let mut rc = NGX_OK as ngx_int_t;
    if !bytes.is_empty() {
        let b = owned_buf(r, bytes)?;
        if next.is_none() {
            finish_last(r, b);
        } else {
            // Out to the client now, not when nginx's buffers fill.
            // SAFETY: a buffer of this request, not handed to nginx yet.
            unsafe { (*b).set_flush(1) };
        }
        let cl = chain_link(r, b)?;
        // SAFETY: the chain and buffer live in the request pool.
        rc = unsafe { ngx_http_output_filter(r, cl) };
    } else if next.is_none() {
        // SAFETY: the request being answered; ends its body.
        rc = unsafe { ngx::ffi::ngx_http_send_special(r, ngx::ffi::NGX_HTTP_LAST as _) };
    }
    if rc == NGX_ERROR as ngx_int_t {
        return Ok(rc);
    }
    let Some(wait) = next else {
        return Ok(rc);
    };
    watch::hold(r, &wait.watch, wait.until_ms, resume, max_held)?;
    watch::add_streamed(r, sent);
    // A slow client: what nginx could not write yet goes out as the socket takes it, while
    // the request waits for the next chunk.
    r.write_event_handler = Some(flush_on_write);
    // SAFETY: the request's connection is valid while the request is.
    if unsafe { (*r.connection).buffered() } != 0 {
        arm_write_event(r)?;
    }
    Ok(NGX_DONE as ngx_int_t)
}

/// Write-event handler of a held growing answer: sends what nginx still holds.
unsafe extern "C" fn flush_on_write(r: *mut ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls the write handler with its valid request.
        let r = unsafe { &mut *r };
        // SAFETY: the connection and its write event live as long as the request.
        let wev = unsafe { (*r.connection).write };
        // The request ends (its hold released by its cleanup).
        if end_if_timed_out(r) {
            return NGX_OK as ngx_int_t;
        }
        // SAFETY: flushing what nginx already holds for this request.
        let rc = unsafe { ngx_http_output_filter(r, std::ptr::null_mut()) };
        // SAFETY: as above.
        let still = unsafe { (*r.connection).buffered() } != 0;
        if rc == NGX_ERROR as ngx_int_t || (still && arm_write_event(r).is_err()) {
            // SAFETY: ends our own request; its hold is released by its cleanup.
            unsafe { ngx::ffi::ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t) };
        } else if !still && unsafe { (*wev).timer_set() } != 0 {
            // SAFETY: the send timeout armed above, no longer needed.
            unsafe { ngx::ffi::ngx_del_timer(wev) };
        }
        NGX_OK as ngx_int_t
    });
}
