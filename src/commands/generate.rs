//! `decode` beyond a codes file: the decoder walking between two test images' codes
//! (`--interpolate A,B`), and drawing random codes from a Gaussian fitted to the training
//! split's codes (`--sample N`).
use super::{data_for, inference, load_checkpoint};
use crate::gpu::DeviceChoice;
use crate::{report, Error, Result};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// Where `decode` takes its codes from.
#[derive(Clone, Debug)]
pub enum DecodeFrom {
    /// A .npy file as `encode` writes it (at most `count` codes); needs no dataset.
    Codes { path: PathBuf, count: usize },
    /// Test images `a` and `b`'s codes and `steps - 2` evenly spaced codes between them.
    Interpolate { a: usize, b: usize, steps: usize },
    /// `count` codes drawn from a Gaussian per code dimension, fitted to the training split's
    /// codes, seeded.
    Sample { count: usize, seed: u64 },
}

/// Digits per row of a sample grid.
const SAMPLE_COLS: usize = 10;
/// At most this many samples (a 1000-row grid).
pub const MAX_SAMPLES: usize = 10_000;

/// Decodes codes from `from` into a PNG at `out` (the dataset in `data_dir` is read by
/// `Interpolate` and `Sample` only) and returns how many digits it holds.
pub fn decode_from(
    adapter: &DeviceChoice,
    ckpt: &Path,
    from: &DecodeFrom,
    data_dir: &Path,
    out: &Path,
) -> Result<usize> {
    match from {
        DecodeFrom::Codes { path, count } => super::decode(adapter, ckpt, path, out, *count),
        &DecodeFrom::Interpolate { a, b, steps } => {
            interpolate(adapter, ckpt, data_dir, (a, b), steps, out)
        }
        &DecodeFrom::Sample { count, seed } => sample(adapter, ckpt, data_dir, count, seed, out),
    }
}

/// `A,B` (two test-image indices) as the pair `(A, B)`.
pub fn parse_index_pair(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("expected two test-image indices as A,B (e.g. 0,1), got `{s}`");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let index = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
    Ok((index(a)?, index(b)?))
}

/// Test images `a` and `b`'s codes, interpolated linearly in `steps` steps (both ends
/// included), decoded into one row of `steps` digits.
pub fn interpolate(
    adapter: &DeviceChoice,
    ckpt: &Path,
    data_dir: &Path,
    (a, b): (usize, usize),
    steps: usize,
    out: &Path,
) -> Result<usize> {
    if !(2..=100).contains(&steps) {
        return Err(Error::Config(format!(
            "--steps {steps}: the strip holds both ends, so 2 to 100 steps"
        )));
    }
    let ck = load_checkpoint(ckpt)?;
    let data = data_for(&ck, ckpt, data_dir)?;
    let test = &data.test.images;
    if let Some(i) = [a, b].into_iter().find(|&i| i >= test.count) {
        return Err(Error::Config(format!(
            "--interpolate {a},{b}: there is no test image {i}; the test split of {} holds {} \
             images, indices 0 to {}",
            data_dir.display(),
            test.count,
            test.count.saturating_sub(1)
        )));
    }
    let gpu = super::open_for_inference(adapter)?;
    let inference = inference(&gpu, &ck)?;
    let mut ends = test.values(a..a + 1);
    ends.extend(test.values(b..b + 1));
    let codes = inference.encode(&gpu, &ends)?;
    let (ca, cb) = codes.split_at(codes.len() / 2);
    let path: Vec<f32> = (0..steps)
        .flat_map(|k| {
            // (1 - t) a + t b: exactly a at t = 0 and exactly b at t = 1.
            let t = k as f32 / (steps - 1) as f32;
            ca.iter().zip(cb).map(move |(x, y)| (1.0 - t) * x + t * y)
        })
        .collect();
    let images = inference.decode(&gpu, &path)?;
    let (h, w) = (ck.input.h as usize, ck.input.w as usize);
    report::grid_png(out, &images, steps, h, w, steps)?;
    Ok(steps)
}

/// Per code dimension: mean, standard deviation, minimum and maximum over `codes`.
fn fit(codes: &[f32], dim: usize) -> Vec<[f64; 4]> {
    let rows = (codes.len() / dim).max(1) as f64;
    (0..dim)
        .map(|j| {
            let col = || codes.iter().skip(j).step_by(dim).map(|&v| v as f64);
            let mean = col().sum::<f64>() / rows;
            let var = col().map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows;
            let lo = col().fold(f64::INFINITY, f64::min);
            let hi = col().fold(f64::NEG_INFINITY, f64::max);
            [mean, var.sqrt(), lo, hi]
        })
        .collect()
}

/// `count` codes drawn from a Gaussian per code dimension (the mean and standard deviation
/// of the training split's codes; Box-Muller on a ChaCha8 stream seeded with `seed`), each
/// value clipped to the range the encoder produced on the training split (a ReLU code is
/// never negative), decoded into a grid of ten digits per row.
pub fn sample(
    adapter: &DeviceChoice,
    ckpt: &Path,
    data_dir: &Path,
    count: usize,
    seed: u64,
    out: &Path,
) -> Result<usize> {
    if !(1..=MAX_SAMPLES).contains(&count) {
        return Err(Error::Config(format!(
            "--sample {count}: draw 1 to {MAX_SAMPLES} codes"
        )));
    }
    let ck = load_checkpoint(ckpt)?;
    let data = data_for(&ck, ckpt, data_dir)?;
    let train = &data.train.images;
    let gpu = super::open_for_inference(adapter)?;
    let inference = inference(&gpu, &ck)?;
    let dim = inference.net.model.code().len() as usize;
    let codes = inference.encode(&gpu, &train.values(0..train.count))?;
    let stats = fit(&codes, dim);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut normal = || {
        // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
        let (u, v) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let drawn: Vec<f32> = (0..count * dim)
        .map(|i| {
            let [mean, sd, lo, hi] = stats[i % dim];
            let v = mean + sd * normal();
            (if lo <= hi { v.clamp(lo, hi) } else { v }) as f32
        })
        .collect();
    let images = inference.decode(&gpu, &drawn)?;
    let (h, w) = (ck.input.h as usize, ck.input.w as usize);
    report::grid_png(out, &images, count, h, w, SAMPLE_COLS)?;
    Ok(count)
}
