//! Launchers for `shaders/stride.wgsl`: the strided layers' index maps between a small side
//! and a big one (the same kernels on both kernel sets).
use super::{build, expect_len, Cost, Dispatch, Launch, Shader};
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
    build(
        gpu,
        Launch {
            shader: Shader::Stride,
            entry: "insert",
            kernel: "stride.insert",
            label,
            params: bytemuck::bytes_of(&params(s, s.big_len())),
            bindings: &[(1, small), (2, big)],
            constants: &[],
            workgroups: gpu.grid("stride.insert", s.big_len())?,
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
    build(
        gpu,
        Launch {
            shader: Shader::Stride,
            entry: "take",
            kernel: "stride.take",
            label,
            params: bytemuck::bytes_of(&params(s, s.small_len())),
            bindings: &[(3, big), (4, small)],
            constants: &[],
            workgroups: gpu.grid("stride.take", s.small_len())?,
            cost: Cost {
                bytes: 8 * s.small_len(),
                flops: 0,
            },
        },
    )
}
