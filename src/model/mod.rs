//! Models as layer lists, built from Keras `model.to_json()` descriptions (the three
//! built-ins are such files, shipped in `assets/models/`), their parameter layout (Keras
//! names and shapes, one flat buffer) and Glorot-uniform initialisation.
pub mod keras;

pub use crate::shapes::Features;
use crate::shapes::{
    AdamConfig, Conv2dShape, DenseShape, Padding, PoolShape, StrideShape, UpsampleShape,
};
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
    pub const ALL: [ModelKind; 3] = [ModelKind::Conv, ModelKind::Dense, ModelKind::Deep];

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
    /// The model as Keras 3's `model.to_json()` describes it: the file shipped in
    /// `assets/models/`, which is what builds it.
    pub fn keras_json(self) -> &'static str {
        match self {
            ModelKind::Conv => include_str!("../../assets/models/conv.json"),
            ModelKind::Dense => include_str!("../../assets/models/dense.json"),
            ModelKind::Deep => include_str!("../../assets/models/deep.json"),
        }
    }
    /// Dense models follow the data's size: their input and last layer take the images'
    /// pixel count (the files say 784, MNIST's).
    fn follows_data(self) -> bool {
        self != ModelKind::Conv
    }
}

/// A model described by a Keras `to_json()` file: its text travels with the run (config.json
/// and every checkpoint), so a run never depends on the file staying where it was.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KerasFile {
    /// What the run calls it: the file's name without `.json`.
    pub name: String,
    /// Where it was read from (for the record).
    pub path: String,
    pub json: String,
}

/// The architecture a run trains: a built-in (saved as its name, as before), or a file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ModelChoice {
    Builtin(ModelKind),
    Keras(KerasFile),
}

impl From<ModelKind> for ModelChoice {
    fn from(k: ModelKind) -> Self {
        ModelChoice::Builtin(k)
    }
}

/// Epochs when neither the flag nor a built-in's seed says: the Keras blog's 100.
pub const FILE_MODEL_EPOCHS: usize = 100;

impl ModelChoice {
    /// `conv`, `dense`, `deep`, or a path to a Keras `to_json()` file (read and parsed now,
    /// so a bad file is refused before any work).
    pub fn from_arg(arg: &str) -> Result<Self> {
        if let Some(k) = ModelKind::ALL.into_iter().find(|k| k.name() == arg) {
            return Ok(ModelChoice::Builtin(k));
        }
        let path = std::path::Path::new(arg);
        if !arg.ends_with(".json") && !path.exists() {
            return Err(Error::Config(format!(
                "--model {arg}: not a built-in model (conv, dense, deep) nor a file; give one \
                 of those or the path of a Keras `model.to_json()` file"
            )));
        }
        if !path.is_file() {
            return Err(Error::Config(format!(
                "--model {arg}: no such file; give the path of a Keras `model.to_json()` file \
                 or a built-in model (conv, dense, deep)"
            )));
        }
        let json = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        keras::parse(&json, arg)?;
        let name = path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned());
        Ok(ModelChoice::Keras(KerasFile {
            name,
            path: arg.to_string(),
            json,
        }))
    }

    /// The same architecture: the same built-in, or a file with the same text (wherever it
    /// was read from).
    pub fn same_as(&self, other: &ModelChoice) -> bool {
        match (self, other) {
            (ModelChoice::Keras(a), ModelChoice::Keras(b)) => a.json == b.json,
            _ => self == other,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ModelChoice::Builtin(k) => k.name(),
            ModelChoice::Keras(f) => &f.name,
        }
    }

    pub fn default_epochs(&self) -> usize {
        match self {
            ModelChoice::Builtin(k) => k.default_epochs(),
            ModelChoice::Keras(_) => FILE_MODEL_EPOCHS,
        }
    }

    /// The description and the name messages give its origin.
    fn describe(&self) -> Result<keras::Description> {
        match self {
            ModelChoice::Builtin(k) => {
                keras::parse(k.keras_json(), &format!("assets/models/{}.json", k.name()))
            }
            ModelChoice::Keras(f) => keras::parse(&f.json, &f.path),
        }
    }

    /// Adam's settings the file's `compile()` recorded (the defaults otherwise).
    pub fn adam(&self) -> Result<AdamConfig> {
        Ok(self.describe()?.adam.unwrap_or_default())
    }

    fn origin(&self) -> String {
        match self {
            ModelChoice::Builtin(k) => format!("model {}", k.name()),
            ModelChoice::Keras(f) => f.path.clone(),
        }
    }
}

/// What follows a layer with weights. The last layer's sigmoid is never run in training:
/// the loss takes its logits, as Keras does after a sigmoid output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Linear,
}

impl Activation {
    pub fn keras_name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Linear => "linear",
        }
    }
}

/// A layer as its Keras file names it.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Conv2d {
        name: String,
        filters: u32,
        /// Kernel side (1, 3, 5 or 7).
        k: u32,
        padding: Padding,
        act: Activation,
        bias: bool,
        /// A Keras Conv2DTranspose run as this convolution (after a [`Layer::StrideInsert`]
        /// where its strides are 2): its kernel is stored as the equivalent convolution's,
        /// each window flipped and the channel axes swapped, and checkpoints hold Keras' own
        /// (`ParamTensor::stored`).
        transposed: bool,
    },
    MaxPool {
        name: String,
        padding: Padding,
    },
    Upsample {
        name: String,
    },
    /// The first half of a Conv2DTranspose with strides 2: its input dilated by zero insertion
    /// (`stride.insert`, each input at (2y + 1, 2x + 1) of a map twice its size), which the
    /// convolution after it (`transposed`) then reads as a plain one. Named `NAME:insert`.
    StrideInsert {
        name: String,
    },
    /// The second half of a Conv2D with strides 2: every other output of its stride-1
    /// convolution (`stride.take`), starting where Keras' padding puts the first window
    /// (the convolution's kernel side `k` and `padding` say where). Named `NAME:take`.
    StrideTake {
        name: String,
        k: u32,
        padding: Padding,
    },
    Dense {
        name: String,
        units: u32,
        act: Activation,
        bias: bool,
    },
    /// Flatten (`target: None`) or Reshape: the same values in the same order (NHWC), so no
    /// kernel runs; its output aliases its input.
    Reshape {
        name: String,
        target: Option<Features>,
        /// Whether the output is images `[h, w, c]` (a Reshape to three sizes), not flat.
        image: bool,
    },
}

impl Layer {
    pub fn name(&self) -> &str {
        match self {
            Layer::Conv2d { name, .. }
            | Layer::MaxPool { name, .. }
            | Layer::Upsample { name }
            | Layer::StrideInsert { name }
            | Layer::StrideTake { name, .. }
            | Layer::Dense { name, .. }
            | Layer::Reshape { name, .. } => name,
        }
    }

    /// The activation of a layer with weights.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Layer::Conv2d { act, .. } | Layer::Dense { act, .. } => Some(*act),
            _ => None,
        }
    }

    fn has_weights(&self) -> bool {
        matches!(self, Layer::Conv2d { .. } | Layer::Dense { .. })
    }

    fn has_bias(&self) -> bool {
        matches!(
            self,
            Layer::Conv2d { bias: true, .. } | Layer::Dense { bias: true, .. }
        )
    }

    /// The Keras class, for messages.
    fn class(&self) -> &'static str {
        match self {
            Layer::Conv2d {
                transposed: false, ..
            }
            | Layer::StrideTake { .. } => "Conv2D",
            Layer::Conv2d { .. } | Layer::StrideInsert { .. } => "Conv2DTranspose",
            Layer::MaxPool { .. } => "MaxPooling2D",
            Layer::Upsample { .. } => "UpSampling2D",
            Layer::Dense { .. } => "Dense",
            Layer::Reshape { target: None, .. } => "Flatten",
            Layer::Reshape { .. } => "Reshape",
        }
    }
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
    /// How the flat buffer holds it: as Keras' shape says, or (a Conv2DTranspose's kernel)
    /// as the equivalent convolution's.
    pub stored: Stored,
}

/// The layout of a parameter tensor in the flat buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Keras' own layout and shape.
    AsKeras,
    /// A Conv2DTranspose kernel, Keras' shape `[k, k, filters, channels in]`, stored as the
    /// convolution that computes the same layer: `[k, k, channels in, filters]`, each window
    /// flipped (`stored[y][x][c][f] = keras[k-1-y][k-1-x][f][c]`).
    FlippedTransposed,
}

impl ParamTensor {
    /// Where element `i` of the stored tensor lies in Keras' layout.
    fn keras_index(&self, i: usize) -> usize {
        match self.stored {
            Stored::AsKeras => i,
            Stored::FlippedTransposed => {
                let [k, _, f, c] = [self.shape[0], self.shape[1], self.shape[2], self.shape[3]];
                let (o, rest) = (i % f, i / f);
                let (ci, tap) = (rest % c, rest / c);
                let (y, x) = (tap / k, tap % k);
                (((k - 1 - y) * k + (k - 1 - x)) * f + o) * c + ci
            }
        }
    }

    /// The tensor in Keras' layout, from its stored values (`stored.len() == len`).
    pub fn to_keras(&self, stored: &[f32]) -> Vec<f32> {
        let mut keras = vec![0.0; stored.len()];
        for (i, v) in stored.iter().enumerate() {
            keras[self.keras_index(i)] = *v;
        }
        keras
    }

    /// The stored values of a tensor given in Keras' layout (`keras.len() == len`).
    pub fn from_keras(&self, keras: &[f32]) -> Vec<f32> {
        (0..keras.len())
            .map(|i| keras[self.keras_index(i)])
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    /// `conv`, `dense`, `deep`, or a file's name.
    pub name: String,
    /// The images' shape (a flat InputLayer takes them in NHWC order).
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
    /// `choice` for images of shape `input`, its code where [`Model::build`] puts it by default.
    pub fn new(choice: impl Into<ModelChoice>, input: Features) -> Result<Self> {
        Self::build(&choice.into(), None, input)
    }

    /// `choice` for images of shape `input`; the encoder ends after the layer named
    /// `code_layer`, or by default at the first narrowest layer output (the bottleneck).
    pub fn build(choice: &ModelChoice, code_layer: Option<&str>, input: Features) -> Result<Self> {
        let d = choice.describe()?;
        let mut layers = d.layers;
        let first = input_shape(choice, &d.input, input, &mut layers)?;
        // The file's position of layer i: a strided layer's index map is one layer here,
        // none there.
        // A take is its convolution's, one before it; messages give the file's layer name.
        let position = |layers: &[Layer], i: usize| {
            let i = i - matches!(layers[i], Layer::StrideTake { .. }) as usize;
            1 + layers[..i]
                .iter()
                .filter(|l| !matches!(l, Layer::StrideInsert { .. } | Layer::StrideTake { .. }))
                .count()
        };
        let bad = |l: &Layer, i: usize, detail: String| Error::Model {
            file: choice.origin(),
            detail: format!(
                "layer {} ('{}', {}): {detail}",
                position(&layers, i),
                l.name().split(':').next().unwrap_or_default(),
                l.class()
            ),
        };
        let mut shapes = vec![first];
        let mut flat = d.input.len() == 1;
        let mut params = ParamLayout::default();
        for (i, layer) in layers.iter().enumerate() {
            let f = shapes[i];
            let image_op = matches!(
                layer,
                Layer::Conv2d { .. }
                    | Layer::MaxPool { .. }
                    | Layer::Upsample { .. }
                    | Layer::StrideInsert { .. }
                    | Layer::StrideTake { .. }
            );
            if image_op && flat {
                return Err(bad(
                    layer,
                    i,
                    format!(
                    "takes images [height, width, channels], but its input is flat ({}); add a \
                     Reshape before it", f.len()
                ),
                ));
            }
            if matches!(layer, Layer::Dense { .. }) && !flat {
                return Err(bad(
                    layer,
                    i,
                    format!(
                    "its input is {}x{}x{}: on images Keras' Dense acts on the channels alone; \
                     add a Flatten before it", f.h, f.w, f.c
                ),
                ));
            }
            let out = layer.output(f);
            if out.is_empty() {
                return Err(bad(
                    layer,
                    i,
                    format!("its input {}x{}x{} is too small for it", f.h, f.w, f.c),
                ));
            }
            if let Layer::Reshape {
                target: Some(t), ..
            } = layer
            {
                if t.len() != f.len() {
                    return Err(bad(
                        layer,
                        i,
                        format!(
                            "target_shape {}x{}x{} holds {} values, its input {}x{}x{} holds {}",
                            t.h,
                            t.w,
                            t.c,
                            t.len(),
                            f.h,
                            f.w,
                            f.c,
                            f.len()
                        ),
                    ));
                }
            }
            flat = match layer {
                Layer::Dense { .. } => true,
                Layer::Reshape { image, .. } => !image,
                _ => flat,
            };
            shapes.push(out);
            params.push_layer(layer, f);
        }
        let last = shapes[shapes.len() - 1];
        // The output has the input's shape: flat as a flat input, or the images themselves.
        let same = match d.input.len() == 1 {
            true => flat && last.len() == input.len(),
            false => !flat && last == first,
        };
        if !same {
            let shape = |f: Features, flat: bool| match flat {
                true => format!("flat [{}]", f.len()),
                false => format!("{}x{}x{}", f.h, f.w, f.c),
            };
            return Err(Error::Model {
                file: choice.origin(),
                detail: format!(
                    "its output is {} but its input is {}: an autoencoder rebuilds its input \
                     (end with a Reshape to the input's shape)",
                    shape(last, flat),
                    shape(first, d.input.len() == 1)
                ),
            });
        }
        let code_at = code_at(&layers, &shapes, code_layer).map_err(|detail| Error::Model {
            file: choice.origin(),
            detail,
        })?;
        Ok(Model {
            name: choice.name().to_string(),
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

    /// Index of layer `i`'s kernel tensor (its bias, if it has one, follows), if it has any.
    pub fn param_index(&self, layer: usize) -> Option<usize> {
        let mut k = 0;
        for (i, l) in self.layers.iter().enumerate() {
            if i == layer {
                return l.has_weights().then_some(k);
            }
            k += l.has_weights() as usize + l.has_bias() as usize;
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
/// launchers take, whether ReLU is fused, and where its kernel and bias lie.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerOp {
    Conv2d {
        shape: Conv2dShape,
        relu: bool,
        kernel: usize,
        /// The bias tensor's index; None for `use_bias=False`.
        bias: Option<usize>,
    },
    Dense {
        shape: DenseShape,
        relu: bool,
        kernel: usize,
        bias: Option<usize>,
    },
    Pool(PoolShape),
    Upsample(UpsampleShape),
    /// A strided Conv2DTranspose's zero insertion (small side: the layer's input).
    StrideInsert(StrideShape),
    /// A strided Conv2D's every other output (big side: the layer's input).
    StrideTake(StrideShape),
    /// Flatten or Reshape: nothing runs.
    Reshape,
}

impl Model {
    /// Layer `i` at batch size `n`. Panics past the last layer (an index bug, not input).
    pub fn op(&self, i: usize, n: u32) -> LayerOp {
        let f = self.shapes[i];
        let kernel = self.param_index(i).unwrap_or(usize::MAX);
        let layer = &self.layers[i];
        let bias = layer.has_bias().then_some(kernel + 1);
        let relu = layer.activation() == Some(Activation::Relu);
        match layer {
            Layer::Conv2d {
                filters,
                k,
                padding,
                ..
            } => LayerOp::Conv2d {
                shape: Conv2dShape {
                    n,
                    h: f.h,
                    w: f.w,
                    ci: f.c,
                    co: *filters,
                    k: *k,
                    padding: *padding,
                },
                relu,
                kernel,
                bias,
            },
            Layer::Dense { .. } => LayerOp::Dense {
                shape: DenseShape {
                    n,
                    fin: f.len() as u32,
                    fout: self.shapes[i + 1].len() as u32,
                },
                relu,
                kernel,
                bias,
            },
            Layer::MaxPool { padding, .. } => LayerOp::Pool(PoolShape {
                n,
                h: f.h,
                w: f.w,
                c: f.c,
                padding: *padding,
            }),
            Layer::Upsample { .. } => LayerOp::Upsample(UpsampleShape {
                n,
                h: f.h,
                w: f.w,
                c: f.c,
            }),
            Layer::StrideInsert { .. } => LayerOp::StrideInsert(StrideShape {
                n,
                h: f.h,
                w: f.w,
                c: f.c,
                hb: 2 * f.h,
                wb: 2 * f.w,
                oy: 1,
                ox: 1,
            }),
            Layer::StrideTake { k, padding, .. } => {
                let out = self.shapes[i + 1];
                LayerOp::StrideTake(StrideShape {
                    n,
                    h: out.h,
                    w: out.w,
                    c: f.c,
                    hb: f.h,
                    wb: f.w,
                    oy: take_offset(f.h, *k, *padding),
                    ox: take_offset(f.w, *k, *padding),
                })
            }
            Layer::Reshape { .. } => LayerOp::Reshape,
        }
    }

    /// Where parameter tensor `k` lies in the flat buffer, in elements.
    pub fn param_range(&self, k: usize) -> std::ops::Range<usize> {
        let p = &self.params[k];
        p.offset as usize..(p.offset + p.len) as usize
    }

    /// The name a profile and a trace show for layer `i`: its Keras name.
    pub fn label(&self, i: usize) -> String {
        self.layers[i].name().to_string()
    }

    /// Whether layer `i` needs the gradient of its input: not when only layers without
    /// weights come before it.
    pub fn needs_input_gradient(&self, i: usize) -> bool {
        self.layers[..i].iter().any(Layer::has_weights)
    }
}

/// The shape the first layer takes, checked against the images' `input`. A built-in dense
/// model follows the data's size (its first and last layers take the pixel count).
fn input_shape(
    choice: &ModelChoice,
    declared: &[u32],
    input: Features,
    layers: &mut [Layer],
) -> Result<Features> {
    let data = format!("{}x{}x{}", input.h, input.w, input.c);
    if let ModelChoice::Builtin(k) = choice {
        if k.follows_data() {
            if let Some(Layer::Dense { units, .. }) = layers.last_mut() {
                *units = input.len() as u32;
            }
            return Ok(Features {
                h: 1,
                w: 1,
                c: input.len() as u32,
            });
        }
        if declared != [input.h, input.w, input.c] {
            return Err(Error::Config(format!(
                "the conv model needs 28x28 single-channel images (its decoder rebuilds \
                 28x28 from a 4x4 code); this dataset has {data}. Use --model dense or deep."
            )));
        }
    }
    let err = |what: String| Error::Model {
        file: choice.origin(),
        detail: format!(
            "layer 0 (InputLayer): batch_shape {what}, but the images of this data are \
             {data}; use a model whose input is [None, {}, {}, {}] or [None, {}]",
            input.h,
            input.w,
            input.c,
            input.len()
        ),
    };
    match declared {
        [len] if *len as u64 == input.len() => Ok(Features {
            h: 1,
            w: 1,
            c: *len,
        }),
        [h, w, c] if [*h, *w, *c] == [input.h, input.w, input.c] => Ok(input),
        d => Err(err(format!("{d:?}"))),
    }
}

/// Where the encoder ends: after the layer named `code_layer`, or after the first layer with
/// the narrowest output (the bottleneck). Never after the last layer.
fn code_at(
    layers: &[Layer],
    shapes: &[Features],
    code_layer: Option<&str>,
) -> std::result::Result<usize, String> {
    let inner = 1..layers.len();
    // A strided Conv2D's output is its `take`'s, the layer after it here.
    let output_of = |i: usize| match layers.get(i + 1) {
        Some(Layer::StrideTake { .. }) => i + 1,
        _ => i,
    };
    match code_layer {
        Some(name) => match layers.iter().position(|l| l.name() == name).map(output_of) {
            Some(i) if i + 1 < layers.len() => Ok(i + 1),
            Some(_) => Err(format!(
                "--code-layer {name} is the output layer; name a layer before it"
            )),
            None => Err(format!(
                "--code-layer {name}: no such layer; the layers are {}",
                layers[..layers.len() - 1]
                    .iter()
                    .filter(|l| !matches!(l, Layer::StrideInsert { .. } | Layer::StrideTake { .. }))
                    .map(Layer::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
        None => inner
            .min_by_key(|&i| (shapes[i].len(), i))
            .ok_or_else(|| "a model of one layer has no code: give it a bottleneck".into()),
    }
}

impl Layer {
    /// The shape this layer makes of an input of shape `f`.
    pub fn output(&self, f: Features) -> Features {
        match self {
            Layer::Conv2d {
                filters,
                k,
                padding,
                ..
            } => {
                let shrink = if *padding == Padding::Valid { k - 1 } else { 0 };
                Features {
                    h: f.h.saturating_sub(shrink),
                    w: f.w.saturating_sub(shrink),
                    c: *filters,
                }
            }
            Layer::MaxPool { padding, .. } => {
                let s = PoolShape {
                    n: 1,
                    h: f.h,
                    w: f.w,
                    c: f.c,
                    padding: *padding,
                };
                let (h, w) = s.out_hw();
                Features { h, w, c: f.c }
            }
            Layer::Upsample { .. } | Layer::StrideInsert { .. } => Features {
                h: 2 * f.h,
                w: 2 * f.w,
                c: f.c,
            },
            // Keras' strided output, ceil(n / 2) for 'same' (m = n) and floor((n - k) / 2) + 1
            // for 'valid' (m = n - k + 1): ceil(m / 2) of the convolution's m either way.
            Layer::StrideTake { .. } => Features {
                h: f.h.div_ceil(2),
                w: f.w.div_ceil(2),
                c: f.c,
            },
            Layer::Dense { units, .. } => Features {
                h: 1,
                w: 1,
                c: *units,
            },
            Layer::Reshape { target, .. } => target.unwrap_or(Features {
                h: 1,
                w: 1,
                c: f.len() as u32,
            }),
        }
    }
}

/// Where a Conv2D with strides 2 puts its first window, in its stride-1 convolution's output
/// of size `m` along an axis: Keras pads 'same' by `p = max(k - 2 + m % 2, 0) / 2` before
/// (the smaller half of TensorFlow's total), so window i starts at `2i - p`, which the
/// stride-1 convolution (padded `(k - 1) / 2`) holds at `2i + (k - 1) / 2 - p`; 'valid'
/// starts at 0.
fn take_offset(m: u32, k: u32, padding: Padding) -> u32 {
    match padding {
        Padding::Valid => 0,
        Padding::Same => {
            let total = (k + m % 2).saturating_sub(2);
            (k - 1) / 2 - total / 2
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
    fn push(&mut self, name: String, shape: Vec<usize>, fans: (u64, u64), stored: Stored) {
        let len = shape.iter().product::<usize>() as u64;
        self.tensors.push(ParamTensor {
            name,
            shape,
            offset: self.len,
            len,
            fan_in: fans.0,
            fan_out: fans.1,
            stored,
        });
        self.len = (self.len + len).div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
    }

    /// The kernel and bias of `layer` (on inputs of shape `f`), if it has weights: Keras'
    /// shapes, and Glorot fans that count a conv's k x k window.
    fn push_layer(&mut self, layer: &Layer, f: Features) {
        let (kernel, fans, units, stored) = match layer {
            Layer::Conv2d {
                filters,
                k,
                transposed,
                ..
            } => {
                let taps = (*k as u64) * (*k as u64);
                let (k, c, f) = (*k as usize, f.c as usize, *filters as usize);
                // Keras' fans count the kernel's last two axes, which a Conv2DTranspose
                // swaps: the sum Glorot takes is the same.
                let (shape, stored) = match transposed {
                    false => (vec![k, k, c, f], Stored::AsKeras),
                    true => (vec![k, k, f, c], Stored::FlippedTransposed),
                };
                (shape, (taps * c as u64, taps * f as u64), *filters, stored)
            }
            Layer::Dense { units, .. } => (
                vec![f.len() as usize, *units as usize],
                (f.len(), *units as u64),
                *units,
                Stored::AsKeras,
            ),
            _ => return,
        };
        let name = layer.name();
        self.push(format!("{name}/kernel"), kernel, fans, stored);
        if layer.has_bias() {
            self.push(
                format!("{name}/bias"),
                vec![units as usize],
                (0, 0),
                Stored::AsKeras,
            );
        }
    }
}
