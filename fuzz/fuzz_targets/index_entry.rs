//! Reads arbitrary bytes as a stored index entry, twice: as they are (the header's checks) and
//! sealed with a header that matches them (so the body's reader and the invariant checks are
//! reached past the checksum). An entry that is accepted has every lookup exercised over its
//! tables, read in place: none may panic or read outside them.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use origin_core::index::entry::{identity_key, read, seal, HEADER_LEN};
use origin_core::index::EntryBytes;
use origin_core::segment::reference_segments;
use origin_core::source::SourceIdentity;

fuzz_target!(|data: &[u8]| {
    let identity = SourceIdentity::File {
        dev: 1,
        ino: 2,
        size: 1 << 40,
        mtime_ns: 3,
        ctime_ns: 4,
    };
    let key = identity_key(&identity).expect("a file has a key");
    let _ = read(&Arc::new(EntryBytes::copied(data)), &identity, &key);
    let body = data.get(HEADER_LEN..).unwrap_or(data);
    let sealed = Arc::new(EntryBytes::copied(&seal(body)));
    let Ok(index) = read(&sealed, &identity, &key) else {
        return;
    };
    for track in &index.tracks {
        let n = track.sample_count().min(10_000);
        for s in track.samples(0..n) {
            let _ = track.dts(s.index);
            let _ = track.offset(s.index);
            let _ = track.cto(s.index);
            let _ = track.sample_at_or_after(s.dts);
            let _ = track.sample_at_or_before(s.dts);
        }
        let _ = track.sample_at_or_before(u64::MAX / 2);
        let _ = track.end_time();
        let _ = track.stored_fragment(0..n);
        let _ = reference_segments(track, 2, 1);
    }
    let _ = index.subclip(1_000_000, Some(3_000_000));
});
