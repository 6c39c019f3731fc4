//! The stream an encoder POSTs, split into boxes as its bytes arrive (a request body comes in
//! pieces of any size): the live server manifest (Smooth `uuid`), the init segment (`ftyp` +
//! `moov`), fragments (the `moof` whole, then the `mdat` payload in pieces as it arrives), and
//! the end of the stream (`mfra`, or a segment whose `styp` carries the `lmsg` brand).
//!
//! The parser keeps at most one box other than `mdat` in memory, and refuses a box (or a
//! fragment) larger than the limit of its kind at its header, before it takes more of it.

use crate::mp4::reader::{parse_box_header, BoxHeader, FourCC};
use crate::mp4::Mp4Error;

/// Largest `moov`, `ftyp`, live manifest or other small box accepted.
pub const MAX_HEADER_BOX: u64 = 16 << 20;
/// Largest `moof` + `mdat` accepted unless configured otherwise (a 2-second fragment at
/// 100 Mbit/s is 25 MB).
pub const MAX_FRAGMENT: u64 = 256 << 20;

/// Most bytes of `emsg` boxes one fragment may bring (a SCTE-35 cue is at most 4 KiB).
pub const MAX_FRAGMENT_EVENTS: usize = 256 << 10;

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
    /// A timed-metadata sample whose cue does not read (a SCTE-35 section with a bad length
    /// or CRC, an event message that breaks its format): 400, the fragment is not archived.
    #[error("bad cue: {0}")]
    BadCue(String),
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
    /// A box or fragment larger than its limit (413), refused at its header.
    #[error("{what} at offset {offset} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        offset: u64,
        size: u64,
        limit: u64,
    },
    /// The worker holds as much of unfinished fragments as it may (503).
    #[error("{0}")]
    Busy(String),
    /// A box or fragment that did not arrive whole in time (408).
    #[error("{0}")]
    TooSlow(String),
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

/// The start of a fragment: its `moof` whole and the header of its `mdat`, whose payload
/// follows in [`Event::Payload`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentHead {
    pub moof: Vec<u8>,
    /// The `mdat`'s box header (8 or 16 bytes).
    pub mdat_header: Vec<u8>,
    /// Bytes of `mdat` payload that follow.
    pub payload_len: u64,
    /// Where the `moof` began in the stream (absolute `base_data_offset`s count from there).
    pub stream_offset: u64,
    /// The segment's `styp` carried `lmsg`: the last fragment of the stream.
    pub last: bool,
    /// The `emsg` boxes that came before the `moof` (in-band events, ad cues), whole and in
    /// order: archived with the fragment, before its `moof`.
    pub events: Vec<u8>,
}

impl FragmentHead {
    /// Bytes of the whole fragment: `moof` and `mdat`.
    pub fn size(&self) -> u64 {
        self.moof.len() as u64 + self.mdat_header.len() as u64 + self.payload_len
    }
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The Smooth live server manifest: SMIL text announcing the tracks.
    Manifest(Vec<u8>),
    /// An init segment: `ftyp` (empty when none came) and `moov`, whole.
    Init { ftyp: Vec<u8>, moov: Vec<u8> },
    /// A fragment begins: the payload of its `mdat` follows.
    FragmentStart(FragmentHead),
    /// The next bytes of the current fragment's `mdat` payload (as they arrived).
    Payload(Vec<u8>),
    /// The current fragment's payload is complete.
    FragmentEnd,
    /// `mfra`: the encoder ended the stream.
    End,
}

/// An incremental parser for one ingest request body: top-level boxes framed as they arrive,
/// paired and classified. Every box but `mdat` is kept until it is whole (each refused past
/// its limit at its header); an `mdat`'s payload is passed on as it arrives, so a fragment of
/// any size costs the parser no more than its `moof`.
#[derive(Debug)]
pub struct IngestParser {
    /// The box being received (header first), unless it is an `mdat`.
    buf: Vec<u8>,
    /// Stream offset of `buf[0]` (of the next byte when `buf` is empty).
    offset: u64,
    /// Payload bytes of the current `mdat` still to come.
    payload_left: u64,
    /// Where the fragment whose payload comes began in the stream.
    fragment_offset: u64,
    /// Largest `moof` + `mdat`.
    max_fragment: u64,
    ftyp: Vec<u8>,
    /// A `moof` waiting for its `mdat`, and where it began in the stream.
    moof: Option<(Vec<u8>, u64)>,
    /// The last `styp` carried `lmsg`.
    lmsg: bool,
    /// `emsg` boxes waiting for the fragment they come with.
    emsg: Vec<u8>,
    /// Boxes completed so far (the session dates the box in progress from it).
    completed: u64,
    failed: bool,
}

impl Default for IngestParser {
    fn default() -> Self {
        IngestParser::new(MAX_FRAGMENT)
    }
}

/// The longest box header: 64-bit size and `uuid`.
const MAX_BOX_HEADER: usize = 32;

impl IngestParser {
    /// A parser refusing fragments (`moof` + `mdat`) larger than `max_fragment` bytes.
    pub fn new(max_fragment: u64) -> IngestParser {
        IngestParser {
            buf: Vec::new(),
            offset: 0,
            payload_left: 0,
            fragment_offset: 0,
            max_fragment,
            ftyp: Vec::new(),
            moof: None,
            lmsg: false,
            emsg: Vec::new(),
            completed: 0,
            failed: false,
        }
    }

    /// Bytes received so far and held here: the box in progress, a `moof` waiting for its
    /// `mdat`.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.moof.as_ref().map_or(0, |(m, _)| m.len()) + self.emsg.len()
    }

    /// Whether a box (or a fragment) is in progress: some of it came, not all.
    pub fn inside_box(&self) -> bool {
        !self.buf.is_empty() || self.moof.is_some() || self.payload_left > 0
    }

    /// Where the box (or fragment) in progress began in the stream.
    pub fn box_offset(&self) -> u64 {
        match &self.moof {
            Some((_, at)) => *at,
            None if self.payload_left > 0 => self.fragment_offset,
            None => self.offset,
        }
    }

    /// How many boxes completed so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Feeds the next bytes of the body; returns what they completed, in order. After an
    /// error the parser refuses further input (a corrupt stream cannot be resynchronised).
    pub fn push(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), IngestError> {
        if self.failed {
            return Err(IngestError::Malformed(format!(
                "the stream failed before offset {}",
                self.offset
            )));
        }
        let result = self.push_inner(data, events);
        if result.is_err() {
            self.failed = true;
            self.buf = Vec::new();
        }
        result
    }

    fn push_inner(&mut self, mut data: &[u8], events: &mut Vec<Event>) -> Result<(), IngestError> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                events.push(Event::Payload(data[..n].to_vec()));
                self.payload_left -= n as u64;
                self.offset += n as u64;
                data = &data[n..];
                if self.payload_left == 0 {
                    self.completed += 1;
                    events.push(Event::FragmentEnd);
                }
                continue;
            }
            // The header first, a few bytes at a time: an mdat's payload is never buffered.
            let header = match parse_box_header(&self.buf, self.offset, None)? {
                Some(h) => h,
                None => {
                    let want = MAX_BOX_HEADER.saturating_sub(self.buf.len()).max(1);
                    let n = want.min(data.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    match parse_box_header(&self.buf, self.offset, None)? {
                        Some(h) => h,
                        None => continue,
                    }
                }
            };
            if header.fourcc == FourCC::new(b"mdat") {
                self.start_payload(header, events)?;
                continue;
            }
            let limit = MAX_HEADER_BOX.min(self.max_fragment);
            if header.size > limit {
                return Err(IngestError::TooLarge {
                    what: "box",
                    offset: header.offset,
                    size: header.size,
                    limit,
                });
            }
            let size = header.size as usize;
            if self.buf.len() > size {
                // The header read ran into the next box: those bytes go back to the input.
                let extra = self.buf.split_off(size);
                let b = std::mem::take(&mut self.buf);
                self.offset += size as u64;
                self.completed += 1;
                if let Some(event) = self.take(header, b)? {
                    events.push(event);
                }
                self.push_inner(&extra, events)?;
                continue;
            }
            let n = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == size {
                let b = std::mem::take(&mut self.buf);
                self.offset += size as u64;
                self.completed += 1;
                if let Some(event) = self.take(header, b)? {
                    events.push(event);
                }
            }
        }
        Ok(())
    }

    /// An `mdat` header is in: the fragment starts (its payload bytes in `buf` past the
    /// header go out first).
    fn start_payload(
        &mut self,
        header: BoxHeader,
        events: &mut Vec<Event>,
    ) -> Result<(), IngestError> {
        let Some((moof, stream_offset)) = self.moof.take() else {
            return Err(IngestError::Malformed(format!(
                "mdat at offset {} without a moof before it",
                header.offset
            )));
        };
        let size = moof.len() as u64 + header.size;
        if size > self.max_fragment {
            return Err(IngestError::TooLarge {
                what: "fragment",
                offset: stream_offset,
                size,
                limit: self.max_fragment,
            });
        }
        let header_len = header.header_size as usize;
        let mut early = self.buf.split_off(header_len.min(self.buf.len()));
        let mdat_header = std::mem::take(&mut self.buf);
        self.offset += header_len as u64;
        self.payload_left = header.body_size();
        self.fragment_offset = stream_offset;
        events.push(Event::FragmentStart(FragmentHead {
            moof,
            mdat_header,
            payload_len: header.body_size(),
            stream_offset,
            last: std::mem::take(&mut self.lmsg),
            events: std::mem::take(&mut self.emsg),
        }));
        if self.payload_left == 0 {
            self.completed += 1;
            events.push(Event::FragmentEnd);
        }
        if !early.is_empty() {
            // At most a header's worth: fed again as input.
            let rest = std::mem::take(&mut early);
            self.push_inner(&rest, events)?;
        }
        Ok(())
    }

    /// The body ended: errors when it ended inside a box (what came before stands).
    pub fn finish(&mut self) -> Result<(), IngestError> {
        let waiting = self.moof.take().map_or(0, |(moof, _)| moof.len() as u64);
        let have = if self.payload_left > 0 {
            // Inside a payload: what came of the fragment.
            self.offset - self.fragment_offset
        } else {
            self.buf.len() as u64 + waiting
        };
        if have > 0 || self.payload_left > 0 {
            return Err(IngestError::Truncated { have });
        }
        Ok(())
    }

    fn take(&mut self, h: BoxHeader, data: Vec<u8>) -> Result<Option<Event>, IngestError> {
        if let Some((_, offset)) = &self.moof {
            return Err(IngestError::Malformed(format!(
                "moof at offset {offset} is followed by {}, not mdat",
                h.fourcc
            )));
        }
        let body = data.get(h.header_size as usize..).unwrap_or_default();
        Ok(match &h.fourcc.0 {
            b"moof" => {
                self.moof = Some((data, h.offset));
                None
            }
            b"ftyp" => {
                self.ftyp = data;
                None
            }
            b"styp" => {
                // major brand, minor version, compatible brands.
                self.lmsg = body
                    .chunks_exact(4)
                    .enumerate()
                    .any(|(i, brand)| i != 1 && brand == b"lmsg");
                None
            }
            b"moov" => Some(Event::Init {
                ftyp: std::mem::take(&mut self.ftyp),
                moov: data,
            }),
            b"uuid" if h.uuid == Some(UUID_LIVE_MANIFEST) => {
                // A full box: version and flags, then the SMIL text.
                Some(Event::Manifest(body.get(4..).unwrap_or_default().to_vec()))
            }
            b"mfra" => Some(Event::End),
            b"emsg" => {
                // Events for the next fragment: kept with it, within a cue-sized bound.
                if self.emsg.len() + data.len() > MAX_FRAGMENT_EVENTS {
                    return Err(IngestError::TooLarge {
                        what: "emsg boxes of one fragment",
                        offset: h.offset,
                        size: (self.emsg.len() + data.len()) as u64,
                        limit: MAX_FRAGMENT_EVENTS as u64,
                    });
                }
                self.emsg.extend_from_slice(&data);
                None
            }
            // Boxes an encoder may send between fragments: kept out of the archive.
            b"free" | b"skip" | b"uuid" | b"prft" | b"sidx" | b"ssix" | b"meta" | b"udta"
            | b"pdin" | b"mfro" => None,
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

    /// Events with consecutive payload pieces joined (their cut depends on the chunking).
    fn joined(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(Event::Payload(held)), Event::Payload(more)) => held.extend(more),
                (_, e) => out.push(e),
            }
        }
        out
    }

    #[test]
    fn splits_any_chunking_the_same_way() {
        let s = stream();
        let mut whole = Vec::new();
        IngestParser::default().push(&s, &mut whole).unwrap();
        let whole = joined(whole);
        assert_eq!(whole.len(), 8);
        match &whole[0] {
            Event::Init { ftyp, moov } => {
                assert_eq!(&ftyp[4..8], b"ftyp");
                assert_eq!(moov.len(), 28);
            }
            e => panic!("{e:?}"),
        }
        match (&whole[1], &whole[2], &whole[3], &whole[4]) {
            (
                Event::FragmentStart(a),
                Event::Payload(p),
                Event::FragmentEnd,
                Event::FragmentStart(b),
            ) => {
                assert_eq!(
                    (a.moof.len(), a.mdat_header.len(), a.payload_len, a.last),
                    (38, 8, 100, false)
                );
                assert_eq!(a.size(), 146);
                assert_eq!(a.stream_offset, 20 + 28);
                assert_eq!(p, &vec![3u8; 100]);
                assert!(b.last);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(whole[7], Event::End);
        for chunk in [1, 3, 7, 9, 64] {
            let mut p = IngestParser::default();
            let mut events = Vec::new();
            for c in s.chunks(chunk) {
                p.push(c, &mut events).unwrap();
            }
            p.finish().unwrap();
            assert_eq!(joined(events), whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_payload_passes_through_without_being_held() {
        let payload_len = 10 << 20;
        let mut s = boxed(b"moof", &[2; 30]);
        s.extend_from_slice(&((payload_len + 8) as u32).to_be_bytes());
        s.extend_from_slice(b"mdat");
        s.extend((0..payload_len).map(|i| i as u8));
        let mut p = IngestParser::default();
        let mut events = Vec::new();
        let mut most_held = 0;
        let mut got = Vec::new();
        for c in s.chunks(64 << 10) {
            p.push(c, &mut events).unwrap();
            most_held = most_held.max(p.pending());
            for e in events.drain(..) {
                match e {
                    Event::FragmentStart(h) => assert_eq!(h.payload_len, payload_len as u64),
                    Event::Payload(b) => got.extend(b),
                    Event::FragmentEnd => assert_eq!(got.len(), payload_len),
                    e => panic!("{e:?}"),
                }
            }
            // The fragment's first byte to its last: one box in progress, dated from its moof.
            assert_eq!(p.inside_box(), got.len() < payload_len);
            if p.inside_box() {
                assert_eq!(p.box_offset(), 0);
            }
        }
        p.finish().unwrap();
        assert!(most_held <= 38 + 8, "{most_held}");
        assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    #[test]
    fn refusals() {
        let mut e = Vec::new();
        let err = IngestParser::default()
            .push(&boxed(b"mdat", &[0; 4]), &mut e)
            .unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 400);
        // A box over its limit is refused at its header: 413.
        let mut huge = (MAX_HEADER_BOX as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"moov");
        let err = IngestParser::default().push(&huge, &mut e).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 413);
        // So is a fragment over the limit, before any of its payload is taken.
        let mut p = IngestParser::new(1000);
        let mut big = boxed(b"moof", &[0; 30]);
        big.extend_from_slice(&1000u32.to_be_bytes());
        big.extend_from_slice(b"mdat");
        e.clear();
        let err = p.push(&big, &mut e).unwrap_err();
        assert!(
            matches!(
                err,
                IngestError::TooLarge {
                    size: 1038,
                    limit: 1000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(e.is_empty());
        let mut p = IngestParser::default();
        let mut moof_then_free = boxed(b"moof", &[0; 8]);
        moof_then_free.extend(boxed(b"free", &[]));
        assert!(p.push(&moof_then_free, &mut e).is_err());
        let mut p = IngestParser::default();
        p.push(&stream()[..60], &mut e).unwrap();
        assert!(matches!(p.finish(), Err(IngestError::Truncated { .. })));
        // A body that ends inside a payload.
        let mut p = IngestParser::default();
        p.push(&stream()[..130], &mut e).unwrap();
        assert!(p.inside_box());
        // 130 bytes of the stream, the fragment's moof at 48.
        assert!(matches!(
            p.finish(),
            Err(IngestError::Truncated { have: 82 })
        ));
        // size 0 has no meaning in a stream.
        assert!(IngestParser::default()
            .push(b"\0\0\0\0moov", &mut e)
            .is_err());
        // After an error the parser takes nothing more.
        let mut p = IngestParser::default();
        assert!(p.push(b"\0\0\0\0moov", &mut e).is_err());
        assert!(p.push(&stream(), &mut e).is_err());
    }
}
