// stride for CPU adapters: the ops of shaders/stride.wgsl, one invocation per small-side
// pixel and group of 4 channels, every load and store a vec4, no early return (see
// cpu/pool.wgsl). Channels must be a multiple of 4, and for insert the big side at most twice
// the small one (so that the small pixels' 2x2 blocks cover it). `total`: small vec4s.

struct Stride {
    n: u32, h: u32, w: u32, c: u32,
    hb: u32, wb: u32, oy: u32, ox: u32,
    total: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Stride;
@group(0) @binding(1) var<storage, read> small_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> big_out: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> big_in: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> small_out: array<vec4<f32>>;

// Small vec4 `idx` as (batch, y, x, channel group).
fn small_at(idx: u32) -> vec4<u32> {
    let c4 = p.c / 4u;
    let pix = idx / c4;
    return vec4<u32>(pix / (p.w * p.h), (pix / p.w) % p.h, pix % p.w, idx % c4);
}

fn big_index(b: u32, y: u32, x: u32, ch: u32) -> u32 {
    return ((b * p.hb + y) * p.wb + x) * (p.c / 4u) + ch;
}

// Each small pixel writes its 2x2 block of the big side: its value at (2y + oy, 2x + ox),
// zeros in the other cells that exist.
@compute @workgroup_size(WG)
fn insert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let idx = min(id, p.total - 1u);
    let s = small_at(idx);
    let v = small_in[idx];
    let zero = vec4<f32>(0.0);
    if (id < p.total) {
        for (var dy = 0u; dy < 2u; dy++) {
            for (var dx = 0u; dx < 2u; dx++) {
                let y = 2u * s.y + dy;
                let x = 2u * s.z + dx;
                if (y < p.hb && x < p.wb) {
                    big_out[big_index(s.x, y, x, s.w)] = select(zero, v, dy == p.oy && dx == p.ox);
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn take(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let idx = min(id, p.total - 1u);
    let s = small_at(idx);
    let v = big_in[big_index(s.x, 2u * s.y + p.oy, 2u * s.z + p.ox, s.w)];
    if (id < p.total) { small_out[idx] = v; }
}
