// adam: Keras' update over one flat parameter buffer (every layer in one dispatch).
//   m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2);  w -= alpha_t * m / (sqrt(v) + eps)
// alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t) comes from the host, once per step.

struct Adam {
    len: u32, _p0: u32, _p1: u32, _p2: u32,
    alpha: f32, beta1: f32, beta2: f32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: Adam;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= p.len) { return; }
    let gi = g[i];
    let mi = m[i] + (gi - m[i]) * (1.0 - p.beta1);
    let vi = v[i] + (gi * gi - v[i]) * (1.0 - p.beta2);
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] - p.alpha * mi / (sqrt(vi) + p.eps);
}
