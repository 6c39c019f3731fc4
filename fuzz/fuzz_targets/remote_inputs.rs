//! What a backend or a server manifest hands the remote-source code: source URLs checked
//! against the backends (never a path outside the location, never a panic), `Content-Range`
//! values, `origin_remote_ttl` values, and sparse sources filled with arbitrary runs (every
//! read either returns exactly the bytes inserted there or says they are missing).
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::config::parse_seconds;
use origin_core::request::{parse_content_range, Backend, Backends};
use origin_core::source::{Source, SourceIdentity, SparseSource};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let backends = Backends(vec![Backend {
        scheme: "http".into(),
        host: "storage".into(),
        port: 80,
        base_path: "/media/".into(),
        path_prefix: "/video/".into(),
    }]);
    if let Ok(path) = backends.path_of(&text) {
        assert!(path.starts_with("/video/"));
        assert!(!path.split('/').any(|s| s == ".." || s == "."));
    }
    if let Some((first, last, total)) = parse_content_range(&text) {
        assert!(first <= last && last < total);
    }
    let _ = parse_seconds(&text);

    // Runs of (offset, length) from the input; the bytes of a run are its own offset's low byte.
    let size = 4096u64;
    let sparse = SparseSource::new(
        "f",
        SourceIdentity::Memory {
            name: "f".into(),
            size,
        },
        size,
    );
    let mut model = vec![None::<u8>; size as usize];
    for pair in data.chunks(4).take(64) {
        if pair.len() < 4 {
            break;
        }
        let offset = u64::from(u16::from_le_bytes([pair[0], pair[1]])) % (size + 16);
        let len = u64::from(u16::from_le_bytes([pair[2], pair[3]])) % 1024;
        let bytes: Vec<u8> = (offset..offset + len).map(|i| i as u8).collect();
        sparse.insert(offset, &bytes);
        for i in offset..(offset + len).min(size) {
            model[i as usize] = Some(i as u8);
        }
        let (at, n) = (offset / 2, len * 2);
        let expected: Option<Vec<u8>> = (at..at + n)
            .map(|i| model.get(i as usize).copied().flatten())
            .collect();
        match sparse.bytes(at, n as usize) {
            Ok(got) => assert_eq!(Some(got.into_owned()), expected),
            Err(_) => assert!(expected.is_none() || at + n > size),
        }
        let present = (at..(at + n).min(size)).all(|i| model[i as usize].is_some());
        assert_eq!(sparse.missing(at, n).is_none(), present);
    }
});
