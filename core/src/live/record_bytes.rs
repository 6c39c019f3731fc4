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
    pub moof: Vec<u8>,
    pub mdat_header: Vec<u8>,
    pub payload: Payload,
}

impl FragmentBytes {
    pub fn len(&self) -> u64 {
        self.moof.len() as u64 + self.mdat_header.len() as u64 + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of it held in memory.
    pub fn in_memory(&self) -> u64 {
        self.moof.len() as u64 + self.mdat_header.len() as u64 + self.payload.in_memory()
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
            let here = at;
            at += f.len();
            (here, &mut f.moof)
        })
    }

    /// Writes the record at `at` in `data`; spooled payloads are copied from `spool` (within
    /// the kernel where it can: `copy_file_range`).
    pub fn write_at(&self, data: &File, mut at: u64, spool: Option<&File>) -> io::Result<()> {
        for f in &self.fragments {
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
                    mdat_header: b"H1".to_vec(),
                    payload: Payload::Memory(b"payload1".to_vec()),
                },
                FragmentBytes {
                    moof: b"M2".to_vec(),
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
}
