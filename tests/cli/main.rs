//! The command line through the real binary: every bad input ends with a message that names
//! the problem and the fix, a non-zero exit code that is not a panic's (101), and no partial
//! file; the happy path leaves a complete run folder that `eval`, `encode`, `decode` and
//! `devices` work with.
//!
//! The adapter is `WGSL_AE_TEST_ADAPTER` (default `auto`: lavapipe on CI). Most cases use a
//! small synthetic dataset (64 training and 32 test images) so that a run takes a fraction of
//! a second even on lavapipe; the happy path and the adapter-limit case use the shipped MNIST.
//!
//! Here: running the binary and building small datasets; the cases, a file per topic.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

use common::adapter_name;
use wgsl_autoencoder::gpu::FoldSet;

mod bad_data;
mod bad_settings;
mod diverging;
mod flags;
mod happy_path;
mod keras_files;
mod keras_view;
mod no_surprises;
mod other_commands;
mod resume;

/// The binary, with Mesa's runtime-dir warning silenced. `WGSL_AE_TEST_BIN` runs these tests
/// against another build (an older one, to show that a test fails without its fix).
fn bare() -> Command {
    let xdg = std::env::temp_dir().join("wgsl-ae-cli-xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let bin = std::env::var_os("WGSL_AE_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_wgsl-autoencoder").into());
    let mut c = Command::new(bin);
    c.env("XDG_RUNTIME_DIR", &xdg).env_remove("RUST_BACKTRACE");
    c
}

/// The binary with `--adapter` first (it is global: it may also follow a command).
fn cli() -> Command {
    let mut c = bare();
    c.args(["--adapter", &adapter_name()]);
    c
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    run_cmd(cli().args(args))
}

fn run_cmd(c: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("the wgsl-autoencoder binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// A clean failure: exit code 1 or 2 (never 101, a panic's), no panic message, and every
    /// key word in stderr.
    #[track_caller]
    fn fails_with(&self, words: &[&str]) -> &Self {
        assert!(
            matches!(self.code, Some(c) if c != 0 && c != 101),
            "expected a clean failure, got exit code {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "panic: {}",
            self.stderr
        );
        assert!(
            self.stderr.trim_start().starts_with("error:"),
            "the message should start with `error:`: {}",
            self.stderr
        );
        for w in words {
            assert!(
                self.stderr.contains(w),
                "`{w}` missing from the message:\n{}",
                self.stderr
            );
        }
        self
    }
}

/// Files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    if dir.is_dir() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// No temporary or half-written file anywhere under `dir`: `write_atomic` names its temporary
/// files `.NAME.XXXX.tmp`.
#[track_caller]
fn assert_no_stray_files(dir: &Path) {
    for f in files(dir) {
        let name = Path::new(&f)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.ends_with(".tmp") && !name.starts_with('.'),
            "stray file {f} in {}",
            dir.display()
        );
    }
}

// ---- data ----------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn idx_images(count: u32, rows: u32, cols: u32, seed: u64) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0000_0803u32, count, rows, cols] {
        b.extend(v.to_be_bytes());
    }
    b.extend(noise(seed, (count * rows * cols) as usize));
    b
}

fn idx_labels(count: u32, seed: u64) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0000_0801u32, count] {
        b.extend(v.to_be_bytes());
    }
    b.extend(noise(seed, count as usize).iter().map(|v| v % 10));
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// A small MNIST-shaped dataset in `dir`: `train` and `test` images of `side`x`side`, the test
/// images gzip-compressed (as shipped).
fn small_data(dir: &Path, train: u32, test: u32, side: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let w = |name: &str, b: Vec<u8>| std::fs::write(dir.join(name), b).unwrap();
    w(TRAIN_IMAGES, idx_images(train, side, side, 1));
    w(TRAIN_LABELS, idx_labels(train, 2));
    w(
        &format!("{TEST_IMAGES}.gz"),
        gzip(&idx_images(test, side, side, 3)),
    );
    w(TEST_LABELS, idx_labels(test, 4));
    dir.to_path_buf()
}

/// 64 training and 32 test images of 28x28.
fn small(dir: &Path) -> PathBuf {
    small_data(&dir.join("data"), 64, 32, 28)
}

/// A finished one-epoch dense run on `data` in `dir/name`.
fn dense_run(dir: &Path, data: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    run(&[
        "--model".as_ref(),
        "dense".as_ref(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--batch-size".as_ref(),
        "16".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .ok();
    assert!(out.join("checkpoint.safetensors").is_file());
    out
}

/// `train` on `data` with `args`, into `out`.
fn train(data: &Path, out: &Path, args: &[&str]) -> Run {
    let mut c = cli();
    c.args(args).arg("--data").arg(data).arg("--out").arg(out);
    run_cmd(&mut c)
}

/// A failure before training starts: the run folder is not even created.
#[track_caller]
fn assert_not_created(out: &Path) {
    assert!(
        !out.exists(),
        "{} was created: {:?}",
        out.display(),
        files(out)
    );
}
