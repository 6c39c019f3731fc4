//! Core benchmarks: index build for the 2-hour title, lookups, fragment plans.
//!
//! The long-form file is made by `scripts/make-test-media.sh DIR --long`; point ORIGIN_LONG_MP4
//! at it (default: build/media/long-2h.mp4). Without it only the fixture benchmarks run.

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use origin_core::fragment::{plan_fragment, FragmentOptions};
use origin_core::index::build_index;
use origin_core::segment::{aligned_segments, reference_segments};
use origin_core::source::MmapSource;

fn long_file() -> Option<PathBuf> {
    let p = std::env::var_os("ORIGIN_LONG_MP4")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/media/long-2h.mp4")
        });
    p.exists().then_some(p)
}

fn bench_index(c: &mut Criterion) {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/progressive.mp4");
    let src = MmapSource::open(&fixture).unwrap();
    c.bench_function("index build: 4 s fixture", |b| {
        b.iter(|| build_index(black_box(&src)).unwrap())
    });

    if let Some(path) = long_file() {
        let src = MmapSource::open(&path).unwrap();
        let index = build_index(&src).unwrap();
        let samples = index.sample_count();
        eprintln!(
            "2-hour index: {} samples, {} heap bytes, {:.2} bytes/sample",
            samples,
            index.heap_size(),
            index.heap_size() as f64 / samples as f64
        );
        for t in &index.tracks {
            eprintln!(
                "  track {} {:?}: {} samples, {} heap bytes, (time runs, ctos, chunks, syncs) = {:?}",
                t.track_id,
                t.kind,
                t.sample_count(),
                t.heap_size(),
                t.table_lengths()
            );
        }
        c.bench_function("index build: 2-hour title", |b| {
            b.iter(|| build_index(black_box(&src)).unwrap())
        });
        let video = &index.tracks[0];
        let end = video.end_time();
        let table = reference_segments(video, 2, 1);
        let audio = &index.tracks[1];
        let audio_table = aligned_segments(audio, video, &table);
        eprintln!("  {} two-second segments", table.len());
        let shared = std::sync::Arc::new(index.clone());
        c.bench_function(
            "first MPD of the 2-hour title from its index (no caches)",
            |b| {
                b.iter(|| {
                    let p =
                        origin_core::presentation::Presentation::from_mp4(shared.clone()).unwrap();
                    black_box(origin_core::package::dash::mpd(
                        &p,
                        &origin_core::package::dash::DashOptions {
                            template: origin_core::url::MpdSegmentTemplate::Time,
                            target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
                            name: "long".into(),
                            query: String::new(),
                            min_buffer_time: None,
                            presentation_delay: None,
                            protection: None,
                            events: Default::default(),
                            splice_periods: false,
                        },
                    ))
                })
            },
        );
        c.bench_function("segmentation: 2-hour video + aligned audio", |b| {
            b.iter(|| {
                let t = reference_segments(black_box(video), 2, 1);
                black_box(aligned_segments(audio, video, &t))
            })
        });
        c.bench_function("segment lookup by start time (2-hour video)", |b| {
            let mut k = 0usize;
            b.iter(|| {
                k = (k + 997) % table.len();
                let t = video.dts(table.starts()[k]);
                black_box(table.by_start_time(video, black_box(t)))
            })
        });
        let mid = table.len() / 2;
        c.bench_function("fragment plan: 2 s video segment (50 samples)", |b| {
            b.iter(|| {
                plan_fragment(
                    video,
                    table.samples(mid).unwrap(),
                    black_box(&FragmentOptions::default()),
                )
                .unwrap()
            })
        });
        c.bench_function("fragment plan: 2 s audio segment (94 samples)", |b| {
            b.iter(|| {
                plan_fragment(
                    audio,
                    audio_table.samples(mid).unwrap(),
                    black_box(&FragmentOptions::default()),
                )
                .unwrap()
            })
        });
        c.bench_function("time -> sample lookup (2-hour video track)", |b| {
            let mut t = 0u64;
            b.iter(|| {
                t = (t + 7_777_777) % end;
                black_box(video.sample_at_or_after(black_box(t)))
            })
        });
    }
}

criterion_group!(benches, bench_index);
criterion_main!(benches);
