//! A model's GPU side for a batch capacity: the parameter buffer, per-layer activations, and
//! the dispatch lists of the forward pass, the loss and (when built for training) the
//! backward pass and Adam, for any batch size up to the capacity.
//!
//! Here: the buffers and the views of them. Each list of dispatches has a file of its own:
//! `forward` (the forward pass and the loss), `backward` (layer by layer, the
//! weight-gradient reduces, Adam), `stack` (a dense-only model as one stack), with
//! `folds` saying which layers a convolution takes over; `plan` records them into steps.
mod backward;
mod folds;
mod forward;
mod plan;
mod stack;

pub use forward::{Loss, LossPasses};
use stack::stack_arena;

pub use plan::{record_steps, DeviceSplit, StepParams, StepPlan, StepSource};

use crate::gpu::{Gpu, KernelSet, Tensor};
use crate::model::{Layer, LayerOp, Model, PARAM_ALIGN};
use crate::ops::{self, conv2d};
use crate::shapes::StrideShape;
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

    /// The bias of a layer with weights: its tensor, or zeros without one.
    fn bias(&self, buf: &Tensor, bias: Option<usize>, len: u32) -> Tensor {
        match bias {
            Some(b) => self.param(buf, b),
            None => self.zeros.view(0, len as u64),
        }
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
