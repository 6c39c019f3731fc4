//! Event messages: the `emsg` box of ISO/IEC 23009-1 §5.10.3.3 (carried in media segments,
//! before their `moof`) and the samples of an event message track (ISO/IEC 23001-18: each
//! sample is a run of `emib` instance boxes, or one `emeb` box when no event is active). The
//! DASH-IF live media ingest specification sends SCTE-35 cues either way.

use super::reader::{FourCC, Reader};
use super::writer::BoxWriter;
use super::Mp4Error;

/// The scheme of SCTE-35 cues carried as binary `splice_info_section`s.
pub const SCTE35_BIN: &str = "urn:scte:scte35:2013:bin";
/// The scheme of SCTE-35 cues carried as XML with the binary section inside (SCTE 214-1).
pub const SCTE35_XML_BIN: &str = "urn:scte:scte35:2014:xml+bin";

/// The longest event duration, and "unknown" (`0xFFFFFFFF`).
pub const UNKNOWN_DURATION: u32 = u32::MAX;

/// One `emsg` box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    pub scheme_id_uri: String,
    pub value: String,
    pub timescale: u32,
    pub time: EventTime,
    /// In `timescale` ticks; [`UNKNOWN_DURATION`] when not known.
    pub duration: u32,
    pub id: u32,
    pub message_data: Vec<u8>,
}

/// When an `emsg` event starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// Version 1: on the media timeline, in `timescale` ticks.
    Absolute(u64),
    /// Version 0: after the earliest presentation time of the segment that carries it.
    Delta(u32),
}

/// Reads the body of an `emsg` box (after its 8-byte header).
pub fn read_emsg(mut r: Reader<'_>) -> Result<EventMessage, Mp4Error> {
    let (version, _) = r.full_box()?;
    match version {
        0 => {
            let scheme_id_uri = r.c_string()?;
            let value = r.c_string()?;
            let timescale = r.u32()?;
            let delta = r.u32()?;
            let duration = r.u32()?;
            let id = r.u32()?;
            Ok(EventMessage {
                scheme_id_uri,
                value,
                timescale,
                time: EventTime::Delta(delta),
                duration,
                id,
                message_data: r.rest().to_vec(),
            })
        }
        1 => {
            let timescale = r.u32()?;
            let time = r.u64()?;
            let duration = r.u32()?;
            let id = r.u32()?;
            let scheme_id_uri = r.c_string()?;
            let value = r.c_string()?;
            Ok(EventMessage {
                scheme_id_uri,
                value,
                timescale,
                time: EventTime::Absolute(time),
                duration,
                id,
                message_data: r.rest().to_vec(),
            })
        }
        _ => Err(r.error("an emsg of an unknown version")),
    }
}

/// The whole `emsg` box of `e`: version 1 for an absolute time, 0 for a delta.
pub fn write_emsg(e: &EventMessage) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(64 + e.message_data.len());
    match e.time {
        EventTime::Absolute(time) => {
            w.begin_full(b"emsg", 1, 0);
            w.u32(e.timescale);
            w.u64(time);
            w.u32(e.duration);
            w.u32(e.id);
            string(&mut w, &e.scheme_id_uri);
            string(&mut w, &e.value);
        }
        EventTime::Delta(delta) => {
            w.begin_full(b"emsg", 0, 0);
            string(&mut w, &e.scheme_id_uri);
            string(&mut w, &e.value);
            w.u32(e.timescale);
            w.u32(delta);
            w.u32(e.duration);
            w.u32(e.id);
        }
    }
    w.bytes(&e.message_data);
    w.end();
    w.finish()
}

/// A NUL-terminated string (a NUL inside is cut there: the box could not say otherwise).
fn string(w: &mut BoxWriter, s: &str) {
    let s = s.split('\0').next().unwrap_or("");
    w.bytes(s.as_bytes());
    w.u8(0);
}

/// One event of an event message track's sample (`emib`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInstance {
    /// From the sample's presentation time to the event's start, in the track's timescale
    /// (negative: the event began before the sample).
    pub presentation_time_delta: i64,
    /// In the track's timescale; [`UNKNOWN_DURATION`] when not known.
    pub duration: u32,
    pub id: u32,
    pub scheme_id_uri: String,
    pub value: String,
    pub message_data: Vec<u8>,
}

/// The events of one sample of an event message track: its `emib` boxes (an `emeb` sample, no
/// event active, has none). Any other box is an error: the track is not what it says.
pub fn read_event_sample(sample: &[u8]) -> Result<Vec<EventInstance>, Mp4Error> {
    let mut r = Reader::new(sample, 0);
    let mut out = Vec::new();
    while let Some((header, mut body)) = r.next_box_body()? {
        if header.fourcc == FourCC::new(b"emeb") {
            continue;
        }
        if header.fourcc != FourCC::new(b"emib") {
            return Err(body.error("a box other than emib or emeb in an event message sample"));
        }
        let (version, _) = body.full_box()?;
        if version != 0 {
            return Err(body.error("an emib of an unknown version"));
        }
        body.u32()?; // reserved
        let presentation_time_delta = body.i64()?;
        let duration = body.u32()?;
        let id = body.u32()?;
        let scheme_id_uri = body.c_string()?;
        let value = body.c_string()?;
        out.push(EventInstance {
            presentation_time_delta,
            duration,
            id,
            scheme_id_uri,
            value,
            message_data: body.rest().to_vec(),
        });
    }
    Ok(out)
}

/// One sample of an event message track holding `events` (an `emeb` when there are none).
pub fn write_event_sample(events: &[EventInstance]) -> Vec<u8> {
    let mut w = BoxWriter::new();
    if events.is_empty() {
        w.begin(b"emeb");
        w.end();
    }
    for e in events {
        w.begin_full(b"emib", 0, 0);
        w.u32(0);
        w.u64(e.presentation_time_delta as u64);
        w.u32(e.duration);
        w.u32(e.id);
        string(&mut w, &e.scheme_id_uri);
        string(&mut w, &e.value);
        w.bytes(&e.message_data);
        w.end();
    }
    w.finish()
}

/// One event to carry in an event message track, in the track's timescale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEvent {
    pub start: u64,
    /// `None`: not known (the event is carried in the sample it starts in only).
    pub duration: Option<u64>,
    pub id: u32,
    pub scheme_id_uri: String,
    pub value: String,
    pub message_data: Vec<u8>,
}

/// An `evte` sample entry (ISO/IEC 23001-18 §7.2) announcing `schemes` in its `silb` box.
pub fn event_sample_entry(schemes: &[(&str, &str)]) -> Vec<u8> {
    let mut w = BoxWriter::new();
    w.begin(b"evte");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.begin_full(b"silb", 0, 0);
    w.u32(schemes.len() as u32);
    for (scheme, value) in schemes {
        string(&mut w, scheme);
        string(&mut w, value);
        w.u8(1); // atleast_one_flag: every scheme listed has events
    }
    w.u8(0); // other_schemes_flag
    w.end();
    w.end();
    w.finish()
}

/// The samples of an event message track from 0 to `end` (ticks): contiguous, cut at every
/// multiple of `fragment` and at each event's start (so an event starts at a sample's start),
/// each holding the events active in it (an event of known duration is repeated in every
/// sample it overlaps, with a negative delta, as ISO/IEC 23001-18 asks; one of unknown
/// duration is in its first sample only). Returned as (start, end, bytes), grouped by
/// fragment.
pub fn event_track_samples(
    events: &[TrackEvent],
    fragment: u64,
    end: u64,
) -> Vec<Vec<(u64, u64, Vec<u8>)>> {
    let fragment = fragment.max(1);
    let end = events
        .iter()
        .map(|e| e.start + 1)
        .max()
        .unwrap_or(0)
        .max(end)
        .max(1);
    let mut bounds: Vec<u64> = (0..end / fragment + 1)
        .map(|k| k * fragment)
        .filter(|&b| b < end)
        .chain(events.iter().map(|e| e.start))
        .chain([end])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut fragments = Vec::new();
    let mut samples = Vec::new();
    for w in bounds.windows(2) {
        let (start, stop) = (w[0], w[1]);
        let active: Vec<EventInstance> = events
            .iter()
            .filter(|e| match e.duration {
                Some(d) => e.start < stop && e.start.saturating_add(d.max(1)) > start,
                None => e.start >= start && e.start < stop,
            })
            .map(|e| EventInstance {
                presentation_time_delta: e.start as i64 - start as i64,
                duration: e.duration.map_or(UNKNOWN_DURATION, |d| {
                    d.min(u64::from(UNKNOWN_DURATION - 1)) as u32
                }),
                id: e.id,
                scheme_id_uri: e.scheme_id_uri.clone(),
                value: e.value.clone(),
                message_data: e.message_data.clone(),
            })
            .collect();
        samples.push((start, stop, write_event_sample(&active)));
        if stop % fragment == 0 || stop == end {
            fragments.push(std::mem::take(&mut samples));
        }
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(boxed: &[u8]) -> Reader<'_> {
        let mut r = Reader::new(boxed, 0);
        let (header, body) = r.next_box_body().unwrap().unwrap();
        assert_eq!(header.fourcc, FourCC::new(b"emsg"));
        body
    }

    #[test]
    fn an_emsg_round_trips_in_both_versions() {
        for time in [
            EventTime::Absolute(90_000 * 3600 * 24 * 400),
            EventTime::Delta(1234),
        ] {
            let e = EventMessage {
                scheme_id_uri: SCTE35_BIN.into(),
                value: "1".into(),
                timescale: 90_000,
                time,
                duration: 2_700_000,
                id: 7,
                message_data: vec![0xFC, 0x30, 0x11],
            };
            let boxed = write_emsg(&e);
            assert_eq!(
                u32::from_be_bytes(boxed[..4].try_into().unwrap()) as usize,
                boxed.len()
            );
            assert_eq!(read_emsg(body_of(&boxed)).unwrap(), e);
        }
    }

    #[test]
    fn an_event_track_cuts_samples_at_event_starts_and_repeats_running_events() {
        let e = |start, duration, id| TrackEvent {
            start,
            duration,
            id,
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            message_data: vec![id as u8],
        };
        let fragments =
            event_track_samples(&[e(2500, Some(3000), 1), e(7000, None, 2)], 2000, 8000);
        let samples: Vec<_> = fragments.iter().flatten().collect();
        let bounds: Vec<(u64, u64)> = samples.iter().map(|(a, b, _)| (*a, *b)).collect();
        assert_eq!(
            bounds,
            [
                (0, 2000),
                (2000, 2500),
                (2500, 4000),
                (4000, 6000),
                (6000, 7000),
                (7000, 8000)
            ]
        );
        assert_eq!(fragments.len(), 4);
        let ids = |k: usize| -> Vec<(u32, i64)> {
            read_event_sample(&samples[k].2)
                .unwrap()
                .iter()
                .map(|i| (i.id, i.presentation_time_delta))
                .collect()
        };
        assert_eq!(ids(0), []);
        assert_eq!(ids(2), [(1, 0)]);
        assert_eq!(ids(3), [(1, -1500)]);
        assert_eq!(ids(4), []);
        assert_eq!(ids(5), [(2, 0)]);
        let entry = event_sample_entry(&[(SCTE35_BIN, "")]);
        assert_eq!(&entry[4..8], b"evte");
        assert_eq!(&entry[20..24], b"silb");
    }

    #[test]
    fn a_truncated_emsg_is_an_error_not_a_guess() {
        let e = EventMessage {
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            timescale: 1000,
            time: EventTime::Absolute(5),
            duration: UNKNOWN_DURATION,
            id: 1,
            message_data: Vec::new(),
        };
        let boxed = write_emsg(&e);
        // The body cut inside its fixed fields.
        let body = &boxed[8..8 + 10];
        assert!(read_emsg(Reader::new(body, 8)).is_err());
        // A version this reader does not know.
        let mut v2 = boxed.clone();
        v2[8] = 2;
        assert!(read_emsg(body_of(&v2)).is_err());
    }

    #[test]
    fn event_samples_round_trip_and_an_empty_one_has_no_event() {
        let events = vec![
            EventInstance {
                presentation_time_delta: -900,
                duration: 90_000,
                id: 3,
                scheme_id_uri: SCTE35_BIN.into(),
                value: String::new(),
                message_data: vec![1, 2, 3],
            },
            EventInstance {
                presentation_time_delta: 0,
                duration: UNKNOWN_DURATION,
                id: 4,
                scheme_id_uri: "urn:example".into(),
                value: "v".into(),
                message_data: Vec::new(),
            },
        ];
        assert_eq!(
            read_event_sample(&write_event_sample(&events)).unwrap(),
            events
        );
        let empty = write_event_sample(&[]);
        assert_eq!(&empty[4..8], b"emeb");
        assert_eq!(empty.len(), 8);
        assert!(read_event_sample(&empty).unwrap().is_empty());
        // Another box in a sample: refused.
        let mut wrong = write_event_sample(&events);
        wrong[4..8].copy_from_slice(b"free");
        assert!(read_event_sample(&wrong).is_err());
    }
}
