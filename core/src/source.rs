//! Where media bytes come from. A [`Source`] is a file-like object with a length, positional
//! reads and an identity for caching. Local files are memory-mapped ([`MmapSource`]) or read
//! with pread ([`PreadSource`], `usp_disable_mmap`); a remote object (HTTP, S3) is a
//! [`SparseSource`] the remote driver fills with the ranges it fetched; a live track's window
//! is a [`PiecesSource`] over its init segment and ranges of its data files.
//!
//! The request engine does not open files: drivers call the constructors here
//! ([`MmapSource::open`], [`PreadSource::open`], `from_file`) to open, stat and map a file
//! and supply the result. The engine only reads through what it was given: a mapping is
//! memory, a [`PreadSource`] reads its driver-opened descriptor with `pread`.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// What identifies one version of a source's bytes: the index cache is keyed by it, so a
/// changed file is never served from a stale index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceIdentity {
    /// A local file: device, inode, size, modification time and status change time (ns).
    /// The change time is what a file rewritten in place with its size kept and its mtime
    /// set back (`touch -r`, `rsync --times`, a restore) cannot hide: the kernel sets it on
    /// every write and no call sets it to an earlier value.
    File {
        dev: u64,
        ino: u64,
        size: u64,
        mtime_ns: i128,
        ctime_ns: i128,
    },
    /// A remote object: URL plus the server's ETag (or Last-Modified) and size.
    Remote {
        url: String,
        version: String,
        size: u64,
    },
    /// Bytes in memory (tests, tools).
    Memory { name: String, size: u64 },
    /// A live track as its archive holds it: the track's directory and how far its records
    /// go (the first and last record kept, each identified by its position in the archive).
    Live { track: String, first: u64, end: u64 },
    /// A time range of another source's media (a `vbegin`/`vend` subclip), in microseconds.
    Subclip {
        base: Box<SourceIdentity>,
        begin_us: u64,
        end_us: Option<u64>,
    },
}

/// Why bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{name}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The file was truncated while it was being read through its mapping: what was read
    /// may hold bytes that were never in the file.
    #[error("{name}: changed while being served")]
    Changed { name: String },
    /// Bytes the request has not been supplied yet (a remote source is read in ranges as the
    /// request engine asks for them): not a failure, a need.
    #[error("{name}: {len} bytes at offset {offset} were not fetched")]
    Missing { name: String, offset: u64, len: u64 },
    #[error("{name}: read of {len} bytes at offset {offset} is past the end ({size} bytes)")]
    OutOfRange {
        name: String,
        offset: u64,
        len: u64,
        size: u64,
    },
}

/// A source shared by a worker's caches and the requests sending from it.
pub type SharedSource = std::sync::Arc<dyn Source + Send + Sync>;

/// A readable, immutable byte source.
pub trait Source {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// True when the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A name for error messages (the file name or URL).
    fn name(&self) -> &str;

    /// The identity of this version of the bytes.
    fn identity(&self) -> &SourceIdentity;

    /// Fills `buf` from `offset`; the whole range must exist.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError>;

    /// Errors when something read from this source so far may not be what the file holds
    /// (a mapped file truncated under the reader). Check it after reading, before using what
    /// was read.
    fn intact(&self) -> Result<(), SourceError> {
        Ok(())
    }

    /// The part of `[offset, offset + len)` this source does not hold yet, from its first
    /// missing byte to the end of the range; `None` when all of it can be read now (always, for
    /// local files).
    fn missing(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let _ = (offset, len);
        None
    }

    /// The open file behind the source, when there is one (for sending ranges with sendfile
    /// from the very file that was indexed).
    fn file(&self) -> Option<&File> {
        None
    }

    /// `len` bytes at `offset`, borrowed where the source can (mmap), copied otherwise.
    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        self.check_range(offset, len as u64)?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(Cow::Owned(buf))
    }

    /// Errors unless `[offset, offset + len)` lies within the source.
    fn check_range(&self, offset: u64, len: u64) -> Result<(), SourceError> {
        if offset.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(SourceError::OutOfRange {
                name: self.name().to_string(),
                offset,
                len,
                size: self.len(),
            });
        }
        Ok(())
    }
}

fn file_identity(file: &File) -> io::Result<SourceIdentity> {
    Ok(SourceIdentity::of_metadata(&file.metadata()?))
}

impl SourceIdentity {
    /// Appends a byte encoding of the identity, fixed by this function (not by a derive), for
    /// ETags that must stay the same across builds and Rust versions.
    pub fn write_fingerprint(&self, out: &mut Vec<u8>) {
        match self {
            SourceIdentity::File {
                dev,
                ino,
                size,
                mtime_ns,
                ctime_ns,
            } => {
                out.push(b'F');
                out.extend_from_slice(&dev.to_le_bytes());
                out.extend_from_slice(&ino.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&mtime_ns.to_le_bytes());
                out.extend_from_slice(&ctime_ns.to_le_bytes());
            }
            SourceIdentity::Remote { url, version, size } => {
                out.push(b'R');
                for text in [url, version] {
                    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                out.extend_from_slice(&size.to_le_bytes());
            }
            SourceIdentity::Memory { name, size } => {
                out.push(b'M');
                out.extend_from_slice(&(name.len() as u64).to_le_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&size.to_le_bytes());
            }
            SourceIdentity::Live { track, first, end } => {
                out.push(b'L');
                out.extend_from_slice(&(track.len() as u64).to_le_bytes());
                out.extend_from_slice(track.as_bytes());
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&end.to_le_bytes());
            }
            SourceIdentity::Subclip {
                base,
                begin_us,
                end_us,
            } => {
                out.push(b'S');
                base.write_fingerprint(out);
                out.extend_from_slice(&begin_us.to_le_bytes());
                out.extend_from_slice(&end_us.map_or(u64::MAX, |e| e).to_le_bytes());
            }
        }
    }

    /// The identity of a local file from its metadata (`stat`).
    pub fn of_metadata(m: &std::fs::Metadata) -> SourceIdentity {
        SourceIdentity::File {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// A local file read with pread.
pub struct PreadSource {
    file: File,
    name: String,
    identity: SourceIdentity,
    len: u64,
}

impl PreadSource {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<PreadSource, SourceError> {
        let name = path.display().to_string();
        let io_err = |source| SourceError::Io {
            name: name.clone(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        PreadSource::from_file(file, name)
    }

    /// Wraps an open file.
    pub fn from_file(file: File, name: String) -> Result<PreadSource, SourceError> {
        let identity = file_identity(&file).map_err(|source| SourceError::Io {
            name: name.clone(),
            source,
        })?;
        let len = match identity {
            SourceIdentity::File { size, .. } => size,
            _ => 0,
        };
        Ok(PreadSource {
            file,
            name,
            identity,
            len,
        })
    }
}

impl Source for PreadSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &SourceIdentity {
        &self.identity
    }
    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.check_range(offset, buf.len() as u64)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| SourceError::Io {
                name: self.name.clone(),
                source,
            })
    }
}

/// A local file, memory-mapped (see the `mmap` module for what happens when the file is
/// truncated while mapped).
pub struct MmapSource {
    map: mmap::Mapping,
    file: File,
    name: String,
    identity: SourceIdentity,
}

impl MmapSource {
    /// Opens and maps `path`.
    pub fn open(path: &Path) -> Result<MmapSource, SourceError> {
        let name = path.display().to_string();
        let io_err = |source| SourceError::Io {
            name: name.clone(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        MmapSource::from_file(file, name)
    }

    /// Maps an open file.
    pub fn from_file(file: File, name: String) -> Result<MmapSource, SourceError> {
        let io_err = |source| SourceError::Io {
            name: name.clone(),
            source,
        };
        let identity = file_identity(&file).map_err(io_err)?;
        let map = mmap::Mapping::new(&file).map_err(io_err)?;
        Ok(MmapSource {
            map,
            file,
            name,
            identity,
        })
    }

    /// The whole file.
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_slice()
    }
}

impl Source for MmapSource {
    fn len(&self) -> u64 {
        self.map.as_slice().len() as u64
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &SourceIdentity {
        &self.identity
    }
    fn intact(&self) -> Result<(), SourceError> {
        if self.map.is_poisoned() {
            return Err(SourceError::Changed {
                name: self.name.clone(),
            });
        }
        Ok(())
    }
    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        copy_from(self, self.map.as_slice(), offset, buf)
    }
    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        borrow_from(self, self.map.as_slice(), offset, len)
    }
}

/// `bytes` for sources whose whole content is one slice in memory.
fn borrow_from<'a>(
    src: &dyn Source,
    data: &'a [u8],
    offset: u64,
    len: usize,
) -> Result<Cow<'a, [u8]>, SourceError> {
    src.check_range(offset, len as u64)?;
    let start = offset as usize;
    Ok(Cow::Borrowed(&data[start..start + len]))
}

/// `read_exact_at` for sources whose whole content is one slice in memory.
fn copy_from(
    src: &dyn Source,
    data: &[u8],
    offset: u64,
    buf: &mut [u8],
) -> Result<(), SourceError> {
    buf.copy_from_slice(&borrow_from(src, data, offset, buf.len())?);
    Ok(())
}

/// Bytes in memory.
pub struct MemorySource {
    data: Vec<u8>,
    name: String,
    identity: SourceIdentity,
}

impl MemorySource {
    pub fn new(name: &str, data: Vec<u8>) -> MemorySource {
        let identity = SourceIdentity::Memory {
            name: name.to_string(),
            size: data.len() as u64,
        };
        MemorySource {
            data,
            name: name.to_string(),
            identity,
        }
    }
}

impl Source for MemorySource {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &SourceIdentity {
        &self.identity
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        copy_from(self, &self.data, offset, buf)
    }
    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        borrow_from(self, &self.data, offset, len)
    }
}

mod pieces;
mod sparse;
pub use pieces::{Backing, PiecesSource};
pub use sparse::{recycle, SparseSource};

/// The one place the core maps files (see its documentation); the index store maps its
/// entries with it too.
#[allow(unsafe_code)]
pub(crate) mod mmap;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_rewritten_in_place_with_its_mtime_restored_has_a_new_identity() {
        let dir = std::env::temp_dir().join(format!("origin-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.mp4");
        std::fs::write(&path, b"first version").unwrap();
        let before = std::fs::metadata(&path).unwrap();
        let old = SourceIdentity::of_metadata(&before);
        // Later than the file system's timestamp granularity (a clock tick).
        std::thread::sleep(std::time::Duration::from_millis(50));
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"other version", 0).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        drop(f);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (after.ino(), after.len(), after.modified().unwrap()),
            (before.ino(), before.len(), before.modified().unwrap())
        );
        let new = SourceIdentity::of_metadata(&after);
        assert_ne!(old, new);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        old.write_fingerprint(&mut a);
        new.write_fingerprint(&mut b);
        assert_ne!(a, b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pread_and_mmap_agree() {
        let dir = std::env::temp_dir().join(format!("origin-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let p = PreadSource::open(&path).unwrap();
        let m = MmapSource::open(&path).unwrap();
        assert_eq!(p.len(), 10_000);
        assert_eq!(m.len(), 10_000);
        assert_eq!(p.identity(), m.identity());
        assert_eq!(&*p.bytes(100, 50).unwrap(), &data[100..150]);
        assert_eq!(&*m.bytes(100, 50).unwrap(), &data[100..150]);
        assert!(p.bytes(9_990, 11).is_err());
        assert!(m.bytes(9_990, 11).is_err());
        assert!(m.bytes(u64::MAX, 1).is_err());
        let mut buf = [0u8; 4];
        m.read_exact_at(9_996, &mut buf).unwrap();
        assert_eq!(buf, data[9_996..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_file_maps() {
        let dir = std::env::temp_dir().join(format!("origin-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("e.bin");
        File::create(&path).unwrap();
        let m = MmapSource::open(&path).unwrap();
        assert!(m.is_empty());
        assert!(m.bytes(0, 1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
