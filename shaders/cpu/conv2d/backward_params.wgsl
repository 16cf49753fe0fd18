// cpu/conv2d, the weight and bias gradient: the partial sums per chunk of pixels
// (backward_params_partial, _row, _up, _thin: which one a layer runs is
// ops::cpu::conv2d::backward_params's choice) and backward_params_reduce, which adds them.
// Compiled after common.wgsl here, whose head says what shapes these kernels.

// ---- backward_params: weight and bias gradient, partial sums per chunk of pixels ----
// The accumulators of one tap and one (input group, output group) are an AccW
// (cpu/blocks.wgsl): block (j, m) holds the group's input channels 4j..4j+3 times its output
// channels 4m..4m+3, column l being output 4m + l.

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
// Rows of one chunk's partial sums: every weight, then the bias (under INS, BIAS_ROWS
// rows of it: backward_params_partial), padded to whole vec4s.
override ROWS4: u32 = (9u * CI * CO + BIAS_ROWS * CO + 3u) / 4u;

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
