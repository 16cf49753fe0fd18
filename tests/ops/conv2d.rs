//! conv2d: forward (with and without ReLU), backward input, weight and bias, on every adapter
//! under its own limits and under WebGPU's defaults.
//!
//! Tolerance: 1e-5 of the output's scale. Forward and input-gradient sums have at most 9·16 =
//! 144 products. The weight and bias gradients sum K = n·out_h·out_w products per element:
//! in order within a chunk of 16 output pixels, then the chunks' partial sums strided over
//! the 256 invocations of the reduce and a fixed tree. The largest case here, batch 8 on
//! 28x28, has K = 6272 (392 chunks, so every reduce invocation loops twice, the second time
//! with a partial tail; the training size, batch 256, has 12544 chunks). With |x|, |dy| ≤ 1
//! the worst-case f32 bound K·ε·max|term| ≈ 6272 · 6e-8 ≈ 3.7e-4 is far above what happens:
//! chunking and the tree make the sums short (≤ 16 + 2 + 8 additions deep), and rounding
//! errors of terms of both signs are independent, ≈ √depth·ε·|partial sums|. Measured:
//! ≤ 1.2e-6 of the scale on lavapipe and llvmpipe-GL (≤ 7e-7 on the batch-8 cases; a trial
//! with batch 256, K = 200704, also stayed within 1e-5 but took a minute on lavapipe, so the
//! shapes use batch 8). A wrong tap, channel or chunk is an error of the order of the scale.
use crate::common::{each_gpu, OrFail};
use crate::weighted::{self, Weighted};
use wgsl_autoencoder::gpu::{Dispatch, Gpu, Tensor};
use wgsl_autoencoder::ops::conv2d::{self, GradOut};
use wgsl_autoencoder::shapes::{Conv2dShape, Padding};
use wgsl_autoencoder::{reference, Result};

const TOL: f64 = 1e-5;

fn shapes() -> Vec<Conv2dShape> {
    let s = |n, h, w, ci, co, padding| Conv2dShape {
        k: 3,
        n,
        h,
        w,
        ci,
        co,
        padding,
    };
    vec![
        // odd shapes
        s(3, 7, 7, 5, 3, Padding::Same),
        s(3, 7, 5, 5, 3, Padding::Valid),
        s(2, 5, 9, 1, 4, Padding::Same),
        // one or two output channels (the CPU set's four-pixel and narrow forwards), with a
        // partial group of four pixels at the end of each row
        s(3, 7, 7, 5, 1, Padding::Same),
        s(2, 6, 9, 4, 1, Padding::Valid),
        s(2, 5, 6, 4, 2, Padding::Same),
        // the conv autoencoder's layers, batch 2
        s(2, 28, 28, 1, 16, Padding::Same),
        s(2, 14, 14, 16, 8, Padding::Same),
        s(2, 7, 7, 8, 8, Padding::Same),
        s(2, 4, 4, 8, 8, Padding::Same),
        s(2, 8, 8, 8, 8, Padding::Same),
        s(2, 16, 16, 8, 16, Padding::Valid),
        s(2, 28, 28, 16, 1, Padding::Same),
        // the training size's weight-gradient reduce: more than 256 chunks of 16 output
        // pixels (8 x 28 x 28 / 16 = 392), so each reduce invocation loops twice. Batch 8,
        // not the real 256 (12544 chunks): 256 takes about a minute on lavapipe over all
        // configurations, and 392 chunks already take the loop's second pass and tail.
        s(8, 28, 28, 1, 16, Padding::Same),
        s(8, 28, 28, 16, 1, Padding::Same),
    ]
}

impl Weighted for Conv2dShape {
    const W_RANGE: f32 = 0.5;
    fn input_len(&self) -> u64 {
        Conv2dShape::input_len(self)
    }
    fn output_len(&self) -> u64 {
        Conv2dShape::output_len(self)
    }
    fn weight_len(&self) -> u64 {
        Conv2dShape::weight_len(self)
    }
    fn bias_len(&self) -> u64 {
        self.co as u64
    }
    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        reference::conv2d::forward(self, relu, x, w, b)
    }
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        reference::conv2d::backward_input(self, dy, w)
    }
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        reference::conv2d::backward_weight(self, x, dy)
    }
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32> {
        reference::conv2d::backward_bias(self, dy)
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
        Ok(vec![conv2d::forward(g, "t", self, relu, x, w, b, y)?])
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Ok(vec![conv2d::backward_input(g, "t", self, go, w, dx)?])
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::backward_weight(g, "t", self, go, x, &partials(g, self)?, dw)
    }
    fn backward_bias(&self, g: &Gpu, go: &GradOut, db: &Tensor) -> Result<Vec<Dispatch>> {
        Ok(vec![conv2d::backward_bias(g, "t", self, go, db)?])
    }
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::backward_params(g, "t", self, go, x, &partials(g, self)?, dw, db)
    }
}

/// The weight gradient's scratch, poisoned: every partial it reads must have been written.
fn partials(g: &Gpu, s: &Conv2dShape) -> Result<Tensor> {
    g.poisoned("partials", conv2d::partials_len(g.kernels, s))
}

#[test]
fn conv2d_forward_matches_reference() {
    weighted::forward(&shapes(), 0, TOL);
}

#[test]
fn conv2d_backward_input_matches_reference() {
    weighted::backward_input(&shapes(), 100, TOL);
}

#[test]
fn conv2d_backward_weight_matches_reference() {
    weighted::backward_weight(&shapes(), 200, TOL);
}

#[test]
fn conv2d_backward_bias_matches_reference() {
    weighted::backward_bias(&shapes(), 300, TOL);
}

#[test]
fn conv2d_backward_params_matches_reference() {
    weighted::backward_params(&shapes(), 400, TOL);
}

#[test]
fn conv2d_rejects_mismatched_buffers() {
    let s = Conv2dShape {
        k: 3,
        n: 1,
        h: 4,
        w: 4,
        ci: 2,
        co: 2,
        padding: Padding::Same,
    };
    each_gpu(|g, config| {
        let x = g.tensor("x", s.input_len() - 1).or_fail(config);
        let w = g.tensor("w", s.weight_len()).or_fail(config);
        let b = g.tensor("b", 2).or_fail(config);
        let y = g.tensor("y", s.output_len()).or_fail(config);
        match conv2d::forward(g, "t", &s, false, &x, &w, &b, &y) {
            Err(err) => assert!(
                err.to_string().contains("x has 31 elements"),
                "{config}: {err}"
            ),
            Ok(_) => panic!("{config}: a 31-element x for a 32-element input was accepted"),
        }
    });
}
