//! WebVTT files (W3C WebVTT): reading the cues of a file, and writing the segments of an HLS
//! subtitle rendition (RFC 8216 §3.5), whose `X-TIMESTAMP-MAP` ties cue time to the media's
//! 90 kHz timestamps.

use std::fmt::Write as _;

use super::{Cue, TextError, MAX_CUES, MAX_TEXT_BYTES};

fn error(position: usize, what: impl Into<String>) -> TextError {
    TextError {
        format: "WebVTT",
        position,
        what: what.into(),
    }
}

/// The cues of a WebVTT file, in file order. Blocks that are not cues (`NOTE`, `STYLE`,
/// `REGION`) and cues with unreadable timings are skipped, as a WebVTT parser does; a file
/// without the `WEBVTT` signature is an error.
pub fn parse(input: &[u8]) -> Result<Vec<Cue>, TextError> {
    if input.len() > MAX_TEXT_BYTES {
        return Err(error(MAX_TEXT_BYTES, "file too large"));
    }
    let text = std::str::from_utf8(input)
        .map_err(|e| error(e.valid_up_to(), "not UTF-8"))?
        .trim_start_matches('\u{feff}');
    let mut lines = Lines::new(text);
    let first = lines.next().unwrap_or("");
    let signature_ok = first
        .strip_prefix("WEBVTT")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
    if !signature_ok {
        return Err(error(0, "missing the WEBVTT signature"));
    }
    // The header runs to the first blank line.
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
    }
    let mut cues = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    loop {
        block.clear();
        for line in lines.by_ref() {
            if line.is_empty() {
                if block.is_empty() {
                    continue;
                }
                break;
            }
            block.push(line);
        }
        if block.is_empty() {
            return Ok(cues);
        }
        let (id, timing, payload) = match block.iter().position(|l| l.contains("-->")) {
            Some(0) => ("", block[0], &block[1..]),
            Some(1) => (block[0], block[1], &block[2..]),
            // NOTE, STYLE, REGION, or a stray block: not a cue.
            _ => continue,
        };
        if ["NOTE", "STYLE", "REGION"].iter().any(|k| {
            id.strip_prefix(k)
                .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
        }) {
            continue;
        }
        let Some((start_ms, end_ms, settings)) = parse_timing(timing) else {
            continue;
        };
        if end_ms <= start_ms {
            continue;
        }
        if cues.len() >= MAX_CUES {
            return Err(error(text.len(), format!("more than {MAX_CUES} cues")));
        }
        cues.push(Cue {
            start_ms,
            end_ms,
            id: id.to_string(),
            settings: settings.to_string(),
            text: payload.join("\n"),
        });
    }
}

/// Lines split at CRLF, CR or LF.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.find(['\r', '\n']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                self.rest = Some(&rest[i + skip..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                (!rest.is_empty()).then_some(rest)
            }
        }
    }
}

/// `start --> end [settings]`.
fn parse_timing(line: &str) -> Option<(u64, u64, &str)> {
    let (start, rest) = line.split_once("-->")?;
    let start = parse_timestamp(start.trim())?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let end_len = rest.find([' ', '\t']).unwrap_or(rest.len());
    let end = parse_timestamp(&rest[..end_len])?;
    Some((start, end, rest[end_len..].trim()))
}

/// `[hh:]mm:ss.ttt` in milliseconds.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let (clock, millis) = s.split_once('.')?;
    if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [m, s] => ("0", *m, *s),
        [h, m, s] if h.len() >= 2 => (*h, *m, *s),
        _ => return None,
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit()) && !x.is_empty();
    if !digits(h) || h.len() > 9 || m.len() != 2 || sec.len() != 2 || !digits(m) || !digits(sec) {
        return None;
    }
    let (h, m, sec): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if m > 59 || sec > 59 {
        return None;
    }
    Some(((h * 60 + m) * 60 + sec) * 1000 + millis.parse::<u64>().ok()?)
}

/// `hh:mm:ss.ttt`.
pub fn timestamp(ms: u64) -> String {
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    format!(
        "{h:02}:{:02}:{:02}.{:03}",
        rem / 60_000,
        rem % 60_000 / 1000,
        rem % 1000
    )
}

/// One WebVTT document: the signature, the `X-TIMESTAMP-MAP` when given (HLS segments: cue
/// time 0 is the media's 90 kHz timestamp `mpegts`), and the cues.
pub fn write(cues: &[Cue], mpegts: Option<u64>) -> String {
    let mut out = String::with_capacity(32 + cues.len() * 64);
    out.push_str("WEBVTT\n");
    if let Some(pts) = mpegts {
        let _ = writeln!(out, "X-TIMESTAMP-MAP=MPEGTS:{pts},LOCAL:00:00:00.000");
    }
    out.push('\n');
    for c in cues {
        // An identifier or payload line must not hold "-->", and a blank payload line would
        // end the cue early.
        let id = c.id.replace("-->", "--&gt;");
        let id = id.trim();
        if !id.is_empty() && !id.contains(['\r', '\n']) {
            let _ = writeln!(out, "{id}");
        }
        let _ = write!(out, "{} --> {}", timestamp(c.start_ms), timestamp(c.end_ms));
        let settings = c.settings.replace(['\r', '\n'], " ");
        if !settings.trim().is_empty() {
            let _ = write!(out, " {}", settings.trim());
        }
        out.push('\n');
        for line in c.text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(out, "{}", line.replace("-->", "--&gt;"));
        }
        // Every block ends with a blank line, so documents can be concatenated (ffmpeg's HLS
        // reader feeds the segments of a rendition to one WebVTT parser).
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\u{feff}WEBVTT - a title\r\nKind: captions\r\n\r\nNOTE a comment\r\nover two lines\r\n\r\nSTYLE\r\n::cue { color: red }\r\n\r\n1\r\n00:00.000 --> 00:02.500 line:0 align:start\r\n<i>Hello</i> &amp; welcome\r\nsecond line\r\n\r\n\r\n01:00:02.000 --> 01:00:04.000\nno id\n\nbroken --> 00:05.000\nskipped\n\n00:06.000 --> 00:05.000\nbackwards, skipped\n";

    #[test]
    fn reads_cues_and_skips_other_blocks() {
        let cues = parse(FILE.as_bytes()).unwrap();
        assert_eq!(cues.len(), 2);
        assert_eq!(
            cues[0],
            Cue {
                start_ms: 0,
                end_ms: 2500,
                id: "1".into(),
                settings: "line:0 align:start".into(),
                text: "<i>Hello</i> &amp; welcome\nsecond line".into(),
            }
        );
        assert_eq!((cues[1].start_ms, cues[1].end_ms), (3_602_000, 3_604_000));
        assert_eq!(cues[1].id, "");
    }

    #[test]
    fn rejects_what_is_not_webvtt() {
        assert!(parse(b"WEBVTTX\n\n00:00.000 --> 00:01.000\nx\n").is_err());
        assert!(parse(b"1\n00:00:00,000 --> 00:00:01,000\nsrt\n").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
        assert_eq!(parse(b"WEBVTT").unwrap(), vec![]);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("00:01.001"), Some(1001));
        assert_eq!(parse_timestamp("100:00:00.000"), Some(360_000_000));
        assert_eq!(parse_timestamp("0:00:01.000"), None);
        assert_eq!(parse_timestamp("00:60.000"), None);
        assert_eq!(parse_timestamp("00:01.1"), None);
        assert_eq!(parse_timestamp("00:01"), None);
        assert_eq!(timestamp(3_723_004), "01:02:03.004");
    }

    #[test]
    fn writes_what_it_reads() {
        let cues = parse(FILE.as_bytes()).unwrap();
        let text = write(&cues, Some(900_000));
        assert!(text.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000\n\n1\n00:00:00.000 --> 00:00:02.500 line:0 align:start\n"));
        assert_eq!(parse(text.as_bytes()).unwrap(), cues);
        // Segments concatenated still read as the cues of both.
        let twice = format!("{text}{}", write(&cues, Some(0)));
        assert_eq!(parse(twice.as_bytes()).unwrap().len(), 2 * cues.len());
    }

    #[test]
    fn writing_cannot_break_the_block_structure() {
        let cue = Cue {
            start_ms: 0,
            end_ms: 1000,
            id: "a --> b".into(),
            settings: "x\ny".into(),
            text: "one\n\n\ntwo --> three".into(),
        };
        let text = write(&[cue], None);
        let back = parse(text.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].text, "one\ntwo --&gt; three");
        assert_eq!(back[0].id, "a --&gt; b");
        assert_eq!(back[0].settings, "x y");
    }
}
