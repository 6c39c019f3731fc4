//! Arbitrary bytes as a bare MP4 served in every format: when the index builds, the DASH MPD,
//! the HLS masters and playlists (TS, fMP4, WebVTT, I-frames), the Smooth manifest, and the
//! first segments of every variant (CMAF fragments, TS and packed audio muxed from the
//! samples' bytes, WebVTT converted from text samples) must come out without a panic.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use origin_core::index::{build_index, TrackKind};
use origin_core::live::window::{LiveInfo, TrackCuts};
use origin_core::package::dash::{self, DashOptions};
use origin_core::package::hls::{self, HlsOptions};
use origin_core::package::{hds, mss, ts};
use origin_core::presentation::Presentation;
use origin_core::source::MemorySource;
use origin_core::url::{MpdSegmentTemplate, SegmentIndex, TrackRef, Variant};

fuzz_target!(|data: &[u8]| {
    let src = MemorySource::new("fuzz.mp4", data.to_vec());
    let Ok(index) = build_index(&src) else {
        return;
    };
    let Ok(mut p) = Presentation::from_mp4(Arc::new(index)) else {
        return;
    };
    if p.empty_track().is_some() {
        return;
    }
    let bytes =
        |offset: u64, size: u32| data.get(offset as usize..(offset + u64::from(size)) as usize);
    let dash_opts = dash_options(MpdSegmentTemplate::Time);
    let _ = dash::mpd(&p, &dash_opts);
    let _ = mss::manifest(
        &p,
        origin_core::package::DEFAULT_SEGMENT_LENGTH,
        false,
        "",
        None,
    );
    let _ = mss::manifest(
        &p,
        origin_core::package::DEFAULT_SEGMENT_LENGTH,
        true,
        "",
        None,
    );
    // HDS: the manifest, and the first fragments of every variant written from their bytes.
    let hds_opts = hds::HdsOptions {
        target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
        name: "f".into(),
        query: String::new(),
    };
    let _ = hds::manifest(&p, &hds_opts);
    for variant in hds::variants(&p) {
        let v = Variant {
            tracks: variant
                .iter()
                .map(|t| TrackRef {
                    name: t.name.clone(),
                    bitrate: t.bitrate,
                })
                .collect(),
        };
        for n in 1..=2 {
            let Ok(plan) = hds::fragment(&p, &v, 1, n, &hds_opts) else {
                continue;
            };
            let inputs: Vec<_> = plan
                .tracks
                .iter()
                .map(|part| {
                    part.with_bytes(
                        part.track
                            .index()
                            .samples(part.samples.clone())
                            .filter_map(|s| Some((s, bytes(s.offset, s.size)?)))
                            .collect(),
                    )
                })
                .collect();
            let _ = plan.write(&inputs);
        }
    }
    for fmp4 in [false, true] {
        let opts = HlsOptions {
            target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
            name: "f".into(),
            fmp4,
            version: 4,
            query: String::new(),
            key: None,
            skip: false,
            ad_markers: origin_core::ism::HlsAdMarkers::Both,
        };
        let _ = hls::master(&p, &opts);
        for t in &p.tracks {
            let v = Variant {
                tracks: vec![TrackRef {
                    name: t.name.clone(),
                    bitrate: t.bitrate,
                }],
            };
            let _ = if fmp4 {
                hls::media_playlist(&p, &v, &opts)
            } else {
                hls::ts_playlist(&p, &v, &opts)
            };
            let _ = dash::init_for(t);
            let _ = hls::iframe_playlist(&p, &v, &opts, &mut |_, _| Ok(100));
            for n in 1..=2 {
                let _ = hls::fmp4_segment(&p, &v, n, &opts);
                if t.kind == TrackKind::Text {
                    if let Ok(plan) = hls::webvtt_segment_plan(&p, &v, n, &opts) {
                        let samples: Vec<_> = t
                            .index()
                            .samples(plan.samples.clone())
                            .filter_map(|s| Some((s, bytes(s.offset, s.size)?)))
                            .collect();
                        let _ = hls::webvtt_segment(&plan, &samples);
                    }
                    continue;
                }
                let Ok(parts) = hls::ts_segment_samples(&p, &v, n, &opts) else {
                    continue;
                };
                let inputs: Vec<ts::TsInput<'_>> = parts
                    .iter()
                    .map(|(t, range)| ts::TsInput {
                        entry: &t.entry,
                        kind: t.kind,
                        timescale: t.index().timescale,
                        presentation_delay: dash::presentation_delay(t),
                        samples: t
                            .index()
                            .samples(range.clone())
                            .filter_map(|s| Some((s, bytes(s.offset, s.size)?)))
                            .collect(),
                    })
                    .collect();
                let whole = ts::mux(&inputs);
                // The same segment written in small pieces, as the glue streams it, must be
                // byte for byte the whole one, and exactly as long as measured.
                if let Ok(whole) = whole {
                    let limit = 1 + data.len() % 3000;
                    assert_eq!(in_pieces(&inputs, ts::TsFormat::Transport, limit), whole);
                }
                if t.kind == TrackKind::Audio {
                    if let Ok(whole) = ts::packed_audio(&inputs[0]) {
                        let limit = 1 + data.len() % 700;
                        let single = std::slice::from_ref(&inputs[0]);
                        assert_eq!(in_pieces(single, ts::TsFormat::PackedAudio, limit), whole);
                    }
                }
            }
        }
    }
    low_latency(&mut p, data);
});

fn dash_options(template: MpdSegmentTemplate) -> DashOptions {
    DashOptions {
        template,
        target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
        name: "f".into(),
        query: String::new(),
        min_buffer_time: None,
        presentation_delay: None,
        protection: None,
        events: origin_core::ism::MpdEvents::Both,
        splice_periods: true,
    }
}

/// The same presentation as a low-latency live window whose last segment still grows: its
/// segments start at the sync samples, its chunks every few samples (as the input says), and
/// the LL-DASH MPD, every segment by its chunks, the LL-HLS playlists and parts are made.
fn low_latency(p: &mut Presentation, data: &[u8]) {
    let every = 1 + data.first().copied().unwrap_or(3) as u32 % 16;
    let cuts = p
        .tracks
        .iter()
        .map(|t| {
            let idx = t.index();
            let all = 0..idx.sample_count();
            TrackCuts {
                src: t.source.clone(),
                starts: all
                    .clone()
                    .filter(|&i| idx.is_sync(i) || i == 0)
                    .map(|i| idx.dts(i))
                    .collect(),
                ingested_ms: Vec::new(),
                first_number: 7,
                chunk_starts: all.filter(|i| i % every == 0).map(|i| idx.dts(i)).collect(),
                growing: data.len() % 2 == 0,
            }
        })
        .collect();
    p.live = Some(Arc::new(LiveInfo {
        anchor_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_060_000,
        now_ms: 1_700_000_060_000,
        ended: false,
        dvr_window_secs: 30,
        retain_secs: None,
        cuts,
        window: (0.0, p.duration_secs()),
        first_timeline: 0,
        timeline_breaks: Vec::new(),
        low_latency: true,
        declared_segment_secs: None,
    }));
    let p = &*p;
    for template in [MpdSegmentTemplate::Time, MpdSegmentTemplate::Number] {
        let opts = dash_options(template);
        let mpd = dash::mpd(p, &opts);
        assert!(mpd.contains("availabilityTimeComplete") || !mpd.contains("<S "));
        for t in &p.tracks {
            let r = TrackRef {
                name: t.name.clone(),
                bitrate: t.bitrate,
            };
            let idx = t.index();
            let indexes = (0..idx.sample_count().min(64))
                .map(|i| SegmentIndex::Time(idx.dts(i)))
                .chain((6..12).map(SegmentIndex::Number));
            for index in indexes {
                if let Ok(Some(dash::ChunkedSegment::Chunks { chunks, .. })) =
                    dash::low_latency_segment(p, &r, index, &opts)
                {
                    // One styp, then a prft before every moof.
                    assert!(!chunks.is_empty());
                    for (k, c) in chunks.iter().enumerate() {
                        let at = if k == 0 { 28 } else { 0 };
                        assert_eq!(&c.header[4..8], if k == 0 { b"styp" } else { b"prft" });
                        assert_eq!(&c.header[at + 4..at + 8], b"prft");
                    }
                }
            }
        }
    }
    let opts = HlsOptions {
        target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
        name: "f".into(),
        fmp4: true,
        version: 9,
        query: String::new(),
        key: None,
        skip: data.len() % 3 == 0,
        ad_markers: origin_core::ism::HlsAdMarkers::Both,
    };
    for t in &p.tracks {
        let v = Variant {
            tracks: vec![TrackRef {
                name: t.name.clone(),
                bitrate: t.bitrate,
            }],
        };
        let _ = hls::media_playlist(p, &v, &opts);
        for n in 6..10 {
            for part in 0..4 {
                let _ = hls::fmp4_part(p, &v, n, part, &opts);
            }
        }
    }
}

/// Writes a segment with `TsWriter` in pieces of at most `limit` bytes (plus one packet).
fn in_pieces(inputs: &[ts::TsInput<'_>], format: ts::TsFormat, limit: usize) -> Vec<u8> {
    let tracks: Vec<ts::TsTrack> = inputs
        .iter()
        .enumerate()
        .map(|(n, i)| ts::TsTrack {
            entry: i.entry.clone(),
            kind: i.kind,
            timescale: i.timescale,
            presentation_delay: i.presentation_delay,
            samples: i.samples.iter().map(|(s, _)| *s).collect(),
            source: n,
        })
        .collect();
    let mut writer = ts::TsWriter::new(tracks, format).expect("the whole segment was written");
    let bytes_of = |w: &ts::TsWriter, i: usize| -> &[u8] {
        let (t, sample) = w.access_unit(i);
        let input = &inputs[w.tracks()[t].source];
        input
            .samples
            .iter()
            .find(|(s, _)| s.index == sample.index)
            .map(|(_, b)| *b)
            .expect("every sample has bytes")
    };
    let mut measured = writer.header_len();
    for i in 0..writer.access_units() {
        measured += writer.measure(i, bytes_of(&writer, i)).expect("measured");
    }
    let mut out = Vec::new();
    let mut unit = 0;
    while !writer.is_done() {
        let mut piece = Vec::new();
        while piece.len() < limit && !writer.is_done() {
            let data = if unit < writer.access_units() {
                bytes_of(&writer, unit)
            } else {
                &[]
            };
            if writer.write(&mut piece, data, limit).expect("written") {
                unit += 1;
            }
        }
        assert!(piece.len() < limit + ts::PACKET);
        out.extend_from_slice(&piece);
    }
    assert_eq!(out.len(), measured);
    out
}
