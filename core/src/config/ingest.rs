//! The `http`-level directives that bound what live ingest may hold (docs/COMPAT.md §5):
//! `origin_ingest_memory` (each worker's budget for unfinished fragments),
//! `origin_ingest_max_fragment` (the largest fragment) and `origin_ingest_fragment_timeout`
//! (how long a box or fragment may take to arrive whole). Unset values take their defaults in
//! [`IngestSettings::limits`] and [`IngestSettings::memory_budget`] only.

use super::{parse_seconds, parse_size, ConfigError};
use crate::live::budget::DEFAULT_INGEST_MEMORY;
use crate::live::session::IngestLimits;

/// The directives' names.
pub const INGEST_DIRECTIVES: [&str; 3] = [
    "origin_ingest_memory",
    "origin_ingest_max_fragment",
    "origin_ingest_fragment_timeout",
];

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
    }
}
