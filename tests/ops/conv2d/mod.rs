//! conv2d: forward (with and without ReLU), backward input, weight and bias, on every adapter
//! under its own limits and under WebGPU's defaults, under both kernel sets (the CPU set runs
//! its own kernels for 3x3 layers with at most 32 channels a side, the GPU set's for the
//! kernel sides 1, 5, 7 and the wider layers here).
//!
//! Tolerance: 1e-5 of the output's scale. Forward and input-gradient sums have at most
//! k²·channels products: 9·16 = 144 for the seed's layers, 49·32 = 1568 for the 7x7 32 -> 32
//! cases. The weight and bias gradients sum K = n·out_h·out_w products per element: in order
//! within a chunk of output pixels (16 on the GPU set for kernels with at most 2048 weights
//! and biases, longer for larger ones: 128 for 3x3 32 -> 32; 256 on the CPU set), then the
//! chunks' partial sums, in order in one invocation for up to 64 chunks, else strided over
//! the 256 invocations of the reduce and a fixed tree. The largest case here, batch 8 on
//! 28x28, has K = 6272 (392 chunks, so every reduce invocation loops twice, the second time
//! with a partial tail; the training size, batch 256, has 12544 chunks). With |x|, |dy| ≤ 1
//! the worst-case f32 bound K·ε·max|term| ≈ 6272 · 6e-8 ≈ 3.7e-4 is far above what happens:
//! chunking and the tree make the sums short, and rounding errors of terms of both signs are
//! independent, ≈ √depth·ε·|partial sums|. Measured: ≤ 1.4e-6 of the scale on lavapipe and
//! llvmpipe-GL for every case and direction (the 7x7-kernel 32 -> 32 case the largest), except
//! the CPU set's fused weight and bias gradient of the batch-8 28x28 16 -> 1 case, 8.3e-6
//! on lavapipe (its own kernels; the same figure at f2ca452, before kernel sides 1, 5, 7). A
//! trial with batch 256, K = 200704, also stayed within 1e-5 but took a minute on lavapipe,
//! so the shapes use batch 8. A wrong tap, channel, channel group or chunk is an error of the
//! order of the scale.
use crate::common::{each_gpu, OrFail};
use crate::weighted::{self, Weighted};
use wgsl_autoencoder::gpu::{Dispatch, Gpu, KernelSet, Tensor};
use wgsl_autoencoder::ops::conv2d::{self, Folds, GradOut, Input, Pooled, Strided};
use wgsl_autoencoder::shapes::{Conv2dShape, Padding, PoolShape, StrideShape, UpsampleShape};
use wgsl_autoencoder::{reference, Error, Result};

mod cpu_set;
mod folds;
mod gathering;
mod strided;
mod upsampled;
mod variants;

const TOL: f64 = 1e-5;

fn shapes() -> Vec<Conv2dShape> {
    let sk = |k, n, h, w, ci, co, padding| Conv2dShape {
        k,
        n,
        h,
        w,
        ci,
        co,
        padding,
    };
    let s = |n, h, w, ci, co, padding| sk(3, n, h, w, ci, co, padding);
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
        // kernel sides 1, 5 and 7 (the GPU set's kernels on both sets), 'same' and 'valid',
        // odd sizes, channel counts that are not multiples of 4; 7 'valid' on 9x7 leaves 3x1
        sk(1, 2, 5, 6, 5, 3, Padding::Same),
        sk(1, 2, 5, 6, 3, 20, Padding::Valid),
        sk(5, 2, 9, 7, 3, 5, Padding::Same),
        sk(5, 2, 9, 7, 5, 2, Padding::Valid),
        sk(7, 2, 9, 7, 3, 5, Padding::Valid),
        sk(7, 2, 7, 9, 2, 3, Padding::Same),
        // more than 16 channels: the last group of 16 partly filled (20), two groups on both
        // sides with counts that are and are not multiples of 4 (the CPU set's written-out
        // walk over two groups, its z-layers, its vec4 and scalar channel loads), two input
        // groups into one narrow output group (8, and 2: the narrow forward), a single channel
        // against two groups (its thin weight gradient and four-pixel forward), and more than
        // 32 (36 -> 40: the GPU set's kernels on both sets), on either side of the weight
        // gradient and input gradient
        s(2, 7, 7, 5, 20, Padding::Same),
        s(2, 9, 7, 20, 3, Padding::Valid),
        s(2, 7, 7, 18, 30, Padding::Same),
        s(2, 7, 7, 24, 20, Padding::Valid),
        s(2, 6, 5, 20, 8, Padding::Same),
        s(2, 5, 6, 17, 2, Padding::Valid),
        s(2, 9, 7, 1, 22, Padding::Same),
        s(2, 7, 9, 22, 1, Padding::Valid),
        s(1, 6, 5, 36, 40, Padding::Same),
        sk(5, 2, 7, 7, 20, 17, Padding::Same),
        // the Keras blog's denoising autoencoder's layers (28x28x1 -> 32, 14x14x32 -> 32,
        // 7x7x32 -> 32, 28x28x32 -> 1), batch 2. Its 32 -> 32 kernels have 9248 weights and
        // biases, so their weight gradient sums chunks of 128 pixels, not 16 (392 output
        // pixels: three whole chunks and a partial one at 14x14)
        s(2, 28, 28, 1, 32, Padding::Same),
        s(2, 14, 14, 32, 32, Padding::Same),
        s(2, 7, 7, 32, 32, Padding::Same),
        s(2, 28, 28, 32, 1, Padding::Same),
        // a 7x7 kernel with 32 -> 32 channels (50208 weights and biases: a chunk as long as
        // the batch's 98 output pixels rounded up to a power of two, so a single chunk)
        sk(7, 2, 7, 7, 32, 32, Padding::Same),
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
        conv2d::forward(g, "t", self, &Folds::default(), relu, x, w, b, y)
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::backward_input(g, "t", self, &Folds::default(), go, w, dx)
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let partials = partials(g, self, &Folds::default())?;
        conv2d::backward_weight(g, "t", self, &Folds::default(), go, x, &partials, dw)
    }
    fn backward_bias(&self, g: &Gpu, go: &GradOut, db: &Tensor) -> Result<Vec<Dispatch>> {
        Ok(vec![conv2d::backward_bias(
            g,
            "t",
            self,
            &Folds::default(),
            go,
            db,
        )?])
    }
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let partials = partials(g, self, &Folds::default())?;
        conv2d::backward_params(g, "t", self, &Folds::default(), go, x, &partials, dw, db)
    }
}

/// The weight gradient's scratch, poisoned: every partial it reads must have been written.
fn partials(g: &Gpu, s: &Conv2dShape, folds: &Folds) -> Result<Tensor> {
    g.poisoned("partials", conv2d::partials_len(g.kernels, s, folds))
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
        match conv2d::forward(g, "t", &s, &Folds::default(), false, &x, &w, &b, &y) {
            Err(err) => assert!(
                err.to_string().contains("x has 31 elements"),
                "{config}: {err}"
            ),
            Ok(_) => panic!("{config}: a 31-element x for a 32-element input was accepted"),
        }
    });
}

/// Kernel sides other than 1, 3, 5 and 7 are the one thing refused, as a shape error that
/// says why; channel counts are not (any count runs, tested above).
#[test]
fn conv2d_refuses_other_kernel_sides() {
    for k in [0, 2, 4, 9] {
        let s = Conv2dShape {
            k,
            n: 1,
            h: 12,
            w: 12,
            ci: 2,
            co: 2,
            padding: Padding::Same,
        };
        each_gpu(|g, config| {
            // Buffers sized as a 3x3 kernel would need: the check comes first.
            let x = g.tensor("x", s.input_len()).or_fail(config);
            let w = g.tensor("w", 9 * 4).or_fail(config);
            let b = g.tensor("b", 2).or_fail(config);
            let y = g.tensor("y", s.output_len()).or_fail(config);
            match conv2d::forward(g, "t", &s, &Folds::default(), false, &x, &w, &b, &y) {
                Err(Error::Shape { op, detail }) => assert!(
                    op == "conv2d" && detail.contains(&format!("kernel size {k}")),
                    "{config}: {op}: {detail}"
                ),
                Err(e) => panic!("{config}: k = {k} refused, but not as a shape error: {e}"),
                Ok(_) => panic!("{config}: a {k}x{k} kernel was accepted"),
            }
        });
    }
}

/// The weight-gradient scratch: the CPU set's layout only for the shapes its kernels take
/// (3x3, at most 32 channels a side), the GPU set's for every other shape on both sets; and a
/// scratch sized for a batch fits every smaller batch (the network sizes it once, for the
/// largest).
#[test]
fn conv2d_partials_follow_the_kernels_and_fit_smaller_batches() {
    let s = |k, h, ci, co| Conv2dShape {
        k,
        n: 256,
        h,
        w: h,
        ci,
        co,
        padding: Padding::Same,
    };
    let cpu_takes = [
        s(3, 28, 1, 16),
        s(3, 14, 16, 8),
        s(3, 28, 16, 1),
        s(3, 28, 1, 32),
        s(3, 14, 32, 32),
        s(3, 7, 17, 16),
    ];
    let gpu_only = [
        s(1, 28, 1, 16),
        s(5, 14, 16, 8),
        s(7, 28, 16, 1),
        s(3, 7, 33, 16),
        s(3, 7, 16, 40),
        s(7, 28, 32, 32),
    ];
    for shape in cpu_takes {
        assert_ne!(
            conv2d::partials_len(KernelSet::Cpu, &shape, &Folds::default()),
            conv2d::partials_len(KernelSet::Gpu, &shape, &Folds::default()),
            "{shape:?}"
        );
    }
    for shape in gpu_only {
        assert_eq!(
            conv2d::partials_len(KernelSet::Cpu, &shape, &Folds::default()),
            conv2d::partials_len(KernelSet::Gpu, &shape, &Folds::default()),
            "{shape:?}"
        );
    }
    for shape in cpu_takes.iter().chain(&gpu_only) {
        for set in KernelSet::ALL {
            let most = conv2d::partials_len(set, shape, &Folds::default());
            for n in 1..shape.n {
                let smaller = Conv2dShape { n, ..*shape };
                assert!(
                    conv2d::partials_len(set, &smaller, &Folds::default()) <= most,
                    "{set}: {smaller:?} needs more partials than batch {}",
                    shape.n
                );
            }
        }
    }
    // A 3x3 32 -> 32 layer at batch 256 on 28x28 keeps its partials to 128 per output pixel
    // (58 MB, within WebGPU's default 128 MiB binding), not one per weight and bias per 16
    // pixels (464 MB).
    let denoise = s(3, 28, 32, 32);
    assert!(
        conv2d::partials_len(KernelSet::Gpu, &denoise, &Folds::default()) <= 128 * 256 * 28 * 28
    );
}

/// A 3x3 layer: the CPU set's own kernels' shape.
fn conv3x3(n: u32, h: u32, w: u32, ci: u32, co: u32, padding: Padding) -> Conv2dShape {
    Conv2dShape {
        k: 3,
        n,
        h,
        w,
        ci,
        co,
        padding,
    }
}
