//! Golden manifests: the DASH MPD, HLS playlists and Smooth manifest of the committed fixtures,
//! compared byte for byte with tests/golden/. A change in packaging output shows up as a
//! reviewable diff; regenerate with `scripts/regen-golden.sh` (ORIGIN_REGEN_GOLDEN=1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use origin_core::index::{build_index, MediaIndex};
use origin_core::ism::{ServerManifest, TrackEntry, TrackKind};
use origin_core::package::dash::{self, DashOptions};
use origin_core::package::hls::{self, HlsOptions};
use origin_core::package::mss;
use origin_core::presentation::{Presentation, PresentationError, SourceLoader};
use origin_core::source::MmapSource;
use origin_core::url::{MpdSegmentTemplate, TrackRef, Variant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Files;

impl SourceLoader for Files {
    fn load(&mut self, rel: &str) -> Result<Arc<MediaIndex>, PresentationError> {
        let path = root().join("tests/fixtures").join(rel);
        let src = MmapSource::open(&path).map_err(|e| PresentationError::Source {
            src: rel.into(),
            what: e.to_string(),
        })?;
        Ok(Arc::new(build_index(&src).map_err(|e| {
            PresentationError::Source {
                src: rel.into(),
                what: e.to_string(),
            }
        })?))
    }
}

/// A track of a test presentation: kind, source, trackName, systemBitrate, language.
type TrackSpec = (
    TrackKind,
    &'static str,
    &'static str,
    u64,
    Option<&'static str>,
);

fn presentation(tracks: &[TrackSpec]) -> Presentation {
    let mut m = ServerManifest::default();
    for &(kind, src, name, bitrate, lang) in tracks {
        let mut t = TrackEntry::new(kind, src);
        t.system_bitrate = Some(bitrate);
        t.system_language = lang.map(str::to_string);
        t.set_param("trackName", name);
        m.tracks.push(t);
    }
    Presentation::from_manifest(m, &mut Files).unwrap()
}

fn ladder() -> Presentation {
    presentation(&[
        (
            TrackKind::Video,
            "ladder-video-360.ismv",
            "video",
            165_000,
            None,
        ),
        (
            TrackKind::Video,
            "ladder-video-480.ismv",
            "video",
            273_000,
            None,
        ),
        (
            TrackKind::Video,
            "ladder-video-720.ismv",
            "video",
            432_000,
            None,
        ),
        (
            TrackKind::Audio,
            "ladder-audio-eng.isma",
            "audio_eng",
            128_000,
            Some("eng"),
        ),
        (
            TrackKind::Audio,
            "ladder-audio-fra.isma",
            "audio_fra",
            128_000,
            Some("fra"),
        ),
    ])
}

/// The lowest rendition, English audio and the TTML subtitles.
fn subtitled() -> Presentation {
    presentation(&[
        (
            TrackKind::Video,
            "ladder-video-360.ismv",
            "video",
            165_000,
            None,
        ),
        (
            TrackKind::Audio,
            "ladder-audio-eng.isma",
            "audio_eng",
            128_000,
            Some("eng"),
        ),
        (
            TrackKind::Text,
            "subtitles-eng.mp4",
            "textstream_eng",
            1000,
            Some("eng"),
        ),
    ])
}

/// WebVTT segment `n` of a text variant, its samples read from the fixture.
fn webvtt_segment(p: &Presentation, v: &Variant, n: u64, opts: &HlsOptions) -> String {
    let plan = hls::webvtt_segment_plan(p, v, n, opts).unwrap();
    let data = std::fs::read(root().join("tests/fixtures").join(&plan.track.source)).unwrap();
    let samples: Vec<_> = plan
        .track
        .index()
        .samples(plan.samples.clone())
        .map(|s| {
            (
                s,
                &data[s.offset as usize..(s.offset + u64::from(s.size)) as usize],
            )
        })
        .collect();
    hls::webvtt_segment(&plan, &samples).unwrap()
}

fn progressive() -> Presentation {
    Presentation::from_mp4(Files.load("progressive.mp4").unwrap()).unwrap()
}

fn check(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("ORIGIN_REGEN_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/regen-golden.sh", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the golden copy; review with scripts/regen-golden.sh and git diff\n--- actual ---\n{actual}"
    );
}

fn variant(tracks: &[(&str, u64)]) -> Variant {
    Variant {
        tracks: tracks
            .iter()
            .map(|(n, b)| TrackRef {
                name: n.to_string(),
                bitrate: *b,
            })
            .collect(),
    }
}

fn dash_opts(template: MpdSegmentTemplate, name: &str) -> DashOptions {
    DashOptions {
        template,
        target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
        name: name.into(),
        query: String::new(),
        min_buffer_time: None,
        presentation_delay: None,
        protection: None,
        events: Default::default(),
        splice_periods: false,
    }
}

fn hls_opts(fmp4: bool, version: u32, name: &str) -> HlsOptions {
    HlsOptions {
        target: origin_core::package::DEFAULT_SEGMENT_LENGTH,
        name: name.into(),
        fmp4,
        version,
        query: String::new(),
        key: None,
        skip: false,
        ad_markers: Default::default(),
    }
}

#[test]
fn golden_manifests() {
    let p = ladder();
    check(
        "ladder.mpd",
        &dash::mpd(&p, &dash_opts(MpdSegmentTemplate::Time, "ladder")),
    );
    check(
        "ladder-number.mpd",
        &dash::mpd(&p, &dash_opts(MpdSegmentTemplate::Number, "ladder")),
    );
    check(
        "ladder.m3u8",
        &hls::master(&p, &hls_opts(false, 4, "ladder")).unwrap(),
    );
    check(
        "ladder-v3.m3u8",
        &hls::master(&p, &hls_opts(false, 3, "ladder")).unwrap(),
    );
    check(
        "ladder-fmp4.m3u8",
        &hls::master(&p, &hls_opts(true, 4, "ladder")).unwrap(),
    );
    check(
        "ladder-video=432000.m3u8",
        &hls::ts_playlist(
            &p,
            &variant(&[("video", 432_000)]),
            &hls_opts(false, 4, "ladder"),
        )
        .unwrap(),
    );
    check(
        "ladder-fmp4-audio_fra=128000.m3u8",
        &hls::media_playlist(
            &p,
            &variant(&[("audio_fra", 128_000)]),
            &hls_opts(true, 4, "ladder"),
        )
        .unwrap(),
    );
    check(
        "ladder.ismc",
        &mss::manifest(
            &p,
            origin_core::package::DEFAULT_SEGMENT_LENGTH,
            false,
            "",
            None,
        )
        .unwrap(),
    );
    let p = subtitled();
    check(
        "subs.mpd",
        &dash::mpd(&p, &dash_opts(MpdSegmentTemplate::Time, "subs")),
    );
    check(
        "subs.m3u8",
        &hls::master(&p, &hls_opts(false, 4, "subs")).unwrap(),
    );
    check(
        "subs-fmp4.m3u8",
        &hls::master(&p, &hls_opts(true, 4, "subs")).unwrap(),
    );
    let text = variant(&[("textstream_eng", 1000)]);
    check(
        "subs-textstream_eng=1000.m3u8",
        &hls::ts_playlist(&p, &text, &hls_opts(false, 4, "subs")).unwrap(),
    );
    check(
        "subs-textstream_eng=1000-2.vtt",
        &webvtt_segment(&p, &text, 2, &hls_opts(false, 4, "subs")),
    );
    check(
        "subs-fmp4-textstream_eng=1000-2.vtt",
        &webvtt_segment(&p, &text, 2, &hls_opts(true, 4, "subs")),
    );
    check(
        "subs.ismc",
        &mss::manifest(
            &p,
            origin_core::package::DEFAULT_SEGMENT_LENGTH,
            false,
            "",
            None,
        )
        .unwrap(),
    );
    let p = progressive();
    check(
        "progressive.mpd",
        &dash::mpd(&p, &dash_opts(MpdSegmentTemplate::Time, "progressive")),
    );
    check(
        "progressive.ismc",
        &mss::manifest(
            &p,
            origin_core::package::DEFAULT_SEGMENT_LENGTH,
            false,
            "",
            None,
        )
        .unwrap(),
    );
    assert!(Path::new(&root().join("tests/golden")).is_dir());
}
