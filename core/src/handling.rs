//! What the content handler does with a routed request: one decision for every source kind
//! (local files, an `ism_proxy_pass` server, S3 behind it), so every refusal and format switch
//! holds wherever the files are. The glue (`src/handler.rs`) carries the plan out.
//!
//! The order of the checks is the decision: what the method allows, then what the location
//! switches on (`usp_handle_f4f`, `usp_handle_api`), then where the bytes come from. A server
//! manifest itself (`/v.ism`, `/ch.isml`) is never sent to a client, local or remote: it can
//! hold content keys.

use crate::config::location::LocationSettings;
use crate::url::{LiveTarget, ManifestKind, Route, RouteError, Target};
use crate::Error;

/// The request method, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    /// Any other (OPTIONS, PATCH, …): refused everywhere.
    Other,
}

impl Method {
    fn reads(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take an encoder's push of `stream` into the channel's archive.
    Ingest { stream: String },
    /// Create or update the publishing point from the body (Live API PUT).
    PutChannel,
    /// Remove the publishing point and its archive (Live API DELETE).
    DeleteChannel,
    /// Answer a Live API report (`state`, `archive`, `statistics`).
    LiveReport(LiveTarget),
    /// Send the local `.mp4` as it is (a progressive download).
    SendFile,
    /// Hand the request to the proxy: the backend's `.mp4` as it is, ranges and all. `signed`:
    /// the location has S3 credentials, so the request carries a SigV4 signature (and none of
    /// the client's query, which S3 would read as operations on the object).
    ProxyFile { signed: bool },
    /// Package from local files.
    PackageLocal,
    /// Package from the `ism_proxy_pass` server's files (ranged reads).
    PackageRemote,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `usp_prefer_static`: serve a file stored at the requested path when there is one, and
    /// do `action` only when there is none.
    pub static_first: bool,
    pub action: Action,
}

/// Decides what `method` on `route` does in a location with `settings` (merged).
pub fn plan(route: &Route, method: Method, settings: &LocationSettings) -> Result<Plan, Error> {
    let on = LocationSettings::on;
    let remote = settings.proxy_pass.is_some();
    let hds_off = matches!(route.target, Target::Hds(_)) && !on(settings.handle_f4f);
    let static_first = on(settings.prefer_static)
        && method.reads()
        && !hds_off
        && crate::stored::may_be_stored(route);
    let only_local = |what: &str| {
        Error::Unsupported(format!(
            "{what} into a location that reads from a remote server"
        ))
    };
    let action = match &route.target {
        Target::Live(LiveTarget::Ingest { stream }) => {
            if !matches!(method, Method::Post | Method::Put) {
                return Err(Error::MethodNotAllowed);
            }
            if remote {
                return Err(only_local("live ingest"));
            }
            // A name no archive file can have is the client's mistake (400), said at once.
            crate::live::limits::check_stream_name(stream)?;
            Action::Ingest {
                stream: stream.clone(),
            }
        }
        Target::Presentation
            if route.kind == ManifestKind::Live
                && matches!(method, Method::Put | Method::Delete) =>
        {
            if !on(settings.handle_api) {
                return Err(Error::MethodNotAllowed);
            }
            if remote {
                return Err(only_local("the publishing-point API"));
            }
            if method == Method::Put {
                Action::PutChannel
            } else {
                Action::DeleteChannel
            }
        }
        _ if !method.reads() => return Err(Error::MethodNotAllowed),
        Target::Live(report) => {
            if remote {
                return Err(only_local("the publishing-point API"));
            }
            Action::LiveReport(report.clone())
        }
        Target::Hds(_) if hds_off => {
            return Err(Error::Route(RouteError::UnknownVirtualPath(
                "HDS (usp_handle_f4f is off)".into(),
            )))
        }
        Target::Presentation if route.kind == ManifestKind::Mp4 => {
            if remote {
                Action::ProxyFile {
                    signed: settings.s3.credentials().is_some(),
                }
            } else {
                Action::SendFile
            }
        }
        // The server manifest itself: never sent, wherever it is.
        Target::Presentation => {
            return Err(Error::Route(RouteError::UnknownVirtualPath(String::new())))
        }
        Target::Smooth(_) | Target::Dash(_) | Target::Hls(_) | Target::Hds(_) => {
            if remote {
                Action::PackageRemote
            } else {
                Action::PackageLocal
            }
        }
    };
    Ok(Plan {
        static_first,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::location::Position;
    use crate::url::RouteOptions;

    fn settings(directives: &[&str]) -> LocationSettings {
        let mut l = LocationSettings::default();
        for d in directives {
            let words: Vec<&str> = d.split_whitespace().collect();
            l.set(words[0], &words[1..], Position::default()).unwrap();
        }
        l.merge(&LocationSettings::default()).unwrap();
        l
    }

    const LOCAL: &[&str] = &["usp_handle_ism"];
    const REMOTE: &[&str] = &["ism_proxy_pass http://storage/"];
    const S3: &[&str] = &[
        "ism_proxy_pass http://storage/bucket/",
        "s3_access_key AKIAEXAMPLE",
        "s3_secret_key secret",
    ];

    fn decide(path: &str, method: Method, directives: &[&str]) -> Result<Plan, Error> {
        let route = Route::parse(path.as_bytes(), b"", RouteOptions::default()).unwrap();
        plan(&route, method, &settings(directives))
    }

    fn action(path: &str, method: Method, directives: &[&str]) -> Action {
        decide(path, method, directives).unwrap().action
    }

    /// (status, token) of a refusal.
    fn refused(path: &str, method: Method, directives: &[&str]) -> (u16, &'static str) {
        let e = decide(path, method, directives).unwrap_err();
        (e.status(), e.token())
    }

    #[test]
    fn a_server_manifest_is_never_sent_local_or_remote() {
        for location in [LOCAL, REMOTE, S3] {
            for path in ["/v/movie.ism", "/v/movie.ism/", "/v/ch.isml"] {
                for method in [Method::Get, Method::Head] {
                    assert_eq!(
                        refused(path, method, location),
                        (404, "UNKNOWN_VIRTUAL_PATH"),
                        "{path} {location:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn hds_only_where_usp_handle_f4f_is_on_local_or_remote() {
        for location in [LOCAL, REMOTE, S3] {
            assert_eq!(
                refused("/v/movie.ism/movie.f4m", Method::Get, location),
                (404, "UNKNOWN_VIRTUAL_PATH"),
                "{location:?}"
            );
        }
        assert_eq!(
            action("/v/movie.ism/movie.f4m", Method::Get, &["usp_handle_f4f"]),
            Action::PackageLocal
        );
        assert_eq!(
            action(
                "/v/movie.ism/movie.f4m",
                Method::Get,
                &["usp_handle_f4f", "ism_proxy_pass http://storage/"]
            ),
            Action::PackageRemote
        );
    }

    #[test]
    fn packaged_formats_are_made_where_the_files_are() {
        for path in [
            "/v/movie.ism/.mpd",
            "/v/movie.ism/.m3u8",
            "/v/movie.ism/Manifest",
        ] {
            assert_eq!(action(path, Method::Get, LOCAL), Action::PackageLocal);
            assert_eq!(action(path, Method::Head, REMOTE), Action::PackageRemote);
            assert_eq!(action(path, Method::Get, S3), Action::PackageRemote);
        }
    }

    #[test]
    fn progressive_downloads_are_signed_where_the_location_signs() {
        assert_eq!(action("/v/a.mp4", Method::Get, LOCAL), Action::SendFile);
        assert_eq!(
            action("/v/a.mp4", Method::Get, REMOTE),
            Action::ProxyFile { signed: false }
        );
        assert_eq!(
            action("/v/a.mp4", Method::Head, S3),
            Action::ProxyFile { signed: true }
        );
    }

    #[test]
    fn methods_other_than_reads_are_refused_where_nothing_takes_them() {
        for location in [LOCAL, REMOTE, S3] {
            for method in [Method::Post, Method::Put, Method::Delete, Method::Other] {
                for path in ["/v/a.mp4", "/v/movie.ism/.mpd", "/v/movie.ism"] {
                    assert_eq!(
                        refused(path, method, location),
                        (405, "METHOD_NOT_ALLOWED"),
                        "{path} {method:?}"
                    );
                }
            }
        }
        // A publishing point's PUT and DELETE without the API switched on.
        assert_eq!(
            refused("/ch.isml", Method::Put, LOCAL),
            (405, "METHOD_NOT_ALLOWED")
        );
        assert_eq!(
            refused("/ch.isml/Streams(s1)", Method::Get, LOCAL),
            (405, "METHOD_NOT_ALLOWED")
        );
        assert_eq!(
            refused("/ch.isml/state", Method::Post, LOCAL),
            (405, "METHOD_NOT_ALLOWED")
        );
    }

    #[test]
    fn live_takes_pushes_and_the_api_only_from_local_files() {
        assert_eq!(
            action("/ch.isml/Streams(s1)", Method::Post, LOCAL),
            Action::Ingest {
                stream: "s1".into()
            }
        );
        assert_eq!(
            action("/ch.isml/Streams(s1)", Method::Put, LOCAL),
            Action::Ingest {
                stream: "s1".into()
            }
        );
        // Names no archive file can have: the client's mistake, before anything is read.
        let long = format!("/ch.isml/Streams({})", "x".repeat(255));
        for path in ["/ch.isml/Streams(..)", "/ch.isml/Streams(.)", long.as_str()] {
            assert_eq!(
                refused(path, Method::Post, LOCAL),
                (400, "INGEST_BAD_STREAM_NAME"),
                "{path}"
            );
        }
        let api = ["usp_handle_ism", "usp_handle_api"];
        assert_eq!(action("/ch.isml", Method::Put, &api), Action::PutChannel);
        assert_eq!(
            action("/ch.isml", Method::Delete, &api),
            Action::DeleteChannel
        );
        assert_eq!(
            action("/ch.isml/state", Method::Get, LOCAL),
            Action::LiveReport(LiveTarget::State)
        );
        let remote_api = ["usp_handle_api", "ism_proxy_pass http://storage/"];
        for (path, method) in [
            ("/ch.isml/Streams(s1)", Method::Post),
            ("/ch.isml", Method::Put),
            ("/ch.isml", Method::Delete),
            ("/ch.isml/statistics", Method::Get),
        ] {
            assert_eq!(
                refused(path, method, &remote_api),
                (501, "UNSUPPORTED"),
                "{path}"
            );
        }
    }

    #[test]
    fn stored_files_come_first_only_for_reads_of_what_may_be_stored() {
        let prefer = ["usp_handle_ism", "usp_prefer_static"];
        let p = decide("/v/movie.ism/.mpd", Method::Get, &prefer).unwrap();
        assert!(p.static_first);
        assert_eq!(p.action, Action::PackageLocal);
        assert!(
            !decide("/v/movie.ism/.mpd", Method::Get, LOCAL)
                .unwrap()
                .static_first
        );
        // HDS switched off is not served from a stored copy either.
        assert!(decide("/v/movie.ism/movie.f4m", Method::Get, &prefer).is_err());
        let both = ["usp_handle_ism", "usp_prefer_static", "usp_handle_f4f"];
        assert!(
            decide("/v/movie.ism/movie.f4m", Method::Get, &both)
                .unwrap()
                .static_first
        );
        // The master playlists that a stored tree cannot tell apart are made.
        let route =
            Route::parse(b"/v/movie.ism/.m3u8", b"hls_fmp4", RouteOptions::default()).unwrap();
        assert!(
            !plan(&route, Method::Get, &settings(&prefer))
                .unwrap()
                .static_first
        );
    }
}
