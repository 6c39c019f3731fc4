//! The `http`-level directives that bound what a live channel's requests may hold in a worker
//! (docs/COMPAT.md §5): `origin_ingest_memory` (each worker's budget for unfinished
//! fragments), `origin_ingest_max_fragment` (the largest fragment),
//! `origin_ingest_fragment_timeout` (how long a box or fragment may take to arrive whole) and
//! `origin_live_max_held` (how many low-latency requests a worker holds while they wait for a
//! chunk). Unset values take their defaults in [`IngestSettings::limits`],
//! [`IngestSettings::memory_budget`] and [`IngestSettings::max_held`] only.

use super::{parse_count, parse_seconds, parse_size, ConfigError};
use crate::live::budget::DEFAULT_INGEST_MEMORY;
use crate::live::session::IngestLimits;

/// The directives' names.
pub const INGEST_DIRECTIVES: [&str; 4] = [
    "origin_ingest_memory",
    "origin_ingest_max_fragment",
    "origin_ingest_fragment_timeout",
    "origin_live_max_held",
];

/// Default `origin_live_max_held`.
pub const DEFAULT_MAX_HELD: u64 = 10_000;
/// Smallest and largest `origin_live_max_held`.
const MAX_HELD_RANGE: (u64, u64) = (1, 1_000_000);

/// Smallest and largest `origin_ingest_memory`.
const MEMORY_RANGE: (u64, u64) = (1 << 20, 1 << 40);
/// Smallest and largest `origin_ingest_max_fragment` (a record's size is 32 bits).
const FRAGMENT_RANGE: (u64, u64) = (64 << 10, (4 << 30) - 1);

/// What the directives set (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSettings {
    pub memory: Option<u64>,
    pub max_fragment: Option<u64>,
    pub fragment_timeout_secs: Option<u64>,
    pub max_held: Option<u64>,
}

impl IngestSettings {
    /// Takes one of [`INGEST_DIRECTIVES`] and its value; the error is what `nginx -t` prints.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let invalid =
            |e: ConfigError| format!("invalid value \"{value}\" in \"{name}\" directive, {e}");
        let (slot, parsed) = match name {
            "origin_ingest_memory" => (&mut self.memory, parse_size(value, MEMORY_RANGE)),
            "origin_ingest_max_fragment" => {
                (&mut self.max_fragment, parse_size(value, FRAGMENT_RANGE))
            }
            "origin_ingest_fragment_timeout" => {
                (&mut self.fragment_timeout_secs, parse_seconds(value))
            }
            "origin_live_max_held" => (&mut self.max_held, parse_count(value, MAX_HELD_RANGE)),
            _ => return Err(format!("unknown directive \"{name}\"")),
        };
        if slot.is_some() {
            return Err(format!("\"{name}\" directive is duplicate"));
        }
        *slot = Some(parsed.map_err(invalid)?);
        Ok(())
    }

    /// What one ingest request may take.
    pub fn limits(&self) -> IngestLimits {
        let defaults = IngestLimits::default();
        IngestLimits {
            max_fragment: self.max_fragment.unwrap_or(defaults.max_fragment),
            box_timeout_ms: self
                .fragment_timeout_secs
                .map_or(defaults.box_timeout_ms, |s| s.saturating_mul(1000)),
            ..defaults
        }
    }

    /// Bytes of unfinished fragments each worker holds at most.
    pub fn memory_budget(&self) -> u64 {
        self.memory.unwrap_or(DEFAULT_INGEST_MEMORY)
    }

    /// Low-latency requests each worker holds at most; past it, 503.
    pub fn max_held(&self) -> usize {
        self.max_held.unwrap_or(DEFAULT_MAX_HELD) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_defaults_and_mistakes() {
        let mut s = IngestSettings::default();
        assert_eq!(s.limits(), IngestLimits::default());
        assert_eq!(s.memory_budget(), 64 << 20);
        s.set("origin_ingest_memory", "16m").unwrap();
        s.set("origin_ingest_max_fragment", "512k").unwrap();
        s.set("origin_ingest_fragment_timeout", "2s").unwrap();
        assert_eq!(s.memory_budget(), 16 << 20);
        let l = s.limits();
        assert_eq!((l.max_fragment, l.box_timeout_ms), (512 << 10, 2_000));
        assert_eq!(
            s.set("origin_ingest_memory", "32m").unwrap_err(),
            "\"origin_ingest_memory\" directive is duplicate"
        );
        let mut s = IngestSettings::default();
        assert!(s
            .set("origin_ingest_memory", "1k")
            .unwrap_err()
            .starts_with("invalid value \"1k\" in \"origin_ingest_memory\" directive"));
        assert!(s.set("origin_ingest_max_fragment", "8g").is_err());
        assert!(s.set("origin_ingest_max_fragment", "lots").is_err());
        assert!(s.set("origin_ingest_fragment_timeout", "soon").is_err());
        // 0: no timeout.
        s.set("origin_ingest_fragment_timeout", "0").unwrap();
        assert_eq!(s.limits().box_timeout_ms, 0);
        assert_eq!(s.max_held(), 10_000);
        assert!(s.set("origin_live_max_held", "0").is_err());
        assert!(s.set("origin_live_max_held", "2k").is_err());
        s.set("origin_live_max_held", "2").unwrap();
        assert_eq!(s.max_held(), 2);
    }
}
