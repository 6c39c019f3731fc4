//! The numbers the status endpoint (`origin_status`) shows and their two renderings: JSON and
//! the Prometheus text exposition format (version 0.0.4).
//!
//! The glue keeps the counters in shared memory, summed over the workers; here they are plain
//! values. What a response is counted under (its [`Format`], its status slot) is decided here
//! too, so the glue only reads nginx's fields and adds.

use std::fmt::Write;
use std::time::Duration;

use crate::cache::CacheStats;
use crate::error::ERROR_TOKENS;
pub use crate::format::Format;

/// Statuses are counted one by one in slots 1–599; slot 0 takes a response without a status
/// (the client left before one was set) or with one outside that range.
pub const STATUS_SLOTS: usize = 600;

/// The slot `status` is counted in.
pub fn status_slot(status: u64) -> usize {
    match usize::try_from(status) {
        Ok(s) if s < STATUS_SLOTS => s,
        _ => 0,
    }
}

/// The position of an error token in [`ERROR_TOKENS`].
pub fn token_index(token: &str) -> Option<usize> {
    ERROR_TOKENS.iter().position(|t| *t == token)
}

/// The caches a worker keeps between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    MediaIndexes,
    ServerManifests,
    GeneratedManifests,
    SegmentTables,
}

impl CacheKind {
    pub const COUNT: usize = 4;
    pub const ALL: [CacheKind; CacheKind::COUNT] = [
        CacheKind::MediaIndexes,
        CacheKind::ServerManifests,
        CacheKind::GeneratedManifests,
        CacheKind::SegmentTables,
    ];

    /// The `cache` label.
    pub fn label(self) -> &'static str {
        match self {
            CacheKind::MediaIndexes => "media_indexes",
            CacheKind::ServerManifests => "server_manifests",
            CacheKind::GeneratedManifests => "generated_manifests",
            CacheKind::SegmentTables => "segment_tables",
        }
    }
}

/// Media indexes built and the time spent building them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexBuilds {
    /// Indexes finished.
    pub count: u64,
    /// Nanoseconds in the index builder, attempts that stopped for more bytes included.
    pub nanos: u64,
}

impl IndexBuilds {
    /// Adds one run of the builder that took `took`; `finished` when it produced an index.
    pub fn record(&mut self, took: Duration, finished: bool) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // A run too short for the clock still took time; 0 would read as "nothing measured".
        self.nanos = self.nanos.saturating_add(nanos.max(1));
        self.count += u64::from(finished);
    }

    /// What was added since `earlier`.
    pub fn gained_since(&self, earlier: &IndexBuilds) -> IndexBuilds {
        IndexBuilds {
            count: self.count.saturating_sub(earlier.count),
            nanos: self.nanos.saturating_sub(earlier.nanos),
        }
    }

    pub fn seconds(&self) -> f64 {
        self.nanos as f64 / 1e9
    }
}

/// Responses and the bytes sent for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    /// Bytes sent to the client: status line, headers and body, as nginx's `$bytes_sent`.
    pub bytes: u64,
}

impl Served {
    fn add(&mut self, other: Served) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    fn is_zero(&self) -> bool {
        self.requests == 0 && self.bytes == 0
    }
}

/// The counters, summed over every worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Indexed by format, then status slot.
    served: Vec<Served>,
    /// Parallel to [`ERROR_TOKENS`].
    errors: Vec<u64>,
    /// In [`CacheKind::ALL`] order.
    pub caches: [CacheStats; CacheKind::COUNT],
    pub index_builds: IndexBuilds,
    /// What the workers' index stores did (`origin_index_store`; zeros without one).
    pub index_store: crate::index::store::StoreStats,
    /// Workers whose caches' contents are in `caches` (entries and bytes are theirs).
    pub workers: u64,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            served: vec![Served::default(); Format::COUNT * STATUS_SLOTS],
            errors: vec![0; ERROR_TOKENS.len()],
            caches: [CacheStats::default(); CacheKind::COUNT],
            index_builds: IndexBuilds::default(),
            index_store: Default::default(),
            workers: 0,
        }
    }
}

impl Snapshot {
    /// The counter of responses of `format` in status slot `slot` (slot 0 past the range).
    pub fn served_mut(&mut self, format: Format, slot: usize) -> &mut Served {
        let slot = if slot < STATUS_SLOTS { slot } else { 0 };
        &mut self.served[format.index() * STATUS_SLOTS + slot]
    }

    /// The counter of errors with `token`; `None` for a token not in [`ERROR_TOKENS`].
    pub fn errors_mut(&mut self, token: &str) -> Option<&mut u64> {
        token_index(token).map(|i| &mut self.errors[i])
    }

    /// The errors counted with each token, every token listed.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_TOKENS
            .iter()
            .copied()
            .zip(self.errors.iter().copied())
    }

    /// Every (format, status) that has responses.
    pub fn served(&self) -> impl Iterator<Item = (Format, usize, Served)> + '_ {
        self.served
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_zero())
            .map(|(i, s)| (Format::from_index(i / STATUS_SLOTS), i % STATUS_SLOTS, *s))
    }

    /// Responses by format, every format listed.
    pub fn by_format(&self) -> [Served; Format::COUNT] {
        let mut out = [Served::default(); Format::COUNT];
        for (format, _, s) in self.served() {
            out[format.index()].add(s);
        }
        out
    }

    /// Responses by status, in status order, only statuses that occurred.
    pub fn by_status(&self) -> Vec<(usize, Served)> {
        let mut out = vec![Served::default(); STATUS_SLOTS];
        for (_, slot, s) in self.served() {
            out[slot].add(s);
        }
        out.into_iter()
            .enumerate()
            .filter(|(_, s)| !s.is_zero())
            .collect()
    }

    /// All responses.
    pub fn total(&self) -> Served {
        let mut total = Served::default();
        for s in self.by_format() {
            total.add(s);
        }
        total
    }

    /// The JSON document of `GET <status location>`.
    pub fn to_json(&self) -> String {
        let mut j = String::with_capacity(4096);
        j.push_str("{\n  \"requests\": {\n    \"total\": ");
        served_json(&mut j, self.total());
        j.push_str(",\n    \"by_format\": {");
        for (i, (format, s)) in Format::ALL.iter().zip(self.by_format()).enumerate() {
            let _ = write!(j, "{}\n      \"{}\": ", comma(i), format.label());
            served_json(&mut j, s);
        }
        j.push_str("\n    },\n    \"by_status\": {");
        for (i, (status, s)) in self.by_status().into_iter().enumerate() {
            let _ = write!(j, "{}\n      \"{status}\": ", comma(i));
            served_json(&mut j, s);
        }
        j.push_str("\n    },\n    \"by_format_and_status\": {");
        let mut formats = 0;
        for format in Format::ALL {
            let mut rows = self.served().filter(|(f, _, _)| *f == format).peekable();
            if rows.peek().is_none() {
                continue;
            }
            let _ = write!(j, "{}\n      \"{}\": {{", comma(formats), format.label());
            formats += 1;
            for (i, (_, status, s)) in rows.enumerate() {
                let _ = write!(j, "{}\n        \"{status}\": ", comma(i));
                served_json(&mut j, s);
            }
            j.push_str("\n      }");
        }
        j.push_str("\n    }\n  },\n  \"errors\": {");
        for (i, (token, n)) in self.errors().enumerate() {
            let _ = write!(j, "{}\n    \"{token}\": {n}", comma(i));
        }
        j.push_str("\n  },\n  \"caches\": {");
        for (i, (kind, c)) in CacheKind::ALL.iter().zip(&self.caches).enumerate() {
            let _ = write!(
                j,
                "{}\n    \"{}\": {{\"entries\": {}, \"bytes\": {}, \"hits\": {}, \"misses\": {}, \"evictions\": {}}}",
                comma(i),
                kind.label(),
                c.entries,
                c.bytes,
                c.hits,
                c.misses,
                c.evictions
            );
        }
        let _ = write!(
            j,
            "\n  }},\n  \"index_builds\": {{\"count\": {}, \"seconds\": {}}},\n  \"index_store\": {{",
            self.index_builds.count,
            float(self.index_builds.seconds()),
        );
        let labels = crate::index::store::StoreStats::LABELS;
        for (i, (label, n)) in labels.iter().zip(self.index_store.values()).enumerate() {
            let _ = write!(j, "{}\"{label}\": {n}", if i == 0 { "" } else { ", " });
        }
        let _ = write!(j, "}},\n  \"workers\": {}\n}}\n", self.workers);
        j
    }

    /// The Prometheus text exposition (format 0.0.4) of the same numbers.
    pub fn to_prometheus(&self) -> String {
        let mut p = String::with_capacity(8192);
        family(
            &mut p,
            "requests_total",
            "counter",
            "Responses the module produced, by output format and HTTP status.",
        );
        for (format, status, s) in self.served() {
            let _ = writeln!(
                p,
                "ngx_origin_requests_total{{format=\"{}\",status=\"{status}\"}} {}",
                format.label(),
                s.requests
            );
        }
        family(
            &mut p,
            "sent_bytes_total",
            "counter",
            "Bytes sent to clients for those responses (status line, headers and body).",
        );
        for (format, status, s) in self.served() {
            let _ = writeln!(
                p,
                "ngx_origin_sent_bytes_total{{format=\"{}\",status=\"{status}\"}} {}",
                format.label(),
                s.bytes
            );
        }
        family(
            &mut p,
            "errors_total",
            "counter",
            "Error answers, by error token (X-Origin-Error).",
        );
        for (token, n) in self.errors() {
            let _ = writeln!(p, "ngx_origin_errors_total{{token=\"{token}\"}} {n}");
        }
        let caches: [CacheFamily; 5] = [
            (
                "cache_entries",
                "gauge",
                "Entries the workers' caches hold.",
                |c| c.entries,
            ),
            (
                "cache_bytes",
                "gauge",
                "Bytes the workers' caches hold.",
                |c| c.bytes,
            ),
            (
                "cache_hits_total",
                "counter",
                "Look-ups the caches answered.",
                |c| c.hits,
            ),
            (
                "cache_misses_total",
                "counter",
                "Look-ups the caches could not answer.",
                |c| c.misses,
            ),
            (
                "cache_evictions_total",
                "counter",
                "Entries dropped to stay within origin_cache_size.",
                |c| c.evictions,
            ),
        ];
        for (name, kind, help, value) in caches {
            family(&mut p, name, kind, help);
            for (cache, c) in CacheKind::ALL.iter().zip(&self.caches) {
                let _ = writeln!(
                    p,
                    "ngx_origin_{name}{{cache=\"{}\"}} {}",
                    cache.label(),
                    value(c)
                );
            }
        }
        family(
            &mut p,
            "index_builds_total",
            "counter",
            "Media indexes built.",
        );
        let _ = writeln!(
            p,
            "ngx_origin_index_builds_total {}",
            self.index_builds.count
        );
        family(
            &mut p,
            "index_build_seconds_total",
            "counter",
            "Time spent building media indexes.",
        );
        let _ = writeln!(
            p,
            "ngx_origin_index_build_seconds_total {}",
            float(self.index_builds.seconds())
        );
        family(
            &mut p,
            "index_store_total",
            "counter",
            "What the index stores did: entries read, missing, refused, written, failed writes, evicted.",
        );
        let labels = crate::index::store::StoreStats::LABELS;
        for (label, n) in labels.iter().zip(self.index_store.values()) {
            let _ = writeln!(p, "ngx_origin_index_store_total{{event=\"{label}\"}} {n}");
        }
        family(
            &mut p,
            "workers",
            "gauge",
            "Workers whose caches are counted in the cache gauges.",
        );
        let _ = writeln!(p, "ngx_origin_workers {}", self.workers);
        p
    }
}

/// The endpoint's two renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    Json,
    /// Prometheus text exposition format 0.0.4.
    Prometheus,
}

impl Exposition {
    /// The rendering a query string asks for: `format=prometheus`, or `format=json` or no
    /// `format` for JSON; `None` for any other value. Other arguments are ignored (cache
    /// busters, scrape parameters).
    pub fn from_query(query: &[u8]) -> Option<Exposition> {
        let format = query
            .split(|&b| b == b'&')
            .find_map(|arg| arg.strip_prefix(b"format="));
        match format {
            None | Some(b"json") => Some(Exposition::Json),
            Some(b"prometheus") => Some(Exposition::Prometheus),
            Some(_) => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Json => crate::mime::JSON,
            Exposition::Prometheus => crate::mime::PROMETHEUS,
        }
    }

    pub fn render(self, snapshot: &Snapshot) -> String {
        match self {
            Exposition::Json => snapshot.to_json(),
            Exposition::Prometheus => snapshot.to_prometheus(),
        }
    }
}

/// A metric family of the caches: name, type, help, and the value it takes from each cache.
type CacheFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CacheStats) -> u64,
);

fn comma(i: usize) -> &'static str {
    if i == 0 {
        ""
    } else {
        ","
    }
}

fn served_json(j: &mut String, s: Served) {
    let _ = write!(
        j,
        "{{\"requests\": {}, \"bytes\": {}}}",
        s.requests, s.bytes
    );
}

/// A float both formats read: never `inf`/`NaN` (the values are sums of durations) and never
/// in exponent form, which older JSON consumers mishandle.
fn float(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.9}")
    } else {
        "0".to_string()
    }
}

fn family(p: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(p, "# HELP ngx_origin_{name} {help}");
    let _ = writeln!(p, "# TYPE ngx_origin_{name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_from_the_query() {
        assert_eq!(Exposition::from_query(b""), Some(Exposition::Json));
        assert_eq!(
            Exposition::from_query(b"format=json"),
            Some(Exposition::Json)
        );
        assert_eq!(
            Exposition::from_query(b"x=1&format=prometheus"),
            Some(Exposition::Prometheus)
        );
        assert_eq!(
            Exposition::from_query(b"informat=x"),
            Some(Exposition::Json)
        );
        assert_eq!(Exposition::from_query(b"format=xml"), None);
        assert_eq!(Exposition::from_query(b"format="), None);
        assert_eq!(
            Exposition::Prometheus.content_type(),
            "text/plain; version=0.0.4"
        );
    }

    #[test]
    fn status_slots() {
        assert_eq!(status_slot(200), 200);
        assert_eq!(status_slot(599), 599);
        assert_eq!(status_slot(600), 0);
        assert_eq!(status_slot(0), 0);
        assert_eq!(status_slot(u64::MAX), 0);
    }

    #[test]
    fn index_builds_add_up() {
        let mut b = IndexBuilds::default();
        b.record(Duration::from_millis(3), true);
        b.record(Duration::from_millis(1), false);
        b.record(Duration::ZERO, true);
        assert_eq!(b.count, 2);
        assert_eq!(b.nanos, 4_000_001);
        let later = {
            let mut l = b;
            l.record(Duration::from_micros(5), true);
            l
        };
        assert_eq!(
            later.gained_since(&b),
            IndexBuilds {
                count: 1,
                nanos: 5_000
            }
        );
        assert!((b.seconds() - 0.004000001).abs() < 1e-12);
    }

    fn sample() -> Snapshot {
        let mut s = Snapshot::default();
        *s.served_mut(Format::Dash, 200) = Served {
            requests: 3,
            bytes: 3000,
        };
        *s.served_mut(Format::Dash, 404) = Served {
            requests: 1,
            bytes: 150,
        };
        *s.served_mut(Format::Other, 404) = Served {
            requests: 2,
            bytes: 300,
        };
        s.served_mut(Format::Hls, 1000).requests += 1;
        *s.errors_mut("NOT_FOUND").unwrap() = 1;
        *s.errors_mut("UNKNOWN_VIRTUAL_PATH").unwrap() = 2;
        assert!(s.errors_mut("NO_SUCH_TOKEN").is_none());
        s.caches[0] = CacheStats {
            entries: 2,
            bytes: 2048,
            hits: 5,
            misses: 2,
            evictions: 0,
        };
        s.index_builds = IndexBuilds {
            count: 2,
            nanos: 1_500_000,
        };
        s.index_store = crate::index::store::StoreStats::from_values([3, 1, 0, 1, 0, 0]);
        s.workers = 2;
        s
    }

    #[test]
    fn sums_by_format_and_status() {
        let s = sample();
        let by_format = s.by_format();
        assert_eq!(
            by_format[Format::Dash.index()],
            Served {
                requests: 4,
                bytes: 3150
            }
        );
        assert_eq!(by_format[Format::Hls.index()].requests, 1);
        assert_eq!(
            s.by_status(),
            vec![
                (
                    0,
                    Served {
                        requests: 1,
                        bytes: 0
                    }
                ),
                (
                    200,
                    Served {
                        requests: 3,
                        bytes: 3000
                    }
                ),
                (
                    404,
                    Served {
                        requests: 3,
                        bytes: 450
                    }
                ),
            ]
        );
        assert_eq!(
            s.total(),
            Served {
                requests: 7,
                bytes: 3450
            }
        );
    }

    #[test]
    fn json_document() {
        let j = sample().to_json();
        assert!(j.starts_with(
            "{\n  \"requests\": {\n    \"total\": {\"requests\": 7, \"bytes\": 3450},"
        ));
        assert!(j.contains("\"dash\": {\"requests\": 4, \"bytes\": 3150}"));
        assert!(j.contains("\"smooth\": {\"requests\": 0, \"bytes\": 0}"));
        assert!(j.contains("\"by_status\": {\n      \"0\": {\"requests\": 1, \"bytes\": 0},\n      \"200\": {\"requests\": 3, \"bytes\": 3000},\n      \"404\": {\"requests\": 3, \"bytes\": 450}\n    }"));
        assert!(j.contains("\"by_format_and_status\": {\n      \"dash\": {\n        \"200\": {\"requests\": 3, \"bytes\": 3000},\n        \"404\": {\"requests\": 1, \"bytes\": 150}\n      },"));
        assert!(j.contains("\"NOT_FOUND\": 1,"));
        assert!(j.contains("\"INTERNAL\": 0\n  }"));
        assert!(j.contains("\"media_indexes\": {\"entries\": 2, \"bytes\": 2048, \"hits\": 5, \"misses\": 2, \"evictions\": 0},"));
        assert!(j.ends_with(
            "\"index_builds\": {\"count\": 2, \"seconds\": 0.001500000},\n  \"index_store\": {\"hits\": 3, \"misses\": 1, \"refused\": 0, \"writes\": 1, \"write_failures\": 0, \"evictions\": 0},\n  \"workers\": 2\n}\n"
        ));
        // Every token is listed, each once.
        for token in ERROR_TOKENS {
            assert_eq!(j.matches(&format!("\"{token}\":")).count(), 1, "{token}");
        }
        // Balanced, no trailing commas.
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert!(!j.contains(",\n    }") && !j.contains(",\n  }") && !j.contains(",}"));
    }

    #[test]
    fn empty_json_is_well_formed() {
        let j = Snapshot::default().to_json();
        assert!(j.contains("\"by_status\": {\n    },"));
        assert!(j.contains("\"by_format_and_status\": {\n    }\n  },"));
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }

    #[test]
    fn prometheus_exposition() {
        let p = sample().to_prometheus();
        for line in p.lines() {
            let ok = line.starts_with("# HELP ngx_origin_")
                || line.starts_with("# TYPE ngx_origin_")
                || (line.starts_with("ngx_origin_")
                    && line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<f64>().is_ok()));
            assert!(ok, "{line}");
        }
        for expected in [
            "ngx_origin_requests_total{format=\"dash\",status=\"200\"} 3",
            "ngx_origin_requests_total{format=\"hls\",status=\"0\"} 1",
            "ngx_origin_sent_bytes_total{format=\"other\",status=\"404\"} 300",
            "ngx_origin_errors_total{token=\"UNKNOWN_VIRTUAL_PATH\"} 2",
            "ngx_origin_errors_total{token=\"INTERNAL\"} 0",
            "ngx_origin_cache_entries{cache=\"media_indexes\"} 2",
            "ngx_origin_cache_bytes{cache=\"segment_tables\"} 0",
            "ngx_origin_cache_hits_total{cache=\"media_indexes\"} 5",
            "ngx_origin_cache_evictions_total{cache=\"generated_manifests\"} 0",
            "ngx_origin_index_builds_total 2",
            "ngx_origin_index_build_seconds_total 0.001500000",
            "ngx_origin_index_store_total{event=\"hits\"} 3",
            "ngx_origin_index_store_total{event=\"write_failures\"} 0",
            "ngx_origin_workers 2",
            "# TYPE ngx_origin_cache_bytes gauge",
            "# TYPE ngx_origin_requests_total counter",
        ] {
            assert!(p.lines().any(|l| l == expected), "{expected}\n{p}");
        }
        // Each family is introduced once, before its samples.
        assert_eq!(p.matches("# TYPE ngx_origin_requests_total").count(), 1);
        assert!(
            p.find("# TYPE ngx_origin_requests_total").unwrap()
                < p.find("ngx_origin_requests_total{").unwrap()
        );
    }
}
