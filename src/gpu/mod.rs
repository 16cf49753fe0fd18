//! The GPU base: adapter choice, the device, buffers, pipelines, dispatches and timing. It
//! knows no op: the launchers in `ops` build on it.
mod adapter;
mod buffers;
mod dispatch;
mod execution;
mod kernels;
mod pipeline;
mod poison;
mod specialize;
mod texture;
pub mod timing;

pub use adapter::{describe_adapter, list_adapters, AdapterChoice};
pub use buffers::{Tensor, UNIFORM_WINDOW};
pub use dispatch::{
    record_all, record_passes, run, Cost, Dispatch, DispatchParts, KernelSource, SlotLaunch,
    WORKGROUP,
};
pub use execution::StepsPerExecution;
pub use kernels::{
    DeviceChoice, FoldChoice, FoldSet, FoldTiming, FoldTrial, FoldsBy, KernelChoice, KernelSet,
    LayerTrial,
};
pub use pipeline::WRITES_BEFORE_READING;
pub use pipeline::{Module, LOOP_BOUNDING};
pub use poison::{POISON_OVERRIDE, WORKGROUP_POISON};
pub use texture::{TensorTexture, TEXELS_PER_ROW};

use crate::{Error, Result};
use std::sync::{Arc, Mutex};

/// One opened device with what we learned about it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The kernel set the launchers pick their entry points from.
    pub kernels: KernelSet,
    /// The work a network folds into fewer dispatches, and the kernel variants it runs
    /// ([`FoldSet`]).
    pub folds: FoldSet,
    /// How [`Gpu::folds`] was chosen.
    pub folds_by: FoldsBy,
    /// Layers whose kernel variants differ from [`Gpu::folds`]' (the start-up timing's pick
    /// per layer, `train::tune`), by layer name: the folds as that layer's launchers see them.
    pub layer_folds: std::collections::BTreeMap<String, FoldSet>,
    /// Training steps (or evaluation batches) per command buffer and submit
    /// ([`StepsPerExecution`]).
    pub steps_per_execution: usize,
    /// The textures tensors are read through under `textures`, one per tensor view.
    textures: texture::TextureCache,
    /// Set by [`Gpu::with_workgroup_poison`] (tests): pipelines that skip zeroing their
    /// workgroup memory fill it with NaN instead.
    pub(crate) poisons_workgroup_memory: bool,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    pipelines: pipeline::PipelineCache,
}

/// The limits a device is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSet {
    /// Everything the adapter allows: the launchers check each need against it.
    Adapter,
    /// WebGPU's defaults, which every conformant adapter offers (what a browser grants
    /// without asking): the portability promise, tested.
    WebGpuDefaults,
}

impl Gpu {
    /// Opens the adapter chosen by `choice` with all the limits it allows. Timestamp queries
    /// are requested when the adapter has them and never required.
    pub fn new(choice: &DeviceChoice) -> Result<Self> {
        Self::with_limits(choice, LimitSet::Adapter)
    }

    /// [`Gpu::new`] with the limits of `set`.
    pub fn with_limits(choice: &DeviceChoice, set: LimitSet) -> Result<Self> {
        let adapter = adapter::choose(&choice.adapter)?;
        let info = adapter.get_info();
        let kernels = choice.kernels.resolve(&info);
        let (folds, folds_by) = choice.folds.resolve(kernels, &info);
        let steps_per_execution = choice.steps_per_execution.resolve(info.device_type);
        // Subgroups where the adapter has them: the CPU set's `lanes` shares loaded pixels
        // across a subgroup's lanes (Gpu::subgroup_lanes).
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let limits = match set {
            LimitSet::Adapter => adapter.limits(),
            LimitSet::WebGpuDefaults => wgpu::Limits::default(),
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgsl-autoencoder"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: describe_adapter(&info),
            reason: e.to_string(),
        })?;
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut l) = lost_cb.lock() {
                *l = Some(format!("{reason:?}: {msg}"));
            }
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let unc = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut u) = unc.lock() {
                if u.is_none() {
                    *u = Some(e.to_string());
                }
            }
        }));
        Ok(Gpu {
            textures: Default::default(),
            poisons_workgroup_memory: false,
            device,
            queue,
            info,
            limits,
            features,
            kernels,
            folds,
            folds_by,
            layer_folds: Default::default(),
            steps_per_execution,
            lost,
            uncaptured,
            pipelines: Default::default(),
        })
    }

    pub fn name(&self) -> String {
        describe_adapter(&self.info)
    }

    /// The width of every subgroup, where the device has subgroups and the adapter promises
    /// one width (lavapipe: its SIMD vector, 8 lanes at 256 bits); `None` elsewhere.
    pub fn subgroup_lanes(&self) -> Option<u32> {
        let (min, max) = (self.info.subgroup_min_size, self.info.subgroup_max_size);
        (self.features.contains(wgpu::Features::SUBGROUP) && min == max && min > 0).then_some(min)
    }

    /// The folds as the launchers of layer `layer` see them: [`Gpu::folds`], with that layer's
    /// own kernel variants where [`Gpu::layer_folds`] has them.
    pub fn folds_at(&self, layer: &str) -> FoldSet {
        self.layer_folds.get(layer).copied().unwrap_or(self.folds)
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Blocks until the queue is idle; reports a lost device or an uncaptured GPU error.
    pub fn wait(&self) -> Result<()> {
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        self.check()?;
        polled.map_err(|e| Error::Gpu {
            adapter: self.name(),
            detail: e.to_string(),
        })?;
        Ok(())
    }

    /// Blocks until submission `idx` is done (earlier ones too).
    pub fn wait_for(&self, idx: wgpu::SubmissionIndex) -> Result<()> {
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        });
        self.check()?;
        polled.map_err(|e| self.gpu_error(e))?;
        Ok(())
    }

    /// Fails if the device was lost or a GPU error was reported since the last check.
    pub fn check(&self) -> Result<()> {
        if let Some(msg) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost {
                adapter: self.name(),
                detail: msg,
            });
        }
        if let Some(msg) = self.uncaptured.lock().ok().and_then(|mut u| u.take()) {
            return Err(Error::Gpu {
                adapter: self.name(),
                detail: msg,
            });
        }
        Ok(())
    }

    /// Checks a buffer size against the adapter's limits before anything is created.
    pub fn check_buffer(&self, what: &str, bytes: u64, fix: &str) -> Result<()> {
        let max_binding = self.limits.max_storage_buffer_binding_size;
        let max_buffer = self.limits.max_buffer_size;
        let (limit, allowed) = if max_binding < max_buffer {
            ("max_storage_buffer_binding_size", max_binding)
        } else {
            ("max_buffer_size", max_buffer)
        };
        if bytes > allowed {
            return Err(Error::Limit {
                what: what.to_string(),
                limit,
                needed: bytes,
                allowed,
                adapter: self.name(),
                fix: fix.to_string(),
            });
        }
        Ok(())
    }
}
