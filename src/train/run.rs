//! The `train` command as a library call: data, device, run folder, the epoch loop, and a
//! writer thread (fed through flume) that writes metrics, checkpoints and pictures so that the
//! GPU never waits on the disk.
use super::checkpoint::{self, Checkpoint};
use super::{DeviceSplit, EpochMetrics, TrainConfig, Trainer};
use crate::data::{self, Dataset};
use crate::gpu::{AdapterChoice, Gpu};
use crate::model::{Features, Model};
use crate::{atomic, report, Error, Result};
use std::path::{Path, PathBuf};
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
    },
    Progress {
        epoch: usize,
        done: usize,
        steps: usize,
        images_per_s: f64,
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

/// Trains as configured and leaves the run folder complete. `on_event` is called from this
/// thread; it should only print.
pub fn train(opts: &RunOptions, on_event: &mut dyn FnMut(Event)) -> Result<PathBuf> {
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
    if let Some(ck) = &resumed {
        if ck.model != cfg.model || ck.input != input || ck.train_count != data.train.images.count {
            return Err(Error::Checkpoint {
                path: checkpoint_path(opts.resume.as_deref().unwrap_or(Path::new(""))),
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
    let mut history = Vec::new();
    match &resumed {
        Some(ck) => {
            trainer.restore(&gpu, &ck.state)?;
            history = ck.history.clone();
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
    let steps = super::batches(data.train.images.count, cfg.batch_size).len();
    on_event(Event::Started {
        adapter: gpu.name(),
        run_dir: run_dir.clone(),
        train_count: data.train.images.count,
        test_count: data.test.images.count,
        steps,
        epochs: cfg.epochs,
        first_epoch: trainer.epoch + 1,
    });
    let mut best = history
        .iter()
        .map(|m: &EpochMetrics| m.val_loss)
        .fold(f64::INFINITY, f64::min);
    let mut last_good: Option<PathBuf> = opts.resume.as_deref().map(checkpoint_path);
    let kept = |last_good: &Option<PathBuf>, epoch: usize| {
        let fix = "Try a smaller --lr";
        match last_good {
            Some(p) => format!(
                "The last good checkpoint is {} (epoch {}). {fix}, or --resume from it.",
                p.display(),
                epoch - 1
            ),
            None => format!("No checkpoint had been written yet. {fix}."),
        }
    };
    let result = (|| -> Result<()> {
        while trainer.epoch < cfg.epochs {
            let epoch = trainer.epoch + 1;
            let start = Instant::now();
            let batch = cfg.batch_size as f64;
            let m = trainer.train_epoch(&gpu, &mut |done, steps| {
                let s = start.elapsed().as_secs_f64().max(1e-9);
                on_event(Event::Progress {
                    epoch,
                    done,
                    steps,
                    images_per_s: done as f64 * batch / s,
                })
            });
            let m = match m {
                Ok(m) => m,
                Err(Error::NonFiniteLoss {
                    value, epoch, step, ..
                }) => {
                    return Err(Error::NonFiniteLoss {
                        value,
                        epoch,
                        step,
                        kept: kept(&last_good, epoch),
                    });
                }
                Err(e) => return Err(e),
            };
            // Weights that give a non-finite validation loss are no checkpoint to keep.
            if !m.val_loss.is_finite() {
                return Err(Error::NonFiniteLoss {
                    value: m.val_loss as f32,
                    epoch: m.epoch,
                    step: steps,
                    kept: format!(
                        "(The validation loss after the epoch's last step.) {}",
                        kept(&last_good, m.epoch)
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
            last_good = Some(run_dir.join(CHECKPOINT));
        }
        pictures(&gpu, &trainer, &data, &run_dir)
    })();
    drop(jobs);
    let written = handle
        .join()
        .map_err(|_| Error::Config("the writer thread panicked".into()))?;
    result?;
    written?;
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
