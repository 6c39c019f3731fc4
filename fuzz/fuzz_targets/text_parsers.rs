//! Arbitrary bytes as a WebVTT file, a TTML document and a wvtt sample (the first byte picks);
//! what parses must write and parse back with the same cues, and package into a text track
//! the index reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::index::build_index;
use origin_core::source::MemorySource;
use origin_core::text::cmaf::{text_track, TextFormat, TextTrackOptions};
use origin_core::text::{ttml, webvtt, wvtt, Cue};

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let cues: Vec<Cue> = match which % 3 {
        0 => {
            let Ok(cues) = webvtt::parse(input) else {
                return;
            };
            let written = webvtt::write(&cues, Some(0));
            let again = webvtt::parse(written.as_bytes()).expect("written WebVTT parses");
            assert_eq!(again.len(), cues.len(), "cue count changed");
            assert_eq!(
                webvtt::write(&again, Some(0)),
                written,
                "second write differs"
            );
            cues
        }
        1 => match ttml::cues(input, 0, 3_600_000) {
            Ok(cues) => cues,
            Err(_) => return,
        },
        _ => {
            let Ok(cues) = wvtt::cues(input, 0, 1000) else {
                return;
            };
            let refs: Vec<&Cue> = cues.iter().collect();
            let again = wvtt::cues(&wvtt::sample(&refs), 0, 1000).expect("written sample parses");
            assert_eq!(again.len(), cues.len());
            cues
        }
    };
    // Packaging is linear in the track's length; ten minutes of fragments exercise all of it
    // while keeping executions fast (the one-week bound is unit-tested).
    if cues.iter().any(|c| c.end_ms > 600_000) {
        return;
    }
    for format in [TextFormat::Wvtt, TextFormat::Stpp] {
        let opts = TextTrackOptions {
            format,
            language: "eng".into(),
            fragment_ms: 2000,
        };
        if let Ok(file) = text_track(&cues, &opts) {
            build_index(&MemorySource::new("fuzz.cmft", file)).expect("packaged track indexes");
        }
    }
});
