//! The run folder: where it is, what lives in it, and what killed writers leave behind.
use crate::{atomic, Error, Result};
use std::path::{Path, PathBuf};

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";

/// Every file a run writes (temporary files of other names are never touched).
const FILES: [&str; 11] = [
    CHECKPOINT,
    BEST,
    "config.json",
    "metrics.csv",
    "loss.png",
    "reconstructions.png",
    "codes.png",
    "latent.png",
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

/// How a run comes by its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A new folder under `runs/` named after the time, made unique.
    Fresh,
    /// The folder `--out` names: it must be empty, or emptied first with `overwrite`.
    Out { overwrite: bool },
    /// The folder of the run being resumed: its files stay.
    Resume,
}

/// A run folder held by this process: a lock on its `.lock` file keeps every other run out
/// while this one lives (dropped, the lock is released and the file removed).
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    lock: std::fs::File,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Removed while still locked: a process that opened it meanwhile finds, once it holds
        // the lock, that the name is no longer its file (see `lock`) and starts over.
        let _ = std::fs::remove_file(self.path.join(LOCK));
        let _ = self.lock.unlock();
    }
}

const LOCK: &str = ".lock";

/// Claims the run folder: `out` (or a fresh one), locked, empty unless resumed, writable.
pub fn claim(out: Option<&Path>, claim: Claim) -> Result<RunDir> {
    let path = match out {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| cannot_write(d, &e))?;
            d.to_path_buf()
        }
        None => fresh_dir()?,
    };
    let dir = lock(&path)?;
    clean_temp_files(&path);
    if let Claim::Out { overwrite } = claim {
        empty(&path, overwrite)?;
    }
    // Fail now, not after an epoch, when the folder cannot be written.
    atomic::write_atomic(&path.join(".write-test"), b"ok").map_err(|e| match e {
        Error::Io { source, .. } => cannot_write(&path, &source),
        e => cannot_write(&path, &e),
    })?;
    let _ = std::fs::remove_file(path.join(".write-test"));
    Ok(dir)
}

/// The checks of [`claim`] that need no folder made: a new run's `--out` must be empty (or
/// `overwrite`), and no other run may hold the folder. `claim` checks again, under the lock.
pub fn check(out: Option<&Path>, claim: Claim) -> Result<()> {
    let Some(dir) = out.filter(|d| d.is_dir()) else {
        return Ok(());
    };
    let held = lock(dir)?;
    let r = match claim {
        Claim::Out { overwrite: false } => empty(dir, false),
        _ => Ok(()),
    };
    drop(held);
    r
}

fn cannot_write(dir: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Config(format!(
        "the run folder {} cannot be written ({e}); pass --out with a folder you can write",
        dir.display()
    ))
}

/// `runs/<date-time>`, or `runs/<date-time>-2`, ... when a run started in the same second:
/// created here, so two runs never share one.
fn fresh_dir() -> Result<PathBuf> {
    let runs = PathBuf::from("runs");
    std::fs::create_dir_all(&runs).map_err(|e| cannot_write(&runs, &e))?;
    let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    for k in 1..10_000 {
        let name = if k == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{k}")
        };
        let dir = runs.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(cannot_write(&dir, &e)),
        }
    }
    Err(cannot_write(&runs, &"every name for this second is taken"))
}

/// Takes the folder's lock, or says which process holds it.
fn lock(dir: &Path) -> Result<RunDir> {
    use std::io::{Seek, Write};
    let path = dir.join(LOCK);
    // The lock file may be removed by the run that held it just as we lock it: a lock on a
    // file no longer at `path` keeps nobody out, so open the name again.
    for _ in 0..100 {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| cannot_write(dir, &e))?;
        if let Err(e) = file.try_lock() {
            return Err(held(dir, &mut file, &e));
        }
        if !same_file(&file, &path) {
            continue;
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        return Ok(RunDir {
            path: dir.to_path_buf(),
            lock: file,
        });
    }
    Err(cannot_write(dir, &"its lock file keeps changing"))
}

/// The error for a folder another run holds, with that run's process id.
fn held(dir: &Path, file: &mut std::fs::File, e: &dyn std::fmt::Display) -> Error {
    use std::io::Read;
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    Error::Config(format!(
        "another run (process {}) is using the run folder {} ({e}); wait for it to end, or \
         pass another --out",
        holder.trim(),
        dir.display()
    ))
}

/// Whether `file` is (still) the file at `path`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// A new run's folder must hold nothing (but our lock); `overwrite` empties it first.
///
/// What a run killed before its first checkpoint leaves (its `config.json`, our temporary
/// files, the lock file) is no run's result: a new run takes the folder over as it is.
fn empty(dir: &Path, overwrite: bool) -> Result<()> {
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .filter(|e| e.file_name() != LOCK)
        .collect();
    let leftover = |e: &std::fs::DirEntry| {
        let name = e.file_name().to_string_lossy().into_owned();
        name == "config.json" || is_temp_file(&name)
    };
    if entries.iter().all(leftover) {
        return Ok(());
    }
    if !overwrite {
        let mut names: Vec<String> = entries
            .iter()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        return Err(Error::Config(format!(
            "the run folder {} already holds files ({}); a run folder belongs to one run. Pass \
             another --out, --resume {} to continue that run, or --overwrite to empty it first",
            dir.display(),
            names.join(", "),
            dir.display()
        )));
    }
    for e in entries {
        let p = e.path();
        let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(|err| Error::io(&p, err))?;
    }
    Ok(())
}

/// The hidden temporary files an atomic write leaves when the process is killed during it
/// (`.checkpoint.safetensors.XXXXXX.tmp`): only those of the files a run writes.
fn is_temp_file(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|n| {
            let ours = |o: &str| {
                n.strip_prefix(o)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|r| !r.is_empty())
            };
            // An event file rewritten on resume: `.events.out.tfevents.<...>.v2.XXXXXX.tmp`.
            FILES.iter().any(|o| ours(o)) || n.starts_with("events.out.tfevents.")
        })
}

/// Removes what killed writers left in a run folder and its TensorBoard folders; returns how
/// many files. The files themselves were never touched: a write lands by a rename.
pub fn clean_temp_files(dir: &Path) -> usize {
    clean_temp_files_in(dir)
        + clean_temp_files_in(&dir.join("train"))
        + clean_temp_files_in(&dir.join("validation"))
}

fn clean_temp_files_in(dir: &Path) -> usize {
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
