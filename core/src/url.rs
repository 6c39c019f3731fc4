//! Routing: from a request path and query string to a typed [`Route`].
//!
//! Everything after `name.ism/` (or `.isml/`, or a bare `video.mp4/`) is virtual: it names a
//! format, a track or variant and a time or number, and the packagers answer it from the media
//! index. The grammar is the commercial origin's (see docs/COMPAT.md §2), including the legacy
//! `Manifest(format=…)` forms that its internal rewrite rules accept unless `usp_skip_rewrite`.
//!
//! The path handed in is the request path as nginx decoded it (`r->uri`): it is never
//! percent-decoded a second time here, so `%252e%252e` cannot turn into `..`. The query string is
//! raw (`r->args`) and each value is decoded exactly once. Track names are the exception that
//! proves the rule: the manifests write them encoded twice, so the router decodes the
//! track-name fields once more (see [`name`]).

pub mod name;
pub(crate) mod query;
mod virtual_path;

use std::fmt;

pub use name::{check_name, decode_name, encode_name, NameError};
pub use query::{MpdSegmentTemplate, QueryOptions, TimePoint, MPD_SEGMENT_TEMPLATE_VALUES};
pub use virtual_path::{
    DashTarget, HdsTarget, HlsPlaylist, HlsSegmentFormat, HlsTarget, LiveTarget, SegmentIndex,
    SmoothTarget, Target, TrackRef, Variant,
};

/// Longest request path (bytes) the router accepts; longer ones are answered with 414.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest query string (bytes) the router accepts.
pub const MAX_QUERY_LEN: usize = 8192;
/// Most characters of a request or file value an error message repeats.
pub const MAX_ECHO_CHARS: usize = 64;

/// `value` as an error message repeats it: quoted, control characters escaped, cut to
/// [`MAX_ECHO_CHARS`] characters with an ellipsis. Messages give their reason before any such
/// value, so nginx's cut of a long log line never drops the reason.
pub fn excerpt(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}", format!("{}…", &value[..cut])),
    }
}

/// What kind of server manifest the path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `.ism`: a VOD presentation described by a SMIL server manifest.
    Vod,
    /// `.isml`: a live publishing point.
    Live,
    /// A bare progressive MP4 used in place of a server manifest (`video.mp4/.mpd`).
    Mp4,
}

impl ManifestKind {
    fn from_extension(ext: &str) -> Option<Self> {
        if ext.eq_ignore_ascii_case("ism") {
            Some(ManifestKind::Vod)
        } else if ext.eq_ignore_ascii_case("isml") {
            Some(ManifestKind::Live)
        } else if ext.eq_ignore_ascii_case("mp4") {
            Some(ManifestKind::Mp4)
        } else {
            None
        }
    }
}

/// A fully parsed request: which presentation, what to produce from it, and with which options.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The server manifest's path within the location (decoded, starts with `/`, never contains
    /// `.` or `..` segments).
    pub manifest_path: String,
    /// The kind of server manifest.
    pub kind: ManifestKind,
    /// What the virtual path asks for.
    pub target: Target,
    /// Options from the query string.
    pub options: QueryOptions,
}

/// How the router treats URL forms that only the internal rewrite rules know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOptions {
    /// Accept the legacy `Manifest(format=…)` / `Fragments(…,format=…)` forms (`usp_skip_rewrite`
    /// off, the default).
    pub legacy_forms: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions { legacy_forms: true }
    }
}

/// Why a request could not be routed; each maps to one HTTP status (`Error::status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is longer than [`MAX_PATH_LEN`] or the query longer than [`MAX_QUERY_LEN`].
    #[error("request path or query is too long ({0} bytes)")]
    TooLong(usize),
    /// The path holds bytes no server-manifest path may hold (NUL, control characters, invalid
    /// UTF-8) or does not start with `/`.
    #[error("malformed request path: {0}")]
    MalformedPath(&'static str),
    /// A `.` or `..` segment: the path would leave the location's root.
    #[error("request path escapes its root")]
    PathEscapes,
    /// No `.ism`, `.isml` or `.mp4` segment in the path.
    #[error("no server manifest in the request path")]
    NoServerManifest,
    /// The virtual path after the server manifest is not one the URL scheme knows.
    #[error("unknown virtual path {}", excerpt(.0))]
    UnknownVirtualPath(String),
    /// The virtual path has the right shape but a bad value (unbalanced parentheses, a number out
    /// of range, a bad escape in a track name, …).
    #[error("malformed virtual path: {reason}: {}", excerpt(.path))]
    MalformedVirtualPath { path: String, reason: &'static str },
    /// A query option has a value it cannot take (`value` is empty when the reason says it
    /// all).
    #[error("{}", bad_query_message(.name, .value, .reason))]
    BadQuery {
        name: String,
        value: String,
        reason: &'static str,
    },
    /// `vbegin` is not before `vend`, or one is an offset and the other a wall-clock time. The
    /// values are as the query wrote them (both passed the time grammar).
    #[error("{}", subclip_message(.vbegin, .vend, *.order))]
    BadSubclip {
        vbegin: String,
        vend: String,
        /// How `vbegin` compares with `vend`; `None` when they are not in the same form.
        order: Option<std::cmp::Ordering>,
    },
}

fn bad_query_message(name: &str, value: &str, reason: &str) -> String {
    let mut text = if name.is_empty() {
        format!("bad query: {reason}")
    } else {
        format!("bad query option {}: {reason}", excerpt(name))
    };
    if !value.is_empty() {
        text += &format!(", got {}", excerpt(value));
    }
    text
}

fn subclip_message(vbegin: &str, vend: &str, order: Option<std::cmp::Ordering>) -> String {
    // Plain seconds get their unit; clock and UTC times read as they are. Both passed the time
    // grammar (digits, `.`, `:`, `-`, `T`, `Z`), so they need no quoting.
    let shown = |t: &str| {
        let t: String = t.chars().take(MAX_ECHO_CHARS).collect();
        if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            format!("{t}s")
        } else {
            t.to_string()
        }
    };
    let (b, e) = (shown(vbegin), shown(vend));
    match order {
        Some(std::cmp::Ordering::Equal) => {
            format!("bad subclip: vbegin ({b}) is the same time as vend ({e})")
        }
        Some(_) => format!("bad subclip: vbegin ({b}) is after vend ({e})"),
        None => format!("bad subclip: vbegin ({b}) and vend ({e}) mix an offset and a UTC time"),
    }
}

impl Route {
    /// Routes a request: `path` is the decoded request path (nginx's `r->uri`), `query` the raw
    /// query string without `?` (nginx's `r->args`).
    pub fn parse(path: &[u8], query: &[u8], opts: RouteOptions) -> Result<Route, RouteError> {
        if path.len() > MAX_PATH_LEN {
            return Err(RouteError::TooLong(path.len()));
        }
        if query.len() > MAX_QUERY_LEN {
            return Err(RouteError::TooLong(query.len()));
        }
        let path =
            std::str::from_utf8(path).map_err(|_| RouteError::MalformedPath("not valid UTF-8"))?;
        check_path(path)?;

        let (manifest_path, kind, virtual_path) = split_manifest(path)?;
        let options = QueryOptions::parse(query)?;
        let target = Target::parse(kind, virtual_path, opts)?;
        Ok(Route {
            manifest_path: manifest_path.to_string(),
            kind,
            target,
            options,
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.manifest_path, self.target)
    }
}

/// Rejects paths that could name something outside the location's root or that no file name
/// holds. nginx already refuses most of these; the router does not rely on it.
fn check_path(path: &str) -> Result<(), RouteError> {
    if !path.starts_with('/') {
        return Err(RouteError::MalformedPath("does not start with '/'"));
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(RouteError::MalformedPath("control character"));
    }
    if path.contains('\\') {
        return Err(RouteError::MalformedPath("backslash"));
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(RouteError::PathEscapes);
    }
    Ok(())
}

/// Splits at the first segment that names a server manifest (`*.ism`, `*.isml`, `*.mp4`):
/// returns the manifest path, its kind and the virtual path after it (without the leading `/`).
fn split_manifest(path: &str) -> Result<(&str, ManifestKind, &str), RouteError> {
    let mut start = 0;
    for seg in path.split('/') {
        let end = start + seg.len();
        if let Some((stem, ext)) = seg.rsplit_once('.') {
            if !stem.is_empty() {
                if let Some(kind) = ManifestKind::from_extension(ext) {
                    let rest = &path[end..];
                    let virtual_path = rest.strip_prefix('/').unwrap_or(rest);
                    return Ok((&path[..end], kind, virtual_path));
                }
            }
        }
        start = end + 1;
    }
    Err(RouteError::NoServerManifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Result<Route, RouteError> {
        Route::parse(path.as_bytes(), b"", RouteOptions::default())
    }

    /// The status the error answers with (`Error::status`, the one mapping).
    fn status(e: RouteError) -> u16 {
        crate::Error::from(e).status()
    }

    #[test]
    fn splits_at_first_manifest_segment() {
        let r = route("/vod/a/video.ism/Manifest").unwrap();
        assert_eq!(r.manifest_path, "/vod/a/video.ism");
        assert_eq!(r.kind, ManifestKind::Vod);
        let r = route("/live/ch1.isml/Streams(video)").unwrap();
        assert_eq!(r.manifest_path, "/live/ch1.isml");
        assert_eq!(r.kind, ManifestKind::Live);
        let r = route("/v/video.mp4/.mpd").unwrap();
        assert_eq!(r.kind, ManifestKind::Mp4);
        assert_eq!(r.manifest_path, "/v/video.mp4");
        let r = route("/v/VIDEO.ISM/manifest").unwrap();
        assert_eq!(r.kind, ManifestKind::Vod);
    }

    #[test]
    fn directory_named_like_a_manifest_is_not_confused_by_extension_only_names() {
        // A segment that is only an extension (".ism") is not a manifest name.
        assert_eq!(route("/.ism/Manifest"), Err(RouteError::NoServerManifest));
        // A directory called x.ism.d is not a manifest.
        assert_eq!(route("/x.ism.d/y"), Err(RouteError::NoServerManifest));
    }

    #[test]
    fn rejects_escapes_and_bad_bytes() {
        assert_eq!(route("/a/../b.ism/Manifest"), Err(RouteError::PathEscapes));
        assert_eq!(route("/a/./b.ism/Manifest"), Err(RouteError::PathEscapes));
        assert_eq!(
            route("/b.ism/../../etc/passwd"),
            Err(RouteError::PathEscapes)
        );
        assert_eq!(route("/b.ism/.."), Err(RouteError::PathEscapes));
        assert!(matches!(
            route("/b.ism/Manif\0est"),
            Err(RouteError::MalformedPath(_))
        ));
        assert!(matches!(
            route("/b.ism/Mani\nfest"),
            Err(RouteError::MalformedPath(_))
        ));
        assert!(matches!(
            route("b.ism/Manifest"),
            Err(RouteError::MalformedPath(_))
        ));
        assert!(matches!(
            route("/a\\..\\b.ism/Manifest"),
            Err(RouteError::MalformedPath(_))
        ));
        assert!(matches!(
            Route::parse(b"/a\xff.ism/Manifest", b"", RouteOptions::default()),
            Err(RouteError::MalformedPath(_))
        ));
    }

    #[test]
    fn percent_sequences_in_the_path_stay_literal() {
        // nginx has decoded the path once already; a second decode would let %2e%2e become "..".
        let r = route("/a/%2e%2e/v.ism/Manifest").unwrap();
        assert_eq!(r.manifest_path, "/a/%2e%2e/v.ism");
        let r = route("/a%2Fb.ism/Manifest").unwrap();
        assert_eq!(r.manifest_path, "/a%2Fb.ism");
    }

    #[test]
    fn overlong_input_is_refused() {
        let long = format!("/{}.ism/Manifest", "a".repeat(MAX_PATH_LEN));
        assert!(matches!(route(&long), Err(RouteError::TooLong(_))));
        assert_eq!(status(route(&long).unwrap_err()), 414);
        let q = "a=".to_string() + &"b".repeat(MAX_QUERY_LEN);
        assert!(matches!(
            Route::parse(b"/v.ism/Manifest", q.as_bytes(), RouteOptions::default()),
            Err(RouteError::TooLong(_))
        ));
    }

    #[test]
    fn errors_give_their_reason_before_a_cut_value() {
        assert_eq!(excerpt("abc"), "\"abc\"");
        assert_eq!(excerpt("a\nb\u{85}"), "\"a\\nb\\u{85}\"");
        let long = "é".repeat(5000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), MAX_ECHO_CHARS + 3);
        assert!(cut.ends_with("…\""));

        let value = "x".repeat(3000);
        let query = format!("max_bitrate={value}");
        let err = Route::parse(b"/v.ism/.mpd", query.as_bytes(), RouteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad query option \"max_bitrate\": expected a non-negative integer"),
            "{err}"
        );
        assert!(err.len() < 200, "{err}");

        let path = format!("/v.ism/QualityLevels(1)/Fragments(v={value})");
        let err = route(&path).unwrap_err().to_string();
        assert!(
            err.starts_with("malformed virtual path: time is not a number: "),
            "{err}"
        );
        assert!(err.len() < 200, "{err}");
        let err = route(&format!("/v.ism/{value}")).unwrap_err().to_string();
        assert!(err.starts_with("unknown virtual path \"xxx") && err.len() < 200);
    }

    #[test]
    fn subclip_errors_name_both_bounds() {
        let err = |q: &str| {
            Route::parse(b"/v.ism/.mpd", q.as_bytes(), RouteOptions::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("vbegin=20&vend=10"),
            "bad subclip: vbegin (20s) is after vend (10s)"
        );
        assert_eq!(
            err("vend=00:00:10&vbegin=00:00:10"),
            "bad subclip: vbegin (00:00:10) is the same time as vend (00:00:10)"
        );
        assert_eq!(
            err("vbegin=10&vend=2024-01-01T00:00:00Z"),
            "bad subclip: vbegin (10s) and vend (2024-01-01T00:00:00Z) mix an offset and a UTC time"
        );
        assert_eq!(
            status(
                Route::parse(
                    b"/v.ism/.mpd",
                    b"vbegin=20&vend=10",
                    RouteOptions::default()
                )
                .unwrap_err()
            ),
            400
        );
        // The last value of each counts, as for every option.
        assert!(Route::parse(
            b"/v.ism/.mpd",
            b"vbegin=20&vend=10&vend=30",
            RouteOptions::default()
        )
        .is_ok());
    }

    #[test]
    fn statuses() {
        assert_eq!(status(route("/a/../v.ism/x").unwrap_err()), 403);
        assert_eq!(status(route("/v.ism/nonsense").unwrap_err()), 404);
        assert_eq!(status(route("/v.txt").unwrap_err()), 404);
        let bad_query = Route::parse(b"/v.ism/.mpd", b"max_bitrate=x", RouteOptions::default());
        assert_eq!(status(bad_query.unwrap_err()), 400);
    }
}
