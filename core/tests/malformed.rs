//! A corpus of hand-built malformed files: each must give an error from the index builder,
//! never a panic. The files are built from a small valid MP4 by changing one thing.

use origin_core::index::build_index;
use origin_core::source::MemorySource;

/// A box: size + fourcc + body.
fn bx(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(fourcc);
    v.extend_from_slice(body);
    v
}

/// A full box: version/flags + body.
fn fbx(fourcc: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version, 0, 0, 0];
    b.extend_from_slice(body);
    bx(fourcc, &b)
}

fn be32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// The pieces of a minimal one-track file, each replaceable.
#[derive(Clone)]
struct Parts {
    mvhd: Vec<u8>,
    tkhd: Vec<u8>,
    mdhd: Vec<u8>,
    hdlr: Vec<u8>,
    stsd: Vec<u8>,
    stts: Vec<u8>,
    stss: Vec<u8>,
    ctts: Vec<u8>,
    stsz: Vec<u8>,
    stsc: Vec<u8>,
    stco: Vec<u8>,
    edts: Vec<u8>,
    extra_moov: Vec<u8>,
    /// Size of the mdat payload.
    mdat_len: usize,
    /// Bytes after the moov (fragments, junk).
    tail: Vec<u8>,
}

const SAMPLES: u32 = 4;

fn valid() -> Parts {
    // Each header starts with 4 version/flags bytes (dropped below) and two 4-byte times.
    let mut mvhd = vec![0u8; 12];
    mvhd.extend(be32(&[1000, 0]));
    mvhd.extend([0u8; 76]);
    mvhd.extend(be32(&[2]));
    let mut tkhd = vec![0u8; 12];
    tkhd.extend(be32(&[1, 0, 0]));
    tkhd.extend([0u8; 52]);
    tkhd.extend(be32(&[640 << 16, 360 << 16]));
    let mut mdhd = vec![0u8; 12];
    mdhd.extend(be32(&[90000, 0]));
    mdhd.extend([0x55, 0xc4, 0, 0]);
    let mut hdlr = vec![0u8; 4];
    hdlr.extend(b"vide");
    hdlr.extend([0u8; 12]);
    hdlr.extend(b"Video\0");
    // A bare avc1 entry (no avcC): the index keeps it as stored.
    let mut avc1 = vec![0u8; 6];
    avc1.extend([0, 1]);
    avc1.extend([0u8; 16]);
    avc1.extend([2, 128, 1, 104]);
    avc1.extend([0u8; 50]);
    let mut stsd = be32(&[1]);
    stsd.extend(bx(b"avc1", &avc1));
    Parts {
        mvhd: fbx(b"mvhd", 0, &mvhd[4..]),
        tkhd: fbx(b"tkhd", 0, &tkhd[4..]),
        mdhd: fbx(b"mdhd", 0, &mdhd[4..]),
        hdlr: fbx(b"hdlr", 0, &hdlr),
        stsd: fbx(b"stsd", 0, &stsd),
        stts: fbx(b"stts", 0, &be32(&[1, SAMPLES, 3600])),
        stss: fbx(b"stss", 0, &be32(&[2, 1, 3])),
        ctts: fbx(b"ctts", 0, &be32(&[1, SAMPLES, 0])),
        stsz: fbx(b"stsz", 0, &be32(&[0, SAMPLES, 10, 20, 30, 40])),
        stsc: fbx(b"stsc", 0, &be32(&[1, 1, 2, 1])),
        stco: fbx(b"stco", 0, &be32(&[2, 0, 0])), // patched with real offsets in build()
        edts: Vec::new(),
        extra_moov: Vec::new(),
        mdat_len: 100,
        tail: Vec::new(),
    }
}

fn build(p: &Parts) -> Vec<u8> {
    let ftyp = bx(b"ftyp", b"isom\0\0\0\0isomavc1");
    let stbl = bx(
        b"stbl",
        &[
            &p.stsd[..],
            &p.stts,
            &p.stss,
            &p.ctts,
            &p.stsz,
            &p.stsc,
            &p.stco,
        ]
        .concat(),
    );
    let minf = bx(b"minf", &stbl);
    let mdia = bx(b"mdia", &[&p.mdhd[..], &p.hdlr, &minf].concat());
    let trak = bx(b"trak", &[&p.tkhd[..], &p.edts, &mdia].concat());
    let moov = bx(b"moov", &[&p.mvhd[..], &trak, &p.extra_moov].concat());
    let mdat_start = (ftyp.len() + moov.len() + 8) as u32;
    let mut file = [ftyp, moov].concat();
    // Patch the default stco (two chunks: samples 1-2 and 3-4) to point into the mdat.
    let default_stco = fbx(b"stco", 0, &be32(&[2, 0, 0]));
    if p.stco == default_stco {
        let real = fbx(b"stco", 0, &be32(&[2, mdat_start, mdat_start + 30]));
        let pos = file
            .windows(default_stco.len())
            .position(|w| w == default_stco.as_slice())
            .unwrap();
        file[pos..pos + real.len()].copy_from_slice(&real);
    }
    file.extend(bx(b"mdat", &vec![0xAA; p.mdat_len]));
    file.extend_from_slice(&p.tail);
    file
}

fn index(data: Vec<u8>) -> Result<origin_core::index::MediaIndex, String> {
    build_index(&MemorySource::new("case", data)).map_err(|e| e.to_string())
}

#[test]
fn the_valid_base_file_indexes() {
    let idx = index(build(&valid())).unwrap();
    assert_eq!(idx.tracks.len(), 1);
    let t = &idx.tracks[0];
    assert_eq!(t.sample_count(), SAMPLES);
    assert_eq!(t.sync_samples(), Some(&[0u32, 2][..]));
    assert_eq!(t.total_bytes(), 100);
}

macro_rules! case {
    ($name:ident, |$p:ident| mutate $change:block) => {
        #[test]
        fn $name() {
            let mut $p = valid();
            $change;
            expect_error(build(&$p));
        }
    };
    ($name:ident, |$p:ident| $change:expr) => {
        #[test]
        fn $name() {
            #[allow(unused_variables)]
            let $p = valid();
            expect_error($change);
        }
    };
}

fn expect_error(data: Vec<u8>) {
    let result = index(data);
    assert!(
        result.is_err(),
        "accepted: {:?}",
        result.map(|i| i.tracks.len())
    );
    assert!(!result.unwrap_err().is_empty());
}

// File level.
case!(empty_file, |p| Vec::new());
case!(only_ftyp, |p| bx(b"ftyp", b"isom\0\0\0\0"));
case!(truncated_box_header, |p| vec![0, 0, 0, 24, b'f']);
case!(header_of_five_bytes_after_ftyp, |p| [
    bx(b"ftyp", b"isom\0\0\0\0"),
    vec![0, 0, 1]
]
.concat());
case!(size_below_header, |p| [
    vec![0, 0, 0, 4],
    b"moov".to_vec(),
    vec![0; 16]
]
.concat());
case!(largesize_below_header, |p| {
    let mut v = vec![0, 0, 0, 1];
    v.extend(b"moov");
    v.extend(8u64.to_be_bytes());
    v
});
case!(largesize_past_eof, |p| {
    let mut v = vec![0, 0, 0, 1];
    v.extend(b"moov");
    v.extend((1u64 << 40).to_be_bytes());
    v.extend([0; 32]);
    v
});
case!(top_level_size_past_eof, |p| {
    let mut f = build(&p);
    let n = f.len();
    f.truncate(n - 50); // the mdat now claims more than the file has
    f
});
case!(size_zero_mdat_before_moov, |p| {
    let mut f = bx(b"ftyp", b"isom\0\0\0\0");
    f.extend([0, 0, 0, 0]);
    f.extend(b"mdat");
    f.extend(build(&p));
    f
});
case!(no_moov, |p| [
    bx(b"ftyp", b"isom\0\0\0\0"),
    bx(b"mdat", &[1; 10])
]
.concat());
case!(second_moov, |p| mutate { p.tail = bx(b"moov", &p.mvhd) });

// moov level.
case!(missing_mvhd, |p| mutate { p.mvhd = bx(b"free", &[]) });
case!(truncated_mvhd, |p| mutate { p.mvhd = fbx(b"mvhd", 0, &[0; 12]) });
case!(mvhd_timescale_zero, |p| mutate {
    let mut b = vec![0u8; 8];
    b.extend(be32(&[0, 0]));
    b.extend([0u8; 80]);
    p.mvhd = fbx(b"mvhd", 0, &b);
});
case!(child_size_past_moov, |p| mutate { p.extra_moov = [vec![0, 0, 1, 0], b"udta".to_vec()].concat() });
case!(elst_count_huge, |p| mutate { p.edts = bx(b"edts", &fbx(b"elst", 0, &be32(&[0xffff_ffff, 1, 0, 1]))) });

// trak and mdia level.
case!(missing_tkhd, |p| mutate { p.tkhd = bx(b"free", &[]) });
case!(tkhd_track_id_zero, |p| mutate {
    let mut b = vec![0u8; 8];
    b.extend(be32(&[0, 0, 0]));
    b.extend([0u8; 60]);
    p.tkhd = fbx(b"tkhd", 0, &b);
});
case!(missing_mdhd, |p| mutate { p.mdhd = bx(b"free", &[]) });
case!(mdhd_timescale_zero, |p| mutate {
    let mut b = vec![0u8; 8];
    b.extend(be32(&[0, 0]));
    b.extend([0u8; 4]);
    p.mdhd = fbx(b"mdhd", 0, &b);
});
case!(truncated_mdhd, |p| mutate { p.mdhd = fbx(b"mdhd", 0, &[0; 6]) });
case!(missing_hdlr, |p| mutate { p.hdlr = bx(b"free", &[]) });
case!(truncated_hdlr, |p| mutate { p.hdlr = fbx(b"hdlr", 0, &[0; 5]) });
case!(mdhd_version_two, |p| mutate { p.mdhd = fbx(b"mdhd", 2, &[0; 40]) });

// Sample description.
case!(missing_stsd, |p| mutate { p.stsd = bx(b"free", &[]) });
case!(stsd_count_zero, |p| mutate { p.stsd = fbx(b"stsd", 0, &be32(&[0])) });
case!(stsd_count_above_entries, |p| mutate {
    let mut b = be32(&[5]);
    b.extend(bx(b"avc1", &[0; 78]));
    p.stsd = fbx(b"stsd", 0, &b);
});
case!(stsd_entry_past_stsd, |p| mutate {
    let mut b = be32(&[1]);
    b.extend([0, 0, 0, 200]);
    b.extend(b"avc1");
    b.extend([0; 20]);
    p.stsd = fbx(b"stsd", 0, &b);
});

// Time to sample.
case!(missing_stts, |p| mutate { p.stts = bx(b"free", &[]) });
case!(stts_count_huge, |p| mutate { p.stts = fbx(b"stts", 0, &be32(&[0xffff_ffff, 1, 1])) });
case!(stts_covers_too_few, |p| mutate { p.stts = fbx(b"stts", 0, &be32(&[1, 2, 3600])) });
case!(stts_entry_truncated, |p| mutate { p.stts = fbx(b"stts", 0, &be32(&[2, 4, 3600, 1])) });
case!(ctts_count_huge, |p| mutate { p.ctts = fbx(b"ctts", 0, &be32(&[0x1000_0000, 4, 0])) });

// Sync samples.
case!(stss_count_huge, |p| mutate { p.stss = fbx(b"stss", 0, &be32(&[0x4000_0000, 1])) });
case!(stss_index_zero, |p| mutate { p.stss = fbx(b"stss", 0, &be32(&[1, 0])) });
case!(stss_index_past_count, |p| mutate { p.stss = fbx(b"stss", 0, &be32(&[2, 1, 5])) });
case!(stss_out_of_order, |p| mutate { p.stss = fbx(b"stss", 0, &be32(&[2, 3, 1])) });

// Sizes.
case!(missing_stsz, |p| mutate { p.stsz = bx(b"free", &[]) });
case!(stsz_count_above_limit, |p| mutate { p.stsz = fbx(b"stsz", 0, &be32(&[0, 0x0100_0000])) });
case!(stsz_count_exceeds_box, |p| mutate { p.stsz = fbx(b"stsz", 0, &be32(&[0, 8, 1, 2])) });
case!(stz2_bad_field_size, |p| mutate { p.stsz = fbx(b"stz2", 0, &[0, 0, 0, 3, 0, 0, 0, 4, 1, 2]) });
case!(stz2_truncated, |p| mutate { p.stsz = fbx(b"stz2", 0, &[0, 0, 0, 16, 0, 0, 0, 4, 0, 1]) });
case!(constant_size_overflows_file, |p| mutate { p.stsz = fbx(b"stsz", 0, &be32(&[0xffff_fff0, 4])) });

// Chunks.
case!(missing_stsc, |p| mutate { p.stsc = bx(b"free", &[]) });
case!(stsc_count_huge, |p| mutate { p.stsc = fbx(b"stsc", 0, &be32(&[0x2000_0000, 1, 2, 1])) });
case!(stsc_first_chunk_zero, |p| mutate { p.stsc = fbx(b"stsc", 0, &be32(&[1, 0, 2, 1])) });
case!(stsc_out_of_order, |p| mutate { p.stsc = fbx(b"stsc", 0, &be32(&[2, 2, 2, 1, 1, 2, 1])) });
case!(stsc_holds_too_few_samples, |p| mutate { p.stsc = fbx(b"stsc", 0, &be32(&[1, 1, 1, 1])) });
case!(stsc_zero_samples_per_chunk, |p| mutate { p.stsc = fbx(b"stsc", 0, &be32(&[1, 1, 0, 1])) });
case!(missing_stco, |p| mutate { p.stco = bx(b"free", &[]) });
case!(stco_count_huge, |p| mutate { p.stco = fbx(b"stco", 0, &be32(&[0x4000_0000, 1])) });
case!(chunk_offset_past_eof, |p| mutate { p.stco = fbx(b"stco", 0, &be32(&[2, 100_000, 100_030])) });
case!(chunk_end_past_eof, |p| mutate { p.stco = fbx(b"stco", 0, &be32(&[2, 0xffff_fff0, 40])) });
case!(co64_offset_overflows, |p| mutate {
    let mut b = be32(&[2]);
    b.extend(u64::MAX.to_be_bytes());
    b.extend(u64::MAX.to_be_bytes());
    p.stco = fbx(b"co64", 0, &b);
});

// Fragments.
fn mvex() -> Vec<u8> {
    bx(b"mvex", &fbx(b"trex", 0, &be32(&[1, 1, 3600, 10, 0])))
}

fn moof(traf_children: &[u8]) -> Vec<u8> {
    let mfhd = fbx(b"mfhd", 0, &be32(&[1]));
    bx(b"moof", &[mfhd, bx(b"traf", traf_children)].concat())
}

fn tfhd() -> Vec<u8> {
    let mut b = vec![0, 0x02, 0, 0]; // default-base-is-moof
    b.extend(be32(&[1]));
    bx(b"tfhd", &b)
}

case!(trun_count_above_limit, |p| mutate {
    p.extra_moov = mvex();
    let mut trun = vec![0, 0, 0x02, 0x01];
    trun.extend(be32(&[0x0200_0000, 8]));
    p.tail = moof(&[tfhd(), bx(b"trun", &trun)].concat());
});
case!(trun_count_exceeds_box, |p| mutate {
    p.extra_moov = mvex();
    let mut trun = vec![0, 0, 0x02, 0x01];
    trun.extend(be32(&[100, 8, 1, 2]));
    p.tail = moof(&[tfhd(), bx(b"trun", &trun)].concat());
});
case!(trun_data_before_file_start, |p| mutate {
    p.extra_moov = mvex();
    let mut trun = vec![0, 0, 0x02, 0x01];
    trun.extend(be32(&[1]));
    trun.extend((-100_000i32).to_be_bytes());
    trun.extend(be32(&[4]));
    p.tail = moof(&[tfhd(), bx(b"trun", &trun)].concat());
});
case!(trun_data_past_eof, |p| mutate {
    p.extra_moov = mvex();
    let mut trun = vec![0, 0, 0x02, 0x01];
    trun.extend(be32(&[1, 8, 1_000_000]));
    p.tail = moof(&[tfhd(), bx(b"trun", &trun)].concat());
});
case!(moof_without_mfhd, |p| mutate {
    p.extra_moov = mvex();
    p.tail = bx(b"moof", &bx(b"traf", &tfhd()));
});
case!(traf_without_tfhd, |p| mutate {
    p.extra_moov = mvex();
    p.tail = moof(&bx(b"trun", &[0, 0, 0, 0, 0, 0, 0, 0]));
});
case!(tfhd_truncated, |p| mutate {
    p.extra_moov = mvex();
    p.tail = moof(&bx(b"tfhd", &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0]));
});

#[test]
fn deep_nesting_is_not_recursed_into() {
    // 10 000 nested boxes inside an unknown moov child: skipped, never walked recursively.
    let mut inner = Vec::new();
    for _ in 0..10_000 {
        inner = bx(b"abcd", &inner);
    }
    let mut p = valid();
    p.extra_moov = inner;
    assert!(index(build(&p)).is_ok());
}

#[test]
fn every_truncation_is_an_error_or_a_valid_prefix_never_a_panic() {
    let full = build(&valid());
    for n in 0..full.len() {
        let _ = index(full[..n].to_vec());
    }
    // Flip each byte of the moov in turn: no panic either.
    for i in 0..full.len() - 108 {
        let mut f = full.clone();
        f[i] ^= 0xff;
        let _ = index(f);
    }
}
