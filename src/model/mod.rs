//! The three Keras autoencoders as layer lists, their parameter layout (Keras names and
//! shapes, one flat buffer) and Glorot-uniform initialisation.
pub use crate::shapes::Features;
use crate::shapes::{Conv2dShape, DenseShape, Padding, PoolShape, UpsampleShape};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The seed's convolutional autoencoder (code 4x4x8).
    Conv,
    /// 784 -> Dense(32, relu) -> Dense(784, sigmoid).
    Dense,
    /// 784-128-64-32-64-128-784, relu, sigmoid last.
    Deep,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Conv => "conv",
            ModelKind::Dense => "dense",
            ModelKind::Deep => "deep",
        }
    }
    /// The seed's epoch counts.
    pub fn default_epochs(self) -> usize {
        match self {
            ModelKind::Conv | ModelKind::Deep => 100,
            ModelKind::Dense => 50,
        }
    }
}

/// What follows a layer with weights. The last layer's sigmoid is never run in training:
/// the loss takes its logits, as Keras does after a sigmoid output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Sigmoid,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Conv2d {
        name: String,
        co: u32,
        padding: Padding,
        act: Activation,
    },
    MaxPool,
    Upsample,
    Dense {
        name: String,
        units: u32,
        act: Activation,
    },
}

/// One parameter tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    /// Keras 3's variable path, e.g. `conv2d_1/kernel`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Start in the flat buffer, in elements; aligned to 64 (256 bytes) for binding offsets.
    pub offset: u64,
    pub len: u64,
    /// Glorot fans; zero for biases (initialised to zero).
    pub fan_in: u64,
    pub fan_out: u64,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub kind: ModelKind,
    pub input: Features,
    pub layers: Vec<Layer>,
    /// Layers `[0, code_at)` are the encoder; the rest the decoder.
    pub code_at: usize,
    pub params: Vec<ParamTensor>,
    /// Length of the flat parameter buffer (with alignment padding).
    pub param_len: u64,
    /// `shapes[i]` is the input of layer i; `shapes[layers.len()]` the output.
    pub shapes: Vec<Features>,
}

/// Parameter starts are aligned to this many elements (256 bytes, the largest storage offset
/// alignment WebGPU allows an adapter to ask for).
pub const PARAM_ALIGN: u64 = 64;

impl Model {
    pub fn new(kind: ModelKind, input: Features) -> Result<Self> {
        let (layers, code_at) = layers(kind, input)?;
        let mut shapes = vec![input];
        let mut params = ParamLayout::default();
        for layer in &layers {
            let f = *shapes.last().unwrap_or(&input);
            shapes.push(layer.output(f));
            params.push_layer(layer, f);
        }
        let last = shapes[shapes.len() - 1];
        if last.len() != input.len() {
            return Err(Error::Config(format!(
                "model {} maps {} inputs to {} outputs",
                kind.name(),
                input.len(),
                last.len()
            )));
        }
        Ok(Model {
            kind,
            input,
            layers,
            code_at,
            params: params.tensors,
            param_len: params.len,
            shapes,
        })
    }

    /// The code's shape: the encoder's output.
    pub fn code(&self) -> Features {
        self.shapes[self.code_at]
    }

    /// Index of layer `i`'s first parameter tensor (kernel; bias follows), if it has any.
    pub fn param_index(&self, layer: usize) -> Option<usize> {
        let mut k = 0;
        for (i, l) in self.layers.iter().enumerate() {
            let has = matches!(l, Layer::Conv2d { .. } | Layer::Dense { .. });
            if i == layer {
                return has.then_some(k);
            }
            if has {
                k += 2;
            }
        }
        None
    }

    /// Keras' initial weights: Glorot-uniform kernels (limit sqrt(6 / (fan_in + fan_out)),
    /// fans counting the 3x3 window) and zero biases, from a seeded ChaCha8 stream.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut flat = vec![0.0f32; self.param_len as usize];
        for p in &self.params {
            if p.fan_in + p.fan_out == 0 {
                continue;
            }
            let limit = (6.0 / (p.fan_in + p.fan_out) as f64).sqrt() as f32;
            let start = p.offset as usize;
            for v in &mut flat[start..start + p.len as usize] {
                *v = rng.random_range(-limit..limit);
            }
        }
        flat
    }
}

/// Layer i of a model at batch size n, as the op that runs it: the shape the reference and the
/// launchers take, whether ReLU is fused, and where its kernel lies (its bias is the next
/// parameter tensor).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerOp {
    Conv2d {
        shape: Conv2dShape,
        relu: bool,
        kernel: usize,
    },
    Dense {
        shape: DenseShape,
        relu: bool,
        kernel: usize,
    },
    Pool(PoolShape),
    Upsample(UpsampleShape),
}

impl Model {
    /// Layer `i` at batch size `n`. Panics past the last layer (an index bug, not input).
    pub fn op(&self, i: usize, n: u32) -> LayerOp {
        let f = self.shapes[i];
        let kernel = self.param_index(i).unwrap_or(usize::MAX);
        match &self.layers[i] {
            Layer::Conv2d {
                co, padding, act, ..
            } => LayerOp::Conv2d {
                shape: Conv2dShape {
                    k: 3,
                    n,
                    h: f.h,
                    w: f.w,
                    ci: f.c,
                    co: *co,
                    padding: *padding,
                },
                relu: *act == Activation::Relu,
                kernel,
            },
            Layer::Dense { act, .. } => LayerOp::Dense {
                shape: DenseShape {
                    n,
                    fin: f.len() as u32,
                    fout: self.shapes[i + 1].len() as u32,
                },
                relu: *act == Activation::Relu,
                kernel,
            },
            Layer::MaxPool => LayerOp::Pool(PoolShape {
                n,
                h: f.h,
                w: f.w,
                c: f.c,
                padding: Padding::Same,
            }),
            Layer::Upsample => LayerOp::Upsample(UpsampleShape {
                n,
                h: f.h,
                w: f.w,
                c: f.c,
            }),
        }
    }

    /// Where parameter tensor `k` lies in the flat buffer, in elements.
    pub fn param_range(&self, k: usize) -> std::ops::Range<usize> {
        let p = &self.params[k];
        p.offset as usize..(p.offset + p.len) as usize
    }

    /// The name a profile and a trace show for layer `i`.
    pub fn label(&self, i: usize) -> String {
        match &self.layers[i] {
            Layer::Conv2d { name, .. } | Layer::Dense { name, .. } => name.clone(),
            Layer::MaxPool => format!("max_pooling2d[{i}]"),
            Layer::Upsample => format!("up_sampling2d[{i}]"),
        }
    }
}

/// The layers of `kind` for images of `input`, and where its code is (layers before it are
/// the encoder).
fn layers(kind: ModelKind, input: Features) -> Result<(Vec<Layer>, usize)> {
    let conv = |k: usize, co, padding, act| Layer::Conv2d {
        name: keras_name("conv2d", k),
        co,
        padding,
        act,
    };
    let dense = |k: usize, units, act| Layer::Dense {
        name: keras_name("dense", k),
        units,
        act,
    };
    use Activation::{Relu, Sigmoid};
    use Padding::{Same, Valid};
    let pixels = input.len() as u32;
    Ok(match kind {
        ModelKind::Conv => {
            if input.h != 28 || input.w != 28 || input.c != 1 {
                return Err(Error::Config(format!(
                    "the conv model needs 28x28 single-channel images (its decoder rebuilds \
                     28x28 from a 4x4 code); this dataset has {}x{}x{}. Use --model dense or deep.",
                    input.h, input.w, input.c
                )));
            }
            let l = vec![
                conv(0, 16, Same, Relu),
                Layer::MaxPool,
                conv(1, 8, Same, Relu),
                Layer::MaxPool,
                conv(2, 8, Same, Relu),
                Layer::MaxPool,
                conv(3, 8, Same, Relu),
                Layer::Upsample,
                conv(4, 8, Same, Relu),
                Layer::Upsample,
                conv(5, 16, Valid, Relu),
                Layer::Upsample,
                conv(6, 1, Same, Sigmoid),
            ];
            (l, 6)
        }
        ModelKind::Dense => (vec![dense(0, 32, Relu), dense(1, pixels, Sigmoid)], 1),
        ModelKind::Deep => (
            vec![
                dense(0, 128, Relu),
                dense(1, 64, Relu),
                dense(2, 32, Relu),
                dense(3, 64, Relu),
                dense(4, 128, Relu),
                dense(5, pixels, Sigmoid),
            ],
            3,
        ),
    })
}

impl Layer {
    /// The shape this layer makes of an input of shape `f`.
    pub fn output(&self, f: Features) -> Features {
        match self {
            Layer::Conv2d { co, padding, .. } => {
                let shrink = if *padding == Padding::Valid { 2 } else { 0 };
                Features {
                    h: f.h.saturating_sub(shrink),
                    w: f.w.saturating_sub(shrink),
                    c: *co,
                }
            }
            Layer::MaxPool => Features {
                h: f.h.div_ceil(2),
                w: f.w.div_ceil(2),
                c: f.c,
            },
            Layer::Upsample => Features {
                h: 2 * f.h,
                w: 2 * f.w,
                c: f.c,
            },
            Layer::Dense { units, .. } => Features {
                h: 1,
                w: 1,
                c: *units,
            },
        }
    }
}

/// The flat parameter buffer as it is laid out, tensor by tensor.
#[derive(Default)]
struct ParamLayout {
    tensors: Vec<ParamTensor>,
    /// Elements so far, padding included.
    len: u64,
}

impl ParamLayout {
    fn push(&mut self, name: String, shape: Vec<usize>, fan_in: u64, fan_out: u64) {
        let len = shape.iter().product::<usize>() as u64;
        self.tensors.push(ParamTensor {
            name,
            shape,
            offset: self.len,
            len,
            fan_in,
            fan_out,
        });
        self.len = (self.len + len).div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
    }

    /// The kernel and bias of `layer` (on inputs of shape `f`), if it has weights: Keras'
    /// shapes, and Glorot fans that count a conv's 3x3 window.
    fn push_layer(&mut self, layer: &Layer, f: Features) {
        let (name, kernel, fans, units) = match layer {
            Layer::Conv2d { name, co, .. } => (
                name,
                vec![3, 3, f.c as usize, *co as usize],
                (9 * f.c as u64, 9 * *co as u64),
                *co,
            ),
            Layer::Dense { name, units, .. } => (
                name,
                vec![f.len() as usize, *units as usize],
                (f.len(), *units as u64),
                *units,
            ),
            Layer::MaxPool | Layer::Upsample => return,
        };
        self.push(format!("{name}/kernel"), kernel, fans.0, fans.1);
        self.push(format!("{name}/bias"), vec![units as usize], 0, 0);
    }
}

/// Keras 3's default layer names: `conv2d`, `conv2d_1`, ...
fn keras_name(base: &str, k: usize) -> String {
    if k == 0 {
        base.to_string()
    } else {
        format!("{base}_{k}")
    }
}
