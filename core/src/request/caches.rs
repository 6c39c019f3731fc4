//! What a worker keeps between requests: parsed server manifests and media indexes (keyed by
//! the identity of the file version they came from), segment tables, and generated manifests.
//! The glue owns one per worker; the engine decides what goes in and under which key.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::cache::{CacheStats, LruCache, Weighted};
use crate::index::store::{IndexStore, StoreStats};
use crate::index::{IndexError, MediaIndex};
use crate::ism::ServerManifest;
use crate::metrics::{CacheKind, IndexBuilds};
use crate::presentation::SegmentCache;
use crate::source::SourceIdentity;

/// Bytes of parsed data a worker keeps without `origin_cache_size`.
pub const DEFAULT_CACHE_BYTES: usize = 104 << 20;
/// How the budget is shared, in 104ths: indexes, generated manifests, segment tables, server
/// manifests.
const SHARES: [usize; 4] = [64, 16, 16, 8];

/// A generated manifest or playlist, with what its response says about it.
pub struct Generated {
    pub text: String,
    pub content_type: &'static str,
    pub etag: String,
    pub modified: i64,
}

impl Weighted for Generated {
    fn weight(&self) -> usize {
        self.text.len() + 256
    }
}

impl Weighted for ServerManifest {
    fn weight(&self) -> usize {
        self.tracks.len() * 512 + self.metas.len() * 64 + 256
    }
}

/// One worker's caches.
pub struct Caches {
    pub(super) indexes: LruCache<SourceIdentity, MediaIndex>,
    pub(super) generated: LruCache<String, Generated>,
    pub(super) segments: Rc<SegmentCache>,
    pub(super) manifests: LruCache<SourceIdentity, ServerManifest>,
    index_builds: IndexBuilds,
    /// The index store below the index cache (`origin_index_store`), when configured.
    store: Option<IndexStore>,
}

/// Share `which` of a `total` budget.
const fn share(total: usize, which: usize) -> usize {
    total / 104 * SHARES[which]
}

impl Caches {
    /// Caches holding at most about `total` bytes together.
    pub fn new(total: usize) -> Caches {
        Caches {
            indexes: LruCache::new(share(total, 0)),
            generated: LruCache::new(share(total, 1)),
            segments: Rc::new(SegmentCache::new(share(total, 2))),
            manifests: LruCache::new(share(total, 3)),
            index_builds: IndexBuilds::default(),
            store: None,
        }
    }

    /// Changes the total budget, evicting what no longer fits.
    pub fn set_budget(&mut self, total: usize) {
        self.indexes.set_budget(share(total, 0));
        self.generated.set_budget(share(total, 1));
        self.segments.set_budget(share(total, 2));
        self.manifests.set_budget(share(total, 3));
    }

    /// Each cache's state and counters, in [`CacheKind::ALL`] order.
    pub fn stats(&self) -> [CacheStats; CacheKind::COUNT] {
        CacheKind::ALL.map(|kind| match kind {
            CacheKind::MediaIndexes => self.indexes.stats(),
            CacheKind::ServerManifests => self.manifests.stats(),
            CacheKind::GeneratedManifests => self.generated.stats(),
            CacheKind::SegmentTables => self.segments.stats(),
        })
    }

    /// Puts `store` below the index cache: indexes missing from the cache are looked up there
    /// before they are built, and those built are kept there.
    pub fn set_index_store(&mut self, store: Option<IndexStore>) {
        self.store = store;
    }

    /// The index store, when there is one.
    pub fn index_store(&mut self) -> Option<&mut IndexStore> {
        self.store.as_mut()
    }

    /// What the index store did, when there is one.
    pub fn index_store_stats(&self) -> Option<StoreStats> {
        self.store.as_ref().map(IndexStore::stats)
    }

    /// The index of `identity` from the cache, or else from the store (then cached).
    pub(super) fn cached_index(&mut self, identity: &SourceIdentity) -> Option<Arc<MediaIndex>> {
        if let Some(index) = self.indexes.get(identity) {
            return Some(index);
        }
        let index = Arc::new(self.store.as_mut()?.load(identity)?);
        self.indexes.insert(identity.clone(), index.clone());
        Some(index)
    }

    /// Caches an index just built, and has the store's writer thread keep it (the request
    /// does not wait for the write).
    pub(super) fn keep_index(&mut self, index: MediaIndex) -> Arc<MediaIndex> {
        let index = Arc::new(index);
        if let Some(store) = self.store.as_mut() {
            store.save_later(index.clone());
        }
        self.indexes.insert(index.identity.clone(), index.clone());
        index
    }

    /// Swaps the indexes this worker built, once their entries are written, for the stored
    /// ones: their tables then live in the mapping every worker shares, not in this heap.
    pub(super) fn map_written_indexes(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        for identity in store.take_written() {
            if let Some(mapped) = store.map_stored(&identity) {
                self.indexes.replace(&identity, Arc::new(mapped));
            }
        }
    }

    /// Waits up to `limit` for the store's writes in progress (a worker about to exit).
    pub fn flush_index_store(&mut self, limit: std::time::Duration) {
        if let Some(store) = self.store.as_mut() {
            store.flush(limit);
        }
    }

    /// The media indexes built so far and the time that took.
    pub fn index_builds(&self) -> IndexBuilds {
        self.index_builds
    }

    /// Runs the index builder `build`, counting its time (a measurement only: nothing the
    /// engine decides depends on it). An attempt that stops for bytes a remote file has not
    /// supplied yet is work done and its time counts; only a finished index counts as a build.
    pub(super) fn timed_index_build(
        &mut self,
        build: impl FnOnce() -> Result<MediaIndex, IndexError>,
    ) -> Result<MediaIndex, IndexError> {
        let started = Instant::now();
        let built = build();
        self.index_builds.record(started.elapsed(), built.is_ok());
        built
    }
}

impl Default for Caches {
    fn default() -> Caches {
        Caches::new(DEFAULT_CACHE_BYTES)
    }
}
