//! The stream an encoder POSTs, split into boxes as its bytes arrive (a request body comes in
//! pieces of any size): the live server manifest (Smooth `uuid`), the init segment (`ftyp` +
//! `moov`), fragments (`moof` + `mdat`, one `Vec` each), and the end of the stream (`mfra`, or
//! a segment whose `styp` carries the `lmsg` brand).
//!
//! The parser keeps at most one box (one fragment) in memory, and refuses a box larger than
//! the limit of its kind before it buffers it.

use crate::mp4::reader::FourCC;
use crate::mp4::stream::{BoxStream, StreamBox};
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
    /// Timestamps that conflict with what the track holds (409), see [`super::timeline`].
    #[error("{0}")]
    Conflict(String),
    /// Timestamps too far ahead of the live edge and the clock (422), see [`super::timeline`].
    #[error("{0}")]
    TooFarAhead(String),
    /// The stream ended inside a box (or a fragment), `have` bytes into it.
    #[error("the stream ended inside a box or fragment, {have} bytes into it")]
    Truncated { have: u64 },
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
    /// A `Streams(<name>)` that cannot name a file of the archive (400).
    #[error("bad stream name {0}")]
    BadStreamName(String),
    /// A new track past `origin_live_max_tracks` (403).
    #[error("too many tracks: {0}")]
    TooManyTracks(String),
    /// A new channel past `origin_live_max_channels` (403).
    #[error("too many channels: {0}")]
    TooManyChannels(String),
    /// The `.isml` or a folder of the archive is not what it must be (a FIFO, a folder where
    /// the `.isml` is), or reached through a link `disable_symlinks` forbids.
    #[error(transparent)]
    File(#[from] super::confined::FileError),
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

/// An incremental parser for one ingest request body: boxes from a [`BoxStream`], paired
/// and classified.
#[derive(Debug)]
pub struct IngestParser {
    boxes: BoxStream,
    scratch: Vec<StreamBox>,
    ftyp: Vec<u8>,
    /// A `moof` waiting for its `mdat`, and where it began in the stream.
    moof: Option<(Vec<u8>, u64)>,
    /// The last `styp` carried `lmsg`.
    lmsg: bool,
}

impl Default for IngestParser {
    fn default() -> Self {
        IngestParser::new()
    }
}

impl IngestParser {
    pub fn new() -> IngestParser {
        IngestParser {
            // Only media may be large: every other box is refused past MAX_HEADER_BOX before
            // it is buffered.
            boxes: BoxStream::new(MAX_FRAGMENT).with_limits(|fourcc| {
                if fourcc == FourCC::new(b"mdat") {
                    u64::MAX
                } else {
                    MAX_HEADER_BOX
                }
            }),
            scratch: Vec::new(),
            ftyp: Vec::new(),
            moof: None,
            lmsg: false,
        }
    }

    /// Bytes received so far that are not yet a whole box.
    pub fn pending(&self) -> usize {
        self.boxes.buffered() + self.moof.as_ref().map_or(0, |(m, _)| m.len())
    }

    /// Feeds the next bytes of the body; returns what they completed, in order.
    pub fn push(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), IngestError> {
        let mut boxes = std::mem::take(&mut self.scratch);
        let pushed = self.boxes.push(data, &mut boxes);
        let mut result = Ok(());
        for b in boxes.drain(..) {
            match self.take(b) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        boxes.clear();
        self.scratch = boxes;
        pushed?;
        result
    }

    /// The body ended: errors when it ended inside a box (what came before stands).
    pub fn finish(&mut self) -> Result<(), IngestError> {
        let waiting = self.moof.take().map_or(0, |(moof, _)| moof.len());
        let have = (self.boxes.buffered() + waiting) as u64;
        if have > 0 {
            return Err(IngestError::Truncated { have });
        }
        Ok(())
    }

    fn take(&mut self, b: StreamBox) -> Result<Option<Event>, IngestError> {
        let h = b.header;
        if let Some((moof, offset)) = self.moof.take() {
            if h.fourcc != FourCC::new(b"mdat") {
                return Err(IngestError::Malformed(format!(
                    "moof at offset {offset} is followed by {}, not mdat",
                    h.fourcc
                )));
            }
            let moof_len = moof.len();
            let mut bytes = moof;
            bytes.extend_from_slice(&b.data);
            return Ok(Some(Event::Fragment(RawFragment {
                bytes,
                moof_len,
                stream_offset: offset,
                last: std::mem::take(&mut self.lmsg),
            })));
        }
        Ok(match &h.fourcc.0 {
            b"moof" => {
                self.moof = Some((b.data, h.offset));
                None
            }
            b"mdat" => {
                return Err(IngestError::Malformed(format!(
                    "mdat at offset {} without a moof before it",
                    h.offset
                )))
            }
            b"ftyp" => {
                self.ftyp = b.data;
                None
            }
            b"styp" => {
                // major brand, minor version, compatible brands.
                self.lmsg = b
                    .body()
                    .chunks_exact(4)
                    .enumerate()
                    .any(|(i, brand)| i != 1 && brand == b"lmsg");
                None
            }
            b"moov" => Some(Event::Init {
                ftyp: std::mem::take(&mut self.ftyp),
                moov: b.data,
            }),
            b"uuid" if h.uuid == Some(UUID_LIVE_MANIFEST) => {
                // A full box: version and flags, then the SMIL text.
                Some(Event::Manifest(
                    b.body().get(4..).unwrap_or_default().to_vec(),
                ))
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
        })
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
        assert_eq!(crate::Error::from(err).status(), 400);
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
