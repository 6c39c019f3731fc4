//! ngx_http_origin_module: the nginx glue of ngx-origin.
//!
//! This crate is the only home of `extern "C"`, raw pointers and ngx types; media logic and
//! every decision live in `origin-core`. Its modules form layers, each using only the ones
//! below it (`scripts/check_layers.py` keeps it so; docs/DESIGN.md draws them):
//!
//! 1. [`ffi`]: strings, pool values and buffers, the typed request context, the request body,
//!    time, the panic fence, logging, the thread pool;
//! 2. [`settings`]: directives and configurations, files, the worker's caches, the counters;
//! 3. [`respond`]: headers, sends, streamed bodies, errors as statuses;
//! 4. [`jobs`]: the drivers of each kind of request (local, remote, ingest, Live API, status
//!    endpoint);
//! 5. [`handler`]: the content handler, which routes each request once and picks its job.
//!
//! This file holds only the module statics, and wires the layers together: the content
//! handlers that directives install are handed down to [`settings`] before the configuration
//! is read.
#![allow(non_upper_case_globals)]

mod ffi;
mod handler;
mod jobs;
mod respond;
mod settings;

use std::ptr::addr_of;

use ngx::ffi::{ngx_http_module_t, ngx_module_t, NGX_HTTP_MODULE};

use settings::conf;

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

/// The content handlers the module's directives install: the packaging handler and the status
/// endpoint's, from the layers above the configuration's.
static CONTENT_HANDLERS: conf::ContentHandlers = conf::ContentHandlers {
    packaging: handler::content_handler,
    status_endpoint: jobs::status_page::status_handler,
};

/// nginx's first call into the module for a configuration: the configuration layer learns the
/// content handlers before any directive is read, and the remote job registers its variable.
unsafe extern "C" fn preconfiguration(cf: *mut ngx::ffi::ngx_conf_t) -> ngx::ffi::ngx_int_t {
    ffi::fence::guard_conf_status(cf, || {
        conf::set_content_handlers(&CONTENT_HANDLERS);
        // SAFETY: nginx's preconfiguration call, with its configuration.
        unsafe { jobs::remote::add_variables(cf) }
    })
}

/// After the `http` block was read: the configuration's own set-up, then the remote job's body
/// filter (filters are installed here).
unsafe extern "C" fn postconfiguration(cf: *mut ngx::ffi::ngx_conf_t) -> ngx::ffi::ngx_int_t {
    // SAFETY: nginx's postconfiguration call, passed on.
    let rc = unsafe { conf::postconfiguration(cf) };
    if rc == ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t {
        ffi::fence::guard_conf_status(cf, || {
            // SAFETY: postconfiguration is where nginx's filters are installed.
            unsafe { jobs::remote::install_body_filter() };
            ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t
        })
    } else {
        rc
    }
}

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
    init_process: Some(settings::metrics::init_process),
    exit_process: Some(settings::caches::exit_process),
    ..ngx_module_t::default()
};

/// The module's `ngx_module_t`, for configuration and request-context look-ups.
pub(crate) fn module() -> &'static ngx_module_t {
    // SAFETY: nginx writes the module's index fields while loading the configuration, before any
    // request or configuration callback of ours runs; afterwards the static is only read.
    unsafe { &*addr_of!(ngx_http_origin_module) }
}
