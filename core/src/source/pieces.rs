//! A source assembled from pieces: bytes in memory, ranges of other sources and runs of
//! zeros, laid end to end. A live track is read this way: its init segment (in memory), then
//! the fragments the archive holds (ranges of its data files, as the driver supplied them), so
//! that the index builder and the packagers see one fragmented MP4 file.

use std::borrow::Cow;
use std::sync::Arc;

use super::{SharedSource, Source, SourceError, SourceIdentity};

/// Where one piece's bytes are.
#[derive(Clone)]
pub enum Backing {
    /// `Arc` bytes, from `start` on.
    Memory { bytes: Arc<Vec<u8>>, start: usize },
    /// A range of another source (a data file the driver opened), from `offset` on.
    Source { source: SharedSource, offset: u64 },
    /// Zeros (a gap nobody reads: the body of a `free` box standing for pruned media).
    Zero,
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::Memory { bytes, start } => {
                write!(f, "Memory({} bytes from {start})", bytes.len())
            }
            Backing::Source { source, offset } => {
                write!(f, "Source({} from {offset})", source.name())
            }
            Backing::Zero => f.write_str("Zero"),
        }
    }
}

#[derive(Debug, Clone)]
struct Piece {
    at: u64,
    len: u64,
    backing: Backing,
}

/// Pieces laid end to end.
#[derive(Debug, Clone)]
pub struct PiecesSource {
    pieces: Vec<Piece>,
    len: u64,
    name: String,
    identity: SourceIdentity,
}

impl PiecesSource {
    /// An empty source named `name` with this identity (see [`PiecesSource::push`]).
    pub fn new(name: String, identity: SourceIdentity) -> PiecesSource {
        PiecesSource {
            pieces: Vec::new(),
            len: 0,
            name,
            identity,
        }
    }

    /// Appends `len` bytes from `backing`.
    pub fn push(&mut self, len: u64, backing: Backing) {
        if len == 0 {
            return;
        }
        self.pieces.push(Piece {
            at: self.len,
            len,
            backing,
        });
        self.len += len;
    }

    /// Appends all of `bytes`.
    pub fn push_bytes(&mut self, bytes: Arc<Vec<u8>>) {
        let len = bytes.len() as u64;
        self.push(len, Backing::Memory { bytes, start: 0 });
    }

    /// Sets the identity once every piece is in (it usually names the last one).
    pub fn set_identity(&mut self, identity: SourceIdentity) {
        self.identity = identity;
    }

    fn piece_at(&self, offset: u64) -> Option<usize> {
        let k = self.pieces.partition_point(|p| p.at <= offset);
        k.checked_sub(1)
            .filter(|&k| offset < self.pieces[k].at + self.pieces[k].len)
    }
}

impl Source for PiecesSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn identity(&self) -> &SourceIdentity {
        &self.identity
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.check_range(offset, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let k = self.piece_at(at).ok_or_else(|| SourceError::OutOfRange {
                name: self.name.clone(),
                offset,
                len: buf.len() as u64,
                size: self.len,
            })?;
            let p = &self.pieces[k];
            let within = at - p.at;
            let n = ((p.len - within) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match &p.backing {
                Backing::Memory { bytes, start } => {
                    let from = start + within as usize;
                    let src = bytes.get(from..from + n).ok_or(SourceError::Changed {
                        name: self.name.clone(),
                    })?;
                    out.copy_from_slice(src);
                }
                // A data file shorter than its records say: it changed under the archive.
                Backing::Source { source, offset } => source
                    .read_exact_at(offset + within, out)
                    .map_err(|e| match e {
                        SourceError::OutOfRange { .. } => SourceError::Changed {
                            name: self.name.clone(),
                        },
                        other => other,
                    })?,
                Backing::Zero => out.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Errors when a source a piece reads from does (a mapping truncated under the reader).
    fn intact(&self) -> Result<(), SourceError> {
        for p in &self.pieces {
            if let Backing::Source { source, .. } = &p.backing {
                source.intact()?;
            }
        }
        Ok(())
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        self.check_range(offset, len as u64)?;
        if let Some(k) = self.piece_at(offset) {
            let p = &self.pieces[k];
            let within = offset - p.at;
            if let Backing::Memory { bytes, start } = &p.backing {
                if within + len as u64 <= p.len {
                    let from = start + within as usize;
                    if let Some(slice) = bytes.get(from..from + len) {
                        return Ok(Cow::Borrowed(slice));
                    }
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(Cow::Owned(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    #[test]
    fn reads_across_pieces() {
        let data: SharedSource = Arc::new(MemorySource::new("data", b"0123456789".to_vec()));
        let mut s = PiecesSource::new(
            "t".into(),
            SourceIdentity::Memory {
                name: "t".into(),
                size: 0,
            },
        );
        s.push_bytes(Arc::new(b"abc".to_vec()));
        s.push(2, Backing::Zero);
        s.push(
            4,
            Backing::Source {
                source: data.clone(),
                offset: 3,
            },
        );
        assert_eq!(s.len(), 9);
        assert!(matches!(s.bytes(0, 3).unwrap(), Cow::Borrowed(b"abc")));
        assert_eq!(&*s.bytes(1, 8).unwrap(), b"bc\0\x003456");
        assert!(s.bytes(8, 2).is_err());
        // A piece past the end of its source: the source changed under the records.
        s.push(
            4,
            Backing::Source {
                source: data,
                offset: 8,
            },
        );
        assert!(matches!(s.bytes(9, 4), Err(SourceError::Changed { .. })));
    }
}
