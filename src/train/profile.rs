//! Where a training step's GPU time goes: every dispatch timed through timestamp queries,
//! summed per kernel, against the step's unprofiled wall time.
use super::Trainer;
use crate::gpu::timing::{Profiler, Timing};
use crate::gpu::{FoldsBy, Gpu};
use crate::report::profile::{self, KernelRow};
use crate::Result;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, serde::Serialize)]
pub struct ProfileReport {
    pub adapter: String,
    /// The kernel set that ran (`gpu` or `cpu`).
    pub kernels: String,
    /// The work folded into fewer dispatches (`gpu::FoldSet`), and how it was chosen.
    pub folds: String,
    pub folds_by: FoldsBy,
    pub model: String,
    pub batch_size: u32,
    pub steps: usize,
    /// None when the adapter has no timestamp queries.
    pub rows: Option<Vec<KernelRow>>,
    pub kernel_ms_per_step: Option<f64>,
    /// Host-timed steps, submitted as in training ([`Self::steps_per_execution`] per submit,
    /// no per-dispatch passes).
    pub wall_ms_per_step: f64,
    /// Steps per submit of the untimed steps (the timed ones go one per submit).
    pub steps_per_execution: usize,
    /// Whether the shaders' loops were bounded (the `naga-loop-bounding` measurement build).
    pub loop_bounding: bool,
    /// Every GPU buffer the trainer holds, the resident dataset included.
    pub gpu_buffer_bytes: u64,
    /// Dispatches in one training step, profiled alone.
    pub dispatches_per_step: usize,
    /// Of those, the ones training runs once per execution rather than per step.
    pub shared_per_execution: usize,
}

impl ProfileReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "profile: {} model, batch {}, {} steps on {}, {} kernels, folds: {} ({})\n\
             {} dispatches per step{}; GPU buffers {:.1} MiB (dataset resident); untimed steps {} per submit{}\n",
            self.model,
            self.batch_size,
            self.steps,
            self.adapter,
            self.kernels,
            self.folds,
            self.folds_by.describe(),
            self.dispatches_per_step,
            match self.shared_per_execution {
                0 => String::new(),
                k => format!(" ({k} of them once per execution in training)"),
            },
            self.gpu_buffer_bytes as f64 / (1 << 20) as f64,
            self.steps_per_execution,
            match self.loop_bounding {
                true => "; loops bounded (naga-loop-bounding build)",
                false => "",
            }
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

/// Warm-up, then `steps` steps with every dispatch timed; None (after the warm-up) when the
/// adapter has no timestamp queries.
pub fn timed_steps(
    gpu: &Gpu,
    t: &mut Trainer,
    steps: usize,
    warmup: usize,
) -> Result<Option<Vec<Timing>>> {
    t.run_steps(gpu, warmup, None)?;
    if !gpu.has_timestamps() {
        return Ok(None);
    }
    let mut prof = Profiler::new(gpu, steps * t.step_len())?;
    t.run_steps(gpu, steps, Some(&mut prof))?;
    Ok(Some(prof.finish(gpu)?))
}

/// Warm-up, then `steps` steps with every dispatch timed, then the same number untimed for the
/// wall time, on a trainer as it stands (its weights move: `train --profile` runs this after
/// the run's last checkpoint).
pub fn profile_steps(
    gpu: &Gpu,
    t: &mut Trainer,
    steps: usize,
    warmup: usize,
    trace: Option<&Path>,
) -> Result<ProfileReport> {
    let (rows, kernel_ms) = match timed_steps(gpu, t, steps, warmup)? {
        Some(timings) => {
            if let Some(path) = trace {
                profile::write_trace(path, &timings)?;
            }
            let rows = profile::kernel_rows(&timings);
            let total: f64 = rows.iter().map(|r| r.total_ms).sum();
            (Some(rows), Some(total / steps as f64))
        }
        None => (None, None),
    };
    let start = Instant::now();
    t.run_steps(gpu, steps, None)?;
    let wall = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
    Ok(ProfileReport {
        adapter: gpu.name(),
        kernels: gpu.kernels.name().into(),
        folds: gpu.folds.name(),
        folds_by: gpu.folds_by.clone(),
        model: t.cfg.model.name().into(),
        batch_size: t.cfg.batch_size,
        steps,
        rows,
        kernel_ms_per_step: kernel_ms,
        wall_ms_per_step: wall,
        steps_per_execution: t.steps_per_execution(),
        loop_bounding: crate::gpu::LOOP_BOUNDING,
        gpu_buffer_bytes: t.gpu_bytes(gpu),
        dispatches_per_step: t.step_len(),
        shared_per_execution: t.shared_step_len(),
    })
}
