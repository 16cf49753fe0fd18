//! The folds (`--folds`): a convolution with the layers around it folded in gives the
//! layers one by one bit for bit; the weight-gradient reduces, alone and merged.
use super::upsampled::{cpu_set_upsampled_shapes, gpu_set_upsampled_shapes, Upsampled};
use super::variants::reduce_adam_case;
use super::*;

/// A convolution with the layers folded around it: a 2x upsampling before it (`up`), a 2x2
/// max pool after it (`pool`, its padding).
#[derive(Clone, Copy, Debug)]
pub(super) struct Folded {
    pub(super) s: Conv2dShape,
    pub(super) up: bool,
    pub(super) pool: Option<Padding>,
}

impl Folded {
    pub(super) fn upsample(&self) -> UpsampleShape {
        Upsampled(self.s).up()
    }
    pub(super) fn pool_shape(&self, padding: Padding) -> PoolShape {
        let (h, w) = self.s.out_hw();
        PoolShape {
            n: self.s.n,
            h,
            w,
            c: self.s.co,
            padding,
        }
    }
}

/// Folds on the conv autoencoder's layers (batch 2: the encoder's pools, one of them 'same'
/// on an odd 7x7; the decoder's upsamplings), a 'valid' pool dropping an odd row and column,
/// a 'same' pool on odd sizes with two output groups, both folds on one layer, and the
/// weight gradient's reduce looping (batch 8 on 28x28): [`gpu_set_folded_cases`], and the
/// CPU set's own cases after them ([`cpu_set_folded_cases`]).
pub(super) fn folded_cases() -> Vec<Folded> {
    [gpu_set_folded_cases(), cpu_set_folded_cases()].concat()
}

fn upsampled_cases(shapes: Vec<Upsampled>) -> impl Iterator<Item = Folded> {
    shapes.into_iter().map(|u| Folded {
        s: u.0,
        up: true,
        pool: None,
    })
}

/// The fold cases the GPU set's fold and variant tests take (every test of a fold takes
/// them): each compiles a pipeline per kernel and variant there, so the CPU set's own cases
/// are left to its tests.
pub(super) fn gpu_set_folded_cases() -> Vec<Folded> {
    let (same, valid) = (Padding::Same, Padding::Valid);
    let f = |n, h, w, ci, co, padding, up, pool| Folded {
        s: conv3x3(n, h, w, ci, co, padding),
        up,
        pool,
    };
    let mut cases: Vec<Folded> = upsampled_cases(gpu_set_upsampled_shapes()).collect();
    cases.extend([
        f(2, 28, 28, 1, 16, same, false, Some(same)),
        f(2, 14, 14, 16, 8, same, false, Some(same)),
        f(2, 7, 7, 8, 8, same, false, Some(same)),
        f(3, 7, 5, 5, 3, same, false, Some(valid)),
        f(2, 9, 7, 3, 20, valid, false, Some(same)),
        f(2, 5, 7, 6, 5, same, false, Some(same)),
        f(2, 8, 6, 4, 3, same, true, Some(same)),
        f(2, 6, 10, 5, 2, valid, true, Some(valid)),
        f(8, 28, 28, 1, 16, same, false, Some(same)),
        // 'valid' pools dropping an odd row and column, a 'same' one on an odd 3x5 output
        f(2, 7, 9, 4, 8, same, false, Some(valid)),
        f(3, 5, 7, 8, 4, valid, false, Some(same)),
        f(2, 6, 6, 16, 16, same, false, Some(valid)),
    ]);
    cases
}

/// The fold cases added for the CPU set's own kernels ([`cpu_set_upsampled_shapes`], and after
/// one input channel, its thin weight gradient walking pooled pixels: a 'same' pool on odd
/// sides into two output groups, and a 'valid' one), which on the GPU set repeat what
/// [`gpu_set_folded_cases`] take.
fn cpu_set_folded_cases() -> Vec<Folded> {
    let (same, valid) = (Padding::Same, Padding::Valid);
    let mut cases: Vec<Folded> = upsampled_cases(cpu_set_upsampled_shapes()).collect();
    let pooled = |n, h, w, co, padding, pool| Folded {
        s: conv3x3(n, h, w, 1, co, padding),
        up: false,
        pool: Some(pool),
    };
    cases.extend([
        pooled(2, 7, 9, 20, same, same),
        pooled(2, 9, 7, 8, valid, valid),
    ]);
    cases
}

/// The folds change no bit: on the GPU set (where training folds what `--folds` says), the
/// output (and the pool's winners), the kernel and bias gradients and the input gradient
/// equal those of the layers run one by one (upsample.forward, the plain convolution,
/// pool.forward; then pool.backward, the plain convolution's gradients, upsample.backward),
/// with and without ReLU, for each of [`gpu_set_folded_cases`].
#[test]
fn conv2d_folds_are_the_layers_one_by_one_bit_for_bit() {
    let g = crate::common::gpu_with(KernelSet::Gpu);
    for (k, case) in gpu_set_folded_cases().into_iter().enumerate() {
        folds_are_the_layers_one_by_one(g, k, &case, &[false, true], Sums::Bitwise);
    }
}

/// The CPU set's own kernels fold a pool the same way: their pooled forward computes each
/// window's outputs with the plain forward's sums, to the bit, and so does the input
/// gradient, reading the routed gradient in the plain order; the weight and bias gradients
/// walk the pooled pixels, each window's four outputs in turn (the same terms in another
/// order: to the tolerance). Its other folds (an upsampling's folded taps) change the
/// rounding, and their tests compare with the reference. The autoencoder's encoder layers
/// and the cases above with one input group and output channels a multiple of 4
/// (`conv2d::cpu_kernels_take_pool`); training folds those with one input channel
/// (tests/training.rs runs the conv autoencoder's steps against the reference).
#[test]
fn conv2d_cpu_set_pool_fold_is_the_layers_one_by_one() {
    let g = crate::common::gpu_with(KernelSet::Cpu);
    // Without `--folds pool`, training on the CPU set folds the pools its kernels take after
    // a layer with one input channel; `--folds pool` the rest.
    assert!(!g.folds.pool);
    let mut ran = 0;
    for (k, case) in folded_cases().into_iter().enumerate() {
        let takes = conv2d::cpu_kernels_take_pool(&case.s);
        let trains = takes && case.s.ci == 1;
        assert_eq!(
            conv2d::folds_pool(g, &case.s, Input::Direct),
            trains,
            "{case:?}"
        );
        if case.pool.is_some() && !case.up && takes {
            folds_are_the_layers_one_by_one(g, k, &case, &[false], Sums::Reordered);
            ran += 1;
        }
    }
    assert!(ran >= 5, "{ran} cases");
}

/// How a fold's weight and bias gradients compare with the layers' one by one.
#[derive(Clone, Copy)]
enum Sums {
    Bitwise,
    /// Summed in another order: to the tolerance.
    Reordered,
}

/// `case` folded against its layers one by one on `g`, bit for bit but for the weight and
/// bias gradients as `weight_sums` says; `paired`: the backward as two dispatches (false) and
/// as `backward_pair` (true).
fn folds_are_the_layers_one_by_one(
    g: &Gpu,
    k: usize,
    case: &Folded,
    paired: &[bool],
    weight_sums: Sums,
) {
    use wgsl_autoencoder::ops::{pool, upsample};
    {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let s = case.s;
            let up = case.upsample();
            let pool_shape = case.pool.map(|p| case.pool_shape(p));
            let out_len = pool_shape.map_or(s.output_len(), |p| p.output_len());
            let x_len = if case.up {
                up.input_len()
            } else {
                s.input_len()
            };
            let mut r = crate::common::rng(900 + k as u64);
            let mut random = |len: u64| {
                let v = crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
                g.upload("t", &v).or_fail(&what)
            };
            let (x, w, b, dy) = (
                random(x_len),
                random(s.weight_len()),
                random(s.co as u64),
                random(out_len),
            );
            let t = |len: u64| g.poisoned("t", len).or_fail(&what);
            let (y0, win0) = (t(out_len), t(out_len));
            let (dw0, db0, dx0) = (t(s.weight_len()), t(s.co as u64), t(x_len));

            // One by one.
            let (x_up, dx_up) = (t(s.input_len()), t(s.input_len()));
            let (y_conv, dy_conv) = (t(s.output_len()), t(s.output_len()));
            let plain = Folds::default();
            let (conv_x, conv_dx) = if case.up { (&x_up, &dx_up) } else { (&x, &dx0) };
            let conv_y = if pool_shape.is_some() { &y_conv } else { &y0 };
            let conv_dy = if pool_shape.is_some() { &dy_conv } else { &dy };
            let mut d = Vec::new();
            if case.up {
                d.push(upsample::forward(g, "t", &up, &x, &x_up).or_fail(&what));
            }
            let fwd = conv2d::forward(g, "t", &s, &plain, relu, conv_x, &w, &b, conv_y);
            d.extend(fwd.or_fail(&what));
            if let Some(p) = &pool_shape {
                d.push(pool::forward(g, "t", p, &y_conv, &y0, &win0).or_fail(&what));
                d.push(pool::backward(g, "t", p, &win0, &dy, &dy_conv).or_fail(&what));
            }
            let go = GradOut {
                dy: conv_dy,
                relu_output: relu.then_some(conv_y),
            };
            let partials0 = partials(g, &s, &plain).or_fail(&what);
            let params =
                conv2d::backward_params(g, "t", &s, &plain, &go, conv_x, &partials0, &dw0, &db0);
            d.extend(params.or_fail(&what));
            let dx_of = conv2d::backward_input(g, "t", &s, &plain, &go, &w, conv_dx);
            d.extend(dx_of.or_fail(&what));
            if case.up {
                d.push(upsample::backward(g, "t", &up, &dx_up, &dx0).or_fail(&what));
            }
            wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

            // Folded: the weight-gradient partials and the input gradient as two dispatches,
            // and as one (`backward_pair`, then the layer's reduce), each into fresh poison.
            for &paired in paired {
                let what = format!("{what} paired={paired}");
                let (y1, win1) = (t(out_len), t(out_len));
                let (dw1, db1, dx1) = (t(s.weight_len()), t(s.co as u64), t(x_len));
                let folds = Folds {
                    input: if case.up {
                        Input::Upsampled2x
                    } else {
                        Input::Direct
                    },
                    pool: case.pool.map(|padding| Pooled {
                        padding,
                        winner: &win1,
                    }),
                    take: None,
                    gather: None,
                };
                let forward = conv2d::forward(g, "t", &s, &folds, relu, &x, &w, &b, &y1);
                let mut d = forward.or_fail(&what);
                let go = GradOut {
                    dy: &dy,
                    relu_output: relu.then_some(&y1),
                };
                let partials1 = partials(g, &s, &folds).or_fail(&what);
                if paired {
                    let pair =
                        conv2d::backward_pair(g, "t", &s, &folds, &go, &x, &w, &partials1, &dx1);
                    d.push(pair.or_fail(&what));
                    let reduce =
                        conv2d::backward_params_reduce(g, "t", &s, &folds, &partials1, &dw1, &db1);
                    d.push(reduce.or_fail(&what));
                } else {
                    let params = conv2d::backward_params(
                        g, "t", &s, &folds, &go, &x, &partials1, &dw1, &db1,
                    );
                    d.extend(params.or_fail(&what));
                    let dx_of = conv2d::backward_input(g, "t", &s, &folds, &go, &w, &dx1);
                    d.extend(dx_of.or_fail(&what));
                }
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

                let mut pairs = vec![("y", &y0, &y1), ("dx", &dx0, &dx1)];
                if pool_shape.is_some() {
                    pairs.push(("winner", &win0, &win1));
                }
                let mut sums = vec![("dw", &dw0, &dw1), ("db", &db0, &db1)];
                match weight_sums {
                    Sums::Bitwise => pairs.append(&mut sums),
                    Sums::Reordered => {
                        for (name, want, got) in sums {
                            let read = |t: &Tensor| g.read::<f32>(t).or_fail(&what);
                            let what = format!("{what}: {name}");
                            crate::common::assert_close(&what, &read(got), &read(want), TOL);
                        }
                    }
                }
                for (name, a, b) in pairs {
                    let bits = |t: &Tensor| g.read::<u32>(t).or_fail(&what);
                    assert!(bits(a) == bits(b), "{what}: {name} differs in its bits");
                }
            }
        }
    }
}

/// The weight-gradient reduce adds each weight's chunks in the order its shader documents,
/// which no change of its code may move (every checkpoint's bits depend on it): in chunk order
/// in one invocation for up to SERIAL_REDUCE chunks; else invocation l of WG = 256 adds chunks
/// l, l + 256, ... in order, and a fixed tree halves the 256 sums (lanes[l] += lanes[l + 128]
/// for l < 128, then 64, ...).
/// The host adds the same floats in that order and must get the same bits, from the layer's
/// own reduce and from the one for every layer, at chunk counts that leave the kernel's
/// loads in batches of eight with and without a rest (13 and 16 chunks serially; 3,136 in the
/// tree, 12 or 13 per invocation; 98, one each). The partial sums span 40 binary orders of magnitude,
/// so that adding them in any other order changes the sums.
#[test]
fn conv2d_weight_reduce_adds_in_its_documented_order() {
    const WG: usize = 256;
    let g = crate::common::gpu_with(KernelSet::Gpu);
    let folds = Folds::default();
    let sh = |n, h, ci, co| Conv2dShape {
        k: 3,
        n,
        h,
        w: h,
        ci,
        co,
        padding: Padding::Same,
    };
    let mut serial_and_tree = [false; 2];
    for (k, s) in [
        sh(13, 4, 8, 8),
        sh(16, 4, 8, 8),
        sh(256, 14, 16, 8),
        sh(8, 14, 2, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("{s:?}");
        let items = s.weight_len() as usize + s.co as usize;
        let used = conv2d::partials_used(&s) as usize;
        let chunks = used / items;
        let serial = chunks as u64 <= conv2d::SERIAL_REDUCE;
        serial_and_tree[serial as usize] = true;
        let mut r = crate::common::rng(1600 + k as u64);
        let scale = crate::common::uniform(&mut r, used, -20.0, 20.0);
        let mut values = crate::common::uniform(&mut r, used, -1.0, 1.0);
        for (v, e) in values.iter_mut().zip(&scale) {
            *v *= e.round().exp2();
        }
        let len = conv2d::partials_len(KernelSet::Gpu, &s, &folds) as usize;
        values.resize(len, f32::NAN);
        let partials = g.upload("partials", &values).or_fail(&what);
        let (dw, db) = (
            g.poisoned("dw", s.weight_len()).or_fail(&what),
            g.poisoned("db", s.co as u64).or_fail(&what),
        );
        let grads = g.poisoned("grads", items as u64).or_fail(&what);
        let share = conv2d::ReduceShare {
            s,
            partials: 0,
            dw: 0,
            db: Some(s.weight_len()),
        };
        let d = [
            conv2d::backward_params_reduce(g, "t", &s, &folds, &partials, &dw, &db).or_fail(&what),
            conv2d::backward_params_reduce_all(g, "t", &[share], &partials, &grads).or_fail(&what),
        ];
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
        let want: Vec<u32> = (0..items)
            .map(|i| {
                let terms = &values[i * chunks..(i + 1) * chunks];
                let total = match serial {
                    true => terms.iter().fold(0.0f32, |a, v| a + v),
                    false => {
                        let mut lanes: Vec<f32> = (0..WG)
                            .map(|l| terms.iter().skip(l).step_by(WG).fold(0.0f32, |a, v| a + v))
                            .collect();
                        let mut half = WG / 2;
                        while half > 0 {
                            for l in 0..half {
                                lanes[l] += lanes[l + half];
                            }
                            half /= 2;
                        }
                        lanes[0]
                    }
                };
                total.to_bits()
            })
            .collect();
        let own: Vec<u32> = [g.read::<u32>(&dw), g.read::<u32>(&db)]
            .into_iter()
            .flat_map(|v| v.or_fail(&what))
            .collect();
        assert!(own == want, "{what} ({chunks} chunks): the layer's reduce");
        let all = g.read::<u32>(&grads).or_fail(&what);
        assert!(
            all == want,
            "{what} ({chunks} chunks): the reduce of every layer"
        );
        // The order matters for these sums: adding them in reverse changes some.
        let reversed = (0..items).any(|i| {
            let terms = &values[i * chunks..(i + 1) * chunks];
            terms.iter().rev().fold(0.0f32, |a, v| a + v).to_bits() != want[i]
        });
        assert!(reversed, "{what}: the sums do not depend on their order");
    }
    assert_eq!(serial_and_tree, [true, true], "both paths covered");
}

/// Every layer's weight-gradient reduce in one dispatch gives each layer's own reduce's
/// gradients bit for bit: three layers' partial sums in regions of one buffer (a 4x4 layer
/// with few enough chunks for the serial sum, two with enough for the tree, one of them
/// without a bias), then one reduce into one gradient buffer with gaps between the layers'
/// gradients, which it must leave alone. A region past the buffer is refused.
#[test]
fn conv2d_reduce_all_is_each_layers_reduce_bit_for_bit() {
    let g = crate::common::gpu_with(KernelSet::Gpu);
    let sh = |n, h, ci, co, padding| Conv2dShape {
        k: 3,
        n,
        h,
        w: h,
        ci,
        co,
        padding,
    };
    let layers = [
        (sh(8, 4, 8, 8, Padding::Same), true),
        (sh(8, 14, 16, 8, Padding::Same), false),
        (sh(8, 16, 8, 16, Padding::Valid), true),
    ];
    let folds = Folds::default();
    let mut r = crate::common::rng(77);
    let mut random = |len: u64| {
        let v = crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
        g.upload("t", &v).or_fail("upload")
    };
    let align = |v: u64| v.div_ceil(64) * 64;
    let total: u64 = layers
        .iter()
        .map(|(s, _)| align(conv2d::partials_used(s)))
        .sum();
    let all_partials = g.poisoned("partials", total).or_fail("partials");
    let grads_len: u64 = layers
        .iter()
        .map(|(s, _)| align(s.weight_len() + s.co as u64 + 64))
        .sum();
    let grads = g.poisoned("grads", grads_len).or_fail("grads");
    let (mut d, mut shares, mut own) = (Vec::new(), Vec::new(), Vec::new());
    let (mut at_partials, mut at_grads) = (0, 0);
    for (s, bias) in layers {
        let what = format!("{s:?}");
        let chunks = (s.output_len() / s.co as u64).div_ceil(conv2d::CHUNK);
        assert_eq!(
            chunks <= conv2d::SERIAL_REDUCE,
            s.h == 4,
            "{what}: the cases cover the serial and the tree sum"
        );
        let (x, dy) = (random(s.input_len()), random(s.output_len()));
        let go = GradOut {
            dy: &dy,
            relu_output: None,
        };
        let len = conv2d::partials_len(KernelSet::Gpu, &s, &folds);
        let region = all_partials.view(at_partials, len);
        let partial = conv2d::backward_params_partial(g, "t", &s, &folds, &go, &x, &region);
        d.push(partial.or_fail(&what));
        let db_at = at_grads + align(s.weight_len());
        shares.push(conv2d::ReduceShare {
            s,
            partials: at_partials,
            dw: at_grads,
            db: bias.then_some(db_at),
        });
        // The layer's own two stages, into buffers of its own.
        let (dw, db) = (random(s.weight_len()), random(s.co as u64));
        let scratch = partials(g, &s, &folds).or_fail(&what);
        let own_pass = conv2d::backward_params(g, "t", &s, &folds, &go, &x, &scratch, &dw, &db);
        d.extend(own_pass.or_fail(&what));
        own.push((s, bias, dw, db, at_grads, db_at));
        at_partials += align(len);
        at_grads = db_at + align(s.co as u64 + 64);
    }
    d.push(
        conv2d::backward_params_reduce_all(g, "t", &shares, &all_partials, &grads)
            .or_fail("reduce"),
    );
    wgsl_autoencoder::ops::run(g, &d).or_fail("run");
    let merged = g.read::<u32>(&grads).or_fail("read");
    let mut written = vec![false; merged.len()];
    for (s, bias, dw, db, dw_at, db_at) in own {
        let bits = |t: &Tensor| g.read::<u32>(t).or_fail("read");
        let (dw_at, db_at) = (dw_at as usize, db_at as usize);
        let dw_end = dw_at + s.weight_len() as usize;
        assert!(
            merged[dw_at..dw_end] == bits(&dw)[..],
            "{s:?}: kernel gradient"
        );
        written[dw_at..dw_end].fill(true);
        if bias {
            let db_end = db_at + s.co as usize;
            assert!(
                merged[db_at..db_end] == bits(&db)[..],
                "{s:?}: bias gradient"
            );
            written[db_at..db_end].fill(true);
        }
    }
    for (i, w) in written.iter().enumerate() {
        if !w {
            assert!(
                f32::from_bits(merged[i]).is_nan(),
                "element {i} of the gradient buffer, no layer's, was written"
            );
        }
    }
    reduce_adam_case(g, &shares, &all_partials, grads_len, &merged);
    let mut past = shares[2];
    past.partials = total - conv2d::partials_used(&past.s) + 1;
    match conv2d::backward_params_reduce_all(g, "t", &[past], &all_partials, &grads) {
        Err(Error::Shape { detail, .. }) => assert!(detail.contains("past"), "{detail}"),
        Err(e) => panic!("a region past the buffer refused, but not as a shape error: {e}"),
        Ok(_) => panic!("a region past the partials buffer was accepted"),
    }
}
