//! Launchers of the CPU kernel set (`shaders/cpu/`), called by the op modules when the device
//! runs [`KernelSet::Cpu`](crate::gpu::KernelSet): same arguments, same results, kernels shaped
//! for CPU adapters.
pub(crate) mod conv2d;
pub(crate) mod dense;
