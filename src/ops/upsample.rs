//! Launchers for `shaders/upsample.wgsl`: nearest-neighbour upsampling by 2.
//! On the CPU kernel set some entry points come from `shaders/cpu/upsample.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::shapes::UpsampleShape;
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    total: u32,
    _p: [u32; 3],
}

fn params(s: &UpsampleShape) -> Params {
    Params {
        n: s.n,
        h: s.h,
        w: s.w,
        c: s.c,
        total: s.output_len() as u32,
        _p: [0; 3],
    }
}

/// The shader, its params and its invocations per direction (forward, backward): on the CPU
/// set with whole vec4s of channels, `shaders/cpu/upsample.wgsl`, one invocation per input
/// vec4 both ways (`total` counts them).
fn kernel_for(gpu: &Gpu, s: &UpsampleShape) -> (Shader, Params, [u64; 2]) {
    let mut p = params(s);
    if vec4_kernel(gpu, s.c as u64) {
        p.total = (s.input_len() / 4) as u32;
        (Shader::CpuUpsample, p, [s.input_len() / 4; 2])
    } else {
        (Shader::Upsample, p, [s.output_len(), s.input_len()])
    }
}

pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &UpsampleShape,
    x: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("upsample", "x", x, s.input_len())?;
    expect_len("upsample", "y", y, s.output_len())?;
    let (shader, p, [invocations, _]) = kernel_for(gpu, s);
    build(
        gpu,
        Launch {
            shader,
            entry: "forward",
            kernel: "upsample.forward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (2, y)],
            constants: &[],
            workgroups: gpu.grid("upsample.forward", invocations)?,
            cost: Cost {
                bytes: 4 * (s.input_len() + s.output_len()),
                flops: 0,
            },
        },
    )
}

pub fn backward(
    gpu: &Gpu,
    label: &str,
    s: &UpsampleShape,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    backward_with(gpu, label, s, dy, None, dx)
}

/// Whether [`backward_masked`] runs on this device and shape: the CPU set's vec4 kernel.
pub fn fuses_relu_mask(gpu: &Gpu, s: &UpsampleShape) -> bool {
    vec4_kernel(gpu, s.c as u64)
}

/// [`backward`] with the ReLU mask of the layer below applied to `dx`: `x > 0`, `x` being
/// this layer's input (that layer's ReLU output). Only where [`fuses_relu_mask`] holds.
pub fn backward_masked(
    gpu: &Gpu,
    label: &str,
    s: &UpsampleShape,
    dy: &Tensor,
    x: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    if !fuses_relu_mask(gpu, s) {
        return Err(Error::Shape {
            op: "upsample",
            detail: format!(
                "no fused ReLU mask for {s:?} on the {} kernel set",
                gpu.kernels
            ),
        });
    }
    expect_len("upsample", "x", x, s.input_len())?;
    backward_with(gpu, label, s, dy, Some(x), dx)
}

fn backward_with(
    gpu: &Gpu,
    label: &str,
    s: &UpsampleShape,
    dy: &Tensor,
    x: Option<&Tensor>,
    dx: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("upsample", "dy", dy, s.output_len())?;
    expect_len("upsample", "dx", dx, s.input_len())?;
    let (shader, p, [_, invocations]) = kernel_for(gpu, s);
    let mut bindings = vec![(3, dy), (4, dx)];
    bindings.extend(x.map(|t| (5, t)));
    build(
        gpu,
        Launch {
            shader,
            entry: if x.is_some() {
                "backward_masked"
            } else {
                "backward"
            },
            kernel: "upsample.backward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &[],
            workgroups: gpu.grid("upsample.backward", invocations)?,
            cost: Cost {
                bytes: 4 * (s.input_len() + s.output_len()),
                flops: 3 * s.input_len(),
            },
        },
    )
}
