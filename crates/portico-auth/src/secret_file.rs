//! Secrets kept in the data dir (signing keys): made on first use, readable by the owner only,
//! and safe when several processes start at once on an empty data dir.

use std::io::Write;
use std::path::Path;

/// The bytes of the file at `path`, made with `make` if it does not exist yet. When two processes
/// race, exactly one file wins (a hard link never replaces an existing file) and both read it.
pub fn load_or_create<E>(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, LoadError<E>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LoadError::Io)?;
    }
    if !path.exists() {
        let bytes = make().map_err(LoadError::Make)?;
        let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        write_private(&tmp, &bytes).map_err(LoadError::Io)?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(LoadError::Io(e)),
        }
    }
    std::fs::read(path).map_err(LoadError::Io)
}

/// Why a secret file could not be had.
#[derive(Debug)]
pub enum LoadError<E> {
    Io(std::io::Error),
    Make(E),
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub").join("key");
        let first = load_or_create::<()>(&path, || Ok(b"one".to_vec())).expect("made");
        let second = load_or_create::<()>(&path, || Ok(b"two".to_vec())).expect("read");
        assert_eq!((first.as_slice(), second.as_slice()), (&b"one"[..], &b"one"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
