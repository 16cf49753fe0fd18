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
mod upsample;
mod weighted;

/// A pipeline that does not build is an error naming it, for the thread that built it, even
/// while other threads build valid ones (error scopes are per thread).
#[test]
fn a_bad_pipeline_is_an_error_of_the_thread_that_built_it() {
    use wgsl_autoencoder::gpu::Module;
    common::each_gpu(|g, _| {
        let bad = Module {
            name: "bad_module_for_test",
            source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
        };
        let good = wgsl_autoencoder::ops::Shader::Activation.module();
        std::thread::scope(|s| {
            let goods: Vec<_> = (0..3)
                .map(|_| s.spawn(|| g.pipeline(good, "relu_forward", &[]).map(|_| ())))
                .collect();
            let e = g.pipeline(bad, "main", &[]).unwrap_err().to_string();
            assert!(e.contains("bad_module_for_test::main"), "{e}");
            for t in goods {
                t.join().unwrap().unwrap();
            }
        });
    });
}
