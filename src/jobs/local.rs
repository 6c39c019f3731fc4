//! The driver of the core's request engine: it satisfies each need the engine states (a file's
//! identity and bytes) from local files, at once, and sends the answer: manifests from memory,
//! fragments as generated header bytes followed by file ranges, repackaged segments in pieces.
//! A live channel's archive is read here too: its records before the request runs, with the
//! clock, and its data files when the engine asks for them.

use ngx::ffi::{ngx_http_request_t, ngx_int_t};
use origin_core::config::location::LocationSettings;
use origin_core::request::{Body, Need, Request, Step};
use origin_core::url::Route;

use crate::ffi::OriginError;
use crate::respond::answer::send;
use crate::settings::files::Files;

/// Serves a routed request for a presentation whose server manifest is the file `file`.
///
/// A low-latency live request for what the channel does not hold yet is held (see
/// [`crate::ffi::watch`]) and continues with `resume`, which serves it again with its
/// deadline as `wait_until`.
pub fn serve(
    r: &mut ngx_http_request_t,
    route: Route,
    file: String,
    root: String,
    disable_mmap: bool,
    wait_until: Option<i64>,
    resume: crate::ffi::watch::Resume,
) -> Result<ngx_int_t, OriginError> {
    crate::settings::caches::size_for(r);
    let query = String::from_utf8_lossy(crate::ffi::strings::bytes(&r.args)).into_owned();
    let live = route.kind == origin_core::url::ManifestKind::Live;
    let rules = if live {
        crate::settings::files::live_open_rules(r, &file)?
    } else {
        origin_core::live::confined::OpenRules::default()
    };
    let on = |switch: fn(&LocationSettings) -> Option<bool>| {
        crate::settings::conf::loc_conf(r)
            .is_some_and(|c| LocationSettings::on(switch(&c.settings)))
    };
    let pass_through = on(|c| c.iss_pass_through);
    let mut request = if live {
        // The archive as the location's file rules let it be reached (disable_symlinks; a
        // file where its folder should be): refused before anything in it is read. The
        // `.isml` itself is opened by `Files` below, under the same rules.
        rules.check_folder(&origin_core::live::archive::archive_dir(
            std::path::Path::new(&file),
        ))?;
        // The clock is read here, once: the engine decides from the time it is given.
        let now = crate::ffi::time::now_ms();
        let channel = crate::settings::caches::channel(&file, now)?;
        origin_core::live::limits::check_archive_files(&rules, &channel)?;
        let dynamic = on(|c| c.dynamic_time_shift_buffer_depth);
        Request::new(route, file, &query)
            .with_live(channel, now, dynamic)
            .with_wait_until(wait_until)
            .with_streamed(crate::ffi::watch::streamed(r))
    } else {
        Request::new(route, file, &query)
    }
    .with_iss_pass_through(pass_through)
    .with_root(root)
    .with_overrides(crate::settings::conf::drm_overrides(r)?);
    let mut files = Files::of(r, disable_mmap);
    loop {
        match crate::settings::caches::with(|c| request.step(c))? {
            Step::Done(answer) if matches!(answer.body, Body::Growing { .. }) => {
                let max_held = crate::settings::conf::ingest_settings(r).max_held();
                return crate::respond::growing::send(r, answer, resume, max_held);
            }
            Step::Done(answer) => return send(r, answer),
            Step::Need(Need::Open(paths)) => {
                for path in paths {
                    let opened = match request.confined_to_root(&path) {
                        Some(root) => crate::settings::files::check_inside(root, &path)
                            .and_then(|()| files.opened_source(&path)),
                        None => files.opened_source(&path),
                    };
                    request.supply_open(&path, opened);
                }
            }
            Step::Need(Need::Wait(wait)) => {
                let max_held = crate::settings::conf::ingest_settings(r).max_held();
                crate::ffi::watch::hold(r, &wait.watch, wait.until_ms, resume, max_held)?;
                return Ok(ngx::ffi::NGX_DONE as ngx_int_t);
            }
            // A local file is supplied whole with its identity; a read it does not cover means
            // the file changed under the request.
            Step::Need(Need::Read(reads)) => {
                let path = reads.first().map(|r| r.path.clone()).unwrap_or_default();
                return Err(OriginError::Source(
                    origin_core::source::SourceError::Changed { name: path },
                ));
            }
        }
    }
}
