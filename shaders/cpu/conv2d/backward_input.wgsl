// cpu/conv2d, the input gradient: backward_input (one input pixel per invocation, or under
// reuse two: BIN_PAIR, UP_PAIR), backward_input_lanes and backward_input_up_lanes (their
// columns shared across a subgroup). Compiled after common.wgsl here, whose head says what
// shapes these kernels.

// ---- backward_input: one input pixel per invocation, the input channels of group cg ----

// Output channel o (of the loaded group) of tap k into the group's input channels.
fn bin_chan(k: u32, o: u32, gv: f32, acc: ptr<function, Acc4>) {
    let row = (k * GCO + o) * GCI4;
    (*acc).a0 += gv * wsh4[row];
    if (GCI > 4u) { (*acc).a1 += gv * wsh4[row + 1u]; }
    if (GCI > 8u) { (*acc).a2 += gv * wsh4[row + 2u]; }
    if (GCI > 12u) { (*acc).a3 += gv * wsh4[row + 3u]; }
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
