// dense: y = x . W + b (W is [in, out], as Keras stores it), ReLU optionally fused.
// Backward for the input, weight and bias. Reductions over the batch are sequential per
// invocation (a fixed order: deterministic). grad_out applies the ReLU mask as in conv2d.

struct Dense {
    n: u32, fin: u32, fout: u32, relu: u32,
}

@group(0) @binding(0) var<uniform> p: Dense;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> act: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> dw: array<f32>;
@group(0) @binding(9) var<storage, read_write> db: array<f32>;

fn flat(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

fn grad_out(i: u32) -> f32 {
    let g = dy[i];
    if (p.relu != 0u && act[i] <= 0.0) {
        return 0.0;
    }
    return g;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.n * p.fout) { return; }
    let o = idx % p.fout;
    let r = idx / p.fout;
    var acc = bias[o];
    for (var i = 0u; i < p.fin; i++) {
        acc += x[r * p.fin + i] * wt[i * p.fout + o];
    }
    if (p.relu != 0u) { acc = max(acc, 0.0); }
    y[idx] = acc;
}

@compute @workgroup_size(256)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.n * p.fin) { return; }
    let i = idx % p.fin;
    let r = idx / p.fin;
    var acc = 0.0;
    for (var o = 0u; o < p.fout; o++) {
        acc += grad_out(r * p.fout + o) * wt[i * p.fout + o];
    }
    dx[idx] = acc;
}

@compute @workgroup_size(256)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.fin * p.fout) { return; }
    let o = idx % p.fout;
    let i = idx / p.fout;
    var acc = 0.0;
    for (var r = 0u; r < p.n; r++) {
        acc += x[r * p.fin + i] * grad_out(r * p.fout + o);
    }
    dw[idx] = acc;
}

@compute @workgroup_size(256)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat(wid, lid, nwg);
    if (o >= p.fout) { return; }
    var acc = 0.0;
    for (var r = 0u; r < p.n; r++) {
        acc += grad_out(r * p.fout + o);
    }
    db[o] = acc;
}
