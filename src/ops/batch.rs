//! Launchers for `shaders/batch.wgsl`: a batch gathered on the GPU from the resident dataset.
//! On the CPU kernel set some entry points come from `shaders/cpu/batch.wgsl` instead (see
//! `gpu::KernelSet`); the arguments and results are the same.
use super::{build, expect_len, vec4_kernel, Cost, Dispatch, Launch, Shader};
use crate::gpu::{Gpu, Tensor};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub pixels: u32,
    /// First permutation entry of this batch (step x batch size).
    pub offset: u32,
    pub seed: u32,
    pub noise: f32,
    pub _p: [u32; 3],
}

/// Packs u8 pixels four to a u32 word, little-endian, as the shader reads them.
pub fn pack_pixels(pixels: &[u8]) -> Vec<u32> {
    pixels
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect()
}

fn check(p: &Params, images: &Tensor, perm: &Tensor, target: &Tensor) -> Result<()> {
    if p.n == 0 || p.pixels == 0 {
        return Err(Error::Shape {
            op: "batch",
            detail: "empty batch".into(),
        });
    }
    if p.offset as u64 + p.n as u64 > perm.len {
        return Err(Error::Shape {
            op: "batch",
            detail: format!(
                "batch {}..{} outside the permutation of {}",
                p.offset,
                p.offset + p.n,
                perm.len
            ),
        });
    }
    let images_needed = (perm.len * p.pixels as u64).div_ceil(4);
    if images.len < images_needed {
        return Err(Error::Shape {
            op: "batch",
            detail: format!(
                "{} packed words cannot hold {} images",
                images.len, perm.len
            ),
        });
    }
    expect_len("batch", "target", target, p.n as u64 * p.pixels as u64)
}

/// Fails unless packed u8 `images` (four to a word) hold an image of `pixels` for every entry
/// of `order`, `order` holds a batch of `n`, and `batch` holds that batch: what a kernel that
/// gathers its own batch reads and writes (`dense::rows`, `conv2d::forward`; the offset into
/// the order is set per step).
pub(crate) fn check_gathering(
    op: &'static str,
    images: &Tensor,
    order: &Tensor,
    n: u64,
    pixels: u64,
    batch: &Tensor,
) -> Result<()> {
    if order.len < n || images.len < (order.len * pixels).div_ceil(4) {
        return Err(Error::Shape {
            op,
            detail: format!(
                "{} packed words and an order of {} cannot hold a batch of {n} images of \
                 {pixels} pixels",
                images.len, order.len
            ),
        });
    }
    expect_len(op, "batch", batch, n * pixels)
}

/// `target` = the batch's pixels / 255. Every permutation entry must index an image.
pub fn gather(
    gpu: &Gpu,
    label: &str,
    p: &Params,
    images: &Tensor,
    perm: &Tensor,
    target: &Tensor,
) -> Result<Dispatch> {
    check(p, images, perm, target)?;
    let len = target.len;
    // The CPU set's kernels take one packed word (4 pixels) per invocation, or four (16
    // pixels, read as one vec4) where an image's pixels are a multiple of 16 and so every
    // image starts on a whole vec4.
    let wide = vec4_kernel(gpu, p.pixels as u64) && p.pixels.is_multiple_of(16);
    let (shader, entry, pixels_each) = match (wide, vec4_kernel(gpu, p.pixels as u64)) {
        (true, _) => (Shader::CpuBatch, "gather16", 16),
        (false, true) => (Shader::CpuBatch, "gather", 4),
        (false, false) => (Shader::Batch, "gather", 1),
    };
    let invocations = len / pixels_each;
    let four_words;
    let bindings: &[(u32, &Tensor)] = match wide {
        true => {
            four_words = images.view(0, images.len - images.len % 4);
            &[(4, &four_words), (2, perm), (3, target)]
        }
        false => &[(1, images), (2, perm), (3, target)],
    };
    build(
        gpu,
        Launch {
            shader,
            entry,
            kernel: "batch.gather",
            label,
            params: bytemuck::bytes_of(p),
            bindings,
            constants: &[],
            workgroups: gpu.grid("batch.gather", invocations)?,
            cost: Cost {
                bytes: len + 4 * len,
                flops: len,
            },
        },
    )
}

/// As [`gather`], plus `noisy` = clip(target + noise * N(0, 1), 0, 1).
pub fn gather_noisy(
    gpu: &Gpu,
    label: &str,
    p: &Params,
    images: &Tensor,
    perm: &Tensor,
    target: &Tensor,
    noisy: &Tensor,
) -> Result<Dispatch> {
    check(p, images, perm, target)?;
    expect_len("batch", "noisy", noisy, target.len)?;
    let len = target.len;
    build(
        gpu,
        Launch {
            shader: Shader::Batch,
            entry: "gather_noisy",
            kernel: "batch.gather_noisy",
            label,
            params: bytemuck::bytes_of(p),
            bindings: &[(1, images), (2, perm), (3, target), (4, noisy)],
            constants: &[],
            workgroups: gpu.grid("batch.gather_noisy", len)?,
            cost: Cost {
                bytes: len + 8 * len,
                flops: 30 * len,
            },
        },
    )
}
