//! Writing boxes: a byte sink with size backfilling for small header boxes, and the
//! initialization segment (ftyp + moov with mvex) of one track.

use super::reader::FourCC;
use super::TrackKind;

/// A growing buffer of boxes. `begin` writes a placeholder size, `end` backfills it.
#[derive(Debug, Default)]
pub struct BoxWriter {
    pub buf: Vec<u8>,
    open: Vec<usize>,
}

impl BoxWriter {
    pub fn new() -> BoxWriter {
        BoxWriter::default()
    }

    pub fn with_capacity(n: usize) -> BoxWriter {
        BoxWriter {
            buf: Vec::with_capacity(n),
            open: Vec::new(),
        }
    }

    /// Opens a box.
    pub fn begin(&mut self, fourcc: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(fourcc);
    }

    /// Opens a full box with version and flags.
    pub fn begin_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) {
        self.begin(fourcc);
        self.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
    }

    /// Closes the innermost open box, writing its size.
    pub fn end(&mut self) {
        let start = self.open.pop().expect("end() without begin()");
        let size = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn fourcc(&mut self, f: FourCC) {
        self.buf.extend_from_slice(&f.0);
    }
    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// The finished bytes.
    pub fn finish(self) -> Vec<u8> {
        debug_assert!(self.open.is_empty(), "unclosed boxes");
        self.buf
    }
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Packs an ISO-639-2/T code into `mdhd`'s 15 bits (`und` for anything else).
pub fn pack_language(lang: &str) -> u16 {
    let b = lang.as_bytes();
    if b.len() != 3 || !b.iter().all(u8::is_ascii_lowercase) {
        return pack_language("und");
    }
    (u16::from(b[0] - 0x60) << 10) | (u16::from(b[1] - 0x60) << 5) | u16::from(b[2] - 0x60)
}

/// Brands of the initialization and media segments (CMAF, ISO/IEC 23000-19 §7.2).
pub const CMAF_BRANDS: [&[u8; 4]; 4] = [b"iso6", b"cmfc", b"mp41", b"dash"];

/// What an initialization segment says of its track.
#[derive(Debug, Clone, Copy)]
pub struct TrackHeader<'a> {
    pub kind: TrackKind,
    pub timescale: u32,
    /// ISO-639-2/T code, or a BCP 47 tag (written as `elng`).
    pub language: &'a str,
    pub width: u32,
    pub height: u32,
    /// The whole sample entry box.
    pub sample_entry: &'a [u8],
}

/// The initialization segment of a track described by `track`: `ftyp` + `moov` (`mvhd`, `trak`
/// with an empty sample table and the track's own sample entry, `mvex`/`trex`). `track_id` is
/// the ID used in the output (1 for single-track CMAF); `media_time` (track timescale) adds an
/// edit list that starts presentation there: how audio priming (AAC encoder delay) is
/// signalled in CMAF.
pub fn init_segment_of(track: &TrackHeader<'_>, track_id: u32, media_time: Option<i64>) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(track.sample_entry.len() + 768);
    w.begin(b"ftyp");
    w.bytes(CMAF_BRANDS[0]);
    w.u32(0);
    for b in CMAF_BRANDS {
        w.bytes(b);
    }
    w.end();

    w.begin(b"moov");
    w.begin_full(b"mvhd", 0, 0);
    w.u32(0); // creation
    w.u32(0); // modification
    w.u32(track.timescale);
    w.u32(0); // duration: fragmented
    w.u32(0x0001_0000); // rate
    w.u16(0x0100); // volume
    w.zeros(10);
    for m in MATRIX {
        w.u32(m);
    }
    w.zeros(24);
    w.u32(track_id + 1);
    w.end();

    w.begin(b"trak");
    w.begin_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.u32(0);
    w.u32(0);
    w.u32(track_id);
    w.u32(0);
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate group
    w.u16(if track.kind == TrackKind::Audio {
        0x0100
    } else {
        0
    });
    w.u16(0);
    for m in MATRIX {
        w.u32(m);
    }
    let (width, height) = if track.kind == TrackKind::Video {
        (track.width, track.height)
    } else {
        (0, 0)
    };
    w.u32(width << 16);
    w.u32(height << 16);
    w.end();

    if let Some(media_time) = media_time {
        // One edit over the whole (fragmented, so unknown) duration: segment_duration 0.
        w.begin(b"edts");
        w.begin_full(b"elst", 1, 0);
        w.u32(1);
        w.u64(0);
        w.u64(media_time as u64);
        w.u32(0x0001_0000);
        w.end();
        w.end();
    }

    w.begin(b"mdia");
    w.begin_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(track.timescale);
    w.u32(0);
    let iso639 = if track.language.len() == 3 {
        track.language
    } else {
        "und"
    };
    w.u16(pack_language(iso639));
    w.u16(0);
    w.end();
    if track.language.len() != 3 && !track.language.is_empty() {
        w.begin_full(b"elng", 0, 0);
        w.bytes(track.language.as_bytes());
        w.u8(0);
        w.end();
    }
    let (handler, name): (&[u8; 4], &str) = match track.kind {
        TrackKind::Video => (b"vide", "VideoHandler"),
        TrackKind::Audio => (b"soun", "SoundHandler"),
        TrackKind::Text if track.sample_entry.get(4..8) == Some(b"wvtt") => {
            (b"text", "TextHandler")
        }
        TrackKind::Text => (b"subt", "SubtitleHandler"),
        TrackKind::Metadata | TrackKind::Other => (b"meta", "MetaHandler"),
    };
    w.begin_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(handler);
    w.zeros(12);
    w.bytes(name.as_bytes());
    w.u8(0);
    w.end();

    w.begin(b"minf");
    match handler {
        b"vide" => {
            w.begin_full(b"vmhd", 0, 1);
            w.zeros(8);
            w.end();
        }
        b"soun" => {
            w.begin_full(b"smhd", 0, 0);
            w.zeros(4);
            w.end();
        }
        b"subt" => {
            w.begin_full(b"sthd", 0, 0);
            w.end();
        }
        _ => {
            w.begin_full(b"nmhd", 0, 0);
            w.end();
        }
    }
    w.begin(b"dinf");
    w.begin_full(b"dref", 0, 0);
    w.u32(1);
    w.begin_full(b"url ", 0, 1); // media data in the same file
    w.end();
    w.end();
    w.end();
    w.begin(b"stbl");
    w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    w.bytes(track.sample_entry);
    w.end();
    for empty in [b"stts", b"stsc", b"stco"] {
        w.begin_full(empty, 0, 0);
        w.u32(0);
        w.end();
    }
    w.begin_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak

    w.begin(b"mvex");
    w.begin_full(b"trex", 0, 0);
    w.u32(track_id);
    w.u32(1);
    w.u32(0);
    w.u32(0);
    w.u32(0);
    w.end();
    w.end();
    w.end(); // moov
    w.finish()
}

/// A fragment of track `track_id` holding `samples` (start, end, bytes; contiguous, all sync
/// samples): `moof` (mfhd, traf with tfhd, `traf_extra` boxes whole, tfdt and a trun of
/// durations and sizes) and its `mdat`, appended to `out`. Tools write text and event tracks
/// with it, and the Smooth cue stream its fragments (with a `tfxd`).
pub fn write_fragment(
    out: &mut Vec<u8>,
    track_id: u32,
    sequence: u32,
    samples: &[(u64, u64, Vec<u8>)],
    traf_extra: &[u8],
) {
    let Some(&(first, _, _)) = samples.first() else {
        return;
    };
    let mut w = BoxWriter::with_capacity(128 + samples.len() * 8);
    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.end();
    w.begin(b"traf");
    w.begin_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
    w.u32(track_id);
    w.end();
    w.bytes(traf_extra);
    w.begin_full(b"tfdt", 1, 0);
    w.u64(first);
    w.end();
    w.begin_full(b"trun", 0, 0x0301); // data offset, sample durations, sample sizes
    w.u32(samples.len() as u32);
    let data_offset_at = w.buf.len();
    w.u32(0);
    for (start, stop, data) in samples {
        w.u32((stop - start) as u32);
        w.u32(data.len() as u32);
    }
    w.end();
    w.end(); // traf
    w.end(); // moof
    let mut moof = w.finish();
    let data_offset = (moof.len() + 8) as u32;
    moof[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    out.extend_from_slice(&moof);
    let payload: usize = samples.iter().map(|s| s.2.len()).sum();
    out.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for (_, _, data) in samples {
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_packing() {
        assert_eq!(pack_language("und"), 0x55c4);
        assert_eq!(pack_language("eng"), 0x15c7);
        assert_eq!(pack_language("EN"), pack_language("und"));
    }

    #[test]
    fn init_segment_parses_back() {
        use crate::index::build_index;
        use crate::mp4::moov::Moov;
        use crate::mp4::{FourCC, Reader};
        use crate::source::MmapSource;
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        for (file, track_no, handler) in [
            ("progressive.mp4", 0, b"vide"),
            ("progressive.mp4", 1, b"soun"),
            ("hevc.mp4", 0, b"vide"),
            ("subtitles-eng.mp4", 0, b"subt"),
        ] {
            let idx = build_index(&MmapSource::open(&dir.join(file)).unwrap()).unwrap();
            let track = &idx.tracks[track_no];
            let init = track.init_segment(7, None);
            let mut r = Reader::new(&init, 0);
            let (ftyp, _) = r.next_box_body().unwrap().unwrap();
            assert_eq!(ftyp.fourcc, FourCC::new(b"ftyp"));
            let (moov_h, moov_body) = r.next_box_body().unwrap().unwrap();
            assert_eq!(moov_h.fourcc, FourCC::new(b"moov"));
            assert!(r.is_empty());
            let moov = Moov::parse(moov_body).unwrap();
            assert!(moov.fragmented);
            assert_eq!(
                moov.trex_for(7).map(|t| t.default_sample_description_index),
                Some(1)
            );
            let trak = &moov.traks[0];
            assert_eq!(trak.tkhd.track_id, 7);
            assert_eq!(trak.mdhd.timescale, track.timescale);
            assert_eq!(trak.handler, FourCC::new(handler));
            assert_eq!(trak.stbl.sample_entries[0].1, &track.sample_entry[..]);
            assert_eq!(trak.stbl.sizes.map(|s| s.count()), Some(0));
            if track.language.len() == 3 {
                assert_eq!(trak.mdhd.language(), track.language);
            }
        }
    }

    #[test]
    fn nested_sizes() {
        let mut w = BoxWriter::new();
        w.begin(b"moov");
        w.begin_full(b"mvhd", 1, 0x10);
        w.u8(7);
        w.end();
        w.end();
        let b = w.finish();
        assert_eq!(&b[..8], &[0, 0, 0, 21, b'm', b'o', b'o', b'v']);
        assert_eq!(&b[8..16], &[0, 0, 0, 13, b'm', b'v', b'h', b'd']);
        assert_eq!(&b[16..20], &[1, 0, 0, 0x10]);
    }
}
