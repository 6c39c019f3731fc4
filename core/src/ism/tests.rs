//! Unit tests of server manifests: parsing, writing, options, and malformed input.

use super::*;

/// As mp4split writes it (comment, namespace, params in its order).
const USP_EXAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<!--Created with Unified Streaming Platform (version=1.11.14)-->
<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
  <head>
    <meta name="clientManifestRelativePath" content="video.ismc" />
    <meta name="hls_client_manifest_version" content="4" />
  </head>
  <body>
    <switch>
      <video src="video-400k.ismv" systemBitrate="401000">
        <param name="trackID" value="1" valueType="data" />
        <param name="trackName" value="video" valueType="data" />
        <param name="timeScale" value="10000000" valueType="data" />
        <param name="trackType" value="video" valueType="data" />
        <param name="Subtype" value="AVC1" valueType="data" />
        <param name="MaxWidth" value="640" valueType="data" />
        <param name="MaxHeight" value="360" valueType="data" />
        <param name="FourCC" value="AVC1" valueType="data" />
        <param name="CodecPrivateData" value="000000016764001EACD940A02FF97011000003000100000300320F162D96000000000168EBECB22C" valueType="data" />
      </video>
      <audio src="audio.isma" systemBitrate="128000" systemLanguage="eng">
        <param name="trackID" value="2" valueType="data" />
        <param name="trackName" value="audio_eng" valueType="data" />
        <param name="timeScale" value="10000000" valueType="data" />
        <param name="trackType" value="audio" valueType="data" />
        <param name="Subtype" value="AACL" valueType="data" />
        <param name="FourCC" value="AACL" valueType="data" />
        <param name="AudioTag" value="255" valueType="data" />
        <param name="Channels" value="2" valueType="data" />
        <param name="SamplingRate" value="48000" valueType="data" />
        <param name="BitsPerSample" value="16" valueType="data" />
        <param name="PacketSize" value="4" valueType="data" />
        <param name="CodecPrivateData" value="1190" valueType="data" />
      </audio>
      <textstream src="subs.cmft" systemBitrate="1000" systemLanguage="eng">
        <param name="trackID" value="3" valueType="data" />
        <param name="trackName" value="textstream_eng" valueType="data" />
        <param name="timeScale" value="10000000" valueType="data" />
        <param name="trackType" value="textstream" valueType="data" />
        <param name="Subtype" value="TTML" valueType="data" />
        <param name="FourCC" value="TTML" valueType="data" />
      </textstream>
    </switch>
  </body>
</smil>
"#;

fn parse(xml: &str) -> Result<ServerManifest, IsmError> {
    ServerManifest::parse(xml.as_bytes())
}

fn params(pairs: &[(&str, &str)]) -> Vec<Param> {
    pairs
        .iter()
        .map(|&(name, value)| Param {
            name: name.to_owned(),
            value: value.to_owned(),
        })
        .collect()
}

/// A body of tracks wrapped into a whole document.
fn with_body(body: &str) -> String {
    format!("<smil><body><switch>{body}</switch></body></smil>")
}

fn with_head(head: &str) -> String {
    format!("<smil><head>{head}</head></smil>")
}

#[test]
fn parses_every_field_of_the_usp_example() {
    let m = parse(USP_EXAMPLE).unwrap();
    assert_eq!(
        m.metas,
        vec![
            Meta {
                name: "clientManifestRelativePath".into(),
                content: "video.ismc".into()
            },
            Meta {
                name: "hls_client_manifest_version".into(),
                content: "4".into()
            },
        ]
    );
    assert_eq!(m.tracks.len(), 3);
    assert!(!m.is_live_point());

    let video = &m.tracks[0];
    assert_eq!(video.kind, TrackKind::Video);
    assert_eq!(video.src, "video-400k.ismv");
    assert_eq!(video.system_bitrate, Some(401_000));
    assert_eq!(video.system_language, None);
    assert_eq!(
        video.params,
        params(&[
            ("trackID", "1"),
            ("trackName", "video"),
            ("timeScale", "10000000"),
            ("trackType", "video"),
            ("Subtype", "AVC1"),
            ("MaxWidth", "640"),
            ("MaxHeight", "360"),
            ("FourCC", "AVC1"),
            (
                "CodecPrivateData",
                "000000016764001EACD940A02FF97011000003000100000300320F162D96000000000168EBECB22C"
            ),
        ])
    );
    assert_eq!(video.track_id(), Some(1));
    assert_eq!(video.track_name(), Some("video"));

    let audio = &m.tracks[1];
    assert_eq!(audio.kind, TrackKind::Audio);
    assert_eq!(audio.src, "audio.isma");
    assert_eq!(audio.system_bitrate, Some(128_000));
    assert_eq!(audio.system_language.as_deref(), Some("eng"));
    assert_eq!(
        audio.params,
        params(&[
            ("trackID", "2"),
            ("trackName", "audio_eng"),
            ("timeScale", "10000000"),
            ("trackType", "audio"),
            ("Subtype", "AACL"),
            ("FourCC", "AACL"),
            ("AudioTag", "255"),
            ("Channels", "2"),
            ("SamplingRate", "48000"),
            ("BitsPerSample", "16"),
            ("PacketSize", "4"),
            ("CodecPrivateData", "1190"),
        ])
    );
    assert_eq!(audio.track_id(), Some(2));
    assert_eq!(audio.track_name(), Some("audio_eng"));

    let text = &m.tracks[2];
    assert_eq!(text.kind, TrackKind::Text);
    assert_eq!(text.src, "subs.cmft");
    assert_eq!(text.system_bitrate, Some(1000));
    assert_eq!(text.system_language.as_deref(), Some("eng"));
    assert_eq!(text.params.len(), 6);
    assert_eq!(text.param("fourcc"), Some("TTML"));
    assert_eq!(text.track_id(), Some(3));
    assert_eq!(text.track_name(), Some("textstream_eng"));
}

#[test]
fn writes_the_usp_example_in_the_same_layout() {
    let m = parse(USP_EXAMPLE).unwrap();
    let written = m.to_xml();
    // Only the generator comment differs from what mp4split writes.
    let expected = USP_EXAMPLE.replace(
        "<!--Created with Unified Streaming Platform (version=1.11.14)-->",
        "<!--Created with ngx-origin-->",
    );
    assert_eq!(written, expected);
}

#[test]
fn write_parse_write_is_byte_identical() {
    let m = parse(USP_EXAMPLE).unwrap();
    let first = m.to_xml();
    let reparsed = ServerManifest::parse(first.as_bytes()).unwrap();
    assert_eq!(reparsed, m);
    assert_eq!(reparsed.to_xml(), first);
}

#[test]
fn hostile_values_survive_a_round_trip() {
    let nasty = "a&b<c>d\"e'f\tg\nh\rij\u{7f}k\u{85}l é 日本 &amp; ]]> <!-- -->  x ";
    // Names and languages hold no control character; everything else may.
    let named = "a&b<c>d\"e'f é 日本 &amp; ]]> <!-- -->  x ";
    let mut track = TrackEntry::new(TrackKind::Audio, nasty);
    track.system_language = Some(named.to_owned());
    track.set_param(nasty, nasty);
    track.set_param("trackName", named);
    let mut m = ServerManifest {
        metas: Vec::new(),
        tracks: vec![track, TrackEntry::new(TrackKind::Video, "v.ismv")],
    };
    m.set_meta(nasty, nasty);
    m.set_meta("empty", "");
    let xml = m.to_xml();
    assert!(!xml.contains('\t') && !xml.contains('\r'));
    let reparsed = ServerManifest::parse(xml.as_bytes()).unwrap();
    assert_eq!(reparsed, m);
    assert_eq!(reparsed.to_xml(), xml);
}

#[test]
fn forbidden_controls_are_dropped_by_the_writer_and_refused_by_the_parser() {
    let mut m = ServerManifest::default();
    m.set_meta("a\0b", "c\0\u{1}\u{1f}");
    let reparsed = ServerManifest::parse(m.to_xml().as_bytes()).unwrap();
    assert_eq!(reparsed.meta("ab"), Some("c"));
    // Found by the ism_parser fuzz target: raw NUL inside an attribute value.
    let raw = b"<smil><head><meta name=\"a\0b\" content=\"x\"/></head></smil>";
    assert!(ServerManifest::parse(raw).is_err());
    xml_error("<smil><head><meta name=\"&#1;\"/></head></smil>");
}

#[test]
fn control_characters_in_names_and_languages_are_refused() {
    for (track, field, shown) in [
        (
            r#"<video src="v"><param name="trackName" value="a&#10;#EXT-X-INJECTED:1"/></video>"#,
            "trackName",
            "\\n",
        ),
        (
            r#"<video src="v"><param name="TRACKNAME" value="a&#133;"/></video>"#,
            "trackName",
            "\\u{85}",
        ),
        (
            r#"<audio src="a" systemLanguage="en&#13;g"/>"#,
            "systemLanguage",
            "\\r",
        ),
        (
            r#"<audio src="a" systemLanguage="en&#127;"/>"#,
            "systemLanguage",
            "\\u{7f}",
        ),
    ] {
        let err = parse(&with_body(track)).unwrap_err();
        assert!(
            matches!(&err, IsmError::BadName { error: NameError::ControlCharacter { field: f, .. }, .. } if *f == field),
            "{track}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(field) && text.contains(shown), "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    // Other params may hold them (as XML allows).
    parse(&with_body(
        r#"<video src="v"><param name="note" value="a&#10;b"/></video>"#,
    ))
    .unwrap();
}

#[test]
fn live_point_with_only_metas_round_trips() {
    let mut m = ServerManifest::default();
    m.set_meta("archiving", "true");
    m.set_meta("archive_segment_length", "60");
    m.set_meta("dvr_window_length", "30");
    m.set_meta("restart_on_encoder_reconnect", "");
    assert!(m.is_live_point());
    let xml = m.to_xml();
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <!--Created with ngx-origin-->\n\
         <smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\">\n\
         \x20 <head>\n\
         \x20   <meta name=\"archiving\" content=\"true\" />\n\
         \x20   <meta name=\"archive_segment_length\" content=\"60\" />\n\
         \x20   <meta name=\"dvr_window_length\" content=\"30\" />\n\
         \x20   <meta name=\"restart_on_encoder_reconnect\" content=\"\" />\n\
         \x20 </head>\n\
         \x20 <body>\n\
         \x20   <switch>\n\
         \x20   </switch>\n\
         \x20 </body>\n\
         </smil>\n"
    );
    let reparsed = ServerManifest::parse(xml.as_bytes()).unwrap();
    assert_eq!(reparsed, m);
    assert!(reparsed.is_live_point());
    assert_eq!(reparsed.to_xml(), xml);
}

#[test]
fn empty_manifest_round_trips() {
    let m = ServerManifest::default();
    assert_eq!(ServerManifest::parse(m.to_xml().as_bytes()).unwrap(), m);
    assert_eq!(parse("<smil/>").unwrap(), m);
    assert_eq!(parse("<smil><head/><body/></smil>").unwrap(), m);
}

#[test]
fn track_without_params_is_self_closing() {
    let m = ServerManifest {
        metas: Vec::new(),
        tracks: vec![TrackEntry::new(TrackKind::Text, "s.cmft")],
    };
    let xml = m.to_xml();
    assert!(xml.contains("      <textstream src=\"s.cmft\" />\n"));
    assert_eq!(ServerManifest::parse(xml.as_bytes()).unwrap(), m);
}

#[test]
fn accessors_are_case_insensitive_and_setters_replace_or_append() {
    let mut m = parse(USP_EXAMPLE).unwrap();
    assert_eq!(m.meta("HLS_Client_Manifest_Version"), Some("4"));
    assert_eq!(m.meta("nope"), None);
    m.set_meta("hls_client_manifest_version", "5");
    assert_eq!(m.metas.len(), 2);
    assert_eq!(m.meta("hls_client_manifest_version"), Some("5"));
    m.set_meta("mpd_segment_template", "time");
    assert_eq!(m.metas.len(), 3);
    assert_eq!(m.metas[2].name, "mpd_segment_template");

    let video = &mut m.tracks[0];
    assert_eq!(video.param("TimeScale"), Some("10000000"));
    assert_eq!(video.param("timescale"), Some("10000000"));
    video.set_param("TimeScale", "90000");
    assert_eq!(video.params[2].name, "timeScale", "existing spelling kept");
    assert_eq!(video.params[2].value, "90000");
    let count = video.params.len();
    video.set_param("Bitrate", "400000");
    assert_eq!(video.params.len(), count + 1);
    video.set_param("trackID", "x");
    assert_eq!(video.track_id(), None);
    video.set_param("trackID", "4294967296");
    assert_eq!(video.track_id(), None);
    video.set_param("trackID", "4294967295");
    assert_eq!(video.track_id(), Some(u32::MAX));
}

#[test]
fn accepts_what_other_writers_produce() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE smil>
<?some-pi data?>
<s:smil xmlns:s="http://www.w3.org/2001/SMIL20/Language">
  <s:head><s:meta name="a" /><s:meta content="ignored-unknown" name="b"></s:meta></s:head>
  <s:body>
    <s:switch>
      <!-- IIS spelling -->
      <s:video src="v.ismv" system-bitrate="1" clipBegin="npt=1">
        <s:param name="TimeScale" value="10000000" valuetype="data" />
        <s:param name="Custom" value="x" valueType="other" />
      </s:video>
      <par><audio src="hidden.isma"/></par>
      <switch><audio src="nested.isma"/></switch>
      <ref src="r.cmft"><param name="trackType" value="TEXT"/></ref>
      <text src="t.cmft"/>
    </s:switch>
    <audio src="direct.isma" systemBitrate="2"/>
  </s:body>
  <trailer>text &amp; more <video src="ignored"/></trailer>
</s:smil>
<!-- after -->
"#;
    let m = parse(xml).unwrap();
    assert_eq!(m.meta("a"), Some(""));
    assert_eq!(m.meta("b"), Some("ignored-unknown"));
    let srcs: Vec<_> = m.tracks.iter().map(|t| t.src.as_str()).collect();
    assert_eq!(
        srcs,
        ["v.ismv", "nested.isma", "r.cmft", "t.cmft", "direct.isma"]
    );
    assert_eq!(m.tracks[0].system_bitrate, Some(1));
    assert_eq!(
        m.tracks[0].params,
        params(&[("TimeScale", "10000000"), ("Custom", "x")])
    );
    assert_eq!(m.tracks[2].kind, TrackKind::Text);
    assert_eq!(m.tracks[3].kind, TrackKind::Text);
    assert_eq!(m.tracks[4].system_bitrate, Some(2));
}

#[test]
fn a_ref_needs_a_track_type() {
    let m = parse(&with_body(
        r#"<ref src="v.mp4"><param name="tracktype" value="Video"/></ref>"#,
    ))
    .unwrap();
    assert_eq!(m.tracks[0].kind, TrackKind::Video);
    // Written back as the element of its kind.
    assert!(m.to_xml().contains("<video src=\"v.mp4\">"));

    for body in [
        r#"<ref src="v.mp4"/>"#,
        r#"<ref src="v.mp4"><param name="trackType" value="data"/></ref>"#,
    ] {
        match parse(&with_body(body)) {
            Err(IsmError::BadValue {
                element: "ref",
                attribute: "trackType",
                ..
            }) => {}
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn utf8_bom_is_skipped_and_positions_count_it() {
    let mut xml = b"\xEF\xBB\xBF".to_vec();
    xml.extend_from_slice(b"<smil><body><video/></body></smil>");
    match ServerManifest::parse(&xml) {
        Err(IsmError::MissingAttribute {
            element: "video",
            attribute: "src",
            position,
        }) => assert_eq!(position, 15),
        other => panic!("{other:?}"),
    }
    let mut ok = b"\xEF\xBB\xBF".to_vec();
    ok.extend_from_slice(USP_EXAMPLE.as_bytes());
    assert_eq!(ok.len(), USP_EXAMPLE.len() + 3);
    assert_eq!(
        ServerManifest::parse(&ok).unwrap(),
        parse(USP_EXAMPLE).unwrap()
    );
}

// --- malformed input ---------------------------------------------------------------------

fn xml_error(xml: &str) -> (u64, String) {
    match parse(xml) {
        Err(IsmError::Xml { position, message }) => (position, message),
        other => panic!("{xml}: expected an XML error, got {other:?}"),
    }
}

#[test]
fn unclosed_and_mismatched_tags_are_xml_errors() {
    let (position, message) = xml_error("<smil><body><switch>");
    assert_eq!(position, 20);
    assert!(message.contains("<switch>"), "{message}");
    assert!(message.contains("byte 12"), "{message}");
    xml_error("<smil><body></switch></smil>");
    xml_error("<smil><body><video src=\"a\"");
    xml_error("<smil><body><video src=\"a></body></smil>");
    xml_error("<smil></smil><smil></smil>");
    xml_error("<smil><head><meta name=\"a\" name=\"b\"/></head></smil>");
    xml_error("<smil><head><meta name=\"&bogus;\"/></head></smil>");
    xml_error("<smil><head><meta name=\"&#0;\"/></head></smil>");
    xml_error("<smil><!-- unterminated </smil>");
}

#[test]
fn wrong_root_is_not_smil() {
    for (xml, found) in [
        ("<html><body/></html>", "html"),
        (
            "<?xml version=\"1.0\"?><SmoothStreamingMedia/>",
            "SmoothStreamingMedia",
        ),
        ("", ""),
        ("   ", ""),
        ("<!-- just a comment -->", ""),
        ("plain text", ""),
    ] {
        assert_eq!(
            parse(xml),
            Err(IsmError::NotSmil {
                found: found.into()
            }),
            "{xml}"
        );
    }
}

#[test]
fn missing_attributes_name_the_element_and_position() {
    assert_eq!(
        parse(&with_body(r#"<audio systemBitrate="1"/>"#)),
        Err(IsmError::MissingAttribute {
            element: "audio",
            attribute: "src",
            position: 20,
        })
    );
    assert_eq!(
        parse(&with_body("\n  <textstream>\n</textstream>")),
        Err(IsmError::MissingAttribute {
            element: "textstream",
            attribute: "src",
            position: 23,
        })
    );
    assert_eq!(
        parse(&with_head(r#"<meta content="x"/>"#)),
        Err(IsmError::MissingAttribute {
            element: "meta",
            attribute: "name",
            position: 12,
        })
    );
    assert_eq!(
        parse(&with_body(r#"<video src="v"><param value="1"/></video>"#)),
        Err(IsmError::MissingAttribute {
            element: "param",
            attribute: "name",
            position: 35,
        })
    );
    match parse(&with_body(r#"<video src=""/>"#)) {
        Err(IsmError::BadValue {
            element: "video",
            attribute: "src",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_system_bitrate_is_refused() {
    for value in ["", "-5", "+5", "12k", " 1", "1.5", "18446744073709551616"] {
        let xml = with_body(&format!(r#"<video src="v" systemBitrate="{value}"/>"#));
        match parse(&xml) {
            Err(IsmError::BadValue {
                element: "video",
                attribute: "systemBitrate",
                value: v,
                position: 20,
                ..
            }) => assert_eq!(v, value),
            other => panic!("{value}: {other:?}"),
        }
    }
    let xml = with_body(r#"<video src="v" systemBitrate="18446744073709551615"/>"#);
    assert_eq!(
        parse(&xml).unwrap().tracks[0].system_bitrate,
        Some(u64::MAX)
    );
}

#[test]
fn non_utf8_is_refused_with_its_position() {
    let mut xml = b"<smil><head><meta name=\"".to_vec();
    xml.push(0xFF);
    xml.extend_from_slice(b"\"/></head></smil>");
    assert_eq!(
        ServerManifest::parse(&xml),
        Err(IsmError::NotUtf8 { position: 24 })
    );
    // UTF-16 with a BOM is not UTF-8 either.
    assert_eq!(
        ServerManifest::parse(b"\xFF\xFE<\0s\0"),
        Err(IsmError::NotUtf8 { position: 0 })
    );
}

#[test]
fn limits_are_enforced() {
    let too_big = format!("<smil><!--{}--></smil>", "x".repeat(5 * 1024 * 1024));
    assert_eq!(
        parse(&too_big),
        Err(IsmError::TooLarge {
            what: "bytes of input",
            limit: MAX_MANIFEST_BYTES as u64
        })
    );

    let tracks = with_body(&r#"<video src="v"/>"#.repeat(2000));
    assert!(matches!(
        parse(&tracks),
        Err(IsmError::TooLarge { limit: 1024, .. })
    ));
    let exactly = with_body(&r#"<video src="v"/>"#.repeat(MAX_TRACKS));
    assert_eq!(parse(&exactly).unwrap().tracks.len(), MAX_TRACKS);

    let many_params = with_body(&format!(
        r#"<video src="v">{}</video>"#,
        r#"<param name="a" value="b"/>"#.repeat(MAX_PARAMS_PER_TRACK + 1)
    ));
    assert!(matches!(
        parse(&many_params),
        Err(IsmError::TooLarge { limit: 256, .. })
    ));

    let many_metas = with_head(&r#"<meta name="a"/>"#.repeat(MAX_METAS + 1));
    assert!(matches!(
        parse(&many_metas),
        Err(IsmError::TooLarge { limit: 1024, .. })
    ));

    let long_value = with_head(&format!(
        r#"<meta name="a" content="{}"/>"#,
        "x".repeat(MAX_ATTRIBUTE_BYTES + 1)
    ));
    assert!(matches!(
        parse(&long_value),
        Err(IsmError::TooLarge { limit: 65536, .. })
    ));
    let max_value = with_head(&format!(
        r#"<meta name="a" content="{}"/>"#,
        "x".repeat(MAX_ATTRIBUTE_BYTES)
    ));
    assert_eq!(
        parse(&max_value).unwrap().meta("a").map(str::len),
        Some(MAX_ATTRIBUTE_BYTES)
    );
}

fn nested(depth: usize, empty_leaf: bool) -> String {
    // smil counts as one level.
    let inner = depth - 1;
    let mut xml = String::from("<smil>");
    xml.push_str(&"<x>".repeat(inner - usize::from(empty_leaf)));
    if empty_leaf {
        xml.push_str("<x/>");
    }
    xml.push_str(&"</x>".repeat(inner - usize::from(empty_leaf)));
    xml.push_str("</smil>");
    xml
}

#[test]
fn nesting_depth_is_capped() {
    assert!(parse(&nested(MAX_DEPTH, false)).is_ok());
    assert!(parse(&nested(MAX_DEPTH, true)).is_ok());
    for empty_leaf in [false, true] {
        assert_eq!(
            parse(&nested(MAX_DEPTH + 1, empty_leaf)),
            Err(IsmError::TooLarge {
                what: "levels of element nesting",
                limit: MAX_DEPTH as u64
            })
        );
    }
    // Deep enough to blow a recursive parser's stack; must be a plain error here.
    let deep = format!("<smil>{}", "<x>".repeat(100_000));
    assert!(matches!(parse(&deep), Err(IsmError::TooLarge { .. })));
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    // Non-ASCII content so some cuts land inside a UTF-8 sequence.
    let mut m = parse(USP_EXAMPLE).unwrap();
    m.set_meta("title", "Übersicht & <日本>");
    let xml = m.to_xml();
    let end_of_root = xml.find("</smil>").unwrap() + "</smil>".len();
    for cut in 0..xml.len() {
        let result = ServerManifest::parse(&xml.as_bytes()[..cut]);
        if cut < end_of_root {
            assert!(result.is_err(), "cut at {cut} parsed: {result:?}");
        } else {
            assert_eq!(result.as_ref(), Ok(&m), "cut at {cut}");
        }
    }
}

#[test]
fn arbitrary_byte_corruption_never_panics() {
    let xml = USP_EXAMPLE.as_bytes();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut doc = xml.to_vec();
        let at = (state % doc.len() as u64) as usize;
        doc[at] = (state >> 32) as u8;
        let _ = ServerManifest::parse(&doc);
    }
}

// --- sources ---------------------------------------------------------------------------

fn refused(src: &str) -> &'static str {
    match resolve_src(src) {
        Err(IsmError::BadSrc { src: s, reason }) => {
            assert_eq!(s, src);
            reason
        }
        other => panic!("{src:?} accepted: {other:?}"),
    }
}

#[test]
fn relative_sources_stay_inside_the_tree() {
    for ok in [
        "video.ismv",
        "a/b/c.ismv",
        "%2e%2e/x.ismv",
        "..x/y..",
        ".hidden.mp4",
        "with space.mp4",
        "file:name.mp4",
        "日本.mp4",
    ] {
        assert_eq!(resolve_src(ok), Ok(SourceRef::Relative(ok.into())), "{ok}");
    }
    for climbing in ["../x", "a/../../b", "a/./b", "../../shared/audio/eng.mp4"] {
        assert_eq!(
            resolve_src(climbing),
            Ok(SourceRef::Relative(climbing.into())),
            "{climbing}"
        );
        assert!(climbs(climbing) || climbing == "a/./b");
    }
    for bad in [
        "",
        "..",
        ".",
        "a/..",
        "a/.",
        "/etc/passwd",
        "/",
        "a\\b",
        "..\\x",
        "a//b",
        "a/",
        "a\0b",
        "a\nb",
        "a\u{7f}b",
        "file:///etc/passwd",
        "ftp://host/x",
    ] {
        refused(bad);
    }
    assert!(refused("a/..").contains("directory"));
    assert!(refused("/etc/passwd").contains("absolute"));
}

#[test]
fn url_sources_are_checked_lightly() {
    for ok in [
        "http://origin.example/v.ismv",
        "HTTPS://origin.example:8443/a/v.ismv?sig=1",
        "https://user@[::1]:8080/v.mp4",
        "http://host",
    ] {
        assert_eq!(resolve_src(ok), Ok(SourceRef::Http(ok.into())), "{ok}");
    }
    assert_eq!(
        resolve_src("s3://bucket/key/v.ismv"),
        Ok(SourceRef::S3("s3://bucket/key/v.ismv".into()))
    );
    for bad in [
        "http://",
        "https:///path",
        "http://:80/x",
        "http://user@/x",
        "http://host/a b",
        "http://host/a\tb",
        "s3://",
        "s3:///key",
        "http://[]/x",
    ] {
        refused(bad);
    }
}

#[test]
fn joins_relative_sources_to_the_manifest_directory() {
    let join = |m, r| join_relative(m, r).unwrap();
    assert_eq!(join("/a/b/v.ism", "x/y.ismv"), "/a/b/x/y.ismv");
    assert_eq!(join("/v.ism", "y.ismv"), "/y.ismv");
    assert_eq!(join("v.ism", "y.ismv"), "y.ismv");
    assert_eq!(join("/a/b/", "y.ismv"), "/a/b/y.ismv");
    assert_eq!(join("/a/b/v.ism", "../x/y.ismv"), "/a/x/y.ismv");
    assert_eq!(join("/a/b/v.ism", "./../../y.ismv"), "/y.ismv");
    assert_eq!(join("/a/b/v.ism", "c/../../d/./y.ismv"), "/a/d/y.ismv");
    assert_eq!(join_relative("/a/v.ism", "../../y.ismv"), None);
    assert_eq!(join_relative("v.ism", "../y.ismv"), None);
    assert!(is_within("/srv/media/a/y.mp4", "/srv/media"));
    assert!(is_within("/srv/media/a/y.mp4", "/srv/media/"));
    assert!(!is_within("/srv/media2/y.mp4", "/srv/media"));
    assert!(!is_within("/srv/y.mp4", "/srv/media"));
    assert!(!is_within("/srv/media", "/srv/media"));
}

// --- options ---------------------------------------------------------------------------

fn with_metas(pairs: &[(&str, &str)]) -> ServerManifest {
    let mut m = ServerManifest::default();
    for &(name, content) in pairs {
        m.metas.push(Meta {
            name: name.into(),
            content: content.into(),
        });
    }
    m
}

#[test]
fn options_are_typed() {
    let m = with_metas(&[
        ("hls_client_manifest_version", "4"),
        ("hls_fmp4", ""),
        ("mpd_segment_template", "time"),
        ("dvr_window_length", "30"),
        ("archive_length", "3600"),
        ("archiving", "TRUE"),
        ("archive_segment_length", "60"),
        ("restart_on_encoder_reconnect", "0"),
        ("low_latency", "true"),
        ("timed_metadata", "false"),
        ("splice_media", "1"),
        ("mpd_events", "Both"),
        ("mpd_splice_periods", "true"),
        ("hls_ad_markers", "CUE_OUT"),
        ("hls_minimum_fragment_length", "48/25"),
        ("mpd_minimum_fragment_length", "4"),
        ("_minimum_fragment_length", "bogus but unnamed"),
        ("unrelated", "whatever"),
    ]);
    let o = m.options().unwrap();
    assert_eq!(
        o,
        PresentationOptions {
            hls_client_manifest_version: Some(4),
            hls_fmp4: Some(true),
            mpd_segment_template: Some(crate::url::MpdSegmentTemplate::Time),
            dvr_window_length: Some(30),
            archive_length: Some(3600),
            archiving: Some(true),
            archive_segment_length: Some(60),
            restart_on_encoder_reconnect: Some(false),
            time_shift: None,
            mpd_min_buffer_time: None,
            mpd_suggested_presentation_delay: None,
            low_latency: Some(true),
            timed_metadata: Some(false),
            splice_media: Some(true),
            mpd_events: Some(crate::ism::MpdEvents::Both),
            mpd_splice_periods: Some(true),
            hls_ad_markers: Some(crate::ism::HlsAdMarkers::CueOut),
            minimum_fragment_lengths: vec![
                (
                    "hls".into(),
                    FragmentLength {
                        numerator: 48,
                        denominator: 25
                    }
                ),
                (
                    "mpd".into(),
                    FragmentLength {
                        numerator: 4,
                        denominator: 1
                    }
                ),
            ],
        }
    );
    assert!((o.minimum_fragment_lengths[0].1.as_secs_f64() - 1.92).abs() < 1e-9);
    assert_eq!(
        ServerManifest::default().options().unwrap(),
        PresentationOptions::default()
    );
    let flags = with_metas(&[
        ("hls_fmp4", "true"),
        ("archiving", "1"),
        ("restart_on_encoder_reconnect", "False"),
    ])
    .options()
    .unwrap();
    assert_eq!(flags.hls_fmp4, Some(true));
    assert_eq!(flags.archiving, Some(true));
    assert_eq!(flags.restart_on_encoder_reconnect, Some(false));
}

#[test]
fn bad_option_values_name_the_meta_and_value() {
    for (name, value) in [
        ("hls_client_manifest_version", "four"),
        ("hls_client_manifest_version", "4294967296"),
        ("hls_client_manifest_version", "-1"),
        ("dvr_window_length", "30s"),
        ("archive_length", "1.5"),
        ("archive_segment_length", ""),
        ("archiving", "yes"),
        ("hls_fmp4", "on"),
        ("restart_on_encoder_reconnect", "2"),
        ("hls_minimum_fragment_length", "48/0"),
        ("iss_minimum_fragment_length", "1/2/3"),
        ("mpd_minimum_fragment_length", "2.5"),
    ] {
        let err = with_metas(&[(name, value)]).options().unwrap_err();
        match &err {
            IsmError::BadMeta {
                name: n, value: v, ..
            } => {
                assert_eq!((n.as_str(), v.as_str()), (name, value));
            }
            other => panic!("{name}={value}: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(name) && text.contains(value), "{text}");
    }
}

#[test]
fn error_messages_are_specific() {
    let err = parse(&with_body(r#"<video src="v" systemBitrate="fast"/>"#)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server manifest: <video> at byte 20: invalid systemBitrate: it must be a non-negative \
         decimal integer, got \"fast\""
    );
    // The reason comes first and a long value is cut, so a log line's limit keeps the reason.
    let long = "9".repeat(5000) + "x";
    let err = parse(&with_body(&format!(
        r#"<video src="v" systemBitrate="{long}"/>"#
    )))
    .unwrap_err()
    .to_string();
    assert!(err.len() < 200 && err.contains("decimal integer") && err.ends_with("…\""));
    let err = resolve_src("a//x").unwrap_err();
    assert!(err.to_string().contains("\"a//x\""));
}

#[test]
fn param_groups_hold_drm_options_and_round_trip() {
    let m = parse(&with_head(
        r#"<meta name="hls_playout" content="sample_aes" />
        <paramGroup id="hls">
          <meta name="key" content=":8275665585FBC4C95EC59FA8B925ED0F" />
          <meta name="license_server_url" content="skd://key" />
        </paramGroup>
        <paramGroup id="iss"><meta name="key" content="00:11" /></paramGroup>"#,
    ))
    .unwrap();
    let names: Vec<&str> = m.metas.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hls_playout",
            "hls.key",
            "hls.license_server_url",
            "iss.key"
        ]
    );
    let xml = m.to_xml();
    assert!(xml.contains("<paramGroup id=\"hls\">"), "{xml}");
    assert_eq!(ServerManifest::parse(xml.as_bytes()).unwrap(), m);
    // A paramGroup needs its id.
    assert!(parse(&with_head(
        "<paramGroup><meta name=\"key\" content=\"x\"/></paramGroup>"
    ))
    .is_err());
}

#[test]
fn metas_keep_their_order_around_param_groups() {
    // Found by the ism_parser fuzz target: a group's metas written together moved them.
    let m = parse(&with_head(
        r#"<meta name="a" content="1"/><paramGroup id="g"><meta name="x" content="2"/></paramGroup>
        <meta name="b" content="3"/><paramGroup id="g"><meta name="y" content="4"/></paramGroup>"#,
    ))
    .unwrap();
    let xml = m.to_xml();
    assert_eq!(ServerManifest::parse(xml.as_bytes()).unwrap(), m);
    assert_eq!(xml.matches("<paramGroup").count(), 2);
}
