// max_pool: 2x2, stride 2, either of Keras' paddings, told apart only by ho and wo:
// - 'same': out = ceil(in / 2). The missing bottom row or right column of an odd edge is
//   simply absent from the window, so it never wins.
// - 'valid': out = floor(in / 2). Every window is whole; an odd last row or column is in no
//   window: it never reaches y, and backward gives it dx = 0.
// Forward records the winner (0..3, row-major in the window; the first maximum wins ties);
// backward routes the gradient to it. Backward is a gather over inputs: no races, and every
// dx element is written.

struct Pool {
    n: u32, h: u32, w: u32, c: u32,
    ho: u32, wo: u32, total: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Pool;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> winner: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> winner_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// One invocation per output element.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    if (idx >= p.total) { return; }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let ox = pix % p.wo;
    let oy = (pix / p.wo) % p.ho;
    let b = pix / (p.wo * p.ho);
    // (2oy, 2ox) always exists: ho <= ceil(h / 2) and wo <= ceil(w / 2).
    var best = x[((b * p.h + 2u * oy) * p.w + 2u * ox) * p.c + ch];
    var arg = 0u;
    for (var k = 1u; k < 4u; k++) {
        let iy = 2u * oy + k / 2u;
        let ix = 2u * ox + k % 2u;
        if (iy < p.h && ix < p.w) {
            let v = x[((b * p.h + iy) * p.w + ix) * p.c + ch];
            if (v > best) {
                best = v;
                arg = k;
            }
        }
    }
    y[idx] = best;
    winner[idx] = arg;
}

// One invocation per input element: it receives dy of its window if it was the winner, 0 if
// it lost or (in 'valid') lies in an odd last row or column that no window covers.
@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let count = p.n * p.h * p.w * p.c;
    if (idx >= count) { return; }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let ix = pix % p.w;
    let iy = (pix / p.w) % p.h;
    let b = pix / (p.w * p.h);
    let oy = iy / 2u;
    let ox = ix / 2u;
    if (oy >= p.ho || ox >= p.wo) {
        dx[idx] = 0.0;
        return;
    }
    let o = ((b * p.ho + oy) * p.wo + ox) * p.c + ch;
    let k = (iy % 2u) * 2u + ix % 2u;
    dx[idx] = select(0.0, dy[o], winner_in[o] == k);
}
