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

/// Timings that share a key: the first of them (its names) and their sums.
struct Group<'a> {
    first: &'a Timing,
    calls: usize,
    /// Calls with valid timestamps, and their time, bytes and flops.
    valid: usize,
    ns: f64,
    bytes: f64,
    flops: f64,
}

/// `timings` grouped by `key`, in the order each key first appears.
fn grouped<'a, K: PartialEq>(timings: &'a [Timing], key: impl Fn(&Timing) -> K) -> Vec<Group<'a>> {
    let mut groups: Vec<(K, Group<'a>)> = Vec::new();
    for t in timings {
        let k = key(t);
        let i = match groups.iter().position(|(g, _)| *g == k) {
            Some(i) => i,
            None => {
                let group = Group {
                    first: t,
                    calls: 0,
                    valid: 0,
                    ns: 0.0,
                    bytes: 0.0,
                    flops: 0.0,
                };
                groups.push((k, group));
                groups.len() - 1
            }
        };
        let g = &mut groups[i].1;
        g.calls += 1;
        if let Some(ns) = t.ns {
            g.valid += 1;
            g.ns += ns;
            g.bytes += t.cost.bytes as f64;
            g.flops += t.cost.flops as f64;
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Rows by kernel, largest total first.
pub fn kernel_rows(timings: &[Timing]) -> Vec<KernelRow> {
    let groups = grouped(timings, |t| t.kernel);
    let total: f64 = groups.iter().map(|g| g.ns / 1e6).sum();
    let mut rows: Vec<KernelRow> = groups
        .into_iter()
        .map(|g| {
            let total_ms = g.ns / 1e6;
            KernelRow {
                kernel: g.first.kernel.to_string(),
                calls: g.calls,
                total_ms,
                mean_us: total_ms * 1e3 / g.valid.max(1) as f64,
                share: if total > 0.0 { total_ms / total } else { 0.0 },
                gb_per_s: if g.ns > 0.0 { g.bytes / g.ns } else { 0.0 },
                gflop_per_s: if g.ns > 0.0 { g.flops / g.ns } else { 0.0 },
                invalid: g.calls - g.valid,
            }
        })
        .collect();
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
    /// Its override constants and workgroups (`gpu::Dispatch::launch`).
    pub launch: String,
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
    grouped(timings, |t| (t.kernel, t.label.clone()))
        .into_iter()
        .map(|g| {
            let calls_per_step = g.calls as f64 / steps.max(1) as f64;
            let valid = g.valid > 0;
            DispatchRow {
                layer: g.first.label.clone(),
                kernel: g.first.kernel.to_string(),
                source: g.first.source,
                launch: g.first.launch.clone(),
                calls_per_step,
                us_per_step: valid.then(|| g.ns / 1e3 / g.valid as f64 * calls_per_step),
                gb_per_s: if valid { g.bytes / g.ns } else { 0.0 },
                gflop_per_s: if valid { g.flops / g.ns } else { 0.0 },
                invalid: g.calls - g.valid,
            }
        })
        .collect()
}
