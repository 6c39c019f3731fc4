//! Feeds arbitrary bytes, in chunks whose sizes come from the input, to what live ingest runs:
//! the box stream, the ingest parser, and a whole ingest session writing a channel's archive
//! (in a scratch directory), then reads the channel back and indexes its window as egress
//! would. Nothing may panic; whatever the session acknowledged must read back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::index::build_index;
use origin_core::live::channel::ChannelReader;
use origin_core::live::ingest::IngestParser;
use origin_core::live::store::DirectIngest;
use origin_core::live::window::{window, WindowRequest};
use origin_core::mp4::fragment::Moof;
use origin_core::mp4::moov::Moov;
use origin_core::mp4::stream::BoxStream;
use origin_core::mp4::Reader;
use origin_core::source::{PreadSource, SharedSource};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut stream = BoxStream::new(1 << 20);
    let mut boxes = Vec::new();
    for c in rest.chunks(chunk) {
        if stream.push(c, &mut boxes).is_err() {
            break;
        }
    }
    let _ = stream.finish();
    for b in &boxes {
        let body = Reader::new(b.body(), b.header.body_offset());
        match &b.header.fourcc.0 {
            b"moov" => {
                let _ = Moov::parse(body);
            }
            b"moof" => {
                let _ = Moof::parse(body, b.header.offset, b.header.size);
            }
            _ => {}
        }
    }

    let mut parser = IngestParser::default();
    let mut events = Vec::new();
    for c in rest.chunks(chunk) {
        if parser.push(c, &mut events).is_err() {
            break;
        }
    }
    let _ = parser.finish();

    let dir = std::env::temp_dir().join(format!("origin-fuzz-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let isml = dir.join("ch.isml");
    if let Ok(mut session) = DirectIngest::open(&isml, "s", true) {
        for c in rest.chunks(chunk) {
            if session.push(c, 1_000).is_err() {
                break;
            }
        }
        let _ = session.finish();
    }
    let mut reader = ChannelReader::new();
    if let Ok(channel) = reader.snapshot(&isml, 3_000) {
        let w = window(
            &channel,
            WindowRequest {
                dvr_window_secs: 30,
                now_ms: 3_000,
                ..WindowRequest::default()
            },
        )
        .expect("the window of what was acknowledged reads back");
        for (track, records) in &w.tracks {
            // The data files, opened as a driver opens them for the engine.
            let data_file = |n: u32| -> Option<SharedSource> {
                let path = channel.archive_dir.join(track.data_file(n));
                Some(Arc::new(PreadSource::open(&path).ok()?))
            };
            let source = track
                .source("t", records, data_file)
                .expect("acknowledged fragments read back");
            let _ = build_index(&source);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
