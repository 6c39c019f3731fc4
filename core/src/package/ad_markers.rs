//! Ad cues in manifests: a presentation's SCTE-35 events as HLS tags (`EXT-X-DATERANGE`, RFC
//! 8216 §4.4.5.1.1, and the `EXT-X-CUE-OUT` family) and DASH `EventStream`s. The cue's own
//! `splice_info_section` goes out unchanged in every form; times are the events' media times
//! (seconds, the timeline every track of the presentation shares).

use std::fmt::Write as _;

use crate::events::TimedEvent;
use crate::ism::HlsAdMarkers;
use crate::markup::iso8601_utc;
use crate::mp4::emsg::SCTE35_XML_BIN;

/// Half a millisecond: a cue at a segment's start, written in whole milliseconds, still
/// counts as at that start.
const EPSILON: f64 = 0.0005;

/// What a SCTE-35 cue does to the programme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CueRole {
    /// Leaves the network feed: a break starts (`SCTE35-OUT`).
    Out,
    /// Returns to it (`SCTE35-IN`).
    In,
    /// Anything else (`SCTE35-CMD`).
    Command,
}

/// A SCTE-35 event with what the manifests need of it.
#[derive(Debug, Clone)]
pub struct Cue<'e> {
    pub event: &'e TimedEvent,
    pub role: CueRole,
    /// Start, seconds of media time.
    pub start: f64,
    /// How long the break lasts, when the cue says.
    pub planned: Option<f64>,
}

/// The SCTE-35 cues among `events`, in time order.
pub fn cues(events: &[TimedEvent]) -> Vec<Cue<'_>> {
    events
        .iter()
        .filter_map(|e| {
            let splice = e.splice()?;
            let role = if splice.starts_break() {
                CueRole::Out
            } else if splice.ends_break() {
                CueRole::In
            } else {
                CueRole::Command
            };
            Some(Cue {
                event: e,
                role,
                start: e.start_secs(),
                planned: e.duration_secs().filter(|d| *d > 0.0),
            })
        })
        .collect()
}

/// The cues a complete presentation (VOD, an archive that ended or a clip of one) shows: those
/// that start within its media, from its first sample to the end of its last. A live window
/// keeps every cue it holds (a break that began before the window is still on).
pub fn within_media<'e>(p: &crate::presentation::Presentation, cues: Vec<Cue<'e>>) -> Vec<Cue<'e>> {
    if p.live.as_deref().is_some_and(|l| !l.ended) {
        return cues;
    }
    let (mut from, mut to) = (f64::MAX, 0.0f64);
    for t in p.tracks.iter().filter(|t| t.index().sample_count() > 0) {
        let idx = t.index();
        let ts = f64::from(idx.timescale.max(1));
        from = from.min(idx.dts(0) as f64 / ts);
        to = to.max(idx.end_time() as f64 / ts);
    }
    cues.into_iter()
        .filter(|c| c.start >= from - EPSILON && c.start < to)
        .collect()
}

/// One break: from an out cue to its return (the in cue with the same event ID, else the
/// planned end; `None`: open).
#[derive(Debug, Clone, Copy)]
struct Break {
    out: usize,
    end: Option<f64>,
    in_cue: Option<usize>,
}

fn breaks(cues: &[Cue<'_>]) -> Vec<Break> {
    let outs: Vec<usize> = (0..cues.len())
        .filter(|&k| cues[k].role == CueRole::Out)
        .collect();
    let mut paired: Vec<Option<usize>> = vec![None; outs.len()];
    let mut taken = vec![false; cues.len()];
    // A return names its break by the splice event's ID: the first later in cue with the ID,
    // before the ID leaves again.
    for (b, &k) in outs.iter().enumerate() {
        let id = cues[k].event.id;
        for i in k + 1..cues.len() {
            let c = &cues[i];
            if c.event.id != id {
                continue;
            }
            if c.role == CueRole::Out {
                break;
            }
            if c.role == CueRole::In && !taken[i] {
                paired[b] = Some(i);
                taken[i] = true;
                break;
            }
        }
    }
    // Otherwise (a return under another ID, as some encoders send), the first free in cue
    // before the next break.
    for (b, &k) in outs.iter().enumerate() {
        if paired[b].is_some() {
            continue;
        }
        let next_out = outs.get(b + 1).copied().unwrap_or(cues.len());
        if let Some(i) = (k + 1..next_out).find(|&i| cues[i].role == CueRole::In && !taken[i]) {
            paired[b] = Some(i);
            taken[i] = true;
        }
    }
    outs.iter()
        .zip(paired)
        .map(|(&k, in_cue)| Break {
            out: k,
            end: in_cue
                .map(|i| cues[i].start)
                .or(cues[k].planned.map(|d| cues[k].start + d)),
            in_cue,
        })
        .collect()
}

/// The segment a tag for a cue at `time` goes before: the last one starting at or before it
/// (the first when it is earlier than all).
fn segment_holding(starts: &[f64], time: f64) -> usize {
    starts
        .partition_point(|&s| s <= time + EPSILON)
        .saturating_sub(1)
}

/// An HLS hexadecimal-sequence (RFC 8216 §4.2: `0x` and upper-case digits).
fn hex(bytes: &[u8]) -> String {
    format!("0x{}", crate::crypto::hex(bytes).to_ascii_uppercase())
}

/// The ID of a date range: the cue's event ID and its time (an event ID comes back with
/// every break, and a date range's ID must name one range only).
fn range_id(c: &Cue<'_>) -> String {
    format!("{}-{}", c.event.id, c.event.start_ms())
}

/// The HLS ad-marker tags of a media playlist whose segments start at `starts` (seconds of
/// media time) and end at `end`, media time 0 being `anchor_ms` on the wall clock: for each
/// segment, the lines that go before it (after its `EXT-X-PROGRAM-DATE-TIME`), and last the
/// lines after the last segment (cues past the media listed so far).
pub fn hls_tags(
    cues: &[Cue<'_>],
    starts: &[f64],
    end: f64,
    anchor_ms: i64,
    markers: HlsAdMarkers,
) -> Vec<String> {
    let mut out = vec![String::new(); starts.len() + 1];
    if cues.is_empty() || starts.is_empty() {
        return out;
    }
    let at = |time: f64| {
        if time >= end - EPSILON {
            starts.len()
        } else {
            segment_holding(starts, time)
        }
    };
    let date = |c: &Cue<'_>| iso8601_utc(anchor_ms + c.event.start_ms() as i64);
    let breaks = breaks(cues);
    if markers.date_ranges() {
        for (k, c) in cues.iter().enumerate() {
            let section = hex(&c.event.message);
            let line = match c.role {
                CueRole::Out => format!(
                    "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\"{},SCTE35-OUT={section}\n",
                    range_id(c),
                    date(c),
                    c.planned
                        .map_or(String::new(), |d| format!(",PLANNED-DURATION={d:.3}"))
                ),
                CueRole::In => {
                    // The return closes the range its break opened: same ID and start, and
                    // now the break's real duration.
                    match breaks.iter().find(|b| b.in_cue == Some(k)) {
                        Some(b) => {
                            let out = &cues[b.out];
                            format!(
                                "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\",DURATION={:.3},SCTE35-IN={section}\n",
                                range_id(out),
                                date(out),
                                (c.start - out.start).max(0.0)
                            )
                        }
                        None => format!(
                            "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\",SCTE35-IN={section}\n",
                            range_id(c),
                            date(c)
                        ),
                    }
                }
                CueRole::Command => format!(
                    "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\"{},SCTE35-CMD={section}\n",
                    range_id(c),
                    date(c),
                    c.planned
                        .map_or(String::new(), |d| format!(",PLANNED-DURATION={d:.3}"))
                ),
            };
            out[at(c.start)].push_str(&line);
        }
    }
    if markers.cue_out() {
        for b in &breaks {
            let c = &cues[b.out];
            // The break takes the segments from the first one starting at its cue.
            let first = starts.partition_point(|&s| s < c.start - EPSILON);
            let last = match b.end {
                Some(end) => starts.partition_point(|&s| s < end - EPSILON),
                None => starts.len(),
            };
            let planned = c.planned.or(b.end.map(|e| e - c.start));
            if first < starts.len() {
                out[first].push_str(&match planned {
                    Some(d) => format!("#EXT-X-CUE-OUT:DURATION={d:.3}\n"),
                    None => "#EXT-X-CUE-OUT\n".to_string(),
                });
            }
            for (k, s) in starts.iter().enumerate().take(last).skip(first + 1) {
                let elapsed = s - starts[first];
                out[k].push_str(&match planned {
                    Some(d) => {
                        format!("#EXT-X-CUE-OUT-CONT:ElapsedTime={elapsed:.3},Duration={d:.3}\n")
                    }
                    None => format!("#EXT-X-CUE-OUT-CONT:ElapsedTime={elapsed:.3}\n"),
                });
            }
            if b.end.is_some() && last < starts.len() && last > first {
                out[last].push_str("#EXT-X-CUE-IN\n");
            }
        }
    }
    out
}

/// A DASH `EventStream` of a period whose media starts at `offset_secs` of media time (its
/// `presentationTimeOffset`) and covers `[from, to)`: every SCTE-35 cue in it, as SCTE 214-1
/// `xml+bin` (the section in base64 inside a `Signal`), on a 90 kHz timescale; empty when
/// the period has none.
pub fn dash_event_stream(cues: &[Cue<'_>], from: f64, to: f64, offset_secs: f64) -> String {
    const TIMESCALE: f64 = 90_000.0;
    let mut events = String::new();
    for c in cues
        .iter()
        .filter(|c| c.start >= from - EPSILON && c.start < to)
    {
        let ticks =
            (c.event.time as f64 / f64::from(c.event.timescale.max(1)) * TIMESCALE).round() as u64;
        let _ = writeln!(
            events,
            "      <Event presentationTime=\"{ticks}\"{} id=\"{}\">{}</Event>",
            c.planned.map_or(String::new(), |d| format!(
                " duration=\"{}\"",
                (d * TIMESCALE).round() as u64
            )),
            event_id(c),
            // Base64 and a namespace URL: nothing to escape.
            crate::scte35::xml_bin_of(&c.event.message)
        );
    }
    if events.is_empty() {
        return events;
    }
    let offset = (offset_secs.max(0.0) * TIMESCALE).round() as u64;
    format!(
        "    <EventStream schemeIdUri=\"{SCTE35_XML_BIN}\" timescale=\"90000\"{}>\n{events}    </EventStream>\n",
        if offset > 0 {
            format!(" presentationTimeOffset=\"{offset}\"")
        } else {
            String::new()
        }
    )
}

/// The `emsg` boxes (version 1, on the media timeline in `timescale` ticks) of the SCTE-35
/// cues that start in `[from, to)`: what a DASH media segment of that span carries in band,
/// with the same IDs as the MPD's event stream.
pub fn inband_events(events: &[TimedEvent], timescale: u32, from: u64, to: u64) -> Vec<u8> {
    use crate::mp4::emsg::{write_emsg, EventMessage, EventTime, SCTE35_BIN, UNKNOWN_DURATION};
    let ticks = |t: u64, scale: u32| {
        (u128::from(t) * u128::from(timescale) / u128::from(scale.max(1))) as u64
    };
    let mut out = Vec::new();
    for c in cues(events) {
        let at = ticks(c.event.time, c.event.timescale);
        if at < from || at >= to {
            continue;
        }
        out.extend(write_emsg(&EventMessage {
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            timescale,
            time: EventTime::Absolute(at),
            duration: c.event.duration.map_or(UNKNOWN_DURATION, |d| {
                ticks(d, c.event.timescale).min(u64::from(UNKNOWN_DURATION - 1)) as u32
            }),
            id: event_id(&c) as u32,
            message_data: c.event.message.clone(),
        }));
    }
    out
}

/// An `Event@id`: unique among the stream's events and the same on every MPD that lists the
/// event (players drop a second event with an ID they saw): the cue's time in milliseconds,
/// which tells apart the out and in cues of one splice event.
fn event_id(c: &Cue<'_>) -> u64 {
    c.event.start_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::emsg::SCTE35_BIN;

    /// `splice_insert` out of network for 30 s, event 42 (threefive-made).
    fn out_42() -> Vec<u8> {
        crate::base64::decode("/DAlAAAAAAAAAP/wFAUAAAAqf+/+AA5raP4AKTLgAAEAAAAAK75lwg==").unwrap()
    }

    /// The return of event 42: `splice_insert`, not out of network.
    fn in_42() -> Vec<u8> {
        // splice_insert, event 42, out_of_network 0, splice immediate, program splice.
        let mut s = vec![
            0xFC, 0x30, 0x00, // table id, length set below
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xF0, 0x0A, 0x05, 0x00, 0x00, 0x00,
            0x2A, 0x7F, 0x5F, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        ];
        let len = s.len() - 3 + 4;
        s[1] = 0x30 | ((len >> 8) as u8 & 0x0F);
        s[2] = len as u8;
        let crc = crate::scte35::crc32_mpeg2(&s);
        s.extend(crc.to_be_bytes());
        s
    }

    fn event(ms: u64, message: Vec<u8>) -> TimedEvent {
        crate::events::checked(TimedEvent {
            timescale: 1000,
            time: ms,
            duration: None,
            id: 0,
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            message,
        })
        .unwrap()
    }

    #[test]
    fn out_and_in_make_one_date_range_and_a_cue_out_run() {
        let events = vec![event(4000, out_42()), event(10_000, in_42())];
        let cues = cues(&events);
        assert_eq!(
            cues.iter().map(|c| c.role).collect::<Vec<_>>(),
            [CueRole::Out, CueRole::In]
        );
        let starts = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0];
        let tags = hls_tags(&cues, &starts, 14.0, 0, HlsAdMarkers::Both);
        assert_eq!(tags.len(), 8);
        assert!(
            tags[2].starts_with(
                "#EXT-X-DATERANGE:ID=\"42-4000\",START-DATE=\"1970-01-01T00:00:04.000Z\",PLANNED-DURATION=30.000,SCTE35-OUT=0xFC3025"
            ),
            "{}",
            tags[2]
        );
        assert!(
            tags[2].ends_with("#EXT-X-CUE-OUT:DURATION=30.000\n"),
            "{}",
            tags[2]
        );
        assert_eq!(
            tags[3],
            "#EXT-X-CUE-OUT-CONT:ElapsedTime=2.000,Duration=30.000\n"
        );
        assert!(tags[5].starts_with(
            "#EXT-X-DATERANGE:ID=\"42-4000\",START-DATE=\"1970-01-01T00:00:04.000Z\",DURATION=6.000,SCTE35-IN=0xFC30"
        ));
        assert!(tags[5].ends_with("#EXT-X-CUE-IN\n"), "{}", tags[5]);
        assert!(tags[0].is_empty() && tags[7].is_empty());
        // Only the date ranges, by default.
        let plain = hls_tags(&cues, &starts, 14.0, 0, HlsAdMarkers::default());
        assert!(plain.iter().all(|t| !t.contains("CUE-")));
        // A cue past the media listed goes after the last segment.
        let late = vec![event(15_000, out_42())];
        let tags = hls_tags(
            &super::cues(&late),
            &starts,
            14.0,
            0,
            HlsAdMarkers::DateRange,
        );
        assert!(tags[7].contains("SCTE35-OUT"));
    }

    #[test]
    fn event_streams_carry_the_section_at_90_khz() {
        let events = vec![event(4000, out_42()), event(10_000, in_42())];
        let cues = cues(&events);
        let x = dash_event_stream(&cues, f64::MIN, f64::MAX, 0.0);
        assert!(x.starts_with(
            "    <EventStream schemeIdUri=\"urn:scte:scte35:2014:xml+bin\" timescale=\"90000\">\n"
        ));
        assert!(x.contains("<Event presentationTime=\"360000\" duration=\"2700000\" id=\"4000\"><Signal xmlns=\"http://www.scte.org/schemas/35/2016\"><Binary>/DAlAAAAAAAAAP/wFAUAAAAqf+/+AA5raP4AKTLgAAEAAAAAK75lwg==</Binary></Signal></Event>"), "{x}");
        assert!(x.contains("presentationTime=\"900000\" id=\"10000\""));
        // A period without cues has no stream; an offset is the period's.
        assert!(dash_event_stream(&cues, 11.0, 20.0, 11.0).is_empty());
        assert!(
            dash_event_stream(&cues, 9.0, 20.0, 9.0).contains("presentationTimeOffset=\"810000\"")
        );
    }
}
