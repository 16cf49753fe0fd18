//! `profile`, `bench-kernels` and `bench`: where the GPU time goes, per dispatch (and under
//! each kernel set), and steady-state throughput.
//! Throughput figures come from here, never from a test.
use crate::data;
use crate::gpu::{DeviceChoice, FoldChoice, FoldSet, FoldsBy, Gpu, KernelChoice, KernelSet};
use crate::model::ModelChoice;
use crate::report::profile::{dispatch_rows, DispatchRow};
use crate::train::profile::{profile_steps, timed_steps, ProfileReport};
use crate::train::{tune, TrainConfig, Trainer};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A trainer with fresh weights on the dataset in `data_dir`, the folds settled as `folds`
/// says (timed at start-up where it asks: `train::tune`).
fn trainer(
    gpu: &mut Gpu,
    folds: FoldChoice,
    cfg: &TrainConfig,
    data_dir: &Path,
) -> Result<Trainer> {
    let data = data::load(data_dir, cfg.train_limit)?;
    let model = cfg.build_model(data.features())?;
    tune::settle(gpu, folds, &model, cfg, &data.train.images)?;
    let mut t = Trainer::for_dataset(gpu, model, cfg, &data)?;
    t.init(gpu)?;
    Ok(t)
}

pub struct ProfileOptions {
    pub device: DeviceChoice,
    pub config: TrainConfig,
    pub data_dir: PathBuf,
    pub steps: usize,
    pub warmup: usize,
    pub trace: Option<PathBuf>,
}

/// Warm-up, then `steps` steps with every dispatch timed, then the same number untimed for the
/// wall time.
pub fn profile(o: &ProfileOptions) -> Result<ProfileReport> {
    o.config.validate()?;
    if o.steps == 0 {
        return Err(Error::Config(
            "--steps must be at least 1: the profile times that many steps".into(),
        ));
    }
    let mut gpu = Gpu::new(&o.device)?;
    let mut t = trainer(&mut gpu, o.device.folds, &o.config, &o.data_dir)?;
    profile_steps(&gpu, &mut t, o.steps, o.warmup, o.trace.as_deref())
}

pub struct BenchOptions {
    pub device: DeviceChoice,
    pub models: Vec<ModelChoice>,
    pub batch_size: u32,
    pub epochs: usize,
    pub train_limit: Option<usize>,
    pub data_dir: PathBuf,
    /// Also write the results there, as JSON.
    pub json: Option<PathBuf>,
}

/// Fails now, not after the benchmark, when `path` cannot be a file we write.
fn check_output(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let problem = if path.is_dir() {
        Some("it is a folder".to_string())
    } else if !parent.is_dir() {
        Some(format!("the folder {} does not exist", parent.display()))
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::Config(format!(
            "--json {}: {p}; pass a file path in an existing folder",
            path.display()
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    /// The kernel set that ran (`gpu` or `cpu`).
    pub kernels: String,
    /// The folds that ran, and how they were chosen.
    pub folds: String,
    pub folds_by: FoldsBy,
    /// Layers whose kernel variants the start-up timing set apart from `folds`.
    pub layer_folds: std::collections::BTreeMap<String, FoldSet>,
    /// Training steps per submit (`--steps-per-execution`).
    pub steps_per_execution: usize,
    /// Whether the shaders' loops were bounded (the `naga-loop-bounding` measurement build).
    pub loop_bounding: bool,
    pub batch_size: u32,
    pub train_images: usize,
    pub epochs: usize,
    /// Median over the epochs after the first (training steps only, validation excluded).
    pub seconds_per_epoch: f64,
    pub train_images_per_s: f64,
    pub ms_per_step: f64,
    /// Forward pass and loss over the whole test split.
    pub infer_images_per_s: f64,
    pub gpu_buffer_bytes: u64,
    pub final_val_loss: f64,
    pub epoch_seconds: Vec<f64>,
}

/// Steady-state training throughput (the first epoch excluded) and inference throughput.
pub fn bench(o: &BenchOptions) -> Result<Vec<BenchResult>> {
    if o.epochs < 2 {
        return Err(Error::Config(format!(
            "--epochs {} is too few: bench needs at least 2, the first being warm-up that the \
             figures leave out",
            o.epochs
        )));
    }
    if let Some(path) = &o.json {
        check_output(path)?;
    }
    let mut gpu = Gpu::new(&o.device)?;
    let mut out = Vec::new();
    for model in &o.models {
        let mut cfg = TrainConfig::new(model.clone());
        cfg.batch_size = o.batch_size;
        cfg.epochs = o.epochs;
        cfg.train_limit = o.train_limit;
        cfg.validate()?;
        let mut t = trainer(&mut gpu, o.device.folds, &cfg, &o.data_dir)?;
        let mut epoch_seconds = Vec::new();
        let mut val = f64::NAN;
        for _ in 0..cfg.epochs {
            let m = t.train_epoch(&gpu, &mut |_, _| {})?;
            epoch_seconds.push(m.train_seconds);
            val = m.val_loss;
        }
        let mut steady = epoch_seconds[1..].to_vec();
        steady.sort_by(f64::total_cmp);
        let median = steady[steady.len() / 2];
        let steps = crate::train::batches(t.train.count, cfg.batch_size).len();
        let start = Instant::now();
        t.eval.evaluate(&gpu)?;
        let infer = start.elapsed().as_secs_f64();
        out.push(BenchResult {
            model: model.name().into(),
            adapter: gpu.info.name.clone(),
            backend: format!("{:?}", gpu.info.backend),
            driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info)
                .trim()
                .to_string(),
            kernels: gpu.kernels.name().into(),
            folds: gpu.folds.name(),
            folds_by: gpu.folds_by.clone(),
            layer_folds: gpu.layer_folds.clone(),
            steps_per_execution: t.steps_per_execution(),
            loop_bounding: crate::gpu::LOOP_BOUNDING,
            batch_size: cfg.batch_size,
            train_images: t.train.count,
            epochs: cfg.epochs,
            seconds_per_epoch: median,
            train_images_per_s: t.train.count as f64 / median,
            ms_per_step: median * 1e3 / steps as f64,
            infer_images_per_s: t.eval.split.count as f64 / infer,
            gpu_buffer_bytes: t.gpu_bytes(&gpu),
            final_val_loss: val,
            epoch_seconds,
        });
    }
    if let Some(path) = &o.json {
        let text = serde_json::to_string_pretty(&out).map_err(|e| Error::Config(e.to_string()))?;
        crate::atomic::write_atomic(path, text.as_bytes())?;
    }
    Ok(out)
}

pub struct KernelBenchOptions {
    /// The adapter; its kernel choice says which sets are timed: `auto` both, a set that set
    /// and its variants (the GPU set's kernels take seconds a step on a CPU adapter).
    pub device: DeviceChoice,
    pub config: TrainConfig,
    pub data_dir: PathBuf,
    pub steps: usize,
    pub warmup: usize,
    /// Also write the report there, as JSON.
    pub json: Option<PathBuf>,
}

/// One dispatch of the step (a layer's kernel) under every kernel set.
#[derive(Debug, serde::Serialize)]
pub struct KernelComparison {
    pub layer: String,
    pub kernel: String,
    /// One entry per set of [`KernelBenchReport::sets`]; None where that set runs no such
    /// dispatch (its kernels split or fuse the work differently).
    pub per_set: Vec<Option<DispatchRow>>,
    /// Per set: the earlier set whose launch (entry point, constants, workgroups) this set's
    /// repeats, if any (a variant that leaves this dispatch alone): its time is that code's
    /// again, noise rather than a finding.
    pub same_as: Vec<Option<String>>,
    /// Every set ran the same launch (the CPU set has no kernel of its own for this op or
    /// shape, and no variant changes it).
    pub same_kernel: bool,
    /// The set with the least time per step among those whose launches differ, when every
    /// set runs this dispatch with valid timestamps and not all the same code.
    pub fastest: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct KernelBenchReport {
    pub adapter: String,
    pub driver: String,
    pub model: String,
    pub batch_size: u32,
    pub warmup: usize,
    pub steps: usize,
    /// The kernel sets and the GPU set's variants timed: `gpu`, `gpu+tiles`, …, `cpu`.
    pub sets: Vec<String>,
    /// The GPU set's variants that change no dispatch of this model (not timed).
    pub unchanged: Vec<String>,
    pub rows: Vec<KernelComparison>,
    /// Each set's kernel time per step (the sum of its dispatches'), in ms.
    pub kernel_ms_per_step: Vec<f64>,
}

impl KernelBenchReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "bench-kernels: {} model, batch {}, {} timed steps per kernel set (after {} warm-up) on {}\n",
            self.model, self.batch_size, self.steps, self.warmup, self.adapter
        );
        let width = self
            .rows
            .iter()
            .map(|r| r.layer.len())
            .max()
            .unwrap_or(0)
            .max(5);
        s.push_str(&format!("{:<width$} {:<32}", "layer", "kernel"));
        for set in &self.sets {
            s.push_str(&format!(
                " {:>13} {:>8}",
                format!("{set} µs/step"),
                "GFLOP/s"
            ));
        }
        s.push_str("  fastest\n");
        for r in &self.rows {
            s.push_str(&format!("{:<width$} {:<32}", r.layer, r.kernel));
            for (d, same) in r.per_set.iter().zip(&r.same_as) {
                if let Some(set) = same {
                    s.push_str(&format!(" {:>13} {:>8}", format!("= {set}"), ""));
                    continue;
                }
                match d.as_ref().and_then(|d| d.us_per_step.map(|us| (us, d))) {
                    Some((us, d)) => s.push_str(&format!(" {:>13.1} {:>8.2}", us, d.gflop_per_s)),
                    None if d.is_some() => s.push_str(&format!(" {:>13} {:>8}", "no time", "")),
                    None => s.push_str(&format!(" {:>13} {:>8}", "—", "")),
                }
            }
            let verdict = match (&r.fastest, r.same_kernel) {
                (_, true) => "same kernel",
                (Some(f), _) => f.as_str(),
                (None, _) => "",
            };
            s.push_str(&format!("  {verdict}\n"));
        }
        s.push_str(&format!("{:<w$}", "kernels per step, ms", w = width + 33));
        for ms in &self.kernel_ms_per_step {
            s.push_str(&format!(" {:>13.3} {:>8}", ms, ""));
        }
        s.push('\n');
        if !self.unchanged.is_empty() {
            s.push_str(&format!(
                "not timed (no dispatch of this model changes): {}\n",
                self.unchanged.join(", ")
            ));
        }
        s
    }
}

/// The step's dispatches timed under each kernel set in turn (a fresh device and trainer
/// each, same seed), side by side per layer and kernel: which set's kernel is faster for
/// which layer on this adapter.
pub fn bench_kernels(o: &KernelBenchOptions) -> Result<KernelBenchReport> {
    o.config.validate()?;
    if o.steps == 0 {
        return Err(Error::Config(
            "--steps must be at least 1: bench-kernels times that many steps per kernel set".into(),
        ));
    }
    if let Some(path) = &o.json {
        check_output(path)?;
    }
    let (mut adapter, mut driver) = (String::new(), String::new());
    let mut per_set = Vec::new();
    // Kernel against kernel: unless --folds says otherwise, neither set folds, so each
    // layer's dispatches are the same ones under both (`profile --folds` compares folds).
    let folds = match o.device.folds {
        FoldChoice::Auto => FoldChoice::Set(FoldSet::NONE),
        FoldChoice::Tune => {
            return Err(Error::Config(
                "bench-kernels times kernel sets, not folds, so --folds tune does not apply: \
                 leave --folds out (both sets unfolded) or name the folds"
                    .into(),
            ))
        }
        chosen => chosen,
    };
    let base = match folds {
        FoldChoice::Set(set) => set,
        _ => FoldSet::NONE,
    };
    // The GPU set, each of its variants the folds leave out, then the CPU set, and with each
    // of its own variants the folds leave out.
    let mut configs = vec![("gpu".to_string(), KernelSet::Gpu, base)];
    for v in FoldSet::VARIANTS {
        if let Some(set) = base.with(v) {
            configs.push((format!("gpu+{v}"), KernelSet::Gpu, set));
        }
    }
    configs.push(("cpu".to_string(), KernelSet::Cpu, base));
    for v in FoldSet::CPU_VARIANTS {
        if let Some(set) = base.with(v) {
            configs.push((format!("cpu+{v}"), KernelSet::Cpu, set));
        }
    }
    if let KernelChoice::Set(only) = o.device.kernels {
        configs.retain(|(_, set, _)| *set == only);
    }
    let (mut sets, mut unchanged) = (Vec::new(), Vec::new());
    let (mut gpu_launches, mut cpu_launches) = (None, None);
    for (name, set, set_folds) in configs {
        let choice = FoldChoice::Set(set_folds);
        let device = DeviceChoice {
            kernels: KernelChoice::Set(set),
            folds: choice,
            ..o.device.clone()
        };
        let mut gpu = Gpu::new(&device)?;
        (adapter, driver) = (gpu.name(), gpu.info.driver_info.clone());
        if !gpu.has_timestamps() {
            return Err(Error::Gpu {
                adapter,
                detail: "no timestamp queries, which bench-kernels times each dispatch with; \
                         `bench` measures whole epochs on any adapter"
                    .into(),
            });
        }
        let mut t = trainer(&mut gpu, choice, &o.config, &o.data_dir)?;
        // A variant this model has no kernel for runs its set's very launches.
        let launches = t.launches();
        let base_launches = match name.as_str() {
            n if n.starts_with("gpu+") => gpu_launches.as_ref(),
            n if n.starts_with("cpu+") => cpu_launches.as_ref(),
            _ => None,
        };
        if base_launches == Some(&launches) {
            unchanged.push(name);
            continue;
        }
        match name.as_str() {
            "gpu" => gpu_launches = Some(launches),
            "cpu" => cpu_launches = Some(launches),
            _ => {}
        }
        let timings = timed_steps(&gpu, &mut t, o.steps, o.warmup)?.unwrap_or_default();
        let rows = dispatch_rows(&timings, o.steps);
        if rows.iter().all(|r| r.us_per_step.is_none()) {
            return Err(Error::Gpu {
                adapter,
                detail: format!(
                    "every timestamp of the {name} kernels' steps came back zero or reversed: \
                     the driver's timestamps cannot time dispatches"
                ),
            });
        }
        per_set.push(rows);
        sets.push(name);
    }
    let report = KernelBenchReport {
        adapter,
        driver,
        model: o.config.model.name().into(),
        batch_size: o.config.batch_size,
        warmup: o.warmup,
        steps: o.steps,
        kernel_ms_per_step: per_set
            .iter()
            .map(|rows| rows.iter().filter_map(|r| r.us_per_step).sum::<f64>() / 1e3)
            .collect(),
        rows: side_by_side(&per_set, &sets),
        sets,
        unchanged,
    };
    if let Some(path) = &o.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::Config(e.to_string()))?;
        crate::atomic::write_atomic(path, text.as_bytes())?;
    }
    Ok(report)
}

/// Every (layer, kernel) any set runs, each set's row beside it; a dispatch only a later set
/// runs goes after the one it follows in that set's step.
fn side_by_side(per_set: &[Vec<DispatchRow>], sets: &[String]) -> Vec<KernelComparison> {
    let same = |a: &DispatchRow, b: &DispatchRow| a.layer == b.layer && a.kernel == b.kernel;
    let mut order: Vec<&DispatchRow> = Vec::new();
    for rows in per_set {
        let mut at = 0;
        for r in rows {
            match order.iter().position(|o| same(o, r)) {
                Some(i) => at = i + 1,
                None => {
                    order.insert(at, r);
                    at += 1;
                }
            }
        }
    }
    let same_code = |a: &DispatchRow, b: &DispatchRow| a.source == b.source && a.launch == b.launch;
    order
        .into_iter()
        .map(|r| {
            let found: Vec<Option<DispatchRow>> = per_set
                .iter()
                .map(|set| set.iter().find(|d| same(d, r)).cloned())
                .collect();
            // Each set's row against the earlier sets': the first that ran the same code.
            let same_as: Vec<Option<usize>> = found
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let d = d.as_ref()?;
                    found[..i]
                        .iter()
                        .position(|e| e.as_ref().is_some_and(|e| same_code(e, d)))
                })
                .collect();
            let distinct: Vec<usize> = (0..found.len()).filter(|&i| same_as[i].is_none()).collect();
            let all_present = found.iter().all(Option::is_some);
            let same_kernel = all_present && distinct.len() == 1;
            let fastest = (all_present && !same_kernel)
                .then(|| {
                    distinct
                        .iter()
                        .map(|&i| {
                            found[i]
                                .as_ref()
                                .and_then(|d| d.us_per_step)
                                .map(|us| (i, us))
                        })
                        .collect::<Option<Vec<(usize, f64)>>>()
                })
                .flatten()
                .and_then(|times| {
                    times
                        .into_iter()
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(i, _)| sets[i].clone())
                });
            KernelComparison {
                layer: r.layer.clone(),
                kernel: r.kernel.clone(),
                per_set: found,
                same_as: same_as
                    .into_iter()
                    .map(|s| s.map(|i| sets[i].clone()))
                    .collect(),
                same_kernel,
                fastest,
            }
        })
        .collect()
}
