//! Dense: `y = x · W + b`, as `shaders/dense.wgsl` and Keras: x `[n, fin]`, W `[fin, fout]`
//! (index `i·fout + o`), b `[fout]`, y `[n, fout]`; ReLU optionally fused.
//!
//! As in [`super::conv2d`], all four functions walk the same (output, input, weight) index
//! triples ([`for_each_term`]); each backward is the forward's multiply-add transposed. The
//! backward functions take `dy` already masked by the ReLU.
use super::{expect_len, to_f32, to_f64};
use crate::shapes::DenseShape;

/// Calls `f(y_index, x_index, w_index)` for every multiply-add of the forward pass.
pub fn for_each_term(s: &DenseShape, mut f: impl FnMut(usize, usize, usize)) {
    let (n, fin, fout) = (s.n as usize, s.fin as usize, s.fout as usize);
    for r in 0..n {
        for i in 0..fin {
            for o in 0..fout {
                f(r * fout + o, r * fin + i, i * fout + o);
            }
        }
    }
}

/// `y = x · W + b`, then `max(y, 0)` if `relu`.
pub fn forward_f64(s: &DenseShape, relu: bool, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    expect_len("dense::forward", "x", x.len(), s.input_len());
    expect_len("dense::forward", "kernel", w.len(), s.weight_len());
    expect_len("dense::forward", "bias", b.len(), s.fout as u64);
    let fout = s.fout as usize;
    let mut y: Vec<f64> = (0..s.output_len() as usize).map(|i| b[i % fout]).collect();
    for_each_term(s, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    if relu {
        for v in &mut y {
            *v = v.max(0.0);
        }
    }
    y
}

/// `dx = dy · Wᵀ`.
pub fn backward_input_f64(s: &DenseShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    expect_len("dense::backward_input", "dy", dy.len(), s.output_len());
    expect_len("dense::backward_input", "kernel", w.len(), s.weight_len());
    let mut dx = vec![0.0; s.input_len() as usize];
    for_each_term(s, |yi, xi, wi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// `dW = xᵀ · dy`, summed over the batch.
pub fn backward_weight_f64(s: &DenseShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    expect_len("dense::backward_weight", "x", x.len(), s.input_len());
    expect_len("dense::backward_weight", "dy", dy.len(), s.output_len());
    let mut dw = vec![0.0; s.weight_len() as usize];
    for_each_term(s, |yi, xi, wi| dw[wi] += x[xi] * dy[yi]);
    dw
}

/// `db[o] = Σ_r dy[r, o]`.
pub fn backward_bias_f64(s: &DenseShape, dy: &[f64]) -> Vec<f64> {
    expect_len("dense::backward_bias", "dy", dy.len(), s.output_len());
    let fout = s.fout as usize;
    let mut db = vec![0.0; fout];
    for (i, &g) in dy.iter().enumerate() {
        db[i % fout] += g;
    }
    db
}

/// `f32` face of [`forward_f64`].
pub fn forward(s: &DenseShape, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    to_f32(&forward_f64(s, relu, &to_f64(x), &to_f64(w), &to_f64(b)))
}

/// `f32` face of [`backward_input_f64`].
pub fn backward_input(s: &DenseShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    to_f32(&backward_input_f64(s, &to_f64(dy), &to_f64(w)))
}

/// `f32` face of [`backward_weight_f64`].
pub fn backward_weight(s: &DenseShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    to_f32(&backward_weight_f64(s, &to_f64(x), &to_f64(dy)))
}

/// `f32` face of [`backward_bias_f64`].
pub fn backward_bias(s: &DenseShape, dy: &[f32]) -> Vec<f32> {
    to_f32(&backward_bias_f64(s, &to_f64(dy)))
}
