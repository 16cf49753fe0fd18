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
