//! The request engine's answer, sent: the headers it decided (live expiry) and its body as
//! the kind of body it is.

use ngx::ffi::{ngx_http_request_t, ngx_int_t};
use origin_core::request::{Answer, Body, Expiry};

use super::send::{send_bytes, send_fragment, send_owned_bytes, Fragment};
use crate::ffi::OriginError;

/// Sends the engine's answer.
pub fn send(r: &mut ngx_http_request_t, answer: Answer) -> Result<ngx_int_t, OriginError> {
    let Answer {
        body,
        content_type,
        modified,
        etag,
        expiry,
        media: _,
    } = answer;
    expiry_headers(r, expiry)?;
    match body {
        Body::Text(generated) => {
            send_bytes(r, generated.text.as_bytes(), content_type, modified, &etag)
        }
        Body::Bytes(bytes) => send_owned_bytes(r, bytes, content_type, modified, &etag),
        Body::Fragment { plan, source, path } => send_fragment(
            r,
            Fragment {
                plan: &plan,
                source,
                path: &path,
                content_type,
                mtime: modified,
                tag: etag,
            },
        ),
        // A growing answer waits between its pieces: its driver sends it (`growing::send`).
        Body::Growing { .. } => Err(OriginError::Internal(
            "a growing answer where a request cannot wait",
        )),
        Body::Repackaged {
            tracks,
            sources,
            format,
            encryption,
        } => {
            let (body, total) =
                crate::respond::stream::TsBody::new(tracks, sources, format, encryption)?;
            crate::respond::stream::send(r, body, total, content_type, modified, &etag)
        }
    }
}

/// `Cache-Control` and `Sunset` of a live answer.
pub fn expiry_headers(
    r: &mut ngx_http_request_t,
    expiry: Option<Expiry>,
) -> Result<(), OriginError> {
    if let Some(expiry) = expiry {
        crate::respond::headers::add_header(
            r,
            "Cache-Control",
            &format!("max-age={}", expiry.max_age_secs),
        )?;
        if let Some(sunset) = expiry.sunset {
            crate::respond::headers::add_header(r, "Sunset", &crate::ffi::time::http_date(sunset))?;
        }
    }
    Ok(())
}
