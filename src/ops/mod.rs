//! Typed launchers: one module per shader file, one function per entry point. A launcher
//! checks shapes and limits, then returns a [`Dispatch`]: pipeline, bind group, workgroup
//! count and the napkin cost (bytes moved, flops) that the profiler turns into GB/s.
pub mod activation;
pub mod adam;
pub mod batch;
pub mod bce;
pub mod conv2d;
mod cpu;
pub mod dense;
pub mod pool;
pub mod stride;
pub mod upsample;

pub use crate::gpu::{run, Cost, Dispatch};
use crate::gpu::{DispatchParts, Gpu, Module, Tensor, TensorTexture};
use crate::{Error, Result};

/// A kernel file with `shaders/common.wgsl` (the helpers and constants every file shares) in
/// front of it.
macro_rules! with_common {
    ($file:literal) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            "\n",
            include_str!(concat!("../../shaders/", $file, ".wgsl"))
        )
    };
}

/// A CPU-set kernel file (or a folder's parts, in order) with `common.wgsl` and
/// `cpu/blocks.wgsl` (the register blocks its accumulators live in) in front of it.
macro_rules! with_blocks {
    ($($file:literal),+) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            "\n",
            include_str!("../../shaders/cpu/blocks.wgsl"),
            $("\n", include_str!(concat!("../../shaders/", $file, ".wgsl"))),+
        )
    };
}

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
    Stride,
    Upsample,
    /// The CPU kernel set's files (`shaders/cpu/`).
    CpuActivation,
    CpuAdam,
    CpuBatch,
    CpuBce,
    CpuConv2d,
    CpuDense,
    CpuPool,
    CpuStride,
    CpuUpsample,
}

impl Shader {
    pub const ALL: [Shader; 18] = [
        Shader::Activation,
        Shader::Adam,
        Shader::Batch,
        Shader::Bce,
        Shader::Conv2d,
        Shader::Dense,
        Shader::Pool,
        Shader::Stride,
        Shader::Upsample,
        Shader::CpuActivation,
        Shader::CpuAdam,
        Shader::CpuBatch,
        Shader::CpuBce,
        Shader::CpuConv2d,
        Shader::CpuDense,
        Shader::CpuPool,
        Shader::CpuStride,
        Shader::CpuUpsample,
    ];

    /// The files under `shaders/` that hold this shader's own code (`source` puts
    /// `common.wgsl`, and for some `cpu/blocks.wgsl`, in front): one, or for the CPU set's
    /// convolutions a folder's four parts in the order they compile.
    pub fn files(self) -> Vec<String> {
        match self {
            Shader::CpuConv2d => ["common", "forward", "backward_input", "backward_params"]
                .iter()
                .map(|part| format!("cpu/conv2d/{part}.wgsl"))
                .collect(),
            _ => vec![format!("{}.wgsl", self.name())],
        }
    }

    /// Where this shader's code is, for messages: its file, or its folder's parts.
    pub fn path(self) -> String {
        match self.files().as_slice() {
            [file] => file.clone(),
            _ => format!("{}/*.wgsl", self.name()),
        }
    }

    /// The shader's name: its file under `shaders/` without `.wgsl`, or its folder.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Activation => "activation",
            Shader::Adam => "adam",
            Shader::Batch => "batch",
            Shader::Bce => "bce",
            Shader::Conv2d => "conv2d",
            Shader::Dense => "dense",
            Shader::Pool => "pool",
            Shader::Stride => "stride",
            Shader::Upsample => "upsample",
            Shader::CpuActivation => "cpu/activation",
            Shader::CpuAdam => "cpu/adam",
            Shader::CpuBatch => "cpu/batch",
            Shader::CpuBce => "cpu/bce",
            Shader::CpuConv2d => "cpu/conv2d",
            Shader::CpuDense => "cpu/dense",
            Shader::CpuPool => "cpu/pool",
            Shader::CpuStride => "cpu/stride",
            Shader::CpuUpsample => "cpu/upsample",
        }
    }

    /// The constants this file declares that Rust computes with too, and their Rust values:
    /// `tests/shaders.rs` checks the compiled module against them.
    pub fn constants(self) -> Vec<(&'static str, u64)> {
        let mut c = vec![("WG", crate::gpu::WORKGROUP)];
        match self {
            Shader::Bce => c.extend([("CHUNK", bce::CHUNK), ("STEP_HEADER", bce::STEP_HEADER)]),
            Shader::Conv2d => {
                c.extend([
                    ("TILED_WG", conv2d::TILED),
                    ("WIDE_GROUP", conv2d::WIDE_GROUP as u64),
                    ("NARROW_GROUP", conv2d::NARROW_GROUP as u64),
                ]);
                c.extend([
                    ("SERIAL_REDUCE", conv2d::SERIAL_REDUCE),
                    ("TILE_CHUNKS", conv2d::TILE_CHUNKS),
                    ("NO_BIAS", conv2d::NO_BIAS as u64),
                ])
            }
            Shader::Dense => c.extend([
                ("T", dense::TILE as u64),
                ("LOSS_CHUNK", bce::CHUNK),
                ("STACK_MAX", dense::STACK_MAX as u64),
                ("SPLIT_FROM", dense::SPLIT_FROM as u64),
                ("STEP_HEADER", bce::STEP_HEADER),
            ]),
            Shader::CpuConv2d => c.extend([
                ("CPU_WG", cpu::conv2d::CPU_WG),
                ("PARTIAL_WG", cpu::conv2d::PARTIAL_WG),
                ("MAXC", cpu::conv2d::MAXC as u64),
                ("GROUP", cpu::conv2d::GROUP as u64),
                ("UP_ROW", cpu::conv2d::UP_ROW),
                ("TEX_ROW", crate::gpu::TEXELS_PER_ROW as u64),
            ]),
            Shader::CpuDense => c.push(("CPU_WG", cpu::dense::CPU_WG)),
            Shader::CpuBce => c.push(("CPU_WG", bce::CPU_WG)),
            _ => {}
        }
        c
    }

    pub fn module(self) -> Module {
        Module {
            name: self.name(),
            source: self.source(),
        }
    }

    /// The file as compiled: `common.wgsl`, then the file itself.
    pub fn source(self) -> &'static str {
        match self {
            Shader::Activation => with_common!("activation"),
            Shader::Adam => with_common!("adam"),
            Shader::Batch => with_common!("batch"),
            Shader::Bce => with_common!("bce"),
            Shader::Conv2d => with_common!("conv2d"),
            Shader::Dense => with_common!("dense"),
            Shader::Pool => with_common!("pool"),
            Shader::Stride => with_common!("stride"),
            Shader::Upsample => with_common!("upsample"),
            Shader::CpuActivation => with_common!("cpu/activation"),
            Shader::CpuAdam => with_common!("cpu/adam"),
            Shader::CpuBatch => with_common!("cpu/batch"),
            Shader::CpuBce => with_common!("cpu/bce"),
            Shader::CpuConv2d => with_blocks!(
                "cpu/conv2d/common",
                "cpu/conv2d/forward",
                "cpu/conv2d/backward_input",
                "cpu/conv2d/backward_params"
            ),
            Shader::CpuDense => with_blocks!("cpu/dense"),
            Shader::CpuPool => with_common!("cpu/pool"),
            Shader::CpuStride => with_common!("cpu/stride"),
            Shader::CpuUpsample => with_common!("cpu/upsample"),
        }
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

/// Whether an op over `channels` (or elements) runs the CPU set's vec4 kernel: on the CPU
/// set, when they come in whole vec4s.
pub(crate) fn vec4_kernel(gpu: &Gpu, channels: u64) -> bool {
    gpu.kernels == crate::gpu::KernelSet::Cpu && channels.is_multiple_of(4)
}

pub(crate) fn build(gpu: &Gpu, l: Launch<'_>) -> Result<Dispatch> {
    build_textured(gpu, l, Vec::new())
}

/// [`build`] for an entry point that also reads through textures (`textures`: binding and
/// texture).
pub(crate) fn build_textured(
    gpu: &Gpu,
    l: Launch<'_>,
    textures: Vec<(u32, TensorTexture)>,
) -> Result<Dispatch> {
    let built = gpu.built(l.shader.module(), l.entry, l.constants)?;
    // A launcher names only the tensors its variant reads; the specialised code must not
    // use a binding it left out (a launcher's bug, not the user's).
    let given = |binding: &u32| {
        *binding == 0
            || l.bindings.iter().any(|(b, _)| b == binding)
            || textures.iter().any(|(b, _)| b == binding)
    };
    if let Some(missing) = built.bindings.iter().find(|b| !given(b)) {
        return Err(Error::Gpu {
            adapter: gpu.info.name.clone(),
            detail: format!(
                "{} ({}, entry point {}) uses binding {missing}, which its launcher did not give",
                l.kernel,
                l.shader.path(),
                l.entry
            ),
        });
    }
    Dispatch::new(
        gpu,
        DispatchParts {
            kernel: l.kernel,
            source: crate::gpu::KernelSource {
                shader: l.shader.name(),
                entry: l.entry,
            },
            label: l.label.to_string(),
            pipeline: built.pipeline,
            used_bindings: built.bindings,
            constants: l.constants.to_vec(),
            params: l.params.to_vec(),
            bindings: l.bindings.iter().map(|(b, t)| (*b, (*t).clone())).collect(),
            textures,
            workgroups: l.workgroups,
            cost: l.cost,
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{AdapterChoice, DeviceChoice, KernelChoice};

    fn lavapipe() -> Gpu {
        Gpu::new(&DeviceChoice::new(AdapterChoice::Cpu, KernelChoice::Auto))
            .expect("a CPU adapter (lavapipe) opens")
    }

    /// A launcher that leaves out a binding its kernel's specialised code uses is an error
    /// naming the kernel and the binding, before any bind group is made of it.
    #[test]
    fn a_binding_the_kernel_uses_but_its_launcher_left_out_is_named() {
        let gpu = lavapipe();
        let x = gpu.tensor("x", 4).expect("a tensor");
        let y = gpu.tensor("y", 4).expect("a tensor");
        let launch = |bindings| Launch {
            shader: Shader::Activation,
            entry: "relu_forward",
            kernel: "activation.relu_forward",
            label: "test",
            params: &[0; 16],
            bindings,
            constants: &[],
            workgroups: [1, 1, 1],
            cost: Cost::default(),
        };
        let both = [(1, &x), (2, &y)];
        build(&gpu, launch(&both)).expect("every binding given");
        let e = build(&gpu, launch(&both[..1])).unwrap_err().to_string();
        assert!(
            e.contains("activation.relu_forward") && e.contains("uses binding 2"),
            "{e}"
        );
    }
    /// Where the channels come in whole vec4s, the CPU set's forward pass stores y through its
    /// vec4 view alone and the input gradient dx through dx4 alone: the scalar store path after
    /// the vec4 one's `return` is cut with its binding, so two writable views of one buffer
    /// are never bound together; where they do not, only the scalar view is.
    #[test]
    fn a_cpu_convolution_binds_one_writable_view_of_its_output() {
        let gpu = lavapipe();
        let uses = |entry, channels: f64, binding| {
            let shape = [("CI", channels), ("CO", channels), ("H", 7.0), ("W", 7.0)];
            let built = gpu
                .built(Shader::CpuConv2d.module(), entry, &shape)
                .expect("the pipeline builds");
            built.bindings.contains(&binding)
        };
        // y is binding 4, y4 23; dx is 7, dx4 21.
        for (entry, scalar, vec4) in [("forward", 4, 23), ("backward_input", 7, 21)] {
            assert!(
                uses(entry, 8.0, vec4) && !uses(entry, 8.0, scalar),
                "{entry}, 8"
            );
            assert!(
                uses(entry, 5.0, scalar) && !uses(entry, 5.0, vec4),
                "{entry}, 5"
            );
        }
    }
}
