//! GPU time of every dispatch through timestamp queries: while profiling, each dispatch gets
//! its own compute pass with a timestamp at its start and end (pass-level writes work on every
//! adapter with TIMESTAMP_QUERY; writes inside a pass need an extra feature).
use super::{record_passes, Cost, Dispatch, Gpu, KernelSource, SlotLaunch, Tensor};
use crate::{Error, Result};

/// Queries one query set holds (wgpu's maximum).
const MAX_QUERIES: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// One timed dispatch.
#[derive(Clone, Debug)]
pub struct Timing {
    pub kernel: &'static str,
    pub source: KernelSource,
    /// [`Dispatch::launch`]: its constants and workgroups.
    pub launch: String,
    pub label: String,
    pub cost: Cost,
    /// Start, relative to the first timed dispatch, in nanoseconds.
    pub start_ns: f64,
    /// None where the driver returned a zero or reversed pair (known on some drivers).
    pub ns: Option<f64>,
}

pub struct Profiler {
    query_sets: Vec<wgpu::QuerySet>,
    /// (kernel, source, launch, label, cost) per recorded dispatch, in order.
    recorded: Vec<(&'static str, KernelSource, String, String, Cost)>,
    capacity: usize,
}

impl Profiler {
    /// Room for `dispatches` timed dispatches. Fails, saying so, without timestamp queries.
    pub fn new(gpu: &Gpu, dispatches: usize) -> Result<Self> {
        if !gpu.has_timestamps() {
            return Err(Error::Gpu {
                adapter: gpu.name(),
                detail: "this adapter has no timestamp queries (TIMESTAMP_QUERY)".into(),
            });
        }
        let per_set = (MAX_QUERIES / 2) as usize;
        let sets = dispatches.div_ceil(per_set).max(1);
        let query_sets = (0..sets)
            .map(|_| {
                gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("dispatch timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: MAX_QUERIES,
                })
            })
            .collect();
        Ok(Profiler {
            query_sets,
            recorded: Vec::new(),
            capacity: sets * per_set,
        })
    }

    /// Records `dispatches`, each in its own timed pass. Past the capacity they run untimed.
    pub fn record<'a>(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        dispatches: impl IntoIterator<Item = &'a Dispatch>,
    ) {
        let per_set = (MAX_QUERIES / 2) as usize;
        for d in dispatches {
            let k = self.recorded.len();
            let at = (k < self.capacity)
                .then(|| (&self.query_sets[k / per_set], 2 * (k % per_set) as u32));
            let timed = at.is_some();
            // Its textures' copies run outside the timed pass (inside the step's wall time).
            record_passes(enc, d.kernel, at, &[SlotLaunch::of(d)]);
            if timed {
                self.recorded.push((
                    d.kernel,
                    d.source,
                    d.launch.clone(),
                    d.label.clone(),
                    d.cost,
                ));
            }
        }
    }

    /// Resolves and reads every timestamp (waits for the queue).
    pub fn finish(self, gpu: &Gpu) -> Result<Vec<Timing>> {
        let n = self.recorded.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let per_set = (MAX_QUERIES / 2) as usize;
        let size = (self.query_sets.len() * MAX_QUERIES as usize * 8) as u64;
        let ticks = resolve_ticks(gpu, size, |enc, resolve| {
            for (s, qs) in self.query_sets.iter().enumerate() {
                let used = (n - (s * per_set).min(n)).min(per_set) as u32;
                if used > 0 {
                    let at = (s as u64) * MAX_QUERIES as u64 * 8;
                    enc.resolve_query_set(qs, 0..2 * used, resolve, at);
                }
            }
        })?;
        let period = gpu.queue.get_timestamp_period() as f64;
        let stamp = |k: usize| {
            let base = (k / per_set) * MAX_QUERIES as usize + 2 * (k % per_set);
            (ticks[base], ticks[base + 1])
        };
        let first = (0..n)
            .map(|k| stamp(k).0)
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0);
        Ok(self
            .recorded
            .into_iter()
            .enumerate()
            .map(|(k, (kernel, source, launch, label, cost))| {
                let (a, b) = stamp(k);
                let valid = a > 0 && b > a;
                Timing {
                    kernel,
                    source,
                    launch,
                    label,
                    cost,
                    start_ns: a.saturating_sub(first) as f64 * period,
                    ns: valid.then(|| (b - a) as f64 * period),
                }
            })
            .collect())
    }
}

/// Whole steps timed on the GPU: each step's dispatches in one compute pass with a timestamp
/// at its start and end, so a span holds the barriers between dispatches too (what folding
/// saves), not the host's work between submits.
pub struct SpanTimer {
    query_set: wgpu::QuerySet,
    used: u32,
}

impl SpanTimer {
    /// Room for `spans` spans (at most half a query set). Fails, saying so, without
    /// timestamp queries.
    pub fn new(gpu: &Gpu, spans: usize) -> Result<Self> {
        let wanted = 2 * spans as u64;
        if !gpu.has_timestamps() || wanted > MAX_QUERIES as u64 {
            return Err(Error::Gpu {
                adapter: gpu.name(),
                detail: format!(
                    "cannot time {spans} spans: timestamp queries: {}, at most {} spans",
                    gpu.has_timestamps(),
                    MAX_QUERIES / 2
                ),
            });
        }
        Ok(SpanTimer {
            query_set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("span timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: wanted.max(2) as u32,
            }),
            used: 0,
        })
    }

    /// Records `dispatches` as one timed pass (untimed once the timer is full).
    pub fn record<'a>(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        dispatches: impl IntoIterator<Item = &'a Dispatch>,
    ) {
        let room = self.used + 2 <= self.query_set.count();
        let launches: Vec<SlotLaunch<'_>> = dispatches.into_iter().map(SlotLaunch::of).collect();
        let at = room.then_some((&self.query_set, self.used));
        record_passes(enc, "timed span", at, &launches);
        if room {
            self.used += 2;
        }
    }

    /// Every recorded span in nanoseconds, in order (waits for the queue); None where the
    /// driver returned a zero or reversed pair.
    pub fn finish(self, gpu: &Gpu) -> Result<Vec<Option<f64>>> {
        if self.used == 0 {
            return Ok(Vec::new());
        }
        let ticks = resolve_ticks(gpu, self.used as u64 * 8, |enc, resolve| {
            enc.resolve_query_set(&self.query_set, 0..self.used, resolve, 0)
        })?;
        let period = gpu.queue.get_timestamp_period() as f64;
        Ok(ticks
            .chunks(2)
            .map(|pair| match pair {
                [a, b] if *a > 0 && b > a => Some((b - a) as f64 * period),
                _ => None,
            })
            .collect())
    }
}

/// Timestamps as ticks: `resolve` writes them into a buffer of `size` bytes, read back.
fn resolve_ticks(
    gpu: &Gpu,
    size: u64,
    resolve: impl FnOnce(&mut wgpu::CommandEncoder, &wgpu::Buffer),
) -> Result<Vec<u64>> {
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps"),
        size,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("resolve timestamps"),
        });
    resolve(&mut enc, &buffer);
    gpu.queue.submit([enc.finish()]);
    Ok(gpu
        .read(&Tensor::whole(buffer))?
        .chunks(2)
        .map(pair_u64)
        .collect())
}

fn pair_u64(w: &[u32]) -> u64 {
    match w {
        [lo, hi] => (*hi as u64) << 32 | *lo as u64,
        _ => 0,
    }
}
