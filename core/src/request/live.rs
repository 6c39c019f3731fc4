//! A live channel's side of a request: the window it plays (each track's fragments in it as
//! one source, listed in a server manifest of its own), how long a live answer may be cached,
//! and the status of a segment the window does not hold.

use std::sync::Arc;

use super::keys::etag;
use super::load::Loaded;
use super::{Answer, Body, Caches, Expiry, MediaSpan, Need, Opened, Payload, Request, Stop, Wait};
use crate::drm::{Cenc, EncryptError};
use crate::error::Error;
use crate::ism::{join_relative, ServerManifest};
use crate::live::channel::TrackArchive;
use crate::live::window::{LiveInfo, LivePlace, WindowRequest};
use crate::mime;
use crate::package::dash::ChunkedSegment;
use crate::package::hds;
use crate::segment::SegmentTable;
use crate::source::{SharedSource, Source};
use crate::url::TimePoint;
use crate::url::{
    DashTarget, HdsTarget, HlsPlaylist, HlsTarget, MpdSegmentTemplate, SegmentIndex, SmoothTarget,
    Target,
};

use super::keys::is_manifest;

impl Request {
    /// A live channel's window: each track's fragments in it become a source of their own
    /// (with the identity of the records they hold), made of the data files the driver opened
    /// for them (asked for here, all at once, as a presentation's sources are), and the
    /// presentation's server manifest lists those tracks with the channel's options.
    pub(super) fn open_live_window(&mut self, caches: &mut Caches) -> Result<(), Stop> {
        let (channel, now_ms) = self
            .live
            .as_ref()
            .map(|l| (l.snapshot.clone(), l.now_ms))
            .ok_or(Error::Internal("a live request without its channel"))?;
        let manifest = self.server_manifest(caches)?;
        let asked = self.window_request(&manifest, channel.anchor_ms, now_ms)?;
        let window = crate::live::window::window(&channel, asked).map_err(|source| Error::Io {
            path: format!("{}/records", channel.archive_dir.display()),
            source,
        })?;
        if window.tracks.is_empty() {
            return Err(Stop::Fail(Error::NotFound {
                path: format!("{} (nothing was ingested yet)", self.route.manifest_path),
            }));
        }
        let archive = |rel: &str| {
            join_relative(
                &self.manifest_path,
                &format!("{}/{rel}", channel.archive_name),
            )
            .ok_or(Error::Internal("an archive path that does not join"))
        };
        // Each track's data files: number, path, and the span of it the window's records use.
        let mut data_files: Vec<Vec<(u32, String, u64, u64)>> = Vec::new();
        for (track, records) in &window.tracks {
            let mut files = Vec::new();
            for file_no in TrackArchive::data_files(records) {
                let (start, end) = records
                    .iter()
                    .filter(|r| r.file_no == file_no && r.size > 0)
                    .fold((u64::MAX, 0u64), |(lo, hi), r| {
                        (
                            lo.min(r.file_offset),
                            hi.max(r.file_offset + u64::from(r.size)),
                        )
                    });
                files.push((file_no, archive(&track.data_file(file_no))?, start, end));
            }
            data_files.push(files);
        }
        let unopened: Vec<String> = data_files
            .iter()
            .flatten()
            .filter(|(_, path, ..)| !self.was_supplied(path))
            .map(|(_, path, ..)| path.clone())
            .collect();
        if !unopened.is_empty() {
            return Err(Stop::Need(Need::Open(unopened)));
        }
        let mut readers: Vec<Vec<(u32, SharedSource)>> = Vec::with_capacity(data_files.len());
        for files in &data_files {
            let mut track_readers = Vec::with_capacity(files.len());
            for (file_no, path, start, end) in files {
                track_readers.push((*file_no, self.reader(path, *start, end - start)?));
            }
            readers.push(track_readers);
        }
        let modified = window.info.updated_ms.div_euclid(1000);
        let mut live_manifest = ServerManifest {
            metas: manifest.metas.clone(),
            tracks: Vec::with_capacity(window.tracks.len()),
        };
        for ((track, records), readers) in window.tracks.iter().zip(&readers) {
            let src = format!("{}/{}", channel.archive_name, track.dir_name);
            let path = archive(&track.dir_name)?;
            let data_file = |file_no: u32| {
                readers
                    .iter()
                    .find(|(n, _)| *n == file_no)
                    .map(|(_, reader)| reader.clone())
            };
            let source = track
                .source(&path, records, data_file)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
            self.opened.push((
                path,
                Ok(Opened {
                    identity: source.identity().clone(),
                    size: source.len(),
                    modified,
                    reader: Some(Arc::new(source)),
                }),
            ));
            live_manifest.tracks.push(track.manifest_entry(&src));
        }
        self.live_window = Some((Arc::new(live_manifest), Arc::new(window.info)));
        Ok(())
    }

    /// What the request asks of the channel's window: the DVR window (a player may ask for
    /// less than the channel keeps, never more), the retention, `time_shift` and
    /// `vbegin`/`vend`.
    fn window_request(
        &self,
        manifest: &ServerManifest,
        anchor_ms: i64,
        now_ms: i64,
    ) -> Result<WindowRequest, Error> {
        let manifest_error = |error| Error::Manifest {
            path: self.manifest_path.clone(),
            error,
        };
        let options = manifest.options().map_err(manifest_error)?;
        let server_dvr = options
            .dvr_window_length
            .unwrap_or(crate::live::session::DEFAULT_DVR_WINDOW_SECS);
        let wants_manifest = is_manifest(&self.route.target);
        let dvr = match (wants_manifest, self.route.options.dvr_window_length) {
            (true, Some(asked)) => asked.min(server_dvr),
            _ => server_dvr,
        };
        let channel = crate::live::session::ChannelOptions::of(manifest).map_err(manifest_error)?;
        let retain = channel.retain_secs();
        // vbegin / vend: wall-clock times (or offsets from the channel's start) select a part
        // of the archive.
        let media_secs = |t: Option<TimePoint>| {
            t.map(|t| match t {
                TimePoint::Utc(us) => (us / 1000 - anchor_ms) as f64 / 1000.0,
                TimePoint::Offset(us) => us as f64 / 1_000_000.0,
            })
        };
        Ok(WindowRequest {
            dvr_window_secs: dvr,
            retain_secs: retain,
            // time_shift moves what manifests show; fragments stay where they are.
            time_shift_secs: if wants_manifest {
                self.route
                    .options
                    .time_shift
                    .or(options.time_shift)
                    .unwrap_or(0)
            } else {
                0
            },
            begin: media_secs(self.route.options.vbegin),
            end: media_secs(self.route.options.vend),
            dynamic_depth: self.live.as_ref().is_some_and(|l| l.dynamic_depth),
            now_ms,
            segment_length: channel.minimum_fragment,
            // Low-latency playout shows growing segments to LL-HLS (the master, fMP4 media
            // playlists, init segments and parts; whole segments are the same either way) and
            // LL-DASH. MPEG-TS playlists, Smooth and HDS list whole segments.
            growing: options.low_latency.unwrap_or(false)
                && matches!(
                    self.route.target,
                    Target::Dash(_)
                        | Target::Hls(
                            HlsTarget::Master
                                | HlsTarget::Playlist {
                                    kind: HlsPlaylist::Media,
                                    fmp4: true,
                                    ..
                                }
                                | HlsTarget::Init { .. }
                                | HlsTarget::Part { .. }
                                | HlsTarget::Segment {
                                    format: crate::url::HlsSegmentFormat::Fmp4,
                                    ..
                                }
                        )
                ),
        })
    }

    /// A low-latency request that asks for what is not ingested yet: held until the channel
    /// changes or `limit_ms` from now (once), then answered 503.
    pub(super) fn wait_for_chunk(&self, limit_ms: u64, what: &str) -> Stop {
        let Some(live) = &self.live else {
            return Stop::Fail(Error::Internal("a wait without a live channel"));
        };
        match self.wait_until {
            Some(until) if live.now_ms >= until => Stop::Fail(Error::LiveSegment {
                status: 503,
                what: format!("{what}: not ingested within {limit_ms} ms"),
                token: "LL_HOLD_EXPIRED",
            }),
            until => Stop::Need(super::Need::Wait(Wait {
                until_ms: until.unwrap_or(live.now_ms.saturating_add(limit_ms as i64)),
                watch: self.watched_tracks(),
            })),
        }
    }

    /// An LL-DASH media segment: whole once complete; while it grows, the chunks it has,
    /// then each chunk as it lands (see [`Body::Growing`]) until the segment completes, or
    /// until no chunk came for `limit_ms` (the encoder stopped: the answer ends with what
    /// there is). The segment after the newest is waited for.
    pub(super) fn chunked_segment_answer(
        &self,
        loaded: &Loaded,
        segment: ChunkedSegment<'_>,
        cenc: Option<&Cenc>,
    ) -> Result<Answer, Stop> {
        let (track, chunks, growing, limit_ms) = match segment {
            ChunkedSegment::Next { limit_ms } => {
                return Err(self.wait_for_chunk(limit_ms, "the segment after the newest"))
            }
            ChunkedSegment::Chunks {
                track,
                chunks,
                growing,
                limit_ms,
            } => (track, chunks, growing, limit_ms),
        };
        let cipher = match cenc {
            Some(c) => self.cenc_cipher(c, track)?,
            None => None,
        };
        let mut bytes =
            crate::buffers::take(chunks.iter().map(|c| c.total_len() as usize).sum::<usize>());
        for plan in &chunks {
            let (path, source) = self.payload_source(track, plan)?;
            match &cipher {
                Some(cipher) => bytes.extend_from_slice(
                    &cipher
                        .encrypt_fragment(plan, track.index(), &*source, false)
                        .map_err(|e| match e {
                            EncryptError::Source(e) => Error::from_source(e),
                            EncryptError::Drm(error) => Error::Drm { path, error },
                            EncryptError::NoTraf => Error::Internal("fragment header without traf"),
                        })?,
                ),
                None => {
                    bytes.extend_from_slice(&plan.header);
                    for r in &plan.payload {
                        let len = usize::try_from(r.len)
                            .map_err(|_| Error::Internal("payload too large"))?;
                        bytes.extend_from_slice(
                            &source.bytes(r.offset, len).map_err(Error::from_source)?,
                        );
                    }
                }
            }
            source.intact().map_err(Error::from_source)?;
        }
        let (first, last) = match (chunks.first(), chunks.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(Stop::Fail(Error::Internal("a segment without chunks"))),
        };
        let media = MediaSpan {
            start: first.start_time,
            duration: last.start_time + last.duration - first.start_time,
            timescale: first.timescale,
            payload: Payload::InMemory,
        };
        let answer = |body: Body, etag: String| Answer {
            etag,
            content_type: mime::of_track(track.kind),
            modified: loaded.modified,
            media: Some(media),
            body,
            expiry: None,
        };
        let Some(sent) = self.streamed else {
            if !growing {
                let headers: Vec<&[u8]> = chunks.iter().map(|c| c.header.as_slice()).collect();
                let key = cipher.as_ref().map(|c| c.fingerprint()).unwrap_or_default();
                let tag = etag(&[&headers.concat(), &key, &loaded.versions]);
                return Ok(answer(Body::Bytes(bytes), tag));
            }
            let next = self.next_chunk_wait(limit_ms, true);
            return Ok(answer(Body::Growing { bytes, next }, String::new()));
        };
        let sent = usize::try_from(sent).unwrap_or(usize::MAX);
        let Some(rest) = bytes.get(sent..) else {
            return Err(Stop::Fail(Error::Internal(
                "a growing segment shrank while it was sent",
            )));
        };
        let next = if growing {
            self.next_chunk_wait(limit_ms, !rest.is_empty())
        } else {
            None
        };
        Ok(answer(
            Body::Growing {
                bytes: rest.to_vec(),
                next,
            },
            String::new(),
        ))
    }

    /// The wait for the next chunk of a growing answer: `limit_ms` from now when a chunk
    /// just came, else the deadline set before; `None` once that has passed.
    fn next_chunk_wait(&self, limit_ms: u64, chunk_came: bool) -> Option<Wait> {
        let live = self.live.as_ref()?;
        let until_ms = match self.wait_until {
            Some(until) if !chunk_came => until,
            _ => live.now_ms.saturating_add(limit_ms as i64),
        };
        (live.now_ms < until_ms).then(|| Wait {
            until_ms,
            watch: self.watched_tracks(),
        })
    }

    /// The directories of the channel's tracks: a chunk written to any of them changes what
    /// a held request may answer.
    fn watched_tracks(&self) -> Vec<std::path::PathBuf> {
        self.live.as_ref().map_or_else(Vec::new, |live| {
            live.snapshot
                .tracks
                .iter()
                .map(|t| live.snapshot.archive_dir.join(&t.dir_name))
                .collect()
        })
    }

    /// A live answer's expiry, and a fragment's Last-Modified: when it was ingested.
    pub(super) fn live_headers(&self, mut answer: Answer) -> Answer {
        if let Some((_, live)) = &self.live_window {
            answer.expiry = Some(live_expiry(live, answer.media));
            // A repackaged segment keeps the window's Last-Modified: its start is a sample's,
            // which need not be where an ingested fragment starts.
            if let Some(media) = answer.media.filter(|m| m.payload != Payload::Repackaged) {
                if let Some(ms) = live.ingested_at(media.start) {
                    answer.modified = ms.div_euclid(1000);
                }
            }
        }
        answer
    }

    /// A segment a live window does not hold: before the window, in a gap of it, or not yet
    /// ingested, each with the status its format answers (docs/COMPAT.md §5).
    pub(super) fn missing_segment(&self, what: &str) -> Option<Error> {
        let (loaded, info) = self
            .loaded
            .as_ref()
            .and_then(|l| Some((l, l.p.live.clone()?)))?;
        let p = &loaded.p;
        let o = &loaded.options;
        // The requested instant, in seconds, when the URL names one.
        let at = |t: u64, timescale: u32| t as f64 / f64::from(timescale.max(1));
        let (place, statuses) = match &self.route.target {
            Target::Smooth(SmoothTarget::Fragment {
                bitrate,
                track,
                time,
            }) => {
                let t = p.find_smooth(track, *bitrate).map(|t| t.index().timescale);
                (t.map(|ts| info.place_of(at(*time, ts))), [404, 412, 412])
            }
            Target::Dash(DashTarget::Media { track, index }) => {
                let place = p.find(track).map(|t| {
                    let table = crate::package::segments(p, t, o.dash_length);
                    match (index, o.template) {
                        (SegmentIndex::Number(n), _)
                        | (SegmentIndex::Templated(n), MpdSegmentTemplate::Number)
                        | (SegmentIndex::Templated(n), MpdSegmentTemplate::NumberTimeline) => {
                            number_place(&table, *n)
                        }
                        (SegmentIndex::Time(time), _) | (SegmentIndex::Templated(time), _) => {
                            info.place_of(at(*time, t.index().timescale))
                        }
                    }
                });
                (place, [410, 404, 404])
            }
            Target::Hds(HdsTarget::Fragment {
                variant,
                segment,
                fragment,
            }) => (
                hds::live_place(p, variant, *segment, *fragment, &o.hds()),
                [404, 503, 503],
            ),
            _ => return None,
        };
        // An unknown track stays "not found".
        let place = place?;
        Some(Error::LiveSegment {
            status: statuses[place as usize],
            what: format!("{what}: {}", place.describe()),
            token: place.token(),
        })
    }
}

/// How long a live answer may be cached: a manifest until the next fragment may come (it
/// changes with every one; a low-latency one with every chunk, well within a second, and its
/// clock must be now's), a segment until the archive drops it (it never changes before).
fn live_expiry(live: &LiveInfo, media: Option<MediaSpan>) -> Expiry {
    const DAY: u64 = 86_400;
    match media {
        None if live.ended => Expiry {
            max_age_secs: 60,
            sunset: None,
        },
        None if live.low_latency => Expiry {
            max_age_secs: 0,
            sunset: None,
        },
        None => Expiry {
            max_age_secs: 1,
            sunset: None,
        },
        Some(m) => {
            let end = m.start + m.duration;
            let end_ms =
                live.anchor_ms + (u128::from(end) * 1000 / u128::from(m.timescale.max(1))) as i64;
            let sunset = live
                .retain_secs
                .map(|keep| (end_ms + keep as i64 * 1000).div_euclid(1000));
            let left = sunset.map_or(DAY, |s| (s - live.now_ms.div_euclid(1000)).max(1) as u64);
            Expiry {
                max_age_secs: left.min(DAY),
                sunset,
            }
        }
    }
}

/// Where a segment number falls against a live window's segments.
fn number_place(table: &SegmentTable, n: u64) -> LivePlace {
    if n < table.first_number() {
        LivePlace::Before
    } else if n >= table.first_number() + table.len() as u64 {
        LivePlace::NotYet
    } else {
        LivePlace::Gap
    }
}
