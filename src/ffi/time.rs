//! The clock and HTTP dates.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An HTTP date (RFC 9110 IMF-fixdate) of seconds since the Unix epoch.
pub fn http_date(secs: i64) -> String {
    let mut buf = [0u8; 40];
    // SAFETY: ngx_http_time writes at most sizeof("Mon, 28 Sep 1970 06:00:00 GMT") bytes into
    // the buffer and returns the end of what it wrote.
    let end = unsafe { ngx::ffi::ngx_http_time(buf.as_mut_ptr(), secs as ngx::ffi::time_t) };
    // SAFETY: `end` points into `buf`, at or after its start.
    let len = unsafe { end.offset_from(buf.as_ptr()) }.clamp(0, buf.len() as isize) as usize;
    String::from_utf8_lossy(&buf[..len]).into_owned()
}
