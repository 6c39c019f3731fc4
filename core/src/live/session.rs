//! One ingest request as a pure state machine: the body's boxes (see [`super::ingest`]) become
//! tracks of the channel and operations on its archive ([`ArchiveOp`]). The session does no
//! I/O: its driver runs the operations it queued (see [`super::store`]) and feeds it more of the
//! body only once they are done, so a driver can run them off its event loop (nginx's thread
//! pool) and still acknowledge a request only once everything it brought is durable.
//!
//! A session learns its tracks from the init segment the stream carries, or, for an encoder
//! that POSTs each CMAF segment on its own, from the init segment an earlier request of the
//! same stream left in the archive (read when the session starts). Each fragment is checked by
//! indexing it against that init segment (so garbage, a fragment of an unknown track or samples
//! past their `mdat` are refused before anything is written), assembled with the ones after it
//! when the encoder sends one `moof` per frame, and appended to its track.

use std::sync::Arc;

use super::archive::{track_dir_name, Retention, Timing, FLAG_SYNC};
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

    pub fn retention(&self, timescale: u32) -> Retention {
        let ticks = |secs: u64| secs.saturating_mul(u64::from(timescale));
        let keep = self.retain_secs();
        Retention {
            segment_ticks: ticks(self.archive_segment_secs),
            keep_ticks: keep.map(ticks),
            restart_on_reconnect: self.restart_on_reconnect,
        }
    }
}

/// What a session starts from, read from the archive by its driver (see
/// [`super::store::ArchiveStore::open`]).
#[derive(Debug, Clone)]
pub struct SessionStart {
    pub options: ChannelOptions,
    /// The init segment this stream last left in the archive (an encoder that POSTs each
    /// segment on its own sends it once, in a request of its own).
    pub stored_init: Option<Vec<u8>>,
    /// The archive directory's file name: the `src` of every track starts with it.
    pub archive_name: String,
    /// The track directories earlier requests of this stream made, by track ID: a stream
    /// that comes back (a new POST) goes on in them, whatever its first fragment's rate.
    pub held_tracks: Vec<(u32, String)>,
}

/// An operation on a channel's archive, queued by a session for its driver to run, in order.
/// Each is durable when its run returns (see [`super::store::ArchiveStore::run`]).
#[derive(Debug)]
pub enum ArchiveOp {
    /// Makes the channel: its server manifest when it is missing (and the session may create
    /// it), the archive directory and its `streams` folder.
    CreateChannel,
    /// Keeps the init segment of `stream` for its later per-segment requests.
    StoreStreamInit { stream: String, init: Arc<Vec<u8>> },
    /// Registers a track: its directory (`info`, `init`), the encoder's address, and its entry
    /// in the server manifest.
    OpenTrack(Box<OpenTrackOp>),
    /// Appends one record to a track.
    Append(Box<AppendOp>),
    /// Marks the end of a track's stream.
    EndStream { dir_name: String, now_ms: i64 },
    /// Adds a refused request to the counters of the session's tracks.
    CountError,
}

/// See [`ArchiveOp::OpenTrack`].
#[derive(Debug)]
pub struct OpenTrackOp {
    pub dir_name: String,
    pub init: Arc<Vec<u8>>,
    pub info: String,
    pub entry: TrackEntry,
    pub encoder: String,
}

/// See [`ArchiveOp::Append`]: one record's bytes (one fragment, or several assembled), where
/// each `moof` sits in them, and what the track keeps.
#[derive(Debug)]
pub struct AppendOp {
    pub dir_name: String,
    pub timing: Timing,
    /// `moof` + `mdat` of each fragment, one after the other; absolute data offsets count
    /// from each `moof` until the store moves them to where the record is kept.
    pub bytes: Vec<u8>,
    pub moofs: Vec<u64>,
    /// How many fragments the encoder sent for this record.
    pub fragments: u64,
    pub retention: Retention,
    pub timescale: u32,
    pub now_ms: i64,
}

/// What running operations did, for the session's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub fragments: u64,
    pub duplicates: u64,
    pub bytes: u64,
}

impl Applied {
    pub fn add(&mut self, other: Applied) {
        self.fragments += other.fragments;
        self.duplicates += other.duplicates;
        self.bytes += other.bytes;
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
    dir_name: String,
    timescale: u32,
    kind: TrackKind,
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
    stream: String,
    archive_name: String,
    options: ChannelOptions,
    parser: IngestParser,
    announced: Option<ServerManifest>,
    init: Option<Init>,
    /// The init segment the archive holds for this stream (what the session last stored).
    stored_init: Option<Arc<Vec<u8>>>,
    channel_made: bool,
    tracks: Vec<TrackIngest>,
    summary: IngestSummary,
    events: Vec<Event>,
    /// The encoder's address, as the statistics report it.
    encoder: String,
    /// See [`SessionStart::held_tracks`].
    held_tracks: Vec<(u32, String)>,
    /// Operations queued for the driver.
    ops: Vec<ArchiveOp>,
}

impl IngestSession {
    /// A session for `Streams(<stream>)` of the channel `start` describes.
    pub fn new(start: SessionStart, stream: &str) -> IngestSession {
        IngestSession {
            stream: stream.to_string(),
            archive_name: start.archive_name,
            options: start.options,
            parser: IngestParser::new(),
            announced: None,
            init: None,
            stored_init: start.stored_init.map(Arc::new),
            channel_made: false,
            tracks: Vec::new(),
            summary: IngestSummary::default(),
            events: Vec::new(),
            encoder: String::new(),
            held_tracks: start.held_tracks,
            ops: Vec::new(),
        }
    }

    pub fn summary(&self) -> &IngestSummary {
        &self.summary
    }

    /// Records the address of the encoder in the tracks this session opens.
    pub fn set_encoder(&mut self, address: &str) {
        self.encoder = address.to_string();
    }

    /// The operations queued since the last call, in the order they must run. The driver runs
    /// them all (and hands what they did to [`IngestSession::applied`]) before it pushes more.
    pub fn take_ops(&mut self) -> Vec<ArchiveOp> {
        std::mem::take(&mut self.ops)
    }

    /// Whether operations wait to be run.
    pub fn has_ops(&self) -> bool {
        !self.ops.is_empty()
    }

    /// What the driver's run of the queued operations did.
    pub fn applied(&mut self, applied: Applied) {
        self.summary.fragments += applied.fragments;
        self.summary.duplicates += applied.duplicates;
        self.summary.bytes += applied.bytes;
    }

    /// Takes the next bytes of the body. What they complete is queued as operations, also
    /// when an error follows (what came before a bad box stands).
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

    /// The body ended: assembled fragments still waiting are queued. A body that ended inside
    /// a box is an error, after what came before it is queued.
    pub fn finish(&mut self, now_ms: i64) -> Result<(), IngestError> {
        let truncated = self.parser.finish();
        for k in 0..self.tracks.len() {
            self.flush_track(k, now_ms);
        }
        truncated
    }

    /// Counts a refused request against the tracks it was writing, for the statistics.
    pub fn count_error(&mut self) {
        if !self.tracks.is_empty() {
            self.ops.push(ArchiveOp::CountError);
        }
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
                        self.end_tracks(Some(track_id), now_ms);
                    }
                }
                Event::End => self.end_tracks(None, now_ms),
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
        // A held stream name keeps its media's decoding: an init that changes a track's codec
        // or its parameters (another encoder, or one restarted with new settings) is refused.
        let changed = match (&self.init, &self.stored_init) {
            (Some(current), _) => changed_track(&current.index, &init.index),
            (None, Some(stored)) => index_init((**stored).clone(), None)
                .ok()
                .and_then(|held| changed_track(&held.index, &init.index)),
            (None, None) => None,
        };
        if let Some(why) = changed {
            return Err(IngestError::Conflict(format!(
                "stream {}: {why}; the media held was made with the first. Push it under \
                 another stream name, or delete the channel first",
                self.stream
            )));
        }
        if !self.channel_made {
            self.ops.push(ArchiveOp::CreateChannel);
            self.channel_made = true;
        }
        // Remembered for the requests that bring this stream's segments without it.
        if self.stored_init.as_deref() != Some(&*init.bytes) {
            self.ops.push(ArchiveOp::StoreStreamInit {
                stream: self.stream.clone(),
                init: init.bytes.clone(),
            });
            self.stored_init = Some(init.bytes.clone());
        }
        // Tracks already open stay open when the new init announces them alike.
        self.tracks.retain(|t| {
            init.index
                .track(t.track_id)
                .is_some_and(|n| n.timescale == t.timescale && n.kind == t.kind)
        });
        self.init = Some(init);
        Ok(())
    }

    /// Indexes a fragment against the init segment: its track, start, duration and whether it
    /// starts with a sync sample.
    fn check(&mut self, mut raw: RawFragment) -> Result<Checked, IngestError> {
        if self.init.is_none() {
            match &self.stored_init {
                Some(bytes) => self.init = Some(index_init((**bytes).clone(), None)?),
                None => {
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
        drop(source);
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

    /// Queues a fragment on its track, queueing the record it completes.
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
            self.flush_track(k, now_ms);
        }
        let whole = match kind {
            // A fragment that starts a GOP and is long enough is written at once: encoders
            // that send a fragment per GOP see no added latency.
            TrackKind::Video => fragment.sync && fragment.duration >= target,
            _ => fragment.duration + fragment.duration / 2 >= target,
        };
        self.tracks[k].pending.push(fragment);
        if whole && self.tracks[k].pending.len() == 1 {
            self.flush_track(k, now_ms);
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

    /// Queues the record of the fragments waiting on track `k`.
    fn flush_track(&mut self, k: usize, now_ms: i64) {
        let pending = std::mem::take(&mut self.tracks[k].pending);
        let Some(first) = pending.first() else {
            return;
        };
        let start = first.start;
        let duration = pending.last().map_or(0, |l| l.start + l.duration) - start;
        let duration = duration.max(pending.iter().map(|f| f.duration).sum());
        let timing = Timing {
            start,
            duration,
            flags: if first.sync { FLAG_SYNC } else { 0 },
            timescale: self.tracks[k].timescale,
        };
        let fragments = pending.len() as u64;
        let (bytes, moofs) = match <[Checked; 1]>::try_from(pending) {
            // One fragment (the usual case): its bytes move, uncopied.
            Ok([one]) => (one.raw.bytes, vec![0]),
            Err(pending) => {
                let mut bytes = Vec::with_capacity(pending.iter().map(|f| f.raw.bytes.len()).sum());
                let mut moofs = Vec::with_capacity(pending.len());
                for f in &pending {
                    moofs.push(bytes.len() as u64);
                    bytes.extend_from_slice(&f.raw.bytes);
                }
                (bytes, moofs)
            }
        };
        let t = &self.tracks[k];
        self.ops.push(ArchiveOp::Append(Box::new(AppendOp {
            dir_name: t.dir_name.clone(),
            timing,
            bytes,
            moofs,
            fragments,
            retention: self.options.retention(t.timescale),
            timescale: t.timescale,
            now_ms,
        })));
    }

    fn end_tracks(&mut self, track: Option<u32>, now_ms: i64) {
        for k in 0..self.tracks.len() {
            if track.is_some_and(|id| id != self.tracks[k].track_id) {
                continue;
            }
            self.flush_track(k, now_ms);
            self.ops.push(ArchiveOp::EndStream {
                dir_name: self.tracks[k].dir_name.clone(),
                now_ms,
            });
        }
        self.summary.ended = true;
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
        let mut entry = track_entry(
            track,
            init.announced.as_ref(),
            single.then_some(self.stream.as_str()),
            first,
        )?;
        let name = entry.track_name().unwrap_or("track").to_string();
        let bitrate = entry.system_bitrate.unwrap_or(1000);
        let dir_name = self
            .held_tracks
            .iter()
            .find(|(id, _)| *id == track_id)
            .map_or_else(|| track_dir_name(&name, bitrate), |(_, d)| d.clone());
        entry.src = format!("{}/{dir_name}", self.archive_name);
        let info = format!(
            "kind={}\nname={name}\nbitrate={bitrate}\ntrack_id={track_id}\nstream={}\n",
            track.kind.as_str(),
            self.stream
        );
        if !self.channel_made {
            self.ops.push(ArchiveOp::CreateChannel);
            self.channel_made = true;
        }
        self.ops.push(ArchiveOp::OpenTrack(Box::new(OpenTrackOp {
            dir_name: dir_name.clone(),
            init: init.bytes.clone(),
            info,
            entry,
            encoder: self.encoder.clone(),
        })));
        self.tracks.push(TrackIngest {
            track_id,
            dir_name,
            timescale: track.timescale,
            kind: track.kind,
            pending: Vec::new(),
        });
        Ok(self.tracks.len() - 1)
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

/// How a track that `old` and `new` both announce (by track ID) differs in what decoding
/// needs (see [`track_change`]).
pub(crate) fn changed_track(old: &MediaIndex, new: &MediaIndex) -> Option<String> {
    new.tracks.iter().find_map(|n| {
        let o = old.track(n.track_id)?;
        track_change(o, n)
    })
}

/// How track `n` differs from `o` in what decoding needs: kind, timescale or sample entry
/// (codec, its configuration, picture size, channels; a `btrt` box, which encoders fill with
/// measured rates, does not count).
pub(crate) fn track_change(o: &TrackIndex, n: &TrackIndex) -> Option<String> {
    if o.kind != n.kind || o.timescale != n.timescale {
        return Some(format!(
            "the init segment changes track {} from {} at {} Hz to {} at {} Hz",
            n.track_id,
            o.kind.as_str(),
            o.timescale,
            n.kind.as_str(),
            n.timescale
        ));
    }
    if without_btrt(&o.sample_entry) != without_btrt(&n.sample_entry) {
        return Some(format!(
            "the init segment changes the sample entry of track {} ({} to {}: codec, its \
             configuration or picture size)",
            n.track_id,
            o.sample_entry_fourcc.as_string(),
            n.sample_entry_fourcc.as_string()
        ));
    }
    None
}

/// The index of an init segment's one track `track_id`.
pub(crate) fn init_track(init: &[u8], track_id: u32) -> Option<TrackIndex> {
    let init = index_init(init.to_vec(), None).ok()?;
    init.index
        .tracks
        .into_iter()
        .find(|t| t.track_id == track_id)
}

/// A sample entry's bytes without its `btrt` box.
fn without_btrt(entry: &[u8]) -> Vec<u8> {
    match entry.windows(8).position(|w| w == b"\0\0\0\x14btrt") {
        Some(at) if at + 20 <= entry.len() => [&entry[..at], &entry[at + 20..]].concat(),
        _ => entry.to_vec(),
    }
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
pub(crate) fn shift_record_offsets(
    bytes: &mut [u8],
    moofs: &[u64],
    vpos: u64,
) -> Result<(), IngestError> {
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
    use crate::live::store::DirectIngest;
    use std::path::{Path, PathBuf};

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
        let mut s = DirectIngest::open(isml, stream, true).unwrap();
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
    fn a_session_alone_queues_operations_and_touches_nothing() {
        let start = SessionStart {
            options: ChannelOptions::of(&ServerManifest::default()).unwrap(),
            stored_init: None,
            archive_name: "ch.isml.archive".into(),
            held_tracks: Vec::new(),
        };
        let mut s = IngestSession::new(start, "s1");
        for c in fixture("smooth.ismv").chunks(4093) {
            s.push(c, 1_000).unwrap();
        }
        s.finish(2_000).unwrap();
        let ops = s.take_ops();
        let kinds: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                ArchiveOp::CreateChannel => "create",
                ArchiveOp::StoreStreamInit { .. } => "init",
                ArchiveOp::OpenTrack(_) => "open",
                ArchiveOp::Append(_) => "append",
                ArchiveOp::EndStream { .. } => "end",
                ArchiveOp::CountError => "error",
            })
            .collect();
        // The channel and the stream's init first, each track opened before its first record,
        // every track ended last.
        assert_eq!(&kinds[..2], ["create", "init"]);
        assert_eq!(kinds.iter().filter(|k| **k == "open").count(), 2);
        assert_eq!(&kinds[kinds.len() - 2..], ["end", "end"]);
        for (k, op) in ops.iter().enumerate() {
            if let ArchiveOp::Append(a) = op {
                assert!(ops[..k]
                    .iter()
                    .any(|o| matches!(o, ArchiveOp::OpenTrack(t) if t.dir_name == a.dir_name)));
                assert!(a.bytes.len() as u64 > a.moofs.len() as u64 * 8);
            }
        }
        assert!(!s.has_ops());
        // Nothing counted as stored until the driver says what its runs did.
        assert_eq!(s.summary().fragments, 0);
        s.applied(Applied {
            fragments: 3,
            duplicates: 1,
            bytes: 10,
        });
        assert_eq!((s.summary().fragments, s.summary().duplicates), (3, 1));
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
        let mut s = DirectIngest::open(&isml, "s1", true).unwrap();
        let err = s.push(&stream, 0).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 415);
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
        let mut s = DirectIngest::open(&isml, "video.cmfv", true).unwrap();
        s.push(&bytes[first_moof..], 5).unwrap();
        let summary = s.finish(3).unwrap();
        assert!(summary.fragments > 0);
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        assert_eq!(manifest.tracks[0].track_name(), Some("video"));
        // Media of another stream, which never sent an init segment: 412.
        let mut s = DirectIngest::open(&isml, "other", true).unwrap();
        let err = s.push(&bytes[first_moof..], 1 << 20).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 412);
        // Garbage: 400, and nothing written.
        let mut s = DirectIngest::open(&isml, "video.cmfv", true).unwrap();
        let mut junk = bytes[first_moof..first_moof + 400].to_vec();
        junk[20..40].fill(0xff);
        assert!(s.push(&junk, 1 << 20).is_err() || s.finish(0).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The top-level boxes of a stream: everything before the first `moof`, then each
    /// `moof` + `mdat`, then what follows (`mfra`).
    fn split(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut at = 0;
        let mut head = Vec::new();
        let mut fragments: Vec<Vec<u8>> = Vec::new();
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = &bytes[at + 4..at + 8];
            let b = &bytes[at..at + size];
            match kind {
                b"moof" => fragments.push(b.to_vec()),
                b"mdat" => fragments.last_mut().unwrap().extend_from_slice(b),
                b"mfra" => {}
                _ if fragments.is_empty() => head.extend_from_slice(b),
                _ => {}
            }
            at += size;
        }
        (head, fragments)
    }

    fn restart_channel(d: &Path, restart: bool) -> PathBuf {
        let isml = d.join("ch.isml");
        std::fs::write(
            &isml,
            format!(
                r#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
                <meta name="archiving" content="true"/>
                <meta name="restart_on_encoder_reconnect" content="{restart}"/></head><body/></smil>"#
            ),
        )
        .unwrap();
        isml
    }

    fn media_records(d: &Path, isml: &Path, k: usize) -> Vec<crate::live::archive::Record> {
        let manifest = ServerManifest::parse(&std::fs::read(isml).unwrap()).unwrap();
        let (records, _) = read_records(&d.join(&manifest.tracks[k].src).join("records")).unwrap();
        records.into_iter().filter(|r| !r.is_end_marker()).collect()
    }

    fn send(isml: &Path, bytes: &[u8], now_ms: i64) -> Result<IngestSummary, IngestError> {
        let mut s = DirectIngest::open(isml, "s1", true)?;
        s.push(bytes, now_ms)?;
        s.finish(now_ms)
    }

    #[test]
    fn a_fragment_far_in_the_future_is_refused_and_the_window_stands() {
        let d = temp("future");
        let isml = restart_channel(&d, false);
        let (head, fragments) = split(&fixture("smooth.ismv"));
        let mut first = head.clone();
        first.extend(fragments[..2].concat());
        send(&isml, &first, 100_000).unwrap();
        let before = media_records(&d, &isml, 0);
        // A million seconds ahead, ten seconds later by the clock: 422, nothing stored.
        let mut bogus = fragments[2].clone();
        crate::live::timeline::shift_decode_times(&mut bogus, 1_000_000 * 10_000_000).unwrap();
        let err = send(&isml, &[head.clone(), bogus].concat(), 110_000).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 422);
        assert_eq!(media_records(&d, &isml, 0), before);
        // The encoder's next real fragments go on as if nothing happened.
        let summary = send(&isml, &[head, fragments[2..].concat()].concat(), 112_000).unwrap();
        assert!(
            summary.fragments > 0 && summary.duplicates == 0,
            "{summary:?}"
        );
        assert!(media_records(&d, &isml, 0).len() > before.len());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_restarted_encoder_starts_a_new_timeline_or_is_refused() {
        for restart in [false, true] {
            let d = temp(&format!("restart-{restart}"));
            let isml = restart_channel(&d, restart);
            let bytes = fixture("smooth.ismv");
            let (head, fragments) = split(&bytes);
            let stream = [head.clone(), fragments.concat()].concat();
            send(&isml, &stream, 100_000).unwrap();
            let held = media_records(&d, &isml, 0);
            // A minute later the encoder, crashed (no end of stream), starts again at 0.
            let again = send(&isml, &stream, 160_000);
            if !restart {
                assert_eq!(crate::Error::from(again.unwrap_err()).status(), 409);
                assert_eq!(media_records(&d, &isml, 0), held);
                std::fs::remove_dir_all(&d).unwrap();
                continue;
            }
            let summary = again.unwrap();
            assert_eq!(summary.duplicates, 0, "{summary:?}");
            let after = media_records(&d, &isml, 0);
            // Everything held stays; the new timeline follows, moved forward, marked.
            assert_eq!(&after[..held.len()], &held[..]);
            let restarted = &after[held.len()..];
            assert_eq!(restarted.len(), held.len());
            assert!(restarted[0].start >= held.last().unwrap().end());
            assert!(restarted[0].flags & crate::live::timeline::FLAG_TIMELINE_START != 0);
            assert!(restarted
                .iter()
                .all(|r| crate::live::timeline::timeline_of(r.flags) == 1));
            // Both tracks moved by the same whole seconds.
            let audio = media_records(&d, &isml, 1);
            let audio_restart = audio.iter().find(|r| r.flags & 4 != 0).unwrap();
            let video_shift = (restarted[0].start - held[0].start) / 10_000_000;
            let audio_shift = (audio_restart.start - audio[0].start) / 10_000_000;
            assert_eq!(video_shift, audio_shift);
            // The stored bytes say the moved times.
            let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
            let dir = d.join(&manifest.tracks[0].src);
            let data =
                std::fs::read(dir.join(crate::live::archive::data_file_name(restarted[0].file_no)))
                    .unwrap();
            let moof = &data[restarted[0].file_offset as usize..];
            // This fixture declares its times in Smooth's tfxd (version 1: a 64-bit time).
            let tfxd = moof
                .windows(4)
                .position(|w| w == [0x6d, 0x1d, 0x9b, 0x05])
                .unwrap();
            let time = u64::from_be_bytes(moof[tfxd + 20..tfxd + 28].try_into().unwrap());
            assert_eq!(time, restarted[0].start);
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn a_resend_with_moved_times_is_refused_and_copies_are_duplicates() {
        let d = temp("moved");
        let isml = restart_channel(&d, false);
        let (head, fragments) = split(&fixture("smooth.ismv"));
        let stream = [head.clone(), fragments.concat()].concat();
        send(&isml, &stream, 100_000).unwrap();
        let held = media_records(&d, &isml, 0);
        // The same again moments later (a redundant encoder): duplicates, 200.
        let copy = send(&isml, &stream, 101_000).unwrap();
        assert_eq!(copy.fragments, 0);
        assert!(copy.duplicates > 0);
        // The newest video fragment re-sent half a second later in media time: 409.
        let last_video = fragments
            .iter()
            .rev()
            .find(|f| {
                let id = single_track_id(&RawFragment {
                    bytes: f.to_vec(),
                    moof_len: u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
                    stream_offset: 0,
                    last: false,
                })
                .unwrap();
                id == 1
            })
            .unwrap();
        let mut moved = last_video.clone();
        crate::live::timeline::shift_decode_times(&mut moved, 5_000_000).unwrap();
        let err = send(&isml, &[head, moved].concat(), 102_000).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 409);
        assert_eq!(media_records(&d, &isml, 0), held);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_init_that_changes_a_held_stream_is_refused() {
        let d = temp("init-change");
        let isml = restart_channel(&d, true);
        let bytes = fixture("smooth.ismv");
        let (head, fragments) = split(&bytes);
        send(&isml, &[head.clone(), fragments.concat()].concat(), 100_000).unwrap();
        let held = media_records(&d, &isml, 0);
        // The same encoder with another picture size: the avcC/width in the sample entry
        // differ. Flip a byte of the video sample entry's width.
        let mut changed = head.clone();
        let avc1 = changed.windows(4).position(|w| w == b"avc1").unwrap();
        // width sits 24 bytes into the avc1 body (after 6 reserved, 2 index, 16 predefined).
        changed[avc1 + 4 + 24] ^= 0x01;
        let err = send(&isml, &[changed, fragments.concat()].concat(), 200_000).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 409);
        assert_eq!(media_records(&d, &isml, 0), held);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
