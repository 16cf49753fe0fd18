//! A model's GPU side for a batch capacity: parameter, gradient and Adam-state buffers (one
//! flat buffer each), per-layer activation and gradient buffers, and the dispatch lists of the
//! forward and backward passes for any batch size up to the capacity.
use crate::gpu::{Gpu, Tensor};
use crate::model::{Activation, Layer, Model};
use crate::ops::{self, conv2d, dense, pool, upsample, Dispatch};
use crate::Result;
use std::ops::Range;

pub struct Network {
    pub model: Model,
    pub capacity: u32,
    pub params: Tensor,
    pub grads: Tensor,
    pub adam_m: Tensor,
    pub adam_v: Tensor,
    /// The model's input; equal to `target` unless the input is noisy.
    pub input: Tensor,
    /// The clean images the loss compares against.
    pub target: Tensor,
    /// `acts[i]`: output of layer i (after its fused ReLU; the last layer's are logits).
    pub acts: Vec<Tensor>,
    /// `dacts[i]`: gradient of the loss w.r.t. `acts[i]`.
    pub dacts: Vec<Tensor>,
    /// Pool winners, for pooling layers.
    winners: Vec<Option<Tensor>>,
    /// sigmoid(logits): the reconstruction, for inference.
    pub probs: Tensor,
    partials: Tensor,
    /// Scratch for the conv layers' split weight-gradient sums (shared: they run in turn).
    conv_partials: Tensor,
}

impl Network {
    pub fn new(gpu: &Gpu, model: Model, capacity: u32, noisy: bool) -> Result<Self> {
        let cap = capacity as u64;
        let pixels = model.input.len();
        let fix = "use a smaller --batch-size";
        let target = gpu.tensor("target", cap * pixels)?;
        let input = if noisy {
            gpu.tensor("noisy input", cap * pixels)?
        } else {
            target.clone()
        };
        let mut acts = Vec::new();
        let mut dacts = Vec::new();
        let mut winners = Vec::new();
        for (i, layer) in model.layers.iter().enumerate() {
            let len = cap * model.shapes[i + 1].len();
            gpu.check_buffer("an activation buffer", len * 4, fix)?;
            acts.push(gpu.tensor(&format!("act{i}"), len)?);
            dacts.push(gpu.tensor(&format!("grad{i}"), len)?);
            winners.push(match layer {
                Layer::MaxPool => Some(gpu.tensor(&format!("winner{i}"), len)?),
                _ => None,
            });
        }
        let out_len = cap * pixels;
        let mut conv_scratch = 1;
        for (i, layer) in model.layers.iter().enumerate() {
            if let Layer::Conv2d { co, padding, .. } = layer {
                let f = model.shapes[i];
                let s = conv2d::Conv2dShape {
                    n: capacity,
                    h: f.h,
                    w: f.w,
                    ci: f.c,
                    co: *co,
                    padding: *padding,
                };
                conv_scratch = conv_scratch.max(conv2d::partials_len(&s));
            }
        }
        Ok(Network {
            conv_partials: gpu.tensor("conv weight-gradient partials", conv_scratch)?,
            params: gpu.tensor("params", model.param_len)?,
            grads: gpu.tensor("grads", model.param_len)?,
            adam_m: gpu.tensor("adam m", model.param_len)?,
            adam_v: gpu.tensor("adam v", model.param_len)?,
            probs: gpu.tensor("probs", out_len)?,
            partials: gpu.tensor("loss partials", ops::bce::partials_len(out_len))?,
            model,
            capacity,
            input,
            target,
            acts,
            dacts,
            winners,
        })
    }

    /// Bytes of every GPU buffer this network holds.
    pub fn bytes(&self) -> u64 {
        let mut b =
            4 * (self.params.len * 4 + self.target.len + self.probs.len + self.partials.len);
        if self.input.buffer != self.target.buffer {
            b += 4 * self.input.len;
        }
        for t in self
            .acts
            .iter()
            .chain(&self.dacts)
            .chain(self.winners.iter().flatten())
        {
            b += 4 * t.len;
        }
        b
    }

    fn view(&self, t: &Tensor, n: u32, features: u64) -> Tensor {
        t.view(0, n as u64 * features)
    }

    /// Layer i's input for a batch of n.
    fn layer_input(&self, i: usize, n: u32) -> Tensor {
        let f = self.model.shapes[i].len();
        if i == 0 {
            self.view(&self.input, n, f)
        } else {
            self.view(&self.acts[i - 1], n, f)
        }
    }

    fn act(&self, i: usize, n: u32) -> Tensor {
        self.view(&self.acts[i], n, self.model.shapes[i + 1].len())
    }

    fn dact(&self, i: usize, n: u32) -> Tensor {
        self.view(&self.dacts[i], n, self.model.shapes[i + 1].len())
    }

    fn param(&self, buf: &Tensor, k: usize) -> Tensor {
        let p = &self.model.params[k];
        buf.view(p.offset, p.len)
    }

    fn winner(&self, i: usize, len: u64) -> Result<Tensor> {
        match &self.winners[i] {
            Some(t) => Ok(t.view(0, len)),
            None => Err(crate::Error::Shape {
                op: "pool",
                detail: format!("layer {i} has no winner buffer"),
            }),
        }
    }

    fn label(&self, i: usize) -> String {
        match &self.model.layers[i] {
            Layer::Conv2d { name, .. } | Layer::Dense { name, .. } => name.clone(),
            Layer::MaxPool => format!("max_pooling2d[{i}]"),
            Layer::Upsample => format!("up_sampling2d[{i}]"),
        }
    }

    fn conv_shape(&self, i: usize, n: u32) -> conv2d::Conv2dShape {
        let f = self.model.shapes[i];
        let (co, padding) = match &self.model.layers[i] {
            Layer::Conv2d { co, padding, .. } => (*co, *padding),
            _ => unreachable!("conv_shape of a layer without a kernel"),
        };
        conv2d::Conv2dShape {
            n,
            h: f.h,
            w: f.w,
            ci: f.c,
            co,
            padding,
        }
    }

    fn dense_shape(&self, i: usize, n: u32) -> dense::DenseShape {
        dense::DenseShape {
            n,
            fin: self.model.shapes[i].len() as u32,
            fout: self.model.shapes[i + 1].len() as u32,
        }
    }

    fn spatial(&self, i: usize, n: u32) -> (u32, u32, u32, u32) {
        let f = self.model.shapes[i];
        (n, f.h, f.w, f.c)
    }

    /// Forward dispatches of layers `range` for a batch of n.
    pub fn forward(&self, gpu: &Gpu, n: u32, range: Range<usize>) -> Result<Vec<Dispatch>> {
        let mut out = Vec::new();
        for i in range {
            let (x, y, label) = (self.layer_input(i, n), self.act(i, n), self.label(i));
            out.push(match &self.model.layers[i] {
                Layer::Conv2d { act, .. } => {
                    let k = self.model.param_index(i).unwrap_or(0);
                    let (w, b) = (self.param(&self.params, k), self.param(&self.params, k + 1));
                    let relu = *act == Activation::Relu;
                    conv2d::forward(gpu, &label, &self.conv_shape(i, n), relu, &x, &w, &b, &y)?
                }
                Layer::Dense { act, .. } => {
                    let k = self.model.param_index(i).unwrap_or(0);
                    let (w, b) = (self.param(&self.params, k), self.param(&self.params, k + 1));
                    let relu = *act == Activation::Relu;
                    dense::forward(gpu, &label, &self.dense_shape(i, n), relu, &x, &w, &b, &y)?
                }
                Layer::MaxPool => {
                    let (n, h, w, c) = self.spatial(i, n);
                    let s = pool::PoolShape { n, h, w, c };
                    let win = self.winner(i, s.output_len())?;
                    pool::forward(gpu, &label, &s, &x, &y, &win)?
                }
                Layer::Upsample => {
                    let (n, h, w, c) = self.spatial(i, n);
                    upsample::forward(gpu, &label, &upsample::UpsampleShape { n, h, w, c }, &x, &y)?
                }
            });
        }
        Ok(out)
    }

    /// The mean loss of a batch of n into `loss[slot]`: two fixed-tree passes.
    pub fn loss(&self, gpu: &Gpu, n: u32, loss: &Tensor, slot: u32) -> Result<Vec<Dispatch>> {
        let total = n as u64 * self.model.input.len();
        let last = self.model.layers.len() - 1;
        let (z, t) = (
            self.act(last, n),
            self.view(&self.target, n, self.model.input.len()),
        );
        let partials = self.partials.view(0, ops::bce::partials_len(total));
        Ok(vec![
            ops::bce::loss_partial(gpu, "loss", &z, &t, &partials)?,
            ops::bce::loss_finish(gpu, "loss", total, &partials, loss, slot)?,
        ])
    }

    /// sigmoid(logits) into `probs`: the reconstruction.
    pub fn reconstruct(&self, gpu: &Gpu, n: u32) -> Result<Dispatch> {
        let last = self.model.layers.len() - 1;
        let z = self.act(last, n);
        let probs = self.probs.view(0, z.len);
        ops::activation::sigmoid_forward(gpu, "sigmoid", &z, &probs)
    }

    /// The whole backward pass for a batch of n: the loss gradient w.r.t. the logits (sigmoid
    /// and BCE fused), then every layer in reverse; kernel and bias gradients land in `grads`.
    pub fn backward(&self, gpu: &Gpu, n: u32) -> Result<Vec<Dispatch>> {
        let last = self.model.layers.len() - 1;
        let t = self.view(&self.target, n, self.model.input.len());
        let mut out = vec![ops::bce::sigmoid_backward(
            gpu,
            "loss",
            &self.act(last, n),
            &t,
            &self.dact(last, n),
        )?];
        for i in (0..=last).rev() {
            let label = self.label(i);
            let dy = self.dact(i, n);
            let x = self.layer_input(i, n);
            let dx = (i > 0).then(|| self.dact(i - 1, n));
            match &self.model.layers[i] {
                Layer::Conv2d { act, .. } | Layer::Dense { act, .. } => {
                    let k = self.model.param_index(i).unwrap_or(0);
                    let y = self.act(i, n);
                    let g = conv2d::GradOut {
                        dy: &dy,
                        relu_output: (*act == Activation::Relu).then_some(&y),
                    };
                    let (w, dw, db) = (
                        self.param(&self.params, k),
                        self.param(&self.grads, k),
                        self.param(&self.grads, k + 1),
                    );
                    if let Layer::Conv2d { .. } = &self.model.layers[i] {
                        let s = self.conv_shape(i, n);
                        let partials = self.conv_partials.view(0, conv2d::partials_len(&s));
                        out.extend(conv2d::backward_params(
                            gpu, &label, &s, &g, &x, &partials, &dw, &db,
                        )?);
                        if let Some(dx) = &dx {
                            out.push(conv2d::backward_input(gpu, &label, &s, &g, &w, dx)?);
                        }
                    } else {
                        let s = self.dense_shape(i, n);
                        out.extend(dense::backward_params(gpu, &label, &s, &g, &x, &dw, &db)?);
                        if let Some(dx) = &dx {
                            out.push(dense::backward_input(gpu, &label, &s, &g, &w, dx)?);
                        }
                    }
                }
                Layer::MaxPool => {
                    let (n, h, w, c) = self.spatial(i, n);
                    let s = pool::PoolShape { n, h, w, c };
                    if let Some(dx) = &dx {
                        let win = self.winner(i, s.output_len())?;
                        out.push(pool::backward(gpu, &label, &s, &win, &dy, dx)?);
                    }
                }
                Layer::Upsample => {
                    let (n, h, w, c) = self.spatial(i, n);
                    if let Some(dx) = &dx {
                        let s = upsample::UpsampleShape { n, h, w, c };
                        out.push(upsample::backward(gpu, &label, &s, &dy, dx)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One Adam step over every parameter at once.
    pub fn adam(&self, gpu: &Gpu, cfg: &ops::adam::AdamConfig, t: u64) -> Result<Dispatch> {
        ops::adam::step(
            gpu,
            "adam",
            cfg,
            t,
            &self.params,
            &self.grads,
            &self.adam_m,
            &self.adam_v,
        )
    }
}
