//! Microsoft Smooth Streaming (MS-SSTR): the client manifest and fragments with `tfxd`.
//! Each StreamIndex carries its track's own TimeScale, so fragment URLs hold the source's
//! decode times exactly.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use super::{segments, PackageError};
use crate::fragment::{plan_fragment, FragmentOptions, FragmentPlan, MAX_LOOKAHEAD};
use crate::index::TrackKind;
use crate::markup::xml_escape;
use crate::mp4::codec::MediaInfo;
use crate::mp4::reader::{parse_box_header, FourCC};
use crate::presentation::{Presentation, Track};
use crate::segment::SegmentTable;
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

/// A track's fragments: with `as_stored` (`usp_iss_pass_through`), a VOD track of a
/// fragmented source keeps the fragments its file stores, so each can be sent as it is.
fn smooth_segments(
    p: &Presentation,
    t: &Track,
    target: super::SegmentLength,
    as_stored: bool,
) -> Arc<SegmentTable> {
    if as_stored && p.live.is_none() && !t.index().fragments.is_empty() {
        return Arc::new(crate::segment::as_stored(t.index()));
    }
    segments(p, t, target)
}

/// The client manifest.
/// `query` (`?vbegin=…` or empty) is repeated on the fragment URL template; `as_stored`: see
/// [`smooth_segments`].
pub fn manifest(
    p: &Presentation,
    target: super::SegmentLength,
    as_stored: bool,
    query: &str,
    protection: Option<&crate::drm::Cenc>,
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
        let table = smooth_segments(p, first, target, as_stored);
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
            // As long as its samples: after a gap the next chunk says its `t`.
            let (start, d) = (idx.dts(r.start), idx.span(r.clone()));
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
    write_cue_stream(&mut x, p);
    if let Some(c) = protection {
        x.push_str(&c.smooth_protection());
    }
    x.push_str("</SmoothStreamingMedia>\n");
    Ok(x)
}

/// The name and bitrate of the sparse stream that carries ad cues.
pub const CUE_STREAM: &str = "scte35";
const CUE_BITRATE: u64 = 1000;

/// The presentation's SCTE-35 cues in 10 MHz ticks (the sparse stream's timescale), with
/// each one's duration (at least a tick).
fn cue_chunks(p: &Presentation) -> Vec<(u64, u64, Vec<u8>)> {
    let events = p.events();
    // A complete presentation shows the cues within its media.
    super::ad_markers::within_media(p, super::ad_markers::cues(&events))
        .iter()
        .map(|c| {
            let ticks = |t: u64| {
                (u128::from(t) * u128::from(TIMESCALE) / u128::from(c.event.timescale.max(1)))
                    as u64
            };
            (
                ticks(c.event.time),
                c.event.duration.map_or(1, ticks).max(1),
                c.event.message.clone(),
            )
        })
        .collect()
}

/// A sparse text stream (MS-SSTR §2.2.2.6, `ManifestOutput`) holding the cues, each chunk's
/// sample (the SCTE-35 section) in the manifest too, tied to the video stream. Its FourCC is
/// `SCTE`, not empty: dash.js's Smooth parser fails the whole manifest on a text stream
/// without one, and skips one whose codec it does not know.
fn write_cue_stream(x: &mut String, p: &Presentation) {
    let chunks = cue_chunks(p);
    if chunks.is_empty() {
        return;
    }
    let parent = p
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .map(|t| format!(" ParentStreamIndex=\"{}\"", xml_escape(&t.name)))
        .unwrap_or_default();
    let _ = writeln!(
        x,
        "  <StreamIndex Type=\"text\" Name=\"{CUE_STREAM}\" Subtype=\"DATA\" QualityLevels=\"1\" Chunks=\"{}\" TimeScale=\"{TIMESCALE}\"{parent} ManifestOutput=\"TRUE\" Url=\"QualityLevels({{bitrate}})/Fragments({CUE_STREAM}={{start time}})\">\n    <QualityLevel Index=\"0\" Bitrate=\"{CUE_BITRATE}\" FourCC=\"SCTE\" CodecPrivateData=\"\"/>",
        chunks.len()
    );
    for (t, d, section) in &chunks {
        let _ = writeln!(
            x,
            "    <c t=\"{t}\" d=\"{d}\"><f>{}</f></c>",
            crate::base64::encode(section)
        );
    }
    x.push_str("  </StreamIndex>\n");
}

/// The fragment of the cue stream at `time` (10 MHz): a `moof` with `tfxd` and `tfdt` and an
/// `mdat` holding the cue's section; `None` when the request is not for the cue stream.
pub fn cue_fragment(
    p: &Presentation,
    bitrate: u64,
    name: &str,
    time: u64,
) -> Result<Option<Vec<u8>>, PackageError> {
    if name != CUE_STREAM || bitrate != CUE_BITRATE || p.find_smooth(name, bitrate).is_some() {
        return Ok(None);
    }
    let chunks = cue_chunks(p);
    let Some(k) = chunks.iter().position(|(t, _, _)| *t == time) else {
        return Err(PackageError::NoSuchSegment(format!("{CUE_STREAM}={time}")));
    };
    let (t, d, section) = &chunks[k];
    let mut tfxd = crate::mp4::writer::BoxWriter::new();
    tfxd.begin(b"uuid");
    tfxd.bytes(&crate::mp4::fragment::UUID_TFXD);
    tfxd.u32(1 << 24); // version 1
    tfxd.u64(*t);
    tfxd.u64(*d);
    tfxd.end();
    let mut out = Vec::with_capacity(200 + section.len());
    let sample = (
        *t,
        t.saturating_add((*d).min(u64::from(u32::MAX))),
        section.clone(),
    );
    crate::mp4::writer::write_fragment(&mut out, 1, k as u32 + 1, &[sample], &tfxd.finish());
    Ok(Some(out))
}

/// The fragment `QualityLevels(bitrate)/Fragments(name=time)` (`name` decoded, as the router
/// gives it).
/// A fragment request resolved: its track, the track's segments, which one, and its samples.
struct Located<'p> {
    track: &'p Track,
    table: Arc<SegmentTable>,
    k: usize,
    samples: Range<u32>,
}

/// The fragment of track `name` at `bitrate` that starts at `time`.
fn locate<'p>(
    p: &'p Presentation,
    bitrate: u64,
    name: &str,
    time: u64,
    target: super::SegmentLength,
    as_stored: bool,
) -> Result<Located<'p>, PackageError> {
    let t = p
        .find_smooth(name, bitrate)
        .filter(|t| super::LISTED_KINDS.contains(&t.kind))
        .ok_or_else(|| PackageError::NoSuchTrack(format!("{} at {bitrate}", excerpt(name))))?;
    let table = smooth_segments(p, t, target, as_stored);
    let k = table
        .by_start_time(t.index(), time)
        .ok_or_else(|| PackageError::NoSuchSegment(format!("{}={time}", excerpt(name))))?;
    let range = table
        .samples(k)
        .ok_or_else(|| PackageError::NoSuchSegment(time.to_string()))?;
    Ok(Located {
        track: t,
        table,
        k,
        samples: range,
    })
}

/// The track and samples of a fragment of the stored fragments' manifest
/// (`usp_iss_pass_through` sends them as stored when they are one whole stored fragment).
pub fn fragment_samples<'p>(
    p: &'p Presentation,
    bitrate: u64,
    name: &str,
    time: u64,
) -> Result<(&'p Track, Range<u32>), PackageError> {
    // The target length does not matter when the stored fragments are the segments.
    let unused = super::DEFAULT_SEGMENT_LENGTH;
    locate(p, bitrate, name, time, unused, true).map(|l| (l.track, l.samples))
}

/// Whether `head`, the bytes from a stored fragment's `moof` to its first sample, is exactly
/// that `moof` and then an `mdat` holding `payload_len` bytes: the samples of one track and
/// nothing else, so the stored bytes can be sent as the fragment.
pub fn is_one_track_fragment(head: &[u8], offset: u64, payload_len: u64) -> bool {
    let Ok(Some(moof)) = parse_box_header(head, offset, None) else {
        return false;
    };
    let Some(rest) = usize::try_from(moof.size).ok().and_then(|n| head.get(n..)) else {
        return false;
    };
    let Ok(Some(mdat)) = parse_box_header(rest, offset + moof.size, None) else {
        return false;
    };
    moof.fourcc == FourCC::new(b"moof")
        && mdat.fourcc == FourCC::new(b"mdat")
        && mdat.header_size == rest.len() as u64
        && mdat.size == mdat.header_size + payload_len
}

/// A fragment: its track and the plan of its boxes and payload.
pub fn fragment<'p>(
    p: &'p Presentation,
    bitrate: u64,
    name: &str,
    time: u64,
    target: super::SegmentLength,
    as_stored: bool,
) -> Result<(&'p Track, FragmentPlan), PackageError> {
    let Located {
        track: t,
        table,
        k,
        samples: range,
    } = locate(p, bitrate, name, time, target, as_stored)?;
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
            producer_ntp_time: None,
        },
    )?;
    Ok((t, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_track_fragment_is_a_moof_then_an_mdat_of_exactly_its_samples() {
        let mut head = Vec::new();
        head.extend_from_slice(&16u32.to_be_bytes());
        head.extend_from_slice(b"moof");
        head.extend_from_slice(&[0; 8]);
        head.extend_from_slice(&(8u32 + 100).to_be_bytes());
        head.extend_from_slice(b"mdat");
        assert!(is_one_track_fragment(&head, 1000, 100));
        // Another track's samples share the mdat, or something sits between the boxes.
        assert!(!is_one_track_fragment(&head, 1000, 60));
        let mut gap = head.clone();
        gap.splice(16..16, *b"\0\0\0\x08free");
        assert!(!is_one_track_fragment(&gap, 1000, 100));
        let mut not_moof = head.clone();
        not_moof[4..8].copy_from_slice(b"moov");
        assert!(!is_one_track_fragment(&not_moof, 1000, 100));
        assert!(!is_one_track_fragment(&head[..10], 1000, 100));
    }
    use crate::package::fixtures::ladder;

    /// The fragment start times the manifest lists for the StreamIndex `name`.
    fn listed_times(manifest: &str, name: &str) -> Vec<u64> {
        let attr = |line: &str, a: &str| -> Option<u64> {
            let at = line.find(&format!(" {a}=\""))? + a.len() + 3;
            line[at..].split('"').next()?.parse().ok()
        };
        let mut times = Vec::new();
        let mut inside = false;
        let mut t = 0;
        for line in manifest.lines() {
            if line.contains("<StreamIndex") {
                inside = line.contains(&format!("Name=\"{name}\""));
            } else if inside && line.trim_start().starts_with("<c ") {
                t = attr(line, "t").unwrap_or(t);
                for _ in 0..attr(line, "r").unwrap_or(1) {
                    times.push(t);
                    t += attr(line, "d").unwrap();
                }
            }
        }
        times
    }

    #[test]
    fn as_stored_the_fragments_are_the_files_own() {
        let p = ladder();
        let audio = p.find_smooth("audio_eng", 128_000).unwrap();
        let stored: Vec<u64> = audio.index().fragments.iter().map(|f| f.start).collect();
        assert!(stored.len() > 1);
        let listed = manifest(&p, crate::package::DEFAULT_SEGMENT_LENGTH, true, "", None).unwrap();
        for &start in &stored {
            let (t, samples) = fragment_samples(&p, 128_000, "audio_eng", start).unwrap();
            assert!(std::ptr::eq(t, audio));
            assert_eq!(
                t.index().stored_fragment(samples).map(|f| f.start),
                Some(start)
            );
        }
        assert_eq!(listed_times(&listed, "audio_eng"), stored);
        // Packaged (the default), audio follows the video's fragments instead.
        let aligned = segments(&p, audio, crate::package::DEFAULT_SEGMENT_LENGTH);
        let aligned_starts: Vec<u64> = (0..aligned.len())
            .map(|k| audio.index().dts(aligned.samples(k).unwrap().start))
            .collect();
        assert_ne!(aligned_starts, stored);
    }

    #[test]
    fn only_tracks_the_manifest_lists_are_served() {
        let mut p = ladder();
        assert!(fragment(
            &p,
            165_000,
            "video",
            0,
            crate::package::DEFAULT_SEGMENT_LENGTH,
            false
        )
        .is_ok());
        assert!(matches!(
            fragment(
                &p,
                165_000,
                "video",
                1,
                crate::package::DEFAULT_SEGMENT_LENGTH,
                false
            ),
            Err(PackageError::NoSuchSegment(_))
        ));
        p.tracks[0].kind = TrackKind::Other;
        assert!(
            !manifest(&p, crate::package::DEFAULT_SEGMENT_LENGTH, false, "", None)
                .unwrap()
                .contains("Bitrate=\"165000\"")
        );
        assert!(matches!(
            fragment(
                &p,
                165_000,
                "video",
                0,
                crate::package::DEFAULT_SEGMENT_LENGTH,
                false
            ),
            Err(PackageError::NoSuchTrack(_))
        ));
    }
}
