//! A track's records as egress reads them: the read side of the records file that
//! [`super::archive`] writes.
//!
//! A worker keeps each track's newest records in memory, as many as a live manifest needs
//! (the DVR window and its margins, [`RecordsReader`]'s `keep_ticks`), and grows them by reading
//! only what was appended since it last looked: the cost of a manifest after a new fragment
//! does not depend on how long the archive is. Older records stay in the file and are read
//! when a request needs them ([`TrackRecords`]): records are fixed-size and sorted by start,
//! so a time is found by a binary search of `pread`s.
//!
//! What a reader relies on, from the writer: records are appended whole (64 bytes, with a
//! checksum), so a record that does not check yet is a write in progress or torn by a crash,
//! left for the next look (the next writer cuts it off); pruning writes the records it keeps
//! to a new file and renames it over the old one (a new inode), so a reader that finds
//! another inode finds its kept records again in the new file instead of reading it all.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::archive::{Record, MAX_RECORDS, RECORD_SIZE};

/// Records read from a file in one `pread` (256 KiB).
const CHUNK: u64 = 4096;
/// Fewest of the newest records kept in memory whatever their times: the live edge, the three
/// segments a live playlist lists at least, a stopped track's last fragment before its end
/// marker.
pub const MIN_KEPT: usize = 16;
/// Kept records older than the horizon are dropped in batches of at least this many (a
/// drop moves the rest).
const TRIM_BATCH: usize = 64;

/// How many whole records a file of `len` bytes holds (at most [`MAX_RECORDS`]).
fn whole_records(len: u64) -> u64 {
    (len / RECORD_SIZE as u64).min(MAX_RECORDS)
}

/// The raw bytes of records `lo..hi` of `file` (fewer when the file is shorter).
fn read_raw(file: &File, lo: u64, hi: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; (hi.saturating_sub(lo) as usize) * RECORD_SIZE];
    let mut got = 0;
    while got < bytes.len() {
        match file.read_at(&mut bytes[got..], lo * RECORD_SIZE as u64 + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(got - got % RECORD_SIZE);
    Ok(bytes)
}

/// The records in `bytes` up to the first that does not check.
fn decode_prefix(bytes: &[u8]) -> Vec<Record> {
    bytes
        .chunks_exact(RECORD_SIZE)
        .map_while(Record::decode)
        .collect()
}

/// Records `lo..hi` of `file`, every one of which must check: they were read (or skipped
/// as older than the kept ones) before, so one that does not is damage, not a write in
/// progress.
fn read_checked(file: &File, lo: u64, hi: u64) -> io::Result<Vec<Record>> {
    let bytes = read_raw(file, lo, hi)?;
    let records = decode_prefix(&bytes);
    if records.len() as u64 != hi - lo {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "records file: record {} is damaged or missing",
                lo + records.len() as u64
            ),
        ));
    }
    Ok(records)
}

/// A track's records at one moment: [`len`](TrackRecords::len) records, the newest of which
/// are in memory ([`kept`](TrackRecords::kept)); older ones are read from the records file
/// (the one the snapshot was taken of, even when pruning renamed another over it) when a
/// request asks for them.
#[derive(Debug, Clone, Default)]
pub struct TrackRecords {
    file: Option<RecordsFile>,
    /// Which records these are: the file's inode and how many times its reader read it anew
    /// (0, 0 without a file).
    version: (u64, u64),
    /// Position in the file of the first kept record.
    first_kept: u64,
    kept: Arc<Vec<Record>>,
    /// The runs of the file's records, as far as they were folded (shared with the reader
    /// and its other snapshots).
    runs: Option<Arc<Mutex<RunsCache>>>,
}

/// The runs of the first `upto` records of one version of a records file.
#[derive(Debug, Default)]
struct RunsCache {
    version: (u64, u64),
    tolerance: u64,
    upto: u64,
    runs: Vec<(u64, u64)>,
}

/// Adds a record to runs of records each starting where the previous ended (within
/// `tolerance` ticks).
fn fold_run(runs: &mut Vec<(u64, u64)>, r: &Record, tolerance: u64) {
    if r.is_end_marker() {
        return;
    }
    match runs.last_mut() {
        Some(last) if r.start <= last.1 + tolerance && r.start + tolerance >= last.1 => {
            last.1 = last.1.max(r.end())
        }
        _ => runs.push((r.start, r.end())),
    }
}

impl TrackRecords {
    /// Records held in memory only (every one kept).
    pub fn in_memory(records: Vec<Record>) -> TrackRecords {
        TrackRecords {
            kept: Arc::new(records),
            ..TrackRecords::default()
        }
    }

    /// How many records the track has.
    pub fn len(&self) -> u64 {
        self.first_kept + self.kept.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest records, held in memory.
    pub fn kept(&self) -> &Arc<Vec<Record>> {
        &self.kept
    }

    /// Position of the first kept record: records before it are read from the file.
    pub fn first_kept(&self) -> u64 {
        self.first_kept
    }

    pub fn last(&self) -> Option<&Record> {
        self.kept.last()
    }

    /// Some record holds media (end-of-stream markers follow a fragment, never another
    /// marker, so a track with records before the kept ones has media).
    pub fn has_media(&self) -> bool {
        self.first_kept > 0 || self.kept.iter().any(|r| !r.is_end_marker())
    }

    /// Records `lo..hi` (positions in the track, clamped to its length), in order.
    pub fn read(&self, lo: u64, hi: u64) -> io::Result<Vec<Record>> {
        let hi = hi.min(self.len());
        let mut out = Vec::new();
        self.visit(lo, hi, |r| {
            out.push(*r);
            true
        })?;
        Ok(out)
    }

    /// Calls `f` on records `lo..hi` in order until it returns false; older records are read
    /// from the file a chunk at a time, never all at once.
    pub fn visit(&self, lo: u64, hi: u64, mut f: impl FnMut(&Record) -> bool) -> io::Result<()> {
        let hi = hi.min(self.len());
        let mut at = lo;
        while at < hi.min(self.first_kept) {
            let end = (at + CHUNK).min(hi).min(self.first_kept);
            for r in &self.read_file(at, end)? {
                if !f(r) {
                    return Ok(());
                }
            }
            at = end;
        }
        let from = at.max(self.first_kept) - self.first_kept;
        let to = hi.saturating_sub(self.first_kept) as usize;
        for r in self.kept.get(from as usize..to).unwrap_or_default() {
            if !f(r) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Calls `f` on records before `hi`, newest first, until it returns false.
    pub fn visit_back(&self, hi: u64, mut f: impl FnMut(&Record) -> bool) -> io::Result<()> {
        let hi = hi.min(self.len());
        let in_kept = hi.saturating_sub(self.first_kept) as usize;
        for r in self.kept[..in_kept].iter().rev() {
            if !f(r) {
                return Ok(());
            }
        }
        let mut at = hi.min(self.first_kept);
        while at > 0 {
            let start = at.saturating_sub(CHUNK);
            for r in self.read_file(start, at)?.iter().rev() {
                if !f(r) {
                    return Ok(());
                }
            }
            at = start;
        }
        Ok(())
    }

    /// The first position whose record does not satisfy `pred`, which must hold for a
    /// prefix of the records (as "starts before t" does: records are sorted by start).
    /// Kept records are searched in memory; older ones with one `pread` per step.
    pub fn partition_point(&self, pred: impl Fn(&Record) -> bool) -> io::Result<u64> {
        if self.kept.first().is_some_and(&pred) {
            return Ok(self.first_kept + self.kept.partition_point(&pred) as u64);
        }
        let (mut lo, mut hi) = (0u64, self.first_kept);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let record = self.read_file(mid, mid + 1)?;
            if record.first().is_some_and(&pred) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The media the track holds, as runs of fragments each starting where the previous ended
    /// (within `tolerance` ticks): (start, end) of each. The runs of a file are folded once
    /// and grown by what was appended since (a fold, so folding on is folding all again).
    pub fn runs(&self, tolerance: u64) -> io::Result<Vec<(u64, u64)>> {
        let whole = || {
            let mut runs = Vec::new();
            self.visit(0, self.len(), |r| {
                fold_run(&mut runs, r, tolerance);
                true
            })?;
            Ok(runs)
        };
        let Some(cache) = &self.runs else {
            return whole();
        };
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        let same = cache.version == self.version && cache.tolerance == tolerance;
        // Each version of a reader's records counts one more reset than the one before.
        if same && cache.upto > self.len() || cache.version.1 > self.version.1 {
            // This snapshot is older than what was folded: fold it alone.
            return whole();
        }
        if !same {
            *cache = RunsCache {
                version: self.version,
                tolerance,
                ..RunsCache::default()
            };
        }
        let mut runs = std::mem::take(&mut cache.runs);
        let folded = self.visit(cache.upto, self.len(), |r| {
            fold_run(&mut runs, r, tolerance);
            true
        });
        match folded {
            Ok(()) => {
                cache.upto = self.len();
                cache.runs = runs;
                Ok(cache.runs.clone())
            }
            Err(e) => {
                *cache = RunsCache::default();
                Err(e)
            }
        }
    }

    /// How many records, from the first, belong to complete segments: all of them, unless the
    /// newest segment is still growing (its newest chunk neither closed it nor ended the
    /// stream), in which case those before its first chunk.
    pub fn complete_len(&self) -> io::Result<u64> {
        let len = self.len();
        let mut complete = len;
        let mut at = len;
        self.visit_back(len, |r| {
            if r.completes_segment() {
                return false;
            }
            at -= 1;
            if r.starts_segment() {
                complete = at;
                return false;
            }
            true
        })?;
        // A growing segment with no start in the file (pruned under it) hides nothing older.
        Ok(if at == 0 && complete == len && len > 0 {
            0
        } else {
            complete
        })
    }

    /// The newest record before `hi` that holds media.
    pub fn last_media_before(&self, hi: u64) -> io::Result<Option<Record>> {
        let mut found = None;
        self.visit_back(hi, |r| {
            if r.is_end_marker() {
                return true;
            }
            found = Some(*r);
            false
        })?;
        Ok(found)
    }

    /// The newest record that holds media.
    pub fn last_media(&self) -> io::Result<Option<Record>> {
        self.last_media_before(self.len())
    }

    /// The oldest record that holds media.
    pub fn first_media(&self) -> io::Result<Option<Record>> {
        let mut found = None;
        self.visit(0, self.len(), |r| {
            if r.is_end_marker() {
                return true;
            }
            found = Some(*r);
            false
        })?;
        Ok(found)
    }

    fn read_file(&self, lo: u64, hi: u64) -> io::Result<Vec<Record>> {
        match &self.file {
            Some(file) => read_checked(&*file.get()?, lo, hi),
            None if lo >= hi => Ok(Vec::new()),
            None => Err(io::Error::other(
                "records before the kept ones without a file",
            )),
        }
    }
}

/// The records file a look read: open already (the look read from it), or, when the look
/// found nothing new and opened nothing, opened when a request first reaches past the kept
/// records, and only if it is still the file the look saw (a prune may rename another over
/// it in between: then that read fails, and the next request looks again). Most requests
/// (a live window) never read past the kept records, so most looks cost one `stat`.
#[derive(Debug, Clone)]
pub enum RecordsFile {
    Open(Arc<File>),
    Lazy {
        path: Arc<PathBuf>,
        inode: u64,
        opened: std::sync::OnceLock<Option<Arc<File>>>,
    },
}

impl RecordsFile {
    /// The file, opened now if it was not.
    pub fn get(&self) -> io::Result<Arc<File>> {
        match self {
            RecordsFile::Open(file) => Ok(file.clone()),
            RecordsFile::Lazy {
                path,
                inode,
                opened,
            } => opened
                .get_or_init(|| {
                    let file = File::open(path.as_path()).ok()?;
                    let same = file.metadata().ok()?.ino() == *inode;
                    same.then(|| Arc::new(file))
                })
                .clone()
                .ok_or_else(|| {
                    io::Error::other(format!(
                        "{}: the records file was replaced while the request read it",
                        path.display()
                    ))
                }),
        }
    }
}

/// Reads one track's records file, keeping its newest records in memory and reading only
/// what was appended since the last look. It holds no descriptor between looks (a worker may
/// serve thousands of tracks); the file each look opens goes to that look's snapshot.
#[derive(Debug)]
pub struct RecordsReader {
    inode: u64,
    /// How many times the records were read anew rather than appended to.
    resets: u64,
    runs: Arc<Mutex<RunsCache>>,
    first_kept: u64,
    /// The newest records (never empty while the file has records: `first_kept` is then 0
    /// when it is).
    kept: Arc<Vec<Record>>,
}

impl RecordsReader {
    /// Opens the records file at `path`, reading only its newest records: those that start
    /// at most `keep_ticks` before the newest one ends, one before them, and at least
    /// [`MIN_KEPT`].
    /// Returns the reader and the file it read.
    pub fn open(path: &Path, keep_ticks: u64) -> io::Result<(RecordsReader, RecordsFile)> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let mut reader = RecordsReader {
            inode: meta.ino(),
            resets: 0,
            runs: Arc::default(),
            first_kept: 0,
            kept: Arc::default(),
        };
        reader.reload(&file, meta.len(), keep_ticks)?;
        Ok((reader, RecordsFile::Open(Arc::new(file))))
    }

    /// The records as they are now; `file` is the one the last look read (older records
    /// are read from it).
    pub fn records(&self, file: RecordsFile) -> TrackRecords {
        TrackRecords {
            file: Some(file),
            version: (self.inode, self.resets),
            first_kept: self.first_kept,
            kept: self.kept.clone(),
            runs: Some(self.runs.clone()),
        }
    }

    /// The inode of the file read.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// How many times the records were read anew (the file was cut below what was read, a
    /// record read changed, pruning renamed another file over it): the file may be another
    /// track's now (a track removed and made again can get the same inode), so what was
    /// known of it is to be looked at again.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Keeps `keep_ticks` of records from now on (reading older ones when that is more).
    pub fn keep(&mut self, file: &File, keep_ticks: u64) -> io::Result<()> {
        self.extend_back(file, keep_ticks)?;
        self.trim(keep_ticks);
        Ok(())
    }

    /// Position after the last record read.
    fn read_to(&self) -> u64 {
        self.first_kept + self.kept.len() as u64
    }

    /// Looks at the file at `path` again: reads the records appended since the last look,
    /// follows a rename by pruning. Returns the file it read (for [`Self::records`]).
    pub fn refresh(&mut self, path: &Path, keep_ticks: u64) -> io::Result<RecordsFile> {
        // Usually nothing was appended since the last look: a `stat` says so, and nothing is
        // opened (see [`RecordsFile`]).
        let seen = std::fs::metadata(path)?;
        if seen.ino() == self.inode && whole_records(seen.len()) == self.read_to() {
            return Ok(RecordsFile::Lazy {
                path: Arc::new(path.to_path_buf()),
                inode: self.inode,
                opened: std::sync::OnceLock::new(),
            });
        }
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.ino() != self.inode {
            self.follow_rename(&file, meta.ino(), meta.len(), keep_ticks)?;
            return Ok(RecordsFile::Open(Arc::new(file)));
        }
        let whole = whole_records(meta.len());
        let read_to = self.read_to();
        if whole == read_to {
            // Nothing new: a write in progress, or a torn record, waits for the next look.
        } else if whole < read_to || whole - read_to > CHUNK {
            // Cut below what was read (a write whose flush failed was taken back), or far
            // behind: read the newest records again.
            self.reload(&file, meta.len(), keep_ticks)?;
        } else {
            self.read_new(&file, whole, keep_ticks)?;
        }
        Ok(RecordsFile::Open(Arc::new(file)))
    }

    /// Reads the records from the last one read (which must be the same still) to `whole`.
    fn read_new(&mut self, file: &File, whole: u64, keep_ticks: u64) -> io::Result<()> {
        let read_to = self.read_to();
        let from = read_to.saturating_sub(1);
        let bytes = read_raw(file, from, whole)?;
        let mut records = bytes.chunks_exact(RECORD_SIZE);
        if let Some(last) = self.kept.last() {
            let same = records.next().and_then(Record::decode);
            if same.as_ref() != Some(last) {
                // The record read last is not there any more: read again.
                let len = file.metadata()?.len();
                return self.reload(file, len, keep_ticks);
            }
        }
        let kept = Arc::make_mut(&mut self.kept);
        kept.extend(records.map_while(Record::decode));
        self.trim(keep_ticks);
        Ok(())
    }

    /// Reads the newest records of a file `len` bytes long, forgetting what was kept.
    fn reload(&mut self, file: &File, len: u64, keep_ticks: u64) -> io::Result<()> {
        // What was folded may not be what the file holds now: runs are folded anew.
        self.resets += 1;
        let whole = whole_records(len);
        // The newest records that check, up to the first that does not (a torn tail).
        let mut hi = whole;
        let mut newest = Vec::new();
        let mut first = 0;
        while hi > 0 {
            let lo = hi.saturating_sub(CHUNK);
            newest = decode_prefix(&read_raw(file, lo, hi)?);
            if !newest.is_empty() {
                first = lo;
                break;
            }
            hi = lo;
        }
        self.first_kept = first;
        self.kept = Arc::new(newest);
        self.extend_back(file, keep_ticks)?;
        self.trim(keep_ticks);
        Ok(())
    }

    /// The horizon: kept records that start before it are not needed by a live manifest,
    /// but the newest of them is kept (it tells that nothing older is).
    fn horizon(&self, keep_ticks: u64) -> u64 {
        self.kept
            .last()
            .map_or(0, |r| r.end().saturating_sub(keep_ticks))
    }

    /// Reads older records until the first kept one starts before the horizon (or is the
    /// file's first), and at least [`MIN_KEPT`] are kept.
    fn extend_back(&mut self, file: &File, keep_ticks: u64) -> io::Result<()> {
        let horizon = self.horizon(keep_ticks);
        let mut older: Vec<Vec<Record>> = Vec::new();
        let mut first = self.first_kept;
        let mut count = self.kept.len();
        let mut oldest_start = self.kept.first().map(|r| r.start);
        while first > 0 && (count < MIN_KEPT || oldest_start.is_some_and(|s| s >= horizon)) {
            let lo = first.saturating_sub(CHUNK);
            let bytes = read_raw(file, lo, first)?;
            let records: Vec<Record> = bytes
                .chunks_exact(RECORD_SIZE)
                .map(Record::decode)
                .collect::<Option<_>>()
                .unwrap_or_default();
            if records.len() as u64 != first - lo {
                // A damaged record: what is older is read from the file when asked for (and
                // fails there, saying so); a live manifest does not need it.
                break;
            }
            oldest_start = records.first().map(|r| r.start);
            count += records.len();
            first = lo;
            older.push(records);
        }
        if !older.is_empty() {
            let mut all = Vec::with_capacity(count);
            for chunk in older.iter().rev() {
                all.extend_from_slice(chunk);
            }
            all.extend_from_slice(&self.kept);
            self.kept = Arc::new(all);
            self.first_kept = first;
        }
        Ok(())
    }

    /// Drops the kept records a live manifest no longer needs, in batches.
    fn trim(&mut self, keep_ticks: u64) {
        let horizon = self.horizon(keep_ticks);
        let before = self.kept.partition_point(|r| r.start < horizon);
        let drop = before
            .saturating_sub(1)
            .min(self.kept.len().saturating_sub(MIN_KEPT));
        if drop >= TRIM_BATCH {
            let kept = Arc::make_mut(&mut self.kept);
            kept.drain(..drop);
            kept.shrink_to(kept.len() * 2);
            self.first_kept += drop as u64;
        }
    }

    /// Pruning renamed a new records file over the one read (it holds the newest records
    /// of the old one, and maybe more): finds the kept records in it and reads on from
    /// there; reads its newest records again when they are not found.
    fn follow_rename(
        &mut self,
        file: &File,
        inode: u64,
        len: u64,
        keep_ticks: u64,
    ) -> io::Result<()> {
        let whole = whole_records(len);
        let found = self.locate_in(file, whole)?;
        self.inode = inode;
        self.resets += 1;
        match found {
            Some((first_kept, drop)) if first_kept + (self.kept.len() - drop) as u64 <= whole => {
                if drop > 0 {
                    Arc::make_mut(&mut self.kept).drain(..drop);
                }
                self.first_kept = first_kept;
                if self.kept.is_empty() {
                    return self.reload(file, len, keep_ticks);
                }
                self.read_new(file, whole, keep_ticks)?;
                self.extend_back(file, keep_ticks)
            }
            _ => self.reload(file, len, keep_ticks),
        }
    }

    /// Where the kept records are in `file`: the position of the first one still there, and
    /// how many kept ones were pruned from it.
    fn locate_in(&self, file: &File, whole: u64) -> io::Result<Option<(u64, usize)>> {
        let (Some(oldest), Some(newest)) = (self.kept.first(), self.kept.last()) else {
            return Ok(None);
        };
        let Some(head) = read_raw(file, 0, 1.min(whole))?
            .get(..RECORD_SIZE)
            .and_then(Record::decode)
        else {
            return Ok(None);
        };
        if head.start > newest.start {
            return Ok(None);
        }
        // The new file starts inside what was kept: drop what was pruned.
        if head.start >= oldest.start {
            let from = self.kept.partition_point(|r| r.start < head.start);
            let j = self.kept[from..]
                .iter()
                .take_while(|r| r.start == head.start)
                .position(|r| *r == head);
            return Ok(j.map(|j| (0, from + j)));
        }
        // It starts before: find the oldest kept record in it.
        let (mut lo, mut hi) = (0u64, whole);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(r) = read_raw(file, mid, mid + 1)?
                .get(..RECORD_SIZE)
                .and_then(Record::decode)
            else {
                return Ok(None);
            };
            if r.start < oldest.start {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let candidates = decode_prefix(&read_raw(file, lo, (lo + 8).min(whole))?);
        let k = candidates
            .iter()
            .take_while(|r| r.start == oldest.start)
            .position(|r| r == oldest);
        Ok(k.map(|k| (lo + k as u64, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::archive::{read_records, FLAG_END};
    use std::io::Write;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("origin-records-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Fragment `seq`, 2 s long at timescale 1000.
    fn record(seq: u64) -> Record {
        Record {
            start: seq * 2000,
            duration: 2000,
            vpos: 100 + seq * 10,
            file_no: 1 + (seq / 100) as u32,
            file_offset: (seq % 100) * 10,
            size: 10,
            ingest_ms: 1_000_000 + seq as i64,
            flags: 0,
            seq,
        }
    }

    fn append(path: &Path, records: impl IntoIterator<Item = Record>) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let bytes: Vec<u8> = records.into_iter().flat_map(|r| r.encode()).collect();
        f.write_all(&bytes).unwrap();
    }

    fn open(path: &Path, keep_ticks: u64) -> (RecordsReader, TrackRecords) {
        let (reader, file) = RecordsReader::open(path, keep_ticks).unwrap();
        let records = reader.records(file);
        (reader, records)
    }

    impl RecordsReader {
        /// A look at the file, and the records it gives.
        fn look(&mut self, path: &Path, keep_ticks: u64) -> TrackRecords {
            let file = self.refresh(path, keep_ticks).unwrap();
            self.records(file)
        }
    }

    fn all(records: &TrackRecords) -> Vec<Record> {
        records.read(0, records.len()).unwrap()
    }

    /// 30 s of records in memory (one before the horizon, at least MIN_KEPT, batches).
    const KEEP: u64 = 30_000;
    const MOST_KEPT: usize = 30_000 / 2000 + 1 + TRIM_BATCH;

    #[test]
    fn appends_are_read_incrementally_and_equal_a_full_read() {
        let d = temp("appends");
        let path = d.join("records");
        append(&path, (0..10_000).map(record));
        let (mut reader, _) = open(&path, KEEP);
        let records = reader.look(&path, KEEP);
        assert_eq!(records.len(), 10_000);
        // Only the newest records are in memory, the rest is read from the file.
        assert!(
            records.kept().len() <= MOST_KEPT,
            "{}",
            records.kept().len()
        );
        assert!(records.kept().len() >= MIN_KEPT);
        assert!(records.kept()[0].start < records.last().unwrap().end() - KEEP);
        assert_eq!(all(&records), read_records(&path).unwrap().0);
        for n in 10_000..10_300u64 {
            append(&path, [record(n)]);
            reader.look(&path, KEEP);
            assert!(reader.look(&path, KEEP).kept().len() <= MOST_KEPT);
        }
        // Nothing new: nothing changes (the same records, not read again).
        let before = reader.look(&path, KEEP);
        reader.look(&path, KEEP);
        assert!(Arc::ptr_eq(before.kept(), reader.look(&path, KEEP).kept()));
        assert_eq!(
            all(&reader.look(&path, KEEP)),
            read_records(&path).unwrap().0
        );
        // An end marker, as the writer puts it.
        let last = record(10_299);
        let marker = Record {
            start: last.end(),
            duration: 0,
            size: 0,
            flags: FLAG_END,
            ..last
        };
        append(&path, [marker]);
        reader.look(&path, KEEP);
        let records = reader.look(&path, KEEP);
        assert_eq!(records.last(), Some(&marker));
        assert_eq!(records.last_media().unwrap(), Some(last));
        assert_eq!(records.first_media().unwrap(), Some(record(0)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_tail_is_read_once_it_is_whole() {
        let d = temp("torn");
        let path = d.join("records");
        append(&path, (0..50).map(record));
        let (mut reader, _) = open(&path, KEEP);
        // Half a record: a write in progress.
        let next = record(50).encode();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&next[..20]).unwrap();
        reader.look(&path, KEEP);
        assert_eq!(reader.look(&path, KEEP).len(), 50);
        // A whole record that does not check (torn by a crash): not taken either.
        f.write_all(&[0xee; 44]).unwrap();
        reader.look(&path, KEEP);
        assert_eq!(reader.look(&path, KEEP).len(), 50);
        // A reader opening the file now leaves it out too.
        assert_eq!(open(&path, KEEP).1.len(), 50);
        // The next writer cuts it off and appends.
        f.set_len(50 * RECORD_SIZE as u64).unwrap();
        append(&path, [record(50), record(51)]);
        reader.look(&path, KEEP);
        assert_eq!(
            all(&reader.look(&path, KEEP)),
            read_records(&path).unwrap().0
        );
        assert_eq!(reader.look(&path, KEEP).len(), 52);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_record_taken_back_is_read_again() {
        let d = temp("takenback");
        let path = d.join("records");
        append(&path, (0..40).map(record));
        let (mut reader, _) = open(&path, KEEP);
        // A write whose flush failed is taken back, and another record written in its place.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(39 * RECORD_SIZE as u64).unwrap();
        let other = Record {
            ingest_ms: 7,
            ..record(39)
        };
        append(&path, [other, record(40)]);
        reader.look(&path, KEEP);
        assert_eq!(
            all(&reader.look(&path, KEEP)),
            read_records(&path).unwrap().0
        );
        assert_eq!(reader.look(&path, KEEP).read(39, 40).unwrap(), [other]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Pruning as the writer does it: the records of data files from `first_file` on, to a
    /// new file renamed over the old one.
    fn prune(path: &Path, first_file: u32) {
        let (records, _) = read_records(path).unwrap();
        let kept: Vec<u8> = records
            .iter()
            .filter(|r| r.file_no >= first_file)
            .flat_map(|r| r.encode())
            .collect();
        crate::live::archive::write_atomically(path, &kept).unwrap();
    }

    #[test]
    fn a_pruned_file_is_followed_without_reading_it_all() {
        let d = temp("prune");
        let path = d.join("records");
        append(&path, (0..1000).map(record));
        let (mut reader, _) = open(&path, KEEP);
        let old = reader.look(&path, KEEP);
        // Nothing was appended: the look opened nothing, and older records are read from the
        // file when asked for.
        assert!(matches!(old.file, Some(RecordsFile::Lazy { .. })));
        assert_eq!(old.read(0, 2).unwrap(), [record(0), record(1)]);
        let unread = reader.look(&path, KEEP);
        // Pruned before the kept records: they are found in the new file by a search.
        prune(&path, 3);
        append(&path, (1000..1005).map(record));
        reader.look(&path, KEEP);
        let records = reader.look(&path, KEEP);
        assert_eq!(all(&records), read_records(&path).unwrap().0);
        assert_eq!(records.read(0, 1).unwrap(), [record(200)]);
        assert_eq!(records.first_kept(), old.first_kept() - 200);
        // The new records were appended to the kept ones, not read again.
        assert_eq!(records.kept()[..old.kept().len()], old.kept()[..]);
        // The snapshot taken before reads the file it opened, the old one; one that had not
        // opened it yet does not read another file than the one it saw: the read fails,
        // never gives other records.
        assert_eq!(all(&old), (0..1000).map(record).collect::<Vec<_>>());
        assert!(unread.read(0, 1).is_err());
        // Pruned into the kept records (a short archive): the pruned ones are dropped.
        let (mut short, _) = open(&path, 10_000_000);
        assert_eq!(short.look(&path, 10_000_000).first_kept(), 0);
        prune(&path, 10);
        append(&path, [record(1005)]);
        short.look(&path, 10_000_000);
        assert_eq!(
            all(&short.look(&path, 10_000_000)),
            read_records(&path).unwrap().0
        );
        assert_eq!(short.look(&path, 10_000_000).first_kept(), 0);
        assert_eq!(short.look(&path, 10_000_000).kept()[0], record(900));
        // A file that holds none of the kept records (a track made again): read anew.
        let fresh: Vec<Record> = (0..5)
            .map(|n| Record {
                ingest_ms: 9,
                ..record(n)
            })
            .collect();
        crate::live::archive::write_atomically(
            &path,
            &fresh.iter().flat_map(|r| r.encode()).collect::<Vec<u8>>(),
        )
        .unwrap();
        short.look(&path, 10_000_000);
        assert_eq!(all(&short.look(&path, 10_000_000)), fresh);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn older_records_are_searched_and_read_from_the_file() {
        let d = temp("search");
        let path = d.join("records");
        let every: Vec<Record> = (0..20_000).map(record).collect();
        append(&path, every.iter().copied());
        let records = open(&path, KEEP).1;
        assert!(records.first_kept() > 19_000);
        let memory = TrackRecords::in_memory(every.clone());
        for t in [
            0, 1, 2000, 2001, 12_345_678, 39_970_000, 39_999_999, 50_000_000,
        ] {
            let before_t = |r: &Record| r.start < t;
            assert_eq!(
                records.partition_point(before_t).unwrap(),
                memory.partition_point(before_t).unwrap(),
                "{t}"
            );
        }
        assert_eq!(records.read(4000, 9000).unwrap(), every[4000..9000]);
        assert_eq!(records.read(19_990, 30_000).unwrap(), every[19_990..]);
        let mut back = Vec::new();
        records
            .visit_back(19_999, |r| {
                back.push(*r);
                back.len() < 5000
            })
            .unwrap();
        let expected: Vec<Record> = every[14_999..19_999].iter().rev().copied().collect();
        assert_eq!(back, expected);
        // A damaged old record: a read that reaches it says so, the newest still read.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0u8; 8], 100 * RECORD_SIZE as u64).unwrap();
        let records = open(&path, KEEP).1;
        assert_eq!(records.last(), every.last());
        let err = records.read(0, 200).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(records.read(101, 200).unwrap(), every[101..200]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_longer_keep_reads_older_records() {
        let d = temp("keep");
        let path = d.join("records");
        append(&path, (0..5000).map(record));
        let (mut reader, _) = open(&path, KEEP);
        let short = reader.look(&path, KEEP).kept().len();
        let file = reader.refresh(&path, KEEP).unwrap();
        reader.keep(&file.get().unwrap(), 3_600_000).unwrap();
        let records = reader.records(file);
        assert!(records.kept().len() >= 1800 && records.kept().len() > short);
        assert!(records.kept()[0].start < records.last().unwrap().end() - 3_600_000);
        assert_eq!(all(&records), read_records(&path).unwrap().0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Runs folded from every record at once.
    fn runs_of(records: &[Record]) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        for r in records {
            fold_run(&mut runs, r, 1);
        }
        runs
    }

    #[test]
    fn runs_are_folded_once_and_grown_with_appends() {
        let d = temp("runs");
        let path = d.join("records");
        // Gaps after fragments 100 and 5000.
        let gappy = |n: u64| Record {
            start: record(n).start
                + if n > 5000 {
                    9000
                } else if n > 100 {
                    4000
                } else {
                    0
                },
            ..record(n)
        };
        append(&path, (0..9000).map(gappy));
        let (mut reader, _) = open(&path, KEEP);
        let first = reader.look(&path, KEEP).runs(1).unwrap();
        assert_eq!(first, runs_of(&read_records(&path).unwrap().0));
        assert_eq!(first.len(), 3);
        for n in 9000..9010 {
            append(&path, [gappy(n)]);
            reader.look(&path, KEEP);
            let records = reader.look(&path, KEEP);
            assert_eq!(
                records.runs(1).unwrap(),
                runs_of(&read_records(&path).unwrap().0)
            );
            // The fold went on from where it was: the old records were not read again.
            let cache = records.runs.as_ref().unwrap().lock().unwrap();
            assert_eq!((cache.upto, cache.version.0), (n + 1, reader.inode()));
        }
        // A snapshot older than the fold still sees its own runs.
        let old = reader.look(&path, KEEP);
        append(&path, [gappy(9010)]);
        reader.look(&path, KEEP);
        reader.look(&path, KEEP).runs(1).unwrap();
        assert_eq!(old.runs(1).unwrap(), runs_of(&all(&old)));
        // A new file (pruned), and a record taken back: folded anew.
        prune(&path, 50);
        reader.look(&path, KEEP);
        let pruned = read_records(&path).unwrap().0;
        assert_eq!(reader.look(&path, KEEP).runs(1).unwrap(), runs_of(&pruned));
        assert_eq!(runs_of(&pruned).len(), 2);
        // A snapshot of the file before it was pruned: its own runs, and the new fold stands.
        assert_eq!(old.runs(1).unwrap(), runs_of(&all(&old)));
        assert_eq!(reader.look(&path, KEEP).runs(1).unwrap(), runs_of(&pruned));
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len((pruned.len() as u64 - 1) * RECORD_SIZE as u64)
            .unwrap();
        let moved = Record {
            start: gappy(9010).start + 50_000,
            ..gappy(9010)
        };
        let next = Record {
            start: moved.end(),
            ..moved
        };
        append(&path, [moved, next]);
        reader.look(&path, KEEP);
        assert_eq!(
            reader.look(&path, KEEP).runs(1).unwrap(),
            runs_of(&read_records(&path).unwrap().0)
        );
        assert_eq!(reader.look(&path, KEEP).runs(1).unwrap().len(), 3);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_empty_file_has_no_records() {
        let d = temp("empty");
        let path = d.join("records");
        std::fs::write(&path, b"").unwrap();
        let (mut reader, _) = open(&path, KEEP);
        assert!(reader.look(&path, KEEP).is_empty());
        assert!(!reader.look(&path, KEEP).has_media());
        assert_eq!(reader.look(&path, KEEP).last_media().unwrap(), None);
        append(&path, [record(0)]);
        reader.look(&path, KEEP);
        assert_eq!(all(&reader.look(&path, KEEP)), [record(0)]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
