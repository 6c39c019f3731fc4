//! The content handler installed by `usp_handle_ism` (and `usp_handle_f4f` / `usp_handle_api`).
//!
//! URL → route (core) → the core's plan for it (`origin_core::handling`: the same decision for
//! local, remote and S3 files) → the job that carries it out → response. Each step returns
//! `Result`; errors become a status and a log line in `status::fail`.

use std::path::Path;

use ngx::ffi::{
    ngx_http_discard_request_body, ngx_http_map_uri_to_path, ngx_http_request_t, ngx_int_t,
    ngx_str_t, NGX_HTTP_DELETE, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_POST, NGX_HTTP_PUT, NGX_OK,
};
use origin_core::config::location::LocationSettings;
use origin_core::handling::{self, Action, Method};
use origin_core::metrics::Format;
use origin_core::url::{Route, RouteOptions};

use crate::conf;
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

    let settings = &lcf.settings;
    let options = RouteOptions {
        legacy_forms: !LocationSettings::on(settings.skip_rewrite),
    };
    let route = Route::parse(ngx_bytes(&r.uri), ngx_bytes(&r.args), options)?;
    crate::metrics::track(r, Format::of(&route));
    tracing::debug!(manifest = %route.manifest_path, target = ?route.target, "routed");

    let plan = handling::plan(&route, method_of(method), settings)?;
    if plan.static_first {
        if let Some(rc) = serve_static_if_present(r, &route, settings.static_root.as_deref())? {
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
            let isml = map_to_path(r, route.manifest_path.len())?;
            let auto_create = settings.live_auto_create.unwrap_or(true);
            crate::ingest::serve(r, &isml, &stream, auto_create)
        }
        Action::PutChannel => {
            let isml = map_to_path(r, route.manifest_path.len())?;
            crate::live::put(r, &isml)
        }
        Action::DeleteChannel => {
            let isml = map_to_path(r, route.manifest_path.len())?;
            crate::live::delete(r, &isml)
        }
        Action::LiveReport(report) => {
            let isml = map_to_path(r, route.manifest_path.len())?;
            crate::live::report(r, &isml, &report)
        }
        Action::SendFile => {
            let manifest_file = map_to_path(r, route.manifest_path.len())?;
            let mut files = Files::of(r, true);
            let (fd, opened) = files.open_for_request(Path::new(&manifest_file))?;
            response::send_file(r, fd, &opened, &manifest_file, origin_core::mime::VIDEO_MP4)
        }
        Action::ProxyFile { signed } => crate::remote::proxy_file(r, &lcf, proxy()?, signed),
        Action::PackageRemote => crate::remote::serve(r, route, &lcf),
        Action::PackageLocal => {
            let (manifest_file, root) = map_with_root(r, route.manifest_path.len())?;
            let disable_mmap = LocationSettings::on(settings.disable_mmap);
            crate::driver::serve(r, route, manifest_file, root, disable_mmap)
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
