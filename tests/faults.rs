//! Faults: nothing lost, nothing panics.
//!
//! - kill -9 of the training process at 20+ seeded random moments (start-up, training steps,
//!   checkpoint writes every step), each followed by a look at the run folder (a loadable
//!   checkpoint or none yet, no partial file) and a `--resume`; the chain of killed runs ends
//!   with the very metrics of an uninterrupted run.
//! - SIGINT in the middle of an epoch: checkpoint, exit code 130, a resume command that gives
//!   the uninterrupted run's metrics bit for bit; SIGTERM: 143; a second SIGINT quits at once.
//! - Temporary files of killed writers are removed when the folder is used again.
//! - In-process, deterministic: a stop request and `--checkpoint-every` pauses inside epochs
//!   change nothing in the metrics; a resumed mid-epoch checkpoint continues exactly.
//! - A destroyed device is `Error::DeviceLost` naming the adapter, from `Gpu::wait` and from
//!   a training step, without a hang; during `train`, the message names the last checkpoint.
//! - Damaged or foreign checkpoints through the binary: newer format version, edited
//!   metadata, a truncated mid-epoch checkpoint, a step past the epoch, another dataset shape.
//!
//! The adapter is `WGSL_AE_TEST_ADAPTER` (default `auto`: lavapipe on CI). The data are
//! synthetic 8x8 images (the dense model takes any size), so a step is a few milliseconds.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wgsl_autoencoder::checkpoint;
use wgsl_autoencoder::gpu::Gpu;
use wgsl_autoencoder::model::ModelKind;
use wgsl_autoencoder::run::{self, Control, Event, RunOptions, TrainRequest};
use wgsl_autoencoder::train::{EpochMetrics, TrainConfig, Trainer};
use wgsl_autoencoder::Error;

#[path = "common/mod.rs"]
mod common;

use common::{adapter_name, device_choice};

/// The binary with `--adapter`, Mesa's runtime-dir warning silenced.
fn bin() -> Command {
    let xdg = std::env::temp_dir().join("wgsl-ae-faults-xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgsl-autoencoder"));
    c.env("XDG_RUNTIME_DIR", &xdg)
        .env_remove("RUST_BACKTRACE")
        .args(["--adapter", &adapter_name()]);
    c
}

// ---- data ----------------------------------------------------------------------------------

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

/// `train` and `test` random images of `side` x `side` in `dir`.
fn dataset(dir: &Path, train: u32, test: u32, side: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(side as u64);
    let mut bytes = |n: u32| -> Vec<u8> { (0..n).map(|_| r.random()).collect() };
    let px = side * side;
    let files = [
        (
            "train-images-idx3-ubyte",
            idx(0x803, &[train, side, side], &bytes(train * px)),
        ),
        (
            "train-labels-idx1-ubyte",
            idx(0x801, &[train], &vec![1; train as usize]),
        ),
        (
            "t10k-images-idx3-ubyte",
            idx(0x803, &[test, side, side], &bytes(test * px)),
        ),
        (
            "t10k-labels-idx1-ubyte",
            idx(0x801, &[test], &vec![2; test as usize]),
        ),
    ];
    for (name, b) in files {
        std::fs::write(dir.join(name), b).unwrap();
    }
    dir.to_path_buf()
}

/// 64 training and 8 test images of 8x8.
fn small(dir: &Path) -> PathBuf {
    dataset(&dir.join("data"), 64, 8, 8)
}

// ---- processes -----------------------------------------------------------------------------

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.no_panic()
    }

    #[track_caller]
    fn no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{}",
            self.stderr
        );
        self
    }

    /// A clean refusal: exit code 1, `error:` first, every word in the message.
    #[track_caller]
    fn fails_with(&self, words: &[&str]) -> &Self {
        assert_eq!(
            self.code,
            Some(1),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.no_panic();
        assert!(
            self.stderr.trim_start().starts_with("error:"),
            "{}",
            self.stderr
        );
        for w in words {
            assert!(self.stderr.contains(w), "`{w}` missing:\n{}", self.stderr);
        }
        self
    }
}

fn run(c: &mut Command) -> Out {
    let o = c.output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `train` with `args` on `data` into `out` (or `--resume out` when `resume`).
fn train_cmd(data: &Path, out: &Path, resume: bool, args: &[&str]) -> Command {
    let mut c = bin();
    if resume {
        c.arg("--resume").arg(out);
    } else {
        c.arg("--out").arg(out);
    }
    c.args(args).arg("--data").arg(data);
    c
}

/// A running training process whose stdout is collected; `lines` passes each stdout line on
/// as it is read, with the moment it was read (`run folder:` when the device is up and
/// training begins, `epoch N/M - ...` at the end of each epoch).
struct Running {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    stdout: std::thread::JoinHandle<String>,
}

fn spawn(mut c: Command) -> Running {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send((Instant::now(), line.clone()));
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    Running {
        child,
        lines,
        stdout,
    }
}

impl Running {
    /// Waits (at most 60 s) for the next stdout line that starts with `prefix`; returns when
    /// it was read, or None if the process closed its stdout (ended) first.
    fn wait_for(&self, prefix: &str) -> Option<Instant> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.starts_with(prefix) => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits for the start of training (at most 60 s); false if the process ended first.
    fn wait_started(&self) -> bool {
        self.wait_for("run folder:").is_some()
    }

    /// Waits for the start of training and the end of its first epoch (the `epoch 1/` line),
    /// then for a quarter of the time that epoch took: a moment a quarter into epoch 2 on
    /// any device, fast or slow (the epochs of a run take about as long as each other).
    /// Panics with the process's output if it ends first.
    fn wait_into_epoch_2(self) -> Self {
        let started = self.wait_for("run folder:");
        let first = started.and_then(|s| self.wait_for("epoch 1/").map(|e| (s, e)));
        let Some((start, end)) = first else {
            let o = self.finish(Duration::from_secs(60));
            panic!(
                "ended before its first epoch did: {:?}\nstdout:\n{}\nstderr:\n{}",
                o.code, o.stdout, o.stderr
            );
        };
        std::thread::sleep((end - start) / 4);
        self
    }

    fn signal(&self, sig: &str) {
        // (It may have ended already: then there is nobody to signal.)
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits (at most `limit`), returning the output; a process still running is a hang.
    fn finish(mut self, limit: Duration) -> Out {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the process did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        Out {
            code: status.code(),
            stdout: self.stdout.join().unwrap(),
            stderr,
        }
    }
}

// ---- checks --------------------------------------------------------------------------------

fn key(h: &[EpochMetrics]) -> Vec<(usize, u64, u64)> {
    h.iter()
        .map(|m| (m.epoch, m.loss.to_bits(), m.val_loss.to_bits()))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// After a kill: every file is a complete one of the run's or a hidden temporary; the
/// checkpoints that exist load. Returns the temporary files.
#[track_caller]
fn folder_is_sound(dir: &Path) -> Vec<String> {
    // `.lock` stays behind a killed run (its lock died with the process; the next run in the
    // folder takes it).
    // `train/` and `validation/` hold the TensorBoard logs.
    const OURS: [&str; 10] = [
        ".lock",
        "train",
        "validation",
        "config.json",
        "checkpoint.safetensors",
        "best.safetensors",
        "metrics.csv",
        "loss.png",
        "reconstructions.png",
        "latent.png",
    ];
    let all = names(dir);
    for n in &all {
        assert!(
            OURS.contains(&n.as_str()) || is_temp(n),
            "unexpected {n} in {all:?}"
        );
    }
    for ck in ["checkpoint.safetensors", "best.safetensors"] {
        let p = dir.join(ck);
        if p.exists() {
            if let Err(e) = checkpoint::load(&p) {
                panic!("{ck} does not load after a kill: {e}");
            }
        }
    }
    if dir.join("metrics.csv").exists() {
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert!(
            csv.starts_with("epoch,loss,val_loss") && csv.ends_with('\n'),
            "{csv}"
        );
    }
    all.into_iter().filter(|n| is_temp(n)).collect()
}

// ---- kill -9 -------------------------------------------------------------------------------

/// 24 SIGKILLs at seeded random moments: a quarter anywhere from the process's start (device
/// creation, data loading, config.json), the rest in the first 250 ms of training, with a
/// checkpoint written after every step. After each: the folder is sound; the next process
/// resumes from it (or starts afresh when no checkpoint was written yet). The chain ends
/// with an uninterrupted resume whose history equals a straight run's, bit for bit.
#[test]
fn kill9_at_random_moments_then_resume_finishes_with_the_same_metrics() {
    let t0 = Instant::now();
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let epochs = 60;
    // The GPU kernel set: this test is about files and processes, not kernels, and starts
    // about 30 processes, each of which compiles its pipelines; lavapipe compiles the CPU
    // set's written-out dense kernels in ~0.3 s per process against ~0.05 s for the GPU set's
    // (the CPU set's resume is tested by the SIGINT test below).
    let args = [
        "--model",
        "dense",
        "--epochs",
        "60",
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--kernels",
        "gpu",
        "--checkpoint-every",
        "1",
    ];
    let straight = t.path().join("straight");
    run(&mut train_cmd(&data, &straight, false, &args[..10])).ok();
    let want = checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    assert_eq!(want.history.len(), epochs);

    let mut r = ChaCha8Rng::seed_from_u64(2024);
    let (mut kills, mut chains, mut mid_write, mut finished) = (0, 0, 0, 0);
    let mut dir = t.path().join("chain0");
    while kills < 24 {
        let ck = dir.join("checkpoint.safetensors");
        let resume = ck.exists();
        if resume && checkpoint::load(&ck).unwrap().state.epoch == epochs {
            // Killed after its last epoch: the chain is complete.
            let got = checkpoint::load(&ck).unwrap();
            assert_eq!(key(&got.history), key(&want.history));
            finished += 1;
            chains += 1;
            dir = t.path().join(format!("chain{chains}"));
            continue;
        }
        let p = spawn(train_cmd(&data, &dir, resume, &args));
        let early = r.random_bool(0.25);
        let delay = Duration::from_micros(if early {
            r.random_range(0..600_000)
        } else {
            r.random_range(0..250_000)
        });
        if !early && !p.wait_started() {
            let o = p.finish(Duration::from_secs(60));
            panic!("did not start: {}", o.stderr);
        }
        std::thread::sleep(delay);
        let mut p = p;
        let _ = p.child.kill(); // SIGKILL
        let o = p.finish(Duration::from_secs(60));
        o.no_panic();
        if o.code == Some(0) {
            // It finished before the kill: that chain is complete.
            let got = checkpoint::load(&ck).unwrap();
            assert_eq!(key(&got.history), key(&want.history));
            finished += 1;
            chains += 1;
            dir = t.path().join(format!("chain{chains}"));
            continue;
        }
        assert_eq!(o.code, None, "not killed: {}\n{}", o.stdout, o.stderr);
        kills += 1;
        let temps = folder_is_sound(&dir);
        if temps
            .iter()
            .any(|n| n.starts_with(".checkpoint.safetensors."))
        {
            mid_write += 1;
        }
    }
    // The last chain runs to its end without a kill.
    let ck = dir.join("checkpoint.safetensors");
    let resume = ck.exists();
    if resume && checkpoint::load(&ck).unwrap().state.epoch == epochs {
        finished += 1;
    } else {
        let o = run(&mut train_cmd(&data, &dir, resume, &args));
        o.ok();
        finished += 1;
    }
    let got = checkpoint::load(&ck).unwrap();
    assert_eq!(
        key(&got.history),
        key(&want.history),
        "history after {kills} kills"
    );
    assert_eq!(
        got.state, want.state,
        "weights and moments after {kills} kills"
    );
    assert!(
        names(&dir).iter().all(|n| !is_temp(n)),
        "temporary files left: {:?}",
        names(&dir)
    );
    eprintln!(
        "{kills} kill -9 moments over {} chain(s) ({finished} finished, all equal to the \
         straight run); {mid_write} kill(s) left a checkpoint's temporary file (killed during \
         its write); {:.1}s",
        chains + 1,
        t0.elapsed().as_secs_f64()
    );
}

// ---- signals -------------------------------------------------------------------------------

/// On [`sig_data`]: 512 one-image steps per epoch (about a second on lavapipe), two epochs,
/// so that a signal sent a quarter into epoch 2 ([`Running::wait_into_epoch_2`]) lands inside
/// an epoch.
/// Seven steps per submit: a signal stops the run inside an execution, and the resume (with
/// the default, one per submit on lavapipe) must still give the straight run's bits.
const SIG_ARGS: [&str; 10] = [
    "--model",
    "dense",
    "--epochs",
    "2",
    "--batch-size",
    "1",
    "--seed",
    "5",
    "--steps-per-execution",
    "7",
];

/// 512 training and 8 test images of 8x8.
fn sig_data(dir: &Path) -> PathBuf {
    dataset(&dir.join("data512"), 512, 8, 8)
}

/// Sends `sig` a quarter into epoch 2 (timed by the child's own epoch 1, see
/// [`Running::wait_into_epoch_2`]) and returns the output.
fn interrupted_run(data: &Path, out: &Path, sig: &str) -> Out {
    let p = spawn(train_cmd(data, out, false, &SIG_ARGS)).wait_into_epoch_2();
    p.signal(sig);
    p.finish(Duration::from_secs(60))
}

#[test]
fn sigint_mid_epoch_then_resume_equals_the_uninterrupted_run() {
    let t = tempfile::tempdir().unwrap();
    let data = sig_data(t.path());
    let straight = t.path().join("straight");
    run(&mut train_cmd(&data, &straight, false, &SIG_ARGS)).ok();
    let want = checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();

    let dir = t.path().join("run");
    let o = interrupted_run(&data, &dir, "INT");
    assert_eq!(
        o.code,
        Some(130),
        "stdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    o.no_panic();
    assert!(
        o.stderr.contains("stopping after the current step"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("stopped by SIGINT"), "{}", o.stderr);
    let ck = checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    let resume = format!("--resume {}", dir.display());
    assert!(o.stderr.contains(&resume), "{}", o.stderr);
    assert!(o.stderr.contains("--data"), "{}", o.stderr);
    assert!(o.stderr.contains("--steps-per-execution 7"), "{}", o.stderr);
    if ck.step > 0 {
        let at = format!("epoch {}, step {} of 512", ck.state.epoch + 1, ck.step);
        assert!(o.stderr.contains(&at), "{at}: {}", o.stderr);
    }
    assert_eq!(ck.partial_losses.len(), ck.step);
    assert_eq!(
        ck.state.iterations,
        512 * ck.state.epoch as u64 + ck.step as u64
    );
    eprintln!(
        "SIGINT stopped the run at epoch {} step {} of 512",
        ck.state.epoch + 1,
        ck.step
    );

    // The resume command it printed, as printed.
    let mut c = bin();
    c.args(["--resume"]).arg(&dir).arg("--data").arg(&data);
    let r = run(&mut c);
    r.ok();
    if ck.step > 0 {
        let line = format!(
            "epoch {} continues at step {}",
            ck.state.epoch + 1,
            ck.step + 1
        );
        assert!(r.stdout.contains(&line), "{}", r.stdout);
    }
    let got = checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    assert_eq!(key(&got.history), key(&want.history));
    assert_eq!(got.state, want.state);
    let rows = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(rows(&dir), rows(&straight));
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_143() {
    let t = tempfile::tempdir().unwrap();
    let data = sig_data(t.path());
    let dir = t.path().join("run");
    let o = interrupted_run(&data, &dir, "TERM");
    assert_eq!(
        o.code,
        Some(143),
        "stdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    o.no_panic();
    assert!(o.stderr.contains("stopped by SIGTERM"), "{}", o.stderr);
    assert!(o.stderr.contains("--resume"), "{}", o.stderr);
    checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    assert!(names(&dir).iter().all(|n| !is_temp(n)), "{:?}", names(&dir));
}

/// The second Ctrl-C does not wait for a checkpoint: exit 130 at once, and the folder is
/// still sound (its files are whole; at worst a temporary file stays, removed by the next
/// run, which resumes).
#[test]
fn a_second_sigint_quits_at_once() {
    let t = tempfile::tempdir().unwrap();
    let data = sig_data(t.path());
    let dir = t.path().join("run");
    let mut args = SIG_ARGS.to_vec();
    args.extend(["--checkpoint-every", "1"]);
    let p = spawn(train_cmd(&data, &dir, false, &args)).wait_into_epoch_2();
    p.signal("INT");
    p.signal("INT");
    let t1 = Instant::now();
    let o = p.finish(Duration::from_secs(10));
    assert_eq!(o.code, Some(130), "{}", o.stderr);
    o.no_panic();
    assert!(t1.elapsed() < Duration::from_secs(3), "{:?}", t1.elapsed());
    folder_is_sound(&dir);
    let resume = dir.join("checkpoint.safetensors").exists();
    let mut c = train_cmd(&data, &dir, resume, &SIG_ARGS);
    run(&mut c).ok();
    assert!(names(&dir).iter().all(|n| !is_temp(n)), "{:?}", names(&dir));
}

#[test]
fn leftover_temporary_files_are_removed_when_the_folder_is_used_again() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let dir = t.path().join("run");
    let args = ["--model", "dense", "--epochs", "1", "--batch-size", "16"];
    run(&mut train_cmd(&data, &dir, false, &args)).ok();
    let ck = std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    let left = [
        ".checkpoint.safetensors.a1B2c3.tmp",
        ".best.safetensors.XyZ987.tmp",
        ".metrics.csv.q9W8e7.tmp",
    ];
    for n in left {
        std::fs::write(dir.join(n), &ck[..ck.len() / 3]).unwrap();
    }
    // Not ours: kept.
    std::fs::write(dir.join(".notes.txt.tmp"), b"mine").unwrap();
    std::fs::write(dir.join("checkpoint.safetensors.bak"), b"mine").unwrap();
    let mut c = bin();
    c.arg("--resume")
        .arg(&dir)
        .args(["--epochs", "2", "--data"])
        .arg(&data);
    run(&mut c).ok();
    let now = names(&dir);
    for n in left {
        assert!(!now.contains(&n.to_string()), "{n} still there: {now:?}");
    }
    assert!(now.contains(&".notes.txt.tmp".to_string()), "{now:?}");
    assert!(
        now.contains(&"checkpoint.safetensors.bak".to_string()),
        "{now:?}"
    );
}

// ---- in-process: stop and pause inside epochs ----------------------------------------------

fn options(data: &Path, out: Option<PathBuf>, resume: Option<PathBuf>) -> RunOptions {
    RunOptions {
        request: TrainRequest::from_config(&TrainConfig {
            epochs: 3,
            batch_size: 4,
            seed: 9,
            ..TrainConfig::new(ModelKind::Dense)
        }),
        data_dir: Some(data.to_path_buf()),
        overwrite: false,
        tensorboard: true,
        out_dir: out,
        device: device_choice(),
        resume,
    }
}

/// 16 steps per epoch. Pausing every 5 steps for a checkpoint changes nothing; a stop
/// request inside epoch 2 gives `Error::Interrupted` and a mid-epoch checkpoint, whose resume
/// ends with the straight run's history, weights and moments.
#[test]
fn stop_and_pause_inside_epochs_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let straight =
        run::train(&options(&data, Some(t.path().join("a")), None), &mut |_| {}).unwrap();
    let want = checkpoint::load(&straight.join(run::CHECKPOINT)).unwrap();

    let paused = run::train_with(
        &options(&data, Some(t.path().join("b")), None),
        &Control {
            checkpoint_every: Some(5),
            ..Control::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let got = checkpoint::load(&paused.join(run::CHECKPOINT)).unwrap();
    assert_eq!(key(&got.history), key(&want.history));
    assert_eq!(got.state, want.state);

    let stop = AtomicI32::new(0);
    let dir = t.path().join("c");
    let r = run::train_with(
        &options(&data, Some(dir.clone()), None),
        &Control {
            stop: Some(&stop),
            ..Control::default()
        },
        &mut |e| {
            if let Event::Progress { epoch: 2, done, .. } = e {
                if done >= 1 {
                    stop.store(2, Ordering::SeqCst);
                }
            }
        },
    );
    let detail = match r {
        Err(Error::Interrupted {
            signal: 2,
            detail,
            resume,
        }) => {
            assert_eq!(resume.as_deref(), Some(dir.as_path()));
            detail
        }
        other => panic!("{other:?}"),
    };
    let ck = checkpoint::load(&dir.join(run::CHECKPOINT)).unwrap();
    assert_eq!(ck.state.epoch, 1);
    assert!(ck.step > 0 && ck.step < 16, "step {}", ck.step);
    assert_eq!(ck.state.iterations, 16 + ck.step as u64);
    assert!(
        detail.contains(&format!("epoch 2, step {} of 16", ck.step)),
        "{detail}"
    );
    let mut first_step = None;
    run::train(&options(&data, None, Some(dir.clone())), &mut |e| {
        if let Event::Started { first_step: s, .. } = e {
            first_step = Some(s);
        }
    })
    .unwrap();
    assert_eq!(first_step, Some(ck.step));
    let got = checkpoint::load(&dir.join(run::CHECKPOINT)).unwrap();
    assert_eq!(key(&got.history), key(&want.history));
    assert_eq!(got.state, want.state);
}

// ---- device loss ---------------------------------------------------------------------------

/// Runs `f` on a thread; a hang past `limit` fails the test instead of stalling it.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no answer within {limit:?}: a hang"))
}

#[test]
fn a_destroyed_device_is_device_lost_naming_the_adapter() {
    within(Duration::from_secs(60), || {
        let gpu = Gpu::new(&device_choice()).unwrap();
        let name = gpu.name();
        let buf = gpu.upload("probe", &[1.0f32, 2.0, 3.0]).unwrap();
        gpu.wait().unwrap();
        gpu.device.destroy();
        for (what, r) in [
            ("wait", gpu.wait()),
            ("check", gpu.check()),
            ("read", gpu.read::<f32>(&buf).map(|_| ())),
        ] {
            match r {
                Err(e @ Error::DeviceLost { .. }) => {
                    let m = e.to_string();
                    assert!(m.contains(&name), "{what}: {m}");
                    assert!(m.contains("lost"), "{what}: {m}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    });
}

#[test]
fn a_training_step_on_a_destroyed_device_is_an_error() {
    within(Duration::from_secs(60), || {
        let t = tempfile::tempdir().unwrap();
        let data = wgsl_autoencoder::data::load(&small(t.path()), None).unwrap();
        let gpu = Gpu::new(&device_choice()).unwrap();
        let cfg = TrainConfig {
            batch_size: 16,
            ..TrainConfig::new(ModelKind::Dense)
        };
        let model = cfg.build_model(data.features()).unwrap();
        let mut trainer = Trainer::for_dataset(&gpu, model, &cfg, &data).unwrap();
        trainer.init(&gpu).unwrap();
        trainer.train_epoch(&gpu, &mut |_, _| {}).unwrap();
        gpu.device.destroy();
        match trainer.train_epoch(&gpu, &mut |_, _| {}) {
            Err(e @ Error::DeviceLost { .. }) => assert!(e.to_string().contains(&gpu.name())),
            other => panic!("{other:?}"),
        }
    });
}

/// The device is lost after 6 steps (16 per epoch), a checkpoint having been written after
/// step 4: the error names the adapter and that checkpoint, which resumes to the straight
/// run's result.
#[test]
fn device_lost_during_training_names_the_last_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let dir = t.path().join("run");
    let r = within(Duration::from_secs(120), {
        let (data, dir) = (data.clone(), dir.clone());
        move || {
            run::train_with(
                &options(&data, Some(dir), None),
                &Control {
                    checkpoint_every: Some(4),
                    lose_device_after: Some(6),
                    ..Control::default()
                },
                &mut |_| {},
            )
        }
    });
    let m = match r {
        Err(e @ Error::DeviceLost { .. }) => e.to_string(),
        other => panic!("{other:?}"),
    };
    eprintln!("{m}");
    let ck_path = dir.join(run::CHECKPOINT);
    // It names the adapter the run opened (the one under test), whatever it is.
    let adapter = common::gpu().name();
    assert!(m.contains(&adapter), "{adapter}: {m}");
    assert!(m.contains(&ck_path.display().to_string()), "{m}");
    assert!(
        m.contains("epoch 1, step 4 of 16") && m.contains("--resume"),
        "{m}"
    );
    let ck = checkpoint::load(&ck_path).unwrap();
    assert_eq!((ck.state.epoch, ck.step), (0, 4));

    let straight =
        run::train(&options(&data, Some(t.path().join("a")), None), &mut |_| {}).unwrap();
    let want = checkpoint::load(&straight.join(run::CHECKPOINT)).unwrap();
    run::train(&options(&data, None, Some(dir.clone())), &mut |_| {}).unwrap();
    let got = checkpoint::load(&ck_path).unwrap();
    assert_eq!(key(&got.history), key(&want.history));
    assert_eq!(got.state, want.state);
}

// ---- damaged checkpoints through the binary ------------------------------------------------

/// Rewrites the metadata of a checkpoint file (the tensors as they are).
fn edit_metadata(path: &Path, edit: impl FnOnce(&mut std::collections::HashMap<String, String>)) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    edit(&mut meta);
    std::fs::write(
        path,
        safetensors::serialize(st.tensors(), Some(meta)).unwrap(),
    )
    .unwrap();
}

#[test]
fn damaged_checkpoints_through_the_binary() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let good = t.path().join("good");
    let args = ["--model", "dense", "--epochs", "1", "--batch-size", "16"];
    run(&mut train_cmd(&data, &good, false, &args)).ok();
    let ck = checkpoint::load(&good.join(run::CHECKPOINT)).unwrap();
    let resume = |dir: &Path, extra: &[&str]| {
        let mut c = bin();
        c.arg("--resume")
            .arg(dir)
            .args(["--epochs", "3"])
            .args(extra)
            .arg("--data")
            .arg(&data);
        run(&mut c)
    };
    let copy = |name: &str| {
        let d = t.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(good.join(run::CHECKPOINT), d.join(run::CHECKPOINT)).unwrap();
        d
    };

    let d = copy("newer");
    edit_metadata(&d.join(run::CHECKPOINT), |m| {
        m.insert("format_version".into(), "99".into());
    });
    resume(&d, &[]).fails_with(&["format version 99 is newer", "update wgsl-autoencoder"]);

    let d = copy("edited");
    edit_metadata(&d.join(run::CHECKPOINT), |m| {
        m.insert("epoch".into(), "0".into());
    });
    resume(&d, &[]).fails_with(&["checksum mismatch", "altered or damaged"]);

    // A mid-epoch checkpoint, cut short.
    let d = t.path().join("mid");
    std::fs::create_dir_all(&d).unwrap();
    let mid = checkpoint::Checkpoint {
        step: 2,
        partial_losses: vec![0.69, 0.68],
        ..ck.clone()
    };
    let bytes = checkpoint::encode(&mid).unwrap();
    std::fs::write(d.join(run::CHECKPOINT), &bytes[..bytes.len() - 100]).unwrap();
    resume(&d, &[]).fails_with(&["truncated"]);
    // Whole, it resumes at epoch 2, step 3.
    std::fs::write(d.join(run::CHECKPOINT), &bytes).unwrap();
    let o = resume(&d, &[]);
    o.ok();
    assert!(
        o.stdout.contains("epoch 2 continues at step 3"),
        "{}",
        o.stdout
    );

    // A step past the epoch's 4 steps (a consistent file, as a bug elsewhere might write).
    let d = t.path().join("past");
    std::fs::create_dir_all(&d).unwrap();
    let past = checkpoint::Checkpoint {
        step: 9,
        partial_losses: vec![0.5; 9],
        ..ck.clone()
    };
    checkpoint::save(&d.join(run::CHECKPOINT), &past).unwrap();
    resume(&d, &[]).fails_with(&["step 9 of an epoch of 4 steps"]);

    // Another dataset shape (28x28 images).
    let other = dataset(&t.path().join("data28"), 64, 8, 28);
    let d = copy("shape");
    let mut c = bin();
    c.arg("--resume")
        .arg(&d)
        .args(["--epochs", "3", "--data"])
        .arg(&other);
    // The run's checkpoint records its files: other files are refused before their shape.
    run(&mut c).fails_with(&["not the file the run trained on", "--data"]);

    let mut c = train_cmd(&data, &t.path().join("zero"), false, &args);
    c.args(["--checkpoint-every", "0"]);
    run(&mut c).fails_with(&["--checkpoint-every must be at least 1"]);
    assert!(!t.path().join("zero").exists());
}
