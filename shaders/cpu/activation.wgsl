// activation for CPU adapters: relu_backward of shaders/activation.wgsl over vec4s, no
// early return (see cpu/pool.wgsl). The length must be a multiple of 4; `total` counts vec4s.
// On the CPU set the network masks a ReLU layer's gradient with this once (unless the pooling
// or upsampling above it fused the mask into its backward, or the convolution above it stores
// its input gradient masked: cpu/conv2d/backward_input.wgsl MASK_DX), so that the layer's backward kernels
// read the masked gradient instead of the mask at every tap.

struct Elementwise { total: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Elementwise;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // the saved forward tensor
@group(0) @binding(3) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dx: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = flat(wid, lid, nwg);
    let i = min(id, p.total - 1u);
    let v = select(vec4<f32>(0.0), dy[i], x[i] > vec4<f32>(0.0));
    if (id < p.total) { dx[i] = v; }
}
