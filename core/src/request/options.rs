//! The options a request runs with, merged once: the query over the server manifest's metas
//! over the defaults.

use crate::drm::{Drm, Protection};
use crate::format::Format;
use crate::ism::{IsmError, ServerManifest};
use crate::package::dash::DashOptions;
use crate::package::hds::HdsOptions;
use crate::package::hls::HlsOptions;
use crate::package::{SegmentLength, DEFAULT_SEGMENT_LENGTH};
use crate::url::{MpdSegmentTemplate, Route};

/// The merged options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// DASH addressing.
    pub template: MpdSegmentTemplate,
    /// HLS with fMP4 (CMAF) segments.
    pub hls_fmp4: bool,
    /// HLS `EXT-X-VERSION`.
    pub hls_version: u32,
    /// Target segment lengths per format (`hls_`, `mpd_`, `iss_minimum_fragment_length`).
    pub hls_length: SegmentLength,
    pub dash_length: SegmentLength,
    pub smooth_length: SegmentLength,
    pub hds_length: SegmentLength,
    /// The server manifest's name without extension: the prefix of segment URLs.
    pub name: String,
    /// The request's query (`?…` or empty), repeated on child URLs.
    pub query: String,
    /// `mpd_min_buffer_time` and `mpd_suggested_presentation_delay`, seconds.
    pub min_buffer_time: Option<u64>,
    pub presentation_delay: Option<u64>,
    /// Content protection (the manifest's options with the location's overrides).
    pub drm: Drm,
    /// LL-HLS delta update asked (`_HLS_skip=YES`).
    pub hls_skip: bool,
    /// How HLS media playlists mark ad cues.
    pub hls_ad_markers: crate::ism::HlsAdMarkers,
    /// Where DASH carries ad cues.
    pub mpd_events: crate::ism::MpdEvents,
    /// A VOD MPD starts a period at each splice point.
    pub mpd_splice_periods: bool,
}

impl Options {
    /// Merges the route's query options over `manifest`'s metas (a bare MP4 has none) over
    /// the defaults. A meta with a bad value is an error, as the same option in the query is.
    pub fn merge(
        route: &Route,
        manifest: &ServerManifest,
        query: &str,
    ) -> Result<Options, IsmError> {
        let metas = manifest.options()?;
        let length = |format: &str| {
            metas
                .minimum_fragment_lengths
                .iter()
                .rev()
                .find(|(f, _)| f.eq_ignore_ascii_case(format))
                .map_or(DEFAULT_SEGMENT_LENGTH, |(_, l)| *l)
        };
        let q = &route.options;
        Ok(Options {
            template: q
                .mpd_segment_template
                .or(metas.mpd_segment_template)
                .unwrap_or(MpdSegmentTemplate::Time),
            hls_fmp4: q.hls_fmp4.or(metas.hls_fmp4).unwrap_or(false),
            hls_version: q
                .hls_client_manifest_version
                .or(metas.hls_client_manifest_version)
                .unwrap_or(4),
            hls_length: length("hls"),
            dash_length: length("mpd"),
            smooth_length: length("iss"),
            hds_length: length("hds"),
            name: presentation_name(&route.manifest_path),
            query: crate::url::query::without_delivery_directives(query),
            min_buffer_time: metas.mpd_min_buffer_time,
            presentation_delay: metas.mpd_suggested_presentation_delay,
            drm: Drm::default(),
            hls_skip: q.hls_skip,
            hls_ad_markers: metas.hls_ad_markers.unwrap_or_default(),
            mpd_events: metas.mpd_events.unwrap_or_default(),
            mpd_splice_periods: metas.mpd_splice_periods.unwrap_or(false),
        })
    }

    /// How the DASH packager writes this request's MPD and segments.
    pub fn dash(&self) -> DashOptions {
        DashOptions {
            template: self.template,
            target: self.dash_length,
            name: self.name.clone(),
            query: self.query.clone(),
            min_buffer_time: self.min_buffer_time.map(|s| s as f64),
            presentation_delay: self.presentation_delay.map(|s| s as f64),
            protection: match self.drm.for_format(Format::Dash) {
                Ok(Protection::Cenc(_)) => self.drm.cenc.clone(),
                _ => None,
            },
            events: self.mpd_events,
            splice_periods: self.mpd_splice_periods,
        }
    }

    /// How the HDS packager writes this request's manifest and fragments.
    pub fn hds(&self) -> HdsOptions {
        HdsOptions {
            target: self.hds_length,
            name: self.name.clone(),
            query: self.query.clone(),
        }
    }

    /// How the HLS packager writes this request's playlists and segments.
    pub fn hls(&self, fmp4: bool) -> HlsOptions {
        HlsOptions {
            target: self.hls_length,
            name: self.name.clone(),
            fmp4,
            version: self.hls_version,
            query: self.query.clone(),
            skip: self.hls_skip,
            ad_markers: self.hls_ad_markers,
            key: match self.drm.for_format(Format::Hls) {
                Ok(Protection::Hls(_)) => self.drm.hls.clone(),
                _ => None,
            },
        }
    }
}

/// The stem of the server manifest's file name.
fn presentation_name(manifest_path: &str) -> String {
    let file = manifest_path.rsplit('/').next().unwrap_or("");
    file.rsplit_once('.')
        .map_or(file, |(stem, _)| stem)
        .to_string()
}
