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

// Pixel `byte` of the resident dataset (u8, four to a u32 word) as f32 in [0, 1].
fn unpack_pixel(word: u32, byte: u32) -> f32 {
    return pixel_value((word >> (8u * (byte % 4u))) & 255u);
}

// u8 / 255 correctly rounded, built from integer operations rather than a division: WGSL lets
// a float division be 2.5 ulp off, and compilers turn one by a constant into a multiply by
// its reciprocal (lavapipe's and NVIDIA's results were each off by one ulp for some bytes),
// or rearrange any float formula for it; integers are exact on every driver, so every
// shader gives the same bits, the CPU reference's. b << (31 - l), l = floor(log2 b), lies in
// [2^31, 2^32); divided by 255 and rounded to nearest (no ties: 255 is odd) it is the 24-bit
// significand m of b / 255, whose exponent is l - 8, so the float's bits are
// ((l - 8 + 127 - 1) << 23) + m (m's leading bit adds the 1 back; for b = 255, m = 2^24
// carries into the exponent: 1.0). batch.gather, cpu/batch.gather and dense.rows_gather read
// pixels through it; tests/ops/batch.rs checks all 256 values against the reference.
fn pixel_value(b: u32) -> f32 {
    if (b == 0u) { return 0.0; }
    let l = firstLeadingBit(b);
    let n = b << (31u - l);
    let m = n / 255u + select(0u, 1u, 2u * (n % 255u) > 255u);
    return bitcast<f32>(((l + 118u) << 23u) + m);
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

// Adam's settings for one step (ops::adam::Rate): alpha_t = lr * sqrt(1 - beta2^t) /
// (1 - beta1^t) from the host, the moments' decay rates and epsilon.
struct AdamRate { alpha: f32, beta1: f32, beta2: f32, eps: f32 }

// Keras' Adam for one parameter: w, m and v after a step with gradient g. adam.step,
// dense.grads_adam and conv2d.backward_weight_reduce_adam all update through it, so they give
// the same bits.
struct AdamState { w: f32, m: f32, v: f32 }

fn adam_update(w: f32, g: f32, m: f32, v: f32, r: AdamRate) -> AdamState {
    let mi = m + (g - m) * (1.0 - r.beta1);
    let vi = v + (g * g - v) * (1.0 - r.beta2);
    return AdamState(w - r.alpha * mi / (sqrt(vi) + r.eps), mi, vi);
}

// One value per invocation of a WG-wide workgroup, for tree_sum.
var<workgroup> scratch: array<f32, WG>;

// Tests only (Gpu::with_workgroup_poison): the entry points whose pipelines skip zeroing their
// workgroup memory (WRITES_BEFORE_READING in src/gpu/pipeline.rs) first fill each workgroup
// array they use with NaN, `poison_<array>(lid, invocations)`, so that a read of a slot the
// kernel never wrote shows in its results on every adapter. Off, it is a branch on a
// constant, which a compiler can drop.
override POISON_WORKGROUP: bool = false;

// A NaN (all ones), made at run time: a constant NaN is a shader-creation error.
fn poison_bits(lid: u32) -> u32 {
    return 0xffffffffu | lid;
}

fn poison_scratch(lid: u32, invocations: u32) {
    if (POISON_WORKGROUP) {
        for (var i = lid; i < WG; i += invocations) {
            scratch[i] = bitcast<f32>(poison_bits(lid));
        }
        workgroupBarrier();
    }
}

// Sums `scratch` in a fixed tree: deterministic, no atomics. Every invocation must call it.
fn tree_sum(lid: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) { scratch[lid] += scratch[lid + s]; }
    }
    workgroupBarrier();
    return scratch[0];
}
