//! Server manifests (`.ism` for VOD, `.isml` for a live publishing point): the SMIL 2.0 file
//! that lists a presentation's tracks and the options its operator set (docs/COMPAT.md §3).
//!
//! ```xml
//! <smil xmlns="http://www.w3.org/2001/SMIL20/Language">
//!   <head>
//!     <meta name="hls_client_manifest_version" content="4" />
//!   </head>
//!   <body>
//!     <switch>
//!       <video src="video-400k.ismv" systemBitrate="401000">
//!         <param name="trackID" value="1" valueType="data" />
//!       </video>
//!     </switch>
//!   </body>
//! </smil>
//! ```
//!
//! [`ServerManifest::parse`] reads one (as mp4split, IIS or a hand editor wrote it),
//! [`ServerManifest::to_xml`] writes one in a single stable layout, and
//! [`ServerManifest::options`] gives typed access to the metas the packagers honour. A track's
//! `src` is only text here: [`resolve_src`] decides whether it may be opened, so a manifest can
//! never point outside its own directory tree.
//!
//! The file comes from disk or from an operator's HTTP PUT, so every count read from it is
//! capped (see the `MAX_*` constants) and every error names the element, the attribute and the
//! byte position.

mod options;
mod parse;
mod source;
mod write;

#[cfg(test)]
mod tests;

pub use options::{
    FragmentLength, HlsAdMarkers, MpdEvents, PresentationOptions, HLS_AD_MARKERS_VALUES,
    MPD_EVENTS_VALUES,
};
pub use source::{climbs, is_within, join_relative, resolve_src, SourceRef};

use crate::url::{excerpt, NameError};

/// Largest manifest accepted, in bytes. Real ones are a few KiB; the glue can use this to cap
/// its read.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most track elements (`video` / `audio` / `textstream` / `ref`) in one manifest.
pub const MAX_TRACKS: usize = 1024;
/// Most `param` elements in one track.
pub const MAX_PARAMS_PER_TRACK: usize = 256;
/// Most `meta` elements in one manifest.
pub const MAX_METAS: usize = 1024;
/// Deepest element nesting, counting the root `smil` as 1.
pub const MAX_DEPTH: usize = 32;
/// Longest raw (still escaped) attribute value of a recognised element, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 64 * 1024;

/// A parsed server manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerManifest {
    /// `<head><meta name= content=>` options, in document order.
    pub metas: Vec<Meta>,
    /// The tracks of `<body><switch>`, in document order.
    pub tracks: Vec<TrackEntry>,
}

/// One `<meta name="…" content="…"/>` of `<head>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// Option name, e.g. `hls_client_manifest_version` (CLI `--hls.client_manifest_version`).
    pub name: String,
    /// Option value; `""` when the attribute is absent (a bare flag).
    pub content: String,
}

/// What a track element carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// `<video>`
    Video,
    /// `<audio>`
    Audio,
    /// `<textstream>` (subtitles, captions, timed metadata carried as text). `<text>` is read
    /// as this too.
    Text,
}

impl TrackKind {
    /// The SMIL element name this kind is written as.
    pub fn element_name(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
            TrackKind::Text => "textstream",
        }
    }

    /// The kind named by a `trackType` param value (`video`, `audio`, `text`, `textstream`,
    /// `subtitle`; ASCII case-insensitive), as a `<ref>` element needs.
    pub fn from_track_type(value: &str) -> Option<TrackKind> {
        const NAMES: [(&str, TrackKind); 5] = [
            ("video", TrackKind::Video),
            ("audio", TrackKind::Audio),
            ("text", TrackKind::Text),
            ("textstream", TrackKind::Text),
            ("subtitle", TrackKind::Text),
        ];
        NAMES
            .iter()
            .find(|(name, _)| value.eq_ignore_ascii_case(name))
            .map(|&(_, kind)| kind)
    }
}

/// One track element of `<switch>`.
///
/// A `<ref>` element is accepted on input when it has a `trackType` param naming its kind
/// (see [`TrackKind::from_track_type`]); it is written back as the element of that kind. Track
/// attributes other than `src`, `systemBitrate` and `systemLanguage` are not kept.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackEntry {
    /// Element kind.
    pub kind: TrackKind,
    /// Where the media is: a path relative to the manifest, or an `http(s)://` / `s3://` URL.
    /// Not validated by parsing: pass it through [`resolve_src`] before opening anything.
    pub src: String,
    /// `systemBitrate`, bits per second.
    pub system_bitrate: Option<u64>,
    /// `systemLanguage` (RFC 5646 / ISO 639 code, as written).
    pub system_language: Option<String>,
    /// `<param>` children, in document order.
    pub params: Vec<Param>,
}

/// One `<param name="…" value="…" valueType="data"/>` of a track.
///
/// `valueType` is always written as `data`; any other value is accepted on input and dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Parameter name, e.g. `trackID`, `TimeScale`, `CodecPrivateData`.
    pub name: String,
    /// Parameter value; `""` when the attribute is absent.
    pub value: String,
}

/// Why a server manifest could not be read, or one of its values used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsmError {
    /// The XML itself is broken (unclosed tag, mismatched end tag, bad escape, …).
    #[error("server manifest: malformed XML at byte {position}: {message}")]
    Xml {
        /// Byte offset of the problem in the input.
        position: u64,
        /// quick-xml's description, or ours.
        message: String,
    },
    /// The input is not UTF-8.
    #[error("server manifest: invalid UTF-8 at byte {position}")]
    NotUtf8 {
        /// Offset of the first byte that is not part of a valid UTF-8 sequence.
        position: u64,
    },
    /// The root element is not `<smil>` (`found` is empty when there is no element at all).
    #[error("server manifest: the root element must be <smil>, found <{found}>")]
    NotSmil {
        /// Local name of the root element found.
        found: String,
    },
    /// A required attribute is absent.
    #[error("server manifest: <{element}> at byte {position} has no {attribute} attribute")]
    MissingAttribute {
        /// Element local name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
        /// Byte offset of the element's `<`.
        position: u64,
    },
    /// An attribute (or, for `<ref>`, the `trackType` param) has a value that cannot be used.
    #[error(
        "server manifest: <{element}> at byte {position}: invalid {attribute}: {reason}, got {}",
        excerpt(.value)
    )]
    BadValue {
        /// Element local name.
        element: &'static str,
        /// Attribute (or param) name.
        attribute: &'static str,
        /// The value, unescaped.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
        /// Byte offset of the element's `<`.
        position: u64,
    },
    /// A track name or language that no playlist, URL or log line may carry.
    #[error("server manifest: <{element}> at byte {position}: {error}")]
    BadName {
        /// Element local name (`param` for a `trackName`).
        element: &'static str,
        /// What is wrong, naming the attribute or param.
        error: NameError,
        /// Byte offset of the element's `<`.
        position: u64,
    },
    /// A limit protecting the parser was exceeded.
    #[error("server manifest: too large: more than {limit} {what}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A track `src` that must not be opened.
    #[error("server manifest: track src refused: {reason}: {}", excerpt(.src))]
    BadSrc {
        /// The src as written.
        src: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A meta whose content does not fit the option it sets.
    #[error(
        "server manifest: invalid meta {}: {reason}, got {}",
        excerpt(.name),
        excerpt(.value)
    )]
    BadMeta {
        /// Meta name.
        name: String,
        /// Meta content.
        value: String,
        /// What the option expects.
        reason: &'static str,
    },
}

impl ServerManifest {
    /// Parses a server manifest. See the module documentation for what is accepted.
    pub fn parse(xml: &[u8]) -> Result<ServerManifest, IsmError> {
        parse::parse(xml)
    }

    /// Writes the manifest as XML in one stable layout (2-space indent, fixed attribute order),
    /// so that `to_xml` of a parsed `to_xml` output is byte-identical.
    ///
    /// NUL characters cannot be represented in XML 1.0 and are left out; every other character
    /// survives a round trip (control characters become character references).
    pub fn to_xml(&self) -> String {
        write::write(self)
    }

    /// Content of the first meta with this name (ASCII case-insensitive).
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metas
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .map(|m| m.content.as_str())
    }

    /// Sets the content of the first meta with this name (ASCII case-insensitive), or appends
    /// a new meta.
    pub fn set_meta(&mut self, name: &str, content: &str) {
        match self
            .metas
            .iter_mut()
            .find(|m| m.name.eq_ignore_ascii_case(name))
        {
            Some(m) => content.clone_into(&mut m.content),
            None => self.metas.push(Meta {
                name: name.to_owned(),
                content: content.to_owned(),
            }),
        }
    }

    /// True for a manifest without tracks: a live publishing point before any encoder has
    /// pushed (`mp4split -o ch.isml [options]` writes only metas).
    pub fn is_live_point(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The typed options of the metas, validated.
    pub fn options(&self) -> Result<PresentationOptions, IsmError> {
        options::from_metas(&self.metas)
    }
}

impl TrackEntry {
    /// A track with no bitrate, language or params.
    pub fn new(kind: TrackKind, src: &str) -> TrackEntry {
        TrackEntry {
            kind,
            src: src.to_owned(),
            system_bitrate: None,
            system_language: None,
            params: Vec::new(),
        }
    }

    /// Value of the first param with this name, ASCII case-insensitive (mp4split writes
    /// `timeScale`, IIS `TimeScale`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    }

    /// Sets the value of the first param with this name (ASCII case-insensitive; the existing
    /// spelling of the name is kept), or appends a new param.
    pub fn set_param(&mut self, name: &str, value: &str) {
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => value.clone_into(&mut p.value),
            None => self.params.push(Param {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
        }
    }

    /// The `trackID` param, if present and a plain decimal `u32`.
    pub fn track_id(&self) -> Option<u32> {
        self.param("trackID").and_then(parse_decimal_u32)
    }

    /// The `trackName` param.
    pub fn track_name(&self) -> Option<&str> {
        self.param("trackName")
    }
}

/// Outcome of reading a decimal number written as ASCII digits only (no sign, no spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decimal {
    Value(u64),
    NotANumber,
    Overflow,
}

fn parse_decimal(s: &str) -> Decimal {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Decimal::NotANumber;
    }
    match s.parse::<u64>() {
        Ok(v) => Decimal::Value(v),
        Err(_) => Decimal::Overflow,
    }
}

fn parse_decimal_u32(s: &str) -> Option<u32> {
    match parse_decimal(s) {
        Decimal::Value(v) => u32::try_from(v).ok(),
        Decimal::NotANumber | Decimal::Overflow => None,
    }
}
