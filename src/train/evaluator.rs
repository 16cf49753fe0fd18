//! The mean loss over a whole split (the test split: Keras' val_loss), batch by batch on the
//! GPU, the batch losses read back once.
use super::{batches, distinct, noise_seed, weighted_mean};
use crate::gpu::{Gpu, Tensor};
use crate::network::{record_steps, DeviceSplit, Network, StepParams, StepPlan, StepSource};
use crate::{Error, Result};

pub struct Evaluator {
    pub split: DeviceSplit,
    /// The identity order: evaluation walks the split as stored.
    order: Tensor,
    plans: Vec<StepPlan>,
    /// One loss per batch.
    log: Tensor,
    batch_size: u32,
    noise_seed: u32,
}

impl Evaluator {
    /// Plans for `split` in batches of `batch_size` through `net` (whose capacity must hold
    /// one batch). `noise` > 0 evaluates noisy inputs against clean targets, as training does.
    pub fn new(
        gpu: &Gpu,
        net: &Network,
        split: DeviceSplit,
        batch_size: u32,
        noise: f32,
        seed: u64,
    ) -> Result<Self> {
        let identity: Vec<u32> = (0..split.count as u32).collect();
        let order = gpu.upload("test order", &identity)?;
        let sizes = batches(split.count, batch_size);
        let log = gpu.tensor("val loss log", sizes.len() as u64)?;
        let src = StepSource {
            images: &split.images,
            order: &order,
            loss_log: &log,
            noise,
        };
        let plans = distinct(&sizes)
            .into_iter()
            .map(|n| {
                StepPlan::new(gpu, net, n, &src, None)?
                    .with_slots(gpu, gpu.steps_per_execution.min(sizes.len()))
            })
            .collect::<Result<_>>()?;
        Ok(Evaluator {
            split,
            order,
            plans,
            log,
            batch_size,
            noise_seed: noise_seed(seed, 1),
        })
    }

    /// Queues every batch, [`Gpu::steps_per_execution`] to a submit; returns their sizes.
    pub fn queue(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        let sizes = batches(self.split.count, self.batch_size);
        let per = self.plans.first().map_or(1, StepPlan::slots);
        for (c, chunk) in sizes.chunks(per).enumerate() {
            let mut steps = Vec::with_capacity(chunk.len());
            for (slot, &n) in chunk.iter().enumerate() {
                let b = c * per + slot;
                let plan = plan_for(&self.plans, n)?;
                plan.prepare(
                    slot,
                    &StepParams {
                        offset: b * self.batch_size as usize,
                        loss_slot: b,
                        noise_seed: self.noise_seed,
                        adam: None,
                    },
                );
                steps.push((plan, slot));
            }
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("eval"),
                });
            record_steps(gpu, &mut enc, &steps);
            gpu.queue.submit([enc.finish()]);
        }
        Ok(sizes)
    }

    /// The mean loss of the batches [`Self::queue`] ran (waits for them).
    pub fn collect(&self, gpu: &Gpu, sizes: &[u32]) -> Result<f64> {
        let vals: Vec<f32> = gpu.read(&self.log)?;
        Ok(weighted_mean(&vals, sizes))
    }

    /// Mean BCE over the whole split with the network's current weights.
    pub fn evaluate(&self, gpu: &Gpu) -> Result<f64> {
        let sizes = self.queue(gpu)?;
        self.collect(gpu, &sizes)
    }

    /// Bytes of the GPU buffers the evaluator holds (the split, its order, the loss log, its
    /// plans' uniforms).
    pub fn bytes(&self) -> u64 {
        self.split.images.buffer_bytes()
            + self.order.buffer_bytes()
            + self.log.buffer_bytes()
            + self.plans.iter().map(StepPlan::uniform_bytes).sum::<u64>()
    }
}

/// The plan built for batches of `n`.
fn plan_for(plans: &[StepPlan], n: u32) -> Result<&StepPlan> {
    plans.iter().find(|p| p.n == n).ok_or_else(|| no_plan(n))
}

pub(super) fn no_plan(n: u32) -> Error {
    Error::Shape {
        op: "train",
        detail: format!("no plan for a batch of {n}"),
    }
}
