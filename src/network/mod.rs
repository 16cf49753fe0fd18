//! A model's GPU side for a batch capacity: the parameter buffer, per-layer activations, and
//! the dispatch lists of the forward pass, the loss and (when built for training) the
//! backward pass and Adam, for any batch size up to the capacity.
mod plan;

pub use plan::{record_steps, DeviceSplit, StepParams, StepPlan, StepSource};

use crate::gpu::{Dispatch, Gpu, KernelSet, Tensor};
use crate::model::{Layer, LayerOp, Model, PARAM_ALIGN};
use crate::ops::{self, activation, conv2d, dense, pool, stride, upsample};
use crate::shapes::{AdamConfig, Padding, StrideShape};
use crate::{Error, Result};
use std::ops::Range;

/// What a network is built for: training holds gradients and Adam's moments too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `noisy`: the input is a noisy copy of the target (the denoising variant).
    Training { noisy: bool },
    /// Forward passes and the loss only.
    Inference,
}

/// The buffers only training needs.
pub struct TrainingBuffers {
    pub grads: Tensor,
    pub adam_m: Tensor,
    pub adam_v: Tensor,
    /// `dacts[i]`: gradient of the loss w.r.t. `acts[i]`.
    pub dacts: Vec<Tensor>,
    /// Scratch for the conv layers' split weight-gradient sums: shared (they run in turn), or
    /// with the reduces folded, a region per layer (`partial_regions`) for the one reduce
    /// after the backward pass to read.
    conv_partials: Tensor,
    /// Where each conv layer's partial sums start in `conv_partials` (indexed by layer) when
    /// the reduces are folded into one dispatch.
    partial_regions: Option<Vec<Option<u64>>>,
    /// As `Network::act_arena`, for the gradients (`dacts[i]` in `dact_arena[i % 2]`).
    dact_arena: Option<[Tensor; 2]>,
    /// Scratch for a ReLU layer's masked gradient on the CPU kernel set (shared likewise).
    relu_masked: Tensor,
    /// With `--folds adam`, a region per step of an execution for its loss partials (and
    /// the header `bce.loss_finish_steps` reads), `step_region` floats apart.
    step_losses: Tensor,
    step_region: u64,
    /// Where a layer without a bias writes the bias gradient its kernel computes anyway
    /// (never read; a buffer of its own, so no dispatch binds one buffer writable twice).
    discarded_bias_grad: Tensor,
}

pub struct Network {
    pub model: Model,
    pub capacity: u32,
    pub params: Tensor,
    /// The model's input; equal to `target` unless the input is noisy.
    pub input: Tensor,
    /// The clean images the loss compares against.
    pub target: Tensor,
    /// `acts[i]`: output of layer i (after its fused ReLU; the last layer's are logits).
    pub acts: Vec<Tensor>,
    /// Pool winners, for pooling layers.
    winners: Vec<Option<Tensor>>,
    /// sigmoid(logits): the reconstruction, for inference.
    pub probs: Tensor,
    /// The loss's per-workgroup partial sums.
    partials: Tensor,
    /// Zeros: the bias of layers without one (`use_bias=False`).
    zeros: Tensor,
    /// For a model of dense layers only, the two buffers every layer's output lies in
    /// (`acts[i]` is a view of `act_arena[i % 2]`), so that [`Network::rows`] binds them all
    /// at once; each per-layer kernel still reads one buffer and writes the other.
    act_arena: Option<[Tensor; 2]>,
    training: Option<TrainingBuffers>,
}

const BATCH_FIX: &str = "use a smaller --batch-size";

/// The parameter buffers grow with the image size, not the batch.
const PARAMS_FIX: &str = "the model's weights grow with the image size, not the batch: use \
                          smaller images, or a model with fewer weights per pixel";

impl Network {
    pub fn new(gpu: &Gpu, model: Model, capacity: u32, purpose: Purpose) -> Result<Self> {
        let cap = capacity as u64;
        let pixels = model.input.len();
        // First the buffers no batch size can shrink, so their limit is the one reported.
        let params = gpu.tensor_or("params", model.param_len, PARAMS_FIX)?;
        let training = match purpose {
            Purpose::Training { .. } => Some(TrainingBuffers::new(gpu, &model, capacity)?),
            Purpose::Inference => None,
        };
        let target = gpu.tensor("target", cap * pixels)?;
        let input = match purpose {
            Purpose::Training { noisy: true } => gpu.tensor("noisy input", cap * pixels)?,
            _ => target.clone(),
        };
        let mut acts: Vec<Tensor> = Vec::new();
        let mut winners = Vec::new();
        let act_arena = stack_arena(gpu, "dense activations", &model, cap)?;
        for (i, layer) in model.layers.iter().enumerate() {
            let len = cap * model.shapes[i + 1].len();
            gpu.check_buffer("an activation buffer", len * 4, BATCH_FIX)?;
            acts.push(match (layer, i, &act_arena) {
                // A reshape's output is its input, in the same order.
                (Layer::Reshape { .. }, 0, _) => input.clone(),
                (Layer::Reshape { .. }, _, _) => acts[i - 1].clone(),
                (_, _, Some((arena, at))) => arena[i % 2].view(at[i], len),
                _ => gpu.tensor(&format!("act{i}"), len)?,
            });
            winners.push(match layer {
                Layer::MaxPool { .. } => Some(gpu.tensor(&format!("winner{i}"), len)?),
                _ => None,
            });
        }
        let widest = widest_channels(&model);
        Ok(Network {
            params,
            probs: gpu.tensor("probs", cap * pixels)?,
            partials: gpu.tensor("loss partials", ops::bce::partials_len(cap * pixels))?,
            zeros: gpu.tensor("zero bias", widest)?,
            model,
            capacity,
            input,
            target,
            acts,
            winners,
            act_arena: act_arena.map(|(arena, _)| arena),
            training,
        })
    }

    /// Bytes of every GPU buffer this network holds.
    pub fn bytes(&self) -> u64 {
        // The arenas first: whole buffers, where the layers' tensors are views of them.
        let mut tensors: Vec<&Tensor> = self.act_arena.iter().flatten().collect();
        if let Some(t) = &self.training {
            tensors.extend(t.dact_arena.iter().flatten());
        }
        tensors.extend([&self.params, &self.target, &self.probs]);
        tensors.extend([&self.partials, &self.zeros]);
        tensors.push(&self.input);
        tensors.extend(self.acts.iter().chain(self.winners.iter().flatten()));
        if let Some(t) = &self.training {
            tensors.extend([
                &t.grads,
                &t.adam_m,
                &t.adam_v,
                &t.conv_partials,
                &t.relu_masked,
                &t.discarded_bias_grad,
                &t.step_losses,
            ]);
            tensors.extend(&t.dacts);
        }
        // Each buffer once: a reshape's tensors alias the layer's before it.
        let mut seen: Vec<&wgpu::Buffer> = Vec::new();
        tensors.retain(|t| {
            let new = !seen.contains(&&t.buffer);
            seen.push(&t.buffer);
            new
        });
        tensors.iter().map(|t| t.buffer_bytes()).sum()
    }

    /// The training buffers, or an error for a network built for inference.
    pub fn training(&self) -> Result<&TrainingBuffers> {
        self.training.as_ref().ok_or_else(|| Error::Shape {
            op: "network",
            detail: "this network was built for inference: it has no gradients".into(),
        })
    }

    fn view(&self, t: &Tensor, n: u32, features: u64) -> Tensor {
        t.view(0, n as u64 * features)
    }

    /// Layer i's input for a batch of n.
    fn layer_input(&self, i: usize, n: u32) -> Tensor {
        let f = self.model.shapes[i].len();
        if i == 0 {
            self.view(&self.input, n, f)
        } else {
            self.view(&self.acts[i - 1], n, f)
        }
    }

    fn act(&self, i: usize, n: u32) -> Tensor {
        self.view(&self.acts[i], n, self.model.shapes[i + 1].len())
    }

    /// The tensor that feeds layer `start` (where inference writes its inputs) and the one
    /// that holds the output of the layers before `end` (where it reads them).
    pub fn io(&self, range: &Range<usize>, n: u32) -> (Tensor, Tensor) {
        let input = self.layer_input(range.start, n);
        let output = if range.end == self.model.layers.len() {
            self.probs.view(0, n as u64 * self.model.input.len())
        } else {
            self.act(range.end - 1, n)
        };
        (input, output)
    }

    fn param(&self, buf: &Tensor, k: usize) -> Tensor {
        let p = &self.model.params[k];
        buf.view(p.offset, p.len)
    }

    fn winner(&self, i: usize, len: u64) -> Result<Tensor> {
        match &self.winners[i] {
            Some(t) => Ok(t.view(0, len)),
            None => Err(Error::Shape {
                op: "pool",
                detail: format!("layer {i} has no winner buffer"),
            }),
        }
    }

    /// Forward dispatches of layers `range` for a batch of n; with `gather` (a split's packed
    /// images and its order), the first convolution gathers the batch itself where it can
    /// ([`Network::conv_gathering`]; else the caller's gather must run first).
    pub fn forward(
        &self,
        gpu: &Gpu,
        n: u32,
        range: Range<usize>,
        gather: Option<(&Tensor, &Tensor)>,
    ) -> Result<Vec<Dispatch>> {
        let gathering = match gather {
            Some(split) => self.conv_gathering(gpu, n, &range)?.map(|i| (i, split)),
            None => None,
        };
        let layers = in_parallel(range.clone().collect(), |i| {
            let gather = gathering.filter(|(at, _)| *at == i).map(|(_, split)| split);
            self.forward_layer(gpu, i, n, &range, gather)
        })?;
        Ok(layers.into_iter().flatten().collect())
    }

    /// The layer whose forward pass gathers the batch from the split itself (`--folds
    /// gather`, a forward pass from the first layer): the model's first convolution, where
    /// only reshapes come before it, the inputs are the targets (no denoising noise) and its
    /// outputs cover every input pixel once (`conv2d::gathers`); None elsewhere, and then a
    /// gather dispatch runs first. The batch is written where the inputs are, for the loss
    /// and the layer's weight gradient.
    pub fn conv_gathering(&self, gpu: &Gpu, n: u32, range: &Range<usize>) -> Result<Option<usize>> {
        if !gpu.folds.gather || !self.inputs_are_targets() || range.start != 0 {
            return Ok(None);
        }
        let first = self
            .model
            .layers
            .iter()
            .position(|l| !matches!(l, Layer::Reshape { .. }));
        let Some(i) = first.filter(|i| range.contains(i)) else {
            return Ok(None);
        };
        let LayerOp::Conv2d { shape, .. } = self.model.op(i, n) else {
            return Ok(None);
        };
        let io = self.conv_io(gpu, i, n, range)?;
        Ok((io.x.buffer == self.input.buffer && conv2d::gathers(&shape, &io.folds())).then_some(i))
    }

    /// Whether layer i is a 2x upsampling that the convolution after it reads through
    /// (`conv2d::Input::Upsampled2x`) when both run in `range`: then the upsampling runs no
    /// dispatch, forward or backward, and its output and gradient buffers are never written.
    fn folded_upsample(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        if !range.contains(&i) || !range.contains(&(i + 1)) {
            return false;
        }
        let LayerOp::Upsample(_) = self.model.op(i, n) else {
            return false;
        };
        // A take the convolution keeps (a strided Conv2D's) goes first: one kernel folds
        // one of them.
        match self.model.op(i + 1, n) {
            LayerOp::Conv2d { shape, .. } => {
                conv2d::folds_upsample(gpu, &shape) && !self.folded_take(gpu, i + 2, n, range)
            }
            _ => false,
        }
    }

    /// Whether layer i is a zero insertion (a Keras Conv2DTranspose's) that the convolution
    /// after it reads through (`conv2d::Input::Inserted`) when both run in `range`: then the
    /// insertion runs no dispatch, forward or backward, and its output and gradient buffers
    /// are never written.
    fn folded_insert(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        self.strided_map_folded(gpu, i, i + 1, n, range).is_some()
    }

    /// The small side of layer `map`'s stride-2 index map where the convolution `conv` beside
    /// it takes the map over (both in `range`): an insertion in front of it, or a take after.
    fn strided_map_folded(
        &self,
        gpu: &Gpu,
        map: usize,
        conv: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Option<conv2d::Strided> {
        if !range.contains(&map) || !range.contains(&conv) {
            return None;
        }
        let LayerOp::Conv2d { shape, .. } = self.model.op(conv, n) else {
            return None;
        };
        let (small, folds) = match self.model.op(map, n) {
            LayerOp::StrideInsert(st) if conv == map + 1 => {
                let small = conv2d::Strided::small_side_of(&st);
                (small, conv2d::folds_insert(gpu, &shape, &small))
            }
            LayerOp::StrideTake(st) if map == conv + 1 => {
                let small = conv2d::Strided::small_side_of(&st);
                (small, conv2d::folds_take(gpu, &shape, &small))
            }
            _ => return None,
        };
        folds.then_some(small)
    }

    /// Whether layer i is a stride-2 take (a Keras strided Conv2D's) that the convolution
    /// before it computes only the kept outputs of (`conv2d::Folds::take`) when both run in
    /// `range`: then the take runs no dispatch, forward or backward, and the convolution's
    /// full output and gradient buffers are never written.
    fn folded_take(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        i > 0 && self.strided_map_folded(gpu, i, i - 1, n, range).is_some()
    }

    /// Whether layer i is a 2x2 max pool that the convolution before it writes through
    /// (`conv2d::Pooled`) when both run in `range`: then the pool runs no dispatch, forward
    /// or backward, and the convolution's own output and gradient buffers are never written.
    fn folded_pool(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        if i == 0 || !range.contains(&(i - 1)) || !range.contains(&i) {
            return false;
        }
        let LayerOp::Pool(_) = self.model.op(i, n) else {
            return false;
        };
        // An insertion the convolution reads through (a Conv2DTranspose's) goes first: one
        // kernel folds one of them.
        let inserted = i >= 2 && self.folded_insert(gpu, i - 2, n, range);
        let input = match i >= 2 && self.folded_upsample(gpu, i - 2, n, range) {
            true => conv2d::Input::Upsampled2x,
            false => conv2d::Input::Direct,
        };
        match self.model.op(i - 1, n) {
            LayerOp::Conv2d { shape, .. } => conv2d::folds_pool(gpu, &shape, input) && !inserted,
            _ => false,
        }
    }

    /// Whether layer i's work is done by the convolution beside it.
    fn folded(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        self.folded_upsample(gpu, i, n, range)
            || self.folded_pool(gpu, i, n, range)
            || self.folded_insert(gpu, i, n, range)
            || self.folded_take(gpu, i, n, range)
    }

    /// What convolution i reads and writes: through a folded upsampling or zero insertion,
    /// that layer's input; through a folded pool, that layer's output and winners; through a
    /// folded take, that layer's output.
    fn conv_io(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> Result<ConvIo> {
        let below = i.checked_sub(1);
        let inserted = below.and_then(|b| self.strided_map_folded(gpu, b, i, n, range));
        let (input, x) = match (below, inserted) {
            (Some(b), Some(ins)) => (conv2d::Input::Inserted(ins), self.layer_input(b, n)),
            (Some(b), None) if self.folded_upsample(gpu, b, n, range) => {
                (conv2d::Input::Upsampled2x, self.layer_input(b, n))
            }
            _ => (conv2d::Input::Direct, self.layer_input(i, n)),
        };
        // (Layer i + 1 exists only when the pool is folded: test that first.)
        let pool = match self.folded_pool(gpu, i + 1, n, range) {
            true => match self.model.op(i + 1, n) {
                LayerOp::Pool(s) => Some((s.padding, self.winner(i + 1, s.output_len())?)),
                _ => None,
            },
            false => None,
        };
        let take = self.strided_map_folded(gpu, i + 1, i, n, range);
        let out = i + (pool.is_some() || take.is_some()) as usize;
        Ok(ConvIo {
            input,
            x,
            pool,
            take,
            out,
        })
    }

    /// The bias of a layer with weights: its tensor, or zeros without one.
    fn bias(&self, buf: &Tensor, bias: Option<usize>, len: u32) -> Tensor {
        match bias {
            Some(b) => self.param(buf, b),
            None => self.zeros.view(0, len as u64),
        }
    }

    /// Layer i's forward dispatches; `gather`: the split it gathers its batch from
    /// ([`Network::conv_gathering`] says which layer).
    fn forward_layer(
        &self,
        gpu: &Gpu,
        i: usize,
        n: u32,
        range: &Range<usize>,
        gather: Option<(&Tensor, &Tensor)>,
    ) -> Result<Vec<Dispatch>> {
        if self.folded(gpu, i, n, range) {
            return Ok(Vec::new());
        }
        let (x, y, label) = (self.layer_input(i, n), self.act(i, n), self.model.label(i));
        let p = |k| self.param(&self.params, k);
        Ok(vec![match self.model.op(i, n) {
            LayerOp::Conv2d {
                shape,
                relu,
                kernel,
                bias,
            } => {
                let b = self.bias(&self.params, bias, shape.co);
                let io = self.conv_io(gpu, i, n, range)?;
                let (x, y) = (&io.x, &self.act(io.out, n));
                let folds = conv2d::Folds {
                    gather: gather.map(|(images, order)| conv2d::Gathered {
                        images,
                        order,
                        batch: x,
                    }),
                    ..io.folds()
                };
                return conv2d::forward(gpu, &label, &shape, &folds, relu, x, &p(kernel), &b, y);
            }
            LayerOp::Dense {
                shape,
                relu,
                kernel,
                bias,
            } => {
                let b = self.bias(&self.params, bias, shape.fout);
                dense::forward(gpu, &label, &shape, relu, &x, &p(kernel), &b, &y)?
            }
            LayerOp::Pool(s) => {
                let win = self.winner(i, s.output_len())?;
                pool::forward(gpu, &label, &s, &x, &y, &win)?
            }
            LayerOp::Upsample(s) => upsample::forward(gpu, &label, &s, &x, &y)?,
            LayerOp::StrideInsert(s) => stride::insert(gpu, &label, &s, &x, &y)?,
            LayerOp::StrideTake(s) => stride::take(gpu, &label, &s, &x, &y)?,
            LayerOp::Reshape => return Ok(Vec::new()),
        }])
    }

    /// Whether a training plan's loss pass also writes the logits' gradient (`--folds loss`),
    /// so that its backward pass starts without `bce.sigmoid_backward`.
    pub fn folds_loss_gradient(&self, gpu: &Gpu) -> bool {
        gpu.folds.loss && self.training.is_some()
    }

    /// Whether a training plan's Adam dispatch also finishes the loss (`--folds finish`):
    /// then [`Network::loss`] builds no finish and [`Network::adam_loss_finish`] does it.
    pub fn folds_loss_finish(&self, gpu: &Gpu) -> bool {
        gpu.folds.finish && self.training.is_some()
    }

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
    fn inputs_are_targets(&self) -> bool {
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

    /// The mean loss of a batch of n into `loss[slot]`, in two fixed-tree passes: the partial
    /// sums ([`Loss::partial`]; unless `passes.partial` is false: then [`Network::grads`]
    /// sums them), then [`Loss::finish`], whose uniform holds the slot (unless
    /// `passes.finish` is false: then [`Network::adam_loss_finish`] does it). With
    /// `passes.gradient`, the first pass also writes the logits' gradient (see
    /// [`Network::folds_loss_gradient`]).
    pub fn loss(
        &self,
        gpu: &Gpu,
        n: u32,
        loss: &Tensor,
        slot: u32,
        passes: LossPasses,
    ) -> Result<Loss> {
        let total = n as u64 * self.model.input.len();
        let last = self.model.layers.len() - 1;
        let (z, t) = (
            self.act(last, n),
            self.view(&self.target, n, self.model.input.len()),
        );
        let partials = self.partials.view(0, ops::bce::partials_len(total));
        let partial = match (passes.partial, passes.gradient) {
            (false, _) => None,
            (true, true) => {
                let dz = self.training()?.dact(&self.model, last, n);
                let p = ops::bce::loss_partial_gradient(gpu, "loss", &z, &t, &partials, &dz)?;
                Some(p)
            }
            (true, false) => Some(ops::bce::loss_partial(gpu, "loss", &z, &t, &partials)?),
        };
        let finish = match passes.finish {
            false => None,
            true => Some(ops::bce::loss_finish(
                gpu, "loss", total, &partials, loss, slot,
            )?),
        };
        Ok(Loss { partial, finish })
    }

    /// sigmoid(logits) into `probs`: the reconstruction.
    pub fn reconstruct(&self, gpu: &Gpu, n: u32) -> Result<Dispatch> {
        let last = self.model.layers.len() - 1;
        let z = self.act(last, n);
        let probs = self.probs.view(0, z.len);
        ops::activation::sigmoid_forward(gpu, "sigmoid", &z, &probs)
    }

    /// The whole backward pass for a batch of n: the loss gradient w.r.t. the logits (sigmoid
    /// and BCE fused; unless the loss pass wrote it, [`Network::folds_loss_gradient`]), then
    /// every layer in reverse; kernel and bias gradients land in `grads`.
    pub fn backward(&self, gpu: &Gpu, n: u32) -> Result<Vec<Dispatch>> {
        if self.folds_grads(gpu, n) {
            return Ok(vec![self.grads(gpu, n)?]);
        }
        let tb = self.training()?;
        let all = 0..self.model.layers.len();
        let mut out = self.backward_layers(gpu, n)?;
        out.extend(self.reduce_all(gpu, tb, n, &all)?);
        Ok(out)
    }

    /// Whether a training step of n takes Adam's step, and finishes the loss, in its merged
    /// weight-gradient reduce (`--folds adam` with `reduces`: [`Network::backward_adam`]):
    /// where every layer with weights is a convolution whose reduce that dispatch runs.
    pub fn folds_reduce_adam(&self, gpu: &Gpu, n: u32) -> Result<bool> {
        let Some(tb) = self.training.as_ref().filter(|_| gpu.folds.adam) else {
            return Ok(false);
        };
        let all = 0..self.model.layers.len();
        let mut any = false;
        for i in all.clone() {
            match self.model.op(i, n) {
                LayerOp::Conv2d { .. } => {
                    if self.partial_region(gpu, tb, i, n, &all)?.is_none() {
                        return Ok(false);
                    }
                    any = true;
                }
                LayerOp::Dense { .. } => return Ok(false),
                _ => {}
            }
        }
        Ok(any)
    }

    /// The backward pass of a batch of n with Adam's step and the loss's finish (into
    /// `loss[slot]`, set per step) in its merged reduce, the last dispatch (see
    /// [`Network::folds_reduce_adam`]): the layers' dispatches, and the reduce.
    pub fn backward_adam(
        &self,
        gpu: &Gpu,
        n: u32,
        cfg: &AdamConfig,
        loss: &Tensor,
    ) -> Result<(Vec<Dispatch>, Dispatch)> {
        let tb = self.training()?;
        let all = 0..self.model.layers.len();
        let shares = self.reduce_shares(gpu, tb, n, &all)?;
        let total = n as u64 * self.model.input.len();
        let adam = conv2d::ReduceAdam {
            params: &self.params,
            m: &tb.adam_m,
            v: &tb.adam_v,
            loss_partials: &self.partials.view(0, ops::bce::partials_len(total)),
            total,
            loss,
        };
        let (partials, grads) = (&tb.conv_partials, &tb.grads);
        let reduce = conv2d::backward_params_reduce_adam(
            gpu, "conv2d", &shares, partials, grads, &adam, cfg,
        )?;
        Ok((self.backward_layers(gpu, n)?, reduce))
    }

    /// The backward pass of a batch of n up to the merged weight-gradient reduce: the loss
    /// gradient (unless the loss pass or `rows` wrote it), then every layer in reverse.
    fn backward_layers(&self, gpu: &Gpu, n: u32) -> Result<Vec<Dispatch>> {
        let tb = self.training()?;
        let last = self.model.layers.len() - 1;
        let t = self.view(&self.target, n, self.model.input.len());
        let dlogits = tb.dact(&self.model, last, n);
        let mut out = Vec::new();
        if !self.folds_loss_gradient(gpu) && !self.folds_rows(gpu) {
            let z = self.act(last, n);
            out.push(ops::bce::sigmoid_backward(gpu, "loss", &z, &t, &dlogits)?);
        }
        let all = 0..last + 1;
        let layers = in_parallel((0..=last).rev().collect(), |i| {
            self.backward_layer(gpu, tb, i, n, &all)
        })?;
        out.extend(layers.into_iter().flatten());
        Ok(out)
    }

    /// Where conv layer i's weight-gradient partial sums go when its reduce is folded into
    /// [`Network::reduce_all`]: its region, when the reduces are folded and the layer runs
    /// the GPU set's two-stage kernels.
    fn partial_region(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        i: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Option<u64>> {
        let (Some(regions), LayerOp::Conv2d { shape, .. }) =
            (&tb.partial_regions, self.model.op(i, n))
        else {
            return Ok(None);
        };
        let io = self.conv_io(gpu, i, n, range)?;
        Ok(regions[i].filter(|_| conv2d::splits_k(gpu.kernels, &shape, &io.folds())))
    }

    /// Every folded weight-gradient reduce as one dispatch (none when the reduces are not
    /// folded or no layer's is).
    fn reduce_all(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Option<Dispatch>> {
        let shares = self.reduce_shares(gpu, tb, n, range)?;
        if shares.is_empty() {
            return Ok(None);
        }
        let reduce = conv2d::backward_params_reduce_all(
            gpu,
            "conv2d",
            &shares,
            &tb.conv_partials,
            &tb.grads,
        )?;
        Ok(Some(reduce))
    }

    /// What the merged weight-gradient reduce sums: each convolution in `range` whose reduce
    /// it runs.
    fn reduce_shares(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Vec<conv2d::ReduceShare>> {
        let mut shares = Vec::new();
        for i in range.clone() {
            let LayerOp::Conv2d {
                shape,
                kernel,
                bias,
                ..
            } = self.model.op(i, n)
            else {
                continue;
            };
            if let Some(partials) = self.partial_region(gpu, tb, i, n, range)? {
                shares.push(conv2d::ReduceShare {
                    s: shape,
                    partials,
                    dw: self.model.params[kernel].offset,
                    db: bias.map(|b| self.model.params[b].offset),
                });
            }
        }
        Ok(shares)
    }

    fn backward_layer(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        i: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Vec<Dispatch>> {
        if self.folded(gpu, i, n, range) {
            return Ok(Vec::new());
        }
        let label = self.model.label(i);
        // A convolution with a folded pool or take takes that layer's output gradient, and
        // masks ReLU with its output.
        let folds_above =
            self.folded_pool(gpu, i + 1, n, range) || self.folded_take(gpu, i + 1, n, range);
        let written = i + folds_above as usize;
        let dy = tb.dact(&self.model, written, n);
        let x = self.layer_input(i, n);
        // No input gradient where no layer with weights lies below.
        let dx = self
            .model
            .needs_input_gradient(i)
            .then(|| tb.dact(&self.model, i - 1, n));
        let y = self.act(written, n);
        let mut out = Vec::new();
        // On the CPU set the ReLU mask runs once, into scratch (unless the layer above
        // applies it as it writes the gradient: relu_fused_above): lavapipe pays for every load,
        // and the layer's kernels would read the mask at each of the 9 taps.
        let masked = (gpu.kernels == KernelSet::Cpu).then(|| tb.relu_masked.view(0, dy.len));
        // The mask may already be applied, fused into the layer above's backward.
        let relu_done = self.relu_fused_above(gpu, i, n);
        let grad_out = |relu: bool, out: &mut Vec<Dispatch>| -> Result<conv2d::GradOut<'_>> {
            let relu = relu && !relu_done;
            if let (true, Some(masked)) = (relu, &masked) {
                out.push(activation::relu_backward(gpu, &label, &y, &dy, masked)?);
                return Ok(conv2d::GradOut {
                    dy: masked,
                    relu_output: None,
                });
            }
            Ok(conv2d::GradOut {
                dy: &dy,
                relu_output: relu.then_some(&y),
            })
        };
        match self.model.op(i, n) {
            LayerOp::Conv2d {
                shape: s,
                relu,
                kernel: k,
                bias,
            } => {
                let g = grad_out(relu, &mut out)?;
                let io = self.conv_io(gpu, i, n, range)?;
                let folds = io.folds();
                let len = conv2d::partials_len(gpu.kernels, &s, &folds);
                // Its weight-gradient partial sums: in a region of its own when its reduce
                // runs with every other layer's after the backward pass, else in the scratch
                // all layers share, reduced right after.
                let region = self.partial_region(gpu, tb, i, n, range)?;
                let partials = tb.conv_partials.view(region.unwrap_or(0), len);
                let (dw, db) = (self.param(&tb.grads, k), tb.bias_grad(self, bias, s.co));
                let w = self.param(&self.params, k);
                // Through a folded upsampling, the gradient of that layer's input.
                let dx = match io.input {
                    conv2d::Input::Direct => dx,
                    conv2d::Input::Upsampled2x | conv2d::Input::Inserted(_) => self
                        .model
                        .needs_input_gradient(i - 1)
                        .then(|| tb.dact(&self.model, i - 2, n)),
                };
                let pair = gpu.folds.backward && conv2d::splits_k(gpu.kernels, &s, &folds);
                match (&dx, pair) {
                    (Some(dx), true) => {
                        out.push(conv2d::backward_pair(
                            gpu, &label, &s, &folds, &g, &io.x, &w, &partials, dx,
                        )?);
                        if region.is_none() {
                            out.push(conv2d::backward_params_reduce(
                                gpu, &label, &s, &folds, &partials, &dw, &db,
                            )?);
                        }
                    }
                    _ => {
                        match region {
                            Some(_) => out.push(conv2d::backward_params_partial(
                                gpu, &label, &s, &folds, &g, &io.x, &partials,
                            )?),
                            None => out.extend(conv2d::backward_params(
                                gpu, &label, &s, &folds, &g, &io.x, &partials, &dw, &db,
                            )?),
                        }
                        if let Some(dx) = &dx {
                            out.extend(match self.relu_mask_below(gpu, i, n) {
                                Some(below) => conv2d::backward_input_masked(
                                    gpu, &label, &s, &folds, &g, &w, dx, &below,
                                )?,
                                None => {
                                    conv2d::backward_input(gpu, &label, &s, &folds, &g, &w, dx)?
                                }
                            });
                        }
                    }
                }
            }
            LayerOp::Dense {
                shape: s,
                relu,
                kernel: k,
                bias,
            } => {
                let g = grad_out(relu, &mut out)?;
                let (dw, db) = (self.param(&tb.grads, k), tb.bias_grad(self, bias, s.fout));
                out.extend(dense::backward_params(gpu, &label, &s, &g, &x, &dw, &db)?);
                // With the rows fold, Network::rows wrote the input gradient.
                if let (Some(dx), false) = (&dx, self.folds_rows(gpu)) {
                    let w = self.param(&self.params, k);
                    out.push(dense::backward_input(gpu, &label, &s, &g, &w, dx)?);
                }
            }
            LayerOp::Pool(s) => {
                if let Some(dx) = &dx {
                    let win = self.winner(i, s.output_len())?;
                    out.push(if self.relu_fused_by_pass_above(gpu, i - 1, n) {
                        pool::backward_masked(gpu, &label, &s, &win, &dy, &y, dx)?
                    } else {
                        pool::backward(gpu, &label, &s, &win, &dy, dx)?
                    });
                }
            }
            LayerOp::Upsample(s) => {
                if let Some(dx) = &dx {
                    out.push(if self.relu_fused_by_pass_above(gpu, i - 1, n) {
                        upsample::backward_masked(gpu, &label, &s, &dy, &x, dx)?
                    } else {
                        upsample::backward(gpu, &label, &s, &dy, dx)?
                    });
                }
            }
            // Each the other's gradient; the layer below applies its own ReLU mask (nothing
            // fuses it here; a convolution reading through a folded map may: relu_mask_writer).
            LayerOp::StrideInsert(s) => {
                if let Some(dx) = &dx {
                    out.push(stride::take(gpu, &label, &s, &dy, dx)?);
                }
            }
            LayerOp::StrideTake(s) => {
                if let Some(dx) = &dx {
                    out.push(stride::insert(gpu, &label, &s, &dy, dx)?);
                }
            }
            // Its gradients alias the layer's below: nothing to run.
            LayerOp::Reshape => {}
        }
        Ok(out)
    }

    /// Whether layer `i`'s ReLU mask is applied by the backward of a layer above (on the CPU
    /// set: a pooling or upsampling layer right above fuses it, and a convolution whose
    /// input gradient writes the gradient layer i reads masks it as it stores it; one pass
    /// over the gradient fewer).
    fn relu_fused_above(&self, gpu: &Gpu, i: usize, n: u32) -> bool {
        self.relu_mask_writer(gpu, i, n).is_some() || self.relu_fused_by_pass_above(gpu, i, n)
    }

    fn has_relu(&self, i: usize, n: u32) -> bool {
        match self.model.op(i, n) {
            LayerOp::Conv2d { relu, .. } | LayerOp::Dense { relu, .. } => relu,
            _ => false,
        }
    }

    /// Whether layer i + 1 is a pooling or upsampling layer, run on its own, that fuses layer
    /// i's ReLU mask into its backward (on the CPU set).
    fn relu_fused_by_pass_above(&self, gpu: &Gpu, i: usize, n: u32) -> bool {
        let all = 0..self.model.layers.len();
        let cpu_relu = gpu.kernels == KernelSet::Cpu && self.has_relu(i, n);
        if !cpu_relu || i + 1 >= all.end || self.folded(gpu, i + 1, n, &all) {
            return false;
        }
        match self.model.op(i + 1, n) {
            LayerOp::Pool(s) => pool::fuses_relu_mask(gpu, &s),
            LayerOp::Upsample(s) => upsample::fuses_relu_mask(gpu, &s),
            _ => false,
        }
    }

    /// On the CPU set, the convolution whose input gradient writes the gradient that layer
    /// `i` (with ReLU) reads, which then masks it as it stores it
    /// (`conv2d::backward_input_masked`): the layer right above that tensor, or the one after
    /// a folded upsampling or insertion above it. The tensor is layer i's output, or that of
    /// the pool or take folded into it.
    fn relu_mask_writer(&self, gpu: &Gpu, i: usize, n: u32) -> Option<usize> {
        let all = 0..self.model.layers.len();
        let runs = gpu.kernels == KernelSet::Cpu && !self.folded(gpu, i, n, &all);
        if !runs || !self.has_relu(i, n) {
            return None;
        }
        let read = i + self.reads_folded_above(gpu, i, n) as usize;
        let mut writer = read + 1;
        if writer < all.end && self.folded(gpu, writer, n, &all) {
            writer += 1;
        }
        if writer >= all.end {
            return None;
        }
        let LayerOp::Conv2d { shape, .. } = self.model.op(writer, n) else {
            return None;
        };
        let io = self.conv_io(gpu, writer, n, &all).ok()?;
        let below_input = match io.input {
            conv2d::Input::Direct => writer - 1,
            conv2d::Input::Upsampled2x | conv2d::Input::Inserted(_) => writer - 2,
        };
        let masks = conv2d::masks_input_gradient(gpu.kernels, &shape, &io.folds());
        (below_input == read && masks).then_some(writer)
    }

    /// Whether layer i + 1 is a pool or take folded into layer i, whose output gradient
    /// layer i then reads.
    fn reads_folded_above(&self, gpu: &Gpu, i: usize, n: u32) -> bool {
        let all = 0..self.model.layers.len();
        self.folded_pool(gpu, i + 1, n, &all) || self.folded_take(gpu, i + 1, n, &all)
    }

    /// The ReLU output that convolution `i`'s input gradient is masked by as it is stored, if
    /// it writes a gradient a ReLU layer below reads ([`Network::relu_mask_writer`]): that
    /// layer's output (or its folded pool's or take's).
    fn relu_mask_below(&self, gpu: &Gpu, i: usize, n: u32) -> Option<Tensor> {
        // The layers whose read gradient i may write: the one below it or below a folded
        // upsampling or insertion, or the layer before either when it folds a pool or take.
        let reader = (1..=3)
            .filter_map(|back| i.checked_sub(back))
            .find(|&j| self.relu_mask_writer(gpu, j, n) == Some(i))?;
        let read = reader + self.reads_folded_above(gpu, reader, n) as usize;
        Some(self.act(read, n))
    }

    /// One Adam step over every parameter at once.
    pub fn adam(&self, gpu: &Gpu, cfg: &AdamConfig, t: u64) -> Result<Dispatch> {
        let tb = self.training()?;
        let (w, g, m, v) = (&self.params, &tb.grads, &tb.adam_m, &tb.adam_v);
        ops::adam::step(gpu, "adam", cfg, t, w, g, m, v)
    }

    /// [`Network::adam`] that also finishes the loss of a batch of n into `loss[slot]`
    /// (`--folds finish`; the partial sums from [`Network::loss`]).
    pub fn adam_loss_finish(
        &self,
        gpu: &Gpu,
        cfg: &AdamConfig,
        n: u32,
        loss: &Tensor,
        slot: u32,
    ) -> Result<Dispatch> {
        let tb = self.training()?;
        let (w, g, m, v) = (&self.params, &tb.grads, &tb.adam_m, &tb.adam_v);
        let total = n as u64 * self.model.input.len();
        let partials = self.partials.view(0, ops::bce::partials_len(total));
        ops::adam::step_loss_finish(
            gpu, "adam", cfg, 1, w, g, m, v, total, &partials, loss, slot,
        )
    }
}

/// `f` of every item, in the items' order, built on as many threads as there are cores: the
/// first build of a plan compiles its pipelines, and a CPU adapter compiles each on the
/// calling thread (lavapipe: 0.1-0.3 s per CPU-set kernel, 2.3 s for the conv model's).
fn in_parallel<T: Send>(
    items: Vec<usize>,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if threads < 2 || items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let take = || next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut done: Vec<(usize, Result<T>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    // Keyed by position in `items`, the order the results are returned in.
                    loop {
                        let at = take();
                        let Some(&item) = items.get(at) else { break };
                        mine.push((at, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    done.sort_by_key(|(at, _)| *at);
    if done.len() != items.len() {
        return Err(Error::Shape {
            op: "network",
            detail: "a thread building the plan's dispatches panicked".into(),
        });
    }
    done.into_iter().map(|(_, r)| r).collect()
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

/// What a convolution reads and writes, its folds included.
struct ConvIo {
    input: conv2d::Input,
    /// The tensor it reads.
    x: Tensor,
    /// A folded pool's padding and winners.
    pool: Option<(Padding, Tensor)>,
    /// A folded take's kept outputs.
    take: Option<conv2d::Strided>,
    /// The layer whose output (and gradient) it writes (and reads): its own, or a folded
    /// pool's.
    out: usize,
}

impl ConvIo {
    fn folds(&self) -> conv2d::Folds<'_> {
        conv2d::Folds {
            input: self.input,
            pool: self.pool.as_ref().map(|(padding, winner)| conv2d::Pooled {
                padding: *padding,
                winner,
            }),
            take: self.take,
            gather: None,
        }
    }
}

/// The weight-gradient layouts conv layer i may write, as (kernel set, folds): the running
/// set's (None) plain, through an upsampling, and through the strided map beside it when the
/// model has one; and the GPU set's, which a fold that the CPU set's kernels do not take runs
/// on either set (its layout is the same whatever it folds). A pool the CPU set's kernels fold
/// needs fewer partial sums than the plain layout: they walk the pooled pixels.
fn partial_layouts(
    model: &Model,
    i: usize,
    n: u32,
) -> Vec<(Option<KernelSet>, conv2d::Folds<'static>)> {
    let strided = |st: StrideShape| conv2d::Strided::small_side_of(&st);
    let mut layouts = vec![
        (None, conv2d::Folds::default()),
        (
            None,
            conv2d::Folds {
                input: conv2d::Input::Upsampled2x,
                ..Default::default()
            },
        ),
        (Some(KernelSet::Gpu), conv2d::Folds::default()),
    ];
    if let Some(LayerOp::StrideInsert(st)) = i.checked_sub(1).map(|b| model.op(b, n)) {
        let input = conv2d::Input::Inserted(strided(st));
        layouts.push((
            None,
            conv2d::Folds {
                input,
                ..Default::default()
            },
        ));
    }
    if let Some(LayerOp::StrideTake(st)) = (i + 1 < model.layers.len()).then(|| model.op(i + 1, n))
    {
        let take = Some(strided(st));
        layouts.push((
            None,
            conv2d::Folds {
                take,
                ..Default::default()
            },
        ));
    }
    layouts
}

/// The two dispatches of the loss; `finish`'s uniform says which slot of the log it fills.
/// None where another dispatch does the work: the partial sums [`Network::grads`], the
/// finish [`Network::adam_loss_finish`].
pub struct Loss {
    pub partial: Option<Dispatch>,
    pub finish: Option<Dispatch>,
}

/// Which of its passes [`Network::loss`] builds, and whether the first also writes the
/// logits' gradient.
#[derive(Clone, Copy, Debug)]
pub struct LossPasses {
    pub gradient: bool,
    pub partial: bool,
    pub finish: bool,
}

impl TrainingBuffers {
    fn new(gpu: &Gpu, model: &Model, capacity: u32) -> Result<Self> {
        let cap = capacity as u64;
        let grads = gpu.tensor_or("grads", model.param_len, PARAMS_FIX)?;
        let adam_m = gpu.tensor_or("adam m", model.param_len, PARAMS_FIX)?;
        let adam_v = gpu.tensor_or("adam v", model.param_len, PARAMS_FIX)?;
        let mut dacts: Vec<Tensor> = Vec::new();
        let dact_arena = stack_arena(gpu, "dense gradients", model, cap)?;
        for (i, layer) in model.layers.iter().enumerate() {
            let len = cap * model.shapes[i + 1].len();
            dacts.push(match (layer, i, &dact_arena) {
                (Layer::Reshape { .. }, 1.., _) => dacts[i - 1].clone(),
                (_, _, Some((arena, at))) => arena[i % 2].view(at[i], len),
                _ => gpu.tensor(&format!("grad{i}"), len)?,
            });
        }
        // Each conv layer's scratch at the capacity (smaller batches need no more): the
        // largest of the layouts its folds may take.
        let scratch: Vec<u64> = (0..model.layers.len())
            .map(|i| match model.op(i, capacity) {
                LayerOp::Conv2d { shape, .. } => partial_layouts(model, i, capacity)
                    .iter()
                    .map(|(set, f)| conv2d::partials_len(set.unwrap_or(gpu.kernels), &shape, f))
                    .max()
                    .unwrap_or(0),
                _ => 0,
            })
            .collect();
        let most = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let (conv_scratch, partial_regions) = partial_layout(gpu.folds.reduces, most, &scratch);
        let step_region = ops::bce::step_region_len(cap * model.input.len());
        let regions = gpu.steps_per_execution.max(1) as u64;
        Ok(TrainingBuffers {
            step_losses: gpu.tensor("step loss regions", regions * step_region)?,
            step_region,
            grads,
            adam_m,
            adam_v,
            dacts,
            dact_arena: dact_arena.map(|(arena, _)| arena),
            partial_regions,
            conv_partials: gpu.tensor("conv weight-gradient partials", conv_scratch)?,
            relu_masked: gpu.tensor("masked gradient", relu_scratch_len(gpu, model, cap))?,
            discarded_bias_grad: gpu.tensor("discarded bias gradient", widest_channels(model))?,
        })
    }

    /// A layer's bias gradient: its slot in `grads`, or scratch for a layer without a bias.
    fn bias_grad(&self, net: &Network, bias: Option<usize>, len: u32) -> Tensor {
        match bias {
            Some(b) => net.param(&self.grads, b),
            None => self.discarded_bias_grad.view(0, len as u64),
        }
    }

    fn dact(&self, model: &Model, i: usize, n: u32) -> Tensor {
        self.dacts[i].view(0, n as u64 * model.shapes[i + 1].len())
    }
}

/// The conv weight-gradient scratch's length, and each conv layer's region in it when the
/// reduces are folded (`scratch`: each layer's need, 0 for other layers): end to end, when
/// they fit one buffer binding; otherwise (or unfolded) one region all layers share, as big
/// as the largest need, and every layer reduces its own.
/// `most`: the bytes one buffer binding may hold.
fn partial_layout(folded: bool, most: u64, scratch: &[u64]) -> (u64, Option<Vec<Option<u64>>>) {
    let largest = scratch.iter().copied().max().unwrap_or(0).max(1);
    // Each region starts at the storage offset alignment every adapter accepts.
    let aligned = |need: u64| need.div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
    let total: u64 = scratch.iter().map(|&need| aligned(need)).sum();
    if !folded || total * 4 > most {
        return (largest, None);
    }
    let mut at = 0;
    let regions = scratch
        .iter()
        .map(|&need| {
            let start = at;
            at += aligned(need);
            (need > 0).then_some(start)
        })
        .collect();
    (total.max(1), Some(regions))
}

/// For a model of dense layers only: two buffers for every layer's output at capacity `cap`
/// (or their gradients), layer i's in buffer i % 2, and where in it each layer's starts,
/// aligned as `partial_layout` aligns; None for other models, or when a buffer would pass
/// one binding (then each layer's output has a buffer of its own, and [`Network::rows`]
/// cannot run).
fn stack_arena(
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

/// The most channels (or Dense units) any layer has: the length of a bias.
fn widest_channels(model: &Model) -> u64 {
    model.shapes.iter().map(|f| f.c as u64).max().unwrap_or(1)
}

/// The masked-gradient scratch: the largest layer output of a batch on the CPU set (which
/// masks ReLU gradients in a pass of their own), a token length elsewhere.
fn relu_scratch_len(gpu: &Gpu, model: &Model, cap: u64) -> u64 {
    match gpu.kernels {
        KernelSet::Cpu => (1..=model.layers.len())
            .map(|i| cap * model.shapes[i].len())
            .max()
            .unwrap_or(1),
        KernelSet::Gpu => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::partial_layout;

    /// Folded, each conv layer's region starts aligned after the one before; unfolded, or
    /// when the regions together would pass one binding, one shared region as large as the
    /// largest need, and every layer reduces its own.
    #[test]
    fn partial_regions_are_aligned_end_to_end_or_shared() {
        let scratch = [100, 0, 64, 0, 1];
        let (len, regions) = partial_layout(true, 1 << 20, &scratch);
        assert_eq!(
            regions,
            Some(vec![Some(0), None, Some(128), None, Some(192)])
        );
        assert_eq!(len, 256);
        assert_eq!(partial_layout(false, 1 << 20, &scratch), (100, None));
        // 256 elements are 1024 bytes: one byte less is too small a binding.
        assert_eq!(partial_layout(true, 1023, &scratch), (100, None));
        assert_eq!(partial_layout(true, 1024, &scratch).0, 256);
    }
}
