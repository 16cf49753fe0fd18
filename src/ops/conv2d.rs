//! Launchers for `shaders/conv2d.wgsl`: k x k (k = 1, 3, 5 or 7) stride-1 convolution, NHWC,
//! Keras kernel layout, any channel counts (an invocation keeps [`GROUP`] channels in
//! registers; a side with more runs one invocation per group of them).
//!
//! On the CPU kernel set (see `gpu::KernelSet`) the shapes `shaders/cpu/conv2d.wgsl` is
//! written for (`cpu::conv2d::takes`: 3x3, at most 32 channels a side) run its kernels;
//! every other shape runs this file's kernels on either set. The arguments and results are
//! the same.
use super::{build, cpu, expect_len, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, KernelSet, Tensor};
use crate::shapes::Conv2dShape;
use crate::{Error, Result};

/// Channels one invocation keeps in registers (four vec4): the shader's GROUP. A side with
/// more channels (output channels for the forward and the weight gradient, input channels
/// for the input gradient) runs one invocation per group of GROUP, the group in the
/// dispatch's z.
pub const GROUP: u32 = 16;
/// Output pixels per partial sum of the weight gradient for small kernels (the shader's CHUNK
/// override; `chunk` lengthens it for large ones).
pub const CHUNK: u64 = 16;
/// The most partial sums per output pixel the weight gradient leaves in its scratch: a chunk
/// holds one per weight and bias, so kernels with more than CHUNK times this many sum longer
/// chunks. Every layer of the seed models has at most 1168 (the 16x16x8 -> 16 'valid' one),
/// so their chunks stay CHUNK long.
const PARTIALS_PER_PIXEL: u64 = 128;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub n: u32,
    pub relu: u32,
    pub chunks: u32,
    pub _p: u32,
}

fn params(s: &Conv2dShape, relu: bool) -> Params {
    Params {
        n: s.n,
        relu: relu as u32,
        chunks: chunks(s) as u32,
        _p: 0,
    }
}

/// Whether `s` runs the CPU set's kernels under kernel set `set`: on the CPU set, for the
/// shapes they are written for. Everything else runs the GPU set's.
fn cpu_kernels(set: KernelSet, s: &Conv2dShape) -> bool {
    set == KernelSet::Cpu && cpu::conv2d::takes(s)
}

/// The pipeline's shape constants: everything but the batch size.
fn constants(s: &Conv2dShape) -> [(&'static str, f64); 8] {
    constants_with(s, false)
}

fn constants_with(s: &Conv2dShape, with_bias: bool) -> [(&'static str, f64); 8] {
    [
        ("WITH_BIAS", with_bias as u32 as f64),
        ("KS", s.k as f64),
        ("CI", s.ci as f64),
        ("CO", s.co as f64),
        ("H", s.h as f64),
        ("W", s.w as f64),
        ("PAD", s.pad() as f64),
        ("CHUNK", chunk(s) as f64),
    ]
}

/// Output pixels one weight-gradient partial sums: [`CHUNK`], longer (a power of two) when
/// the kernel and bias hold more than CHUNK * PARTIALS_PER_PIXEL values, so that the partials
/// stay at most PARTIALS_PER_PIXEL per output pixel (a 3x3 32 -> 32 layer at batch 256 on
/// 28x28 would otherwise need 464 MB of them), but never longer than the batch's output
/// pixels rounded up to a power of two. It grows with the batch size and the partials'
/// length never shrinks as it does, so a scratch sized for the largest batch fits every
/// smaller one.
fn chunk(s: &Conv2dShape) -> u64 {
    let per_chunk = s.weight_len() + s.co as u64;
    let for_weights = per_chunk.div_ceil(PARTIALS_PER_PIXEL).next_power_of_two();
    let pixels = (s.output_len() / s.co as u64).next_power_of_two();
    for_weights.min(pixels).max(CHUNK)
}

fn chunks(s: &Conv2dShape) -> u64 {
    (s.output_len() / s.co as u64).div_ceil(chunk(s))
}

/// Length of the scratch buffer [`backward_weight`] (and [`backward_params`]) needs for its
/// partial sums under kernel set `set`.
pub fn partials_len(set: KernelSet, s: &Conv2dShape) -> u64 {
    match cpu_kernels(set, s) {
        true => cpu::conv2d::partials_len(s),
        false => chunks(s) * (s.weight_len() + s.co as u64),
    }
}

/// Up to this many chunks the weight gradient's reduce adds each weight's chunks in one
/// invocation; with more, a workgroup per weight shares them (strided, then a tree). The seed
/// models at batch 256 have at least 96 chunks per layer (the 4x4 layer, last batch of 96).
pub const SERIAL_REDUCE: u64 = 64;

/// Workgroup size of the register-tiled kernels: the shader's TILED_WG.
pub const TILED: u64 = 64;

/// Groups of [`GROUP`] channels a side of `channels` splits into.
fn groups_of(channels: u32) -> u32 {
    channels.div_ceil(GROUP)
}

/// The grid of one channel group (`grid`, folded into x and y) repeated in z for each of
/// `groups`.
fn per_group(gpu: &Gpu, what: &str, grid: [u32; 3], groups: u32) -> Result<[u32; 3]> {
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    if groups > max {
        return Err(Error::Limit {
            what: format!("{what} (a z-layer of workgroups per {GROUP} channels)"),
            limit: "max_compute_workgroups_per_dimension",
            needed: groups as u64,
            allowed: max as u64,
            adapter: gpu.name(),
            fix: format!("use at most {} channels", max as u64 * GROUP as u64),
        });
    }
    Ok([grid[0], grid[1], groups])
}

/// `y = conv(x, w) + b`, then ReLU when `relu`.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    relu: bool,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    // The only shapes refused: a kernel side other than 1, 3, 5, 7, and empty or too small
    // ones (Conv2dShape::check); any channel counts run.
    s.check()?;
    expect_len("conv2d", "x", x, s.input_len())?;
    expect_len("conv2d", "kernel", w, s.weight_len())?;
    expect_len("conv2d", "bias", b, s.co as u64)?;
    expect_len("conv2d", "y", y, s.output_len())?;
    if cpu_kernels(gpu.kernels, s) {
        return cpu::conv2d::forward(gpu, label, s, relu, x, w, b, y);
    }
    let p = params(s, relu);
    let pixels = s.output_len() / s.co as u64;
    build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "forward",
            kernel: "conv2d.forward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (2, w), (3, b), (4, y)],
            constants: &constants(s),
            workgroups: per_group(
                gpu,
                "conv2d.forward",
                gpu.grid_of("conv2d.forward", pixels, TILED)?,
                groups_of(s.co),
            )?,
            cost: Cost {
                bytes: 4 * (s.input_len() + s.weight_len() + s.co as u64 + s.output_len()),
                flops: 2 * s.macs(),
            },
        },
    )
}

/// The upstream gradient, masked by ReLU' from the layer's saved output when it had ReLU.
pub struct GradOut<'a> {
    pub dy: &'a Tensor,
    pub relu_output: Option<&'a Tensor>,
}

impl<'a> GradOut<'a> {
    /// (dy, the tensor the kernel reads the ReLU mask from, whether to mask): without ReLU the
    /// mask binding aliases dy and is never read.
    pub(crate) fn bindings(&self) -> (&'a Tensor, &'a Tensor, bool) {
        match self.relu_output {
            Some(a) => (self.dy, a, true),
            None => (self.dy, self.dy, false),
        }
    }
    /// Fails unless dy (and the saved output, when masking) hold `output_len` elements.
    pub(crate) fn check_len(&self, op: &'static str, output_len: u64) -> Result<()> {
        expect_len(op, "dy", self.dy, output_len)?;
        if let Some(a) = self.relu_output {
            expect_len(op, "relu output", a, output_len)?;
        }
        Ok(())
    }

    fn check(&self, s: &Conv2dShape) -> Result<()> {
        self.check_len("conv2d", s.output_len())
    }
}

/// `dx`: the gradient w.r.t. the layer's input (one dispatch, or on the CPU set one per group
/// of output channels).
pub fn backward_input(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    s.check()?;
    g.check(s)?;
    expect_len("conv2d", "kernel", w, s.weight_len())?;
    expect_len("conv2d", "dx", dx, s.input_len())?;
    if cpu_kernels(gpu.kernels, s) {
        return cpu::conv2d::backward_input(gpu, label, s, g, w, dx);
    }
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    let pixels = s.input_len() / s.ci as u64;
    Ok(vec![build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_input",
            kernel: "conv2d.backward_input",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(2, w), (5, dy), (6, act), (7, dx)],
            constants: &constants(s),
            workgroups: per_group(
                gpu,
                "conv2d.backward_input",
                gpu.grid_of("conv2d.backward_input", pixels, TILED)?,
                groups_of(s.ci),
            )?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.weight_len() + s.input_len()),
                flops: 2 * s.macs(),
            },
        },
    )?])
}

/// `dw`: the gradient w.r.t. the kernel, summed over the batch in two deterministic stages:
/// partial sums over chunks of output pixels into `partials` (`partials_len(s)` long), then
/// each weight sums its chunks in order.
pub fn backward_weight(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
) -> Result<Vec<Dispatch>> {
    split_k(gpu, label, s, g, x, partials, dw, None)
}

/// [`backward_weight`] and [`backward_bias`] in one pass over dy: the bias is one more row of
/// the split sum. What training runs.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    expect_len("conv2d", "db", db, s.co as u64)?;
    split_k(gpu, label, s, g, x, partials, dw, Some(db))
}

/// The profile's names of the weight gradient's two passes, with or without the bias row
/// (both kernel sets).
pub(crate) fn weight_gradient_kernels(with_bias: bool) -> (&'static str, &'static str) {
    match with_bias {
        true => (
            "conv2d.backward_params_partial",
            "conv2d.backward_params_reduce",
        ),
        false => (
            "conv2d.backward_weight_partial",
            "conv2d.backward_weight_reduce",
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn split_k(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    s.check()?;
    g.check(s)?;
    expect_len("conv2d", "x", x, s.input_len())?;
    expect_len("conv2d", "dw", dw, s.weight_len())?;
    expect_len(
        "conv2d",
        "weight-gradient partials",
        partials,
        partials_len(gpu.kernels, s),
    )?;
    if cpu_kernels(gpu.kernels, s) {
        return cpu::conv2d::backward_params(gpu, label, s, g, x, partials, dw, db);
    }
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    let rows = s.taps() * s.ci as u64 + db.is_some() as u64;
    let used = chunks(s) * rows * s.co as u64;
    let partials = partials.view(0, used);
    let constants = constants_with(s, db.is_some());
    let (kernel, reduce_kernel) = weight_gradient_kernels(db.is_some());
    let partial = build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_weight_partial",
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (5, dy), (6, act), (8, &partials)],
            constants: &constants,
            workgroups: per_group(
                gpu,
                kernel,
                gpu.grid_of(kernel, chunks(s) * rows, TILED)?,
                groups_of(s.co),
            )?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.input_len() + used),
                flops: 2 * s.macs() + 2 * s.output_len() * db.is_some() as u64,
            },
        },
    )?;
    // The reduce binds db only when it writes it: alias dw otherwise, as the kernel never
    // reaches that branch.
    let db = db.unwrap_or(dw);
    let serial = chunks(s) <= SERIAL_REDUCE;
    let reduce = build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: match serial {
                true => "backward_weight_reduce_serial",
                false => "backward_weight_reduce",
            },
            kernel: reduce_kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(9, &partials), (10, dw), (11, db)],
            constants: &constants,
            workgroups: match serial {
                true => gpu.grid(reduce_kernel, rows * s.co as u64)?,
                false => gpu.groups(reduce_kernel, rows * s.co as u64)?,
            },
            cost: Cost {
                bytes: 4 * (used + rows * s.co as u64),
                flops: used,
            },
        },
    )?;
    Ok(vec![partial, reduce])
}

/// `db`: the gradient w.r.t. the bias, summed over the batch and pixels.
pub fn backward_bias(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    db: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    g.check(s)?;
    expect_len("conv2d", "db", db, s.co as u64)?;
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_bias",
            kernel: "conv2d.backward_bias",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(5, dy), (6, act), (11, db)],
            constants: &constants(s),
            workgroups: gpu.groups("conv2d.backward_bias", s.co as u64)?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.co as u64),
                flops: s.output_len(),
            },
        },
    )
}
