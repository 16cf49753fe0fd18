//! What one vec4 load at a per-invocation address costs on the adapter at hand, by where it
//! comes from: a storage buffer (and there one f32, and one address for the whole workgroup),
//! a uniform buffer or a texture (and a loop with no load, the baseline); and what a vec4 store costs, to a storage buffer (and as four scalar stores) and
//! to a storage texture; a storage load that only 2 of each 8 invocations take; and, where the
//! adapter has subgroups, what handing a vec4 between invocations costs (`subgroupShuffle` at
//! a per-invocation lane, `subgroupBroadcast` of one lane). On lavapipe this sets the shape of
//! the CPU kernel set (`shaders/cpu/`): Mesa turns a storage load into a loop over the
//! vector's lanes with a guarded scalar load each, a uniform load into straight per-lane loads,
//! a texel fetch into a vectorised gather; a texel store costs several times a storage store
//! (so textures are filled by copies: `gpu::TensorTexture`).
//!
//!     cargo run --release --example lane_loads [-- ADAPTER_INDEX]
//!
//! Prints nanoseconds per invocation and load or store (best of 5 submits of 10 dispatches),
//! and the cycles that is at 3.5 GHz on 2 threads (this project's CI machine).
use std::time::Instant;
use wgpu::util::DeviceExt;

const SHADER: &str = r#"
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(3) var t: texture_2d<f32>;
const LOADS: u32 = 64u;

// A scattered vec4 index per invocation and load.
fn idx(i: u32, g: u32) -> u32 { return (g * 131u + i * 17u) & 4095u; }

@compute @workgroup_size(8)
fn no_load(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < LOADS; i++) { acc += vec4<f32>(f32(idx(i, gid.x))); }
    dst[gid.x] = acc;
}
@compute @workgroup_size(8)
fn from_storage(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < LOADS; i++) { acc += src[idx(i, gid.x)]; }
    dst[gid.x] = acc;
}
// One f32 at the same scattered places (dst1, read back): what a scalar load costs beside a
// vec4's.
@compute @workgroup_size(8)
fn from_storage_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = 0.0;
    for (var i = 0u; i < LOADS; i++) { acc += dst1[4u * idx(i, gid.x)]; }
    dst1[4u * 4096u + gid.x] = acc;
}
// Only 2 of each 8 invocations load (the rest keep a made-up value): what a load inside a
// branch that few lanes take costs.
@compute @workgroup_size(8)
fn from_storage_2of8(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < LOADS; i++) {
        var v = vec4<f32>(f32(i));
        if (lid < 2u) { v = src[idx(i, gid.x)]; }
        acc += v;
    }
    dst[gid.x] = acc;
}
// One address for the whole workgroup (from workgroup_id, which the compiler knows is uniform):
// what a load every lane shares costs.
@compute @workgroup_size(8)
fn from_storage_shared(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < LOADS; i++) { acc += src[idx(i, wid.x)]; }
    dst[gid.x] = acc;
}
@compute @workgroup_size(8)
fn from_uniform(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < LOADS; i++) { acc += u[idx(i, gid.x)]; }
    dst[gid.x] = acc;
}
@group(0) @binding(4) var out_tex: texture_storage_2d<rgba32float, write>;
@compute @workgroup_size(8)
fn to_storage(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var i = 0u; i < LOADS; i++) { dst[(gid.x & ~4095u) + idx(i, gid.x)] = vec4<f32>(f32(i)); }
}
// The same four floats as four scalar stores: what a kernel that stores channel by channel pays.
@group(0) @binding(5) var<storage, read_write> dst1: array<f32>;
@compute @workgroup_size(8)
fn to_storage_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var i = 0u; i < LOADS; i++) {
        let k = 4u * ((gid.x & ~4095u) + idx(i, gid.x));
        dst1[k] = f32(i);
        dst1[k + 1u] = f32(i);
        dst1[k + 2u] = f32(i);
        dst1[k + 3u] = f32(i);
    }
}
@compute @workgroup_size(8)
fn to_texture(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var i = 0u; i < LOADS; i++) {
        let k = idx(i, gid.x);
        textureStore(out_tex, vec2<u32>(k & 63u, k >> 6u), vec4<f32>(f32(i)));
    }
}
@compute @workgroup_size(8)
fn from_texture(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < LOADS; i++) {
        let k = idx(i, gid.x);
        acc += textureLoad(t, vec2<u32>(k & 63u, k >> 6u), 0);
    }
    dst[gid.x] = acc;
}
"#;

// Built only where the adapter has subgroups (wgpu's Features::SUBGROUP). One vec4 loaded per
// invocation, then handed around the subgroup LOADS times (the loop adds i so that no
// iteration can be folded into another).
const SUBGROUP_SHADER: &str = r#"
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
const LOADS: u32 = 64u;
@compute @workgroup_size(8)
fn shuffle(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) n: u32) {
    var acc = vec4<f32>(0.0);
    let v = src[gid.x & 4095u];
    for (var i = 0u; i < LOADS; i++) {
        acc += subgroupShuffle(v + vec4<f32>(f32(i)), (lane + i) % n);
    }
    dst[gid.x] = acc;
}
@compute @workgroup_size(8)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    let v = src[gid.x & 4095u];
    for (var i = 0u; i < LOADS; i++) { acc += subgroupBroadcast(v + vec4<f32>(f32(i)), 1u); }
    dst[gid.x] = acc;
}
"#;
const LOADS: f64 = 64.0;
const INVOCATIONS: u32 = 8 * 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let instance = wgpu::Instance::default();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let index: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("'{a}' is not an adapter index"))?,
        None => 0,
    };
    let adapter = adapters.into_iter().nth(index).ok_or(format!(
        "no adapter {index}: `wgsl-autoencoder devices` lists them"
    ))?;
    println!("{}", adapter.get_info().name);
    let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: adapter.features() & wgpu::Features::SUBGROUP,
        ..Default::default()
    }))?;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let subgroup_module = subgroups.then(|| {
        device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(SUBGROUP_SHADER.into()),
        })
    });
    let data: Vec<f32> = (0..4096 * 4).map(|i| (i % 7) as f32).collect();
    let src = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&data),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
    });
    let dst = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: INVOCATIONS as u64 * 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let texture = device.create_texture_with_data(
        &queue,
        &texture_4096(wgpu::TextureUsages::TEXTURE_BINDING),
        wgpu::util::TextureDataOrder::LayerMajor,
        bytemuck::cast_slice(&data),
    );
    let view = texture.create_view(&Default::default());
    let written = device.create_texture(&texture_4096(wgpu::TextureUsages::STORAGE_BINDING));
    let written_view = written.create_view(&Default::default());
    let entries = [
        "no_load",
        "from_storage",
        "from_storage_f32",
        "from_storage_2of8",
        "from_storage_shared",
        "from_uniform",
        "from_texture",
        "to_storage",
        "to_storage_f32",
        "to_texture",
        "shuffle",
        "broadcast",
    ];
    for entry in entries {
        let module = match entry {
            "shuffle" | "broadcast" => match &subgroup_module {
                Some(m) => m,
                None => {
                    println!("{entry:17} (no subgroups on this adapter)");
                    continue;
                }
            },
            _ => &module,
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let source = match entry {
            "from_storage"
            | "from_storage_2of8"
            | "from_storage_shared"
            | "shuffle"
            | "broadcast" => Some((0, src.as_entire_binding())),
            "from_uniform" => Some((2, src.as_entire_binding())),
            "from_texture" => Some((3, wgpu::BindingResource::TextureView(&view))),
            "to_texture" => Some((4, wgpu::BindingResource::TextureView(&written_view))),
            "to_storage_f32" | "from_storage_f32" => Some((5, dst.as_entire_binding())),
            _ => None,
        };
        // Every entry but the stores to a texture and to dst1 writes its result to dst.
        let mut entries: Vec<wgpu::BindGroupEntry> =
            (!matches!(entry, "to_texture" | "to_storage_f32" | "from_storage_f32"))
                .then(|| wgpu::BindGroupEntry {
                    binding: 1,
                    resource: dst.as_entire_binding(),
                })
                .into_iter()
                .collect();
        entries
            .extend(source.map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let mut encoder = device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                for _ in 0..10 {
                    pass.dispatch_workgroups(INVOCATIONS / 8, 1, 1);
                }
            }
            queue.submit([encoder.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely())?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        let ns = best / (10.0 * INVOCATIONS as f64 * LOADS) * 1e9;
        println!(
            "{entry:17} {ns:.2} ns per invocation and load or store (~{:.1} cycles at 3.5 GHz on 2 threads)",
            ns * 3.5 * 2.0
        );
    }
    Ok(())
}

/// A 64 x 64 rgba32float texture: 4096 vec4s, as many as the buffers' loads index.
fn texture_4096(usage: wgpu::TextureUsages) -> wgpu::TextureDescriptor<'static> {
    wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: 64,
            height: 64,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage,
        view_formats: &[],
    }
}
