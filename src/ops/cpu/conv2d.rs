//! `shaders/cpu/conv2d/` (`common.wgsl`, then a file per pass): forward, backward_input, and
//! the weight and bias gradient as per-chunk partial sums plus a reduce. Written out for 3x3
//! kernels and at most [`MAXC`] channels a side ([`takes`]), [`GROUP`] of them per
//! invocation; `ops::conv2d` runs the GPU set's kernels for other shapes.
use crate::gpu::{Cost, Dispatch, Gpu, Tensor, TensorTexture};
use crate::ops::conv2d::{weight_gradient_kernels, GradOut, Params, Strided};
use crate::ops::{build, build_textured, Launch, Shader};
use crate::shapes::{Conv2dShape, Padding};
use crate::Result;

/// Invocations per workgroup: the shader's CPU_WG. Large, so that each workgroup's copy of
/// the weights into workgroup memory serves many pixels (the smallest layer still makes 32
/// workgroups at batch 256).
pub const CPU_WG: u64 = 128;
/// Invocations per workgroup of the weight-gradient kernels (the partial sums of
/// `backward_params_partial`, `_thin` and `_up`, and the reduce): one 8-wide vector. They copy no weights, and their invocations are few: small workgroups spread
/// them evenly over the threads.
pub const PARTIAL_WG: u64 = 8;
/// Output pixels one weight-gradient invocation sums.
pub const CHUNK: u64 = 256;
// `backward_params_row` walks its chunk two pixels a step.
const _: () = assert!(CHUNK.is_multiple_of(2));
/// x pixels of a row one invocation takes in the single-output forward through an upsampling
/// (each with its 2x2 outputs): the shader's UP_ROW. The pixels around them are loaded once
/// for all: 18 loads for 4 x pixels under 'same' padding, where one invocation per x pixel
/// made 36.
pub const UP_ROW: u64 = 4;
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

/// Whether these kernels take `s` reading an inserted input `i` ([`Input::Inserted`]): the
/// shapes [`takes`] names, 'same', with more than one input channel (the weight gradient's
/// walk over x's pixels is `backward_params_partial`'s, which has no thin form), at least 4 output channels (the forward's
/// one-invocation-per-pixel form) and an output twice the small side's size (four of the
/// weight gradient's taps then tile it, which the bias gradient needs).
pub fn takes_inserted(s: &Conv2dShape, i: &Strided) -> bool {
    takes(s)
        && s.padding == Padding::Same
        && s.ci > 1
        && s.co >= 4
        && s.out_hw() == (2 * i.h, 2 * i.w)
}

/// Whether these kernels take `s` keeping the outputs `t` names (`Folds::take`): the shapes
/// [`takes`] names with at least 4 output channels (the forward's one-invocation-per-pixel
/// form; the weight gradient's thin form then walks outputs, as the take needs).
pub fn takes_taken(s: &Conv2dShape, _t: &Strided) -> bool {
    takes(s) && s.co >= 4
}

/// Whether these kernels take `s` reading its input through a 2x upsampling
/// (`ops::conv2d::Input::Upsampled2x`): the shapes [`takes`] names with an even height and
/// width.
pub fn takes_upsampled(s: &Conv2dShape) -> bool {
    takes(s) && s.h.is_multiple_of(2) && s.w.is_multiple_of(2)
}

/// Whether these kernels take `s` with a 2x2 max pool after it (`ops::conv2d::Pooled`): the
/// shapes [`takes`] names with one group of input channels (the forward computes a window's
/// four outputs with one kernel slice loaded) and output channels a multiple of 4 (the
/// backward kernels read the winners four at a time).
pub fn takes_pooled(s: &Conv2dShape) -> bool {
    takes(s) && s.ci <= GROUP && s.co.is_multiple_of(4)
}

/// The layer beside a convolution that its kernels take over (`ops::conv2d::Input`,
/// `Folds::take`, `Folds::pool`), if any.
#[derive(Clone, Copy, Debug)]
pub enum Fold<'a> {
    None,
    /// The input through a 2x upsampling: the shader's UP = 2.
    Upsample,
    /// The input through a zero insertion: the shader's INS.
    Insert(Strided),
    /// Every other output kept: the shader's TAKE.
    Take(Strided),
    /// A 2x2 max pool after the layer, its output `h` x `w` and its winners: the shader's
    /// POOL = 2.
    Pool {
        h: u32,
        w: u32,
        winner: &'a Tensor,
    },
}

/// `t` as `binding`, a view the shader reads four channels at a time, which it does only where
/// its `channels` are a multiple of 4; elsewhere the specialised code does not use the binding
/// (and a one-pixel tensor of 1 to 3 channels could not fill a whole vec4).
fn vec4_view(binding: u32, t: &Tensor, channels: u32) -> Option<(u32, &Tensor)> {
    channels.is_multiple_of(4).then_some((binding, t))
}

/// The channels of dy as [`vec4_view`] takes them for the input gradient: an upsampled layer
/// with one output channel and 'same' padding whose output rows are whole vec4s reads a
/// lane's four columns of a row as one (`backward_input_up_lanes`' DY4_COLS).
fn dy_vec4_channels(s: &Conv2dShape, fold: &Fold<'_>) -> u32 {
    let rows4 = matches!(fold, Fold::Upsample) && s.pad() == 1 && s.out_hw().1.is_multiple_of(4);
    if s.co == 1 && rows4 {
        4
    } else {
        s.co
    }
}

/// The textures an entry point reads x (binding 17), dy (18) and act (19) through: under
/// `textures` (the shader's TEX), each tensor it reads four channels at a time. `reads` names
/// the tensors and whether the kernel reads them so; the others are not bound. A tensor named
/// twice (act, which is dy where no ReLU follows) is copied in once.
fn textures(
    gpu: &Gpu,
    label: &str,
    reads: &[(u32, &Tensor, bool)],
) -> Result<Vec<(u32, TensorTexture)>> {
    if !gpu.folds_at(label).textures {
        return Ok(Vec::new());
    }
    let read: Vec<(u32, &Tensor)> = reads
        .iter()
        .filter(|(_, _, read)| *read)
        .map(|&(binding, t, _)| (binding, t))
        .collect();
    read.iter()
        .enumerate()
        .map(|(k, &(binding, t))| {
            let texture = gpu.texture_of(label, t)?;
            let copied_before = read[..k].iter().any(|(_, earlier)| same_view(earlier, t));
            Ok((
                binding,
                match copied_before {
                    true => texture.already_filled(),
                    false => texture,
                },
            ))
        })
        .collect()
}

fn same_view(a: &Tensor, b: &Tensor) -> bool {
    a.buffer == b.buffer && a.offset == b.offset && a.len == b.len
}

/// `textures` for the `k`th of an op's dispatches, which run back to back: the first copies
/// the tensors in, the later ones (phases, channel groups) read what it copied.
fn filled_by_first(textures: &[(u32, TensorTexture)], k: usize) -> Vec<(u32, TensorTexture)> {
    textures
        .iter()
        .map(|(binding, t)| match k {
            0 => (*binding, t.clone()),
            _ => (*binding, t.already_filled()),
        })
        .collect()
}

/// `constants` with TEX set where any of `textures` is read.
fn with_tex(
    mut constants: Vec<(&'static str, f64)>,
    textures: &[(u32, TensorTexture)],
) -> Vec<(&'static str, f64)> {
    if textures.iter().any(|(_, t)| t.is_filled()) {
        constants.push(("TEX", 1.0));
    }
    constants
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

/// Whether an upsampled layer's weight gradient takes every tap per invocation
/// (`backward_params_up`, whose sums keep two input vec4s): 2 to 8 input channels.
fn up_taps(s: &Conv2dShape, fold: &Fold<'_>) -> bool {
    matches!(fold, Fold::Upsample) && !thin(s) && s.ci <= 8
}

/// Pixels of the small side `t` of a stride-2 map, in the batch.
fn small_pixels(s: &Conv2dShape, t: &Strided) -> u64 {
    s.n as u64 * t.h as u64 * t.w as u64
}

/// Chunks of CHUNK pixels the weight gradient walks: output pixels (under a take the kept
/// ones), or for the thin kernel with one output channel, input pixels, or for an inserted
/// input, the small side's pixels, or under a pool the pooled pixels (each its window's four
/// outputs), or under an upsampling (more than one input channel) x's pixels (each with the
/// four outputs a tap reads it at).
fn chunks(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    let walked = match fold {
        Fold::Insert(t) | Fold::Take(t) => small_pixels(s, t),
        Fold::Pool { h, w, .. } => s.n as u64 * *h as u64 * *w as u64,
        Fold::Upsample if s.ci != 1 => s.input_len() / s.ci as u64 / 4,
        Fold::None if s.ci != 1 && s.co == 1 => s.input_len() / s.ci as u64,
        Fold::None | Fold::Upsample => s.output_len() / s.co as u64,
    };
    walked.div_ceil(CHUNK)
}

/// One chunk's partial sums: every weight, then the bias, padded to whole vec4s; under an
/// inserted input, four rows of the bias (the four taps of `backward_params_partial` that tile
/// the output).
fn rows4(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    let bias_rows = match fold {
        Fold::Insert(_) => 4,
        _ => 1,
    };
    (s.weight_len() + bias_rows * s.co as u64).div_ceil(4)
}

pub fn partials_len(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    chunks(s, fold) * rows4(s, fold) * 4
}

fn params(s: &Conv2dShape, fold: &Fold<'_>, relu: bool) -> Params {
    Params {
        n: s.n,
        relu: relu as u32,
        chunks: chunks(s, fold) as u32,
        ..bytemuck::Zeroable::zeroed()
    }
}

fn constants(s: &Conv2dShape, fold: &Fold<'_>, with_bias: bool) -> Vec<(&'static str, f64)> {
    let mut c = vec![
        ("CI", s.ci as f64),
        ("CO", s.co as f64),
        ("H", s.h as f64),
        ("W", s.w as f64),
        ("PAD", s.pad() as f64),
        ("CHUNK", CHUNK as f64),
        ("WITH_BIAS", with_bias as u32 as f64),
        ("WIDE", if s.ci == 1 { s.co } else { s.ci } as f64),
    ];
    match fold {
        Fold::Insert(i) => c.extend([
            ("INS", 1.0),
            ("XH", i.h as f64),
            ("XW", i.w as f64),
            ("OY", i.oy as f64),
            ("OX", i.ox as f64),
        ]),
        Fold::Take(t) => c.extend([
            ("TAKE", 1.0),
            ("TH", t.h as f64),
            ("TW", t.w as f64),
            ("TY", t.oy as f64),
            ("TX", t.ox as f64),
        ]),
        Fold::Upsample => c.extend([
            ("UP", 2.0),
            ("XH", (s.h / 2) as f64),
            ("XW", (s.w / 2) as f64),
        ]),
        Fold::Pool { h, w, .. } => c.extend([("POOL", 2.0), ("PH", *h as f64), ("PW", *w as f64)]),
        Fold::None => {}
    }
    c
}

/// The four parities of a row and column: the phases of a grid split by them.
const PHASES: [(u32, u32); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

/// The phases of an h x w grid in a batch of n that hold pixels (a side of 1 has no odd
/// phase), each with its pixel count and its constants (PY, PX).
fn phase_grids(n: u32, h: u32, w: u32) -> Vec<(u64, Vec<(&'static str, f64)>)> {
    PHASES
        .iter()
        .map(|&(py, px)| {
            let pixels = n as u64 * (h - py).div_ceil(2) as u64 * (w - px).div_ceil(2) as u64;
            (pixels, vec![("PY", py as f64), ("PX", px as f64)])
        })
        .filter(|(pixels, _)| *pixels > 0)
        .collect()
}

// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    fold: &Fold<'_>,
    relu: bool,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let p = params(s, fold, relu);
    // A single output channel takes four neighbouring pixels per invocation (under an
    // upsampling, the 2x2 outputs over each of UP_ROW x pixels of a row); fewer than 4 take
    // every output channel in one invocation, more take a group each: every pixel, or the kept ones under a take, or under
    // an insertion one dispatch per output phase, each with its own taps (takes_inserted and
    // takes_taken leave only the last form).
    let (ho, wo) = s.out_hw();
    let (pixels, groups) = match (s.co, fold) {
        (1, Fold::Upsample) => {
            let (fh, fw) = (ho as u64 / 2, wo as u64 / 2);
            (s.n as u64 * fh * fw.div_ceil(UP_ROW), 1)
        }
        (1, _) => (s.n as u64 * ho as u64 * wo.div_ceil(4) as u64, 1),
        (2 | 3, _) => (s.output_len() / s.co as u64, 1),
        _ if pairs(s, fold) => (s.n as u64 * ho as u64 * wo.div_ceil(2) as u64, 1),
        _ => (s.output_len() / s.co as u64, groups_of(s.co)),
    };
    let grids: Vec<(u64, Vec<(&str, f64)>)> = match fold {
        Fold::None | Fold::Upsample => vec![(pixels, vec![])],
        // One invocation per pooled pixel, each computing its window.
        Fold::Pool { h, w, .. } => vec![(s.n as u64 * *h as u64 * *w as u64, vec![])],
        Fold::Take(t) => vec![(small_pixels(s, t), vec![])],
        Fold::Insert(_) => phase_grids(s.n, ho, wo),
    };
    let lanes = lanes(gpu, label, s, fold, true);
    let grids = match lanes {
        Some(width) => vec![(
            lanes_invocations(s, fold, true, width),
            vec![("LANES", width as f64)],
        )],
        None => grids,
    };
    let share = grids.len() as u64;
    let tex = textures(gpu, label, &[(17, x, s.ci.is_multiple_of(4))])?;
    let mut base = with_tex(constants(s, fold, false), &tex);
    base.push(("PAIR", pairs(s, fold) as u32 as f64));
    base.push(("REUSE", patches(gpu, label, s, fold, true)));
    grids
        .into_iter()
        .enumerate()
        .map(|(k, (invocations, phase))| {
            let constants = [base.clone(), phase].concat();
            build_textured(
                gpu,
                Launch {
                    shader: Shader::CpuConv2d,
                    entry: match (lanes, fold) {
                        (Some(_), Fold::Upsample) => "forward_up_lanes",
                        (Some(_), _) => "forward_lanes",
                        (None, _) => "forward",
                    },
                    kernel: "conv2d.forward",
                    label,
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, x), (2, w), (3, b), (4, y)]
                        .into_iter()
                        .chain(vec4_view(12, x, s.ci))
                        .chain(vec4_view(23, y, s.co))
                        .chain(winners(15, fold))
                        .chain(winners(24, fold).filter(|_| s.co.is_multiple_of(4)))
                        .collect::<Vec<_>>(),
                    constants: &constants,
                    workgroups: per_group(gpu, "conv2d.forward", invocations, groups)?,
                    cost: Cost {
                        bytes: 4
                            * (input_len(s, fold)
                                + s.weight_len()
                                + s.co as u64
                                + output_len(s, fold))
                            / share,
                        flops: 2 * forward_macs(s, fold) / share,
                    },
                },
                filled_by_first(&tex, k),
            )
        })
        .collect()
}

/// The shader's REUSE under the `reuse` variant, where it changes the kernel: a pooled
/// forward with one input channel, and the thin weight gradients of a pooled one-input or an
/// upsampled one-output layer, load the 4x4 patch their taps read once, and an upsampled
/// forward with at least 4 output channels and input channels a multiple of 4 the 2x2 x
/// pixels its window reads (under PAIR the 2x3 its pair's read; an input gradient's pairs are UP_PAIR, [`up_pairs`], and
/// BIN_PAIR, [`bin_pairs`]). Set nowhere else, so that `bench-kernels` sees every other
/// dispatch unchanged.
fn patches(gpu: &Gpu, label: &str, s: &Conv2dShape, fold: &Fold<'_>, forward: bool) -> f64 {
    let read_once = match fold {
        Fold::Pool { .. } => s.ci == 1,
        Fold::Upsample if forward => s.co >= 4 && s.ci.is_multiple_of(4),
        Fold::Upsample => s.co == 1 && s.ci > 1,
        _ => false,
    };
    (gpu.folds_at(label).reuse && read_once) as u32 as f64
}

/// Whether an upsampled layer's input gradient takes two neighbouring x pixels of a row per
/// invocation (the shader's UP_PAIR, under `reuse`): where it has at most 8 input channels
/// and output channels a multiple of 4, their sums fill the four accumulators and the kernel
/// loads whole vec4s of gradient; where it has one output channel, each pixel's sums fill
/// four of their own.
fn up_pairs(gpu: &Gpu, label: &str, s: &Conv2dShape, fold: &Fold<'_>) -> bool {
    let shape = (s.ci <= 8 && s.co.is_multiple_of(4)) || s.co == 1;
    gpu.folds_at(label).reuse && matches!(fold, Fold::Upsample) && shape
}

/// The subgroup width a layer's invocations share their window's columns across under
/// `lanes`, on an adapter whose subgroups have one width that holds a row's invocations:
/// on a layer with no fold that pads 'same', `forward_lanes` where the forward pass takes
/// [`pairs`] (its input channels whole vec4s) and `backward_input_lanes` where the output
/// channels are whole vec4s; on an upsampled layer, `backward_input_up_lanes` with at most 8
/// input channels and output channels a multiple of 4 (UP_PAIR's sums, [`up_pairs`]) or
/// one output channel (UP_PAIR's pairs of sums), and `forward_up_lanes` with one output channel, 4 to 16 input channels a multiple of 4 and
/// 'same' padding (UP_ROW pixels per lane).
fn lanes(gpu: &Gpu, label: &str, s: &Conv2dShape, fold: &Fold<'_>, forward: bool) -> Option<u32> {
    let width = gpu.subgroup_lanes()?;
    let (_, w, per_lane) = lanes_rows(s, fold, forward);
    let fits = w.div_ceil(per_lane) <= width && CPU_WG.is_multiple_of(width as u64);
    let shape = match (forward, fold) {
        (true, Fold::None) => pairs(s, fold) && s.ci.is_multiple_of(4) && s.pad() == 1,
        (false, Fold::None) => s.co.is_multiple_of(4) && s.pad() == 1,
        // ('Same': a lane's UP_ROW outputs' x pixels are the row's, every one some lane's.)
        (true, Fold::Upsample) => s.co == 1 && s.ci.is_multiple_of(4) && s.ci <= 16 && s.pad() == 1,
        (false, Fold::Upsample) => (s.ci <= 8 && s.co.is_multiple_of(4)) || s.co == 1,
        _ => false,
    };
    (gpu.folds_at(label).lanes && shape && fits).then_some(width)
}

/// The rows `lanes` walks (a batch image's count, their length) and the pixels of a row per
/// lane: x's rows in pairs, but under an upsampling its half-size ones (the forward pass's
/// single output channel UP_ROW of them per lane).
fn lanes_rows(s: &Conv2dShape, fold: &Fold<'_>, forward: bool) -> (u32, u32, u32) {
    match (fold, forward) {
        (Fold::Upsample, true) => (s.out_hw().0 / 2, s.out_hw().1 / 2, UP_ROW as u32),
        (Fold::Upsample, false) => (s.h / 2, s.w / 2, 2),
        _ => (s.h, s.w, 2),
    }
}

/// Invocations for `lanes`: whole rows, `width / (row length / per lane)` of them per
/// subgroup (the lanes past them idle).
fn lanes_invocations(s: &Conv2dShape, fold: &Fold<'_>, forward: bool, width: u32) -> u64 {
    let (h, w, per_lane) = lanes_rows(s, fold, forward);
    let rows_per = width / w.div_ceil(per_lane);
    (s.n as u64 * h as u64).div_ceil(rows_per as u64) * width as u64
}

/// Whether a layer's input gradient takes two neighbouring pixels of a row of x per
/// invocation (the shader's BIN_PAIR, under `reuse`): on a layer with no fold, where the two
/// pixels' windows of outputs overlap in two columns.
fn bin_pairs(gpu: &Gpu, label: &str, fold: &Fold<'_>) -> bool {
    gpu.folds_at(label).reuse && matches!(fold, Fold::None)
}

/// Whether the weight gradient takes a kernel row's three taps per invocation
/// (`backward_params_row`, under `reuse`): on a layer with no fold, whose walk along a row
/// meets each x pixel at the three taps in turn.
fn row_taps(gpu: &Gpu, label: &str, fold: &Fold<'_>) -> bool {
    gpu.folds_at(label).reuse && matches!(fold, Fold::None)
}

/// Whether the forward takes two neighbouring output pixels per invocation (the shader's
/// PAIR): 4 to 8 output channels fill two of its four accumulators, and with no stride-2 map
/// or pool each output pixel's row neighbour is the next one written.
fn pairs(s: &Conv2dShape, fold: &Fold<'_>) -> bool {
    (4..=8).contains(&s.co) && matches!(fold, Fold::None | Fold::Upsample)
}

/// Elements of x: the small side's under an insertion, a quarter of the input's under an
/// upsampling.
fn input_len(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    match fold {
        Fold::Insert(i) => small_pixels(s, i) * s.ci as u64,
        Fold::Upsample => s.input_len() / 4,
        _ => s.input_len(),
    }
}

/// Elements of y: the kept outputs' under a take.
fn output_len(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    match fold {
        Fold::Take(t) => small_pixels(s, t) * s.co as u64,
        Fold::Pool { h, w, .. } => s.n as u64 * *h as u64 * *w as u64 * s.co as u64,
        _ => s.output_len(),
    }
}

/// A folded pool's winners as `binding`; without a pool no entry point uses it.
fn winners<'t>(binding: u32, fold: &Fold<'t>) -> Option<(u32, &'t Tensor)> {
    match fold {
        Fold::Pool { winner, .. } => Some((binding, winner)),
        _ => None,
    }
}

/// Multiply-adds the forward runs: under an upsampling with one output channel the 4 folded
/// taps of each output's phase, not 9.
fn forward_macs(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    match (fold, s.co) {
        (Fold::Upsample, 1) => s.output_len() * 4 * s.ci as u64,
        _ => macs(s, fold),
    }
}

/// Multiply-adds the input gradient runs: under an upsampling each x pixel's 16 folded taps,
/// not 4 x 9.
fn backward_input_macs(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    match fold {
        Fold::Upsample => input_len(s, fold) * 16 * s.co as u64,
        _ => macs(s, fold),
    }
}

/// Multiply-adds the convolution's kernels run but where [`forward_macs`],
/// [`backward_input_macs`] and [`weight_macs`] say otherwise: the layer's share of the small
/// side under a stride-2 map, whose zeros (insert: the small side is a quarter of the output)
/// or dropped outputs (take) they skip.
fn macs(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    match fold {
        Fold::Insert(t) | Fold::Take(t) => {
            s.macs() * small_pixels(s, t) / (s.output_len() / s.co as u64).max(1)
        }
        Fold::None | Fold::Upsample | Fold::Pool { .. } => s.macs(),
    }
}

/// Multiply-adds the weight gradient runs: under an upsampling with more than one input
/// channel, each x pixel meets the sum of a tap's four outputs once (a quarter of the
/// products).
fn weight_macs(s: &Conv2dShape, fold: &Fold<'_>) -> u64 {
    match fold {
        Fold::Upsample if s.ci != 1 => s.input_len() / 4 * 9 * s.co as u64,
        _ => macs(s, fold),
    }
}

/// One dispatch per group of output channels, the first writing dx, the next adding to it:
/// walking a second group inside one dispatch needed a workgroup barrier with the sums live
/// in between, which cost lavapipe as much as the arithmetic (the 14x14 32 -> 32 input
/// gradient at batch 64: 169 ms, 78 ms without that barrier).
/// With `mask`, dx is stored masked by that ReLU output (the layer below's): 0 where it is
/// not positive.
// One argument per tensor the kernel binds: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    fold: &Fold<'_>,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let (dy, act, relu) = g.bindings();
    let p = params(s, fold, relu);
    // One invocation per pixel of x (under an insertion or upsampling, the small side's), and
    // under a take one dispatch per input phase, each with its own taps.
    let up_pair = up_pairs(gpu, label, s, fold);
    let bin_pair = bin_pairs(gpu, label, fold);
    let lanes = lanes(gpu, label, s, fold, false);
    let grids: Vec<(u64, Vec<(&str, f64)>)> = match (fold, lanes) {
        // Under LANES whole rows of x per subgroup, a pair per lane.
        (Fold::None | Fold::Upsample, Some(width)) => {
            vec![(
                lanes_invocations(s, fold, false, width),
                vec![("LANES", width as f64)],
            )]
        }
        // Under UP_PAIR and BIN_PAIR an invocation per two pixels of a row of x.
        (Fold::Upsample, _) if up_pair => {
            let pairs = s.n as u64 * (s.h / 2) as u64 * (s.w / 2).div_ceil(2) as u64;
            vec![(pairs, vec![])]
        }
        (Fold::None, _) if bin_pair => {
            let pairs = s.n as u64 * s.h as u64 * s.w.div_ceil(2) as u64;
            vec![(pairs, vec![])]
        }
        (Fold::None | Fold::Insert(_) | Fold::Upsample | Fold::Pool { .. }, _) => {
            vec![(input_len(s, fold) / s.ci as u64, vec![])]
        }
        (Fold::Take(_), _) => phase_grids(s.n, s.h, s.w),
    };
    let share = grids.len() as u64;
    // Under `lanes` dy stays in storage: each lane loads only its own columns, and through a
    // texture those loads measured no faster (BENCHMARKS.md), so the copy would be all cost.
    let vec4 = s.co.is_multiple_of(4) && lanes.is_none();
    // act's texture is bound wherever dy's is: the shader reads it under the ReLU flag, a
    // parameter, not a constant.
    let tex = textures(gpu, label, &[(18, dy, vec4), (19, act, vec4)])?;
    let mut base = with_tex(constants(s, fold, false), &tex);
    base.push(("MASK_DX", mask.is_some() as u32 as f64));
    base.push(("UP_PAIR", up_pair as u32 as f64));
    base.push(("BIN_PAIR", bin_pair as u32 as f64));
    let groups = groups_of(s.co);
    let mut out = Vec::new();
    for (pixels, phase) in &grids {
        for og in 0..groups {
            let mut constants = [base.clone(), phase.clone()].concat();
            constants.extend([("OG", og as f64), ("ADD_TO_DX", (og > 0) as u32 as f64)]);
            let outputs = output_len(s, fold) / groups as u64;
            out.push(build_textured(
                gpu,
                Launch {
                    shader: Shader::CpuConv2d,
                    entry: match (lanes, fold) {
                        (Some(_), Fold::Upsample) => "backward_input_up_lanes",
                        (Some(_), _) => "backward_input_lanes",
                        (None, _) => "backward_input",
                    },
                    kernel: "conv2d.backward_input",
                    label,
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(2, w), (5, dy), (6, act), (7, dx)]
                        .into_iter()
                        .chain(vec4_view(13, dy, dy_vec4_channels(s, fold)))
                        .chain(vec4_view(14, act, dy_vec4_channels(s, fold)))
                        .chain(winners(16, fold))
                        .chain(vec4_view(21, dx, s.ci))
                        .chain(mask.map(|m| (20, m)))
                        .chain(mask.and_then(|m| vec4_view(22, m, s.ci)))
                        .collect::<Vec<_>>(),
                    constants: &constants,
                    workgroups: per_group(gpu, "conv2d.backward_input", *pixels, groups_of(s.ci))?,
                    cost: Cost {
                        bytes: 4
                            * (outputs * (1 + relu as u64) / share
                                + s.weight_len() / groups as u64
                                + input_len(s, fold)
                                    * (1 + (og > 0) as u64 + mask.is_some() as u64)
                                    / share),
                        flops: 2 * backward_input_macs(s, fold) / groups as u64 / share,
                    },
                },
                filled_by_first(&tex, out.len()),
            )?);
        }
    }
    Ok(out)
}

/// The weight gradient (and, with `db`, the bias gradient): partial sums over chunks of
/// CHUNK pixels (the ones [`chunks`] names), then a reduce that adds each weight's chunks in
/// order.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    fold: &Fold<'_>,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let (dy, act, relu) = g.bindings();
    let p = params(s, fold, relu);
    // `partials` holds exactly partials_len(s) (ops::conv2d checked it).
    let used = partials.len;
    let constants = constants(s, fold, db.is_some());
    let partial_constants = [
        constants.clone(),
        vec![("REUSE", patches(gpu, label, s, fold, false))],
    ]
    .concat();
    // The weight gradients read through storage under `textures` too (through textures they
    // measured no clear gain, short of their copies' cost: BENCHMARKS.md).
    let (kernel, reduce_kernel) = weight_gradient_kernels(db.is_some());
    // One invocation per chunk and tap for each pair of channel groups (under `reuse`, per
    // chunk and kernel row), or per chunk with every tap for each group of the wide side
    // (thin), or under an upsampling with at most 8 input channels per chunk and vec4 of
    // outputs with every tap (the same partial sums).
    let pairs = groups_of(s.ci) * groups_of(s.co);
    let chunks = chunks(s, fold);
    let (entry, invocations, groups) = match (thin(s), up_taps(s, fold)) {
        (true, _) => ("backward_params_thin", chunks, groups_of(s.ci.max(s.co))),
        (false, true) => ("backward_params_up", chunks * s.co.div_ceil(4) as u64, 1),
        (false, false) if row_taps(gpu, label, fold) => ("backward_params_row", chunks * 3, pairs),
        (false, false) => ("backward_params_partial", chunks * 9, pairs),
    };
    let [across, down, _] = gpu.grid_of(kernel, invocations, PARTIAL_WG)?;
    let workgroups = [across, down, groups];
    let partial = build_textured(
        gpu,
        Launch {
            shader: Shader::CpuConv2d,
            entry,
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(1, x), (5, dy), (6, act), (8, partials)]
                .into_iter()
                .chain(vec4_view(12, x, s.ci))
                .chain(vec4_view(13, dy, s.co))
                .chain(vec4_view(14, act, s.co))
                .chain(winners(16, fold))
                .collect::<Vec<_>>(),
            constants: &partial_constants,
            workgroups,
            cost: Cost {
                bytes: 4 * (output_len(s, fold) * (1 + relu as u64) + input_len(s, fold) + used),
                flops: 2 * weight_macs(s, fold) + output_len(s, fold) / s.co as u64,
            },
        },
        Vec::new(),
    )?;
    let extra_bias = match (fold, db) {
        (Fold::Insert(_), Some(_)) => s.co as u64,
        _ => 0,
    };
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
            // Under an inserted input, one more invocation per bias (it adds four rows).
            workgroups: gpu.grid_of(reduce_kernel, rows4(s, fold) + extra_bias, PARTIAL_WG)?,
            cost: Cost {
                bytes: 4 * (used + s.weight_len() + s.co as u64),
                flops: used,
            },
        },
    )?;
    Ok(vec![partial, reduce])
}
