//! Which layers a convolution takes over (`--folds`: an upsampling or zero insertion it reads
//! through, a pool or take it writes through, the batch gather), and what it then reads and
//! writes.
use super::Network;
use crate::gpu::{Gpu, Tensor};
use crate::model::{Layer, LayerOp};
use crate::ops::conv2d;
use crate::shapes::Padding;
use crate::Result;
use std::ops::Range;

impl Network {
    /// The layer whose forward pass gathers the batch from the split itself (`--folds
    /// gather`, a forward pass from the first layer): the model's first convolution, where
    /// only reshapes come before it, the inputs are the targets (no denoising noise) and its
    /// outputs cover every input pixel once (`conv2d::gathers`); None elsewhere, and then a
    /// gather dispatch runs first. The batch is written where the inputs are, for the loss
    /// and the layer's weight gradient.
    pub fn conv_gathering(&self, gpu: &Gpu, n: u32, range: &Range<usize>) -> Result<Option<usize>> {
        if !gpu.folds.gather || !self.inputs_are_targets() || range.start != 0 {
            return Ok(None);
        }
        let first = self
            .model
            .layers
            .iter()
            .position(|l| !matches!(l, Layer::Reshape { .. }));
        let Some(i) = first.filter(|i| range.contains(i)) else {
            return Ok(None);
        };
        let LayerOp::Conv2d { shape, .. } = self.model.op(i, n) else {
            return Ok(None);
        };
        let io = self.conv_io(gpu, i, n, range)?;
        Ok((io.x.buffer == self.input.buffer && conv2d::gathers(&shape, &io.folds())).then_some(i))
    }

    /// Whether layer i is a 2x upsampling that the convolution after it reads through
    /// (`conv2d::Input::Upsampled2x`) when both run in `range`: then the upsampling runs no
    /// dispatch, forward or backward, and its output and gradient buffers are never written.
    fn folded_upsample(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        if !range.contains(&i) || !range.contains(&(i + 1)) {
            return false;
        }
        let LayerOp::Upsample(_) = self.model.op(i, n) else {
            return false;
        };
        // A take the convolution keeps (a strided Conv2D's) goes first: one kernel folds
        // one of them.
        match self.model.op(i + 1, n) {
            LayerOp::Conv2d { shape, .. } => {
                conv2d::folds_upsample(gpu, &shape) && !self.folded_take(gpu, i + 2, n, range)
            }
            _ => false,
        }
    }

    /// Whether layer i is a zero insertion (a Keras Conv2DTranspose's) that the convolution
    /// after it reads through (`conv2d::Input::Inserted`) when both run in `range`: then the
    /// insertion runs no dispatch, forward or backward, and its output and gradient buffers
    /// are never written.
    fn folded_insert(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        self.strided_map_folded(gpu, i, i + 1, n, range).is_some()
    }

    /// The small side of layer `map`'s stride-2 index map where the convolution `conv` beside
    /// it takes the map over (both in `range`): an insertion in front of it, or a take after.
    fn strided_map_folded(
        &self,
        gpu: &Gpu,
        map: usize,
        conv: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Option<conv2d::Strided> {
        if !range.contains(&map) || !range.contains(&conv) {
            return None;
        }
        let LayerOp::Conv2d { shape, .. } = self.model.op(conv, n) else {
            return None;
        };
        let (small, folds) = match self.model.op(map, n) {
            LayerOp::StrideInsert(st) if conv == map + 1 => {
                let small = conv2d::Strided::small_side_of(&st);
                (small, conv2d::folds_insert(gpu, &shape, &small))
            }
            LayerOp::StrideTake(st) if map == conv + 1 => {
                let small = conv2d::Strided::small_side_of(&st);
                (small, conv2d::folds_take(gpu, &shape, &small))
            }
            _ => return None,
        };
        folds.then_some(small)
    }

    /// Whether layer i is a stride-2 take (a Keras strided Conv2D's) that the convolution
    /// before it computes only the kept outputs of (`conv2d::Folds::take`) when both run in
    /// `range`: then the take runs no dispatch, forward or backward, and the convolution's
    /// full output and gradient buffers are never written.
    pub(super) fn folded_take(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        i > 0 && self.strided_map_folded(gpu, i, i - 1, n, range).is_some()
    }

    /// Whether layer i is a 2x2 max pool that the convolution before it writes through
    /// (`conv2d::Pooled`) when both run in `range`: then the pool runs no dispatch, forward
    /// or backward, and the convolution's own output and gradient buffers are never written.
    pub(super) fn folded_pool(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        if i == 0 || !range.contains(&(i - 1)) || !range.contains(&i) {
            return false;
        }
        let LayerOp::Pool(_) = self.model.op(i, n) else {
            return false;
        };
        // An insertion the convolution reads through (a Conv2DTranspose's) goes first: one
        // kernel folds one of them.
        let inserted = i >= 2 && self.folded_insert(gpu, i - 2, n, range);
        let input = match i >= 2 && self.folded_upsample(gpu, i - 2, n, range) {
            true => conv2d::Input::Upsampled2x,
            false => conv2d::Input::Direct,
        };
        match self.model.op(i - 1, n) {
            LayerOp::Conv2d { shape, .. } => conv2d::folds_pool(gpu, &shape, input) && !inserted,
            _ => false,
        }
    }

    /// Whether layer i's work is done by the convolution beside it.
    pub(super) fn folded(&self, gpu: &Gpu, i: usize, n: u32, range: &Range<usize>) -> bool {
        self.folded_upsample(gpu, i, n, range)
            || self.folded_pool(gpu, i, n, range)
            || self.folded_insert(gpu, i, n, range)
            || self.folded_take(gpu, i, n, range)
    }

    /// What convolution i reads and writes: through a folded upsampling or zero insertion,
    /// that layer's input; through a folded pool, that layer's output and winners; through a
    /// folded take, that layer's output.
    pub(super) fn conv_io(
        &self,
        gpu: &Gpu,
        i: usize,
        n: u32,
        range: &Range<usize>,
    ) -> Result<ConvIo> {
        let below = i.checked_sub(1);
        let inserted = below.and_then(|b| self.strided_map_folded(gpu, b, i, n, range));
        let (input, x) = match (below, inserted) {
            (Some(b), Some(ins)) => (conv2d::Input::Inserted(ins), self.layer_input(b, n)),
            (Some(b), None) if self.folded_upsample(gpu, b, n, range) => {
                (conv2d::Input::Upsampled2x, self.layer_input(b, n))
            }
            _ => (conv2d::Input::Direct, self.layer_input(i, n)),
        };
        // (Layer i + 1 exists only when the pool is folded: test that first.)
        let pool = match self.folded_pool(gpu, i + 1, n, range) {
            true => match self.model.op(i + 1, n) {
                LayerOp::Pool(s) => Some((s.padding, self.winner(i + 1, s.output_len())?)),
                _ => None,
            },
            false => None,
        };
        let take = self.strided_map_folded(gpu, i + 1, i, n, range);
        let out = i + (pool.is_some() || take.is_some()) as usize;
        Ok(ConvIo {
            input,
            x,
            pool,
            take,
            out,
        })
    }

    /// Whether layer i + 1 is a pool or take folded into layer i, whose output gradient
    /// layer i then reads.
    pub(super) fn reads_folded_above(&self, gpu: &Gpu, i: usize, n: u32) -> bool {
        let all = 0..self.model.layers.len();
        self.folded_pool(gpu, i + 1, n, &all) || self.folded_take(gpu, i + 1, n, &all)
    }
}

/// What a convolution reads and writes, its folds included.
pub(super) struct ConvIo {
    pub(super) input: conv2d::Input,
    /// The tensor it reads.
    pub(super) x: Tensor,
    /// A folded pool's padding and winners.
    pub(super) pool: Option<(Padding, Tensor)>,
    /// A folded take's kept outputs.
    pub(super) take: Option<conv2d::Strided>,
    /// The layer whose output (and gradient) it writes (and reads): its own, or a folded
    /// pool's.
    pub(super) out: usize,
}

impl ConvIo {
    pub(super) fn folds(&self) -> conv2d::Folds<'_> {
        conv2d::Folds {
            input: self.input,
            pool: self.pool.as_ref().map(|(padding, winner)| conv2d::Pooled {
                padding: *padding,
                winner,
            }),
            take: self.take,
            gather: None,
        }
    }
}
