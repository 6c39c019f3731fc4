//! The panic fence. Every `extern "C"` function nginx calls runs its body through one of these
//! guards: a panic is caught before it reaches nginx (unwinding into C is undefined behaviour,
//! and Rust aborts the process instead), logged with its message and source location, and turned
//! into the entry's failure value: a 500 for a request, NGX_CONF_ERROR for a directive.

use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Once;

use ngx::ffi::{
    ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ALERT, NGX_LOG_EMERG,
};

thread_local! {
    /// The message and location of the panic being unwound on this thread.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default hook (which prints to stderr, lost or misattributed under nginx) with
/// one that records the panic for the guard to log at the right nginx log.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "non-string panic payload".to_string()
            };
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let _ = LAST_PANIC.try_with(|p| {
                *p.borrow_mut() = Some(format!("{message}{location}"));
            });
        }));
    });
}

fn take_panic_message() -> String {
    LAST_PANIC
        .try_with(|p| p.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown panic".to_string())
}

fn log_panic(log: *mut ngx_log_t, level: u32, context: &str) {
    let text = format!(
        "ngx_origin: internal error (panic) {context}: {}",
        take_panic_message()
    );
    if log.is_null() {
        return;
    }
    // SAFETY: log is nginx's, valid for the duration of the callback.
    unsafe { ngx::log::log_error(level as ngx_uint_t, log, 0, text.as_bytes()) };
}

/// Runs `f`; on panic logs it and returns `on_panic`.
fn fence<R>(
    log: *mut ngx_log_t,
    level: u32,
    context: &str,
    on_panic: R,
    f: impl FnOnce() -> R,
) -> R {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            log_panic(log, level, context);
            on_panic
        }
    }
}

fn conf_log(cf: *mut ngx_conf_t) -> *mut ngx_log_t {
    if cf.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a non-null cf is nginx's configuration context.
    unsafe { (*cf).log }
}

/// Guards a directive handler or merge function.
pub fn guard_conf(cf: *mut ngx_conf_t, f: impl FnOnce() -> *mut c_char) -> *mut c_char {
    fence(
        conf_log(cf),
        NGX_LOG_EMERG,
        "while reading the configuration",
        ngx::core::NGX_CONF_ERROR,
        f,
    )
}

/// Guards a configuration constructor; a panic gives NULL, which nginx reports as an error.
pub fn guard_conf_ptr(cf: *mut ngx_conf_t, f: impl FnOnce() -> *mut c_void) -> *mut c_void {
    fence(
        conf_log(cf),
        NGX_LOG_EMERG,
        "while creating the configuration",
        ptr::null_mut(),
        f,
    )
}

/// Guards a configuration callback returning an nginx status.
pub fn guard_conf_status(cf: *mut ngx_conf_t, f: impl FnOnce() -> ngx_int_t) -> ngx_int_t {
    fence(
        conf_log(cf),
        NGX_LOG_EMERG,
        "while configuring",
        NGX_ERROR as ngx_int_t,
        f,
    )
}

/// Guards a callback that has a log but neither a request nor a configuration being read
/// (process start and exit, shared-memory set-up, pool cleanups): a panic gives `on_panic`.
/// `context` reads "while …".
pub fn guard_log<R>(log: *mut ngx_log_t, context: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    fence(log, NGX_LOG_ALERT, context, on_panic, f)
}

/// Guards a request handler: a panic before the header went out is a 500 (which nginx turns
/// into its error page, and `error_page` / header filters still apply); after it, the
/// connection is closed with NGX_ERROR since the response is already half-sent.
pub fn guard_request(r: *mut ngx_http_request_t, f: impl FnOnce() -> ngx_int_t) -> ngx_int_t {
    // SAFETY: nginx calls handlers with a valid request whose connection has a log.
    let log = unsafe { (*(*r).connection).log };
    let result = fence(
        log,
        NGX_LOG_ALERT,
        "while handling the request",
        None,
        || Some(f()),
    );
    match result {
        Some(rc) => rc,
        // SAFETY: r is still the valid request nginx handed us.
        None if unsafe { (*r).header_sent() } != 0 => NGX_ERROR as ngx_int_t,
        None => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
    }
}
