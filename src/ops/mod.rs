//! Typed launchers: one module per shader file, one function per entry point. A launcher
//! checks shapes and limits, then returns a [`Dispatch`]: pipeline, bind group, workgroup
//! count and the napkin cost (bytes moved, flops) that the profiler turns into GB/s.
pub mod activation;
pub mod adam;
pub mod batch;
pub mod bce;
pub mod conv2d;
pub mod dense;
pub mod pool;
pub mod upsample;

use crate::gpu::{Gpu, Tensor};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// The WGSL files, embedded at build time so the binary runs from anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Activation,
    Adam,
    Batch,
    Bce,
    Conv2d,
    Dense,
    Pool,
    Upsample,
}

impl Shader {
    pub const ALL: [Shader; 8] = [
        Shader::Activation,
        Shader::Adam,
        Shader::Batch,
        Shader::Bce,
        Shader::Conv2d,
        Shader::Dense,
        Shader::Pool,
        Shader::Upsample,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shader::Activation => "activation",
            Shader::Adam => "adam",
            Shader::Batch => "batch",
            Shader::Bce => "bce",
            Shader::Conv2d => "conv2d",
            Shader::Dense => "dense",
            Shader::Pool => "pool",
            Shader::Upsample => "upsample",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Activation => include_str!("../../shaders/activation.wgsl"),
            Shader::Adam => include_str!("../../shaders/adam.wgsl"),
            Shader::Batch => include_str!("../../shaders/batch.wgsl"),
            Shader::Bce => include_str!("../../shaders/bce.wgsl"),
            Shader::Conv2d => include_str!("../../shaders/conv2d.wgsl"),
            Shader::Dense => include_str!("../../shaders/dense.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Upsample => include_str!("../../shaders/upsample.wgsl"),
        }
    }
}

/// A pipeline is one entry point specialised with its override constants (by value bits).
type PipelineKey = (Shader, &'static str, Vec<(&'static str, u64)>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

/// Napkin-math cost of one dispatch: the bytes it must move at least, and its flops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub bytes: u64,
    pub flops: u64,
}

/// One recorded kernel launch, ready to go into a compute pass.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// `file.entry`, e.g. `conv2d.forward`: the profile's row.
    pub kernel: &'static str,
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
pub fn record_all(encoder: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
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

pub(crate) const WORKGROUP: u64 = 256;

impl Gpu {
    pub(crate) fn pipeline(
        &self,
        shader: Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = (
            shader,
            entry,
            constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        );
        if let Some(p) = self
            .pipelines
            .pipelines
            .lock()
            .map_err(|e| self.gpu_error(e))?
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = self
                .pipelines
                .modules
                .lock()
                .map_err(|e| self.gpu_error(e))?;
            modules
                .entry(shader)
                .or_insert_with(|| {
                    self.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(shader.name()),
                            source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                        })
                })
                .clone()
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        self.check()?;
        self.pipelines
            .pipelines
            .lock()
            .map_err(|e| self.gpu_error(e))?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Workgroups for `threads` invocations of 256, folded into y past the per-dimension limit.
    pub(crate) fn grid(&self, what: &str, threads: u64) -> Result<[u32; 3]> {
        self.groups(what, threads.div_ceil(WORKGROUP))
    }

    /// As [`Gpu::grid`] for kernels with workgroups of `size`.
    pub(crate) fn grid_of(&self, what: &str, threads: u64, size: u64) -> Result<[u32; 3]> {
        self.groups(what, threads.div_ceil(size))
    }

    /// `count` workgroups, folded into x and y.
    pub(crate) fn groups(&self, what: &str, count: u64) -> Result<[u32; 3]> {
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

/// Everything a launcher needs to build one dispatch.
pub(crate) struct Launch<'a> {
    pub shader: Shader,
    pub entry: &'static str,
    pub kernel: &'static str,
    pub label: &'a str,
    pub params: &'a [u8],
    pub bindings: &'a [(u32, &'a Tensor)],
    /// Override constants that specialise the entry point (shapes).
    pub constants: &'a [(&'static str, f64)],
    pub workgroups: [u32; 3],
    pub cost: Cost,
}

pub(crate) fn build(gpu: &Gpu, l: Launch<'_>) -> Result<Dispatch> {
    let pipeline = gpu.pipeline(l.shader, l.entry, l.constants)?;
    let uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(l.kernel),
        size: l.params.len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: true,
    });
    uniform
        .slice(..)
        .get_mapped_range_mut()
        .map_err(|e| gpu.gpu_error(e))?
        .copy_from_slice(l.params);
    uniform.unmap();
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: uniform.as_entire_binding(),
    }];
    for (binding, t) in l.bindings {
        entries.push(wgpu::BindGroupEntry {
            binding: *binding,
            resource: t.binding(),
        });
    }
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(l.kernel),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    gpu.check()?;
    Ok(Dispatch {
        kernel: l.kernel,
        label: l.label.to_string(),
        pipeline,
        bind_group,
        uniform,
        workgroups: l.workgroups,
        cost: l.cost,
    })
}

/// Fails unless `t` holds exactly `len` elements.
pub(crate) fn expect_len(op: &'static str, name: &str, t: &Tensor, len: u64) -> Result<()> {
    if t.len != len {
        return Err(Error::Shape {
            op,
            detail: format!("{name} has {} elements, the shape needs {len}", t.len),
        });
    }
    Ok(())
}
