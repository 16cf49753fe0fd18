//! The epoch loop on the GPU: [`Gpu::steps_per_execution`] steps per submit, a few queued
//! ahead, the epoch's losses read back once at its end, then validation.
use super::evaluator::{no_plan, Evaluator};
use super::probe::LossProbe;
use super::{batches, distinct, noise_seed, permutation, weighted_mean, EpochMetrics, TrainConfig};
use crate::data::{Dataset, Split};
use crate::gpu::timing::Profiler;
use crate::gpu::{Gpu, Tensor};
use crate::model::Model;
use crate::network::{
    record_steps, DeviceSplit, Network, Purpose, StepParams, StepPlan, StepSource,
};
use crate::{Error, Result};
use std::collections::VecDeque;
use std::time::Instant;

/// Steps the host keeps queued ahead of the GPU, so that it never idles between steps.
const AHEAD: usize = 8;
/// Steps between two reads of the running loss (no stall: see `probe.rs`); with more steps
/// per submit, one read per execution.
const PROBE_EVERY: usize = 16;

/// What training needs to continue exactly: flat weights and moments (the layout of
/// [`Model::params`]) and the counters.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub params: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
    /// Epochs completed.
    pub epoch: usize,
    /// Adam steps taken.
    pub iterations: u64,
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

pub struct Trainer {
    pub net: Network,
    pub cfg: TrainConfig,
    pub train: DeviceSplit,
    pub eval: Evaluator,
    perm: Tensor,
    plans: Vec<StepPlan>,
    /// One training loss per step of the epoch.
    loss_log: Tensor,
    /// Epochs completed.
    pub epoch: usize,
    /// Adam steps taken (Keras' `iterations`).
    pub iterations: u64,
    probe: LossProbe,
}

impl Trainer {
    /// A network for `model` with a step plan per batch size of an epoch over `train`, and
    /// an evaluator over `test`. The weights are unset: [`Self::init`] or [`Self::restore`].
    pub fn new(
        gpu: &Gpu,
        model: Model,
        cfg: &TrainConfig,
        train: DeviceSplit,
        test: DeviceSplit,
    ) -> Result<Self> {
        cfg.validate()?;
        let cap = cfg
            .batch_size
            .min(train.count.max(test.count) as u32)
            .max(1);
        let noisy = cfg.noise > 0.0;
        let net = Network::new(gpu, model, cap, Purpose::Training { noisy })?;
        let perm = gpu.tensor("permutation", train.count as u64)?;
        let sizes = batches(train.count, cfg.batch_size);
        let loss_log = gpu.tensor("train loss log", sizes.len() as u64)?;
        let src = StepSource {
            images: &train.images,
            order: &perm,
            loss_log: &loss_log,
            noise: cfg.noise,
        };
        let per = gpu.steps_per_execution.min(sizes.len());
        let plans = distinct(&sizes)
            .into_iter()
            .map(|n| StepPlan::new(gpu, &net, n, &src, Some(&cfg.adam))?.with_slots(gpu, per))
            .collect::<Result<_>>()?;
        let eval = Evaluator::new(gpu, &net, test, cfg.batch_size, cfg.noise, cfg.seed)?;
        Ok(Trainer {
            probe: LossProbe::new(gpu, sizes.len()),
            net,
            cfg: cfg.clone(),
            train,
            eval,
            perm,
            plans,
            loss_log,
            epoch: 0,
            iterations: 0,
        })
    }

    /// [`Self::new`] over both splits of `data`, uploaded.
    pub fn for_dataset(gpu: &Gpu, model: Model, cfg: &TrainConfig, data: &Dataset) -> Result<Self> {
        let upload =
            |label, s: &Split| DeviceSplit::upload(gpu, label, &s.images.pixels, s.images.count);
        let train = upload("training images", &data.train)?;
        let test = upload("test images", &data.test)?;
        Self::new(gpu, model, cfg, train, test)
    }

    /// The running training loss of the current epoch as f64 bits (NaN before the first
    /// sample lands), updated as steps complete; for progress bars.
    pub fn running_loss(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.probe.handle()
    }

    /// The running losses read since the last call, as (steps of the epoch they cover,
    /// loss); every epoch has at least its last one.
    pub fn take_loss_readings(&mut self) -> Vec<(usize, f64)> {
        self.probe.take_readings()
    }

    /// Uploads fresh Glorot weights and zeroes Adam's state.
    pub fn init(&mut self, gpu: &Gpu) -> Result<()> {
        let params = self.net.model.init(self.cfg.seed);
        let zeros = vec![0.0f32; params.len()];
        self.restore(
            gpu,
            &State {
                params,
                adam_m: zeros.clone(),
                adam_v: zeros,
                epoch: 0,
                iterations: 0,
            },
        )
    }

    /// Restores a saved state (weights, Adam moments, counters).
    pub fn restore(&mut self, gpu: &Gpu, s: &State) -> Result<()> {
        let tb = self.net.training()?;
        let len = self.net.model.param_len as usize;
        for (name, v) in [
            ("weights", &s.params),
            ("adam m", &s.adam_m),
            ("adam v", &s.adam_v),
        ] {
            if v.len() != len {
                return Err(Error::Config(format!(
                    "{name}: {} values for a model of {len}",
                    v.len()
                )));
            }
        }
        gpu.write(&self.net.params, &s.params);
        gpu.write(&tb.adam_m, &s.adam_m);
        gpu.write(&tb.adam_v, &s.adam_v);
        self.epoch = s.epoch;
        self.iterations = s.iterations;
        Ok(())
    }

    /// Reads weights and Adam's moments back (one wait: call between epochs).
    pub fn state(&self, gpu: &Gpu) -> Result<State> {
        let tb = self.net.training()?;
        Ok(State {
            params: gpu.read(&self.net.params)?,
            adam_m: gpu.read(&tb.adam_m)?,
            adam_v: gpu.read(&tb.adam_v)?,
            epoch: self.epoch,
            iterations: self.iterations,
        })
    }

    /// Stages `plan`'s uniforms in its slot `slot` for step `step` of the epoch, and counts
    /// the Adam step.
    fn prepare(&mut self, plan: usize, slot: usize, step: usize) {
        self.plans[plan].prepare(
            slot,
            &StepParams {
                offset: step * self.cfg.batch_size as usize,
                loss_slot: step,
                noise_seed: noise_seed(self.cfg.seed, 0),
                adam: Some((&self.cfg.adam, self.iterations + 1)),
            },
        );
        self.iterations += 1;
    }

    /// One execution: `steps` (a plan and the step of the epoch it runs) recorded into one
    /// command buffer and submitted, with the running loss's copy after the last when `probe`.
    fn execute(
        &mut self,
        gpu: &Gpu,
        steps: &[(usize, usize)],
        probe: bool,
    ) -> wgpu::SubmissionIndex {
        for (slot, &(plan, step)) in steps.iter().enumerate() {
            self.prepare(plan, slot, step);
        }
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("steps"),
            });
        let recorded: Vec<_> = steps
            .iter()
            .enumerate()
            .map(|(slot, &(plan, _))| (&self.plans[plan], slot))
            .collect();
        record_steps(gpu, &mut enc, &recorded);
        let last = steps.last().map_or(0, |&(_, step)| step + 1);
        let probed = probe && self.probe.record(&mut enc, &self.loss_log, last);
        let idx = gpu.queue.submit([enc.finish()]);
        if probed {
            self.probe.arm();
        }
        idx
    }

    /// Step `step` alone in a submit, every dispatch timed by `profiler`.
    fn execute_profiled(&mut self, gpu: &Gpu, step: usize, profiler: &mut Profiler) {
        self.prepare(0, 0, step);
        self.plans[0].flush(gpu);
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        profiler.record(&mut enc, self.plans[0].dispatches());
        gpu.queue.submit([enc.finish()]);
    }

    /// What a full training step launches: each dispatch's source and launch (constants and
    /// workgroups), in order; equal for two trainers exactly when they run the same code.
    pub fn launches(&self) -> Vec<(crate::gpu::KernelSource, String)> {
        self.plans.first().map_or(Vec::new(), |p| {
            p.dispatches()
                .map(|d| (d.source, d.launch.clone()))
                .collect()
        })
    }

    /// Dispatches in one full training step (for sizing a profiler).
    pub fn step_len(&self) -> usize {
        self.plans.first().map_or(0, |p| p.len())
    }

    /// Of [`Self::step_len`], the dispatches an execution runs once for all its steps.
    pub fn shared_step_len(&self) -> usize {
        self.plans.first().map_or(0, StepPlan::shared_len)
    }

    /// Steps recorded into one submit ([`Gpu::steps_per_execution`], at most an epoch's).
    pub fn steps_per_execution(&self) -> usize {
        self.plans.first().map_or(1, StepPlan::slots)
    }

    /// Runs `steps` full-batch training steps through the current epoch's permutation,
    /// without validation: with a profiler one per submit, every dispatch timed; without,
    /// [`Self::steps_per_execution`] per submit. Waits at the end. For `profile` and `bench`:
    /// the weights move as in training.
    pub fn run_steps(
        &mut self,
        gpu: &Gpu,
        steps: usize,
        profiler: Option<&mut Profiler>,
    ) -> Result<()> {
        gpu.write(
            &self.perm,
            &permutation(self.cfg.seed, self.epoch, self.train.count),
        );
        let n = self.plans.first().map(|p| p.n).unwrap_or(1) as usize;
        let per_epoch = (self.train.count / n).max(1);
        match profiler {
            Some(prof) => (0..steps).for_each(|k| self.execute_profiled(gpu, k % per_epoch, prof)),
            None => {
                let all: Vec<(usize, usize)> = (0..steps).map(|k| (0, k % per_epoch)).collect();
                for chunk in all.chunks(self.steps_per_execution()) {
                    self.execute(gpu, chunk, false);
                }
            }
        }
        gpu.wait()
    }

    /// One epoch of training, then validation. `progress(done, total)` is called as steps
    /// complete on the GPU.
    pub fn train_epoch(
        &mut self,
        gpu: &Gpu,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochMetrics> {
        match self.train_epoch_from(gpu, &EpochStart::default(), progress)? {
            EpochEnd::Done(m) => Ok(m),
            EpochEnd::Paused { step, .. } => Err(Error::Config(format!(
                "the epoch paused at step {step} unasked"
            ))),
        }
    }

    /// [`Self::train_epoch`] from step `from.step` (the steps before it done, their losses in
    /// `from.losses`), pausing before a step when `from.pause(step, iterations)` says so: the
    /// hook of mid-epoch checkpoints and Ctrl-C.
    pub fn train_epoch_from(
        &mut self,
        gpu: &Gpu,
        from: &EpochStart,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochEnd> {
        let start = Instant::now();
        gpu.write(
            &self.perm,
            &permutation(self.cfg.seed, self.epoch, self.train.count),
        );
        if !from.losses.is_empty() {
            gpu.write(&self.loss_log, from.losses);
        }
        let sizes = batches(self.train.count, self.cfg.batch_size);
        if let Some(step) = self.run_epoch_steps(gpu, from, &sizes, progress)? {
            let mut losses: Vec<f32> = gpu.read(&self.loss_log)?;
            losses.truncate(step);
            return Ok(EpochEnd::Paused { step, losses });
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let val_sizes = self.eval.queue(gpu)?;
        gpu.wait()?;
        progress(sizes.len(), sizes.len());
        let losses: Vec<f32> = gpu.read(&self.loss_log)?;
        if let Some((step, v)) = losses.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFiniteLoss {
                value: *v,
                epoch: self.epoch + 1,
                step: step + 1,
                kept: String::new(),
            });
        }
        let val_loss = self.eval.collect(gpu, &val_sizes)?;
        self.epoch += 1;
        Ok(EpochEnd::Done(EpochMetrics {
            epoch: self.epoch,
            loss: weighted_mean(&losses, &sizes),
            val_loss,
            seconds: start.elapsed().as_secs_f64(),
            train_seconds,
        }))
    }

    /// Submits the epoch's steps from `from.step` in executions of
    /// [`Self::steps_per_execution`] (shorter before a pause and at the epoch's end), keeping
    /// at most [`AHEAD`] steps or two executions in flight; waits for the last. Returns the
    /// step it paused before, if `from.pause` asked.
    fn run_epoch_steps(
        &mut self,
        gpu: &Gpu,
        from: &EpochStart,
        sizes: &[u32],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Option<usize>> {
        let per = self.steps_per_execution();
        let ahead = AHEAD.max(2 * per);
        // Submissions not yet waited for, each with the steps done once it is.
        let mut inflight = VecDeque::new();
        let mut done = from.step;
        let mut step = from.step;
        while step < sizes.len() {
            let first = step;
            let mut paused = false;
            while step < sizes.len() && step - first < per {
                let adam_steps = self.iterations + (step - first) as u64;
                if step > from.step && (from.pause)(step, adam_steps) {
                    paused = true;
                    break;
                }
                step += 1;
            }
            if step > first {
                let steps = (first..step)
                    .map(|s| Ok((self.plan_index(sizes[s])?, s)))
                    .collect::<Result<Vec<_>>>()?;
                // A reading at the end of the execution that passes a multiple of PROBE_EVERY
                // (at one step per submit, every PROBE_EVERY steps).
                let probe = step / PROBE_EVERY > first / PROBE_EVERY;
                inflight.push_back((self.execute(gpu, &steps, probe), step));
            }
            if paused {
                gpu.wait()?;
                return Ok(Some(step));
            }
            while step - done > ahead {
                let Some((idx, end)) = inflight.pop_front() else {
                    break;
                };
                gpu.wait_for(idx)?;
                done = end;
                self.probe.collect(sizes);
                progress(done, sizes.len());
            }
        }
        // One sync per epoch, so the training time excludes validation.
        gpu.wait()?;
        self.probe.collect(sizes);
        self.probe.reset();
        Ok(None)
    }

    fn plan_index(&self, n: u32) -> Result<usize> {
        self.plans
            .iter()
            .position(|p| p.n == n)
            .ok_or_else(|| no_plan(n))
    }

    /// Bytes of every GPU buffer the trainer allocated: network, dataset, permutation, logs,
    /// the step plans' uniforms, and the textures `gpu` made for them (`textures`).
    pub fn gpu_bytes(&self, gpu: &Gpu) -> u64 {
        gpu.texture_bytes()
            + self.net.bytes()
            + self.plans.iter().map(StepPlan::uniform_bytes).sum::<u64>()
            + self.train.images.buffer_bytes()
            + self.perm.buffer_bytes()
            + self.loss_log.buffer_bytes()
            + self.probe.bytes()
            + self.eval.bytes()
    }
}
