//! What a location lets ingest do, so that whoever can reach it cannot take a channel or the
//! disk down: which stream names are taken, whether a push may create a channel, how many
//! tracks a channel and how many channels a folder may hold, and the file rules
//! ([`OpenRules`]) its files are reached under. The glue fills an [`IngestPolicy`] from the
//! location's directives; [`super::store::ArchiveStore`] applies it.

use std::path::Path;

use super::confined::OpenRules;
use super::ingest::IngestError;

/// `origin_live_max_tracks` when not set: a ladder of many renditions, audio languages and
/// subtitles fits, a push inventing new stream names does not get far.
pub const DEFAULT_MAX_TRACKS: usize = 32;
/// Largest `origin_live_max_tracks`: the most tracks a channel is read with, less one, so a
/// track past the limit can never push a held one out of the manifests.
pub const MAX_TRACKS_LIMIT: usize = super::channel::MAX_TRACKS - 1;
/// `origin_live_max_channels` when not set.
pub const DEFAULT_MAX_CHANNELS: usize = 100;
/// Largest `origin_live_max_channels` (each count lists the folder).
pub const MAX_CHANNELS_LIMIT: usize = 100_000;
/// Longest stream name, counted as its file name in the archive (see [`check_stream_name`]):
/// with the track folder's `=<bitrate>` it stays under the 255 bytes of a file name.
pub const MAX_STREAM_NAME_BYTES: usize = 200;
/// Longest file name on the file systems an archive lives on.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// What ingest into one location may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestPolicy {
    /// `origin_live_auto_create`: a push to a channel with no `.isml` creates it.
    pub create: bool,
    /// `origin_live_max_tracks`: most tracks (entries of the `.isml`) a push may bring a
    /// channel to.
    pub max_tracks: usize,
    /// `origin_live_max_channels`: a push creates a channel only while its folder holds fewer
    /// publishing points (`.isml` files) than this.
    pub max_channels: usize,
    /// `disable_symlinks`, as the location sets it.
    pub files: OpenRules,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        IngestPolicy {
            create: false,
            max_tracks: DEFAULT_MAX_TRACKS,
            max_channels: DEFAULT_MAX_CHANNELS,
            files: OpenRules::default(),
        }
    }
}

impl IngestPolicy {
    /// The default policy, creating channels or not.
    pub fn creating(create: bool) -> IngestPolicy {
        IngestPolicy {
            create,
            ..IngestPolicy::default()
        }
    }

    /// Refuses a track past the limit: `held` tracks are in the `.isml`, `new` more would be
    /// added.
    pub fn check_tracks(&self, channel: &Path, held: usize, new: usize) -> Result<(), IngestError> {
        if new > 0 && held + new > self.max_tracks {
            return Err(IngestError::TooManyTracks(format!(
                "{}: {held} tracks held, {new} more would pass the limit of {} \
                 (origin_live_max_tracks)",
                channel.display(),
                self.max_tracks
            )));
        }
        Ok(())
    }

    /// Refuses stream names past the limit: every name holds at least one track, so `held`
    /// stored init segments (one per name) and `new` more count like tracks.
    pub fn check_stream_names(
        &self,
        channel: &Path,
        held: usize,
        new: usize,
    ) -> Result<(), IngestError> {
        if new > 0 && held + new > self.max_tracks {
            return Err(IngestError::TooManyTracks(format!(
                "{}: {held} stream names held, {new} more would pass the limit of {} tracks \
                 (origin_live_max_tracks)",
                channel.display(),
                self.max_tracks
            )));
        }
        Ok(())
    }

    /// Refuses to create a channel in a folder that holds `max_channels` publishing points.
    pub fn check_new_channel(&self, isml: &Path) -> Result<(), IngestError> {
        let folder = match isml.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let entries = std::fs::read_dir(folder).map_err(|source| IngestError::Storage {
            path: folder.display().to_string(),
            source,
        })?;
        let held = entries
            .filter_map(Result::ok)
            .filter(|e| {
                Path::new(&e.file_name())
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("isml"))
            })
            .take(self.max_channels)
            .count();
        if held >= self.max_channels {
            return Err(IngestError::TooManyChannels(format!(
                "{}: the folder holds {held} channels, the limit (origin_live_max_channels)",
                folder.display()
            )));
        }
        Ok(())
    }
}

/// Checks, under `rules`, the files a channel was read from: each track's folder and its
/// `init`, `info` and `records`. The reader opens them by path (following links); where
/// `disable_symlinks` forbids links, an answer made from a track reached through one is refused
/// before it goes out. Nothing to do where links are followed.
pub fn check_archive_files(
    rules: &OpenRules,
    channel: &super::channel::ChannelSnapshot,
) -> Result<(), super::confined::FileError> {
    if rules.symlinks == super::confined::Symlinks::Follow {
        return Ok(());
    }
    for track in &channel.tracks {
        let dir = channel.archive_dir.join(&track.dir_name);
        rules.check_folder(&dir)?;
        for file in ["init", "info", "records"] {
            rules.check_file(&dir.join(file))?;
        }
    }
    Ok(())
}

/// Refuses a stream name (`Streams(<name>)`) that cannot be a file name of the archive: empty,
/// `.` or `..`, a `/`, a `\` or a control character, or longer than
/// [`MAX_STREAM_NAME_BYTES`] once written as one (letters, digits and `-._~` take a byte,
/// any other byte five: `%25XX`).
pub fn check_stream_name(name: &str) -> Result<(), IngestError> {
    let bad = |why: &str| {
        Err(IngestError::BadStreamName(format!(
            "{}: {why}",
            crate::url::excerpt(name)
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("not a name");
    }
    if name.contains(['/', '\\']) {
        return bad("holds a slash");
    }
    if name.chars().any(crate::url::name::is_forbidden_in_name) {
        return bad("holds a control character");
    }
    let file_name = crate::url::encode_name(name).len();
    if file_name > MAX_STREAM_NAME_BYTES {
        return bad(&format!(
            "{file_name} bytes as a file name, more than {MAX_STREAM_NAME_BYTES}"
        ));
    }
    Ok(())
}

/// Refuses a track folder name longer than a file name may be (a track name announced by the
/// media, not the stream name, can make one).
pub fn check_track_dir_name(dir_name: &str) -> Result<(), IngestError> {
    if dir_name.len() > MAX_FILE_NAME_BYTES {
        return Err(IngestError::BadStreamName(format!(
            "the track folder {} is {} bytes, more than a file name may be",
            crate::url::excerpt(dir_name),
            dir_name.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_that_cannot_be_file_names_are_refused() {
        for good in ["video", "video.cmfv", "audio_eng-1~x", "enc 1", "h\u{e9}"] {
            assert!(check_stream_name(good).is_ok(), "{good}");
        }
        assert!(check_stream_name(&"a".repeat(MAX_STREAM_NAME_BYTES)).is_ok());
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "a/b".into(),
            "a\\b".into(),
            "a\u{7}b".into(),
            "a".repeat(MAX_STREAM_NAME_BYTES + 1),
            "a".repeat(255),
            // 41 spaces: 205 bytes as a file name.
            " ".repeat(41),
        ] {
            let e = check_stream_name(&bad).unwrap_err();
            let e = crate::Error::from(e);
            assert_eq!(
                (e.status(), e.token()),
                (400, "INGEST_BAD_STREAM_NAME"),
                "{bad:?}"
            );
        }
        assert!(check_track_dir_name(&"a".repeat(255)).is_ok());
        assert!(check_track_dir_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tracks_past_the_limit_are_refused() {
        let p = IngestPolicy {
            max_tracks: 3,
            ..IngestPolicy::default()
        };
        let ch = Path::new("ch.isml");
        assert!(p.check_tracks(ch, 0, 3).is_ok());
        assert!(p.check_tracks(ch, 2, 1).is_ok());
        // Tracks already held are never refused, even past a lowered limit.
        assert!(p.check_tracks(ch, 5, 0).is_ok());
        let e = crate::Error::from(p.check_tracks(ch, 3, 1).unwrap_err());
        assert_eq!((e.status(), e.token()), (403, "INGEST_TOO_MANY_TRACKS"));
        assert!(e.to_string().contains("origin_live_max_tracks"), "{e}");
    }

    #[test]
    fn a_folder_full_of_channels_takes_no_new_one() {
        let d = std::env::temp_dir().join(format!("origin-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = IngestPolicy {
            max_channels: 2,
            ..IngestPolicy::creating(true)
        };
        std::fs::write(d.join("a.isml"), b"").unwrap();
        std::fs::write(d.join("v.ism"), b"").unwrap();
        std::fs::create_dir(d.join("a.isml.archive")).unwrap();
        assert!(p.check_new_channel(&d.join("b.isml")).is_ok());
        std::fs::write(d.join("b.isml"), b"").unwrap();
        let e = crate::Error::from(p.check_new_channel(&d.join("c.isml")).unwrap_err());
        assert_eq!((e.status(), e.token()), (403, "INGEST_TOO_MANY_CHANNELS"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Ingest through the store, as the glue drives it, under `policy`.
    mod through_the_store {
        use super::super::*;
        use crate::live::confined::{FileError, Symlinks};
        use crate::live::store::DirectIngest;
        use std::path::PathBuf;

        fn cmaf() -> Vec<u8> {
            std::fs::read(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cmaf-video.cmfv"),
            )
            .unwrap()
        }

        fn temp(name: &str) -> PathBuf {
            let d =
                std::env::temp_dir().join(format!("origin-limits-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            d
        }

        fn push(isml: &Path, stream: &str, policy: &IngestPolicy) -> Result<(), crate::Error> {
            let mut s = DirectIngest::open_with(isml, stream, policy, Default::default())?;
            s.push(&cmaf(), 1_000)?;
            s.finish()?;
            Ok(())
        }

        fn tracks(isml: &Path) -> usize {
            crate::ism::ServerManifest::parse(&std::fs::read(isml).unwrap())
                .unwrap()
                .tracks
                .len()
        }

        #[test]
        fn a_new_stream_past_the_track_limit_writes_nothing() {
            let d = temp("tracks");
            let isml = d.join("ch.isml");
            let policy = IngestPolicy {
                max_tracks: 2,
                ..IngestPolicy::creating(true)
            };
            push(&isml, "a", &policy).unwrap();
            push(&isml, "b", &policy).unwrap();
            // Held streams go on.
            push(&isml, "a", &policy).unwrap();
            let e = push(&isml, "c", &policy).unwrap_err();
            assert_eq!((e.status(), e.token()), (403, "INGEST_TOO_MANY_TRACKS"));
            assert_eq!(tracks(&isml), 2);
            let archive = d.join("ch.isml.archive");
            assert!(!archive.join("streams/c").exists());
            assert!(!std::fs::read_dir(&archive).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("c=")));
            // An init alone under a new name is refused the same, and not stored.
            let init_len = cmaf().windows(4).position(|w| w == b"moof").unwrap() - 4;
            let mut s = DirectIngest::open_with(&isml, "d", &policy, Default::default()).unwrap();
            let e = crate::Error::from(s.push(&cmaf()[..init_len], 1).unwrap_err());
            assert_eq!(e.token(), "INGEST_TOO_MANY_TRACKS");
            assert!(!archive.join("streams/d").exists());
            std::fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn a_full_folder_creates_no_channel_and_names_are_checked_first() {
            let d = temp("channels");
            let policy = IngestPolicy {
                max_channels: 1,
                ..IngestPolicy::creating(true)
            };
            push(&d.join("a.isml"), "v", &policy).unwrap();
            let e = push(&d.join("b.isml"), "v", &policy).unwrap_err();
            assert_eq!((e.status(), e.token()), (403, "INGEST_TOO_MANY_CHANNELS"));
            assert!(!d.join("b.isml").exists() && !d.join("b.isml.archive").exists());
            // Off by default: no channel is made at all.
            let e = push(&d.join("c.isml"), "v", &IngestPolicy::default()).unwrap_err();
            assert_eq!(e.token(), "INGEST_UNKNOWN_CHANNEL");
            for bad in ["..", ".", &"x".repeat(255)] {
                let e = push(&d.join("a.isml"), bad, &policy).unwrap_err();
                assert_eq!((e.status(), e.token()), (400, "INGEST_BAD_STREAM_NAME"));
            }
            std::fs::remove_dir_all(&d).unwrap();
        }

        #[test]
        fn a_fifo_a_folder_or_a_forbidden_link_is_refused_at_once() {
            let d = temp("files");
            let policy = IngestPolicy::creating(true);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                d.join("fifo.isml"),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
                0,
            )
            .unwrap();
            // No writer: an open that waited for one would never return.
            let e = push(&d.join("fifo.isml"), "v", &policy).unwrap_err();
            assert_eq!((e.status(), e.token()), (404, "NOT_A_FILE"));
            std::fs::create_dir(d.join("dir.isml")).unwrap();
            let e = push(&d.join("dir.isml"), "v", &policy).unwrap_err();
            assert_eq!((e.status(), e.token()), (404, "NOT_A_FILE"));

            // A channel outside the root, linked into it.
            let outside = temp("files-outside");
            push(&outside.join("real.isml"), "v", &policy).unwrap();
            let before = std::fs::read(outside.join("real.isml")).unwrap();
            std::os::unix::fs::symlink(outside.join("real.isml"), d.join("ln.isml")).unwrap();
            std::os::unix::fs::symlink(
                outside.join("real.isml.archive"),
                d.join("ln.isml.archive"),
            )
            .unwrap();
            let refusing = IngestPolicy {
                files: OpenRules {
                    symlinks: Symlinks::Refuse,
                    checked_from: 0,
                },
                ..policy.clone()
            };
            let e = push(&d.join("ln.isml"), "w", &refusing).unwrap_err();
            assert_eq!((e.status(), e.token()), (403, "FORBIDDEN"));
            assert_eq!(std::fs::read(outside.join("real.isml")).unwrap(), before);
            assert!(!outside.join("real.isml.archive/streams/w").exists());
            // Only the archive folder linked: refused as well.
            std::fs::copy(outside.join("real.isml"), d.join("own.isml")).unwrap();
            std::os::unix::fs::symlink(
                outside.join("real.isml.archive"),
                d.join("own.isml.archive"),
            )
            .unwrap();
            assert!(matches!(
                DirectIngest::open_with(&d.join("own.isml"), "w", &refusing, Default::default())
                    .err(),
                Some(IngestError::File(FileError::Symlink { .. }))
            ));
            // Links followed where disable_symlinks is off, as for VOD.
            push(&d.join("ln.isml"), "w", &policy).unwrap();
            std::fs::remove_dir_all(&d).unwrap();
            std::fs::remove_dir_all(&outside).unwrap();
        }

        #[test]
        fn a_track_folder_linked_from_outside_is_refused_where_links_are() {
            let outside = temp("reader-outside");
            let d = temp("reader");
            let policy = IngestPolicy::creating(true);
            push(&outside.join("real.isml"), "v", &policy).unwrap();
            let track = std::fs::read_dir(outside.join("real.isml.archive"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .find(|n| n.to_string_lossy().starts_with("v="))
                .unwrap();
            std::fs::create_dir(d.join("own.isml.archive")).unwrap();
            std::os::unix::fs::symlink(
                outside.join("real.isml.archive").join(&track),
                d.join("own.isml.archive").join(&track),
            )
            .unwrap();
            let snapshot = crate::live::channel::ChannelReader::new()
                .snapshot(&d.join("own.isml"), 0)
                .unwrap();
            assert_eq!(snapshot.tracks.len(), 1);
            assert!(check_archive_files(&OpenRules::default(), &snapshot).is_ok());
            let refusing = OpenRules {
                symlinks: Symlinks::Refuse,
                checked_from: 0,
            };
            assert!(matches!(
                check_archive_files(&refusing, &snapshot),
                Err(FileError::Symlink { .. })
            ));
            // The channel outside, read where it is: nothing linked.
            let real = crate::live::channel::ChannelReader::new()
                .snapshot(&outside.join("real.isml"), 0)
                .unwrap();
            assert!(check_archive_files(&refusing, &real).is_ok());
            std::fs::remove_dir_all(&d).unwrap();
            std::fs::remove_dir_all(&outside).unwrap();
        }
    }
}
