//! A model of dense layers only as one stack (`--folds rows`, `grads`, `adam`): its forward
//! pass and input gradients, then its weight gradients (with Adam's step), each one dispatch.
use super::{partial_layout, Network};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::{Layer, LayerOp, Model};
use crate::ops::{self, dense};
use crate::shapes::AdamConfig;
use crate::{Error, Result};

impl Network {
    /// Whether a training step runs the whole dense stack as one dispatch over the batch's
    /// rows (`--folds rows`: [`Network::rows`]): a model of dense layers only, its buffers in
    /// arenas, its rows' activations within the adapter's workgroup memory.
    pub fn folds_rows(&self, gpu: &Gpu) -> bool {
        gpu.folds.rows && self.stack(gpu, self.capacity).is_some()
    }

    /// The table [`dense::rows`] runs for a batch of n, when it can run.
    fn stack(&self, gpu: &Gpu, n: u32) -> Option<Vec<dense::StackLayer>> {
        let tb = self.training.as_ref()?;
        let (acts, dacts) = (self.act_arena.as_ref()?, tb.dact_arena.as_ref()?);
        let layers = self.model.layers.len();
        let mut stack = Vec::new();
        for i in 0..layers {
            let LayerOp::Dense {
                shape,
                relu,
                kernel,
                bias,
            } = self.model.op(i, n)
            else {
                return None;
            };
            stack.push(dense::StackLayer {
                s: shape,
                relu,
                kernel: self.model.params[kernel].offset,
                bias: bias.map(|b| self.model.params[b].offset),
                out: self.acts[i].offset - acts[i % 2].offset,
                dout: tb.dacts[i].offset - dacts[i % 2].offset,
            });
        }
        let widths = (0..=layers).map(|i| self.model.shapes[i].len()).sum();
        let fits = layers <= dense::STACK_MAX && dense::stack_rows(gpu, widths).is_some();
        fits.then_some(stack)
    }

    /// Whether a training step's [`Network::rows`] dispatch gathers its batch from the
    /// split's images itself rather than after a `batch.gather` dispatch (`--folds gather`):
    /// where `rows` runs and the inputs are the targets (no denoising noise).
    pub fn folds_gather(&self, gpu: &Gpu) -> bool {
        gpu.folds.gather && self.folds_rows(gpu) && self.inputs_are_targets()
    }

    /// Whether the model's input is its target (one buffer: no denoising noise).
    pub(super) fn inputs_are_targets(&self) -> bool {
        self.input.buffer == self.target.buffer
    }

    /// A training step's forward pass, logits' gradient and input gradients for a batch of
    /// n as one dispatch (see [`Network::folds_rows`]); with `gather`, the split's images and
    /// order, it gathers the batch itself (see [`Network::folds_gather`]; its offset is set
    /// per step by [`dense::set_rows_offset`]).
    pub fn rows(&self, gpu: &Gpu, n: u32, gather: Option<(&Tensor, &Tensor)>) -> Result<Dispatch> {
        let io = self.stack_io(gpu, n)?;
        let input = match gather {
            // The noisy gather writes two tensors; this one, only the targets.
            Some(_) if !self.inputs_are_targets() => {
                return Err(Error::Shape {
                    op: "network",
                    detail: "a noisy input is gathered by batch.gather_noisy, not dense.rows"
                        .into(),
                })
            }
            Some((images, order)) => dense::StackInput::Gather {
                images,
                order,
                batch: &io.target,
            },
            None => dense::StackInput::Batch {
                x: &io.x,
                target: &io.target,
            },
        };
        let (acts, dacts) = (io.acts, io.dacts);
        dense::rows(
            gpu,
            "dense",
            n,
            &io.stack,
            true,
            input,
            &self.params,
            acts,
            dacts,
        )
    }

    /// What [`dense::rows`] and [`dense::grads`] bind for a batch of n.
    fn stack_io(&self, gpu: &Gpu, n: u32) -> Result<StackIo<'_>> {
        let tb = self.training()?;
        let (Some(stack), Some(acts), Some(dacts)) =
            (self.stack(gpu, n), &self.act_arena, &tb.dact_arena)
        else {
            return Err(Error::Shape {
                op: "network",
                detail: "this model's layers cannot run as one dense stack".into(),
            });
        };
        let pixels = self.model.input.len();
        Ok(StackIo {
            stack,
            x: self.view(&self.input, n, pixels),
            target: self.view(&self.target, n, pixels),
            acts: [&acts[0], &acts[1]],
            dacts: [&dacts[0], &dacts[1]],
        })
    }

    /// Whether a training step of n runs every dense layer's weight gradient and the loss's
    /// partial sums as one dispatch after [`Network::rows`] (`--folds grads`:
    /// [`Network::grads`]): where `rows` runs and `dense::grads_fit` holds.
    pub fn folds_grads(&self, gpu: &Gpu, n: u32) -> bool {
        gpu.folds.grads
            && self.folds_rows(gpu)
            && self.stack(gpu, n).is_some_and(|s| dense::grads_fit(&s, n))
    }

    /// The weight gradients and loss partial sums of a batch of n as one dispatch (see
    /// [`Network::folds_grads`]).
    pub fn grads(&self, gpu: &Gpu, n: u32) -> Result<Dispatch> {
        let io = self.stack_io(gpu, n)?;
        let total = n as u64 * self.model.input.len();
        let partials = self.partials.view(0, ops::bce::partials_len(total));
        let (x, t, g) = (&io.x, &io.target, &self.training()?.grads);
        dense::grads(
            gpu, "dense", n, &io.stack, x, io.acts, io.dacts, g, t, &partials,
        )
    }

    /// Whether a training step of n takes Adam's step in its weight-gradient dispatch, its
    /// loss finished once per execution (`--folds adam`: [`Network::grads_adam`],
    /// [`Network::loss_finish_steps`]): where `grads` runs and the device binds enough
    /// storage buffers.
    pub fn folds_adam(&self, gpu: &Gpu, n: u32) -> bool {
        gpu.folds.adam && self.folds_grads(gpu, n) && dense::grads_adam_fits(gpu)
    }

    /// [`Network::grads`] with Adam's step (see [`Network::folds_adam`]), its loss partials
    /// in one of the regions [`Network::step_loss_regions`] describes (staged per step).
    pub fn grads_adam(&self, gpu: &Gpu, n: u32, cfg: &AdamConfig) -> Result<Dispatch> {
        let io = self.stack_io(gpu, n)?;
        let tb = self.training()?;
        let adam = dense::AdamIo {
            params: &self.params,
            m: &tb.adam_m,
            v: &tb.adam_v,
            regions: &tb.step_losses,
        };
        let (x, t, g) = (&io.x, &io.target, &tb.grads);
        dense::grads_adam(
            gpu, "dense", n, &io.stack, x, io.acts, io.dacts, g, t, &adam, cfg,
        )
    }

    /// The steps' loss regions (`--folds adam`): floats apart, and how many there are (the
    /// most steps one execution can hold under the fold).
    pub fn step_loss_regions(&self) -> Result<(u64, usize)> {
        let tb = self.training()?;
        Ok((
            tb.step_region,
            (tb.step_losses.len / tb.step_region) as usize,
        ))
    }

    /// The losses of an execution's steps under `--folds adam` into `loss`, one workgroup per
    /// step region: built over the first, which a step recorded alone fills (an execution
    /// records it over as many as its steps filled).
    pub fn loss_finish_steps(&self, gpu: &Gpu, loss: &Tensor) -> Result<Dispatch> {
        let tb = self.training()?;
        let (regions, stride) = (&tb.step_losses, tb.step_region);
        ops::bce::loss_finish_steps(gpu, "loss", regions, stride, 1, loss)
    }
}

/// What the dense stack's two dispatches bind: its table, the batch's inputs and targets,
/// and the two buffers (by layer parity) of outputs and of gradients.
struct StackIo<'a> {
    stack: Vec<dense::StackLayer>,
    x: Tensor,
    target: Tensor,
    acts: [&'a Tensor; 2],
    dacts: [&'a Tensor; 2],
}

/// For a model of dense layers only: two buffers for every layer's output at capacity `cap`
/// (or their gradients), layer i's in buffer i % 2, and where in it each layer's starts,
/// aligned as `partial_layout` aligns; None for other models, or when a buffer would pass
/// one binding (then each layer's output has a buffer of its own, and [`Network::rows`]
/// cannot run).
pub(super) fn stack_arena(
    gpu: &Gpu,
    label: &str,
    model: &Model,
    cap: u64,
) -> Result<Option<([Tensor; 2], Vec<u64>)>> {
    if !model
        .layers
        .iter()
        .all(|l| matches!(l, Layer::Dense { .. }))
    {
        return Ok(None);
    }
    let most = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size);
    let mut at = vec![0; model.layers.len()];
    let mut arenas = Vec::new();
    for parity in 0..2 {
        // Each layer's need in this buffer: 0 for the other parity's layers.
        let lens: Vec<u64> = (1..=model.layers.len())
            .map(|i| cap * model.shapes[i].len() * ((i - 1) % 2 == parity) as u64)
            .collect();
        let (len, Some(starts)) = partial_layout(true, most, &lens) else {
            return Ok(None);
        };
        for (i, start) in starts.into_iter().enumerate() {
            if let Some(start) = start {
                at[i] = start;
            }
        }
        // At least one vec4: dense::grads binds both buffers as vec4 arrays, even the odd
        // one of a one-layer stack.
        let len = len.max(4);
        arenas.push(gpu.tensor(&format!("{label} {}", ["even", "odd"][parity]), len)?);
    }
    let Ok(arenas) = <[Tensor; 2]>::try_from(arenas) else {
        return Ok(None);
    };
    Ok(Some((arenas, at)))
}
