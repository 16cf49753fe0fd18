//! Launchers for `shaders/activation.wgsl`: ReLU and sigmoid, forward and backward.
//! On the CPU kernel set some entry points come from `shaders/cpu/activation.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    _p: [u32; 3],
}

fn elementwise(
    gpu: &Gpu,
    entry: &'static str,
    kernel: &'static str,
    label: &str,
    bindings: &[(u32, &Tensor)],
    reads: u64,
) -> Result<Dispatch> {
    let len = bindings[0].1.len;
    for (_, t) in bindings {
        expect_len("activation", kernel, t, len)?;
    }
    // relu_backward has a vec4 kernel on the CPU set (`shaders/cpu/activation.wgsl`).
    let (shader, invocations) = if entry == "relu_backward" && vec4_kernel(gpu, len) {
        (Shader::CpuActivation, len / 4)
    } else {
        (Shader::Activation, len)
    };
    let p = Params {
        total: invocations as u32,
        _p: [0; 3],
    };
    build(
        gpu,
        Launch {
            shader,
            entry,
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings,
            constants: &[],
            workgroups: gpu.grid(kernel, invocations)?,
            cost: Cost {
                bytes: 4 * len * (reads + 1),
                flops: len,
            },
        },
    )
}

pub fn relu_forward(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    elementwise(
        gpu,
        "relu_forward",
        "activation.relu_forward",
        label,
        &[(1, x), (2, y)],
        1,
    )
}

/// `dx = dy` where the saved forward tensor (input or output) is > 0, else 0.
pub fn relu_backward(
    gpu: &Gpu,
    label: &str,
    saved: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    elementwise(
        gpu,
        "relu_backward",
        "activation.relu_backward",
        label,
        &[(1, saved), (3, dy), (4, dx)],
        2,
    )
}

pub fn sigmoid_forward(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    elementwise(
        gpu,
        "sigmoid_forward",
        "activation.sigmoid_forward",
        label,
        &[(1, x), (2, y)],
        1,
    )
}

/// `dx = dy * y * (1 - y)` from the saved output `y`.
pub fn sigmoid_backward(
    gpu: &Gpu,
    label: &str,
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    elementwise(
        gpu,
        "sigmoid_backward",
        "activation.sigmoid_backward",
        label,
        &[(1, y), (3, dy), (4, dx)],
        2,
    )
}
