// max_pool for CPU adapters: the ops of shaders/pool.wgsl (2x2, stride 2, Keras 'same' or
// 'valid', told apart only by ho and wo), one invocation per output pixel and group of 4
// channels, so every load and store moves a vec4 (lavapipe pays a guarded load per lane for
// each load instruction, whatever its width).
// Channels must be a multiple of 4. No invocation returns early: indices are clamped and
// only the stores are guarded.
struct Pool {
    n: u32, h: u32, w: u32, c: u32,
    ho: u32, wo: u32, total: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Pool;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> winner: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> winner_in: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> dx: array<vec4<f32>>;
// The pooled output (backward_masked): the layer below's ReLU mask at each window's winner.
@group(0) @binding(7) var<storage, read> pooled: array<vec4<f32>>;

// `total` is the number of output vec4s. Ties go to the first maximum, as in pool.wgsl.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let idx = min(id, p.total - 1u);
    let c4 = p.c / 4u;
    let ch = idx % c4;
    let pix = idx / c4;
    let ox = pix % p.wo;
    let oy = (pix / p.wo) % p.ho;
    let b = pix / (p.wo * p.ho);
    let iy = 2u * oy;
    let ix = 2u * ox;
    // 'same': a window cell past an odd edge reads its row's or column's first cell again: it
    // can then never win (ties go to the earlier cell). 'valid' windows are always whole.
    let iy1 = min(iy + 1u, p.h - 1u);
    let ix1 = min(ix + 1u, p.w - 1u);
    let v0 = x[((b * p.h + iy) * p.w + ix) * c4 + ch];
    let v1 = x[((b * p.h + iy) * p.w + ix1) * c4 + ch];
    let v2 = x[((b * p.h + iy1) * p.w + ix) * c4 + ch];
    let v3 = x[((b * p.h + iy1) * p.w + ix1) * c4 + ch];
    var best = v0;
    var arg = vec4<u32>(0u);
    let w1 = v1 > best;
    best = select(best, v1, w1);
    arg = select(arg, vec4<u32>(1u), w1);
    let w2 = v2 > best;
    best = select(best, v2, w2);
    arg = select(arg, vec4<u32>(2u), w2);
    let w3 = v3 > best;
    best = select(best, v3, w3);
    arg = select(arg, vec4<u32>(3u), w3);
    if (id < p.total) {
        y[idx] = best;
        winner[idx] = arg;
    }
}

// One invocation per output pixel and channel group: its gradient goes to the window's
// winner where `keep` holds, zeros to the other cells that exist. `total` is the number of
// output vec4s. In 'valid' an odd last row/column lies in no window; the invocations of the
// last window row/column write its zeros, so every dx element is written. (In 'same' the
// windows cover the input and those stores never happen.)
fn route(id: u32, keep: vec4<bool>) {
    let idx = min(id, p.total - 1u);
    let c4 = p.c / 4u;
    let ch = idx % c4;
    let pix = idx / c4;
    let ox = pix % p.wo;
    let oy = (pix / p.wo) % p.ho;
    let b = pix / (p.wo * p.ho);
    let zero = vec4<f32>(0.0);
    let g = select(zero, dy[idx], keep);
    let k = winner_in[idx];
    let iy = 2u * oy;
    let ix = 2u * ox;
    if (id < p.total) {
        dx[((b * p.h + iy) * p.w + ix) * c4 + ch] = select(zero, g, k == vec4<u32>(0u));
        if (ix + 1u < p.w) {
            dx[((b * p.h + iy) * p.w + ix + 1u) * c4 + ch] = select(zero, g, k == vec4<u32>(1u));
        }
        if (iy + 1u < p.h) {
            dx[((b * p.h + iy + 1u) * p.w + ix) * c4 + ch] = select(zero, g, k == vec4<u32>(2u));
            if (ix + 1u < p.w) {
                dx[((b * p.h + iy + 1u) * p.w + ix + 1u) * c4 + ch] =
                    select(zero, g, k == vec4<u32>(3u));
            }
        }
        // 'valid' only: the input column right of the last window column, and the row below
        // the last window row (with their corner), belong to no window.
        let spare_col = ox + 1u == p.wo && ix + 2u < p.w;
        let spare_row = oy + 1u == p.ho && iy + 2u < p.h;
        if (spare_col) {
            dx[((b * p.h + iy) * p.w + ix + 2u) * c4 + ch] = zero;
            if (iy + 1u < p.h) {
                dx[((b * p.h + iy + 1u) * p.w + ix + 2u) * c4 + ch] = zero;
            }
        }
        if (spare_row) {
            dx[((b * p.h + iy + 2u) * p.w + ix) * c4 + ch] = zero;
            if (ix + 1u < p.w) {
                dx[((b * p.h + iy + 2u) * p.w + ix + 1u) * c4 + ch] = zero;
            }
            if (spare_col) {
                dx[((b * p.h + iy + 2u) * p.w + ix + 2u) * c4 + ch] = zero;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    route(flat(wid, lid, nwg), vec4<bool>(true));
}

// backward with the ReLU mask of the layer below fused in: the winner's input is the pooled
// value, so the mask is pooled > 0 (the network then skips that layer's mask pass).
@compute @workgroup_size(WG)
fn backward_masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    route(id, pooled[min(id, p.total - 1u)] > vec4<f32>(0.0));
}
