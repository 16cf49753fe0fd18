//! ReLU and sigmoid, elementwise, as `shaders/activation.wgsl`.
//!
//! ReLU's gradient is 0 at `x <= 0` (Keras); `relu_backward` masks with a saved tensor, the
//! forward input or output (both are > 0 at the same places). `sigmoid_backward` takes the
//! saved sigmoid output `y`: dσ/dz = y·(1 − y).
use super::{expect_len, to_f32, to_f64};

/// The logistic function without overflow: `exp` only ever sees a non-positive argument.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `max(x, 0)`.
pub fn relu_forward_f64(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect()
}

/// `dy` where `saved > 0`, else 0.
pub fn relu_backward_f64(saved: &[f64], dy: &[f64]) -> Vec<f64> {
    expect_len(
        "activation::relu_backward",
        "dy",
        dy.len(),
        saved.len() as u64,
    );
    saved
        .iter()
        .zip(dy)
        .map(|(&s, &g)| if s > 0.0 { g } else { 0.0 })
        .collect()
}

/// `sigmoid(x)` elementwise.
pub fn sigmoid_forward_f64(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| sigmoid(v)).collect()
}

/// `dy · y · (1 − y)`, with `y` the saved sigmoid output.
pub fn sigmoid_backward_f64(y: &[f64], dy: &[f64]) -> Vec<f64> {
    expect_len(
        "activation::sigmoid_backward",
        "dy",
        dy.len(),
        y.len() as u64,
    );
    y.iter().zip(dy).map(|(&s, &g)| g * s * (1.0 - s)).collect()
}

/// `max(x, 0)`.
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    to_f32(&relu_forward_f64(&to_f64(x)))
}

/// `dy` where `saved > 0`, else 0.
pub fn relu_backward(saved: &[f32], dy: &[f32]) -> Vec<f32> {
    to_f32(&relu_backward_f64(&to_f64(saved), &to_f64(dy)))
}

/// `sigmoid(x)` elementwise.
pub fn sigmoid_forward(x: &[f32]) -> Vec<f32> {
    to_f32(&sigmoid_forward_f64(&to_f64(x)))
}

/// `dy · y · (1 − y)`, with `y` the saved sigmoid output.
pub fn sigmoid_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    to_f32(&sigmoid_backward_f64(&to_f64(y), &to_f64(dy)))
}
