//! `shaders/cpu/conv2d.wgsl`: forward, backward_input, and the weight and bias gradient as
//! per-chunk partial sums plus a reduce. Written out for 3x3 kernels and at most [`MAXC`]
//! channels a side ([`takes`]), [`GROUP`] of them per invocation; `ops::conv2d` runs the GPU
//! set's kernels for other shapes.
use crate::gpu::{Cost, Dispatch, Gpu, Tensor};
use crate::ops::conv2d::{weight_gradient_kernels, GradOut, Params};
use crate::ops::{build, Launch, Shader};
use crate::shapes::Conv2dShape;
use crate::Result;

/// Invocations per workgroup: the shader's CPU_WG. Large, so that each workgroup's copy of
/// the weights into workgroup memory serves many pixels (the smallest layer still makes 32
/// workgroups at batch 256).
pub const CPU_WG: u64 = 128;
/// Output pixels one weight-gradient invocation sums.
pub const CHUNK: u64 = 256;
/// Channels an invocation holds a side: four vec4 accumulators, and a kernel slice copied
/// into workgroup memory as 9 x 16 x 16 floats (9 KiB). The shader's GROUP. The side an
/// invocation writes runs a z-layer of workgroups per group; the side it sums over is walked
/// a group at a time (by the forward inside its dispatch, by the input gradient as one
/// dispatch per group).
pub const GROUP: u32 = 16;
/// Channels a side these kernels take: the shader writes out the walk over two groups. The
/// shader's MAXC.
pub const MAXC: u32 = 32;
// The shader writes out the walk over a second group, no third.
const _: () = assert!(MAXC <= 2 * GROUP);

/// Whether these kernels take `s`: they write out the 9 taps of a 3x3 window and at most
/// MAXC channels a side.
pub fn takes(s: &Conv2dShape) -> bool {
    s.k == 3 && s.ci <= MAXC && s.co <= MAXC
}

/// Groups of GROUP channels a side of `channels` splits into.
fn groups_of(channels: u32) -> u32 {
    channels.div_ceil(GROUP)
}

/// `invocations` in workgroups of CPU_WG, folded into x and y, repeated in z for each of
/// `groups` (at most (MAXC / GROUP)^2, far below any adapter's z limit).
fn per_group(gpu: &Gpu, what: &str, invocations: u64, groups: u32) -> Result<[u32; 3]> {
    let [x, y, _] = gpu.grid_of(what, invocations, CPU_WG)?;
    Ok([x, y, groups])
}

/// Whether the weight gradient takes the thin kernel: one side has a single channel.
fn thin(s: &Conv2dShape) -> bool {
    s.ci == 1 || s.co == 1
}

/// Chunks of CHUNK pixels the weight gradient walks: output pixels, or for the thin kernel
/// with one output channel, input pixels.
fn chunks(s: &Conv2dShape) -> u64 {
    let walked = if s.ci != 1 && s.co == 1 {
        s.input_len() / s.ci as u64
    } else {
        s.output_len() / s.co as u64
    };
    walked.div_ceil(CHUNK)
}

/// One chunk's partial sums: every weight, then the bias, padded to whole vec4s.
fn rows4(s: &Conv2dShape) -> u64 {
    (s.weight_len() + s.co as u64).div_ceil(4)
}

pub fn partials_len(s: &Conv2dShape) -> u64 {
    chunks(s) * rows4(s) * 4
}

fn params(s: &Conv2dShape, relu: bool) -> Params {
    Params {
        n: s.n,
        relu: relu as u32,
        chunks: chunks(s) as u32,
        ..bytemuck::Zeroable::zeroed()
    }
}

fn constants(s: &Conv2dShape, with_bias: bool) -> [(&'static str, f64); 8] {
    [
        ("CI", s.ci as f64),
        ("CO", s.co as f64),
        ("H", s.h as f64),
        ("W", s.w as f64),
        ("PAD", s.pad() as f64),
        ("CHUNK", CHUNK as f64),
        ("WITH_BIAS", with_bias as u32 as f64),
        ("WIDE", if s.ci == 1 { s.co } else { s.ci } as f64),
    ]
}

// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    relu: bool,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    let p = params(s, relu);
    // A single output channel takes four neighbouring pixels per invocation; fewer than 4
    // take every output channel in one invocation, more take a group each.
    let (ho, wo) = s.out_hw();
    let (invocations, groups) = match s.co {
        1 => (s.n as u64 * ho as u64 * wo.div_ceil(4) as u64, 1),
        2 | 3 => (s.output_len() / s.co as u64, 1),
        _ => (s.output_len() / s.co as u64, groups_of(s.co)),
    };
    build(
        gpu,
        Launch {
            shader: Shader::CpuConv2d,
            entry: "forward",
            kernel: "conv2d.forward",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (12, x), (2, w), (3, b), (4, y)],
            constants: &constants(s, false),
            workgroups: per_group(gpu, "conv2d.forward", invocations, groups)?,
            cost: Cost {
                bytes: 4 * (s.input_len() + s.weight_len() + s.co as u64 + s.output_len()),
                flops: 2 * s.macs(),
            },
        },
    )
}

/// One dispatch per group of output channels, the first writing dx, the next adding to it:
/// walking a second group inside one dispatch needed a workgroup barrier with the sums live
/// in between, which cost lavapipe as much as the arithmetic (the 14x14 32 -> 32 input
/// gradient at batch 64: 169 ms, 78 ms without that barrier).
pub fn backward_input(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    let pixels = s.input_len() / s.ci as u64;
    let base = constants(s, false);
    let groups = groups_of(s.co);
    (0..groups)
        .map(|og| {
            let mut constants = base.to_vec();
            constants.extend([("OG", og as f64), ("ADD_TO_DX", (og > 0) as u32 as f64)]);
            let outputs = s.output_len() / groups as u64;
            build(
                gpu,
                Launch {
                    shader: Shader::CpuConv2d,
                    entry: "backward_input",
                    kernel: "conv2d.backward_input",
                    label,
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(2, w), (5, dy), (6, act), (13, dy), (14, act), (7, dx)],
                    constants: &constants,
                    workgroups: per_group(gpu, "conv2d.backward_input", pixels, groups_of(s.ci))?,
                    cost: Cost {
                        bytes: 4
                            * (outputs * (1 + relu as u64)
                                + s.weight_len() / groups as u64
                                + s.input_len() * (1 + (og > 0) as u64)),
                        flops: 2 * s.macs() / groups as u64,
                    },
                },
            )
        })
        .collect()
}

/// The weight gradient (and, with `db`, the bias gradient): partial sums over chunks of
/// CHUNK pixels (output pixels; input pixels for the thin kernel with one output channel),
/// then a reduce that adds each weight's chunks in order.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    // `partials` holds exactly partials_len(s) (ops::conv2d checked it).
    let used = partials.len;
    let constants = constants(s, db.is_some());
    let (kernel, reduce_kernel) = weight_gradient_kernels(db.is_some());
    // One invocation per chunk and tap for each pair of channel groups, or per chunk with
    // every tap for each group of the wide side (thin).
    let (entry, invocations, groups) = match thin(s) {
        true => ("backward_params_thin", chunks(s), groups_of(s.ci.max(s.co))),
        false => (
            "backward_params_partial",
            chunks(s) * 9,
            groups_of(s.ci) * groups_of(s.co),
        ),
    };
    let partial = build(
        gpu,
        Launch {
            shader: Shader::CpuConv2d,
            entry,
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[
                (1, x),
                (12, x),
                (5, dy),
                (6, act),
                (13, dy),
                (14, act),
                (8, partials),
            ],
            constants: &constants,
            workgroups: per_group(gpu, kernel, invocations, groups)?,
            cost: Cost {
                bytes: 4 * (s.output_len() * (1 + relu as u64) + s.input_len() + used),
                flops: 2 * s.macs() + s.output_len(),
            },
        },
    )?;
    // Without a bias gradient the reduce never writes db: alias dw.
    let db = db.unwrap_or(dw);
    let reduce = build(
        gpu,
        Launch {
            shader: Shader::CpuConv2d,
            entry: "backward_params_reduce",
            kernel: reduce_kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(9, partials), (10, dw), (11, db)],
            constants: &constants,
            workgroups: gpu.grid_of(reduce_kernel, rows4(s), CPU_WG)?,
            cost: Cost {
                bytes: 4 * (used + s.weight_len() + s.co as u64),
                flops: used,
            },
        },
    )?;
    Ok(vec![partial, reduce])
}
