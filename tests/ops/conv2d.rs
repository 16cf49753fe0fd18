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

/// A convolution reading its input through a folded 2x upsampling ([`Input::Upsampled2x`]):
/// `self.0` is the convolution's shape, its input the upsampled size. The reference is the
/// two layers' references in turn (backward: the convolution's input gradient, then the
/// upsampling's).
#[derive(Clone, Copy, Debug)]
struct Upsampled(Conv2dShape);

const UPSAMPLED: Folds = Folds {
    input: Input::Upsampled2x,
    pool: None,
    take: None,
    gather: None,
};

impl Upsampled {
    /// The upsampling folded in front of the convolution.
    fn up(&self) -> UpsampleShape {
        let s = &self.0;
        UpsampleShape {
            n: s.n,
            h: s.h / 2,
            w: s.w / 2,
            c: s.ci,
        }
    }
}

impl Weighted for Upsampled {
    const W_RANGE: f32 = 0.5;
    fn input_len(&self) -> u64 {
        self.up().input_len()
    }
    fn output_len(&self) -> u64 {
        self.0.output_len()
    }
    fn weight_len(&self) -> u64 {
        self.0.weight_len()
    }
    fn bias_len(&self) -> u64 {
        self.0.co as u64
    }
    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let x_up = reference::upsample::forward(&self.up(), x);
        reference::conv2d::forward(&self.0, relu, &x_up, w, b)
    }
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let dx_up = reference::conv2d::backward_input(&self.0, dy, w);
        reference::upsample::backward(&self.up(), &dx_up)
    }
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let x_up = reference::upsample::forward(&self.up(), x);
        reference::conv2d::backward_weight(&self.0, &x_up, dy)
    }
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32> {
        reference::conv2d::backward_bias(&self.0, dy)
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
        let up = &UPSAMPLED;
        conv2d::forward(g, "t", &self.0, up, relu, x, w, b, y)
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::backward_input(g, "t", &self.0, &UPSAMPLED, go, w, dx)
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (s, up) = (&self.0, &UPSAMPLED);
        conv2d::backward_weight(g, "t", s, up, go, x, &partials(g, s, up)?, dw)
    }
    fn backward_bias(&self, g: &Gpu, go: &GradOut, db: &Tensor) -> Result<Vec<Dispatch>> {
        Ok(vec![conv2d::backward_bias(
            g,
            "t",
            &self.0,
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
        let (s, up) = (&self.0, &UPSAMPLED);
        conv2d::backward_params(g, "t", s, up, go, x, &partials(g, s, up)?, dw, db)
    }
}

/// Convolutions that read a folded upsampling: the conv autoencoder's three (batch 2), odd
/// sizes and channel counts, both paddings, a 5x5 kernel, channel groups on either side and
/// on both, and the weight gradient's reduce looping (batch 8 on 28x28: 392 chunks).
fn upsampled_shapes() -> Vec<Upsampled> {
    [gpu_set_upsampled_shapes(), cpu_set_upsampled_shapes()].concat()
}

/// A k x k convolution over its input upsampled 2x (h and w are the upsampled sides).
fn up_shape(k: u32, n: u32, h: u32, w: u32, ci: u32, co: u32, padding: Padding) -> Upsampled {
    Upsampled(Conv2dShape {
        k,
        n,
        h,
        w,
        ci,
        co,
        padding,
    })
}

/// The upsampled shapes every test of an upsampled input takes, the GPU set's fold and
/// variant tests among them.
fn gpu_set_upsampled_shapes() -> Vec<Upsampled> {
    let s = |n, h, w, ci, co, padding| up_shape(3, n, h, w, ci, co, padding);
    vec![
        s(2, 8, 8, 8, 8, Padding::Same),
        s(2, 16, 16, 8, 16, Padding::Valid),
        s(2, 28, 28, 16, 1, Padding::Same),
        s(3, 6, 10, 5, 3, Padding::Same),
        s(2, 4, 6, 3, 2, Padding::Valid),
        up_shape(5, 2, 8, 6, 3, 5, Padding::Same),
        s(2, 6, 6, 20, 3, Padding::Valid),
        s(2, 6, 4, 5, 20, Padding::Same),
        s(8, 28, 28, 16, 1, Padding::Same),
        // one output channel from two groups of inputs (the GPU set's vec4 weight column in
        // the second group; the CPU set's thin weight gradient's second wide group, whose
        // bias is not stored, and five vec4s of inputs in its single-output forward), and
        // two groups on both sides (chunks longer than 16, which the tiles leave to the
        // per-row kernel; the CPU set's input gradient's second dispatch adding to dx)
        s(2, 6, 6, 20, 1, Padding::Same),
        s(2, 8, 6, 32, 32, Padding::Valid),
    ]
}

/// The upsampled shapes added for the CPU set's own kernels, which the reference tests run on
/// both sets. The GPU set's fold and variant tests leave them out: each of their cases
/// compiles a pipeline per kernel and variant, and on the GPU set these shapes' channel
/// counts modulo 4, channel groups, paddings and odd sides are those of the shapes above.
fn cpu_set_upsampled_shapes() -> Vec<Upsampled> {
    let s = |n, h, w, ci, co, padding| up_shape(3, n, h, w, ci, co, padding);
    vec![
        // one input channel (the thin weight gradient walking outputs, reading x as
        // scalars), and one output channel from channels that are not a multiple of 4 (its
        // thin kernel walking the input, x read lane by lane)
        s(2, 8, 8, 1, 8, Padding::Same),
        s(2, 6, 6, 5, 1, Padding::Same),
        // the folded kernels: a single output channel under 'valid' padding (no output reads
        // x's row or column -1), full groups of 16 on both sides (the input gradient's 16
        // folded taps fill WebGPU's 16 KiB of workgroup memory), non-square sides, and one
        // input channel (the weight gradient walking the outputs) under 'valid' padding and
        // into one output channel
        s(2, 6, 8, 12, 1, Padding::Valid),
        s(2, 6, 6, 16, 16, Padding::Same),
        s(3, 10, 6, 4, 4, Padding::Same),
        s(2, 6, 8, 1, 8, Padding::Valid),
        s(2, 6, 6, 1, 1, Padding::Same),
    ]
}

#[test]
fn conv2d_upsampled_input_forward_matches_reference() {
    weighted::forward(&upsampled_shapes(), 500, TOL);
}

#[test]
fn conv2d_upsampled_input_backward_input_matches_reference() {
    weighted::backward_input(&upsampled_shapes(), 600, TOL);
}

#[test]
fn conv2d_upsampled_input_backward_params_matches_reference() {
    weighted::backward_params(&upsampled_shapes(), 700, TOL);
}

#[test]
fn conv2d_upsampled_input_backward_weight_matches_reference() {
    weighted::backward_weight(&upsampled_shapes(), 800, TOL);
}

/// A convolution with a strided layer's index map folded in (the CPU set's kernels only):
/// `Inserted`, its input read through a zero insertion ([`Input::Inserted`], a Keras
/// Conv2DTranspose with strides 2; the shape's input is the big side), or `Taken`, every
/// other output kept ([`Folds::take`], a Keras Conv2D with strides 2). The reference is the
/// two layers' references in turn (each map's backward is the other map).
#[derive(Clone, Copy, Debug)]
enum StridedConv {
    Inserted(Conv2dShape, Strided),
    Taken(Conv2dShape, Strided),
}

impl StridedConv {
    fn shape(&self) -> Conv2dShape {
        match *self {
            StridedConv::Inserted(s, _) | StridedConv::Taken(s, _) => s,
        }
    }
    /// The same map with output channels `co`.
    fn with_co(&self, co: u32) -> Self {
        match *self {
            StridedConv::Inserted(s, m) => StridedConv::Inserted(Conv2dShape { co, ..s }, m),
            StridedConv::Taken(s, m) => StridedConv::Taken(Conv2dShape { co, ..s }, m),
        }
    }
    /// The map as the `stride` op's shape: the input's channels and big side for an
    /// insertion, the output's for a take.
    fn stride(&self) -> StrideShape {
        let (s, m, c, (hb, wb)) = match *self {
            StridedConv::Inserted(s, m) => (s, m, s.ci, (s.h, s.w)),
            StridedConv::Taken(s, m) => (s, m, s.co, s.out_hw()),
        };
        StrideShape {
            n: s.n,
            h: m.h,
            w: m.w,
            c,
            hb,
            wb,
            oy: m.oy,
            ox: m.ox,
        }
    }
    fn folds(&self) -> Folds<'static> {
        match *self {
            StridedConv::Inserted(_, m) => Folds {
                input: Input::Inserted(m),
                ..Default::default()
            },
            StridedConv::Taken(_, m) => Folds {
                take: Some(m),
                ..Default::default()
            },
        }
    }
    fn inserted(&self) -> bool {
        matches!(self, StridedConv::Inserted(..))
    }
}

impl Weighted for StridedConv {
    const W_RANGE: f32 = 0.5;
    fn input_len(&self) -> u64 {
        match self.inserted() {
            true => self.stride().small_len(),
            false => self.shape().input_len(),
        }
    }
    fn output_len(&self) -> u64 {
        match self.inserted() {
            true => self.shape().output_len(),
            false => self.stride().small_len(),
        }
    }
    fn weight_len(&self) -> u64 {
        self.shape().weight_len()
    }
    fn bias_len(&self) -> u64 {
        self.shape().co as u64
    }
    fn runs_on(&self, g: &Gpu) -> bool {
        g.kernels == KernelSet::Cpu
    }
    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::conv2d::forward(s, relu, &reference::stride::insert(st, x), w, b),
            false => reference::stride::take(st, &reference::conv2d::forward(s, relu, x, w, b)),
        }
    }
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::stride::take(st, &reference::conv2d::backward_input(s, dy, w)),
            false => reference::conv2d::backward_input(s, &reference::stride::insert(st, dy), w),
        }
    }
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::conv2d::backward_weight(s, &reference::stride::insert(st, x), dy),
            false => reference::conv2d::backward_weight(s, x, &reference::stride::insert(st, dy)),
        }
    }
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::conv2d::backward_bias(s, dy),
            false => reference::conv2d::backward_bias(s, &reference::stride::insert(st, dy)),
        }
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
        conv2d::forward(g, "t", &self.shape(), &self.folds(), relu, x, w, b, y)
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::backward_input(g, "t", &self.shape(), &self.folds(), go, w, dx)
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (s, f) = (&self.shape(), &self.folds());
        conv2d::backward_weight(g, "t", s, f, go, x, &partials(g, s, f)?, dw)
    }
    fn backward_bias(&self, _: &Gpu, _: &GradOut, _: &Tensor) -> Result<Vec<Dispatch>> {
        // The bias gradient's own kernel reads a full output's gradient: with a map folded
        // in it is the fused pass's (backward_params), tested there.
        Err(Error::Shape {
            op: "test",
            detail: "no separate bias kernel with a strided map folded in".into(),
        })
    }
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (s, f) = (&self.shape(), &self.folds());
        conv2d::backward_params(g, "t", s, f, go, x, &partials(g, s, f)?, dw, db)
    }
}

/// Inserted inputs: keras.io's Conv2DTranspose layers (7x7 and 14x14 x 32 -> 32, batch 2),
/// the seed's conv model rebuilt with transposed layers (4 -> 8 and 8 -> 16 with 8 -> 8 and
/// 8 -> 16 channels), odd sizes, channel counts that are not multiples of 4 (scalar loads
/// and stores), two groups on either side, an offset of 0, and a weight-gradient walk of
/// several chunks with a partial one (batch 3 on 14x14: 588 pixels of x, three chunks of 256).
fn inserted_shapes() -> Vec<StridedConv> {
    let s = |n, h, w, ci, co, oy, ox| {
        StridedConv::Inserted(
            Conv2dShape {
                k: 3,
                n,
                h: 2 * h,
                w: 2 * w,
                ci,
                co,
                padding: Padding::Same,
            },
            Strided { h, w, oy, ox },
        )
    };
    vec![
        s(2, 7, 7, 32, 32, 1, 1),
        s(2, 14, 14, 32, 32, 1, 1),
        s(2, 4, 4, 8, 8, 1, 1),
        s(2, 8, 8, 8, 16, 1, 1),
        s(3, 3, 5, 5, 6, 1, 1),
        s(2, 5, 3, 2, 4, 1, 1),
        s(2, 3, 4, 20, 18, 1, 1),
        s(2, 4, 3, 7, 20, 0, 1),
        s(2, 3, 3, 6, 5, 0, 0),
        s(3, 14, 14, 16, 8, 1, 1),
        // more biases than the reduce's last workgroup has spare invocations for (its
        // extra invocations, one per bias, must be dispatched), and one pixel of three
        // channels (x smaller than a vec4: its vec4 binding is a placeholder)
        s(2, 2, 2, 4, 12, 1, 1),
        s(2, 3, 2, 2, 23, 0, 1),
        s(1, 1, 1, 3, 4, 1, 1),
    ]
}

#[test]
fn conv2d_inserted_input_forward_matches_reference() {
    weighted::forward(&inserted_shapes(), 1500, TOL);
}

#[test]
fn conv2d_inserted_input_backward_input_matches_reference() {
    weighted::backward_input(&inserted_shapes(), 1600, TOL);
}

#[test]
fn conv2d_inserted_input_backward_params_matches_reference() {
    weighted::backward_params(&inserted_shapes(), 1700, TOL);
}

#[test]
fn conv2d_inserted_input_backward_weight_matches_reference() {
    weighted::backward_weight(&inserted_shapes(), 1800, TOL);
}

/// Kept outputs: the strided Conv2D layers of `conv_strided.json` (28x28x1 -> 16 kept at
/// 14x14 from offset 1, its thin weight gradient; 14x14x16 -> 8 at 7x7 from 1; 7x7x8 -> 8 at
/// 4x4 from 0), odd sizes, 'valid', offsets that differ per axis, channel counts that are not
/// multiples of 4, two groups on either side, and weight-gradient walks of several chunks
/// (batch 8: 392 kept pixels at 7x7, 1568 at 14x14).
fn taken_shapes() -> Vec<StridedConv> {
    let s = |n, h, w, ci, co, padding, th, tw, oy, ox| {
        StridedConv::Taken(
            Conv2dShape {
                k: 3,
                n,
                h,
                w,
                ci,
                co,
                padding,
            },
            Strided {
                h: th,
                w: tw,
                oy,
                ox,
            },
        )
    };
    let (same, valid) = (Padding::Same, Padding::Valid);
    vec![
        s(2, 28, 28, 1, 16, same, 14, 14, 1, 1),
        s(2, 14, 14, 16, 8, same, 7, 7, 1, 1),
        s(2, 7, 7, 8, 8, same, 4, 4, 0, 0),
        s(3, 9, 7, 5, 6, valid, 4, 3, 0, 0),
        s(2, 6, 5, 20, 18, same, 3, 2, 1, 0),
        s(2, 5, 6, 2, 20, same, 2, 3, 1, 0),
        s(2, 7, 5, 7, 4, same, 3, 3, 1, 0),
        s(8, 14, 14, 16, 8, same, 7, 7, 1, 1),
        s(8, 28, 28, 1, 16, same, 14, 14, 1, 1),
        // a side of 1: its odd phase of the input gradient is empty
        s(2, 1, 5, 4, 4, same, 1, 3, 0, 0),
        s(2, 5, 1, 6, 5, same, 3, 1, 0, 0),
    ]
}

#[test]
fn conv2d_taken_output_forward_matches_reference() {
    weighted::forward(&taken_shapes(), 1900, TOL);
}

#[test]
fn conv2d_taken_output_backward_input_matches_reference() {
    weighted::backward_input(&taken_shapes(), 2000, TOL);
}

#[test]
fn conv2d_taken_output_backward_params_matches_reference() {
    weighted::backward_params(&taken_shapes(), 2100, TOL);
}

#[test]
fn conv2d_taken_output_backward_weight_matches_reference() {
    weighted::backward_weight(&taken_shapes(), 2200, TOL);
}

/// The GPU set has no kernel that reads an inserted input or keeps every other output, nor
/// has the CPU set for shapes outside `takes_inserted` and `takes_taken`: each is refused as
/// a shape error, never run as something else.
#[test]
fn conv2d_strided_maps_are_refused_where_no_kernel_takes_them() {
    let (inserted, kept) = (inserted_shapes()[0], taken_shapes()[1]);
    let cases = [inserted, inserted.with_co(1), kept, kept.with_co(1)];
    each_gpu(|g, config| {
        let runs = |c: &StridedConv| g.kernels == KernelSet::Cpu && c.shape().co >= 4;
        for case in cases.iter().filter(|c| !runs(c)) {
            expect_refused(g, config, *case);
        }
    });
}

/// Fails unless `case`'s forward is refused on `g` as a shape error naming the strided map.
fn expect_refused(g: &Gpu, config: &str, case: StridedConv) {
    let x = g.tensor("x", case.input_len()).or_fail(config);
    let w = g.tensor("w", case.weight_len()).or_fail(config);
    let b = g.tensor("b", case.bias_len()).or_fail(config);
    let y = g.tensor("y", case.output_len()).or_fail(config);
    match case.forward(g, false, &x, &w, &b, &y) {
        Err(Error::Shape { op, detail }) => assert!(
            op == "conv2d" && detail.contains("an inserted input or kept outputs"),
            "{config}: {op}: {detail}"
        ),
        Err(e) => panic!("{config}: refused, but not as a shape error: {e}"),
        Ok(_) => panic!("{config}: {case:?} ran on the {} set", g.kernels),
    }
}

/// A convolution with the layers folded around it: a 2x upsampling before it (`up`), a 2x2
/// max pool after it (`pool`, its padding).
#[derive(Clone, Copy, Debug)]
struct Folded {
    s: Conv2dShape,
    up: bool,
    pool: Option<Padding>,
}

impl Folded {
    fn upsample(&self) -> UpsampleShape {
        Upsampled(self.s).up()
    }
    fn pool_shape(&self, padding: Padding) -> PoolShape {
        let (h, w) = self.s.out_hw();
        PoolShape {
            n: self.s.n,
            h,
            w,
            c: self.s.co,
            padding,
        }
    }
}

/// Folds on the conv autoencoder's layers (batch 2: the encoder's pools, one of them 'same'
/// on an odd 7x7; the decoder's upsamplings), a 'valid' pool dropping an odd row and column,
/// a 'same' pool on odd sizes with two output groups, both folds on one layer, and the
/// weight gradient's reduce looping (batch 8 on 28x28): [`gpu_set_folded_cases`], and the
/// CPU set's own cases after them ([`cpu_set_folded_cases`]).
fn folded_cases() -> Vec<Folded> {
    [gpu_set_folded_cases(), cpu_set_folded_cases()].concat()
}

fn upsampled_cases(shapes: Vec<Upsampled>) -> impl Iterator<Item = Folded> {
    shapes.into_iter().map(|u| Folded {
        s: u.0,
        up: true,
        pool: None,
    })
}

/// The fold cases the GPU set's fold and variant tests take (every test of a fold takes
/// them): each compiles a pipeline per kernel and variant there, so the CPU set's own cases
/// are left to its tests.
fn gpu_set_folded_cases() -> Vec<Folded> {
    let (same, valid) = (Padding::Same, Padding::Valid);
    let f = |n, h, w, ci, co, padding, up, pool| Folded {
        s: conv3x3(n, h, w, ci, co, padding),
        up,
        pool,
    };
    let mut cases: Vec<Folded> = upsampled_cases(gpu_set_upsampled_shapes()).collect();
    cases.extend([
        f(2, 28, 28, 1, 16, same, false, Some(same)),
        f(2, 14, 14, 16, 8, same, false, Some(same)),
        f(2, 7, 7, 8, 8, same, false, Some(same)),
        f(3, 7, 5, 5, 3, same, false, Some(valid)),
        f(2, 9, 7, 3, 20, valid, false, Some(same)),
        f(2, 5, 7, 6, 5, same, false, Some(same)),
        f(2, 8, 6, 4, 3, same, true, Some(same)),
        f(2, 6, 10, 5, 2, valid, true, Some(valid)),
        f(8, 28, 28, 1, 16, same, false, Some(same)),
        // 'valid' pools dropping an odd row and column, a 'same' one on an odd 3x5 output
        f(2, 7, 9, 4, 8, same, false, Some(valid)),
        f(3, 5, 7, 8, 4, valid, false, Some(same)),
        f(2, 6, 6, 16, 16, same, false, Some(valid)),
    ]);
    cases
}

/// The fold cases added for the CPU set's own kernels ([`cpu_set_upsampled_shapes`], and after
/// one input channel, its thin weight gradient walking pooled pixels: a 'same' pool on odd
/// sides into two output groups, and a 'valid' one), which on the GPU set repeat what
/// [`gpu_set_folded_cases`] take.
fn cpu_set_folded_cases() -> Vec<Folded> {
    let (same, valid) = (Padding::Same, Padding::Valid);
    let mut cases: Vec<Folded> = upsampled_cases(cpu_set_upsampled_shapes()).collect();
    let pooled = |n, h, w, co, padding, pool| Folded {
        s: conv3x3(n, h, w, 1, co, padding),
        up: false,
        pool: Some(pool),
    };
    cases.extend([
        pooled(2, 7, 9, 20, same, same),
        pooled(2, 9, 7, 8, valid, valid),
    ]);
    cases
}

/// The folds change no bit: on the GPU set (where training folds what `--folds` says), the
/// output (and the pool's winners), the kernel and bias gradients and the input gradient
/// equal those of the layers run one by one (upsample.forward, the plain convolution,
/// pool.forward; then pool.backward, the plain convolution's gradients, upsample.backward),
/// with and without ReLU, for each of [`gpu_set_folded_cases`].
#[test]
fn conv2d_folds_are_the_layers_one_by_one_bit_for_bit() {
    let g = crate::common::gpu_with(KernelSet::Gpu);
    for (k, case) in gpu_set_folded_cases().into_iter().enumerate() {
        folds_are_the_layers_one_by_one(g, k, &case, &[false, true], Sums::Bitwise);
    }
}

/// The CPU set's own kernels fold a pool the same way: their pooled forward computes each
/// window's outputs with the plain forward's sums, to the bit, and so does the input
/// gradient, reading the routed gradient in the plain order; the weight and bias gradients
/// walk the pooled pixels, each window's four outputs in turn (the same terms in another
/// order: to the tolerance). Its other folds (an upsampling's folded taps) change the
/// rounding, and their tests compare with the reference. The autoencoder's encoder layers
/// and the cases above with one input group and output channels a multiple of 4
/// (`conv2d::cpu_kernels_take_pool`); training folds those with one input channel
/// (tests/training.rs runs the conv autoencoder's steps against the reference).
#[test]
fn conv2d_cpu_set_pool_fold_is_the_layers_one_by_one() {
    let g = crate::common::gpu_with(KernelSet::Cpu);
    // Without `--folds pool`, training on the CPU set folds the pools its kernels take after
    // a layer with one input channel; `--folds pool` the rest.
    assert!(!g.folds.pool);
    let mut ran = 0;
    for (k, case) in folded_cases().into_iter().enumerate() {
        let takes = conv2d::cpu_kernels_take_pool(&case.s);
        let trains = takes && case.s.ci == 1;
        assert_eq!(
            conv2d::folds_pool(g, &case.s, Input::Direct),
            trains,
            "{case:?}"
        );
        if case.pool.is_some() && !case.up && takes {
            folds_are_the_layers_one_by_one(g, k, &case, &[false], Sums::Reordered);
            ran += 1;
        }
    }
    assert!(ran >= 5, "{ran} cases");
}

/// How a fold's weight and bias gradients compare with the layers' one by one.
#[derive(Clone, Copy)]
enum Sums {
    Bitwise,
    /// Summed in another order: to the tolerance.
    Reordered,
}

/// `case` folded against its layers one by one on `g`, bit for bit but for the weight and
/// bias gradients as `weight_sums` says; `paired`: the backward as two dispatches (false) and
/// as `backward_pair` (true).
fn folds_are_the_layers_one_by_one(
    g: &Gpu,
    k: usize,
    case: &Folded,
    paired: &[bool],
    weight_sums: Sums,
) {
    use wgsl_autoencoder::ops::{pool, upsample};
    {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let s = case.s;
            let up = case.upsample();
            let pool_shape = case.pool.map(|p| case.pool_shape(p));
            let out_len = pool_shape.map_or(s.output_len(), |p| p.output_len());
            let x_len = if case.up {
                up.input_len()
            } else {
                s.input_len()
            };
            let mut r = crate::common::rng(900 + k as u64);
            let mut random = |len: u64| {
                let v = crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
                g.upload("t", &v).or_fail(&what)
            };
            let (x, w, b, dy) = (
                random(x_len),
                random(s.weight_len()),
                random(s.co as u64),
                random(out_len),
            );
            let t = |len: u64| g.poisoned("t", len).or_fail(&what);
            let (y0, win0) = (t(out_len), t(out_len));
            let (dw0, db0, dx0) = (t(s.weight_len()), t(s.co as u64), t(x_len));

            // One by one.
            let (x_up, dx_up) = (t(s.input_len()), t(s.input_len()));
            let (y_conv, dy_conv) = (t(s.output_len()), t(s.output_len()));
            let plain = Folds::default();
            let (conv_x, conv_dx) = if case.up { (&x_up, &dx_up) } else { (&x, &dx0) };
            let conv_y = if pool_shape.is_some() { &y_conv } else { &y0 };
            let conv_dy = if pool_shape.is_some() { &dy_conv } else { &dy };
            let mut d = Vec::new();
            if case.up {
                d.push(upsample::forward(g, "t", &up, &x, &x_up).or_fail(&what));
            }
            let fwd = conv2d::forward(g, "t", &s, &plain, relu, conv_x, &w, &b, conv_y);
            d.extend(fwd.or_fail(&what));
            if let Some(p) = &pool_shape {
                d.push(pool::forward(g, "t", p, &y_conv, &y0, &win0).or_fail(&what));
                d.push(pool::backward(g, "t", p, &win0, &dy, &dy_conv).or_fail(&what));
            }
            let go = GradOut {
                dy: conv_dy,
                relu_output: relu.then_some(conv_y),
            };
            let partials0 = partials(g, &s, &plain).or_fail(&what);
            let params =
                conv2d::backward_params(g, "t", &s, &plain, &go, conv_x, &partials0, &dw0, &db0);
            d.extend(params.or_fail(&what));
            let dx_of = conv2d::backward_input(g, "t", &s, &plain, &go, &w, conv_dx);
            d.extend(dx_of.or_fail(&what));
            if case.up {
                d.push(upsample::backward(g, "t", &up, &dx_up, &dx0).or_fail(&what));
            }
            wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

            // Folded: the weight-gradient partials and the input gradient as two dispatches,
            // and as one (`backward_pair`, then the layer's reduce), each into fresh poison.
            for &paired in paired {
                let what = format!("{what} paired={paired}");
                let (y1, win1) = (t(out_len), t(out_len));
                let (dw1, db1, dx1) = (t(s.weight_len()), t(s.co as u64), t(x_len));
                let folds = Folds {
                    input: if case.up {
                        Input::Upsampled2x
                    } else {
                        Input::Direct
                    },
                    pool: case.pool.map(|padding| Pooled {
                        padding,
                        winner: &win1,
                    }),
                    take: None,
                    gather: None,
                };
                let forward = conv2d::forward(g, "t", &s, &folds, relu, &x, &w, &b, &y1);
                let mut d = forward.or_fail(&what);
                let go = GradOut {
                    dy: &dy,
                    relu_output: relu.then_some(&y1),
                };
                let partials1 = partials(g, &s, &folds).or_fail(&what);
                if paired {
                    let pair =
                        conv2d::backward_pair(g, "t", &s, &folds, &go, &x, &w, &partials1, &dx1);
                    d.push(pair.or_fail(&what));
                    let reduce =
                        conv2d::backward_params_reduce(g, "t", &s, &folds, &partials1, &dw1, &db1);
                    d.push(reduce.or_fail(&what));
                } else {
                    let params = conv2d::backward_params(
                        g, "t", &s, &folds, &go, &x, &partials1, &dw1, &db1,
                    );
                    d.extend(params.or_fail(&what));
                    let dx_of = conv2d::backward_input(g, "t", &s, &folds, &go, &w, &dx1);
                    d.extend(dx_of.or_fail(&what));
                }
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

                let mut pairs = vec![("y", &y0, &y1), ("dx", &dx0, &dx1)];
                if pool_shape.is_some() {
                    pairs.push(("winner", &win0, &win1));
                }
                let mut sums = vec![("dw", &dw0, &dw1), ("db", &db0, &db1)];
                match weight_sums {
                    Sums::Bitwise => pairs.append(&mut sums),
                    Sums::Reordered => {
                        for (name, want, got) in sums {
                            let read = |t: &Tensor| g.read::<f32>(t).or_fail(&what);
                            let what = format!("{what}: {name}");
                            crate::common::assert_close(&what, &read(got), &read(want), TOL);
                        }
                    }
                }
                for (name, a, b) in pairs {
                    let bits = |t: &Tensor| g.read::<u32>(t).or_fail(&what);
                    assert!(bits(a) == bits(b), "{what}: {name} differs in its bits");
                }
            }
        }
    }
}

/// The weight-gradient reduce adds each weight's chunks in the order its shader documents,
/// which no change of its code may move (every checkpoint's bits depend on it): in chunk order
/// in one invocation for up to SERIAL_REDUCE chunks; else invocation l of WG = 256 adds chunks
/// l, l + 256, ... in order, and a fixed tree halves the 256 sums (lanes[l] += lanes[l + 128]
/// for l < 128, then 64, ...).
/// The host adds the same floats in that order and must get the same bits, from the layer's
/// own reduce and from the one for every layer, at chunk counts that leave the kernel's
/// loads in batches of eight with and without a rest (13 and 16 chunks serially; 3,136 in the
/// tree, 12 or 13 per invocation; 98, one each). The partial sums span 40 binary orders of magnitude,
/// so that adding them in any other order changes the sums.
#[test]
fn conv2d_weight_reduce_adds_in_its_documented_order() {
    const WG: usize = 256;
    let g = crate::common::gpu_with(KernelSet::Gpu);
    let folds = Folds::default();
    let sh = |n, h, ci, co| Conv2dShape {
        k: 3,
        n,
        h,
        w: h,
        ci,
        co,
        padding: Padding::Same,
    };
    let mut serial_and_tree = [false; 2];
    for (k, s) in [
        sh(13, 4, 8, 8),
        sh(16, 4, 8, 8),
        sh(256, 14, 16, 8),
        sh(8, 14, 2, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("{s:?}");
        let items = s.weight_len() as usize + s.co as usize;
        let used = conv2d::partials_used(&s) as usize;
        let chunks = used / items;
        let serial = chunks as u64 <= conv2d::SERIAL_REDUCE;
        serial_and_tree[serial as usize] = true;
        let mut r = crate::common::rng(1600 + k as u64);
        let scale = crate::common::uniform(&mut r, used, -20.0, 20.0);
        let mut values = crate::common::uniform(&mut r, used, -1.0, 1.0);
        for (v, e) in values.iter_mut().zip(&scale) {
            *v *= e.round().exp2();
        }
        let len = conv2d::partials_len(KernelSet::Gpu, &s, &folds) as usize;
        values.resize(len, f32::NAN);
        let partials = g.upload("partials", &values).or_fail(&what);
        let (dw, db) = (
            g.poisoned("dw", s.weight_len()).or_fail(&what),
            g.poisoned("db", s.co as u64).or_fail(&what),
        );
        let grads = g.poisoned("grads", items as u64).or_fail(&what);
        let share = conv2d::ReduceShare {
            s,
            partials: 0,
            dw: 0,
            db: Some(s.weight_len()),
        };
        let d = [
            conv2d::backward_params_reduce(g, "t", &s, &folds, &partials, &dw, &db).or_fail(&what),
            conv2d::backward_params_reduce_all(g, "t", &[share], &partials, &grads).or_fail(&what),
        ];
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
        let want: Vec<u32> = (0..items)
            .map(|i| {
                let terms = &values[i * chunks..(i + 1) * chunks];
                let total = match serial {
                    true => terms.iter().fold(0.0f32, |a, v| a + v),
                    false => {
                        let mut lanes: Vec<f32> = (0..WG)
                            .map(|l| terms.iter().skip(l).step_by(WG).fold(0.0f32, |a, v| a + v))
                            .collect();
                        let mut half = WG / 2;
                        while half > 0 {
                            for l in 0..half {
                                lanes[l] += lanes[l + half];
                            }
                            half /= 2;
                        }
                        lanes[0]
                    }
                };
                total.to_bits()
            })
            .collect();
        let own: Vec<u32> = [g.read::<u32>(&dw), g.read::<u32>(&db)]
            .into_iter()
            .flat_map(|v| v.or_fail(&what))
            .collect();
        assert!(own == want, "{what} ({chunks} chunks): the layer's reduce");
        let all = g.read::<u32>(&grads).or_fail(&what);
        assert!(
            all == want,
            "{what} ({chunks} chunks): the reduce of every layer"
        );
        // The order matters for these sums: adding them in reverse changes some.
        let reversed = (0..items).any(|i| {
            let terms = &values[i * chunks..(i + 1) * chunks];
            terms.iter().rev().fold(0.0f32, |a, v| a + v).to_bits() != want[i]
        });
        assert!(reversed, "{what}: the sums do not depend on their order");
    }
    assert_eq!(serial_and_tree, [true, true], "both paths covered");
}

/// Every layer's weight-gradient reduce in one dispatch gives each layer's own reduce's
/// gradients bit for bit: three layers' partial sums in regions of one buffer (a 4x4 layer
/// with few enough chunks for the serial sum, two with enough for the tree, one of them
/// without a bias), then one reduce into one gradient buffer with gaps between the layers'
/// gradients, which it must leave alone. A region past the buffer is refused.
#[test]
fn conv2d_reduce_all_is_each_layers_reduce_bit_for_bit() {
    let g = crate::common::gpu_with(KernelSet::Gpu);
    let sh = |n, h, ci, co, padding| Conv2dShape {
        k: 3,
        n,
        h,
        w: h,
        ci,
        co,
        padding,
    };
    let layers = [
        (sh(8, 4, 8, 8, Padding::Same), true),
        (sh(8, 14, 16, 8, Padding::Same), false),
        (sh(8, 16, 8, 16, Padding::Valid), true),
    ];
    let folds = Folds::default();
    let mut r = crate::common::rng(77);
    let mut random = |len: u64| {
        let v = crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
        g.upload("t", &v).or_fail("upload")
    };
    let align = |v: u64| v.div_ceil(64) * 64;
    let total: u64 = layers
        .iter()
        .map(|(s, _)| align(conv2d::partials_used(s)))
        .sum();
    let all_partials = g.poisoned("partials", total).or_fail("partials");
    let grads_len: u64 = layers
        .iter()
        .map(|(s, _)| align(s.weight_len() + s.co as u64 + 64))
        .sum();
    let grads = g.poisoned("grads", grads_len).or_fail("grads");
    let (mut d, mut shares, mut own) = (Vec::new(), Vec::new(), Vec::new());
    let (mut at_partials, mut at_grads) = (0, 0);
    for (s, bias) in layers {
        let what = format!("{s:?}");
        let chunks = (s.output_len() / s.co as u64).div_ceil(conv2d::CHUNK);
        assert_eq!(
            chunks <= conv2d::SERIAL_REDUCE,
            s.h == 4,
            "{what}: the cases cover the serial and the tree sum"
        );
        let (x, dy) = (random(s.input_len()), random(s.output_len()));
        let go = GradOut {
            dy: &dy,
            relu_output: None,
        };
        let len = conv2d::partials_len(KernelSet::Gpu, &s, &folds);
        let region = all_partials.view(at_partials, len);
        let partial = conv2d::backward_params_partial(g, "t", &s, &folds, &go, &x, &region);
        d.push(partial.or_fail(&what));
        let db_at = at_grads + align(s.weight_len());
        shares.push(conv2d::ReduceShare {
            s,
            partials: at_partials,
            dw: at_grads,
            db: bias.then_some(db_at),
        });
        // The layer's own two stages, into buffers of its own.
        let (dw, db) = (random(s.weight_len()), random(s.co as u64));
        let scratch = partials(g, &s, &folds).or_fail(&what);
        let own_pass = conv2d::backward_params(g, "t", &s, &folds, &go, &x, &scratch, &dw, &db);
        d.extend(own_pass.or_fail(&what));
        own.push((s, bias, dw, db, at_grads, db_at));
        at_partials += align(len);
        at_grads = db_at + align(s.co as u64 + 64);
    }
    d.push(
        conv2d::backward_params_reduce_all(g, "t", &shares, &all_partials, &grads)
            .or_fail("reduce"),
    );
    wgsl_autoencoder::ops::run(g, &d).or_fail("run");
    let merged = g.read::<u32>(&grads).or_fail("read");
    let mut written = vec![false; merged.len()];
    for (s, bias, dw, db, dw_at, db_at) in own {
        let bits = |t: &Tensor| g.read::<u32>(t).or_fail("read");
        let (dw_at, db_at) = (dw_at as usize, db_at as usize);
        let dw_end = dw_at + s.weight_len() as usize;
        assert!(
            merged[dw_at..dw_end] == bits(&dw)[..],
            "{s:?}: kernel gradient"
        );
        written[dw_at..dw_end].fill(true);
        if bias {
            let db_end = db_at + s.co as usize;
            assert!(
                merged[db_at..db_end] == bits(&db)[..],
                "{s:?}: bias gradient"
            );
            written[db_at..db_end].fill(true);
        }
    }
    for (i, w) in written.iter().enumerate() {
        if !w {
            assert!(
                f32::from_bits(merged[i]).is_nan(),
                "element {i} of the gradient buffer, no layer's, was written"
            );
        }
    }
    reduce_adam_case(g, &shares, &all_partials, grads_len, &merged);
    let mut past = shares[2];
    past.partials = total - conv2d::partials_used(&past.s) + 1;
    match conv2d::backward_params_reduce_all(g, "t", &[past], &all_partials, &grads) {
        Err(Error::Shape { detail, .. }) => assert!(detail.contains("past"), "{detail}"),
        Err(e) => panic!("a region past the buffer refused, but not as a shape error: {e}"),
        Ok(_) => panic!("a region past the partials buffer was accepted"),
    }
}

/// Whether a launch runs the quads (`--folds quads`: QUADS on), and its workgroups.
fn spreads_window(d: &wgsl_autoencoder::gpu::Dispatch) -> (bool, u64) {
    let [x, y, z] = d.workgroups;
    (d.launch.contains("QUADS=1"), x as u64 * y as u64 * z as u64)
}

/// Workgroups of 64 for `per_window` invocations per pixel of `pixels`, in each channel group
/// of a side of `channels` on `g`.
fn window_workgroups(g: &Gpu, pixels: u64, per_window: u64, channels: u32) -> u64 {
    let groups = channels.div_ceil(conv2d::group(g, "t")) as u64;
    (pixels * per_window).div_ceil(64) * groups
}

/// A device on the GPU set with every fold, the tiles and the narrow channel groups as asked.
fn open_variant(tiles: bool, narrow: bool) -> Gpu {
    open_variants(tiles, narrow, true)
}

/// As [`open_variant`], with the vec4 loads as asked too (and a folded window on one
/// invocation: [`open_quads`] spreads it over four).
fn open_variants(tiles: bool, narrow: bool, vec4: bool) -> Gpu {
    use wgsl_autoencoder::gpu::FoldSet;
    open_folds(FoldSet {
        tiles,
        narrow,
        vec4,
        quads: false,
        ..FoldSet::ALL
    })
}

/// As [`open_variants`], with each folded 2x2 window on four invocations (`--folds quads`).
fn open_quads(tiles: bool, narrow: bool, vec4: bool) -> Gpu {
    use wgsl_autoencoder::gpu::FoldSet;
    open_folds(FoldSet {
        tiles,
        narrow,
        vec4,
        ..FoldSet::ALL
    })
}

/// A device on the GPU set with exactly `folds`.
fn open_folds(folds: wgsl_autoencoder::gpu::FoldSet) -> Gpu {
    crate::common::open_with_folds(KernelSet::Gpu, folds)
}

/// [`gpu_set_folded_cases`], a layer of 24 -> 20 channels with a pool: more than one group of
/// channels a side, the last partly live, and chunks longer than 16; and a 4x4 8 -> 8 layer
/// with neither fold (the conv model's fourth), as the vec4 loads meet it.
fn variant_cases() -> Vec<Folded> {
    let mut cases = gpu_set_folded_cases();
    cases.push(Folded {
        s: Conv2dShape {
            k: 3,
            n: 3,
            h: 4,
            w: 4,
            ci: 8,
            co: 8,
            padding: Padding::Same,
        },
        up: false,
        pool: None,
    });
    cases.push(Folded {
        s: Conv2dShape {
            k: 3,
            n: 2,
            h: 7,
            w: 7,
            ci: 24,
            co: 20,
            padding: Padding::Same,
        },
        up: false,
        pool: Some(Padding::Same),
    });
    cases
}

/// The weight-gradient partials' tiled variant (`--folds tiles`), the pair (`backward_pair`
/// then the layer's reduce), the narrow channel groups (`--folds narrow`: 4 channels per
/// invocation, not 16) and the vec4 variant's skipped lanes (`--folds vec4`) give the plain
/// per-row kernels' kernel, bias and input gradients bit for bit, on six devices (the plain
/// kernels, the per-row ones with the vec4 variant, the tiles, tiles with narrow, the quads,
/// and the quads with tiles, narrow and vec4), for
/// every GPU-set fold case (a pool's routing, an upsampled input: also with the quads, `--folds
/// quads`, alone and with the rest), with and without ReLU, with and
/// without the bias row (`backward_weight`), and on a layer with chunks longer than 16 and more
/// than 16 channels a side (which the tiles leave to the per-row kernel, and which is 5 and 6
/// narrow groups against 2 wide ones, the last of each partly live).
#[test]
fn conv2d_tiled_weight_partials_are_the_per_row_kernel_bit_for_bit() {
    // The plain kernels load every lane of a vec4; the variants below skip the lanes past the
    // last output channel (`--folds vec4`), which the 1- and 3-channel cases meet.
    let per_row = open_variants(false, false, false);
    let per_row_vec4 = open_variant(false, false);
    let tiled = open_variant(true, false);
    // With the tiles too: the wide case's long chunks run the narrow per-row partials (and
    // `folds_change_no_bit_of_training` runs them on a whole model), so a fourth device
    // would only add pipelines to compile (minutes through llvmpipe's GL).
    let narrow = open_variant(true, true);
    // The quads (an upsampled input's input gradient on four invocations per pixel of x):
    // wide and per-row, and narrow with the tiles and vec4 loads.
    let quads = open_quads(false, false, false);
    let quads_narrow = open_quads(true, true, true);
    assert_eq!(conv2d::group(&per_row, "t"), conv2d::WIDE_GROUP);
    assert_eq!(conv2d::group(&narrow, "t"), conv2d::NARROW_GROUP);
    for (k, case) in variant_cases().into_iter().enumerate() {
        let s = case.s;
        let short_chunks = s.weight_len() + (s.co as u64) <= 2048;
        assert_eq!(conv2d::tiles(&tiled, "t", &s), short_chunks, "{case:?}");
        assert!(!conv2d::tiles(&per_row, "t", &s), "{case:?}");
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let pool_len = case.pool.map(|p| case.pool_shape(p).output_len());
            let out_len = pool_len.unwrap_or(s.output_len());
            let x_len = if case.up {
                case.upsample().input_len()
            } else {
                s.input_len()
            };
            let mut r = crate::common::rng(1300 + k as u64);
            let mut draw = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
            let (xs, ws, dys, acts) = (
                draw(x_len),
                draw(s.weight_len()),
                draw(out_len),
                draw(out_len),
            );
            // Winners 0..3 drawn at random: any routing is a valid input to the backward.
            let wins: Vec<u32> = draw(out_len)
                .iter()
                .map(|v| ((v + 1.0) * 2.0) as u32 % 4)
                .collect();
            // (kernel, bias, input gradient; kernel gradient without the bias row) as bits.
            let run_on = |g: &Gpu, paired: bool| {
                let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
                let (x, w, dy, act) = (up(&xs), up(&ws), up(&dys), up(&acts));
                let winner = g.upload("w", &wins).or_fail(&what);
                let folds = Folds {
                    input: if case.up {
                        Input::Upsampled2x
                    } else {
                        Input::Direct
                    },
                    pool: case.pool.map(|padding| Pooled {
                        padding,
                        winner: &winner,
                    }),
                    take: None,
                    gather: None,
                };
                let go = GradOut {
                    dy: &dy,
                    relu_output: relu.then_some(&act),
                };
                let poison = |len| g.poisoned("out", len).or_fail(&what);
                let (dw, db, dx, dw_only) = (
                    poison(s.weight_len()),
                    poison(s.co as u64),
                    poison(x_len),
                    poison(s.weight_len()),
                );
                let (p1, p2) = (
                    partials(g, &s, &folds).or_fail(&what),
                    partials(g, &s, &folds).or_fail(&what),
                );
                let mut d = Vec::new();
                if paired {
                    let pair = conv2d::backward_pair(g, "t", &s, &folds, &go, &x, &w, &p1, &dx);
                    d.push(pair.or_fail(&what));
                    let reduce = conv2d::backward_params_reduce(g, "t", &s, &folds, &p1, &dw, &db);
                    d.push(reduce.or_fail(&what));
                } else {
                    let params =
                        conv2d::backward_params(g, "t", &s, &folds, &go, &x, &p1, &dw, &db);
                    d.extend(params.or_fail(&what));
                    let dx_of = conv2d::backward_input(g, "t", &s, &folds, &go, &w, &dx);
                    d.extend(dx_of.or_fail(&what));
                }
                let weight = conv2d::backward_weight(g, "t", &s, &folds, &go, &x, &p2, &dw_only);
                d.extend(weight.or_fail(&what));
                // The input gradient (alone or in the pair) runs the quads where its input is
                // upsampled, and only there.
                let quads = conv2d::quads(g, "t") && case.up;
                let input_kernels = ["conv2d.backward_input", "conv2d.backward_pair"];
                let inputs: Vec<_> = d
                    .iter()
                    .filter(|x| input_kernels.contains(&x.kernel))
                    .collect();
                assert!(!inputs.is_empty(), "{what}: no input gradient");
                for x in inputs {
                    let spread = spreads_window(x).0;
                    assert_eq!(spread, quads, "{what}: {}: the quads ran or not", x.kernel);
                }
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
                let bits = |t: &Tensor| g.read::<u32>(t).or_fail(&what);
                [bits(&dw), bits(&db), bits(&dx), bits(&dw_only)]
            };
            let want = run_on(&per_row, false);
            assert!(
                want.iter().flatten().all(|b| !f32::from_bits(*b).is_nan()),
                "{what}: an output unwritten"
            );
            for (g, paired, name) in [
                (&per_row, true, "the per-row pair"),
                (&per_row_vec4, false, "the per-row partials' vec4 variant"),
                (&tiled, false, "the tiled partials"),
                (&tiled, true, "the tiled pair"),
                (&narrow, false, "the narrow tiled partials"),
                (&narrow, true, "the narrow tiled pair"),
                (&quads, false, "the quads' input gradient"),
                (&quads, true, "the quads' pair"),
                (
                    &quads_narrow,
                    false,
                    "the narrow quads' input gradient with vec4 loads",
                ),
                (
                    &quads_narrow,
                    true,
                    "the narrow tiled quads' pair with vec4 loads",
                ),
            ] {
                let got = run_on(g, paired);
                for (i, out) in ["dw", "db", "dx", "dw without the bias row"]
                    .iter()
                    .enumerate()
                {
                    assert!(
                        want[i] == got[i],
                        "{what}: {name}: {out} differs in its bits"
                    );
                }
            }
        }
    }
    // A layer's own variants (the start-up timing's pick per layer) apply to that layer's
    // launchers only.
    let mut mixed = per_row;
    let own = wgsl_autoencoder::gpu::FoldSet {
        narrow: true,
        tiles: true,
        ..mixed.folds
    };
    mixed.layer_folds.insert("t".into(), own);
    let s = variant_cases()[0].s;
    assert_eq!(conv2d::group(&mixed, "t"), conv2d::NARROW_GROUP);
    assert_eq!(conv2d::group(&mixed, "u"), conv2d::WIDE_GROUP);
    assert!(conv2d::tiles(&mixed, "t", &s) && !conv2d::tiles(&mixed, "u", &s));
}

/// A layer whose tensors are shorter than one vec4 (one 1x1 pixel, 1 -> 1 and 1 -> 3
/// channels, batch 1) runs under the vec4 variant: its unread vec4 views get the device's
/// placeholder (a binding must hold a whole vec4), and the forward pass, the input gradient
/// and the pair give the plain kernels' bits.
#[test]
fn conv2d_vec4_variant_binds_tensors_shorter_than_a_vec4() {
    let (plain, vec4) = (
        open_variants(true, false, false),
        open_variants(true, false, true),
    );
    for co in [1, 3] {
        let s = Conv2dShape {
            k: 3,
            n: 1,
            h: 1,
            w: 1,
            ci: 1,
            co,
            padding: Padding::Same,
        };
        let what = format!("{s:?}");
        let mut r = crate::common::rng(1500 + co as u64);
        let mut draw = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
        let (xs, ws, bs, dys) = (
            draw(s.input_len()),
            draw(s.weight_len()),
            draw(s.co as u64),
            draw(s.output_len()),
        );
        let run_on = |g: &Gpu| {
            let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
            let (x, w, b, dy) = (up(&xs), up(&ws), up(&bs), up(&dys));
            let poison = |len| g.poisoned("out", len).or_fail(&what);
            let (y, dx, dx_pair) = (
                poison(s.output_len()),
                poison(s.input_len()),
                poison(s.input_len()),
            );
            let folds = Folds {
                input: Input::Direct,
                pool: None,
                take: None,
                gather: None,
            };
            let go = GradOut {
                dy: &dy,
                relu_output: None,
            };
            let p = partials(g, &s, &folds).or_fail(&what);
            let mut d = conv2d::forward(g, "t", &s, &folds, false, &x, &w, &b, &y).or_fail(&what);
            d.extend(conv2d::backward_input(g, "t", &s, &folds, &go, &w, &dx).or_fail(&what));
            d.push(
                conv2d::backward_pair(g, "t", &s, &folds, &go, &x, &w, &p, &dx_pair).or_fail(&what),
            );
            wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
            let bits = |t: &Tensor| g.read::<u32>(t).or_fail(&what);
            [bits(&y), bits(&dx), bits(&dx_pair)]
        };
        let want = run_on(&plain);
        assert!(
            want.iter().flatten().all(|b| !f32::from_bits(*b).is_nan()),
            "{what}: an output unwritten"
        );
        assert!(run_on(&vec4) == want, "{what}: the vec4 variant differs");
    }
}

/// The narrow channel groups (`--folds narrow`), the vec4 loads (`--folds vec4`: input
/// channels where they are a multiple of 4, the kernel's output channels where they are, the
/// lanes past CO left unloaded where they are not) and the quads (`--folds quads`: a folded
/// pool's window on four invocations), alone and together, give the wide scalar
/// forward pass bit for bit: plain, with a max pool folded in (values and winners), and
/// reading an upsampled input, with and without ReLU, for every GPU-set fold case and a layer of 24 ->
/// 20 channels (6 narrow groups of input, 5 of output, against 2 wide ones).
#[test]
fn conv2d_narrow_groups_and_vec4_loads_give_the_plain_forward_bit_for_bit() {
    let plain = open_variants(true, false, false);
    let variants = [
        (open_variants(true, true, false), "the narrow groups'"),
        (open_variants(true, false, true), "the vec4 loads'"),
        (
            open_variants(true, true, true),
            "the narrow groups' with vec4 loads",
        ),
        (open_quads(true, false, false), "the quads'"),
        (
            open_quads(true, true, true),
            "the quads' with narrow groups and vec4 loads",
        ),
    ];
    let mut loaded_by_vec4 = 0;
    // The kernel's two vec4 paths: whole vec4 loads (CO a multiple of 4), and a last partial
    // vec4 (CO not), with one output group and with several (24 -> 20, narrow).
    let cases = variant_cases();
    let kernel_vec4 = cases.iter().filter(|c| c.s.co % 4 == 0).count();
    assert!(kernel_vec4 >= 4 && cases.len() - kernel_vec4 >= 2);
    assert!(cases.iter().any(|c| c.s.co > 16 && c.s.co % 4 == 0));
    for (k, case) in cases.into_iter().enumerate() {
        let s = case.s;
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let out_len = case
                .pool
                .map_or(s.output_len(), |p| case.pool_shape(p).output_len());
            let x_len = match case.up {
                true => case.upsample().input_len(),
                false => s.input_len(),
            };
            let mut r = crate::common::rng(1400 + k as u64);
            let mut draw = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
            let (xs, ws, bs) = (draw(x_len), draw(s.weight_len()), draw(s.co as u64));
            let run_on = |g: &Gpu| {
                let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
                let (x, w, b) = (up(&xs), up(&ws), up(&bs));
                let y = g.poisoned("y", out_len).or_fail(&what);
                let winner = g
                    .upload("w", &vec![u32::MAX; out_len as usize])
                    .or_fail(&what);
                let folds = Folds {
                    input: match case.up {
                        true => Input::Upsampled2x,
                        false => Input::Direct,
                    },
                    pool: case.pool.map(|padding| Pooled {
                        padding,
                        winner: &winner,
                    }),
                    take: None,
                    gather: None,
                };
                let d = conv2d::forward(g, "t", &s, &folds, relu, &x, &w, &b, &y).or_fail(&what);
                assert_eq!(d.len(), 1, "{what}: the GPU set's forward is one dispatch");
                let spread = spreads_window(&d[0]);
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
                (
                    g.read::<u32>(&y).or_fail(&what),
                    g.read::<u32>(&winner).or_fail(&what),
                    spread,
                )
            };
            let want = run_on(&plain);
            assert!(
                want.0.iter().all(|b| !f32::from_bits(*b).is_nan()),
                "{what}: an output unwritten"
            );
            if case.pool.is_some() {
                assert!(want.1.iter().all(|w| *w < 4), "{what}: a winner unwritten");
            }
            assert!(!conv2d::forward_vec4(&plain, "t", &s));
            if !relu {
                loaded_by_vec4 += conv2d::forward_vec4(&variants[1].0, "t", &s) as usize;
            }
            assert!(!want.2 .0, "{what}: the plain forward spreads its window");
            for (g, name) in &variants {
                let got = run_on(g);
                assert!(want.0 == got.0, "{what}: {name} output differs in its bits");
                assert!(want.1 == got.1, "{what}: {name} winners differ");
                // The quads run where a pool is folded, and only there: an invocation per
                // window pixel.
                let quads = conv2d::quads(g, "t") && case.pool.is_some();
                let per_window = if quads { 4 } else { 1 };
                let wg = window_workgroups(g, out_len / s.co as u64, per_window, s.co);
                assert_eq!(got.2, (quads, wg), "{what}: {name}: the quads' launch");
            }
        }
    }
    // Pooled, upsampled and plain layers among them: 10 of the 20 cases.
    assert!(
        loaded_by_vec4 >= 10,
        "too few cases load by vec4: {loaded_by_vec4}"
    );
}

/// `conv2d::backward_params_reduce_adam` (`--folds adam` with `reduces`) writes the gradients
/// the merged reduce wrote (`merged`'s bits), takes Adam's step 4 for each of them from
/// random weights and moments as `adam::step` over those gradients does, bit for bit, leaving
/// what no share covers as it was; and its last workgroup writes `bce.loss_finish`'s bits
/// for the loss partials into the slot staged (uniform slot 1 of 2), no other.
fn reduce_adam_case(
    g: &Gpu,
    shares: &[conv2d::ReduceShare],
    partials: &Tensor,
    len: u64,
    merged: &[u32],
) {
    use wgsl_autoencoder::ops::{adam, bce};
    use wgsl_autoencoder::shapes::AdamConfig;
    let what = "reduce with Adam";
    let mut r = crate::common::rng(78);
    let mut random = |lo: f32, hi: f32| crate::common::uniform(&mut r, len as usize, lo, hi);
    let (w0, m0, v0) = (random(-1.0, 1.0), random(-0.1, 0.1), random(0.0, 0.01));
    let total_elements = 3 * 4096 + 17;
    let loss_partials = crate::common::uniform(&mut r, 4, 0.0, 3000.0);
    assert_eq!(bce::partials_len(total_elements), 4);
    let up = |v: &[f32]| g.upload("t", v).or_fail(what);
    let read = |t: &Tensor| g.read::<f32>(t).or_fail(what);
    let (cfg, t, slot) = (AdamConfig::default(), 4, 3);

    let (w, m, v) = (up(&w0), up(&m0), up(&v0));
    let grads = g.poisoned("grads", len).or_fail(what);
    let (lp, loss) = (up(&loss_partials), g.poisoned("loss", 5).or_fail(what));
    let io = conv2d::ReduceAdam {
        params: &w,
        m: &m,
        v: &v,
        loss_partials: &lp,
        total: total_elements,
        loss: &loss,
    };
    let fused = conv2d::backward_params_reduce_adam(g, "t", shares, partials, &grads, &io, &cfg)
        .or_fail(what)
        .with_slots(g, 2)
        .or_fail(what);
    conv2d::set_reduce_adam_step(&fused, 1, &cfg, t, slot);
    fused.flush(g);
    crate::common::run_slot(g, &fused, 1);
    let got_g = g.read::<u32>(&grads).or_fail(what);
    assert!(got_g == merged, "{what}: not the merged reduce's gradients");

    // adam.step over those gradients (zero where no share wrote one: compared only where one
    // did, as random moments move a weight even with a zero gradient).
    let gz: Vec<f32> = merged
        .iter()
        .map(|b| f32::from_bits(*b))
        .map(|f| if f.is_nan() { 0.0 } else { f })
        .collect();
    let (w1, m1, v1) = (up(&w0), up(&m0), up(&v0));
    let step = adam::step(g, "t", &cfg, t, &w1, &up(&gz), &m1, &v1).or_fail(what);
    let one = g.poisoned("loss", 1).or_fail(what);
    let finish = bce::loss_finish(g, "t", total_elements, &lp, &one, 0).or_fail(what);
    wgsl_autoencoder::ops::run(g, &[step, finish]).or_fail(what);
    let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for (name, fused, plain, start) in [
        ("weights", &w, &w1, &w0),
        ("m", &m, &m1, &m0),
        ("v", &v, &v1, &v0),
    ] {
        let (got, want) = (bits(read(fused)), bits(read(plain)));
        for (i, b) in merged.iter().enumerate() {
            match f32::from_bits(*b).is_nan() {
                false => assert_eq!(got[i], want[i], "{what}: {name}[{i}] not adam.step's"),
                true => assert_eq!(got[i], start[i].to_bits(), "{what}: {name}[{i}] moved"),
            }
        }
    }
    let (got, want) = (read(&loss), read(&one)[0]);
    for (s, v) in got.iter().enumerate() {
        match s == slot as usize {
            true => assert_eq!(v.to_bits(), want.to_bits(), "{what}: the loss"),
            false => assert!(v.is_nan(), "{what}: loss slot {s} written"),
        }
    }
}

/// A dispatch's shader, entry point and whether it copies tensors into textures.
/// A dispatch as run: its shader, entry point, whether it fills textures, and its launch
/// (`Dispatch::launch`: the override constants and workgroups).
type Launched = (&'static str, &'static str, bool, String);

/// One convolution as [`conv2d_cpu_textures_give_the_storage_bits`] runs it: its shape, what
/// it folds, and the lengths of x and of y (and dy).
#[derive(Debug)]
struct TexCase {
    s: Conv2dShape,
    input: Input,
    pool: Option<Padding>,
    take: Option<Strided>,
    x_len: u64,
    out_len: u64,
}

impl TexCase {
    fn plain(s: Conv2dShape) -> Self {
        TexCase {
            s,
            input: Input::Direct,
            pool: None,
            take: None,
            x_len: s.input_len(),
            out_len: s.output_len(),
        }
    }
    fn upsampled(u: Upsampled) -> Self {
        TexCase {
            input: Input::Upsampled2x,
            x_len: u.0.input_len() / 4,
            ..Self::plain(u.0)
        }
    }
    fn strided(c: StridedConv) -> Self {
        let s = c.shape();
        TexCase {
            input: c.folds().input,
            take: c.folds().take,
            x_len: c.input_len(),
            out_len: c.output_len(),
            ..Self::plain(s)
        }
    }
    fn pooled(f: Folded) -> Self {
        let pool = f.pool.map(|p| f.pool_shape(p).output_len());
        TexCase {
            pool: f.pool,
            out_len: pool.unwrap_or(f.s.output_len()),
            ..Self::plain(f.s)
        }
    }

    /// What the layer folds, a pool's winners in `winner`.
    fn folds<'w>(&self, winner: &'w Tensor) -> Folds<'w> {
        Folds {
            input: self.input,
            pool: self.pool.map(|padding| Pooled { padding, winner }),
            take: self.take,
            gather: None,
        }
    }

    /// y, winners (a pool's, else an untouched poison), dx, dw and db from random inputs
    /// into NaN, ReLU on or off; and each dispatch's shader, entry point and whether it
    /// copied tensors into textures.
    fn run(&self, g: &Gpu, relu: bool, seed: u64) -> ([Vec<u32>; 5], Vec<Launched>) {
        let what = format!("{self:?} relu={relu}");
        let s = &self.s;
        let mut r = crate::common::rng(seed);
        let mut random = |len: u64| {
            let v = crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
            g.upload("t", &v).or_fail(&what)
        };
        let (x, w, b, dy) = (
            random(self.x_len),
            random(s.weight_len()),
            random(s.co as u64),
            random(self.out_len),
        );
        let t = |len: u64| g.poisoned("t", len).or_fail(&what);
        let (y, winner) = (t(self.out_len), t(self.out_len));
        let (dx, dw, db) = (t(self.x_len), t(s.weight_len()), t(s.co as u64));
        let folds = self.folds(&winner);
        let mut d = conv2d::forward(g, "t", s, &folds, relu, &x, &w, &b, &y).or_fail(&what);
        let go = GradOut {
            dy: &dy,
            relu_output: relu.then_some(&y),
        };
        let partials = partials(g, s, &folds).or_fail(&what);
        let params = conv2d::backward_params(g, "t", s, &folds, &go, &x, &partials, &dw, &db);
        d.extend(params.or_fail(&what));
        let dx_of = conv2d::backward_input(g, "t", s, &folds, &go, &w, &dx);
        d.extend(dx_of.or_fail(&what));
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
        let entries = d
            .iter()
            .map(|d| {
                let source = d.source;
                (
                    source.shader,
                    source.entry,
                    d.fills_textures(),
                    d.launch.clone(),
                )
            })
            .collect();
        let bits = [y, winner, dx, dw, db].map(|t| g.read::<u32>(&t).or_fail(&what));
        (bits, entries)
    }

    /// dx from random inputs (a pool's winners too) as `conv2d::backward_input_masked` stores
    /// it, masked by a random ReLU output of the layer below (a quarter of it exactly 0), and as
    /// `backward_input` then `activation::relu_backward` make it: both into NaN, the
    /// layer's own ReLU on or off.
    fn masked_and_relu_backward(&self, g: &Gpu, relu: bool, seed: u64) -> [Vec<u32>; 2] {
        let what = format!("{self:?} relu={relu}");
        let s = &self.s;
        let mut r = crate::common::rng(seed);
        let mut random = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
        let (w, dy, y) = (
            random(s.weight_len()),
            random(self.out_len),
            random(self.out_len),
        );
        let below: Vec<f32> = random(self.x_len)
            .into_iter()
            .map(|v| if v < -0.5 { 0.0 } else { v })
            .collect();
        // A pool's winners: places 0..3 of each window.
        let winner: Vec<u32> = random(self.out_len)
            .into_iter()
            .map(|v| ((v + 1.0) * 2.0).min(3.0) as u32)
            .collect();
        let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
        let (w, dy, y, below) = (up(&w), up(&dy), up(&y), up(&below));
        let winner = g.upload("t", &winner).or_fail(&what);
        let t = |len: u64| g.poisoned("t", len).or_fail(&what);
        let (dx, masked, fused) = (t(self.x_len), t(self.x_len), t(self.x_len));
        let folds = self.folds(&winner);
        let go = GradOut {
            dy: &dy,
            relu_output: relu.then_some(&y),
        };
        let mut d = conv2d::backward_input(g, "t", s, &folds, &go, &w, &dx).or_fail(&what);
        let mask = wgsl_autoencoder::ops::activation::relu_backward(g, "t", &below, &dx, &masked);
        d.push(mask.or_fail(&what));
        let one = conv2d::backward_input_masked(g, "t", s, &folds, &go, &w, &fused, &below);
        d.extend(one.or_fail(&what));
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
        [masked, fused].map(|t| g.read::<u32>(&t).or_fail(&what))
    }

    /// Whether the CPU set's kernels of `entry` read a tensor through a texture under
    /// `textures`: the forward pass x where the input channels are a multiple of 4, the
    /// input gradient dy (and act) where the output channels are; the weight gradients none.
    fn reads_texture(&self, entry: &str) -> bool {
        match entry {
            "forward" => self.s.ci.is_multiple_of(4),
            "backward_input" => self.s.co.is_multiple_of(4),
            _ => false,
        }
    }
}

/// CPU-set devices with no fold, and with the variant `name` alone.
fn cpu_without_and_with(name: &str) -> (Gpu, Gpu) {
    use wgsl_autoencoder::gpu::FoldSet;
    let with = FoldSet::NONE
        .with(name)
        .unwrap_or_else(|| panic!("no variant {name}"));
    (
        crate::common::open_with_folds(KernelSet::Cpu, FoldSet::NONE),
        crate::common::open_with_folds(KernelSet::Cpu, with),
    )
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

/// `after`'s y, winners, dx, dw and db ([`TexCase::run`]'s) bit for bit as `before`'s, every
/// one but the untouched winners written (no NaN left of the poison).
fn assert_same_outputs(what: &str, before: &[Vec<u32>; 5], after: &[Vec<u32>; 5]) {
    for (name, i) in [("y", 0), ("winner", 1), ("dx", 2), ("dw", 3), ("db", 4)] {
        assert!(before[i] == after[i], "{what}: {name} differs in its bits");
    }
    for (name, i) in [("y", 0), ("dx", 2), ("dw", 3), ("db", 4)] {
        let nan = after[i].iter().any(|v| f32::from_bits(*v).is_nan());
        assert!(!nan, "{what}: {name} left unwritten");
    }
}

/// The CPU set's `textures` variant (the forward pass's x, the input gradient's dy and the
/// ReLU mask's activations read through textures the op's first dispatch copies them into)
/// gives the storage loads' bits: the same floats loaded, so the same sums. Plain layers (the
/// conv autoencoder's, two groups a side, odd channel counts that no texture serves, one
/// channel on either side), upsampled, inserted, taken and pooled inputs and outputs, ReLU on
/// and off, outputs starting as NaN;
/// each dispatch is checked to have copied textures exactly where its kernel reads a
/// tensor four channels at a time and no earlier dispatch of its op (a phase, a channel
/// group) copied it just before, and the plain set never to.
#[test]
fn conv2d_cpu_textures_give_the_storage_bits() {
    let (storage, textured) = cpu_without_and_with("textures");
    let p = |n, h, w, ci, co, padding| TexCase::plain(conv3x3(n, h, w, ci, co, padding));
    let (same, valid) = (Padding::Same, Padding::Valid);
    let mut cases = vec![
        p(2, 14, 14, 16, 8, same),
        p(2, 28, 28, 1, 16, same),
        p(2, 7, 7, 24, 20, valid),
        p(3, 7, 7, 5, 3, same),
        // more than 32 channels: the GPU set's kernels, which read no texture
        p(1, 6, 5, 36, 40, same),
    ];
    // The decoder's last two layers (8 -> 16 'valid', 16 -> 1), scalar channels, and the
    // last at batch 8: an x of 6272 texels, a whole texture row (4096) and a part one.
    let upsampled = upsampled_shapes();
    let picked = [1, 2, 3, 8].map(|i| TexCase::upsampled(upsampled[i]));
    cases.extend(picked);
    let (inserted, taken) = (inserted_shapes(), taken_shapes());
    cases.extend([inserted[6], taken[1]].map(TexCase::strided));
    // The first layer's pool ('same'), and a 'valid' one on odd sides.
    let folded = folded_cases();
    let pooled = folded
        .into_iter()
        .filter(|f| !f.up && (f.pool == Some(valid) || f.s.ci == 1));
    cases.extend(pooled.take(2).map(TexCase::pooled));
    // Dispatches that read a texture an earlier dispatch of their op copied.
    let mut reread = 0;
    for (k, case) in cases.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let (a, plain) = case.run(&storage, relu, 1300 + k as u64);
            let (b, tex) = case.run(&textured, relu, 1300 + k as u64);
            assert!(
                plain.iter().all(|(_, _, fills, _)| !fills),
                "{what}: {plain:?}"
            );
            // The first dispatch of an entry copies; its later phases or channel groups,
            // run right after it, read that copy.
            let mut seen = Vec::new();
            for (shader, entry, fills, _) in &tex {
                let reads = *shader == "cpu/conv2d" && case.reads_texture(entry);
                let first = !seen.contains(entry);
                seen.push(*entry);
                assert_eq!(*fills, reads && first, "{what}: {entry} ({tex:?})");
                reread += (reads && !first) as usize;
            }
            assert_same_outputs(&what, &a, &b);
        }
    }
    // The inserted case's forward phases and the taken and 24 -> 20 cases' input gradients.
    assert!(
        reread >= 3 * 2,
        "{reread} dispatches read an earlier one's copy"
    );
}

/// The CPU set's `reuse` variant (each pixel loaded once for every tap that reads it: a
/// kernel row's three weight-gradient taps per invocation sliding along the row; the 4x4
/// patch a pooled window's or an upsampled pixel's taps read) gives the bits of the kernels
/// that load it per tap (and, for an input gradient, per pixel of x: two neighbours of a row
/// per invocation, UP_PAIR for an upsampled layer, BIN_PAIR for a plain one): the same floats
/// meet the same sums in the same order. Plain layers
/// whose chunks of 256 pixels start inside a row (14 wide, two images) and end past the last
/// pixel, 'valid' padding, two groups a side, odd channel counts and widths, one output
/// channel; one output channel through
/// an upsampling ('same' from 16 channels, 'valid' from five, an odd row, two input groups);
/// one input channel into a
/// 'same' pool on even sides and on odd ones (the clamped last row and column, two output
/// groups). ReLU on and off, outputs
/// starting as NaN. The plain layers must run BIN_PAIR (and, with more than one channel a
/// side, `backward_params_row`) under `reuse` and neither without it, so the comparison cannot
/// pass by running the same code.
#[test]
fn conv2d_cpu_reuse_gives_the_same_bits() {
    let (per_tap, reused) = cpu_without_and_with("reuse");
    let shape = conv3x3;
    let (same, valid) = (Padding::Same, Padding::Valid);
    // Plain layers: their weight gradients by kernel rows, their input gradients by pairs of
    // pixels (the encoder's 16 -> 8; rows of odd length, whose last pair's second pixel is not
    // stored; three and one output channels, loaded lane by lane; two groups a side).
    let plain = [
        shape(2, 14, 14, 16, 8, same),
        shape(2, 9, 7, 5, 3, valid),
        shape(2, 6, 5, 24, 20, same),
        shape(3, 5, 7, 6, 1, same),
    ];
    let mut cases: Vec<TexCase> = plain.into_iter().map(TexCase::plain).collect();
    let up =
        |n, h, w, ci, co, padding| TexCase::upsampled(Upsampled(shape(n, h, w, ci, co, padding)));
    // Input gradients by pairs of x pixels: the decoder's 8 -> 16 ('valid'), a half-size row
    // of odd length (the last pair's second pixel not stored), two output groups from 5
    // channels (the second adding to dx, stored lane by lane); and with one output channel,
    // the last layer's 16 -> 1, 5 channels stored lane by lane ('valid'), an odd row, and two
    // input groups (the denoising model's 32 -> 1).
    let up_pairs = cases.len()..cases.len() + 7;
    let up_pairs_first = up_pairs.start;
    cases.extend([
        up(2, 16, 16, 8, 16, valid),
        up(3, 10, 6, 4, 4, same),
        up(2, 6, 4, 5, 20, same),
        up(2, 28, 28, 16, 1, same),
        up(2, 6, 8, 5, 1, valid),
        up(3, 10, 6, 16, 1, same),
        up(2, 8, 10, 32, 1, same),
    ]);
    let pooled = |n, h, w, co, pool| {
        TexCase::pooled(Folded {
            s: shape(n, h, w, 1, co, same),
            up: false,
            pool: Some(pool),
        })
    };
    let patched = cases.len()..cases.len() + 2;
    cases.extend([pooled(2, 28, 28, 16, same), pooled(2, 7, 9, 20, same)]);
    // Forward passes through an upsampling with at least 4 output channels and input
    // channels a multiple of 4: the x pixels a window (4 to 8 outputs: a pair's) reads loaded
    // once each (REUSE). The decoder's 8 -> 16 and the 4 -> 4 pairs above, and: 12 outputs
    // (pairs in the input gradient too), two input groups (20 -> 12) and two output groups
    // (8 -> 20, rows of x of odd length), 'same'; 8 -> 8 pairs, 'valid' (rows of odd length),
    // and two input groups of pairs (20 -> 8).
    let up_windows = cases.len()..cases.len() + 5;
    cases.extend([
        up(2, 6, 8, 4, 12, same),
        up(2, 4, 6, 20, 12, same),
        up(1, 10, 6, 8, 20, same),
        up(2, 8, 10, 8, 8, valid),
        up(1, 6, 6, 20, 8, same),
    ]);
    let up_pairs =
        |k: usize| up_pairs.contains(&k) || (up_windows.contains(&k) && cases[k].s.ci <= 8);
    let rows = plain.len();
    for (k, case) in cases.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let (a, before) = case.run(&per_tap, relu, 1500 + k as u64);
            let (b, after) = case.run(&reused, relu, 1500 + k as u64);
            let runs = |d: &[Launched], entry| d.iter().any(|(_, e, ..)| *e == entry);
            assert!(!runs(&before, "backward_params_row"), "{what}: {before:?}");
            // (A layer with one channel a side takes the thin weight gradient instead.)
            let thin = case.s.ci == 1 || case.s.co == 1;
            assert_eq!(
                runs(&after, "backward_params_row"),
                k < rows && !thin,
                "{what}: {after:?}"
            );
            let has = |d: &[Launched], c: &str| d.iter().any(|(.., l)| l.contains(c));
            for pairs in ["UP_PAIR=1", "BIN_PAIR=1"] {
                assert!(!has(&before, pairs), "{what}: {before:?}");
            }
            assert_eq!(has(&after, "UP_PAIR=1"), up_pairs(k), "{what}: {after:?}");
            // The forward pass's reads once per pixel: the pooled window's patch, and through
            // an upsampling with at least 4 output channels and whole vec4s of input ones the
            // window's x pixels (the decoder's 8 -> 16, the 4 -> 4 pairs and up_windows).
            let reads_once = |d: &[Launched]| {
                d.iter()
                    .any(|(_, e, _, l)| *e == "forward" && l.contains("REUSE=1"))
            };
            assert!(!reads_once(&before), "{what}: {before:?}");
            let up = case.input == Input::Upsampled2x;
            let windows = up && case.s.co >= 4 && case.s.ci.is_multiple_of(4);
            assert_eq!(
                windows,
                [up_pairs_first, up_pairs_first + 1].contains(&k) || up_windows.contains(&k),
                "{what}"
            );
            let once = patched.contains(&k) || windows;
            assert_eq!(reads_once(&after), once, "{what}: {after:?}");
            assert_eq!(has(&after, "BIN_PAIR=1"), k < rows, "{what}: {after:?}");
            assert_same_outputs(&what, &a, &b);
        }
    }
}

/// The CPU set's `lanes` variant (a subgroup takes whole rows, two pixels of a row per lane,
/// each lane loading its own columns of the window and taking the ones beside them from its
/// neighbours) gives the bits of the kernels without it: the forward pass's pairs and the
/// per-pixel input gradients (an upsampled layer's too, folded taps over x's half-size
/// rows). 'Same' layers with no fold: the encoder's 16 -> 8 (7 pairs
/// a row, one lane idle), its 7x7 and 4x4 layers (rows of odd length; 2 and 4 rows per
/// subgroup, the last subgroup part idle), a row of 8 pairs (every lane busy) and of 15
/// pixels, one vec4 of channels, two input groups (the forward pass's second slice) and two
/// output groups (the input gradient's second dispatch adding to dx; no forward pairs); a
/// 'valid' layer, which takes neither, and a row of 9 pairs, which takes them only where a
/// subgroup is wider than 8. Upsampled layers' input gradients: the decoder's 8 -> 16
/// ('valid') and 8 -> 8, an x row of odd length, two output groups from 5 input channels, x
/// rows of 8 pairs, and with one output channel the last layer's 16 -> 1 (a lane's columns
/// one vec4 of dy), an x row of 3, a 'valid' layer, two input groups and 5 input channels;
/// their forward pass with one output channel: the last layer's 16 -> 1, an
/// x row of 3, rows of 8 groups, and a 'valid' layer and one of 32 channels (not taken).
/// ReLU on and off, outputs starting as NaN. On an adapter
/// without subgroups of one width the variant changes nothing, which the test checks
/// instead.
#[test]
fn conv2d_cpu_lanes_gives_the_same_bits() {
    let (without, with) = cpu_without_and_with("lanes");
    let shape = conv3x3;
    let (same, valid) = (Padding::Same, Padding::Valid);
    // (shape, whether the forward pass's shape takes lanes, whether the input gradient's
    // does): each then runs them where a subgroup holds a row's pairs.
    let cases = [
        (shape(2, 14, 14, 16, 8, same), true, true),
        (shape(2, 7, 7, 8, 8, same), true, true),
        (shape(3, 4, 4, 8, 8, same), true, true),
        (shape(1, 5, 16, 4, 4, same), true, true),
        (shape(2, 3, 15, 8, 4, same), true, true),
        (shape(1, 6, 6, 32, 8, same), true, true),
        (shape(2, 6, 5, 24, 20, same), false, true),
        (shape(2, 9, 7, 8, 8, valid), false, false),
        (shape(1, 3, 18, 8, 8, same), true, true),
    ];
    // Upsampled layers' input gradients (UP_PAIR's sums; x's rows in pairs): the decoder's
    // 8 -> 16 ('valid') and 8 -> 8, a half-size row of odd length, two output groups from 5
    // channels (stored lane by lane), x rows of 8 pairs; and with one output channel (a
    // lane's four columns of a row one vec4 of dy where 'same' rows are whole vec4s, else
    // four loads): the last layer's 16 -> 1 (vec4s), an x row of 3 (loads), x rows of 16
    // pairs (taken only where a subgroup is wider than 8), a 'valid' layer (loads), two input
    // groups (32 -> 1) and 5 input channels (dx stored lane by lane).
    let up = |n, h, w, ci, co, padding| Upsampled(shape(n, h, w, ci, co, padding));
    // With one output channel, the forward pass: the last layer's 16 -> 1 (4 groups of
    // UP_ROW x pixels a row, the last half full), an x row of 3 (one group, 8 rows per
    // subgroup), rows of 8 groups (every lane busy); a 'valid' one and one of 32 channels
    // take neither.
    let upsampled = [
        (up(2, 16, 16, 8, 16, valid), false, true),
        (up(3, 8, 8, 8, 8, same), false, true),
        (up(3, 10, 6, 4, 4, same), false, true),
        (up(2, 6, 4, 5, 20, same), false, true),
        (up(1, 4, 32, 8, 4, same), false, true),
        (up(2, 28, 28, 16, 1, same), true, true),
        (up(3, 10, 6, 4, 1, same), true, true),
        (up(1, 4, 64, 8, 1, same), true, true),
        (up(2, 8, 10, 8, 1, valid), false, true),
        (up(1, 8, 8, 32, 1, same), false, true),
        (up(2, 6, 8, 5, 1, same), false, true),
    ];
    // (The lanes a row takes, forward and input gradient: its pairs, but the upsampled
    // forward pass's UP_ROW x pixels with one output channel.)
    let cases = cases
        .into_iter()
        .map(|(s, fwd, bin)| (TexCase::plain(s), fwd, bin, [s.w.div_ceil(2); 2]))
        .chain(upsampled.into_iter().map(|(u, fwd, bin)| {
            let per_lane = if u.0.co == 1 { 4 } else { 2 };
            let row = u.0.w / 2;
            (
                TexCase::upsampled(u),
                fwd,
                bin,
                [row.div_ceil(per_lane), row.div_ceil(2)],
            )
        }));
    let width = with.subgroup_lanes();
    let entries = [
        "forward_lanes",
        "backward_input_lanes",
        "forward_up_lanes",
        "backward_input_up_lanes",
    ];
    let mut ran = [0; 4];
    for (k, (case, fwd, bin, lanes)) in cases.enumerate() {
        let fits = lanes.map(|n| width.is_some_and(|w| n <= w && 128 % w == 0));
        let up = case.input == Input::Upsampled2x;
        let (fwd, bin) = (fwd && fits[0], bin && fits[1]);
        let want = [fwd && !up, bin && !up, fwd && up, bin && up];
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu} subgroups {width:?}");
            let (a, before) = case.run(&without, relu, 1700 + k as u64);
            let (b, after) = case.run(&with, relu, 1700 + k as u64);
            let runs = |d: &[Launched], entry| d.iter().any(|(_, e, ..)| *e == entry);
            for (i, entry) in entries.into_iter().enumerate() {
                assert!(!runs(&before, entry), "{what}: {before:?}");
                assert_eq!(runs(&after, entry), want[i], "{what}: {entry} {after:?}");
                ran[i] += want[i] as usize;
            }
            assert_same_outputs(&what, &a, &b);
        }
    }
    // lavapipe (a CPU adapter through Vulkan) has subgroups, its 8-wide vectors: there the
    // variant must have run, and the 9 pairs of an 18-wide row taken neither.
    let cpu_vulkan = with.info.device_type == wgpu::DeviceType::Cpu
        && with.info.backend == wgpu::Backend::Vulkan;
    assert!(
        !cpu_vulkan || width == Some(8),
        "{}: subgroups {width:?}",
        with.name()
    );
    assert!(
        !cpu_vulkan || ran == [12, 14, 6, 20],
        "the lanes entry points ran {ran:?} times on {}",
        with.name()
    );
}

/// The CPU set's input gradient masked as it is stored (`backward_input_masked`: the ReLU
/// mask of the layer below, which then runs no pass of its own) gives the bits of the input
/// gradient followed by `activation::relu_backward`: exact zeros in the mask masked, as
/// there. Plain layers (the conv autoencoder's 16 -> 8, two groups a side, whose second
/// output group adds to the masked sum, odd channel counts), the decoder's upsampled layers,
/// an inserted and a taken input (one dispatch per phase) and a pooled output; ReLU on and
/// off; outputs starting as NaN. On the GPU set it is refused by name.
#[test]
fn conv2d_cpu_input_gradient_masked_gives_relu_backward_bits() {
    let cpu = crate::common::gpu_with(KernelSet::Cpu);
    let p = |n, h, w, ci, co, padding| TexCase::plain(conv3x3(n, h, w, ci, co, padding));
    let (same, valid) = (Padding::Same, Padding::Valid);
    let mut cases = vec![
        p(2, 14, 14, 16, 8, same),
        p(2, 7, 7, 24, 20, valid),
        p(3, 7, 5, 5, 3, same),
    ];
    let upsampled = upsampled_shapes();
    cases.extend([1, 2].map(|i| TexCase::upsampled(upsampled[i])));
    let (inserted, taken) = (inserted_shapes(), taken_shapes());
    cases.extend([inserted[6], taken[1]].map(TexCase::strided));
    let pooled = folded_cases().into_iter().find(|f| !f.up && f.s.ci > 1);
    cases.extend(pooled.map(TexCase::pooled));
    for (k, case) in cases.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let [apart, fused] = case.masked_and_relu_backward(cpu, relu, 1700 + k as u64);
            assert!(apart == fused, "{what}: the masked dx differs in its bits");
            let nan = fused.iter().any(|v| f32::from_bits(*v).is_nan());
            assert!(!nan, "{what}: dx left unwritten");
            let zeros = fused.iter().filter(|v| f32::from_bits(**v) == 0.0).count();
            assert!(zeros >= fused.len() / 8, "{what}: {zeros} of dx masked");
        }
    }
    let gpu = crate::common::gpu_with(KernelSet::Gpu);
    let s = cases[0].s;
    let t = |len| {
        gpu.upload("t", &vec![0.5f32; len as usize])
            .or_fail("upload")
    };
    let (w, dy, dx) = (t(s.weight_len()), t(s.output_len()), t(s.input_len()));
    let go = GradOut {
        dy: &dy,
        relu_output: None,
    };
    let folds = Folds::default();
    match conv2d::backward_input_masked(gpu, "t", &s, &folds, &go, &w, &dx, &dx) {
        Err(Error::Shape { detail, .. }) => assert!(detail.contains("CPU kernel set"), "{detail}"),
        other => panic!(
            "the GPU set took a masked input gradient: {:?}",
            other.map(|d| d.len())
        ),
    }
}

/// The gather fold (`--folds gather`): a first convolution reading its batch straight from
/// the split's packed u8 pixels through the order gives the output (and a folded pool's
/// winners) of `batch.gather` and then the plain forward pass bit for bit, and writes that
/// batch, the reference's gather bit for bit, into poison. On the conv model's first layer at
/// the training batch (256 of 28x28x1 -> 16, pooled) and at odd shapes: a 'same' pool on 7x9
/// (windows cut at the edges), no pool, two output groups, three and four input channels (the
/// vec4 variant's x loads give way to the gather), a 'valid' pool on even sides; from entry 2
/// of a shuffled order. On every adapter and limit set (the pooled kernel binds 8 storage
/// buffers, WebGPU's default), and under the narrow, vec4 and quads variants. A 'valid'
/// convolution and a 'valid' pool that drops an odd row are refused with the reason.
#[test]
fn conv2d_forward_gathering_its_batch_is_the_gather_then_the_forward_bit_for_bit() {
    use wgsl_autoencoder::gpu::FoldSet;
    let (same, valid) = (Padding::Same, Padding::Valid);
    let cases = [
        (conv3x3(256, 28, 28, 1, 16, same), Some(same)),
        (conv3x3(3, 7, 9, 1, 8, same), Some(same)),
        (conv3x3(2, 5, 6, 1, 20, same), None),
        (conv3x3(2, 6, 4, 3, 5, same), Some(valid)),
        (conv3x3(3, 6, 6, 4, 8, same), Some(same)),
    ];
    let variants = [
        (
            "narrow",
            FoldSet {
                narrow: true,
                ..FoldSet::NONE
            },
        ),
        (
            "vec4",
            FoldSet {
                vec4: true,
                ..FoldSet::NONE
            },
        ),
        (
            "quads",
            FoldSet {
                pool: true,
                quads: true,
                ..FoldSet::NONE
            },
        ),
    ]
    .map(|(name, folds)| (name, open_folds(folds)));
    for (k, (s, pool)) in cases.into_iter().enumerate() {
        let check = |g: &Gpu, config: &str| {
            let what = format!("{config}: {s:?} pool {pool:?}");
            gathering_forward_case(g, &what, k, &s, pool);
        };
        crate::common::each_gpu(check);
        for (name, g) in &variants {
            check(g, name);
        }
    }
    // Refused: outputs that do not cover every input pixel once.
    let g = crate::common::gpu_with(KernelSet::Gpu);
    for (s, pool) in [
        (conv3x3(2, 6, 6, 1, 4, valid), None),
        (conv3x3(2, 7, 6, 1, 4, same), Some(valid)),
    ] {
        let what = format!("{s:?} pool {pool:?}");
        let pixels = s.input_len() / s.n as u64;
        let images = g
            .upload("images", &vec![0u32; pixels as usize])
            .or_fail(&what);
        let order = g.upload("order", &[0u32, 1, 0, 1]).or_fail(&what);
        let out_len = gathering_output_len(&s, pool);
        let t = |len: u64| g.poisoned("t", len).or_fail(&what);
        let (x, w, b, y, win) = (
            t(s.input_len()),
            t(s.weight_len()),
            t(4),
            t(out_len),
            t(out_len),
        );
        let folds = gathering_folds(pool, &win, &images, &order, &x);
        assert!(!conv2d::gathers(&s, &folds), "{what}");
        match conv2d::forward(g, "t", &s, &folds, true, &x, &w, &b, &y) {
            Err(Error::Shape { detail, .. }) => {
                assert!(
                    detail.contains("cover every input pixel once"),
                    "{what}: {detail}"
                )
            }
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: a gather that leaves pixels unwritten was built"),
        }
    }
}

/// One case of the test above on `g`.
fn gathering_forward_case(g: &Gpu, what: &str, k: usize, s: &Conv2dShape, pool: Option<Padding>) {
    use rand::seq::SliceRandom;
    use wgsl_autoencoder::ops::batch;
    let (count, offset) = (s.n as usize + 3, 2usize);
    let pixels = s.input_len() as usize / s.n as usize;
    let mut r = crate::common::rng(1300 + k as u64);
    let pixel_bytes: Vec<u8> = (0..count * pixels)
        .map(|_| rand::Rng::random(&mut r))
        .collect();
    let mut order: Vec<u32> = (0..count as u32).collect();
    order.shuffle(&mut r);
    let images = g
        .upload("images", &batch::pack_pixels(&pixel_bytes))
        .or_fail(what);
    let order_t = g.upload("order", &order).or_fail(what);
    let w = g.upload(
        "w",
        &crate::common::uniform(&mut r, s.weight_len() as usize, -1.0, 1.0),
    );
    let b = g.upload(
        "b",
        &crate::common::uniform(&mut r, s.co as usize, -1.0, 1.0),
    );
    let (w, b) = (w.or_fail(what), b.or_fail(what));
    let out_len = gathering_output_len(s, pool);
    let t = |len: u64| g.poisoned("t", len).or_fail(what);
    let bits = |t: &Tensor| g.read::<u32>(t).or_fail(what);
    for relu in [false, true] {
        let what = format!("{what} relu={relu}");
        // The gather, then the forward pass.
        let (x0, y0, win0) = (t(s.input_len()), t(out_len), t(out_len));
        let p = batch::Params {
            n: s.n,
            pixels: pixels as u32,
            offset: offset as u32,
            seed: 0,
            noise: 0.0,
            _p: [0; 3],
        };
        let mut d = vec![batch::gather(g, "t", &p, &images, &order_t, &x0).or_fail(&what)];
        let plain = Folds {
            pool: pool.map(|padding| Pooled {
                padding,
                winner: &win0,
            }),
            ..Default::default()
        };
        d.extend(conv2d::forward(g, "t", s, &plain, relu, &x0, &w, &b, &y0).or_fail(&what));
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

        // Gathered by the forward pass, its offset set as a training step sets it.
        let (x1, y1, win1) = (t(s.input_len()), t(out_len), t(out_len));
        let folds = gathering_folds(pool, &win1, &images, &order_t, &x1);
        assert!(conv2d::gathers(s, &folds), "{what}");
        let d = conv2d::forward(g, "t", s, &folds, relu, &x1, &w, &b, &y1).or_fail(&what);
        assert_eq!(d.len(), 1, "{what}: one dispatch");
        conv2d::set_gather_offset(&d[0], 0, offset as u32);
        d[0].flush(g);
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

        let want = reference::batch::gather(&pixel_bytes, pixels, &order, offset, s.n as usize);
        let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
        assert!(
            bits(&x0) == want,
            "{what}: batch.gather is not the reference's"
        );
        assert!(
            bits(&x1) == want,
            "{what}: the batch written differs in its bits"
        );
        assert!(bits(&y1) == bits(&y0), "{what}: y differs in its bits");
        if pool.is_some() {
            assert!(bits(&win1) == bits(&win0), "{what}: winners differ");
        }
    }
}

/// Elements of a layer's output with a pool of `pool`'s padding folded after it, if any.
fn gathering_output_len(s: &Conv2dShape, pool: Option<Padding>) -> u64 {
    let (h, w) = s.out_hw();
    pool.map_or(s.output_len(), |padding| {
        let c = s.co;
        PoolShape {
            n: s.n,
            h,
            w,
            c,
            padding,
        }
        .output_len()
    })
}

/// A first convolution's folds when it gathers its batch (from `images` through `order`, into
/// `batch`), with a pool of `pool`'s padding after it, its winners in `winner`.
fn gathering_folds<'t>(
    pool: Option<Padding>,
    winner: &'t Tensor,
    images: &'t Tensor,
    order: &'t Tensor,
    batch: &'t Tensor,
) -> Folds<'t> {
    Folds {
        pool: pool.map(|padding| Pooled { padding, winner }),
        gather: Some(conv2d::Gathered {
            images,
            order,
            batch,
        }),
        ..Default::default()
    }
}
