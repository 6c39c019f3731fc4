//! What ismtool learns about one input file: its index and each track's parsed description.

use std::path::Path;

use origin_core::index::{build_index, MediaIndex, TrackIndex};
use origin_core::mp4::codec::{parse_sample_entry, SampleEntry};
use origin_core::mp4::Reader;
use origin_core::source::MmapSource;

pub struct Media {
    pub index: MediaIndex,
}

pub fn open(path: &Path) -> Result<Media, String> {
    let src = MmapSource::open(path).map_err(|e| e.to_string())?;
    let index = build_index(&src).map_err(|e| e.to_string())?;
    Ok(Media { index })
}

/// Refuses a timed-metadata track with a cue that does not read (or events this origin does
/// not read at all): the origin would serve the title without them.
pub fn check_cues(path: &Path, track: &TrackIndex) -> Result<(), String> {
    let fail = |what: String| format!("{}: track {}: {what}", path.display(), track.track_id);
    if origin_core::events::carriage_of(&track.sample_entry).is_none() {
        return Err(fail(format!(
            "a timed-metadata track with a {} sample entry: the origin reads event message \
             tracks (evte) and urim tracks of SCTE-35 or DASH events",
            track.sample_entry_fourcc
        )));
    }
    let src = MmapSource::open(path).map_err(|e| e.to_string())?;
    let samples = origin_core::index::sample_events(track, &src).map_err(|e| e.to_string())?;
    for (k, events) in samples.iter().enumerate() {
        if let Err(e) = events {
            return Err(fail(format!("sample {}: {e}", k + 1)));
        }
    }
    Ok(())
}

/// The parsed sample entry of a track.
pub fn sample_entry(track: &TrackIndex) -> Result<SampleEntry, String> {
    let raw = &track.sample_entry;
    let mut r = Reader::new(raw, 0);
    let (h, body) = r
        .next_box_body()
        .map_err(|e| e.to_string())?
        .ok_or("empty sample entry")?;
    parse_sample_entry(h.fourcc, body).map_err(|e| format!("track {}: {e}", track.track_id))
}

/// Seconds covered by a track.
pub fn duration_secs(track: &TrackIndex) -> f64 {
    track.duration() as f64 / f64::from(track.timescale.max(1))
}

/// Average bitrate (bits per second) of a track's payload, rounded to the nearest 1000 as
/// encoders label their renditions; at least 1000.
pub fn average_bitrate(track: &TrackIndex) -> u64 {
    let secs = duration_secs(track);
    if secs <= 0.0 {
        return 1000;
    }
    let bps = track.total_bytes() as f64 * 8.0 / secs;
    (((bps / 1000.0).round() as u64) * 1000).max(1000)
}
