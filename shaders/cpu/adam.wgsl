// adam for CPU adapters: the update of shaders/adam.wgsl over vec4s, no early return (see
// cpu/pool.wgsl). `len` counts elements, as in adam.wgsl, and is a multiple of 4 (the flat
// parameter buffer's is a multiple of 64). The same arithmetic per element as adam.wgsl.
struct Adam {
    len: u32, _p0: u32, _p1: u32, _p2: u32,
    alpha: f32, beta1: f32, beta2: f32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: Adam;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let len4 = p.len / 4u;
    let i = min(id, len4 - 1u);
    let gi = g[i];
    let m0 = m[i];
    let v0 = v[i];
    let mi = m0 + (gi - m0) * (1.0 - p.beta1);
    let vi = v0 + (gi * gi - v0) * (1.0 - p.beta2);
    let wi = w[i] - p.alpha * mi / (sqrt(vi) + vec4<f32>(p.eps));
    if (id < len4) {
        m[i] = mi;
        v[i] = vi;
        w[i] = wi;
    }
}
