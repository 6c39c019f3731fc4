//! Publishing points created, updated and removed through the API (`usp_handle_api`): PUT of
//! an `.isml` body, DELETE of the channel.

use std::path::Path;

use super::archive::{archive_dir, write_atomically};
use super::confined::OpenRules;
use super::ingest::IngestError;
use super::session::ChannelOptions;
use crate::ism::ServerManifest;

/// Largest `.isml` body accepted.
pub const MAX_PUT_BYTES: usize = 1 << 20;

fn storage(path: &Path) -> impl Fn(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Storage {
        path: path.display().to_string(),
        source,
    }
}

/// Creates or updates the publishing point `isml` from a server-manifest body: its options
/// (metas) replace the channel's; the tracks encoders announced are kept. True when created.
/// The `.isml` and its archive are reached under `rules` (a FIFO, a folder, a link that
/// `disable_symlinks` forbids: refused, nothing written).
pub fn put_channel(isml: &Path, body: &[u8], rules: &OpenRules) -> Result<bool, crate::Error> {
    if body.len() > MAX_PUT_BYTES {
        // Too large is not malformed: the client sees 413, as for any body over a limit.
        return Err(crate::Error::BodyTooLarge {
            limit: MAX_PUT_BYTES as u64,
        });
    }
    let new = ServerManifest::parse(body)
        .map_err(|e| IngestError::Malformed(format!("the body: {e}")))?;
    ChannelOptions::of(&new).map_err(|e| IngestError::Malformed(format!("the body: {e}")))?;
    rules.check_folder(&archive_dir(isml))?;
    let (mut manifest, created) = match rules.read_file(isml, crate::ism::MAX_MANIFEST_BYTES) {
        Ok(bytes) => (ServerManifest::parse(&bytes).unwrap_or_default(), false),
        Err(e) if e.is_not_found() => (ServerManifest::default(), true),
        Err(e) => return Err(e.into()),
    };
    manifest.metas = new.metas;
    write_atomically(isml, manifest.to_xml().as_bytes()).map_err(storage(isml))?;
    Ok(created)
}

/// Removes the publishing point `isml` and its archive, both reached under `rules` (a link
/// that `disable_symlinks` forbids is refused: nothing is removed).
pub fn delete_channel(isml: &Path, rules: &OpenRules) -> Result<(), IngestError> {
    let archive = archive_dir(isml);
    rules.check_channel(isml, &archive)?;
    let had_manifest = match std::fs::remove_file(isml) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(storage(isml)(e)),
    };
    match std::fs::remove_dir_all(&archive) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && had_manifest => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(IngestError::UnknownChannel(isml.display().to_string()))
        }
        Err(e) => Err(storage(&archive)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_keeps_tracks_and_delete_removes_everything() {
        let d = std::env::temp_dir().join(format!("origin-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("ch.isml.archive/video=1")).unwrap();
        let isml = d.join("ch.isml");
        let follow = OpenRules::default();
        let body = br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
            <meta name="dvr_window_length" content="60"/></head><body/></smil>"#;
        assert!(put_channel(&isml, body, &follow).unwrap());
        assert!(!put_channel(&isml, body, &follow).unwrap());
        let m = ServerManifest::parse(&std::fs::read(&isml).unwrap()).unwrap();
        assert_eq!(m.meta("dvr_window_length"), Some("60"));
        let bad = br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>
            <meta name="dvr_window_length" content="soon"/></head><body/></smil>"#;
        assert_eq!(put_channel(&isml, bad, &follow).unwrap_err().status(), 400);
        assert_eq!(
            put_channel(&isml, b"<nope", &follow).unwrap_err().status(),
            400
        );
        // Over the limit: its own status and token, not a malformed body.
        let huge = vec![b' '; MAX_PUT_BYTES + 1];
        let err = put_channel(&isml, &huge, &follow).unwrap_err();
        assert_eq!((err.status(), err.token()), (413, "REQUEST_TOO_LARGE"));
        delete_channel(&isml, &follow).unwrap();
        assert!(!isml.exists() && !d.join("ch.isml.archive").exists());
        assert_eq!(
            crate::Error::from(delete_channel(&isml, &follow).unwrap_err()).status(),
            404
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn put_and_delete_follow_the_file_rules() {
        use crate::live::confined::Symlinks;
        let d = std::env::temp_dir().join(format!("origin-admin-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("outside/real.isml.archive")).unwrap();
        std::fs::create_dir_all(d.join("root")).unwrap();
        std::fs::write(d.join("outside/real.isml"), b"<smil/>").unwrap();
        std::os::unix::fs::symlink(d.join("outside/real.isml"), d.join("root/ln.isml")).unwrap();
        let refusing = OpenRules {
            symlinks: Symlinks::Refuse,
            checked_from: 0,
        };
        let body = br#"<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/><body/></smil>"#;
        let isml = d.join("root/ln.isml");
        let e = put_channel(&isml, body, &refusing).unwrap_err();
        assert_eq!((e.status(), e.token()), (403, "FORBIDDEN"));
        let e = crate::Error::from(delete_channel(&isml, &refusing).unwrap_err());
        assert_eq!((e.status(), e.token()), (403, "FORBIDDEN"));
        assert_eq!(
            std::fs::read(d.join("outside/real.isml")).unwrap(),
            b"<smil/>"
        );
        assert!(isml.symlink_metadata().is_ok());
        // A FIFO where the .isml would be: refused at once, not waited on.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("root/fifo.isml"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        let e = put_channel(&d.join("root/fifo.isml"), body, &OpenRules::default()).unwrap_err();
        assert_eq!((e.status(), e.token()), (404, "NOT_A_FILE"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
