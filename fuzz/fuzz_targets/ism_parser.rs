//! Parses arbitrary bytes as a server manifest; what parses must write and parse back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::ism::{resolve_src, ServerManifest};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = ServerManifest::parse(data) else {
        return;
    };
    let _ = m.options();
    let _ = origin_core::drm::Drm::from_metas(&m.metas);
    for t in &m.tracks {
        let _ = resolve_src(&t.src);
    }
    let xml = m.to_xml();
    if let Ok(again) = ServerManifest::parse(xml.as_bytes()) {
        assert_eq!(again, m, "write/parse round trip changed the manifest");
    }
});
