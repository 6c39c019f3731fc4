//! ismtool: the operator's companion to ngx-origin.
//!
//! `ismtool route URL` shows how the origin reads a request URL: which server manifest, which
//! format and target, which options, or why it is refused and with which status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use origin_core::url::{Route, RouteOptions};

#[derive(Parser)]
#[command(
    name = "ismtool",
    version,
    about = "ngx-origin server-manifest and media tool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show how the origin routes a request URL (path and optional ?query).
    Route {
        /// The request path as a client sends it, e.g. /vod/video.ism/QualityLevels(800000)/Fragments(video=0)
        url: String,
        /// Refuse the legacy Manifest(format=…) forms, as with `usp_skip_rewrite`.
        #[arg(long)]
        skip_rewrite: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Route { url, skip_rewrite } => route(&url, skip_rewrite),
    }
}

fn route(url: &str, skip_rewrite: bool) -> ExitCode {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    // nginx decodes the path once before the module sees it; do the same here.
    let Some(path) = percent_decode(path) else {
        eprintln!("ismtool: {url}: malformed percent-encoding in the path (nginx answers 400)");
        return ExitCode::FAILURE;
    };
    let opts = RouteOptions {
        legacy_forms: !skip_rewrite,
    };
    match Route::parse(&path, query.as_bytes(), opts) {
        Ok(r) => {
            println!("server manifest: {} ({:?})", r.manifest_path, r.kind);
            println!("target:          {:?}", r.target);
            println!("options:         {:?}", r.options);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ismtool: {url}: {e} (HTTP {})", e.http_status());
            ExitCode::FAILURE
        }
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
