//! The static tree on disk: where each URL's file goes, and writing it there without ever
//! leaving the output directory.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use origin_core::body::write_body;
use origin_core::request::Body;

/// The output directory: a request path `/<manifest>/<virtual path>` is the file
/// `DIR/<manifest>/<virtual path>`, as nginx maps a URL below the manifest's parent to a file.
pub struct Tree {
    /// DIR, symbolic links resolved.
    root: PathBuf,
    /// Directories made and found inside `root`.
    checked: HashSet<PathBuf>,
}

impl Tree {
    /// Makes DIR (and its parents) if need be. `top` is the server manifest's file name, the
    /// tree's one entry in DIR: it must be a directory or not exist.
    pub fn create(dir: &Path, top: &str) -> Result<Tree, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let root = fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let entry = root.join(top);
        if fs::symlink_metadata(&entry).is_ok_and(|m| !m.is_dir()) {
            return Err(format!(
                "{}: exists and is not a directory (the server manifest itself?): the tree's \
                 top directory has the server manifest's name, so write it to another \
                 directory and point origin_static_root at it",
                entry.display()
            ));
        }
        Ok(Tree {
            root,
            checked: HashSet::new(),
        })
    }

    /// The file of a request path (decoded, as nginx hands it on): DIR followed by the path's
    /// segments. Empty, `.` and `..` segments are refused (the router refuses them too).
    pub fn file_for(&self, path: &str) -> Result<PathBuf, String> {
        let relative = path
            .strip_prefix('/')
            .ok_or_else(|| format!("{path}: not a path from /"))?;
        let mut file = self.root.clone();
        for seg in relative.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\0') {
                return Err(format!("{path}: no file name maps it inside the tree"));
            }
            file.push(seg);
        }
        Ok(file)
    }

    /// Writes `body` to `file` (a name [`Tree::file_for`] gave): first to a temporary name
    /// beside it, renamed over the file once whole, so a reader never sees a partial file.
    /// Returns the bytes written.
    pub fn write(&mut self, file: &Path, body: &Body) -> Result<u64, String> {
        let dir = file
            .parent()
            .ok_or_else(|| format!("{}: no directory", file.display()))?;
        self.check_dir(dir)?;
        let name = file
            .file_name()
            .ok_or_else(|| format!("{}: no file name", file.display()))?;
        let mut part_name = name.to_os_string();
        part_name.push(".ismtool-part");
        let part = dir.join(part_name);
        let written = write_file(&part, body).map_err(|e| {
            let _ = fs::remove_file(&part);
            format!("{}: {e}", file.display())
        })?;
        fs::rename(&part, file).map_err(|e| {
            let _ = fs::remove_file(&part);
            format!("{}: {e}", file.display())
        })?;
        Ok(written)
    }

    /// Makes `dir` and checks that, symbolic links resolved, it is inside the tree.
    fn check_dir(&mut self, dir: &Path) -> Result<(), String> {
        if self.checked.contains(dir) {
            return Ok(());
        }
        if !dir.starts_with(&self.root) {
            return Err(format!(
                "{}: outside {}",
                dir.display(),
                self.root.display()
            ));
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let real = fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "{}: a symbolic link leads it outside {}",
                dir.display(),
                self.root.display()
            ));
        }
        self.checked.insert(dir.to_path_buf());
        Ok(())
    }
}

fn write_file(path: &Path, body: &Body) -> Result<u64, String> {
    let file = File::create(path).map_err(|e| e.to_string())?;
    let mut out = BufWriter::with_capacity(256 << 10, file);
    let written = write_body(body, &mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_below_the_tree_and_never_above() {
        let dir = std::env::temp_dir().join(format!("ismtool-tree-{}", std::process::id()));
        let tree = Tree::create(&dir, "m.ism").unwrap();
        let root = fs::canonicalize(&dir).unwrap();
        assert_eq!(
            tree.file_for("/m.ism/dash/m-video=1-0.dash").unwrap(),
            root.join("m.ism/dash/m-video=1-0.dash")
        );
        assert_eq!(
            tree.file_for("/m.ism/.mpd").unwrap(),
            root.join("m.ism/.mpd")
        );
        for bad in [
            "/m.ism/../x",
            "/m.ism/./x",
            "/m.ism//x",
            "m.ism/x",
            "/m.ism/a\0b",
        ] {
            assert!(tree.file_for(bad).is_err(), "{bad:?}");
        }
        // The server manifest's own name taken by a file: no tree can go there.
        fs::write(dir.join("m.ism"), b"<smil/>").unwrap();
        assert!(Tree::create(&dir, "m.ism").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
