//! Bit-level reading and writing for the codec headers that are not byte-aligned: H.264/H.265
//! parameter sets (exp-Golomb codes, ITU-T H.264 §7.2 and §9.1), the AudioSpecificConfig
//! (ISO/IEC 14496-3 §1.6.2.1) and the `dac3`/`dec3` payloads (ETSI TS 102 366 Annex F).
//!
//! Reads past the end are errors, never panics; every error names the box and an offset.

use crate::mp4::{FourCC, Mp4Error};

/// Removes the emulation-prevention bytes of a NAL unit (H.264 §7.4.1, H.265 §7.4.2): every
/// `0x03` that follows two zero bytes is dropped, giving the raw byte sequence payload.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian (most significant bit first) bit cursor over a byte slice.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Index of the next bit.
    bit: usize,
    /// Box named in errors.
    fourcc: FourCC,
    /// File offset of `data[0]`. For an unescaped RBSP the offsets after an
    /// emulation-prevention byte are off by the bytes removed; they still point into the NAL.
    offset: u64,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], fourcc: FourCC, offset: u64) -> BitReader<'a> {
        BitReader {
            data,
            bit: 0,
            fourcc,
            offset,
        }
    }

    /// An `Invalid` error at the current byte.
    pub(crate) fn error(&self, what: &'static str) -> Mp4Error {
        Mp4Error::Invalid {
            fourcc: self.fourcc,
            offset: self.offset.saturating_add((self.bit / 8) as u64),
            what,
        }
    }

    /// Bits not yet read.
    pub(crate) fn bits_left(&self) -> usize {
        self.data.len().saturating_mul(8).saturating_sub(self.bit)
    }

    /// Bits read so far.
    pub(crate) fn position(&self) -> usize {
        self.bit
    }

    pub(crate) fn flag(&mut self) -> Result<bool, Mp4Error> {
        let byte = *self
            .data
            .get(self.bit / 8)
            .ok_or_else(|| self.error("bitstream ends early"))?;
        let shift = 7 - (self.bit % 8);
        self.bit += 1;
        Ok((byte >> shift) & 1 == 1)
    }

    /// An unsigned value of `n` bits (`n` ≤ 64).
    pub(crate) fn bits64(&mut self, n: u32) -> Result<u64, Mp4Error> {
        if n > 64 {
            return Err(self.error("bit field wider than 64 bits"));
        }
        if n as usize > self.bits_left() {
            return Err(self.error("bitstream ends early"));
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.flag()?);
        }
        Ok(v)
    }

    /// An unsigned value of `n` bits (`n` ≤ 32).
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, Mp4Error> {
        if n > 32 {
            return Err(self.error("bit field wider than 32 bits"));
        }
        // Cannot fail: at most 32 bits were read.
        u32::try_from(self.bits64(n)?).map_err(|_| self.error("bit field wider than 32 bits"))
    }

    /// An unsigned value of `n` ≤ 8 bits.
    pub(crate) fn bits_u8(&mut self, n: u32) -> Result<u8, Mp4Error> {
        if n > 8 {
            return Err(self.error("bit field wider than 8 bits"));
        }
        u8::try_from(self.bits(n)?).map_err(|_| self.error("bit field wider than 8 bits"))
    }

    /// An unsigned value of `n` ≤ 16 bits.
    pub(crate) fn bits_u16(&mut self, n: u32) -> Result<u16, Mp4Error> {
        if n > 16 {
            return Err(self.error("bit field wider than 16 bits"));
        }
        u16::try_from(self.bits(n)?).map_err(|_| self.error("bit field wider than 16 bits"))
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        if n > self.bits_left() {
            return Err(self.error("bitstream ends early"));
        }
        self.bit += n;
        Ok(())
    }

    /// Skips to the next byte boundary.
    pub(crate) fn byte_align(&mut self) -> Result<(), Mp4Error> {
        let pad = (8 - self.bit % 8) % 8;
        self.skip(pad)
    }

    /// `ue(v)`: an unsigned exp-Golomb code (H.264 §9.1). Codes of more than 32 bits of value
    /// (32 or more leading zeros) are an error.
    pub(crate) fn ue(&mut self) -> Result<u32, Mp4Error> {
        let mut zeros = 0u32;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return Err(self.error("exp-Golomb code wider than 32 bits"));
            }
        }
        let suffix = self.bits64(zeros)?;
        // zeros ≤ 31, so the value is at most 2^32 - 2.
        let value = (1u64 << zeros) - 1 + suffix;
        u32::try_from(value).map_err(|_| self.error("exp-Golomb code wider than 32 bits"))
    }

    /// `se(v)`: a signed exp-Golomb code (H.264 §9.1.1).
    pub(crate) fn se(&mut self) -> Result<i32, Mp4Error> {
        let k = i64::from(self.ue()?);
        let magnitude = (k + 1) / 2;
        let value = if k % 2 == 1 { magnitude } else { -magnitude };
        i32::try_from(value).map_err(|_| self.error("signed exp-Golomb code out of range"))
    }
}

/// A most-significant-bit-first bit writer.
#[derive(Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    current: u8,
    used: u32,
}

impl BitWriter {
    pub(crate) fn new() -> BitWriter {
        BitWriter::default()
    }

    /// Writes the low `n` bits of `value` (`n` ≤ 64), most significant first.
    pub(crate) fn put(&mut self, value: u64, n: u32) {
        for i in (0..n.min(64)).rev() {
            self.flag((value >> i) & 1 == 1);
        }
    }

    pub(crate) fn flag(&mut self, bit: bool) {
        self.current = (self.current << 1) | u8::from(bit);
        self.used += 1;
        if self.used == 8 {
            self.out.push(self.current);
            self.current = 0;
            self.used = 0;
        }
    }

    /// `ue(v)`.
    #[cfg(test)]
    pub(crate) fn ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        self.put(0, len - 1);
        self.put(v, len);
    }

    /// `se(v)`.
    #[cfg(test)]
    pub(crate) fn se(&mut self, value: i32) {
        let k = if value > 0 {
            2 * i64::from(value) - 1
        } else {
            -2 * i64::from(value)
        };
        self.ue(u32::try_from(k).unwrap_or(u32::MAX));
    }

    /// Bits written so far.
    #[cfg(test)]
    pub(crate) fn bit_len(&self) -> usize {
        self.out.len() * 8 + self.used as usize
    }

    /// The bytes written, the last one padded with zero bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.out.push(self.current << (8 - self.used));
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(data: &[u8]) -> BitReader<'_> {
        BitReader::new(data, FourCC::new(b"test"), 100)
    }

    #[test]
    fn fixed_width_fields() {
        let data = [0b1010_1100, 0xff, 0x01];
        let mut r = reader(&data);
        assert!(r.flag().unwrap());
        assert_eq!(r.bits(3).unwrap(), 0b010);
        assert_eq!(r.bits(12).unwrap(), 0b1100_1111_1111);
        assert_eq!(r.bits_left(), 8);
        assert_eq!(r.bits_u8(8).unwrap(), 1);
        assert!(matches!(
            r.flag(),
            Err(Mp4Error::Invalid { offset: 103, .. })
        ));
        let mut r = reader(&data);
        assert!(r.bits(33).is_err());
        assert!(r.bits64(25).is_err());
        assert_eq!(r.bits(24).unwrap(), 0xacff01);
    }

    #[test]
    fn exp_golomb_round_trip() {
        let values = [0u32, 1, 2, 3, 7, 8, 255, 65_535, 1 << 31, u32::MAX - 1];
        let signed = [0i32, 1, -1, 2, -2, 127, -128, i32::MAX, -i32::MAX];
        let mut w = BitWriter::new();
        for &v in &values {
            w.ue(v);
        }
        for &v in &signed {
            w.se(v);
        }
        let data = w.finish();
        let mut r = reader(&data);
        for &v in &values {
            assert_eq!(r.ue().unwrap(), v);
        }
        for &v in &signed {
            assert_eq!(r.se().unwrap(), v);
        }
    }

    #[test]
    fn exp_golomb_limits() {
        // 32 leading zeros: a value wider than 32 bits.
        let data = [0, 0, 0, 0, 0x80, 0, 0, 0, 0];
        assert!(reader(&data).ue().is_err());
        // Truncated suffix.
        assert!(reader(&[0x00, 0x01]).ue().is_err());
        // All zeros.
        assert!(reader(&[0; 3]).ue().is_err());
        // Known codes: 1 → 0, 010 → 1, 011 → 2, 00100 → 3.
        let mut r = reader(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
    }

    #[test]
    fn emulation_prevention() {
        assert_eq!(
            unescape_rbsp(&[0x10, 0, 0, 3, 1, 0, 0, 3, 3, 0x20]),
            [0x10, 0, 0, 1, 0, 0, 3, 0x20]
        );
        assert_eq!(unescape_rbsp(&[0, 3, 0, 0, 0, 3]), [0, 3, 0, 0, 0]);
        assert_eq!(unescape_rbsp(&[]), Vec::<u8>::new());
    }

    #[test]
    fn alignment_and_skip() {
        let mut r = reader(&[0xff, 0x0f]);
        r.flag().unwrap();
        r.byte_align().unwrap();
        assert_eq!(r.position(), 8);
        r.byte_align().unwrap();
        assert_eq!(r.position(), 8);
        assert!(r.skip(9).is_err());
        r.skip(4).unwrap();
        assert_eq!(r.bits(4).unwrap(), 0xf);
    }

    #[test]
    fn writer_pads_last_byte() {
        let mut w = BitWriter::new();
        w.put(0b101, 3);
        w.put(0xabcd, 16);
        assert_eq!(w.finish(), [0b1011_0101, 0b0111_1001, 0b1010_0000]);
    }
}
