//! One ingest request: the body's boxes (see [`super::ingest`]) become tracks of the channel
//! and records of its archive (see [`super::archive`]).
//!
//! A session learns its tracks from the init segment the stream carries, or, for an encoder
//! that POSTs each CMAF segment on its own, from the init segment an earlier request of the
//! same stream left in the archive. Each fragment is checked by indexing it against that init
//! segment (so garbage, a fragment of an unknown track or samples past their `mdat` are refused
//! before anything is written), assembled with the ones after it when the encoder sends one
//! `moof` per frame, and appended to its track.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive::{
    archive_dir, track_dir_name, write_atomically, Appended, Locked, Retention, Timing, TrackStats,
    TrackWriter, FLAG_SYNC,
};
use super::channel::{anchor_for, anchor_path};
use super::ingest::{Event, IngestError, IngestParser, RawFragment};
use crate::index::default_track_name;
use crate::index::{build_index, MediaIndex, TrackIndex, TrackKind};
use crate::ism::{ServerManifest, TrackEntry, TrackKind as IsmKind};
use crate::mp4::reader::{FourCC, Reader};
use crate::source::{PiecesSource, SourceIdentity};

/// Fragment length audio and text are assembled to when the encoder sends them in pieces
/// shorter than that and the channel sets no minimum.
pub const DEFAULT_ASSEMBLY_SECS: u64 = 2;
/// Default length of a data file of the archive.
pub const DEFAULT_ARCHIVE_SEGMENT_SECS: u64 = 60;
/// Seconds kept past the DVR window (three 2-second segments).
pub const MIN_WINDOW_MARGIN_SECS: u64 = 6;
/// Default DVR window.
pub const DEFAULT_DVR_WINDOW_SECS: u64 = 30;

/// A channel's options for ingest, from its server manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    pub dvr_window_secs: u64,
    pub archiving: bool,
    /// Seconds of archive kept (`None`: all of it).
    pub archive_secs: Option<u64>,
    pub archive_segment_secs: u64,
    pub restart_on_reconnect: bool,
    /// Fragments shorter than this are assembled into one (seconds as a fraction).
    pub minimum_fragment: Option<(u64, u64)>,
}

impl ChannelOptions {
    pub fn of(manifest: &ServerManifest) -> Result<ChannelOptions, crate::ism::IsmError> {
        let o = manifest.options()?;
        let archiving = o.archiving.unwrap_or(false);
        Ok(ChannelOptions {
            dvr_window_secs: o.dvr_window_length.unwrap_or(DEFAULT_DVR_WINDOW_SECS),
            archiving,
            archive_secs: o.archive_length.filter(|&s| s > 0),
            archive_segment_secs: o
                .archive_segment_length
                .filter(|&s| s > 0)
                .unwrap_or(DEFAULT_ARCHIVE_SEGMENT_SECS),
            restart_on_reconnect: o.restart_on_encoder_reconnect.unwrap_or(false),
            minimum_fragment: o
                .minimum_fragment_lengths
                .first()
                .map(|(_, l)| (l.numerator, l.denominator)),
        })
    }

    /// Seconds of media the archive keeps (`None`: all): the archive length when archiving,
    /// else the DVR window.
    pub fn retain_secs(&self) -> Option<u64> {
        // The window, and room for the three segments a live playlist lists at least.
        let window = self.dvr_window_secs + MIN_WINDOW_MARGIN_SECS;
        if self.archiving {
            self.archive_secs.map(|s| s.max(window))
        } else {
            Some(window)
        }
    }

    fn retention(&self, timescale: u32) -> Retention {
        let ticks = |secs: u64| secs.saturating_mul(u64::from(timescale));
        let keep = self.retain_secs();
        Retention {
            segment_ticks: ticks(self.archive_segment_secs),
            keep_ticks: keep.map(ticks),
            restart_on_reconnect: self.restart_on_reconnect,
        }
    }
}

/// The init segment a stream announced its tracks with.
struct Init {
    bytes: Arc<Vec<u8>>,
    index: MediaIndex,
    /// The Smooth live server manifest that came before it, if any.
    announced: Option<ServerManifest>,
}

/// A track this session writes.
struct TrackIngest {
    track_id: u32,
    writer: TrackWriter,
    timescale: u32,
    kind: TrackKind,
    /// The track's `info` file.
    info: String,
    /// Fragments waiting to be assembled into one record.
    pending: Vec<Checked>,
}

/// A fragment that indexed cleanly against its init segment.
struct Checked {
    raw: RawFragment,
    track_id: u32,
    start: u64,
    duration: u64,
    sync: bool,
}

/// What a session did, for statistics and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub fragments: u64,
    pub duplicates: u64,
    pub bytes: u64,
    pub ended: bool,
}

/// One ingest request to a channel.
pub struct IngestSession {
    isml: PathBuf,
    archive: PathBuf,
    stream: String,
    options: ChannelOptions,
    parser: IngestParser,
    announced: Option<ServerManifest>,
    init: Option<Init>,
    tracks: Vec<TrackIngest>,
    summary: IngestSummary,
    events: Vec<Event>,
    /// The encoder's address, as the statistics report it.
    encoder: String,
}

impl IngestSession {
    /// A session for `Streams(<stream>)` of the channel whose server manifest is `isml`. The
    /// channel is created (with default options) when it does not exist and `create` allows.
    /// Nothing is written before the stream brings an init segment: a refused request leaves
    /// no trace.
    pub fn open(isml: &Path, stream: &str, create: bool) -> Result<IngestSession, IngestError> {
        let manifest = match std::fs::read(isml) {
            Ok(bytes) => ServerManifest::parse(&bytes)
                .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                ServerManifest::default()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IngestError::UnknownChannel(isml.display().to_string()))
            }
            Err(source) => {
                return Err(IngestError::Storage {
                    path: isml.display().to_string(),
                    source,
                })
            }
        };
        let options = ChannelOptions::of(&manifest)
            .map_err(|e| IngestError::Malformed(format!("{}: {e}", isml.display())))?;
        let archive = archive_dir(isml);
        Ok(IngestSession {
            isml: isml.to_path_buf(),
            archive,
            stream: stream.to_string(),
            options,
            parser: IngestParser::new(),
            announced: None,
            init: None,
            tracks: Vec::new(),
            summary: IngestSummary::default(),
            events: Vec::new(),
            encoder: String::new(),
        })
    }

    pub fn summary(&self) -> &IngestSummary {
        &self.summary
    }

    /// Takes the next bytes of the body. Everything they complete is on disk when this returns.
    pub fn push(&mut self, data: &[u8], now_ms: i64) -> Result<(), IngestError> {
        let mut events = std::mem::take(&mut self.events);
        let result = self
            .parser
            .push(data, &mut events)
            .and_then(|()| self.handle(&mut events, now_ms));
        events.clear();
        self.events = events;
        result
    }

    /// The body ended: assembled fragments still waiting are written. A body that ended inside
    /// a box is an error, after what came before it is written.
    pub fn finish(&mut self, now_ms: i64) -> Result<IngestSummary, IngestError> {
        let truncated = self.parser.finish();
        for k in 0..self.tracks.len() {
            self.flush_track(k, now_ms)?;
        }
        truncated?;
        Ok(self.summary.clone())
    }

    fn handle(&mut self, events: &mut Vec<Event>, now_ms: i64) -> Result<(), IngestError> {
        for event in events.drain(..) {
            match event {
                Event::Manifest(text) => {
                    // An unreadable announcement is not fatal: names and bitrates then come
                    // from the media.
                    self.announced = parse_announcement(&text);
                }
                Event::Init { ftyp, moov } => self.take_init(ftyp, moov)?,
                Event::Fragment(raw) => {
                    let last = raw.last;
                    let checked = self.check(raw)?;
                    let track_id = checked.track_id;
                    self.add(checked, now_ms)?;
                    if last {
                        self.end_tracks(Some(track_id), now_ms)?;
                    }
                }
                Event::End => self.end_tracks(None, now_ms)?,
            }
        }
        Ok(())
    }

    fn take_init(&mut self, ftyp: Vec<u8>, moov: Vec<u8>) -> Result<(), IngestError> {
        let mut bytes = ftyp;
        bytes.extend_from_slice(&moov);
        if let Some(init) = &self.init {
            if *init.bytes == bytes {
                return Ok(());
            }
        }
        let init = index_init(bytes, self.announced.take())?;
        self.create_channel()?;
        // Remembered for the requests that bring this stream's segments without it.
        let path = self.stream_path();
        let same = std::fs::read(&path).is_ok_and(|old| old == *init.bytes);
        if !same {
            write_atomically(&path, &init.bytes).map_err(|source| IngestError::Storage {
                path: path.display().to_string(),
                source,
            })?;
        }
        // Tracks already open keep their writers when the new init announces them alike.
        self.tracks.retain(|t| {
            init.index
                .track(t.track_id)
                .is_some_and(|n| n.timescale == t.timescale && n.kind == t.kind)
        });
        self.init = Some(init);
        Ok(())
    }

    /// The channel's server manifest and archive directory, made when missing.
    fn create_channel(&self) -> Result<(), IngestError> {
        if !self.isml.exists() {
            read_manifest(&self.isml, true)?;
        }
        for dir in [self.archive.clone(), self.archive.join("streams")] {
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(IngestError::Storage {
                        path: dir.display().to_string(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn stream_path(&self) -> PathBuf {
        self.archive
            .join("streams")
            .join(crate::url::encode_name(&self.stream).as_ref())
    }

    /// Indexes a fragment against the init segment: its track, start, duration and whether it
    /// starts with a sync sample.
    fn check(&mut self, mut raw: RawFragment) -> Result<Checked, IngestError> {
        if self.init.is_none() {
            match std::fs::read(self.stream_path()) {
                Ok(bytes) => self.init = Some(index_init(bytes, None)?),
                Err(_) => {
                    return Err(IngestError::NoInit(format!(
                        "stream {} sent a fragment before any init segment",
                        self.stream
                    )))
                }
            }
        }
        let Some(init) = &self.init else {
            return Err(IngestError::NoInit(self.stream.clone()));
        };
        let track_id = single_track_id(&raw)?;
        let Some(track) = init.index.track(track_id) else {
            return Err(IngestError::NoInit(format!(
                "fragment of track {track_id}, which the init segment does not announce"
            )));
        };
        if !matches!(
            track.kind,
            TrackKind::Video | TrackKind::Audio | TrackKind::Text
        ) {
            return Err(IngestError::Unsupported(format!(
                "track {track_id} is neither video, audio nor text"
            )));
        }
        // Absolute data offsets count from the stream's start: from here on they count from
        // the moof, and the archive moves them to where the fragment is kept.
        let init_len = init.bytes.len() as u64;
        shift_base_offsets(&mut raw.bytes, -(raw.stream_offset as i64))?;
        shift_base_offsets(&mut raw.bytes, init_len as i64)?;
        let bytes = Arc::new(std::mem::take(&mut raw.bytes));
        let mut source = PiecesSource::new(
            format!("{} fragment", self.stream),
            SourceIdentity::Memory {
                name: self.stream.clone(),
                size: 0,
            },
        );
        source.push_bytes(init.bytes.clone());
        source.push_bytes(bytes.clone());
        let indexed = build_index(&source).map_err(|e| IngestError::Malformed(e.to_string()))?;
        raw.bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        shift_base_offsets(&mut raw.bytes, -(init_len as i64))?;
        let t = indexed
            .track(track_id)
            .filter(|t| t.sample_count() > 0)
            .ok_or_else(|| IngestError::Malformed("a fragment without samples".into()))?;
        let start = declared_start(t);
        Ok(Checked {
            track_id,
            start,
            duration: t.end_time().saturating_sub(t.dts(0)),
            sync: t.is_sync(0),
            raw,
        })
    }

    /// Queues a fragment on its track, writing what it completes.
    fn add(&mut self, fragment: Checked, now_ms: i64) -> Result<(), IngestError> {
        let k = match self
            .tracks
            .iter()
            .position(|t| t.track_id == fragment.track_id)
        {
            Some(k) => k,
            None => self.open_track(fragment.track_id, &fragment)?,
        };
        let t = &self.tracks[k];
        let target = self.assembly_ticks(t);
        let pending: u64 = t.pending.iter().map(|f| f.duration).sum();
        // A record closes before a fragment that starts a new GOP (video) once it is long
        // enough, with half the new fragment's length as tolerance.
        let kind = t.kind;
        let boundary = fragment.sync || kind != TrackKind::Video;
        if !t.pending.is_empty() && boundary && pending + fragment.duration / 2 >= target {
            self.flush_track(k, now_ms)?;
        }
        let whole = match kind {
            // A fragment that starts a GOP and is long enough is written at once: encoders
            // that send a fragment per GOP see no added latency.
            TrackKind::Video => fragment.sync && fragment.duration >= target,
            _ => fragment.duration + fragment.duration / 2 >= target,
        };
        self.tracks[k].pending.push(fragment);
        if whole && self.tracks[k].pending.len() == 1 {
            self.flush_track(k, now_ms)?;
        }
        Ok(())
    }

    /// Ticks a record is assembled to: the channel's minimum fragment length, else a second
    /// for video (records then close at the first sync sample after it: a GOP) and
    /// [`DEFAULT_ASSEMBLY_SECS`] for the rest.
    fn assembly_ticks(&self, t: &TrackIngest) -> u64 {
        match self.options.minimum_fragment {
            Some((n, d)) => (u128::from(n) * u128::from(t.timescale) / u128::from(d.max(1))) as u64,
            None if t.kind == TrackKind::Video => u64::from(t.timescale),
            None => DEFAULT_ASSEMBLY_SECS * u64::from(t.timescale),
        }
    }

    fn flush_track(&mut self, k: usize, now_ms: i64) -> Result<(), IngestError> {
        let pending = std::mem::take(&mut self.tracks[k].pending);
        let Some(first) = pending.first() else {
            return Ok(());
        };
        let start = first.start;
        let duration = pending.last().map_or(0, |l| l.start + l.duration) - start;
        let duration = duration.max(pending.iter().map(|f| f.duration).sum());
        let timing = Timing {
            start,
            duration,
            flags: if first.sync { FLAG_SYNC } else { 0 },
        };
        let mut bytes = Vec::with_capacity(pending.iter().map(|f| f.raw.bytes.len()).sum());
        let mut moofs = Vec::with_capacity(pending.len());
        for f in &pending {
            moofs.push(bytes.len() as u64);
            bytes.extend_from_slice(&f.raw.bytes);
        }
        let retention = self.options.retention(self.tracks[k].timescale);
        let t = &mut self.tracks[k];
        let rebase = |b: &mut [u8], vpos: u64| {
            let _ = shift_record_offsets(b, &moofs, vpos);
        };
        let mut appended = t
            .writer
            .append(timing, &mut bytes, rebase, retention, now_ms)?;
        let restarted = appended == Appended::Restart;
        if restarted {
            // A new timeline: the stopped track's archive goes, this fragment starts anew.
            let dir = t.writer.dir().to_path_buf();
            std::fs::remove_dir_all(&dir).map_err(|source| IngestError::Storage {
                path: dir.display().to_string(),
                source,
            })?;
            let init = self
                .init
                .as_ref()
                .map(|i| i.bytes.clone())
                .unwrap_or_default();
            t.writer = TrackWriter::open(&dir, &init, &t.info)?;
            let rebase = |b: &mut [u8], vpos: u64| {
                let _ = shift_record_offsets(b, &moofs, vpos);
            };
            appended = t
                .writer
                .append(timing, &mut bytes, rebase, retention, now_ms)?;
        }
        let mut count = TrackStats {
            last_ms: now_ms,
            ..TrackStats::default()
        };
        match appended {
            Appended::Stored(_) => {
                self.summary.fragments += pending.len() as u64;
                self.summary.bytes += bytes.len() as u64;
                count.fragments = pending.len() as u64;
                count.bytes = bytes.len() as u64;
                let timescale = self.tracks[k].timescale;
                self.write_anchor(anchor_for(now_ms, start, timescale), restarted)?;
            }
            Appended::Duplicate | Appended::Restart => {
                self.summary.duplicates += pending.len() as u64;
                count.duplicates = pending.len() as u64;
            }
        }
        self.tracks[k].writer.count(count)
    }

    /// Counts a refused request against the tracks it was writing, for the statistics.
    pub fn count_error(&mut self) {
        for t in &mut self.tracks {
            let _ = t.writer.count(TrackStats {
                errors: 1,
                ..TrackStats::default()
            });
        }
    }

    /// Records the address of the encoder in the tracks this session writes.
    pub fn set_encoder(&mut self, address: &str) {
        self.encoder = address.to_string();
    }

    /// Writes the channel's anchor once (the first fragment of the channel sets it), or anew
    /// when a timeline restarts.
    fn write_anchor(&self, anchor_ms: i64, replace: bool) -> Result<(), IngestError> {
        let path = anchor_path(&self.archive);
        let storage = |source| IngestError::Storage {
            path: path.display().to_string(),
            source,
        };
        if replace {
            return write_atomically(&path, anchor_ms.to_string().as_bytes()).map_err(storage);
        }
        if path.exists() {
            return Ok(());
        }
        // Two workers may race here: the first link wins, the other's is dropped.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        write_atomically(&tmp, anchor_ms.to_string().as_bytes()).map_err(storage)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }

    fn end_tracks(&mut self, track: Option<u32>, now_ms: i64) -> Result<(), IngestError> {
        for k in 0..self.tracks.len() {
            if track.is_some_and(|id| id != self.tracks[k].track_id) {
                continue;
            }
            self.flush_track(k, now_ms)?;
            self.tracks[k].writer.end_stream(now_ms)?;
        }
        self.summary.ended = true;
        Ok(())
    }

    /// Registers the track of a first fragment: its directory in the archive and its entry in
    /// the server manifest.
    fn open_track(&mut self, track_id: u32, first: &Checked) -> Result<usize, IngestError> {
        let Some(init) = &self.init else {
            return Err(IngestError::NoInit(self.stream.clone()));
        };
        let Some(track) = init.index.track(track_id) else {
            return Err(IngestError::NoInit(format!("track {track_id}")));
        };
        let single = init.index.tracks.len() == 1;
        let entry = track_entry(
            track,
            init.announced.as_ref(),
            single.then_some(self.stream.as_str()),
            first,
        )?;
        let name = entry.track_name().unwrap_or("track").to_string();
        let bitrate = entry.system_bitrate.unwrap_or(1000);
        let dir_name = track_dir_name(&name, bitrate);
        let mut entry = entry;
        entry.src = format!(
            "{}/{dir_name}",
            self.archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let info = format!(
            "kind={}\nname={name}\nbitrate={bitrate}\ntrack_id={track_id}\nstream={}\n",
            track.kind.as_str(),
            self.stream
        );
        let writer = TrackWriter::open(&self.archive.join(&dir_name), &init.bytes, &info)?;
        if !self.encoder.is_empty() {
            let _ = write_atomically(&writer.dir().join("encoder"), self.encoder.as_bytes());
        }
        self.record_track(entry)?;
        self.tracks.push(TrackIngest {
            track_id,
            writer,
            timescale: track.timescale,
            kind: track.kind,
            info,
            pending: Vec::new(),
        });
        Ok(self.tracks.len() - 1)
    }

    /// Adds the track to the server manifest, unless it is there.
    fn record_track(&self, entry: TrackEntry) -> Result<(), IngestError> {
        let storage = |path: &Path| {
            let path = path.display().to_string();
            move |source| IngestError::Storage { path, source }
        };
        let lock_path = self.archive.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(storage(&lock_path))?;
        let _held = Locked::exclusive(&lock).map_err(storage(&lock_path))?;
        let mut manifest = read_manifest(&self.isml, true)?;
        if manifest.tracks.iter().any(|t| t.src == entry.src) {
            return Ok(());
        }
        manifest.tracks.push(entry);
        write_atomically(&self.isml, manifest.to_xml().as_bytes()).map_err(storage(&self.isml))
    }
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
            write_atomically(isml, manifest.to_xml().as_bytes()).map_err(|source| {
                IngestError::Storage {
                    path: isml.display().to_string(),
                    source,
                }
            })?;
            Ok(manifest)
        }
        Err(source) => Err(IngestError::Storage {
            path: isml.display().to_string(),
            source,
        }),
    }
}

/// The tracks a Smooth encoder announces. Its SMIL leaves out `src` (the media is the stream
/// itself), which a server manifest requires: an empty one is read in.
fn parse_announcement(text: &[u8]) -> Option<ServerManifest> {
    ServerManifest::parse(text).ok().or_else(|| {
        let text = String::from_utf8_lossy(text)
            .replace("<video ", "<video src=\"-\" ")
            .replace("<audio ", "<audio src=\"-\" ")
            .replace("<textstream ", "<textstream src=\"-\" ");
        ServerManifest::parse(text.as_bytes()).ok()
    })
}

fn index_init(bytes: Vec<u8>, announced: Option<ServerManifest>) -> Result<Init, IngestError> {
    let bytes = Arc::new(bytes);
    let mut source = PiecesSource::new(
        "init segment".into(),
        SourceIdentity::Memory {
            name: "init".into(),
            size: bytes.len() as u64,
        },
    );
    source.push_bytes(bytes.clone());
    let index = build_index(&source).map_err(|e| match e {
        crate::index::IndexError::NoMoov { .. } => IngestError::NoInit(e.to_string()),
        other => IngestError::Malformed(other.to_string()),
    })?;
    if index.tracks.is_empty() {
        return Err(IngestError::Unsupported(
            "the init segment has no track".into(),
        ));
    }
    Ok(Init {
        bytes,
        index,
        announced,
    })
}

/// The decode time a fragment declares for its first sample (`tfdt`, Smooth `tfxd`), as the
/// index read it; a negative Smooth time (audio priming) counts as 0.
fn declared_start(t: &TrackIndex) -> u64 {
    t.fragments.first().map_or(t.dts(0), |f| f.start)
}

/// The one track a fragment carries (ingest takes one `traf` per `moof`, as CMAF and Smooth
/// ingest send).
fn single_track_id(raw: &RawFragment) -> Result<u32, IngestError> {
    let moof = raw
        .bytes
        .get(..raw.moof_len)
        .ok_or_else(|| IngestError::Malformed("short moof".into()))?;
    let mut r = Reader::new(moof, raw.stream_offset);
    let Some((_, mut body)) = r.next_box_body()? else {
        return Err(IngestError::Malformed("empty moof".into()));
    };
    let mut ids = Vec::new();
    while let Some((h, mut child)) = body.next_box_body()? {
        if h.fourcc == FourCC::new(b"traf") {
            while let Some((th, mut tfhd)) = child.next_box_body()? {
                if th.fourcc == FourCC::new(b"tfhd") {
                    tfhd.full_box()?;
                    ids.push(tfhd.u32()?);
                }
            }
        }
    }
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(IngestError::Malformed("moof without a traf".into())),
        _ => Err(IngestError::Unsupported(format!(
            "a moof with {} trafs (ingest takes one track per fragment)",
            ids.len()
        ))),
    }
}

/// Adds `delta` to every absolute `base_data_offset` of the `moof` at the start of `bytes`.
fn shift_base_offsets(bytes: &mut [u8], delta: i64) -> Result<(), IngestError> {
    let mut patches = Vec::new();
    {
        let mut r = Reader::new(bytes, 0);
        let Some((_, mut body)) = r.next_box_body()? else {
            return Ok(());
        };
        while let Some((h, mut child)) = body.next_box_body()? {
            if h.fourcc != FourCC::new(b"traf") {
                continue;
            }
            while let Some((th, mut tfhd)) = child.next_box_body()? {
                if th.fourcc == FourCC::new(b"tfhd") {
                    let (_, flags) = tfhd.full_box()?;
                    if flags & crate::mp4::fragment::TFHD_BASE_DATA_OFFSET != 0 {
                        patches.push(th.body_offset() as usize + 8);
                    }
                }
            }
        }
    }
    for at in patches {
        let field = bytes
            .get_mut(at..at + 8)
            .ok_or_else(|| IngestError::Malformed("short tfhd".into()))?;
        let old = u64::from_be_bytes(field.try_into().unwrap_or([0; 8]));
        let new = old.wrapping_add(delta as u64);
        field.copy_from_slice(&new.to_be_bytes());
    }
    Ok(())
}

/// Moves the absolute offsets of each `moof` of a record (at `moofs` within it) to where the
/// record sits in the track's virtual file.
fn shift_record_offsets(bytes: &mut [u8], moofs: &[u64], vpos: u64) -> Result<(), IngestError> {
    for &at in moofs {
        let b = bytes
            .get_mut(at as usize..)
            .ok_or_else(|| IngestError::Malformed("record offset".into()))?;
        shift_base_offsets(b, (vpos + at) as i64)?;
    }
    Ok(())
}

/// The server-manifest entry of a track: name and bitrate from the Smooth announcement when
/// there is one, else from the media (`btrt`, or the first fragment's rate); a stream that
/// carries one track is named after the stream.
fn track_entry(
    track: &TrackIndex,
    announced: Option<&ServerManifest>,
    stream: Option<&str>,
    first: &Checked,
) -> Result<TrackEntry, IngestError> {
    let kind = match track.kind {
        TrackKind::Video => IsmKind::Video,
        TrackKind::Audio => IsmKind::Audio,
        _ => IsmKind::Text,
    };
    let language =
        (track.language != "und" && !track.language.is_empty()).then(|| track.language.clone());
    let announced_entry = announced.and_then(|m| {
        m.tracks
            .iter()
            .find(|t| t.track_id() == Some(track.track_id))
    });
    let name = announced_entry
        .and_then(|t| t.track_name().map(str::to_string))
        .or_else(|| {
            stream
                .map(|s| s.rsplit_once('.').map_or(s, |(stem, _)| stem))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| default_track_name(track.kind, language.as_deref()));
    crate::url::check_name("trackName", &name)
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    if name.len() > 128 {
        return Err(IngestError::Malformed(
            "a track name longer than 128 bytes".into(),
        ));
    }
    let bitrate = announced_entry
        .and_then(|t| t.system_bitrate)
        .or_else(|| btrt_average(&track.sample_entry))
        .filter(|&b| b > 0)
        .unwrap_or_else(|| {
            let secs = first.duration as f64 / f64::from(track.timescale.max(1));
            let bps = if secs > 0.0 {
                first.raw.bytes.len() as f64 * 8.0 / secs
            } else {
                0.0
            };
            (((bps / 1000.0).round() as u64) * 1000).max(1000)
        });
    let mut entry = TrackEntry::new(kind, "");
    entry.system_bitrate = Some(bitrate);
    entry.system_language = language;
    entry.set_param("trackID", &track.track_id.to_string());
    entry.set_param("trackName", &name);
    entry.set_param("timescale", &track.timescale.to_string());
    Ok(entry)
}

/// `avgBitrate` of a `btrt` box among a sample entry's children (else `maxBitrate`).
fn btrt_average(entry: &[u8]) -> Option<u64> {
    let at = entry.windows(8).position(|w| w == b"\0\0\0\x14btrt")?;
    let b = entry.get(at + 8..at + 20)?;
    let max = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let avg = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    Some(u64::from(if avg > 0 { avg } else { max }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::archive::read_records;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("origin-session-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn push(isml: &Path, stream: &str, bytes: &[u8], chunk: usize) -> IngestSummary {
        let mut s = IngestSession::open(isml, stream, true).unwrap();
        for c in bytes.chunks(chunk) {
            s.push(c, 1_000).unwrap();
        }
        s.finish(2_000).unwrap()
    }

    #[test]
    fn a_smooth_push_becomes_tracks_and_records() {
        let d = temp("smooth");
        let isml = d.join("ch.isml");
        let bytes = fixture("smooth.ismv");
        let summary = push(&isml, "s1", &bytes, 4093);
        assert!(summary.ended);
        assert!(summary.fragments >= 4, "{summary:?}");
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        assert_eq!(manifest.tracks.len(), 2);
        let video = &manifest.tracks[0];
        let dir = d.join(&video.src);
        let (records, _) = read_records(&dir.join("records")).unwrap();
        assert!(records.last().unwrap().is_end_marker());
        let media: Vec<_> = records.iter().filter(|r| !r.is_end_marker()).collect();
        assert!(media.iter().all(|r| r.flags & FLAG_SYNC != 0));
        for w in media.windows(2) {
            assert_eq!(w[0].end(), w[1].start);
            assert_eq!(w[0].vpos + u64::from(w[0].size), w[1].vpos);
        }
        // The same stream again (a redundant encoder, or a re-send) adds nothing.
        let again = push(&isml, "s1", &bytes, 65536);
        assert_eq!(again.fragments, 0);
        assert_eq!(again.duplicates, summary.fragments);
        let (after, _) = read_records(&dir.join("records")).unwrap();
        assert_eq!(after, records);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn smooth_announcements_name_the_tracks() {
        let text = br#"<?xml version="1.0" encoding="utf-8"?>
<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head></head><body><switch>
<video systemBitrate="793217"><param name="trackID" value="1" valuetype="data"/>
<param name="trackName" value="video_und" valuetype="data"/></video>
</switch></body></smil>"#;
        let m = parse_announcement(text).unwrap();
        assert_eq!(m.tracks[0].track_name(), Some("video_und"));
        assert_eq!(m.tracks[0].system_bitrate, Some(793217));
    }

    #[test]
    fn a_minimum_fragment_length_assembles_fragments() {
        let d = temp("minimum");
        let isml = d.join("ch.isml");
        std::fs::write(
            &isml,
            br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
            <meta name="mpd_minimum_fragment_length" content="4"/></head><body/></smil>"#,
        )
        .unwrap();
        push(&isml, "s1", &fixture("smooth.ismv"), 1 << 16);
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        let (records, _) = read_records(&d.join(&manifest.tracks[0].src).join("records")).unwrap();
        // Two 2-second fragments became one 4-second record.
        let media: Vec<_> = records.iter().filter(|r| !r.is_end_marker()).collect();
        assert_eq!(media.len(), 1, "{media:?}");
        assert_eq!(media[0].duration, 40_000_000);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_fragment_of_two_tracks_is_unsupported() {
        let d = temp("two-trafs");
        let isml = d.join("ch.isml");
        let bytes = fixture("smooth.ismv");
        let moof_at = bytes.windows(4).position(|w| w == b"moof").unwrap() - 4;
        let moof_len = u32::from_be_bytes(bytes[moof_at..moof_at + 4].try_into().unwrap()) as usize;
        let moof = &bytes[moof_at..moof_at + moof_len];
        let traf_at = moof.windows(4).position(|w| w == b"traf").unwrap() - 4;
        let traf_len = u32::from_be_bytes(moof[traf_at..traf_at + 4].try_into().unwrap()) as usize;
        let mut doubled = moof.to_vec();
        doubled.extend_from_slice(&moof[traf_at..traf_at + traf_len]);
        let size = (doubled.len() as u32).to_be_bytes();
        doubled[..4].copy_from_slice(&size);
        let mut stream = bytes[..moof_at].to_vec();
        stream.extend_from_slice(&doubled);
        stream.extend_from_slice(&bytes[moof_at + moof_len..]);
        let mut s = IngestSession::open(&isml, "s1", true).unwrap();
        let err = s.push(&stream, 0).unwrap_err();
        assert_eq!(err.http_status(), 415, "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cmaf_segments_may_come_in_requests_of_their_own() {
        let d = temp("cmaf");
        let isml = d.join("ch.isml");
        let bytes = fixture("cmaf-video.cmfv");
        // Split at the first moof: the init goes alone, then each fragment.
        let first_moof = bytes.windows(4).position(|w| w == b"moof").unwrap() - 4;
        push(&isml, "video.cmfv", &bytes[..first_moof], 100);
        let mut s = IngestSession::open(&isml, "video.cmfv", true).unwrap();
        s.push(&bytes[first_moof..], 5).unwrap();
        let summary = s.finish(3).unwrap();
        assert!(summary.fragments > 0);
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        assert_eq!(manifest.tracks[0].track_name(), Some("video"));
        // Media of another stream, which never sent an init segment: 412.
        let mut s = IngestSession::open(&isml, "other", true).unwrap();
        let err = s.push(&bytes[first_moof..], 1 << 20).unwrap_err();
        assert_eq!(err.http_status(), 412);
        // Garbage: 400, and nothing written.
        let mut s = IngestSession::open(&isml, "video.cmfv", true).unwrap();
        let mut junk = bytes[first_moof..first_moof + 400].to_vec();
        junk[20..40].fill(0xff);
        assert!(s.push(&junk, 1 << 20).is_err() || s.finish(0).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
