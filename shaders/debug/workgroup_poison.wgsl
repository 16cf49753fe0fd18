// Test support, not an op (src/gpu/poison.rs): the check that the tests' workgroup poison
// reaches a kernel. It reads `scratch` (common.wgsl) without writing it, so under the poison
// every value it reads is NaN; without it, whatever the memory held.

@group(0) @binding(0) var<storage, read_write> seen: array<u32>;

// Invocation i of workgroup w writes scratch[i] at seen[w * WG + i].
@compute @workgroup_size(WG)
fn read_unwritten(@builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>) {
    poison_scratch(lid, WG);
    seen[wid.x * WG + lid] = bitcast<u32>(scratch[lid]);
}
