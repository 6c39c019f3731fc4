//! Reads arbitrary bytes as an SCTE-35 section (binary and xml+bin), an `emsg` box body and
//! an event message track's sample: refused or read, never a panic. What reads as an event
//! sample, an `emsg` or an xml+bin message writes and reads back; a section that parses keeps
//! its descriptors' bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::mp4::emsg::{read_emsg, read_event_sample, write_emsg, write_event_sample};
use origin_core::mp4::Reader;
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
});
