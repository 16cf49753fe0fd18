// adam: Keras' update over one flat parameter buffer (every layer in one dispatch).
//   m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2);  w -= alpha_t * m / (sqrt(v) + eps)
// (common.wgsl's adam_update, which dense.grads_adam shares).
// alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t) comes from the host, once per step.
// step_loss_finish (`--folds finish`) is step plus one workgroup that does bce.loss_finish's
// sum (the same loop and tree, so the same bits): the loss's last pass needs no dispatch of
// its own.

struct Adam {
    len: u32,
    // bce.loss_finish's fields, for step_loss_finish.
    loss_total: u32, loss_partials: u32, loss_slot: u32,
    rate: AdamRate,
}

@group(0) @binding(0) var<uniform> p: Adam;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> loss_partials: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;

fn update(i: u32) {
    let s = adam_update(w[i], g[i], m[i], v[i], p.rate);
    m[i] = s.m;
    v[i] = s.v;
    w[i] = s.w;
}

@compute @workgroup_size(WG)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= p.len) { return; }
    update(i);
}

@compute @workgroup_size(WG)
fn step_loss_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let group = wid.y * nwg.x + wid.x;
    // The workgroup after the update's sums the loss (a uniform branch: tree_sum may wait).
    if (group == (p.len + WG - 1u) / WG) {
        var acc = 0.0;
        for (var i = lid; i < p.loss_partials; i += WG) {
            acc += loss_partials[i];
        }
        scratch[lid] = acc;
        let s = tree_sum(lid);
        if (lid == 0u) { loss[p.loss_slot] = s / f32(p.loss_total); }
        return;
    }
    let i = group * WG + lid;
    if (i >= p.len) { return; }
    update(i);
}
