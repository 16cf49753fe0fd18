//! Launchers of the CPU kernel set (`shaders/cpu/`), called by the op modules when the device
//! runs [`KernelSet::Cpu`](crate::gpu::KernelSet) and the shape is one these kernels take
//! (`conv2d::takes`: 3x3 with at most 32 channels a side; `dense::fits`: feature counts in
//! whole vec4s); other shapes run the GPU set's kernels on that device too. Same arguments,
//! same results, kernels shaped for CPU adapters.
pub(crate) mod conv2d;
pub(crate) mod dense;
