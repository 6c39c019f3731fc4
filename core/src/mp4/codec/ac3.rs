//! Dolby AC-3 and Enhanced AC-3: the `dac3` and `dec3` boxes (ETSI TS 102 366 Annex F.4 and
//! F.6).

use super::bits::{BitReader, BitWriter};
use super::write_box;
use crate::mp4::{FourCC, Mp4Error, Reader};

pub(super) const DAC3: FourCC = FourCC::new(b"dac3");
pub(super) const DEC3: FourCC = FourCC::new(b"dec3");

/// Full-bandwidth channels per `acmod` (ETSI TS 102 366 Table 4.3).
const ACMOD_CHANNELS: [u16; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

/// Nominal bit rates in kbit/s per `bit_rate_code` (`frmsizecod >> 1`, Table F.4.1).
const BIT_RATES: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

/// Sampling rate per `fscod` (Table 4.1); 3 is reserved (E-AC-3 reduced rates).
fn sample_rate_of(fscod: u8) -> u32 {
    match fscod {
        0 => 48000,
        1 => 44100,
        2 => 32000,
        _ => 0,
    }
}

/// The AC-3 specific box (`dac3`, ETSI TS 102 366 §F.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Ac3Config {
    pub fscod: u8,
    pub bsid: u8,
    pub bsmod: u8,
    pub acmod: u8,
    pub lfeon: bool,
    pub bit_rate_code: u8,
}

impl Ac3Config {
    /// Channels including the LFE.
    pub fn channels(&self) -> u16 {
        ACMOD_CHANNELS[usize::from(self.acmod & 0x07)] + u16::from(self.lfeon)
    }

    /// Sampling rate in Hz (0 for the reserved code).
    pub fn sample_rate(&self) -> u32 {
        sample_rate_of(self.fscod)
    }

    /// Nominal bit rate in bit/s.
    pub fn bit_rate(&self) -> Option<u32> {
        BIT_RATES
            .get(usize::from(self.bit_rate_code))
            .map(|k| k * 1000)
    }

    /// The 3-byte box payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.put(u64::from(self.fscod), 2);
        w.put(u64::from(self.bsid), 5);
        w.put(u64::from(self.bsmod), 3);
        w.put(u64::from(self.acmod), 3);
        w.flag(self.lfeon);
        w.put(u64::from(self.bit_rate_code), 5);
        w.put(0, 5);
        w.finish()
    }
}

/// The Enhanced AC-3 specific box (`dec3`, ETSI TS 102 366 §F.6).
#[derive(Debug, Clone, PartialEq)]
pub struct Eac3Config {
    /// `data_rate` in kbit/s.
    pub data_rate: u16,
    /// The independent substreams (1 to 8).
    pub substreams: Vec<Eac3Substream>,
    /// `complexity_index_type_a` when the Dolby Atmos (JOC) extension is signalled.
    pub joc_complexity_index: Option<u8>,
}

/// One independent substream of `dec3`.
#[derive(Debug, Clone, PartialEq)]
pub struct Eac3Substream {
    pub fscod: u8,
    pub bsid: u8,
    /// `asvc`: an associated service.
    pub asvc: bool,
    pub bsmod: u8,
    pub acmod: u8,
    pub lfeon: bool,
    /// Dependent substreams of this one.
    pub num_dep_sub: u8,
    /// Extra channel locations of the dependent substreams (Table F.6.1); 0 without any.
    pub chan_loc: u16,
}

impl Eac3Config {
    /// Channels of the main program (the first independent substream and its dependent
    /// substreams), including LFEs.
    pub fn channels(&self) -> u16 {
        let Some(s) = self.substreams.first() else {
            return 0;
        };
        let mut channels = ACMOD_CHANNELS[usize::from(s.acmod & 0x07)] + u16::from(s.lfeon);
        if s.num_dep_sub > 0 {
            // Bits 0, 1, 4, 5, 6 are pairs (Lc/Rc, Lrs/Rrs, Lsd/Rsd, Lw/Rw, Vhl/Vhr); bits
            // 2, 3, 7, 8 single channels (Cs, Ts, Vhc, LFE2).
            for bit in 0..9 {
                if s.chan_loc & (1 << bit) != 0 {
                    channels += if matches!(bit, 0 | 1 | 4 | 5 | 6) {
                        2
                    } else {
                        1
                    };
                }
            }
        }
        channels
    }

    /// Sampling rate of the first substream in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.substreams
            .first()
            .map_or(0, |s| sample_rate_of(s.fscod))
    }

    /// The box payload.
    pub fn payload(&self) -> Vec<u8> {
        let substreams = &self.substreams[..self.substreams.len().min(8)];
        let mut w = BitWriter::new();
        w.put(u64::from(self.data_rate), 13);
        w.put(substreams.len().saturating_sub(1) as u64, 3);
        for s in substreams {
            w.put(u64::from(s.fscod), 2);
            w.put(u64::from(s.bsid), 5);
            w.flag(false);
            w.flag(s.asvc);
            w.put(u64::from(s.bsmod), 3);
            w.put(u64::from(s.acmod), 3);
            w.flag(s.lfeon);
            w.put(0, 3);
            w.put(u64::from(s.num_dep_sub), 4);
            if s.num_dep_sub > 0 {
                w.put(u64::from(s.chan_loc), 9);
            } else {
                w.flag(false);
            }
        }
        if let Some(index) = self.joc_complexity_index {
            w.put(1, 8); // reserved(7), flag_ec3_extension_type_a
            w.put(u64::from(index), 8);
        }
        w.finish()
    }
}

/// Parses a `dac3` body.
pub(super) fn parse_dac3(mut r: Reader<'_>) -> Result<Ac3Config, Mp4Error> {
    let offset = r.offset();
    let bytes = r.bytes(3)?;
    let mut b = BitReader::new(bytes, r.context(), offset);
    let config = Ac3Config {
        fscod: b.bits_u8(2)?,
        bsid: b.bits_u8(5)?,
        bsmod: b.bits_u8(3)?,
        acmod: b.bits_u8(3)?,
        lfeon: b.flag()?,
        bit_rate_code: b.bits_u8(5)?,
    };
    if config.fscod == 3 {
        return Err(b.error("dac3: reserved fscod"));
    }
    if !r.is_empty() {
        tracing::warn!(
            offset = r.offset(),
            bytes = r.remaining(),
            "dac3: ignoring trailing bytes"
        );
    }
    Ok(config)
}

/// Parses a `dec3` body.
pub(super) fn parse_dec3(mut r: Reader<'_>) -> Result<Eac3Config, Mp4Error> {
    let data = r.rest();
    let mut b = BitReader::new(data, r.context(), r.offset());
    let data_rate = b.bits_u16(13)?;
    let count = b.bits(3)? + 1;
    let mut substreams = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let fscod = b.bits_u8(2)?;
        let bsid = b.bits_u8(5)?;
        b.skip(1)?;
        let asvc = b.flag()?;
        let bsmod = b.bits_u8(3)?;
        let acmod = b.bits_u8(3)?;
        let lfeon = b.flag()?;
        b.skip(3)?;
        let num_dep_sub = b.bits_u8(4)?;
        let chan_loc = if num_dep_sub > 0 {
            b.bits_u16(9)?
        } else {
            b.skip(1)?;
            0
        };
        substreams.push(Eac3Substream {
            fscod,
            bsid,
            asvc,
            bsmod,
            acmod,
            lfeon,
            num_dep_sub,
            chan_loc,
        });
    }
    // The substreams end on a byte boundary (16 + n × 24 or 32 bits).
    let mut joc_complexity_index = None;
    if b.bits_left() >= 16 {
        let flags = b.bits_u8(8)?;
        if flags & 0x01 != 0 {
            joc_complexity_index = Some(b.bits_u8(8)?);
        }
    }
    r.skip(b.position() / 8)?;
    if !r.is_empty() {
        tracing::warn!(
            offset = r.offset(),
            bytes = r.remaining(),
            "dec3: ignoring trailing bytes"
        );
    }
    Ok(Eac3Config {
        data_rate,
        substreams,
        joc_complexity_index,
    })
}

pub(super) fn write_dac3(config: &Ac3Config, out: &mut Vec<u8>) {
    write_box(out, DAC3, |out| out.extend_from_slice(&config.payload()));
}

pub(super) fn write_dec3(config: &Eac3Config, out: &mut Vec<u8>) {
    write_box(out, DEC3, |out| out.extend_from_slice(&config.payload()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dac3_from_ffmpeg() {
        // ac3.mp4: 48 kHz stereo, 192 kbit/s.
        let c = parse_dac3(Reader::new(&[0x10, 0x11, 0x40], 0).with_context(DAC3)).unwrap();
        assert_eq!(
            c,
            Ac3Config {
                fscod: 0,
                bsid: 8,
                bsmod: 0,
                acmod: 2,
                lfeon: false,
                bit_rate_code: 10
            }
        );
        assert_eq!(
            (c.channels(), c.sample_rate(), c.bit_rate()),
            (2, 48000, Some(192_000))
        );
        assert_eq!(c.payload(), [0x10, 0x11, 0x40]);
        // 5.1.
        let c = Ac3Config {
            acmod: 7,
            lfeon: true,
            ..c
        };
        assert_eq!(c.channels(), 6);
        assert!(parse_dac3(Reader::new(&[0x10, 0x11], 0)).is_err());
        assert!(parse_dac3(Reader::new(&[0xd0, 0x11, 0x40], 0)).is_err());
    }

    #[test]
    fn dec3_round_trip_and_channels() {
        let c = Eac3Config {
            data_rate: 640,
            substreams: vec![
                Eac3Substream {
                    fscod: 0,
                    bsid: 16,
                    asvc: false,
                    bsmod: 0,
                    acmod: 7,
                    lfeon: true,
                    num_dep_sub: 1,
                    chan_loc: 0b0000_0010, // Lrs/Rrs: 7.1
                },
                Eac3Substream {
                    fscod: 0,
                    bsid: 16,
                    asvc: true,
                    bsmod: 2,
                    acmod: 2,
                    lfeon: false,
                    num_dep_sub: 0,
                    chan_loc: 0,
                },
            ],
            joc_complexity_index: Some(16),
        };
        assert_eq!(c.channels(), 8);
        assert_eq!(c.sample_rate(), 48000);
        let payload = c.payload();
        assert_eq!(payload.len(), 2 + 4 + 3 + 2);
        let parsed = parse_dec3(Reader::new(&payload, 0).with_context(DEC3)).unwrap();
        assert_eq!(parsed, c);
        for len in 0..payload.len() - 2 {
            assert!(
                parse_dec3(Reader::new(&payload[..len], 0)).is_err(),
                "len {len}"
            );
        }
        // A typical 5.1 dec3 written by ffmpeg: 448 kbit/s, one substream.
        let c = parse_dec3(Reader::new(&[0x0e, 0x00, 0x20, 0x0f, 0x00], 0)).unwrap();
        assert_eq!(c.data_rate, 448);
        assert_eq!(c.channels(), 6);
        assert_eq!(c.joc_complexity_index, None);
    }
}
