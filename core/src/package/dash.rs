//! MPEG-DASH (ISO/IEC 23009-1): a static MPD with the isoff-live profile, SegmentTemplate +
//! SegmentTimeline, and CMAF initialization and media segments.

use std::fmt::Write as _;

use super::chunks::{self, chunk_starts, longest_chunk_secs, part_ranges, track_growing};
use super::{frame_rate, iso8601_duration, segments, PackageError};
use crate::fragment::{plan_fragment, FragmentOptions, FragmentPlan};
use crate::index::TrackKind;
use crate::markup::{iso8601_utc, xml_escape};
use crate::mp4::codec::MediaInfo;
use crate::presentation::{Presentation, Track};
use crate::url::{encode_name, excerpt, MpdSegmentTemplate, SegmentIndex, TrackRef};

/// How to write the MPD and find segments.
#[derive(Debug, Clone)]
pub struct DashOptions {
    pub template: MpdSegmentTemplate,
    pub target: super::SegmentLength,
    /// Name prefix of segment URLs (`<name>-$RepresentationID$…`): the server manifest's name.
    pub name: String,
    /// The request's query (`?vbegin=…`, or empty), repeated on every segment URL: options
    /// such as subclips and the addressing scheme must reach the segment requests too.
    pub query: String,
    /// `mpd_min_buffer_time`, seconds (default 10).
    pub min_buffer_time: Option<f64>,
    /// `mpd_suggested_presentation_delay`, seconds (live; default three segments).
    pub presentation_delay: Option<f64>,
    /// Common Encryption to signal in every audio and video adaptation set.
    pub protection: Option<std::sync::Arc<crate::drm::Cenc>>,
    /// Where ad cues go (`mpd_events`).
    pub events: crate::ism::MpdEvents,
    /// A VOD MPD starts a period at each splice point (`mpd_splice_periods`).
    pub splice_periods: bool,
}

/// The composition-offset shift that applies a track's edit list inside the fragments, so that
/// its first frame is presented at its decode time (CMAF's negative composition offsets).
/// Without an edit list, a video track whose first frame has a composition offset (B-frames,
/// as Smooth encoders write) is shifted the same way, so every track starts presenting at its
/// first decode time and the tracks of a presentation line up.
pub fn composition_shift(track: &Track) -> i32 {
    let t = track.index();
    let limit = i64::from(t.timescale) * 10;
    if t.kind != TrackKind::Video {
        // Audio priming stays an edit list in the init segment (CMAF §7.5.13): a negative
        // composition offset would not make players drop the primed samples.
        return 0;
    }
    match t.edit {
        Some(e) if e.media_time > 0 && e.media_time <= limit => -(e.media_time as i32),
        Some(_) => 0,
        None if t.kind == TrackKind::Video && t.sample_count() > 0 => {
            let first = i64::from(t.cto(0));
            if first > 0 && first <= limit {
                -(first as i32)
            } else {
                0
            }
        }
        None => 0,
    }
}

/// How far (track timescale) a track's decode timeline runs ahead of its presentation: the
/// video's composition shift, or the audio's priming (its edit list). Sample time `t` is
/// presented at `t - delay`; every format presents the first frame at 0.
pub fn presentation_delay(track: &Track) -> i64 {
    let t = track.index();
    if t.kind == TrackKind::Video {
        return -i64::from(composition_shift(track));
    }
    match t.edit {
        Some(e) if e.media_time > 0 && e.media_time <= i64::from(t.timescale) * 10 => e.media_time,
        _ => 0,
    }
}

/// Codec family (adaptation sets never mix families: players cannot switch between them).
fn family(t: &Track) -> String {
    t.entry
        .codec_string()
        .split('.')
        .next()
        .unwrap_or("")
        .to_string()
}

/// Groups tracks into adaptation sets: video by codec family; audio and text by language,
/// codec family (and role, later).
fn adaptation_sets(p: &Presentation) -> Vec<Vec<&Track>> {
    let mut sets: Vec<Vec<&Track>> = Vec::new();
    for kind in super::LISTED_KINDS {
        for t in p.of_kind(kind) {
            let key = (family(t), t.language.clone());
            match sets
                .iter_mut()
                .find(|s| s[0].kind == kind && (family(s[0]), s[0].language.clone()) == key)
            {
                Some(s) => s.push(t),
                None => sets.push(vec![t]),
            }
        }
    }
    for s in &mut sets {
        s.sort_by_key(|t| t.bitrate);
    }
    sets
}

/// A `<SegmentTimeline>` entry: start, duration, repeat count.
type TimelineEntry = (u64, u64, u32);

/// Start and duration of each segment of a track.
fn segment_spans(p: &Presentation, t: &Track, target: super::SegmentLength) -> Vec<(u64, u64)> {
    let idx = t.index();
    let table = segments(p, t, target);
    let mut times = idx.time_cursor();
    let mut spans: Vec<(u64, u64)> = (0..table.len())
        .map_while(|k| table.samples(k))
        // A segment lasts as long as its samples: a gap after it (an encoder restart, lost
        // fragments) is left as a gap, the next entry says where media resumes.
        .map(|r| (times.dts(r.start), times.span(r)))
        .collect();
    // A low-latency window lists the segment being produced with the length it will most
    // likely have (the one before it's, or the target), so that players ask for it as soon
    // as its first chunk is available (`availabilityTimeOffset`) and read it as it grows.
    if let Some(live) = p.live.as_deref().filter(|l| l.low_latency) {
        if track_growing(t, live) {
            let n = spans.len();
            let expected = match n {
                0 => 0,
                1 => target.ticks(idx.timescale),
                _ => spans[n - 2].1,
            };
            if let Some(last) = spans.last_mut() {
                last.1 = last.1.max(expected);
            }
        }
    }
    spans
}

/// What a low-latency live MPD announces: how long its chunks are and the latency players
/// should keep.
#[derive(Debug, Clone, Copy)]
struct LowLatency {
    /// The longest chunk of the newest segments, seconds (at least 1 ms).
    chunk_secs: f64,

    /// `minimumUpdatePeriod`: half a chunk (at least 0.1 s). A segment appears in the MPD
    /// once its first chunk has landed, and players see it at their next reload: half a chunk
    /// later at worst.
    update_secs: f64,

    /// `Latency@target`: `mpd_suggested_presentation_delay`, else three chunks (as LL-HLS's
    /// `PART-HOLD-BACK`) and the update period a new segment can wait before players see it,
    /// at least a second.
    target_latency_secs: f64,

    /// The longest segment the MPD lists, seconds rounded up to the millisecond: its
    /// `maxSegmentDuration` and every template's `availabilityTimeOffset`.
    longest_segment_secs: f64,
}

/// A low-latency live presentation's [`LowLatency`], from its adaptation sets and the
/// segments each track lists; `None` for every other presentation.
fn low_latency_of(
    p: &Presentation,
    opts: &DashOptions,
    sets: &[Vec<&Track>],
    spans: &[Vec<Vec<(u64, u64)>>],
) -> Option<LowLatency> {
    let live = p.live.as_deref().filter(|l| l.low_latency && !l.ended)?;
    let chunk_secs = sets
        .iter()
        .flatten()
        .map(|t| longest_chunk_secs(t, &segments(p, t, opts.target), live, 4))
        .fold(0.001, f64::max);
    let chunk_secs = (chunk_secs * 1000.0).ceil() / 1000.0;
    let longest_segment_secs = sets
        .iter()
        .flatten()
        .zip(spans.iter().flatten())
        .flat_map(|(t, spans)| {
            let ts = f64::from(t.index().timescale.max(1));
            spans.iter().map(move |&(_, d)| d as f64 / ts)
        })
        .fold(0.001, f64::max);
    let update_secs = ((chunk_secs * 500.0).ceil() / 1000.0).max(0.1);
    Some(LowLatency {
        chunk_secs,
        update_secs,
        target_latency_secs: opts
            .presentation_delay
            .unwrap_or((3.0 * chunk_secs + update_secs).max(1.0)),
        longest_segment_secs: (longest_segment_secs * 1000.0).ceil() / 1000.0,
    })
}

/// `<SegmentTimeline>` entries of segments, run-length coded.
fn run_length(spans: &[(u64, u64)]) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = Vec::new();
    for &(start, d) in spans {
        match out.last_mut() {
            Some(last) if last.1 == d && last.0 + last.1 * (u64::from(last.2) + 1) == start => {
                last.2 += 1
            }
            _ => out.push((start, d, 0)),
        }
    }
    out
}

/// One `<Period>`: its ID and the media time (seconds) it covers, `from` inclusive.
struct Period {
    id: u32,
    from: f64,
    to: f64,
    /// Where a VOD period that a splice point opens starts (its first segment's start).
    start: Option<f64>,
}

/// The MPD's periods: one, unless a live window holds an encoder restart (a new timeline,
/// see `live::timeline`); then one per timeline, numbered after it so a period keeps its ID
/// while the window slides. A `$Number$` template with a nominal duration cannot say where a
/// period's media starts, so it keeps one.
fn periods(p: &Presentation, opts: &DashOptions) -> Vec<Period> {
    if let Some(periods) = splice_periods(p, opts) {
        return periods;
    }
    let Some(live) = p.live.as_deref() else {
        return vec![Period {
            id: 1,
            from: f64::MIN,
            to: f64::MAX,
            start: None,
        }];
    };
    if opts.template == MpdSegmentTemplate::Number || live.timeline_breaks.is_empty() {
        return vec![Period {
            id: live.first_timeline + 1,
            from: f64::MIN,
            to: f64::MAX,
            start: None,
        }];
    }
    let mut out = vec![Period {
        id: live.first_timeline + 1,
        from: f64::MIN,
        to: f64::MAX,
        start: None,
    }];
    for &(at, number) in &live.timeline_breaks {
        // A break a little before a segment's start (audio priming) still starts the period
        // that segment opens.
        let from = at - 0.5;
        if let Some(last) = out.last_mut() {
            last.to = from;
        }
        out.push(Period {
            id: number + 1,
            from,
            to: f64::MAX,
            start: None,
        });
    }
    out
}

/// A VOD MPD's periods with `mpd_splice_periods`: a new one at each ad cue's splice point (a
/// break's start and its return), where the reference track's first segment at or after it
/// starts (with `splice_media`, the splice point itself), so an ad can be put in as a period
/// of its own. `None` without splice points, or with a `$Number$` template of a nominal
/// duration, which cannot say where a period's media starts.
fn splice_periods(p: &Presentation, opts: &DashOptions) -> Option<Vec<Period>> {
    if p.live.is_some() || !opts.splice_periods || opts.template == MpdSegmentTemplate::Number {
        return None;
    }
    let events = p.events();
    let points: Vec<f64> = super::ad_markers::cues(&events)
        .iter()
        .filter(|c| c.role != super::ad_markers::CueRole::Command)
        .map(|c| c.start)
        .collect();
    let r = p.reference();
    let idx = r.index();
    let table = segments(p, r, opts.target);
    let ts = f64::from(idx.timescale.max(1));
    let starts: Vec<f64> = (0..table.len())
        .filter_map(|k| table.samples(k))
        .map(|s| idx.dts(s.start) as f64 / ts)
        .collect();
    let first = *starts.first()?;
    let mut bounds: Vec<f64> = points
        .iter()
        .filter_map(|&t| starts.iter().copied().find(|&s| s >= t - 0.0005))
        .filter(|&s| s > first + 0.0005)
        .collect();
    bounds.dedup();
    if bounds.is_empty() {
        return None;
    }
    // Half a millisecond early: a segment that starts at the boundary is in the new period.
    let mut out = vec![Period {
        id: 1,
        from: f64::MIN,
        to: bounds[0] - 0.0005,
        start: None,
    }];
    for (k, &b) in bounds.iter().enumerate() {
        out.push(Period {
            id: k as u32 + 2,
            from: b - 0.0005,
            to: bounds.get(k + 1).map_or(f64::MAX, |n| n - 0.0005),
            start: Some(b),
        });
    }
    Some(out)
}

/// The MPD: static for VOD and for a live channel whose stream ended, dynamic while it is live.
pub fn mpd(p: &Presentation, opts: &DashOptions) -> String {
    let mut x = String::with_capacity(4096);
    // URL text (names encoded, see `crate::url::name`), then XML-escaped for the attribute.
    let name = xml_escape(&encode_name(&opts.name));
    let sets = adaptation_sets(p);
    let spans: Vec<Vec<Vec<(u64, u64)>>> = sets
        .iter()
        .map(|set| {
            set.iter()
                .map(|t| segment_spans(p, t, opts.target))
                .collect()
        })
        .collect();
    let low_latency = low_latency_of(p, opts, &sets, &spans);
    // A low-latency MPD names the longest segment it lists: players place their live edge
    // that far before the wall clock's media time (plus the availability offset), so a
    // bound looser than the segments are would hold them back by the difference. Any other
    // MPD keeps a bound of twice the target, which segments cut at key frames stay under.
    let max_segment = match low_latency {
        Some(ll) => ll.longest_segment_secs,
        None => opts.target.as_secs_f64() * 2.0,
    };
    // An archive played after its stream ended starts at its first fragment.
    let ended = p.live.as_deref().is_some_and(|l| l.ended);
    let periods = periods(p, opts);
    // Where each period's media lies (seconds of media time: first start, last end); with
    // one period (VOD, most live windows) nothing uses it.
    let extents: Vec<(f64, f64)> = periods
        .iter()
        .filter(|_| periods.len() > 1)
        .map(|period| {
            sets.iter()
                .flatten()
                .zip(spans.iter().flatten())
                .flat_map(|(t, spans)| {
                    let ts = f64::from(t.index().timescale.max(1));
                    spans
                        .iter()
                        .map(move |&(s, d)| (s as f64 / ts, (s + d) as f64 / ts))
                })
                .filter(|&(s, _)| s >= period.from && s < period.to)
                .fold((f64::MAX, f64::MIN), |(a, b), (s, e)| (a.min(s), b.max(e)))
        })
        .collect();
    // A later period starts where its timeline does: in a live MPD at that media time (media
    // time 0 is availabilityStartTime), so the players' clocks agree with the channel's; in an
    // ended archive right after the period before it, so playback does not wait through the
    // time the encoder was away.
    let mut starts = vec![0.0f64; periods.len()];
    for k in 1..periods.len() {
        starts[k] = if let Some(start) = periods[k].start {
            start
        } else if ended {
            let (from, to) = extents[k - 1];
            starts[k - 1] + (to - from).max(0.0)
        } else {
            periods[k].from + 0.5
        };
    }
    let archive_duration = match extents.last() {
        Some(&(from, to)) if periods.len() > 1 => starts[starts.len() - 1] + (to - from).max(0.0),
        _ => p.duration_secs(),
    };
    let kind = match p.live.as_deref() {
        Some(live) if !live.ended => {
            let target = opts.target.as_secs_f64();
            let dvr = live.dvr_window_secs as f64;
            // A low-latency MPD is read again every half chunk: it lists the segment being
            // produced, and the next one only once that one started. Its latency is the service
            // description's alone: players that know one (dash.js, shaka) would add a
            // suggestedPresentationDelay to it (shaka does), the others keep their default.
            let (update, delay) = match low_latency {
                Some(ll) => (ll.update_secs, None),
                None => (
                    target,
                    Some(opts.presentation_delay.unwrap_or((3.0 * target).min(dvr))),
                ),
            };
            format!(
                "type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" \
                 minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\"{}",
                iso8601_utc(live.anchor_ms),
                iso8601_utc(live.updated_ms),
                iso8601_duration(update),
                iso8601_duration(dvr),
                delay.map_or(String::new(), |d| format!(
                    " suggestedPresentationDelay=\"{}\"",
                    iso8601_duration(d)
                ))
            )
        }
        _ => format!(
            "type=\"static\" mediaPresentationDuration=\"{}\"",
            iso8601_duration(archive_duration)
        ),
    };
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"urn:mpeg:dash:schema:mpd:2011 DASH-MPD.xsd\"{} \
         {kind} maxSegmentDuration=\"PT{max_segment}S\" \
         minBufferTime=\"PT{}S\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\">\n",
        if opts.protection.is_some() {
            crate::drm::Cenc::DASH_NAMESPACES
        } else {
            ""
        },
        opts.min_buffer_time.unwrap_or(10.0)
    );
    if let Some(ll) = low_latency {
        // DASH-IF low-latency service description: the latency to keep (from the producer
        // reference time every adaptation set carries) and how much playback may speed up or
        // slow down to keep it.
        let ms = |secs: f64| (secs * 1000.0).round() as u64;
        let _ = write!(
            x,
            "  <ServiceDescription id=\"0\">\n    <Latency referenceId=\"0\" target=\"{}\" min=\"{}\" max=\"{}\"/>\n    <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  </ServiceDescription>\n",
            ms(ll.target_latency_secs),
            ms(ll.chunk_secs.min(ll.target_latency_secs)),
            ms(2.0 * ll.target_latency_secs + opts.target.as_secs_f64()),
        );
    }
    // Ad cues, in each period they fall in (SCTE 214-1 xml+bin event streams).
    let events = p.events();
    // A static MPD shows the cues within its media.
    let cues = super::ad_markers::within_media(p, super::ad_markers::cues(&events));
    // Where an ended archive's media starts (its period's offset).
    let first_media_secs = sets
        .iter()
        .flatten()
        .zip(spans.iter().flatten())
        .filter_map(|(t, spans)| {
            let &(s, _) = spans.first()?;
            Some(s as f64 / f64::from(t.index().timescale.max(1)))
        })
        .fold(f64::MAX, f64::min);
    for (k, period) in periods.iter().enumerate() {
        let _ = write!(
            x,
            "  <Period id=\"{}\" start=\"{}\">\n    <BaseURL>dash/</BaseURL>\n",
            period.id,
            if k == 0 {
                "PT0S".to_string()
            } else {
                iso8601_duration(starts[k])
            }
        );
        // Media time at the period's start: its timeline's start in a live MPD (so media time
        // stays the time since availabilityStartTime), its first media in an archive.
        let offset = if k > 0 && ended {
            TimeOffset::At(extents[k].0)
        } else if k > 0 {
            TimeOffset::At(starts[k])
        } else if ended {
            TimeOffset::FirstSegment
        } else {
            TimeOffset::None
        };
        let offset_secs = match offset {
            TimeOffset::None => 0.0,
            TimeOffset::At(secs) => secs,
            TimeOffset::FirstSegment => first_media_secs,
        };
        if opts.events.inline() {
            x.push_str(&super::ad_markers::dash_event_stream(
                &cues,
                period.from,
                period.to,
                offset_secs,
            ));
        }
        write_period(
            &mut x,
            p,
            opts,
            &name,
            &sets,
            &spans,
            period,
            offset,
            low_latency,
        );
        x.push_str("  </Period>\n");
    }
    if let Some(live) = p.live.as_deref().filter(|l| !l.ended) {
        // A low-latency channel's players set their clocks by the origin's (`<ch>.isml/time`,
        // beside the MPD), timing the request: the MPD's own time below is as old as the MPD
        // when they read it, and a player that re-syncs with it (dash.js every 30 s) moves
        // its latency by up to an update period.
        if low_latency.is_some() {
            x.push_str(
                "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"time\"/>\n",
            );
        }
        // The time the manifest was made, for players to set their clocks by.
        let _ = writeln!(
            x,
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>",
            iso8601_utc(live.now_ms)
        );
    }
    x.push_str("</MPD>\n");
    x
}

/// The adaptation sets of one period: each track's segments that start in it.
#[allow(clippy::too_many_arguments)]
fn write_period(
    x: &mut String,
    p: &Presentation,
    opts: &DashOptions,
    name: &str,
    sets: &[Vec<&Track>],
    spans: &[Vec<Vec<(u64, u64)>>],
    period: &Period,
    offset: TimeOffset,
    low_latency: Option<LowLatency>,
) {
    for (set_id, set) in sets.iter().enumerate() {
        let first = set[0];
        // A set with no segment starting in this period (a sparse text track, a track that
        // ended) is left out of it: an empty SegmentTimeline breaks players.
        let in_period = |t: &Track, spans: &Vec<(u64, u64)>| {
            let ts = f64::from(t.index().timescale.max(1));
            spans.iter().any(|&(s, _)| {
                let at = s as f64 / ts;
                at >= period.from && at < period.to
            })
        };
        if !in_period(first, &spans[set_id][0]) {
            continue;
        }
        let kind = first.kind;
        let content = match kind {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
            _ => "text",
        };
        let _ = write!(
            x,
            "    <AdaptationSet id=\"{}\" group=\"{}\" contentType=\"{content}\" mimeType=\"{}\" segmentAlignment=\"true\" startWithSAP=\"1\"",
            set_id + 1,
            match kind {
                TrackKind::Video => 2,
                TrackKind::Audio => 1,
                _ => 3,
            },
            crate::mime::of_track(kind)
        );
        if let Some(lang) = &first.language {
            let _ = write!(x, " lang=\"{}\"", xml_escape(lang));
        }
        if kind == TrackKind::Video {
            let (w, h) = set
                .iter()
                .filter_map(|t| match t.entry.media {
                    MediaInfo::Video { width, height, .. } => Some((width, height)),
                    _ => None,
                })
                .max()
                .unwrap_or((0, 0));
            let _ = write!(x, " maxWidth=\"{w}\" maxHeight=\"{h}\"");
            if let Some((n, d)) = frame_rate(first) {
                if d == 1 {
                    let _ = write!(x, " frameRate=\"{n}\"");
                } else {
                    let _ = write!(x, " frameRate=\"{n}/{d}\"");
                }
            }
        }
        if let MediaInfo::Audio { sample_rate, .. } = first.entry.media {
            let _ = write!(x, " audioSamplingRate=\"{sample_rate}\"");
        }
        x.push_str(">\n");
        if let MediaInfo::Audio { channels, .. } = first.entry.media {
            let _ = writeln!(
                x,
                "      <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
            );
        }
        if let (Some(c), TrackKind::Video | TrackKind::Audio) = (&opts.protection, kind) {
            c.dash_content_protection(x, kind, "      ");
        }
        if opts.events.inband() && matches!(kind, TrackKind::Video | TrackKind::Audio) {
            // Its segments carry the cues that start in them as `emsg` boxes.
            let _ = writeln!(
                x,
                "      <InbandEventStream schemeIdUri=\"{}\" value=\"\"/>",
                crate::mp4::emsg::SCTE35_BIN
            );
        }
        if let (Some(live), Some(_)) = (p.live.as_deref(), low_latency) {
            // The wall-clock time of the set's first segment, as the anchor maps media time (and
            // as the `prft` box of every chunk says in band).
            if let Some(&(t, _)) = spans[set_id].first().and_then(|s| s.first()) {
                let ts = first.index().timescale.max(1);
                let wall_ms = live.anchor_ms + (u128::from(t) * 1000 / u128::from(ts)) as i64;
                // The UTCTiming inside says how `wallClockTime` is written (an xs:dateTime;
                // without one, players read it as an NTP timestamp).
                let wall = iso8601_utc(wall_ms);
                let _ = writeln!(
                    x,
                    "      <ProducerReferenceTime id=\"0\" type=\"encoder\" inband=\"true\" wallClockTime=\"{wall}\" presentationTime=\"{t}\">\n        <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{wall}\"/>\n      </ProducerReferenceTime>"
                );
            }
        }
        let role = if kind == TrackKind::Text {
            "subtitle"
        } else {
            "main"
        };
        let _ = writeln!(
            x,
            "      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"{role}\"/>"
        );

        // One SegmentTemplate for the set when every representation shares timescale and
        // timeline (the usual, aligned ladder); else one per representation.
        let mut numbers = segments(p, first, opts.target).first_number();
        let timelines: Vec<(u32, Vec<TimelineEntry>)> = set
            .iter()
            .zip(&spans[set_id])
            .enumerate()
            .map(|(i, (t, spans))| {
                let ts = t.index().timescale;
                let secs = |ticks: u64| ticks as f64 / f64::from(ts.max(1));
                let inside = |s: &&(u64, u64)| secs(s.0) >= period.from && secs(s.0) < period.to;
                if i == 0 {
                    numbers += spans.iter().take_while(|s| secs(s.0) < period.from).count() as u64;
                }
                let kept: Vec<(u64, u64)> = spans.iter().filter(inside).copied().collect();
                (ts, run_length(&kept))
            })
            .collect();
        let shared = timelines.windows(2).all(|w| w[0] == w[1]);
        // The segment being produced can be asked for from its start: the answer streams
        // each chunk as it lands. So every segment is available a whole segment length
        // (the longest listed, the same for every track) before its end, and a player's live
        // edge (the wall clock's media time less `maxSegmentDuration`, plus this offset) is
        // the wall clock's media time, where the MPD's latency target counts from. One value
        // for the channel keeps that edge still: shaka keeps the smallest it ever read.
        let availability = low_latency.map(|ll| ll.longest_segment_secs);
        if shared {
            write_template(
                x,
                "      ",
                name,
                &timelines[0],
                opts,
                numbers,
                offset,
                availability,
            );
        }
        for (i, t) in set.iter().enumerate() {
            let _ = write!(
                x,
                "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\"",
                xml_escape(&t.url_id()),
                t.bitrate,
                xml_escape(&t.entry.codec_string())
            );
            if let MediaInfo::Video { width, height, par } = t.entry.media {
                let (sw, sh) = par.unwrap_or((1, 1));
                let _ = write!(
                    x,
                    " width=\"{width}\" height=\"{height}\" sar=\"{sw}:{sh}\" scanType=\"progressive\""
                );
            }
            if shared {
                x.push_str("/>\n");
            } else {
                x.push_str(">\n");
                write_template(
                    x,
                    "        ",
                    name,
                    &timelines[i],
                    opts,
                    numbers,
                    offset,
                    availability,
                );
                x.push_str("      </Representation>\n");
            }
        }
        x.push_str("    </AdaptationSet>\n");
    }
}

/// A period's `presentationTimeOffset`: none (media time is presentation time), the first
/// segment's start (an ended archive plays from its first fragment), or a media time in
/// seconds (a later period starts there).
#[derive(Debug, Clone, Copy)]
enum TimeOffset {
    None,
    FirstSegment,
    At(f64),
}

/// A `SegmentTemplate`; `availability_offset` (seconds) for a low-latency one, whose segment
/// being produced is sent chunk by chunk (`availabilityTimeComplete="false"`).
#[allow(clippy::too_many_arguments)]
fn write_template(
    x: &mut String,
    indent: &str,
    name: &str,
    (timescale, timeline): &(u32, Vec<TimelineEntry>),
    opts: &DashOptions,
    first_number: u64,
    offset: TimeOffset,
    availability_offset: Option<f64>,
) {
    let query = xml_escape(&opts.query);
    let media = match opts.template {
        MpdSegmentTemplate::Time => format!("{name}-$RepresentationID$-$Time$.dash{query}"),
        _ => format!("{name}-$RepresentationID$-$Number$.dash{query}"),
    };
    let _ = write!(
        x,
        "{indent}<SegmentTemplate timescale=\"{timescale}\" initialization=\"{name}-$RepresentationID$.dash{query}\" media=\"{media}\""
    );
    let pto = match offset {
        TimeOffset::None => None,
        TimeOffset::FirstSegment => timeline.first().map(|&(t, _, _)| t),
        TimeOffset::At(secs) => Some((secs.max(0.0) * f64::from(*timescale)).round() as u64),
    };
    if let Some(t) = pto {
        let _ = write!(x, " presentationTimeOffset=\"{t}\"");
    }
    if let Some(ato) = availability_offset {
        let _ = write!(
            x,
            " availabilityTimeOffset=\"{ato}\" availabilityTimeComplete=\"false\""
        );
    }
    if opts.template == MpdSegmentTemplate::Number {
        // Nominal duration: the target, the same for every track so segment N means the same
        // instant everywhere; segments follow the GOPs, so real ones differ by a frame or so.
        let d = opts.target.ticks(*timescale);
        let _ = writeln!(x, " startNumber=\"{first_number}\" duration=\"{d}\"/>");
        return;
    }
    if opts.template == MpdSegmentTemplate::NumberTimeline {
        let _ = write!(x, " startNumber=\"{first_number}\"");
    }
    let _ = writeln!(x, ">\n{indent}  <SegmentTimeline>");
    for (i, &(t, d, r)) in timeline.iter().enumerate() {
        let _ = write!(x, "{indent}    <S");
        if i == 0 || opts.template == MpdSegmentTemplate::Time {
            let _ = write!(x, " t=\"{t}\"");
        }
        let _ = write!(x, " d=\"{d}\"");
        if r > 0 {
            let _ = write!(x, " r=\"{r}\"");
        }
        x.push_str("/>\n");
    }
    let _ = writeln!(
        x,
        "{indent}  </SegmentTimeline>\n{indent}</SegmentTemplate>"
    );
}

/// The track a representation ID names, when the MPD lists it (its audio, video and text
/// tracks).
pub fn find_track<'p>(p: &'p Presentation, r: &TrackRef) -> Result<&'p Track, PackageError> {
    p.find(r)
        .filter(|t| super::LISTED_KINDS.contains(&t.kind))
        .ok_or_else(|| PackageError::NoSuchTrack(excerpt(&format!("{}={}", r.name, r.bitrate))))
}

/// The initialization segment of a representation.
pub fn init_segment(p: &Presentation, r: &TrackRef) -> Result<Vec<u8>, PackageError> {
    Ok(init_for(find_track(p, r)?))
}

/// A track's CMAF initialization segment, with the audio priming edit when there is one.
pub fn init_for(t: &Track) -> Vec<u8> {
    let idx = t.index();
    let priming = match idx.edit {
        Some(e) if t.kind != TrackKind::Video && e.media_time > 0 => Some(e.media_time),
        _ => None,
    };
    idx.init_segment(1, priming)
}

/// The media segment a URL names (by `$Time$` or `$Number$`, per the template in use).
pub fn media_segment<'p>(
    p: &'p Presentation,
    r: &TrackRef,
    index: SegmentIndex,
    opts: &DashOptions,
) -> Result<(&'p Track, FragmentPlan), PackageError> {
    let t = find_track(p, r)?;
    let table = segments(p, t, opts.target);
    let idx = t.index();
    let k = match (index, opts.template) {
        (SegmentIndex::Time(time), _)
        | (SegmentIndex::Templated(time), MpdSegmentTemplate::Time) => {
            table.by_start_time(idx, time)
        }
        (SegmentIndex::Number(n), _) | (SegmentIndex::Templated(n), _) => table.by_number(n),
    }
    .ok_or_else(|| PackageError::NoSuchSegment(format!("{index:?} of {}", t.id())))?;
    let mut plan = cmaf_fragment(t, &table, k)?;
    if opts.events.inband() && matches!(t.kind, TrackKind::Video | TrackKind::Audio) {
        let end = table.samples(k + 1).map_or(u64::MAX, |r| idx.dts(r.start));
        // Only the cues of this segment's span are looked at (a long title has many).
        let ts = f64::from(idx.timescale.max(1));
        let events = p.events_between(plan.start_time as f64 / ts - 0.001, end as f64 / ts);
        let boxes = super::ad_markers::inband_events(&events, idx.timescale, plan.start_time, end);
        insert_after_styp(&mut plan.header, &boxes);
    }
    Ok((t, plan))
}

/// Puts `boxes` into a fragment header after its `styp` (or first, without one): `emsg`
/// boxes go before the `moof`, whose data offsets count from itself.
fn insert_after_styp(header: &mut Vec<u8>, boxes: &[u8]) {
    if boxes.is_empty() {
        return;
    }
    let at = match header.get(4..8) {
        Some(b"styp") => u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize,
        _ => 0,
    };
    header.splice(at..at, boxes.iter().copied());
}

/// A DASH media segment of a low-latency live window.
pub enum ChunkedSegment<'p> {
    /// The segment's chunks so far, as fragments to send one after the other (the `styp`
    /// once, a `prft` before each `moof`): the segment streamed while it grows and the
    /// segment asked for whole afterwards are the same bytes. `growing`: more chunks will
    /// come, each well within `limit_ms`.
    Chunks {
        track: &'p Track,
        chunks: Vec<FragmentPlan>,
        growing: bool,
        limit_ms: u64,
    },
    /// The segment after the newest (a `$Number$` template's): not started yet, due within
    /// `limit_ms`.
    Next { limit_ms: u64 },
}

/// The segment a URL names in a low-latency live window, by its chunks; `None` when the
/// presentation is not one (its segments are single fragments, see [`media_segment`]).
pub fn low_latency_segment<'p>(
    p: &'p Presentation,
    r: &TrackRef,
    index: SegmentIndex,
    opts: &DashOptions,
) -> Result<Option<ChunkedSegment<'p>>, PackageError> {
    let Some(live) = p.live.as_deref().filter(|l| l.low_latency) else {
        return Ok(None);
    };
    let t = find_track(p, r)?;
    let table = segments(p, t, opts.target);
    let idx = t.index();
    let missing = || PackageError::NoSuchSegment(format!("{index:?} of {}", t.id()));
    // What is not there yet is waited for up to three segment lengths (as LL-HLS's blocking
    // requests): an encoder that stopped mid-segment ends the answer then.
    let longest = (0..table.len())
        .filter_map(|k| table.samples(k))
        .map(|r| chunks::range_secs(idx, &r))
        .fold(opts.target.as_secs_f64(), f64::max);
    let limit_ms = (3000.0 * longest).ceil() as u64;
    let growing = track_growing(t, live);
    let last = table.first_number() + table.len() as u64;
    let k = match (index, opts.template) {
        (SegmentIndex::Time(time), _)
        | (SegmentIndex::Templated(time), MpdSegmentTemplate::Time) => {
            let newest_end = table
                .len()
                .checked_sub(1)
                .and_then(|k| table.samples(k))
                .map(|r| idx.sample_end(r.end.saturating_sub(1)));
            match table.by_start_time(idx, time) {
                Some(k) => k,
                None if !live.ended && !growing && newest_end == Some(time) => {
                    return Ok(Some(ChunkedSegment::Next { limit_ms }))
                }
                None => return Err(missing()),
            }
        }
        (SegmentIndex::Number(n), _) | (SegmentIndex::Templated(n), _) => {
            match table.by_number(n) {
                Some(k) => k,
                None if !live.ended && n == last => {
                    return Ok(Some(ChunkedSegment::Next { limit_ms }))
                }
                None => return Err(missing()),
            }
        }
    };
    let range = table.samples(k).ok_or_else(missing)?;
    let anchor_ntp = crate::fragment::ntp_timestamp(live.anchor_ms);
    let timescale = u128::from(idx.timescale.max(1));
    let chunks = part_ranges(t, range, chunk_starts(live, t))
        .into_iter()
        .enumerate()
        .map(|(i, samples)| {
            let start = u128::from(idx.dts(samples.start));
            Ok(plan_fragment(
                idx,
                samples,
                &FragmentOptions {
                    sequence_number: table.number(k) as u32,
                    track_id: 1,
                    styp: i == 0,
                    tfdt: true,
                    composition_shift: composition_shift(t),
                    producer_ntp_time: Some(
                        anchor_ntp.wrapping_add(((start << 32) / timescale) as u64),
                    ),
                    ..FragmentOptions::default()
                },
            )?)
        })
        .collect::<Result<Vec<_>, PackageError>>()?;
    Ok(Some(ChunkedSegment::Chunks {
        track: t,
        chunks,
        growing: growing && k + 1 == table.len(),
        limit_ms,
    }))
}

/// CMAF media segment `k` (0-based) of a track: what DASH and fMP4 HLS both send.
pub fn cmaf_fragment(
    t: &Track,
    table: &crate::segment::SegmentTable,
    k: usize,
) -> Result<FragmentPlan, PackageError> {
    let range = table
        .samples(k)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{k}")))?;
    // The segment's number (from 1 in VOD; a live window's are the channel's), so a segment
    // carries the same bytes whichever window it is asked through.
    cmaf_fragment_of(t, range, table.number(k))
}

/// A CMAF fragment of the samples `range` of `t`, numbered `sequence_number` (`mfhd`).
pub fn cmaf_fragment_of(
    t: &Track,
    range: std::ops::Range<u32>,
    sequence_number: u64,
) -> Result<FragmentPlan, PackageError> {
    Ok(plan_fragment(
        t.index(),
        range,
        &FragmentOptions {
            sequence_number: sequence_number as u32,
            track_id: 1,
            styp: true,
            tfdt: true,
            composition_shift: composition_shift(t),
            ..FragmentOptions::default()
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::fixtures::ladder;

    fn video() -> TrackRef {
        TrackRef {
            name: "p-video".into(),
            bitrate: 165_000,
        }
    }

    #[test]
    fn only_tracks_the_mpd_lists_are_served() {
        let mut p = ladder();
        assert!(find_track(&p, &video()).is_ok());
        // A data track has no adaptation set: no URL of the MPD names it.
        p.tracks[0].kind = TrackKind::Other;
        assert!(!mpd(
            &p,
            &DashOptions {
                template: MpdSegmentTemplate::Time,
                target: crate::package::DEFAULT_SEGMENT_LENGTH,
                name: "p".into(),
                query: String::new(),
                min_buffer_time: None,
                presentation_delay: None,
                protection: None,
                events: Default::default(),
                splice_periods: false,
            }
        )
        .contains("id=\"video=165000\""));
        assert!(matches!(
            find_track(&p, &video()),
            Err(PackageError::NoSuchTrack(_))
        ));
        assert!(matches!(
            init_segment(&p, &video()),
            Err(PackageError::NoSuchTrack(_))
        ));
    }
}
