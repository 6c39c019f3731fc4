//! Remote sources (`ism_proxy_pass`): the driver of the core's request engine for files behind
//! another HTTP server or S3, read with ranged subrequests through nginx's own proxy module.
//!
//! `ism_proxy_pass` configures nginx's `proxy_pass` on the location (so every `proxy_*`
//! directive, `upstream` keepalive, TLS, resolvers, timeouts and `proxy_cache` apply as nginx
//! users expect) and keeps the proxy's content handler aside. A client request runs the engine;
//! each file it needs is read by a background subrequest to the same location, marked as a
//! fetch, which the content handler hands to the proxy. The subrequest carries only the headers
//! we set (`Range`, and the S3 signature), and its response is collected in memory. The worker
//! never waits: the client request returns `NGX_DONE` while fetches are in flight and resumes
//! when the last one completes, so one worker serves any number of remote requests at once.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use ngx::ffi::{
    ngx_http_finalize_request, ngx_http_headers_in_t, ngx_http_post_request,
    ngx_http_post_subrequest_t, ngx_http_request_t, ngx_http_subrequest, ngx_int_t, ngx_list_push,
    ngx_palloc, ngx_str_t, ngx_table_elt_t, ngx_uint_t, NGX_DONE, NGX_HTTP_GATEWAY_TIME_OUT,
    NGX_HTTP_SUBREQUEST_BACKGROUND, NGX_HTTP_SUBREQUEST_IN_MEMORY, NGX_OK,
};
use origin_core::remote::{Asked, Completion, Fetched, Response as FetchResponse};
use origin_core::request::{Backend, Backends, Body, Need, Opened, Request, Step};
use origin_core::source::{SharedSource, Source, SourceIdentity, SparseSource};
use origin_core::url::Route;

use origin_core::s3::S3Signer;

use crate::ffi::strings::pool_str;
use crate::ffi::OriginError;
use crate::respond::status::fail;
use crate::settings::conf::LocConf;
use origin_core::config::location::LocationSettings;

/// Room beyond the asked range in a fetch's buffer, for a server that answers a small object
/// whole instead of the range.
const BODY_SLACK: usize = 64 << 10;

/// Reads one client request has in flight at most.
const MAX_FETCHES_IN_FLIGHT: usize = 32;

/// Seconds a remote object's version is trusted without `origin_remote_ttl`.
pub const DEFAULT_REMOTE_TTL_SECS: u64 = 30;

/// One client request's remote reads.
struct Remote {
    request: Request,
    /// The object behind each path, as far as it was read.
    sources: HashMap<String, Arc<SparseSource>>,
    /// Fetches started and not yet completed.
    in_flight: usize,
    /// Reads waiting for a fetch slot: (path, offset, length).
    queued: std::collections::VecDeque<(String, u64, u64)>,
    /// Every fetch of the request, boxed: nginx holds the address of each one's post-subrequest
    /// record, which must not move when the list grows.
    #[allow(clippy::vec_box)]
    fetches: Vec<Box<Fetch>>,
    /// Largest body one fetch may bring.
    fetch_max: u64,
    /// How a path under the location becomes the URL the proxy requests (for signing).
    upstream: Upstream,
    /// How long an object's version is trusted before it is checked again.
    ttl: std::time::Duration,
    /// Signs every fetch when the location has S3 credentials.
    signer: Option<S3Signer>,
    /// Whether the client request waits for fetches (our write handler and context are set).
    waiting: bool,
    r: *mut ngx_http_request_t,
}

/// `proxy_pass`'s mapping of a path under the location to the URL it requests.
struct Upstream {
    /// `scheme://` and the `Host` header nginx sends (`host[:port]`, the port when written).
    origin: String,
    /// The URL's path when it has one (it replaces the location prefix), else empty.
    base: String,
    /// Bytes of the location prefix the base replaces.
    strip: usize,
}

impl Upstream {
    fn of(lcf: &LocConf) -> Option<Upstream> {
        let url = &lcf.settings.proxy_pass.as_ref()?.value;
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let authority = match url.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Some(Upstream {
            origin: format!("{}://{authority}", url.scheme_name()),
            base: if url.explicit_path {
                url.path.clone()
            } else {
                String::new()
            },
            strip: if url.explicit_path {
                lcf.location_prefix.len()
            } else {
                0
            },
        })
    }

    /// The URL the proxy requests for `path`: as nginx's proxy builds it for a subrequest,
    /// the rest of the path escaped once with nginx's own URI escaping.
    fn url(&self, path: &str) -> String {
        let rest = path.get(self.strip..).unwrap_or_default();
        format!("{}{}{}", self.origin, self.base, escape_uri(rest))
    }
}

/// nginx's `ngx_escape_uri(NGX_ESCAPE_URI)`, which the proxy applies to subrequest paths.
fn escape_uri(s: &str) -> String {
    let src = s.as_bytes();
    // SAFETY: a NULL destination only counts; the second call writes at most len + 2 * count
    // bytes into a buffer of that size.
    unsafe {
        let count = ngx::ffi::ngx_escape_uri(ptr::null_mut(), src.as_ptr() as *mut u8, src.len(), 0)
            as usize;
        let mut out = vec![0u8; src.len() + 2 * count];
        ngx::ffi::ngx_escape_uri(
            out.as_mut_ptr(),
            src.as_ptr() as *mut u8,
            src.len(),
            ngx::ffi::NGX_ESCAPE_URI as ngx_uint_t,
        );
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The S3 signer of a location with S3 credentials.
fn signer(lcf: &LocConf) -> Option<S3Signer> {
    let s3 = &lcf.settings.s3;
    Some(S3Signer {
        access_key: s3.access_key.as_ref()?.value.clone(),
        secret_key: s3.secret_key.as_ref()?.value.clone(),
        session_token: s3.security_token.as_ref().map(|t| t.value.clone()),
        region: s3
            .region
            .as_ref()
            .map_or_else(|| "us-east-1".to_string(), |r| r.value.clone()),
    })
}

/// One ranged read of an object.
struct Fetch {
    remote: *mut Remote,
    path: String,
    offset: u64,
    len: u64,
    /// An open: the read also tells the object's size and version.
    open: bool,
    /// The `Range` header value.
    range: String,
    /// Where nginx collects the response body: the fetch's own memory, which becomes the
    /// source's bytes without another copy.
    body: Vec<u8>,
    /// The body's room: `len` and slack for a server that sends a small object whole.
    capacity: usize,
    /// The backend sent more than `capacity` bytes: the read was cut (see
    /// `fetch_body_filter`).
    over_limit: bool,
    /// The client connection's error flag before the cut, which the cut's NGX_ERROR sets.
    connection_error_before: bool,
    /// 0 for the first try (`origin_core::remote::retry` decides whether another follows).
    attempt: u8,
    done: bool,
    post: ngx_http_post_subrequest_t,
}

/// `$origin_fetch_range`: the `Range` of the fetch subrequest being proxied (`bytes=a-b`), for
/// `proxy_set_header Range` and `proxy_cache_key` where `proxy_cache` would drop the header.
pub unsafe extern "C" fn fetch_range_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx::ffi::ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and value slot.
    unsafe {
        let v = &mut *v;
        v.set_no_cacheable(1);
        if !is_fetch(&*r) {
            v.set_not_found(1);
            return NGX_OK as ngx_int_t;
        }
        let Some(fetch) = fetch_of(&*r) else {
            v.set_not_found(1);
            return NGX_OK as ngx_int_t;
        };
        let fetch = &*fetch;
        v.data = fetch.range.as_ptr() as *mut u8;
        v.set_len(fetch.range.len() as u32);
        v.set_valid(1);
        v.set_not_found(0);
    }
    NGX_OK as ngx_int_t
}

/// Makes a fetch's proxy read the response into one buffer of the size asked for, instead of
/// buffering it through `proxy_buffers` and a temporary file (the response is collected in
/// memory anyway): the proxy is told, before it reads the response, to pass it on unbuffered
/// from a buffer that holds all of it. A response already read (a `proxy_cache` hit) is left
/// alone.
pub fn unbuffer_fetch(r: &mut ngx_http_request_t) {
    let u = r.upstream;
    if u.is_null() {
        return;
    }
    // SAFETY: `u` is the fetch's upstream, created by the proxy handler from this request's
    // pool; its configuration is copied into the pool before it is changed, so the location's
    // own stays as configured.
    unsafe {
        // A response proxy_cache will store must stay buffered: nginx caches only those.
        if !(*u).buffer.start.is_null()
            || (*u).conf.is_null()
            || (*u).header_sent() != 0
            || (*u).cacheable() != 0
        {
            return;
        }
        let Some(fetch) = fetch_of(r) else {
            return;
        };
        let fetch = &*fetch;
        let size = std::mem::size_of::<ngx::ffi::ngx_http_upstream_conf_t>();
        let conf = ngx_palloc(r.pool, size) as *mut ngx::ffi::ngx_http_upstream_conf_t;
        if conf.is_null() {
            return;
        }
        ptr::copy_nonoverlapping((*u).conf, conf, 1);
        // Room for the response header too.
        let want = fetch.len as usize + 16 * 1024;
        if (*conf).buffer_size < want {
            (*conf).buffer_size = want;
        }
        (*u).conf = conf;
        (*u).set_buffering(0);
    }
}

/// The body filter after ours.
static mut NEXT_BODY_FILTER: ngx::ffi::ngx_http_output_body_filter_pt = None;

/// Puts [`fetch_body_filter`] at the head of nginx's body filters (postconfiguration).
///
/// # Safety
/// Called once per configuration, from postconfiguration, as every nginx filter is installed.
pub unsafe fn install_body_filter() {
    // SAFETY: nginx reads and writes the filter chain only while the configuration is read,
    // single-threaded; this is that time.
    unsafe {
        NEXT_BODY_FILTER = ngx::ffi::ngx_http_top_body_filter;
        ngx::ffi::ngx_http_top_body_filter = Some(fetch_body_filter);
    }
}

/// Cuts a fetch whose body would overflow its buffer. nginx's own in-memory collection
/// refuses such a body with NGX_ERROR, which marks the shared client connection as failed
/// and ends the client's request with no status line at all; here the same NGX_ERROR stops
/// the proxy's read (its upstream connection is closed), and the fetch remembers that the
/// error was its own cut, so its post-subrequest handler clears the connection's flag and
/// the client request answers 502 like any wrong backend answer.
unsafe extern "C" fn fetch_body_filter(
    r: *mut ngx_http_request_t,
    chain: *mut ngx::ffi::ngx_chain_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and chain; the filter after ours was set by
    // `install_body_filter` before any request ran.
    let next = unsafe { NEXT_BODY_FILTER };
    let Some(next) = next else {
        return ngx::ffi::NGX_ERROR as ngx_int_t;
    };
    // SAFETY: as above.
    if chain.is_null() || !is_fetch(unsafe { &*r }) {
        // SAFETY: the next filter takes what ours was given.
        return unsafe { next(r, chain) };
    }
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: a fetch's request, its ctx (its Fetch, alive with the client request's
        // pool), its `out` buffer (made by `start_fetch`) and the chain nginx passes are valid.
        unsafe {
            let Some(fetch) = fetch_of(&*r) else {
                return next(r, chain);
            };
            let fetch = &mut *fetch;
            let out = (*r).out;
            if out.is_null() || (*out).buf.is_null() {
                return next(r, chain);
            }
            let room = (*(*out).buf).end.offset_from((*(*out).buf).last).max(0) as usize;
            let mut incoming = 0usize;
            let mut cl = chain;
            while !cl.is_null() {
                let b = (*cl).buf;
                if !b.is_null() && !(*b).pos.is_null() {
                    incoming += (*b).last.offset_from((*b).pos).max(0) as usize;
                }
                cl = (*cl).next;
            }
            if incoming > room {
                fetch.over_limit = true;
                fetch.connection_error_before = (*(*r).connection).error() != 0;
                return ngx::ffi::NGX_ERROR as ngx_int_t;
            }
            next(r, chain)
        }
    })
}

/// Whether `r` is one of our fetch subrequests: those go to the proxy.
pub fn is_fetch(r: &ngx_http_request_t) -> bool {
    fetch_of(r).is_some()
}

/// The fetch a subrequest makes.
fn fetch_of(r: &ngx_http_request_t) -> Option<*mut Fetch> {
    if ptr::eq(r, r.main) {
        return None;
    }
    crate::ffi::ctx::get::<Fetch>(r)
}

/// The backends a location's absolute source URLs may name: its `ism_proxy_pass` origin,
/// read through the location (the inverse of `proxy_pass`'s mapping).
fn backends(lcf: &LocConf) -> Backends {
    let Some(pass) = &lcf.settings.proxy_pass else {
        return Backends::default();
    };
    let url = &pass.value;
    let prefix = lcf.location_prefix.clone();
    // proxy_pass with a URI replaces the location prefix by it; without one, the path is
    // passed as is.
    let base_path = if url.explicit_path {
        url.path.clone()
    } else {
        prefix.clone()
    };
    if !base_path.ends_with('/') || !prefix.ends_with('/') {
        return Backends::default();
    }
    Backends(vec![Backend {
        scheme: url.scheme_name().to_string(),
        host: url.host.to_ascii_lowercase(),
        port: url.effective_port(),
        base_path,
        path_prefix: prefix,
    }])
}

/// Packages a routed request whose files are remote (`handling::Action::PackageRemote`).
pub fn serve(
    r: &mut ngx_http_request_t,
    route: Route,
    lcf: &LocConf,
) -> Result<ngx_int_t, OriginError> {
    crate::settings::caches::size_for(r);
    let query = String::from_utf8_lossy(crate::ffi::strings::bytes(&r.args)).into_owned();
    let manifest = route.manifest_path.clone();
    let fetch_max = crate::settings::conf::core_loc_conf(r)
        .map(|c| c.subrequest_output_buffer_size)
        .filter(|&n| n > 0 && n != usize::MAX)
        .unwrap_or(crate::settings::conf::FETCH_MAX_BYTES) as u64;
    let overrides = crate::settings::conf::drm_overrides(r)?;
    let remote = Remote {
        request: Request::new(route, manifest, &query)
            .with_overrides(overrides)
            .with_backends(backends(lcf))
            .with_iss_pass_through(LocationSettings::on(lcf.settings.iss_pass_through))
            // `..` in a src may not climb out of what this location maps to the backend.
            .with_root(lcf.location_prefix.clone()),
        sources: HashMap::new(),
        in_flight: 0,
        queued: std::collections::VecDeque::new(),
        fetches: Vec::new(),
        fetch_max,
        ttl: std::time::Duration::from_secs(
            lcf.settings.remote_ttl.unwrap_or(DEFAULT_REMOTE_TTL_SECS),
        ),
        upstream: Upstream::of(lcf).ok_or(OriginError::Internal("ism_proxy_pass without a URL"))?,
        signer: signer(lcf),
        waiting: false,
        r,
    };
    let remote = crate::ffi::pool::own_by_request(r, remote)?;
    // SAFETY: `remote` lives in the request pool until the request is freed.
    match pump(r, unsafe { &mut *remote })? {
        Some(rc) => Ok(rc),
        None => {
            // SAFETY: the main request; the count keeps it alive until `resume` finalizes it.
            unsafe { (*r.main).set_count((*r.main).count() + 1) };
            crate::ffi::ctx::set(r, remote)?;
            r.write_event_handler = Some(resume);
            // SAFETY: as above.
            unsafe { (*remote).waiting = true };
            Ok(NGX_DONE as ngx_int_t)
        }
    }
}

/// Runs the engine until it answers (`Some(rc)`) or waits for fetches (`None`).
fn pump(r: &mut ngx_http_request_t, remote: &mut Remote) -> Result<Option<ngx_int_t>, OriginError> {
    loop {
        if let Some(rc) = pump_step(r, remote)? {
            return Ok(Some(rc));
        }
        if remote.in_flight > 0 {
            return Ok(None);
        }
    }
}

/// One step of the engine: its answer sent, or its needs met from the worker's metadata cache
/// or by fetches started.
fn pump_step(
    r: &mut ngx_http_request_t,
    remote: &mut Remote,
) -> Result<Option<ngx_int_t>, OriginError> {
    let step = crate::settings::caches::with(|c| remote.request.step(c))?;
    match step {
        Step::Done(answer) => {
            // The response takes over the request: a repackaged segment's writer installs its
            // own write handler and context.
            remote.stop_waiting(r);
            if let Body::Fragment { plan, path, .. } = &answer.body {
                // Sent from the fetched bytes where they are.
                if let Some(sparse) = remote.sources.get(path) {
                    return crate::respond::send::send_fragment_from_memory(
                        r,
                        plan,
                        sparse,
                        answer.content_type,
                        answer.modified,
                        &answer.etag,
                    )
                    .map(Some);
                }
            }
            crate::respond::answer::send(r, answer).map(Some)
        }
        Step::Need(Need::Open(paths)) => {
            for path in paths {
                let key = remote.key(&path);
                match known(&key, remote.ttl) {
                    // Known and fresh: no request at all (the engine's caches hold what was
                    // built from it).
                    Some((meta, true)) => remote.supply_known(&path, &meta),
                    // Known but due for revalidation: one byte tells its version.
                    Some((_, false)) => start_fetch(r, remote, path, 0, 1, true, 0)?,
                    // Known to the index store (another worker, an earlier nginx): one byte
                    // tells whether it is still that version, whose index the store holds.
                    None if recall_stored(&key, remote.ttl) => {
                        start_fetch(r, remote, path, 0, 1, true, 0)?
                    }
                    None => {
                        let len = origin_core::request::READ_AHEAD.min(remote.fetch_max);
                        start_fetch(r, remote, path, 0, len, true, 0)?
                    }
                }
            }
            Ok(None)
        }
        // Live channels are local: a remote presentation never waits for ingest.
        Step::Need(Need::Wait(_)) => Err(OriginError::Internal(
            "a remote presentation asked to wait for a live chunk",
        )),
        Step::Need(Need::Read(reads)) => {
            for read in reads {
                let mut offset = read.offset;
                let end = read.offset + read.len;
                while offset < end {
                    let len = (end - offset).min(remote.fetch_max);
                    remote.queued.push_back((read.path.clone(), offset, len));
                    offset += len;
                }
            }
            remote.start_queued(r)?;
            Ok(None)
        }
    }
}

/// The client request's write-event handler while fetches are in flight: nginx runs it when a
/// fetch wakes it (and on socket events, which it ignores until the fetches are done).
unsafe extern "C" fn resume(r: *mut ngx_http_request_t) {
    crate::ffi::fence::guard_request(r, || {
        // SAFETY: nginx calls the write handler with its valid request.
        let r = unsafe { &mut *r };
        let Some(remote) = crate::ffi::ctx::get::<Remote>(r) else {
            return NGX_OK as ngx_int_t;
        };
        // SAFETY: set by `serve`, freed with the pool.
        let remote = unsafe { &mut *remote };
        if remote.in_flight > 0 {
            return NGX_OK as ngx_int_t;
        }
        // SAFETY: the connection and its log live as long as the request.
        let log = unsafe { (*r.connection).log };
        let rc = crate::ffi::log::with_log(log, || match pump(r, remote) {
            Ok(None) => None,
            Ok(Some(rc)) => Some(rc),
            Err(e) => Some(fail(r, &e)),
        });
        if let Some(rc) = rc {
            finish(r, remote, rc);
        }
        NGX_OK as ngx_int_t
    });
}

/// Ends a request that waited for fetches with the answer's `rc` (an error status before the
/// header went out makes nginx send its error page).
fn finish(r: &mut ngx_http_request_t, remote: &mut Remote, rc: ngx_int_t) {
    remote.stop_waiting(r);
    // SAFETY: releases the count `serve` took.
    unsafe { ngx_http_finalize_request(r, rc) };
}

/// Starts a background subrequest reading `len` bytes at `offset` of `path`.
fn start_fetch(
    r: &mut ngx_http_request_t,
    remote: &mut Remote,
    path: String,
    offset: u64,
    len: u64,
    open: bool,
    attempt: u8,
) -> Result<(), OriginError> {
    let uri = pool_str(r, path.as_bytes())?;
    let uri = ngx_str_t {
        len: path.len(),
        data: uri.data,
    };
    let range = format!("bytes={}-{}", offset, offset + len.max(1) - 1);
    // The range, and room for a server that sends a small object whole.
    let capacity = len as usize + BODY_SLACK;
    let mut fetch = Box::new(Fetch {
        remote,
        range: range.clone(),
        // A spare buffer when the worker has one: a fresh one of hundreds of kilobytes per
        // read would be faulted in page by page as nginx fills it.
        body: origin_core::buffers::take(capacity),
        capacity,
        over_limit: false,
        connection_error_before: false,
        path,
        offset,
        len,
        open,
        attempt,
        done: false,
        post: ngx_http_post_subrequest_t {
            handler: Some(fetched),
            data: ptr::null_mut(),
        },
    });
    fetch.post.data = &mut *fetch as *mut Fetch as *mut c_void;
    let mut sr: *mut ngx_http_request_t = ptr::null_mut();
    // SAFETY: r is the request being handled; uri and the post record live in its pool and in
    // `remote.fetches` (freed with the pool) respectively.
    let rc = unsafe {
        ngx_http_subrequest(
            r,
            &uri as *const ngx_str_t as *mut ngx_str_t,
            ptr::null_mut(),
            &mut sr,
            &mut fetch.post,
            (NGX_HTTP_SUBREQUEST_IN_MEMORY | NGX_HTTP_SUBREQUEST_BACKGROUND) as ngx_uint_t,
        )
    };
    if rc != NGX_OK as ngx_int_t || sr.is_null() {
        return Err(OriginError::Internal("could not start a fetch subrequest"));
    }
    let mut headers = vec![("Range".to_string(), range.clone())];
    if let Some(signer) = &remote.signer {
        let url = remote.upstream.url(&fetch.path);
        let signed = signer.sign_get(&url, &[("range", &range)], std::time::SystemTime::now())?;
        headers.extend(signed);
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // SAFETY: `sr` was just created from `r` and has not run yet.
    unsafe { request_headers(sr, r, &headers)? };
    // nginx's in-memory filter fills sr->out when one is there: point it at our buffer.
    // SAFETY: the buffer header and link are from the pool; `fetch.body`'s allocation lives in
    // the boxed fetch until the request ends and is not touched by us while nginx fills it.
    unsafe {
        let b = crate::ffi::pool::pool_buf(r)?;
        let start = fetch.body.as_mut_ptr();
        (*b).start = start;
        (*b).pos = start;
        (*b).last = start;
        (*b).end = start.add(fetch.capacity.min(fetch.body.capacity()));
        (*b).set_temporary(1);
        (*b).set_last_buf(1);
        (*sr).out = crate::ffi::pool::chain_link(r, b)?;
    }
    // SAFETY: nginx made the subrequest for this call; it is valid.
    crate::ffi::ctx::set(unsafe { &mut *sr }, &mut *fetch as *mut Fetch)?;
    remote.fetches.push(fetch);
    remote.in_flight += 1;
    Ok(())
}

/// Gives the subrequest only the headers a fetch sends: the client's (conditional requests,
/// `Accept-Encoding`, cookies, its own `Range`) must not reach the backend.
///
/// # Safety
/// `sr` is a subrequest of `r` that has not run yet.
unsafe fn request_headers(
    sr: *mut ngx_http_request_t,
    r: &mut ngx_http_request_t,
    headers: &[(&str, &str)],
) -> Result<(), OriginError> {
    // SAFETY: plain C data; every field nginx reads is set below or is a valid zero.
    unsafe {
        let mut fresh: ngx_http_headers_in_t = std::mem::zeroed();
        fresh.server = r.headers_in.server;
        fresh.content_length_n = -1;
        fresh.keep_alive_n = -1;
        (*sr).headers_in = fresh;
        (*sr).headers_in.range = header_list(&mut (*sr).headers_in.headers, r, headers)?;
    }
    Ok(())
}

/// Makes `list` hold exactly `headers`, in `r`'s pool; returns the `Range` element (null when
/// there is none), which nginx also keeps apart from the list.
///
/// # Safety
/// `list` is a header list of `r` or of one of its subrequests, not being read meanwhile.
unsafe fn header_list(
    list: *mut ngx::ffi::ngx_list_t,
    r: &mut ngx_http_request_t,
    headers: &[(&str, &str)],
) -> Result<*mut ngx_table_elt_t, OriginError> {
    const SLOTS: usize = 8;
    let mut range = ptr::null_mut();
    // SAFETY: per this function's contract; the elements and strings live in r's pool, as
    // long as the request.
    unsafe {
        let list = &mut *list;
        let elts = ngx_palloc(r.pool, SLOTS * std::mem::size_of::<ngx_table_elt_t>());
        if elts.is_null() {
            return Err(OriginError::Internal("out of memory"));
        }
        list.part.elts = elts;
        list.part.nelts = 0;
        list.part.next = ptr::null_mut();
        list.last = &mut list.part;
        list.size = std::mem::size_of::<ngx_table_elt_t>();
        list.nalloc = SLOTS;
        list.pool = r.pool;
        for (name, value) in headers {
            let h = ngx_list_push(list) as *mut ngx_table_elt_t;
            if h.is_null() {
                return Err(OriginError::Internal("out of memory"));
            }
            ptr::write_bytes(h, 0, 1);
            let key = pool_str(r, name.as_bytes())?;
            let lower = pool_str(r, name.to_ascii_lowercase().as_bytes())?;
            let val = pool_str(r, value.as_bytes())?;
            // The proxy recognises headers it sets itself (proxy_set_header) by this hash.
            (*h).hash = ngx::ffi::ngx_hash_key(lower.data, name.len());
            (*h).key = ngx_str_t {
                len: name.len(),
                data: key.data,
            };
            (*h).value = ngx_str_t {
                len: value.len(),
                data: val.data,
            };
            (*h).lowcase_key = lower.data;
            if name.eq_ignore_ascii_case("range") {
                range = h;
            }
        }
    }
    Ok(range)
}

/// The client's request headers a signed progressive download passes on: its range and its
/// conditions, which the backend answers as for any client.
const PASSED_ON: [&str; 6] = [
    "Range",
    "If-Range",
    "If-None-Match",
    "If-Modified-Since",
    "If-Match",
    "If-Unmodified-Since",
];

/// A progressive download of the backend's file (`handling::Action::ProxyFile`): the proxy
/// serves it, ranges and all. With S3 credentials (`signed`) the request is signed as the
/// reads are: it goes out with the client's range and conditions and the SigV4 headers only,
/// and without the client's query, which S3 would read as operations on the object, done with
/// the location's credentials.
pub fn proxy_file(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    proxy: crate::settings::conf::Handler,
    signed: bool,
) -> Result<ngx_int_t, OriginError> {
    if signed {
        sign_client_request(r, lcf)?;
    }
    // SAFETY: the proxy handler takes the request as any content handler does.
    Ok(unsafe { proxy(r) })
}

/// Turns the client request into the signed GET the proxy sends for it.
fn sign_client_request(r: &mut ngx_http_request_t, lcf: &LocConf) -> Result<(), OriginError> {
    let signer = signer(lcf).ok_or(OriginError::Internal("signing without S3 credentials"))?;
    let upstream =
        Upstream::of(lcf).ok_or(OriginError::Internal("ism_proxy_pass without a URL"))?;
    let path = std::str::from_utf8(crate::ffi::strings::bytes(&r.uri))
        .map_err(|_| OriginError::Internal("a request path that is not UTF-8"))?
        .to_string();
    // Without the query, and with the path escaped exactly as for our own reads (nginx's
    // proxy escapes the path of a request it sees as quoted, as of a subrequest, instead of
    // passing the client's raw request line on): the URL it requests is `upstream.url`.
    r.args.len = 0;
    r.set_valid_unparsed_uri(0);
    r.set_quoted_uri(1);
    let url = upstream.url(&path);
    // SAFETY: the client's header list, read before it is replaced.
    let mut headers: Vec<(String, String)> = unsafe {
        ngx::http::list_iterator(&r.headers_in.headers)
            .filter_map(|(name, value)| {
                let name = String::from_utf8_lossy(name.as_bytes());
                PASSED_ON
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(&name))
                    .map(|p| {
                        (
                            p.to_string(),
                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        )
                    })
            })
            .collect()
    };
    let method = String::from_utf8_lossy(crate::ffi::strings::bytes(&r.method_name)).into_owned();
    headers.extend(signer.sign_read(&method, &url, &[], std::time::SystemTime::now())?);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // SAFETY: the request's own header list, which nothing reads while it is replaced.
    let range = unsafe { header_list(&mut r.headers_in.headers, r, &headers)? };
    r.headers_in.range = range;
    Ok(())
}

/// Post-subrequest handler of a fetch: records what came back, and wakes the client request
/// when it was the last fetch in flight.
unsafe extern "C" fn fetched(
    sr: *mut ngx_http_request_t,
    data: *mut c_void,
    rc: ngx_int_t,
) -> ngx_int_t {
    crate::ffi::fence::guard_request(sr, || {
        // SAFETY: `data` is the Fetch this subrequest was started with, alive while its
        // client request's pool is.
        let fetch = unsafe { &mut *(data as *mut Fetch) };
        if fetch.done {
            return NGX_OK as ngx_int_t;
        }
        fetch.done = true;
        // SAFETY: the Remote outlives its fetches (both freed with the request pool).
        let remote = unsafe { &mut *fetch.remote };
        remote.in_flight -= 1;
        if fetch.over_limit {
            // The cut read is ours, not the client connection's: see `fetch_body_filter`.
            // SAFETY: the subrequest shares the client request's live connection.
            unsafe { (*(*sr).connection).set_error(u32::from(fetch.connection_error_before)) };
        }
        // SAFETY: nginx passes the finished subrequest.
        let response = response_of(unsafe { &*sr }, rc, fetch);
        let asked = Asked {
            offset: fetch.offset,
            len: fetch.len,
        };
        let result = origin_core::remote::check(&remote.upstream.url(&fetch.path), asked, response);
        let retry = matches!(&result, Err(e) if origin_core::remote::retry(e, fetch.attempt));
        // SAFETY: the client request is alive while its fetches are.
        let r = unsafe { &mut *remote.r };
        let retried = retry
            && start_fetch(
                r,
                remote,
                fetch.path.clone(),
                fetch.offset,
                fetch.len,
                fetch.open,
                fetch.attempt + 1,
            )
            .is_ok();
        if !retried {
            remote.apply(fetch, result);
        }
        if let Err(e) = remote.start_queued(r) {
            let path = fetch.path.clone();
            remote.queued.clear();
            remote.request.supply_open(&path, Err(e));
        }
        if remote.in_flight == 0 {
            // SAFETY: the client request is alive (the count taken in `serve`).
            unsafe { ngx_http_post_request(remote.r, ptr::null_mut()) };
        }
        // A failed fetch is the client request's error to report, not a reason for nginx to
        // terminate it.
        NGX_OK as ngx_int_t
    })
}

/// What a worker knows of a remote object, and since when.
#[derive(Clone)]
struct Meta {
    identity: SourceIdentity,
    size: u64,
    modified: i64,
    checked: std::time::Instant,
}

impl origin_core::cache::Weighted for Meta {
    fn weight(&self) -> usize {
        1
    }
}

/// Remote objects a worker knows, by backend URL: at most this many.
const KNOWN_OBJECTS: usize = 16_384;

thread_local! {
    static KNOWN: std::cell::RefCell<origin_core::cache::LruCache<String, Meta>> =
        std::cell::RefCell::new(origin_core::cache::LruCache::new(KNOWN_OBJECTS));
}

/// The object's metadata, and whether it is younger than `ttl`.
fn known(key: &str, ttl: std::time::Duration) -> Option<(Meta, bool)> {
    let meta = KNOWN.with(|k| k.borrow_mut().get(&key.to_string()))?;
    let fresh = meta.checked.elapsed() < ttl;
    Some(((*meta).clone(), fresh))
}

fn remember(key: String, meta: Meta) {
    KNOWN.with(|k| k.borrow_mut().insert(key, Arc::new(meta)));
}

/// Whether the index store knows the object `key` (then remembered as due for revalidation,
/// since nobody knows how old the store's record is).
fn recall_stored(key: &str, ttl: std::time::Duration) -> bool {
    let Some((identity, modified)) = crate::settings::caches::with(|c| {
        c.index_store().and_then(|store| store.remote_object(key))
    }) else {
        return false;
    };
    let Some(checked) = std::time::Instant::now().checked_sub(ttl) else {
        return false;
    };
    let SourceIdentity::Remote { size, .. } = identity else {
        return false;
    };
    remember(
        key.to_string(),
        Meta {
            identity,
            size,
            modified,
            checked,
        },
    );
    true
}

fn forget(key: &str) {
    KNOWN.with(|k| k.borrow_mut().retain(|other| other != key));
}

impl Remote {
    /// Starts queued reads while fewer than [`MAX_FETCHES_IN_FLIGHT`] are in flight: a file's
    /// thousands of fragments are read side by side, but not all at once.
    fn start_queued(&mut self, r: &mut ngx_http_request_t) -> Result<(), OriginError> {
        while self.in_flight < MAX_FETCHES_IN_FLIGHT {
            let Some((path, offset, len)) = self.queued.pop_front() else {
                break;
            };
            start_fetch(r, self, path, offset, len, false, 0)?;
        }
        Ok(())
    }

    /// Hands the client request back to the response: the writer of a repackaged segment
    /// installs its own write handler and context.
    fn stop_waiting(&mut self, r: &mut ngx_http_request_t) {
        if self.waiting {
            self.waiting = false;
            crate::ffi::ctx::clear(r);
            r.write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
        }
    }

    /// The worker-wide name of the object at `path`: the URL the proxy requests for it, the
    /// same from every location and server that reads it.
    fn key(&self, path: &str) -> String {
        self.upstream.url(path)
    }

    /// Supplies an object from what the worker knows of it, without a request.
    fn supply_known(&mut self, path: &str, meta: &Meta) {
        let sparse = Arc::new(SparseSource::new(path, meta.identity.clone(), meta.size));
        self.sources.insert(path.to_string(), sparse.clone());
        self.request.supply_open(
            path,
            Ok(Opened {
                identity: meta.identity.clone(),
                size: meta.size,
                modified: meta.modified,
                reader: Some(sparse as SharedSource),
            }),
        );
    }

    /// Hands a fetch's result to the engine.
    fn apply(&mut self, fetch: &Fetch, result: Result<Fetched, OriginError>) {
        let path = fetch.path.as_str();
        let fetched = match result {
            Ok(f) => f,
            Err(e) => {
                // The request ends with this error: the reads still queued are not needed.
                self.queued.clear();
                self.request.supply_open(path, Err(e));
                return;
            }
        };
        if fetch.open {
            let identity = SourceIdentity::Remote {
                url: self.key(path),
                version: fetched.version.clone(),
                size: fetched.total,
            };
            let known_before = known(&self.key(path), self.ttl).map(|(m, _)| m.identity);
            if known_before.as_ref() != Some(&identity) {
                crate::settings::caches::with(|c| {
                    if let Some(store) = c.index_store() {
                        store.remember_remote_object(&identity, fetched.modified);
                    }
                });
            }
            remember(
                self.key(path),
                Meta {
                    identity: identity.clone(),
                    size: fetched.total,
                    modified: fetched.modified,
                    checked: std::time::Instant::now(),
                },
            );
            let sparse = Arc::new(SparseSource::new(path, identity.clone(), fetched.total));
            sparse.insert_owned(fetch.offset, fetched.bytes);
            self.sources.insert(path.to_string(), sparse.clone());
            self.request.supply_open(
                path,
                Ok(Opened {
                    identity,
                    size: fetched.total,
                    modified: fetched.modified,
                    reader: Some(sparse as SharedSource),
                }),
            );
            return;
        }
        let Some(sparse) = self.sources.get(path).cloned() else {
            self.request.supply_open(
                path,
                Err(OriginError::Internal("a read of an unopened object")),
            );
            return;
        };
        let unchanged = match sparse.identity() {
            SourceIdentity::Remote { version, size, .. } => {
                *version == fetched.version && *size == fetched.total
            }
            _ => false,
        };
        if !unchanged {
            // The next request looks at the object afresh.
            forget(&self.key(path));
            self.request.supply_open(
                path,
                Err(OriginError::Backend {
                    url: self.upstream.url(path),
                    what: format!(
                        "the object changed between reads (version \"{}\", {} bytes)",
                        fetched.version, fetched.total
                    ),
                    timeout: false,
                    retry: false,
                }),
            );
            return;
        }
        sparse.insert_owned(fetch.offset, fetched.bytes);
        self.request.supply_read(path, Ok(sparse as SharedSource));
    }
}

/// A table element's value.
fn header_value(h: *const ngx_table_elt_t) -> Option<String> {
    if h.is_null() {
        return None;
    }
    // SAFETY: nginx's header elements hold `len` valid bytes for the request's life.
    let v = unsafe { &(*h).value };
    Some(String::from_utf8_lossy(crate::ffi::strings::bytes(v)).into_owned())
}

/// What a fetch subrequest brought, copied out of nginx for the core to check
/// (`origin_core::remote::check`).
fn response_of(sr: &ngx_http_request_t, rc: ngx_int_t, fetch: &mut Fetch) -> FetchResponse {
    let completion = if rc == NGX_OK as ngx_int_t {
        Completion::Complete
    } else if rc == NGX_HTTP_GATEWAY_TIME_OUT as ngx_int_t {
        Completion::TimedOut
    } else {
        Completion::Incomplete
    };
    // The body was collected into the fetch's own buffer (see `start_fetch`).
    // SAFETY: sr->out is the buffer header start_fetch made over `fetch.body`; nginx wrote
    // `last - start` bytes into it, never past its capacity.
    let received = unsafe {
        let b = if sr.out.is_null() {
            ptr::null_mut()
        } else {
            (*sr.out).buf
        };
        if b.is_null() || (*b).start != fetch.body.as_mut_ptr() {
            None
        } else {
            Some((*b).last.offset_from((*b).start) as usize)
        }
    };
    let body = received.map(|n| {
        // SAFETY: those bytes are initialised (written by nginx's in-memory filter).
        unsafe { fetch.body.set_len(n.min(fetch.body.capacity())) };
        std::mem::take(&mut fetch.body)
    });
    let out = &sr.headers_out;
    FetchResponse {
        completion,
        status: out.status as u16,
        content_range: header_value(out.content_range),
        content_length: u64::try_from(out.content_length_n).ok(),
        etag: header_value(out.etag),
        last_modified: (out.last_modified_time > 0).then_some(out.last_modified_time),
        body,
        over_limit: fetch.over_limit.then_some(fetch.capacity as u64),
    }
}

/// Registers `$origin_fetch_range`.
///
/// # Safety
/// `cf` is the configuration being read (nginx's preconfiguration).
pub unsafe fn add_variables(cf: *mut ngx::ffi::ngx_conf_t) -> ngx_int_t {
    let mut name = ngx::ngx_string!("origin_fetch_range");
    // SAFETY: called by nginx with the configuration being read; the variable lives in the
    // configuration pool. Not cacheable: subrequests share their parent's variable values,
    // and every fetch has its own range.
    unsafe {
        let v = ngx::ffi::ngx_http_add_variable(
            cf,
            &mut name,
            ngx::ffi::NGX_HTTP_VAR_NOCACHEABLE as ngx::ffi::ngx_uint_t,
        );
        if v.is_null() {
            return ngx::ffi::NGX_ERROR as ngx_int_t;
        }
        (*v).get_handler = Some(fetch_range_variable);
    }
    ngx::ffi::NGX_OK as ngx_int_t
}
