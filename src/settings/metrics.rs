//! The counters behind `origin_status`, in one shared-memory zone every worker adds to, so any
//! worker answers with the totals of all of them.
//!
//! The zone (`ngx_origin_status`) is added whenever the module is loaded into an `http` block,
//! whether or not a location has `origin_status`: counting costs a few atomic additions per
//! request, and an endpoint added later by a reload then shows what happened before it. Its
//! layout is fixed ([`Shared`]): atomics only, nothing sized from input. A reload keeps the
//! zone (same name, size and tag) and with it the counts.
//!
//! What counts where:
//! - a response: the content handler marks the main request with a pool cleanup ([`track`]),
//!   which runs after the request was logged and adds its final status and the bytes sent for
//!   it (`$bytes_sent`: status line, headers, body) under the format it was routed to;
//! - an error: [`count_error`], from `status::fail`, the one place errors become statuses;
//! - the caches and index builds: each worker adds what its caches gained since it last
//!   published ([`publish_caches`]) and keeps what they hold now (entries, bytes) in its own
//!   slot, which the endpoint sums over the slots of live workers.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};

use ngx::ffi::{
    ngx_conf_t, ngx_cycle_t, ngx_http_request_t, ngx_int_t, ngx_pagesize, ngx_pid,
    ngx_pool_cleanup_add, ngx_process, ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_calloc,
    ngx_slab_pool_t, ngx_str_t, ngx_worker, NGX_ERROR, NGX_OK, NGX_PROCESS_SINGLE,
    NGX_PROCESS_WORKER,
};
use origin_core::cache::CacheStats;
use origin_core::error::ERROR_TOKENS;
use origin_core::metrics::{
    status_slot, token_index, CacheKind, Format, IndexBuilds, Snapshot, STATUS_SLOTS,
};
use origin_core::request::Caches;

/// The zone's name, as nginx's error messages about it show it.
const ZONE_NAME: &str = "ngx_origin_status";
/// Worker slots: as many workers as nginx runs at most (`NGX_MAX_PROCESSES`).
const WORKER_SLOTS: usize = 1024;
/// Room for the error tokens (there are fewer; checked at compile time).
const TOKEN_SLOTS: usize = 64;
const _: () = assert!(ERROR_TOKENS.len() <= TOKEN_SLOTS);

#[repr(C)]
struct ServedCounter {
    requests: AtomicU64,
    bytes: AtomicU64,
}

#[repr(C)]
struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// What one worker's caches hold now. `pid` 0: the slot is free.
#[repr(C)]
struct WorkerSlot {
    pid: AtomicU64,
    entries: [AtomicU64; CacheKind::COUNT],
    bytes: [AtomicU64; CacheKind::COUNT],
}

/// The zone's contents. All zeros is the empty state, which is what the slab allocator's
/// `calloc` gives.
#[repr(C)]
struct Shared {
    served: [[ServedCounter; STATUS_SLOTS]; Format::COUNT],
    errors: [AtomicU64; TOKEN_SLOTS],
    caches: [CacheCounters; CacheKind::COUNT],
    index_builds: AtomicU64,
    index_build_nanos: AtomicU64,
    index_store: [AtomicU64; 6],
    workers: [WorkerSlot; WORKER_SLOTS],
}

/// This worker's view of the zone; null in the master and before the worker started.
static SHARED: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());
/// This worker's slot, or `usize::MAX` without one.
static SLOT: AtomicUsize = AtomicUsize::new(usize::MAX);

fn shared() -> Option<&'static Shared> {
    // SAFETY: set once per worker from the cycle's zone, which stays mapped for the worker's
    // whole life; every field is an atomic, so shared references across processes are sound.
    unsafe { SHARED.load(Relaxed).as_ref() }
}

fn tag() -> *mut c_void {
    ptr::addr_of!(crate::ngx_http_origin_module) as *mut c_void
}

/// The zone's size: the counters' pages and 8 more for the slab allocator's header and page
/// table (which also meets nginx's minimum of 8 pages). The same on every reload on one
/// machine, so a reload reuses the zone.
fn zone_size() -> usize {
    // SAFETY: ngx_pagesize is set by nginx's OS initialisation, before any configuration.
    let page = unsafe { ngx_pagesize }.max(4096);
    std::mem::size_of::<Shared>().div_ceil(page) * page + 8 * page
}

/// Adds the zone to the configuration being read (postconfiguration of the `http` block).
///
/// # Safety
/// `cf` is the configuration being read.
pub unsafe fn add_zone(cf: *mut ngx_conf_t) -> Result<(), ()> {
    let mut name = ngx_str_t {
        len: ZONE_NAME.len(),
        data: ZONE_NAME.as_ptr() as *mut u8,
    };
    // SAFETY: per this function's contract; the name is static, as nginx keeps a pointer to it.
    let zone = unsafe { ngx_shared_memory_add(cf, &mut name, zone_size(), tag()) };
    if zone.is_null() {
        return Err(());
    }
    // SAFETY: nginx returned a zone of this configuration.
    unsafe { (*zone).init = Some(init_zone) };
    Ok(())
}

/// Initialises the zone in the master: a reload passes the previous zone's data, which carries
/// on; a new zone gets zeroed counters from its slab pool.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes the zone being initialised, its memory mapped at shm.addr.
    let zone = unsafe { &mut *zone };
    let log = zone.shm.log;
    crate::ffi::fence::guard_log(
        log,
        "while initialising the status zone",
        NGX_ERROR as ngx_int_t,
        || {
            if !data.is_null() {
                zone.data = data;
                return NGX_OK as ngx_int_t;
            }
            let pool = zone.shm.addr as *mut ngx_slab_pool_t;
            // SAFETY: nginx made a slab pool at the start of every zone it maps.
            let counters = unsafe { ngx_slab_calloc(pool, std::mem::size_of::<Shared>()) };
            if counters.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            zone.data = counters;
            NGX_OK as ngx_int_t
        },
    )
}

/// The zone of `cycle`, found by name and tag.
///
/// # Safety
/// `cycle` is nginx's current cycle.
unsafe fn find_zone(cycle: *mut ngx_cycle_t) -> Option<*mut Shared> {
    // SAFETY: per this function's contract, shared_memory is the cycle's list of zones.
    unsafe {
        let mut part = ptr::addr_of_mut!((*cycle).shared_memory.part);
        while !part.is_null() {
            let zones =
                std::slice::from_raw_parts((*part).elts as *const ngx_shm_zone_t, (*part).nelts);
            for z in zones {
                if z.tag == tag() && z.shm.name.as_bytes() == ZONE_NAME.as_bytes() {
                    return (!z.data.is_null()).then_some(z.data as *mut Shared);
                }
            }
            part = (*part).next;
        }
    }
    None
}

fn my_pid() -> u64 {
    // SAFETY: ngx_pid is set by nginx at process start and in each forked worker.
    u64::from(unsafe { ngx_pid } as u32)
}

/// Worker start: find the zone and claim the slot of this worker number, clearing what a
/// worker before it (crashed, or of the previous configuration) left there.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes its current cycle.
    let log = unsafe { (*cycle).log };
    crate::ffi::fence::guard_log(
        log,
        "while starting the worker",
        NGX_OK as ngx_int_t,
        || {
            // SAFETY: globals nginx sets before calling init_process.
            let (process, worker) = unsafe { (ngx_process as u32, ngx_worker) };
            // Cache managers and loaders are "helper" processes that keep worker number 0.
            if process != NGX_PROCESS_WORKER && process != NGX_PROCESS_SINGLE {
                return NGX_OK as ngx_int_t;
            }
            // SAFETY: per nginx's contract for init_process.
            let Some(zone) = (unsafe { find_zone(cycle) }) else {
                return NGX_OK as ngx_int_t;
            };
            SHARED.store(zone, Relaxed);
            if let Some(slot) = shared().and_then(|s| s.workers.get(worker)) {
                for gauge in slot.entries.iter().chain(&slot.bytes) {
                    gauge.store(0, Relaxed);
                }
                slot.pid.store(my_pid(), Relaxed);
                SLOT.store(worker, Relaxed);
            }
            NGX_OK as ngx_int_t
        },
    )
}

/// Worker exit: free the slot, unless a newer worker has claimed it already.
pub unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes its current cycle.
    let log = unsafe { (*cycle).log };
    crate::ffi::fence::guard_log(log, "while stopping the worker", (), || {
        if let Some(slot) = my_slot() {
            for gauge in slot.entries.iter().chain(&slot.bytes) {
                gauge.store(0, Relaxed);
            }
            let _ = slot.pid.compare_exchange(my_pid(), 0, Relaxed, Relaxed);
        }
        SLOT.store(usize::MAX, Relaxed);
    })
}

/// This worker's slot while it still owns it.
fn my_slot() -> Option<&'static WorkerSlot> {
    let slot = shared()?.workers.get(SLOT.load(Relaxed))?;
    (slot.pid.load(Relaxed) == my_pid()).then_some(slot)
}

/// What a tracked request was routed to, kept in its pool cleanup.
#[repr(C)]
struct Tracked {
    r: *mut ngx_http_request_t,
    format: usize,
}

/// Marks `r` as a response of the module's content handler, of `format`. Called again once
/// the request is routed, it updates the format; a main request is counted once, however many
/// of our locations it passes through (an `error_page` redirect, say). Subrequests are part
/// of their main request's response and are not counted on their own.
pub fn track(r: &mut ngx_http_request_t, format: Format) {
    if shared().is_none() || !ptr::eq(r, r.main) || r.pool.is_null() {
        return;
    }
    // SAFETY: the request's pool and its cleanup list are valid while it is being handled;
    // cleanups whose handler is `count_response` carry a `Tracked`.
    unsafe {
        let mut c = (*r.pool).cleanup;
        while !c.is_null() {
            if (*c)
                .handler
                .is_some_and(|h| std::ptr::fn_addr_eq(h, count_response as CleanupFn))
            {
                (*((*c).data as *mut Tracked)).format = format.index();
                return;
            }
            c = (*c).next;
        }
        let c = ngx_pool_cleanup_add(r.pool, std::mem::size_of::<Tracked>());
        if c.is_null() {
            return;
        }
        ((*c).data as *mut Tracked).write(Tracked {
            r,
            format: format.index(),
        });
        (*c).handler = Some(count_response);
    }
}

type CleanupFn = unsafe extern "C" fn(*mut c_void);

/// The pool cleanup of a tracked request: nginx runs it when the request is freed, after the
/// log phase, with the final status and byte count still in the request.
unsafe extern "C" fn count_response(data: *mut c_void) {
    // SAFETY: `data` is the Tracked that `track` wrote. The request lives in the pool being
    // destroyed, whose memory is released only after its cleanups ran; its connection outlives
    // the request.
    let (r, format) = unsafe {
        let t = &*(data as *const Tracked);
        (&*t.r, Format::from_index(t.format))
    };
    // SAFETY: as above.
    let log = unsafe { (*r.connection).log };
    crate::ffi::fence::guard_log(log, "while counting a response", (), || {
        let Some(shared) = shared() else { return };
        // The status nginx's access log shows.
        let status = if r.err_status != 0 {
            r.err_status
        } else {
            r.headers_out.status
        };
        // SAFETY: as above.
        let sent = unsafe { (*r.connection).sent };
        let counter = &shared.served[format.index()][status_slot(status as u64)];
        counter.requests.fetch_add(1, Relaxed);
        counter
            .bytes
            .fetch_add(u64::try_from(sent).unwrap_or(0), Relaxed);
    })
}

/// Counts an error answer with `token`.
pub fn count_error(token: &str) {
    if let (Some(shared), Some(i)) = (shared(), token_index(token)) {
        shared.errors[i].fetch_add(1, Relaxed);
    }
}

thread_local! {
    /// What this worker's caches had gained when it last published.
    static PUBLISHED: Cell<([CacheStats; CacheKind::COUNT], IndexBuilds, [u64; 6])> =
        Cell::new(Default::default());
}

/// Publishes this worker's caches: adds what their counters gained since the last time and
/// stores what they hold now in the worker's slot.
pub fn publish_caches(caches: &Caches) {
    let Some(shared) = shared() else { return };
    let now = (
        caches.stats(),
        caches.index_builds(),
        caches.index_store_stats().unwrap_or_default().values(),
    );
    let before = PUBLISHED.with(|p| p.replace(now));
    let slot = my_slot();
    for (i, (stats, earlier)) in now.0.iter().zip(&before.0).enumerate() {
        let gained = stats.gained_since(earlier);
        let counters = &shared.caches[i];
        for (counter, n) in [
            (&counters.hits, gained.hits),
            (&counters.misses, gained.misses),
            (&counters.evictions, gained.evictions),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        if let Some(slot) = slot {
            slot.entries[i].store(stats.entries, Relaxed);
            slot.bytes[i].store(stats.bytes, Relaxed);
        }
    }
    let builds = now.1.gained_since(&before.1);
    if builds.count > 0 || builds.nanos > 0 {
        shared.index_builds.fetch_add(builds.count, Relaxed);
        shared.index_build_nanos.fetch_add(builds.nanos, Relaxed);
    }
    for ((counter, now), earlier) in shared.index_store.iter().zip(now.2).zip(before.2) {
        if now > earlier {
            counter.fetch_add(now - earlier, Relaxed);
        }
    }
}

/// A process that may still hold a slot: alive, or not ours to signal (another user's).
fn alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let signalled = unsafe { libc::kill(pid, 0) } == 0;
    signalled || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The counters summed over every worker; `None` before the worker found the zone.
pub fn snapshot() -> Option<Snapshot> {
    let shared = shared()?;
    let mut s = Snapshot::default();
    for format in Format::ALL {
        for (status, counter) in shared.served[format.index()].iter().enumerate() {
            let served = s.served_mut(format, status);
            served.requests = counter.requests.load(Relaxed);
            served.bytes = counter.bytes.load(Relaxed);
        }
    }
    for (token, counter) in ERROR_TOKENS.iter().zip(&shared.errors) {
        if let Some(n) = s.errors_mut(token) {
            *n = counter.load(Relaxed);
        }
    }
    for (stats, counters) in s.caches.iter_mut().zip(&shared.caches) {
        stats.hits = counters.hits.load(Relaxed);
        stats.misses = counters.misses.load(Relaxed);
        stats.evictions = counters.evictions.load(Relaxed);
    }
    // A worker that died without exiting (a crash nginx did not replace) left its slot: its
    // caches are gone, so are their contents.
    for slot in &shared.workers {
        let pid = slot.pid.load(Relaxed);
        if pid == 0 || !alive(pid) {
            continue;
        }
        s.workers += 1;
        for (i, stats) in s.caches.iter_mut().enumerate() {
            stats.entries += slot.entries[i].load(Relaxed);
            stats.bytes += slot.bytes[i].load(Relaxed);
        }
    }
    s.index_builds = IndexBuilds {
        count: shared.index_builds.load(Relaxed),
        nanos: shared.index_build_nanos.load(Relaxed),
    };
    s.index_store = origin_core::index::store::StoreStats::from_values(
        shared.index_store.each_ref().map(|c| c.load(Relaxed)),
    );
    Some(s)
}
