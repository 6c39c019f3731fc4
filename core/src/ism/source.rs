//! Deciding what a track `src` may point at.
//!
//! A relative src names a file inside the manifest's directory tree and nothing else: no `..`
//! or `.` segment, no empty segment, no leading `/`, no backslash, no control character. It is
//! checked as written, without percent-decoding: the src is a file name, so `%2e%2e` is a
//! literal (odd but harmless) name, and whoever turns it into a URL must escape it.

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
    for segment in src.split('/') {
        match segment {
            "" => return Err(refuse("it has an empty path segment")),
            "." | ".." => {
                return Err(refuse(
                    "it has a . or .. segment: a src must stay below the manifest's directory",
                ))
            }
            _ => {}
        }
    }
    Ok(SourceRef::Relative(src.to_owned()))
}

/// Joins a relative src (already accepted by [`resolve_src`]) to the directory of the manifest
/// path: `/a/b/v.ism` + `x/y.ismv` → `/a/b/x/y.ismv`. A manifest path without `/` is in the
/// current directory, so the src is returned as is.
pub fn join_relative(manifest_path: &str, rel: &str) -> String {
    let directory = match manifest_path.rfind('/') {
        Some(i) => manifest_path.get(..=i).unwrap_or_default(),
        None => "",
    };
    let mut joined = String::with_capacity(directory.len() + rel.len());
    joined.push_str(directory);
    joined.push_str(rel);
    joined
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}
