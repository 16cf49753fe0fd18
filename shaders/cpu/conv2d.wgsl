// conv2d for CPU adapters: the ops of shaders/conv2d.wgsl for 3x3 kernels with at most 16
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
// - channels load as vec4 (zero-padded past the count);
// - no invocation returns early (a returned lane masks every later load): indices are clamped
//   and only the stores are guarded;
// - a layer with one output channel computes four neighbouring pixels per invocation, so each
//   loaded input serves three of their taps;
// - the weight gradient has no split over 16-pixel chunks: each invocation sums CHUNK pixels
//   for one tap (or, when one side has a single channel, for all 9 taps with the wide side
//   loaded once per pixel), and a short reduce adds the chunks.

override CI: u32 = 1u;     // input channels, <= 16
override CO: u32 = 1u;     // output channels, <= 16
override H: u32 = 1u;
override W: u32 = 1u;
override PAD: u32 = 1u;    // 1 'same', 0 'valid'
override HO: u32 = H + 2u * PAD - 2u;
override WO: u32 = W + 2u * PAD - 2u;
override CHUNK: u32 = 256u;  // output pixels per weight-gradient partial sum
// Whether the reduce writes the bias gradient (backward_params) or only the weights.
override WITH_BIAS: bool = true;
// Rows of one chunk's partial sums: every weight, then the bias, padded to whole vec4s.
override ROWS4: u32 = (9u * CI * CO + CO + 3u) / 4u;

// Channels an invocation holds (ops::cpu::conv2d::MAXC): four vec4 accumulators.
const MAXC: u32 = 16u;
// Invocations per workgroup: ops::cpu::conv2d::CPU_WG. Large, so that each workgroup's copy
// of the weights into workgroup memory serves many pixels.
const CPU_WG: u32 = 128u;

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

fn flat_cpu(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * CPU_WG + lid;
}

fn tap_at(v: i32, size: u32) -> u32 {
    return u32(clamp(v, 0, i32(size) - 1));
}

fn inside_at(v: i32, size: u32) -> f32 {
    return select(0.0, 1.0, v >= 0 && v < i32(size));
}

// ---- forward: one output pixel per invocation, every output channel ----

// Accumulators: four named vec4 (output channels 4j..4j+3), never an array: arrays of
// accumulators make lavapipe's NIR passes take minutes on the written-out taps.
struct Acc4 { a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32> }

// The kernel as [9 * CI][CO4] (load_weights4), zero-padded past CO: 9 KiB.
var<workgroup> wsh4: array<vec4<f32>, 9u * MAXC * MAXC / 4u>;

fn load_weights4(lid: u32) {
    let co4 = (CO + 3u) / 4u;
    for (var i = lid; i < 9u * CI * co4; i += CPU_WG) {
        let row = i / co4;
        let o = 4u * (i % co4);
        var v = vec4<f32>(0.0);
        for (var l = 0u; l < 4u; l++) {
            if (o + l < CO) { v[l] = wt[row * CO + o + l]; }
        }
        wsh4[i] = v;
    }
    workgroupBarrier();
}

fn fwd_chan(row: u32, xv: f32, acc: ptr<function, Acc4>) {
    let co4 = (CO + 3u) / 4u;
    (*acc).a0 += xv * wsh4[row * co4];
    if (CO > 4u) { (*acc).a1 += xv * wsh4[row * co4 + 1u]; }
    if (CO > 8u) { (*acc).a2 += xv * wsh4[row * co4 + 2u]; }
    if (CO > 12u) { (*acc).a3 += xv * wsh4[row * co4 + 3u]; }
}

// Fewer than 4 outputs: accumulator a_o runs over input channels (4 at a time) for output o,
// with the kernel transposed (load_weights4_t): a vec4 over outputs would waste most lanes.
fn fwd_narrow_tap(k: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(k / 3u) - i32(PAD);
    let ix = ox + i32(k % 3u) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = (b * H + tap_at(iy, H)) * W + tap_at(ix, W);
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
    let v = vec4<f32>(dot(acc.a0, one) + bias[0], dot(acc.a1, one) + bias[1],
                      dot(acc.a2, one) + bias[2], 0.0);
    if (store) { store4(pix * CO, 0u, v); }
}

// One output channel: four neighbouring output pixels per invocation (a0..a3), so that each
// input pixel loaded serves up to 3 of their taps (18 loads per 4 pixels instead of 36).
// Column `col` of kernel row ky, input column ox0 + col - PAD, into the pixels it reaches.
fn fwd_single_col(ky: u32, col: u32, b: u32, oy: i32, ox0: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(ky) - i32(PAD);
    let ix = ox0 + i32(col) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = (b * H + tap_at(iy, H)) * W + tap_at(ix, W);
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

fn fwd_tap(k: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(k / 3u) - i32(PAD);
    let ix = ox + i32(k % 3u) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = (b * H + tap_at(iy, H)) * W + tap_at(ix, W);
    if (CI % 4u == 0u) {
        for (var j = 0u; j < CI / 4u; j++) {
            let q = keep * x4[pix * (CI / 4u) + j];
            fwd_chan(k * CI + 4u * j, q.x, acc);
            fwd_chan(k * CI + 4u * j + 1u, q.y, acc);
            fwd_chan(k * CI + 4u * j + 2u, q.z, acc);
            fwd_chan(k * CI + 4u * j + 3u, q.w, acc);
        }
    } else {
        for (var c = 0u; c < CI; c++) {
            fwd_chan(k * CI + c, keep * x[pix * CI + c], acc);
        }
    }
}

fn store4(at: u32, j: u32, v: vec4<f32>) {
    var o = v;
    if (p.relu != 0u) { o = max(o, vec4<f32>(0.0)); }
    for (var l = 0u; l < 4u; l++) {
        if (4u * j + l < CO) { y[at + 4u * j + l] = o[l]; }
    }
}

@compute @workgroup_size(CPU_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    if (CO == 1u) {
        load_weights4_t(lid);
        forward_single(id);
        return;
    }
    let total = p.n * HO * WO;
    let pix = min(id, total - 1u);
    let ox = i32(pix % WO);
    let oy = i32((pix / WO) % HO);
    let b = pix / (WO * HO);
    if (CO < 4u) {
        load_weights4_t(lid);
        forward_narrow(pix, b, oy, ox, id < total);
        return;
    }
    load_weights4(lid);
    var acc: Acc4;
    acc.a0 = vec4<f32>(bias[0], bias[1], bias[2], bias[3]);
    acc.a1 = vec4<f32>(bias[4], bias[5], bias[6], bias[7]);
    acc.a2 = vec4<f32>(bias[8], bias[9], bias[10], bias[11]);
    acc.a3 = vec4<f32>(bias[12], bias[13], bias[14], bias[15]);
    fwd_tap(0u, b, oy, ox, &acc);
    fwd_tap(1u, b, oy, ox, &acc);
    fwd_tap(2u, b, oy, ox, &acc);
    fwd_tap(3u, b, oy, ox, &acc);
    fwd_tap(4u, b, oy, ox, &acc);
    fwd_tap(5u, b, oy, ox, &acc);
    fwd_tap(6u, b, oy, ox, &acc);
    fwd_tap(7u, b, oy, ox, &acc);
    fwd_tap(8u, b, oy, ox, &acc);
    if (id < total) {
        store4(pix * CO, 0u, acc.a0);
        if (CO > 4u) { store4(pix * CO, 1u, acc.a1); }
        if (CO > 8u) { store4(pix * CO, 2u, acc.a2); }
        if (CO > 12u) { store4(pix * CO, 3u, acc.a3); }
    }
}

// ---- backward_input: one input pixel per invocation, every input channel ----


// The kernel transposed into the same workgroup array (an entry point uses one layout or the
// other, so one array keeps it within WebGPU's 16 KiB): [9 * CO][CI4], input channels
// contiguous, zero-padded past CI.
fn load_weights4_t(lid: u32) {
    let ci4 = (CI + 3u) / 4u;
    for (var i = lid; i < 9u * CO * ci4; i += CPU_WG) {
        let ko = i / ci4;
        let k = ko / CO;
        let o = ko % CO;
        let c = 4u * (i % ci4);
        var v = vec4<f32>(0.0);
        for (var l = 0u; l < 4u; l++) {
            if (c + l < CI) { v[l] = wt[(k * CI + c + l) * CO + o]; }
        }
        wsh4[i] = v;
    }
    workgroupBarrier();
}

// Output channel o of tap k into every input channel.
fn bin_chan(k: u32, o: u32, gv: f32, acc: ptr<function, Acc4>) {
    let ci4 = (CI + 3u) / 4u;
    let row = (k * CO + o) * ci4;
    (*acc).a0 += gv * wsh4[row];
    if (CI > 4u) { (*acc).a1 += gv * wsh4[row + 1u]; }
    if (CI > 8u) { (*acc).a2 += gv * wsh4[row + 2u]; }
    if (CI > 12u) { (*acc).a3 += gv * wsh4[row + 3u]; }
}

// The upstream gradient at output element i, ReLU-masked, times `scale`.
fn g_at(i: u32, scale: f32) -> f32 {
    var g = scale * dy[i];
    if (p.relu != 0u && act[i] <= 0.0) { g = 0.0; }
    return g;
}

fn g4_at(i4: u32, scale: f32) -> vec4<f32> {
    var g = scale * dy4[i4];
    if (p.relu != 0u) { g = select(g, vec4<f32>(0.0), act4[i4] <= vec4<f32>(0.0)); }
    return g;
}

fn bin_tap(k: u32, b: u32, iy: i32, ix: i32, acc: ptr<function, Acc4>) {
    let oy = iy + i32(PAD) - i32(k / 3u);
    let ox = ix + i32(PAD) - i32(k % 3u);
    let keep = inside_at(oy, HO) * inside_at(ox, WO);
    let pix = (b * HO + tap_at(oy, HO)) * WO + tap_at(ox, WO);
    if (CO % 4u == 0u) {
        for (var j = 0u; j < CO / 4u; j++) {
            let g = g4_at(pix * (CO / 4u) + j, keep);
            bin_chan(k, 4u * j, g.x, acc);
            bin_chan(k, 4u * j + 1u, g.y, acc);
            bin_chan(k, 4u * j + 2u, g.z, acc);
            bin_chan(k, 4u * j + 3u, g.w, acc);
        }
    } else {
        for (var o = 0u; o < CO; o++) {
            bin_chan(k, o, g_at(pix * CO + o, keep), acc);
        }
    }
}

fn store_dx4(at: u32, j: u32, v: vec4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        if (4u * j + l < CI) { dx[at + 4u * j + l] = v[l]; }
    }
}

@compute @workgroup_size(CPU_WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    load_weights4_t(lid);
    let id = flat_cpu(wid, lid, nwg);
    let total = p.n * H * W;
    let pix = min(id, total - 1u);
    let ix = i32(pix % W);
    let iy = i32((pix / W) % H);
    let b = pix / (W * H);
    var acc: Acc4;
    bin_tap(0u, b, iy, ix, &acc);
    bin_tap(1u, b, iy, ix, &acc);
    bin_tap(2u, b, iy, ix, &acc);
    bin_tap(3u, b, iy, ix, &acc);
    bin_tap(4u, b, iy, ix, &acc);
    bin_tap(5u, b, iy, ix, &acc);
    bin_tap(6u, b, iy, ix, &acc);
    bin_tap(7u, b, iy, ix, &acc);
    bin_tap(8u, b, iy, ix, &acc);
    if (id < total) {
        store_dx4(pix * CI, 0u, acc.a0);
        if (CI > 4u) { store_dx4(pix * CI, 1u, acc.a1); }
        if (CI > 8u) { store_dx4(pix * CI, 2u, acc.a2); }
        if (CI > 12u) { store_dx4(pix * CI, 3u, acc.a3); }
    }
}

// ---- backward_params: weight and bias gradient, partial sums per chunk of pixels ----
// The accumulators of one tap are an AccW (cpu/blocks.wgsl): block (j, m) holds input
// channels 4j..4j+3 times output channels 4m..4m+3, column l being output 4m + l.

// Input channels 4j..4j+3 of pixel `pix`, times `scale`; zero past CI.
fn x4_at(pix: u32, j: u32, scale: f32) -> vec4<f32> {
    if (CI % 4u == 0u) {
        return scale * x4[pix * (CI / 4u) + j];
    }
    var v = vec4<f32>(0.0);
    for (var l = 0u; l < 4u; l++) {
        if (4u * j + l < CI) { v[l] = scale * x[pix * CI + 4u * j + l]; }
    }
    return v;
}

// Output channels 4m..4m+3 of the upstream gradient at pixel `pix`, times `scale`; zero
// past CO.
fn g4_pixel(pix: u32, m: u32, scale: f32) -> vec4<f32> {
    if (CO % 4u == 0u) {
        return g4_at(pix * (CO / 4u) + m, scale);
    }
    var v = vec4<f32>(0.0);
    for (var l = 0u; l < 4u; l++) {
        if (4u * m + l < CO) { v[l] = g_at(pix * CO + 4u * m + l, scale); }
    }
    return v;
}

// Input block j of one pixel times every output block.
fn bw_block(j: u32, xq: vec4<f32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
            acc: ptr<function, AccW>) {
    acc_add(acc, j, 0u, outer(xq, g0));
    if (CO > 4u) { acc_add(acc, j, 1u, outer(xq, g1)); }
    if (CO > 8u) { acc_add(acc, j, 2u, outer(xq, g2)); }
    if (CO > 12u) { acc_add(acc, j, 3u, outer(xq, g3)); }
}

// Block (j, m) of tap k into partial_out[at..]: row (k * CI + c) * CO + o.
fn bw_store(at: u32, k: u32, j: u32, m: u32, v: mat4x4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        for (var i = 0u; i < 4u; i++) {
            let c = 4u * j + i;
            let o = 4u * m + l;
            if (c < CI && o < CO) { partial_out[at + (k * CI + c) * CO + o] = v[l][i]; }
        }
    }
}

fn bw_store_row(at: u32, k: u32, j: u32, acc: ptr<function, AccW>) {
    bw_store(at, k, j, 0u, acc_get(acc, j, 0u));
    if (CO > 4u) { bw_store(at, k, j, 1u, acc_get(acc, j, 1u)); }
    if (CO > 8u) { bw_store(at, k, j, 2u, acc_get(acc, j, 2u)); }
    if (CO > 12u) { bw_store(at, k, j, 3u, acc_get(acc, j, 3u)); }
}

// Invocation (chunk, tap k): tap k's weight gradient over the chunk's CHUNK output pixels,
// and the bias gradient (every tap sums it; tap 0 stores it). Partials land at
// partial_out[chunk][row], row = (k * CI + c) * CO + o, the bias after the weights.
@compute @workgroup_size(CPU_WG)
fn backward_params_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let total = p.chunks * 9u;
    let me = min(id, total - 1u);
    let chunk = me / 9u;
    let k = me % 9u;
    let ky = i32(k / 3u);
    let kx = i32(k % 3u);
    let pixels = p.n * HO * WO;
    var acc: AccW;
    var bacc: Acc4;
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let rc = min(r, pixels - 1u);
        let ox = i32(rc % WO);
        let oy = i32((rc / WO) % HO);
        let b = rc / (WO * HO);
        let gscale = select(0.0, 1.0, r < pixels);
        let g0 = g4_pixel(rc, 0u, gscale);
        var g1 = vec4<f32>(0.0);
        var g2 = vec4<f32>(0.0);
        var g3 = vec4<f32>(0.0);
        if (CO > 4u) { g1 = g4_pixel(rc, 1u, gscale); }
        if (CO > 8u) { g2 = g4_pixel(rc, 2u, gscale); }
        if (CO > 12u) { g3 = g4_pixel(rc, 3u, gscale); }
        bacc.a0 += g0;
        bacc.a1 += g1;
        bacc.a2 += g2;
        bacc.a3 += g3;
        let iy = oy + ky - i32(PAD);
        let ix = ox + kx - i32(PAD);
        let keep = inside_at(iy, H) * inside_at(ix, W);
        let pix = (b * H + tap_at(iy, H)) * W + tap_at(ix, W);
        bw_block(0u, x4_at(pix, 0u, keep), g0, g1, g2, g3, &acc);
        if (CI > 4u) { bw_block(1u, x4_at(pix, 1u, keep), g0, g1, g2, g3, &acc); }
        if (CI > 8u) { bw_block(2u, x4_at(pix, 2u, keep), g0, g1, g2, g3, &acc); }
        if (CI > 12u) { bw_block(3u, x4_at(pix, 3u, keep), g0, g1, g2, g3, &acc); }
    }
    if (id < total) {
        let at = chunk * ROWS4 * 4u;
        bw_store_row(at, k, 0u, &acc);
        if (CI > 4u) { bw_store_row(at, k, 1u, &acc); }
        if (CI > 8u) { bw_store_row(at, k, 2u, &acc); }
        if (CI > 12u) { bw_store_row(at, k, 3u, &acc); }
        if (k == 0u) {
            let bias_at = at + 9u * CI * CO;
            for (var l = 0u; l < 4u; l++) {
                if (l < CO) { partial_out[bias_at + l] = bacc.a0[l]; }
                if (4u + l < CO) { partial_out[bias_at + 4u + l] = bacc.a1[l]; }
                if (8u + l < CO) { partial_out[bias_at + 8u + l] = bacc.a2[l]; }
                if (12u + l < CO) { partial_out[bias_at + 12u + l] = bacc.a3[l]; }
            }
        }
    }
}

// ---- backward_params_thin: the same sums when one side has a single channel ----
//
// The first layer (1 input channel) and the last (1 output) would waste most of AccW's
// lanes and load their wide side at each of the 9 taps. Here the wide side's channels
// (WIDE of them) load once per pixel and all 9 taps accumulate in registers: for CI == 1 the
// invocation walks output pixels (the input at each tap is one scalar), for CO == 1 it walks
// input pixels (the gradient at each tap is one scalar).

override WIDE: u32 = 1u;  // CO when CI == 1, else CI (set by the launcher)

struct Acc9 {
    t0: Acc4, t1: Acc4, t2: Acc4, t3: Acc4, t4: Acc4, t5: Acc4, t6: Acc4, t7: Acc4, t8: Acc4,
}

// a + v * w over the WIDE channels (by value: a pointer to a member, passed on, trips
// naga's SPIR-V writer).
fn axpy4(a: Acc4, v: f32, w: Acc4) -> Acc4 {
    var r = a;
    r.a0 += v * w.a0;
    if (WIDE > 4u) { r.a1 += v * w.a1; }
    if (WIDE > 8u) { r.a2 += v * w.a2; }
    if (WIDE > 12u) { r.a3 += v * w.a3; }
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

// The wide side at pixel `pix` (output channels of the gradient when CI == 1, else input
// channels), times `scale`.
fn wide_at(pix: u32, scale: f32) -> Acc4 {
    var w: Acc4;
    if (CI == 1u) {
        w.a0 = g4_pixel(pix, 0u, scale);
        if (CO > 4u) { w.a1 = g4_pixel(pix, 1u, scale); }
        if (CO > 8u) { w.a2 = g4_pixel(pix, 2u, scale); }
        if (CO > 12u) { w.a3 = g4_pixel(pix, 3u, scale); }
    } else {
        w.a0 = x4_at(pix, 0u, scale);
        if (CI > 4u) { w.a1 = x4_at(pix, 1u, scale); }
        if (CI > 8u) { w.a2 = x4_at(pix, 2u, scale); }
        if (CI > 12u) { w.a3 = x4_at(pix, 3u, scale); }
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
        acc9_add(acc, k, keep * x[(b * H + tap_at(iy, H)) * W + tap_at(ix, W)], wide);
    } else {
        // walking inputs: the gradient at (iy + PAD - ky, ix + PAD - kx)
        let oy = py + i32(PAD) - ky;
        let ox = px + i32(PAD) - kx;
        let keep = inside_at(oy, HO) * inside_at(ox, WO);
        acc9_add(acc, k, g_at((b * HO + tap_at(oy, HO)) * WO + tap_at(ox, WO), keep), wide);
    }
}

fn thin_store(at: u32, k: u32, a: Acc4) {
    for (var l = 0u; l < 4u; l++) {
        if (l < WIDE) { partial_out[at + k * WIDE + l] = a.a0[l]; }
        if (4u + l < WIDE) { partial_out[at + k * WIDE + 4u + l] = a.a1[l]; }
        if (8u + l < WIDE) { partial_out[at + k * WIDE + 8u + l] = a.a2[l]; }
        if (12u + l < WIDE) { partial_out[at + k * WIDE + 12u + l] = a.a3[l]; }
    }
}

// Invocation = chunk of CHUNK walked pixels; partials as backward_params_partial's.
@compute @workgroup_size(CPU_WG)
fn backward_params_thin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let chunk = min(id, p.chunks - 1u);
    let out_pixels = p.n * HO * WO;
    // The walked side: outputs when CI == 1, else inputs (never fewer than the outputs).
    let ph = select(H, HO, CI == 1u);
    let pw = select(W, WO, CI == 1u);
    let pixels = p.n * ph * pw;
    var acc: Acc9;
    var bacc: Acc4;
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let rc = min(r, pixels - 1u);
        let px = i32(rc % pw);
        let py = i32((rc / pw) % ph);
        let b = rc / (pw * ph);
        let wide = wide_at(rc, select(0.0, 1.0, r < pixels));
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
        for (var k = 0u; k < 9u; k++) { thin_store(at, k, acc9_get(&acc, k)); }
        let bias_at = at + 9u * CI * CO;
        for (var l = 0u; l < 4u; l++) {
            if (l < CO) { partial_out[bias_at + l] = bacc.a0[l]; }
            if (4u + l < CO) { partial_out[bias_at + 4u + l] = bacc.a1[l]; }
            if (8u + l < CO) { partial_out[bias_at + 8u + l] = bacc.a2[l]; }
            if (12u + l < CO) { partial_out[bias_at + 12u + l] = bacc.a3[l]; }
        }
    }
}

// Each invocation sums four rows over the chunks, in chunk order (deterministic).
@compute @workgroup_size(CPU_WG)
fn backward_params_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let q = min(id, ROWS4 - 1u);
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.chunks; c++) {
        acc += partial_in[c * ROWS4 + q];
    }
    if (id < ROWS4) {
        let weights = 9u * CI * CO;
        for (var l = 0u; l < 4u; l++) {
            let i = 4u * q + l;
            if (i < weights) {
                dw[i] = acc[l];
            } else if (WITH_BIAS && i < weights + CO) {
                db[i - weights] = acc[l];
            }
        }
    }
}
