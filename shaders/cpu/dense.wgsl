// dense for CPU adapters: the ops of shaders/dense.wgsl (y = x . W + b, W [in, out] as Keras
// stores it), shaped for lavapipe (see cpu/conv2d.wgsl for what that means). Each invocation
// owns a register tile of the output and walks the shared dimension once, four at a time:
// every load is a vec4, and every loaded value feeds 8 to 16 multiply-adds. Loops over the
// tile are short enough for NIR to unroll, so the accumulators stay in registers; no
// invocation returns early (indices are clamped, only stores are guarded); no split sums.
// The feature counts must be multiples of 4 (ops::dense picks the GPU kernels otherwise).

override FIN: u32 = 4u;
override FOUT: u32 = 4u;
override FIN4: u32 = FIN / 4u;
override FOUT4: u32 = FOUT / 4u;
// Whether backward_params also writes the bias gradient.
override WITH_BIAS: bool = true;

// Invocations per workgroup: ops::cpu::dense::CPU_WG (one 8-wide vector, so that even a
// small layer spreads over both threads of a 2-core machine).
const CPU_WG: u32 = 8u;
// Forward and backward_input tiles: 8 rows x 8 columns (2 vec4).
const TR: u32 = 8u;
const TC4: u32 = 2u;
// backward_params tile: 16 inputs x 16 outputs (4 vec4).
const TW: u32 = 16u;
const TW4: u32 = 4u;

struct Dense {
    n: u32, fin: u32, fout: u32, relu: u32,
}

@group(0) @binding(0) var<uniform> p: Dense;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> act: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dw: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> db: array<vec4<f32>>;

fn flat_cpu(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * CPU_WG + lid;
}

// The upstream gradient's vec4 i, ReLU-masked from the saved output when the layer had ReLU.
fn grad4(i: u32) -> vec4<f32> {
    let g = dy[i];
    if (p.relu != 0u) {
        return select(g, vec4<f32>(0.0), act[i] <= vec4<f32>(0.0));
    }
    return g;
}

// ---- forward: tile (8 rows) x (8 outputs) ----

@compute @workgroup_size(CPU_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let col_tiles = (FOUT4 + TC4 - 1u) / TC4;
    let tiles = ((p.n + TR - 1u) / TR) * col_tiles;
    let me = min(id, tiles - 1u);
    let r0 = (me / col_tiles) * TR;
    let c0 = (me % col_tiles) * TC4;
    var rows: array<u32, TR>;
    for (var r = 0u; r < TR; r++) { rows[r] = min(r0 + r, p.n - 1u); }
    var cols: array<u32, TC4>;
    for (var c = 0u; c < TC4; c++) { cols[c] = min(c0 + c, FOUT4 - 1u); }
    var acc: array<vec4<f32>, 16>;
    for (var c = 0u; c < TC4; c++) {
        let b = bias[cols[c]];
        for (var r = 0u; r < TR; r++) { acc[r * TC4 + c] = b; }
    }
    for (var k = 0u; k < FIN4; k++) {
        var w0: array<vec4<f32>, TC4>;
        var w1: array<vec4<f32>, TC4>;
        var w2: array<vec4<f32>, TC4>;
        var w3: array<vec4<f32>, TC4>;
        for (var c = 0u; c < TC4; c++) {
            w0[c] = wt[(4u * k) * FOUT4 + cols[c]];
            w1[c] = wt[(4u * k + 1u) * FOUT4 + cols[c]];
            w2[c] = wt[(4u * k + 2u) * FOUT4 + cols[c]];
            w3[c] = wt[(4u * k + 3u) * FOUT4 + cols[c]];
        }
        for (var r = 0u; r < TR; r++) {
            let xv = x[rows[r] * FIN4 + k];
            for (var c = 0u; c < TC4; c++) {
                acc[r * TC4 + c] += xv.x * w0[c] + xv.y * w1[c] + xv.z * w2[c] + xv.w * w3[c];
            }
        }
    }
    if (id < tiles) {
        for (var r = 0u; r < TR; r++) {
            for (var c = 0u; c < TC4; c++) {
                var v = acc[r * TC4 + c];
                if (p.relu != 0u) { v = max(v, vec4<f32>(0.0)); }
                if (r0 + r < p.n && c0 + c < FOUT4) { y[(r0 + r) * FOUT4 + c0 + c] = v; }
            }
        }
    }
}

// ---- backward_input: dx = g . W^T, tile (8 rows) x (8 inputs) ----

@compute @workgroup_size(CPU_WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let col_tiles = (FIN4 + TC4 - 1u) / TC4;
    let tiles = ((p.n + TR - 1u) / TR) * col_tiles;
    let me = min(id, tiles - 1u);
    let r0 = (me / col_tiles) * TR;
    let c0 = (me % col_tiles) * TC4;
    var rows: array<u32, TR>;
    for (var r = 0u; r < TR; r++) { rows[r] = min(r0 + r, p.n - 1u); }
    // The tile's 8 inputs (rows of W), clamped.
    var ins: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) { ins[i] = min(4u * c0 + i, FIN - 1u); }
    var acc: array<f32, 64>;
    for (var k = 0u; k < FOUT4; k++) {
        var wv: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) { wv[i] = wt[ins[i] * FOUT4 + k]; }
        for (var r = 0u; r < TR; r++) {
            let g = grad4(rows[r] * FOUT4 + k);
            for (var i = 0u; i < 8u; i++) { acc[r * 8u + i] += dot(g, wv[i]); }
        }
    }
    if (id < tiles) {
        for (var r = 0u; r < TR; r++) {
            for (var c = 0u; c < TC4; c++) {
                let a = r * 8u + 4u * c;
                let v = vec4<f32>(acc[a], acc[a + 1u], acc[a + 2u], acc[a + 3u]);
                if (r0 + r < p.n && c0 + c < FIN4) { dx[(r0 + r) * FIN4 + c0 + c] = v; }
            }
        }
    }
}

// ---- backward_params: dW = x^T . g over the whole batch, tile (16 inputs) x (16 outputs);
// the bias gradient (the sum of g) by the tiles of the first 16 inputs ----

@compute @workgroup_size(CPU_WG)
fn backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let out_tiles = (FOUT4 + TW4 - 1u) / TW4;
    let tiles = ((FIN4 + TW4 - 1u) / TW4) * out_tiles;
    let me = min(id, tiles - 1u);
    let i0 = (me / out_tiles) * TW4;
    let o0 = (me % out_tiles) * TW4;
    var ins: array<u32, TW4>;
    for (var c = 0u; c < TW4; c++) { ins[c] = min(i0 + c, FIN4 - 1u); }
    var outs: array<u32, TW4>;
    for (var c = 0u; c < TW4; c++) { outs[c] = min(o0 + c, FOUT4 - 1u); }
    var acc: array<vec4<f32>, 64>;
    var bacc: array<vec4<f32>, TW4>;
    for (var r = 0u; r < p.n; r++) {
        var g: array<vec4<f32>, TW4>;
        for (var c = 0u; c < TW4; c++) {
            g[c] = grad4(r * FOUT4 + outs[c]);
            bacc[c] += g[c];
        }
        for (var c = 0u; c < TW4; c++) {
            let xv = x[r * FIN4 + ins[c]];
            for (var d = 0u; d < TW4; d++) {
                acc[(4u * c) * TW4 + d] += xv.x * g[d];
                acc[(4u * c + 1u) * TW4 + d] += xv.y * g[d];
                acc[(4u * c + 2u) * TW4 + d] += xv.z * g[d];
                acc[(4u * c + 3u) * TW4 + d] += xv.w * g[d];
            }
        }
    }
    if (id < tiles) {
        for (var i = 0u; i < TW; i++) {
            for (var d = 0u; d < TW4; d++) {
                if (4u * i0 + i < FIN && o0 + d < FOUT4) {
                    dw[(4u * i0 + i) * FOUT4 + o0 + d] = acc[i * TW4 + d];
                }
            }
        }
        if (WITH_BIAS && i0 == 0u) {
            for (var d = 0u; d < TW4; d++) {
                if (o0 + d < FOUT4) { db[o0 + d] = bacc[d]; }
            }
        }
    }
}
