//! Target → answer: the content protection a format gets, then each manifest (generated and
//! cached) and each kind of segment, from the loaded presentation.

use std::borrow::Cow;
use std::sync::Arc;

use super::answers::{bytes_answer, text_answer};
use super::keys::etag;
use super::load::Loaded;
use super::{Answer, Caches, Generated, MediaSpan, Payload, Request, Stop};
use crate::drm::{Cenc, DrmError, HlsKey, HlsMethod, Protection};
use crate::error::Error;
use crate::format::Format;
use crate::mime;
use crate::package::ts::TsFormat;
use crate::package::{dash, hds, hls, mss};
use crate::url::{
    DashTarget, HdsTarget, HlsPlaylist, HlsSegmentFormat, HlsTarget, RouteError, SegmentIndex,
    SmoothTarget, Target,
};

/// The content protection an answer gets.
#[derive(Clone, Copy)]
struct Protect<'a> {
    cenc: Option<&'a Cenc>,
    hls_key: Option<&'a HlsKey>,
    /// `usp_iss_pass_through` in force: stored fragments are clear, so it only serves
    /// unprotected Smooth.
    pass_through: bool,
}

impl Request {
    /// The answer for the route, from the loaded presentation.
    pub(super) fn answer(&self, caches: &mut Caches) -> Result<Answer, Stop> {
        let Some(loaded) = &self.loaded else {
            return Err(Stop::Fail(Error::Internal("answer before load")));
        };
        let target = self.numbered_target(loaded)?;
        let protect = self.protection(loaded)?;
        if super::keys::is_manifest(&target) {
            self.manifest_answer(loaded, &target, protect, caches)
        } else {
            self.segment_answer(loaded, &target, protect)
        }
    }

    /// The route's target, a legacy HLS segment URL's start time turned into the number of
    /// its segment (every packager below counts segments).
    fn numbered_target<'t>(&'t self, loaded: &Loaded) -> Result<Cow<'t, Target>, Stop> {
        let (p, o) = (&loaded.p, &loaded.options);
        match &self.route.target {
            Target::Hls(HlsTarget::Segment {
                variant,
                index: SegmentIndex::Time(time),
                format,
            }) => {
                let n = hls::segment_number_at(p, variant, *time, &o.hls(o.hls_fmp4))?;
                Ok(Cow::Owned(Target::Hls(HlsTarget::Segment {
                    variant: variant.clone(),
                    index: SegmentIndex::Number(n),
                    format: *format,
                })))
            }
            other => Ok(Cow::Borrowed(other)),
        }
    }

    /// The protection of the route's format; a format the content protection switches off
    /// answers nothing at all.
    fn protection<'l>(&self, loaded: &'l Loaded) -> Result<Protect<'l>, Stop> {
        let protection = loaded
            .options
            .drm
            .for_format(Format::of(&self.route))
            .map_err(|e| self.drm_error(e))?;
        let cenc = match protection {
            Protection::Cenc(c) => Some(c),
            _ => None,
        };
        let hls_key = match protection {
            Protection::Hls(k) => Some(k),
            _ => None,
        };
        Ok(Protect {
            cenc,
            hls_key,
            pass_through: self.iss_pass_through && cenc.is_none(),
        })
    }

    /// A manifest or playlist, generated and kept in the worker's cache under the request's
    /// key. Every generated answer's ETag covers the versions of all the files it was made
    /// from.
    fn manifest_answer(
        &self,
        loaded: &Loaded,
        target: &Target,
        protect: Protect<'_>,
        caches: &mut Caches,
    ) -> Result<Answer, Stop> {
        let (p, o) = (&loaded.p, &loaded.options);
        let (text, content_type) = match target {
            Target::Smooth(SmoothTarget::Manifest) => (
                mss::manifest(
                    p,
                    o.smooth_length,
                    protect.pass_through,
                    &self.query,
                    protect.cenc,
                )?,
                mime::SMOOTH_MANIFEST,
            ),
            Target::Dash(DashTarget::Manifest) => (dash::mpd(p, &o.dash()), mime::MPD),
            Target::Hls(HlsTarget::Master) => (hls::master(p, &o.hls(o.hls_fmp4))?, mime::M3U8),
            Target::Hls(HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::Media,
                fmp4,
            }) => {
                let text = if *fmp4 {
                    if let Some(msn) = self.route.options.hls_msn {
                        self.block_reload(p, variant, &o.hls(true), msn)?;
                    }
                    hls::media_playlist(p, variant, &o.hls(true))?
                } else {
                    hls::ts_playlist(p, variant, &o.hls(false))?
                };
                (text, mime::M3U8)
            }
            Target::Hls(HlsTarget::Playlist {
                kind: HlsPlaylist::IFrames,
                ..
            }) if protect.hls_key.is_some() => {
                // Byte ranges cannot address key frames inside encrypted segments.
                return Err(Stop::Fail(Error::NotFound {
                    path: "I-frame playlist of encrypted HLS".into(),
                }));
            }
            Target::Hls(HlsTarget::Playlist {
                variant,
                kind: HlsPlaylist::IFrames,
                ..
            }) => (
                self.iframe_playlist(p, variant, &o.hls(o.hls_fmp4))?,
                mime::M3U8,
            ),
            Target::Hds(HdsTarget::Manifest) => (hds::manifest(p, &o.hds())?, mime::F4M),
            _ => return Err(Stop::Fail(Error::Internal("not a manifest target"))),
        };
        let generated = Arc::new(Generated {
            etag: etag(&[text.as_bytes(), &loaded.versions]),
            text,
            content_type,
            modified: loaded.modified,
        });
        if let Some(key) = &self.cache_key {
            caches.generated.insert(key.clone(), generated.clone());
        }
        Ok(text_answer(generated))
    }

    /// A segment: a Smooth fragment, a DASH or HLS init or media segment, an HDS fragment.
    fn segment_answer(
        &self,
        loaded: &Loaded,
        target: &Target,
        protect: Protect<'_>,
    ) -> Result<Answer, Stop> {
        let (p, o) = (&loaded.p, &loaded.options);
        match target {
            Target::Smooth(SmoothTarget::Fragment {
                bitrate,
                track,
                time,
            }) => {
                if let Some(bytes) = mss::cue_fragment(p, *bitrate, track, *time)? {
                    return Ok(bytes_answer(
                        loaded,
                        bytes,
                        mime::of_track(crate::index::TrackKind::Text),
                    ));
                }
                if protect.pass_through && p.live.is_none() {
                    let (t, samples) = mss::fragment_samples(p, *bitrate, track, *time)?;
                    if let Some(stored) = self.stored_fragment_answer(loaded, t, samples)? {
                        return Ok(stored);
                    }
                }
                let (t, plan) = mss::fragment(
                    p,
                    *bitrate,
                    track,
                    *time,
                    o.smooth_length,
                    protect.pass_through,
                )?;
                let cipher = match protect.cenc {
                    Some(c) => self.cenc_cipher(c, t)?,
                    None => None,
                };
                self.protected_fragment_answer(loaded, t, plan, cipher, true)
            }
            Target::Dash(DashTarget::Init { track }) => {
                let t = dash::find_track(p, track)?;
                let mut bytes = dash::init_segment(p, track)?;
                if let Some(c) = protect.cenc {
                    if let Some(cipher) = self.cenc_cipher(c, t)? {
                        bytes = cipher
                            .protect_init(&bytes, &c.pssh_boxes(cipher.kid()))
                            .map_err(|e| self.drm_error(e))?;
                    }
                }
                Ok(bytes_answer(loaded, bytes, mime::of_track(t.kind)))
            }
            Target::Dash(DashTarget::Media { track, index }) => {
                if let Some(segment) = dash::low_latency_segment(p, track, *index, &o.dash())? {
                    return self.chunked_segment_answer(loaded, segment, protect.cenc);
                }
                let (t, plan) = dash::media_segment(p, track, *index, &o.dash())?;
                let cipher = match protect.cenc {
                    Some(c) => self.cenc_cipher(c, t)?,
                    None => None,
                };
                self.protected_fragment_answer(loaded, t, plan, cipher, false)
            }
            Target::Hls(HlsTarget::Init { variant }) => {
                let t = hls::listed_track(p, variant, hls::HlsResource::Fmp4)?;
                let mut bytes = hls::init_segment(p, variant)?;
                // AES-128 encrypts media segments whole; their init segment stays clear.
                if let Some(k) = protect.hls_key.filter(|k| k.method != HlsMethod::Aes128) {
                    if let Some(cipher) = self.hls_cipher(k, t)? {
                        bytes = cipher
                            .protect_init(&bytes, &[])
                            .map_err(|e| self.drm_error(e))?;
                    }
                }
                Ok(bytes_answer(loaded, bytes, mime::of_track(t.kind)))
            }
            Target::Hls(HlsTarget::Segment {
                variant,
                index: SegmentIndex::Number(n),
                format,
            }) => self.hls_segment_answer(loaded, variant, *n, None, *format, protect),
            Target::Hls(HlsTarget::Part {
                variant,
                segment,
                part,
            }) => self.hls_segment_answer(
                loaded,
                variant,
                *segment,
                Some(*part),
                HlsSegmentFormat::Fmp4,
                protect,
            ),
            // HLS URLs name segments by number or (legacy) by time, both handled above.
            Target::Hls(_) | Target::Presentation | Target::Live(_) => Err(Stop::Fail(
                RouteError::UnknownVirtualPath(String::new()).into(),
            )),
            Target::Hds(HdsTarget::Fragment {
                variant,
                segment,
                fragment,
            }) => {
                let plan = hds::fragment(p, variant, *segment, *fragment, &o.hds())?;
                let bytes = self.hds_fragment(&plan)?;
                let mut answer = bytes_answer(loaded, bytes, mime::F4F);
                answer.media = Some(MediaSpan {
                    start: plan.start_time,
                    duration: plan.duration,
                    timescale: plan.timescale,
                    payload: Payload::InMemory,
                });
                Ok(answer)
            }
            Target::Smooth(SmoothTarget::Manifest)
            | Target::Dash(DashTarget::Manifest)
            | Target::Hds(HdsTarget::Manifest) => {
                Err(Stop::Fail(Error::Internal("a manifest target")))
            }
        }
    }

    /// A blocking playlist reload (`_HLS_msn`, `_HLS_part`): answered when the playlist holds
    /// what it asks, held until then (three target durations at most, then 503), refused
    /// (400) when it asks for more than the next two segments.
    fn block_reload(
        &self,
        p: &crate::presentation::Presentation,
        variant: &crate::url::Variant,
        opts: &hls::HlsOptions,
        msn: u64,
    ) -> Result<(), Stop> {
        let part = self.route.options.hls_part;
        let asked = match part {
            Some(part) => format!("part {part} of segment {msn}"),
            None => format!("segment {msn}"),
        };
        match hls::reload_state(p, variant, opts, msn, part)? {
            hls::Reload::Ready => Ok(()),
            hls::Reload::Wait { limit_ms } => {
                Err(self.wait_for_chunk(limit_ms, &format!("a playlist with {asked}")))
            }
            hls::Reload::TooFar => Err(Stop::Fail(Error::LiveSegment {
                status: 400,
                what: format!("a playlist with {asked}: more than two segments ahead"),
                token: "HLS_MSN_TOO_FAR_AHEAD",
            })),
        }
    }

    /// HLS media segment `n` of `variant` (or its part `part`, LL-HLS): fMP4 (clear, SAMPLE-AES
    /// by sample, AES-128 whole), MPEG-TS or packed audio (repackaged, AES-128 as written),
    /// WebVTT.
    fn hls_segment_answer(
        &self,
        loaded: &Loaded,
        variant: &crate::url::Variant,
        n: u64,
        part: Option<u64>,
        format: HlsSegmentFormat,
        protect: Protect<'_>,
    ) -> Result<Answer, Stop> {
        let (p, o) = (&loaded.p, &loaded.options);
        match format {
            HlsSegmentFormat::Fmp4 => {
                let (t, plan) = match part {
                    None => hls::fmp4_segment(p, variant, n, &o.hls(true))?,
                    Some(part) => match hls::fmp4_part(p, variant, n, part, &o.hls(true))? {
                        hls::PartAt::Here(t, plan) => (t, plan),
                        hls::PartAt::Next { limit_ms } => {
                            return Err(self
                                .wait_for_chunk(limit_ms, &format!("part {part} of segment {n}")))
                        }
                    },
                };
                match protect.hls_key {
                    Some(k) if k.method == HlsMethod::Aes128 => {
                        self.whole_encrypted_answer(loaded, t, plan, k.segment_cipher(n))
                    }
                    Some(k) => {
                        let cipher = self.hls_cipher(k, t)?;
                        self.protected_fragment_answer(loaded, t, plan, cipher, false)
                    }
                    None => self.fragment_answer(loaded, t, plan),
                }
            }
            HlsSegmentFormat::Ts | HlsSegmentFormat::Aac => {
                let encryption = match protect.hls_key {
                    Some(k) if k.method == HlsMethod::Aes128 => Some(Box::new(k.segment_cipher(n))),
                    Some(_) => {
                        return Err(Stop::Fail(self.drm_error(DrmError::Unsupported(
                            "SAMPLE-AES is made for fMP4 segments only: set hls_fmp4 (or use AES-128 for MPEG-TS)".into(),
                        ))))
                    }
                    None => None,
                };
                let (parts, format) = if format == HlsSegmentFormat::Ts {
                    let parts = hls::ts_segment_samples(p, variant, n, &o.hls(false))?;
                    (parts, TsFormat::Transport)
                } else {
                    let parts = hls::packed_audio_samples(p, variant, n, &o.hls(false))?;
                    (parts, TsFormat::PackedAudio)
                };
                self.repackaged_answer(loaded, &parts, format, encryption)
            }
            HlsSegmentFormat::WebVtt => {
                let plan = hls::webvtt_segment_plan(p, variant, n, &o.hls(o.hls_fmp4))?;
                let text = self.webvtt_segment(&plan)?;
                Ok(bytes_answer(loaded, text.into_bytes(), mime::WEBVTT))
            }
        }
    }
}
