//! A source known by its identity and length whose bytes arrive in ranges: a remote object
//! the request engine reads piece by piece (the head of the file, then the moov, then the
//! samples a segment needs). Reading what has not arrived is [`SourceError::Missing`], which
//! the engine turns into a request for those bytes.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use super::{Source, SourceError, SourceIdentity};

/// Bytes of one source held so far, as disjoint, non-adjacent runs sorted by offset.
pub struct SparseSource {
    name: String,
    identity: SourceIdentity,
    len: u64,
    runs: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

/// Gives a run's buffer back to the worker's spares when `run` was its last holder (the
/// source, or the response that sent from it, whichever goes last): the next fetch reuses it
/// instead of faulting in fresh pages.
pub fn recycle(run: Arc<Vec<u8>>) {
    if let Ok(bytes) = Arc::try_unwrap(run) {
        crate::buffers::give(bytes);
    }
}

impl Drop for SparseSource {
    fn drop(&mut self) {
        let runs = std::mem::take(self.runs.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (_, run) in runs {
            recycle(run);
        }
    }
}

impl SparseSource {
    /// A source of `len` bytes of which nothing is held yet.
    pub fn new(name: &str, identity: SourceIdentity, len: u64) -> SparseSource {
        SparseSource {
            name: name.to_string(),
            identity,
            len,
            runs: Mutex::new(Vec::new()),
        }
    }

    /// Adds `bytes` found at `offset` (clipped to the source's length), merging them with the
    /// runs they overlap or touch.
    pub fn insert(&self, offset: u64, bytes: &[u8]) {
        self.insert_owned(offset, bytes.to_vec());
    }

    /// [`SparseSource::insert`] of bytes the source may keep as they are (no copy unless they
    /// join a run already held).
    pub fn insert_owned(&self, offset: u64, mut bytes: Vec<u8>) {
        let end = offset
            .saturating_add(bytes.len() as u64)
            .min(self.len)
            .max(offset);
        if end == offset {
            return;
        }
        bytes.truncate((end - offset) as usize);
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let touching = |&(start, ref data): &(u64, Arc<Vec<u8>>)| {
            start <= end && offset <= start + data.len() as u64
        };
        let first = runs.iter().position(touching);
        let Some(first) = first else {
            let at = runs.partition_point(|(start, _)| *start < offset);
            runs.insert(at, (offset, Arc::new(bytes)));
            return;
        };
        let last = runs.iter().rposition(touching).unwrap_or(first);
        let merged_start = runs[first].0.min(offset);
        let merged_end = (runs[last].0 + runs[last].1.len() as u64).max(end);
        let mut merged = vec![0u8; (merged_end - merged_start) as usize];
        for (start, data) in &runs[first..=last] {
            let at = (start - merged_start) as usize;
            merged[at..at + data.len()].copy_from_slice(data);
        }
        let at = (offset - merged_start) as usize;
        merged[at..at + bytes.len()].copy_from_slice(&bytes);
        runs.splice(first..=last, [(merged_start, Arc::new(merged))]);
    }

    /// Bytes held in all (for accounting).
    pub fn held(&self) -> u64 {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter().map(|(_, d)| d.len() as u64).sum()
    }

    /// The run holding all of `[offset, offset + len)`, with the range's start within it: for
    /// sending the bytes from where they are.
    pub fn run_covering(&self, offset: u64, len: u64) -> Option<(Arc<Vec<u8>>, usize)> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let i = runs
            .partition_point(|(start, _)| *start <= offset)
            .checked_sub(1)?;
        let (start, data) = &runs[i];
        let end = offset.checked_add(len)?;
        (end <= start + data.len() as u64).then(|| (data.clone(), (offset - start) as usize))
    }
}

impl Source for SparseSource {
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
        let bytes = self.bytes(offset, buf.len())?;
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        self.check_range(offset, len as u64)?;
        if len == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        match self.run_covering(offset, len as u64) {
            Some((run, at)) => Ok(Cow::Owned(run[at..at + len].to_vec())),
            None => Err(SourceError::Missing {
                name: self.name.clone(),
                offset,
                len: len as u64,
            }),
        }
    }

    fn missing(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let end = offset.saturating_add(len).min(self.len);
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = offset;
        for (start, data) in runs.iter() {
            let run_end = start + data.len() as u64;
            if run_end <= at {
                continue;
            }
            if *start > at {
                break;
            }
            at = run_end;
        }
        (at < end).then(|| (at, end - at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SparseSource {
        let identity = SourceIdentity::Memory {
            name: "s".into(),
            size: 100,
        };
        SparseSource::new("s", identity, 100)
    }

    #[test]
    fn reads_only_what_arrived() {
        let s = source();
        assert!(matches!(
            s.bytes(0, 4),
            Err(SourceError::Missing {
                offset: 0,
                len: 4,
                ..
            })
        ));
        s.insert(10, &[1, 2, 3, 4]);
        assert_eq!(&*s.bytes(11, 2).unwrap(), &[2, 3]);
        assert!(s.bytes(12, 4).is_err());
        assert_eq!(s.missing(10, 4), None);
        assert_eq!(s.missing(8, 10), Some((8, 10)));
        assert_eq!(s.missing(12, 10), Some((14, 8)));
    }

    #[test]
    fn merges_overlapping_and_touching_runs() {
        let s = source();
        s.insert(0, &[0; 10]);
        s.insert(20, &[2; 10]);
        s.insert(10, &[1; 10]);
        assert_eq!(s.runs.lock().unwrap().len(), 1);
        let all = s.bytes(0, 30).unwrap();
        assert_eq!(&all[..10], &[0; 10]);
        assert_eq!(&all[10..20], &[1; 10]);
        assert_eq!(&all[20..], &[2; 10]);
        s.insert(25, &[9; 10]);
        assert_eq!(s.held(), 35);
        assert_eq!(s.bytes(30, 5).unwrap().as_ref(), &[9; 5]);
        // Past the end is clipped, never stored.
        s.insert(95, &[7; 20]);
        assert_eq!(s.held(), 40);
        assert_eq!(s.missing(0, 200), Some((35, 65)));
    }
}
