// dense: y = x . W + b (W is [in, out], as Keras stores it), ReLU optionally fused.
// Backward for the input, weight and bias. Reductions over the batch are sequential per
// invocation (a fixed order: deterministic). grad_out applies the ReLU mask as in conv2d.

struct Dense {
    n: u32, fin: u32, fout: u32, relu: u32,
}

@group(0) @binding(0) var<uniform> p: Dense;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> act: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> dw: array<f32>;
@group(0) @binding(9) var<storage, read_write> db: array<f32>;

fn grad_out(i: u32) -> f32 {
    let g = dy[i];
    if (p.relu != 0u && act[i] <= 0.0) {
        return 0.0;
    }
    return g;
}

// The three products are register-tiled: each invocation owns a 4x4 block of the output and
// walks the shared dimension once, so every loaded value feeds 4 multiply-adds (the naive
// one-output-per-invocation version fed 1). Each output is still one sequential sum.
// Rows and columns of an invocation's output block: ops::dense::TILE.
const T: u32 = 4u;

fn blocks(rows: u32, cols: u32) -> vec2<u32> {
    return vec2<u32>((rows + T - 1u) / T, (cols + T - 1u) / T);
}

// x[r, i], 0 outside the batch.
fn x_at(r: u32, i: u32) -> f32 {
    if (r >= p.n) { return 0.0; }
    return x[r * p.fin + i];
}

// W[i, o], 0 outside.
fn w_at(i: u32, o: u32) -> f32 {
    if (i >= p.fin || o >= p.fout) { return 0.0; }
    return wt[i * p.fout + o];
}

// The masked upstream gradient at (r, o), 0 outside.
fn g_at(r: u32, o: u32) -> f32 {
    if (r >= p.n || o >= p.fout) { return 0.0; }
    return grad_out(r * p.fout + o);
}

// y[r, o] for a 4x4 block of (row, unit).
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let nb = blocks(p.n, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < p.fin; i++) {
        let b = vec4<f32>(w_at(i, o0), w_at(i, o0 + 1u), w_at(i, o0 + 2u), w_at(i, o0 + 3u));
        for (var k = 0u; k < T; k++) {
            acc[k] += x_at(r0 + k, i) * b;
        }
    }
    for (var k = 0u; k < T; k++) {
        let r = r0 + k;
        for (var j = 0u; j < T; j++) {
            let o = o0 + j;
            if (r < p.n && o < p.fout) {
                var v = acc[k][j] + bias[o];
                if (p.relu != 0u) { v = max(v, 0.0); }
                y[r * p.fout + o] = v;
            }
        }
    }
}

// dx[r, i] = sum_o g[r, o] W[i, o], for a 4x4 block of (row, input).
@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let nb = blocks(p.n, p.fin);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let i0 = (idx % nb.y) * T;
    var acc: array<vec4<f32>, 4>;
    for (var o = 0u; o < p.fout; o++) {
        let b = vec4<f32>(w_at(i0, o), w_at(i0 + 1u, o), w_at(i0 + 2u, o), w_at(i0 + 3u, o));
        for (var k = 0u; k < T; k++) {
            acc[k] += g_at(r0 + k, o) * b;
        }
    }
    for (var k = 0u; k < T; k++) {
        let r = r0 + k;
        for (var j = 0u; j < T; j++) {
            let i = i0 + j;
            if (r < p.n && i < p.fin) { dx[r * p.fin + i] = acc[k][j]; }
        }
    }
}

// dW[i, o] = sum_r x[r, i] g[r, o], for a 4x4 block of (input, unit).
@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let nb = blocks(p.fin, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let i0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < p.n; r++) {
        let b = vec4<f32>(g_at(r, o0), g_at(r, o0 + 1u), g_at(r, o0 + 2u), g_at(r, o0 + 3u));
        for (var k = 0u; k < T; k++) {
            let i = i0 + k;
            acc[k] += select(0.0, x[r * p.fin + i], i < p.fin) * b;
        }
    }
    for (var k = 0u; k < T; k++) {
        let i = i0 + k;
        for (var j = 0u; j < T; j++) {
            let o = o0 + j;
            if (i < p.fin && o < p.fout) { dw[i * p.fout + o] = acc[k][j]; }
        }
    }
}

@compute @workgroup_size(WG)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat(wid, lid, nwg);
    if (o >= p.fout) { return; }
    var acc = 0.0;
    for (var r = 0u; r < p.n; r++) {
        acc += grad_out(r * p.fout + o);
    }
    db[o] = acc;
}

// Split-K variants for a long shared dimension (the 784-wide input, the batch of 256): one
// workgroup per 4x4 output block, each of its 64 invocations sums every 64th term, then a
// fixed tree adds the 64 partial blocks (deterministic). Dependent loads per invocation drop
// from K to K/64, which is what a GPU needs: the register-tiled kernels above are
// latency-bound there, though they suit a CPU adapter and short K.
const SPLIT: u32 = 64u;
var<workgroup> blocks_scratch: array<array<vec4<f32>, 4>, SPLIT>;

fn block_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Adds the 64 invocations' blocks in a fixed tree; the sum ends in blocks_scratch[0].
fn reduce_blocks(lid: u32, acc: array<vec4<f32>, 4>) {
    blocks_scratch[lid] = acc;
    for (var s = SPLIT / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) {
            for (var k = 0u; k < T; k++) {
                blocks_scratch[lid][k] += blocks_scratch[lid + s][k];
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(SPLIT)
fn forward_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = block_index(wid, nwg);
    let nb = blocks(p.n, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc: array<vec4<f32>, 4>;
    for (var i = lid; i < p.fin; i += SPLIT) {
        let b = vec4<f32>(w_at(i, o0), w_at(i, o0 + 1u), w_at(i, o0 + 2u), w_at(i, o0 + 3u));
        for (var k = 0u; k < T; k++) {
            acc[k] += x_at(r0 + k, i) * b;
        }
    }
    reduce_blocks(lid, acc);
    if (lid < T * T) {
        let r = r0 + lid / T;
        let o = o0 + lid % T;
        if (r < p.n && o < p.fout) {
            var v = blocks_scratch[0][lid / T][lid % T] + bias[o];
            if (p.relu != 0u) { v = max(v, 0.0); }
            y[r * p.fout + o] = v;
        }
    }
}

@compute @workgroup_size(SPLIT)
fn backward_input_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = block_index(wid, nwg);
    let nb = blocks(p.n, p.fin);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let i0 = (idx % nb.y) * T;
    var acc: array<vec4<f32>, 4>;
    for (var o = lid; o < p.fout; o += SPLIT) {
        let b = vec4<f32>(w_at(i0, o), w_at(i0 + 1u, o), w_at(i0 + 2u, o), w_at(i0 + 3u, o));
        for (var k = 0u; k < T; k++) {
            acc[k] += g_at(r0 + k, o) * b;
        }
    }
    reduce_blocks(lid, acc);
    if (lid < T * T) {
        let r = r0 + lid / T;
        let i = i0 + lid % T;
        if (r < p.n && i < p.fin) { dx[r * p.fin + i] = blocks_scratch[0][lid / T][lid % T]; }
    }
}

// Kernel and bias gradients together: row `fin` of the block grid is the bias, whose input is
// 1 for every sample.
@compute @workgroup_size(SPLIT)
fn backward_params_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = block_index(wid, nwg);
    let nb = blocks(p.fin + 1u, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let i0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc: array<vec4<f32>, 4>;
    for (var r = lid; r < p.n; r += SPLIT) {
        let b = vec4<f32>(g_at(r, o0), g_at(r, o0 + 1u), g_at(r, o0 + 2u), g_at(r, o0 + 3u));
        for (var k = 0u; k < T; k++) {
            let i = i0 + k;
            var xv = 1.0;
            if (i < p.fin) { xv = x[r * p.fin + i]; }
            acc[k] += xv * b;
        }
    }
    reduce_blocks(lid, acc);
    if (lid < T * T) {
        let i = i0 + lid / T;
        let o = o0 + lid % T;
        let v = blocks_scratch[0][lid / T][lid % T];
        if (o < p.fout) {
            if (i < p.fin) {
                dw[i * p.fout + o] = v;
            } else if (i == p.fin) {
                db[o] = v;
            }
        }
    }
}
