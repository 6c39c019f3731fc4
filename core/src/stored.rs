//! Answers stored as files (`usp_prefer_static`): whether a file the origin finds at a
//! request's path may answer it, and the Content-Type the generated answer would have had.
//! (`ismtool package` writes such files with [`crate::body::write_body`].)

use crate::index::TrackKind;
use crate::mime;
use crate::url::{
    DashTarget, HdsTarget, HlsPlaylist, HlsSegmentFormat, HlsTarget, Route, SmoothTarget, Target,
    TrackRef,
};

/// Whether a file stored at the request's path may answer it (`usp_prefer_static`). A file
/// is one answer per path, whatever the query; `ismtool package` stores the answers a player
/// fetches, and the only two of those that share a path are the MPEG-TS and fMP4 renditions
/// of the HLS master and I-frame playlists, which `hls_fmp4` in the query tells apart. Asked
/// with `hls_fmp4`, those are always generated (they are small, and cached); every other
/// fMP4 HLS URL is fMP4 by its path (`hls/…`).
pub fn may_be_stored(route: &Route) -> bool {
    let tells_apart = matches!(
        route.target,
        Target::Hls(
            HlsTarget::Master
                | HlsTarget::Playlist {
                    kind: HlsPlaylist::IFrames,
                    ..
                }
        )
    );
    !(tells_apart && route.options.hls_fmp4.is_some())
}

/// The Content-Type the origin gives the generated answer to `route`, for a stored copy of
/// it; `None` for a request that is not for packaged media (the server manifest itself, the
/// live API). The type of a media segment follows its track's kind, which the URL gives only
/// by the track's name: a name as mp4split and `ismtool create` give them (`video`,
/// `audio_<lang>`, `textstream_<lang>`) says it; any other is taken for video.
pub fn content_type(route: &Route) -> Option<&'static str> {
    let presentation = presentation_name(&route.manifest_path);
    let of_track = |t: &TrackRef| mime::of_track(kind_by_name(&t.name, presentation));
    let of_variant = |tracks: &[TrackRef]| match tracks {
        [t] => of_track(t),
        _ => mime::of_track(TrackKind::Video),
    };
    Some(match &route.target {
        Target::Presentation | Target::Live(_) => return None,
        Target::Smooth(SmoothTarget::Manifest) => mime::SMOOTH_MANIFEST,
        Target::Smooth(SmoothTarget::Fragment { track, .. }) => {
            mime::of_track(kind_by_name(track, presentation))
        }
        Target::Dash(DashTarget::Manifest) => mime::MPD,
        Target::Dash(DashTarget::Init { track } | DashTarget::Media { track, .. }) => {
            of_track(track)
        }
        Target::Hls(HlsTarget::Master | HlsTarget::Playlist { .. }) => mime::M3U8,
        Target::Hls(HlsTarget::Init { variant } | HlsTarget::Part { variant, .. }) => {
            of_variant(&variant.tracks)
        }
        Target::Hls(HlsTarget::Segment {
            variant, format, ..
        }) => match format {
            HlsSegmentFormat::Ts => mime::TS,
            HlsSegmentFormat::Aac => mime::PACKED_AUDIO,
            HlsSegmentFormat::WebVtt => mime::WEBVTT,
            HlsSegmentFormat::Fmp4 => of_variant(&variant.tracks),
        },
        Target::Hds(HdsTarget::Manifest) => mime::F4M,
        Target::Hds(HdsTarget::Fragment { .. }) => mime::F4F,
    })
}

/// The stem of the server manifest's file name: the prefix of DASH and HLS track URLs.
fn presentation_name(manifest_path: &str) -> &str {
    let file = manifest_path.rsplit('/').next().unwrap_or("");
    file.rsplit_once('.').map_or(file, |(stem, _)| stem)
}

/// A track's kind as its name says, the name as a URL gives it (possibly after
/// `<presentation>-`).
fn kind_by_name(name: &str, presentation: &str) -> TrackKind {
    let name = name
        .strip_prefix(presentation)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(name);
    let starts = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    if starts("audio") {
        TrackKind::Audio
    } else if starts("text") || starts("subtitle") {
        TrackKind::Text
    } else {
        TrackKind::Video
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::RouteOptions;

    fn route(url: &str) -> Route {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        Route::parse(path.as_bytes(), query.as_bytes(), RouteOptions::default()).unwrap()
    }

    #[test]
    fn stored_files_stand_for_every_url_but_the_fmp4_master_and_iframes() {
        for url in [
            "/v/m.ism/.m3u8",
            "/v/m.ism/keyframes/m-video=1.m3u8",
            "/v/m.ism/hls/m-video=1.m3u8?hls_fmp4",
            "/v/m.ism/hls/m-video=1-3.m4s?hls_fmp4",
            "/v/m.ism/.mpd?token=abc",
            "/v/m.ism/Manifest",
        ] {
            assert!(may_be_stored(&route(url)), "{url}");
        }
        for url in [
            "/v/m.ism/.m3u8?hls_fmp4",
            "/v/m.ism/.m3u8?hls_fmp4=false",
            "/v/m.ism/keyframes/m-video=1.m3u8?hls_fmp4",
        ] {
            assert!(!may_be_stored(&route(url)), "{url}");
        }
    }

    #[test]
    fn content_types_are_the_generated_answers() {
        for (url, want) in [
            ("/v/m.ism/Manifest", Some(mime::SMOOTH_MANIFEST)),
            (
                "/v/m.ism/QualityLevels(1)/Fragments(video=0)",
                Some(mime::VIDEO_MP4),
            ),
            (
                "/v/m.ism/QualityLevels(1)/Fragments(audio_eng=0)",
                Some(mime::AUDIO_MP4),
            ),
            (
                "/v/m.ism/QualityLevels(1)/Fragments(textstream_eng=0)",
                Some(mime::APPLICATION_MP4),
            ),
            ("/v/m.ism/.mpd", Some(mime::MPD)),
            ("/v/m.ism/dash/m-video=1.dash", Some(mime::VIDEO_MP4)),
            ("/v/m.ism/dash/m-audio_eng=1-0.dash", Some(mime::AUDIO_MP4)),
            // The presentation's own name is no hint: `audio-m` plays video.
            (
                "/v/audio-m.ism/dash/audio-m-video=1-0.dash",
                Some(mime::VIDEO_MP4),
            ),
            ("/v/m.ism/.m3u8", Some(mime::M3U8)),
            ("/v/m.ism/keyframes/m-video=1.m3u8", Some(mime::M3U8)),
            ("/v/m.ism/m-video=1-1.ts", Some(mime::TS)),
            ("/v/m.ism/m-audio=1-1.aac", Some(mime::PACKED_AUDIO)),
            ("/v/m.ism/m-textstream_eng=1-1.vtt", Some(mime::WEBVTT)),
            ("/v/m.ism/hls/m-audio_eng=1.m4s", Some(mime::AUDIO_MP4)),
            ("/v/m.ism/hls/m-video=1-2.m4s", Some(mime::VIDEO_MP4)),
            ("/v/m.ism/.f4m", Some(mime::F4M)),
            ("/v/m.ism/m-video=1Seg1-Frag2", Some(mime::F4F)),
            ("/v/m.ism", None),
            ("/v/c.isml/state", None),
        ] {
            assert_eq!(content_type(&route(url)), want, "{url}");
        }
    }
}
