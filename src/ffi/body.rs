//! The request body nginx has read: buffers in memory, or parts of its temporary file.

use std::os::unix::fs::FileExt;

use ngx::ffi::{ngx_buf_t, ngx_http_request_t};

use super::OriginError;

/// A part of the body nginx kept in a temporary file (a body it read whole before we asked),
/// handed to `take` a megabyte at a time.
///
/// # Safety
/// `b` is a file buffer of the request body, its file open.
pub unsafe fn read_file_buf(
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
pub unsafe fn only_in_file(b: *const ngx_buf_t) -> bool {
    // SAFETY: per the contract.
    unsafe {
        (*b).in_file() != 0
            && (*b).temporary() == 0
            && (*b).memory() == 0
            && (*b).mmap() == 0
            && !(*b).file.is_null()
    }
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
