//! The bytes of one archive record on their way to a data file: each fragment's `moof` in
//! memory (the store still moves absolute offsets in it once the record's place is known), then
//! its `mdat`, whose payload is in memory (a small fragment) or in the session's spool file (a
//! large one, written there piece by piece as it arrived; see [`super::spool`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// Where a fragment's `mdat` payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Memory(Vec<u8>),
    /// `len` bytes of the session's spool file, from `offset` on.
    Spooled {
        offset: u64,
        len: u64,
    },
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Memory(b) => b.len() as u64,
            Payload::Spooled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of it held in memory.
    pub fn in_memory(&self) -> u64 {
        match self {
            Payload::Memory(b) => b.len() as u64,
            Payload::Spooled { .. } => 0,
        }
    }
}

/// One fragment as the encoder sent it: `moof`, `mdat` header, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentBytes {
    /// `emsg` boxes that came with the fragment, kept before its `moof`.
    pub events: Vec<u8>,
    pub moof: Vec<u8>,
    pub mdat_header: Vec<u8>,
    pub payload: Payload,
}

impl FragmentBytes {
    pub fn len(&self) -> u64 {
        self.events.len() as u64
            + self.moof.len() as u64
            + self.mdat_header.len() as u64
            + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of it held in memory.
    pub fn in_memory(&self) -> u64 {
        self.events.len() as u64
            + self.moof.len() as u64
            + self.mdat_header.len() as u64
            + self.payload.in_memory()
    }

    /// Moves the times of its version 1 `emsg` boxes (on the media timeline, in their own
    /// timescale) by `delta` ticks of the track's `timescale`, as a timeline moves the
    /// fragment's decode times; version 0 boxes count from the fragment and move with it.
    pub fn shift_event_times(&mut self, delta: u64, timescale: u32) {
        if delta == 0 {
            return;
        }
        let mut at = 0usize;
        while at + 8 <= self.events.len() {
            let size = u32::from_be_bytes([
                self.events[at],
                self.events[at + 1],
                self.events[at + 2],
                self.events[at + 3],
            ]) as usize;
            if size < 8 || at + size > self.events.len() {
                return;
            }
            let body = &mut self.events[at + 8..at + size];
            // version 1: version and flags, timescale, presentation_time (u64).
            if body.len() >= 16 && body[0] == 1 {
                let scale = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                let time = u64::from_be_bytes(body[8..16].try_into().unwrap_or_default());
                let shift =
                    (u128::from(delta) * u128::from(scale) / u128::from(timescale.max(1))) as u64;
                body[8..16].copy_from_slice(&time.saturating_add(shift).to_be_bytes());
            }
            at += size;
        }
    }

    /// Whether its payload waits in the spool file.
    pub fn spooled(&self) -> bool {
        matches!(self.payload, Payload::Spooled { .. })
    }
}

/// The fragments of one record, in order (one, or several assembled).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordBytes {
    pub fragments: Vec<FragmentBytes>,
}

impl RecordBytes {
    /// Size of the record in its data file.
    pub fn len(&self) -> u64 {
        self.fragments.iter().map(FragmentBytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of it held in memory.
    pub fn in_memory(&self) -> u64 {
        self.fragments.iter().map(FragmentBytes::in_memory).sum()
    }

    /// Each fragment's `moof`, mutable, with where it begins within the record.
    pub fn moofs_mut(&mut self) -> impl Iterator<Item = (u64, &mut Vec<u8>)> {
        let mut at = 0u64;
        self.fragments.iter_mut().map(move |f| {
            let here = at + f.events.len() as u64;
            at += f.len();
            (here, &mut f.moof)
        })
    }

    /// Writes the record at `at` in `data`; spooled payloads are copied from `spool` (within
    /// the kernel where it can: `copy_file_range`).
    pub fn write_at(&self, data: &File, mut at: u64, spool: Option<&File>) -> io::Result<()> {
        for f in &self.fragments {
            data.write_all_at(&f.events, at)?;
            at += f.events.len() as u64;
            data.write_all_at(&f.moof, at)?;
            at += f.moof.len() as u64;
            data.write_all_at(&f.mdat_header, at)?;
            at += f.mdat_header.len() as u64;
            match &f.payload {
                Payload::Memory(bytes) => data.write_all_at(bytes, at)?,
                Payload::Spooled { offset, len } => {
                    let spool = spool.ok_or_else(|| {
                        io::Error::other("a spooled payload without the session's spool file")
                    })?;
                    copy_range(spool, *offset, *len, data, at)?;
                }
            }
            at += f.payload.len();
        }
        Ok(())
    }
}

/// Copies `len` bytes of `from` at `offset` to `to` at `at`.
fn copy_range(from: &File, offset: u64, len: u64, to: &File, at: u64) -> io::Result<()> {
    let mut src = from;
    src.seek(SeekFrom::Start(offset))?;
    let mut dst = to;
    dst.seek(SeekFrom::Start(at))?;
    // File to file: std copies with copy_file_range on Linux (no copy through user space).
    let copied = io::copy(&mut src.take(len), &mut dst)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the spool file holds {copied} of the {len} bytes at {offset}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_memory_and_spooled_payloads_in_order() {
        let dir = std::env::temp_dir().join(format!("origin-record-bytes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let spool = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("spool"))
            .unwrap();
        spool.write_all_at(b"xxPAYLOAD2yy", 0).unwrap();
        let mut record = RecordBytes {
            fragments: vec![
                FragmentBytes {
                    moof: b"M1".to_vec(),
                    events: Vec::new(),
                    mdat_header: b"H1".to_vec(),
                    payload: Payload::Memory(b"payload1".to_vec()),
                },
                FragmentBytes {
                    moof: b"M2".to_vec(),
                    events: Vec::new(),
                    mdat_header: b"H2".to_vec(),
                    payload: Payload::Spooled { offset: 2, len: 8 },
                },
            ],
        };
        assert_eq!(record.len(), 24);
        assert_eq!(record.in_memory(), 16);
        let starts: Vec<u64> = record.moofs_mut().map(|(at, _)| at).collect();
        assert_eq!(starts, [0, 12]);
        let data = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("data"))
            .unwrap();
        data.write_all_at(b"head", 0).unwrap();
        record.write_at(&data, 4, Some(&spool)).unwrap();
        assert_eq!(
            std::fs::read(dir.join("data")).unwrap(),
            b"headM1H1payload1M2H2PAYLOAD2"
        );
        // A spool shorter than the record says: an error, not a short record.
        record.fragments[1].payload = Payload::Spooled { offset: 8, len: 8 };
        assert!(record.write_at(&data, 4, Some(&spool)).is_err());
        assert!(record.write_at(&data, 4, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_timeline_moves_version_1_event_times_in_their_timescale() {
        use crate::mp4::emsg::{read_emsg, write_emsg, EventMessage, EventTime};
        let message = |time| EventMessage {
            scheme_id_uri: "urn:x".into(),
            value: String::new(),
            timescale: 90_000,
            time,
            duration: 0,
            id: 1,
            message_data: vec![1, 2],
        };
        let mut f = FragmentBytes {
            events: [
                write_emsg(&message(EventTime::Absolute(90_000))),
                write_emsg(&message(EventTime::Delta(5))),
            ]
            .concat(),
            moof: Vec::new(),
            mdat_header: Vec::new(),
            payload: Payload::Memory(Vec::new()),
        };
        // Two seconds of a 1000 Hz track.
        f.shift_event_times(2000, 1000);
        let first_len = write_emsg(&message(EventTime::Absolute(0))).len();
        let read = |bytes: &[u8]| {
            read_emsg(crate::mp4::Reader::new(&bytes[8..], 8))
                .unwrap()
                .time
        };
        assert_eq!(
            read(&f.events[..first_len]),
            EventTime::Absolute(3 * 90_000)
        );
        assert_eq!(read(&f.events[first_len..]), EventTime::Delta(5));
    }
}
