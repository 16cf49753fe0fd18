// upsample for CPU adapters: the ops of shaders/upsample.wgsl (nearest x2), one invocation
// per input pixel and group of 4 channels, every load and store a vec4 (see cpu/pool.wgsl).
// Channels must be a multiple of 4. `total` is the number of input vec4s.
struct Up {
    n: u32, h: u32, w: u32, c: u32,  // input dims; the output is 2h x 2w
    total: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Up;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dx: array<vec4<f32>>;
// The upsampling's input (backward_masked): the layer below's ReLU output, its mask.
@group(0) @binding(5) var<storage, read> xin: array<vec4<f32>>;

// The output index of the top-left cell of input vec4 `idx`'s 2x2 block, and the distance
// to the cell below it.
fn block(idx: u32) -> vec2<u32> {
    let c4 = p.c / 4u;
    let ch = idx % c4;
    let pix = idx / c4;
    let ix = pix % p.w;
    let iy = (pix / p.w) % p.h;
    let b = pix / (p.w * p.h);
    let row = 2u * p.w * c4;
    return vec2<u32>(((b * 2u * p.h + 2u * iy) * 2u * p.w + 2u * ix) * c4 + ch, row);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let idx = min(id, p.total - 1u);
    let v = x[idx];
    let o = block(idx);
    let c4 = p.c / 4u;
    if (id < p.total) {
        y[o.x] = v;
        y[o.x + c4] = v;
        y[o.x + o.y] = v;
        y[o.x + o.y + c4] = v;
    }
}

// Each input sums its 2x2 block in the order of upsample.wgsl; zero where `keep` fails.
fn gather_block(id: u32, keep: vec4<bool>) {
    let idx = min(id, p.total - 1u);
    let o = block(idx);
    let c4 = p.c / 4u;
    let v = (dy[o.x] + dy[o.x + c4]) + (dy[o.x + o.y] + dy[o.x + o.y + c4]);
    if (id < p.total) { dx[idx] = select(vec4<f32>(0.0), v, keep); }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    gather_block(flat(wid, lid, nwg), vec4<bool>(true));
}

// backward with the ReLU mask of the layer below fused in (its output, this layer's input,
// > 0): the network then skips that layer's mask pass.
@compute @workgroup_size(WG)
fn backward_masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    gather_block(id, xin[min(id, p.total - 1u)] > vec4<f32>(0.0));
}
