//! Batch gathering, as `shaders/batch.wgsl`: pixels `u8 / 255` as `f32` (the shaders' integer
//! construction of it gives these bits exactly), images taken through
//! the epoch's permutation; the denoising variant adds `noise · N(0, 1)` and clips to [0, 1].
//!
//! The noise mirrors the shader exactly: the same PCG-style integer hash with the same
//! constants and wrapping `u32` arithmetic, keyed by `(seed, image, pixel)` so an image keeps its noisy copy every epoch, and
//! the same Box–Muller transform in `f32`. The integer part is bit-for-bit; the `f32` part
//! (`ln`, `sqrt`, `cos`) may differ from a GPU's built-ins by a few ulps.
use std::f32::consts::TAU;

/// PCG-style integer hash (O'Neill; Jarzynski & Olano 2020), as the shader's `hash`.
pub fn hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The shader's `uniform01`: the top 24 bits of the hash, centred, scaled to (0, 1].
/// (Never 0, so `ln` is finite; the largest hashes round to exactly 1 in `f32`, which gives
/// a zero Gaussian sample, harmlessly.)
pub fn uniform01(v: u32) -> f32 {
    ((hash(v) >> 8) as f32 + 0.5) / 16_777_216.0
}

/// The standard normal sample the shader draws for dataset element `key` (image x pixels +
/// pixel) under `seed`: Box–Muller on two hashes of (seed, key). `TAU` as `f32` is the shader's `6.283185307`.
pub fn gaussian(seed: u32, key: u32) -> f32 {
    let k = hash(seed ^ hash(key));
    let u1 = uniform01(k);
    let u2 = uniform01(k ^ 0x9e37_79b9);
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

fn pixel(images: &[u8], pixels: usize, perm: &[u32], offset: usize, i: usize) -> f32 {
    let image = perm[offset + i / pixels] as usize;
    f32::from(images[image * pixels + i % pixels]) / 255.0
}

/// The batch of `n` images starting at permutation entry `offset`: `[n, pixels]`, `u8 / 255`.
///
/// # Panics
/// If the permutation has fewer than `offset + n` entries or names a missing image.
pub fn gather(images: &[u8], pixels: usize, perm: &[u32], offset: usize, n: usize) -> Vec<f32> {
    (0..n * pixels)
        .map(|i| pixel(images, pixels, perm, offset, i))
        .collect()
}

/// As [`gather`], plus the noisy copy `clamp(clean + noise · N(0, 1), 0, 1)` with the
/// Gaussian of [`gaussian`]`(seed, image * pixels + pixel)`. Returns `(clean, noisy)`.
pub fn gather_noisy(
    images: &[u8],
    pixels: usize,
    perm: &[u32],
    offset: usize,
    n: usize,
    noise: f32,
    seed: u32,
) -> (Vec<f32>, Vec<f32>) {
    let clean = gather(images, pixels, perm, offset, n);
    let noisy = clean
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let key = perm[offset + i / pixels] as usize * pixels + i % pixels;
            (c + noise * gaussian(seed, key as u32)).clamp(0.0, 1.0)
        })
        .collect();
    (clean, noisy)
}
