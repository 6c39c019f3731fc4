//! A media index as a stored entry: the bytes the index store keeps for one version of a
//! source, and their reading back.
//!
//! An entry is a header (magic, format version, the layout of this build's run types, the
//! body's length and checksum) and a body: the source's identity, the index's scalars, and
//! for each track its header values, its events and its tables. A table is its length and
//! then its values, 8-byte aligned, exactly as they lie in memory, so [`read`] hands them to
//! the index as windows of the entry's bytes ([`Table::Stored`]) without copying or parsing
//! them. Everything else (names, the sample entry, events) is small and copied out.
//!
//! Nothing in an entry is trusted: the reader checks the header, the checksum of the whole
//! body, that the identity is the one asked for, every length against the bytes that remain,
//! and then every invariant the index's lookups rely on (runs that cover the samples in
//! order, sync samples in range, offsets inside the file), so a corrupt, truncated, foreign or
//! planted entry is refused and the index is built again from the source.

use std::sync::Arc;

use bytemuck::Pod;

use super::{
    ChunkMap, ChunkOffsets, ChunkRun, CtoRun, Ctos, Edit, FragmentRef, MediaIndex, Sizes, Table,
    TimeRun, TrackIndex, TrackKind,
};
use crate::events::{TimedEvent, MAX_EVENTS_PER_TRACK, MAX_EVENT_MESSAGE};
use crate::index::table::EntryBytes;
use crate::mp4::reader::FourCC;
use crate::source::SourceIdentity;

/// The first bytes of every entry.
pub const MAGIC: [u8; 8] = *b"NGXOIDX\0";
/// Changes whenever the body's layout changes: entries of another version are rebuilt.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 40;
/// Largest entry read (a 2-hour title's is about 3 MB).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;
/// Most tracks an entry may list.
const MAX_TRACKS: u32 = 4096;
/// Most sample descriptions bytes, names, brands: bounded by what a `moov` allows anyway.
const MAX_BLOB: u32 = 16 << 20;
/// Written native-endian: an entry written on a machine of the other byte order reads back
/// as a foreign layout.
const BYTE_ORDER: u32 = 0x0102_0304;

/// The sizes of the run types, as this build lays them out: part of the header, so a build
/// whose layout differs refuses older entries instead of misreading them.
fn layout() -> u32 {
    use std::mem::size_of;
    (size_of::<TimeRun>() as u32) << 24
        | (size_of::<CtoRun>() as u32) << 16
        | (size_of::<ChunkRun>() as u32) << 8
        | size_of::<FragmentRef>() as u32
}

/// Why a stored entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("not an index entry (bad magic)")]
    Magic,
    #[error("an entry of format version {0}, this build reads {FORMAT_VERSION}")]
    Version(u32),
    #[error("an entry written with another byte order or layout")]
    Layout,
    #[error("a truncated entry ({0})")]
    Truncated(&'static str),
    #[error("the entry's checksum does not match its bytes")]
    Checksum,
    #[error("an entry for another source")]
    Foreign,
    #[error("an inconsistent entry: {0}")]
    Invalid(&'static str),
}

/// The bytes that identify one version of a source in the store; `None` for sources the
/// store does not keep (live windows, subclips, bytes in memory, remote objects whose server
/// gives no ETag or Last-Modified, which could change unseen).
pub fn identity_key(identity: &SourceIdentity) -> Option<Vec<u8>> {
    match identity {
        SourceIdentity::File { .. } => {}
        SourceIdentity::Remote { version, .. } if !version.is_empty() => {}
        _ => return None,
    }
    // The identity's stable encoding (the one ETags are made of).
    let mut key = Vec::new();
    identity.write_fingerprint(&mut key);
    Some(key)
}

/// The entry of `index`, whose source identity's key is `key` ([`identity_key`]).
pub fn write(index: &MediaIndex, key: &[u8]) -> Vec<u8> {
    let mut out = Out::default();
    out.buf.resize(HEADER_LEN, 0);
    out.bytes(key);
    out.opt_fourcc(index.major_brand);
    out.u32(index.compatible_brands.len() as u32);
    for b in &index.compatible_brands {
        out.buf.extend_from_slice(&b.0);
    }
    out.u32(index.movie_timescale);
    out.u8(u8::from(index.fragmented));
    out.u64(index.file_size);
    out.u32(index.tracks.len() as u32);
    for t in &index.tracks {
        write_track(&mut out, t);
    }
    let header = header_of(&out.buf[HEADER_LEN..]);
    out.buf[..HEADER_LEN].copy_from_slice(&header);
    out.buf
}

/// A whole entry around `body`, with a header that says its length and checksum (the fuzzer
/// seals what it makes up, so that the body's reader is reached past the checksum).
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut entry = header_of(body).to_vec();
    entry.extend_from_slice(body);
    entry
}

fn header_of(body: &[u8]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
    header[12..16].copy_from_slice(&BYTE_ORDER.to_ne_bytes());
    header[16..20].copy_from_slice(&layout().to_ne_bytes());
    header[24..32].copy_from_slice(&(body.len() as u64).to_ne_bytes());
    header[32..40].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_ne_bytes());
    header
}

fn write_track(out: &mut Out, t: &TrackIndex) {
    out.u32(t.track_id);
    out.u8(kind_code(t.kind));
    out.u32(t.timescale);
    out.bytes(t.language.as_bytes());
    out.bytes(t.handler_name.as_bytes());
    out.u32(t.width);
    out.u32(t.height);
    out.bytes(&t.sample_entry);
    out.buf.extend_from_slice(&t.sample_entry_fourcc.0);
    match t.edit {
        None => out.u8(0),
        Some(e) => {
            out.u8(1);
            out.u64(e.media_time as u64);
            out.u64(e.empty_duration);
        }
    }
    out.u32(t.sample_count);
    out.u64(t.total_bytes);
    match &t.sizes {
        Sizes::Constant(s) => {
            out.u8(0);
            out.u32(*s);
        }
        Sizes::PerSample(v) => {
            out.u8(1);
            out.table(v);
        }
    }
    out.table(&t.times);
    match &t.ctos {
        Ctos::Zero => out.u8(0),
        Ctos::Runs(r) => {
            out.u8(1);
            out.table(r);
        }
        Ctos::PerSample(v) => {
            out.u8(2);
            out.table(v);
        }
    }
    out.table(&t.chunks.runs);
    match &t.chunks.offsets {
        ChunkOffsets::Narrow(v) => {
            out.u8(0);
            out.table(v);
        }
        ChunkOffsets::Wide(v) => {
            out.u8(1);
            out.table(v);
        }
    }
    out.u32(t.chunks.samples);
    match &t.sync {
        None => out.u8(0),
        Some(s) => {
            out.u8(1);
            out.table(s);
        }
    }
    out.table(&t.fragments);
    out.u32(t.events.len() as u32);
    for e in &t.events {
        out.u32(e.timescale);
        out.u64(e.time);
        match e.duration {
            None => out.u8(0),
            Some(d) => {
                out.u8(1);
                out.u64(d);
            }
        }
        out.u32(e.id);
        out.bytes(e.scheme_id_uri.as_bytes());
        out.bytes(e.value.as_bytes());
        out.bytes(&e.message);
    }
}

fn kind_code(kind: TrackKind) -> u8 {
    match kind {
        TrackKind::Video => 1,
        TrackKind::Audio => 2,
        TrackKind::Text => 3,
        TrackKind::Metadata => 4,
        TrackKind::Other => 5,
    }
}

fn kind_of(code: u8) -> Option<TrackKind> {
    Some(match code {
        1 => TrackKind::Video,
        2 => TrackKind::Audio,
        3 => TrackKind::Text,
        4 => TrackKind::Metadata,
        5 => TrackKind::Other,
        _ => return None,
    })
}

/// The index an entry holds, checked whole; `identity` is the source version it must be of
/// (and `key` its [`identity_key`]).
pub fn read(
    bytes: &Arc<EntryBytes>,
    identity: &SourceIdentity,
    key: &[u8],
) -> Result<MediaIndex, EntryError> {
    let all = bytes.as_bytes();
    check_header(all)?;
    let mut r = In {
        bytes,
        all,
        pos: HEADER_LEN,
    };
    if r.bytes_field("identity")? != key {
        return Err(EntryError::Foreign);
    }
    let major_brand = r.opt_fourcc()?;
    let brand_count = r.count(64, "brands")?;
    let mut compatible_brands = Vec::with_capacity(brand_count);
    for _ in 0..brand_count {
        compatible_brands.push(r.fourcc()?);
    }
    let movie_timescale = r.u32()?;
    let fragmented = r.flag()?;
    let file_size = r.u64()?;
    let size = match identity {
        SourceIdentity::File { size, .. } | SourceIdentity::Remote { size, .. } => *size,
        _ => return Err(EntryError::Foreign),
    };
    if file_size != size {
        return Err(EntryError::Foreign);
    }
    let track_count = r.count(MAX_TRACKS as usize, "tracks")?;
    let mut tracks = Vec::with_capacity(track_count);
    for _ in 0..track_count {
        let t = read_track(&mut r)?;
        check_track(&t, file_size)?;
        tracks.push(t);
    }
    if r.pos != all.len() {
        return Err(EntryError::Invalid("bytes after the last track"));
    }
    Ok(MediaIndex {
        identity: identity.clone(),
        major_brand,
        compatible_brands,
        movie_timescale,
        fragmented,
        tracks,
        file_size,
    })
}

/// Checks the header and the body's checksum.
fn check_header(all: &[u8]) -> Result<(), EntryError> {
    if all.len() < HEADER_LEN {
        return Err(EntryError::Truncated("header"));
    }
    if all[..8] != MAGIC {
        return Err(EntryError::Magic);
    }
    let word = |at: usize| u32::from_ne_bytes([all[at], all[at + 1], all[at + 2], all[at + 3]]);
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&all[at..at + 8]);
        u64::from_ne_bytes(b)
    };
    if word(8) != FORMAT_VERSION {
        return Err(EntryError::Version(word(8)));
    }
    if word(12) != BYTE_ORDER || word(16) != layout() {
        return Err(EntryError::Layout);
    }
    if long(24) != (all.len() - HEADER_LEN) as u64 {
        return Err(EntryError::Truncated("body length"));
    }
    if long(32) != xxhash_rust::xxh3::xxh3_64(&all[HEADER_LEN..]) {
        return Err(EntryError::Checksum);
    }
    Ok(())
}

fn read_track(r: &mut In<'_>) -> Result<TrackIndex, EntryError> {
    let track_id = r.u32()?;
    let kind = kind_of(r.u8()?).ok_or(EntryError::Invalid("track kind"))?;
    let timescale = r.u32()?;
    let language = r.string("language")?;
    let handler_name = r.string("handler name")?;
    let width = r.u32()?;
    let height = r.u32()?;
    let sample_entry = r.bytes_field("sample entry")?.to_vec();
    let sample_entry_fourcc = r.fourcc()?;
    let edit = if r.flag()? {
        Some(Edit {
            media_time: r.u64()? as i64,
            empty_duration: r.u64()?,
        })
    } else {
        None
    };
    let sample_count = r.u32()?;
    let total_bytes = r.u64()?;
    let sizes = match r.u8()? {
        0 => Sizes::Constant(r.u32()?),
        1 => Sizes::PerSample(r.table()?),
        _ => return Err(EntryError::Invalid("sizes")),
    };
    let times = r.table()?;
    let ctos = match r.u8()? {
        0 => Ctos::Zero,
        1 => Ctos::Runs(r.table()?),
        2 => Ctos::PerSample(r.table()?),
        _ => return Err(EntryError::Invalid("composition offsets")),
    };
    let runs = r.table()?;
    let offsets = match r.u8()? {
        0 => ChunkOffsets::Narrow(r.table()?),
        1 => ChunkOffsets::Wide(r.table()?),
        _ => return Err(EntryError::Invalid("chunk offsets")),
    };
    let chunks = ChunkMap {
        runs,
        offsets,
        samples: r.u32()?,
    };
    let sync = if r.flag()? { Some(r.table()?) } else { None };
    let fragments = r.table()?;
    let event_count = r.count(MAX_EVENTS_PER_TRACK, "events")?;
    let mut events = Vec::with_capacity(event_count);
    for _ in 0..event_count {
        let timescale = r.u32()?;
        let time = r.u64()?;
        let duration = if r.flag()? { Some(r.u64()?) } else { None };
        let id = r.u32()?;
        let scheme_id_uri = r.string("scheme")?;
        let value = r.string("value")?;
        let message = r.bytes_field("message")?;
        if message.len() > MAX_EVENT_MESSAGE || timescale == 0 {
            return Err(EntryError::Invalid("event"));
        }
        events.push(TimedEvent {
            timescale,
            time,
            duration,
            id,
            scheme_id_uri,
            value,
            message: message.to_vec(),
        });
    }
    Ok(TrackIndex {
        track_id,
        kind,
        timescale,
        language,
        handler_name,
        width,
        height,
        sample_entry,
        sample_entry_fourcc,
        edit,
        sample_count,
        sizes,
        times,
        ctos,
        chunks,
        sync,
        fragments,
        total_bytes,
        events,
    })
}

/// The invariants the lookups of [`TrackIndex`] index and do arithmetic by: what the builder
/// establishes from a file, checked again of stored tables.
fn check_track(t: &TrackIndex, file_size: u64) -> Result<(), EntryError> {
    let bad = |what| Err(EntryError::Invalid(what));
    let n = t.sample_count;
    if u64::from(n) > crate::mp4::moov::MAX_SAMPLES || file_size >= 1 << 62 {
        return bad("sample count or file size");
    }
    if let Sizes::PerSample(v) = &t.sizes {
        if v.len() != n as usize {
            return bad("sizes");
        }
    }
    // Decode times: runs from sample 0, back to back, covering every sample, times that add
    // up without overflow.
    let mut next = 0u32;
    for r in t.times.iter() {
        if r.first_sample != next || r.count == 0 {
            return bad("decode time runs");
        }
        let span = u64::from(r.count) * u64::from(r.delta);
        if r.start.checked_add(span).is_none() {
            return bad("decode times overflow");
        }
        next = match r.first_sample.checked_add(r.count) {
            Some(end) if end <= n => end,
            _ => return bad("decode time runs"),
        };
    }
    if next != n {
        return bad("decode time runs");
    }
    match &t.ctos {
        Ctos::Zero => {}
        Ctos::PerSample(v) if v.len() == n as usize => {}
        Ctos::PerSample(_) => return bad("composition offsets"),
        Ctos::Runs(runs) => {
            let mut end = 0u32;
            for r in runs.iter() {
                if r.first_sample < end || r.count == 0 {
                    return bad("composition offset runs");
                }
                end = match r.first_sample.checked_add(r.count) {
                    Some(e) if e <= n => e,
                    _ => return bad("composition offset runs"),
                };
            }
        }
    }
    check_chunks(&t.chunks, n, file_size)?;
    if let Some(sync) = &t.sync {
        if !sync.windows(2).all(|w| w[0] < w[1]) || sync.last().is_some_and(|&s| s >= n) {
            return bad("sync samples");
        }
    }
    if !t
        .fragments
        .windows(2)
        .all(|w| w[0].first_sample <= w[1].first_sample)
        || t.fragments.last().is_some_and(|f| f.first_sample > n)
    {
        return bad("fragments");
    }
    Ok(())
}

/// Chunk runs from chunk 0 and sample 0, each run's chunks holding exactly the samples up to
/// the next run, the last run ending with the last chunk and the last sample; offsets inside
/// the file (a sample's offset is its chunk's plus the sizes before it, which cannot overflow
/// within the sample limit).
fn check_chunks(c: &ChunkMap, n: u32, file_size: u64) -> Result<(), EntryError> {
    let bad = |what| Err(EntryError::Invalid(what));
    let chunk_count = c.len() as u64;
    if c.samples != n || (n == 0) != c.runs.is_empty() {
        return bad("chunk map");
    }
    for (k, r) in c.runs.iter().enumerate() {
        if r.samples_per_chunk == 0 {
            return bad("chunk runs");
        }
        let (next_chunk, next_sample) = match c.runs.get(k + 1) {
            Some(next) => (u64::from(next.first_chunk), next.first_sample),
            None => (chunk_count, n),
        };
        if k == 0 && (r.first_chunk != 0 || r.first_sample != 0) {
            return bad("chunk runs");
        }
        let chunks = next_chunk.checked_sub(u64::from(r.first_chunk));
        let samples = next_sample.checked_sub(r.first_sample);
        match (chunks, samples) {
            (Some(chunks), Some(samples))
                if chunks > 0 && chunks * u64::from(r.samples_per_chunk) == u64::from(samples) => {}
            _ => return bad("chunk runs"),
        }
    }
    // The largest offset, found with a plain maximum (vectorised), not a search.
    let largest = match &c.offsets {
        ChunkOffsets::Narrow(v) => v.iter().copied().max().map(u64::from),
        ChunkOffsets::Wide(v) => v.iter().copied().max(),
    };
    let inside = largest.is_none_or(|o| o <= file_size);
    if !inside {
        return bad("chunk offsets");
    }
    Ok(())
}

/// The body being written.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
}

impl Out {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    fn opt_fourcc(&mut self, f: Option<FourCC>) {
        match f {
            None => self.u8(0),
            Some(f) => {
                self.u8(1);
                self.buf.extend_from_slice(&f.0);
            }
        }
    }
    fn align(&mut self) {
        self.buf.resize(self.buf.len().next_multiple_of(8), 0);
    }
    /// A table: its length, then its values from the next 8-byte boundary.
    fn table<T: Pod>(&mut self, values: &[T]) {
        self.u64(values.len() as u64);
        self.align();
        self.buf.extend_from_slice(bytemuck::cast_slice(values));
        self.align();
    }
}

/// The body being read: every read checked against the bytes that remain.
struct In<'a> {
    bytes: &'a Arc<EntryBytes>,
    all: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EntryError> {
        let end = self.pos.checked_add(n).ok_or(EntryError::Truncated(what))?;
        let b = self
            .all
            .get(self.pos..end)
            .ok_or(EntryError::Truncated(what))?;
        self.pos = end;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.take(1, "value")?[0])
    }
    fn flag(&mut self) -> Result<bool, EntryError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(EntryError::Invalid("flag")),
        }
    }
    fn u32(&mut self) -> Result<u32, EntryError> {
        let b = self.take(4, "value")?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, EntryError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8, "value")?);
        Ok(u64::from_ne_bytes(w))
    }
    fn fourcc(&mut self) -> Result<FourCC, EntryError> {
        let b = self.take(4, "fourcc")?;
        Ok(FourCC([b[0], b[1], b[2], b[3]]))
    }
    fn opt_fourcc(&mut self) -> Result<Option<FourCC>, EntryError> {
        Ok(if self.flag()? {
            Some(self.fourcc()?)
        } else {
            None
        })
    }
    fn count(&mut self, max: usize, what: &'static str) -> Result<usize, EntryError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(EntryError::Invalid(what));
        }
        Ok(n)
    }
    fn bytes_field(&mut self, what: &'static str) -> Result<&'a [u8], EntryError> {
        let n = self.u32()?;
        if n > MAX_BLOB {
            return Err(EntryError::Invalid(what));
        }
        self.take(n as usize, what)
    }
    fn string(&mut self, what: &'static str) -> Result<String, EntryError> {
        let b = self.bytes_field(what)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| EntryError::Invalid(what))
    }
    fn align(&mut self) -> Result<(), EntryError> {
        let to = self.pos.next_multiple_of(8);
        self.take(to - self.pos, "padding")?;
        Ok(())
    }
    fn table<T: Pod>(&mut self) -> Result<Table<T>, EntryError> {
        let len = usize::try_from(self.u64()?).map_err(|_| EntryError::Invalid("table"))?;
        self.align()?;
        let start = self.pos;
        let byte_len = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or(EntryError::Invalid("table length"))?;
        self.take(byte_len, "table")?;
        self.align()?;
        Table::stored(self.bytes, start, len).ok_or(EntryError::Invalid("table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build_index;
    use crate::source::MmapSource;

    fn file_identity(size: u64) -> SourceIdentity {
        SourceIdentity::File {
            dev: 1,
            ino: 2,
            size,
            mtime_ns: 3,
            ctime_ns: 4,
        }
    }

    /// The index of a fixture, as if it were the local file `file_identity`.
    fn index_of_fixture(name: &str) -> MediaIndex {
        let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        let mut index = build_index(&MmapSource::open(&p).unwrap()).unwrap();
        index.identity = file_identity(index.file_size);
        index
    }

    fn sample_index() -> MediaIndex {
        index_of_fixture("progressive.mp4")
    }

    fn stored(index: &MediaIndex) -> (Arc<EntryBytes>, Vec<u8>) {
        let key = identity_key(&index.identity).unwrap();
        (Arc::new(EntryBytes::copied(&write(index, &key))), key)
    }

    #[test]
    fn an_entry_reads_back_as_the_index_it_was_written_from() {
        let index = sample_index();
        let (bytes, key) = stored(&index);
        let back = read(&bytes, &index.identity, &key).unwrap();
        assert_eq!(back, index);
        assert!(back.tracks.iter().all(|t| t.heap_size() < 4096));
        assert!(back.tracks.iter().any(|t| t.stored_bytes() > 0));
        let t = &back.tracks[0];
        let s: Vec<_> = t.samples(0..t.sample_count()).collect();
        let o: Vec<_> = index.tracks[0].samples(0..t.sample_count()).collect();
        assert_eq!(s, o);
    }

    #[test]
    fn fragmented_files_and_their_events_read_back_too() {
        for name in ["smooth.ismv", "cmaf-video.cmfv", "hevc.mp4"] {
            let index = index_of_fixture(name);
            let (bytes, key) = stored(&index);
            assert_eq!(
                read(&bytes, &index.identity, &key).unwrap(),
                index,
                "{name}"
            );
        }
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_refused() {
        let index = sample_index();
        let (bytes, key) = stored(&index);
        let all = bytes.as_bytes().to_vec();
        let read_of = |b: &[u8]| read(&Arc::new(EntryBytes::copied(b)), &index.identity, &key);
        assert_eq!(
            read_of(&all[..all.len() - 1]),
            Err(EntryError::Truncated("body length"))
        );
        assert_eq!(read_of(&all[..20]), Err(EntryError::Truncated("header")));
        let mut flipped = all.clone();
        let last = flipped.len() - 9;
        flipped[last] ^= 1;
        assert_eq!(read_of(&flipped), Err(EntryError::Checksum));
        let mut versioned = all.clone();
        versioned[8] = 9;
        assert!(matches!(read_of(&versioned), Err(EntryError::Version(_))));
        let mut magic = all.clone();
        magic[0] = b'X';
        assert_eq!(read_of(&magic), Err(EntryError::Magic));
        let other = file_identity(index.file_size + 1);
        let other_key = identity_key(&other).unwrap();
        assert_eq!(read(&bytes, &other, &other_key), Err(EntryError::Foreign));
    }

    #[test]
    fn an_entry_with_a_valid_checksum_but_broken_tables_is_refused() {
        let mut index = sample_index();
        // A sync sample past the end, and runs that no longer cover the samples.
        index.tracks[0].sync = Some(vec![0, u32::MAX - 1].into());
        let (bytes, key) = stored(&index);
        assert_eq!(
            read(&bytes, &index.identity, &key),
            Err(EntryError::Invalid("sync samples"))
        );
        let mut index = sample_index();
        index.tracks[0].sample_count += 1;
        let (bytes, key) = stored(&index);
        assert!(matches!(
            read(&bytes, &index.identity, &key),
            Err(EntryError::Invalid(_))
        ));
    }

    #[test]
    fn only_versions_that_cannot_change_unseen_have_a_key() {
        assert!(identity_key(&file_identity(1)).is_some());
        let remote = |version: &str| SourceIdentity::Remote {
            url: "http://b/x.mp4".into(),
            version: version.into(),
            size: 5,
        };
        assert!(identity_key(&remote("\"etag\"")).is_some());
        assert!(identity_key(&remote("")).is_none());
        assert_ne!(identity_key(&remote("a")), identity_key(&remote("b")));
        let live = SourceIdentity::Live {
            track: "t".into(),
            first: 0,
            end: 1,
        };
        assert!(identity_key(&live).is_none());
    }
}
