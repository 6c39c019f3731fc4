//! Validation of directive values, shared by the nginx glue (at `nginx -t` time) and the CLI,
//! a location's settings as its directives make them ([`location`]), and the bounds of live
//! ingest ([`ingest`]).
//!
//! Each function returns a message that names what is wrong with the value; the glue adds the
//! file:line.

pub mod ingest;
pub mod location;

use std::fmt;

/// A directive value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// `on` / `off` (case-insensitive, as nginx's own flag directives).
pub fn parse_switch(value: &str) -> Result<bool, ConfigError> {
    if value.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(err("it must be \"on\" or \"off\""))
    }
}

/// URL schemes `ism_proxy_pass` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

impl Scheme {
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed `ism_proxy_pass` URL: where remote manifests and media under a location come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPassUrl {
    /// http or https.
    pub scheme: Scheme,
    /// Host name, IPv4 address, or IPv6 address without brackets.
    pub host: String,
    /// Explicit port, if given.
    pub port: Option<u16>,
    /// Path prefix, always starting with `/` (`/` when the URL has none).
    pub path: String,
    /// Whether the URL has a path: as with `proxy_pass`, the location's prefix is then replaced
    /// by it; without one, request paths are passed as they are.
    pub explicit_path: bool,
}

impl ProxyPassUrl {
    /// Parses `http[s]://host[:port][/path]`. No user info, query or fragment: they have no
    /// meaning for an origin's upstream and usually mean a pasted URL went wrong.
    pub fn parse(url: &str) -> Result<ProxyPassUrl, ConfigError> {
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
            (Scheme::Http, r)
        } else if let Some(r) = strip_prefix_ci(url, "https://") {
            (Scheme::Https, r)
        } else {
            return Err(err("the URL must start with http:// or https://"));
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("the URL contains whitespace or control characters"));
        }
        if url.contains('?') || url.contains('#') {
            return Err(err("the URL must not have a query or fragment"));
        }
        let (authority, path, explicit_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..], true),
            None => (rest, "/", false),
        };
        if authority.contains('@') {
            return Err(err("the URL must not carry user credentials"));
        }
        let (host, port) = split_host_port(authority)?;
        Ok(ProxyPassUrl {
            scheme,
            host,
            port,
            path: path.to_string(),
            explicit_path,
        })
    }

    /// `http` or `https`.
    pub fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port to connect to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }
}

impl fmt::Display for ProxyPassUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme_name();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{scheme}://{host}:{p}{}", self.path),
            None => write!(f, "{scheme}://{host}{}", self.path),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), ConfigError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| err("unterminated [IPv6] host"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(err(format!("\"{v6}\" is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| err("junk after [IPv6] host"))?,
            ),
        };
        (v6.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(err("the URL has no host"));
    }
    if !host.contains(':') {
        validate_host_name(&host)?;
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u32 = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
                .ok_or_else(|| err(format!("invalid port \"{p}\"")))?;
            if n == 0 || n > 65535 {
                return Err(err(format!("invalid port \"{p}\"")));
            }
            Some(n as u16)
        }
    };
    Ok((host, port))
}

fn validate_host_name(host: &str) -> Result<(), ConfigError> {
    if host.len() > 253 {
        return Err(err("the host name is too long"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(err(format!("invalid host name \"{host}\"")));
        }
    }
    Ok(())
}

/// An S3 region: lowercase letters, digits and dashes (`us-east-1`, `eu-central-2`).
pub fn validate_s3_region(region: &str) -> Result<(), ConfigError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(err(
            "a region holds only lowercase letters, digits and dashes (e.g. \"us-east-1\")",
        ))
    }
}

/// An S3 credential (access key, secret key or session token): printable ASCII without spaces,
/// which SigV4 puts into headers and string-to-sign verbatim.
pub fn validate_s3_credential(value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(err("it must not be empty"));
    }
    if value.len() > 4096 {
        return Err(err("it is longer than 4096 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err("it must be printable ASCII without spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("30").unwrap(), 30);
        assert_eq!(parse_seconds("0").unwrap(), 0);
        assert_eq!(parse_seconds("5m").unwrap(), 300);
        assert_eq!(parse_seconds("2h").unwrap(), 7200);
        for bad in ["", "s", "-1", "1.5", "10x", "400d", "99999999999"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn switches() {
        assert_eq!(parse_switch("on"), Ok(true));
        assert_eq!(parse_switch("OFF"), Ok(false));
        assert!(parse_switch("yes").is_err());
        assert!(parse_switch("").is_err());
    }

    #[test]
    fn proxy_pass_urls() {
        let u = ProxyPassUrl::parse("http://other-server/").unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.host, "other-server");
        assert_eq!(u.port, None);
        assert_eq!(u.path, "/");
        assert_eq!(u.effective_port(), 80);
        let u = ProxyPassUrl::parse("https://media.example.com:8443/vod/prefix").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.path, "/vod/prefix");
        assert_eq!(u.to_string(), "https://media.example.com:8443/vod/prefix");
        let u = ProxyPassUrl::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(u.path, "/");
        assert_eq!(u.effective_port(), 9000);
        let u = ProxyPassUrl::parse("HTTP://[::1]:81/x").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "http://[::1]:81/x");
    }

    #[test]
    fn proxy_pass_rejects() {
        for bad in [
            "other-server/",
            "ftp://x/",
            "http://",
            "http:///path",
            "http://host:0/",
            "http://host:65536/",
            "http://host:/",
            "http://host:abc/",
            "http://user:pw@host/",
            "http://host/?a=1",
            "http://host/#frag",
            "http://ho st/",
            "http://-host/",
            "http://host..com/",
            "http://[::1/",
            "http://[zz]/",
            "http://[::1]x/",
        ] {
            assert!(ProxyPassUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for ok in ["us-east-1", "eu-central-2", "local"] {
            assert!(validate_s3_region(ok).is_ok(), "{ok}");
        }
        for bad in ["", "US-EAST-1", "us_east_1", "us east", "-us", "us-", "a/b"] {
            assert!(validate_s3_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials() {
        assert!(validate_s3_credential("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(validate_s3_credential("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").is_ok());
        assert!(validate_s3_credential("").is_err());
        assert!(validate_s3_credential("a b").is_err());
        assert!(validate_s3_credential("é").is_err());
    }
}

/// The smallest and largest `origin_cache_size`.
pub const CACHE_SIZE_RANGE: (usize, usize) = (1 << 20, 1 << 40);

/// A count in `min..=max` written as plain decimal digits (`worker_connections` style).
pub fn parse_count(value: &str, (min, max): (u64, u64)) -> Result<u64, ConfigError> {
    let n = (!value.is_empty() && value.len() <= 12 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| err("expected a number"))?;
    if n < min || n > max {
        return Err(ConfigError(format!("it must be {min} to {max}")));
    }
    Ok(n)
}

/// An nginx time in whole seconds (`30`, `30s`, `5m`, `1h`, `1d`), at most a year.
pub fn parse_seconds(value: &str) -> Result<u64, ConfigError> {
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err("expected seconds, or a number with s, m, h or d")),
    };
    if digits.is_empty() || digits.len() > 9 {
        return Err(err("expected seconds, or a number with s, m, h or d"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| err("expected seconds, or a number with s, m, h or d"))?;
    let secs = n * scale;
    if secs > 365 * 86_400 {
        return Err(err("at most a year"));
    }
    Ok(secs)
}

/// `origin_status_map <from> <to> [<token>…]`: answer `to` instead of the error status
/// `from`, for every error or only those with one of `tokens` (see `Error::token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMapping {
    pub from: u16,
    pub to: u16,
    pub tokens: Vec<String>,
}

impl StatusMapping {
    /// The directive's arguments (without its name).
    pub fn parse(args: &[&str]) -> Result<StatusMapping, ConfigError> {
        let [from, to, tokens @ ..] = args else {
            return Err(ConfigError(
                "expected a status, the status to answer instead, and optional error tokens".into(),
            ));
        };
        let status = |text: &str, allowed: &dyn Fn(u16) -> bool, what: &str| {
            let code = text
                .parse::<u16>()
                .ok()
                .filter(|s| text.len() == 3 && allowed(*s))
                .ok_or_else(|| ConfigError(format!("\"{text}\" is not {what}")))?;
            match never_received(code) {
                Some(why) => Err(ConfigError(format!(
                    "\"{text}\" is not a status a client receives: {why}"
                ))),
                None => Ok(code),
            }
        };
        let from = status(
            from,
            &|s| (400..=599).contains(&s),
            "an error status (400-599)",
        )?;
        let to = status(
            to,
            &|s| s == 204 || (400..=599).contains(&s),
            "204 or an error status (400-599)",
        )?;
        for t in tokens {
            if !crate::error::ERROR_TOKENS.contains(t) {
                return Err(ConfigError(format!(
                    "unknown error token \"{t}\" (known: {})",
                    crate::error::ERROR_TOKENS.join(", ")
                )));
            }
        }
        Ok(StatusMapping {
            from,
            to,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
        })
    }

    /// The status an error answers with under `maps` (the first that matches), or `status`.
    pub fn remap(maps: &[StatusMapping], status: u16, token: &str) -> u16 {
        maps.iter()
            .find(|m| {
                m.from == status && (m.tokens.is_empty() || m.tokens.iter().any(|t| t == token))
            })
            .map_or(status, |m| m.to)
    }
}

/// Why nginx never sends `status` to a client as it is, for the codes it gives a meaning of its
/// own: a handler returning one of them drops the connection, or nginx answers another status.
pub fn never_received(status: u16) -> Option<&'static str> {
    match status {
        408 => Some("nginx closes the connection without an answer"),
        444 => Some("nginx's code to close the connection without an answer"),
        494..=497 => Some("nginx's own code, answered as 400"),
        498 => Some("a code nginx reserves"),
        499 => Some("nginx's code for a client that closed the connection"),
        _ => None,
    }
}

#[cfg(test)]
mod status_map_tests {
    use super::*;

    #[test]
    fn mappings_parse_and_apply_to_their_tokens() {
        let live = StatusMapping::parse(&["412", "204", "FRAGMENT_NOT_AVAILABLE"]).unwrap();
        let all = StatusMapping::parse(&["404", "410"]).unwrap();
        let maps = [live, all];
        assert_eq!(
            StatusMapping::remap(&maps, 412, "FRAGMENT_NOT_AVAILABLE"),
            204
        );
        assert_eq!(StatusMapping::remap(&maps, 412, "FRAGMENT_MISSING"), 412);
        assert_eq!(StatusMapping::remap(&maps, 404, "NOT_FOUND"), 410);
        assert_eq!(StatusMapping::remap(&maps, 500, "INTERNAL"), 500);
        for bad in [
            &["412"][..],
            &["412", "200"],
            &["200", "204"],
            &["4120", "204"],
            &["+41", "204"],
            &["412", "204", "NO_SUCH_TOKEN"],
        ] {
            assert!(StatusMapping::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_statuses_a_client_receives_are_mapped() {
        // Codes nginx drops the connection for, or answers as 400 instead.
        for code in ["408", "444", "494", "495", "496", "497", "498", "499"] {
            let e = StatusMapping::parse(&["412", code]).unwrap_err().0;
            assert!(
                e.starts_with(&format!("\"{code}\" is not a status a client receives: ")),
                "{e}"
            );
            assert!(StatusMapping::parse(&[code, "404"]).is_err(), "{code}");
        }
        for code in [
            "400", "404", "410", "418", "429", "451", "500", "503", "599",
        ] {
            assert!(StatusMapping::parse(&["412", code]).is_ok(), "{code}");
        }
    }
}

/// An nginx size (`512k`, `64m`, `2g`, or bytes) within [`CACHE_SIZE_RANGE`].
pub fn parse_cache_size(value: &str) -> Result<usize, ConfigError> {
    let (min, max) = CACHE_SIZE_RANGE;
    parse_size(value, (min as u64, max as u64)).map(|s| s as usize)
}

/// The index store's size limit unless `max_size=` says otherwise.
pub const DEFAULT_INDEX_STORE_BYTES: u64 = 1 << 30;
/// What `max_size=` of `origin_index_store` may be.
pub const INDEX_STORE_SIZE_RANGE: (u64, u64) = (1 << 20, 1 << 40);

/// The options of `origin_index_store PATH [max_size=SIZE]` after the path: the size limit.
pub fn parse_index_store_options(options: &[&str]) -> Result<u64, ConfigError> {
    let mut max = None;
    for option in options {
        match option.split_once('=') {
            Some(("max_size", value)) if max.is_none() => {
                max = Some(parse_size(value, INDEX_STORE_SIZE_RANGE)?);
            }
            Some(("max_size", _)) => return Err(ConfigError("max_size given twice".into())),
            _ => {
                return Err(ConfigError(format!(
                    "unknown option \"{option}\" (expected max_size=SIZE)"
                )))
            }
        }
    }
    Ok(max.unwrap_or(DEFAULT_INDEX_STORE_BYTES))
}

/// An nginx size (`512k`, `64m`, `2g`, or bytes) within `min..=max` bytes.
pub fn parse_size(value: &str, (min, max): (u64, u64)) -> Result<u64, ConfigError> {
    let (digits, unit) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError(
            "expected a size such as 64m, 512k or 1g".into(),
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|s| (min..=max).contains(s))
        .ok_or_else(|| ConfigError(format!("the size must be between {min} and {max} bytes")))
}

#[cfg(test)]
mod cache_size_tests {
    use super::*;

    #[test]
    fn index_store_options_take_a_size_limit() {
        assert_eq!(
            parse_index_store_options(&[]),
            Ok(DEFAULT_INDEX_STORE_BYTES)
        );
        assert_eq!(parse_index_store_options(&["max_size=64m"]), Ok(64 << 20));
        assert!(parse_index_store_options(&["max_size=1k"]).is_err());
        assert!(parse_index_store_options(&["max_size=1g", "max_size=2g"]).is_err());
        assert!(parse_index_store_options(&["inactive=1d"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_cache_size("64m"), Ok(64 << 20));
        assert_eq!(parse_cache_size("2G"), Ok(2 << 30));
        assert_eq!(parse_cache_size("4096k"), Ok(4 << 20));
        assert_eq!(parse_cache_size("1048576"), Ok(1 << 20));
        for bad in [
            "",
            "m",
            "64mb",
            "-1m",
            "1.5g",
            "512k",
            "2000g",
            "99999999999999999999g",
        ] {
            assert!(parse_cache_size(bad).is_err(), "{bad}");
        }
    }
}
