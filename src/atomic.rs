//! Atomic file writes: a temporary file in the destination's folder is written, flushed and
//! synced, then renamed over the destination, so a reader never sees a half-written file and
//! a crash leaves either the old file or the new one.
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::{Error, Result};

/// Write `bytes` to `path` atomically (temporary file in the same folder, sync, rename,
/// then a best-effort sync of the folder). Errors name `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], but the contents come from `f`, which writes into a buffered writer
/// over the temporary file. If `f` fails, the temporary file is removed and `path` is
/// untouched.
pub fn write_atomic_with(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let dir = parent_dir(path);
    let err = |e: io::Error| Error::io(path, e);
    if !dir.is_dir() {
        let e = io::Error::new(
            io::ErrorKind::NotFound,
            format!("the folder {} does not exist", dir.display()),
        );
        return Err(err(e));
    }
    // The temporary file is deleted when `tmp` drops unless it was persisted. It is created
    // with the mode an ordinary new file gets (0666 less the umask), not tempfile's 0600.
    let prefix = temp_prefix(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).map_err(err)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        f(&mut w).map_err(err)?;
        w.flush().map_err(err)?;
    }
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    sync_dir(dir);
    Ok(())
}

/// The folder holding `path` ("." for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary name derived from the destination, so a left-over is recognisable.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Best-effort fsync of a folder so the rename itself is durable. Not every platform lets a
/// folder be opened or synced (Windows), so failures are ignored.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(entries(dir.path()), vec!["a.bin".to_string()]);
    }

    #[test]
    fn overwrites_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"a much longer old content").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(entries(dir.path()), vec!["a.bin".to_string()]);
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("a.bin");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("a.bin"), "{e}");
        assert!(!p.exists());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn failing_writer_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"old").unwrap();
        let e = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["a.bin".to_string()]);
    }

    #[test]
    fn bare_file_name_uses_current_folder() {
        assert_eq!(parent_dir(Path::new("x.png")), Path::new("."));
        assert_eq!(parent_dir(Path::new("d/x.png")), Path::new("d"));
    }
}
