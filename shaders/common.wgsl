// common: what every kernel file shares. Each file is compiled with this one in front of it
// (the `with_common!` macro in src/ops/mod.rs), so a helper is written once; tests/shaders.rs
// checks the constants below against the Rust side's.

// Invocations per workgroup of the one-element-per-invocation kernels: gpu::WORKGROUP.
const WG: u32 = 256u;

// The flat index of an invocation in a grid of WG-wide workgroups folded into x and y
// (Gpu::grid folds past the per-dimension limit).
fn flat(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// Pixel `byte` of the resident dataset (u8, four to a u32 word) as f32 in [0, 1]: u8 / 255.
// batch.gather and dense.rows_gather both read pixels through it, so both give the same bits.
fn unpack_pixel(word: u32, byte: u32) -> f32 {
    return f32((word >> (8u * (byte % 4u))) & 255u) / 255.0;
}

// Overflow-free logistic: exp of a non-positive number only.
fn sigmoid(z: f32) -> f32 {
    if (z >= 0.0) {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}

// Binary cross-entropy of one logit against its target (bce.wgsl; dense.grads sums it too).
fn element_loss(zi: f32, ti: f32) -> f32 {
    return max(zi, 0.0) - zi * ti + log(1.0 + exp(-abs(zi)));
}

// One value per invocation of a WG-wide workgroup, for tree_sum.
var<workgroup> scratch: array<f32, WG>;

// Sums `scratch` in a fixed tree: deterministic, no atomics. Every invocation must call it.
fn tree_sum(lid: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) { scratch[lid] += scratch[lid + s]; }
    }
    workgroupBarrier();
    return scratch[0];
}
