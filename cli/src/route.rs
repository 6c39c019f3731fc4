//! `ismtool route URL`.

use origin_core::url::{Route, RouteOptions};

pub fn run(url: &str, skip_rewrite: bool) -> Result<(), String> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    // nginx decodes the path once before the module sees it; do the same here.
    let path = percent_decode(path).ok_or_else(|| {
        format!("{url}: malformed percent-encoding in the path (nginx answers 400)")
    })?;
    let opts = RouteOptions {
        legacy_forms: !skip_rewrite,
    };
    let r = Route::parse(&path, query.as_bytes(), opts).map_err(|e| {
        let e = origin_core::Error::from(e);
        format!("{url}: {e} (HTTP {})", e.status())
    })?;
    println!("server manifest: {} ({:?})", r.manifest_path, r.kind);
    println!("target:          {:?}", r.target);
    println!("options:         {:?}", r.options);
    Ok(())
}

/// `s` percent-decoded once, as nginx decodes a request path; `None` when malformed.
pub(crate) fn percent_decode(s: &str) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("/a%20b").unwrap(), b"/a b");
        assert!(percent_decode("/a%2").is_none());
        assert!(percent_decode("/a%+1").is_none());
    }
}
