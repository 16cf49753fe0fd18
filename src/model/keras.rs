//! Keras 3 `model.to_json()` descriptions: a single chain of supported layers becomes our
//! layer list; anything else is refused before any work, naming the layer, its position and
//! the option (never a silent approximation).
use super::{Activation, Layer};
use crate::shapes::{AdamConfig, Features, Padding, CONV_KERNEL_SIZES};
use crate::{Error, Result};
use serde_json::Value;

/// The layer classes this program trains, as the refusals list them.
pub const SUPPORTED: &str =
    "InputLayer, Conv2D, Conv2DTranspose, MaxPooling2D, UpSampling2D, Dense, Flatten, Reshape";

/// A parsed description: the input a model takes, its layers in order, and the settings
/// `compile()` recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    /// The InputLayer's shape per image: `[h, w, c]`, or `[len]` for flat inputs.
    pub input: Vec<u32>,
    pub layers: Vec<Layer>,
    /// Adam's settings from `compile_config`, when the model was compiled.
    pub adam: Option<AdamConfig>,
}

/// Parses `json` (whose origin `file` names in messages).
pub fn parse(json: &str, file: &str) -> Result<Description> {
    let v: Value = serde_json::from_str(json).map_err(|e| Error::Model {
        file: file.into(),
        detail: format!("not JSON ({e}); write the file with `model.to_json()`"),
    })?;
    let p = Parser { file };
    let class = v["class_name"].as_str().unwrap_or("");
    let layers = match class {
        "Functional" | "Model" | "Sequential" => p.chain(&v, class)?,
        other => {
            return Err(p.err(format!(
                "class_name '{other}' is not a Keras model description; write the file with \
                 `model.to_json()` of a Functional or Sequential model"
            )))
        }
    };
    let (input, layers) = p.layers(&layers)?;
    Ok(Description {
        input,
        layers,
        adam: p.compile(&v["compile_config"])?,
    })
}

struct Parser<'a> {
    file: &'a str,
}

/// One layer of the file: its position (0-based, InputLayer included), class, name, config.
struct Entry<'v> {
    pos: usize,
    class: &'v str,
    name: String,
    config: &'v Value,
    /// The names of the layers feeding it (Functional models only).
    inbound: Option<Vec<String>>,
}

impl<'a> Parser<'a> {
    fn err(&self, detail: String) -> Error {
        Error::Model {
            file: self.file.into(),
            detail,
        }
    }

    fn layer_err(&self, e: &Entry<'_>, detail: impl Into<String>) -> Error {
        self.err(format!(
            "layer {} ('{}', {}): {}",
            e.pos,
            e.name,
            e.class,
            detail.into()
        ))
    }

    /// The file's layers in order, checked to form one chain from the input to the output.
    fn chain<'v>(&self, v: &'v Value, class: &str) -> Result<Vec<Entry<'v>>> {
        let config = &v["config"];
        let list = config["layers"]
            .as_array()
            .ok_or_else(|| self.err("no config.layers list".into()))?;
        let mut entries = Vec::new();
        for (pos, l) in list.iter().enumerate() {
            let c = &l["config"];
            let name = c["name"]
                .as_str()
                .or(l["name"].as_str())
                .unwrap_or("?")
                .to_string();
            let inbound = (class != "Sequential").then(|| inbound_names(&l["inbound_nodes"]));
            entries.push(Entry {
                pos,
                class: l["class_name"].as_str().unwrap_or("?"),
                name,
                config: c,
                inbound,
            });
        }
        if class == "Sequential" {
            return Ok(entries);
        }
        for (i, e) in entries.iter().enumerate() {
            let inbound = e.inbound.clone().unwrap_or_default();
            let want: Vec<String> = match i {
                0 => vec![],
                _ => vec![entries[i - 1].name.clone()],
            };
            if inbound != want {
                return Err(self.layer_err(
                    e,
                    format!(
                        "its inputs are {inbound:?}, not the layer before it: only a single \
                         chain from input to output is supported (no skip connections, no \
                         branches, no shared layers)"
                    ),
                ));
            }
        }
        let ends = |key: &str| -> Vec<String> {
            config[key]
                .as_array()
                .map(|a| {
                    // One end is `[name, 0, 0]`; several are a list of those.
                    if a.first().is_some_and(Value::is_string) {
                        vec![a[0].as_str().unwrap_or("").to_string()]
                    } else {
                        a.iter()
                            .map(|x| x[0].as_str().unwrap_or("").to_string())
                            .collect()
                    }
                })
                .unwrap_or_default()
        };
        let (first, last) = (
            entries.first().map(|e| e.name.clone()),
            entries.last().map(|e| e.name.clone()),
        );
        if ends("input_layers") != first.into_iter().collect::<Vec<_>>()
            || ends("output_layers") != last.into_iter().collect::<Vec<_>>()
        {
            return Err(self.err(format!(
                "the model's inputs {:?} and outputs {:?} are not the first and last layer: \
                 only one input and one output, at the ends of a single chain, are supported",
                ends("input_layers"),
                ends("output_layers")
            )));
        }
        Ok(entries)
    }

    /// The input shape and our layers, with every option checked.
    fn layers(&self, entries: &[Entry<'_>]) -> Result<(Vec<u32>, Vec<Layer>)> {
        let Some(first) = entries.first().filter(|e| e.class == "InputLayer") else {
            return Err(self.err(
                "the first layer is not an InputLayer: build the model with \
                 `keras.Input(shape=...)` (or `keras.Input` first in a Sequential) so the file \
                 records its input shape"
                    .into(),
            ));
        };
        let input = self.input(first)?;
        let mut layers = Vec::new();
        // The output layer: the last one with weights; only Flatten or Reshape may follow it.
        let last = entries
            .iter()
            .rposition(|e| !matches!(e.class, "Flatten" | "Reshape"))
            .unwrap_or(0);
        for e in &entries[1..] {
            self.common(e)?;
            // A layer of ours that follows this one's (a strided Conv2D's `take`).
            let mut after = None;
            let layer = match e.class {
                "Conv2D" => {
                    let (conv, take) = self.conv2d(e)?;
                    if take.is_some() && e.pos == last {
                        return Err(self.layer_err(
                            e,
                            "strides 2 on the output layer: its output would be half the \
                             input's size; downsample in the encoder only",
                        ));
                    }
                    after = take;
                    conv
                }
                "Conv2DTranspose" => {
                    let (insert, conv) = self.conv2d_transpose(e)?;
                    layers.extend(insert);
                    conv
                }
                "Dense" => self.dense(e)?,
                "MaxPooling2D" => self.max_pool(e)?,
                "UpSampling2D" => self.upsample(e)?,
                "Flatten" => {
                    self.channels_last(e)?;
                    Layer::Reshape {
                        name: e.name.clone(),
                        target: None,
                        image: false,
                    }
                }
                "Reshape" => self.reshape(e)?,
                "InputLayer" => return Err(self.layer_err(e, "a second InputLayer")),
                "Add" | "Concatenate" | "Multiply" | "Average" | "Subtract" => {
                    return Err(self.layer_err(
                        e,
                        "joins branches (a skip connection): only a single chain is supported",
                    ))
                }
                other => {
                    return Err(self.layer_err(
                        e,
                        format!("{other} is not supported; the supported layers are {SUPPORTED}"),
                    ))
                }
            };
            if let Some(act) = layer.activation() {
                let is_last = e.pos == last;
                if is_last && act != Activation::Sigmoid {
                    return Err(self.layer_err(
                        e,
                        format!(
                            "the last layer's activation is '{}': it must be 'sigmoid' (the \
                             loss is binary cross-entropy on pixels in [0, 1])",
                            act.keras_name()
                        ),
                    ));
                }
                if !is_last && act == Activation::Sigmoid {
                    return Err(self.layer_err(
                        e,
                        "activation 'sigmoid' before the last layer is not supported; use \
                         'relu' or 'linear'",
                    ));
                }
            } else if e.pos == last {
                return Err(self.layer_err(
                    e,
                    "the output layer (the last but any Flatten or Reshape) must be a Conv2D, \
                     Conv2DTranspose or Dense with activation 'sigmoid'",
                ));
            }
            layers.push(layer);
            layers.extend(after);
        }
        if layers.is_empty() {
            return Err(self.err("the model has no layers after its InputLayer".into()));
        }
        Ok((input, layers))
    }

    fn input(&self, e: &Entry<'_>) -> Result<Vec<u32>> {
        let shape = e
            .config
            .get("batch_shape")
            .or(e.config.get("batch_input_shape"))
            .and_then(Value::as_array)
            .ok_or_else(|| self.layer_err(e, "no batch_shape"))?;
        let dims: Option<Vec<u32>> = shape
            .iter()
            .skip(1)
            .map(|d| d.as_u64().and_then(|d| u32::try_from(d).ok()))
            .collect();
        if !matches!(e.config["dtype"].as_str(), None | Some("float32")) {
            return Err(self.layer_err(
                e,
                format!(
                    "dtype {}: the input must be float32 (pixels / 255)",
                    compact(&e.config["dtype"])
                ),
            ));
        }
        if !shape.first().is_some_and(Value::is_null) {
            return Err(self.layer_err(
                e,
                format!(
                    "batch_shape {}: the batch size must be left open (None); --batch-size \
                     sets it",
                    compact(&e.config["batch_shape"])
                ),
            ));
        }
        match dims {
            Some(d) if (d.len() == 1 || d.len() == 3) && d.iter().all(|&x| x > 0) => {
                for flag in ["sparse", "ragged"] {
                    if e.config[flag].as_bool() == Some(true) {
                        return Err(self.layer_err(e, format!("{flag} inputs are not supported")));
                    }
                }
                Ok(d)
            }
            _ => Err(self.layer_err(
                e,
                format!(
                    "batch_shape {shape:?}: the input must be images [height, width, \
                     channels] or flat [length], every size given"
                ),
            )),
        }
    }

    /// Options every layer may carry.
    fn common(&self, e: &Entry<'_>) -> Result<()> {
        if e.config["trainable"].as_bool() == Some(false) {
            return Err(self.layer_err(
                e,
                "trainable false: frozen layers are not supported (every layer is trained)",
            ));
        }
        let dtype = match &e.config["dtype"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            d => Some(d["config"]["name"].as_str().unwrap_or("?").to_string()),
        };
        if let Some(d) = dtype.filter(|d| d != "float32") {
            return Err(self.layer_err(
                e,
                format!("dtype '{d}': the kernels compute in float32 only"),
            ));
        }
        for key in [
            "activity_regularizer",
            "kernel_regularizer",
            "bias_regularizer",
            "kernel_constraint",
            "bias_constraint",
        ] {
            if !e.config[key].is_null() {
                return Err(self.layer_err(
                    e,
                    format!("{key} is set: regularizers and constraints are not supported"),
                ));
            }
        }
        if !e.config["lora_rank"].is_null() {
            return Err(self.layer_err(e, "lora_rank is set: LoRA is not supported"));
        }
        Ok(())
    }

    fn channels_last(&self, e: &Entry<'_>) -> Result<()> {
        match e.config["data_format"].as_str() {
            None | Some("channels_last") => Ok(()),
            Some(f) => Err(self.layer_err(
                e,
                format!("data_format '{f}': only 'channels_last' (NHWC) is supported"),
            )),
        }
    }

    fn pair(&self, e: &Entry<'_>, key: &str) -> Option<[u64; 2]> {
        let v = &e.config[key];
        if let Some(n) = v.as_u64() {
            return Some([n, n]);
        }
        let a = v.as_array()?;
        match (
            a.len(),
            a.first()?.as_u64(),
            a.get(1).and_then(Value::as_u64),
        ) {
            (2, Some(x), Some(y)) => Some([x, y]),
            _ => None,
        }
    }

    /// `key` must be `want` on both axes; absent, it is Keras' default, which is `want`.
    fn expect_pair(&self, e: &Entry<'_>, key: &str, want: u64, why: &str) -> Result<()> {
        if e.config[key].is_null() {
            return Ok(());
        }
        match self.pair(e, key) {
            Some(p) if p == [want, want] => Ok(()),
            _ => Err(self.layer_err(
                e,
                format!(
                    "{key} {}: only {want} is supported{why}",
                    compact(&e.config[key])
                ),
            )),
        }
    }

    fn padding(&self, e: &Entry<'_>) -> Result<Padding> {
        match &e.config["padding"] {
            Value::String(p) if p == "same" => Ok(Padding::Same),
            // Absent: Keras' default for Conv2D and MaxPooling2D.
            Value::String(p) if p == "valid" => Ok(Padding::Valid),
            Value::Null => Ok(Padding::Valid),
            _ => Err(self.layer_err(
                e,
                format!(
                    "padding {}: only 'same' and 'valid' are supported",
                    compact(&e.config["padding"])
                ),
            )),
        }
    }

    fn activation(&self, e: &Entry<'_>) -> Result<Activation> {
        match &e.config["activation"] {
            Value::Null => Ok(Activation::Linear),
            Value::String(s) if s == "relu" => Ok(Activation::Relu),
            Value::String(s) if s == "sigmoid" => Ok(Activation::Sigmoid),
            Value::String(s) if s == "linear" => Ok(Activation::Linear),
            other => Err(self.layer_err(
                e,
                format!(
                    "activation {}: only 'relu', 'sigmoid' (last layer) and 'linear' are \
                     supported",
                    compact(other)
                ),
            )),
        }
    }

    /// Glorot-uniform kernels and zero biases: the initialisation this program implements.
    fn initializers(&self, e: &Entry<'_>, bias: bool) -> Result<()> {
        // An initializer is an object with a class_name, or a string identifier.
        let class = |key: &str| match &e.config[key] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            v => Some(v["class_name"].as_str().unwrap_or("?").to_string()),
        };
        let kernel = class("kernel_initializer");
        if !matches!(
            kernel.as_deref(),
            None | Some("GlorotUniform" | "glorot_uniform")
        ) {
            return Err(self.layer_err(
                e,
                format!(
                    "kernel_initializer {}: only GlorotUniform (Keras' default) is supported",
                    kernel.unwrap_or_default()
                ),
            ));
        }
        let b = class("bias_initializer");
        if bias && !matches!(b.as_deref(), None | Some("Zeros" | "zeros")) {
            return Err(self.layer_err(
                e,
                format!(
                    "bias_initializer {}: only Zeros (Keras' default) is supported",
                    b.unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn use_bias(&self, e: &Entry<'_>) -> Result<bool> {
        match &e.config["use_bias"] {
            Value::Null => Ok(true),
            Value::Bool(b) => Ok(*b),
            other => Err(self.layer_err(e, format!("use_bias {}", compact(other)))),
        }
    }

    /// A Conv2D, and where its strides are 2 the `take` of every other output of its stride-1
    /// convolution that computes it.
    fn conv2d(&self, e: &Entry<'_>) -> Result<(Layer, Option<Layer>)> {
        self.channels_last(e)?;
        let filters = self.filters(e)?;
        let k = self.kernel_side(e, &CONV_KERNEL_SIZES, "")?;
        let strides = self.strides(e)?;
        self.expect_pair(e, "dilation_rate", 1, "")?;
        if e.config["groups"].as_u64().unwrap_or(1) != 1 {
            return Err(self.layer_err(
                e,
                format!("groups {}: only 1 is supported", e.config["groups"]),
            ));
        }
        let bias = self.use_bias(e)?;
        self.initializers(e, bias)?;
        let padding = self.padding(e)?;
        let take = (strides == 2).then(|| Layer::StrideTake {
            name: format!("{}:take", e.name),
            k,
            padding,
        });
        let conv = Layer::Conv2d {
            name: e.name.clone(),
            filters,
            k,
            padding,
            act: self.activation(e)?,
            bias,
            transposed: false,
        };
        Ok((conv, take))
    }

    /// `filters`: a positive count.
    fn filters(&self, e: &Entry<'_>) -> Result<u32> {
        e.config["filters"]
            .as_u64()
            .filter(|&f| f > 0 && f <= u32::MAX as u64)
            .map(|f| f as u32)
            .ok_or_else(|| self.layer_err(e, "filters must be a positive integer"))
    }

    /// `kernel_size`: a square kernel whose side is one of `sizes`; `when` ends the refusal.
    fn kernel_side(&self, e: &Entry<'_>, sizes: &[u32], when: &str) -> Result<u32> {
        match self.pair(e, "kernel_size") {
            Some([a, b]) if a == b && sizes.iter().any(|&k| k as u64 == a) => Ok(a as u32),
            _ => {
                let names: Vec<String> = sizes.iter().map(u32::to_string).collect();
                let sides = match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => names.join(""),
                };
                Err(self.layer_err(
                    e,
                    format!(
                        "kernel_size {}: only square kernels of side {sides} are supported{when}",
                        compact(&e.config["kernel_size"]),
                    ),
                ))
            }
        }
    }

    /// `strides`: 1 or 2, the same on both axes (absent: Keras' default, 1).
    fn strides(&self, e: &Entry<'_>) -> Result<u64> {
        match self.pair(e, "strides") {
            None if e.config["strides"].is_null() => Ok(1),
            Some([s, t]) if s == t && (s == 1 || s == 2) => Ok(s),
            _ => Err(self.layer_err(
                e,
                format!(
                    "strides {}: only 1 or 2 (the same on both axes) are supported",
                    compact(&e.config["strides"])
                ),
            )),
        }
    }

    /// A Conv2DTranspose as the convolution that computes it (`transposed`), after a zero
    /// insertion where its strides are 2. With 'same' padding and odd kernels, Keras' layer is
    /// `out[s*i + t - p] += in[i] * kernel[t]` per axis, with `p = (k - s) / 2` rounded down
    /// (TensorFlow's split of the padding); inserting zeros so that `in[i]` lands at
    /// `2i + 1` (strides 2, `stride.insert`) makes that a 'same' convolution of the flipped
    /// kernel.
    fn conv2d_transpose(&self, e: &Entry<'_>) -> Result<(Option<Layer>, Layer)> {
        self.channels_last(e)?;
        let filters = self.filters(e)?;
        let strides = self.strides(e)?;
        // Strides 2 on a kernel of 1 would put the inputs at even positions: not supported.
        let k = match strides {
            2 => self.kernel_side(e, &[3, 5, 7], " with strides 2")?,
            _ => self.kernel_side(e, &CONV_KERNEL_SIZES, "")?,
        };
        if self.padding(e)? != Padding::Same {
            return Err(self.layer_err(
                e,
                "padding 'valid': only 'same' is supported (the output is the input's size \
                 times the strides)",
            ));
        }
        if !e.config["output_padding"].is_null() {
            return Err(self.layer_err(
                e,
                format!(
                    "output_padding {}: only None (Keras' default) is supported",
                    compact(&e.config["output_padding"])
                ),
            ));
        }
        self.expect_pair(e, "dilation_rate", 1, "")?;
        let bias = self.use_bias(e)?;
        self.initializers(e, bias)?;
        let insert = (strides == 2).then(|| Layer::StrideInsert {
            name: format!("{}:insert", e.name),
        });
        let conv = Layer::Conv2d {
            name: e.name.clone(),
            filters,
            k,
            padding: Padding::Same,
            act: self.activation(e)?,
            bias,
            transposed: true,
        };
        Ok((insert, conv))
    }

    fn dense(&self, e: &Entry<'_>) -> Result<Layer> {
        let units = e.config["units"]
            .as_u64()
            .filter(|&u| u > 0 && u <= u32::MAX as u64)
            .ok_or_else(|| self.layer_err(e, "units must be a positive integer"))?;
        let bias = self.use_bias(e)?;
        self.initializers(e, bias)?;
        Ok(Layer::Dense {
            name: e.name.clone(),
            units: units as u32,
            act: self.activation(e)?,
            bias,
        })
    }

    fn max_pool(&self, e: &Entry<'_>) -> Result<Layer> {
        self.channels_last(e)?;
        self.expect_pair(e, "pool_size", 2, "")?;
        if !e.config["strides"].is_null() {
            self.expect_pair(e, "strides", 2, " (equal to the pool size)")?;
        }
        Ok(Layer::MaxPool {
            name: e.name.clone(),
            padding: self.padding(e)?,
        })
    }

    fn upsample(&self, e: &Entry<'_>) -> Result<Layer> {
        self.channels_last(e)?;
        self.expect_pair(e, "size", 2, "")?;
        match e.config["interpolation"].as_str() {
            None | Some("nearest") => Ok(Layer::Upsample {
                name: e.name.clone(),
            }),
            Some(i) => Err(self.layer_err(
                e,
                format!("interpolation '{i}': only 'nearest' is supported"),
            )),
        }
    }

    fn reshape(&self, e: &Entry<'_>) -> Result<Layer> {
        let dims: Option<Vec<u32>> = e.config["target_shape"].as_array().and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| u32::try_from(d).ok()))
                .collect()
        });
        let (target, image) = match dims.as_deref() {
            Some([h, w, c]) if *h > 0 && *w > 0 && *c > 0 => (
                Features {
                    h: *h,
                    w: *w,
                    c: *c,
                },
                true,
            ),
            Some([len]) if *len > 0 => (
                Features {
                    h: 1,
                    w: 1,
                    c: *len,
                },
                false,
            ),
            _ => {
                return Err(self.layer_err(
                    e,
                    format!(
                        "target_shape {}: give [height, width, channels] or [length], every \
                         size positive (no -1)",
                        compact(&e.config["target_shape"])
                    ),
                ))
            }
        };
        Ok(Layer::Reshape {
            name: e.name.clone(),
            target: Some(target),
            image,
        })
    }

    /// Adam's settings from `compile()`: the loss must be binary cross-entropy and the
    /// optimizer Adam without the options this program does not implement.
    fn compile(&self, c: &Value) -> Result<Option<AdamConfig>> {
        if c.is_null() {
            return Ok(None);
        }
        // A name, a loss object, or a loss function (class "function", its name as config).
        let loss = match &c["loss"] {
            Value::String(s) => s.clone(),
            v if v["class_name"] == "function" => v["config"].as_str().unwrap_or("?").into(),
            v => v["class_name"].as_str().unwrap_or("?").to_string(),
        };
        if !["binary_crossentropy", "BinaryCrossentropy"].contains(&loss.as_str()) {
            return Err(self.err(format!(
                "compile_config: loss '{loss}': only binary_crossentropy is supported"
            )));
        }
        let lc = &c["loss"]["config"];
        if lc["label_smoothing"].as_f64().is_some_and(|x| x != 0.0) {
            return Err(self.err(
                "compile_config: BinaryCrossentropy's label_smoothing is set: not supported".into(),
            ));
        }
        if !matches!(lc["reduction"].as_str(), None | Some("sum_over_batch_size")) {
            return Err(self.err(format!(
                "compile_config: the loss's reduction {}: only the mean \
                 (sum_over_batch_size) is supported",
                compact(&lc["reduction"])
            )));
        }
        if !c["loss_weights"].is_null() {
            return Err(self.err("compile_config: loss_weights are not supported".into()));
        }
        if lc["from_logits"].as_bool() == Some(true) {
            return Err(self.err(
                "compile_config: BinaryCrossentropy(from_logits=True): the last layer's \
                 sigmoid already makes probabilities"
                    .into(),
            ));
        }
        let opt = &c["optimizer"];
        let class = match opt {
            Value::String(s) => s.to_ascii_lowercase(),
            v => v["class_name"].as_str().unwrap_or("?").to_ascii_lowercase(),
        };
        if class != "adam" {
            return Err(self.err(format!(
                "compile_config: optimizer '{class}': only Adam is supported"
            )));
        }
        let o = &opt["config"];
        let mut adam = AdamConfig::default();
        let num = |key: &str| o[key].as_f64().map(|x| x as f32);
        if o.get("learning_rate").is_some() && num("learning_rate").is_none() {
            return Err(self.err(
                "compile_config: a learning-rate schedule is not supported; give a number".into(),
            ));
        }
        adam.lr = num("learning_rate").unwrap_or(adam.lr);
        if !(adam.lr.is_finite() && adam.lr > 0.0) {
            return Err(self.err(format!(
                "compile_config: Adam's learning_rate {} is not a positive number",
                adam.lr
            )));
        }
        adam.beta1 = num("beta_1").unwrap_or(adam.beta1);
        adam.beta2 = num("beta_2").unwrap_or(adam.beta2);
        adam.eps = num("epsilon").unwrap_or(adam.eps);
        for key in [
            "weight_decay",
            "clipnorm",
            "global_clipnorm",
            "clipvalue",
            "loss_scale_factor",
            "gradient_accumulation_steps",
        ] {
            if !o[key].is_null() {
                return Err(self.err(format!(
                    "compile_config: Adam's {key} is set: not supported"
                )));
            }
        }
        for key in ["amsgrad", "use_ema"] {
            if o[key].as_bool() == Some(true) {
                return Err(self.err(format!("compile_config: Adam's {key} is on: not supported")));
            }
        }
        Ok(Some(adam))
    }
}

/// The names of the layers a Functional layer's inbound nodes refer to.
fn inbound_names(nodes: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for node in nodes.as_array().into_iter().flatten() {
        collect_history(&node["args"], &mut names);
        collect_history(&node["kwargs"], &mut names);
    }
    names
}

fn collect_history(v: &Value, names: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if o.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__") {
                let history = o.get("config").map(|c| &c["keras_history"][0]);
                if let Some(n) = history.and_then(Value::as_str) {
                    names.push(n.to_string());
                }
                return;
            }
            o.values().for_each(|x| collect_history(x, names));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_history(x, names)),
        _ => {}
    }
}

/// A JSON value on one line, for messages.
fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
