//! The worker's caches: the core's [`Caches`] (manifests, indexes, segment tables, generated
//! manifests), sized once from `origin_cache_size`, and the reader of live channels' archives
//! (keeping what did not change between requests).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::Arc;

use origin_core::index::store::IndexStore;
use origin_core::live::channel::{ChannelReader, ChannelSnapshot};
use origin_core::request::{Caches, DEFAULT_CACHE_BYTES};

use crate::ffi::OriginError;

thread_local! {
    static CHANNELS: RefCell<ChannelReader> = RefCell::new(ChannelReader::new());
    static CACHES: RefCell<Caches> = RefCell::new(Caches::new(DEFAULT_CACHE_BYTES));
    /// Whether this worker has sized its caches from the configuration yet.
    static SIZED: Cell<bool> = const { Cell::new(false) };
}

/// Sizes this worker's caches from `origin_cache_size` and puts the `origin_index_store`
/// below them, once (the configuration a worker runs under does not change during its life).
pub fn size(total: usize, store: Option<&(String, u64)>) {
    if SIZED.with(|s| s.replace(true)) {
        return;
    }
    CACHES.with(|c| {
        let mut caches = c.borrow_mut();
        caches.set_budget(total);
        caches.set_index_store(store.map(|(dir, max)| {
            #[allow(unused_mut)]
            let mut store = IndexStore::new(dir, *max);
            #[cfg(feature = "test-hooks")]
            if let Some(ms) = std::env::var("ORIGIN_TEST_INDEX_STORE_STALL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                store.stall_writes(std::time::Duration::from_millis(ms));
            }
            store
        }));
        crate::settings::metrics::publish_caches(&caches);
    });
}

/// Sets this worker's caches up from the configuration `r` runs under (once, see [`size`]).
pub fn size_for(r: &ngx::ffi::ngx_http_request_t) {
    let main = super::conf::main_conf(r);
    size(
        main.and_then(|c| c.cache_size)
            .unwrap_or(DEFAULT_CACHE_BYTES),
        main.and_then(|c| c.index_store.as_ref()),
    );
}

/// Runs `f` with the worker's caches (never re-entered: the engine does no I/O and calls
/// nothing back), then publishes what they gained to the status counters.
pub fn with<R>(f: impl FnOnce(&mut Caches) -> R) -> R {
    CACHES.with(|c| {
        let mut caches = c.borrow_mut();
        let result = f(&mut caches);
        crate::settings::metrics::publish_caches(&caches);
        result
    })
}

/// The channel whose server manifest is `isml`, as its archive is at `now_ms` (the time now,
/// as the caller read it).
pub fn channel(isml: &str, now_ms: i64) -> Result<Arc<ChannelSnapshot>, OriginError> {
    CHANNELS.with(|reader| {
        let snapshot = reader
            .borrow_mut()
            .snapshot(Path::new(isml), now_ms)
            .map_err(|source| OriginError::Io {
                path: isml.to_string(),
                source,
            })?;
        Ok(Arc::new(snapshot))
    })
}

/// Worker exit: index store entries still being written are finished, not cut short; then the
/// status slot is freed.
pub unsafe extern "C" fn exit_process(cycle: *mut ngx::ffi::ngx_cycle_t) {
    // SAFETY: nginx passes its current cycle.
    let log = unsafe { (*cycle).log };
    crate::ffi::fence::guard_log(log, "while finishing index store writes", (), || {
        CACHES.with(|c| {
            c.borrow_mut()
                .flush_index_store(std::time::Duration::from_secs(10))
        });
    });
    // SAFETY: as nginx called us.
    unsafe { crate::settings::metrics::exit_process(cycle) }
}
