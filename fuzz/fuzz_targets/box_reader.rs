//! Walks arbitrary bytes as a box tree (every container recursed into, bounded depth) and parses
//! the boxes the origin reads on their own: moov, moof, sidx, tfra, emsg, and HDS's abst.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::mp4::fragment::{parse_mfra, Emsg, Moof, Sidx};
use origin_core::mp4::moov::Moov;
use origin_core::mp4::Reader;

fn walk(mut r: Reader<'_>, depth: usize) {
    if depth > 16 {
        return;
    }
    while let Ok(Some((h, body))) = r.next_box_body() {
        match &h.fourcc.0 {
            b"moov" => {
                let _ = Moov::parse(body);
            }
            b"moof" => {
                let _ = Moof::parse(body, h.offset, h.size);
            }
            b"sidx" => {
                let _ = Sidx::parse(&mut body.clone());
            }
            b"mfra" => {
                let _ = parse_mfra(body);
            }
            b"emsg" => {
                let _ = Emsg::parse(&mut body.clone());
            }
            _ => walk(body, depth + 1),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(Reader::new(data, 0), 0);
    // An HDS bootstrap (`abst`), as the tests and `ismtool package` read the origin's.
    if let Ok(b) = origin_core::package::hds::Bootstrap::parse(data) {
        let _ = b.to_bytes();
    }
});
