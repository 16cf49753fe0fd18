// stride: the strided layers' index maps, NHWC, per axis between a small side (h, w) and a
// big one (hb, wb), the small element i at big position 2i + o (offsets oy, ox).
// insert: big = small at those positions, zeros elsewhere (the zero insertion that makes a
//   Conv2DTranspose with strides 2 a plain convolution; the backward of take).
// take:   small[i] = big[2i + o] (a Conv2D with strides 2 is its stride-1 convolution, then
//   take; the backward of insert).

struct Stride {
    n: u32, h: u32, w: u32, c: u32,   // the small side
    hb: u32, wb: u32, oy: u32, ox: u32,  // the big side and the offsets
    total: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Stride;
@group(0) @binding(1) var<storage, read> small_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> big_out: array<f32>;
@group(0) @binding(3) var<storage, read> big_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> small_out: array<f32>;

// The small index along an axis of big position v, if one lands there.
fn landed(v: u32, o: u32, size: u32) -> bool {
    return v >= o && (v - o) % 2u == 0u && (v - o) / 2u < size;
}

// `total`: big elements.
@compute @workgroup_size(WG)
fn insert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.total) { return; }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let x = pix % p.wb;
    let y = (pix / p.wb) % p.hb;
    let b = pix / (p.wb * p.hb);
    var v = 0.0;
    if (landed(y, p.oy, p.h) && landed(x, p.ox, p.w)) {
        v = small_in[((b * p.h + (y - p.oy) / 2u) * p.w + (x - p.ox) / 2u) * p.c + ch];
    }
    big_out[idx] = v;
}

// `total`: small elements.
@compute @workgroup_size(WG)
fn take(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.total) { return; }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let ix = pix % p.w;
    let iy = (pix / p.w) % p.h;
    let b = pix / (p.w * p.h);
    small_out[idx] = big_in[((b * p.hb + 2u * iy + p.oy) * p.wb + 2u * ix + p.ox) * p.c + ch];
}
