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
use super::ingest::IngestError;
use super::record_bytes::RecordBytes;
use super::session::{
    shift_record_offsets, AppendOp, Applied, ArchiveOp, ChannelOptions, IngestLimits,
    IngestSession, IngestSummary, OpenTrackOp, SessionStart,
};
use super::spool::Spool;
use crate::ism::{ServerManifest, TrackEntry};

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
    /// The server manifest may be created when missing.
    create: bool,
    writers: Vec<(String, TrackWriter)>,
    /// Where large fragments' payloads wait (made with the first one).
    spool: Option<Spool>,
}

impl ArchiveStore {
    /// Opens the channel whose server manifest is `isml` for `Streams(<stream>)`: its options,
    /// and the init segment the stream left in the archive. A channel that does not exist is
    /// refused unless `create` allows it (it is then made when the stream brings an init
    /// segment: a refused request leaves no trace).
    pub fn open(
        isml: &Path,
        stream: &str,
        create: bool,
    ) -> Result<(ArchiveStore, SessionStart), IngestError> {
        let manifest = match std::fs::read(isml) {
            Ok(bytes) => ServerManifest::parse(&bytes)
                .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                ServerManifest::default()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IngestError::UnknownChannel(isml.display().to_string()))
            }
            Err(e) => return Err(storage(isml)(e)),
        };
        let options = ChannelOptions::of(&manifest)
            .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display())))?;
        let archive = archive_dir(isml);
        let stored_init = std::fs::read(stream_path(&archive, stream)).ok();
        let archive_name = archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let store = ArchiveStore {
            isml: isml.to_path_buf(),
            archive,
            create,
            writers: Vec::new(),
            spool: None,
        };
        let start = SessionStart {
            options,
            stored_init,
            archive_name,
        };
        Ok((store, start))
    }

    /// Runs `ops` in order and returns what they stored. The first that fails ends the run
    /// (what ran before it stands) and counts an error against the tracks open.
    pub fn run(&mut self, ops: Vec<ArchiveOp>) -> Result<Applied, IngestError> {
        let mut applied = Applied::default();
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

    /// The channel's server manifest (when missing and allowed) and archive directory.
    fn create_channel(&self) -> Result<(), IngestError> {
        if !self.isml.exists() {
            read_manifest(&self.isml, self.create)?;
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
        let writer = TrackWriter::open(&self.archive.join(&op.dir_name), &op.init, &op.info)?;
        if !op.encoder.is_empty() {
            // Statistics, not data: a failure to note the address does not refuse media.
            let _ = write_atomically(&writer.dir().join("encoder"), op.encoder.as_bytes());
        }
        self.record_track(op.entry)?;
        self.writers.push((op.dir_name, writer));
        Ok(())
    }

    fn writer(&mut self, dir_name: &str) -> Result<&mut TrackWriter, IngestError> {
        self.writers
            .iter_mut()
            .find(|(d, _)| d == dir_name)
            .map(|(_, w)| w)
            .ok_or_else(|| IngestError::Malformed(format!("track {dir_name} was never opened")))
    }

    /// Appends a record (flushed), writes the channel's anchor with the first one, and counts
    /// it. A stopped track that the channel restarts on reconnect is replaced by a new one.
    fn append(&mut self, op: AppendOp) -> Result<Applied, IngestError> {
        let AppendOp {
            dir_name,
            timing,
            mut bytes,
            fragments,
            retention,
            timescale,
            init,
            info,
            now_ms,
        } = op;
        let rebase = |b: &mut RecordBytes, vpos: u64| {
            let _ = shift_record_offsets(b, vpos);
        };
        let spool = self.spool.as_ref().map(|s| s.file());
        let Some((_, writer)) = self.writers.iter_mut().find(|(d, _)| *d == dir_name) else {
            return Err(IngestError::Malformed(format!(
                "track {dir_name} was never opened"
            )));
        };
        let mut appended = writer.append(timing, &mut bytes, spool, rebase, retention, now_ms)?;
        let restarted = appended == Appended::Restart;
        if restarted {
            // A new timeline: the stopped track's archive goes, this fragment starts anew.
            let dir = writer.dir().to_path_buf();
            std::fs::remove_dir_all(&dir).map_err(storage(&dir))?;
            *writer = TrackWriter::open(&dir, &init, &info)?;
            appended = writer.append(timing, &mut bytes, spool, rebase, retention, now_ms)?;
        }
        let mut count = TrackStats {
            last_ms: now_ms,
            ..TrackStats::default()
        };
        let mut applied = Applied::default();
        match appended {
            super::archive::Appended::Stored(_) => {
                applied.fragments = fragments;
                applied.bytes = bytes.len();
                count.fragments = fragments;
                count.bytes = bytes.len();
                self.write_anchor(anchor_for(now_ms, timing.start, timescale), restarted)?;
            }
            Appended::Duplicate | Appended::Restart => {
                applied.duplicates = fragments;
                count.duplicates = fragments;
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

    /// Writes the channel's anchor once (the first fragment of the channel sets it), or anew
    /// when a timeline restarts.
    fn write_anchor(&self, anchor_ms: i64, replace: bool) -> Result<(), IngestError> {
        let path = anchor_path(&self.archive);
        let err = storage(&path);
        if replace {
            return write_atomically(&path, anchor_ms.to_string().as_bytes()).map_err(err);
        }
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
        let mut manifest = read_manifest(&self.isml, self.create)?;
        if manifest.tracks.iter().any(|t| t.src == entry.src) {
            return Ok(());
        }
        manifest.tracks.push(entry);
        write_atomically(&self.isml, manifest.to_xml().as_bytes()).map_err(storage(&self.isml))
    }
}

/// Where the archive keeps the init segment of `stream`.
fn stream_path(archive: &Path, stream: &str) -> PathBuf {
    archive
        .join("streams")
        .join(crate::url::encode_name(stream).as_ref())
}

/// The server manifest of a channel; a missing one is written with no options when `create`.
fn read_manifest(isml: &Path, create: bool) -> Result<ServerManifest, IngestError> {
    match std::fs::read(isml) {
        Ok(bytes) => ServerManifest::parse(&bytes)
            .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(IngestError::UnknownChannel(isml.display().to_string()));
            }
            let manifest = ServerManifest::default();
            // Another worker may create it at the same moment: both write the same bytes.
            write_atomically(isml, manifest.to_xml().as_bytes()).map_err(storage(isml))?;
            Ok(manifest)
        }
        Err(e) => Err(storage(isml)(e)),
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
        DirectIngest::open_with(isml, stream, create, IngestLimits::default())
    }

    /// See [`ArchiveStore::open`] and [`IngestSession::with_limits`].
    pub fn open_with(
        isml: &Path,
        stream: &str,
        create: bool,
        limits: IngestLimits,
    ) -> Result<DirectIngest, IngestError> {
        let (store, start) = ArchiveStore::open(isml, stream, create)?;
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
    pub fn finish(&mut self, now_ms: i64) -> Result<IngestSummary, IngestError> {
        let finished = self.session.finish(now_ms);
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
