//! Checkpoints as safetensors: weights under Keras 3's variable paths and shapes
//! (`conv2d/kernel` [3, 3, 1, 16], ...), Adam's moments under `optimizer/m/...` and
//! `optimizer/v/...`, Adam's step count as `optimizer/iterations` (i64), and the run's
//! bookkeeping in the header's metadata: format version, model, input shape, epoch, the
//! settings, the metrics so far, where in the epoch it was taken (`step`, with the losses of
//! the steps already done in that epoch: `partial_losses`), and a SHA-256 over every tensor's
//! bytes and every metadata entry.
//!
//! Format versions: 1 had no `step`/`partial_losses` and its checksum covered the tensors
//! only (still read: an epoch-end checkpoint); 2 adds both and checksums the metadata too, so
//! an altered epoch count or history is refused like an altered weight.
use crate::data::DataRecord;
use crate::model::{Features, Model};
pub use crate::train::State;
use crate::train::{EpochMetrics, TrainConfig};
use crate::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT: &str = "wgsl-autoencoder";
pub const FORMAT_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The images' shape; the model is `config.model` (a built-in's name, or a Keras
    /// description's whole text) built for it.
    pub input: Features,
    /// Training images the run uses (the dataset's shape, with --train-limit applied).
    pub train_count: usize,
    pub config: TrainConfig,
    pub history: Vec<EpochMetrics>,
    pub state: State,
    /// Steps of epoch `state.epoch + 1` already done: 0 at an epoch's end; more for a
    /// checkpoint taken inside an epoch (Ctrl-C, `--checkpoint-every`), which resumes there
    /// with the same permutation (a function of the seed and the epoch).
    pub step: usize,
    /// The training losses of those `step` steps, so that the resumed epoch's loss (the
    /// sample-weighted mean of every step's) equals an uninterrupted run's.
    pub partial_losses: Vec<f32>,
    /// The dataset the run trained on (absent in checkpoints of earlier versions).
    pub data: Option<DataRecord>,
}

fn err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// The tensors in file order (names sorted, as safetensors stores them), each in Keras'
/// layout (a Conv2DTranspose kernel's and its moments' stored layout differs:
/// [`crate::model::ParamTensor::to_keras`]).
fn tensors(model: &Model, s: &State) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for (k, p) in model.params.iter().enumerate() {
        let r = model.param_range(k);
        for (prefix, flat) in [
            ("", &s.params),
            ("optimizer/m/", &s.adam_m),
            ("optimizer/v/", &s.adam_v),
        ] {
            let name = format!("{prefix}{}", p.name);
            out.push((name, p.shape.clone(), p.to_keras(&flat[r.clone()])));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// SHA-256 over the tensors (name, length, bytes, in name order) and, from version 2, the
/// metadata entries (key, length, value, in key order; `sha256` itself left out).
fn digest<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a [u8])>,
    meta: Option<&HashMap<String, String>>,
) -> String {
    let mut h = Sha256::new();
    let mut item = |name: &[u8], bytes: &[u8]| {
        h.update(name);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (name, bytes) in tensors {
        item(name.as_bytes(), bytes);
    }
    if let Some(meta) = meta {
        let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "sha256").collect();
        keys.sort();
        item(b"__metadata__", &[]);
        for k in keys {
            item(k.as_bytes(), meta[k].as_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode(ck: &Checkpoint) -> Result<Vec<u8>> {
    let path = Path::new("<checkpoint>");
    let model = ck.model()?;
    let len = model.param_len as usize;
    let s = &ck.state;
    if s.params.len() != len || s.adam_m.len() != len || s.adam_v.len() != len {
        return Err(err(
            path,
            "state does not match the model's parameter layout",
        ));
    }
    let list = tensors(&model, s);
    let iterations = (s.iterations as i64).to_le_bytes().to_vec();
    let mut owned: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = list
        .into_iter()
        .map(|(n, shape, v)| (n, shape, Dtype::F32, bytemuck::cast_slice(&v).to_vec()))
        .collect();
    owned.push((
        "optimizer/iterations".into(),
        vec![1],
        Dtype::I64,
        iterations,
    ));
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    if ck.partial_losses.len() != ck.step {
        return Err(err(
            path,
            format!(
                "{} partial losses for step {}",
                ck.partial_losses.len(),
                ck.step
            ),
        ));
    }
    let mut meta = HashMap::new();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("format_version".into(), FORMAT_VERSION.to_string());
    meta.insert("model".into(), ck.config.model.name().into());
    meta.insert(
        "input".into(),
        format!("{}x{}x{}", ck.input.h, ck.input.w, ck.input.c),
    );
    meta.insert("train_count".into(), ck.train_count.to_string());
    meta.insert("epoch".into(), s.epoch.to_string());
    meta.insert("config".into(), to_json(&ck.config)?);
    meta.insert("history".into(), to_json(&ck.history)?);
    meta.insert("step".into(), ck.step.to_string());
    meta.insert("partial_losses".into(), to_json(&ck.partial_losses)?);
    if let Some(d) = &ck.data {
        meta.insert("data".into(), to_json(d)?);
    }
    let sha = digest(
        owned.iter().map(|(n, _, _, b)| (n.as_str(), b.as_slice())),
        Some(&meta),
    );
    meta.insert("sha256".into(), sha);
    let mut views = Vec::new();
    for (name, shape, dtype, bytes) in &owned {
        let v = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| err(path, e.to_string()))?;
        views.push((name.clone(), v));
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| err(path, e.to_string()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| err(Path::new("<checkpoint>"), e.to_string()))
}

/// The header's metadata, with errors that name the file.
struct Meta<'a> {
    map: HashMap<String, String>,
    path: &'a Path,
}

impl Meta<'_> {
    fn get(&self, k: &str) -> Result<&str> {
        self.map.get(k).map(String::as_str).ok_or_else(|| {
            err(
                self.path,
                format!("metadata has no `{k}`: not a {FORMAT} checkpoint"),
            )
        })
    }

    fn number(&self, k: &str) -> Result<u64> {
        self.get(k)?
            .parse()
            .map_err(|_| err(self.path, format!("unreadable `{k}`")))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, k: &str) -> Result<T> {
        serde_json::from_str(self.get(k)?)
            .map_err(|e| err(self.path, format!("unreadable {k}: {e}")))
    }

    /// The format version, refused when it is not ours or newer than this program's.
    fn version(&self) -> Result<u32> {
        if self.get("format")? != FORMAT {
            return Err(err(self.path, format!("not a {FORMAT} checkpoint")));
        }
        let version: u32 = self
            .get("format_version")?
            .parse()
            .map_err(|_| err(self.path, "unreadable format_version"))?;
        if version == 0 {
            return Err(err(self.path, "format version 0 does not exist"));
        }
        if version > FORMAT_VERSION {
            return Err(err(
                self.path,
                format!("format version {version} is newer than this program's ({FORMAT_VERSION}); update wgsl-autoencoder"),
            ));
        }
        Ok(version)
    }

    /// The model's name, which must be the settings' model's.
    fn check_model(&self, config: &TrainConfig) -> Result<()> {
        let name = self.get("model")?;
        if name != config.model.name() {
            return Err(err(
                self.path,
                format!(
                    "its model `{name}` is not its settings' `{}`",
                    config.model.name()
                ),
            ));
        }
        Ok(())
    }

    /// The input shape, refused when absurd before anything is sized from it.
    fn input(&self) -> Result<Features> {
        let dims: Vec<u32> = self
            .get("input")?
            .split('x')
            .filter_map(|d| d.parse().ok())
            .collect();
        let input = match dims[..] {
            [h, w, c] => Features { h, w, c },
            _ => return Err(err(self.path, "unreadable input shape")),
        };
        let values = [input.h, input.w, input.c]
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        // At most 2^31 values: a file model may hold fewer weights than its input has
        // values, so the file's size bounds nothing.
        if !values.is_some_and(|n| n > 0 && n <= 1 << 31) {
            return Err(err(
                self.path,
                format!(
                    "input shape {}x{}x{} does not fit the file",
                    input.h, input.w, input.c
                ),
            ));
        }
        Ok(input)
    }

    /// Where in the epoch the checkpoint was taken; version 1 wrote epoch ends only.
    fn position(&self, version: u32) -> Result<(usize, Vec<f32>)> {
        if version < 2 {
            return Ok((0, Vec::new()));
        }
        let step = self.number("step")? as usize;
        let losses: Vec<f32> = self.json("partial_losses")?;
        if losses.len() != step {
            return Err(err(
                self.path,
                format!("{} partial losses for step {step}", losses.len()),
            ));
        }
        Ok((step, losses))
    }
}

/// Every tensor name the model's checkpoint holds, with its type and shape.
fn expected_tensors(model: &Model) -> HashMap<String, (Dtype, Vec<usize>)> {
    let mut wanted = HashMap::new();
    for p in &model.params {
        for prefix in ["", "optimizer/m/", "optimizer/v/"] {
            wanted.insert(format!("{prefix}{}", p.name), (Dtype::F32, p.shape.clone()));
        }
    }
    wanted.insert("optimizer/iterations".into(), (Dtype::I64, vec![1]));
    wanted
}

/// Checks that the file holds exactly the model's tensors, each with its type and shape,
/// before anything is sized from them; returns them in name order.
fn checked_tensors<'a>(
    st: &'a SafeTensors<'a>,
    model: &Model,
    path: &Path,
) -> Result<Vec<(String, safetensors::tensor::TensorView<'a>)>> {
    let wanted = expected_tensors(model);
    let mut names: Vec<String> = st.names().iter().map(|s| s.to_string()).collect();
    names.sort();
    let mut expected: Vec<&String> = wanted.keys().collect();
    expected.sort();
    if names.iter().ne(expected.iter().copied()) {
        return Err(err(
            path,
            format!(
                "its tensors do not belong to the {} model (found {})",
                model.name,
                names.join(", ")
            ),
        ));
    }
    let mut views = Vec::with_capacity(names.len());
    for n in names {
        let t = st.tensor(&n).map_err(|e| err(path, e.to_string()))?;
        let (dtype, shape) = &wanted[&n];
        if t.dtype() != *dtype || t.shape() != shape.as_slice() {
            return Err(err(
                path,
                format!(
                    "{n} is {:?} {:?}, the model needs {dtype:?} {shape:?}",
                    t.dtype(),
                    t.shape(),
                ),
            ));
        }
        views.push((n, t));
    }
    Ok(views)
}

/// The flat weights and moments, and Adam's step count, from the checked tensors.
fn state_from(
    model: &Model,
    views: &[(String, safetensors::tensor::TensorView<'_>)],
    epoch: usize,
    path: &Path,
) -> Result<State> {
    let len = model.param_len as usize;
    let (mut params, mut adam_m, mut adam_v) =
        (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
    let by_name: HashMap<&str, &[u8]> = views.iter().map(|(n, t)| (n.as_str(), t.data())).collect();
    for (k, p) in model.params.iter().enumerate() {
        for (prefix, dst) in [
            ("", &mut params),
            ("optimizer/m/", &mut adam_m),
            ("optimizer/v/", &mut adam_v),
        ] {
            let data = by_name[format!("{prefix}{}", p.name).as_str()];
            let keras: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            dst[model.param_range(k)].copy_from_slice(&p.from_keras(&keras));
        }
    }
    let iterations = match <[u8; 8]>::try_from(by_name["optimizer/iterations"]) {
        Ok(b) => i64::from_le_bytes(b).max(0) as u64,
        Err(_) => return Err(err(path, "optimizer/iterations is not one i64")),
    };
    Ok(State {
        params,
        adam_m,
        adam_v,
        epoch,
        iterations,
    })
}

/// Parses and verifies a checkpoint: format, version, model, every tensor's name, shape and
/// type, and the checksum. Nothing is half-loaded: any mismatch is an error.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        err(
            path,
            format!(
                "not a readable safetensors file ({e}); it may be truncated or not a \
                 checkpoint. Use another checkpoint (best.safetensors, or an earlier run's)"
            ),
        )
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| err(path, e.to_string()))?;
    let meta = Meta {
        map: header.metadata().clone().unwrap_or_default(),
        path,
    };
    let version = meta.version()?;
    let input = meta.input()?;
    let train_count = meta.number("train_count")? as usize;
    let epoch = meta.number("epoch")? as usize;
    let config: TrainConfig = meta.json("config")?;
    let history: Vec<EpochMetrics> = meta.json("history")?;
    meta.check_model(&config)?;
    let model = config
        .build_model(input)
        .map_err(|e| err(path, e.to_string()))?;
    let views = checked_tensors(&st, &model, path)?;
    let sha = digest(
        views.iter().map(|(n, t)| (n.as_str(), t.data())),
        (version >= 2).then_some(&meta.map),
    );
    if sha != meta.get("sha256")? {
        return Err(err(
            path,
            "checksum mismatch: the file was altered or damaged. Use another checkpoint \
             (best.safetensors, or an earlier run's)",
        ));
    }
    let state = state_from(&model, &views, epoch, path)?;
    let (step, partial_losses) = meta.position(version)?;
    let data = match meta.map.contains_key("data") {
        true => Some(meta.json("data")?),
        false => None,
    };
    Ok(Checkpoint {
        input,
        train_count,
        config,
        history,
        state,
        step,
        partial_losses,
        data,
    })
}

impl Checkpoint {
    /// The model the checkpoint's weights belong to.
    pub fn model(&self) -> Result<Model> {
        self.config.build_model(self.input)
    }
}

/// Writes atomically: the previous file stays valid until the new one is complete.
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    crate::atomic::write_atomic(path, &encode(ck)?)
}

pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err(
            path,
            "no such file; pass a run folder or a .safetensors checkpoint that `train` wrote",
        ),
        _ => Error::io(path, e),
    })?;
    decode(&bytes, path)
}
