//! The `train` command as a library call: data, device, run folder, the epoch loop, and a
//! writer thread (fed through flume) that writes metrics, checkpoints and pictures so that the
//! GPU never waits on the disk.
//!
//! Checkpoints: `checkpoint.safetensors` at the end of every epoch and, with
//! `checkpoint_every`, every N steps inside epochs; `best.safetensors` at the end of the epoch
//! with the lowest val_loss. A checkpoint taken inside an epoch records the step and the
//! losses of the steps done, and a resumed run continues from that very step (the epoch's
//! permutation is a function of the seed and the epoch), so that its metrics equal an
//! uninterrupted run's bit for bit. A stop request (Ctrl-C, SIGTERM: [`Control::stop`]) is
//! honoured between two steps: the steps already queued finish, a checkpoint is written,
//! and [`Error::Interrupted`] says how to resume.
use super::checkpoint::{self, Checkpoint};
use super::{DeviceSplit, EpochMetrics, TrainConfig, Trainer};
use crate::data::{self, Dataset};
use crate::gpu::{AdapterChoice, Gpu};
use crate::model::{Features, Model};
use crate::{atomic, report, Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: TrainConfig,
    /// `--epochs` as given (a resumed run may extend its total).
    pub epochs_flag: Option<usize>,
    pub data_dir: PathBuf,
    pub out_dir: Option<PathBuf>,
    pub adapter: AdapterChoice,
    pub resume: Option<PathBuf>,
}

/// How a run is stopped or paused from outside: the CLI's signal handler, tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Control<'a> {
    /// Polled between steps: 0 goes on; a signal's number stops the run after the steps
    /// already queued, with a checkpoint, as [`Error::Interrupted`].
    pub stop: Option<&'a AtomicI32>,
    /// Also write `checkpoint.safetensors` every N training steps (Adam's step count, over
    /// the whole run) inside epochs.
    pub checkpoint_every: Option<usize>,
    /// After the run (its last checkpoint written), profile 20 training steps and write the
    /// table to `profile.txt` and a Chrome trace to `trace.json` in the run folder.
    pub profile: bool,
    /// Fault injection for tests: destroy the device before the step that follows this many
    /// Adam steps.
    #[doc(hidden)]
    pub lose_device_after: Option<u64>,
}

/// Where [`Trainer::train_epoch_from`] starts an epoch and when it pauses.
pub struct EpochStart<'a> {
    /// Steps of the epoch already done (a mid-epoch checkpoint's `step`).
    pub step: usize,
    /// Their training losses, in step order.
    pub losses: &'a [f32],
    /// Asked before every step but the first: `(steps done in this epoch, Adam steps so
    /// far)`; true pauses the epoch there.
    pub pause: &'a dyn Fn(usize, u64) -> bool,
}

impl Default for EpochStart<'_> {
    fn default() -> Self {
        EpochStart {
            step: 0,
            losses: &[],
            pause: &|_, _| false,
        }
    }
}

/// How [`Trainer::train_epoch_from`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum EpochEnd {
    /// The epoch is complete and validated.
    Done(EpochMetrics),
    /// Paused before step `step` (0-based; that many steps done), with their losses; the GPU
    /// is idle and the weights are those after step `step`.
    Paused { step: usize, losses: Vec<f32> },
}

/// What the caller (the CLI) is told as training goes.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        adapter: String,
        run_dir: PathBuf,
        train_count: usize,
        test_count: usize,
        steps: usize,
        epochs: usize,
        first_epoch: usize,
        /// Steps of `first_epoch` already done (a checkpoint taken inside it).
        first_step: usize,
    },
    Progress {
        epoch: usize,
        done: usize,
        steps: usize,
        images_per_s: f64,
        /// The epoch's training loss so far (None until the first reading lands).
        running_loss: Option<f64>,
    },
    Epoch {
        metrics: EpochMetrics,
        epochs: usize,
    },
    Finished {
        run_dir: PathBuf,
    },
}

/// Loads the dataset in `dir`, with the first `limit` training images kept.
pub fn load_data(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    let mut d = data::load_dir(dir)?;
    if let Some(n) = limit {
        let n = n.min(d.train.images.count);
        let px = d.train.images.rows * d.train.images.cols;
        d.train.images.pixels.truncate(n * px);
        d.train.images.count = n;
        d.train.labels.truncate(n);
    }
    Ok(d)
}

pub fn features(d: &Dataset) -> Features {
    Features {
        h: d.train.images.rows as u32,
        w: d.train.images.cols as u32,
        c: 1,
    }
}

/// Resolves `--resume RUN_OR_CHECKPOINT` to a checkpoint file.
pub fn checkpoint_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join(CHECKPOINT)
    } else {
        p.to_path_buf()
    }
}

enum Job {
    Text(PathBuf, String),
    Checkpoint(PathBuf, Box<Checkpoint>),
    LossPlot(PathBuf, Vec<EpochMetrics>),
}

/// The writer thread: every file lands atomically, in order; the first error is kept.
fn writer() -> (flume::Sender<Job>, JoinHandle<Result<()>>) {
    let (tx, rx) = flume::unbounded::<Job>();
    let handle = std::thread::spawn(move || {
        let mut first_err = None;
        for job in rx.iter() {
            let r = match job {
                Job::Text(p, s) => atomic::write_atomic(&p, s.as_bytes()),
                Job::Checkpoint(p, ck) => checkpoint::save(&p, &ck),
                Job::LossPlot(p, h) => {
                    let rows: Vec<(usize, f64, f64)> =
                        h.iter().map(|m| (m.epoch, m.loss, m.val_loss)).collect();
                    report::loss_png(&p, &rows)
                }
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    });
    (tx, handle)
}

fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut s = String::from("epoch,loss,val_loss,seconds\n");
    for m in history {
        s.push_str(&format!(
            "{},{:.6},{:.6},{:.3}\n",
            m.epoch, m.loss, m.val_loss, m.seconds
        ));
    }
    s
}

fn create_run_dir(out: Option<&Path>) -> Result<PathBuf> {
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

fn config_json(
    opts: &TrainConfig,
    gpu: &Gpu,
    data_dir: &Path,
    d: &Dataset,
    resumed: bool,
) -> Result<String> {
    let v = serde_json::json!({
        "config": opts,
        "data": data_dir.display().to_string(),
        "train_images": d.train.images.count,
        "test_images": d.test.images.count,
        "adapter": {
            "name": gpu.info.name,
            "type": format!("{:?}", gpu.info.device_type),
            "backend": format!("{:?}", gpu.info.backend),
            "driver": gpu.info.driver,
            "driver_info": gpu.info.driver_info,
            "timestamps": gpu.has_timestamps(),
        },
        "versions": {
            "wgsl-autoencoder": env!("CARGO_PKG_VERSION"),
            "wgpu": "30",
        },
        "resumed": resumed,
        "written": chrono::Local::now().to_rfc3339(),
    });
    serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))
}

/// A checkpoint on disk, or queued for the writer thread (which writes in order).
#[derive(Clone, Debug)]
struct Saved {
    path: PathBuf,
    /// Epochs completed.
    epoch: usize,
    /// Steps of the next epoch done.
    step: usize,
}

impl Saved {
    fn describe(&self, steps: usize) -> String {
        if self.step == 0 {
            format!("epoch {}", self.epoch)
        } else {
            format!("epoch {}, step {} of {steps}", self.epoch + 1, self.step)
        }
    }
}

/// The hidden temporary files an atomic write leaves when the process is killed during it
/// (`.checkpoint.safetensors.XXXXXX.tmp`): only those of the files a run writes.
fn is_temp_file(name: &str) -> bool {
    const OURS: [&str; 8] = [
        CHECKPOINT,
        BEST,
        "config.json",
        "metrics.csv",
        "loss.png",
        "reconstructions.png",
        "codes.png",
        ".write-test",
    ];
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|n| {
            OURS.iter().any(|o| {
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

/// A path as a shell word.
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Trains as configured and leaves the run folder complete. `on_event` is called from this
/// thread; it should only print.
pub fn train(opts: &RunOptions, on_event: &mut dyn FnMut(Event)) -> Result<PathBuf> {
    train_with(opts, &Control::default(), on_event)
}

/// [`train`], stoppable and with mid-epoch checkpoints as `ctl` says.
pub fn train_with(
    opts: &RunOptions,
    ctl: &Control,
    on_event: &mut dyn FnMut(Event),
) -> Result<PathBuf> {
    if ctl.checkpoint_every == Some(0) {
        return Err(Error::Config(
            "--checkpoint-every must be at least 1 (steps)".into(),
        ));
    }
    let resumed = match &opts.resume {
        Some(p) => Some(checkpoint::load(&checkpoint_path(p))?),
        None => None,
    };
    if let Some(ck) = &resumed {
        if ck.model != opts.config.model {
            let (had, asked) = (ck.model.name(), opts.config.model.name());
            return Err(Error::Checkpoint {
                path: checkpoint_path(opts.resume.as_deref().unwrap_or(Path::new(""))),
                detail: format!(
                    "it holds a {had} model, but --model {asked} was asked for. To continue \
                     it, drop --model (or pass --model {had}); to train a {asked} model, \
                     leave out --resume"
                ),
            });
        }
    }
    let cfg = match &resumed {
        Some(ck) => {
            let mut c = ck.config.clone();
            c.epochs = opts.epochs_flag.unwrap_or(c.epochs);
            c
        }
        None => opts.config.clone(),
    };
    cfg.validate()?;
    let data = load_data(&opts.data_dir, cfg.train_limit)?;
    let input = features(&data);
    let model = Model::new(cfg.model, input)?;
    let steps = super::batches(data.train.images.count, cfg.batch_size).len();
    if let Some(ck) = &resumed {
        let path = checkpoint_path(opts.resume.as_deref().unwrap_or(Path::new("")));
        if ck.model != cfg.model || ck.input != input || ck.train_count != data.train.images.count {
            return Err(Error::Checkpoint {
                path,
                detail: format!(
                    "it was trained on {} {}x{} images; this dataset has {} {}x{}. Pass the \
                     --data and --train-limit of the run it comes from",
                    ck.train_count,
                    ck.input.h,
                    ck.input.w,
                    data.train.images.count,
                    input.h,
                    input.w
                ),
            });
        }
        if ck.step >= steps || ck.partial_losses.len() != ck.step {
            return Err(Error::Checkpoint {
                path,
                detail: format!(
                    "it was taken at step {} of an epoch of {steps} steps; it does not belong \
                     to this run's settings",
                    ck.step
                ),
            });
        }
        if ck.state.epoch >= cfg.epochs {
            return Err(Error::Config(format!(
                "the checkpoint has already done {} of {} epochs; pass a larger --epochs to continue",
                ck.state.epoch, cfg.epochs
            )));
        }
    }
    let gpu = Gpu::new(&opts.adapter)?;
    let train_split = DeviceSplit::upload(
        &gpu,
        "training images",
        &data.train.images.pixels,
        data.train.images.count,
    )?;
    let test_split = DeviceSplit::upload(
        &gpu,
        "test images",
        &data.test.images.pixels,
        data.test.images.count,
    )?;
    let mut trainer = Trainer::new(&gpu, model, &cfg, train_split, test_split)?;
    // Only now, when nothing about the settings can fail any more: a run that cannot start
    // leaves no folder behind.
    let run_dir = match (&opts.out_dir, &opts.resume) {
        (Some(d), _) => create_run_dir(Some(d))?,
        (None, Some(r)) => {
            let ck = checkpoint_path(r);
            create_run_dir(Some(ck.parent().unwrap_or(Path::new("."))))?
        }
        (None, None) => create_run_dir(None)?,
    };
    clean_temp_files(&run_dir);
    let mut history = Vec::new();
    let (mut from_step, mut from_losses) = (0, Vec::new());
    match &resumed {
        Some(ck) => {
            trainer.restore(&gpu, &ck.state)?;
            history = ck.history.clone();
            from_step = ck.step;
            from_losses = ck.partial_losses.clone();
        }
        None => trainer.init(&gpu),
    }
    let (jobs, handle) = writer();
    let send = |j: Job| {
        jobs.send(j)
            .map_err(|_| Error::Config("the writer thread stopped".into()))
    };
    send(Job::Text(
        run_dir.join("config.json"),
        config_json(&cfg, &gpu, &opts.data_dir, &data, resumed.is_some())?,
    ))?;
    on_event(Event::Started {
        adapter: gpu.name(),
        run_dir: run_dir.clone(),
        train_count: data.train.images.count,
        test_count: data.test.images.count,
        steps,
        epochs: cfg.epochs,
        first_epoch: trainer.epoch + 1,
        first_step: from_step,
    });
    let mut best = history
        .iter()
        .map(|m: &EpochMetrics| m.val_loss)
        .fold(f64::INFINITY, f64::min);
    let mut last_good: Option<Saved> = match (&opts.resume, &resumed) {
        (Some(p), Some(ck)) => Some(Saved {
            path: checkpoint_path(p),
            epoch: ck.state.epoch,
            step: ck.step,
        }),
        _ => None,
    };
    let kept = |last_good: &Option<Saved>| {
        let fix = "Try a smaller --lr";
        match last_good {
            Some(s) => format!(
                "The last good checkpoint is {} ({}). {fix}, or --resume from it.",
                s.path.display(),
                s.describe(steps)
            ),
            None => format!("No checkpoint had been written yet. {fix}."),
        }
    };
    let stop_signal = || {
        ctl.stop
            .map(|f| f.load(Ordering::SeqCst))
            .filter(|&s| s != 0)
    };
    let every = ctl.checkpoint_every.map(|n| n as u64);
    let pause = |_step: usize, iterations: u64| {
        if ctl.lose_device_after == Some(iterations) {
            gpu.device.destroy();
        }
        stop_signal().is_some() || every.is_some_and(|n| iterations.is_multiple_of(n))
    };
    let interrupted = |signal: i32, last_good: &Option<Saved>| {
        let detail = match last_good {
            Some(s) => {
                let mut cmd = format!(
                    "{} --resume {}",
                    env!("CARGO_PKG_NAME"),
                    shell_word(&run_dir)
                );
                if opts.data_dir != data::default_dir() {
                    cmd.push_str(&format!(" --data {}", shell_word(&opts.data_dir)));
                }
                if let Some(n) = ctl.checkpoint_every {
                    cmd.push_str(&format!(" --checkpoint-every {n}"));
                }
                format!(
                    "the checkpoint {} holds the run at {} ({} of {} epochs done). To continue \
                     it: {cmd}",
                    s.path.display(),
                    s.describe(steps),
                    s.epoch,
                    cfg.epochs
                )
            }
            None => "no training step had finished, so there is no checkpoint to resume; \
                     start the run again"
                .to_string(),
        };
        Error::Interrupted { signal, detail }
    };
    // Seconds of the current epoch's earlier segments (before pauses for mid-epoch
    // checkpoints), so that its reported time is the whole epoch's in this process.
    let mut carried = 0.0f64;
    let result = (|| -> Result<()> {
        while trainer.epoch < cfg.epochs {
            if let Some(signal) = stop_signal() {
                return Err(interrupted(signal, &last_good));
            }
            let epoch = trainer.epoch + 1;
            let start = Instant::now();
            let batch = cfg.batch_size as f64;
            let first = from_step;
            let from = EpochStart {
                step: from_step,
                losses: &from_losses,
                pause: &pause,
            };
            let running = trainer.running_loss();
            let end = trainer.train_epoch_from(&gpu, &from, &mut |done, steps| {
                let s = start.elapsed().as_secs_f64().max(1e-9);
                let loss = f64::from_bits(running.load(std::sync::atomic::Ordering::Relaxed));
                on_event(Event::Progress {
                    epoch,
                    done,
                    steps,
                    images_per_s: done.saturating_sub(first) as f64 * batch / s,
                    running_loss: loss.is_finite().then_some(loss),
                })
            });
            let mut m = match end {
                Ok(EpochEnd::Done(m)) => m,
                Ok(EpochEnd::Paused { step, losses }) => {
                    if let Some((i, v)) = losses.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                        return Err(Error::NonFiniteLoss {
                            value: *v,
                            epoch,
                            step: i + 1,
                            kept: kept(&last_good),
                        });
                    }
                    let ck = Checkpoint {
                        model: cfg.model,
                        input,
                        train_count: data.train.images.count,
                        config: cfg.clone(),
                        history: history.clone(),
                        state: trainer.state(&gpu)?,
                        step,
                        partial_losses: losses.clone(),
                    };
                    send(Job::Checkpoint(run_dir.join(CHECKPOINT), Box::new(ck)))?;
                    last_good = Some(Saved {
                        path: run_dir.join(CHECKPOINT),
                        epoch: trainer.epoch,
                        step,
                    });
                    (from_step, from_losses) = (step, losses);
                    carried += start.elapsed().as_secs_f64();
                    continue;
                }
                Err(Error::NonFiniteLoss {
                    value, epoch, step, ..
                }) => {
                    return Err(Error::NonFiniteLoss {
                        value,
                        epoch,
                        step,
                        kept: kept(&last_good),
                    });
                }
                Err(e) => return Err(e),
            };
            (from_step, from_losses) = (0, Vec::new());
            m.seconds += carried;
            m.train_seconds += carried;
            carried = 0.0;
            // Weights that give a non-finite validation loss are no checkpoint to keep.
            if !m.val_loss.is_finite() {
                return Err(Error::NonFiniteLoss {
                    value: m.val_loss as f32,
                    epoch: m.epoch,
                    step: steps,
                    kept: format!(
                        "(The validation loss after the epoch's last step.) {}",
                        kept(&last_good)
                    ),
                });
            }
            history.push(m);
            on_event(Event::Epoch {
                metrics: m,
                epochs: cfg.epochs,
            });
            let state = trainer.state(&gpu)?;
            let ck = Checkpoint {
                model: cfg.model,
                input,
                train_count: data.train.images.count,
                config: cfg.clone(),
                history: history.clone(),
                state,
                step: 0,
                partial_losses: Vec::new(),
            };
            if m.val_loss < best {
                best = m.val_loss;
                send(Job::Checkpoint(run_dir.join(BEST), Box::new(ck.clone())))?;
            }
            send(Job::Checkpoint(run_dir.join(CHECKPOINT), Box::new(ck)))?;
            send(Job::Text(
                run_dir.join("metrics.csv"),
                metrics_csv(&history),
            ))?;
            send(Job::LossPlot(run_dir.join("loss.png"), history.clone()))?;
            last_good = Some(Saved {
                path: run_dir.join(CHECKPOINT),
                epoch: trainer.epoch,
                step: 0,
            });
        }
        pictures(&gpu, &trainer, &data, &run_dir)?;
        if ctl.profile {
            let trace = run_dir.join("trace.json");
            let report = crate::bench::profile_trainer(&gpu, &mut trainer, 20, 3, Some(&trace))?;
            send(Job::Text(run_dir.join("profile.txt"), report.text()))?;
        }
        Ok(())
    })();
    // A lost device or a GPU error: say where training can continue from.
    let result = result.map_err(|e| {
        let note = match &last_good {
            Some(s) => format!(
                "The last checkpoint is {} ({}); --resume from it once the GPU works again.",
                s.path.display(),
                s.describe(steps)
            ),
            None => "No checkpoint had been written yet.".to_string(),
        };
        let with_note = |d: String| format!("{}. {note}", d.trim_end_matches([':', '.', ' ']));
        match e {
            Error::DeviceLost { adapter, detail } => Error::DeviceLost {
                adapter,
                detail: with_note(detail),
            },
            Error::Gpu { adapter, detail } => Error::Gpu {
                adapter,
                detail: with_note(detail),
            },
            e => e,
        }
    });
    drop(jobs);
    let written = handle
        .join()
        .map_err(|_| Error::Config("the writer thread panicked".into()))?;
    // A failed write comes first: an interrupted run's message promises a checkpoint.
    match (result, written) {
        (Err(Error::Interrupted { .. }), Err(w)) => return Err(w),
        (r, w) => {
            r?;
            w?;
        }
    }
    on_event(Event::Finished {
        run_dir: run_dir.clone(),
    });
    Ok(run_dir)
}

/// `reconstructions.png` (the first 10 test digits over their reconstructions) and, for the
/// conv model, `codes.png`.
pub fn pictures(gpu: &Gpu, trainer: &Trainer, data: &Dataset, dir: &Path) -> Result<()> {
    let px = data.test.images.rows * data.test.images.cols;
    let count = 10.min(data.test.images.count);
    let originals: Vec<f32> = data.test.images.pixels[..count * px]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    let layers = trainer.net.model.layers.len();
    let recon = trainer.infer(gpu, &originals, 0..layers)?;
    let (h, w) = (data.test.images.rows, data.test.images.cols);
    report::reconstructions_png(
        &dir.join("reconstructions.png"),
        &originals,
        &recon,
        count,
        h,
        w,
    )?;
    if trainer.net.model.kind == crate::model::ModelKind::Conv {
        let code = trainer.net.model.code();
        let codes = trainer.infer(gpu, &originals, 0..trainer.net.model.code_at)?;
        report::codes_png(
            &dir.join("codes.png"),
            &codes,
            count,
            code.h as usize,
            code.w as usize,
            code.c as usize,
        )?;
    }
    Ok(())
}
