//! The archive operations an ingest session queues ([`ArchiveOp`]), carried out on disk.
//!
//! This is the one place ingest does file I/O, and all of it blocks: reads of the channel's
//! server manifest, `flock`, writes to the session's spool file, appends (copies from the
//! spool file for large fragments) and `fdatasync`. A driver therefore runs an
//! [`ArchiveStore`] where blocking does not hurt: the nginx glue on a thread of nginx's thread
//! pool (the event loop goes on serving other requests meanwhile), tools and tests on their own
//! thread ([`DirectIngest`]). Each [`ArchiveStore::run`] returns once what it wrote is durable,
//! so a driver acknowledges a request only after the runs of everything the request brought.

use std::path::{Path, PathBuf};

use super::archive::{
    archive_dir, temporary_name, write_atomically, Appended, Locked, TrackStats, TrackWriter,
};
use super::channel::{anchor_for, anchor_path};
use super::ingest::{IngestError, MAX_HEADER_BOX};
use super::limits::{check_stream_name, check_track_dir_name, IngestPolicy};
use super::record_bytes::RecordBytes;
use super::session::{
    init_track, shift_record_offsets, track_change, AppendOp, Applied, ArchiveOp, ChannelOptions,
    IngestLimits, IngestSession, IngestSummary, OpenTrackOp, SessionStart,
};
use super::spool::Spool;
use super::timeline::{shift_decode_times, Clock};
use crate::ism::{ServerManifest, TrackEntry, MAX_MANIFEST_BYTES};

/// Largest stored init segment read back (an init is one `ftyp` and one `moov`).
const MAX_INIT_BYTES: usize = 2 * MAX_HEADER_BOX as usize;

fn storage(path: &Path) -> impl Fn(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Storage {
        path: path.display().to_string(),
        source,
    }
}

/// One ingest request's hold on its channel's archive: the paths, and the track files it has
/// open for writing.
pub struct ArchiveStore {
    isml: PathBuf,
    archive: PathBuf,
    /// What the location lets ingest do (creation, limits, file rules).
    policy: IngestPolicy,
    writers: Vec<(String, TrackWriter)>,
    /// Where large fragments' payloads wait (made with the first one).
    spool: Option<Spool>,
    /// The channel's anchor, once read (it never changes after its first fragment wrote it).
    anchor_ms: Option<i64>,
}

impl ArchiveStore {
    /// Opens the channel whose server manifest is `isml` for `Streams(<stream>)`: its options,
    /// and the init segment the stream left in the archive. A channel that does not exist is
    /// refused unless `create` allows it (it is then made when the stream brings an init
    /// segment: a refused request leaves no trace). The default limits and file rules apply.
    pub fn open(
        isml: &Path,
        stream: &str,
        create: bool,
    ) -> Result<(ArchiveStore, SessionStart), IngestError> {
        ArchiveStore::open_with(isml, stream, &IngestPolicy::creating(create))
    }

    /// [`ArchiveStore::open`] under a location's `policy`: its stream names, limits and file
    /// rules. Nothing is written here: what is refused leaves no trace.
    pub fn open_with(
        isml: &Path,
        stream: &str,
        policy: &IngestPolicy,
    ) -> Result<(ArchiveStore, SessionStart), IngestError> {
        check_stream_name(stream)?;
        let archive = archive_dir(isml);
        // The archive folder, when there, must be reached under the rules too.
        policy.files.check_folder(&archive)?;
        let manifest = match policy.files.read_file(isml, MAX_MANIFEST_BYTES) {
            Ok(bytes) => ServerManifest::parse(&bytes)
                .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display())))?,
            Err(e) if e.is_not_found() && policy.create => {
                policy.check_new_channel(isml)?;
                ServerManifest::default()
            }
            Err(e) if e.is_not_found() => {
                return Err(IngestError::UnknownChannel(isml.display().to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let options = ChannelOptions::of(&manifest)
            .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display())))?;
        let stored_init = policy
            .files
            .read_file(&stream_path(&archive, stream), MAX_INIT_BYTES)
            .ok();
        let archive_name = archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let held_tracks = held_tracks(&archive, stream);
        let store = ArchiveStore {
            isml: isml.to_path_buf(),
            archive,
            policy: policy.clone(),
            writers: Vec::new(),
            spool: None,
            anchor_ms: None,
        };
        let start = SessionStart {
            options,
            stored_init,
            archive_name,
            held_tracks,
        };
        Ok((store, start))
    }

    /// Runs `ops` in order and returns what they stored. The first that fails ends the run
    /// (what ran before it stands) and counts an error against the tracks open.
    pub fn run(&mut self, ops: Vec<ArchiveOp>) -> Result<Applied, IngestError> {
        let mut applied = Applied::default();
        if let Err(e) = self.check_new_tracks(&ops) {
            self.count_error();
            return Err(e);
        }
        for op in ops {
            match self.run_one(op) {
                Ok(done) => applied.add(done),
                Err(e) => {
                    self.count_error();
                    return Err(e);
                }
            }
        }
        Ok(applied)
    }

    fn run_one(&mut self, op: ArchiveOp) -> Result<Applied, IngestError> {
        match op {
            ArchiveOp::CreateChannel => self.create_channel().map(|()| Applied::default()),
            ArchiveOp::StoreStreamInit { stream, init } => {
                self.policy
                    .files
                    .check_folder(&self.archive.join("streams"))?;
                let path = stream_path(&self.archive, &stream);
                write_atomically(&path, &init).map_err(storage(&path))?;
                Ok(Applied::default())
            }
            ArchiveOp::OpenTrack(op) => self.open_track(*op).map(|()| Applied::default()),
            ArchiveOp::Spool { at, bytes } => {
                if self.spool.is_none() {
                    let spool = Spool::create(&self.archive).map_err(storage(&self.archive))?;
                    self.spool = Some(spool);
                }
                if let Some(spool) = &self.spool {
                    spool.write_at(&bytes, at).map_err(storage(&self.archive))?;
                }
                Ok(Applied::default())
            }
            ArchiveOp::ClearSpool => {
                if let Some(spool) = &self.spool {
                    spool.clear().map_err(storage(&self.archive))?;
                }
                Ok(Applied::default())
            }
            ArchiveOp::Append(op) => self.append(*op),
            ArchiveOp::EndStream { dir_name, now_ms } => {
                self.writer(&dir_name)?.end_stream(now_ms)?;
                Ok(Applied::default())
            }
            ArchiveOp::CountError => {
                self.count_error();
                Ok(Applied::default())
            }
        }
    }

    /// Refuses, before any of `ops` runs, the tracks they would add past the channel's limit:
    /// a refused push leaves nothing behind (no init, no folder). [`ArchiveStore::record_track`]
    /// checks again under the lock, for pushes racing in other workers.
    fn check_new_tracks(&self, ops: &[ArchiveOp]) -> Result<(), IngestError> {
        let mut new: Vec<&str> = Vec::new();
        let mut new_streams: Vec<&str> = Vec::new();
        for op in ops {
            match op {
                ArchiveOp::OpenTrack(t) => {
                    check_track_dir_name(&t.dir_name)?;
                    let open = self.writers.iter().any(|(d, _)| *d == t.dir_name);
                    if !open && !new.contains(&t.entry.src.as_str()) {
                        new.push(&t.entry.src);
                    }
                }
                ArchiveOp::StoreStreamInit { stream, .. }
                    if !new_streams.contains(&stream.as_str())
                        && !stream_path(&self.archive, stream).exists() =>
                {
                    new_streams.push(stream);
                }
                _ => {}
            }
        }
        if !new_streams.is_empty() {
            // Every stream name holds a track: an init sent alone (per-segment CMAF) under
            // ever new names counts against the same limit, before it is stored.
            let folder = self.archive.join("streams");
            let held = match std::fs::read_dir(&folder) {
                Ok(entries) => entries.filter_map(Result::ok).count(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(storage(&folder)(e)),
            };
            self.policy
                .check_stream_names(&self.isml, held, new_streams.len())?;
        }
        if new.is_empty() {
            return Ok(());
        }
        let manifest = match self.policy.files.read_file(&self.isml, MAX_MANIFEST_BYTES) {
            Ok(bytes) => ServerManifest::parse(&bytes)
                .map_err(|e| IngestError::Malformed(format!("{}: {e}", self.isml.display())))?,
            // Made by this run: no track held yet.
            Err(e) if e.is_not_found() => ServerManifest::default(),
            Err(e) => return Err(e.into()),
        };
        new.retain(|src| !manifest.tracks.iter().any(|t| t.src == *src));
        self.policy
            .check_tracks(&self.isml, manifest.tracks.len(), new.len())
    }

    /// The channel's server manifest (when missing and allowed) and archive directory.
    fn create_channel(&self) -> Result<(), IngestError> {
        if !self.policy.files.check_file(&self.isml)? {
            read_manifest(&self.isml, &self.policy)?;
        }
        for dir in [self.archive.clone(), self.archive.join("streams")] {
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(storage(&dir)(e)),
            }
        }
        Ok(())
    }

    fn open_track(&mut self, op: OpenTrackOp) -> Result<(), IngestError> {
        if self.writers.iter().any(|(d, _)| *d == op.dir_name) {
            return Ok(());
        }
        let dir = self.archive.join(&op.dir_name);
        // The folder and the files the writer opens by name in it, under the file rules.
        if self.policy.files.check_folder(&dir)? {
            for file in ["init", "info", "records"] {
                self.policy.files.check_file(&dir.join(file))?;
            }
        }
        self.check_held_init(&dir, &op)?;
        let writer = TrackWriter::open(&dir, &op.init, &op.info)?;
        if !op.encoder.is_empty() {
            // Statistics, not data: a failure to note the address does not refuse media.
            let _ = write_atomically(&writer.dir().join("encoder"), op.encoder.as_bytes());
        }
        self.record_track(op.entry)?;
        self.writers.push((op.dir_name, writer));
        Ok(())
    }

    /// A track directory another stream made keeps its init segment: media whose init decodes
    /// differently is refused rather than appended under it.
    fn check_held_init(&self, dir: &Path, op: &OpenTrackOp) -> Result<(), IngestError> {
        let held = match std::fs::read(dir.join("init")) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(storage(dir)(e)),
        };
        if held == *op.init {
            return Ok(());
        }
        let info_id = |info: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix("track_id="))
                .and_then(|v| v.parse::<u32>().ok())
        };
        let held_id = std::fs::read_to_string(dir.join("info"))
            .ok()
            .and_then(|i| info_id(&i));
        let (Some(held_id), Some(new_id)) = (held_id, info_id(&op.info)) else {
            return Ok(());
        };
        let (Some(o), Some(n)) = (init_track(&held, held_id), init_track(&op.init, new_id)) else {
            return Ok(());
        };
        match track_change(&o, &n) {
            Some(why) => Err(IngestError::Conflict(format!(
                "{}: {why}; the track was made with the other. Push it under another track \
                 name or bitrate, or delete the channel first",
                dir.display()
            ))),
            None => Ok(()),
        }
    }

    fn writer(&mut self, dir_name: &str) -> Result<&mut TrackWriter, IngestError> {
        self.writers
            .iter_mut()
            .find(|(d, _)| d == dir_name)
            .map(|(_, w)| w)
            .ok_or_else(|| IngestError::Malformed(format!("track {dir_name} was never opened")))
    }

    /// Offers a chunk's record to its track (flushed when taken; see [`super::timeline`] for how it
    /// is judged), writes the channel's anchor with the channel's first, and counts it.
    fn append(&mut self, op: AppendOp) -> Result<Applied, IngestError> {
        let AppendOp {
            dir_name,
            timing,
            mut bytes,
            retention,
            timescale,
            now_ms,
        } = op;
        // The anchor is written once: read until it is there, then kept.
        if self.anchor_ms.is_none() {
            self.anchor_ms = read_anchor(&self.archive);
        }
        let clock = Clock {
            now_ms,
            anchor_ms: self.anchor_ms,
        };
        let rebase = |b: &mut RecordBytes, vpos: u64, delta: u64| {
            shift_record_offsets(b, vpos)?;
            for (_, moof) in b.moofs_mut() {
                shift_decode_times(moof, delta)?;
            }
            for f in &mut b.fragments {
                f.shift_event_times(delta, timescale);
            }
            Ok(())
        };
        let spool = self.spool.as_ref().map(|s| s.file());
        let Some((_, writer)) = self.writers.iter_mut().find(|(d, _)| *d == dir_name) else {
            return Err(IngestError::Malformed(format!(
                "track {dir_name} was never opened"
            )));
        };
        let appended = writer.append(timing, &mut bytes, spool, rebase, retention, clock)?;
        let mut count = TrackStats {
            last_ms: now_ms,
            ..TrackStats::default()
        };
        let mut applied = Applied::default();
        match appended {
            Appended::Stored(record) => {
                applied.fragments = 1;
                applied.bytes = bytes.len();
                count.fragments = 1;
                count.bytes = bytes.len();
                if clock.anchor_ms.is_none() {
                    self.write_anchor(anchor_for(now_ms, record.end(), timescale))?;
                    self.anchor_ms = read_anchor(&self.archive);
                }
            }
            Appended::Duplicate => {
                applied.duplicates = 1;
                count.duplicates = 1;
            }
        }
        self.writer(&dir_name)?.count(count)?;
        Ok(applied)
    }

    /// Counts an error against every track this store writes (statistics: best effort).
    fn count_error(&mut self) {
        for (_, w) in &mut self.writers {
            let _ = w.count(TrackStats {
                errors: 1,
                ..TrackStats::default()
            });
        }
    }

    /// Writes the channel's anchor once: the first fragment of the channel sets it (a
    /// restarted timeline keeps it: its times are moved onto the channel's clock).
    fn write_anchor(&self, anchor_ms: i64) -> Result<(), IngestError> {
        let path = anchor_path(&self.archive);
        let err = storage(&path);
        if path.exists() {
            return Ok(());
        }
        // Two workers may race here: the first link wins, the other's is dropped.
        let tmp = temporary_name(&path);
        write_atomically(&tmp, anchor_ms.to_string().as_bytes()).map_err(&err)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Adds the track to the server manifest, unless it is there.
    fn record_track(&self, entry: TrackEntry) -> Result<(), IngestError> {
        let lock_path = self.archive.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(storage(&lock_path))?;
        let _held = Locked::exclusive(&lock).map_err(storage(&lock_path))?;
        let mut manifest = read_manifest(&self.isml, &self.policy)?;
        if manifest.tracks.iter().any(|t| t.src == entry.src) {
            return Ok(());
        }
        self.policy
            .check_tracks(&self.isml, manifest.tracks.len(), 1)?;
        manifest.tracks.push(entry);
        write_atomically(&self.isml, manifest.to_xml().as_bytes()).map_err(storage(&self.isml))
    }
}

/// The track directories of `stream` in the archive, by track ID (from their `info`).
fn held_tracks(archive: &Path, stream: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(archive) else {
        return Vec::new();
    };
    let mut held = Vec::new();
    for entry in entries.flatten().take(super::channel::MAX_TRACKS * 2) {
        let Ok(info) = std::fs::read_to_string(entry.path().join("info")) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        if field("stream").as_deref() != Some(stream) {
            continue;
        }
        if let Some(id) = field("track_id").and_then(|v| v.parse().ok()) {
            held.push((id, entry.file_name().to_string_lossy().into_owned()));
        }
    }
    held.sort();
    held
}

/// The channel's anchor, once its first fragment wrote it.
fn read_anchor(archive: &Path) -> Option<i64> {
    std::fs::read_to_string(anchor_path(archive))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Where the archive keeps the init segment of `stream`.
fn stream_path(archive: &Path, stream: &str) -> PathBuf {
    archive
        .join("streams")
        .join(crate::url::encode_name(stream).as_ref())
}

/// The server manifest of a channel, read under the location's file rules; a missing one is
/// written with no options when the policy creates channels (and the folder has room).
fn read_manifest(isml: &Path, policy: &IngestPolicy) -> Result<ServerManifest, IngestError> {
    match policy.files.read_file(isml, MAX_MANIFEST_BYTES) {
        Ok(bytes) => ServerManifest::parse(&bytes)
            .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display()))),
        Err(e) if e.is_not_found() => {
            if !policy.create {
                return Err(IngestError::UnknownChannel(isml.display().to_string()));
            }
            policy.check_new_channel(isml)?;
            let manifest = ServerManifest::default();
            // Another worker may create it at the same moment: both write the same bytes.
            write_atomically(isml, manifest.to_xml().as_bytes()).map_err(storage(isml))?;
            Ok(manifest)
        }
        Err(e) => Err(e.into()),
    }
}

/// A session whose archive operations run at once, on the caller's thread: the driver for
/// tools and tests (the nginx glue runs them on its thread pool instead).
pub struct DirectIngest {
    pub session: IngestSession,
    pub store: ArchiveStore,
}

impl DirectIngest {
    /// See [`ArchiveStore::open`].
    pub fn open(isml: &Path, stream: &str, create: bool) -> Result<DirectIngest, IngestError> {
        DirectIngest::open_with(
            isml,
            stream,
            &IngestPolicy::creating(create),
            IngestLimits::default(),
        )
    }

    /// See [`ArchiveStore::open_with`] and [`IngestSession::with_limits`].
    pub fn open_with(
        isml: &Path,
        stream: &str,
        policy: &IngestPolicy,
        limits: IngestLimits,
    ) -> Result<DirectIngest, IngestError> {
        let (store, start) = ArchiveStore::open_with(isml, stream, policy)?;
        Ok(DirectIngest {
            session: IngestSession::with_limits(start, stream, limits),
            store,
        })
    }

    /// Takes the next bytes of the body: everything they complete is on disk when this returns
    /// (also when it returns an error: what came before the error stands).
    pub fn push(&mut self, data: &[u8], now_ms: i64) -> Result<(), IngestError> {
        let pushed = self.session.push(data, now_ms);
        if pushed.is_err() {
            self.session.count_error();
        }
        self.run()?;
        pushed
    }

    /// The body ended: what waits is written; the summary of the request.
    pub fn finish(&mut self) -> Result<IngestSummary, IngestError> {
        let finished = self.session.finish();
        self.run()?;
        finished?;
        Ok(self.session.summary().clone())
    }

    fn run(&mut self) -> Result<(), IngestError> {
        let ops = self.session.take_ops();
        let applied = self.store.run(ops)?;
        self.session.applied(applied);
        Ok(())
    }
}
