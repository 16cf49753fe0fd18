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
//!
//! Then, with timestamps, the conv layers' variants one layer at a time ([`PER_LAYER`]): the
//! whole model's pick may keep `narrow` (or `vec4`) because it wins on the small layers while
//! it loses on the large ones; per layer, each can have its own.
use crate::gpu::timing::{Profiler, SpanTimer};
use crate::gpu::{
    record_all, FoldChoice, FoldSet, FoldTiming, FoldTrial, FoldsBy, Gpu, KernelSet, LayerTrial,
};
use crate::model::{Layer, Model};
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

/// The order folds are left out in: every one of [`FoldSet::NAMES`], `gather` and `grads`
/// before `rows`, which they need on a dense model, and `adam` before `grads`, so that each
/// alone is tried first.
pub const TRY_ORDER: [&str; 19] = [
    "upsample", "pool", "reduces", "backward", "loss", "tiles", "narrow", "finish", "single",
    "gather", "adam", "grads", "rows", "vec4", "quads", "windows", "textures", "reuse", "lanes",
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
    // A device that trained another model before keeps no layer's variants of that one.
    gpu.layer_folds.clear();
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
    gpu.layer_folds.clear();
    let mut trial = Trial::new(gpu, model, cfg, pixels, n)?;
    let (folds, mut trials) = search(FoldSet::ALL, |set| trial.time(gpu, set))?;
    gpu.folds = folds;
    let layers = match trial.spans {
        true => per_layer(gpu, &mut trial, folds, &mut trials)?,
        false => Vec::new(),
    };
    gpu.folds_by = FoldsBy::Timing(FoldTiming {
        clock: match trial.spans {
            true => "gpu timestamps",
            false => "wall clock",
        },
        batch_size: n,
        steps: TIMED,
        seconds: start.elapsed().as_secs_f64(),
        trials,
        layers,
    });
    Ok(())
}

/// The variants the timing then picks layer by layer: each changes only its own layer's
/// launches of a convolution (the channels per invocation, the weight-gradient partials'
/// staging, the vec4 loads, a folded window's invocations; a dense layer's vec4 follows the
/// model-wide pick).
pub const PER_LAYER: [&str; 4] = ["narrow", "tiles", "vec4", "quads"];

/// The per-layer pass, after the search picked `picked` (in `gpu.folds`): for each of
/// [`PER_LAYER`], every conv layer whose launches the flip changes has its dispatches timed
/// with it flipped against the pick, by
/// timestamps per dispatch; a layer faster past [`MARGIN`] gets it flipped in
/// `gpu.layer_folds`. The whole step with every layer's choice is then timed once more and
/// the choices kept only if it beats the pick's step (`trials` records it).
fn per_layer(
    gpu: &mut Gpu,
    trial: &mut Trial<'_>,
    picked: FoldSet,
    trials: &mut Vec<FoldTrial>,
) -> Result<Vec<LayerTrial>> {
    let convs: Vec<String> = trial
        .model
        .layers
        .iter()
        .filter(|l| matches!(l, Layer::Conv2d { .. }))
        .map(|l| l.name().to_string())
        .collect();
    let picked_us = trials
        .iter()
        .find(|t| t.folds == picked.name())
        .map(|t| t.us_per_step);
    let (Some(picked_us), false) = (picked_us, convs.is_empty()) else {
        return Ok(Vec::new());
    };
    let Some(base) = trial.layer_times(gpu, picked)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut own = std::collections::BTreeMap::new();
    for variant in PER_LAYER {
        let Some(flipped) = picked.with(variant).or_else(|| picked.without(variant)) else {
            continue;
        };
        let Some(times) = trial.layer_times(gpu, flipped)? else {
            continue;
        };
        let on = flipped.with(variant).is_none();
        for layer in &convs {
            let (Some(&a), Some(&b)) = (base.us.get(layer), times.us.get(layer)) else {
                continue;
            };
            // A variant that leaves the layer's launches as they are (quads where the layer
            // folds no window) has nothing to time there: its difference would be noise.
            if base.launches.get(layer) == times.launches.get(layer) {
                continue;
            }
            let faster = b < a * (1.0 - MARGIN);
            if faster {
                let set: &mut FoldSet = own.entry(layer.clone()).or_insert(picked);
                *set = set
                    .with(variant)
                    .or_else(|| set.without(variant))
                    .unwrap_or(*set);
            }
            out.push(LayerTrial {
                layer: layer.clone(),
                variant,
                on,
                us_picked: a,
                us_flipped: b,
                kept: faster,
            });
        }
    }
    gpu.folds = picked;
    if own.is_empty() {
        return Ok(out);
    }
    gpu.layer_folds = own;
    let mixed = trial.time(gpu, picked)?;
    let kept = matches!(mixed, Some((_, us)) if us < picked_us);
    if let Some((dispatches, us)) = mixed {
        trials.push(FoldTrial {
            folds: format!("{} with the layers' own variants", picked.name()),
            dispatches,
            us_per_step: us,
        });
    }
    if !kept {
        gpu.layer_folds.clear();
        out.iter_mut().for_each(|l| l.kept = false);
    }
    Ok(out)
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

    /// A fresh network and a step plan over it with `set` (and `gpu.layer_folds`), its
    /// uniforms set for a first step.
    fn build(&self, gpu: &mut Gpu, set: FoldSet) -> Result<(Network, StepPlan)> {
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
        Ok((net, plan))
    }

    /// A fresh network and step plan with `set`; its median step time unless its step is one
    /// timed before.
    fn time(&mut self, gpu: &mut Gpu, set: FoldSet) -> Result<Option<(usize, f64)>> {
        let (_net, plan) = self.build(gpu, set)?;
        let step: Vec<_> = plan
            .dispatches()
            .map(|d| (d.pipeline.clone(), d.workgroups))
            .collect();
        if self.seen.contains(&step) {
            return Ok(None);
        }
        self.seen.push(step);
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

    /// Each layer's GPU time per step under `set` (and `gpu.layer_folds` as they stand):
    /// every dispatch in a timed pass of its own, a layer's dispatches summed per step, the
    /// median over [`TIMED`] steps, in µs. None when no layer had usable timestamps.
    fn layer_times(&self, gpu: &mut Gpu, set: FoldSet) -> Result<Option<LayerTimes>> {
        let (_net, plan) = self.build(gpu, set)?;
        let mut launches: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for d in plan.dispatches() {
            let launch = format!("{} {}", d.kernel, d.launch);
            launches.entry(d.label.clone()).or_default().push(launch);
        }
        steps(gpu, &plan, WARMUP)?;
        let mut prof = Profiler::new(gpu, TIMED * plan.len())?;
        for _ in 0..TIMED {
            let mut enc = encoder(gpu);
            prof.record(&mut enc, plan.dispatches());
            gpu.queue.submit([enc.finish()]);
        }
        let timings = prof.finish(gpu)?;
        let mut per_layer: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for step in timings.chunks(plan.len()) {
            let mut sums: std::collections::BTreeMap<&str, Option<f64>> = Default::default();
            for t in step {
                let sum = sums.entry(t.label.as_str()).or_insert(Some(0.0));
                *sum = sum.zip(t.ns).map(|(a, b)| a + b);
            }
            for (layer, sum) in sums {
                if let Some(ns) = sum {
                    per_layer
                        .entry(layer.to_string())
                        .or_default()
                        .push(ns / 1e3);
                }
            }
        }
        let medians: std::collections::BTreeMap<String, f64> = per_layer
            .into_iter()
            .filter_map(|(layer, us)| median(us).map(|m| (layer, m)))
            .collect();
        Ok((!medians.is_empty()).then_some(LayerTimes {
            us: medians,
            launches,
        }))
    }
}

/// Each layer's GPU time per step under one set (µs, the median step's sum of its
/// dispatches), and its launches (entry point, override constants and workgroups of each of
/// its dispatches: what tells one variant's code from another's, as in `bench-kernels`).
struct LayerTimes {
    us: std::collections::BTreeMap<String, f64>,
    launches: std::collections::BTreeMap<String, Vec<String>>,
}

/// The median of `values`; None for none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// `count` steps, one submit each (so that each step's span is its own, whatever
/// `--steps-per-execution` training uses, less what its executions share:
/// [`StepPlan::dispatches_at`]); waits for the last.
fn steps(gpu: &Gpu, plan: &StepPlan, count: usize) -> Result<()> {
    for _ in 0..count {
        let mut enc = encoder(gpu);
        record_all(&mut enc, plan.dispatches_at(gpu.steps_per_execution));
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
        timer.record(&mut enc, plan.dispatches_at(gpu.steps_per_execution));
        gpu.queue.submit([enc.finish()]);
    }
    let spans: Vec<f64> = timer.finish(gpu)?.into_iter().flatten().collect();
    Ok(median(spans).map(|ns| ns / 1e3))
}

/// µs per step of [`TIMED`] steps, one submit each, by the wall clock.
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
