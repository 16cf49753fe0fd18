//! Training: the GPU step plans, the epoch loop, Adam, metrics and checkpoints.
//!
//! Per step the host only rewrites three tiny uniforms (batch offset, loss slot, Adam's
//! alpha_t) and submits one command buffer: gather, forward, loss, backward, Adam. The loss of
//! every step lands in a GPU log that is read once per epoch.
pub mod checkpoint;
pub mod network;
pub mod probe;
pub mod run;

use crate::gpu::timing::Profiler;
use crate::gpu::{Gpu, Tensor};
use crate::model::{Model, ModelKind};
use crate::ops::adam::AdamConfig;
use crate::ops::{self, batch, bce, Dispatch};
use crate::{Error, Result};
use network::Network;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Every setting of a run (saved in `config.json` and the checkpoint).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub epochs: usize,
    pub batch_size: u32,
    pub adam: AdamConfig,
    pub seed: u64,
    /// Use only the first N training images.
    pub train_limit: Option<usize>,
    /// Denoising: inputs + noise * N(0, 1), clipped to [0, 1]; targets stay clean.
    pub noise: f32,
}

impl TrainConfig {
    pub fn new(model: ModelKind) -> Self {
        TrainConfig {
            model,
            epochs: model.default_epochs(),
            batch_size: 256,
            adam: AdamConfig::default(),
            seed: 0,
            train_limit: None,
            noise: 0.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if !(self.adam.lr.is_finite() && self.adam.lr > 0.0) {
            return bad(format!(
                "--lr must be a positive number, not {}",
                self.adam.lr
            ));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad(format!("--noise must be >= 0, not {}", self.noise));
        }
        if self.train_limit == Some(0) {
            return bad("--train-limit must be at least 1".into());
        }
        Ok(())
    }
}

/// The pixels of a split as the GPU holds them: u8, four to a word.
pub struct DeviceSplit {
    pub images: Tensor,
    pub count: usize,
}

impl DeviceSplit {
    pub fn upload(gpu: &Gpu, label: &str, pixels: &[u8], count: usize) -> Result<Self> {
        let packed = batch::pack_pixels(pixels);
        gpu.check_buffer(
            label,
            packed.len() as u64 * 4,
            "use --train-limit to load fewer images",
        )?;
        Ok(DeviceSplit {
            images: gpu.upload(label, &packed)?,
            count,
        })
    }
}

/// The dispatches of one step (or one evaluation batch) for a fixed batch size, and where the
/// few per-step parameters live in it.
struct Plan {
    n: u32,
    dispatches: Vec<Dispatch>,
    gather: usize,
    finish: usize,
    adam: Option<usize>,
}

/// Batch sizes of an epoch over `count` items: full batches, then the partial one (Keras).
pub fn batches(count: usize, batch: u32) -> Vec<u32> {
    let b = batch as usize;
    let mut v = vec![batch; count / b];
    if !count.is_multiple_of(b) {
        v.push((count % b) as u32);
    }
    v
}

/// The permutation of epoch `epoch` (0-based): a function of the seed and epoch only, so a
/// resumed run shuffles exactly as an uninterrupted one.
pub fn permutation(seed: u64, epoch: usize, count: usize) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    let mut p: Vec<u32> = (0..count as u32).collect();
    p.shuffle(&mut rng);
    p
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    /// The whole epoch, validation included.
    pub seconds: f64,
    /// Training steps only.
    #[serde(default)]
    pub train_seconds: f64,
}

pub struct Trainer {
    pub net: Network,
    pub cfg: TrainConfig,
    pub train: DeviceSplit,
    pub test: DeviceSplit,
    perm: Tensor,
    train_plans: Vec<Plan>,
    eval_plans: Vec<Plan>,
    train_loss: Tensor,
    val_loss: Tensor,
    /// Epochs completed.
    pub epoch: usize,
    /// Adam steps taken (Keras' `iterations`).
    pub iterations: u64,
    probe: probe::LossProbe,
}

impl Trainer {
    /// `train` and `test` are u8 pixels, `pixels` per image.
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
        let net = Network::new(gpu, model, cap, noisy)?;
        let perm = gpu.tensor("permutation", train.count as u64)?;
        let identity: Vec<u32> = (0..test.count as u32).collect();
        let test_perm = gpu.upload("test order", &identity)?;
        let train_batches = batches(train.count, cfg.batch_size);
        let eval_batches = batches(test.count, cfg.batch_size);
        let train_loss = gpu.tensor("train loss log", train_batches.len() as u64)?;
        let val_loss = gpu.tensor("val loss log", eval_batches.len() as u64)?;
        let sizes = |b: &[u32]| {
            let mut s: Vec<u32> = b.to_vec();
            s.dedup();
            s
        };
        let mut train_plans = Vec::new();
        for n in sizes(&train_batches) {
            train_plans.push(plan(
                gpu,
                &net,
                cfg,
                n,
                &train.images,
                &perm,
                &train_loss,
                true,
            )?);
        }
        let mut eval_plans = Vec::new();
        for n in sizes(&eval_batches) {
            eval_plans.push(plan(
                gpu,
                &net,
                cfg,
                n,
                &test.images,
                &test_perm,
                &val_loss,
                false,
            )?);
        }
        Ok(Trainer {
            net,
            cfg: cfg.clone(),
            train,
            test,
            perm,
            train_plans,
            eval_plans,
            train_loss,
            val_loss,
            epoch: 0,
            iterations: 0,
            probe: probe::LossProbe::new(gpu, train_batches.len()),
        })
    }

    /// The running training loss of the current epoch as f64 bits (NaN before the first
    /// sample lands), updated as steps complete; for progress bars.
    pub fn running_loss(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.probe.handle()
    }

    /// Uploads fresh Glorot weights and zeroes Adam's state.
    pub fn init(&mut self, gpu: &Gpu) {
        let w = self.net.model.init(self.cfg.seed);
        let zeros = vec![0.0f32; w.len()];
        gpu.write(&self.net.params, &w);
        gpu.write(&self.net.adam_m, &zeros);
        gpu.write(&self.net.adam_v, &zeros);
        self.epoch = 0;
        self.iterations = 0;
    }

    /// Restores a saved state (weights, Adam moments, counters).
    pub fn restore(&mut self, gpu: &Gpu, s: &checkpoint::State) -> Result<()> {
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
        gpu.write(&self.net.adam_m, &s.adam_m);
        gpu.write(&self.net.adam_v, &s.adam_v);
        self.epoch = s.epoch;
        self.iterations = s.iterations;
        Ok(())
    }

    /// Reads weights and Adam's moments back (one wait: call between epochs).
    pub fn state(&self, gpu: &Gpu) -> Result<checkpoint::State> {
        Ok(checkpoint::State {
            params: gpu.read(&self.net.params)?,
            adam_m: gpu.read(&self.net.adam_m)?,
            adam_v: gpu.read(&self.net.adam_v)?,
            epoch: self.epoch,
            iterations: self.iterations,
        })
    }

    fn submit(
        &self,
        gpu: &Gpu,
        p: &Plan,
        offset: usize,
        slot: usize,
        noise_seed: u32,
    ) -> wgpu::SubmissionIndex {
        self.submit_with(gpu, p, offset, slot, noise_seed, None)
    }

    fn submit_with(
        &self,
        gpu: &Gpu,
        p: &Plan,
        offset: usize,
        slot: usize,
        noise_seed: u32,
        profiler: Option<&mut Profiler>,
    ) -> wgpu::SubmissionIndex {
        let pixels = self.net.model.input.len() as u32;
        p.dispatches[p.gather].set_params(
            gpu,
            &batch::Params {
                n: p.n,
                pixels,
                offset: offset as u32,
                seed: noise_seed,
                noise: self.cfg.noise,
                _p: [0; 3],
            },
        );
        let total = p.n as u64 * pixels as u64;
        p.dispatches[p.finish].set_params(gpu, &bce::finish_params(total, slot as u32));
        if let Some(a) = p.adam {
            let len = self.net.model.param_len;
            p.dispatches[a].set_params(
                gpu,
                &ops::adam::params(len, &self.cfg.adam, self.iterations + 1),
            );
        }
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        match profiler {
            Some(prof) => prof.record(&mut enc, &p.dispatches),
            None => ops::record_all(&mut enc, &p.dispatches),
        }
        gpu.queue.submit([enc.finish()])
    }

    /// Dispatches in one full training step (for sizing a profiler).
    pub fn step_len(&self) -> usize {
        self.train_plans.first().map_or(0, |p| p.dispatches.len())
    }

    /// Runs `steps` training steps of the first plan's batch size through the current epoch's
    /// permutation, without validation; with a profiler, every dispatch is timed. Waits at the
    /// end. For `profile` and `bench`: the weights move as in training.
    pub fn run_steps(
        &mut self,
        gpu: &Gpu,
        steps: usize,
        mut profiler: Option<&mut Profiler>,
    ) -> Result<()> {
        let perm = permutation(self.cfg.seed, self.epoch, self.train.count);
        gpu.write(&self.perm, &perm);
        let p = self
            .train_plans
            .first()
            .ok_or_else(|| Error::Config("no training plan".into()))?;
        let per_epoch = (self.train.count / p.n as usize).max(1);
        for k in 0..steps {
            let step = k % per_epoch;
            let offset = step * p.n as usize;
            self.submit_with(
                gpu,
                p,
                offset,
                step,
                noise_seed(self.cfg.seed, 0),
                profiler.as_deref_mut(),
            );
            self.iterations += 1;
        }
        gpu.wait()
    }

    fn plan_for(plans: &[Plan], n: u32) -> Result<&Plan> {
        plans.iter().find(|p| p.n == n).ok_or_else(|| Error::Shape {
            op: "train",
            detail: format!("no plan for a batch of {n}"),
        })
    }

    /// One epoch of training, then validation. `progress(done, total)` is called as steps
    /// complete on the GPU; the host keeps up to `AHEAD` steps queued so the GPU never idles.
    pub fn train_epoch(
        &mut self,
        gpu: &Gpu,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochMetrics> {
        match self.train_epoch_from(gpu, &run::EpochStart::default(), progress)? {
            run::EpochEnd::Done(m) => Ok(m),
            run::EpochEnd::Paused { step, .. } => Err(Error::Config(format!(
                "the epoch paused at step {step} unasked"
            ))),
        }
    }

    /// [`Self::train_epoch`] from step `from.step` (the steps before it done, their losses in
    /// `from.losses`), pausing before a step when `from.pause(step, iterations)` says so: the
    /// hook of mid-epoch checkpoints and Ctrl-C (see [`run::EpochStart`]).
    pub fn train_epoch_from(
        &mut self,
        gpu: &Gpu,
        from: &run::EpochStart,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<run::EpochEnd> {
        const AHEAD: usize = 8;
        // Steps between two reads of the running loss (no stall: see probe.rs).
        const PROBE_EVERY: usize = 16;
        let start = Instant::now();
        let perm = permutation(self.cfg.seed, self.epoch, self.train.count);
        gpu.write(&self.perm, &perm);
        if !from.losses.is_empty() {
            gpu.write(&self.train_loss, from.losses);
        }
        let sizes = batches(self.train.count, self.cfg.batch_size);
        let mut inflight = std::collections::VecDeque::new();
        for (step, &n) in sizes.iter().enumerate().skip(from.step) {
            if step > from.step && (from.pause)(step, self.iterations) {
                gpu.wait()?;
                let mut losses: Vec<f32> = gpu.read(&self.train_loss)?;
                losses.truncate(step);
                return Ok(run::EpochEnd::Paused { step, losses });
            }
            let p = Self::plan_for(&self.train_plans, n)?;
            let offset = step * self.cfg.batch_size as usize;
            let noise_seed = noise_seed(self.cfg.seed, 0);
            inflight.push_back(self.submit(gpu, p, offset, step, noise_seed));
            self.iterations += 1;
            if (step + 1) % PROBE_EVERY == 0 {
                self.probe.request(gpu, &self.train_loss, step + 1);
            }
            if inflight.len() > AHEAD {
                if let Some(idx) = inflight.pop_front() {
                    gpu.wait_for(idx)?;
                }
                self.probe.collect(&sizes);
                progress(step + 1 - inflight.len(), sizes.len());
            }
        }
        // One sync per epoch, so the training time excludes validation.
        gpu.wait()?;
        self.probe.collect(&sizes);
        self.probe.reset();
        let train_seconds = start.elapsed().as_secs_f64();
        let val = self.evaluate_queued(gpu)?;
        gpu.wait()?;
        progress(sizes.len(), sizes.len());
        let losses: Vec<f32> = gpu.read(&self.train_loss)?;
        let vals: Vec<f32> = gpu.read(&self.val_loss)?;
        let loss = weighted_mean(&losses, &sizes);
        let val_loss = weighted_mean(&vals, &val);
        if let Some((step, v)) = losses.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFiniteLoss {
                value: *v,
                epoch: self.epoch + 1,
                step: step + 1,
                kept: String::new(),
            });
        }
        self.epoch += 1;
        Ok(run::EpochEnd::Done(EpochMetrics {
            epoch: self.epoch,
            loss,
            val_loss,
            seconds: start.elapsed().as_secs_f64(),
            train_seconds,
        }))
    }

    /// Queues the validation batches; returns their sizes.
    fn evaluate_queued(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        let sizes = batches(self.test.count, self.cfg.batch_size);
        for (b, &n) in sizes.iter().enumerate() {
            let p = Self::plan_for(&self.eval_plans, n)?;
            self.submit(
                gpu,
                p,
                b * self.cfg.batch_size as usize,
                b,
                noise_seed(self.cfg.seed, 1),
            );
        }
        Ok(sizes)
    }

    /// Mean BCE over the whole test set with the current weights.
    pub fn evaluate(&self, gpu: &Gpu) -> Result<f64> {
        let sizes = self.evaluate_queued(gpu)?;
        let vals: Vec<f32> = gpu.read(&self.val_loss)?;
        Ok(weighted_mean(&vals, &sizes))
    }

    /// Runs layers `range` on `inputs` (images, or codes when the range starts at the decoder)
    /// in batches and returns the last layer's output (sigmoid applied when it is the model's
    /// output).
    pub fn infer(
        &self,
        gpu: &Gpu,
        inputs: &[f32],
        range: std::ops::Range<usize>,
    ) -> Result<Vec<f32>> {
        let net = &self.net;
        let layers = net.model.layers.len();
        let in_len = net.model.shapes[range.start].len() as usize;
        let out_len = net.model.shapes[range.end].len() as usize;
        if in_len == 0 || !inputs.len().is_multiple_of(in_len) {
            return Err(Error::Shape {
                op: "infer",
                detail: format!("{} values are not whole inputs of {in_len}", inputs.len()),
            });
        }
        let dst = if range.start == 0 {
            net.input.clone()
        } else {
            net.acts[range.start - 1].clone()
        };
        let mut out = Vec::with_capacity(inputs.len() / in_len * out_len);
        for chunk in inputs.chunks(net.capacity as usize * in_len) {
            let n = (chunk.len() / in_len) as u32;
            gpu.write(&dst, chunk);
            let mut ds = net.forward(gpu, n, range.clone())?;
            let result = if range.end == layers {
                ds.push(net.reconstruct(gpu, n)?);
                net.probs.view(0, n as u64 * out_len as u64)
            } else {
                net.acts[range.end - 1].view(0, n as u64 * out_len as u64)
            };
            ops::run(gpu, &ds)?;
            out.extend(gpu.read::<f32>(&result)?);
        }
        Ok(out)
    }
}

#[allow(clippy::too_many_arguments)]
fn plan(
    gpu: &Gpu,
    net: &Network,
    cfg: &TrainConfig,
    n: u32,
    images: &Tensor,
    perm: &Tensor,
    loss_log: &Tensor,
    train: bool,
) -> Result<Plan> {
    let pixels = net.model.input.len();
    let target = net.target.view(0, n as u64 * pixels);
    let bp = batch::Params {
        n,
        pixels: pixels as u32,
        offset: 0,
        seed: 0,
        noise: cfg.noise,
        _p: [0; 3],
    };
    let mut d = vec![if cfg.noise > 0.0 {
        let input = net.input.view(0, n as u64 * pixels);
        batch::gather_noisy(gpu, "batch", &bp, images, perm, &target, &input)?
    } else {
        batch::gather(gpu, "batch", &bp, images, perm, &target)?
    }];
    d.extend(net.forward(gpu, n, 0..net.model.layers.len())?);
    let finish = d.len() + 1;
    d.extend(net.loss(gpu, n, loss_log, 0)?);
    let mut adam = None;
    if train {
        d.extend(net.backward(gpu, n)?);
        adam = Some(d.len());
        d.push(net.adam(gpu, &cfg.adam, 1)?);
    }
    Ok(Plan {
        n,
        dispatches: d,
        gather: 0,
        finish,
        adam,
    })
}

/// The noise seed of a split: fixed for the run, so each image keeps its noisy copy across
/// epochs, as the Keras blog's precomputed `x_train_noisy`.
fn noise_seed(seed: u64, split: u64) -> u32 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX - split);
    rand::Rng::random(&mut rng)
}

/// Keras' epoch loss: the sample-weighted mean of the batch losses, summed in f64.
pub(crate) fn weighted_mean(values: &[f32], sizes: &[u32]) -> f64 {
    let total: f64 = sizes.iter().map(|&n| n as f64).sum();
    values
        .iter()
        .zip(sizes)
        .map(|(v, &n)| *v as f64 * n as f64)
        .sum::<f64>()
        / total
}

impl Trainer {
    /// Bytes of every GPU buffer the trainer allocated: network, dataset, permutation, logs.
    pub fn gpu_bytes(&self) -> u64 {
        self.net.bytes()
            + 4 * (self.train.images.len
                + self.test.images.len
                + self.perm.len
                + self.train_loss.len
                + self.val_loss.len)
            + 4 * self.test.count as u64
    }
}
