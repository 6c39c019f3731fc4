//! Microsoft Smooth Streaming (MS-SSTR): the client manifest and fragments with `tfxd`.
//! Each StreamIndex carries its track's own TimeScale, so fragment URLs hold the source's
//! decode times exactly.

use std::fmt::Write as _;

use super::{segments, xml_escape, PackageError};
use crate::fragment::{plan_fragment, FragmentOptions, FragmentPlan, MAX_LOOKAHEAD};
use crate::index::TrackKind;
use crate::mp4::codec::MediaInfo;
use crate::presentation::{Presentation, Track};
use crate::url::{encode_name, excerpt};

/// Presentation timescale of the manifest's Duration.
pub const TIMESCALE: u64 = 10_000_000;

fn stream_type(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Video => "video",
        TrackKind::Audio => "audio",
        _ => "text",
    }
}

/// Groups tracks into StreamIndexes: tracks of one kind sharing a trackName.
fn stream_indexes(p: &Presentation) -> Vec<Vec<&Track>> {
    let mut groups: Vec<Vec<&Track>> = Vec::new();
    for kind in super::LISTED_KINDS {
        for t in p.of_kind(kind) {
            match groups
                .iter_mut()
                .find(|g| g[0].kind == kind && g[0].name == t.name)
            {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }
    }
    for g in &mut groups {
        g.sort_by_key(|t| t.bitrate);
    }
    groups
}

/// The client manifest.
/// `query` (`?vbegin=…` or empty) is repeated on the fragment URL template.
pub fn manifest(
    p: &Presentation,
    target: super::SegmentLength,
    query: &str,
) -> Result<String, PackageError> {
    let duration = (p.duration_secs() * TIMESCALE as f64).round() as u64;
    let mut x = String::with_capacity(4096);
    let live = match p.live.as_deref() {
        // MS-SSTR's `LookaheadCount` (GStreamer's demuxer reads `LookAheadFragmentCount`
        // instead, and refreshes the manifest without it, which is what it does best).
        Some(l) if !l.ended => format!(
            " IsLive=\"TRUE\" LookaheadCount=\"{MAX_LOOKAHEAD}\" DVRWindowLength=\"{}\" CanSeek=\"TRUE\" CanPause=\"TRUE\"",
            l.dvr_window_secs * TIMESCALE
        ),
        _ => String::new(),
    };
    let duration = if live.is_empty() { duration } else { 0 };
    let _ = writeln!(
        x,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<SmoothStreamingMedia MajorVersion=\"2\" MinorVersion=\"2\" TimeScale=\"{TIMESCALE}\" Duration=\"{duration}\"{live}>"
    );
    for group in stream_indexes(p) {
        let first = group[0];
        let idx = first.index();
        let table = segments(p, first, target);
        if table.is_empty() {
            return Err(PackageError::EmptyTrack(first.id()));
        }
        let kind = stream_type(first.kind);
        let name = xml_escape(&first.name);
        // The template's name is URL text (encoded, see `crate::url::name`).
        let url_name = xml_escape(&encode_name(&first.name));
        let _ = write!(
            x,
            "  <StreamIndex Type=\"{kind}\" Name=\"{name}\" QualityLevels=\"{}\" Chunks=\"{}\" TimeScale=\"{}\" Url=\"QualityLevels({{bitrate}})/Fragments({url_name}={{start time}}){}\"",
            group.len(),
            table.len(),
            idx.timescale,
            xml_escape(query)
        );
        if let Some(lang) = &first.language {
            let _ = write!(x, " Language=\"{}\"", xml_escape(lang));
        }
        if first.kind == TrackKind::Text {
            x.push_str(" Subtype=\"SUBT\"");
        }
        if let MediaInfo::Video { width, height, .. } = first.entry.media {
            let (w, h) = group
                .iter()
                .filter_map(|t| match t.entry.media {
                    MediaInfo::Video { width, height, .. } => Some((width, height)),
                    _ => None,
                })
                .max()
                .unwrap_or((width, height));
            let _ = write!(
                x,
                " MaxWidth=\"{w}\" MaxHeight=\"{h}\" DisplayWidth=\"{w}\" DisplayHeight=\"{h}\""
            );
        }
        x.push_str(">\n");
        for (i, t) in group.iter().enumerate() {
            let _ = write!(
                x,
                "    <QualityLevel Index=\"{i}\" Bitrate=\"{}\" FourCC=\"{}\" CodecPrivateData=\"{}\"",
                t.bitrate,
                t.entry.smooth_fourcc(),
                t.entry.smooth_codec_private_data()
            );
            match t.entry.media {
                MediaInfo::Video { width, height, .. } => {
                    let _ = write!(x, " MaxWidth=\"{width}\" MaxHeight=\"{height}\"");
                }
                MediaInfo::Audio {
                    channels,
                    sample_size,
                    sample_rate,
                } => {
                    let tag = if t.entry.smooth_fourcc().starts_with("AAC") {
                        255
                    } else {
                        65534
                    };
                    let _ = write!(
                        x,
                        " SamplingRate=\"{sample_rate}\" Channels=\"{channels}\" BitsPerSample=\"{sample_size}\" PacketSize=\"{}\" AudioTag=\"{tag}\"",
                        u32::from(channels) * u32::from(sample_size) / 8
                    );
                }
                _ => {}
            }
            x.push_str("/>\n");
        }
        // Chunks, run-length coded with r (MinorVersion 2).
        let mut runs: Vec<(u64, u64, u32)> = Vec::new();
        for k in 0..table.len() {
            let Some(r) = table.samples(k) else { break };
            let (start, d) = (idx.dts(r.start), idx.dts(r.end) - idx.dts(r.start));
            match runs.last_mut() {
                Some(l) if l.1 == d && l.0 + l.1 * (u64::from(l.2) + 1) == start => l.2 += 1,
                _ => runs.push((start, d, 0)),
            }
        }
        for (i, (t, d, r)) in runs.iter().enumerate() {
            x.push_str("    <c");
            if i == 0 || runs[i - 1].0 + runs[i - 1].1 * (u64::from(runs[i - 1].2) + 1) != *t {
                let _ = write!(x, " t=\"{t}\"");
            }
            let _ = write!(x, " d=\"{d}\"");
            if *r > 0 {
                let _ = write!(x, " r=\"{}\"", r + 1);
            }
            x.push_str("/>\n");
        }
        x.push_str("  </StreamIndex>\n");
    }
    x.push_str("</SmoothStreamingMedia>\n");
    Ok(x)
}

/// The fragment `QualityLevels(bitrate)/Fragments(name=time)` (`name` decoded, as the router
/// gives it).
pub fn fragment<'p>(
    p: &'p Presentation,
    bitrate: u64,
    name: &str,
    time: u64,
    target: super::SegmentLength,
) -> Result<(&'p Track, FragmentPlan), PackageError> {
    let t = p
        .find_smooth(name, bitrate)
        .filter(|t| super::LISTED_KINDS.contains(&t.kind))
        .ok_or_else(|| PackageError::NoSuchTrack(format!("{} at {bitrate}", excerpt(name))))?;
    let table = segments(p, t, target);
    let k = table
        .by_start_time(t.index(), time)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{}={time}", excerpt(name))))?;
    let range = table
        .samples(k)
        .ok_or_else(|| PackageError::NoSuchSegment(time.to_string()))?;
    // Live: the fragments already there after this one, so players extend their timeline
    // without fetching the manifest again.
    let mut lookahead = [(0, 0); MAX_LOOKAHEAD];
    let mut lookahead_count = 0;
    let live = p.live.as_deref().is_some_and(|l| !l.ended);
    if live {
        let idx = t.index();
        for (slot, next) in lookahead.iter_mut().zip(k + 1..) {
            let Some(r) = table.samples(next) else { break };
            *slot = (idx.dts(r.start), idx.dts(r.end) - idx.dts(r.start));
            lookahead_count += 1;
        }
    }
    let plan = plan_fragment(
        t.index(),
        range,
        &FragmentOptions {
            sequence_number: k as u32 + 1,
            track_id: t.index().track_id,
            styp: false,
            tfdt: true,
            tfxd: true,
            tfrf: live,
            lookahead,
            lookahead_count,
            time_offset: 0,
            composition_shift: 0,
        },
    )?;
    Ok((t, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::fixtures::ladder;

    #[test]
    fn only_tracks_the_manifest_lists_are_served() {
        let mut p = ladder();
        assert!(fragment(
            &p,
            165_000,
            "video",
            0,
            crate::package::DEFAULT_SEGMENT_LENGTH
        )
        .is_ok());
        assert!(matches!(
            fragment(
                &p,
                165_000,
                "video",
                1,
                crate::package::DEFAULT_SEGMENT_LENGTH
            ),
            Err(PackageError::NoSuchSegment(_))
        ));
        p.tracks[0].kind = TrackKind::Other;
        assert!(!manifest(&p, crate::package::DEFAULT_SEGMENT_LENGTH, "")
            .unwrap()
            .contains("Bitrate=\"165000\""));
        assert!(matches!(
            fragment(
                &p,
                165_000,
                "video",
                0,
                crate::package::DEFAULT_SEGMENT_LENGTH
            ),
            Err(PackageError::NoSuchTrack(_))
        ));
    }
}
