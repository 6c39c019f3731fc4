//! One ingest request as a pure state machine: the body's boxes (see [`super::ingest`]) become
//! tracks of the channel and operations on its archive ([`ArchiveOp`]). The session does no
//! I/O: its driver runs the operations it queued (see [`super::store`]) and feeds it more of the
//! body only once they are done, so a driver can run them off its event loop (nginx's thread
//! pool) and still acknowledge a request only once everything it brought is durable.
//!
//! A session learns its tracks from the init segment the stream carries, or, for an encoder
//! that POSTs each CMAF segment on its own, from the init segment an earlier request of the
//! same stream left in the archive (read when the session starts). Each fragment is checked by
//! indexing its `moof` against that init segment and the size its `mdat` announces (so garbage,
//! a fragment of an unknown track or samples past their `mdat` are refused before any of its
//! payload is taken), assembled with the ones after it when the encoder sends one `moof` per
//! frame, and appended to its track.
//!
//! Memory is bounded whatever the fragments' size: a small payload is kept in memory until its
//! record is written; a large one is queued for the session's spool file (see
//! [`super::spool`]) in pieces of [`SPOOL_WINDOW`] as it arrives, and its record moves it from
//! there into the track's data file. A box that does not arrive whole within the session's
//! [`IngestLimits::box_timeout_ms`] is refused (408), so a client sending a byte now and then
//! cannot hold memory, a spool or a connection for ever.

use std::sync::Arc;

use super::archive::{track_dir_name, Retention, Timing, FLAG_CLOSES, FLAG_CONTINUES, FLAG_SYNC};
use super::ingest::{Event, FragmentHead, IngestError, IngestParser, MAX_FRAGMENT};
use super::record_bytes::{FragmentBytes, Payload, RecordBytes};
use super::timeline::{grid_cell, length_ticks};
use crate::index::default_track_name;
use crate::index::{build_index, MediaIndex, TrackIndex, TrackKind};
use crate::ism::{ServerManifest, TrackEntry, TrackKind as IsmKind};
use crate::mp4::reader::{FourCC, Reader};
use crate::source::{Backing, PiecesSource, SourceIdentity};

/// Segment length audio and text chunks are grouped to when the encoder sends them in pieces
/// shorter than that and the channel sets no minimum.
pub const DEFAULT_ASSEMBLY_SECS: u64 = 2;
/// Default length of a data file of the archive.
pub const DEFAULT_ARCHIVE_SEGMENT_SECS: u64 = 60;
/// Seconds kept past the DVR window (three 2-second segments).
pub const MIN_WINDOW_MARGIN_SECS: u64 = 6;
/// Default DVR window.
pub const DEFAULT_DVR_WINDOW_SECS: u64 = 30;
/// A fragment whose payload is at most this is kept in memory until its record is written; a
/// larger one goes to the spool file as it arrives.
pub const IN_MEMORY_PAYLOAD: u64 = 2 << 20;
/// Bytes of a large fragment's payload gathered before they are queued for the spool file:
/// the window of it held in memory.
pub const SPOOL_WINDOW: usize = 1 << 20;
/// Most chunks one segment is made of (a GOP of 10 s at 60 frames a second, a chunk per
/// frame, is 600).
pub const MAX_SEGMENT_CHUNKS: usize = 2048;
/// Default time a box (a fragment: `moof` and `mdat`) may take to arrive whole.
pub const DEFAULT_BOX_TIMEOUT_MS: u64 = 30_000;

/// What one ingest request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest fragment (`moof` + `mdat`), refused at its `mdat` header (413).
    pub max_fragment: u64,
    /// Milliseconds a box or fragment may take from its first byte to its last (408 past
    /// them); 0: no limit.
    pub box_timeout_ms: u64,
    /// Largest payload kept in memory ([`IN_MEMORY_PAYLOAD`]); larger ones are spooled.
    pub in_memory_payload: u64,
    /// Bytes of a spooled payload gathered per spool write ([`SPOOL_WINDOW`]).
    pub spool_window: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_fragment: MAX_FRAGMENT,
            box_timeout_ms: DEFAULT_BOX_TIMEOUT_MS,
            in_memory_payload: IN_MEMORY_PAYLOAD,
            spool_window: SPOOL_WINDOW,
        }
    }
}

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
    /// Writes the next piece of a large fragment's payload at `at` in the session's spool
    /// file (made in the archive directory with the first piece).
    Spool { at: u64, bytes: Vec<u8> },
    /// Empties the spool file: nothing queued or waiting refers to it any more.
    ClearSpool,
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

/// See [`ArchiveOp::Append`]: one record's bytes (one fragment, or several assembled) and
/// what the track keeps.
#[derive(Debug)]
pub struct AppendOp {
    pub dir_name: String,
    pub timing: Timing,
    /// Each fragment's `moof` (in memory: absolute data offsets in it count from the `moof`
    /// until the store moves them to where the record is kept) and `mdat` (its payload in
    /// memory or in the session's spool file, written by earlier [`ArchiveOp::Spool`]s).
    pub bytes: RecordBytes,
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
    /// The segment the track's chunks go into.
    segment: GrowingSegment,
}

/// What a track's newest segment holds, as its chunks are appended.
#[derive(Debug, Clone, Copy, Default)]
struct GrowingSegment {
    /// Whether a segment was begun in this session.
    begun: bool,
    /// Decode time of its first chunk.
    start: u64,
    chunks: usize,
    bytes: u64,
    /// The newest chunk closed it: the next starts another.
    closed: bool,
}

/// A fragment that indexed cleanly against its init segment.
struct Checked {
    bytes: FragmentBytes,
    track_id: u32,
    start: u64,
    duration: u64,
    sync: bool,
    /// The last fragment of its stream (`lmsg`).
    last: bool,
    /// A timed-metadata fragment: its cues are checked once its payload is whole.
    metadata: bool,
    /// An `emsg` it came with splices at its first sample (a SCTE-35 cue's start).
    splice: bool,
}

/// A checked fragment whose payload is arriving.
struct Receiving {
    fragment: Checked,
    /// Payload bytes the `mdat` announced, and those received.
    expected: u64,
    received: u64,
    /// For a spooled payload: bytes received and not yet queued for the spool file.
    window: Vec<u8>,
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
    limits: IngestLimits,
    /// The fragment whose payload is arriving.
    receiving: Option<Receiving>,
    /// Bytes of the spool file that queued or waiting fragments use.
    spool_len: u64,
    /// When the box in progress began (ms), while one is.
    box_since_ms: Option<i64>,
}

impl IngestSession {
    /// A session for `Streams(<stream>)` of the channel `start` describes.
    pub fn new(start: SessionStart, stream: &str) -> IngestSession {
        IngestSession::with_limits(start, stream, IngestLimits::default())
    }

    /// A session for `Streams(<stream>)` that takes no more than `limits` allow.
    pub fn with_limits(start: SessionStart, stream: &str, limits: IngestLimits) -> IngestSession {
        IngestSession {
            stream: stream.to_string(),
            archive_name: start.archive_name,
            options: start.options,
            parser: IngestParser::new(limits.max_fragment),
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
            limits,
            receiving: None,
            spool_len: 0,
            box_since_ms: None,
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
        self.check_deadline(now_ms)?;
        let completed = self.parser.completed();
        let was_inside = self.parser.inside_box();
        let mut events = std::mem::take(&mut self.events);
        let result = self
            .parser
            .push(data, &mut events)
            .and_then(|()| self.handle(&mut events, now_ms));
        events.clear();
        self.events = events;
        // A box that began with these bytes is dated now; one still in progress keeps its date.
        self.box_since_ms = match self.box_since_ms {
            _ if !self.parser.inside_box() => None,
            Some(since) if was_inside && self.parser.completed() == completed => Some(since),
            _ => Some(now_ms),
        };
        result
    }

    /// When the box in progress is due (ms), if one is and the limits set a timeout.
    pub fn deadline_ms(&self) -> Option<i64> {
        let timeout = i64::try_from(self.limits.box_timeout_ms).ok()?;
        if timeout == 0 {
            return None;
        }
        Some(self.box_since_ms?.saturating_add(timeout))
    }

    /// Refuses the request (408) when the box in progress is past its deadline.
    pub fn check_deadline(&self, now_ms: i64) -> Result<(), IngestError> {
        match (self.deadline_ms(), self.box_since_ms) {
            (Some(due), Some(since)) if now_ms >= due => Err(IngestError::TooSlow(format!(
                "stream {}: a box begun at offset {} did not arrive whole within {} ms of its \
                 first byte ({} ms)",
                self.stream,
                self.parser.box_offset(),
                self.limits.box_timeout_ms,
                now_ms - since
            ))),
            _ => Ok(()),
        }
    }

    /// Whether some of a box (a fragment) came and not all of it.
    pub fn inside_box(&self) -> bool {
        self.parser.inside_box()
    }

    /// Bytes this session holds in memory: the box in progress and what queued operations
    /// carry.
    pub fn memory(&self) -> u64 {
        let receiving = self
            .receiving
            .as_ref()
            .map_or(0, |r| r.fragment.bytes.in_memory() + r.window.len() as u64);
        let queued: u64 = self
            .ops
            .iter()
            .map(|op| match op {
                ArchiveOp::Spool { bytes, .. } => bytes.len() as u64,
                ArchiveOp::Append(a) => a.bytes.in_memory(),
                _ => 0,
            })
            .sum();
        self.parser.pending() as u64 + receiving + queued
    }

    /// The body ended. A body that ended inside a box is an error (every whole chunk before
    /// it is queued already).
    pub fn finish(&mut self) -> Result<(), IngestError> {
        self.parser.finish()
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
                Event::FragmentStart(head) => {
                    let payload_len = head.payload_len;
                    let fragment = self.check(head)?;
                    self.receive(fragment, payload_len);
                }
                Event::Payload(bytes) => self.take_payload(bytes),
                Event::FragmentEnd => {
                    let Some(r) = self.receiving.take() else {
                        return Err(IngestError::Malformed("payload without a fragment".into()));
                    };
                    let fragment = self.end_payload(r)?;
                    if fragment.metadata {
                        self.check_cues(&fragment)?;
                    }
                    let (last, track_id) = (fragment.last, fragment.track_id);
                    self.add(fragment, now_ms)?;
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
            // The init this stream left re-sent as it was (every per-segment POST may bring
            // it): nothing to compare.
            (None, Some(stored)) if **stored == *init.bytes => None,
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

    /// Indexes a fragment's `moof` against the init segment and its `mdat`'s announced size:
    /// its track, start, duration and whether it starts with a sync sample.
    fn check(&mut self, head: FragmentHead) -> Result<Checked, IngestError> {
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
        let FragmentHead {
            mut moof,
            mdat_header,
            payload_len,
            stream_offset,
            last,
            events,
        } = head;
        let track_id = single_track_id(&moof, stream_offset)?;
        let Some(track) = init.index.track(track_id) else {
            return Err(IngestError::NoInit(format!(
                "fragment of track {track_id}, which the init segment does not announce"
            )));
        };
        if !matches!(
            track.kind,
            TrackKind::Video | TrackKind::Audio | TrackKind::Text | TrackKind::Metadata
        ) {
            return Err(IngestError::Unsupported(format!(
                "track {track_id} is neither video, audio, text nor timed metadata"
            )));
        }
        let metadata = track.kind == TrackKind::Metadata;
        if metadata {
            if crate::events::carriage_of(&track.sample_entry).is_none() {
                return Err(IngestError::Unsupported(format!(
                    "timed-metadata track {track_id} has a {} sample entry: this origin takes \
                     event message tracks (evte) and urim tracks of SCTE-35 or DASH events",
                    track.sample_entry_fourcc
                )));
            }
            // Cues are small, and checked whole before anything is kept.
            let limit = u64::from(crate::events::MAX_METADATA_SAMPLE);
            if payload_len > limit {
                return Err(IngestError::TooLarge {
                    what: "timed-metadata fragment",
                    offset: stream_offset,
                    size: payload_len,
                    limit,
                });
            }
        }
        // Absolute data offsets count from the stream's start: from here on they count from
        // the moof, and the archive moves them to where the fragment is kept.
        let init_len = init.bytes.len() as u64;
        shift_base_offsets(&mut moof, -(stream_offset as i64))?;
        shift_base_offsets(&mut moof, init_len as i64)?;
        // The index needs the moof and where the mdat ends: the payload stands as zeros that
        // nobody reads (its samples must lie within it).
        let moof = Arc::new(moof);
        let mut source = self.fragment_source(init, moof.clone(), mdat_header.clone());
        source.push(payload_len, Backing::Zero);
        let indexed = build_index(&source).map_err(|e| IngestError::Malformed(e.to_string()))?;
        drop(source);
        let mut moof = Arc::try_unwrap(moof).unwrap_or_else(|shared| (*shared).clone());
        shift_base_offsets(&mut moof, -(init_len as i64))?;
        let t = indexed
            .track(track_id)
            .filter(|t| t.sample_count() > 0)
            .ok_or_else(|| IngestError::Malformed("a fragment without samples".into()))?;
        let start = declared_start(t);
        let first_sample = t.sample_end(0).saturating_sub(t.dts(0)).max(1);
        let splice = self.check_emsg(&events, start, first_sample, t.timescale)?;
        Ok(Checked {
            track_id,
            start,
            duration: t.end_time().saturating_sub(t.dts(0)),
            sync: t.is_sync(0),
            last,
            metadata,
            splice,
            bytes: FragmentBytes {
                events,
                moof,
                mdat_header,
                // Placed by `receive`.
                payload: Payload::Memory(Vec::new()),
            },
        })
    }

    /// A fragment as the index reads it: the stream's init segment, the `moof` (its absolute
    /// data offsets counting from the init's start) and the `mdat` header; the payload is
    /// the caller's to add.
    fn fragment_source(
        &self,
        init: &Init,
        moof: Arc<Vec<u8>>,
        mdat_header: Vec<u8>,
    ) -> PiecesSource {
        let mut source = PiecesSource::new(
            format!("{} fragment", self.stream),
            SourceIdentity::Memory {
                name: self.stream.clone(),
                size: 0,
            },
        );
        source.push_bytes(init.bytes.clone());
        source.push_bytes(moof);
        source.push_bytes(Arc::new(mdat_header));
        source
    }

    /// Refuses a fragment whose `emsg` boxes do not read, or carry a SCTE-35 cue that does not
    /// (see [`crate::events::checked`]): before any of its payload is taken. Says whether a
    /// cue starts within the fragment's first sample (`first_sample` ticks from `start`): a
    /// splice point the encoder put at the fragment's start.
    fn check_emsg(
        &self,
        events: &[u8],
        start: u64,
        first_sample: u64,
        timescale: u32,
    ) -> Result<bool, IngestError> {
        let mut r = Reader::new(events, 0);
        let bad = |what: String| {
            IngestError::BadCue(format!(
                "stream {}: an emsg before the fragment at {start} ({timescale} Hz): {what}; \
                 the fragment is not archived",
                self.stream
            ))
        };
        let mut splice = false;
        while let Some((_, body)) = r.next_box_body().map_err(|e| bad(e.to_string()))? {
            let message = crate::mp4::emsg::read_emsg(body).map_err(|e| bad(e.to_string()))?;
            let event = crate::events::event_of_emsg(message, start, timescale)
                .map_err(|e| bad(e.to_string()))?;
            let at = (u128::from(event.time) * u128::from(timescale)
                / u128::from(event.timescale.max(1))) as u64;
            splice |= event.is_scte35() && at >= start && at - start < first_sample;
        }
        Ok(splice)
    }

    /// Refuses a timed-metadata fragment any of whose samples does not read as events (a
    /// SCTE-35 cue with a bad length or CRC, a broken event box): none of it is archived, and
    /// no manifest ever carries it.
    fn check_cues(&self, fragment: &Checked) -> Result<(), IngestError> {
        let (Some(init), Payload::Memory(payload)) = (&self.init, &fragment.bytes.payload) else {
            return Err(IngestError::Malformed(
                "a timed-metadata fragment without its init segment or payload".into(),
            ));
        };
        let mut moof = fragment.bytes.moof.clone();
        shift_base_offsets(&mut moof, init.bytes.len() as i64)?;
        let mut source =
            self.fragment_source(init, Arc::new(moof), fragment.bytes.mdat_header.clone());
        source.push_bytes(Arc::new(payload.clone()));
        let indexed = build_index(&source).map_err(|e| IngestError::Malformed(e.to_string()))?;
        let Some(t) = indexed.track(fragment.track_id) else {
            return Ok(());
        };
        let samples = crate::index::sample_events(t, &source)
            .map_err(|e| IngestError::Malformed(e.to_string()))?;
        for (i, events) in samples.into_iter().enumerate() {
            if let Err(e) = events {
                return Err(IngestError::BadCue(format!(
                    "stream {}: sample {} of the fragment at {} ({} Hz): {e}; the fragment \
                     is not archived",
                    self.stream,
                    i + 1,
                    fragment.start,
                    t.timescale
                )));
            }
        }
        Ok(())
    }

    /// A checked fragment's payload is to come: kept in memory when it is small, else
    /// spooled.
    fn receive(&mut self, mut fragment: Checked, payload_len: u64) {
        fragment.bytes.payload =
            if payload_len <= self.limits.in_memory_payload || fragment.metadata {
                Payload::Memory(Vec::with_capacity(payload_len as usize))
            } else {
                let offset = self.spool_len;
                self.spool_len += payload_len;
                Payload::Spooled {
                    offset,
                    len: payload_len,
                }
            };
        self.receiving = Some(Receiving {
            fragment,
            expected: payload_len,
            received: 0,
            window: Vec::new(),
        });
    }

    /// The next payload bytes of the fragment being received.
    fn take_payload(&mut self, bytes: Vec<u8>) {
        let Some(r) = self.receiving.as_mut() else {
            return;
        };
        let at = r.received;
        r.received += bytes.len() as u64;
        match &mut r.fragment.bytes.payload {
            Payload::Memory(held) => held.extend_from_slice(&bytes),
            Payload::Spooled { offset, .. } => {
                let start = *offset + at - r.window.len() as u64;
                let window = self.limits.spool_window.max(1);
                if r.window.is_empty() && bytes.len() >= window {
                    self.ops.push(ArchiveOp::Spool { at: start, bytes });
                    return;
                }
                r.window.extend_from_slice(&bytes);
                if r.window.len() >= window {
                    let bytes = std::mem::take(&mut r.window);
                    self.ops.push(ArchiveOp::Spool { at: start, bytes });
                }
            }
        }
    }

    /// The fragment's payload is complete: its last piece is queued for the spool file.
    fn end_payload(&mut self, mut r: Receiving) -> Result<Checked, IngestError> {
        if let Payload::Spooled { offset, .. } = r.fragment.bytes.payload {
            if !r.window.is_empty() {
                let bytes = std::mem::take(&mut r.window);
                let at = offset + r.received - bytes.len() as u64;
                self.ops.push(ArchiveOp::Spool { at, bytes });
            }
        }
        // The parser frames the payload by the announced size: a difference is a fault here.
        if r.received != r.expected || r.fragment.bytes.payload.len() != r.expected {
            return Err(IngestError::Malformed(format!(
                "an mdat announced {} bytes of payload, {} came",
                r.expected, r.received
            )));
        }
        Ok(r.fragment)
    }

    /// Queues a chunk (an encoder's fragment) as a record of its own, durable and visible as
    /// soon as it is written, and says whether it starts, continues or closes its track's
    /// segment.
    ///
    /// A segment starts with a chunk that begins a GOP (video; any chunk for audio and text)
    /// where that chunk enters the next multiple of the segment length on the media timeline
    /// (the channel's minimum fragment length, else a second for video — so a GOP of a second
    /// or more — and [`DEFAULT_ASSEMBLY_SECS`] for the rest; see [`grid_cell`]). A segment
    /// that never gets there (no sync sample, samples of no duration) is cut at
    /// [`MAX_SEGMENT_CHUNKS`] chunks or the largest fragment size. A video chunk that is a
    /// whole segment on its own (an encoder that sends whole GOPs) closes it, as does the
    /// audio chunk that reaches the next multiple: readers then need not wait for the next.
    fn add(&mut self, fragment: Checked, now_ms: i64) -> Result<(), IngestError> {
        let k = match self
            .tracks
            .iter()
            .position(|t| t.track_id == fragment.track_id)
        {
            Some(k) => k,
            None => self.open_track(fragment.track_id)?,
        };
        let target = self.assembly_ticks(&self.tracks[k]);
        let max_bytes = self.limits.max_fragment;
        // A splice point an encoder marks in band starts a segment, so an ad can replace
        // whole segments from there; not on a declared segment grid, whose numbers count its
        // cells (a second segment in a cell would take the first's number).
        let spliced = fragment.splice && fragment.sync && self.options.minimum_fragment.is_none();
        let t = &mut self.tracks[k];
        let video = t.kind == TrackKind::Video;
        let boundary = fragment.sync || !video;
        let size = fragment.bytes.len();
        let segment = t.segment;
        // Segments are anchored to the media timeline: a boundary where a chunk enters the
        // next multiple of the target, so every origin fed the stream cuts it alike whenever
        // it joined.
        let starts = !segment.begun
            || segment.closed
            || spliced
            || (boundary && grid_cell(fragment.start, target) > grid_cell(segment.start, target))
            || segment.chunks >= MAX_SEGMENT_CHUNKS
            || segment.bytes + size > max_bytes;
        if starts {
            t.segment = GrowingSegment {
                begun: true,
                start: fragment.start,
                ..GrowingSegment::default()
            };
        }
        t.segment.chunks += 1;
        t.segment.bytes += size;
        t.segment.closed = if t.kind == TrackKind::Metadata {
            // Events, not media: each fragment is whole when it lands (a sparse track's next
            // fragment may be minutes away), so readers show it at once.
            true
        } else if video {
            // The next video chunk starts a segment only if it starts a GOP: known ahead only
            // of an encoder that sends a whole GOP per fragment.
            starts && fragment.sync && fragment.duration >= target
        } else {
            let end = fragment.start.saturating_add(fragment.duration);
            grid_cell(end, target) > grid_cell(t.segment.start, target)
        };
        let mut flags = 0;
        if fragment.sync {
            flags |= FLAG_SYNC;
        }
        if !starts {
            flags |= FLAG_CONTINUES;
        }
        if t.segment.closed {
            flags |= FLAG_CLOSES;
        }
        let timing = Timing {
            start: fragment.start,
            duration: fragment.duration,
            flags,
            timescale: t.timescale,
        };
        self.ops.push(ArchiveOp::Append(Box::new(AppendOp {
            dir_name: t.dir_name.clone(),
            timing,
            // The chunk's bytes move, uncopied.
            bytes: RecordBytes {
                fragments: vec![fragment.bytes],
            },
            retention: self.options.retention(t.timescale),
            timescale: t.timescale,
            now_ms,
        })));
        self.clear_spool_when_unused();
        Ok(())
    }

    /// Ticks a segment is grouped to: the channel's minimum fragment length, else a second
    /// for video (segments then close at the first sync sample after it: a GOP) and
    /// [`DEFAULT_ASSEMBLY_SECS`] for the rest.
    fn assembly_ticks(&self, t: &TrackIngest) -> u64 {
        match self.options.minimum_fragment {
            Some(length) => length_ticks(length, t.timescale),
            None if t.kind == TrackKind::Video => u64::from(t.timescale),
            None => DEFAULT_ASSEMBLY_SECS * u64::from(t.timescale),
        }
    }

    /// Queues the spool file's emptying once no fragment queued from now on refers to it (the
    /// operations queued so far run first).
    fn clear_spool_when_unused(&mut self) {
        let receiving = self
            .receiving
            .as_ref()
            .is_some_and(|r| r.fragment.bytes.spooled());
        if self.spool_len > 0 && !receiving {
            self.ops.push(ArchiveOp::ClearSpool);
            self.spool_len = 0;
        }
    }

    fn end_tracks(&mut self, track: Option<u32>, now_ms: i64) {
        for k in 0..self.tracks.len() {
            if track.is_some_and(|id| id != self.tracks[k].track_id) {
                continue;
            }
            self.ops.push(ArchiveOp::EndStream {
                dir_name: self.tracks[k].dir_name.clone(),
                now_ms,
            });
        }
        self.summary.ended = true;
    }

    /// Registers the track of a first fragment: its directory in the archive and its entry in
    /// the server manifest.
    fn open_track(&mut self, track_id: u32) -> Result<usize, IngestError> {
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
            segment: GrowingSegment::default(),
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
fn single_track_id(moof: &[u8], stream_offset: u64) -> Result<u32, IngestError> {
    let mut r = Reader::new(moof, stream_offset);
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

/// Moves the absolute offsets of each `moof` of a record to where the record sits in the
/// track's virtual file (`vpos`).
pub(crate) fn shift_record_offsets(bytes: &mut RecordBytes, vpos: u64) -> Result<(), IngestError> {
    for (at, moof) in bytes.moofs_mut() {
        shift_base_offsets(moof, (vpos + at) as i64)?;
    }
    Ok(())
}

/// The server-manifest entry of a track: name and bitrate from the Smooth announcement when
/// there is one, else from the media (`btrt`, or [`nominal_bitrate`]); a stream that carries
/// one track is named after the stream.
fn track_entry(
    track: &TrackIndex,
    announced: Option<&ServerManifest>,
    stream: Option<&str>,
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
        .unwrap_or_else(|| nominal_bitrate(track));
    let mut entry = TrackEntry::new(kind, "");
    entry.system_bitrate = Some(bitrate);
    entry.system_language = language;
    entry.set_param("trackID", &track.track_id.to_string());
    entry.set_param("trackName", &name);
    entry.set_param("timescale", &track.timescale.to_string());
    Ok(entry)
}

/// A track's bitrate when its encoder declares none (no `btrt`, no Smooth announcement): a
/// nominal figure from what the init segment says (about 3 bits per pixel per second for video,
/// 128 kbit/s for audio), so that every origin fed the same stream names the track alike — a
/// rate measured from the first fragment an origin happened to see would differ between them.
fn nominal_bitrate(track: &TrackIndex) -> u64 {
    match track.kind {
        TrackKind::Video => {
            (u64::from(track.width) * u64::from(track.height) * 3 / 1000).max(1) * 1000
        }
        TrackKind::Audio => 128_000,
        _ => 1000,
    }
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
    use crate::live::archive::{archive_dir, read_records};
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
        s.finish().unwrap()
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
        s.finish().unwrap();
        let ops = s.take_ops();
        let kinds: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                ArchiveOp::CreateChannel => "create",
                ArchiveOp::StoreStreamInit { .. } => "init",
                ArchiveOp::OpenTrack(_) => "open",
                ArchiveOp::Spool { .. } => "spool",
                ArchiveOp::ClearSpool => "clear",
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
                assert!(a.bytes.len() > a.bytes.fragments.len() as u64 * 8);
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
    fn a_minimum_fragment_length_groups_chunks_into_segments() {
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
        // Two 2-second fragments are two chunks of one 4-second segment, each written as it
        // came.
        let media: Vec<_> = records.iter().filter(|r| !r.is_end_marker()).collect();
        assert_eq!(media.len(), 2, "{media:?}");
        assert!(media[0].starts_segment() && !media[1].starts_segment());
        assert_eq!(media[0].seq, media[1].seq);
        assert_eq!(media[0].end(), media[1].start);
        let snap = crate::live::channel::ChannelReader::new()
            .snapshot(&isml, 2_000_000)
            .unwrap();
        let w = crate::live::window::window(
            &snap,
            crate::live::window::WindowRequest {
                dvr_window_secs: 30,
                now_ms: 2_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(w.info.cuts[0].starts, vec![0]);
        assert_eq!(w.tracks[0].1.len(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_segment_stops_at_the_size_of_the_largest_fragment() {
        // Segments of 1000 s are never reached: without a bound every chunk joins one.
        let manifest = br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
            <meta name="mpd_minimum_fragment_length" content="1000"/></head><body/></smil>"#;
        let limits = IngestLimits {
            max_fragment: 60_000,
            ..IngestLimits::default()
        };
        let d = temp("assembly-bound");
        let isml = d.join("ch.isml");
        std::fs::write(&isml, manifest).unwrap();
        let mut s = DirectIngest::open_with(
            &isml,
            "s1",
            &crate::live::limits::IngestPolicy::creating(true),
            limits,
        )
        .unwrap();
        let bytes = fixture("smooth.ismv");
        let mut pending_records = 0;
        for c in bytes.chunks(4093) {
            s.push(c, 1_000).unwrap();
            let manifest = std::fs::read(&isml).unwrap();
            if let Some(video) = ServerManifest::parse(&manifest).unwrap().tracks.first() {
                let (records, _) = read_records(&d.join(&video.src).join("records")).unwrap();
                pending_records = records.len();
            }
        }
        // Chunks were written before the body ended.
        assert!(pending_records >= 1);
        s.finish().unwrap();
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        for (k, t) in manifest.tracks.iter().enumerate() {
            let (records, _) = read_records(&d.join(&t.src).join("records")).unwrap();
            let media: Vec<_> = records.iter().filter(|r| !r.is_end_marker()).collect();
            // The video's two fragments (about 50 KB each) would not fit one segment.
            if k == 0 {
                assert_eq!(media.len(), 2, "{media:?}");
                assert_eq!(media[0].end(), media[1].start);
                assert!(media.iter().all(|r| r.starts_segment()), "{media:?}");
                assert_eq!(media[1].seq, media[0].seq + 1);
            }
            assert!(
                media.iter().all(|r| u64::from(r.size) <= 60_000),
                "{media:?}"
            );
        }
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
        let summary = s.finish().unwrap();
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
        assert!(s.push(&junk, 1 << 20).is_err() || s.finish().is_err());
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
        s.finish()
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
                let moof_len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
                let id = single_track_id(&f[..moof_len], 0).unwrap();
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

    /// Every file under `dir` (relative name, bytes), sorted.
    fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let name = path.strip_prefix(dir).unwrap().display().to_string();
                    out.push((name, std::fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    /// Pushes `bytes` in chunks with `limits`; the archive's files after it.
    fn archive_after(
        name: &str,
        manifest: &[u8],
        bytes: &[u8],
        limits: IngestLimits,
    ) -> Vec<(String, Vec<u8>)> {
        let d = temp(name);
        let isml = d.join("ch.isml");
        std::fs::write(&isml, manifest).unwrap();
        let mut s = DirectIngest::open_with(
            &isml,
            "s1",
            &crate::live::limits::IngestPolicy::creating(true),
            limits,
        )
        .unwrap();
        for c in bytes.chunks(4093) {
            s.push(c, 1_000).unwrap();
            // What the session holds is its window, whatever the fragments' size.
            if limits.in_memory_payload == 0 {
                assert!(
                    s.session.memory() <= 2 * 4093 + (4 << 10),
                    "{}",
                    s.session.memory()
                );
            }
        }
        s.finish().unwrap();
        let files = tree(&archive_dir(&isml));
        std::fs::remove_dir_all(&d).unwrap();
        files
    }

    const NO_OPTIONS: &[u8] =
        br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body/></smil>"#;
    const ASSEMBLED: &[u8] = br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
            <meta name="mpd_minimum_fragment_length" content="4"/></head><body/></smil>"#;

    #[test]
    fn spooled_payloads_make_the_same_archive_as_payloads_in_memory() {
        let spooled = IngestLimits {
            in_memory_payload: 0,
            spool_window: 1000,
            ..IngestLimits::default()
        };
        for (name, manifest) in [("plain", NO_OPTIONS), ("assembled", ASSEMBLED)] {
            let bytes = fixture("smooth.ismv");
            let in_memory = archive_after(
                &format!("mem-{name}"),
                manifest,
                &bytes,
                IngestLimits::default(),
            );
            let from_spool = archive_after(&format!("spool-{name}"), manifest, &bytes, spooled);
            assert!(in_memory.iter().any(|(n, _)| n.ends_with(".frag")));
            assert_eq!(
                in_memory.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                from_spool.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
            assert!(in_memory == from_spool, "{name}: the archives differ");
            // No spool file is left in the archive.
            assert!(!from_spool.iter().any(|(n, _)| n.contains("spool")));
        }
    }

    #[test]
    fn a_large_payload_is_queued_in_windows_and_the_spool_emptied_after_its_record() {
        let start = SessionStart {
            options: ChannelOptions::of(&ServerManifest::default()).unwrap(),
            stored_init: None,
            archive_name: "ch.isml.archive".into(),
            held_tracks: Vec::new(),
        };
        let limits = IngestLimits {
            in_memory_payload: 0,
            spool_window: 1000,
            ..IngestLimits::default()
        };
        let mut s = IngestSession::with_limits(start, "s1", limits);
        for c in fixture("cmaf-video.cmfv").chunks(777) {
            s.push(c, 1_000).unwrap();
        }
        s.finish().unwrap();
        let ops = s.take_ops();
        let mut spooled_to = 0;
        let mut appended = 0;
        for op in &ops {
            match op {
                ArchiveOp::Spool { at, bytes } => {
                    // Written in order, one window (or the payload's end) at a time.
                    assert_eq!(*at, spooled_to);
                    assert!(bytes.len() <= 1000 + 777, "{}", bytes.len());
                    spooled_to += bytes.len() as u64;
                }
                ArchiveOp::Append(a) => {
                    appended += 1;
                    for f in &a.bytes.fragments {
                        let Payload::Spooled { offset, len } = f.payload else {
                            panic!("a payload in memory");
                        };
                        assert!(offset + len <= spooled_to);
                    }
                }
                ArchiveOp::ClearSpool => spooled_to = 0,
                _ => {}
            }
        }
        assert!(appended > 1);
        // Each record's payload left the spool, which was emptied behind it.
        assert!(matches!(ops.last(), Some(ArchiveOp::EndStream { .. })));
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, ArchiveOp::ClearSpool))
                .count(),
            appended
        );
    }

    /// The first fragment of the CMAF fixture: (moof at, mdat at, mdat end).
    fn first_fragment(bytes: &[u8]) -> (usize, usize, usize) {
        let moof = bytes.windows(4).position(|w| w == b"moof").unwrap() - 4;
        let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap() - 4;
        let size = u32::from_be_bytes(bytes[mdat..mdat + 4].try_into().unwrap()) as usize;
        (moof, mdat, mdat + size)
    }

    fn with_mdat_resized(bytes: &[u8], delta: isize) -> Vec<u8> {
        let (_, mdat, end) = first_fragment(bytes);
        let mut out = bytes[..end].to_vec();
        if delta < 0 {
            out.truncate((end as isize + delta) as usize);
        } else {
            out.extend(std::iter::repeat_n(0u8, delta as usize));
        }
        let size = ((end - mdat) as isize + delta) as u32;
        out[mdat..mdat + 4].copy_from_slice(&size.to_be_bytes());
        out
    }

    #[test]
    fn an_mdat_shorter_than_its_moof_says_is_refused_before_its_payload() {
        let d = temp("short-mdat");
        let isml = d.join("ch.isml");
        let bytes = with_mdat_resized(&fixture("cmaf-video.cmfv"), -100);
        let (moof, mdat, _) = first_fragment(&bytes);
        let mut s = DirectIngest::open(&isml, "video.cmfv", true).unwrap();
        // The moof and the mdat's header only: refused before a byte of payload comes.
        let err = s.push(&bytes[..mdat + 8], 1_000).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 400);
        assert!(moof < mdat);
        assert_eq!(s.session.summary().fragments, 0);
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        assert!(manifest.tracks.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_mdat_longer_than_its_moof_says_is_stored_as_sent() {
        let d = temp("long-mdat");
        let isml = d.join("ch.isml");
        let original = fixture("cmaf-video.cmfv");
        let (_, _, end) = first_fragment(&original);
        let bytes = with_mdat_resized(&original, 100);
        let summary = push(&isml, "video.cmfv", &bytes, 1000);
        assert_eq!(summary.fragments, 1);
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        let dir = d.join(&manifest.tracks[0].src);
        let (records, _) = read_records(&dir.join("records")).unwrap();
        let (moof, _, _) = first_fragment(&original);
        assert_eq!(records[0].size as usize, end - moof + 100);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_body_that_ends_inside_a_payload_stores_nothing_of_that_fragment() {
        let d = temp("cut-payload");
        let isml = d.join("ch.isml");
        let bytes = fixture("cmaf-video.cmfv");
        let (_, mdat, end) = first_fragment(&bytes);
        let limits = IngestLimits {
            in_memory_payload: 0,
            spool_window: 100,
            ..IngestLimits::default()
        };
        let mut s = DirectIngest::open_with(
            &isml,
            "video.cmfv",
            &crate::live::limits::IngestPolicy::creating(true),
            limits,
        )
        .unwrap();
        s.push(&bytes[..(mdat + end) / 2], 1_000).unwrap();
        assert!(matches!(s.finish(), Err(IngestError::Truncated { .. })));
        let manifest = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        assert!(manifest.tracks.is_empty());
        // What was spooled went with the spool file.
        assert!(!tree(&archive_dir(&isml))
            .iter()
            .any(|(n, _)| n.contains("spool")));
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

    #[test]
    fn a_box_that_does_not_arrive_whole_in_time_is_refused() {
        let start = || SessionStart {
            options: ChannelOptions::of(&ServerManifest::default()).unwrap(),
            stored_init: None,
            archive_name: "ch.isml.archive".into(),
            held_tracks: Vec::new(),
        };
        let limits = IngestLimits {
            box_timeout_ms: 1_000,
            ..IngestLimits::default()
        };
        let bytes = fixture("cmaf-video.cmfv");
        let (moof, _, end) = first_fragment(&bytes);
        let mut s = IngestSession::with_limits(start(), "v", limits);
        assert_eq!(s.deadline_ms(), None);
        s.push(&bytes[..moof], 0).unwrap();
        // Between boxes nothing is due.
        assert_eq!(s.deadline_ms(), None);
        s.push(&bytes[moof..moof + 10], 5_000).unwrap();
        assert_eq!(s.deadline_ms(), Some(6_000));
        // Bytes now and then do not move the deadline.
        s.push(&bytes[moof + 10..moof + 20], 5_900).unwrap();
        assert_eq!(s.deadline_ms(), Some(6_000));
        assert!(s.check_deadline(5_999).is_ok());
        let err = s.push(&bytes[moof + 20..moof + 30], 6_000).unwrap_err();
        assert_eq!(crate::Error::from(err).status(), 408);
        // A fragment that arrives whole in time, then the next one dated from its own start.
        let mut s = IngestSession::with_limits(start(), "v", limits);
        s.push(&bytes[..moof + 10], 0).unwrap();
        s.push(&bytes[moof + 10..end + 4], 900).unwrap();
        assert_eq!(s.deadline_ms(), Some(1_900));
        // No limit: nothing is due.
        let mut s = IngestSession::with_limits(
            start(),
            "v",
            IngestLimits {
                box_timeout_ms: 0,
                ..limits
            },
        );
        s.push(&bytes[..moof + 10], 0).unwrap();
        assert_eq!(s.deadline_ms(), None);
        assert!(s.push(&bytes[moof + 10..], i64::MAX / 2).is_ok());
    }
}
