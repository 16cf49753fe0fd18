//! Tensors read through textures: the CPU kernel set's `textures` variant. lavapipe fetches
//! a texel at a per-invocation coordinate as a straight gather, where it loads from a storage
//! buffer in a guarded loop over the vector's lanes (`examples/lane_loads.rs`: about half the
//! cycles). A kernel reads the texture with `textureLoad`; an op's first dispatch copies the
//! tensor into it first, outside any compute pass (`dispatch::record_passes`), and the op's
//! later dispatches read that copy. On a CPU adapter that copy
//! is a memcpy (in a lavapipe conv step about 0.1 ms per MB, from the gaps it leaves between
//! a trace's dispatches), where a kernel writing the texture itself would pay 85-104 cycles
//! a lane for each `textureStore` (`lane_loads`' `to_texture`, against 12-13 to storage).
use super::{Gpu, Tensor};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Texels a row: the shaders' TEX_ROW. 64 KiB of rgba32float, a multiple of the 256 bytes
/// that a copy's rows must keep.
pub const TEXELS_PER_ROW: u32 = 4096;
const ROW_BYTES: u64 = TEXELS_PER_ROW as u64 * 16;

/// A tensor's floats in an rgba32float texture, four to a texel, [`TEXELS_PER_ROW`] texels a
/// row: vec4 `i` of the tensor is texel (i % TEXELS_PER_ROW, i / TEXELS_PER_ROW).
#[derive(Clone, Debug)]
pub struct TensorTexture {
    /// The tensor it holds a copy of; None where the dispatch binding it does not copy it in
    /// ([`TensorTexture::already_filled`]).
    source: Option<Tensor>,
    texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
}

impl TensorTexture {
    /// Whether a dispatch binding it copies a tensor into it first.
    pub fn is_filled(&self) -> bool {
        self.source.is_some()
    }

    /// The same texture bound without the copy: for the dispatches of one op that run right
    /// after the one that copied (its phases or channel groups), which write nothing it holds.
    pub fn already_filled(&self) -> TensorTexture {
        TensorTexture {
            source: None,
            ..self.clone()
        }
    }

    /// Bytes of the texture.
    pub fn bytes(&self) -> u64 {
        let size = self.texture.size();
        size.width as u64 * size.height as u64 * 16
    }

    /// Records the copy of the tensor into the texture: its whole rows, then the part row.
    pub fn fill(&self, enc: &mut wgpu::CommandEncoder) {
        let Some(src) = &self.source else { return };
        let texels = src.len / 4;
        let rows = texels / TEXELS_PER_ROW as u64;
        let rest = texels % TEXELS_PER_ROW as u64;
        let copy = |enc: &mut wgpu::CommandEncoder, row: u64, width: u64, height: u64| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &src.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: src.offset * 4 + row * ROW_BYTES,
                        bytes_per_row: Some(ROW_BYTES as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: height as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if rows > 0 {
            copy(enc, 0, TEXELS_PER_ROW as u64, rows);
        }
        if rest > 0 {
            copy(enc, rows, rest, 1);
        }
    }
}

/// One texture per tensor view, made on first use: the kernels of a layer that read the same
/// tensor share it (each op still copies the tensor in before its first dispatch runs, so a
/// buffer rewritten in between is read as it is then).
#[derive(Default)]
pub(crate) struct TextureCache {
    textures: Mutex<HashMap<(wgpu::Buffer, u64, u64), TensorTexture>>,
}

impl Gpu {
    /// The texture that `t` is read through: `t`'s length must be whole vec4s (the kernels read
    /// a texture only where the channels are).
    pub fn texture_of(&self, what: &str, t: &Tensor) -> Result<TensorTexture> {
        if !t.len.is_multiple_of(4) || t.len == 0 {
            return Err(Error::Shape {
                op: "texture",
                detail: format!("{what}: {} floats are not whole vec4s", t.len),
            });
        }
        let key = (t.buffer.clone(), t.offset, t.len);
        let mut cache = self
            .textures
            .textures
            .lock()
            .map_err(|e| self.gpu_error(e))?;
        if let Some(tex) = cache.get(&key) {
            return Ok(tex.clone());
        }
        let texels = t.len / 4;
        let width = texels.min(TEXELS_PER_ROW as u64) as u32;
        let height = texels.div_ceil(TEXELS_PER_ROW as u64);
        let max = self.limits.max_texture_dimension_2d as u64;
        if height > max {
            return Err(Error::Limit {
                what: format!("{what} as a texture"),
                limit: "max_texture_dimension_2d",
                needed: height,
                allowed: max,
                adapter: self.name(),
                fix: "use a smaller --batch-size, or leave out the textures variant \
                      (--folds without it)"
                    .into(),
            });
        }
        let tex = make(&self.device, what, width, height as u32, t.clone());
        cache.insert(key, tex.clone());
        Ok(tex)
    }

    /// Bytes of every texture [`Gpu::texture_of`] made.
    pub fn texture_bytes(&self) -> u64 {
        self.textures
            .textures
            .lock()
            .map(|c| c.values().map(TensorTexture::bytes).sum())
            .unwrap_or(0)
    }
}

fn make(
    device: &wgpu::Device,
    label: &str,
    width: u32,
    height: u32,
    source: Tensor,
) -> TensorTexture {
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let view = texture.create_view(&Default::default());
    TensorTexture {
        source: Some(source),
        texture,
        view,
    }
}
