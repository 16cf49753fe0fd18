// batch for CPU adapters: gather of shaders/batch.wgsl, one invocation per four pixels of an
// image (one packed u32 of the resident dataset, one vec4 store), or per sixteen where an
// image's pixels are a multiple of 16 (gather16: one vec4<u32> load and one permutation load
// for four vec4 stores, half the guarded per-lane loads and stores per pixel), no early return
// (see cpu/pool.wgsl). The pixels per image must be a multiple of 4. gather_noisy stays in
// batch.wgsl.

struct Batch {
    n: u32, pixels: u32, offset: u32, seed: u32,
    noise: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Batch;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> clean_out: array<vec4<f32>>;
// The same buffer as images, four words (16 pixels) at a time.
@group(0) @binding(4) var<storage, read> images4: array<vec4<u32>>;

// The four pixels of a packed word, / 255.
fn word_pixels(word: u32) -> vec4<f32> {
    let bytes = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    return vec4<f32>(pixel_value(bytes.x), pixel_value(bytes.y), pixel_value(bytes.z), pixel_value(bytes.w));
}

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let words = p.pixels / 4u;
    let total = p.n * words;
    let i = min(id, total - 1u);
    let r = i / words;
    let v = word_pixels(images[perm[p.offset + r] * words + i % words]);
    if (id < total) { clean_out[i] = v; }
}

@compute @workgroup_size(WG)
fn gather16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let quads = p.pixels / 16u;
    let total = p.n * quads;
    let i = min(id, total - 1u);
    let r = i / quads;
    let q = images4[perm[p.offset + r] * quads + i % quads];
    let v0 = word_pixels(q.x);
    let v1 = word_pixels(q.y);
    let v2 = word_pixels(q.z);
    let v3 = word_pixels(q.w);
    if (id < total) {
        clean_out[4u * i] = v0;
        clean_out[4u * i + 1u] = v1;
        clean_out[4u * i + 2u] = v2;
        clean_out[4u * i + 3u] = v3;
    }
}
