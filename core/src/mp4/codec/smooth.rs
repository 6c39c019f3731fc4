//! Smooth Streaming (MS-SSTR §2.2.2.5) forms of a sample description: the `FourCC` and
//! `CodecPrivateData` attributes of a `<QualityLevel>`, both ways. The reverse direction
//! serves live ingest and `.ism` sources that only carry these attributes: it builds a
//! [`SampleEntry`] that [`write_sample_entry`](super::write_sample_entry) can turn into an
//! init segment.

use super::aac::{channel_configuration_for, synthesize_asc, AacConfig};
use super::ac3::{parse_dac3, parse_dec3, Ac3Config, Eac3Config, Eac3Substream, DAC3, DEC3};
use super::hevc::{HEVC_NAL_PPS, HEVC_NAL_SPS, HEVC_NAL_VPS};
use super::{AvcConfig, CodecConfig, HevcConfig, MediaInfo, SampleEntry, TTML_NAMESPACE};
use crate::mp4::{FourCC, Mp4Error, Reader};

/// At most this many NAL units in a `CodecPrivateData`.
const MAX_NAL_UNITS: usize = 64;
/// NAL units must fit the 16-bit lengths of `avcC`/`hvcC`.
const MAX_NAL_UNIT_SIZE: usize = u16::MAX as usize;
/// Longest accepted `CodecPrivateData`, in bytes.
const MAX_CODEC_PRIVATE_DATA: usize = 1 << 20;

/// The stream attributes of a Smooth `<QualityLevel>` (or `.ism` `<video>`/`<audio>`) that a
/// sample entry needs besides `FourCC` and `CodecPrivateData`. Zero means "not given".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmoothParams {
    /// `MaxWidth` / `Width`.
    pub width: u32,
    /// `MaxHeight` / `Height`.
    pub height: u32,
    /// `SamplingRate` in Hz (for HE-AAC, the output rate).
    pub sampling_rate: u32,
    /// `Channels`.
    pub channels: u16,
    /// `BitsPerSample`.
    pub bits_per_sample: u16,
    /// `NALUnitLengthField`: bytes of the NAL length prefix in samples (1, 2 or 4).
    pub nal_unit_length_field: u8,
}

impl Default for SmoothParams {
    fn default() -> Self {
        SmoothParams {
            width: 0,
            height: 0,
            sampling_rate: 0,
            channels: 0,
            bits_per_sample: 0,
            nal_unit_length_field: 4,
        }
    }
}

/// Why Smooth stream attributes cannot describe a sample entry. `field` names the manifest
/// attribute at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A `FourCC` this origin cannot package.
    #[error("FourCC: unsupported value {0:?}")]
    UnsupportedFourCC(String),
    /// An attribute with a bad or missing value.
    #[error("{field}: {what}")]
    Invalid {
        field: &'static str,
        what: &'static str,
    },
    /// A `CodecPrivateData` whose codec configuration does not parse.
    #[error("{field}: {source}")]
    Parse {
        field: &'static str,
        source: Mp4Error,
    },
}

const CPD: &str = "CodecPrivateData";

fn invalid(field: &'static str, what: &'static str) -> CodecError {
    CodecError::Invalid { field, what }
}

fn parse_error(source: Mp4Error) -> CodecError {
    CodecError::Parse { field: CPD, source }
}

impl SampleEntry {
    /// The Smooth `FourCC` of this entry: `H264`, `HVC1`/`HEV1`, `AACL` (AAC-LC) or `AACH`
    /// (explicitly signalled HE-AAC), `AC-3`, `EC-3`, `TTML`, `WVTT`; empty for a codec Smooth
    /// cannot carry.
    pub fn smooth_fourcc(&self) -> &'static str {
        match &self.codec {
            CodecConfig::Avc(_) => "H264",
            CodecConfig::Hevc(_) if self.original_format() == FourCC::new(b"hev1") => "HEV1",
            CodecConfig::Hevc(_) => "HVC1",
            CodecConfig::Aac(c) if c.sbr || c.ps => "AACH",
            CodecConfig::Aac(_) => "AACL",
            CodecConfig::Ac3(_) => "AC-3",
            CodecConfig::Eac3(_) => "EC-3",
            CodecConfig::Stpp { .. } => "TTML",
            CodecConfig::Wvtt { .. } => "WVTT",
            CodecConfig::Other => "",
        }
    }

    /// The Smooth `CodecPrivateData` in uppercase hex: for AVC every SPS then every PPS, for
    /// HEVC every VPS, SPS and PPS, each behind a 4-byte start code; for AAC the
    /// AudioSpecificConfig; for AC-3 and E-AC-3 the `dac3`/`dec3` payload (MS-SSTR defines no
    /// form for Dolby audio; the box payload is what [`sample_entry_from_smooth`] reads back,
    /// and carries everything a decoder needs); empty for text.
    pub fn smooth_codec_private_data(&self) -> String {
        fn annex_b<'a>(units: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
            let mut bytes = Vec::new();
            for nal in units {
                bytes.extend_from_slice(&[0, 0, 0, 1]);
                bytes.extend_from_slice(nal);
            }
            bytes
        }
        let bytes = match &self.codec {
            CodecConfig::Avc(c) => annex_b(c.sps.iter().chain(&c.pps)),
            CodecConfig::Hevc(c) => annex_b(
                c.nal_units(HEVC_NAL_VPS)
                    .chain(c.nal_units(HEVC_NAL_SPS))
                    .chain(c.nal_units(HEVC_NAL_PPS)),
            ),
            CodecConfig::Aac(c) => c.asc.clone(),
            CodecConfig::Ac3(c) => c.payload(),
            CodecConfig::Eac3(c) => c.payload(),
            CodecConfig::Stpp { .. } | CodecConfig::Wvtt { .. } | CodecConfig::Other => Vec::new(),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
        }
        hex
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Builds a sample entry from Smooth attributes. `fourcc` is matched case-insensitively and
/// accepts `H264`/`AVC1`/`DAVC`, `AVC3`, `HVC1`/`HEVC`, `HEV1`, `AACL`, `AACH`/`AACP`, `AC-3`,
/// `EC-3`, `TTML` and `WVTT`. Video entries take their size and aspect ratio from the SPS
/// (the attributes only when the SPS has none). An empty `CodecPrivateData` for AAC or Dolby
/// audio is synthesized from `SamplingRate` and `Channels`.
pub fn sample_entry_from_smooth(
    fourcc: &str,
    codec_private_data_hex: &str,
    params: &SmoothParams,
) -> Result<SampleEntry, CodecError> {
    let cpd = decode_hex(codec_private_data_hex)?;
    let upper = fourcc.trim().to_ascii_uppercase();
    match upper.as_str() {
        "H264" | "AVC1" | "DAVC" => avc_entry(FourCC::new(b"avc1"), &cpd, params),
        "AVC3" => avc_entry(FourCC::new(b"avc3"), &cpd, params),
        "HVC1" | "HEVC" => hevc_entry(FourCC::new(b"hvc1"), &cpd, params),
        "HEV1" => hevc_entry(FourCC::new(b"hev1"), &cpd, params),
        "AACL" => aac_entry(cpd, params, false),
        "AACH" | "AACP" => aac_entry(cpd, params, true),
        "AC-3" | "AC3" => ac3_entry(&cpd, params),
        "EC-3" | "EC3" => eac3_entry(&cpd, params),
        "TTML" | "STPP" => Ok(text_entry(CodecConfig::Stpp {
            namespace: TTML_NAMESPACE.to_string(),
            schema_location: String::new(),
            mime_types: String::new(),
        })),
        "WVTT" => Ok(text_entry(CodecConfig::Wvtt {
            config: "WEBVTT".to_string(),
        })),
        _ => Err(CodecError::UnsupportedFourCC(fourcc.to_string())),
    }
}

fn text_entry(codec: CodecConfig) -> SampleEntry {
    let fourcc = match codec {
        CodecConfig::Wvtt { .. } => FourCC::new(b"wvtt"),
        _ => FourCC::new(b"stpp"),
    };
    SampleEntry {
        fourcc,
        data_reference_index: 1,
        media: MediaInfo::Text,
        codec,
        protection: None,
    }
}

fn nal_length_size(params: &SmoothParams) -> Result<u8, CodecError> {
    match params.nal_unit_length_field {
        1 | 2 | 4 => Ok(params.nal_unit_length_field),
        _ => Err(invalid("NALUnitLengthField", "not 1, 2 or 4")),
    }
}

/// The displayed size: the SPS's when known, the attributes' otherwise.
fn video_size(sps: Option<(u32, u32)>, params: &SmoothParams) -> Result<(u16, u16), CodecError> {
    let (width, height) = sps.unwrap_or((params.width, params.height));
    let width = u16::try_from(width).map_err(|_| invalid("MaxWidth", "above 65535"))?;
    let height = u16::try_from(height).map_err(|_| invalid("MaxHeight", "above 65535"))?;
    Ok((width, height))
}

fn avc_entry(fourcc: FourCC, cpd: &[u8], params: &SmoothParams) -> Result<SampleEntry, CodecError> {
    let nal_length_size = nal_length_size(params)?;
    let (mut sps, mut pps, mut sps_ext) = (Vec::new(), Vec::new(), Vec::new());
    for nal in split_annex_b(cpd)? {
        match nal.first().map(|h| h & 0x1f) {
            Some(7) => sps.push(nal.to_vec()),
            Some(8) => pps.push(nal.to_vec()),
            Some(13) => sps_ext.push(nal.to_vec()),
            _ => {}
        }
    }
    if sps.is_empty() {
        return Err(invalid(CPD, "no sequence parameter set (NAL type 7)"));
    }
    if pps.is_empty() {
        return Err(invalid(CPD, "no picture parameter set (NAL type 8)"));
    }
    let config =
        AvcConfig::from_parameter_sets(sps, pps, sps_ext, nal_length_size).map_err(parse_error)?;
    let info = config.sps_info.as_ref();
    let (width, height) = video_size(info.map(|i| (i.width, i.height)), params)?;
    let par = info.and_then(|i| i.sar);
    Ok(SampleEntry {
        fourcc,
        data_reference_index: 1,
        media: MediaInfo::Video { width, height, par },
        codec: CodecConfig::Avc(config),
        protection: None,
    })
}

fn hevc_entry(
    fourcc: FourCC,
    cpd: &[u8],
    params: &SmoothParams,
) -> Result<SampleEntry, CodecError> {
    let nal_length_size = nal_length_size(params)?;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    for nal in split_annex_b(cpd)? {
        match nal.first().map(|h| (h >> 1) & 0x3f) {
            Some(HEVC_NAL_VPS) => vps.push(nal.to_vec()),
            Some(HEVC_NAL_SPS) => sps.push(nal.to_vec()),
            Some(HEVC_NAL_PPS) => pps.push(nal.to_vec()),
            _ => {}
        }
    }
    if sps.is_empty() {
        return Err(invalid(CPD, "no sequence parameter set (NAL type 33)"));
    }
    if pps.is_empty() {
        return Err(invalid(CPD, "no picture parameter set (NAL type 34)"));
    }
    let config =
        HevcConfig::from_parameter_sets(vps, sps, pps, nal_length_size).map_err(parse_error)?;
    let size = config.sps_info.as_ref().map(|i| (i.width, i.height));
    let (width, height) = video_size(size, params)?;
    Ok(SampleEntry {
        fourcc,
        data_reference_index: 1,
        media: MediaInfo::Video {
            width,
            height,
            par: None,
        },
        codec: CodecConfig::Hevc(config),
        protection: None,
    })
}

/// The audio header fields: the attributes when given, the codec's values otherwise.
fn audio_media(params: &SmoothParams, channels: u16, sample_rate: u32) -> MediaInfo {
    MediaInfo::Audio {
        channels: if params.channels != 0 {
            params.channels
        } else {
            channels
        },
        sample_size: if params.bits_per_sample != 0 {
            params.bits_per_sample
        } else {
            16
        },
        sample_rate: if params.sampling_rate != 0 {
            params.sampling_rate
        } else {
            sample_rate
        },
    }
}

fn required_rate(params: &SmoothParams) -> Result<u32, CodecError> {
    match params.sampling_rate {
        0 => Err(invalid(
            "SamplingRate",
            "missing (needed without CodecPrivateData)",
        )),
        rate => Ok(rate),
    }
}

fn aac_entry(cpd: Vec<u8>, params: &SmoothParams, he: bool) -> Result<SampleEntry, CodecError> {
    let asc = if cpd.is_empty() {
        let rate = required_rate(params)?;
        let configuration = channel_configuration_for(params.channels)
            .ok_or_else(|| invalid("Channels", "no AAC channel configuration for this count"))?;
        synthesize_asc(rate, configuration, he)
    } else {
        cpd
    };
    let config = AacConfig::from_asc(asc).map_err(parse_error)?;
    let media = audio_media(params, config.channels, config.output_sample_rate());
    Ok(audio_entry(
        FourCC::new(b"mp4a"),
        media,
        CodecConfig::Aac(config),
    ))
}

fn audio_entry(fourcc: FourCC, media: MediaInfo, codec: CodecConfig) -> SampleEntry {
    SampleEntry {
        fourcc,
        data_reference_index: 1,
        media,
        codec,
        protection: None,
    }
}

/// `fscod`, `acmod` and `lfeon` for Smooth attributes.
fn dolby_layout(params: &SmoothParams) -> Result<(u8, u8, bool), CodecError> {
    let fscod = match required_rate(params)? {
        48000 => 0,
        44100 => 1,
        32000 => 2,
        _ => return Err(invalid("SamplingRate", "not 48000, 44100 or 32000")),
    };
    let (acmod, lfeon) = match params.channels {
        1 => (1, false),
        2 => (2, false),
        3 => (3, false),
        4 => (6, false),
        5 => (7, false),
        6 => (7, true),
        _ => return Err(invalid("Channels", "no AC-3 channel layout for this count")),
    };
    Ok((fscod, acmod, lfeon))
}

fn ac3_entry(cpd: &[u8], params: &SmoothParams) -> Result<SampleEntry, CodecError> {
    let parsed = if cpd.is_empty() {
        None
    } else {
        match parse_dac3(Reader::new(cpd, 0).with_context(DAC3)) {
            Ok(c) => Some(c),
            Err(e) => {
                // Other packagers put a WAVEFORMATEX here; the attributes still describe
                // the stream.
                tracing::warn!(error = %e, "AC-3 CodecPrivateData is not a dac3 payload; using SamplingRate/Channels");
                None
            }
        }
    };
    let config = match parsed {
        Some(c) => c,
        None => {
            let (fscod, acmod, lfeon) = dolby_layout(params)?;
            Ac3Config {
                fscod,
                bsid: 8,
                bsmod: 0,
                acmod,
                lfeon,
                // Nominal: 192 kbit/s for stereo and less, 448 for surround.
                bit_rate_code: if acmod <= 2 { 10 } else { 15 },
            }
        }
    };
    let media = audio_media(params, config.channels(), config.sample_rate());
    Ok(audio_entry(
        FourCC::new(b"ac-3"),
        media,
        CodecConfig::Ac3(config),
    ))
}

fn eac3_entry(cpd: &[u8], params: &SmoothParams) -> Result<SampleEntry, CodecError> {
    let parsed = if cpd.is_empty() {
        None
    } else {
        match parse_dec3(Reader::new(cpd, 0).with_context(DEC3)) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "EC-3 CodecPrivateData is not a dec3 payload; using SamplingRate/Channels");
                None
            }
        }
    };
    let config = match parsed {
        Some(c) => c,
        None => {
            let (fscod, acmod, lfeon) = dolby_layout(params)?;
            Eac3Config {
                data_rate: 0,
                substreams: vec![Eac3Substream {
                    fscod,
                    bsid: 16,
                    asvc: false,
                    bsmod: 0,
                    acmod,
                    lfeon,
                    num_dep_sub: 0,
                    chan_loc: 0,
                }],
                joc_complexity_index: None,
            }
        }
    };
    let media = audio_media(params, config.channels(), config.sample_rate());
    Ok(audio_entry(
        FourCC::new(b"ec-3"),
        media,
        CodecConfig::Eac3(config),
    ))
}

fn decode_hex(text: &str) -> Result<Vec<u8>, CodecError> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err(invalid(CPD, "odd number of hex digits"));
    }
    if digits.len() / 2 > MAX_CODEC_PRIVATE_DATA {
        return Err(invalid(CPD, "longer than 1 MiB"));
    }
    fn nibble(d: u8) -> Option<u8> {
        char::from(d).to_digit(16).map(|v| v as u8)
    }
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| invalid(CPD, "not hexadecimal"))
}

/// Splits an Annex-B byte stream (H.264 Annex B) at its 3- or 4-byte start codes. Only zero
/// bytes may precede the first start code; trailing zero bytes of each NAL unit belong to
/// the next start code and are dropped.
fn split_annex_b(data: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    let starts: Vec<usize> = data
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0, 0, 1])
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = starts.first() else {
        return Err(invalid(CPD, "no Annex-B start code (00 00 01)"));
    };
    if data.iter().take(first).any(|&b| b != 0) {
        return Err(invalid(CPD, "bytes before the first start code"));
    }
    let mut units = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let mut nal = data.get(start + 3..end).unwrap_or_default();
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if nal.is_empty() {
            continue;
        }
        if nal.len() > MAX_NAL_UNIT_SIZE {
            return Err(invalid(CPD, "NAL unit larger than 64 KiB"));
        }
        if units.len() == MAX_NAL_UNITS {
            return Err(invalid(CPD, "more than 64 NAL units"));
        }
        units.push(nal);
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::codec::{parse_sample_entry, write_sample_entry};

    const AVC_CPD: &str = "000000016764000CACD941419F9F011000000300100000030320F1429960\
                           0000000168EFBCB0";

    #[test]
    fn annex_b_split() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x06, 0,
        ];
        let units = split_annex_b(&data).unwrap();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3], &[0x06]]);
        assert!(split_annex_b(&[0x67, 0, 0, 1, 0x68]).is_err());
        assert!(split_annex_b(&[0x67, 0x68]).is_err());
        assert!(split_annex_b(&[]).is_err());
        assert_eq!(
            split_annex_b(&[0, 0, 1, 0, 0, 1]).unwrap(),
            Vec::<&[u8]>::new()
        );
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("0aFf 10\n").unwrap(), [0x0a, 0xff, 0x10]);
        assert!(matches!(
            decode_hex("abc"),
            Err(CodecError::Invalid {
                field: "CodecPrivateData",
                ..
            })
        ));
        assert!(decode_hex("zz").is_err());
        assert!(decode_hex("é1").is_err());
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn avc_from_smooth_and_back() {
        let params = SmoothParams {
            width: 320,
            height: 180,
            ..SmoothParams::default()
        };
        let entry = sample_entry_from_smooth("H264", AVC_CPD, &params).unwrap();
        assert_eq!(entry.codec_string(), "avc1.64000c");
        assert_eq!(
            entry.media,
            MediaInfo::Video {
                width: 320,
                height: 180,
                par: Some((1, 1))
            }
        );
        assert_eq!(entry.smooth_fourcc(), "H264");
        assert_eq!(entry.smooth_codec_private_data(), AVC_CPD);
        // The init segment entry parses back to the same thing.
        let mut out = Vec::new();
        write_sample_entry(&entry, &mut out);
        let parsed = parse_sample_entry(entry.fourcc, Reader::new(&out[8..], 8)).unwrap();
        assert_eq!(parsed, entry);
        // 3-byte start codes and lowercase are accepted.
        let short = AVC_CPD.to_lowercase().replacen("00000001", "000001", 2);
        assert_eq!(
            sample_entry_from_smooth("avc1", &short, &params).unwrap(),
            entry
        );
    }

    #[test]
    fn hevc_from_smooth() {
        let cpd = "0000000140010C01FFFF01600000030090000003000003003F959809\
                   0000000142010101600000030090000003000003003FA00502016965959A4932BC05A02000000300200000030321\
                   000000014401C172B46240";
        let entry = sample_entry_from_smooth("HVC1", cpd, &SmoothParams::default()).unwrap();
        assert_eq!(entry.codec_string(), "hvc1.1.6.L63.90");
        assert_eq!(entry.smooth_fourcc(), "HVC1");
        assert_eq!(
            entry.media,
            MediaInfo::Video {
                width: 640,
                height: 360,
                par: None
            }
        );
        assert_eq!(entry.smooth_codec_private_data(), cpd);
        let hev1 = sample_entry_from_smooth("HEV1", cpd, &SmoothParams::default()).unwrap();
        assert_eq!(hev1.codec_string(), "hev1.1.6.L63.90");
        assert_eq!(hev1.smooth_fourcc(), "HEV1");
        let mut out = Vec::new();
        write_sample_entry(&entry, &mut out);
        let parsed = parse_sample_entry(entry.fourcc, Reader::new(&out[8..], 8)).unwrap();
        assert_eq!(parsed, entry);
    }

    #[test]
    fn aac_from_smooth() {
        let params = SmoothParams {
            sampling_rate: 48000,
            channels: 2,
            bits_per_sample: 16,
            ..SmoothParams::default()
        };
        let entry = sample_entry_from_smooth("AACL", "1190", &params).unwrap();
        assert_eq!(entry.codec_string(), "mp4a.40.2");
        assert_eq!(entry.smooth_fourcc(), "AACL");
        assert_eq!(entry.smooth_codec_private_data(), "1190");
        // Without CodecPrivateData the ASC is synthesized.
        assert_eq!(
            sample_entry_from_smooth("AACL", "", &params).unwrap(),
            entry
        );
        let he = sample_entry_from_smooth("AACH", "", &params).unwrap();
        assert_eq!(he.codec_string(), "mp4a.40.5");
        assert_eq!(he.smooth_fourcc(), "AACH");
        let CodecConfig::Aac(c) = &he.codec else {
            panic!("not AAC")
        };
        assert_eq!((c.sample_rate, c.output_sample_rate()), (24000, 48000));
        // Missing attributes name the field.
        let no_rate = SmoothParams {
            sampling_rate: 0,
            ..params.clone()
        };
        assert_eq!(
            sample_entry_from_smooth("AACL", "", &no_rate),
            Err(CodecError::Invalid {
                field: "SamplingRate",
                what: "missing (needed without CodecPrivateData)"
            })
        );
        let seven = SmoothParams {
            channels: 7,
            ..params.clone()
        };
        assert!(matches!(
            sample_entry_from_smooth("AACL", "", &seven),
            Err(CodecError::Invalid {
                field: "Channels",
                ..
            })
        ));
        assert!(matches!(
            sample_entry_from_smooth("AACL", "16", &params),
            Err(CodecError::Parse {
                field: "CodecPrivateData",
                ..
            })
        ));
    }

    #[test]
    fn dolby_from_smooth() {
        let params = SmoothParams {
            sampling_rate: 48000,
            channels: 6,
            bits_per_sample: 16,
            ..SmoothParams::default()
        };
        let ac3 = sample_entry_from_smooth("AC-3", "", &params).unwrap();
        assert_eq!(ac3.codec_string(), "ac-3");
        let CodecConfig::Ac3(c) = &ac3.codec else {
            panic!("not AC-3")
        };
        assert_eq!(c.channels(), 6);
        // The payload form goes both ways.
        let cpd = ac3.smooth_codec_private_data();
        assert_eq!(
            sample_entry_from_smooth("ac-3", &cpd, &params).unwrap(),
            ac3
        );
        // A CodecPrivateData in another form falls back to the attributes.
        assert_eq!(
            sample_entry_from_smooth("AC-3", "0000", &params).unwrap(),
            ac3
        );
        let ec3 = sample_entry_from_smooth("EC-3", "", &params).unwrap();
        assert_eq!(
            (ec3.codec_string().as_str(), ec3.smooth_fourcc()),
            ("ec-3", "EC-3")
        );
        let cpd = ec3.smooth_codec_private_data();
        assert_eq!(
            sample_entry_from_smooth("EC-3", &cpd, &params).unwrap(),
            ec3
        );
        let mono_96k = SmoothParams {
            sampling_rate: 96000,
            ..params
        };
        assert!(matches!(
            sample_entry_from_smooth("EC-3", "", &mono_96k),
            Err(CodecError::Invalid {
                field: "SamplingRate",
                ..
            })
        ));
    }

    #[test]
    fn text_and_errors() {
        let ttml = sample_entry_from_smooth("TTML", "", &SmoothParams::default()).unwrap();
        assert_eq!(ttml.codec_string(), "stpp.ttml.im1t");
        assert_eq!(ttml.smooth_fourcc(), "TTML");
        assert_eq!(ttml.smooth_codec_private_data(), "");
        let wvtt = sample_entry_from_smooth("WVTT", "", &SmoothParams::default()).unwrap();
        assert_eq!(wvtt.codec_string(), "wvtt");
        assert_eq!(
            sample_entry_from_smooth("WMA2", "", &SmoothParams::default()),
            Err(CodecError::UnsupportedFourCC("WMA2".to_string()))
        );
        let bad_length = SmoothParams {
            nal_unit_length_field: 3,
            ..SmoothParams::default()
        };
        assert!(matches!(
            sample_entry_from_smooth("H264", AVC_CPD, &bad_length),
            Err(CodecError::Invalid {
                field: "NALUnitLengthField",
                ..
            })
        ));
        // SPS without PPS, PPS without SPS, a broken SPS.
        let sps_only = &AVC_CPD[..AVC_CPD.len() - 16];
        assert!(sample_entry_from_smooth("H264", sps_only, &SmoothParams::default()).is_err());
        assert!(
            sample_entry_from_smooth("H264", "0000000168EFBCB0", &SmoothParams::default()).is_err()
        );
        assert!(matches!(
            sample_entry_from_smooth(
                "H264",
                "00000001676400000000000168EF",
                &SmoothParams::default()
            ),
            Err(CodecError::Parse { .. })
        ));
        // Garbage never panics.
        for cpd in [
            "",
            "00",
            "000001",
            "00000001",
            "0000000167",
            "000000014201",
            "000001FF",
        ] {
            for fourcc in ["H264", "HVC1", "AACL", "EC-3", "AC-3"] {
                let _ = sample_entry_from_smooth(fourcc, cpd, &SmoothParams::default());
            }
        }
    }
}
