// conv2d: k x k (KS = 1, 3, 5 or 7), stride 1, 'same' (pad (k-1)/2) or 'valid' (pad 0), NHWC,
// kernel [ky][kx][ci][co], any channel counts. Forward (optionally with ReLU fused), and
// backward for the input, weight and bias.
//
// Shapes are pipeline-overridable constants, so loops over the window and channels unroll;
// only the batch size is a uniform (the last batch of an epoch is smaller). Each invocation
// keeps a group of up to GROUP channels in vec4 registers (16 in four; the narrow variant, 4
// in one): one load of an input value feeds every output channel of the group, instead of one
// multiply-add per two loads. A layer with more channels on that side runs one invocation per
// group: the group is the dispatch's z (workgroup_id.z), so every invocation of a workgroup
// has the same group. The channels on the other side are a plain loop. Every channel's sum
// runs in the same order whatever the group, so the narrow variant's results are the same
// bits, from 4x more invocations with a quarter of the loads each.
//
// Backward kernels read the upstream gradient through `grad_out`, which applies the ReLU mask
// from the saved activation when the layer was run with ReLU (relu != 0).
//
// UP = 2 folds a Keras UpSampling2D(2) in front of the layer into its loads: x then holds
// H/2 x W/2 pixels and every kernel reads pixel (iy, ix) of the upsampled input at
// (iy/2, ix/2); backward_input writes the gradient of that half-size tensor, each pixel the
// sum of its 2x2 block in upsample.backward's order. Two dispatches a layer fewer, and the
// 4x copy is never written or read.
//
// POOL = 2 folds a Keras MaxPooling2D(2) after the layer into it: forward_pooled writes the
// PH x PW window maxima of the (ReLU'd) output and each one's winner, as pool.forward does,
// and the backward kernels read dy and act as the pooled tensor's, each output pixel getting
// its window's gradient if it won and 0 otherwise (pool.backward's rule). The full-size
// output and its gradient are never written.

override KS: u32 = 3u;     // window side: 1, 3, 5 or 7
override CI: u32 = 1u;     // input channels
override CO: u32 = 1u;     // output channels
override H: u32 = 1u;
override W: u32 = 1u;
override PAD: u32 = 1u;    // (KS - 1) / 2 'same', 0 'valid'
override UP: u32 = 1u;     // 1: x as it is; 2: x is the half-size tensor upsampled 2x
override POOL: u32 = 1u;   // 1: y as it is; 2: y is the output max-pooled 2x2
override PH: u32 = 1u;     // the pooled height and width ('same': ceil(HO/2), 'valid': floor)
override PW: u32 = 1u;
override XH: u32 = H / UP; // x's height and width
override XW: u32 = W / UP;
override TAPS: u32 = KS * KS;
override HO: u32 = H + 2u * PAD - (KS - 1u);
override WO: u32 = W + 2u * PAD - (KS - 1u);
override CI4: u32 = (CI + 3u) / 4u;
override CO4: u32 = (CO + 3u) / 4u;
// Output pixels one backward_weight_partial invocation sums (ops::conv2d::chunk): short, so
// there are many invocations and each one's loads are few and independent; longer for large
// kernels, so that the partial sums stay a bounded scratch buffer.
override CHUNK: u32 = 16u;
// backward_weight_partial also sums the bias gradient, as one more kernel row whose input is 1:
// the bias then costs no pass of its own over dy.
override WITH_BIAS: bool = false;
override ROWS: u32 = TAPS * CI + select(0u, 1u, WITH_BIAS);
// The weight-gradient partials' tiled variant (ops::conv2d, `--folds tiles`; CHUNK = 16 only):
// a workgroup stages the upstream gradient of its TILE_CHUNKS chunks once (ReLU mask and pool
// routing applied), then its invocations sum every (row, chunk) of them from workgroup memory,
// instead of each invocation loading and masking the gradient for its own row.
override TILE: bool = false;
// The forward pass's vec4 variant (`--folds vec4`, CI a multiple of 4): each tap's input
// channels four at a time, one 16-byte load where four scalar ones each took a sector of
// their own (a pixel's channels lie CI floats apart from the next invocation's). The same
// multiply-adds in the same order, so the same bits.
override X4: bool = false;
// The same variant's weight loads: each tap-and-channel row's four output channels as one
// 16-byte load where CO is a multiple of 4, and no load at all for the lanes past CO where
// it is not (their sums are never stored), instead of four scalar loads for every vec4; and
// in the weight gradient, no upstream-gradient loads for those lanes either (grad4).
override W4: bool = false;
// The quads variant (`--folds quads`): a folded pool's or upsampling's 2x2 window on four
// invocations instead of one. forward_pooled's invocation computes one pixel of the window,
// backward_input's (UP = 2) one pixel of the upsampled block; the four meet in workgroup
// memory (quad_sums), where each invocation of the four then combines one vec4 register of
// the group in the one-invocation kernel's order: the same bits. The folds gave each
// invocation four pixels' chains and left a quarter of the invocations; this gives the
// unfolded kernels' invocation count back, with the folds' smaller tensors.
override QUADS: bool = false;
// The gather fold (`--folds gather`, a model's first layer, whose input is its target): x is
// not bound. The layer reads its input straight from the split's u8 pixels (packed four to
// a word) through the epoch's order, from entry p.offset on, as batch.gather makes it (the
// same unpack_pixel: the same bits), and channel group 0 writes the batch it read into
// batch_out for the loss and the weight gradient: each invocation the input pixels at its
// output pixels ('same' padding, stride 1, and a pool that covers every output, so every
// pixel once). One dispatch a step fewer.
override GATHER: bool = false;

// Channels one invocation keeps in vec4 registers (ops::conv2d::group): WIDE_GROUP in four,
// or NARROW_GROUP in one (`--folds narrow`); G4 registers of them.
const WIDE_GROUP: u32 = 16u;
const NARROW_GROUP: u32 = 4u;
override GROUP: u32 = WIDE_GROUP;
override G4: u32 = GROUP / 4u;

struct Conv {
    n: u32, relu: u32, chunks: u32,
    // backward_pair: workgroups per z-layer of its weight-gradient part and of its
    // input-gradient part
    part_per_z: u32, input_per_z: u32,
    // GATHER: the batch's first entry of the order.
    offset: u32, _p1: u32, _p2: u32,
    // backward_weight_reduce_adam only: the items of the reduce (its loss finish is the
    // workgroup after them), the loss's elements, partial sums and slot in the loss log (as
    // bce.loss_finish's), and Adam's step (as adam.step's).
    items: u32, loss_total: u32, loss_partials: u32, loss_slot: u32,
    rate: AdamRate,
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
@group(0) @binding(12) var<storage, read_write> winner_out: array<u32>;
@group(0) @binding(13) var<storage, read> winner_in: array<u32>;
@group(0) @binding(14) var<storage, read> shares: array<Share>;
// x again, as vec4s: X4's loads (a pipeline without X4 does not use it, and ops::conv2d does
// not bind it).
@group(0) @binding(15) var<storage, read> x4: array<vec4<f32>>;
// The kernel again, as vec4s: W4's loads where CO is a multiple of 4, or is 1 with CI a
// multiple of 4 in the input gradient (elsewhere the specialised code does not use it, and
// ops::conv2d does not bind it).
@group(0) @binding(16) var<storage, read> wt4: array<vec4<f32>>;
// GATHER: the split's pixels, its order, and the batch the layer writes.
@group(0) @binding(22) var<storage, read> images: array<u32>;
@group(0) @binding(23) var<storage, read> order: array<u32>;
@group(0) @binding(24) var<storage, read_write> batch_out: array<f32>;

// Workgroup size of the register-tiled kernels: ops::conv2d::TILED.
const TILED_WG: u32 = 64u;

// The flat index of an invocation within its channel group: workgroups of `size` folded
// into x and y (Gpu::grid_of); z is the group.
fn flat_of(wid: vec3<u32>, lid: u32, nwg: vec3<u32>, size: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * size + lid;
}

// Upstream gradient at channel o of output pixel pix (flat over n, HO, WO), masked by ReLU'
// (0 where the output is <= 0). With POOL = 2, dy and act are the pooled tensor's: the pixel
// gets its window's gradient if it is the window's winner (whose output is the pooled one),
// 0 if it lost or lies in a 'valid' pool's dropped odd row or column.
fn grad_out(pix: u32, o: u32) -> f32 {
    var i = pix * CO + o;
    if (POOL == 2u) {
        let ox = pix % WO;
        let oy = (pix / WO) % HO;
        let b = pix / (WO * HO);
        if (oy / 2u >= PH || ox / 2u >= PW) { return 0.0; }
        i = ((b * PH + oy / 2u) * PW + ox / 2u) * CO + o;
        if (winner_in[i] != (oy % 2u) * 2u + ox % 2u) { return 0.0; }
    }
    let g = dy[i];
    if (p.relu != 0u && act[i] <= 0.0) {
        return 0.0;
    }
    return g;
}

// Whether register j (0..3) of the channel group whose first vec4 is g4 holds channels of a
// side with n4 vec4s. Register 0 always does; registers from G4 on never do (the narrow
// variant has one). With one group (n4 <= G4) this is a constant and folds away at pipeline
// creation, as the single-group kernels' branches did; with more, it is the same for the
// whole workgroup (g4 comes from workgroup_id.z), so the last group of, say, 20 channels
// skips its three empty registers instead of computing them.
fn live(n4: u32, g4: u32, j: u32) -> bool {
    return j < G4 && n4 > j && (n4 <= G4 || g4 + j < n4);
}

// The first vec4 of channel group z on a side of n4 vec4s: the constant 0 when the side fits
// one group (n4 is an override constant, so this folds at pipeline creation and every weight
// and bias address stays a constant offset, as in the single-group kernels), G4 * z
// otherwise.
fn group4(n4: u32, z: u32) -> u32 {
    if (n4 <= G4) { return 0u; }
    return G4 * z;
}

// Four consecutive output channels of kernel row `row` (= (ky*KS+kx)*CI + ci), from channel
// o (a multiple of 4). Past CO the lanes read neighbours (bounds-checked by WGSL), or 0 under
// W4, and are never stored.
fn w_row4(row: u32, o: u32) -> vec4<f32> {
    let i = row * CO + o;
    if (W4 && CO % 4u == 0u) {
        return wt4[i / 4u];
    }
    if (W4) {
        // With one group o is the constant 0, so each test folds at pipeline creation.
        var v = vec4<f32>(wt[i], 0.0, 0.0, 0.0);
        if (o + 1u < CO) { v.y = wt[i + 1u]; }
        if (o + 2u < CO) { v.z = wt[i + 2u]; }
        if (o + 3u < CO) { v.w = wt[i + 3u]; }
        return v;
    }
    return vec4<f32>(wt[i], wt[i + 1u], wt[i + 2u], wt[i + 3u]);
}

fn bias4(o: u32) -> vec4<f32> {
    return vec4<f32>(bias[o], bias[o + 1u], bias[o + 2u], bias[o + 3u]);
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

// Index in x of channel 0 of input pixel (iy, ix) (already clamped inside H x W): with
// UP = 1 the divisions fold away at pipeline creation.
fn x_base(b: u32, iy: u32, ix: u32) -> u32 {
    return ((b * XH + iy / UP) * XW + ix / UP) * CI;
}

// GATHER: where image b of the batch starts among the split's bytes, less where it starts in
// x, so that adding an index of x in that image gives its byte (u32 arithmetic wraps). The
// order entry is loaded once per output pixel (conv_at) and batch pixel written, not per tap.
fn gather_shift(b: u32) -> u32 {
    if (GATHER) {
        let pixels = H * W * CI;
        return order[p.offset + b] * pixels - b * pixels;
    }
    return 0u;
}

// Element i of the layer's input x (flat over n, H, W, CI) of the image whose gather_shift is
// `shift`: read, or under GATHER the pixel batch.gather writes there.
fn x_at(shift: u32, i: u32) -> f32 {
    if (GATHER) {
        let byte = shift + i;
        return unpack_pixel(images[byte / 4u], byte);
    }
    return x[i];
}

// GATHER: writes the input pixel at output pixel `at` (flat over n, HO, WO: the same pixel of
// x, with 'same' padding), every channel, from channel group 0 (z) only.
fn put_batch(at: u32, z: u32) {
    if (GATHER && z == 0u) {
        let shift = gather_shift(at / (HO * WO));
        for (var c = 0u; c < CI; c++) {
            batch_out[at * CI + c] = x_at(shift, at * CI + c);
        }
    }
}

// Accumulators are four named vec4 registers, never an indexed array: a dynamically indexed
// function-scope array lives in local memory on NVIDIA, which made every multiply-add a
// memory round trip. Branches on the override constants CO4/CI4 fold away at pipeline
// creation (see `live`). Output channels o..o+3 of the pixel whose channels start at base;
// none past CO.
fn store4(base: u32, o: u32, v: vec4<f32>, relu: bool) {
    var r = v;
    if (relu) { r = max(r, vec4<f32>(0.0)); }
    for (var l = 0u; l < 4u; l++) {
        if (o + l < CO) { y[base + o + l] = r[l]; }
    }
}

// The layer's output at pixel (oy, ox) for the channel group from 4 * g4, before ReLU.
fn conv_at(b: u32, oy: i32, ox: i32, g4: u32) -> Sums {
    let o0 = 4u * g4;
    var a0 = bias4(o0);
    var a1 = bias4(o0 + 4u);
    var a2 = bias4(o0 + 8u);
    var a3 = bias4(o0 + 12u);
    let l1 = live(CO4, g4, 1u);
    let l2 = live(CO4, g4, 2u);
    let l3 = live(CO4, g4, 3u);
    let shift = gather_shift(b);
    for (var k = 0u; k < TAPS; k++) {
        let iy = oy + i32(k / KS) - i32(PAD);
        let ix = ox + i32(k % KS) - i32(PAD);
        let keep = inside(iy, H) * inside(ix, W);
        let xb = x_base(b, tap(iy, H), tap(ix, W));
        if (X4 && !GATHER) {
            for (var c4 = 0u; c4 < CI / 4u; c4++) {
                let xq = keep * x4[xb / 4u + c4];
                for (var l = 0u; l < 4u; l++) {
                    let xv = xq[l];
                    let row = k * CI + 4u * c4 + l;
                    a0 += xv * w_row4(row, o0);
                    if (l1) { a1 += xv * w_row4(row, o0 + 4u); }
                    if (l2) { a2 += xv * w_row4(row, o0 + 8u); }
                    if (l3) { a3 += xv * w_row4(row, o0 + 12u); }
                }
            }
        } else {
            for (var c = 0u; c < CI; c++) {
                let xv = keep * x_at(shift, xb + c);
                let row = k * CI + c;
                a0 += xv * w_row4(row, o0);
                if (l1) { a1 += xv * w_row4(row, o0 + 4u); }
                if (l2) { a2 += xv * w_row4(row, o0 + 8u); }
                if (l3) { a3 += xv * w_row4(row, o0 + 12u); }
            }
        }
    }
    return Sums(a0, a1, a2, a3);
}

// One invocation per output pixel (n, oy, ox) and group of GROUP output channels (z): every
// channel of the group at once.
@compute @workgroup_size(TILED_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let pix = flat_of(wid, lid, nwg, TILED_WG);
    if (pix >= p.n * HO * WO) { return; }
    let ox = i32(pix % WO);
    let oy = i32((pix / WO) % HO);
    let b = pix / (WO * HO);
    let g4 = group4(CO4, wid.z);
    let o0 = 4u * g4;
    let a = conv_at(b, oy, ox, g4);
    let relu = p.relu != 0u;
    store4(pix * CO, o0, a.a0, relu);
    if (live(CO4, g4, 1u)) { store4(pix * CO, o0 + 4u, a.a1, relu); }
    if (live(CO4, g4, 2u)) { store4(pix * CO, o0 + 8u, a.a2, relu); }
    if (live(CO4, g4, 3u)) { store4(pix * CO, o0 + 12u, a.a3, relu); }
    put_batch(pix, wid.z);
}

// The winners of a channel group: four named vec4 registers, like Sums.
struct Winners {
    w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32>,
}

fn relu_sums(a: Sums) -> Sums {
    let z = vec4<f32>(0.0);
    return Sums(max(a.a0, z), max(a.a1, z), max(a.a2, z), max(a.a3, z));
}

// Output channels o..o+3 of pooled pixel `pix`'s winners; none past CO.
fn store_winner4(pix: u32, o: u32, v: vec4<u32>) {
    for (var l = 0u; l < 4u; l++) {
        if (o + l < CO) { winner_out[pix * CO + o + l] = v[l]; }
    }
}

// POOL = 2: one invocation per pooled pixel (n, py, px) and group of GROUP output channels
// (z): the layer's output at each pixel of the 2x2 window that exists, ReLU'd when the layer
// has ReLU, then pool.forward's maximum and winner per channel (window places 0..3 row-major,
// the first maximum wins ties; a 'same' pool's missing bottom row or right column never
// takes part).
@compute @workgroup_size(TILED_WG)
fn forward_pooled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_quad_sums(lid, TILED_WG);
    if (QUADS) {
        forward_pooled_quads_at(wid, lid, nwg);
        return;
    }
    let pix = flat_of(wid, lid, nwg, TILED_WG);
    if (pix >= p.n * PH * PW) { return; }
    let px = pix % PW;
    let py = (pix / PW) % PH;
    let b = pix / (PW * PH);
    let g4 = group4(CO4, wid.z);
    var best: Sums;
    var arg: Winners;
    for (var k = 0u; k < 4u; k++) {
        let oy = 2u * py + k / 2u;
        let ox = 2u * px + k % 2u;
        if (oy < HO && ox < WO) {
            put_batch((b * HO + oy) * WO + ox, wid.z);
            var v = conv_at(b, i32(oy), i32(ox), g4);
            if (p.relu != 0u) { v = relu_sums(v); }
            if (k == 0u) {
                best = v;
                arg = Winners(vec4<u32>(0u), vec4<u32>(0u), vec4<u32>(0u), vec4<u32>(0u));
            } else {
                let kk = vec4<u32>(k);
                let m0 = v.a0 > best.a0;
                let m1 = v.a1 > best.a1;
                let m2 = v.a2 > best.a2;
                let m3 = v.a3 > best.a3;
                best = Sums(select(best.a0, v.a0, m0), select(best.a1, v.a1, m1),
                            select(best.a2, v.a2, m2), select(best.a3, v.a3, m3));
                arg = Winners(select(arg.w0, kk, m0), select(arg.w1, kk, m1),
                              select(arg.w2, kk, m2), select(arg.w3, kk, m3));
            }
        }
    }
    let o0 = 4u * g4;
    store4(pix * CO, o0, best.a0, false);
    store_winner4(pix, o0, arg.w0);
    if (live(CO4, g4, 1u)) { store4(pix * CO, o0 + 4u, best.a1, false); store_winner4(pix, o0 + 4u, arg.w1); }
    if (live(CO4, g4, 2u)) { store4(pix * CO, o0 + 8u, best.a2, false); store_winner4(pix, o0 + 8u, arg.w2); }
    if (live(CO4, g4, 3u)) { store4(pix * CO, o0 + 12u, best.a3, false); store_winner4(pix, o0 + 12u, arg.w3); }
}

// QUADS: each invocation's four vec4 registers, four slots per invocation (a wide group's).
var<workgroup> quad_sums: array<vec4<f32>, 4u * TILED_WG>;

// The tests' NaN fill (POISON_WORKGROUP in common.wgsl).
fn poison_quad_sums(lid: u32, invocations: u32) {
    if (POISON_WORKGROUP) {
        for (var i = lid; i < 4u * TILED_WG; i += invocations) {
            quad_sums[i] = vec4<f32>(bitcast<f32>(poison_bits(lid)));
        }
        workgroupBarrier();
    }
}

fn put_quad(lid: u32, s: Sums) {
    quad_sums[4u * lid] = s.a0;
    quad_sums[4u * lid + 1u] = s.a1;
    quad_sums[4u * lid + 2u] = s.a2;
    quad_sums[4u * lid + 3u] = s.a3;
}

// Register j of window place w of the quad whose place 0 is invocation `first`.
fn quad_at(first: u32, w: u32, j: u32) -> vec4<f32> {
    return quad_sums[4u * (first + w) + j];
}

// forward_pooled under QUADS: invocation 4 * pix + w computes window place w of pooled pixel
// pix (clamped into the image past the end, so that every invocation reaches the barrier),
// then invocation 4 * pix + j takes register j of the group through the window as
// forward_pooled does, in place order with the first maximum winning.
fn forward_pooled_quads_at(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) {
    let q = flat_of(wid, lid, nwg, TILED_WG);
    let pixels = p.n * PH * PW;
    let pix = q / 4u;
    let at = min(pix, pixels - 1u);
    let px = at % PW;
    let py = (at / PW) % PH;
    let b = at / (PW * PH);
    let g4 = group4(CO4, wid.z);
    let w = q % 4u;
    let oy = min(2u * py + w / 2u, HO - 1u);
    let ox = min(2u * px + w % 2u, WO - 1u);
    if (pix < pixels && 2u * py + w / 2u < HO && 2u * px + w % 2u < WO) {
        put_batch((b * HO + oy) * WO + ox, wid.z);
    }
    var v = conv_at(b, i32(oy), i32(ox), g4);
    if (p.relu != 0u) { v = relu_sums(v); }
    put_quad(lid, v);
    workgroupBarrier();
    let j = lid % 4u;
    if (pix >= pixels || !live(CO4, g4, j)) { return; }
    let first = lid - j;
    var best = quad_at(first, 0u, j);
    var arg = vec4<u32>(0u);
    for (var k = 1u; k < 4u; k++) {
        if (2u * py + k / 2u < HO && 2u * px + k % 2u < WO) {
            let c = quad_at(first, k, j);
            let m = c > best;
            best = select(best, c, m);
            arg = select(arg, vec4<u32>(k), m);
        }
    }
    let o = 4u * g4 + 4u * j;
    store4(pix * CO, o, best, false);
    store_winner4(pix, o, arg);
}

// Four consecutive input channels (from c) of kernel tap k for output channel o: CO apart,
// so four loads, but one vec4 under W4 where there is one output channel (the last layer's).
fn w_col4(k: u32, c: u32, o: u32) -> vec4<f32> {
    let i = (k * CI + c) * CO + o;
    if (W4 && CO == 1u && CI % 4u == 0u) {
        return wt4[i / 4u];
    }
    return vec4<f32>(wt[i], wt[i + CO], wt[i + 2u * CO], wt[i + 3u * CO]);
}

// W4 where CO is a multiple of 4: a + g's four output channels (o4's) times input channels
// c..c+3's weights at them, one output channel after the other, as the scalar loop adds them
// (the same bits). Four vec4 loads, one per input channel, where that loop made sixteen
// scalar ones; the 4x4 block is transposed in registers. Rows past the kernel's last are
// never loaded, and lanes past CI are never stored.
fn add_block4(a: vec4<f32>, g: vec4<f32>, k: u32, c: u32, o4: u32) -> vec4<f32> {
    let s = CO / 4u;
    let r = (k * CI + c) * s + o4;
    let w0 = wt4[r];
    var w1 = vec4<f32>(0.0);
    var w2 = vec4<f32>(0.0);
    var w3 = vec4<f32>(0.0);
    if (c + 1u < CI) { w1 = wt4[r + s]; }
    if (c + 2u < CI) { w2 = wt4[r + 2u * s]; }
    if (c + 3u < CI) { w3 = wt4[r + 3u * s]; }
    var acc = a;
    acc += g.x * vec4<f32>(w0.x, w1.x, w2.x, w3.x);
    acc += g.y * vec4<f32>(w0.y, w1.y, w2.y, w3.y);
    acc += g.z * vec4<f32>(w0.z, w1.z, w2.z, w3.z);
    acc += g.w * vec4<f32>(w0.w, w1.w, w2.w, w3.w);
    return acc;
}

// Input channels c..c+3 of the pixel whose channels start at base; none past CI.
fn store_dx(base: u32, c: u32, v: vec4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        if (c + l < CI) { dx[base + c + l] = v[l]; }
    }
}

// The input gradient of one channel group: four vec4 registers, named (see store4).
struct Sums {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
}

fn add_sums(p: Sums, q: Sums) -> Sums {
    return Sums(p.a0 + q.a0, p.a1 + q.a1, p.a2 + q.a2, p.a3 + q.a3);
}

// The transposed convolution of dy at input pixel (iy, ix), input channels from 4 * g4.
fn input_grad(b: u32, iy: i32, ix: i32, g4: u32) -> Sums {
    let c0 = 4u * g4;
    let l1 = live(CI4, g4, 1u);
    let l2 = live(CI4, g4, 2u);
    let l3 = live(CI4, g4, 3u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < TAPS; k++) {
        let oy = iy + i32(PAD) - i32(k / KS);
        let ox = ix + i32(PAD) - i32(k % KS);
        let keep = inside(oy, HO) * inside(ox, WO);
        let opix = (b * HO + tap(oy, HO)) * WO + tap(ox, WO);
        if (W4 && CO % 4u == 0u) {
            for (var o4 = 0u; o4 < CO / 4u; o4++) {
                let o = 4u * o4;
                let g = keep * vec4<f32>(grad_out(opix, o), grad_out(opix, o + 1u),
                                         grad_out(opix, o + 2u), grad_out(opix, o + 3u));
                a0 = add_block4(a0, g, k, c0, o4);
                if (l1) { a1 = add_block4(a1, g, k, c0 + 4u, o4); }
                if (l2) { a2 = add_block4(a2, g, k, c0 + 8u, o4); }
                if (l3) { a3 = add_block4(a3, g, k, c0 + 12u, o4); }
            }
        } else {
            for (var o = 0u; o < CO; o++) {
                let g = keep * grad_out(opix, o);
                a0 += g * w_col4(k, c0, o);
                if (l1) { a1 += g * w_col4(k, c0 + 4u, o); }
                if (l2) { a2 += g * w_col4(k, c0 + 8u, o); }
                if (l3) { a3 += g * w_col4(k, c0 + 12u, o); }
            }
        }
    }
    return Sums(a0, a1, a2, a3);
}

// One invocation per pixel (n, iy, ix) of x and group of GROUP input channels (z): the
// transposed convolution of dy, every input channel of the group at once. With UP = 2, the
// sum over the pixel's 2x2 block of the upsampled input, in upsample.backward's order.
@compute @workgroup_size(TILED_WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_quad_sums(lid, TILED_WG);
    input_gradient_at(wid, lid, nwg);
}

// backward_input's invocation lid of workgroup wid in a grid of nwg.
fn input_gradient_at(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) {
    if (QUADS && UP == 2u) {
        input_gradient_quads_at(wid, lid, nwg);
        return;
    }
    let pix = flat_of(wid, lid, nwg, TILED_WG);
    if (pix >= p.n * XH * XW) { return; }
    let ix = i32(pix % XW);
    let iy = i32((pix / XW) % XH);
    let b = pix / (XW * XH);
    let g4 = group4(CI4, wid.z);
    var s: Sums;
    if (UP == 1u) {
        s = input_grad(b, iy, ix, g4);
    } else {
        // (top-left + top-right) + (bottom-left + bottom-right). A loop over the two rows,
        // not four written-out calls: the body is already the whole unrolled window, and
        // four copies of it took llvmpipe's GL compiler past wgpu's 6 s context lock.
        for (var r = 0; r < 2; r++) {
            let y = 2 * iy + r;
            let row = add_sums(input_grad(b, y, 2 * ix, g4), input_grad(b, y, 2 * ix + 1, g4));
            if (r == 0) { s = row; } else { s = add_sums(s, row); }
        }
    }
    let c0 = 4u * g4;
    store_dx(pix * CI, c0, s.a0);
    if (live(CI4, g4, 1u)) { store_dx(pix * CI, c0 + 4u, s.a1); }
    if (live(CI4, g4, 2u)) { store_dx(pix * CI, c0 + 8u, s.a2); }
    if (live(CI4, g4, 3u)) { store_dx(pix * CI, c0 + 12u, s.a3); }
}

// input_gradient_at under QUADS (UP = 2): invocation 4 * pix + w takes place w of x's pixel
// pix's 2x2 block in the upsampled input (clamped past the end, so that every invocation
// reaches the barrier), then invocation 4 * pix + j sums register j of the four as the
// one-invocation kernel does: (top-left + top-right) + (bottom-left + bottom-right).
fn input_gradient_quads_at(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) {
    let q = flat_of(wid, lid, nwg, TILED_WG);
    let pixels = p.n * XH * XW;
    let pix = q / 4u;
    let at = min(pix, pixels - 1u);
    let ix = i32(at % XW);
    let iy = i32((at / XW) % XH);
    let b = at / (XW * XH);
    let g4 = group4(CI4, wid.z);
    let w = q % 4u;
    put_quad(lid, input_grad(b, 2 * iy + i32(w / 2u), 2 * ix + i32(w % 2u), g4));
    workgroupBarrier();
    let j = lid % 4u;
    if (pix >= pixels || !live(CI4, g4, j)) { return; }
    let first = lid - j;
    let s = (quad_at(first, 0u, j) + quad_at(first, 1u, j))
        + (quad_at(first, 2u, j) + quad_at(first, 3u, j));
    store_dx(pix * CI, 4u * g4 + 4u * j, s);
}

// Split-K weight gradient, stage 1: invocation (chunk, row) of output-channel group z sums
// x_patch * dy over the CHUNK output pixels of its chunk, for kernel row `row` =
// (ky*KS+kx)*CI + ci and every output channel of the group. Partial sums land in
// partial_out[row][co][chunk]. With WITH_BIAS, row TAPS*CI is the bias: its input is 1 at
// every pixel.
@compute @workgroup_size(TILED_WG)
fn backward_weight_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_tile_g(lid, TILED_WG);
    if (TILE) {
        weight_partial_tiled_at(wid, lid, nwg);
    } else {
        weight_partial_at(wid, lid, nwg);
    }
}

// Chunks one workgroup of the tiled variant takes: TILE_CHUNKS * CHUNK = TILED_WG pixels, one
// per invocation when staging (ops::conv2d::TILE_CHUNKS).
const TILE_CHUNKS: u32 = 4u;
// The staged gradient: pixel-major, room for four vec4 (a wide group of 16 channels) per
// pixel; the narrow variant uses the first.
var<workgroup> tile_g: array<vec4<f32>, 4u * TILED_WG>;

fn poison_tile_g(lid: u32, invocations: u32) {
    if (POISON_WORKGROUP) {
        for (var i = lid; i < 4u * TILED_WG; i += invocations) {
            tile_g[i] = vec4<f32>(bitcast<f32>(poison_bits(lid)));
        }
        workgroupBarrier();
    }
}

// The tiled variant of weight_partial_at: workgroup (x, y) takes chunks
// TILE_CHUNKS * (its index) onwards. Each sum runs over the same pixels in the same order with
// the same values as weight_partial_at's, so the partials are the same to the bit.
fn weight_partial_tiled_at(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let pixels = p.n * HO * WO;
    let g4 = group4(CO4, wid.z);
    let o0 = 4u * g4;
    let l1 = live(CO4, g4, 1u);
    let l2 = live(CO4, g4, 2u);
    let l3 = live(CO4, g4, 3u);
    // Stage: invocation lid takes pixel lid of the tile (the last pixel past the end, as
    // weight_partial_at reads it).
    let rs = min(tile * TILED_WG + lid, pixels - 1u);
    tile_g[4u * lid] = grad4(rs, o0);
    if (l1) { tile_g[4u * lid + 1u] = grad4(rs, o0 + 4u); }
    if (l2) { tile_g[4u * lid + 2u] = grad4(rs, o0 + 8u); }
    if (l3) { tile_g[4u * lid + 3u] = grad4(rs, o0 + 12u); }
    workgroupBarrier();
    if (W4 && CI % 4u == 0u) {
        weight_partials_by_four(tile, pixels, o0, l1, l2, l3, lid);
        return;
    }
    for (var item = lid; item < ROWS * TILE_CHUNKS; item += TILED_WG) {
        let row = item % ROWS;
        let sub = item / ROWS;
        let chunk = tile * TILE_CHUNKS + sub;
        if (chunk >= p.chunks) { break; }
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        for (var t = 0u; t < CHUNK; t++) {
            let r = chunk * CHUNK + t;
            let xv = patch_x(r, pixels, row);
            let at = 4u * (sub * CHUNK + t);
            a0 += xv * tile_g[at];
            if (l1) { a1 += xv * tile_g[at + 1u]; }
            if (l2) { a2 += xv * tile_g[at + 2u]; }
            if (l3) { a3 += xv * tile_g[at + 3u]; }
        }
        store_row(row, chunk, o0, Sums(a0, a1, a2, a3), l1, l2, l3);
    }
}

// W4 with CI a multiple of 4, in the tiled partials: each invocation takes four kernel rows
// of a chunk (a tap's four consecutive input channels, or the bias row alone), so that a
// pixel's index arithmetic and staged gradient serve four rows instead of one (in the 28x28
// 16 -> 1 layer, ~30 integer operations per pixel against 4 multiply-adds). Every row's sum
// runs over the same pixels in the same order with the same values: the same bits.
fn weight_partials_by_four(tile: u32, pixels: u32, o0: u32, l1: bool, l2: bool, l3: bool,
                           lid: u32) {
    let quads = (ROWS + 3u) / 4u;
    for (var item = lid; item < quads * TILE_CHUNKS; item += TILED_WG) {
        let row0 = 4u * (item % quads);
        let sub = item / quads;
        let chunk = tile * TILE_CHUNKS + sub;
        if (chunk >= p.chunks) { break; }
        let z = vec4<f32>(0.0);
        var s0 = Sums(z, z, z, z);
        var s1 = s0;
        var s2 = s0;
        var s3 = s0;
        for (var t = 0u; t < CHUNK; t++) {
            let xq = patch_x4(chunk * CHUNK + t, pixels, row0);
            let at = 4u * (sub * CHUNK + t);
            var g = Sums(tile_g[at], z, z, z);
            if (l1) { g.a1 = tile_g[at + 1u]; }
            if (l2) { g.a2 = tile_g[at + 2u]; }
            if (l3) { g.a3 = tile_g[at + 3u]; }
            s0 = add_row(s0, xq.x, g, l1, l2, l3);
            s1 = add_row(s1, xq.y, g, l1, l2, l3);
            s2 = add_row(s2, xq.z, g, l1, l2, l3);
            s3 = add_row(s3, xq.w, g, l1, l2, l3);
        }
        store_row(row0, chunk, o0, s0, l1, l2, l3);
        if (row0 + 1u < ROWS) { store_row(row0 + 1u, chunk, o0, s1, l1, l2, l3); }
        if (row0 + 2u < ROWS) { store_row(row0 + 2u, chunk, o0, s2, l1, l2, l3); }
        if (row0 + 3u < ROWS) { store_row(row0 + 3u, chunk, o0, s3, l1, l2, l3); }
    }
}

// One row's step of the partials: a + x times the staged gradient g, its live registers, as
// the one-row loop adds them.
fn add_row(a: Sums, x: f32, g: Sums, l1: bool, l2: bool, l3: bool) -> Sums {
    var r = a;
    r.a0 += x * g.a0;
    if (l1) { r.a1 += x * g.a1; }
    if (l2) { r.a2 += x * g.a2; }
    if (l3) { r.a3 += x * g.a3; }
    return r;
}

// Kernel row `row`'s partial sums of one chunk, for the live registers of the channel group
// from o0. Layout [row][co][chunk]: the reduce then reads each weight's chunks contiguously.
fn store_row(row: u32, chunk: u32, o0: u32, s: Sums, l1: bool, l2: bool, l3: bool) {
    store_partial(row, chunk, o0, s.a0);
    if (l1) { store_partial(row, chunk, o0 + 4u, s.a1); }
    if (l2) { store_partial(row, chunk, o0 + 8u, s.a2); }
    if (l3) { store_partial(row, chunk, o0 + 12u, s.a3); }
}

// patch_x for kernel rows row0..row0 + 3, a tap's four consecutive input channels (CI and
// row0 multiples of 4), with the pixel's index arithmetic done once; the bias row, alone in
// the last four, gives its 1 (0 past the last pixel) in lane 0. Each lane is patch_x's
// product, factor for factor.
fn patch_x4(r: u32, pixels: u32, row0: u32) -> vec4<f32> {
    let u = under_tap(r, pixels, row0);
    let valid = select(0.0, 1.0, r < pixels);
    if (row0 == TAPS * CI) {
        return vec4<f32>(valid, 0.0, 0.0, 0.0);
    }
    let m = inside(u.iy, H) * inside(u.ix, W);
    let i = x_base(u.b, tap(u.iy, H), tap(u.ix, W)) + row0 % CI;
    return valid * (m * vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]));
}

// A layer's weight-gradient partials (WITH_BIAS) and its input gradient in one dispatch, so
// that the two run side by side instead of one after the other: the first
// p.part_per_z * (output groups) workgroups are backward_weight_partial's grid (z-layers laid
// end to end), the rest backward_input's. Each invocation runs the same code as in those
// kernels, so the results are theirs to the bit.
@compute @workgroup_size(TILED_WG)
fn backward_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_quad_sums(lid, TILED_WG);
    poison_tile_g(lid, TILED_WG);
    let l = wid.y * nwg.x + wid.x;
    let parts = p.part_per_z * ((CO + GROUP - 1u) / GROUP);
    if (l < parts) {
        let z = l / p.part_per_z;
        let pwid = vec3<u32>(l % p.part_per_z, 0u, z);
        let pnwg = vec3<u32>(p.part_per_z, 1u, 1u);
        if (TILE) {
            weight_partial_tiled_at(pwid, lid, pnwg);
        } else {
            weight_partial_at(pwid, lid, pnwg);
        }
        return;
    }
    let m = l - parts;
    if (m >= p.input_per_z * ((CI + GROUP - 1u) / GROUP)) { return; }
    let z = m / p.input_per_z;
    input_gradient_at(vec3<u32>(m % p.input_per_z, 0u, z), lid, vec3<u32>(p.input_per_z, 1u, 1u));
}

// The input pixel under kernel row `row`'s tap at output pixel r (the last pixel past the
// end): its image, and its row and column before clamping, which may lie outside.
struct Under {
    b: u32, iy: i32, ix: i32,
}

fn under_tap(r: u32, pixels: u32, row: u32) -> Under {
    let rc = min(r, pixels - 1u);
    let ox = i32(rc % WO);
    let oy = i32((rc / WO) % HO);
    let k = row / CI;
    return Under(rc / (WO * HO), oy + i32(k / KS) - i32(PAD), ox + i32(k % KS) - i32(PAD));
}

// The weight gradient's input for kernel row `row` (= (ky*KS+kx)*CI + ci; TAPS*CI is the
// bias row, whose input is 1) at output pixel r: the input pixel under that tap. Past the last
// pixel, or a tap outside the image: scaled by 0 (no branch).
fn patch_x(r: u32, pixels: u32, row: u32) -> f32 {
    let u = under_tap(r, pixels, row);
    var xv = select(0.0, 1.0, r < pixels);
    if (row != TAPS * CI) {
        xv *= inside(u.iy, H) * inside(u.ix, W) * x[x_base(u.b, tap(u.iy, H), tap(u.ix, W)) + row % CI];
    }
    return xv;
}

// backward_weight_partial's invocation lid of workgroup wid in a grid of nwg.
fn weight_partial_at(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) {
    let id = flat_of(wid, lid, nwg, TILED_WG);
    if (id >= p.chunks * ROWS) { return; }
    let row = id % ROWS;
    let chunk = id / ROWS;
    let pixels = p.n * HO * WO;
    let g4 = group4(CO4, wid.z);
    let o0 = 4u * g4;
    let l1 = live(CO4, g4, 1u);
    let l2 = live(CO4, g4, 2u);
    let l3 = live(CO4, g4, 3u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var t = 0u; t < CHUNK; t++) {
        let r = chunk * CHUNK + t;
        let rc = min(r, pixels - 1u);
        let xv = patch_x(r, pixels, row);
        a0 += xv * grad4(rc, o0);
        if (l1) { a1 += xv * grad4(rc, o0 + 4u); }
        if (l2) { a2 += xv * grad4(rc, o0 + 8u); }
        if (l3) { a3 += xv * grad4(rc, o0 + 12u); }
    }
    store_row(row, chunk, o0, Sums(a0, a1, a2, a3), l1, l2, l3);
}

// Output channels o..o+3 of grad_out at pixel pix. Past CO the lanes read neighbours
// (bounds-checked by WGSL), or are 0 without a load under W4 (a last partial vec4: the
// 28x28 16 -> 1 layer loaded 8 values for each 2 it used), and are never stored.
fn grad4(pix: u32, o: u32) -> vec4<f32> {
    if (W4 && CO % 4u != 0u) {
        var v = vec4<f32>(grad_out(pix, o), 0.0, 0.0, 0.0);
        if (o + 1u < CO) { v.y = grad_out(pix, o + 1u); }
        if (o + 2u < CO) { v.z = grad_out(pix, o + 2u); }
        if (o + 3u < CO) { v.w = grad_out(pix, o + 3u); }
        return v;
    }
    return vec4<f32>(grad_out(pix, o), grad_out(pix, o + 1u), grad_out(pix, o + 2u),
                     grad_out(pix, o + 3u));
}

// Output channels o..o+3 of one chunk's partial sums for kernel row `row`; none past CO.
fn store_partial(row: u32, chunk: u32, o: u32, v: vec4<f32>) {
    for (var l = 0u; l < 4u; l++) {
        if (o + l < CO) { partial_out[(row * CO + o + l) * p.chunks + chunk] = v[l]; }
    }
}

// Stage 2: one workgroup per weight (and, WITH_BIAS, per bias) sums its partials over the
// chunks: strided per invocation, then a fixed tree (deterministic).
@compute @workgroup_size(WG)
fn backward_weight_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let i = wid.y * nwg.x + wid.x;
    let len = ROWS * CO;
    if (i >= len) { return; }
    scratch[lid] = strided_sum(i * p.chunks, p.chunks, lid);
    let total = tree_sum(lid);
    if (lid == 0u) { store_gradient(i, total); }
}

// partial_in[first + k * stride] for k in 0..count, added in k's order (the same bits as one
// load and add after the other), its loads issued eight at a time. The count is a runtime
// value, so the driver need not unroll the loop; then each add waits for its own load's trip
// to memory (the H200's reduces: ~12 us above an empty dispatch's for 49 such trips), where
// eight trips in flight take about as long as one.
fn sum_in_order(first: u32, stride: u32, count: u32) -> f32 {
    var acc = 0.0;
    var k = 0u;
    for (; k + 8u <= count; k += 8u) {
        let i = first + k * stride;
        let v0 = partial_in[i];
        let v1 = partial_in[i + stride];
        let v2 = partial_in[i + 2u * stride];
        let v3 = partial_in[i + 3u * stride];
        let v4 = partial_in[i + 4u * stride];
        let v5 = partial_in[i + 5u * stride];
        let v6 = partial_in[i + 6u * stride];
        let v7 = partial_in[i + 7u * stride];
        acc += v0;
        acc += v1;
        acc += v2;
        acc += v3;
        acc += v4;
        acc += v5;
        acc += v6;
        acc += v7;
    }
    for (; k < count; k++) {
        acc += partial_in[first + k * stride];
    }
    return acc;
}

// Invocation lid's share of a weight's `chunks` partial sums from `first`: chunks lid,
// lid + WG, ... in order, as the tree's leaves.
fn strided_sum(first: u32, chunks: u32, lid: u32) -> f32 {
    if (lid >= chunks) { return 0.0; }
    return sum_in_order(first + lid, WG, (chunks - lid + WG - 1u) / WG);
}

// Stage 2 for few chunks (at most ops::conv2d::SERIAL_REDUCE): one invocation per weight
// (and bias) adds its chunks in order. A workgroup per weight would leave nearly all its
// invocations idle, and a large kernel has tens of thousands of weights.
@compute @workgroup_size(WG)
fn backward_weight_reduce_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ROWS * CO) { return; }
    store_gradient(i, sum_in_order(i * p.chunks, 1u, p.chunks));
}

// Up to this many chunks the reduce adds a weight's chunks in order in one invocation:
// ops::conv2d::SERIAL_REDUCE.
const SERIAL_REDUCE: u32 = 64u;

// One convolution's share of backward_weight_reduce_all (ops::conv2d::ReduceShare): its
// weights and biases are items first .. first + len of the dispatch; their partial sums start
// at partials in partial_in, chunks per item; its kernel gradient lands at dw in the bound
// gradient buffer (weights long), its bias gradient at db (none: NO_BIAS).
struct Share {
    first: u32, len: u32, partials: u32, chunks: u32,
    weights: u32, dw: u32, db: u32, _p: u32,
}

const NO_BIAS: u32 = 0xffffffffu;

// Stage 2 of every convolution of a training step in one dispatch (after the whole backward
// pass): one workgroup per weight and bias of every layer, each summed exactly as that
// layer's own reduce would (in order for at most SERIAL_REDUCE chunks, else strided and a
// fixed tree), so the gradients are the same to the bit and the step has one dispatch, not
// one per layer.
@compute @workgroup_size(WG)
fn backward_weight_reduce_all(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let i = wid.y * nwg.x + wid.x;
    let e = share_of(i);
    let j = i - e.first;
    if (j >= e.len) { return; }
    let base = e.partials + j * e.chunks;
    if (e.chunks <= SERIAL_REDUCE) {
        if (lid == 0u) {
            store_share(e, j, sum_in_order(base, 1u, e.chunks));
        }
        return;
    }
    scratch[lid] = strided_sum(base, e.chunks, lid);
    let total = tree_sum(lid);
    if (lid == 0u) { store_share(e, j, total); }
}

// The share holding item i of a merged reduce: the last whose first item is at most i (p.n
// shares, one per convolution).
fn share_of(i: u32) -> Share {
    var l = 0u;
    for (var k = 1u; k < p.n; k++) {
        if (shares[k].first <= i) { l = k; }
    }
    return shares[l];
}

// Item j of share e: a kernel gradient, or past the kernel the bias gradient (dropped for a
// layer without a bias).
fn store_share(e: Share, j: u32, total: f32) {
    let at = share_param(e, j);
    if (at != NO_BIAS) { dw[at] = total; }
}

// Where item j of share e lies in the gradients (and parameters): NO_BIAS for the bias of a
// layer without one.
fn share_param(e: Share, j: u32) -> u32 {
    if (j < e.weights) { return e.dw + j; }
    if (e.db != NO_BIAS) { return e.db + j - e.weights; }
    return NO_BIAS;
}

// backward_weight_reduce_adam (`--folds adam`, with `reduces`, where every weight of the model
// is a convolution's): backward_weight_reduce_all that also takes Adam's step for each
// parameter once its gradient is summed (adam.step's update through adam_update, so the same
// bits: the backward pass that read the weights has finished), and, in one workgroup after
// the items, bce.loss_finish's sum of the loss partials (the same loop and tree), which the
// loss pass wrote before the backward pass. The step then has no Adam dispatch.
@group(0) @binding(17) var<storage, read_write> adam_w: array<f32>;
@group(0) @binding(18) var<storage, read_write> adam_m: array<f32>;
@group(0) @binding(19) var<storage, read_write> adam_v: array<f32>;
@group(0) @binding(20) var<storage, read> loss_partials: array<f32>;
@group(0) @binding(21) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(WG)
fn backward_weight_reduce_adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let i = wid.y * nwg.x + wid.x;
    if (i == p.items) {
        var acc = 0.0;
        for (var k = lid; k < p.loss_partials; k += WG) {
            acc += loss_partials[k];
        }
        scratch[lid] = acc;
        let s = tree_sum(lid);
        if (lid == 0u) { loss[p.loss_slot] = s / f32(p.loss_total); }
        return;
    }
    let e = share_of(i);
    let j = i - e.first;
    if (j >= e.len) { return; }
    let base = e.partials + j * e.chunks;
    // The parameter and its moments are loaded before the sum, so that their trip to memory
    // overlaps it rather than following it.
    let at = share_param(e, j);
    let updates = lid == 0u && at != NO_BIAS;
    var before = AdamState(0.0, 0.0, 0.0);
    if (updates) { before = AdamState(adam_w[at], adam_m[at], adam_v[at]); }
    var total = 0.0;
    if (e.chunks <= SERIAL_REDUCE) {
        if (lid != 0u) { return; }
        total = sum_in_order(base, 1u, e.chunks);
    } else {
        scratch[lid] = strided_sum(base, e.chunks, lid);
        total = tree_sum(lid);
    }
    if (updates) {
        dw[at] = total;
        let s = adam_update(before.w, total, before.m, before.v, p.rate);
        adam_m[at] = s.m;
        adam_v[at] = s.v;
        adam_w[at] = s.w;
    }
}

// Weight gradient i of [row][co] (TAPS * CI rows), or past them the bias gradient.
fn store_gradient(i: u32, total: f32) {
    let weights = TAPS * CI * CO;
    if (i < weights) {
        dw[i] = total;
    } else {
        db[i - weights] = total;
    }
}

// One workgroup per output channel (folded into x and y, Gpu::groups): the sum of its
// gradient over the batch and pixels.
@compute @workgroup_size(WG)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let o = wid.y * nwg.x + wid.x;
    if (o >= CO) { return; }
    let rows = p.n * HO * WO;
    var acc = 0.0;
    for (var r = lid; r < rows; r += WG) {
        acc += grad_out(r, o);
    }
    scratch[lid] = acc;
    let total = tree_sum(lid);
    if (lid == 0u) { db[o] = total; }
}
