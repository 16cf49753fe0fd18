//! Launchers for `shaders/bce.wgsl`: binary cross-entropy from logits, its mean over every
//! element (two fixed-tree passes) and its gradient fused with the sigmoid.
//! On the CPU kernel set some entry points come from `shaders/cpu/bce.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::{Error, Result};

/// Elements one `loss_partial` workgroup sums (a workgroup of 256 x 16 each): the shader's
/// CHUNK (`tests/shaders.rs` checks that they agree).
pub const CHUNK: u64 = crate::gpu::WORKGROUP * 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub total: u32,
    pub partials: u32,
    pub slot: u32,
    pub _p: u32,
}

/// Invocations per workgroup of the CPU set's loss_partial and loss_partial_gradient
/// (`shaders/cpu/bce.wgsl`), each of which sums one CHUNK.
pub const CPU_WG: u64 = 8;

/// How many partial sums `loss_partial` writes for `total` elements.
pub fn partials_len(total: u64) -> u64 {
    total.div_ceil(CHUNK)
}

/// Floats before a step's loss partials in its region of [`loss_finish_steps`]: the loss
/// log's slot + 1 (0: no step filled it), the partials' count, and the elements as f32.
pub const STEP_HEADER: u64 = 3;

/// Floats of one step's region for a loss of up to `total` elements: the header, the partials.
pub fn step_region_len(total: u64) -> u64 {
    STEP_HEADER + partials_len(total)
}

/// The loss log's slots a step region's header can name exactly (f32 integers).
pub const STEP_SLOTS_MAX: u64 = 1 << 24;

fn params(total: u64, slot: u32) -> Params {
    Params {
        total: total as u32,
        partials: partials_len(total) as u32,
        slot,
        _p: 0,
    }
}

fn check(z: &Tensor, t: &Tensor) -> Result<()> {
    if z.len == 0 {
        return Err(Error::Shape {
            op: "bce",
            detail: "no elements".into(),
        });
    }
    expect_len("bce", "targets", t, z.len)
}

/// Per-workgroup sums of the element losses into `partials` (`partials_len(z.len)` long).
pub fn loss_partial(
    gpu: &Gpu,
    label: &str,
    z: &Tensor,
    t: &Tensor,
    partials: &Tensor,
) -> Result<Dispatch> {
    check(z, t)?;
    expect_len("bce", "partials", partials, partials_len(z.len))?;
    let p = params(z.len, 0);
    // The CPU set sums each chunk in one invocation; the GPU set in one workgroup.
    let (shader, workgroups) = if vec4_kernel(gpu, z.len) {
        let groups = partials_len(z.len).div_ceil(CPU_WG);
        (Shader::CpuBce, gpu.groups("bce.loss_partial", groups)?)
    } else {
        (
            Shader::Bce,
            gpu.groups("bce.loss_partial", partials_len(z.len))?,
        )
    };
    build(
        gpu,
        Launch {
            shader,
            entry: "loss_partial",
            kernel: "bce.loss_partial",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, z), (2, t), (3, partials)],
            constants: &[],
            workgroups,
            cost: Cost {
                bytes: 8 * z.len,
                flops: 8 * z.len,
            },
        },
    )
}

/// [`loss_partial`] and [`sigmoid_backward`] in one pass (`--folds loss`): the partial sums
/// into `partials` and the logits' gradient into `dz`, the same bits as the two kernels (the
/// GPU set's `loss_partial` sums a chunk per workgroup as this one does, the CPU set's a
/// chunk per invocation as its `loss_partial`). One dispatch fewer per training step, and on
/// the CPU set one load of each logit and target fewer.
pub fn loss_partial_gradient(
    gpu: &Gpu,
    label: &str,
    z: &Tensor,
    t: &Tensor,
    partials: &Tensor,
    dz: &Tensor,
) -> Result<Dispatch> {
    check(z, t)?;
    expect_len("bce", "partials", partials, partials_len(z.len))?;
    expect_len("bce", "dz", dz, z.len)?;
    let p = params(z.len, 0);
    let kernel = "bce.loss_partial_gradient";
    let (shader, workgroups) = match vec4_kernel(gpu, z.len) {
        true => (Shader::CpuBce, partials_len(z.len).div_ceil(CPU_WG)),
        false => (Shader::Bce, partials_len(z.len)),
    };
    build(
        gpu,
        Launch {
            shader,
            entry: "loss_partial_gradient",
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, z), (2, t), (3, partials), (6, dz)],
            constants: &[],
            workgroups: gpu.groups(kernel, workgroups)?,
            cost: Cost {
                bytes: 12 * z.len,
                flops: 14 * z.len,
            },
        },
    )
}

/// `loss[slot]` = the mean element loss, from the partial sums. The slot can be moved per
/// step with [`Dispatch::stage`] and [`finish_params`].
pub fn loss_finish(
    gpu: &Gpu,
    label: &str,
    total: u64,
    partials: &Tensor,
    loss: &Tensor,
    slot: u32,
) -> Result<Dispatch> {
    expect_len("bce", "partials", partials, partials_len(total))?;
    check_slot(loss, slot)?;
    let p = params(total, slot);
    build(
        gpu,
        Launch {
            shader: Shader::Bce,
            entry: "loss_finish",
            kernel: "bce.loss_finish",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(4, partials), (5, loss)],
            constants: &[],
            workgroups: [1, 1, 1],
            cost: Cost {
                bytes: 4 * partials.len + 4,
                flops: partials.len,
            },
        },
    )
}

/// [`loss_finish`] for each step whose loss partials lie in `regions`, `stride` floats apart
/// (`--folds adam`: `dense::grads_adam` fills them): one workgroup per region, each writing
/// the mean into the loss log's slot its header names, and clearing it; a region no step
/// filled since is skipped. Built over the first `count` regions; an execution records it
/// over as many as its steps filled (a [`crate::gpu::SlotLaunch`] with that many workgroups).
pub fn loss_finish_steps(
    gpu: &Gpu,
    label: &str,
    regions: &Tensor,
    stride: u64,
    count: u32,
    loss: &Tensor,
) -> Result<Dispatch> {
    if stride <= STEP_HEADER || count == 0 || regions.len < count as u64 * stride {
        return Err(Error::Shape {
            op: "bce",
            detail: format!(
                "{count} step regions of {stride} floats in a buffer of {}: each needs a \
                 header of {STEP_HEADER} and a partial sum at least",
                regions.len
            ),
        });
    }
    if loss.len > STEP_SLOTS_MAX {
        return Err(Error::Shape {
            op: "bce",
            detail: format!(
                "a loss log of {} slots: a step region names at most {STEP_SLOTS_MAX}",
                loss.len
            ),
        });
    }
    let p = Params {
        partials: stride as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    build(
        gpu,
        Launch {
            shader: Shader::Bce,
            entry: "loss_finish_steps",
            kernel: "bce.loss_finish_steps",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(3, regions), (5, loss)],
            constants: &[],
            workgroups: [count, 1, 1],
            cost: Cost {
                bytes: count as u64 * (4 * stride + 4),
                flops: count as u64 * stride,
            },
        },
    )
}

/// Parameters of `loss_finish` writing to `slot`.
/// Fails unless `loss` has a slot `slot`.
pub(crate) fn check_slot(loss: &Tensor, slot: u32) -> Result<()> {
    if slot as u64 >= loss.len {
        return Err(Error::Shape {
            op: "bce",
            detail: format!("loss slot {slot} outside a buffer of {}", loss.len),
        });
    }
    Ok(())
}

pub fn finish_params(total: u64, slot: u32) -> Params {
    params(total, slot)
}

/// `dz = (sigmoid(z) - t) / count`: the gradient of the mean loss w.r.t. the logits.
pub fn sigmoid_backward(
    gpu: &Gpu,
    label: &str,
    z: &Tensor,
    t: &Tensor,
    dz: &Tensor,
) -> Result<Dispatch> {
    check(z, t)?;
    expect_len("bce", "dz", dz, z.len)?;
    let p = params(z.len, 0);
    // The CPU set's kernel takes a vec4 per invocation.
    let (shader, invocations) = match vec4_kernel(gpu, z.len) {
        true => (Shader::CpuBce, z.len / 4),
        false => (Shader::Bce, z.len),
    };
    build(
        gpu,
        Launch {
            shader,
            entry: "sigmoid_backward",
            kernel: "bce.sigmoid_backward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, z), (2, t), (6, dz)],
            constants: &[],
            workgroups: gpu.grid("bce.sigmoid_backward", invocations)?,
            cost: Cost {
                bytes: 12 * z.len,
                flops: 6 * z.len,
            },
        },
    )
}
