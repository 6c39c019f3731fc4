//! Incremental parsing of a box stream, as live ingest receives it: bytes arrive in chunks of
//! any size (an HTTP body, chunked), and complete top-level boxes come out as soon as their
//! last byte is in. Memory is bounded: a box larger than the configured limit is refused as
//! soon as its header is seen, before its body is buffered.

use super::reader::{parse_box_header, BoxHeader, FourCC};
use super::Mp4Error;

/// Largest top-level box a stream accepts by default (a 2-second 4K fragment is ~10 MB).
pub const DEFAULT_MAX_BOX: u64 = 64 << 20;

/// One complete top-level box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBox {
    pub header: BoxHeader,
    /// The whole box, header included.
    pub data: Vec<u8>,
}

impl StreamBox {
    /// The body (after the header).
    pub fn body(&self) -> &[u8] {
        &self.data[self.header.header_size as usize..]
    }
}

/// Splits a byte stream into top-level boxes.
#[derive(Debug)]
pub struct BoxStream {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    max_box: u64,
    /// A lower limit for some box types (checked at the header, like `max_box`).
    limit_of: fn(FourCC) -> u64,
    failed: bool,
}

impl Default for BoxStream {
    fn default() -> Self {
        BoxStream::new(DEFAULT_MAX_BOX)
    }
}

impl BoxStream {
    /// A stream refusing boxes larger than `max_box` bytes.
    pub fn new(max_box: u64) -> BoxStream {
        BoxStream {
            buf: Vec::new(),
            offset: 0,
            max_box,
            limit_of: |_| u64::MAX,
            failed: false,
        }
    }

    /// Refuses boxes of some types at a lower size than `max_box` (`limit_of` gives the limit of
    /// a box type).
    pub fn with_limits(mut self, limit_of: fn(FourCC) -> u64) -> BoxStream {
        self.limit_of = limit_of;
        self
    }

    /// Bytes received but not yet returned as boxes.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the next byte not yet returned as part of a box.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Feeds `data`; every box completed by it is appended to `out`. After an error the stream
    /// refuses further input (a corrupt stream cannot be resynchronised reliably).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<StreamBox>) -> Result<(), Mp4Error> {
        if self.failed {
            return Err(Mp4Error::Invalid {
                fourcc: FourCC::new(b"strm"),
                offset: self.offset,
                what: "stream already failed",
            });
        }
        self.buf.extend_from_slice(data);
        let result = self.drain(out);
        if result.is_err() {
            self.failed = true;
            self.buf = Vec::new();
        }
        result
    }

    fn drain(&mut self, out: &mut Vec<StreamBox>) -> Result<(), Mp4Error> {
        let mut start = 0usize;
        loop {
            let rest = &self.buf[start..];
            let abs = self.offset + start as u64;
            let Some(header) = parse_box_header(rest, abs, None)? else {
                break;
            };
            let limit = self.max_box.min((self.limit_of)(header.fourcc));
            if header.size > limit {
                return Err(Mp4Error::TooLarge {
                    fourcc: header.fourcc,
                    offset: abs,
                    what: "box size",
                    value: header.size,
                    limit,
                });
            }
            let size = header.size as usize;
            if rest.len() < size {
                break;
            }
            out.push(StreamBox {
                header,
                data: rest[..size].to_vec(),
            });
            start += size;
        }
        if start > 0 {
            self.buf.drain(..start);
            self.offset += start as u64;
        }
        Ok(())
    }

    /// Ends the stream: `Ok` when nothing partial is left.
    pub fn finish(&self) -> Result<(), Mp4Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Mp4Error::Truncated {
                fourcc: FourCC::new(b"strm"),
                offset: self.offset,
                needed: 8,
                available: self.buf.len() as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(fourcc: &[u8; 4], body_len: usize) -> Vec<u8> {
        let mut v = ((body_len + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(fourcc);
        v.extend((0..body_len).map(|i| i as u8));
        v
    }

    #[test]
    fn any_chunking_gives_the_same_boxes() {
        let mut stream = Vec::new();
        for (f, n) in [
            (b"ftyp", 16),
            (b"moov", 300),
            (b"moof", 100),
            (b"mdat", 5000),
            (b"mfra", 0),
        ] {
            stream.extend(bx(f, n));
        }
        for chunk in [1, 3, 7, 8, 100, 4096, stream.len()] {
            let mut s = BoxStream::default();
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                s.push(c, &mut out).unwrap();
            }
            s.finish().unwrap();
            let kinds: Vec<String> = out.iter().map(|b| b.header.fourcc.to_string()).collect();
            assert_eq!(
                kinds,
                ["ftyp", "moov", "moof", "mdat", "mfra"],
                "chunk {chunk}"
            );
            assert_eq!(out[3].body().len(), 5000);
            assert_eq!(out[4].header.offset, (stream.len() - 8) as u64);
        }
    }

    #[test]
    fn oversized_box_refused_at_its_header() {
        let mut s = BoxStream::new(1000);
        let mut out = Vec::new();
        let mut hdr = 5000u32.to_be_bytes().to_vec();
        hdr.extend_from_slice(b"mdat");
        assert!(matches!(
            s.push(&hdr, &mut out),
            Err(Mp4Error::TooLarge { .. })
        ));
        assert!(s.push(b"more", &mut out).is_err());
    }

    #[test]
    fn malformed_and_partial() {
        let mut s = BoxStream::default();
        let mut out = Vec::new();
        // size 0 is meaningless in a stream.
        assert!(s
            .push(&[0, 0, 0, 0, b'm', b'd', b'a', b't'], &mut out)
            .is_err());
        let mut s = BoxStream::default();
        s.push(&[0, 0, 0, 20, b'm'], &mut out).unwrap();
        assert!(s.finish().is_err());
        let mut s = BoxStream::default();
        assert!(s
            .push(&[0, 0, 0, 3, b'a', b'b', b'c', b'd'], &mut out)
            .is_err());
    }
}
