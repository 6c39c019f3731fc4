//! Timed events (ad cues and other timed metadata) as the index reads them from a file: the
//! samples of a metadata track (an ISO/IEC 23001-18 event message track, `evte`, or a URI
//! meta track, `urim`, whose samples are `emsg` boxes or bare SCTE-35 sections) and the
//! `emsg` boxes carried before the fragments of audio and video tracks.
//!
//! Every event is on the media timeline of the track that carries it, in its own timescale,
//! so the index can cut and rebase it with the track (a subclip, a live window). SCTE-35
//! events are checked whole (`scte35::parse`) and kept in one form: the binary scheme with the
//! encoder's `splice_info_section`, byte for byte; an `xml+bin` message gives the section it
//! holds. Manifests write them in the form each format wants.

use crate::mp4::emsg::{
    read_emsg, read_event_sample, EventMessage, EventTime, SCTE35_BIN, SCTE35_XML_BIN,
    UNKNOWN_DURATION,
};
use crate::mp4::reader::{FourCC, Reader};
use crate::mp4::Mp4Error;
use crate::scte35::{self, Scte35Error, SpliceCommand, SpliceInfo};

/// Largest event message kept (a SCTE-35 section is at most 4 KiB; other schemes carry
/// small payloads too).
pub const MAX_EVENT_MESSAGE: usize = 64 << 10;
/// Largest metadata sample read.
pub const MAX_METADATA_SAMPLE: u32 = 1 << 20;
/// Most events one track may carry.
pub const MAX_EVENTS_PER_TRACK: usize = 1 << 16;
/// The scheme of a `urim` track whose samples are `emsg` boxes (DASH-IF ingest, before
/// ISO/IEC 23001-18).
pub const DASH_EVENT_SCHEME: &str = "urn:mpeg:dash:event:2012";
/// SCTE-35 cues run on a 90 kHz clock.
const SCTE35_CLOCK: u64 = 90_000;

/// One event on its track's media timeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimedEvent {
    /// Ticks per second of `time` and `duration`.
    pub timescale: u32,
    /// When the event starts, on the carrying track's media timeline.
    pub time: u64,
    /// How long it lasts; `None` when not known.
    pub duration: Option<u64>,
    pub id: u32,
    pub scheme_id_uri: String,
    pub value: String,
    /// The payload; for SCTE-35 the `splice_info_section`, as the encoder sent it.
    pub message: Vec<u8>,
}

/// Why an event (or the sample carrying it) is refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{0}")]
    Mp4(#[from] Mp4Error),
    #[error("bad SCTE-35 cue: {0}")]
    Scte35(#[from] Scte35Error),
    #[error("an event message of {0} bytes, over the limit of {MAX_EVENT_MESSAGE}")]
    TooLarge(usize),
    #[error("an event message with a timescale of 0")]
    NoTimescale,
}

impl TimedEvent {
    /// Carries a SCTE-35 cue.
    pub fn is_scte35(&self) -> bool {
        self.scheme_id_uri == SCTE35_BIN
    }

    /// The cue, for a SCTE-35 event (checked when the event was read).
    pub fn splice(&self) -> Option<SpliceInfo> {
        self.is_scte35()
            .then(|| scte35::parse(&self.message).ok())
            .flatten()
    }

    /// Start in seconds of media time.
    pub fn start_secs(&self) -> f64 {
        self.time as f64 / f64::from(self.timescale.max(1))
    }

    /// Duration in seconds, when known.
    pub fn duration_secs(&self) -> Option<f64> {
        self.duration
            .map(|d| d as f64 / f64::from(self.timescale.max(1)))
    }

    /// Start in whole milliseconds of media time (rounded down).
    pub fn start_ms(&self) -> u64 {
        (u128::from(self.time) * 1000 / u128::from(self.timescale.max(1))) as u64
    }

    /// The same event with `ticks` of `timescale` taken off its time (a clip's start); `None`
    /// when it starts before that.
    pub fn rebased(&self, ticks: u64, timescale: u32) -> Option<TimedEvent> {
        let shift = u128::from(ticks) * u128::from(self.timescale) / u128::from(timescale.max(1));
        let time = u128::from(self.time).checked_sub(shift)?;
        Some(TimedEvent {
            time: time as u64,
            ..self.clone()
        })
    }

    /// The key two copies of one event share (an event message track repeats an event in
    /// every sample it is active in; encoders put the same `emsg` in audio and video).
    fn same_as(&self, o: &TimedEvent) -> bool {
        self.id == o.id
            && self.scheme_id_uri == o.scheme_id_uri
            && self.value == o.value
            && u128::from(self.time) * u128::from(o.timescale)
                == u128::from(o.time) * u128::from(self.timescale)
    }
}

/// How a metadata track's samples carry events, by its sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carriage {
    /// `evte`: each sample is a run of `emib` boxes (or one `emeb`).
    EventMessageTrack,
    /// `urim` with the DASH event scheme: each sample holds `emsg` boxes.
    EmsgSamples,
    /// `urim` with a SCTE-35 scheme: each sample is one cue (binary section, or `xml+bin`).
    Scte35 { xml: bool },
}

/// How the sample entry (the whole box, as `TrackIndex::sample_entry` keeps it) carries
/// events; `None` for a track that carries none this origin reads.
pub fn carriage_of(sample_entry: &[u8]) -> Option<Carriage> {
    let mut r = Reader::new(sample_entry, 0);
    let (header, mut body) = r.next_box_body().ok()??;
    match &header.fourcc.0 {
        b"evte" => Some(Carriage::EventMessageTrack),
        b"urim" => {
            body.skip(8).ok()?; // reserved, data_reference_index
            while let Some((h, mut child)) = body.next_box_body().ok()? {
                if h.fourcc == FourCC::new(b"uri ") {
                    child.full_box().ok()?;
                    let uri = child.c_string().ok()?;
                    return match uri.as_str() {
                        DASH_EVENT_SCHEME => Some(Carriage::EmsgSamples),
                        SCTE35_BIN => Some(Carriage::Scte35 { xml: false }),
                        SCTE35_XML_BIN => Some(Carriage::Scte35 { xml: true }),
                        _ => None,
                    };
                }
            }
            None
        }
        _ => None,
    }
}

/// The events of one metadata sample presented at `time` (`timescale` ticks).
pub fn events_of_sample(
    carriage: &Carriage,
    time: u64,
    timescale: u32,
    sample: &[u8],
) -> Result<Vec<TimedEvent>, EventError> {
    if timescale == 0 {
        return Err(EventError::NoTimescale);
    }
    match carriage {
        Carriage::EventMessageTrack => read_event_sample(sample)?
            .into_iter()
            .map(|e| {
                let at = i128::from(time) + i128::from(e.presentation_time_delta);
                checked(TimedEvent {
                    timescale,
                    time: at.clamp(0, i128::from(u64::MAX)) as u64,
                    duration: known(e.duration),
                    id: e.id,
                    scheme_id_uri: e.scheme_id_uri,
                    value: e.value,
                    message: e.message_data,
                })
            })
            .collect(),
        Carriage::EmsgSamples => {
            let mut r = Reader::new(sample, 0);
            let mut out = Vec::new();
            while let Some((h, body)) = r.next_box_body()? {
                if h.fourcc == FourCC::new(b"emsg") {
                    out.push(event_of_emsg(read_emsg(body)?, time, timescale)?);
                }
            }
            Ok(out)
        }
        Carriage::Scte35 { xml } => {
            let scheme = if *xml { SCTE35_XML_BIN } else { SCTE35_BIN };
            Ok(vec![checked(TimedEvent {
                timescale,
                time,
                duration: None,
                id: 0,
                scheme_id_uri: scheme.into(),
                value: String::new(),
                message: sample.to_vec(),
            })?])
        }
    }
}

/// The event of an `emsg` carried by a segment (or sample) that starts at `start` ticks of
/// `timescale`: a version 0 box counts from there, a version 1 box gives its own time.
pub fn event_of_emsg(
    e: EventMessage,
    start: u64,
    timescale: u32,
) -> Result<TimedEvent, EventError> {
    if e.timescale == 0 {
        return Err(EventError::NoTimescale);
    }
    let time = match e.time {
        EventTime::Absolute(t) => t,
        EventTime::Delta(d) => {
            let base = u128::from(start) * u128::from(e.timescale) / u128::from(timescale.max(1));
            (base + u128::from(d)).min(u128::from(u64::MAX)) as u64
        }
    };
    checked(TimedEvent {
        timescale: e.timescale,
        time,
        duration: known(e.duration),
        id: e.id,
        scheme_id_uri: e.scheme_id_uri,
        value: e.value,
        message: e.message_data,
    })
}

fn known(duration: u32) -> Option<u64> {
    (duration != UNKNOWN_DURATION).then_some(u64::from(duration))
}

/// Checks an event's size and, for SCTE-35, its cue; an `xml+bin` cue becomes the binary
/// scheme with the section it holds. A cue without a duration of its own takes its break's.
pub fn checked(mut e: TimedEvent) -> Result<TimedEvent, EventError> {
    if e.message.len() > MAX_EVENT_MESSAGE {
        return Err(EventError::TooLarge(e.message.len()));
    }
    if e.scheme_id_uri == SCTE35_XML_BIN {
        e.message = scte35::section_of_xml_bin(&e.message)?;
        e.scheme_id_uri = SCTE35_BIN.into();
    }
    if e.scheme_id_uri == SCTE35_BIN {
        let cue = scte35::parse(&e.message)?;
        if e.duration.is_none() {
            e.duration = cue.duration().map(|d| {
                (u128::from(d) * u128::from(e.timescale) / u128::from(SCTE35_CLOCK)) as u64
            });
        }
        if e.id == 0 {
            e.id = cue_id(&cue);
        }
    }
    Ok(e)
}

/// The identifier a cue gives itself: its splice event, else its first segmentation event.
pub fn cue_id(cue: &SpliceInfo) -> u32 {
    match &cue.command {
        SpliceCommand::Insert(i) => i.event_id,
        _ => cue
            .descriptors
            .iter()
            .find_map(|d| d.segmentation.as_ref().map(|s| s.event_id))
            .unwrap_or(0),
    }
}

/// An event message track file (ISO/IEC 23001-18): an init segment with one `evte` track
/// (`meta` handler, `timescale` ticks per second) and its fragments, every `fragment` ticks
/// from 0 to `end` (or the last event), samples cut at each event's start. What `ismtool
/// cues` writes for a title's cue list.
pub fn event_track_file(
    events: &[crate::mp4::emsg::TrackEvent],
    timescale: u32,
    fragment: u64,
    end: u64,
) -> Vec<u8> {
    use crate::mp4::emsg::{event_sample_entry, event_track_samples};
    use crate::mp4::writer::{init_segment_of, write_fragment, TrackHeader};
    let mut schemes: Vec<(&str, &str)> = Vec::new();
    for e in events {
        let scheme = (e.scheme_id_uri.as_str(), e.value.as_str());
        if !schemes.contains(&scheme) {
            schemes.push(scheme);
        }
    }
    let entry = event_sample_entry(&schemes);
    let header = TrackHeader {
        kind: crate::mp4::TrackKind::Metadata,
        timescale,
        language: "und",
        width: 0,
        height: 0,
        sample_entry: &entry,
    };
    let mut out = init_segment_of(&header, 1, None);
    for (k, samples) in event_track_samples(events, fragment, end)
        .iter()
        .enumerate()
    {
        write_fragment(&mut out, 1, k as u32 + 1, samples, &[]);
    }
    out
}

/// Sorts events by time and keeps one of each (see [`TimedEvent::same_as`]).
pub fn merge(events: &mut Vec<TimedEvent>) {
    events.sort_by(|a, b| {
        let at = u128::from(a.time) * u128::from(b.timescale);
        let bt = u128::from(b.time) * u128::from(a.timescale);
        at.cmp(&bt).then(a.id.cmp(&b.id))
    });
    let mut out: Vec<TimedEvent> = Vec::with_capacity(events.len());
    for e in events.drain(..) {
        // Copies share a time, so they sit together once sorted (by id among equal times;
        // several ids at one instant are few).
        let dup = out
            .iter()
            .rev()
            .take_while(|o| {
                u128::from(o.time) * u128::from(e.timescale)
                    == u128::from(e.time) * u128::from(o.timescale)
            })
            .any(|o| o.same_as(&e));
        if !dup {
            out.push(e);
        }
    }
    *events = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::emsg::{write_emsg, write_event_sample, EventInstance};

    /// A `splice_insert` leaving the network at 10.5 s for 30 s (event 42), built by hand.
    pub(crate) fn splice_out() -> Vec<u8> {
        crate::base64::decode("/DAlAAAAAAAAAP/wFAUAAAAqf+/+AA5raP4AKTLgAAEAAAAAK75lwg==").unwrap()
    }

    fn urim(uri: &str) -> Vec<u8> {
        let mut body = vec![0u8; 6];
        body.extend(1u16.to_be_bytes());
        let mut uri_box = vec![0, 0, 0, 0];
        uri_box.extend(uri.as_bytes());
        uri_box.push(0);
        body.extend(((uri_box.len() + 8) as u32).to_be_bytes());
        body.extend(b"uri ");
        body.extend(uri_box);
        let mut entry = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        entry.extend(b"urim");
        entry.extend(body);
        entry
    }

    #[test]
    fn sample_entries_say_how_events_are_carried() {
        assert_eq!(
            carriage_of(&[0, 0, 0, 16, b'e', b'v', b't', b'e', 0, 0, 0, 0, 0, 0, 0, 1]),
            Some(Carriage::EventMessageTrack)
        );
        assert_eq!(
            carriage_of(&urim(SCTE35_BIN)),
            Some(Carriage::Scte35 { xml: false })
        );
        assert_eq!(
            carriage_of(&urim(DASH_EVENT_SCHEME)),
            Some(Carriage::EmsgSamples)
        );
        assert_eq!(carriage_of(&urim("urn:other")), None);
        assert_eq!(carriage_of(b"\0\0\0\x08mett"), None);
        assert_eq!(carriage_of(b""), None);
    }

    #[test]
    fn an_event_message_sample_gives_its_instances_at_their_times() {
        let sample = write_event_sample(&[EventInstance {
            presentation_time_delta: -500,
            duration: UNKNOWN_DURATION,
            id: 0,
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            message_data: splice_out(),
        }]);
        let events = events_of_sample(&Carriage::EventMessageTrack, 11_000, 1000, &sample).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!((e.time, e.timescale), (10_500, 1000));
        // The break's duration and the splice event's id, from the cue.
        assert_eq!((e.duration, e.id), (Some(30_000), 42));
        assert!(e.splice().unwrap().starts_break());
        // An empty sample holds no event.
        let empty = write_event_sample(&[]);
        assert!(
            events_of_sample(&Carriage::EventMessageTrack, 0, 1000, &empty)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_cues_are_refused_and_xml_bin_becomes_the_section() {
        let mut broken = splice_out();
        broken[20] ^= 1;
        let raw = Carriage::Scte35 { xml: false };
        assert!(matches!(
            events_of_sample(&raw, 0, 90_000, &broken),
            Err(EventError::Scte35(_))
        ));
        let xml = scte35::xml_bin_of(&splice_out());
        let e =
            events_of_sample(&Carriage::Scte35 { xml: true }, 9, 90_000, xml.as_bytes()).unwrap();
        assert_eq!(e[0].scheme_id_uri, SCTE35_BIN);
        assert_eq!(e[0].message, splice_out());
        assert!(events_of_sample(&raw, 0, 0, &splice_out()).is_err());
    }

    #[test]
    fn emsg_times_count_from_the_segment_in_version_0_and_stand_in_version_1() {
        let msg = |time| EventMessage {
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            timescale: 90_000,
            time,
            duration: 90_000 * 30,
            id: 7,
            message_data: splice_out(),
        };
        let v0 = event_of_emsg(msg(EventTime::Delta(45_000)), 2000, 1000).unwrap();
        assert_eq!(v0.time, 2 * 90_000 + 45_000);
        let v1 = event_of_emsg(msg(EventTime::Absolute(1)), 2000, 1000).unwrap();
        assert_eq!((v1.time, v1.id, v1.duration), (1, 7, Some(2_700_000)));
        // Carried in samples of a urim track.
        let mut sample = write_emsg(&msg(EventTime::Delta(0)));
        sample.extend(write_emsg(&msg(EventTime::Delta(90_000))));
        let e = events_of_sample(&Carriage::EmsgSamples, 3, 1, &sample).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].time, 4 * 90_000);
    }

    #[test]
    fn merge_keeps_one_copy_in_time_order() {
        let e = |time, timescale, id| TimedEvent {
            timescale,
            time,
            duration: None,
            id,
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            message: splice_out(),
        };
        let mut v = vec![
            e(20, 10, 1),
            e(2000, 1000, 1),
            e(1, 1, 2),
            e(2, 1, 1),
            e(1, 1, 3),
        ];
        merge(&mut v);
        let got: Vec<(u64, u32)> = v.iter().map(|x| (x.start_ms(), x.id)).collect();
        assert_eq!(got, [(1000, 2), (1000, 3), (2000, 1)]);
        assert_eq!(e(2000, 1000, 1).rebased(500, 1000).unwrap().time, 1500);
        assert!(e(2000, 1000, 1).rebased(3, 1).is_none());
    }

    #[test]
    fn an_event_track_file_indexes_back_to_its_events() {
        use crate::mp4::emsg::TrackEvent;
        let cue = |start, out| TrackEvent {
            start,
            duration: None,
            id: 0,
            scheme_id_uri: SCTE35_BIN.into(),
            value: String::new(),
            message_data: scte35::splice_insert_section(7, out, None, out.then_some(90_000 * 8)),
        };
        let file = event_track_file(
            &[cue(90_000 * 3, true), cue(90_000 * 11, false)],
            90_000,
            180_000,
            90_000 * 20,
        );
        let idx =
            crate::index::build_index(&crate::source::MemorySource::new("e.mp4", file)).unwrap();
        let t = &idx.tracks[0];
        assert_eq!(t.kind, crate::mp4::TrackKind::Metadata);
        assert_eq!(t.events.len(), 2);
        assert_eq!(
            (t.events[0].start_ms(), t.events[0].duration),
            (3000, Some(720_000))
        );
        assert_eq!((t.events[1].start_ms(), t.events[1].id), (11_000, 7));
        // A subclip keeps the events in it, timed from its start.
        let clip = idx.subclip(10_000_000, None).unwrap();
        assert_eq!(clip.tracks[0].events.len(), 1);
        assert_eq!(clip.tracks[0].events[0].start_ms(), 1000);
    }
}
