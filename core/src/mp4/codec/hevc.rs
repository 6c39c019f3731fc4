//! H.265/HEVC: the `hvcC` decoder configuration record (ISO/IEC 14496-15 §8.3.3) and the
//! sequence parameter set fields up to the picture size (ITU-T H.265 §7.3.2.2).

use std::fmt::Write as _;

use super::avc::nal_length_code;
use super::bits::{unescape_rbsp, BitReader};
use super::{
    fitting, read_nal_list, too_large, unsupported, write_box, write_nal_list, MAX_PARAMETER_SETS,
};
use crate::mp4::{FourCC, Mp4Error, Reader};

const HVCC: FourCC = FourCC::new(b"hvcC");

/// NAL unit types of the parameter sets (H.265 Table 7-1).
pub const HEVC_NAL_VPS: u8 = 32;
pub const HEVC_NAL_SPS: u8 = 33;
pub const HEVC_NAL_PPS: u8 = 34;

/// At most this many NAL unit arrays in one `hvcC` (there are 64 NAL unit types).
const MAX_NAL_ARRAYS: usize = 64;

/// The HEVC decoder configuration record (`hvcC`, ISO/IEC 14496-15 §8.3.3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct HevcConfig {
    /// `general_profile_space` (0..=3).
    pub profile_space: u8,
    /// `general_tier_flag`: true for the High tier.
    pub tier_flag: bool,
    /// `general_profile_idc`.
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags`; flag `j` is bit `31 - j`.
    pub profile_compatibility_flags: u32,
    /// `general_constraint_indicator_flags`, the low 48 bits.
    pub constraint_indicator_flags: u64,
    /// `general_level_idc` (30 × the level number).
    pub level_idc: u8,
    pub min_spatial_segmentation_idc: u16,
    pub parallelism_type: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Average frame rate in frames per 256 seconds; 0 when unspecified.
    pub avg_frame_rate: u16,
    pub constant_frame_rate: u8,
    pub num_temporal_layers: u8,
    pub temporal_id_nested: bool,
    /// Bytes of the length prefix of each NAL unit in samples: 1, 2 or 4.
    pub nal_length_size: u8,
    /// The parameter-set (and SEI) arrays, in file order.
    pub arrays: Vec<HevcNalArray>,
    /// What the first SPS says; `None` when the record carries no SPS (possible for `hev1`).
    pub sps_info: Option<HevcSpsInfo>,
}

/// One NAL unit array of `hvcC`.
#[derive(Debug, Clone, PartialEq)]
pub struct HevcNalArray {
    /// `array_completeness`: every NAL unit of this type is here, none in the samples.
    pub array_completeness: bool,
    pub nal_unit_type: u8,
    pub nal_units: Vec<Vec<u8>>,
}

/// The general part of `profile_tier_level()` (H.265 §7.3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct HevcProfileTierLevel {
    pub profile_space: u8,
    pub tier_flag: bool,
    pub profile_idc: u8,
    pub profile_compatibility_flags: u32,
    pub constraint_indicator_flags: u64,
    pub level_idc: u8,
}

/// Fields of an H.265 sequence parameter set (`seq_parameter_set_rbsp`, H.265 §7.3.2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct HevcSpsInfo {
    pub profile_tier_level: HevcProfileTierLevel,
    /// `sps_max_sub_layers_minus1 + 1`.
    pub max_sub_layers: u8,
    pub temporal_id_nesting: bool,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Width in luma samples after the conformance window.
    pub width: u32,
    /// Height in luma samples after the conformance window.
    pub height: u32,
}

impl HevcConfig {
    /// The NAL units of the arrays of one type, in order.
    pub fn nal_units(&self, nal_unit_type: u8) -> impl Iterator<Item = &Vec<u8>> {
        self.arrays
            .iter()
            .filter(move |a| a.nal_unit_type == nal_unit_type)
            .flat_map(|a| a.nal_units.iter())
    }

    /// Builds a configuration record from parameter sets (live ingest, Smooth
    /// `CodecPrivateData`): profile, tier, level, chroma format and bit depths come from the
    /// first SPS.
    pub fn from_parameter_sets(
        vps: Vec<Vec<u8>>,
        sps: Vec<Vec<u8>>,
        pps: Vec<Vec<u8>>,
        nal_length_size: u8,
    ) -> Result<HevcConfig, Mp4Error> {
        let first = sps.first().ok_or(Mp4Error::Missing {
            missing: FourCC::new(b"SPS "),
            parent: HVCC,
            offset: 0,
        })?;
        let info = parse_hevc_sps(first, HVCC, 0)?;
        let arrays = [
            (HEVC_NAL_VPS, vps),
            (HEVC_NAL_SPS, sps),
            (HEVC_NAL_PPS, pps),
        ]
        .into_iter()
        .filter(|(_, units)| !units.is_empty())
        .map(|(nal_unit_type, nal_units)| HevcNalArray {
            array_completeness: true,
            nal_unit_type,
            nal_units,
        })
        .collect();
        let ptl = &info.profile_tier_level;
        Ok(HevcConfig {
            profile_space: ptl.profile_space,
            tier_flag: ptl.tier_flag,
            profile_idc: ptl.profile_idc,
            profile_compatibility_flags: ptl.profile_compatibility_flags,
            constraint_indicator_flags: ptl.constraint_indicator_flags,
            level_idc: ptl.level_idc,
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            chroma_format_idc: info.chroma_format_idc,
            bit_depth_luma: info.bit_depth_luma,
            bit_depth_chroma: info.bit_depth_chroma,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: info.max_sub_layers,
            temporal_id_nested: info.temporal_id_nesting,
            nal_length_size,
            arrays,
            sps_info: Some(info),
        })
    }

    /// The ISO/IEC 14496-15 Annex E codec string after the sample-entry code: profile space
    /// letter and profile, reversed compatibility flags, tier and level, constraint bytes
    /// without the trailing zero ones (`1.6.L93.B0`).
    pub(super) fn codec_parameters(&self) -> String {
        let mut s = String::new();
        if let Some(letter) = match self.profile_space {
            1 => Some('A'),
            2 => Some('B'),
            3 => Some('C'),
            _ => None,
        } {
            s.push(letter);
        }
        let _ = write!(
            s,
            "{}.{:X}.{}{}",
            self.profile_idc,
            self.profile_compatibility_flags.reverse_bits(),
            if self.tier_flag { 'H' } else { 'L' },
            self.level_idc
        );
        let bytes = self.constraint_indicator_flags.to_be_bytes();
        let constraint = bytes.get(2..).unwrap_or_default();
        let used = constraint
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1);
        for b in constraint.iter().take(used) {
            let _ = write!(s, ".{b:02X}");
        }
        s
    }
}

/// Parses an `hvcC` body.
pub(super) fn parse_hvcc(mut r: Reader<'_>) -> Result<HevcConfig, Mp4Error> {
    // Some early muxers wrote configurationVersion 0 with the same layout.
    if r.u8()? > 1 {
        return Err(unsupported(&r, "hvcC configurationVersion"));
    }
    let b = r.u8()?;
    let profile_space = b >> 6;
    let tier_flag = b & 0x20 != 0;
    let profile_idc = b & 0x1f;
    let profile_compatibility_flags = r.u32()?;
    let constraint_indicator_flags = (u64::from(r.u32()?) << 16) | u64::from(r.u16()?);
    let level_idc = r.u8()?;
    let min_spatial_segmentation_idc = r.u16()? & 0x0fff;
    let parallelism_type = r.u8()? & 0x03;
    let chroma_format_idc = r.u8()? & 0x03;
    let bit_depth_luma = (r.u8()? & 0x07) + 8;
    let bit_depth_chroma = (r.u8()? & 0x07) + 8;
    let avg_frame_rate = r.u16()?;
    let b = r.u8()?;
    let constant_frame_rate = b >> 6;
    let num_temporal_layers = (b >> 3) & 0x07;
    let temporal_id_nested = b & 0x04 != 0;
    let nal_length_size = (b & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(r.error("NAL unit length size of 3 bytes (14496-15 allows 1, 2 or 4)"));
    }
    let num_arrays = usize::from(r.u8()?);
    if num_arrays > MAX_NAL_ARRAYS {
        return Err(too_large(&r, "NAL unit arrays", num_arrays));
    }
    let mut arrays = Vec::with_capacity(num_arrays);
    let mut first_sps_offset = None;
    for _ in 0..num_arrays {
        let b = r.u8()?;
        let nal_unit_type = b & 0x3f;
        let count = usize::from(r.u16()?);
        if count > MAX_PARAMETER_SETS {
            return Err(too_large(&r, "NAL units in an array", count));
        }
        if nal_unit_type == HEVC_NAL_SPS && count > 0 && first_sps_offset.is_none() {
            first_sps_offset = Some(r.offset().saturating_add(2));
        }
        arrays.push(HevcNalArray {
            array_completeness: b & 0x80 != 0,
            nal_unit_type,
            nal_units: read_nal_list(&mut r, count, "NAL units")?,
        });
    }
    if !r.is_empty() {
        tracing::warn!(
            offset = r.offset(),
            bytes = r.remaining(),
            "hvcC: ignoring trailing bytes"
        );
    }
    let first_sps = arrays
        .iter()
        .filter(|a| a.nal_unit_type == HEVC_NAL_SPS)
        .flat_map(|a| a.nal_units.first())
        .next();
    let sps_info = match (first_sps, first_sps_offset) {
        (Some(nal), Some(offset)) => Some(parse_hevc_sps(nal, HVCC, offset)?),
        _ => None,
    };
    Ok(HevcConfig {
        profile_space,
        tier_flag,
        profile_idc,
        profile_compatibility_flags,
        constraint_indicator_flags,
        level_idc,
        min_spatial_segmentation_idc,
        parallelism_type,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        avg_frame_rate,
        constant_frame_rate,
        num_temporal_layers,
        temporal_id_nested,
        nal_length_size,
        arrays,
        sps_info,
    })
}

/// Writes an `hvcC` box.
pub(super) fn write_hvcc(c: &HevcConfig, out: &mut Vec<u8>) {
    write_box(out, HVCC, |out| {
        out.push(1);
        out.push(
            ((c.profile_space & 0x03) << 6) | (u8::from(c.tier_flag) << 5) | (c.profile_idc & 0x1f),
        );
        out.extend_from_slice(&c.profile_compatibility_flags.to_be_bytes());
        out.extend_from_slice(&c.constraint_indicator_flags.to_be_bytes()[2..]);
        out.push(c.level_idc);
        out.extend_from_slice(&(0xf000 | (c.min_spatial_segmentation_idc & 0x0fff)).to_be_bytes());
        out.push(0xfc | (c.parallelism_type & 0x03));
        out.push(0xfc | (c.chroma_format_idc & 0x03));
        out.push(0xf8 | (c.bit_depth_luma.saturating_sub(8) & 0x07));
        out.push(0xf8 | (c.bit_depth_chroma.saturating_sub(8) & 0x07));
        out.extend_from_slice(&c.avg_frame_rate.to_be_bytes());
        out.push(
            ((c.constant_frame_rate & 0x03) << 6)
                | ((c.num_temporal_layers & 0x07) << 3)
                | (u8::from(c.temporal_id_nested) << 2)
                | nal_length_code(c.nal_length_size),
        );
        let arrays = &c.arrays[..c.arrays.len().min(255)];
        out.push(arrays.len() as u8);
        for a in arrays {
            out.push((u8::from(a.array_completeness) << 7) | (a.nal_unit_type & 0x3f));
            let units = fitting(&a.nal_units, usize::from(u16::MAX));
            out.extend_from_slice(&(units.len() as u16).to_be_bytes());
            write_nal_list(out, &units);
        }
    });
}

/// Parses an H.265 SPS NAL unit (2-byte header included) up to the bit depths.
pub fn parse_hevc_sps(nal: &[u8], fourcc: FourCC, offset: u64) -> Result<HevcSpsInfo, Mp4Error> {
    let rbsp = unescape_rbsp(nal);
    let mut b = BitReader::new(&rbsp, fourcc, offset);
    let header = b.bits(16)?;
    if header & 0x8000 != 0 || (header >> 9) & 0x3f != u32::from(HEVC_NAL_SPS) {
        return Err(b.error("SPS: NAL unit type is not 33"));
    }
    b.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits_u8(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(b.error("SPS: sps_max_sub_layers_minus1 above 6"));
    }
    let temporal_id_nesting = b.flag()?;
    let profile_tier_level = parse_profile_tier_level(&mut b, max_sub_layers_minus1)?;
    if b.ue()? > 15 {
        return Err(b.error("SPS: sps_seq_parameter_set_id above 15"));
    }
    let chroma_format_idc = b.ue()?;
    if chroma_format_idc > 3 {
        return Err(b.error("SPS: chroma_format_idc above 3"));
    }
    let separate_colour_plane = chroma_format_idc == 3 && b.flag()?;
    let pic_width = b.ue()?;
    let pic_height = b.ue()?;
    let window = if b.flag()? {
        [b.ue()?, b.ue()?, b.ue()?, b.ue()?]
    } else {
        [0; 4]
    };
    let luma = b.ue()?;
    let chroma = b.ue()?;
    if luma > 8 || chroma > 8 {
        return Err(b.error("SPS: bit depth above 16"));
    }
    // H.265 Table 6-1: SubWidthC / SubHeightC; ChromaArrayType 0 (monochrome or separate
    // planes) crops in luma samples.
    let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2u32, 2u32),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let size_error = || b.error("SPS: picture size or conformance window out of range");
    let width = window[0]
        .checked_add(window[1])
        .and_then(|c| c.checked_mul(sub_width))
        .and_then(|c| pic_width.checked_sub(c))
        .filter(|&w| w > 0)
        .ok_or_else(size_error)?;
    let height = window[2]
        .checked_add(window[3])
        .and_then(|c| c.checked_mul(sub_height))
        .and_then(|c| pic_height.checked_sub(c))
        .filter(|&h| h > 0)
        .ok_or_else(size_error)?;
    Ok(HevcSpsInfo {
        profile_tier_level,
        max_sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nesting,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: 8 + luma as u8,
        bit_depth_chroma: 8 + chroma as u8,
        width,
        height,
    })
}

/// `profile_tier_level(1, maxNumSubLayersMinus1)` (H.265 §7.3.3): the general part is kept,
/// the sub-layer parts skipped.
pub(super) fn parse_profile_tier_level(
    b: &mut BitReader<'_>,
    max_sub_layers_minus1: u8,
) -> Result<HevcProfileTierLevel, Mp4Error> {
    let profile_space = b.bits_u8(2)?;
    let tier_flag = b.flag()?;
    let profile_idc = b.bits_u8(5)?;
    let profile_compatibility_flags = b.bits(32)?;
    let constraint_indicator_flags = b.bits64(48)?;
    let level_idc = b.bits_u8(8)?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(usize::from(max_sub_layers_minus1)) {
        *p = (b.flag()?, b.flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        b.skip(2 * (8 - usize::from(max_sub_layers_minus1)))?; // reserved_zero_2bits
    }
    for &(profile, level) in present.iter().take(usize::from(max_sub_layers_minus1)) {
        if profile {
            b.skip(88)?;
        }
        if level {
            b.skip(8)?;
        }
    }
    Ok(HevcProfileTierLevel {
        profile_space,
        tier_flag,
        profile_idc,
        profile_compatibility_flags,
        constraint_indicator_flags,
        level_idc,
    })
}

#[cfg(test)]
mod tests {
    use super::super::bits::BitWriter;
    use super::super::test_util::hex;
    use super::*;

    fn sps(s: &str) -> HevcSpsInfo {
        parse_hevc_sps(&hex(s), HVCC, 0).unwrap()
    }

    /// SPS written by ffmpeg 5.1 + libx265 3.5 (`testsrc2`), checked against ffprobe.
    #[test]
    fn x265_sps_variants() {
        let info = sps(
            "42010101600000030090000003000003003fa00502016965959a4932bc05a02000000300200000030321",
        );
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.profile_tier_level.profile_idc, 1);
        assert_eq!(info.profile_tier_level.level_idc, 63);
        assert_eq!(
            info.profile_tier_level.profile_compatibility_flags,
            0x6000_0000
        );
        assert_eq!(
            info.profile_tier_level.constraint_indicator_flags,
            0x9000_0000_0000
        );
        // 650x362 coded as 656x368 with a conformance window.
        let info = sps("42010101600000030090000003000003003fa005220171c9265959a4932bc05a020000030002000003003210");
        assert_eq!((info.width, info.height), (650, 362));
        // Main 10.
        let info = sps("42010102200000030090000003000003003fa005020169365959a4932bc05a020000030002000003003210");
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!((info.bit_depth_luma, info.bit_depth_chroma), (10, 10));
        assert_eq!(info.profile_tier_level.profile_idc, 2);
        // Range extensions 4:2:2.
        let info = sps(
            "4201010408000003009d0800000300003fb00502016965959a4932bc05a02000000300200000030321",
        );
        assert_eq!(info.chroma_format_idc, 2);
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(
            info.profile_tier_level.constraint_indicator_flags,
            0x9d08_0000_0000
        );
        // 1080p50 level 4.1.
        let info = sps(
            "42010101600000030090000003000003007ba003c08010e596566924caf0168080000003008000001904",
        );
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.profile_tier_level.level_idc, 123);
    }

    /// A hand-written SPS with sub-layers: profile_tier_level must skip the sub-layer
    /// profile/level fields to find the picture size.
    #[test]
    fn sub_layers() {
        let mut w = BitWriter::new();
        w.put(0x4201, 16);
        w.put(0, 4);
        w.put(2, 3); // three sub-layers
        w.flag(true);
        w.put(0, 2);
        w.flag(true); // High tier
        w.put(1, 5);
        w.put(0x6000_0000, 32);
        w.put(0x9000_0000_0000, 48);
        w.put(150, 8);
        w.flag(true);
        w.flag(false);
        w.flag(false);
        w.flag(true);
        w.put(0, 12); // reserved_zero_2bits × 6
        w.put(0x0123_4567_89ab_cdef, 64); // sub-layer 0 profile (88 bits)
        w.put(0xfff, 24);
        w.put(0xff, 8); // sub-layer 1 level
        w.ue(0); // sps id
        w.ue(1); // 4:2:0
        w.ue(3840);
        w.ue(2176);
        w.flag(true);
        for c in [0, 0, 0, 8] {
            w.ue(c);
        }
        w.ue(2);
        w.ue(2);
        let nal = w.finish();
        let info = parse_hevc_sps(&nal, HVCC, 0).unwrap();
        assert_eq!((info.width, info.height), (3840, 2160));
        assert_eq!(info.max_sub_layers, 3);
        assert!(info.profile_tier_level.tier_flag);
        assert_eq!(info.bit_depth_luma, 10);
        for len in 0..nal.len() {
            assert!(parse_hevc_sps(&nal[..len], HVCC, 0).is_err(), "len {len}");
        }
    }

    #[test]
    fn codec_parameters() {
        let vps = hex("40010c01ffff01600000030090000003000003005d959809");
        let sps = hex(
            "42010101600000030090000003000003005da00502016965959a4932bc05a02000000300200000030321",
        );
        let pps = hex("4401c172b46240");
        let config = HevcConfig::from_parameter_sets(vec![vps], vec![sps], vec![pps], 4).unwrap();
        assert_eq!(config.level_idc, 93);
        assert_eq!(config.codec_parameters(), "1.6.L93.90");
        let mut c = config.clone();
        c.constraint_indicator_flags = 0xb000_0000_0000;
        assert_eq!(c.codec_parameters(), "1.6.L93.B0");
        c.profile_space = 1;
        c.tier_flag = true;
        c.level_idc = 120;
        c.constraint_indicator_flags = 0x0000_0000_0000;
        c.profile_compatibility_flags = 0x2000_0000;
        c.profile_idc = 2;
        assert_eq!(c.codec_parameters(), "A2.4.H120");
        c.constraint_indicator_flags = 0x9d08_0000_0001;
        assert_eq!(c.codec_parameters(), "A2.4.H120.9D.08.00.00.00.01");
    }

    #[test]
    fn hvcc_write_parse_round_trip() {
        let sps = hex(
            "42010101600000030090000003000003003fa00502016965959a4932bc05a02000000300200000030321",
        );
        let mut config =
            HevcConfig::from_parameter_sets(vec![hex("4001")], vec![sps], vec![hex("4401")], 4)
                .unwrap();
        config.arrays.push(HevcNalArray {
            array_completeness: false,
            nal_unit_type: 39,
            nal_units: vec![hex("4e01 05ff")],
        });
        config.min_spatial_segmentation_idc = 0x123;
        config.avg_frame_rate = 6400;
        config.constant_frame_rate = 1;
        let mut out = Vec::new();
        write_hvcc(&config, &mut out);
        let parsed = parse_hvcc(Reader::new(&out[8..], 8).with_context(HVCC)).unwrap();
        assert_eq!(parsed, config);
    }
}
