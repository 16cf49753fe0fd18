//! Launchers for `shaders/conv2d.wgsl`: k x k (k = 1, 3, 5 or 7) stride-1 convolution, NHWC,
//! Keras kernel layout, any channel counts (an invocation keeps [`group`] channels in
//! registers; a side with more runs one invocation per group of them).
//!
//! On the CPU kernel set (see `gpu::KernelSet`) the shapes `shaders/cpu/conv2d/` is
//! written for (`cpu::conv2d::takes`: 3x3, at most 32 channels a side) run its kernels;
//! every other shape runs this file's kernels on either set. The arguments and results are
//! the same.
use super::{build, cpu, expect_len, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, KernelSet, Tensor};
use crate::shapes::{lands_inside, AdamConfig, Conv2dShape, Padding, PoolShape, StrideShape};
use crate::{Error, Result};

/// Channels one invocation keeps in registers, four vec4: the shader's WIDE_GROUP. A side
/// with more channels (output channels for the forward and the weight gradient, input
/// channels for the input gradient) runs one invocation per group, the group in the
/// dispatch's z.
pub const WIDE_GROUP: u32 = 16;
/// The narrow variant's group (`--folds narrow`), one vec4: the shader's NARROW_GROUP.
pub const NARROW_GROUP: u32 = 4;

/// The channels per invocation of layer `layer`'s GPU-set convolutions on `gpu` (the shader's
/// GROUP override): [`NARROW_GROUP`] under `--folds narrow` (or where the start-up timing
/// chose it for the layer), 4x the invocations, each with a quarter of the loads and
/// registers (the small layers' grids fill more of a GPU), and every sum in the same order,
/// so the same bits; [`WIDE_GROUP`] otherwise.
pub fn group(gpu: &Gpu, layer: &str) -> u32 {
    match gpu.folds_at(layer).narrow {
        true => NARROW_GROUP,
        false => WIDE_GROUP,
    }
}
/// Whether layer `layer`'s forward pass on `gpu` loads its input channels four at a time, one
/// 16-byte load per tap and four channels (`--folds vec4`, where the input channels are a
/// multiple of 4): the same multiply-adds in the same order, so the same bits. The same
/// variant loads the kernel's output channels four at a time where they are a multiple of 4
/// (and skips the loads of a last partial vec4's missing lanes), whatever the input channels.
pub fn forward_vec4(gpu: &Gpu, layer: &str, s: &Conv2dShape) -> bool {
    vec4_loads(gpu, layer) && s.ci.is_multiple_of(4)
}

/// The input gradient's `wt4` binding, where the vec4 variant reads the kernel as vec4s (CO a
/// multiple of 4, or 1 with CI a multiple of 4: then it holds at least one); elsewhere the
/// specialised code does not use it, and a small kernel need not hold a whole vec4.
fn input_gradient_w4<'t>(s: &Conv2dShape, w: &'t Tensor) -> Option<(u32, &'t Tensor)> {
    let reads = s.co.is_multiple_of(4) || (s.co == 1 && s.ci.is_multiple_of(4));
    reads.then_some((16, w))
}

/// Whether layer `layer`'s kernels on `gpu` take the vec4 variant's other loads (`--folds
/// vec4`, the shader's W4): the kernel as one 16-byte load per four output channels where
/// they are a multiple of 4 (the forward pass's rows; the input gradient's 4x4 blocks,
/// transposed in registers), or per four input channels where there is one output channel
/// (the input gradient); where the output channels are not a multiple of 4, no kernel or
/// upstream-gradient loads (forward pass, weight gradient) for the lanes past the last
/// channel, whose sums are never stored; and, where the input channels are a multiple of 4,
/// four kernel rows per invocation in the tiled weight-gradient partials. The same sums in
/// the same order: the same bits.
pub fn vec4_loads(gpu: &Gpu, layer: &str) -> bool {
    gpu.folds_at(layer).vec4
}

/// Whether layer `layer`'s kernels on `gpu` spread a folded 2x2 window over four invocations
/// (`--folds quads`, the shader's QUADS): the pooled forward pass one per window pixel, the
/// input gradient of an upsampled input one per pixel of each 2x2 block, meeting in workgroup
/// memory, where each of the four combines one channel register in the one-invocation order
/// (the same bits). 4x the invocations, each a quarter of the chain.
pub fn quads(gpu: &Gpu, layer: &str) -> bool {
    gpu.folds_at(layer).quads
}

/// Invocations a window's worth of work takes: 4 under [`quads`] where `folded` (the layer
/// folds the 2x2 window the variant spreads), else 1.
fn per_window(gpu: &Gpu, layer: &str, folded: bool) -> u64 {
    match quads(gpu, layer) && folded {
        true => 4,
        false => 1,
    }
}

/// Output pixels per partial sum of the weight gradient for small kernels (the shader's CHUNK
/// override; `chunk` lengthens it for large ones).
pub const CHUNK: u64 = 16;
/// The most partial sums per output pixel the weight gradient leaves in its scratch: a chunk
/// holds one per weight and bias, so kernels with more than CHUNK times this many sum longer
/// chunks. Every layer of the seed models has at most 1168 (the 16x16x8 -> 16 'valid' one),
/// so their chunks stay CHUNK long.
const PARTIALS_PER_PIXEL: u64 = 128;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub n: u32,
    pub relu: u32,
    pub chunks: u32,
    /// [`backward_pair`]'s workgroups per z-layer of each part.
    pub part_per_z: u32,
    pub input_per_z: u32,
    /// [`forward`] under a [`Gathered`] input: the batch's first entry of the order.
    pub offset: u32,
    pub _p: [u32; 2],
    /// [`backward_params_reduce_adam`] only: its items, the loss it finishes (elements,
    /// partial sums, slot), and Adam's step (as [`super::adam::params`] gives them).
    pub items: u32,
    pub loss_total: u32,
    pub loss_partials: u32,
    pub loss_slot: u32,
    pub rate: super::adam::Rate,
}

fn params(s: &Conv2dShape, relu: bool) -> Params {
    Params {
        n: s.n,
        relu: relu as u32,
        chunks: chunks(s) as u32,
        ..bytemuck::Zeroable::zeroed()
    }
}

/// How a convolution reads its input `x` (and so what its input gradient `dx` is of).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Input {
    /// `x` is the layer's input, `s.h` x `s.w`.
    #[default]
    Direct,
    /// `x` is half the height and width and the layer reads its nearest-neighbour 2x
    /// upsample: a Keras `UpSampling2D(2)` in front of the layer, folded into its loads (no
    /// dispatch for the upsample either way, and its 4x copy is never written). `dx` is the
    /// half-size tensor's gradient: each pixel sums its 2x2 block, as `upsample::backward`
    /// does (on the GPU set in the same order, so the same bits). The CPU set's own kernels
    /// where `cpu::conv2d::takes_upsampled` says so and no pool is folded too, the GPU
    /// set's elsewhere.
    Upsampled2x,
    /// `x` is the small tensor of a zero insertion the layer reads (a Keras
    /// `Conv2DTranspose` with strides 2: `stride.insert` in front of the layer, folded into
    /// its loads): the layer's `s.h` x `s.w` input holds x's pixel (y, x) at
    /// (2y + oy, 2x + ox) and zeros elsewhere, and no kernel reads or sums those zeros. `dx`
    /// is x's gradient. The CPU set's kernels only, for the shapes
    /// `cpu::conv2d::takes_inserted` names ([`folds_insert`]).
    Inserted(Strided),
}

/// The small side of a stride-2 index map folded into a convolution ([`Input::Inserted`],
/// [`Folds::take`]): its height and width, and where its first pixel sits on the big side
/// (the layer's input or output), every other row and column from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strided {
    pub h: u32,
    pub w: u32,
    pub oy: u32,
    pub ox: u32,
}

impl Strided {
    /// The small side of a strided layer's index map.
    pub fn small_side_of(st: &StrideShape) -> Self {
        Strided {
            h: st.h,
            w: st.w,
            oy: st.oy,
            ox: st.ox,
        }
    }

    /// Fails unless the small side lands inside a big side of `big_h` x `big_w`.
    fn check(&self, what: &str, big_h: u32, big_w: u32) -> Result<()> {
        if lands_inside(self.h, self.oy, big_h) && lands_inside(self.w, self.ox, big_w) {
            return Ok(());
        }
        Err(Error::Shape {
            op: "conv2d",
            detail: format!(
                "{what} of {}x{} at offset ({}, {}) must lie inside the layer's {big_h}x{big_w}",
                self.h, self.w, self.oy, self.ox
            ),
        })
    }
}

impl Input {
    /// The factor the shader's UP constant takes.
    fn factor(self) -> u32 {
        match self {
            Input::Direct | Input::Inserted(_) => 1,
            Input::Upsampled2x => 2,
        }
    }

    /// Elements of `x` (and `dx`) for shape `s`.
    pub fn len(self, s: &Conv2dShape) -> u64 {
        match self {
            Input::Inserted(i) => s.n as u64 * i.h as u64 * i.w as u64 * s.ci as u64,
            _ => s.input_len() / (self.factor() as u64 * self.factor() as u64),
        }
    }

    /// An upsampled input has an even height and width, and an inserted one lands inside the
    /// layer's input: the shape error otherwise.
    fn check(self, s: &Conv2dShape) -> Result<()> {
        if let Input::Inserted(i) = self {
            i.check("an inserted input", s.h, s.w)?;
        }
        if self == Input::Upsampled2x && (!s.h.is_multiple_of(2) || !s.w.is_multiple_of(2)) {
            return Err(Error::Shape {
                op: "conv2d",
                detail: format!(
                    "an input read as a 2x upsample must have an even height and width, not {}x{}",
                    s.h, s.w
                ),
            });
        }
        Ok(())
    }
}

/// A Keras `MaxPooling2D(2)` after the layer, folded into it: the forward writes the window
/// maxima into `y` and each one's place in its window (0..3, as `pool::forward` writes it)
/// into `winner`; the backward kernels take `dy` and the saved output (the ReLU mask's) as
/// the pooled tensor's and route each window's gradient to its winner, as `pool::backward`
/// does. The layer's full-size output and its gradient are never written.
#[derive(Clone, Copy)]
pub struct Pooled<'a> {
    pub padding: Padding,
    pub winner: &'a Tensor,
}

/// The layers around a convolution that its own kernels take over, so that they run no
/// dispatch of their own (two fewer per layer folded, per training step). Training folds them
/// as `--folds` says, and on the CPU set also where its own kernels take them (`network`);
/// the default folds nothing. On the GPU set a fold changes no bit of any
/// result; on the CPU set the sums are the same to float rounding.
#[derive(Clone, Copy, Default)]
pub struct Folds<'a> {
    /// How the layer reads its input.
    pub input: Input,
    /// A max pool after the layer.
    pub pool: Option<Pooled<'a>>,
    /// Every other output kept, the rest never computed (a Keras `Conv2D` with strides 2:
    /// `stride.take` after the layer, folded into it): `y` and `dy` are the kept outputs'.
    /// The CPU set's kernels only, for the shapes `cpu::conv2d::takes_taken` names
    /// ([`folds_take`]).
    pub take: Option<Strided>,
    /// The batch gathered by the forward pass itself ([`forward`] only).
    pub gather: Option<Gathered<'a>>,
}

/// A model's first convolution reading its batch straight from the split (`--folds gather`,
/// inputs that are the targets): pixel i of image `order[offset + b]` of `images` (u8, four
/// to a word) / 255, as `batch::gather` makes it (the same bits), the offset set per step
/// ([`set_gather_offset`]). The forward pass writes that batch into `batch` (the layer's `x`,
/// for the loss and the weight gradient), so that no gather dispatch runs before it. The GPU
/// set's kernel, for a layer whose outputs cover every input pixel once ([`gathers`]).
#[derive(Clone, Copy)]
pub struct Gathered<'a> {
    pub images: &'a Tensor,
    pub order: &'a Tensor,
    pub batch: &'a Tensor,
}

/// Whether a convolution of shape `s` with `folds` can gather its own batch ([`Gathered`]):
/// it reads its input directly, 'same' padded (every input pixel is the centre of one output
/// pixel), and a pool folded after it covers every output ('same', or even sides), so that
/// its invocations write every pixel of the batch once.
pub fn gathers(s: &Conv2dShape, folds: &Folds<'_>) -> bool {
    let (ho, wo) = s.out_hw();
    let pool_covers = folds.pool.is_none_or(|p| {
        p.padding == Padding::Same || (ho.is_multiple_of(2) && wo.is_multiple_of(2))
    });
    folds.input == Input::Direct && folds.take.is_none() && (ho, wo) == (s.h, s.w) && pool_covers
}

/// Sets the batch's first entry of the order that a gathering [`forward`] reads, in uniform
/// slot `slot` (sent by [`Dispatch::flush`]).
pub fn set_gather_offset(d: &Dispatch, slot: usize, offset: u32) {
    debug_assert!(d.source.entry.starts_with("forward"));
    let p = Params {
        offset,
        ..d.built_params::<Params>()
    };
    d.stage(slot, &p);
}

impl Folds<'_> {
    /// The shape of the folded pool, if any.
    fn pool_shape(&self, s: &Conv2dShape) -> Option<PoolShape> {
        let (h, w) = s.out_hw();
        self.pool.map(|p| PoolShape {
            n: s.n,
            h,
            w,
            c: s.co,
            padding: p.padding,
        })
    }

    /// Elements of `y` (and `dy`): the pooled output's with a pool folded in, the kept
    /// outputs' with a take.
    pub fn output_len(&self, s: &Conv2dShape) -> u64 {
        if let Some(t) = self.take {
            return s.n as u64 * t.h as u64 * t.w as u64 * s.co as u64;
        }
        self.pool_shape(s)
            .map_or_else(|| s.output_len(), |p| p.output_len())
    }

    fn check(&self, s: &Conv2dShape, set: KernelSet) -> Result<()> {
        self.input.check(s)?;
        if let Some(t) = self.take {
            let (ho, wo) = s.out_hw();
            t.check("a kept output", ho, wo)?;
        }
        expect_kernels_for(set, s, self)?;
        if let (Some(pool), Some(p)) = (self.pool_shape(s), self.pool) {
            pool.check()?;
            expect_len("conv2d", "winner", p.winner, pool.output_len())?;
        }
        Ok(())
    }

    /// The backward kernels' winner binding (13): a folded pool's winners, or without one
    /// `dy` aliased (the shader reads it only with POOL = 2, but every kernel that reads the
    /// upstream gradient binds it).
    fn winner_in<'t>(&self, dy: &'t Tensor) -> (u32, &'t Tensor)
    where
        Self: 't,
    {
        (13, self.pool.map_or(dy, |p| p.winner))
    }
}

/// Whether a layer of shape `s` on `gpu` folds a 2x upsampling in front of it into its loads
/// ([`Input::Upsampled2x`]), for an even height and width: as `--folds` says (`gpu::FoldSet`),
/// and always on the CPU set where its own kernels take the layer that way (part of how that
/// set is written, as its strided maps are).
pub fn folds_upsample(gpu: &Gpu, s: &Conv2dShape) -> bool {
    let cpu_set = gpu.kernels == KernelSet::Cpu && cpu::conv2d::takes_upsampled(s);
    (gpu.folds.upsample || cpu_set) && Input::Upsampled2x.check(s).is_ok()
}

/// Whether a layer of shape `s` on `gpu` reads a zero insertion in front of it through its
/// loads ([`Input::Inserted`]): always on the CPU set, for the shapes its kernels take that
/// way; never on the GPU set, whose kernels have no such input.
pub fn folds_insert(gpu: &Gpu, s: &Conv2dShape, i: &Strided) -> bool {
    gpu.kernels == KernelSet::Cpu && cpu::conv2d::takes_inserted(s, i)
}

/// Whether a layer of shape `s` on `gpu` keeps every other output in its own kernels
/// ([`Folds::take`]): always on the CPU set, for the shapes its kernels take that way; never
/// on the GPU set, whose kernels compute every output.
pub fn folds_take(gpu: &Gpu, s: &Conv2dShape, t: &Strided) -> bool {
    gpu.kernels == KernelSet::Cpu && cpu::conv2d::takes_taken(s, t)
}

/// Whether the CPU set's own kernels take a 2x2 max pool folded after a layer of shape `s`
/// reading its input directly (`cpu::conv2d::takes_pooled`); the GPU set's kernels run the
/// fold otherwise, on either set.
pub fn cpu_kernels_take_pool(s: &Conv2dShape) -> bool {
    cpu::conv2d::takes_pooled(s)
}

/// Whether a layer of shape `s` reading `input` on `gpu` folds a 2x2 max pool after it
/// ([`Pooled`]): as `--folds` says, and on the CPU set where its own kernels take the pool
/// (`cpu::conv2d::takes_pooled`, a direct input: they fold one layer at a time) and the
/// layer has one input channel. There the pool's two passes over the full-size output cost
/// more than the fold's winner loads; with more input channels the routed loads at each of
/// the input gradient's 9 taps cost more than the passes they save (BENCHMARKS.md, "Pools
/// inside the CPU set's convolutions"), and `--folds pool` still folds them there.
pub fn folds_pool(gpu: &Gpu, s: &Conv2dShape, input: Input) -> bool {
    let cpu_set = gpu.kernels == KernelSet::Cpu && cpu::conv2d::takes_pooled(s) && s.ci == 1;
    gpu.folds.pool || (cpu_set && input == Input::Direct)
}

/// Chunks one workgroup of the weight-gradient partials' tiled variant takes: the shader's
/// TILE_CHUNKS (its TILE_CHUNKS * CHUNK pixels are one per invocation).
pub const TILE_CHUNKS: u64 = 4;

/// Whether a layer's weight-gradient partials run the tiled variant (`--folds tiles`): a
/// workgroup stages its pixels' upstream gradient (masked, and routed through a folded pool)
/// in workgroup memory once, and its invocations sum every kernel row of them from there;
/// the same sums in the same order, so the same bits. For chunks of [`CHUNK`] pixels (every
/// layer of the seed models), whose tile is one pixel per invocation.
pub fn tiles(gpu: &Gpu, layer: &str, s: &Conv2dShape) -> bool {
    gpu.folds_at(layer).tiles && chunk(s) == CHUNK
}

// A tile is one pixel per invocation when staging.
const _: () = assert!(TILE_CHUNKS * CHUNK == TILED);

/// The weight-gradient partials' grid in one channel group: an invocation per (row, chunk),
/// or with `tile` a workgroup per TILE_CHUNKS chunks.
fn partial_grid(
    gpu: &Gpu,
    kernel: &str,
    s: &Conv2dShape,
    rows: u64,
    tile: bool,
) -> Result<[u32; 3]> {
    match tile {
        true => gpu.groups(kernel, chunks(s).div_ceil(TILE_CHUNKS)),
        false => gpu.grid_of(kernel, chunks(s) * rows, TILED),
    }
}

/// Whether `s` runs the CPU set's kernels under kernel set `set`: on the CPU set, for the
/// shapes they are written for, with at most one of the folds they take. Everything else
/// runs the GPU set's.
fn cpu_kernels(set: KernelSet, s: &Conv2dShape, folds: &Folds<'_>) -> bool {
    set == KernelSet::Cpu
        && folds.gather.is_none()
        && match (folds.input, folds.take, folds.pool.is_some()) {
            (Input::Direct, None, false) => cpu::conv2d::takes(s),
            (Input::Inserted(i), None, false) => cpu::conv2d::takes_inserted(s, &i),
            (Input::Upsampled2x, None, false) => cpu::conv2d::takes_upsampled(s),
            (Input::Direct, Some(t), false) => cpu::conv2d::takes_taken(s, &t),
            (Input::Direct, None, true) => cpu::conv2d::takes_pooled(s),
            _ => false,
        }
}

/// The layer beside the convolution that the CPU set's kernels fold, if any (one at most:
/// [`cpu_kernels`]).
fn cpu_fold<'a>(s: &Conv2dShape, folds: &Folds<'a>) -> cpu::conv2d::Fold<'a> {
    let pooled = folds.pool_shape(s).map(|p| p.out_hw());
    match (folds.input, folds.take, pooled, folds.pool) {
        (Input::Inserted(i), ..) => cpu::conv2d::Fold::Insert(i),
        (Input::Upsampled2x, ..) => cpu::conv2d::Fold::Upsample,
        (_, Some(t), ..) => cpu::conv2d::Fold::Take(t),
        (_, _, Some((h, w)), Some(p)) => cpu::conv2d::Fold::Pool {
            h,
            w,
            winner: p.winner,
        },
        _ => cpu::conv2d::Fold::None,
    }
}

/// Fails where `folds` read an inserted input or keep every other output and the CPU set's
/// kernels do not take them: no other kernel does either.
fn expect_kernels_for(set: KernelSet, s: &Conv2dShape, folds: &Folds<'_>) -> Result<()> {
    let strided = matches!(folds.input, Input::Inserted(_)) || folds.take.is_some();
    if !strided || cpu_kernels(set, s, folds) {
        return Ok(());
    }
    Err(Error::Shape {
        op: "conv2d",
        detail: format!(
            "an inserted input or kept outputs ({:?}, {:?}) run on the cpu kernel set's \
             kernels only, one of them at a time and with no pool, for 3x3 kernels with at \
             most {} channels a side and at least 4 outputs (an inserted input also with at \
             least 2 input channels, 'same' padding and an output twice its size), not {s:?} \
             on the {set} set",
            folds.input,
            folds.take,
            cpu::conv2d::MAXC
        ),
    })
}

/// The pipeline's shape constants: everything but the batch size; `group` channels per
/// invocation ([`group`]; kernels without channel groups take [`WIDE_GROUP`], so that the
/// narrow variant shares their pipelines).
fn constants(s: &Conv2dShape, folds: &Folds<'_>, group: u32) -> [(&'static str, f64); 16] {
    constants_with(s, folds, false, false, group, false, false)
}

/// `tile`: the weight-gradient partials' tiled variant ([`tiles`]); `w4`: the vec4 variant's
/// kernel and upstream-gradient loads ([`vec4_loads`]; kernels that load neither take false,
/// so that they share pipelines); `quads`: a folded window over four invocations ([`quads`],
/// true only for the kernels whose window is folded).
fn constants_with(
    s: &Conv2dShape,
    folds: &Folds<'_>,
    with_bias: bool,
    tile: bool,
    group: u32,
    w4: bool,
    quads: bool,
) -> [(&'static str, f64); 16] {
    let (ph, pw) = folds.pool_shape(s).map_or((1, 1), |p| p.out_hw());
    [
        ("GROUP", group as f64),
        ("TILE", tile as u32 as f64),
        ("W4", w4 as u32 as f64),
        ("QUADS", quads as u32 as f64),
        ("UP", folds.input.factor() as f64),
        ("POOL", if folds.pool.is_some() { 2.0 } else { 1.0 }),
        ("PH", ph as f64),
        ("PW", pw as f64),
        ("WITH_BIAS", with_bias as u32 as f64),
        ("KS", s.k as f64),
        ("CI", s.ci as f64),
        ("CO", s.co as f64),
        ("H", s.h as f64),
        ("W", s.w as f64),
        ("PAD", s.pad() as f64),
        ("CHUNK", chunk(s) as f64),
    ]
}

/// Output pixels one weight-gradient partial sums: [`CHUNK`], longer (a power of two) when
/// the kernel and bias hold more than CHUNK * PARTIALS_PER_PIXEL values, so that the partials
/// stay at most PARTIALS_PER_PIXEL per output pixel (a 3x3 32 -> 32 layer at batch 256 on
/// 28x28 would otherwise need 464 MB of them), but never longer than the batch's output
/// pixels rounded up to a power of two. It grows with the batch size and the partials'
/// length never shrinks as it does, so a scratch sized for the largest batch fits every
/// smaller one.
fn chunk(s: &Conv2dShape) -> u64 {
    let per_chunk = s.weight_len() + s.co as u64;
    let for_weights = per_chunk.div_ceil(PARTIALS_PER_PIXEL).next_power_of_two();
    let pixels = (s.output_len() / s.co as u64).next_power_of_two();
    for_weights.min(pixels).max(CHUNK)
}

fn chunks(s: &Conv2dShape) -> u64 {
    (s.output_len() / s.co as u64).div_ceil(chunk(s))
}

/// Length of the scratch buffer [`backward_weight`] (and [`backward_params`]) needs for its
/// partial sums under kernel set `set`, with `folds`.
pub fn partials_len(set: KernelSet, s: &Conv2dShape, folds: &Folds<'_>) -> u64 {
    match cpu_kernels(set, s, folds) {
        true => cpu::conv2d::partials_len(s, &cpu_fold(s, folds)),
        false => chunks(s) * (s.weight_len() + s.co as u64),
    }
}

/// Up to this many chunks the weight gradient's reduce adds each weight's chunks in one
/// invocation; with more, a workgroup per weight shares them (strided, then a tree). The seed
/// models at batch 256 have at least 96 chunks per layer (the 4x4 layer, last batch of 96).
pub const SERIAL_REDUCE: u64 = 64;

/// Workgroup size of the register-tiled kernels: the shader's TILED_WG.
pub const TILED: u64 = 64;

/// Groups of [`group`] channels a side of `channels` splits into on `gpu`, in layer `layer`.
fn groups_of(gpu: &Gpu, layer: &str, channels: u32) -> u32 {
    channels.div_ceil(group(gpu, layer))
}

/// The grid of one channel group (`grid`, folded into x and y) repeated in z for each group
/// of [`group`] channels of a side of `channels`, in layer `layer`.
fn per_group(
    gpu: &Gpu,
    layer: &str,
    what: &str,
    grid: [u32; 3],
    channels: u32,
) -> Result<[u32; 3]> {
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    let group = group(gpu, layer);
    let groups = groups_of(gpu, layer, channels);
    if groups > max {
        return Err(Error::Limit {
            what: format!("{what} (a z-layer of workgroups per {group} channels)"),
            limit: "max_compute_workgroups_per_dimension",
            needed: groups as u64,
            allowed: max as u64,
            adapter: gpu.name(),
            fix: format!("use at most {} channels", max as u64 * group as u64),
        });
    }
    Ok([grid[0], grid[1], groups])
}

/// `y = conv(x, w) + b`, then ReLU when `relu` (then the max pool, when folded in).
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    relu: bool,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    // The only shapes refused: a kernel side other than 1, 3, 5, 7, and empty or too small
    // ones (Conv2dShape::check); any channel counts run.
    s.check()?;
    folds.check(s, gpu.kernels)?;
    expect_len("conv2d", "x", x, folds.input.len(s))?;
    expect_len("conv2d", "kernel", w, s.weight_len())?;
    expect_len("conv2d", "bias", b, s.co as u64)?;
    expect_len("conv2d", "y", y, folds.output_len(s))?;
    if let Some(g) = &folds.gather {
        check_gathered(s, folds, g)?;
    }
    if cpu_kernels(gpu.kernels, s, folds) {
        return cpu::conv2d::forward(gpu, label, s, &cpu_fold(s, folds), relu, x, w, b, y);
    }
    let p = params(s, relu);
    // One invocation per output pixel, or per pooled one (each computing its window).
    let quads = per_window(gpu, label, folds.pool.is_some());
    let pixels = folds.output_len(s) / s.co as u64 * quads;
    let (entry, kernel) = match folds.pool {
        None => ("forward", "conv2d.forward"),
        Some(_) => ("forward_pooled", "conv2d.forward_pooled"),
    };
    // x4 is x as vec4s, and wt4 the kernel: bound only where the variant reads them (wt4
    // where CO is a multiple of 4), since a small tensor need not hold a whole vec4.
    // A gathered input is read from the split's pixels: x is the batch it writes (binding
    // 24), never read.
    let x4 = forward_vec4(gpu, label, s) && folds.gather.is_none();
    let mut bindings = match &folds.gather {
        None => vec![(1, x)],
        Some(g) => vec![(22, g.images), (23, g.order), (24, g.batch)],
    };
    bindings.extend([(2, w), (3, b), (4, y)]);
    bindings.extend(x4.then_some((15, x)));
    bindings.extend(s.co.is_multiple_of(4).then_some((16, w)));
    bindings.extend(folds.pool.map(|p| (12, p.winner)));
    let w4 = vec4_loads(gpu, label);
    let group = group(gpu, label);
    let mut constants = constants_with(s, folds, false, false, group, w4, quads > 1).to_vec();
    constants.push(("X4", x4 as u32 as f64));
    constants.push(("GATHER", folds.gather.is_some() as u32 as f64));
    Ok(vec![build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry,
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &constants,
            workgroups: per_group(
                gpu,
                label,
                kernel,
                gpu.grid_of(kernel, pixels, TILED)?,
                s.co,
            )?,
            cost: Cost {
                // A gathered input: a byte of pixel and the batch's f32 written, where an f32
                // was read.
                bytes: 4
                    * (folds.input.len(s)
                        + s.weight_len()
                        + s.co as u64
                        + folds.output_len(s) * (1 + folds.pool.is_some() as u64))
                    + folds.gather.is_some() as u64 * (folds.input.len(s) + 4 * s.n as u64),
                flops: 2 * s.macs(),
            },
        },
    )?])
}

/// Fails unless a convolution of shape `s` with `folds` can gather its batch ([`gathers`]),
/// `g.batch` holds that batch, and `g.images` and `g.order` hold a split of images of its
/// size with room for one batch.
fn check_gathered(s: &Conv2dShape, folds: &Folds<'_>, g: &Gathered<'_>) -> Result<()> {
    if !gathers(s, folds) {
        return Err(Error::Shape {
            op: "conv2d",
            detail: format!(
                "a convolution gathers its own batch only where its outputs cover every \
                 input pixel once: 'same' padding, a direct input, and no pool that drops an \
                 odd row or column; not {s:?} with {:?}",
                folds.input
            ),
        });
    }
    let pixels = s.h as u64 * s.w as u64 * s.ci as u64;
    super::batch::check_gathering("conv2d", g.images, g.order, s.n as u64, pixels, g.batch)
}

/// The upstream gradient, masked by ReLU' from the layer's saved output when it had ReLU.
pub struct GradOut<'a> {
    pub dy: &'a Tensor,
    pub relu_output: Option<&'a Tensor>,
}

impl<'a> GradOut<'a> {
    /// (dy, the tensor the kernel reads the ReLU mask from, whether to mask): without ReLU the
    /// mask binding aliases dy and is never read.
    pub(crate) fn bindings(&self) -> (&'a Tensor, &'a Tensor, bool) {
        match self.relu_output {
            Some(a) => (self.dy, a, true),
            None => (self.dy, self.dy, false),
        }
    }
    /// Fails unless dy (and the saved output, when masking) hold `output_len` elements.
    pub(crate) fn check_len(&self, op: &'static str, output_len: u64) -> Result<()> {
        expect_len(op, "dy", self.dy, output_len)?;
        if let Some(a) = self.relu_output {
            expect_len(op, "relu output", a, output_len)?;
        }
        Ok(())
    }

    fn check(&self, s: &Conv2dShape, folds: &Folds<'_>) -> Result<()> {
        self.check_len("conv2d", folds.output_len(s))
    }
}

/// `dx`: the gradient w.r.t. the layer's input (one dispatch, or on the CPU set one per group
/// of output channels).
pub fn backward_input(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    check_input_gradient(gpu, s, folds, g, w, dx)?;
    if cpu_kernels(gpu.kernels, s, folds) {
        let fold = cpu_fold(s, folds);
        return cpu::conv2d::backward_input(gpu, label, s, &fold, g, w, dx, None);
    }
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    let quads = per_window(gpu, label, folds.input == Input::Upsampled2x);
    let pixels = folds.input.len(s) / s.ci as u64 * quads;
    let mut bindings = vec![(2, w), (5, dy), (6, act), (7, dx), folds.winner_in(dy)];
    bindings.extend(input_gradient_w4(s, w));
    let w4 = vec4_loads(gpu, label);
    Ok(vec![build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_input",
            kernel: "conv2d.backward_input",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &constants_with(s, folds, false, false, group(gpu, label), w4, quads > 1),
            workgroups: per_group(
                gpu,
                label,
                "conv2d.backward_input",
                gpu.grid_of("conv2d.backward_input", pixels, TILED)?,
                s.ci,
            )?,
            cost: Cost {
                bytes: 4
                    * (folds.output_len(s) * (1 + relu as u64)
                        + s.weight_len()
                        + folds.input.len(s)),
                flops: 2 * s.macs(),
            },
        },
    )?])
}

/// The shape, folds and tensors an input gradient takes, checked.
fn check_input_gradient(
    gpu: &Gpu,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    s.check()?;
    folds.check(s, gpu.kernels)?;
    g.check(s, folds)?;
    expect_len("conv2d", "kernel", w, s.weight_len())?;
    expect_len("conv2d", "dx", dx, folds.input.len(s))
}

/// Whether [`backward_input_masked`] takes layer `s` reading and writing as `folds` say: on
/// the CPU set's own kernels, which mask dx as they store it.
pub fn masks_input_gradient(set: KernelSet, s: &Conv2dShape, folds: &Folds<'_>) -> bool {
    cpu_kernels(set, s, folds)
}

/// [`backward_input`] with dx masked by the ReLU output `relu_output` of the layer below as it
/// is stored: 0 where that output is not positive, as `activation::relu_backward` would
/// make it (the same bits), so the layer below reads its gradient masked with no pass of its
/// own. Only where [`masks_input_gradient`] holds.
// One argument per tensor the kernel binds: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_input_masked(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    w: &Tensor,
    dx: &Tensor,
    relu_output: &Tensor,
) -> Result<Vec<Dispatch>> {
    check_input_gradient(gpu, s, folds, g, w, dx)?;
    expect_len("conv2d", "relu_output", relu_output, folds.input.len(s))?;
    if !masks_input_gradient(gpu.kernels, s, folds) {
        return Err(Error::Shape {
            op: "conv2d",
            detail: "a masked input gradient runs on the CPU kernel set's own kernels, which \
                     this layer does not"
                .into(),
        });
    }
    let fold = cpu_fold(s, folds);
    cpu::conv2d::backward_input(gpu, label, s, &fold, g, w, dx, Some(relu_output))
}

/// `dw`: the gradient w.r.t. the kernel, summed over the batch in two deterministic stages:
/// partial sums over chunks of output pixels into `partials` (`partials_len(s)` long), then
/// each weight sums its chunks in order.
#[allow(clippy::too_many_arguments)]
pub fn backward_weight(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
) -> Result<Vec<Dispatch>> {
    split_k(
        gpu,
        label,
        s,
        folds,
        g,
        x,
        partials,
        false,
        Some((dw, None)),
    )
}

/// [`backward_weight`] and [`backward_bias`] in one pass over dy: the bias is one more row of
/// the split sum. What training runs.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    expect_len("conv2d", "db", db, s.co as u64)?;
    split_k(
        gpu,
        label,
        s,
        folds,
        g,
        x,
        partials,
        true,
        Some((dw, Some(db))),
    )
}

/// The profile's names of the weight gradient's two passes, with or without the bias row
/// (both kernel sets).
pub(crate) fn weight_gradient_kernels(with_bias: bool) -> (&'static str, &'static str) {
    match with_bias {
        true => (
            "conv2d.backward_params_partial",
            "conv2d.backward_params_reduce",
        ),
        false => (
            "conv2d.backward_weight_partial",
            "conv2d.backward_weight_reduce",
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn split_k(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
    with_bias: bool,
    reduce: Option<(&Tensor, Option<&Tensor>)>,
) -> Result<Vec<Dispatch>> {
    s.check()?;
    folds.check(s, gpu.kernels)?;
    g.check(s, folds)?;
    expect_len("conv2d", "x", x, folds.input.len(s))?;
    if let Some((dw, _)) = reduce {
        expect_len("conv2d", "dw", dw, s.weight_len())?;
    }
    expect_len(
        "conv2d",
        "weight-gradient partials",
        partials,
        partials_len(gpu.kernels, s, folds),
    )?;
    if let (true, Some((dw, db))) = (cpu_kernels(gpu.kernels, s, folds), reduce) {
        let fold = cpu_fold(s, folds);
        return cpu::conv2d::backward_params(gpu, label, s, &fold, g, x, partials, dw, db);
    }
    if matches!(folds.input, Input::Inserted(_)) || folds.take.is_some() {
        return Err(Error::Shape {
            op: "conv2d",
            detail: "the weight gradient of an inserted input or kept outputs reduces its own \
                     partial sums: it has no partials-only form"
                .into(),
        });
    }
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    let rows = s.taps() * s.ci as u64 + with_bias as u64;
    let used = chunks(s) * rows * s.co as u64;
    let partials = partials.view(0, used);
    let tile = tiles(gpu, label, s);
    let w4 = vec4_loads(gpu, label);
    let constants = constants_with(s, folds, with_bias, tile, group(gpu, label), w4, false);
    let bindings = [
        (1, x),
        (5, dy),
        (6, act),
        (8, &partials),
        folds.winner_in(dy),
    ];
    let (kernel, _) = weight_gradient_kernels(with_bias);
    let partial = build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_weight_partial",
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &constants,
            workgroups: per_group(
                gpu,
                label,
                kernel,
                partial_grid(gpu, kernel, s, rows, tile)?,
                s.co,
            )?,
            cost: Cost {
                bytes: 4 * (folds.output_len(s) * (1 + relu as u64) + folds.input.len(s) + used),
                flops: 2 * s.macs() + 2 * s.output_len() * with_bias as u64,
            },
        },
    )?;
    let Some((dw, db)) = reduce else {
        return Ok(vec![partial]);
    };
    let reduce = reduce_dispatch(gpu, label, s, folds, with_bias, &partials, dw, db)?;
    Ok(vec![partial, reduce])
}

/// Stage 2 of one layer's weight gradient: each kernel (and with the bias row, bias) gradient
/// sums its chunks from `partials` (the used part).
#[allow(clippy::too_many_arguments)]
fn reduce_dispatch(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    with_bias: bool,
    partials: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Dispatch> {
    let p = params(s, false);
    let rows = s.taps() * s.ci as u64 + with_bias as u64;
    let used = partials.len;
    let constants = constants_with(s, folds, with_bias, false, WIDE_GROUP, false, false);
    let (_, reduce_kernel) = weight_gradient_kernels(with_bias);
    // The reduce binds db only when it writes it: alias dw otherwise, as the kernel never
    // reaches that branch.
    let db = db.unwrap_or(dw);
    let serial = chunks(s) <= SERIAL_REDUCE;
    build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: match serial {
                true => "backward_weight_reduce_serial",
                false => "backward_weight_reduce",
            },
            kernel: reduce_kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[(9, partials), (10, dw), (11, db)],
            constants: &constants,
            workgroups: match serial {
                true => gpu.grid(reduce_kernel, rows * s.co as u64)?,
                false => gpu.groups(reduce_kernel, rows * s.co as u64)?,
            },
            cost: Cost {
                bytes: 4 * (used + rows * s.co as u64),
                flops: used,
            },
        },
    )
}

/// [`backward_params_partial`] and [`backward_input`] as one dispatch (`--folds backward`):
/// the layer's weight-gradient partial sums (with the bias row) into `partials` and its input
/// gradient into `dx`, side by side instead of one after the other, each invocation running
/// the code of the kernel it stands in for (the same bits). Only where [`splits_k`] holds; the
/// partials then need [`backward_params_reduce`] or [`backward_params_reduce_all`].
#[allow(clippy::too_many_arguments)]
pub fn backward_pair(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    x: &Tensor,
    w: &Tensor,
    partials: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    folds.check(s, gpu.kernels)?;
    g.check(s, folds)?;
    expect_split_k(gpu, s, folds, "conv2d.backward_pair")?;
    expect_len("conv2d", "x", x, folds.input.len(s))?;
    expect_len("conv2d", "kernel", w, s.weight_len())?;
    expect_len("conv2d", "dx", dx, folds.input.len(s))?;
    expect_len(
        "conv2d",
        "weight-gradient partials",
        partials,
        partials_len(gpu.kernels, s, folds),
    )?;
    let (dy, act, relu) = g.bindings();
    let rows = s.taps() * s.ci as u64 + 1;
    let used = chunks(s) * rows * s.co as u64;
    let partials = partials.view(0, used);
    let per_z = |invocations: u64| invocations.div_ceil(TILED);
    let tile = tiles(gpu, label, s);
    let part_per_z = match tile {
        true => chunks(s).div_ceil(TILE_CHUNKS),
        false => per_z(chunks(s) * rows),
    };
    let quads = per_window(gpu, label, folds.input == Input::Upsampled2x);
    let input_per_z = per_z(folds.input.len(s) / s.ci as u64 * quads);
    let total = part_per_z * groups_of(gpu, label, s.co) as u64
        + input_per_z * groups_of(gpu, label, s.ci) as u64;
    let p = Params {
        part_per_z: u32::try_from(part_per_z).map_err(|_| too_many(gpu, part_per_z))?,
        input_per_z: u32::try_from(input_per_z).map_err(|_| too_many(gpu, input_per_z))?,
        ..params(s, relu)
    };
    let kernel = "conv2d.backward_pair";
    build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_pair",
            kernel,
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &[
                (1, x),
                (2, w),
                (5, dy),
                (6, act),
                (7, dx),
                (8, &partials),
                folds.winner_in(dy),
            ]
            .into_iter()
            .chain(input_gradient_w4(s, w))
            .collect::<Vec<_>>(),
            constants: &constants_with(
                s,
                folds,
                true,
                tile,
                group(gpu, label),
                vec4_loads(gpu, label),
                quads > 1,
            ),
            workgroups: gpu.groups(kernel, total)?,
            cost: Cost {
                bytes: 4
                    * (folds.output_len(s) * (1 + relu as u64)
                        + 2 * folds.input.len(s)
                        + s.weight_len()
                        + used),
                flops: 4 * s.macs() + 2 * s.output_len(),
            },
        },
    )
}

/// A grid too large for a u32 count of workgroups.
fn too_many(gpu: &Gpu, count: u64) -> Error {
    Error::Limit {
        what: "conv2d.backward_pair workgroups".into(),
        limit: "u32 workgroup count",
        needed: count,
        allowed: u32::MAX as u64,
        adapter: gpu.name(),
        fix: "use a smaller --batch-size".into(),
    }
}

/// Stage 2 of one layer's weight and bias gradients, from the partials [`backward_pair`]
/// left in `partials` (the buffer it was given).
pub fn backward_params_reduce(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    partials: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    expect_split_k(gpu, s, folds, "conv2d.backward_params_reduce")?;
    expect_len(
        "conv2d",
        "weight-gradient partials",
        partials,
        partials_len(gpu.kernels, s, folds),
    )?;
    expect_len("conv2d", "dw", dw, s.weight_len())?;
    expect_len("conv2d", "db", db, s.co as u64)?;
    let used = partials.view(0, partials_used(s));
    reduce_dispatch(gpu, label, s, folds, true, &used, dw, Some(db))
}

/// Whether a layer's weight gradient runs the GPU set's two stages (partial sums, then a
/// reduce), so that [`backward_params_partial`] and [`backward_params_reduce_all`] can take
/// it: everywhere but the CPU set's own kernels.
pub fn splits_k(set: KernelSet, s: &Conv2dShape, folds: &Folds<'_>) -> bool {
    !cpu_kernels(set, s, folds)
}

/// Fails unless [`splits_k`] holds: `what` takes the GPU set's two-stage weight gradient,
/// which a layer on the CPU set's own kernels (which reduce their own sums) does not run.
fn expect_split_k(gpu: &Gpu, s: &Conv2dShape, folds: &Folds<'_>, what: &str) -> Result<()> {
    if splits_k(gpu.kernels, s, folds) {
        return Ok(());
    }
    Err(Error::Shape {
        op: "conv2d",
        detail: format!(
            "{what} takes the GPU kernel set's split weight gradient, but this layer runs the \
             CPU kernel set's own kernels, which reduce their own sums"
        ),
    })
}

/// Elements of `partials` that stage 1 of shape `s` writes (from its start), with the bias
/// row: what a layer's share of [`backward_params_reduce_all`] reads.
pub fn partials_used(s: &Conv2dShape) -> u64 {
    chunks(s) * (s.weight_len() + s.co as u64)
}

/// Stage 1 of [`backward_params`] alone: the partial sums of the kernel and bias gradients
/// into `partials` ([`partials_len`] long), for [`backward_params_reduce_all`] to sum with
/// every other layer's in one dispatch. Only where [`splits_k`] holds.
#[allow(clippy::too_many_arguments)]
pub fn backward_params_partial(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    x: &Tensor,
    partials: &Tensor,
) -> Result<Dispatch> {
    expect_split_k(gpu, s, folds, "conv2d.backward_params_partial")?;
    let mut d = split_k(gpu, label, s, folds, g, x, partials, true, None)?;
    d.pop().ok_or_else(|| Error::Shape {
        op: "conv2d",
        detail: "the weight gradient built no dispatch".into(),
    })
}

/// One convolution's part in [`backward_params_reduce_all`]: its shape (at the batch size
/// run), where its partial sums start in the partials buffer, and where its kernel and bias
/// gradients go in the gradient buffer (`db`: none for a layer without a bias).
#[derive(Clone, Copy, Debug)]
pub struct ReduceShare {
    pub s: Conv2dShape,
    pub partials: u64,
    pub dw: u64,
    pub db: Option<u64>,
}

/// The table the shader reads: ops::conv2d's `Share` in `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ShareRow {
    first: u32,
    len: u32,
    partials: u32,
    chunks: u32,
    weights: u32,
    dw: u32,
    db: u32,
    _p: u32,
}

/// The shader's NO_BIAS: a share without a bias gradient.
pub const NO_BIAS: u32 = u32::MAX;

/// Stage 2 of every share's weight gradient in one dispatch: each kernel and bias gradient is
/// summed from its share's partials exactly as that layer's own reduce would sum it (the same
/// bits), into `grads`. One dispatch per step instead of one per convolution.
pub fn backward_params_reduce_all(
    gpu: &Gpu,
    label: &str,
    shares: &[ReduceShare],
    partials: &Tensor,
    grads: &Tensor,
) -> Result<Dispatch> {
    let reduce = Reduce::new(gpu, shares, partials, grads)?;
    let p = Params {
        n: shares.len() as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    let bindings = [(9, partials), (10, grads), (14, &reduce.table)];
    let kernel = "conv2d.backward_params_reduce_all";
    let entry = "backward_weight_reduce_all";
    reduce.build(gpu, label, (entry, kernel), &p, &bindings, None)
}

/// The parameters and Adam's moments [`backward_params_reduce_adam`] updates (as long as the
/// gradients), and the loss it finishes: the loss pass's partial sums of `total` elements, and
/// the loss log with the slot to fill (set per step by [`set_reduce_adam_step`]).
pub struct ReduceAdam<'a> {
    pub params: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
    pub loss_partials: &'a Tensor,
    pub total: u64,
    pub loss: &'a Tensor,
}

/// [`backward_params_reduce_all`] that also takes Adam's step for every parameter it sums the
/// gradient of (the update of `adam.step`, so the same bits), and finishes the loss in one more
/// workgroup (as `bce.loss_finish`; `--folds adam` with `reduces`). Every parameter must be a
/// share's: one that is not takes no step. Built for Adam's step 1 and loss slot 0.
pub fn backward_params_reduce_adam(
    gpu: &Gpu,
    label: &str,
    shares: &[ReduceShare],
    partials: &Tensor,
    grads: &Tensor,
    adam: &ReduceAdam<'_>,
    cfg: &AdamConfig,
) -> Result<Dispatch> {
    let reduce = Reduce::new(gpu, shares, partials, grads)?;
    for (name, t) in [("params", adam.params), ("m", adam.m), ("v", adam.v)] {
        expect_len("conv2d", name, t, grads.len)?;
    }
    let loss_partials = super::bce::partials_len(adam.total);
    expect_len("conv2d", "loss partials", adam.loss_partials, loss_partials)?;
    super::bce::check_slot(adam.loss, 0)?;
    let p = Params {
        n: shares.len() as u32,
        items: u32::try_from(reduce.items).map_err(|_| too_many(gpu, reduce.items))?,
        loss_total: adam.total as u32,
        loss_partials: loss_partials as u32,
        ..reduce_adam_params(&bytemuck::Zeroable::zeroed(), cfg, 1, 0)
    };
    let bindings = [
        (9, partials),
        (10, grads),
        (14, &reduce.table),
        (17, adam.params),
        (18, adam.m),
        (19, adam.v),
        (20, adam.loss_partials),
        (21, adam.loss),
    ];
    let kernel = "conv2d.backward_params_reduce_adam";
    let entry = "backward_weight_reduce_adam";
    // Adam's reads and writes of the weights and both moments; the loss finish's workgroup.
    let adam_bytes = 4 * 6 * reduce.items + 4 * loss_partials;
    reduce.build(gpu, label, (entry, kernel), &p, &bindings, Some(adam_bytes))
}

fn reduce_adam_params(p: &Params, cfg: &AdamConfig, t: u64, slot: u32) -> Params {
    Params {
        loss_slot: slot,
        rate: super::adam::rate(cfg, t),
        ..*p
    }
}

/// Stages a [`backward_params_reduce_adam`] dispatch's uniform slot `slot` for Adam's step
/// `t` (1-based), its loss finished into `loss[loss_slot]`.
pub fn set_reduce_adam_step(d: &Dispatch, slot: usize, cfg: &AdamConfig, t: u64, loss_slot: u32) {
    // Its uniform is a conv2d::Params only on this entry point.
    debug_assert_eq!(d.source.entry, "backward_weight_reduce_adam");
    d.stage(
        slot,
        &reduce_adam_params(&d.built_params(), cfg, t, loss_slot),
    );
}

/// A merged reduce's share table, checked, and its item count.
struct Reduce {
    table: Tensor,
    items: u64,
    used: u64,
}

impl Reduce {
    fn new(gpu: &Gpu, shares: &[ReduceShare], partials: &Tensor, grads: &Tensor) -> Result<Self> {
        let (rows, items) = share_rows(shares, partials, grads)?;
        Ok(Reduce {
            table: gpu.upload("conv2d reduce shares", &rows)?,
            items,
            used: shares.iter().map(|sh| partials_used(&sh.s)).sum(),
        })
    }

    /// The launch: a workgroup per item; with `adam_bytes` (what Adam and the loss's finish
    /// move past the partials and gradients), one more, where the entry point finishes the
    /// loss.
    fn build(
        &self,
        gpu: &Gpu,
        label: &str,
        (entry, kernel): (&'static str, &'static str),
        p: &Params,
        bindings: &[(u32, &Tensor)],
        adam_bytes: Option<u64>,
    ) -> Result<Dispatch> {
        let groups = self.items + adam_bytes.is_some() as u64;
        build(
            gpu,
            Launch {
                shader: Shader::Conv2d,
                entry,
                kernel,
                label,
                params: bytemuck::bytes_of(p),
                bindings,
                constants: &[],
                workgroups: gpu.groups(kernel, groups)?,
                cost: Cost {
                    bytes: 4 * (self.used + self.items) + adam_bytes.unwrap_or(0),
                    flops: self.used,
                },
            },
        )
    }
}

/// The share table's rows and the items (weights and biases) they cover.
fn share_rows(
    shares: &[ReduceShare],
    partials: &Tensor,
    grads: &Tensor,
) -> Result<(Vec<ShareRow>, u64)> {
    let mut rows = Vec::new();
    let mut first = 0u64;
    let offset = |v: u64, what: &str| -> Result<u32> {
        u32::try_from(v).map_err(|_| Error::Shape {
            op: "conv2d",
            detail: format!("{what} offset {v} is past what a u32 index reaches"),
        })
    };
    for share in shares {
        let s = &share.s;
        s.check()?;
        let len = s.taps() * s.ci as u64 * s.co as u64 + s.co as u64;
        let end = share.partials + partials_used(s);
        if end > partials.len {
            return Err(Error::Shape {
                op: "conv2d",
                detail: format!(
                    "the partials of {s:?} end at {end}, past the {} there are",
                    partials.len
                ),
            });
        }
        let outputs = [(Some(share.dw), s.weight_len()), (share.db, s.co as u64)];
        for (at, n) in outputs {
            if let Some(at) = at.filter(|at| at + n > grads.len) {
                return Err(Error::Shape {
                    op: "conv2d",
                    detail: format!(
                        "a gradient of {s:?} at {at} runs past the {} there are",
                        grads.len
                    ),
                });
            }
        }
        rows.push(ShareRow {
            first: offset(first, "item")?,
            len: len as u32,
            partials: offset(share.partials, "partials")?,
            chunks: chunks(s) as u32,
            weights: s.weight_len() as u32,
            dw: offset(share.dw, "kernel gradient")?,
            db: match share.db {
                Some(db) => offset(db, "bias gradient")?,
                None => NO_BIAS,
            },
            _p: 0,
        });
        first += len;
    }
    if rows.is_empty() {
        return Err(Error::Shape {
            op: "conv2d",
            detail: "a merged weight-gradient reduce needs at least one layer".into(),
        });
    }
    Ok((rows, first))
}

/// `db`: the gradient w.r.t. the bias, summed over the batch and pixels.
pub fn backward_bias(
    gpu: &Gpu,
    label: &str,
    s: &Conv2dShape,
    folds: &Folds<'_>,
    g: &GradOut<'_>,
    db: &Tensor,
) -> Result<Dispatch> {
    s.check()?;
    folds.check(s, gpu.kernels)?;
    g.check(s, folds)?;
    expect_len("conv2d", "db", db, s.co as u64)?;
    let (dy, act, relu) = g.bindings();
    let p = params(s, relu);
    let bindings = [(5, dy), (6, act), (11, db), folds.winner_in(dy)];
    build(
        gpu,
        Launch {
            shader: Shader::Conv2d,
            entry: "backward_bias",
            kernel: "conv2d.backward_bias",
            label,
            params: bytemuck::bytes_of(&p),
            bindings: &bindings,
            constants: &constants(s, folds, WIDE_GROUP),
            workgroups: gpu.groups("conv2d.backward_bias", s.co as u64)?,
            cost: Cost {
                bytes: 4 * (folds.output_len(s) * (1 + relu as u64) + s.co as u64),
                flops: s.output_len(),
            },
        },
    )
}
