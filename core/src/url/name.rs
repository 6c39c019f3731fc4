//! Track names: what they may hold, and how they travel through URLs.
//!
//! A name reaches clients inside child URLs (HLS playlist lines, DASH `$RepresentationID$`, the
//! Smooth `Url` template) and comes back in request paths. nginx percent-decodes a request path
//! once before the router sees it (`r->uri`), and would turn `%2F` into a `/` that splits the
//! path; so a name's URL text is encoded twice: every byte outside RFC 3986 `unreserved`
//! (`A-Z a-z 0-9 - . _ ~`) is written `%25XX`. nginx's decode leaves `%XX`, which
//! [`decode_name`] undoes, once, in the router's track-name fields. A name made only of
//! unreserved characters is its own URL text, so the usual names (`video`, `audio_eng`) appear
//! unchanged.
//!
//! Control characters would end a playlist line, a log line or a header: no name or language
//! may hold one, wherever it comes from ([`check_name`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use super::excerpt;

/// Why a name, or the URL text of one, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A control character (U+0000–U+001F, U+007F, U+0080–U+009F).
    #[error("control character {} in {field} {}", .character.escape_debug(), excerpt(.value))]
    ControlCharacter {
        /// What the value is (`trackName`, `systemLanguage`, …).
        field: &'static str,
        /// The whole value.
        value: String,
        /// The first control character in it.
        character: char,
    },
    /// A `%` in a name's URL text not followed by two hex digits.
    #[error("bad percent escape in the track name {}", excerpt(.0))]
    BadEscape(String),
    /// A name's URL text that is not UTF-8 once decoded.
    #[error("the track name {} is not UTF-8 once decoded", excerpt(.0))]
    NotUtf8(String),
}

impl NameError {
    /// A fixed description, for errors that carry only a static reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NameError::ControlCharacter { .. } => "control character in a track name",
            NameError::BadEscape(_) => "bad percent escape in a track name",
            NameError::NotUtf8(_) => "track name is not UTF-8 once decoded",
        }
    }
}

/// True for the characters no name may hold: Unicode's `Cc` category, that is U+0000–U+001F,
/// U+007F and U+0080–U+009F (C1 controls include NEL, a line break to some readers).
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control()
}

/// Refuses a track name or language holding a control character. `field` names the value in
/// the error (`trackName`, `systemLanguage`). Every place a name enters (server manifests,
/// MP4 files, live ingest) passes it through here.
pub fn check_name(field: &'static str, value: &str) -> Result<(), NameError> {
    match value.chars().find(|&c| is_forbidden_in_name(c)) {
        None => Ok(()),
        Some(character) => Err(NameError::ControlCharacter {
            field,
            value: value.to_string(),
            character,
        }),
    }
}

/// RFC 3986 §2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The URL text of a name: each byte outside `unreserved` as `%25XX` (uppercase hex), so that
/// after nginx's one decode the router sees `%XX`. Borrowed when nothing needs encoding.
pub fn encode_name(name: &str) -> Cow<'_, str> {
    if name.bytes().all(is_unreserved) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() * 5);
    for b in name.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%25{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// A name from its URL text as the router sees it (after nginx's decode): each `%XX` becomes
/// the byte `XX`, once. Refuses a `%` without two hex digits, a result that is not UTF-8 and
/// one holding a control character (no track has such a name).
pub fn decode_name(text: &str) -> Result<String, NameError> {
    if !text.contains('%') {
        check_name("track name", text)?;
        return Ok(text.to_string());
    }
    let out = super::query::percent_decode(text.as_bytes(), false)
        .ok_or_else(|| NameError::BadEscape(text.to_string()))?;
    let name = String::from_utf8(out).map_err(|_| NameError::NotUtf8(text.to_string()))?;
    check_name("track name", &name)?;
    Ok(name)
}

#[cfg(test)]
mod tests;
