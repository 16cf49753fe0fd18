//! One harness for the ops with a kernel and a bias (conv2d, dense): each direction's GPU
//! result against the reference, with and without the fused ReLU mask, on every shape the op
//! lists. An op plugs in through [`Weighted`]; its test file holds only its shapes and the
//! calls.
use crate::common::{assert_close, each_kernel_set, rng, uniform, OrFail};
use std::fmt::Debug;
use wgsl_autoencoder::gpu::{Dispatch, Gpu, Tensor};
use wgsl_autoencoder::ops::conv2d::GradOut;
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::{reference, Result};

/// A layer shape with a kernel and a bias, its reference and its launchers.
pub trait Weighted: Copy + Debug {
    /// Kernel values are drawn from `-W_RANGE..W_RANGE`.
    const W_RANGE: f32;
    fn input_len(&self) -> u64;
    fn output_len(&self) -> u64;
    fn weight_len(&self) -> u64;
    fn bias_len(&self) -> u64;
    /// Whether `g`'s kernel set runs this shape (a shape only one set's kernels take is
    /// tested there, and its refusal elsewhere by its own test).
    fn runs_on(&self, _g: &Gpu) -> bool {
        true
    }

    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32>;
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32>;
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32>;
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32>;

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        g: &Gpu,
        relu: bool,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>>;
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>>;
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>>;
    fn backward_bias(&self, g: &Gpu, go: &GradOut, db: &Tensor) -> Result<Vec<Dispatch>>;
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>>;
}

/// Seeded random inputs, kernel, bias and upstream gradient for one shape.
struct Case<S> {
    s: S,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn case<S: Weighted>(s: S, seed: u64) -> Case<S> {
    let mut r = rng(seed);
    Case {
        s,
        x: uniform(&mut r, s.input_len() as usize, -1.0, 1.0),
        w: uniform(&mut r, s.weight_len() as usize, -S::W_RANGE, S::W_RANGE),
        b: uniform(&mut r, s.bias_len() as usize, -0.5, 0.5),
        dy: uniform(&mut r, s.output_len() as usize, -1.0, 1.0),
    }
}

/// The upstream gradient as the reference sees it (masked by ReLU' when the layer had ReLU)
/// and the saved output the GPU masks with.
fn masked<S: Weighted>(c: &Case<S>, relu: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    if !relu {
        return (c.dy.clone(), None);
    }
    let act = c.s.ref_forward(true, &c.x, &c.w, &c.b);
    (reference::activation::relu_backward(&act, &c.dy), Some(act))
}

/// Runs `body` on every configuration (adapter and limit set), every shape, with and without
/// ReLU, on a fresh case seeded from `seed`; `what` names all three.
fn each<S: Weighted>(shapes: &[S], seed: u64, mut body: impl FnMut(&Gpu, &Case<S>, bool, &str)) {
    let mut ran = 0;
    each_kernel_set(|g, config| {
        for (k, s) in shapes.iter().enumerate() {
            if !s.runs_on(g) {
                continue;
            }
            ran += 1;
            for relu in [false, true] {
                let c = case(*s, seed + k as u64);
                body(g, &c, relu, &format!("{config}: {s:?} relu={relu}"));
            }
        }
    });
    assert!(ran > 0, "no configuration ran any of {shapes:?}");
}

/// [`each`] for a backward direction: the body gets the upstream gradient on the GPU (`dy`
/// and, with ReLU, the saved output to mask it with) and as the reference sees it (masked).
fn each_backward<S: Weighted>(
    shapes: &[S],
    seed: u64,
    mut body: impl FnMut(&Gpu, &Case<S>, &GradOut, &[f32], &str),
) {
    each(shapes, seed, |g, c, relu, what| {
        let (dy_ref, act) = masked(c, relu);
        let dy = g.upload("dy", &c.dy).or_fail(what);
        let act = act.map(|a| g.upload("act", &a).or_fail(what));
        let go = GradOut {
            dy: &dy,
            relu_output: act.as_ref(),
        };
        body(g, c, &go, &dy_ref, what);
    });
}

pub fn forward<S: Weighted>(shapes: &[S], seed: u64, tol: f64) {
    each(shapes, seed, |g, c, relu, what| {
        let (x, w, b) = (
            g.upload("x", &c.x).or_fail(what),
            g.upload("w", &c.w).or_fail(what),
            g.upload("b", &c.b).or_fail(what),
        );
        let y = g.poisoned("y", c.s.output_len()).or_fail(what);
        run(g, &c.s.forward(g, relu, &x, &w, &b, &y).or_fail(what)).or_fail(what);
        let want = c.s.ref_forward(relu, &c.x, &c.w, &c.b);
        assert_close(what, &g.read::<f32>(&y).or_fail(what), &want, tol);
    });
}

pub fn backward_input<S: Weighted>(shapes: &[S], seed: u64, tol: f64) {
    each_backward(shapes, seed, |g, c, go, dy_ref, what| {
        let w = g.upload("w", &c.w).or_fail(what);
        let dx = g.poisoned("dx", c.s.input_len()).or_fail(what);
        run(g, &c.s.backward_input(g, go, &w, &dx).or_fail(what)).or_fail(what);
        let want = c.s.ref_backward_input(dy_ref, &c.w);
        assert_close(what, &g.read::<f32>(&dx).or_fail(what), &want, tol);
    });
}

pub fn backward_weight<S: Weighted>(shapes: &[S], seed: u64, tol: f64) {
    each_backward(shapes, seed, |g, c, go, dy_ref, what| {
        let x = g.upload("x", &c.x).or_fail(what);
        let dw = g.poisoned("dw", c.s.weight_len()).or_fail(what);
        run(g, &c.s.backward_weight(g, go, &x, &dw).or_fail(what)).or_fail(what);
        let want = c.s.ref_backward_weight(&c.x, dy_ref);
        assert_close(what, &g.read::<f32>(&dw).or_fail(what), &want, tol);
    });
}

pub fn backward_bias<S: Weighted>(shapes: &[S], seed: u64, tol: f64) {
    each_backward(shapes, seed, |g, c, go, dy_ref, what| {
        let db = g.poisoned("db", c.s.bias_len()).or_fail(what);
        run(g, &c.s.backward_bias(g, go, &db).or_fail(what)).or_fail(what);
        let want = c.s.ref_backward_bias(dy_ref);
        assert_close(what, &g.read::<f32>(&db).or_fail(what), &want, tol);
    });
}

/// The fused path training runs: kernel and bias gradients in one pass.
pub fn backward_params<S: Weighted>(shapes: &[S], seed: u64, tol: f64) {
    each_backward(shapes, seed, |g, c, go, dy_ref, what| {
        let x = g.upload("x", &c.x).or_fail(what);
        let dw = g.poisoned("dw", c.s.weight_len()).or_fail(what);
        let db = g.poisoned("db", c.s.bias_len()).or_fail(what);
        run(g, &c.s.backward_params(g, go, &x, &dw, &db).or_fail(what)).or_fail(what);
        let want_w = c.s.ref_backward_weight(&c.x, dy_ref);
        assert_close(what, &g.read::<f32>(&dw).or_fail(what), &want_w, tol);
        let want_b = c.s.ref_backward_bias(dy_ref);
        assert_close(what, &g.read::<f32>(&db).or_fail(what), &want_b, tol);
    });
}
