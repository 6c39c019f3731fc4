//! Reading a server manifest with quick-xml's event reader.
//!
//! One pass over the events with a stack of element contexts: each recognised element is only
//! recognised under its SMIL parent (`meta` in `head`, tracks in `body` or `switch`, `param` in
//! a track); anything else is skipped together with its subtree, but still counts towards the
//! nesting limit. Element and attribute names match on their local name, ASCII
//! case-insensitively (IIS writes `valuetype`, SMIL 1.0 `system-bitrate`); the SMIL namespace
//! is not required.

use quick_xml::encoding::Decoder;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::url::check_name;

use super::{
    parse_decimal, Decimal, IsmError, Meta, Param, ServerManifest, TrackEntry, TrackKind,
    MAX_ATTRIBUTE_BYTES, MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_METAS, MAX_PARAMS_PER_TRACK,
    MAX_TRACKS,
};

const UTF8_BOM: &str = "\u{feff}";

pub(super) fn parse(xml: &[u8]) -> Result<ServerManifest, IsmError> {
    if xml.len() > MAX_MANIFEST_BYTES {
        return Err(too_large("bytes of input", MAX_MANIFEST_BYTES));
    }
    let text = std::str::from_utf8(xml).map_err(|e| IsmError::NotUtf8 {
        position: e.valid_up_to() as u64,
    })?;
    // Strip the BOM ourselves so reported positions stay offsets into `xml`.
    let (base, text) = match text.strip_prefix(UTF8_BOM) {
        Some(rest) => (UTF8_BOM.len() as u64, rest),
        None => (0, text),
    };
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    reader.config_mut().check_end_names = true;

    let mut parser = Parser {
        text,
        base,
        decoder: reader.decoder(),
        stack: Vec::new(),
        root: RootState::NotSeen,
        manifest: ServerManifest::default(),
        track: None,
        group: String::new(),
    };
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|e| IsmError::Xml {
            position: base + reader.error_position(),
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) => parser.open(&e, parser.element_position(before), false)?,
            Event::Empty(e) => parser.open(&e, parser.element_position(before), true)?,
            Event::End(_) => parser.close()?,
            Event::Eof => return parser.finish(),
            // Text, CDATA, comments, processing instructions, the declaration and a DOCTYPE
            // carry nothing for us (quick-xml never expands DOCTYPE entities).
            _ => {}
        }
    }
}

/// Where an open element was recognised, which decides what its children may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Smil,
    Head,
    /// `<paramGroup id=…>` in `head`: its metas are named `<id>.<name>`.
    ParamGroup,
    Body,
    Switch,
    Track,
    /// Unknown element, or the inside of `meta` / `param`: its subtree is skipped.
    Skipped,
}

/// An open element on the stack.
struct Open {
    context: Context,
    name: String,
    position: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootState {
    NotSeen,
    Open,
    Closed,
}

/// A track whose params are still being read. `kind` is `None` for a `<ref>` until its
/// `trackType` param is known.
struct PendingTrack {
    element: &'static str,
    kind: Option<TrackKind>,
    position: u64,
    entry: TrackEntry,
}

struct Parser<'a> {
    text: &'a str,
    base: u64,
    decoder: Decoder,
    stack: Vec<Open>,
    root: RootState,
    manifest: ServerManifest,
    track: Option<PendingTrack>,
    /// The id of the `paramGroup` being read.
    group: String,
}

/// Params whose value becomes a track's name in URLs and playlists.
const NAME_PARAMS: [&str; 1] = ["trackName"];

/// The track elements, by local name.
const TRACK_ELEMENTS: [(&str, Option<TrackKind>); 5] = [
    ("video", Some(TrackKind::Video)),
    ("audio", Some(TrackKind::Audio)),
    ("textstream", Some(TrackKind::Text)),
    ("text", Some(TrackKind::Text)),
    ("ref", None),
];

impl Parser<'_> {
    /// Offset of the `<` of the element just read: the reader's position before the event,
    /// past the whitespace that text trimming swallowed.
    fn element_position(&self, before: u64) -> u64 {
        let start = usize::try_from(before).unwrap_or(usize::MAX);
        let skipped = self.text.as_bytes().get(start..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_whitespace()).count()
        });
        self.base + before + skipped as u64
    }

    fn open(&mut self, e: &BytesStart<'_>, position: u64, empty: bool) -> Result<(), IsmError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_large("levels of element nesting", MAX_DEPTH));
        }
        let local = e.local_name();
        let name = String::from_utf8_lossy(local.as_ref());
        let parent = self.stack.last().map(|o| o.context);
        let context = match parent {
            None => match self.root {
                RootState::Closed => {
                    return Err(IsmError::Xml {
                        position,
                        message: format!("element <{name}> after the root element"),
                    })
                }
                RootState::NotSeen | RootState::Open => {
                    if !name.eq_ignore_ascii_case("smil") {
                        return Err(IsmError::NotSmil {
                            found: name.into_owned(),
                        });
                    }
                    self.root = if empty {
                        RootState::Closed
                    } else {
                        RootState::Open
                    };
                    Context::Smil
                }
            },
            Some(Context::Smil) if name.eq_ignore_ascii_case("head") => Context::Head,
            Some(Context::Smil) if name.eq_ignore_ascii_case("body") => Context::Body,
            Some(Context::Head) if name.eq_ignore_ascii_case("meta") => {
                self.meta(e, position, None)?;
                Context::Skipped
            }
            Some(Context::Head) if name.eq_ignore_ascii_case("paramGroup") => {
                let [id] = self.attributes(e, "paramGroup", position, [&["id"]])?;
                self.group = id.ok_or(IsmError::MissingAttribute {
                    element: "paramGroup",
                    attribute: "id",
                    position,
                })?;
                Context::ParamGroup
            }
            Some(Context::ParamGroup) if name.eq_ignore_ascii_case("meta") => {
                let group = self.group.clone();
                self.meta(e, position, Some(&group))?;
                Context::Skipped
            }
            Some(Context::Body | Context::Switch) if name.eq_ignore_ascii_case("switch") => {
                Context::Switch
            }
            Some(Context::Body | Context::Switch) => {
                match TRACK_ELEMENTS
                    .iter()
                    .find(|(element, _)| name.eq_ignore_ascii_case(element))
                {
                    Some(&(element, kind)) => {
                        self.start_track(e, element, kind, position)?;
                        if empty {
                            self.finish_track()?;
                        }
                        Context::Track
                    }
                    None => Context::Skipped,
                }
            }
            Some(Context::Track) if name.eq_ignore_ascii_case("param") => {
                self.param(e, position)?;
                Context::Skipped
            }
            Some(_) => Context::Skipped,
        };
        if !empty {
            self.stack.push(Open {
                context,
                name: name.into_owned(),
                position,
            });
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), IsmError> {
        // quick-xml has checked the end name against the open one.
        match self.stack.pop().map(|o| o.context) {
            Some(Context::Track) => self.finish_track(),
            Some(Context::Smil) => {
                self.root = RootState::Closed;
                Ok(())
            }
            Some(_) | None => Ok(()),
        }
    }

    fn finish(self) -> Result<ServerManifest, IsmError> {
        if let Some(open) = self.stack.last() {
            return Err(IsmError::Xml {
                position: self.base + self.text.len() as u64,
                message: format!(
                    "unexpected end of input: <{}> opened at byte {} is not closed",
                    open.name, open.position
                ),
            });
        }
        match self.root {
            RootState::NotSeen => Err(IsmError::NotSmil {
                found: String::new(),
            }),
            RootState::Open | RootState::Closed => Ok(self.manifest),
        }
    }

    /// A `head` meta, or one of a `paramGroup` (named `<group>.<name>`).
    fn meta(
        &mut self,
        e: &BytesStart<'_>,
        position: u64,
        group: Option<&str>,
    ) -> Result<(), IsmError> {
        if self.manifest.metas.len() >= MAX_METAS {
            return Err(too_large("meta elements", MAX_METAS));
        }
        let [name, content] = self.attributes(e, "meta", position, [&["name"], &["content"]])?;
        let name = name.ok_or(IsmError::MissingAttribute {
            element: "meta",
            attribute: "name",
            position,
        })?;
        let name = match group {
            Some(group) => format!("{group}.{name}"),
            None => name,
        };
        self.manifest.metas.push(Meta {
            name,
            content: content.unwrap_or_default(),
        });
        Ok(())
    }

    fn start_track(
        &mut self,
        e: &BytesStart<'_>,
        element: &'static str,
        kind: Option<TrackKind>,
        position: u64,
    ) -> Result<(), IsmError> {
        if self.manifest.tracks.len() >= MAX_TRACKS {
            return Err(too_large("track elements", MAX_TRACKS));
        }
        let [src, bitrate, language] = self.attributes(
            e,
            element,
            position,
            [
                &["src"],
                &["systemBitrate", "system-bitrate"],
                &["systemLanguage", "system-language"],
            ],
        )?;
        let src = src.ok_or(IsmError::MissingAttribute {
            element,
            attribute: "src",
            position,
        })?;
        if let Some(language) = &language {
            check_name("systemLanguage", language).map_err(|error| IsmError::BadName {
                element,
                error,
                position,
            })?;
        }
        if src.is_empty() {
            return Err(IsmError::BadValue {
                element,
                attribute: "src",
                value: src,
                reason: "it must not be empty",
                position,
            });
        }
        let system_bitrate = match bitrate {
            None => None,
            Some(value) => match parse_decimal(&value) {
                Decimal::Value(v) => Some(v),
                Decimal::NotANumber => {
                    return Err(IsmError::BadValue {
                        element,
                        attribute: "systemBitrate",
                        value,
                        reason: "it must be a non-negative decimal integer",
                        position,
                    })
                }
                Decimal::Overflow => {
                    return Err(IsmError::BadValue {
                        element,
                        attribute: "systemBitrate",
                        value,
                        reason: "it does not fit in 64 bits",
                        position,
                    })
                }
            },
        };
        self.track = Some(PendingTrack {
            element,
            kind,
            position,
            entry: TrackEntry {
                // Placeholder until a `<ref>`'s trackType is known; replaced in finish_track.
                kind: kind.unwrap_or(TrackKind::Text),
                src,
                system_bitrate,
                system_language: language,
                params: Vec::new(),
            },
        });
        Ok(())
    }

    fn finish_track(&mut self) -> Result<(), IsmError> {
        let Some(pending) = self.track.take() else {
            return Ok(());
        };
        let mut entry = pending.entry;
        entry.kind = match pending.kind {
            Some(kind) => kind,
            None => {
                let track_type = entry.param("trackType").unwrap_or_default();
                match TrackKind::from_track_type(track_type) {
                    Some(kind) => kind,
                    None => {
                        return Err(IsmError::BadValue {
                            element: pending.element,
                            attribute: "trackType",
                            value: track_type.to_owned(),
                            reason: "a <ref> needs a trackType param of video, audio or text",
                            position: pending.position,
                        })
                    }
                }
            }
        };
        self.manifest.tracks.push(entry);
        Ok(())
    }

    fn param(&mut self, e: &BytesStart<'_>, position: u64) -> Result<(), IsmError> {
        let [name, value] = self.attributes(e, "param", position, [&["name"], &["value"]])?;
        let Some(track) = self.track.as_mut() else {
            return Ok(());
        };
        if track.entry.params.len() >= MAX_PARAMS_PER_TRACK {
            return Err(too_large("params in one track", MAX_PARAMS_PER_TRACK));
        }
        let name = name.ok_or(IsmError::MissingAttribute {
            element: "param",
            attribute: "name",
            position,
        })?;
        let value = value.unwrap_or_default();
        if let Some(field) = NAME_PARAMS
            .iter()
            .find(|field| name.eq_ignore_ascii_case(field))
        {
            check_name(field, &value).map_err(|error| IsmError::BadName {
                element: "param",
                error,
                position,
            })?;
        }
        track.entry.params.push(Param { name, value });
        Ok(())
    }

    /// The unescaped values of the wanted attributes (each listed with its accepted spellings);
    /// other attributes are ignored. The first occurrence of a wanted attribute wins.
    fn attributes<const N: usize>(
        &self,
        e: &BytesStart<'_>,
        element: &'static str,
        position: u64,
        wanted: [&[&str]; N],
    ) -> Result<[Option<String>; N], IsmError> {
        let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
        for attribute in e.attributes() {
            let attribute = attribute.map_err(|err| IsmError::Xml {
                position,
                message: format!("<{element}>: {err}"),
            })?;
            let key = attribute.key.local_name();
            let Some(index) = wanted.iter().position(|spellings| {
                spellings
                    .iter()
                    .any(|s| key.as_ref().eq_ignore_ascii_case(s.as_bytes()))
            }) else {
                continue;
            };
            if attribute.value.len() > MAX_ATTRIBUTE_BYTES {
                return Err(too_large(
                    "bytes in one attribute value",
                    MAX_ATTRIBUTE_BYTES,
                ));
            }
            let Some(slot) = found.get_mut(index) else {
                continue;
            };
            if slot.is_some() {
                continue;
            }
            let value = attribute
                .decode_and_unescape_value(self.decoder)
                .map_err(|err| IsmError::Xml {
                    position,
                    message: format!(
                        "<{element}> attribute {}: {err}",
                        String::from_utf8_lossy(key.as_ref())
                    ),
                })?;
            // XML 1.0 (§2.2) allows no NUL and no C0 control other than tab, LF and CR, raw
            // or as a character reference; such a value could not be written back either.
            if value
                .chars()
                .any(|c| (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(IsmError::Xml {
                    position,
                    message: format!(
                        "<{element}> attribute {}: control character not allowed in XML",
                        String::from_utf8_lossy(key.as_ref())
                    ),
                });
            }
            *slot = Some(value.into_owned());
        }
        Ok(found)
    }
}

fn too_large(what: &'static str, limit: usize) -> IsmError {
    IsmError::TooLarge {
        what,
        limit: limit as u64,
    }
}
