//! Answers made from sample bytes read in memory: the I-frame playlist (sized from each key
//! frame), HDS fragments (FLV tags) and WebVTT segments.

use std::borrow::Cow;
use std::ops::Range;

use super::{Request, Stop};
use crate::error::Error;
use crate::index::Sample;
use crate::package::hls::{self, HlsOptions};
use crate::package::ts;
use crate::package::{dash, hds, PackageError};
use crate::presentation::{Presentation, Track};
use crate::source::{SharedSource, Source, SourceError};
use crate::url::Variant;

impl Request {
    /// A track's reader holding all of `samples`' bytes (one span: a remote source reads
    /// it with one request).
    pub(super) fn samples_reader(
        &self,
        track: &Track,
        samples: Range<u32>,
    ) -> Result<(SharedSource, String), Stop> {
        let path = self.track_path(track)?;
        let (start, end) = track
            .index()
            .samples(samples)
            .fold((u64::MAX, 0u64), |(lo, hi), s| {
                (lo.min(s.offset), hi.max(s.offset + u64::from(s.size)))
            });
        let (offset, len) = if start < end {
            (start, end - start)
        } else {
            (0, 0)
        };
        Ok((self.reader(&path, offset, len)?, path))
    }

    /// The I-frame playlist, sizing each segment's key frame from its bytes.
    pub(super) fn iframe_playlist(
        &self,
        p: &Presentation,
        variant: &Variant,
        opts: &HlsOptions,
    ) -> Result<String, Stop> {
        let mut stopped: Option<Stop> = None;
        let mut key_frame_bytes = |t: &Track, sample: u32| {
            self.key_frame_bytes(t, sample).map_err(|stop| {
                stopped.get_or_insert(stop);
                PackageError::Media("reading the key frame".into())
            })
        };
        let text = hls::iframe_playlist(p, variant, opts, &mut key_frame_bytes);
        match (text, stopped) {
            (_, Some(stop)) => Err(stop),
            (text, None) => Ok(text?),
        }
    }

    /// Bytes of a TS segment through its key frame, when the segment starts at `sample`: from
    /// its size when the codec allows, else from its bytes (a read of each key frame).
    fn key_frame_bytes(&self, t: &Track, sample: u32) -> Result<usize, Stop> {
        let s = t
            .index()
            .samples(sample..sample + 1)
            .next()
            .ok_or_else(|| PackageError::Media(format!("track {}: no sample {sample}", t.id())))?;
        let delay = dash::presentation_delay(t);
        if let Some(len) =
            ts::key_frame_bytes_from_size(&t.entry, t.kind, t.index().timescale, delay, s)?
        {
            return Ok(len);
        }
        let (src, _) = self.samples_reader(t, sample..sample + 1)?;
        let data = src
            .bytes(s.offset, s.size as usize)
            .map_err(Error::from_source)?;
        let len = ts::key_frame_bytes(&ts::TsInput {
            entry: &t.entry,
            kind: t.kind,
            timescale: t.index().timescale,
            presentation_delay: delay,
            samples: vec![(s, &data[..])],
        })?;
        src.intact().map_err(Error::from_source)?;
        Ok(len)
    }

    /// An HDS fragment: each track's samples read, then written as FLV tags.
    pub(super) fn hds_fragment(&self, plan: &hds::HdsFragment<'_>) -> Result<Vec<u8>, Stop> {
        let mut sources = Vec::with_capacity(plan.tracks.len());
        for part in &plan.tracks {
            sources.push(self.samples_reader(part.track, part.samples.clone())?.0);
        }
        let mut read = Vec::with_capacity(plan.tracks.len());
        for (part, src) in plan.tracks.iter().zip(&sources) {
            read.push(read_samples(part.track, part.samples.clone(), &**src)?);
        }
        let inputs: Vec<hds::HdsTrackSamples<'_>> = plan
            .tracks
            .iter()
            .zip(&read)
            .map(|(part, samples)| {
                part.with_bytes(samples.iter().map(|(s, b)| (*s, &b[..])).collect())
            })
            .collect();
        let bytes = plan.write(&inputs)?;
        for src in &sources {
            src.intact().map_err(Error::from_source)?;
        }
        Ok(bytes)
    }

    /// A WebVTT segment: the text track's samples read and converted.
    pub(super) fn webvtt_segment(&self, plan: &hls::TextSegment<'_>) -> Result<String, Stop> {
        let (src, _) = self.samples_reader(plan.track, plan.samples.clone())?;
        let samples = read_samples(plan.track, plan.samples.clone(), &*src)?;
        let refs: Vec<(Sample, &[u8])> = samples.iter().map(|(s, b)| (*s, &b[..])).collect();
        let text = hls::webvtt_segment(plan, &refs)?;
        src.intact().map_err(Error::from_source)?;
        Ok(text)
    }
}

/// Samples with their bytes, borrowed from a source where it can lend them.
type SampleBytes<'s> = Vec<(Sample, Cow<'s, [u8]>)>;

/// Samples `samples` of `track`, each with its bytes read from `src`.
fn read_samples<'s>(
    track: &Track,
    samples: Range<u32>,
    src: &'s dyn Source,
) -> Result<SampleBytes<'s>, Error> {
    track
        .index()
        .samples(samples)
        .map(|s| Ok((s, src.bytes(s.offset, s.size as usize)?)))
        .collect::<Result<Vec<_>, SourceError>>()
        .map_err(Error::from_source)
}
