//! Builds the media index of arbitrary bytes and, when that succeeds, exercises every lookup
//! and the fragment writer over the whole track.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::fragment::{plan_fragment, FragmentOptions};
use origin_core::index::build_index;
use origin_core::mp4::codec::{parse_sample_entry, write_sample_entry};
use origin_core::mp4::Reader;
use origin_core::segment::reference_segments;
use origin_core::source::MemorySource;

fuzz_target!(|data: &[u8]| {
    let src = MemorySource::new("fuzz", data.to_vec());
    let Ok(index) = build_index(&src) else {
        return;
    };
    for track in &index.tracks {
        // The sample description: parse, describe, write back and parse again.
        let mut r = Reader::new(&track.sample_entry, 0);
        if let Ok(Some((h, body))) = r.next_box_body() {
            if let Ok(entry) = parse_sample_entry(h.fourcc, body) {
                let _ = entry.codec_string();
                let _ = entry.smooth_fourcc();
                let _ = entry.smooth_codec_private_data();
                let mut out = Vec::new();
                write_sample_entry(&entry, &mut out);
                let mut r2 = Reader::new(&out, 0);
                if let Ok(Some((h2, body2))) = r2.next_box_body() {
                    let _ = parse_sample_entry(h2.fourcc, body2);
                }
            }
        }
        let n = track.sample_count().min(10_000);
        for s in track.samples(0..n) {
            let _ = track.dts(s.index);
            let _ = track.offset(s.index);
            let _ = track.sample_at_or_after(s.dts);
        }
        let _ = track.sample_at_or_before(u64::MAX / 2);
        let table = reference_segments(track, 2, 1);
        for k in 0..table.len().min(64) {
            if let Some(range) = table.samples(k) {
                let _ = plan_fragment(track, range, &FragmentOptions::default());
            }
        }
        let _ = track.init_segment(1, None);
    }
});
