//! A live run: the epoch loop, checkpoints at epoch ends and inside epochs, stop requests,
//! and what an error says about the last checkpoint that can be resumed.
use super::folder::{self, RunDir};
use super::setup::Setup;
use super::tensorboard as tb;
use super::writer::{Job, Pictures, Writer};
use super::{Control, Event};
use crate::checkpoint::Checkpoint;
use crate::gpu::Gpu;
use crate::infer;
use crate::model::Model;
use crate::train::profile::profile_steps;
use crate::train::{EpochEnd, EpochMetrics, EpochStart, Trainer};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

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
    /// `PATH (epoch E)` or `PATH (epoch E, step S of N)`: how messages name a checkpoint.
    fn named(&self, steps: usize) -> String {
        format!("{} ({})", self.path.display(), self.describe(steps))
    }

    fn describe(&self, steps: usize) -> String {
        if self.step == 0 {
            format!("epoch {}", self.epoch)
        } else {
            format!("epoch {}, step {} of {steps}", self.epoch + 1, self.step)
        }
    }
}

pub(super) struct Session<'a> {
    setup: Setup,
    ctl: &'a Control<'a>,
    dir: PathBuf,
    /// Holds the folder's lock until the run ends.
    _claim: RunDir,
    /// Log to TensorBoard event files.
    tensorboard: bool,
    writer: Writer,
    history: Vec<EpochMetrics>,
    best: f64,
    last_good: Option<Saved>,
    /// Where the next epoch starts: steps already done and their losses.
    from_step: usize,
    from_losses: Vec<f32>,
    /// Seconds of the current epoch's earlier segments (before pauses for mid-epoch
    /// checkpoints), so that its reported time is the whole epoch's in this process.
    carried: f64,
}

impl<'a> Session<'a> {
    /// Starts the writer, writes `config.json` and announces the run.
    pub fn start(
        setup: Setup,
        ctl: &'a Control<'a>,
        gpu: &Gpu,
        trainer: &mut Trainer,
        claim: RunDir,
        tensorboard: bool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Self> {
        let dir = claim.path.clone();
        let writer = Writer::start();
        writer.send(Job::Text(
            dir.join("config.json"),
            config_json(&setup, gpu, trainer.steps_per_execution(), &dir)?,
        ))?;
        if tensorboard {
            let resume = setup.resumed.as_ref().map(|(ck, _)| tb::Resume {
                epochs: ck.state.epoch,
                iterations: ck.state.iterations,
            });
            writer.send(Job::TensorboardOpen(dir.clone(), resume))?;
        }
        let (history, from_step, from_losses, last_good) = match &setup.resumed {
            Some((ck, path)) => (
                ck.history.clone(),
                ck.step,
                ck.partial_losses.clone(),
                Some(Saved {
                    path: path.clone(),
                    epoch: ck.state.epoch,
                    step: ck.step,
                }),
            ),
            None => (Vec::new(), 0, Vec::new(), None),
        };
        on_event(Event::Started {
            adapter: gpu.name(),
            kernels: gpu.kernels.name().into(),
            folds: gpu.folds.name(),
            folds_by: gpu.folds_by.describe(),
            steps_per_execution: trainer.steps_per_execution(),
            run_dir: dir.clone(),
            model: setup.cfg.model.name().into(),
            train_count: setup.data.train.images.count,
            test_count: setup.data.test.images.count,
            steps: setup.steps,
            epochs: setup.cfg.epochs,
            first_epoch: trainer.epoch + 1,
            first_step: from_step,
        });
        let best = history
            .iter()
            .map(|m| m.val_loss)
            .fold(f64::INFINITY, f64::min);
        Ok(Session {
            setup,
            ctl,
            dir,
            _claim: claim,
            tensorboard,
            writer,
            history,
            best,
            last_good,
            from_step,
            from_losses,
            carried: 0.0,
        })
    }

    /// Every remaining epoch, then the pictures (and the profile, if asked).
    pub fn train(
        &mut self,
        gpu: &Gpu,
        trainer: &mut Trainer,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<()> {
        while trainer.epoch < self.setup.cfg.epochs {
            if let Some(signal) = self.stop_signal() {
                return Err(self.interrupted(signal));
            }
            self.writer.check().map_err(|e| self.write_failed(e))?;
            self.epoch(gpu, trainer, on_event)?;
        }
        self.send(Job::Pictures(
            self.dir.clone(),
            Box::new(pictures(gpu, trainer, &self.setup)?),
        ))?;
        if self.ctl.profile {
            let trace = self.dir.join("trace.json");
            let report = profile_steps(gpu, trainer, 20, 3, Some(&trace))?;
            self.send(Job::Text(self.dir.join("profile.txt"), report.text()))?;
        }
        Ok(())
    }

    /// One epoch, or the part of it up to a pause (a mid-epoch checkpoint or a stop).
    fn epoch(
        &mut self,
        gpu: &Gpu,
        trainer: &mut Trainer,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let epoch = trainer.epoch + 1;
        let start = Instant::now();
        let (batch, first) = (self.setup.cfg.batch_size as f64, self.from_step);
        let losses = std::mem::take(&mut self.from_losses);
        let (ctl, every) = (self.ctl, self.ctl.checkpoint_every.map(|n| n as u64));
        let write_failed = self.writer.failed.clone();
        // A stop request, a mid-epoch checkpoint or a failed write pause the epoch; the
        // pause's checkpoint then reports the failed write.
        let pause = |_step: usize, iterations: u64| {
            if ctl.lose_device_after == Some(iterations) {
                gpu.device.destroy();
            }
            stop_signal(ctl).is_some()
                || every.is_some_and(|n| iterations.is_multiple_of(n))
                || write_failed.load(Ordering::SeqCst)
        };
        let from = EpochStart {
            step: self.from_step,
            losses: &losses,
            pause: &pause,
        };
        let running = trainer.running_loss();
        // Adam's step count before this epoch's first step, from which `batch_loss` counts.
        let base = trainer.iterations - self.from_step as u64;
        let end = trainer.train_epoch_from(gpu, &from, &mut |done, steps| {
            let s = start.elapsed().as_secs_f64().max(1e-9);
            let loss = f64::from_bits(running.load(Ordering::Relaxed));
            on_event(Event::Progress {
                epoch,
                done,
                steps,
                images_per_s: done.saturating_sub(first) as f64 * batch / s,
                running_loss: loss.is_finite().then_some(loss),
            })
        });
        self.log_running_losses(trainer, base)?;
        match end {
            Ok(EpochEnd::Done(m)) => self.end_epoch(gpu, trainer, m, on_event),
            Ok(EpochEnd::Paused { step, losses }) => {
                self.pause(gpu, trainer, epoch, step, losses)?;
                self.carried += start.elapsed().as_secs_f64();
                Ok(())
            }
            Err(Error::NonFiniteLoss {
                value, epoch, step, ..
            }) => Err(self.non_finite(value, epoch, step, String::new())),
            Err(e) => Err(e),
        }
    }

    /// The epoch's running losses, as read for the progress bar, into TensorBoard's
    /// `batch_loss` at the Adam step each reaches.
    fn log_running_losses(&self, trainer: &mut Trainer, base: u64) -> Result<()> {
        let readings = trainer.take_loss_readings();
        if !self.tensorboard {
            return Ok(());
        }
        for (covered, loss) in readings.into_iter().filter(|r| r.1.is_finite()) {
            let iteration = base + covered as u64;
            self.send(Job::Tensorboard(tb::Record::Batch { iteration, loss }))?;
        }
        Ok(())
    }

    /// A pause inside an epoch: a checkpoint of the steps done, unless a loss went bad.
    fn pause(
        &mut self,
        gpu: &Gpu,
        trainer: &Trainer,
        epoch: usize,
        step: usize,
        losses: Vec<f32>,
    ) -> Result<()> {
        if let Some((i, v)) = losses.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(self.non_finite(*v, epoch, i + 1, String::new()));
        }
        let ck = self.checkpoint(gpu, trainer, step, losses.clone())?;
        self.save(folder::CHECKPOINT, ck, trainer.epoch, step)?;
        (self.from_step, self.from_losses) = (step, losses);
        Ok(())
    }

    /// A finished epoch: its metrics, checkpoints, metrics.csv and the loss plot.
    fn end_epoch(
        &mut self,
        gpu: &Gpu,
        trainer: &Trainer,
        mut m: EpochMetrics,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<()> {
        self.from_step = 0;
        m.seconds += self.carried;
        m.train_seconds += self.carried;
        self.carried = 0.0;
        // Weights that give a non-finite validation loss are no checkpoint to keep.
        if !m.val_loss.is_finite() {
            let note = "(The validation loss after the epoch's last step.) ".to_string();
            return Err(self.non_finite(m.val_loss as f32, m.epoch, self.setup.steps, note));
        }
        // The last epoch's writes first: a failed one stops the run before this epoch is
        // reported or written.
        self.writer.settle().map_err(|e| self.write_failed(e))?;
        self.history.push(m);
        on_event(Event::Epoch {
            metrics: m,
            epochs: self.setup.cfg.epochs,
        });
        let ck = self.checkpoint(gpu, trainer, 0, Vec::new())?;
        if m.val_loss < self.best {
            self.best = m.val_loss;
            self.send(Job::Checkpoint(
                self.dir.join(folder::BEST),
                Box::new(ck.clone()),
            ))?;
        }
        if self.tensorboard {
            let record = self.epoch_record(gpu, trainer, &m, &ck.state.params)?;
            self.send(Job::Tensorboard(tb::Record::Epoch(Box::new(record))))?;
        }
        self.save(folder::CHECKPOINT, ck, trainer.epoch, 0)?;
        self.send(Job::Text(
            self.dir.join("metrics.csv"),
            metrics_csv(&self.history),
        ))?;
        self.send(Job::LossPlot(
            self.dir.join("loss.png"),
            self.history.clone(),
        ))
    }

    /// The epoch's TensorBoard record: its metrics, the first test digits' reconstructions
    /// (one small GPU pass) and every parameter tensor.
    fn epoch_record(
        &self,
        gpu: &Gpu,
        trainer: &Trainer,
        m: &EpochMetrics,
        params: &[f32],
    ) -> Result<tb::EpochRecord> {
        let model = &trainer.net.model;
        let weights = (0..model.params.len())
            .map(|k| {
                (
                    model.params[k].name.clone(),
                    params[model.param_range(k)].to_vec(),
                )
            })
            .collect();
        Ok(tb::EpochRecord {
            epoch: m.epoch,
            loss: m.loss,
            val_loss: m.val_loss,
            learning_rate: self.setup.cfg.adam.lr,
            images_per_s: self.setup.data.train.images.count as f64 / m.train_seconds.max(1e-9),
            reconstructions: first_reconstructions(gpu, trainer, &self.setup)?,
            weights,
        })
    }

    fn checkpoint(
        &self,
        gpu: &Gpu,
        trainer: &Trainer,
        step: usize,
        partial_losses: Vec<f32>,
    ) -> Result<Checkpoint> {
        Ok(Checkpoint {
            input: self.setup.model.input,
            train_count: self.setup.data.train.images.count,
            config: self.setup.cfg.clone(),
            history: self.history.clone(),
            state: trainer.state(gpu)?,
            step,
            partial_losses,
            data: Some(self.setup.data_record.clone()),
        })
    }

    /// Queues `ck` as `name` in the run folder; it is the last good one from now on.
    fn save(&mut self, name: &str, ck: Checkpoint, epoch: usize, step: usize) -> Result<()> {
        let path = self.dir.join(name);
        self.send(Job::Checkpoint(path.clone(), Box::new(ck)))?;
        self.last_good = Some(Saved { path, epoch, step });
        Ok(())
    }

    /// Queues a write; a failed earlier write stops the run here.
    fn send(&self, job: Job) -> Result<()> {
        self.writer.send(job).map_err(|e| self.write_failed(e))
    }

    fn stop_signal(&self) -> Option<i32> {
        stop_signal(self.ctl)
    }

    /// What the last good checkpoint is, for a message about a failed run.
    fn kept(&self) -> String {
        let fix = "Try a smaller --lr";
        match &self.last_good {
            Some(s) => format!(
                "The last good checkpoint is {}. {fix}, or --resume from it.",
                s.named(self.setup.steps)
            ),
            None => format!("No checkpoint had been written yet. {fix}."),
        }
    }

    fn non_finite(&self, value: f32, epoch: usize, step: usize, note: String) -> Error {
        Error::NonFiniteLoss {
            value,
            epoch,
            step,
            kept: format!("{note}{}", self.kept()),
        }
    }

    fn interrupted(&self, signal: i32) -> Error {
        let (detail, resume) = match &self.last_good {
            Some(s) => (
                format!(
                    "the checkpoint {} holds the run at {} ({} of {} epochs done)",
                    s.path.display(),
                    s.describe(self.setup.steps),
                    s.epoch,
                    self.setup.cfg.epochs
                ),
                // The run folder, when the checkpoint is its own; else the checkpoint itself
                // (a branch interrupted before its first checkpoint).
                Some(if s.path.starts_with(&self.dir) {
                    self.dir.clone()
                } else {
                    s.path.clone()
                }),
            ),
            None => (
                "no training step had finished, so there is no checkpoint to resume; start \
                 the run again"
                    .to_string(),
                None,
            ),
        };
        Error::Interrupted {
            signal,
            detail,
            resume,
        }
    }

    /// A failed write, with the last checkpoint that landed.
    fn write_failed(&self, e: Error) -> Error {
        let kept = match self.writer.landed() {
            Some((path, epoch, step)) => format!(
                "The last good checkpoint is {}; --resume from it once there is room.",
                Saved { path, epoch, step }.named(self.setup.steps)
            ),
            None => match &self.setup.resumed {
                Some((_, path)) => format!(
                    "No checkpoint of this session landed; the run can still be resumed from {}.",
                    path.display()
                ),
                None => "No checkpoint had been written.".to_string(),
            },
        };
        Error::WriteFailed {
            detail: e.to_string(),
            kept,
        }
    }

    /// A lost device or a GPU error: say where training can continue from.
    fn with_checkpoint_note(&self, e: Error) -> Error {
        let note = match &self.last_good {
            Some(s) => format!(
                "The last checkpoint is {}; --resume from it once the GPU works again.",
                s.named(self.setup.steps)
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
    }

    /// Waits for the writer and settles the run's outcome: a failed write comes first (an
    /// interrupted run's message promises a checkpoint).
    pub fn close(mut self, result: Result<()>, on_event: &mut dyn FnMut(Event)) -> Result<PathBuf> {
        let result = result.map_err(|e| self.with_checkpoint_note(e));
        let written = self.writer.finish().map_err(|e| self.write_failed(e));
        match (result, written) {
            (Err(Error::Interrupted { .. }), Err(w)) => return Err(w),
            (r, w) => {
                r?;
                w?;
            }
        }
        on_event(Event::Finished {
            run_dir: self.dir.clone(),
        });
        Ok(self.dir)
    }
}

fn stop_signal(ctl: &Control) -> Option<i32> {
    ctl.stop
        .map(|f| f.load(Ordering::SeqCst))
        .filter(|&s| s != 0)
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

/// `config.json`: the settings, the data, and one entry per session of the run (its adapter,
/// where it started, what a resume changed), earlier sessions' entries kept.
fn config_json(setup: &Setup, gpu: &Gpu, steps_per_execution: usize, dir: &Path) -> Result<String> {
    let mut sessions = earlier_sessions(&dir.join("config.json"));
    let from = setup.resumed.as_ref().map(|(ck, path)| {
        serde_json::json!({
            "checkpoint": path.display().to_string(),
            "epoch": ck.state.epoch,
            "step": ck.step,
            "branched": setup.branch,
        })
    });
    sessions.push(serde_json::json!({
        "started": chrono::Local::now().to_rfc3339(),
        "from": from,
        "lr_changed_from": setup.lr_before,
        "epochs": setup.cfg.epochs,
        "adapter": {
            "name": gpu.info.name,
            "type": format!("{:?}", gpu.info.device_type),
            "backend": format!("{:?}", gpu.info.backend),
            "driver": gpu.info.driver,
            "driver_info": gpu.info.driver_info,
            "timestamps": gpu.has_timestamps(),
        },
        "kernels": gpu.kernels,
        "folds": gpu.folds,
        "layer_folds": gpu.layer_folds,
        "folds_by": gpu.folds_by,
        "steps_per_execution": steps_per_execution,
        "versions": {
            "wgsl-autoencoder": env!("CARGO_PKG_VERSION"),
            "wgpu": "30",
        },
    }));
    let d = &setup.data;
    let v = serde_json::json!({
        "config": setup.cfg,
        "data": setup.data_record,
        "train_images": d.train.images.count,
        "test_images": d.test.images.count,
        "sessions": sessions,
    });
    serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))
}

/// The `sessions` of the folder's config.json, when a resumed run left one.
fn earlier_sessions(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("sessions")?.as_array().cloned())
        .unwrap_or_default()
}

/// The first ten test digits, their reconstructions and (conv) codes, and the codes of every
/// test image with its label, computed on the GPU.
/// The first ten test digits and their reconstructions, by the network as it stands.
fn first_reconstructions(
    gpu: &Gpu,
    trainer: &Trainer,
    setup: &Setup,
) -> Result<tb::Reconstructions> {
    let test = &setup.data.test.images;
    let count = 10.min(test.count);
    let originals = test.values(0..count);
    let layers = trainer.net.model.layers.len();
    let reconstructions = infer::layers(gpu, &trainer.net, &originals, 0..layers)?;
    Ok(tb::Reconstructions {
        originals,
        reconstructions,
        count,
        h: test.rows,
        w: test.cols,
    })
}

/// The run's pictures: the first test digits' reconstructions, and the codes of the whole
/// test split (for latent.png, and codes.png where the code is an image).
fn pictures(gpu: &Gpu, trainer: &Trainer, setup: &Setup) -> Result<Pictures> {
    let model: &Model = &trainer.net.model;
    let test = &setup.data.test.images;
    let all = test.values(0..test.count);
    let code = model.code();
    Ok(Pictures {
        first: first_reconstructions(gpu, trainer, setup)?,
        test_codes: infer::layers(gpu, &trainer.net, &all, 0..model.code_at)?,
        test_labels: setup.data.test.labels.clone(),
        code_len: code.len() as usize,
        // A code with a spatial extent is pictured as images, one per channel.
        code_image: (code.h > 1 || code.w > 1).then_some([
            code.h as usize,
            code.w as usize,
            code.c as usize,
        ]),
    })
}
