//! Launchers for `shaders/pool.wgsl`: 2x2, stride-2 max-pooling with Keras' 'same' padding
//! (out = ceil(in/2)) or 'valid' (out = floor(in/2): an odd last row/column is dropped and
//! gets dx = 0), as [`PoolShape::padding`] says. The kernels see the padding only through the
//! output's height and width in their params.
//! On the CPU kernel set some entry points come from `shaders/cpu/pool.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same, for both paddings.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::shapes::PoolShape;
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    ho: u32,
    wo: u32,
    total: u32,
    _p: u32,
}

/// The shader and its params: on the CPU set with whole vec4s of channels,
/// `shaders/cpu/pool.wgsl`, whose invocations each take an output vec4 (`total` counts them).
fn kernel_for(gpu: &Gpu, s: &PoolShape) -> (Shader, Params) {
    let mut p = params(s);
    if vec4_kernel(gpu, s.c as u64) {
        p.total /= 4;
        (Shader::CpuPool, p)
    } else {
        (Shader::Pool, p)
    }
}

fn params(s: &PoolShape) -> Params {
    let (ho, wo) = s.out_hw();
    Params {
        n: s.n,
        h: s.h,
        w: s.w,
        c: s.c,
        ho,
        wo,
        total: s.output_len() as u32,
        _p: 0,
    }
}

/// Input elements that lie in some window: all of them in 'same'; in 'valid', all but an odd
/// last row/column.
fn covered_len(s: &PoolShape) -> u64 {
    let (ho, wo) = s.out_hw();
    let h = (s.h as u64).min(2 * ho as u64);
    let w = (s.w as u64).min(2 * wo as u64);
    s.n as u64 * h * w * s.c as u64
}

/// `y` = the window maxima; `winner` (u32) = each maximum's place in its window, 0..3.
/// Fails on a shape [`PoolShape::check`] refuses (in 'valid', an input 1 row or column wide).
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &PoolShape,
    x: &Tensor,
    y: &Tensor,
    winner: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("pool", "x", x, s.input_len())?;
    expect_len("pool", "y", y, s.output_len())?;
    expect_len("pool", "winner", winner, s.output_len())?;
    let (shader, p) = kernel_for(gpu, s);
    build(
        gpu,
        Launch {
            shader,
            entry: "forward",
            kernel: "pool.forward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (2, y), (3, winner)],
            constants: &[],
            // One invocation per output element, or per output vec4.
            workgroups: gpu.grid("pool.forward", p.total as u64)?,
            cost: Cost {
                bytes: 4 * (covered_len(s) + 2 * s.output_len()),
                flops: 3 * s.output_len(),
            },
        },
    )
}

/// `dx`: each window's gradient goes to its winner; the others get 0, and so does (in 'valid')
/// an odd last row/column that no window covers. Every element of `dx` is written.
pub fn backward(
    gpu: &Gpu,
    label: &str,
    s: &PoolShape,
    winner: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    backward_with(gpu, label, s, winner, dy, None, dx)
}

/// Whether [`backward_masked`] runs on this device and shape: the CPU set's vec4 kernel, for
/// either padding.
pub fn fuses_relu_mask(gpu: &Gpu, s: &PoolShape) -> bool {
    vec4_kernel(gpu, s.c as u64)
}

/// [`backward`] with the ReLU mask of the layer below applied to `dx`: the mask is
/// `pooled > 0` (the pooled output is the winner's input). Only where
/// [`fuses_relu_mask`] holds. In 'valid' an odd last row/column gets 0, as in [`backward`].
pub fn backward_masked(
    gpu: &Gpu,
    label: &str,
    s: &PoolShape,
    winner: &Tensor,
    dy: &Tensor,
    pooled: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    if !fuses_relu_mask(gpu, s) {
        return Err(Error::Shape {
            op: "pool",
            detail: format!(
                "no fused ReLU mask for {s:?} on the {} kernel set",
                gpu.kernels
            ),
        });
    }
    expect_len("pool", "pooled output", pooled, s.output_len())?;
    backward_with(gpu, label, s, winner, dy, Some(pooled), dx)
}

fn backward_with(
    gpu: &Gpu,
    label: &str,
    s: &PoolShape,
    winner: &Tensor,
    dy: &Tensor,
    pooled: Option<&Tensor>,
    dx: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("pool", "winner", winner, s.output_len())?;
    expect_len("pool", "dy", dy, s.output_len())?;
    expect_len("pool", "dx", dx, s.input_len())?;
    let (shader, p) = kernel_for(gpu, s);
    // The GPU kernel gathers: one invocation per input element, which writes its dx (0 when it
    // lies in no window). The CPU kernel scatters from each output vec4 to its window, and
    // the last window row/column also zero the 'valid' padding's dropped row/column.
    let invocations = match shader {
        Shader::Pool => s.input_len(),
        _ => p.total as u64,
    };
    let mut bindings = vec![(4, dy), (5, winner), (6, dx)];
    bindings.extend(pooled.map(|t| (7, t)));
    build(
        gpu,
        Launch {
            shader,
            entry: if pooled.is_some() {
                "backward_masked"
            } else {
                "backward"
            },
            kernel: "pool.backward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &[],
            workgroups: gpu.grid("pool.backward", invocations)?,
            cost: Cost {
                bytes: 4 * (s.input_len() + 2 * s.output_len()),
                flops: 0,
            },
        },
    )
}
