//! Files over 4 GiB: a sparse 5 GiB file whose `mdat` uses a 64-bit `largesize` and whose
//! samples sit past 4 GiB, addressed through `co64`. The index must place every sample exactly.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use origin_core::index::build_index;
use origin_core::source::{MmapSource, PreadSource, Source};

fn bx(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(fourcc);
    v.extend_from_slice(body);
    v
}

fn fbx(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
    bx(fourcc, &[&[0u8, 0, 0, 0][..], body].concat())
}

fn be32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

#[test]
fn samples_past_four_gibibytes() {
    const GIB: u64 = 1 << 30;
    let sample_offsets = [4 * GIB + 100, 4 * GIB + 1_000_000, 5 * GIB - 64];
    let dir = std::env::temp_dir().join(format!("origin-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("large.mp4");

    let mut mvhd = vec![0u8; 8];
    mvhd.extend(be32(&[1000, 0]));
    mvhd.extend([0u8; 76]);
    mvhd.extend(be32(&[2]));
    let mut tkhd = vec![0u8; 8];
    tkhd.extend(be32(&[1, 0, 0]));
    tkhd.extend([0u8; 60]);
    let mut mdhd = vec![0u8; 8];
    mdhd.extend(be32(&[48000, 0]));
    mdhd.extend([0x15, 0xc7, 0, 0]);
    let mut hdlr = vec![0u8; 4];
    hdlr.extend(b"soun");
    hdlr.extend([0u8; 13]);
    let mut stsd = be32(&[1]);
    stsd.extend(bx(b"mp4a", &[0u8; 28]));
    let mut co64 = be32(&[3]);
    for o in sample_offsets {
        co64.extend(o.to_be_bytes());
    }
    let stbl = bx(
        b"stbl",
        &[
            fbx(b"stsd", &stsd),
            fbx(b"stts", &be32(&[1, 3, 1024])),
            fbx(b"stsz", &be32(&[0, 3, 10, 20, 30])),
            fbx(b"stsc", &be32(&[1, 1, 1, 1])),
            fbx(b"co64", &co64),
        ]
        .concat(),
    );
    let mdia = bx(
        b"mdia",
        &[fbx(b"mdhd", &mdhd), fbx(b"hdlr", &hdlr), bx(b"minf", &stbl)].concat(),
    );
    let moov = bx(
        b"moov",
        &[
            fbx(b"mvhd", &mvhd),
            bx(b"trak", &[fbx(b"tkhd", &tkhd), mdia].concat()),
        ]
        .concat(),
    );
    let ftyp = bx(b"ftyp", b"isom\0\0\0\0isom");
    let mdat_start = (ftyp.len() + moov.len()) as u64;
    let file_len = 5 * GIB;

    let mut f = File::create(&path).unwrap();
    f.write_all(&ftyp).unwrap();
    f.write_all(&moov).unwrap();
    let mut mdat_header = vec![0, 0, 0, 1];
    mdat_header.extend(b"mdat");
    mdat_header.extend((file_len - mdat_start).to_be_bytes());
    f.write_all(&mdat_header).unwrap();
    for (i, &o) in sample_offsets.iter().enumerate() {
        f.seek(SeekFrom::Start(o)).unwrap();
        f.write_all(&vec![i as u8 + 1; (i + 1) * 10]).unwrap();
    }
    f.set_len(file_len).unwrap(); // sparse: no 5 GiB are written
    drop(f);

    for src in [
        Box::new(MmapSource::open(&path).unwrap()) as Box<dyn Source>,
        Box::new(PreadSource::open(&path).unwrap()),
    ] {
        let index = build_index(src.as_ref()).unwrap();
        let t = &index.tracks[0];
        assert_eq!(t.sample_count(), 3);
        for (s, &o) in t.samples(0..3).zip(&sample_offsets) {
            assert_eq!(s.offset, o);
            let bytes = src.bytes(s.offset, s.size as usize).unwrap();
            assert!(bytes.iter().all(|&b| b == s.index as u8 + 1));
        }
        assert_eq!(t.offset(2), 5 * GIB - 64);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
