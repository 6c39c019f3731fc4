//! Timed text. Cues are read from WebVTT files, from TTML documents (the samples of `stpp`
//! tracks) and from ISO/IEC 14496-30 WebVTT samples (`wvtt` tracks); they are written as WebVTT
//! (HLS subtitle segments) or as `wvtt` / `stpp` samples (ismtool's text packager).
//!
//! A cue's text is kept in WebVTT cue-text syntax (`<i>`, `<b>`, `<u>` tags, `&amp;` escapes),
//! the one form every reader here can produce and every writer can consume.

pub mod cmaf;
pub mod ttml;
pub mod webvtt;
pub mod wvtt;

/// One cue, on the track's presentation timeline in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    /// WebVTT cue identifier (may be empty).
    pub id: String,
    /// WebVTT cue settings (`line:0 align:start`, may be empty).
    pub settings: String,
    /// The payload in WebVTT cue-text syntax; lines separated by `\n`.
    pub text: String,
}

impl Cue {
    /// A cue with no identifier and no settings.
    pub fn new(start_ms: u64, end_ms: u64, text: impl Into<String>) -> Cue {
        Cue {
            start_ms,
            end_ms,
            text: text.into(),
            ..Cue::default()
        }
    }
}

/// Why a text document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format}: {what} (byte {position})")]
pub struct TextError {
    pub format: &'static str,
    pub position: usize,
    pub what: String,
}

/// The largest text document or sample read (a subtitle file of a feature film is well under
/// a megabyte).
pub const MAX_TEXT_BYTES: usize = 16 << 20;

/// The most cues read from one document.
pub const MAX_CUES: usize = 200_000;

/// Keeps the cues that overlap `[start_ms, end_ms)`, trimmed to it; drops empty ones.
pub fn clip(cues: Vec<Cue>, start_ms: u64, end_ms: u64) -> Vec<Cue> {
    cues.into_iter()
        .filter_map(|mut c| {
            c.start_ms = c.start_ms.max(start_ms);
            c.end_ms = c.end_ms.min(end_ms);
            (c.end_ms > c.start_ms && !c.text.is_empty()).then_some(c)
        })
        .collect()
}

/// `&`, `<` and `>` escaped for WebVTT cue text (and XML text).
pub fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

/// Cue text without its tags, with the WebVTT escapes resolved: what a TTML `<p>` carries.
pub fn plain_text(cue_text: &str) -> String {
    let mut out = String::with_capacity(cue_text.len());
    let mut rest = cue_text;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            match rest.find('>') {
                Some(j) => rest = &rest[j + 1..],
                None => rest = "",
            }
            continue;
        }
        let entity = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&nbsp;", '\u{a0}'),
            ("&lrm;", '\u{200e}'),
            ("&rlm;", '\u{200f}'),
        ]
        .iter()
        .find(|(name, _)| rest.starts_with(name));
        match entity {
            Some((name, c)) => {
                out.push(*c);
                rest = &rest[name.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start_ms: u64, end_ms: u64, text: &str) -> Cue {
        Cue::new(start_ms, end_ms, text)
    }

    #[test]
    fn clipping_keeps_overlaps_only() {
        let cues = vec![
            cue(0, 2000, "a"),
            cue(1500, 4000, "b"),
            cue(4000, 5000, "c"),
        ];
        assert_eq!(
            clip(cues, 1800, 4000),
            vec![cue(1800, 2000, "a"), cue(1800, 4000, "b")]
        );
    }

    #[test]
    fn plain_text_strips_tags_and_escapes() {
        assert_eq!(
            plain_text("<i>Tom &amp; <c.yellow>Jerry</c></i> &lt;3 &x"),
            "Tom & Jerry <3 &x"
        );
        assert_eq!(plain_text("a <unclosed"), "a ");
    }
}
