//! `profile` and `bench`: where the GPU time goes, per dispatch, and steady-state throughput.
//! Throughput figures come from here, never from a test.
use crate::gpu::timing::Profiler;
use crate::gpu::{AdapterChoice, Gpu};
use crate::model::{Model, ModelKind};
use crate::report::profile::{self, KernelRow};
use crate::train::run::{features, load_data};
use crate::train::{DeviceSplit, TrainConfig, Trainer};
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn trainer(gpu: &Gpu, cfg: &TrainConfig, data_dir: &Path) -> Result<Trainer> {
    let data = load_data(data_dir, cfg.train_limit)?;
    let model = Model::new(cfg.model, features(&data))?;
    let train = DeviceSplit::upload(
        gpu,
        "training images",
        &data.train.images.pixels,
        data.train.images.count,
    )?;
    let test = DeviceSplit::upload(
        gpu,
        "test images",
        &data.test.images.pixels,
        data.test.images.count,
    )?;
    let mut t = Trainer::new(gpu, model, cfg, train, test)?;
    t.init(gpu);
    Ok(t)
}

pub struct ProfileOptions {
    pub adapter: AdapterChoice,
    pub config: TrainConfig,
    pub data_dir: PathBuf,
    pub steps: usize,
    pub warmup: usize,
    pub trace: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct ProfileReport {
    pub adapter: String,
    pub model: String,
    pub batch_size: u32,
    pub steps: usize,
    /// None when the adapter has no timestamp queries.
    pub rows: Option<Vec<KernelRow>>,
    pub kernel_ms_per_step: Option<f64>,
    /// Host-timed steps, submitted as in training (one submit per step, no per-dispatch passes).
    pub wall_ms_per_step: f64,
}

impl ProfileReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "profile: {} model, batch {}, {} steps on {}\n",
            self.model, self.batch_size, self.steps, self.adapter
        );
        match (&self.rows, self.kernel_ms_per_step) {
            (Some(rows), Some(k)) => {
                s.push_str(&profile::table(rows, self.steps));
                s.push_str(&format!(
                    "step wall time {:.3} ms (unprofiled); kernels {:.3} ms; host, dispatch and barrier overhead {:.3} ms ({:.0}%)\n",
                    self.wall_ms_per_step,
                    k,
                    self.wall_ms_per_step - k,
                    100.0 * (self.wall_ms_per_step - k) / self.wall_ms_per_step.max(1e-9)
                ));
            }
            _ => s.push_str(&format!(
                "this adapter has no timestamp queries: host timing of whole steps only\nstep wall time {:.3} ms\n",
                self.wall_ms_per_step
            )),
        }
        s
    }
}

/// Warm-up, then `steps` steps with every dispatch timed, then the same number untimed for the
/// wall time.
pub fn profile(o: &ProfileOptions) -> Result<ProfileReport> {
    o.config.validate()?;
    let gpu = Gpu::new(&o.adapter)?;
    let mut t = trainer(&gpu, &o.config, &o.data_dir)?;
    profile_trainer(&gpu, &mut t, o.steps, o.warmup, o.trace.as_deref())
}

/// [`profile`] on a trainer as it stands (its weights move: `train --profile` runs this after
/// the run's last checkpoint).
pub fn profile_trainer(
    gpu: &Gpu,
    t: &mut Trainer,
    steps: usize,
    warmup: usize,
    trace: Option<&Path>,
) -> Result<ProfileReport> {
    let steps = steps.max(1);
    t.run_steps(gpu, warmup, None)?;
    let (rows, kernel_ms) = if gpu.has_timestamps() {
        let mut prof = Profiler::new(gpu, steps * t.step_len())?;
        t.run_steps(gpu, steps, Some(&mut prof))?;
        let timings = prof.finish(gpu)?;
        if let Some(path) = trace {
            profile::write_trace(path, &timings)?;
        }
        let rows = profile::kernel_rows(&timings);
        let total: f64 = rows.iter().map(|r| r.total_ms).sum();
        (Some(rows), Some(total / steps as f64))
    } else {
        (None, None)
    };
    let start = Instant::now();
    t.run_steps(gpu, steps, None)?;
    let wall = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
    Ok(ProfileReport {
        adapter: gpu.name(),
        model: t.cfg.model.name().into(),
        batch_size: t.cfg.batch_size,
        steps,
        rows,
        kernel_ms_per_step: kernel_ms,
        wall_ms_per_step: wall,
    })
}

pub struct BenchOptions {
    pub adapter: AdapterChoice,
    pub models: Vec<ModelKind>,
    pub batch_size: u32,
    pub epochs: usize,
    pub train_limit: Option<usize>,
    pub data_dir: PathBuf,
}

#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub adapter: String,
    pub backend: String,
    pub driver: String,
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
    let gpu = Gpu::new(&o.adapter)?;
    let mut out = Vec::new();
    for &model in &o.models {
        let mut cfg = TrainConfig::new(model);
        cfg.batch_size = o.batch_size;
        cfg.epochs = o.epochs.max(2);
        cfg.train_limit = o.train_limit;
        cfg.validate()?;
        let mut t = trainer(&gpu, &cfg, &o.data_dir)?;
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
        t.evaluate(&gpu)?;
        let infer = start.elapsed().as_secs_f64();
        out.push(BenchResult {
            model: model.name().into(),
            adapter: gpu.info.name.clone(),
            backend: format!("{:?}", gpu.info.backend),
            driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info)
                .trim()
                .to_string(),
            batch_size: cfg.batch_size,
            train_images: t.train.count,
            epochs: cfg.epochs,
            seconds_per_epoch: median,
            train_images_per_s: t.train.count as f64 / median,
            ms_per_step: median * 1e3 / steps as f64,
            infer_images_per_s: t.test.count as f64 / infer,
            gpu_buffer_bytes: t.gpu_bytes(),
            final_val_loss: val,
            epoch_seconds,
        });
    }
    Ok(out)
}
