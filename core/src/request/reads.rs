//! What the engine reads of a file: what the driver supplied for it, a reader holding a range
//! (or the need to read it, with read-ahead), the media index of a file (with the `mfra`
//! prefetch that reads a remote file's fragments side by side) and the parsed server manifest.

use std::sync::Arc;

use super::{Caches, Need, Opened, Read, Request, Stop};
use crate::error::Error;
use crate::index::{build_index, IndexError, MediaIndex};
use crate::ism::ServerManifest;
use crate::source::{SharedSource, Source, SourceError};

/// Largest server manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Least bytes asked for when a read misses: the head of a file holds `ftyp` and, in a
/// faststart file, the start of the `moov`, so one read usually serves several boxes.
pub const READ_AHEAD: u64 = 256 << 10;
/// Bytes read past a missing range, for the header of the box that follows.
const NEXT_BOX_SLACK: u64 = 4096;
/// The end of a fragmented file read for its `mfra` (with `mfro`): the entries of 3,600
/// two-second fragments fit.
pub(super) const MFRA_TAIL: u64 = 128 << 10;
/// Largest `mfra` read.
const MAX_MFRA: u64 = 16 << 20;
/// Fragments closer than this are read together.
const PREFETCH_JOIN_GAP: u64 = 64 << 10;
/// Reads at most this long are the index builder probing a box header.
const HEADER_PROBE: u64 = 64;
/// What a box-header probe reads: room for a fragment's `moof` and the next header.
pub(super) const HEADER_READ_AHEAD: u64 = 16 << 10;

/// What the `mfra` of a file says to read.
enum Prefetch {
    /// The tail of the file, or its `mfra`, must be read first.
    ReadFirst(Vec<Read>),
    /// The `moof`s still missing (none: nothing to prefetch, or no usable `mfra`).
    Moofs(Vec<Read>),
}

impl Request {
    /// What was supplied for `path`, or the need to open it.
    pub(super) fn opened(&self, path: &str) -> Result<&Opened, Stop> {
        match self.opened.iter().find(|(p, _)| p == path) {
            Some((_, Ok(o))) => Ok(o),
            // A failed open ends the request at the step after the supply (see `step`).
            Some((_, Err(_))) => Err(Stop::Fail(Error::Internal("a failed file was read"))),
            None => Err(Stop::Need(Need::Open(vec![path.to_string()]))),
        }
    }

    /// Whether `path` was asked for and supplied (or refused) already.
    pub(super) fn was_supplied(&self, path: &str) -> bool {
        self.opened.iter().any(|(p, _)| p == path)
    }

    /// The reader of an opened file, or the need to read `offset..offset + len` of it.
    pub(super) fn reader(&self, path: &str, offset: u64, len: u64) -> Result<SharedSource, Stop> {
        let opened = self.opened(path)?;
        match &opened.reader {
            Some(r) => match r.missing(offset, len) {
                None => Ok(r.clone()),
                Some((at, n)) => Err(Stop::Need(Need::Read(vec![exact_read(
                    path,
                    at,
                    n,
                    opened.size,
                )]))),
            },
            None => Err(Stop::Need(Need::Read(vec![exact_read(
                path,
                offset,
                len,
                opened.size,
            )]))),
        }
    }

    /// The index of the media file at `path`, from the cache while the file is unchanged. A
    /// read the supplied bytes do not cover becomes a need; an index built from a mapping that
    /// was found truncated meanwhile is thrown away.
    pub(super) fn index_of(
        &mut self,
        path: &str,
        caches: &mut Caches,
    ) -> Result<Arc<MediaIndex>, Stop> {
        let opened = self.opened(path)?;
        if let Some(index) = caches.cached_index(&opened.identity) {
            return Ok(index);
        }
        let size = opened.size;
        let src = self.reader(path, 0, size.min(READ_AHEAD))?;
        match caches.timed_index_build(|| build_index(&*src)) {
            Ok(index) => {
                src.intact().map_err(Error::from_source)?;
                Ok(caches.keep_index(index))
            }
            Err(IndexError::Source(SourceError::Missing { offset, len, .. })) => {
                let (at, n) = src.missing(offset, len).unwrap_or((offset, len));
                // A box header past the head of a file: the fragments of a fragmented file.
                // Their moofs are read side by side when the file's mfra lists them.
                if n <= HEADER_PROBE && at > 0 {
                    if let Some(reads) = self.fragment_prefetch(path, &*src, size) {
                        return Err(Stop::Need(Need::Read(reads)));
                    }
                }
                Err(Stop::Need(Need::Read(vec![index_read(path, at, n, size)])))
            }
            Err(IndexError::Source(e)) => Err(Stop::Fail(Error::from_source(e))),
            Err(e) => Err(e.into()),
        }
    }

    /// The reads of every `moof` of a fragmented file still missing, from the `mfra` at its
    /// end (read first when it is not held), so that a remote file's fragments are indexed with
    /// reads side by side instead of one after the other. `None` once there is nothing to
    /// prefetch (no `mfra`, or everything it lists is held): the builder then reads on.
    fn fragment_prefetch(&mut self, path: &str, src: &dyn Source, size: u64) -> Option<Vec<Read>> {
        if self.prefetched.iter().any(|p| p == path) || size < 16 {
            return None;
        }
        match mfra_prefetch(path, src, size) {
            Prefetch::ReadFirst(reads) => Some(reads),
            Prefetch::Moofs(reads) => {
                self.prefetched.push(path.to_string());
                (!reads.is_empty()).then_some(reads)
            }
        }
    }

    /// The server manifest, parsed, from the cache while its file is unchanged.
    pub(super) fn server_manifest(&self, caches: &mut Caches) -> Result<Arc<ServerManifest>, Stop> {
        let path = &self.manifest_path;
        let opened = self.opened(path)?;
        if let Some(m) = caches.manifests.get(&opened.identity) {
            return Ok(m);
        }
        if opened.size > MAX_MANIFEST_BYTES {
            return Err(Stop::Fail(Error::ManifestTooLarge {
                path: path.clone(),
                limit: MAX_MANIFEST_BYTES,
            }));
        }
        let src = self.reader(path, 0, opened.size)?;
        let bytes = src
            .bytes(0, opened.size as usize)
            .map_err(Error::from_source)?;
        let manifest = ServerManifest::parse(&bytes).map_err(|error| Error::Manifest {
            path: path.clone(),
            error,
        })?;
        src.intact().map_err(Error::from_source)?;
        let manifest = Arc::new(manifest);
        caches
            .manifests
            .insert(opened.identity.clone(), manifest.clone());
        Ok(manifest)
    }
}

/// What the `mfra` at the end of `src` (of `size` bytes, at least 16) says to read.
fn mfra_prefetch(path: &str, src: &dyn Source, size: u64) -> Prefetch {
    let nothing = || Prefetch::Moofs(Vec::new());
    // mfro: size, "mfro", version and flags, the mfra's size.
    let tail_len = size.min(MFRA_TAIL);
    if src.missing(size - 16, 16).is_some() {
        return Prefetch::ReadFirst(vec![exact_read(path, size - tail_len, tail_len, size)]);
    }
    let Ok(mfro) = src.bytes(size - 16, 16) else {
        return nothing();
    };
    let mut mfro = crate::mp4::Reader::new(&mfro, size - 16);
    let mfra_size = match (mfro.skip(4), mfro.fourcc(), mfro.skip(4), mfro.u32()) {
        (Ok(()), Ok(f), Ok(()), Ok(n)) if f == crate::mp4::FourCC::new(b"mfro") => u64::from(n),
        _ => return nothing(),
    };
    if mfra_size < 16 || mfra_size > size || mfra_size > MAX_MFRA {
        return nothing();
    }
    let mfra_at = size - mfra_size;
    if let Some((at, n)) = src.missing(mfra_at, mfra_size) {
        return Prefetch::ReadFirst(vec![exact_read(path, at, n, size)]);
    }
    let Ok(mfra) = src.bytes(mfra_at, mfra_size as usize) else {
        return nothing();
    };
    let mut reader = crate::mp4::Reader::new(&mfra, mfra_at);
    let tables = match reader.next_box_body() {
        Ok(Some((h, body))) if h.fourcc == crate::mp4::FourCC::new(b"mfra") => {
            crate::mp4::fragment::parse_mfra(body).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut offsets: Vec<u64> = tables
        .iter()
        .flat_map(|t| t.entries.iter().map(|e| e.moof_offset))
        .filter(|&o| o < size)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    // One read per run of fragments close to each other (a little media between is cheaper
    // than another request).
    let mut reads: Vec<Read> = Vec::new();
    for o in offsets {
        if src.missing(o, HEADER_PROBE.min(size - o)).is_none() {
            continue;
        }
        let end = (o + HEADER_READ_AHEAD).min(size);
        match reads.last_mut() {
            Some(r) if o <= r.offset + r.len + PREFETCH_JOIN_GAP => {
                r.len = end.max(r.offset + r.len) - r.offset;
            }
            _ => reads.push(exact_read(path, o, end - o, size)),
        }
    }
    Prefetch::Moofs(reads)
}

/// The read of `len` missing bytes at `offset` (samples, a server manifest): just those.
pub(super) fn exact_read(path: &str, offset: u64, len: u64, size: u64) -> Read {
    Read {
        path: path.to_string(),
        offset,
        len: len.min(size.saturating_sub(offset)),
    }
}

/// The read the index builder's miss of `len` bytes at `offset` becomes (the head of the file
/// was read first, [`READ_AHEAD`] bytes). A box header it probes brings [`HEADER_READ_AHEAD`]
/// bytes along: a fragment's `moof` and the header of its `mdat` in one request, never the
/// media after them. A box body (a `moov`) brings [`NEXT_BOX_SLACK`] more: the header of the
/// box that follows.
fn index_read(path: &str, offset: u64, len: u64, size: u64) -> Read {
    let want = if len <= HEADER_PROBE {
        len.max(HEADER_READ_AHEAD)
    } else {
        len.saturating_add(NEXT_BOX_SLACK)
    };
    exact_read(path, offset, want, size)
}
