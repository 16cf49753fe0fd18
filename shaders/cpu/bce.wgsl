// bce for CPU adapters: loss_partial and sigmoid_backward of shaders/bce.wgsl over vec4s, no
// early returns, no workgroup trees (see cpu/pool.wgsl). The element count must be a multiple
// of 4. loss_partial writes the same partials as bce.wgsl's (one per CHUNK elements, so
// bce.wgsl's loss_finish takes them as they are), each summed by one invocation in order:
// deterministic, and free of the barriers that cost lavapipe a coroutine switch each.

struct Bce {
    total: u32,      // elements (batch x pixels)
    partials: u32,   // ceil(total / CHUNK)
    slot: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Bce;
@group(0) @binding(1) var<storage, read> z: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> t: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partial_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dz: array<vec4<f32>>;

// Elements per partial: ops::bce::CHUNK (as bce.wgsl's CHUNK).
const CHUNK4: u32 = WG * 16u / 4u;
// Invocations per workgroup: one 8-wide vector, so that 49 partials spread over both threads.
const CPU_WG: u32 = 8u;

fn element_loss4(zi: vec4<f32>, ti: vec4<f32>) -> vec4<f32> {
    return max(zi, vec4<f32>(0.0)) - zi * ti + log(vec4<f32>(1.0) + exp(-abs(zi)));
}

// The overflow-free logistic of common.wgsl, branch-free: exp of a non-positive number only,
// and the same bits as sigmoid() for each lane.
fn sigmoid4(zi: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(zi));
    return select(e / (vec4<f32>(1.0) + e), vec4<f32>(1.0) / (vec4<f32>(1.0) + e),
                  zi >= vec4<f32>(0.0));
}

@compute @workgroup_size(CPU_WG)
fn loss_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = (wid.y * nwg.x + wid.x) * CPU_WG + lid;
    let group = min(id, p.partials - 1u);
    let total4 = p.total / 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < CHUNK4; k++) {
        let i = group * CHUNK4 + k;
        let ic = min(i, total4 - 1u);
        acc += select(vec4<f32>(0.0), element_loss4(z[ic], t[ic]), vec4<bool>(i < total4));
    }
    if (id < p.partials) { partial_out[group] = (acc.x + acc.y) + (acc.z + acc.w); }
}

// loss_partial and sigmoid_backward in one pass (`--folds loss`, the CPU set's `auto`): each
// vec4 of logits and targets is loaded once for both, where the two kernels loaded it twice.
// The same sums and quotients: the same bits as the two.
@compute @workgroup_size(CPU_WG)
fn loss_partial_gradient(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = (wid.y * nwg.x + wid.x) * CPU_WG + lid;
    let group = min(id, p.partials - 1u);
    let total4 = p.total / 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < CHUNK4; k++) {
        let i = group * CHUNK4 + k;
        let ic = min(i, total4 - 1u);
        let zi = z[ic];
        let ti = t[ic];
        acc += select(vec4<f32>(0.0), element_loss4(zi, ti), vec4<bool>(i < total4));
        if (i < total4 && id < p.partials) { dz[ic] = (sigmoid4(zi) - ti) / f32(p.total); }
    }
    if (id < p.partials) { partial_out[group] = (acc.x + acc.y) + (acc.z + acc.w); }
}

@compute @workgroup_size(WG)
fn sigmoid_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let total4 = p.total / 4u;
    let i = min(id, total4 - 1u);
    let v = (sigmoid4(z[i]) - t[i]) / f32(p.total);
    if (id < total4) { dz[i] = v; }
}
