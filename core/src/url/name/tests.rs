//! Unit tests of track names in URLs: encoding, decoding, and their round trips.

use super::*;
use crate::markup::xml_escape;
use crate::package::fixtures::ladder_named;
use crate::package::{dash, hls, mss};
use crate::presentation::{Presentation, PresentationError};
use crate::url::{DashTarget, HlsTarget, Route, RouteOptions, SmoothTarget, Target, TrackRef};

/// What nginx does to a request path before the router sees it (`r->uri`): every `%XX`
/// decoded, once.
fn nginx_decode(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |k: usize| b.get(i + k).and_then(|&h| char::from(h).to_digit(16));
        match (b[i], hex(1), hex(2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Encoded, sent, decoded by nginx, decoded by the router.
fn round_trip(name: &str) -> Result<String, NameError> {
    let sent = encode_name(name);
    let seen = String::from_utf8(nginx_decode(&sent)).expect("nginx's decode stays UTF-8");
    decode_name(&seen)
}

#[test]
fn unreserved_names_are_their_own_url_text() {
    for name in ["video", "audio_eng", "textstream_eng", "a-b.c~d_e", "V1"] {
        assert!(matches!(encode_name(name), Cow::Borrowed(n) if n == name));
        assert_eq!(decode_name(name).unwrap(), name);
    }
}

#[test]
fn other_bytes_are_encoded_twice() {
    assert_eq!(encode_name("a/b"), "a%252Fb");
    assert_eq!(encode_name("x\"y"), "x%2522y");
    assert_eq!(encode_name("p%q"), "p%2525q");
    assert_eq!(encode_name("sp ace"), "sp%2520ace");
    assert_eq!(encode_name("é"), "%25C3%25A9");
    assert_eq!(encode_name("v=1"), "v%253D1");
    // What the router sees after nginx's decode, and what it makes of it.
    assert_eq!(nginx_decode("a%252Fb"), b"a%2Fb");
    assert_eq!(decode_name("a%2Fb").unwrap(), "a/b");
    assert_eq!(decode_name("%c3%a9").unwrap(), "é");
    for name in [
        "a/b", "x\"y", "p%q", "sp ace", "é", "v=1", "-", "a-b", "%25", "日本",
    ] {
        assert_eq!(round_trip(name).unwrap(), name);
    }
}

#[test]
fn bad_url_text_is_refused() {
    for bad in ["%", "a%2", "%zz", "%2g", "%%41"] {
        assert!(
            matches!(decode_name(bad), Err(NameError::BadEscape(_))),
            "{bad}"
        );
    }
    assert!(matches!(decode_name("%ff"), Err(NameError::NotUtf8(_))));
    assert!(matches!(decode_name("%C3"), Err(NameError::NotUtf8(_))));
    for control in ["%0A", "a%0Db", "%00", "%7F", "%C2%85"] {
        assert!(
            matches!(
                decode_name(control),
                Err(NameError::ControlCharacter { .. })
            ),
            "{control}"
        );
    }
}

#[test]
fn round_trip_over_many_byte_strings() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Names are text: take the byte string as UTF-8, repairing what is not.
        let name = String::from_utf8_lossy(&bytes).into_owned();
        let sent = encode_name(&name);
        assert!(
            sent.bytes().all(|b| is_unreserved(b) || b == b'%'),
            "{sent}"
        );
        let seen = nginx_decode(&sent);
        // After nginx's decode nothing splits a path or a variant name.
        assert!(
            !seen
                .iter()
                .any(|b| b"/=()?#,\"\\ ".contains(b) || b.is_ascii_control()),
            "{name:?} → {seen:?}"
        );
        match (check_name("trackName", &name), round_trip(&name)) {
            (Ok(()), Ok(back)) => assert_eq!(back, name),
            (Err(_), Err(NameError::ControlCharacter { .. })) => {}
            other => panic!("{name:?}: {other:?}"),
        }
    }
}

#[test]
fn control_characters_are_refused_and_shown_escaped() {
    for (value, shown) in [
        ("a\nb", "\\n"),
        ("\r", "\\r"),
        ("\0", "\\0"),
        ("x\u{7f}", "\\u{7f}"),
        ("\u{85}", "\\u{85}"),
        ("\u{9f}y", "\\u{9f}"),
        ("\u{1b}[31m", "\\u{1b}"),
    ] {
        let err = check_name("trackName", value).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("trackName") && text.contains(shown), "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    for ok in ["video", "é", "日本", "\u{a0}", "a b", "\u{2028}"] {
        check_name("trackName", ok).unwrap();
    }
}

// --- what the manifests write, as the router reads it back -----------------------------------

/// The presentation's name, as the server manifest's file stem: hostile too.
const PRESENTATION: &str = "my-pres é";

/// Names for video ×3, audio ×2 and text.
const HOSTILE: [&str; 6] = ["a/b", "x\"y", "p%q", "sp ace", "é", "v=1"];

fn hostile() -> Presentation {
    ladder_named(HOSTILE).expect("hostile names but no control character")
}

/// Routes a URL a manifest lists (relative to `dir` under the presentation), after nginx's one
/// decode.
fn route(dir: &str, url: &str) -> Target {
    let path = format!("/v/{PRESENTATION}.ism/{dir}{url}");
    let uri = nginx_decode(&path);
    match Route::parse(&uri, b"", RouteOptions::default()) {
        Ok(r) => {
            assert_eq!(r.manifest_path, format!("/v/{PRESENTATION}.ism"));
            r.target
        }
        Err(e) => panic!("{path}: {e}"),
    }
}

fn attributes<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    xml.split(key.as_str())
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn hls_opts(fmp4: bool, version: u32) -> hls::HlsOptions {
    hls::HlsOptions {
        target: crate::package::DEFAULT_SEGMENT_LENGTH,
        name: PRESENTATION.into(),
        fmp4,
        version,
        query: String::new(),
        key: None,
        skip: false,
        ad_markers: Default::default(),
    }
}

fn tracks_of<'p>(p: &'p Presentation, refs: &[TrackRef]) -> Vec<&'p str> {
    refs.iter()
        .map(|r| p.find(r).map(|t| t.name.as_str()).unwrap_or("<none>"))
        .collect()
}

#[test]
fn a_newline_in_a_name_is_refused() {
    let mut names = HOSTILE;
    names[3] = "eng\n#EXT-X-INJECTED:1";
    match ladder_named(names) {
        Err(PresentationError::Name(NameError::ControlCharacter {
            field, character, ..
        })) => {
            assert_eq!((field, character), ("trackName", '\n'));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hls_urls_with_hostile_names_resolve_to_their_tracks() {
    let p = hostile();
    for (fmp4, version) in [(false, 3), (false, 4), (true, 4)] {
        let master = hls::master(&p, &hls_opts(fmp4, version)).unwrap();
        assert!(!master.contains("INJECTED"));
        let mut playlists = 0;
        for line in master.lines() {
            let uri = match line.split_once("URI=\"") {
                Some((_, rest)) => rest.split('"').next().unwrap_or_default(),
                None if !line.starts_with('#') && !line.is_empty() => line,
                None => continue,
            };
            let Target::Hls(HlsTarget::Playlist { variant, kind, .. }) = route("", uri) else {
                panic!("{uri}: not a playlist");
            };
            let named = tracks_of(&p, &variant.tracks);
            assert!(!named.contains(&"<none>"), "{uri}: {named:?}");
            let text = match kind {
                crate::url::HlsPlaylist::IFrames => {
                    hls::iframe_playlist(&p, &variant, &hls_opts(fmp4, version), &mut |_, _| Ok(1))
                }
                crate::url::HlsPlaylist::Media if fmp4 => {
                    hls::media_playlist(&p, &variant, &hls_opts(true, version))
                }
                crate::url::HlsPlaylist::Media => {
                    hls::ts_playlist(&p, &variant, &hls_opts(false, version))
                }
            }
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
            playlists += 1;
            // Each segment URL names the playlist's tracks again.
            let dir = uri.rsplit_once('/').map_or("", |(d, _)| d);
            for seg in text.lines().filter(|l| !l.starts_with('#')) {
                let seg_dir = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                let (seg_dir, seg) = match seg.strip_prefix("../") {
                    Some(rest) => (String::new(), rest),
                    None => (seg_dir, seg),
                };
                let seg_variant = match route(&seg_dir, seg) {
                    Target::Hls(HlsTarget::Segment { variant, .. }) => variant,
                    other => panic!("{seg}: {other:?}"),
                };
                assert_eq!(tracks_of(&p, &seg_variant.tracks), named, "{seg}");
            }
        }
        assert!(playlists >= 4, "{playlists}");
    }
    // The names a player shows stay as written, but for `"` (RFC 8216 §4.2).
    let master = hls::master(&p, &hls_opts(false, 4)).unwrap();
    assert!(master.contains("URI=\"my-pres%2520%25C3%25A9-sp%2520ace=128000.m3u8\""));
    assert!(master.contains("my-pres%2520%25C3%25A9-a%252Fb=165000.m3u8"));
}

#[test]
fn dash_urls_with_hostile_names_resolve_to_their_tracks() {
    let p = hostile();
    for template in [
        crate::url::MpdSegmentTemplate::Time,
        crate::url::MpdSegmentTemplate::Number,
    ] {
        let mpd = dash::mpd(
            &p,
            &dash::DashOptions {
                template,
                target: crate::package::DEFAULT_SEGMENT_LENGTH,
                name: PRESENTATION.into(),
                query: String::new(),
                min_buffer_time: None,
                presentation_delay: None,
                protection: None,
                events: Default::default(),
                splice_periods: false,
            },
        );
        let ids = attributes(&mpd, "id");
        let inits = attributes(&mpd, "initialization");
        let media = attributes(&mpd, "media");
        assert!(!inits.is_empty() && inits.len() == media.len());
        let mut resolved = Vec::new();
        for id in ids.iter().map(|id| xml_unescape(id)) {
            // Representation ids are `<name>=<bitrate>`; adaptation set and period ids are
            // numbers.
            if !id.contains('=') {
                continue;
            }
            let init = xml_unescape(inits[0]).replace("$RepresentationID$", &id);
            let seg = xml_unescape(media[0])
                .replace("$RepresentationID$", &id)
                .replace("$Time$", "0")
                .replace("$Number$", "1");
            let Target::Dash(DashTarget::Init { track }) = route("dash/", &init) else {
                panic!("{init}");
            };
            let Target::Dash(DashTarget::Media { track: again, .. }) = route("dash/", &seg) else {
                panic!("{seg}");
            };
            assert_eq!(track, again);
            let t = dash::find_track(&p, &track).unwrap_or_else(|e| panic!("{init}: {e}"));
            assert_eq!(t.url_id(), id);
            resolved.push(t.name.clone());
        }
        resolved.sort();
        let mut expected: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(resolved, expected);
    }
}

#[test]
fn smooth_urls_with_hostile_names_resolve_to_their_tracks() {
    let p = hostile();
    let manifest =
        mss::manifest(&p, crate::package::DEFAULT_SEGMENT_LENGTH, false, "", None).unwrap();
    // Names are XML-escaped where the manifest shows them.
    assert!(manifest.contains(&format!("Name=\"{}\"", xml_escape("x\"y"))));
    let mut resolved = Vec::new();
    for line in manifest.lines().filter(|l| l.contains("<StreamIndex")) {
        let url = xml_unescape(attributes(line, "Url")[0]);
        let name = xml_unescape(attributes(line, "Name")[0]);
        let t = p.tracks.iter().find(|t| t.name == name).unwrap();
        let url = url
            .replace("{bitrate}", &t.bitrate.to_string())
            .replace("{start time}", "0");
        let Target::Smooth(SmoothTarget::Fragment { bitrate, track, .. }) = route("", &url) else {
            panic!("{url}");
        };
        let (found, _) = mss::fragment(
            &p,
            bitrate,
            &track,
            0,
            crate::package::DEFAULT_SEGMENT_LENGTH,
            false,
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(std::ptr::eq(found, t), "{url}");
        resolved.push(track);
    }
    resolved.sort();
    let mut expected: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(resolved, expected);
}
