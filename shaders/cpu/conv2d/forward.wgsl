// cpu/conv2d, the forward pass: forward (per invocation one output pixel of a group, or the
// shape's own walk: PAIR's two pixels, a pooled window, a one-output layer's row of pixels),
// forward_lanes and forward_up_lanes (their windows' columns shared across a subgroup).
// Compiled after common.wgsl here, whose head says what shapes these kernels.

// ---- forward: one output pixel per invocation, the output channels of group og ----

// The slice of input group cg and output group og as [9 * GCI][GCO4], zero-padded past CI
// and CO. The first barrier keeps the previous slice until every invocation is done with it.
fn load_weights4(lid: u32, cg: u32, og: u32) {
    workgroupBarrier();
    for (var i = lid; i < 9u * GCI * GCO4; i += CPU_WG) {
        let row = i / GCO4;
        let k = row / GCI;
        let c = GROUP * cg + row % GCI;
        let o = GROUP * og + 4u * (i % GCO4);
        var v = vec4<f32>(0.0);
        for (var l = 0u; l < 4u; l++) {
            if (c < CI && o + l < CO) { v[l] = wt[(k * CI + c) * CO + o + l]; }
        }
        wsh4[i] = v;
    }
    workgroupBarrier();
}

fn fwd_chan(row: u32, xv: f32, acc: ptr<function, Acc4>) {
    (*acc).a0 += xv * wsh4[row * GCO4];
    if (GCO > 4u) { (*acc).a1 += xv * wsh4[row * GCO4 + 1u]; }
    if (GCO > 8u) { (*acc).a2 += xv * wsh4[row * GCO4 + 2u]; }
    if (GCO > 12u) { (*acc).a3 += xv * wsh4[row * GCO4 + 3u]; }
}

// Fewer than 4 outputs: accumulator a_o runs over input channels (4 at a time) for output o,
// with the whole kernel transposed (load_weights4_t(lid, 0, CI4, 0, CO)): a vec4 over outputs
// would waste most lanes.
fn fwd_narrow_tap(k: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(k / 3u) - i32(PAD);
    let ix = ox + i32(k % 3u) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
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
    let v = vec4<f32>(dot(acc.a0, one) + bias[0], dot(acc.a1, one) + bias[min(1u, CO - 1u)],
                      dot(acc.a2, one) + bias[min(2u, CO - 1u)], 0.0);
    if (store) { store4(pix * CO, 0u, 0u, v); }
}

// One output channel: four neighbouring output pixels per invocation (a0..a3), so that each
// input pixel loaded serves up to 3 of their taps (18 loads per 4 pixels instead of 36).
// Column `col` of kernel row ky, input column ox0 + col - PAD, into the pixels it reaches.
fn fwd_single_col(ky: u32, col: u32, b: u32, oy: i32, ox0: i32, acc: ptr<function, Acc4>) {
    let iy = oy + i32(ky) - i32(PAD);
    let ix = ox0 + i32(col) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
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

// x pixels of a row per invocation of the single-output upsampled forward
// (ops::cpu::conv2d::UP_ROW).
const UP_ROW: u32 = 4u;

// UP = 2, one output channel: invocation q takes UP_ROW neighbouring x pixels of a row,
// (fy, fx0 + k) for k < UP_ROW, and computes each one's four outputs (2fy + ry,
// 2(fx0 + k) + rx), in acc_k's a0..a3 in phase order 2ry + rx, from the x pixels around them
// (3 x (UP_ROW + 2) under 'same', 2 x (UP_ROW + 1) under 'valid'), each loaded once and read
// by the outputs whose 2x2 it is in through their phase's folded kernel (wsh4 rows
// (4 * phase + e) * CI4 + j, load_weights4_up_single): 18 loads for 4 x pixels where one
// invocation per x pixel made 36. Each output adds the same terms in the same order as then.
fn forward_single_up(id: u32) {
    // (At least 1: the entry point is compiled for every shape, and its divisions by
    // constants must not be by zero.)
    let fh = max(HO / 2u, 1u);
    let fw = max(WO / 2u, 1u);
    let groups = (fw + UP_ROW - 1u) / UP_ROW;
    let total = p.n * fh * groups;
    let q = min(id, total - 1u);
    let fx0 = UP_ROW * (q % groups);
    let fy = (q / groups) % fh;
    let b = q / (groups * fh);
    // One named Acc4 per x pixel (a struct of them made the pipeline take seconds longer to
    // build).
    var k0: Acc4;
    var k1: Acc4;
    var k2: Acc4;
    var k3: Acc4;
    fwd_up_row(-1, b, fy, fx0, &k0, &k1, &k2, &k3);
    fwd_up_row(0, b, fy, fx0, &k0, &k1, &k2, &k3);
    fwd_up_row(1, b, fy, fx0, &k0, &k1, &k2, &k3);
    if (id < total) {
        up_row_store(b, fy, fx0, 0u, fw, k0);
        if (UP_ROW > 1u) { up_row_store(b, fy, fx0, 1u, fw, k1); }
        if (UP_ROW > 2u) { up_row_store(b, fy, fx0, 2u, fw, k2); }
        if (UP_ROW > 3u) { up_row_store(b, fy, fx0, 3u, fw, k3); }
    }
}

// The four outputs of x pixel (fy, fx0 + k), if it is in the row.
fn up_row_store(b: u32, fy: u32, fx0: u32, k: u32, fw: u32, acc: Acc4) {
    let one = vec4<f32>(1.0);
    var v = vec4<f32>(dot(acc.a0, one), dot(acc.a1, one), dot(acc.a2, one), dot(acc.a3, one));
    v += vec4<f32>(bias[0]);
    if (p.relu != 0u) { v = max(v, vec4<f32>(0.0)); }
    if (fx0 + k < fw) {
        let at = (b * HO + 2u * fy) * WO + 2u * (fx0 + k);
        y[at] = v.x;
        y[at + 1u] = v.y;
        y[at + WO] = v.z;
        y[at + WO + 1u] = v.w;
    }
}

// Row offset ny of the row's x pixels, in order of column offset from fx0 (so each output
// meets its pixels in the one-pixel order: rows, then columns).
fn fwd_up_row(ny: i32, b: u32, fy: u32, fx0: u32, k0: ptr<function, Acc4>,
              k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    fwd_up_at(ny, -1, b, fy, fx0, k0, k1, k2, k3);
    fwd_up_at(ny, 0, b, fy, fx0, k0, k1, k2, k3);
    fwd_up_at(ny, 1, b, fy, fx0, k0, k1, k2, k3);
    fwd_up_at(ny, 2, b, fy, fx0, k0, k1, k2, k3);
    if (UP_ROW > 2u) { fwd_up_at(ny, 3, b, fy, fx0, k0, k1, k2, k3); }
    if (UP_ROW > 3u) { fwd_up_at(ny, 4, b, fy, fx0, k0, k1, k2, k3); }
}

// ---- forward_up_lanes: forward_single_up with its row's columns shared ----
// LANES with one output channel under UP = 2 (ops::cpu::conv2d::lanes; at most 16 input
// channels, a multiple of 4): each subgroup takes whole rows of x's half-size pixels, a
// group of UP_ROW per lane, as forward_single_up's invocations. A lane loads its own UP_ROW
// columns of each x row the outputs read and takes the column left of them from the lane
// before (its last) and the one right of them from the lane after (its first): UP_ROW loads
// a row where forward_single_up makes UP_ROW + 2. A column past the row's edges takes the
// clamped pixel forward_single_up loads (one of the lane's own), scaled by its mask and met
// in its order: the same bits.
@compute @workgroup_size(CPU_WG)
fn forward_up_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_id) sg: u32,
                    @builtin(subgroup_invocation_id) lane: u32) {
    load_weights4_up_single(lid);
    let fh = max(HO / 2u, 1u);
    let fw = max(WO / 2u, 1u);
    let at = lane_place(wid, nwg, sg, lane, fw, UP_ROW, p.n * fh);
    let fx0 = at.first;
    let fy = at.row % fh;
    let b = at.row / fh;
    var k0: Acc4;
    var k1: Acc4;
    var k2: Acc4;
    var k3: Acc4;
    up_lanes_fwd_row(-1, b, fy, fx0, lane, &k0, &k1, &k2, &k3);
    up_lanes_fwd_row(0, b, fy, fx0, lane, &k0, &k1, &k2, &k3);
    up_lanes_fwd_row(1, b, fy, fx0, lane, &k0, &k1, &k2, &k3);
    if (at.live) {
        up_row_store(b, fy, fx0, 0u, fw, k0);
        up_row_store(b, fy, fx0, 1u, fw, k1);
        up_row_store(b, fy, fx0, 2u, fw, k2);
        up_row_store(b, fy, fx0, 3u, fw, k3);
    }
}

// `channels` of x from vec4 index `at` (a pixel's first, or its group's), raw, four vec4s
// at most (CI a multiple of 4; `channels` a constant wherever this is called).
fn xcol_load(at: u32, channels: u32) -> Col4 {
    var c: Col4;
    c.g0 = x4_load(at);
    if (channels > 4u) { c.g1 = x4_load(at + 1u); }
    if (channels > 8u) { c.g2 = x4_load(at + 2u); }
    if (channels > 12u) { c.g3 = x4_load(at + 3u); }
    return c;
}

// Row offset ny: x row fy + ny, columns fx0 - 1 .. fx0 + UP_ROW, in fwd_up_row's order.
fn up_lanes_fwd_row(ny: i32, b: u32, fy: u32, fx0: u32, lane: u32, k0: ptr<function, Acc4>,
                    k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    if (!up_reads(ny)) { return; }
    let sy = i32(fy) + ny;
    let ys = inside_at(sy, XH);
    let at = (b * XH + tap_at(sy, XH)) * XW;
    let x0 = i32(fx0);
    let c0 = xcol_load((at + tap_at(x0, XW)) * (CI / 4u), CI);
    let c1 = xcol_load((at + tap_at(x0 + 1, XW)) * (CI / 4u), CI);
    let c2 = xcol_load((at + tap_at(x0 + 2, XW)) * (CI / 4u), CI);
    let c3 = xcol_load((at + tap_at(x0 + 3, XW)) * (CI / 4u), CI);
    // Left of the row's start the clamped pixel is column 0, ours c0; right of its end
    // column XW - 1, ours at XW - 1 - fx0.
    let left = col_select(col_shuffled(c3, lane_before(lane), CI), c0, fx0 == 0u);
    let e = min(XW - 1u - min(fx0, XW - 1u), 3u);
    let ours = col_select(col_select(c0, c1, e == 1u), col_select(c2, c3, e == 3u), e >= 2u);
    let right = col_select(col_shuffled(c0, lane_after(lane), CI), ours, fx0 + UP_ROW >= XW);
    up_lanes_fwd_at(ny, -1, ys * inside_at(x0 - 1, XW), left, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 0, ys * inside_at(x0, XW), c0, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 1, ys * inside_at(x0 + 1, XW), c1, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 2, ys * inside_at(x0 + 2, XW), c2, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 3, ys * inside_at(x0 + 3, XW), c3, k0, k1, k2, k3);
    up_lanes_fwd_at(ny, 4, ys * inside_at(x0 + 4, XW), right, k0, k1, k2, k3);
}

// fwd_up_at with the pixel's channels given: into each output that reads offset (ny, nx).
fn up_lanes_fwd_at(ny: i32, nx: i32, keep: f32, v: Col4, k0: ptr<function, Acc4>,
                   k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    let used = up_reads(nx) || up_reads(nx - 1) || up_reads(nx - 2) || up_reads(nx - 3);
    if (!used) { return; }
    up_lanes_fwd_block(ny, nx, 0u, keep * v.g0, k0, k1, k2, k3);
    if (CI > 4u) { up_lanes_fwd_block(ny, nx, 1u, keep * v.g1, k0, k1, k2, k3); }
    if (CI > 8u) { up_lanes_fwd_block(ny, nx, 2u, keep * v.g2, k0, k1, k2, k3); }
    if (CI > 12u) { up_lanes_fwd_block(ny, nx, 3u, keep * v.g3, k0, k1, k2, k3); }
}

fn up_lanes_fwd_block(ny: i32, nx: i32, j: u32, xq: vec4<f32>, k0: ptr<function, Acc4>,
                      k1: ptr<function, Acc4>, k2: ptr<function, Acc4>,
                      k3: ptr<function, Acc4>) {
    up_into(ny, nx, j, xq, k0);
    up_into(ny, nx - 1, j, xq, k1);
    up_into(ny, nx - 2, j, xq, k2);
    up_into(ny, nx - 3, j, xq, k3);
}

// Whether a phase-r output reads x offset n (from its own x pixel) in either row parity: the
// pixel is loaded only where some output reads it.
fn up_reads(n: i32) -> bool {
    return up_in(0u, n) || up_in(1u, n);
}

// x's pixel (fy + ny, fx0 + nx) into each output that reads it: x pixel k's at offset
// (ny, nx - k). ny, nx are literals wherever this is called, so every branch folds away.
fn fwd_up_at(ny: i32, nx: i32, b: u32, fy: u32, fx0: u32, k0: ptr<function, Acc4>,
             k1: ptr<function, Acc4>, k2: ptr<function, Acc4>, k3: ptr<function, Acc4>) {
    let used = up_reads(nx) || (UP_ROW > 1u && up_reads(nx - 1))
        || (UP_ROW > 2u && up_reads(nx - 2)) || (UP_ROW > 3u && up_reads(nx - 3));
    if (!up_reads(ny) || !used) { return; }
    let sy = i32(fy) + ny;
    let sx = i32(fx0) + nx;
    let keep = inside_at(sy, XH) * inside_at(sx, XW);
    let pix = (b * XH + tap_at(sy, XH)) * XW + tap_at(sx, XW);
    let ci4 = (CI + 3u) / 4u;
    for (var j = 0u; j < ci4; j++) {
        let xq = x4_at(pix, j, keep);
        up_into(ny, nx, j, xq, k0);
        if (UP_ROW > 1u) { up_into(ny, nx - 1, j, xq, k1); }
        if (UP_ROW > 2u) { up_into(ny, nx - 2, j, xq, k2); }
        if (UP_ROW > 3u) { up_into(ny, nx - 3, j, xq, k3); }
    }
}

// x channels 4j..4j+3 at offset (ny, nx) from an x pixel into its four outputs' sums, where
// they read it.
fn up_into(ny: i32, nx: i32, j: u32, xq: vec4<f32>, acc: ptr<function, Acc4>) {
    let ci4 = (CI + 3u) / 4u;
    if (up_hits(0u, 0u, ny, nx)) { (*acc).a0 += xq * wsh4[up_single_row(0u, 0u, ny, nx) * ci4 + j]; }
    if (up_hits(0u, 1u, ny, nx)) { (*acc).a1 += xq * wsh4[up_single_row(0u, 1u, ny, nx) * ci4 + j]; }
    if (up_hits(1u, 0u, ny, nx)) { (*acc).a2 += xq * wsh4[up_single_row(1u, 0u, ny, nx) * ci4 + j]; }
    if (up_hits(1u, 1u, ny, nx)) { (*acc).a3 += xq * wsh4[up_single_row(1u, 1u, ny, nx) * ci4 + j]; }
}

// Which of its two x rows (or columns) a phase-r output's row offset n is: n - up_first(r).
fn up_tap_of(r: u32, n: i32) -> i32 {
    return n - up_first(r);
}

// Whether a phase-r output reads offset n at all.
fn up_in(r: u32, n: i32) -> bool {
    let e = up_tap_of(r, n);
    return e >= 0 && e <= 1;
}

fn up_hits(ry: u32, rx: u32, ny: i32, nx: i32) -> bool {
    return up_in(ry, ny) && up_in(rx, nx);
}

// The wsh4 row of phase (ry, rx)'s folded tap at offset (ny, nx) (where up_hits).
fn up_single_row(ry: u32, rx: u32, ny: i32, nx: i32) -> u32 {
    return 4u * (2u * ry + rx) + u32(2 * up_tap_of(ry, ny) + up_tap_of(rx, nx));
}

// UP = 2, one output channel: the four phases' folded kernels, row 4 * phase + e, each CI4
// vec4s of input channels (zero past CI), an invocation per vec4.
fn load_weights4_up_single(lid: u32) {
    let ci4 = (CI + 3u) / 4u;
    workgroupBarrier();
    for (var j = lid; j < ci4; j += CPU_WG) {
        let t = taps_at(4u * j, 0u);
        for (var phase = 0u; phase < 4u; phase++) {
            let f = fold_phase(t, phase / 2u, phase % 2u);
            wsh4[(4u * phase) * ci4 + j] = f.a;
            wsh4[(4u * phase + 1u) * ci4 + j] = f.b;
            wsh4[(4u * phase + 2u) * ci4 + j] = f.c;
            wsh4[(4u * phase + 3u) * ci4 + j] = f.d;
        }
    }
    workgroupBarrier();
}

// Where the forward's tap k of output pixel (b, oy, ox) reads x: the pixel, and 0 or 1 for
// whether it lies inside (else the clamped pixel is read and scaled by 0).
struct Source { pix: u32, keep: f32 }

fn fwd_source(k: u32, b: u32, oy: i32, ox: i32) -> Source {
    let iy = oy + i32(k / 3u) - i32(PAD);
    let ix = ox + i32(k % 3u) - i32(PAD);
    if (INS) {
        // Only taps that land on inserted pixels run (fwd_lands), so these divide exactly.
        let sy = (iy - i32(OY)) / 2;
        let sx = (ix - i32(OX)) / 2;
        let keep = inside_at(sy, XH) * inside_at(sx, XW);
        return Source((b * XH + tap_at(sy, XH)) * XW + tap_at(sx, XW), keep);
    }
    let keep = inside_at(iy, H) * inside_at(ix, W);
    return Source(x_pixel(b, tap_at(iy, H), tap_at(ix, W)), keep);
}

// Whether tap k of the phase's outputs lands on an inserted pixel rather than a zero: a
// constant (PY, PX, PAD, OY, OX are overrides, k a literal), so the others fold away.
fn fwd_lands(k: u32) -> bool {
    return !INS || ((PY + k / 3u + PAD + OY) % 2u == 0u && (PX + k % 3u + PAD + OX) % 2u == 0u);
}

// Tap k over the input channels of group cg (a constant wherever this is called).
fn fwd_tap(k: u32, cg: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    if (!fwd_lands(k)) { return; }
    let src = fwd_source(k, b, oy, ox);
    let keep = src.keep;
    let pix = src.pix;
    let channels = group_len(CI, cg);
    if (CI % 4u == 0u) {
        for (var j = 0u; j < channels / 4u; j++) {
            fwd_block(k, j, keep * x4_load(pix * (CI / 4u) + GROUP / 4u * cg + j), acc);
        }
    } else {
        for (var c = 0u; c < channels; c++) {
            fwd_chan(k * GCI + c, keep * x[pix * CI + GROUP * cg + c], acc);
        }
    }
}

// Input group cg's share of every tap, with its kernel slice.
fn fwd_group(lid: u32, cg: u32, og: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    load_weights4(lid, cg, og);
    if (UP == 2u && REUSE && CI % 4u == 0u) {
        fwd_taps_up(cg, b, oy, ox, acc);
        return;
    }
    fwd_taps(cg, b, oy, ox, acc);
}

// UP = 2 under REUSE: the window's 3 x 3 taps read only 2 x 2 x pixels through the
// upsampling, so each is loaded once (8 vec4 loads for 8 channels, where fwd_taps loads 18).
// Tap row 0 reads x row sy = floor(y0 / 2) of upsampled row y0 = oy - PAD, row 2 reads
// sy + 1, row 1 the one of the two its parity says (the same for columns); a pixel is
// clamped inside as tap_at's, and each tap's value scaled as fwd_tap's: the same bits.
fn fwd_taps_up(cg: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    let y0 = oy - i32(PAD);
    let x0 = ox - i32(PAD);
    let sy = half_floor(y0);
    let sx = half_floor(x0);
    let r0 = x_row_start(b, sy);
    let r1 = x_row_start(b, sy + 1);
    let c0 = x_col(sx);
    let c1 = x_col(sx + 1);
    let n = group_len(CI, cg);
    let first = GROUP / 4u * cg;
    let q00 = xcol_load((r0 + c0) * (CI / 4u) + first, n);
    let q01 = xcol_load((r0 + c1) * (CI / 4u) + first, n);
    let q10 = xcol_load((r1 + c0) * (CI / 4u) + first, n);
    let q11 = xcol_load((r1 + c1) * (CI / 4u) + first, n);
    let odd_y = (y0 + 2) % 2 == 1;
    let odd_x = (x0 + 2) % 2 == 1;
    let q0m = col_select(q00, q01, odd_x);
    let q1m = col_select(q10, q11, odd_x);
    let qm0 = col_select(q00, q10, odd_y);
    let qmm = col_select(q0m, q1m, odd_y);
    let qm1 = col_select(q01, q11, odd_y);
    fwd_tap_up(0u, n, y0, x0, q00, acc);
    fwd_tap_up(1u, n, y0, x0, q0m, acc);
    fwd_tap_up(2u, n, y0, x0, q01, acc);
    fwd_tap_up(3u, n, y0, x0, qm0, acc);
    fwd_tap_up(4u, n, y0, x0, qmm, acc);
    fwd_tap_up(5u, n, y0, x0, qm1, acc);
    fwd_tap_up(6u, n, y0, x0, q10, acc);
    fwd_tap_up(7u, n, y0, x0, q1m, acc);
    fwd_tap_up(8u, n, y0, x0, q11, acc);
}

// Under UP = 2: the first pixel of x row sy of image b, and x column sx, each clamped inside
// (x_pixel's of the clamped upsampled row or column).
fn x_row_start(b: u32, sy: i32) -> u32 {
    return (b * XH + u32(clamp(sy, 0, i32(XH) - 1))) * XW;
}

fn x_col(sx: i32) -> u32 {
    return u32(clamp(sx, 0, i32(XW) - 1));
}

// Tap k of fwd_taps_up with its x pixel's `channels` in c, scaled by 0 where it reads padding.
fn fwd_tap_up(k: u32, channels: u32, y0: i32, x0: i32, c: Col4, acc: ptr<function, Acc4>) {
    let keep = inside_at(y0 + i32(k / 3u), H) * inside_at(x0 + i32(k % 3u), W);
    fwd_block(k, 0u, keep * c.g0, acc);
    if (channels > 4u) { fwd_block(k, 1u, keep * c.g1, acc); }
    if (channels > 8u) { fwd_block(k, 2u, keep * c.g2, acc); }
    if (channels > 12u) { fwd_block(k, 3u, keep * c.g3, acc); }
}

// Channels 4j..4j+3 of tap k's x value q into the sums, as fwd_tap adds them.
fn fwd_block(k: u32, j: u32, q: vec4<f32>, acc: ptr<function, Acc4>) {
    fwd_chan(k * GCI + 4u * j, q.x, acc);
    fwd_chan(k * GCI + 4u * j + 1u, q.y, acc);
    fwd_chan(k * GCI + 4u * j + 2u, q.z, acc);
    fwd_chan(k * GCI + 4u * j + 3u, q.w, acc);
}

// Every tap of output pixel (b, oy, ox) over input group cg, with its loaded slice.
fn fwd_taps(cg: u32, b: u32, oy: i32, ox: i32, acc: ptr<function, Acc4>) {
    fwd_tap(0u, cg, b, oy, ox, acc);
    fwd_tap(1u, cg, b, oy, ox, acc);
    fwd_tap(2u, cg, b, oy, ox, acc);
    fwd_tap(3u, cg, b, oy, ox, acc);
    fwd_tap(4u, cg, b, oy, ox, acc);
    fwd_tap(5u, cg, b, oy, ox, acc);
    fwd_tap(6u, cg, b, oy, ox, acc);
    fwd_tap(7u, cg, b, oy, ox, acc);
    fwd_tap(8u, cg, b, oy, ox, acc);
}

// y as vec4s (the same buffer), where CO is a multiple of 4: a pixel's four channels in one
// store. A pipeline uses one view or the other.
@group(0) @binding(23) var<storage, read_write> y4: array<vec4<f32>>;

// Output channels GROUP * og + 4j .. +3 of the pixel starting at `at`, ReLU'd when asked.
fn store4(at: u32, og: u32, j: u32, v: vec4<f32>) {
    var o = v;
    if (p.relu != 0u) { o = max(o, vec4<f32>(0.0)); }
    if (CO % 4u == 0u) {
        let c = GROUP * og + 4u * j;
        if (c < CO) { y4[(at + c) / 4u] = o; }
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let c = GROUP * og + 4u * j + l;
        if (c < CO) { y[at + c] = o[l]; }
    }
}

// Output group og's biases: the accumulators' start.
fn bias_acc(og: u32) -> Acc4 {
    return Acc4(bias4(GROUP * og), bias4(GROUP * og + 4u), bias4(GROUP * og + 8u),
                bias4(GROUP * og + 12u));
}

// Bias of output channels o..o+3 (clamped: lanes past CO are never stored).
fn bias4(o: u32) -> vec4<f32> {
    return vec4<f32>(bias[min(o, CO - 1u)], bias[min(o + 1u, CO - 1u)],
                     bias[min(o + 2u, CO - 1u)], bias[min(o + 3u, CO - 1u)]);
}

@compute @workgroup_size(CPU_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat_cpu(wid, lid, nwg);
    if (CO == 1u && UP == 2u) {
        load_weights4_up_single(lid);
        forward_single_up(id);
        return;
    }
    if (CO == 1u) {
        load_weights4_t(lid, 0u, (CI + 3u) / 4u, 0u, CO);
        forward_single(id);
        return;
    }
    // The output grid: every pixel, under INS this dispatch's phase, under TAKE the kept
    // pixels (y's, so q is their index).
    let total = p.n * FH * FW;
    let q = min(id, total - 1u);
    let fx = q % FW;
    let fy = (q / FW) % FH;
    let b = q / (FW * FH);
    let ox = select(spread(fx, INS, PX), spread(fx, true, TX), TAKE);
    let oy = select(spread(fy, INS, PY), spread(fy, true, TY), TAKE);
    let pix = select((b * HO + u32(oy)) * WO + u32(ox), q, TAKE);
    if (CO < 4u) {
        load_weights4_t(lid, 0u, (CI + 3u) / 4u, 0u, CO);
        forward_narrow(pix, b, oy, ox, id < total);
        return;
    }
    if (POOL == 2u) {
        forward_pooled(wid, lid, id);
        return;
    }
    if (PAIR) {
        forward_pair(lid, id);
        return;
    }
    let og = group_at(wid.z, CO);
    var acc = bias_acc(og);
    fwd_group(lid, 0u, og, b, oy, ox, &acc);
    if (CI > GROUP) { fwd_group(lid, 1u, og, b, oy, ox, &acc); }
    if (id < total) {
        store4(pix * CO, og, 0u, acc.a0);
        if (GCO > 4u) { store4(pix * CO, og, 1u, acc.a1); }
        if (GCO > 8u) { store4(pix * CO, og, 2u, acc.a2); }
        if (GCO > 12u) { store4(pix * CO, og, 3u, acc.a3); }
    }
}

// PAIR (4 to 8 output channels, no stride-2 map or pool; ops::cpu::conv2d::pairs): the group's
// channels fill two of the four accumulators, so the other two take the next output pixel
// of the row, and each input pixel of the pair's 3x4 window, loaded once, serves both (12
// loads for two outputs, not 18: lavapipe's time is in its loads). Invocation q is pair
// (b, oy, ox0 = 2 * (q % pairs per row)); a0, a1 hold output ox0, a2, a3 output ox0 + 1 (not
// stored past the row's end).
override PAIR: bool = false;

fn forward_pair(lid: u32, id: u32) {
    let pairs = (WO + 1u) / 2u;
    let total = p.n * HO * pairs;
    let q = min(id, total - 1u);
    let ox0 = 2u * (q % pairs);
    let row = q / pairs;
    let oy = row % HO;
    let b = row / HO;
    var acc: Acc4;
    acc.a0 = bias4(0u);
    acc.a1 = bias4(4u);
    acc.a2 = acc.a0;
    acc.a3 = acc.a1;
    pair_group(lid, 0u, b, oy, ox0, &acc);
    if (CI > GROUP) { pair_group(lid, 1u, b, oy, ox0, &acc); }
    if (id < total) {
        let pix = (b * HO + oy) * WO + ox0;
        store4(pix * CO, 0u, 0u, acc.a0);
        if (GCO > 4u) { store4(pix * CO, 0u, 1u, acc.a1); }
        if (ox0 + 1u < WO) {
            store4((pix + 1u) * CO, 0u, 0u, acc.a2);
            if (GCO > 4u) { store4((pix + 1u) * CO, 0u, 1u, acc.a3); }
        }
    }
}

// Input group cg's share of both outputs: its kernel slice, then the window's 12 pixels.
fn pair_group(lid: u32, cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    load_weights4(lid, cg, 0u);
    if (UP == 2u && REUSE && CI % 4u == 0u) {
        pair_rows_up(cg, b, oy, ox0, acc);
        return;
    }
    pair_row(0u, cg, b, oy, ox0, acc);
    pair_row(1u, cg, b, oy, ox0, acc);
    pair_row(2u, cg, b, oy, ox0, acc);
}

fn pair_row(ky: u32, cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    pair_col(ky, 0u, cg, b, oy, ox0, acc);
    pair_col(ky, 1u, cg, b, oy, ox0, acc);
    pair_col(ky, 2u, cg, b, oy, ox0, acc);
    pair_col(ky, 3u, cg, b, oy, ox0, acc);
}

// Input pixel (oy + ky - PAD, ox0 + col - PAD): tap (ky, col) of output ox0 and
// (ky, col - 1) of output ox0 + 1, where those exist.
fn pair_col(ky: u32, col: u32, cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    let iy = i32(oy + ky) - i32(PAD);
    let ix = i32(ox0 + col) - i32(PAD);
    let keep = inside_at(iy, H) * inside_at(ix, W);
    let pix = x_pixel(b, tap_at(iy, H), tap_at(ix, W));
    let channels = group_len(CI, cg);
    if (CI % 4u == 0u) {
        for (var j = 0u; j < channels / 4u; j++) {
            let q = keep * x4_load(pix * (CI / 4u) + GROUP / 4u * cg + j);
            pair_chan(ky, col, 4u * j, q.x, acc);
            pair_chan(ky, col, 4u * j + 1u, q.y, acc);
            pair_chan(ky, col, 4u * j + 2u, q.z, acc);
            pair_chan(ky, col, 4u * j + 3u, q.w, acc);
        }
    } else {
        for (var c = 0u; c < channels; c++) {
            pair_chan(ky, col, c, keep * x[pix * CI + GROUP * cg + c], acc);
        }
    }
}

// UP = 2 under REUSE: the pair's 3 x 4 window reads 2 x 3 x pixels through the upsampling
// (fwd_taps_up's rows; ox0 is even, so window column col reads x column ox0 / 2 +
// floor((col - PAD) / 2), at most three), each loaded once: 6 pixel loads where pair_row
// makes 12. Clamped and scaled as pair_col's, in its order: the same bits.
fn pair_rows_up(cg: u32, b: u32, oy: u32, ox0: u32, acc: ptr<function, Acc4>) {
    let y0 = i32(oy) - i32(PAD);
    let sy = half_floor(y0);
    let r0 = x_row_start(b, sy);
    let r1 = x_row_start(b, sy + 1);
    let m = i32(ox0 / 2u);
    let n = group_len(CI, cg);
    let first = GROUP / 4u * cg;
    let ca = x_col(m - 1);
    let cb = x_col(m);
    let cc = x_col(m + 1);
    // Column m - 1 only under 'same' padding.
    var a0: Col4;
    var a1: Col4;
    if (PAD == 1u) {
        a0 = xcol_load((r0 + ca) * (CI / 4u) + first, n);
        a1 = xcol_load((r1 + ca) * (CI / 4u) + first, n);
    }
    let b0 = xcol_load((r0 + cb) * (CI / 4u) + first, n);
    let b1 = xcol_load((r1 + cb) * (CI / 4u) + first, n);
    let c0 = xcol_load((r0 + cc) * (CI / 4u) + first, n);
    let c1 = xcol_load((r1 + cc) * (CI / 4u) + first, n);
    let odd = (y0 + 2) % 2 == 1;
    pair_row_up(0u, n, oy, ox0, a0, b0, c0, acc);
    pair_row_up(1u, n, oy, ox0, col_select(a0, a1, odd), col_select(b0, b1, odd),
                col_select(c0, c1, odd), acc);
    pair_row_up(2u, n, oy, ox0, a1, b1, c1, acc);
}

// Window row ky of pair_rows_up from x columns m - 1, m, m + 1 (xa, xb, xc): under 'same'
// padding its four columns read xa, xb, xb, xc, under 'valid' xb, xb, xc, xc.
fn pair_row_up(ky: u32, n: u32, oy: u32, ox0: u32, xa: Col4, xb: Col4, xc: Col4,
               acc: ptr<function, Acc4>) {
    let ys = inside_at(i32(oy + ky) - i32(PAD), H);
    let x0 = i32(ox0) - i32(PAD);
    if (PAD == 1u) {
        lanes_col(ky, 0u, n, col_scaled(xa, ys * inside_at(x0, W)), acc);
    } else {
        lanes_col(ky, 0u, n, col_scaled(xb, ys * inside_at(x0, W)), acc);
    }
    lanes_col(ky, 1u, n, col_scaled(xb, ys * inside_at(x0 + 1, W)), acc);
    if (PAD == 1u) {
        lanes_col(ky, 2u, n, col_scaled(xb, ys * inside_at(x0 + 2, W)), acc);
    } else {
        lanes_col(ky, 2u, n, col_scaled(xc, ys * inside_at(x0 + 2, W)), acc);
    }
    lanes_col(ky, 3u, n, col_scaled(xc, ys * inside_at(x0 + 3, W)), acc);
}

// Input channel c of the loaded slice at column `col` into both outputs' sums.
fn pair_chan(ky: u32, col: u32, c: u32, xv: f32, acc: ptr<function, Acc4>) {
    if (col < 3u) {
        let row = (ky * 3u + col) * GCI + c;
        (*acc).a0 += xv * wsh4[row * GCO4];
        if (GCO > 4u) { (*acc).a1 += xv * wsh4[row * GCO4 + 1u]; }
    }
    if (col >= 1u) {
        let row = (ky * 3u + col - 1u) * GCI + c;
        (*acc).a2 += xv * wsh4[row * GCO4];
        if (GCO > 4u) { (*acc).a3 += xv * wsh4[row * GCO4 + 1u]; }
    }
}

// ---- forward_lanes: forward_pair with its window's columns shared across a subgroup ----
// LANES (the `lanes` variant on an adapter whose subgroups are LANES invocations wide, for a
// 'same' layer with no fold whose rows have at most LANES pairs; ops::cpu::conv2d::lanes): each
// subgroup takes LANES / pairs whole rows, a pair per lane (the lanes past them idle), so
// the pair left of a lane's is the lane before it and the pair right of it the lane after.
// A lane loads only its own two columns of the window's three rows and takes the column left
// of them from the lane before and the one right of them from the lane after
// (subgroupShuffle: a register permute on lavapipe, where a load is a loop over the vector's
// lanes): 6 pixel loads for two outputs where forward_pair makes 12. A window column past
// the row's edge takes the pixel forward_pair's clamped load reads, and every column is
// scaled by its mask as there: the same terms in the same order, the same bits.

@compute @workgroup_size(CPU_WG)
fn forward_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_id) sg: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let at = lane_place(wid, nwg, sg, lane, WO, 2u, p.n * HO);
    let ox0 = at.first;
    let oy = at.row % HO;
    let b = at.row / HO;
    var acc: Acc4;
    acc.a0 = bias4(0u);
    acc.a1 = bias4(4u);
    acc.a2 = acc.a0;
    acc.a3 = acc.a1;
    lanes_group(lid, 0u, b, oy, ox0, lane, &acc);
    if (CI > GROUP) { lanes_group(lid, 1u, b, oy, ox0, lane, &acc); }
    if (at.live) {
        let pix = (b * HO + oy) * WO + ox0;
        store4(pix * CO, 0u, 0u, acc.a0);
        if (GCO > 4u) { store4(pix * CO, 0u, 1u, acc.a1); }
        if (ox0 + 1u < WO) {
            store4((pix + 1u) * CO, 0u, 0u, acc.a2);
            if (GCO > 4u) { store4((pix + 1u) * CO, 0u, 1u, acc.a3); }
        }
    }
}

fn lanes_group(lid: u32, cg: u32, b: u32, oy: u32, ox0: u32, lane: u32, acc: ptr<function, Acc4>) {
    load_weights4(lid, cg, 0u);
    lanes_row(0u, cg, b, oy, ox0, lane, acc);
    lanes_row(1u, cg, b, oy, ox0, lane, acc);
    lanes_row(2u, cg, b, oy, ox0, lane, acc);
}

// Window row ky (PAD = 1): columns ox0 - 1 .. ox0 + 2, in pair_row's order; this lane's pixels
// are columns 1 and 2 (ox0, ox0 + 1).
fn lanes_row(ky: u32, cg: u32, b: u32, oy: u32, ox0: u32, lane: u32, acc: ptr<function, Acc4>) {
    let iy = i32(oy + ky) - 1;
    let ys = inside_at(iy, H);
    let pa = x_pixel(b, tap_at(iy, H), tap_at(i32(ox0), W)) * (CI / 4u) + GROUP / 4u * cg;
    let pb = x_pixel(b, tap_at(iy, H), tap_at(i32(ox0) + 1, W)) * (CI / 4u) + GROUP / 4u * cg;
    let n = group_len(CI, cg);
    let ca = xcol_load(pa, n);
    let cb = xcol_load(pb, n);
    // Column 0: the lane before's second pixel (at the row's start the clamped one, ours);
    // column 3: the lane after's first (past the row's end the clamped one, our second).
    let left = col_select(col_shuffled(cb, lane_before(lane), n), ca, ox0 == 0u);
    let right = col_select(col_shuffled(ca, lane_after(lane), n), cb, ox0 + 2u >= W);
    lanes_col(ky, 0u, n, col_scaled(left, ys * inside_at(i32(ox0) - 1, W)), acc);
    lanes_col(ky, 1u, n, col_scaled(ca, ys * inside_at(i32(ox0), W)), acc);
    lanes_col(ky, 2u, n, col_scaled(cb, ys * inside_at(i32(ox0) + 1, W)), acc);
    lanes_col(ky, 3u, n, col_scaled(right, ys * inside_at(i32(ox0) + 2, W)), acc);
}

// The `channels` of window column `col` into both outputs' sums, block by block as pair_col
// adds them.
fn lanes_col(ky: u32, col: u32, channels: u32, c: Col4, acc: ptr<function, Acc4>) {
    lanes_block(ky, col, 0u, c.g0, acc);
    if (channels > 4u) { lanes_block(ky, col, 1u, c.g1, acc); }
    if (channels > 8u) { lanes_block(ky, col, 2u, c.g2, acc); }
    if (channels > 12u) { lanes_block(ky, col, 3u, c.g3, acc); }
}

fn lanes_block(ky: u32, col: u32, j: u32, q: vec4<f32>, acc: ptr<function, Acc4>) {
    pair_chan(ky, col, 4u * j, q.x, acc);
    pair_chan(ky, col, 4u * j + 1u, q.y, acc);
    pair_chan(ky, col, 4u * j + 2u, q.z, acc);
    pair_chan(ky, col, 4u * j + 3u, q.w, acc);
}

// POOL = 2: invocation q is pooled pixel (b, py, px), z-layer og its output group. Each place
// w of its window (row-major) is the layer's output there, ReLU'd when the layer has ReLU; a
// 'same' pool's missing bottom row or right column is clamped onto a cell before it, which it
// then equals and cannot beat (the first maximum wins ties, as in pool.forward).
fn forward_pooled(wid: vec3<u32>, lid: u32, id: u32) {
    let total = p.n * PH * PW;
    let q = min(id, total - 1u);
    let px = q % PW;
    let py = (q / PW) % PH;
    let b = q / (PW * PH);
    let og = group_at(wid.z, CO);
    load_weights4(lid, 0u, og);
    var pt: Patch;
    if (fwd_reuses()) { pt = pooled_x_patch(q); }
    var best = pool_place(0u, og, b, py, px, pt);
    var won: Won;
    pool_max(&best, &won, pool_place(1u, og, b, py, px, pt), 1u);
    pool_max(&best, &won, pool_place(2u, og, b, py, px, pt), 2u);
    pool_max(&best, &won, pool_place(3u, og, b, py, px, pt), 3u);
    if (id < total) {
        store4(q * CO, og, 0u, best.a0);
        store_won(q * CO, og, 0u, won.w0);
        if (GCO > 4u) { store4(q * CO, og, 1u, best.a1); store_won(q * CO, og, 1u, won.w1); }
        if (GCO > 8u) { store4(q * CO, og, 2u, best.a2); store_won(q * CO, og, 2u, won.w2); }
        if (GCO > 12u) { store4(q * CO, og, 3u, best.a3); store_won(q * CO, og, 3u, won.w3); }
    }
}

// Whether the pooled forward reads its window's inputs from a patch (REUSE, one input
// channel): the 16 pixels its four outputs' 36 taps read, each loaded once.
fn fwd_reuses() -> bool {
    return REUSE && CI == 1u && !INS;
}

// The layer's output at place w of pooled pixel (b, py, px)'s window, output group og (under
// fwd_reuses, its inputs from the window's patch `pt`: pooled_x_patch).
fn pool_place(w: u32, og: u32, b: u32, py: u32, px: u32, pt: Patch) -> Acc4 {
    let oy = min(2u * py + w / 2u, HO - 1u);
    let ox = min(2u * px + w % 2u, WO - 1u);
    var acc = bias_acc(og);
    if (fwd_reuses()) {
        // A 'same' pool's clamped place sits on the row or column before: at 0 or 1 in the
        // patch.
        let at = vec2<bool>(ox > 2u * px, oy > 2u * py);
        fwd_tap_patch(0u, oy, ox, at, pt, &acc);
        fwd_tap_patch(1u, oy, ox, at, pt, &acc);
        fwd_tap_patch(2u, oy, ox, at, pt, &acc);
        fwd_tap_patch(3u, oy, ox, at, pt, &acc);
        fwd_tap_patch(4u, oy, ox, at, pt, &acc);
        fwd_tap_patch(5u, oy, ox, at, pt, &acc);
        fwd_tap_patch(6u, oy, ox, at, pt, &acc);
        fwd_tap_patch(7u, oy, ox, at, pt, &acc);
        fwd_tap_patch(8u, oy, ox, at, pt, &acc);
    } else {
        fwd_taps(0u, b, i32(oy), i32(ox), &acc);
    }
    if (p.relu != 0u) {
        let z = vec4<f32>(0.0);
        acc = Acc4(max(acc.a0, z), max(acc.a1, z), max(acc.a2, z), max(acc.a3, z));
    }
    return acc;
}

// fwd_tap with one input channel read from the window's patch: output (oy, ox) sits at
// (at.y, at.x) (0 or 1 each) in it, so tap k reads (at.y + ky, at.x + kx); scaled by 0
// outside as fwd_source's.
fn fwd_tap_patch(k: u32, oy: u32, ox: u32, at: vec2<bool>, pt: Patch, acc: ptr<function, Acc4>) {
    let ky = k / 3u;
    let kx = k % 3u;
    let keep = inside_at(i32(oy + ky) - i32(PAD), H) * inside_at(i32(ox + kx) - i32(PAD), W);
    let row0 = select(patch_at(pt, ky, kx), patch_at(pt, ky, kx + 1u), at.x);
    let row1 = select(patch_at(pt, ky + 1u, kx), patch_at(pt, ky + 1u, kx + 1u), at.x);
    fwd_chan(k * GCI, keep * select(row0, row1, at.y), acc);
}

// Place w's outputs into the running maxima, where strictly greater.
fn pool_max(best: ptr<function, Acc4>, won: ptr<function, Won>, v: Acc4, w: u32) {
    let b = *best;
    let m0 = v.a0 > b.a0;
    let m1 = v.a1 > b.a1;
    let m2 = v.a2 > b.a2;
    let m3 = v.a3 > b.a3;
    *best = Acc4(select(b.a0, v.a0, m0), select(b.a1, v.a1, m1), select(b.a2, v.a2, m2),
                 select(b.a3, v.a3, m3));
    let k = vec4<u32>(w);
    let o = *won;
    *won = Won(select(o.w0, k, m0), select(o.w1, k, m1), select(o.w2, k, m2), select(o.w3, k, m3));
}

// The winners as vec4s (the same buffer), where CO is a multiple of 4: a pooled pixel's four
// channels' winners in one store, as y4's. A pipeline uses one view or the other.
@group(0) @binding(24) var<storage, read_write> winner_out4: array<vec4<u32>>;

// Winners of output channels GROUP * og + 4j .. +3 of the pooled pixel starting at `at`.
fn store_won(at: u32, og: u32, j: u32, v: vec4<u32>) {
    if (CO % 4u == 0u) {
        let c = GROUP * og + 4u * j;
        if (c < CO) { winner_out4[(at + c) / 4u] = v; }
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let c = GROUP * og + 4u * j + l;
        if (c < CO) { winner_out[at + c] = v[l]; }
    }
}
