//! Deciding what a track `src` may point at.
//!
//! A relative src names a file relative to the manifest's directory: no empty segment, no
//! leading `/`, no backslash, no control character. `.` and `..` segments are allowed (manifests
//! made by mp4split point at shared media in sibling folders, `../audio/eng.mp4`); where such a
//! path may lead is the request's business: it must stay inside the location's document root
//! (see [`join_relative`] and `Request::with_root`). It is checked as written, without
//! percent-decoding: the src is a file name, so `%2e%2e` is a literal (odd but harmless) name,
//! and whoever turns it into a URL must escape it.

use super::IsmError;

/// Where a track's media lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// A path relative to the manifest's directory; see [`join_relative`].
    Relative(String),
    /// An `http://` or `https://` URL.
    Http(String),
    /// An `s3://bucket/key` URL.
    S3(String),
}

/// Classifies and validates a track `src`. URLs are checked lightly (a non-empty host, no
/// whitespace or control characters); relative paths strictly (see the module documentation).
pub fn resolve_src(src: &str) -> Result<SourceRef, IsmError> {
    let refuse = |reason| IsmError::BadSrc {
        src: src.to_owned(),
        reason,
    };
    if src.is_empty() {
        return Err(refuse("it is empty"));
    }
    if src.chars().any(char::is_control) {
        return Err(refuse("it contains a control character"));
    }
    for (scheme, make) in [
        ("http://", SourceRef::Http as fn(String) -> SourceRef),
        ("https://", SourceRef::Http),
        ("s3://", SourceRef::S3),
    ] {
        if let Some(rest) = strip_prefix_ignore_case(src, scheme) {
            if src.chars().any(char::is_whitespace) {
                return Err(refuse("a URL must not contain whitespace"));
            }
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            let host = if host.starts_with('[') {
                host
            } else {
                host.split(':').next().unwrap_or_default()
            };
            if host.is_empty() || host == "[]" {
                return Err(refuse("the URL has no host"));
            }
            return Ok(make(src.to_owned()));
        }
    }
    if src.contains("://") {
        return Err(refuse(
            "only relative paths and http://, https:// and s3:// URLs are allowed",
        ));
    }
    if src.starts_with('/') {
        return Err(refuse(
            "absolute paths are not allowed: a src is relative to the manifest",
        ));
    }
    if src.contains('\\') {
        return Err(refuse("it contains a backslash"));
    }
    if src.split('/').any(str::is_empty) {
        return Err(refuse("it has an empty path segment"));
    }
    if src
        .split('/')
        .next_back()
        .is_some_and(|last| last == "." || last == "..")
    {
        return Err(refuse("it names a directory, not a file"));
    }
    Ok(SourceRef::Relative(src.to_owned()))
}

/// Whether a relative src climbs with `..` (its file must then be checked to stay inside the
/// document root, symbolic links resolved).
pub fn climbs(rel: &str) -> bool {
    rel.split('/').any(|segment| segment == "..")
}

/// Joins a relative src (already accepted by [`resolve_src`]) to the directory of the manifest
/// path, resolving `.` and `..` as names (`/a/b/v.ism` + `../x/y.ismv` → `/a/x/y.ismv`). A
/// manifest path without `/` is in the current directory. `None` when `..` would climb above
/// the start of the path.
pub fn join_relative(manifest_path: &str, rel: &str) -> Option<String> {
    let directory = match manifest_path.rfind('/') {
        Some(i) => manifest_path.get(..=i).unwrap_or_default(),
        None => "",
    };
    if !rel.split('/').any(|s| s == "." || s == "..") {
        return Some(format!("{directory}{rel}"));
    }
    let absolute = directory.starts_with('/');
    let mut parts: Vec<&str> = directory.split('/').filter(|s| !s.is_empty()).collect();
    for segment in rel.split('/') {
        match segment {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    let joined = parts.join("/");
    Some(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

/// Whether `path` (already normalised by [`join_relative`]) lies inside the directory `root`,
/// comparing whole path segments (`/media2/x` is not inside `/media`).
pub fn is_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path.strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('/') || (root.is_empty() && !path.is_empty()))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}
