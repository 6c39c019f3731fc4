//! ngx_http_origin_module: the nginx glue of ngx-origin.
//!
//! This crate is the only home of `extern "C"`, raw pointers and ngx types. It holds the module
//! statics (here), the directives and their typed configuration ([`conf`]), the content handler
//! ([`handler`]), responses ([`response`]), the one mapping from errors to HTTP statuses
//! ([`status`]), the bridge from `tracing` to nginx's error log ([`log`]), the counters of the
//! status endpoint ([`metrics`]) and the panic fence every entry point goes through
//! ([`entry`]). Media logic lives in `origin-core`.
#![allow(non_upper_case_globals)]

mod caches;
mod conf;
mod driver;
mod entry;
mod files;
mod handler;
mod ingest;
mod live;
mod log;
mod metrics;
mod offload;
mod remote;
mod response;
mod send;
mod status;
mod stream;

use std::ptr::addr_of;

use ngx::ffi::{ngx_http_module_t, ngx_module_t, NGX_HTTP_MODULE};

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(conf::preconfiguration),
    postconfiguration: Some(conf::postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

// The module table nginx looks up in a dynamic module built outside its build system.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_origin_module);

/// The module nginx loads (`load_module modules/ngx_http_origin_module.so;`).
#[used]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_origin_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(MODULE_CTX) as _,
    // The commands table is a static that nginx only reads; it lives for the whole process.
    commands: addr_of!(conf::COMMANDS) as *mut _,
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(metrics::init_process),
    exit_process: Some(metrics::exit_process),
    ..ngx_module_t::default()
};

/// The module's `ngx_module_t`, for configuration and request-context look-ups.
pub(crate) fn module() -> &'static ngx_module_t {
    // SAFETY: nginx writes the module's index fields while loading the configuration, before any
    // request or configuration callback of ours runs; afterwards the static is only read.
    unsafe { &*addr_of!(ngx_http_origin_module) }
}
