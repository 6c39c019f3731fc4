//! Query-string options (`?filter=…&max_bitrate=…&vbegin=…`).

use super::RouteError;

/// Most options a query may carry; more is refused rather than stored.
pub const MAX_QUERY_OPTIONS: usize = 64;

/// DASH `SegmentTemplate` addressing (`mpd_segment_template`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpdSegmentTemplate {
    /// `$Time$` with a SegmentTimeline (the default).
    Time,
    /// `$Number$` with a SegmentTimeline.
    NumberTimeline,
    /// `$Number$` with `@duration`, no timeline.
    Number,
}

/// What `mpd_segment_template` takes, for the error that refuses another value (in the query or
/// in a server manifest alike).
pub const MPD_SEGMENT_TEMPLATE_VALUES: &str = "expected time, number_timeline or number";

impl MpdSegmentTemplate {
    /// Parses the option's value as the server manifest and the query spell it.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "time" => Some(MpdSegmentTemplate::Time),
            "number_timeline" => Some(MpdSegmentTemplate::NumberTimeline),
            "number" => Some(MpdSegmentTemplate::Number),
            _ => None,
        }
    }
}

/// A point in a presentation for `vbegin` / `vend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePoint {
    /// Offset from the start of the presentation, in microseconds.
    Offset(u64),
    /// Wall-clock time (live), microseconds since the Unix epoch, UTC.
    Utc(i64),
}

/// The options a request's query string carries. The known ones override the server
/// manifest's metas of the same name (`request::Options::merge`); unknown names are kept in
/// `other`, in order, and change nothing (child URLs repeat the whole query).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOptions {
    /// `filter=`: a track-selection expression (parsed by the track selector).
    pub filter: Option<String>,
    /// `max_bitrate=`: drop tracks above this systemBitrate.
    pub max_bitrate: Option<u64>,
    /// `vbegin=`: subclip start.
    pub vbegin: Option<TimePoint>,
    /// `vend=`: subclip end.
    pub vend: Option<TimePoint>,
    /// `dvr_window_length=` (seconds; capped by the server's value).
    pub dvr_window_length: Option<u64>,
    /// `time_shift=` (seconds).
    pub time_shift: Option<u64>,
    /// `hls_fmp4` (present, or `=true`/`=1`): fMP4 instead of MPEG-TS segments.
    pub hls_fmp4: Option<bool>,
    /// `hls_client_manifest_version=`.
    pub hls_client_manifest_version: Option<u32>,
    /// `mpd_segment_template=`.
    pub mpd_segment_template: Option<MpdSegmentTemplate>,
    /// LL-HLS delivery directives (RFC 8216bis §6.2.5): `_HLS_msn=` and `_HLS_part=` ask for
    /// a playlist holding that segment (and part), `_HLS_skip=YES` for a delta update. They
    /// are the client's, never repeated on child URLs.
    pub hls_msn: Option<u64>,
    pub hls_part: Option<u64>,
    pub hls_skip: bool,
    /// Every other `name=value`, decoded.
    pub other: Vec<(String, String)>,
}

fn bad(name: &str, value: &str, reason: &'static str) -> RouteError {
    RouteError::BadQuery {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    }
}

impl QueryOptions {
    /// Parses a raw query string (without `?`). Each name and value is percent-decoded once;
    /// `+` stands for a space.
    pub fn parse(query: &[u8]) -> Result<QueryOptions, RouteError> {
        let mut opts = QueryOptions::default();
        // The subclip bounds as written, for an error that names both.
        let (mut vbegin, mut vend) = (String::new(), String::new());
        let mut count = 0;
        for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            count += 1;
            if count > MAX_QUERY_OPTIONS {
                return Err(bad("", "", "too many query options"));
            }
            let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], Some(&pair[i + 1..])),
                None => (pair, None),
            };
            let name = decode_component(raw_name)
                .ok_or_else(|| bad(&String::from_utf8_lossy(raw_name), "", "bad encoding"))?;
            let value = match raw_value {
                Some(v) => Some(
                    decode_component(v)
                        .ok_or_else(|| bad(&name, &String::from_utf8_lossy(v), "bad encoding"))?,
                ),
                None => None,
            };
            match name.as_str() {
                "vbegin" => vbegin = value.clone().unwrap_or_default(),
                "vend" => vend = value.clone().unwrap_or_default(),
                _ => {}
            }
            opts.set(name, value)?;
        }
        if opts.hls_part.is_some() && opts.hls_msn.is_none() {
            return Err(bad("_HLS_part", "", "_HLS_part needs _HLS_msn"));
        }
        if let (Some(b), Some(e)) = (opts.vbegin, opts.vend) {
            let order = match (b, e) {
                (TimePoint::Offset(b), TimePoint::Offset(e)) => Some(b.cmp(&e)),
                (TimePoint::Utc(b), TimePoint::Utc(e)) => Some(b.cmp(&e)),
                _ => None,
            };
            if order != Some(std::cmp::Ordering::Less) {
                return Err(RouteError::BadSubclip {
                    vbegin,
                    vend,
                    order,
                });
            }
        }
        Ok(opts)
    }

    fn set(&mut self, name: String, value: Option<String>) -> Result<(), RouteError> {
        let v = value.as_deref().unwrap_or("");
        let number = || -> Result<u64, RouteError> {
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&name, v, "expected a non-negative integer"));
            }
            v.parse().map_err(|_| bad(&name, v, "number out of range"))
        };
        match name.as_str() {
            "filter" => {
                if v.is_empty() {
                    return Err(bad(&name, v, "empty filter expression"));
                }
                crate::filter::Filter::parse(v).map_err(|e| bad(&name, v, e.what))?;
                self.filter = Some(v.to_string());
            }
            "max_bitrate" => self.max_bitrate = Some(number()?),
            "vbegin" => {
                self.vbegin = Some(parse_time_point(v).ok_or_else(|| {
                    bad(
                        &name,
                        v,
                        "expected seconds, hh:mm:ss[.fff] or an ISO-8601 UTC time",
                    )
                })?)
            }
            "vend" => {
                self.vend = Some(parse_time_point(v).ok_or_else(|| {
                    bad(
                        &name,
                        v,
                        "expected seconds, hh:mm:ss[.fff] or an ISO-8601 UTC time",
                    )
                })?)
            }
            "dvr_window_length" => self.dvr_window_length = Some(number()?),
            "time_shift" => self.time_shift = Some(number()?),
            "hls_fmp4" => {
                self.hls_fmp4 = Some(match value.as_deref() {
                    None | Some("") | Some("1") | Some("true") => true,
                    Some("0") | Some("false") => false,
                    Some(other) => return Err(bad(&name, other, "expected true or false")),
                })
            }
            "hls_client_manifest_version" => {
                let n = number()?;
                self.hls_client_manifest_version =
                    Some(u32::try_from(n).map_err(|_| bad(&name, v, "number out of range"))?);
            }
            "mpd_segment_template" => {
                self.mpd_segment_template = Some(
                    MpdSegmentTemplate::parse(v)
                        .ok_or_else(|| bad(&name, v, MPD_SEGMENT_TEMPLATE_VALUES))?,
                )
            }
            "_HLS_msn" => self.hls_msn = Some(number()?),
            "_HLS_part" => self.hls_part = Some(number()?),
            "_HLS_skip" => {
                self.hls_skip = match v {
                    "YES" | "v2" => true,
                    "NO" => false,
                    _ => return Err(bad(&name, v, "expected YES or v2")),
                }
            }
            _ => self.other.push((name, value.unwrap_or_default())),
        }
        Ok(())
    }
}

/// `query` (raw, with or without its `?`) without LL-HLS delivery directives (`_HLS_*`): what
/// child URLs repeat.
pub fn without_delivery_directives(query: &str) -> String {
    let (mark, raw) = match query.strip_prefix('?') {
        Some(rest) => ("?", rest),
        None => ("", query),
    };
    if !raw.contains("_HLS_") {
        return query.to_string();
    }
    let kept: Vec<&str> = raw
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("_HLS_"))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("{mark}{}", kept.join("&"))
    }
}

/// Percent-decodes one query component (`+` is a space). `None` on a bad escape or a result that
/// is not UTF-8 or holds a control character.
pub(crate) fn decode_component(raw: &[u8]) -> Option<String> {
    let s = String::from_utf8(percent_decode(raw, true)?).ok()?;
    if s.chars().any(char::is_control) {
        return None;
    }
    Some(s)
}

/// Percent-decodes `raw` once (`+` becomes a space when `plus_is_space`, as in query strings);
/// `None` on a `%` not followed by two hex digits. The one decoder of the router: query values
/// and track names.
pub(crate) fn percent_decode(raw: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hi = hex_value(*raw.get(i + 1)?)?;
                let lo = hex_value(*raw.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Seconds (`12`, `12.5`), clock time (`00:01:02.5`) or ISO-8601 UTC (`2024-01-02T03:04:05Z`,
/// with optional fraction).
pub(crate) fn parse_time_point(v: &str) -> Option<TimePoint> {
    if v.contains('T') {
        return parse_iso8601_utc(v).map(TimePoint::Utc);
    }
    if v.contains(':') {
        let parts: Vec<&str> = v.split(':').collect();
        if parts.len() != 3 {
            return None;
        }
        let h = parse_digits(parts[0], 1, 6)?;
        let m = parse_digits(parts[1], 2, 2)?;
        if m >= 60 {
            return None;
        }
        let s = parse_seconds(parts[2])?;
        if s >= 60_000_000 || parts[2].split('.').next()?.len() != 2 {
            return None;
        }
        return Some(TimePoint::Offset((h * 3600 + m * 60) * 1_000_000 + s));
    }
    parse_seconds(v).map(TimePoint::Offset)
}

/// `n` or `n.fff` seconds (at most 6 fraction digits) as microseconds.
fn parse_seconds(v: &str) -> Option<u64> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    let int = parse_digits(int, 1, 12)?;
    let mut micros = 0u64;
    if !frac.is_empty() || v.ends_with('.') {
        if frac.is_empty() || frac.len() > 6 {
            return None;
        }
        micros = parse_digits(frac, 1, 6)? * 10u64.pow(6 - frac.len() as u32);
    }
    int.checked_mul(1_000_000)?.checked_add(micros)
}

fn parse_digits(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` → microseconds since the Unix epoch.
pub(crate) fn parse_iso8601_utc(v: &str) -> Option<i64> {
    let v = v.strip_suffix('Z')?;
    let (date, time) = v.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let year = parse_digits(d[0], 4, 4)? as i64;
    let month = parse_digits(d[1], 2, 2)? as u32;
    let day = parse_digits(d[2], 2, 2)? as u32;
    let hour = parse_digits(t[0], 2, 2)?;
    let minute = parse_digits(t[1], 2, 2)?;
    if t[2].split('.').next()?.len() != 2 {
        return None;
    }
    let second_micros = parse_seconds(t[2])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second_micros >= 60_000_000
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (hour * 3600 + minute * 60) as i64;
    Some(secs * 1_000_000 + second_micros as i64)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<QueryOptions, RouteError> {
        QueryOptions::parse(s.as_bytes())
    }

    #[test]
    fn delivery_directives_are_parsed_and_not_repeated() {
        let o = q("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES&max_bitrate=5").unwrap();
        assert_eq!(
            (o.hls_msn, o.hls_part, o.hls_skip),
            (Some(12), Some(3), true)
        );
        assert!(q("_HLS_part=1").is_err());
        assert!(q("_HLS_skip=maybe").is_err());
        assert!(q("_HLS_msn=-1").is_err());
        assert_eq!(
            without_delivery_directives("?_HLS_msn=12&a=b&_HLS_part=3"),
            "?a=b"
        );
        assert_eq!(without_delivery_directives("?_HLS_msn=1"), "");
        assert_eq!(without_delivery_directives("?x=1"), "?x=1");
    }

    #[test]
    fn known_options() {
        let o = q("filter=type%3D%3D%22video%22&max_bitrate=800000&hls_fmp4&hls_client_manifest_version=4&mpd_segment_template=number").unwrap();
        assert_eq!(o.filter.as_deref(), Some("type==\"video\""));
        assert_eq!(o.max_bitrate, Some(800000));
        assert_eq!(o.hls_fmp4, Some(true));
        assert_eq!(o.hls_client_manifest_version, Some(4));
        assert_eq!(o.mpd_segment_template, Some(MpdSegmentTemplate::Number));
        assert!(o.other.is_empty());
        let o = q("hls_fmp4=false&dvr_window_length=30&time_shift=60").unwrap();
        assert_eq!(o.hls_fmp4, Some(false));
        assert_eq!(o.dvr_window_length, Some(30));
        assert_eq!(o.time_shift, Some(60));
    }

    #[test]
    fn filter_with_plus_and_parentheses() {
        let raw = "filter=(type==%22video%22%26%26systemBitrate<800000)||type!=%22video%22";
        let o = q(raw).unwrap();
        assert_eq!(
            o.filter.as_deref(),
            Some("(type==\"video\"&&systemBitrate<800000)||type!=\"video\"")
        );
        assert_eq!(
            q("filter=type+%3D%3D+%22video%22")
                .unwrap()
                .filter
                .as_deref(),
            Some("type == \"video\"")
        );
    }

    #[test]
    fn unknown_options_are_kept_in_order() {
        let o = q("b=2&a=1&flag").unwrap();
        assert_eq!(
            o.other,
            vec![
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
                ("flag".to_string(), String::new())
            ]
        );
        assert_eq!(q("").unwrap(), QueryOptions::default());
        assert_eq!(q("&&&").unwrap(), QueryOptions::default());
    }

    #[test]
    fn bad_values() {
        for bad in [
            "max_bitrate=",
            "max_bitrate=-1",
            "max_bitrate=1e6",
            "max_bitrate=99999999999999999999999",
            "hls_fmp4=maybe",
            "hls_client_manifest_version=99999999999",
            "mpd_segment_template=foo",
            "filter=",
            "filter=type%3D%3Dvideo",
            "filter=(type%3D%3D%22video%22",
            "vbegin=abc",
            "vbegin=10&vend=5",
            "vbegin=10&vend=2024-01-01T00:00:00Z",
            "a=%zz",
            "a=%4",
            "%ff=1",
            "a=%00",
            "a=%0a",
        ] {
            let err = q(bad).unwrap_err();
            assert_eq!(crate::Error::from(err).status(), 400, "{bad}");
        }
        let many = vec!["a=1"; MAX_QUERY_OPTIONS + 1].join("&");
        assert!(q(&many).is_err());
    }

    #[test]
    fn time_points() {
        assert_eq!(parse_time_point("10"), Some(TimePoint::Offset(10_000_000)));
        assert_eq!(parse_time_point("1.5"), Some(TimePoint::Offset(1_500_000)));
        assert_eq!(parse_time_point("0.000001"), Some(TimePoint::Offset(1)));
        assert_eq!(
            parse_time_point("01:02:03.25"),
            Some(TimePoint::Offset(3_723_250_000))
        );
        assert_eq!(
            parse_time_point("1970-01-01T00:00:01Z"),
            Some(TimePoint::Utc(1_000_000))
        );
        assert_eq!(
            parse_time_point("2024-02-29T12:00:00.5Z"),
            Some(TimePoint::Utc(1_709_208_000_500_000))
        );
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "1.1234567",
            "-1",
            "1:2",
            "00:60:00",
            "00:00:60",
            "00:00:1",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00Z",
            "9999999999999999",
        ] {
            assert_eq!(parse_time_point(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
