//! Durable file writes, the one way the project writes a file that must survive: a latency table after
//! hours of profiling on a phone, a checkpoint, a run's metrics, an exported model.
//!
//! A write goes to a temporary file in the target's folder, which is flushed to disk (`fsync`), renamed
//! over the target, and then the folder itself is flushed, so that the rename is on disk too. Without the
//! two flushes a power loss shortly after a rename can leave an empty or missing file on common file
//! systems (ext4's delayed allocation, F2FS on Android phones), although the program saw the write succeed.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically and durably: readers see either the old file or the complete new
/// one, and once this returns the new one is on disk. Creates missing parent folders. Errors name the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        Error::invalid(format!("cannot write {}: not a file path", path.display()))
    })?;
    let dir = folder_of(path);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the temporary file may not exist if its creation is what failed.
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_folder(&dir)
}

/// `path` made absolute against the current folder (unchanged if that cannot be read): what a run
/// records, so that it names the same file wherever it is resumed from.
pub fn absolute(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// SHA-256 of some bytes, hex: what a run records of a file to notice it replaced underneath it.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Renames `from` to `to` and flushes the folders involved, so that the rename survives a power loss.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    let (a, b) = (folder_of(from), folder_of(to));
    sync_folder(&b)?;
    if a != b {
        sync_folder(&a)?;
    }
    Ok(())
}

/// Flushes a folder's entries (new, renamed or removed names) to disk. Folders cannot be opened for
/// syncing on Windows; there it does nothing (NTFS journals renames itself).
pub fn sync_folder(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The folder a path lies in (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("sub").join("table.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
        let moved = dir.join("moved.json");
        rename_durable(&path, &moved).unwrap();
        assert_eq!(fs::read(&moved).unwrap(), b"second");
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_write_names_the_path_and_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // A folder where the file should be: the rename fails, the folder stays as it was.
        let path = dir.join("taken");
        fs::create_dir_all(path.join("inner")).unwrap();
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("taken"), "{err}");
        assert!(path.join("inner").is_dir());
        assert_eq!(
            fs::read_dir(dir).unwrap().count(),
            1,
            "temporary left behind"
        );
    }
}
