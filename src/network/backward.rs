//! The backward pass layer by layer (the ReLU masks, the weight-gradient reduces, merged or
//! not) and Adam's step.
use super::{in_parallel, Network, TrainingBuffers};
use crate::gpu::{Dispatch, Gpu, KernelSet, Tensor};
use crate::model::LayerOp;
use crate::ops::{self, activation, conv2d, dense, pool, stride, upsample};
use crate::shapes::AdamConfig;
use crate::Result;
use std::ops::Range;

impl Network {
    /// The whole backward pass for a batch of n: the loss gradient w.r.t. the logits (sigmoid
    /// and BCE fused; unless the loss pass wrote it, [`Network::folds_loss_gradient`]), then
    /// every layer in reverse; kernel and bias gradients land in `grads`.
    pub fn backward(&self, gpu: &Gpu, n: u32) -> Result<Vec<Dispatch>> {
        if self.folds_grads(gpu, n) {
            return Ok(vec![self.grads(gpu, n)?]);
        }
        let tb = self.training()?;
        let all = 0..self.model.layers.len();
        let mut out = self.backward_layers(gpu, n)?;
        out.extend(self.reduce_all(gpu, tb, n, &all)?);
        Ok(out)
    }

    /// Whether a training step of n takes Adam's step, and finishes the loss, in its merged
    /// weight-gradient reduce (`--folds adam` with `reduces`: [`Network::backward_adam`]):
    /// where every layer with weights is a convolution whose reduce that dispatch runs.
    pub fn folds_reduce_adam(&self, gpu: &Gpu, n: u32) -> Result<bool> {
        let Some(tb) = self.training.as_ref().filter(|_| gpu.folds.adam) else {
            return Ok(false);
        };
        let all = 0..self.model.layers.len();
        let mut any = false;
        for i in all.clone() {
            match self.model.op(i, n) {
                LayerOp::Conv2d { .. } => {
                    if self.partial_region(gpu, tb, i, n, &all)?.is_none() {
                        return Ok(false);
                    }
                    any = true;
                }
                LayerOp::Dense { .. } => return Ok(false),
                _ => {}
            }
        }
        Ok(any)
    }

    /// The backward pass of a batch of n with Adam's step and the loss's finish (into
    /// `loss[slot]`, set per step) in its merged reduce, the last dispatch (see
    /// [`Network::folds_reduce_adam`]): the layers' dispatches, and the reduce.
    pub fn backward_adam(
        &self,
        gpu: &Gpu,
        n: u32,
        cfg: &AdamConfig,
        loss: &Tensor,
    ) -> Result<(Vec<Dispatch>, Dispatch)> {
        let tb = self.training()?;
        let all = 0..self.model.layers.len();
        let shares = self.reduce_shares(gpu, tb, n, &all)?;
        let total = n as u64 * self.model.input.len();
        let adam = conv2d::ReduceAdam {
            params: &self.params,
            m: &tb.adam_m,
            v: &tb.adam_v,
            loss_partials: &self.partials.view(0, ops::bce::partials_len(total)),
            total,
            loss,
        };
        let (partials, grads) = (&tb.conv_partials, &tb.grads);
        let reduce = conv2d::backward_params_reduce_adam(
            gpu, "conv2d", &shares, partials, grads, &adam, cfg,
        )?;
        Ok((self.backward_layers(gpu, n)?, reduce))
    }

    /// The backward pass of a batch of n up to the merged weight-gradient reduce: the loss
    /// gradient (unless the loss pass or `rows` wrote it), then every layer in reverse.
    fn backward_layers(&self, gpu: &Gpu, n: u32) -> Result<Vec<Dispatch>> {
        let tb = self.training()?;
        let last = self.model.layers.len() - 1;
        let t = self.view(&self.target, n, self.model.input.len());
        let dlogits = tb.dact(&self.model, last, n);
        let mut out = Vec::new();
        if !self.folds_loss_gradient(gpu) && !self.folds_rows(gpu) {
            let z = self.act(last, n);
            out.push(ops::bce::sigmoid_backward(gpu, "loss", &z, &t, &dlogits)?);
        }
        let all = 0..last + 1;
        let layers = in_parallel((0..=last).rev().collect(), |i| {
            self.backward_layer(gpu, tb, i, n, &all)
        })?;
        out.extend(layers.into_iter().flatten());
        Ok(out)
    }

    /// Where conv layer i's weight-gradient partial sums go when its reduce is folded into
    /// [`Network::reduce_all`]: its region, when the reduces are folded and the layer runs
    /// the GPU set's two-stage kernels.
    fn partial_region(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        i: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Option<u64>> {
        let (Some(regions), LayerOp::Conv2d { shape, .. }) =
            (&tb.partial_regions, self.model.op(i, n))
        else {
            return Ok(None);
        };
        let io = self.conv_io(gpu, i, n, range)?;
        Ok(regions[i].filter(|_| conv2d::splits_k(gpu.kernels, &shape, &io.folds())))
    }

    /// Every folded weight-gradient reduce as one dispatch (none when the reduces are not
    /// folded or no layer's is).
    fn reduce_all(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Option<Dispatch>> {
        let shares = self.reduce_shares(gpu, tb, n, range)?;
        if shares.is_empty() {
            return Ok(None);
        }
        let reduce = conv2d::backward_params_reduce_all(
            gpu,
            "conv2d",
            &shares,
            &tb.conv_partials,
            &tb.grads,
        )?;
        Ok(Some(reduce))
    }

    /// What the merged weight-gradient reduce sums: each convolution in `range` whose reduce
    /// it runs.
    fn reduce_shares(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Vec<conv2d::ReduceShare>> {
        let mut shares = Vec::new();
        for i in range.clone() {
            let LayerOp::Conv2d {
                shape,
                kernel,
                bias,
                ..
            } = self.model.op(i, n)
            else {
                continue;
            };
            if let Some(partials) = self.partial_region(gpu, tb, i, n, range)? {
                shares.push(conv2d::ReduceShare {
                    s: shape,
                    partials,
                    dw: self.model.params[kernel].offset,
                    db: bias.map(|b| self.model.params[b].offset),
                });
            }
        }
        Ok(shares)
    }

    fn backward_layer(
        &self,
        gpu: &Gpu,
        tb: &TrainingBuffers,
        i: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Result<Vec<Dispatch>> {
        if self.folded(gpu, i, n, range) {
            return Ok(Vec::new());
        }
        let label = self.model.label(i);
        // A convolution with a folded pool or take takes that layer's output gradient, and
        // masks ReLU with its output.
        let folds_above =
            self.folded_pool(gpu, i + 1, n, range) || self.folded_take(gpu, i + 1, n, range);
        let written = i + folds_above as usize;
        let dy = tb.dact(&self.model, written, n);
        let x = self.layer_input(i, n);
        // No input gradient where no layer with weights lies below.
        let dx = self
            .model
            .needs_input_gradient(i)
            .then(|| tb.dact(&self.model, i - 1, n));
        let y = self.act(written, n);
        let mut out = Vec::new();
        // On the CPU set the ReLU mask runs once, into scratch (unless the layer above
        // applies it as it writes the gradient: relu_fused_above): lavapipe pays for every load,
        // and the layer's kernels would read the mask at each of the 9 taps.
        let masked = (gpu.kernels == KernelSet::Cpu).then(|| tb.relu_masked.view(0, dy.len));
        // The mask may already be applied, fused into the layer above's backward.
        let relu_done = self.relu_fused_above(gpu, i, n);
        let grad_out = |relu: bool, out: &mut Vec<Dispatch>| -> Result<conv2d::GradOut<'_>> {
            let relu = relu && !relu_done;
            if let (true, Some(masked)) = (relu, &masked) {
                out.push(activation::relu_backward(gpu, &label, &y, &dy, masked)?);
                return Ok(conv2d::GradOut {
                    dy: masked,
                    relu_output: None,
                });
            }
            Ok(conv2d::GradOut {
                dy: &dy,
                relu_output: relu.then_some(&y),
            })
        };
        match self.model.op(i, n) {
            LayerOp::Conv2d {
                shape: s,
                relu,
                kernel: k,
                bias,
            } => {
                let g = grad_out(relu, &mut out)?;
                let io = self.conv_io(gpu, i, n, range)?;
                let folds = io.folds();
                let len = conv2d::partials_len(gpu.kernels, &s, &folds);
                // Its weight-gradient partial sums: in a region of its own when its reduce
                // runs with every other layer's after the backward pass, else in the scratch
                // all layers share, reduced right after.
                let region = self.partial_region(gpu, tb, i, n, range)?;
                let partials = tb.conv_partials.view(region.unwrap_or(0), len);
                let (dw, db) = (self.param(&tb.grads, k), tb.bias_grad(self, bias, s.co));
                let w = self.param(&self.params, k);
                // Through a folded upsampling, the gradient of that layer's input.
                let dx = match io.input {
                    conv2d::Input::Direct => dx,
                    conv2d::Input::Upsampled2x | conv2d::Input::Inserted(_) => self
                        .model
                        .needs_input_gradient(i - 1)
                        .then(|| tb.dact(&self.model, i - 2, n)),
                };
                let pair = gpu.folds.backward && conv2d::splits_k(gpu.kernels, &s, &folds);
                match (&dx, pair) {
                    (Some(dx), true) => {
                        out.push(conv2d::backward_pair(
                            gpu, &label, &s, &folds, &g, &io.x, &w, &partials, dx,
                        )?);
                        if region.is_none() {
                            out.push(conv2d::backward_params_reduce(
                                gpu, &label, &s, &folds, &partials, &dw, &db,
                            )?);
                        }
                    }
                    _ => {
                        match region {
                            Some(_) => out.push(conv2d::backward_params_partial(
                                gpu, &label, &s, &folds, &g, &io.x, &partials,
                            )?),
                            None => out.extend(conv2d::backward_params(
                                gpu, &label, &s, &folds, &g, &io.x, &partials, &dw, &db,
                            )?),
                        }
                        if let Some(dx) = &dx {
                            out.extend(match self.relu_mask_below(gpu, i, n) {
                                Some(below) => conv2d::backward_input_masked(
                                    gpu, &label, &s, &folds, &g, &w, dx, &below,
                                )?,
                                None => {
                                    conv2d::backward_input(gpu, &label, &s, &folds, &g, &w, dx)?
                                }
                            });
                        }
                    }
                }
            }
            LayerOp::Dense {
                shape: s,
                relu,
                kernel: k,
                bias,
            } => {
                let g = grad_out(relu, &mut out)?;
                let (dw, db) = (self.param(&tb.grads, k), tb.bias_grad(self, bias, s.fout));
                out.extend(dense::backward_params(gpu, &label, &s, &g, &x, &dw, &db)?);
                // With the rows fold, Network::rows wrote the input gradient.
                if let (Some(dx), false) = (&dx, self.folds_rows(gpu)) {
                    let w = self.param(&self.params, k);
                    out.push(dense::backward_input(gpu, &label, &s, &g, &w, dx)?);
                }
            }
            LayerOp::Pool(s) => {
                if let Some(dx) = &dx {
                    let win = self.winner(i, s.output_len())?;
                    out.push(if self.relu_fused_by_pass_above(gpu, i - 1, n) {
                        pool::backward_masked(gpu, &label, &s, &win, &dy, &y, dx)?
                    } else {
                        pool::backward(gpu, &label, &s, &win, &dy, dx)?
                    });
                }
            }
            LayerOp::Upsample(s) => {
                if let Some(dx) = &dx {
                    out.push(if self.relu_fused_by_pass_above(gpu, i - 1, n) {
                        upsample::backward_masked(gpu, &label, &s, &dy, &x, dx)?
                    } else {
                        upsample::backward(gpu, &label, &s, &dy, dx)?
                    });
                }
            }
            // Each the other's gradient; the layer below applies its own ReLU mask (nothing
            // fuses it here; a convolution reading through a folded map may: relu_mask_writer).
            LayerOp::StrideInsert(s) => {
                if let Some(dx) = &dx {
                    out.push(stride::take(gpu, &label, &s, &dy, dx)?);
                }
            }
            LayerOp::StrideTake(s) => {
                if let Some(dx) = &dx {
                    out.push(stride::insert(gpu, &label, &s, &dy, dx)?);
                }
            }
            // Its gradients alias the layer's below: nothing to run.
            LayerOp::Reshape => {}
        }
        Ok(out)
    }

    /// Whether layer `i`'s ReLU mask is applied by the backward of a layer above (on the CPU
    /// set: a pooling or upsampling layer right above fuses it, and a convolution whose
    /// input gradient writes the gradient layer i reads masks it as it stores it; one pass
    /// over the gradient fewer).
    fn relu_fused_above(&self, gpu: &Gpu, i: usize, n: u32) -> bool {
        self.relu_mask_writer(gpu, i, n).is_some() || self.relu_fused_by_pass_above(gpu, i, n)
    }

    fn has_relu(&self, i: usize, n: u32) -> bool {
        match self.model.op(i, n) {
            LayerOp::Conv2d { relu, .. } | LayerOp::Dense { relu, .. } => relu,
            _ => false,
        }
    }

    /// Whether layer i + 1 is a pooling or upsampling layer, run on its own, that fuses layer
    /// i's ReLU mask into its backward (on the CPU set).
    fn relu_fused_by_pass_above(&self, gpu: &Gpu, i: usize, n: u32) -> bool {
        let all = 0..self.model.layers.len();
        let cpu_relu = gpu.kernels == KernelSet::Cpu && self.has_relu(i, n);
        if !cpu_relu || i + 1 >= all.end || self.folded(gpu, i + 1, n, &all) {
            return false;
        }
        match self.model.op(i + 1, n) {
            LayerOp::Pool(s) => pool::fuses_relu_mask(gpu, &s),
            LayerOp::Upsample(s) => upsample::fuses_relu_mask(gpu, &s),
            _ => false,
        }
    }

    /// On the CPU set, the convolution whose input gradient writes the gradient that layer
    /// `i` (with ReLU) reads, which then masks it as it stores it
    /// (`conv2d::backward_input_masked`): the layer right above that tensor, or the one after
    /// a folded upsampling or insertion above it. The tensor is layer i's output, or that of
    /// the pool or take folded into it.
    fn relu_mask_writer(&self, gpu: &Gpu, i: usize, n: u32) -> Option<usize> {
        let all = 0..self.model.layers.len();
        let runs = gpu.kernels == KernelSet::Cpu && !self.folded(gpu, i, n, &all);
        if !runs || !self.has_relu(i, n) {
            return None;
        }
        let read = i + self.reads_folded_above(gpu, i, n) as usize;
        let mut writer = read + 1;
        if writer < all.end && self.folded(gpu, writer, n, &all) {
            writer += 1;
        }
        if writer >= all.end {
            return None;
        }
        let LayerOp::Conv2d { shape, .. } = self.model.op(writer, n) else {
            return None;
        };
        let io = self.conv_io(gpu, writer, n, &all).ok()?;
        let below_input = match io.input {
            conv2d::Input::Direct => writer - 1,
            conv2d::Input::Upsampled2x | conv2d::Input::Inserted(_) => writer - 2,
        };
        let masks = conv2d::masks_input_gradient(gpu.kernels, &shape, &io.folds());
        (below_input == read && masks).then_some(writer)
    }

    /// The ReLU output that convolution `i`'s input gradient is masked by as it is stored, if
    /// it writes a gradient a ReLU layer below reads ([`Network::relu_mask_writer`]): that
    /// layer's output (or its folded pool's or take's).
    fn relu_mask_below(&self, gpu: &Gpu, i: usize, n: u32) -> Option<Tensor> {
        // The layers whose read gradient i may write: the one below it or below a folded
        // upsampling or insertion, or the layer before either when it folds a pool or take.
        let reader = (1..=3)
            .filter_map(|back| i.checked_sub(back))
            .find(|&j| self.relu_mask_writer(gpu, j, n) == Some(i))?;
        let read = reader + self.reads_folded_above(gpu, reader, n) as usize;
        Some(self.act(read, n))
    }

    /// One Adam step over every parameter at once.
    pub fn adam(&self, gpu: &Gpu, cfg: &AdamConfig, t: u64) -> Result<Dispatch> {
        let tb = self.training()?;
        let (w, g, m, v) = (&self.params, &tb.grads, &tb.adam_m, &tb.adam_v);
        ops::adam::step(gpu, "adam", cfg, t, w, g, m, v)
    }

    /// [`Network::adam`] that also finishes the loss of a batch of n into `loss[slot]`
    /// (`--folds finish`; the partial sums from [`Network::loss`]).
    pub fn adam_loss_finish(
        &self,
        gpu: &Gpu,
        cfg: &AdamConfig,
        n: u32,
        loss: &Tensor,
        slot: u32,
    ) -> Result<Dispatch> {
        let tb = self.training()?;
        let (w, g, m, v) = (&self.params, &tb.grads, &tb.adam_m, &tb.adam_v);
        let total = n as u64 * self.model.input.len();
        let partials = self.partials.view(0, ops::bce::partials_len(total));
        ops::adam::step_loss_finish(
            gpu, "adam", cfg, 1, w, g, m, v, total, &partials, loss, slot,
        )
    }
}
