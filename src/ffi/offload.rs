//! Blocking work of a request (archive writes and their `fdatasync`, `flock`, directory
//! removal) run on nginx's thread pool, so the worker's event loop goes on serving other
//! requests meanwhile; the request continues on the event loop when the work is done.
//!
//! This is how nginx itself offloads (`aio threads`): a thread task allocated from the
//! request's pool, `r->main->blocked` raised while it runs (nginx then neither frees the
//! request nor finalizes it under the task: a request terminated meanwhile is finalized when
//! the task completes), and the task's completion event calling the request's
//! `write_event_handler`. The pool is `origin_thread_pool` (`default` unless set), registered
//! while the configuration is read. An nginx built without thread support runs the work at
//! once instead, and continues the request from nginx's posted requests.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use ngx::ffi::{ngx_http_request_t, ngx_int_t};

use crate::ffi::OriginError;

/// The thread pool blocking work runs on (registered with [`add_pool`]); without thread
/// support, nothing: the work runs in place.
#[cfg(ngx_feature = "threads")]
pub type ThreadPool = *mut ngx::ffi::ngx_thread_pool_t;
#[cfg(not(ngx_feature = "threads"))]
pub type ThreadPool = ();

/// What a request continues with once its work is done (installed as its write event
/// handler for that one call).
pub type Continuation = unsafe extern "C" fn(*mut ngx_http_request_t);

/// The work and its outcome, shared with the pool thread that runs it.
struct Shared<O> {
    work: Mutex<Option<Box<dyn FnOnce() -> O + Send>>>,
    /// The outcome; `Err` (the panic's message) when the work panicked.
    outcome: Mutex<Option<Result<O, String>>>,
}

impl<O> Shared<O> {
    /// Runs the work: on the pool thread, or inline without thread support.
    fn run(&self) {
        let Some(work) = lock(&self.work).take() else {
            return;
        };
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into())
        });
        *lock(&self.outcome) = Some(outcome);
    }
}

/// One request's blocking work, one piece at a time; lives in the request (see
/// [`crate::ffi::pool::own_by_request`]).
pub struct Offload<O: Send + 'static> {
    shared: std::sync::Arc<Shared<O>>,
    /// The reference the posted task holds (`Arc::into_raw`), released when its outcome is
    /// taken or the request is freed (never while the task runs: `blocked` holds the request).
    posted: *const Shared<O>,
    in_flight: bool,
    #[cfg(ngx_feature = "threads")]
    task: *mut ngx::ffi::ngx_thread_task_t,
    /// A timer kept while the work runs: a worker that is shutting down (a reload) exits once
    /// no timer is left, and the task's completion is not one.
    #[cfg(ngx_feature = "threads")]
    hold: ngx::ffi::ngx_event_t,
}

/// How often the hold timer fires while work runs (it only re-arms itself).
#[cfg(ngx_feature = "threads")]
const HOLD_MS: ngx::ffi::ngx_msec_t = 60_000;

impl<O: Send + 'static> Default for Offload<O> {
    fn default() -> Self {
        Offload {
            shared: std::sync::Arc::new(Shared {
                work: Mutex::new(None),
                outcome: Mutex::new(None),
            }),
            posted: std::ptr::null(),
            in_flight: false,
            #[cfg(ngx_feature = "threads")]
            task: std::ptr::null_mut(),
            // SAFETY: an all-zero event is an idle one (nginx zeroes its events the same way).
            #[cfg(ngx_feature = "threads")]
            hold: unsafe { std::mem::zeroed() },
        }
    }
}

impl<O: Send + 'static> Drop for Offload<O> {
    fn drop(&mut self) {
        self.release();
        self.stop_holding();
    }
}

impl<O: Send + 'static> Offload<O> {
    /// Whether work was posted and its outcome not taken yet.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// The outcome of the work posted last, once it is done (`None` before).
    pub fn take(&mut self) -> Option<Result<O, OriginError>> {
        let outcome = lock(&self.shared.outcome).take()?;
        self.in_flight = false;
        self.release();
        self.stop_holding();
        Some(outcome.map_err(|message| {
            tracing::error!("blocking work panicked: {message}");
            OriginError::Internal("a blocking task panicked")
        }))
    }

    #[cfg(ngx_feature = "threads")]
    fn stop_holding(&mut self) {
        if self.hold.timer_set() != 0 {
            // SAFETY: the timer was added by `post_to_pool` on this event, which has not moved
            // (the Offload lives in the request's pool).
            unsafe { ngx::ffi::ngx_del_timer(&mut self.hold) };
        }
    }

    #[cfg(not(ngx_feature = "threads"))]
    fn stop_holding(&mut self) {}

    fn release(&mut self) {
        if !self.posted.is_null() {
            // SAFETY: the reference `post_to_pool` leaked; the task that used it is done.
            drop(unsafe { std::sync::Arc::from_raw(self.posted) });
            self.posted = std::ptr::null();
        }
    }

    /// Runs `work` off the event loop for `r`; `then` runs on the event loop once it is done
    /// (and finds the outcome with [`Offload::take`]). Nothing of `r` may be used by `work`.
    pub fn post(
        &mut self,
        r: &mut ngx_http_request_t,
        pool: ThreadPool,
        work: impl FnOnce() -> O + Send + 'static,
        then: Continuation,
    ) -> Result<(), OriginError> {
        if self.in_flight {
            return Err(OriginError::Internal("blocking work posted twice"));
        }
        *lock(&self.shared.work) = Some(Box::new(work));
        *lock(&self.shared.outcome) = None;
        self.in_flight = true;
        r.write_event_handler = Some(then);
        let posted = self.post_to_pool(r, pool);
        if posted.is_err() {
            self.in_flight = false;
            lock(&self.shared.work).take();
            self.release();
            r.write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
        }
        posted
    }

    #[cfg(ngx_feature = "threads")]
    fn post_to_pool(
        &mut self,
        r: &mut ngx_http_request_t,
        pool: ThreadPool,
    ) -> Result<(), OriginError> {
        use ngx::ffi::{ngx_thread_task_alloc, ngx_thread_task_post, NGX_OK};
        if pool.is_null() {
            return Err(OriginError::Internal("no thread pool for blocking work"));
        }
        if self.task.is_null() {
            // SAFETY: a task with room for one pointer, from the request's pool, which outlives
            // it (`blocked` keeps the request while the task runs).
            let task = unsafe { ngx_thread_task_alloc(r.pool, std::mem::size_of::<*mut c_void>()) };
            if task.is_null() {
                return Err(OriginError::Internal("out of memory"));
            }
            self.task = task;
        }
        let task = self.task;
        self.release();
        self.posted = std::sync::Arc::into_raw(self.shared.clone());
        // SAFETY: `task` is ours and idle (one piece of work at a time); its context holds a
        // reference to the shared work, released by `take` or the Offload's drop.
        unsafe {
            *((*task).ctx as *mut *const Shared<O>) = self.posted;
            (*task).handler = Some(run_on_pool_thread::<O>);
            (*task).event.data = r as *mut ngx_http_request_t as *mut c_void;
            (*task).event.handler = Some(work_done);
            if ngx_thread_task_post(pool, task) != NGX_OK as ngx_int_t {
                return Err(OriginError::Internal(
                    "the thread pool's queue is full (see origin_thread_pool)",
                ));
            }
            let main = &mut *r.main;
            main.set_blocked(main.blocked() + 1);
            if self.hold.timer_set() == 0 {
                self.hold.log = (*r.connection).log;
                self.hold.handler = Some(hold_expired);
                ngx::ffi::ngx_add_timer(&mut self.hold, HOLD_MS);
            }
        }
        Ok(())
    }

    #[cfg(not(ngx_feature = "threads"))]
    fn post_to_pool(
        &mut self,
        r: &mut ngx_http_request_t,
        _pool: ThreadPool,
    ) -> Result<(), OriginError> {
        // Without threads the work runs here; the request continues from the posted
        // requests, after the handler that posted it returns.
        self.shared.run();
        // SAFETY: r is a valid request; posting runs its write event handler soon.
        if unsafe { ngx::ffi::ngx_http_post_request(r, std::ptr::null_mut()) }
            != ngx::ffi::NGX_OK as ngx_int_t
        {
            return Err(OriginError::Internal("out of memory"));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data is replaced whole; a panic while it was held leaves nothing half-done.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The thread task's handler, on a pool thread: runs the work.
#[cfg(ngx_feature = "threads")]
unsafe extern "C" fn run_on_pool_thread<O: Send + 'static>(
    data: *mut c_void,
    _log: *mut ngx::ffi::ngx_log_t,
) {
    // SAFETY: `data` is the task's context, holding a reference to the shared work that
    // `post_to_pool` leaked for the task (released only after the task completed).
    let shared = unsafe { &**(data as *const *const Shared<O>) };
    // A panic never leaves this function (the work's is caught in `run`).
    let _ = catch_unwind(AssertUnwindSafe(|| shared.run()));
}

/// The hold timer fired while work still runs: it goes on holding.
#[cfg(ngx_feature = "threads")]
unsafe extern "C" fn hold_expired(ev: *mut ngx::ffi::ngx_event_t) {
    // SAFETY: nginx calls the handler of the Offload's own event, which is valid until the
    // Offload is dropped (dropping it deletes the timer first).
    unsafe { ngx::ffi::ngx_add_timer(ev, HOLD_MS) };
}

/// The task's completion event, on the event loop: the request's write event handler continues
/// it (ours, or nginx's finalizer when the request was terminated meanwhile).
#[cfg(ngx_feature = "threads")]
unsafe extern "C" fn work_done(ev: *mut ngx::ffi::ngx_event_t) {
    // SAFETY: the event's data is the request the task was posted for, kept alive by
    // `blocked` until here.
    unsafe {
        let r = (*ev).data as *mut ngx_http_request_t;
        let c = (*r).connection;
        let main = &mut *(*r).main;
        main.set_blocked(main.blocked().saturating_sub(1));
        if let Some(handler) = (*r).write_event_handler {
            handler(r);
        }
        ngx::ffi::ngx_http_run_posted_requests(c);
    }
}

/// Registers the thread pool blocking work runs on (`name`, nginx's `default` pool when not
/// given), while the configuration is read.
///
/// # Safety
/// `cf` is the configuration being read.
#[cfg(ngx_feature = "threads")]
pub unsafe fn add_pool(
    cf: *mut ngx::ffi::ngx_conf_t,
    name: Option<&str>,
) -> Result<*mut ngx::ffi::ngx_thread_pool_t, OriginError> {
    let mut name = match name {
        // SAFETY: a copy of the name in the configuration's pool, which outlives the pool.
        Some(n) => unsafe { conf_str(cf, n) }?,
        None => ngx::ffi::ngx_str_t {
            len: 0,
            data: std::ptr::null_mut(),
        },
    };
    let name_ptr = if name.len == 0 {
        std::ptr::null_mut()
    } else {
        &mut name as *mut ngx::ffi::ngx_str_t
    };
    // SAFETY: per this function's contract; nginx keeps its own copy of the name.
    let pool = unsafe { ngx::ffi::ngx_thread_pool_add(cf, name_ptr) };
    if pool.is_null() {
        return Err(OriginError::Internal("could not add the thread pool"));
    }
    Ok(pool)
}

/// `s` copied into the configuration's pool.
///
/// # Safety
/// `cf` is the configuration being read.
#[cfg(ngx_feature = "threads")]
unsafe fn conf_str(
    cf: *mut ngx::ffi::ngx_conf_t,
    s: &str,
) -> Result<ngx::ffi::ngx_str_t, OriginError> {
    // SAFETY: allocation from the configuration pool, written before use.
    unsafe {
        let data = ngx::ffi::ngx_pnalloc((*cf).pool, s.len()) as *mut u8;
        if data.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        std::ptr::copy_nonoverlapping(s.as_ptr(), data, s.len());
        Ok(ngx::ffi::ngx_str_t { len: s.len(), data })
    }
}
