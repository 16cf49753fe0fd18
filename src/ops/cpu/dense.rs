//! `shaders/cpu/dense.wgsl`: forward, backward_input and backward_params as register-tiled
//! products over vec4s. Only for feature counts that are multiples of 4 ([`fits`]).
use crate::gpu::{Cost, Dispatch, Gpu, Tensor};
use crate::ops::dense::{GradOut, Params};
use crate::ops::{build, Launch, Shader};
use crate::shapes::DenseShape;
use crate::Result;

/// Invocations per workgroup: the shader's CPU_WG.
pub const CPU_WG: u64 = 8;
/// Forward and backward_input tiles: 16 rows x 16 columns.
const TILE_ROWS: u64 = 16;
const TILE_COLS: u64 = 16;
/// backward_params tile: 16 inputs x 16 outputs.
const TILE_W: u64 = 16;

/// Whether the CPU kernels take this shape: they load features four at a time.
pub fn fits(s: &DenseShape) -> bool {
    s.fin.is_multiple_of(4) && s.fout.is_multiple_of(4)
}

fn constants(s: &DenseShape, with_bias: bool) -> [(&'static str, f64); 3] {
    [
        ("FIN", s.fin as f64),
        ("FOUT", s.fout as f64),
        ("WITH_BIAS", with_bias as u32 as f64),
    ]
}

fn tiles(rows: u64, cols: u64, tile_rows: u64, tile_cols: u64) -> u64 {
    rows.div_ceil(tile_rows) * cols.div_ceil(tile_cols)
}

// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    p: &Params,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    let invocations = tiles(s.n as u64, s.fout as u64, TILE_ROWS, TILE_COLS);
    build(
        gpu,
        Launch {
            shader: Shader::CpuDense,
            entry: "forward",
            kernel: "dense.forward",
            label,
            params: bytemuck::bytes_of(p),
            bindings: &[(1, x), (2, w), (3, b), (4, y)],
            constants: &constants(s, false),
            workgroups: gpu.grid_of("dense.forward", invocations, CPU_WG)?,
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
    p: &Params,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    let (dy, act, relu) = g.bindings();
    let invocations = tiles(s.n as u64, s.fin as u64, TILE_ROWS, TILE_COLS);
    build(
        gpu,
        Launch {
            shader: Shader::CpuDense,
            entry: "backward_input",
            kernel: "dense.backward_input",
            label,
            params: bytemuck::bytes_of(p),
            bindings: &[(2, w), (5, dy), (6, act), (7, dx)],
            constants: &constants(s, false),
            workgroups: gpu.grid_of("dense.backward_input", invocations, CPU_WG)?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.weight_len() + s.input_len()),
                flops: 2 * s.output_len() * s.fin as u64,
            },
        },
    )
}

/// The kernel gradient and, with `db`, the bias gradient, in one pass over the batch.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    p: &Params,
    x: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Dispatch> {
    let (dy, act, relu) = g.bindings();
    let invocations = tiles(s.fin as u64, s.fout as u64, TILE_W, TILE_W);
    let kernel = match db {
        Some(_) => "dense.backward_params",
        None => "dense.backward_weight",
    };
    // Without a bias gradient the kernel never writes db: alias dw.
    let db_binding = db.unwrap_or(dw);
    build(
        gpu,
        Launch {
            shader: Shader::CpuDense,
            entry: "backward_params",
            kernel,
            label,
            params: bytemuck::bytes_of(p),
            bindings: &[(1, x), (5, dy), (6, act), (8, dw), (9, db_binding)],
            constants: &constants(s, db.is_some()),
            workgroups: gpu.grid_of(kernel, invocations, CPU_WG)?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.input_len() + s.weight_len()),
                flops: 2 * s.output_len() * s.fin as u64 + s.output_len() * db.is_some() as u64,
            },
        },
    )
}
