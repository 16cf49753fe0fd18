//! The step plan: every dispatch of one training step (or one evaluation batch) for a fixed
//! batch size, recorded once, in named stages, so the per-step uniforms (batch offset, noise
//! seed, loss slot, Adam's step) are set by name, not by position.
use super::{Loss, LossPasses, Network};
use crate::gpu::{record_passes, Dispatch, Gpu, SlotLaunch, Tensor};
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
    /// The batch's gather; None when the first forward dispatch gathers it (`gather` fold:
    /// `dense.rows_gather`, or the first convolution's forward pass).
    gather: Option<Dispatch>,
    forward: Vec<Dispatch>,
    loss: Loss,
    /// Backward pass and Adam: training plans only.
    update: Option<Update>,
    /// `--folds adam`: the execution's losses, finished after its last step
    /// ([`record_steps`]); here so that a step recorded alone ([`StepPlan::dispatches`]) is
    /// whole.
    finish_steps: Option<Dispatch>,
}

/// A training plan's backward pass and Adam's step.
struct Update {
    backward: Vec<Dispatch>,
    adam: AdamStep,
}

enum AdamStep {
    /// `adam.step` (or `adam.step_loss_finish`): a dispatch of its own.
    Own(Box<Dispatch>),
    /// `dense.grads_adam` (`--folds adam`): the weight gradients with Adam's step, the whole
    /// backward pass (which is then empty); its loss partials in the region of its uniform
    /// slot, `region` floats apart, `regions` of them.
    InGrads {
        grads: Box<Dispatch>,
        region: u64,
        regions: usize,
    },
    /// `conv2d.backward_weight_reduce_adam` (`--folds adam` with `reduces`): the merged
    /// weight-gradient reduce, the backward pass's last dispatch, with Adam's step and the
    /// loss's finish.
    InReduce(Box<Dispatch>),
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
        // Or the first convolution gathers it (`gather` too; a batch without noise).
        let split = (src.images, src.order);
        let gather_in_conv =
            !rows && src.noise == 0.0 && net.conv_gathering(gpu, n, &(0..layers))?.is_some();
        let gradient = training && net.folds_loss_gradient(gpu) && !rows;
        // Adam in the dense weight-gradient dispatch, the loss finished once per execution; or
        // in the conv weight-gradient reduce, the loss finished there.
        let in_grads = training && net.folds_adam(gpu, n);
        let in_reduce = training && net.folds_reduce_adam(gpu, n)?;
        let in_adam = training && net.folds_loss_finish(gpu) && !in_grads && !in_reduce;
        let update = match adam {
            Some(cfg) if in_grads => {
                let (region, regions) = net.step_loss_regions()?;
                Some(Update {
                    backward: Vec::new(),
                    adam: AdamStep::InGrads {
                        grads: Box::new(net.grads_adam(gpu, n, cfg)?),
                        region,
                        regions,
                    },
                })
            }
            Some(cfg) if in_reduce => {
                let (backward, reduce) = net.backward_adam(gpu, n, cfg, src.loss_log)?;
                Some(Update {
                    backward,
                    adam: AdamStep::InReduce(Box::new(reduce)),
                })
            }
            Some(cfg) => {
                let step = match in_adam {
                    true => net.adam_loss_finish(gpu, cfg, n, src.loss_log, 0)?,
                    false => net.adam(gpu, cfg, 1)?,
                };
                Some(Update {
                    backward: net.backward(gpu, n)?,
                    adam: AdamStep::Own(Box::new(step)),
                })
            }
            None => None,
        };
        let finish_steps = match in_grads {
            true => Some(net.loss_finish_steps(gpu, src.loss_log)?),
            false => None,
        };
        Ok(StepPlan {
            n,
            pixels: net.model.input.len() as u32,
            noise: src.noise,
            param_len: net.model.param_len,
            gather: match gather_in_rows || gather_in_conv {
                true => None,
                false => Some(gather(gpu, net, n, src)?),
            },
            forward: match rows {
                true => vec![net.rows(gpu, n, gather_in_rows.then_some(split))?],
                false => net.forward(gpu, n, 0..layers, gather_in_conv.then_some(split))?,
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
                    finish: !in_adam && !in_grads && !in_reduce,
                },
            )?,
            update,
            finish_steps,
        })
    }

    /// Every dispatch of a step recorded alone, in the order they run: `step`'s, then
    /// under `--folds adam` the loss's finish.
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.step().chain(&self.finish_steps)
    }

    /// What one step costs when `per` steps share a submit, for timing it alone: every
    /// dispatch, less the `--folds adam` finish when it is shared (its 1/per of a dispatch is
    /// left out rather than counted whole).
    pub fn dispatches_at(&self, per: usize) -> impl Iterator<Item = &Dispatch> {
        let finish = self.finish_steps.iter().filter(move |_| per <= 1);
        self.step().chain(finish)
    }

    /// The dispatches each step of an execution runs ([`record_steps`] adds the finish of
    /// `--folds adam` once after the last).
    fn step(&self) -> impl Iterator<Item = &Dispatch> {
        let (backward, adam) = match &self.update {
            Some(u) => (u.backward.as_slice(), Some(u.adam.dispatch())),
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

    /// Of [`Self::len`], the dispatches an execution runs once for all its steps (`--folds
    /// adam`'s loss finish).
    pub fn shared_len(&self) -> usize {
        self.finish_steps.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same plan with `slots` uniform slots in each dispatch whose uniform changes per
    /// step, so that that many steps can go into one command buffer ([`record_steps`]).
    pub fn with_slots(mut self, gpu: &Gpu, slots: usize) -> Result<Self> {
        match self.gather.take() {
            Some(gather) => self.gather = Some(gather.with_slots(gpu, slots)?),
            None => self.forward[0] = self.forward[0].clone().with_slots(gpu, slots)?,
        }
        if let Some(finish) = self.loss.finish.take() {
            self.loss.finish = Some(finish.with_slots(gpu, slots)?);
        }
        if let Some(mut update) = self.update.take() {
            update.adam = match update.adam {
                AdamStep::Own(adam) => AdamStep::Own(Box::new(adam.with_slots(gpu, slots)?)),
                AdamStep::InGrads {
                    grads,
                    region,
                    regions,
                } => {
                    if slots > regions {
                        return Err(crate::Error::Shape {
                            op: "network",
                            detail: format!(
                                "{slots} steps per execution, loss regions for {regions}: \
                                 build the network on a device opened with as many steps \
                                 per execution"
                            ),
                        });
                    }
                    AdamStep::InGrads {
                        grads: Box::new(grads.with_slots(gpu, slots)?),
                        region,
                        regions,
                    }
                }
                AdamStep::InReduce(reduce) => {
                    AdamStep::InReduce(Box::new(reduce.with_slots(gpu, slots)?))
                }
            };
            self.update = Some(update);
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
            None => match self.forward[0].source.entry {
                "rows_gather" => {
                    ops::dense::set_rows_offset(&self.forward[0], slot, p.offset as u32)
                }
                _ => ops::conv2d::set_gather_offset(&self.forward[0], slot, p.offset as u32),
            },
        }
        let loss = (self.n as u64 * self.pixels as u64, p.loss_slot as u32);
        if let Some(finish) = &self.loss.finish {
            finish.stage(slot, &bce::finish_params(loss.0, loss.1));
        }
        if let (Some(update), Some((cfg, t))) = (&self.update, p.adam) {
            match &update.adam {
                AdamStep::Own(adam) => {
                    adam.stage(slot, &ops::adam::params(self.param_len, cfg, t, loss))
                }
                AdamStep::InGrads { grads, region, .. } => ops::dense::set_grads_adam_step(
                    grads,
                    slot,
                    slot as u64 * region,
                    loss.1,
                    cfg,
                    t,
                ),
                AdamStep::InReduce(reduce) => {
                    ops::conv2d::set_reduce_adam_step(reduce, slot, cfg, t, loss.1)
                }
            }
        }
    }

    /// Queues the uniforms [`Self::prepare`] staged, one write per dispatch (they take effect
    /// at the next submit).
    pub fn flush(&self, gpu: &Gpu) {
        self.dispatches().for_each(|d| d.flush(gpu));
    }

    /// The launches of the step whose uniforms [`Self::prepare`] put in slot `slot`
    /// (flushed), without the finish that [`record_steps`] adds after an execution's last step.
    fn launches(&self, slot: usize) -> impl Iterator<Item = SlotLaunch<'_>> {
        // Only the per-step dispatches have more than one slot.
        self.step()
            .map(move |d| SlotLaunch::at(d, if d.slots() > 1 { slot } else { 0 }))
    }
}

impl AdamStep {
    /// The dispatch that takes Adam's step.
    fn dispatch(&self) -> &Dispatch {
        match self {
            AdamStep::Own(adam) => adam,
            AdamStep::InGrads { grads, .. } => grads,
            AdamStep::InReduce(reduce) => reduce,
        }
    }
}

/// Records steps into one compute pass of `enc`: each a plan and the uniform slot
/// [`StepPlan::prepare`] staged for it, the staged uniforms flushed first (one command buffer,
/// one submit, for them all). Under `--folds adam`, one dispatch after the last step finishes
/// the loss of every step that left its partials in a region (one per slot: a region no step
/// of this execution filled is skipped).
pub fn record_steps(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, steps: &[(&StepPlan, usize)]) {
    for (plan, _) in steps {
        plan.flush(gpu);
    }
    let mut launches: Vec<SlotLaunch<'_>> = steps
        .iter()
        .flat_map(|(plan, slot)| plan.launches(*slot))
        .collect();
    // Every plan of a network shares its regions: one finish covers them all.
    let finish = steps
        .iter()
        .find_map(|(plan, _)| plan.finish_steps.as_ref());
    if let Some(finish) = finish {
        let regions = steps.iter().map(|(_, slot)| slot + 1).max().unwrap_or(1);
        launches.push(SlotLaunch {
            dispatch: finish,
            slot: 0,
            workgroups: [regions as u32, 1, 1],
        });
    }
    record_passes(enc, "steps", None, &launches);
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
