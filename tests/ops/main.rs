//! Every WGSL entry point against the CPU reference, on seeded random inputs with odd shapes
//! and the conv autoencoder's real layer shapes. Outputs are poisoned with NaN first. Each
//! test body runs on every configuration (`common::each_gpu`): every adapter wgpu sees (or
//! the one `WGSL_AE_TEST_ADAPTER` names), under its own limits and under WebGPU's defaults;
//! one that does not open fails the test.
#[path = "../common/mod.rs"]
mod common;

mod activation;
mod adam;
mod batch;
mod bce;
mod conv2d;
mod dense;
mod pool;
mod stride;
mod upsample;
mod weighted;

/// A pipeline that does not build is an error naming it, for the thread that built it, even
/// while other threads build valid ones: one whose source naga rejects (while it is
/// specialised, before the device sees it), and one only the device rejects (a workgroup of
/// 4,096 invocations, over every adapter's limit: wgpu's validation, whose error scopes are
/// per thread).
#[test]
fn a_bad_pipeline_is_an_error_of_the_thread_that_built_it() {
    use wgsl_autoencoder::gpu::Module;
    let naga_rejects = Module {
        name: "bad_module_for_test",
        source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
    };
    let device_rejects = Module {
        name: "too_wide_for_test",
        source: "@compute @workgroup_size(4096) fn main() {}",
    };
    common::each_gpu(|g, name| {
        let good = wgsl_autoencoder::ops::Shader::Activation.module();
        for (bad, says) in [
            (naga_rejects, "expected to be `u32`"),
            (device_rejects, "Validation Error"),
        ] {
            std::thread::scope(|s| {
                let goods: Vec<_> = (0..3)
                    .map(|_| s.spawn(|| g.pipeline(good, "relu_forward", &[]).map(|_| ())))
                    .collect();
                let e = g.pipeline(bad, "main", &[]).unwrap_err().to_string();
                assert!(e.contains(&format!("{}::main", bad.name)), "{name}: {e}");
                assert!(e.contains(says), "{name}: {e}");
                for t in goods {
                    t.join().unwrap().unwrap();
                }
            });
        }
    });
}

/// Every configuration here is opened with `Gpu::with_workgroup_poison`: each kernel whose
/// pipeline skips zeroing its workgroup memory fills it with NaN first, so that one reading a
/// slot it never wrote fails its test. The fill must reach the kernel: `read_unwritten` reads
/// `scratch` without writing it, and every invocation of every workgroup must see a NaN.
#[test]
fn workgroup_poison_reaches_a_kernel_that_reads_unwritten_memory() {
    use common::OrFail;
    use wgsl_autoencoder::gpu::{WORKGROUP, WORKGROUP_POISON};
    common::each_gpu(|g, name| {
        let groups = 64u64;
        let out = g.tensor("unwritten", groups * WORKGROUP).or_fail(name);
        let pipeline = g
            .pipeline(WORKGROUP_POISON, "read_unwritten", &[])
            .or_fail(name);
        let bind = g.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: out.binding(),
            }],
        });
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups as u32, 1, 1);
        }
        g.queue.submit([enc.finish()]);
        g.wait().or_fail(name);
        let seen: Vec<f32> = g.read(&out).or_fail(name);
        let poisoned = seen.iter().filter(|v| v.is_nan()).count();
        assert_eq!(poisoned, seen.len(), "{name}: invocations that read a NaN");
    });
}
