//! The content handler installed by `usp_handle_ism` (and `usp_handle_f4f` / `usp_handle_api`).
//!
//! URL → route (core) → the core's plan for it (`origin_core::handling`: the same decision for
//! local, remote and S3 files) → the job that carries it out → response. Each step returns
//! `Result`; errors become a status and a log line in `status::fail`.

use ngx::ffi::{
    ngx_http_discard_request_body, ngx_http_request_t, ngx_int_t, NGX_HTTP_DELETE, NGX_HTTP_GET,
    NGX_HTTP_HEAD, NGX_HTTP_POST, NGX_HTTP_PUT, NGX_OK,
};
use origin_core::config::location::LocationSettings;
use origin_core::handling::{self, Action, Method};
use origin_core::metrics::Format;
use origin_core::url::{Route, RouteOptions};

use crate::ffi::OriginError;
use crate::respond::status::fail;
use crate::settings::conf;

/// Content handler: the `extern "C"` shim over [`handle`].
pub unsafe extern "C" fn content_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx hands the content handler a valid request it owns for this call.
        let r = unsafe { &mut *r };
        if crate::jobs::remote::is_fetch(r) {
            // One of our reads of a remote file: nginx's proxy module does it.
            return match conf::loc_conf(r).and_then(|c| c.proxy_handler) {
                Some(proxy) => {
                    // SAFETY: the proxy's content handler, on a request of its location.
                    let rc = unsafe { proxy(r) };
                    crate::jobs::remote::unbuffer_fetch(r);
                    rc
                }
                None => ngx::ffi::NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            };
        }
        // Counted as "other" until routed, so requests refused before that count too.
        crate::settings::metrics::track(r, Format::Other);
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        crate::ffi::log::with_log(log, || match handle(r, None) {
            Ok(rc) => rc,
            Err(e) => fail(r, &e),
        })
    })
}

/// A held low-latency request (see [`crate::ffi::watch`]) runs again: woken by a chunk of its
/// channel, or at its deadline, from a fresh read of the channel.
pub unsafe extern "C" fn resume_held(r: *mut ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: the watcher calls this with the request it held, alive and not terminated.
        let r = unsafe { &mut *r };
        let until = crate::ffi::watch::deadline(r);
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        let rc = crate::ffi::log::with_log(log, || match handle(r, until) {
            Ok(rc) => rc,
            Err(e) => fail(r, &e),
        });
        // SAFETY: releases the count the hold took (a new hold took its own).
        unsafe { ngx::ffi::ngx_http_finalize_request(r, rc) };
        ngx::ffi::NGX_OK as ngx_int_t
    });
}

/// Handles `r`; `wait_until` is the deadline of a held request that runs again.
fn handle(r: &mut ngx_http_request_t, wait_until: Option<i64>) -> Result<ngx_int_t, OriginError> {
    crate::settings::files::begin_request();
    #[cfg(feature = "test-hooks")]
    if crate::ffi::strings::bytes(&r.uri).ends_with(b"/__origin_test_panic") {
        panic!("forced panic for the crash-safety test");
    }

    let lcf = conf::loc_conf(r)
        .ok_or(OriginError::Internal("no location configuration"))?
        .clone();
    let method = r.method as u32;
    let reads = method & (NGX_HTTP_GET | NGX_HTTP_HEAD) != 0;
    if reads {
        // SAFETY: r is the main request being handled; discarding an unread body is what
        // every GET handler does so keepalive stays usable.
        let rc = unsafe { ngx_http_discard_request_body(r) };
        if rc != NGX_OK as ngx_int_t {
            return Ok(rc);
        }
    }

    let settings = &lcf.settings;
    let options = RouteOptions {
        legacy_forms: !LocationSettings::on(settings.skip_rewrite),
    };
    let route = Route::parse(
        crate::ffi::strings::bytes(&r.uri),
        crate::ffi::strings::bytes(&r.args),
        options,
    )?;
    crate::settings::metrics::track(r, Format::of(&route));
    tracing::debug!(manifest = %route.manifest_path, target = ?route.target, "routed");

    let plan = handling::plan(&route, method_of(method), settings)?;
    if plan.static_first {
        let static_root = settings.static_root.as_deref();
        if let Some(rc) = crate::jobs::files::serve_static_if_present(r, &route, static_root)? {
            return Ok(rc);
        }
    }
    let proxy = || {
        lcf.proxy_handler.ok_or(OriginError::Internal(
            "ism_proxy_pass without the proxy's handler",
        ))
    };
    match plan.action {
        Action::Ingest { stream } => {
            let isml = crate::settings::files::map_to_path(r, route.manifest_path.len())?;
            let rules = crate::settings::files::live_open_rules(r, &isml)?;
            let policy = settings.ingest_policy(rules);
            crate::jobs::ingest::serve(r, &isml, &stream, policy)
        }
        Action::PutChannel => {
            let isml = crate::settings::files::map_to_path(r, route.manifest_path.len())?;
            let rules = crate::settings::files::live_open_rules(r, &isml)?;
            crate::jobs::api::put(r, &isml, rules)
        }
        Action::DeleteChannel => {
            let isml = crate::settings::files::map_to_path(r, route.manifest_path.len())?;
            let rules = crate::settings::files::live_open_rules(r, &isml)?;
            crate::jobs::api::delete(r, &isml, rules)
        }
        Action::LiveReport(report) => {
            let isml = crate::settings::files::map_to_path(r, route.manifest_path.len())?;
            let rules = crate::settings::files::live_open_rules(r, &isml)?;
            crate::jobs::api::report(r, &isml, &report, &rules)
        }
        Action::SendFile => crate::jobs::files::progressive(r, &route),
        Action::ProxyFile { signed } => crate::jobs::remote::proxy_file(r, &lcf, proxy()?, signed),
        Action::PackageRemote => crate::jobs::remote::serve(r, route, &lcf),
        Action::PackageLocal => {
            let (manifest_file, root) =
                crate::settings::files::map_with_root(r, route.manifest_path.len())?;
            let disable_mmap = LocationSettings::on(settings.disable_mmap);
            crate::jobs::local::serve(
                r,
                route,
                manifest_file,
                root,
                disable_mmap,
                wait_until,
                resume_held,
            )
        }
    }
}

/// nginx's method bits as the decision names them.
fn method_of(method: u32) -> Method {
    match method {
        NGX_HTTP_GET => Method::Get,
        NGX_HTTP_HEAD => Method::Head,
        NGX_HTTP_POST => Method::Post,
        NGX_HTTP_PUT => Method::Put,
        NGX_HTTP_DELETE => Method::Delete,
        _ => Method::Other,
    }
}
