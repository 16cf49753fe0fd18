// dense: y = x . W + b (W is [in, out], as Keras stores it), ReLU optionally fused.
// Backward for the input, weight and bias. Reductions over the batch are sequential per
// invocation (a fixed order: deterministic). grad_out applies the ReLU mask as in conv2d.

struct Dense {
    n: u32, fin: u32, fout: u32, relu: u32,
    // rows only: the stack's layers, the loss's elements (n x the last layer's units), and
    // whether to write the logits' and inputs' gradients (a training step) or not;
    // rows_gather only: the batch's first entry in perm.
    layers: u32, total: u32, backward: u32, offset: u32,
    // grads_adam only: where this step's region of loss_partials starts, the slot of the loss
    // log it is finished into (bce.loss_finish_steps), and Adam's step (as adam.step's).
    loss_base: u32, loss_slot: u32, _p0: u32, _p1: u32,
    rate: AdamRate,
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

// An invocation's 4x4 block of sums, row k in register kk: four named vec4 registers, never
// an indexed array. A function-scope array that the driver cannot prove constant-indexed
// stays in local memory on NVIDIA, a memory round trip per multiply-add (conv2d.wgsl's Sums
// were 1.45-1.75x faster on the H200 for it).
struct Block {
    k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>, k3: vec4<f32>,
}

fn zero_block() -> Block {
    let z = vec4<f32>(0.0);
    return Block(z, z, z, z);
}

// acc with a[k] * b added to row k: the multiply-adds an indexed `acc[k] += a[k] * b` made.
fn add_rows(acc: Block, a: vec4<f32>, b: vec4<f32>) -> Block {
    return Block(acc.k0 + a.x * b, acc.k1 + a.y * b, acc.k2 + a.z * b, acc.k3 + a.w * b);
}

fn block_row(s: Block, k: u32) -> vec4<f32> {
    switch k {
        case 0u: { return s.k0; }
        case 1u: { return s.k1; }
        case 2u: { return s.k2; }
        default: { return s.k3; }
    }
}

// x[r0..r0 + 3, i], 0 outside the batch.
fn x4_rows(r0: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(x_at(r0, i), x_at(r0 + 1u, i), x_at(r0 + 2u, i), x_at(r0 + 3u, i));
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

// g_at(r0..r0 + 3, o).
fn g4_rows(r0: u32, o: u32) -> vec4<f32> {
    return vec4<f32>(g_at(r0, o), g_at(r0 + 1u, o), g_at(r0 + 2u, o), g_at(r0 + 3u, o));
}

// Sample r's inputs i0..i0 + 3, `past` for those past the last input (0, or the bias row's
// 1 in the weight gradients).
fn x4_inputs(r: u32, i0: u32, past: f32) -> vec4<f32> {
    var v = vec4<f32>(past);
    for (var k = 0u; k < T; k++) {
        if (i0 + k < p.fin) { v[k] = x[r * p.fin + i0 + k]; }
    }
    return v;
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
    var acc = zero_block();
    for (var i = 0u; i < p.fin; i++) {
        let b = vec4<f32>(w_at(i, o0), w_at(i, o0 + 1u), w_at(i, o0 + 2u), w_at(i, o0 + 3u));
        acc = add_rows(acc, x4_rows(r0, i), b);
    }
    for (var k = 0u; k < T; k++) {
        let r = r0 + k;
        let row = block_row(acc, k);
        for (var j = 0u; j < T; j++) {
            let o = o0 + j;
            if (r < p.n && o < p.fout) {
                var v = row[j] + bias[o];
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
    var acc = zero_block();
    for (var o = 0u; o < p.fout; o++) {
        let b = vec4<f32>(w_at(i0, o), w_at(i0 + 1u, o), w_at(i0 + 2u, o), w_at(i0 + 3u, o));
        acc = add_rows(acc, g4_rows(r0, o), b);
    }
    for (var k = 0u; k < T; k++) {
        let r = r0 + k;
        let row = block_row(acc, k);
        for (var j = 0u; j < T; j++) {
            let i = i0 + j;
            if (r < p.n && i < p.fin) { dx[r * p.fin + i] = row[j]; }
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
    var acc = zero_block();
    for (var r = 0u; r < p.n; r++) {
        let b = vec4<f32>(g_at(r, o0), g_at(r, o0 + 1u), g_at(r, o0 + 2u), g_at(r, o0 + 3u));
        acc = add_rows(acc, x4_inputs(r, i0, 0.0), b);
    }
    for (var k = 0u; k < T; k++) {
        let i = i0 + k;
        let row = block_row(acc, k);
        for (var j = 0u; j < T; j++) {
            let o = o0 + j;
            if (i < p.fin && o < p.fout) { dw[i * p.fout + o] = row[j]; }
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

// The tests' NaN fill (POISON_WORKGROUP in common.wgsl).
fn poison_blocks_scratch(lid: u32, invocations: u32) {
    if (POISON_WORKGROUP) {
        let v = vec4<f32>(bitcast<f32>(poison_bits(lid)));
        for (var i = lid; i < SPLIT; i += invocations) {
            blocks_scratch[i] = array<vec4<f32>, 4>(v, v, v, v);
        }
        workgroupBarrier();
    }
}

fn block_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Adds the 64 invocations' blocks in a fixed tree; the sum ends in blocks_scratch[0].
fn reduce_blocks(lid: u32, acc: Block) {
    blocks_scratch[lid] = array<vec4<f32>, 4>(acc.k0, acc.k1, acc.k2, acc.k3);
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

// A split forward block's 16 sums from blocks_scratch: bias, ReLU, into y.
fn store_forward_block(lid: u32, r0: u32, o0: u32) {
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

// A weight-gradient block's 16 sums from blocks_scratch: row fin is the bias's.
fn store_params_block(lid: u32, i0: u32, o0: u32) {
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

@compute @workgroup_size(SPLIT)
fn forward_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_blocks_scratch(lid, SPLIT);
    let idx = block_index(wid, nwg);
    let nb = blocks(p.n, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc = zero_block();
    for (var i = lid; i < p.fin; i += SPLIT) {
        let b = vec4<f32>(w_at(i, o0), w_at(i, o0 + 1u), w_at(i, o0 + 2u), w_at(i, o0 + 3u));
        acc = add_rows(acc, x4_rows(r0, i), b);
    }
    reduce_blocks(lid, acc);
    store_forward_block(lid, r0, o0);
}

@compute @workgroup_size(SPLIT)
fn backward_input_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_blocks_scratch(lid, SPLIT);
    let idx = block_index(wid, nwg);
    let nb = blocks(p.n, p.fin);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let i0 = (idx % nb.y) * T;
    var acc = zero_block();
    for (var o = lid; o < p.fout; o += SPLIT) {
        let b = vec4<f32>(w_at(i0, o), w_at(i0 + 1u, o), w_at(i0 + 2u, o), w_at(i0 + 3u, o));
        acc = add_rows(acc, g4_rows(r0, o), b);
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
    poison_blocks_scratch(lid, SPLIT);
    let idx = block_index(wid, nwg);
    let nb = blocks(p.fin + 1u, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let i0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc = zero_block();
    for (var r = lid; r < p.n; r += SPLIT) {
        let b = vec4<f32>(g_at(r, o0), g_at(r, o0 + 1u), g_at(r, o0 + 2u), g_at(r, o0 + 3u));
        acc = add_rows(acc, x4_inputs(r, i0, 1.0), b);
    }
    reduce_blocks(lid, acc);
    store_params_block(lid, i0, o0);
}

// Vec4 variants (`--folds vec4`) of forward_split and backward_params_split, for feature
// counts that are multiples of 4: a 4x4 block's four weights of a kernel row, or its four
// inputs and four upstream gradients of a sample, are one 16-byte load instead of four
// scalar ones. The split-K lanes read a row apart, so each scalar load was a cache line of
// its own per invocation: four times the lines of one vec4 load. The arithmetic is
// unchanged, so every bit is.
@group(0) @binding(16) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read> act4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read> wt4: array<vec4<f32>>;

// The masked upstream gradient at (r, o0..o0 + 3), as g_at's four.
fn g4_at(r: u32, o0: u32) -> vec4<f32> {
    let at = (r * p.fout + o0) / 4u;
    let g = dy4[at];
    if (p.relu != 0u) { return select(g, vec4<f32>(0.0), act4[at] <= vec4<f32>(0.0)); }
    return g;
}

@compute @workgroup_size(SPLIT)
fn forward_split4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_blocks_scratch(lid, SPLIT);
    let idx = block_index(wid, nwg);
    let nb = blocks(p.n, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let r0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc = zero_block();
    for (var i = lid; i < p.fin; i += SPLIT) {
        acc = add_rows(acc, x4_rows(r0, i), wt4[(i * p.fout + o0) / 4u]);
    }
    reduce_blocks(lid, acc);
    store_forward_block(lid, r0, o0);
}

@compute @workgroup_size(SPLIT)
fn backward_params_split4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_blocks_scratch(lid, SPLIT);
    let idx = block_index(wid, nwg);
    let nb = blocks(p.fin + 1u, p.fout);
    if (idx >= nb.x * nb.y) { return; }
    let i0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc = zero_block();
    for (var r = lid; r < p.n; r += SPLIT) {
        let b = g4_at(r, o0);
        // The bias block's inputs are all ones (only its first row is written).
        var xv = vec4<f32>(1.0);
        if (i0 < p.fin) { xv = x4[(r * p.fin + i0) / 4u]; }
        acc = add_rows(acc, xv, b);
    }
    reduce_blocks(lid, acc);
    store_params_block(lid, i0, o0);
}

// rows (`--folds rows`): a stack of dense layers run for ROWS samples per workgroup, the
// samples' activations held in workgroup memory from the input to the logits: every layer's
// forward pass, then (with p.backward) the logits' gradient as bce.sigmoid_backward writes it
// and every layer's input gradient down to the first layer's output. One dispatch instead of
// a forward and a backward one per layer: a dense model is small enough that the step is
// dispatches, not work. Each output is summed in the order its own kernel above sums it
// (split-K's 64 lanes and tree from SPLIT_FROM terms on, else one sequential sum), so every
// bit is the same; activations and gradients go to the tensors the per-layer kernels write,
// for the weight gradients to read. stack[l] describes layer l; offsets count floats.
struct StackLayer {
    fin: u32, fout: u32, relu: u32,
    w: u32,      // kernel in wt ([fin, fout])
    b: u32,      // bias in wt, or NO_BIAS
    out: u32,    // the layer's output in acts_even or acts_odd ([n, fout])
    dout: u32,   // its gradient in dacts_even or dacts_odd ([n, fout])
    _p: u32,
}

// A uniform, not storage: the layers' shapes bound loops that wait at barriers, which the
// uniformity rules allow only for uniform values.
@group(0) @binding(10) var<uniform> stack: array<StackLayer, STACK_MAX>;
// Layer l's output and its gradient lie in the buffers of l's parity: a per-layer kernel
// reads one layer's tensor and writes the next's, which one buffer could not be bound as.
@group(0) @binding(11) var<storage, read_write> acts_even: array<f32>;
@group(0) @binding(12) var<storage, read_write> dacts_even: array<f32>;
@group(0) @binding(14) var<storage, read_write> acts_odd: array<f32>;
@group(0) @binding(15) var<storage, read_write> dacts_odd: array<f32>;
@group(0) @binding(13) var<storage, read> targets: array<f32>;

// ops::dense::{SPLIT_FROM, NO_BIAS, STACK_MAX}.
const SPLIT_FROM: u32 = 128u;
const NO_BIAS: u32 = 0xffffffffu;
const STACK_MAX: u32 = 16u;
// Outputs whose 64 lane sums one split pass holds and adds: 8 per invocation.
const LANE_OUTPUTS: u32 = 32u;
const PER_LANE: u32 = 8u;
override ROWS: u32 = 2u;
// ROWS x the widths of the input and of every layer's output.
override ROW_FLOATS: u32 = 1u;
var<workgroup> row_act: array<f32, ROW_FLOATS>;
// LANE_OUTPUTS x SPLIT lane sums; in a split forward pass, first the staged weights (SPLIT
// rows of STAGE_STRIDE: a stride of 33 floats keeps the lanes' reads on distinct banks).
const STAGE_STRIDE: u32 = 33u;
var<workgroup> lane_sums: array<f32, 2112>;  // SPLIT x STAGE_STRIDE

fn poison_row_act(lid: u32, invocations: u32) {
    if (POISON_WORKGROUP) {
        for (var i = lid; i < ROW_FLOATS; i += invocations) {
            row_act[i] = bitcast<f32>(poison_bits(lid));
        }
        workgroupBarrier();
    }
}

fn poison_lane_sums(lid: u32, invocations: u32) {
    if (POISON_WORKGROUP) {
        for (var i = lid; i < 2112u; i += invocations) {
            lane_sums[i] = bitcast<f32>(poison_bits(lid));
        }
        workgroupBarrier();
    }
}

fn level_width(j: u32) -> u32 {
    if (j == 0u) { return stack[0].fin; }
    return stack[j - 1u].fout;
}

// Where level j (0: the input, j: layer j - 1's output) starts in row_act: ROWS rows.
fn level_base(j: u32) -> u32 {
    var at = 0u;
    for (var k = 0u; k < j; k++) { at += ROWS * level_width(k); }
    return at;
}

fn store_act(l: u32, at: u32, v: f32) {
    if (l % 2u == 0u) { acts_even[at] = v; } else { acts_odd[at] = v; }
}

fn store_dact(l: u32, at: u32, v: f32) {
    if (l % 2u == 0u) { dacts_even[at] = v; } else { dacts_odd[at] = v; }
}

fn stack_bias(e: StackLayer, o: u32) -> f32 {
    if (e.b == NO_BIAS) { return 0.0; }
    return wt[e.b + o];
}

// Adds the 64 lane sums of each of LANE_OUTPUTS outputs in reduce_blocks' tree; output j's
// sum ends in lane_sums[j * SPLIT]. Every invocation must call it.
fn reduce_lanes(t: u32) {
    for (var s = SPLIT / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        for (var k = t; k < LANE_OUTPUTS * s; k += WG) {
            let at = (k / s) * SPLIT + k % s;
            lane_sums[at] += lane_sums[at + s];
        }
    }
    workgroupBarrier();
}

// Layer li's output q (row q / fout) from its sum: bias, ReLU, into row_act and acts.
fn finish_output(li: u32, e: StackLayer, base: u32, q: u32, row0: u32, sum: f32) {
    let o = q % e.fout;
    var v = sum + stack_bias(e, o);
    if (e.relu != 0u) { v = max(v, 0.0); }
    row_act[base + q] = v;
    let r = row0 + q / e.fout;
    if (r < p.n) { store_act(li, e.out + r * e.fout + o, v); }
}

// Layer li's input gradient at q (row q / fin) from its sum: into dacts as the layer below's
// output gradient, and into row_act masked by that layer's ReLU (in place of the activation
// the mask reads), ready for the layer below's own input gradient.
fn finish_gradient(li: u32, e: StackLayer, below: StackLayer, base: u32, q: u32, row0: u32,
                   sum: f32) {
    let r = row0 + q / e.fin;
    if (r < p.n) { store_dact(li - 1u, below.dout + r * e.fin + q % e.fin, sum); }
    let masked = below.relu != 0u && row_act[base + q] <= 0.0;
    row_act[base + q] = select(sum, 0.0, masked);
}

// Weights one invocation stages per chunk: SPLIT rows x LANE_OUTPUTS columns over WG, eight
// (an Eight).
const STAGED_PER_INVOCATION: u32 = SPLIT * LANE_OUTPUTS / WG;
// An Eight holds a pass's lane sums and an invocation's staged weights.
const_assert PER_LANE == 8u;
const_assert STAGED_PER_INVOCATION == 8u;

// Eight floats of an invocation, lane m in lo[m] or hi[m - 4]: named vec4 registers, never an
// indexed array (see Block). A split pass's PER_LANE = 8 lane sums, or its staged weights.
struct Eight {
    lo: vec4<f32>, hi: vec4<f32>,
}

fn eight_at(v: Eight, m: u32) -> f32 {
    if (m < 4u) { return v.lo[m]; }
    return v.hi[m - 4u];
}

// acc + a * b, lane by lane: the multiply-adds an indexed `acc[j] += a[j] * b[j]` made.
fn add_eight(acc: Eight, a: Eight, b: Eight) -> Eight {
    return Eight(acc.lo + a.lo * b.lo, acc.hi + a.hi * b.hi);
}

// Invocation t's staged weight m of the kernel rows i0..i0 + SPLIT at the columns of outputs
// q0..q0 + LANE_OUTPUTS (0 past the last row): element k = t + m * WG is row k /
// LANE_OUTPUTS, column k % LANE_OUTPUTS.
fn staged_weight(t: u32, e: StackLayer, q0: u32, outs: u32, i0: u32, m: u32) -> f32 {
    let k = t + m * WG;
    let i = i0 + k / LANE_OUTPUTS;
    let q = min(q0 + k % LANE_OUTPUTS, outs - 1u);
    if (i < e.fin) { return wt[e.w + i * e.fout + q % e.fout]; }
    return 0.0;
}

// Invocation t's share of those rows, all STAGED_PER_INVOCATION = 8 of it.
fn stage_weights(t: u32, e: StackLayer, q0: u32, outs: u32, i0: u32) -> Eight {
    return Eight(
        vec4<f32>(staged_weight(t, e, q0, outs, i0, 0u), staged_weight(t, e, q0, outs, i0, 1u),
                  staged_weight(t, e, q0, outs, i0, 2u), staged_weight(t, e, q0, outs, i0, 3u)),
        vec4<f32>(staged_weight(t, e, q0, outs, i0, 4u), staged_weight(t, e, q0, outs, i0, 5u),
                  staged_weight(t, e, q0, outs, i0, 6u), staged_weight(t, e, q0, outs, i0, 7u)));
}

// row_act[base + (q / width) * stride + at] for the pass's outputs q = q0 + j (clamped to the
// last), j = 0..7: an input (forward) or upstream gradient (backward) of each lane sum.
fn lane_rows(base: u32, q0: u32, outs: u32, width: u32, stride: u32, at: u32) -> Eight {
    return Eight(
        vec4<f32>(lane_row(base, q0, outs, width, stride, at, 0u), lane_row(base, q0, outs, width, stride, at, 1u),
                  lane_row(base, q0, outs, width, stride, at, 2u), lane_row(base, q0, outs, width, stride, at, 3u)),
        vec4<f32>(lane_row(base, q0, outs, width, stride, at, 4u), lane_row(base, q0, outs, width, stride, at, 5u),
                  lane_row(base, q0, outs, width, stride, at, 6u), lane_row(base, q0, outs, width, stride, at, 7u)));
}

fn lane_row(base: u32, q0: u32, outs: u32, width: u32, stride: u32, at: u32, j: u32) -> f32 {
    let q = min(q0 + j, outs - 1u);
    return row_act[base + (q / width) * stride + at];
}

// A split pass's lane sums into lane_sums, output-major, for reduce_lanes.
fn put_lane_sums(first: u32, lane: u32, acc: Eight) {
    for (var j = 0u; j < PER_LANE; j++) {
        lane_sums[(first + j) * SPLIT + lane] = eight_at(acc, j);
    }
}

// The sum over k in 0..n of row_act[a + k] * wt[b + k * step], in k's order (the same bits
// as one multiply-add after the other), the weights' loads issued eight at a time. n is a
// layer's width, a runtime value, so the driver need not unroll the loop; then each
// multiply-add waits for its own weight's trip to memory (32 in a row per output in the
// dense model's 32 -> 784 layer), where eight in flight take about as long as one.
fn dot_in_order(a: u32, b: u32, step: u32, n: u32) -> f32 {
    var acc = 0.0;
    var k = 0u;
    for (; k + 8u <= n; k += 8u) {
        let w = b + k * step;
        let w0 = wt[w];
        let w1 = wt[w + step];
        let w2 = wt[w + 2u * step];
        let w3 = wt[w + 3u * step];
        let w4 = wt[w + 4u * step];
        let w5 = wt[w + 5u * step];
        let w6 = wt[w + 6u * step];
        let w7 = wt[w + 7u * step];
        let x = a + k;
        acc += row_act[x] * w0;
        acc += row_act[x + 1u] * w1;
        acc += row_act[x + 2u] * w2;
        acc += row_act[x + 3u] * w3;
        acc += row_act[x + 4u] * w4;
        acc += row_act[x + 5u] * w5;
        acc += row_act[x + 6u] * w6;
        acc += row_act[x + 7u] * w7;
    }
    for (; k < n; k++) {
        acc += row_act[a + k] * wt[b + k * step];
    }
    return acc;
}

fn stack_forward(t: u32, li: u32, row0: u32) {
    let e = stack[li];
    let xin = level_base(li);
    let yout = level_base(li + 1u);
    let outs = ROWS * e.fout;
    if (e.fin < SPLIT_FROM) {
        for (var q = t; q < outs; q += WG) {
            let r = q / e.fout;
            let o = q % e.fout;
            let acc = dot_in_order(xin + r * e.fin, e.w + o, e.fout, e.fin);
            finish_output(li, e, yout, q, row0, acc);
        }
        workgroupBarrier();
        return;
    }
    let lane = t % SPLIT;
    let first = (t / SPLIT) * PER_LANE;
    for (var q0 = 0u; q0 < outs; q0 += LANE_OUTPUTS) {
        var acc = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
        // The lanes sum along the kernel's rows, which a warp would read a row apart: the
        // pass's 32 columns of the next SPLIT rows are staged first, read along the rows. The
        // chunk after is loaded into registers while this one is summed, so that its trip to
        // memory overlaps the sums instead of following them.
        var staged = stage_weights(t, e, q0, outs, 0u);
        for (var i0 = 0u; i0 < e.fin; i0 += SPLIT) {
            workgroupBarrier();
            for (var m = 0u; m < STAGED_PER_INVOCATION; m++) {
                let k = t + m * WG;
                lane_sums[(k / LANE_OUTPUTS) * STAGE_STRIDE + k % LANE_OUTPUTS] = eight_at(staged, m);
            }
            workgroupBarrier();
            staged = stage_weights(t, e, q0, outs, i0 + SPLIT);
            let i = i0 + lane;
            if (i < e.fin) {
                let w = lane * STAGE_STRIDE + first;
                let columns = Eight(
                    vec4<f32>(lane_sums[w], lane_sums[w + 1u], lane_sums[w + 2u], lane_sums[w + 3u]),
                    vec4<f32>(lane_sums[w + 4u], lane_sums[w + 5u], lane_sums[w + 6u], lane_sums[w + 7u]));
                acc = add_eight(acc, lane_rows(xin, q0 + first, outs, e.fout, e.fin, i), columns);
            }
        }
        workgroupBarrier();
        put_lane_sums(first, lane, acc);
        reduce_lanes(t);
        if (t < LANE_OUTPUTS && q0 + t < outs) {
            finish_output(li, e, yout, q0 + t, row0, lane_sums[t * SPLIT]);
        }
        workgroupBarrier();
    }
}

// wt[e.w + (q % fin) * fout + o] for the backward pass's outputs q = q0 + j (clamped), j =
// 0..7: each lane sum's weight at output unit o.
fn lane_weights(e: StackLayer, q0: u32, outs: u32, o: u32) -> Eight {
    return Eight(
        vec4<f32>(lane_weight(e, q0, outs, o, 0u), lane_weight(e, q0, outs, o, 1u),
                  lane_weight(e, q0, outs, o, 2u), lane_weight(e, q0, outs, o, 3u)),
        vec4<f32>(lane_weight(e, q0, outs, o, 4u), lane_weight(e, q0, outs, o, 5u),
                  lane_weight(e, q0, outs, o, 6u), lane_weight(e, q0, outs, o, 7u)));
}

fn lane_weight(e: StackLayer, q0: u32, outs: u32, o: u32, j: u32) -> f32 {
    let q = min(q0 + j, outs - 1u);
    return wt[e.w + (q % e.fin) * e.fout + o];
}

fn stack_backward(t: u32, li: u32, row0: u32) {
    let e = stack[li];
    let below = stack[li - 1u];
    let gin = level_base(li + 1u);
    let dxout = level_base(li);
    let outs = ROWS * e.fin;
    if (e.fout < SPLIT_FROM) {
        for (var q = t; q < outs; q += WG) {
            let r = q / e.fin;
            let i = q % e.fin;
            let acc = dot_in_order(gin + r * e.fout, e.w + i * e.fout, 1u, e.fout);
            finish_gradient(li, e, below, dxout, q, row0, acc);
        }
        workgroupBarrier();
        return;
    }
    let lane = t % SPLIT;
    let first = (t / SPLIT) * PER_LANE;
    for (var q0 = 0u; q0 < outs; q0 += LANE_OUTPUTS) {
        var acc = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
        for (var o = lane; o < e.fout; o += SPLIT) {
            let g = lane_rows(gin, q0 + first, outs, e.fin, e.fout, o);
            acc = add_eight(acc, g, lane_weights(e, q0 + first, outs, o));
        }
        put_lane_sums(first, lane, acc);
        reduce_lanes(t);
        if (t < LANE_OUTPUTS && q0 + t < outs) {
            finish_gradient(li, e, below, dxout, q0 + t, row0, lane_sums[t * SPLIT]);
        }
        workgroupBarrier();
    }
}

// The logits' gradient, as bce.sigmoid_backward: into dacts, and in place of the logits in
// row_act (the last layer has no ReLU to mask).
fn stack_logits_gradient(t: u32, row0: u32) {
    let e = stack[p.layers - 1u];
    for (var q = t; q < ROWS * e.fout; q += WG) {
        let r = row0 + q / e.fout;
        var goal = 0.0;
        if (r < p.n) { goal = targets[r * e.fout + q % e.fout]; }
        put_logits_gradient(e, q, row0, goal);
    }
    workgroupBarrier();
}

// As stack_logits_gradient for an autoencoder whose targets are its inputs, still in row_act
// (rows_gather: the batch it wrote is bound for writing, so `targets` cannot be bound too).
fn stack_logits_gradient_from_input(t: u32, row0: u32) {
    let e = stack[p.layers - 1u];
    for (var q = t; q < ROWS * e.fout; q += WG) {
        put_logits_gradient(e, q, row0, row_act[q]);
    }
    workgroupBarrier();
}

// Logit q's gradient against `goal` (q's row past the batch: 0, not stored).
fn put_logits_gradient(e: StackLayer, q: u32, row0: u32, goal: f32) {
    let base = level_base(p.layers);
    let r = row0 + q / e.fout;
    var d = 0.0;
    if (r < p.n) {
        let at = r * e.fout + q % e.fout;
        d = (sigmoid(row_act[base + q]) - goal) / f32(p.total);
        store_dact(p.layers - 1u, e.dout + at, d);
    }
    row_act[base + q] = d;
}

// Every layer's forward pass, from the input in row_act.
fn stack_forward_all(t: u32, row0: u32) {
    workgroupBarrier();
    for (var li = 0u; li < p.layers; li++) {
        stack_forward(t, li, row0);
    }
}

// Every input gradient but the first layer's, from the logits' gradient in row_act.
fn stack_backward_all(t: u32, row0: u32) {
    for (var li = p.layers - 1u; li > 0u; li--) {
        stack_backward(t, li, row0);
    }
}

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_lane_sums(t, WG);
    poison_row_act(t, WG);
    let row0 = block_index(wid, nwg) * ROWS;
    let width = stack[0].fin;
    for (var q = t; q < ROWS * width; q += WG) {
        let r = row0 + q / width;
        var v = 0.0;
        if (r < p.n) { v = x[r * width + q % width]; }
        row_act[q] = v;
    }
    stack_forward_all(t, row0);
    if (p.backward == 0u) { return; }
    stack_logits_gradient(t, row0);
    stack_backward_all(t, row0);
}

// rows_gather (`--folds gather`, with rows, inputs without noise): rows, its samples gathered
// from the resident dataset as batch.gather does (images[perm[offset + r]], u8 / 255) instead
// of read from the batch, which it writes for dense.grads and the loss; the targets are the
// inputs. One dispatch fewer per step, the same bits. Its load loop is its own: one shared
// with rows would use x and batch_out, the same buffer here, read-only and writable at once.
@group(0) @binding(26) var<storage, read> images: array<u32>;
@group(0) @binding(27) var<storage, read> perm: array<u32>;
@group(0) @binding(28) var<storage, read_write> batch_out: array<f32>;

@compute @workgroup_size(WG)
fn rows_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_lane_sums(t, WG);
    poison_row_act(t, WG);
    let row0 = block_index(wid, nwg) * ROWS;
    let width = stack[0].fin;
    for (var q = t; q < ROWS * width; q += WG) {
        let r = row0 + q / width;
        var v = 0.0;
        if (r < p.n) {
            let byte = perm[p.offset + r] * width + q % width;
            v = unpack_pixel(images[byte / 4u], byte);
            batch_out[r * width + q % width] = v;
        }
        row_act[q] = v;
    }
    stack_forward_all(t, row0);
    if (p.backward == 0u) { return; }
    stack_logits_gradient_from_input(t, row0);
    stack_backward_all(t, row0);
}

// grads (`--folds grads`, with rows): every layer's kernel and bias gradient of a dense stack,
// and the loss's partial sums, in one dispatch after dense.rows. The first workgroups take
// the layers' 4x4 blocks in turn, each as backward_params_split4 sums it; the rest each sum
// one chunk of the loss as bce.loss_partial does, its 256 lanes emulated 4 to an invocation
// with the same tree. So the bits are the same. Every feature count is a multiple of 4, the
// batch at least SPLIT_FROM (ops::dense::grads checks).
@group(0) @binding(20) var<storage, read> acts4_even: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read> acts4_odd: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read> dacts4_even: array<vec4<f32>>;
@group(0) @binding(23) var<storage, read> dacts4_odd: array<vec4<f32>>;
@group(0) @binding(24) var<storage, read_write> grads: array<f32>;
@group(0) @binding(25) var<storage, read_write> loss_partials: array<f32>;

// bce::CHUNK: the elements one loss partial sums.
const LOSS_CHUNK: u32 = WG * 16u;

fn stack_act4(l: u32, at: u32) -> vec4<f32> {
    if (l % 2u == 0u) { return acts4_even[at]; }
    return acts4_odd[at];
}

fn stack_dact4(l: u32, at: u32) -> vec4<f32> {
    if (l % 2u == 0u) { return dacts4_even[at]; }
    return dacts4_odd[at];
}

// Layer l's input, features i0..i0 + 3 of sample r: the batch for the first layer, else the
// layer below's output.
fn stack_input4(l: u32, r: u32, i0: u32, fin: u32) -> vec4<f32> {
    if (l == 0u) { return x4[(r * fin + i0) / 4u]; }
    return stack_act4(l - 1u, (stack[l - 1u].out + r * fin + i0) / 4u);
}

fn grads_blocks(e: StackLayer) -> u32 {
    let nb = blocks(e.fin + 1u, e.fout);
    return nb.x * nb.y;
}

// backward_params_split4 for block idx of layer l, reading the stack's tensors: the block's
// 16 sums end in blocks_scratch[0].
fn grads_block(lid: u32, l: u32, idx: u32) {
    let e = stack[l];
    let nb = blocks(e.fin + 1u, e.fout);
    let i0 = (idx / nb.y) * T;
    let o0 = (idx % nb.y) * T;
    var acc = zero_block();
    for (var r = lid; r < p.n; r += SPLIT) {
        let at = (e.dout + r * e.fout + o0) / 4u;
        var b = stack_dact4(l, at);
        if (e.relu != 0u) {
            b = select(b, vec4<f32>(0.0), stack_act4(l, (e.out + r * e.fout + o0) / 4u) <= vec4<f32>(0.0));
        }
        var xv = vec4<f32>(1.0);
        if (i0 < e.fin) { xv = stack_input4(l, r, i0, e.fin); }
        acc = add_rows(acc, xv, b);
    }
    reduce_blocks(lid, acc);
}

const NO_PARAM: u32 = 0xffffffffu;

// Where in the parameters (and gradients) sum `lid` (< 16) of block idx of layer l belongs:
// row fin is the bias's; NO_PARAM past the layer's edge or for a layer without a bias.
fn grads_block_param(lid: u32, l: u32, idx: u32) -> u32 {
    let e = stack[l];
    let nb = blocks(e.fin + 1u, e.fout);
    let i = (idx / nb.y) * T + lid / T;
    let o = (idx % nb.y) * T + lid % T;
    if (i < e.fin) { return e.w + i * e.fout + o; }
    if (i == e.fin && e.b != NO_BIAS) { return e.b + o; }
    return NO_PARAM;
}

// bce.loss_partial's chunk `group` of the logits against the targets.
fn grads_loss_partial(lid: u32, group: u32) {
    let e = stack[p.layers - 1u];
    let last = p.layers - 1u;
    for (var c = 0u; c < WG / SPLIT; c++) {
        let v = lid + c * SPLIT;
        var acc = 0.0;
        for (var k = 0u; k < LOSS_CHUNK / WG; k++) {
            let i = group * LOSS_CHUNK + k * WG + v;
            if (i < p.total) {
                let z = stack_act4(last, (e.out + i) / 4u)[(e.out + i) % 4u];
                acc += element_loss(z, targets[i]);
            }
        }
        scratch[v] = acc;
    }
    // tree_sum's steps, each invocation adding for its 4 lanes.
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        for (var c = 0u; c < WG / SPLIT; c++) {
            let v = lid + c * SPLIT;
            if (v < s) { scratch[v] += scratch[v + s]; }
        }
    }
    workgroupBarrier();
}

fn loss_chunks() -> u32 {
    return (p.total + LOSS_CHUNK - 1u) / LOSS_CHUNK;
}

// The layer whose blocks workgroup idx of grads_all or grads_adam sums, and the block's
// index in that layer; p.layers (and the index among the loss's chunks) past them.
fn grads_work(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    var idx = block_index(wid, nwg);
    for (var l = 0u; l < p.layers; l++) {
        let count = grads_blocks(stack[l]);
        if (idx < count) { return vec2<u32>(l, idx); }
        idx -= count;
    }
    return vec2<u32>(p.layers, idx);
}

@compute @workgroup_size(SPLIT)
fn grads_all(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_blocks_scratch(lid, SPLIT);
    poison_scratch(lid, SPLIT);
    let work = grads_work(wid, nwg);
    if (work.x < p.layers) {
        grads_block(lid, work.x, work.y);
        if (lid < T * T) {
            let j = grads_block_param(lid, work.x, work.y);
            if (j != NO_PARAM) { grads[j] = blocks_scratch[0][lid / T][lid % T]; }
        }
    } else if (work.y < loss_chunks()) {
        grads_loss_partial(lid, work.y);
        if (lid == 0u) { loss_partials[work.y] = scratch[0]; }
    }
}

// grads_adam (`--folds adam`, with grads): grads_all that also takes Adam's step for each
// parameter whose gradient it has just summed (adam.step's update through adam_update, so
// the same bits: no other workgroup reads the weights), and writes its loss partials into
// the step's region of loss_partials, after a header that bce.loss_finish_steps reads
// (the loss log's slot + 1, the partials' count, the elements as f32): that dispatch, once
// per execution, finishes every step's loss. A step is then two dispatches, not three.
@group(0) @binding(29) var<storage, read_write> adam_w: array<f32>;
@group(0) @binding(30) var<storage, read_write> adam_m: array<f32>;
@group(0) @binding(31) var<storage, read_write> adam_v: array<f32>;

// bce::STEP_HEADER: the floats before a step's loss partials in its region.
const STEP_HEADER: u32 = 3u;

@compute @workgroup_size(SPLIT)
fn grads_adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_blocks_scratch(lid, SPLIT);
    poison_scratch(lid, SPLIT);
    let work = grads_work(wid, nwg);
    if (work.x < p.layers) {
        // Each lane's parameter and moments are loaded before the block's sums, so that their
        // trip to memory overlaps them rather than following them.
        var j = NO_PARAM;
        if (lid < T * T) { j = grads_block_param(lid, work.x, work.y); }
        var before = AdamState(0.0, 0.0, 0.0);
        if (j != NO_PARAM) { before = AdamState(adam_w[j], adam_m[j], adam_v[j]); }
        grads_block(lid, work.x, work.y);
        if (j != NO_PARAM) {
            let g = blocks_scratch[0][lid / T][lid % T];
            grads[j] = g;
            let s = adam_update(before.w, g, before.m, before.v, p.rate);
            adam_m[j] = s.m;
            adam_v[j] = s.v;
            adam_w[j] = s.w;
        }
    } else if (work.y < loss_chunks()) {
        grads_loss_partial(lid, work.y);
        if (lid == 0u) {
            loss_partials[p.loss_base + STEP_HEADER + work.y] = scratch[0];
            if (work.y == 0u) {
                loss_partials[p.loss_base] = f32(p.loss_slot + 1u);
                loss_partials[p.loss_base + 1u] = f32(loss_chunks());
                loss_partials[p.loss_base + 2u] = f32(p.total);
            }
        }
    }
}
