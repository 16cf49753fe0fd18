//! Launchers for `shaders/dense.wgsl`: `y = x . W + b`, W `[in, out]` as Keras stores it.
//! On the CPU kernel set some entry points come from `shaders/cpu/dense.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, cpu, expect_len, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, KernelSet, Tensor};
use crate::shapes::{AdamConfig, DenseShape};
use crate::{Error, Result};

pub use super::conv2d::GradOut;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub n: u32,
    pub fin: u32,
    pub fout: u32,
    pub relu: u32,
    /// [`rows`] only (the CPU set's kernels read the first four).
    pub layers: u32,
    pub total: u32,
    pub backward: u32,
    /// [`rows`] gathering its samples: the batch's first entry of the split's order.
    pub offset: u32,
    /// [`grads_adam`] only: where the step's region of loss partials starts, the loss log's
    /// slot it is finished into, and Adam's step (as [`super::adam::params`] gives them).
    pub loss_base: u32,
    pub loss_slot: u32,
    pub _p: [u32; 2],
    pub rate: super::adam::Rate,
}

/// Whether `s` runs the CPU set's kernels: on the CPU set, when its feature counts are
/// multiples of 4.
fn cpu_kernels(gpu: &Gpu, s: &DenseShape) -> bool {
    gpu.kernels == KernelSet::Cpu && cpu::dense::fits(s)
}

/// From this length of the summed dimension on, the products run split-K (one workgroup per
/// 4x4 block, 64 invocations sharing the sum): short sums stay register-tiled, one invocation
/// per block.
pub const SPLIT_FROM: u32 = 128;

/// Rows and columns of the output block one invocation (or one split-K workgroup) owns: the
/// shader's T.
pub const TILE: u32 = 4;

/// Invocations of a register-tiled product: one per TILE x TILE block of the output.
fn tiles(rows: u32, cols: u32) -> u64 {
    rows.div_ceil(TILE) as u64 * cols.div_ceil(TILE) as u64
}

fn params(s: &DenseShape, relu: bool) -> Params {
    Params {
        n: s.n,
        fin: s.fin,
        fout: s.fout,
        relu: relu as u32,
        ..bytemuck::Zeroable::zeroed()
    }
}

// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    relu: bool,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("dense", "x", x, s.input_len())?;
    expect_len("dense", "kernel", w, s.weight_len())?;
    expect_len("dense", "bias", b, s.fout as u64)?;
    expect_len("dense", "y", y, s.output_len())?;
    let p = params(s, relu);
    if cpu_kernels(gpu, s) {
        return cpu::dense::forward(gpu, label, s, &p, x, w, b, y);
    }
    let split = s.fin >= SPLIT_FROM;
    let vec4 = split && gpu.folds.vec4 && s.fout.is_multiple_of(4);
    build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry: match (split, vec4) {
                (true, true) => "forward_split4",
                (true, false) => "forward_split",
                (false, _) => "forward",
            },
            kernel: "dense.forward",
            label,
            params: bytemuck::bytes_of(&p),
            // The vec4 variant reads the kernel through its vec4 binding.
            bindings: &[(1, x), (if vec4 { 19 } else { 2 }, w), (3, b), (4, y)],
            constants: &[],
            workgroups: if split {
                gpu.groups("dense.forward", tiles(s.n, s.fout))?
            } else {
                gpu.grid("dense.forward", tiles(s.n, s.fout))?
            },
            cost: Cost {
                bytes: 4 * (s.input_len() + s.weight_len() + s.fout as u64 + s.output_len()),
                flops: 2 * s.output_len() * s.fin as u64,
            },
        },
    )
}

pub fn backward_input(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    g.check_len("dense", s.output_len())?;
    expect_len("dense", "kernel", w, s.weight_len())?;
    expect_len("dense", "dx", dx, s.input_len())?;
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    if cpu_kernels(gpu, s) {
        return cpu::dense::backward_input(gpu, label, s, g, &p, w, dx);
    }
    let split = s.fout >= SPLIT_FROM;
    build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry: if split {
                "backward_input_split"
            } else {
                "backward_input"
            },
            kernel: "dense.backward_input",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(2, w), (5, dy), (6, act), (7, dx)],
            constants: &[],
            workgroups: if split {
                gpu.groups("dense.backward_input", tiles(s.n, s.fin))?
            } else {
                gpu.grid("dense.backward_input", tiles(s.n, s.fin))?
            },
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.weight_len() + s.input_len()),
                flops: 2 * s.output_len() * s.fin as u64,
            },
        },
    )
}

pub fn backward_weight(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    x: &Tensor,
    dw: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    g.check_len("dense", s.output_len())?;
    expect_len("dense", "x", x, s.input_len())?;
    expect_len("dense", "dw", dw, s.weight_len())?;
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    if cpu_kernels(gpu, s) {
        return cpu::dense::backward_params(gpu, label, s, g, &p, x, dw, None);
    }
    build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry: "backward_weight",
            kernel: "dense.backward_weight",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (5, dy), (6, act), (8, dw)],
            constants: &[],
            workgroups: gpu.grid("dense.backward_weight", tiles(s.fin, s.fout))?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.input_len() + s.weight_len()),
                flops: 2 * s.output_len() * s.fin as u64,
            },
        },
    )
}

pub fn backward_bias(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    db: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    g.check_len("dense", s.output_len())?;
    expect_len("dense", "db", db, s.fout as u64)?;
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry: "backward_bias",
            kernel: "dense.backward_bias",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(5, dy), (6, act), (9, db)],
            constants: &[],
            workgroups: gpu.grid("dense.backward_bias", s.fout as u64)?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.fout as u64),
                flops: s.output_len(),
            },
        },
    )
}

/// Kernel and bias gradients: with a batch of at least [`SPLIT_FROM`], one split-K pass in
/// which the bias is one more input row (of ones); below it, the register-tiled
/// [`backward_weight`] and [`backward_bias`]. What training runs.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    x: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    s.check()?;
    g.check_len("dense", s.output_len())?;
    expect_len("dense", "x", x, s.input_len())?;
    expect_len("dense", "dw", dw, s.weight_len())?;
    expect_len("dense", "db", db, s.fout as u64)?;
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    if cpu_kernels(gpu, s) {
        let d = cpu::dense::backward_params(gpu, label, s, g, &p, x, dw, Some(db))?;
        return Ok(vec![d]);
    }
    if s.n < SPLIT_FROM {
        return Ok(vec![
            backward_weight(gpu, label, s, g, x, dw)?,
            backward_bias(gpu, label, s, g, db)?,
        ]);
    }
    // The vec4 variant's loads take whole rows of 4 features.
    let vec4 = gpu.folds.vec4 && s.fin.is_multiple_of(4) && s.fout.is_multiple_of(4);
    let (entry, bindings) = match vec4 {
        true => ("backward_params_split4", [16, 17, 18]),
        false => ("backward_params_split", [1, 5, 6]),
    };
    Ok(vec![build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry,
            kernel: "dense.backward_params",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[
                (bindings[0], x),
                (bindings[1], dy),
                (bindings[2], act),
                (8, dw),
                (9, db),
            ],
            constants: &[],
            workgroups: gpu.groups("dense.backward_params", tiles(s.fin + 1, s.fout))?,
            cost: Cost {
                bytes: 4
                    * (s.output_len() * (1 + relu as u64)
                        + s.input_len()
                        + s.weight_len()
                        + s.fout as u64),
                flops: 2 * s.output_len() * (s.fin as u64 + 1),
            },
        },
    )?])
}

/// The most layers [`rows`] takes: the length of the shader's uniform table.
pub const STACK_MAX: usize = 16;

/// A layer without a bias, in [`rows`]'s table.
pub const NO_BIAS: u32 = u32::MAX;

/// Floats of workgroup memory a [`rows`] workgroup sums split products in, besides its rows'
/// activations: 32 outputs' 64 lane sums, or 64 rows of staged weights 33 apart.
const LANE_FLOATS: u64 = 2112;

/// One layer of a stack for [`rows`]: its shape (`n` unused), ReLU, and where its tensors
/// start, in floats: its kernel and bias in the parameters, its output in the activations
/// of its parity (layer l's in `acts[l % 2]`), and that output's gradient likewise.
#[derive(Clone, Copy, Debug)]
pub struct StackLayer {
    pub s: DenseShape,
    pub relu: bool,
    pub kernel: u64,
    pub bias: Option<u64>,
    pub out: u64,
    pub dout: u64,
}

/// The shader's `StackLayer`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct StackRow {
    fin: u32,
    fout: u32,
    relu: u32,
    w: u32,
    b: u32,
    out: u32,
    dout: u32,
    _p: u32,
}

/// The shaders' table of a stack at a batch of n (`n` of each shape unused): each layer's
/// shape and ReLU, its kernel and bias in `weights` (the parameters, or their gradients), and
/// its output and that output's gradient in the buffers of its parity, every region checked.
fn stack_table(
    layers: &[StackLayer],
    n: u64,
    weights: &Tensor,
    acts: [&Tensor; 2],
    dacts: [&Tensor; 2],
) -> Result<[StackRow; STACK_MAX]> {
    if layers.len() > STACK_MAX {
        return Err(stack_error(format!(
            "a stack of {} layers is more than the {STACK_MAX} one dispatch takes",
            layers.len()
        )));
    }
    let mut table = [StackRow::default(); STACK_MAX];
    for (l, layer) in layers.iter().enumerate() {
        let (fin, fout) = (layer.s.fin as u64, layer.s.fout as u64);
        layer.s.check()?;
        if l > 0 && layers[l - 1].s.fout != layer.s.fin {
            return Err(stack_error(format!(
                "layer {l} takes {fin} features, the layer before gives {}",
                layers[l - 1].s.fout
            )));
        }
        table[l] = StackRow {
            fin: fin as u32,
            fout: fout as u32,
            relu: layer.relu as u32,
            w: check_region(weights, "a kernel", layer.kernel, fin * fout)?,
            b: match layer.bias {
                Some(b) => check_region(weights, "a bias", b, fout)?,
                None => NO_BIAS,
            },
            out: check_region(acts[l % 2], "an output", layer.out, n * fout)?,
            dout: check_region(dacts[l % 2], "a gradient", layer.dout, n * fout)?,
            _p: 0,
        };
    }
    Ok(table)
}

/// Samples per [`rows`] workgroup for a stack whose input and outputs are `widths` wide: 1
/// under `--folds single`, else 2 when their activations fit the adapter's workgroup memory
/// twice, 1 when once; None when not even once (then `rows` cannot run). Where a layer's
/// width is a multiple of the shader's 32 outputs per pass (every built-in model's), each
/// pass is one sample's, so every weight is loaded once per sample either way: two samples
/// halve the workgroups, one halves each workgroup's chain of passes and barriers. Narrower
/// layers share a pass, and its loads, between two samples. Each sum is the same, so the
/// bits are.
pub fn stack_rows(gpu: &Gpu, widths: u64) -> Option<u32> {
    let most = gpu.limits.max_compute_workgroup_storage_size as u64;
    let first = if gpu.folds.single { 1 } else { 2 };
    (1..=first)
        .rev()
        .find(|&r| 4 * (r as u64 * widths + LANE_FLOATS) <= most)
}

fn stack_error(detail: String) -> Error {
    Error::Shape {
        op: "dense",
        detail,
    }
}

/// Fails unless `len` elements at `at` lie inside `t` (named `what`).
fn check_region(t: &Tensor, what: &str, at: u64, len: u64) -> Result<u32> {
    if at + len > t.len || at + len > u32::MAX as u64 {
        return Err(stack_error(format!(
            "{what} at {at} ({len} elements) runs past the {} there are",
            t.len
        )));
    }
    Ok(at as u32)
}

/// Where [`rows`] takes its samples from.
#[derive(Clone, Copy)]
pub enum StackInput<'a> {
    /// The batch `x` (`n` x the first layer's inputs), gathered before it, and the logits'
    /// `target`.
    Batch { x: &'a Tensor, target: &'a Tensor },
    /// Straight from a split held as u8 pixels four to a word (`--folds gather`): sample r is
    /// image `order[offset + r]` / 255, as `batch::gather` makes it, the offset in the
    /// uniform ([`set_rows_offset`]). `batch` receives the samples, for [`grads`] and the
    /// loss. The targets are the inputs: an autoencoder without noise.
    Gather {
        images: &'a Tensor,
        order: &'a Tensor,
        batch: &'a Tensor,
    },
}

/// A stack of dense layers for a batch of n in one dispatch (`--folds rows`), each workgroup
/// taking [`stack_rows`] samples: every layer's forward pass into `acts`, and with
/// `backward`, the logits' gradient (as [`super::bce::sigmoid_backward`], against the
/// input's targets) and every layer's input gradient down to the first layer's output into
/// `dacts`. The same sums, in the same order, as [`forward`], [`backward_input`] and
/// `sigmoid_backward`; gathering its own samples, the same bits as `batch::gather` before it.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn rows(
    gpu: &Gpu,
    label: &str,
    n: u32,
    layers: &[StackLayer],
    backward: bool,
    input: StackInput<'_>,
    params: &Tensor,
    acts: [&Tensor; 2],
    dacts: [&Tensor; 2],
) -> Result<Dispatch> {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return Err(stack_error("a stack needs at least one layer".into()));
    };
    let (n64, fin0, fout_last) = (n as u64, first.s.fin as u64, last.s.fout as u64);
    check_stack_input(&input, n64, fin0, fout_last)?;
    let table = stack_table(layers, n64, params, acts, dacts)?;
    let widths = fin0 + layers.iter().map(|l| l.s.fout as u64).sum::<u64>();
    let flops: u64 = (layers.iter().enumerate())
        .map(|(l, e)| 2 * n64 * e.s.weight_len() * (1 + (backward && l > 0) as u64))
        .sum();
    if last.relu {
        return Err(stack_error(
            "the last layer of a stack gives logits: it has no ReLU".into(),
        ));
    }
    let Some(rows) = stack_rows(gpu, widths) else {
        return Err(Error::Limit {
            what: format!("{label}: a stack's activations for one sample"),
            limit: "max_compute_workgroup_storage_size",
            needed: 4 * (widths + LANE_FLOATS),
            allowed: gpu.limits.max_compute_workgroup_storage_size as u64,
            adapter: gpu.name(),
            fix: "use --folds without rows".into(),
        });
    };
    let p = Params {
        n,
        layers: layers.len() as u32,
        total: (n64 * fout_last) as u32,
        backward: backward as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    let table = Tensor::whole(gpu.uniform("dense stack", &table));
    let weights: u64 = layers.iter().map(|l| l.s.weight_len()).sum();
    let mut bindings = vec![
        (2, params),
        (10, &table),
        (11, acts[0]),
        (12, dacts[0]),
        (14, acts[1]),
        (15, dacts[1]),
    ];
    let (entry, kernel, gathered) = match input {
        StackInput::Batch { x, target } => {
            bindings.extend([(1, x), (13, target)]);
            ("rows", "dense.rows", false)
        }
        StackInput::Gather {
            images,
            order,
            batch,
        } => {
            bindings.extend([(26, images), (27, order), (28, batch)]);
            ("rows_gather", "dense.rows_gather", true)
        }
    };
    // Inputs, every weight once per workgroup pass (cached), outputs and gradients once;
    // gathering, u8 pixels and an order entry per sample read in place of the f32 inputs,
    // which it writes.
    let bytes = 4 * (n64 * (widths + (backward as u64) * (widths - fin0)) + weights)
        + gathered as u64 * (n64 * fin0 + 4 * n64);
    build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry,
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &[
                ("ROWS", rows as f64),
                ("ROW_FLOATS", (rows as u64 * widths) as f64),
            ],
            workgroups: gpu.groups(kernel, n64.div_ceil(rows as u64))?,
            cost: Cost { bytes, flops },
        },
    )
}

/// Checks what [`rows`] reads its samples from for a batch of n, `fin` wide in, `fout` out.
fn check_stack_input(input: &StackInput<'_>, n: u64, fin: u64, fout: u64) -> Result<()> {
    match *input {
        StackInput::Batch { x, target } => {
            expect_len("dense", "x", x, n * fin)?;
            expect_len("dense", "target", target, n * fout)
        }
        StackInput::Gather {
            images,
            order,
            batch,
        } => {
            if fin != fout {
                return Err(stack_error(format!(
                    "a stack that gathers its samples is an autoencoder: \
                     {fin} inputs, {fout} outputs"
                )));
            }
            super::batch::check_gathering("dense", images, order, n, fin, batch)
        }
    }
}

/// Sets the batch's first entry of the order that a gathering [`rows`] dispatch reads, in
/// uniform slot `slot` (sent by [`Dispatch::flush`]).
pub fn set_rows_offset(rows: &Dispatch, slot: usize, offset: u32) {
    // Its uniform is a dense::Params only on this entry point.
    debug_assert_eq!(rows.source.entry, "rows_gather");
    let p = Params {
        offset,
        ..rows.built_params::<Params>()
    };
    rows.stage(slot, &p);
}

/// Whether [`grads`] takes a stack of these layers at a batch of n: every feature count a
/// multiple of 4 (its loads are vec4), a batch of at least [`SPLIT_FROM`] (the per-layer
/// weight gradient's split-K path, whose sums it reproduces), and a table that holds them.
pub fn grads_fit(layers: &[StackLayer], n: u32) -> bool {
    let widths_fit = layers
        .iter()
        .all(|l| l.s.fin.is_multiple_of(4) && l.s.fout.is_multiple_of(4));
    widths_fit && n >= SPLIT_FROM && !layers.is_empty() && layers.len() <= STACK_MAX
}

/// Every layer's kernel and bias gradients of a stack that [`rows`] ran for a batch of n, and
/// the loss's partial sums, as one dispatch (`--folds grads`): the same sums in the same order
/// as [`backward_params`] per layer and [`super::bce::loss_partial`]. `x` is the first layer's
/// input; `acts` and `dacts` the outputs and gradients [`rows`] wrote; the gradients land in
/// `grads` at the kernels' and biases' offsets (a layer without a bias writes none).
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn grads(
    gpu: &Gpu,
    label: &str,
    n: u32,
    layers: &[StackLayer],
    x: &Tensor,
    acts: [&Tensor; 2],
    dacts: [&Tensor; 2],
    grads: &Tensor,
    target: &Tensor,
    partials: &Tensor,
) -> Result<Dispatch> {
    let io = GradsIo {
        x,
        acts,
        dacts,
        grads,
        target,
    };
    let total = io.check(layers, n)?;
    expect_len(
        "dense",
        "loss partials",
        partials,
        super::bce::partials_len(total),
    )?;
    let launch = io.launch(gpu, layers, (n, total), &[(25, partials)], label)?;
    launch.build(gpu, "grads_all", "dense.grads")
}

/// The parameters and Adam's moments [`grads_adam`] updates, and the buffer of the steps'
/// loss regions ([`super::bce::step_region_len`] floats apart) it writes one of.
pub struct AdamIo<'a> {
    pub params: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
    pub regions: &'a Tensor,
}

/// Storage buffers [`grads_adam`] binds: more than WebGPU's default 8 per stage.
pub const GRADS_ADAM_STORAGE_BUFFERS: u32 = 11;

/// Whether the device can run [`grads_adam`]: its storage buffers per stage.
pub fn grads_adam_fits(gpu: &Gpu) -> bool {
    gpu.limits.max_storage_buffers_per_shader_stage >= GRADS_ADAM_STORAGE_BUFFERS
}

/// [`grads`] that also takes Adam's step for every parameter it has the gradient of (the
/// update of `adam.step`, so the same bits; padding between the parameters is left as it
/// is, where `adam.step` leaves it as it was too: its gradient is zero), and writes its loss
/// partials into a region of `adam.regions` after a header that
/// [`super::bce::loss_finish_steps`] finishes them by (`--folds adam`). Built for region 0 of
/// step 1: [`set_grads_adam_step`] sets both per step.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn grads_adam(
    gpu: &Gpu,
    label: &str,
    n: u32,
    layers: &[StackLayer],
    x: &Tensor,
    acts: [&Tensor; 2],
    dacts: [&Tensor; 2],
    grads: &Tensor,
    target: &Tensor,
    adam: &AdamIo<'_>,
    cfg: &AdamConfig,
) -> Result<Dispatch> {
    if !grads_adam_fits(gpu) {
        return Err(stack_error(format!(
            "Adam inside the weight gradients binds {GRADS_ADAM_STORAGE_BUFFERS} storage \
             buffers, this device {} per stage: leave out the adam fold",
            gpu.limits.max_storage_buffers_per_shader_stage
        )));
    }
    let io = GradsIo {
        x,
        acts,
        dacts,
        grads,
        target,
    };
    let total = io.check(layers, n)?;
    for (name, t) in [("params", adam.params), ("m", adam.m), ("v", adam.v)] {
        expect_len("dense", name, t, grads.len)?;
    }
    let region = super::bce::step_region_len(total);
    if adam.regions.len < region {
        return Err(stack_error(format!(
            "a step's loss region takes {region} floats, the buffer holds {}",
            adam.regions.len
        )));
    }
    let bindings = [
        (25, adam.regions),
        (29, adam.params),
        (30, adam.m),
        (31, adam.v),
    ];
    let mut launch = io.launch(gpu, layers, (n, total), &bindings, label)?;
    launch.params = grads_adam_params(launch.params, 0, 0, cfg, 1);
    // Adam's reads and writes of the weights and both moments (the gradient is in hand).
    launch.cost.bytes += 4 * 6 * grads.len;
    launch.cost.flops += 12 * grads.len;
    launch.build(gpu, "grads_adam", "dense.grads_adam")
}

fn grads_adam_params(
    p: Params,
    loss_base: u64,
    loss_slot: u32,
    cfg: &AdamConfig,
    t: u64,
) -> Params {
    Params {
        loss_base: loss_base as u32,
        loss_slot,
        rate: super::adam::rate(cfg, t),
        ..p
    }
}

/// Stages a [`grads_adam`] dispatch's uniform slot `slot` for Adam's step `t` (1-based), its
/// loss partials in the region starting at float `loss_base` of the regions' buffer, to be
/// finished into `loss[loss_slot]`.
pub fn set_grads_adam_step(
    d: &Dispatch,
    slot: usize,
    loss_base: u64,
    loss_slot: u32,
    cfg: &AdamConfig,
    t: u64,
) {
    // Its uniform is a dense::Params only on this entry point.
    debug_assert_eq!(d.source.entry, "grads_adam");
    let p = grads_adam_params(d.built_params::<Params>(), loss_base, loss_slot, cfg, t);
    d.stage(slot, &p);
}

/// What [`grads`] and [`grads_adam`] both read and write.
struct GradsIo<'a> {
    x: &'a Tensor,
    acts: [&'a Tensor; 2],
    dacts: [&'a Tensor; 2],
    grads: &'a Tensor,
    target: &'a Tensor,
}

/// A launch of either entry point, before its entry and storage bindings are final.
struct GradsLaunch<'a> {
    params: Params,
    bindings: Vec<(u32, &'a Tensor)>,
    table: Tensor,
    groups: [u32; 3],
    cost: Cost,
    label: &'a str,
}

impl GradsLaunch<'_> {
    fn build(&self, gpu: &Gpu, entry: &'static str, kernel: &'static str) -> Result<Dispatch> {
        let mut bindings = vec![(10, &self.table)];
        bindings.extend_from_slice(&self.bindings);
        build(
            gpu,
            Launch {
                shader: Shader::Dense,
                entry,
                kernel,
                label: self.label,
                params: bytemuck::bytes_of(&self.params),
                bindings: &bindings,
                constants: &[],
                workgroups: self.groups,
                cost: self.cost,
            },
        )
    }
}

impl<'a> GradsIo<'a> {
    /// Fails unless the stack and tensors fit a batch of n; the loss's elements.
    fn check(&self, layers: &[StackLayer], n: u32) -> Result<u64> {
        if !grads_fit(layers, n) {
            return Err(stack_error(format!(
                "one weight-gradient dispatch takes up to {STACK_MAX} layers whose feature \
                 counts are multiples of 4, at a batch of {SPLIT_FROM} or more (got {} layers, \
                 batch {n})",
                layers.len()
            )));
        }
        let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
            return Err(stack_error("a stack needs at least one layer".into()));
        };
        let n64 = n as u64;
        let total = n64 * last.s.fout as u64;
        expect_len("dense", "x", self.x, n64 * first.s.fin as u64)?;
        expect_len("dense", "target", self.target, total)?;
        Ok(total)
    }

    /// The launch with these tensors and `more` bound, for a stack [`Self::check`] passed
    /// (`total`: the loss's elements it returned).
    fn launch(
        &self,
        gpu: &Gpu,
        layers: &[StackLayer],
        (n, total): (u32, u64),
        more: &[(u32, &'a Tensor)],
        label: &'a str,
    ) -> Result<GradsLaunch<'a>> {
        let n64 = n as u64;
        let table = stack_table(layers, n64, self.grads, self.acts, self.dacts)?;
        let blocks: u64 = layers.iter().map(|l| tiles(l.s.fin + 1, l.s.fout)).sum();
        let flops: u64 = layers
            .iter()
            .map(|l| 2 * n64 * (l.s.fin as u64 + 1) * l.s.fout as u64)
            .sum();
        let weights: u64 = layers.iter().map(|l| l.s.weight_len()).sum();
        let groups = blocks + super::bce::partials_len(total);
        let mut bindings = vec![
            (13, self.target),
            (16, self.x),
            (20, self.acts[0]),
            (21, self.acts[1]),
            (22, self.dacts[0]),
            (23, self.dacts[1]),
            (24, self.grads),
        ];
        bindings.extend_from_slice(more);
        Ok(GradsLaunch {
            params: Params {
                n,
                layers: layers.len() as u32,
                total: total as u32,
                ..bytemuck::Zeroable::zeroed()
            },
            bindings,
            table: Tensor::whole(gpu.uniform("dense stack", &table)),
            groups: gpu.groups("dense.grads", groups)?,
            cost: Cost {
                // Each layer's input, gradient and ReLU output once, the gradients written,
                // the logits and targets once.
                bytes: 4
                    * (layers
                        .iter()
                        .map(|l| n64 * (l.s.fin as u64 + 2 * l.s.fout as u64))
                        .sum::<u64>()
                        + weights
                        + 2 * total),
                flops: flops + 5 * total,
            },
            label,
        })
    }
}
