//! Files only the operator's account may read: the store, generated secrets,
//! the operator token. Created with mode 0600, their folder created if missing.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates the parent folder of `path` if it does not exist yet.
pub fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// Creates an empty 0600 file at `path` unless one exists.
pub fn touch_private(path: &Path) -> io::Result<()> {
    ensure_parent(path)?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` (mode 0600), replacing it atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    ensure_parent(path)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Reads `path`; when it does not exist, writes what `generate` makes (0600)
/// and returns that. Trailing white space is not part of the content.
pub fn read_or_create_private(
    path: &Path,
    generate: impl FnOnce() -> Vec<u8>,
) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(mut bytes) => {
            while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                bytes.pop();
            }
            if bytes.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the file is empty",
                ));
            }
            Ok(bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let bytes = generate();
            if bytes.is_empty() {
                return Err(io::Error::other("could not generate the content"));
            }
            ensure_parent(path)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret");
        let first = read_or_create_private(&path, || b"abc\n".to_vec()).expect("create");
        assert_eq!(first, b"abc\n");
        let again = read_or_create_private(&path, || b"other".to_vec()).expect("read");
        assert_eq!(again, b"abc");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
