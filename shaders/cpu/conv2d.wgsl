// conv2d for CPU adapters: the ops of shaders/conv2d.wgsl for 3x3 kernels with at most 32
// channels a side (stride 1, 'same' or 'valid', NHWC, kernel [ky][kx][ci][co]), shaped for
// lavapipe and its kind. Other shapes (kernel sides 1, 5, 7; more channels) run
// shaders/conv2d.wgsl on the CPU set too: ops::cpu::conv2d::takes picks.
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
// Rows of one chunk's partial sums: every weight, then the bias (under INS, BIAS_ROWS
// rows of it: backward_params_partial), padded to whole vec4s.
override ROWS4: u32 = (9u * CI * CO + BIAS_ROWS * CO + 3u) / 4u;

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

// ---- forward: one output pixel per invocation, the output channels of group og ----

// Accumulators: four named vec4 (output channels 4j..4j+3 of the group), never an array:
// arrays of accumulators make lavapipe's NIR passes take minutes on the written-out taps.
struct Acc4 { a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32> }

// One kernel slice at a time: 9 x 16 x 16 floats (9 KiB); under UP the input gradient's 16
// folded taps, 16 KiB: WebGPU's limit.
var<workgroup> wsh4: array<vec4<f32>, 16u * GROUP * GROUP / 4u>;

// The slice of input group cg and output group og as [9 * GCI][GCO4], zero-padded past CI
// and CO. The first barrier keeps the previous slice until every invocation is done with it.
fn load_weights4(lid: u32, cg: u32, og: u32) {
    workgroupBarrier();
    for (var i = lid; i < 9u * GCI * GCO4; i += CPU_WG) {
        let row = i / GCO4;
        let k = row / GCI;
        let c = GROUP * cg + row % GCI;
        let o = GROUP * og + 4u * (i % GCO4);
        var v = vec4<f32>(0.0);
        for (var l = 0u; l < 4u; l++) {
            if (c < CI && o + l < CO) { v[l] = wt[(k * CI + c) * CO + o + l]; }
        }
        wsh4[i] = v;
    }
    workgroupBarrier();
}

fn fwd_chan(row: u32, xv: f32, acc: ptr<function, Acc4>) {
    (*acc).a0 += xv * wsh4[row * GCO4];
    if (GCO > 4u) { (*acc).a1 += xv * wsh4[row * GCO4 + 1u]; }
    if (GCO > 8u) { (*acc).a2 += xv * wsh4[row * GCO4 + 2u]; }
    if (GCO > 12u) { (*acc).a3 += xv * wsh4[row * GCO4 + 3u]; }
}

// Fewer than 4 outputs: accumulator a_o runs over input channels (4 at a time) for output o,
// with the whole kernel transposed (load_weights4_t(lid, 0, CI4, 0, CO)): a vec4 over outputs
// would waste most lanes.
fn fwd_narrow_tap(k: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(k / 3u) - i32(PAD);
    let ix = ox + i32(k % 3u) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
    let ci4 = (CI + 3u) / 4u;
    for (var j = 0u; j < ci4; j++) {
        let xq = x4_at(pix, j, keep);
        (*acc).a0 += xq * wsh4[(k * CO) * ci4 + j];
        if (CO > 1u) { (*acc).a1 += xq * wsh4[(k * CO + 1u) * ci4 + j]; }
        if (CO > 2u) { (*acc).a2 += xq * wsh4[(k * CO + 2u) * ci4 + j]; }
    }
}

fn forward_narrow(pix: u32, b: u32, oy: i32, ox: i32, store: bool) {
    var acc: Acc4;
    fwd_narrow_tap(0u, b, oy, ox, &acc);
    fwd_narrow_tap(1u, b, oy, ox, &acc);
    fwd_narrow_tap(2u, b, oy, ox, &acc);
    fwd_narrow_tap(3u, b, oy, ox, &acc);
    fwd_narrow_tap(4u, b, oy, ox, &acc);
    fwd_narrow_tap(5u, b, oy, ox, &acc);
    fwd_narrow_tap(6u, b, oy, ox, &acc);
    fwd_narrow_tap(7u, b, oy, ox, &acc);
    fwd_narrow_tap(8u, b, oy, ox, &acc);
    let one = vec4<f32>(1.0);
    let v = vec4<f32>(dot(acc.a0, one) + bias[0], dot(acc.a1, one) + bias[min(1u, CO - 1u)],
                      dot(acc.a2, one) + bias[min(2u, CO - 1u)], 0.0);
    if (store) { store4(pix * CO, 0u, 0u, v); }
}

// One output channel: four neighbouring output pixels per invocation (a0..a3), so that each
// input pixel loaded serves up to 3 of their taps (18 loads per 4 pixels instead of 36).
// Column `col` of kernel row ky, input column ox0 + col - PAD, into the pixels it reaches.
fn fwd_single_col(ky: u32, col: u32, b: u32, oy: i32, ox0: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(ky) - i32(PAD);
    let ix = ox0 + i32(col) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
    let ci4 = (CI + 3u) / 4u;
    for (var j = 0u; j < ci4; j++) {
        let xq = x4_at(pix, j, keep);
        // Pixel q uses this column as tap kx = col - q.
        if (col < 3u) { (*acc).a0 += xq * wsh4[(ky * 3u + col) * ci4 + j]; }
        if (col >= 1u && col < 4u) { (*acc).a1 += xq * wsh4[(ky * 3u + col - 1u) * ci4 + j]; }
        if (col >= 2u && col < 5u) { (*acc).a2 += xq * wsh4[(ky * 3u + col - 2u) * ci4 + j]; }
        if (col >= 3u) { (*acc).a3 += xq * wsh4[(ky * 3u + col - 3u) * ci4 + j]; }
    }
}

fn fwd_single_row(ky: u32, b: u32, oy: i32, ox0: i32, acc: ptr<function, Acc4>) {
    fwd_single_col(ky, 0u, b, oy, ox0, acc);
    fwd_single_col(ky, 1u, b, oy, ox0, acc);
    fwd_single_col(ky, 2u, b, oy, ox0, acc);
    fwd_single_col(ky, 3u, b, oy, ox0, acc);
    fwd_single_col(ky, 4u, b, oy, ox0, acc);
    fwd_single_col(ky, 5u, b, oy, ox0, acc);
}

// Invocation q: output row q / ceil(WO / 4), pixels 4 * (q % ceil(WO / 4)) + 0..3.
fn forward_single(id: u32) {
    let quads = (WO + 3u) / 4u;
    let total = p.n * HO * quads;
    let q = min(id, total - 1u);
    let ox0 = 4u * (q % quads);
    let row = q / quads;
    let oy = i32(row % HO);
    let b = row / HO;
    var acc: Acc4;
    fwd_single_row(0u, b, oy, i32(ox0), &acc);
    fwd_single_row(1u, b, oy, i32(ox0), &acc);
    fwd_single_row(2u, b, oy, i32(ox0), &acc);
    let one = vec4<f32>(1.0);
    var v = vec4<f32>(dot(acc.a0, one), dot(acc.a1, one), dot(acc.a2, one), dot(acc.a3, one));
    v += vec4<f32>(bias[0]);
    if (p.relu != 0u) { v = max(v, vec4<f32>(0.0)); }
    if (id < total) {
        for (var l = 0u; l < 4u; l++) {
            if (ox0 + l < WO) { y[row * WO + ox0 + l] = v[l]; }
        }
    }
}

// x pixels of a row per invocation of the single-output upsampled forward
// (ops::cpu::conv2d::UP_ROW).
const UP_ROW: u32 = 4u;

// UP = 2, one output channel: invocation q takes UP_ROW neighbouring x pixels of a row,
// (fy, fx0 + k) for k < UP_ROW, and computes each one's four outputs (2fy + ry,
// 2(fx0 + k) + rx), in acc_k's a0..a3 in phase order 2ry + rx, from the x pixels around them
// (3 x (UP_ROW + 2) under 'same', 2 x (UP_ROW + 1) under 'valid'), each loaded once and read
// by the outputs whose 2x2 it is in through their phase's folded kernel (wsh4 rows
// (4 * phase + e) * CI4 + j, load_weights4_up_single): 18 loads for 4 x pixels where one
// invocation per x pixel made 36. Each output adds the same terms in the same order as then.
fn forward_single_up(id: u32) {
    // (At least 1: the entry point is compiled for every shape, and its divisions by
    // constants must not be by zero.)
    let fh = max(HO / 2u, 1u);
    let fw = max(WO / 2u, 1u);
    let groups = (fw + UP_ROW - 1u) / UP_ROW;
    let total = p.n * fh * groups;
    let q = min(id, total - 1u);
    let fx0 = UP_ROW * (q % groups);
    let fy = (q / groups) % fh;
    let b = q / (groups * fh);
    // One named Acc4 per x pixel (a struct of them made the pipeline take seconds longer to
    // build).
    var k0: Acc4;
    var k1: Acc4;
    var k2: Acc4;
    var k3: Acc4;
    fwd_up_row(-1, b, fy, fx0, &k0, &k1, &k2, &k3);
    fwd_up_row(0, b, fy, fx0, &k0, &k1, &k2, &k3);
    fwd_up_row(1, b, fy, fx0, &k0, &k1, &k2, &k3);
    if (id < total) {
        up_row_store(b, fy, fx0, 0u, fw, k0);
        if (UP_ROW > 1u) { up_row_store(b, fy, fx0, 1u, fw, k1); }
        if (UP_ROW > 2u) { up_row_store(b, fy, fx0, 2u, fw, k2); }
        if (UP_ROW > 3u) { up_row_store(b, fy, fx0, 3u, fw, k3); }
    }
}

// The four outputs of x pixel (fy, fx0 + k), if it is in the row.
fn up_row_store(b: u32, fy: u32, fx0: u32, k: u32, fw: u32, acc: Acc4) {
    let one = vec4<f32>(1.0);
    var v = vec4<f32>(dot(acc.a0, one), dot(acc.a1, one), dot(acc.a2, one), dot(acc.a3, one));
    v += vec4<f32>(bias[0]);
    if (p.relu != 0u) { v = max(v, vec4<f32>(0.0)); }
    if (fx0 + k < fw) {
        let at = (b * HO + 2u * fy) * WO + 2u * (fx0 + k);
        y[at] = v.x;
        y[at + 1u] = v.y;
        y[at + WO] = v.z;
        y[at + WO + 1u] = v.w;
    }
}

// Row offset ny of the row's x pixels, in order of column offset from fx0 (so each output
// meets its pixels in the one-pixel order: rows, then columns).
fn fwd_up_row(ny: i32, b: u32, fy: u32, fx0: u32, k0: ptr<function, Acc4>,
              k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    fwd_up_at(ny, -1, b, fy, fx0, k0, k1, k2, k3);
    fwd_up_at(ny, 0, b, fy, fx0, k0, k1, k2, k3);
    fwd_up_at(ny, 1, b, fy, fx0, k0, k1, k2, k3);
    fwd_up_at(ny, 2, b, fy, fx0, k0, k1, k2, k3);
    if (UP_ROW > 2u) { fwd_up_at(ny, 3, b, fy, fx0, k0, k1, k2, k3); }
    if (UP_ROW > 3u) { fwd_up_at(ny, 4, b, fy, fx0, k0, k1, k2, k3); }
}

// ---- forward_up_lanes: forward_single_up with its row's columns shared ----
// LANES with one output channel under UP = 2 (ops::cpu::conv2d::lanes; at most 16 input
// channels, a multiple of 4): each subgroup takes whole rows of x's half-size pixels, a
// group of UP_ROW per lane, as forward_single_up's invocations. A lane loads its own UP_ROW
// columns of each x row the outputs read and takes the column left of them from the lane
// before (its last) and the one right of them from the lane after (its first): UP_ROW loads
// a row where forward_single_up makes UP_ROW + 2. A column past the row's edges takes the
// clamped pixel forward_single_up loads (one of the lane's own), scaled by its mask and met
// in its order: the same bits.
@compute @workgroup_size(CPU_WG)
fn forward_up_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_id) sg: u32,
                    @builtin(subgroup_invocation_id) lane: u32) {
    load_weights4_up_single(lid);
    let fh = max(HO / 2u, 1u);
    let fw = max(WO / 2u, 1u);
    let at = lane_place(wid, nwg, sg, lane, fw, UP_ROW, p.n * fh);
    let fx0 = at.first;
    let fy = at.row % fh;
    let b = at.row / fh;
    var k0: Acc4;
    var k1: Acc4;
    var k2: Acc4;
    var k3: Acc4;
    up_lanes_fwd_row(-1, b, fy, fx0, lane, &k0, &k1, &k2, &k3);
    up_lanes_fwd_row(0, b, fy, fx0, lane, &k0, &k1, &k2, &k3);
    up_lanes_fwd_row(1, b, fy, fx0, lane, &k0, &k1, &k2, &k3);
    if (at.live) {
        up_row_store(b, fy, fx0, 0u, fw, k0);
        up_row_store(b, fy, fx0, 1u, fw, k1);
        up_row_store(b, fy, fx0, 2u, fw, k2);
        up_row_store(b, fy, fx0, 3u, fw, k3);
    }
}

// `channels` of x from vec4 index `at` (a pixel's first, or its group's), raw, four vec4s
// at most (CI a multiple of 4; `channels` a constant wherever this is called).
fn xcol_load(at: u32, channels: u32) -> Col4 {
    var c: Col4;
    c.g0 = x4_load(at);
    if (channels > 4u) { c.g1 = x4_load(at + 1u); }
    if (channels > 8u) { c.g2 = x4_load(at + 2u); }
    if (channels > 12u) { c.g3 = x4_load(at + 3u); }
    return c;
}

// Row offset ny: x row fy + ny, columns fx0 - 1 .. fx0 + UP_ROW, in fwd_up_row's order.
fn up_lanes_fwd_row(ny: i32, b: u32, fy: u32, fx0: u32, lane: u32, k0: ptr<function, Acc4>,
                    k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    if (!up_reads(ny)) { return; }
    let sy = i32(fy) + ny;
    let ys = inside_at(sy, XH);
    let at = (b * XH + tap_at(sy, XH)) * XW;
    let x0 = i32(fx0);
    let c0 = xcol_load((at + tap_at(x0, XW)) * (CI / 4u), CI);
    let c1 = xcol_load((at + tap_at(x0 + 1, XW)) * (CI / 4u), CI);
    let c2 = xcol_load((at + tap_at(x0 + 2, XW)) * (CI / 4u), CI);
    let c3 = xcol_load((at + tap_at(x0 + 3, XW)) * (CI / 4u), CI);
    // Left of the row's start the clamped pixel is column 0, ours c0; right of its end
    // column XW - 1, ours at XW - 1 - fx0.
    let left = col_select(col_shuffled(c3, lane_before(lane), CI), c0, fx0 == 0u);
    let e = min(XW - 1u - min(fx0, XW - 1u), 3u);
    let ours = col_select(col_select(c0, c1, e == 1u), col_select(c2, c3, e == 3u), e >= 2u);
    let right = col_select(col_shuffled(c0, lane_after(lane), CI), ours, fx0 + UP_ROW >= XW);
    up_lanes_fwd_at(ny, -1, ys * inside_at(x0 - 1, XW), left, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 0, ys * inside_at(x0, XW), c0, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 1, ys * inside_at(x0 + 1, XW), c1, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 2, ys * inside_at(x0 + 2, XW), c2, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 3, ys * inside_at(x0 + 3, XW), c3, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 4, ys * inside_at(x0 + 4, XW), right, k0, k1, k2, k3);
}

// fwd_up_at with the pixel's channels given: into each output that reads offset (ny, nx).
fn up_lanes_fwd_at(ny: i32, nx: i32, keep: f32, v: Col4, k0: ptr<function, Acc4>,
                   k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    let used = up_reads(nx) || up_reads(nx - 1) || up_reads(nx - 2) || up_reads(nx - 3);
    if (!used) { return; }
    up_lanes_fwd_block(ny, nx, 0u, keep * v.g0, k0, k1, k2, k3);
    if (CI > 4u) { up_lanes_fwd_block(ny, nx, 1u, keep * v.g1, k0, k1, k2, k3); }
    if (CI > 8u) { up_lanes_fwd_block(ny, nx, 2u, keep * v.g2, k0, k1, k2, k3); }
    if (CI > 12u) { up_lanes_fwd_block(ny, nx, 3u, keep * v.g3, k0, k1, k2, k3); }
}

fn up_lanes_fwd_block(ny: i32, nx: i32, j: u32, xq: vec4<f32>, k0: ptr<function, Acc4>,
                      k1: ptr<function, Acc4>, k2: ptr<function, Acc4>,
                      k3: ptr<function, Acc4>) {
    up_into(ny, nx, j, xq, k0);
    up_into(ny, nx - 1, j, xq, k1);
    up_into(ny, nx - 2, j, xq, k2);
    up_into(ny, nx - 3, j, xq, k3);
}

// Whether a phase-r output reads x offset n (from its own x pixel) in either row parity: the
// pixel is loaded only where some output reads it.
fn up_reads(n: i32) -> bool {
    return up_in(0u, n) || up_in(1u, n);
}

// x's pixel (fy + ny, fx0 + nx) into each output that reads it: x pixel k's at offset
// (ny, nx - k). ny, nx are literals wherever this is called, so every branch folds away.
fn fwd_up_at(ny: i32, nx: i32, b: u32, fy: u32, fx0: u32, k0: ptr<function, Acc4>,
             k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    let used = up_reads(nx) || (UP_ROW > 1u && up_reads(nx - 1))
        || (UP_ROW > 2u && up_reads(nx - 2)) || (UP_ROW > 3u && up_reads(nx - 3));
    if (!up_reads(ny) || !used) { return; }
    let sy = i32(fy) + ny;
    let sx = i32(fx0) + nx;
    let keep = inside_at(sy, XH) * inside_at(sx, XW);
    let pix = (b * XH + tap_at(sy, XH)) * XW + tap_at(sx, XW);
    let ci4 = (CI + 3u) / 4u;
    for (var j = 0u; j < ci4; j++) {
        let xq = x4_at(pix, j, keep);
        up_into(ny, nx, j, xq, k0);
        if (UP_ROW > 1u) { up_into(ny, nx - 1, j, xq, k1); }
        if (UP_ROW > 2u) { up_into(ny, nx - 2, j, xq, k2); }
        if (UP_ROW > 3u) { up_into(ny, nx - 3, j, xq, k3); }
    }
}

// x channels 4j..4j+3 at offset (ny, nx) from an x pixel into its four outputs' sums, where
// they read it.
fn up_into(ny: i32, nx: i32, j: u32, xq: vec4<f32>, acc: ptr<function, Acc4>) {
    let ci4 = (CI + 3u) / 4u;
    if (up_hits(0u, 0u, ny, nx)) { (*acc).a0 += xq * wsh4[up_single_row(0u, 0u, ny, nx) * ci4 + j]; }
    if (up_hits(0u, 1u, ny, nx)) { (*acc).a1 += xq * wsh4[up_single_row(0u, 1u, ny, nx) * ci4 + j]; }
    if (up_hits(1u, 0u, ny, nx)) { (*acc).a2 += xq * wsh4[up_single_row(1u, 0u, ny, nx) * ci4 + j]; }
    if (up_hits(1u, 1u, ny, nx)) { (*acc).a3 += xq * wsh4[up_single_row(1u, 1u, ny, nx) * ci4 + j]; }
}

// Which of its two x rows (or columns) a phase-r output's row offset n is: n - up_first(r).
fn up_tap_of(r: u32, n: i32) -> i32 {
    return n - up_first(r);
}

// Whether a phase-r output reads offset n at all.
fn up_in(r: u32, n: i32) -> bool {
    let e = up_tap_of(r, n);
    return e >= 0 && e <= 1;
}

fn up_hits(ry: u32, rx: u32, ny: i32, nx: i32) -> bool {
    return up_in(ry, ny) && up_in(rx, nx);
}

// The wsh4 row of phase (ry, rx)'s folded tap at offset (ny, nx) (where up_hits).
fn up_single_row(ry: u32, rx: u32, ny: i32, nx: i32) -> u32 {
    return 4u * (2u * ry + rx) + u32(2 * up_tap_of(ry, ny) + up_tap_of(rx, nx));
}

// UP = 2, one output channel: the four phases' folded kernels, row 4 * phase + e, each CI4
// vec4s of input channels (zero past CI), an invocation per vec4.
fn load_weights4_up_single(lid: u32) {
    let ci4 = (CI + 3u) / 4u;
    workgroupBarrier();
    for (var j = lid; j < ci4; j += CPU_WG) {
        let t = taps_at(4u * j, 0u);
        for (var phase = 0u; phase < 4u; phase++) {
            let f = fold_phase(t, phase / 2u, phase % 2u);
            wsh4[(4u * phase) * ci4 + j] = f.a;
            wsh4[(4u * phase + 1u) * ci4 + j] = f.b;
            wsh4[(4u * phase + 2u) * ci4 + j] = f.c;
            wsh4[(4u * phase + 3u) * ci4 + j] = f.d;
        }
    }
    workgroupBarrier();
}

// Where the forward's tap k of output pixel (b, oy, ox) reads x: the pixel, and 0 or 1 for
// whether it lies inside (else the clamped pixel is read and scaled by 0).
struct Source { pix: u32, keep: f32 }

fn fwd_source(k: u32, b: u32, oy: i32, ox: i32) -> Source {
    let iy = oy + i32(k / 3u) - i32(PAD);
    let ix = ox + i32(k % 3u) - i32(PAD);
    if (INS) {
        // Only taps that land on inserted pixels run (fwd_lands), so these divide exactly.
        let sy = (iy - i32(OY)) / 2;
        let sx = (ix - i32(OX)) / 2;
        let keep = inside_at(sy, XH) * inside_at(sx, XW);
        return Source((b * XH + tap_at(sy, XH)) * XW + tap_at(sx, XW), keep);
    }
    let keep = inside_at(iy, H) * inside_at(ix, W);
    return Source(x_pixel(b, tap_at(iy, H), tap_at(ix, W)), keep);
}

// Whether tap k of the phase's outputs lands on an inserted pixel rather than a zero: a
// constant (PY, PX, PAD, OY, OX are overrides, k a literal), so the others fold away.
fn fwd_lands(k: u32) -> bool {
    return !INS || ((PY + k / 3u + PAD + OY) % 2u == 0u && (PX + k % 3u + PAD + OX) % 2u == 0u);
}

// Tap k over the input channels of group cg (a constant wherever this is called).
fn fwd_tap(k: u32, cg: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    if (!fwd_lands(k)) { return; }
    let src = fwd_source(k, b, oy, ox);
    let keep = src.keep;
    let pix = src.pix;
    let channels = group_len(CI, cg);
    if (CI % 4u == 0u) {
        for (var j = 0u; j < channels / 4u; j++) {
            fwd_block(k, j, keep * x4_load(pix * (CI / 4u) + GROUP / 4u * cg + j), acc);
        }
    } else {
        for (var c = 0u; c < channels; c++) {
            fwd_chan(k * GCI + c, keep * x[pix * CI + GROUP * cg + c], acc);
        }
    }
}

// Input group cg's share of every tap, with its kernel slice.
fn fwd_group(lid: u32, cg: u32, og: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    load_weights4(lid, cg, og);
    if (UP == 2u && REUSE && CI % 4u == 0u) {
        fwd_taps_up(cg, b, oy, ox, acc);
        return;
    }
    fwd_taps(cg, b, oy, ox, acc);
}

// UP = 2 under REUSE: the window's 3 x 3 taps read only 2 x 2 x pixels through the
// upsampling, so each is loaded once (8 vec4 loads for 8 channels, where fwd_taps loads 18).
// Tap row 0 reads x row sy = floor(y0 / 2) of upsampled row y0 = oy - PAD, row 2 reads
// sy + 1, row 1 the one of the two its parity says (the same for columns); a pixel is
// clamped inside as tap_at's, and each tap's value scaled as fwd_tap's: the same bits.
fn fwd_taps_up(cg: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let y0 = oy - i32(PAD);
    let x0 = ox - i32(PAD);
    let sy = half_floor(y0);
    let sx = half_floor(x0);
    let r0 = x_row_start(b, sy);
    let r1 = x_row_start(b, sy + 1);
    let c0 = x_col(sx);
    let c1 = x_col(sx + 1);
    let n = group_len(CI, cg);
    let first = GROUP / 4u * cg;
    let q00 = xcol_load((r0 + c0) * (CI / 4u) + first, n);
    let q01 = xcol_load((r0 + c1) * (CI / 4u) + first, n);
    let q10 = xcol_load((r1 + c0) * (CI / 4u) + first, n);
    let q11 = xcol_load((r1 + c1) * (CI / 4u) + first, n);
    let odd_y = (y0 + 2) % 2 == 1;
    let odd_x = (x0 + 2) % 2 == 1;
    let q0m = col_select(q00, q01, odd_x);
    let q1m = col_select(q10, q11, odd_x);
    let qm0 = col_select(q00, q10, odd_y);
    let qmm = col_select(q0m, q1m, odd_y);
    let qm1 = col_select(q01, q11, odd_y);
    fwd_tap_up(0u, n, y0, x0, q00, acc);
    fwd_tap_up(1u, n, y0, x0, q0m, acc);
    fwd_tap_up(2u, n, y0, x0, q01, acc);
    fwd_tap_up(3u, n, y0, x0, qm0, acc);
    fwd_tap_up(4u, n, y0, x0, qmm, acc);
    fwd_tap_up(5u, n, y0, x0, qm1, acc);
    fwd_tap_up(6u, n, y0, x0, q10, acc);
    fwd_tap_up(7u, n, y0, x0, q1m, acc);
    fwd_tap_up(8u, n, y0, x0, q11, acc);
}

// Under UP = 2: the first pixel of x row sy of image b, and x column sx, each clamped inside
// (x_pixel's of the clamped upsampled row or column).
fn x_row_start(b: u32, sy: i32) -> u32 {
    return (b * XH + u32(clamp(sy, 0, i32(XH) - 1))) * XW;
}

fn x_col(sx: i32) -> u32 {
    return u32(clamp(sx, 0, i32(XW) - 1));
}

// Tap k of fwd_taps_up with its x pixel's `channels` in c, scaled by 0 where it reads padding.
fn fwd_tap_up(k: u32, channels: u32, y0: i32, x0: i32, c: Col4, acc: ptr<function, Acc4>) {
    let keep = inside_at(y0 + i32(k / 3u), H) * inside_at(x0 + i32(k % 3u), W);
    fwd_block(k, 0u, keep * c.g0, acc);
    if (channels > 4u) { fwd_block(k, 1u, keep * c.g1, acc); }
    if (channels > 8u) { fwd_block(k, 2u, keep * c.g2, acc); }
    if (channels > 12u) { fwd_block(k, 3u, keep * c.g3, acc); }
}

// Channels 4j..4j+3 of tap k's x value q into the sums, as fwd_tap adds them.
fn fwd_block(k: u32, j: u32, q: vec4<f32>, acc: ptr<function, Acc4>) {
    fwd_chan(k * GCI + 4u * j, q.x, acc);
    fwd_chan(k * GCI + 4u * j + 1u, q.y, acc);
    fwd_chan(k * GCI + 4u * j + 2u, q.z, acc);
    fwd_chan(k * GCI + 4u * j + 3u, q.w, acc);
}

// Every tap of output pixel (b, oy, ox) over input group cg, with its loaded slice.
fn fwd_taps(cg: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    fwd_tap(0u, cg, b, oy, ox, acc);
    fwd_tap(1u, cg, b, oy, ox, acc);
    fwd_tap(2u, cg, b, oy, ox, acc);
    fwd_tap(3u, cg, b, oy, ox, acc);
    fwd_tap(4u, cg, b, oy, ox, acc);
    fwd_tap(5u, cg, b, oy, ox, acc);
    fwd_tap(6u, cg, b, oy, ox, acc);
    fwd_tap(7u, cg, b, oy, ox, acc);
    fwd_tap(8u, cg, b, oy, ox, acc);
}

// y as vec4s (the same buffer), where CO is a multiple of 4: a pixel's four channels in one
// store. A pipeline uses one view or the other.
@group(0) @binding(23) var<storage, read_write> y4: array<vec4<f32>>;

// Output channels GROUP * og + 4j .. +3 of the pixel starting at `at`, ReLU'd when asked.
fn store4(at: u32, og: u32, j: u32, v: vec4<f32>) {
    var o = v;
    if (p.relu != 0u) { o = max(o, vec4<f32>(0.0)); }
    if (CO % 4u == 0u) {
        let c = GROUP * og + 4u * j;
        if (c < CO) { y4[(at + c) / 4u] = o; }
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let c = GROUP * og + 4u * j + l;
        if (c < CO) { y[at + c] = o[l]; }
    }
}

// Output group og's biases: the accumulators' start.
fn bias_acc(og: u32) -> Acc4 {
    return Acc4(bias4(GROUP * og), bias4(GROUP * og + 4u), bias4(GROUP * og + 8u),
                bias4(GROUP * og + 12u));
}

// Bias of output channels o..o+3 (clamped: lanes past CO are never stored).
fn bias4(o: u32) -> vec4<f32> {
    return vec4<f32>(bias[min(o, CO - 1u)], bias[min(o + 1u, CO - 1u)],
                     bias[min(o + 2u, CO - 1u)], bias[min(o + 3u, CO - 1u)]);
}

@compute @workgroup_size(CPU_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    if (CO == 1u && UP == 2u) {
        load_weights4_up_single(lid);
        forward_single_up(id);
        return;
    }
    if (CO == 1u) {
        load_weights4_t(lid, 0u, (CI + 3u) / 4u, 0u, CO);
        forward_single(id);
        return;
    }
    // The output grid: every pixel, under INS this dispatch's phase, under TAKE the kept
    // pixels (y's, so q is their index).
    let total = p.n * FH * FW;
    let q = min(id, total - 1u);
    let fx = q % FW;
    let fy = (q / FW) % FH;
    let b = q / (FW * FH);
    let ox = select(spread(fx, INS, PX), spread(fx, true, TX), TAKE);
    let oy = select(spread(fy, INS, PY), spread(fy, true, TY), TAKE);
    let pix = select((b * HO + u32(oy)) * WO + u32(ox), q, TAKE);
    if (CO < 4u) {
        load_weights4_t(lid, 0u, (CI + 3u) / 4u, 0u, CO);
        forward_narrow(pix, b, oy, ox, id < total);
        return;
    }
    if (POOL == 2u) {
        forward_pooled(wid, lid, id);
        return;
    }
    if (PAIR) {
        forward_pair(lid, id);
        return;
    }
    let og = group_at(wid.z, CO);
    var acc = bias_acc(og);
    fwd_group(lid, 0u, og, b, oy, ox, &acc);
    if (CI > GROUP) { fwd_group(lid, 1u, og, b, oy, ox, &acc); }
    if (id < total) {
        store4(pix * CO, og, 0u, acc.a0);
        if (GCO > 4u) { store4(pix * CO, og, 1u, acc.a1); }
        if (GCO > 8u) { store4(pix * CO, og, 2u, acc.a2); }
        if (GCO > 12u) { store4(pix * CO, og, 3u, acc.a3); }
    }
}

// PAIR (4 to 8 output channels, no stride-2 map or pool; ops::cpu::conv2d::pairs): the group's
// channels fill two of the four accumulators, so the other two take the next output pixel
// of the row, and each input pixel of the pair's 3x4 window, loaded once, serves both (12
// loads for two outputs, not 18: lavapipe's time is in its loads). Invocation q is pair
// (b, oy, ox0 = 2 * (q % pairs per row)); a0, a1 hold output ox0, a2, a3 output ox0 + 1 (not
// stored past the row's end).
override PAIR: bool = false;

fn forward_pair(lid: u32, id: u32) {
    let pairs = (WO + 1u) / 2u;
    let total = p.n * HO * pairs;
    let q = min(id, total - 1u);
    let ox0 = 2u * (q % pairs);
    let row = q / pairs;
    let oy = row % HO;
    let b = row / HO;
    var acc: Acc4;
    acc.a0 = bias4(0u);
    acc.a1 = bias4(4u);
    acc.a2 = acc.a0;
    acc.a3 = acc.a1;
    pair_group(lid, 0u, b, oy, ox0, &acc);
    if (CI > GROUP) { pair_group(lid, 1u, b, oy, ox0, &acc); }
    if (id < total) {
        let pix = (b * HO + oy) * WO + ox0;
        store4(pix * CO, 0u, 0u, acc.a0);
        if (GCO > 4u) { store4(pix * CO, 0u, 1u, acc.a1); }
        if (ox0 + 1u < WO) {
            store4((pix + 1u) * CO, 0u, 0u, acc.a2);
            if (GCO > 4u) { store4((pix + 1u) * CO, 0u, 1u, acc.a3); }
        }
    }
}

// Input group cg's share of both outputs: its kernel slice, then the window's 12 pixels.
fn pair_group(lid: u32, cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    load_weights4(lid, cg, 0u);
    if (UP == 2u && REUSE && CI % 4u == 0u) {
        pair_rows_up(cg, b, oy, ox0, acc);
        return;
    }
    pair_row(0u, cg, b, oy, ox0, acc);
    pair_row(1u, cg, b, oy, ox0, acc);
    pair_row(2u, cg, b, oy, ox0, acc);
}

fn pair_row(ky: u32, cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    pair_col(ky, 0u, cg, b, oy, ox0, acc);
    pair_col(ky, 1u, cg, b, oy, ox0, acc);
    pair_col(ky, 2u, cg, b, oy, ox0, acc);
    pair_col(ky, 3u, cg, b, oy, ox0, acc);
}

// Input pixel (oy + ky - PAD, ox0 + col - PAD): tap (ky, col) of output ox0 and
// (ky, col - 1) of output ox0 + 1, where those exist.
fn pair_col(ky: u32, col: u32, cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    let iy = i32(oy + ky) - i32(PAD);
    let ix = i32(ox0 + col) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
    let channels = group_len(CI, cg);
    if (CI % 4u == 0u) {
        for (var j = 0u; j < channels / 4u; j++) {
            let q = keep * x4_load(pix * (CI / 4u) + GROUP / 4u * cg + j);
            pair_chan(ky, col, 4u * j, q.x, acc);
            pair_chan(ky, col, 4u * j + 1u, q.y, acc);
            pair_chan(ky, col, 4u * j + 2u, q.z, acc);
            pair_chan(ky, col, 4u * j + 3u, q.w, acc);
        }
    } else {
        for (var c = 0u; c < channels; c++) {
            pair_chan(ky, col, c, keep * x[pix * CI + GROUP * cg + c], acc);
        }
    }
}

// UP = 2 under REUSE: the pair's 3 x 4 window reads 2 x 3 x pixels through the upsampling
// (fwd_taps_up's rows; ox0 is even, so window column col reads x column ox0 / 2 +
// floor((col - PAD) / 2), at most three), each loaded once: 6 pixel loads where pair_row
// makes 12. Clamped and scaled as pair_col's, in its order: the same bits.
fn pair_rows_up(cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    let y0 = i32(oy) - i32(PAD);
    let sy = half_floor(y0);
    let r0 = x_row_start(b, sy);
    let r1 = x_row_start(b, sy + 1);
    let m = i32(ox0 / 2u);
    let n = group_len(CI, cg);
    let first = GROUP / 4u * cg;
    let ca = x_col(m - 1);
    let cb = x_col(m);
    let cc = x_col(m + 1);
    // Column m - 1 only under 'same' padding.
    var a0: Col4;
    var a1: Col4;
    if (PAD == 1u) {
        a0 = xcol_load((r0 + ca) * (CI / 4u) + first, n);
        a1 = xcol_load((r1 + ca) * (CI / 4u) + first, n);
    }
    let b0 = xcol_load((r0 + cb) * (CI / 4u) + first, n);
    let b1 = xcol_load((r1 + cb) * (CI / 4u) + first, n);
    let c0 = xcol_load((r0 + cc) * (CI / 4u) + first, n);
    let c1 = xcol_load((r1 + cc) * (CI / 4u) + first, n);
    let odd = (y0 + 2) % 2 == 1;
    pair_row_up(0u, n, oy, ox0, a0, b0, c0, acc);
    pair_row_up(1u, n, oy, ox0, col_select(a0, a1, odd), col_select(b0, b1, odd),
                col_select(c0, c1, odd), acc);
    pair_row_up(2u, n, oy, ox0, a1, b1, c1, acc);
}

// Window row ky of pair_rows_up from x columns m - 1, m, m + 1 (xa, xb, xc): under 'same'
// padding its four columns read xa, xb, xb, xc, under 'valid' xb, xb, xc, xc.
fn pair_row_up(ky: u32, n: u32, oy: u32, ox0: u32, xa: Col4, xb: Col4, xc: Col4,
               acc: ptr<function, Acc4>) {
    let ys = inside_at(i32(oy + ky) - i32(PAD), H);
    let x0 = i32(ox0) - i32(PAD);
    if (PAD == 1u) {
        lanes_col(ky, 0u, n, col_scaled(xa, ys * inside_at(x0, W)), acc);
    } else {
        lanes_col(ky, 0u, n, col_scaled(xb, ys * inside_at(x0, W)), acc);
    }
    lanes_col(ky, 1u, n, col_scaled(xb, ys * inside_at(x0 + 1, W)), acc);
    if (PAD == 1u) {
        lanes_col(ky, 2u, n, col_scaled(xb, ys * inside_at(x0 + 2, W)), acc);
    } else {
        lanes_col(ky, 2u, n, col_scaled(xc, ys * inside_at(x0 + 2, W)), acc);
    }
    lanes_col(ky, 3u, n, col_scaled(xc, ys * inside_at(x0 + 3, W)), acc);
}

// Input channel c of the loaded slice at column `col` into both outputs' sums.
fn pair_chan(ky: u32, col: u32, c: u32, xv: f32, acc: ptr<function, Acc4>) {
    if (col < 3u) {
        let row = (ky * 3u + col) * GCI + c;
        (*acc).a0 += xv * wsh4[row * GCO4];
        if (GCO > 4u) { (*acc).a1 += xv * wsh4[row * GCO4 + 1u]; }
    }
    if (col >= 1u) {
        let row = (ky * 3u + col - 1u) * GCI + c;
        (*acc).a2 += xv * wsh4[row * GCO4];
        if (GCO > 4u) { (*acc).a3 += xv * wsh4[row * GCO4 + 1u]; }
    }
}

// ---- forward_lanes: forward_pair with its window's columns shared across a subgroup ----
// LANES (the `lanes` variant on an adapter whose subgroups are LANES invocations wide, for a
// 'same' layer with no fold whose rows have at most LANES pairs; ops::cpu::conv2d::lanes): each
// subgroup takes LANES / pairs whole rows, a pair per lane (the lanes past them idle), so
// the pair left of a lane's is the lane before it and the pair right of it the lane after.
// A lane loads only its own two columns of the window's three rows and takes the column left
// of them from the lane before and the one right of them from the lane after
// (subgroupShuffle: a register permute on lavapipe, where a load is a loop over the vector's
// lanes): 6 pixel loads for two outputs where forward_pair makes 12. A window column past
// the row's edge takes the pixel forward_pair's clamped load reads, and every column is
// scaled by its mask as there: the same terms in the same order, the same bits.
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

@compute @workgroup_size(CPU_WG)
fn forward_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_id) sg: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let at = lane_place(wid, nwg, sg, lane, WO, 2u, p.n * HO);
    let ox0 = at.first;
    let oy = at.row % HO;
    let b = at.row / HO;
    var acc: Acc4;
    acc.a0 = bias4(0u);
    acc.a1 = bias4(4u);
    acc.a2 = acc.a0;
    acc.a3 = acc.a1;
    lanes_group(lid, 0u, b, oy, ox0, lane, &acc);
    if (CI > GROUP) { lanes_group(lid, 1u, b, oy, ox0, lane, &acc); }
    if (at.live) {
        let pix = (b * HO + oy) * WO + ox0;
        store4(pix * CO, 0u, 0u, acc.a0);
        if (GCO > 4u) { store4(pix * CO, 0u, 1u, acc.a1); }
        if (ox0 + 1u < WO) {
            store4((pix + 1u) * CO, 0u, 0u, acc.a2);
            if (GCO > 4u) { store4((pix + 1u) * CO, 0u, 1u, acc.a3); }
        }
    }
}

fn lanes_group(lid: u32, cg: u32, b: u32, oy: u32, ox0: u32, lane: u32, acc: ptr<function, Acc4>) {
    load_weights4(lid, cg, 0u);
    lanes_row(0u, cg, b, oy, ox0, lane, acc);
    lanes_row(1u, cg, b, oy, ox0, lane, acc);
    lanes_row(2u, cg, b, oy, ox0, lane, acc);
}

// Window row ky (PAD = 1): columns ox0 - 1 .. ox0 + 2, in pair_row's order; this lane's pixels
// are columns 1 and 2 (ox0, ox0 + 1).
fn lanes_row(ky: u32, cg: u32, b: u32, oy: u32, ox0: u32, lane: u32, acc: ptr<function, Acc4>) {
    let iy = i32(oy + ky) - 1;
    let ys = inside_at(iy, H);
    let pa = x_pixel(b, tap_at(iy, H), tap_at(i32(ox0), W)) * (CI / 4u) + GROUP / 4u * cg;
    let pb = x_pixel(b, tap_at(iy, H), tap_at(i32(ox0) + 1, W)) * (CI / 4u) + GROUP / 4u * cg;
    let n = group_len(CI, cg);
    let ca = xcol_load(pa, n);
    let cb = xcol_load(pb, n);
    // Column 0: the lane before's second pixel (at the row's start the clamped one, ours);
    // column 3: the lane after's first (past the row's end the clamped one, our second).
    let left = col_select(col_shuffled(cb, lane_before(lane), n), ca, ox0 == 0u);
    let right = col_select(col_shuffled(ca, lane_after(lane), n), cb, ox0 + 2u >= W);
    lanes_col(ky, 0u, n, col_scaled(left, ys * inside_at(i32(ox0) - 1, W)), acc);
    lanes_col(ky, 1u, n, col_scaled(ca, ys * inside_at(i32(ox0), W)), acc);
    lanes_col(ky, 2u, n, col_scaled(cb, ys * inside_at(i32(ox0) + 1, W)), acc);
    lanes_col(ky, 3u, n, col_scaled(right, ys * inside_at(i32(ox0) + 2, W)), acc);
}

// The `channels` of window column `col` into both outputs' sums, block by block as pair_col
// adds them.
fn lanes_col(ky: u32, col: u32, channels: u32, c: Col4, acc: ptr<function, Acc4>) {
    lanes_block(ky, col, 0u, c.g0, acc);
    if (channels > 4u) { lanes_block(ky, col, 1u, c.g1, acc); }
    if (channels > 8u) { lanes_block(ky, col, 2u, c.g2, acc); }
    if (channels > 12u) { lanes_block(ky, col, 3u, c.g3, acc); }
}

fn lanes_block(ky: u32, col: u32, j: u32, q: vec4<f32>, acc: ptr<function, Acc4>) {
    pair_chan(ky, col, 4u * j, q.x, acc);
    pair_chan(ky, col, 4u * j + 1u, q.y, acc);
    pair_chan(ky, col, 4u * j + 2u, q.z, acc);
    pair_chan(ky, col, 4u * j + 3u, q.w, acc);
}

// POOL = 2: invocation q is pooled pixel (b, py, px), z-layer og its output group. Each place
// w of its window (row-major) is the layer's output there, ReLU'd when the layer has ReLU; a
// 'same' pool's missing bottom row or right column is clamped onto a cell before it, which it
// then equals and cannot beat (the first maximum wins ties, as in pool.forward).
fn forward_pooled(wid: vec3<u32>, lid: u32, id: u32) {
    let total = p.n * PH * PW;
    let q = min(id, total - 1u);
    let px = q % PW;
    let py = (q / PW) % PH;
    let b = q / (PW * PH);
    let og = group_at(wid.z, CO);
    load_weights4(lid, 0u, og);
    var pt: Patch;
    if (fwd_reuses()) { pt = pooled_x_patch(q); }
    var best = pool_place(0u, og, b, py, px, pt);
    var won: Won;
    pool_max(&best, &won, pool_place(1u, og, b, py, px, pt), 1u);
    pool_max(&best, &won, pool_place(2u, og, b, py, px, pt), 2u);
    pool_max(&best, &won, pool_place(3u, og, b, py, px, pt), 3u);
    if (id < total) {
        store4(q * CO, og, 0u, best.a0);
        store_won(q * CO, og, 0u, won.w0);
        if (GCO > 4u) { store4(q * CO, og, 1u, best.a1); store_won(q * CO, og, 1u, won.w1); }
        if (GCO > 8u) { store4(q * CO, og, 2u, best.a2); store_won(q * CO, og, 2u, won.w2); }
        if (GCO > 12u) { store4(q * CO, og, 3u, best.a3); store_won(q * CO, og, 3u, won.w3); }
    }
}

// The window places of a group's channels that hold the maximum so far.
struct Won { w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32> }

// Whether the pooled forward reads its window's inputs from a patch (REUSE, one input
// channel): the 16 pixels its four outputs' 36 taps read, each loaded once.
fn fwd_reuses() -> bool {
    return REUSE && CI == 1u && !INS;
}

// The layer's output at place w of pooled pixel (b, py, px)'s window, output group og (under
// fwd_reuses, its inputs from the window's patch `pt`: pooled_x_patch).
fn pool_place(w: u32, og: u32, b: u32, py: u32, px: u32, pt: Patch) -> Acc4 {
    let oy = min(2u * py + w / 2u, HO - 1u);
    let ox = min(2u * px + w % 2u, WO - 1u);
    var acc = bias_acc(og);
    if (fwd_reuses()) {
        // A 'same' pool's clamped place sits on the row or column before: at 0 or 1 in the
        // patch.
        let at = vec2<bool>(ox > 2u * px, oy > 2u * py);
        fwd_tap_patch(0u, oy, ox, at, pt, &acc);
        fwd_tap_patch(1u, oy, ox, at, pt, &acc);
        fwd_tap_patch(2u, oy, ox, at, pt, &acc);
        fwd_tap_patch(3u, oy, ox, at, pt, &acc);
        fwd_tap_patch(4u, oy, ox, at, pt, &acc);
        fwd_tap_patch(5u, oy, ox, at, pt, &acc);
        fwd_tap_patch(6u, oy, ox, at, pt, &acc);
        fwd_tap_patch(7u, oy, ox, at, pt, &acc);
        fwd_tap_patch(8u, oy, ox, at, pt, &acc);
    } else {
        fwd_taps(0u, b, i32(oy), i32(ox), &acc);
    }
    if (p.relu != 0u) {
        let z = vec4<f32>(0.0);
        acc = Acc4(max(acc.a0, z), max(acc.a1, z), max(acc.a2, z), max(acc.a3, z));
    }
    return acc;
}

// fwd_tap with one input channel read from the window's patch: output (oy, ox) sits at
// (at.y, at.x) (0 or 1 each) in it, so tap k reads (at.y + ky, at.x + kx); scaled by 0
// outside as fwd_source's.
fn fwd_tap_patch(k: u32, oy: u32, ox: u32, at: vec2<bool>, pt: Patch, acc: ptr<function, Acc4>) {
    let ky = k / 3u;
    let kx = k % 3u;
    let keep = inside_at(i32(oy + ky) - i32(PAD), H) * inside_at(i32(ox + kx) - i32(PAD), W);
    let row0 = select(patch_at(pt, ky, kx), patch_at(pt, ky, kx + 1u), at.x);
    let row1 = select(patch_at(pt, ky + 1u, kx), patch_at(pt, ky + 1u, kx + 1u), at.x);
    fwd_chan(k * GCI, keep * select(row0, row1, at.y), acc);
}

// Place w's outputs into the running maxima, where strictly greater.
fn pool_max(best: ptr<function, Acc4>, won: ptr<function, Won>, v: Acc4, w: u32) {
    let b = *best;
    let m0 = v.a0 > b.a0;
    let m1 = v.a1 > b.a1;
    let m2 = v.a2 > b.a2;
    let m3 = v.a3 > b.a3;
    *best = Acc4(select(b.a0, v.a0, m0), select(b.a1, v.a1, m1), select(b.a2, v.a2, m2),
                 select(b.a3, v.a3, m3));
    let k = vec4<u32>(w);
    let o = *won;
    *won = Won(select(o.w0, k, m0), select(o.w1, k, m1), select(o.w2, k, m2), select(o.w3, k, m3));
}

// The winners as vec4s (the same buffer), where CO is a multiple of 4: a pooled pixel's four
// channels' winners in one store, as y4's. A pipeline uses one view or the other.
@group(0) @binding(24) var<storage, read_write> winner_out4: array<vec4<u32>>;

// Winners of output channels GROUP * og + 4j .. +3 of the pooled pixel starting at `at`.
fn store_won(at: u32, og: u32, j: u32, v: vec4<u32>) {
    if (CO % 4u == 0u) {
        let c = GROUP * og + 4u * j;
        if (c < CO) { winner_out4[(at + c) / 4u] = v; }
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let c = GROUP * og + 4u * j + l;
        if (c < CO) { winner_out[at + c] = v[l]; }
    }
}

// ---- backward_input: one input pixel per invocation, the input channels of group cg ----

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

// Output channel o (of the loaded group) of tap k into the group's input channels.
fn bin_chan(k: u32, o: u32, gv: f32, acc: ptr<function, Acc4>) {
    let row = (k * GCO + o) * GCI4;
    (*acc).a0 += gv * wsh4[row];
    if (GCI > 4u) { (*acc).a1 += gv * wsh4[row + 1u]; }
    if (GCI > 8u) { (*acc).a2 += gv * wsh4[row + 2u]; }
    if (GCI > 12u) { (*acc).a3 += gv * wsh4[row + 3u]; }
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

// Output channels 4j..4j+3 of the loaded group, gradient g, into the input channels.
fn bin_block(k: u32, j: u32, g: vec4<f32>, acc: ptr<function, Acc4>) {
    bin_chan(k, 4u * j, g.x, acc);
    bin_chan(k, 4u * j + 1u, g.y, acc);
    bin_chan(k, 4u * j + 2u, g.z, acc);
    bin_chan(k, 4u * j + 3u, g.w, acc);
}

// Whether tap k of the phase's inputs meets a kept output under TAKE: a constant (PY, PX,
// PAD, TY, TX are overrides, k a literal), so the others fold away.
fn bin_lands(k: u32) -> bool {
    return !TAKE || ((PY + PAD + k / 3u + TY) % 2u == 0u && (PX + PAD + k % 3u + TX) % 2u == 0u);
}

// Tap k over the output channels of group og (a constant wherever this is called).
fn bin_tap(k: u32, og: u32, b: u32, iy: i32, ix: i32, acc: ptr<function, Acc4>) {
    if (!bin_lands(k)) { return; }
    var oy = iy + i32(PAD) - i32(k / 3u);
    var ox = ix + i32(PAD) - i32(k % 3u);
    if (TAKE) {
        // Only taps that meet kept outputs run (bin_lands), so these divide exactly.
        oy = (oy - i32(TY)) / 2;
        ox = (ox - i32(TX)) / 2;
    }
    bin_grads(k, og, b, oy, ox, acc);
}

// UP = 2: folded tap t = 4ty + tx of x pixel (sy, sx), from output
// (2sy + PAD - 2 + ty, 2sx + PAD - 2 + tx) (fold_quad).
fn bin_up_tap(t: u32, og: u32, b: u32, sy: i32, sx: i32, acc: ptr<function, Acc4>) {
    let oy = 2 * sy + i32(PAD) - 2 + i32(t / 4u);
    let ox = 2 * sx + i32(PAD) - 2 + i32(t % 4u);
    bin_grads(t, og, b, oy, ox, acc);
}

// The upstream gradient of output group og at dy's pixel (oy, ox) (0 outside) times the
// loaded slice's rows of tap k.
fn bin_grads(k: u32, og: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let keep = inside_at(oy, YH) * inside_at(ox, YW);
    let pix = (b * YH + tap_at(oy, YH)) * YW + tap_at(ox, YW);
    let channels = group_len(CO, og);
    if (CO % 4u == 0u) {
        // Written out, not a loop: the ReLU mask's branch in g4_at kept NIR from unrolling a
        // loop of four blocks, and the weights' loads in a loop are lane-by-lane (16 -> 16
        // input gradient at 0.47 GFLOP/s).
        let m = GROUP / 4u * og;
        bin_block(k, 0u, g4_pixel(pix, m, keep), acc);
        if (channels > 4u) { bin_block(k, 1u, g4_pixel(pix, m + 1u, keep), acc); }
        if (channels > 8u) { bin_block(k, 2u, g4_pixel(pix, m + 2u, keep), acc); }
        if (channels > 12u) { bin_block(k, 3u, g4_pixel(pix, m + 3u, keep), acc); }
    } else {
        for (var o = 0u; o < channels; o++) {
            bin_chan(k, o, g_at(pix * CO + GROUP * og + o, keep), acc);
        }
    }
}

// Output group og's share of every tap, with its kernel slice for input group cg.
fn bin_group(lid: u32, cg: u32, og: u32, b: u32, iy: i32, ix: i32, acc: ptr<function, Acc4>) {
    load_weights4_t(lid, GROUP * cg, GCI4, GROUP * og, GCO);
    bin_taps(og, b, iy, ix, acc);
}

// UP = 2: every folded tap of x pixel (b, sy, sx), with load_weights4_up_t's slice.
fn bin_up_taps(og: u32, b: u32, sy: i32, sx: i32, acc: ptr<function, Acc4>) {
    bin_up_tap(0u, og, b, sy, sx, acc);
    bin_up_tap(1u, og, b, sy, sx, acc);
    bin_up_tap(2u, og, b, sy, sx, acc);
    bin_up_tap(3u, og, b, sy, sx, acc);
    bin_up_tap(4u, og, b, sy, sx, acc);
    bin_up_tap(5u, og, b, sy, sx, acc);
    bin_up_tap(6u, og, b, sy, sx, acc);
    bin_up_tap(7u, og, b, sy, sx, acc);
    bin_up_tap(8u, og, b, sy, sx, acc);
    bin_up_tap(9u, og, b, sy, sx, acc);
    bin_up_tap(10u, og, b, sy, sx, acc);
    bin_up_tap(11u, og, b, sy, sx, acc);
    bin_up_tap(12u, og, b, sy, sx, acc);
    bin_up_tap(13u, og, b, sy, sx, acc);
    bin_up_tap(14u, og, b, sy, sx, acc);
    bin_up_tap(15u, og, b, sy, sx, acc);
}

// UP_PAIR (REUSE, UP = 2; ops::cpu::conv2d::up_pairs): an invocation takes x pixels (sy, sx)
// and (sy, sx + 1), whose 4x4 outputs overlap in two columns, so each loaded upstream gradient
// serves both where it is shared (LLVM keeps a load once where its address repeats) and each
// loaded weight serves both. With at most 8 input channels and output channels a multiple of
// 4, pixel sx's sums are acc's a0, a1 and sx + 1's its a2, a3; with one output channel, pixel
// sx's are acc and sx + 1's acc_b. The terms of bin_up_taps in its order, so the same bits.
fn bin_up_taps_pair(og: u32, b: u32, sy: i32, sx: i32, acc: ptr<function, Acc4>,
                    acc_b: ptr<function, Acc4>) {
    bin_up_tap_pair(0u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(1u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(2u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(3u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(4u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(5u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(6u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(7u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(8u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(9u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(10u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(11u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(12u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(13u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(14u, og, b, sy, sx, acc, acc_b);
    bin_up_tap_pair(15u, og, b, sy, sx, acc, acc_b);
}

// Folded tap t of the pair: bin_up_tap's outputs for x pixel sx, and two columns on for sx + 1.
fn bin_up_tap_pair(t: u32, og: u32, b: u32, sy: i32, sx: i32, acc: ptr<function, Acc4>,
                   acc_b: ptr<function, Acc4>) {
    let oy = 2 * sy + i32(PAD) - 2 + i32(t / 4u);
    let ox = 2 * sx + i32(PAD) - 2 + i32(t % 4u);
    if (CO == 1u) {
        bin_grads_pair1(t, b, oy, ox, acc, acc_b);
    } else {
        bin_grads_pair(t, og, b, oy, ox, acc);
    }
}

// bin_grads for the pair's outputs (oy, ox) and (oy, ox + 2).
fn bin_grads_pair(k: u32, og: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let row = inside_at(oy, YH);
    let keep_a = row * inside_at(ox, YW);
    let keep_b = row * inside_at(ox + 2, YW);
    let at = b * YH + tap_at(oy, YH);
    let pix_a = at * YW + tap_at(ox, YW);
    let pix_b = at * YW + tap_at(ox + 2, YW);
    let m = GROUP / 4u * og;
    let channels = group_len(CO, og);
    bin_block_pair(k, 0u, g4_pixel(pix_a, m, keep_a), g4_pixel(pix_b, m, keep_b), acc);
    if (channels > 4u) {
        bin_block_pair(k, 1u, g4_pixel(pix_a, m + 1u, keep_a), g4_pixel(pix_b, m + 1u, keep_b), acc);
    }
    if (channels > 8u) {
        bin_block_pair(k, 2u, g4_pixel(pix_a, m + 2u, keep_a), g4_pixel(pix_b, m + 2u, keep_b), acc);
    }
    if (channels > 12u) {
        bin_block_pair(k, 3u, g4_pixel(pix_a, m + 3u, keep_a), g4_pixel(pix_b, m + 3u, keep_b), acc);
    }
}

// bin_grads_pair with one output channel (the last layer's 16 -> 1), any input channels:
// pixel sx's sums in acc, sx + 1's in acc_b, each of the pair's gradients through g_at as
// bin_grads loads it and each loaded weight serving both (bin_chan_two).
fn bin_grads_pair1(k: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>,
                   acc_b: ptr<function, Acc4>) {
    let at = b * YH + tap_at(oy, YH);
    let ga = g_at(at * YW + tap_at(ox, YW), inside_at(oy, YH) * inside_at(ox, YW));
    let gb = g_at(at * YW + tap_at(ox + 2, YW), inside_at(oy, YH) * inside_at(ox + 2, YW));
    bin_chan_two(k, 0u, ga, gb, acc, acc_b);
}

fn bin_block_pair(k: u32, j: u32, ga: vec4<f32>, gb: vec4<f32>, acc: ptr<function, Acc4>) {
    bin_chan_pair(k, 4u * j, ga.x, gb.x, acc);
    bin_chan_pair(k, 4u * j + 1u, ga.y, gb.y, acc);
    bin_chan_pair(k, 4u * j + 2u, ga.z, gb.z, acc);
    bin_chan_pair(k, 4u * j + 3u, ga.w, gb.w, acc);
}

fn bin_chan_pair(k: u32, o: u32, ga: f32, gb: f32, acc: ptr<function, Acc4>) {
    let row = (k * GCO + o) * GCI4;
    let w0 = wsh4[row];
    (*acc).a0 += ga * w0;
    (*acc).a2 += gb * w0;
    if (GCI > 4u) {
        let w1 = wsh4[row + 1u];
        (*acc).a1 += ga * w1;
        (*acc).a3 += gb * w1;
    }
}

// UP = 2: load_weights4_t's layout with the input gradient's 16 folded taps (t = 4ty + tx)
// for the 9, an invocation per output and vec4 of input channels.
fn load_weights4_up_t(lid: u32, c0: u32, c4: u32, o0: u32, no: u32) {
    workgroupBarrier();
    for (var i = lid; i < no * c4; i += CPU_WG) {
        let o = i / c4;
        let cq = i % c4;
        let t = taps_at(c0 + 4u * cq, o0 + o);
        // Kernel rows first (each column kx), then columns.
        let k0 = fold_quad(t.t0, t.t3, t.t6);
        let k1 = fold_quad(t.t1, t.t4, t.t7);
        let k2 = fold_quad(t.t2, t.t5, t.t8);
        store_bin_row(0u, o, cq, no, c4, fold_quad(k0.a, k1.a, k2.a));
        store_bin_row(1u, o, cq, no, c4, fold_quad(k0.b, k1.b, k2.b));
        store_bin_row(2u, o, cq, no, c4, fold_quad(k0.c, k1.c, k2.c));
        store_bin_row(3u, o, cq, no, c4, fold_quad(k0.d, k1.d, k2.d));
    }
    workgroupBarrier();
}

// Folded taps (ty, 0..3) of output o, input vec4 cq, into load_weights4_t's layout.
fn store_bin_row(ty: u32, o: u32, cq: u32, no: u32, c4: u32, r: Quad) {
    wsh4[((4u * ty) * no + o) * c4 + cq] = r.a;
    wsh4[((4u * ty + 1u) * no + o) * c4 + cq] = r.b;
    wsh4[((4u * ty + 2u) * no + o) * c4 + cq] = r.c;
    wsh4[((4u * ty + 3u) * no + o) * c4 + cq] = r.d;
}

// Every tap of input pixel (b, iy, ix) with the loaded slice.
fn bin_taps(og: u32, b: u32, iy: i32, ix: i32, acc: ptr<function, Acc4>) {
    bin_tap(0u, og, b, iy, ix, acc);
    bin_tap(1u, og, b, iy, ix, acc);
    bin_tap(2u, og, b, iy, ix, acc);
    bin_tap(3u, og, b, iy, ix, acc);
    bin_tap(4u, og, b, iy, ix, acc);
    bin_tap(5u, og, b, iy, ix, acc);
    bin_tap(6u, og, b, iy, ix, acc);
    bin_tap(7u, og, b, iy, ix, acc);
    bin_tap(8u, og, b, iy, ix, acc);
}

// The output group this dispatch walks, and whether it adds to dx (a later group) rather
// than writing it: one dispatch per output group (ops::cpu::conv2d::backward_input), because
// a second group walked inside one dispatch needs a workgroup barrier with the sums live,
// which lavapipe's coroutines made cost as much as the arithmetic.
override OG: u32 = 0u;
override ADD_TO_DX: bool = false;
// MASK_DX: dx is stored masked by the ReLU output of the layer below (dx_mask, dx's shape):
// 0 where that is not positive, as activation.relu_backward's select makes it, so that layer
// reads its gradient masked with no pass of its own. Each output group's dispatch masks the
// sum so far: a later one adds to 0 where the mask is, and masks again.
override MASK_DX: bool = false;
@group(0) @binding(20) var<storage, read> dx_mask: array<f32>;
// dx and the mask as vec4s (the same buffers), where CI is a multiple of 4: a pixel's four
// channels in one load and one store, not four of each. A pipeline uses one view or the other.
@group(0) @binding(21) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read> dx_mask4: array<vec4<f32>>;

fn store_dx4(at: u32, cg: u32, j: u32, v: vec4<f32>) {
    if (CI % 4u == 0u) {
        let c = GROUP * cg + 4u * j;
        if (c < CI) {
            let i = (at + c) / 4u;
            var o = v;
            if (ADD_TO_DX) { o = dx4[i] + o; }
            if (MASK_DX) { o = select(vec4<f32>(0.0), o, dx_mask4[i] > vec4<f32>(0.0)); }
            dx4[i] = o;
        }
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let c = GROUP * cg + 4u * j + l;
        if (c < CI) {
            var o = v[l];
            if (ADD_TO_DX) { o = dx[at + c] + o; }
            if (MASK_DX) { o = select(0.0, o, dx_mask[at + c] > 0.0); }
            dx[at + c] = o;
        }
    }
}

// Input channels of group cg at dx's pixel `at` (its first element), from the group's sums.
fn store_dx_pixel(at: u32, cg: u32, acc: Acc4) {
    store_dx4(at, cg, 0u, acc.a0);
    if (GCI > 4u) { store_dx4(at, cg, 1u, acc.a1); }
    if (GCI > 8u) { store_dx4(at, cg, 2u, acc.a2); }
    if (GCI > 12u) { store_dx4(at, cg, 3u, acc.a3); }
}

// A pair's sums into dx: pixel `pix`'s, and pixel pix + 1's where the row holds it (`second`).
fn store_dx_pair(pix: u32, second: bool, cg: u32, acc: Acc4, acc_b: Acc4) {
    store_dx_pixel(pix * CI, cg, acc);
    if (second) { store_dx_pixel((pix + 1u) * CI, cg, acc_b); }
}

override UP_PAIR: bool = false;

// UP_PAIR: invocation q is the pair (b, sy, 2 * (q % pairs per row)) of x's pixels; the
// second is not stored where the row has an odd length and the pair is its last.
fn backward_input_up_pair(lid: u32, cg: u32, id: u32) {
    let pairs = (BW + 1u) / 2u;
    let total = p.n * BH * pairs;
    let q = min(id, total - 1u);
    let sx = 2u * (q % pairs);
    let sy = (q / pairs) % BH;
    let b = q / (pairs * BH);
    var acc: Acc4;
    var acc_b: Acc4;
    load_weights4_up_t(lid, GROUP * cg, GCI4, GROUP * OG, GCO);
    bin_up_taps_pair(OG, b, i32(sy), i32(sx), &acc, &acc_b);
    if (id < total && CO == 1u) {
        store_dx_pair((b * BH + sy) * BW + sx, sx + 1u < BW, cg, acc, acc_b);
    } else if (id < total) {
        let pix = (b * BH + sy) * BW + sx;
        store_dx4(pix * CI, cg, 0u, acc.a0);
        if (GCI > 4u) { store_dx4(pix * CI, cg, 1u, acc.a1); }
        if (sx + 1u < BW) {
            store_dx4((pix + 1u) * CI, cg, 0u, acc.a2);
            if (GCI > 4u) { store_dx4((pix + 1u) * CI, cg, 1u, acc.a3); }
        }
    }
}

// BIN_PAIR (REUSE, no fold; ops::cpu::conv2d::bin_pairs): an invocation takes x pixels
// (iy, ix) and (iy, ix + 1). Their 3x3 windows of outputs overlap in two columns, so each
// gradient they share is loaded once (LLVM keeps a load once where its address repeats: 12
// pixel loads for the two, not 18), and each loaded weight serves both. Pixel ix's sums are
// acc, ix + 1's acc_b, each with bin_taps' terms in its order: the same bits.
override BIN_PAIR: bool = false;

// Invocation q is the pair (b, iy, 2 * (q % pairs per row)); the second is not stored where
// the row has an odd length and the pair is its last.
fn backward_input_pair(lid: u32, cg: u32, id: u32) {
    let pairs = (W + 1u) / 2u;
    let total = p.n * H * pairs;
    let q = min(id, total - 1u);
    let ix = 2u * (q % pairs);
    let iy = (q / pairs) % H;
    let b = q / (pairs * H);
    var acc: Acc4;
    var acc_b: Acc4;
    load_weights4_t(lid, GROUP * cg, GCI4, GROUP * OG, GCO);
    bin_taps_pair(OG, b, i32(iy), i32(ix), &acc, &acc_b);
    if (id < total) {
        store_dx_pair((b * H + iy) * W + ix, ix + 1u < W, cg, acc, acc_b);
    }
}

// bin_taps for the pair: tap k of x pixel ix reads output column ix + PAD - kx, of ix + 1 the
// next one.
fn bin_taps_pair(og: u32, b: u32, iy: i32, ix: i32, acc: ptr<function, Acc4>,
                 acc_b: ptr<function, Acc4>) {
    bin_tap_pair(0u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(1u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(2u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(3u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(4u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(5u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(6u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(7u, og, b, iy, ix, acc, acc_b);
    bin_tap_pair(8u, og, b, iy, ix, acc, acc_b);
}

fn bin_tap_pair(k: u32, og: u32, b: u32, iy: i32, ix: i32, acc: ptr<function, Acc4>,
                acc_b: ptr<function, Acc4>) {
    let oy = iy + i32(PAD) - i32(k / 3u);
    let ox = ix + i32(PAD) - i32(k % 3u);
    let row = inside_at(oy, YH);
    let at = b * YH + tap_at(oy, YH);
    let pix_a = at * YW + tap_at(ox, YW);
    let pix_b = at * YW + tap_at(ox + 1, YW);
    let keep_a = row * inside_at(ox, YW);
    let keep_b = row * inside_at(ox + 1, YW);
    let m = GROUP / 4u * og;
    let channels = group_len(CO, og);
    let ga0 = g4_pixel(pix_a, m, keep_a);
    bin_block_two(k, 0u, channels, ga0, g4_pixel(pix_b, m, keep_b), acc, acc_b);
    if (channels > 4u) {
        let ga1 = g4_pixel(pix_a, m + 1u, keep_a);
        bin_block_two(k, 1u, channels, ga1, g4_pixel(pix_b, m + 1u, keep_b), acc, acc_b);
    }
    if (channels > 8u) {
        let ga2 = g4_pixel(pix_a, m + 2u, keep_a);
        bin_block_two(k, 2u, channels, ga2, g4_pixel(pix_b, m + 2u, keep_b), acc, acc_b);
    }
    if (channels > 12u) {
        let ga3 = g4_pixel(pix_a, m + 3u, keep_a);
        bin_block_two(k, 3u, channels, ga3, g4_pixel(pix_b, m + 3u, keep_b), acc, acc_b);
    }
}

// Output channels 4j..4j+3 (those of the group's `channels`) of both pixels' gradients into
// their sums.
fn bin_block_two(k: u32, j: u32, channels: u32, ga: vec4<f32>, gb: vec4<f32>,
                 acc: ptr<function, Acc4>, acc_b: ptr<function, Acc4>) {
    bin_chan_two(k, 4u * j, ga.x, gb.x, acc, acc_b);
    if (4u * j + 1u < channels) { bin_chan_two(k, 4u * j + 1u, ga.y, gb.y, acc, acc_b); }
    if (4u * j + 2u < channels) { bin_chan_two(k, 4u * j + 2u, ga.z, gb.z, acc, acc_b); }
    if (4u * j + 3u < channels) { bin_chan_two(k, 4u * j + 3u, ga.w, gb.w, acc, acc_b); }
}

// bin_chan for both pixels, each weight loaded once.
fn bin_chan_two(k: u32, o: u32, ga: f32, gb: f32, acc: ptr<function, Acc4>,
                acc_b: ptr<function, Acc4>) {
    let row = (k * GCO + o) * GCI4;
    let w0 = wsh4[row];
    (*acc).a0 += ga * w0;
    (*acc_b).a0 += gb * w0;
    if (GCI > 4u) {
        let w1 = wsh4[row + 1u];
        (*acc).a1 += ga * w1;
        (*acc_b).a1 += gb * w1;
    }
    if (GCI > 8u) {
        let w2 = wsh4[row + 2u];
        (*acc).a2 += ga * w2;
        (*acc_b).a2 += gb * w2;
    }
    if (GCI > 12u) {
        let w3 = wsh4[row + 3u];
        (*acc).a3 += ga * w3;
        (*acc_b).a3 += gb * w3;
    }
}

@compute @workgroup_size(CPU_WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let cg = group_at(wid.z, CI);
    let id = flat_cpu(wid, lid, nwg);
    // One invocation per pixel of x: under INS the inserted pixels of the input only (the
    // zeros' gradients are never needed), so q indexes the small tensor; under TAKE this
    // dispatch's phase of them.
    if (UP_PAIR) {
        backward_input_up_pair(lid, cg, id);
        return;
    }
    if (BIN_PAIR) {
        backward_input_pair(lid, cg, id);
        return;
    }
    let total = p.n * BH * BW;
    let q = min(id, total - 1u);
    let sx = q % BW;
    let sy = (q / BW) % BH;
    let b = q / (BW * BH);
    let ix = select(spread(sx, INS, OX), spread(sx, true, PX), TAKE);
    let iy = select(spread(sy, INS, OY), spread(sy, true, PY), TAKE);
    let pix = select(q, (b * H + u32(iy)) * W + u32(ix), TAKE);
    var acc: Acc4;
    if (UP == 2u) {
        load_weights4_up_t(lid, GROUP * cg, GCI4, GROUP * OG, GCO);
        bin_up_taps(OG, b, iy, ix, &acc);
    } else {
        bin_group(lid, cg, OG, b, iy, ix, &acc);
    }
    if (id < total) {
        store_dx_pixel(pix * CI, cg, acc);
    }
}

// ---- backward_input_lanes: backward_input_pair with its columns shared across a subgroup ----
// LANES (as forward_lanes; ops::cpu::conv2d::lanes): each subgroup takes whole rows of x, a
// pair per lane, and a lane loads the upstream gradient (and the ReLU mask's activations) of
// only its own two columns of each of the three rows of outputs its taps read, taking the
// column left of them from the lane before and the one right of them from the lane after.
// Each column's gradient is then masked and scaled as g4_pixel makes it, and meets the taps
// in bin_taps_pair's order: the same bits.
@compute @workgroup_size(CPU_WG)
fn backward_input_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_id) sg: u32,
                        @builtin(subgroup_invocation_id) lane: u32) {
    let cg = group_at(wid.z, CI);
    let at = lane_place(wid, nwg, sg, lane, W, 2u, p.n * H);
    let ix = at.first;
    let iy = at.row % H;
    let b = at.row / H;
    var acc: Acc4;
    var acc_b: Acc4;
    load_weights4_t(lid, GROUP * cg, GCI4, GROUP * OG, GCO);
    bin_lanes_row(0u, b, iy, ix, lane, &acc, &acc_b);
    bin_lanes_row(1u, b, iy, ix, lane, &acc, &acc_b);
    bin_lanes_row(2u, b, iy, ix, lane, &acc, &acc_b);
    if (at.live) {
        store_dx_pair((b * H + iy) * W + ix, ix + 1u < W, cg, acc, acc_b);
    }
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

// dy's vec4 at `at`, 0 where the ReLU mask's activation is not positive: scaled by a 0 or 1
// after, it is g4_at's value to the bit (0 * dy is the same signed zero either way).
fn dy4_masked(at: u32) -> vec4<f32> {
    var g = dy4_load(at);
    if (p.relu != 0u) { g = select(g, vec4<f32>(0.0), act4_load(at) <= vec4<f32>(0.0)); }
    return g;
}

// Output group OG's masked gradient blocks at vec4 index `at` (its first), unscaled.
fn col_load(at: u32) -> Col4 {
    var c: Col4;
    c.g0 = dy4_masked(at);
    if (GCO > 4u) { c.g1 = dy4_masked(at + 1u); }
    if (GCO > 8u) { c.g2 = dy4_masked(at + 2u); }
    if (GCO > 12u) { c.g3 = dy4_masked(at + 3u); }
    return c;
}

// Output row oy = iy + 1 - ky (PAD = 1): its columns ix - 1 .. ix + 2 meet the pair's taps
// (ky, 0..2): pixel ix's tap kx reads column ix + 1 - kx, pixel ix + 1's column ix + 2 - kx.
// This lane's own columns are ix and ix + 1.
fn bin_lanes_row(ky: u32, b: u32, iy: u32, ix: u32, lane: u32, acc: ptr<function, Acc4>,
                 acc_b: ptr<function, Acc4>) {
    let oy = i32(iy) + 1 - i32(ky);
    let rk = inside_at(oy, YH);
    let at = b * YH + tap_at(oy, YH);
    let m = GROUP / 4u * OG;
    let ma = col_load((at * YW + tap_at(i32(ix), YW)) * (CO / 4u) + m);
    let mb = col_load((at * YW + tap_at(i32(ix) + 1, YW)) * (CO / 4u) + m);
    // Left of the row's start and right of its end, the clamped column g4_pixel reads.
    let ml = col_select(col_shuffled(mb, lane_before(lane), GCO), ma, ix == 0u);
    let mr = col_select(col_shuffled(ma, lane_after(lane), GCO), mb, ix + 2u >= YW);
    let gl = col_scaled(ml, rk * inside_at(i32(ix) - 1, YW));
    let ga = col_scaled(ma, rk * inside_at(i32(ix), YW));
    let gb = col_scaled(mb, rk * inside_at(i32(ix) + 1, YW));
    let gr = col_scaled(mr, rk * inside_at(i32(ix) + 2, YW));
    let k = 3u * ky;
    bin_lanes_tap(k, gb, gr, acc, acc_b);
    bin_lanes_tap(k + 1u, ga, gb, acc, acc_b);
    bin_lanes_tap(k + 2u, gl, ga, acc, acc_b);
}

// Tap k of both pixels, block by block as bin_tap_pair adds them.
fn bin_lanes_tap(k: u32, ga: Col4, gb: Col4, acc: ptr<function, Acc4>, acc_b: ptr<function, Acc4>) {
    let channels = group_len(CO, OG);
    bin_block_two(k, 0u, channels, ga.g0, gb.g0, acc, acc_b);
    if (channels > 4u) { bin_block_two(k, 1u, channels, ga.g1, gb.g1, acc, acc_b); }
    if (channels > 8u) { bin_block_two(k, 2u, channels, ga.g2, gb.g2, acc, acc_b); }
    if (channels > 12u) { bin_block_two(k, 3u, channels, ga.g3, gb.g3, acc, acc_b); }
}

// ---- backward_input_up_lanes: backward_input_up_pair with its columns shared ----
// LANES under UP = 2 (ops::cpu::conv2d::lanes; output channels a multiple of 4 and at most 8
// input channels, UP_PAIR's vec4 form, or one output channel, its bin_grads_pair1 form:
// up_lanes_row1): each subgroup takes whole rows of x, a pair of x
// pixels (sx, sx + 1) per lane. The pair's 4x4 outputs span output columns
// 2sx + PAD - 2 + c, c = 0..5, of each of 4 rows; the lane loads c = 1..4 and takes c = 0
// from the lane before (its c = 4) and c = 5 from the lane after (its c = 1): 4 column
// loads a row where UP_PAIR makes 6. Past the row's ends a column takes the clamped one
// UP_PAIR reads (our c = 1 or c = 4), each scaled by its mask and meeting the folded taps in
// bin_up_taps_pair's order: the same bits.
@compute @workgroup_size(CPU_WG)
fn backward_input_up_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(subgroup_id) sg: u32,
                           @builtin(subgroup_invocation_id) lane: u32) {
    let cg = group_at(wid.z, CI);
    let at = lane_place(wid, nwg, sg, lane, BW, 2u, p.n * BH);
    let sx = at.first;
    let sy = at.row % BH;
    let b = at.row / BH;
    var acc: Acc4;
    load_weights4_up_t(lid, GROUP * cg, GCI4, GROUP * OG, GCO);
    if (CO == 1u) {
        var acc_b: Acc4;
        up_lanes_row1(0u, b, sy, sx, lane, &acc, &acc_b);
        up_lanes_row1(1u, b, sy, sx, lane, &acc, &acc_b);
        up_lanes_row1(2u, b, sy, sx, lane, &acc, &acc_b);
        up_lanes_row1(3u, b, sy, sx, lane, &acc, &acc_b);
        if (at.live) {
            store_dx_pair((b * BH + sy) * BW + sx, sx + 1u < BW, cg, acc, acc_b);
        }
        return;
    }
    up_lanes_row(0u, b, sy, sx, lane, &acc);
    up_lanes_row(1u, b, sy, sx, lane, &acc);
    up_lanes_row(2u, b, sy, sx, lane, &acc);
    up_lanes_row(3u, b, sy, sx, lane, &acc);
    if (at.live) {
        let pix = (b * BH + sy) * BW + sx;
        store_dx4(pix * CI, cg, 0u, acc.a0);
        if (GCI > 4u) { store_dx4(pix * CI, cg, 1u, acc.a1); }
        if (sx + 1u < BW) {
            store_dx4((pix + 1u) * CI, cg, 0u, acc.a2);
            if (GCI > 4u) { store_dx4((pix + 1u) * CI, cg, 1u, acc.a3); }
        }
    }
}

// Folded-tap row ty of the pair: output row 2sy + PAD - 2 + ty, columns c0 + c.
fn up_lanes_row(ty: u32, b: u32, sy: u32, sx: u32, lane: u32, acc: ptr<function, Acc4>) {
    let oy = 2 * i32(sy) + i32(PAD) - 2 + i32(ty);
    let rk = inside_at(oy, YH);
    let at = b * YH + tap_at(oy, YH);
    let m = GROUP / 4u * OG;
    let c0 = 2 * i32(sx) + i32(PAD) - 2;
    let m1 = col_load((at * YW + tap_at(c0 + 1, YW)) * (CO / 4u) + m);
    let m2 = col_load((at * YW + tap_at(c0 + 2, YW)) * (CO / 4u) + m);
    let m3 = col_load((at * YW + tap_at(c0 + 3, YW)) * (CO / 4u) + m);
    let m4 = col_load((at * YW + tap_at(c0 + 4, YW)) * (CO / 4u) + m);
    let m0 = col_select(col_shuffled(m4, lane_before(lane), GCO), m1, c0 < 0);
    let m5 = col_select(col_shuffled(m1, lane_after(lane), GCO), m4, c0 + 5 >= i32(YW));
    let g0 = col_scaled(m0, rk * inside_at(c0, YW));
    let g1 = col_scaled(m1, rk * inside_at(c0 + 1, YW));
    let g2 = col_scaled(m2, rk * inside_at(c0 + 2, YW));
    let g3 = col_scaled(m3, rk * inside_at(c0 + 3, YW));
    let g4 = col_scaled(m4, rk * inside_at(c0 + 4, YW));
    let g5 = col_scaled(m5, rk * inside_at(c0 + 5, YW));
    let t = 4u * ty;
    up_lanes_tap(t, g0, g2, acc);
    up_lanes_tap(t + 1u, g1, g3, acc);
    up_lanes_tap(t + 2u, g2, g4, acc);
    up_lanes_tap(t + 3u, g3, g5, acc);
}

// up_lanes_row with one output channel (UP_PAIR's bin_grads_pair1 form: pixel sx's sums in
// acc, sx + 1's in acc_b, input channels any). The lane's columns c = 1..4 are one vec4 of
// dy where they start a vec4 (DY4_COLS), else four scalar loads.
fn up_lanes_row1(ty: u32, b: u32, sy: u32, sx: u32, lane: u32, acc: ptr<function, Acc4>,
                 acc_b: ptr<function, Acc4>) {
    let oy = 2 * i32(sy) + i32(PAD) - 2 + i32(ty);
    let rk = inside_at(oy, YH);
    let at = (b * YH + tap_at(oy, YH)) * YW;
    let c0 = 2 * i32(sx) + i32(PAD) - 2;
    var own: vec4<f32>;
    if (DY4_COLS) {
        own = dy4_masked((at + u32(c0 + 1)) / 4u);
    } else {
        own = vec4<f32>(g_at(at + tap_at(c0 + 1, YW), 1.0), g_at(at + tap_at(c0 + 2, YW), 1.0),
                        g_at(at + tap_at(c0 + 3, YW), 1.0), g_at(at + tap_at(c0 + 4, YW), 1.0));
    }
    let left = select(subgroupShuffle(own.w, lane_before(lane)), own.x, c0 < 0);
    let right = select(subgroupShuffle(own.x, lane_after(lane)), own.w, c0 + 5 >= i32(YW));
    let g0 = rk * inside_at(c0, YW) * left;
    let g1 = rk * inside_at(c0 + 1, YW) * own.x;
    let g2 = rk * inside_at(c0 + 2, YW) * own.y;
    let g3 = rk * inside_at(c0 + 3, YW) * own.z;
    let g4 = rk * inside_at(c0 + 4, YW) * own.w;
    let g5 = rk * inside_at(c0 + 5, YW) * right;
    let t = 4u * ty;
    bin_chan_two(t, 0u, g0, g2, acc, acc_b);
    bin_chan_two(t + 1u, 0u, g1, g3, acc, acc_b);
    bin_chan_two(t + 2u, 0u, g2, g4, acc, acc_b);
    bin_chan_two(t + 3u, 0u, g3, g5, acc, acc_b);
}

// DY4_COLS: with one output channel, 'same' padding and output rows of a multiple of 4
// columns, a lane's columns 2sx .. 2sx + 3 (sx even) are dy's vec4 (2sx) / 4 of its row.
override DY4_COLS: bool = CO == 1u && PAD == 1u && YW % 4u == 0u;

// Folded tap t of both pixels, block by block as bin_grads_pair adds them.
fn up_lanes_tap(t: u32, ga: Col4, gb: Col4, acc: ptr<function, Acc4>) {
    let channels = group_len(CO, OG);
    bin_block_pair(t, 0u, ga.g0, gb.g0, acc);
    if (channels > 4u) { bin_block_pair(t, 1u, ga.g1, gb.g1, acc); }
    if (channels > 8u) { bin_block_pair(t, 2u, ga.g2, gb.g2, acc); }
    if (channels > 12u) { bin_block_pair(t, 3u, ga.g3, gb.g3, acc); }
}

// ---- backward_params: weight and bias gradient, partial sums per chunk of pixels ----
// The accumulators of one tap and one (input group, output group) are an AccW
// (cpu/blocks.wgsl): block (j, m) holds the group's input channels 4j..4j+3 times its output
// channels 4m..4m+3, column l being output 4m + l.

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

// Input block j of one pixel times every output block of the group.
fn bw_block(j: u32, xq: vec4<f32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
            acc: ptr<function, AccW>) {
    acc_add(acc, j, 0u, outer(xq, g0));
    if (GCO > 4u) { acc_add(acc, j, 1u, outer(xq, g1)); }
    if (GCO > 8u) { acc_add(acc, j, 2u, outer(xq, g2)); }
    if (GCO > 12u) { acc_add(acc, j, 3u, outer(xq, g3)); }
}

// Block (j, m) of tap k and groups (cg, og) into partial_out[at..]: row (k * CI + c) * CO + o.
fn bw_store(at: u32, k: u32, cg: u32, og: u32, j: u32, m: u32, v: mat4x4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        for (var i = 0u; i < 4u; i++) {
            let c = GROUP * cg + 4u * j + i;
            let o = GROUP * og + 4u * m + l;
            if (c < CI && o < CO) { partial_out[at + (k * CI + c) * CO + o] = v[l][i]; }
        }
    }
}

fn bw_store_row(at: u32, k: u32, cg: u32, og: u32, j: u32, acc: ptr<function, AccW>) {
    bw_store(at, k, cg, og, j, 0u, acc_get(acc, j, 0u));
    if (GCO > 4u) { bw_store(at, k, cg, og, j, 1u, acc_get(acc, j, 1u)); }
    if (GCO > 8u) { bw_store(at, k, cg, og, j, 2u, acc_get(acc, j, 2u)); }
    if (GCO > 12u) { bw_store(at, k, cg, og, j, 3u, acc_get(acc, j, 3u)); }
}

// Invocation (chunk, tap k) of z-layer (input group cg, output group og): tap k's weight
// gradient for the two groups over the chunk's CHUNK output pixels (under INS and UP, x's
// pixels: below and bw_upsampled; under POOL the pooled ones, each its window's four outputs:
// bw_pooled), and the group's bias gradient (every tap sums it; tap 0 of input group 0
// stores it, under UP up_bias_tap). Partials land at partial_out[chunk][row], row = (k * CI + c) * CO + o, the bias after
// the weights.
//
// Under INS the input's zeros add nothing to a weight's sum, so each invocation walks CHUNK
// of x's pixels (a quarter of the outputs) for its tap: pixel (sy, sx) sits at
// (2sy + OY, 2sx + OX) and meets tap (ky, kx) at output (2sy + OY + PAD - ky,
// 2sx + OX + PAD - kx). The bias sums every output's gradient, which no one tap's walk covers;
// but the four taps with OY + PAD - ky and OX + PAD - kx in {0, 1} meet output
// (2sy + dy, 2sx + dx) for each of the 2x2 offsets (dy, dx), so their walks tile the output
// (the launcher takes 'same' layers whose output is twice x's size). Each of the four stores
// the sum of the gradients it loads anyway in a bias row of its own, BIAS_ROWS of them after
// the weights, which the reduce adds.
override BIAS_ROWS: u32 = select(1u, 4u, INS);

@compute @workgroup_size(PARTIAL_WG)
fn backward_params_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let cg = group_at(wid.z / CO_GROUPS, CI);
    let og = group_at(wid.z % CO_GROUPS, CO);
    let id = flat_partial(wid, lid, nwg);
    let total = p.chunks * 9u;
    let me = min(id, total - 1u);
    let chunk = me / 9u;
    let k = me % 9u;
    let ky = i32(k / 3u);
    let kx = i32(k % 3u);
    // The walked pixels: dy's (under TAKE, the kept outputs), or under INS x's.
    // (Under POOL the pooled pixels, each its window's four outputs: bw_pooled; under UP x's
    // pixels, each with the four outputs a tap reads it at: bw_upsampled.)
    let pixels = select(select(p.n * YH * YW, p.n * XH * XW, INS || UP == 2u), p.n * PH * PW,
                        POOL == 2u);
    // Under INS: the output offset in its 2x2 block this tap meets, when it is one of four.
    let dy = i32(OY + PAD) - ky;
    let dx = i32(OX + PAD) - kx;
    let tiles = dy >= 0 && dy <= 1 && dx >= 0 && dx <= 1;
    // Vec4 blocks of the groups' channels in the whole pixel.
    let j0 = GROUP / 4u * cg;
    let m0 = GROUP / 4u * og;
    var acc: AccW;
    var bacc: Acc4;
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let rc = min(r, pixels - 1u);
        if (POOL == 2u) {
            let pg = pooled_group(rc, m0, select(0.0, 1.0, r < pixels));
            bw_pooled(0u, rc, pg, ky, kx, j0, &acc, &bacc);
            bw_pooled(1u, rc, pg, ky, kx, j0, &acc, &bacc);
            bw_pooled(2u, rc, pg, ky, kx, j0, &acc, &bacc);
            bw_pooled(3u, rc, pg, ky, kx, j0, &acc, &bacc);
            continue;
        }
        if (UP == 2u) {
            bw_upsampled(rc, select(0.0, 1.0, r < pixels), ky, kx, j0, m0, &acc, &bacc);
            continue;
        }
        var gpix = rc;
        var gscale = select(0.0, 1.0, r < pixels);
        var xpix = rc;
        var xscale = 1.0;
        if (INS) {
            let b = rc / (XW * XH);
            let oy = i32(2u * ((rc / XW) % XH)) + dy;
            let ox = i32(2u * (rc % XW)) + dx;
            gscale *= inside_at(oy, HO) * inside_at(ox, WO);
            gpix = (b * HO + tap_at(oy, HO)) * WO + tap_at(ox, WO);
        } else {
            let b = rc / (YW * YH);
            let iy = spread((rc / YW) % YH, TAKE, TY) + ky - i32(PAD);
            let ix = spread(rc % YW, TAKE, TX) + kx - i32(PAD);
            xscale = inside_at(iy, H) * inside_at(ix, W);
            xpix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
        }
        let g = g_group(gpix, m0, gscale);
        bacc = add_acc4(bacc, g);
        bw_block(0u, x4_at(xpix, j0, xscale), g.a0, g.a1, g.a2, g.a3, &acc);
        if (GCI > 4u) { bw_block(1u, x4_at(xpix, j0 + 1u, xscale), g.a0, g.a1, g.a2, g.a3, &acc); }
        if (GCI > 8u) { bw_block(2u, x4_at(xpix, j0 + 2u, xscale), g.a0, g.a1, g.a2, g.a3, &acc); }
        if (GCI > 12u) { bw_block(3u, x4_at(xpix, j0 + 3u, xscale), g.a0, g.a1, g.a2, g.a3, &acc); }
    }
    if (id < total) {
        let at = chunk * ROWS4 * 4u;
        bw_store_tap(at, k, cg, og, &acc);
        // Tap 0's sum (every tap's is the bias's; under UP the tap that meets every output,
        // up_bias_tap), or under INS each tiling tap's own row.
        let bias_row = select(0u, u32(dy * 2 + dx), INS && tiles);
        if (select(k == select(0u, up_bias_tap(), UP == 2u), tiles, INS) && cg == 0u) {
            store_bias_partial(at + 9u * CI * CO + bias_row * CO + GROUP * og, og, bacc);
        }
    }
}

// POOL = 2: output group m0's pooled gradient at pooled pixel `pp` (times `scale`) and its
// winners, loaded once for the window's four places.
struct PooledG { g: Acc4, won: Won }

fn pooled_group(pp: u32, m0: u32, scale: f32) -> PooledG {
    let last = CO / 4u - 1u;
    let at = pp * (CO / 4u);
    var r: PooledG;
    r.g.a0 = g4_at(at + min(m0, last), scale);
    r.won.w0 = winner4[at + min(m0, last)];
    if (GCO > 4u) {
        r.g.a1 = g4_at(at + min(m0 + 1u, last), scale);
        r.won.w1 = winner4[at + min(m0 + 1u, last)];
    }
    if (GCO > 8u) {
        r.g.a2 = g4_at(at + min(m0 + 2u, last), scale);
        r.won.w2 = winner4[at + min(m0 + 2u, last)];
    }
    if (GCO > 12u) {
        r.g.a3 = g4_at(at + min(m0 + 3u, last), scale);
        r.won.w3 = winner4[at + min(m0 + 3u, last)];
    }
    return r;
}

// Window place w's gradient: the pooled one in the channels whose window it won, 0 in the
// rest and where it lies past the output (a 'same' pool's missing row or column).
fn place_grad(pg: PooledG, w: u32, inside: bool) -> Acc4 {
    let z = vec4<f32>(0.0);
    let k = vec4<u32>(w);
    let i = vec4<bool>(inside);
    return Acc4(select(z, pg.g.a0, (pg.won.w0 == k) & i), select(z, pg.g.a1, (pg.won.w1 == k) & i),
                select(z, pg.g.a2, (pg.won.w2 == k) & i), select(z, pg.g.a3, (pg.won.w3 == k) & i));
}

// POOL = 2: place w of pooled pixel `pp`'s window into tap (ky, kx)'s sums: the input pixel
// the tap reads there, times the place's gradient.
fn bw_pooled(w: u32, pp: u32, pg: PooledG, ky: i32, kx: i32, j0: u32, acc: ptr<function, AccW>,
             bacc: ptr<function, Acc4>) {
    let b = pp / (PW * PH);
    let oy = 2u * ((pp / PW) % PH) + w / 2u;
    let ox = 2u * (pp % PW) + w % 2u;
    let g = place_grad(pg, w, oy < HO && ox < WO);
    *bacc = add_acc4(*bacc, g);
    let iy = i32(oy) + ky - i32(PAD);
    let ix = i32(ox) + kx - i32(PAD);
    let xscale = inside_at(iy, H) * inside_at(ix, W);
    let xpix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
    bw_block(0u, x4_at(xpix, j0, xscale), g.a0, g.a1, g.a2, g.a3, acc);
    if (GCI > 4u) { bw_block(1u, x4_at(xpix, j0 + 1u, xscale), g.a0, g.a1, g.a2, g.a3, acc); }
    if (GCI > 8u) { bw_block(2u, x4_at(xpix, j0 + 2u, xscale), g.a0, g.a1, g.a2, g.a3, acc); }
    if (GCI > 12u) { bw_block(3u, x4_at(xpix, j0 + 3u, xscale), g.a0, g.a1, g.a2, g.a3, acc); }
}

// UP = 2: x's pixel `xp` into tap (ky, kx)'s sums. The tap reads it at four outputs, those
// whose input pixel at the tap lies in its 2x2 block, (2sy + ey + PAD - ky, 2sx + ex + PAD -
// kx), so their gradients are added first and x meets their sum once: a quarter of the
// products of walking the outputs.
fn bw_upsampled(xp: u32, scale: f32, ky: i32, kx: i32, j0: u32, m0: u32, acc: ptr<function, AccW>,
                bacc: ptr<function, Acc4>) {
    let b = xp / (XW * XH);
    let oy = 2 * i32((xp / XW) % XH) + i32(PAD) - ky;
    let ox = 2 * i32(xp % XW) + i32(PAD) - kx;
    let g = add_acc4(add_acc4(up_grad(b, oy, ox, m0, scale), up_grad(b, oy, ox + 1, m0, scale)),
                     add_acc4(up_grad(b, oy + 1, ox, m0, scale), up_grad(b, oy + 1, ox + 1, m0, scale)));
    *bacc = add_acc4(*bacc, g);
    bw_block(0u, x4_at(xp, j0, 1.0), g.a0, g.a1, g.a2, g.a3, acc);
    if (GCI > 4u) { bw_block(1u, x4_at(xp, j0 + 1u, 1.0), g.a0, g.a1, g.a2, g.a3, acc); }
    if (GCI > 8u) { bw_block(2u, x4_at(xp, j0 + 2u, 1.0), g.a0, g.a1, g.a2, g.a3, acc); }
    if (GCI > 12u) { bw_block(3u, x4_at(xp, j0 + 3u, 1.0), g.a0, g.a1, g.a2, g.a3, acc); }
}

// Output group m0's gradient at output (oy, ox) of image b, times `scale`; 0 outside.
fn up_grad(b: u32, oy: i32, ox: i32, m0: u32, scale: f32) -> Acc4 {
    let keep = scale * inside_at(oy, HO) * inside_at(ox, WO);
    return g_group((b * HO + tap_at(oy, HO)) * WO + tap_at(ox, WO), m0, keep);
}

// UP = 2: the tap whose walk over x meets every output once, which sums the bias: the centre
// under 'same' padding (an output's own pixel), tap 0 under 'valid' (every tap's reads lie
// inside, the outputs past the last two rows and columns outside the layer's output).
fn up_bias_tap() -> u32 {
    return 4u * PAD;
}

// The upstream gradient of output group m0 at pixel `pix`, times `scale`.
fn g_group(pix: u32, m0: u32, scale: f32) -> Acc4 {
    var g: Acc4;
    g.a0 = g4_pixel(pix, m0, scale);
    if (GCO > 4u) { g.a1 = g4_pixel(pix, m0 + 1u, scale); }
    if (GCO > 8u) { g.a2 = g4_pixel(pix, m0 + 2u, scale); }
    if (GCO > 12u) { g.a3 = g4_pixel(pix, m0 + 3u, scale); }
    return g;
}

fn add_acc4(a: Acc4, b: Acc4) -> Acc4 {
    return Acc4(a.a0 + b.a0, a.a1 + b.a1, a.a2 + b.a2, a.a3 + b.a3);
}

// Output group og's bias partial sums from `at`; none past CO.
fn store_bias_partial(at: u32, og: u32, a: Acc4) {
    for (var l = 0u; l < 4u; l++) {
        let o = GROUP * og + l;
        if (o < CO) { partial_out[at + l] = a.a0[l]; }
        if (o + 4u < CO) { partial_out[at + 4u + l] = a.a1[l]; }
        if (o + 8u < CO) { partial_out[at + 8u + l] = a.a2[l]; }
        if (o + 12u < CO) { partial_out[at + 12u + l] = a.a3[l]; }
    }
}

// ---- backward_params_row: a kernel row's three taps per invocation ----
// backward_params_partial's walk for a layer with no fold, one invocation per (chunk, kernel
// row ky) taking the row's three taps: each pixel's gradient is loaded once for the three,
// and the x pixel tap kx reads at output (oy, ox) is the one tap kx + 1 read at (oy, ox - 1),
// so along a row each x pixel is loaded once, not three times (two more where a row starts).
// lavapipe's time in backward_params_partial is in those loads (a guarded loop over the
// vector's lanes each), not in the products. Each tap's sums take the same products in the
// same order as there: the same partial sums, the same bits.

// Input channel blocks j0..j0+3 of pixel `pix`, unscaled.
fn x_group(pix: u32, j0: u32) -> Acc4 {
    var v: Acc4;
    v.a0 = x4_at(pix, j0, 1.0);
    if (GCI > 4u) { v.a1 = x4_at(pix, j0 + 1u, 1.0); }
    if (GCI > 8u) { v.a2 = x4_at(pix, j0 + 2u, 1.0); }
    if (GCI > 12u) { v.a3 = x4_at(pix, j0 + 3u, 1.0); }
    return v;
}

// One pixel of backward_params_row's walk: walked pixel r (clamped to the last, `live` 0 past
// it), the x blocks taps (ky, 0..2) read there, and each tap's scale (0 where it reads
// padding). Along a row the first two are the last pixel's second and third (`last` its rc,
// carried1 and carried2 its xs1 and xs2); elsewhere all three are loaded.
struct RowPixel { rc: u32, live: f32, keep: vec3<f32>, xs0: Acc4, xs1: Acc4, xs2: Acc4 }

fn row_pixel(r: u32, pixels: u32, ky: i32, j0: u32, last: u32, carried1: Acc4, carried2: Acc4) -> RowPixel {
    var o: RowPixel;
    o.rc = min(r, pixels - 1u);
    o.live = select(0.0, 1.0, r < pixels);
    let ox = o.rc % WO;
    let iy = i32((o.rc / WO) % HO) + ky - i32(PAD);
    let row = (o.rc / (WO * HO) * H + tap_at(iy, H)) * W;
    let ix = i32(ox) - i32(PAD);
    if (o.rc == last + 1u && ox != 0u) {
        o.xs0 = carried1;
        o.xs1 = carried2;
    } else {
        o.xs0 = x_group(row + tap_at(ix, W), j0);
        o.xs1 = x_group(row + tap_at(ix + 1, W), j0);
    }
    o.xs2 = x_group(row + tap_at(ix + 2, W), j0);
    let ys = inside_at(iy, H);
    o.keep = ys * vec3<f32>(inside_at(ix, W), inside_at(ix + 1, W), inside_at(ix + 2, W));
    return o;
}

// Two pixels' products into one tap's sums, each sum taking pixel a's then pixel b's.
fn bw_tap_two(xa: Acc4, sa: f32, ga: Acc4, xb: Acc4, sb: f32, gb: Acc4, acc: ptr<function, AccW>) {
    bw_block_two(0u, sa * xa.a0, ga, sb * xb.a0, gb, acc);
    if (GCI > 4u) { bw_block_two(1u, sa * xa.a1, ga, sb * xb.a1, gb, acc); }
    if (GCI > 8u) { bw_block_two(2u, sa * xa.a2, ga, sb * xb.a2, gb, acc); }
    if (GCI > 12u) { bw_block_two(3u, sa * xa.a3, ga, sb * xb.a3, gb, acc); }
}

fn bw_block_two(j: u32, xa: vec4<f32>, ga: Acc4, xb: vec4<f32>, gb: Acc4, acc: ptr<function, AccW>) {
    acc_add(acc, j, 0u, outer(xa, ga.a0));
    acc_add(acc, j, 0u, outer(xb, gb.a0));
    if (GCO > 4u) {
        acc_add(acc, j, 1u, outer(xa, ga.a1));
        acc_add(acc, j, 1u, outer(xb, gb.a1));
    }
    if (GCO > 8u) {
        acc_add(acc, j, 2u, outer(xa, ga.a2));
        acc_add(acc, j, 2u, outer(xb, gb.a2));
    }
    if (GCO > 12u) {
        acc_add(acc, j, 3u, outer(xa, ga.a3));
        acc_add(acc, j, 3u, outer(xb, gb.a3));
    }
}

fn bw_store_tap(at: u32, k: u32, cg: u32, og: u32, acc: ptr<function, AccW>) {
    bw_store_row(at, k, cg, og, 0u, acc);
    if (GCI > 4u) { bw_store_row(at, k, cg, og, 1u, acc); }
    if (GCI > 8u) { bw_store_row(at, k, cg, og, 2u, acc); }
    if (GCI > 12u) { bw_store_row(at, k, cg, og, 3u, acc); }
}

@compute @workgroup_size(PARTIAL_WG)
fn backward_params_row(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let cg = group_at(wid.z / CO_GROUPS, CI);
    let og = group_at(wid.z % CO_GROUPS, CO);
    let id = flat_partial(wid, lid, nwg);
    let total = p.chunks * 3u;
    let me = min(id, total - 1u);
    let chunk = me / 3u;
    let ky = i32(me % 3u);
    let pixels = p.n * HO * WO;
    let j0 = GROUP / 4u * cg;
    let m0 = GROUP / 4u * og;
    // Taps (ky, 0), (ky, 1), (ky, 2): their sums and the x blocks they read at this pixel.
    var acc0: AccW;
    var acc1: AccW;
    var acc2: AccW;
    var bacc: Acc4;
    var xs0: Acc4;
    var xs1: Acc4;
    var xs2: Acc4;
    // Two pixels a step (CHUNK is even): each sum takes pixel a's product then pixel b's, as
    // one pixel a step would, but is loaded and stored once for both where its registers
    // spill (LLVM keeps it between them): ~9% of this kernel on lavapipe.
    var last = 0xffffffffu;
    for (var t = 0u; t < CHUNK; t += 2u) {
        let a = row_pixel(chunk * CHUNK + t, pixels, ky, j0, last, xs1, xs2);
        let b = row_pixel(chunk * CHUNK + t + 1u, pixels, ky, j0, a.rc, a.xs1, a.xs2);
        let ga = g_group(a.rc, m0, a.live);
        let gb = g_group(b.rc, m0, b.live);
        bacc = add_acc4(add_acc4(bacc, ga), gb);
        bw_tap_two(a.xs0, a.keep.x, ga, b.xs0, b.keep.x, gb, &acc0);
        bw_tap_two(a.xs1, a.keep.y, ga, b.xs1, b.keep.y, gb, &acc1);
        bw_tap_two(a.xs2, a.keep.z, ga, b.xs2, b.keep.z, gb, &acc2);
        xs1 = b.xs1;
        xs2 = b.xs2;
        last = b.rc;
    }
    if (id < total) {
        let at = chunk * ROWS4 * 4u;
        let k = 3u * u32(ky);
        bw_store_tap(at, k, cg, og, &acc0);
        bw_store_tap(at, k + 1u, cg, og, &acc1);
        bw_store_tap(at, k + 2u, cg, og, &acc2);
        if (k == 0u && cg == 0u) { store_bias_partial(at + 9u * CI * CO + GROUP * og, og, bacc); }
    }
}

// ---- backward_params_up: an upsampled layer's weight gradient, every tap per invocation ----
// UP = 2 with 2 to 8 input channels: one invocation per (chunk of x's pixels, vec4 q of output
// channels) takes all 9 taps. Over the 9 taps an x pixel (sy, sx) meets the 4x4 outputs at rows
// and columns 2s + PAD - 2 .. 2s + PAD + 1, four per tap (bw_upsampled's); loading those 16
// once for every tap, one vec4 of channels each, 18 vec4 loads per x pixel feed 9 x 8 x 4
// products where bw_upsampled's 18 fed 8 x 16. Each tap's four gradients are added, and meet
// x, in bw_upsampled's order over the same chunks: the same partial sums.

// Tap k's sums, input channels 0..3 (a) and 4..7 (b) times the invocation's 4 outputs: as
// AccW's blocks, column l being output 4q + l.
struct AccTaps {
    k0a: mat4x4<f32>, k0b: mat4x4<f32>, k1a: mat4x4<f32>, k1b: mat4x4<f32>,
    k2a: mat4x4<f32>, k2b: mat4x4<f32>, k3a: mat4x4<f32>, k3b: mat4x4<f32>,
    k4a: mat4x4<f32>, k4b: mat4x4<f32>, k5a: mat4x4<f32>, k5b: mat4x4<f32>,
    k6a: mat4x4<f32>, k6b: mat4x4<f32>, k7a: mat4x4<f32>, k7b: mat4x4<f32>,
    k8a: mat4x4<f32>, k8b: mat4x4<f32>,
}

// k and j are constants wherever these are called: all but one branch fold away.
fn taps_add(acc: ptr<function, AccTaps>, k: u32, j: u32, v: mat4x4<f32>) {
    if (k == 0u && j == 0u) { (*acc).k0a += v; }
    if (k == 0u && j == 1u) { (*acc).k0b += v; }
    if (k == 1u && j == 0u) { (*acc).k1a += v; }
    if (k == 1u && j == 1u) { (*acc).k1b += v; }
    if (k == 2u && j == 0u) { (*acc).k2a += v; }
    if (k == 2u && j == 1u) { (*acc).k2b += v; }
    if (k == 3u && j == 0u) { (*acc).k3a += v; }
    if (k == 3u && j == 1u) { (*acc).k3b += v; }
    if (k == 4u && j == 0u) { (*acc).k4a += v; }
    if (k == 4u && j == 1u) { (*acc).k4b += v; }
    if (k == 5u && j == 0u) { (*acc).k5a += v; }
    if (k == 5u && j == 1u) { (*acc).k5b += v; }
    if (k == 6u && j == 0u) { (*acc).k6a += v; }
    if (k == 6u && j == 1u) { (*acc).k6b += v; }
    if (k == 7u && j == 0u) { (*acc).k7a += v; }
    if (k == 7u && j == 1u) { (*acc).k7b += v; }
    if (k == 8u && j == 0u) { (*acc).k8a += v; }
    if (k == 8u && j == 1u) { (*acc).k8b += v; }
}

fn taps_get(acc: ptr<function, AccTaps>, k: u32, j: u32) -> mat4x4<f32> {
    if (k == 0u && j == 0u) { return (*acc).k0a; }
    if (k == 0u && j == 1u) { return (*acc).k0b; }
    if (k == 1u && j == 0u) { return (*acc).k1a; }
    if (k == 1u && j == 1u) { return (*acc).k1b; }
    if (k == 2u && j == 0u) { return (*acc).k2a; }
    if (k == 2u && j == 1u) { return (*acc).k2b; }
    if (k == 3u && j == 0u) { return (*acc).k3a; }
    if (k == 3u && j == 1u) { return (*acc).k3b; }
    if (k == 4u && j == 0u) { return (*acc).k4a; }
    if (k == 4u && j == 1u) { return (*acc).k4b; }
    if (k == 5u && j == 0u) { return (*acc).k5a; }
    if (k == 5u && j == 1u) { return (*acc).k5b; }
    if (k == 6u && j == 0u) { return (*acc).k6a; }
    if (k == 6u && j == 1u) { return (*acc).k6b; }
    if (k == 7u && j == 0u) { return (*acc).k7a; }
    if (k == 7u && j == 1u) { return (*acc).k7b; }
    if (k == 8u && j == 0u) { return (*acc).k8a; }
    return (*acc).k8b;
}

// The 4x4 outputs' gradients (output vec4 q) around an x pixel: row a, column c.
struct Around {
    g00: vec4<f32>, g01: vec4<f32>, g02: vec4<f32>, g03: vec4<f32>,
    g10: vec4<f32>, g11: vec4<f32>, g12: vec4<f32>, g13: vec4<f32>,
    g20: vec4<f32>, g21: vec4<f32>, g22: vec4<f32>, g23: vec4<f32>,
    g30: vec4<f32>, g31: vec4<f32>, g32: vec4<f32>, g33: vec4<f32>,
}

// Row a of them: outputs (oy, ox0 + c), each as up_grad loads it (0 outside).
fn around_row(b: u32, oy: i32, ox0: i32, q: u32, scale: f32) -> mat4x4<f32> {
    let keep = scale * inside_at(oy, HO);
    let row = (b * HO + tap_at(oy, HO)) * WO;
    return mat4x4<f32>(g4_pixel(row + tap_at(ox0, WO), q, keep * inside_at(ox0, WO)),
                       g4_pixel(row + tap_at(ox0 + 1, WO), q, keep * inside_at(ox0 + 1, WO)),
                       g4_pixel(row + tap_at(ox0 + 2, WO), q, keep * inside_at(ox0 + 2, WO)),
                       g4_pixel(row + tap_at(ox0 + 3, WO), q, keep * inside_at(ox0 + 3, WO)));
}

fn around_of(b: u32, sy: u32, sx: u32, q: u32, scale: f32) -> Around {
    let oy = 2 * i32(sy) + i32(PAD) - 2;
    let ox = 2 * i32(sx) + i32(PAD) - 2;
    let r0 = around_row(b, oy, ox, q, scale);
    let r1 = around_row(b, oy + 1, ox, q, scale);
    let r2 = around_row(b, oy + 2, ox, q, scale);
    let r3 = around_row(b, oy + 3, ox, q, scale);
    return Around(r0[0], r0[1], r0[2], r0[3], r1[0], r1[1], r1[2], r1[3],
                  r2[0], r2[1], r2[2], r2[3], r3[0], r3[1], r3[2], r3[3]);
}

// The gradient at around row a, column c (constants wherever this is called).
fn around_at(n: ptr<function, Around>, a: u32, c: u32) -> vec4<f32> {
    let i = 4u * a + c;
    if (i == 0u) { return (*n).g00; }
    if (i == 1u) { return (*n).g01; }
    if (i == 2u) { return (*n).g02; }
    if (i == 3u) { return (*n).g03; }
    if (i == 4u) { return (*n).g10; }
    if (i == 5u) { return (*n).g11; }
    if (i == 6u) { return (*n).g12; }
    if (i == 7u) { return (*n).g13; }
    if (i == 8u) { return (*n).g20; }
    if (i == 9u) { return (*n).g21; }
    if (i == 10u) { return (*n).g22; }
    if (i == 11u) { return (*n).g23; }
    if (i == 12u) { return (*n).g30; }
    if (i == 13u) { return (*n).g31; }
    if (i == 14u) { return (*n).g32; }
    return (*n).g33;
}

// Tap k = 3 ky + kx: its four outputs' gradients added as bw_upsampled adds them (rows
// 2 - ky, 3 - ky and columns 2 - kx, 3 - kx of the 4x4), times the x pixel's channels.
fn up_tap(k: u32, n: ptr<function, Around>, x0: vec4<f32>, x1: vec4<f32>,
          acc: ptr<function, AccTaps>, bacc: ptr<function, vec4<f32>>) {
    let a = 2u - k / 3u;
    let c = 2u - k % 3u;
    let g = (around_at(n, a, c) + around_at(n, a, c + 1u)) +
            (around_at(n, a + 1u, c) + around_at(n, a + 1u, c + 1u));
    if (k == up_bias_tap()) { *bacc += g; }
    taps_add(acc, k, 0u, outer(x0, g));
    if (GCI > 4u) { taps_add(acc, k, 1u, outer(x1, g)); }
}

fn up_store(at: u32, k: u32, q: u32, acc: ptr<function, AccTaps>) {
    bw_store(at, k, 0u, 0u, 0u, q, taps_get(acc, k, 0u));
    if (GCI > 4u) { bw_store(at, k, 0u, 0u, 1u, q, taps_get(acc, k, 1u)); }
}


@compute @workgroup_size(PARTIAL_WG)
fn backward_params_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_partial(wid, lid, nwg);
    let quads = (CO + 3u) / 4u;
    let total = p.chunks * quads;
    let me = min(id, total - 1u);
    let chunk = me / quads;
    let q = me % quads;
    let pixels = p.n * XH * XW;
    var acc: AccTaps;
    var bacc = vec4<f32>(0.0);
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let xp = min(r, pixels - 1u);
        var n = around_of(xp / (XW * XH), (xp / XW) % XH, xp % XW, q, select(0.0, 1.0, r < pixels));
        let x0 = x4_at(xp, 0u, 1.0);
        let x1 = x4_at(xp, 1u, 1.0);
        up_tap(0u, &n, x0, x1, &acc, &bacc);
        up_tap(1u, &n, x0, x1, &acc, &bacc);
        up_tap(2u, &n, x0, x1, &acc, &bacc);
        up_tap(3u, &n, x0, x1, &acc, &bacc);
        up_tap(4u, &n, x0, x1, &acc, &bacc);
        up_tap(5u, &n, x0, x1, &acc, &bacc);
        up_tap(6u, &n, x0, x1, &acc, &bacc);
        up_tap(7u, &n, x0, x1, &acc, &bacc);
        up_tap(8u, &n, x0, x1, &acc, &bacc);
    }
    if (id < total) {
        let at = chunk * ROWS4 * 4u;
        for (var k = 0u; k < 9u; k++) { up_store(at, k, q, &acc); }
        for (var l = 0u; l < 4u; l++) {
            if (4u * q + l < CO) { partial_out[at + 9u * CI * CO + 4u * q + l] = bacc[l]; }
        }
    }
}

// ---- backward_params_thin: the same sums when one side has a single channel ----
//
// The first layer (1 input channel) and the last (1 output) would waste most of AccW's
// lanes and load their wide side at each of the 9 taps. Here the wide side's channels
// (WIDE of them, GROUP per z-layer) load once per pixel and all 9 taps accumulate in
// registers: for CI == 1 the invocation walks output pixels (the input at each tap is one
// scalar; under POOL the pooled pixels, thin_pooled), for CO == 1 it walks input pixels (the
// gradient at each tap is one scalar; under UP x's pixels, thin_upsampled).

override WIDE: u32 = 1u;  // CO when CI == 1, else CI (set by the launcher)
override GWIDE: u32 = min(WIDE, GROUP);

struct Acc9 {
    t0: Acc4, t1: Acc4, t2: Acc4, t3: Acc4, t4: Acc4, t5: Acc4, t6: Acc4, t7: Acc4, t8: Acc4,
}

// a + v * w over a group of the WIDE channels (by value: a pointer to a member, passed on,
// trips naga's SPIR-V writer).
fn axpy4(a: Acc4, v: f32, w: Acc4) -> Acc4 {
    var r = a;
    r.a0 += v * w.a0;
    if (GWIDE > 4u) { r.a1 += v * w.a1; }
    if (GWIDE > 8u) { r.a2 += v * w.a2; }
    if (GWIDE > 12u) { r.a3 += v * w.a3; }
    return r;
}

// k is a constant wherever this is called: all but one branch fold away.
fn acc9_add(acc: ptr<function, Acc9>, k: u32, v: f32, wide: Acc4) {
    if (k == 0u) { (*acc).t0 = axpy4((*acc).t0, v, wide); }
    if (k == 1u) { (*acc).t1 = axpy4((*acc).t1, v, wide); }
    if (k == 2u) { (*acc).t2 = axpy4((*acc).t2, v, wide); }
    if (k == 3u) { (*acc).t3 = axpy4((*acc).t3, v, wide); }
    if (k == 4u) { (*acc).t4 = axpy4((*acc).t4, v, wide); }
    if (k == 5u) { (*acc).t5 = axpy4((*acc).t5, v, wide); }
    if (k == 6u) { (*acc).t6 = axpy4((*acc).t6, v, wide); }
    if (k == 7u) { (*acc).t7 = axpy4((*acc).t7, v, wide); }
    if (k == 8u) { (*acc).t8 = axpy4((*acc).t8, v, wide); }
}

fn acc9_get(acc: ptr<function, Acc9>, k: u32) -> Acc4 {
    if (k == 0u) { return (*acc).t0; }
    if (k == 1u) { return (*acc).t1; }
    if (k == 2u) { return (*acc).t2; }
    if (k == 3u) { return (*acc).t3; }
    if (k == 4u) { return (*acc).t4; }
    if (k == 5u) { return (*acc).t5; }
    if (k == 6u) { return (*acc).t6; }
    if (k == 7u) { return (*acc).t7; }
    if (k == 8u) { return (*acc).t8; }
    var none: Acc4;
    return none;
}

// Wide group wg at pixel `pix` (output channels of the gradient when CI == 1, else input
// channels), times `scale`.
fn wide_at(pix: u32, wg: u32, scale: f32) -> Acc4 {
    let j0 = GROUP / 4u * wg;
    var w: Acc4;
    if (CI == 1u) {
        w.a0 = g4_pixel(pix, j0, scale);
        if (GWIDE > 4u) { w.a1 = g4_pixel(pix, j0 + 1u, scale); }
        if (GWIDE > 8u) { w.a2 = g4_pixel(pix, j0 + 2u, scale); }
        if (GWIDE > 12u) { w.a3 = g4_pixel(pix, j0 + 3u, scale); }
    } else {
        w.a0 = x4_at(pix, j0, scale);
        if (GWIDE > 4u) { w.a1 = x4_at(pix, j0 + 1u, scale); }
        if (GWIDE > 8u) { w.a2 = x4_at(pix, j0 + 2u, scale); }
        if (GWIDE > 12u) { w.a3 = x4_at(pix, j0 + 3u, scale); }
    }
    return w;
}

// Tap k seen from pixel (b, py, px) of the walked side: the thin side's scalar there.
fn thin_tap(k: u32, b: u32, py: i32, px: i32, acc: ptr<function, Acc9>, wide: Acc4) {
    let ky = i32(k / 3u);
    let kx = i32(k % 3u);
    if (CI == 1u) {
        // walking outputs: the input at (oy + ky - PAD, ox + kx - PAD)
        let iy = py + ky - i32(PAD);
        let ix = px + kx - i32(PAD);
        let keep = inside_at(iy, H) * inside_at(ix, W);
        acc9_add(acc, k, keep * x[x_pixel(b, tap_at(iy, H), tap_at(ix, W))], wide);
    } else {
        // walking inputs: the gradient at (iy + PAD - ky, ix + PAD - kx)
        let oy = py + i32(PAD) - ky;
        let ox = px + i32(PAD) - kx;
        let keep = inside_at(oy, HO) * inside_at(ox, WO);
        acc9_add(acc, k, g_at((b * HO + tap_at(oy, HO)) * WO + tap_at(ox, WO), keep), wide);
    }
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

// POOL = 2, REUSE: thin_tap's sum with the input from the patch: place w's tap k reads the
// patch at (w / 2 + ky, w % 2 + kx).
fn thin_tap_patch(k: u32, w: u32, oy: u32, ox: u32, pt: Patch, acc: ptr<function, Acc9>, wide: Acc4) {
    let ky = k / 3u;
    let kx = k % 3u;
    let iy = i32(oy + ky) - i32(PAD);
    let ix = i32(ox + kx) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    acc9_add(acc, k, keep * patch_at(pt, w / 2u + ky, w % 2u + kx), wide);
}

// POOL = 2, one input channel: place w of pooled pixel `pp`'s window, its gradient into the
// bias and every tap.
// (Under REUSE, `pt` holds the window's input patch: pooled_x_patch.)
fn thin_pooled(w: u32, pp: u32, pg: PooledG, pt: Patch, acc: ptr<function, Acc9>,
               bacc: ptr<function, Acc4>) {
    let b = pp / (PW * PH);
    let oy = 2u * ((pp / PW) % PH) + w / 2u;
    let ox = 2u * (pp % PW) + w % 2u;
    let wide = place_grad(pg, w, oy < HO && ox < WO);
    *bacc = add_acc4(*bacc, wide);
    if (REUSE) {
        thin_tap_patch(0u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(1u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(2u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(3u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(4u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(5u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(6u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(7u, w, oy, ox, pt, acc, wide);
        thin_tap_patch(8u, w, oy, ox, pt, acc, wide);
        return;
    }
    thin_tap(0u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(1u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(2u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(3u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(4u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(5u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(6u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(7u, b, i32(oy), i32(ox), acc, wide);
    thin_tap(8u, b, i32(oy), i32(ox), acc, wide);
}

// UP = 2, one output channel: tap k of x's pixel `xp` (its channels `wide`; `live` 0 past the
// walk): the gradient summed over the four outputs the tap reads it at, as bw_upsampled; the
// bias from the tap that meets every output.
// (Under REUSE the gradients come from `pt`: up_g_patch.)
fn thin_upsampled(k: u32, xp: u32, live: f32, wide: Acc4, pt: Patch, acc: ptr<function, Acc9>,
                  bacc: ptr<function, Acc4>) {
    let b = xp / (XW * XH);
    let oy = 2 * i32((xp / XW) % XH) + i32(PAD) - i32(k / 3u);
    let ox = 2 * i32(xp % XW) + i32(PAD) - i32(k % 3u);
    var g: f32;
    if (REUSE) {
        let r = 2u - k / 3u;
        let c = 2u - k % 3u;
        g = (patch_at(pt, r, c) + patch_at(pt, r, c + 1u)) +
            (patch_at(pt, r + 1u, c) + patch_at(pt, r + 1u, c + 1u));
    } else {
        g = (up_grad1(b, oy, ox) + up_grad1(b, oy, ox + 1)) +
            (up_grad1(b, oy + 1, ox) + up_grad1(b, oy + 1, ox + 1));
    }
    acc9_add(acc, k, g, wide);
    if (k == up_bias_tap()) { (*bacc).a0.x += live * g; }
}

// UP = 2, REUSE: the output gradients the 9 taps of x's pixel `xp` read, rows and columns
// from 2s + PAD - 2 (thin_upsampled's outputs for tap (2, 2)).
fn up_g_patch(xp: u32) -> Patch {
    let b = xp / (XW * XH);
    let oy = 2 * i32((xp / XW) % XH) + i32(PAD) - 2;
    let ox = 2 * i32(xp % XW) + i32(PAD) - 2;
    var pt: Patch;
    pt.r0 = up_g_row(b, oy, ox);
    pt.r1 = up_g_row(b, oy + 1, ox);
    pt.r2 = up_g_row(b, oy + 2, ox);
    pt.r3 = up_g_row(b, oy + 3, ox);
    return pt;
}

fn up_g_row(b: u32, oy: i32, ox: i32) -> vec4<f32> {
    return vec4<f32>(up_grad1(b, oy, ox), up_grad1(b, oy, ox + 1), up_grad1(b, oy, ox + 2),
                     up_grad1(b, oy, ox + 3));
}

// The single output channel's gradient at output (oy, ox) of image b; 0 outside.
fn up_grad1(b: u32, oy: i32, ox: i32) -> f32 {
    let keep = inside_at(oy, HO) * inside_at(ox, WO);
    return g_at((b * HO + tap_at(oy, HO)) * WO + tap_at(ox, WO), keep);
}

// Tap k's sums for wide group wg (channels from `first`): rows k * WIDE + channel.
fn thin_store(at: u32, k: u32, first: u32, a: Acc4) {
    for (var l = 0u; l < 4u; l++) {
        let c = first + l;
        if (c < WIDE) { partial_out[at + k * WIDE + c] = a.a0[l]; }
        if (c + 4u < WIDE) { partial_out[at + k * WIDE + c + 4u] = a.a1[l]; }
        if (c + 8u < WIDE) { partial_out[at + k * WIDE + c + 8u] = a.a2[l]; }
        if (c + 12u < WIDE) { partial_out[at + k * WIDE + c + 12u] = a.a3[l]; }
    }
}

// Invocation = chunk of CHUNK walked pixels, z-layer = wide group; partials as
// backward_params_partial's. With CO == 1 the bias gradient is group 0's to store.
@compute @workgroup_size(PARTIAL_WG)
fn backward_params_thin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = group_at(wid.z, WIDE);
    let first = GROUP * wg;
    let id = flat_partial(wid, lid, nwg);
    let chunk = min(id, p.chunks - 1u);
    let out_pixels = p.n * HO * WO;
    // The walked side: outputs when CI == 1 (dy's: under TAKE the kept ones), else inputs
    // (never fewer than the outputs).
    // (Under UP with one output channel x's pixels, each with the four outputs a tap reads
    // it at: thin_upsampled.)
    let ph = select(select(H, XH, UP == 2u), select(YH, PH, POOL == 2u), CI == 1u);
    let pw = select(select(W, XW, UP == 2u), select(YW, PW, POOL == 2u), CI == 1u);
    let pixels = p.n * ph * pw;
    var acc: Acc9;
    var bacc: Acc4;
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let rc = min(r, pixels - 1u);
        if (POOL == 2u) {
            // (CI == 1: takes_pooled leaves no single output channel.) Pooled pixels, each
            // its window's four outputs.
            let pg = pooled_group(rc, GROUP / 4u * wg, select(0.0, 1.0, r < pixels));
            var pt: Patch;
            if (REUSE) { pt = pooled_x_patch(rc); }
            thin_pooled(0u, rc, pg, pt, &acc, &bacc);
            thin_pooled(1u, rc, pg, pt, &acc, &bacc);
            thin_pooled(2u, rc, pg, pt, &acc, &bacc);
            thin_pooled(3u, rc, pg, pt, &acc, &bacc);
            continue;
        }
        if (CI != 1u && UP == 2u) {
            let live = select(0.0, 1.0, r < pixels);
            let wide = wide_at(rc, wg, live);
            var pt: Patch;
            if (REUSE) { pt = up_g_patch(rc); }
            thin_upsampled(0u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(1u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(2u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(3u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(4u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(5u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(6u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(7u, rc, live, wide, pt, &acc, &bacc);
            thin_upsampled(8u, rc, live, wide, pt, &acc, &bacc);
            continue;
        }
        // Under TAKE (CI == 1 only: the kept outputs) the walked pixel's place in the layer's
        // full output, where its taps meet the input.
        let px = spread(rc % pw, TAKE, TX);
        let py = spread((rc / pw) % ph, TAKE, TY);
        let b = rc / (pw * ph);
        // The wide side: dy at the walked output, or x under the walked input pixel.
        let at = select(x_pixel(b, u32(py), u32(px)), rc, CI == 1u);
        let wide = wide_at(at, wg, select(0.0, 1.0, r < pixels));
        if (CI == 1u) {
            bacc.a0 += wide.a0;
            bacc.a1 += wide.a1;
            bacc.a2 += wide.a2;
            bacc.a3 += wide.a3;
        } else {
            let ro = min(r, out_pixels - 1u);
            bacc.a0.x += g_at(ro, select(0.0, 1.0, r < out_pixels));
        }
        thin_tap(0u, b, py, px, &acc, wide);
        thin_tap(1u, b, py, px, &acc, wide);
        thin_tap(2u, b, py, px, &acc, wide);
        thin_tap(3u, b, py, px, &acc, wide);
        thin_tap(4u, b, py, px, &acc, wide);
        thin_tap(5u, b, py, px, &acc, wide);
        thin_tap(6u, b, py, px, &acc, wide);
        thin_tap(7u, b, py, px, &acc, wide);
        thin_tap(8u, b, py, px, &acc, wide);
    }
    if (id < p.chunks) {
        let at = chunk * ROWS4 * 4u;
        for (var k = 0u; k < 9u; k++) { thin_store(at, k, first, acc9_get(&acc, k)); }
        // The bias: the group's output channels when CI == 1; the single one, once, else.
        let bias_first = select(0u, first, CI == 1u);
        let bias_at = at + 9u * CI * CO + bias_first;
        if (CI == 1u || wg == 0u) {
            for (var l = 0u; l < 4u; l++) {
                let o = bias_first + l;
                if (o < CO) { partial_out[bias_at + l] = bacc.a0[l]; }
                if (o + 4u < CO) { partial_out[bias_at + 4u + l] = bacc.a1[l]; }
                if (o + 8u < CO) { partial_out[bias_at + 8u + l] = bacc.a2[l]; }
                if (o + 12u < CO) { partial_out[bias_at + 12u + l] = bacc.a3[l]; }
            }
        }
    }
}

// Each invocation sums four rows over the chunks, in chunk order (deterministic).
// Under INS (backward_params_partial) the bias has BIAS_ROWS rows: invocations past the
// rows' vec4s each add one bias's, chunk by chunk, then row by row.
@compute @workgroup_size(PARTIAL_WG)
fn backward_params_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_partial(wid, lid, nwg);
    let q = min(id, ROWS4 - 1u);
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.chunks; c++) {
        acc += partial_in[c * ROWS4 + q];
    }
    let weights = 9u * CI * CO;
    if (id < ROWS4) {
        for (var l = 0u; l < 4u; l++) {
            let i = 4u * q + l;
            if (i < weights) {
                dw[i] = acc[l];
            } else if (WITH_BIAS && !INS && i < weights + CO) {
                db[i - weights] = acc[l];
            }
        }
    } else if (INS && WITH_BIAS && id - ROWS4 < CO) {
        let o = id - ROWS4;
        var sum = 0.0;
        for (var c = 0u; c < p.chunks; c++) {
            var chunk_sum = 0.0;
            for (var row = 0u; row < BIAS_ROWS; row++) {
                let i = weights + row * CO + o;
                chunk_sum += partial_in[c * ROWS4 + i / 4u][i % 4u];
            }
            sum += chunk_sum;
        }
        db[o] = sum;
    }
}
