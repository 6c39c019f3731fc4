//! Remote reads (`ism_proxy_pass`, S3): whether what a ranged read brought is exactly the bytes
//! asked for, of an object whose size and version it states, and whether a failed read is
//! tried again. The glue only copies the fields out of nginx's subrequest ([`Response`]).

use crate::request::parse_content_range;
use crate::Error;

/// Tries a read gets in all: the first, and one retry of a failure that another try may not
/// meet (no answer, a reset, a 5xx).
pub const MAX_ATTEMPTS: u8 = 2;

/// The bytes a read asked for: `len` bytes from `offset` (a `Range: bytes=offset-(offset+len-1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub offset: u64,
    pub len: u64,
}

/// How the proxy ended the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The whole response arrived (nginx's `NGX_OK`), whatever its status.
    Complete,
    /// The backend did not answer in time (`NGX_HTTP_GATEWAY_TIME_OUT`).
    TimedOut,
    /// None or only part of it arrived: refused, reset, cut short.
    Incomplete,
}

/// What a read's response was, as nginx's subrequest holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub completion: Completion,
    /// The status line's code; 0 when no response header arrived.
    pub status: u16,
    pub content_range: Option<String>,
    /// `Content-Length`, when the backend stated one.
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    /// `Last-Modified` in seconds since the epoch, when stated.
    pub last_modified: Option<i64>,
    /// The body as collected; `None` when it was not collected where the read put its buffer.
    pub body: Option<Vec<u8>>,
    /// The body did not fit in the read's buffer of this many bytes: the backend sent more
    /// than any answer to the range may hold (a huge or endless body), and the read was cut.
    pub over_limit: Option<u64>,
}

/// What a good read brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes from the asked offset (fewer than asked at the end of the object).
    pub bytes: Vec<u8>,
    /// The object's size.
    pub total: u64,
    /// The object's version: its ETag, else its Last-Modified, else empty.
    pub version: String,
    /// Last-Modified in seconds since the epoch, 0 when not stated.
    pub modified: i64,
}

/// A backend that gave a wrong answer: another try would get the same, so it is not retried.
fn wrong(url: &str, what: String) -> Error {
    Error::Backend {
        url: url.to_string(),
        what,
        timeout: false,
        retry: false,
    }
}

/// Checks what a read of `asked` at `url` (the URL the proxy requested, for messages) brought:
/// the exact range asked for, of an object whose size and version it states, or the error it
/// is. Media is never taken from a wrong answer.
pub fn check(url: &str, asked: Asked, response: Response) -> Result<Fetched, Error> {
    if let Some(limit) = response.over_limit {
        return Err(wrong(
            url,
            format!(
                "a body over the {limit} bytes a read of {} bytes may bring (a huge or endless \
                 body, or a server that ignores Range on a large object); the read was cut",
                asked.len
            ),
        ));
    }
    let status = response.status;
    if response.completion != Completion::Complete || status == 0 {
        let timeout = response.completion == Completion::TimedOut;
        let what = match (timeout, status) {
            (true, _) => "timed out".to_string(),
            (false, 0) => "no response".to_string(),
            (false, s) => format!("the status {s} response was cut short"),
        };
        return Err(Error::Backend {
            url: url.to_string(),
            what,
            timeout,
            retry: true,
        });
    }
    let version = response
        .etag
        .clone()
        .or_else(|| {
            response
                .last_modified
                .filter(|&t| t > 0)
                .map(|t| format!("modified {t}"))
        })
        .unwrap_or_default();
    let modified = response.last_modified.filter(|&t| t > 0).unwrap_or(0);
    let asked_end = asked.offset + asked.len;
    match status {
        200 | 206 | 416 => {}
        404 | 410 => {
            return Err(Error::NotFound {
                path: url.to_string(),
            })
        }
        401 | 403 => {
            return Err(Error::BackendDenied {
                url: url.to_string(),
                status,
            })
        }
        300..=399 => {
            return Err(wrong(
                url,
                format!("status {status}: redirects are not followed"),
            ))
        }
        500..=599 => {
            return Err(Error::Backend {
                url: url.to_string(),
                what: format!("status {status}"),
                timeout: status == 504,
                retry: true,
            })
        }
        _ => return Err(wrong(url, format!("status {status}"))),
    }
    let Some(mut body) = response.body else {
        return Err(wrong(url, "the response was not collected".into()));
    };
    match status {
        206 => {
            let cr = response
                .content_range
                .ok_or_else(|| wrong(url, "a 206 without Content-Range".into()))?;
            let (first, last, total) = parse_content_range(&cr)
                .ok_or_else(|| wrong(url, format!("unreadable Content-Range \"{cr}\"")))?;
            let expected_last = asked_end.min(total).saturating_sub(1);
            if first != asked.offset || last != expected_last {
                return Err(wrong(
                    url,
                    format!(
                        "Content-Range \"{cr}\" for bytes {}-{}",
                        asked.offset,
                        asked_end.saturating_sub(1)
                    ),
                ));
            }
            let stated = last - first + 1;
            if body.len() as u64 != stated {
                // Fewer bytes than stated: the connection ended early (a reset), which another
                // try may not meet. More is a wrong answer.
                return Err(Error::Backend {
                    url: url.to_string(),
                    what: format!("{} bytes for Content-Range \"{cr}\"", body.len()),
                    timeout: false,
                    retry: (body.len() as u64) < stated,
                });
            }
            Ok(Fetched {
                bytes: body,
                total,
                version,
                modified,
            })
        }
        200 => {
            // The whole object (a server that ignores Range): take the part asked for.
            let total = body.len() as u64;
            if let Some(length) = response.content_length.filter(|&n| n != total) {
                return Err(wrong(
                    url,
                    format!("{total} bytes for Content-Length {length}"),
                ));
            }
            let start = asked.offset.min(total) as usize;
            let end = asked_end.min(total) as usize;
            body.truncate(end);
            body.drain(..start);
            Ok(Fetched {
                bytes: body,
                total,
                version,
                modified,
            })
        }
        // 416: only an empty object answers the first bytes so (`Content-Range: bytes */0`).
        _ => match response
            .content_range
            .as_deref()
            .and_then(|cr| cr.strip_prefix("bytes */"))
        {
            Some("0") if asked.offset == 0 => Ok(Fetched {
                bytes: Vec::new(),
                total: 0,
                version,
                modified,
            }),
            _ => Err(wrong(url, format!("416 for bytes {}-", asked.offset))),
        },
    }
}

/// Whether a read that failed with `err` on try number `attempt` (0 for the first) is tried
/// again: failures to get an answer are, once; wrong answers never are.
pub fn retry(err: &Error, attempt: u8) -> bool {
    matches!(err, Error::Backend { retry: true, .. }) && attempt + 1 < MAX_ATTEMPTS
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://storage/v/a.mp4";
    const ASKED: Asked = Asked { offset: 10, len: 5 };

    fn ok(status: u16) -> Response {
        Response {
            completion: Completion::Complete,
            status,
            content_range: None,
            content_length: None,
            etag: Some("\"e1\"".into()),
            last_modified: Some(1_700_000_000),
            body: Some(Vec::new()),
            over_limit: None,
        }
    }

    fn partial(cr: &str, body: &[u8]) -> Response {
        Response {
            content_range: Some(cr.into()),
            content_length: Some(body.len() as u64),
            body: Some(body.to_vec()),
            ..ok(206)
        }
    }

    fn err(r: Response) -> Error {
        check(URL, ASKED, r).unwrap_err()
    }

    /// (token, status, retried, message part) of a failed check.
    fn failure(r: Response) -> (&'static str, u16, bool, String) {
        let e = err(r);
        (e.token(), e.status(), retry(&e, 0), e.to_string())
    }

    #[test]
    fn the_exact_range_is_taken_with_its_version() {
        let got = check(URL, ASKED, partial("bytes 10-14/100", b"abcde")).unwrap();
        assert_eq!(got.bytes, b"abcde");
        assert_eq!(got.total, 100);
        assert_eq!(got.version, "\"e1\"");
        assert_eq!(got.modified, 1_700_000_000);
        // The end of the object: fewer bytes than asked.
        let got = check(URL, ASKED, partial("bytes 10-11/12", b"ab")).unwrap();
        assert_eq!((got.bytes.as_slice(), got.total), (&b"ab"[..], 12));
        // Without an ETag the Last-Modified is the version; without either, none.
        let r = Response {
            etag: None,
            ..partial("bytes 10-14/100", b"abcde")
        };
        assert_eq!(check(URL, ASKED, r).unwrap().version, "modified 1700000000");
        let r = Response {
            etag: None,
            last_modified: None,
            ..partial("bytes 10-14/100", b"abcde")
        };
        let got = check(URL, ASKED, r).unwrap();
        assert_eq!((got.version.as_str(), got.modified), ("", 0));
    }

    #[test]
    fn a_whole_object_gives_the_part_asked_for() {
        let body: Vec<u8> = (0..20).collect();
        let r = Response {
            body: Some(body.clone()),
            content_length: Some(20),
            ..ok(200)
        };
        let got = check(URL, ASKED, r).unwrap();
        assert_eq!((got.bytes, got.total), (body[10..15].to_vec(), 20));
        // Asked past its end: nothing, and its size.
        let r = Response {
            body: Some(vec![1, 2, 3]),
            ..ok(200)
        };
        let got = check(URL, ASKED, r).unwrap();
        assert_eq!((got.bytes.len(), got.total), (0, 3));
        // A body that is not what Content-Length said.
        let r = Response {
            body: Some(body),
            content_length: Some(21),
            ..ok(200)
        };
        let (token, status, retried, what) = failure(r);
        assert_eq!((token, status, retried), ("BACKEND_ERROR", 502, false));
        assert!(what.contains("20 bytes for Content-Length 21"), "{what}");
    }

    #[test]
    fn an_empty_object_is_a_416_for_the_first_bytes() {
        let asked = Asked { offset: 0, len: 5 };
        let r = Response {
            content_range: Some("bytes */0".into()),
            ..ok(416)
        };
        let got = check(URL, asked, r.clone()).unwrap();
        assert_eq!((got.bytes.len(), got.total), (0, 0));
        // Any other 416 is a wrong answer.
        assert_eq!(failure(r).0, "BACKEND_ERROR");
        let r = Response {
            content_range: Some("bytes */7".into()),
            ..ok(416)
        };
        assert!(check(URL, asked, r).is_err());
    }

    #[test]
    fn wrong_ranges_are_refused_and_not_retried() {
        for (r, part) in [
            (ok(206), "a 206 without Content-Range"),
            (partial("bytes ten", b"abcde"), "unreadable Content-Range"),
            (partial("bytes 11-15/100", b"abcde"), "for bytes 10-14"),
            (partial("bytes 10-13/100", b"abcd"), "for bytes 10-14"),
            (partial("bytes 10-14/100", b"abcdef"), "6 bytes for"),
        ] {
            let (token, status, retried, what) = failure(r);
            assert_eq!(
                (token, status, retried),
                ("BACKEND_ERROR", 502, false),
                "{what}"
            );
            assert!(what.contains(part), "{what}");
            assert!(what.starts_with(URL), "{what}");
        }
        // Fewer bytes than the range states: the connection broke, another try may do.
        let (token, _, retried, _) = failure(partial("bytes 10-14/100", b"abc"));
        assert_eq!((token, retried), ("BACKEND_ERROR", true));
    }

    #[test]
    fn statuses_keep_their_meaning() {
        let (token, status, retried, what) = failure(ok(404));
        assert_eq!((token, status, retried), ("NOT_FOUND", 404, false));
        assert!(what.contains(URL));
        assert_eq!(failure(ok(410)).1, 404);
        for denied in [401, 403] {
            let e = err(ok(denied));
            assert!(matches!(e, Error::BackendDenied { status, .. } if status == denied));
            assert_eq!((e.status(), e.token()), (403, "FORBIDDEN"));
            assert_eq!(e.severity(), crate::error::Severity::Error);
        }
        let (token, status, retried, what) = failure(ok(302));
        assert_eq!((token, status, retried), ("BACKEND_ERROR", 502, false));
        assert!(what.contains("redirects are not followed"), "{what}");
        for server in [500, 503] {
            let (token, status, retried, _) = failure(ok(server));
            assert_eq!((token, status, retried), ("BACKEND_ERROR", 502, true));
        }
        assert_eq!(failure(ok(504)).0, "BACKEND_TIMEOUT");
        let (token, status, retried, _) = failure(ok(204));
        assert_eq!((token, status, retried), ("BACKEND_ERROR", 502, false));
    }

    #[test]
    fn no_answer_is_retried() {
        let timed_out = Response {
            completion: Completion::TimedOut,
            status: 0,
            ..ok(0)
        };
        let (token, status, retried, what) = failure(timed_out);
        assert_eq!((token, status, retried), ("BACKEND_TIMEOUT", 504, true));
        assert!(what.ends_with("timed out"));
        let refused = Response {
            completion: Completion::Incomplete,
            ..ok(0)
        };
        let (token, _, retried, what) = failure(refused);
        assert_eq!((token, retried), ("BACKEND_ERROR", true));
        assert!(what.ends_with("no response"));
        let cut = Response {
            completion: Completion::Incomplete,
            ..ok(206)
        };
        assert!(failure(cut).3.contains("status 206 response was cut short"));
        // A complete response without a status line is none.
        assert!(failure(ok(0)).2);
    }

    #[test]
    fn a_body_over_the_limit_is_a_502_not_retried() {
        let huge = Response {
            completion: Completion::Incomplete,
            over_limit: Some(70_000),
            ..ok(200)
        };
        let (token, status, retried, what) = failure(huge);
        assert_eq!((token, status, retried), ("BACKEND_ERROR", 502, false));
        assert!(what.contains("over the 70000 bytes"), "{what}");
    }

    #[test]
    fn an_uncollected_body_is_an_error() {
        let r = Response {
            body: None,
            ..partial("bytes 10-14/100", b"abcde")
        };
        assert!(failure(r).3.contains("not collected"));
    }

    #[test]
    fn a_failure_is_retried_once() {
        let e = err(ok(503));
        assert!(retry(&e, 0));
        assert!(!retry(&e, 1));
        assert!(!retry(&Error::NotFound { path: URL.into() }, 0));
    }
}
