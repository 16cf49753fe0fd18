//! The commands besides `train`, as library calls: `eval`, `encode`, `decode` (from a codes
//! file, between two test images, or sampled), `devices`. The binary parses flags, calls these
//! and prints what they return.
pub mod bench;
mod generate;

pub use generate::{decode_from, interpolate, parse_index_pair, sample, DecodeFrom, MAX_SAMPLES};

use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, Dataset};
use crate::gpu::{describe_adapter, list_adapters, DeviceChoice, FoldChoice, Gpu};
use crate::infer::Inference;
use crate::model::ModelKind;
use crate::network::{DeviceSplit, Network, Purpose};
use crate::run::checkpoint_path;
use crate::train::Evaluator;
use crate::{atomic, report, Error, Result};
use npyz::WriterBuilder;
use std::io::Cursor;
use std::path::Path;

/// The checkpoint `--checkpoint` names (a run folder or a file).
fn load_checkpoint(ckpt: &Path) -> Result<Checkpoint> {
    checkpoint::load(&checkpoint_path(ckpt))
}

/// The device of a command that trains nothing: `--folds tune` has no step to time there.
fn open_for_inference(device: &DeviceChoice) -> Result<Gpu> {
    if device.folds == FoldChoice::Tune {
        return Err(Error::Config(
            "--folds tune picks folds by timing training steps, and this command trains \
             nothing: leave --folds out, or name the folds"
                .into(),
        ));
    }
    Gpu::new(device)
}

/// A checkpoint's model and weights, ready for inference.
fn inference(gpu: &Gpu, ck: &Checkpoint) -> Result<Inference> {
    let model = ck.model()?;
    Inference::new(gpu, model, &ck.state.params)
}

/// The dataset in `data_dir`, refused unless its images have the checkpoint's shape.
fn data_for(ck: &Checkpoint, ckpt: &Path, data_dir: &Path) -> Result<Dataset> {
    let data = data::load(data_dir, None)?;
    let input = data.features();
    if input != ck.input {
        return Err(Error::Checkpoint {
            path: checkpoint_path(ckpt),
            detail: format!(
                "it expects {}x{} images; {} holds {}x{}",
                ck.input.h,
                ck.input.w,
                data_dir.display(),
                input.h,
                input.w
            ),
        });
    }
    Ok(data)
}

pub struct EvalReport {
    pub model: String,
    pub epoch: usize,
    pub val_loss: f64,
    pub adapter: String,
}

/// Mean BCE of a checkpoint over the test split.
pub fn eval(adapter: &DeviceChoice, ckpt: &Path, data_dir: &Path) -> Result<EvalReport> {
    let ck = load_checkpoint(ckpt)?;
    let data = data_for(&ck, ckpt, data_dir)?;
    let gpu = open_for_inference(adapter)?;
    let model = ck.model()?;
    let test = &data.test.images;
    let batch = ck.config.batch_size.min(test.count.max(1) as u32).max(1);
    let net = Network::new(&gpu, model, batch, Purpose::Inference)?;
    gpu.write(&net.params, &ck.state.params);
    let split = DeviceSplit::upload(&gpu, "test images", &test.pixels, test.count)?;
    let evaluator = Evaluator::new(&gpu, &net, split, batch, 0.0, ck.config.seed)?;
    let val_loss = evaluator.evaluate(&gpu)?;
    if !val_loss.is_finite() {
        return Err(Error::Checkpoint {
            path: checkpoint_path(ckpt),
            detail: format!(
                "its weights give a validation loss of {val_loss}: they diverged. Evaluate an \
                 earlier checkpoint (best.safetensors keeps the lowest val_loss)"
            ),
        });
    }
    Ok(EvalReport {
        model: ck.config.model.name().into(),
        epoch: ck.state.epoch,
        val_loss,
        adapter: gpu.name(),
    })
}

fn npy<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T]) -> Result<Vec<u8>> {
    let mut cur = Cursor::new(Vec::new());
    let io = |e: std::io::Error| Error::Config(format!("writing .npy: {e}"));
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut cur)
        .begin_nd()
        .map_err(io)?;
    w.extend(data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(cur.into_inner())
}

/// Where `encode` puts the labels beside `codes.npy`: `codes.labels.npy`.
pub fn labels_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("labels.npy")
}

/// The codes of a split (`[count, h, w, c]` f32, channels-last as the model holds them) and
/// its labels (`[count]` u8), as .npy files.
pub fn encode(
    adapter: &DeviceChoice,
    ckpt: &Path,
    data_dir: &Path,
    train_split: bool,
    out: &Path,
) -> Result<(usize, [u32; 3])> {
    let ck = load_checkpoint(ckpt)?;
    let data = data_for(&ck, ckpt, data_dir)?;
    let gpu = open_for_inference(adapter)?;
    let inference = inference(&gpu, &ck)?;
    let split = if train_split { &data.train } else { &data.test };
    let codes = inference.encode(&gpu, &split.images.values(0..split.images.count))?;
    let c = inference.net.model.code();
    let count = split.images.count;
    atomic::write_atomic(
        out,
        &npy(&[count as u64, c.h as u64, c.w as u64, c.c as u64], &codes)?,
    )?;
    atomic::write_atomic(&labels_path(out), &npy(&[count as u64], &split.labels)?)?;
    Ok((count, [c.h, c.w, c.c]))
}

/// The decoder as a generator: codes from a .npy file (as `encode` writes them) to a grid of
/// digits.
pub fn decode(
    adapter: &DeviceChoice,
    ckpt: &Path,
    codes: &Path,
    out: &Path,
    count: usize,
) -> Result<usize> {
    let ck = load_checkpoint(ckpt)?;
    let gpu = open_for_inference(adapter)?;
    let inference = inference(&gpu, &ck)?;
    let bad = |d: String| Error::Data {
        path: codes.to_path_buf(),
        detail: d,
    };
    let file = std::fs::File::open(codes).map_err(|e| Error::io(codes, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let fortran = npy.order() == npyz::Order::Fortran;
    let mut values: Vec<f32> = npy
        .into_vec()
        .map_err(|e| bad(format!("expected f32 codes: {e}")))?;
    if fortran {
        values = c_order(&values, &shape);
    }
    let model = &inference.net.model;
    let code_len = model.code().len() as usize;
    let per: u64 = shape.iter().skip(1).product();
    if shape.is_empty() || per != code_len as u64 || !values.len().is_multiple_of(code_len) {
        return Err(bad(format!(
            "shape {shape:?} does not hold codes of {code_len} values ({}x{}x{} for the {} \
             model); pass --codes with a .npy that `encode` wrote with a checkpoint of this model",
            model.code().h,
            model.code().w,
            model.code().c,
            model.name
        )));
    }
    let n = (values.len() / code_len).min(count.max(1));
    let images = inference.decode(&gpu, &values[..n * code_len])?;
    let (h, w) = (ck.input.h as usize, ck.input.w as usize);
    report::grid_png(out, &images, n, h, w, 10)?;
    Ok(n)
}

/// The elements of a column-major (Fortran-order) array of `shape` in row-major order.
fn c_order(values: &[f32], shape: &[u64]) -> Vec<f32> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let mut out = vec![0.0; values.len()];
    let mut index = vec![0usize; dims.len()];
    for v in out.iter_mut() {
        // `index` walks row-major; its column-major offset has the first axis fastest.
        let (mut offset, mut stride) = (0, 1);
        for (i, d) in index.iter().zip(&dims) {
            offset += i * stride;
            stride *= d;
        }
        *v = values[offset];
        for (i, d) in index.iter_mut().zip(&dims).rev() {
            *i += 1;
            if *i < *d {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// Writes built-in `model` as the Keras `to_json()` text that builds it. An existing file is
/// never replaced.
pub fn export(model: ModelKind, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(Error::Config(format!(
            "--out {}: the file exists; choose a new path or remove it first",
            out.display()
        )));
    }
    atomic::write_atomic(out, model.keras_json().as_bytes())
}

/// Every adapter with its type, backend, driver, and the limits and features we use.
pub fn devices() -> String {
    let all = list_adapters();
    if all.is_empty() {
        return "no adapters: install a Vulkan, Metal or DX12 driver (on Linux, Mesa's lavapipe: \
                apt-get install mesa-vulkan-drivers)\n"
            .into();
    }
    let mut s = String::new();
    for (i, a) in all.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        let f = a.features();
        s.push_str(&format!("[{i}] {}\n", describe_adapter(&info)));
        s.push_str(&format!(
            "    max_storage_buffer_binding_size {} MiB, max_uniform_buffer_binding_size {} KiB, \
             uniform buffers per stage {}, max_buffer_size {} MiB, storage buffers per stage {}, \
             workgroup invocations {}, workgroups per dimension {}\n",
            l.max_storage_buffer_binding_size / (1 << 20),
            l.max_uniform_buffer_binding_size / (1 << 10),
            l.max_uniform_buffers_per_shader_stage,
            l.max_buffer_size / (1 << 20),
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        ));
        s.push_str(&format!(
            "    timestamp queries: {}, inside passes: {}\n",
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES))
        ));
        s.push_str(&format!("    subgroups: {}\n", subgroups(&info, f)));
    }
    s
}

/// The subgroup widths an adapter offers (the CPU set's `lanes` needs one width).
fn subgroups(info: &wgpu::AdapterInfo, f: wgpu::Features) -> String {
    let (min, max) = (info.subgroup_min_size, info.subgroup_max_size);
    match (f.contains(wgpu::Features::SUBGROUP), min == max) {
        (false, _) => "no".into(),
        (true, true) => format!("{min} invocations"),
        (true, false) => format!("{min} to {max} invocations"),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
