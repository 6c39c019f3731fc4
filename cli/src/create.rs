//! `ismtool create`: server manifests the way mp4split writes them.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use origin_core::index::TrackKind as MediaKind;
use origin_core::ism::{resolve_src, ServerManifest, TrackEntry, TrackKind};
use origin_core::mp4::codec::MediaInfo;

use crate::media;

const USAGE: &str =
    "usage: ismtool create -o OUTPUT.ism|OUTPUT.isml [INPUT...] [--<fmt>.<option>[=value]...]";

struct Args {
    output: PathBuf,
    inputs: Vec<PathBuf>,
    /// (meta name, value) in command-line order.
    options: Vec<(String, String)>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut output = None;
    let mut inputs = Vec::new();
    let mut options = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Err(USAGE.to_string());
        } else if a == "-o" || a == "--output" {
            output = Some(PathBuf::from(
                it.next().ok_or(format!("{a} needs a file name\n{USAGE}"))?,
            ));
        } else if let Some(v) = a
            .strip_prefix("-o=")
            .or_else(|| a.strip_prefix("--output="))
        {
            output = Some(PathBuf::from(v));
        } else if let Some(opt) = a.strip_prefix("--") {
            let (name, value) = opt.split_once('=').unwrap_or((opt, "true"));
            // --hls.client_manifest_version=4 is stored as meta hls_client_manifest_version;
            // key material (--iss.key=KID:CEK) as meta key of <paramGroup id="iss">.
            let name = if origin_core::drm::GROUP_OPTIONS.contains(&name) {
                name.to_string()
            } else {
                name.replace(['.', '-'], "_")
            };
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(format!("invalid option {a}"));
            }
            options.push((name, value.to_string()));
        } else if a.starts_with('-') && a.len() > 1 {
            return Err(format!("unknown flag {a}\n{USAGE}"));
        } else {
            inputs.push(PathBuf::from(a));
        }
    }
    let output = output.ok_or(format!("no output file (-o)\n{USAGE}"))?;
    Ok(Args {
        output,
        inputs,
        options,
    })
}

/// `input` relative to `dir` (the server manifest's directory), as mp4split writes it: a file
/// in a sibling folder becomes `../audio/eng.mp4`. The origin serves such a src as long as it
/// stays inside the location's document root.
fn relative_src(dir: &Path, input: &Path) -> Result<String, String> {
    let abs = |p: &Path| -> Result<PathBuf, String> {
        std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let dir = abs(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })?;
    let input = abs(input)?;
    let names = |p: &Path| -> Result<Vec<String>, String> {
        p.components()
            .filter(|c| !matches!(c, Component::RootDir))
            .map(|c| match c {
                Component::Normal(s) => s
                    .to_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{}: the file name is not UTF-8", p.display())),
                _ => Err(format!("{}: unexpected path component", p.display())),
            })
            .collect()
    };
    let (from, to) = (names(&dir)?, names(&input)?);
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let parts: Vec<&str> = std::iter::repeat_n("..", from.len() - common)
        .chain(to[common..].iter().map(String::as_str))
        .collect();
    let src = parts.join("/");
    resolve_src(&src).map_err(|e| e.to_string())?;
    Ok(src)
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let args = parse_args(raw)?;
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let live = match ext.as_deref() {
        Some("ism") => false,
        Some("isml") => true,
        _ => {
            return Err(format!(
                "{}: the output must end in .ism or .isml",
                args.output.display()
            ))
        }
    };
    if !live && args.inputs.is_empty() {
        return Err(format!(
            "{}: a VOD server manifest needs at least one input",
            args.output.display()
        ));
    }
    let out_dir = args.output.parent().unwrap_or(Path::new("")).to_path_buf();

    let mut manifest = ServerManifest::default();
    for (name, value) in &args.options {
        manifest.set_meta(name, value);
    }
    manifest
        .options()
        .map_err(|e| format!("{}: {e}", args.output.display()))?;
    origin_core::drm::Drm::from_metas(&manifest.metas)
        .map_err(|e| format!("{}: {e}", args.output.display()))?;

    let bar = ProgressBar::new(args.inputs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut taken: HashSet<(String, u64)> = HashSet::new();
    for input in &args.inputs {
        bar.set_message(input.display().to_string());
        let src = relative_src(&out_dir, input)?;
        let m = media::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
        for track in &m.index.tracks {
            let kind = match track.kind {
                MediaKind::Video => TrackKind::Video,
                MediaKind::Audio => TrackKind::Audio,
                MediaKind::Text => TrackKind::Text,
                // Timed metadata (ad cues) is listed as a text stream, as the origin reads it;
                // a cue that does not read is the operator's to fix, not to lose quietly.
                MediaKind::Metadata => {
                    media::check_cues(input, track)?;
                    TrackKind::Text
                }
                MediaKind::Other => continue,
            };
            let entry =
                media::sample_entry(track).map_err(|e| format!("{}: {e}", input.display()))?;
            let language = (track.language != "und").then(|| track.language.clone());
            let base_name = match (kind, &language) {
                (TrackKind::Video, _) => "video".to_string(),
                (TrackKind::Audio, Some(l)) => format!("audio_{l}"),
                (TrackKind::Audio, None) => "audio".to_string(),
                (TrackKind::Text, _) if track.kind == MediaKind::Metadata => "meta".to_string(),
                (TrackKind::Text, Some(l)) => format!("textstream_{l}"),
                (TrackKind::Text, None) => "textstream".to_string(),
            };
            // Routing needs (trackName, systemBitrate) to be unique.
            let mut bitrate = media::average_bitrate(track);
            while !taken.insert((base_name.clone(), bitrate)) {
                bitrate += 1;
            }
            let mut t = TrackEntry::new(kind, &src);
            t.system_bitrate = Some(bitrate);
            t.system_language = language;
            t.set_param("trackID", &track.track_id.to_string());
            t.set_param("trackName", &base_name);
            t.set_param("timeScale", &track.timescale.to_string());
            t.set_param("trackType", kind.element_name().trim_end_matches("stream"));
            t.set_param(
                "Subtype",
                &track.sample_entry_fourcc.to_string().to_ascii_uppercase(),
            );
            t.set_param("FourCC", entry.smooth_fourcc());
            t.set_param("CodecPrivateData", &entry.smooth_codec_private_data());
            match entry.media {
                MediaInfo::Video { width, height, .. } => {
                    t.set_param("MaxWidth", &width.to_string());
                    t.set_param("MaxHeight", &height.to_string());
                    t.set_param("DisplayWidth", &track.width.max(1).to_string());
                    t.set_param("DisplayHeight", &track.height.max(1).to_string());
                }
                MediaInfo::Audio {
                    channels,
                    sample_size,
                    sample_rate,
                } => {
                    t.set_param("SamplingRate", &sample_rate.to_string());
                    t.set_param("Channels", &channels.to_string());
                    t.set_param("BitsPerSample", &sample_size.to_string());
                    t.set_param(
                        "PacketSize",
                        &(u32::from(channels) * u32::from(sample_size) / 8).to_string(),
                    );
                    t.set_param(
                        "AudioTag",
                        if entry.smooth_fourcc().starts_with("AAC") {
                            "255"
                        } else {
                            "65534"
                        },
                    );
                }
                _ => {}
            }
            manifest.tracks.push(t);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let xml = manifest.to_xml();
    // Parse what we wrote: a manifest the origin cannot read must never be left behind.
    ServerManifest::parse(xml.as_bytes())
        .map_err(|e| format!("internal error: written manifest does not parse: {e}"))?;
    std::fs::write(&args.output, xml).map_err(|e| format!("{}: {e}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} tracks{})",
        args.output.display(),
        manifest.tracks.len(),
        if live { ", live publishing point" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let a = parse_args(&s(&[
            "-o",
            "x.ism",
            "a.ismv",
            "--hls.client_manifest_version=4",
            "b.isma",
            "--restart_on_encoder_reconnect",
            "--iss.key=000102030405060708090A0B0C0D0E0F:101112131415161718191A1B1C1D1E1F",
        ]))
        .unwrap();
        assert_eq!(a.output, PathBuf::from("x.ism"));
        assert_eq!(a.inputs, [PathBuf::from("a.ismv"), PathBuf::from("b.isma")]);
        assert_eq!(
            a.options,
            [
                ("hls_client_manifest_version".to_string(), "4".to_string()),
                (
                    "restart_on_encoder_reconnect".to_string(),
                    "true".to_string()
                ),
                (
                    "iss.key".to_string(),
                    "000102030405060708090A0B0C0D0E0F:101112131415161718191A1B1C1D1E1F".to_string()
                )
            ]
        );
        assert!(parse_args(&s(&["a.ismv"])).is_err());
        assert!(parse_args(&s(&["-o"])).is_err());
        assert!(parse_args(&s(&["-o", "x.ism", "--bad name"])).is_err());
        assert!(parse_args(&s(&["-o", "x.ism", "-x"])).is_err());
    }
}
