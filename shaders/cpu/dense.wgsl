// dense for CPU adapters: the ops of shaders/dense.wgsl (y = x . W + b, W [in, out] as Keras
// stores it), shaped for lavapipe (see cpu/conv2d/common.wgsl for what that means). Each invocation
// owns a register tile of the output (4 x 16, or 16 x 16 for the weight gradient) and walks
// the shared dimension once, four at a time: every load is a vec4 and feeds 16 multiply-adds.
// No invocation returns early (indices are clamped, only stores are guarded); no split sums.
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

// Accumulators are named 4x4 matrices, never arrays: arrays of accumulators make lavapipe's
// NIR passes slow and its code slower. A product of two 4x4 blocks is one matrix multiply.

// ---- forward and backward_input: tile (16 rows) x (16 columns) ----
// Accumulators are an AccW (cpu/blocks.wgsl): block (j, m) is the tile's rows 4j..4j+3
// (matrix columns) times its columns 4m..4m+3 (matrix rows); for the weight gradient, inputs
// 4j.. (matrix rows) times outputs 4m.. (matrix columns).

// W[4k..4k+3][vec4 c]: column l is input 4k + l over the vec4's four outputs.
fn w_block(k: u32, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(wt[(4u * k) * FOUT4 + c], wt[(4u * k + 1u) * FOUT4 + c],
                       wt[(4u * k + 2u) * FOUT4 + c], wt[(4u * k + 3u) * FOUT4 + c]);
}

// W[inputs 4i..4i+3 (clamped)][vec4 k] transposed: column l is input 4i + l's weights.
fn wt_block(i: u32, k: u32) -> mat4x4<f32> {
    let r = min(vec4<u32>(4u * i, 4u * i + 1u, 4u * i + 2u, 4u * i + 3u), vec4<u32>(FIN - 1u));
    return transpose(mat4x4<f32>(wt[r.x * FOUT4 + k], wt[r.y * FOUT4 + k], wt[r.z * FOUT4 + k],
                                 wt[r.w * FOUT4 + k]));
}

// Rows 4j..4j+3 of the tile starting at r0, clamped to the batch.
fn rows4(r0: u32, j: u32) -> vec4<u32> {
    let r = r0 + 4u * j;
    return min(vec4<u32>(r, r + 1u, r + 2u, r + 3u), vec4<u32>(p.n - 1u));
}

// Four rows of x at vec4 k (columns = rows).
fn x_rows(r: vec4<u32>, k: u32) -> mat4x4<f32> {
    return mat4x4<f32>(x[r.x * FIN4 + k], x[r.y * FIN4 + k], x[r.z * FIN4 + k], x[r.w * FIN4 + k]);
}

fn g_rows(r: vec4<u32>, k: u32) -> mat4x4<f32> {
    return mat4x4<f32>(grad4(r.x * FOUT4 + k), grad4(r.y * FOUT4 + k), grad4(r.z * FOUT4 + k),
                       grad4(r.w * FOUT4 + k));
}

// Row block j times the four column blocks.
fn tile_row(j: u32, a: mat4x4<f32>, b0: mat4x4<f32>, b1: mat4x4<f32>, b2: mat4x4<f32>,
            b3: mat4x4<f32>, acc: ptr<function, AccW>) {
    acc_add(acc, j, 0u, b0 * a);
    acc_add(acc, j, 1u, b1 * a);
    acc_add(acc, j, 2u, b2 * a);
    acc_add(acc, j, 3u, b3 * a);
}

// Block (j, m) of the tile at (r0, c0): column r is tile row 4j + r. y gets the bias and the
// ReLU; dx as it is. (Two functions, so that each entry point binds only its own output.)
fn store_y(r0: u32, c0: u32, j: u32, m: u32, v: mat4x4<f32>, bias4: vec4<f32>) {
    for (var r = 0u; r < 4u; r++) {
        let row = r0 + 4u * j + r;
        var o = v[r] + bias4;
        if (p.relu != 0u) { o = max(o, vec4<f32>(0.0)); }
        if (row < p.n && c0 + m < FOUT4) { y[row * FOUT4 + c0 + m] = o; }
    }
}

fn store_dx(r0: u32, c0: u32, j: u32, m: u32, v: mat4x4<f32>) {
    for (var r = 0u; r < 4u; r++) {
        let row = r0 + 4u * j + r;
        if (row < p.n && c0 + m < FIN4) { dx[row * FIN4 + c0 + m] = v[r]; }
    }
}

// Tile `me` of a (rows x cols4) grid of 16 x 16 tiles: (first row, first vec4 column).
fn tile_of(me: u32, cols4: u32) -> vec2<u32> {
    let col_tiles = (cols4 + 3u) / 4u;
    return vec2<u32>((me / col_tiles) * 16u, (me % col_tiles) * 4u);
}

fn tile_count(cols4: u32) -> u32 {
    return ((p.n + 15u) / 16u) * ((cols4 + 3u) / 4u);
}

@compute @workgroup_size(CPU_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let tiles = tile_count(FOUT4);
    let t = tile_of(min(id, tiles - 1u), FOUT4);
    let cols = min(vec4<u32>(t.y, t.y + 1u, t.y + 2u, t.y + 3u), vec4<u32>(FOUT4 - 1u));
    var acc: AccW;
    for (var k = 0u; k < FIN4; k++) {
        let b0 = w_block(k, cols.x);
        let b1 = w_block(k, cols.y);
        let b2 = w_block(k, cols.z);
        let b3 = w_block(k, cols.w);
        tile_row(0u, x_rows(rows4(t.x, 0u), k), b0, b1, b2, b3, &acc);
        tile_row(1u, x_rows(rows4(t.x, 1u), k), b0, b1, b2, b3, &acc);
        tile_row(2u, x_rows(rows4(t.x, 2u), k), b0, b1, b2, b3, &acc);
        tile_row(3u, x_rows(rows4(t.x, 3u), k), b0, b1, b2, b3, &acc);
    }
    if (id < tiles) {
        let b = mat4x4<f32>(bias[cols.x], bias[cols.y], bias[cols.z], bias[cols.w]);
        for (var j = 0u; j < 4u; j++) {
            for (var m = 0u; m < 4u; m++) { store_y(t.x, t.y, j, m, acc_get(&acc, j, m), b[m]); }
        }
    }
}

// dx = g . W^T: the tile's columns are inputs, the shared dimension the outputs.
@compute @workgroup_size(CPU_WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let tiles = tile_count(FIN4);
    let t = tile_of(min(id, tiles - 1u), FIN4);
    var acc: AccW;
    for (var k = 0u; k < FOUT4; k++) {
        let b0 = wt_block(t.y, k);
        let b1 = wt_block(t.y + 1u, k);
        let b2 = wt_block(t.y + 2u, k);
        let b3 = wt_block(t.y + 3u, k);
        tile_row(0u, g_rows(rows4(t.x, 0u), k), b0, b1, b2, b3, &acc);
        tile_row(1u, g_rows(rows4(t.x, 1u), k), b0, b1, b2, b3, &acc);
        tile_row(2u, g_rows(rows4(t.x, 2u), k), b0, b1, b2, b3, &acc);
        tile_row(3u, g_rows(rows4(t.x, 3u), k), b0, b1, b2, b3, &acc);
    }
    if (id < tiles) {
        for (var j = 0u; j < 4u; j++) {
            for (var m = 0u; m < 4u; m++) { store_dx(t.x, t.y, j, m, acc_get(&acc, j, m)); }
        }
    }
}

// ---- backward_params: dW = x^T . g over the whole batch, tile (16 inputs) x (16 outputs);
// the bias gradient (the sum of g) by the tiles of the first 16 inputs ----

fn bw_row(j: u32, xq: vec4<f32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
          acc: ptr<function, AccW>) {
    acc_add(acc, j, 0u, outer(xq, g0));
    acc_add(acc, j, 1u, outer(xq, g1));
    acc_add(acc, j, 2u, outer(xq, g2));
    acc_add(acc, j, 3u, outer(xq, g3));
}

// Block (j, m) into dw: entry [l][i] is input 4 * (i0 + j) + i, output vec4 o0 + m, lane l.
fn store_dw(i0: u32, o0: u32, j: u32, m: u32, v: mat4x4<f32>) {
    let t = transpose(v);
    for (var i = 0u; i < 4u; i++) {
        let row = 4u * (i0 + j) + i;
        if (row < FIN && o0 + m < FOUT4) { dw[row * FOUT4 + o0 + m] = t[i]; }
    }
}

fn store_dw_row(i0: u32, o0: u32, j: u32, acc: ptr<function, AccW>) {
    store_dw(i0, o0, j, 0u, acc_get(acc, j, 0u));
    store_dw(i0, o0, j, 1u, acc_get(acc, j, 1u));
    store_dw(i0, o0, j, 2u, acc_get(acc, j, 2u));
    store_dw(i0, o0, j, 3u, acc_get(acc, j, 3u));
}

@compute @workgroup_size(CPU_WG)
fn backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let out_tiles = (FOUT4 + 3u) / 4u;
    let tiles = ((FIN4 + 3u) / 4u) * out_tiles;
    let me = min(id, tiles - 1u);
    let i0 = (me / out_tiles) * 4u;
    let o0 = (me % out_tiles) * 4u;
    let ins = min(vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u), vec4<u32>(FIN4 - 1u));
    let outs = min(vec4<u32>(o0, o0 + 1u, o0 + 2u, o0 + 3u), vec4<u32>(FOUT4 - 1u));
    var acc: AccW;
    var bacc = mat4x4<f32>();
    for (var r = 0u; r < p.n; r++) {
        let g0 = grad4(r * FOUT4 + outs.x);
        let g1 = grad4(r * FOUT4 + outs.y);
        let g2 = grad4(r * FOUT4 + outs.z);
        let g3 = grad4(r * FOUT4 + outs.w);
        bacc += mat4x4<f32>(g0, g1, g2, g3);
        bw_row(0u, x[r * FIN4 + ins.x], g0, g1, g2, g3, &acc);
        bw_row(1u, x[r * FIN4 + ins.y], g0, g1, g2, g3, &acc);
        bw_row(2u, x[r * FIN4 + ins.z], g0, g1, g2, g3, &acc);
        bw_row(3u, x[r * FIN4 + ins.w], g0, g1, g2, g3, &acc);
    }
    if (id < tiles) {
        store_dw_row(i0, o0, 0u, &acc);
        store_dw_row(i0, o0, 1u, &acc);
        store_dw_row(i0, o0, 2u, &acc);
        store_dw_row(i0, o0, 3u, &acc);
        if (WITH_BIAS && i0 == 0u) {
            for (var m = 0u; m < 4u; m++) {
                if (o0 + m < FOUT4) { db[o0 + m] = bacc[m]; }
            }
        }
    }
}

// ---- The same products with one operand read through uniform bindings ----
// lavapipe turns a storage load at a per-lane address into a loop over the 8 lanes with a
// guarded scalar load each, but a uniform load at a per-lane address into straight per-lane
// loads: on the CI machine's Zen 4 (examples/lane_loads.rs, three runs) 12-16 cycles a lane
// per vec4 from storage, 3-4 from a uniform binding, beyond the loop's own 2-3. So where one
// operand fits in two 64 KiB windows it is read through them (ops::cpu::dense::Windows), and
// the tile leans its way: per step of the shared dimension 8 vec4 from the windows for each
// 2 from storage (8 x 32 or 32 x 8 outputs of the same 16 4x4 blocks). Each output's terms
// are the register-tiled kernels' terms in the same order: the same bits.

const WINDOW4: u32 = 4096u;
@group(0) @binding(10) var<uniform> win0: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> win1: array<vec4<f32>, 4096>;
// Whether the operand reaches into the second window (else win1 is bound to win0's range and
// its loads fold away).
override TWO_WINDOWS: bool = false;

// vec4 i of the windowed operand.
fn win(i: u32) -> vec4<f32> {
    let lo = win0[min(i, WINDOW4 - 1u)];
    let hi = win1[min(i - min(i, WINDOW4), WINDOW4 - 1u)];
    return select(hi, lo, !TWO_WINDOWS || i < WINDOW4);
}

// wt_block with the kernel in the windows (rows clamped).
fn wt_block_win(i: u32, k: u32) -> mat4x4<f32> {
    let r = min(vec4<u32>(4u * i, 4u * i + 1u, 4u * i + 2u, 4u * i + 3u), vec4<u32>(FIN - 1u));
    return transpose(mat4x4<f32>(win(r.x * FOUT4 + k), win(r.y * FOUT4 + k),
                                 win(r.z * FOUT4 + k), win(r.w * FOUT4 + k)));
}

// Tile `me` of a grid of tiles `rows` x (4 * cols4) outputs: (first row, first vec4 column).
fn wide_tile(me: u32, rows: u32, cols4: u32) -> vec2<u32> {
    let col_tiles = (cols4 + 7u) / 8u;
    return vec2<u32>((me / col_tiles) * rows, (me % col_tiles) * 8u);
}

// forward and backward_input with the kernel in the windows: a tile is 8 rows x 8 vec4 columns
// (outputs, or the input gradient's inputs). Accumulator block (j, m) holds rows
// 4 * (j / 2).. times vec4 column 4 * (j % 2) + m.

// The forward's kernel rows are split between the windows at a row (ops::cpu::dense picks one
// whose offset keeps the uniform alignment): steps k < SPLIT4 of the shared dimension read
// rows 4k.. from the first, the rest from the second. Two loops, so that no load is a select
// between two gathers. Unset, everything is read from the first.
override SPLIT4: u32 = 0xffffffffu;

fn w_block_first(k: u32, c: u32) -> mat4x4<f32> {
    let c4 = min(c, FOUT4 - 1u);
    let i = (4u * k) * FOUT4 + c4;
    return mat4x4<f32>(win0[min(i, WINDOW4 - 1u)], win0[min(i + FOUT4, WINDOW4 - 1u)],
                       win0[min(i + 2u * FOUT4, WINDOW4 - 1u)],
                       win0[min(i + 3u * FOUT4, WINDOW4 - 1u)]);
}

fn w_block_second(k: u32, c: u32) -> mat4x4<f32> {
    let c4 = min(c, FOUT4 - 1u);
    let i = (4u * (k - SPLIT4)) * FOUT4 + c4;
    return mat4x4<f32>(win1[min(i, WINDOW4 - 1u)], win1[min(i + FOUT4, WINDOW4 - 1u)],
                       win1[min(i + 2u * FOUT4, WINDOW4 - 1u)],
                       win1[min(i + 3u * FOUT4, WINDOW4 - 1u)]);
}

// One step of the forward tile: its 8 rows times the 8 column blocks of W's rows 4k...
fn forward_step(k: u32, t: vec2<u32>, second: bool, acc: ptr<function, AccW>) {
    let a0 = x_rows(rows4(t.x, 0u), k);
    let a1 = x_rows(rows4(t.x, 1u), k);
    var b0: mat4x4<f32>; var b1: mat4x4<f32>; var b2: mat4x4<f32>; var b3: mat4x4<f32>;
    if (second) {
        b0 = w_block_second(k, t.y); b1 = w_block_second(k, t.y + 1u);
        b2 = w_block_second(k, t.y + 2u); b3 = w_block_second(k, t.y + 3u);
    } else {
        b0 = w_block_first(k, t.y); b1 = w_block_first(k, t.y + 1u);
        b2 = w_block_first(k, t.y + 2u); b3 = w_block_first(k, t.y + 3u);
    }
    tile_row(0u, a0, b0, b1, b2, b3, acc);
    tile_row(2u, a1, b0, b1, b2, b3, acc);
    if (second) {
        b0 = w_block_second(k, t.y + 4u); b1 = w_block_second(k, t.y + 5u);
        b2 = w_block_second(k, t.y + 6u); b3 = w_block_second(k, t.y + 7u);
    } else {
        b0 = w_block_first(k, t.y + 4u); b1 = w_block_first(k, t.y + 5u);
        b2 = w_block_first(k, t.y + 6u); b3 = w_block_first(k, t.y + 7u);
    }
    tile_row(1u, a0, b0, b1, b2, b3, acc);
    tile_row(3u, a1, b0, b1, b2, b3, acc);
}

@compute @workgroup_size(CPU_WG)
fn forward_win(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let tiles = ((p.n + 7u) / 8u) * ((FOUT4 + 7u) / 8u);
    let t = wide_tile(min(id, tiles - 1u), 8u, FOUT4);
    var acc: AccW;
    for (var k = 0u; k < min(SPLIT4, FIN4); k++) { forward_step(k, t, false, &acc); }
    for (var k = SPLIT4; k < FIN4; k++) { forward_step(k, t, true, &acc); }
    if (id < tiles) {
        for (var j = 0u; j < 4u; j++) {
            let c0 = t.y + 4u * (j % 2u);
            for (var m = 0u; m < 4u; m++) {
                let b = bias[min(c0 + m, FOUT4 - 1u)];
                store_y(t.x + 4u * (j / 2u), c0, 0u, m, acc_get(&acc, j, m), b);
            }
        }
    }
}

@compute @workgroup_size(CPU_WG)
fn backward_input_win(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let tiles = ((p.n + 7u) / 8u) * ((FIN4 + 7u) / 8u);
    let t = wide_tile(min(id, tiles - 1u), 8u, FIN4);
    var acc: AccW;
    for (var k = 0u; k < FOUT4; k++) {
        let a0 = g_rows(rows4(t.x, 0u), k);
        let a1 = g_rows(rows4(t.x, 1u), k);
        let b0 = wt_block_win(t.y, k);
        let b1 = wt_block_win(t.y + 1u, k);
        let b2 = wt_block_win(t.y + 2u, k);
        let b3 = wt_block_win(t.y + 3u, k);
        tile_row(0u, a0, b0, b1, b2, b3, &acc);
        tile_row(2u, a1, b0, b1, b2, b3, &acc);
        let b4 = wt_block_win(t.y + 4u, k);
        let b5 = wt_block_win(t.y + 5u, k);
        let b6 = wt_block_win(t.y + 6u, k);
        let b7 = wt_block_win(t.y + 7u, k);
        tile_row(1u, a0, b4, b5, b6, b7, &acc);
        tile_row(3u, a1, b4, b5, b6, b7, &acc);
    }
    if (id < tiles) {
        for (var j = 0u; j < 4u; j++) {
            for (var m = 0u; m < 4u; m++) {
                store_dx(t.x + 4u * (j / 2u), t.y + 4u * (j % 2u), 0u, m, acc_get(&acc, j, m));
            }
        }
    }
}

// backward_params with x in the windows: a tile is 8 vec4 of inputs x 2 vec4 of outputs.
// Accumulator block (j, m) holds input vec4 2j + m / 2 times output vec4 m % 2.
fn bw_x_row(j: u32, x0: vec4<f32>, x1: vec4<f32>, g0: vec4<f32>, g1: vec4<f32>,
            acc: ptr<function, AccW>) {
    acc_add(acc, j, 0u, outer(x0, g0));
    acc_add(acc, j, 1u, outer(x0, g1));
    acc_add(acc, j, 2u, outer(x1, g0));
    acc_add(acc, j, 3u, outer(x1, g1));
}

fn x_win(r: u32, i: u32) -> vec4<f32> {
    return win(r * FIN4 + min(i, FIN4 - 1u));
}

@compute @workgroup_size(CPU_WG)
fn backward_params_x_win(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let out_tiles = (FOUT4 + 1u) / 2u;
    let tiles = ((FIN4 + 7u) / 8u) * out_tiles;
    let me = min(id, tiles - 1u);
    let i0 = (me / out_tiles) * 8u;
    let o0 = (me % out_tiles) * 2u;
    let outs = min(vec2<u32>(o0, o0 + 1u), vec2<u32>(FOUT4 - 1u));
    var acc: AccW;
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    for (var r = 0u; r < p.n; r++) {
        let g0 = grad4(r * FOUT4 + outs.x);
        let g1 = grad4(r * FOUT4 + outs.y);
        b0 += g0;
        b1 += g1;
        bw_x_row(0u, x_win(r, i0), x_win(r, i0 + 1u), g0, g1, &acc);
        bw_x_row(1u, x_win(r, i0 + 2u), x_win(r, i0 + 3u), g0, g1, &acc);
        bw_x_row(2u, x_win(r, i0 + 4u), x_win(r, i0 + 5u), g0, g1, &acc);
        bw_x_row(3u, x_win(r, i0 + 6u), x_win(r, i0 + 7u), g0, g1, &acc);
    }
    if (id < tiles) {
        for (var j = 0u; j < 4u; j++) {
            for (var m = 0u; m < 4u; m++) {
                store_dw(i0 + 2u * j + m / 2u, o0 + m % 2u, 0u, 0u, acc_get(&acc, j, m));
            }
        }
        if (WITH_BIAS && i0 == 0u) {
            if (o0 < FOUT4) { db[o0] = b0; }
            if (o0 + 1u < FOUT4) { db[o0 + 1u] = b1; }
        }
    }
}

// backward_params with the output gradient in the windows (already ReLU-masked: the CPU set
// masks it in its own pass): a tile is 2 vec4 of inputs x 8 vec4 of outputs. Accumulator
// block (j, m) holds input vec4 j / 2 times output vec4 4 * (j % 2) + m.
fn g_win(r: u32, o: u32) -> vec4<f32> {
    return win(r * FOUT4 + min(o, FOUT4 - 1u));
}

@compute @workgroup_size(CPU_WG)
fn backward_params_g_win(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    let out_tiles = (FOUT4 + 7u) / 8u;
    let tiles = ((FIN4 + 1u) / 2u) * out_tiles;
    let me = min(id, tiles - 1u);
    let i0 = (me / out_tiles) * 2u;
    let o0 = (me % out_tiles) * 8u;
    let ins = min(vec2<u32>(i0, i0 + 1u), vec2<u32>(FIN4 - 1u));
    var acc: AccW;
    var blo = mat4x4<f32>();
    var bhi = mat4x4<f32>();
    for (var r = 0u; r < p.n; r++) {
        let x0 = x[r * FIN4 + ins.x];
        let x1 = x[r * FIN4 + ins.y];
        let g0 = g_win(r, o0);
        let g1 = g_win(r, o0 + 1u);
        let g2 = g_win(r, o0 + 2u);
        let g3 = g_win(r, o0 + 3u);
        blo += mat4x4<f32>(g0, g1, g2, g3);
        bw_row(0u, x0, g0, g1, g2, g3, &acc);
        bw_row(2u, x1, g0, g1, g2, g3, &acc);
        let g4 = g_win(r, o0 + 4u);
        let g5 = g_win(r, o0 + 5u);
        let g6 = g_win(r, o0 + 6u);
        let g7 = g_win(r, o0 + 7u);
        bhi += mat4x4<f32>(g4, g5, g6, g7);
        bw_row(1u, x0, g4, g5, g6, g7, &acc);
        bw_row(3u, x1, g4, g5, g6, g7, &acc);
    }
    if (id < tiles) {
        for (var j = 0u; j < 4u; j++) {
            for (var m = 0u; m < 4u; m++) {
                store_dw(i0 + j / 2u, o0 + 4u * (j % 2u), 0u, m, acc_get(&acc, j, m));
            }
        }
        if (WITH_BIAS && i0 == 0u) {
            for (var m = 0u; m < 4u; m++) {
                if (o0 + m < FOUT4) { db[o0 + m] = blo[m]; }
                if (o0 + 4u + m < FOUT4) { db[o0 + 4u + m] = bhi[m]; }
            }
        }
    }
}
