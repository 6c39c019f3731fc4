//! The live timeline rules on arbitrary input: the channel's timelines file (what parses must
//! write and parse back the same), decode times moved in an arbitrary `moof`, and fragments
//! judged against arbitrary held media and clocks. Nothing may panic (no overflow either), and
//! a restart's timeline never puts the fragment before the edge it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_core::live::timeline::{
    format_timelines, judge, parse_timelines, restart_timeline, shift_decode_times, Clock, Held,
    HeldFragment, Offered,
};

fn u64_at(data: &[u8], k: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, v) in b.iter_mut().enumerate() {
        *v = data.get(k * 8 + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let text = String::from_utf8_lossy(input);
            let timelines = parse_timelines(&text);
            let again = parse_timelines(&format_timelines(&timelines));
            assert_eq!(again, timelines, "timelines changed through a write");
        }
        1 => {
            let delta = u64_at(input, 0);
            let mut moof = input.get(8..).unwrap_or_default().to_vec();
            let _ = shift_decode_times(&mut moof, delta);
        }
        _ => {
            let n = |k| u64_at(input, k);
            let timescale = (n(0) as u32).max(1);
            let offered = Offered {
                start: n(1),
                duration: n(2),
                timescale,
            };
            let clock = Clock {
                now_ms: n(3) as i64,
                anchor_ms: (n(4) & 1 == 0).then_some(n(5) as i64),
            };
            let held = (n(6) & 1 == 0).then(|| Held {
                edge: n(7),
                last_duration: n(8),
                covering: (n(9) & 1 == 0).then(|| HeldFragment {
                    start: n(10),
                    duration: n(11),
                    ingest_ms: n(12) as i64,
                }),
            });
            let _ = judge(offered, held, clock);
            let rest = String::from_utf8_lossy(input.get(112..).unwrap_or_default()).into_owned();
            let timelines = parse_timelines(&rest);
            let edge = n(7);
            let current = n(13) as u32;
            let Some((timeline, new)) =
                restart_timeline(&timelines, current, offered.start, edge, timescale, clock)
            else {
                return;
            };
            if new {
                let moved = offered
                    .start
                    .saturating_add(timeline.offset_ticks(timescale));
                assert!(moved >= edge, "a new timeline lands before the edge");
            }
        }
    }
});
