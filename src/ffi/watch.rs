//! Requests held until a live channel changes: LL-HLS blocking playlist reloads and requests
//! for the next part wait here, in the worker's event loop, without blocking it.
//!
//! Each worker has one inotify descriptor, registered in nginx's event loop as a connection
//! of its own. A held request watches its channel's track directories; an ingest in *any*
//! worker (or another nginx sharing the archive) that writes a track's `records` file wakes
//! every request held on that track at once: no polling interval adds latency. Each held
//! request also has a timer at its deadline, and a client that goes away meanwhile ends it
//! (nginx's `test_reading`): nothing is held longer than the core asked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use ngx::ffi::{ngx_connection_t, ngx_event_t, ngx_http_request_t, ngx_int_t};

use super::OriginError;

/// What a held request continues with, on the event loop, once woken or at its deadline.
pub type Resume = unsafe extern "C" fn(*mut ngx_http_request_t);

/// A held request's state, owned by its pool (see [`hold`]).
pub struct Held {
    r: *mut ngx_http_request_t,
    /// inotify watch descriptors of the directories it waits on.
    watches: Vec<i32>,
    resume: Option<Resume>,
    /// Fires at the deadline.
    timer: ngx_event_t,
    /// In the worker's list of held requests.
    listed: bool,
    /// The deadline the core set when it first asked to hold the request.
    until_ms: i64,
    /// Bytes of a growing answer sent so far (see `respond::growing`).
    streamed: Option<u64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

impl Held {
    /// Out of the worker's list, its timer stopped.
    fn release(&mut self) {
        if self.timer.timer_set() != 0 {
            // SAFETY: the timer was added on this event, which has not moved (the pool owns
            // the Held until the request ends).
            unsafe { ngx::ffi::ngx_del_timer(&mut self.timer) };
        }
        if self.listed {
            let me = self as *mut Held;
            WATCHER.with(|w| {
                if let Some(w) = w.borrow_mut().as_mut() {
                    w.held.retain(|h| *h != me);
                }
            });
            self.listed = false;
        }
    }
}

/// The worker's inotify descriptor and the requests held on it.
struct Watcher {
    fd: i32,
    /// Watch descriptors by directory (inotify gives the same one for a directory watched
    /// again: a channel's directories are watched once per worker).
    watches: HashMap<PathBuf, i32>,
    held: Vec<*mut Held>,
}

thread_local! {
    static WATCHER: RefCell<Option<Watcher>> = const { RefCell::new(None) };
}

/// The deadline of `r`, held before (ms since the Unix epoch).
pub fn deadline(r: &ngx_http_request_t) -> Option<i64> {
    // SAFETY: the pool owns the Held while the request lives.
    super::ctx::get::<Held>(r).map(|h| unsafe { (*h).until_ms })
}

/// Bytes of a growing answer `r` sent before it was held again.
pub fn streamed(r: &ngx_http_request_t) -> Option<u64> {
    // SAFETY: the pool owns the Held while the request lives.
    super::ctx::get::<Held>(r).and_then(|h| unsafe { (*h).streamed })
}

/// `r`, just held (see [`hold`]), sent `bytes` more of its growing answer.
pub fn add_streamed(r: &ngx_http_request_t, bytes: u64) {
    if let Some(h) = super::ctx::get::<Held>(r) {
        // SAFETY: the pool owns the Held while the request lives; nothing else borrows it.
        let h = unsafe { &mut *h };
        h.streamed = Some(h.streamed.unwrap_or(0) + bytes);
    }
}

/// Whether `r` may be held: it was before, or the worker holds fewer than `max_held`.
pub fn has_room(r: &ngx_http_request_t, max_held: usize) -> bool {
    super::ctx::get::<Held>(r).is_some() || held_count() < max_held
}

/// How many requests this worker holds.
pub fn held_count() -> usize {
    WATCHER.with(|w| w.borrow().as_ref().map_or(0, |w| w.held.len()))
}

/// Holds `r` until one of `dirs` has a `records` file written, or until `until_ms` (ms since
/// the Unix epoch); then `resume` continues it. The caller returns `NGX_DONE`: the request's
/// count is raised here, and `resume` finalizes it. A worker that holds `max_held` requests
/// already refuses with 503.
pub fn hold(
    r: &mut ngx_http_request_t,
    dirs: &[PathBuf],
    until_ms: i64,
    resume: Resume,
    max_held: usize,
) -> Result<(), OriginError> {
    // A request held before (woken, not there yet) is one of them already.
    if !has_room(r, max_held) {
        return Err(OriginError::LiveSegment {
            status: 503,
            what: format!("this worker already holds {max_held} requests (origin_live_max_held)"),
            token: "LL_TOO_MANY_HELD",
        });
    }
    let watches = WATCHER.with(|w| -> Result<Vec<i32>, OriginError> {
        let mut w = w.borrow_mut();
        if w.is_none() {
            *w = Some(start_watcher()?);
        }
        let w = w.as_mut().ok_or(OriginError::Internal("no watcher"))?;
        let mut out = Vec::with_capacity(dirs.len());
        for dir in dirs {
            if let Some(&wd) = w.watches.get(dir) {
                out.push(wd);
                continue;
            }
            let path = CString::new(dir.as_os_str().as_bytes())
                .map_err(|_| OriginError::Internal("a directory name with a NUL"))?;
            // SAFETY: a valid descriptor and a NUL-terminated path.
            let wd = unsafe {
                libc::inotify_add_watch(
                    w.fd,
                    path.as_ptr(),
                    libc::IN_CLOSE_WRITE
                        | libc::IN_MODIFY
                        | libc::IN_MOVED_TO
                        | libc::IN_CREATE
                        | libc::IN_DELETE
                        | libc::IN_DELETE_SELF,
                )
            };
            if wd < 0 {
                return Err(OriginError::Io {
                    path: dir.display().to_string(),
                    source: std::io::Error::last_os_error(),
                });
            }
            w.watches.insert(dir.clone(), wd);
            out.push(wd);
        }
        Ok(out)
    })?;
    let request: *mut ngx_http_request_t = r;
    let held = match super::ctx::get::<Held>(r) {
        Some(held) => held,
        None => {
            let held = super::ctx::own(
                r,
                Held {
                    r: request,
                    watches: Vec::new(),
                    resume: None,
                    until_ms,
                    // SAFETY: an all-zero event is an idle one (nginx zeroes its events so).
                    timer: unsafe { std::mem::zeroed() },
                    listed: false,
                    streamed: None,
                },
            )?;
            // A request nginx terminates (the client went away) leaves the wait at once, not
            // when its pool is freed: a wake-up in between would run a terminated request.
            // SAFETY: an http cleanup of this request; it runs before the pool is freed.
            unsafe {
                let cln = ngx::ffi::ngx_http_cleanup_add(r, 0);
                if cln.is_null() {
                    return Err(OriginError::Internal("out of memory"));
                }
                (*cln).handler = Some(release_on_cleanup);
                (*cln).data = held as *mut c_void;
            }
            held
        }
    };
    // SAFETY: the pool owns the Held until the request ends; nothing else borrows it now.
    let h = unsafe { &mut *held };
    h.release();
    h.r = r;
    h.watches = watches;
    h.resume = Some(resume);
    h.until_ms = until_ms;
    let wait = (until_ms - super::time::now_ms()).clamp(1, i64::from(u32::MAX >> 1));
    // SAFETY: the event lives in the pool with the Held; its handler gets the Held back.
    unsafe {
        h.timer.data = held as *mut c_void;
        h.timer.handler = Some(deadline_reached);
        h.timer.log = (*r.connection).log;
        ngx::ffi::ngx_add_timer(&mut h.timer, wait as ngx::ffi::ngx_msec_t);
    }
    WATCHER.with(|w| {
        if let Some(w) = w.borrow_mut().as_mut() {
            w.held.push(held);
        }
    });
    h.listed = true;
    // A client that goes away ends the request (499) rather than leaving it held.
    r.read_event_handler = Some(ngx::ffi::ngx_http_test_reading);
    r.write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
    // SAFETY: the main request; `resume` finalizes it, which releases this count.
    unsafe { (*r.main).set_count((*r.main).count() + 1) };
    Ok(())
}

/// Takes `held` out of the wait and continues its request.
///
/// # Safety
/// `held` is a Held its request's pool still owns.
unsafe fn wake(held: *mut Held) {
    // SAFETY: per the contract.
    let h = unsafe { &mut *held };
    h.release();
    let (r, resume) = (h.r, h.resume.take());
    // SAFETY: the request is alive while its pool owns the Held (and not terminated: that
    // released the Held, see `hold`).
    unsafe {
        (*r).read_event_handler = Some(ngx::ffi::ngx_http_block_reading);
        let c = (*r).connection;
        if let Some(resume) = resume {
            resume(r);
        }
        ngx::ffi::ngx_http_run_posted_requests(c);
    }
}

/// The request ends (terminated, or freed): out of the wait.
unsafe extern "C" fn release_on_cleanup(data: *mut c_void) {
    // SAFETY: the cleanup's data is the request's Held, alive until its pool is freed (after
    // the http cleanups ran).
    let _ = std::panic::catch_unwind(|| unsafe { (*(data as *mut Held)).release() });
}

unsafe extern "C" fn deadline_reached(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its Held (see `hold`); a released Held has no timer.
    let log = unsafe { (*ev).log };
    super::fence::guard_log(
        log,
        "while a held request's deadline passed",
        (),
        || unsafe { wake((*ev).data as *mut Held) },
    );
}

/// The worker's inotify descriptor, as a connection in nginx's event loop.
fn start_watcher() -> Result<Watcher, OriginError> {
    // SAFETY: plain system call.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(OriginError::Io {
            path: "inotify".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the cycle's log lives as long as the worker; the connection is the worker's
    // for as long as it runs (never freed: the descriptor closes with the process).
    unsafe {
        let log = (*ngx::ffi::ngx_cycle).log;
        let c: *mut ngx_connection_t = ngx::ffi::ngx_get_connection(fd, log);
        if c.is_null() {
            libc::close(fd);
            return Err(OriginError::Internal(
                "no free connection for the inotify watch",
            ));
        }
        let rev = (*c).read;
        (*rev).handler = Some(on_inotify);
        (*rev).log = log;
        (*c).log = log;
        if ngx::ffi::ngx_handle_read_event(rev, 0) != ngx::ffi::NGX_OK as ngx_int_t {
            ngx::ffi::ngx_free_connection(c);
            libc::close(fd);
            return Err(OriginError::Internal(
                "could not watch the inotify descriptor",
            ));
        }
    }
    Ok(Watcher {
        fd,
        watches: HashMap::new(),
        held: Vec::new(),
    })
}

/// Directories changed: every request held on a track whose `records` file was written, or
/// whose directory went away, runs again.
unsafe extern "C" fn on_inotify(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the watcher connection's read event.
    let log = unsafe { (*ev).log };
    super::fence::guard_log(log, "while waking held requests", (), || {
        let Some(fd) = WATCHER.with(|w| w.borrow().as_ref().map(|w| w.fd)) else {
            return;
        };
        let mut changed: Vec<i32> = Vec::new();
        let mut removed: Vec<i32> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: reading into a local buffer of its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
            if n <= 0 {
                // EAGAIN: drained (edge-triggered events need every byte read).
                break;
            }
            let mut at = 0usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while at + header <= n as usize {
                // SAFETY: the kernel writes whole events; this one's header is in range.
                let event = unsafe {
                    std::ptr::read_unaligned(buf.as_ptr().add(at) as *const libc::inotify_event)
                };
                let name_len = event.len as usize;
                let name = &buf[at + header..(at + header + name_len).min(n as usize)];
                let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
                let records = name == b"records";
                // The track removed (a channel deleted; its `records` goes first, and the
                // directory's own removal may wait for a descriptor someone holds): its watch
                // is over, and a directory made again under that name is watched anew.
                let gone = event.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF) != 0
                    || (records && event.mask & libc::IN_DELETE != 0);
                if (records || gone) && !changed.contains(&event.wd) {
                    changed.push(event.wd);
                }
                if gone {
                    removed.push(event.wd);
                }
                at += header + name_len;
            }
        }
        if !removed.is_empty() {
            WATCHER.with(|w| {
                if let Some(w) = w.borrow_mut().as_mut() {
                    w.watches.retain(|_, wd| !removed.contains(wd));
                }
            });
        }
        if changed.is_empty() {
            return;
        }
        let woken: Vec<*mut Held> = WATCHER.with(|w| {
            let w = w.borrow();
            let Some(w) = w.as_ref() else {
                return Vec::new();
            };
            w.held
                .iter()
                .copied()
                // SAFETY: listed Helds are alive (a Held leaves the list when dropped).
                .filter(|h| unsafe { (**h).watches.iter().any(|wd| changed.contains(wd)) })
                .collect()
        });
        for held in woken {
            // A request woken before may have ended another's hold meanwhile: only those still
            // listed run.
            let listed =
                WATCHER.with(|w| w.borrow().as_ref().is_some_and(|w| w.held.contains(&held)));
            if listed {
                // SAFETY: listed, so alive.
                unsafe { wake(held) };
            }
        }
    });
}
