//! A channel's files reached under the location's file rules, as nginx's static module reaches
//! a VOD file: opened without blocking (a FIFO or a device never holds a thread or the event
//! loop: it is refused at once), regular files only, and with `disable_symlinks` honoured.
//!
//! The glue turns the location's `disable_symlinks` into [`OpenRules`]; the core applies them
//! wherever live ingest, the Live API and live playout open or create something under the
//! document root: the `.isml`, its archive folder and the folders inside it. As nginx does it,
//! a path checked for symbolic links is walked one component at a time with `openat` and
//! `O_NOFOLLOW`, so a link swapped in between two checks is still found.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

/// nginx's `disable_symlinks` for the location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Symlinks {
    /// `disable_symlinks off` (nginx's default): links are followed.
    #[default]
    Follow,
    /// `disable_symlinks on`: no component of the path may be a symbolic link.
    Refuse,
    /// `disable_symlinks if_not_owner`: a link is followed only when it and what it points to
    /// have the same owner.
    RefuseIfNotOwner,
}

/// How live requests of a location reach files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenRules {
    pub symlinks: Symlinks,
    /// `disable_symlinks … from=<part>`: this many leading bytes of a path are not checked for
    /// links (nginx's `of.disable_symlinks_from`); 0 checks the whole path.
    pub checked_from: usize,
}

/// Why a path was refused, or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A FIFO, a device, a socket, or a folder where a file is expected (and the reverse).
    #[error("\"{path}\" is not a {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    /// A symbolic link that `disable_symlinks` forbids.
    #[error("\"{path}\" is reached through a symbolic link, which disable_symlinks forbids")]
    Symlink { path: String },
    #[error("\"{path}\": {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl FileError {
    fn io(path: &Path, source: io::Error) -> FileError {
        FileError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The file (or a folder on its way) is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The HTTP status and error token, as nginx's static module answers the same: a missing
    /// file or a path through a non-folder 404, no permission or a forbidden link 403, a file
    /// of the wrong type 404 (`[crit] … is not a regular file`), anything else 500.
    pub fn status_and_token(&self) -> (u16, &'static str) {
        match self {
            FileError::WrongType { .. } => (404, "NOT_A_FILE"),
            FileError::Symlink { .. } => (403, "FORBIDDEN"),
            FileError::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => (404, "NOT_FOUND"),
                Some(libc::EACCES | libc::EPERM) => (403, "FORBIDDEN"),
                Some(libc::ENOSPC | libc::EDQUOT) => (507, "INGEST_STORAGE"),
                _ => (500, "IO_ERROR"),
            },
        }
    }
}

impl From<FileError> for crate::Error {
    fn from(e: FileError) -> crate::Error {
        match e {
            FileError::WrongType { path, .. } => crate::Error::NotRegularFile { path },
            FileError::Symlink { path } => crate::Error::Forbidden { path },
            FileError::Io { path, source } => crate::Error::from_io(&path, source),
        }
    }
}

/// What is expected at the end of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Folder,
}

/// A file of `file_type` at `path` where a `kind` is expected: fine, or the error saying what
/// it is not.
fn check_type(path: &Path, file_type: rustix::fs::FileType, kind: Kind) -> Result<(), FileError> {
    let (ok, expected) = match kind {
        Kind::File => (
            file_type == rustix::fs::FileType::RegularFile,
            "regular file",
        ),
        Kind::Folder => (file_type == rustix::fs::FileType::Directory, "folder"),
    };
    if ok {
        Ok(())
    } else {
        Err(FileError::WrongType {
            path: path.display().to_string(),
            expected,
        })
    }
}

impl OpenRules {
    /// Opens the regular file `path` for reading, without blocking.
    pub fn open_file(&self, path: &Path) -> Result<File, FileError> {
        let fd = self.open(path, Kind::File)?;
        Ok(File::from(fd))
    }

    /// The whole regular file `path`, refused past `limit` bytes (as the file grows or not).
    pub fn read_file(&self, path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
        use std::io::Read;
        let file = self.open_file(path)?;
        let mut bytes = Vec::new();
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::io(path, e))?;
        if bytes.len() > limit {
            return Err(FileError::io(
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {limit} bytes"),
                ),
            ));
        }
        Ok(bytes)
    }

    /// Checks that `path`, when it is there, is a folder reached under the rules: true when
    /// it is, false when it is not there.
    pub fn check_folder(&self, path: &Path) -> Result<bool, FileError> {
        match self.check(path, Kind::Folder) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks that `path`, when it is there, is a regular file reached under the rules: true
    /// when it is, false when it is not there.
    pub fn check_file(&self, path: &Path) -> Result<bool, FileError> {
        match self.check(path, Kind::File) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks a channel's files: its server manifest `isml` (a regular file, when it is there)
    /// and its `archive` folder (a folder, when it is there), both reached under the rules.
    /// Neither being there is no error: what follows decides what that means.
    pub fn check_channel(&self, isml: &Path, archive: &Path) -> Result<(), FileError> {
        self.check_file(isml)?;
        self.check_folder(archive)?;
        Ok(())
    }

    /// Checks that `path` is a `kind` reached under the rules. Where links are followed a
    /// `stat` says it, one call where an open would take three (every live request checks its
    /// archive folder); else the path is walked as [`Self::open`] walks it.
    fn check(&self, path: &Path, kind: Kind) -> Result<(), FileError> {
        if self.symlinks != Symlinks::Follow {
            return self.open(path, kind).map(drop);
        }
        let stat = rustix::fs::stat(path).map_err(|e| FileError::io(path, e.into()))?;
        check_type(
            path,
            rustix::fs::FileType::from_raw_mode(stat.st_mode),
            kind,
        )
    }

    /// Opens `path` as `kind`, non-blocking, under the rules.
    fn open(&self, path: &Path, kind: Kind) -> Result<OwnedFd, FileError> {
        let flags = match kind {
            Kind::File => OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            // The type is checked below, so a file where a folder is expected says so.
            Kind::Folder => OFlags::PATH | OFlags::CLOEXEC,
        };
        let fd = match self.symlinks {
            Symlinks::Follow => rustix::fs::open(path, flags, Mode::empty())
                .map_err(|e| FileError::io(path, e.into()))?,
            _ => self.walk(path, flags)?,
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| FileError::io(path, e.into()))?;
        check_type(
            path,
            rustix::fs::FileType::from_raw_mode(stat.st_mode),
            kind,
        )?;
        Ok(fd)
    }

    /// Opens `path` one component at a time, each with `O_NOFOLLOW` past `checked_from`.
    fn walk(&self, path: &Path, last_flags: OFlags) -> Result<OwnedFd, FileError> {
        let (start, rest) = split_unchecked(path, self.checked_from);
        let folder_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut at: OwnedFd = rustix::fs::openat(CWD, &start, folder_flags, Mode::empty())
            .map_err(|e| FileError::io(&start, e.into()))?;
        let names: Vec<&std::ffi::OsStr> = rest
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        if rest.components().any(|c| matches!(c, Component::ParentDir)) {
            // Mapped request paths never hold `..`: refuse rather than reason about one.
            return Err(FileError::io(
                path,
                io::Error::from_raw_os_error(libc::EACCES),
            ));
        }
        let mut walked = start.clone();
        for (i, name) in names.iter().enumerate() {
            walked.push(name);
            let flags = if i + 1 == names.len() {
                last_flags
            } else {
                folder_flags
            };
            at = self.open_component(&at, name, flags, &walked)?;
        }
        Ok(at)
    }

    /// One component: opened without following a link; a link found is refused, or followed
    /// when `if_not_owner` allows it.
    fn open_component(
        &self,
        at: &OwnedFd,
        name: &std::ffi::OsStr,
        flags: OFlags,
        walked: &Path,
    ) -> Result<OwnedFd, FileError> {
        match rustix::fs::openat(at, name, flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => {
                // O_PATH with O_NOFOLLOW opens a link itself rather than failing.
                let stat = rustix::fs::fstat(&fd).map_err(|e| FileError::io(walked, e.into()))?;
                if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                    != rustix::fs::FileType::Symlink
                {
                    return Ok(fd);
                }
            }
            Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
                let link = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| FileError::io(walked, e.into()))?;
                if rustix::fs::FileType::from_raw_mode(link.st_mode)
                    != rustix::fs::FileType::Symlink
                {
                    return Err(FileError::io(walked, e.into()));
                }
            }
            Err(e) => return Err(FileError::io(walked, e.into())),
        }
        // A symbolic link.
        let refused = || FileError::Symlink {
            path: walked.display().to_string(),
        };
        if self.symlinks != Symlinks::RefuseIfNotOwner {
            return Err(refused());
        }
        let link = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FileError::io(walked, e.into()))?;
        let fd = rustix::fs::openat(at, name, flags, Mode::empty())
            .map_err(|e| FileError::io(walked, e.into()))?;
        let target = rustix::fs::fstat(&fd).map_err(|e| FileError::io(walked, e.into()))?;
        if link.st_uid != target.st_uid {
            return Err(refused());
        }
        Ok(fd)
    }
}

/// `path` split where the checks begin: its first `checked_from` bytes when they end a folder's
/// name (nginx opens that part following links: `from=$document_root`), else cut back to the
/// last whole folder, and the rest.
fn split_unchecked(path: &Path, checked_from: usize) -> (PathBuf, PathBuf) {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let from = checked_from.min(bytes.len());
    let cut = if from > 0 && bytes.get(from) == Some(&b'/') {
        from
    } else {
        bytes
            .get(..from)
            .and_then(|head| head.iter().rposition(|&b| b == b'/'))
            .unwrap_or(0)
    };
    let (head, tail) = bytes.split_at(cut);
    let head = if head.is_empty() {
        if path.is_absolute() {
            PathBuf::from("/")
        } else {
            PathBuf::from(".")
        }
    } else {
        PathBuf::from(std::ffi::OsStr::from_bytes(head))
    };
    let tail = PathBuf::from(std::ffi::OsStr::from_bytes(tail));
    (head, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("origin-confined-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn refusing(from: usize) -> OpenRules {
        OpenRules {
            symlinks: Symlinks::Refuse,
            checked_from: from,
        }
    }

    #[test]
    fn a_fifo_or_a_folder_is_refused_at_once() {
        let d = temp("fifo");
        let fifo = d.join("ch.isml");
        rustix::fs::mknodat(
            CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        for rules in [OpenRules::default(), refusing(0)] {
            // No writer: a blocking open would never return.
            let e = rules.read_file(&fifo, 100).unwrap_err();
            assert!(matches!(e, FileError::WrongType { .. }), "{e}");
            assert_eq!(e.status_and_token(), (404, "NOT_A_FILE"));
        }
        std::fs::create_dir(d.join("dir.isml")).unwrap();
        let e = OpenRules::default()
            .read_file(&d.join("dir.isml"), 100)
            .unwrap_err();
        assert_eq!(e.status_and_token(), (404, "NOT_A_FILE"));
        std::fs::write(d.join("file.isml.archive"), b"x").unwrap();
        let e = OpenRules::default()
            .check_channel(&d.join("file.isml"), &d.join("file.isml.archive"))
            .unwrap_err();
        assert!(
            matches!(
                e,
                FileError::WrongType {
                    expected: "folder",
                    ..
                }
            ),
            "{e}"
        );
        // Nothing there is no error for a check, and "not found" for a read.
        assert!(OpenRules::default()
            .check_channel(&d.join("none.isml"), &d.join("none.isml.archive"))
            .is_ok());
        assert!(OpenRules::default()
            .read_file(&d.join("none.isml"), 1)
            .unwrap_err()
            .is_not_found());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_are_followed_refused_or_checked_from_where_nginx_says() {
        let d = temp("links");
        let outside = d.join("outside");
        let root = d.join("root");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(root.join("live")).unwrap();
        std::fs::write(outside.join("secret.isml"), b"<smil/>").unwrap();
        std::fs::create_dir(outside.join("archive")).unwrap();
        symlink(outside.join("secret.isml"), root.join("live/ch.isml")).unwrap();
        symlink(outside.join("archive"), root.join("live/ch.isml.archive")).unwrap();
        symlink(&outside, root.join("linked")).unwrap();
        std::fs::write(root.join("live/plain.isml"), b"<smil/>").unwrap();
        let isml = root.join("live/ch.isml");

        // Off: followed, as nginx's static module follows them.
        assert_eq!(
            OpenRules::default().read_file(&isml, 100).unwrap(),
            b"<smil/>"
        );
        assert!(OpenRules::default()
            .check_channel(&isml, &root.join("live/ch.isml.archive"))
            .is_ok());
        // On: the file link, the folder link and a link higher up are refused (403).
        let on = refusing(0);
        let e = on.read_file(&isml, 100).unwrap_err();
        assert!(matches!(e, FileError::Symlink { .. }), "{e}");
        assert_eq!(e.status_and_token(), (403, "FORBIDDEN"));
        assert!(matches!(
            on.check_folder(&root.join("live/ch.isml.archive")),
            Err(FileError::Symlink { .. })
        ));
        assert!(matches!(
            on.read_file(&root.join("linked/secret.isml"), 100),
            Err(FileError::Symlink { .. })
        ));
        assert_eq!(
            on.read_file(&root.join("live/plain.isml"), 100).unwrap(),
            b"<smil/>"
        );
        assert!(on
            .check_channel(
                &root.join("live/plain.isml"),
                &root.join("live/plain.isml.archive")
            )
            .is_ok());
        // from=: a link before that point is not checked, one after it is.
        let linked = root.join("linked/secret.isml");
        let from = root.join("linked/").as_os_str().len();
        assert!(refusing(from).read_file(&linked, 100).is_ok());
        assert!(refusing(root.as_os_str().len())
            .read_file(&linked, 100)
            .is_err());
        // if_not_owner: the same owner made both, so the link is followed.
        let owner = OpenRules {
            symlinks: Symlinks::RefuseIfNotOwner,
            checked_from: 0,
        };
        assert!(owner.read_file(&isml, 100).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn reads_are_capped() {
        let d = temp("cap");
        std::fs::write(d.join("big"), vec![b'x'; 11]).unwrap();
        assert!(OpenRules::default().read_file(&d.join("big"), 10).is_err());
        assert_eq!(
            OpenRules::default()
                .read_file(&d.join("big"), 11)
                .unwrap()
                .len(),
            11
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_unchecked_part_ends_at_a_whole_folder() {
        let split = |p: &str, n| split_unchecked(Path::new(p), n);
        assert_eq!(
            split("/srv/www/live/a.isml", 0),
            ("/".into(), "/srv/www/live/a.isml".into())
        );
        assert_eq!(
            split("/srv/www/live/a.isml", "/srv/www".len()),
            ("/srv/www".into(), "/live/a.isml".into())
        );
        assert_eq!(
            split("/srv/www/live/a.isml", "/srv/ww".len()),
            ("/srv".into(), "/www/live/a.isml".into())
        );
        assert_eq!(
            split("/srv/www/live/a.isml", "/srv/www/".len()),
            ("/srv/www".into(), "/live/a.isml".into())
        );
    }
}
