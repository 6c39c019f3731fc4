//! The formats an answer of the module can be in: the four streaming formats a packager
//! writes (which `<fmt>_playout` metas switch, and content protection applies to), and the
//! other kinds of response (progressive download, live ingest, the Live API), as routing
//! decides them. The status endpoint counts responses by it.

use crate::url::{LiveTarget, ManifestKind, Route, Target};

/// What a response of the module was: the protocol it packaged, or the live ingest and API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Smooth,
    Dash,
    Hls,
    Hds,
    /// A bare `.mp4` sent as it is (progressive download).
    Progressive,
    /// An encoder's push (`Streams(…)`).
    LiveIngest,
    /// The publishing-point API: `state`, `statistics`, `archive`, PUT and DELETE of a channel.
    LiveApi,
    /// Whatever could not be routed (or names a VOD server manifest itself).
    Other,
}

impl Format {
    pub const COUNT: usize = 8;
    pub const ALL: [Format; Format::COUNT] = [
        Format::Smooth,
        Format::Dash,
        Format::Hls,
        Format::Hds,
        Format::Progressive,
        Format::LiveIngest,
        Format::LiveApi,
        Format::Other,
    ];

    /// The `format` label.
    pub fn label(self) -> &'static str {
        match self {
            Format::Smooth => "smooth",
            Format::Dash => "dash",
            Format::Hls => "hls",
            Format::Hds => "hds",
            Format::Progressive => "progressive",
            Format::LiveIngest => "live-ingest",
            Format::LiveApi => "live-api",
            Format::Other => "other",
        }
    }

    /// Position in [`Format::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The format `index` names in [`Format::ALL`]; [`Format::Other`] for anything else (a
    /// value read back from shared memory is never trusted to be in range).
    pub fn from_index(index: usize) -> Format {
        Format::ALL.get(index).copied().unwrap_or(Format::Other)
    }

    /// The streaming formats: those a packager writes and a `<fmt>_playout` meta switches.
    pub const PACKAGED: [Format; 4] = [Format::Smooth, Format::Dash, Format::Hls, Format::Hds];

    /// Whether a packager writes it.
    pub fn is_packaged(self) -> bool {
        Format::PACKAGED.contains(&self)
    }

    /// The name messages give it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Smooth => "Smooth Streaming",
            Format::Dash => "MPEG-DASH",
            Format::Hls => "HLS",
            Format::Hds => "HDS",
            Format::Progressive => "progressive download",
            Format::LiveIngest => "live ingest",
            Format::LiveApi => "the Live API",
            Format::Other => "other",
        }
    }

    /// The format a routed request is counted under, and packaged in.
    pub fn of(route: &Route) -> Format {
        match (&route.target, route.kind) {
            (Target::Smooth(_), _) => Format::Smooth,
            (Target::Dash(_), _) => Format::Dash,
            (Target::Hls(_), _) => Format::Hls,
            (Target::Hds(_), _) => Format::Hds,
            (Target::Live(LiveTarget::Ingest { .. }), _) => Format::LiveIngest,
            (Target::Live(_), _) => Format::LiveApi,
            (Target::Presentation, ManifestKind::Mp4) => Format::Progressive,
            // A channel itself: the API's PUT and DELETE.
            (Target::Presentation, ManifestKind::Live) => Format::LiveApi,
            (Target::Presentation, ManifestKind::Vod) => Format::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::RouteOptions;

    fn format_of(path: &str) -> Format {
        let route = Route::parse(path.as_bytes(), b"", RouteOptions::default()).unwrap();
        Format::of(&route)
    }

    #[test]
    fn formats_follow_the_route() {
        assert_eq!(format_of("/v/a.ism/Manifest"), Format::Smooth);
        assert_eq!(format_of("/v/a.ism/.mpd"), Format::Dash);
        assert_eq!(format_of("/v/a.ism/.m3u8"), Format::Hls);
        assert_eq!(format_of("/v/a.ism/.f4m"), Format::Hds);
        assert_eq!(format_of("/v/a.mp4"), Format::Progressive);
        assert_eq!(format_of("/v/a.mp4/.mpd"), Format::Dash);
        assert_eq!(format_of("/c/a.isml/Streams(s1)"), Format::LiveIngest);
        assert_eq!(format_of("/c/a.isml/state"), Format::LiveApi);
        assert_eq!(format_of("/c/a.isml"), Format::LiveApi);
        assert_eq!(format_of("/c/a.isml/Manifest"), Format::Smooth);
        assert_eq!(format_of("/v/a.ism"), Format::Other);
        for (i, f) in Format::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(Format::from_index(i), *f);
        }
        assert_eq!(Format::from_index(99), Format::Other);
        // The streaming formats come first, in the order of PACKAGED.
        for (i, f) in Format::PACKAGED.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert!(f.is_packaged());
        }
        assert!(!Format::Progressive.is_packaged());
    }
}
