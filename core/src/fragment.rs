//! Fragment plans: the generated header bytes of a media segment (`styp`, `moof`, the `mdat`
//! header) plus the list of source byte ranges that form the `mdat` payload. The total size is
//! known before any byte is sent; the payload is never copied or altered here — the glue sends
//! it straight from the file (sendfile) or from remote reads.
//!
//! Sizes are computed first and the header written once into an exact allocation.

use std::ops::Range;

use crate::index::{Sample, TrackIndex};
use crate::mp4::fragment::{
    SAMPLE_FLAG_DEPENDS_NO, SAMPLE_FLAG_DEPENDS_YES, SAMPLE_FLAG_NON_SYNC,
    TFHD_DEFAULT_BASE_IS_MOOF, TFHD_DEFAULT_DURATION, TFHD_DEFAULT_FLAGS, TRUN_CTO,
    TRUN_DATA_OFFSET, TRUN_DURATION, TRUN_FIRST_SAMPLE_FLAGS, TRUN_FLAGS, TRUN_SIZE, UUID_TFRF,
    UUID_TFXD,
};

/// A contiguous byte range of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

/// Most fragments a Smooth live fragment announces ahead of itself.
pub const MAX_LOOKAHEAD: usize = 2;

/// How to write a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentOptions {
    /// `mfhd` sequence number (1-based segment number is customary).
    pub sequence_number: u32,
    /// Track ID written in `tfhd` (the init segment's).
    pub track_id: u32,
    /// Start with an `styp` box (DASH / CMAF media segments).
    pub styp: bool,
    /// Write `tfdt` (CMAF, DASH, HLS).
    pub tfdt: bool,
    /// Write the Smooth `tfxd` box (absolute time and duration).
    pub tfxd: bool,
    /// Smooth live: write `tfrf` (MS-SSTR §2.2.4.5) announcing the first `lookahead_count`
    /// fragments of `lookahead`, (time, duration) each. Live players expect the box in every
    /// live fragment, with no entry at the live edge.
    pub tfrf: bool,
    pub lookahead: [(u64, u64); MAX_LOOKAHEAD],
    pub lookahead_count: u8,
    /// Added to every decode time written (to rebase a timeline; 0 keeps the source's).
    pub time_offset: i64,
    /// Added to every composition offset: applies an edit list inside the fragment (CMAF
    /// writes negative offsets in a version 1 `trun` rather than an edit list).
    pub composition_shift: i32,
    /// Write a `prft` box between the `styp` and the `moof` (ISO/IEC 14496-12 §8.16.5): the
    /// wall-clock time, NTP format, that the fragment's first decode time maps to (LL-DASH's
    /// `ProducerReferenceTime`, in band).
    pub producer_ntp_time: Option<u64>,
}

impl Default for FragmentOptions {
    fn default() -> Self {
        FragmentOptions {
            sequence_number: 1,
            track_id: 1,
            styp: true,
            tfdt: true,
            tfxd: false,
            tfrf: false,
            lookahead: [(0, 0); MAX_LOOKAHEAD],
            lookahead_count: 0,
            time_offset: 0,
            composition_shift: 0,
            producer_ntp_time: None,
        }
    }
}

/// A planned fragment: `header` then the payload ranges, `total_len` bytes in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentPlan {
    pub header: Vec<u8>,
    pub payload: Vec<ByteRange>,
    pub payload_len: u64,
    /// Decode time of the first sample (after `time_offset`) and the fragment's duration.
    pub start_time: u64,
    pub duration: u64,
    /// The timescale of those times.
    pub timescale: u32,
    pub sample_count: u32,
    /// The track's samples the payload holds, in order.
    pub samples: Range<u32>,
}

impl FragmentPlan {
    /// Bytes of the whole fragment.
    pub fn total_len(&self) -> u64 {
        self.header.len() as u64 + self.payload_len
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("no samples in the requested range")]
    Empty,
    #[error("fragment payload of {0} bytes exceeds the 4 GiB mdat limit of this writer")]
    TooLarge(u64),
    #[error("decode time out of range after offset")]
    TimeOutOfRange,
}

const SYNC_FLAGS: u32 = SAMPLE_FLAG_DEPENDS_NO;
const NON_SYNC_FLAGS: u32 = SAMPLE_FLAG_DEPENDS_YES | SAMPLE_FLAG_NON_SYNC;

fn sample_flags(s: &Sample) -> u32 {
    if s.sync {
        SYNC_FLAGS
    } else {
        NON_SYNC_FLAGS
    }
}

/// Bytes of a version 1 `prft` box.
const PRFT_SIZE: usize = 8 + 4 + 4 + 8 + 8;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A wall-clock time (ms since the Unix epoch) as a 64-bit NTP timestamp: seconds since 1900,
/// then the fraction of a second in 1/2^32.
pub fn ntp_timestamp(unix_ms: i64) -> u64 {
    let ms = unix_ms.max(0) as u64;
    let secs = ms / 1000 + NTP_UNIX_OFFSET_SECS;
    let fraction = ((ms % 1000) << 32) / 1000;
    secs << 32 | fraction
}

/// Plans the fragment of `track`'s samples `range`.
pub fn plan_fragment(
    track: &TrackIndex,
    range: Range<u32>,
    opts: &FragmentOptions,
) -> Result<FragmentPlan, FragmentError> {
    let shift = opts.composition_shift;
    let sample_range = range.clone();
    let samples: Vec<Sample> = track
        .samples(range)
        .map(|mut s| {
            s.cto = s.cto.saturating_add(shift);
            s
        })
        .collect();
    let (first, last) = match (samples.first(), samples.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return Err(FragmentError::Empty),
    };
    let shift = |t: u64| -> Result<u64, FragmentError> {
        t.checked_add_signed(opts.time_offset)
            .ok_or(FragmentError::TimeOutOfRange)
    };
    let start_time = shift(first.dts)?;
    let duration = last.dts + u64::from(last.duration) - first.dts;

    // What varies decides the trun layout.
    let constant_duration = samples.iter().all(|s| s.duration == first.duration);
    let any_cto = samples.iter().any(|s| s.cto != 0);
    let negative_cto = samples.iter().any(|s| s.cto < 0);
    let rest_flags = samples.get(1).map(sample_flags);
    let uniform_rest = rest_flags.is_none_or(|f| samples[1..].iter().all(|s| sample_flags(s) == f));
    let use_first_flags = uniform_rest;

    // Smooth clients predate default-base-is-moof; with one traf the implicit base is the moof
    // anyway (ISO/IEC 14496-12 §8.8.7.1), so leave the flag out for them.
    let mut tfhd_flags = if opts.tfxd {
        0
    } else {
        TFHD_DEFAULT_BASE_IS_MOOF
    };
    if constant_duration {
        tfhd_flags |= TFHD_DEFAULT_DURATION;
    }
    if use_first_flags {
        tfhd_flags |= TFHD_DEFAULT_FLAGS;
    }
    let mut trun_flags = TRUN_DATA_OFFSET | TRUN_SIZE;
    if !constant_duration {
        trun_flags |= TRUN_DURATION;
    }
    if use_first_flags {
        trun_flags |= TRUN_FIRST_SAMPLE_FLAGS;
    } else {
        trun_flags |= TRUN_FLAGS;
    }
    if any_cto {
        trun_flags |= TRUN_CTO;
    }
    let per_sample = 4 * [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO]
        .iter()
        .filter(|&&b| trun_flags & b != 0)
        .count();

    // Payload ranges, coalescing samples that follow each other in the file.
    let mut payload: Vec<ByteRange> = Vec::new();
    let mut payload_len = 0u64;
    for s in &samples {
        payload_len += u64::from(s.size);
        match payload.last_mut() {
            Some(r) if r.offset + r.len == s.offset => r.len += u64::from(s.size),
            _ => payload.push(ByteRange {
                offset: s.offset,
                len: u64::from(s.size),
            }),
        }
    }
    if payload_len > u64::from(u32::MAX) - 16 {
        return Err(FragmentError::TooLarge(payload_len));
    }

    // Sizes first.
    let tfdt_version: u8 = if start_time > u64::from(u32::MAX) {
        1
    } else {
        0
    };
    let styp_size = if opts.styp { 8 + 4 + 4 + 4 * 3 } else { 0 };
    let prft_size = if opts.producer_ntp_time.is_some() {
        PRFT_SIZE
    } else {
        0
    };
    let mfhd_size = 16;
    let tfhd_size =
        16 + if constant_duration { 4 } else { 0 } + if use_first_flags { 4 } else { 0 };
    let tfdt_size = if opts.tfdt {
        12 + if tfdt_version == 1 { 8 } else { 4 }
    } else {
        0
    };
    let tfxd_size = if opts.tfxd { 8 + 16 + 4 + 16 } else { 0 };
    let lookahead = &opts.lookahead[..usize::from(opts.lookahead_count).min(MAX_LOOKAHEAD)];
    let tfrf_size = if opts.tfrf {
        8 + 16 + 4 + 1 + 16 * lookahead.len()
    } else {
        0
    };
    let trun_size = 20 + if use_first_flags { 4 } else { 0 } + per_sample * samples.len();
    let traf_size = 8 + tfhd_size + tfdt_size + trun_size + tfxd_size + tfrf_size;
    let moof_size = 8 + mfhd_size + traf_size;
    let header_len = styp_size + prft_size + moof_size + 8;

    let mut h = Vec::with_capacity(header_len);
    let put32 = |h: &mut Vec<u8>, v: u32| h.extend_from_slice(&v.to_be_bytes());
    let put_box = |h: &mut Vec<u8>, size: usize, fourcc: &[u8; 4]| {
        h.extend_from_slice(&(size as u32).to_be_bytes());
        h.extend_from_slice(fourcc);
    };
    if opts.styp {
        put_box(&mut h, styp_size, b"styp");
        h.extend_from_slice(b"msdh");
        put32(&mut h, 0);
        h.extend_from_slice(b"msdh");
        h.extend_from_slice(b"msix");
        h.extend_from_slice(b"cmfs");
    }
    if let Some(ntp) = opts.producer_ntp_time {
        put_box(&mut h, PRFT_SIZE, b"prft");
        // Version 1 (64-bit media time); flags 0: the time the media reached the encoder, as
        // the origin's anchor maps it (for an encoder that timestamps in UTC, its own clock).
        put32(&mut h, 1 << 24);
        put32(&mut h, opts.track_id);
        h.extend_from_slice(&ntp.to_be_bytes());
        h.extend_from_slice(&start_time.to_be_bytes());
    }
    put_box(&mut h, moof_size, b"moof");
    put_box(&mut h, mfhd_size, b"mfhd");
    put32(&mut h, 0);
    put32(&mut h, opts.sequence_number);
    put_box(&mut h, traf_size, b"traf");
    put_box(&mut h, tfhd_size, b"tfhd");
    put32(&mut h, tfhd_flags);
    put32(&mut h, opts.track_id);
    if constant_duration {
        put32(&mut h, first.duration);
    }
    if use_first_flags {
        put32(&mut h, rest_flags.unwrap_or(SYNC_FLAGS));
    }
    if opts.tfdt {
        put_box(&mut h, tfdt_size, b"tfdt");
        put32(&mut h, u32::from(tfdt_version) << 24);
        if tfdt_version == 1 {
            h.extend_from_slice(&start_time.to_be_bytes());
        } else {
            put32(&mut h, start_time as u32);
        }
    }
    let trun_version: u32 = if negative_cto { 1 } else { 0 };
    put_box(&mut h, trun_size, b"trun");
    put32(&mut h, trun_version << 24 | trun_flags);
    put32(&mut h, samples.len() as u32);
    // data_offset: from the moof's first byte to the first payload byte.
    put32(&mut h, (moof_size + 8) as u32);
    if use_first_flags {
        put32(&mut h, sample_flags(&first));
    }
    for s in &samples {
        if trun_flags & TRUN_DURATION != 0 {
            put32(&mut h, s.duration);
        }
        put32(&mut h, s.size);
        if trun_flags & TRUN_FLAGS != 0 {
            put32(&mut h, sample_flags(s));
        }
        if any_cto {
            put32(&mut h, s.cto as u32);
        }
    }
    if opts.tfxd {
        put_box(&mut h, tfxd_size, b"uuid");
        h.extend_from_slice(&UUID_TFXD);
        put32(&mut h, 1 << 24);
        h.extend_from_slice(&start_time.to_be_bytes());
        h.extend_from_slice(&duration.to_be_bytes());
    }
    if opts.tfrf {
        put_box(&mut h, tfrf_size, b"uuid");
        h.extend_from_slice(&UUID_TFRF);
        put32(&mut h, 1 << 24);
        h.push(lookahead.len() as u8);
        for (t, d) in lookahead {
            h.extend_from_slice(&t.to_be_bytes());
            h.extend_from_slice(&d.to_be_bytes());
        }
    }
    put_box(&mut h, 8 + payload_len as usize, b"mdat");
    debug_assert_eq!(h.len(), header_len);

    Ok(FragmentPlan {
        header: h,
        payload,
        payload_len,
        start_time,
        duration,
        timescale: track.timescale,
        sample_count: samples.len() as u32,
        samples: sample_range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build_index;
    use crate::mp4::fragment::Moof;
    use crate::mp4::{FourCC, Reader};
    use crate::source::{MemorySource, MmapSource, Source};
    use std::path::PathBuf;

    fn fixture(name: &str) -> (MmapSource, crate::index::MediaIndex) {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        let src = MmapSource::open(&p).unwrap();
        let idx = build_index(&src).unwrap();
        (src, idx)
    }

    /// Writes init + fragments of every segment into one fMP4 file and re-indexes it: the
    /// samples must come back identical (sizes, durations, offsets of the same bytes, sync).
    fn round_trip(name: &str, track_no: usize) {
        let (src, idx) = fixture(name);
        let track = &idx.tracks[track_no];
        let mut out = track.init_segment(1, None);
        let table = crate::segment::reference_segments(track, 2, 1);
        for k in 0..table.len() {
            let plan = plan_fragment(
                track,
                table.samples(k).unwrap(),
                &FragmentOptions {
                    sequence_number: k as u32 + 1,
                    tfxd: true,
                    tfrf: true,
                    lookahead: [(7, 8), (15, 9)],
                    lookahead_count: 2,
                    ..FragmentOptions::default()
                },
            )
            .unwrap();
            let before = out.len();
            out.extend_from_slice(&plan.header);
            for r in &plan.payload {
                out.extend_from_slice(&src.bytes(r.offset, r.len as usize).unwrap());
            }
            assert_eq!((out.len() - before) as u64, plan.total_len());
            // The moof parses back.
            let moof_at = before + 28; // after styp
            let mut r = Reader::new(&out[moof_at..], moof_at as u64);
            let (h, body) = r.next_box_body().unwrap().unwrap();
            assert_eq!(h.fourcc, FourCC::new(b"moof"));
            let moof = Moof::parse(body, h.offset, h.size).unwrap();
            assert_eq!(moof.sequence_number, k as u32 + 1);
            assert_eq!(moof.trafs[0].tfxd.map(|t| t.0), Some(plan.start_time));
            assert_eq!(moof.trafs[0].tfrf, [(7, 8), (15, 9)]);
        }
        let rebuilt = build_index(&MemorySource::new("out", out.clone())).unwrap();
        let t2 = &rebuilt.tracks[0];
        assert_eq!(t2.sample_count(), track.sample_count());
        for (a, b) in track
            .samples(0..track.sample_count())
            .zip(t2.samples(0..t2.sample_count()))
        {
            assert_eq!(a.size, b.size);
            assert_eq!(a.duration, b.duration);
            assert_eq!(a.dts, b.dts);
            assert_eq!(a.cto, b.cto);
            assert_eq!(a.sync, b.sync);
            assert_eq!(
                &*src.bytes(a.offset, a.size as usize).unwrap(),
                &out[b.offset as usize..(b.offset + u64::from(b.size)) as usize],
                "payload bytes of sample {}",
                a.index
            );
        }
    }

    #[test]
    fn video_round_trip() {
        round_trip("progressive.mp4", 0);
        round_trip("hevc.mp4", 0);
        round_trip("smooth-video.ismv", 0);
    }

    #[test]
    fn audio_round_trip() {
        round_trip("progressive.mp4", 1);
        round_trip("ac3.mp4", 1);
        round_trip("cmaf-audio.cmfa", 0);
    }

    #[test]
    fn text_round_trip() {
        round_trip("subtitles-eng.mp4", 0);
    }

    #[test]
    fn coalesces_contiguous_payload() {
        let (_, idx) = fixture("smooth-video.ismv");
        let plan = plan_fragment(&idx.tracks[0], 0..50, &FragmentOptions::default()).unwrap();
        // A Smooth file stores each fragment's samples contiguously: one range.
        assert_eq!(plan.payload.len(), 1);
        assert_eq!(plan.sample_count, 50);
        assert!(plan_fragment(&idx.tracks[0], 5..5, &FragmentOptions::default()).is_err());
    }
}
