// conv2d: 3x3, stride 1, 'same' (pad 1) or 'valid' (pad 0), NHWC, kernel [ky][kx][ci][co].
// Forward (optionally with ReLU fused), and backward for the input, weight and bias.
// Backward kernels read the upstream gradient through `grad_out`, which applies the ReLU
// mask from the saved activation when the layer was run with ReLU (relu != 0).

struct Conv {
    n: u32, h: u32, w: u32, ci: u32,
    ho: u32, wo: u32, co: u32, pad: u32,
    relu: u32, total: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> act: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> dw: array<f32>;
@group(0) @binding(9) var<storage, read_write> db: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

fn flat(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// Upstream gradient at output element i, masked by ReLU' (0 where the output is <= 0).
fn grad_out(i: u32) -> f32 {
    let g = dy[i];
    if (p.relu != 0u && act[i] <= 0.0) {
        return 0.0;
    }
    return g;
}

// One invocation per output element (n, oy, ox, co).
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.total) { return; }
    let o = idx % p.co;
    let pix = idx / p.co;
    let ox = i32(pix % p.wo);
    let oy = i32((pix / p.wo) % p.ho);
    let b = pix / (p.wo * p.ho);
    var acc = bias[o];
    for (var ky = 0; ky < 3; ky++) {
        let iy = oy + ky - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0; kx < 3; kx++) {
            let ix = ox + kx - i32(p.pad);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let xb = ((b * p.h + u32(iy)) * p.w + u32(ix)) * p.ci;
            let wb = u32(ky * 3 + kx) * p.ci * p.co + o;
            for (var c = 0u; c < p.ci; c++) {
                acc += x[xb + c] * wt[wb + c * p.co];
            }
        }
    }
    if (p.relu != 0u) { acc = max(acc, 0.0); }
    y[idx] = acc;
}

// One invocation per input element (n, iy, ix, ci): the transposed convolution of dy.
@compute @workgroup_size(256)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let count = p.n * p.h * p.w * p.ci;
    if (idx >= count) { return; }
    let c = idx % p.ci;
    let pix = idx / p.ci;
    let ix = i32(pix % p.w);
    let iy = i32((pix / p.w) % p.h);
    let b = pix / (p.w * p.h);
    var acc = 0.0;
    for (var ky = 0; ky < 3; ky++) {
        let oy = iy + i32(p.pad) - ky;
        if (oy < 0 || oy >= i32(p.ho)) { continue; }
        for (var kx = 0; kx < 3; kx++) {
            let ox = ix + i32(p.pad) - kx;
            if (ox < 0 || ox >= i32(p.wo)) { continue; }
            let gb = ((b * p.ho + u32(oy)) * p.wo + u32(ox)) * p.co;
            let wb = (u32(ky * 3 + kx) * p.ci + c) * p.co;
            for (var o = 0u; o < p.co; o++) {
                acc += grad_out(gb + o) * wt[wb + o];
            }
        }
    }
    dx[idx] = acc;
}

// Sums `partial` in a fixed tree: deterministic, no atomics. Every invocation must call it.
fn tree_sum(lid: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) { partial[lid] += partial[lid + s]; }
    }
    workgroupBarrier();
    return partial[0];
}

// One workgroup per weight (ky, kx, ci, co): sum over every output pixel of the batch.
@compute @workgroup_size(256)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let widx = wid.y * nwg.x + wid.x;
    if (widx >= 9u * p.ci * p.co) { return; }
    let o = widx % p.co;
    let c = (widx / p.co) % p.ci;
    let k = widx / (p.co * p.ci);
    let ky = i32(k / 3u);
    let kx = i32(k % 3u);
    let rows = p.n * p.ho * p.wo;
    var acc = 0.0;
    for (var r = lid; r < rows; r += WG) {
        let ox = i32(r % p.wo);
        let oy = i32((r / p.wo) % p.ho);
        let b = r / (p.wo * p.ho);
        let iy = oy + ky - i32(p.pad);
        let ix = ox + kx - i32(p.pad);
        if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
            acc += x[((b * p.h + u32(iy)) * p.w + u32(ix)) * p.ci + c] * grad_out(r * p.co + o);
        }
    }
    partial[lid] = acc;
    let total = tree_sum(lid);
    if (lid == 0u) { dw[widx] = total; }
}

// One workgroup per output channel: the sum of its gradient over the batch and pixels.
@compute @workgroup_size(256)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.x;
    if (o >= p.co) { return; }
    let rows = p.n * p.ho * p.wo;
    var acc = 0.0;
    for (var r = lid; r < rows; r += WG) {
        acc += grad_out(r * p.co + o);
    }
    partial[lid] = acc;
    let total = tree_sum(lid);
    if (lid == 0u) { db[o] = total; }
}
