// bce: binary cross-entropy from logits, as Keras computes it after a sigmoid output:
//   l(z, t) = max(z, 0) - z * t + log(1 + exp(-|z|)),  loss = mean over every element.
// loss_partial: each workgroup sums a fixed chunk; loss_finish: one workgroup sums the partials
// and writes the mean into loss[slot]. Both are fixed trees: the same bits on every run.
// sigmoid_backward: the gradient of the mean loss w.r.t. the logits, (sigmoid(z) - t) / count.
// loss_partial_gradient: loss_partial that also writes sigmoid_backward's dz for the elements
// it visits (the same expression, so the same bits): one pass and one dispatch fewer.

struct Bce {
    total: u32,      // elements (batch x pixels)
    partials: u32,   // workgroups of loss_partial = ceil(total / CHUNK)
    slot: u32,       // where loss_finish writes
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Bce;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial_out: array<f32>;
@group(0) @binding(4) var<storage, read> partial_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> dz: array<f32>;

// Elements one loss_partial workgroup sums: ops::bce::CHUNK.
const PER_THREAD: u32 = 16u;
const CHUNK: u32 = WG * PER_THREAD;

// element_loss: common.wgsl (dense.grads sums the loss too).

@compute @workgroup_size(WG)
fn loss_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let group = wid.y * nwg.x + wid.x;
    if (group >= p.partials) { return; }
    var acc = 0.0;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = group * CHUNK + k * WG + lid;
        if (i < p.total) { acc += element_loss(z[i], t[i]); }
    }
    scratch[lid] = acc;
    let s = tree_sum(lid);
    if (lid == 0u) { partial_out[group] = s; }
}

@compute @workgroup_size(WG)
fn loss_partial_gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    poison_scratch(lid, WG);
    let group = wid.y * nwg.x + wid.x;
    if (group >= p.partials) { return; }
    var acc = 0.0;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = group * CHUNK + k * WG + lid;
        if (i < p.total) {
            let zi = z[i];
            let ti = t[i];
            acc += element_loss(zi, ti);
            dz[i] = (sigmoid(zi) - ti) / f32(p.total);
        }
    }
    scratch[lid] = acc;
    let s = tree_sum(lid);
    if (lid == 0u) { partial_out[group] = s; }
}

@compute @workgroup_size(WG)
fn loss_finish(@builtin(local_invocation_index) lid: u32) {
    poison_scratch(lid, WG);
    var acc = 0.0;
    for (var i = lid; i < p.partials; i += WG) {
        acc += partial_in[i];
    }
    scratch[lid] = acc;
    let s = tree_sum(lid);
    if (lid == 0u) { loss[p.slot] = s / f32(p.total); }
}

// loss_finish_steps (`--folds adam`): loss_finish for every step of an execution at once,
// after its last step. Workgroup r finishes region r of partial_out (p.partials floats
// apart), which dense.grads_adam filled: a header (the loss log's slot + 1, the partials'
// count, the elements as f32), then the partials. The same loop, tree and division as
// loss_finish, so the same bits. Lane 0 then clears the slot: a region no step of the next
// execution fills is skipped there (a shorter execution, a batch that does not fold).
const STEP_HEADER: u32 = 3u;

@compute @workgroup_size(WG)
fn loss_finish_steps(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    poison_scratch(lid, WG);
    let base = wid.x * p.partials;
    // Bounded by the region, whatever its header holds.
    let count = min(u32(partial_out[base + 1u]), p.partials - STEP_HEADER);
    var acc = 0.0;
    for (var i = lid; i < count; i += WG) {
        acc += partial_out[base + STEP_HEADER + i];
    }
    scratch[lid] = acc;
    let s = tree_sum(lid);
    if (lid == 0u) {
        let slot = partial_out[base];
        if (slot > 0.0) {
            loss[u32(slot) - 1u] = s / partial_out[base + 2u];
            partial_out[base] = 0.0;
        }
    }
}

@compute @workgroup_size(WG)
fn sigmoid_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= p.total) { return; }
    dz[i] = (sigmoid(z[i]) - t[i]) / f32(p.total);
}
