//! A live channel driven through the engine as the nginx driver drives it: the archive's
//! records are read before the request (with the clock), its data files are asked for with
//! [`Need::Open`] like any source, and the time is the one given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::live::channel::ChannelReader;
use crate::live::store::DirectIngest;
use crate::source::MmapSource;
use crate::url::RouteOptions;

/// When the fragments were ingested, and (a minute later) when the requests are made.
const INGESTED_MS: i64 = 1_700_000_000_000;
const NOW_MS: i64 = INGESTED_MS + 60_000;

/// A scratch directory holding `ch.isml` and its archive: the Smooth fixture pushed by an
/// encoder that has not ended its stream (everything before its `mfra`).
struct Channel {
    dir: PathBuf,
}

impl Channel {
    fn new(name: &str) -> Channel {
        Channel::pushed(name, None, &[INGESTED_MS])
    }

    /// A channel with `isml` as its server manifest (made by the first push when `None`),
    /// the fixture pushed once at each of `times` (a restarted encoder starts at 0 again).
    fn pushed(name: &str, isml: Option<&[u8]>, times: &[i64]) -> Channel {
        let dir = std::env::temp_dir().join(format!("origin-live-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(isml) = isml {
            std::fs::write(dir.join("ch.isml"), isml).unwrap();
        }
        let bytes = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smooth.ismv"),
        )
        .unwrap();
        let mfra = bytes.windows(4).rposition(|w| w == b"mfra").unwrap() - 4;
        for &at in times {
            let mut s = DirectIngest::open(&dir.join("ch.isml"), "s1", true).unwrap();
            s.push(&bytes[..mfra], at).unwrap();
        }
        Channel { dir }
    }

    fn isml(&self) -> String {
        self.dir.join("ch.isml").display().to_string()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a drive saw: the answer (or error) and every file the engine asked to open.
struct Drive {
    result: Result<Answer, Error>,
    opened: Vec<String>,
    /// The request asked to be held (a low-latency request ahead of the channel).
    held: Option<crate::request::Wait>,
}

/// Drives `url` on the channel; `refuse` says which files the driver cannot open.
fn drive(channel: &Channel, url: &str, refuse: impl Fn(&str) -> bool) -> Drive {
    drive_held_until(channel, url, refuse, None)
}

/// [`drive`] for a request held before, until `wait_until`.
fn drive_held_until(
    channel: &Channel,
    url: &str,
    refuse: impl Fn(&str) -> bool,
    wait_until: Option<i64>,
) -> Drive {
    drive_streamed(channel, url, refuse, wait_until, None)
}

/// [`drive_held_until`] for a growing answer that sent `streamed` bytes before.
fn drive_streamed(
    channel: &Channel,
    url: &str,
    refuse: impl Fn(&str) -> bool,
    wait_until: Option<i64>,
    streamed: Option<u64>,
) -> Drive {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let route = Route::parse(path.as_bytes(), query.as_bytes(), RouteOptions::default()).unwrap();
    let snapshot = ChannelReader::new()
        .snapshot(Path::new(&channel.isml()), NOW_MS)
        .unwrap();
    let mut req = Request::new(route, channel.isml(), query)
        .with_live(Arc::new(snapshot), NOW_MS, false)
        .with_wait_until(wait_until)
        .with_streamed(streamed);
    let mut caches = Caches::default();
    let mut opened = Vec::new();
    let mut held = None;
    let result = loop {
        match req.step(&mut caches) {
            Err(e) => break Err(e),
            Ok(Step::Done(answer)) => break Ok(answer),
            Ok(Step::Need(Need::Open(paths))) => {
                for path in paths {
                    opened.push(path.clone());
                    let supplied = if refuse(&path) {
                        Err(Error::NotFound { path: path.clone() })
                    } else {
                        let source: SharedSource =
                            Arc::new(MmapSource::open(Path::new(&path)).unwrap());
                        Ok(Opened {
                            identity: source.identity().clone(),
                            size: source.len(),
                            modified: 1,
                            reader: Some(source),
                        })
                    };
                    req.supply_open(&path, supplied);
                }
            }
            Ok(Step::Need(Need::Read(reads))) => {
                panic!("a local file was asked for bytes: {reads:?}")
            }
            Ok(Step::Need(Need::Wait(wait))) => {
                held = Some(wait);
                break Err(Error::Internal("held"));
            }
        }
    };
    Drive {
        result,
        opened,
        held,
    }
}

fn is_data_file(path: &str) -> bool {
    path.contains("ch.isml.archive/") && path.ends_with(".frag")
}

#[test]
fn the_data_files_of_a_window_are_asked_for_and_the_time_is_the_one_given() {
    let channel = Channel::new("window");
    let mpd = drive(&channel, "/ch.isml/.mpd", |_| false);
    // The server manifest, then every data file of the window at once.
    assert!(mpd.opened[0].ends_with("ch.isml"), "{:?}", mpd.opened);
    let data: Vec<&String> = mpd.opened.iter().filter(|p| is_data_file(p)).collect();
    assert!(
        !data.is_empty(),
        "no data file was asked for: {:?}",
        mpd.opened
    );
    assert_eq!(data.len() + 1, mpd.opened.len(), "{:?}", mpd.opened);
    let answer = mpd.result.unwrap();
    let Body::Text(text) = &answer.body else {
        panic!("not a manifest")
    };
    // UTCTiming says when the manifest was made: the time the driver gave.
    let now = crate::markup::iso8601_utc(NOW_MS);
    assert!(
        text.text.contains(&format!("value=\"{now}\"")),
        "{}",
        text.text
    );
    assert_eq!(answer.expiry.map(|e| e.max_age_secs), Some(1));
    assert_eq!(answer.media, None);
}

#[test]
fn a_live_fragment_is_read_from_the_data_files_the_driver_supplied() {
    let channel = Channel::new("fragment");
    let snapshot = ChannelReader::new()
        .snapshot(Path::new(&channel.isml()), NOW_MS)
        .unwrap();
    let video = snapshot
        .tracks
        .iter()
        .find(|t| t.info.kind == crate::index::TrackKind::Video)
        .unwrap();
    let record = video.records.first_media().unwrap().unwrap();
    let url = format!(
        "/ch.isml/QualityLevels({})/Fragments({}={})",
        video.info.bitrate, video.info.name, record.start
    );
    let d = drive(&channel, &url, |_| false);
    assert!(d.opened.iter().any(|p| is_data_file(p)), "{:?}", d.opened);
    let answer = d.result.unwrap();
    let media = answer.media.unwrap();
    assert_eq!(media.payload, Payload::FromSource);
    assert_eq!(media.start, record.start);
    // Last-Modified: when the fragment was ingested; kept as long as the archive keeps it.
    assert_eq!(answer.modified, INGESTED_MS / 1000);
    assert!(answer.expiry.is_some());
    let mut body = Vec::new();
    crate::body::write_body(&answer.body, &mut body).unwrap();
    // The fragment's samples are the bytes the data file holds for its record.
    let data_path = snapshot.archive_dir.join(video.data_file(record.file_no));
    let data = std::fs::read(data_path).unwrap();
    let at = record.file_offset as usize;
    let stored = &data[at..at + record.size as usize];
    let mdat = stored.windows(4).position(|w| w == b"mdat").unwrap() + 4;
    let payload = &stored[mdat..];
    assert!(body.windows(payload.len()).any(|w| w == payload));
}

#[test]
fn a_data_file_the_driver_cannot_open_ends_the_request_with_its_error() {
    let channel = Channel::new("refused");
    let d = drive(&channel, "/ch.isml/.m3u8", is_data_file);
    assert!(
        matches!(&d.result, Err(Error::NotFound { path }) if is_data_file(path)),
        "{:?}",
        d.result.as_ref().err()
    );
}

#[test]
fn hls_marks_an_encoder_restart_and_counts_the_breaks_that_slid_out() {
    // The encoder starts, then crashes and starts again at 0 twice, a minute apart each.
    let channel = Channel::pushed(
        "restarts",
        Some(
            br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
        <meta name="archiving" content="true"/>
        <meta name="restart_on_encoder_reconnect" content="true"/></head><body/></smil>"#,
        ),
        &[
            INGESTED_MS - 180_000,
            INGESTED_MS - 120_000,
            INGESTED_MS - 60_000,
        ],
    );
    let master = drive(&channel, "/ch.isml/.m3u8", |_| false).result.unwrap();
    let Body::Text(master) = &master.body else {
        panic!("not a playlist")
    };
    let uri = master
        .text
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap()
        .to_string();
    let media = drive(&channel, &format!("/ch.isml/{uri}"), |_| false)
        .result
        .unwrap();
    let Body::Text(media) = &media.body else {
        panic!("not a playlist")
    };
    let text = &media.text;
    // The 30 s window holds the last timeline's two segments and, for three, the one before
    // the last break; the first break slid out.
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    let before = text.split("#EXT-X-DISCONTINUITY\n").next().unwrap();
    assert_eq!(before.matches("#EXTINF").count(), 1, "{text}");
    assert_eq!(text.matches("#EXTINF").count(), 3, "{text}");
    // DASH: a period per timeline, each numbered after its timeline, the later one starting
    // where its timeline does, with its media times offset to it.
    let mpd = drive(&channel, "/ch.isml/.mpd", |_| false).result.unwrap();
    let Body::Text(mpd) = &mpd.body else {
        panic!("not an MPD")
    };
    let mpd = &mpd.text;
    assert_eq!(mpd.matches("<Period ").count(), 2, "{mpd}");
    assert!(mpd.contains("<Period id=\"2\" start=\"PT0S\">"), "{mpd}");
    let second = &mpd[mpd.find("<Period id=\"3\" start=\"PT").expect(mpd)..];
    assert!(
        !second.starts_with("<Period id=\"3\" start=\"PT0S\""),
        "{mpd}"
    );
    assert!(second.contains("presentationTimeOffset=\""), "{mpd}");
    // The first period lists the one segment before the break in each track, as long as its
    // samples; the second the two after.
    let first = &mpd[..mpd.find("<Period id=\"3\"").unwrap()];
    assert_eq!(first.matches("<S ").count(), 2, "{mpd}");
    for d in first.split(" d=\"").skip(1) {
        let d: u64 = d.split('"').next().unwrap().parse().unwrap();
        assert!(d <= 21_000_000, "a segment runs into the gap: {mpd}");
    }
}

/// The text of a playlist answer.
fn text_of(answer: Answer) -> String {
    match answer.body {
        Body::Text(t) => t.text.clone(),
        _ => panic!("not a playlist"),
    }
}

/// Segments of 4 s from the fixture's 2-second fragments: each fragment is a chunk, and the
/// fixture's two make one segment that is still growing (no stream end).
fn low_latency_channel(name: &str) -> Channel {
    low_latency_channel_of(name, 4)
}

/// A low-latency channel declaring segments of `secs` seconds, pushed the fixture.
fn low_latency_channel_of(name: &str, secs: u32) -> Channel {
    let isml = format!(
        r#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
        <meta name="low_latency" content="true"/>
        <meta name="iss_minimum_fragment_length" content="{secs}"/></head><body/></smil>"#
    );
    Channel::pushed(name, Some(isml.as_bytes()), &[INGESTED_MS])
}

/// The URI (without query) of the video's fMP4 media playlist, from the channel's master.
fn video_playlist_uri(channel: &Channel) -> String {
    let master = text_of(
        drive(channel, "/ch.isml/.m3u8?hls_fmp4", |_| false)
            .result
            .unwrap(),
    );
    master
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("video"))
        .expect(&master)
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_low_latency_playlist_lists_the_growing_segment_by_its_parts_and_holds_reloads() {
    let channel = low_latency_channel("ll");
    let uri = video_playlist_uri(&channel);
    assert!(uri.starts_with("hls/"), "{uri}");
    let playlist = |query: &str| drive(&channel, &format!("/ch.isml/{uri}{query}"), |_| false);
    let text = text_of(playlist("").result.unwrap());
    assert!(text.contains("#EXT-X-VERSION:9\n"), "{text}");
    assert!(
        text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=24.0,PART-HOLD-BACK=6.000,HOLD-BACK=12.0\n"),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=2.000\n"),
        "{text}"
    );
    // The growing segment 1: two parts, the first independent, no EXTINF yet.
    let stem = uri.trim_start_matches("hls/").trim_end_matches(".m3u8");
    assert!(
        text.contains(&format!(
            "#EXT-X-PART:DURATION=2.000000,URI=\"{stem}-1.0.m4s\",INDEPENDENT=YES\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("URI=\"{stem}-1.1.m4s\"")), "{text}");
    assert!(!text.contains("#EXTINF"), "{text}");
    assert!(
        text.contains(&format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{stem}-1.2.m4s\"\n"
        )),
        "{text}"
    );
    // Another rendition is reported with its newest part.
    assert!(text.contains("#EXT-X-RENDITION-REPORT:URI=\""), "{text}");
    assert!(text.contains("LAST-MSN=1,LAST-PART="), "{text}");
    // The growing segment is not served whole.
    let whole = drive(&channel, &format!("/ch.isml/hls/{stem}-1.m4s"), |_| false);
    assert!(whole.result.is_err());
    // A part is a CMAF fragment of its chunk's samples.
    let part = drive(&channel, &format!("/ch.isml/hls/{stem}-1.1.m4s"), |_| false);
    let part = part.result.unwrap();
    assert_eq!(part.media.unwrap().start, 20_000_000);
    // What is there is answered at once; the next part and the whole segment are waited for;
    // two segments ahead is refused.
    assert!(playlist("?_HLS_msn=1&_HLS_part=1").result.is_ok());
    let held = playlist("?_HLS_msn=1&_HLS_part=2");
    let wait = held.held.expect("held");
    assert_eq!(wait.until_ms, NOW_MS + 3 * 4000);
    assert!(!wait.watch.is_empty());
    assert!(playlist("?_HLS_msn=1").held.is_some());
    let hint = drive(&channel, &format!("/ch.isml/hls/{stem}-1.2.m4s"), |_| false);
    assert!(hint.held.is_some());
    let Err(too_far) = playlist("?_HLS_msn=4").result else {
        panic!("answered")
    };
    assert_eq!(too_far.status(), 400);
    assert!(
        drive(&channel, &format!("/ch.isml/hls/{stem}-1.3.m4s"), |_| false)
            .held
            .is_none()
    );
    // Past its deadline, a held request is answered 503.
    let expired = drive_held_until(
        &channel,
        &format!("/ch.isml/{uri}?_HLS_msn=1&_HLS_part=2"),
        |_| false,
        Some(NOW_MS),
    );
    let Err(expired) = expired.result else {
        panic!("answered")
    };
    assert_eq!(expired.status(), 503);
    // Child URLs do not repeat the delivery directives.
    let text = text_of(playlist("?_HLS_msn=1&_HLS_part=0").result.unwrap());
    assert!(!text.contains("_HLS_"), "{text}");
    // Without low latency the growing segment is not listed at all (ts playlist).
    let ts = drive(&channel, "/ch.isml/.m3u8", |_| false).result.unwrap();
    assert!(!text_of(ts).contains("EXT-X-PART"));
}

/// The value of the first `<name>="…"` (`name` may start with its element, `<S t`) in the
/// MPD's video adaptation set.
fn video_attribute(mpd: &str, name: &str) -> String {
    mpd.split("contentType=\"video\"")
        .nth(1)
        .and_then(|video| video.split(&format!("{name}=\"")).nth(1))
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in the video set: {mpd}"))
        .to_string()
}

/// The top-level boxes of `bytes`, by type.
fn box_types(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        assert!(size >= 8, "a box of {size} bytes");
        at += size;
    }
    assert_eq!(at, bytes.len());
    out
}

#[test]
fn a_low_latency_mpd_streams_the_segment_being_produced_chunk_by_chunk() {
    let channel = low_latency_channel("lldash");
    let mpd = text_of(drive(&channel, "/ch.isml/.mpd", |_| false).result.unwrap());
    // The segment being produced is listed (4 s expected, 2 s chunks), available from its
    // start and read as it grows: every template's offset is the longest segment listed
    // (the audio's), which is also the MPD's maxSegmentDuration, so a player's live edge
    // is the wall clock's media time.
    assert!(
        mpd.contains(r#"availabilityTimeOffset="4.022" availabilityTimeComplete="false""#),
        "{mpd}"
    );
    assert_eq!(
        mpd.matches(r#"availabilityTimeOffset="4.022""#).count(),
        2,
        "{mpd}"
    );
    assert!(mpd.contains(r#"maxSegmentDuration="PT4.022S""#), "{mpd}");
    // Clocks are set by the origin's, timed (the MPD's own time second).
    let http = mpd
        .find(r#"<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-xsdate:2014" value="time"/>"#)
        .expect("the origin's clock");
    let direct = mpd
        .rfind("urn:mpeg:dash:utc:direct:2014")
        .expect("the MPD's time");
    assert!(http < direct, "{mpd}");
    // Read again every half chunk (of the longest, the audio's); three chunks and that
    // update period behind the live edge.
    assert!(mpd.contains(r#"minimumUpdatePeriod="PT1.051S""#), "{mpd}");
    assert!(
        mpd.contains(r#"<Latency referenceId="0" target="7357" min="2102""#),
        "{mpd}"
    );
    assert!(
        mpd.contains(r#"<PlaybackRate min="0.96" max="1.04"/>"#),
        "{mpd}"
    );
    assert!(
        mpd.contains(r#"<ProducerReferenceTime id="0" type="encoder" inband="true""#),
        "{mpd}"
    );
    let t: u64 = video_attribute(&mpd, "<S t").parse().expect(&mpd);
    assert!(
        mpd.split("contentType=\"video\"")
            .nth(1)
            .is_some_and(|video| video.contains(r#" d="40000000"/>"#)),
        "{mpd}"
    );
    let id = video_attribute(&mpd, "<Representation id");
    let url = format!("/ch.isml/dash/ch-{id}-{t}.dash");
    // Asked for while it grows: its two chunks so far, then held for the next one.
    let first = drive(&channel, &url, |_| false);
    let Ok(Answer {
        body: Body::Growing { bytes, next },
        ..
    }) = first.result
    else {
        panic!("not a growing answer")
    };
    assert_eq!(
        box_types(&bytes),
        ["styp", "prft", "moof", "mdat", "prft", "moof", "mdat"]
    );
    let next = next.expect("held for the next chunk");
    assert_eq!(next.until_ms, NOW_MS + 3 * 4000);
    // Woken with nothing new: held on to the same deadline, and nothing sent again.
    let again = drive_streamed(
        &channel,
        &url,
        |_| false,
        Some(next.until_ms),
        Some(bytes.len() as u64),
    );
    let Ok(Answer {
        body: Body::Growing { bytes: rest, next },
        ..
    }) = again.result
    else {
        panic!("not a growing answer")
    };
    assert!(rest.is_empty());
    assert_eq!(next.map(|n| n.until_ms), Some(NOW_MS + 3 * 4000));
    // Sent up to its first chunk: the rest follows, byte for byte what the first answer had.
    let prft = bytes.windows(4).rposition(|w| w == b"prft").unwrap() - 4;
    let resumed = drive_streamed(&channel, &url, |_| false, None, Some(prft as u64));
    let Ok(Answer {
        body: Body::Growing { bytes: rest, .. },
        ..
    }) = resumed.result
    else {
        panic!("not a growing answer")
    };
    assert_eq!(rest, bytes[prft..]);
    // At its deadline with no new chunk (the encoder stopped), the answer ends.
    let ended = drive_streamed(
        &channel,
        &url,
        |_| false,
        Some(NOW_MS),
        Some(bytes.len() as u64),
    );
    let Ok(Answer {
        body: Body::Growing { bytes: rest, next },
        ..
    }) = ended.result
    else {
        panic!("not a growing answer")
    };
    assert!(rest.is_empty() && next.is_none());
    // Without low latency, the same channel's MPD says nothing of it.
    let plain = Channel::pushed("plaindash", None, &[INGESTED_MS]);
    let mpd = text_of(drive(&plain, "/ch.isml/.mpd", |_| false).result.unwrap());
    assert!(!mpd.contains("availabilityTime"), "{mpd}");
    assert!(!mpd.contains("ServiceDescription"), "{mpd}");
}

#[test]
fn a_declared_segment_length_is_the_least_target_duration() {
    // The stream so far is one growing segment of 4 s; the channel declares 6 s segments.
    // The target is the declared length from the start, so it does not grow later (RFC 8216
    // forbids a changing EXT-X-TARGETDURATION).
    let channel = low_latency_channel_of("target", 6);
    let uri = video_playlist_uri(&channel);
    let text = text_of(
        drive(&channel, &format!("/ch.isml/{uri}"), |_| false)
            .result
            .unwrap(),
    );
    assert!(text.contains("#EXT-X-TARGETDURATION:6\n"), "{text}");
    // Held requests wait three of them.
    let held = drive(
        &channel,
        &format!("/ch.isml/{uri}?_HLS_msn=1&_HLS_part=2"),
        |_| false,
    );
    assert_eq!(held.held.expect("held").until_ms, NOW_MS + 3 * 6000);
}

#[test]
fn with_number_addressing_the_segment_after_the_newest_is_held_until_it_starts() {
    let channel = low_latency_channel("llnumber");
    let query = "?mpd_segment_template=number";
    let mpd = text_of(
        drive(&channel, &format!("/ch.isml/.mpd{query}"), |_| false)
            .result
            .unwrap(),
    );
    let first: u64 = video_attribute(&mpd, "startNumber").parse().expect(&mpd);
    let id = video_attribute(&mpd, "<Representation id");
    let url = |n: u64| format!("/ch.isml/dash/ch-{id}-{n}.dash{query}");
    // The newest segment (growing) streams; the one after it is waited for; two after, not.
    assert!(matches!(
        drive(&channel, &url(first), |_| false).result,
        Ok(Answer {
            body: Body::Growing { .. },
            ..
        })
    ));
    let held = drive(&channel, &url(first + 1), |_| false);
    assert_eq!(held.held.expect("held").until_ms, NOW_MS + 3 * 4000);
    assert!(drive(&channel, &url(first + 2), |_| false).held.is_none());
}
