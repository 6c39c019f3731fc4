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
        assert!(read_event_sample(&empty).unwrap().is_empty());
        // Another box in a sample: refused.
        let mut wrong = write_event_sample(&events);
        wrong[4..8].copy_from_slice(b"free");
        assert!(read_event_sample(&wrong).is_err());
    }
}
