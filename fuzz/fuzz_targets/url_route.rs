//! Routes arbitrary paths and query strings; a routed manifest path never holds `.`/`..`
//! segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::url::{Route, RouteOptions};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'?').unwrap_or(data.len());
    let (path, query) = data.split_at(split);
    let query = query.get(1..).unwrap_or(&[]);
    for legacy in [true, false] {
        if let Ok(route) = Route::parse(
            path,
            query,
            RouteOptions {
                legacy_forms: legacy,
            },
        ) {
            assert!(route.manifest_path.starts_with('/'));
            assert!(!route
                .manifest_path
                .split('/')
                .any(|s| s == ".." || s == "."));
        }
    }
});
