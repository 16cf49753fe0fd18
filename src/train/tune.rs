//! The folds a training run uses, picked at start-up by timing (`--folds auto` on a GPU
//! adapter, `--folds tune` anywhere): on the GPU kernel set every fold changes no bit, only
//! the dispatches, so the fastest set on this card is free to choose and cannot change a loss.
//!
//! The search starts from every fold and leaves one out at a time, keeping it out when the
//! step gets faster by more than [`MARGIN`] (timing noise below that). A set whose step
//! runs the same pipelines as one already timed (a fold the model has nothing for) is not
//! timed again. Each set gets a scratch network over the first batch of the training split,
//! [`WARMUP`] steps (the first set, [`WARM_SECONDS`] of them: clocks up), then [`TIMED`]
//! steps whose median is its time: each step's GPU span through timestamp queries (barriers
//! included), or the wall clock without them.
use crate::gpu::timing::SpanTimer;
use crate::gpu::{record_all, FoldChoice, FoldSet, FoldTiming, FoldTrial, FoldsBy, Gpu, KernelSet};
use crate::model::Model;
use crate::network::{DeviceSplit, Network, Purpose, StepParams, StepPlan, StepSource};
use crate::train::{noise_seed, TrainConfig};
use crate::{Error, Result};
use std::time::Instant;

/// Untimed steps per set: pipelines compiled, caches warm.
pub const WARMUP: usize = 3;
/// Timed steps per set.
pub const TIMED: usize = 15;
/// Before the first set, steps run for at least this long (at most [`WARM_STEPS_MAX`]
/// steps), so that an idle card's clocks are up before anything is timed: otherwise the
/// first set would be timed slower than the rest.
pub const WARM_SECONDS: f64 = 0.3;
pub const WARM_STEPS_MAX: usize = 2000;
/// A fold is left out only when the step without it is this much faster.
pub const MARGIN: f64 = 0.03;

/// The order folds are left out in: every one of [`FoldSet::NAMES`], `grads` before `rows`,
/// which it needs, so that `grads` alone is tried first.
pub const TRY_ORDER: [&str; 12] = [
    "upsample", "pool", "reduces", "backward", "loss", "tiles", "narrow", "finish", "single",
    "grads", "rows", "vec4",
];

/// Whether `choice` asks this device to time its folds: `tune` always, `auto` on the GPU
/// kernel set of an adapter that is not a CPU (there a step is long enough that timing ten
/// sets would take tens of seconds, and the rule was measured: BENCHMARKS.md).
pub fn wanted(choice: FoldChoice, gpu: &Gpu) -> bool {
    match choice {
        FoldChoice::Tune => true,
        FoldChoice::Auto => {
            gpu.kernels == KernelSet::Gpu && gpu.info.device_type != wgpu::DeviceType::Cpu
        }
        FoldChoice::Set(_) => false,
    }
}

/// Picks the folds by timing when `choice` asks it of this device ([`wanted`]); leaves them
/// as the device opened with them otherwise.
pub fn settle(
    gpu: &mut Gpu,
    choice: FoldChoice,
    model: &Model,
    cfg: &TrainConfig,
    train: &crate::data::Images,
) -> Result<()> {
    match wanted(choice, gpu) {
        true => pick(gpu, model, cfg, &train.pixels, train.count),
        false => Ok(()),
    }
}

/// Times fold sets for training `model` as `cfg` says on the images `pixels` (`count` of
/// them), and leaves the fastest in `gpu.folds` (how, in `gpu.folds_by`).
pub fn pick(
    gpu: &mut Gpu,
    model: &Model,
    cfg: &TrainConfig,
    pixels: &[u8],
    count: usize,
) -> Result<()> {
    if gpu.kernels != KernelSet::Gpu {
        return Err(Error::Config(format!(
            "--folds tune times the gpu kernel set's folds, which change no bit there; on the \
             {} kernel set a fold changes float rounding, so a timed pick could change the \
             losses. Pass --kernels gpu, or --folds none or a list",
            gpu.kernels
        )));
    }
    let start = Instant::now();
    let n = cfg.batch_size.min(count as u32).max(1);
    let mut trial = Trial::new(gpu, model, cfg, pixels, n)?;
    let (folds, trials) = search(FoldSet::ALL, |set| trial.time(gpu, set))?;
    gpu.folds = folds;
    gpu.folds_by = FoldsBy::Timing(FoldTiming {
        clock: match trial.spans {
            true => "gpu timestamps",
            false => "wall clock",
        },
        batch_size: n,
        steps: TIMED,
        seconds: start.elapsed().as_secs_f64(),
        trials,
    });
    Ok(())
}

/// The greedy search: `time(set)` gives a set's (dispatches, µs per step), or None when its
/// step is one already timed (or its time cannot be compared).
pub fn search(
    start: FoldSet,
    mut time: impl FnMut(FoldSet) -> Result<Option<(usize, f64)>>,
) -> Result<(FoldSet, Vec<FoldTrial>)> {
    let mut trials = Vec::new();
    let mut record = |set: FoldSet, (dispatches, us): (usize, f64)| {
        trials.push(FoldTrial {
            folds: set.name(),
            dispatches,
            us_per_step: us,
        });
        us
    };
    let first = time(start)?.ok_or_else(|| Error::Config("no fold set was timed".into()))?;
    let mut best = (start, record(start, first));
    for name in TRY_ORDER {
        let Some(candidate) = best.0.without(name) else {
            continue;
        };
        if let Some(timed) = time(candidate)? {
            let us = record(candidate, timed);
            if us < best.1 * (1.0 - MARGIN) {
                best = (candidate, us);
            }
        }
    }
    Ok((best.0, trials))
}

/// A batch of training images on the device and the step plans' sources over it.
struct Trial<'m> {
    model: &'m Model,
    cfg: &'m TrainConfig,
    n: u32,
    images: DeviceSplit,
    order: crate::gpu::Tensor,
    loss_log: crate::gpu::Tensor,
    /// Each timed step's pipelines and workgroups, to skip a set whose step is the same.
    seen: Vec<Vec<(wgpu::ComputePipeline, [u32; 3])>>,
    /// Timed by GPU spans (else the wall clock): timestamps, unless the first set's spans all
    /// came back zero or reversed.
    spans: bool,
}

impl<'m> Trial<'m> {
    fn new(
        gpu: &Gpu,
        model: &'m Model,
        cfg: &'m TrainConfig,
        pixels: &[u8],
        n: u32,
    ) -> Result<Self> {
        let per_image = model.input.len() as usize;
        let batch = pixels
            .get(..n as usize * per_image)
            .ok_or_else(|| Error::Config("fewer training images than one batch".into()))?;
        Ok(Trial {
            model,
            cfg,
            n,
            images: DeviceSplit::upload(gpu, "fold timing images", batch, n as usize)?,
            order: gpu.upload("fold timing order", &(0..n).collect::<Vec<u32>>())?,
            loss_log: gpu.tensor("fold timing loss", 1)?,
            seen: Vec::new(),
            spans: gpu.has_timestamps(),
        })
    }

    /// A fresh network and step plan with `set`; its median step time unless its step is one
    /// timed before.
    fn time(&mut self, gpu: &mut Gpu, set: FoldSet) -> Result<Option<(usize, f64)>> {
        gpu.folds = set;
        let noisy = self.cfg.noise > 0.0;
        let net = Network::new(gpu, self.model.clone(), self.n, Purpose::Training { noisy })?;
        gpu.write(&net.params, &self.model.init(self.cfg.seed));
        let src = StepSource {
            images: &self.images.images,
            order: &self.order,
            loss_log: &self.loss_log,
            noise: self.cfg.noise,
        };
        let plan = StepPlan::new(gpu, &net, self.n, &src, Some(&self.cfg.adam))?;
        let step: Vec<_> = plan
            .dispatches()
            .map(|d| (d.pipeline.clone(), d.workgroups))
            .collect();
        if self.seen.contains(&step) {
            return Ok(None);
        }
        self.seen.push(step);
        plan.prepare(
            0,
            &StepParams {
                offset: 0,
                loss_slot: 0,
                noise_seed: noise_seed(self.cfg.seed, 0),
                adam: Some((&self.cfg.adam, 1)),
            },
        );
        plan.flush(gpu);
        match self.seen.len() {
            1 => warm_up(gpu, &plan)?,
            _ => steps(gpu, &plan, WARMUP)?,
        }
        // One clock for the whole search: the first set's spans decide it.
        let first = self.seen.len() == 1;
        let us = match self.spans {
            true => span_median(gpu, &plan)?,
            false => Some(wall_per_step(gpu, &plan)?),
        };
        match (us, first) {
            (Some(us), _) => Ok(Some((plan.len(), us))),
            (None, true) => {
                self.spans = false;
                Ok(Some((plan.len(), wall_per_step(gpu, &plan)?)))
            }
            // Unusable timestamps for a later set only: its time would be on another clock
            // than the rest, so it is not compared.
            (None, false) => Ok(None),
        }
    }
}

/// `count` steps, one submit each as in training; waits for the last.
fn steps(gpu: &Gpu, plan: &StepPlan, count: usize) -> Result<()> {
    for _ in 0..count {
        let mut enc = encoder(gpu);
        record_all(&mut enc, plan.dispatches());
        gpu.queue.submit([enc.finish()]);
    }
    gpu.wait()
}

/// Steps for [`WARM_SECONDS`] (or [`WARM_STEPS_MAX`] of them), at least [`WARMUP`].
fn warm_up(gpu: &Gpu, plan: &StepPlan) -> Result<()> {
    let start = Instant::now();
    let mut done = 0;
    while done < WARMUP || (start.elapsed().as_secs_f64() < WARM_SECONDS && done < WARM_STEPS_MAX) {
        steps(gpu, plan, WARMUP)?;
        done += WARMUP;
    }
    Ok(())
}

/// The median of [`TIMED`] steps' GPU spans in µs; None when the driver's timestamps are
/// all zero or reversed.
fn span_median(gpu: &Gpu, plan: &StepPlan) -> Result<Option<f64>> {
    let mut timer = SpanTimer::new(gpu, TIMED)?;
    for _ in 0..TIMED {
        let mut enc = encoder(gpu);
        timer.record(&mut enc, plan.dispatches());
        gpu.queue.submit([enc.finish()]);
    }
    let mut spans: Vec<f64> = timer.finish(gpu)?.into_iter().flatten().collect();
    spans.sort_by(f64::total_cmp);
    let mid = spans.len() / 2;
    let median = match spans.len() {
        0 => return Ok(None),
        n if n % 2 == 1 => spans[mid],
        _ => (spans[mid - 1] + spans[mid]) / 2.0,
    };
    Ok(Some(median / 1e3))
}

/// µs per step of [`TIMED`] steps submitted as in training, by the wall clock.
fn wall_per_step(gpu: &Gpu, plan: &StepPlan) -> Result<f64> {
    let start = Instant::now();
    steps(gpu, plan, TIMED)?;
    Ok(start.elapsed().as_secs_f64() * 1e6 / TIMED as f64)
}

fn encoder(gpu: &Gpu) -> wgpu::CommandEncoder {
    gpu.device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("fold timing step"),
        })
}
