//! `ismtool inspect`: box tree, tracks, codecs, durations, sample and fragment counts.

use std::path::Path;

use origin_core::mp4::codec::MediaInfo;
use origin_core::mp4::Reader;
use origin_core::source::{MmapSource, Source};
use serde_json::{json, Value};

use crate::media;

/// Boxes whose body is a list of boxes.
const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf",
    b"mfra", b"udta", b"sinf", b"schi", b"meta", b"ipro", b"tref",
];
const MAX_DEPTH: usize = 16;
/// Runs of more than this many boxes of one type at one level are summarised.
const MAX_REPEAT: usize = 4;

fn tree(mut r: Reader<'_>, depth: usize) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = Vec::new();
    let mut last: Option<(String, usize)> = None;
    let mut skipped = 0usize;
    while let Some((h, mut body)) = r.next_box_body().map_err(|e| format!("{e}"))? {
        let name = h.fourcc.to_string();
        let run = match &last {
            Some((n, c)) if *n == name => c + 1,
            _ => 1,
        };
        last = Some((name.clone(), run));
        // moof/mdat pairs alternate, so count pairs by the type two boxes back as well.
        let repeated = out.len() >= 2 * MAX_REPEAT
            && out[out.len() - 2]["type"] == json!(name)
            && out[out.len() - 2 * MAX_REPEAT]["type"] == json!(name);
        if repeated || run > MAX_REPEAT {
            skipped += 1;
            continue;
        }
        let mut node = json!({
            "type": name,
            "offset": h.offset,
            "size": h.size,
        });
        if depth < MAX_DEPTH {
            if CONTAINERS.contains(&&h.fourcc.0) {
                node["children"] = Value::Array(tree(body, depth + 1)?);
            } else if &h.fourcc.0 == b"stsd" {
                body.skip(8).map_err(|e| e.to_string())?;
                node["children"] = Value::Array(tree(body, depth + 1)?);
            }
        }
        out.push(node);
    }
    if skipped > 0 {
        out.push(json!({ "type": "…", "more": skipped }));
    }
    Ok(out)
}

fn print_tree(nodes: &[Value], indent: usize) {
    for n in nodes {
        if let Some(more) = n.get("more") {
            println!("{:indent$}… {more} more boxes", "", indent = indent);
            continue;
        }
        println!(
            "{:indent$}{} @{} size {}",
            "",
            n["type"].as_str().unwrap_or("?"),
            n["offset"],
            n["size"],
            indent = indent
        );
        if let Some(children) = n.get("children").and_then(Value::as_array) {
            print_tree(children, indent + 2);
        }
    }
}

pub fn run(path: &Path, as_json: bool, with_boxes: bool) -> Result<(), String> {
    let name = path.display().to_string();
    let src = MmapSource::open(path).map_err(|e| e.to_string())?;
    let boxes = if with_boxes {
        Some(tree(Reader::new(src.as_slice(), 0), 0).map_err(|e| format!("{name}: {e}"))?)
    } else {
        None
    };
    let m = media::open(path)?;
    let mut tracks = Vec::new();
    for t in &m.index.tracks {
        let entry = media::sample_entry(t).map_err(|e| format!("{name}: {e}"))?;
        let mut v = json!({
            "track_id": t.track_id,
            "type": t.kind.as_str(),
            "fourcc": t.sample_entry_fourcc.to_string(),
            "codec": entry.codec_string(),
            "smooth_fourcc": entry.smooth_fourcc(),
            "language": t.language,
            "timescale": t.timescale,
            "duration": t.duration(),
            "duration_seconds": media::duration_secs(t),
            "sample_count": t.sample_count(),
            "sync_sample_count": t.sync_samples().map_or(t.sample_count() as usize, <[u32]>::len),
            "fragment_count": t.fragments.len(),
            "bytes": t.total_bytes(),
            "bitrate": media::average_bitrate(t),
        });
        match entry.media {
            MediaInfo::Video { width, height, .. } => {
                v["width"] = json!(width);
                v["height"] = json!(height);
            }
            MediaInfo::Audio {
                channels,
                sample_rate,
                sample_size,
            } => {
                v["channels"] = json!(channels);
                v["sample_rate"] = json!(sample_rate);
                v["sample_size"] = json!(sample_size);
            }
            _ => {}
        }
        if let Some(e) = t.edit {
            v["edit_media_time"] = json!(e.media_time);
        }
        tracks.push(v);
    }
    let info = json!({
        "file": name,
        "size": src.len(),
        "major_brand": m.index.major_brand.map(|b| b.to_string()),
        "compatible_brands": m.index.compatible_brands.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
        "fragmented": m.index.fragmented,
        "movie_timescale": m.index.movie_timescale,
        "index_bytes": m.index.heap_size(),
        "tracks": tracks,
        "boxes": boxes,
    });
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "{name}: {} bytes, {}{}",
        src.len(),
        info["major_brand"].as_str().unwrap_or("no ftyp"),
        if m.index.fragmented {
            ", fragmented"
        } else {
            ""
        }
    );
    if let Some(b) = info["boxes"].as_array() {
        println!("boxes:");
        print_tree(b, 2);
    }
    println!("tracks:");
    for t in info["tracks"].as_array().into_iter().flatten() {
        let detail = if t.get("width").is_some() {
            format!("{}x{}", t["width"], t["height"])
        } else if t.get("channels").is_some() {
            format!("{} ch, {} Hz", t["channels"], t["sample_rate"])
        } else {
            String::new()
        };
        println!(
            "  #{} {} {} {} lang={} {:.3} s, {} samples ({} sync), {} fragments, {} bytes, {} bit/s",
            t["track_id"],
            t["type"].as_str().unwrap_or(""),
            t["codec"].as_str().unwrap_or(""),
            detail,
            t["language"].as_str().unwrap_or(""),
            t["duration_seconds"].as_f64().unwrap_or(0.0),
            t["sample_count"],
            t["sync_sample_count"],
            t["fragment_count"],
            t["bytes"],
            t["bitrate"],
        );
    }
    Ok(())
}
