//! Directives (docs/COMPAT.md §1) and their typed configuration.
//!
//! Every directive goes through one shim, [`set_directive`], which hands the arguments to a safe
//! setter. Unset values stay `None` until [`merge_loc_conf`]; defaults exist only there. Values are
//! checked while the configuration is read, so `nginx -t` names the directive, the value and the
//! file:line of every mistake.

use std::ffi::{c_char, c_void};
use std::fs;
use std::ptr;

use ngx::core::Pool;
use ngx::ffi::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_http_core_loc_conf_t, ngx_http_core_module,
    ngx_int_t, ngx_log_error_core, ngx_str_t, ngx_uint_t, NGX_CONF_2MORE, NGX_CONF_NOARGS,
    NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE2, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::http::HttpModuleConfExt;
use ngx::ngx_string;
use origin_core::config::ingest::IngestSettings;
use origin_core::config::location::{ContentHandler, LocationSettings, Position};

use crate::ffi::fence as entry;

/// `http`-level configuration.
#[derive(Debug)]
pub struct MainConf {
    /// `usp_license_key`: the key file's full path. Accepted for compatibility; not enforced.
    pub license_key: Option<String>,
    /// `origin_cache_size`: bytes of parsed indexes, manifests and segment tables each worker
    /// keeps (ours; the commercial module has no equivalent).
    pub cache_size: Option<usize>,
    /// `origin_thread_pool`: the nginx thread pool blocking work (live ingest's archive writes,
    /// the Live API's changes) runs on, nginx's `default` pool unless set (ours).
    pub thread_pool_name: Option<String>,
    /// That pool, registered once a location can ingest or change publishing points.
    #[cfg(ngx_feature = "threads")]
    pub thread_pool: *mut ngx::ffi::ngx_thread_pool_t,
    /// `origin_ingest_memory`, `origin_ingest_max_fragment`, `origin_ingest_fragment_timeout`:
    /// what live ingest may hold (ours).
    pub ingest: IngestSettings,
    /// `origin_index_store PATH [max_size=SIZE]`: the folder media indexes are kept in for
    /// every worker and the next nginx, and its size limit (ours; off unless set).
    pub index_store: Option<(String, u64)>,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            license_key: None,
            cache_size: None,
            thread_pool_name: None,
            #[cfg(ngx_feature = "threads")]
            thread_pool: ptr::null_mut(),
            ingest: IngestSettings::default(),
            index_store: None,
        }
    }
}

/// `location`-level configuration: the settings the core decides (every value, duplicate,
/// combination and inheritance rule), and what only nginx holds.
#[derive(Debug, Clone, Default)]
pub struct LocConf {
    pub settings: LocationSettings,
    /// nginx's proxy content handler, set up by `ism_proxy_pass` on this location: fetch
    /// subrequests go to it.
    pub proxy_handler: Option<Handler>,
    /// The location's name (its prefix), which fetch subrequests' paths start with.
    pub location_prefix: String,
    /// `origin_drm NAME VALUE`: content protection options set over the server manifest's,
    /// the value evaluated per request (ours). `None` until set here or inherited.
    pub drm_overrides: Option<Vec<DrmOverride>>,
}

/// One `origin_drm` option: its `.ism` name and its value, which may hold variables.
#[derive(Debug, Clone)]
pub struct DrmOverride {
    pub name: String,
    pub value: *mut ngx::ffi::ngx_http_complex_value_t,
}

fn duplicate(name: &str) -> String {
    format!("\"{name}\" directive is duplicate")
}

fn invalid(name: &str, value: &str, why: &str) -> String {
    format!("invalid value \"{value}\" in \"{name}\" directive, {why}")
}

/// Every directive of the module, terminated by nginx's empty command.
pub static mut COMMANDS: [ngx_command_t; 30] = [
    loc_switch(ngx_string!("usp_handle_ism")),
    loc_switch(ngx_string!("usp_iss_pass_through")),
    loc_switch(ngx_string!("usp_prefer_static")),
    loc_switch(ngx_string!("usp_skip_rewrite")),
    loc_switch(ngx_string!("usp_handle_f4f")),
    loc_switch(ngx_string!("usp_handle_api")),
    loc_switch(ngx_string!("usp_disable_mmap")),
    loc_value(ngx_string!("usp_dynamic_time_shift_buffer_depth")),
    loc_value(ngx_string!("ism_proxy_pass")),
    loc_value(ngx_string!("s3_access_key")),
    loc_value(ngx_string!("s3_secret_key")),
    loc_value(ngx_string!("s3_region")),
    loc_value(ngx_string!("s3_security_token")),
    loc_value(ngx_string!("origin_remote_ttl")),
    loc_value(ngx_string!("origin_static_root")),
    loc_switch(ngx_string!("origin_live_auto_create")),
    loc_value(ngx_string!("origin_live_max_tracks")),
    loc_value(ngx_string!("origin_live_max_channels")),
    loc_directive(
        ngx_string!("origin_status_map"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_2MORE,
    ),
    loc_directive(
        ngx_string!("origin_drm"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE2,
    ),
    loc_directive(
        ngx_string!("origin_status"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
    ),
    main_value(ngx_string!("usp_license_key"), set_license_key),
    main_value(ngx_string!("origin_thread_pool"), set_thread_pool),
    main_value(ngx_string!("origin_cache_size"), set_cache_size),
    main_value(ngx_string!("origin_ingest_memory"), set_ingest),
    main_value(ngx_string!("origin_ingest_max_fragment"), set_ingest),
    main_value(ngx_string!("origin_ingest_fragment_timeout"), set_ingest),
    main_value(ngx_string!("origin_live_max_held"), set_ingest),
    ngx_command_t {
        name: ngx_string!("origin_index_store"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12) as ngx_uint_t,
        set: Some(set_index_store),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// An `http`-level directive with exactly one value, set by `set`.
const fn main_value(
    name: ngx_str_t,
    set: unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// A directive of the location conf, set through [`set_directive`]; `type_` says where it may
/// stand and how many arguments it takes.
const fn loc_directive(name: ngx_str_t, type_: u32) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// A location switch: `name;` (on) or `name on|off;`.
const fn loc_switch(name: ngx_str_t) -> ngx_command_t {
    loc_directive(name, NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1)
}

/// A location directive with exactly one value.
const fn loc_value(name: ngx_str_t) -> ngx_command_t {
    loc_directive(name, NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
}

/// The directive's arguments as UTF-8 (`args[0]` is the directive name).
fn conf_args(cf: &ngx_conf_t) -> Result<Vec<&str>, String> {
    // SAFETY: while a directive is being handled, cf->args is nginx's array of ngx_str_t
    // holding the directive name and its arguments.
    let args: &[ngx_str_t] = unsafe { (*cf.args).as_slice() };
    args.iter()
        .map(|a| {
            let bytes = a.as_bytes();
            std::str::from_utf8(bytes).map_err(|_| {
                format!(
                    "invalid value \"{}\": not valid UTF-8",
                    String::from_utf8_lossy(bytes)
                )
            })
        })
        .collect()
}

fn conf_position(cf: &ngx_conf_t) -> Position {
    // SAFETY: while the configuration is read, conf_file points at the file being parsed.
    unsafe {
        let Some(file) = cf.conf_file.as_ref() else {
            return Position::default();
        };
        Position {
            file: String::from_utf8_lossy(file.file.name.as_bytes()).into_owned(),
            line: file.line,
        }
    }
}

/// Logs a configuration error at the current file:line and returns NGX_CONF_ERROR.
fn conf_error(cf: *mut ngx_conf_t, message: &str) -> *mut c_char {
    ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
    ngx::core::NGX_CONF_ERROR
}

unsafe extern "C" fn set_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: nginx passes the configuration being parsed and our location conf (created by
        // create_loc_conf) for NGX_HTTP_LOC_CONF_OFFSET directives.
        let (cfr, conf) = unsafe { (&mut *cf, &mut *(conf as *mut LocConf)) };
        let args = match conf_args(cfr) {
            Ok(a) => a,
            Err(e) => return conf_error(cf, &e),
        };
        let Some((name, values)) = args.split_first() else {
            return conf_error(cf, "directive without a name");
        };
        if *name == "origin_drm" {
            // SAFETY: called from the directive handler with nginx's configuration state.
            return match unsafe { add_drm_override(cf, conf, values) } {
                Ok(()) => ngx::core::NGX_CONF_OK,
                Err(e) => conf_error(cf, &e),
            };
        }
        if let Err(e) = conf.settings.set(name, values, conf_position(cfr)) {
            return conf_error(cf, &e);
        }
        let handler = handler_of(conf.settings.handler_set_by(name));
        if *name == "ism_proxy_pass" {
            // SAFETY: called from the directive handler with nginx's configuration state.
            if let Err(rv) = unsafe { install_proxy(cf, conf) } {
                return rv;
            }
        }
        if handler.is_some() {
            // SAFETY: in a location block the core module's location conf exists.
            let clcf = unsafe {
                cfr.http_location_conf_unchecked::<ngx_http_core_loc_conf_t>(&*ptr::addr_of!(
                    ngx_http_core_module
                ))
            };
            let Some(mut clcf) = clcf else {
                return conf_error(cf, "no http core location configuration");
            };
            // SAFETY: the pointer came from nginx's configuration context and is valid.
            unsafe { clcf.as_mut().handler = handler };
        }
        ngx::core::NGX_CONF_OK
    })
}

/// `origin_drm NAME VALUE`: NAME one of the content protection options of the `.ism`, VALUE
/// compiled as a complex value (variables evaluated per request).
///
/// # Safety
/// `cf` is the configuration being parsed.
unsafe fn add_drm_override(
    cf: *mut ngx_conf_t,
    conf: &mut LocConf,
    values: &[&str],
) -> Result<(), String> {
    let [name, _] = values else {
        return Err("invalid number of arguments in \"origin_drm\" directive".into());
    };
    let overrides = conf.drm_overrides.get_or_insert_with(Vec::new);
    origin_core::config::location::check_drm_option(
        name,
        overrides.iter().map(|o| o.name.as_str()),
    )?;
    // SAFETY: during configuration cf, its pool and its args array are valid; the value
    // string is the directive's own argument, which lives as long as the configuration.
    unsafe {
        let pool = (*cf).pool;
        let cv = ngx::ffi::ngx_pcalloc(
            pool,
            std::mem::size_of::<ngx::ffi::ngx_http_complex_value_t>(),
        ) as *mut ngx::ffi::ngx_http_complex_value_t;
        if cv.is_null() {
            return Err("out of memory".into());
        }
        let args: &mut [ngx_str_t] = (*(*cf).args).as_slice_mut();
        let mut ccv: ngx::ffi::ngx_http_compile_complex_value_t = std::mem::zeroed();
        ccv.cf = cf;
        ccv.value = &mut args[2];
        ccv.complex_value = cv;
        if ngx::ffi::ngx_http_compile_complex_value(&mut ccv) != ngx::ffi::NGX_OK as ngx_int_t {
            return Err("invalid value in \"origin_drm\" directive".into());
        }
        overrides.push(DrmOverride {
            name: name.to_string(),
            value: cv,
        });
    }
    Ok(())
}

/// Configures nginx's `proxy_pass` on this location with `ism_proxy_pass`'s URL (through the
/// proxy module's own directive handler, so the URL means exactly what it means there) and
/// keeps the proxy's content handler for fetch subrequests; the location's content handler
/// stays ours. Fetches collect responses in memory: unless the location sets
/// `subrequest_output_buffer_size`, it is raised to what one fetch may read.
///
/// # Safety
/// `cf` is the configuration being parsed, inside the location whose conf is `conf`.
unsafe fn install_proxy(cf: *mut ngx_conf_t, conf: &mut LocConf) -> Result<(), *mut c_char> {
    use std::ffi::CStr;
    // SAFETY: during configuration the cycle's module table and the http context are valid.
    unsafe {
        let cycle = (*cf).cycle;
        let modules = std::slice::from_raw_parts((*cycle).modules, (*cycle).modules_n);
        let Some(proxy) = modules.iter().copied().find(|&m| {
            !(*m).name.is_null() && CStr::from_ptr((*m).name) == c"ngx_http_proxy_module"
        }) else {
            return Err(conf_error(
                cf,
                "\"ism_proxy_pass\" needs nginx's proxy module, and this nginx was built without it",
            ));
        };
        let mut cmd = (*proxy).commands;
        while !cmd.is_null() && !(*cmd).name.data.is_null() {
            if (*cmd).name.as_bytes() == b"proxy_pass" {
                break;
            }
            cmd = cmd.add(1);
        }
        let Some(set) = cmd
            .as_ref()
            .and_then(|c| c.set)
            .filter(|_| !(*cmd).name.data.is_null())
        else {
            return Err(conf_error(
                cf,
                "nginx's proxy module has no proxy_pass directive",
            ));
        };
        let ctx = (*cf).ctx as *mut ngx::ffi::ngx_http_conf_ctx_t;
        let plcf = *(*ctx).loc_conf.add((*proxy).ctx_index);
        let clcf =
            *(*ctx).loc_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_loc_conf_t;
        let previous = (*clcf).handler;
        let rv = set(cf, cmd, plcf);
        if !rv.is_null() {
            return Err(rv);
        }
        conf.proxy_handler = (*clcf).handler;
        (*clcf).handler = previous;
        conf.location_prefix = String::from_utf8_lossy((*clcf).name.as_bytes()).into_owned();
        if (*clcf).subrequest_output_buffer_size == usize::MAX {
            (*clcf).subrequest_output_buffer_size = FETCH_MAX_BYTES;
        }
    }
    Ok(())
}

unsafe extern "C" fn set_license_key(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: nginx passes the configuration being parsed and our main conf.
        let (cfr, conf) = unsafe { (&mut *cf, &mut *(conf as *mut MainConf)) };
        if conf.license_key.is_some() {
            return conf_error(cf, &duplicate("usp_license_key"));
        }
        // SAFETY: cf->args holds the name and one argument (NGX_CONF_TAKE1).
        let mut name: ngx_str_t = unsafe { (*cfr.args).as_slice::<ngx_str_t>()[1] };
        // Relative names are relative to the configuration prefix, as for nginx's own files.
        // SAFETY: cycle is valid during configuration; name lives in the conf pool.
        if unsafe { ngx_conf_full_name(cfr.cycle, &mut name, 1) } != 0 {
            return conf_error(cf, "could not resolve the \"usp_license_key\" path");
        }
        let path = String::from_utf8_lossy(name.as_bytes()).into_owned();
        match check_license_file(&path) {
            Ok(()) => {
                conf.license_key = Some(path);
                ngx::core::NGX_CONF_OK
            }
            Err(why) => conf_error(
                cf,
                &format!("invalid value \"{path}\" in \"usp_license_key\" directive, {why}"),
            ),
        }
    })
}

unsafe extern "C" fn set_cache_size(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: nginx passes the configuration being parsed and our main conf.
        let (cfr, conf) = unsafe { (&mut *cf, &mut *(conf as *mut MainConf)) };
        const NAME: &str = "origin_cache_size";
        if conf.cache_size.is_some() {
            return conf_error(cf, &duplicate(NAME));
        }
        let args = match conf_args(cfr) {
            Ok(a) => a,
            Err(e) => return conf_error(cf, &e),
        };
        let [_, value] = args.as_slice() else {
            return conf_error(
                cf,
                &format!("invalid number of arguments in \"{NAME}\" directive"),
            );
        };
        match origin_core::config::parse_cache_size(value) {
            Ok(size) => {
                conf.cache_size = Some(size);
                ngx::core::NGX_CONF_OK
            }
            Err(e) => conf_error(cf, &invalid(NAME, value, &e.0)),
        }
    })
}

/// `origin_index_store PATH [max_size=SIZE]`: a relative path is relative to the prefix, as
/// for nginx's own paths. The folder is made by the workers on their first write (as the
/// user they run as); a path that names something other than a folder is refused here.
unsafe extern "C" fn set_index_store(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: nginx passes the configuration being parsed and our main conf.
        let (cfr, conf) = unsafe { (&mut *cf, &mut *(conf as *mut MainConf)) };
        const NAME: &str = "origin_index_store";
        if conf.index_store.is_some() {
            return conf_error(cf, &duplicate(NAME));
        }
        let args = match conf_args(cfr) {
            Ok(a) => a,
            Err(e) => return conf_error(cf, &e),
        };
        let options: Vec<&str> = args.iter().skip(2).copied().collect();
        let max = match origin_core::config::parse_index_store_options(&options) {
            Ok(max) => max,
            Err(e) => return conf_error(cf, &invalid(NAME, &options.join(" "), &e.0)),
        };
        // SAFETY: cf->args holds the name and at least one argument (NGX_CONF_TAKE12).
        let mut name: ngx_str_t = unsafe { (*cfr.args).as_slice::<ngx_str_t>()[1] };
        // SAFETY: cycle is valid during configuration; name lives in the conf pool.
        if name.len == 0 || unsafe { ngx_conf_full_name(cfr.cycle, &mut name, 0) } != 0 {
            return conf_error(cf, &invalid(NAME, "", "expected the path of a folder"));
        }
        let path = String::from_utf8_lossy(name.as_bytes()).into_owned();
        if fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
            return conf_error(cf, &invalid(NAME, &path, "it is not a folder"));
        }
        conf.index_store = Some((path, max));
        ngx::core::NGX_CONF_OK
    })
}

/// `origin_ingest_memory`, `origin_ingest_max_fragment`, `origin_ingest_fragment_timeout`:
/// checked and kept by the core's [`IngestSettings`].
unsafe extern "C" fn set_ingest(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: nginx passes the configuration being parsed and our main conf.
        let (cfr, conf) = unsafe { (&mut *cf, &mut *(conf as *mut MainConf)) };
        let args = match conf_args(cfr) {
            Ok(a) => a,
            Err(e) => return conf_error(cf, &e),
        };
        let [name, value] = args.as_slice() else {
            return conf_error(cf, "invalid number of arguments");
        };
        match conf.ingest.set(name, value) {
            Ok(()) => ngx::core::NGX_CONF_OK,
            Err(e) => conf_error(cf, &e),
        }
    })
}

unsafe extern "C" fn set_thread_pool(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: nginx passes the configuration being parsed and our main conf.
        let (cfr, conf) = unsafe { (&mut *cf, &mut *(conf as *mut MainConf)) };
        const NAME: &str = "origin_thread_pool";
        if conf.thread_pool_name.is_some() {
            return conf_error(cf, &duplicate(NAME));
        }
        let args = match conf_args(cfr) {
            Ok(a) => a,
            Err(e) => return conf_error(cf, &e),
        };
        match args.as_slice() {
            [_, name] if !name.is_empty() => {
                conf.thread_pool_name = Some(name.to_string());
                ngx::core::NGX_CONF_OK
            }
            _ => conf_error(cf, &invalid(NAME, "", "expected the name of a thread pool")),
        }
    })
}

/// Registers the thread pool blocking work runs on, once: the first location that can ingest
/// or change publishing points asks for it (nginx starts a pool's threads only when some
/// module registered it).
///
/// # Safety
/// `cf` is the configuration being merged.
unsafe fn want_thread_pool(cf: *mut ngx_conf_t) -> Result<(), String> {
    // SAFETY: during configuration our module's main conf slot holds a MainConf.
    let main = unsafe { (*cf).http_main_conf_unchecked::<MainConf>(crate::module()) };
    let Some(mut main) = main else {
        return Err("no http configuration".into());
    };
    // SAFETY: the pointer came from nginx's configuration context and is valid.
    let main = unsafe { main.as_mut() };
    #[cfg(ngx_feature = "threads")]
    if main.thread_pool.is_null() {
        // SAFETY: per this function's contract.
        main.thread_pool =
            unsafe { crate::ffi::offload::add_pool(cf, main.thread_pool_name.as_deref()) }
                .map_err(|e| e.to_string())?;
    }
    #[cfg(not(ngx_feature = "threads"))]
    if main.thread_pool_name.is_some() {
        return Err("\"origin_thread_pool\" needs nginx built with --with-threads".into());
    }
    Ok(())
}

/// The thread pool blocking work of `r` runs on (see `origin_thread_pool`).
pub fn thread_pool(
    r: &ngx::ffi::ngx_http_request_t,
) -> Result<crate::ffi::offload::ThreadPool, crate::ffi::OriginError> {
    #[cfg(ngx_feature = "threads")]
    {
        main_conf(r)
            .map(|c| c.thread_pool)
            .filter(|p| !p.is_null())
            .ok_or(crate::ffi::OriginError::Internal(
                "no thread pool for blocking work",
            ))
    }
    #[cfg(not(ngx_feature = "threads"))]
    {
        let _ = r;
        Ok(())
    }
}

/// The `http`-level configuration a request runs under.
pub fn main_conf(r: &ngx::ffi::ngx_http_request_t) -> Option<&MainConf> {
    // SAFETY: our module's slot in the request's main_conf array holds a MainConf.
    unsafe {
        r.http_main_conf_unchecked::<MainConf>(crate::module())
            .map(|p| &*p.as_ptr())
    }
}

/// What live ingest may hold, as the `http` block sets it (defaults when unset).
pub fn ingest_settings(r: &ngx::ffi::ngx_http_request_t) -> IngestSettings {
    main_conf(r).map(|c| c.ingest).unwrap_or_default()
}

/// The license file must be a readable, non-empty regular file. Its content is not enforced.
fn check_license_file(path: &str) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let content = fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if content.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    Ok(())
}

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    entry::guard_conf_ptr(cf, || {
        // SAFETY: cf is valid while the configuration is read; its pool outlives the conf.
        let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
        pool.allocate(MainConf::default()) as *mut c_void
    })
}

pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    entry::guard_conf_ptr(cf, || {
        // SAFETY: as in create_main_conf.
        let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
        pool.allocate(LocConf::default()) as *mut c_void
    })
}

pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    entry::guard_conf(cf, || {
        // SAFETY: both pointers are location confs created by create_loc_conf.
        let (prev, conf) = unsafe { (&*(prev as *const LocConf), &mut *(conf as *mut LocConf)) };
        if conf.drm_overrides.is_none() {
            conf.drm_overrides = prev.drm_overrides.clone();
        }
        match conf.settings.merge(&prev.settings) {
            Ok(()) => {
                // SAFETY: during merge cf->ctx holds the confs of the location being merged.
                unsafe { inherit_handler(cf, conf) };
                if conf.settings.may_write_archives() {
                    // SAFETY: cf is the configuration being merged.
                    if let Err(e) = unsafe { want_thread_pool(cf) } {
                        return conf_error(cf, &e);
                    }
                }
                ngx::core::NGX_CONF_OK
            }
            Err((message, at)) => {
                let text = format!("{message} in {}:{}", at.file, at.line);
                // SAFETY: cf->log is valid during configuration. The position is the
                // directive's own, not the end of the block merge runs at.
                unsafe {
                    ngx_log_error_core(
                        NGX_LOG_EMERG as ngx_uint_t,
                        (*cf).log,
                        0,
                        c"%*s".as_ptr(),
                        text.len(),
                        text.as_ptr(),
                    )
                };
                ngx::core::NGX_CONF_ERROR
            }
        }
    })
}

/// The blocks nginx makes inside a location, `limit_except` and `if`, get their own core
/// location conf without a content handler: requests they take (a PUT a `limit_except
/// GET HEAD POST` lets through, say) would go to the static module. They take ours when the
/// location they are in hands requests to the module or is the status endpoint.
///
/// # Safety
/// `cf` is the configuration being merged, its context that of `conf`'s location.
unsafe fn inherit_handler(cf: *mut ngx_conf_t, conf: &LocConf) {
    let handler = handler_of(conf.settings.content_handler());
    if handler.is_none() {
        return;
    }
    // SAFETY: per this function's contract.
    let clcf = unsafe {
        (*cf).http_location_conf_unchecked::<ngx_http_core_loc_conf_t>(&*ptr::addr_of!(
            ngx_http_core_module
        ))
    };
    if let Some(mut clcf) = clcf {
        // SAFETY: the pointer came from nginx's configuration context and is valid.
        let clcf = unsafe { clcf.as_mut() };
        if clcf.noname() != 0 && clcf.handler.is_none() {
            clcf.handler = handler;
        }
    }
}

/// Largest response one fetch collects when the location does not set
/// `subrequest_output_buffer_size` (`ism_proxy_pass` sets it): larger reads are split.
pub const FETCH_MAX_BYTES: usize = 16 << 20;

/// An nginx content handler.
pub type Handler = unsafe extern "C" fn(*mut ngx::ffi::ngx_http_request_t) -> ngx_int_t;

/// The module's content handlers, which live in the layers above this one: the module's
/// statics hand them down ([`set_content_handlers`]) before the configuration is read.
pub struct ContentHandlers {
    pub packaging: Handler,
    pub status_endpoint: Handler,
}

static CONTENT_HANDLERS: std::sync::OnceLock<&'static ContentHandlers> = std::sync::OnceLock::new();

/// Gives the configuration the content handlers its directives install.
pub fn set_content_handlers(handlers: &'static ContentHandlers) {
    // The same statics every time: a reload finds them set already.
    let _ = CONTENT_HANDLERS.set(handlers);
}

/// The nginx content handler of each of the module's handlers.
fn handler_of(handler: Option<ContentHandler>) -> ngx::ffi::ngx_http_handler_pt {
    let handlers = CONTENT_HANDLERS.get()?;
    Some(match handler? {
        ContentHandler::Packaging => handlers.packaging,
        ContentHandler::StatusEndpoint => handlers.status_endpoint,
    })
}

pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    entry::guard_conf_status(cf, || {
        crate::ffi::log::install();
        // SAFETY: called by nginx with the configuration being read.
        if unsafe { crate::settings::metrics::add_zone(cf) }.is_err() {
            return ngx::ffi::NGX_ERROR as ngx_int_t;
        }
        ngx::ffi::NGX_OK as ngx_int_t
    })
}

/// The location configuration of a request.
/// The location's `origin_drm` options, their values evaluated for this request (an empty
/// value leaves the server manifest's option in force).
pub fn drm_overrides(
    r: &mut ngx::ffi::ngx_http_request_t,
) -> Result<Vec<origin_core::ism::Meta>, crate::ffi::OriginError> {
    let Some(list) = loc_conf(r).and_then(|c| c.drm_overrides.clone()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for o in list {
        // SAFETY: the complex value was compiled at configuration time and lives as long as
        // the configuration; the result points into the request pool.
        let value = unsafe {
            let mut value: ngx_str_t = std::mem::zeroed();
            if ngx::ffi::ngx_http_complex_value(r, o.value, &mut value)
                != ngx::ffi::NGX_OK as ngx_int_t
            {
                return Err(crate::ffi::OriginError::Internal(
                    "an origin_drm value could not be evaluated",
                ));
            }
            crate::ffi::strings::bytes(&value).to_vec()
        };
        out.push(origin_core::ism::Meta {
            name: o.name,
            content: String::from_utf8_lossy(&value).into_owned(),
        });
    }
    Ok(out)
}

pub fn loc_conf(r: &ngx::ffi::ngx_http_request_t) -> Option<&LocConf> {
    // SAFETY: our module's slot in the request's loc_conf array holds a LocConf.
    unsafe {
        r.http_location_conf_unchecked::<LocConf>(crate::module())
            .map(|p| &*p.as_ptr())
    }
}

/// The request's `ngx_http_core_module` location configuration (`root`, `send_timeout`,
/// `disable_symlinks`, `open_file_cache`, …). It lives as long as the configuration cycle,
/// longer than any request.
pub fn core_loc_conf(
    r: &ngx::ffi::ngx_http_request_t,
) -> Option<&'static ngx_http_core_loc_conf_t> {
    // SAFETY: the core module's slot of every location configuration holds its loc conf.
    unsafe {
        r.http_location_conf_unchecked::<ngx_http_core_loc_conf_t>(&*ptr::addr_of!(
            ngx_http_core_module
        ))
        .map(|p| &*p.as_ptr())
    }
}
