//! Launcher for `shaders/adam.wgsl`: Keras' Adam over one flat parameter buffer.
//! On the CPU kernel set some entry points come from `shaders/cpu/adam.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor, WORKGROUP};
use crate::shapes::AdamConfig;
use crate::Result;

/// Adam's settings for one step, as every kernel that takes it reads them (the shaders'
/// `AdamRate`): alpha_t, the moments' decay rates, epsilon.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Rate {
    pub alpha: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// The settings of step `t` (1-based).
pub fn rate(cfg: &AdamConfig, t: u64) -> Rate {
    Rate {
        alpha: cfg.alpha(t),
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub len: u32,
    /// [`step_loss_finish`]'s loss: elements, partial sums, and the slot it fills.
    pub loss_total: u32,
    pub loss_partials: u32,
    pub loss_slot: u32,
    pub rate: Rate,
}

/// The uniform for step `t` (1-based), for [`Dispatch::stage`]; `loss`: the loss
/// [`step_loss_finish`] finishes, as `(elements, slot)` (ignored by [`step`]).
pub fn params(len: u64, cfg: &AdamConfig, t: u64, loss: (u64, u32)) -> Params {
    let (total, slot) = loss;
    Params {
        len: len as u32,
        loss_total: total as u32,
        loss_partials: super::bce::partials_len(total) as u32,
        loss_slot: slot,
        rate: rate(cfg, t),
    }
}

/// Fails unless the gradient and both moments are as long as the weights.
fn check_moments(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
    for (name, x) in [("gradient", g), ("m", m), ("v", v)] {
        expect_len("adam", name, x, w.len)?;
    }
    Ok(())
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
    check_moments(w, g, m, v)?;
    let p = params(w.len, cfg, t, (0, 0));
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

/// [`step`] with `bce.loss_finish` riding in one more workgroup (`--folds finish`): the mean
/// of `partials` (the loss of `total` elements) into `loss[slot]`, as `loss_finish` writes it.
/// Always the GPU set's kernel: the CPU set's Adam takes a vec4 per invocation.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn step_loss_finish(
    gpu: &Gpu,
    label: &str,
    cfg: &AdamConfig,
    t: u64,
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    total: u64,
    partials: &Tensor,
    loss: &Tensor,
    slot: u32,
) -> Result<Dispatch> {
    check_moments(w, g, m, v)?;
    expect_len(
        "adam",
        "loss partials",
        partials,
        super::bce::partials_len(total),
    )?;
    super::bce::check_slot(loss, slot)?;
    let p = params(w.len, cfg, t, (total, slot));
    build(
        gpu,
        Launch {
            shader: Shader::Adam,
            entry: "step_loss_finish",
            kernel: "adam.step_loss_finish",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, w), (2, g), (3, m), (4, v), (5, partials), (6, loss)],
            constants: &[],
            // The update's workgroups, then the loss's.
            workgroups: gpu.groups("adam.step_loss_finish", w.len.div_ceil(WORKGROUP) + 1)?,
            cost: Cost {
                bytes: 4 * (7 * w.len + partials.len + 1),
                flops: 12 * w.len + partials.len,
            },
        },
    )
}
