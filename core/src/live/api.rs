//! The Live API's reports on a channel: `state`, `archive` and `statistics` (docs/COMPAT.md §5).

use std::fmt::Write as _;
use std::io;

use super::archive::TrackStats;
use super::channel::{ChannelSnapshot, TrackArchive};
use crate::markup::{iso8601_utc, xml_escape};

const SMIL_HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\">\n";

/// `<ch>.isml/state`: `idle`, `started` or `stopped`, and when the channel last changed.
pub fn state(channel: &ChannelSnapshot) -> String {
    format!(
        "{SMIL_HEAD}  <head>\n    <meta name=\"updated\" content=\"{}\"/>\n    <meta name=\"state\" content=\"{}\"/>\n  </head>\n</smil>\n",
        iso8601_utc(channel.updated_ms()),
        channel.state()
    )
}

/// `<ch>.isml/time`: the time `now_ms` as an xs:dateTime with milliseconds, the answer
/// `urn:mpeg:dash:utc:http-xsdate:2014` asks for. Players measure the request's round trip
/// around it, so their clocks agree with the origin's within a few milliseconds (the MPD's
/// own `direct` time is as old as the MPD when a player reads it, up to an update period).
pub fn clock(now_ms: i64) -> String {
    iso8601_utc(now_ms)
}

fn element(t: &TrackArchive) -> &'static str {
    match t.info.kind {
        crate::index::TrackKind::Video => "video",
        crate::index::TrackKind::Audio => "audio",
        _ => "textstream",
    }
}

/// Wall-clock time of a media time.
fn wall_clock(channel: &ChannelSnapshot, ticks: u64, timescale: u32) -> i64 {
    channel.anchor_ms + (u128::from(ticks) * 1000 / u128::from(timescale.max(1))) as i64
}

/// The ranges of media a track holds: runs of fragments each starting where the previous
/// ended (within a millisecond), as (start, end) in its timescale. Records older than the ones
/// kept in memory are read from the file a chunk at a time, the first time only.
pub fn ranges(t: &TrackArchive) -> io::Result<Vec<(u64, u64)>> {
    t.records.runs(u64::from(t.timescale) / 1000)
}

/// `<ch>.isml/archive`: per track, the time ranges the archive holds (a gap shows as two
/// ranges).
pub fn archive(channel: &ChannelSnapshot) -> io::Result<String> {
    let mut x = String::from(SMIL_HEAD);
    x.push_str("  <body>\n    <switch>\n");
    for t in &channel.tracks {
        let _ = writeln!(
            x,
            "      <{} systemBitrate=\"{}\">\n        <param name=\"trackName\" value=\"{}\" valueType=\"data\"/>",
            element(t),
            t.info.bitrate,
            xml_escape(&t.info.name)
        );
        for (start, end) in ranges(t)? {
            let _ = writeln!(
                x,
                "        <c start=\"{}\" end=\"{}\"/>",
                iso8601_utc(wall_clock(channel, start, t.timescale)),
                iso8601_utc(wall_clock(channel, end, t.timescale))
            );
        }
        let _ = writeln!(x, "      </{}>", element(t));
    }
    x.push_str("    </switch>\n  </body>\n</smil>\n");
    Ok(x)
}

/// One track's line of the statistics.
struct TrackReport<'a> {
    track: &'a TrackArchive,
    stats: TrackStats,
    encoder: String,
}

fn reports(channel: &ChannelSnapshot) -> Vec<TrackReport<'_>> {
    channel
        .tracks
        .iter()
        .map(|track| {
            let dir = channel.archive_dir.join(&track.dir_name);
            TrackReport {
                track,
                stats: TrackStats::read(&dir),
                encoder: std::fs::read_to_string(dir.join("encoder")).unwrap_or_default(),
            }
        })
        .collect()
}

/// `<ch>.isml/statistics`: per track, what ingest received and dropped. XML, or JSON.
pub fn statistics(channel: &ChannelSnapshot, json: bool) -> String {
    let reports = reports(channel);
    if json {
        let mut x = format!(
            "{{\"state\":\"{}\",\"updated\":\"{}\",\"tracks\":[",
            channel.state(),
            iso8601_utc(channel.updated_ms())
        );
        for (i, r) in reports.iter().enumerate() {
            let _ = write!(
                x,
                "{}{{\"trackName\":{},\"type\":\"{}\",\"bitrate\":{},\"fragments\":{},\"bytes\":{},\"duplicates\":{},\"errors\":{},\"lastFragment\":\"{}\",\"encoder\":{}}}",
                if i > 0 { "," } else { "" },
                json_string(&r.track.info.name),
                element(r.track),
                r.track.info.bitrate,
                r.stats.fragments,
                r.stats.bytes,
                r.stats.duplicates,
                r.stats.errors,
                iso8601_utc(r.stats.last_ms),
                json_string(&r.encoder)
            );
        }
        x.push_str("]}\n");
        return x;
    }
    let mut x = String::from(SMIL_HEAD);
    let _ = writeln!(
        x,
        "  <head>\n    <meta name=\"state\" content=\"{}\"/>\n    <meta name=\"updated\" content=\"{}\"/>\n  </head>\n  <body>\n    <switch>",
        channel.state(),
        iso8601_utc(channel.updated_ms())
    );
    for r in &reports {
        let _ = writeln!(
            x,
            "      <{} systemBitrate=\"{}\">",
            element(r.track),
            r.track.info.bitrate
        );
        for (name, value) in [
            ("trackName", xml_escape(&r.track.info.name)),
            ("fragments", r.stats.fragments.to_string()),
            ("bytes", r.stats.bytes.to_string()),
            ("duplicates", r.stats.duplicates.to_string()),
            ("errors", r.stats.errors.to_string()),
            ("lastFragment", iso8601_utc(r.stats.last_ms)),
            ("encoder", xml_escape(&r.encoder)),
        ] {
            let _ = writeln!(
                x,
                "        <param name=\"{name}\" value=\"{value}\" valueType=\"data\"/>"
            );
        }
        let _ = writeln!(x, "      </{}>", element(r.track));
    }
    x.push_str("    </switch>\n  </body>\n</smil>\n");
    x
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
