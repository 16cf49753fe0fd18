//! Every WGSL entry point against the CPU reference, on seeded random inputs with odd shapes
//! and the conv autoencoder's real layer shapes. Outputs are poisoned with NaN first.
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
