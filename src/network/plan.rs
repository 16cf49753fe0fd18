//! The step plan: every dispatch of one training step (or one evaluation batch) for a fixed
//! batch size, recorded once, in named stages, so the per-step uniforms (batch offset, noise
//! seed, loss slot, Adam's step) are set by name, not by position.
use super::{Loss, LossPasses, Network};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops::{self, batch, bce};
use crate::shapes::AdamConfig;
use crate::Result;

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

/// Where a plan's batches come from and where its losses go.
pub struct StepSource<'a> {
    /// Packed u8 images of a split.
    pub images: &'a Tensor,
    /// The order in which the split is walked (a permutation, or the identity).
    pub order: &'a Tensor,
    /// One loss per step.
    pub loss_log: &'a Tensor,
    /// Denoising noise added to the inputs (0: none).
    pub noise: f32,
}

pub struct StepPlan {
    /// Batch size.
    pub n: u32,
    pixels: u32,
    noise: f32,
    /// Parameters Adam updates (its uniform's length).
    param_len: u64,
    /// The batch's gather; None when the first forward dispatch gathers it (`gather` fold).
    gather: Option<Dispatch>,
    forward: Vec<Dispatch>,
    loss: Loss,
    /// Backward pass and Adam: training plans only.
    update: Option<(Vec<Dispatch>, Dispatch)>,
}

/// The per-step uniforms of a plan.
pub struct StepParams<'a> {
    /// First entry of the split's order that this batch takes.
    pub offset: usize,
    /// The entry of the loss log this step fills.
    pub loss_slot: usize,
    pub noise_seed: u32,
    /// Adam's settings and its step count (1-based) for a training plan.
    pub adam: Option<(&'a AdamConfig, u64)>,
}

impl StepPlan {
    /// Gather, forward and loss; with `adam`, backward and the Adam update too.
    pub fn new(
        gpu: &Gpu,
        net: &Network,
        n: u32,
        src: &StepSource<'_>,
        adam: Option<&AdamConfig>,
    ) -> Result<Self> {
        let layers = net.model.layers.len();
        // A training plan's loss pass writes the logits' gradient too when folded, and its
        // Adam dispatch may finish the loss.
        let training = adam.is_some();
        // The rows fold writes the logits' gradient itself.
        let rows = training && net.folds_rows(gpu);
        let gather_in_rows = rows && net.folds_gather(gpu);
        let gradient = training && net.folds_loss_gradient(gpu) && !rows;
        let in_adam = training && net.folds_loss_finish(gpu);
        let update = match adam {
            Some(cfg) => {
                let step = match in_adam {
                    true => net.adam_loss_finish(gpu, cfg, n, src.loss_log, 0)?,
                    false => net.adam(gpu, cfg, 1)?,
                };
                Some((net.backward(gpu, n)?, step))
            }
            None => None,
        };
        Ok(StepPlan {
            n,
            pixels: net.model.input.len() as u32,
            noise: src.noise,
            param_len: net.model.param_len,
            gather: match gather_in_rows {
                true => None,
                false => Some(gather(gpu, net, n, src)?),
            },
            forward: match rows {
                true => {
                    let gather = gather_in_rows.then_some((src.images, src.order));
                    vec![net.rows(gpu, n, gather)?]
                }
                false => net.forward(gpu, n, 0..layers)?,
            },
            loss: net.loss(
                gpu,
                n,
                src.loss_log,
                0,
                LossPasses {
                    gradient,
                    // The grads fold sums the loss beside the weight gradients.
                    partial: !(training && net.folds_grads(gpu, n)),
                    finish: !in_adam,
                },
            )?,
            update,
        })
    }

    /// Every dispatch in the order they run.
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        let (backward, adam) = match &self.update {
            Some((b, a)) => (b.as_slice(), Some(a)),
            None => (&[][..], None),
        };
        // The loss finishes after the backward pass, which may sum its partials (`grads`).
        self.gather
            .iter()
            .chain(&self.forward)
            .chain(&self.loss.partial)
            .chain(backward)
            .chain(&self.loss.finish)
            .chain(adam)
    }

    pub fn len(&self) -> usize {
        self.dispatches().count()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same plan with `slots` uniform slots in each dispatch whose uniform changes per
    /// step, so that that many steps can go into one command buffer ([`Self::record`]).
    pub fn with_slots(mut self, gpu: &Gpu, slots: usize) -> Result<Self> {
        match self.gather.take() {
            Some(gather) => self.gather = Some(gather.with_slots(gpu, slots)?),
            None => self.forward[0] = self.forward[0].clone().with_slots(gpu, slots)?,
        }
        if let Some(finish) = self.loss.finish.take() {
            self.loss.finish = Some(finish.with_slots(gpu, slots)?);
        }
        if let Some((backward, adam)) = self.update.take() {
            self.update = Some((backward, adam.with_slots(gpu, slots)?));
        }
        Ok(self)
    }

    /// Bytes of its dispatches' uniform buffers.
    pub fn uniform_bytes(&self) -> u64 {
        self.dispatches().map(Dispatch::uniform_bytes).sum()
    }

    /// Steps one command buffer can hold: see [`Self::with_slots`].
    pub fn slots(&self) -> usize {
        self.batch_source().slots()
    }

    /// The dispatch that takes the batch's offset: the gather, or the forward pass that
    /// gathers its own batch.
    fn batch_source(&self) -> &Dispatch {
        self.gather.as_ref().unwrap_or(&self.forward[0])
    }

    /// Stages the per-step uniforms of uniform slot `slot`: [`Self::flush`] sends them.
    pub fn prepare(&self, slot: usize, p: &StepParams<'_>) {
        match &self.gather {
            Some(gather) => gather.stage(
                slot,
                &batch_params(
                    self.n,
                    self.pixels,
                    p.offset as u32,
                    p.noise_seed,
                    self.noise,
                ),
            ),
            None => ops::dense::set_rows_offset(&self.forward[0], slot, p.offset as u32),
        }
        let loss = (self.n as u64 * self.pixels as u64, p.loss_slot as u32);
        if let Some(finish) = &self.loss.finish {
            finish.stage(slot, &bce::finish_params(loss.0, loss.1));
        }
        if let (Some((_, adam)), Some((cfg, t))) = (&self.update, p.adam) {
            adam.stage(slot, &ops::adam::params(self.param_len, cfg, t, loss));
        }
    }

    /// Queues the uniforms [`Self::prepare`] staged, one write per dispatch (they take effect
    /// at the next submit).
    pub fn flush(&self, gpu: &Gpu) {
        self.dispatches().for_each(|d| d.flush(gpu));
    }

    /// Records the step whose uniforms [`Self::prepare`] put in slot `slot` (flushed).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        for d in self.dispatches() {
            // Only the per-step dispatches have more than one slot.
            d.record_slot(pass, if d.slots() > 1 { slot } else { 0 });
        }
    }
}

/// Records steps into one compute pass of `enc`: each a plan and the uniform slot
/// [`StepPlan::prepare`] staged for it, the staged uniforms flushed first (one command buffer,
/// one submit, for them all).
pub fn record_steps(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, steps: &[(&StepPlan, usize)]) {
    for (plan, _) in steps {
        plan.flush(gpu);
    }
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("steps"),
        timestamp_writes: None,
    });
    for (plan, slot) in steps {
        plan.record(&mut pass, *slot);
    }
}

fn batch_params(n: u32, pixels: u32, offset: u32, seed: u32, noise: f32) -> batch::Params {
    batch::Params {
        n,
        pixels,
        offset,
        seed,
        noise,
        _p: [0; 3],
    }
}

fn gather(gpu: &Gpu, net: &Network, n: u32, src: &StepSource<'_>) -> Result<Dispatch> {
    let pixels = net.model.input.len();
    let target = net.target.view(0, n as u64 * pixels);
    let bp = batch_params(n, pixels as u32, 0, 0, src.noise);
    if src.noise > 0.0 {
        let input = net.input.view(0, n as u64 * pixels);
        batch::gather_noisy(gpu, "batch", &bp, src.images, src.order, &target, &input)
    } else {
        batch::gather(gpu, "batch", &bp, src.images, src.order, &target)
    }
}
