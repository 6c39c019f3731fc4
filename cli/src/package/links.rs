//! The URLs a player fetches from each manifest the origin writes: DASH `SegmentTemplate`s
//! expanded over their `SegmentTimeline` (or `@duration`), HLS playlist lines and `URI="…"`
//! attributes, Smooth `Url` templates over each `QualityLevel` and chunk, and HDS media URLs
//! over the fragments their bootstrap lists. References are returned as the manifest writes
//! them (relative to the manifest's URL): [`resolve`] makes them request paths.

use base64::Engine as _;
use origin_core::package::hds::{Bootstrap, FragmentRun};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Most segments one representation may list: a bound against a manifest that would make a
/// tree no disk holds (a day of 1-second segments is 86,400).
const MAX_SEGMENTS: u64 = 1 << 20;

/// An XML element with what the link finders need: attributes (unescaped), text and children.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn start(e: &BytesStart<'_>) -> Result<Element, String> {
    let mut element = Element {
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        ..Element::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("XML attribute: {err}"))?;
        let value = attr
            .unescape_value()
            .map_err(|err| format!("XML attribute: {err}"))?;
        element.attrs.push((
            String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(element)
}

/// Parses an XML document into its root element.
fn parse_xml(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => stack.push(start(&e)?),
            Event::Empty(e) => {
                let element = start(&e)?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("XML: unbalanced end tag")?;
                let parent = stack.last_mut().ok_or("XML: unbalanced end tag")?;
                parent.children.push(element);
            }
            Event::Text(t) => {
                if let Some(current) = stack.last_mut() {
                    let text = t.unescape().map_err(|e| format!("XML text: {e}"))?;
                    current.text.push_str(&text);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut document = stack.pop().filter(|_| stack.is_empty());
    document
        .as_mut()
        .and_then(|d| d.children.pop())
        .ok_or_else(|| "XML: no root element, or an element left open".to_string())
}

/// Resolves `reference` against the URL `base` (a path with an optional query) as RFC 3986
/// §5.2 does for the relative references manifests hold. The result is a path from `/`
/// without `.` or `..` segments; a reference with a scheme or authority, or one that climbs
/// above `/`, is refused.
pub fn resolve(base: &str, reference: &str) -> Result<String, String> {
    if reference.starts_with("//") || scheme(reference) {
        return Err(format!("{reference}: not a relative reference"));
    }
    let base_path = base.split(['?', '#']).next().unwrap_or("");
    let reference = reference.split('#').next().unwrap_or("");
    let (ref_path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let merged = if ref_path.starts_with('/') {
        ref_path.to_string()
    } else if ref_path.is_empty() {
        base_path.to_string()
    } else {
        let dir = base_path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{ref_path}")
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = merged.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop()
                    .ok_or_else(|| format!("{reference}: climbs above the server's root"))?;
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Ok(path)
}

/// True when `reference` starts with a URI scheme (`http:`, `data:`).
fn scheme(reference: &str) -> bool {
    let head = reference.split(['/', '?', '#']).next().unwrap_or("");
    head.split_once(':').is_some_and(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// The URIs an HLS playlist (master or media) names: its URI lines and the `URI="…"` of its
/// tags (renditions, I-frame playlists, the fMP4 initialization segment).
pub fn hls(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            links.push(line.to_string());
            continue;
        }
        if let Some((_, rest)) = line.split_once("URI=\"") {
            if let Some((uri, _)) = rest.split_once('"') {
                links.push(uri.to_string());
            }
        }
    }
    links
}

/// The segment URLs of an MPD: every representation's initialization and media segments,
/// each resolved against the `BaseURL`s above it (relative to the MPD's own URL).
pub fn dash(text: &str) -> Result<Vec<String>, String> {
    let mpd = parse_xml(text)?;
    if mpd.name != "MPD" {
        return Err(format!("the MPD's root element is <{}>", mpd.name));
    }
    let total = mpd
        .attr("mediaPresentationDuration")
        .map(iso8601_seconds)
        .transpose()?;
    let mut links = Vec::new();
    for period in mpd.children("Period") {
        let period_secs = match period.attr("duration") {
            Some(d) => Some(iso8601_seconds(d)?),
            None => total,
        };
        let period_base = join_base(&join_base("", &mpd), period);
        for set in period.children("AdaptationSet") {
            let set_base = join_base(&period_base, set);
            for rep in set.children("Representation") {
                let id = rep.attr("id").ok_or("a Representation without an id")?;
                let bandwidth = rep.attr("bandwidth").unwrap_or("0");
                let base = join_base(&set_base, rep);
                let template = Template::of(&[period, set, rep]);
                for url in template.urls(id, bandwidth, period_secs)? {
                    links.push(format!("{base}{url}"));
                }
            }
        }
    }
    Ok(links)
}

/// `base` followed by the `BaseURL` of `element`, if it has one (the relative form the
/// origin writes, `dash/`).
fn join_base(base: &str, element: &Element) -> String {
    match element.child("BaseURL") {
        Some(b) if !b.text.trim().is_empty() => {
            let text = b.text.trim();
            if text.starts_with('/') || scheme(text) {
                text.to_string()
            } else {
                format!("{base}{text}")
            }
        }
        _ => base.to_string(),
    }
}

/// A `SegmentTemplate` as it applies to one representation: its attributes from the
/// outermost level in, and the innermost timeline.
#[derive(Default)]
struct Template {
    attrs: Vec<(String, String)>,
    /// `(t, d, r)` of each `S`.
    timeline: Option<Vec<(Option<u64>, u64, i64)>>,
}

impl Template {
    fn of(levels: &[&Element]) -> Template {
        let mut template = Template::default();
        for level in levels {
            let Some(t) = level.child("SegmentTemplate") else {
                continue;
            };
            for (name, value) in &t.attrs {
                template.attrs.retain(|(n, _)| n != name);
                template.attrs.push((name.clone(), value.clone()));
            }
            if let Some(timeline) = t.child("SegmentTimeline") {
                template.timeline = Some(
                    timeline
                        .children("S")
                        .map(|s| {
                            let number = |n: &str| s.attr(n).and_then(|v| v.parse::<u64>().ok());
                            (
                                number("t"),
                                number("d").unwrap_or(0),
                                s.attr("r").and_then(|v| v.parse().ok()).unwrap_or(0),
                            )
                        })
                        .collect(),
                );
            }
        }
        template
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        self.attr(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("SegmentTemplate@{name} \"{v}\" is not a number"))
        })
    }

    /// The representation's initialization URL, then its media URLs in order.
    fn urls(
        &self,
        id: &str,
        bandwidth: &str,
        period_secs: Option<f64>,
    ) -> Result<Vec<String>, String> {
        let Some(media) = self.attr("media") else {
            return Err(format!("representation {id} has no SegmentTemplate@media"));
        };
        let vars = |number: Option<u64>, time: Option<u64>| Vars {
            id,
            bandwidth,
            number,
            time,
        };
        let mut urls = Vec::new();
        if let Some(init) = self.attr("initialization") {
            urls.push(substitute(init, &vars(None, None))?);
        }
        let mut number = self.number("startNumber", 1)?;
        match &self.timeline {
            Some(timeline) => {
                let mut time = 0u64;
                for &(t, d, r) in timeline {
                    if r < 0 {
                        return Err(format!(
                            "representation {id}: an open-ended S@r is for live MPDs"
                        ));
                    }
                    if d == 0 {
                        return Err(format!("representation {id}: an S without a duration"));
                    }
                    time = t.unwrap_or(time);
                    for _ in 0..=r {
                        if urls.len() as u64 > MAX_SEGMENTS {
                            return Err(format!(
                                "representation {id}: more than {MAX_SEGMENTS} segments"
                            ));
                        }
                        urls.push(substitute(media, &vars(Some(number), Some(time)))?);
                        time += d;
                        number += 1;
                    }
                }
            }
            None => {
                let duration = self.number("duration", 0)?;
                let timescale = self.number("timescale", 1)?;
                let secs = period_secs.ok_or_else(|| {
                    format!(
                        "representation {id}: SegmentTemplate@duration without a period duration"
                    )
                })?;
                if duration == 0 {
                    return Err(format!(
                        "representation {id}: SegmentTemplate without a timeline or a duration"
                    ));
                }
                let count = (secs * timescale as f64 / duration as f64 - 1e-9)
                    .ceil()
                    .max(0.0) as u64;
                if count > MAX_SEGMENTS {
                    return Err(format!(
                        "representation {id}: more than {MAX_SEGMENTS} segments"
                    ));
                }
                for k in 0..count {
                    urls.push(substitute(
                        media,
                        &vars(Some(number + k), Some(k * duration)),
                    )?);
                }
            }
        }
        Ok(urls)
    }
}

/// The values a template's identifiers stand for.
struct Vars<'a> {
    id: &'a str,
    bandwidth: &'a str,
    number: Option<u64>,
    time: Option<u64>,
}

/// Replaces `$RepresentationID$`, `$Bandwidth$`, `$Number$`, `$Time$` (with an optional
/// `%0<width>d` format) and `$$` (ISO/IEC 23009-1 §5.3.9.4.4).
fn substitute(template: &str, vars: &Vars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut parts = template.split('$');
    out.push_str(parts.next().unwrap_or(""));
    let mut inside = true;
    for part in parts {
        if !inside {
            out.push_str(part);
            inside = true;
            continue;
        }
        inside = false;
        if part.is_empty() {
            out.push('$');
            continue;
        }
        let (name, format) = match part.split_once('%') {
            Some((n, f)) => (n, Some(f)),
            None => (part, None),
        };
        let value = match name {
            "RepresentationID" => vars.id.to_string(),
            "Bandwidth" => vars.bandwidth.to_string(),
            "Number" => vars.number.map(|n| n.to_string()).unwrap_or_default(),
            "Time" => vars.time.map(|t| t.to_string()).unwrap_or_default(),
            _ => return Err(format!("{template}: unknown identifier ${part}$")),
        };
        match format {
            None => out.push_str(&value),
            Some(f) => {
                let width: usize = f
                    .strip_prefix('0')
                    .and_then(|w| w.strip_suffix('d'))
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| format!("{template}: format %{f} is not %0<width>d"))?;
                out.push_str(&format!("{value:0>width$}"));
            }
        }
    }
    if !inside {
        return Err(format!("{template}: an identifier without its closing $"));
    }
    Ok(out)
}

/// Seconds of an ISO 8601 duration as MPDs write them (`PT1H2M3.5S`, `P1DT2S`).
fn iso8601_seconds(text: &str) -> Result<f64, String> {
    let bad = || format!("duration \"{text}\" is not an ISO 8601 duration");
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut secs = 0.0;
    for (part, units) in [
        (days, &[('D', 86400.0)][..]),
        (time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let (_, scale) = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?;
            secs += number.parse::<f64>().map_err(|_| bad())? * scale;
            number.clear();
        }
        if !number.is_empty() {
            return Err(bad());
        }
    }
    Ok(secs)
}

/// The fragment URLs of a Smooth Streaming client manifest: each stream's `Url` template
/// for each quality level's bitrate and each chunk's start time.
pub fn smooth(text: &str) -> Result<Vec<String>, String> {
    let root = parse_xml(text)?;
    if root.name != "SmoothStreamingMedia" {
        return Err(format!("the manifest's root element is <{}>", root.name));
    }
    let mut links = Vec::new();
    for stream in root.children("StreamIndex") {
        let url = stream.attr("Url").ok_or("a StreamIndex without a Url")?;
        let mut times = Vec::new();
        let mut next = 0u64;
        for c in stream.children("c") {
            let number = |n: &str| -> Result<Option<u64>, String> {
                c.attr(n)
                    .map(|v| {
                        v.parse()
                            .map_err(|_| format!("c@{n} \"{v}\" is not a number"))
                    })
                    .transpose()
            };
            let d = number("d")?.ok_or("a chunk without a duration")?;
            // `r`: how many chunks of this duration the element stands for (MinorVersion 2).
            let count = number("r")?.unwrap_or(1);
            let mut t = number("t")?.unwrap_or(next);
            for _ in 0..count {
                if times.len() as u64 >= MAX_SEGMENTS {
                    return Err(format!("more than {MAX_SEGMENTS} chunks"));
                }
                times.push(t);
                t += d;
            }
            next = t;
        }
        if let Some(chunks) = stream.attr("Chunks") {
            if chunks.parse::<usize>().ok() != Some(times.len()) {
                return Err(format!(
                    "StreamIndex {}: Chunks=\"{chunks}\" but {} chunks listed",
                    stream.attr("Name").unwrap_or(""),
                    times.len()
                ));
            }
        }
        for level in stream.children("QualityLevel") {
            let bitrate = level
                .attr("Bitrate")
                .ok_or("a QualityLevel without a Bitrate")?;
            for t in &times {
                links.push(
                    url.replace("{bitrate}", bitrate)
                        .replace("{Bitrate}", bitrate)
                        .replace("{start time}", &t.to_string())
                        .replace("{start_time}", &t.to_string()),
                );
            }
        }
    }
    Ok(links)
}

/// The fragment URLs of an F4M manifest: `<media url>Seg1-Frag<n>` for each fragment its
/// inline bootstrap numbers.
pub fn hds(text: &str) -> Result<Vec<String>, String> {
    let root = parse_xml(text)?;
    if root.name != "manifest" {
        return Err(format!("the F4M's root element is <{}>", root.name));
    }
    let mut links = Vec::new();
    for media in root.children("media") {
        let url = media.attr("url").ok_or("a media element without a url")?;
        let id = media.attr("bootstrapInfoId").unwrap_or("");
        let info = root
            .children("bootstrapInfo")
            .find(|b| b.attr("id").unwrap_or("") == id)
            .ok_or_else(|| format!("media {url}: no bootstrapInfo \"{id}\""))?;
        if info.attr("url").is_some() {
            return Err(format!(
                "media {url}: an external bootstrap is not supported"
            ));
        }
        let compact: String = info.text.split_whitespace().collect();
        let abst = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| format!("bootstrapInfo \"{id}\": {e}"))?;
        let bootstrap =
            Bootstrap::parse(&abst).map_err(|e| format!("bootstrapInfo \"{id}\": {e}"))?;
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, format!("?{q}")),
            None => (url, String::new()),
        };
        for n in fragment_numbers(&bootstrap) {
            links.push(format!("{path}Seg1-Frag{n}{query}"));
        }
    }
    Ok(links)
}

/// The fragments a bootstrap's runs number, from the first run's first to the last.
fn fragment_numbers(b: &Bootstrap) -> Vec<u32> {
    let first = b
        .runs
        .iter()
        .filter_map(|run| match *run {
            FragmentRun::Run { first, .. } => Some(first),
            FragmentRun::Discontinuity { .. } => None,
        })
        .min();
    match first {
        Some(first) if first >= 1 => (first..=b.fragments_in_segment)
            .filter(|&n| b.fragment_time(n).is_some())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_against_the_manifest_url() {
        let base = "/m.ism/.m3u8?hls_fmp4";
        assert_eq!(
            resolve(base, "hls/a.m3u8?hls_fmp4").unwrap(),
            "/m.ism/hls/a.m3u8?hls_fmp4"
        );
        assert_eq!(
            resolve("/m.ism/keyframes/a.m3u8", "../a-1.ts").unwrap(),
            "/m.ism/a-1.ts"
        );
        assert_eq!(
            resolve("/m.ism/keyframes/a.m3u8", "../hls/a.m4s").unwrap(),
            "/m.ism/hls/a.m4s"
        );
        assert_eq!(
            resolve("/m.ism/.mpd", "dash/m-v=1-0.dash").unwrap(),
            "/m.ism/dash/m-v=1-0.dash"
        );
        assert_eq!(resolve("/m.ism/.mpd", "/x/y").unwrap(), "/x/y");
        assert!(resolve("/m.ism/.mpd", "../../../etc/passwd").is_err());
        assert!(resolve("/m.ism/.mpd", "http://elsewhere/x").is_err());
        assert!(resolve("/m.ism/.mpd", "//elsewhere/x").is_err());
        assert!(resolve("/m.ism/.mpd", "data:text/plain,x").is_err());
    }

    #[test]
    fn hls_links_are_uri_lines_and_uri_attributes() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"m-audio=1.m3u8\"\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1\nm-video=2.m3u8\n\n\
                      #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"keyframes/m-video=2.m3u8\"\n";
        assert_eq!(
            hls(master),
            [
                "m-audio=1.m3u8",
                "m-video=2.m3u8",
                "keyframes/m-video=2.m3u8"
            ]
        );
        let media = "#EXTM3U\n#EXT-X-MAP:URI=\"m-video=2.m4s\"\n#EXTINF:2,\nm-video=2-1.m4s\n#EXT-X-ENDLIST\n";
        assert_eq!(hls(media), ["m-video=2.m4s", "m-video=2-1.m4s"]);
    }

    #[test]
    fn dash_templates_expand_over_timelines_and_durations() {
        let mpd = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT5.5S">
  <Period id="1"><BaseURL>dash/</BaseURL>
    <AdaptationSet>
      <SegmentTemplate timescale="10" initialization="m-$RepresentationID$.dash" media="m-$RepresentationID$-$Time$.dash">
        <SegmentTimeline><S t="0" d="20" r="1"/><S d="15"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v=1" bandwidth="1"/>
      <Representation id="v=2" bandwidth="2"/>
    </AdaptationSet>
    <AdaptationSet>
      <Representation id="a&amp;b=3" bandwidth="3">
        <SegmentTemplate timescale="1" startNumber="1" duration="2" initialization="i-$RepresentationID$.dash" media="n-$Number%03d$-$$.dash"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"#;
        assert_eq!(
            dash(mpd).unwrap(),
            [
                "dash/m-v=1.dash",
                "dash/m-v=1-0.dash",
                "dash/m-v=1-20.dash",
                "dash/m-v=1-40.dash",
                "dash/m-v=2.dash",
                "dash/m-v=2-0.dash",
                "dash/m-v=2-20.dash",
                "dash/m-v=2-40.dash",
                "dash/i-a&b=3.dash",
                "dash/n-001-$.dash",
                "dash/n-002-$.dash",
                "dash/n-003-$.dash",
            ]
        );
        assert_eq!(iso8601_seconds("PT1H2M3.5S").unwrap(), 3723.5);
        assert_eq!(iso8601_seconds("P1DT1S").unwrap(), 86401.0);
        assert!(iso8601_seconds("1H").is_err());
    }

    #[test]
    fn hds_urls_number_each_fragment_of_each_bootstrap() {
        use origin_core::package::hds::Discontinuity;
        let abst = Bootstrap {
            live: false,
            version: 3,
            current_media_time: 5000,
            fragments_in_segment: 3,
            runs: vec![
                FragmentRun::Run {
                    first: 1,
                    timestamp: 0,
                    duration: 2000,
                },
                FragmentRun::Discontinuity {
                    first: 0,
                    timestamp: 0,
                    indicator: Discontinuity::EndOfPresentation,
                },
            ],
        }
        .to_bytes();
        let coded = base64::engine::general_purpose::STANDARD.encode(abst);
        let f4m = format!(
            r#"<manifest xmlns="http://ns.adobe.com/f4m/1.0">
  <bootstrapInfo profile="named" id="b0">{}
    {}</bootstrapInfo>
  <media streamId="m-a=1" url="m-a=1?x=1" bitrate="1" bootstrapInfoId="b0"/>
</manifest>"#,
            &coded[..8],
            &coded[8..]
        );
        assert_eq!(
            hds(&f4m).unwrap(),
            [
                "m-a=1Seg1-Frag1?x=1",
                "m-a=1Seg1-Frag2?x=1",
                "m-a=1Seg1-Frag3?x=1"
            ]
        );
        assert!(hds(&f4m.replace("\"b0\">", "\"b1\">")).is_err());
    }

    #[test]
    fn smooth_urls_cover_each_bitrate_and_chunk() {
        let manifest = r#"<SmoothStreamingMedia MajorVersion="2" MinorVersion="2" Duration="60">
  <StreamIndex Type="video" Name="video" Chunks="3" Url="QualityLevels({bitrate})/Fragments(video={start time})">
    <QualityLevel Index="0" Bitrate="100"/><QualityLevel Index="1" Bitrate="200"/>
    <c t="0" d="20" r="2"/><c d="15"/>
  </StreamIndex>
</SmoothStreamingMedia>"#;
        assert_eq!(
            smooth(manifest).unwrap(),
            [
                "QualityLevels(100)/Fragments(video=0)",
                "QualityLevels(100)/Fragments(video=20)",
                "QualityLevels(100)/Fragments(video=40)",
                "QualityLevels(200)/Fragments(video=0)",
                "QualityLevels(200)/Fragments(video=20)",
                "QualityLevels(200)/Fragments(video=40)",
            ]
        );
        assert!(smooth(&manifest.replace("Chunks=\"3\"", "Chunks=\"4\"")).is_err());
    }
}
