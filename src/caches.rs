//! The worker's caches (the core's [`Caches`]: manifests, indexes, segment tables, generated
//! manifests), sized once from `origin_cache_size`.

use std::cell::{Cell, RefCell};

use origin_core::request::{Caches, DEFAULT_CACHE_BYTES};

thread_local! {
    static CACHES: RefCell<Caches> = RefCell::new(Caches::new(DEFAULT_CACHE_BYTES));
    /// Whether this worker has sized its caches from the configuration yet.
    static SIZED: Cell<bool> = const { Cell::new(false) };
}

/// Sizes this worker's caches from `origin_cache_size`, once (the configuration a worker runs
/// under does not change during its life).
pub fn size(total: usize) {
    if SIZED.with(|s| s.replace(true)) {
        return;
    }
    CACHES.with(|c| {
        let mut caches = c.borrow_mut();
        caches.set_budget(total);
        crate::metrics::publish_caches(&caches);
    });
}

/// Runs `f` with the worker's caches (never re-entered: the engine does no I/O and calls
/// nothing back), then publishes what they gained to the status counters.
pub fn with<R>(f: impl FnOnce(&mut Caches) -> R) -> R {
    CACHES.with(|c| {
        let mut caches = c.borrow_mut();
        let result = f(&mut caches);
        crate::metrics::publish_caches(&caches);
        result
    })
}
