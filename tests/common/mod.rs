//! Shared test helpers: one GPU per test binary, seeded random data, tolerant comparison.
#![allow(dead_code)]
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;
use wgsl_autoencoder::gpu::{AdapterChoice, Gpu};

/// The adapter under test: `WGSL_AE_TEST_ADAPTER` (default `auto`; CI has only lavapipe).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let choice: AdapterChoice = std::env::var("WGSL_AE_TEST_ADAPTER")
            .unwrap_or_else(|_| "auto".into())
            .parse()
            .expect("adapter choice");
        let gpu = Gpu::new(&choice).expect("a GPU adapter (install mesa-vulkan-drivers)");
        eprintln!("testing on {}", gpu.name());
        gpu
    })
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Fails on any NaN (an element the kernel left unwritten keeps its NaN poison) or on
/// `max |got - want| > tol * max(1, max |want|)`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs() as f64));
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite(),
            "{what}: element {i} is {g} (want {w}): unwritten or overflow"
        );
        let e = (*g as f64 - *w as f64).abs();
        if e > worst.0 {
            worst = (e, i);
        }
    }
    let (e, i) = worst;
    assert!(
        e <= tol * scale,
        "{what}: element {i} is {} but the reference says {} (error {e:.3e} > {tol:e} x scale {scale:.3e})",
        got[i],
        want[i]
    );
}
