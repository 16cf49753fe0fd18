// conv2d for CPU adapters: the ops of shaders/conv2d.wgsl for 3x3 kernels with at most 32
// channels a side (stride 1, 'same' or 'valid', NHWC, kernel [ky][kx][ci][co]), shaped for
// lavapipe and its kind. Other shapes (kernel sides 1, 5, 7; more channels) run
// shaders/conv2d.wgsl on the CPU set too: ops::cpu::conv2d::takes picks.
//
// One module in four files, compiled in this order after shaders/common.wgsl and
// cpu/blocks.wgsl (ops::Shader::source): this one (the overrides, bindings and helpers every
// pass uses), forward.wgsl, backward_input.wgsl and backward_params.wgsl (each pass's entry
// points and the helpers only they use).
//
// What shapes them: lavapipe runs 8 invocations per AVX2 vector and compiles a load as one
// scalar load only when its address is a constant and no loop or branch encloses it; any other
// load is a loop over the 8 lanes with a guarded scalar load each (a vec4 load shares the
// loop). NIR unrolls a loop only when trips * body <= 832 instructions and trips <= 32. So:
// - every window tap is a call written out (inlined) and each remaining loop is short enough
//   to unroll, so the weights sit at constant addresses; they are copied into workgroup memory
//   first, where a constant-address load is one scalar with no bounds-check branch;
// - accumulators are named vec4s and mat4x4s, never arrays (arrays made lavapipe's NIR passes
//   take tens of seconds per pipeline, and the code slower);
// - an invocation holds GROUP (16) channels a side in registers. The forward and the input
//   gradient run one z-layer of workgroups per group of the channels they write (output,
//   input). The forward walks the input groups in turn, each group's kernel slice copied into
//   workgroup memory (the calls written out: two, MAXC / GROUP); the input gradient takes one
//   dispatch per output group, the later ones adding to dx (the same walk inside one dispatch
//   put a barrier between the groups with the sums live, which cost lavapipe's coroutines as
//   much as the arithmetic: 32 -> 32 input gradient 2x the forward's time). The weight
//   gradient runs a z-layer per (input group, output group) pair, its thin form one per
//   group of the wide side. The narrow forwards (fewer than 4 outputs) copy the whole
//   kernel, transposed;
// - channels load as vec4 (zero-padded past the count);
// - no invocation returns early (a returned lane masks every later load): indices are clamped
//   and only the stores are guarded;
// - a layer with one output channel computes four neighbouring pixels per invocation, so each
//   loaded input serves three of their taps, and one with 4 to 8 two (PAIR), each loaded
//   input serving two; under `reuse` the input gradient takes two neighbouring pixels of x
//   per invocation the same way (UP_PAIR, BIN_PAIR);
// - the weight gradient has no split over 16-pixel chunks: each invocation sums CHUNK pixels
//   for one tap and one pair of groups (under `reuse`, a kernel row's three taps:
//   backward_params_row; or, when one side has a single channel, for all 9 taps with a group
//   of the wide side loaded once per pixel; or, for an upsampled layer with up to 8 input
//   channels, for all 9 taps and one vec4 of outputs: backward_params_up), and
//   a short reduce adds the chunks. These kernels run in workgroups of one vector
//   (PARTIAL_WG): they copy no weights, and their invocations are few.

override CI: u32 = 1u;     // input channels, <= MAXC
override CO: u32 = 1u;     // output channels, <= MAXC
override H: u32 = 1u;
override W: u32 = 1u;
override PAD: u32 = 1u;    // 1 'same', 0 'valid'
override HO: u32 = H + 2u * PAD - 2u;
override WO: u32 = W + 2u * PAD - 2u;
override CHUNK: u32 = 256u;  // output pixels per weight-gradient partial sum
// Whether the reduce writes the bias gradient (backward_params) or only the weights.
override WITH_BIAS: bool = true;

// INS: the layer reads its input through a zero insertion (a Keras Conv2DTranspose with
// strides 2, ops::conv2d::Input::Inserted): x is the small XH x XW tensor, and the H x W
// input the convolution sees holds x[y][x] at (2y + OY, 2x + OX) and zeros elsewhere. No
// kernel reads or sums a zero: the forward runs one dispatch per output phase (PY, PX: the
// output rows and columns of that parity), where the taps that land on zeros are constants
// and fold away (9 taps become 4, 2, 2 and 1); the input gradient is computed at the
// inserted pixels only; and the weight gradient walks x's pixels, not the outputs.
override INS: bool = false;
// UP = 2: the layer reads its input through a Keras UpSampling2D(2) in front of it
// (ops::conv2d::Input::Upsampled2x): x is the XH x XW = H/2 x W/2 tensor and the input pixel
// (iy, ix) is x's (iy/2, ix/2); the input gradient is x's, each pixel the sum of its 2x2
// block's. The upsampling runs no dispatch, and its 4x copy is never written or read.
// An output pixel's 3x3 taps then read only 2x2 of x's pixels, and which taps land on which
// depends on the output row's and column's parity (its phase), so the forward and the input
// gradient run the kernel folded: the taps landing on one x pixel summed into one weight as
// the slice is copied into workgroup memory (the same sums to float rounding). The
// single-output forward takes one invocation per UP_ROW x pixels of a row (their 2x2 blocks of
// outputs), each x pixel around them loaded once and read by the outputs whose 2x2 it is in
// (4 taps each, not 9); an x pixel's input
// gradient reads its 4x4 outputs through 16 folded taps, not 4 x 9. The other forwards read
// each tap's x pixel through x_pixel: the 9 taps of an output load 4 distinct pixels there,
// and lavapipe's time is in the loads (a z-layer per phase with 4 folded taps measured
// within noise of them). The weight gradient walks x's pixels, a tap's four outputs' gradients
// added before they meet x (bw_upsampled, thin_upsampled; with up to 8 input channels every
// tap in one invocation, backward_params_up); with one input channel it walks the outputs
// and reads x through x_pixel.
override UP: u32 = 1u;
// x's height and width: the small side under INS, H / UP otherwise (set by the launcher).
override XH: u32 = H;
override XW: u32 = W;
override OY: u32 = 0u;
override OX: u32 = 0u;
override PY: u32 = 0u;
override PX: u32 = 0u;

// TAKE: the layer keeps every other output (a Keras Conv2D with strides 2: the stride-1
// convolution's output at (2y + TY, 2x + TX), `stride.take` after the layer, folded into it):
// y and dy are the kept TH x TW outputs, and no kernel computes a dropped one. The forward
// computes the kept pixels only; the weight gradient walks them; the input gradient runs one
// dispatch per input phase (PY, PX), where the taps that meet a dropped output are constants
// and fold away.
override TAKE: bool = false;

// POOL = 2: a Keras MaxPooling2D(2) after the layer, folded into it (ops::conv2d::Pooled; one
// input group, output channels a multiple of 4): the forward takes one invocation per pooled
// pixel and writes its window's maxima into y and their places (0..3) into winner_out, as
// pool.forward does; dy and act are the pooled tensor's, and output pixel (oy, ox) gets its
// window's gradient where it won, 0 elsewhere, as pool.backward routes it: the input gradient
// reads it so at each tap (g4_pooled), the weight gradient walks the pooled pixels, each
// window's four outputs from one load of its gradient and winners (bw_pooled, thin_pooled).
// The full-size output and its gradient are never written.
override POOL: u32 = 1u;
override PH: u32 = 1u;     // the pooled height and width ('same': ceil(HO/2), 'valid': floor)
override PW: u32 = 1u;
override TH: u32 = HO;
override TW: u32 = WO;
override TY: u32 = 0u;
override TX: u32 = 0u;
// The height and width of y and dy.
override YH: u32 = select(HO, TH, TAKE);
override YW: u32 = select(WO, TW, TAKE);

// The forward's output grid: the phase's rows and columns under INS, the kept ones under
// TAKE, all of them otherwise.
override FH: u32 = select(select(HO, (HO + 1u - PY) / 2u, INS), TH, TAKE);
override FW: u32 = select(select(WO, (WO + 1u - PX) / 2u, INS), TW, TAKE);
// The input gradient's grid: x's pixels (under INS the small side's), or under TAKE this
// dispatch's phase of them.
override BH: u32 = select(XH, (H + 1u - PY) / 2u, TAKE);
override BW: u32 = select(XW, (W + 1u - PX) / 2u, TAKE);

// Row (or column) f of a phase grid: 2f + the phase's offset where the grid is one, f else.
fn spread(f: u32, phased: bool, offset: u32) -> i32 {
    return i32(select(f, 2u * f + offset, phased));
}

// Channels an invocation holds a side (ops::cpu::conv2d::GROUP): four vec4 accumulators.
const GROUP: u32 = 16u;
// Channels a side these kernels take (ops::cpu::conv2d::MAXC): two groups, written out.
const MAXC: u32 = 32u;
// Invocations per workgroup: ops::cpu::conv2d::CPU_WG. Large, so that each workgroup's copy
// of the weights into workgroup memory serves many pixels.
const CPU_WG: u32 = 128u;
// Invocations per workgroup of the weight-gradient kernels (ops::cpu::conv2d::PARTIAL_WG): one
// 8-wide vector. They copy no weights, and their invocations are few (576 (chunk, tap) pairs
// for the conv model's 8 -> 16 layer at batch 256): small workgroups spread them evenly over
// the threads (measured: BENCHMARKS.md, CPU section).
const PARTIAL_WG: u32 = 8u;

// Channels of one group a side: all of them up to GROUP.
override GCI: u32 = min(CI, GROUP);
override GCO: u32 = min(CO, GROUP);
override GCI4: u32 = (GCI + 3u) / 4u;
override GCO4: u32 = (GCO + 3u) / 4u;
// Groups of output channels: the weight gradient's z-layers are (input group, output group).
override CO_GROUPS: u32 = (CO + GROUP - 1u) / GROUP;

struct Conv {
    n: u32, relu: u32, chunks: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> act: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> partial_out: array<f32>;
@group(0) @binding(9) var<storage, read> partial_in: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> dw: array<f32>;
@group(0) @binding(11) var<storage, read_write> db: array<f32>;
// The same buffers as x, dy and act, read four channels at a time.
@group(0) @binding(12) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read> act4: array<vec4<f32>>;
// POOL = 2: the pooled outputs' winners, written by the forward, read four channels at a time
// by the backward kernels.
@group(0) @binding(15) var<storage, read_write> winner_out: array<u32>;
@group(0) @binding(16) var<storage, read> winner4: array<vec4<u32>>;

// TEX (the `textures` variant): x4, dy4 and act4 are read through rgba32float textures that
// hold the same floats, TEX_ROW texels a row (gpu::TensorTexture; an op's first dispatch
// copies the buffers in). lavapipe fetches a texel at a per-invocation coordinate as a straight
// gather, where a storage load is a guarded loop over the vector's lanes: about half the
// cycles (examples/lane_loads.rs). The same floats, so the same bits.
override TEX: bool = false;
// gpu::TEXELS_PER_ROW.
const TEX_ROW: u32 = 4096u;
@group(0) @binding(17) var x_tex: texture_2d<f32>;
@group(0) @binding(18) var dy_tex: texture_2d<f32>;
@group(0) @binding(19) var act_tex: texture_2d<f32>;

fn texel(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    return textureLoad(t, vec2<u32>(i % TEX_ROW, i / TEX_ROW), 0);
}

fn x4_load(i: u32) -> vec4<f32> {
    var v: vec4<f32>;
    if (TEX) { v = texel(x_tex, i); } else { v = x4[i]; }
    return v;
}

fn dy4_load(i: u32) -> vec4<f32> {
    var v: vec4<f32>;
    if (TEX) { v = texel(dy_tex, i); } else { v = dy4[i]; }
    return v;
}

fn act4_load(i: u32) -> vec4<f32> {
    var v: vec4<f32>;
    if (TEX) { v = texel(act_tex, i); } else { v = act4[i]; }
    return v;
}

fn flat_cpu(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * CPU_WG + lid;
}

fn flat_partial(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * PARTIAL_WG + lid;
}

fn tap_at(v: i32, size: u32) -> u32 {
    return u32(clamp(v, 0, i32(size) - 1));
}

fn inside_at(v: i32, size: u32) -> f32 {
    return select(0.0, 1.0, v >= 0 && v < i32(size));
}

// x's pixel under input pixel (iy, ix) of image b (inside H x W: clamped by the caller),
// through the upsampling when UP = 2 (the divisions fold away otherwise).
fn x_pixel(b: u32, iy: u32, ix: u32) -> u32 {
    return (b * XH + iy / UP) * XW + ix / UP;
}

// ---- UP = 2: the kernel folded over the upsampling ----

// floor(v / 2) for v >= -2.
fn half_floor(v: i32) -> i32 {
    return (v + 2) / 2 - 1;
}

// The first of the two x rows an output row of parity r reads, relative to x row (output
// row / 2): -1 or 0 (the same for columns).
fn up_first(r: u32) -> i32 {
    return half_floor(i32(r) - i32(PAD));
}

// How many of kernel rows 0..2 land on the first of the two x rows an output row of parity
// r reads: 1 or 2, the rest on the second (the same for columns).
fn up_split(r: u32) -> u32 {
    return 1u + (r + PAD + 1u) % 2u;
}

// Weight (k, c, o), 0 past CI or CO.
fn w_at(k: u32, c: u32, o: u32) -> f32 {
    return select(0.0, wt[min((k * CI + c) * CO + o, 9u * CI * CO - 1u)], c < CI && o < CO);
}

// The 3x3 taps of inputs c..c+3 to output o. The folds below add them in registers, so each
// weight is loaded once.
struct Taps { t0: vec4<f32>, t1: vec4<f32>, t2: vec4<f32>, t3: vec4<f32>, t4: vec4<f32>,
              t5: vec4<f32>, t6: vec4<f32>, t7: vec4<f32>, t8: vec4<f32> }

fn w4_at(k: u32, c: u32, o: u32) -> vec4<f32> {
    return vec4<f32>(w_at(k, c, o), w_at(k, c + 1u, o), w_at(k, c + 2u, o), w_at(k, c + 3u, o));
}

fn taps_at(c: u32, o: u32) -> Taps {
    return Taps(w4_at(0u, c, o), w4_at(1u, c, o), w4_at(2u, c, o), w4_at(3u, c, o),
                w4_at(4u, c, o), w4_at(5u, c, o), w4_at(6u, c, o), w4_at(7u, c, o),
                w4_at(8u, c, o));
}

struct Pair { a: vec4<f32>, b: vec4<f32> }
struct Quad { a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32> }

// Three taps of a row (or column) onto an output's two x rows: the first `split` onto a.
fn fold_pair(k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>, split: u32) -> Pair {
    let zero = vec4<f32>(0.0);
    return Pair(k0 + select(zero, k1, split == 2u), select(k1, zero, split == 2u) + k2);
}

// The forward's folded kernel of phase (ry, rx): taps e = 2ey + ex as a, b, c, d.
fn fold_phase(t: Taps, ry: u32, rx: u32) -> Quad {
    let sy = up_split(ry);
    let sx = up_split(rx);
    // Kernel rows first (each column kx), then columns.
    let c0 = fold_pair(t.t0, t.t3, t.t6, sy);
    let c1 = fold_pair(t.t1, t.t4, t.t7, sy);
    let c2 = fold_pair(t.t2, t.t5, t.t8, sy);
    let top = fold_pair(c0.a, c1.a, c2.a, sx);
    let bottom = fold_pair(c0.b, c1.b, c2.b, sx);
    return Quad(top.a, top.b, bottom.a, bottom.b);
}

// Three taps onto the input gradient's four: x row sy meets output row 2sy + PAD - 2 + t
// through kernel rows 2 - t and 3 - t (those in 0..2), from its upsampled rows 2sy, 2sy + 1.
fn fold_quad(k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>) -> Quad {
    return Quad(k2, k1 + k2, k0 + k1, k0);
}

// Channels of group g of a side with `channels` (never wraps below zero).
fn group_len(channels: u32, g: u32) -> u32 {
    return min(max(channels, GROUP * g), GROUP * (g + 1u)) - GROUP * g;
}

// The channel group of z-layer z on a side with `channels`: the constant 0 when they fit one
// group, so that the group's loads and stores keep constant addresses (a bias loaded at an
// address from workgroup_id is lane by lane: the 1 -> 16 forward took 2x as long).
fn group_at(z: u32, channels: u32) -> u32 {
    return select(z, 0u, channels <= GROUP);
}

// ---- shared by the passes ----

// Accumulators: four named vec4 (output channels 4j..4j+3 of the group), never an array:
// arrays of accumulators make lavapipe's NIR passes take minutes on the written-out taps.
struct Acc4 { a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32> }

// One kernel slice at a time: 9 x 16 x 16 floats (9 KiB); under UP the input gradient's 16
// folded taps, 16 KiB: WebGPU's limit.
var<workgroup> wsh4: array<vec4<f32>, 16u * GROUP * GROUP / 4u>;

// The subgroup width the `lanes` entry points are compiled for (forward.wgsl's
// forward_lanes says how its lanes share a window's columns).
override LANES: u32 = 8u;

// A lane's place under LANES: a row of `len` pixels takes ceil(len / per_lane) lanes, a
// subgroup LANES / that many whole rows (at least 1: every entry point is compiled for
// every shape); `row` is the lane's (clamped into the `rows` there are), `first` its first
// pixel, and `live` whether it has a row to store (not a lane past the subgroup's rows, nor
// past the batch's).
struct LanePlace { row: u32, first: u32, live: bool }

fn lane_place(wid: vec3<u32>, nwg: vec3<u32>, sg: u32, lane: u32, len: u32, per_lane: u32,
              rows: u32) -> LanePlace {
    let lanes_a_row = (len + per_lane - 1u) / per_lane;
    let rows_per = max(LANES / lanes_a_row, 1u);
    let r = lane / lanes_a_row;
    let row = ((wid.y * nwg.x + wid.x) * (CPU_WG / LANES) + sg) * rows_per + r;
    return LanePlace(min(row, rows - 1u), per_lane * (lane % lanes_a_row),
                     r < rows_per && row < rows);
}

// The lanes before and after `lane`, clamped at the subgroup's ends (whose lanes take a
// column of their own there instead: the row's edge).
fn lane_before(lane: u32) -> u32 {
    return select(lane - 1u, 0u, lane == 0u);
}

fn lane_after(lane: u32) -> u32 {
    return min(lane + 1u, LANES - 1u);
}

// The window places of a group's channels that hold the maximum so far.
struct Won { w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32> }

// The kernel transposed into the same workgroup array (an entry point uses one layout or the
// other, so one array keeps it within WebGPU's 16 KiB): rows (k, o) for the `no` outputs from
// o0, each `c4` vec4s of input channels from c0, zero-padded past CI and CO. The first barrier
// keeps the previous slice until every invocation is done with it.
fn load_weights4_t(lid: u32, c0: u32, c4: u32, o0: u32, no: u32) {
    workgroupBarrier();
    for (var i = lid; i < 9u * no * c4; i += CPU_WG) {
        let ko = i / c4;
        let k = ko / no;
        let o = o0 + ko % no;
        let c = c0 + 4u * (i % c4);
        var v = vec4<f32>(0.0);
        for (var l = 0u; l < 4u; l++) {
            if (c + l < CI && o < CO) { v[l] = wt[(k * CI + c + l) * CO + o]; }
        }
        wsh4[i] = v;
    }
    workgroupBarrier();
}

// The upstream gradient at output element i, ReLU-masked, times `scale`.
fn g_at(i: u32, scale: f32) -> f32 {
    var g = scale * dy[i];
    if (p.relu != 0u && act[i] <= 0.0) { g = 0.0; }
    return g;
}

fn g4_at(i4: u32, scale: f32) -> vec4<f32> {
    var g = scale * dy4_load(i4);
    if (p.relu != 0u) { g = select(g, vec4<f32>(0.0), act4_load(i4) <= vec4<f32>(0.0)); }
    return g;
}

// A column's gradient blocks (up to four vec4s of output channels), loaded or handed over.
struct Col4 { g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32> }

// Lane `lane`'s blocks of c, the first `channels` / 4 (a constant wherever this is called).
fn col_shuffled(c: Col4, lane: u32, channels: u32) -> Col4 {
    var o = c;
    o.g0 = subgroupShuffle(c.g0, lane);
    if (channels > 4u) { o.g1 = subgroupShuffle(c.g1, lane); }
    if (channels > 8u) { o.g2 = subgroupShuffle(c.g2, lane); }
    if (channels > 12u) { o.g3 = subgroupShuffle(c.g3, lane); }
    return o;
}

fn col_select(f: Col4, t: Col4, cond: bool) -> Col4 {
    return Col4(select(f.g0, t.g0, cond), select(f.g1, t.g1, cond), select(f.g2, t.g2, cond),
                select(f.g3, t.g3, cond));
}

fn col_scaled(c: Col4, scale: f32) -> Col4 {
    return Col4(scale * c.g0, scale * c.g1, scale * c.g2, scale * c.g3);
}

// Input channels 4j..4j+3 of pixel `pix`, times `scale`; zero past CI. A j past the last
// block reads the last block again (only lanes that are never stored use it).
fn x4_at(pix: u32, j: u32, scale: f32) -> vec4<f32> {
    if (CI % 4u == 0u) {
        return scale * x4_load(pix * (CI / 4u) + min(j, CI / 4u - 1u));
    }
    var v = vec4<f32>(0.0);
    for (var l = 0u; l < 4u; l++) {
        if (4u * j + l < CI) { v[l] = scale * x[pix * CI + 4u * j + l]; }
    }
    return v;
}

// Output channels 4m..4m+3 of the upstream gradient at pixel `pix`, times `scale`; zero
// past CO. An m past the last block reads the last block again, as x4_at.
fn g4_pixel(pix: u32, m: u32, scale: f32) -> vec4<f32> {
    if (CO % 4u == 0u && POOL == 2u) {
        return g4_pooled(pix, min(m, CO / 4u - 1u), scale);
    }
    if (CO % 4u == 0u) {
        return g4_at(pix * (CO / 4u) + min(m, CO / 4u - 1u), scale);
    }
    var v = vec4<f32>(0.0);
    for (var l = 0u; l < 4u; l++) {
        if (4u * m + l < CO) { v[l] = g_at(pix * CO + 4u * m + l, scale); }
    }
    return v;
}

// POOL = 2: output channels 4m..4m+3 of output pixel `pix` (flat over n, HO, WO): its pooled
// pixel's gradient where it won that channel's window (ReLU-masked by the pooled output: the
// winner's own), 0 where it lost or lies in a 'valid' pool's dropped odd row or column.
fn g4_pooled(pix: u32, m: u32, scale: f32) -> vec4<f32> {
    let ox = pix % WO;
    let oy = (pix / WO) % HO;
    let b = pix / (WO * HO);
    let inside = oy / 2u < PH && ox / 2u < PW;
    let i4 = ((b * PH + min(oy / 2u, PH - 1u)) * PW + min(ox / 2u, PW - 1u)) * (CO / 4u) + m;
    let won = winner4[i4] == vec4<u32>((oy % 2u) * 2u + ox % 2u);
    return select(vec4<f32>(0.0), g4_at(i4, scale), won & vec4<bool>(inside));
}

// REUSE (the `reuse` variant; the launcher sets it only where it changes a kernel): a thin
// kernel loads the 4 x 4 pixels of its thin side that a walked pixel's taps read once,
// rather than at each tap: a pooled window's four outputs read 16 input pixels over their
// 36 taps, and an upsampled x pixel's 9 taps 16 output gradients over their 36 reads; the
// pooled forward with one input channel does the same with its window (fwd_reuses). The
// same values meet the same sums: the same bits.
override REUSE: bool = false;

// A 4 x 4 patch of scalars, row r in member r.
struct Patch { r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32> }

// r and c are constants wherever this is called.
fn patch_at(pt: Patch, r: u32, c: u32) -> f32 {
    var row = pt.r0;
    if (r == 1u) { row = pt.r1; }
    if (r == 2u) { row = pt.r2; }
    if (r == 3u) { row = pt.r3; }
    return row[c];
}

// Row r of x's 4 x 4 pixels from (iy, ix) of image b (the single input channel), clamped
// inside: the patch keeps raw values, and the taps scale them as thin_tap does.
fn x_patch_row(b: u32, iy: i32, ix: i32) -> vec4<f32> {
    let row = (b * XH + tap_at(iy, H) / UP) * XW;
    return vec4<f32>(x[row + tap_at(ix, W) / UP], x[row + tap_at(ix + 1, W) / UP],
                     x[row + tap_at(ix + 2, W) / UP], x[row + tap_at(ix + 3, W) / UP]);
}

// POOL = 2, REUSE: the input pixels the taps of pooled pixel `pp`'s window read, rows and
// columns from the window's first output's minus PAD.
fn pooled_x_patch(pp: u32) -> Patch {
    let b = pp / (PW * PH);
    let iy = i32(2u * ((pp / PW) % PH)) - i32(PAD);
    let ix = i32(2u * (pp % PW)) - i32(PAD);
    return Patch(x_patch_row(b, iy, ix), x_patch_row(b, iy + 1, ix), x_patch_row(b, iy + 2, ix),
                 x_patch_row(b, iy + 3, ix));
}
