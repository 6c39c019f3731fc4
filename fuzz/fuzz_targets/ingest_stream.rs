//! Feeds arbitrary bytes to the ingest box stream in chunks whose sizes come from the input,
//! then parses every complete moov / moof it yields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::mp4::fragment::Moof;
use origin_core::mp4::moov::Moov;
use origin_core::mp4::stream::BoxStream;
use origin_core::mp4::Reader;

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
});
