//! The index store: media indexes kept on disk, one entry per source version, shared by
//! every worker and every nginx that names the same directory, and kept across restarts.
//!
//! An entry is found by a hash of its source's identity (device, inode, size, times of a
//! local file; URL, ETag or Last-Modified and size of a remote object), so a source replaced
//! in place gets a new entry and the old one ages out. Entries are written to a temporary
//! file and renamed into place, so a reader sees a whole entry or none, whatever happens to
//! the writer (a worker killed mid-write leaves only a temporary file, removed later). A
//! large entry is mapped read-only and its tables are used in place: every worker maps the
//! same pages of the page cache, and nothing is parsed. A small one is read into memory (one
//! read costs less than a mapping). Every entry is checked whole when it is read
//! ([`super::entry::read`]); one that does not pass is counted, logged and replaced by the
//! index built again from the source.
//!
//! The store holds about `max_bytes`: each worker adds up what it writes, and after writing
//! a sixteenth of the limit (and after its first write) sweeps the directory in a thread of
//! its own: it removes temporary files left by writers that died, and the least recently
//! used entries until the store is under nine tenths of its limit. An entry's modification
//! time is its last use (refreshed at most hourly when read), so the sweep needs no index of
//! its own and two nginx sharing the directory sweep the same way.
//!
//! A write that fails (a full disk, a read-only directory) is logged once and writes pause
//! for a minute: the worker keeps the index in memory, as it does without a store.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::entry::{self, HEADER_LEN, MAX_ENTRY_BYTES};
use super::table::EntryBytes;
use super::MediaIndex;
use crate::source::SourceIdentity;

/// Entries at least this large are mapped; smaller ones are read.
const MAP_AT_LEAST: u64 = 64 << 10;
/// How stale an entry's use time may be before a read refreshes it.
const TOUCH_AFTER: Duration = Duration::from_secs(3600);
/// How long writes stop after one failed.
const WRITE_PAUSE: Duration = Duration::from_secs(60);
/// Temporary files older than this belong to a writer that died.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// The name every temporary file starts with.
const TEMP_PREFIX: &str = ".tmp-";
/// The first bytes of a remote object's record.
const REMOTE_MAGIC: [u8; 8] = *b"NGXOURL\0";

/// What a store did, for the status endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Indexes read from an entry.
    pub hits: u64,
    /// Lookups that found no entry.
    pub misses: u64,
    /// Entries found and refused (corrupt, truncated, of another format or source).
    pub refused: u64,
    /// Entries written.
    pub writes: u64,
    /// Writes that failed.
    pub write_failures: u64,
    /// Entries this worker's sweeps removed to stay within the limit.
    pub evictions: u64,
}

impl StoreStats {
    /// The counters' names, in [`StoreStats::values`] order (the status endpoint's labels).
    pub const LABELS: [&'static str; 6] = [
        "hits",
        "misses",
        "refused",
        "writes",
        "write_failures",
        "evictions",
    ];

    pub fn values(&self) -> [u64; 6] {
        [
            self.hits,
            self.misses,
            self.refused,
            self.writes,
            self.write_failures,
            self.evictions,
        ]
    }

    pub fn from_values(v: [u64; 6]) -> StoreStats {
        let [hits, misses, refused, writes, write_failures, evictions] = v;
        StoreStats {
            hits,
            misses,
            refused,
            writes,
            write_failures,
            evictions,
        }
    }
}

/// One worker's handle on an index store directory.
pub struct IndexStore {
    dir: PathBuf,
    /// What writes entries: the worker's own calls and its writer thread share it.
    writer: Arc<Mutex<Writer>>,
    /// The writer thread's queue, once started.
    queue: Option<mpsc::SyncSender<Job>>,
    /// Entries queued or being written.
    pending: Arc<AtomicUsize>,
    /// Identities whose entries the writer thread has written since the worker last looked.
    written: Arc<Mutex<Vec<SourceIdentity>>>,
    outcomes: Arc<Outcomes>,
    hits: u64,
    misses: u64,
    refused: u64,
}

/// What a worker and its writer thread both see, without the writer's lock (which a write
/// holds for its whole duration: the worker's thread never waits for it).
#[derive(Default)]
struct Outcomes {
    writes: AtomicU64,
    write_failures: AtomicU64,
    evicted: AtomicU64,
    /// A failure to log, by the worker's own thread (nginx's log is not for other threads).
    unlogged: Mutex<Option<String>>,
    /// Set with `unlogged`, so the worker looks at it only when there is something.
    has_unlogged: AtomicBool,
}

/// What writes entries and sweeps: shared by a worker and its writer thread.
struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    written_since_sweep: u64,
    swept: bool,
    sweeping: Arc<AtomicBool>,
    sweep_again: Arc<AtomicBool>,
    outcomes: Arc<Outcomes>,
    writes_paused_until: Option<Instant>,
    failure_logged: bool,
    temp_count: u64,
    /// Tests only: a pause halfway through writing an entry (to kill a writer mid-write).
    write_stall: Option<Duration>,
}

/// What the writer thread is given to write.
enum Job {
    /// The entry of an index.
    Index(Arc<MediaIndex>),
    /// A small file (a remote object's record).
    Put(PathBuf, Vec<u8>),
}

/// Entries waiting for the writer thread at most; past it a built index is not stored (the
/// next worker or nginx that needs it builds and stores it).
const QUEUE: usize = 64;

impl IndexStore {
    /// A store in `dir` (made on first write) holding about `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> IndexStore {
        let dir = dir.into();
        let outcomes = Arc::new(Outcomes::default());
        IndexStore {
            writer: Arc::new(Mutex::new(Writer {
                dir: dir.clone(),
                max_bytes,
                written_since_sweep: 0,
                swept: false,
                sweeping: Arc::new(AtomicBool::new(false)),
                sweep_again: Arc::new(AtomicBool::new(false)),
                outcomes: outcomes.clone(),
                writes_paused_until: None,
                failure_logged: false,
                temp_count: 0,
                write_stall: None,
            })),
            outcomes,
            dir,
            queue: None,
            pending: Arc::new(AtomicUsize::new(0)),
            written: Arc::new(Mutex::new(Vec::new())),
            hits: 0,
            misses: 0,
            refused: 0,
        }
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every entry write pause for `stall` halfway (the fault tests kill a worker then).
    pub fn stall_writes(&mut self, stall: Duration) {
        self.writer().write_stall = Some(stall);
    }

    pub fn stats(&self) -> StoreStats {
        let o = &self.outcomes;
        StoreStats {
            hits: self.hits,
            misses: self.misses,
            refused: self.refused,
            writes: o.writes.load(Ordering::Relaxed),
            write_failures: o.write_failures.load(Ordering::Relaxed),
            evictions: o.evicted.load(Ordering::Relaxed),
        }
    }

    /// The stored index of `identity`, if the store holds a sound one.
    pub fn load(&mut self, identity: &SourceIdentity) -> Option<MediaIndex> {
        let key = entry::identity_key(identity)?;
        let path = path_of(&self.dir, &key, "idx");
        let file = match open_entry(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.misses += 1;
                return None;
            }
            Err(e) => return self.refuse(&path, &e.to_string()),
        };
        match read_entry(&file, identity, &key) {
            Ok(index) => {
                self.hits += 1;
                touch(&file);
                Some(index)
            }
            Err(e) => self.refuse(&path, &e.to_string()),
        }
    }

    fn refuse(&mut self, path: &Path, why: &str) -> Option<MediaIndex> {
        self.refused += 1;
        tracing::warn!(
            "index store: refused {} ({why}); indexing the source again",
            path.display()
        );
        // Out of the way, so the index built again is written (a write finds an entry with
        // its own header already there and leaves it). A good entry another worker put there
        // meanwhile is lost too, and written again by the next miss: harmless.
        let _ = fs::remove_file(path);
        None
    }

    /// Keeps `index` in the store now (nothing for sources the store does not keep); true
    /// once its entry is written.
    pub fn save(&mut self, index: &MediaIndex) -> bool {
        let saved = self.writer().save(index);
        self.log_failures();
        saved.is_some()
    }

    /// Hands `index` to this worker's writer thread (started on first use, taking no signals),
    /// so the request that built it does not wait for the write. Once written, the worker
    /// swaps its copy for the stored one ([`IndexStore::take_written`]).
    pub fn save_later(&mut self, index: Arc<MediaIndex>) {
        if entry::identity_key(&index.identity).is_some() {
            self.queue_job(Job::Index(index));
        }
    }

    /// Hands `job` to the writer thread (started on first use, taking no signals); does it
    /// here when the thread cannot start. A full queue drops it: what is not stored now is
    /// stored by the next worker or nginx that needs it.
    fn queue_job(&mut self, job: Job) {
        if self.queue.is_none() {
            let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
            let (writer, pending, written) = (
                self.writer.clone(),
                self.pending.clone(),
                self.written.clone(),
            );
            let started = spawn_without_signals("index-store-write", move || {
                for job in rx {
                    let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
                    match job {
                        Job::Index(index) => {
                            let saved = writer.save(&index);
                            drop(writer);
                            // Only a mapped entry is worth reading back: a small one would
                            // be read into this worker's heap again, for nothing.
                            if saved.is_some_and(|len| len >= MAP_AT_LEAST) {
                                written
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(index.identity.clone());
                            }
                        }
                        Job::Put(path, bytes) => {
                            writer.put(&path, &bytes);
                        }
                    }
                    pending.fetch_sub(1, Ordering::AcqRel);
                }
            });
            if !started {
                match job {
                    Job::Index(index) => {
                        self.save(&index);
                    }
                    Job::Put(path, bytes) => {
                        self.writer().put(&path, &bytes);
                    }
                }
                return;
            }
            self.queue = Some(tx);
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        let sent = self.queue.as_ref().map(|q| q.try_send(job));
        if !matches!(sent, Some(Ok(()))) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The identities whose entries the writer thread wrote since the last call; also logs
    /// what it failed at (the worker's thread is the one that may log).
    pub fn take_written(&mut self) -> Vec<SourceIdentity> {
        self.log_failures();
        if self.queue.is_none() {
            return Vec::new();
        }
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits up to `limit` for the writer thread to finish what it was given (a worker that
    /// exits would otherwise cut a write short: harmless, but the entry would be lost).
    pub fn flush(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.pending.load(Ordering::Acquire) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.log_failures();
    }

    fn log_failures(&mut self) {
        if !self.outcomes.has_unlogged.swap(false, Ordering::AcqRel) {
            return;
        }
        let message = self
            .outcomes
            .unlogged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(message) = message {
            tracing::error!("{message}");
        }
    }

    /// The entry of `identity` just written by this worker, mapped (not counted as a hit).
    pub fn map_stored(&self, identity: &SourceIdentity) -> Option<MediaIndex> {
        let key = entry::identity_key(identity)?;
        let file = open_entry(&path_of(&self.dir, &key, "idx")).ok()?;
        read_entry(&file, identity, &key).ok()
    }

    /// What this store last learned of the remote object at `url`: its identity and
    /// modification time (so that a worker that never fetched it revalidates it with one
    /// byte instead of reading its head again).
    pub fn remote_object(&mut self, url: &str) -> Option<(SourceIdentity, i64)> {
        let path = path_of(&self.dir, url.as_bytes(), "url");
        let file = open_entry(&path).ok()?;
        let mut bytes = Vec::new();
        file.take(64 << 10).read_to_end(&mut bytes).ok()?;
        let record = read_remote_record(&bytes, url);
        if record.is_none() {
            self.refuse(&path, "not a remote object record");
        }
        record
    }

    /// Records what a fetch told of the remote object `identity` (a [`SourceIdentity::Remote`]
    /// with a version; others are not kept). A small file, written at once.
    pub fn remember_remote_object(&mut self, identity: &SourceIdentity, modified: i64) {
        let SourceIdentity::Remote { url, version, size } = identity else {
            return;
        };
        if version.is_empty() {
            return;
        }
        let mut body = Vec::new();
        for field in [url.as_bytes(), version.as_bytes()] {
            body.extend_from_slice(&(field.len() as u32).to_le_bytes());
            body.extend_from_slice(field);
        }
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(&modified.to_le_bytes());
        let mut record = REMOTE_MAGIC.to_vec();
        record.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        record.extend_from_slice(&body);
        let path = path_of(&self.dir, url.as_bytes(), "url");
        self.queue_job(Job::Put(path, record));
    }
}

/// Where the entry of the identity whose key is `key` lives: 256 folders by the hash's first
/// byte, so no folder grows past a few hundred entries per 100,000.
fn path_of(dir: &Path, key: &[u8], extension: &str) -> PathBuf {
    let hex = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key));
    dir.join(&hex[..2])
        .join(format!("{}.{extension}", &hex[2..]))
}

/// The checked index of an opened entry.
fn read_entry(file: &File, identity: &SourceIdentity, key: &[u8]) -> io::Result<MediaIndex> {
    let bytes = read_bytes(file)?;
    entry::read(&Arc::new(bytes), identity, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl Writer {
    /// Writes the entry of `index` (nothing for sources the store does not keep); its size
    /// once written.
    fn save(&mut self, index: &MediaIndex) -> Option<u64> {
        let key = entry::identity_key(&index.identity)?;
        let bytes = entry::write(index, &key);
        let path = path_of(&self.dir, &key, "idx");
        // Another worker (or nginx) wrote the same entry already: keep that file, which the
        // workers that read it map (a new one would give them a copy each).
        if same_header(&path, &bytes[..HEADER_LEN]) {
            return Some(bytes.len() as u64);
        }
        self.put(&path, &bytes).then_some(bytes.len() as u64)
    }

    /// Writes `bytes` as the file `path`, atomically; true once written.
    fn put(&mut self, path: &Path, bytes: &[u8]) -> bool {
        if let Some(until) = self.writes_paused_until {
            if Instant::now() < until {
                return false;
            }
            self.writes_paused_until = None;
        }
        self.temp_count += 1;
        let temp_name = format!(
            "{TEMP_PREFIX}{}-{}-{}",
            std::process::id(),
            self.temp_count,
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        match write_atomically(path, &temp_name, bytes, self.write_stall) {
            Ok(()) => {
                self.outcomes.writes.fetch_add(1, Ordering::Relaxed);
                self.written_since_sweep += bytes.len() as u64;
                self.maybe_sweep();
                true
            }
            Err(e) => {
                self.outcomes.write_failures.fetch_add(1, Ordering::Relaxed);
                self.writes_paused_until = Some(Instant::now() + WRITE_PAUSE);
                if !self.failure_logged {
                    self.failure_logged = true;
                    let message = format!(
                        "index store: cannot write {} ({e}); indexes stay in memory only, \
                         writes pause for {} s at each failure (logged once)",
                        path.display(),
                        WRITE_PAUSE.as_secs()
                    );
                    *self
                        .outcomes
                        .unlogged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(message);
                    self.outcomes.has_unlogged.store(true, Ordering::Release);
                }
                false
            }
        }
    }

    /// Starts a sweep after this worker's first write and after each sixteenth of the limit
    /// it writes, unless one is running.
    fn maybe_sweep(&mut self) {
        if self.swept && self.written_since_sweep < self.max_bytes / 16 {
            return;
        }
        self.swept = true;
        self.written_since_sweep = 0;
        if self.sweeping.swap(true, Ordering::SeqCst) {
            // The running sweep may have listed the folder before this write: it goes again.
            self.sweep_again.store(true, Ordering::SeqCst);
            return;
        }
        let (dir, max, running, again, outcomes) = (
            self.dir.clone(),
            self.max_bytes,
            self.sweeping.clone(),
            self.sweep_again.clone(),
            self.outcomes.clone(),
        );
        let started = spawn_without_signals("index-store-sweep", move || loop {
            again.store(false, Ordering::SeqCst);
            let removed = sweep(&dir, max, SystemTime::now());
            outcomes.evicted.fetch_add(removed, Ordering::Relaxed);
            running.store(false, Ordering::SeqCst);
            // A write that found this sweep running asked for another pass (unless a new
            // sweep has started since).
            if !again.load(Ordering::SeqCst) || running.swap(true, Ordering::SeqCst) {
                break;
            }
        });
        if !started {
            self.sweeping.store(false, Ordering::Release);
        }
    }
}

/// Whether the file at `path` starts with `header` (an entry's header holds its length and
/// checksum: the same header is the same entry, checked whole by whoever reads it).
fn same_header(path: &Path, header: &[u8]) -> bool {
    let Ok(mut file) = open_entry(path) else {
        return false;
    };
    let mut found = vec![0u8; header.len()];
    file.read_exact(&mut found).is_ok() && found == header
}

/// Opens a store file for reading, never through a symbolic link.
fn open_entry(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The bytes of an entry: mapped when large, read when small.
fn read_bytes(file: &File) -> io::Result<EntryBytes> {
    let meta = file.metadata()?;
    let len = meta.len();
    if !meta.is_file() || len < HEADER_LEN as u64 || len > MAX_ENTRY_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an index entry: {len} bytes"),
        ));
    }
    if len >= MAP_AT_LEAST {
        if let Ok(map) = crate::source::mmap::Mapping::new(file) {
            return Ok(EntryBytes::Mapped(map));
        }
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    Ok(EntryBytes::copied(&bytes))
}

/// Refreshes the use time of an entry last used over an hour ago (the sweep keeps the most
/// recently used). Failing is harmless: the entry may be evicted a little early.
fn touch(file: &File) {
    let Ok(modified) = file.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let now = SystemTime::now();
    if now
        .duration_since(modified)
        .is_ok_and(|age| age > TOUCH_AFTER)
    {
        let _ = file.set_modified(now);
    }
}

/// Reads a remote object's record, checked: magic, checksum and URL.
fn read_remote_record(bytes: &[u8], url: &str) -> Option<(SourceIdentity, i64)> {
    let body = bytes.strip_prefix(&REMOTE_MAGIC)?;
    let (sum, body) = body.split_at_checked(8)?;
    if u64::from_le_bytes(sum.try_into().ok()?) != xxhash_rust::xxh3::xxh3_64(body) {
        return None;
    }
    let mut at = 0usize;
    let mut field = || -> Option<&[u8]> {
        let len = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
        let value = body.get(at + 4..at.checked_add(4 + len)?)?;
        at += 4 + len;
        Some(value)
    };
    let stored_url = std::str::from_utf8(field()?).ok()?.to_string();
    let version = std::str::from_utf8(field()?).ok()?.to_string();
    let tail = body.get(at..at + 16)?;
    let size = u64::from_le_bytes(tail[..8].try_into().ok()?);
    let modified = i64::from_le_bytes(tail[8..].try_into().ok()?);
    if stored_url != url || version.is_empty() || at + 16 != body.len() {
        return None;
    }
    Some((
        SourceIdentity::Remote {
            url: stored_url,
            version,
            size,
        },
        modified,
    ))
}

/// Writes `bytes` to a new temporary file beside `path` and renames it over `path`.
fn write_atomically(
    path: &Path,
    temp_name: &str,
    bytes: &[u8],
    stall: Option<Duration>,
) -> io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)?;
    let temp = folder.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&temp)?;
        match stall {
            Some(pause) => {
                let half = bytes.len() / 2;
                file.write_all(&bytes[..half])?;
                std::thread::sleep(pause);
                file.write_all(&bytes[half..])?;
            }
            None => file.write_all(bytes)?,
        }
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Removes temporary files older than [`STALE_TEMP`] and, while the store holds more than
/// `max_bytes`, the least recently used entries until it holds nine tenths of it. Returns how
/// many entries went. Files it cannot read or remove are left (another sweep may have taken
/// them).
pub fn sweep(dir: &Path, max_bytes: u64, now: SystemTime) -> u64 {
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let mut total = 0u64;
    let Ok(folders) = fs::read_dir(dir) else {
        return 0;
    };
    for folder in folders.flatten() {
        let name = folder.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(files) = fs::read_dir(folder.path()) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(meta) = file.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let file_name = file.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.starts_with(TEMP_PREFIX) {
                if now
                    .duration_since(modified)
                    .is_ok_and(|age| age > STALE_TEMP)
                {
                    let _ = fs::remove_file(file.path());
                }
                continue;
            }
            if file_name.ends_with(".idx") || file_name.ends_with(".url") {
                total += meta.len();
                entries.push((modified, meta.len(), file.path()));
            }
        }
    }
    if total <= max_bytes {
        return 0;
    }
    entries.sort_unstable();
    let target = max_bytes / 10 * 9;
    let mut removed = 0;
    for (_, len, path) in entries {
        if total <= target {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            total -= len;
            removed += 1;
        }
    }
    removed
}

/// Runs `work` on a thread of its own that takes no signals: nginx's handlers must run on
/// the worker's own thread, whose event loop they wake. Returns whether it started.
#[allow(unsafe_code)]
fn spawn_without_signals(name: &str, work: impl FnOnce() + Send + 'static) -> bool {
    // SAFETY: plain libc calls on local, initialised signal sets; the thread's mask is
    // restored before returning, whatever the spawn did. A new thread inherits the mask in
    // force when it is created, so it starts with every signal blocked.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous) != 0 {
            return false;
        }
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(work)
            .is_ok();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build_index;
    use crate::source::{MmapSource, Source};

    fn fixture() -> (PathBuf, MediaIndex) {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smooth.ismv");
        let source = MmapSource::open(&p).unwrap();
        assert!(matches!(source.identity(), SourceIdentity::File { .. }));
        (p.clone(), build_index(&source).unwrap())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("origin-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for folder in fs::read_dir(dir).into_iter().flatten().flatten() {
            for f in fs::read_dir(folder.path()).into_iter().flatten().flatten() {
                out.push(f.path());
            }
        }
        out
    }

    #[test]
    fn an_index_saved_by_one_worker_is_loaded_by_another() {
        let dir = temp_dir("share");
        let (_, index) = fixture();
        let mut writer = IndexStore::new(&dir, 1 << 30);
        assert!(writer.load(&index.identity).is_none());
        assert!(writer.save(&index));
        let mapped = writer.map_stored(&index.identity).unwrap();
        assert_eq!(mapped, index);
        assert!(mapped.stored_bytes() > 0 && mapped.heap_size() < index.heap_size());
        let mut reader = IndexStore::new(&dir, 1 << 30);
        assert_eq!(reader.load(&index.identity).as_ref(), Some(&index));
        let stats = (writer.stats(), reader.stats());
        assert_eq!((stats.0.misses, stats.0.writes, stats.1.hits), (1, 1, 1));
        // No temporary file stays behind.
        let files = files_in(&dir);
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].extension().is_some_and(|e| e == "idx"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_thread_writes_and_the_worker_maps_what_it_wrote() {
        let dir = temp_dir("later");
        let (_, index) = fixture();
        let mut store = IndexStore::new(&dir, 1 << 30);
        store.save_later(Arc::new(index.clone()));
        store.flush(Duration::from_secs(10));
        // A small entry is read, not mapped: the worker keeps the copy it has.
        assert!(store.take_written().is_empty());
        let mapped = store.map_stored(&index.identity).unwrap();
        assert_eq!(mapped, index);
        assert_eq!((store.stats().writes, store.stats().hits), (1, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_or_planted_entry_is_refused_and_replaced() {
        let dir = temp_dir("damaged");
        let (_, index) = fixture();
        let mut store = IndexStore::new(&dir, 1 << 30);
        store.save(&index);
        let path = files_in(&dir).remove(0);
        let good = fs::read(&path).unwrap();
        // Truncated, flipped, and another source's entry in its place.
        let mut other = index.clone();
        if let SourceIdentity::File { ino, .. } = &mut other.identity {
            *ino += 1;
        }
        let key = entry::identity_key(&other.identity).unwrap();
        for bad in [
            good[..good.len() / 2].to_vec(),
            good.iter().map(|b| b ^ 0x55).collect(),
            entry::write(&other, &key),
            b"hello".to_vec(),
        ] {
            fs::write(&path, &bad).unwrap();
            assert!(store.load(&index.identity).is_none());
            // Refused and taken out of the way.
            assert!(!path.exists());
        }
        // A symbolic link is not followed.
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        assert!(store.load(&index.identity).is_none());
        assert!(fs::symlink_metadata(&path).is_err());
        assert!(fs::metadata("/etc/passwd").is_ok());
        assert_eq!(store.stats().refused, 5);
        // Writing it again puts the entry back.
        store.save(&index);
        assert_eq!(store.load(&index.identity).as_ref(), Some(&index));
        // A second write of the same entry leaves the file there (the one others map).
        use std::os::unix::fs::MetadataExt;
        let inode = fs::metadata(&path).unwrap().ino();
        assert!(store.save(&index));
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_that_cannot_be_written_keeps_serving_from_memory() {
        let dir = temp_dir("unwritable");
        fs::write(&dir, b"a file where the folder should be").unwrap();
        let (_, index) = fixture();
        let mut store = IndexStore::new(&dir, 1 << 30);
        store.save(&index);
        store.save(&index);
        // The second write waited out the pause: one failure, counted once.
        assert_eq!((store.stats().writes, store.stats().write_failures), (0, 1));
        assert!(store.load(&index.identity).is_none());
        fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn the_sweep_removes_the_least_recently_used_and_dead_writers_files() {
        let dir = temp_dir("sweep");
        let folder = dir.join("ab");
        fs::create_dir_all(&folder).unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        for (k, age) in [5u64, 1, 3, 2, 4].iter().enumerate() {
            let p = folder.join(format!("{k}.idx"));
            fs::write(&p, vec![0u8; 1000]).unwrap();
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(now - hour * *age as u32)
                .unwrap();
        }
        let dead = folder.join(format!("{TEMP_PREFIX}1-1-1"));
        let live = folder.join(format!("{TEMP_PREFIX}2-2-2"));
        fs::write(&dead, b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        File::options()
            .write(true)
            .open(&dead)
            .unwrap()
            .set_modified(now - hour)
            .unwrap();
        // 5,000 bytes against a limit of 3,000: down to 2,700, the oldest first.
        assert_eq!(sweep(&dir, 3000, now), 3);
        let mut left: Vec<String> = files_in(&dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("{TEMP_PREFIX}2-2-2"),
                "1.idx".into(),
                "3.idx".into()
            ]
        );
        assert_eq!(sweep(&dir, 3000, now), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_remote_object_is_remembered_by_url() {
        let dir = temp_dir("remote");
        let mut store = IndexStore::new(&dir, 1 << 30);
        let identity = SourceIdentity::Remote {
            url: "http://backend/a.mp4".into(),
            version: "\"v1\"".into(),
            size: 1234,
        };
        assert!(store.remote_object("http://backend/a.mp4").is_none());
        store.remember_remote_object(&identity, 99);
        store.flush(Duration::from_secs(10));
        let mut other = IndexStore::new(&dir, 1 << 30);
        assert_eq!(
            other.remote_object("http://backend/a.mp4"),
            Some((identity, 99))
        );
        assert!(other.remote_object("http://backend/b.mp4").is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
