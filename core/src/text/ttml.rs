//! TTML (W3C TTML1 / IMSC1) documents: reading the paragraphs of an `stpp` sample as cues, and
//! writing a document for a sample.
//!
//! Timing follows TTML's parallel time containers: an element's `begin`/`end` count from its
//! parent's begin, `dur` from its own begin, and a child never outlasts its parent. Styling is
//! kept where WebVTT has it (italic, bold, underline on spans); layout is not carried over.

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{clip, escape_text, plain_text, Cue, TextError, MAX_CUES, MAX_TEXT_BYTES};

const MAX_DEPTH: usize = 64;

fn error(position: usize, what: impl Into<String>) -> TextError {
    TextError {
        format: "TTML",
        position,
        what: what.into(),
    }
}

/// Rates that turn frame and tick time expressions into seconds (TTML1 §6.2).
#[derive(Debug, Clone, Copy)]
struct Rates {
    frame_rate: f64,
    tick_rate: f64,
}

impl Default for Rates {
    fn default() -> Rates {
        Rates {
            frame_rate: 30.0,
            tick_rate: 1.0,
        }
    }
}

/// A TTML time expression in seconds: `hh:mm:ss[.fraction]`, `hh:mm:ss:frames[.sub]`, or an
/// offset `<number>(h|m|s|ms|f|t)`.
fn parse_time(s: &str, rates: Rates) -> Option<f64> {
    let s = s.trim();
    let number = |x: &str| -> Option<f64> {
        let ok = !x.is_empty()
            && x.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && x.bytes().filter(|&b| b == b'.').count() <= 1
            && !x.starts_with('.');
        ok.then(|| x.parse::<f64>().ok()).flatten()
    };
    if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        let (h, m, sec, frames) = match parts.as_slice() {
            [h, m, sec] => (*h, *m, *sec, None),
            [h, m, sec, f] => (*h, *m, *sec, Some(*f)),
            _ => return None,
        };
        if h.contains('.') || m.contains('.') {
            return None;
        }
        let mut t = number(h)? * 3600.0 + number(m)? * 60.0 + number(sec)?;
        if let Some(f) = frames {
            if sec.contains('.') {
                return None;
            }
            t += number(f)? / rates.frame_rate;
        }
        return Some(t);
    }
    let units = [
        ("ms", 0.001),
        ("h", 3600.0),
        ("m", 60.0),
        ("s", 1.0),
        ("f", 1.0 / rates.frame_rate),
        ("t", 1.0 / rates.tick_rate),
    ];
    units
        .iter()
        .find_map(|(unit, scale)| Some(number(s.strip_suffix(unit)?)? * scale))
}

/// An open element: its active interval (seconds, document time) and what closing it writes
/// into the paragraph's text.
struct Open {
    begin: f64,
    end: f64,
    closer: &'static str,
    paragraph: bool,
    /// Content ignored (`head`, `metadata`): text under it is not subtitle text.
    ignored: bool,
}

/// The paragraphs of a TTML document as cues. `sample_start_ms`..`sample_end_ms` is the
/// sample the document came in: cues are clipped to it, and a document whose times all fall
/// inside the sample's duration while the sample starts later is read as timed from the
/// sample's start (14496-30 permits both readings, and encoders write both).
pub fn cues(doc: &[u8], sample_start_ms: u64, sample_end_ms: u64) -> Result<Vec<Cue>, TextError> {
    if doc.len() > MAX_TEXT_BYTES {
        return Err(error(MAX_TEXT_BYTES, "document too large"));
    }
    let text = std::str::from_utf8(doc).map_err(|e| error(e.valid_up_to(), "not UTF-8"))?;
    let text = text.trim_start_matches('\u{feff}');
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut rates = Rates::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut found: Vec<(f64, f64, String)> = Vec::new();
    let mut paragraph = String::new();
    let mut seen_root = false;
    loop {
        let position = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| error(reader.error_position() as usize, e.to_string()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name();
                let name = local.as_ref();
                if stack.is_empty() {
                    if seen_root || name != b"tt" {
                        return Err(error(position, "the root element is not <tt>"));
                    }
                    seen_root = true;
                    rates = document_rates(e, rates);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(error(position, "elements nested too deeply"));
                }
                let parent = stack.last();
                let (parent_begin, parent_end) =
                    parent.map_or((0.0, f64::INFINITY), |p| (p.begin, p.end));
                let in_paragraph = parent.is_some_and(|p| p.paragraph);
                let ignored =
                    parent.is_some_and(|p| p.ignored) || matches!(name, b"head" | b"metadata");
                let mut begin = parent_begin;
                let mut end = parent_end;
                let (mut own_end, mut dur) = (None, None);
                let mut closer = "";
                for a in e.attributes().flatten() {
                    let value = a
                        .unescape_value()
                        .map_err(|e| error(position, e.to_string()))?;
                    let bad_time = || error(position, format!("bad time expression {value:?}"));
                    match a.key.local_name().as_ref() {
                        b"begin" => {
                            begin = parent_begin + parse_time(&value, rates).ok_or_else(bad_time)?
                        }
                        b"end" => own_end = Some(parse_time(&value, rates).ok_or_else(bad_time)?),
                        b"dur" => dur = Some(parse_time(&value, rates).ok_or_else(bad_time)?),
                        b"fontStyle" if in_paragraph && value.as_ref() == "italic" => {
                            closer = "</i>"
                        }
                        b"fontWeight" if in_paragraph && value.as_ref() == "bold" => {
                            closer = "</b>"
                        }
                        b"textDecoration" if in_paragraph && value.as_ref() == "underline" => {
                            closer = "</u>"
                        }
                        _ => {}
                    }
                }
                if let Some(e) = own_end {
                    end = end.min(parent_begin + e);
                }
                if let Some(d) = dur {
                    end = end.min(begin + d);
                }
                let is_paragraph = name == b"p" && !ignored && !in_paragraph;
                if in_paragraph && !ignored {
                    match name {
                        b"br" => paragraph.push('\n'),
                        _ if !closer.is_empty() => paragraph.push_str(&closer.replace('/', "")),
                        _ => {}
                    }
                }
                if is_paragraph {
                    paragraph.clear();
                }
                let open = Open {
                    begin,
                    end,
                    closer,
                    paragraph: is_paragraph || in_paragraph,
                    ignored,
                };
                if empty {
                    close(open, is_paragraph, &mut paragraph, &mut found)?;
                } else {
                    stack.push(open);
                }
            }
            Event::End(_) => {
                let open = stack
                    .pop()
                    .ok_or_else(|| error(position, "unbalanced end tag"))?;
                let was_paragraph = open.paragraph && !stack.last().is_some_and(|p| p.paragraph);
                close(open, was_paragraph, &mut paragraph, &mut found)?;
            }
            Event::Text(t) if stack.last().is_some_and(|o| o.paragraph && !o.ignored) => {
                let raw = t.unescape().map_err(|e| error(position, e.to_string()))?;
                escape_text(&raw, &mut paragraph);
            }
            Event::CData(t) if stack.last().is_some_and(|o| o.paragraph && !o.ignored) => {
                escape_text(&String::from_utf8_lossy(&t), &mut paragraph);
            }
            Event::Eof => break,
            _ => {}
        }
        if found.len() > MAX_CUES {
            return Err(error(position, format!("more than {MAX_CUES} paragraphs")));
        }
    }
    if !seen_root {
        return Err(error(0, "no <tt> element"));
    }
    if !stack.is_empty() {
        return Err(error(text.len(), "document ends inside an element"));
    }

    let duration = sample_end_ms.saturating_sub(sample_start_ms) as f64 / 1000.0;
    let fits_sample = found
        .iter()
        .all(|(_, e, _)| e.is_infinite() || *e <= duration + 0.001);
    let before_sample = found
        .iter()
        .any(|(b, _, _)| *b * 1000.0 < sample_start_ms as f64 - 0.5);
    let offset = if sample_start_ms > 0 && fits_sample && before_sample {
        sample_start_ms as f64 / 1000.0
    } else {
        0.0
    };
    let to_ms = |s: f64| -> u64 {
        if s.is_infinite() {
            u64::MAX
        } else {
            ((s + offset) * 1000.0)
                .round()
                .clamp(0.0, u64::MAX as f64 / 2.0) as u64
        }
    };
    let cues = found
        .into_iter()
        .map(|(b, e, text)| Cue {
            start_ms: to_ms(b),
            end_ms: to_ms(e),
            text,
            ..Cue::default()
        })
        .collect();
    Ok(clip(cues, sample_start_ms, sample_end_ms))
}

/// Ends an element: closes its styling tag, and at the end of a paragraph records the cue.
fn close(
    open: Open,
    paragraph_ends: bool,
    paragraph: &mut String,
    found: &mut Vec<(f64, f64, String)>,
) -> Result<(), TextError> {
    if open.paragraph && !open.ignored && !paragraph_ends {
        paragraph.push_str(open.closer);
    }
    if paragraph_ends {
        let text = normalize(paragraph);
        paragraph.clear();
        if !text.is_empty() && open.end > open.begin {
            found.push((open.begin, open.end, text));
        }
    }
    Ok(())
}

/// XML's default whitespace handling for subtitle text: runs of spaces, tabs and source line
/// breaks become one space; `<br/>` line breaks stay; lines are trimmed.
fn normalize(s: &str) -> String {
    s.split('\n')
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ttp:frameRate`, `ttp:frameRateMultiplier` and `ttp:tickRate` of the root element.
fn document_rates(e: &BytesStart<'_>, mut rates: Rates) -> Rates {
    let mut multiplier = 1.0;
    let mut tick_rate = None;
    for a in e.attributes().flatten() {
        let Ok(value) = a.unescape_value() else {
            continue;
        };
        match a.key.local_name().as_ref() {
            b"frameRate" => {
                if let Ok(f) = value.trim().parse::<f64>() {
                    if f > 0.0 && f.is_finite() {
                        rates.frame_rate = f;
                    }
                }
            }
            b"frameRateMultiplier" => {
                let mut it = value.split_whitespace().map(|x| x.parse::<f64>());
                if let (Some(Ok(n)), Some(Ok(d))) = (it.next(), it.next()) {
                    if n > 0.0 && d > 0.0 {
                        multiplier = n / d;
                    }
                }
            }
            b"tickRate" => {
                if let Ok(t) = value.trim().parse::<f64>() {
                    if t > 0.0 && t.is_finite() {
                        tick_rate = Some(t);
                    }
                }
            }
            _ => {}
        }
    }
    rates.frame_rate *= multiplier;
    // Without ttp:tickRate, ticks run at the frame rate when one is given (TTML1 §7.2.10).
    rates.tick_rate = tick_rate.unwrap_or(rates.frame_rate);
    rates
}

/// A TTML document holding `cues` (times on the track's timeline), as an `stpp` sample
/// carries it: one `<p>` per cue, line breaks as `<br/>`, cue tags dropped.
pub fn document(cues: &[Cue], language: &str) -> String {
    let mut x = String::with_capacity(512 + cues.len() * 96);
    let lang = plain_xml(language);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <tt xmlns=\"http://www.w3.org/ns/ttml\" xmlns:tts=\"http://www.w3.org/ns/ttml#styling\" \
         xmlns:ttp=\"http://www.w3.org/ns/ttml#parameter\" ttp:timeBase=\"media\" xml:lang=\"{lang}\">\n\
         <head><layout><region xml:id=\"bottom\" tts:origin=\"10% 10%\" tts:extent=\"80% 80%\" \
         tts:displayAlign=\"after\" tts:textAlign=\"center\"/></layout></head>\n\
         <body region=\"bottom\"><div>\n"
    );
    for c in cues {
        let lines: Vec<String> = c
            .text
            .split('\n')
            .map(|l| plain_xml(&plain_text(l)))
            .collect();
        let _ = writeln!(
            x,
            "<p begin=\"{}\" end=\"{}\">{}</p>",
            clock(c.start_ms),
            clock(c.end_ms),
            lines.join("<br/>")
        );
    }
    x.push_str("</div></body>\n</tt>\n");
    x
}

fn plain_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_text(s, &mut out);
    out.replace('"', "&quot;")
}

/// `hh:mm:ss.mmm`.
fn clock(ms: u64) -> String {
    super::webvtt::timestamp(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(cues: &[Cue]) -> Vec<(u64, u64, &str)> {
        cues.iter()
            .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
            .collect()
    }

    const FFMPEG_DOC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<tt xmlns="http://www.w3.org/ns/ttml" xmlns:tts="http://www.w3.org/ns/ttml#styling" xml:lang="">
  <head><layout><region xml:id="Default" tts:origin="3% 0%"/></layout>
  <metadata><p>not subtitle text</p></metadata></head>
  <body>
    <div>
      <p
        begin="00:00:00.000"
        end="00:00:02.000"><span region="Default">Cue 1: seconds 0 to 2</span></p>
      <p begin="00:00:02.000" end="00:00:04.000"><span tts:fontStyle="italic">Cue 2</span><br/>
        second   line &amp; more</p>
    </div>
  </body>
</tt>"#;

    #[test]
    fn reads_paragraphs_with_breaks_and_styles() {
        let cues = cues(FFMPEG_DOC.as_bytes(), 0, 4000).unwrap();
        assert_eq!(
            texts(&cues),
            vec![
                (0, 2000, "Cue 1: seconds 0 to 2"),
                (2000, 4000, "<i>Cue 2</i>\nsecond line &amp; more"),
            ]
        );
    }

    #[test]
    fn clips_to_the_sample() {
        let cues = cues(FFMPEG_DOC.as_bytes(), 1000, 3000).unwrap();
        assert_eq!(texts(&cues)[0], (1000, 2000, "Cue 1: seconds 0 to 2"));
        assert_eq!(texts(&cues)[1].1, 3000);
    }

    #[test]
    fn times_relative_to_the_sample_are_recognised() {
        // A sample at 60 s whose document counts from 0.
        let doc = r#"<tt xmlns="http://www.w3.org/ns/ttml"><body><div>
            <p begin="0.5s" end="1500ms">late</p></div></body></tt>"#;
        let cues = cues(doc.as_bytes(), 60_000, 62_000).unwrap();
        assert_eq!(texts(&cues), vec![(60_500, 61_500, "late")]);
        // The same times on a sample that starts at 0 are absolute.
        let cues2 = super::cues(doc.as_bytes(), 0, 2000).unwrap();
        assert_eq!(texts(&cues2), vec![(500, 1500, "late")]);
    }

    #[test]
    fn nested_timing_ticks_and_frames() {
        let doc = r#"<tt xmlns="http://www.w3.org/ns/ttml" xmlns:ttp="http://www.w3.org/ns/ttml#parameter"
             ttp:tickRate="10000000" ttp:frameRate="25">
            <body><div begin="10s" end="20s">
              <p begin="10000000t" dur="2s">a</p>
              <p begin="00:00:05:12" end="00:01:00.000">b</p>
              <p>c</p>
            </div></body></tt>"#;
        let cues = cues(doc.as_bytes(), 0, 100_000).unwrap();
        assert_eq!(
            texts(&cues),
            vec![
                (11_000, 13_000, "a"),
                (15_480, 20_000, "b"),
                (10_000, 20_000, "c")
            ]
        );
    }

    #[test]
    fn rejects_broken_documents() {
        for doc in [
            "<p begin=\"0s\">x</p>",
            "<tt><body><p begin=\"soon\">x</p></body></tt>",
            "<tt><body><p>x</body></tt>",
            "<tt><body>",
            "",
        ] {
            assert!(cues(doc.as_bytes(), 0, 1000).is_err(), "{doc}");
        }
    }

    #[test]
    fn time_expressions() {
        let r = Rates::default();
        assert_eq!(parse_time("01:02:03.5", r), Some(3723.5));
        assert_eq!(parse_time("00:00:01:15", r), Some(1.5));
        assert_eq!(parse_time("1.5h", r), Some(5400.0));
        assert_eq!(parse_time("250ms", r), Some(0.25));
        assert_eq!(parse_time("3f", r), Some(0.1));
        assert_eq!(parse_time("-1s", r), None);
        assert_eq!(parse_time("1:2", r), None);
        assert_eq!(parse_time(".5s", r), None);
    }

    #[test]
    fn documents_round_trip_through_the_reader() {
        let cue = Cue::new;
        let written = document(
            &[
                cue(0, 1000, "<i>one</i> &amp; two\nthree"),
                cue(1000, 2500, "4 &lt; 5"),
            ],
            "en",
        );
        let back = cues(written.as_bytes(), 0, 10_000).unwrap();
        assert_eq!(
            texts(&back),
            vec![(0, 1000, "one &amp; two\nthree"), (1000, 2500, "4 &lt; 5")]
        );
    }
}
