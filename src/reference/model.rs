//! A whole training step on the CPU: forward, loss, backward and Adam over a [`Model`], built
//! only from this module's sibling ops, in the order `src/train/network.rs` runs the kernels.
//!
//! Every layer's output is rounded to `f32` as the GPU stores it (each op computes in `f64` and
//! rounds once, see [`super`]); ReLU is fused into conv/dense exactly as on the GPU; the last
//! layer yields logits (its sigmoid is folded into the loss, as Keras does). Backward: the
//! fused sigmoid + BCE gradient on the logits, then the layers in reverse, each ReLU masked by
//! the layer's own output. Gradients land in the model's flat layout (padding stays zero), so
//! one [`super::adam::step`] over the whole buffer is the optimiser step, as on the GPU.
use super::{activation, adam, bce, conv2d, dense, pool, stride, upsample};
use crate::model::{LayerOp, Model};
use crate::shapes::AdamConfig;

/// Every layer's output for a batch, as the GPU's activation buffers hold them.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Batch size.
    pub n: usize,
    /// `acts[i]`: output of layer i (after its fused ReLU; the last layer's are logits).
    pub acts: Vec<Vec<f32>>,
    /// `winners[i]`: the pool winners (0..4) of layer i, for pooling layers.
    pub winners: Vec<Option<Vec<u32>>>,
}

impl Forward {
    /// The last layer's output: the logits of the reconstruction.
    pub fn logits(&self) -> &[f32] {
        self.acts.last().map_or(&[], |v| v.as_slice())
    }
}

fn check(model: &Model, params: &[f32], x: &[f32], n: usize) {
    super::expect_len("model", "params", params.len(), model.param_len);
    super::expect_len("model", "x", x.len(), n as u64 * model.input.len());
}

/// The forward pass of `n` inputs `x` (`[n, h, w, c]`) under the flat parameters `params`.
///
/// # Panics
/// On a slice of the wrong length.
pub fn forward(model: &Model, params: &[f32], x: &[f32], n: usize) -> Forward {
    check(model, params, x, n);
    let mut acts: Vec<Vec<f32>> = Vec::with_capacity(model.layers.len());
    let mut winners = Vec::with_capacity(model.layers.len());
    for i in 0..model.layers.len() {
        let input: &[f32] = if i == 0 { x } else { &acts[i - 1] };
        let p = |k: usize| &params[model.param_range(k)];
        // A layer without a bias adds zeros.
        let b = |bias: Option<usize>, len: u32| match bias {
            Some(k) => p(k).to_vec(),
            None => vec![0.0; len as usize],
        };
        let (y, win) = match model.op(i, n as u32) {
            LayerOp::Conv2d {
                shape,
                relu,
                kernel: k,
                bias,
            } => {
                let b = b(bias, shape.co);
                (conv2d::forward(&shape, relu, input, p(k), &b), None)
            }
            LayerOp::Dense {
                shape,
                relu,
                kernel: k,
                bias,
            } => {
                let b = b(bias, shape.fout);
                (dense::forward(&shape, relu, input, p(k), &b), None)
            }
            LayerOp::Pool(s) => {
                let (y, win) = pool::forward(&s, input);
                (y, Some(win))
            }
            LayerOp::Upsample(s) => (upsample::forward(&s, input), None),
            LayerOp::StrideInsert(s) => (stride::insert(&s, input), None),
            LayerOp::StrideTake(s) => (stride::take(&s, input), None),
            LayerOp::Reshape => (input.to_vec(), None),
        };
        acts.push(y);
        winners.push(win);
    }
    Forward { n, acts, winners }
}

/// The mean binary cross-entropy of the forward's logits against `target`, in `f64`.
pub fn loss(model: &Model, fwd: &Forward, target: &[f32]) -> f64 {
    super::expect_len(
        "model::loss",
        "target",
        target.len(),
        fwd.n as u64 * model.input.len(),
    );
    bce::loss(fwd.logits(), target)
}

/// The loss of a batch and its gradient with respect to every parameter, in the model's flat
/// layout (alignment padding zero). `x` is the model's input, `target` the clean images the
/// loss compares against (the same unless the input is noisy).
///
/// # Panics
/// On a slice of the wrong length.
pub fn gradients(
    model: &Model,
    params: &[f32],
    x: &[f32],
    target: &[f32],
    n: usize,
) -> (f64, Vec<f32>) {
    let fwd = forward(model, params, x, n);
    let l = loss(model, &fwd, target);
    let mut grads = vec![0.0f32; model.param_len as usize];
    let last = model.layers.len() - 1;
    // dy: gradient w.r.t. the output of the layer being walked.
    let mut dy = bce::sigmoid_backward(fwd.logits(), target);
    for i in (0..=last).rev() {
        let input: &[f32] = if i == 0 { x } else { &fwd.acts[i - 1] };
        // ReLU's mask comes from the layer's own output, as in the fused GPU kernels.
        let masked = |relu: bool, dy: Vec<f32>| {
            if relu {
                activation::relu_backward(&fwd.acts[i], &dy)
            } else {
                dy
            }
        };
        // Below the first layer with weights no gradient is needed.
        let below = model.needs_input_gradient(i);
        let dx = match model.op(i, n as u32) {
            LayerOp::Conv2d {
                shape: s,
                relu,
                kernel: k,
                bias,
            } => {
                let g = masked(relu, dy);
                grads[model.param_range(k)]
                    .copy_from_slice(&conv2d::backward_weight(&s, input, &g));
                if let Some(b) = bias {
                    grads[model.param_range(b)].copy_from_slice(&conv2d::backward_bias(&s, &g));
                }
                below.then(|| conv2d::backward_input(&s, &g, &params[model.param_range(k)]))
            }
            LayerOp::Dense {
                shape: s,
                relu,
                kernel: k,
                bias,
            } => {
                let g = masked(relu, dy);
                grads[model.param_range(k)].copy_from_slice(&dense::backward_weight(&s, input, &g));
                if let Some(b) = bias {
                    grads[model.param_range(b)].copy_from_slice(&dense::backward_bias(&s, &g));
                }
                below.then(|| dense::backward_input(&s, &g, &params[model.param_range(k)]))
            }
            LayerOp::Pool(s) => below.then(|| {
                let win = fwd.winners[i].as_deref().expect("pool winners");
                pool::backward(&s, win, &dy)
            }),
            LayerOp::Upsample(s) => below.then(|| upsample::backward(&s, &dy)),
            LayerOp::StrideInsert(s) => below.then(|| stride::take(&s, &dy)),
            LayerOp::StrideTake(s) => below.then(|| stride::insert(&s, &dy)),
            LayerOp::Reshape => below.then_some(dy),
        };
        match dx {
            Some(d) => dy = d,
            None => break,
        }
    }
    (l, grads)
}

/// One training step at Adam step `t` (1-based): [`gradients`], then one Adam update over the
/// whole flat buffer. Returns the batch's loss (before the update).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &Model,
    cfg: &AdamConfig,
    t: u64,
    params: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    x: &[f32],
    target: &[f32],
    n: usize,
) -> f64 {
    let (l, g) = gradients(model, params, x, target, n);
    adam::step(cfg, t, params, &g, m, v);
    l
}
