//! The profile table (kernel, calls, total, mean, share, achieved GB/s and GFLOP/s from each
//! kernel's napkin count of bytes and flops) and a Chrome-trace JSON that Perfetto opens.
use crate::gpu::timing::Timing;
use crate::gpu::KernelSource;
use crate::{atomic, Error, Result};
use std::path::Path;

#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelRow {
    pub kernel: String,
    pub calls: usize,
    pub total_ms: f64,
    pub mean_us: f64,
    pub share: f64,
    pub gb_per_s: f64,
    pub gflop_per_s: f64,
    /// Calls whose timestamps were zero or reversed (not counted in the times).
    pub invalid: usize,
}

/// Rows by kernel, largest total first.
pub fn kernel_rows(timings: &[Timing]) -> Vec<KernelRow> {
    let mut rows: Vec<KernelRow> = Vec::new();
    let mut bytes: Vec<(f64, f64)> = Vec::new();
    for t in timings {
        let i = match rows.iter().position(|r| r.kernel == t.kernel) {
            Some(i) => i,
            None => {
                rows.push(KernelRow {
                    kernel: t.kernel.to_string(),
                    calls: 0,
                    total_ms: 0.0,
                    mean_us: 0.0,
                    share: 0.0,
                    gb_per_s: 0.0,
                    gflop_per_s: 0.0,
                    invalid: 0,
                });
                bytes.push((0.0, 0.0));
                rows.len() - 1
            }
        };
        rows[i].calls += 1;
        match t.ns {
            Some(ns) => {
                rows[i].total_ms += ns / 1e6;
                bytes[i].0 += t.cost.bytes as f64;
                bytes[i].1 += t.cost.flops as f64;
            }
            None => rows[i].invalid += 1,
        }
    }
    let total: f64 = rows.iter().map(|r| r.total_ms).sum();
    for (r, (b, f)) in rows.iter_mut().zip(bytes) {
        let valid = (r.calls - r.invalid).max(1) as f64;
        r.mean_us = r.total_ms * 1e3 / valid;
        r.share = if total > 0.0 { r.total_ms / total } else { 0.0 };
        let s = r.total_ms / 1e3;
        if s > 0.0 {
            r.gb_per_s = b / s / 1e9;
            r.gflop_per_s = f / s / 1e9;
        }
    }
    rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    rows
}

/// The table as text; `steps` normalises the per-step sum.
pub fn table(rows: &[KernelRow], steps: usize) -> String {
    let mut s = format!(
        "{:<28} {:>6} {:>10} {:>10} {:>7} {:>8} {:>9}\n",
        "kernel", "calls", "total ms", "mean µs", "share", "GB/s", "GFLOP/s"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<28} {:>6} {:>10.3} {:>10.1} {:>6.1}% {:>8.2} {:>9.2}{}\n",
            r.kernel,
            r.calls,
            r.total_ms,
            r.mean_us,
            100.0 * r.share,
            r.gb_per_s,
            r.gflop_per_s,
            if r.invalid > 0 {
                format!("  ({} calls had invalid timestamps)", r.invalid)
            } else {
                String::new()
            }
        ));
    }
    let total: f64 = rows.iter().map(|r| r.total_ms).sum();
    s.push_str(&format!(
        "{:<28} {:>6} {:>10.3}   = {:.3} ms per step\n",
        "sum",
        rows.iter().map(|r| r.calls).sum::<usize>(),
        total,
        total / steps.max(1) as f64
    ));
    s
}

/// Chrome trace events ("X" complete events, microseconds), one per timed dispatch.
pub fn write_trace(path: &Path, timings: &[Timing]) -> Result<()> {
    let events: Vec<serde_json::Value> = timings
        .iter()
        .filter_map(|t| {
            let ns = t.ns?;
            Some(serde_json::json!({
                "name": t.kernel,
                "cat": "gpu",
                "ph": "X",
                "ts": t.start_ns / 1e3,
                "dur": ns / 1e3,
                "pid": 1,
                "tid": 1,
                "args": { "layer": t.label, "bytes": t.cost.bytes, "flops": t.cost.flops },
            }))
        })
        .collect();
    let doc = serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" });
    let text = serde_json::to_string(&doc).map_err(|e| Error::Config(e.to_string()))?;
    atomic::write_atomic(path, text.as_bytes())
}

/// One dispatch of a step (a layer's kernel) over the timed steps.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DispatchRow {
    /// The layer (or "loss", "adam", …) the dispatch belongs to.
    pub layer: String,
    pub kernel: String,
    /// The shader file and entry point that ran.
    pub source: KernelSource,
    /// Calls per step.
    pub calls_per_step: f64,
    /// Its GPU time per step (the mean valid call times the calls per step), in µs; None when
    /// no call had valid timestamps.
    pub us_per_step: Option<f64>,
    pub gb_per_s: f64,
    pub gflop_per_s: f64,
    /// Calls whose timestamps were zero or reversed (not counted in the times).
    pub invalid: usize,
}

/// Rows by (layer, kernel), in the order the step first runs them, over `steps` steps.
pub fn dispatch_rows(timings: &[Timing], steps: usize) -> Vec<DispatchRow> {
    let mut rows: Vec<DispatchRow> = Vec::new();
    // Per row: calls, valid calls, their ns, bytes and flops.
    let mut sums: Vec<(usize, usize, f64, f64, f64)> = Vec::new();
    for t in timings {
        let i = match rows
            .iter()
            .position(|r| r.kernel == t.kernel && r.layer == t.label)
        {
            Some(i) => i,
            None => {
                rows.push(DispatchRow {
                    layer: t.label.clone(),
                    kernel: t.kernel.to_string(),
                    source: t.source,
                    calls_per_step: 0.0,
                    us_per_step: None,
                    gb_per_s: 0.0,
                    gflop_per_s: 0.0,
                    invalid: 0,
                });
                sums.push((0, 0, 0.0, 0.0, 0.0));
                rows.len() - 1
            }
        };
        let s = &mut sums[i];
        s.0 += 1;
        if let Some(ns) = t.ns {
            s.1 += 1;
            s.2 += ns;
            s.3 += t.cost.bytes as f64;
            s.4 += t.cost.flops as f64;
        }
    }
    for (r, (calls, valid, ns, bytes, flops)) in rows.iter_mut().zip(sums) {
        r.calls_per_step = calls as f64 / steps.max(1) as f64;
        r.invalid = calls - valid;
        if valid > 0 {
            r.us_per_step = Some(ns / 1e3 / valid as f64 * r.calls_per_step);
            r.gb_per_s = bytes / ns;
            r.gflop_per_s = flops / ns;
        }
    }
    rows
}
