//! The run folder: where it is, what lives in it, and what killed writers leave behind.
use crate::{atomic, Error, Result};
use std::path::{Path, PathBuf};

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";

/// Every file a run writes (temporary files of other names are never touched).
const FILES: [&str; 10] = [
    CHECKPOINT,
    BEST,
    "config.json",
    "metrics.csv",
    "loss.png",
    "reconstructions.png",
    "codes.png",
    "profile.txt",
    "trace.json",
    ".write-test",
];

/// Resolves `--resume RUN_OR_CHECKPOINT` to a checkpoint file.
pub fn checkpoint_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join(CHECKPOINT)
    } else {
        p.to_path_buf()
    }
}

/// Creates `dir` (default: `runs/<date-time>`) and proves it writable before any training.
pub fn create(out: Option<&Path>) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => {
            PathBuf::from("runs").join(chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string())
        }
    };
    let cannot = |e: &dyn std::fmt::Display| {
        Error::Config(format!(
            "the run folder {} cannot be written ({e}); pass --out with a folder you can write",
            dir.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(|e| cannot(&e))?;
    // Fail now, not after an epoch, when the folder cannot be written.
    atomic::write_atomic(&dir.join(".write-test"), b"ok").map_err(|e| match e {
        Error::Io { source, .. } => cannot(&source),
        e => cannot(&e),
    })?;
    let _ = std::fs::remove_file(dir.join(".write-test"));
    Ok(dir)
}

/// The hidden temporary files an atomic write leaves when the process is killed during it
/// (`.checkpoint.safetensors.XXXXXX.tmp`): only those of the files a run writes.
fn is_temp_file(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|n| {
            FILES.iter().any(|o| {
                n.strip_prefix(o)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|r| !r.is_empty() && !r.contains('/'))
            })
        })
}

/// Removes what killed writers left in a run folder; returns how many files. The files
/// themselves were never touched: a write lands by a rename.
pub fn clean_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if is_temp_file(&name.to_string_lossy())
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}
