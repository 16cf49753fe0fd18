//! dense: forward (with and without ReLU), backward input, weight and bias.
//! Tolerance: 1e-5 of the output's scale (f32 sums of at most 784 products).
use crate::weighted::{self, Weighted};
use wgsl_autoencoder::gpu::{Dispatch, Gpu, Tensor};
use wgsl_autoencoder::ops::dense::{self, GradOut};
use wgsl_autoencoder::shapes::DenseShape;
use wgsl_autoencoder::{reference, Result};

const TOL: f64 = 1e-5;

fn shapes() -> Vec<DenseShape> {
    let s = |n, fin, fout| DenseShape { n, fin, fout };
    // odd, then the dense and deep models' layers, batch 3 (long sums over 784 inputs or
    // outputs take the split-K kernels), then a batch of 130 (split-K weight gradients)
    vec![
        s(130, 20, 9),
        s(130, 784, 32),
        s(3, 7, 5),
        s(1, 1, 1),
        s(3, 784, 32),
        s(3, 32, 784),
        s(3, 784, 128),
        s(3, 128, 64),
        s(3, 64, 32),
    ]
}

impl Weighted for DenseShape {
    const W_RANGE: f32 = 0.3;
    fn input_len(&self) -> u64 {
        DenseShape::input_len(self)
    }
    fn output_len(&self) -> u64 {
        DenseShape::output_len(self)
    }
    fn weight_len(&self) -> u64 {
        DenseShape::weight_len(self)
    }
    fn bias_len(&self) -> u64 {
        self.fout as u64
    }
    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        reference::dense::forward(self, relu, x, w, b)
    }
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        reference::dense::backward_input(self, dy, w)
    }
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        reference::dense::backward_weight(self, x, dy)
    }
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32> {
        reference::dense::backward_bias(self, dy)
    }
    fn forward(
        &self,
        g: &Gpu,
        relu: bool,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::forward(g, "t", self, relu, x, w, b, y)?])
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::backward_input(g, "t", self, go, w, dx)?])
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::backward_weight(g, "t", self, go, x, dw)?])
    }
    fn backward_bias(&self, g: &Gpu, go: &GradOut, db: &Tensor) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::backward_bias(g, "t", self, go, db)?])
    }
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        dense::backward_params(g, "t", self, go, x, dw, db)
    }
}

#[test]
fn dense_forward_matches_reference() {
    weighted::forward(&shapes(), 0, TOL);
}

#[test]
fn dense_backward_input_matches_reference() {
    weighted::backward_input(&shapes(), 10, TOL);
}

#[test]
fn dense_backward_weight_matches_reference() {
    weighted::backward_weight(&shapes(), 20, TOL);
}

#[test]
fn dense_backward_bias_matches_reference() {
    weighted::backward_bias(&shapes(), 30, TOL);
}

/// The fused path training runs: kernel and bias gradients together (split-K from a batch of
/// 128 on, with the bias as an extra input row).
#[test]
fn dense_backward_params_matches_reference() {
    weighted::backward_params(&shapes(), 40, TOL);
}
