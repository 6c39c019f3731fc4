//! A channel's archive on disk, beside its server manifest: what every worker, a reloaded
//! nginx and a restarted one read, and the only copy of the live state.
//!
//! ```text
//! ch.isml                    the server manifest (options, and the tracks encoders announced)
//! ch.isml.archive/
//!   lock                     held while a track is registered
//!   epoch                    the channel's availability anchor, written once
//!   timelines                the timelines encoder restarts started (number, offset, when)
//!   streams/<stream>         the init segment each ingest stream last sent (per-segment POSTs)
//!   <name>=<bitrate>/        one directory per track
//!     info                   what the track is (kind, name, bitrate, language, track ID)
//!     init                   the init segment (ftyp + moov) it was announced with
//!     records                one fixed-size record per fragment (and per end of stream)
//!     00000001.frag …        the fragments' bytes, append-only, a new file every
//!                            `archive_segment_length`
//! ```
//!
//! A fragment is written in this order: its bytes appended to the current data file, that
//! file flushed (`fdatasync`), then its record appended and flushed. Readers see a fragment only
//! through its record, so a fragment is visible only once complete, and acknowledged only once
//! both writes are on disk. A record carries a checksum: one torn by a crash is dropped (and
//! cut off by the next writer). Writers of one track (two redundant encoders, in any worker)
//! take turns under `flock` on the records file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::ingest::IngestError;
use super::record_bytes::RecordBytes;
use super::timeline::{
    continues_segment, judge, parse_timelines, restart_timeline, timeline_numbered, timeline_of,
    with_timeline, Clock, Held, HeldFragment, Offered, Timeline, Verdict, FLAG_TIMELINE_START,
};

/// The archive directory's suffix, after the server manifest's file name.
pub const ARCHIVE_SUFFIX: &str = ".archive";
/// Bytes per record.
pub const RECORD_SIZE: usize = 64;
/// Most records one track's file is read with (a year of 2-second fragments is 16 M).
pub const MAX_RECORDS: u64 = 32 << 20;

/// The record is an end-of-stream marker (no bytes).
pub const FLAG_END: u32 = 1;
/// The fragment starts with a sync sample.
pub const FLAG_SYNC: u32 = 2;
/// The fragment (a chunk) continues the segment of the record before it: a segment is the
/// run of records from one without this flag to the next one without it. Records written
/// before chunked ingest never carry it: each of them is a segment.
pub const FLAG_CONTINUES: u32 = 8;
/// The fragment ends its segment: the next record starts a new one, so the segment is
/// complete without waiting for it.
pub const FLAG_CLOSES: u32 = 16;

/// One fragment of a track, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// Decode time of the first sample, track timescale.
    pub start: u64,
    /// Sum of the sample durations, track timescale.
    pub duration: u64,
    /// Where the fragment sits in the track's virtual file (init, then every fragment ever
    /// written, in order): sample offsets in its `moof` count from there.
    pub vpos: u64,
    /// The data file and where in it.
    pub file_no: u32,
    pub file_offset: u64,
    pub size: u32,
    /// When it was written, milliseconds since the Unix epoch.
    pub ingest_ms: i64,
    pub flags: u32,
    /// Position of the fragment's segment in the track since it began (stable under pruning:
    /// HLS media sequence numbers are made of it); every chunk of a segment carries its
    /// segment's.
    pub seq: u64,
}

impl Record {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.duration)
    }

    pub fn is_end_marker(&self) -> bool {
        self.flags & FLAG_END != 0
    }

    /// Whether the record starts a segment (see [`FLAG_CONTINUES`]).
    pub fn starts_segment(&self) -> bool {
        self.flags & FLAG_CONTINUES == 0
    }

    /// Whether the record's segment is known complete with it: it closes the segment or marks
    /// the stream's end.
    pub fn completes_segment(&self) -> bool {
        self.flags & (FLAG_CLOSES | FLAG_END) != 0
    }

    pub(crate) fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[0..8].copy_from_slice(&self.start.to_le_bytes());
        b[8..16].copy_from_slice(&self.duration.to_le_bytes());
        b[16..24].copy_from_slice(&self.vpos.to_le_bytes());
        b[24..32].copy_from_slice(&self.file_offset.to_le_bytes());
        b[32..36].copy_from_slice(&self.file_no.to_le_bytes());
        b[36..40].copy_from_slice(&self.size.to_le_bytes());
        b[40..48].copy_from_slice(&self.ingest_ms.to_le_bytes());
        b[48..52].copy_from_slice(&self.flags.to_le_bytes());
        b[52..60].copy_from_slice(&self.seq.to_le_bytes());
        let check = checksum(&b[..60]);
        b[60..64].copy_from_slice(&check.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Record> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        if b.len() != RECORD_SIZE || checksum(&b[..60]) != u32_at(60) {
            return None;
        }
        Some(Record {
            start: u64_at(0),
            duration: u64_at(8),
            vpos: u64_at(16),
            file_offset: u64_at(24),
            file_no: u32_at(32),
            size: u32_at(36),
            ingest_ms: u64_at(40) as i64,
            flags: u32_at(48),
            seq: u64_at(52),
        })
    }
}

fn checksum(b: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(b) as u32
}

/// The archive directory of the server manifest at `isml`.
pub fn archive_dir(isml: &Path) -> PathBuf {
    let mut s = isml.as_os_str().to_owned();
    s.push(ARCHIVE_SUFFIX);
    PathBuf::from(s)
}

/// The channel's timelines after its first (see [`super::timeline`]), in its archive.
pub fn timelines_path(archive: &Path) -> PathBuf {
    archive.join("timelines")
}

/// The directory name of a track: its name (URL-encoded, so it holds no `/`) and bitrate.
pub fn track_dir_name(name: &str, bitrate: u64) -> String {
    format!("{}={bitrate}", crate::url::encode_name(name))
}

pub(crate) fn data_file_name(file_no: u32) -> String {
    format!("{file_no:08}.frag")
}

fn storage(path: &Path) -> impl Fn(io::Error) -> IngestError + '_ {
    move |source| IngestError::Storage {
        path: path.display().to_string(),
        source,
    }
}

/// Holds `flock` on a file until dropped.
pub struct Locked<'f>(&'f File);

impl<'f> Locked<'f> {
    /// Waits for the lock (writers hold it for one append: two flushes).
    pub fn exclusive(file: &'f File) -> io::Result<Locked<'f>> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Locked(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `exclusive`.
        #[allow(unsafe_code)]
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// A temporary name beside `path` that no other writer uses: not another process (its id),
/// nor another thread of this one (a count), since archive writes run on thread pools.
pub fn temporary_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".tmp{}-{n}", std::process::id()));
    PathBuf::from(s)
}

/// Writes `bytes` to `path` through a temporary file and a rename, flushed, so readers see the
/// old file or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary_name(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Every complete record of a records file (a torn or corrupt tail is left out), with the
/// file's identity (inode, size).
pub fn read_records(path: &Path) -> io::Result<(Vec<Record>, (u64, u64))> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let count = (meta.len() / RECORD_SIZE as u64).min(MAX_RECORDS);
    let mut bytes = vec![0u8; (count as usize) * RECORD_SIZE];
    let mut got = 0;
    while got < bytes.len() {
        match file.read_at(&mut bytes[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut records = Vec::with_capacity(got / RECORD_SIZE);
    for chunk in bytes[..got - got % RECORD_SIZE].chunks_exact(RECORD_SIZE) {
        match Record::decode(chunk) {
            Some(r) => records.push(r),
            None => break,
        }
    }
    Ok((records, (meta.ino(), meta.len())))
}

/// When a fragment offered to a track plays (the encoder's times, in the track's timescale),
/// and its record flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub duration: u64,
    pub flags: u32,
    pub timescale: u32,
}

/// How a fragment offered to a track was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written and flushed: this record (on a new timeline when its flags say
    /// [`FLAG_TIMELINE_START`]).
    Stored(Record),
    /// A fragment with this start time was written moments ago (a redundant encoder, or a
    /// re-send): dropped.
    Duplicate,
}

/// When a track's data files rotate and what is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A new data file every this many ticks of the track.
    pub segment_ticks: u64,
    /// Data files wholly older than this many ticks before the newest fragment are removed
    /// (`None`: kept for ever).
    pub keep_ticks: Option<u64>,
    /// An encoder whose clock went back starts a new timeline instead of being refused
    /// (`restart_on_encoder_reconnect`).
    pub restart_on_reconnect: bool,
}

/// What ingest counted for a track (its `stats` file), for the statistics report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackStats {
    pub fragments: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub errors: u64,
    /// When the last fragment arrived, ms since the Unix epoch.
    pub last_ms: i64,
}

impl TrackStats {
    const SIZE: usize = 40;

    fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, v) in [
            self.fragments,
            self.bytes,
            self.duplicates,
            self.errors,
            self.last_ms as u64,
        ]
        .iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> TrackStats {
        let at = |i: usize| {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        TrackStats {
            fragments: at(0),
            bytes: at(1),
            duplicates: at(2),
            errors: at(3),
            last_ms: at(4) as i64,
        }
    }

    /// The counters of the track directory `dir` (zero when none were written).
    pub fn read(dir: &Path) -> TrackStats {
        std::fs::read(dir.join("stats"))
            .map(|b| TrackStats::decode(&b))
            .unwrap_or_default()
    }
}

/// One track's directory, opened for writing.
pub struct TrackWriter {
    dir: PathBuf,
    records: File,
    init_len: u64,
}

impl TrackWriter {
    /// Opens (creating) the track directory `dir`, whose init segment is `init`. A directory
    /// that exists keeps its own init segment.
    pub fn open(dir: &Path, init: &[u8], info: &str) -> Result<TrackWriter, IngestError> {
        let err = storage(dir);
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let init_path = dir.join("init");
        let init_len = match std::fs::metadata(&init_path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomically(&dir.join("info"), info.as_bytes()).map_err(&err)?;
                write_atomically(&init_path, init).map_err(&err)?;
                init.len() as u64
            }
            Err(e) => return Err(err(e)),
        };
        let records = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(dir.join("records"))
            .map_err(&err)?;
        Ok(TrackWriter {
            dir: dir.to_path_buf(),
            records,
            init_len,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` holding the lock on the records file, first moving to the current file when
    /// pruning (in any worker) renamed a new one over the one this writer opened.
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut TrackWriter) -> Result<T, IngestError>,
    ) -> Result<T, IngestError> {
        let path = self.dir.join("records");
        let err = storage(&path);
        for _ in 0..16 {
            let current = std::fs::metadata(&path).map_err(&err)?.ino();
            if self.records.metadata().map_err(&err)?.ino() != current {
                self.records = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(&err)?;
                continue;
            }
            let held = self.records.try_clone().map_err(&err)?;
            let _lock = Locked::exclusive(&held).map_err(&err)?;
            // Renamed while this writer waited for the lock: look again.
            if std::fs::metadata(&path).map_err(&err)?.ino() != current {
                continue;
            }
            return f(self);
        }
        Err(err(io::Error::other(
            "the records file keeps being replaced",
        )))
    }

    /// The last record, read under the caller's lock; a torn tail is cut off.
    fn last_record(&self) -> io::Result<Option<Record>> {
        let len = self.records.metadata()?.len();
        let whole = len - len % RECORD_SIZE as u64;
        if whole != len {
            self.records.set_len(whole)?;
        }
        let mut at = whole;
        while at >= RECORD_SIZE as u64 {
            at -= RECORD_SIZE as u64;
            let mut b = [0u8; RECORD_SIZE];
            self.records.read_exact_at(&mut b, at)?;
            if let Some(r) = Record::decode(&b) {
                if at + (RECORD_SIZE as u64) != whole {
                    self.records.set_len(at + RECORD_SIZE as u64)?;
                }
                return Ok(Some(r));
            }
        }
        if whole != 0 {
            self.records.set_len(0)?;
        }
        Ok(None)
    }

    /// The media record that starts at `start` or last before it (binary search over the
    /// records file, whose starts only grow; an end-of-stream marker stands for the media
    /// before it).
    fn covering(&self, start: u64, count: u64) -> io::Result<Option<Record>> {
        let read = |k: u64| -> io::Result<Option<Record>> {
            let mut b = [0u8; RECORD_SIZE];
            self.records.read_exact_at(&mut b, k * RECORD_SIZE as u64)?;
            Ok(Record::decode(&b))
        };
        // The first record that starts after `start`.
        let (mut lo, mut hi) = (0u64, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match read(mid)? {
                Some(r) if r.start <= start => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let mut at = lo;
        while at > 0 {
            at -= 1;
            match read(at)? {
                Some(r) if r.is_end_marker() => continue,
                found => return Ok(found),
            }
        }
        Ok(None)
    }

    /// The timelines the channel started after its first (the archive directory is the
    /// track directory's parent).
    fn timelines(&self) -> io::Result<Vec<Timeline>> {
        let Some(archive) = self.dir.parent() else {
            return Ok(Vec::new());
        };
        match std::fs::read_to_string(timelines_path(archive)) {
            Ok(text) => Ok(parse_timelines(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The timeline a restarted track goes on (see [`restart_timeline`]), decided and written
    /// under the channel's lock so tracks of one restart share it.
    fn restart(
        &self,
        current: u32,
        timing: Timing,
        edge: u64,
        clock: Clock,
    ) -> Result<Timeline, IngestError> {
        let archive = self.dir.parent().unwrap_or(&self.dir);
        let err = storage(archive);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(archive.join("lock"))
            .map_err(&err)?;
        let _held = Locked::exclusive(&lock).map_err(&err)?;
        let mut timelines = self.timelines().map_err(&err)?;
        let (timeline, new) = restart_timeline(
            &timelines,
            current,
            timing.start,
            edge,
            timing.timescale,
            clock,
        )
        .ok_or_else(|| {
            IngestError::Conflict(format!(
                "{}: the channel took as many encoder restarts as it can number",
                self.dir.display()
            ))
        })?;
        if new {
            timelines.push(timeline);
            let text = super::timeline::format_timelines(&timelines);
            write_atomically(&timelines_path(archive), text.as_bytes()).map_err(&err)?;
        }
        Ok(timeline)
    }

    /// Offers a record that starts at `timing.start` and lasts `timing.duration` ticks (the
    /// encoder's times), judged by the timeline rules ([`super::timeline`]). `bytes` are its
    /// fragments (payloads in memory or in `spool`, the session's spool file); `rebase(bytes,
    /// vpos, delta)` fixes absolute offsets in their `moof`s once the record's place is known
    /// and moves their decode times forward by `delta` ticks (its timeline's offset). Flushed
    /// before it returns.
    pub fn append(
        &mut self,
        timing: Timing,
        bytes: &mut RecordBytes,
        spool: Option<&File>,
        rebase: impl FnOnce(&mut RecordBytes, u64, u64) -> Result<(), IngestError>,
        retention: Retention,
        clock: Clock,
    ) -> Result<Appended, IngestError> {
        self.locked(|w| {
            let (appended, renewed) =
                w.append_locked(timing, bytes, spool, rebase, retention, clock)?;
            if let Some(file) = renewed {
                // The lock stays on the old inode until this returns; writers that wait for it
                // then find the new file and lock that.
                w.records = file;
            }
            Ok(appended)
        })
    }

    fn append_locked(
        &mut self,
        timing: Timing,
        bytes: &mut RecordBytes,
        spool: Option<&File>,
        rebase: impl FnOnce(&mut RecordBytes, u64, u64) -> Result<(), IngestError>,
        retention: Retention,
        clock: Clock,
    ) -> Result<(Appended, Option<File>), IngestError> {
        let dir = self.dir.clone();
        let err = storage(&dir);
        let now_ms = clock.now_ms;
        let Timing {
            duration,
            timescale,
            mut flags,
            ..
        } = timing;
        let size = u32::try_from(bytes.len())
            .map_err(|_| IngestError::Malformed(format!("a record of {} bytes", bytes.len())))?;
        let last = self.last_record().map_err(&err)?;
        let count = self.records.metadata().map_err(&err)?.len() / RECORD_SIZE as u64;
        // The track's timeline, and the offered fragment in archive time on it. A track's
        // first fragment goes on the channel's newest: its encoder runs on the channel's
        // clock as it is now.
        // The channel's timelines file is read only when the track is on a later timeline
        // or new (most appends: timeline 0, no read).
        let timelines = match last {
            Some(l) if timeline_of(l.flags) == 0 => Vec::new(),
            _ => self.timelines().map_err(&err)?,
        };
        let current = match last {
            Some(l) => timeline_of(l.flags),
            None => timelines.last().map_or(0, |t| t.number),
        };
        let mut timeline = match current {
            0 => Timeline::FIRST,
            n => timeline_numbered(&timelines, n).ok_or_else(|| {
                IngestError::Malformed(format!(
                    "{}: timeline {n} is not in the channel's timelines file",
                    self.dir.display()
                ))
            })?,
        };
        let mut start = timing
            .start
            .saturating_add(timeline.offset_ticks(timescale));
        let held = match last {
            Some(l) => Some(Held {
                edge: l.end(),
                last_duration: l.duration,
                covering: self
                    .covering(start, count)
                    .map_err(&err)?
                    .map(|c| HeldFragment {
                        start: c.start,
                        duration: c.duration,
                        ingest_ms: c.ingest_ms,
                    }),
            }),
            None => None,
        };
        let offered = Offered {
            start,
            duration,
            timescale,
        };
        let place = || format!("{}", self.dir.display());
        match judge(offered, held, clock) {
            Verdict::Append => {}
            Verdict::Duplicate => return Ok((Appended::Duplicate, None)),
            Verdict::TooFarAhead(why) => {
                return Err(IngestError::TooFarAhead(format!("{}: {why}", place())))
            }
            Verdict::Conflict(why) => {
                return Err(IngestError::Conflict(format!("{}: {why}", place())))
            }
            Verdict::Restart => {
                let edge = last.map_or(0, |l| l.end());
                if !retention.restart_on_reconnect {
                    return Err(IngestError::Conflict(format!(
                        "{}: a fragment at {start} goes back before the live edge ({edge}) \
                         over media held for a while: an encoder restart, which needs \
                         restart_on_encoder_reconnect",
                        place()
                    )));
                }
                timeline = self.restart(current, timing, edge, clock)?;
                start = timing
                    .start
                    .saturating_add(timeline.offset_ticks(timescale));
                if start < edge {
                    return Err(IngestError::Conflict(format!(
                        "{}: the restarted timeline {} puts this fragment at {start}, before \
                         the track's edge ({edge})",
                        place(),
                        timeline.number
                    )));
                }
                flags |= FLAG_TIMELINE_START;
            }
        }
        let continues = flags & FLAG_CONTINUES != 0
            && continues_segment(
                Offered { start, ..offered },
                timeline.number,
                flags & FLAG_TIMELINE_START != 0,
                last.map(|l| {
                    (
                        l.end(),
                        l.duration,
                        timeline_of(l.flags),
                        l.completes_segment(),
                    )
                }),
            );
        if !continues {
            flags &= !FLAG_CONTINUES;
        }
        let flags = with_timeline(flags, timeline.number);
        let mut file_no = 1;
        let mut file_offset = 0;
        let mut vpos = self.init_len;
        let mut seq = 0;
        if let Some(last) = last {
            // A chunk that starts a segment without a key frame (after a gap in a GOP) is no
            // segment a player can start: readers merge it into the one before (see
            // `segment::cut_at_times`), so it does not take a number of its own either.
            seq = if continues || flags & FLAG_SYNC == 0 {
                last.seq
            } else {
                last.seq + 1
            };
            vpos = last.vpos + u64::from(last.size);
            file_no = last.file_no;
            file_offset = last.file_offset + u64::from(last.size);
            let file_start = self.file_start(file_no, count).map_err(&err)?;
            // A data file begins with a segment, so pruning whole files never leaves the
            // tail of a segment without its head.
            if !continues
                && retention.segment_ticks > 0
                && start.saturating_sub(file_start.unwrap_or(start)) >= retention.segment_ticks
            {
                file_no += 1;
                file_offset = 0;
            }
        }
        rebase(bytes, vpos, timeline.offset_ticks(timescale))?;
        let path = self.dir.join(data_file_name(file_no));
        let data = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(storage(&path))?;
        // Bytes past the last record are a write that was never acknowledged: overwritten.
        data.set_len(file_offset).map_err(storage(&path))?;
        bytes
            .write_at(&data, file_offset, spool)
            .and_then(|()| data.sync_data())
            .map_err(|e| {
                let _ = data.set_len(file_offset);
                storage(&path)(e)
            })?;
        let record = Record {
            start,
            duration,
            vpos,
            file_no,
            file_offset,
            size,
            ingest_ms: now_ms,
            flags,
            seq,
        };
        self.write_record(&record, count).map_err(&err)?;
        let renewed = match retention.keep_ticks {
            Some(keep) => self
                .prune(record.end().saturating_sub(keep))
                .map_err(&err)?,
            None => None,
        };
        Ok((Appended::Stored(record), renewed))
    }

    /// Adds to the track's counters (under the track's lock, so concurrent encoders' counts
    /// add up). Counters are statistics, not data: they are not flushed.
    pub fn count(&mut self, add: TrackStats) -> Result<(), IngestError> {
        self.locked(|w| {
            let path = w.dir.join("stats");
            let mut stats = TrackStats::read(&w.dir);
            stats.fragments += add.fragments;
            stats.bytes += add.bytes;
            stats.duplicates += add.duplicates;
            stats.errors += add.errors;
            stats.last_ms = stats.last_ms.max(add.last_ms);
            std::fs::write(&path, stats.encode()).map_err(storage(&path))
        })
    }

    /// Marks the end of the stream (an `mfra`, or `lmsg`): the track is stopped.
    pub fn end_stream(&mut self, now_ms: i64) -> Result<(), IngestError> {
        self.locked(|w| {
            let err = storage(&w.dir);
            let Some(last) = w.last_record().map_err(&err)? else {
                return Ok(());
            };
            if last.is_end_marker() {
                return Ok(());
            }
            let count = w.records.metadata().map_err(&err)?.len() / RECORD_SIZE as u64;
            let marker = Record {
                start: last.end(),
                duration: 0,
                vpos: last.vpos + u64::from(last.size),
                file_no: last.file_no,
                file_offset: last.file_offset + u64::from(last.size),
                size: 0,
                ingest_ms: now_ms,
                // The marker stays on the track's timeline: an encoder that continues after
                // it is judged on that timeline.
                flags: with_timeline(FLAG_END, timeline_of(last.flags)),
                seq: last.seq,
            };
            w.write_record(&marker, count).map_err(&err)
        })
    }

    fn write_record(&self, record: &Record, count: u64) -> io::Result<()> {
        let at = count * RECORD_SIZE as u64;
        self.records
            .write_all_at(&record.encode(), at)
            .and_then(|()| self.records.sync_data())
            .inspect_err(|_| {
                let _ = self.records.set_len(at);
            })
    }

    /// Start time of the first record in data file `file_no` (records are searched from the
    /// end: the current file is the last one).
    fn file_start(&self, file_no: u32, count: u64) -> io::Result<Option<u64>> {
        let mut first = None;
        let mut at = count;
        while at > 0 {
            at -= 1;
            let mut b = [0u8; RECORD_SIZE];
            self.records
                .read_exact_at(&mut b, at * RECORD_SIZE as u64)?;
            match Record::decode(&b) {
                Some(r) if r.file_no == file_no && !r.is_end_marker() => first = Some(r.start),
                Some(r) if r.file_no < file_no => break,
                _ => {}
            }
        }
        Ok(first)
    }

    /// Removes the data files whose every fragment ends before `horizon`, and their records
    /// (the records file is rewritten and renamed over; readers holding the old one keep
    /// reading it until they look again).
    fn prune(&self, horizon: u64) -> io::Result<Option<File>> {
        let (records, _) = read_records(&self.dir.join("records"))?;
        let last_file = records.last().map_or(0, |r| r.file_no);
        let mut doomed_files: Vec<u32> = Vec::new();
        for r in &records {
            if r.file_no >= last_file {
                break;
            }
            if doomed_files.last() != Some(&r.file_no) {
                doomed_files.push(r.file_no);
            }
        }
        // A file is removed only when its last fragment ends before the horizon.
        doomed_files.retain(|&f| {
            records
                .iter()
                .filter(|r| r.file_no == f)
                .all(|r| r.end() <= horizon)
        });
        if doomed_files.is_empty() {
            return Ok(None);
        }
        let kept: Vec<u8> = records
            .iter()
            .filter(|r| !doomed_files.contains(&r.file_no))
            .flat_map(|r| r.encode())
            .collect();
        let path = self.dir.join("records");
        write_atomically(&path, &kept)?;
        let renewed = OpenOptions::new().read(true).write(true).open(&path)?;
        for f in doomed_files {
            let _ = std::fs::remove_file(self.dir.join(data_file_name(f)));
        }
        Ok(Some(renewed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("origin-archive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn t(start: u64, duration: u64, flags: u32) -> Timing {
        Timing {
            start,
            duration,
            flags,
            timescale: 1,
        }
    }

    /// The clock of a channel with no anchor yet.
    fn at(now_ms: i64) -> Clock {
        Clock {
            now_ms,
            anchor_ms: None,
        }
    }

    fn nothing(_: &mut RecordBytes, _: u64, _: u64) -> Result<(), IngestError> {
        Ok(())
    }

    /// A record of one fragment whose `moof` is `bytes` (the archive does not look inside).
    fn rec(bytes: Vec<u8>) -> RecordBytes {
        RecordBytes {
            fragments: vec![crate::live::record_bytes::FragmentBytes {
                events: Vec::new(),
                moof: bytes,
                mdat_header: Vec::new(),
                payload: crate::live::record_bytes::Payload::Memory(Vec::new()),
            }],
        }
    }

    const KEEP_ALL: Retention = Retention {
        segment_ticks: 10,
        keep_ticks: None,
        restart_on_reconnect: false,
    };

    #[test]
    fn records_round_trip_and_torn_tails_are_dropped() {
        let r = Record {
            start: 1,
            duration: 2,
            vpos: 3,
            file_no: 4,
            file_offset: 5,
            size: 6,
            ingest_ms: -7,
            flags: FLAG_SYNC,
            seq: 9,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        let mut bad = r.encode();
        bad[3] ^= 1;
        assert_eq!(Record::decode(&bad), None);
    }

    #[test]
    fn appends_rotates_dedups_and_prunes() {
        let d = temp("append");
        let dir = d.join("video=1000");
        let mut w = TrackWriter::open(&dir, b"INIT", "kind=video\n").unwrap();
        let mut seen = Vec::new();
        for k in 0..6u64 {
            let mut bytes = rec(vec![k as u8; 10]);
            let a = w
                .append(
                    t(k * 4, 4, FLAG_SYNC),
                    &mut bytes,
                    None,
                    |b, vpos, _| {
                        b.fragments[0].moof[0] = vpos as u8;
                        Ok(())
                    },
                    KEEP_ALL,
                    at(0),
                )
                .unwrap();
            let Appended::Stored(record) = a else {
                panic!()
            };
            seen.push(record);
        }
        assert_eq!(seen[0].vpos, 4);
        assert_eq!(seen[1].vpos, 14);
        // 10-tick files: fragments at 0, 4, 8 in file 1; 12, 16, 20 in file 2.
        assert_eq!(
            seen.iter().map(|r| r.file_no).collect::<Vec<_>>(),
            [1, 1, 1, 2, 2, 2]
        );
        assert_eq!(seen[4].file_offset, 10);
        // The rebase saw the record's place.
        let data = std::fs::read(dir.join(data_file_name(2))).unwrap();
        assert_eq!(data[0], seen[3].vpos as u8);
        // Same start again: a duplicate, nothing written.
        let mut again = rec(vec![9u8; 10]);
        assert_eq!(
            w.append(t(8, 4, 0), &mut again, None, nothing, KEEP_ALL, at(0))
                .unwrap(),
            Appended::Duplicate
        );
        let (records, _) = read_records(&dir.join("records")).unwrap();
        assert_eq!(records, seen);
        // Stopped: earlier timestamps are a conflict.
        w.end_stream(5).unwrap();
        let err = w
            .append(t(5, 3, 0), &mut again, None, nothing, KEEP_ALL, at(0))
            .unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 409);
        // Pruning removes whole files only.
        let keep = Retention {
            keep_ticks: Some(9),
            ..KEEP_ALL
        };
        let mut more = rec(vec![1u8; 10]);
        w.append(t(24, 4, FLAG_SYNC), &mut more, None, nothing, keep, at(0))
            .unwrap();
        let (records, _) = read_records(&dir.join("records")).unwrap();
        assert_eq!(records.first().unwrap().file_no, 2);
        assert!(!dir.join(data_file_name(1)).exists());
        assert_eq!(records.last().unwrap().seq, 6);
        // A segment start without a key frame (after a gap inside a GOP) takes no number.
        let mut torn = rec(vec![2u8; 10]);
        w.append(t(30, 4, 0), &mut torn, None, nothing, keep, at(0))
            .unwrap();
        let (records, _) = read_records(&dir.join("records")).unwrap();
        assert!(records.last().unwrap().starts_segment());
        assert_eq!(records.last().unwrap().seq, 6);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_record_is_cut_off_by_the_next_writer() {
        let d = temp("torn");
        let dir = d.join("a=1");
        let mut w = TrackWriter::open(&dir, b"I", "").unwrap();
        let mut b = rec(vec![0u8; 4]);
        w.append(t(0, 2, 0), &mut b, None, nothing, KEEP_ALL, at(0))
            .unwrap();
        OpenOptions::new()
            .append(true)
            .open(dir.join("records"))
            .unwrap()
            .write_all(&[7; 20])
            .unwrap();
        let (records, _) = read_records(&dir.join("records")).unwrap();
        assert_eq!(records.len(), 1);
        w.append(t(2, 2, 0), &mut b, None, nothing, KEEP_ALL, at(0))
            .unwrap();
        let (records, (_, size)) = read_records(&dir.join("records")).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(size, 2 * RECORD_SIZE as u64);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_track_that_joins_after_a_restart_goes_on_the_channel_s_timeline() {
        let d = temp("join");
        let restart = Retention {
            restart_on_reconnect: true,
            ..KEEP_ALL
        };
        let mut video = TrackWriter::open(&d.join("v=1"), b"I", "").unwrap();
        let mut b = rec(vec![0u8; 4]);
        for k in 0..3 {
            video
                .append(
                    t(k * 2, 2, 0),
                    &mut b,
                    None,
                    nothing,
                    restart,
                    at(k as i64 * 2000),
                )
                .unwrap();
        }
        // A minute later the encoder restarts at 0: timeline 1, after what is held.
        let Appended::Stored(moved) = video
            .append(t(0, 2, 0), &mut b, None, nothing, restart, at(60_000))
            .unwrap()
        else {
            panic!("not stored")
        };
        assert_eq!(super::timeline_of(moved.flags), 1);
        assert!(moved.start >= 6);
        // A track seen for the first time now runs on the restarted encoder's clock too.
        let mut audio = TrackWriter::open(&d.join("a=1"), b"I", "").unwrap();
        let Appended::Stored(joined) = audio
            .append(t(0, 2, 0), &mut b, None, nothing, restart, at(61_000))
            .unwrap()
        else {
            panic!("not stored")
        };
        assert_eq!(joined.start, moved.start);
        assert_eq!(super::timeline_of(joined.flags), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
