//! The stream an encoder POSTs, split into boxes as its bytes arrive (a request body comes in
//! pieces of any size): the live server manifest (Smooth `uuid`), the init segment (`ftyp` +
//! `moov`), fragments (`moof` + `mdat`, one `Vec` each), and the end of the stream (`mfra`, or
//! a segment whose `styp` carries the `lmsg` brand).
//!
//! The parser keeps at most one box (one fragment) in memory, and refuses a box larger than
//! the limit of its kind before it buffers it.

use crate::mp4::reader::{parse_box_header, FourCC};
use crate::mp4::Mp4Error;

/// Largest `moov`, `ftyp`, live manifest or other small box accepted.
pub const MAX_HEADER_BOX: u64 = 16 << 20;
/// Largest `moof` + `mdat` accepted (a 2-second fragment at 100 Mbit/s is 25 MB).
pub const MAX_FRAGMENT: u64 = 256 << 20;

/// `uuid` of the Smooth live server manifest box (MS-SSTR ingest).
pub const UUID_LIVE_MANIFEST: [u8; 16] = [
    0xa5, 0xd4, 0x0b, 0x30, 0xe8, 0x14, 0x11, 0xdd, 0xba, 0x2f, 0x08, 0x00, 0x20, 0x0c, 0x9a, 0x66,
];

/// Why an ingest stream is refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not an MP4 box stream, or a box that breaks the format (400).
    #[error("malformed ingest stream: {0}")]
    Malformed(String),
    #[error("malformed ingest stream: {0}")]
    Mp4(#[from] Mp4Error),
    /// Media this origin does not take (415).
    #[error("unsupported media: {0}")]
    Unsupported(String),
    /// Media before a usable init segment (412).
    #[error("media before a usable init segment: {0}")]
    NoInit(String),
    /// Timestamps before what the track already holds on a stopped stream (409).
    #[error("{0}")]
    Conflict(String),
    /// The stream ended inside a box.
    #[error("the stream ended inside a {fourcc} box ({have} of {size} bytes)")]
    Truncated {
        fourcc: FourCC,
        have: u64,
        size: u64,
    },
    /// The archive could not be written (5xx).
    #[error("{path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The publishing point is not there and may not be created (404).
    #[error("{0}: no such publishing point")]
    UnknownChannel(String),
}

impl IngestError {
    /// The HTTP status the receiver answers (DASH-IF Live Media Ingest §6.1).
    pub fn http_status(&self) -> u16 {
        match self {
            IngestError::Malformed(_) | IngestError::Mp4(_) | IngestError::Truncated { .. } => 400,
            IngestError::Unsupported(_) => 415,
            IngestError::NoInit(_) => 412,
            IngestError::Conflict(_) => 409,
            IngestError::UnknownChannel(_) => 404,
            IngestError::Storage { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => 507,
                _ => 500,
            },
        }
    }
}

/// One fragment as received: `moof` then `mdat`, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFragment {
    pub bytes: Vec<u8>,
    /// Size of the `moof` (the `mdat` follows it).
    pub moof_len: usize,
    /// Where the `moof` began in the stream (absolute `base_data_offset`s count from there).
    pub stream_offset: u64,
    /// The segment's `styp` carried `lmsg`: the last fragment of the stream.
    pub last: bool,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The Smooth live server manifest: SMIL text announcing the tracks.
    Manifest(Vec<u8>),
    /// An init segment: `ftyp` (empty when none came) and `moov`, whole.
    Init {
        ftyp: Vec<u8>,
        moov: Vec<u8>,
    },
    Fragment(RawFragment),
    /// `mfra`: the encoder ended the stream.
    End,
}

/// An incremental box parser for one ingest request body.
#[derive(Debug, Default)]
pub struct IngestParser {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    ftyp: Vec<u8>,
    /// The last `styp` carried `lmsg`.
    lmsg: bool,
}

impl IngestParser {
    pub fn new() -> IngestParser {
        IngestParser::default()
    }

    /// Bytes received so far that are not yet a whole box.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next bytes of the body; returns what they completed, in order.
    pub fn push(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), IngestError> {
        self.buf.extend_from_slice(data);
        while let Some(event) = self.next_box()? {
            if let Some(e) = event {
                events.push(e);
            }
        }
        Ok(())
    }

    /// The body ended: errors when it ended inside a box (what came before stands).
    pub fn finish(&mut self) -> Result<(), IngestError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let (fourcc, size) = match parse_box_header(&self.buf, self.offset, None) {
            Ok(Some(h)) => (h.fourcc, h.size),
            _ => (FourCC::new(b"????"), 8),
        };
        let have = self.buf.len() as u64;
        self.buf.clear();
        Err(IngestError::Truncated { fourcc, have, size })
    }

    /// `Some(Some(event))`, `Some(None)` for a box that makes no event, `None` when the next
    /// box is not whole yet.
    fn next_box(&mut self) -> Result<Option<Option<Event>>, IngestError> {
        let Some(h) = parse_box_header(&self.buf, self.offset, None)? else {
            return Ok(None);
        };
        let limit = match &h.fourcc.0 {
            b"moof" => MAX_HEADER_BOX,
            b"mdat" => {
                return Err(IngestError::Malformed(format!(
                    "mdat at offset {} without a moof before it",
                    h.offset
                )))
            }
            _ => MAX_HEADER_BOX,
        };
        if h.size > limit {
            return Err(IngestError::Mp4(Mp4Error::TooLarge {
                fourcc: h.fourcc,
                offset: h.offset,
                what: "box size",
                value: h.size,
                limit,
            }));
        }
        if h.fourcc == FourCC::new(b"moof") {
            return self.fragment(h.size);
        }
        if (self.buf.len() as u64) < h.size {
            return Ok(None);
        }
        let size = h.size as usize;
        let body = &self.buf[h.header_size as usize..size];
        let event = match &h.fourcc.0 {
            b"ftyp" => {
                self.ftyp = self.buf[..size].to_vec();
                None
            }
            b"styp" => {
                // major brand, minor version, compatible brands.
                self.lmsg = body
                    .chunks_exact(4)
                    .enumerate()
                    .any(|(i, b)| i != 1 && b == b"lmsg");
                None
            }
            b"moov" => Some(Event::Init {
                ftyp: std::mem::take(&mut self.ftyp),
                moov: self.buf[..size].to_vec(),
            }),
            b"uuid" if h.uuid == Some(UUID_LIVE_MANIFEST) => {
                // A full box: version and flags, then the SMIL text.
                Some(Event::Manifest(body.get(4..).unwrap_or_default().to_vec()))
            }
            b"mfra" => Some(Event::End),
            // Boxes an encoder may send between fragments: kept out of the archive.
            b"free" | b"skip" | b"uuid" | b"prft" | b"emsg" | b"sidx" | b"ssix" | b"meta"
            | b"udta" | b"pdin" | b"mfro" => None,
            _ => {
                return Err(IngestError::Malformed(format!(
                    "unexpected {} box at offset {}",
                    h.fourcc, h.offset
                )))
            }
        };
        self.consume(size);
        Ok(Some(event))
    }

    /// A `moof` at the start of the buffer: its fragment once the `mdat` after it is whole.
    fn fragment(&mut self, moof_size: u64) -> Result<Option<Option<Event>>, IngestError> {
        let moof_len = moof_size as usize;
        if self.buf.len() < moof_len {
            return Ok(None);
        }
        let Some(m) = parse_box_header(&self.buf[moof_len..], self.offset + moof_size, None)?
        else {
            return Ok(None);
        };
        if m.fourcc != FourCC::new(b"mdat") {
            return Err(IngestError::Malformed(format!(
                "moof at offset {} is followed by {}, not mdat",
                self.offset, m.fourcc
            )));
        }
        let total = moof_size + m.size;
        if total > MAX_FRAGMENT {
            return Err(IngestError::Mp4(Mp4Error::TooLarge {
                fourcc: m.fourcc,
                offset: m.offset,
                what: "fragment size",
                value: total,
                limit: MAX_FRAGMENT,
            }));
        }
        if (self.buf.len() as u64) < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total as usize);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let stream_offset = self.offset;
        self.offset += total;
        Ok(Some(Some(Event::Fragment(RawFragment {
            bytes,
            moof_len,
            stream_offset,
            last: std::mem::take(&mut self.lmsg),
        }))))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(fourcc);
        v.extend_from_slice(body);
        v
    }

    fn stream() -> Vec<u8> {
        let mut s = boxed(b"ftyp", b"isml\0\0\0\x01iso6");
        s.extend(boxed(b"moov", &[1; 20]));
        s.extend(boxed(b"moof", &[2; 30]));
        s.extend(boxed(b"mdat", &[3; 100]));
        s.extend(boxed(b"styp", b"msdh\0\0\0\0msdhlmsg"));
        s.extend(boxed(b"moof", &[4; 30]));
        s.extend(boxed(b"mdat", &[5; 10]));
        s.extend(boxed(b"mfra", &[0; 8]));
        s
    }

    #[test]
    fn splits_any_chunking_the_same_way() {
        let s = stream();
        let mut whole = Vec::new();
        IngestParser::new().push(&s, &mut whole).unwrap();
        assert_eq!(whole.len(), 4);
        match &whole[0] {
            Event::Init { ftyp, moov } => {
                assert_eq!(&ftyp[4..8], b"ftyp");
                assert_eq!(moov.len(), 28);
            }
            e => panic!("{e:?}"),
        }
        match (&whole[1], &whole[2]) {
            (Event::Fragment(a), Event::Fragment(b)) => {
                assert_eq!((a.moof_len, a.bytes.len(), a.last), (38, 146, false));
                assert_eq!(a.stream_offset, 20 + 28);
                assert!(b.last);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(whole[3], Event::End);
        for chunk in [1, 3, 7, 64] {
            let mut p = IngestParser::new();
            let mut events = Vec::new();
            for c in s.chunks(chunk) {
                p.push(c, &mut events).unwrap();
            }
            p.finish().unwrap();
            assert_eq!(events, whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn refusals() {
        let mut e = Vec::new();
        let err = IngestParser::new()
            .push(&boxed(b"mdat", &[0; 4]), &mut e)
            .unwrap_err();
        assert_eq!(err.http_status(), 400);
        let mut huge = (MAX_HEADER_BOX as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"moov");
        assert!(IngestParser::new().push(&huge, &mut e).is_err());
        let mut p = IngestParser::new();
        let mut moof_then_free = boxed(b"moof", &[0; 8]);
        moof_then_free.extend(boxed(b"free", &[]));
        assert!(p.push(&moof_then_free, &mut e).is_err());
        let mut p = IngestParser::new();
        p.push(&stream()[..60], &mut e).unwrap();
        assert!(matches!(p.finish(), Err(IngestError::Truncated { .. })));
        // size 0 has no meaning in a stream.
        assert!(IngestParser::new().push(b"\0\0\0\0moov", &mut e).is_err());
    }
}
