//! MPEG-4 audio: the `esds` box (ISO/IEC 14496-14 §5.6) with its ES_Descriptor and
//! DecoderConfigDescriptor (ISO/IEC 14496-1 §7.2.6), and the AudioSpecificConfig inside it
//! (ISO/IEC 14496-3 §1.6.2.1).

use super::bits::{BitReader, BitWriter};
use super::write_full_box;
use crate::mp4::{FourCC, Mp4Error, Reader};

const ESDS: FourCC = FourCC::new(b"esds");

/// `objectTypeIndication` of MPEG-4 audio.
pub const OTI_MPEG4_AUDIO: u8 = 0x40;

/// Descriptor tags (ISO/IEC 14496-1 Table 1).
const ES_DESCR_TAG: u8 = 0x03;
const DECODER_CONFIG_DESCR_TAG: u8 = 0x04;
const DEC_SPECIFIC_INFO_TAG: u8 = 0x05;
const SL_CONFIG_DESCR_TAG: u8 = 0x06;

/// Table 1.18 (`samplingFrequencyIndex` 0..=12).
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// AAC configuration: the `esds` DecoderConfigDescriptor fields and the parsed
/// AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AacConfig {
    /// `objectTypeIndication`: 0x40 for MPEG-4 audio, 0x66..=0x68 for MPEG-2 AAC.
    pub object_type_indication: u8,
    /// `bufferSizeDB`.
    pub buffer_size: u32,
    pub max_bitrate: u32,
    pub avg_bitrate: u32,
    /// The AudioSpecificConfig bytes (DecoderSpecificInfo), as in the file.
    pub asc: Vec<u8>,
    /// The audio object type of the core coder (2 = AAC-LC, also for HE-AAC).
    pub object_type: u8,
    /// Sampling rate of the core coder.
    pub sample_rate: u32,
    /// `channelConfiguration` (0 = described by a program_config_element).
    pub channel_configuration: u8,
    /// Output channels (Parametric Stereo turns one coded channel into two).
    pub channels: u16,
    /// SBR explicitly signalled (object type 5 or 29, or the backward-compatible extension).
    pub sbr: bool,
    /// Parametric Stereo explicitly signalled.
    pub ps: bool,
    /// Output sampling rate of the SBR tool, when signalled.
    pub extension_sample_rate: Option<u32>,
}

impl AacConfig {
    /// The object type that goes in the codec string: 29 for HE-AAC v2, 5 for HE-AAC, the
    /// core object type otherwise. Implicit SBR (nothing in the ASC) stays `2`, which is
    /// what players expect to decode.
    pub fn codec_object_type(&self) -> u8 {
        if self.ps {
            29
        } else if self.sbr {
            5
        } else {
            self.object_type
        }
    }

    /// The sampling rate of the decoded output.
    pub fn output_sample_rate(&self) -> u32 {
        self.extension_sample_rate.unwrap_or(self.sample_rate)
    }

    /// A configuration for AudioSpecificConfig bytes with default `esds` fields.
    pub fn from_asc(asc: Vec<u8>) -> Result<AacConfig, Mp4Error> {
        let info = parse_audio_specific_config(&asc, ESDS, 0)?;
        Ok(info.into_config(OTI_MPEG4_AUDIO, 0, 0, 0, asc))
    }
}

/// The AudioSpecificConfig fields (ISO/IEC 14496-3 §1.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channel_configuration: u8,
    pub channels: u16,
    pub sbr: bool,
    pub ps: bool,
    pub extension_sample_rate: Option<u32>,
}

impl AudioSpecificConfig {
    fn into_config(
        self,
        object_type_indication: u8,
        buffer_size: u32,
        max_bitrate: u32,
        avg_bitrate: u32,
        asc: Vec<u8>,
    ) -> AacConfig {
        AacConfig {
            object_type_indication,
            buffer_size,
            max_bitrate,
            avg_bitrate,
            asc,
            object_type: self.object_type,
            sample_rate: self.sample_rate,
            channel_configuration: self.channel_configuration,
            channels: self.channels,
            sbr: self.sbr,
            ps: self.ps,
            extension_sample_rate: self.extension_sample_rate,
        }
    }
}

/// Reads one descriptor header (tag, then a size of up to four 7-bit groups) and returns the
/// tag and a reader over the descriptor body.
fn read_descriptor<'a>(r: &mut Reader<'a>) -> Result<(u8, Reader<'a>), Mp4Error> {
    let tag = r.u8()?;
    let mut size = 0usize;
    for i in 0..4 {
        let b = r.u8()?;
        size = (size << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(r.error("esds: descriptor size longer than 4 bytes"));
        }
    }
    Ok((tag, r.sub(size)?))
}

/// Parses an `esds` body. Returns `None` when the stream is not AAC (MP3 in `mp4a`, for
/// instance), which the caller reports as an other codec.
pub(super) fn parse_esds(mut r: Reader<'_>) -> Result<Option<AacConfig>, Mp4Error> {
    let (version, _flags) = r.full_box()?;
    if version != 0 {
        return Err(super::unsupported(&r, "esds version"));
    }
    let (tag, mut es) = read_descriptor(&mut r)?;
    if tag != ES_DESCR_TAG {
        return Err(r.error("esds: first descriptor is not an ES_Descriptor"));
    }
    es.u16()?; // ES_ID
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.skip(2)?; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        let len = usize::from(es.u8()?);
        es.skip(len)?; // URLstring
    }
    if flags & 0x20 != 0 {
        es.skip(2)?; // OCR_ES_Id
    }
    let mut decoder_config = None;
    while !es.is_empty() {
        let (tag, body) = read_descriptor(&mut es)?;
        if tag == DECODER_CONFIG_DESCR_TAG {
            decoder_config = Some(body);
            break;
        }
    }
    let mut dc = decoder_config
        .ok_or_else(|| es.error("esds: ES_Descriptor without DecoderConfigDescriptor"))?;
    let object_type_indication = dc.u8()?;
    dc.u8()?; // streamType, upStream, reserved
    let buffer_size = dc.u24()?;
    let max_bitrate = dc.u32()?;
    let avg_bitrate = dc.u32()?;
    if !matches!(object_type_indication, OTI_MPEG4_AUDIO | 0x66..=0x68) {
        return Ok(None);
    }
    let mut asc = None;
    while !dc.is_empty() {
        let (tag, body) = read_descriptor(&mut dc)?;
        if tag == DEC_SPECIFIC_INFO_TAG {
            asc = Some((body.offset(), body.rest()));
            break;
        }
    }
    let (offset, asc) =
        asc.ok_or_else(|| dc.error("esds: AAC without DecoderSpecificInfo (AudioSpecificConfig)"))?;
    let info = parse_audio_specific_config(asc, ESDS, offset)?;
    Ok(Some(info.into_config(
        object_type_indication,
        buffer_size,
        max_bitrate,
        avg_bitrate,
        asc.to_vec(),
    )))
}

/// Writes an `esds` box: ES_Descriptor (ES_ID 0) → DecoderConfigDescriptor (audio stream)
/// → DecoderSpecificInfo with the AudioSpecificConfig, and the predefined SLConfigDescriptor
/// that MP4 files use.
pub(super) fn write_esds(c: &AacConfig, out: &mut Vec<u8>) {
    let mut decoder_config = vec![c.object_type_indication, (0x05 << 2) | 0x01];
    decoder_config.extend_from_slice(&c.buffer_size.min(0x00ff_ffff).to_be_bytes()[1..]);
    decoder_config.extend_from_slice(&c.max_bitrate.to_be_bytes());
    decoder_config.extend_from_slice(&c.avg_bitrate.to_be_bytes());
    if !c.asc.is_empty() {
        write_descriptor(&mut decoder_config, DEC_SPECIFIC_INFO_TAG, &c.asc);
    }
    let mut es = vec![0, 0, 0]; // ES_ID, flags
    write_descriptor(&mut es, DECODER_CONFIG_DESCR_TAG, &decoder_config);
    write_descriptor(&mut es, SL_CONFIG_DESCR_TAG, &[0x02]);
    write_full_box(out, ESDS, 0, 0, |out| {
        write_descriptor(out, ES_DESCR_TAG, &es);
    });
}

/// A descriptor with the shortest size encoding.
fn write_descriptor(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    // Four 7-bit groups hold at most 2^28 - 1 bytes; descriptors here are tiny.
    let size = body.len().min((1 << 28) - 1);
    let groups = (1..4).filter(|&i| size >> (7 * i) != 0).max().unwrap_or(0);
    for i in (1..=groups).rev() {
        out.push(0x80 | ((size >> (7 * i)) & 0x7f) as u8);
    }
    out.push((size & 0x7f) as u8);
    out.extend_from_slice(&body[..size]);
}

/// `GetAudioObjectType()`: 5 bits, 31 escapes to 32 + 6 more bits.
fn audio_object_type(b: &mut BitReader<'_>) -> Result<u8, Mp4Error> {
    let t = b.bits_u8(5)?;
    if t == 31 {
        Ok(32 + b.bits_u8(6)?)
    } else {
        Ok(t)
    }
}

fn sampling_frequency(b: &mut BitReader<'_>) -> Result<u32, Mp4Error> {
    let index = b.bits_u8(4)?;
    if index == 0x0f {
        return b.bits(24);
    }
    SAMPLE_RATES
        .get(usize::from(index))
        .copied()
        .ok_or_else(|| b.error("AudioSpecificConfig: reserved samplingFrequencyIndex"))
}

/// Channels of a `channelConfiguration` (ISO/IEC 14496-3 Table 1.19, and 23001-8 for the
/// values above 7); 0 when unknown.
fn channels_of(configuration: u8) -> u16 {
    match configuration {
        1..=6 => u16::from(configuration),
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        _ => 0,
    }
}

/// Object types that carry a GASpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
fn has_ga_specific_config(object_type: u8) -> bool {
    matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23)
}

/// Parses an AudioSpecificConfig. `fourcc` and `offset` locate it in errors.
pub fn parse_audio_specific_config(
    asc: &[u8],
    fourcc: FourCC,
    offset: u64,
) -> Result<AudioSpecificConfig, Mp4Error> {
    let mut b = BitReader::new(asc, fourcc, offset);
    let mut object_type = audio_object_type(&mut b)?;
    let sample_rate = sampling_frequency(&mut b)?;
    let channel_configuration = b.bits_u8(4)?;
    let mut sbr = false;
    let mut ps = false;
    let mut extension_sample_rate = None;
    if object_type == 5 || object_type == 29 {
        // Explicit hierarchical signalling of HE-AAC (v2).
        sbr = true;
        ps = object_type == 29;
        extension_sample_rate = Some(sampling_frequency(&mut b)?);
        object_type = audio_object_type(&mut b)?;
        if object_type == 22 {
            b.skip(4)?; // extensionChannelConfiguration
        }
    }
    let mut channels = channels_of(channel_configuration);
    let mut tail_parsed = false;
    if has_ga_specific_config(object_type) {
        b.flag()?; // frameLengthFlag
        if b.flag()? {
            b.skip(14)?; // coreCoderDelay
        }
        let extension_flag = b.flag()?;
        if channel_configuration == 0 {
            channels = program_config_element_channels(&mut b)?;
        }
        if object_type == 6 || object_type == 20 {
            b.skip(3)?; // layerNr
        }
        if extension_flag {
            if object_type == 22 {
                b.skip(16)?; // numOfSubFrame, layer_length
            }
            if matches!(object_type, 17 | 19 | 20 | 23) {
                b.skip(3)?; // resilience flags
            }
            b.flag()?; // extensionFlag3
        }
        tail_parsed = true;
        if matches!(object_type, 17 | 19..=23) {
            // epConfig 2 and 3 are followed by an ErrorProtectionSpecificConfig.
            tail_parsed = b.bits(2)? < 2;
        }
    }
    // Backward-compatible explicit signalling (§1.6.5.2): a sync extension after the core
    // config. A broken extension does not make the core config unusable.
    if tail_parsed && !sbr && b.bits_left() >= 16 {
        match sync_extension(&mut b) {
            Ok(Some((ext_rate, with_ps))) => {
                sbr = true;
                ps = with_ps;
                extension_sample_rate = Some(ext_rate);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "AudioSpecificConfig: ignoring a broken sync extension")
            }
        }
    }
    if ps && channel_configuration == 1 {
        channels = 2;
    }
    Ok(AudioSpecificConfig {
        object_type,
        sample_rate,
        channel_configuration,
        channels,
        sbr,
        ps,
        extension_sample_rate,
    })
}

/// The `syncExtensionType` 0x2b7 / 0x548 block. `Some((sbr rate, ps))` when SBR is present.
fn sync_extension(b: &mut BitReader<'_>) -> Result<Option<(u32, bool)>, Mp4Error> {
    if b.bits(11)? != 0x2b7 {
        return Ok(None);
    }
    match audio_object_type(b)? {
        5 => {
            if !b.flag()? {
                return Ok(None);
            }
            let rate = sampling_frequency(b)?;
            let ps = b.bits_left() >= 12 && b.bits(11)? == 0x548 && b.flag()?;
            Ok(Some((rate, ps)))
        }
        22 => {
            if !b.flag()? {
                return Ok(None);
            }
            let rate = sampling_frequency(b)?;
            b.skip(4)?; // extensionChannelConfiguration
            Ok(Some((rate, false)))
        }
        _ => Ok(None),
    }
}

/// Counts the channels of a `program_config_element()` (ISO/IEC 14496-3 §4.4.1.1) and reads
/// past it, including the byte alignment (relative to the start of the ASC) and comment.
fn program_config_element_channels(b: &mut BitReader<'_>) -> Result<u16, Mp4Error> {
    b.skip(4 + 2 + 4)?; // element_instance_tag, object_type, sampling_frequency_index
    let front = b.bits(4)?;
    let side = b.bits(4)?;
    let back = b.bits(4)?;
    let lfe = b.bits(2)?;
    let assoc_data = b.bits(3)?;
    let valid_cc = b.bits(4)?;
    for skip in [4, 4] {
        if b.flag()? {
            b.skip(skip)?; // mono / stereo mixdown element number
        }
    }
    if b.flag()? {
        b.skip(3)?; // matrix_mixdown_idx, pseudo_surround_enable
    }
    let mut channels = 0u32;
    for _ in 0..front + side + back {
        channels += if b.flag()? { 2 } else { 1 };
        b.skip(4)?;
    }
    channels += lfe;
    b.skip(4 * (lfe + assoc_data) as usize)?;
    b.skip(5 * valid_cc as usize)?;
    b.byte_align()?;
    let comment = b.bits(8)?;
    b.skip(8 * comment as usize)?;
    u16::try_from(channels).map_err(|_| b.error("AudioSpecificConfig: too many channels"))
}

/// `samplingFrequencyIndex` of a rate, or 0x0f (explicit) when it is not in the table.
fn frequency_index(rate: u32) -> u8 {
    SAMPLE_RATES
        .iter()
        .position(|&r| r == rate)
        .map_or(0x0f, |i| i as u8)
}

fn put_frequency(w: &mut BitWriter, rate: u32) {
    let index = frequency_index(rate);
    w.put(u64::from(index), 4);
    if index == 0x0f {
        w.put(u64::from(rate), 24);
    }
}

/// `channelConfiguration` for a channel count, `None` when no configuration matches.
pub(super) fn channel_configuration_for(channels: u16) -> Option<u8> {
    match channels {
        1..=6 => Some(channels as u8),
        8 => Some(7),
        _ => None,
    }
}

/// An AudioSpecificConfig for AAC-LC (or, with `he`, HE-AAC with explicit hierarchical
/// signalling: object type 5, the core at half of `sample_rate`). Used when a Smooth
/// manifest gives no CodecPrivateData.
pub(super) fn synthesize_asc(sample_rate: u32, channel_configuration: u8, he: bool) -> Vec<u8> {
    let mut w = BitWriter::new();
    if he {
        w.put(5, 5);
        put_frequency(&mut w, sample_rate / 2);
        w.put(u64::from(channel_configuration), 4);
        put_frequency(&mut w, sample_rate);
        w.put(2, 5);
    } else {
        w.put(2, 5);
        put_frequency(&mut w, sample_rate);
        w.put(u64::from(channel_configuration), 4);
    }
    w.put(0, 3); // frameLengthFlag, dependsOnCoreCoder, extensionFlag
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asc(bytes: &[u8]) -> AudioSpecificConfig {
        parse_audio_specific_config(bytes, ESDS, 0).unwrap()
    }

    #[test]
    fn aac_lc() {
        let a = asc(&[0x12, 0x10]);
        assert_eq!((a.object_type, a.sample_rate, a.channels), (2, 44100, 2));
        assert!(!a.sbr && !a.ps);
        // ffmpeg's AAC-LC: 48 kHz stereo with a backward-compatible extension saying "no SBR".
        let a = asc(&[0x11, 0x90, 0x56, 0xe5, 0x00]);
        assert_eq!((a.object_type, a.sample_rate, a.channels), (2, 48000, 2));
        assert!(!a.sbr);
        // 5.1 and 7.1.
        assert_eq!(asc(&[0x11, 0xb0]).channels, 6);
        assert_eq!(asc(&[0x11, 0xb8]).channels, 8);
    }

    #[test]
    fn he_aac_explicit_signalling() {
        // Hierarchical: object type 5, core 24 kHz stereo, SBR at 48 kHz.
        let a = asc(&synthesize_asc(48000, 2, true));
        assert_eq!(a.object_type, 2);
        assert!(a.sbr && !a.ps);
        assert_eq!(
            (a.sample_rate, a.extension_sample_rate),
            (24000, Some(48000))
        );
        // Hierarchical HE-AAC v2: object type 29, mono core, PS.
        let mut w = BitWriter::new();
        w.put(29, 5);
        w.put(6, 4);
        w.put(1, 4);
        w.put(3, 4);
        w.put(2, 5);
        w.put(0, 3);
        let a = asc(&w.finish());
        assert!(a.sbr && a.ps);
        assert_eq!(a.channels, 2);
        // Backward compatible: LC 24 kHz stereo + 0x2b7 / SBR 48 kHz + 0x548 / PS.
        let mut w = BitWriter::new();
        w.put(2, 5);
        w.put(6, 4);
        w.put(1, 4);
        w.put(0, 3);
        w.put(0x2b7, 11);
        w.put(5, 5);
        w.flag(true);
        w.put(3, 4);
        w.put(0x548, 11);
        w.flag(true);
        let a = asc(&w.finish());
        assert_eq!(a.object_type, 2);
        assert!(a.sbr && a.ps);
        assert_eq!(a.extension_sample_rate, Some(48000));
    }

    #[test]
    fn escapes_and_explicit_rate() {
        // Object type 31 escape (32 + 10 = 42, USAC) and an explicit 24-bit rate.
        let mut w = BitWriter::new();
        w.put(31, 5);
        w.put(10, 6);
        w.put(0x0f, 4);
        w.put(37800, 24);
        w.put(2, 4);
        let a = asc(&w.finish());
        assert_eq!((a.object_type, a.sample_rate, a.channels), (42, 37800, 2));
        // Reserved frequency index.
        assert!(parse_audio_specific_config(&[0x16, 0x90], ESDS, 0).is_err());
        assert!(parse_audio_specific_config(&[0x12], ESDS, 0).is_err());
    }

    #[test]
    fn program_config_element() {
        // channelConfiguration 0: a PCE with 3 front (C + L/R pair), 1 back pair, 1 LFE.
        let mut w = BitWriter::new();
        w.put(2, 5);
        w.put(3, 4);
        w.put(0, 4);
        w.put(0, 3); // GASpecificConfig flags
        w.put(0, 4);
        w.put(1, 2);
        w.put(3, 4);
        w.put(2, 4); // front elements
        w.put(0, 4);
        w.put(1, 4); // back
        w.put(1, 2); // lfe
        w.put(0, 3);
        w.put(0, 4);
        w.put(0, 3); // no mixdowns
        w.flag(false);
        w.put(0, 4);
        w.flag(true);
        w.put(1, 4);
        w.flag(true);
        w.put(2, 4); // back CPE
        w.put(0, 4); // lfe tag
        let bits = 5 + 4 + 4 + 3 + 4 + 2 + 4 + 4 + 4 + 4 + 2 + 3 + 4 + 3 + 15 + 4;
        w.put(0, (8 - bits % 8) % 8);
        w.put(2, 8);
        w.put(0xabcd, 16); // comment
        let a = asc(&w.finish());
        assert_eq!(a.channels, 6);
    }

    #[test]
    fn esds_parse_and_write() {
        // ffmpeg's esds body (4-byte descriptor sizes).
        let body = [
            0x00, 0x00, 0x00, 0x00, 0x03, 0x80, 0x80, 0x80, 0x25, 0x00, 0x02, 0x00, 0x04, 0x80,
            0x80, 0x80, 0x17, 0x40, 0x15, 0x00, 0x00, 0x00, 0x00, 0x01, 0xf5, 0x05, 0x00, 0x01,
            0xf5, 0x05, 0x05, 0x80, 0x80, 0x80, 0x05, 0x11, 0x90, 0x56, 0xe5, 0x00, 0x06, 0x80,
            0x80, 0x80, 0x01, 0x02,
        ];
        let c = parse_esds(Reader::new(&body, 0).with_context(ESDS))
            .unwrap()
            .unwrap();
        assert_eq!(c.object_type_indication, 0x40);
        assert_eq!((c.max_bitrate, c.avg_bitrate), (128261, 128261));
        assert_eq!(c.asc, [0x11, 0x90, 0x56, 0xe5, 0x00]);
        assert_eq!(c.codec_object_type(), 2);
        let mut out = Vec::new();
        write_esds(&c, &mut out);
        let again = parse_esds(Reader::new(&out[8..], 0).with_context(ESDS))
            .unwrap()
            .unwrap();
        assert_eq!(again, c);
        // Truncated at every length: errors, no panics.
        for len in 0..body.len() {
            assert!(
                parse_esds(Reader::new(&body[..len], 0)).is_err(),
                "len {len}"
            );
        }
        // A descriptor size running past the box.
        let mut bad = body;
        bad[8] = 0x7f;
        assert!(parse_esds(Reader::new(&bad, 0)).is_err());
        // Five size bytes.
        let five = [0, 0, 0, 0, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0];
        assert!(parse_esds(Reader::new(&five, 0)).is_err());
        // MP3 in mp4a: not AAC.
        let mut mp3 = body;
        mp3[17] = 0x6b;
        assert_eq!(parse_esds(Reader::new(&mp3, 0)).unwrap(), None);
    }

    #[test]
    fn descriptor_sizes() {
        for len in [0usize, 1, 127, 128, 300, 16383, 16384, 70000] {
            let body = vec![7u8; len];
            let mut out = Vec::new();
            write_descriptor(&mut out, 5, &body);
            let mut r = Reader::new(&out, 0);
            let (tag, d) = read_descriptor(&mut r).unwrap();
            assert_eq!((tag, d.remaining()), (5, len));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn synthesized_configs() {
        assert_eq!(synthesize_asc(48000, 2, false), [0x11, 0x90]);
        assert_eq!(synthesize_asc(44100, 2, false), [0x12, 0x10]);
        let a = asc(&synthesize_asc(37800, 1, false));
        assert_eq!((a.sample_rate, a.channels), (37800, 1));
    }
}
