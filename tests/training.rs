//! Whole training steps on the GPU against the CPU reference (DESIGN.md §4.3), a short real run
//! (§4.4), resuming and determinism (§3).
//!
//! Tolerances, and why:
//! - Gradients (GPU `grads` buffer vs `reference::model::gradients`): per tensor,
//!   max |gpu − ref| ≤ `TOL_GRAD` · max |ref|. Both see the same f32 inputs; the GPU sums in
//!   f32 in a tree order, the reference in f64 and rounds once per layer, so the difference is
//!   f32 rounding carried through the layers.
//! - Adam's moments: m = (1−β1)·g on the first step, so the same relative tolerance; v ∝ g²,
//!   twice it.
//! - GPU Adam in the training step vs `reference::adam::step` fed with the *GPU's own*
//!   gradient: a few ulps (the update is elementwise; only `sqrt` and the division may be
//!   rounded differently).
//! - Weights after one step vs the all-reference step: each weight moves by
//!   u(g) = lr·g/(|g| + ε′), ε′ = ε/√(1−β2) ≈ 3.2e-6, i.e. ≈ lr·sign(g) unless g is tiny. A
//!   gradient error δ moves it by at most lr·ε′·δ/(|g|−δ+ε′)², which is negligible for
//!   |g| ≫ ε′ but reaches lr where g ≈ 0 (sign noise: any sign is right for a zero gradient).
//!   So each weight is held to that propagated bound (δ from the gradient tolerance) plus
//!   `TOL_W` = 1e-6 for rounding, with the bound capped at 2·lr; the test asserts that the
//!   bound is itself ≤ `TOL_W` for at least 3/4 of the weights with a non-zero gradient, so a
//!   wrong update (an error of order lr) cannot hide. A weight whose gradient is exactly 0 in
//!   the reference (a pixel that is 0 in every image of the batch, a dead ReLU unit) must be
//!   bitwise unchanged. Adam itself is checked on every element by the previous point.
//! - Several steps: gradient of the last step, m and v relative as above but 10× looser
//!   (step 1's sign noise on near-zero gradients moves a few weights by up to lr, which feeds
//!   into later gradients); weights to an absolute 1e-5 (100× under lr, so a wrong or missing
//!   update shows) where every step's reference gradient is exactly 0 or clear of it
//!   (|g| > 1e-3·max |g| of its tensor), elsewhere within the 2·lr per step an update can move
//!   a weight at all.
//! - Losses: 1e-5 relative (f32 logits, loss sums in f32 trees on the GPU vs f64).
//! - One conv step at Keras' batch size, 256 (`TOL_GRAD_256`): a weight's gradient sums
//!   K = 256·28·28 = 200,704 products in the 28x28 layers. What matters for f32 rounding is
//!   not K but the depth d of the chain of additions a product goes through, since the
//!   classical bound is |error| ≤ d·u·Σ|terms| (u = 2⁻²⁴): the GPU sums 16 products in order
//!   (a chunk), then a reduce invocation adds ⌈chunks/256⌉ partials in order, then a tree of
//!   8 levels: d = 16 + 49 + 8 = 73 at batch 256 (12,544 chunks), d = 16 + 1 + 8 = 25 at
//!   batch 3. The error relative to max |ref| then scales at most like d (worst case, all
//!   roundings one way) and typically like √d, i.e. ×2.9 or ×1.7 over batch 3, where the
//!   measured error is ≈ 2e-7: ≲ 6e-7 expected at batch 256 (measured: 2.1e-7 on lavapipe).
//!   From above, the tolerance must stay under what one lost or doubled chunk does: 16 of
//!   200,704 products, ≈ 8e-5 of a gradient whose products mostly agree in sign (a bias).
//!   `TOL_GRAD_256` = 1e-5 sits between (≥ 15× over the rounding, 8× under a lost chunk),
//!   so it is the batch-3 tolerance; the weights' propagated bounds follow from it as above.
//! - With `--noise`, the reference draws the same noise (`reference::batch::gather_noisy`,
//!   the run's noise seeds); only the f32 `ln`, `sqrt` and `cos` of Box–Muller may differ
//!   (`tests/ops/batch.rs` bounds a noisy pixel's difference by 1e-5). Same tolerances: on
//!   lavapipe the noisy step's gradient error (2.1e-7) is the clean step's, so the noise adds
//!   nothing measurable. (A pixel error δ moves a first-layer gradient Σ x·dy by at most
//!   δ·Σ|dy|, and by ≈ δ·√K·|dy| for independent signs; a GPU whose `ln`/`cos` used the
//!   whole 1e-5 could need a looser gradient tolerance here, and should say so.)
#[path = "common/mod.rs"]
mod common;

use common::{device_choice, gpu, gpu_with, rng};
use rand::Rng;
use std::time::Instant;
use wgsl_autoencoder::checkpoint::{self, State};
use wgsl_autoencoder::gpu::{
    DeviceChoice, FoldChoice, FoldSet, Gpu, KernelChoice, KernelSet, LimitSet, StepsPerExecution,
};
use wgsl_autoencoder::infer::Inference;
use wgsl_autoencoder::model::{Features, Model, ModelChoice, ModelKind};
use wgsl_autoencoder::network::DeviceSplit;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::reference::model as refmodel;
use wgsl_autoencoder::run::{self, RunOptions, TrainRequest};
use wgsl_autoencoder::train::{self, EpochEnd, EpochMetrics, EpochStart, TrainConfig, Trainer};

const TOL_GRAD: f64 = 1e-5;
/// Gradients of a batch of 256 (module doc).
const TOL_GRAD_256: f64 = 1e-5;
const TOL_W: f64 = 1e-6;
const TOL_LOSS: f64 = 1e-5;
const MNIST: Features = Features { h: 28, w: 28, c: 1 };

/// MNIST-like synthetic images: half the pixels 0 (background), the rest uniform in 1..=255.
fn images(seed: u64, count: usize, pixels: usize) -> Vec<u8> {
    let mut r = rng(seed);
    (0..count * pixels)
        .map(|_| {
            if r.random_bool(0.5) {
                0
            } else {
                r.random_range(1..=255u8)
            }
        })
        .collect()
}

fn to_f32(px: &[u8]) -> Vec<f32> {
    px.iter().map(|&p| f32::from(p) / 255.0).collect()
}

fn config(kind: impl Into<ModelChoice>, batch: u32, seed: u64) -> TrainConfig {
    TrainConfig {
        batch_size: batch,
        seed,
        ..TrainConfig::new(kind)
    }
}

/// A fresh Trainer (Glorot weights for `cfg.seed`, zero moments) on the given u8 splits.
fn trainer(g: &Gpu, model: &Model, cfg: &TrainConfig, train: &[u8], test: &[u8]) -> Trainer {
    let px = model.input.len() as usize;
    let tr = DeviceSplit::upload(g, "train", train, train.len() / px).unwrap();
    let te = DeviceSplit::upload(g, "test", test, test.len() / px).unwrap();
    let mut t = Trainer::new(g, model.clone(), cfg, tr, te).unwrap();
    t.init(g).unwrap();
    t
}

/// What the reference computes for one epoch, started from `state`.
struct RefEpoch {
    state: State,
    /// Loss and flat gradient of every step.
    losses: Vec<f64>,
    grads: Vec<Vec<f32>>,
    /// Sample-weighted mean of the batch losses (Keras' epoch loss).
    loss: f64,
}

/// One epoch of the reference, in the GPU's order: permutation of (seed, epoch), batches of
/// `cfg.batch_size` in order, the last one partial.
fn reference_epoch(model: &Model, cfg: &TrainConfig, start: &State, images: &[u8]) -> RefEpoch {
    let px = model.input.len() as usize;
    let count = images.len() / px;
    let perm = train::permutation(cfg.seed, start.epoch, count);
    let mut s = start.clone();
    let (mut losses, mut grads) = (Vec::new(), Vec::new());
    let mut weighted = 0.0;
    for (step, n) in train::batches(count, cfg.batch_size)
        .into_iter()
        .enumerate()
    {
        let n = n as usize;
        let offset = step * cfg.batch_size as usize;
        let (x, target) = reference_batch(cfg, TRAIN_SPLIT, images, px, &perm, offset, n);
        let (l, g) = refmodel::gradients(model, &s.params, &x, &target, n);
        s.iterations += 1;
        reference::adam::step(
            &cfg.adam,
            s.iterations,
            &mut s.params,
            &g,
            &mut s.adam_m,
            &mut s.adam_v,
        );
        weighted += l * n as f64;
        losses.push(l);
        grads.push(g);
    }
    s.epoch += 1;
    RefEpoch {
        state: s,
        losses,
        grads,
        loss: weighted / count as f64,
    }
}

/// The reference's mean BCE over a whole (test) split under `params`, walked in stored order
/// as the evaluator does: noisy inputs against clean targets when `cfg.noise` > 0.
fn reference_eval(model: &Model, cfg: &TrainConfig, params: &[f32], images: &[u8]) -> f64 {
    let px = model.input.len() as usize;
    let n = images.len() / px;
    let identity: Vec<u32> = (0..n as u32).collect();
    let (x, target) = reference_batch(cfg, TEST_SPLIT, images, px, &identity, 0, n);
    let f = refmodel::forward(model, params, &x, n);
    refmodel::loss(model, &f, &target)
}

const TRAIN_SPLIT: u64 = 0;
const TEST_SPLIT: u64 = 1;

/// The reference's batch of `n` images from permutation entry `offset`, as the GPU gathers
/// it: (input, target), the input being the noisy copy (`reference::batch::gather_noisy`,
/// keyed by the run's noise seed of `split`) when `cfg.noise` > 0, else the clean images.
fn reference_batch(
    cfg: &TrainConfig,
    split: u64,
    images: &[u8],
    px: usize,
    perm: &[u32],
    offset: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    if cfg.noise > 0.0 {
        let seed = train::noise_seed(cfg.seed, split);
        let (clean, noisy) =
            reference::batch::gather_noisy(images, px, perm, offset, n, cfg.noise, seed);
        (noisy, clean)
    } else {
        let x = reference::batch::gather(images, px, perm, offset, n);
        (x.clone(), x)
    }
}

fn initial_state(model: &Model, seed: u64) -> State {
    let len = model.param_len as usize;
    State {
        params: model.init(seed),
        adam_m: vec![0.0; len],
        adam_v: vec![0.0; len],
        epoch: 0,
        iterations: 0,
    }
}

fn slice<'a>(model: &Model, flat: &'a [f32], k: usize) -> &'a [f32] {
    let p = &model.params[k];
    &flat[p.offset as usize..(p.offset + p.len) as usize]
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64))
}

/// Per tensor: max |got − want| ≤ tol · max |want|. Returns the worst relative error seen.
fn assert_rel(what: &str, model: &Model, got: &[f32], want: &[f32], tol: f64) -> f64 {
    let mut worst = 0.0f64;
    for (k, p) in model.params.iter().enumerate() {
        let (g, w) = (slice(model, got, k), slice(model, want, k));
        let scale = max_abs(w);
        assert!(scale > 0.0, "{what} {}: reference is all zero", p.name);
        let (i, e) = g
            .iter()
            .zip(w)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .enumerate()
            .fold(
                (0, 0.0),
                |b, (i, e)| if e > b.1 || e.is_nan() { (i, e) } else { b },
            );
        assert!(
            e <= tol * scale,
            "{what} {}[{i}]: GPU {} vs reference {} (error {e:.3e} > {tol:e} x max {scale:.3e})",
            p.name,
            g[i],
            w[i]
        );
        worst = worst.max(e / scale);
    }
    worst
}

/// Padding between tensors stays zero on the GPU too.
fn assert_padding_zero(what: &str, model: &Model, v: &[f32]) {
    let mut inside = vec![false; v.len()];
    for p in &model.params {
        inside[p.offset as usize..(p.offset + p.len) as usize].fill(true);
    }
    for (i, (x, inside)) in v.iter().zip(inside).enumerate() {
        assert!(inside || *x == 0.0, "{what}: padding element {i} is {x}");
    }
}

/// Elementwise within `ulps` units in the last place of the larger of |a|, |b|, |scale_i|.
fn assert_ulps(what: &str, got: &[f32], want: &[f32], scale: &[f32], ulps: f64) {
    for (i, ((a, b), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let mag = (a.abs()).max(b.abs()).max(s.abs()) as f64;
        let tol = ulps * f32::EPSILON as f64 * mag;
        let e = (*a as f64 - *b as f64).abs();
        assert!(
            e <= tol,
            "{what}[{i}]: GPU {a} vs reference {b} (error {e:.3e} > {ulps} ulps of {mag:.3e})"
        );
    }
}

fn assert_loss(what: &str, got: f64, want: f64) {
    let e = (got - want).abs() / want.abs();
    assert!(
        e <= TOL_LOSS,
        "{what}: GPU {got} vs reference {want} (relative error {e:.3e} > {TOL_LOSS:e})"
    );
}

/// One Adam step on a dataset of exactly one batch of `batch` images, with input noise
/// `noise`, GPU vs reference (module doc); gradients held to `tol_grad`.
/// [`one_step_on`] under both kernel sets: the parity test each set must pass, whichever
/// one the adapter picks.
fn one_step(kind: impl Into<ModelChoice>, batch: usize, noise: f32, tol_grad: f64) {
    let kind = kind.into();
    for set in KernelSet::ALL {
        one_step_on(gpu_with(set), kind.clone(), batch, noise, tol_grad);
    }
}

fn one_step_on(g: &Gpu, kind: ModelChoice, batch: usize, noise: f32, tol_grad: f64) {
    let t0 = Instant::now();
    // On failure, the last line printed names the kernel set.
    eprintln!(
        "one step of {} at batch {batch}: {} kernels",
        kind.name(),
        g.kernels
    );
    let model = Model::new(kind.clone(), MNIST).unwrap();
    let px = MNIST.len() as usize;
    // `batch` training images = one full batch; 5 test images = a full and a partial batch
    // of 3 (one partial batch of 256: validating 258 images takes seconds on lavapipe).
    let train_px = images(11, batch, px);
    let test_px = images(12, 5, px);
    let cfg = TrainConfig {
        noise,
        ..config(kind.clone(), batch as u32, 5)
    };
    let mut tr = trainer(g, &model, &cfg, &train_px, &test_px);
    let m = tr.train_epoch(g, &mut |_, _| {}).unwrap();
    let gpu_grads: Vec<f32> = g.read(&tr.net.training().unwrap().grads).unwrap();
    let got = tr.state(g).unwrap();
    assert_eq!((got.epoch, got.iterations), (1, 1));

    let start = initial_state(&model, cfg.seed);
    let r = reference_epoch(&model, &cfg, &start, &train_px);
    let ref_grads = &r.grads[0];

    // The same step through `train_step`.
    {
        let perm = train::permutation(cfg.seed, 0, batch);
        let (x, target) = reference_batch(&cfg, TRAIN_SPLIT, &train_px, px, &perm, 0, batch);
        let mut s = start.clone();
        let l = refmodel::train_step(
            &model,
            &cfg.adam,
            1,
            &mut s.params,
            &mut s.adam_m,
            &mut s.adam_v,
            &x,
            &target,
            batch,
        );
        assert_eq!(l, r.losses[0]);
        assert_eq!(s.params, r.state.params);
    }

    let eg = assert_rel("gradient", &model, &gpu_grads, ref_grads, tol_grad);
    assert_padding_zero("gradient", &model, &gpu_grads);
    let em = assert_rel("adam m", &model, &got.adam_m, &r.state.adam_m, tol_grad);
    let ev = assert_rel(
        "adam v",
        &model,
        &got.adam_v,
        &r.state.adam_v,
        2.0 * tol_grad,
    );

    // The GPU's Adam inside the step, against the reference Adam fed with the GPU's gradient.
    let mut own = start.clone();
    reference::adam::step(
        &cfg.adam,
        1,
        &mut own.params,
        &gpu_grads,
        &mut own.adam_m,
        &mut own.adam_v,
    );
    assert_ulps(
        "adam m (own gradient)",
        &got.adam_m,
        &own.adam_m,
        &own.adam_m,
        2.0,
    );
    assert_ulps(
        "adam v (own gradient)",
        &got.adam_v,
        &own.adam_v,
        &own.adam_v,
        2.0,
    );
    // |w| and the update's size set the ulp: w − Δw rounds at the larger of the two.
    let lr = vec![cfg.adam.lr; own.params.len()];
    let scale: Vec<f32> = start
        .params
        .iter()
        .zip(&lr)
        .map(|(w, l)| w.abs().max(*l))
        .collect();
    assert_ulps(
        "weights (own gradient)",
        &got.params,
        &own.params,
        &scale,
        4.0,
    );

    // Weights against the all-reference step, each held to its propagated bound.
    let lr = cfg.adam.lr as f64;
    let eps1 = cfg.adam.eps as f64 / (1.0 - cfg.adam.beta2 as f64).sqrt();
    let (mut loose, mut zeros, mut worst_tight) = (0usize, 0usize, 0.0f64);
    for (k, p) in model.params.iter().enumerate() {
        let gr = slice(&model, ref_grads, k);
        let delta = tol_grad * max_abs(gr);
        let (w_gpu, w_ref) = (
            slice(&model, &got.params, k),
            slice(&model, &r.state.params, k),
        );
        for i in 0..gr.len() {
            if gr[i] == 0.0 {
                // A structural zero (an input pixel that is 0 in the whole batch, a dead ReLU):
                // the GPU's sum is exactly 0 too, and Adam leaves the weight as it was.
                assert_eq!(
                    w_gpu[i], w_ref[i],
                    "weight {}[{i}] with zero gradient",
                    p.name
                );
                zeros += 1;
                continue;
            }
            let a = (gr[i].abs() as f64 - delta).max(0.0);
            let bound = (lr * eps1 * delta / (a + eps1).powi(2)).min(2.0 * lr);
            let e = (w_gpu[i] as f64 - w_ref[i] as f64).abs();
            assert!(
                e <= bound + TOL_W,
                "weight {}[{i}]: GPU {} vs reference {} (error {e:.3e} > {bound:.3e} + {TOL_W:e}; \
                 gradient {})",
                p.name,
                w_gpu[i],
                w_ref[i],
                gr[i]
            );
            if bound > TOL_W {
                loose += 1;
            } else {
                worst_tight = worst_tight.max(e);
            }
        }
    }
    // Not vacuous: most weights are held to TOL_W itself (the loose ones are those whose
    // gradient is within ~√(lr·ε′·δ/TOL_W) of zero, δ being the gradient tolerance).
    let total: u64 = model.params.iter().map(|p| p.len).sum();
    let nonzero = total as usize - zeros;
    assert!(
        4 * loose <= nonzero,
        "{loose} of {nonzero} weights with a non-zero gradient have a loose bound"
    );

    // Losses: the epoch's training loss is its single batch's; validation over the test split
    // with the final (GPU) weights.
    assert_loss("training loss", m.loss, r.loss);
    let val = reference_eval(&model, &cfg, &got.params, &test_px);
    assert_loss("validation loss", m.val_loss, val);
    eprintln!(
        "{} one step: gradient rel {eg:.2e}, m {em:.2e}, v {ev:.2e}; weights: {zeros} \
         zero-gradient, {loose} loose, worst tight {worst_tight:.2e} of {total}; loss {} vs {}, val {} vs {}; {:.2}s",
        kind.name(),
        m.loss,
        r.loss,
        m.val_loss,
        val,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn one_training_step_matches_reference_conv() {
    one_step(ModelKind::Conv, 3, 0.0, TOL_GRAD);
}

#[test]
fn one_training_step_matches_reference_dense() {
    one_step(ModelKind::Dense, 3, 0.0, TOL_GRAD);
}

#[test]
fn one_training_step_matches_reference_deep() {
    one_step(ModelKind::Deep, 3, 0.0, TOL_GRAD);
}

/// The conv model at Keras' batch size, 256 MNIST-sized images: the weight-gradient reduces
/// run over 12544 chunks (28 x 28 x 256 / 16) as in real training.
#[test]
fn one_training_step_at_batch_256_matches_reference_conv() {
    one_step(ModelKind::Conv, 256, 0.0, TOL_GRAD_256);
}

/// `--noise 0.5` (the denoising autoencoder): the GPU's noisy gather feeds the step and the
/// validation; the reference sees the same noisy inputs (`reference::batch::gather_noisy`
/// with the run's noise seeds) and the clean targets.
#[test]
fn one_training_step_with_noise_matches_reference_conv() {
    one_step(ModelKind::Conv, 3, 0.5, TOL_GRAD);
}

#[test]
fn one_training_step_with_noise_matches_reference_dense() {
    one_step(ModelKind::Dense, 3, 0.5, TOL_GRAD);
}

/// A Keras `to_json()` file of `assets/models/`, as `--model FILE` reads it. Relative to the
/// working directory, the package's root under `cargo test` and the repository's root where
/// bench/device-check.sh runs the staged binary on another machine.
fn keras_file(name: &str) -> ModelChoice {
    let path = format!("assets/models/{name}.json");
    ModelChoice::from_arg(&path).unwrap()
}

/// The five Keras files of ../shared/keras-models (shipped in assets/models/). conv, dense
/// and deep build exactly the built-ins (whose parity tests are above): same layers, shapes,
/// tensor names and layout. The other two get a parity step of their own, under both kernel
/// sets; the denoising model (32 filters, a 7x7x32 code) with noise, as the blog trains it.
#[test]
fn keras_files_of_the_builtins_build_the_builtins() {
    for kind in ModelKind::ALL {
        let (file, builtin) = (
            Model::new(keras_file(kind.name()), MNIST).unwrap(),
            Model::new(kind, MNIST).unwrap(),
        );
        assert_eq!(file.layers, builtin.layers, "{}", kind.name());
        assert_eq!(file.shapes, builtin.shapes, "{}", kind.name());
        assert_eq!(file.params, builtin.params, "{}", kind.name());
        assert_eq!(file.code_at, builtin.code_at, "{}", kind.name());
        assert_eq!(file.init(7), builtin.init(7), "{}", kind.name());
        // Keras' own counts for these files (model.count_params(), ../shared/keras-models),
        // and the seed's codes: what pins the built-ins, now that they are these files.
        let (params, code) = match kind {
            ModelKind::Conv => (4_385, Features { h: 4, w: 4, c: 8 }),
            ModelKind::Dense => (50_992, Features { h: 1, w: 1, c: 32 }),
            ModelKind::Deep => (222_384, Features { h: 1, w: 1, c: 32 }),
        };
        let count: u64 = builtin.params.iter().map(|p| p.len).sum();
        assert_eq!((count, builtin.code()), (params, code), "{}", kind.name());
    }
}

/// Keras' parameter count of a file (../shared/keras-models) against the model we build.
fn assert_keras_count(name: &str, keras: u64) {
    let m = Model::new(keras_file(name), MNIST).unwrap();
    assert_eq!(m.params.iter().map(|p| p.len).sum::<u64>(), keras, "{name}");
}

#[test]
fn one_training_step_matches_reference_keras_denoising_conv() {
    assert_keras_count("denoising_conv", 28_353);
    one_step(keras_file("denoising_conv"), 3, 0.5, TOL_GRAD);
}

#[test]
fn one_training_step_matches_reference_keras_sequential_conv() {
    assert_keras_count("sequential_conv", 28_145);
    one_step(keras_file("sequential_conv"), 3, 0.0, TOL_GRAD);
}

/// The keras.io conv autoencoder ("Convolutional autoencoder for image denoising", shipped as
/// assets/models/conv_transpose.json): two Conv2DTranspose layers with strides 2, each run
/// as a zero insertion and a convolution of the flipped, transposed kernel.
#[test]
fn one_training_step_matches_reference_keras_conv_transpose() {
    assert_keras_count("conv_transpose", 28_353);
    one_step(keras_file("conv_transpose"), 3, 0.0, TOL_GRAD);
}

/// Keras' Conv2DTranspose ('same', odd kernel k, strides s) by its definition, in f64:
/// `out[s*i + t - p][f] += in[i][c] * kernel[t][f][c]` per axis, `p = (k - s) / 2` rounded
/// down (TensorFlow's split of the padding), plus the bias. `kernel` in Keras' layout
/// `[k, k, filters, channels]`.
fn conv_transpose_by_definition(
    x: &[f32],
    [n, h, w, c]: [usize; 4],
    kernel: &[f32],
    bias: &[f32],
    k: usize,
    s: usize,
) -> Vec<f64> {
    let f = bias.len();
    let (ho, wo, p) = (h * s, w * s, (k - s) / 2);
    let mut out = vec![0.0f64; n * ho * wo * f];
    for b in 0..n {
        for (iy, ix, ty, tx) in (0..h).flat_map(|iy| {
            (0..w).flat_map(move |ix| {
                (0..k).flat_map(move |ty| (0..k).map(move |tx| (iy, ix, ty, tx)))
            })
        }) {
            let (oy, ox) = (
                (s * iy + ty) as isize - p as isize,
                (s * ix + tx) as isize - p as isize,
            );
            if oy < 0 || ox < 0 || oy >= ho as isize || ox >= wo as isize {
                continue;
            }
            for o in 0..f {
                for ch in 0..c {
                    out[((b * ho + oy as usize) * wo + ox as usize) * f + o] +=
                        x[((b * h + iy) * w + ix) * c + ch] as f64
                            * kernel[((ty * k + tx) * f + o) * c + ch] as f64;
                }
            }
        }
        for v in out[b * ho * wo * f..(b + 1) * ho * wo * f].chunks_mut(f) {
            for (o, v) in v.iter_mut().enumerate() {
                *v += bias[o] as f64;
            }
        }
    }
    out
}

/// What the Keras check (bench/keras_check.py) showed for the keras.io model, on the host and
/// for every kernel side and both strides: a model file's Conv2DTranspose layers, weights set
/// in Keras' layout and stored as the model stores them (`ParamTensor::from_keras`), compute
/// the layer's definition in the reference forward pass; and the stored layout goes back to
/// Keras' unchanged.
#[test]
fn conv_transpose_layers_compute_keras_definition() {
    for (k1, k2) in [(3usize, 3usize), (5, 5), (1, 7)] {
        let layer = |class: &str, config: serde_json::Value| serde_json::json!({"module": "keras.layers", "class_name": class, "config": config});
        let model = serde_json::json!({
            "class_name": "Sequential",
            "config": {"name": "t", "layers": [
                layer("InputLayer", serde_json::json!({"name": "in", "batch_shape": [null, 6, 6, 2]})),
                layer("Conv2DTranspose", serde_json::json!({"name": "t1", "filters": 3, "kernel_size": [k1, k1], "strides": [1, 1], "padding": "same", "activation": "linear"})),
                layer("MaxPooling2D", serde_json::json!({"name": "pool", "pool_size": [2, 2], "padding": "same"})),
                layer("Conv2DTranspose", serde_json::json!({"name": "t2", "filters": 2, "kernel_size": [k2, k2], "strides": [2, 2], "padding": "same", "activation": "sigmoid"})),
            ]}
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, model.to_string()).unwrap();
        let input = Features { h: 6, w: 6, c: 2 };
        let m = Model::new(
            ModelChoice::from_arg(path.to_str().unwrap()).unwrap(),
            input,
        )
        .unwrap();
        let names: Vec<&str> = m.layers.iter().map(|l| l.name()).collect();
        assert_eq!(names, ["t1", "pool", "t2:insert", "t2"], "k {k1}, {k2}");
        let shapes: Vec<[usize; 4]> = m
            .params
            .iter()
            .map(|p| {
                let mut s = [1usize; 4];
                s[4 - p.shape.len()..].copy_from_slice(&p.shape);
                s
            })
            .collect();
        assert_eq!(
            shapes,
            [[k1, k1, 3, 2], [1, 1, 1, 3], [k2, k2, 2, 3], [1, 1, 1, 2]]
        );
        let mut r = rng(70 + k1 as u64);
        let mut flat = vec![0.0f32; m.param_len as usize];
        let mut keras = Vec::new();
        for (i, p) in m.params.iter().enumerate() {
            let values: Vec<f32> = (0..p.len).map(|_| r.random_range(-1.0..1.0)).collect();
            let stored = p.from_keras(&values);
            assert_eq!(p.to_keras(&stored), values, "{}: the round trip", p.name);
            flat[m.param_range(i)].copy_from_slice(&stored);
            keras.push(values);
        }
        let n = 2;
        let x: Vec<f32> = (0..n * 72).map(|_| r.random_range(-1.0..1.0)).collect();
        let fwd = refmodel::forward(&m, &flat, &x, n);
        let close = |what: &str, got: &[f32], want: &[f64]| {
            assert_eq!(got.len(), want.len(), "{what}");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{what}: {i}: {g} against {w}"
                );
            }
        };
        let t1 = conv_transpose_by_definition(&x, [n, 6, 6, 2], &keras[0], &keras[1], k1, 1);
        close(&format!("t1, k {k1}"), &fwd.acts[0], &t1);
        let t2 =
            conv_transpose_by_definition(&fwd.acts[1], [n, 3, 3, 3], &keras[2], &keras[3], k2, 2);
        close(&format!("t2 (logits), k {k2}"), fwd.logits(), &t2);
    }
}

/// Keras' Conv2D with strides 2 by its definition, in f64: `out[i] = sum_t in[2i + t - p] *
/// kernel[t]` per axis (zeros outside), 'same': `ceil(n / 2)` outputs, `p` the smaller half of
/// `max((out - 1) * 2 + k - n, 0)` (TensorFlow's split); 'valid': `(n - k) / 2 + 1`, `p = 0`.
/// `kernel` `[k, k, channels, filters]`.
fn conv_strided_by_definition(
    x: &[f32],
    [n, h, w, c]: [usize; 4],
    kernel: &[f32],
    bias: &[f32],
    k: usize,
    same: bool,
) -> (Vec<f64>, [usize; 2]) {
    let f = bias.len();
    let axis = |size: usize| match same {
        true => {
            let out = size.div_ceil(2);
            (out, ((out - 1) * 2 + k).saturating_sub(size) / 2)
        }
        false => ((size - k) / 2 + 1, 0),
    };
    let ((ho, py), (wo, px)) = (axis(h), axis(w));
    let mut out = vec![0.0f64; n * ho * wo * f];
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..f {
                    let mut acc = bias[o] as f64;
                    for ty in 0..k {
                        for tx in 0..k {
                            let (iy, ix) = (
                                (2 * oy + ty) as isize - py as isize,
                                (2 * ox + tx) as isize - px as isize,
                            );
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for ch in 0..c {
                                acc += x[((b * h + iy as usize) * w + ix as usize) * c + ch] as f64
                                    * kernel[((ty * k + tx) * c + ch) * f + o] as f64;
                            }
                        }
                    }
                    out[((b * ho + oy) * wo + ox) * f + o] = acc;
                }
            }
        }
    }
    (out, [ho, wo])
}

/// A model file's Conv2D layers with strides 2 compute the layer's definition in the
/// reference forward pass, for every kernel side, both paddings, and even and odd sizes (the
/// first window's offset in the stride-1 convolution's output depends on both).
#[test]
fn strided_conv_layers_compute_keras_definition() {
    for (k, padding, size) in [
        (3usize, "same", 8usize),
        (3, "same", 7),
        (5, "same", 8),
        (5, "same", 9),
        (7, "same", 10),
        (1, "same", 7),
        (1, "same", 8),
        (3, "valid", 9),
        (5, "valid", 12),
        (1, "valid", 6),
    ] {
        let layer = |class: &str, config: serde_json::Value| serde_json::json!({"module": "keras.layers", "class_name": class, "config": config});
        let model = serde_json::json!({
            "class_name": "Sequential",
            "config": {"name": "t", "layers": [
                layer("InputLayer", serde_json::json!({"name": "in", "batch_shape": [null, size, size, 2]})),
                layer("Conv2D", serde_json::json!({"name": "s", "filters": 3, "kernel_size": [k, k], "strides": [2, 2], "padding": padding, "activation": "relu"})),
                layer("Flatten", serde_json::json!({"name": "flat"})),
                layer("Dense", serde_json::json!({"name": "out", "units": size * size * 2, "activation": "sigmoid"})),
                layer("Reshape", serde_json::json!({"name": "back", "target_shape": [size, size, 2]})),
            ]}
        });
        let what = format!("k {k}, {padding}, {size}x{size}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, model.to_string()).unwrap();
        let input = Features {
            h: size as u32,
            w: size as u32,
            c: 2,
        };
        let m = Model::new(
            ModelChoice::from_arg(path.to_str().unwrap()).unwrap(),
            input,
        )
        .unwrap();
        let names: Vec<&str> = m.layers.iter().map(|l| l.name()).collect();
        assert_eq!(names, ["s", "s:take", "flat", "out", "back"], "{what}");
        let mut r = rng(90 + k as u64 + size as u64);
        let flat: Vec<f32> = (0..m.param_len)
            .map(|_| r.random_range(-1.0..1.0))
            .collect();
        let n = 2;
        let x: Vec<f32> = (0..n * size * size * 2)
            .map(|_| r.random_range(-1.0..1.0))
            .collect();
        let fwd = refmodel::forward(&m, &flat, &x, n);
        let (want, [ho, wo]) = conv_strided_by_definition(
            &x,
            [n, size, size, 2],
            &flat[m.param_range(0)],
            &flat[m.param_range(1)],
            k,
            padding == "same",
        );
        assert_eq!(
            m.shapes[2],
            Features {
                h: ho as u32,
                w: wo as u32,
                c: 3
            },
            "{what}"
        );
        let got = &fwd.acts[1];
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let w = w.max(0.0); // the layer's ReLU
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}: {i}: {g} against {w}"
            );
        }
    }
}

/// Strided Conv2D layers in the encoder and Conv2DTranspose layers in the decoder (a shipped
/// file, `conv_strided.json`): one training step against the reference.
#[test]
fn one_training_step_matches_reference_keras_conv_strided() {
    assert_keras_count("conv_strided", 6_705);
    // The code: a strided Conv2D's output is its take's, by default and when named; a
    // Conv2DTranspose's its convolution's.
    let code = |layer: Option<&str>| {
        Model::build(&keras_file("conv_strided"), layer, MNIST)
            .unwrap()
            .code()
    };
    let f = |h, c| Features { h, w: h, c };
    assert_eq!(code(None), f(4, 8));
    assert_eq!(code(Some("conv2d_2")), f(4, 8));
    assert_eq!(code(Some("conv2d")), f(14, 16));
    assert_eq!(code(Some("conv2d_transpose")), f(8, 8));
    one_step(keras_file("conv_strided"), 3, 0.0, TOL_GRAD);
}

/// The folds change no bit of a model with strided layers either (`conv_strided.json`: the
/// stride maps sit between the convolutions, so no pool or upsampling folds, but the merged
/// reduces, the pairs, Adam in the reduce and every variant do), on the GPU set.
#[test]
fn folds_change_no_bit_of_training_with_strided_layers() {
    let px = MNIST.len() as usize;
    let (train_px, test_px) = (images(45, 40, px), images(46, 20, px));
    let run = |folds: FoldSet| {
        let model = Model::new(keras_file("conv_strided"), MNIST).unwrap();
        let cfg = config(keras_file("conv_strided"), 16, 5);
        let choice = DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Gpu))
            .with_folds(FoldChoice::Set(folds));
        let g = common::open_poisoned(&choice);
        let mut tr = trainer(&g, &model, &cfg, &train_px, &test_px);
        let (m, state) = train_bits(&mut tr, &g, 2);
        (tr.step_len(), m, state)
    };
    let (none, all) = (run(FoldSet::NONE), run(FoldSet::ALL));
    assert!(
        all.0 < none.0,
        "dispatches per step: {} with all, {} with none",
        all.0,
        none.0
    );
    assert_eq!(all.1, none.1, "epoch losses");
    assert!(all.2 == none.2, "final state");
}

/// A Sequential that takes what the shipped files do not: a Flatten first (no input
/// gradient below it), Dense and Conv2D layers without a bias, a linear Dense, a Reshape to
/// images, a 5x5 and a 1x1 kernel, 'valid' pooling of an odd size (15 -> 7), and a Reshape
/// after the output layer.
#[test]
fn one_training_step_matches_reference_keras_odd_layers() {
    let layer = |class: &str, config: serde_json::Value| serde_json::json!({"module": "keras.layers", "class_name": class, "config": config});
    let conv = |name: &str, filters, k, act: &str, bias| {
        layer(
            "Conv2D",
            serde_json::json!({"name": name, "filters": filters, "kernel_size": [k, k],
                "strides": [1, 1], "padding": "same", "activation": act, "use_bias": bias}),
        )
    };
    let model = serde_json::json!({
        "class_name": "Sequential",
        "config": {"name": "odd", "layers": [
            layer("InputLayer", serde_json::json!({"name": "in", "batch_shape": [null, 28, 28, 1]})),
            layer("Flatten", serde_json::json!({"name": "flatten"})),
            layer("Dense", serde_json::json!({"name": "code", "units": 64, "activation": "relu", "use_bias": false})),
            layer("Dense", serde_json::json!({"name": "wide", "units": 225, "activation": "linear"})),
            layer("Reshape", serde_json::json!({"name": "to_image", "target_shape": [15, 15, 1]})),
            conv("c5", 4, 5, "relu", false),
            layer("MaxPooling2D", serde_json::json!({"name": "pool", "pool_size": [2, 2], "padding": "valid"})),
            layer("UpSampling2D", serde_json::json!({"name": "up", "size": [2, 2]})),
            layer("UpSampling2D", serde_json::json!({"name": "up_1", "size": [2, 2]})),
            conv("c1", 1, 1, "sigmoid", true),
            layer("Reshape", serde_json::json!({"name": "out", "target_shape": [28, 28, 1]})),
        ]}
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.json");
    std::fs::write(&path, model.to_string()).unwrap();
    let choice = ModelChoice::from_arg(path.to_str().unwrap()).unwrap();
    let m = Model::new(choice.clone(), MNIST).unwrap();
    let names: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "code/kernel",
            "wide/kernel",
            "wide/bias",
            "c5/kernel",
            "c1/kernel",
            "c1/bias"
        ]
    );
    assert_eq!((m.code_at, m.code().len()), (2, 64));
    assert_eq!(m.shapes[6], Features { h: 7, w: 7, c: 4 }); // after the pool
    one_step(choice, 3, 0.0, TOL_GRAD);
}

/// One epoch of three steps, GPU vs reference: 5 images in batches of 2, 2 and a partial 1
/// (so both step plans run, and the epoch loss is a weighted mean of unequal batches).
fn three_steps(kind: ModelKind) {
    let t0 = Instant::now();
    let g = gpu();
    let model = Model::new(kind, MNIST).unwrap();
    let px = MNIST.len() as usize;
    let train_px = images(21, 5, px);
    let test_px = images(22, 5, px);
    let cfg = config(kind, 2, 9);
    let mut tr = trainer(g, &model, &cfg, &train_px, &test_px);
    let m = tr.train_epoch(g, &mut |_, _| {}).unwrap();
    let gpu_grads: Vec<f32> = g.read(&tr.net.training().unwrap().grads).unwrap();
    let got = tr.state(g).unwrap();
    assert_eq!((got.epoch, got.iterations), (1, 3));

    let r = reference_epoch(&model, &cfg, &initial_state(&model, cfg.seed), &train_px);
    assert_eq!(r.grads.len(), 3);
    // The last step's gradient (after two updates whose sign noise may differ slightly).
    let eg = assert_rel(
        "last gradient",
        &model,
        &gpu_grads,
        &r.grads[2],
        10.0 * TOL_GRAD,
    );
    let em = assert_rel(
        "adam m",
        &model,
        &got.adam_m,
        &r.state.adam_m,
        10.0 * TOL_GRAD,
    );
    let ev = assert_rel(
        "adam v",
        &model,
        &got.adam_v,
        &r.state.adam_v,
        20.0 * TOL_GRAD,
    );

    let lr = cfg.adam.lr as f64;
    let (mut clear, mut worst) = (0usize, 0.0f64);
    for (k, p) in model.params.iter().enumerate() {
        let steps: Vec<&[f32]> = r.grads.iter().map(|gr| slice(&model, gr, k)).collect();
        let scales: Vec<f64> = steps.iter().map(|s| max_abs(s)).collect();
        let (w_gpu, w_ref) = (
            slice(&model, &got.params, k),
            slice(&model, &r.state.params, k),
        );
        for i in 0..w_gpu.len() {
            // Clear of zero at every step, or exactly zero (a structural zero: both sides
            // compute exactly 0 and leave the weight alone).
            let is_clear = steps
                .iter()
                .zip(&scales)
                .all(|(s, &sc)| s[i] == 0.0 || s[i].abs() as f64 > 1e-3 * sc);
            let e = (w_gpu[i] as f64 - w_ref[i] as f64).abs();
            let tol = if is_clear { 1e-5 } else { 2.0 * lr * 3.0 };
            assert!(
                e <= tol,
                "weight {}[{i}] after 3 steps: GPU {} vs reference {} (error {e:.3e} > {tol:e})",
                p.name,
                w_gpu[i],
                w_ref[i]
            );
            if is_clear {
                clear += 1;
                worst = worst.max(e);
            }
        }
    }
    let total: u64 = model.params.iter().map(|p| p.len).sum();
    assert!(
        4 * clear as u64 >= 3 * total,
        "only {clear} of {total} weights had gradients clear of zero"
    );

    assert_loss("training loss", m.loss, r.loss);
    let val = reference_eval(&model, &cfg, &got.params, &test_px);
    assert_loss("validation loss", m.val_loss, val);
    eprintln!(
        "{kind:?} three steps: last gradient rel {eg:.2e}, m {em:.2e}, v {ev:.2e}; worst clear \
         weight {worst:.2e} ({clear}/{total} clear); loss {} vs {}, val {} vs {}; {:.2}s",
        m.loss,
        r.loss,
        m.val_loss,
        val,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn three_training_steps_match_reference_conv() {
    three_steps(ModelKind::Conv);
}

#[test]
fn three_training_steps_match_reference_dense() {
    three_steps(ModelKind::Dense);
}

#[test]
fn three_training_steps_match_reference_deep() {
    three_steps(ModelKind::Deep);
}

/// `reference::model::gradients` against central differences of `forward` + `loss`, on a tiny
/// dense model (16 → 32 → 16, batch 3), with a target other than the input and non-zero
/// biases, for every parameter.
///
/// The reference model computes in f32 between layers, so the loss carries f32 rounding noise:
/// each of the 48 logits is rounded (≈ 3e-8·|z|) and weighs (σ(z) − t)/48 ≲ 0.02 in the loss,
/// ≈ 1e-9 after summing, i.e. ≈ 1e-7 on a central difference with h = 1e-2 (1e-6 with
/// h = 1e-3; measured: 9e-8 and 8e-7). The truncation error h²/6·|L‴| is far below that (the
/// loss is piecewise smooth; steps that cross a ReLU kink are detected and skipped).
/// Tolerance: 1e-4 of the tensor's largest gradient (≈ 1e-6 absolute here, 10× the noise),
/// while an index, transposition or masking bug is an error of the order of the gradient.
#[test]
fn reference_model_gradients_match_finite_differences() {
    const H: f32 = 1e-2;
    const TOL: f64 = 1e-4;
    let model = Model::new(ModelKind::Dense, Features { h: 4, w: 4, c: 1 }).unwrap();
    let mut r = rng(31);
    let mut params = model.init(4);
    for p in model.params.iter().filter(|p| p.fan_in == 0) {
        for v in &mut params[p.offset as usize..(p.offset + p.len) as usize] {
            *v = r.random_range(-0.1..0.1);
        }
    }
    let n = 3;
    let x = common::uniform(&mut r, n * 16, 0.0, 1.0);
    let t = common::uniform(&mut r, n * 16, 0.0, 1.0);
    let (l, grads) = refmodel::gradients(&model, &params, &x, &t, n);
    let f = refmodel::forward(&model, &params, &x, n);
    assert_eq!(l, refmodel::loss(&model, &f, &t));
    assert_padding_zero("gradient", &model, &grads);
    let mask =
        |f: &refmodel::Forward| -> Vec<bool> { f.acts[0].iter().map(|&a| a > 0.0).collect() };
    let at = |q: &[f32]| {
        let f = refmodel::forward(&model, q, &x, n);
        (refmodel::loss(&model, &f, &t), mask(&f))
    };
    let base_mask = mask(&f);
    let (mut checked, mut skipped) = (0usize, 0usize);
    for (k, p) in model.params.iter().enumerate() {
        let scale = max_abs(slice(&model, &grads, k));
        assert!(scale > 1e-3, "{}: gradient too small to test", p.name);
        let mut q = params.clone();
        for j in p.offset as usize..(p.offset + p.len) as usize {
            q[j] = params[j] + H;
            let (lp, mp) = at(&q);
            let up = q[j] as f64;
            q[j] = params[j] - H;
            let (lm, mm) = at(&q);
            let down = q[j] as f64;
            q[j] = params[j];
            if mp != base_mask || mm != base_mask {
                skipped += 1;
                continue;
            }
            // The actual f32 step, not 2H.
            let fd = (lp - lm) / (up - down);
            let e = (grads[j] as f64 - fd).abs();
            assert!(
                e <= TOL * scale,
                "{}[{}]: analytic {} vs numeric {fd} (error {e:.3e} > {TOL:e} x {scale:.3e})",
                p.name,
                j - p.offset as usize,
                grads[j]
            );
            checked += 1;
        }
    }
    assert!(
        skipped * 10 <= checked,
        "{skipped} coordinates crossed a ReLU kink, {checked} checked"
    );
}

/// The mean BCE over `images` of the best input-independent predictor (each pixel predicted as
/// its mean over `images`: the constant that minimises BCE), and of a perfect reconstruction
/// (the targets' own binary entropy: BCE's floor when targets are grey levels, not 0/1).
fn mean_image_and_floor(images: &[u8], px: usize) -> (f64, f64) {
    let n = images.len() / px;
    let mut mean = vec![0.0f64; px];
    for (i, &p) in images.iter().enumerate() {
        mean[i % px] += f64::from(p) / 255.0;
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    // x·ln(y) with 0·ln(0) = 0 (a pixel that is 0 in every image costs nothing).
    let xlny = |x: f64, y: f64| if x == 0.0 { 0.0 } else { x * y.ln() };
    let (mut constant, mut floor) = (0.0, 0.0);
    for (i, &p) in images.iter().enumerate() {
        let (t, m) = (f64::from(p) / 255.0, mean[i % px]);
        constant -= xlny(t, m) + xlny(1.0 - t, 1.0 - m);
        floor -= xlny(t, t) + xlny(1.0 - t, 1.0 - t);
    }
    (constant / images.len() as f64, floor / images.len() as f64)
}

/// The dense model on the first 2,048 MNIST training images for 3 epochs, validated on the
/// whole 10k test set.
///
/// Bound: before it learns anything the model predicts ≈ 0.5 everywhere (BCE ≈ ln 2 ≈ 0.69);
/// the best it can do without looking at its input is the per-pixel mean image, whose BCE C on
/// the test set is computed here (≈ 0.262); a perfect reconstruction scores the targets' own
/// entropy F (≈ 0.058). The test demands val_loss < C − (C − F)/10: at least a tenth of the way
/// from the mean image to perfect, which only a model that reconstructs from its input can
/// reach (Keras' dense AE closes about a third of that gap in its first epoch, 0.193, and 80%
/// by epoch 50, 0.093). And the validation loss must fall every epoch.
///
/// Batch size 32, not Keras' 256: 2,048 images make 8 steps of 256 an epoch, 24 in all, and
/// after 24 Adam steps the model is still on its way down from ln 2 to the mean image (0.41
/// measured); 64 steps an epoch (192 in all) are closer to Keras' 235-step first epoch.
#[test]
fn short_real_run_lowers_validation_loss() {
    let t0 = Instant::now();
    let g = gpu();
    let d =
        wgsl_autoencoder::data::load(&wgsl_autoencoder::data::default_dir(), Some(2048)).unwrap();
    assert_eq!(d.train.images.count, 2048);
    let px = d.test.images.image_len();
    let (constant, floor) = mean_image_and_floor(&d.test.images.pixels, px);
    let bound = constant - (constant - floor) / 10.0;
    let model = Model::new(ModelKind::Dense, d.features()).unwrap();
    let cfg = config(ModelKind::Dense, 32, 0);
    let mut tr = trainer(
        g,
        &model,
        &cfg,
        &d.train.images.pixels,
        &d.test.images.pixels,
    );
    let mut history: Vec<EpochMetrics> = Vec::new();
    for _ in 0..3 {
        let m = tr.train_epoch(g, &mut |_, _| {}).unwrap();
        if let Some(prev) = history.last() {
            assert!(
                m.val_loss < prev.val_loss,
                "val_loss rose: {history:?} then {m:?}"
            );
        }
        history.push(m);
    }
    let last = history[2].val_loss;
    eprintln!(
        "real run: val_loss {:?}; mean image {constant:.4}, floor {floor:.4}, bound {bound:.4}; \
         {:.1}s",
        history.iter().map(|m| m.val_loss).collect::<Vec<_>>(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        last < bound,
        "val_loss {last} after 3 epochs is not under {bound:.4} (mean image {constant:.4}, \
         perfect {floor:.4})"
    );
}

/// An IDX file: big-endian magic and dimensions, then the u8 payload.
fn write_idx(path: &std::path::Path, magic: u32, dims: &[usize], payload: &[u8]) {
    let mut b = magic.to_be_bytes().to_vec();
    for &d in dims {
        b.extend((d as u32).to_be_bytes());
    }
    b.extend_from_slice(payload);
    std::fs::write(path, b).unwrap();
}

/// MNIST cut to its first `train` and `test` images, as raw IDX files in `dir`.
fn small_mnist(dir: &std::path::Path, train: usize, test: usize) {
    let d = wgsl_autoencoder::data::load_dir(&wgsl_autoencoder::data::default_dir()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (stem, lstem, split, n) in [
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            &d.train,
            train,
        ),
        (
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            &d.test,
            test,
        ),
    ] {
        let (r, c) = (split.images.rows, split.images.cols);
        write_idx(
            &dir.join(stem),
            0x803,
            &[n, r, c],
            &split.images.pixels[..n * r * c],
        );
        write_idx(&dir.join(lstem), 0x801, &[n], &split.labels[..n]);
    }
}

/// One epoch paused before step `at` and then continued from there, as a mid-epoch checkpoint
/// or Ctrl-C does: the pause sees every step's Adam step count, and the trainer has taken
/// `at` more when it pauses.
fn epoch_paused_at(tr: &mut Trainer, g: &Gpu, at: usize) -> EpochMetrics {
    let before = tr.iterations;
    let pause = move |step: usize, adam_steps: u64| {
        assert_eq!(
            adam_steps,
            before + step as u64,
            "Adam steps before step {step}"
        );
        step == at
    };
    let from = EpochStart {
        pause: &pause,
        ..EpochStart::default()
    };
    let losses = match tr.train_epoch_from(g, &from, &mut |_, _| {}).unwrap() {
        EpochEnd::Paused { step, losses } => {
            assert_eq!((step, losses.len()), (at, at));
            losses
        }
        EpochEnd::Done(_) => panic!("no pause at step {at}"),
    };
    assert_eq!(tr.iterations, before + at as u64);
    let rest = EpochStart {
        step: at,
        losses: &losses,
        ..EpochStart::default()
    };
    match tr.train_epoch_from(g, &rest, &mut |_, _| {}).unwrap() {
        EpochEnd::Done(metrics) => metrics,
        EpochEnd::Paused { step, .. } => panic!("paused again at {step}"),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every bit a run leaves: the epochs' losses and the final weights and moments.
type RunBits = (Vec<(u64, u64)>, (Vec<u32>, Vec<u32>, Vec<u32>));

/// Trains `epochs` epochs and returns their loss bits and the final state's.
fn train_bits(tr: &mut Trainer, g: &Gpu, epochs: usize) -> RunBits {
    let m = (0..epochs)
        .map(|_| {
            let m = tr.train_epoch(g, &mut |_, _| {}).unwrap();
            (m.loss.to_bits(), m.val_loss.to_bits())
        })
        .collect();
    let s = tr.state(g).unwrap();
    (m, (bits(&s.params), bits(&s.adam_m), bits(&s.adam_v)))
}

/// (epoch, loss, val_loss) of each row of a run's metrics.csv, as text.
fn csv_rows(dir: &std::path::Path) -> Vec<Vec<String>> {
    let s = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    s.lines()
        .skip(1)
        .map(|l| l.split(',').take(3).map(String::from).collect())
        .collect()
}

/// `train` for 3 epochs straight, and for 1 epoch then resumed to 3: the same metrics, bit for
/// bit (in memory, in the checkpoint's history and in metrics.csv), and the same final weights
/// and Adam state.
#[test]
fn resume_gives_the_same_metrics_as_a_straight_run() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 60 training images in batches of 16: 16, 16, 16 and a partial 12.
    small_mnist(&data, 60, 30);
    let cfg = TrainConfig {
        epochs: 3,
        ..config(ModelKind::Dense, 16, 3)
    };
    let opts = |out: &str, epochs: usize, resume: Option<std::path::PathBuf>| RunOptions {
        request: TrainRequest::from_config(&TrainConfig {
            epochs,
            ..cfg.clone()
        }),
        data_dir: Some(data.clone()),
        overwrite: false,
        tensorboard: true,
        out_dir: (resume.is_none()).then(|| tmp.path().join(out)),
        device: device_choice(),
        resume,
    };
    let train = |o: &RunOptions| {
        let mut seen = Vec::new();
        let dir = run::train(o, &mut |e| {
            if let run::Event::Epoch { metrics, .. } = e {
                seen.push(metrics);
            }
        })
        .unwrap();
        (dir, seen)
    };
    let (straight, seen_straight) = train(&opts("straight", 3, None));
    let (split, mut seen_split) = train(&opts("split", 1, None));
    let (resumed, more) = train(&opts("", 3, Some(split.clone())));
    assert_eq!(resumed, split);
    seen_split.extend(more);

    let a = checkpoint::load(&straight.join(run::CHECKPOINT)).unwrap();
    let b = checkpoint::load(&split.join(run::CHECKPOINT)).unwrap();
    let key = |h: &[EpochMetrics]| -> Vec<(usize, u64, u64)> {
        h.iter()
            .map(|m| (m.epoch, m.loss.to_bits(), m.val_loss.to_bits()))
            .collect()
    };
    // A resumed run's history went through the checkpoint's JSON metadata twice: it must
    // survive a save and load bit for bit (random values, so no lucky digits).
    let mut r = rng(51);
    let mut probe = a.clone();
    probe.history = (1..=1000)
        .map(|epoch| EpochMetrics {
            epoch,
            loss: r.random_range(0.05..0.7),
            val_loss: r.random_range(0.05..0.7),
            ..a.history[0]
        })
        .collect();
    let back = checkpoint::decode(&checkpoint::encode(&probe).unwrap(), &straight).unwrap();
    for (got, want) in back.history.iter().zip(&probe.history) {
        assert!(
            got.loss.to_bits() == want.loss.to_bits()
                && got.val_loss.to_bits() == want.val_loss.to_bits(),
            "epoch {}: saved loss {:?}, val_loss {:?}; loaded {:?}, {:?}",
            want.epoch,
            want.loss,
            want.val_loss,
            got.loss,
            got.val_loss
        );
    }
    assert_eq!(back.history.len(), probe.history.len());
    assert_eq!(
        key(&seen_straight),
        key(&seen_split),
        "epoch metrics as reported"
    );
    assert_eq!(key(&a.history), key(&b.history), "checkpoint history");
    assert_eq!(key(&a.history), key(&seen_straight), "history vs reported");
    assert_eq!(csv_rows(&straight), csv_rows(&split), "metrics.csv");
    assert_eq!(csv_rows(&straight).len(), 3);
    assert_eq!((a.state.epoch, a.state.iterations), (3, 12));
    assert_eq!((b.state.epoch, b.state.iterations), (3, 12));
    assert_eq!(bits(&a.state.params), bits(&b.state.params), "weights");
    assert_eq!(bits(&a.state.adam_m), bits(&b.state.adam_m), "adam m");
    assert_eq!(bits(&a.state.adam_v), bits(&b.state.adam_v), "adam v");
    eprintln!("resume: {:.1}s", t0.elapsed().as_secs_f64());
}

/// `decode(encode(x))` is `reconstruct(x)`, bit for bit, for every model: 260 images (a full
/// inference batch of 256 and a partial one of 4), Glorot weights and random non-zero biases.
///
/// Why bitwise: both paths launch the same kernels on the same batch sizes (inputs are cut
/// into batches of the network's capacity either way, and a code is one image's worth of
/// layer `code_at`'s input), every kernel sums in a fixed order (no atomics), and the code
/// goes through the CPU as f32 bits, unchanged. So the decoder half sees exactly the values
/// the full pass fed it; any difference is a wrong layer range, offset or batch split.
/// Also checked: the code has the code's shape and is what the reference's encoder gives
/// (within the conv and dense kernels' 1e-5, as in `tests/ops`).
#[test]
fn decode_of_encode_is_reconstruct_bitwise() {
    let t0 = Instant::now();
    // Both kernel sets: on the GPU set the encoder's last pool and the decoder's upsamplings
    // are folded into their convolutions, so encode and decode fold what the whole forward
    // pass folds, and the code is read from the folded pool's output.
    for set in KernelSet::ALL {
        decode_of_encode_on(gpu_with(set));
    }
    eprintln!("decode(encode(x)): {:.1}s", t0.elapsed().as_secs_f64());
}

fn decode_of_encode_on(g: &Gpu) {
    let px = MNIST.len() as usize;
    let n = 260;
    let x = to_f32(&images(61, n, px));
    for kind in [ModelKind::Conv, ModelKind::Dense, ModelKind::Deep] {
        let model = Model::new(kind, MNIST).unwrap();
        let mut params = model.init(7);
        let mut r = rng(62);
        for p in model.params.iter().filter(|p| p.fan_in == 0) {
            for v in &mut params[p.offset as usize..(p.offset + p.len) as usize] {
                *v = r.random_range(-0.1..0.1);
            }
        }
        let inf = Inference::new(g, model.clone(), &params).unwrap();
        let codes = inf.encode(g, &x).unwrap();
        assert_eq!(
            codes.len(),
            n * model.code().len() as usize,
            "{kind:?}: code length"
        );
        let want_codes = refmodel::forward(&model, &params, &x, n).acts[model.code_at - 1].clone();
        let scale = max_abs(&want_codes).max(1.0);
        let worst = codes
            .iter()
            .zip(&want_codes)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-5 * scale,
            "{kind:?}: codes off the reference by {worst:.3e} (scale {scale:.3e})"
        );
        let decoded = inf.decode(g, &codes).unwrap();
        let full = inf.reconstruct(g, &x).unwrap();
        assert_eq!(full.len(), n * px, "{kind:?}: reconstruction length");
        assert_eq!(decoded.len(), full.len(), "{kind:?}: decoded length");
        if let Some(i) = (0..full.len()).find(|&i| decoded[i].to_bits() != full[i].to_bits()) {
            panic!(
                "{kind:?}: decode(encode(x))[{i}] = {} but reconstruct(x)[{i}] = {} (image {}, \
                 pixel {})",
                decoded[i],
                full[i],
                i / px,
                i % px
            );
        }
    }
}

/// The folds (`--folds`) change the dispatches, not the results: the conv model trained
/// with every fold, with each one alone and with none, on the GPU kernel set (where `auto`
/// folds all), gives the same epoch losses and final state bit for bit, with 28 dispatches
/// per step fewer with all (the batch's gather in the first convolution; 3 pools and 3
/// upsamplings, forward and backward; 7 reduces as 1;
/// 6 convolutions' input and weight gradients as one dispatch each; the loss gradient in the
/// loss pass; the tiled weight-gradient partials, no fewer; the loss's last sum and Adam's
/// step in the merged reduce, with `reduces` and `adam`, or the sum in Adam's dispatch with
/// `finish` alone; the narrow channel groups and the quads, no fewer); and so do the dense and deep models, whose forward pass, logits' gradient and
/// input gradients the rows fold runs as one dispatch.
/// Batch 16 on 40 images ends each epoch with a partial batch of 8, whose 4x4 layer has few
/// enough chunks for the serial reduce, so both of the merged reduce's paths run.
#[test]
fn folds_change_no_bit_of_training() {
    let t0 = Instant::now();
    let px = MNIST.len() as usize;
    let train_px = images(43, 40, px);
    let test_px = images(44, 20, px);
    // `own`: layers given the narrow, tiled, vec4 and quads variants of their own (as the start-up
    // timing may pick per layer), on top of `folds`.
    let run_noisy = |kind: ModelKind, folds: FoldSet, own: &[&str], noise: f32| {
        let model = Model::new(kind, MNIST).unwrap();
        let cfg = TrainConfig {
            noise,
            ..config(kind, 16, 5)
        };
        let choice = DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Gpu))
            .with_folds(FoldChoice::Set(folds));
        let mut g = common::open_poisoned(&choice);
        assert_eq!(g.folds, folds);
        for layer in own {
            let variants = FoldSet {
                narrow: true,
                tiles: true,
                vec4: true,
                quads: true,
                ..folds
            };
            g.layer_folds.insert(layer.to_string(), variants);
        }
        let mut tr = trainer(&g, &model, &cfg, &train_px, &test_px);
        let (m, state) = train_bits(&mut tr, &g, 2);
        (tr.step_len(), m, state, tr.launches())
    };
    let run_mixed = |kind, folds, own: &[&str]| run_noisy(kind, folds, own, 0.0);
    let run = |kind: ModelKind, folds: FoldSet| {
        let (len, m, state, _) = run_mixed(kind, folds, &[]);
        (len, m, state)
    };
    let only = |k| FoldSet {
        upsample: k == 0,
        pool: k == 1,
        reduces: k == 2,
        backward: k == 3,
        loss: k == 4,
        tiles: k == 5,
        finish: k == 6,
        rows: k == 7,
        vec4: k == 8,
        grads: k == 9,
        narrow: k == 10,
        single: k == 11,
        gather: k == 12,
        quads: k == 13,
        adam: k == 14,
        windows: k == 15,
        textures: k == 16,
        reuse: k == 17,
        lanes: k == 18,
    };
    let pool_and_backward = FoldSet {
        pool: true,
        backward: true,
        ..FoldSet::NONE
    };
    // The quads spread the folded windows: alone they change nothing.
    let windows_in_quads = FoldSet {
        upsample: true,
        pool: true,
        quads: true,
        ..FoldSet::NONE
    };
    // Adam's step and the loss's finish in the merged reduce, without `finish`.
    let reduces_adam = FoldSet {
        reduces: true,
        adam: true,
        ..FoldSet::NONE
    };
    let conv_cases = [
        FoldSet::ALL,
        reduces_adam,
        windows_in_quads,
        only(0),
        only(1),
        only(2),
        only(3),
        only(4),
        only(5),
        only(6),
        only(8),
        only(10),
        only(12),
        pool_and_backward,
    ];
    let rows_single = FoldSet {
        rows: true,
        single: true,
        ..FoldSet::NONE
    };
    let rows_gather = FoldSet {
        rows: true,
        gather: true,
        ..FoldSet::NONE
    };
    let dense_cases = [
        FoldSet::ALL,
        only(4),
        only(6),
        only(7),
        only(8),
        rows_single,
        rows_gather,
    ];
    let mut conv_none = None;
    for (kind, cases) in [
        (ModelKind::Conv, &conv_cases[..]),
        (ModelKind::Dense, &dense_cases[..]),
        (ModelKind::Deep, &[FoldSet::ALL, only(7)][..]),
    ] {
        let none = run(kind, FoldSet::NONE);
        if kind == ModelKind::Conv {
            conv_none = Some(none.clone());
        }
        for &folds in cases {
            let (len, m, state) = run(kind, folds);
            let conv_folds = [folds.upsample, folds.pool, folds.reduces, folds.backward];
            let per_fold = if kind == ModelKind::Conv { 6 } else { 0 };
            // The rows fold replaces a dense stack of L layers' L forward passes, L - 1 input
            // gradients and the logits' gradient (the loss fold's, or a dispatch of its own)
            // by one dispatch.
            let layers = Model::new(kind, MNIST).unwrap().layers.len();
            let rows = folds.rows && kind != ModelKind::Conv;
            let gradient = match rows {
                true => 2 * layers - 1,
                false => folds.loss as usize,
            };
            // With adam the conv model's merged reduce takes Adam's step and the loss's
            // finish: both dispatches go (with finish, the one that held both).
            let adam_in_reduce = kind == ModelKind::Conv && folds.adam && folds.reduces;
            let finish = match adam_in_reduce {
                true => 2,
                false => folds.finish as usize,
            };
            // The gather fold takes the batch's gather into the rows dispatch, or into the
            // first convolution's forward pass.
            let gathers = folds.gather && (rows || kind == ModelKind::Conv);
            let fewer = per_fold * conv_folds.iter().filter(|f| **f).count()
                + gradient
                + finish
                + gathers as usize;
            assert_eq!(len + fewer, none.0, "{kind:?} {folds}: dispatches per step");
            assert_eq!(m, none.1, "{kind:?} {folds}: epoch losses");
            assert!(state == none.2, "{kind:?} {folds}: final state");
        }
    }
    // Per layer: the 7x7 (pooled), 4x4 and first upsampled 8x8 layers narrow, tiled, with
    // vec4 loads and quads, the rest as all but those four say. The same bits, and launches
    // that differ from both uniform choices.
    let rest = FoldSet {
        narrow: false,
        tiles: false,
        vec4: false,
        quads: false,
        ..FoldSet::ALL
    };
    // Denoising: the rows dispatch reads the noisy inputs and the clean targets that the
    // noisy gather writes, so the gather fold leaves that gather be. The same bits.
    let (len, m, state, _) = run_noisy(ModelKind::Dense, FoldSet::ALL, &[], 0.5);
    let rows_only = run_noisy(ModelKind::Dense, only(7), &[], 0.5);
    assert_eq!(
        len,
        rows_only.0 - 1,
        "noisy dense: dispatches per step (finish only)"
    );
    let noisy_none = run_noisy(ModelKind::Dense, FoldSet::NONE, &[], 0.5);
    assert_eq!(m, noisy_none.1, "noisy dense: epoch losses");
    assert!(state == noisy_none.2, "noisy dense: final state");
    let none = conv_none.unwrap();
    let own = ["conv2d_2", "conv2d_3", "conv2d_4"];
    let (_, m, state, mixed) = run_mixed(ModelKind::Conv, rest, &own);
    assert_eq!(m, none.1, "per-layer variants: epoch losses");
    assert!(state == none.2, "per-layer variants: final state");
    let (.., uniform) = run_mixed(ModelKind::Conv, rest, &[]);
    let (.., all) = run_mixed(ModelKind::Conv, FoldSet::ALL, &[]);
    assert!(
        mixed != uniform && mixed != all,
        "per-layer variants ran no launch of their own"
    );
    eprintln!("folds: {:.1}s", t0.elapsed().as_secs_f64());
}

/// `--steps-per-execution` changes how steps reach the GPU, not what they compute: the
/// dense and conv models trained two epochs with 1 step per submit, and with 7, 16 (the
/// value `auto` takes on a GPU) and 40 (the whole epoch, one execution), give the same epoch
/// losses and final state bit for bit, and
/// the dense model's first epoch matches the reference's losses. 204 images in batches of 8
/// make 26 steps an epoch, the last of 4: executions of 7 end at 7, 14, 21 (with the running
/// loss's reading) and 26, and the last one of 7 and of 16 mixes the two plans; 36 test
/// images make five validation batches, the last of 4. With 7, the first epoch also pauses
/// before step 10 (inside an execution) and continues from there, as a mid-epoch checkpoint
/// or Ctrl-C does. The dense model runs twice: under its adapter's folds, and with all of them,
/// where the rows dispatch gathers its own batch (`gather`) and so holds each step's offset;
/// and so does the conv model, the second time on the GPU set with all folds, where the
/// merged weight-gradient reduce takes each step's Adam step and loss slot (`adam`).
#[test]
fn steps_per_execution_change_no_bit_of_training() {
    let t0 = Instant::now();
    let px = MNIST.len() as usize;
    let train_px = images(47, 204, px);
    let test_px = images(48, 36, px);
    let all = FoldChoice::Set(FoldSet::ALL);
    let gpu_set = Some(KernelChoice::Set(KernelSet::Gpu));
    for (kind, folds, kernels) in [
        (ModelKind::Dense, FoldChoice::Auto, None),
        (ModelKind::Dense, all, None),
        (ModelKind::Conv, FoldChoice::Auto, None),
        (ModelKind::Conv, all, gpu_set),
    ] {
        let run = |per: usize, pause_at: Option<usize>| {
            let model = Model::new(kind, MNIST).unwrap();
            let cfg = config(kind, 8, 9);
            let choice = match kernels {
                Some(k) => DeviceChoice::new(common::adapter_choice(), k),
                None => common::device_choice(),
            };
            let choice = choice
                .with_folds(folds)
                .with_steps_per_execution(StepsPerExecution::Set(per));
            let g = common::open_poisoned(&choice);
            let mut tr = trainer(&g, &model, &cfg, &train_px, &test_px);
            // At most an epoch's steps.
            assert_eq!(tr.steps_per_execution(), per.min(26));
            // With all folds the dense step gathers its batch in its rows dispatch, and the
            // conv step in its first convolution, whose uniform slots then hold the batch
            // offsets.
            let gathers_in_rows = tr.launches().iter().any(|(s, _)| s.entry == "rows_gather");
            let wanted = kind == ModelKind::Dense && g.folds.rows && g.folds.gather;
            assert_eq!(gathers_in_rows, wanted, "{kind:?} {folds:?}: rows_gather");
            let batch_dispatch = tr
                .launches()
                .iter()
                .any(|(s, _)| s.shader.ends_with("batch"));
            let wanted = !(g.folds.gather && (kind == ModelKind::Conv || g.folds.rows));
            assert_eq!(batch_dispatch, wanted, "{kind:?} {folds:?}: batch.gather");
            let adam_in_reduce = tr
                .launches()
                .iter()
                .any(|(s, _)| s.entry == "backward_weight_reduce_adam");
            let wanted = kind == ModelKind::Conv && kernels.is_some();
            assert_eq!(
                adam_in_reduce, wanted,
                "{kind:?} {folds:?}: reduce with Adam"
            );
            assert!(folds != all || g.folds == FoldSet::ALL);
            let mut m = Vec::new();
            let first = match pause_at {
                None => tr.train_epoch(&g, &mut |_, _| {}).unwrap(),
                Some(at) => epoch_paused_at(&mut tr, &g, at),
            };
            m.push(first);
            m.push(tr.train_epoch(&g, &mut |_, _| {}).unwrap());
            assert_eq!(tr.iterations, 52);
            let m: Vec<(u64, u64)> = m
                .iter()
                .map(|m| (m.loss.to_bits(), m.val_loss.to_bits()))
                .collect();
            let s = tr.state(&g).unwrap();
            (m, (bits(&s.params), bits(&s.adam_m), bits(&s.adam_v)))
        };
        let one = run(1, None);
        if kind == ModelKind::Dense {
            // Anchored to the reference, so that a fault shared by every value (a slot never
            // written, say) cannot pass as agreement.
            let model = Model::new(kind, MNIST).unwrap();
            let cfg = config(kind, 8, 9);
            let r = reference_epoch(&model, &cfg, &initial_state(&model, cfg.seed), &train_px);
            let val = reference_eval(&model, &cfg, &r.state.params, &test_px);
            let (loss, val_loss) = one.0[0];
            assert_loss("epoch 1 loss", f64::from_bits(loss), r.loss);
            assert_loss("epoch 1 val_loss", f64::from_bits(val_loss), val);
        }
        for (per, pause_at) in [(7, Some(10)), (16, None), (40, None)] {
            let (m, state) = run(per, pause_at);
            assert_eq!(
                m, one.0,
                "{kind:?} {folds:?}, {per} per submit: epoch losses"
            );
            assert!(
                state == one.1,
                "{kind:?} {folds:?}, {per} per submit: final state"
            );
        }
    }
    eprintln!("steps per execution: {:.1}s", t0.elapsed().as_secs_f64());
}

/// The grads fold runs only from a batch of 128 on (the per-layer weight gradients' split):
/// the dense and deep models at batch 128 (300 images: two full batches and one of 44, which
/// keeps the per-layer weight gradients and Adam's own dispatch), two epochs, give the
/// unfolded losses and final state bit for bit, with 3 dispatches per step recorded alone
/// with all folds (rows gathering the batch, grads with Adam's step, and the loss's finish,
/// which an execution of several steps runs once after its last) where the unfolded step
/// has 10 (dense) or 22 (deep); 3 with all but `adam` (rows, grads, Adam with the loss's
/// finish); and 5 with rows and grads alone (the batch gather's own dispatch, and the loss's
/// finish after the backward pass that sums the loss's partials). With all folds also at 16
/// steps per submit (an epoch in one execution, whose finish covers two steps' regions and
/// skips the third's, a batch that keeps Adam's dispatch) and at 2 per submit pausing before
/// the second epoch's second step, as a checkpoint does: an execution of one step, then one
/// whose finish covers a region the first epoch filled and that no step of it fills again
/// (its second step keeps Adam's dispatch), so a region not cleared once finished would
/// write the first epoch's loss over the second's (in the same dispatch as the fresh one:
/// which lands last is the driver's order; the ops test's second run of the finish checks
/// the clearing whatever the order). Under WebGPU's default limits (8 storage buffers per
/// stage) all folds keep Adam's dispatch, the same bits. And 400 images at batch 136 (two
/// full batches and one of 128, every step folded, two plans sharing one execution's
/// regions with different partial counts) give the unfolded bits at 16 per submit.
#[test]
fn grads_fold_changes_no_bit_of_training() {
    let t0 = Instant::now();
    let px = MNIST.len() as usize;
    let train_px = images(45, 300, px);
    let test_px = images(46, 20, px);
    let rows_grads = FoldSet {
        rows: true,
        grads: true,
        ..FoldSet::NONE
    };
    let without_adam = FoldSet {
        adam: false,
        ..FoldSet::ALL
    };
    for (kind, unfolded) in [(ModelKind::Dense, 10), (ModelKind::Deep, 22)] {
        let run_on = |folds: FoldSet, per: usize, pause_at: Option<usize>, limits: LimitSet| {
            let model = Model::new(kind, MNIST).unwrap();
            let cfg = config(kind, 128, 5);
            let choice =
                DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Gpu))
                    .with_folds(FoldChoice::Set(folds))
                    .with_steps_per_execution(StepsPerExecution::Set(per));
            let g = Gpu::with_limits(&choice, limits)
                .map(Gpu::with_workgroup_poison)
                .unwrap();
            let mut tr = trainer(&g, &model, &cfg, &train_px, &test_px);
            let entries: Vec<&str> = tr.launches().iter().map(|(s, _)| s.entry).collect();
            // The finish is the one dispatch an execution shares (profile says so).
            let shared = entries.contains(&"loss_finish_steps") as usize;
            assert_eq!(
                tr.shared_step_len(),
                shared,
                "{kind:?} {folds}: shared dispatches"
            );
            let mut m = Vec::new();
            for epoch in 0..2 {
                let metrics = match pause_at.filter(|_| epoch == 1) {
                    None => tr.train_epoch(&g, &mut |_, _| {}).unwrap(),
                    Some(at) => epoch_paused_at(&mut tr, &g, at),
                };
                m.push((metrics.loss.to_bits(), metrics.val_loss.to_bits()));
            }
            let s = tr.state(&g).unwrap();
            let state = (bits(&s.params), bits(&s.adam_m), bits(&s.adam_v));
            (tr.step_len(), m, state, entries.join(" "))
        };
        let run = |folds, per, pause_at| run_on(folds, per, pause_at, LimitSet::Adapter);
        let none = run(FoldSet::NONE, 1, None);
        // Under WebGPU's 8 storage buffers per stage the weight gradients keep Adam's own
        // dispatch (with the loss's finish): the same bits.
        let (l, m, state, entries) = run_on(FoldSet::ALL, 16, None, LimitSet::WebGpuDefaults);
        let what = format!("{kind:?} under WebGPU's default limits");
        assert_eq!(entries, "rows_gather grads_all step_loss_finish", "{what}");
        assert_eq!(l, 3, "{what}: dispatches per step");
        assert_eq!(m, none.1, "{what}: epoch losses");
        assert!(state == none.2, "{what}: final state");
        assert_eq!(none.0, unfolded, "{kind:?}: unfolded dispatches");
        let cases = [
            (FoldSet::ALL, 1, None, 3),
            (FoldSet::ALL, 16, None, 3),
            (FoldSet::ALL, 2, Some(1), 3),
            (without_adam, 1, None, 3),
            (rows_grads, 1, None, 5),
        ];
        for (folds, per, pause_at, len) in cases {
            let what = format!("{kind:?} {folds}, {per} per submit, pause {pause_at:?}");
            let (l, m, state, entries) = run(folds, per, pause_at);
            assert_eq!(l, len, "{what}: dispatches per step");
            let adam_in_grads = entries == "rows_gather grads_adam loss_finish_steps";
            assert_eq!(adam_in_grads, folds.adam, "{what}: the step runs {entries}");
            assert_eq!(m, none.1, "{what}: epoch losses");
            assert!(state == none.2, "{what}: final state");
        }
    }
    // Two plans that both fold, in one execution: 136, 136 and 128.
    let train_px = images(49, 400, px);
    let two_plans = |folds: FoldSet, per: usize| {
        let model = Model::new(ModelKind::Dense, MNIST).unwrap();
        let cfg = config(ModelKind::Dense, 136, 5);
        let choice = DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Gpu))
            .with_folds(FoldChoice::Set(folds))
            .with_steps_per_execution(StepsPerExecution::Set(per));
        let g = common::open_poisoned(&choice);
        let mut tr = trainer(&g, &model, &cfg, &train_px, &test_px);
        let m = tr.train_epoch(&g, &mut |_, _| {}).unwrap();
        let s = tr.state(&g).unwrap();
        let state = (bits(&s.params), bits(&s.adam_m), bits(&s.adam_v));
        ((m.loss.to_bits(), m.val_loss.to_bits()), state)
    };
    let (none, all) = (two_plans(FoldSet::NONE, 1), two_plans(FoldSet::ALL, 16));
    assert_eq!(all.0, none.0, "two folded plans: epoch losses");
    assert!(all.1 == none.1, "two folded plans: final state");
    eprintln!("grads fold: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Folds forced on the CPU set (`--kernels cpu --folds all`): the folded layers run the GPU
/// set's kernels there, and the ReLU masks the CPU set otherwise applies in the pool and
/// upsample backward passes must then come from the convolutions themselves; and the deep
/// model's rows fold leaves its weight gradients to the CPU set's kernels, which read the
/// activations and gradients it wrote. One step of each against the reference, as
/// `one_training_step_matches_reference_conv`.
#[test]
fn one_training_step_with_folds_on_the_cpu_set_matches_reference() {
    let choice = DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Cpu))
        .with_folds(FoldChoice::Set(FoldSet::ALL));
    let g = common::open_poisoned(&choice);
    for kind in [ModelKind::Conv, ModelKind::Deep] {
        one_step_on(&g, kind.into(), 3, 0.0, TOL_GRAD);
    }
}

/// A Sequential of the given layers after a 28x28x1 input, written to a temporary file: the
/// file and its model choice.
fn keras_sequential(
    name: &str,
    layers: Vec<serde_json::Value>,
) -> (tempfile::TempDir, ModelChoice) {
    let input = keras_layer(
        "InputLayer",
        serde_json::json!({"name": "in", "batch_shape": [null, 28, 28, 1]}),
    );
    let all: Vec<serde_json::Value> = std::iter::once(input).chain(layers).collect();
    let model =
        serde_json::json!({"class_name": "Sequential", "config": {"name": name, "layers": all}});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.json"));
    std::fs::write(&path, model.to_string()).unwrap();
    let choice = ModelChoice::from_arg(path.to_str().unwrap()).unwrap();
    (dir, choice)
}

fn keras_layer(class: &str, config: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"module": "keras.layers", "class_name": class, "config": config})
}

/// A 3x3 Conv2D or Conv2DTranspose ('same', ReLU unless `act` says otherwise).
fn keras_conv(class: &str, name: &str, filters: u32, strides: u32, act: &str) -> serde_json::Value {
    keras_layer(
        class,
        serde_json::json!({"name": name, "filters": filters, "kernel_size": [3, 3],
            "strides": [strides, strides], "padding": "same", "activation": act}),
    )
}

fn keras_pool(name: &str) -> serde_json::Value {
    keras_layer(
        "MaxPooling2D",
        serde_json::json!({"name": name, "pool_size": [2, 2], "padding": "same"}),
    )
}

/// The CPU set's strided maps inside the convolutions, where they meet what the shipped
/// files do not (from a review): a transposed layer on a 4x4 code whose inserted-input weight
/// gradient (four bias rows) outgrows every other layout of every layer at batch 2 (9,344
/// floats against its GPU-set layout's 9,248), so the scratch must be sized for it; and, with every fold forced (`--folds all`), a transposed
/// layer followed by a max pool and an upsampling followed by a strided Conv2D, where the
/// strided map keeps its fold and the pool or upsampling runs as a layer of its own. One step
/// of each against the reference.
#[test]
fn strided_maps_on_the_cpu_set_meet_small_batches_and_other_folds() {
    let (_small, small) = keras_sequential(
        "small_code",
        vec![
            keras_pool("p1"),
            keras_pool("p2"),
            keras_pool("p3"),
            keras_conv("Conv2D", "c1", 32, 1, "relu"),
            keras_conv("Conv2DTranspose", "t1", 32, 2, "relu"),
            keras_conv("Conv2DTranspose", "t2", 1, 2, "relu"),
            keras_layer(
                "UpSampling2D",
                serde_json::json!({"name": "up", "size": [2, 2]}),
            ),
            keras_layer(
                "Conv2D",
                serde_json::json!({"name": "c2", "filters": 1, "kernel_size": [3, 3], "padding": "valid", "activation": "relu"}),
            ),
            keras_layer(
                "Conv2D",
                serde_json::json!({"name": "c3", "filters": 1, "kernel_size": [3, 3], "padding": "valid", "activation": "sigmoid"}),
            ),
        ],
    );
    one_step_on(common::gpu_with(KernelSet::Cpu), small, 2, 0.0, TOL_GRAD);
    let (_pooled, pooled) = keras_sequential(
        "transpose_then_pool",
        vec![
            keras_conv("Conv2D", "c1", 8, 1, "relu"),
            keras_conv("Conv2DTranspose", "t1", 8, 2, "relu"),
            keras_pool("p1"),
            keras_conv("Conv2D", "c2", 1, 1, "sigmoid"),
        ],
    );
    let (_upsampled, upsampled) = keras_sequential(
        "upsample_then_stride",
        vec![
            keras_conv("Conv2D", "c1", 8, 1, "relu"),
            keras_layer(
                "UpSampling2D",
                serde_json::json!({"name": "up", "size": [2, 2]}),
            ),
            keras_conv("Conv2D", "s1", 8, 2, "relu"),
            keras_conv("Conv2D", "c2", 1, 1, "sigmoid"),
        ],
    );
    let choice = DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Cpu))
        .with_folds(FoldChoice::Set(FoldSet::ALL));
    let g = common::open_poisoned(&choice);
    for m in [pooled, upsampled] {
        one_step_on(&g, m, 3, 0.0, TOL_GRAD);
    }
}

/// Two Trainers, same seed and data: the same epoch losses and final state, bit for bit
/// (DESIGN.md §3: tree reductions, no float atomics).
#[test]
fn same_seed_same_losses_bitwise() {
    let t0 = Instant::now();
    let g = gpu();
    let px = MNIST.len() as usize;
    let train_px = images(41, 40, px);
    let test_px = images(42, 20, px);
    for kind in [ModelKind::Dense, ModelKind::Conv] {
        let model = Model::new(kind, MNIST).unwrap();
        let cfg = config(kind, 16, 17);
        let run = || {
            let mut tr = trainer(g, &model, &cfg, &train_px, &test_px);
            let m: Vec<(u64, u64)> = (0..2)
                .map(|_| {
                    let m = tr.train_epoch(g, &mut |_, _| {}).unwrap();
                    (m.loss.to_bits(), m.val_loss.to_bits())
                })
                .collect();
            let s = tr.state(g).unwrap();
            (m, bits(&s.params), bits(&s.adam_m), bits(&s.adam_v))
        };
        let (a, b) = (run(), run());
        assert_eq!(a.0, b.0, "{kind:?}: epoch losses");
        assert!(
            a.1 == b.1 && a.2 == b.2 && a.3 == b.3,
            "{kind:?}: final state"
        );
    }
    eprintln!("determinism: {:.1}s", t0.elapsed().as_secs_f64());
}

/// The start-up search over folds (`train::tune::search`) on a made-up cost per fold left out:
/// it leaves out what makes the step faster by more than the margin (`pool`, and `rows` with
/// the `grads` that needs it, but not `gather` or `adam`, which a conv model's first
/// convolution and reduce take without them), keeps what saves less (`finish`, half the margin) or costs (`grads` alone),
/// does not time a set whose step is one timed already (`upsample`, which this "model" has
/// nothing for), and tries `grads`, `gather` and `adam` alone before `rows`.
#[test]
fn fold_search_leaves_out_only_what_is_slower_past_the_margin() {
    use wgsl_autoencoder::train::tune::{search, MARGIN, TRY_ORDER};
    // A fold the search never leaves out would be kept everywhere, untimed.
    let mut tried = TRY_ORDER.to_vec();
    let mut names = FoldSet::NAMES.to_vec();
    tried.sort();
    names.sort();
    assert_eq!(tried, names, "the search should try leaving out every fold");
    let saving = |name: &str| match name {
        "pool" => 10.0,
        // Half the margin of a 100 µs step: kept.
        "finish" => 50.0 * MARGIN,
        "rows" => 20.0,
        "grads" => -5.0,
        _ => 0.0,
    };
    let mut seen: Vec<FoldSet> = Vec::new();
    let mut asked = Vec::new();
    let (picked, trials) = search(FoldSet::ALL, |set| {
        asked.push(set);
        // The same step: upsample has nothing to fold here.
        let step = FoldSet {
            upsample: true,
            ..set
        };
        if seen.contains(&step) {
            return Ok(None);
        }
        seen.push(step);
        // `without` finds a fold only where it is on.
        let off: f64 = FoldSet::NAMES
            .iter()
            .filter(|n| set.without(n).is_none())
            .map(|n| saving(n))
            .sum();
        Ok(Some((10, 100.0 - off)))
    })
    .unwrap();
    let want = FoldSet {
        pool: false,
        rows: false,
        grads: false,
        ..FoldSet::ALL
    };
    assert_eq!(picked, want, "{trials:?}");
    let names: Vec<&str> = trials.iter().map(|t| t.folds.as_str()).collect();
    assert_eq!(names[0], "all");
    assert!(
        !names.contains(&FoldSet::ALL.without("upsample").unwrap().name().as_str()),
        "a step already timed was timed again: {names:?}"
    );
    // A fold that needs rows (off in `without`) is left out alone before rows is.
    let before_rows = |without: fn(&FoldSet) -> bool| {
        let alone = asked.iter().position(|s| s.rows && without(s));
        let rows = asked.iter().position(|s| !s.rows);
        alone.zip(rows).is_some_and(|(alone, rows)| alone < rows)
    };
    assert!(
        before_rows(|s| !s.grads),
        "grads alone should be tried before rows: {asked:?}"
    );
    assert!(
        before_rows(|s| !s.gather),
        "gather alone should be tried before rows: {asked:?}"
    );
    assert!(
        before_rows(|s| s.grads && !s.adam),
        "adam alone should be tried before grads and rows: {asked:?}"
    );
    // Kept within the margin.
    assert!(picked.finish && picked.grads == picked.rows);
    assert_eq!(FoldSet::ALL.without("rows").map(|s| s.grads), Some(false));
    // gather also takes a conv model's batch, and adam its Adam step, which need neither.
    assert_eq!(FoldSet::ALL.without("rows").map(|s| s.gather), Some(true));
    assert_eq!(FoldSet::ALL.without("rows").map(|s| s.adam), Some(true));
    assert_eq!(FoldSet::ALL.without("grads").map(|s| s.adam), Some(true));
    assert_eq!(FoldSet::NONE.without("pool"), None);
}

/// `--folds gather` has a model's first convolution gather its batch only where its outputs
/// cover every input pixel once and the inputs are the targets; elsewhere the gather dispatch
/// stays: the conv model with `--noise` (the noisy gather), a 'valid' first convolution, and
/// a 'valid' pool that drops an odd row after it. Where only a reshape comes first (a 28x28
/// image read as 14x56), the convolution after it gathers, and trains the same bits as
/// without the fold (one epoch of 24 images in batches of 8 at 3 steps per submit, each
/// step's offset in its own uniform slot).
#[test]
fn gather_folds_into_the_first_convolution_only_where_it_covers_every_pixel() {
    let layer = |class: &str, config: serde_json::Value| serde_json::json!({"module": "keras.layers", "class_name": class, "config": config});
    let conv = |name: &str, filters, padding: &str, act: &str| {
        layer(
            "Conv2D",
            serde_json::json!({"name": name, "filters": filters, "kernel_size": [3, 3],
                "strides": [1, 1], "padding": padding, "activation": act}),
        )
    };
    let input = layer(
        "InputLayer",
        serde_json::json!({"name": "in", "batch_shape": [null, 28, 28, 1]}),
    );
    let reshape = |name: &str, shape: [u32; 3]| {
        layer(
            "Reshape",
            serde_json::json!({"name": name, "target_shape": shape}),
        )
    };
    let dense_out = [
        layer("Flatten", serde_json::json!({"name": "flat"})),
        layer(
            "Dense",
            serde_json::json!({"name": "out", "units": 784, "activation": "sigmoid"}),
        ),
        reshape("image", [28, 28, 1]),
    ];
    let sequential = |name: &str, layers: Vec<serde_json::Value>| serde_json::json!({"class_name": "Sequential", "config": {"name": name, "layers": layers}});
    let reshaped = sequential(
        "reshaped",
        vec![
            input.clone(),
            reshape("wide", [14, 56, 1]),
            conv("c", 4, "same", "relu"),
            conv("c_1", 1, "same", "sigmoid"),
            reshape("back", [28, 28, 1]),
        ],
    );
    let mut valid = vec![input.clone(), conv("c", 4, "valid", "relu")];
    valid.extend(dense_out.iter().cloned());
    let mut odd_pool = vec![
        input,
        reshape("tall", [7, 112, 1]),
        conv("c", 4, "same", "relu"),
    ];
    odd_pool.push(layer(
        "MaxPooling2D",
        serde_json::json!({"name": "pool", "pool_size": [2, 2], "padding": "valid"}),
    ));
    odd_pool.extend(dense_out.iter().cloned());
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, model: serde_json::Value| {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, model.to_string()).unwrap();
        ModelChoice::from_arg(path.to_str().unwrap()).unwrap()
    };
    let px = MNIST.len() as usize;
    let (train_px, test_px) = (images(61, 24, px), images(62, 8, px));
    let run = |choice: &ModelChoice, noise: f32, folds: FoldSet, epochs: usize| {
        let model = Model::new(choice.clone(), MNIST).unwrap();
        let cfg = TrainConfig {
            noise,
            ..config(choice.clone(), 8, 7)
        };
        let device = DeviceChoice::new(common::adapter_choice(), KernelChoice::Set(KernelSet::Gpu))
            .with_folds(FoldChoice::Set(folds))
            .with_steps_per_execution(StepsPerExecution::Set(3));
        let g = common::open_poisoned(&device);
        let mut tr = trainer(&g, &model, &cfg, &train_px, &test_px);
        let launches = tr.launches();
        let gather = launches.iter().any(|(s, _)| s.shader == "batch");
        let in_conv = launches
            .iter()
            .any(|(s, l)| s.shader == "conv2d" && l.contains("GATHER=1"));
        assert!(
            gather != in_conv,
            "{choice:?} noise {noise}: one gather, not {launches:?}"
        );
        (in_conv, train_bits(&mut tr, &g, epochs))
    };
    let cases = [
        (ModelChoice::from(ModelKind::Conv), 0.0, true),
        (ModelChoice::from(ModelKind::Conv), 0.5, false),
        (file("reshaped", reshaped), 0.0, true),
        (file("valid", sequential("valid", valid)), 0.0, false),
        (
            file("odd_pool", sequential("odd_pool", odd_pool)),
            0.0,
            false,
        ),
    ];
    for (choice, noise, gathers) in &cases {
        let (in_conv, _) = run(choice, *noise, FoldSet::ALL, 0);
        assert_eq!(in_conv, *gathers, "{choice:?} noise {noise}");
    }
    let reshaped = &cases[2].0;
    let (_, none) = run(reshaped, 0.0, FoldSet::NONE, 1);
    let only_gather = FoldSet {
        gather: true,
        ..FoldSet::NONE
    };
    let (in_conv, gathered) = run(reshaped, 0.0, only_gather, 1);
    assert!(in_conv);
    assert!(
        gathered == none,
        "a reshaped first convolution's gather changed the bits"
    );
}
