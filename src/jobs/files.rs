//! Whole files sent as they are, as nginx's static module sends them: progressive downloads
//! (a bare `.mp4` with no virtual path) and `usp_prefer_static`'s packaged trees.

use std::path::Path;

use ngx::ffi::{ngx_http_request_t, ngx_int_t};
use origin_core::url::Route;

use crate::ffi::OriginError;
use crate::respond::send::send_file;
use crate::settings::files::{map_to_path, map_with_root, Files};

/// A progressive download: the presentation's file itself (`video.mp4`), with Range, HEAD and
/// conditional requests answered by nginx's filters.
pub fn progressive(r: &mut ngx_http_request_t, route: &Route) -> Result<ngx_int_t, OriginError> {
    let file = map_to_path(r, route.manifest_path.len())?;
    let mut files = Files::of(r, true);
    let (fd, opened) = files.open_for_request(Path::new(&file))?;
    send_file(r, fd, &opened, &file, origin_core::mime::VIDEO_MP4)
}

/// `usp_prefer_static`: when a file exists at the requested path itself, serve it as nginx's
/// static module would instead of generating the response, with the Content-Type the
/// generated response has. `static_root` (`origin_static_root`) stands in for the location's
/// `root` or `alias`: a tree that mirrors the media's, kept apart from it because there the
/// server manifest is a file, so nothing can lie below its name.
pub fn serve_static_if_present(
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
    send_file(r, fd, &opened, &path, content_type).map(Some)
}
