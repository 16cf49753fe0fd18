//! Workgroup memory filled with NaN at the start of every kernel whose pipeline skips wgpu's
//! zeroing of it: a test harness, so that a kernel on [`WRITES_BEFORE_READING`]'s list that
//! reads a slot before writing it fails its tests on any adapter, rather than only on a GPU
//! whose fresh workgroup memory holds another kernel's leftovers.
//!
//! [`WRITES_BEFORE_READING`]: super::pipeline::WRITES_BEFORE_READING
use super::{Gpu, Module};

/// The override constant (`shaders/common.wgsl`) that turns the fill on: each listed entry
/// point calls `poison_<array>` for every workgroup array it uses before anything else (the
/// shaders test checks that it does), a branch the drivers compile away when it is off.
pub const POISON_OVERRIDE: &str = "POISON_WORKGROUP";

/// `shaders/debug/workgroup_poison.wgsl` after `common.wgsl`: `read_unwritten`, the fill's
/// own check.
pub const WORKGROUP_POISON: Module = Module {
    name: "debug/workgroup_poison",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        "\n",
        include_str!("../../shaders/debug/workgroup_poison.wgsl")
    ),
};

impl Gpu {
    /// This device, with every pipeline built from now on that skips zeroing its workgroup
    /// memory filling it with NaN instead. For tests: it changes no result of a kernel that
    /// writes its workgroup memory before reading it.
    pub fn with_workgroup_poison(mut self) -> Self {
        self.poisons_workgroup_memory = true;
        self
    }
}
