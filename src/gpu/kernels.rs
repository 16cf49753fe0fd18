//! Kernel sets: the same ops shaped for two kinds of device. The GPU set spreads work over
//! many small invocations; the CPU set is shaped for CPU adapters such as Mesa's lavapipe,
//! which run 8 invocations per AVX2 vector and pay a guarded scalar load per lane for every
//! load whose address is not a constant. Both compute the same sums, to float rounding.
use super::adapter::AdapterChoice;
use std::fmt;
use std::str::FromStr;

/// The kernel set a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelSet {
    /// Shaped for GPUs: one output pixel or a 4x4 block per invocation, split sums.
    Gpu,
    /// Shaped for CPU adapters: window taps written out, several outputs per loaded value,
    /// no split sums for short reductions.
    Cpu,
}

impl KernelSet {
    pub const ALL: [KernelSet; 2] = [KernelSet::Gpu, KernelSet::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Gpu => "gpu",
            KernelSet::Cpu => "cpu",
        }
    }

    /// The set `auto` picks: the CPU set on a CPU adapter through Vulkan (lavapipe, what it
    /// was shaped and measured on), the GPU set elsewhere. llvmpipe through OpenGL keeps the
    /// GPU set: the CPU set's written-out kernels were neither measured nor tuned there.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        match (info.device_type, info.backend) {
            (wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan) => KernelSet::Cpu,
            _ => KernelSet::Gpu,
        }
    }
}

impl fmt::Display for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--kernels`: a set, or `auto` (chosen by the adapter: [`KernelSet::for_adapter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    #[default]
    Auto,
    Set(KernelSet),
}

impl KernelChoice {
    pub fn resolve(self, info: &wgpu::AdapterInfo) -> KernelSet {
        match self {
            KernelChoice::Auto => KernelSet::for_adapter(info),
            KernelChoice::Set(set) => set,
        }
    }
}

impl FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KernelChoice::Auto),
            "gpu" => Ok(KernelChoice::Set(KernelSet::Gpu)),
            "cpu" => Ok(KernelChoice::Set(KernelSet::Cpu)),
            other => Err(format!(
                "unknown kernel set '{other}': use auto, gpu or cpu"
            )),
        }
    }
}

impl fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelChoice::Auto => f.write_str("auto"),
            KernelChoice::Set(set) => set.fmt(f),
        }
    }
}

/// Which neighbouring layers a convolution's kernels take over, so that they run no dispatch
/// of their own (`ops::conv2d::Folds`): a 2x upsampling before it, a 2x2 max pool after it.
/// Either way every result is the same to the bit; only the dispatches differ.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FoldSet {
    pub upsample: bool,
    pub pool: bool,
}

impl FoldSet {
    pub const NONE: FoldSet = FoldSet {
        upsample: false,
        pool: false,
    };
    pub const ALL: FoldSet = FoldSet {
        upsample: true,
        pool: true,
    };

    /// What `auto` folds: everything on the GPU set (two dispatches fewer per folded layer
    /// and step: 44 -> 32 for the conv model); nothing on the CPU set, whose kernels read and
    /// write plain tensors (the folds would run the GPU set's kernels for those layers).
    pub fn for_kernels(kernels: KernelSet) -> Self {
        match kernels {
            KernelSet::Gpu => FoldSet::ALL,
            KernelSet::Cpu => FoldSet::NONE,
        }
    }

    pub fn name(self) -> &'static str {
        match (self.upsample, self.pool) {
            (false, false) => "none",
            (true, false) => "upsample",
            (false, true) => "pool",
            (true, true) => "all",
        }
    }
}

impl fmt::Display for FoldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--folds`: a set of folds, or `auto` ([`FoldSet::for_kernels`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FoldChoice {
    #[default]
    Auto,
    Set(FoldSet),
}

impl FoldChoice {
    pub fn resolve(self, kernels: KernelSet) -> FoldSet {
        match self {
            FoldChoice::Auto => FoldSet::for_kernels(kernels),
            FoldChoice::Set(set) => set,
        }
    }
}

impl FromStr for FoldChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let set = |upsample, pool| Ok(FoldChoice::Set(FoldSet { upsample, pool }));
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(FoldChoice::Auto),
            "none" => set(false, false),
            "upsample" => set(true, false),
            "pool" => set(false, true),
            "all" => set(true, true),
            other => Err(format!(
                "unknown folds '{other}': use auto, none, upsample, pool or all"
            )),
        }
    }
}

impl fmt::Display for FoldChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoldChoice::Auto => f.write_str("auto"),
            FoldChoice::Set(set) => set.fmt(f),
        }
    }
}

/// What a command opens: an adapter, the kernel set to run on it, and the folds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    pub adapter: AdapterChoice,
    pub kernels: KernelChoice,
    pub folds: FoldChoice,
}

impl DeviceChoice {
    /// `adapter` and `kernels`, the folds `auto`.
    pub fn new(adapter: AdapterChoice, kernels: KernelChoice) -> Self {
        DeviceChoice {
            adapter,
            kernels,
            folds: FoldChoice::Auto,
        }
    }

    pub fn with_folds(self, folds: FoldChoice) -> Self {
        DeviceChoice { folds, ..self }
    }
}

impl From<AdapterChoice> for DeviceChoice {
    fn from(adapter: AdapterChoice) -> Self {
        DeviceChoice::new(adapter, KernelChoice::Auto)
    }
}
