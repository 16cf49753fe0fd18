//! The forward pass, the loss and the reconstruction.
use super::{in_parallel, Network};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::LayerOp;
use crate::ops::{self, conv2d, dense, pool, stride, upsample};
use crate::Result;
use std::ops::Range;

impl Network {
    /// Forward dispatches of layers `range` for a batch of n; with `gather` (a split's packed
    /// images and its order), the first convolution gathers the batch itself where it can
    /// ([`Network::conv_gathering`]; else the caller's gather must run first).
    pub fn forward(
        &self,
        gpu: &Gpu,
        n: u32,
        range: Range<usize>,
        gather: Option<(&Tensor, &Tensor)>,
    ) -> Result<Vec<Dispatch>> {
        let gathering = match gather {
            Some(split) => self.conv_gathering(gpu, n, &range)?.map(|i| (i, split)),
            None => None,
        };
        let layers = in_parallel(range.clone().collect(), |i| {
            let gather = gathering.filter(|(at, _)| *at == i).map(|(_, split)| split);
            self.forward_layer(gpu, i, n, &range, gather)
        })?;
        Ok(layers.into_iter().flatten().collect())
    }

    /// Layer i's forward dispatches; `gather`: the split it gathers its batch from
    /// ([`Network::conv_gathering`] says which layer).
    fn forward_layer(
        &self,
        gpu: &Gpu,
        i: usize,
        n: u32,
        range: &Range<usize>,
        gather: Option<(&Tensor, &Tensor)>,
    ) -> Result<Vec<Dispatch>> {
        if self.folded(gpu, i, n, range) {
            return Ok(Vec::new());
        }
        let (x, y, label) = (self.layer_input(i, n), self.act(i, n), self.model.label(i));
        let p = |k| self.param(&self.params, k);
        Ok(vec![match self.model.op(i, n) {
            LayerOp::Conv2d {
                shape,
                relu,
                kernel,
                bias,
            } => {
                let b = self.bias(&self.params, bias, shape.co);
                let io = self.conv_io(gpu, i, n, range)?;
                let (x, y) = (&io.x, &self.act(io.out, n));
                let folds = conv2d::Folds {
                    gather: gather.map(|(images, order)| conv2d::Gathered {
                        images,
                        order,
                        batch: x,
                    }),
                    ..io.folds()
                };
                return conv2d::forward(gpu, &label, &shape, &folds, relu, x, &p(kernel), &b, y);
            }
            LayerOp::Dense {
                shape,
                relu,
                kernel,
                bias,
            } => {
                let b = self.bias(&self.params, bias, shape.fout);
                dense::forward(gpu, &label, &shape, relu, &x, &p(kernel), &b, &y)?
            }
            LayerOp::Pool(s) => {
                let win = self.winner(i, s.output_len())?;
                pool::forward(gpu, &label, &s, &x, &y, &win)?
            }
            LayerOp::Upsample(s) => upsample::forward(gpu, &label, &s, &x, &y)?,
            LayerOp::StrideInsert(s) => stride::insert(gpu, &label, &s, &x, &y)?,
            LayerOp::StrideTake(s) => stride::take(gpu, &label, &s, &x, &y)?,
            LayerOp::Reshape => return Ok(Vec::new()),
        }])
    }

    /// Whether a training plan's loss pass also writes the logits' gradient (`--folds loss`),
    /// so that its backward pass starts without `bce.sigmoid_backward`.
    pub fn folds_loss_gradient(&self, gpu: &Gpu) -> bool {
        gpu.folds.loss && self.training.is_some()
    }

    /// Whether a training plan's Adam dispatch also finishes the loss (`--folds finish`):
    /// then [`Network::loss`] builds no finish and [`Network::adam_loss_finish`] does it.
    pub fn folds_loss_finish(&self, gpu: &Gpu) -> bool {
        gpu.folds.finish && self.training.is_some()
    }

    /// The mean loss of a batch of n into `loss[slot]`, in two fixed-tree passes: the partial
    /// sums ([`Loss::partial`]; unless `passes.partial` is false: then [`Network::grads`]
    /// sums them), then [`Loss::finish`], whose uniform holds the slot (unless
    /// `passes.finish` is false: then [`Network::adam_loss_finish`] does it). With
    /// `passes.gradient`, the first pass also writes the logits' gradient (see
    /// [`Network::folds_loss_gradient`]).
    pub fn loss(
        &self,
        gpu: &Gpu,
        n: u32,
        loss: &Tensor,
        slot: u32,
        passes: LossPasses,
    ) -> Result<Loss> {
        let total = n as u64 * self.model.input.len();
        let last = self.model.layers.len() - 1;
        let (z, t) = (
            self.act(last, n),
            self.view(&self.target, n, self.model.input.len()),
        );
        let partials = self.partials.view(0, ops::bce::partials_len(total));
        let partial = match (passes.partial, passes.gradient) {
            (false, _) => None,
            (true, true) => {
                let dz = self.training()?.dact(&self.model, last, n);
                let p = ops::bce::loss_partial_gradient(gpu, "loss", &z, &t, &partials, &dz)?;
                Some(p)
            }
            (true, false) => Some(ops::bce::loss_partial(gpu, "loss", &z, &t, &partials)?),
        };
        let finish = match passes.finish {
            false => None,
            true => Some(ops::bce::loss_finish(
                gpu, "loss", total, &partials, loss, slot,
            )?),
        };
        Ok(Loss { partial, finish })
    }

    /// sigmoid(logits) into `probs`: the reconstruction.
    pub fn reconstruct(&self, gpu: &Gpu, n: u32) -> Result<Dispatch> {
        let last = self.model.layers.len() - 1;
        let z = self.act(last, n);
        let probs = self.probs.view(0, z.len);
        ops::activation::sigmoid_forward(gpu, "sigmoid", &z, &probs)
    }
}

/// The two dispatches of the loss; `finish`'s uniform says which slot of the log it fills.
/// None where another dispatch does the work: the partial sums [`Network::grads`], the
/// finish [`Network::adam_loss_finish`].
pub struct Loss {
    pub partial: Option<Dispatch>,
    pub finish: Option<Dispatch>,
}

/// Which of its passes [`Network::loss`] builds, and whether the first also writes the
/// logits' gradient.
#[derive(Clone, Copy, Debug)]
pub struct LossPasses {
    pub gradient: bool,
    pub partial: bool,
    pub finish: bool,
}
