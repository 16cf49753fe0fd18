//! Launchers for `shaders/stride.wgsl`: the strided layers' index maps between a small side
//! and a big one. On the CPU kernel set, where the channels are whole vec4s and the big side
//! at most twice the small one, `shaders/cpu/stride.wgsl` instead (the same results).
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::shapes::StrideShape;
use crate::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    hb: u32,
    wb: u32,
    oy: u32,
    ox: u32,
    total: u32,
    _p: [u32; 3],
}

fn params(s: &StrideShape, total: u64) -> Params {
    Params {
        n: s.n,
        h: s.h,
        w: s.w,
        c: s.c,
        hb: s.hb,
        wb: s.wb,
        oy: s.oy,
        ox: s.ox,
        total: total as u32,
        _p: [0; 3],
    }
}

/// The shader, its params and its invocations: the GPU set's file, one invocation per element
/// of the side it writes (`gpu_total`), or the CPU set's, one per small vec4 both ways. `insert`
/// on the CPU set needs the small pixels' 2x2 blocks to cover the big side (`covers`).
fn kernel_for(gpu: &Gpu, s: &StrideShape, gpu_total: u64, covers: bool) -> (Shader, Params, u64) {
    match vec4_kernel(gpu, s.c as u64) && covers {
        true => {
            let total = s.small_len() / 4;
            (Shader::CpuStride, params(s, total), total)
        }
        false => (Shader::Stride, params(s, gpu_total), gpu_total),
    }
}

/// `big` = `small` at positions `(2y + oy, 2x + ox)`, zeros elsewhere.
pub fn insert(
    gpu: &Gpu,
    label: &str,
    s: &StrideShape,
    small: &Tensor,
    big: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("stride", "small", small, s.small_len())?;
    expect_len("stride", "big", big, s.big_len())?;
    let covers = s.hb <= 2 * s.h && s.wb <= 2 * s.w;
    let (shader, p, invocations) = kernel_for(gpu, s, s.big_len(), covers);
    build(
        gpu,
        Launch {
            shader,
            entry: "insert",
            kernel: "stride.insert",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, small), (2, big)],
            constants: &[],
            workgroups: gpu.grid("stride.insert", invocations)?,
            cost: Cost {
                bytes: 4 * (s.small_len() + s.big_len()),
                flops: 0,
            },
        },
    )
}

/// `small[y][x]` = `big[2y + oy][2x + ox]`.
pub fn take(
    gpu: &Gpu,
    label: &str,
    s: &StrideShape,
    big: &Tensor,
    small: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_len("stride", "big", big, s.big_len())?;
    expect_len("stride", "small", small, s.small_len())?;
    let (shader, p, invocations) = kernel_for(gpu, s, s.small_len(), true);
    build(
        gpu,
        Launch {
            shader,
            entry: "take",
            kernel: "stride.take",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(3, big), (4, small)],
            constants: &[],
            workgroups: gpu.grid("stride.take", invocations)?,
            cost: Cost {
                bytes: 8 * s.small_len(),
                flops: 0,
            },
        },
    )
}
