//! Values, buffers and chain links that live as long as a request (its pool).

use std::fs::File;
use std::path::Path;
use std::ptr;

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_http_request_t, ngx_pcalloc,
    ngx_pool_cleanup_add, ngx_pool_cleanup_file, ngx_pool_cleanup_file_t,
};

use super::OriginError;

pub fn memory_buf(r: &mut ngx_http_request_t, bytes: &[u8]) -> Result<*mut ngx_buf_t, OriginError> {
    // SAFETY: the buffer comes from the request pool and lives as long as the request.
    unsafe {
        let b = ngx_create_temp_buf(r.pool, bytes.len().max(1));
        if b.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), (*b).last, bytes.len());
        (*b).last = (*b).last.add(bytes.len());
        Ok(b)
    }
}

pub fn chain_link(
    r: &mut ngx_http_request_t,
    buf: *mut ngx_buf_t,
) -> Result<*mut ngx_chain_t, OriginError> {
    // SAFETY: pool allocation, zeroed.
    let cl = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ngx_chain_t>()) } as *mut ngx_chain_t;
    if cl.is_null() {
        return Err(OriginError::Internal("out of memory"));
    }
    // SAFETY: cl was just allocated.
    unsafe { (*cl).buf = buf };
    Ok(cl)
}

/// A zeroed buffer header from the request pool.
pub fn pool_buf(r: &mut ngx_http_request_t) -> Result<*mut ngx_buf_t, OriginError> {
    // SAFETY: pool allocation, zeroed.
    let b = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ngx_buf_t>()) } as *mut ngx_buf_t;
    if b.is_null() {
        return Err(OriginError::Internal("out of memory"));
    }
    Ok(b)
}

/// Links `buf` after `last` and returns the new last link.
pub fn append_link(
    r: &mut ngx_http_request_t,
    last: *mut ngx_chain_t,
    buf: *mut ngx_buf_t,
) -> Result<*mut ngx_chain_t, OriginError> {
    let cl = chain_link(r, buf)?;
    // SAFETY: `last` is a link of this request's chain, allocated from its pool.
    unsafe { (*last).next = cl };
    Ok(cl)
}

pub fn finish_last(r: &ngx_http_request_t, b: *mut ngx_buf_t) {
    let is_main = ptr::eq(r as *const _, r.main as *const _);
    // SAFETY: b is a valid buffer of this request.
    unsafe {
        (*b).set_last_buf(u32::from(is_main));
        (*b).set_last_in_chain(1);
    }
}

/// Moves `value` into the request: it lives until the request's pool is destroyed (a pool
/// cleanup drops it, a panic in its drop caught). Returns where it now is.
pub fn own_by_request<T: 'static>(
    r: &mut ngx_http_request_t,
    value: T,
) -> Result<*mut T, OriginError> {
    unsafe extern "C" fn release<T>(data: *mut std::ffi::c_void) {
        if !data.is_null() {
            // SAFETY: the Box leaked below, released exactly once with the pool.
            let value = unsafe { Box::from_raw(data as *mut T) };
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
        }
    }
    // SAFETY: the cleanup comes from the request pool and frees its data exactly once.
    unsafe {
        let cln = ngx_pool_cleanup_add(r.pool, 0);
        if cln.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        let value = Box::into_raw(Box::new(value));
        (*cln).data = value as *mut std::ffi::c_void;
        (*cln).handler = Some(release::<T>);
        Ok(value)
    }
}

/// Hands `file` to a pool cleanup that closes it when the request ends; returns its descriptor.
pub fn close_with_request(
    r: *mut ngx_http_request_t,
    file: File,
    path: &Path,
) -> Result<i32, OriginError> {
    use std::os::fd::IntoRawFd;
    let name = crate::ffi::strings::pool_str(r, path.display().to_string().as_bytes())?;
    // SAFETY: the cleanup comes from the request pool and closes the descriptor exactly once,
    // when the pool is destroyed, after the last buffer that reads it was sent.
    unsafe {
        let cln = ngx_pool_cleanup_add((*r).pool, std::mem::size_of::<ngx_pool_cleanup_file_t>());
        if cln.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        let fd = file.into_raw_fd();
        (*cln).handler = Some(ngx_pool_cleanup_file);
        let clnf = (*cln).data as *mut ngx_pool_cleanup_file_t;
        (*clnf).fd = fd;
        (*clnf).name = name.data;
        (*clnf).log = (*(*r).connection).log;
        Ok(fd)
    }
}
