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
    CACHES.with(|c| c.borrow_mut().set_budget(total));
}

/// Runs `f` with the worker's caches (never re-entered: the engine does no I/O and calls
/// nothing back).
pub fn with<R>(f: impl FnOnce(&mut Caches) -> R) -> R {
    CACHES.with(|c| f(&mut c.borrow_mut()))
}
