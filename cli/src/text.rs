//! `ismtool text`: a WebVTT or TTML subtitle file packaged as a fragmented CMAF text track
//! (`.cmft`), ready to list in a server manifest next to the audio and video.

use std::path::{Path, PathBuf};

use origin_core::text::cmaf::{text_track, TextFormat, TextTrackOptions};
use origin_core::text::{ttml, webvtt, Cue};

/// What the command line asked for.
pub struct TextArgs<'a> {
    pub input: &'a Path,
    pub output: Option<&'a Path>,
    pub format: Option<&'a str>,
    pub language: &'a str,
    pub fragment_secs: f64,
}

pub fn run(args: &TextArgs<'_>) -> Result<(), String> {
    let input = args.input;
    let data = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let is_webvtt = data
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(&data)
        .starts_with(b"WEBVTT");
    let cues: Vec<Cue> = if is_webvtt {
        webvtt::parse(&data)
    } else {
        ttml::cues(&data, 0, u64::MAX)
    }
    .map_err(|e| format!("{}: {e}", input.display()))?;
    if let Some(open) = cues.iter().find(|c| c.end_ms == u64::MAX) {
        return Err(format!(
            "{}: the paragraph {:?} has no end time",
            input.display(),
            open.text
        ));
    }
    let format = match args.format {
        Some("wvtt") | Some("webvtt") => TextFormat::Wvtt,
        Some("stpp") | Some("ttml") => TextFormat::Stpp,
        Some(other) => return Err(format!("unknown text format {other:?} (wvtt or stpp)")),
        None if is_webvtt => TextFormat::Wvtt,
        None => TextFormat::Stpp,
    };
    let language = args.language;
    let valid_language = !language.is_empty()
        && language.len() <= 35
        && language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_language {
        return Err(format!(
            "invalid language {language:?} (an ISO 639-2 code such as eng, or a BCP 47 tag)"
        ));
    }
    if !(args.fragment_secs.is_finite()
        && args.fragment_secs >= 0.1
        && args.fragment_secs <= 3600.0)
    {
        return Err("--fragment must be between 0.1 and 3600 seconds".into());
    }
    let output: PathBuf = args
        .output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| input.with_extension("cmft"));
    let bytes = text_track(
        &cues,
        &TextTrackOptions {
            format,
            language: language.to_string(),
            fragment_ms: (args.fragment_secs * 1000.0).round() as u64,
        },
    )
    .map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::write(&output, &bytes).map_err(|e| format!("{}: {e}", output.display()))?;
    let end = cues.iter().map(|c| c.end_ms).max().unwrap_or(0);
    println!(
        "wrote {} ({} cues, {}, language {language}, {:.3} s, {} bytes)",
        output.display(),
        cues.len(),
        match format {
            TextFormat::Wvtt => "wvtt",
            TextFormat::Stpp => "stpp",
        },
        end as f64 / 1000.0,
        bytes.len()
    );
    Ok(())
}
