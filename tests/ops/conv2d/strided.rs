//! A convolution with a strided layer's index map folded in (a zero insertion before it, a
//! take after it), against the layers' references; and its refusal where no kernel takes it.
use super::*;

/// A convolution with a strided layer's index map folded in (the CPU set's kernels only):
/// `Inserted`, its input read through a zero insertion ([`Input::Inserted`], a Keras
/// Conv2DTranspose with strides 2; the shape's input is the big side), or `Taken`, every
/// other output kept ([`Folds::take`], a Keras Conv2D with strides 2). The reference is the
/// two layers' references in turn (each map's backward is the other map).
#[derive(Clone, Copy, Debug)]
pub(super) enum StridedConv {
    Inserted(Conv2dShape, Strided),
    Taken(Conv2dShape, Strided),
}

impl StridedConv {
    pub(super) fn shape(&self) -> Conv2dShape {
        match *self {
            StridedConv::Inserted(s, _) | StridedConv::Taken(s, _) => s,
        }
    }
    /// The same map with output channels `co`.
    fn with_co(&self, co: u32) -> Self {
        match *self {
            StridedConv::Inserted(s, m) => StridedConv::Inserted(Conv2dShape { co, ..s }, m),
            StridedConv::Taken(s, m) => StridedConv::Taken(Conv2dShape { co, ..s }, m),
        }
    }
    /// The map as the `stride` op's shape: the input's channels and big side for an
    /// insertion, the output's for a take.
    fn stride(&self) -> StrideShape {
        let (s, m, c, (hb, wb)) = match *self {
            StridedConv::Inserted(s, m) => (s, m, s.ci, (s.h, s.w)),
            StridedConv::Taken(s, m) => (s, m, s.co, s.out_hw()),
        };
        StrideShape {
            n: s.n,
            h: m.h,
            w: m.w,
            c,
            hb,
            wb,
            oy: m.oy,
            ox: m.ox,
        }
    }
    pub(super) fn folds(&self) -> Folds<'static> {
        match *self {
            StridedConv::Inserted(_, m) => Folds {
                input: Input::Inserted(m),
                ..Default::default()
            },
            StridedConv::Taken(_, m) => Folds {
                take: Some(m),
                ..Default::default()
            },
        }
    }
    fn inserted(&self) -> bool {
        matches!(self, StridedConv::Inserted(..))
    }
}

impl Weighted for StridedConv {
    const W_RANGE: f32 = 0.5;
    fn input_len(&self) -> u64 {
        match self.inserted() {
            true => self.stride().small_len(),
            false => self.shape().input_len(),
        }
    }
    fn output_len(&self) -> u64 {
        match self.inserted() {
            true => self.shape().output_len(),
            false => self.stride().small_len(),
        }
    }
    fn weight_len(&self) -> u64 {
        self.shape().weight_len()
    }
    fn bias_len(&self) -> u64 {
        self.shape().co as u64
    }
    fn runs_on(&self, g: &Gpu) -> bool {
        g.kernels == KernelSet::Cpu
    }
    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::conv2d::forward(s, relu, &reference::stride::insert(st, x), w, b),
            false => reference::stride::take(st, &reference::conv2d::forward(s, relu, x, w, b)),
        }
    }
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::stride::take(st, &reference::conv2d::backward_input(s, dy, w)),
            false => reference::conv2d::backward_input(s, &reference::stride::insert(st, dy), w),
        }
    }
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::conv2d::backward_weight(s, &reference::stride::insert(st, x), dy),
            false => reference::conv2d::backward_weight(s, x, &reference::stride::insert(st, dy)),
        }
    }
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32> {
        let (s, st) = (&self.shape(), &self.stride());
        match self.inserted() {
            true => reference::conv2d::backward_bias(s, dy),
            false => reference::conv2d::backward_bias(s, &reference::stride::insert(st, dy)),
        }
    }
    fn forward(
        &self,
        g: &Gpu,
        relu: bool,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::forward(g, "t", &self.shape(), &self.folds(), relu, x, w, b, y)
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        conv2d::backward_input(g, "t", &self.shape(), &self.folds(), go, w, dx)
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (s, f) = (&self.shape(), &self.folds());
        conv2d::backward_weight(g, "t", s, f, go, x, &partials(g, s, f)?, dw)
    }
    fn backward_bias(&self, _: &Gpu, _: &GradOut, _: &Tensor) -> Result<Vec<Dispatch>> {
        // The bias gradient's own kernel reads a full output's gradient: with a map folded
        // in it is the fused pass's (backward_params), tested there.
        Err(Error::Shape {
            op: "test",
            detail: "no separate bias kernel with a strided map folded in".into(),
        })
    }
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (s, f) = (&self.shape(), &self.folds());
        conv2d::backward_params(g, "t", s, f, go, x, &partials(g, s, f)?, dw, db)
    }
}

/// Inserted inputs: keras.io's Conv2DTranspose layers (7x7 and 14x14 x 32 -> 32, batch 2),
/// the seed's conv model rebuilt with transposed layers (4 -> 8 and 8 -> 16 with 8 -> 8 and
/// 8 -> 16 channels), odd sizes, channel counts that are not multiples of 4 (scalar loads
/// and stores), two groups on either side, an offset of 0, and a weight-gradient walk of
/// several chunks with a partial one (batch 3 on 14x14: 588 pixels of x, three chunks of 256).
pub(super) fn inserted_shapes() -> Vec<StridedConv> {
    let s = |n, h, w, ci, co, oy, ox| {
        StridedConv::Inserted(
            Conv2dShape {
                k: 3,
                n,
                h: 2 * h,
                w: 2 * w,
                ci,
                co,
                padding: Padding::Same,
            },
            Strided { h, w, oy, ox },
        )
    };
    vec![
        s(2, 7, 7, 32, 32, 1, 1),
        s(2, 14, 14, 32, 32, 1, 1),
        s(2, 4, 4, 8, 8, 1, 1),
        s(2, 8, 8, 8, 16, 1, 1),
        s(3, 3, 5, 5, 6, 1, 1),
        s(2, 5, 3, 2, 4, 1, 1),
        s(2, 3, 4, 20, 18, 1, 1),
        s(2, 4, 3, 7, 20, 0, 1),
        s(2, 3, 3, 6, 5, 0, 0),
        s(3, 14, 14, 16, 8, 1, 1),
        // more biases than the reduce's last workgroup has spare invocations for (its
        // extra invocations, one per bias, must be dispatched), and one pixel of three
        // channels (x smaller than a vec4: its vec4 binding is a placeholder)
        s(2, 2, 2, 4, 12, 1, 1),
        s(2, 3, 2, 2, 23, 0, 1),
        s(1, 1, 1, 3, 4, 1, 1),
    ]
}

#[test]
fn conv2d_inserted_input_forward_matches_reference() {
    weighted::forward(&inserted_shapes(), 1500, TOL);
}

#[test]
fn conv2d_inserted_input_backward_input_matches_reference() {
    weighted::backward_input(&inserted_shapes(), 1600, TOL);
}

#[test]
fn conv2d_inserted_input_backward_params_matches_reference() {
    weighted::backward_params(&inserted_shapes(), 1700, TOL);
}

#[test]
fn conv2d_inserted_input_backward_weight_matches_reference() {
    weighted::backward_weight(&inserted_shapes(), 1800, TOL);
}

/// Kept outputs: the strided Conv2D layers of `conv_strided.json` (28x28x1 -> 16 kept at
/// 14x14 from offset 1, its thin weight gradient; 14x14x16 -> 8 at 7x7 from 1; 7x7x8 -> 8 at
/// 4x4 from 0), odd sizes, 'valid', offsets that differ per axis, channel counts that are not
/// multiples of 4, two groups on either side, and weight-gradient walks of several chunks
/// (batch 8: 392 kept pixels at 7x7, 1568 at 14x14).
pub(super) fn taken_shapes() -> Vec<StridedConv> {
    let s = |n, h, w, ci, co, padding, th, tw, oy, ox| {
        StridedConv::Taken(
            Conv2dShape {
                k: 3,
                n,
                h,
                w,
                ci,
                co,
                padding,
            },
            Strided {
                h: th,
                w: tw,
                oy,
                ox,
            },
        )
    };
    let (same, valid) = (Padding::Same, Padding::Valid);
    vec![
        s(2, 28, 28, 1, 16, same, 14, 14, 1, 1),
        s(2, 14, 14, 16, 8, same, 7, 7, 1, 1),
        s(2, 7, 7, 8, 8, same, 4, 4, 0, 0),
        s(3, 9, 7, 5, 6, valid, 4, 3, 0, 0),
        s(2, 6, 5, 20, 18, same, 3, 2, 1, 0),
        s(2, 5, 6, 2, 20, same, 2, 3, 1, 0),
        s(2, 7, 5, 7, 4, same, 3, 3, 1, 0),
        s(8, 14, 14, 16, 8, same, 7, 7, 1, 1),
        s(8, 28, 28, 1, 16, same, 14, 14, 1, 1),
        // a side of 1: its odd phase of the input gradient is empty
        s(2, 1, 5, 4, 4, same, 1, 3, 0, 0),
        s(2, 5, 1, 6, 5, same, 3, 1, 0, 0),
    ]
}

#[test]
fn conv2d_taken_output_forward_matches_reference() {
    weighted::forward(&taken_shapes(), 1900, TOL);
}

#[test]
fn conv2d_taken_output_backward_input_matches_reference() {
    weighted::backward_input(&taken_shapes(), 2000, TOL);
}

#[test]
fn conv2d_taken_output_backward_params_matches_reference() {
    weighted::backward_params(&taken_shapes(), 2100, TOL);
}

#[test]
fn conv2d_taken_output_backward_weight_matches_reference() {
    weighted::backward_weight(&taken_shapes(), 2200, TOL);
}

/// The GPU set has no kernel that reads an inserted input or keeps every other output, nor
/// has the CPU set for shapes outside `takes_inserted` and `takes_taken`: each is refused as
/// a shape error, never run as something else.
#[test]
fn conv2d_strided_maps_are_refused_where_no_kernel_takes_them() {
    let (inserted, kept) = (inserted_shapes()[0], taken_shapes()[1]);
    let cases = [inserted, inserted.with_co(1), kept, kept.with_co(1)];
    each_gpu(|g, config| {
        let runs = |c: &StridedConv| g.kernels == KernelSet::Cpu && c.shape().co >= 4;
        for case in cases.iter().filter(|c| !runs(c)) {
            expect_refused(g, config, *case);
        }
    });
}

/// Fails unless `case`'s forward is refused on `g` as a shape error naming the strided map.
fn expect_refused(g: &Gpu, config: &str, case: StridedConv) {
    let x = g.tensor("x", case.input_len()).or_fail(config);
    let w = g.tensor("w", case.weight_len()).or_fail(config);
    let b = g.tensor("b", case.bias_len()).or_fail(config);
    let y = g.tensor("y", case.output_len()).or_fail(config);
    match case.forward(g, false, &x, &w, &b, &y) {
        Err(Error::Shape { op, detail }) => assert!(
            op == "conv2d" && detail.contains("an inserted input or kept outputs"),
            "{config}: {op}: {detail}"
        ),
        Err(e) => panic!("{config}: refused, but not as a shape error: {e}"),
        Ok(_) => panic!("{config}: {case:?} ran on the {} set", g.kernels),
    }
}
