//! H.264/AVC: the `avcC` decoder configuration record (ISO/IEC 14496-15 §5.3.3) and the
//! sequence parameter set fields the packagers need (ITU-T H.264 §7.3.2.1.1, VUI Annex E.1.1).

use super::bits::{unescape_rbsp, BitReader};
use super::{
    fitting, read_nal_list, too_large, unsupported, write_box, write_nal_list, MAX_PARAMETER_SETS,
};
use crate::mp4::{FourCC, Mp4Error, Reader};

const AVCC: FourCC = FourCC::new(b"avcC");

/// The AVC decoder configuration record (`avcC`, ISO/IEC 14496-15 §5.3.3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (the SPS `profile_idc`).
    pub profile_idc: u8,
    /// `profile_compatibility`: the SPS `constraint_set0..5_flag` byte.
    pub constraint_flags: u8,
    /// `AVCLevelIndication`.
    pub level_idc: u8,
    /// Bytes of the length prefix of each NAL unit in samples: 1, 2 or 4.
    pub nal_length_size: u8,
    /// Sequence parameter set NAL units (with their NAL header byte).
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter set NAL units.
    pub pps: Vec<Vec<u8>>,
    /// The chroma/bit-depth trailer written for High profiles.
    pub format_ext: Option<AvcFormatExt>,
    /// What the first SPS says; `None` when the record carries no SPS (possible for `avc3`).
    pub sps_info: Option<SpsInfo>,
}

/// The High-profile trailer of `avcC` (ISO/IEC 14496-15 §5.3.3.1.2: `chroma_format`,
/// `bit_depth_*_minus8`, `sequenceParameterSetExtNALUnit`).
#[derive(Debug, Clone, PartialEq)]
pub struct AvcFormatExt {
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// SPS extension NAL units (type 13).
    pub sps_ext: Vec<Vec<u8>>,
}

/// Fields of an H.264 sequence parameter set (`seq_parameter_set_data`, H.264 §7.3.2.1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    /// `constraint_set0_flag` .. `constraint_set5_flag` and the two reserved bits, as a byte.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Displayed width in luma samples, after frame cropping.
    pub width: u32,
    /// Displayed frame height in luma samples, after frame cropping (both fields for
    /// interlaced coding).
    pub height: u32,
    /// `frame_mbs_only_flag`: false when the stream may hold field pictures.
    pub frame_mbs_only: bool,
    /// Sample aspect ratio from the VUI (`aspect_ratio_idc`, or `Extended_SAR`).
    pub sar: Option<(u32, u32)>,
    /// Frame rate from the VUI timing info: `time_scale / (2 * num_units_in_tick)`, reduced.
    pub frame_rate: Option<(u32, u32)>,
    /// What slice headers need to be read (their length is what encryption leaves clear).
    pub slice: SpsSliceFields,
}

/// The SPS fields that shape a slice header (H.264 §7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpsSliceFields {
    pub sps_id: u32,
    pub log2_max_frame_num: u32,
    pub pic_order_cnt_type: u32,
    pub log2_max_pic_order_cnt_lsb: u32,
    pub delta_pic_order_always_zero: bool,
    pub frame_mbs_only: bool,
    pub separate_colour_plane: bool,
    /// `ChromaArrayType`: 0 for monochrome or separately coded colour planes.
    pub chroma_array_type: u32,
}

/// Profiles whose SPS carries `chroma_format_idc`, bit depths and scaling matrices (H.264
/// §7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Table E-1 (`aspect_ratio_idc` 1..=16).
const SAR_TABLE: [(u32, u32); 16] = [
    (1, 1),
    (12, 11),
    (10, 11),
    (16, 11),
    (40, 33),
    (24, 11),
    (20, 11),
    (32, 11),
    (80, 33),
    (18, 11),
    (15, 11),
    (64, 33),
    (160, 99),
    (4, 3),
    (3, 2),
    (2, 1),
];

/// Parses an `avcC` body.
pub(super) fn parse_avcc(mut r: Reader<'_>) -> Result<AvcConfig, Mp4Error> {
    let version = r.u8()?;
    if version != 1 {
        return Err(unsupported(&r, "avcC configurationVersion"));
    }
    let profile_idc = r.u8()?;
    let constraint_flags = r.u8()?;
    let level_idc = r.u8()?;
    let nal_length_size = (r.u8()? & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(r.error("NAL unit length size of 3 bytes (14496-15 allows 1, 2 or 4)"));
    }
    let num_sps = usize::from(r.u8()? & 0x1f);
    let sps_offset = r.offset().saturating_add(2);
    let sps = read_nal_list(&mut r, num_sps, "sequence parameter sets")?;
    let num_pps = usize::from(r.u8()?);
    if num_pps > MAX_PARAMETER_SETS {
        return Err(too_large(&r, "picture parameter sets", num_pps));
    }
    let pps = read_nal_list(&mut r, num_pps, "picture parameter sets")?;
    // ffmpeg and x264 write the trailer for every profile but Baseline/Main/Extended; older
    // muxers omit it even for High, so it is read when present.
    let format_ext = if r.remaining() >= 4 && !matches!(profile_idc, 66 | 77 | 88) {
        let chroma_format_idc = r.u8()? & 0x03;
        let bit_depth_luma = (r.u8()? & 0x07) + 8;
        let bit_depth_chroma = (r.u8()? & 0x07) + 8;
        let count = usize::from(r.u8()?);
        if count > MAX_PARAMETER_SETS {
            return Err(too_large(&r, "SPS extensions", count));
        }
        let sps_ext = read_nal_list(&mut r, count, "SPS extensions")?;
        Some(AvcFormatExt {
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            sps_ext,
        })
    } else {
        None
    };
    if !r.is_empty() {
        tracing::warn!(
            offset = r.offset(),
            bytes = r.remaining(),
            "avcC: ignoring trailing bytes"
        );
    }
    let sps_info = match sps.first() {
        Some(nal) => Some(parse_sps(nal, AVCC, sps_offset)?),
        None => None,
    };
    Ok(AvcConfig {
        profile_idc,
        constraint_flags,
        level_idc,
        nal_length_size,
        sps,
        pps,
        format_ext,
        sps_info,
    })
}

/// Writes an `avcC` box.
pub(super) fn write_avcc(config: &AvcConfig, out: &mut Vec<u8>) {
    write_box(out, AVCC, |out| {
        out.push(1);
        out.push(config.profile_idc);
        out.push(config.constraint_flags);
        out.push(config.level_idc);
        out.push(0xfc | nal_length_code(config.nal_length_size));
        let sps = fitting(&config.sps, 31);
        out.push(0xe0 | sps.len() as u8);
        write_nal_list(out, &sps);
        let pps = fitting(&config.pps, 255);
        out.push(pps.len() as u8);
        write_nal_list(out, &pps);
        if let Some(ext) = &config.format_ext {
            out.push(0xfc | (ext.chroma_format_idc & 0x03));
            out.push(0xf8 | (ext.bit_depth_luma.saturating_sub(8) & 0x07));
            out.push(0xf8 | (ext.bit_depth_chroma.saturating_sub(8) & 0x07));
            let sps_ext = fitting(&ext.sps_ext, 255);
            out.push(sps_ext.len() as u8);
            write_nal_list(out, &sps_ext);
        }
    });
}

/// `lengthSizeMinusOne` for a NAL length size (anything but 1 and 2 becomes 4).
pub(super) fn nal_length_code(size: u8) -> u8 {
    match size {
        1 => 0,
        2 => 1,
        _ => 3,
    }
}

impl AvcConfig {
    /// Builds a configuration record from parameter sets (live ingest, Smooth
    /// `CodecPrivateData`): profile, compatibility and level come from the first SPS.
    /// SPS extension NAL units (type 13) go into the High-profile trailer.
    pub fn from_parameter_sets(
        sps: Vec<Vec<u8>>,
        pps: Vec<Vec<u8>>,
        sps_ext: Vec<Vec<u8>>,
        nal_length_size: u8,
    ) -> Result<AvcConfig, Mp4Error> {
        let first = sps.first().ok_or(Mp4Error::Missing {
            missing: FourCC::new(b"SPS "),
            parent: AVCC,
            offset: 0,
        })?;
        let info = parse_sps(first, AVCC, 0)?;
        let format_ext = (!matches!(info.profile_idc, 66 | 77 | 88)).then_some(AvcFormatExt {
            chroma_format_idc: info.chroma_format_idc,
            bit_depth_luma: info.bit_depth_luma,
            bit_depth_chroma: info.bit_depth_chroma,
            sps_ext,
        });
        Ok(AvcConfig {
            profile_idc: info.profile_idc,
            constraint_flags: info.constraint_flags,
            level_idc: info.level_idc,
            nal_length_size,
            sps,
            pps,
            format_ext,
            sps_info: Some(info),
        })
    }
}

/// Parses an H.264 SPS NAL unit (header byte included). `fourcc` and `offset` locate the NAL
/// in errors.
pub fn parse_sps(nal: &[u8], fourcc: FourCC, offset: u64) -> Result<SpsInfo, Mp4Error> {
    let rbsp = unescape_rbsp(nal);
    let mut b = BitReader::new(&rbsp, fourcc, offset);
    let header = b.bits_u8(8)?;
    if header & 0x80 != 0 || header & 0x1f != 7 {
        return Err(b.error("SPS: NAL unit type is not 7"));
    }
    let profile_idc = b.bits_u8(8)?;
    let constraint_flags = b.bits_u8(8)?;
    let level_idc = b.bits_u8(8)?;
    let sps_id = b.ue()?;
    if sps_id > 31 {
        return Err(b.error("SPS: seq_parameter_set_id above 31"));
    }
    let mut chroma_format_idc = 1u32;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8u32;
    let mut bit_depth_chroma = 8u32;
    if has_chroma_info(profile_idc) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc > 3 {
            return Err(b.error("SPS: chroma_format_idc above 3"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = b.flag()?;
        }
        let luma = b.ue()?;
        let chroma = b.ue()?;
        if luma > 6 || chroma > 6 {
            return Err(b.error("SPS: bit depth above 14"));
        }
        bit_depth_luma = 8 + luma;
        bit_depth_chroma = 8 + chroma;
        b.flag()?; // qpprime_y_zero_transform_bypass_flag
        if b.flag()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.flag()? {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let log2_max_frame_num = b.ue()?.saturating_add(4);
    if log2_max_frame_num > 16 {
        return Err(b.error("SPS: log2_max_frame_num_minus4 above 12"));
    }
    let pic_order_cnt_type = b.ue()?;
    let mut log2_max_pic_order_cnt_lsb = 0;
    let mut delta_pic_order_always_zero = false;
    match pic_order_cnt_type {
        0 => {
            log2_max_pic_order_cnt_lsb = b.ue()?.saturating_add(4);
            if log2_max_pic_order_cnt_lsb > 16 {
                return Err(b.error("SPS: log2_max_pic_order_cnt_lsb_minus4 above 12"));
            }
        }
        1 => {
            delta_pic_order_always_zero = b.flag()?;
            b.se()?; // offset_for_non_ref_pic
            b.se()?; // offset_for_top_to_bottom_field
            let cycle = b.ue()?;
            if cycle > 255 {
                return Err(b.error("SPS: num_ref_frames_in_pic_order_cnt_cycle above 255"));
            }
            for _ in 0..cycle {
                b.se()?;
            }
        }
        2 => {}
        _ => return Err(b.error("SPS: pic_order_cnt_type above 2")),
    }
    b.ue()?; // max_num_ref_frames
    b.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = b.ue()?.checked_add(1);
    let height_map_units = b.ue()?.checked_add(1);
    let frame_mbs_only = b.flag()?;
    if !frame_mbs_only {
        b.flag()?; // mb_adaptive_frame_field_flag
    }
    b.flag()?; // direct_8x8_inference_flag
    let crop = if b.flag()? {
        [b.ue()?, b.ue()?, b.ue()?, b.ue()?]
    } else {
        [0; 4]
    };

    // H.264 §7.4.2.1.1, frame_crop_*_offset semantics.
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_width, sub_height) = match chroma_array_type {
        1 => (2u32, 2u32),
        2 => (2, 1),
        _ => (1, 1),
    };
    let field_factor = if frame_mbs_only { 1u32 } else { 2 };
    let size_error = || b.error("SPS: picture size or cropping out of range");
    let coded_width = width_mbs.and_then(|w| w.checked_mul(16));
    let coded_height = height_map_units
        .and_then(|h| h.checked_mul(16))
        .and_then(|h| h.checked_mul(field_factor));
    let crop_x = crop[0]
        .checked_add(crop[1])
        .and_then(|c| c.checked_mul(sub_width));
    let crop_y = crop[2]
        .checked_add(crop[3])
        .and_then(|c| c.checked_mul(sub_height))
        .and_then(|c| c.checked_mul(field_factor));
    let width = coded_width
        .zip(crop_x)
        .and_then(|(w, c)| w.checked_sub(c))
        .filter(|&w| w > 0)
        .ok_or_else(size_error)?;
    let height = coded_height
        .zip(crop_y)
        .and_then(|(h, c)| h.checked_sub(c))
        .filter(|&h| h > 0)
        .ok_or_else(size_error)?;

    let (sar, frame_rate) = if b.flag()? {
        parse_vui(&mut b)?
    } else {
        (None, None)
    };
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: bit_depth_luma as u8,
        bit_depth_chroma: bit_depth_chroma as u8,
        width,
        height,
        frame_mbs_only,
        sar,
        frame_rate,
        slice: SpsSliceFields {
            sps_id,
            log2_max_frame_num,
            pic_order_cnt_type,
            log2_max_pic_order_cnt_lsb,
            delta_pic_order_always_zero,
            frame_mbs_only,
            separate_colour_plane,
            chroma_array_type,
        },
    })
}

/// Skips a `scaling_list()` (H.264 §7.3.2.1.1.1): delta-coded entries until `nextScale`
/// becomes 0 (the rest repeat the last value).
fn skip_scaling_list(b: &mut BitReader<'_>, size: usize) -> Result<(), Mp4Error> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            if !(-128..=127).contains(&delta) {
                return Err(b.error("SPS: delta_scale out of range"));
            }
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

type VuiInfo = (Option<(u32, u32)>, Option<(u32, u32)>);

/// Reads the VUI up to and including the timing info (H.264 Annex E.1.1); the HRD and
/// bitstream restriction parts that follow are not needed.
fn parse_vui(b: &mut BitReader<'_>) -> Result<VuiInfo, Mp4Error> {
    let mut sar = None;
    if b.flag()? {
        let idc = b.bits_u8(8)?;
        sar = match idc {
            255 => {
                let w = b.bits(16)?;
                let h = b.bits(16)?;
                (w != 0 && h != 0).then_some((w, h))
            }
            0 => None,
            n => SAR_TABLE.get(usize::from(n) - 1).copied(),
        };
    }
    if b.flag()? {
        b.flag()?; // overscan_appropriate_flag
    }
    if b.flag()? {
        b.skip(4)?; // video_format, video_full_range_flag
        if b.flag()? {
            b.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coefficients
        }
    }
    if b.flag()? {
        b.ue()?; // chroma_sample_loc_type_top_field
        b.ue()?; // chroma_sample_loc_type_bottom_field
    }
    let mut frame_rate = None;
    if b.flag()? {
        let num_units_in_tick = b.bits(32)?;
        let time_scale = b.bits(32)?;
        b.flag()?; // fixed_frame_rate_flag
        frame_rate = reduce(u64::from(time_scale), 2 * u64::from(num_units_in_tick));
    }
    Ok((sar, frame_rate))
}

/// `num / den` in lowest terms, `None` when either is zero or does not fit `u32`.
pub(super) fn reduce(num: u64, den: u64) -> Option<(u32, u32)> {
    if num == 0 || den == 0 {
        return None;
    }
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Some((u32::try_from(num / a).ok()?, u32::try_from(den / a).ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::bits::BitWriter;
    use super::super::test_util::hex;
    use super::*;

    fn sps(s: &str) -> SpsInfo {
        parse_sps(&hex(s), AVCC, 0).unwrap()
    }

    #[test]
    fn x264_high_720p_from_the_brief() {
        let info =
            sps("67 64 00 1f ac d9 40 50 05 bb 01 10 00 00 03 00 10 00 00 03 03 20 f1 83 19 60");
        assert_eq!((info.width, info.height), (1280, 720));
        assert_eq!((info.profile_idc, info.level_idc), (100, 31));
        assert_eq!(info.sar, Some((1, 1)));
        assert_eq!(info.frame_rate, Some((25, 1)));
        assert_eq!((info.chroma_format_idc, info.bit_depth_luma), (1, 8));
        assert!(info.frame_mbs_only);
    }

    /// SPS written by ffmpeg 5.1 + libx264 (`testsrc2`), checked against ffprobe.
    #[test]
    fn x264_sps_variants() {
        // 640x360 High@3.0, 25 fps.
        let info = sps("6764001eacd940a02ff97011000003000100000300320f162d96");
        assert_eq!((info.width, info.height, info.level_idc), (640, 360, 30));
        assert_eq!(info.frame_rate, Some((25, 1)));
        // 1920x1080 (coded 1088, cropped), 30000/1001 fps.
        let info = sps("67640028acd940780227e5c04400000fa40003a9803c60c658");
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.frame_rate, Some((30000, 1001)));
        // Interlaced 1080i: frame_mbs_only = 0, cropping in field pairs.
        let info = sps("67640028acd94078044fde0220000003002000000643e2c5b2c0");
        assert_eq!((info.width, info.height), (1920, 1080));
        assert!(!info.frame_mbs_only);
        assert_eq!(info.frame_rate, Some((25, 1)));
        // Extended_SAR 64:45 and SAR table entry 4 (16:11).
        assert_eq!(
            sps("6764001eacd940b4126ffc010000b440000003004000000c83c58b6580").sar,
            Some((64, 45))
        );
        assert_eq!(
            sps("6764001eacd940b4126c1040000003004000000c83c58b6580").sar,
            Some((16, 11))
        );
        // High 4:2:2, High 4:4:4 Predictive, High 10.
        let info = sps("677a001ebcd940a02ff89c0440000003004000000c83c58b6580");
        assert_eq!((info.profile_idc, info.chroma_format_idc), (122, 2));
        assert_eq!((info.width, info.height), (640, 360));
        let info = sps("67f4001e919b281405ff1380880000030008000003019078b16cb0");
        assert_eq!((info.profile_idc, info.chroma_format_idc), (244, 3));
        assert_eq!((info.width, info.height), (640, 360));
        let info = sps("676e001ea6cd940a02ff97011000000300100000030320f162d960");
        assert_eq!((info.profile_idc, info.bit_depth_luma), (110, 10));
        assert_eq!((info.width, info.height), (640, 360));
        // Constrained Baseline: no chroma info in the SPS.
        let info = sps("6742c01ed900a02ff97011000003000100000300320f162e48");
        assert_eq!((info.profile_idc, info.constraint_flags), (66, 0xc0));
        assert_eq!((info.width, info.height), (640, 360));
    }

    /// A hand-written SPS exercising the paths x264 never takes: scaling lists (explicit and
    /// "use default"), pic_order_cnt_type 1, cropping on 4:2:0.
    #[test]
    fn scaling_lists_and_poc_type_1() {
        let mut w = BitWriter::new();
        w.put(0x67, 8);
        w.put(100, 8);
        w.put(0, 8);
        w.put(40, 8);
        w.ue(0); // sps id
        w.ue(1); // chroma_format_idc
        w.ue(0);
        w.ue(0);
        w.flag(false);
        w.flag(true); // seq_scaling_matrix_present_flag
        for i in 0..8 {
            w.flag(i % 2 == 0);
            if i % 2 == 0 {
                let size = if i < 6 { 16 } else { 64 };
                if i == 4 {
                    w.se(-8); // nextScale = 0: use the default list
                } else {
                    for j in 0..size {
                        w.se(if j % 3 == 0 { 5 } else { -2 });
                    }
                }
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(1); // pic_order_cnt_type
        w.flag(false);
        w.se(-3);
        w.se(7);
        w.ue(3);
        for v in [1, -1, 2] {
            w.se(v);
        }
        w.ue(4); // max_num_ref_frames
        w.flag(false);
        w.ue(79); // 1280
        w.ue(44); // 720
        w.flag(true); // frame_mbs_only
        w.flag(true);
        w.flag(true); // cropping
        for c in [2, 4, 0, 4] {
            w.ue(c);
        }
        w.flag(false); // no VUI
        w.flag(true); // rbsp stop bit
        let nal = w.finish();
        let info = parse_sps(&nal, AVCC, 0).unwrap();
        assert_eq!((info.width, info.height), (1280 - 12, 720 - 8));
        assert_eq!((info.sar, info.frame_rate), (None, None));
        // Cut anywhere: an error, never a panic.
        for len in 0..nal.len() - 1 {
            assert!(parse_sps(&nal[..len], AVCC, 0).is_err(), "len {len}");
        }
    }

    #[test]
    fn bad_sps_values() {
        assert!(parse_sps(&hex("68 64 00 1f"), AVCC, 0).is_err());
        // Cropping larger than the picture.
        let mut w = BitWriter::new();
        w.put(0x67, 8);
        w.put(66, 8);
        w.put(0, 8);
        w.put(30, 8);
        for v in [0, 0, 2, 1] {
            w.ue(v); // sps id, log2_max_frame_num, pic_order_cnt_type 2, max_num_ref_frames
        }
        w.flag(false);
        w.ue(0); // 16 wide
        w.ue(0);
        w.flag(true);
        w.flag(true);
        w.flag(true);
        for c in [5, 5, 0, 0] {
            w.ue(c);
        }
        w.flag(false);
        assert!(parse_sps(&w.finish(), AVCC, 0).is_err());
    }

    #[test]
    fn avcc_parse_and_write() {
        let sps_nal = hex("6764000cacd941419f9f011000000300100000030320f1429960");
        let pps_nal = hex("68efbcb0");
        let mut body = hex("01 64 00 0c ff e1");
        body.extend_from_slice(&(sps_nal.len() as u16).to_be_bytes());
        body.extend_from_slice(&sps_nal);
        body.extend_from_slice(&[1, 0, 4]);
        body.extend_from_slice(&pps_nal);
        body.extend_from_slice(&hex("fd f8 f8 00"));
        let config = parse_avcc(Reader::new(&body, 0).with_context(AVCC)).unwrap();
        assert_eq!(config.nal_length_size, 4);
        assert_eq!(config.sps, vec![sps_nal]);
        assert_eq!(config.pps, vec![pps_nal]);
        let info = config.sps_info.clone().unwrap();
        assert_eq!((info.width, info.height), (320, 180));
        assert_eq!(
            config.format_ext,
            Some(AvcFormatExt {
                chroma_format_idc: 1,
                bit_depth_luma: 8,
                bit_depth_chroma: 8,
                sps_ext: vec![]
            })
        );
        let mut out = Vec::new();
        write_avcc(&config, &mut out);
        assert_eq!(&out[8..], &body[..]);
    }

    #[test]
    fn reduce_fractions() {
        assert_eq!(reduce(60000, 2002), Some((30000, 1001)));
        assert_eq!(reduce(50, 2), Some((25, 1)));
        assert_eq!(reduce(0, 2), None);
        assert_eq!(reduce(1 << 40, 3), None);
    }
}
