//! Training: the run's settings, each epoch's batches and shuffle, the epoch loop
//! ([`Trainer`]), evaluation over the test split ([`Evaluator`]) and the step profile.
//!
//! Per step the host only rewrites three tiny uniforms (batch offset, loss slot, Adam's
//! alpha_t) and submits one command buffer: gather, forward, loss, backward, Adam. The loss of
//! every step lands in a GPU log, read once per epoch; the progress bar's running loss comes
//! from a copy of that log mapped every few steps without stalling the queue (`probe`).
mod evaluator;
mod probe;
pub mod profile;
mod trainer;
pub mod tune;

pub use evaluator::Evaluator;
pub use trainer::{EpochEnd, EpochStart, State, Trainer};

use crate::model::{Features, Model, ModelChoice};
use crate::shapes::AdamConfig;
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Every setting of a run (saved in `config.json` and the checkpoint).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub model: ModelChoice,
    /// The layer the encoder ends with (`--code-layer`); None: the narrowest layer output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_layer: Option<String>,
    pub epochs: usize,
    pub batch_size: u32,
    pub adam: AdamConfig,
    pub seed: u64,
    /// Use only the first N training images.
    pub train_limit: Option<usize>,
    /// Denoising: inputs + noise * N(0, 1), clipped to [0, 1]; targets stay clean.
    pub noise: f32,
}

impl TrainConfig {
    /// The model's defaults: the seed's epochs for a built-in, and Adam as the file's
    /// `compile()` set it (Keras' defaults otherwise).
    pub fn new(model: impl Into<ModelChoice>) -> Self {
        let model = model.into();
        TrainConfig {
            epochs: model.default_epochs(),
            adam: model.adam().unwrap_or_default(),
            model,
            code_layer: None,
            batch_size: 256,
            seed: 0,
            train_limit: None,
            noise: 0.0,
        }
    }

    /// The model this run trains, for images of shape `input`.
    pub fn build_model(&self, input: Features) -> Result<Model> {
        Model::build(&self.model, self.code_layer.as_deref(), input)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if !(self.adam.lr.is_finite() && self.adam.lr > 0.0) {
            return bad(format!(
                "--lr must be a positive number, not {}",
                self.adam.lr
            ));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad(format!("--noise must be >= 0, not {}", self.noise));
        }
        if self.train_limit == Some(0) {
            return bad("--train-limit must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    /// The whole epoch, validation included.
    pub seconds: f64,
    /// Training steps only.
    #[serde(default)]
    pub train_seconds: f64,
}

/// Batch sizes of an epoch over `count` items: full batches, then the partial one (Keras).
pub fn batches(count: usize, batch: u32) -> Vec<u32> {
    let b = batch as usize;
    let mut v = vec![batch; count / b];
    if !count.is_multiple_of(b) {
        v.push((count % b) as u32);
    }
    v
}

/// The distinct batch sizes of `sizes`, in order (a plan is built for each).
fn distinct(sizes: &[u32]) -> Vec<u32> {
    let mut s = sizes.to_vec();
    s.dedup();
    s
}

/// The permutation of epoch `epoch` (0-based): a function of the seed and epoch only, so a
/// resumed run shuffles exactly as an uninterrupted one.
pub fn permutation(seed: u64, epoch: usize, count: usize) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    let mut p: Vec<u32> = (0..count as u32).collect();
    p.shuffle(&mut rng);
    p
}

/// The noise seed of a split (0 training, 1 test): fixed for the run, so each image keeps its
/// noisy copy across epochs, as the Keras blog's precomputed `x_train_noisy`.
pub fn noise_seed(seed: u64, split: u64) -> u32 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX - split);
    rand::Rng::random(&mut rng)
}

/// Keras' epoch loss: the sample-weighted mean of the batch losses, summed in f64.
pub(crate) fn weighted_mean(values: &[f32], sizes: &[u32]) -> f64 {
    let total: f64 = sizes.iter().map(|&n| n as f64).sum();
    values
        .iter()
        .zip(sizes)
        .map(|(v, &n)| *v as f64 * n as f64)
        .sum::<f64>()
        / total
}
