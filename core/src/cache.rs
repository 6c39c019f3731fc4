//! A bounded, least-recently-used cache of parsed objects (media indexes, server manifests),
//! keyed by what identifies one version of a source. Each nginx worker keeps its own; a changed
//! file has a new identity, so stale entries are never returned and age out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// Something whose memory the cache accounts for.
pub trait Weighted {
    /// Approximate heap bytes held.
    fn weight(&self) -> usize;
}

impl Weighted for crate::index::MediaIndex {
    /// Its heap, plus a quarter of the stored entry it reads in place: those pages are shared
    /// with every worker (and dropped by the kernel under pressure), yet each mapping costs a
    /// slot of the truncation guard, so a cache of mapped entries stays bounded too.
    fn weight(&self) -> usize {
        let stored = self.stored_bytes();
        self.heap_size() + if stored > 0 { stored / 4 + 4096 } else { 0 }
    }
}

struct Entry<V> {
    value: Arc<V>,
    weight: usize,
    last_used: u64,
}

/// What a cache holds and how it has served, for the status endpoint. `entries` and `bytes`
/// are the present state; `hits`, `misses` and `evictions` count from the cache's creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    /// Entries dropped to stay within the budget (not those replaced or explicitly retained
    /// out: those were stale, not squeezed out).
    pub evictions: u64,
}

impl CacheStats {
    /// This state, with the counters reduced to what they gained since `earlier` (a worker
    /// publishes its increase, so totals over workers outlive the workers).
    pub fn gained_since(&self, earlier: &CacheStats) -> CacheStats {
        CacheStats {
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            evictions: self.evictions.saturating_sub(earlier.evictions),
            ..*self
        }
    }
}

/// LRU cache with a byte budget.
pub struct LruCache<K, V> {
    entries: HashMap<K, Entry<V>>,
    budget: usize,
    used: usize,
    clock: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V: Weighted> LruCache<K, V> {
    /// A cache holding at most `budget` bytes (one entry larger than the budget is still kept
    /// while it is the only one, so a huge title does not have to be re-indexed per request).
    pub fn new(budget: usize) -> Self {
        LruCache {
            entries: HashMap::new(),
            budget,
            used: 0,
            clock: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// The cached value for `key`, if any.
    pub fn get(&mut self, key: &K) -> Option<Arc<V>> {
        self.clock += 1;
        match self.entries.get_mut(key) {
            Some(e) => {
                e.last_used = self.clock;
                self.hits += 1;
                Some(e.value.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Returns the cached value or builds, stores and returns it.
    pub fn get_or_try_insert<E>(
        &mut self,
        key: &K,
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let value = Arc::new(build()?);
        self.insert(key.clone(), value.clone());
        Ok(value)
    }

    /// Stores `value`, evicting the least recently used entries beyond the budget.
    pub fn insert(&mut self, key: K, value: Arc<V>) {
        self.clock += 1;
        let weight = value.weight();
        if let Some(old) = self.entries.insert(
            key,
            Entry {
                value,
                weight,
                last_used: self.clock,
            },
        ) {
            self.used -= old.weight;
        }
        self.used += weight;
        self.evict_over_budget();
    }

    /// Replaces the value of `key` if it is cached (its use time kept; no hit counted).
    pub fn replace(&mut self, key: &K, value: Arc<V>) {
        let weight = value.weight();
        if let Some(entry) = self.entries.get_mut(key) {
            self.used = self.used - entry.weight + weight;
            entry.value = value;
            entry.weight = weight;
            self.evict_over_budget();
        }
    }

    /// Changes the byte budget, evicting what no longer fits.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.evict_over_budget();
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    fn evict_over_budget(&mut self) {
        while self.used > self.budget && self.entries.len() > 1 {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= e.weight;
                self.evictions += 1;
            }
        }
    }

    /// Drops every entry matching `pred` (e.g. all versions of one path).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let used = &mut self.used;
        self.entries.retain(|k, e| {
            let k_keep = keep(k);
            if !k_keep {
                *used -= e.weight;
            }
            k_keep
        });
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes accounted.
    pub fn used(&self) -> usize {
        self.used
    }

    /// What the cache holds now and its hits, misses and evictions so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len() as u64,
            bytes: self.used as u64,
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blob(usize);
    impl Weighted for Blob {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut c: LruCache<&str, Blob> = LruCache::new(100);
        c.insert("a", Arc::new(Blob(40)));
        c.insert("b", Arc::new(Blob(40)));
        assert!(c.get(&"a").is_some()); // a is now newer than b
        c.insert("c", Arc::new(Blob(40)));
        assert!(c.get(&"b").is_none());
        assert!(c.get(&"a").is_some());
        assert!(c.get(&"c").is_some());
        assert_eq!(c.used(), 80);
        // One oversized entry stays alone.
        c.insert("huge", Arc::new(Blob(1000)));
        assert_eq!(c.len(), 1);
        assert!(c.get(&"huge").is_some());
    }

    #[test]
    fn shrinking_the_budget_evicts_the_oldest() {
        let mut c: LruCache<u32, Blob> = LruCache::new(1000);
        for k in 0..5 {
            c.insert(k, Arc::new(Blob(100)));
        }
        c.set_budget(250);
        assert_eq!((c.len(), c.used(), c.budget()), (2, 200, 250));
        assert!(c.get(&3).is_some() && c.get(&4).is_some());
    }

    #[test]
    fn build_once() {
        let mut c: LruCache<u32, Blob> = LruCache::new(100);
        let mut builds = 0;
        for _ in 0..3 {
            c.get_or_try_insert::<()>(&1, || {
                builds += 1;
                Ok(Blob(1))
            })
            .unwrap();
        }
        assert_eq!(builds, 1);
        assert!(c.get_or_try_insert(&2, || Err::<Blob, _>("bad")).is_err());
        assert_eq!(c.len(), 1);
        c.retain(|_| false);
        assert!(c.is_empty());
        assert_eq!(c.used(), 0);
    }

    #[test]
    fn stats_count_hits_misses_and_evictions() {
        let mut c: LruCache<u32, Blob> = LruCache::new(100);
        assert_eq!(c.stats(), CacheStats::default());
        assert!(c.get(&1).is_none());
        c.insert(1, Arc::new(Blob(60)));
        assert!(c.get(&1).is_some());
        assert!(c.get(&1).is_some());
        // Replacing an entry is not an eviction; squeezing one out is.
        c.insert(1, Arc::new(Blob(50)));
        c.insert(2, Arc::new(Blob(40)));
        c.insert(3, Arc::new(Blob(40)));
        let s = c.stats();
        assert_eq!(
            s,
            CacheStats {
                entries: 2,
                bytes: 80,
                hits: 2,
                misses: 1,
                evictions: 1
            }
        );
        // get_or_try_insert: a miss then a hit.
        c.get_or_try_insert::<()>(&4, || Ok(Blob(10))).unwrap();
        c.get_or_try_insert::<()>(&4, || Ok(Blob(10))).unwrap();
        let t = c.stats();
        assert_eq!((t.hits, t.misses, t.evictions), (3, 2, 1));
        // Explicitly dropped entries are not evictions either.
        c.retain(|_| false);
        assert_eq!(c.stats().evictions, 1);
        // A smaller budget evicts.
        c.insert(5, Arc::new(Blob(30)));
        c.insert(6, Arc::new(Blob(30)));
        c.set_budget(40);
        assert_eq!(c.stats().evictions, 2);
    }

    #[test]
    fn gained_since_keeps_the_state_and_subtracts_the_counters() {
        let before = CacheStats {
            entries: 5,
            bytes: 500,
            hits: 10,
            misses: 4,
            evictions: 1,
        };
        let now = CacheStats {
            entries: 3,
            bytes: 300,
            hits: 12,
            misses: 4,
            evictions: 3,
        };
        let gained = now.gained_since(&before);
        assert_eq!(
            gained,
            CacheStats {
                entries: 3,
                bytes: 300,
                hits: 2,
                misses: 0,
                evictions: 2
            }
        );
        // A counter never goes backwards, even against a later snapshot.
        assert_eq!(before.gained_since(&now).hits, 0);
    }
}
