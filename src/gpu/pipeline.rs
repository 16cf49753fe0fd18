//! Compute pipelines, built once per (shader, entry point, override constants) and cached:
//! the launchers ask for one every time they build a dispatch. Each is built from its entry
//! point specialised with its constants ([`super::specialize`]), and records the bindings
//! that code uses: its derived layout has those alone.
use super::poison::POISON_OVERRIDE;
use super::specialize::Parsed;
use super::Gpu;
use crate::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A WGSL module: its name (for labels and the cache key) and its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Module {
    pub name: &'static str,
    pub source: &'static str,
}

/// A pipeline is one entry point specialised with its override constants (by value bits).
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    /// Each module parsed once; its pipelines are specialised from it.
    modules: Mutex<HashMap<&'static str, Arc<Parsed>>>,
    pipelines: Mutex<HashMap<PipelineKey, Built>>,
}

/// wgpu's runtime checks but one: naga's loop bounding, which puts a 64-bit counter and a
/// second exit in every loop (so that a loop the driver thinks infinite cannot be assumed
/// away), also hides the constant trip counts that the conv and dense kernels are written for,
/// so the drivers keep the loops rolled (gfx-rs/wgpu#7698: a pipeline 100x slower with it).
/// The `naga-loop-bounding` feature puts it back, to measure the difference.
const RUNTIME_CHECKS: wgpu::ShaderRuntimeChecks = wgpu::ShaderRuntimeChecks {
    force_loop_bounding: LOOP_BOUNDING,
    ..wgpu::ShaderRuntimeChecks::checked()
};

/// Whether this build bounds the shaders' loops (the `naga-loop-bounding` feature): `bench`
/// and `profile` record it.
pub const LOOP_BOUNDING: bool = cfg!(feature = "naga-loop-bounding");

/// Entry points that write every element of their workgroup memory before any invocation
/// reads it: their pipelines skip wgpu's zeroing of it. Each one's claim is tested: under
/// `Gpu::with_workgroup_poison` (every test's device) they fill that memory with NaN first.
/// Zeroing is a cost on every dispatch (a store per invocation and a barrier before the
/// kernel's first instruction), and through OpenGL a compile-time one: naga zeroes an array
/// with a constructor of that many literals, which took llvmpipe's GL compiler minutes for
/// `dense::rows`' 5,312 floats (two samples' activations and the lane sums).
pub const WRITES_BEFORE_READING: [(&str, &str); 22] = [
    // The dense stack and split-K kernels: each invocation stores its own activations or
    // partial block before the barrier that the reads follow.
    ("dense", "rows"),
    ("dense", "rows_gather"),
    ("dense", "grads_all"),
    ("dense", "grads_adam"),
    ("dense", "forward_split"),
    ("dense", "forward_split4"),
    ("dense", "backward_input_split"),
    ("dense", "backward_params_split"),
    ("dense", "backward_params_split4"),
    // `scratch[lid] = acc` by every invocation of a workgroup, then `tree_sum` (whose first
    // step is a barrier); the early returns before it are workgroup-uniform.
    ("bce", "loss_partial"),
    ("bce", "loss_partial_gradient"),
    ("bce", "loss_finish"),
    ("bce", "loss_finish_steps"),
    ("adam", "step_loss_finish"),
    ("conv2d", "backward_weight_reduce"),
    ("conv2d", "backward_weight_reduce_all"),
    ("conv2d", "backward_weight_reduce_adam"),
    ("conv2d", "backward_bias"),
    // The tiled weight-gradient partials: invocation `lid` stages the gradient of tile pixel
    // `lid` (TILE_CHUNKS * CHUNK = TILED_WG of them, the vec4 of each live channel group)
    // before the barrier; a read takes pixel `sub * CHUNK + t` < TILED_WG, in a live group.
    // Without `tiles` (and in the pair's input-gradient workgroups) nothing touches it.
    ("conv2d", "backward_weight_partial"),
    ("conv2d", "backward_pair"),
    // The quads (QUADS): every invocation, past the end too (clamped), puts its four vec4
    // registers in its own four slots before the barrier, and reads follow it. Without QUADS
    // nothing touches them (nor in the pair's weight-gradient workgroups).
    ("conv2d", "forward_pooled"),
    ("conv2d", "backward_input"),
];

/// Whether the pipeline of `entry` in the file `shader` skips zeroing its workgroup memory:
/// those on [`WRITES_BEFORE_READING`], and the poison's check (`read_unwritten`, which reads
/// what the poison wrote, on purpose).
fn skips_zeroing(shader: &str, entry: &str) -> bool {
    WRITES_BEFORE_READING.contains(&(shader, entry)) || shader == super::WORKGROUP_POISON.name
}

/// A built pipeline and the bindings of group 0 that its specialised code uses: its derived
/// layout holds those alone, so a bind group names only them.
#[derive(Clone, Debug)]
pub(crate) struct Built {
    pub pipeline: wgpu::ComputePipeline,
    pub bindings: Arc<[u32]>,
}

impl Gpu {
    /// The pipeline of `entry` in `module`, specialised with `constants`; built on first use.
    pub fn pipeline(
        &self,
        module: Module,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        Ok(self.built(module, entry, constants)?.pipeline)
    }

    /// [`Self::pipeline`] with the bindings it uses.
    pub(crate) fn built(
        &self,
        module: Module,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Built> {
        // Under the tests' poison, the kernels that skip zeroing fill their workgroup memory
        // with NaN first (`POISON_WORKGROUP` in shaders/common.wgsl).
        let poisoned: Vec<(&'static str, f64)>;
        let constants = match self.poisons_workgroup_memory && skips_zeroing(module.name, entry) {
            true => {
                poisoned = [constants, &[(POISON_OVERRIDE, 1.0)]].concat();
                &poisoned[..]
            }
            false => constants,
        };
        let key = (
            module.name,
            entry,
            constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        );
        let cache = &self.pipelines;
        if let Some(p) = cache
            .pipelines
            .lock()
            .map_err(|e| self.gpu_error(e))?
            .get(&key)
        {
            return Ok(p.clone());
        }
        let failed = |detail: String| crate::Error::Gpu {
            adapter: self.name(),
            detail: format!(
                "building the pipeline of {}::{entry}: {detail}",
                module.name
            ),
        };
        let specialized = self
            .parsed(module)?
            .map_err(failed)?
            .specialize(entry, constants)
            .map_err(failed)?;
        let bindings = specialized
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.binding.as_ref())
            .filter(|b| b.group == 0)
            .map(|b| b.binding)
            .collect();
        // A validation error is this thread's own: the scope is thread-local, so pipelines
        // built on several threads at once (network::in_parallel) never take each other's.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(module.name),
            source: wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(specialized)),
        };
        // SAFETY: the only check left out (unless the feature asks for it) is naga's loop
        // bounding, whose contract is that no loop runs forever. Every loop in `shaders/`
        // is a `for` whose counter moves toward a bound fixed before the loop (an override
        // constant, a uniform, or a halving stride), with no index near u32::MAX (buffers
        // are far smaller). Bounds checks stay on.
        let shader = unsafe {
            self.device
                .create_shader_module_trusted(desc, RUNTIME_CHECKS)
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &shader,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    zero_initialize_workgroup_memory: !skips_zeroing(module.name, entry),
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(failed(e.to_string()));
        }
        self.check()?;
        // Where another thread built the same pipeline meanwhile, its copy stays the one: one
        // pipeline per key, so equal pipelines mean equal code (`train::tune` relies on it).
        Ok(cache
            .pipelines
            .lock()
            .map_err(|e| self.gpu_error(e))?
            .entry(key)
            .or_insert(Built { pipeline, bindings })
            .clone())
    }

    /// `module` parsed and validated, once per device; the inner error is naga's message.
    fn parsed(&self, module: Module) -> Result<std::result::Result<Arc<Parsed>, String>> {
        let mut modules = self
            .pipelines
            .modules
            .lock()
            .map_err(|e| self.gpu_error(e))?;
        if let Some(p) = modules.get(module.name) {
            return Ok(Ok(p.clone()));
        }
        Ok(Parsed::new(module.source).map(|parsed| {
            modules
                .entry(module.name)
                .or_insert(Arc::new(parsed))
                .clone()
        }))
    }
}
