//! Directives (COMPAT.md §1) and their typed configuration.
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
    NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::http::HttpModuleConfExt;
use ngx::ngx_string;
use origin_core::config::{
    parse_switch, validate_s3_credential, validate_s3_region, ProxyPassUrl, StatusMapping,
};

use crate::entry;

/// Where a directive was written, for errors found after its block was read (merge time).
#[derive(Debug, Clone, Default)]
pub struct Position {
    pub file: String,
    pub line: usize,
}

/// A value together with where it was configured.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub at: Position,
}

/// `http`-level configuration.
#[derive(Debug, Default)]
pub struct MainConf {
    /// `usp_license_key`: the key file's full path. Accepted for compatibility; not enforced.
    pub license_key: Option<String>,
    /// `origin_cache_size`: bytes of parsed indexes, manifests and segment tables each worker
    /// keeps (ours; the commercial module has no equivalent).
    pub cache_size: Option<usize>,
}

/// S3 request signing for sources under a location.
#[derive(Debug, Clone, Default)]
pub struct S3Conf {
    pub access_key: Option<Setting<String>>,
    pub secret_key: Option<Setting<String>>,
    pub region: Option<Setting<String>>,
    pub security_token: Option<Setting<String>>,
}

/// `location`-level configuration. After merge every switch is `Some`.
#[derive(Debug, Clone, Default)]
pub struct LocConf {
    pub handle_ism: Option<bool>,
    pub iss_pass_through: Option<bool>,
    pub prefer_static: Option<bool>,
    /// `origin_static_root`: where `usp_prefer_static` looks for files, in place of the
    /// location's `root` or `alias` (a tree that mirrors it, as `ismtool package` writes one);
    /// ours.
    pub static_root: Option<String>,
    pub skip_rewrite: Option<bool>,
    pub handle_f4f: Option<bool>,
    pub handle_api: Option<bool>,
    pub disable_mmap: Option<bool>,
    pub dynamic_time_shift_buffer_depth: Option<bool>,
    /// `origin_live_auto_create`: an encoder's first push creates an unknown channel (the
    /// default); off, only channels made beforehand (an `.isml` file, or PUT) take ingest.
    pub live_auto_create: Option<bool>,
    pub proxy_pass: Option<Setting<ProxyPassUrl>>,
    /// nginx's proxy content handler, set up by `ism_proxy_pass` on this location: fetch
    /// subrequests go to it.
    pub proxy_handler: Option<crate::remote::ProxyHandler>,
    /// The location's name (its prefix), which fetch subrequests' paths start with.
    pub location_prefix: String,
    /// `origin_remote_ttl`: seconds a remote object's version is trusted before a request
    /// checks it again (ours; the commercial module has no equivalent).
    pub remote_ttl: Option<u64>,
    pub s3: S3Conf,
    /// `origin_status_map`: error statuses answered as others (ours; the commercial module's
    /// users do this with Lua). `None` until set here or inherited.
    pub status_map: Option<Vec<StatusMapping>>,
    /// `origin_status`: this location answers with the counters of the status endpoint.
    pub status_endpoint: Option<bool>,
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

impl LocConf {
    /// A switch's merged value (`false` when never set anywhere).
    pub fn on(flag: Option<bool>) -> bool {
        flag.unwrap_or(false)
    }

    fn switch_mut(&mut self, name: &str) -> Option<&mut Option<bool>> {
        Some(match name {
            "usp_handle_ism" => &mut self.handle_ism,
            "usp_iss_pass_through" => &mut self.iss_pass_through,
            "usp_prefer_static" => &mut self.prefer_static,
            "usp_skip_rewrite" => &mut self.skip_rewrite,
            "usp_handle_f4f" => &mut self.handle_f4f,
            "usp_handle_api" => &mut self.handle_api,
            "usp_disable_mmap" => &mut self.disable_mmap,
            "usp_dynamic_time_shift_buffer_depth" => &mut self.dynamic_time_shift_buffer_depth,
            "origin_live_auto_create" => &mut self.live_auto_create,
            _ => return None,
        })
    }

    fn switch_value(&self, name: &str) -> Option<bool> {
        match name {
            "usp_handle_ism" => self.handle_ism,
            "usp_handle_f4f" => self.handle_f4f,
            "usp_handle_api" => self.handle_api,
            _ => None,
        }
    }

    fn s3_mut(&mut self, name: &str) -> Option<&mut Option<Setting<String>>> {
        Some(match name {
            "s3_access_key" => &mut self.s3.access_key,
            "s3_secret_key" => &mut self.s3.secret_key,
            "s3_region" => &mut self.s3.region,
            "s3_security_token" => &mut self.s3.security_token,
            _ => return None,
        })
    }

    /// Applies one directive of this location. `args` excludes the directive name.
    fn set(&mut self, name: &str, args: &[&str], at: Position) -> Result<(), String> {
        if let Some(slot) = self.switch_mut(name) {
            if slot.is_some() {
                return Err(duplicate(name));
            }
            let value = match args {
                [] => true,
                [v] => parse_switch(v).map_err(|e| invalid(name, v, &e.to_string()))?,
                _ => {
                    return Err(format!(
                        "invalid number of arguments in \"{name}\" directive"
                    ))
                }
            };
            *slot = Some(value);
            if value && HANDLER_SWITCHES.contains(&name) && self.status_endpoint.is_some() {
                return Err(both_handlers(name));
            }
            return Ok(());
        }
        if name == "origin_status" {
            if self.status_endpoint.is_some() {
                return Err(duplicate(name));
            }
            if let Some(other) = HANDLER_SWITCHES
                .into_iter()
                .find(|s| self.switch_value(s) == Some(true))
            {
                return Err(both_handlers(other));
            }
            self.status_endpoint = Some(true);
            return Ok(());
        }
        if name == "origin_status_map" {
            let mapping =
                StatusMapping::parse(args).map_err(|e| invalid(name, &args.join(" "), &e.0))?;
            let maps = self.status_map.get_or_insert_with(Vec::new);
            if maps
                .iter()
                .any(|m| m.from == mapping.from && m.tokens == mapping.tokens)
            {
                return Err(format!(
                    "\"{name}\" maps {} twice for the same tokens",
                    mapping.from
                ));
            }
            maps.push(mapping);
            return Ok(());
        }
        let [value] = args else {
            return Err(format!(
                "invalid number of arguments in \"{name}\" directive"
            ));
        };
        if name == "origin_static_root" {
            if self.static_root.is_some() {
                return Err(duplicate(name));
            }
            if !value.starts_with('/') {
                return Err(invalid(name, value, "expected an absolute path"));
            }
            self.static_root = Some(value.to_string());
            return Ok(());
        }
        if name == "origin_remote_ttl" {
            if self.remote_ttl.is_some() {
                return Err(duplicate(name));
            }
            let secs = origin_core::config::parse_seconds(value)
                .map_err(|e| invalid(name, value, &e.0))?;
            self.remote_ttl = Some(secs);
            return Ok(());
        }
        if name == "ism_proxy_pass" {
            if self.proxy_pass.is_some() {
                return Err(duplicate(name));
            }
            let url = ProxyPassUrl::parse(value).map_err(|e| invalid(name, value, &e.0))?;
            self.proxy_pass = Some(Setting { value: url, at });
            return Ok(());
        }
        let Some(slot) = self.s3_mut(name) else {
            return Err(format!("unknown directive \"{name}\""));
        };
        if slot.is_some() {
            return Err(duplicate(name));
        }
        let checked = if name == "s3_region" {
            validate_s3_region(value)
        } else {
            validate_s3_credential(value)
        };
        // Secrets are never echoed into logs.
        let shown = if name == "s3_region" { value } else { "…" };
        checked.map_err(|e| invalid(name, shown, &e.0))?;
        *slot = Some(Setting {
            value: value.to_string(),
            at,
        });
        Ok(())
    }

    /// Inherits unset values from the enclosing level and checks the combination.
    fn merge(&mut self, prev: &LocConf) -> Result<(), (String, Position)> {
        for (this, parent) in [
            (&mut self.handle_ism, prev.handle_ism),
            (&mut self.iss_pass_through, prev.iss_pass_through),
            (&mut self.prefer_static, prev.prefer_static),
            (&mut self.skip_rewrite, prev.skip_rewrite),
            (&mut self.handle_f4f, prev.handle_f4f),
            (&mut self.handle_api, prev.handle_api),
            (&mut self.disable_mmap, prev.disable_mmap),
            (
                &mut self.dynamic_time_shift_buffer_depth,
                prev.dynamic_time_shift_buffer_depth,
            ),
        ] {
            *this = Some(this.or(parent).unwrap_or(false));
        }
        if self.remote_ttl.is_none() {
            self.remote_ttl = prev.remote_ttl;
        }
        if self.static_root.is_none() {
            self.static_root = prev.static_root.clone();
        }
        // Only for the `limit_except` and `if` blocks inside the location (see
        // `inherit_handler`): nested named locations have handlers of their own.
        if self.status_endpoint.is_none() {
            self.status_endpoint = prev.status_endpoint;
        }
        // Like nginx's own list directives: a location that maps nothing inherits all maps.
        if self.status_map.is_none() {
            self.status_map = prev.status_map.clone();
        }
        if self.drm_overrides.is_none() {
            self.drm_overrides = prev.drm_overrides.clone();
        }
        // On unless turned off, here or above.
        self.live_auto_create = Some(
            self.live_auto_create
                .or(prev.live_auto_create)
                .unwrap_or(true),
        );
        // Like `proxy_pass`, `ism_proxy_pass` is not inherited: nginx's proxy module, which
        // does the reads, is configured in the location that names it and nowhere else.
        // S3 credentials travel as a set: a location that sets any of them does not inherit the
        // others, so keys from two places are never mixed into one signature.
        let s3 = &self.s3;
        let sets_any = s3.access_key.is_some()
            || s3.secret_key.is_some()
            || s3.region.is_some()
            || s3.security_token.is_some();
        if !sets_any {
            self.s3 = prev.s3.clone();
        }
        let s3 = &self.s3;
        match (&s3.access_key, &s3.secret_key) {
            (Some(a), None) => {
                return Err((
                    "\"s3_access_key\" is set without \"s3_secret_key\"".into(),
                    a.at.clone(),
                ))
            }
            (None, Some(s)) => {
                return Err((
                    "\"s3_secret_key\" is set without \"s3_access_key\"".into(),
                    s.at.clone(),
                ))
            }
            (None, None) => {
                if let Some(t) = &s3.security_token {
                    return Err((
                        "\"s3_security_token\" is set without \"s3_access_key\" and \"s3_secret_key\""
                            .into(),
                        t.at.clone(),
                    ));
                }
            }
            (Some(_), Some(_)) => {}
        }
        Ok(())
    }
}

/// The switches that make a location's content handler the module's packaging handler.
const HANDLER_SWITCHES: [&str; 3] = ["usp_handle_ism", "usp_handle_f4f", "usp_handle_api"];

/// A location has one content handler: the packaging module's or the status endpoint's.
fn both_handlers(switch: &str) -> String {
    format!(
        "\"{switch}\" and \"origin_status\" in one location: a location either packages or reports"
    )
}

fn duplicate(name: &str) -> String {
    format!("\"{name}\" directive is duplicate")
}

fn invalid(name: &str, value: &str, why: &str) -> String {
    format!("invalid value \"{value}\" in \"{name}\" directive, {why}")
}

/// Every directive of the module, terminated by nginx's empty command.
pub static mut COMMANDS: [ngx_command_t; 22] = [
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
    ngx_command_t {
        name: ngx_string!("usp_license_key"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_license_key),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("origin_cache_size"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_cache_size),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

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
        if let Err(e) = conf.set(name, values, conf_position(cfr)) {
            return conf_error(cf, &e);
        }
        let handler: ngx::ffi::ngx_http_handler_pt = if *name == "origin_status" {
            Some(crate::metrics::status_handler)
        } else if HANDLER_SWITCHES.contains(name) && conf.switch_value(name) == Some(true) {
            Some(crate::handler::content_handler)
        } else {
            None
        };
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
    use origin_core::drm::{GROUP_OPTIONS, PLAYOUT_OPTIONS};
    let [name, _] = values else {
        return Err("invalid number of arguments in \"origin_drm\" directive".into());
    };
    if !GROUP_OPTIONS.contains(name) && !PLAYOUT_OPTIONS.contains(name) {
        return Err(format!(
            "unknown option \"{name}\" in \"origin_drm\" directive, expected one of {}",
            GROUP_OPTIONS
                .iter()
                .chain(PLAYOUT_OPTIONS.iter())
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let overrides = conf.drm_overrides.get_or_insert_with(Vec::new);
    if overrides.iter().any(|o| o.name == *name) {
        return Err(format!("\"origin_drm\" sets {name} twice"));
    }
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
            (*clcf).subrequest_output_buffer_size = crate::remote::FETCH_MAX_BYTES;
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

/// The `http`-level configuration a request runs under.
pub fn main_conf(r: &ngx::ffi::ngx_http_request_t) -> Option<&MainConf> {
    // SAFETY: our module's slot in the request's main_conf array holds a MainConf.
    unsafe {
        r.http_main_conf_unchecked::<MainConf>(crate::module())
            .map(|p| &*p.as_ptr())
    }
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
        match conf.merge(prev) {
            Ok(()) => {
                // SAFETY: during merge cf->ctx holds the confs of the location being merged.
                unsafe { inherit_handler(cf, conf) };
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
    let packages = [conf.handle_ism, conf.handle_f4f, conf.handle_api]
        .into_iter()
        .any(LocConf::on);
    let handler: ngx::ffi::ngx_http_handler_pt = if packages {
        Some(crate::handler::content_handler)
    } else if LocConf::on(conf.status_endpoint) {
        Some(crate::metrics::status_handler)
    } else {
        return;
    };
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

/// Registers the module's variables.
pub unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    entry::guard_conf_status(cf, || {
        let mut name = ngx_string!("origin_fetch_range");
        // SAFETY: called by nginx with the configuration being read; the variable lives in the
        // configuration pool. Not cacheable: subrequests share their parent's variable values,
        // and every fetch has its own range.
        unsafe {
            let v = ngx::ffi::ngx_http_add_variable(
                cf,
                &mut name,
                ngx::ffi::NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t,
            );
            if v.is_null() {
                return ngx::ffi::NGX_ERROR as ngx_int_t;
            }
            (*v).get_handler = Some(crate::remote::fetch_range_variable);
        }
        ngx::ffi::NGX_OK as ngx_int_t
    })
}

pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    entry::guard_conf_status(cf, || {
        crate::log::install();
        // SAFETY: postconfiguration is where nginx's filters are installed.
        unsafe { crate::remote::install_body_filter() };
        // SAFETY: called by nginx with the configuration being read.
        if unsafe { crate::metrics::add_zone(cf) }.is_err() {
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
) -> Result<Vec<origin_core::ism::Meta>, crate::status::OriginError> {
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
                return Err(crate::status::OriginError::Internal(
                    "an origin_drm value could not be evaluated",
                ));
            }
            crate::driver::ngx_str(&value).to_vec()
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
