//! A bounds-checked reader over borrowed bytes, and the one function that reads box headers.
//!
//! Nothing here indexes a slice without a check: every read returns `Result`, and a box body is
//! a sub-reader that cannot see past the box. Errors carry the absolute file offset and the
//! fourcc of the box being read so a log line can point at the broken byte.

use std::fmt;

use super::Mp4Error;

/// A four-character code (box type, sample-entry format, brand, handler type).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FourCC(pub [u8; 4]);

impl FourCC {
    /// From a 4-byte literal: `FourCC::new(b"moov")`.
    pub const fn new(code: &[u8; 4]) -> FourCC {
        FourCC(*code)
    }

    /// The code as a big-endian integer.
    pub const fn as_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The code as text (non-printable bytes escaped).
    pub fn as_string(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCC({self})")
    }
}

impl From<&[u8; 4]> for FourCC {
    fn from(code: &[u8; 4]) -> Self {
        FourCC(*code)
    }
}

/// A cursor over a byte slice that knows the slice's absolute position in the file.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Absolute file offset of `data[0]`.
    base: u64,
    /// The box this reader is inside, for error messages.
    context: FourCC,
}

impl<'a> Reader<'a> {
    /// A reader over `data`, which starts at file offset `base`.
    pub fn new(data: &'a [u8], base: u64) -> Reader<'a> {
        Reader {
            data,
            pos: 0,
            base,
            context: FourCC::new(b"file"),
        }
    }

    /// The same reader with a different box named in errors.
    pub fn with_context(mut self, context: FourCC) -> Reader<'a> {
        self.context = context;
        self
    }

    /// The box named in errors.
    pub fn context(&self) -> FourCC {
        self.context
    }

    /// Absolute file offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// True when every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Position within this reader's slice.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes (without consuming them).
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// An error at the current offset.
    pub fn error(&self, what: &'static str) -> Mp4Error {
        Mp4Error::Invalid {
            fourcc: self.context,
            offset: self.offset(),
            what,
        }
    }

    fn truncated(&self, needed: usize) -> Mp4Error {
        Mp4Error::Truncated {
            fourcc: self.context,
            offset: self.offset(),
            needed: needed as u64,
            available: self.remaining() as u64,
        }
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.bytes(n).map(|_| ())
    }

    /// A sub-reader over the next `n` bytes, which are consumed from this reader.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, Mp4Error> {
        let base = self.offset();
        let context = self.context;
        Ok(Reader {
            data: self.bytes(n)?,
            pos: 0,
            base,
            context,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Mp4Error> {
        let b = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Mp4Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u24(&mut self) -> Result<u32, Mp4Error> {
        let [a, b, c] = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }
    pub fn u32(&mut self) -> Result<u32, Mp4Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, Mp4Error> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, Mp4Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, Mp4Error> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub fn i16(&mut self) -> Result<i16, Mp4Error> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub fn fourcc(&mut self) -> Result<FourCC, Mp4Error> {
        Ok(FourCC(self.array()?))
    }
    /// A 16-byte UUID.
    pub fn uuid(&mut self) -> Result<[u8; 16], Mp4Error> {
        self.array()
    }

    /// A 32- or 64-bit value depending on a full box's version (0 → 32, 1 → 64).
    pub fn u32_or_u64(&mut self, version: u8) -> Result<u64, Mp4Error> {
        match version {
            0 => Ok(u64::from(self.u32()?)),
            1 => self.u64(),
            _ => Err(self.error("unsupported box version")),
        }
    }

    /// The version and flags of a full box.
    pub fn full_box(&mut self) -> Result<(u8, u32), Mp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// A NUL-terminated UTF-8 string (lossy), or the rest of the reader when there is no NUL.
    pub fn c_string(&mut self) -> Result<String, Mp4Error> {
        let rest = self.rest();
        let end = rest.iter().position(|&b| b == 0);
        let text = &rest[..end.unwrap_or(rest.len())];
        self.pos += end.map_or(rest.len(), |e| e + 1);
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    /// Reads the next box header; `None` at the end of this reader.
    pub fn next_box(&mut self) -> Result<Option<BoxHeader>, Mp4Error> {
        if self.is_empty() {
            return Ok(None);
        }
        read_box_header(self).map(Some)
    }

    /// Reads the next box header and returns it with a reader over its body (consumed from
    /// this reader). `None` at the end.
    pub fn next_box_body(&mut self) -> Result<Option<(BoxHeader, Reader<'a>)>, Mp4Error> {
        let Some(header) = self.next_box()? else {
            return Ok(None);
        };
        let body_len =
            usize::try_from(header.body_size()).map_err(|_| self.error("box too large"))?;
        let body = self.sub(body_len)?.with_context(header.fourcc);
        Ok(Some((header, body)))
    }
}

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// Box type.
    pub fourcc: FourCC,
    /// Absolute offset of the box's first byte.
    pub offset: u64,
    /// Size of the header (8, 16, plus 16 for `uuid` boxes).
    pub header_size: u64,
    /// Total box size including the header.
    pub size: u64,
    /// The extended type of a `uuid` box.
    pub uuid: Option<[u8; 16]>,
}

impl BoxHeader {
    /// Size of the body (after the header).
    pub fn body_size(&self) -> u64 {
        self.size - self.header_size
    }

    /// Absolute offset of the body.
    pub fn body_offset(&self) -> u64 {
        self.offset + self.header_size
    }

    /// Absolute offset just past the box.
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// The smallest possible box header.
pub const MIN_HEADER: u64 = 8;

/// Reads a box header at the reader's position, handling every size form in one place:
/// `size == 0` (box extends to the end of its container), `size == 1` (64-bit `largesize`
/// follows), a size smaller than the header, and a size past the container's end. The box
/// must fit in the reader; callers that read a box's header from a partial buffer use
/// [`parse_box_header`] instead.
pub fn read_box_header(r: &mut Reader<'_>) -> Result<BoxHeader, Mp4Error> {
    let available = r.remaining() as u64;
    let header = parse_box_header(r.rest(), r.offset(), Some(available))?
        .ok_or_else(|| r.error("truncated box header"))?;
    if header.size > available {
        return Err(Mp4Error::BoxOverrun {
            fourcc: header.fourcc,
            offset: header.offset,
            size: header.size,
            available,
        });
    }
    r.skip(header.header_size as usize)?;
    Ok(header)
}

/// Parses a box header from the start of `data` (at file offset `offset`). `container_left`
/// is how many bytes remain in the enclosing container from this box's start (used for
/// `size == 0`); `None` means unknown (a stream), where `size == 0` is an error.
/// Returns `Ok(None)` when `data` is too short to hold the complete header.
pub fn parse_box_header(
    data: &[u8],
    offset: u64,
    container_left: Option<u64>,
) -> Result<Option<BoxHeader>, Mp4Error> {
    if data.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let fourcc = FourCC([data[4], data[5], data[6], data[7]]);
    let mut header_size = 8u64;
    let size = match size32 {
        0 => match container_left {
            Some(left) => left,
            None => {
                return Err(Mp4Error::Invalid {
                    fourcc,
                    offset,
                    what: "box size 0 (to end of file) where the end is unknown",
                })
            }
        },
        1 => {
            if data.len() < 16 {
                return Ok(None);
            }
            header_size = 16;
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[8..16]);
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let uuid = if fourcc == FourCC::new(b"uuid") {
        let start = header_size as usize;
        if data.len() < start + 16 {
            return Ok(None);
        }
        let mut u = [0u8; 16];
        u.copy_from_slice(&data[start..start + 16]);
        header_size += 16;
        Some(u)
    } else {
        None
    };
    if size < header_size {
        return Err(Mp4Error::Invalid {
            fourcc,
            offset,
            what: "box size smaller than its header",
        });
    }
    Ok(Some(BoxHeader {
        fourcc,
        offset,
        header_size,
        size,
        uuid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(fourcc);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn integers_and_truncation() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut r = Reader::new(&data, 100);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u24().unwrap(), 0x040506);
        assert_eq!(r.offset(), 106);
        let err = r.u32().unwrap_err();
        assert!(matches!(
            err,
            Mp4Error::Truncated {
                offset: 106,
                needed: 4,
                available: 3,
                ..
            }
        ));
        assert_eq!(r.remaining(), 3);
    }

    #[test]
    fn box_headers() {
        let data = bx(b"free", &[0; 4]);
        let mut r = Reader::new(&data, 0);
        let (h, body) = r.next_box_body().unwrap().unwrap();
        assert_eq!(h.fourcc, FourCC::new(b"free"));
        assert_eq!(h.size, 12);
        assert_eq!(body.remaining(), 4);
        assert!(r.next_box().unwrap().is_none());
    }

    #[test]
    fn size_zero_extends_to_container_end() {
        let mut data = vec![0, 0, 0, 0];
        data.extend_from_slice(b"mdat");
        data.extend_from_slice(&[7; 10]);
        let mut r = Reader::new(&data, 0);
        let (h, body) = r.next_box_body().unwrap().unwrap();
        assert_eq!(h.size, 18);
        assert_eq!(body.remaining(), 10);
        assert!(parse_box_header(&data, 0, None).is_err());
    }

    #[test]
    fn largesize() {
        let mut data = vec![0, 0, 0, 1];
        data.extend_from_slice(b"mdat");
        data.extend_from_slice(&20u64.to_be_bytes());
        data.extend_from_slice(&[1, 2, 3, 4]);
        let mut r = Reader::new(&data, 0);
        let (h, body) = r.next_box_body().unwrap().unwrap();
        assert_eq!(h.header_size, 16);
        assert_eq!(h.size, 20);
        assert_eq!(body.rest(), &[1, 2, 3, 4]);
        // A largesize that does not fit its own header.
        let mut bad = vec![0, 0, 0, 1];
        bad.extend_from_slice(b"mdat");
        bad.extend_from_slice(&8u64.to_be_bytes());
        assert!(Reader::new(&bad, 0).next_box().is_err());
        // Over 4 GiB is representable in the header even when the data is not here.
        let mut big = vec![0, 0, 0, 1];
        big.extend_from_slice(b"mdat");
        big.extend_from_slice(&(5u64 << 30).to_be_bytes());
        let h = parse_box_header(&big, 0, None).unwrap().unwrap();
        assert_eq!(h.size, 5 << 30);
        assert!(matches!(
            Reader::new(&big, 0).next_box(),
            Err(Mp4Error::BoxOverrun { .. })
        ));
    }

    #[test]
    fn malformed_sizes() {
        for size in [1u32.to_be_bytes(), 4u32.to_be_bytes(), 7u32.to_be_bytes()] {
            let mut d = size.to_vec();
            d.extend_from_slice(b"abcd");
            assert!(Reader::new(&d, 0).next_box().is_err());
        }
        // Size past the parent.
        let mut d = 100u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"moov");
        d.extend_from_slice(&[0; 8]);
        assert!(matches!(
            Reader::new(&d, 0).next_box(),
            Err(Mp4Error::BoxOverrun { size: 100, .. })
        ));
        // Partial header.
        assert_eq!(parse_box_header(&[0, 0, 0], 0, None).unwrap(), None);
        assert!(Reader::new(&[0, 0, 0, 9, b'a'], 0).next_box().is_err());
    }

    #[test]
    fn uuid_boxes() {
        let mut body = [0u8; 20].to_vec();
        body[..16].copy_from_slice(&[0xAB; 16]);
        let data = bx(b"uuid", &body);
        let mut r = Reader::new(&data, 0);
        let (h, b) = r.next_box_body().unwrap().unwrap();
        assert_eq!(h.uuid, Some([0xAB; 16]));
        assert_eq!(h.header_size, 24);
        assert_eq!(b.remaining(), 4);
        let short = bx(b"uuid", &[0; 8]);
        assert!(Reader::new(&short, 0).next_box().is_err());
    }

    #[test]
    fn fourcc_display() {
        assert_eq!(FourCC::new(b"moov").to_string(), "moov");
        assert_eq!(FourCC([0, b'a', b'b', 0xff]).to_string(), "\\x00ab\\xff");
    }

    #[test]
    fn c_strings() {
        let mut r = Reader::new(b"abc\0def", 0);
        assert_eq!(r.c_string().unwrap(), "abc");
        assert_eq!(r.c_string().unwrap(), "def");
        assert!(r.is_empty());
    }
}
