//! Launcher for `shaders/adam.wgsl`: Keras' Adam over one flat parameter buffer.
//! On the CPU kernel set some entry points come from `shaders/cpu/adam.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::shapes::AdamConfig;
use crate::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub len: u32,
    pub _p: [u32; 3],
    pub alpha: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// The uniform for step `t` (1-based), for [`Dispatch::set_params`].
pub fn params(len: u64, cfg: &AdamConfig, t: u64) -> Params {
    Params {
        len: len as u32,
        _p: [0; 3],
        alpha: cfg.alpha(t),
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
    }
}

/// One Adam step at step `t` over `w` with gradient `g` and moments `m`, `v`.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn step(
    gpu: &Gpu,
    label: &str,
    cfg: &AdamConfig,
    t: u64,
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<Dispatch> {
    for (name, x) in [("gradient", g), ("m", m), ("v", v)] {
        expect_len("adam", name, x, w.len)?;
    }
    let p = params(w.len, cfg, t);
    // The CPU set's kernel takes a vec4 per invocation.
    let (shader, invocations) = match vec4_kernel(gpu, w.len) {
        true => (Shader::CpuAdam, w.len / 4),
        false => (Shader::Adam, w.len),
    };
    build(
        gpu,
        Launch {
            shader,
            entry: "step",
            kernel: "adam.step",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, w), (2, g), (3, m), (4, v)],
            constants: &[],
            workgroups: gpu.grid("adam.step", invocations)?,
            cost: Cost {
                bytes: 4 * 7 * w.len,
                flops: 12 * w.len,
            },
        },
    )
}
