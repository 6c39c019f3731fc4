//! The bridge from `tracing` (which the core logs with) to nginx's error log.
//!
//! Events go to the log of the request being handled (so they carry nginx's client and request
//! context), or to the cycle's log outside a request. Levels map ERROR→error, WARN→warn,
//! INFO→info, DEBUG/TRACE→debug; debug events are formatted only when the log has
//! `error_log … debug` (the http debug bit), so disabled levels cost one comparison.

use std::cell::Cell;
use std::fmt::{self, Write as _};

use ngx::ffi::{
    ngx_cycle, ngx_log_t, ngx_uint_t, NGX_LOG_DEBUG_HTTP, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN,
};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Level, Metadata, Subscriber};

thread_local! {
    /// The request log events go to while a request is handled on this thread.
    static CURRENT_LOG: Cell<*mut ngx_log_t> = const { Cell::new(std::ptr::null_mut()) };
}

/// Runs `f` with events routed to `log` (a request's connection log).
pub fn with_log<R>(log: *mut ngx_log_t, f: impl FnOnce() -> R) -> R {
    struct Restore(*mut ngx_log_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT_LOG.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT_LOG.with(|c| c.replace(log)));
    f()
}

fn current_log() -> *mut ngx_log_t {
    let log = CURRENT_LOG.with(Cell::get);
    if !log.is_null() {
        return log;
    }
    // SAFETY: ngx_cycle is set by nginx before any module code runs and stays valid; its log is
    // the process-wide error log.
    unsafe {
        let cycle = *std::ptr::addr_of!(ngx_cycle);
        if cycle.is_null() {
            std::ptr::null_mut()
        } else {
            (*cycle).log
        }
    }
}

/// The nginx level for a tracing level; `None` for debug levels.
fn ngx_level(level: &Level) -> Option<u32> {
    match *level {
        Level::ERROR => Some(NGX_LOG_ERR),
        Level::WARN => Some(NGX_LOG_WARN),
        Level::INFO => Some(NGX_LOG_INFO),
        _ => None,
    }
}

fn log_enabled(log: *mut ngx_log_t, level: &Level) -> bool {
    if log.is_null() {
        return false;
    }
    // SAFETY: a non-null log is nginx's and valid.
    let log_level = unsafe { (*log).log_level };
    match ngx_level(level) {
        Some(l) => log_level >= l as ngx_uint_t,
        None => log_level & NGX_LOG_DEBUG_HTTP as ngx_uint_t != 0,
    }
}

/// Collects an event's fields as `message key=value …`.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

struct NginxLog;

impl Subscriber for NginxLog {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The answer depends on the log of the request at hand, so ask every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        log_enabled(current_log(), metadata.level())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let log = current_log();
        let level = event.metadata().level();
        if !log_enabled(log, level) {
            return;
        }
        let mut line = Line(String::from("ngx_origin: "));
        event.record(&mut line);
        // SAFETY: log is nginx's and valid (checked non-null by log_enabled).
        unsafe {
            match ngx_level(level) {
                Some(l) => ngx::log::log_error(l as ngx_uint_t, log, 0, line.0.as_bytes()),
                None => ngx::log::log_debug(log, 0, line.0.as_bytes()),
            }
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Makes nginx's error log the process's tracing subscriber. Called at configuration time in the
/// master, inherited by the workers; a reload finds it already set.
pub fn install() {
    let _ = tracing::subscriber::set_global_default(NginxLog);
}
