//! The command line through the real binary: every bad input ends with a message that names
//! the problem and the fix, a non-zero exit code that is not a panic's (101), and no partial
//! file; the happy path leaves a complete run folder that `eval`, `encode`, `decode` and
//! `devices` work with.
//!
//! The adapter is `WGSL_AE_TEST_ADAPTER` (default `auto`: lavapipe on CI). Most cases use a
//! small synthetic dataset (64 training and 32 test images) so that a run takes a fraction of
//! a second even on lavapipe; the happy path and the adapter-limit case use the shipped MNIST.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use common::adapter_name;
use wgsl_autoencoder::gpu::FoldSet;

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

// ---- bad data ------------------------------------------------------------------------------

#[test]
fn cli_missing_data_folder() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let gone = t.path().join("no-such-mnist");
    train(&gone, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        "no-such-mnist",
        "folder not found",
        "--data",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_data_folder_missing_a_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    std::fs::remove_file(data.join(TEST_LABELS)).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TEST_LABELS,
        "no such file",
        "--data",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_wrong_magic() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let mut b = idx_images(64, 28, 28, 1);
    b[2] = 0x12;
    std::fs::write(data.join(TRAIN_IMAGES), b).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TRAIN_IMAGES,
        "wrong magic",
        "0x00000803",
        "intact copy",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_truncated_payload() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let b = idx_images(64, 28, 28, 1);
    std::fs::write(data.join(TRAIN_IMAGES), &b[..b.len() - 100]).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TRAIN_IMAGES,
        "truncated",
        "50176",
        "intact copy",
    ]);
    assert_not_created(&out);
    // The same inside a gzip stream: the compressed test images, cut.
    let gz = gzip(&idx_images(32, 28, 28, 3));
    std::fs::write(data.join(TRAIN_IMAGES), idx_images(64, 28, 28, 1)).unwrap();
    std::fs::write(data.join(format!("{TEST_IMAGES}.gz")), &gz[..gz.len() / 2]).unwrap();
    train(&data, &out, &["--model", "dense", "--epochs", "1"])
        .fails_with(&[TEST_IMAGES, "truncated"]);
    assert_not_created(&out);
}

#[test]
fn cli_image_label_count_mismatch() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    std::fs::write(data.join(TRAIN_LABELS), idx_labels(63, 2)).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TRAIN_LABELS,
        "64 images",
        "63 labels",
        "must agree",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_conv_needs_28x28_and_dense_takes_8x8() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(&t.path().join("data8"), 64, 32, 8);
    let out = t.path().join("run");
    train(&data, &out, &["--model", "conv", "--epochs", "1"]).fails_with(&[
        "conv model needs 28x28",
        "8x8",
        "--model dense",
        "deep",
    ]);
    assert_not_created(&out);
    // The dense model takes any size.
    let r = train(
        &data,
        &out,
        &["--model", "dense", "--epochs", "1", "--batch-size", "16"],
    );
    r.ok();
    assert!(r.stdout.contains("dense on 64 training and 32 test images"));
    for f in [
        "checkpoint.safetensors",
        "reconstructions.png",
        "metrics.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing: {:?}", files(&out));
    }
    assert_no_stray_files(&out);
}

// ---- bad settings --------------------------------------------------------------------------

#[test]
fn cli_batch_size_0() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    train(
        &small(t.path()),
        &out,
        &["--model", "dense", "--batch-size", "0"],
    )
    .fails_with(&["--batch-size", "at least 1"]);
    assert_not_created(&out);
}

#[test]
fn cli_epochs_0() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    train(
        &small(t.path()),
        &out,
        &["--model", "dense", "--epochs", "0"],
    )
    .fails_with(&["--epochs", "at least 1"]);
    assert_not_created(&out);
}

#[test]
fn cli_negative_lr_and_noise() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    // `--lr -1` (a negative number after the flag) as well as `--lr=-1`.
    for args in [["--lr", "-1"], ["--lr=-1", "--epochs=1"], ["--lr", "0"]] {
        train(
            &data,
            &out,
            &[&["--model", "dense"][..], &args[..]].concat(),
        )
        .fails_with(&["--lr", "positive"]);
    }
    train(&data, &out, &["--model", "dense", "--lr", "NaN"]).fails_with(&["--lr", "positive"]);
    train(&data, &out, &["--model", "dense", "--noise", "-1"]).fails_with(&["--noise", ">= 0"]);
    assert_not_created(&out);
}

#[test]
fn cli_train_limit_0() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    train(
        &small(t.path()),
        &out,
        &["--model", "dense", "--train-limit", "0"],
    )
    .fails_with(&["--train-limit", "at least 1"]);
    assert_not_created(&out);
}

/// The batch is capped at the dataset, so the full MNIST is what makes 100,000,000 too big:
/// 60,000 images of 784 floats (188 MB) exceed lavapipe's 128 MiB binding limit. The check
/// happens before any such buffer is created, so this takes about as long as reading MNIST.
#[test]
fn cli_batch_size_over_the_adapter_limits() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let start = Instant::now();
    let r = run(&[
        "--model".as_ref(),
        "dense".as_ref(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--batch-size".as_ref(),
        "100000000".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    r.fails_with(&["--batch-size", "smaller", "allows"]);
    assert!(
        r.stderr.contains("max_storage_buffer_binding_size")
            || r.stderr.contains("max_buffer_size"),
        "the message should name the limit: {}",
        r.stderr
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}: the limit must be checked before anything is allocated",
        start.elapsed()
    );
    assert_not_created(&out);
}

#[test]
fn cli_adapter_nosuchgpu() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let mut c = bare();
    c.args([
        "--adapter",
        "nosuchgpu",
        "--model",
        "dense",
        "--epochs",
        "1",
    ])
    .arg("--data")
    .arg(&data)
    .arg("--out")
    .arg(&out);
    run_cmd(&mut c).fails_with(&[
        "nosuchgpu",
        "Adapters seen",
        "--adapter auto",
        "--adapter cpu",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_adapter_99() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let mut c = bare();
    c.args(["--adapter", "99", "--model", "dense", "--epochs", "1"])
        .arg("--data")
        .arg(small(t.path()))
        .arg("--out")
        .arg(&out);
    let r = run_cmd(&mut c);
    r.fails_with(&[
        "99",
        "Adapters seen",
        "[0] ",
        "--adapter auto",
        "--adapter cpu",
    ]);
    assert_not_created(&out);
    // `devices` needs no adapter to be chosen.
    run_cmd(bare().args(["devices", "--adapter", "99"])).ok();
}

// ---- resume --------------------------------------------------------------------------------

#[test]
fn cli_resume_missing_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let gone = t.path().join("gone.safetensors");
    train(
        &data,
        &out,
        &["--resume", gone.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&["gone.safetensors", "no such file", "checkpoint"]);
    assert_not_created(&out);
}

#[test]
fn cli_resume_truncated_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    let bytes = std::fs::read(src.join("checkpoint.safetensors")).unwrap();
    let out = t.path().join("run");
    // Cut in the tensors, and cut in the header.
    for (name, len) in [
        ("half.safetensors", bytes.len() / 2),
        ("head.safetensors", 100),
    ] {
        let cut = t.path().join(name);
        std::fs::write(&cut, &bytes[..len]).unwrap();
        train(
            &data,
            &out,
            &["--resume", cut.to_str().unwrap(), "--epochs", "2"],
        )
        .fails_with(&[name, "not a readable safetensors file", "truncated"]);
        assert_not_created(&out);
    }
    // eval says the same.
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(t.path().join("half.safetensors"))
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).fails_with(&["half.safetensors", "truncated"]);
}

#[test]
fn cli_resume_foreign_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    // Random bytes.
    let random = t.path().join("random.safetensors");
    std::fs::write(&random, noise(7, 5000)).unwrap();
    train(
        &data,
        &out,
        &["--resume", random.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&["random.safetensors", "not a readable safetensors file"]);
    // A valid safetensors file without our metadata.
    let values = [1.0f32, 2.0, 3.0, 4.0];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &bytes).unwrap();
    let other = t.path().join("other.safetensors");
    std::fs::write(
        &other,
        safetensors::serialize([("dense/kernel", view)], None).unwrap(),
    )
    .unwrap();
    train(
        &data,
        &out,
        &["--resume", other.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&["other.safetensors", "not a wgsl-autoencoder checkpoint"]);
    assert_not_created(&out);
}

#[test]
fn cli_resume_other_model() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "dense_run");
    let before = std::fs::read(src.join("checkpoint.safetensors")).unwrap();
    let out = t.path().join("run");
    // The checkpoint is a dense model: --model conv is refused, naming both.
    train(
        &data,
        &out,
        &[
            "--resume",
            src.to_str().unwrap(),
            "--model",
            "conv",
            "--epochs",
            "2",
        ],
    )
    .fails_with(&["dense model", "--model conv", "drop --model", "--resume"]);
    assert_not_created(&out);
    assert_eq!(
        std::fs::read(src.join("checkpoint.safetensors")).unwrap(),
        before
    );
    // Without --model (or with the same one) it continues as the dense model it is.
    for extra in [&[][..], &["--model", "dense"][..]] {
        let args = [
            &["--resume", src.to_str().unwrap(), "--epochs", "2"][..],
            extra,
        ]
        .concat();
        let r = train(&data, &out, &args);
        r.ok();
        assert!(
            r.stdout.contains("dense on 64 training") && r.stdout.contains("epoch 2/2 - "),
            "{}",
            r.stdout
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn cli_resume_flipped_byte() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    let mut bytes = std::fs::read(src.join("checkpoint.safetensors")).unwrap();
    // The header is 8 bytes of length then JSON; the tensors follow.
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = 8 + header + (bytes.len() - 8 - header) / 2;
    bytes[at] ^= 0x40;
    let flipped = t.path().join("flipped.safetensors");
    std::fs::write(&flipped, &bytes).unwrap();
    let out = t.path().join("run");
    train(
        &data,
        &out,
        &["--resume", flipped.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&[
        "flipped.safetensors",
        "checksum mismatch",
        "another checkpoint",
    ]);
    assert_not_created(&out);
}

// ---- other commands ------------------------------------------------------------------------

#[test]
fn cli_eval_missing_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(t.path().join("missing.safetensors"))
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).fails_with(&["eval failed", "missing.safetensors", "no such file"]);
    assert_eq!(files(t.path()).len(), 4, "{:?}", files(t.path()));
}

#[test]
fn cli_decode_codes_of_the_wrong_shape() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    // A [3, 5] f32 array: the dense model's codes are 32 values.
    let codes = t.path().join("codes.npy");
    let mut npy = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[3, 5])
            .writer(&mut npy)
            .begin_nd()
            .unwrap();
        w.extend((0..15).map(|i| i as f32)).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&codes, npy).unwrap();
    let grid = t.path().join("grid.png");
    let mut c = cli();
    c.args(["decode", "--checkpoint"])
        .arg(&src)
        .arg("--codes")
        .arg(&codes)
        .arg("--out")
        .arg(&grid);
    run_cmd(&mut c).fails_with(&["codes.npy", "[3, 5]", "32 values", "--codes", "encode"]);
    assert!(!grid.exists());
    // Not a .npy at all.
    std::fs::write(&codes, b"not numpy").unwrap();
    run_cmd(&mut c).fails_with(&["codes.npy", "not a .npy file"]);
    assert!(!grid.exists());
    assert_no_stray_files(t.path());
}

#[test]
fn cli_out_folder_cannot_be_written() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = ["--model", "dense", "--epochs", "1", "--batch-size", "16"];
    let forbidden = Path::new("/proc/forbidden");
    train(&data, forbidden, &args).fails_with(&["/proc/forbidden", "cannot be written", "--out"]);
    assert!(!forbidden.exists());
    // Under a regular file.
    let file = t.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("run");
    train(&data, &under, &args).fails_with(&["a-file", "cannot be written", "--out"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert_no_stray_files(t.path());
}

// ---- a diverging run -----------------------------------------------------------------------

/// From the first steps: Adam moves every weight by about --lr, so the second step's loss is
/// NaN. Nothing but the settings is left.
#[test]
fn cli_nan_loss_in_the_first_epoch() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let args = [
        "--model",
        "dense",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "1e30",
    ];
    train(&data, &out, &args).fails_with(&[
        "the loss became",
        "at epoch 1, step 2",
        "No checkpoint had been written yet",
        "smaller --lr",
    ]);
    assert_eq!(files(&out), ["config.json"]);
    // One step per epoch: the training loss of epoch 1 is still finite, its validation loss
    // is not, and such weights are not saved as a checkpoint either.
    std::fs::remove_dir_all(&out).unwrap();
    let one_step = [
        "--model",
        "dense",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "1e30",
    ];
    train(&data, &out, &one_step).fails_with(&[
        "the loss became",
        "at epoch 1, step 1",
        "validation loss",
        "No checkpoint had been written yet",
        "smaller --lr",
    ]);
    assert_eq!(files(&out), ["config.json"]);
}

/// After a good epoch. --lr cannot change on --resume (the checkpoint's settings win), so the
/// good epoch-1 checkpoint is rewritten with lr = 1e30 in its settings (through the library:
/// the checksum covers the settings too); resuming it then diverges in epoch 2, and the
/// epoch-1 files stay as they were.
#[test]
fn cli_nan_loss_keeps_the_last_good_checkpoint() {
    use wgsl_autoencoder::checkpoint;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let dir = dense_run(t.path(), &data, "run");
    let ck = dir.join("checkpoint.safetensors");
    let mut good = checkpoint::load(&ck).unwrap();
    good.config.adam.lr = 1e30;
    let edited = checkpoint::encode(&good).unwrap();
    std::fs::write(&ck, &edited).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let best = std::fs::read(dir.join("best.safetensors")).unwrap();

    let mut c = cli();
    c.arg("--resume")
        .arg(&dir)
        .args(["--epochs", "3", "--data"])
        .arg(&data);
    let r = run_cmd(&mut c);
    r.fails_with(&[
        "the loss became",
        "at epoch 2, step 2",
        &format!("The last good checkpoint is {} (epoch 1)", ck.display()),
        "smaller --lr",
    ]);
    assert!(r.stdout.contains("epochs 2..=3"), "{}", r.stdout);
    assert!(!r.stdout.contains("epoch 2/3 - "), "{}", r.stdout);
    // Nothing of epoch 2 was written.
    assert_eq!(std::fs::read(&ck).unwrap(), edited);
    assert_eq!(std::fs::read(dir.join("best.safetensors")).unwrap(), best);
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.csv")).unwrap(),
        metrics
    );
    assert_no_stray_files(&dir);
    // And the kept checkpoint is a working one.
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(&ck)
        .arg("--data")
        .arg(&data);
    let e = run_cmd(&mut c);
    e.ok();
    assert!(
        e.stdout.contains("dense model, epoch 1: val_loss 0."),
        "{}",
        e.stdout
    );
}

// ---- the happy path ------------------------------------------------------------------------

/// `epoch 1/2 - 7.6s - loss: 0.6920 - val_loss: 0.6878 - run ETA 8s` -> (loss, val_loss).
/// Every epoch but the last ends with the run's ETA (`45s`, `3m24s`, `2h05m`).
#[track_caller]
fn keras_line(line: &str, epoch: usize, epochs: usize) -> (f64, f64) {
    let parts: Vec<&str> = line.split(" - ").collect();
    assert_eq!(parts.len(), if epoch < epochs { 5 } else { 4 }, "{line}");
    if let Some(eta) = parts.get(4) {
        let t = eta.strip_prefix("run ETA ").expect(line);
        assert!(is_duration(t), "{line}: run ETA as 45s, 3m24s or 2h05m");
    }
    assert_eq!(parts[0], format!("epoch {epoch}/{epochs}"), "{line}");
    let secs = parts[1].strip_suffix('s').expect(line);
    assert!(secs.parse::<f64>().is_ok() && secs.contains('.'), "{line}");
    let value = |p: &str, key: &str| -> f64 {
        let v = p.strip_prefix(key).expect(line);
        assert!(v.starts_with("0.") && v.len() == 6, "{line}: 4 decimals");
        v.parse().unwrap()
    };
    (value(parts[2], "loss: "), value(parts[3], "val_loss: "))
}

/// `45s`, `3m24s` or `2h05m`.
fn is_duration(t: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let two = |s: &str, unit: char| s.len() == 3 && s.ends_with(unit) && num(&s[..2]);
    if let Some((h, m)) = t.split_once('h') {
        num(h) && two(m, 'm')
    } else if let Some((m, s)) = t.split_once('m') {
        num(m) && two(s, 's')
    } else {
        t.strip_suffix('s').is_some_and(num)
    }
}

fn epoch_lines(stdout: &str, epochs: usize) -> Vec<(f64, f64)> {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(lines.len(), epochs, "{stdout}");
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| keras_line(l, i + 1, epochs))
        .collect()
}

#[test]
fn cli_happy_path() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run");
    let r = run(&[
        "--model".as_ref(),
        "dense".as_ref(),
        "--train-limit".as_ref(),
        "512".as_ref(),
        "--epochs".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    r.ok();
    assert!(
        r.stdout
            .contains("dense on 512 training and 10000 test images, 2 steps per epoch"),
        "{}",
        r.stdout
    );
    let losses = epoch_lines(&r.stdout, 2);
    for f in [
        "config.json",
        "metrics.csv",
        "checkpoint.safetensors",
        "best.safetensors",
        "reconstructions.png",
        "loss.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing: {:?}", files(&dir));
    }
    assert_no_stray_files(&dir);
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("epoch,loss,val_loss"), "{csv}");
    for (row, (loss, val)) in rows[1..].iter().zip(&losses) {
        let v: Vec<f64> = row
            .split(',')
            .skip(1)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        assert!(
            (v[0] - loss).abs() <= 5e-5 && (v[1] - val).abs() <= 5e-5,
            "{row}"
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["model"], "dense");
    assert_eq!(config["train_images"], 512);

    // eval: --adapter may come before the command (cli() puts it there) or after it.
    let e = run_cmd(cli().args(["eval", "--checkpoint"]).arg(&dir));
    e.ok();
    let want = format!("dense model, epoch 2: val_loss {:.4}", losses[1].1);
    assert!(e.stdout.contains(&want), "{want} not in {}", e.stdout);
    let mut c = bare();
    c.args(["eval", "--checkpoint"])
        .arg(&dir)
        .args(["--adapter", &adapter_name()]);
    assert!(run_cmd(&mut c).ok().stdout.contains(&want));

    // encode, then decode what it wrote.
    let codes = t.path().join("codes.npy");
    let en = run_cmd(
        cli()
            .args(["encode", "--checkpoint"])
            .arg(&dir)
            .arg("--out")
            .arg(&codes),
    );
    en.ok();
    assert!(
        en.stdout.contains("wrote 10000 codes of 1x1x32"),
        "{}",
        en.stdout
    );
    let labels = t.path().join("codes.labels.npy");
    for (p, shape) in [(&codes, vec![10000u64, 1, 1, 32]), (&labels, vec![10000])] {
        let npy = npyz::NpyFile::new(std::fs::File::open(p).unwrap()).unwrap();
        assert_eq!(npy.shape(), &shape[..], "{}", p.display());
    }
    let grid = t.path().join("grid.png");
    let de = run_cmd(
        cli()
            .args(["decode", "--checkpoint"])
            .arg(&dir)
            .arg("--codes")
            .arg(&codes)
            .arg("--out")
            .arg(&grid),
    );
    de.ok();
    assert!(de.stdout.contains("decoded 100 codes"), "{}", de.stdout);
    assert!(std::fs::read(&grid).unwrap().starts_with(b"\x89PNG"));

    let dv = run(&["devices"]);
    dv.ok();
    assert!(dv.stdout.starts_with("[0] "), "{}", dv.stdout);
    assert!(dv.stdout.contains("max_storage_buffer_binding_size"));
    assert_no_stray_files(t.path());
}

/// `train` is the default command: the same flags give the same losses (same seed, bit for bit
/// in metrics.csv). On the small dataset, to keep it quick.
#[test]
fn cli_train_subcommand_equals_the_default_command() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = [
        "--model",
        "dense",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--seed",
        "7",
    ];
    let a = t.path().join("default");
    let b = t.path().join("train");
    let ra = train(&data, &a, &args);
    ra.ok();
    let mut c = cli();
    c.arg("train")
        .args(args)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&b);
    let rb = run_cmd(&mut c);
    rb.ok();
    assert_eq!(epoch_lines(&ra.stdout, 2), epoch_lines(&rb.stdout, 2));
    let losses = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    // Training flags before another command would be ignored: refused.
    let mut c = cli();
    c.args(["--model", "dense", "train", "--epochs", "1"]);
    run_cmd(&mut c).fails_with(&["--model", "before the `train` command"]);
}

/// `train --profile` leaves the per-kernel table and a Chrome trace in the run folder.
#[test]
fn cli_train_profile_writes_the_table_and_a_trace() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let r = train(
        &data,
        &out,
        &[
            "train",
            "--model",
            "dense",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--profile",
        ],
    );
    r.ok();
    let table = std::fs::read_to_string(out.join("profile.txt")).unwrap();
    // Batch 16: on the GPU set the register-tiled weight and bias gradients (split-K starts at
    // 128), on the CPU set one pass for both.
    let backward = if table.contains("cpu kernels") {
        "dense.backward_params"
    } else {
        "dense.backward_weight"
    };
    for want in [
        "kernel",
        "dense.forward",
        backward,
        "adam.step",
        "ms per step",
    ] {
        assert!(table.contains(want), "profile.txt lacks {want}:\n{table}");
    }
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    // 20 profiled steps of the dense model's dispatches, each a complete event with a duration.
    assert!(events.len() >= 20 * 8, "{} events", events.len());
    for e in events {
        assert_eq!(e["ph"], "X");
        assert!(
            e["dur"].as_f64().unwrap() > 0.0 && e["ts"].as_f64().unwrap() >= 0.0,
            "{e}"
        );
    }
    assert_no_stray_files(&out);
}

/// `bench-kernels` times the step's dispatches under both kernel sets and each of their
/// variants that changes one of the model's dispatches (the GPU set's; the CPU set's
/// `windows`, `textures`, `reuse` and `lanes`), and puts each layer's kernel side by side; a variant's dispatch
/// that runs its set's very code is marked the same, not timed against it. `--kernels SET`
/// times that set and its variants only.
#[test]
fn cli_bench_kernels_times_each_layer_under_both_sets() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let json = t.path().join("kernels.json");
    let mut c = cli();
    c.args([
        "bench-kernels",
        "--model",
        "dense",
        "--batch-size",
        "16",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
    ])
    .arg(&json)
    .arg("--data")
    .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    for want in [
        "gpu µs",
        "gpu+vec4 µs",
        "cpu µs",
        "cpu+windows µs",
        "fastest",
        "dense.forward",
        "adam.step",
        "= gpu",
        "not timed (no dispatch of this model changes): gpu+tiles, gpu+narrow, gpu+single, gpu+quads, cpu+textures, cpu+reuse, cpu+lanes",
    ] {
        assert!(r.stdout.contains(want), "no {want} in:\n{}", r.stdout);
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The dense model has split-K products (its 784-wide layer), which vec4 changes, and no
    // convolution or rows fold for the other variants; on the CPU set its 32-wide layer's
    // kernels read one operand through uniform windows; it has no convolution to read
    // through textures, load a pixel once for several taps or share a row across lanes.
    assert_eq!(
        v["sets"],
        serde_json::json!(["gpu", "gpu+vec4", "cpu", "cpu+windows"])
    );
    assert_eq!(
        v["unchanged"],
        serde_json::json!([
            "gpu+tiles",
            "gpu+narrow",
            "gpu+single",
            "gpu+quads",
            "cpu+textures",
            "cpu+reuse",
            "cpu+lanes"
        ])
    );
    let rows = v["rows"].as_array().unwrap();
    let row = |layer: &str, kernel: &str| {
        rows.iter()
            .find(|r| r["layer"] == layer && r["kernel"] == kernel)
            .unwrap_or_else(|| panic!("no {layer} {kernel} in {rows:?}"))
    };
    // Each set runs each Dense layer's forward: the GPU and CPU sets with their own kernels,
    // timed under both (once per step), the faster one named.
    for layer in ["dense", "dense_1"] {
        let r = row(layer, "dense.forward");
        let per_set = r["per_set"].as_array().unwrap();
        assert_eq!(per_set.len(), 4);
        assert_ne!(per_set[0]["source"], per_set[2]["source"], "{r}");
        assert_ne!(per_set[2]["source"], per_set[3]["source"], "{r}");
        for d in per_set {
            assert_eq!(d["calls_per_step"], 1.0, "{r}");
            assert!(d["us_per_step"].as_f64().unwrap() > 0.0, "{r}");
        }
        assert_eq!(r["same_kernel"], false);
        assert!(
            ["gpu", "gpu+vec4", "cpu", "cpu+windows"].contains(&r["fastest"].as_str().unwrap()),
            "{r}"
        );
    }
    // vec4 changes the first layer's split-K forward (784 features), not the second's
    // register-tiled one (32): there its column is the GPU set's code, and never the fastest.
    let first = row("dense", "dense.forward");
    assert_ne!(first["per_set"][0]["source"], first["per_set"][1]["source"]);
    assert!(first["same_as"][1].is_null(), "{first}");
    let second = row("dense_1", "dense.forward");
    assert_eq!(second["same_as"][1], "gpu", "{second}");
    assert_ne!(second["fastest"], "gpu+vec4", "{second}");
    // Each set ran its own kernels: at batch 16 the GPU set's bias gradient is a pass of its
    // own, the CPU set's weight gradient sums it in the same pass.
    let bias = row("dense_1", "dense.backward_bias");
    assert!(
        bias["per_set"][0].is_object() && bias["per_set"][2].is_null(),
        "{bias}"
    );
    assert!(bias["per_set"][3].is_null(), "{bias}");
    let params = row("dense_1", "dense.backward_params");
    assert!(
        params["per_set"][0].is_null() && params["per_set"][2].is_object(),
        "{params}"
    );
    assert!(params["per_set"][3].is_object(), "{params}");
    assert!(bias["fastest"].is_null() && params["fastest"].is_null());
    // The loss's last pass is one kernel on every set: no winner named between equal code.
    let finish = row("loss", "bce.loss_finish");
    assert_eq!(finish["same_kernel"], true, "{finish}");
    assert_eq!(
        finish["same_as"],
        serde_json::json!([null, "gpu", "gpu", "gpu"])
    );
    assert!(finish["fastest"].is_null(), "{finish}");
    for ms in v["kernel_ms_per_step"].as_array().unwrap() {
        assert!(ms.as_f64().unwrap() > 0.0, "{v}");
    }
    // One set: its columns only.
    let mut c = cli();
    c.args([
        "--kernels",
        "cpu",
        "bench-kernels",
        "--model",
        "dense",
        "--batch-size",
        "16",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--json",
    ])
    .arg(&json)
    .arg("--data")
    .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    assert!(!r.stdout.contains("gpu µs"), "{}", r.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["sets"], serde_json::json!(["cpu", "cpu+windows"]));
    assert_eq!(
        v["unchanged"],
        serde_json::json!(["cpu+textures", "cpu+reuse", "cpu+lanes"])
    );
}

// ---- no surprises: output, run folders, resume, full disks ------------------------------

/// A train command on the small dataset, dense model, that `spawn`s with piped output.
fn dense_cmd(data: &Path, out: &Path, epochs: &str) -> Command {
    let mut c = cli();
    c.args(["--model", "dense", "--epochs", epochs, "--batch-size", "16"])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    c
}

/// A reader of a child's stdout that hands over each line as it comes.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Item 1: a closed stdout (`train | head -1`) or a full one (`> /dev/full`) must not cost the
/// run: it finishes, exit 0, every epoch checkpointed. (Before: a panic, exit 101.)
#[test]
fn cli_closed_or_full_stdout_does_not_cost_the_run() {
    use std::process::Stdio;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("closed");
    let mut child = dense_cmd(&data, &out, "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.state.epoch, 3);

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    let Ok(full) = full else {
        eprintln!("no /dev/full here: its half of the test is skipped");
        return;
    };
    let out = t.path().join("full");
    let o = dense_cmd(&data, &out, "2").stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.join("metrics.csv").is_file());
}

/// Item 2: a run folder belongs to one run. Default names are unique even when the name of
/// this second is taken (made here for the next 60 seconds, each with a file the run must not
/// touch); `--out` onto a non-empty folder is refused, files untouched, unless `--overwrite`,
/// which empties it first; a live run's lock keeps a second process out of its folder.
#[test]
fn cli_runs_never_clobber_each_other() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let runs = t.path().join("runs");
    let now = chrono::Local::now();
    for s in 0..60 {
        let name = (now + chrono::Duration::seconds(s)).format("%Y-%m-%d_%H-%M-%S");
        let d = runs.join(name.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("mine.txt"), b"another run's").unwrap();
    }
    let mut c = cli();
    c.current_dir(t.path())
        .args([
            "--model",
            "dense",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--data",
        ])
        .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    let made: Vec<String> = files(&runs)
        .into_iter()
        .filter(|f| f.ends_with("checkpoint.safetensors"))
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].contains("-2/"), "{made:?}");
    for f in files(&runs).into_iter().filter(|f| f.ends_with("mine.txt")) {
        let dir = runs.join(&f).parent().unwrap().to_path_buf();
        assert_eq!(files(&dir), ["mine.txt"], "{f}");
    }

    // --out onto a finished run's folder: refused, nothing changed.
    let done = dense_run(t.path(), &data, "done");
    let before = std::fs::read(done.join("checkpoint.safetensors")).unwrap();
    train(&data, &done, &["--model", "deep", "--epochs", "1"]).fails_with(&[
        "already holds files",
        "--overwrite",
        "--resume",
    ]);
    assert_eq!(
        std::fs::read(done.join("checkpoint.safetensors")).unwrap(),
        before
    );
    // --overwrite empties it first: only the new run's files remain.
    std::fs::write(done.join("old-notes.txt"), b"x").unwrap();
    train(
        &data,
        &done,
        &[
            "--model",
            "deep",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--overwrite",
        ],
    )
    .ok();
    assert!(!done.join("old-notes.txt").exists());
    let ck = wgsl_autoencoder::checkpoint::load(&done.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.config.model.name(), "deep");

    // A live run holds its folder: a second process is refused, the first finishes.
    let live = t.path().join("live");
    let mut first = dense_cmd(&data, &live, "40")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut first);
    let started = Instant::now();
    while !lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap()
        .starts_with("epoch 1/")
    {
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    train(
        &data,
        &live,
        &["--model", "dense", "--epochs", "1", "--overwrite"],
    )
    .fails_with(&["another run (process", "is using the run folder"]);
    let _ = first.kill();
    first.wait().unwrap();
}

/// Item 3: a resume keeps the run's settings (a changed --batch-size, --seed, --noise or
/// --train-limit is refused by name; --epochs and --lr may change, recorded), takes the
/// dataset from the checkpoint's record (refusing changed files), and resuming an earlier
/// checkpoint branches into a new folder instead of truncating the run's later history.
#[test]
fn cli_resume_keeps_the_run_and_its_history() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    train(
        &data,
        &out,
        &["--model", "dense", "--epochs", "2", "--batch-size", "16"],
    )
    .ok();
    let resume = |extra: &[&str]| {
        let mut c = cli();
        c.arg("--resume").arg(&out).args(extra);
        run_cmd(&mut c)
    };
    for (flag, value) in [
        ("--batch-size", "8"),
        ("--seed", "7"),
        ("--noise", "0.5"),
        ("--train-limit", "32"),
    ] {
        resume(&["--epochs", "3", flag, value]).fails_with(&[flag, "differs from the run's"]);
    }
    // No --data: the recorded dataset (the small one, not the shipped MNIST) is used.
    let r = resume(&["--epochs", "3", "--lr", "5e-4"]);
    r.ok();
    assert!(r.stdout.contains("on 64 training"), "{}", r.stdout);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let sessions = config["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{config}");
    assert!((sessions[1]["lr_changed_from"].as_f64().unwrap() - 1e-3).abs() < 1e-9);
    assert!((config["config"]["adam"]["lr"].as_f64().unwrap() - 5e-4).abs() < 1e-9);
    // The recorded files changed: refused.
    let train_file = data.join(TRAIN_IMAGES);
    let mut bytes = std::fs::read(&train_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&train_file, &bytes).unwrap();
    resume(&["--epochs", "4"]).fails_with(&[TRAIN_IMAGES, "not the file the run trained on"]);
    bytes[last] ^= 0xff;
    std::fs::write(&train_file, &bytes).unwrap();

    // Resume from an earlier checkpoint: a new folder; the run keeps its 3 epochs.
    let mut ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    ck.state.epoch = 1;
    ck.history.truncate(1);
    wgsl_autoencoder::checkpoint::save(&out.join("best.safetensors"), &ck).unwrap();
    let metrics_before = std::fs::read(out.join("metrics.csv")).unwrap();
    let mut c = cli();
    c.current_dir(t.path())
        .arg("--resume")
        .arg(out.join("best.safetensors"))
        .args(["--epochs", "2"]);
    let r = run_cmd(&mut c);
    r.ok();
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).unwrap(),
        metrics_before
    );
    let kept = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(kept.state.epoch, 3);
    let branch: Vec<String> = files(&t.path().join("runs"))
        .into_iter()
        .filter(|f| f.ends_with("config.json"))
        .collect();
    assert_eq!(branch.len(), 1, "{branch:?}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("runs").join(&branch[0])).unwrap(),
    )
    .unwrap();
    let from = &config["sessions"][0]["from"];
    assert_eq!(from["branched"], true, "{config}");
    assert_eq!(from["epoch"], 1, "{config}");
}

/// Item 4: with the disk full, the run stops at the first failed write (within the next
/// epoch, not after all of them) and names the last checkpoint that landed. A tmpfs just
/// big enough for one epoch's files (two checkpoints and change) is the full disk; mounting
/// it needs root, as CI runs.
#[test]
fn cli_a_full_disk_stops_the_run_at_the_first_failed_write() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let probe = dense_run(t.path(), &data, "probe");
    let ck = std::fs::metadata(probe.join("checkpoint.safetensors"))
        .unwrap()
        .len();
    let disk = t.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let size = format!("size={}k", (2 * ck + ck / 2) / 1024);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // SAFETY: geteuid has no preconditions.
        assert_ne!(
            unsafe { libc::geteuid() },
            0,
            "root could not mount a tmpfs"
        );
        eprintln!("not root: no tmpfs to fill, the full-disk test is skipped");
        return;
    }
    let out = disk.join("run");
    let r = run_cmd(&mut dense_cmd(&data, &out, "6"));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap_or_default();
    let landed = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors"));
    let _ = Command::new("umount").arg(&disk).status();
    r.fails_with(&[
        "No space left on device",
        "stopped at the first failed write",
        "last good checkpoint",
        "checkpoint.safetensors (epoch 1)",
    ]);
    assert!(
        !r.stdout.contains("epoch 3/6"),
        "trained on past the failure:\n{}",
        r.stdout
    );
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    assert_eq!(landed.unwrap().state.epoch, 1);
}

/// Item 5, each found by a real try.
#[test]
fn cli_small_surprises() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let run_dir = dense_run(t.path(), &data, "src");

    // A Fortran-order .npy of codes decodes as its C-order twin does.
    let codes = t.path().join("codes.npy");
    let mut c = cli();
    c.args(["encode", "--checkpoint"])
        .arg(&run_dir)
        .arg("--out")
        .arg(&codes)
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).ok();
    let npy = npyz::NpyFile::new(std::fs::File::open(&codes).unwrap()).unwrap();
    let shape = npy.shape().to_vec();
    let values: Vec<f32> = npy.into_vec().unwrap();
    let (rows, cols) = (shape[0] as usize, values.len() / shape[0] as usize);
    let column_major: Vec<f32> = (0..cols)
        .flat_map(|j| (0..rows).map(move |i| (i, j)))
        .map(|(i, j)| values[i * cols + j])
        .collect();
    let fortran = t.path().join("fortran.npy");
    {
        use npyz::WriterBuilder;
        let mut f = std::fs::File::create(&fortran).unwrap();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[rows as u64, cols as u64])
            .order(npyz::Order::Fortran)
            .writer(&mut f)
            .begin_nd()
            .unwrap();
        w.extend(column_major).unwrap();
        w.finish().unwrap();
    }
    let decode = |codes: &Path, png: &Path| {
        let mut c = cli();
        c.args(["decode", "--checkpoint"])
            .arg(&run_dir)
            .arg("--codes")
            .arg(codes)
            .arg("--out")
            .arg(png);
        run_cmd(&mut c).ok();
        std::fs::read(png).unwrap()
    };
    let c_png = decode(&codes, &t.path().join("c.png"));
    let f_png = decode(&fortran, &t.path().join("f.png"));
    assert!(
        f_png == c_png,
        "the Fortran-order codes decode to another picture"
    );

    // A checkpoint whose weights are NaN: eval fails instead of printing NaN with exit 0.
    let mut ck =
        wgsl_autoencoder::checkpoint::load(&run_dir.join("checkpoint.safetensors")).unwrap();
    ck.state.params.iter_mut().for_each(|w| *w = f32::NAN);
    let nan = t.path().join("nan.safetensors");
    wgsl_autoencoder::checkpoint::save(&nan, &ck).unwrap();
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(&nan)
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).fails_with(&["NaN", "diverged", "best.safetensors"]);

    // Counts that used to be replaced silently are refused.
    let mut c = cli();
    c.args(["profile", "--model", "dense", "--steps", "0", "--data"])
        .arg(&data);
    run_cmd(&mut c).fails_with(&["--steps must be at least 1"]);
    for epochs in ["0", "1"] {
        let mut c = cli();
        c.args(["bench", "--model", "dense", "--epochs", epochs, "--data"])
            .arg(&data);
        run_cmd(&mut c).fails_with(&["--epochs", "at least 2", "warm-up"]);
    }
    // bench --json onto a folder fails before the benchmark, not after it.
    let mut c = cli();
    c.args(["bench", "--model", "dense", "--epochs", "2", "--json"])
        .arg(t.path())
        .arg("--data")
        .arg(&data);
    let r = run_cmd(&mut c);
    r.fails_with(&["--json", "it is a folder"]);
    assert!(
        !r.stdout.contains("s/epoch"),
        "the benchmark ran first:\n{}",
        r.stdout
    );

    // Dense on 2000x2000 images: the weights outgrow the adapter, whatever the batch.
    let big = small_data(&t.path().join("big"), 2, 1, 2000);
    let r = train(
        &big,
        &t.path().join("big-run"),
        &["--model", "dense", "--batch-size", "1"],
    );
    r.fails_with(&["params", "image size, not the batch"]);
    assert!(!r.stderr.contains("smaller --batch-size"), "{}", r.stderr);

    // Files a run writes get the umask's mode, not 0600.
    let mut c = dense_cmd(&data, &t.path().join("modes"), "1");
    // SAFETY: umask only changes this child's file-creation mask, before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            libc::umask(0o022);
            Ok(())
        });
    }
    run_cmd(&mut c).ok();
    use std::os::unix::fs::PermissionsExt;
    for f in files(&t.path().join("modes")) {
        let mode = std::fs::metadata(t.path().join("modes").join(&f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{f}");
    }

    // No Mesa EGL message that reads as ours when XDG_RUNTIME_DIR is unset.
    let mut c = bare();
    c.env_remove("XDG_RUNTIME_DIR").arg("devices");
    let r = run_cmd(&mut c);
    r.ok();
    assert!(!r.stderr.contains("XDG_RUNTIME_DIR"), "{}", r.stderr);
}

/// Item 5: a gzip file corrupted midway, so that it inflates to more than its header promises
/// before its checksum is reached, is reported as corrupt, not as "trailing garbage". The
/// corruption is found by flipping bytes of a real gzip stream in turn until one inflates long.
#[test]
fn cli_gzip_corrupted_midway_is_corrupt() {
    use flate2::read::MultiGzDecoder;
    use std::io::Read;
    let raw = idx_labels(4000, 9);
    let gz = gzip(&raw);
    let long = (20..gz.len() - 8).find_map(|i| {
        (1..=255u8).find_map(|x| {
            let mut bad = gz.clone();
            bad[i] ^= x;
            let mut out = Vec::new();
            let _ = MultiGzDecoder::new(&bad[..])
                .take(raw.len() as u64 + 1)
                .read_to_end(&mut out);
            (out.len() > raw.len() && out[..8] == raw[..8]).then_some(bad)
        })
    });
    let bad = long.expect("some corruption inflates past the payload");
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    std::fs::remove_file(data.join(TEST_LABELS)).unwrap();
    std::fs::write(data.join(format!("{TEST_LABELS}.gz")), &bad).unwrap();
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(dense_run(t.path(), &small(&t.path().join("ok")), "ok-run"))
        .arg("--data")
        .arg(&data);
    let r = run_cmd(&mut c);
    r.fails_with(&["corrupt", "gzip"]);
    assert!(!r.stderr.contains("trailing garbage"), "{}", r.stderr);
}

// ---- what a Keras user looks at: latent.png, interpolation, sampling ------------------------

/// A PNG's pixels, checked to be a PNG.
fn png(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}",
        path.display()
    );
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap()
}

/// matplotlib's tab10, the colour of each digit in latent.png.
const TAB10: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Every run folder, dense and conv, holds latent.png: a PNG of the documented size whose
/// legend shows the colour of every digit among the test labels (the legend's dots are
/// opaque, so each colour appears exactly), and no colour of a digit that is absent.
#[test]
fn cli_latent_png_in_every_run_folder() {
    use wgsl_autoencoder::report::LATENT_PLOT_SIZE;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let labels: std::collections::BTreeSet<u8> = idx_labels(32, 4)[8..].iter().copied().collect();
    let dense = dense_run(t.path(), &data, "dense");
    let conv = t.path().join("conv");
    train(
        &data,
        &conv,
        &["--model", "conv", "--epochs", "1", "--batch-size", "16"],
    )
    .ok();
    assert!(conv.join("codes.png").is_file(), "{:?}", files(&conv));
    for dir in [&dense, &conv] {
        let img = png(&dir.join("latent.png")).to_rgb8();
        assert_eq!(img.dimensions(), LATENT_PLOT_SIZE, "{}", dir.display());
        let colours: std::collections::BTreeSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        for (digit, c) in TAB10.iter().enumerate() {
            assert_eq!(
                colours.contains(c),
                labels.contains(&(digit as u8)),
                "{}: digit {digit}'s colour {c:?} (labels {labels:?})",
                dir.display()
            );
        }
        assert_no_stray_files(dir);
    }
}

/// A one-epoch dense run on `data` in `dir/src` whose weights barely leave their random
/// initialisation (lr 1e-7): trained on noise, a model soon learns to draw the mean whatever
/// the code, and then every decoded code looks alike.
fn fresh_run(dir: &Path, data: &Path) -> PathBuf {
    let src = dir.join("src");
    let args = [
        "--model",
        "dense",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-7",
    ];
    train(data, &src, &args).ok();
    src
}

/// The gray level the grids draw for a value (as src/report/grid.rs does).
fn gray(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Cell `k` of a one-row strip of 28x28 digits, one value per source pixel.
fn strip_cell(img: &image::GrayImage, k: usize) -> Vec<u8> {
    let x0 = k * (28 * 4 + 2);
    (0..28 * 28)
        .map(|i| {
            img.get_pixel((x0 + (i % 28) * 4) as u32, ((i / 28) * 4) as u32)
                .0[0]
        })
        .collect()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

/// `decode --interpolate 0,1 --steps 5`: one row of five digits, the first the
/// reconstruction of test image 0, the last that of test image 1, and those between the
/// decoded codes (1 - t) c0 + t c1 for t = 1/4, 1/2, 3/4, all computed here through the
/// library (within one gray level). Test images 0 and 1 are all black and all white and the
/// model is a [`fresh_run`], so the two reconstructions differ and a swapped or constant
/// strip fails.
#[test]
fn cli_decode_interpolate_strip() {
    use wgsl_autoencoder::infer::Inference;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let mut test = idx_images(32, 28, 28, 3);
    test[16..16 + 784].fill(0);
    test[16 + 784..16 + 2 * 784].fill(255);
    std::fs::write(data.join(format!("{TEST_IMAGES}.gz")), gzip(&test)).unwrap();
    let src = fresh_run(t.path(), &data);
    let out = t.path().join("strip.png");
    let r = run_cmd(
        cli()
            .args([
                "decode",
                "--interpolate",
                "0,1",
                "--steps",
                "5",
                "--checkpoint",
            ])
            .arg(&src)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out),
    );
    r.ok();
    assert!(
        r.stdout
            .contains("decoded 5 codes interpolated from test image 0 to test image 1"),
        "{}",
        r.stdout
    );
    let img = png(&out).to_luma8();
    assert_eq!(img.dimensions(), ((5 * 28 * 4 + 4 * 2) as u32, 28 * 4));

    let ck = wgsl_autoencoder::checkpoint::load(&src.join("checkpoint.safetensors")).unwrap();
    let gpu = common::gpu();
    let model = ck.model().unwrap();
    let inf = Inference::new(gpu, model, &ck.state.params).unwrap();
    let test = wgsl_autoencoder::data::load(&data, None)
        .unwrap()
        .test
        .images;
    let images: Vec<f32> = test.pixels[..2 * 784]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    let recon: Vec<u8> = inf
        .reconstruct(gpu, &images)
        .unwrap()
        .into_iter()
        .map(gray)
        .collect();
    let apart = max_diff(&recon[..784], &recon[784..]);
    assert!(
        apart > 8,
        "the two ends look alike: {apart} gray levels apart at most"
    );
    assert!(
        max_diff(&strip_cell(&img, 0), &recon[..784]) <= 1,
        "first cell"
    );
    assert!(
        max_diff(&strip_cell(&img, 4), &recon[784..]) <= 1,
        "last cell"
    );
    let codes = inf.encode(gpu, &images).unwrap();
    let (c0, c1) = codes.split_at(codes.len() / 2);
    for k in 1..4 {
        let s = k as f32 / 4.0;
        let mid: Vec<f32> = c0
            .iter()
            .zip(c1)
            .map(|(a, b)| (1.0 - s) * a + s * b)
            .collect();
        let want: Vec<u8> = inf
            .decode(gpu, &mid)
            .unwrap()
            .into_iter()
            .map(gray)
            .collect();
        assert!(max_diff(&strip_cell(&img, k), &want) <= 1, "cell {k}");
    }
    assert_no_stray_files(t.path());
}

/// `decode --sample 20`: a grid of 10 x 2 digits, the same file for the same seed, another
/// for another seed.
#[test]
fn cli_decode_sample_is_seeded() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = fresh_run(t.path(), &data);
    let sample = |seed: &str, name: &str| {
        let out = t.path().join(name);
        let r = run_cmd(
            cli()
                .args(["decode", "--sample", "20", "--seed", seed, "--checkpoint"])
                .arg(&src)
                .arg("--data")
                .arg(&data)
                .arg("--out")
                .arg(&out),
        );
        r.ok();
        assert!(
            r.stdout.contains("decoded 20 codes sampled"),
            "{}",
            r.stdout
        );
        std::fs::read(out).unwrap()
    };
    let (a, b, c) = (
        sample("1", "a.png"),
        sample("1", "b.png"),
        sample("2", "c.png"),
    );
    assert_eq!(a, b, "the same seed gave different samples");
    assert_ne!(a, c, "seeds 1 and 2 gave the same samples");
    let img = png(&t.path().join("a.png"));
    let (w, h) = (10 * 28 * 4 + 9 * 2, 2 * 28 * 4 + 2);
    assert_eq!((img.width(), img.height()), (w, h));
}

/// Exactly one of --codes, --interpolate, --sample; a test image that does not exist, a
/// malformed A,B and a one-step strip are refused by name, and nothing is written. --codes
/// still needs no dataset.
#[test]
fn cli_decode_refuses_bad_sources() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    let out = t.path().join("out.png");
    let decode = |args: &[&str]| {
        let mut c = cli();
        c.args(["decode", "--checkpoint"])
            .arg(&src)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(args);
        let r = run_cmd(&mut c);
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
        r
    };
    decode(&["--interpolate", "0,1", "--sample", "3"]).fails_with(&["cannot be used with"]);
    decode(&["--codes", "c.npy", "--sample", "3"]).fails_with(&["cannot be used with"]);
    decode(&["--codes", "c.npy", "--interpolate", "0,1"]).fails_with(&["cannot be used with"]);
    decode(&[]).fails_with(&["--codes", "--interpolate", "--sample"]);
    decode(&["--sample", "3", "--steps", "4"]).fails_with(&["--steps", "cannot be used with"]);
    decode(&["--interpolate", "0,32"]).fails_with(&[
        "--interpolate 0,32",
        "no test image 32",
        "32 images",
        "0 to 31",
    ]);
    decode(&["--interpolate", "40,2"]).fails_with(&["no test image 40"]);
    for bad in ["0", "0;1", "a,1", "-1,2", "1,2,3"] {
        decode(&["--interpolate", bad]).fails_with(&["--interpolate", "A,B", bad]);
    }
    decode(&["--interpolate", "0,1", "--steps", "1"]).fails_with(&["--steps 1", "both ends"]);
    decode(&["--sample", "0"]).fails_with(&["--sample 0"]);

    // --codes reads no dataset: a missing --data folder does not matter.
    let codes = t.path().join("codes.npy");
    run_cmd(
        cli()
            .args(["encode", "--checkpoint"])
            .arg(&src)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&codes),
    )
    .ok();
    let grid = t.path().join("grid.png");
    let r = run_cmd(
        cli()
            .args(["decode", "--count", "7", "--checkpoint"])
            .arg(&src)
            .arg("--codes")
            .arg(&codes)
            .arg("--data")
            .arg(t.path().join("no-such-folder"))
            .arg("--out")
            .arg(&grid),
    );
    r.ok();
    assert!(r.stdout.contains("decoded 7 codes into"), "{}", r.stdout);
    assert_eq!(png(&grid).width(), 7 * 28 * 4 + 6 * 2);
    assert_no_stray_files(t.path());
}

/// `--kernels`: an unknown set is refused before anything is created, naming the choices; a
/// run with a set forced records it in `config.json` and prints it, and each set trains.
#[test]
fn cli_kernels_flag_is_checked_recorded_and_printed() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("bogus");
    train(
        &data,
        &out,
        &["--kernels", "fast", "--model", "dense", "--epochs", "1"],
    )
    .fails_with(&["fast", "auto, gpu or cpu"]);
    assert_not_created(&out);
    for set in ["gpu", "cpu"] {
        let out = t.path().join(set);
        let r = train(
            &data,
            &out,
            &[
                "--kernels",
                set,
                "--model",
                "dense",
                "--epochs",
                "1",
                "--batch-size",
                "16",
            ],
        );
        r.ok();
        assert!(
            r.stdout.contains(&format!("{set} kernels")),
            "the run should say it uses the {set} kernels:\n{}",
            r.stdout
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["sessions"][0]["kernels"], set, "{config}");
    }
}

/// `--folds`: an unknown choice is refused before anything is created, naming the choices;
/// a run records the folds it used in `config.json` and prints them (`auto`: all on the GPU
/// set, `loss` and `windows` on the CPU set); and `profile` counts the dispatches they save (44 -> 16 for the
/// conv model).
#[test]
fn cli_folds_flag_is_checked_recorded_and_printed() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("bogus");
    train(&data, &out, &["--folds", "pool,some", "--epochs", "1"]).fails_with(&[
        "'some'",
        "upsample, pool, reduces, backward, loss, tiles, finish, rows, vec4, grads, narrow, single, gather, quads, adam, windows, textures, reuse and lanes",
    ]);
    assert_not_created(&out);
    for (kernels, folds, recorded) in [
        // On a CPU adapter `auto` leaves out rows, slower there.
        (
            "gpu",
            "auto",
            "upsample,pool,reduces,backward,loss,tiles,finish,vec4,single",
        ),
        ("cpu", "auto", "loss,windows,textures,reuse,lanes"),
        ("gpu", "reduces,pool", "pool,reduces"),
    ] {
        let out = t.path().join(format!("{kernels}-{folds}"));
        let args = [
            "--kernels",
            kernels,
            "--folds",
            folds,
            "--epochs",
            "1",
            "--batch-size",
            "32",
        ];
        let r = train(&data, &out, &args);
        r.ok();
        assert!(
            r.stdout
                .contains(&format!("{kernels} kernels, folds: {recorded}")),
            "the run should say it folds {recorded}:\n{}",
            r.stdout
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let folds = &config["sessions"][0]["folds"];
        for kind in FoldSet::NAMES {
            let want = recorded == "all" || recorded.split(',').any(|f| f == kind);
            assert_eq!(folds[kind], want, "{kind}: {config}");
        }
    }
    let counts = [
        ("none", 44),
        ("upsample", 38),
        ("pool", 38),
        ("reduces", 38),
        ("backward", 38),
        ("loss", 43),
        ("tiles", 44),
        ("finish", 43),
        ("rows", 44),
        ("narrow", 44),
        ("single", 44),
        ("gather", 43),
        ("quads", 44),
        ("adam", 44),
        ("windows", 44),
        ("reduces,adam", 36),
        ("all", 16),
    ];
    for (folds, dispatches) in counts {
        let r = run(&[
            "profile",
            "--kernels",
            "gpu",
            "--folds",
            folds,
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "8",
            "--data",
            data.to_str().unwrap(),
        ]);
        r.ok();
        assert!(
            r.stdout
                .contains(&format!("{dispatches} dispatches per step")),
            "--folds {folds}:\n{}",
            r.stdout
        );
    }
}

/// `--folds tune` on a conv model: after the search, each conv layer's dispatches are timed
/// with `narrow` and with `tiles` flipped (per dispatch, by timestamps), and a layer faster
/// past the margin keeps its own variants when the whole step with them beats the pick.
/// Whatever the timing chose, `config.json` records every comparison and the layers' own
/// variants consistently with it, the losses and weights are the unfolded run's bit for bit,
/// and a resumed run under `auto` keeps the layers' variants too.
#[test]
fn cli_folds_tune_picks_conv_variants_per_layer() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = |folds: &'static str| {
        [
            "--model",
            "conv",
            "--kernels",
            "gpu",
            "--folds",
            folds,
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--train-limit",
            "6",
        ]
    };
    let tuned = t.path().join("tuned");
    train(&data, &tuned, &args("tune")).ok();
    let config = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let session = config(&tuned)["sessions"][0].clone();
    let by = &session["folds_by"];
    let folds: FoldSet = serde_json::from_value(session["folds"].clone()).unwrap();
    let layers = by["layers"].as_array().unwrap_or_else(|| panic!("{by}"));
    let convs = [
        "conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_5", "conv2d_6",
    ];
    // Every conv layer compared under each per-layer variant that changes its launches,
    // nothing else: narrow, tiles and vec4 change every layer's; quads those that fold a
    // window (the three pooled layers with the pool fold, the three with an upsampled input
    // with the upsample fold), never conv2d_3's.
    let variants = wgsl_autoencoder::train::tune::PER_LAYER;
    assert_eq!(variants, ["narrow", "tiles", "vec4", "quads"]);
    let windows: Vec<&str> = [(folds.pool, 0..3), (folds.upsample, 4..7)]
        .into_iter()
        .filter(|(on, _)| *on)
        .flat_map(|(_, at)| convs[at].to_vec())
        .collect();
    let compared: std::collections::BTreeSet<(&str, &str)> = layers
        .iter()
        .map(|l| (l["layer"].as_str().unwrap(), l["variant"].as_str().unwrap()))
        .collect();
    let expected: std::collections::BTreeSet<(&str, &str)> = variants
        .iter()
        .flat_map(|v| convs.iter().map(move |c| (*c, *v)))
        .filter(|(c, v)| *v != "quads" || windows.contains(c))
        .collect();
    assert_eq!(compared, expected, "{by}");
    assert_eq!(layers.len(), expected.len(), "{by}");
    let mut want = std::collections::BTreeMap::new();
    for l in layers {
        let layer = l["layer"].as_str().unwrap();
        let variant = l["variant"].as_str().unwrap();
        let (a, b) = (
            l["us_picked"].as_f64().unwrap(),
            l["us_flipped"].as_f64().unwrap(),
        );
        assert!(a > 0.0 && b > 0.0, "{l}");
        // The flipped set has the variant on exactly when the pick has it off.
        let picked_on = folds.name() == "all" || folds.name().split(',').any(|f| f == variant);
        assert_eq!(
            l["on"].as_bool(),
            Some(!picked_on),
            "{l} against {}",
            folds.name()
        );
        if l["kept"] == true {
            assert!(b < a * (1.0 - wgsl_autoencoder::train::tune::MARGIN), "{l}");
            let own = want.entry(layer.to_string()).or_insert(folds);
            *own = own.with(variant).or_else(|| own.without(variant)).unwrap();
        }
    }
    let recorded: std::collections::BTreeMap<String, FoldSet> =
        serde_json::from_value(session["layer_folds"].clone()).unwrap();
    assert_eq!(recorded, want, "{session}");
    let trials = by["trials"].as_array().unwrap();
    let mixed = trials.iter().find(|t| {
        t["folds"]
            .as_str()
            .unwrap()
            .ends_with(" with the layers' own variants")
    });
    if !want.is_empty() {
        let us = |t: &serde_json::Value| t["us_per_step"].as_f64().unwrap();
        let picked = trials.iter().find(|t| t["folds"] == folds.name()).unwrap();
        assert!(us(mixed.unwrap()) < us(picked), "{by}");
    }

    let plain = t.path().join("plain");
    train(&data, &plain, &args("none")).ok();
    let load = |dir: &Path| {
        wgsl_autoencoder::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap()
    };
    let (a, b) = (load(&tuned), load(&plain));
    let bits = |ck: &wgsl_autoencoder::checkpoint::Checkpoint| {
        ck.history
            .iter()
            .map(|m| (m.loss.to_bits(), m.val_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&a), bits(&b), "the layers' variants changed a loss");
    assert!(
        a.state == b.state,
        "the layers' variants changed the weights"
    );

    let dir = tuned.to_str().unwrap();
    run(&["--kernels", "gpu", "--resume", dir, "--epochs", "2"]).ok();
    let resumed = config(&tuned)["sessions"][1].clone();
    assert_eq!(resumed["folds_by"]["by"], "resumed_run", "{resumed}");
    assert_eq!(resumed["layer_folds"], session["layer_folds"], "{resumed}");
}

/// `--folds tune`: the run times sets of folds at start-up, says so, records every set it
/// timed in `config.json` beside the one it kept (the fastest but for the margin), and
/// trains to the same losses and weights, bit for bit, as the same run with no folds; a
/// resumed run with `auto` keeps the folds recorded for its adapter instead of timing again,
/// and with `tune` times again.
/// Where there is nothing to time (the cpu kernel set, whose folds change float rounding;
/// `eval`; `bench-kernels`), `tune` is refused with the fix.
#[test]
fn cli_folds_tune_picks_by_timing_records_it_and_changes_no_bit() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = |kernels: &'static str, folds: &'static str| {
        [
            "--model",
            "dense",
            "--kernels",
            kernels,
            "--folds",
            folds,
            "--epochs",
            "1",
            "--batch-size",
            "8",
        ]
    };
    let refused = t.path().join("cpu-tune");
    train(&data, &refused, &args("cpu", "tune")).fails_with(&["--folds tune", "--kernels gpu"]);
    assert_not_created(&refused);

    let tuned = t.path().join("tuned");
    let r = train(&data, &tuned, &args("gpu", "tune"));
    r.ok();
    assert!(
        r.stdout.contains("(timed by ") && r.stdout.contains(", fastest of "),
        "the run should say how it picked its folds:\n{}",
        r.stdout
    );
    let config = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let session = config(&tuned)["sessions"][0].clone();
    let by = &session["folds_by"];
    assert_eq!(by["by"], "timing", "{session}");
    let trials = by["trials"].as_array().unwrap();
    assert_eq!(trials[0]["folds"], "all", "{by}");
    let kept: FoldSet = serde_json::from_value(session["folds"].clone()).unwrap();
    let us = |t: &serde_json::Value| t["us_per_step"].as_f64().unwrap();
    let kept_us = trials
        .iter()
        .find(|t| t["folds"] == kept.name())
        .map(us)
        .unwrap_or_else(|| panic!("the kept set {} was not timed: {by}", kept.name()));
    for trial in trials {
        assert!(
            us(trial) > 0.0 && trial["dispatches"].as_u64() > Some(0),
            "{trial}"
        );
        // Every set rejected was at most the margin faster than the one kept.
        assert!(
            kept_us * (1.0 - wgsl_autoencoder::train::tune::MARGIN) <= us(trial) + 1e-9,
            "{by}"
        );
    }

    let plain = t.path().join("plain");
    train(&data, &plain, &args("gpu", "none")).ok();
    let load = |dir: &Path| {
        wgsl_autoencoder::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap()
    };
    let (a, b) = (load(&tuned), load(&plain));
    let losses = |ck: &wgsl_autoencoder::checkpoint::Checkpoint| {
        ck.history
            .iter()
            .map(|m| (m.loss.to_bits(), m.val_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        losses(&a),
        losses(&b),
        "folds {} changed a loss",
        kept.name()
    );
    assert!(
        a.state == b.state,
        "folds {} changed the weights",
        kept.name()
    );

    let r = run(&[
        "--kernels",
        "gpu",
        "--resume",
        tuned.to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    r.ok();
    assert!(r.stdout.contains("the resumed run's"), "{}", r.stdout);
    let resumed = config(&tuned)["sessions"][1].clone();
    assert_eq!(resumed["folds_by"]["by"], "resumed_run", "{resumed}");
    assert_eq!(resumed["folds"], session["folds"], "{resumed}");
    // bench times its folds too, and says so beside its table and in its JSON.
    let json = t.path().join("bench.json");
    let mut c = cli();
    c.args([
        "--kernels",
        "gpu",
        "--folds",
        "tune",
        "bench",
        "--model",
        "dense",
    ])
    .args(["--batch-size", "8", "--epochs", "2", "--json"])
    .arg(&json)
    .arg("--data")
    .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    assert!(
        r.stdout.contains("dense: gpu kernels, folds: "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("(timed by "), "{}", r.stdout);
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(bench[0]["folds_by"]["by"], "timing", "{bench}");
    // Asked to tune, a resumed run times again.
    let dir = tuned.to_str().unwrap();
    run(&[
        "--kernels",
        "gpu",
        "--folds",
        "tune",
        "--resume",
        dir,
        "--epochs",
        "3",
    ])
    .ok();
    assert_eq!(config(&tuned)["sessions"][2]["folds_by"]["by"], "timing");

    run(&[
        "eval",
        "--folds",
        "tune",
        "--checkpoint",
        tuned.to_str().unwrap(),
    ])
    .fails_with(&["--folds tune", "trains nothing"]);
    run(&[
        "bench-kernels",
        "--folds",
        "tune",
        "--data",
        data.to_str().unwrap(),
    ])
    .fails_with(&["--folds tune", "kernel sets"]);
}

// ---- Keras model files ---------------------------------------------------------------------

/// The shipped `assets/models/NAME.json` as JSON, to edit into a file the program refuses.
fn keras_model(name: &str) -> serde_json::Value {
    let path = format!("{}/assets/models/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every unsupported feature the issue names, each in a file of its own, refused through the
/// binary before anything is created, the message naming the layer, its position and the
/// option.
#[test]
fn cli_keras_files_with_unsupported_features_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(&t.path().join("data28"), 16, 8, 28);
    let out = t.path().join("run");
    let conv = keras_model("conv");
    type Edit = fn(&mut serde_json::Value);
    // (what, edit of conv.json, words the message must hold)
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "stride 3",
            |m| m["config"]["layers"][1]["config"]["strides"] = serde_json::json!([3, 3]),
            vec![
                "layer 1",
                "'conv2d'",
                "Conv2D",
                "strides [3,3]",
                "only 1 or 2",
            ],
        ),
        (
            "unequal strides",
            |m| m["config"]["layers"][1]["config"]["strides"] = serde_json::json!([1, 2]),
            vec![
                "layer 1",
                "'conv2d'",
                "strides [1,2]",
                "the same on both axes",
            ],
        ),
        (
            "a strided output layer",
            |m| m["config"]["layers"][13]["config"]["strides"] = serde_json::json!([2, 2]),
            vec!["layer 13", "'conv2d_6'", "strides 2 on the output layer"],
        ),
        (
            "activity regularizer",
            |m| {
                m["config"]["layers"][3]["config"]["activity_regularizer"] =
                    serde_json::json!({"class_name": "L2", "config": {"l2": 0.01}})
            },
            vec![
                "layer 3",
                "'conv2d_1'",
                "activity_regularizer",
                "not supported",
            ],
        ),
        (
            "skip connection",
            |m| {
                // conv2d_1's input becomes the InputLayer's output, skipping two layers.
                m["config"]["layers"][3]["inbound_nodes"][0]["args"][0]["config"]
                    ["keras_history"][0] = serde_json::json!("input_layer");
            },
            vec!["layer 3", "'conv2d_1'", "single chain", "skip connections"],
        ),
        (
            "a 4-D input that is not 28x28x1",
            |m| {
                m["config"]["layers"][0]["config"]["batch_shape"] =
                    serde_json::json!([null, 32, 32, 3])
            },
            vec!["layer 0", "InputLayer", "[32, 32, 3]", "28x28x1"],
        ),
        (
            "an unsupported layer",
            |m| m["config"]["layers"][2]["class_name"] = serde_json::json!("Dropout"),
            vec![
                "layer 2",
                "'max_pooling2d'",
                "Dropout is not supported",
                "Conv2D",
            ],
        ),
        (
            "an even kernel",
            |m| m["config"]["layers"][5]["config"]["kernel_size"] = serde_json::json!([4, 4]),
            vec!["layer 5", "'conv2d_2'", "kernel_size [4,4]", "1, 3, 5 or 7"],
        ),
        (
            "dilation",
            |m| m["config"]["layers"][5]["config"]["dilation_rate"] = serde_json::json!([2, 2]),
            vec!["layer 5", "dilation_rate [2,2]"],
        ),
        (
            "an unsupported activation",
            |m| m["config"]["layers"][1]["config"]["activation"] = serde_json::json!("tanh"),
            vec!["layer 1", "activation \"tanh\"", "'relu'"],
        ),
        (
            "a last layer that is not sigmoid",
            |m| m["config"]["layers"][13]["config"]["activation"] = serde_json::json!("relu"),
            vec!["layer 13", "'conv2d_6'", "must be 'sigmoid'"],
        ),
        (
            "another loss",
            |m| m["compile_config"]["loss"] = serde_json::json!("mse"),
            vec!["compile_config", "loss 'mse'", "binary_crossentropy"],
        ),
        (
            "label smoothing",
            |m| {
                m["compile_config"]["loss"] = serde_json::json!({"class_name": "BinaryCrossentropy",
                    "config": {"label_smoothing": 0.1, "from_logits": false}})
            },
            vec!["compile_config", "label_smoothing"],
        ),
        (
            "an initializer given by name",
            |m| {
                m["config"]["layers"][3]["config"]["kernel_initializer"] =
                    serde_json::json!("he_normal")
            },
            vec!["layer 3", "kernel_initializer he_normal", "GlorotUniform"],
        ),
        (
            "a fixed batch size",
            |m| {
                m["config"]["layers"][0]["config"]["batch_shape"] =
                    serde_json::json!([32, 28, 28, 1])
            },
            vec!["layer 0", "batch size", "--batch-size"],
        ),
        (
            "a frozen layer",
            |m| m["config"]["layers"][1]["config"]["trainable"] = serde_json::json!(false),
            vec!["layer 1", "trainable false"],
        ),
    ];
    // Conv2DTranspose (the keras.io model's layers 5 and 6): what is not taken.
    let transpose: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "transpose stride 3",
            |m| m["config"]["layers"][5]["config"]["strides"] = serde_json::json!([3, 3]),
            vec![
                "layer 5",
                "'conv2d_transpose'",
                "Conv2DTranspose",
                "strides [3,3]",
                "1 or 2",
            ],
        ),
        (
            "transpose valid",
            |m| m["config"]["layers"][6]["config"]["padding"] = serde_json::json!("valid"),
            vec![
                "layer 6",
                "'conv2d_transpose_1'",
                "padding 'valid'",
                "only 'same'",
            ],
        ),
        (
            "transpose output padding",
            |m| m["config"]["layers"][5]["config"]["output_padding"] = serde_json::json!([1, 1]),
            vec!["layer 5", "output_padding [1,1]", "None"],
        ),
        (
            // After a strided Conv2DTranspose (a zero insertion and a convolution here), the
            // position named is still the file's.
            "dense on images after transposes",
            |m| {
                m["config"]["layers"][7]["class_name"] = serde_json::json!("Dense");
                m["config"]["layers"][7]["config"] =
                    serde_json::json!({"name": "conv2d_2", "units": 1, "activation": "sigmoid"});
            },
            vec!["layer 7", "'conv2d_2'", "28x28x32", "add a Flatten"],
        ),
        (
            "transpose stride 2 kernel 1",
            |m| m["config"]["layers"][5]["config"]["kernel_size"] = serde_json::json!([1, 1]),
            vec![
                "layer 5",
                "kernel_size [1,1]",
                "3, 5 or 7",
                "with strides 2",
            ],
        ),
    ];
    let bases = [(conv, cases), (keras_model("conv_transpose"), transpose)];
    for (what, base, edit, words) in bases
        .iter()
        .flat_map(|(base, cases)| cases.iter().map(move |(w, e, ws)| (w, base, e, ws.clone())))
    {
        let mut m = base.clone();
        edit(&mut m);
        let file = t.path().join(format!("{}.json", what.replace(' ', "_")));
        std::fs::write(&file, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        eprintln!("{what}");
        let mut words = words;
        words.push(file.to_str().unwrap());
        train(
            &data,
            &out,
            &["--model", file.to_str().unwrap(), "--epochs", "1"],
        )
        .fails_with(&words);
        assert_not_created(&out);
    }
    // A Dense on images: Keras applies it to the channels alone, so it needs a Flatten.
    let mut m = keras_model("sequential_conv");
    let layers = m["config"]["layers"].as_array_mut().unwrap();
    layers.remove(5); // flatten
    let file = t.path().join("no_flatten.json");
    std::fs::write(&file, serde_json::to_string(&m).unwrap()).unwrap();
    train(&data, &out, &["--model", file.to_str().unwrap()]).fails_with(&[
        "'dense'",
        "Dense",
        "7x7x8",
        "add a Flatten",
    ]);
    assert_not_created(&out);
    // An output of another shape than the input: flat 784 from 28x28x1 images.
    let mut m = keras_model("sequential_conv");
    let layers = m["config"]["layers"].as_array_mut().unwrap();
    layers.truncate(6); // input .. flatten
    let mut last = layers[0].clone();
    last["class_name"] = serde_json::json!("Dense");
    last["config"] = serde_json::json!({"name": "out", "units": 784, "activation": "sigmoid"});
    layers.push(last);
    let file = t.path().join("flat_output.json");
    std::fs::write(&file, serde_json::to_string(&m).unwrap()).unwrap();
    train(&data, &out, &["--model", file.to_str().unwrap()]).fails_with(&[
        "output is flat [784]",
        "input is 28x28x1",
        "Reshape",
    ]);
    assert_not_created(&out);
    // Not a file at all, and not JSON.
    train(&data, &out, &["--model", "convv"]).fails_with(&["--model convv", "conv, dense, deep"]);
    train(&data, &out, &["--model", "nope.json"]).fails_with(&[
        "--model nope.json",
        "no such file",
        "model.to_json()",
    ]);
    std::fs::write(t.path().join("bad.json"), "{ not json").unwrap();
    let bad = t.path().join("bad.json");
    train(&data, &out, &["--model", bad.to_str().unwrap()])
        .fails_with(&["not JSON", "model.to_json()"]);
    assert_not_created(&out);
}

/// A Keras file trains through every command: train (tensors under the file's own layer
/// names), eval, encode and decode with --code-layer; export writes the built-ins' files.
#[test]
fn cli_keras_file_trains_and_export_writes_the_builtins() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(&t.path().join("data28"), 16, 8, 28);
    let file = format!(
        "{}/assets/models/sequential_conv.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = t.path().join("run");
    let r = train(
        &data,
        &out,
        &[
            "--model",
            &file,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--code-layer",
            "dense",
            "--no-tensorboard",
        ],
    );
    r.ok();
    assert!(
        r.stdout.contains("sequential_conv on 16 training"),
        "{}",
        r.stdout
    );
    let ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let names: Vec<String> = ck
        .model()
        .unwrap()
        .params
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "conv2d/kernel",
            "conv2d/bias",
            "conv2d_1/kernel",
            "conv2d_1/bias",
            "dense/kernel",
            "dense/bias",
            "dense_1/kernel",
            "dense_1/bias",
            "conv2d_2/kernel",
            "conv2d_2/bias",
            "conv2d_3/kernel",
            "conv2d_3/bias"
        ]
    );
    assert_eq!(ck.model().unwrap().code().len(), 32);
    let ckp = out.join("checkpoint.safetensors");
    let ckp = ckp.to_str().unwrap();
    let datas = data.to_str().unwrap();
    let r = run(&["eval", "--checkpoint", ckp, "--data", datas]);
    assert!(
        r.ok().stdout.contains("sequential_conv model"),
        "{}",
        r.stdout
    );
    let codes = t.path().join("codes.npy");
    let r = run(&[
        "encode",
        "--checkpoint",
        ckp,
        "--data",
        datas,
        "--out",
        codes.to_str().unwrap(),
    ]);
    r.ok();
    assert!(r.stdout.contains("8 codes of 1x1x32"), "{}", r.stdout);
    // --resume needs no file: the checkpoint carries the description. The same file again
    // (by another path) is the same model.
    let copy = t.path().join("copy.json");
    std::fs::copy(&file, &copy).unwrap();
    let mut c = cli();
    c.args([
        "--resume",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--no-tensorboard",
    ]);
    c.args(["--model", copy.to_str().unwrap()]);
    run_cmd(&mut c).ok();
    let ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.history.len(), 2);
    // An unknown --code-layer names the layers there are.
    train(
        &data,
        &t.path().join("run2"),
        &["--model", &file, "--code-layer", "nope"],
    )
    .fails_with(&["--code-layer nope", "no such layer", "conv2d_1", "reshape"]);
    // export: the built-ins' own files, never over an existing file.
    for kind in ["conv", "dense", "deep"] {
        let f = t.path().join(format!("{kind}.json"));
        run(&["export", "--model", kind, "--out", f.to_str().unwrap()]).ok();
        let want = std::fs::read_to_string(format!(
            "{}/assets/models/{kind}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), want);
        run(&["export", "--model", kind, "--out", f.to_str().unwrap()]).fails_with(&["exists"]);
    }
}
