//! Live ingest: an encoder's POST (or PUT) to `<ch>.isml/Streams(<name>)`, read as it arrives.
//!
//! The body is read unbuffered (`request_body_no_buffering`): each piece nginx receives goes
//! to the core's [`IngestSession`] at once, which writes (and flushes) every fragment it
//! completes before the next piece is read. A long chunked POST therefore never waits in a
//! temporary file, and what an encoder sent before a dropped connection is kept. The answer
//! (200, or the status of the first refusal) goes out when the body ends or is refused.
//!
//! nginx reads an unbuffered body only as far as its buffer lets it: the buffer is handed to us
//! and must be consumed (`pos = last`) before nginx reads on, and a read that finds nothing new
//! waits for the next read event. Both happen in [`pump`], in a loop, as nginx's upstream module
//! does it (BUILD.md).

use std::ffi::c_void;
use std::os::unix::fs::FileExt;

use ngx::ffi::{
    ngx_buf_t, ngx_http_finalize_request, ngx_http_read_client_request_body,
    ngx_http_read_unbuffered_request_body, ngx_http_request_t, ngx_http_send_header,
    ngx_http_send_special, ngx_int_t, NGX_AGAIN, NGX_DONE, NGX_ERROR, NGX_HTTP_LAST,
    NGX_HTTP_SPECIAL_RESPONSE, NGX_OK,
};
use origin_core::live::session::IngestSession;

use crate::live::now_ms;
use crate::status::{fail, OriginError};

/// What a request being ingested keeps between read events.
struct Ingest {
    session: IngestSession,
    /// Set once the request was answered (an error mid-body): what follows is not read.
    done: bool,
}

/// Starts ingesting the body of `r` into the channel whose server manifest is `isml`.
pub fn serve(
    r: &mut ngx_http_request_t,
    isml: &str,
    stream: &str,
    create: bool,
) -> Result<ngx_int_t, OriginError> {
    let mut session = IngestSession::open(std::path::Path::new(isml), stream, create)?;
    // SAFETY: the connection outlives its request; addr_text is its peer's address.
    let address = unsafe { crate::driver::ngx_str(&(*r.connection).addr_text) };
    session.set_encoder(&String::from_utf8_lossy(address));
    let ingest = crate::send::own_by_request(
        r,
        Ingest {
            session,
            done: false,
        },
    )?;
    set_ctx(r, ingest as *mut c_void);
    r.set_request_body_no_buffering(1);
    // SAFETY: r is the main request being handled; nginx calls `body_started` once it has
    // read what is there (the whole body, or its first part).
    let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_started)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return Ok(rc);
    }
    Ok(NGX_DONE as ngx_int_t)
}

fn ctx(r: &ngx_http_request_t) -> *mut Ingest {
    // SAFETY: r->ctx has one slot per http module, ours at our ctx_index.
    unsafe { *r.ctx.add(crate::module().ctx_index) as *mut Ingest }
}

fn set_ctx(r: &mut ngx_http_request_t, value: *mut c_void) {
    // SAFETY: as in `ctx`.
    unsafe { *r.ctx.add(crate::module().ctx_index) = value };
}

/// The body's first part is there (or all of it): reading goes on from read events.
unsafe extern "C" fn body_started(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the post handler with its valid request.
    if unsafe { (*r).reading_body() } != 0 {
        // SAFETY: as above.
        unsafe { (*r).read_event_handler = Some(body_readable) };
    }
    on_event(r);
}

/// More of the body can be read.
unsafe extern "C" fn body_readable(r: *mut ngx_http_request_t) {
    on_event(r);
}

fn on_event(r: *mut ngx_http_request_t) {
    crate::entry::guard_request(r, || {
        // SAFETY: nginx calls its handlers with a valid request.
        let r = unsafe { &mut *r };
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        let rc = crate::log::with_log(log, || match pump(r) {
            Ok(None) => None,
            Ok(Some(rc)) => Some(rc),
            Err(e) => {
                let ingest = ctx(r);
                if !ingest.is_null() {
                    // SAFETY: set by `serve`, freed with the pool.
                    unsafe { (*ingest).session.count_error() };
                }
                Some(fail(r, &e))
            }
        });
        if let Some(rc) = rc {
            let ingest = ctx(r);
            if !ingest.is_null() {
                // SAFETY: set by `serve`, freed with the pool.
                unsafe { (*ingest).done = true };
            }
            // SAFETY: releases the count ngx_http_read_client_request_body took.
            unsafe { ngx_http_finalize_request(r, rc) };
        }
        NGX_OK as ngx_int_t
    });
}

/// Feeds what nginx has read to the session and reads on, until nginx has nothing more for
/// now (`None`: wait for the next read event) or the body ended or failed (`Some(rc)`).
fn pump(r: &mut ngx_http_request_t) -> Result<Option<ngx_int_t>, OriginError> {
    let ingest = ctx(r);
    if ingest.is_null() {
        return Err(OriginError::Internal("ingest without its state"));
    }
    // SAFETY: set by `serve`, freed with the pool, used by one event at a time.
    let ingest = unsafe { &mut *ingest };
    if ingest.done {
        return Ok(None);
    }
    let now = now_ms();
    loop {
        feed(r, &mut ingest.session, now)?;
        if r.reading_body() == 0 {
            ingest.session.finish(now_ms())?;
            return respond(r).map(Some);
        }
        // SAFETY: r is the main request reading its body unbuffered.
        let rc = unsafe { ngx_http_read_unbuffered_request_body(r) };
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            // The client closed the connection or broke the framing; what was complete is kept.
            let _ = ingest.session.finish(now_ms());
            return Ok(Some(rc));
        }
        if rc == NGX_ERROR as ngx_int_t {
            return Ok(Some(rc));
        }
        // SAFETY: request_body is set while the body is read.
        let more = unsafe { !r.request_body.is_null() && !(*r.request_body).bufs.is_null() };
        if rc == NGX_AGAIN as ngx_int_t && !more {
            // Nothing new until the next read event.
            return Ok(None);
        }
    }
}

/// Hands every buffer nginx has read to the session and marks it consumed.
fn feed(
    r: &mut ngx_http_request_t,
    session: &mut IngestSession,
    now: i64,
) -> Result<(), OriginError> {
    let rb = r.request_body;
    if rb.is_null() {
        return Ok(());
    }
    // SAFETY: the chain and its buffers belong to the request body being read; nginx reuses a
    // buffer only after we mark it consumed (pos = last), which happens after the bytes were
    // fed (copied by the parser).
    unsafe {
        let mut cl = (*rb).bufs;
        while !cl.is_null() {
            let b: *mut ngx_buf_t = (*cl).buf;
            if !b.is_null() {
                if only_in_file(b) {
                    read_file_buf(&*b, |bytes| Ok(session.push(bytes, now)?))?;
                    (*b).file_pos = (*b).file_last;
                } else if !(*b).pos.is_null() && (*b).last > (*b).pos {
                    let len = (*b).last.offset_from((*b).pos) as usize;
                    session.push(std::slice::from_raw_parts((*b).pos, len), now)?;
                    (*b).pos = (*b).last;
                }
            }
            cl = (*cl).next;
        }
        (*rb).bufs = std::ptr::null_mut();
    }
    Ok(())
}

/// A part of the body nginx kept in a temporary file (a body it read whole before we asked),
/// handed to `take` a megabyte at a time.
///
/// # Safety
/// `b` is a file buffer of the request body, its file open.
unsafe fn read_file_buf(
    b: &ngx_buf_t,
    mut take: impl FnMut(&[u8]) -> Result<(), OriginError>,
) -> Result<(), OriginError> {
    // SAFETY: per the contract, the file is open for the request's lifetime.
    let fd = unsafe { (*b.file).fd };
    // SAFETY: borrowing the descriptor without taking ownership (ManuallyDrop keeps it open).
    let file = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    let mut at = b.file_pos as u64;
    let end = b.file_last as u64;
    let mut buf = vec![0u8; ((end - at) as usize).min(1 << 20)];
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|source| OriginError::Io {
                path: "client body temporary file".into(),
                source,
            })?;
        take(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// True for a buffer whose bytes are only in a file.
///
/// # Safety
/// `b` is a valid buffer.
unsafe fn only_in_file(b: *const ngx_buf_t) -> bool {
    // SAFETY: per the contract.
    unsafe {
        (*b).in_file() != 0
            && (*b).temporary() == 0
            && (*b).memory() == 0
            && (*b).mmap() == 0
            && !(*b).file.is_null()
    }
}

/// 200, no body: every fragment of the request is on disk.
fn respond(r: &mut ngx_http_request_t) -> Result<ngx_int_t, OriginError> {
    send_empty(r, 200)
}

/// A response with this status and no body.
pub fn send_empty(r: &mut ngx_http_request_t, status: usize) -> Result<ngx_int_t, OriginError> {
    r.headers_out.status = status;
    r.headers_out.content_length_n = 0;
    r.set_header_only(0);
    // SAFETY: r is the request being answered.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t {
        return Ok(rc);
    }
    // SAFETY: as above.
    Ok(unsafe { ngx_http_send_special(r, NGX_HTTP_LAST as _) })
}

/// The whole request body nginx read (in memory, or in its temporary file), at most `limit`
/// bytes.
pub fn whole_body(r: &ngx_http_request_t, limit: usize) -> Result<Vec<u8>, OriginError> {
    let mut out = Vec::new();
    let rb = r.request_body;
    if rb.is_null() {
        return Ok(out);
    }
    let too_large = || OriginError::BodyTooLarge {
        limit: limit as u64,
    };
    // SAFETY: the chain belongs to the request body nginx finished reading.
    unsafe {
        let mut cl = (*rb).bufs;
        while !cl.is_null() {
            let b = (*cl).buf;
            if !b.is_null() {
                if only_in_file(b) {
                    if out.len() + ((*b).file_last - (*b).file_pos) as usize > limit {
                        return Err(too_large());
                    }
                    read_file_buf(&*b, |bytes| {
                        out.extend_from_slice(bytes);
                        Ok(())
                    })?;
                } else if !(*b).pos.is_null() && (*b).last > (*b).pos {
                    let len = (*b).last.offset_from((*b).pos) as usize;
                    if out.len() + len > limit {
                        return Err(too_large());
                    }
                    out.extend_from_slice(std::slice::from_raw_parts((*b).pos, len));
                }
            }
            cl = (*cl).next;
        }
    }
    Ok(out)
}
