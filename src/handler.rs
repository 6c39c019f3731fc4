//! The content handler installed by `usp_handle_ism` (and `usp_handle_f4f` / `usp_handle_api`).
//!
//! URL → route (core) → server manifest on disk → the target's producer → response. Each step
//! returns `Result`; errors become a status and a log line in `status::fail`.

use std::path::Path;

use ngx::ffi::{
    ngx_http_discard_request_body, ngx_http_map_uri_to_path, ngx_http_request_t, ngx_int_t,
    ngx_str_t, NGX_HTTP_DELETE, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_POST, NGX_HTTP_PUT, NGX_OK,
};
use origin_core::metrics::Format;
use origin_core::url::{LiveTarget, ManifestKind, Route, RouteOptions, Target};

use crate::conf::{self, LocConf};
use crate::files::Files;
use crate::response;
use crate::status::{fail, OriginError};

/// Content handler: the `extern "C"` shim over [`handle`].
pub unsafe extern "C" fn content_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::entry::guard_request(r, || {
        // SAFETY: nginx hands the content handler a valid request it owns for this call.
        let r = unsafe { &mut *r };
        if crate::remote::is_fetch(r) {
            // One of our reads of a remote file: nginx's proxy module does it.
            return match conf::loc_conf(r).and_then(|c| c.proxy_handler) {
                Some(proxy) => {
                    // SAFETY: the proxy's content handler, on a request of its location.
                    let rc = unsafe { proxy(r) };
                    crate::remote::unbuffer_fetch(r);
                    rc
                }
                None => ngx::ffi::NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            };
        }
        // Counted as "other" until routed, so requests refused before that count too.
        crate::metrics::track(r, Format::Other);
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        crate::log::with_log(log, || match handle(r) {
            Ok(rc) => rc,
            Err(e) => fail(r, &e),
        })
    })
}

fn ngx_bytes(s: &ngx_str_t) -> &[u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: nginx strings point at `len` valid bytes for the request's lifetime.
    unsafe { std::slice::from_raw_parts(s.data, s.len) }
}

fn handle(r: &mut ngx_http_request_t) -> Result<ngx_int_t, OriginError> {
    crate::driver::begin_request();
    #[cfg(feature = "test-hooks")]
    if ngx_bytes(&r.uri).ends_with(b"/__origin_test_panic") {
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

    let options = RouteOptions {
        legacy_forms: !LocConf::on(lcf.skip_rewrite),
    };
    let route = Route::parse(ngx_bytes(&r.uri), ngx_bytes(&r.args), options)?;
    crate::metrics::track(r, Format::of(&route));
    tracing::debug!(manifest = %route.manifest_path, target = ?route.target, "routed");

    // HDS files are HDS too: with `usp_handle_f4f` off they are not served.
    let hds_off = matches!(route.target, Target::Hds(_)) && !LocConf::on(lcf.handle_f4f);
    if LocConf::on(lcf.prefer_static)
        && reads
        && !hds_off
        && origin_core::stored::may_be_stored(&route)
    {
        if let Some(rc) = serve_static_if_present(r, &route, lcf.static_root.as_deref())? {
            return Ok(rc);
        }
    }

    if let Target::Live(LiveTarget::Ingest { stream }) = &route.target {
        if method & (NGX_HTTP_POST | NGX_HTTP_PUT) == 0 {
            return Err(OriginError::MethodNotAllowed);
        }
        if lcf.proxy_handler.is_some() {
            return Err(OriginError::Unsupported(
                "live ingest into a location that reads from a remote server".into(),
            ));
        }
        let isml = map_to_path(r, route.manifest_path.len())?;
        return crate::ingest::serve(r, &isml, stream, lcf.live_auto_create.unwrap_or(true));
    }
    if route.kind == ManifestKind::Live
        && route.target == Target::Presentation
        && method & (NGX_HTTP_PUT | NGX_HTTP_DELETE) != 0
    {
        if !LocConf::on(lcf.handle_api) {
            return Err(OriginError::MethodNotAllowed);
        }
        let isml = map_to_path(r, route.manifest_path.len())?;
        return if method & NGX_HTTP_PUT != 0 {
            crate::live::put(r, &isml)
        } else {
            crate::live::delete(r, &isml)
        };
    }
    if let Target::Live(report) = &route.target {
        if !reads {
            return Err(OriginError::MethodNotAllowed);
        }
        let isml = map_to_path(r, route.manifest_path.len())?;
        return crate::live::report(r, &isml, report);
    }
    if method & (NGX_HTTP_POST | NGX_HTTP_PUT | NGX_HTTP_DELETE) != 0 || !reads {
        return Err(OriginError::MethodNotAllowed);
    }
    if let Some(proxy) = lcf.proxy_handler {
        return crate::remote::serve(r, route, &lcf, proxy);
    }

    let (manifest_file, root) = map_with_root(r, route.manifest_path.len())?;

    match (&route.target, route.kind) {
        (Target::Presentation, ManifestKind::Mp4) => {
            let mut files = Files::of(r, true);
            let (fd, opened) = files.open_for_request(Path::new(&manifest_file))?;
            response::send_file(r, fd, &opened, &manifest_file, origin_core::mime::VIDEO_MP4)
        }
        (Target::Presentation, _) => Err(OriginError::Route(
            origin_core::url::RouteError::UnknownVirtualPath(String::new()),
        )),
        (Target::Hds(_), _) if !LocConf::on(lcf.handle_f4f) => Err(OriginError::Route(
            origin_core::url::RouteError::UnknownVirtualPath("HDS (usp_handle_f4f is off)".into()),
        )),
        (Target::Live(_), _) => Err(OriginError::NotImplemented("live")),
        _ => crate::driver::serve(r, route, manifest_file, root, LocConf::on(lcf.disable_mmap)),
    }
}

/// Maps the first `prefix_len` bytes of the request path (the server manifest) to a file name
/// under the location's `root` or `alias`, as nginx's static module would map that path.
fn map_to_path(r: &mut ngx_http_request_t, prefix_len: usize) -> Result<String, OriginError> {
    map_with_root(r, prefix_len).map(|(path, _)| path)
}

/// [`map_to_path`], and the document root (`root` or `alias`) the name starts with.
fn map_with_root(
    r: &mut ngx_http_request_t,
    prefix_len: usize,
) -> Result<(String, String), OriginError> {
    if prefix_len > r.uri.len {
        return Err(OriginError::Internal(
            "manifest path longer than the request path",
        ));
    }
    let full_len = r.uri.len;
    r.uri.len = prefix_len;
    let mut path = ngx_str_t {
        len: 0,
        data: std::ptr::null_mut(),
    };
    let mut root_len = 0usize;
    // SAFETY: r is valid; the temporary shortening of r->uri is undone before anything else can
    // observe it (nginx is single-threaded per worker and this call does not re-enter us).
    let last = unsafe { ngx_http_map_uri_to_path(r, &mut path, &mut root_len, 0) };
    r.uri.len = full_len;
    if last.is_null() {
        return Err(OriginError::Internal(
            "could not map the URI to a file name",
        ));
    }
    // SAFETY: on success `path.data .. last` holds the mapped name (NUL at `last`).
    let len = unsafe { last.offset_from(path.data) } as usize;
    let bytes = unsafe { std::slice::from_raw_parts(path.data, len) };
    let name = String::from_utf8(bytes.to_vec())
        .map_err(|_| OriginError::Internal("file name is not UTF-8"))?;
    let root = name
        .get(..root_len.min(name.len()))
        .unwrap_or_default()
        .to_string();
    Ok((name, root))
}

/// `usp_prefer_static`: when a file exists at the requested path itself, serve it as nginx's
/// static module would instead of generating the response, with the Content-Type the
/// generated response has. `static_root` (`origin_static_root`) stands in for the location's
/// `root` or `alias`: a tree that mirrors the media's, kept apart from it because there the
/// server manifest is a file, so nothing can lie below its name.
fn serve_static_if_present(
    r: &mut ngx_http_request_t,
    route: &Route,
    static_root: Option<&str>,
) -> Result<Option<ngx_int_t>, OriginError> {
    let (mapped, root) = map_with_root(r, r.uri.len)?;
    let path = match static_root {
        Some(tree) => {
            let below = mapped.get(root.len()..).unwrap_or_default();
            format!(
                "{}/{}",
                tree.trim_end_matches('/'),
                below.trim_start_matches('/')
            )
        }
        None => mapped,
    };
    let mut files = Files::of(r, true);
    let (fd, opened) = match files.open_for_request(Path::new(&path)) {
        Ok(found) => found,
        // Nothing there (or not a file this location may serve): generate the answer.
        Err(OriginError::NotFound { .. } | OriginError::NotRegularFile { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let content_type = origin_core::stored::content_type(route)
        .unwrap_or_else(|| origin_core::mime::of_extension(&path));
    response::send_file(r, fd, &opened, &path, content_type).map(Some)
}
