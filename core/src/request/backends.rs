//! Which absolute source URLs a server manifest may name: only files of a backend the
//! configuration points at, each mapped to the path under the location that reads it (the
//! inverse of `proxy_pass`'s mapping). Anything else is refused, so a server manifest can never
//! make the origin fetch from a host of its choosing (a cloud metadata address, a local admin
//! port) or from outside the location.

/// One backend: `scheme://host:port<base_path>` is read as `<path_prefix>` under the location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address, lower case (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix of the backend's URLs, starting and ending with `/`.
    pub base_path: String,
    /// The location's path prefix those URLs are read through, ending with `/`.
    pub path_prefix: String,
}

/// The backends a request may read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backends(pub Vec<Backend>);

/// Default port of a scheme.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Backends {
    /// The path under the location that reads `url`, or why it may not be read.
    pub fn path_of(&self, url: &str) -> Result<String, &'static str> {
        if self.0.is_empty() {
            return Err("this location has no backend (ism_proxy_pass) to fetch URLs from");
        }
        let (scheme, rest) = url.split_once("://").ok_or("it is not a URL")?;
        let scheme = scheme.to_ascii_lowercase();
        let port_default =
            default_port(&scheme).ok_or("only http:// and https:// URLs name backend files")?;
        if rest.contains(['?', '#']) {
            return Err("a source URL must not have a query or fragment");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("a source URL must not carry credentials");
        }
        let (host, port) =
            split_authority(authority).ok_or("the URL's host or port is malformed")?;
        let port = port.unwrap_or(port_default);
        let host = host.to_ascii_lowercase();
        let backend = self
            .0
            .iter()
            .find(|b| {
                b.scheme == scheme
                    && b.host == host
                    && b.port == port
                    && path.starts_with(&b.base_path)
            })
            .ok_or("it is not under the location's ism_proxy_pass backend")?;
        let rest = &path[backend.base_path.len()..];
        let decoded = crate::url::query::percent_decode(rest.as_bytes(), false)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("its path is not valid percent-encoded UTF-8")?;
        if decoded.chars().any(char::is_control) {
            return Err("its path holds a control character");
        }
        if decoded
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err("its path has an empty, . or .. segment");
        }
        Ok(format!("{}{decoded}", backend.path_prefix))
    }
}

/// A `Content-Range: bytes first-last/total` value, with `first <= last < total`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let digits = |s: &str| {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last, total) = (digits(first)?, digits(last)?, digits(total)?);
    (first <= last && last < total).then_some((first, last, total))
}

/// `host[:port]` or `[v6][:port]`.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> Backends {
        Backends(vec![Backend {
            scheme: "http".into(),
            host: "storage".into(),
            port: 8080,
            base_path: "/media/".into(),
            path_prefix: "/video/proxy/".into(),
        }])
    }

    #[test]
    fn maps_urls_of_the_backend_under_the_location() {
        let b = backends();
        assert_eq!(
            b.path_of("http://storage:8080/media/a/b%20c.mp4")
                .as_deref(),
            Ok("/video/proxy/a/b c.mp4")
        );
        assert_eq!(
            b.path_of("HTTP://STORAGE:8080/media/x.ismv").as_deref(),
            Ok("/video/proxy/x.ismv")
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(
            parse_content_range(" bytes 99-99/100 "),
            Some((99, 99, 100))
        );
        for bad in [
            "bytes 0-100/100",
            "bytes 5-4/100",
            "bytes */100",
            "bytes 0-9/*",
            "bytes -1-9/100",
            "bytes +0-9/100",
            "items 0-9/100",
            "bytes 0-9",
            "bytes 0-99999999999999999999999/1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let b = backends();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/media/x.mp4",
            "http://storage/media/x.mp4",
            "https://storage:8080/media/x.mp4",
            "http://storage:8080/other/x.mp4",
            "http://storage:8080/media/../secret.mp4",
            "http://storage:8080/media/%2e%2e/secret.mp4",
            "http://storage:8080/media/a//b.mp4",
            "http://storage:8080/media/x.mp4?redirect=http://evil/",
            "http://user@storage:8080/media/x.mp4",
            "http://storage:8080/media/%00.mp4",
            "http://storage:8080/media/%ff.mp4",
            "s3://bucket/key.mp4",
            "ftp://storage:8080/media/x.mp4",
        ] {
            assert!(b.path_of(url).is_err(), "{url} was allowed");
        }
        assert!(Backends::default()
            .path_of("http://storage:8080/media/x.mp4")
            .is_err());
    }
}
