//! The length of HEVC slice segment headers (H.265 §7.3.6.1), which Common Encryption leaves
//! clear, read with the SPS and PPS they refer to (from the `hvcC` and from the samples).
//!
//! The header ends with `byte_alignment()`: a one bit, then zero bits to the byte boundary.
//! A header read is accepted only when those bits are there, so a stream using syntax this
//! reader does not know (SCC, multi-layer extensions) falls back rather than guesses.

use super::avc_slice::{header_bytes, keep_set};
use super::bits::{unescape_rbsp, BitReader};
use super::hevc::parse_profile_tier_level;
use crate::mp4::{FourCC, Mp4Error};

/// Longest slice segment header read (bytes of the NAL unit).
const MAX_HEADER: usize = 2048;
/// What is read first.
const SHORT_HEADER: usize = 96;

/// One short-term reference picture set: its delta POCs (negative, then positive) and
/// whether the current picture uses each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RefPicSet {
    s0: Vec<(i32, bool)>,
    s1: Vec<(i32, bool)>,
}

impl RefPicSet {
    fn num_delta_pocs(&self) -> usize {
        self.s0.len() + self.s1.len()
    }

    fn used(&self) -> u32 {
        self.s0.iter().chain(&self.s1).filter(|(_, u)| *u).count() as u32
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sps {
    id: u32,
    separate_colour_plane: bool,
    chroma_array_type: u32,
    pic_size_in_ctbs: u32,
    log2_max_poc_lsb: u32,
    sao: bool,
    rps: Vec<RefPicSet>,
    long_term_present: bool,
    lt_used: Vec<bool>,
    temporal_mvp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pps {
    id: u32,
    sps_id: u32,
    dependent_slice_segments: bool,
    output_flag_present: bool,
    num_extra_slice_header_bits: u32,
    cabac_init_present: bool,
    num_ref_idx_l0_default: u32,
    num_ref_idx_l1_default: u32,
    slice_chroma_qp_offsets_present: bool,
    weighted_pred: bool,
    weighted_bipred: bool,
    tiles_or_wavefronts: bool,
    loop_filter_across_slices: bool,
    deblocking_override_enabled: bool,
    deblocking_disabled: bool,
    lists_modification_present: bool,
    header_extension_present: bool,
    chroma_qp_offset_list: bool,
}

/// Finds where the slice data of HEVC slice segment NAL units starts.
#[derive(Debug, Clone, Default)]
pub struct HevcSliceHeaders {
    sps: Vec<Sps>,
    pps: Vec<Pps>,
}

fn reader(rbsp: &[u8]) -> BitReader<'_> {
    BitReader::new(rbsp, FourCC::new(b"hvc1"), 0)
}

/// Bits to code a value below `n` (`Ceil(Log2(n))`).
fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn bounded(b: &mut BitReader<'_>, max: u32, what: &'static str) -> Result<u32, Mp4Error> {
    let v = b.ue()?;
    if v > max {
        return Err(b.error(what));
    }
    Ok(v)
}

impl HevcSliceHeaders {
    /// With the parameter sets of an `hvcC` (NAL units, 2-byte header included).
    pub fn new<'a>(units: impl IntoIterator<Item = &'a [u8]>) -> HevcSliceHeaders {
        let mut out = HevcSliceHeaders::default();
        for nal in units {
            out.observe(nal);
        }
        out
    }

    /// Takes note of an SPS or PPS NAL unit (others are ignored).
    pub fn observe(&mut self, nal: &[u8]) {
        let kind = nal.first().map(|b| (b >> 1) & 0x3f);
        let rbsp = || unescape_rbsp(&nal[..nal.len().min(64 << 10)]);
        match kind {
            Some(33) => {
                if let Ok(sps) = parse_sps(&rbsp()) {
                    let id = sps.id;
                    keep_set(&mut self.sps, sps, |s| s.id == id);
                }
            }
            Some(34) => {
                if let Ok(pps) = parse_pps(&rbsp()) {
                    let id = pps.id;
                    keep_set(&mut self.pps, pps, |p| p.id == id);
                }
            }
            _ => {}
        }
    }

    /// Bytes of `nal` (a VCL NAL unit, 2-byte header included, as stored) through its slice
    /// segment header's `byte_alignment()`; `None` when the header cannot be read.
    pub fn header_len(&self, nal: &[u8]) -> Option<usize> {
        header_bytes(nal, SHORT_HEADER, MAX_HEADER, |rbsp| self.header_bits(rbsp))
    }

    /// Bits of the header, NAL header and `byte_alignment()` included (a multiple of 8);
    /// `Ok(None)` for what this reader does not handle.
    fn header_bits(&self, rbsp: &[u8]) -> Result<Option<usize>, Mp4Error> {
        let mut b = reader(rbsp);
        let header = b.bits(16)?;
        let nal_type = (header >> 9) & 0x3f;
        if nal_type > 31 || (header >> 3) & 0x3f != 0 {
            // Not a slice, or a layer other than the base layer.
            return Ok(None);
        }
        let first_slice_segment = b.flag()?;
        if (16..=23).contains(&nal_type) {
            b.flag()?; // no_output_of_prior_pics_flag
        }
        let pps_id = b.ue()?;
        let Some(pps) = self.pps.iter().find(|p| p.id == pps_id) else {
            return Ok(None);
        };
        let Some(sps) = self.sps.iter().find(|s| s.id == pps.sps_id) else {
            return Ok(None);
        };
        let mut dependent = false;
        if !first_slice_segment {
            if pps.dependent_slice_segments {
                dependent = b.flag()?;
            }
            b.skip(ceil_log2(sps.pic_size_in_ctbs) as usize)?; // slice_segment_address
        }
        if !dependent {
            b.skip(pps.num_extra_slice_header_bits as usize)?;
            let slice_type = b.ue()?;
            if slice_type > 2 {
                return Ok(None);
            }
            let (bi, p) = (slice_type == 0, slice_type == 1);
            if pps.output_flag_present {
                b.flag()?;
            }
            if sps.separate_colour_plane {
                b.skip(2)?;
            }
            let mut pic_total_curr = 0u32;
            let mut temporal_mvp = false;
            if nal_type != 19 && nal_type != 20 {
                b.skip(sps.log2_max_poc_lsb as usize)?; // slice_pic_order_cnt_lsb
                let rps = if !b.flag()? {
                    // short_term_ref_pic_set_sps_flag == 0: the set is coded here.
                    let n = sps.rps.len();
                    parse_rps(&mut b, n, &sps.rps, true)?
                } else {
                    let idx = if sps.rps.len() > 1 {
                        b.bits(ceil_log2(sps.rps.len() as u32))? as usize
                    } else {
                        0
                    };
                    match sps.rps.get(idx) {
                        Some(r) => r.clone(),
                        None => return Ok(None),
                    }
                };
                pic_total_curr += rps.used();
                if sps.long_term_present {
                    let num_sps = if sps.lt_used.is_empty() {
                        0
                    } else {
                        bounded(&mut b, sps.lt_used.len() as u32, "slice: num_long_term_sps")?
                    };
                    let num_pics = bounded(&mut b, 32, "slice: num_long_term_pics")?;
                    for i in 0..num_sps + num_pics {
                        let used = if i < num_sps {
                            let idx = if sps.lt_used.len() > 1 {
                                b.bits(ceil_log2(sps.lt_used.len() as u32))? as usize
                            } else {
                                0
                            };
                            sps.lt_used.get(idx).copied().unwrap_or(false)
                        } else {
                            b.skip(sps.log2_max_poc_lsb as usize)?;
                            b.flag()?
                        };
                        pic_total_curr += u32::from(used);
                        if b.flag()? {
                            b.ue()?; // delta_poc_msb_cycle_lt
                        }
                    }
                }
                if sps.temporal_mvp {
                    temporal_mvp = b.flag()?;
                }
            }
            let (mut sao_luma, mut sao_chroma) = (false, false);
            if sps.sao {
                sao_luma = b.flag()?;
                if sps.chroma_array_type != 0 {
                    sao_chroma = b.flag()?;
                }
            }
            if p || bi {
                let (mut l0, mut l1) = (pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default);
                if b.flag()? {
                    l0 = bounded(&mut b, 14, "slice: num_ref_idx_l0_active_minus1")? + 1;
                    if bi {
                        l1 = bounded(&mut b, 14, "slice: num_ref_idx_l1_active_minus1")? + 1;
                    }
                }
                if pps.lists_modification_present && pic_total_curr > 1 {
                    let bits = ceil_log2(pic_total_curr) as usize;
                    if b.flag()? {
                        b.skip(bits * l0 as usize)?;
                    }
                    if bi && b.flag()? {
                        b.skip(bits * l1 as usize)?;
                    }
                }
                if bi {
                    b.flag()?; // mvd_l1_zero_flag
                }
                if pps.cabac_init_present {
                    b.flag()?;
                }
                if temporal_mvp {
                    let from_l0 = if bi { b.flag()? } else { true };
                    if (from_l0 && l0 > 1) || (!from_l0 && l1 > 1) {
                        b.ue()?; // collocated_ref_idx
                    }
                }
                if (pps.weighted_pred && p) || (pps.weighted_bipred && bi) {
                    pred_weight_table(&mut b, sps.chroma_array_type != 0, l0, bi.then_some(l1))?;
                }
                b.ue()?; // five_minus_max_num_merge_cand
            }
            b.se()?; // slice_qp_delta
            if pps.slice_chroma_qp_offsets_present {
                b.se()?;
                b.se()?;
            }
            if pps.chroma_qp_offset_list {
                b.flag()?;
            }
            let mut deblocking_disabled = pps.deblocking_disabled;
            if pps.deblocking_override_enabled && b.flag()? {
                deblocking_disabled = b.flag()?;
                if !deblocking_disabled {
                    b.se()?;
                    b.se()?;
                }
            }
            if pps.loop_filter_across_slices && (sao_luma || sao_chroma || !deblocking_disabled) {
                b.flag()?;
            }
        }
        if pps.tiles_or_wavefronts {
            let n = bounded(&mut b, 4096, "slice: num_entry_point_offsets")?;
            if n > 0 {
                let len = bounded(&mut b, 31, "slice: offset_len_minus1")? + 1;
                b.skip(n as usize * len as usize)?;
            }
        }
        if pps.header_extension_present {
            let n = bounded(&mut b, 256, "slice: slice_segment_header_extension_length")?;
            b.skip(8 * n as usize)?;
        }
        // byte_alignment(): the check that everything above was read as written.
        if !b.flag()? {
            return Ok(None);
        }
        while b.position() % 8 != 0 {
            if b.flag()? {
                return Ok(None);
            }
        }
        Ok(Some(b.position()))
    }
}

fn pred_weight_table(
    b: &mut BitReader<'_>,
    chroma: bool,
    l0: u32,
    l1: Option<u32>,
) -> Result<(), Mp4Error> {
    b.ue()?; // luma_log2_weight_denom
    if chroma {
        b.se()?;
    }
    for n in std::iter::once(l0).chain(l1) {
        let mut luma = Vec::with_capacity(n as usize);
        for _ in 0..n {
            luma.push(b.flag()?);
        }
        let mut chroma_flags = vec![false; n as usize];
        if chroma {
            for f in chroma_flags.iter_mut() {
                *f = b.flag()?;
            }
        }
        for i in 0..n as usize {
            if luma[i] {
                b.se()?;
                b.se()?;
            }
            if chroma_flags[i] {
                for _ in 0..4 {
                    b.se()?;
                }
            }
        }
    }
    Ok(())
}

/// `st_ref_pic_set(idx)` (H.265 §7.3.7, semantics §7.4.8): the set coded at `idx`, given the
/// sets before it. `in_slice`: coded in a slice header (`idx` equals the SPS's count).
fn parse_rps(
    b: &mut BitReader<'_>,
    idx: usize,
    sets: &[RefPicSet],
    in_slice: bool,
) -> Result<RefPicSet, Mp4Error> {
    if idx != 0 && b.flag()? {
        // inter_ref_pic_set_prediction_flag
        let delta_idx = if in_slice {
            bounded(b, idx as u32 - 1, "RPS: delta_idx_minus1")? as usize + 1
        } else {
            1
        };
        let sign = b.flag()?;
        let abs = bounded(b, 1 << 15, "RPS: abs_delta_rps_minus1")? as i32 + 1;
        let delta_rps = if sign { -abs } else { abs };
        let Some(reference) = idx.checked_sub(delta_idx).and_then(|r| sets.get(r)) else {
            return Err(b.error("RPS: reference set out of range"));
        };
        let n = reference.num_delta_pocs();
        let mut used = Vec::with_capacity(n + 1);
        let mut use_delta = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            let u = b.flag()?;
            used.push(u);
            use_delta.push(if u { true } else { b.flag()? });
        }
        let negatives = reference.s0.len();
        let mut out = RefPicSet::default();
        // §7.4.8, equations 7-61 and 7-62.
        for j in (0..reference.s1.len()).rev() {
            let d = reference.s1[j].0 + delta_rps;
            if d < 0 && use_delta[negatives + j] {
                out.s0.push((d, used[negatives + j]));
            }
        }
        if delta_rps < 0 && use_delta[n] {
            out.s0.push((delta_rps, used[n]));
        }
        for j in 0..negatives {
            let d = reference.s0[j].0 + delta_rps;
            if d < 0 && use_delta[j] {
                out.s0.push((d, used[j]));
            }
        }
        for j in (0..negatives).rev() {
            let d = reference.s0[j].0 + delta_rps;
            if d > 0 && use_delta[j] {
                out.s1.push((d, used[j]));
            }
        }
        if delta_rps > 0 && use_delta[n] {
            out.s1.push((delta_rps, used[n]));
        }
        for j in 0..reference.s1.len() {
            let d = reference.s1[j].0 + delta_rps;
            if d > 0 && use_delta[negatives + j] {
                out.s1.push((d, used[negatives + j]));
            }
        }
        if out.num_delta_pocs() > 32 {
            return Err(b.error("RPS: too many pictures"));
        }
        return Ok(out);
    }
    let negatives = bounded(b, 16, "RPS: num_negative_pics")?;
    let positives = bounded(b, 16, "RPS: num_positive_pics")?;
    let mut out = RefPicSet::default();
    let mut poc = 0i32;
    for _ in 0..negatives {
        poc -= bounded(b, 1 << 15, "RPS: delta_poc_s0_minus1")? as i32 + 1;
        out.s0.push((poc, b.flag()?));
    }
    poc = 0;
    for _ in 0..positives {
        poc += bounded(b, 1 << 15, "RPS: delta_poc_s1_minus1")? as i32 + 1;
        out.s1.push((poc, b.flag()?));
    }
    Ok(out)
}

fn skip_scaling_list_data(b: &mut BitReader<'_>) -> Result<(), Mp4Error> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !b.flag()? {
                b.ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coefs = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    b.se()?;
                }
                for _ in 0..coefs {
                    b.se()?;
                }
            }
        }
    }
    Ok(())
}

/// What slice headers need of an SPS (unescaped, 2-byte header included).
fn parse_sps(rbsp: &[u8]) -> Result<Sps, Mp4Error> {
    let mut b = reader(rbsp);
    b.skip(16)?;
    b.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits_u8(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(b.error("SPS: sps_max_sub_layers_minus1 above 6"));
    }
    b.flag()?;
    parse_profile_tier_level(&mut b, max_sub_layers_minus1)?;
    let id = bounded(&mut b, 15, "SPS: id")?;
    let chroma_format_idc = bounded(&mut b, 3, "SPS: chroma_format_idc")?;
    let separate_colour_plane = chroma_format_idc == 3 && b.flag()?;
    let width = b.ue()?;
    let height = b.ue()?;
    if b.flag()? {
        for _ in 0..4 {
            b.ue()?;
        }
    }
    b.ue()?;
    b.ue()?; // bit depths
    let log2_max_poc_lsb = bounded(&mut b, 12, "SPS: log2_max_pic_order_cnt_lsb_minus4")? + 4;
    let all_layers = b.flag()?;
    let first = if all_layers { 0 } else { max_sub_layers_minus1 };
    for _ in first..=max_sub_layers_minus1 {
        b.ue()?;
        b.ue()?;
        b.ue()?;
    }
    let log2_min_cb = bounded(&mut b, 4, "SPS: log2_min_luma_coding_block_size_minus3")? + 3;
    let log2_ctb =
        log2_min_cb + bounded(&mut b, 4, "SPS: log2_diff_max_min_luma_coding_block_size")?;
    if log2_ctb > 7 {
        return Err(b.error("SPS: coding tree block above 128"));
    }
    b.ue()?;
    b.ue()?;
    b.ue()?;
    b.ue()?;
    if b.flag()? && b.flag()? {
        skip_scaling_list_data(&mut b)?;
    }
    b.flag()?; // amp_enabled_flag
    let sao = b.flag()?;
    if b.flag()? {
        // pcm_enabled_flag
        b.skip(8)?;
        b.ue()?;
        b.ue()?;
        b.flag()?;
    }
    let num_sets = bounded(&mut b, 64, "SPS: num_short_term_ref_pic_sets")? as usize;
    let mut rps = Vec::with_capacity(num_sets);
    for i in 0..num_sets {
        let set = parse_rps(&mut b, i, &rps, false)?;
        rps.push(set);
    }
    let long_term_present = b.flag()?;
    let mut lt_used = Vec::new();
    if long_term_present {
        let n = bounded(&mut b, 32, "SPS: num_long_term_ref_pics_sps")?;
        for _ in 0..n {
            b.skip(log2_max_poc_lsb as usize)?;
            lt_used.push(b.flag()?);
        }
    }
    let temporal_mvp = b.flag()?;
    let ctb = 1u32 << log2_ctb;
    let pic_size_in_ctbs = width.div_ceil(ctb).saturating_mul(height.div_ceil(ctb));
    Ok(Sps {
        id,
        separate_colour_plane,
        chroma_array_type: if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        },
        pic_size_in_ctbs,
        log2_max_poc_lsb,
        sao,
        rps,
        long_term_present,
        lt_used,
        temporal_mvp,
    })
}

/// What slice headers need of a PPS (unescaped, 2-byte header included).
fn parse_pps(rbsp: &[u8]) -> Result<Pps, Mp4Error> {
    let mut b = reader(rbsp);
    b.skip(16)?;
    let id = bounded(&mut b, 63, "PPS: id")?;
    let sps_id = bounded(&mut b, 15, "PPS: sps id")?;
    let dependent_slice_segments = b.flag()?;
    let output_flag_present = b.flag()?;
    let num_extra_slice_header_bits = b.bits(3)?;
    b.flag()?; // sign_data_hiding_enabled_flag
    let cabac_init_present = b.flag()?;
    let num_ref_idx_l0_default = bounded(&mut b, 14, "PPS: l0 default")? + 1;
    let num_ref_idx_l1_default = bounded(&mut b, 14, "PPS: l1 default")? + 1;
    b.se()?; // init_qp_minus26
    b.flag()?;
    let transform_skip = b.flag()?;
    if b.flag()? {
        b.ue()?; // diff_cu_qp_delta_depth
    }
    b.se()?;
    b.se()?;
    let slice_chroma_qp_offsets_present = b.flag()?;
    let weighted_pred = b.flag()?;
    let weighted_bipred = b.flag()?;
    b.flag()?; // transquant_bypass_enabled_flag
    let tiles = b.flag()?;
    let wavefronts = b.flag()?;
    if tiles {
        let cols = bounded(&mut b, 64, "PPS: tile columns")?;
        let rows = bounded(&mut b, 64, "PPS: tile rows")?;
        if !b.flag()? {
            for _ in 0..cols + rows {
                b.ue()?;
            }
        }
        b.flag()?;
    }
    let loop_filter_across_slices = b.flag()?;
    let (mut deblocking_override_enabled, mut deblocking_disabled) = (false, false);
    if b.flag()? {
        deblocking_override_enabled = b.flag()?;
        deblocking_disabled = b.flag()?;
        if !deblocking_disabled {
            b.se()?;
            b.se()?;
        }
    }
    if b.flag()? {
        skip_scaling_list_data(&mut b)?;
    }
    let lists_modification_present = b.flag()?;
    b.ue()?; // log2_parallel_merge_level_minus2
    let header_extension_present = b.flag()?;
    let mut chroma_qp_offset_list = false;
    if b.flag()? {
        let range = b.flag()?;
        let others = b.bits(7)?;
        if others != 0 {
            // Multi-layer, 3D or screen-content extensions: their slice syntax is not read.
            return Err(b.error("PPS: extensions beyond the range extension"));
        }
        if range {
            if transform_skip {
                b.ue()?;
            }
            b.flag()?;
            chroma_qp_offset_list = b.flag()?;
        }
    }
    Ok(Pps {
        id,
        sps_id,
        dependent_slice_segments,
        output_flag_present,
        num_extra_slice_header_bits,
        cabac_init_present,
        num_ref_idx_l0_default,
        num_ref_idx_l1_default,
        slice_chroma_qp_offsets_present,
        weighted_pred,
        weighted_bipred,
        tiles_or_wavefronts: tiles || wavefronts,
        loop_filter_across_slices,
        deblocking_override_enabled,
        deblocking_disabled,
        lists_modification_present,
        header_extension_present,
        chroma_qp_offset_list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slice of the encoder-made HEVC fixture reads to a valid `byte_alignment()`.
    #[test]
    fn real_slice_headers_end_at_their_byte_alignment() {
        use crate::index::build_index;
        use crate::mp4::codec::{parse_sample_entry, CodecConfig};
        use crate::mp4::Reader;
        use crate::source::{MmapSource, Source};
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let src = MmapSource::open(&dir.join("hevc.mp4")).unwrap();
        let idx = build_index(&src).unwrap();
        let track = &idx.tracks[0];
        let (h, body) = Reader::new(&track.sample_entry, 0)
            .next_box_body()
            .unwrap()
            .unwrap();
        let CodecConfig::Hevc(hvcc) = parse_sample_entry(h.fourcc, body).unwrap().codec else {
            panic!("not HEVC");
        };
        let units: Vec<&[u8]> = hvcc
            .arrays
            .iter()
            .flat_map(|a| a.nal_units.iter().map(|u| &u[..]))
            .collect();
        let mut headers = HevcSliceHeaders::new(units);
        assert_eq!((headers.sps.len(), headers.pps.len()), (1, 1));
        let mut slices = 0;
        for s in track.samples(0..track.sample_count()) {
            let data = src.bytes(s.offset, s.size as usize).unwrap();
            let mut at = 0;
            while at + 4 <= data.len() {
                let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
                let nal = &data[at + 4..at + 4 + len];
                at += 4 + len;
                if (nal[0] >> 1) & 0x3f > 31 {
                    headers.observe(nal);
                    continue;
                }
                let n = headers.header_len(nal);
                assert!(n.is_some_and(|n| n > 2 && n < 200), "slice {slices}: {n:?}");
                slices += 1;
            }
        }
        assert!(slices >= 50, "{slices}");
    }

    #[test]
    fn inter_predicted_sets_follow_the_derivation() {
        // Set 0: -1 (used), -3 (unused), +2 (used). Set 1 predicted from it with deltaRps -1,
        // keeping every picture and the reference itself.
        let reference = RefPicSet {
            s0: vec![(-1, true), (-3, false)],
            s1: vec![(2, true)],
        };
        let mut w = super::super::bits::BitWriter::new();
        w.flag(true); // inter_ref_pic_set_prediction_flag
        w.flag(true); // delta_rps_sign: negative
        w.ue(0); // abs_delta_rps_minus1: 1
        for _ in 0..4 {
            w.flag(true); // used_by_curr_pic_flag
        }
        let data = w.finish();
        let mut b = reader(&data);
        let set = parse_rps(&mut b, 1, std::slice::from_ref(&reference), false).unwrap();
        // 2-1 = +1; the reference at -1; -1-1 = -2; -3-1 = -4.
        assert_eq!(set.s0, vec![(-1, true), (-2, true), (-4, true)]);
        assert_eq!(set.s1, vec![(1, true)]);
        assert_eq!(set.used(), 4);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x9e37_79b9u32;
        let mut headers = HevcSliceHeaders::default();
        for len in 0..400 {
            let nal: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            headers.observe(&nal);
            if let Some(n) = headers.header_len(&nal) {
                assert!(n <= nal.len());
            }
        }
    }
}
