//! The request engine driven the way a remote driver drives it, over arbitrary bytes as a bare
//! MP4: the file is supplied only in the ranges the engine asks for, so every read of the index
//! builder goes through the ask-and-supply loop. Every drive must end (an answer or an error),
//! without a panic, within a bounded number of steps.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use origin_core::request::{Caches, Need, Opened, Request, Step};
use origin_core::source::{SharedSource, SourceIdentity, SparseSource};
use origin_core::url::{Route, RouteOptions};

fn drive(data: &[u8], url: &str, caches: &mut Caches) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let Ok(route) = Route::parse(path.as_bytes(), query.as_bytes(), RouteOptions::default()) else {
        return;
    };
    let file = route.manifest_path.clone();
    let mut request = Request::new(route, file.clone(), query);
    let identity = SourceIdentity::Memory {
        name: file.clone(),
        size: data.len() as u64,
    };
    let sparse = Arc::new(SparseSource::new(
        &file,
        identity.clone(),
        data.len() as u64,
    ));
    for step in 0.. {
        assert!(step < 2_000, "{url}: the engine kept asking");
        match request.step(caches) {
            Err(_) | Ok(Step::Done(_)) => return,
            // Only a live channel's low-latency requests wait; these are files.
            Ok(Step::Need(Need::Wait(wait))) => panic!("{url}: a file request waited: {wait:?}"),
            Ok(Step::Need(Need::Open(paths))) => {
                for p in paths {
                    request.supply_open(
                        &p,
                        Ok(Opened {
                            identity: identity.clone(),
                            size: data.len() as u64,
                            modified: 0,
                            reader: Some(sparse.clone() as SharedSource),
                        }),
                    );
                }
            }
            Ok(Step::Need(Need::Read(reads))) => {
                for r in reads {
                    let start = (r.offset as usize).min(data.len());
                    let end = (r.offset.saturating_add(r.len) as usize).min(data.len());
                    assert!(r.len > 0, "an empty read was asked");
                    sparse.insert(r.offset, &data[start..end]);
                    request.supply_read(&r.path, Ok(sparse.clone() as SharedSource));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut caches = Caches::new(16 << 20);
    for url in [
        "/f.mp4/.mpd",
        "/f.mp4/.m3u8",
        "/f.mp4/Manifest",
        "/f.mp4/dash/f-video=0-0.dash",
    ] {
        drive(data, url, &mut caches);
    }
});
