//! Writing a server manifest: one layout, so that parse → write is a normal form.

use super::{ServerManifest, TrackEntry};

const PROLOG: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                      <!--Created with ngx-origin-->\n\
                      <smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\">\n";

pub(super) fn write(manifest: &ServerManifest) -> String {
    let mut out =
        String::with_capacity(512 + 128 * manifest.metas.len() + 1024 * manifest.tracks.len());
    out.push_str(PROLOG);
    out.push_str("  <head>\n");
    // Metas named `<group>.<name>` are written in `<paramGroup id="<group>">`: each run of
    // consecutive metas of one group in one element, so that the order reads back the same.
    let mut open_group: Option<&str> = None;
    for meta in &manifest.metas {
        let group = meta.name.split_once('.');
        if open_group.is_some() && open_group != group.map(|(g, _)| g) {
            out.push_str("    </paramGroup>\n");
            open_group = None;
        }
        match group {
            None => {
                out.push_str("    <meta");
                attribute(&mut out, "name", &meta.name);
                attribute(&mut out, "content", &meta.content);
                out.push_str(" />\n");
            }
            Some((group, name)) => {
                if open_group.is_none() {
                    out.push_str("    <paramGroup");
                    attribute(&mut out, "id", group);
                    out.push_str(">\n");
                    open_group = Some(group);
                }
                out.push_str("      <meta");
                attribute(&mut out, "name", name);
                attribute(&mut out, "content", &meta.content);
                out.push_str(" />\n");
            }
        }
    }
    if open_group.is_some() {
        out.push_str("    </paramGroup>\n");
    }
    out.push_str("  </head>\n  <body>\n    <switch>\n");
    for track in &manifest.tracks {
        write_track(&mut out, track);
    }
    out.push_str("    </switch>\n  </body>\n</smil>\n");
    out
}

fn write_track(out: &mut String, track: &TrackEntry) {
    let element = track.kind.element_name();
    out.push_str("      <");
    out.push_str(element);
    attribute(out, "src", &track.src);
    if let Some(bitrate) = track.system_bitrate {
        attribute(out, "systemBitrate", &bitrate.to_string());
    }
    if let Some(language) = &track.system_language {
        attribute(out, "systemLanguage", language);
    }
    if track.params.is_empty() {
        out.push_str(" />\n");
        return;
    }
    out.push_str(">\n");
    for param in &track.params {
        out.push_str("        <param");
        attribute(out, "name", &param.name);
        attribute(out, "value", &param.value);
        out.push_str(" valueType=\"data\" />\n");
    }
    out.push_str("      </");
    out.push_str(element);
    out.push_str(">\n");
}

/// ` name="value"` with the value escaped for a double-quoted attribute. Tab, newline and
/// carriage return (which a parser would otherwise normalise to spaces) and the other control
/// characters XML 1.0 allows become character references; the C0 controls XML 1.0 forbids
/// (NUL, U+0001..U+001F but those three) cannot be written at all and are dropped, as the
/// parser refuses them.
fn attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c if c.is_control() => {
                out.push_str("&#");
                out.push_str(&u32::from(c).to_string());
                out.push(';');
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
