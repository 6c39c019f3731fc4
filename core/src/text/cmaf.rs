//! Timed text packaged as a fragmented CMAF text track (`.cmft`, ISO/IEC 23000-19 §9.2 and
//! 14496-30): what `ismtool text` makes of a WebVTT or TTML file, so that a server manifest can
//! list subtitles next to the audio and video.

use super::{clip, ttml, wvtt, Cue, TextError};
use crate::index::TrackKind;
use crate::mp4::codec::{write_sample_entry, CodecConfig, MediaInfo, SampleEntry, TTML_NAMESPACE};
use crate::mp4::writer::{init_segment_of, write_fragment, TrackHeader};
use crate::mp4::FourCC;

/// Track timescale: cue times are milliseconds.
const TIMESCALE: u32 = 1000;

/// The longest text track made: a week (a 24/7 channel's archive, with room to spare).
pub const MAX_TRACK_MS: u64 = 7 * 24 * 3_600_000;

/// The sample format of the track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// WebVTT samples (`wvtt`, 14496-30 §7).
    Wvtt,
    /// One TTML document per fragment (`stpp`, 14496-30 §6), times on the track's timeline.
    Stpp,
}

/// How to package.
#[derive(Debug, Clone)]
pub struct TextTrackOptions {
    pub format: TextFormat,
    /// ISO-639-2/T code (or a BCP 47 tag).
    pub language: String,
    /// Fragment duration in milliseconds (fragments start at multiples of it).
    pub fragment_ms: u64,
}

/// A fragmented text track file (`ftyp`, `moov`, then one `moof`+`mdat` per fragment) holding
/// `cues`. The track runs from 0 to the last cue's end, without holes.
pub fn text_track(cues: &[Cue], opts: &TextTrackOptions) -> Result<Vec<u8>, TextError> {
    let entry = sample_entry(opts.format);
    let header = TrackHeader {
        kind: TrackKind::Text,
        timescale: TIMESCALE,
        language: &opts.language,
        width: 0,
        height: 0,
        sample_entry: &entry,
    };
    let mut out = init_segment_of(&header, 1, None);
    let end = cues.iter().map(|c| c.end_ms).max().unwrap_or(0).max(1);
    if end > MAX_TRACK_MS {
        return Err(TextError {
            format: "text track",
            position: 0,
            what: format!("a cue ends at {end} ms, past the {MAX_TRACK_MS} ms a track may last"),
        });
    }
    // At most 100 000 fragments: a week of 2-second fragments would be 302 400.
    let fragment = opts.fragment_ms.max(1).max(end.div_ceil(100_000));
    let mut bounds: Vec<u64> = (0..end).step_by(fragment as usize).chain([end]).collect();
    if opts.format == TextFormat::Wvtt {
        bounds.extend(
            cues.iter()
                .flat_map(|c| [c.start_ms.min(end), c.end_ms.min(end)]),
        );
    }
    bounds.sort_unstable();
    bounds.dedup();
    // One sweep over the windows in time order, with the cues sorted by start: `active` holds
    // the cues overlapping the current window, so each window costs what is shown in it.
    let mut by_start: Vec<&Cue> = cues.iter().collect();
    by_start.sort_by_key(|c| c.start_ms);
    let mut next = 0;
    let mut active: Vec<&Cue> = Vec::new();
    let mut samples: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    let mut sequence = 1;
    for w in bounds.windows(2) {
        let (start, stop) = (w[0], w[1]);
        while next < by_start.len() && by_start[next].start_ms < stop {
            active.push(by_start[next]);
            next += 1;
        }
        active.retain(|c| c.end_ms > start);
        let sample = match opts.format {
            // Window bounds include every cue's start and end, so a cue overlapping the
            // window covers all of it.
            TextFormat::Wvtt => wvtt::sample(&active),
            TextFormat::Stpp => {
                let shown: Vec<Cue> = active.iter().map(|c| (*c).clone()).collect();
                ttml::document(&clip(shown, start, stop), &opts.language).into_bytes()
            }
        };
        samples.push((start, stop, sample));
        if stop % fragment == 0 || stop == end {
            write_fragment(&mut out, 1, sequence, &samples, &[]);
            sequence += 1;
            samples.clear();
        }
    }
    Ok(out)
}

fn sample_entry(format: TextFormat) -> Vec<u8> {
    let (fourcc, codec) = match format {
        TextFormat::Wvtt => (
            b"wvtt",
            CodecConfig::Wvtt {
                config: "WEBVTT".to_string(),
            },
        ),
        TextFormat::Stpp => (
            b"stpp",
            CodecConfig::Stpp {
                namespace: TTML_NAMESPACE.to_string(),
                schema_location: String::new(),
                mime_types: String::new(),
            },
        ),
    };
    let mut out = Vec::new();
    write_sample_entry(
        &SampleEntry {
            fourcc: FourCC::new(fourcc),
            data_reference_index: 1,
            media: MediaInfo::Text,
            codec,
            protection: None,
        },
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::build_index;
    use crate::source::MemorySource;

    fn cue(s: u64, e: u64, text: &str) -> Cue {
        Cue::new(s, e, text)
    }

    /// Every cue read back from the packaged track's samples, merged where a cue was cut at a
    /// fragment or cue boundary.
    fn read_back(file: Vec<u8>) -> (crate::index::MediaIndex, Vec<Cue>) {
        let src = MemorySource::new("text.cmft", file.clone());
        let idx = build_index(&src).unwrap();
        let t = &idx.tracks[0];
        let mut cues: Vec<Cue> = Vec::new();
        for s in t.samples(0..t.sample_count()) {
            let data = &file[s.offset as usize..(s.offset + u64::from(s.size)) as usize];
            let (a, b) = (s.dts, s.dts + u64::from(s.duration));
            let found = match &t.sample_entry_fourcc.0 {
                b"wvtt" => wvtt::cues(data, a, b).unwrap(),
                _ => ttml::cues(data, a, b).unwrap(),
            };
            for c in found {
                match cues
                    .iter_mut()
                    .find(|k| k.text == c.text && k.end_ms == c.start_ms)
                {
                    Some(k) => k.end_ms = c.end_ms,
                    None => cues.push(c),
                }
            }
        }
        (idx, cues)
    }

    #[test]
    fn absurd_durations_are_refused_and_fragments_bounded() {
        let opts = TextTrackOptions {
            format: TextFormat::Wvtt,
            language: "und".into(),
            fragment_ms: 1,
        };
        assert!(text_track(&[cue(0, MAX_TRACK_MS + 1, "x")], &opts).is_err());
        let file = text_track(&[cue(0, 10_000_000, "x")], &opts).unwrap();
        let (idx, _) = read_back(file);
        assert!(idx.tracks[0].fragments.len() <= 100_000);
    }

    #[test]
    fn both_formats_carry_the_cues() {
        let cues = vec![
            cue(500, 2500, "one"),
            cue(2000, 4000, "two"),
            cue(6000, 7000, "three & <b>four</b>"),
        ];
        for format in [TextFormat::Wvtt, TextFormat::Stpp] {
            let file = text_track(
                &cues,
                &TextTrackOptions {
                    format,
                    language: "eng".into(),
                    fragment_ms: 2000,
                },
            )
            .unwrap();
            let (idx, back) = read_back(file);
            let t = &idx.tracks[0];
            assert_eq!(t.kind, TrackKind::Text);
            assert_eq!(t.language, "eng");
            assert_eq!(t.duration(), 7000);
            assert_eq!(t.fragments.len(), 4, "{format:?}");
            let got: Vec<(u64, u64, &str)> = back
                .iter()
                .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
                .collect();
            let last = if format == TextFormat::Wvtt {
                "three & <b>four</b>"
            } else {
                // TTML keeps the text, not the WebVTT markup.
                "three &amp; four"
            };
            assert_eq!(
                got,
                vec![(500, 2500, "one"), (2000, 4000, "two"), (6000, 7000, last)],
                "{format:?}"
            );
        }
    }
}
