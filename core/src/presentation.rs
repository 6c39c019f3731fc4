//! A presentation: the tracks a server manifest (or a bare MP4) offers, each tied to its
//! source's index, with the names, bitrates and languages the URLs use, after the request's
//! track selection (`filter=`, `max_bitrate=`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use crate::cache::{LruCache, Weighted};
use crate::segment::SegmentTable;
use crate::source::SourceIdentity;

use crate::events::TimedEvent;
use crate::index::{default_track_name, MediaIndex, TrackIndex, TrackKind};
use crate::ism::{resolve_src, ServerManifest, SourceRef, TrackKind as IsmKind};
use crate::mp4::codec::{parse_sample_entry, SampleEntry};
use crate::mp4::Reader;
use crate::url::{check_name, encode_name, NameError};

/// One track of a presentation.
#[derive(Debug, Clone)]
pub struct Track {
    /// `trackName` (`video`, `audio_eng`, …).
    pub name: String,
    /// `systemBitrate`.
    pub bitrate: u64,
    pub kind: TrackKind,
    /// Language (`systemLanguage`, or the track's own), `None` when undetermined.
    pub language: Option<String>,
    /// Source path relative to the server manifest's directory (`""`: the manifest itself is
    /// the MP4).
    pub source: String,
    /// The source's index.
    pub media: Arc<MediaIndex>,
    /// Position of the track in `media.tracks`.
    pub track_no: usize,
    /// The parsed sample description.
    pub entry: SampleEntry,
}

impl Track {
    /// The track's index.
    pub fn index(&self) -> &TrackIndex {
        &self.media.tracks[self.track_no]
    }

    /// `<trackName>=<bitrate>`, as messages name the track.
    pub fn id(&self) -> String {
        format!("{}={}", self.name, self.bitrate)
    }

    /// `<trackName>=<bitrate>` as URL text (the name encoded, see [`crate::url::name`]): the
    /// DASH representation ID and the HLS variant part.
    pub fn url_id(&self) -> String {
        format!("{}={}", encode_name(&self.name), self.bitrate)
    }
}

/// A presentation's tracks and options.
#[derive(Debug, Clone)]
pub struct Presentation {
    pub tracks: Vec<Track>,
    /// Timed-metadata tracks (ad cues): never played, their events go into the manifests.
    pub metadata: Vec<Track>,
    pub manifest: ServerManifest,
    /// Where segment tables are kept between requests (the glue's per-worker cache); without
    /// one they are computed per call.
    pub segment_cache: Option<Rc<SegmentCache>>,
    /// Set for a live channel: its window and timing.
    pub live: Option<Arc<crate::live::window::LiveInfo>>,
}

/// Identifies one segmentation: the reference track, the track, and the target duration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentKey {
    pub reference: (SourceIdentity, usize),
    pub track: (SourceIdentity, usize),
    pub target: crate::ism::FragmentLength,
    /// Splice points segments start at (`splice_media`), µs of media time.
    pub splices: Vec<u64>,
}

impl Weighted for SegmentTable {
    fn weight(&self) -> usize {
        self.starts().len() * 4 + 64
    }
}

/// Segment tables computed for earlier requests, keyed by what they depend on: the files'
/// identities (so a changed file is segmented anew), the tracks and the target.
pub struct SegmentCache(RefCell<LruCache<SegmentKey, SegmentTable>>);

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.0.borrow();
        write!(f, "SegmentCache({} tables, {} bytes)", c.len(), c.used())
    }
}

impl SegmentCache {
    /// A cache holding at most `budget` bytes of tables.
    pub fn new(budget: usize) -> SegmentCache {
        SegmentCache(RefCell::new(LruCache::new(budget)))
    }

    /// Changes the byte budget, evicting what no longer fits.
    pub fn set_budget(&self, budget: usize) {
        self.0.borrow_mut().set_budget(budget);
    }

    /// What the cache holds and how it has served.
    pub fn stats(&self) -> crate::cache::CacheStats {
        self.0.borrow().stats()
    }

    /// The table for `key`, computed by `build` when missing.
    pub fn get_or_build(
        &self,
        key: SegmentKey,
        build: impl FnOnce() -> SegmentTable,
    ) -> Arc<SegmentTable> {
        let mut c = self.0.borrow_mut();
        match c.get_or_try_insert::<std::convert::Infallible>(&key, || Ok(build())) {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }
}

/// Why a presentation could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum PresentationError {
    /// The server manifest is refused; its errors say "server manifest:" themselves.
    #[error(transparent)]
    Manifest(#[from] crate::ism::IsmError),
    /// A track name or language no URL, playlist or log line may carry (the error shows the
    /// value).
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{src}: {what}")]
    Source { src: String, what: String },
    #[error("the presentation has no playable track")]
    NoTracks,
}

/// Loads a source (relative to the server manifest's directory) and returns its index.
pub trait SourceLoader {
    fn load(&mut self, relative_path: &str) -> Result<Arc<MediaIndex>, PresentationError>;
}

/// Parses a track's stored sample description.
pub fn sample_entry_of(track: &TrackIndex) -> Option<SampleEntry> {
    let mut r = Reader::new(&track.sample_entry, 0);
    let (h, body) = r.next_box_body().ok()??;
    parse_sample_entry(h.fourcc, body).ok()
}

/// Average payload bitrate of a track in bit/s, rounded to the nearest 1000 (at least 1000).
pub fn average_bitrate(track: &TrackIndex) -> u64 {
    let secs = track.duration() as f64 / f64::from(track.timescale.max(1));
    if secs <= 0.0 {
        return 1000;
    }
    let bps = track.total_bytes() as f64 * 8.0 / secs;
    (((bps / 1000.0).round() as u64) * 1000).max(1000)
}

/// Refuses a track whose name or language holds a control character. The server manifest
/// parser refuses them already; a manifest built in memory (live ingest) or a language read
/// from a file passes here too.
fn checked_names(name: &str, language: Option<&str>) -> Result<(), NameError> {
    check_name("trackName", name)?;
    if let Some(language) = language {
        check_name("language", language)?;
    }
    Ok(())
}

fn own_language(t: &TrackIndex) -> Option<String> {
    (t.language != "und" && !t.language.is_empty()).then(|| t.language.clone())
}

impl Presentation {
    /// A bare MP4 used as a server manifest: every audio, video and text track, named as
    /// mp4split would.
    pub fn from_mp4(media: Arc<MediaIndex>) -> Result<Presentation, PresentationError> {
        let mut tracks = Vec::new();
        let mut metadata = Vec::new();
        let mut taken = HashSet::new();
        for (track_no, t) in media.tracks.iter().enumerate() {
            if t.kind == TrackKind::Other {
                continue;
            }
            // A track the file declares but whose description cannot be read is an error,
            // not a track to leave out silently.
            let entry = sample_entry_of(t).ok_or_else(|| PresentationError::Source {
                src: String::new(),
                what: format!(
                    "track {}: unreadable {} sample description",
                    t.track_id, t.sample_entry_fourcc
                ),
            })?;
            let language = own_language(t);
            let name = default_track_name(t.kind, language.as_deref());
            checked_names(&name, language.as_deref())?;
            let mut bitrate = average_bitrate(t);
            while !taken.insert((name.clone(), bitrate)) {
                bitrate += 1;
            }
            let track = Track {
                name,
                bitrate,
                kind: t.kind,
                language,
                source: String::new(),
                media: media.clone(),
                track_no,
                entry,
            };
            if t.kind == TrackKind::Metadata {
                metadata.push(track);
            } else {
                tracks.push(track);
            }
        }
        if tracks.is_empty() {
            return Err(PresentationError::NoTracks);
        }
        Ok(Presentation {
            live: None,
            tracks,
            metadata,
            manifest: ServerManifest::default(),
            segment_cache: None,
        })
    }

    /// The tracks a server manifest lists, each loaded through `loader`.
    pub fn from_manifest(
        manifest: ServerManifest,
        loader: &mut dyn SourceLoader,
    ) -> Result<Presentation, PresentationError> {
        manifest.options()?;
        let mut tracks: Vec<Track> = Vec::new();
        let mut metadata = Vec::new();
        for entry in &manifest.tracks {
            // The loader decides where a src is read from (and which URLs it refuses).
            let rel = match resolve_src(&entry.src)? {
                SourceRef::Relative(p) | SourceRef::Http(p) | SourceRef::S3(p) => p,
            };
            let media = loader.load(&rel)?;
            let want = match entry.kind {
                IsmKind::Video => TrackKind::Video,
                IsmKind::Audio => TrackKind::Audio,
                IsmKind::Text => TrackKind::Text,
            };
            let track_no = match entry.track_id() {
                Some(id) => media.tracks.iter().position(|t| t.track_id == id),
                // A `<textstream>` names a metadata track too (ad cues kept with a title).
                None => media
                    .tracks
                    .iter()
                    .position(|t| t.kind == want)
                    .or_else(|| {
                        (want == TrackKind::Text)
                            .then(|| {
                                media
                                    .tracks
                                    .iter()
                                    .position(|t| t.kind == TrackKind::Metadata)
                            })
                            .flatten()
                    }),
            }
            .ok_or_else(|| PresentationError::Source {
                src: entry.src.clone(),
                what: format!(
                    "no {} track{}",
                    want.as_str(),
                    entry
                        .track_id()
                        .map(|id| format!(" with ID {id}"))
                        .unwrap_or_default()
                ),
            })?;
            let t = &media.tracks[track_no];
            let sample_entry = sample_entry_of(t).ok_or_else(|| PresentationError::Source {
                src: entry.src.clone(),
                what: format!("track {}: unreadable sample description", t.track_id),
            })?;
            let language = entry.system_language.clone().or_else(|| own_language(t));
            let name = entry
                .track_name()
                .map(str::to_string)
                .unwrap_or_else(|| default_track_name(t.kind, language.as_deref()));
            checked_names(&name, language.as_deref())?;
            let mut bitrate = entry.system_bitrate.unwrap_or_else(|| average_bitrate(t));
            // URLs name a track by `<name>=<bitrate>`, so no two tracks may share both. The
            // same source track listed again under the same name and bitrate is that track
            // once; another track that would take a name and bitrate already taken gets the
            // next free bitrate, as a bare MP4's tracks do.
            let same = |o: &Track| o.name == name && o.bitrate == bitrate;
            if tracks
                .iter()
                .any(|o| same(o) && o.track_no == track_no && o.media.identity == media.identity)
            {
                continue;
            }
            while tracks
                .iter()
                .any(|o| o.name == name && o.bitrate == bitrate)
            {
                bitrate += 1;
            }
            let track = Track {
                name,
                bitrate,
                kind: t.kind,
                language,
                source: rel,
                media: media.clone(),
                track_no,
                entry: sample_entry,
            };
            if t.kind == TrackKind::Metadata {
                metadata.push(track);
            } else {
                tracks.push(track);
            }
        }
        if tracks.is_empty() {
            return Err(PresentationError::NoTracks);
        }
        Ok(Presentation {
            live: None,
            tracks,
            metadata,
            manifest,
            segment_cache: None,
        })
    }

    /// Drops tracks above `max_bitrate` (keeping at least the lowest of each kind, so a
    /// too-low limit still plays).
    pub fn limit_bitrate(&mut self, max_bitrate: u64) {
        let mut keep = vec![false; self.tracks.len()];
        for (i, t) in self.tracks.iter().enumerate() {
            let lowest_of_kind = self
                .tracks
                .iter()
                .filter(|o| o.kind == t.kind)
                .map(|o| o.bitrate)
                .min()
                == Some(t.bitrate);
            keep[i] = t.bitrate <= max_bitrate || lowest_of_kind;
        }
        let mut i = 0;
        self.tracks.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
    }

    /// Replaces every source's index by `f`'s (a subclip), dropping tracks left empty.
    pub fn map_media(&mut self, mut f: impl FnMut(&Arc<MediaIndex>) -> Option<Arc<MediaIndex>>) {
        let mut done: Vec<(*const MediaIndex, Option<Arc<MediaIndex>>)> = Vec::new();
        for t in self.tracks.iter_mut().chain(self.metadata.iter_mut()) {
            let key = Arc::as_ptr(&t.media);
            let mapped = match done.iter().find(|(k, _)| *k == key) {
                Some((_, m)) => m.clone(),
                None => {
                    let m = f(&t.media);
                    done.push((key, m.clone()));
                    m
                }
            };
            if let Some(m) = mapped {
                t.media = m;
            }
        }
        let mapped = |t: &Track| {
            done.iter()
                .any(|(_, m)| m.as_ref().is_some_and(|m| Arc::ptr_eq(m, &t.media)))
        };
        self.tracks
            .retain(|t| mapped(t) && t.index().sample_count() > 0);
        self.metadata.retain(mapped);
    }

    /// Whether any track carries timed events (before `timed_metadata` is asked).
    pub fn has_events(&self) -> bool {
        self.metadata
            .iter()
            .chain(&self.tracks)
            .any(|t| !t.index().events.is_empty())
    }

    /// The timed events (ad cues) the manifests carry: those of the metadata tracks and the
    /// `emsg` boxes of the tracks played, in time order, one of each; none when the server
    /// manifest turns `timed_metadata` off.
    pub fn events(&self) -> Vec<TimedEvent> {
        self.events_between(0.0, f64::INFINITY)
    }

    /// The events of [`Presentation::events`] that start in `[from, to)` (seconds of media
    /// time): what a segment of that span carries, found without copying the others.
    pub fn events_between(&self, from: f64, to: f64) -> Vec<TimedEvent> {
        if !self.has_events()
            || self.manifest.options().ok().and_then(|o| o.timed_metadata) == Some(false)
        {
            return Vec::new();
        }
        let mut out: Vec<TimedEvent> = Vec::new();
        for t in self.metadata.iter().chain(&self.tracks) {
            let events = &t.index().events;
            // Each track's events are in time order.
            let first = events.partition_point(|e| e.start_secs() < from);
            out.extend(
                events[first..]
                    .iter()
                    .take_while(|e| e.start_secs() < to)
                    .cloned(),
            );
        }
        crate::events::merge(&mut out);
        out
    }

    /// Keeps the tracks an expression selects.
    pub fn apply_filter(&mut self, filter: &crate::filter::Filter) {
        self.tracks.retain(|t| filter.matches(t));
    }

    /// Tracks of one kind.
    pub fn of_kind(&self, kind: TrackKind) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(move |t| t.kind == kind)
    }

    /// The track a URL names as `<trackName>=<bitrate>`.
    pub fn find(&self, r: &crate::url::TrackRef) -> Option<&Track> {
        self.tracks.iter().find(|t| r.matches(&t.name, t.bitrate))
    }

    /// The track a Smooth URL names: `QualityLevels(<bitrate>)/Fragments(<name>=…)`.
    pub fn find_smooth(&self, name: &str, bitrate: u64) -> Option<&Track> {
        self.tracks
            .iter()
            .find(|t| t.name == name && t.bitrate == bitrate)
    }

    /// The reference track segments align to: the first video track, else the first audio
    /// track (a sparse text track makes a poor clock), else the first.
    pub fn reference(&self) -> &Track {
        self.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .or_else(|| self.tracks.iter().find(|t| t.kind == TrackKind::Audio))
            .unwrap_or(&self.tracks[0])
    }

    /// The first track without samples (a live track never fed, a CMAF header without
    /// fragments): manifests cannot describe it.
    pub fn empty_track(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.index().sample_count() == 0)
    }

    /// The presentation's duration in seconds: the longest track.
    pub fn duration_secs(&self) -> f64 {
        self.tracks
            .iter()
            .map(|t| t.index().duration() as f64 / f64::from(t.index().timescale.max(1)))
            .fold(0.0, f64::max)
    }
}

impl crate::filter::Attributes for Track {
    fn attribute(&self, name: &str) -> Option<crate::filter::Value> {
        use crate::filter::Value;
        use crate::mp4::codec::MediaInfo;
        Some(match name {
            "type" => Value::Text(self.kind.as_str().to_string()),
            "systemBitrate" => Value::Number(self.bitrate),
            "systemLanguage" => Value::Text(self.language.clone()?),
            "FourCC" => Value::Text(self.entry.smooth_fourcc().to_string()),
            "trackName" => Value::Text(self.name.clone()),
            "trackID" => Value::Number(u64::from(self.index().track_id)),
            "MaxWidth" | "MaxHeight" => match self.entry.media {
                MediaInfo::Video { width, height, .. } => {
                    Value::Number(u64::from(if name == "MaxWidth" { width } else { height }))
                }
                _ => return None,
            },
            "SamplingRate" | "Channels" => match self.entry.media {
                MediaInfo::Audio {
                    sample_rate,
                    channels,
                    ..
                } => Value::Number(if name == "SamplingRate" {
                    u64::from(sample_rate)
                } else {
                    u64::from(channels)
                }),
                _ => return None,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ism::{TrackEntry, TrackKind as Kind};

    struct Nothing;

    impl SourceLoader for Nothing {
        fn load(&mut self, rel: &str) -> Result<Arc<MediaIndex>, PresentationError> {
            Err(PresentationError::Source {
                src: rel.into(),
                what: "not loaded".into(),
            })
        }
    }

    #[test]
    fn server_manifest_errors_say_so_once() {
        let mut m = ServerManifest::default();
        m.set_meta("hls_fmp4", "maybe");
        m.tracks.push(TrackEntry::new(Kind::Video, "v.ismv"));
        let err = Presentation::from_manifest(m, &mut Nothing)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("server manifest: "), "{err}");
        assert_eq!(err.matches("server manifest").count(), 1, "{err}");
    }

    fn listing(entries: &[(Kind, &str, Option<u64>)]) -> Presentation {
        let mut m = ServerManifest::default();
        for &(kind, src, bitrate) in entries {
            let mut t = TrackEntry::new(kind, src);
            t.system_bitrate = bitrate;
            m.tracks.push(t);
        }
        crate::package::fixtures::from_manifest(m).unwrap()
    }

    fn ids(p: &Presentation) -> Vec<String> {
        p.tracks.iter().map(Track::url_id).collect()
    }

    #[test]
    fn a_source_listed_twice_is_one_track() {
        let once = listing(&[
            (Kind::Video, "progressive.mp4", None),
            (Kind::Audio, "progressive.mp4", None),
        ]);
        let twice = listing(&[
            (Kind::Video, "progressive.mp4", None),
            (Kind::Audio, "progressive.mp4", None),
            (Kind::Video, "progressive.mp4", None),
            (Kind::Audio, "progressive.mp4", None),
        ]);
        assert_eq!(ids(&twice), ids(&once));
        assert_eq!(twice.tracks.len(), 2);
    }

    #[test]
    fn tracks_that_would_share_a_name_and_bitrate_get_the_next_free_bitrate() {
        // Two renditions that claim the same bitrate: both stay, told apart by their ids.
        let p = listing(&[
            (Kind::Video, "ladder-video-360.ismv", Some(800_000)),
            (Kind::Video, "ladder-video-480.ismv", Some(800_000)),
            (Kind::Video, "ladder-video-720.ismv", Some(800_000)),
        ]);
        assert_eq!(
            ids(&p),
            ["video=800000", "video=800001", "video=800002"].map(String::from)
        );
        // The same source track under another bitrate is the operator's choice: kept.
        let p = listing(&[
            (Kind::Video, "ladder-video-360.ismv", Some(400_000)),
            (Kind::Video, "ladder-video-360.ismv", Some(800_000)),
        ]);
        assert_eq!(ids(&p), ["video=400000", "video=800000"].map(String::from));
    }
}
