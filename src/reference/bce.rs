//! Binary cross-entropy from the logits, as `shaders/bce.wgsl` and as Keras computes it after a
//! sigmoid output layer:
//!
//! ℓ(z, t) = max(z, 0) − z·t + ln(1 + e^(−|z|)), loss = mean of ℓ over every element;
//! ∂loss/∂z = (σ(z) − t) / count.
use super::activation::sigmoid;
use super::{expect_len, to_f32, to_f64};

/// ℓ(z, t) for one element; `ln_1p` keeps the small tail accurate.
pub fn element_loss(z: f64, t: f64) -> f64 {
    z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()
}

/// The mean of ℓ over every element (0 for empty input).
pub fn loss_f64(z: &[f64], t: &[f64]) -> f64 {
    expect_len("bce::loss", "target", t.len(), z.len() as u64);
    if z.is_empty() {
        return 0.0;
    }
    let sum: f64 = z.iter().zip(t).map(|(&zi, &ti)| element_loss(zi, ti)).sum();
    sum / z.len() as f64
}

/// The gradient of [`loss_f64`] with respect to the logits: `(σ(z) − t) / count`.
pub fn sigmoid_backward_f64(z: &[f64], t: &[f64]) -> Vec<f64> {
    expect_len("bce::sigmoid_backward", "target", t.len(), z.len() as u64);
    let count = z.len() as f64;
    z.iter()
        .zip(t)
        .map(|(&zi, &ti)| (sigmoid(zi) - ti) / count)
        .collect()
}

/// The mean binary cross-entropy of the logits `z` against the targets `t`, in `f64`.
pub fn loss(z: &[f32], t: &[f32]) -> f64 {
    loss_f64(&to_f64(z), &to_f64(t))
}

/// `(σ(z) − t) / count`: the gradient of [`loss`] with respect to the logits.
pub fn sigmoid_backward(z: &[f32], t: &[f32]) -> Vec<f32> {
    to_f32(&sigmoid_backward_f64(&to_f64(z), &to_f64(t)))
}
