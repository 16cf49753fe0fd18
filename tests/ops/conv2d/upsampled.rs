//! A convolution reading its input through a folded 2x upsampling, against the two layers'
//! references in turn.
use super::*;

/// A convolution reading its input through a folded 2x upsampling ([`Input::Upsampled2x`]):
/// `self.0` is the convolution's shape, its input the upsampled size. The reference is the
/// two layers' references in turn (backward: the convolution's input gradient, then the
/// upsampling's).
#[derive(Clone, Copy, Debug)]
pub(super) struct Upsampled(pub(super) Conv2dShape);

const UPSAMPLED: Folds = Folds {
    input: Input::Upsampled2x,
    pool: None,
    take: None,
    gather: None,
};

impl Upsampled {
    /// The upsampling folded in front of the convolution.
    pub(super) fn up(&self) -> UpsampleShape {
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
pub(super) fn upsampled_shapes() -> Vec<Upsampled> {
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
pub(super) fn gpu_set_upsampled_shapes() -> Vec<Upsampled> {
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
pub(super) fn cpu_set_upsampled_shapes() -> Vec<Upsampled> {
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
