//! A recorded kernel launch and the helpers that size and submit them.
use super::{Gpu, Tensor, TensorTexture};
use crate::{Error, Result};
use std::sync::{Arc, Mutex};

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
    /// The shader's name (`ops::Shader::name`): its file under `shaders/` without `.wgsl`, or its
    /// folder (`cpu/conv2d`).
    pub shader: &'static str,
    pub entry: &'static str,
}

/// One recorded kernel launch, ready to go into a compute pass.
///
/// Its uniform has one or more slots, each with its own bind group: a plan whose per-step
/// uniforms differ (the batch offset, Adam's step) records several steps into one command
/// buffer by giving each its own slot (`--steps-per-execution`).
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// `file.entry`, e.g. `conv2d.forward`: the profile's row.
    pub kernel: &'static str,
    pub source: KernelSource,
    /// Where in the model it runs, e.g. `conv2d_1`.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    /// What, beyond its source, tells this launch from another of the same entry point: its
    /// override constants and workgroups (`bench-kernels` compares variants by it).
    pub launch: String,
    /// One per uniform slot.
    bind_groups: Vec<wgpu::BindGroup>,
    /// The uniform's slots, [`Self::stride`] bytes apart.
    uniform: wgpu::Buffer,
    stride: u64,
    /// The parameters it was built with (every new slot starts with them).
    params: Vec<u8>,
    /// The bindings its bind groups name ([`DispatchParts::used_bindings`]).
    used_bindings: Arc<[u32]>,
    /// The storage bindings, for the bind groups of new slots.
    bindings: Vec<(u32, Tensor)>,
    /// The texture bindings: the tensors it reads through textures, copied in before it runs
    /// (unless an earlier dispatch of its op already did).
    textures: Vec<(u32, TensorTexture)>,
    /// Slot contents staged by [`Self::stage`], sent by [`Self::flush`] in one write.
    staged: Arc<Mutex<Staged>>,
    pub workgroups: [u32; 3],
    pub cost: Cost,
}

/// A host copy of a dispatch's uniform slots and the bytes of it not yet written.
#[derive(Debug, Default)]
struct Staged {
    bytes: Vec<u8>,
    dirty: Option<std::ops::Range<usize>>,
}

/// What [`Dispatch::new`] builds a dispatch from.
pub struct DispatchParts {
    pub kernel: &'static str,
    pub source: KernelSource,
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    /// The override constants the pipeline was specialised with.
    pub constants: Vec<(&'static str, f64)>,
    /// The uniform's bytes (binding 0).
    pub params: Vec<u8>,
    /// The bindings the pipeline's code uses, which its derived layout holds (the uniform,
    /// binding 0, among them where it reads it): only these are bound. The others stay
    /// listed, so a texture is still filled by the dispatch that fills it for later ones.
    pub used_bindings: Arc<[u32]>,
    /// The storage tensors and their bindings.
    pub bindings: Vec<(u32, Tensor)>,
    /// The textures and their bindings.
    pub textures: Vec<(u32, TensorTexture)>,
    pub workgroups: [u32; 3],
    pub cost: Cost,
}

impl Dispatch {
    /// A dispatch with one uniform slot.
    pub fn new(gpu: &Gpu, parts: DispatchParts) -> Result<Self> {
        let stride = slot_stride(gpu, parts.params.len() as u64);
        let mut d = Dispatch {
            kernel: parts.kernel,
            source: parts.source,
            label: parts.label,
            pipeline: parts.pipeline,
            launch: launch(&parts.constants, parts.workgroups),
            bind_groups: Vec::new(),
            uniform: uniform_slots(gpu, parts.kernel, stride, 1),
            stride,
            params: parts.params,
            used_bindings: parts.used_bindings,
            bindings: parts.bindings,
            textures: parts.textures,
            staged: Default::default(),
            workgroups: parts.workgroups,
            cost: parts.cost,
        };
        d.fill_slots(gpu, 1)?;
        Ok(d)
    }

    /// The same launch with `slots` uniform slots (at least one), each starting with the
    /// parameters it was built with.
    pub fn with_slots(mut self, gpu: &Gpu, slots: usize) -> Result<Self> {
        let slots = slots.max(1);
        self.uniform = uniform_slots(gpu, self.kernel, self.stride, slots);
        self.fill_slots(gpu, slots)?;
        Ok(self)
    }

    /// Writes the built parameters into each of the `slots` slots and makes their bind groups.
    fn fill_slots(&mut self, gpu: &Gpu, slots: usize) -> Result<()> {
        let mut contents = vec![0u8; slots * self.stride as usize];
        for slot in contents.chunks_mut(self.stride as usize) {
            slot[..self.params.len()].copy_from_slice(&self.params);
        }
        self.staged = Arc::new(Mutex::new(Staged {
            bytes: contents.clone(),
            dirty: None,
        }));
        self.uniform
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| gpu.gpu_error(e))?
            .copy_from_slice(&contents);
        self.uniform.unmap();
        let layout = self.pipeline.get_bind_group_layout(0);
        self.bind_groups = (0..slots as u64)
            .map(|slot| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.uniform,
                        offset: slot * self.stride,
                        size: wgpu::BufferSize::new(self.params.len() as u64),
                    }),
                }];
                entries.extend(
                    self.bindings
                        .iter()
                        .map(|(binding, t)| wgpu::BindGroupEntry {
                            binding: *binding,
                            resource: t.binding(),
                        }),
                );
                entries.extend(
                    self.textures
                        .iter()
                        .map(|(binding, t)| wgpu::BindGroupEntry {
                            binding: *binding,
                            resource: wgpu::BindingResource::TextureView(&t.view),
                        }),
                );
                entries.retain(|e| self.used_bindings.contains(&e.binding));
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(self.kernel),
                    layout: &layout,
                    entries: &entries,
                })
            })
            .collect();
        gpu.check()
    }

    /// The parameters it was built with, as the `T` they were made from.
    pub fn built_params<T: bytemuck::Pod>(&self) -> T {
        let mut p = T::zeroed();
        let bytes = bytemuck::bytes_of_mut(&mut p);
        let len = bytes.len().min(self.params.len());
        bytes[..len].copy_from_slice(&self.params[..len]);
        p
    }

    /// Bytes of its uniform buffer (every slot).
    pub fn uniform_bytes(&self) -> u64 {
        self.uniform.size()
    }

    /// Uniform slots: how many steps of one command buffer can each set their own parameters.
    pub fn slots(&self) -> usize {
        self.bind_groups.len()
    }

    /// Whether it reads tensors through textures, which [`record_passes`] copies in first.
    pub fn fills_textures(&self) -> bool {
        self.textures.iter().any(|(_, t)| t.is_filled())
    }

    /// Records the copies of the tensors it reads through textures (outside any pass).
    pub fn fill_textures(&self, enc: &mut wgpu::CommandEncoder) {
        self.textures.iter().for_each(|(_, t)| t.fill(enc));
    }

    /// Records the launch with the parameters of uniform slot `slot` over `workgroups` into a
    /// pass; its textures must have been filled ([`record_passes`] does both).
    fn record_in(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize, workgroups: [u32; 3]) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_groups[slot], &[]);
        let [x, y, z] = workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// Stages new contents for uniform slot `slot` (< [`Self::slots`]) on the host;
    /// [`Self::flush`] sends every slot staged since in one write. One write per execution
    /// rather than one per step: each `write_buffer` costs wgpu a staging buffer of its own
    /// and the GPU a copy.
    pub fn stage<T: bytemuck::Pod>(&self, slot: usize, params: &T) {
        let bytes = bytemuck::bytes_of(params);
        let at = slot * self.stride as usize;
        let mut s = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        s.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        s.dirty = Some(match s.dirty.take() {
            Some(d) => d.start.min(at)..d.end.max(at + bytes.len()),
            None => at..at + bytes.len(),
        });
    }

    /// Queues the slots staged since the last flush (they take effect at the next submit).
    pub fn flush(&self, gpu: &Gpu) {
        let mut s = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = s.dirty.take() {
            gpu.queue
                .write_buffer(&self.uniform, d.start as u64, &s.bytes[d.clone()]);
        }
    }
}

/// A launch's identity beyond its source: "CI=16 CO=8 … GROUP=4; 12x1x1" (constants by name,
/// then the workgroups).
fn launch(constants: &[(&'static str, f64)], workgroups: [u32; 3]) -> String {
    let mut named: Vec<String> = constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
    named.sort();
    let [x, y, z] = workgroups;
    format!("{}; {x}x{y}x{z}", named.join(" "))
}

/// Bytes between two uniform slots: the parameters, rounded up to the adapter's uniform
/// offset alignment.
fn slot_stride(gpu: &Gpu, size: u64) -> u64 {
    let align = gpu.limits.min_uniform_buffer_offset_alignment.max(1) as u64;
    size.max(1).div_ceil(align) * align
}

/// A uniform buffer of `slots` slots, mapped for their first contents.
fn uniform_slots(gpu: &Gpu, label: &'static str, stride: u64, slots: usize) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: stride * slots as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: true,
    })
}

/// One launch for [`record_passes`]: a dispatch, its uniform slot (< [`Dispatch::slots`])
/// and its workgroups (the built ones, or as many as a recording has items for a kernel whose
/// workgroups take one each: `bce.loss_finish_steps`).
#[derive(Clone, Copy)]
pub struct SlotLaunch<'a> {
    pub dispatch: &'a Dispatch,
    pub slot: usize,
    pub workgroups: [u32; 3],
}

impl<'a> SlotLaunch<'a> {
    /// `d` at slot 0 over its built workgroups.
    pub fn of(d: &'a Dispatch) -> Self {
        Self::at(d, 0)
    }

    /// `d` at slot `slot` over its built workgroups.
    pub fn at(d: &'a Dispatch, slot: usize) -> Self {
        SlotLaunch {
            dispatch: d,
            slot,
            workgroups: d.workgroups,
        }
    }
}

/// Records `launches` into compute passes of `enc`: one pass, except that a dispatch which
/// reads tensors through textures copies them in first, and a copy runs outside any pass, so
/// a pass ends before it and the next begins after the copies. `timestamps` (a query set and
/// an index) mark the first pass's beginning (at the index) and the last pass's end (the
/// next): the first dispatch's copies fall outside that span, later ones inside.
pub fn record_passes(
    enc: &mut wgpu::CommandEncoder,
    label: &str,
    timestamps: Option<(&wgpu::QuerySet, u32)>,
    launches: &[SlotLaunch<'_>],
) {
    // Runs of launches, each but the first starting at a dispatch that copies.
    let mut runs: Vec<&[SlotLaunch<'_>]> = Vec::new();
    let mut start = 0;
    for (i, l) in launches.iter().enumerate().skip(1) {
        if l.dispatch.fills_textures() {
            runs.push(&launches[start..i]);
            start = i;
        }
    }
    runs.push(&launches[start..]);
    let last = runs.len() - 1;
    for (k, run) in runs.iter().enumerate() {
        if let Some(first) = run.first() {
            first.dispatch.fill_textures(enc);
        }
        let timestamp_writes = timestamps
            .filter(|_| k == 0 || k == last)
            .map(|(query_set, at)| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: (k == 0).then_some(at),
                end_of_pass_write_index: (k == last).then_some(at + 1),
            });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes,
        });
        for l in run.iter() {
            l.dispatch.record_in(&mut pass, l.slot, l.workgroups);
        }
    }
}

/// Records `dispatches` (slot 0, their built workgroups) into `encoder`: [`record_passes`].
pub fn record_all<'a>(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
) {
    let launches: Vec<SlotLaunch<'_>> = dispatches.into_iter().map(SlotLaunch::of).collect();
    record_passes(encoder, "step", None, &launches);
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
