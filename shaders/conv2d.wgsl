// conv2d: 3x3, stride 1, 'same' (pad 1) or 'valid' (pad 0), NHWC, kernel [ky][kx][ci][co].
// Forward (optionally with ReLU fused), and backward for the input, weight and bias.
//
// Shapes are pipeline-overridable constants, so loops over the window and channels unroll;
// only the batch size is a uniform (the last batch of an epoch is smaller). Each invocation
// keeps up to 16 channels in four vec4 registers: one load of an input value feeds every
// output channel, instead of one multiply-add per two loads.
//
// Backward kernels read the upstream gradient through `grad_out`, which applies the ReLU mask
// from the saved activation when the layer was run with ReLU (relu != 0).

override CI: u32 = 1u;     // input channels, <= 16
override CO: u32 = 1u;     // output channels, <= 16
override H: u32 = 1u;
override W: u32 = 1u;
override PAD: u32 = 1u;    // 1 'same', 0 'valid'
override HO: u32 = H + 2u * PAD - 2u;
override WO: u32 = W + 2u * PAD - 2u;
override CI4: u32 = (CI + 3u) / 4u;
override CO4: u32 = (CO + 3u) / 4u;
// Output pixels one backward_weight_partial invocation sums: short, so there are many
// invocations and each one's loads are few and independent.
override CHUNK: u32 = 16u;
// backward_weight_partial also sums the bias gradient, as one more kernel row whose input is 1:
// the bias then costs no pass of its own over dy.
override WITH_BIAS: bool = false;
override ROWS: u32 = 9u * CI + select(0u, 1u, WITH_BIAS);

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
@group(0) @binding(9) var<storage, read> partial_in: array<f32>;
@group(0) @binding(10) var<storage, read_write> dw: array<f32>;
@group(0) @binding(11) var<storage, read_write> db: array<f32>;

// Workgroup size of the register-tiled kernels: ops::conv2d::TILED.
const TILED_WG: u32 = 64u;

fn flat_of(wid: vec3<u32>, lid: u32, nwg: vec3<u32>, size: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * size + lid;
}

// Upstream gradient at output element i, masked by ReLU' (0 where the output is <= 0).
fn grad_out(i: u32) -> f32 {
    let g = dy[i];
    if (p.relu != 0u && act[i] <= 0.0) {
        return 0.0;
    }
    return g;
}

// Four consecutive output channels of kernel row `row` (= (ky*3+kx)*CI + ci), from channel 4j.
// Past CO the lanes read neighbours (bounds-checked by WGSL) and are never stored.
fn w_row4(row: u32, j: u32) -> vec4<f32> {
    let i = row * CO + 4u * j;
    return vec4<f32>(wt[i], wt[i + 1u], wt[i + 2u], wt[i + 3u]);
}

// Window taps are branch-free (a tap outside the image reads a clamped address and is scaled
// by 0) and every loop has a constant trip count, so the driver unrolls them and issues all of
// a pixel's loads at once instead of one dependent load per iteration.
fn tap(v: i32, size: u32) -> u32 {
    return u32(clamp(v, 0, i32(size) - 1));
}

fn inside(v: i32, size: u32) -> f32 {
    return select(0.0, 1.0, v >= 0 && v < i32(size));
}

// Accumulators are four named vec4 registers, never an indexed array: a dynamically indexed
// function-scope array lives in local memory on NVIDIA, which made every multiply-add a
// memory round trip. Branches on the override constants CO4/CI4 fold away at pipeline
// creation.
fn store4(base: u32, count: u32, j: u32, v: vec4<f32>, relu: bool) {
    var o = v;
    if (relu) { o = max(o, vec4<f32>(0.0)); }
    for (var l = 0u; l < 4u; l++) {
        if (4u * j + l < count) { y[base + 4u * j + l] = o[l]; }
    }
}

// One invocation per output pixel (n, oy, ox): every output channel at once.
@compute @workgroup_size(TILED_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let pix = flat_of(wid, lid, nwg, TILED_WG);
    if (pix >= p.n * HO * WO) { return; }
    let ox = i32(pix % WO);
    let oy = i32((pix / WO) % HO);
    let b = pix / (WO * HO);
    var a0 = vec4<f32>(bias[0], bias[1], bias[2], bias[3]);
    var a1 = vec4<f32>(bias[4], bias[5], bias[6], bias[7]);
    var a2 = vec4<f32>(bias[8], bias[9], bias[10], bias[11]);
    var a3 = vec4<f32>(bias[12], bias[13], bias[14], bias[15]);
    for (var k = 0u; k < 9u; k++) {
        let iy = oy + i32(k / 3u) - i32(PAD);
        let ix = ox + i32(k % 3u) - i32(PAD);
        let keep = inside(iy, H) * inside(ix, W);
        let xb = ((b * H + tap(iy, H)) * W + tap(ix, W)) * CI;
        for (var c = 0u; c < CI; c++) {
            let xv = keep * x[xb + c];
            let row = k * CI + c;
            a0 += xv * w_row4(row, 0u);
            if (CO4 > 1u) { a1 += xv * w_row4(row, 1u); }
            if (CO4 > 2u) { a2 += xv * w_row4(row, 2u); }
            if (CO4 > 3u) { a3 += xv * w_row4(row, 3u); }
        }
    }
    let relu = p.relu != 0u;
    store4(pix * CO, CO, 0u, a0, relu);
    if (CO4 > 1u) { store4(pix * CO, CO, 1u, a1, relu); }
    if (CO4 > 2u) { store4(pix * CO, CO, 2u, a2, relu); }
    if (CO4 > 3u) { store4(pix * CO, CO, 3u, a3, relu); }
}

// Four consecutive input channels (from 4j) of kernel tap k for output channel o.
fn w_col4(k: u32, j: u32, o: u32) -> vec4<f32> {
    let c = (k * CI + 4u * j) * CO + o;
    return vec4<f32>(wt[c], wt[c + CO], wt[c + 2u * CO], wt[c + 3u * CO]);
}

fn store_dx(base: u32, j: u32, v: vec4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        if (4u * j + l < CI) { dx[base + 4u * j + l] = v[l]; }
    }
}

// One invocation per input pixel (n, iy, ix): the transposed convolution of dy, every input
// channel at once.
@compute @workgroup_size(TILED_WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let pix = flat_of(wid, lid, nwg, TILED_WG);
    if (pix >= p.n * H * W) { return; }
    let ix = i32(pix % W);
    let iy = i32((pix / W) % H);
    let b = pix / (W * H);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < 9u; k++) {
        let oy = iy + i32(PAD) - i32(k / 3u);
        let ox = ix + i32(PAD) - i32(k % 3u);
        let keep = inside(oy, HO) * inside(ox, WO);
        let gb = ((b * HO + tap(oy, HO)) * WO + tap(ox, WO)) * CO;
        for (var o = 0u; o < CO; o++) {
            let g = keep * grad_out(gb + o);
            a0 += g * w_col4(k, 0u, o);
            if (CI4 > 1u) { a1 += g * w_col4(k, 1u, o); }
            if (CI4 > 2u) { a2 += g * w_col4(k, 2u, o); }
            if (CI4 > 3u) { a3 += g * w_col4(k, 3u, o); }
        }
    }
    store_dx(pix * CI, 0u, a0);
    if (CI4 > 1u) { store_dx(pix * CI, 1u, a1); }
    if (CI4 > 2u) { store_dx(pix * CI, 2u, a2); }
    if (CI4 > 3u) { store_dx(pix * CI, 3u, a3); }
}

// Split-K weight gradient, stage 1: invocation (chunk, row) sums x_patch * dy over the CHUNK
// output pixels of its chunk, for kernel row `row` = (ky*3+kx)*CI + ci and every output
// channel. Partial sums land in partial_out[row][co][chunk]. With WITH_BIAS, row 9*CI is the
// bias: its input is 1 at every pixel.
@compute @workgroup_size(TILED_WG)
fn backward_weight_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_of(wid, lid, nwg, TILED_WG);
    if (id >= p.chunks * ROWS) { return; }
    let row = id % ROWS;
    let chunk = id / ROWS;
    let is_bias = row == 9u * CI;
    let c = row % CI;
    let k = row / CI;
    let ky = i32(k / 3u);
    let kx = i32(k % 3u);
    let pixels = p.n * HO * WO;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let rc = min(r, pixels - 1u);
        let ox = i32(rc % WO);
        let oy = i32((rc / WO) % HO);
        let b = rc / (WO * HO);
        let iy = oy + ky - i32(PAD);
        let ix = ox + kx - i32(PAD);
        // Past the last pixel, or a tap outside the image: scaled by 0 (no branch).
        var xv = select(0.0, 1.0, r < pixels);
        if (!is_bias) {
            xv *= inside(iy, H) * inside(ix, W) * x[((b * H + tap(iy, H)) * W + tap(ix, W)) * CI + c];
        }
        let gb = rc * CO;
        a0 += xv * grad4(gb);
        if (CO4 > 1u) { a1 += xv * grad4(gb + 4u); }
        if (CO4 > 2u) { a2 += xv * grad4(gb + 8u); }
        if (CO4 > 3u) { a3 += xv * grad4(gb + 12u); }
    }
    // Layout [row][co][chunk]: the reduce then reads each weight's chunks contiguously.
    store_partial(row, chunk, 0u, a0);
    if (CO4 > 1u) { store_partial(row, chunk, 1u, a1); }
    if (CO4 > 2u) { store_partial(row, chunk, 2u, a2); }
    if (CO4 > 3u) { store_partial(row, chunk, 3u, a3); }
}

fn grad4(i: u32) -> vec4<f32> {
    return vec4<f32>(grad_out(i), grad_out(i + 1u), grad_out(i + 2u), grad_out(i + 3u));
}

fn store_partial(row: u32, chunk: u32, j: u32, v: vec4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        let o = 4u * j + l;
        if (o < CO) { partial_out[(row * CO + o) * p.chunks + chunk] = v[l]; }
    }
}

// Stage 2: one workgroup per weight (and, WITH_BIAS, per bias) sums its partials over the
// chunks: strided per invocation, then a fixed tree (deterministic).
@compute @workgroup_size(WG)
fn backward_weight_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = wid.y * nwg.x + wid.x;
    let len = ROWS * CO;
    if (i >= len) { return; }
    var acc = 0.0;
    for (var c = lid; c < p.chunks; c += WG) {
        acc += partial_in[i * p.chunks + c];
    }
    scratch[lid] = acc;
    let total = tree_sum(lid);
    if (lid == 0u) {
        let weights = 9u * CI * CO;
        if (i < weights) {
            dw[i] = total;
        } else {
            db[i - weights] = total;
        }
    }
}

// One workgroup per output channel: the sum of its gradient over the batch and pixels.
@compute @workgroup_size(WG)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.x;
    if (o >= CO) { return; }
    let rows = p.n * HO * WO;
    var acc = 0.0;
    for (var r = lid; r < rows; r += WG) {
        acc += grad_out(r * CO + o);
    }
    scratch[lid] = acc;
    let total = tree_sum(lid);
    if (lid == 0u) { db[o] = total; }
}
