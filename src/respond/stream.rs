//! Repackaged responses (MPEG-TS, packed audio) written in bounded pieces as the client drains
//! them. Every payload byte of these is rewritten, so they cannot be sent from the file; making
//! the whole segment up front would hold it in the worker for as long as the slowest client
//! takes to read it (a 1080p segment is megabytes, and a hundred slow readers exhaust a worker).
//! Here one buffer of at most [`PIECE`] bytes per response is filled by the core's
//! [`RepackagedPieces`] (the writer `ismtool package` stores segments with), handed to nginx,
//! and filled again only once nginx has written all of it; the segment was measured first, so
//! Content-Length, HEAD, ranges and 304 work as for any response.

use std::ptr;

use ngx::ffi::{
    ngx_add_timer, ngx_buf_t, ngx_handle_write_event, ngx_http_finalize_request,
    ngx_http_output_filter, ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_ERROR,
    NGX_HTTP_REQUEST_TIME_OUT, NGX_LOG_ERR, NGX_LOG_INFO, NGX_OK,
};
use origin_core::body::{RepackagedPieces, PIECE};
use origin_core::drm::SegmentCipher;
use origin_core::package::ts::{TsFormat, TsTrack};
use origin_core::source::SharedSource;

use super::headers::send_headers;
use crate::ffi::pool::{chain_link, pool_buf};
use crate::ffi::OriginError;
/// Piece buffers a worker keeps for the next responses: a fresh 256 KiB allocation per
/// request would make glibc hand the pages back and fault them in again every time.
const SPARE_PIECES: usize = 8;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A piece buffer, reused when the worker has one.
fn take_piece() -> Vec<u8> {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(PIECE + origin_core::package::ts::PACKET))
}

impl Drop for TsBody {
    fn drop(&mut self) {
        let mut piece = std::mem::take(&mut self.piece);
        if piece.capacity() >= PIECE {
            piece.clear();
            let _ = SPARE.try_with(|s| {
                let mut spare = s.borrow_mut();
                if spare.len() < SPARE_PIECES {
                    spare.push(piece);
                }
            });
        }
    }
}

/// A segment being written: the core's piece writer and the one buffer nginx is sending from.
pub struct TsBody {
    pieces: RepackagedPieces,
    piece: Vec<u8>,
    /// nginx's header of `piece`, once a piece was handed over.
    buf: *mut ngx_buf_t,
}

impl TsBody {
    /// Measures the segment (reading each access unit once to size it) and returns the body
    /// with its total length.
    pub fn new(
        tracks: Vec<TsTrack>,
        sources: Vec<(SharedSource, String)>,
        format: TsFormat,
        encryption: Option<Box<SegmentCipher>>,
    ) -> Result<(TsBody, u64), OriginError> {
        let mut pieces = RepackagedPieces::new(tracks, sources, format, encryption)?;
        let total = pieces.measure()?;
        let body = TsBody {
            pieces,
            piece: Vec::new(),
            buf: ptr::null_mut(),
        };
        Ok((body, total))
    }

    /// Fills the next piece.
    fn fill(&mut self) -> Result<(), OriginError> {
        if self.piece.capacity() == 0 {
            self.piece = take_piece();
        }
        Ok(self.pieces.fill(&mut self.piece)?)
    }
}

/// How far a pump got.
enum Pump {
    /// Everything was handed to nginx; the output filter's last result.
    Done(ngx_int_t),
    /// nginx still holds unsent bytes of the piece: wait for the socket.
    Blocked,
}

/// Sends the response: headers, then as many pieces as the socket takes now; the rest follows
/// from the write-event handler.
pub fn send(
    r: &mut ngx_http_request_t,
    body: TsBody,
    total: u64,
    content_type: &'static str,
    mtime: i64,
    tag: &str,
) -> Result<ngx_int_t, OriginError> {
    if let Some(rc) = send_headers(r, total, content_type, mtime, tag)? {
        return Ok(rc);
    }
    // Several ranges would need the whole body at once: serve those as one 200 instead.
    r.set_single_range(1);
    let body = crate::ffi::pool::own_by_request(r, body)?;
    // SAFETY: `body` lives in the request pool's cleanup until the request is freed.
    match pump(r, unsafe { &mut *body }) {
        Ok(Pump::Done(rc)) => Ok(rc),
        Ok(Pump::Blocked) => {
            // SAFETY: the main request outlives this call; the count keeps it alive until the
            // write handler finalizes it.
            unsafe { (*r.main).set_count((*r.main).count() + 1) };
            crate::ffi::ctx::set(r, body)?;
            r.write_event_handler = Some(on_write);
            arm_write_event(r)?;
            Ok(NGX_DONE as ngx_int_t)
        }
        Err(e) => {
            log_abort(r, &e);
            Ok(NGX_ERROR as ngx_int_t)
        }
    }
}

/// Hands pieces to nginx until one is not fully written or the segment is done.
fn pump(r: &mut ngx_http_request_t, body: &mut TsBody) -> Result<Pump, OriginError> {
    let mut rc = NGX_OK as ngx_int_t;
    loop {
        if !body.buf.is_null() {
            // SAFETY: buf is this request's buffer header over `piece`.
            let pending = unsafe { (*body.buf).pos != (*body.buf).last };
            if pending {
                // SAFETY: flushing what nginx already holds.
                rc = unsafe { ngx_http_output_filter(r, ptr::null_mut()) };
                if rc == NGX_ERROR as ngx_int_t {
                    return Err(OriginError::Internal("client connection failed"));
                }
                // SAFETY: as above.
                if unsafe { (*body.buf).pos != (*body.buf).last } {
                    return Ok(Pump::Blocked);
                }
            }
        }
        if body.pieces.is_done() {
            return Ok(Pump::Done(rc));
        }
        body.fill()?;
        if body.buf.is_null() {
            body.buf = pool_buf(r)?;
        }
        let b = body.buf;
        let start = body.piece.as_mut_ptr();
        // SAFETY: `piece` is not touched again until nginx consumed the buffer (pos == last),
        // and it lives as long as the request.
        unsafe {
            ptr::write_bytes(b, 0, 1);
            (*b).start = start;
            (*b).pos = start;
            (*b).last = start.add(body.piece.len());
            (*b).end = (*b).last;
            (*b).set_memory(1);
            if body.pieces.is_done() {
                let is_main = ptr::eq(r as *const _, r.main as *const _);
                (*b).set_last_buf(u32::from(is_main));
                (*b).set_last_in_chain(1);
            } else {
                (*b).set_flush(1);
            }
        }
        let cl = chain_link(r, b)?;
        // SAFETY: the chain and buffer are the request's.
        rc = unsafe { ngx_http_output_filter(r, cl) };
        if rc == NGX_ERROR as ngx_int_t {
            return Err(OriginError::Internal("client connection failed"));
        }
    }
}

/// Write-event handler of a body still being produced.
unsafe extern "C" fn on_write(r: *mut ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls the write handler with its valid request.
        let r = unsafe { &mut *r };
        // SAFETY: the connection and its write event live as long as the request.
        let wev = unsafe { (*r.connection).write };
        if end_if_timed_out(r) {
            return NGX_OK as ngx_int_t;
        }
        unsafe {
            if (*wev).delayed() != 0 || r.aio() != 0 {
                if arm_write_event(r).is_err() {
                    ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t);
                }
                return NGX_OK as ngx_int_t;
            }
        }
        let Some(body) = crate::ffi::ctx::get::<TsBody>(r) else {
            // SAFETY: finalizing our own request, which has no body to write.
            unsafe { ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t) };
            return NGX_OK as ngx_int_t;
        };
        // SAFETY: set by `send` before this handler was installed; freed with the pool.
        let body = unsafe { &mut *body };
        match pump(r, body) {
            Ok(Pump::Blocked) => {
                if arm_write_event(r).is_err() {
                    // SAFETY: finalizing our own request.
                    unsafe { ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t) };
                }
            }
            Ok(Pump::Done(rc)) => {
                r.write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
                // SAFETY: the count taken in `send` is released here.
                unsafe { ngx_http_finalize_request(r, rc) };
            }
            Err(e) => {
                log_abort(r, &e);
                // SAFETY: as above; NGX_ERROR closes the connection mid-body.
                unsafe { ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t) };
            }
        }
        NGX_OK as ngx_int_t
    });
}

/// A write event that timed out (the client took nothing for `send_timeout`): the request
/// ends with 408, as nginx's own writer ends it. Whether it did.
pub(super) fn end_if_timed_out(r: &mut ngx_http_request_t) -> bool {
    // SAFETY: the request's connection and its write event are valid while the request is.
    unsafe {
        if (*(*r.connection).write).timedout() == 0 {
            return false;
        }
        ngx::log::log_error(
            NGX_LOG_INFO as _,
            (*r.connection).log,
            libc::ETIMEDOUT,
            b"client timed out",
        );
        (*r.connection).set_timedout(1);
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT as ngx_int_t);
    }
    true
}

/// Waits for the socket to take more, within `send_timeout`, as nginx's own writer does.
pub(super) fn arm_write_event(r: &mut ngx_http_request_t) -> Result<(), OriginError> {
    let clcf = crate::settings::conf::core_loc_conf(r)
        .ok_or(OriginError::Internal("no core location configuration"))?;
    // SAFETY: the request's connection and its write event are valid while the request is.
    unsafe {
        let wev = (*r.connection).write;
        if (*wev).delayed() == 0 {
            ngx_add_timer(wev, clcf.send_timeout);
        }
        if ngx_handle_write_event(wev, clcf.send_lowat) != NGX_OK as ngx_int_t {
            return Err(OriginError::Internal("could not wait for the client"));
        }
    }
    Ok(())
}

/// The line that says why a response was cut short.
fn log_abort(r: &mut ngx_http_request_t, e: &OriginError) {
    let text = format!("ngx_origin: {e}; response cut short");
    // SAFETY: the connection's log is valid while the request is.
    unsafe { ngx::log::log_error(NGX_LOG_ERR as _, (*r.connection).log, 0, text.as_bytes()) };
}
