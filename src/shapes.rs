//! The shapes every layer of the stack agrees on, as plain data: what one image holds between
//! layers, each op's batch shape, and Adam's settings. The CPU reference, the model and the
//! GPU launchers all take these; nothing here knows about a device.
use crate::{Error, Result};

/// Feature shape of one image between layers: height, width, channels (NHWC without N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Features {
    pub h: u32,
    pub w: u32,
    pub c: u32,
}

impl Features {
    pub fn len(&self) -> u64 {
        self.h as u64 * self.w as u64 * self.c as u64
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Padding of a convolution or a pooling window, as Keras names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Pads (k - 1) / 2 on every side of a k x k convolution: the output has the input's
    /// size. A 2x2 pooling window covers the last odd row and column alone.
    Same,
    /// No padding: a k x k convolution loses k - 1 pixels a side (16x16 -> 14x14 at k = 3);
    /// pooling drops an odd last row and column.
    Valid,
}

/// A k x k (k odd), stride-1 convolution on a batch: input `[n, h, w, ci]`, kernel
/// `[k, k, ci, co]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub ci: u32,
    pub co: u32,
    /// The kernel's side: 1, 3, 5 or 7.
    pub k: u32,
    pub padding: Padding,
}

/// The kernel sides a convolution may have (square, odd).
pub const CONV_KERNEL_SIZES: [u32; 4] = [1, 3, 5, 7];

impl Conv2dShape {
    /// Padding on each side.
    pub fn pad(&self) -> u32 {
        match self.padding {
            Padding::Same => (self.k - 1) / 2,
            Padding::Valid => 0,
        }
    }
    /// Output height and width.
    pub fn out_hw(&self) -> (u32, u32) {
        match self.padding {
            Padding::Same => (self.h, self.w),
            Padding::Valid => {
                let shrink = self.k.saturating_sub(1);
                (self.h.saturating_sub(shrink), self.w.saturating_sub(shrink))
            }
        }
    }
    /// Taps of the window: k * k.
    pub fn taps(&self) -> u64 {
        self.k as u64 * self.k as u64
    }
    pub fn input_len(&self) -> u64 {
        self.n as u64 * self.h as u64 * self.w as u64 * self.ci as u64
    }
    pub fn output_len(&self) -> u64 {
        let (ho, wo) = self.out_hw();
        self.n as u64 * ho as u64 * wo as u64 * self.co as u64
    }
    pub fn weight_len(&self) -> u64 {
        self.taps() * self.ci as u64 * self.co as u64
    }
    /// Multiply-adds of the forward pass (each backward product costs the same).
    pub fn macs(&self) -> u64 {
        self.output_len() * self.taps() * self.ci as u64
    }
    pub fn check(&self) -> Result<()> {
        if !CONV_KERNEL_SIZES.contains(&self.k) {
            return Err(Error::Shape {
                op: "conv2d",
                detail: format!("kernel size {}: the kernels take 1, 3, 5 or 7", self.k),
            });
        }
        let (ho, wo) = self.out_hw();
        if self.n == 0 || self.ci == 0 || self.co == 0 || ho == 0 || wo == 0 {
            return Err(Error::Shape {
                op: "conv2d",
                detail: format!("empty or too small: {self:?}"),
            });
        }
        Ok(())
    }
}

/// Input `[n, fin]`, kernel `[fin, fout]`, output `[n, fout]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    pub n: u32,
    pub fin: u32,
    pub fout: u32,
}

impl DenseShape {
    pub fn input_len(&self) -> u64 {
        self.n as u64 * self.fin as u64
    }
    pub fn output_len(&self) -> u64 {
        self.n as u64 * self.fout as u64
    }
    pub fn weight_len(&self) -> u64 {
        self.fin as u64 * self.fout as u64
    }
    pub fn check(&self) -> Result<()> {
        if self.n == 0 || self.fin == 0 || self.fout == 0 {
            return Err(Error::Shape {
                op: "dense",
                detail: format!("empty shape {self:?}"),
            });
        }
        Ok(())
    }
}

/// 2x2 max pooling, stride 2: input `[n, h, w, c]`, output `[n, ceil(h/2), ceil(w/2), c]`
/// ('same') or `[n, floor(h/2), floor(w/2), c]` ('valid').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub c: u32,
    /// 'same': out = ceil(in / 2); 'valid': out = floor(in / 2).
    pub padding: Padding,
}

impl PoolShape {
    pub fn out_hw(&self) -> (u32, u32) {
        match self.padding {
            Padding::Same => (self.h.div_ceil(2), self.w.div_ceil(2)),
            Padding::Valid => (self.h / 2, self.w / 2),
        }
    }
    pub fn input_len(&self) -> u64 {
        self.n as u64 * self.h as u64 * self.w as u64 * self.c as u64
    }
    pub fn output_len(&self) -> u64 {
        let (ho, wo) = self.out_hw();
        self.n as u64 * ho as u64 * wo as u64 * self.c as u64
    }
    pub fn check(&self) -> Result<()> {
        if self.output_len() == 0 {
            return Err(Error::Shape {
                op: "pool",
                detail: format!("empty shape {self:?}"),
            });
        }
        Ok(())
    }
}

/// A strided layer's index map (`shaders/stride.wgsl`): the small side `[n, h, w, c]`, the
/// big side `[n, hb, wb, c]`, small element `(y, x)` at big position `(2y + oy, 2x + ox)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrideShape {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub c: u32,
    pub hb: u32,
    pub wb: u32,
    pub oy: u32,
    pub ox: u32,
}

/// Whether a stride-2 map's small side of `size` pixels, from `offset` (0 or 1) on, lands
/// inside a big side of `big`: non-empty, and its last pixel at 2 (size - 1) + offset.
pub fn lands_inside(size: u32, offset: u32, big: u32) -> bool {
    size > 0 && offset <= 1 && 2 * (size - 1) + offset < big
}

impl StrideShape {
    pub fn small_len(&self) -> u64 {
        self.n as u64 * self.h as u64 * self.w as u64 * self.c as u64
    }
    pub fn big_len(&self) -> u64 {
        self.n as u64 * self.hb as u64 * self.wb as u64 * self.c as u64
    }
    /// Non-empty, offsets 0 or 1, and every small element inside the big side.
    pub fn check(&self) -> Result<()> {
        if self.small_len() == 0
            || !lands_inside(self.h, self.oy, self.hb)
            || !lands_inside(self.w, self.ox, self.wb)
        {
            return Err(Error::Shape {
                op: "stride",
                detail: format!("{self:?}: the small side must land inside the big one"),
            });
        }
        Ok(())
    }
}

/// Input `[n, h, w, c]`, output `[n, 2h, 2w, c]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpsampleShape {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub c: u32,
}

impl UpsampleShape {
    pub fn input_len(&self) -> u64 {
        self.n as u64 * self.h as u64 * self.w as u64 * self.c as u64
    }
    pub fn output_len(&self) -> u64 {
        4 * self.input_len()
    }
    pub fn check(&self) -> Result<()> {
        if self.input_len() == 0 {
            return Err(Error::Shape {
                op: "upsample",
                detail: format!("empty shape {self:?}"),
            });
        }
        Ok(())
    }
}

/// Keras' defaults: lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-7.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        }
    }
}

impl AdamConfig {
    /// alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), in f32 as Keras computes it.
    pub fn alpha(&self, t: u64) -> f32 {
        let t = t as f32;
        let b1 = 1.0 - self.beta1.powf(t);
        let b2 = 1.0 - self.beta2.powf(t);
        self.lr * b2.sqrt() / b1
    }
}
