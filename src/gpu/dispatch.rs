//! A recorded kernel launch and the helpers that size and submit them.
use super::Gpu;
use crate::{Error, Result};

/// Invocations per workgroup of the flat (one element per invocation) kernels: `WG` in
/// `shaders/common.wgsl` (`tests/shaders.rs` checks that they agree).
pub const WORKGROUP: u64 = 256;

/// Napkin-math cost of one dispatch: the bytes it must move at least, and its flops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub bytes: u64,
    pub flops: u64,
}

/// The code a dispatch runs: a shader file and its entry point. Two dispatches with the same
/// source and shape run the same pipeline, whichever kernel set launched them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelSource {
    /// The file under `shaders/`, without `.wgsl` (e.g. `cpu/conv2d`).
    pub shader: &'static str,
    pub entry: &'static str,
}

/// One recorded kernel launch, ready to go into a compute pass.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// `file.entry`, e.g. `conv2d.forward`: the profile's row.
    pub kernel: &'static str,
    pub source: KernelSource,
    /// Where in the model it runs, e.g. `conv2d_1`.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    /// The dispatch's parameters; a few (Adam's alpha, the batch offset) change per step.
    pub uniform: wgpu::Buffer,
    pub workgroups: [u32; 3],
    pub cost: Cost,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// Rewrites the uniform (queued: it takes effect before the next submit).
    pub fn set_params<T: bytemuck::Pod>(&self, gpu: &Gpu, params: &T) {
        gpu.queue
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
    }
}

/// Records `dispatches` into one compute pass of `encoder`.
pub fn record_all<'a>(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("step"),
        timestamp_writes: None,
    });
    for d in dispatches {
        d.record(&mut pass);
    }
}

/// Runs dispatches in one submit and waits: for tests and one-off work, not the training loop.
pub fn run(gpu: &Gpu, dispatches: &[Dispatch]) -> Result<()> {
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
    record_all(&mut enc, dispatches);
    gpu.queue.submit([enc.finish()]);
    gpu.wait()
}

impl Gpu {
    /// Workgroups for `threads` invocations of [`WORKGROUP`], folded into y past the
    /// per-dimension limit.
    pub fn grid(&self, what: &str, threads: u64) -> Result<[u32; 3]> {
        self.groups(what, threads.div_ceil(WORKGROUP))
    }

    /// As [`Gpu::grid`] for kernels with workgroups of `size`.
    pub fn grid_of(&self, what: &str, threads: u64, size: u64) -> Result<[u32; 3]> {
        self.groups(what, threads.div_ceil(size))
    }

    /// `count` workgroups, folded into x and y.
    pub fn groups(&self, what: &str, count: u64) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        let x = count.clamp(1, max);
        let y = count.div_ceil(x).max(1);
        if y > max || count.saturating_mul(WORKGROUP) > u32::MAX as u64 {
            return Err(Error::Limit {
                what: what.to_string(),
                limit: "max_compute_workgroups_per_dimension",
                needed: count,
                allowed: max * max,
                adapter: self.name(),
                fix: "use a smaller --batch-size".into(),
            });
        }
        Ok([x as u32, y as u32, 1])
    }
}
