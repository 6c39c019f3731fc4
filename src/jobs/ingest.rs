//! Live ingest: an encoder's POST (or PUT) to `<ch>.isml/Streams(<name>)`, read as it arrives.
//!
//! The body is read unbuffered (`request_body_no_buffering`): each piece nginx receives goes
//! to the core's [`IngestSession`] at once, which checks and assembles fragments and queues the
//! archive operations that store them. Those operations block (appends, `fdatasync`, `flock`),
//! so they run on nginx's thread pool ([`crate::offload`]), and the body is not read further
//! while they do: TCP holds the encoder back, memory stays bounded, and the event loop serves
//! every other request meanwhile. The answer (200, or the status of the first refusal) goes
//! out when the body ended and everything it brought is durable, or when it was refused.
//!
//! nginx reads an unbuffered body only as far as its buffer lets it: the buffer is handed to us
//! and must be consumed (`pos = last`) before nginx reads on, and a read that finds nothing new
//! waits for the next read event. Both happen in [`advance`], in a loop, as nginx's upstream
//! module does it. While work is on the pool no read happens, so the read timer
//! (`client_body_timeout`) is stopped; the next read arms it again.
//!
//! Memory is bounded per worker: what each request's session holds of unfinished fragments is
//! its share of the worker's budget (`origin_ingest_memory`, see
//! [`origin_core::live::budget`]), checked after every piece fed; past it the request is refused
//! (503, or 413 when it alone needs more than the budget) and nothing of its unfinished
//! fragment is stored. A box that does not arrive whole within `origin_ingest_fragment_timeout`
//! of its first byte is refused (408): a timer wakes the request at that deadline, since
//! `client_body_timeout` only bounds the silence between two reads.

use std::path::PathBuf;

use ngx::ffi::{
    ngx_buf_t, ngx_http_finalize_request, ngx_http_read_client_request_body,
    ngx_http_read_unbuffered_request_body, ngx_http_request_t, ngx_int_t, NGX_AGAIN, NGX_DONE,
    NGX_ERROR, NGX_HTTP_REQUEST_TIME_OUT, NGX_HTTP_SPECIAL_RESPONSE, NGX_OK,
};
use std::cell::RefCell;

use origin_core::live::budget::MemoryBudget;
use origin_core::live::ingest::IngestError;
use origin_core::live::limits::IngestPolicy;
use origin_core::live::session::{Applied, IngestLimits, IngestSession, SessionStart};
use origin_core::live::store::ArchiveStore;

use crate::ffi::body::{only_in_file, read_file_buf};
use crate::ffi::offload::Offload;
use crate::ffi::time::now_ms;
use crate::ffi::OriginError;
use crate::respond::send::send_empty;
use crate::respond::status::fail;

/// Bytes one event feeds to the session before the connection lets others be served.
const FEED_BEFORE_YIELD: usize = 64 << 10;

/// What a piece of blocking work of an ingest request did.
enum Done {
    /// The channel was opened (its options, the stream's stored init segment).
    Opened(Result<(ArchiveStore, SessionStart), IngestError>),
    /// Queued operations ran (the store comes back with what they did).
    Ran(ArchiveStore, Result<Applied, IngestError>),
}

/// What the request does once no work is on the pool.
enum Next {
    /// Read on and feed the session.
    Read,
    /// Answer with this status (the body ended, everything in it is durable).
    Answer(usize),
    /// Answer with this error.
    Fail(OriginError),
    /// End the request with this code (the client closed or broke the body).
    Close(ngx_int_t),
}

thread_local! {
    /// This worker's budget for unfinished fragments (its event loop is its one thread).
    static BUDGET: RefCell<MemoryBudget> =
        const { RefCell::new(MemoryBudget::new(origin_core::live::budget::DEFAULT_INGEST_MEMORY)) };
}

/// A request's share of the worker's budget, given back when the request is freed.
#[derive(Default)]
struct BudgetShare(u64);

impl BudgetShare {
    /// The session now holds `now` bytes; refused when it grew past the budget while inside
    /// a box.
    fn update(&mut self, limit: u64, now: u64, unfinished: bool) -> Result<(), IngestError> {
        BUDGET.with(|b| {
            let mut b = b.borrow_mut();
            b.set_limit(limit);
            b.update(&mut self.0, now, unfinished)
        })
    }
}

impl BudgetShare {
    /// Gives the share back to the worker's budget (again: nothing).
    fn give_back(&mut self) {
        BUDGET.with(|b| b.borrow_mut().release(&mut self.0));
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// What a request being ingested keeps between events.
struct Ingest {
    isml: PathBuf,
    stream: String,
    encoder: String,
    /// Set once the channel is open.
    session: Option<IngestSession>,
    /// The archive, when no work holds it.
    store: Option<ArchiveStore>,
    offload: Offload<Done>,
    next: Next,
    /// Set once the request was finalized: what follows is not read.
    done: bool,
    limits: IngestLimits,
    /// The worker's budget for unfinished fragments (`origin_ingest_memory`).
    budget: u64,
    share: BudgetShare,
    /// Wakes the request when the box in progress is due (see `origin_ingest_fragment_timeout`).
    deadline: ngx::ffi::ngx_event_t,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.deadline.timer_set() != 0 {
            // SAFETY: the timer was added on this event, which has not moved (the Ingest lives
            // in the request's pool).
            unsafe { ngx::ffi::ngx_del_timer(&mut self.deadline) };
        }
    }
}

/// Starts ingesting the body of `r` into the channel whose server manifest is `isml`.
pub fn serve(
    r: &mut ngx_http_request_t,
    isml: &str,
    stream: &str,
    policy: IngestPolicy,
) -> Result<ngx_int_t, OriginError> {
    // SAFETY: the connection outlives its request; addr_text is its peer's address.
    let address = unsafe { crate::ffi::strings::bytes(&(*r.connection).addr_text) };
    let settings = crate::settings::conf::ingest_settings(r);
    let ingest = crate::ffi::ctx::own(
        r,
        Ingest {
            isml: PathBuf::from(isml),
            stream: stream.to_string(),
            encoder: String::from_utf8_lossy(address).into_owned(),
            session: None,
            store: None,
            offload: Offload::default(),
            next: Next::Read,
            done: false,
            limits: settings.limits(),
            budget: settings.memory_budget(),
            share: BudgetShare::default(),
            // SAFETY: an all-zero event is an idle one (nginx zeroes its events the same way).
            deadline: unsafe { std::mem::zeroed() },
        },
    )?;
    r.set_request_body_no_buffering(1);
    // SAFETY: r is the main request being handled; nginx calls `body_started` once it has
    // read what is there (the whole body, or its first part). Nothing is fed before the
    // channel is open.
    let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_started)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return Ok(rc);
    }
    // SAFETY: set above, freed with the pool.
    let state = unsafe { &mut *ingest };
    if !state.done {
        let (isml, stream) = (state.isml.clone(), state.stream.clone());
        if let Err(e) = state.offload.post(
            r,
            crate::settings::conf::thread_pool(r)?,
            move || Done::Opened(ArchiveStore::open_with(&isml, &stream, &policy)),
            work_done,
        ) {
            state.done = true;
            // SAFETY: releases the count ngx_http_read_client_request_body took.
            unsafe { ngx_http_finalize_request(r, fail(r, &e)) };
        }
    }
    Ok(NGX_DONE as ngx_int_t)
}

/// The request's ingest state (null when it has none).
fn ctx(r: &ngx_http_request_t) -> *mut Ingest {
    crate::ffi::ctx::get::<Ingest>(r).unwrap_or(std::ptr::null_mut())
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

/// The request's write event handler while work runs on the pool: the work's completion calls
/// it, and so does the connection's write event, which is ignored while the work runs. Once
/// the work is done its outcome is taken and the request goes on.
unsafe extern "C" fn work_done(r: *mut ngx_http_request_t) {
    let done = crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls the write event handler with the valid request.
        let r = unsafe { &mut *r };
        let ingest = ctx(r);
        if ingest.is_null() {
            return NGX_OK as ngx_int_t;
        }
        // SAFETY: set by `serve`, freed with the pool, used by one event at a time.
        let ingest = unsafe { &mut *ingest };
        let Some(outcome) = ingest.offload.take() else {
            // A write event of the connection: the work still runs.
            return NGX_AGAIN as ngx_int_t;
        };
        r.write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
        match outcome {
            Ok(Done::Opened(Ok((store, start)))) => {
                let mut session = IngestSession::with_limits(start, &ingest.stream, ingest.limits);
                session.set_encoder(&ingest.encoder);
                ingest.session = Some(session);
                ingest.store = Some(store);
            }
            Ok(Done::Opened(Err(e))) => ingest.fail(e.into()),
            Ok(Done::Ran(store, result)) => {
                ingest.store = Some(store);
                match result {
                    Ok(applied) => {
                        if let Some(session) = &mut ingest.session {
                            session.applied(applied);
                        }
                    }
                    Err(e) => ingest.fail(e.into()),
                }
                // What the operations carried is written: the share shrinks (never refused).
                if let Some(session) = &ingest.session {
                    let _ = ingest.share.update(ingest.budget, session.memory(), false);
                }
            }
            Err(e) => ingest.fail(e),
        }
        NGX_OK as ngx_int_t
    });
    if done != NGX_AGAIN as ngx_int_t {
        on_event(r);
    }
}

impl Ingest {
    /// The body ended: the session queues what waits; the request then goes on with `then`,
    /// or with the session's refusal (a body that ended inside a box).
    fn finish(&mut self, then: Next) -> Next {
        let Some(session) = self.session.as_mut() else {
            return then;
        };
        match session.finish() {
            Ok(()) => then,
            Err(e) => {
                session.count_error();
                Next::Fail(e.into())
            }
        }
    }

    /// The request ends with `e`, unless it ends already (a refusal stands over what follows
    /// it; a client gone is gone).
    fn fail(&mut self, e: OriginError) {
        if matches!(self.next, Next::Read | Next::Answer(_)) {
            self.next = Next::Fail(e);
        }
    }

    /// Brings the request's share of the worker's budget up to date; an error when it grew
    /// past the budget inside a box.
    fn account(&mut self) -> Result<(), IngestError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        self.share
            .update(self.budget, session.memory(), session.inside_box())
    }

    /// Arms the timer that wakes the request when the box in progress is due (or stops it
    /// when none is).
    fn arm_deadline(&mut self, r: &mut ngx_http_request_t) {
        let due = self.session.as_ref().and_then(|s| s.deadline_ms());
        let ev = &mut self.deadline;
        match due {
            Some(due) => {
                // A millisecond past it: the check then finds it passed.
                let wait =
                    (due - now_ms()).clamp(0, i64::from(u32::MAX)) as ngx::ffi::ngx_msec_t + 1;
                ev.data = r as *mut ngx_http_request_t as *mut std::ffi::c_void;
                // SAFETY: the connection's log lives as long as the request.
                ev.log = unsafe { (*r.connection).log };
                ev.handler = Some(deadline_passed);
                // SAFETY: the event lives in the request's pool; `Drop` deletes its timer
                // before the pool frees it.
                unsafe { ngx::ffi::ngx_add_timer(ev, wait) };
            }
            None if ev.timer_set() != 0 => {
                // SAFETY: as above.
                unsafe { ngx::ffi::ngx_del_timer(ev) };
            }
            None => {}
        }
    }

    /// Runs the operations the session queued on the pool; false when there were none.
    fn run_queued(&mut self, r: &mut ngx_http_request_t) -> Result<bool, OriginError> {
        let Some(session) = &mut self.session else {
            return Ok(false);
        };
        if !session.has_ops() {
            return Ok(false);
        }
        let ops = session.take_ops();
        let pool = crate::settings::conf::thread_pool(r)?;
        let mut store = self
            .store
            .take()
            .ok_or(OriginError::Internal("ingest without its archive"))?;
        stop_read_timer(r);
        self.offload.post(
            r,
            pool,
            move || {
                let result = store.run(ops);
                Done::Ran(store, result)
            },
            work_done,
        )?;
        Ok(true)
    }
}

/// The box in progress is due: the request goes on (and finds it refused, unless it came
/// whole meanwhile).
unsafe extern "C" fn deadline_passed(ev: *mut ngx::ffi::ngx_event_t) {
    // SAFETY: the event's data is the request whose Ingest holds the event; its timer is
    // deleted before the request is freed.
    unsafe {
        let r = (*ev).data as *mut ngx_http_request_t;
        let c = (*r).connection;
        on_event(r);
        ngx::ffi::ngx_http_run_posted_requests(c);
    }
}

/// No read is waited for while work runs on the pool: `client_body_timeout` counts the
/// client's silence, not the archive's.
fn stop_read_timer(r: &mut ngx_http_request_t) {
    // SAFETY: the connection and its read event are valid while the request is.
    unsafe {
        let rev = (*r.connection).read;
        if (*rev).timer_set() != 0 {
            ngx::ffi::ngx_del_timer(rev);
        }
    }
}

fn on_event(r: *mut ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls its handlers with a valid request.
        let r = unsafe { &mut *r };
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        let rc = crate::ffi::log::with_log(log, || {
            let ingest = ctx(r);
            if ingest.is_null() {
                return Some(fail(r, &OriginError::Internal("ingest without its state")));
            }
            // SAFETY: set by `serve`, freed with the pool, used by one event at a time.
            let ingest = unsafe { &mut *ingest };
            if ingest.done {
                return None;
            }
            match advance(r, ingest) {
                Ok(rc) => rc,
                Err(e) => {
                    // Nothing more can run: the request ends here.
                    Some(fail(r, &e))
                }
            }
        });
        if let Some(rc) = rc {
            let ingest = ctx(r);
            if !ingest.is_null() {
                // SAFETY: set by `serve`, freed with the pool, used by one event at a time.
                let ingest = unsafe { &mut *ingest };
                ingest.done = true;
                // Answered: what the session held goes back to the worker at once, not when
                // nginx frees the request (after it has discarded the rest of a refused body,
                // which may take the client's whole upload).
                ingest.session = None;
                ingest.share.give_back();
            }
            // SAFETY: releases the count ngx_http_read_client_request_body took.
            unsafe { ngx_http_finalize_request(r, rc) };
        }
        NGX_OK as ngx_int_t
    });
}

/// Feeds what nginx has read to the session, runs what it queues on the pool, and reads on,
/// until the request waits (`None`: for the pool, or for the next read event) or ends
/// (`Some(rc)`).
fn advance(
    r: &mut ngx_http_request_t,
    ingest: &mut Ingest,
) -> Result<Option<ngx_int_t>, OriginError> {
    let mut fed = 0;
    loop {
        if ingest.offload.in_flight() {
            // Work runs on the pool: its end brings the request back.
            return Ok(None);
        }
        match std::mem::replace(&mut ingest.next, Next::Read) {
            Next::Read => {}
            Next::Answer(status) => return send_empty(r, status).map(Some),
            Next::Fail(e) => {
                let rc = fail(r, &e);
                if rc == NGX_HTTP_REQUEST_TIME_OUT as ngx_int_t {
                    // nginx closes a request finalized with 408 without a word; an encoder
                    // whose fragment came too slowly is told why (and the connection closes).
                    r.set_keepalive(0);
                    return send_empty(r, 408).map(Some);
                }
                return Ok(Some(rc));
            }
            Next::Close(rc) => return Ok(Some(rc)),
        }
        // Not open yet: the end of the opening brings the request back.
        let Some(session) = ingest.session.as_mut() else {
            return Ok(None);
        };
        let now = now_ms();
        // A box past its deadline is refused before more of it is taken; what was fed is
        // counted against the worker's budget at once.
        let fed_now = match session.check_deadline(now) {
            Ok(()) => feed(r, session, now),
            Err(e) => Err(e.into()),
        }
        .and_then(|bytes| ingest.account().map(|()| bytes).map_err(OriginError::from));
        let Some(session) = ingest.session.as_mut() else {
            return Ok(None);
        };
        match fed_now {
            Ok(bytes) => fed += bytes,
            Err(e) => {
                // What came before the refusal is stored, then the refusal answered.
                session.count_error();
                ingest.next = Next::Fail(e);
                if ingest.run_queued(r)? {
                    return Ok(None);
                }
                continue;
            }
        }
        if ingest.run_queued(r)? {
            return Ok(None);
        }
        if r.reading_body() == 0 {
            ingest.next = ingest.finish(Next::Answer(200));
            ingest.run_queued(r)?;
            continue;
        }
        if fed >= FEED_BEFORE_YIELD {
            // An encoder sending fast (a burst of a large fragment) does not hold the worker:
            // other connections are served before this one reads on.
            yield_to_others(r);
            return Ok(None);
        }
        // SAFETY: r is the main request reading its body unbuffered.
        let rc = unsafe { ngx_http_read_unbuffered_request_body(r) };
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t || rc == NGX_ERROR as ngx_int_t {
            // The client closed the connection or broke the framing; what was complete is kept.
            ingest.next = ingest.finish(Next::Close(rc));
            if let Next::Fail(_) = ingest.next {
                ingest.next = Next::Close(rc);
            }
            ingest.run_queued(r)?;
            continue;
        }
        // SAFETY: request_body is set while the body is read.
        let more = unsafe { !r.request_body.is_null() && !(*r.request_body).bufs.is_null() };
        if rc == NGX_AGAIN as ngx_int_t && !more {
            // Nothing new until the next read event (or the box's deadline).
            ingest.arm_deadline(r);
            return Ok(None);
        }
    }
}

/// Hands every buffer nginx has read to the session and marks it consumed.
/// Feeds what nginx read to the session; returns how many bytes that was.
fn feed(
    r: &mut ngx_http_request_t,
    session: &mut IngestSession,
    now: i64,
) -> Result<usize, OriginError> {
    let rb = r.request_body;
    let mut fed = 0;
    if rb.is_null() {
        return Ok(fed);
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
                    fed += ((*b).file_last - (*b).file_pos).max(0) as usize;
                    (*b).file_pos = (*b).file_last;
                } else if !(*b).pos.is_null() && (*b).last > (*b).pos {
                    let len = (*b).last.offset_from((*b).pos) as usize;
                    session.push(std::slice::from_raw_parts((*b).pos, len), now)?;
                    fed += len;
                    (*b).pos = (*b).last;
                }
            }
            cl = (*cl).next;
        }
        (*rb).bufs = std::ptr::null_mut();
    }
    Ok(fed)
}

/// Lets the event loop serve other connections before this one reads on: its read event is
/// posted for the loop's next turn, which comes after the events the kernel has ready by then.
fn yield_to_others(r: &mut ngx_http_request_t) {
    // SAFETY: the connection's read event is valid while the request is; nginx's queue of
    // events posted for its next turn is a global of the worker's (single) event loop.
    unsafe {
        let rev = (*r.connection).read;
        ngx::ffi::ngx_post_event(
            rev,
            std::ptr::addr_of_mut!(ngx::ffi::ngx_posted_next_events),
        );
    }
}
