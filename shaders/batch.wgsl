// batch: gathers a training batch on the GPU from the resident dataset (u8 pixels packed four
// to a u32) through the epoch's permutation; pixels become f32 in [0, 1] (u8 / 255).
// gather_noisy adds the Keras blog's denoising noise, x + noise * N(0, 1) clipped to [0, 1],
// from a counter-based hash of (seed, image, pixel): each image keeps the same noisy copy every
// epoch, as the blog's precomputed x_train_noisy.

struct Batch {
    n: u32, pixels: u32, offset: u32, seed: u32,
    noise: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Batch;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> clean_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> noisy: array<f32>;

fn pixel(i: u32) -> f32 {
    let r = i / p.pixels;
    let byte = perm[p.offset + r] * p.pixels + i % p.pixels;
    return unpack_pixel(images[byte / 4u], byte);
}

// PCG-style integer hash (O'Neill / Jarzynski & Olano 2020).
fn hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn uniform01(v: u32) -> f32 {
    return (f32(hash(v) >> 8u) + 0.5) / 16777216.0;  // (0, 1]: never 0, so log(u) is finite
}

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= p.n * p.pixels) { return; }
    clean_out[i] = pixel(i);
}

@compute @workgroup_size(WG)
fn gather_noisy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= p.n * p.pixels) { return; }
    let clean = pixel(i);
    clean_out[i] = clean;
    // Box-Muller on two independent hashes of (seed, element).
    let key = perm[p.offset + i / p.pixels] * p.pixels + i % p.pixels;
    let k = hash(p.seed ^ hash(key));
    let u1 = uniform01(k);
    let u2 = uniform01(k ^ 0x9e3779b9u);
    let gauss = sqrt(-2.0 * log(u1)) * cos(6.283185307 * u2);
    noisy[i] = clamp(clean + p.noise * gauss, 0.0, 1.0);
}
