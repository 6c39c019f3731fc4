//! Reads arbitrary bytes as an SCTE-35 section (binary and xml+bin), an `emsg` box body, an
//! event message track's sample, a metadata sample entry and a sample of each carriage, and
//! as a cue list (`ismtool cues`' event track made of what reads): refused or read, never a
//! panic. What reads as an event sample, an `emsg` or an xml+bin message writes and reads
//! back; a section that parses keeps its descriptors' bytes; the HLS and DASH forms of what
//! reads as cues are made.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::mp4::emsg::{read_emsg, read_event_sample, write_emsg, write_event_sample};
use origin_core::mp4::Reader;
use origin_core::events::{self, Carriage};
use origin_core::package::ad_markers;
use origin_core::scte35;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = scte35::parse(data) {
        let _ = (info.splice_pts(), info.duration(), info.starts_break(), info.ends_break());
        for d in &info.descriptors {
            assert!(data.windows(d.bytes.len()).any(|w| w == d.bytes.as_slice()));
        }
    }
    if let Ok(section) = scte35::section_of_xml_bin(data) {
        // What an xml+bin message carries is a section that checks, and writes back.
        let again = scte35::section_of_xml_bin(scte35::xml_bin_of(&section).as_bytes());
        assert_eq!(again.as_deref(), Ok(section.as_slice()));
    }
    if let Ok(e) = read_emsg(Reader::new(data, 8)) {
        // Strings read lossily or without their NUL do not write back byte for byte; what
        // was read is what is written.
        let boxed = write_emsg(&e);
        let mut r = Reader::new(&boxed, 0);
        if let Ok(Some((_, body))) = r.next_box_body() {
            let again = read_emsg(body).expect("a written emsg reads");
            if !e.scheme_id_uri.contains('\0') && !e.value.contains('\0') {
                assert_eq!(again.time, e.time);
                assert_eq!(again.id, e.id);
            }
        }
    }
    if let Ok(events) = read_event_sample(data) {
        let written = write_event_sample(&events);
        let again = read_event_sample(&written).expect("a written sample reads");
        assert_eq!(again.len(), events.len());
    }
    let _ = events::carriage_of(data);
    let mut found = Vec::new();
    for carriage in [
        Carriage::EventMessageTrack,
        Carriage::EmsgSamples,
        Carriage::Scte35 { xml: false },
        Carriage::Scte35 { xml: true },
    ] {
        let time = data.first().map_or(0, |&b| u64::from(b) * 1000);
        if let Ok(e) = events::events_of_sample(&carriage, time, 1000, data) {
            found.extend(e);
        }
    }
    events::merge(&mut found);
    // What reads as cues makes manifests, and an event track that indexes back to them.
    let cues = ad_markers::cues(&found);
    let starts = [0.0, 2.0, 4.0, 6.0];
    let _ = ad_markers::hls_tags(&cues, &starts, 8.0, 0, origin_core::ism::HlsAdMarkers::Both);
    let _ = ad_markers::dash_event_stream(&cues, f64::MIN, f64::MAX, 0.0);
    let _ = ad_markers::inband_events(&found, 1000, 0, u64::MAX);
    if !found.is_empty() {
        let track: Vec<_> = found
            .iter()
            .take(8)
            .map(|e| origin_core::mp4::emsg::TrackEvent {
                start: e.time.min(60_000),
                duration: e.duration.map(|d| d.min(10_000)),
                id: e.id,
                scheme_id_uri: e.scheme_id_uri.clone(),
                value: e.value.clone(),
                message_data: e.message.clone(),
            })
            .collect();
        let file = events::event_track_file(&track, 1000, 2000, 0);
        let source = origin_core::source::MemorySource::new("cues.mp4", file);
        let index = origin_core::index::build_index(&source).expect("a written event track reads");
        assert!(!index.tracks[0].events.is_empty());
    }
});
