//! An answer's body written out: whole ([`write_body`], as `ismtool package` stores it), or a
//! repackaged segment in bounded pieces ([`RepackagedPieces`], as the nginx driver streams it
//! while the client drains it). Both write repackaged segments with the one piece writer here,
//! so a stored segment and a streamed one are the same bytes.

use std::borrow::Cow;
use std::io::Write;

use crate::drm::SegmentCipher;
use crate::index::Sample;
use crate::package::ts::{TsError, TsFormat, TsTrack, TsWriter, PACKET};
use crate::request::Body;
use crate::source::{SharedSource, SourceError};

/// Most bytes of a repackaged segment held in memory at once (plus one TS packet).
pub const PIECE: usize = 256 << 10;

/// Why a body could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A source's bytes could not be read, or changed while they were.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// Samples that cannot be muxed into MPEG-TS or packed audio.
    #[error("{0}")]
    Ts(#[from] TsError),
    /// The output could not be written.
    #[error("writing the body: {0}")]
    Write(#[from] std::io::Error),
    /// The segment's cipher failed.
    #[error("{0}")]
    Cipher(#[from] crate::crypto::CryptoError),
}

impl From<BodyError> for crate::Error {
    fn from(e: BodyError) -> crate::Error {
        match e {
            BodyError::Source(e) => e.into(),
            BodyError::Ts(e) => e.into(),
            BodyError::Write(source) => crate::Error::Io {
                path: "the response body".into(),
                source,
            },
            BodyError::Cipher(e) => crate::Error::Drm {
                path: "the segment".into(),
                error: e.into(),
            },
        }
    }
}

/// A repackaged segment (MPEG-TS or packed audio) written in pieces of bounded size: the
/// writer's state, the sources its samples come from and, for HLS AES-128, the cipher that
/// encrypts each piece before it is handed on.
pub struct RepackagedPieces {
    writer: TsWriter,
    /// Indexed by [`TsTrack::source`].
    sources: Vec<(SharedSource, String)>,
    encryption: Option<Box<SegmentCipher>>,
    /// The size a piece is filled to (TS writes whole packets: up to one packet more).
    piece: usize,
}

impl RepackagedPieces {
    /// The writer of the segment [`Body::Repackaged`] describes, in pieces of [`PIECE`] bytes.
    pub fn new(
        tracks: Vec<TsTrack>,
        sources: Vec<(SharedSource, String)>,
        format: TsFormat,
        encryption: Option<Box<SegmentCipher>>,
    ) -> Result<RepackagedPieces, TsError> {
        Ok(RepackagedPieces {
            writer: TsWriter::new(tracks, format)?,
            sources,
            encryption,
            piece: PIECE,
        })
    }

    /// Pieces of `piece` bytes instead (at least one TS packet).
    pub fn with_piece_len(mut self, piece: usize) -> RepackagedPieces {
        self.piece = piece.max(PACKET);
        self
    }

    /// The length of the whole segment (the response's Content-Length, known before the first
    /// byte): video from its sizes, other access units read to size them.
    pub fn measure(&mut self) -> Result<u64, BodyError> {
        let mut total = self.writer.header_len() as u64;
        for i in 0..self.writer.access_units() {
            let (t, sample) = self.writer.access_unit(i);
            // Most video is sized without reading it (its source and range checked); the rest
            // from its bytes.
            if let Some(len) = self.writer.measure_from_size(i) {
                sample_in_source(&self.sources, &self.writer.tracks()[t], sample)?;
                total += len as u64;
                continue;
            }
            let data = sample_bytes(&self.sources, &self.writer.tracks()[t], sample)?;
            total += self.writer.measure(i, &data)? as u64;
        }
        if self.encryption.is_some() {
            total = SegmentCipher::padded_len(total);
        }
        self.check_sources()?;
        Ok(total)
    }

    /// True when every piece was filled.
    pub fn is_done(&self) -> bool {
        self.writer.is_done()
    }

    /// Fills `piece` (emptied first) with the next piece of the segment. The sources are
    /// checked once it is full: a piece read from a file that changed is an error, never sent.
    pub fn fill(&mut self, piece: &mut Vec<u8>) -> Result<(), BodyError> {
        piece.clear();
        if let Some(c) = &mut self.encryption {
            c.begin_piece(piece);
        }
        while piece.len() < self.piece && !self.writer.is_done() {
            let data = match self.writer.next() {
                Some((t, sample)) => sample_bytes(&self.sources, &self.writer.tracks()[t], sample)?,
                None => Cow::Borrowed(&[][..]),
            };
            self.writer.write(piece, &data, self.piece)?;
        }
        if let Some(c) = &mut self.encryption {
            c.seal_piece(piece, self.writer.is_done())?;
        }
        Ok(self.check_sources()?)
    }

    /// Writes every piece to `out`; returns the bytes written.
    pub fn write_all(&mut self, out: &mut dyn Write) -> Result<u64, BodyError> {
        let mut buf = Vec::with_capacity(self.piece + PACKET);
        let mut total = 0u64;
        while !self.is_done() {
            self.fill(&mut buf)?;
            out.write_all(&buf)?;
            total += buf.len() as u64;
        }
        Ok(total)
    }

    /// Errors when a source changed under what was read from it.
    fn check_sources(&self) -> Result<(), SourceError> {
        for (source, _) in &self.sources {
            source.intact()?;
        }
        Ok(())
    }
}

/// The bytes of `sample` of `track`; a source the track does not have, or a sample past the
/// end of its file, means the file changed under the index.
/// Checks that a sample's bytes lie inside its source, without reading them.
fn sample_in_source(
    sources: &[(SharedSource, String)],
    track: &TsTrack,
    sample: &Sample,
) -> Result<(), SourceError> {
    let Some((source, path)) = sources.get(track.source) else {
        return Err(SourceError::Changed {
            name: format!("source {} of a segment", track.source),
        });
    };
    if sample.offset.saturating_add(u64::from(sample.size)) > source.len() {
        return Err(SourceError::Changed { name: path.clone() });
    }
    Ok(())
}

fn sample_bytes<'s>(
    sources: &'s [(SharedSource, String)],
    track: &TsTrack,
    sample: &Sample,
) -> Result<Cow<'s, [u8]>, SourceError> {
    let Some((source, path)) = sources.get(track.source) else {
        return Err(SourceError::Changed {
            name: format!("source {} of a segment", track.source),
        });
    };
    source
        .bytes(sample.offset, sample.size as usize)
        .map_err(|e| match e {
            SourceError::OutOfRange { .. } => SourceError::Changed { name: path.clone() },
            other => other,
        })
}

/// Writes an answer's body to `out` as the nginx driver sends it: text and generated bytes as
/// they are (a growing answer: what it has now); a fragment as its header and then each payload range of its source; a
/// repackaged segment through [`RepackagedPieces`]. Returns the bytes written.
pub fn write_body(body: &Body, out: &mut dyn Write) -> Result<u64, BodyError> {
    match body {
        Body::Text(generated) => {
            out.write_all(generated.text.as_bytes())?;
            Ok(generated.text.len() as u64)
        }
        Body::Bytes(bytes) | Body::Growing { bytes, .. } => {
            out.write_all(bytes)?;
            Ok(bytes.len() as u64)
        }
        Body::Fragment { plan, source, path } => {
            out.write_all(&plan.header)?;
            for range in &plan.payload {
                if range.offset.saturating_add(range.len) > source.len() {
                    // The index names bytes the file no longer has.
                    return Err(SourceError::Changed { name: path.clone() }.into());
                }
                let len = usize::try_from(range.len).map_err(|_| SourceError::OutOfRange {
                    name: path.clone(),
                    offset: range.offset,
                    len: range.len,
                    size: source.len(),
                })?;
                out.write_all(&source.bytes(range.offset, len)?)?;
            }
            source.intact()?;
            Ok(plan.total_len())
        }
        Body::Repackaged {
            tracks,
            sources,
            format,
            encryption,
        } => RepackagedPieces::new(tracks.clone(), sources.clone(), *format, encryption.clone())?
            .write_all(out),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fragment::{ByteRange, FragmentPlan};
    use crate::index::build_index;
    use crate::package::ts::{self, TsInput};
    use crate::request::Generated;
    use crate::source::{MemorySource, MmapSource, Source};

    fn written(body: &Body) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        let n = write_body(body, &mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn text_and_bytes_are_written_as_they_are() {
        let text = Body::Text(Arc::new(Generated {
            text: "#EXTM3U\n".into(),
            content_type: crate::mime::M3U8,
            etag: "\"x\"".into(),
            modified: 0,
        }));
        assert_eq!(written(&text).unwrap(), b"#EXTM3U\n");
        let bytes = Body::Bytes(vec![1, 2, 3]);
        assert_eq!(written(&bytes).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn a_fragment_is_its_header_then_its_payload_ranges() {
        let data: Vec<u8> = (0..=255).collect();
        let source: SharedSource = Arc::new(MemorySource::new("m.mp4", data));
        let plan = |payload: Vec<ByteRange>| FragmentPlan {
            header: b"moof".to_vec(),
            payload_len: payload.iter().map(|r| r.len).sum(),
            payload,
            start_time: 0,
            duration: 0,
            timescale: 1,
            sample_count: 2,
            samples: 0..2,
        };
        let body = Body::Fragment {
            plan: plan(vec![
                ByteRange { offset: 10, len: 3 },
                ByteRange {
                    offset: 250,
                    len: 6,
                },
            ]),
            source: source.clone(),
            path: "m.mp4".into(),
        };
        assert_eq!(
            written(&body).unwrap(),
            [b'm', b'o', b'o', b'f', 10, 11, 12, 250, 251, 252, 253, 254, 255]
        );
        // A range the file no longer has: the file changed under the index.
        let past = Body::Fragment {
            plan: plan(vec![ByteRange {
                offset: 250,
                len: 7,
            }]),
            source,
            path: "m.mp4".into(),
        };
        assert!(matches!(
            written(&past),
            Err(BodyError::Source(SourceError::Changed { .. }))
        ));
    }

    /// The first 40 samples of each track of the progressive fixture: as the writer takes
    /// them, and muxed whole by `ts::mux`.
    fn progressive_segment() -> (Vec<TsTrack>, SharedSource, Vec<u8>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/progressive.mp4");
        let src = MmapSource::open(&path).unwrap();
        let index = build_index(&src).unwrap();
        let mut inputs_data = Vec::new();
        for t in &index.tracks {
            let entry = crate::presentation::sample_entry_of(t).unwrap();
            let samples: Vec<_> = t.samples(0..40.min(t.sample_count())).collect();
            let bytes: Vec<Vec<u8>> = samples
                .iter()
                .map(|s| src.bytes(s.offset, s.size as usize).unwrap().into_owned())
                .collect();
            inputs_data.push((t.kind, t.timescale, entry, samples, bytes));
        }
        let inputs: Vec<TsInput<'_>> = inputs_data
            .iter()
            .map(|(kind, timescale, entry, samples, bytes)| TsInput {
                entry,
                kind: *kind,
                timescale: *timescale,
                presentation_delay: 0,
                samples: samples
                    .iter()
                    .zip(bytes)
                    .map(|(s, b)| (*s, &b[..]))
                    .collect(),
            })
            .collect();
        let want = ts::mux(&inputs).unwrap();
        let tracks = inputs_data
            .iter()
            .map(|(kind, timescale, entry, samples, _)| TsTrack {
                entry: entry.clone(),
                kind: *kind,
                timescale: *timescale,
                presentation_delay: 0,
                samples: samples.clone(),
                source: 0,
            })
            .collect();
        (tracks, Arc::new(src), want)
    }

    #[test]
    fn a_repackaged_segment_equals_the_muxed_one_in_pieces_of_any_size() {
        let (tracks, source, want) = progressive_segment();
        let name = source.name().to_string();
        for piece in [ts::PACKET, 1000, PIECE] {
            for measured in [false, true] {
                let mut pieces = RepackagedPieces::new(
                    tracks.clone(),
                    vec![(source.clone(), name.clone())],
                    TsFormat::Transport,
                    None,
                )
                .unwrap()
                .with_piece_len(piece);
                // Streamed bodies are measured first, stored ones are not: same bytes.
                if measured {
                    assert_eq!(pieces.measure().unwrap(), want.len() as u64);
                }
                let mut out = Vec::new();
                assert_eq!(pieces.write_all(&mut out).unwrap(), want.len() as u64);
                assert!(out == want, "pieces of {piece}, measured first: {measured}");
            }
        }
        let body = Body::Repackaged {
            tracks,
            sources: vec![(source, name)],
            format: TsFormat::Transport,
            encryption: None,
        };
        assert!(written(&body).unwrap() == want);
    }

    #[test]
    fn a_track_without_its_source_is_an_error_not_a_panic() {
        let (mut tracks, source, _) = progressive_segment();
        let name = source.name().to_string();
        tracks[0].source = 7;
        let mut pieces =
            RepackagedPieces::new(tracks, vec![(source, name)], TsFormat::Transport, None).unwrap();
        assert!(matches!(
            pieces.measure(),
            Err(BodyError::Source(SourceError::Changed { .. }))
        ));
        let mut buf = Vec::new();
        assert!(matches!(
            pieces.fill(&mut buf),
            Err(BodyError::Source(SourceError::Changed { .. }))
        ));
    }
}
