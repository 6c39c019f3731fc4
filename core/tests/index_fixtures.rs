//! The media index of every committed fixture agrees with ffprobe's packet list, sample by
//! sample: size, file offset, key flag, duration, composition offset and decode-time steps.
//! Both source kinds (mmap and pread) give the same index.

use std::path::PathBuf;

use origin_core::index::{build_index, TrackIndex};
use origin_core::source::{MmapSource, PreadSource, Source};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

struct Packet {
    stream: usize,
    pts: i64,
    dts: i64,
    duration: Option<i64>,
    size: u64,
    pos: u64,
    key: bool,
}

fn packets(file: &str) -> Vec<Packet> {
    let csv = std::fs::read_to_string(
        fixtures()
            .join("expected")
            .join(format!("{file}.packets.csv")),
    )
    .expect("expected packet list");
    csv.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Packet {
                stream: f[0].parse().unwrap(),
                pts: f[1].parse().unwrap(),
                dts: f[2].parse().unwrap(),
                duration: f[3].parse().ok(),
                size: f[4].parse().unwrap(),
                pos: f[5].parse().unwrap(),
                key: f[6].starts_with('K'),
            }
        })
        .collect()
}

fn check_track(file: &str, stream: usize, track: &TrackIndex, expected: &[&Packet]) {
    assert_eq!(
        track.sample_count() as usize,
        expected.len(),
        "{file} stream {stream}: sample count"
    );
    let samples: Vec<_> = track.samples(0..track.sample_count()).collect();
    for (i, (s, p)) in samples.iter().zip(expected).enumerate() {
        let at = format!("{file} stream {stream} sample {i}");
        assert_eq!(u64::from(s.size), p.size, "{at}: size");
        assert_eq!(s.offset, p.pos, "{at}: offset");
        assert_eq!(s.sync, p.key, "{at}: sync");
        // ffprobe rescales 10 MHz Smooth audio times (213333/213334-tick frames) and reports
        // the codec's frame length for a trimmed last sample; the file's own values are what
        // the index keeps, so allow one tick and skip the last sample.
        if let (Some(d), false) = (p.duration, i + 1 == samples.len()) {
            assert!(
                (i64::from(s.duration) - d).abs() <= 1,
                "{at}: duration {} vs {d}",
                s.duration
            );
        }
        // ffprobe folds edit lists and negative-offset shifts into its timestamps; the offsets
        // relative to the first sample's are what the file says.
        assert_eq!(
            i64::from(s.cto) - i64::from(samples[0].cto),
            (p.pts - p.dts) - (expected[0].pts - expected[0].dts),
            "{at}: composition offset"
        );
        if i > 0 {
            let step = s.dts as i64 - samples[i - 1].dts as i64;
            let expected_step = p.dts - expected[i - 1].dts;
            assert!(
                (step - expected_step).abs() <= 1,
                "{at}: decode time step {step} vs {expected_step}"
            );
        }
        // Random access agrees with sequential iteration.
        assert_eq!(track.dts(s.index), s.dts, "{at}: dts lookup");
        assert_eq!(track.offset(s.index), s.offset, "{at}: offset lookup");
        assert_eq!(
            track.sample_at_or_after(s.dts),
            s.index,
            "{at}: time lookup"
        );
    }
}

fn check_file(file: &str) {
    let path = fixtures().join(file);
    let mmap = MmapSource::open(&path).unwrap();
    let index = build_index(&mmap).unwrap_or_else(|e| panic!("{file}: {e}"));
    let pread = PreadSource::open(&path).unwrap();
    assert_eq!(
        build_index(&pread).unwrap(),
        index,
        "{file}: mmap and pread agree"
    );
    assert_eq!(index.file_size, mmap.len());
    let expected = packets(file);
    let streams = expected.iter().map(|p| p.stream).max().map_or(0, |m| m + 1);
    assert_eq!(index.tracks.len(), streams, "{file}: track count");
    for (stream, track) in index.tracks.iter().enumerate() {
        let mine: Vec<&Packet> = expected.iter().filter(|p| p.stream == stream).collect();
        check_track(file, stream, track, &mine);
    }
}

#[test]
fn progressive_faststart() {
    check_file("progressive.mp4");
}

#[test]
fn progressive_moov_at_end() {
    check_file("progressive-tail.mp4");
}

#[test]
fn smooth_muxed() {
    check_file("smooth.ismv");
}

#[test]
fn smooth_single_tracks() {
    check_file("smooth-video.ismv");
    check_file("smooth-audio.isma");
    check_file("ladder-video-360.ismv");
    check_file("ladder-audio-eng.isma");
}

#[test]
fn cmaf() {
    check_file("cmaf-video.cmfv");
    check_file("cmaf-audio.cmfa");
}

#[test]
fn hevc_and_ac3() {
    check_file("hevc.mp4");
    check_file("ac3.mp4");
}

#[test]
fn ttml_text_track() {
    check_file("subtitles-eng.mp4");
}
