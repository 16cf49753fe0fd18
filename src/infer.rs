//! Inference: the model's layers on given inputs (images, or codes for the decoder half), in
//! batches on the GPU. Needs no dataset: a model, its weights, and the inputs.
use crate::gpu::{run, Gpu};
use crate::model::Model;
use crate::network::{Network, Purpose};
use crate::{Error, Result};
use std::ops::Range;

/// A network built for the forward pass only, holding a set of weights.
pub struct Inference {
    pub net: Network,
}

/// Batch size of inference passes.
const BATCH: u32 = 256;

impl Inference {
    /// `params`: the flat weights in the model's layout.
    pub fn new(gpu: &Gpu, model: Model, params: &[f32]) -> Result<Self> {
        if params.len() as u64 != model.param_len {
            return Err(Error::Config(format!(
                "{} weights for a model of {}",
                params.len(),
                model.param_len
            )));
        }
        let net = Network::new(gpu, model, BATCH, Purpose::Inference)?;
        gpu.write(&net.params, params);
        Ok(Inference { net })
    }

    /// The reconstructions of `images` (sigmoid applied).
    pub fn reconstruct(&self, gpu: &Gpu, images: &[f32]) -> Result<Vec<f32>> {
        layers(gpu, &self.net, images, 0..self.net.model.layers.len())
    }

    /// The codes of `images`: the encoder's output.
    pub fn encode(&self, gpu: &Gpu, images: &[f32]) -> Result<Vec<f32>> {
        layers(gpu, &self.net, images, 0..self.net.model.code_at)
    }

    /// The images the decoder draws from `codes`.
    pub fn decode(&self, gpu: &Gpu, codes: &[f32]) -> Result<Vec<f32>> {
        let m = &self.net.model;
        layers(gpu, &self.net, codes, m.code_at..m.layers.len())
    }
}

/// Runs layers `range` of `net` on `inputs` (whole inputs of layer `range.start`) in batches
/// of the network's capacity and returns the last layer's output (sigmoid applied when it is
/// the model's output). Overwrites the network's activations.
pub fn layers(gpu: &Gpu, net: &Network, inputs: &[f32], range: Range<usize>) -> Result<Vec<f32>> {
    let model = &net.model;
    let in_len = model.shapes[range.start].len() as usize;
    let out_len = model.shapes[range.end].len() as usize;
    if in_len == 0 || !inputs.len().is_multiple_of(in_len) {
        return Err(Error::Shape {
            op: "infer",
            detail: format!("{} values are not whole inputs of {in_len}", inputs.len()),
        });
    }
    let mut out = Vec::with_capacity(inputs.len() / in_len * out_len);
    for chunk in inputs.chunks(net.capacity as usize * in_len) {
        let n = (chunk.len() / in_len) as u32;
        let (input, output) = net.io(&range, n);
        gpu.write(&input, chunk);
        let mut ds = net.forward(gpu, n, range.clone(), None)?;
        if range.end == model.layers.len() {
            ds.push(net.reconstruct(gpu, n)?);
        }
        run(gpu, &ds)?;
        out.extend(gpu.read::<f32>(&output)?);
    }
    Ok(out)
}
