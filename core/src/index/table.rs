//! The tables of an index: a `Vec` while the index is built from a file, or a window of a
//! stored entry's bytes when it was read back from the index store (no copy, no parse: the
//! entry is mapped read-only and shared by every process that maps it).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytemuck::Pod;

/// The bytes of a stored index entry: a read-only mapping of the entry's file, or (for tests
/// and the fuzzer) a copy in 8-byte words, so that tables inside are aligned either way.
pub enum EntryBytes {
    /// Registered with the truncation guard, as every mapping of the core is.
    Mapped(crate::source::mmap::Mapping),
    Words {
        words: Vec<u64>,
        len: usize,
    },
}

impl EntryBytes {
    /// A copy of `bytes`, aligned as a mapping is.
    pub fn copied(bytes: &[u8]) -> EntryBytes {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        EntryBytes::Words {
            words,
            len: bytes.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            EntryBytes::Mapped(map) => map.as_slice(),
            EntryBytes::Words { words, len } => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A table of plain values.
pub enum Table<T: Pod> {
    Owned(Vec<T>),
    /// `len` values at byte `start` of a stored entry (checked in range and aligned when made).
    Stored {
        bytes: Arc<EntryBytes>,
        start: usize,
        len: usize,
    },
}

impl<T: Pod> Table<T> {
    /// The `len` values at byte `start` of `bytes`, if they lie inside and are aligned for `T`.
    pub fn stored(bytes: &Arc<EntryBytes>, start: usize, len: usize) -> Option<Table<T>> {
        let end = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|n| n.checked_add(start))?;
        let window = bytes.as_bytes().get(start..end)?;
        bytemuck::try_cast_slice::<u8, T>(window).ok()?;
        Some(Table::Stored {
            bytes: bytes.clone(),
            start,
            len,
        })
    }

    /// The values, owned (a stored table is copied out first): for the builders that extend
    /// a table.
    pub fn make_mut(&mut self) -> &mut Vec<T> {
        if let Table::Stored { .. } = self {
            *self = Table::Owned(self.to_vec());
        }
        match self {
            Table::Owned(v) => v,
            Table::Stored { .. } => unreachable!("made owned just above"),
        }
    }

    /// Heap bytes this table holds of its own (a stored table's bytes are the mapping's).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Table::Owned(v) => v.capacity() * std::mem::size_of::<T>(),
            Table::Stored { .. } => 0,
        }
    }

    /// Bytes of a stored entry this table reads.
    pub fn stored_bytes(&self) -> usize {
        match self {
            Table::Owned(_) => 0,
            Table::Stored { len, .. } => len * std::mem::size_of::<T>(),
        }
    }
}

impl<T: Pod> Deref for Table<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Table::Owned(v) => v,
            // Checked in range and aligned by `stored`; an empty table if that ever failed.
            Table::Stored { bytes, start, len } => bytes
                .as_bytes()
                .get(*start..*start + len * std::mem::size_of::<T>())
                .and_then(|w| bytemuck::try_cast_slice(w).ok())
                .unwrap_or(&[]),
        }
    }
}

impl<T: Pod> From<Vec<T>> for Table<T> {
    fn from(v: Vec<T>) -> Table<T> {
        Table::Owned(v)
    }
}

impl<'a, T: Pod> IntoIterator for &'a Table<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Pod> Default for Table<T> {
    fn default() -> Table<T> {
        Table::Owned(Vec::new())
    }
}

impl<T: Pod> Clone for Table<T> {
    fn clone(&self) -> Table<T> {
        match self {
            Table::Owned(v) => Table::Owned(v.clone()),
            Table::Stored { bytes, start, len } => Table::Stored {
                bytes: bytes.clone(),
                start: *start,
                len: *len,
            },
        }
    }
}

impl<T: Pod + PartialEq> PartialEq for Table<T> {
    fn eq(&self, other: &Table<T>) -> bool {
        **self == **other
    }
}

impl<T: Pod + Eq> Eq for Table<T> {}

impl<T: Pod + fmt::Debug> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_table_reads_its_window_and_copies_out_on_write() {
        let mut raw = Vec::new();
        for v in [7u32, 8, 9, 10] {
            raw.extend_from_slice(&v.to_ne_bytes());
        }
        let bytes = Arc::new(EntryBytes::copied(&raw));
        let mut t: Table<u32> = Table::stored(&bytes, 4, 2).unwrap();
        assert_eq!(&*t, &[8, 9]);
        assert_eq!((t.heap_bytes(), t.stored_bytes()), (0, 8));
        t.make_mut().push(11);
        assert_eq!(&*t, &[8, 9, 11]);
        assert_eq!(t.stored_bytes(), 0);
    }

    #[test]
    fn a_window_outside_or_misaligned_is_refused() {
        let bytes = Arc::new(EntryBytes::copied(&[0u8; 16]));
        assert!(Table::<u32>::stored(&bytes, 8, 3).is_none());
        assert!(Table::<u32>::stored(&bytes, 2, 1).is_none());
        assert!(Table::<u64>::stored(&bytes, usize::MAX - 3, 1).is_none());
        assert!(Table::<u64>::stored(&bytes, 8, 1).is_some());
    }
}
