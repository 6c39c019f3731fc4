//! A session's spool file: where the payload of a large fragment goes piece by piece as it
//! arrives, until the fragment is whole and checked and its record moves it into the track's
//! data file (see [`super::record_bytes`]). Memory then holds a small window of a fragment,
//! never all of it.
//!
//! The file has no name: it is made with `O_TMPFILE` in the archive's directory (the same file
//! system as the data files, so the move is an in-kernel copy), or, where the file system has
//! no `O_TMPFILE`, made under a name and unlinked at once. Either way it disappears when the
//! session closes it, on success, on error and when the worker dies; a name left by a crash
//! between the two steps is removed by the next session that makes a spool there.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Name prefix of a spool file between its creation and its unlinking.
const SPOOL_PREFIX: &str = ".spool-";

/// One session's spool file.
#[derive(Debug)]
pub struct Spool {
    file: File,
}

impl Spool {
    /// A spool file in `dir`.
    pub fn create(dir: &Path) -> io::Result<Spool> {
        remove_stale(dir);
        let unnamed = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir);
        let file = match unnamed {
            Ok(file) => file,
            Err(_) => {
                // Unique among processes (the id) and this one's threads (a count).
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("{SPOOL_PREFIX}{}-{n}", std::process::id()));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                // Another session's sweep may have removed it already: the file stays ours.
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                file
            }
        };
        Ok(Spool { file })
    }

    /// Writes `bytes` at `at`.
    pub fn write_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, at)
    }

    /// Frees what the file holds (nothing in it is needed any more).
    pub fn clear(&self) -> io::Result<()> {
        self.file.set_len(0)
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Removes spool files a crash left under a name in `dir`. A live session's file is never
/// lost by this: it holds the file open, and a name is only there for a moment.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPOOL_PREFIX)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_no_file_behind_and_sweeps_what_a_crash_left() {
        let dir = std::env::temp_dir().join(format!("origin-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let crashed = dir.join(format!("{SPOOL_PREFIX}1234-0"));
        std::fs::write(&crashed, b"left by a crash").unwrap();
        let spool = Spool::create(&dir).unwrap();
        assert!(!crashed.exists());
        spool.write_at(b"0123456789", 0).unwrap();
        spool.write_at(b"ab", 10).unwrap();
        let mut back = [0u8; 12];
        spool.file().read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"0123456789ab");
        // Nothing in the directory carries its bytes.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        spool.clear().unwrap();
        assert_eq!(spool.file().metadata().unwrap().len(), 0);
        drop(spool);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
