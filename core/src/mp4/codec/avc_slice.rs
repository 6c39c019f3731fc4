//! The length of H.264 slice headers (H.264 §7.3.3), which Common Encryption leaves clear:
//! ISO/IEC 23001-7 wants the slice data protected and the header readable, and Apple's
//! SAMPLE-AES decoders find where protection starts by parsing the header themselves.
//!
//! Reading a slice header needs its picture parameter set and that one's sequence parameter
//! set: both come from the `avcC` and from parameter sets in the samples (`avc3`).

use super::avc::SpsSliceFields;
use super::bits::{unescape_rbsp, BitReader};
use super::parse_sps;
use crate::mp4::{FourCC, Mp4Error};

/// Longest slice header read (bytes of the NAL unit): longer ones, which no real stream has,
/// are left to the caller's fallback.
const MAX_HEADER: usize = 1024;
/// What is read first.
const SHORT_HEADER: usize = 64;
/// Most parameter sets of each kind kept (H.264 allows 32 SPS and 256 PPS ids, H.265 16 and 64).
const MAX_SETS: usize = 256;

/// The PPS fields that shape a slice header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PpsFields {
    pps_id: u32,
    sps_id: u32,
    entropy_coding_mode: bool,
    bottom_field_pic_order_in_frame_present: bool,
    num_slice_groups: u32,
    num_ref_idx_l0_default: u32,
    num_ref_idx_l1_default: u32,
    weighted_pred: bool,
    weighted_bipred_idc: u32,
    deblocking_filter_control_present: bool,
    redundant_pic_cnt_present: bool,
}

/// Finds where the slice data of H.264 slice NAL units starts.
#[derive(Debug, Clone, Default)]
pub struct AvcSliceHeaders {
    sps: Vec<SpsSliceFields>,
    pps: Vec<PpsFields>,
}

fn reader(rbsp: &[u8]) -> BitReader<'_> {
    BitReader::new(rbsp, FourCC::new(b"avc1"), 0)
}

impl AvcSliceHeaders {
    /// With the parameter sets of an `avcC` (NAL units, header byte included).
    pub fn new(sps: &[Vec<u8>], pps: &[Vec<u8>]) -> AvcSliceHeaders {
        let mut out = AvcSliceHeaders::default();
        for nal in sps.iter().chain(pps) {
            out.observe(nal);
        }
        out
    }

    /// Takes note of a parameter set NAL unit (others are ignored); a later set replaces one
    /// of the same id, as in the decoder.
    pub fn observe(&mut self, nal: &[u8]) {
        match nal.first().map(|b| b & 0x1f) {
            Some(7) => {
                if let Ok(sps) = parse_sps(nal, FourCC::new(b"avc1"), 0) {
                    let id = sps.slice.sps_id;
                    keep_set(&mut self.sps, sps.slice, |s| s.sps_id == id);
                }
            }
            Some(8) => {
                if let Ok(pps) = parse_pps(nal) {
                    let id = pps.pps_id;
                    keep_set(&mut self.pps, pps, |p| p.pps_id == id);
                }
            }
            _ => {}
        }
    }

    /// Bytes of `nal` (a coded slice NAL unit, header byte included, emulation prevention
    /// bytes as stored) up to and including the last byte holding slice header bits; `None`
    /// when the header cannot be read (an unknown parameter set, a slice group map, a
    /// truncated or malformed header).
    pub fn header_len(&self, nal: &[u8]) -> Option<usize> {
        header_bytes(nal, SHORT_HEADER, MAX_HEADER, |rbsp| self.header_bits(rbsp))
    }

    /// Bits of the slice header (NAL header byte included) in the unescaped NAL unit.
    fn header_bits(&self, rbsp: &[u8]) -> Result<Option<usize>, Mp4Error> {
        let mut b = reader(rbsp);
        let nal_header = b.bits_u8(8)?;
        let nal_ref_idc = (nal_header >> 5) & 3;
        let nal_type = nal_header & 0x1f;
        if !(1..=5).contains(&nal_type) {
            return Ok(None);
        }
        let idr = nal_type == 5;
        b.ue()?; // first_mb_in_slice
        let slice_type = b.ue()? % 5;
        let (p, bi, i, sp, si) = (
            slice_type == 0,
            slice_type == 1,
            slice_type == 2,
            slice_type == 3,
            slice_type == 4,
        );
        let pps_id = b.ue()?;
        let Some(pps) = self.pps.iter().find(|x| x.pps_id == pps_id) else {
            return Ok(None);
        };
        let Some(sps) = self.sps.iter().find(|x| x.sps_id == pps.sps_id) else {
            return Ok(None);
        };
        if pps.num_slice_groups > 1 {
            // slice_group_change_cycle needs the slice group map: not read here.
            return Ok(None);
        }
        if sps.separate_colour_plane {
            b.bits(2)?; // colour_plane_id
        }
        b.bits(sps.log2_max_frame_num)?; // frame_num
        let mut field_pic = false;
        if !sps.frame_mbs_only {
            field_pic = b.flag()?;
            if field_pic {
                b.flag()?; // bottom_field_flag
            }
        }
        if idr {
            b.ue()?; // idr_pic_id
        }
        if sps.pic_order_cnt_type == 0 {
            b.bits(sps.log2_max_pic_order_cnt_lsb)?;
            if pps.bottom_field_pic_order_in_frame_present && !field_pic {
                b.se()?; // delta_pic_order_cnt_bottom
            }
        }
        if sps.pic_order_cnt_type == 1 && !sps.delta_pic_order_always_zero {
            b.se()?;
            if pps.bottom_field_pic_order_in_frame_present && !field_pic {
                b.se()?;
            }
        }
        if pps.redundant_pic_cnt_present {
            b.ue()?;
        }
        if bi {
            b.flag()?; // direct_spatial_mv_pred_flag
        }
        let (mut l0, mut l1) = (pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default);
        // num_ref_idx_active_override_flag
        if (p || sp || bi) && b.flag()? {
            l0 = b.ue()?.saturating_add(1);
            if bi {
                l1 = b.ue()?.saturating_add(1);
            }
        }
        if l0 > 32 || l1 > 32 {
            return Ok(None);
        }
        // ref_pic_list_modification()
        if !i && !si {
            ref_pic_list_modification(&mut b)?;
        }
        if bi {
            ref_pic_list_modification(&mut b)?;
        }
        if (pps.weighted_pred && (p || sp)) || (pps.weighted_bipred_idc == 1 && bi) {
            // pred_weight_table()
            b.ue()?; // luma_log2_weight_denom
            let chroma = sps.chroma_array_type != 0;
            if chroma {
                b.ue()?;
            }
            let lists = if bi { [l0, l1] } else { [l0, 0] };
            for n in lists {
                for _ in 0..n {
                    if b.flag()? {
                        b.se()?;
                        b.se()?;
                    }
                    if chroma && b.flag()? {
                        for _ in 0..4 {
                            b.se()?;
                        }
                    }
                }
            }
        }
        if nal_ref_idc != 0 {
            // dec_ref_pic_marking()
            if idr {
                b.flag()?;
                b.flag()?;
            } else if b.flag()? {
                for _ in 0..64 {
                    let op = b.ue()?;
                    match op {
                        0 => break,
                        1 | 3 => {
                            b.ue()?;
                            if op == 3 {
                                b.ue()?;
                            }
                        }
                        2 | 6 => {
                            b.ue()?;
                        }
                        4 => {
                            b.ue()?;
                        }
                        5 => {}
                        _ => return Ok(None),
                    }
                }
            }
        }
        if pps.entropy_coding_mode && !i && !si {
            b.ue()?; // cabac_init_idc
        }
        b.se()?; // slice_qp_delta
        if sp || si {
            if sp {
                b.flag()?; // sp_for_switch_flag
            }
            b.se()?; // slice_qs_delta
        }
        if pps.deblocking_filter_control_present && b.ue()? != 1 {
            b.se()?; // slice_alpha_c0_offset_div2
            b.se()?; // slice_beta_offset_div2
        }
        Ok(Some(b.position()))
    }
}

fn ref_pic_list_modification(b: &mut BitReader<'_>) -> Result<(), Mp4Error> {
    if b.flag()? {
        for _ in 0..66 {
            match b.ue()? {
                3 => return Ok(()),
                0..=2 => {
                    b.ue()?;
                }
                _ => return Err(b.error("slice header: bad modification_of_pic_nums_idc")),
            }
        }
        return Err(b.error("slice header: endless ref_pic_list_modification"));
    }
    Ok(())
}

/// Parses what slice headers need of a PPS NAL unit (header byte included).
fn parse_pps(nal: &[u8]) -> Result<PpsFields, Mp4Error> {
    let rbsp = unescape_rbsp(&nal[..nal.len().min(MAX_HEADER)]);
    let mut b = reader(&rbsp);
    b.bits_u8(8)?;
    let pps_id = b.ue()?;
    let sps_id = b.ue()?;
    let entropy_coding_mode = b.flag()?;
    let bottom_field_pic_order_in_frame_present = b.flag()?;
    let num_slice_groups = b.ue()?.saturating_add(1);
    if num_slice_groups > 1 {
        // The slice group map is not needed: such slices are left to the fallback.
        return Ok(PpsFields {
            pps_id,
            sps_id,
            entropy_coding_mode,
            bottom_field_pic_order_in_frame_present,
            num_slice_groups,
            num_ref_idx_l0_default: 1,
            num_ref_idx_l1_default: 1,
            weighted_pred: false,
            weighted_bipred_idc: 0,
            deblocking_filter_control_present: false,
            redundant_pic_cnt_present: false,
        });
    }
    let num_ref_idx_l0_default = b.ue()?.saturating_add(1);
    let num_ref_idx_l1_default = b.ue()?.saturating_add(1);
    let weighted_pred = b.flag()?;
    let weighted_bipred_idc = b.bits(2)?;
    b.se()?; // pic_init_qp_minus26
    b.se()?; // pic_init_qs_minus26
    b.se()?; // chroma_qp_index_offset
    let deblocking_filter_control_present = b.flag()?;
    b.flag()?; // constrained_intra_pred_flag
    let redundant_pic_cnt_present = b.flag()?;
    Ok(PpsFields {
        pps_id,
        sps_id,
        entropy_coding_mode,
        bottom_field_pic_order_in_frame_present,
        num_slice_groups,
        num_ref_idx_l0_default,
        num_ref_idx_l1_default,
        weighted_pred,
        weighted_bipred_idc,
        deblocking_filter_control_present,
        redundant_pic_cnt_present,
    })
}

/// Keeps a parameter set, replacing one of the same id (as a decoder does), at most
/// [`MAX_SETS`] of a kind.
pub(super) fn keep_set<T>(sets: &mut Vec<T>, set: T, same_id: impl Fn(&T) -> bool) {
    sets.retain(|s| !same_id(s));
    if sets.len() < MAX_SETS {
        sets.push(set);
    }
}

/// Bytes of `nal` through its slice header, `bits` reading the header's length in bits from
/// unescaped bytes. Slice headers are a few to a few dozen bytes: a short prefix is read
/// first, up to `max` bytes only when the header runs past it; most prefixes hold no
/// emulation prevention byte and are read in place.
pub(super) fn header_bytes(
    nal: &[u8],
    short: usize,
    max: usize,
    bits: impl Fn(&[u8]) -> Result<Option<usize>, Mp4Error>,
) -> Option<usize> {
    for limit in [short, max] {
        let head = &nal[..nal.len().min(limit)];
        let unescaped;
        let rbsp = if head.windows(3).any(|w| w == [0, 0, 3]) {
            unescaped = unescape_rbsp(head);
            &unescaped[..]
        } else {
            head
        };
        match bits(rbsp) {
            Ok(bits) => return escaped_len(head, bits?.div_ceil(8)),
            Err(_) if head.len() < nal.len() => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Bytes of `escaped` that hold its first `rbsp_bytes` unescaped bytes (emulation prevention
/// bytes among them counted).
pub(super) fn escaped_len(escaped: &[u8], rbsp_bytes: usize) -> Option<usize> {
    let mut zeros = 0usize;
    let mut kept = 0usize;
    for (at, &byte) in escaped.iter().enumerate() {
        if kept == rbsp_bytes {
            return Some(at);
        }
        if zeros >= 2 && byte == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        kept += 1;
    }
    (kept == rbsp_bytes).then_some(escaped.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::codec::bits::BitWriter;

    /// An SPS (baseline-style: no chroma info), POC type 0, frame_mbs_only.
    fn sps(log2_frame_num: u32, log2_poc: u32) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.put(0x67, 8);
        w.put(66, 8); // profile_idc baseline
        w.put(0, 8);
        w.put(30, 8);
        w.ue(0); // sps id
        w.ue(log2_frame_num - 4);
        w.ue(0); // poc type
        w.ue(log2_poc - 4);
        w.ue(1); // max_num_ref_frames
        w.flag(false);
        w.ue(19); // width 320
        w.ue(11); // height 192
        w.flag(true); // frame_mbs_only
        w.flag(true); // direct_8x8
        w.flag(false); // cropping
        w.flag(false); // vui
        w.finish()
    }

    fn pps(cabac: bool, weighted: bool) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.put(0x68, 8);
        w.ue(0);
        w.ue(0);
        w.flag(cabac);
        w.flag(false);
        w.ue(0); // one slice group
        w.ue(0); // l0 default 1
        w.ue(0);
        w.flag(weighted);
        w.put(0, 2);
        w.se(0);
        w.se(0);
        w.se(0);
        w.flag(true); // deblocking control present
        w.flag(false);
        w.flag(false);
        w.finish()
    }

    #[test]
    fn idr_and_p_slice_headers() {
        let headers = AvcSliceHeaders::new(&[sps(4, 6)], &[pps(true, false)]);
        // IDR: first_mb 0, type I (7), pps 0, frame_num(4), idr_pic_id 0, poc lsb(6),
        // dec_ref_pic_marking 2 flags, qp delta 0, deblocking idc 1.
        let mut w = BitWriter::new();
        w.put(0x65, 8);
        w.ue(0);
        w.ue(7);
        w.ue(0);
        w.put(0, 4);
        w.ue(0);
        w.put(0, 6);
        w.flag(false);
        w.flag(false);
        w.se(0);
        w.ue(1);
        let bits: usize = 8 + 1 + 7 + 1 + 4 + 1 + 6 + 2 + 1 + 3;
        // Slice data: CABAC alignment then bytes.
        while w.bit_len() % 8 != 0 {
            w.flag(true);
        }
        for _ in 0..40 {
            w.put(0xa5, 8);
        }
        let nal = w.finish();
        assert_eq!(headers.header_len(&nal), Some(bits.div_ceil(8)));
        // A P slice with a reference list override and a modification.
        let mut w = BitWriter::new();
        w.put(0x41, 8);
        w.ue(0);
        w.ue(5);
        w.ue(0);
        w.put(3, 4);
        w.put(9, 6);
        w.flag(true); // override
        w.ue(1); // l0 = 2
        w.flag(true); // modification
        w.ue(0);
        w.ue(4);
        w.ue(3);
        w.flag(false); // adaptive marking
        w.ue(2); // cabac_init_idc
        w.se(-3);
        w.ue(0); // deblocking idc 0 → offsets
        w.se(1);
        w.se(-1);
        let at = w.bit_len();
        while w.bit_len() % 8 != 0 {
            w.flag(true);
        }
        w.put(0, 8);
        w.put(0, 8);
        w.put(3, 8);
        let nal = w.finish();
        assert_eq!(headers.header_len(&nal), Some(at.div_ceil(8)));
        // Unknown PPS: no answer.
        let empty = AvcSliceHeaders::default();
        assert_eq!(empty.header_len(&nal), None);
    }

    /// Every slice of the encoder-made fixtures (x264, CABAC): the header read ends where
    /// `cabac_alignment_one_bit`s fill the byte, the check the syntax itself offers.
    #[test]
    fn real_slices_end_their_header_at_the_cabac_alignment() {
        use crate::index::build_index;
        use crate::mp4::codec::{parse_sample_entry, CodecConfig};
        use crate::mp4::Reader;
        use crate::source::{MmapSource, Source};
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let mut slices = 0;
        for name in [
            "ladder-video-360.ismv",
            "ladder-video-720.ismv",
            "progressive.mp4",
        ] {
            let src = MmapSource::open(&dir.join(name)).unwrap();
            let idx = build_index(&src).unwrap();
            let track = idx
                .tracks
                .iter()
                .find(|t| t.kind == crate::index::TrackKind::Video)
                .unwrap();
            let (h, body) = Reader::new(&track.sample_entry, 0)
                .next_box_body()
                .unwrap()
                .unwrap();
            let CodecConfig::Avc(avcc) = parse_sample_entry(h.fourcc, body).unwrap().codec else {
                panic!("{name}: not H.264");
            };
            let headers = AvcSliceHeaders::new(&avcc.sps, &avcc.pps);
            for s in track.samples(0..track.sample_count()) {
                let data = src.bytes(s.offset, s.size as usize).unwrap();
                let mut at = 0;
                while at + 4 <= data.len() {
                    let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
                    let nal = &data[at + 4..at + 4 + len];
                    at += 4 + len;
                    if !(1..=5).contains(&(nal[0] & 0x1f)) {
                        continue;
                    }
                    let rbsp = unescape_rbsp(&nal[..nal.len().min(MAX_HEADER)]);
                    let bits = headers.header_bits(&rbsp).unwrap().unwrap();
                    let mut b = reader(&rbsp);
                    b.skip(bits).unwrap();
                    while b.position() % 8 != 0 {
                        assert!(b.flag().unwrap(), "{name}: slice header ends at bit {bits}");
                    }
                    assert_eq!(headers.header_len(nal), escaped_len(nal, bits.div_ceil(8)));
                    slices += 1;
                }
            }
        }
        assert!(slices >= 300, "{slices}");
    }

    #[test]
    fn emulation_prevention_inside_the_header_is_counted() {
        assert_eq!(escaped_len(&[0, 0, 3, 1, 2], 3), Some(4));
        assert_eq!(escaped_len(&[0, 0, 3, 1, 2], 2), Some(2));
        assert_eq!(escaped_len(&[1, 2], 3), None);
    }

    #[test]
    fn garbage_never_panics() {
        let headers = AvcSliceHeaders::new(&[sps(4, 6)], &[pps(false, true)]);
        let mut x = 0x1234_5678u32;
        for len in 0..300 {
            let mut nal: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Some(first) = nal.first_mut() {
                *first = (*first & 0xe0) | 1;
            }
            if let Some(n) = headers.header_len(&nal) {
                assert!(n <= nal.len());
            }
            let mut h = headers.clone();
            h.observe(&nal);
        }
    }
}
