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

/// What a command opens: an adapter, and the kernel set to run on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    pub adapter: AdapterChoice,
    pub kernels: KernelChoice,
}

impl DeviceChoice {
    pub fn new(adapter: AdapterChoice, kernels: KernelChoice) -> Self {
        DeviceChoice { adapter, kernels }
    }
}

impl From<AdapterChoice> for DeviceChoice {
    fn from(adapter: AdapterChoice) -> Self {
        DeviceChoice {
            adapter,
            kernels: KernelChoice::Auto,
        }
    }
}
