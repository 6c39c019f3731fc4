//! nginx strings: their bytes, and copies of bytes in a request's pool.

use std::ptr;

use ngx::ffi::{ngx_http_request_t, ngx_pnalloc, ngx_str_t};

use super::OriginError;

/// The bytes of an nginx string (empty for a null one).
pub fn bytes(s: &ngx_str_t) -> &[u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: nginx strings point at `len` bytes that live as long as the request.
    unsafe { std::slice::from_raw_parts(s.data, s.len) }
}

/// A copy of `bytes` in the request pool, NUL-terminated after its `len` bytes: nginx prints
/// some strings (file names) with `%s`.
pub fn pool_str(r: *mut ngx_http_request_t, bytes: &[u8]) -> Result<ngx_str_t, OriginError> {
    // SAFETY: allocation from the request's pool, which outlives every use of the string.
    unsafe {
        let data = ngx_pnalloc((*r).pool, bytes.len() + 1) as *mut u8;
        if data.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
        *data.add(bytes.len()) = 0;
        Ok(ngx_str_t {
            len: bytes.len(),
            data,
        })
    }
}
