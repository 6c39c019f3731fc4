//! WebVTT in ISO BMFF (ISO/IEC 14496-30 §7): a sample is a run of `vttc` cue boxes (each with
//! `iden`, `sttg` and `payl` children) active for the sample's whole duration, or one `vtte`
//! box when no cue is.

use super::{Cue, TextError, MAX_CUES, MAX_TEXT_BYTES};
use crate::mp4::writer::BoxWriter;
use crate::mp4::Reader;

fn error(position: u64, what: impl Into<String>) -> TextError {
    TextError {
        format: "wvtt sample",
        position: position as usize,
        what: what.into(),
    }
}

fn string(r: &Reader<'_>) -> Result<String, TextError> {
    std::str::from_utf8(r.rest())
        .map(|s| s.trim_end_matches('\0').to_string())
        .map_err(|_| error(r.offset(), "text is not UTF-8"))
}

/// The cues of one sample presented over `[start_ms, end_ms)`.
pub fn cues(sample: &[u8], start_ms: u64, end_ms: u64) -> Result<Vec<Cue>, TextError> {
    if sample.len() > MAX_TEXT_BYTES {
        return Err(error(0, "sample too large"));
    }
    let mut out = Vec::new();
    let mut r = Reader::new(sample, 0);
    while let Some((h, mut body)) = r
        .next_box_body()
        .map_err(|e| error(r.offset(), e.to_string()))?
    {
        if &h.fourcc.0 != b"vttc" {
            // vtte (no cue), vtta (a comment) and unknown boxes carry no cue.
            continue;
        }
        let mut cue = Cue {
            start_ms,
            end_ms,
            ..Cue::default()
        };
        while let Some((ch, child)) = body
            .next_box_body()
            .map_err(|e| error(body.offset(), e.to_string()))?
        {
            match &ch.fourcc.0 {
                b"iden" => cue.id = string(&child)?,
                b"sttg" => cue.settings = string(&child)?,
                b"payl" => cue.text = string(&child)?,
                _ => {}
            }
        }
        if out.len() >= MAX_CUES {
            return Err(error(r.offset(), "too many cues"));
        }
        if !cue.text.is_empty() {
            out.push(cue);
        }
    }
    Ok(out)
}

/// One sample holding `cues` (all active for the sample's duration); `vtte` when empty.
pub fn sample(cues: &[&Cue]) -> Vec<u8> {
    let mut w = BoxWriter::new();
    if cues.is_empty() {
        w.begin(b"vtte");
        w.end();
        return w.finish();
    }
    for c in cues {
        w.begin(b"vttc");
        if !c.id.is_empty() {
            w.begin(b"iden");
            w.bytes(c.id.as_bytes());
            w.end();
        }
        if !c.settings.is_empty() {
            w.begin(b"sttg");
            w.bytes(c.settings.as_bytes());
            w.end();
        }
        w.begin(b"payl");
        w.bytes(c.text.as_bytes());
        w.end();
        w.end();
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(s: u64, e: u64, text: &str) -> Cue {
        Cue::new(s, e, text)
    }

    #[test]
    fn samples_round_trip() {
        let a = Cue {
            id: "one".into(),
            settings: "align:start".into(),
            ..cue(0, 0, "hello\nworld")
        };
        let b = cue(0, 0, "<i>second</i>");
        let bytes = sample(&[&a, &b]);
        let back = cues(&bytes, 1000, 2000).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].start_ms, back[0].end_ms), (1000, 2000));
        assert_eq!(back[0].id, "one");
        assert_eq!(back[0].settings, "align:start");
        assert_eq!(back[0].text, "hello\nworld");
        assert_eq!(back[1].text, "<i>second</i>");
        assert_eq!(cues(&sample(&[]), 0, 10).unwrap(), vec![]);
        assert_eq!(sample(&[]), b"\0\0\0\x08vtte");
    }

    #[test]
    fn malformed_samples_are_errors() {
        assert!(cues(b"\0\0\0\x10vttc\0\0\0\x20payl", 0, 1).is_err());
        assert!(cues(b"\0\0\0\x0cvttc\0\0\0\x0cpayl\xff\xfe\0\0", 0, 1).is_err());
    }
}
