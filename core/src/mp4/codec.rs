//! Sample descriptions: the entries of `stsd` (ISO/IEC 14496-12 §8.5.2) with their codec
//! configuration boxes (ISO/IEC 14496-15 `avcC`/`hvcC`, 14496-14 `esds`, ETSI TS 102 366
//! `dac3`/`dec3`, 14496-30 `stpp`/`wvtt`), the codec strings of RFC 6381, and the Smooth
//! Streaming `FourCC`/`CodecPrivateData` forms.
//!
//! [`parse_sample_entry`] reads one entry, [`write_sample_entry`] writes one back (for init
//! segments of sources that only carry Smooth attributes, see [`sample_entry_from_smooth`]).
//! One file per codec family below, each with its parser and writer side by side.

mod aac;
mod ac3;
mod avc;
mod avc_slice;
mod bits;
mod hevc;
mod hevc_slice;
mod protection;
mod smooth;

pub use aac::{parse_audio_specific_config, AacConfig, AudioSpecificConfig, OTI_MPEG4_AUDIO};
pub use ac3::{Ac3Config, Eac3Config, Eac3Substream};
pub use avc::{parse_sps, AvcConfig, AvcFormatExt, SpsInfo, SpsSliceFields};
pub use avc_slice::AvcSliceHeaders;
pub use hevc::{
    parse_hevc_sps, HevcConfig, HevcNalArray, HevcProfileTierLevel, HevcSpsInfo, HEVC_NAL_PPS,
    HEVC_NAL_SPS, HEVC_NAL_VPS,
};
pub use hevc_slice::HevcSliceHeaders;
pub use protection::{write_sinf, write_tenc, Tenc};
pub use smooth::{sample_entry_from_smooth, CodecError, SmoothParams};

use super::{BoxHeader, FourCC, Mp4Error, Reader};

/// The TTML namespace (W3C TTML1 §5.1) that makes an `stpp` entry `stpp.ttml.im1t`.
pub const TTML_NAMESPACE: &str = "http://www.w3.org/ns/ttml";

/// At most this many parameter sets per list (and NAL units per `hvcC` array).
const MAX_PARAMETER_SETS: usize = 32;

/// One sample entry of `stsd` (ISO/IEC 14496-12 §8.5.2.2 `SampleEntry` and its visual,
/// audio and text subclasses).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleEntry {
    /// The entry's box type (`encv`/`enca` for encrypted entries).
    pub fourcc: FourCC,
    pub data_reference_index: u16,
    pub media: MediaInfo,
    pub codec: CodecConfig,
    /// Common Encryption signalling (`sinf`) of `encv`/`enca` entries.
    pub protection: Option<Protection>,
}

/// The media-type part of a sample entry (`VisualSampleEntry` §12.1.3,
/// `AudioSampleEntry` §12.2.3, text entries §12.5/§12.6).
#[derive(Debug, Clone, PartialEq)]
pub enum MediaInfo {
    Video {
        width: u16,
        height: u16,
        /// Pixel aspect ratio from `pasp` (`hSpacing`, `vSpacing`).
        par: Option<(u32, u32)>,
    },
    Audio {
        channels: u16,
        sample_size: u16,
        /// Hz (the integer part of the 16.16 field, or `srat`/QuickTime v2 when present).
        sample_rate: u32,
    },
    Text,
    Other,
}

/// The codec configuration of a sample entry.
#[derive(Debug, Clone, PartialEq)]
pub enum CodecConfig {
    /// `avcC` of `avc1`/`avc3`.
    Avc(AvcConfig),
    /// `hvcC` of `hvc1`/`hev1`.
    Hevc(HevcConfig),
    /// `esds` of `mp4a` carrying AAC.
    Aac(AacConfig),
    /// `dac3` of `ac-3`.
    Ac3(Ac3Config),
    /// `dec3` of `ec-3`.
    Eac3(Eac3Config),
    /// `XMLSubtitleSampleEntry` (ISO/IEC 14496-30 §7.7).
    Stpp {
        namespace: String,
        schema_location: String,
        mime_types: String,
    },
    /// `WVTTSampleEntry` with its `vttC` configuration text (ISO/IEC 14496-30 §7.5).
    Wvtt { config: String },
    /// Any other format; [`SampleEntry::fourcc`] (or the protected original format) names it.
    Other,
}

/// Encryption of an `encv`/`enca` entry: the protection scheme information box (`sinf`,
/// ISO/IEC 14496-12 §8.12) and its track encryption box (`tenc`, ISO/IEC 23001-7 §8.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Protection {
    /// `schm` scheme type (`cenc`, `cbcs`, ...).
    pub scheme: FourCC,
    /// `frma`: the format before encryption (`avc1`, `mp4a`, ...).
    pub original_format: FourCC,
    pub default_kid: [u8; 16],
    /// `default_Per_Sample_IV_Size`: 0, 8 or 16.
    pub per_sample_iv_size: u8,
    /// `default_constant_IV` when the IV size is 0.
    pub constant_iv: Option<Vec<u8>>,
}

/// The sample-entry families, by box type.
enum Family {
    Visual,
    Audio,
    Stpp,
    Wvtt,
    Unknown,
}

fn family(fourcc: FourCC) -> Family {
    match &fourcc.0 {
        b"avc1" | b"avc2" | b"avc3" | b"avc4" | b"hvc1" | b"hev1" | b"hvc2" | b"hev2" | b"encv"
        | b"av01" | b"vp08" | b"vp09" | b"mp4v" | b"dvh1" | b"dvhe" | b"dva1" | b"dvav"
        | b"dav1" | b"vvc1" | b"vvi1" | b"s263" | b"mjp2" | b"jpeg" => Family::Visual,
        b"mp4a" | b"ac-3" | b"ec-3" | b"enca" | b"ac-4" | b"Opus" | b"fLaC" | b"alac" | b".mp3"
        | b"mha1" | b"mhm1" | b"dtsc" | b"dtsh" | b"dtsl" | b"dtse" | b"dtsx" | b"samr"
        | b"sawb" | b"ipcm" | b"fpcm" | b"lpcm" | b"sowt" | b"twos" => Family::Audio,
        b"stpp" => Family::Stpp,
        b"wvtt" => Family::Wvtt,
        _ => Family::Unknown,
    }
}

const ENCV: FourCC = FourCC::new(b"encv");
const ENCA: FourCC = FourCC::new(b"enca");
const AVCC: FourCC = FourCC::new(b"avcC");
const HVCC: FourCC = FourCC::new(b"hvcC");
const ESDS: FourCC = FourCC::new(b"esds");
const PASP: FourCC = FourCC::new(b"pasp");
const SINF: FourCC = FourCC::new(b"sinf");
const SRAT: FourCC = FourCC::new(b"srat");
const VTTC: FourCC = FourCC::new(b"vttC");

/// Parses one sample entry from its box body (after the 8-byte header). Formats this module
/// does not know come back as [`CodecConfig::Other`], not as an error.
pub fn parse_sample_entry(fourcc: FourCC, body: Reader<'_>) -> Result<SampleEntry, Mp4Error> {
    let mut r = body.with_context(fourcc);
    r.skip(6)?; // reserved
    let data_reference_index = r.u16()?;
    let mut entry = SampleEntry {
        fourcc,
        data_reference_index,
        media: MediaInfo::Other,
        codec: CodecConfig::Other,
        protection: None,
    };
    match family(fourcc) {
        Family::Visual => parse_visual(&mut entry, r)?,
        Family::Audio => parse_audio(&mut entry, r)?,
        Family::Stpp => parse_stpp(&mut entry, r)?,
        Family::Wvtt => parse_wvtt(&mut entry, r)?,
        Family::Unknown => {}
    }
    Ok(entry)
}

/// The child boxes of a sample entry (the first of each type).
struct Children<'a> {
    boxes: Vec<(FourCC, Reader<'a>)>,
}

impl<'a> Children<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Children<'a>, Mp4Error> {
        let mut boxes = Vec::new();
        while let Some((header, body)) = next_child(r)? {
            if !boxes.iter().any(|(f, _)| *f == header.fourcc) {
                boxes.push((header.fourcc, body));
            }
        }
        Ok(Children { boxes })
    }

    fn get(&self, fourcc: FourCC) -> Option<Reader<'a>> {
        self.boxes
            .iter()
            .find(|(f, _)| *f == fourcc)
            .map(|(_, r)| *r)
    }

    fn require(&self, fourcc: FourCC, parent: &Reader<'_>) -> Result<Reader<'a>, Mp4Error> {
        self.get(fourcc).ok_or(Mp4Error::Missing {
            missing: fourcc,
            parent: parent.context(),
            offset: parent.offset(),
        })
    }
}

/// The `sinf` of an encrypted entry, and the format the codec boxes belong to.
fn protection_of(
    entry: &SampleEntry,
    children: &Children<'_>,
    r: &Reader<'_>,
) -> Result<(Option<Protection>, FourCC), Mp4Error> {
    if entry.fourcc != ENCV && entry.fourcc != ENCA {
        return Ok((None, entry.fourcc));
    }
    let p = protection::parse_sinf(children.require(SINF, r)?)?;
    let format = p.original_format;
    Ok((Some(p), format))
}

fn parse_visual(entry: &mut SampleEntry, mut r: Reader<'_>) -> Result<(), Mp4Error> {
    r.skip(16)?; // pre_defined, reserved
    let width = r.u16()?;
    let height = r.u16()?;
    // resolutions, reserved, frame_count, compressorname, depth, pre_defined
    r.skip(8 + 4 + 2 + 32 + 2 + 2)?;
    let children = Children::read(&mut r)?;
    let (protection, format) = protection_of(entry, &children, &r)?;
    let par = match children.get(PASP) {
        Some(mut pasp) => Some((pasp.u32()?, pasp.u32()?)),
        None => None,
    };
    entry.media = MediaInfo::Video { width, height, par };
    entry.codec = match &format.0 {
        b"avc1" | b"avc3" => CodecConfig::Avc(avc::parse_avcc(children.require(AVCC, &r)?)?),
        b"hvc1" | b"hev1" => CodecConfig::Hevc(hevc::parse_hvcc(children.require(HVCC, &r)?)?),
        _ => CodecConfig::Other,
    };
    entry.protection = protection;
    Ok(())
}

fn parse_audio(entry: &mut SampleEntry, mut r: Reader<'_>) -> Result<(), Mp4Error> {
    // ISO: reserved[2] × 32 bits; QuickTime: version, revision level, vendor.
    let version = r.u16()?;
    r.skip(6)?;
    let mut channels = r.u16()?;
    let mut sample_size = r.u16()?;
    r.skip(4)?; // pre_defined, reserved
    let mut sample_rate = r.u32()? >> 16;
    match version {
        // QuickTime sound description v1 adds four 32-bit fields; ISO's AudioSampleEntryV1
        // reuses the number without them, so look at what follows.
        1 => {
            let with_extension = r.rest().get(16..).is_some_and(looks_like_boxes);
            if with_extension && !looks_like_boxes(r.rest()) {
                r.skip(16)?;
            }
        }
        2 => {
            r.skip(4)?; // sizeOfStructOnly
            let rate = f64::from_bits(r.u64()?);
            channels = u16::try_from(r.u32()?).unwrap_or(u16::MAX);
            r.skip(4)?; // always7F000000
            sample_size = u16::try_from(r.u32()?).unwrap_or(u16::MAX);
            r.skip(12)?; // formatSpecificFlags, constBytesPerAudioPacket, LPCM frames
            sample_rate = if rate.is_finite() && rate >= 0.0 && rate <= f64::from(u32::MAX) {
                rate.round() as u32
            } else {
                0
            };
        }
        _ => {}
    }
    let children = Children::read(&mut r)?;
    if let Some(mut srat) = children.get(SRAT) {
        srat.full_box()?;
        sample_rate = srat.u32()?;
    }
    let (protection, format) = protection_of(entry, &children, &r)?;
    entry.media = MediaInfo::Audio {
        channels,
        sample_size,
        sample_rate,
    };
    entry.codec = match &format.0 {
        b"mp4a" => match aac::parse_esds(children.require(ESDS, &r)?)? {
            Some(c) => CodecConfig::Aac(c),
            None => CodecConfig::Other,
        },
        b"ac-3" => CodecConfig::Ac3(ac3::parse_dac3(children.require(ac3::DAC3, &r)?)?),
        b"ec-3" => CodecConfig::Eac3(ac3::parse_dec3(children.require(ac3::DEC3, &r)?)?),
        _ => CodecConfig::Other,
    };
    entry.protection = protection;
    Ok(())
}

fn parse_stpp(entry: &mut SampleEntry, mut r: Reader<'_>) -> Result<(), Mp4Error> {
    let namespace = r.c_string()?;
    // schema_location and auxiliary_mime_types are optional: when the child boxes start
    // right away, they are absent.
    let mut optional = || {
        if looks_like_boxes(r.rest()) {
            Ok(String::new())
        } else {
            r.c_string()
        }
    };
    let schema_location = optional()?;
    let mime_types = optional()?;
    Children::read(&mut r)?;
    entry.media = MediaInfo::Text;
    entry.codec = CodecConfig::Stpp {
        namespace,
        schema_location,
        mime_types,
    };
    Ok(())
}

fn parse_wvtt(entry: &mut SampleEntry, mut r: Reader<'_>) -> Result<(), Mp4Error> {
    let children = Children::read(&mut r)?;
    let config = children.require(VTTC, &r)?;
    entry.media = MediaInfo::Text;
    entry.codec = CodecConfig::Wvtt {
        config: String::from_utf8_lossy(config.rest()).into_owned(),
    };
    Ok(())
}

impl SampleEntry {
    /// The format of the samples: `frma` of an encrypted entry, the box type otherwise.
    pub fn original_format(&self) -> FourCC {
        self.protection
            .as_ref()
            .map_or(self.fourcc, |p| p.original_format)
    }

    /// The RFC 6381 codec string: `avc1.64001f`, `hvc1.1.6.L93.B0` (ISO/IEC 14496-15
    /// Annex E), `mp4a.40.2`, `ac-3`, `ec-3` (ETSI TS 102 366 Annex F), `stpp.ttml.im1t`,
    /// `wvtt`; the format code for other codecs.
    pub fn codec_string(&self) -> String {
        let format = self.original_format();
        match &self.codec {
            CodecConfig::Avc(c) => format!(
                "{format}.{:02x}{:02x}{:02x}",
                c.profile_idc, c.constraint_flags, c.level_idc
            ),
            CodecConfig::Hevc(c) => format!("{format}.{}", c.codec_parameters()),
            CodecConfig::Aac(c) if c.object_type_indication == OTI_MPEG4_AUDIO => {
                format!("mp4a.40.{}", c.codec_object_type())
            }
            CodecConfig::Aac(c) => format!("mp4a.{:02x}", c.object_type_indication),
            CodecConfig::Ac3(_) => "ac-3".to_string(),
            CodecConfig::Eac3(_) => "ec-3".to_string(),
            CodecConfig::Stpp { namespace, .. }
                if namespace.split_whitespace().any(|ns| ns == TTML_NAMESPACE) =>
            {
                "stpp.ttml.im1t".to_string()
            }
            CodecConfig::Stpp { .. } => "stpp".to_string(),
            CodecConfig::Wvtt { .. } => "wvtt".to_string(),
            CodecConfig::Other => format.to_string(),
        }
    }
}

/// Writes a complete sample entry box (header, codec configuration, `pasp` when the pixel
/// aspect ratio is set, `sinf` when protected). Audio is written as a version 0 entry, with
/// an `srat` box for rates above 65535 Hz; an [`CodecConfig::Other`] entry gets the header
/// of its media type and no codec box.
pub fn write_sample_entry(entry: &SampleEntry, out: &mut Vec<u8>) {
    write_box(out, entry.fourcc, |out| {
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&entry.data_reference_index.to_be_bytes());
        match &entry.codec {
            CodecConfig::Avc(c) => {
                write_visual_header(&entry.media, out);
                avc::write_avcc(c, out);
            }
            CodecConfig::Hevc(c) => {
                write_visual_header(&entry.media, out);
                hevc::write_hvcc(c, out);
            }
            CodecConfig::Aac(c) => {
                write_audio_header(&entry.media, out);
                aac::write_esds(c, out);
            }
            CodecConfig::Ac3(c) => {
                write_audio_header(&entry.media, out);
                ac3::write_dac3(c, out);
            }
            CodecConfig::Eac3(c) => {
                write_audio_header(&entry.media, out);
                ac3::write_dec3(c, out);
            }
            CodecConfig::Stpp {
                namespace,
                schema_location,
                mime_types,
            } => {
                for s in [namespace, schema_location, mime_types] {
                    out.extend(s.bytes().filter(|&b| b != 0));
                    out.push(0);
                }
            }
            CodecConfig::Wvtt { config } => {
                write_box(out, VTTC, |out| out.extend_from_slice(config.as_bytes()));
            }
            CodecConfig::Other => match entry.media {
                MediaInfo::Video { .. } => write_visual_header(&entry.media, out),
                MediaInfo::Audio { .. } => write_audio_header(&entry.media, out),
                MediaInfo::Text | MediaInfo::Other => {}
            },
        }
        if let MediaInfo::Video {
            par: Some((h, v)), ..
        } = entry.media
        {
            write_box(out, PASP, |out| {
                out.extend_from_slice(&h.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            });
        }
        if let Some(p) = &entry.protection {
            protection::write_protection(p, out);
        }
    });
}

/// The `VisualSampleEntry` fields after `data_reference_index` (ISO/IEC 14496-12 §12.1.3).
fn write_visual_header(media: &MediaInfo, out: &mut Vec<u8>) {
    let (width, height) = match media {
        MediaInfo::Video { width, height, .. } => (*width, *height),
        _ => (0, 0),
    };
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
    out.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1u16.to_be_bytes()); // frame_count
    out.extend_from_slice(&[0; 32]); // compressorname
    out.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// The version 0 `AudioSampleEntry` fields after `data_reference_index` (ISO/IEC 14496-12
/// §12.2.3), and `srat` when the rate does not fit 16.16.
fn write_audio_header(media: &MediaInfo, out: &mut Vec<u8>) {
    let (channels, sample_size, sample_rate) = match media {
        MediaInfo::Audio {
            channels,
            sample_size,
            sample_rate,
        } => (*channels, *sample_size, *sample_rate),
        _ => (2, 16, 0),
    };
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&channels.to_be_bytes());
    out.extend_from_slice(&sample_size.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let fits = sample_rate <= 0xffff;
    let field = if fits { sample_rate << 16 } else { 0 };
    out.extend_from_slice(&field.to_be_bytes());
    if !fits {
        write_full_box(out, SRAT, 0, 0, |out| {
            out.extend_from_slice(&sample_rate.to_be_bytes())
        });
    }
}

/// Writes a box: a placeholder size, the body, then the size backfilled.
pub(crate) fn write_box(out: &mut Vec<u8>, fourcc: FourCC, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&fourcc.0);
    body(out);
    // Sample entries are far below 4 GiB; a size that does not fit is left at 0.
    let size = u32::try_from(out.len() - start).unwrap_or(0);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
}

/// Writes a full box (version and flags before the body).
pub(crate) fn write_full_box(
    out: &mut Vec<u8>,
    fourcc: FourCC,
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, fourcc, |out| {
        out.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(out);
    });
}

fn too_large(r: &Reader<'_>, what: &'static str, value: usize) -> Mp4Error {
    Mp4Error::TooLarge {
        fourcc: r.context(),
        offset: r.offset(),
        what,
        value: value as u64,
        limit: MAX_PARAMETER_SETS as u64,
    }
}

fn unsupported(r: &Reader<'_>, what: &'static str) -> Mp4Error {
    Mp4Error::Unsupported {
        fourcc: r.context(),
        offset: r.offset(),
        what,
    }
}

/// Reads `count` NAL units, each behind a 16-bit length (the parameter-set lists of
/// `avcC`/`hvcC`).
fn read_nal_list(
    r: &mut Reader<'_>,
    count: usize,
    what: &'static str,
) -> Result<Vec<Vec<u8>>, Mp4Error> {
    if count > MAX_PARAMETER_SETS {
        return Err(too_large(r, what, count));
    }
    let mut units = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        if len == 0 {
            return Err(r.error("empty NAL unit in a parameter set list"));
        }
        units.push(r.bytes(len)?.to_vec());
    }
    Ok(units)
}

/// The NAL units a 16-bit length can describe, at most `max` of them.
fn fitting(units: &[Vec<u8>], max: usize) -> Vec<&[u8]> {
    let list: Vec<&[u8]> = units
        .iter()
        .filter(|u| u.len() <= usize::from(u16::MAX))
        .take(max)
        .map(Vec::as_slice)
        .collect();
    if list.len() != units.len() {
        tracing::warn!(
            kept = list.len(),
            given = units.len(),
            "dropping NAL units that do not fit a decoder configuration record"
        );
    }
    list
}

/// Writes NAL units, each behind a 16-bit length (callers pass [`fitting`] lists).
fn write_nal_list(out: &mut Vec<u8>, units: &[&[u8]]) {
    for unit in units {
        out.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        out.extend_from_slice(unit);
    }
}

/// The next child box, or `None` at the end. A run of fewer than 8 zero bytes at the end
/// is the 32-bit terminator QuickTime writes after child lists, not a broken box.
fn next_child<'a>(r: &mut Reader<'a>) -> Result<Option<(BoxHeader, Reader<'a>)>, Mp4Error> {
    if r.remaining() < 8 && r.rest().iter().all(|&b| b == 0) {
        r.skip(r.remaining())?;
        return Ok(None);
    }
    r.next_box_body()
}

/// True when `data` is a sequence of plausible boxes (sizes that tile it exactly,
/// printable types), possibly followed by a zero terminator: used where a sample entry's
/// optional fields may be absent.
fn looks_like_boxes(mut data: &[u8]) -> bool {
    while let Some(head) = data.first_chunk::<8>() {
        let [s0, s1, s2, s3, t @ ..] = *head;
        let size = u32::from_be_bytes([s0, s1, s2, s3]) as usize;
        let printable = t
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b" -_.@".contains(&b));
        match data.get(size..) {
            Some(rest) if size >= 8 && printable => data = rest,
            _ => return false,
        }
    }
    data.iter().all(|&b| b == 0)
}

/// Helpers shared by the codec tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// Bytes from hex text, whitespace ignored.
    pub fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::hex;
    use super::*;

    fn bx(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_box(&mut out, FourCC::new(fourcc), |o| o.extend_from_slice(body));
        out
    }

    /// A visual sample entry body (without the box header) with the given children.
    fn visual_body(width: u16, height: u16, children: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        write_visual_header(
            &MediaInfo::Video {
                width,
                height,
                par: None,
            },
            &mut body,
        );
        children.iter().for_each(|c| body.extend_from_slice(c));
        body
    }

    fn audio_body(channels: u16, rate: u32, children: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        write_audio_header(
            &MediaInfo::Audio {
                channels,
                sample_size: 16,
                sample_rate: rate,
            },
            &mut body,
        );
        children.iter().for_each(|c| body.extend_from_slice(c));
        body
    }

    fn parse(fourcc: &[u8; 4], body: &[u8]) -> Result<SampleEntry, Mp4Error> {
        parse_sample_entry(FourCC::new(fourcc), Reader::new(body, 1000))
    }

    /// Parses a complete entry box (header included).
    fn parse_box(entry: &[u8]) -> Result<SampleEntry, Mp4Error> {
        let mut r = Reader::new(entry, 0);
        let (header, body) = r.next_box_body()?.ok_or(Mp4Error::Invalid {
            fourcc: FourCC::new(b"test"),
            offset: 0,
            what: "empty",
        })?;
        parse_sample_entry(header.fourcc, body)
    }

    fn round_trip(entry: &SampleEntry) {
        let mut out = Vec::new();
        write_sample_entry(entry, &mut out);
        assert_eq!(
            out.len(),
            u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize
        );
        assert_eq!(&parse_box(&out).unwrap(), entry);
    }

    /// Entries from the fixtures (ffmpeg 5.1 output), stsd payloads as extracted by a box walk.
    const PROGRESSIVE_AVC1: &str = "000000af61766331000000000000000100000000000000000000000000000000014000b40048000000480000000000000001154c61766335392e33372e313030206c696278323634000000000000000000000018ffff00000035617663430164000cffe1001a6764000cacd941419f9f011000000300100000030320f142996001000468efbcb0fdf8f8000000001070617370000000010000000100000014627472740000000000030d400002f998";
    const PROGRESSIVE_MP4A: &str = "0000006e6d703461000000000000000100000000000000000002001000000000bb8000000000003665736473000000000380808025000200048080801740150000000001f5050001f5050580808005119056e5000680808001020000001462747274000000000001f5050001f505";
    const AC3_AC3: &str = "0000004361632d33000000000000000100000000000000000002001000000000bb8000000000000b646163331011400000001462747274000000000002ee000002ee00";
    const SUBTITLES_STPP: &str = "00000040737470700000000000000001687474703a2f2f7777772e77332e6f72672f6e732f74746d6c000000000000146274727400000000000006a2000006a2";

    #[test]
    fn fixture_entries() {
        let avc = parse_box(&hex(PROGRESSIVE_AVC1)).unwrap();
        assert_eq!(avc.codec_string(), "avc1.64000c");
        assert_eq!(
            avc.media,
            MediaInfo::Video {
                width: 320,
                height: 180,
                par: Some((1, 1))
            }
        );
        let CodecConfig::Avc(c) = &avc.codec else {
            panic!("not AVC")
        };
        let sps = c.sps_info.as_ref().unwrap();
        assert_eq!(
            (sps.width, sps.height, sps.frame_rate),
            (320, 180, Some((25, 1)))
        );
        assert_eq!(avc.smooth_fourcc(), "H264");
        assert_eq!(
            avc.smooth_codec_private_data(),
            "000000016764000CACD941419F9F011000000300100000030320F14299600000000168EFBCB0"
        );

        let aac = parse_box(&hex(PROGRESSIVE_MP4A)).unwrap();
        assert_eq!(aac.codec_string(), "mp4a.40.2");
        assert_eq!(
            aac.media,
            MediaInfo::Audio {
                channels: 2,
                sample_size: 16,
                sample_rate: 48000
            }
        );
        assert_eq!(
            (
                aac.smooth_fourcc(),
                aac.smooth_codec_private_data().as_str()
            ),
            ("AACL", "119056E500")
        );

        let ac3 = parse_box(&hex(AC3_AC3)).unwrap();
        assert_eq!(ac3.codec_string(), "ac-3");
        let CodecConfig::Ac3(c) = &ac3.codec else {
            panic!("not AC-3")
        };
        assert_eq!((c.channels(), c.sample_rate()), (2, 48000));
        assert_eq!(ac3.smooth_fourcc(), "AC-3");

        let stpp = parse_box(&hex(SUBTITLES_STPP)).unwrap();
        assert_eq!(stpp.codec_string(), "stpp.ttml.im1t");
        assert_eq!(
            stpp.codec,
            CodecConfig::Stpp {
                namespace: TTML_NAMESPACE.to_string(),
                schema_location: String::new(),
                mime_types: String::new()
            }
        );
        assert_eq!(stpp.media, MediaInfo::Text);
        assert_eq!(stpp.smooth_fourcc(), "TTML");
    }

    #[test]
    fn round_trips() {
        for h in [PROGRESSIVE_AVC1, PROGRESSIVE_MP4A, AC3_AC3, SUBTITLES_STPP] {
            round_trip(&parse_box(&hex(h)).unwrap());
        }
        // hvc1 (x265 parameter sets, with an SEI array).
        let config = HevcConfig::from_parameter_sets(
            vec![hex("40010c01ffff01600000030090000003000003005d959809")],
            vec![hex("42010101600000030090000003000003005da00502016965959a4932bc05a02000000300200000030321")],
            vec![hex("4401c172b46240")],
            4,
        )
        .unwrap();
        let hvc1 = SampleEntry {
            fourcc: FourCC::new(b"hvc1"),
            data_reference_index: 1,
            media: MediaInfo::Video {
                width: 640,
                height: 360,
                par: Some((4, 3)),
            },
            codec: CodecConfig::Hevc(config),
            protection: None,
        };
        round_trip(&hvc1);
        // ec-3 5.1 + Atmos.
        let ec3 = SampleEntry {
            fourcc: FourCC::new(b"ec-3"),
            data_reference_index: 1,
            media: MediaInfo::Audio {
                channels: 6,
                sample_size: 16,
                sample_rate: 48000,
            },
            codec: CodecConfig::Eac3(Eac3Config {
                data_rate: 768,
                substreams: vec![Eac3Substream {
                    fscod: 0,
                    bsid: 16,
                    asvc: false,
                    bsmod: 0,
                    acmod: 7,
                    lfeon: true,
                    num_dep_sub: 0,
                    chan_loc: 0,
                }],
                joc_complexity_index: Some(16),
            }),
            protection: None,
        };
        round_trip(&ec3);
        // wvtt.
        let wvtt = SampleEntry {
            fourcc: FourCC::new(b"wvtt"),
            data_reference_index: 1,
            media: MediaInfo::Text,
            codec: CodecConfig::Wvtt {
                config: "WEBVTT\nRegion: id=top".to_string(),
            },
            protection: None,
        };
        round_trip(&wvtt);
        // 96 kHz AAC goes through srat.
        let mut aac = parse_box(&hex(PROGRESSIVE_MP4A)).unwrap();
        aac.media = MediaInfo::Audio {
            channels: 2,
            sample_size: 24,
            sample_rate: 96000,
        };
        round_trip(&aac);
        // Encrypted entries keep their sinf.
        let mut encv = parse_box(&hex(PROGRESSIVE_AVC1)).unwrap();
        encv.fourcc = ENCV;
        encv.protection = Some(Protection {
            scheme: FourCC::new(b"cbcs"),
            original_format: FourCC::new(b"avc1"),
            default_kid: [9; 16],
            per_sample_iv_size: 0,
            constant_iv: Some(vec![1; 16]),
        });
        round_trip(&encv);
        assert_eq!(encv.codec_string(), "avc1.64000c");
        let mut enca = aac.clone();
        enca.fourcc = ENCA;
        enca.protection = Some(Protection {
            scheme: FourCC::new(b"cenc"),
            original_format: FourCC::new(b"mp4a"),
            default_kid: [7; 16],
            per_sample_iv_size: 8,
            constant_iv: None,
        });
        round_trip(&enca);
        assert_eq!(enca.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn codec_strings() {
        let mut avcc = hex("01 64 00 1f ff e1");
        let sps = hex("6764001facd9405005bb011000000300100000030320f1831960");
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(&sps);
        avcc.extend_from_slice(&hex("01 0004 68ebecb2"));
        let body = visual_body(1280, 720, &[bx(b"avcC", &avcc)]);
        assert_eq!(parse(b"avc1", &body).unwrap().codec_string(), "avc1.64001f");
        assert_eq!(parse(b"avc3", &body).unwrap().codec_string(), "avc3.64001f");

        let mut hevc = HevcConfig::from_parameter_sets(
            vec![],
            vec![hex("42010101600000030090000003000003005da00502016965959a4932bc05a02000000300200000030321")],
            vec![hex("4401c172b46240")],
            4,
        )
        .unwrap();
        hevc.constraint_indicator_flags = 0xb000_0000_0000;
        let entry = SampleEntry {
            fourcc: FourCC::new(b"hvc1"),
            data_reference_index: 1,
            media: MediaInfo::Other,
            codec: CodecConfig::Hevc(hevc),
            protection: None,
        };
        assert_eq!(entry.codec_string(), "hvc1.1.6.L93.B0");

        let aac = SampleEntry {
            fourcc: FourCC::new(b"mp4a"),
            data_reference_index: 1,
            media: MediaInfo::Other,
            codec: CodecConfig::Aac(AacConfig::from_asc(vec![0x12, 0x10]).unwrap()),
            protection: None,
        };
        assert_eq!(aac.codec_string(), "mp4a.40.2");
        let mut mpeg2 = aac.clone();
        if let CodecConfig::Aac(c) = &mut mpeg2.codec {
            c.object_type_indication = 0x67;
        }
        assert_eq!(mpeg2.codec_string(), "mp4a.67");
        let stpp = SampleEntry {
            fourcc: FourCC::new(b"stpp"),
            data_reference_index: 1,
            media: MediaInfo::Text,
            codec: CodecConfig::Stpp {
                namespace: "urn:example".to_string(),
                schema_location: String::new(),
                mime_types: String::new(),
            },
            protection: None,
        };
        assert_eq!(stpp.codec_string(), "stpp");
    }

    #[test]
    fn other_formats() {
        let vp09 = parse(
            b"vp09",
            &visual_body(640, 360, &[bx(b"vpcC", &[1, 0, 0, 0])]),
        )
        .unwrap();
        assert_eq!(vp09.codec, CodecConfig::Other);
        assert!(matches!(vp09.media, MediaInfo::Video { width: 640, .. }));
        assert_eq!(vp09.codec_string(), "vp09");
        assert_eq!(vp09.smooth_fourcc(), "");
        let opus = parse(b"Opus", &audio_body(2, 48000, &[bx(b"dOps", &[0; 11])])).unwrap();
        assert_eq!(opus.codec, CodecConfig::Other);
        let tmcd = parse(b"tmcd", &[0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9]).unwrap();
        assert_eq!(
            (tmcd.media, tmcd.data_reference_index),
            (MediaInfo::Other, 1)
        );
        // Written back with their media header.
        round_trip(&vp09);
        round_trip(&opus);
    }

    #[test]
    fn quicktime_sound_descriptions() {
        let dac3 = bx(b"dac3", &[0x10, 0x11, 0x40]);
        // Version 1: four extra 32-bit fields before the children.
        let mut v1 = audio_body(2, 48000, &[]);
        v1[8] = 0;
        v1[9] = 1;
        v1.extend_from_slice(&[0, 0, 4, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 2]);
        v1.extend_from_slice(&dac3);
        let e = parse(b"ac-3", &v1).unwrap();
        assert!(matches!(e.codec, CodecConfig::Ac3(_)));
        // ISO AudioSampleEntryV1: same number, no extra fields, srat gives the rate.
        let mut iso_v1 = audio_body(2, 0, &[]);
        iso_v1[9] = 1;
        let mut srat = Vec::new();
        write_full_box(&mut srat, SRAT, 0, 0, |o| {
            o.extend_from_slice(&192_000u32.to_be_bytes())
        });
        iso_v1.extend_from_slice(&srat);
        iso_v1.extend_from_slice(&dac3);
        let e = parse(b"ac-3", &iso_v1).unwrap();
        assert!(matches!(
            e.media,
            MediaInfo::Audio {
                sample_rate: 192_000,
                ..
            }
        ));
        // Version 2: rate as a double, channel count as 32 bits.
        let mut v2 = audio_body(3, 1, &[]);
        v2[9] = 2;
        v2.extend_from_slice(&72u32.to_be_bytes());
        v2.extend_from_slice(&44100f64.to_bits().to_be_bytes());
        v2.extend_from_slice(&6u32.to_be_bytes());
        v2.extend_from_slice(&0x7f00_0000u32.to_be_bytes());
        v2.extend_from_slice(&24u32.to_be_bytes());
        v2.extend_from_slice(&[0; 12]);
        v2.extend_from_slice(&dac3);
        v2.extend_from_slice(&[0; 4]); // QuickTime terminator
        let e = parse(b"ac-3", &v2).unwrap();
        assert_eq!(
            e.media,
            MediaInfo::Audio {
                channels: 6,
                sample_size: 24,
                sample_rate: 44100
            }
        );
    }

    #[test]
    fn stpp_optional_strings() {
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        body.extend_from_slice(b"http://www.w3.org/ns/ttml http://example.com/ns\0");
        body.extend_from_slice(&bx(b"btrt", &[0; 12]));
        let e = parse(b"stpp", &body).unwrap();
        assert_eq!(e.codec_string(), "stpp.ttml.im1t");
        assert!(
            matches!(&e.codec, CodecConfig::Stpp { schema_location, mime_types, .. }
            if schema_location.is_empty() && mime_types.is_empty())
        );
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        body.extend_from_slice(b"ns\0schema.xsd\0image/png\0");
        let e = parse(b"stpp", &body).unwrap();
        assert_eq!(
            e.codec,
            CodecConfig::Stpp {
                namespace: "ns".to_string(),
                schema_location: "schema.xsd".to_string(),
                mime_types: "image/png".to_string()
            }
        );
        round_trip(&e);
    }

    #[test]
    fn malformed_entries() {
        // avc1 without avcC.
        assert!(matches!(
            parse(b"avc1", &visual_body(1, 1, &[])),
            Err(Mp4Error::Missing { missing: AVCC, .. })
        ));
        // An avcC announcing 31 SPS but holding one.
        let mut avcc = hex("01 64 00 1f ff ff 0004 67640000");
        avcc.push(0);
        assert!(matches!(
            parse(b"avc1", &visual_body(1, 1, &[bx(b"avcC", &avcc)])),
            Err(Mp4Error::Truncated { .. })
        ));
        // 33 PPS: over the cap.
        let avcc = hex("01 64 00 1f ff e0 21");
        assert!(matches!(
            parse(b"avc1", &visual_body(1, 1, &[bx(b"avcC", &avcc)])),
            Err(Mp4Error::TooLarge { .. })
        ));
        // A NAL length size of 3.
        let avcc = hex("01 64 00 1f fe e0 00");
        assert!(parse(b"avc1", &visual_body(1, 1, &[bx(b"avcC", &avcc)])).is_err());
        // configurationVersion 2.
        let avcc = hex("02 64 00 1f ff e0 00");
        assert!(matches!(
            parse(b"avc1", &visual_body(1, 1, &[bx(b"avcC", &avcc)])),
            Err(Mp4Error::Unsupported { .. })
        ));
        // An esds whose ES_Descriptor claims more bytes than the box.
        let mut mp4a = hex(PROGRESSIVE_MP4A);
        mp4a[0x2c + 8] = 0x45;
        assert!(parse_box(&mp4a).is_err());
        // encv without sinf.
        let avc1 = hex(PROGRESSIVE_AVC1);
        assert!(matches!(
            parse(b"encv", &avc1[8..]),
            Err(Mp4Error::Missing { missing: SINF, .. })
        ));
        // wvtt without vttC.
        assert!(parse(b"wvtt", &[0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        // A child box running past the entry.
        let mut body = visual_body(1, 1, &[]);
        body.extend_from_slice(&hex("00000100 61766343 01"));
        assert!(matches!(
            parse(b"avc1", &body),
            Err(Mp4Error::BoxOverrun { .. })
        ));
        // Errors point into the file.
        let err = parse(b"avc1", &visual_body(1, 1, &[])).unwrap_err();
        assert!(err.offset() >= 1000);
    }

    #[test]
    fn truncation_never_panics() {
        let hvc1 = {
            let mut out = Vec::new();
            let config = HevcConfig::from_parameter_sets(
                vec![hex("40010c01ffff01600000030090000003000003005d959809")],
                vec![hex("42010101600000030090000003000003005da00502016965959a4932bc05a02000000300200000030321")],
                vec![hex("4401c172b46240")],
                4,
            )
            .unwrap();
            write_sample_entry(
                &SampleEntry {
                    fourcc: FourCC::new(b"hvc1"),
                    data_reference_index: 1,
                    media: MediaInfo::Video {
                        width: 640,
                        height: 360,
                        par: None,
                    },
                    codec: CodecConfig::Hevc(config),
                    protection: None,
                },
                &mut out,
            );
            out
        };
        let entries = [
            hex(PROGRESSIVE_AVC1),
            hex(PROGRESSIVE_MP4A),
            hex(AC3_AC3),
            hex(SUBTITLES_STPP),
            hvc1,
        ];
        for entry in &entries {
            let fourcc = FourCC([entry[4], entry[5], entry[6], entry[7]]);
            let body = &entry[8..];
            for len in 0..body.len() {
                let result = parse_sample_entry(fourcc, Reader::new(&body[..len], 8));
                // Cut inside the fixed header: always an error.
                let header = match &fourcc.0 {
                    b"avc1" | b"hvc1" => 78,
                    b"mp4a" | b"ac-3" => 28,
                    _ => 8,
                };
                if len < header {
                    assert!(result.is_err(), "{fourcc} cut at {len}");
                }
            }
            // Corrupt each byte in turn.
            for i in 0..body.len() {
                for value in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = body.to_vec();
                    bad[i] = value;
                    let _ = parse_sample_entry(fourcc, Reader::new(&bad, 8));
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for fourcc in [
            b"avc1", b"hvc1", b"mp4a", b"ac-3", b"ec-3", b"stpp", b"wvtt", b"encv", b"enca",
        ] {
            for len in 0..300 {
                let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let _ = parse(fourcc, &data);
                // Random bytes behind a valid header reach the codec parsers.
                let mut body = if fourcc == b"avc1" || fourcc == b"hvc1" || fourcc == b"encv" {
                    visual_body(16, 16, &[])
                } else {
                    audio_body(2, 48000, &[])
                };
                let child: &[u8; 4] = match fourcc {
                    b"avc1" => b"avcC",
                    b"hvc1" => b"hvcC",
                    b"ac-3" => b"dac3",
                    b"ec-3" => b"dec3",
                    b"encv" | b"enca" => b"sinf",
                    _ => b"esds",
                };
                body.extend_from_slice(&bx(child, &data));
                let _ = parse(fourcc, &body);
            }
        }
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse_sps(&data, AVCC, 0);
            let mut nal = vec![0x67];
            nal.extend_from_slice(&data);
            let _ = parse_sps(&nal, AVCC, 0);
            let mut nal = vec![0x42, 0x01];
            nal.extend_from_slice(&data);
            let _ = parse_hevc_sps(&nal, HVCC, 0);
            let _ = parse_audio_specific_config(&data, ESDS, 0);
        }
    }

    #[test]
    fn box_sniffing() {
        assert!(looks_like_boxes(&[]));
        assert!(looks_like_boxes(&bx(b"btrt", &[0; 12])));
        assert!(looks_like_boxes(&[0, 0, 0, 0]));
        assert!(!looks_like_boxes(b"image/png\0"));
        assert!(!looks_like_boxes(&hex("00000007 62747274")));
        assert!(!looks_like_boxes(&hex("00000100 62747274")));
    }

    /// The minimal box walk moov/trak/mdia/minf/stbl/stsd over a fixture file, returning
    /// every sample entry.
    fn fixture_entries_of(name: &str) -> Vec<SampleEntry> {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        fn walk(r: &mut Reader<'_>, out: &mut Vec<SampleEntry>) {
            while let Some((header, mut body)) = r.next_box_body().unwrap() {
                match &header.fourcc.0 {
                    b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => walk(&mut body, out),
                    b"stsd" => {
                        body.full_box().unwrap();
                        let count = body.u32().unwrap();
                        for _ in 0..count {
                            let (h, b) = body.next_box_body().unwrap().unwrap();
                            out.push(parse_sample_entry(h.fourcc, b).unwrap());
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&mut Reader::new(&data, 0), &mut out);
        out
    }

    /// Width, height and codec as ffprobe 5.1 reports them for the fixtures.
    #[test]
    fn fixture_files() {
        let entries = fixture_entries_of("progressive.mp4");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].codec_string(), "avc1.64000c");
        assert!(matches!(
            entries[0].media,
            MediaInfo::Video {
                width: 320,
                height: 180,
                ..
            }
        ));
        assert_eq!(entries[1].codec_string(), "mp4a.40.2");

        let entries = fixture_entries_of("hevc.mp4");
        let hevc = &entries[0];
        assert_eq!(hevc.codec_string(), "hvc1.1.6.L60.90");
        assert!(matches!(
            hevc.media,
            MediaInfo::Video {
                width: 320,
                height: 180,
                par: Some((1, 1))
            }
        ));
        let CodecConfig::Hevc(c) = &hevc.codec else {
            panic!("not HEVC")
        };
        let sps = c.sps_info.as_ref().unwrap();
        assert_eq!((sps.width, sps.height), (320, 180));
        assert_eq!(c.arrays.len(), 4); // VPS, SPS, PPS, prefix SEI
        assert_eq!(hevc.smooth_fourcc(), "HVC1");
        assert!(hevc
            .smooth_codec_private_data()
            .starts_with("0000000140010C01"));
        round_trip(hevc);

        let entries = fixture_entries_of("ac3.mp4");
        assert_eq!(entries[1].codec_string(), "ac-3");
        let entries = fixture_entries_of("subtitles-eng.mp4");
        assert_eq!(entries[0].codec_string(), "stpp.ttml.im1t");
        let entries = fixture_entries_of("ladder-audio-eng.mp4");
        assert_eq!(entries[0].codec_string(), "mp4a.40.2");
    }
}
