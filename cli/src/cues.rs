//! `ismtool cues`: an operator's cue list (JSON, or lines of time and SCTE-35 section) made
//! into a timed-metadata track (an ISO/IEC 23001-18 event message track) to list in a server
//! manifest beside a title's audio and video, so that its ad breaks reach every format.

use std::path::{Path, PathBuf};

use origin_core::events::{checked, event_track_file, TimedEvent};
use origin_core::mp4::emsg::{TrackEvent, SCTE35_BIN};
use origin_core::scte35;

/// Ticks per second of the track: SCTE-35's own clock, so cue times stay exact.
const TIMESCALE: u32 = 90_000;

/// What the command line asked for.
pub struct CuesArgs<'a> {
    pub input: &'a Path,
    pub output: Option<&'a Path>,
    /// Seconds the track lasts at least (the title's duration).
    pub duration: Option<f64>,
    pub fragment_secs: f64,
}

pub fn run(args: &CuesArgs<'_>) -> Result<(), String> {
    let input = args.input;
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let events = parse_list(&text).map_err(|e| format!("{}: {e}", input.display()))?;
    if !(args.fragment_secs.is_finite()
        && args.fragment_secs >= 0.1
        && args.fragment_secs <= 3600.0)
    {
        return Err("--fragment must be between 0.1 and 3600 seconds".into());
    }
    let ticks = |secs: f64| (secs * f64::from(TIMESCALE)).round() as u64;
    let end = match args.duration {
        Some(d) if d.is_finite() && d > 0.0 && d < 7.0 * 86_400.0 => ticks(d),
        Some(d) => return Err(format!("--duration {d}: not a duration in seconds")),
        None => 0,
    };
    let output: PathBuf = args
        .output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| input.with_extension("mp4"));
    let bytes = event_track_file(&events, TIMESCALE, ticks(args.fragment_secs), end);
    std::fs::write(&output, &bytes).map_err(|e| format!("{}: {e}", output.display()))?;
    println!(
        "wrote {} ({} cues, {} bytes)",
        output.display(),
        events.len(),
        bytes.len()
    );
    Ok(())
}

/// The cues of a list: a JSON array of objects, or lines `<seconds> <section>` (the section
/// in base64 or as `0x` hex; `#` starts a comment). Each cue is checked as ingest checks one.
pub fn parse_list(text: &str) -> Result<Vec<TrackEvent>, String> {
    let trimmed = text.trim_start();
    let mut events = if trimmed.starts_with('[') {
        let list: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("not a JSON cue list: {e}"))?;
        list.as_array()
            .ok_or("a JSON cue list is an array")?
            .iter()
            .enumerate()
            .map(|(k, v)| json_cue(v).map_err(|e| format!("cue {}: {e}", k + 1)))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (time, section) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("line {}: expected <seconds> <section>", n + 1))?;
            let cue = (|| {
                let time = seconds(time)?;
                cue(time, None, None, section_bytes(section.trim())?)
            })()
            .map_err(|e| format!("line {}: {e}", n + 1))?;
            out.push(cue);
        }
        out
    };
    events.sort_by_key(|e| e.start);
    Ok(events)
}

/// One object of a JSON list: `time` (seconds) and either `scte35` (the section, base64 or
/// `0x` hex) or `out` (true: a break starts; false: it ends) with an optional `id` (the
/// splice event) and `duration` (seconds), from which a `splice_insert` is made.
fn json_cue(v: &serde_json::Value) -> Result<TrackEvent, String> {
    let number = |key: &str| v.get(key).and_then(serde_json::Value::as_f64);
    let time = number("time").ok_or("no time (seconds)")?;
    if !time.is_finite() || time < 0.0 {
        return Err(format!("time {time}: not a time in seconds"));
    }
    let duration = match number("duration") {
        Some(d) if d.is_finite() && d > 0.0 => Some(d),
        Some(d) => return Err(format!("duration {d}: not a duration in seconds")),
        None => None,
    };
    let id = match v.get("id") {
        None => None,
        Some(id) => Some(
            id.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("id: a splice event ID is a 32-bit number")?,
        ),
    };
    let section = match (v.get("scte35"), v.get("out")) {
        (Some(s), None) => section_bytes(s.as_str().ok_or("scte35: a string")?)?,
        (None, Some(out)) => {
            let out = out.as_bool().ok_or("out: true or false")?;
            let pts = (time * 90_000.0).round() as u64;
            let break_ticks = duration
                .filter(|_| out)
                .map(|d| (d * 90_000.0).round() as u64);
            scte35::splice_insert_section(id.unwrap_or(1), out, Some(pts), break_ticks)
        }
        _ => return Err("give either scte35 (a section) or out (true or false)".into()),
    };
    cue(time, duration, id, section)
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{s:?}: not a time in seconds")),
    }
}

/// A section written as `0x` hex or base64.
fn section_bytes(s: &str) -> Result<Vec<u8>, String> {
    let bytes = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => {
            origin_core::crypto::parse_hex(hex).ok_or_else(|| format!("{s:?}: not hex"))?
        }
        None => origin_core::base64::decode(s).ok_or_else(|| format!("{s:?}: not base64"))?,
    };
    Ok(bytes)
}

/// A checked cue at `time` seconds.
fn cue(
    time: f64,
    duration: Option<f64>,
    id: Option<u32>,
    section: Vec<u8>,
) -> Result<TrackEvent, String> {
    let ticks = |secs: f64| (secs * f64::from(TIMESCALE)).round() as u64;
    let e = checked(TimedEvent {
        timescale: TIMESCALE,
        time: ticks(time),
        duration: duration.map(ticks),
        id: id.unwrap_or(0),
        scheme_id_uri: SCTE35_BIN.into(),
        value: String::new(),
        message: section,
    })
    .map_err(|e| e.to_string())?;
    Ok(TrackEvent {
        start: e.time,
        duration: e.duration,
        id: e.id,
        scheme_id_uri: e.scheme_id_uri,
        value: e.value,
        message_data: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT_42: &str = "/DAlAAAAAAAAAP/wFAUAAAAqf+/+AA5raP4AKTLgAAEAAAAAK75lwg==";

    #[test]
    fn lists_read_as_json_or_lines() {
        let json = format!(
            r#"[{{"time": 12.5, "out": false, "id": 9}}, {{"time": 4, "scte35": "{OUT_42}"}}]"#
        );
        let cues = parse_list(&json).unwrap();
        assert_eq!(cues.len(), 2);
        assert_eq!(
            (cues[0].start, cues[0].id, cues[0].duration),
            (360_000, 42, Some(2_700_000))
        );
        assert_eq!((cues[1].start, cues[1].id), (1_125_000, 9));
        let lines = format!("# a break\n4.0 {OUT_42}\n\n10 0xFC30\n");
        let err = parse_list(&lines).unwrap_err();
        assert!(err.starts_with("line 4: bad SCTE-35 cue"), "{err}");
        assert_eq!(parse_list(&format!("4.0 {OUT_42}\n")).unwrap().len(), 1);
        assert!(parse_list(r#"[{"time": 1}]"#)
            .unwrap_err()
            .contains("cue 1"));
        assert!(parse_list(r#"[{"time": -1, "out": true}]"#).is_err());
    }
}
