//! The Live API: reports on a channel (`state`, `archive`, `statistics`), and publishing
//! points created, updated (PUT) and removed (DELETE), their files written on the thread pool.

use std::path::Path;

use origin_core::live::confined::OpenRules;

use crate::ffi::OriginError;

/// Answers `GET <ch>.isml/state | archive | statistics | time`.
pub fn report(
    r: &mut ngx::ffi::ngx_http_request_t,
    isml: &str,
    target: &origin_core::url::LiveTarget,
    rules: &OpenRules,
) -> Result<ngx::ffi::ngx_int_t, OriginError> {
    use origin_core::live::api;
    use origin_core::mime;
    use origin_core::url::LiveTarget;
    // The `.isml` and its archive as the location's file rules let them be reached (a FIFO,
    // a folder named like the `.isml`, a link disable_symlinks forbids: refused at once).
    let isml_path = Path::new(isml);
    rules.check_channel(
        isml_path,
        &origin_core::live::archive::archive_dir(isml_path),
    )?;
    if !Path::new(isml).exists()
        && !origin_core::live::archive::archive_dir(Path::new(isml)).exists()
    {
        return Err(OriginError::NotFound {
            path: isml.to_string(),
        });
    }
    let now = crate::ffi::time::now_ms();
    if *target == LiveTarget::Clock {
        let text = api::clock(now);
        return crate::respond::send::send_volatile_bytes(r, text.as_bytes(), mime::TEXT);
    }
    let channel = crate::settings::caches::channel(isml, now)?;
    origin_core::live::limits::check_archive_files(rules, &channel)?;
    let args = crate::ffi::strings::bytes(&r.args);
    let json = args
        .split(|&b| b == b'&')
        .any(|kv| kv.eq_ignore_ascii_case(b"format=json"));
    let (text, content_type) = match target {
        LiveTarget::State => (api::state(&channel), mime::SMIL),
        LiveTarget::Archive => (
            api::archive(&channel).map_err(|source| OriginError::Io {
                path: isml.to_string(),
                source,
            })?,
            mime::SMIL,
        ),
        LiveTarget::Statistics if json => (api::statistics(&channel, true), mime::JSON),
        LiveTarget::Statistics => (api::statistics(&channel, false), mime::SMIL),
        LiveTarget::Ingest { .. } => return Err(OriginError::MethodNotAllowed),
        LiveTarget::Clock => return Err(OriginError::Internal("the clock answered above")),
    };
    crate::respond::headers::add_header(r, "Cache-Control", "no-cache")?;
    let etag = origin_core::request::etag(&[text.as_bytes()]);
    crate::respond::send::send_bytes(
        r,
        text.as_bytes(),
        content_type,
        channel.updated_ms().div_euclid(1000),
        &etag,
    )
}

/// A change of a publishing point (PUT, DELETE) while its body is read and its files are
/// written on the thread pool.
struct Change {
    isml: String,
    /// The file rules the channel's files are reached under.
    rules: OpenRules,
    /// The status the change answers with, or why it failed.
    offload: crate::ffi::offload::Offload<Result<usize, OriginError>>,
}

fn set_change(
    r: &mut ngx::ffi::ngx_http_request_t,
    isml: &str,
    rules: OpenRules,
) -> Result<*mut Change, OriginError> {
    crate::ffi::ctx::own(
        r,
        Change {
            isml: isml.to_string(),
            rules,
            offload: crate::ffi::offload::Offload::default(),
        },
    )
}

fn change_of(r: &ngx::ffi::ngx_http_request_t) -> *mut Change {
    crate::ffi::ctx::get::<Change>(r).unwrap_or(std::ptr::null_mut())
}

/// `PUT <ch>.isml` (with `usp_handle_api`): creates or updates the publishing point from the
/// body, once nginx has read it.
pub fn put(
    r: &mut ngx::ffi::ngx_http_request_t,
    isml: &str,
    rules: OpenRules,
) -> Result<ngx::ffi::ngx_int_t, OriginError> {
    set_change(r, isml, rules)?;
    // SAFETY: r is the main request; nginx calls `put_body_read` once the body is read.
    let rc = unsafe { ngx::ffi::ngx_http_read_client_request_body(r, Some(put_body_read)) };
    if rc >= ngx::ffi::NGX_HTTP_SPECIAL_RESPONSE as ngx::ffi::ngx_int_t {
        return Ok(rc);
    }
    Ok(ngx::ffi::NGX_DONE as ngx::ffi::ngx_int_t)
}

unsafe extern "C" fn put_body_read(r: *mut ngx::ffi::ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls the post handler with its valid request.
        let r = unsafe { &mut *r };
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        crate::ffi::log::with_log(log, || {
            let posted = crate::ffi::body::whole_body(r, origin_core::live::admin::MAX_PUT_BYTES)
                .and_then(|body| {
                    let change = change_of(r);
                    if change.is_null() {
                        return Err(OriginError::Internal("a PUT without its state"));
                    }
                    // SAFETY: set by `put`, freed with the pool.
                    let change = unsafe { &mut *change };
                    let isml = change.isml.clone();
                    let rules = change.rules.clone();
                    change.offload.post(
                        r,
                        crate::settings::conf::thread_pool(r)?,
                        move || {
                            origin_core::live::admin::put_channel(Path::new(&isml), &body, &rules)
                                .map(|created| if created { 201 } else { 200 })
                        },
                        change_done,
                    )
                });
            if let Err(e) = posted {
                let rc = crate::respond::status::fail(r, &e);
                // SAFETY: releases the count ngx_http_read_client_request_body took.
                unsafe { ngx::ffi::ngx_http_finalize_request(r, rc) };
            }
        });
        ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t
    });
}

/// `DELETE <ch>.isml` (with `usp_handle_api`): removes the publishing point and its archive.
pub fn delete(
    r: &mut ngx::ffi::ngx_http_request_t,
    isml: &str,
    rules: OpenRules,
) -> Result<ngx::ffi::ngx_int_t, OriginError> {
    // SAFETY: r is the main request; a DELETE's body has no use.
    let rc = unsafe { ngx::ffi::ngx_http_discard_request_body(r) };
    if rc != ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t {
        return Ok(rc);
    }
    let change = set_change(r, isml, rules.clone())?;
    let isml = isml.to_string();
    // SAFETY: set above, freed with the pool.
    unsafe { &mut *change }.offload.post(
        r,
        crate::settings::conf::thread_pool(r)?,
        move || {
            origin_core::live::admin::delete_channel(Path::new(&isml), &rules)
                .map(|()| 204)
                .map_err(OriginError::from)
        },
        change_done,
    )?;
    // SAFETY: the main request; the count keeps it until `change_done` finalizes it.
    unsafe { (*r.main).set_count((*r.main).count() + 1) };
    Ok(ngx::ffi::NGX_DONE as ngx::ffi::ngx_int_t)
}

/// The request's write event handler while a change runs on the pool: once its files are
/// written (not on the connection's own write events meanwhile), the answer goes out.
unsafe extern "C" fn change_done(r: *mut ngx::ffi::ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls the write event handler with the valid request.
        let r = unsafe { &mut *r };
        let change = change_of(r);
        let outcome = if change.is_null() {
            Err(OriginError::Internal("a change without its state"))
        } else {
            // SAFETY: set by `set_change`, freed with the pool.
            match unsafe { &mut *change }.offload.take() {
                Some(outcome) => outcome.and_then(|r| r),
                // A write event of the connection: the change still runs.
                None => return ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t,
            }
        };
        r.write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        let rc = crate::ffi::log::with_log(log, || {
            match outcome.and_then(|status| crate::respond::send::send_empty(r, status)) {
                Ok(rc) => rc,
                Err(e) => crate::respond::status::fail(r, &e),
            }
        });
        // SAFETY: releases the count the request took for the change.
        unsafe { ngx::ffi::ngx_http_finalize_request(r, rc) };
        ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t
    });
}
