// batch for CPU adapters: gather of shaders/batch.wgsl, one invocation per four pixels of an
// image (one packed u32 of the resident dataset, one vec4 store), no early return (see
// cpu/pool.wgsl). The pixels per image must be a multiple of 4. gather_noisy stays in
// batch.wgsl.

struct Batch {
    n: u32, pixels: u32, offset: u32, seed: u32,
    noise: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Batch;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> clean_out: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let words = p.pixels / 4u;
    let total = p.n * words;
    let i = min(id, total - 1u);
    let r = i / words;
    let word = images[perm[p.offset + r] * words + i % words];
    let bytes = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    let v = vec4<f32>(pixel_value(bytes.x), pixel_value(bytes.y), pixel_value(bytes.z), pixel_value(bytes.w));
    if (id < total) { clean_out[i] = v; }
}
