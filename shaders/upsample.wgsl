// upsample: nearest-neighbour x2 (Keras UpSampling2D(2)), NHWC.
// Forward: out[y][x] = in[y/2][x/2]. Backward: each input sums its 2x2 block, in a fixed order.

struct Up {
    n: u32, h: u32, w: u32, c: u32,  // input dims; the output is 2h x 2w
    total: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Up;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.total) { return; }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let ox = pix % (2u * p.w);
    let oy = (pix / (2u * p.w)) % (2u * p.h);
    let b = pix / (4u * p.w * p.h);
    y[idx] = x[((b * p.h + oy / 2u) * p.w + ox / 2u) * p.c + ch];
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let count = p.n * p.h * p.w * p.c;
    if (idx >= count) { return; }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let ix = pix % p.w;
    let iy = (pix / p.w) % p.h;
    let b = pix / (p.w * p.h);
    let row = 2u * p.w * p.c;
    let base = ((b * 2u * p.h + 2u * iy) * 2u * p.w + 2u * ix) * p.c + ch;
    dx[idx] = (dy[base] + dy[base + p.c]) + (dy[base + row] + dy[base + row + p.c]);
}
