#![allow(non_upper_case_globals)]
use ngx::ffi::{ngx_http_module_t, ngx_module_t, NGX_HTTP_MODULE};
static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: None,
    merge_loc_conf: None,
};
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_origin_module);
#[used]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_origin_module: ngx_module_t = ngx_module_t {
    ctx: std::ptr::addr_of!(MODULE_CTX) as _,
    type_: NGX_HTTP_MODULE as _,
    ..ngx_module_t::default()
};
