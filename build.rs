//! Passes what nginx-sys learned about the target nginx (features, OS, version, build dir) to the
//! module's compiler as cfgs and env. nginx-sys must be a direct dependency for the `DEP_NGINX_*`
//! variables to reach this script.
use std::env;

fn main() {
    forward_list("FEATURES", "ngx_feature");
    forward_list("OS", "ngx_os");

    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if let Ok(version) = env::var("DEP_NGINX_VERSION_NUMBER") {
        println!("cargo::rustc-env=ORIGIN_NGINX_VERSION_NUMBER={version}");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION");
    if let Ok(version) = env::var("DEP_NGINX_VERSION") {
        println!("cargo::rustc-env=ORIGIN_NGINX_VERSION={version}");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=ORIGIN_NGINX_BUILD_DIR={dir}");
    }
}

/// `DEP_NGINX_<NAME>` is a comma-separated list; each entry becomes `cfg(<cfg>="entry")`, and the
/// accepted values come from `DEP_NGINX_<NAME>_CHECK` so `unexpected_cfgs` stays meaningful.
fn forward_list(name: &str, cfg: &str) {
    let check_var = format!("DEP_NGINX_{name}_CHECK");
    println!("cargo::rerun-if-env-changed={check_var}");
    let values = env::var(&check_var).unwrap_or_else(|_| "any()".to_string());
    println!("cargo::rustc-check-cfg=cfg({cfg}, values({values}))");
    let var = format!("DEP_NGINX_{name}");
    println!("cargo::rerun-if-env-changed={var}");
    if let Ok(list) = env::var(&var) {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            println!("cargo::rustc-cfg={cfg}=\"{item}\"");
        }
    }
}
