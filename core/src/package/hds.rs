//! Adobe HTTP Dynamic Streaming: the F4M manifest (Flash Media Manifest 1.0) with each
//! variant's bootstrap (the F4V `abst` box of Adobe's Video File Format Specification 10.1)
//! inline, and F4F fragments: `afra`, `abst`, `moof` and an `mdat` of FLV tags (the same
//! specification's FLV annex), as Flash's HDS players (OSMF) read them. Fragment N of a variant covers the same time as HLS segment N of the
//! same segment length.
//!
//! HDS carries H.264 and AAC only. A variant is a video track muxed with the default audio
//! track (as MPEG-TS HLS variants below `hls_client_manifest_version` 4), or an audio track
//! alone when there is no video; tracks of other codecs are left out.
//!
//! Timing. FLV tags carry a decode time in milliseconds and, for video, a composition offset.
//! Video keeps its decode times (from 0) and its composition offsets as stored, so no frame
//! is presented before it is decoded and no time is negative; the variant's timeline then
//! presents the first frame at the video's composition shift (`dash::presentation_delay`,
//! 80 ms with two B-frames) rather than at 0, and audio moves with it, as FLV muxers (ffmpeg's)
//! do. Without video, audio is timed by its presentation time (its priming removed). The
//! fragment run table times fragments by their reference (video) track's first tag.

use std::fmt::Write as _;
use std::ops::Range;

use super::{dash, frame_rate, segments, PackageError, SegmentLength};
use crate::index::{Sample, TrackKind};
use crate::live::window::LivePlace;
use crate::markup::xml_escape;
use crate::mp4::codec::{write_sample_entry, CodecConfig, MediaInfo, SampleEntry};
use crate::mp4::{FourCC, Reader};
use crate::presentation::{Presentation, Track};
use crate::segment::SegmentTable;
use crate::url::{encode_name, excerpt, Variant};

/// The one timescale HDS boxes use here: milliseconds, the unit of FLV timestamps.
const TIMESCALE: u32 = 1000;
/// The segment every fragment belongs to (`<variant>Seg1-Frag<n>`): one segment run.
const SEGMENT: u32 = 1;

const ABST: FourCC = FourCC::new(b"abst");
const ASRT: FourCC = FourCC::new(b"asrt");
const AFRT: FourCC = FourCC::new(b"afrt");
const AFRA: FourCC = FourCC::new(b"afra");
const MOOF: FourCC = FourCC::new(b"moof");
const MFHD: FourCC = FourCC::new(b"mfhd");
const MDAT: FourCC = FourCC::new(b"mdat");
const AVCC: FourCC = FourCC::new(b"avcC");

/// `abst` flags byte: Profile (2 bits, 0 = named access), Live, Update, 4 reserved bits.
const ABST_LIVE: u8 = 0x20;
/// `afra` flags byte: LongIDs, LongOffsets, GlobalEntries, 5 reserved bits.
const AFRA_LONG_OFFSETS: u8 = 0x40;

/// FLV tag types.
const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
/// Tag header: type, 24-bit size, 24-bit timestamp, timestamp extension, 24-bit stream ID.
const TAG_HEADER: usize = 11;
/// PreviousTagSize after every tag.
const TAG_TRAILER: usize = 4;
/// VIDEODATA header of AVC: frame type and codec, AVCPacketType, 24-bit composition time.
const AVC_HEADER: usize = 5;
/// AUDIODATA header of AAC: sound format byte, AACPacketType.
const AAC_HEADER: usize = 2;
/// FLV codec IDs (onMetaData `videocodecid`, `audiocodecid`, and tag headers).
const CODEC_AVC: u8 = 7;
const SOUND_AAC: u8 = 10;
/// AAC's sound format byte: AAC, and the 44 kHz / 16-bit / stereo fields FLV asks AAC to
/// carry whatever the stream is (players read the AudioSpecificConfig instead).
const AAC_SOUND_BYTE: u8 = (SOUND_AAC << 4) | 0x0f;
const FRAME_KEY: u8 = 1;
const FRAME_INTER: u8 = 2;
/// AVCPacketType / AACPacketType.
const SEQUENCE_HEADER: u8 = 0;
const CODED_FRAMES: u8 = 1;
/// Largest FLV tag body (24-bit DataSize).
const MAX_TAG_BODY: usize = 0x00ff_ffff;
/// The range of FLV's 24-bit signed composition time.
const SI24: Range<i64> = -0x0080_0000..0x0080_0000;
/// Fields of a VisualSampleEntry before its child boxes (ISO/IEC 14496-12 §12.1.3): the
/// SampleEntry's reserved bytes and data reference index, then the visual fields.
const VISUAL_SAMPLE_ENTRY_FIELDS: usize = 8 + 70;

/// How to write the manifest and find fragments.
#[derive(Debug, Clone)]
pub struct HdsOptions {
    /// Target fragment duration (`hds_minimum_fragment_length`).
    pub target: SegmentLength,
    /// Name prefix of variant URLs and the manifest's `<id>`: the server manifest's name.
    pub name: String,
    /// The request's query (`?vbegin=…`, or empty), repeated on every media URL: players
    /// append `Seg1-Frag<n>` to the URL's path and keep its query.
    pub query: String,
}

/// True for a track HDS can carry: H.264 video or AAC audio, unencrypted.
fn carriable(t: &Track) -> bool {
    if t.entry.protection.is_some() {
        return false;
    }
    match (&t.kind, &t.entry.codec) {
        (TrackKind::Video, CodecConfig::Avc(_)) => true,
        (TrackKind::Audio, CodecConfig::Aac(c)) => !c.asc.is_empty(),
        _ => false,
    }
}

/// The variants the manifest lists, by ascending bitrate: each H.264 track after the first
/// AAC track (the default audio), or each AAC track alone when there is no H.264 track.
pub fn variants(p: &Presentation) -> Vec<Vec<&Track>> {
    let audio: Vec<&Track> = p
        .of_kind(TrackKind::Audio)
        .filter(|t| carriable(t))
        .collect();
    let mut video: Vec<&Track> = p
        .of_kind(TrackKind::Video)
        .filter(|t| carriable(t))
        .collect();
    video.sort_by_key(|t| t.bitrate);
    if video.is_empty() {
        return audio.into_iter().map(|a| vec![a]).collect();
    }
    video
        .into_iter()
        .map(|v| match audio.first() {
            Some(a) => vec![*a, v],
            None => vec![v],
        })
        .collect()
}

/// The tracks a variant URL names, when the manifest lists that combination; `NoSuchTrack`
/// (404) otherwise, as for a track of a codec HDS cannot carry.
pub fn listed_variant<'p>(
    p: &'p Presentation,
    v: &Variant,
) -> Result<Vec<&'p Track>, PackageError> {
    let tracks = super::hls::variant_tracks(p, v)?;
    let listed = variants(p).iter().any(|listed| {
        listed.len() == tracks.len()
            && listed
                .iter()
                .zip(&tracks)
                .all(|(a, b)| std::ptr::eq(*a, *b))
    });
    if !listed {
        let ids: Vec<String> = tracks.iter().map(|t| t.id()).collect();
        return Err(PackageError::NoSuchTrack(format!(
            "combination {} for an HDS fragment",
            excerpt(&ids.join("+"))
        )));
    }
    Ok(tracks)
}

/// The URL text of a variant: `<presentation>-<track>=<bitrate>[-…]`, as HLS writes it.
fn variant_url(opts: &HdsOptions, tracks: &[&Track]) -> String {
    let ids: Vec<String> = tracks.iter().map(|t| t.url_id()).collect();
    format!("{}-{}", encode_name(&opts.name), ids.join("-"))
}

/// `t` (track timescale) in milliseconds, rounded down (also below 0).
fn to_ms(t: i128, timescale: u32) -> i128 {
    (t * 1000).div_euclid(i128::from(timescale.max(1)))
}

/// The FLV timestamp (ms, before 32-bit wrapping) of a track time `t`, `shift` ticks
/// earlier on the variant's timeline (never below 0).
fn tag_time(t: u64, shift: i64, timescale: u32) -> u64 {
    to_ms(i128::from(t) - i128::from(shift), timescale).max(0) as u64
}

/// How far each track's times move back to reach the variant's FLV timeline (track
/// timescale): each track's presentation delay less the video's, so that the video keeps its
/// decode times and every track stays in sync with it (see the module comment).
fn time_shifts(tracks: &[&Track]) -> Vec<i64> {
    let lead = tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .map(|v| (dash::presentation_delay(v), v.index().timescale));
    tracks
        .iter()
        .map(|t| {
            let own = dash::presentation_delay(t);
            let lead = lead.map_or(0, |(delay, timescale)| {
                let ticks = i128::from(delay) * i128::from(t.index().timescale);
                (ticks / i128::from(timescale.max(1))) as i64
            });
            own - lead
        })
        .collect()
}

/// One fragment on the HDS timeline: its start and end, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragmentTime {
    start: u64,
    end: u64,
}

/// The fragments of a variant, timed by its reference track, numbered from the table's
/// first number.
struct Timeline {
    first_number: u64,
    fragments: Vec<FragmentTime>,
}

fn timeline(reference: &Track, shift: i64, table: &SegmentTable) -> Timeline {
    let idx = reference.index();
    let time = |t| tag_time(t, shift, idx.timescale);
    let fragments = (0..table.len())
        .filter_map(|k| table.samples(k))
        .map(|r| {
            // A fragment lasts as long as its samples: media missing after it is a gap.
            let start = idx.dts(r.start);
            FragmentTime {
                start: time(start),
                end: time(start + idx.span(r)),
            }
        })
        .collect();
    Timeline {
        first_number: table.first_number(),
        fragments,
    }
}

/// What a zero-duration fragment run entry announces (F4V spec, `afrt`
/// DiscontinuityIndicator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discontinuity {
    /// The presentation ends: no fragment follows.
    EndOfPresentation = 0,
    /// Fragment numbers jump.
    Numbering = 1,
    /// Timestamps jump (media is missing before the next fragment).
    Timestamps = 2,
    /// Both.
    NumberingAndTimestamps = 3,
}

impl Discontinuity {
    fn from_u8(b: u8) -> Option<Discontinuity> {
        Some(match b {
            0 => Discontinuity::EndOfPresentation,
            1 => Discontinuity::Numbering,
            2 => Discontinuity::Timestamps,
            3 => Discontinuity::NumberingAndTimestamps,
            _ => return None,
        })
    }
}

/// One entry of a fragment run table (`afrt` FRAGMENTRUNENTRY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentRun {
    /// Fragments from `first` on (until the next entry), each `duration` ms long, the first
    /// starting at `timestamp` ms.
    Run {
        first: u32,
        timestamp: u64,
        duration: u32,
    },
    /// A zero-duration entry.
    Discontinuity {
        first: u32,
        timestamp: u64,
        indicator: Discontinuity,
    },
}

/// A bootstrap (`abst`): what a player needs to number and time a variant's fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// A live presentation: players refresh the bootstrap and play near its end.
    pub live: bool,
    /// BootstrapinfoVersion: the number of the last fragment, so a newer bootstrap of a live
    /// window has a higher version.
    pub version: u32,
    /// The end of the last fragment, ms.
    pub current_media_time: u64,
    /// Fragments of segment 1, the only segment: the number of the last fragment (those
    /// before a live window are listed by the segment run but not by the fragment runs).
    pub fragments_in_segment: u32,
    /// The fragment run table (`afrt`) entries.
    pub runs: Vec<FragmentRun>,
}

fn fragment_number(n: u64) -> Result<u32, PackageError> {
    u32::try_from(n).map_err(|_| {
        PackageError::Media(format!("fragment number {n} does not fit in HDS's 32 bits"))
    })
}

impl Bootstrap {
    /// The bootstrap of `timeline`: runs of fragments of equal duration, a timestamp
    /// discontinuity where media is missing between fragments, and the end of the
    /// presentation unless it is `live`.
    fn of(timeline: &Timeline, live: bool) -> Result<Bootstrap, PackageError> {
        let mut runs: Vec<FragmentRun> = Vec::new();
        // Where the run being extended would put its next fragment: number, start, duration.
        let mut next: Option<(u64, u64, u64)> = None;
        let last_number =
            (timeline.first_number + timeline.fragments.len() as u64).saturating_sub(1);
        for (k, f) in timeline.fragments.iter().enumerate() {
            let number = timeline.first_number + k as u64;
            // A fragment lasts until the next one starts, or to its last sample's end when
            // media is missing before the next one (or it is the last).
            let following = timeline.fragments.get(k + 1).map(|n| n.start);
            let end = match following {
                Some(s) if s <= f.end => s,
                _ => f.end,
            };
            // A zero duration would read as a discontinuity entry.
            let duration = end.saturating_sub(f.start).max(1);
            match next {
                Some((n, start, d)) if n == number && start == f.start && d == duration => {}
                _ => {
                    if let Some((n, start, _)) = next {
                        if f.start > start {
                            runs.push(FragmentRun::Discontinuity {
                                first: fragment_number(n)?,
                                timestamp: start,
                                indicator: Discontinuity::Timestamps,
                            });
                        }
                    }
                    runs.push(FragmentRun::Run {
                        first: fragment_number(number)?,
                        timestamp: f.start,
                        duration: u32::try_from(duration).map_err(|_| {
                            PackageError::Media(format!("fragment {number} lasts {duration} ms"))
                        })?,
                    });
                }
            }
            next = Some((number + 1, f.start + duration, duration));
        }
        if !live {
            runs.push(FragmentRun::Discontinuity {
                first: 0,
                timestamp: 0,
                indicator: Discontinuity::EndOfPresentation,
            });
        }
        let last = fragment_number(last_number)?;
        Ok(Bootstrap {
            live,
            version: last,
            current_media_time: timeline.fragments.last().map_or(0, |f| f.end),
            fragments_in_segment: last,
            runs,
        })
    }

    /// The `abst` box.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.runs.len() * 17);
        write_full_box(&mut out, ABST, |out| {
            out.extend_from_slice(&self.version.to_be_bytes());
            out.push(if self.live { ABST_LIVE } else { 0 });
            out.extend_from_slice(&TIMESCALE.to_be_bytes());
            out.extend_from_slice(&self.current_media_time.to_be_bytes());
            out.extend_from_slice(&0u64.to_be_bytes()); // SmpteTimeCodeOffset
            out.push(0); // MovieIdentifier: empty string
            out.push(0); // ServerEntryCount: fragments are relative to the manifest
            out.push(0); // QualityEntryCount
            out.push(0); // DrmData: empty string
            out.push(0); // MetaData: empty string
            out.push(1); // SegmentRunTableCount
            write_full_box(out, ASRT, |out| {
                out.push(0); // QualityEntryCount
                out.extend_from_slice(&1u32.to_be_bytes());
                out.extend_from_slice(&SEGMENT.to_be_bytes());
                out.extend_from_slice(&self.fragments_in_segment.to_be_bytes());
            });
            out.push(1); // FragmentRunTableCount
            write_full_box(out, AFRT, |out| {
                out.extend_from_slice(&TIMESCALE.to_be_bytes());
                out.push(0); // QualityEntryCount
                out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
                for run in &self.runs {
                    match *run {
                        FragmentRun::Run {
                            first,
                            timestamp,
                            duration,
                        } => {
                            out.extend_from_slice(&first.to_be_bytes());
                            out.extend_from_slice(&timestamp.to_be_bytes());
                            out.extend_from_slice(&duration.to_be_bytes());
                        }
                        FragmentRun::Discontinuity {
                            first,
                            timestamp,
                            indicator,
                        } => {
                            out.extend_from_slice(&first.to_be_bytes());
                            out.extend_from_slice(&timestamp.to_be_bytes());
                            out.extend_from_slice(&0u32.to_be_bytes());
                            out.push(indicator as u8);
                        }
                    }
                }
            });
        });
        out
    }

    /// Reads an `abst` box written by [`Bootstrap::to_bytes`] (one segment run and one
    /// fragment run table, no quality entries, in milliseconds).
    pub fn parse(bytes: &[u8]) -> Result<Bootstrap, crate::mp4::Mp4Error> {
        let mut r = Reader::new(bytes, 0);
        let (h, mut abst) = r.next_box_body()?.ok_or_else(|| r.error("no abst box"))?;
        if h.fourcc != ABST {
            return Err(r.error("not an abst box"));
        }
        let abst = &mut abst;
        abst.full_box()?;
        let version = abst.u32()?;
        let flags = abst.u8()?;
        if abst.u32()? != TIMESCALE {
            return Err(abst.error("abst timescale is not milliseconds"));
        }
        let current_media_time = abst.u64()?;
        abst.skip(8)?;
        abst.c_string()?;
        if abst.u8()? != 0 || abst.u8()? != 0 {
            return Err(abst.error("abst server or quality entries"));
        }
        abst.c_string()?;
        abst.c_string()?;
        if abst.u8()? != 1 {
            return Err(abst.error("abst segment run tables other than one"));
        }
        let (_, mut asrt) = abst
            .next_box_body()?
            .ok_or_else(|| abst.error("no asrt box"))?;
        asrt.full_box()?;
        if asrt.u8()? != 0 || asrt.u32()? != 1 || asrt.u32()? != SEGMENT {
            return Err(asrt.error("asrt other than one run of segment 1"));
        }
        let fragments_in_segment = asrt.u32()?;
        if abst.u8()? != 1 {
            return Err(abst.error("abst fragment run tables other than one"));
        }
        let (_, mut afrt) = abst
            .next_box_body()?
            .ok_or_else(|| abst.error("no afrt box"))?;
        afrt.full_box()?;
        if afrt.u32()? != TIMESCALE || afrt.u8()? != 0 {
            return Err(afrt.error("afrt timescale or quality entries"));
        }
        let count = afrt.u32()?;
        let mut runs = Vec::new();
        for _ in 0..count {
            let first = afrt.u32()?;
            let timestamp = afrt.u64()?;
            let duration = afrt.u32()?;
            runs.push(if duration == 0 {
                let b = afrt.u8()?;
                FragmentRun::Discontinuity {
                    first,
                    timestamp,
                    indicator: Discontinuity::from_u8(b)
                        .ok_or_else(|| afrt.error("afrt discontinuity indicator"))?,
                }
            } else {
                FragmentRun::Run {
                    first,
                    timestamp,
                    duration,
                }
            });
        }
        if !afrt.is_empty() || !abst.is_empty() || !r.is_empty() {
            return Err(r.error("bytes after the bootstrap"));
        }
        Ok(Bootstrap {
            live: flags & ABST_LIVE != 0,
            version,
            current_media_time,
            fragments_in_segment,
            runs,
        })
    }

    /// The time its fragments cover, ms: from the first one's start (0, or where a live
    /// window starts) to the last one's end.
    pub fn duration(&self) -> u64 {
        let first = self.runs.iter().find_map(|run| match *run {
            FragmentRun::Run { timestamp, .. } => Some(timestamp),
            FragmentRun::Discontinuity { .. } => None,
        });
        self.current_media_time
            .saturating_sub(first.unwrap_or(self.current_media_time))
    }

    /// Where fragment `n` starts and how long it lasts (ms), as players read the runs: the
    /// last run that starts at or before it.
    pub fn fragment_time(&self, n: u32) -> Option<(u64, u32)> {
        if n > self.fragments_in_segment {
            return None;
        }
        self.runs.iter().rev().find_map(|run| match *run {
            FragmentRun::Run {
                first,
                timestamp,
                duration,
            } if first <= n => Some((
                timestamp + u64::from(n - first) * u64::from(duration),
                duration,
            )),
            _ => None,
        })
    }
}

/// Writes a full box (version 0, flags 0) with its size backfilled (bootstraps are far below
/// 4 GiB).
fn write_full_box(out: &mut Vec<u8>, fourcc: FourCC, body: impl FnOnce(&mut Vec<u8>)) {
    crate::mp4::codec::write_full_box(out, fourcc, 0, 0, body);
}

/// A variant's reference track, its segment table, the tracks' time shifts and the
/// bootstrap.
struct VariantTiming<'p> {
    reference: &'p Track,
    table: std::sync::Arc<SegmentTable>,
    shifts: Vec<i64>,
    bootstrap: Bootstrap,
}

fn variant_timing<'p>(
    p: &'p Presentation,
    tracks: &[&'p Track],
    target: SegmentLength,
) -> Result<VariantTiming<'p>, PackageError> {
    let k = tracks
        .iter()
        .position(|t| t.kind == TrackKind::Video)
        .unwrap_or(0);
    let reference = *tracks
        .get(k)
        .ok_or_else(|| PackageError::NoSuchTrack("an empty variant".into()))?;
    let shifts = time_shifts(tracks);
    let table = segments(p, reference, target);
    let line = timeline(reference, shifts[k], &table);
    if line.fragments.is_empty() {
        return Err(PackageError::EmptyTrack(reference.id()));
    }
    let live = p.live.as_deref().is_some_and(|l| !l.ended);
    let bootstrap = Bootstrap::of(&line, live)?;
    Ok(VariantTiming {
        reference,
        table,
        shifts,
        bootstrap,
    })
}

/// The bootstrap (`abst` box) of a variant, as the manifest holds it inline and every
/// fragment carries it (live players update their window from it).
pub fn bootstrap(
    p: &Presentation,
    v: &Variant,
    opts: &HdsOptions,
) -> Result<Vec<u8>, PackageError> {
    let tracks = listed_variant(p, v)?;
    Ok(variant_timing(p, &tracks, opts.target)?
        .bootstrap
        .to_bytes())
}

/// The F4M manifest: one inline bootstrap and one `<media>` per variant.
pub fn manifest(p: &Presentation, opts: &HdsOptions) -> Result<String, PackageError> {
    let listed = variants(p);
    if listed.is_empty() {
        return Err(PackageError::Unsupported(
            "HDS carries H.264 and AAC, and the presentation has neither".into(),
        ));
    }
    let live = p.live.as_deref().is_some_and(|l| !l.ended);
    let mut bootstraps = Vec::with_capacity(listed.len());
    for tracks in &listed {
        bootstraps.push(variant_timing(p, tracks, opts.target)?.bootstrap);
    }
    let duration_ms = bootstraps
        .iter()
        .map(Bootstrap::duration)
        .max()
        .unwrap_or(0);
    let mut x = String::with_capacity(1024 + listed.len() * 1024);
    let _ = writeln!(
        x,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<manifest xmlns=\"http://ns.adobe.com/f4m/1.0\">\n  <id>{}</id>",
        xml_escape(&opts.name)
    );
    if live {
        x.push_str("  <streamType>live</streamType>\n");
    } else {
        let _ = writeln!(
            x,
            "  <streamType>recorded</streamType>\n  <duration>{}.{:03}</duration>",
            duration_ms / 1000,
            duration_ms % 1000
        );
    }
    for (i, b) in bootstraps.iter().enumerate() {
        let _ = writeln!(
            x,
            "  <bootstrapInfo profile=\"named\" id=\"bootstrap{i}\">{}</bootstrapInfo>",
            crate::base64::encode(&b.to_bytes())
        );
    }
    for (i, tracks) in listed.iter().enumerate() {
        let url = variant_url(opts, tracks);
        let bitrate: u64 = tracks.iter().map(|t| t.bitrate).sum();
        let _ = write!(
            x,
            "  <media streamId=\"{}\" url=\"{}\" bitrate=\"{}\"",
            xml_escape(&url),
            xml_escape(&format!("{url}{}", opts.query)),
            bitrate.div_ceil(1000)
        );
        let video = tracks.iter().find(|t| t.kind == TrackKind::Video);
        if let Some(MediaInfo::Video { width, height, .. }) = video.map(|v| &v.entry.media) {
            let _ = write!(x, " width=\"{width}\" height=\"{height}\"");
        }
        let seconds = if live {
            0.0
        } else {
            duration_ms as f64 / 1000.0
        };
        let _ = writeln!(
            x,
            " bootstrapInfoId=\"bootstrap{i}\">\n    <metadata>{}</metadata>\n  </media>",
            crate::base64::encode(&on_meta_data(tracks, seconds))
        );
    }
    x.push_str("</manifest>\n");
    Ok(x)
}

/// The AMF0 `onMetaData` of a variant (the FLV annex's script data): what a player would
/// find at the head of an FLV file.
fn on_meta_data(tracks: &[&Track], duration_secs: f64) -> Vec<u8> {
    let mut fields: Vec<(&str, Amf)> = vec![("duration", Amf::Number(duration_secs))];
    if let Some(v) = tracks.iter().find(|t| t.kind == TrackKind::Video) {
        if let MediaInfo::Video { width, height, .. } = v.entry.media {
            fields.push(("width", Amf::Number(f64::from(width))));
            fields.push(("height", Amf::Number(f64::from(height))));
        }
        fields.push(("videodatarate", Amf::Number(v.bitrate as f64 / 1000.0)));
        if let Some((n, d)) = frame_rate(v) {
            fields.push(("framerate", Amf::Number(n as f64 / d as f64)));
        }
        fields.push(("videocodecid", Amf::Number(f64::from(CODEC_AVC))));
    }
    if let Some(a) = tracks.iter().find(|t| t.kind == TrackKind::Audio) {
        fields.push(("audiodatarate", Amf::Number(a.bitrate as f64 / 1000.0)));
        let (rate, channels) = match (&a.entry.codec, &a.entry.media) {
            (CodecConfig::Aac(c), _) => (c.output_sample_rate(), c.channels),
            (
                _,
                MediaInfo::Audio {
                    sample_rate,
                    channels,
                    ..
                },
            ) => (*sample_rate, *channels),
            _ => (0, 0),
        };
        fields.push(("audiosamplerate", Amf::Number(f64::from(rate))));
        fields.push(("audiosamplesize", Amf::Number(16.0)));
        fields.push(("stereo", Amf::Boolean(channels > 1)));
        fields.push(("audiocodecid", Amf::Number(f64::from(SOUND_AAC))));
    }
    let mut out = Vec::with_capacity(32 + fields.len() * 24);
    amf_string(&mut out, "onMetaData");
    // ECMA array: marker, approximate count, (key, value)…, empty key and object end marker.
    out.push(0x08);
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    for (key, value) in fields {
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        match value {
            Amf::Number(n) => {
                out.push(0x00);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Amf::Boolean(b) => {
                out.push(0x01);
                out.push(u8::from(b));
            }
        }
    }
    out.extend_from_slice(&[0, 0, 0x09]);
    out
}

/// The AMF0 values `onMetaData` uses.
enum Amf {
    Number(f64),
    Boolean(bool),
}

/// An AMF0 string (marker, 16-bit length, UTF-8).
fn amf_string(out: &mut Vec<u8>, s: &str) {
    out.push(0x02);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// What fragment `<variant>Seg<segment>-Frag<fragment>` is made of: each track's samples,
/// and the variant's bootstrap the fragment carries.
#[derive(Debug, Clone)]
pub struct HdsFragment<'p> {
    /// The fragment number (the `mfhd` sequence number).
    pub number: u32,
    /// Each track of the variant, in URL order.
    pub tracks: Vec<HdsFragmentTrack<'p>>,
    /// The variant's `abst` box.
    pub bootstrap: Vec<u8>,
    /// Decode time of the fragment's first reference-track sample, its duration, and their
    /// timescale (the reference track's), for Last-Modified and expiry of live fragments.
    pub start_time: u64,
    pub duration: u64,
    pub timescale: u32,
}

/// One track of a fragment: which samples, and where they go on the variant's timeline.
#[derive(Debug, Clone)]
pub struct HdsFragmentTrack<'p> {
    pub track: &'p Track,
    /// The samples of the fragment (empty for a track that ends before it).
    pub samples: Range<u32>,
    /// See [`HdsTrackSamples::time_shift`].
    pub time_shift: i64,
}

impl HdsFragmentTrack<'_> {
    /// The track with the bytes of its samples (`samples` as [`HdsFragmentTrack::samples`]
    /// lists them), ready for [`write_fragment`].
    pub fn with_bytes<'a>(&'a self, samples: Vec<(Sample, &'a [u8])>) -> HdsTrackSamples<'a> {
        HdsTrackSamples {
            entry: &self.track.entry,
            kind: self.track.kind,
            timescale: self.track.index().timescale,
            time_shift: self.time_shift,
            samples,
        }
    }
}

impl HdsFragment<'_> {
    /// The fragment, from each track's samples with their bytes, in the order of
    /// [`HdsFragment::tracks`].
    pub fn write(&self, tracks: &[HdsTrackSamples<'_>]) -> Result<Vec<u8>, PackageError> {
        write_fragment(self.number, Some(&self.bootstrap), tracks)
    }
}

/// Fragment `fragment` of segment `segment` of a variant. Numbers outside the fragments
/// (before a live window, past its edge) are `NoSuchSegment`; [`live_place`] says which.
pub fn fragment<'p>(
    p: &'p Presentation,
    v: &Variant,
    segment: u32,
    fragment: u64,
    opts: &HdsOptions,
) -> Result<HdsFragment<'p>, PackageError> {
    let tracks = listed_variant(p, v)?;
    let missing = || PackageError::NoSuchSegment(format!("Seg{segment}-Frag{fragment}"));
    if segment != SEGMENT {
        return Err(missing());
    }
    let timing = variant_timing(p, &tracks, opts.target)?;
    let k = timing.table.by_number(fragment).ok_or_else(missing)?;
    let range = timing.table.samples(k).ok_or_else(missing)?;
    let mut parts = Vec::with_capacity(tracks.len());
    for (t, time_shift) in tracks.into_iter().zip(timing.shifts) {
        // A shorter track contributes nothing to the fragments past its end.
        let samples = if std::ptr::eq(t, timing.reference) {
            range.clone()
        } else {
            segments(p, t, opts.target).samples(k).unwrap_or(0..0)
        };
        parts.push(HdsFragmentTrack {
            track: t,
            samples,
            time_shift,
        });
    }
    let idx = timing.reference.index();
    Ok(HdsFragment {
        number: fragment_number(fragment)?,
        tracks: parts,
        bootstrap: timing.bootstrap.to_bytes(),
        start_time: idx.dts(range.start),
        duration: idx.dts(range.end) - idx.dts(range.start),
        timescale: idx.timescale,
    })
}

/// Where fragment `fragment` falls against a live window (`None`: not a live presentation,
/// not a listed variant, or not segment 1, which stay "not found").
pub fn live_place(
    p: &Presentation,
    v: &Variant,
    segment: u32,
    fragment: u64,
    opts: &HdsOptions,
) -> Option<LivePlace> {
    p.live.as_ref()?;
    let tracks = listed_variant(p, v).ok()?;
    if segment != SEGMENT {
        return None;
    }
    let reference = tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .or(tracks.first())?;
    let table = segments(p, reference, opts.target);
    Some(if fragment < table.first_number() {
        LivePlace::Before
    } else if fragment >= table.first_number() + table.len() as u64 {
        LivePlace::NotYet
    } else {
        LivePlace::Gap
    })
}

/// One track of a fragment: its description and the samples with their bytes.
pub struct HdsTrackSamples<'a> {
    pub entry: &'a SampleEntry,
    pub kind: TrackKind,
    pub timescale: u32,
    /// Ticks (track timescale) subtracted from the samples' decode times to put them on the
    /// variant's FLV timeline: 0 for its video, the priming less the video's composition
    /// shift for its audio (see the module comment).
    pub time_shift: i64,
    pub samples: Vec<(Sample, &'a [u8])>,
}

/// A track's sequence header tag body: the codec configuration FLV decoders start from.
fn sequence_header(input: &HdsTrackSamples<'_>) -> Result<(u8, Vec<u8>), PackageError> {
    match (&input.kind, &input.entry.codec) {
        (TrackKind::Video, CodecConfig::Avc(_)) => {
            let record = avc_decoder_configuration_record(input.entry)?;
            let mut body = Vec::with_capacity(AVC_HEADER + record.len());
            body.extend_from_slice(&[(FRAME_KEY << 4) | CODEC_AVC, SEQUENCE_HEADER, 0, 0, 0]);
            body.extend_from_slice(&record);
            Ok((TAG_VIDEO, body))
        }
        (TrackKind::Audio, CodecConfig::Aac(c)) => {
            let mut body = Vec::with_capacity(AAC_HEADER + c.asc.len());
            body.extend_from_slice(&[AAC_SOUND_BYTE, SEQUENCE_HEADER]);
            body.extend_from_slice(&c.asc);
            Ok((TAG_AUDIO, body))
        }
        _ => Err(PackageError::Unsupported(format!(
            "HDS cannot carry {} tracks",
            input.entry.codec_string()
        ))),
    }
}

/// The AVCDecoderConfigurationRecord of an `avc1`/`avc3` entry: the `avcC` box body, as the
/// sample entry writer writes it.
fn avc_decoder_configuration_record(entry: &SampleEntry) -> Result<Vec<u8>, PackageError> {
    let media = |e: crate::mp4::Mp4Error| PackageError::Media(format!("avcC: {e}"));
    let mut boxed = Vec::with_capacity(256);
    write_sample_entry(entry, &mut boxed);
    let mut r = Reader::new(&boxed, 0);
    let (_, mut body) = r
        .next_box_body()
        .map_err(media)?
        .ok_or_else(|| PackageError::Media("no sample entry".into()))?;
    body.skip(VISUAL_SAMPLE_ENTRY_FIELDS).map_err(media)?;
    while let Some((h, child)) = body.next_box_body().map_err(media)? {
        if h.fourcc == AVCC {
            return Ok(child.rest().to_vec());
        }
    }
    Err(PackageError::Media("the sample entry has no avcC".into()))
}

/// One FLV tag of the `mdat`: a sample, or a track's sequence header.
#[derive(Debug, Clone, Copy)]
enum Tag {
    Sample { track: usize, sample: usize },
    SequenceHeader { track: usize },
}

/// A tag's place on the fragment's timeline: its timestamp (ms, unwrapped) and, for video,
/// its composition offset (ms; negative only where the source presents a frame before its
/// decode time, as `trun` version 1 may).
fn sample_time(input: &HdsTrackSamples<'_>, s: &Sample) -> (u64, i64) {
    let ts = tag_time(s.dts, input.time_shift, input.timescale);
    if input.kind != TrackKind::Video {
        return (ts, 0);
    }
    let pts = i128::from(s.dts) + i128::from(s.cto) - i128::from(input.time_shift);
    let cts = to_ms(pts, input.timescale) - i128::from(ts);
    (
        ts,
        cts.clamp(i128::from(SI24.start), i128::from(SI24.end - 1)) as i64,
    )
}

/// The tags of a fragment's `mdat`, in order, and where its random access points are.
struct TagLayout<'t, 'a> {
    tracks: &'t [HdsTrackSamples<'a>],
    /// Each track's sequence header (tag type, body); `None` for a track without samples.
    headers: Vec<Option<(u8, Vec<u8>)>>,
    /// Every tag with its timestamp (ms, unwrapped).
    tags: Vec<(Tag, u64)>,
    /// The first tag of each sequence-header block, and its time.
    access_points: Vec<(usize, u64)>,
}

impl<'t, 'a> TagLayout<'t, 'a> {
    /// Samples in timestamp order across tracks (track order on ties), with a block of every
    /// track's sequence header before the first tag and before every video key frame that
    /// follows video.
    fn of(tracks: &'t [HdsTrackSamples<'a>]) -> Result<TagLayout<'t, 'a>, PackageError> {
        let headers: Vec<Option<(u8, Vec<u8>)>> = tracks
            .iter()
            .map(|t| {
                (!t.samples.is_empty())
                    .then(|| sequence_header(t))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let mut order: Vec<(u64, usize, usize)> = Vec::new();
        order
            .try_reserve_exact(tracks.iter().map(|t| t.samples.len()).sum())
            .map_err(|_| PackageError::Media("too many samples for one fragment".into()))?;
        for (i, t) in tracks.iter().enumerate() {
            for (j, (s, data)) in t.samples.iter().enumerate() {
                if data.len() != s.size as usize {
                    return Err(PackageError::Media(format!(
                        "sample {} was read as {} bytes, not {}",
                        s.index,
                        data.len(),
                        s.size
                    )));
                }
                order.push((sample_time(t, s).0, i, j));
            }
        }
        order.sort_unstable();
        let block: Vec<usize> = (0..tracks.len())
            .filter(|&i| headers[i].is_some())
            .collect();
        let mut tags = Vec::with_capacity(order.len() + block.len() * 4);
        let mut access_points = Vec::new();
        let mut video_since_block = false;
        for (n, &(ts, track, sample)) in order.iter().enumerate() {
            let t = &tracks[track];
            let video = t.kind == TrackKind::Video;
            if n == 0 || video && video_since_block && t.samples[sample].0.sync {
                access_points.push((tags.len(), ts));
                tags.extend(
                    block
                        .iter()
                        .map(|&track| (Tag::SequenceHeader { track }, ts)),
                );
                video_since_block = false;
            }
            video_since_block |= video;
            tags.push((Tag::Sample { track, sample }, ts));
        }
        Ok(TagLayout {
            tracks,
            headers,
            tags,
            access_points,
        })
    }

    /// The tag's type and body size.
    fn measure(&self, tag: Tag) -> (u8, usize) {
        match tag {
            Tag::SequenceHeader { track } => self.headers[track]
                .as_ref()
                .map_or((0, 0), |(tag_type, body)| (*tag_type, body.len())),
            Tag::Sample { track, sample } => {
                let t = &self.tracks[track];
                let len = t.samples[sample].1.len();
                match t.kind {
                    TrackKind::Video => (TAG_VIDEO, AVC_HEADER + len),
                    _ => (TAG_AUDIO, AAC_HEADER + len),
                }
            }
        }
    }

    /// Appends the tag: header, body and PreviousTagSize.
    fn write(&self, out: &mut Vec<u8>, tag: Tag, ts: u64) {
        let (tag_type, body) = self.measure(tag);
        write_tag_header(out, tag_type, body, ts);
        match tag {
            Tag::SequenceHeader { track } => {
                if let Some((_, h)) = &self.headers[track] {
                    out.extend_from_slice(h);
                }
            }
            Tag::Sample { track, sample } => {
                let t = &self.tracks[track];
                let (s, data) = &t.samples[sample];
                if t.kind == TrackKind::Video {
                    let (_, cts) = sample_time(t, s);
                    let frame = if s.sync { FRAME_KEY } else { FRAME_INTER };
                    out.push((frame << 4) | CODEC_AVC);
                    out.push(CODED_FRAMES);
                    out.extend_from_slice(&(cts as i32).to_be_bytes()[1..]);
                } else {
                    out.extend_from_slice(&[AAC_SOUND_BYTE, CODED_FRAMES]);
                }
                out.extend_from_slice(data);
            }
        }
        out.extend_from_slice(&((TAG_HEADER + body) as u32).to_be_bytes());
    }
}

/// Writes an F4F fragment: `afra` (a random access point at every sequence-header block),
/// the `bootstrap` when given, `moof` (`mfhd` only: players read the tags) and an `mdat` of
/// FLV tags in timestamp order across tracks. Every track's sequence header comes first, and
/// again before every later video key frame, so a player that seeks into the fragment (it
/// skips to an `afra` offset) finds the decoder configuration there. Sizes are computed
/// first and the fragment written into one exact allocation.
pub fn write_fragment(
    sequence_number: u32,
    bootstrap: Option<&[u8]>,
    tracks: &[HdsTrackSamples<'_>],
) -> Result<Vec<u8>, PackageError> {
    let layout = TagLayout::of(tracks)?;
    // Each tag's offset in the mdat payload.
    let mut offsets = Vec::with_capacity(layout.tags.len());
    let mut payload = 0u64;
    for &(tag, _) in &layout.tags {
        let (_, body) = layout.measure(tag);
        if body > MAX_TAG_BODY {
            return Err(PackageError::Media(format!(
                "a sample of {body} bytes exceeds FLV's 16 MiB tag"
            )));
        }
        offsets.push(payload);
        payload += (TAG_HEADER + body + TAG_TRAILER) as u64;
    }
    let bootstrap = bootstrap.unwrap_or(&[]);
    let moof_len = 8 + 16;
    let mdat_header = if payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let points = layout.access_points.len();
    let afra_len = |long: bool| 8 + 4 + 1 + 4 + 4 + points * (8 + if long { 8 } else { 4 });
    let before_payload =
        |long: bool| (afra_len(long) + bootstrap.len() + moof_len + mdat_header) as u64;
    let long_offsets = before_payload(false) + payload > u64::from(u32::MAX);
    let mdat_start = before_payload(long_offsets);
    let total = mdat_start + payload;
    let total = usize::try_from(total)
        .map_err(|_| PackageError::Media(format!("a fragment of {total} bytes")))?;
    let mut out = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| PackageError::Media(format!("no memory for a fragment of {total} bytes")))?;

    // afra, its offsets counted from the fragment's first byte, as players count them.
    out.extend_from_slice(&(afra_len(long_offsets) as u32).to_be_bytes());
    out.extend_from_slice(&AFRA.0);
    out.extend_from_slice(&[0; 4]);
    out.push(if long_offsets { AFRA_LONG_OFFSETS } else { 0 });
    out.extend_from_slice(&TIMESCALE.to_be_bytes());
    out.extend_from_slice(&(points as u32).to_be_bytes());
    for &(first_tag, time) in &layout.access_points {
        out.extend_from_slice(&time.to_be_bytes());
        let offset = mdat_start + offsets[first_tag];
        if long_offsets {
            out.extend_from_slice(&offset.to_be_bytes());
        } else {
            out.extend_from_slice(&(offset as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(bootstrap);
    out.extend_from_slice(&(moof_len as u32).to_be_bytes());
    out.extend_from_slice(&MOOF.0);
    out.extend_from_slice(&16u32.to_be_bytes());
    out.extend_from_slice(&MFHD.0);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&sequence_number.to_be_bytes());
    if mdat_header == 16 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&MDAT.0);
        out.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        out.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        out.extend_from_slice(&MDAT.0);
    }
    for &(tag, ts) in &layout.tags {
        layout.write(&mut out, tag, ts);
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// An FLV tag header: type, 24-bit body size, the timestamp's low 24 bits then its high 8
/// (it wraps after 2^32 ms, about 49 days, as FLV's does), stream ID 0.
fn write_tag_header(out: &mut Vec<u8>, tag_type: u8, body: usize, ts: u64) {
    let ts = ts as u32;
    out.push(tag_type);
    out.extend_from_slice(&(body as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::ism::TrackKind as Kind;
    use crate::live::window::{LiveInfo, TrackCuts};
    use crate::package::fixtures::{ladder, presentation};
    use crate::package::DEFAULT_SEGMENT_LENGTH;
    use crate::source::{MmapSource, Source};
    use crate::url::{HdsTarget, Route, RouteOptions, Target};

    fn opts() -> HdsOptions {
        HdsOptions {
            target: DEFAULT_SEGMENT_LENGTH,
            name: "p".into(),
            query: String::new(),
        }
    }

    /// An F4M manifest as a player reads it.
    #[derive(Debug, Default)]
    struct F4m {
        namespace: String,
        fields: HashMap<String, String>,
        bootstraps: HashMap<String, (HashMap<String, String>, Vec<u8>)>,
        media: Vec<(HashMap<String, String>, Vec<u8>)>,
    }

    /// Parses the manifest with an XML parser (so it must be well formed).
    fn parse_f4m(xml: &str) -> F4m {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        reader.config_mut().trim_text(true);
        let mut f4m = F4m::default();
        let mut stack: Vec<(String, HashMap<String, String>)> = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    let attrs: HashMap<String, String> = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                                a.unescape_value().unwrap().into_owned(),
                            )
                        })
                        .collect();
                    if name == "manifest" {
                        f4m.namespace = attrs["xmlns"].clone();
                    }
                    if name == "media" {
                        f4m.media.push((attrs.clone(), Vec::new()));
                    }
                    stack.push((name, attrs));
                }
                Event::Text(t) => {
                    let text = t.unescape().unwrap().into_owned();
                    let (name, attrs) = stack.last().unwrap();
                    match name.as_str() {
                        "bootstrapInfo" => {
                            f4m.bootstraps.insert(
                                attrs["id"].clone(),
                                (attrs.clone(), crate::base64::decode(&text).unwrap()),
                            );
                        }
                        "metadata" => {
                            f4m.media.last_mut().unwrap().1 = crate::base64::decode(&text).unwrap()
                        }
                        _ => {
                            f4m.fields.insert(name.clone(), text);
                        }
                    }
                }
                Event::End(_) => {
                    stack.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert!(stack.is_empty());
        f4m
    }

    /// The fragment URL a player builds from a media `url`: `Seg1-Frag<n>` appended to the
    /// path, the query kept; routed as the origin routes it.
    fn route(url: &str, n: u64) -> (Variant, u32, u64, String) {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let full = format!("/v/p.ism/{path}Seg1-Frag{n}");
        // nginx decodes every `%XX` of the path once before the router sees it.
        let mut uri = Vec::new();
        let mut bytes = full.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                uri.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                uri.push(b);
            }
        }
        match Route::parse(&uri, query.as_bytes(), RouteOptions::default()) {
            Ok(Route {
                target:
                    Target::Hds(HdsTarget::Fragment {
                        variant,
                        segment,
                        fragment,
                    }),
                ..
            }) => (variant, segment, fragment, query.to_string()),
            other => panic!("{full}: {other:?}"),
        }
    }

    /// Reads a fragment's samples from the fixture files and writes it.
    fn write(f: &HdsFragment<'_>) -> Vec<u8> {
        let mut read: Vec<Vec<(Sample, Vec<u8>)>> = Vec::new();
        for part in &f.tracks {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures")
                .join(&part.track.source);
            let src = MmapSource::open(&path).unwrap();
            let samples = part
                .track
                .index()
                .samples(part.samples.clone())
                .map(|s| {
                    (
                        s,
                        src.bytes(s.offset, s.size as usize).unwrap().into_owned(),
                    )
                })
                .collect();
            read.push(samples);
        }
        let inputs: Vec<HdsTrackSamples<'_>> = f
            .tracks
            .iter()
            .zip(&read)
            .map(|(part, samples)| {
                part.with_bytes(samples.iter().map(|(s, d)| (*s, &d[..])).collect())
            })
            .collect();
        f.write(&inputs).unwrap()
    }

    /// The top-level boxes of a fragment, each checked to fill its size exactly.
    fn boxes(bytes: &[u8]) -> Vec<(FourCC, &[u8])> {
        let mut r = Reader::new(bytes, 0);
        let mut out = Vec::new();
        while let Some((h, body)) = r.next_box_body().unwrap() {
            out.push((h.fourcc, body.rest()));
        }
        assert!(r.is_empty());
        out
    }

    /// One FLV tag of an `mdat`.
    #[derive(Debug)]
    struct FlvTag<'a> {
        /// Offset of the tag in the `mdat` payload.
        at: usize,
        tag_type: u8,
        timestamp: u32,
        body: &'a [u8],
    }

    /// Reads the tags of an `mdat` payload, checking each header and PreviousTagSize.
    fn flv_tags(mut mdat: &[u8]) -> Vec<FlvTag<'_>> {
        let mut tags = Vec::new();
        let mut at = 0;
        while !mdat.is_empty() {
            let size = u32::from_be_bytes([0, mdat[1], mdat[2], mdat[3]]) as usize;
            let timestamp = u32::from_be_bytes([mdat[7], mdat[4], mdat[5], mdat[6]]);
            assert_eq!(&mdat[8..11], &[0, 0, 0], "stream ID");
            let body = &mdat[11..11 + size];
            let previous = u32::from_be_bytes(mdat[11 + size..15 + size].try_into().unwrap());
            assert_eq!(previous as usize, 11 + size, "PreviousTagSize");
            tags.push(FlvTag {
                at,
                tag_type: mdat[0],
                timestamp,
                body,
            });
            at += 15 + size;
            mdat = &mdat[15 + size..];
        }
        tags
    }

    /// The `afra` entries (time, offset) and whether offsets are long.
    fn afra_entries(body: &[u8]) -> (bool, Vec<(u64, u64)>) {
        let mut r = Reader::new(body, 0);
        assert_eq!(r.full_box().unwrap(), (0, 0));
        let flags = r.u8().unwrap();
        let long = flags & AFRA_LONG_OFFSETS != 0;
        assert_eq!(
            flags & !AFRA_LONG_OFFSETS,
            0,
            "no long IDs, no global entries"
        );
        assert_eq!(r.u32().unwrap(), 1000);
        let n = r.u32().unwrap();
        let entries = (0..n)
            .map(|_| {
                let time = r.u64().unwrap();
                let offset = if long {
                    r.u64().unwrap()
                } else {
                    u64::from(r.u32().unwrap())
                };
                (time, offset)
            })
            .collect();
        assert!(r.is_empty());
        (long, entries)
    }

    /// A fragment taken apart: its boxes in order, checked.
    struct F4f<'a> {
        afra: Vec<(u64, u64)>,
        abst: &'a [u8],
        sequence_number: u32,
        /// Offset of the `mdat` payload in the fragment.
        mdat_at: usize,
        tags: Vec<FlvTag<'a>>,
    }

    fn parse_f4f(bytes: &[u8]) -> F4f<'_> {
        let b = boxes(bytes);
        let names: Vec<FourCC> = b.iter().map(|(f, _)| *f).collect();
        assert_eq!(names, [AFRA, ABST, MOOF, MDAT]);
        let (long, afra) = afra_entries(b[0].1);
        assert!(!long, "small fragments have 32-bit offsets");
        let moof = boxes(b[2].1);
        assert_eq!(moof.len(), 1);
        assert_eq!(moof[0].0, MFHD);
        let mfhd = moof[0].1;
        assert_eq!(&mfhd[..4], &[0; 4]);
        let abst_at = 8 + b[0].1.len();
        F4f {
            afra,
            abst: &bytes[abst_at..abst_at + 8 + b[1].1.len()],
            sequence_number: u32::from_be_bytes(mfhd[4..8].try_into().unwrap()),
            mdat_at: bytes.len() - b[3].1.len(),
            tags: flv_tags(b[3].1),
        }
    }

    /// Reads AMF0 `onMetaData` into its number and boolean fields.
    fn amf_fields(data: &[u8]) -> HashMap<String, f64> {
        let mut r = Reader::new(data, 0);
        assert_eq!(r.u8().unwrap(), 0x02);
        let n = usize::from(r.u16().unwrap());
        assert_eq!(r.bytes(n).unwrap(), b"onMetaData");
        assert_eq!(r.u8().unwrap(), 0x08);
        let count = r.u32().unwrap();
        let mut fields = HashMap::new();
        loop {
            let n = usize::from(r.u16().unwrap());
            let key = String::from_utf8(r.bytes(n).unwrap().to_vec()).unwrap();
            let marker = r.u8().unwrap();
            if key.is_empty() {
                assert_eq!(marker, 0x09, "object end");
                break;
            }
            let value = match marker {
                0x00 => f64::from_bits(r.u64().unwrap()),
                0x01 => f64::from(r.u8().unwrap()),
                other => panic!("AMF0 marker {other}"),
            };
            fields.insert(key, value);
        }
        assert!(r.is_empty());
        assert_eq!(fields.len(), count as usize);
        fields
    }

    fn progressive() -> Presentation {
        presentation(&[
            (Kind::Video, "progressive.mp4", "video", 1_000_000, None),
            (Kind::Audio, "progressive.mp4", "audio", 128_000, None),
        ])
        .unwrap()
    }

    fn not_listed<T: std::fmt::Debug>(r: Result<T, PackageError>) {
        match r {
            Err(PackageError::NoSuchTrack(_)) => {}
            other => panic!("expected NoSuchTrack (404), got {other:?}"),
        }
    }

    fn no_segment<T: std::fmt::Debug>(r: Result<T, PackageError>) {
        match r {
            Err(PackageError::NoSuchSegment(_)) => {}
            other => panic!("expected NoSuchSegment (404), got {other:?}"),
        }
    }

    /// The variant a manifest's `n`th media names, as the router gives it back.
    fn variant_of(p: &Presentation, o: &HdsOptions, n: usize) -> Variant {
        let f4m = parse_f4m(&manifest(p, o).unwrap());
        route(&f4m.media[n].0["url"], 1).0
    }

    #[test]
    fn variants_mux_the_default_audio_with_each_video() {
        let p = ladder();
        let v = variants(&p);
        assert_eq!(v.len(), 3);
        for (tracks, bitrate) in v.iter().zip([165_000, 273_000, 432_000]) {
            let ids: Vec<String> = tracks.iter().map(|t| t.id()).collect();
            assert_eq!(
                ids,
                ["audio_eng=128000".to_string(), format!("video={bitrate}")]
            );
        }
    }

    #[test]
    fn manifest_lists_every_variant_with_its_bootstrap() {
        let p = ladder();
        let f4m = parse_f4m(&manifest(&p, &opts()).unwrap());
        assert_eq!(f4m.namespace, "http://ns.adobe.com/f4m/1.0");
        assert_eq!(f4m.fields["id"], "p");
        assert_eq!(f4m.fields["streamType"], "recorded");
        assert_eq!(f4m.fields["duration"], "4.000");
        assert_eq!(f4m.bootstraps.len(), 3);
        assert_eq!(f4m.media.len(), 3);
        for ((attrs, metadata), tracks) in f4m.media.iter().zip(variants(&p)) {
            let video = tracks[1];
            assert_eq!(
                attrs["url"],
                format!("p-audio_eng=128000-video={}", video.bitrate)
            );
            assert_eq!(attrs["streamId"], attrs["url"]);
            assert_eq!(
                attrs["bitrate"],
                ((video.bitrate + 128_000) / 1000).to_string()
            );
            let MediaInfo::Video { width, height, .. } = video.entry.media else {
                panic!("video");
            };
            assert_eq!(attrs["width"], width.to_string());
            assert_eq!(attrs["height"], height.to_string());
            // The url is the variant the router parses, naming exactly these tracks.
            let (variant, segment, fragment, _) = route(&attrs["url"], 1);
            assert_eq!((segment, fragment), (1, 1));
            let named = listed_variant(&p, &variant).unwrap();
            assert!(named.iter().zip(&tracks).all(|(a, b)| std::ptr::eq(*a, *b)));
            // Its bootstrap, inline and decodable.
            let (info, abst) = &f4m.bootstraps[&attrs["bootstrapInfoId"]];
            assert_eq!(info["profile"], "named");
            let b = Bootstrap::parse(abst).unwrap();
            assert!(!b.live);
            assert_eq!(b.current_media_time, 4000);
            assert_eq!(b.fragments_in_segment, 2);
            assert_eq!(
                b.runs,
                [
                    FragmentRun::Run {
                        first: 1,
                        timestamp: 0,
                        duration: 2000
                    },
                    FragmentRun::Discontinuity {
                        first: 0,
                        timestamp: 0,
                        indicator: Discontinuity::EndOfPresentation
                    }
                ]
            );
            assert_eq!(abst, &bootstrap(&p, &variant, &opts()).unwrap());
            // onMetaData.
            let meta = amf_fields(metadata);
            assert_eq!(meta["duration"], 4.0);
            assert_eq!(meta["videocodecid"], 7.0);
            assert_eq!(meta["audiocodecid"], 10.0);
            assert_eq!(meta["width"], f64::from(width));
            assert_eq!(meta["height"], f64::from(height));
            assert_eq!(meta["framerate"], 25.0);
            assert_eq!(meta["videodatarate"], video.bitrate as f64 / 1000.0);
            assert_eq!(meta["audiosamplerate"], 48_000.0);
            assert_eq!(meta["stereo"], 1.0);
        }
    }

    #[test]
    fn names_and_queries_survive_the_round_trip() {
        let p = crate::package::fixtures::ladder_named([
            "v ideo",
            "v ideo",
            "v ideo",
            "audio&eng",
            "audio_fra",
            "subs",
        ])
        .unwrap();
        let o = HdsOptions {
            query: "?vbegin=0&filter=type!=\"text\"".into(),
            ..opts()
        };
        let xml = manifest(&p, &o).unwrap();
        let f4m = parse_f4m(&xml);
        for (attrs, _) in &f4m.media {
            assert!(
                attrs["url"].ends_with("?vbegin=0&filter=type!=\"text\""),
                "{}",
                attrs["url"]
            );
            let (variant, _, _, query) = route(&attrs["url"], 2);
            assert_eq!(query, "vbegin=0&filter=type!=\"text\"");
            assert!(xml.contains("&quot;text&quot;") && xml.contains("&amp;filter"));
            fragment(&p, &variant, 1, 2, &o).unwrap();
        }
    }

    #[test]
    fn every_fragment_a_bootstrap_announces_is_served() {
        for p in [ladder(), progressive()] {
            let o = opts();
            let f4m = parse_f4m(&manifest(&p, &o).unwrap());
            for (attrs, _) in &f4m.media {
                let b = Bootstrap::parse(&f4m.bootstraps[&attrs["bootstrapInfoId"]].1).unwrap();
                let mut fragments = 0;
                for n in 1..=b.fragments_in_segment {
                    let (variant, segment, number, _) = route(&attrs["url"], u64::from(n));
                    let f = fragment(&p, &variant, segment, number, &o).unwrap();
                    let bytes = write(&f);
                    let f4f = parse_f4f(&bytes);
                    assert_eq!(f4f.sequence_number, n);
                    assert_eq!(f4f.abst, &f4m.bootstraps[&attrs["bootstrapInfoId"]].1[..]);
                    // The fragment starts where the bootstrap says.
                    let (start, _) = b.fragment_time(n).unwrap();
                    let first_frame = f4f
                        .tags
                        .iter()
                        .find(|t| t.tag_type == TAG_VIDEO && t.body[1] == CODED_FRAMES)
                        .unwrap();
                    assert_eq!(u64::from(first_frame.timestamp), start);
                    fragments += 1;
                }
                assert_eq!(fragments, 2);
                let (variant, _, _, _) = route(&attrs["url"], 1);
                no_segment(fragment(&p, &variant, 1, 3, &o));
                no_segment(fragment(&p, &variant, 2, 1, &o));
            }
        }
    }

    #[test]
    fn fragments_hold_sequence_headers_then_interleaved_samples() {
        let p = progressive();
        let o = opts();
        let variant = variant_of(&p, &o, 0);
        for n in 1..=2 {
            let f = fragment(&p, &variant, 1, n, &o).unwrap();
            let bytes = write(&f);
            let f4f = parse_f4f(&bytes);
            let [a, v] = &f.tracks[..] else {
                panic!("two tracks");
            };
            let (audio, audio_range, video, video_range) =
                (a.track, &a.samples, v.track, &v.samples);
            assert_eq!(
                (audio.kind, video.kind),
                (TrackKind::Audio, TrackKind::Video)
            );
            // The sequence headers first: AVCDecoderConfigurationRecord and AudioSpecificConfig.
            let (CodecConfig::Avc(avc), CodecConfig::Aac(aac)) =
                (&video.entry.codec, &audio.entry.codec)
            else {
                panic!("H.264 and AAC");
            };
            let first = &f4f.tags[0];
            assert_eq!(first.tag_type, TAG_AUDIO, "tracks in URL order");
            assert_eq!(first.body, [&[0xaf, 0][..], &aac.asc].concat());
            let second = &f4f.tags[1];
            assert_eq!(second.tag_type, TAG_VIDEO);
            assert_eq!(&second.body[..5], &[0x17, 0, 0, 0, 0]);
            let record = &second.body[5..];
            assert_eq!(
                record[..4],
                [1, avc.profile_idc, avc.constraint_flags, avc.level_idc]
            );
            assert_eq!(record[4], 0xfc | (avc.nal_length_size - 1));
            let sps_len = usize::from(u16::from_be_bytes([record[6], record[7]]));
            assert_eq!(record[5] & 0x1f, 1);
            assert_eq!(&record[8..8 + sps_len], &avc.sps[0][..]);
            assert_eq!(first.timestamp, second.timestamp);
            // Then every sample once, in timestamp order, with its bytes as stored.
            let samples = &f4f.tags[2..];
            assert!(samples.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            let src = MmapSource::open(
                &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../tests/fixtures/progressive.mp4"),
            )
            .unwrap();
            let video_tags: Vec<&FlvTag<'_>> =
                samples.iter().filter(|t| t.tag_type == TAG_VIDEO).collect();
            let audio_tags: Vec<&FlvTag<'_>> =
                samples.iter().filter(|t| t.tag_type == TAG_AUDIO).collect();
            assert_eq!(video_tags.len(), video_range.len());
            assert_eq!(audio_tags.len(), audio_range.len());
            let v = video.index();
            for (tag, s) in video_tags.iter().zip(v.samples(video_range.clone())) {
                let data = src.bytes(s.offset, s.size as usize).unwrap();
                assert_eq!(&tag.body[5..], &data[..]);
                assert_eq!(tag.body[0], if s.sync { 0x17 } else { 0x27 });
                assert_eq!(tag.body[1], 1, "AVC NALU");
                // Decode time in ms; presentation = decode + composition as stored.
                assert_eq!(u64::from(tag.timestamp), s.dts * 1000 / 12_800);
                let cts = i32::from_be_bytes([tag.body[2], tag.body[2], tag.body[3], tag.body[4]])
                    << 8
                    >> 8;
                let pts = i64::from(tag.timestamp) + i64::from(cts);
                let expected = (s.dts as i64 + i64::from(s.cto)) * 1000 / 12_800;
                assert_eq!(pts, expected, "sample {}", s.index);
            }
            if n == 1 {
                // The first frame decodes at 0 and presents at the composition shift.
                let first_frame = video_tags[0];
                assert_eq!(first_frame.timestamp, 0);
                assert_eq!(&first_frame.body[2..5], &[0, 0, 80]);
            }
            // No frame presents before it decodes.
            assert!(video_tags.iter().all(|t| t.body[2] == 0));
            let a = audio.index();
            for (tag, s) in audio_tags.iter().zip(a.samples(audio_range.clone())) {
                let data = src.bytes(s.offset, s.size as usize).unwrap();
                assert_eq!(tag.body, [&[0xaf, 1][..], &data[..]].concat());
                // In sync with the video: its priming (1024 samples) removed, the video's
                // composition shift (80 ms = 3840 samples) added.
                let expected = (s.dts as i64 - 1024 + 3840) * 1000 / 48_000;
                assert_eq!(i64::from(tag.timestamp), expected);
            }
            // One key frame, so one random access point: the headers at the payload's start.
            assert_eq!(f4f.afra, [(u64::from(first.timestamp), f4f.mdat_at as u64)]);
        }
    }

    #[test]
    fn every_key_frame_is_a_random_access_point_with_the_headers() {
        // Four-second fragments hold two GOPs.
        let p = progressive();
        let o = HdsOptions {
            target: SegmentLength {
                numerator: 4,
                denominator: 1,
            },
            ..opts()
        };
        let variant = variant_of(&p, &o, 0);
        let f = fragment(&p, &variant, 1, 1, &o).unwrap();
        let bytes = write(&f);
        let f4f = parse_f4f(&bytes);
        assert_eq!(f4f.afra.len(), 2);
        let key_frames = f4f
            .tags
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && t.body[..2] == [0x17, 1])
            .count();
        assert_eq!(key_frames, 2);
        for &(time, offset) in &f4f.afra {
            // The offset counts from the fragment's first byte, where the afra box starts.
            let at = offset as usize - f4f.mdat_at;
            let k = f4f.tags.iter().position(|t| t.at == at).unwrap();
            let block = &f4f.tags[k..k + 2];
            assert_eq!(block[0].body[..2], [0xaf, 0], "AAC sequence header");
            assert_eq!(block[1].body[..2], [0x17, 0], "AVC sequence header");
            assert!(block.iter().all(|t| u64::from(t.timestamp) == time));
            // The next video tag is a key frame (at the start, audio at the same time may
            // come between).
            let next_video = f4f.tags[k + 2..]
                .iter()
                .find(|t| t.tag_type == TAG_VIDEO)
                .unwrap();
            assert_eq!(next_video.body[..2], [0x17, 1], "the key frame");
            // Read from the afra offset to the end, the tags are whole.
            assert_eq!(
                flv_tags(&bytes[offset as usize..]).len(),
                f4f.tags.len() - k
            );
        }
        assert!(f4f.afra[1].0 >= 2000);
    }

    #[test]
    fn tracks_of_a_variant_share_the_video_timeline() {
        // No edit lists: nothing moves.
        let p = ladder();
        for v in variants(&p) {
            assert_eq!(time_shifts(&v), [0, 0]);
        }
        // Video shifted by 1024 ticks at 12.8 kHz (80 ms, 3840 ticks at 48 kHz), audio primed
        // by 1024 samples: the audio moves 2816 ticks later, the video stays.
        let p = progressive();
        let v = &variants(&p)[0];
        assert_eq!(v[0].kind, TrackKind::Audio);
        assert_eq!(time_shifts(v), [1024 - 3840, 0]);
        // Audio alone: its presentation time.
        assert_eq!(time_shifts(&[v[0]]), [1024]);
    }

    #[test]
    fn timestamps_composition_times_and_wrapping() {
        let p = progressive();
        let (video, audio) = (&p.tracks[0], &p.tracks[1]);
        let sample = |index, dts, cto, sync| Sample {
            index,
            dts,
            duration: 512,
            cto,
            size: 3,
            offset: 0,
            sync,
        };
        // Decode times of 0x12345678 ms, and past 2^32 ms.
        let (far, past) = (3_909_374_669, 2u64.pow(32) * 128 / 10 + 1024);
        let video_samples = [
            (sample(0, 0, 1024, true), &[1u8, 2, 3][..]),
            (sample(1, 512, 2560, false), &[4, 5, 6][..]),
            (sample(2, 1536, -256, false), &[7, 8, 9][..]),
            (sample(3, far, 1024, false), &[10, 11, 12][..]),
            (sample(4, past, 0, true), &[13, 14, 15][..]),
        ];
        let audio_sample = |index, dts| Sample {
            duration: 1024,
            ..sample(index, dts, 0, true)
        };
        let audio_samples = [
            (audio_sample(0, 0), &[21u8, 22, 23][..]),
            (audio_sample(1, 1024), &[24, 25, 26][..]),
            (audio_sample(2, 2048), &[27, 28, 29][..]),
        ];
        let shifts = time_shifts(&[video, audio]);
        let inputs = [
            (video, shifts[0], &video_samples[..]),
            (audio, shifts[1], &audio_samples[..]),
        ]
        .map(|(t, time_shift, samples)| HdsTrackSamples {
            entry: &t.entry,
            kind: t.kind,
            timescale: t.index().timescale,
            time_shift,
            samples: samples.to_vec(),
        });
        let bytes = write_fragment(7, None, &inputs).unwrap();
        let b = boxes(&bytes);
        assert_eq!(
            b.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            [AFRA, MOOF, MDAT]
        );
        let tags = flv_tags(b[2].1);
        let samples: Vec<(u8, u32, &[u8])> = tags
            .iter()
            .filter(|t| t.body[1] == CODED_FRAMES)
            .map(|t| (t.tag_type, t.timestamp, &t.body[t.body.len() - 3..]))
            .collect();
        // By timestamp across tracks: video at its decode times, audio 2816 ticks later
        // (58.7 ms, 80 ms, 101.3 ms), the timestamps past 2^32 ms wrapped.
        assert_eq!(
            samples,
            [
                (TAG_VIDEO, 0, &[1, 2, 3][..]),
                (TAG_VIDEO, 40, &[4, 5, 6][..]),
                (TAG_AUDIO, 58, &[21, 22, 23][..]),
                (TAG_AUDIO, 80, &[24, 25, 26][..]),
                (TAG_AUDIO, 101, &[27, 28, 29][..]),
                (TAG_VIDEO, 120, &[7, 8, 9][..]),
                (TAG_VIDEO, 0x1234_5678, &[10, 11, 12][..]),
                (TAG_VIDEO, 79, &[13, 14, 15][..]),
            ]
        );
        // Composition times in ms: 80, 240 - 40, then 100 - 120 < 0 from a negative offset
        // (as a `trun` version 1 stores), then 80 and 0.
        let cts: Vec<[u8; 3]> = tags
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && t.body[1] == CODED_FRAMES)
            .map(|t| [t.body[2], t.body[3], t.body[4]])
            .collect();
        assert_eq!(
            cts,
            [
                [0, 0, 80],
                [0, 0, 200],
                [0xff, 0xff, 0xec],
                [0, 0, 80],
                [0, 0, 0]
            ]
        );
        // The timestamp's extension byte holds its bits 24..31.
        let far_tag = tags.iter().find(|t| t.timestamp == 0x1234_5678).unwrap();
        assert_eq!(
            b[2].1[far_tag.at + 4..far_tag.at + 8],
            [0x34, 0x56, 0x78, 0x12]
        );
        // Random access points at the start and at the second key frame, whose time the afra
        // holds in 64 bits.
        let afra = afra_entries(b[0].1).1;
        assert_eq!(afra.len(), 2);
        assert_eq!(afra[0].0, 0);
        assert_eq!(afra[1].0, past * 1000 / 12_800);
        // mfhd carries the sequence number.
        assert_eq!(&b[1].1[8 + 4..], &7u32.to_be_bytes());
    }

    #[test]
    fn samples_of_the_wrong_size_are_refused() {
        let p = progressive();
        let t = &p.tracks[0];
        let s = t.index().samples(0..1).next().unwrap();
        let short = vec![0u8; s.size as usize - 1];
        let part = HdsFragmentTrack {
            track: t,
            samples: 0..1,
            time_shift: 0,
        };
        assert!(matches!(
            write_fragment(1, None, &[part.with_bytes(vec![(s, &short[..])])]),
            Err(PackageError::Media(_))
        ));
        // A fragment without samples is just its boxes.
        let bytes = write_fragment(1, None, &[part.with_bytes(Vec::new())]).unwrap();
        assert_eq!(afra_entries(boxes(&bytes)[0].1).1, []);
        assert_eq!(boxes(&bytes)[2], (MDAT, &[][..]));
    }

    fn line(first_number: u64, spans: &[(u64, u64)]) -> Timeline {
        Timeline {
            first_number,
            fragments: spans
                .iter()
                .map(|&(start, end)| FragmentTime { start, end })
                .collect(),
        }
    }

    #[test]
    fn fragment_runs_group_equal_durations() {
        let b = Bootstrap::of(
            &line(1, &[(0, 2000), (2000, 4000), (4000, 6000), (6000, 7500)]),
            false,
        )
        .unwrap();
        assert_eq!(
            b.runs,
            [
                FragmentRun::Run {
                    first: 1,
                    timestamp: 0,
                    duration: 2000
                },
                FragmentRun::Run {
                    first: 4,
                    timestamp: 6000,
                    duration: 1500
                },
                FragmentRun::Discontinuity {
                    first: 0,
                    timestamp: 0,
                    indicator: Discontinuity::EndOfPresentation
                },
            ]
        );
        assert_eq!((b.version, b.fragments_in_segment), (4, 4));
        assert_eq!(b.current_media_time, 7500);
        assert_eq!(b.fragment_time(1), Some((0, 2000)));
        assert_eq!(b.fragment_time(3), Some((4000, 2000)));
        assert_eq!(b.fragment_time(4), Some((6000, 1500)));
        assert_eq!(b.fragment_time(5), None);
        assert_eq!(b.fragment_time(0), None);
        // Durations that alternate (29.97 fps in ms) make runs of one.
        let b = Bootstrap::of(&line(1, &[(0, 2002), (2002, 4003), (4003, 6005)]), false).unwrap();
        assert_eq!(b.runs.len(), 4);
        assert_eq!(b.fragment_time(2), Some((2002, 2001)));
    }

    #[test]
    fn live_windows_number_from_their_first_fragment_and_mark_gaps() {
        let b = Bootstrap::of(
            &line(41, &[(80_000, 82_000), (82_000, 84_000), (86_000, 88_000)]),
            true,
        )
        .unwrap();
        assert_eq!(
            b.runs,
            [
                FragmentRun::Run {
                    first: 41,
                    timestamp: 80_000,
                    duration: 2000
                },
                FragmentRun::Discontinuity {
                    first: 43,
                    timestamp: 84_000,
                    indicator: Discontinuity::Timestamps
                },
                FragmentRun::Run {
                    first: 43,
                    timestamp: 86_000,
                    duration: 2000
                },
            ]
        );
        assert!(b.live);
        assert_eq!((b.version, b.fragments_in_segment), (43, 43));
        assert_eq!(b.current_media_time, 88_000);
        assert_eq!(b.duration(), 8000);
        assert_eq!(b.fragment_time(40), None);
        assert_eq!(b.fragment_time(42), Some((82_000, 2000)));
        assert_eq!(b.fragment_time(43), Some((86_000, 2000)));
        // Fragment numbers are 32 bits in HDS.
        assert!(matches!(
            Bootstrap::of(&line(u64::from(u32::MAX), &[(0, 1), (1, 2)]), true),
            Err(PackageError::Media(_))
        ));
    }

    #[test]
    fn abst_layout() {
        let b = Bootstrap::of(&line(41, &[(0, 2000), (2000, 3000)]), true).unwrap();
        let bytes = b.to_bytes();
        assert_eq!(Bootstrap::parse(&bytes).unwrap(), b);
        let size = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(size(0), bytes.len());
        assert_eq!(&bytes[4..8], b"abst");
        assert_eq!(&bytes[8..12], &[0; 4], "version 0, flags 0");
        assert_eq!(&bytes[12..16], &42u32.to_be_bytes(), "BootstrapinfoVersion");
        assert_eq!(bytes[16], 0x20, "profile 0 (named), live, no update");
        assert_eq!(&bytes[17..21], &1000u32.to_be_bytes());
        assert_eq!(&bytes[21..29], &3000u64.to_be_bytes(), "CurrentMediaTime");
        assert_eq!(&bytes[29..37], &[0; 8], "SmpteTimeCodeOffset");
        // Empty movie identifier, no servers, no qualities, empty DRM data and metadata,
        // one segment run table.
        assert_eq!(&bytes[37..43], &[0, 0, 0, 0, 0, 1]);
        let asrt = 43;
        assert_eq!(size(asrt), 8 + 4 + 1 + 4 + 8);
        assert_eq!(&bytes[asrt + 4..asrt + 8], b"asrt");
        assert_eq!(
            &bytes[asrt + 12..asrt + 25],
            &[0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 42],
            "no qualities, one entry: segment 1 holds fragments through 42"
        );
        let afrt = asrt + 25 + 1;
        assert_eq!(bytes[afrt - 1], 1, "one fragment run table");
        assert_eq!(size(afrt), 8 + 4 + 4 + 1 + 4 + 2 * 16);
        assert_eq!(&bytes[afrt + 4..afrt + 8], b"afrt");
        assert_eq!(&bytes[afrt + 12..afrt + 16], &1000u32.to_be_bytes());
        assert_eq!(&bytes[afrt + 16..afrt + 21], &[0, 0, 0, 0, 2]);
        assert_eq!(afrt + size(afrt), bytes.len());
        // A discontinuity entry carries its indicator after a zero duration.
        let end = Bootstrap::of(&line(1, &[(0, 2000)]), false).unwrap();
        let bytes = end.to_bytes();
        assert_eq!(&bytes[bytes.len() - 17..], &[&[0u8; 16][..], &[0]].concat());
        assert_eq!(Bootstrap::parse(&bytes).unwrap(), end);
        assert!(Bootstrap::parse(&bytes[..bytes.len() - 1]).is_err());
    }

    /// The ladder as a live window whose fragments are numbered from `first_number`.
    fn live_ladder(first_number: u64, ended: bool) -> Presentation {
        let mut p = ladder();
        let cuts = p
            .of_kind(TrackKind::Video)
            .map(|t| {
                let table = crate::segment::reference_segments(t.index(), 2, 1);
                TrackCuts {
                    src: t.source.clone(),
                    starts: table.starts().iter().map(|&s| t.index().dts(s)).collect(),
                    ingested_ms: vec![0; table.len()],
                    first_number,
                    chunk_starts: Vec::new(),
                    growing: false,
                }
            })
            .collect();
        p.live = Some(Arc::new(LiveInfo {
            anchor_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_004_000,
            now_ms: 1_700_000_004_500,
            ended,
            dvr_window_secs: 30,
            retain_secs: None,
            cuts,
            window: (0.0, 4.0),
            first_timeline: 0,
            timeline_breaks: Vec::new(),
            low_latency: false,
            declared_segment_secs: None,
        }));
        p
    }

    #[test]
    fn live_manifests_and_fragments_follow_the_window() {
        let p = live_ladder(41, false);
        let o = opts();
        let xml = manifest(&p, &o).unwrap();
        let f4m = parse_f4m(&xml);
        assert_eq!(f4m.fields["streamType"], "live");
        assert!(!f4m.fields.contains_key("duration"), "{xml}");
        for (attrs, metadata) in &f4m.media {
            assert_eq!(amf_fields(metadata)["duration"], 0.0);
            let b = Bootstrap::parse(&f4m.bootstraps[&attrs["bootstrapInfoId"]].1).unwrap();
            assert!(b.live);
            assert_eq!(
                b.runs,
                [FragmentRun::Run {
                    first: 41,
                    timestamp: 0,
                    duration: 2000
                }]
            );
            assert_eq!(b.fragments_in_segment, 42);
            let (variant, _, _, _) = route(&attrs["url"], 41);
            for n in [41, 42] {
                let f = fragment(&p, &variant, 1, n, &o).unwrap();
                assert_eq!(u64::from(f.number), n);
                let bytes = write(&f);
                let f4f = parse_f4f(&bytes);
                assert_eq!(u64::from(f4f.sequence_number), n);
                assert!(Bootstrap::parse(f4f.abst).unwrap().live);
                assert_eq!(f.start_time, (n - 41) * 20_000_000);
                assert_eq!((f.duration, f.timescale), (20_000_000, 10_000_000));
                assert_eq!(live_place(&p, &variant, 1, n, &o), Some(LivePlace::Gap));
            }
            // Before the window: not found (404); past the edge: not yet (503).
            no_segment(fragment(&p, &variant, 1, 40, &o));
            no_segment(fragment(&p, &variant, 1, 43, &o));
            assert_eq!(live_place(&p, &variant, 1, 1, &o), Some(LivePlace::Before));
            assert_eq!(live_place(&p, &variant, 1, 40, &o), Some(LivePlace::Before));
            assert_eq!(live_place(&p, &variant, 1, 43, &o), Some(LivePlace::NotYet));
            assert_eq!(live_place(&p, &variant, 2, 41, &o), None);
            assert_eq!(live_place(&ladder(), &variant, 1, 43, &o), None);
        }
        // Once the stream ended, the window plays as a recording.
        let p = live_ladder(41, true);
        let f4m = parse_f4m(&manifest(&p, &o).unwrap());
        assert_eq!(f4m.fields["streamType"], "recorded");
        assert_eq!(f4m.fields["duration"], "4.000");
        let b = Bootstrap::parse(&f4m.bootstraps["bootstrap0"].1).unwrap();
        assert!(!b.live);
        assert_eq!(b.runs.len(), 2);
        assert_eq!(b.fragment_time(42), Some((2000, 2000)));
    }

    #[test]
    fn subclips_start_at_fragment_one_and_time_zero() {
        let mut p = ladder();
        p.map_media(|m| m.subclip(2_000_000, None).map(Arc::new));
        let o = opts();
        let f4m = parse_f4m(&manifest(&p, &o).unwrap());
        assert_eq!(f4m.fields["duration"], "2.000");
        let b = Bootstrap::parse(&f4m.bootstraps["bootstrap0"].1).unwrap();
        assert_eq!(b.fragments_in_segment, 1);
        assert_eq!(b.fragment_time(1), Some((0, 2000)));
        let (variant, _, _, _) = route(&f4m.media[0].0["url"], 1);
        let f4f_bytes = write(&fragment(&p, &variant, 1, 1, &o).unwrap());
        let f4f = parse_f4f(&f4f_bytes);
        assert_eq!(f4f.tags[0].timestamp, 0);
        no_segment(fragment(&p, &variant, 1, 2, &o));
    }

    #[test]
    fn codecs_hds_cannot_carry_are_left_out() {
        let o = opts();
        // HEVC video with AAC: audio-only variants.
        let p = presentation(&[
            (Kind::Video, "hevc.mp4", "video", 1_000_000, None),
            (Kind::Audio, "hevc.mp4", "audio", 128_000, None),
        ])
        .unwrap();
        let f4m = parse_f4m(&manifest(&p, &o).unwrap());
        assert_eq!(f4m.media.len(), 1);
        assert_eq!(f4m.media[0].0["url"], "p-audio=128000");
        assert!(!f4m.media[0].0.contains_key("width"));
        let meta = amf_fields(&f4m.media[0].1);
        assert!(!meta.contains_key("videocodecid"));
        let (audio, _, _, _) = route(&f4m.media[0].0["url"], 1);
        let f = fragment(&p, &audio, 1, 1, &o).unwrap();
        let bytes = write(&f);
        let f4f = parse_f4f(&bytes);
        assert!(f4f.tags.iter().all(|t| t.tag_type == TAG_AUDIO));
        assert_eq!(f4f.afra.len(), 1);
        let (hevc, _, _, _) = route("p-video=1000000-audio=128000", 1);
        not_listed(fragment(&p, &hevc, 1, 1, &o));
        let (hevc, _, _, _) = route("p-audio=128000-video=1000000", 1);
        not_listed(fragment(&p, &hevc, 1, 1, &o));
        // H.264 with AC-3: video-only variants.
        let p = presentation(&[
            (Kind::Video, "ac3.mp4", "video", 1_000_000, None),
            (Kind::Audio, "ac3.mp4", "audio", 128_000, None),
        ])
        .unwrap();
        let f4m = parse_f4m(&manifest(&p, &o).unwrap());
        assert_eq!(f4m.media.len(), 1);
        assert_eq!(f4m.media[0].0["url"], "p-video=1000000");
        let (ac3, _, _, _) = route("p-audio=128000-video=1000000", 1);
        not_listed(fragment(&p, &ac3, 1, 1, &o));
        let (video, _, _, _) = route(&f4m.media[0].0["url"], 1);
        let bytes = write(&fragment(&p, &video, 1, 1, &o).unwrap());
        assert!(parse_f4f(&bytes)
            .tags
            .iter()
            .all(|t| t.tag_type == TAG_VIDEO));
        // Nothing HDS can carry: the manifest is refused.
        let p = presentation(&[(Kind::Audio, "ac3.mp4", "audio", 128_000, None)]).unwrap();
        assert!(matches!(
            manifest(&p, &o),
            Err(PackageError::Unsupported(_))
        ));
    }

    #[test]
    fn only_listed_combinations_are_served() {
        let p = ladder();
        let o = opts();
        for bad in [
            "p-video=165000",
            "p-audio_eng=128000",
            "p-video=165000-audio_eng=128000",
            "p-audio_fra=128000-video=165000",
            "p-audio_eng=128000-video=165000-video=273000",
            "p-textstream_eng=1000",
            "p-audio_eng=128000-video=1",
        ] {
            let (variant, _, _, _) = route(bad, 1);
            not_listed(fragment(&p, &variant, 1, 1, &o));
            not_listed(bootstrap(&p, &variant, &o));
            assert_eq!(
                live_place(&live_ladder(41, false), &variant, 1, 1, &o),
                None
            );
        }
    }
}
