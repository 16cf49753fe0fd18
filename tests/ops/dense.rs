//! dense: forward (with and without ReLU), backward input, weight and bias.
//! Tolerance: 1e-5 of the output's scale (f32 sums of at most 784 products).
use crate::common::{self, OrFail};
use crate::weighted::{self, Weighted};
use wgsl_autoencoder::gpu::{Dispatch, Gpu, Tensor};
use wgsl_autoencoder::ops::dense::{self, GradOut};
use wgsl_autoencoder::shapes::DenseShape;
use wgsl_autoencoder::{reference, Result};

const TOL: f64 = 1e-5;

fn shapes() -> Vec<DenseShape> {
    let s = |n, fin, fout| DenseShape { n, fin, fout };
    // odd, then the dense and deep models' layers, batch 3 (long sums over 784 inputs or
    // outputs take the split-K kernels), then a batch of 130 (split-K weight gradients).
    // On the CPU set: the kernel through one or two uniform windows (784 x 32, 32 x 784 split
    // at row 20), the input (x = 3 x 784) or the output gradient (130 x 32; 40 x 12 after an
    // input too wide for the windows) through one, with odd vec4 counts on both sides.
    vec![
        s(130, 20, 9),
        s(130, 784, 32),
        s(5, 36, 12),
        s(40, 900, 12),
        s(3, 7, 5),
        s(1, 1, 1),
        s(3, 784, 32),
        s(3, 32, 784),
        s(3, 784, 128),
        s(3, 128, 64),
        s(3, 64, 32),
    ]
}

impl Weighted for DenseShape {
    const W_RANGE: f32 = 0.3;
    fn input_len(&self) -> u64 {
        DenseShape::input_len(self)
    }
    fn output_len(&self) -> u64 {
        DenseShape::output_len(self)
    }
    fn weight_len(&self) -> u64 {
        DenseShape::weight_len(self)
    }
    fn bias_len(&self) -> u64 {
        self.fout as u64
    }
    fn ref_forward(&self, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        reference::dense::forward(self, relu, x, w, b)
    }
    fn ref_backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        reference::dense::backward_input(self, dy, w)
    }
    fn ref_backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        reference::dense::backward_weight(self, x, dy)
    }
    fn ref_backward_bias(&self, dy: &[f32]) -> Vec<f32> {
        reference::dense::backward_bias(self, dy)
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
        Ok(vec![dense::forward(g, "t", self, relu, x, w, b, y)?])
    }
    fn backward_input(
        &self,
        g: &Gpu,
        go: &GradOut,
        w: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::backward_input(g, "t", self, go, w, dx)?])
    }
    fn backward_weight(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::backward_weight(g, "t", self, go, x, dw)?])
    }
    fn backward_bias(&self, g: &Gpu, go: &GradOut, db: &Tensor) -> Result<Vec<Dispatch>> {
        Ok(vec![dense::backward_bias(g, "t", self, go, db)?])
    }
    fn backward_params(
        &self,
        g: &Gpu,
        go: &GradOut,
        x: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        dense::backward_params(g, "t", self, go, x, dw, db)
    }
}

#[test]
fn dense_forward_matches_reference() {
    weighted::forward(&shapes(), 0, TOL);
}

#[test]
fn dense_backward_input_matches_reference() {
    weighted::backward_input(&shapes(), 10, TOL);
}

#[test]
fn dense_backward_weight_matches_reference() {
    weighted::backward_weight(&shapes(), 20, TOL);
}

#[test]
fn dense_backward_bias_matches_reference() {
    weighted::backward_bias(&shapes(), 30, TOL);
}

/// The fused path training runs: kernel and bias gradients together (split-K from a batch of
/// 128 on, with the bias as an extra input row).
#[test]
fn dense_backward_params_matches_reference() {
    weighted::backward_params(&shapes(), 40, TOL);
}

/// A stack for `dense::rows`: the input's width, then each layer's units, ReLU and bias.
struct Stack {
    n: u32,
    fin: u32,
    layers: Vec<(u32, bool, bool)>,
}

/// `dense::rows` (`--folds rows`) writes what the per-layer kernels write: every layer's
/// output, the logits' gradient (as `bce.sigmoid_backward`) and every input gradient down to
/// the first layer's output; and where it takes the stack, `dense::grads` (`--folds grads`)
/// after it writes what each layer's `dense::backward_params` and `bce.loss_partial` write.
/// On the GPU set bit for bit (the same sums in the same order:
/// sequential below 128 terms, split-K's lanes and tree from 128 on, forward and backward);
/// on the CPU set, whose per-layer kernels sum their own way, to float rounding. On the GPU
/// set both with one sample per workgroup (`single`, in its `auto`) and with two, where odd
/// batches leave a workgroup's second row empty and layers narrower than 32 share a pass
/// between the two samples; the outputs start as NaN.
#[test]
fn dense_rows_and_grads_equal_the_layers_one_by_one() {
    let stack = |n, fin, layers: &[(u32, bool, bool)]| Stack {
        n,
        fin,
        layers: layers.to_vec(),
    };
    let stacks = [
        // sequential and split products both ways, a layer without a bias, an odd batch
        stack(
            7,
            37,
            &[(130, true, true), (5, true, false), (150, false, true)],
        ),
        // the dense model's layers
        stack(5, 784, &[(32, true, true), (784, false, true)]),
        // one layer: no input gradient to write
        stack(1, 3, &[(2, false, true)]),
        // batches past the weight gradient's split, for dense::grads too: the dense model,
        // and three layers, one without a bias
        stack(130, 784, &[(32, true, true), (784, false, true)]),
        stack(
            129,
            36,
            &[(132, true, true), (8, true, false), (152, false, true)],
        ),
    ];
    let run_stacks = |g: &Gpu, config: &str| {
        for (k, st) in stacks.iter().enumerate() {
            let what = format!("{config}: stack {k}");
            let t0 = std::time::Instant::now();
            rows_case(g, st, 60 + k as u64, &what);
            eprintln!("{what}: {:.1}s", t0.elapsed().as_secs_f64());
        }
    };
    common::each_kernel_set(run_stacks);
    // The GPU set with two samples per workgroup too, bit for bit (its `auto` takes one).
    run_stacks(
        &two_samples_per_workgroup(),
        "gpu set, two samples per workgroup",
    );
}

/// The GPU set with every fold but `single`: `dense::rows` takes two samples per workgroup.
fn two_samples_per_workgroup() -> Gpu {
    use wgsl_autoencoder::gpu::{FoldSet, KernelSet};
    let two = FoldSet {
        single: false,
        ..FoldSet::ALL
    };
    let g = common::open_with_folds(KernelSet::Gpu, two);
    assert_eq!(dense::stack_rows(&g, 784 + 32 + 784), Some(2));
    g
}

/// `dense::rows` gathering its own samples (`--folds gather`) writes what `batch::gather`
/// and then `dense::rows` on that batch write: the batch itself, every output and gradient,
/// bit for bit on both kernel sets (the same pixel conversion and the same sums). Images
/// straddling packed words (37 pixels), an odd batch, a layer without a bias, a batch past the
/// split, an offset into a shuffled order, one and two samples per workgroup; every output
/// starts as NaN; the batch is the reference's to the bit. A stack
/// that is no autoencoder, or an order or images too short for the batch, is refused.
#[test]
fn dense_rows_gather_equals_gather_then_rows() {
    use rand::seq::SliceRandom;
    use wgsl_autoencoder::ops::batch;
    let cases = [
        // (batch, layers: units, ReLU, bias)
        (3u32, vec![(5u32, true, true), (37u32, false, true)]),
        (7, vec![(12, true, false), (36, false, true)]),
        (5, vec![(32, true, true), (784, false, true)]),
        (130, vec![(32, true, true), (784, false, true)]),
    ];
    let run_cases = |g: &Gpu, config: &str| {
        for (k, (n, units)) in cases.iter().enumerate() {
            let what = format!("{config}: gathering stack {k}");
            let pixels = units.last().map_or(0, |u| u.0);
            let mut rng = common::rng(90 + k as u64);
            let count = *n as usize + 4;
            let images: Vec<u8> = (0..count * pixels as usize)
                .map(|_| rand::Rng::random(&mut rng))
                .collect();
            let mut order: Vec<u32> = (0..count as u32).collect();
            order.shuffle(&mut rng);
            let offset = 3u32;
            let up_u32 = |v: &[u32]| g.upload("t", v).or_fail(&what);
            let (img, ord) = (up_u32(&batch::pack_pixels(&images)), up_u32(&order));
            let widths: Vec<u32> = std::iter::once(pixels)
                .chain(units.iter().map(|u| u.0))
                .collect();
            let (params, table, starts) = random_stack(&mut rng, *n, &widths, units);
            let pt = g.upload("t", &params).or_fail(&what);
            let poison = |len: u64| g.poisoned("t", len.max(1)).or_fail(&what);
            let batch_len = *n as u64 * pixels as u64;
            // Each run: the batch, then the two arenas of outputs and of gradients.
            let read = |ts: &[&Tensor]| -> Vec<Vec<u32>> {
                ts.iter().map(|t| g.read::<u32>(t).or_fail(&what)).collect()
            };
            let run_rows = |gathering: bool, backward: bool| {
                let (x, acts, dacts) = (
                    poison(batch_len),
                    [poison(starts[0]), poison(starts[1])],
                    [poison(starts[0]), poison(starts[1])],
                );
                let (a, d) = ([&acts[0], &acts[1]], [&dacts[0], &dacts[1]]);
                let mut steps = Vec::new();
                let input = if gathering {
                    dense::StackInput::Gather {
                        images: &img,
                        order: &ord,
                        batch: &x,
                    }
                } else {
                    let p = batch::Params {
                        n: *n,
                        pixels,
                        offset,
                        seed: 0,
                        noise: 0.0,
                        _p: [0; 3],
                    };
                    steps.push(batch::gather(g, "t", &p, &img, &ord, &x).or_fail(&what));
                    dense::StackInput::Batch { x: &x, target: &x }
                };
                let rows =
                    dense::rows(g, "t", *n, &table, backward, input, &pt, a, d).or_fail(&what);
                if gathering {
                    dense::set_rows_offset(&rows, 0, offset);
                    rows.flush(g);
                }
                steps.push(rows);
                wgsl_autoencoder::ops::run(g, &steps).or_fail(&what);
                read(&[&x, &acts[0], &acts[1], &dacts[0], &dacts[1]])
            };
            let plain = run_rows(false, true);
            let gathered = run_rows(true, true);
            for (name, (got, want)) in ["batch", "outputs", "outputs", "gradients", "gradients"]
                .iter()
                .zip(gathered.iter().zip(&plain))
            {
                assert!(got == want, "{what}: {name} not the same bits");
            }
            let want = reference::batch::gather(
                &images,
                pixels as usize,
                &order,
                offset as usize,
                *n as usize,
            );
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert!(
                gathered[0] == want,
                "{what}: the batch is not the reference's bits"
            );
            // Forward only: the same outputs, no gradient written.
            let forward = run_rows(true, false);
            assert!(
                forward[..3] == gathered[..3],
                "{what}: forward only's outputs"
            );
            assert!(
                forward[3..]
                    .iter()
                    .flatten()
                    .all(|b| f32::from_bits(*b).is_nan()),
                "{what}: forward only wrote gradients"
            );
        }
        // Refused: outputs that are not the inputs' width, an order or images too short for
        // the batch of 3 (3 images of 4 pixels take 3 packed words).
        let t = |len: u64| g.poisoned("t", len).or_fail(config);
        let (x, w) = (t(12), t(64));
        let (a, d) = ([&t(16), &t(16)], [&t(16), &t(16)]);
        let refusal = |fout: u32, images: u64, order: u64| {
            let layer = dense::StackLayer {
                s: DenseShape { n: 3, fin: 4, fout },
                relu: false,
                kernel: 0,
                bias: None,
                out: 0,
                dout: 0,
            };
            let (images, order) = (t(images), t(order));
            let gather = dense::StackInput::Gather {
                images: &images,
                order: &order,
                batch: &x,
            };
            let r = dense::rows(g, "t", 3, &[layer], true, gather, &w, a, d);
            r.err().map(|e| e.to_string()).unwrap_or_default()
        };
        for (fout, images, order, want) in [
            (5, 16, 3, "autoencoder"),
            (4, 16, 2, "cannot hold a batch of 3"),
            (4, 2, 3, "cannot hold a batch of 3"),
        ] {
            let got = refusal(fout, images, order);
            assert!(got.contains(want), "{config}: {got}");
        }
    };
    common::each_kernel_set(run_cases);
    // The GPU set with two samples per workgroup too (its `auto` takes one): odd batches
    // leave a workgroup's second row past the batch.
    run_cases(
        &two_samples_per_workgroup(),
        "gpu set, two samples per workgroup",
    );
}

/// A random stack for a batch of n through `widths` (the input's, then each layer's), each of
/// `layers` (units, ReLU, bias): every kernel and bias in one parameter buffer, 64-float
/// aligned as the model's (weights uniform in ±0.3), and the table with each layer's output
/// and gradient at the same offset of the buffers of its parity; those buffers' lengths.
fn random_stack(
    rng: &mut rand_chacha::ChaCha8Rng,
    n: u32,
    widths: &[u32],
    layers: &[(u32, bool, bool)],
) -> (Vec<f32>, Vec<dense::StackLayer>, [u64; 2]) {
    let align = |v: u64| v.div_ceil(64) * 64;
    let mut params = Vec::new();
    let mut table = Vec::new();
    let mut starts = [0u64; 2];
    for (l, &(fout, relu, bias)) in layers.iter().enumerate() {
        let kernel = params.len() as u64;
        params.extend(common::uniform(rng, (widths[l] * fout) as usize, -0.3, 0.3));
        params.resize(align(params.len() as u64) as usize, 0.0);
        let bias = bias.then_some(params.len() as u64);
        if bias.is_some() {
            params.extend(common::uniform(rng, fout as usize, -0.3, 0.3));
            params.resize(align(params.len() as u64) as usize, 0.0);
        }
        let start = starts[l % 2];
        starts[l % 2] += align(n as u64 * fout as u64);
        table.push(dense::StackLayer {
            s: DenseShape {
                n,
                fin: widths[l],
                fout,
            },
            relu,
            kernel,
            bias,
            out: start,
            dout: start,
        });
    }
    (params, table, starts)
}

fn rows_case(g: &Gpu, st: &Stack, seed: u64, what: &str) {
    use wgsl_autoencoder::gpu::KernelSet;
    use wgsl_autoencoder::ops::bce;
    let mut rng = common::rng(seed);
    let n = st.n as u64;
    let widths: Vec<u32> = std::iter::once(st.fin)
        .chain(st.layers.iter().map(|l| l.0))
        .collect();
    let shape = |l: usize| DenseShape {
        n: st.n,
        fin: widths[l],
        fout: widths[l + 1],
    };
    let (params, table, starts) = random_stack(&mut rng, st.n, &widths, &st.layers);
    let last = st.layers.len() - 1;
    let x = common::uniform(&mut rng, (n * st.fin as u64) as usize, 0.0, 1.0);
    let t = common::uniform(&mut rng, (n * widths[last + 1] as u64) as usize, 0.0, 1.0);
    let up = |v: &[f32]| g.upload("t", v).or_fail(what);
    let (xt, tt, pt) = (up(&x), up(&t), up(&params));
    let poison = |len: u64| g.poisoned("t", len).or_fail(what);
    let zeros = up(&vec![
        0.0;
        widths.iter().max().copied().unwrap_or(1) as usize
    ]);

    // One by one: each layer's forward, the logits' gradient, each input gradient.
    let outs: Vec<Tensor> = (0..=last).map(|l| poison(shape(l).output_len())).collect();
    let grads: Vec<Tensor> = (0..=last).map(|l| poison(shape(l).output_len())).collect();
    // Layer l's input in the one-by-one run: the batch, or the layer below's output.
    let input_of = |l: usize| if l == 0 { &xt } else { &outs[l - 1] };
    let mut plain = Vec::new();
    for (l, &(_, relu, _)) in st.layers.iter().enumerate() {
        let s = shape(l);
        let input = input_of(l);
        let w = pt.view(table[l].kernel, s.weight_len());
        let b = match table[l].bias {
            Some(b) => pt.view(b, s.fout as u64),
            None => zeros.view(0, s.fout as u64),
        };
        plain.push(dense::forward(g, "t", &s, relu, input, &w, &b, &outs[l]).or_fail(what));
    }
    plain.push(bce::sigmoid_backward(g, "t", &outs[last], &tt, &grads[last]).or_fail(what));
    for l in (1..=last).rev() {
        let s = shape(l);
        let go = GradOut {
            dy: &grads[l],
            relu_output: st.layers[l].1.then_some(&outs[l]),
        };
        let w = pt.view(table[l].kernel, s.weight_len());
        plain.push(dense::backward_input(g, "t", &s, &go, &w, &grads[l - 1]).or_fail(what));
    }
    wgsl_autoencoder::ops::run(g, &plain).or_fail(what);

    // As one dispatch, each layer's tensors in the buffers of its parity.
    let arenas = |_| [poison(starts[0].max(1)), poison(starts[1].max(1))];
    let run_rows = |backward: bool| {
        let (acts, dacts) = (arenas(0), arenas(1));
        let (a, d) = ([&acts[0], &acts[1]], [&dacts[0], &dacts[1]]);
        let input = dense::StackInput::Batch {
            x: &xt,
            target: &tt,
        };
        let dispatch = dense::rows(g, "t", st.n, &table, backward, input, &pt, a, d).or_fail(what);
        wgsl_autoencoder::ops::run(g, &[dispatch]).or_fail(what);
        (acts, dacts)
    };
    let (acts, dacts) = run_rows(true);
    // Forward only: the same outputs, no gradient written.
    let (forward_acts, forward_dacts) = run_rows(false);
    for k in 0..2 {
        let bits = |t: &Tensor| g.read::<u32>(t).or_fail(what);
        assert!(
            bits(&forward_acts[k]) == bits(&acts[k]),
            "{what}: forward only's outputs"
        );
        let untouched = g.read::<f32>(&forward_dacts[k]).or_fail(what);
        assert!(
            untouched.iter().all(|v| v.is_nan()),
            "{what}: forward only wrote gradients"
        );
    }

    let same = |case: &str, got: &[f32], want: &[f32]| {
        if g.kernels == KernelSet::Gpu {
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(got) == bits(want), "{case}: not the same bits");
        } else {
            common::assert_close(case, got, want, TOL);
        }
    };
    if dense::grads_fit(&table, st.n) {
        // Each layer's weight gradient and the loss's partial sums, one by one and folded,
        // into gradient buffers laid out as the parameters (padding left NaN by both).
        let total = n * widths[last + 1] as u64;
        let (plain_g, folded_g) = (poison(params.len() as u64), poison(params.len() as u64));
        let (plain_p, folded_p) = (
            poison(bce::partials_len(total)),
            poison(bce::partials_len(total)),
        );
        let discard = poison(widths.iter().max().copied().unwrap_or(1) as u64);
        let mut plain = Vec::new();
        for (l, &(fout, relu, _)) in st.layers.iter().enumerate() {
            let s = shape(l);
            let input = input_of(l);
            let go = GradOut {
                dy: &grads[l],
                relu_output: relu.then_some(&outs[l]),
            };
            let dw = plain_g.view(table[l].kernel, s.weight_len());
            let db = match table[l].bias {
                Some(b) => plain_g.view(b, fout as u64),
                None => discard.view(0, fout as u64),
            };
            plain.extend(dense::backward_params(g, "t", &s, &go, input, &dw, &db).or_fail(what));
        }
        plain.push(bce::loss_partial(g, "t", &outs[last], &tt, &plain_p).or_fail(what));
        wgsl_autoencoder::ops::run(g, &plain).or_fail(what);
        let d = dense::grads(
            g,
            "t",
            st.n,
            &table,
            &xt,
            [&acts[0], &acts[1]],
            [&dacts[0], &dacts[1]],
            &folded_g,
            &tt,
            &folded_p,
        )
        .or_fail(what);
        wgsl_autoencoder::ops::run(g, &[d]).or_fail(what);
        let read = |t: &Tensor| g.read::<f32>(t).or_fail(what);
        for (l, &(fout, _, _)) in st.layers.iter().enumerate() {
            let s = shape(l);
            let view = |t: &Tensor, at: u64, len: u64| read(&t.view(at, len));
            let case = format!("{what}: layer {l}'s kernel gradient");
            let (kernel, len) = (table[l].kernel, s.weight_len());
            same(
                &case,
                &view(&folded_g, kernel, len),
                &view(&plain_g, kernel, len),
            );
            if let Some(b) = table[l].bias {
                let case = format!("{what}: layer {l}'s bias gradient");
                let len = fout as u64;
                same(&case, &view(&folded_g, b, len), &view(&plain_g, b, len));
            }
        }
        same(
            &format!("{what}: loss partials"),
            &read(&folded_p),
            &read(&plain_p),
        );
        // What no gradient fills (the alignment padding) stays as it was.
        let untouched = |v: Vec<f32>| v.iter().filter(|f| f.is_nan()).count();
        assert_eq!(
            untouched(read(&folded_g)),
            untouched(read(&plain_g)),
            "{what}: padding written"
        );
        if dense::grads_adam_fits(g) {
            let plain = Grads {
                grads: read(&plain_g),
                partials: read(&plain_p),
            };
            let io = GradsCase {
                table: &table,
                x: &xt,
                target: &tt,
                acts: [&acts[0], &acts[1]],
                dacts: [&dacts[0], &dacts[1]],
            };
            grads_adam_case(g, &io, &params, &plain, seed, what);
        }
    }

    let read = |t: &Tensor| g.read::<f32>(t).or_fail(what);
    for (l, row) in table.iter().enumerate() {
        let len = shape(l).output_len();
        let folded = [
            read(&acts[l % 2].view(row.out, len)),
            read(&dacts[l % 2].view(row.dout, len)),
        ];
        for (name, got, want) in [
            ("output", &folded[0], read(&outs[l])),
            ("gradient", &folded[1], read(&grads[l])),
        ] {
            let case = format!("{what}: layer {l}'s {name}");
            same(&case, got, &want);
        }
    }
}

/// The vec4 variants (`--folds vec4`) of the split-K forward pass and weight gradient give the
/// scalar kernels' bits: the same products in the same order, loaded 4 features at a time.
/// Both on the GPU set (where `auto` picks them), at the dense and deep models' shapes with a
/// batch past the weight gradient's split, ReLU on and off; the outputs start as NaN.
#[test]
fn dense_vec4_variants_give_the_scalar_kernels_bits() {
    use wgsl_autoencoder::gpu::{FoldSet, KernelSet};
    let open = |folds| common::open_with_folds(KernelSet::Gpu, folds);
    let (scalar, vec4) = (open(FoldSet::NONE), open(FoldSet::ALL));
    let s = |n, fin, fout| DenseShape { n, fin, fout };
    for (k, shape) in [s(130, 784, 32), s(256, 32, 784), s(129, 128, 64)]
        .iter()
        .enumerate()
    {
        for relu in [false, true] {
            let what = format!("{shape:?}, relu {relu}");
            let mut rng = common::rng(80 + k as u64);
            let x = common::uniform(&mut rng, shape.input_len() as usize, -1.0, 1.0);
            let w = common::uniform(&mut rng, shape.weight_len() as usize, -0.3, 0.3);
            let b = common::uniform(&mut rng, shape.fout as usize, -0.3, 0.3);
            let dy = common::uniform(&mut rng, shape.output_len() as usize, -1.0, 1.0);
            let run = |g: &Gpu| {
                let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
                let (xt, wt, bt, dyt) = (up(&x), up(&w), up(&b), up(&dy));
                let y = g.poisoned("y", shape.output_len()).or_fail(&what);
                let dw = g.poisoned("dw", shape.weight_len()).or_fail(&what);
                let db = g.poisoned("db", shape.fout as u64).or_fail(&what);
                let fwd = dense::forward(g, "t", shape, relu, &xt, &wt, &bt, &y).or_fail(&what);
                wgsl_autoencoder::ops::run(g, &[fwd]).or_fail(&what);
                let go = GradOut {
                    dy: &dyt,
                    relu_output: relu.then_some(&y),
                };
                let d = dense::backward_params(g, "t", shape, &go, &xt, &dw, &db).or_fail(&what);
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
                [y, dw, db].map(|t| g.read::<u32>(&t).or_fail(&what))
            };
            let (a, b) = (run(&scalar), run(&vec4));
            for (name, i) in [("y", 0), ("dw", 1), ("db", 2)] {
                assert!(a[i] == b[i], "{what}: {name} differs");
                let nan = b[i].iter().any(|v| f32::from_bits(*v).is_nan());
                assert!(!nan, "{what}: {name} left unwritten");
            }
        }
    }
}

/// The CPU set's `windows` variant (its `auto`) gives the register-tiled kernels' bits: the
/// same products in the same order, one operand read through uniform windows. At the dense
/// model's layers (the kernel in two windows, split at a row for the forward pass, and too
/// big for the input gradient's one; the narrow side's input or output gradient in one) and
/// odd shapes (vec4 counts that leave the 8 x 32 tiles partial, an input too wide for the
/// windows, an input that would take two, so the output gradient is read there), ReLU on
/// and off, batches of 256 and odd ones; the outputs start as NaN. Each direction is checked
/// to have taken a window entry point exactly where its operand fits.
#[test]
fn dense_cpu_windows_give_the_register_tiled_bits() {
    use wgsl_autoencoder::gpu::{FoldSet, KernelSet};
    let open = |folds| common::open_with_folds(KernelSet::Cpu, folds);
    let windows = FoldSet {
        windows: true,
        ..FoldSet::NONE
    };
    let (tiled, windowed) = (open(FoldSet::NONE), open(windows));
    let s = |n, fin, fout| DenseShape { n, fin, fout };
    // The last: a kernel in one window where no split at 4k rows would keep the alignment.
    let shapes = [
        s(256, 784, 32),
        s(256, 32, 784),
        s(5, 36, 12),
        s(40, 900, 12),
        s(3, 128, 64),
        s(3, 8, 1028),
        s(200, 128, 16),
    ];
    for (k, shape) in shapes.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{shape:?}, relu {relu}");
            let mut rng = common::rng(90 + k as u64);
            let x = common::uniform(&mut rng, shape.input_len() as usize, -1.0, 1.0);
            let w = common::uniform(&mut rng, shape.weight_len() as usize, -0.3, 0.3);
            let b = common::uniform(&mut rng, shape.fout as usize, -0.3, 0.3);
            let dy = common::uniform(&mut rng, shape.output_len() as usize, -1.0, 1.0);
            let run = |g: &Gpu| {
                let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
                let (xt, wt, bt, dyt) = (up(&x), up(&w), up(&b), up(&dy));
                let y = g.poisoned("y", shape.output_len()).or_fail(&what);
                let dx = g.poisoned("dx", shape.input_len()).or_fail(&what);
                let dw = g.poisoned("dw", shape.weight_len()).or_fail(&what);
                let db = g.poisoned("db", shape.fout as u64).or_fail(&what);
                let fwd = dense::forward(g, "t", shape, relu, &xt, &wt, &bt, &y).or_fail(&what);
                let mut entries = vec![fwd.source.entry];
                wgsl_autoencoder::ops::run(g, &[fwd]).or_fail(&what);
                let go = GradOut {
                    dy: &dyt,
                    relu_output: relu.then_some(&y),
                };
                let bi = dense::backward_input(g, "t", shape, &go, &wt, &dx).or_fail(&what);
                let bp = dense::backward_params(g, "t", shape, &go, &xt, &dw, &db).or_fail(&what);
                entries.push(bi.source.entry);
                entries.extend(bp.iter().map(|d| d.source.entry));
                wgsl_autoencoder::ops::run(g, &[bi]).or_fail(&what);
                wgsl_autoencoder::ops::run(g, &bp).or_fail(&what);
                let out = [y, dx, dw, db].map(|t| g.read::<u32>(&t).or_fail(&what));
                (out, entries)
            };
            let ((a, plain), (b, win)) = (run(&tiled), run(&windowed));
            assert!(
                plain.iter().all(|e| !e.ends_with("_win")),
                "{what}: {plain:?}"
            );
            // The forward pass's kernel fits in two windows in each shape; the input
            // gradient's kernel must fit in one, and the weight gradient reads x through one
            // where it fits, else the (unmasked) output gradient where that does.
            let one = |len: u64| len <= 16384;
            let bp_win = one(shape.input_len()) || (!relu && one(shape.output_len()));
            let want = [true, one(shape.weight_len()), bp_win];
            for (entry, wanted) in win.iter().zip(want) {
                assert_eq!(entry.ends_with("_win"), wanted, "{what}: {win:?}");
            }
            for (name, i) in [("y", 0), ("dx", 1), ("dw", 2), ("db", 3)] {
                assert!(a[i] == b[i], "{what}: {name} differs");
                let nan = b[i].iter().any(|v| f32::from_bits(*v).is_nan());
                assert!(!nan, "{what}: {name} left unwritten");
            }
        }
    }
}

/// What [`grads_adam_case`] checks against: the per-layer kernels' gradients (laid out as the
/// parameters, NaN in the padding) and `bce.loss_partial`'s partial sums.
struct Grads {
    grads: Vec<f32>,
    partials: Vec<f32>,
}

/// What `dense::rows` left for a stack's weight gradients.
struct GradsCase<'a> {
    table: &'a [dense::StackLayer],
    x: &'a Tensor,
    target: &'a Tensor,
    acts: [&'a Tensor; 2],
    dacts: [&'a Tensor; 2],
}

/// `dense::grads_adam` (`--folds adam`) writes the gradients `plain` holds, and takes Adam's
/// step 3 over them from random moments as `adam::step` does (on the GPU set bit for bit, on
/// the CPU set, whose per-layer kernels and Adam sum and update their own way, to float
/// rounding), leaving the padding
/// between parameters as it was; and its loss partials go into the region staged for its
/// uniform slot (the second of three, the others left as they were), after the header
/// `bce::loss_finish_steps` reads, which then writes `loss_finish`'s bits into the slot staged.
fn grads_adam_case(
    g: &Gpu,
    io: &GradsCase<'_>,
    params: &[f32],
    plain: &Grads,
    seed: u64,
    what: &str,
) {
    use wgsl_autoencoder::gpu::KernelSet;
    use wgsl_autoencoder::ops::{adam, bce};
    use wgsl_autoencoder::shapes::AdamConfig;
    let mut rng = common::rng(seed + 100);
    let len = params.len();
    let m0 = common::uniform(&mut rng, len, -0.1, 0.1);
    let v0 = common::uniform(&mut rng, len, 0.0, 0.01);
    let up = |v: &[f32]| g.upload("t", v).or_fail(what);
    let read = |t: &Tensor| g.read::<f32>(t).or_fail(what);
    let cfg = AdamConfig::default();
    let (t, slot) = (3, 5);
    let n = io.table[0].s.n;
    let total = n as u64 * io.table.last().map_or(0, |l| l.s.fout) as u64;
    let stride = bce::step_region_len(total);

    let (w2, m2, v2) = (up(params), up(&m0), up(&v0));
    let grads = g.poisoned("grads", len as u64).or_fail(what);
    let regions = g.poisoned("regions", 3 * stride).or_fail(what);
    let adam_io = dense::AdamIo {
        params: &w2,
        m: &m2,
        v: &v2,
        regions: &regions,
    };
    let (a, d) = (io.acts, io.dacts);
    let fused = dense::grads_adam(
        g, "t", n, io.table, io.x, a, d, &grads, io.target, &adam_io, &cfg,
    )
    .or_fail(what)
    .with_slots(g, 2)
    .or_fail(what);
    dense::set_grads_adam_step(&fused, 1, stride, slot, &cfg, t);
    fused.flush(g);
    common::run_slot(g, &fused, 1);

    let same = |case: &str, got: &[f32], want: &[f32]| {
        if g.kernels == KernelSet::Gpu {
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(got) == bits(want), "{what}: {case}: not the same bits");
        } else {
            common::assert_close(&format!("{what}: {case}"), got, want, TOL);
        }
    };
    let got_g = read(&grads);
    // Where a gradient belongs (the padding is NaN in both).
    let written: Vec<usize> = (0..len).filter(|&i| !plain.grads[i].is_nan()).collect();
    let pick = |v: &[f32]| written.iter().map(|&i| v[i]).collect::<Vec<_>>();
    same("gradients", &pick(&got_g), &pick(&plain.grads));
    let unwritten = got_g.iter().filter(|v| v.is_nan()).count();
    assert_eq!(unwritten, len - written.len(), "{what}: padding written");
    // adam.step over the gradients it wrote (padding zeroed: Adam leaves a weight whose
    // gradient is zero as it is).
    let (w1, m1, v1) = (up(params), up(&m0), up(&v0));
    let gz: Vec<f32> = got_g
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    let step = adam::step(g, "t", &cfg, t, &w1, &up(&gz), &m1, &v1).or_fail(what);
    wgsl_autoencoder::ops::run(g, &[step]).or_fail(what);
    // Where a gradient was written: Adam's step; in the padding: as it was.
    for (name, fused, plain, start) in [
        ("weights", &w2, &w1, params),
        ("m", &m2, &m1, &m0[..]),
        ("v", &v2, &v1, &v0[..]),
    ] {
        let (got, want) = (read(fused), read(plain));
        same(&format!("adam {name}"), &pick(&got), &pick(&want));
        let padding = (0..len).filter(|&i| got_g[i].is_nan());
        for i in padding {
            assert_eq!(
                got[i].to_bits(),
                start[i].to_bits(),
                "{what}: {name}[{i}] moved"
            );
        }
    }
    let got_r = read(&regions);
    let partials = plain.partials.len();
    let header = &got_r[stride as usize..stride as usize + 3];
    let want_header = [(slot + 1) as f32, partials as f32, total as f32];
    assert_eq!(header, want_header, "{what}: the region's header");
    let region = &got_r[stride as usize + 3..stride as usize + 3 + partials];
    same("loss partials", region, &plain.partials);
    let others = [&got_r[..stride as usize], &got_r[2 * stride as usize..]];
    assert!(
        others.iter().all(|r| r.iter().all(|v| v.is_nan())),
        "{what}: another region written"
    );

    // Its finish over the three regions (the first and last poisoned: NaN names no slot).
    let loss = g.poisoned("loss", 8).or_fail(what);
    let finish = bce::loss_finish_steps(g, "t", &regions, stride, 3, &loss).or_fail(what);
    let own = up(&plain.partials);
    let one = g.poisoned("loss", 1).or_fail(what);
    let want = bce::loss_finish(g, "t", total, &own, &one, 0).or_fail(what);
    wgsl_autoencoder::ops::run(g, &[finish, want]).or_fail(what);
    let (got, want) = (read(&loss), read(&one)[0]);
    for (s, v) in got.iter().enumerate() {
        match s == slot as usize {
            true => same("the step's loss", &[*v], &[want]),
            false => assert!(v.is_nan(), "{what}: loss slot {s} written"),
        }
    }
}
