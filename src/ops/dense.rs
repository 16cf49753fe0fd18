//! Launchers for `shaders/dense.wgsl`: `y = x . W + b`, W `[in, out]` as Keras stores it.
//! On the CPU kernel set some entry points come from `shaders/cpu/dense.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, cpu, expect_len, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, KernelSet, Tensor};
use crate::shapes::DenseShape;
use crate::Result;

pub use super::conv2d::GradOut;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub n: u32,
    pub fin: u32,
    pub fout: u32,
    pub relu: u32,
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
    build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry: if split { "forward_split" } else { "forward" },
            kernel: "dense.forward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (2, w), (3, b), (4, y)],
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
    Ok(vec![build(
        gpu,
        Launch {
            shader: Shader::Dense,
            entry: "backward_params_split",
            kernel: "dense.backward_params",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (5, dy), (6, act), (8, dw), (9, db)],
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
