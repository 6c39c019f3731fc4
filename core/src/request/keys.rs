//! Keys of generated answers: the manifest cache key (what a manifest is a pure function of)
//! and strong ETags.

use super::load::Files;
use super::Request;
use crate::url::{DashTarget, HdsTarget, HlsTarget, SmoothTarget, Target};

impl Request {
    /// The key of the generated-manifest cache for this request, `None` when its answer is not
    /// cached (not a manifest, or a live MPD: it carries the time it was made, in UTCTiming).
    /// A manifest is a pure function of the request and the files' versions; other live
    /// manifests are keyed by the window's state too (an ended stream changes them without
    /// changing the fragments in the window).
    pub(super) fn manifest_cache_key(&self, files: &Files) -> Option<String> {
        if !is_manifest(&self.route.target) {
            return None;
        }
        let live_key = match &self.live_window {
            None => String::new(),
            Some((_, info))
                if !info.ended && self.route.target == Target::Dash(DashTarget::Manifest) =>
            {
                return None
            }
            Some((_, info)) => format!("{}|{}|", info.ended, info.updated_ms),
        };
        let overrides = self.overrides.iter().fold(0u64, |h, m| {
            xxhash_rust::xxh3::xxh3_64_with_seed(
                format!("{}\0{}\0", m.name, m.content).as_bytes(),
                h,
            )
        });
        let mut key = format!(
            "{}|{}|{:?}|{:?}|{}|{overrides:x}|{live_key}",
            self.route.manifest_path,
            files.modified,
            self.route.target,
            self.route.options,
            self.iss_pass_through
        );
        for b in &files.versions {
            key.push(char::from(b'a' + (b >> 4)));
            key.push(char::from(b'a' + (b & 15)));
        }
        Some(key)
    }
}

/// Whether the target is a manifest or playlist (cached per worker).
pub(super) fn is_manifest(target: &Target) -> bool {
    matches!(
        target,
        Target::Smooth(SmoothTarget::Manifest)
            | Target::Dash(DashTarget::Manifest)
            | Target::Hls(HlsTarget::Master)
            | Target::Hls(HlsTarget::Playlist { .. })
            | Target::Hds(HdsTarget::Manifest)
    )
}

/// A strong ETag: XXH3-128 (the xxHash specification's, stable across builds and Rust
/// versions) over the parts, each length-prefixed so that parts cannot run into each other.
pub fn etag(parts: &[&[u8]]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("\"{:032x}\"", h.digest128())
}
