//! A channel as egress reads it: every track's init segment and records, from the archive on
//! disk (so every worker, and a restarted nginx, sees the same channel), and the window of
//! fragments a request plays, as one fragmented-MP4 source per track.
//!
//! A [`ChannelReader`] lives in each worker and is the driver's: it lists the archive and reads
//! the records files before a request is run (I/O the request engine never does). Each track's
//! newest records are kept in memory, as many as the channel's live manifests need, and grown by
//! reading only what was appended since the last request ([`super::records`]); older records
//! are read from the file for the requests that reach them. The data files the
//! fragments are in are opened by the driver when the engine asks for them
//! ([`TrackArchive::data_file`]), and a track's window is made of what it supplied
//! ([`TrackArchive::source`]).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive::{archive_dir, data_file_name, Record};
use super::records::{RecordsReader, TrackRecords};
use crate::index::TrackKind;
use crate::source::{Backing, PiecesSource, SharedSource, SourceIdentity};

/// What a track's `info` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub kind: TrackKind,
    pub name: String,
    pub bitrate: u64,
    pub track_id: u32,
    pub stream: String,
}

impl TrackInfo {
    fn parse(text: &str) -> Option<TrackInfo> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(TrackInfo {
            kind: match field("kind")?.as_str() {
                "video" => TrackKind::Video,
                "audio" => TrackKind::Audio,
                "textstream" => TrackKind::Text,
                "meta" => TrackKind::Metadata,
                _ => TrackKind::Other,
            },
            name: field("name")?,
            bitrate: field("bitrate")?.parse().ok()?,
            track_id: field("track_id")?.parse().ok()?,
            stream: field("stream").unwrap_or_default(),
        })
    }
}

/// One track of a channel, as its files were when the snapshot was taken.
#[derive(Debug, Clone)]
pub struct TrackArchive {
    /// The track's directory name in the archive (`video=800000`).
    pub dir_name: String,
    pub info: TrackInfo,
    pub init: Arc<Vec<u8>>,
    /// Every record, end-of-stream markers included: the newest in memory, older ones read
    /// from the records file when asked for.
    pub records: TrackRecords,
    /// The timescale of the track (from the init segment's `mdhd`, via the info of the index).
    pub timescale: u32,
    /// Identifies this version of the track: the track directory's inode.
    generation: u64,
}

impl TrackArchive {
    /// The track is stopped: its last record marks the end of its stream.
    pub fn ended(&self) -> bool {
        self.records.last().is_some_and(Record::is_end_marker)
    }

    /// Some record holds media.
    pub fn has_media(&self) -> bool {
        self.records.has_media()
    }

    /// The track's entry in the server manifest of a window: its kind, bitrate, ID and name,
    /// its source `src` (the track's directory, relative to the channel's server manifest).
    pub fn manifest_entry(&self, src: &str) -> crate::ism::TrackEntry {
        let kind = match self.info.kind {
            TrackKind::Video => crate::ism::TrackKind::Video,
            TrackKind::Audio => crate::ism::TrackKind::Audio,
            _ => crate::ism::TrackKind::Text,
        };
        let mut entry = crate::ism::TrackEntry::new(kind, src);
        entry.system_bitrate = Some(self.info.bitrate);
        entry.set_param("trackID", &self.info.track_id.to_string());
        entry.set_param("trackName", &self.info.name);
        entry
    }

    /// The data files `records` are kept in, each once, in order.
    pub fn data_files(records: &[Record]) -> Vec<u32> {
        let mut files: Vec<u32> = records
            .iter()
            .filter(|r| r.size > 0)
            .map(|r| r.file_no)
            .collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    /// Data file `file_no` of the track, relative to the channel's archive directory.
    pub fn data_file(&self, file_no: u32) -> String {
        format!("{}/{}", self.dir_name, data_file_name(file_no))
    }

    /// The track's fragments `records` (consecutive, in order) as one fragmented MP4 file:
    /// the init segment, a `free` box standing for what came before the first of them, then
    /// each fragment from its data file, as `data_file` gives it (by number). Sample offsets
    /// in the fragments are the positions they have in this file.
    pub fn source(
        &self,
        path: &str,
        records: &[Record],
        data_file: impl Fn(u32) -> Option<SharedSource>,
    ) -> io::Result<PiecesSource> {
        // The records' span of the track's virtual file: every chunk appended moves its end
        // (a segment's chunks share a sequence number, so numbers would not tell them apart).
        let first = records.first().map_or(0, |r| r.vpos);
        let end = records.last().map_or(0, |r| r.vpos + u64::from(r.size));
        let mut s = PiecesSource::new(
            path.to_string(),
            SourceIdentity::Live {
                track: format!("{path}#{}", self.generation),
                first,
                end,
            },
        );
        s.push_bytes(self.init.clone());
        let init_len = self.init.len() as u64;
        if let Some(first) = records.first() {
            let gap = first.vpos.saturating_sub(init_len);
            if gap > 0 {
                s.push_bytes(Arc::new(free_box_header(gap)?));
                let header = if gap > u64::from(u32::MAX) { 16 } else { 8 };
                s.push(gap - header, Backing::Zero);
            }
        }
        for r in records.iter().filter(|r| r.size > 0) {
            let source = data_file(r.file_no).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} was not supplied", self.data_file(r.file_no)),
                )
            })?;
            s.push(
                u64::from(r.size),
                Backing::Source {
                    source,
                    offset: r.file_offset,
                },
            );
        }
        Ok(s)
    }
}

/// A `free` box header for a gap of `len` bytes (≥ 8; ≥ 16 when it needs a 64-bit size).
fn free_box_header(len: u64) -> io::Result<Vec<u8>> {
    if len < 8 {
        return Err(io::Error::other(
            "archive records overlap their init segment",
        ));
    }
    Ok(match u32::try_from(len) {
        Ok(n) => [&n.to_be_bytes()[..], b"free"].concat(),
        Err(_) => [&1u32.to_be_bytes()[..], b"free", &len.to_be_bytes()].concat(),
    })
}

/// A channel's tracks, as their files were at one moment.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    /// The archive directory, and its name relative to the server manifest's directory.
    pub archive_dir: PathBuf,
    pub archive_name: String,
    pub tracks: Vec<TrackArchive>,
    /// Wall-clock time of media time 0, milliseconds since the Unix epoch (DASH
    /// `availabilityStartTime`, HLS `EXT-X-PROGRAM-DATE-TIME`).
    pub anchor_ms: i64,
}

impl ChannelSnapshot {
    /// `idle` (nothing ingested), `started`, or `stopped` (every track ended its stream).
    pub fn state(&self) -> &'static str {
        // Timed metadata neither starts nor ends a channel: its media does.
        let media = || {
            self.tracks
                .iter()
                .filter(|t| t.info.kind != TrackKind::Metadata)
        };
        if media().all(|t| !t.has_media()) {
            "idle"
        } else if media().all(TrackArchive::ended) {
            "stopped"
        } else {
            "started"
        }
    }

    /// When the newest record was written, ms since the Unix epoch (0: never).
    pub fn updated_ms(&self) -> i64 {
        self.tracks
            .iter()
            .filter_map(|t| t.records.last().map(|r| r.ingest_ms))
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct CachedTrack {
    records: RecordsReader,
    /// How many ticks of records `records` keeps in memory.
    keep_ticks: u64,
    archive: TrackArchive,
}

/// What the channel's server manifest says about how many seconds of records its live
/// manifests need, as it was when last read.
#[derive(Debug, Clone, Copy)]
struct KeepPolicy {
    version: (u64, u64, i64, i64),
    keep_secs: u64,
}

/// What an archive directory held when it was last listed.
#[derive(Debug, Clone)]
struct Listing {
    version: (i64, i64, u64),
    settled: bool,
    names: Arc<Vec<String>>,
    /// The anchor file's value, when it was written.
    anchor_ms: Option<i64>,
}

/// Reads channels, keeping what did not change since the last request.
#[derive(Debug, Default)]
pub struct ChannelReader {
    tracks: HashMap<PathBuf, CachedTrack>,
    listings: HashMap<PathBuf, Listing>,
    policies: HashMap<PathBuf, KeepPolicy>,
}

/// Most tracks a channel is read with.
pub const MAX_TRACKS: usize = 256;

impl ChannelReader {
    pub fn new() -> ChannelReader {
        ChannelReader::default()
    }

    /// The channel whose server manifest is `isml`, as its archive is now; `now_ms` is the
    /// time now (ms since the Unix epoch), as the caller read it.
    pub fn snapshot(&mut self, isml: &Path, now_ms: i64) -> io::Result<ChannelSnapshot> {
        let dir = archive_dir(isml);
        let archive_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tracks = Vec::new();
        let listing = match self.listing(&dir, now_ms)? {
            Some(l) => l,
            None => {
                return Ok(ChannelSnapshot {
                    archive_dir: dir.clone(),
                    archive_name,
                    tracks,
                    anchor_ms: 0,
                })
            }
        };
        let keep_secs = self.keep_secs(isml);
        for name in listing.names.iter() {
            let track_dir = dir.join(name);
            match self.track(&track_dir, name, keep_secs) {
                Ok(Some(t)) => tracks.push(t),
                Ok(None) => {}
                // A track being created or removed right now: read it next time.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let anchor_ms = match listing.anchor_ms {
            Some(a) => a,
            None => anchor_from_records(&tracks)?,
        };
        Ok(ChannelSnapshot {
            archive_dir: dir,
            archive_name,
            tracks,
            anchor_ms,
        })
    }

    /// The archive directory's tracks and anchor, read again only when the directory changed
    /// (a track or the anchor was written: its modification time or link count moved). A
    /// directory changed less than a second before it was listed is listed again next time:
    /// its modification time is too coarse to tell two changes in the same tick apart.
    fn listing(&mut self, dir: &Path, now_ms: i64) -> io::Result<Option<Listing>> {
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.listings.remove(dir);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let version = (meta.mtime(), meta.mtime_nsec(), meta.nlink());
        if let Some(l) = self.listings.get(dir) {
            if l.version == version && l.settled {
                return Ok(Some(l.clone()));
            }
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.contains('='))
            .collect();
        names.sort();
        names.truncate(MAX_TRACKS);
        // Tracks removed meanwhile (a restart, a deleted channel) are forgotten.
        self.tracks.retain(|path, _| {
            !path.starts_with(dir)
                || path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| names.iter().any(|m| m == n))
        });
        let anchor_ms = match std::fs::read_to_string(anchor_path(dir)) {
            Ok(text) => Some(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let modified_ms = meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000;
        let listing = Listing {
            version,
            settled: now_ms - modified_ms > 1000,
            names: Arc::new(names),
            anchor_ms,
        };
        self.listings.insert(dir.to_path_buf(), listing.clone());
        Ok(Some(listing))
    }

    /// Seconds of records the live manifests of the channel at `isml` need in memory: its
    /// DVR window, its `time_shift` and the margin for the three segments a live playlist
    /// lists at least. The server manifest is read again only when it changed; one that
    /// cannot be read gives the defaults (requests that need more read the file).
    fn keep_secs(&mut self, isml: &Path) -> u64 {
        use crate::live::session::{DEFAULT_DVR_WINDOW_SECS, MIN_WINDOW_MARGIN_SECS};
        // The window's start tolerance and rounding.
        const SLACK_SECS: u64 = 2;
        let default = DEFAULT_DVR_WINDOW_SECS + MIN_WINDOW_MARGIN_SECS + SLACK_SECS;
        let Ok(meta) = std::fs::metadata(isml) else {
            self.policies.remove(isml);
            return default;
        };
        let version = (meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        if let Some(p) = self.policies.get(isml) {
            if p.version == version {
                return p.keep_secs;
            }
        }
        let keep_secs = read_manifest(isml, &meta)
            .and_then(|m| m.options().ok())
            .map_or(default, |o| {
                o.dvr_window_length
                    .unwrap_or(DEFAULT_DVR_WINDOW_SECS)
                    .saturating_add(o.time_shift.unwrap_or(0))
                    .saturating_add(MIN_WINDOW_MARGIN_SECS + SLACK_SECS)
            });
        self.policies
            .insert(isml.to_path_buf(), KeepPolicy { version, keep_secs });
        keep_secs
    }

    fn track(
        &mut self,
        dir: &Path,
        name: &str,
        keep_secs: u64,
    ) -> io::Result<Option<TrackArchive>> {
        let records_path = dir.join("records");
        if let Some(c) = self.tracks.get_mut(dir) {
            let keep_ticks = keep_secs.saturating_mul(u64::from(c.archive.timescale));
            let resets = c.records.resets();
            let file = c.records.refresh(&records_path, keep_ticks)?;
            if keep_ticks != c.keep_ticks {
                c.records.keep(&*file.get()?, keep_ticks)?;
                c.keep_ticks = keep_ticks;
            }
            let appended = c.records.resets() == resets;
            // The same records file, appended to; or one read anew (renamed over by pruning,
            // or the track made again) whose init is as long as the one held: the track's info
            // and init stand.
            if appended || c.archive.init.len() as u64 == std::fs::metadata(dir.join("init"))?.len()
            {
                if !appended {
                    c.archive.generation = dir.metadata()?.ino();
                }
                let mut archive = c.archive.clone();
                archive.records = c.records.records(file);
                return Ok(Some(archive));
            }
        }
        self.tracks.remove(dir);
        let Some(info) = TrackInfo::parse(&std::fs::read_to_string(dir.join("info"))?) else {
            return Ok(None);
        };
        let init = Arc::new(std::fs::read(dir.join("init"))?);
        let timescale = timescale_of(&init, info.track_id).unwrap_or(1);
        let keep_ticks = keep_secs.saturating_mul(u64::from(timescale));
        let (records, file) = RecordsReader::open(&records_path, keep_ticks)?;
        // The cached track holds no records (nor their file's descriptor): each snapshot
        // gets them from the reader.
        let cached = TrackArchive {
            dir_name: name.to_string(),
            info,
            init,
            records: TrackRecords::default(),
            timescale,
            generation: dir.metadata()?.ino(),
        };
        let mut archive = cached.clone();
        archive.records = records.records(file);
        self.tracks.insert(
            dir.to_path_buf(),
            CachedTrack {
                records,
                keep_ticks,
                archive: cached,
            },
        );
        Ok(Some(archive))
    }
}

/// The server manifest at `isml` (`meta` its metadata), when it is a regular file of a
/// manifest's size that parses; opened without blocking (a FIFO in its place does not hang
/// the worker).
fn read_manifest(isml: &Path, meta: &std::fs::Metadata) -> Option<crate::ism::ServerManifest> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !meta.is_file() || meta.len() > crate::ism::MAX_MANIFEST_BYTES as u64 {
        return None;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(isml)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(crate::ism::MAX_MANIFEST_BYTES as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    crate::ism::ServerManifest::parse(&bytes).ok()
}

/// The timescale of track `track_id` in an init segment.
fn timescale_of(init: &Arc<Vec<u8>>, track_id: u32) -> Option<u32> {
    let mut s = PiecesSource::new(
        "init".into(),
        SourceIdentity::Memory {
            name: "init".into(),
            size: 0,
        },
    );
    s.push_bytes(init.clone());
    let index = crate::index::build_index(&s).ok()?;
    index.track(track_id).map(|t| t.timescale)
}

/// The file holding the channel's anchor.
pub fn anchor_path(archive: &Path) -> PathBuf {
    archive.join("epoch")
}

/// The anchor the records imply, before the first ingest wrote it.
fn anchor_from_records(tracks: &[TrackArchive]) -> io::Result<i64> {
    let mut anchor = None;
    for t in tracks {
        if let Some(r) = t.records.first_media()? {
            let a = anchor_for(r.ingest_ms, r.end(), t.timescale);
            anchor = Some(anchor.map_or(a, |b: i64| b.min(a)));
        }
    }
    Ok(anchor.unwrap_or(0))
}

/// Seconds since the Unix epoch from which media times are taken to be wall-clock times
/// already (an encoder timestamping with UTC): 2001-09-09.
const UTC_TIMES_FROM_SECS: u64 = 1_000_000_000;

/// The anchor that makes a fragment ending at `end` (ticks) available when it was ingested
/// (a real-time encoder sends a fragment once its last sample is made, so the newest media a
/// player may ask for ends now): 0 when the encoder's times are wall-clock times already.
pub fn anchor_for(ingest_ms: i64, end: u64, timescale: u32) -> i64 {
    let end_ms = (u128::from(end) * 1000 / u128::from(timescale.max(1))) as i64;
    if end_ms as u64 / 1000 >= UTC_TIMES_FROM_SECS {
        0
    } else {
        ingest_ms - end_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build_index;
    use crate::live::store::DirectIngest;
    use crate::source::Source;

    #[test]
    fn a_window_of_an_archive_indexes_as_one_file() {
        let d = std::env::temp_dir().join(format!("origin-channel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let isml = d.join("ch.isml");
        let bytes = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smooth.ismv"),
        )
        .unwrap();
        let mut s = DirectIngest::open(&isml, "s1", true).unwrap();
        s.push(&bytes, 1_000_000).unwrap();
        s.finish().unwrap();
        let mut reader = ChannelReader::new();
        let snap = reader.snapshot(&isml, 2_000_000).unwrap();
        assert_eq!(snap.state(), "stopped");
        assert_eq!(snap.tracks.len(), 2);
        let video = snap
            .tracks
            .iter()
            .find(|t| t.info.kind == TrackKind::Video)
            .unwrap();
        let media: Vec<Record> = video
            .records
            .read(0, video.records.len())
            .unwrap()
            .into_iter()
            .filter(|r| !r.is_end_marker())
            .collect();
        // Every fragment but the first: a free box stands for it.
        // The data files, as a driver supplies them.
        let opened: HashMap<u32, SharedSource> = TrackArchive::data_files(&media[1..])
            .into_iter()
            .map(|n| {
                let path = snap.archive_dir.join(video.data_file(n));
                let file: SharedSource = Arc::new(crate::source::PreadSource::open(&path).unwrap());
                (n, file)
            })
            .collect();
        assert!(!opened.is_empty());
        let src = video
            .source("v", &media[1..], |n| opened.get(&n).cloned())
            .unwrap();
        let index = build_index(&src).unwrap();
        let t = index.track(video.info.track_id).unwrap();
        assert_eq!(t.dts(0), media[1].start);
        assert_eq!(t.end_time(), media.last().unwrap().end());
        let first = t.samples(0..1).next().unwrap();
        assert!(src.bytes(first.offset, first.size as usize).is_ok());
        // Unchanged files: the same records, not read again.
        let again = reader.snapshot(&isml, 2_000_000).unwrap();
        assert!(Arc::ptr_eq(
            again.tracks[0].records.kept(),
            snap.tracks[0].records.kept()
        ));
        // A data file the driver did not supply is an error, not a panic or a hole.
        assert!(video.source("v", &media[1..], |_| None).is_err());
        // The records file is open while a snapshot is (its older records are read from it),
        // not once the snapshots are gone: a worker serving many tracks holds no descriptor
        // for each.
        let records = snap.archive_dir.join(&video.dir_name).join("records");
        let open_to = |path: &Path| {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target == path)
                .count()
        };
        assert!(open_to(&records) > 0);
        let video_dir = snap.archive_dir.join(&video.dir_name);
        let (info, init) = (
            std::fs::read(video_dir.join("info")).unwrap(),
            video.init.clone(),
        );
        drop((snap, again, opened, src, index, s));
        assert_eq!(open_to(&records), 0);
        // The track made again (a new timeline), with another init: read anew, init included,
        // whether or not its records file got the old one's inode.
        std::fs::remove_dir_all(&video_dir).unwrap();
        std::fs::create_dir(&video_dir).unwrap();
        std::fs::write(video_dir.join("info"), info).unwrap();
        let longer = [&init[..], &[0, 0, 0, 8, b'f', b'r', b'e', b'e']].concat();
        std::fs::write(video_dir.join("init"), &longer).unwrap();
        let restarted = Record {
            start: 0,
            duration: 10,
            ..media[0]
        };
        std::fs::write(video_dir.join("records"), restarted.encode()).unwrap();
        let snap = reader.snapshot(&isml, 3_000_000).unwrap();
        let video = snap
            .tracks
            .iter()
            .find(|t| t.info.kind == TrackKind::Video)
            .unwrap();
        assert_eq!(video.init.len(), longer.len());
        assert_eq!(video.records.read(0, 10).unwrap(), [restarted]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
