//! The gather fold: a first convolution that gathers its own batch.
use super::variants::open_folds;
use super::*;

/// The gather fold (`--folds gather`): a first convolution reading its batch straight from
/// the split's packed u8 pixels through the order gives the output (and a folded pool's
/// winners) of `batch.gather` and then the plain forward pass bit for bit, and writes that
/// batch, the reference's gather bit for bit, into poison. On the conv model's first layer at
/// the training batch (256 of 28x28x1 -> 16, pooled) and at odd shapes: a 'same' pool on 7x9
/// (windows cut at the edges), no pool, two output groups, three and four input channels (the
/// vec4 variant's x loads give way to the gather), a 'valid' pool on even sides; from entry 2
/// of a shuffled order. On every adapter and limit set (the pooled kernel binds 8 storage
/// buffers, WebGPU's default), and under the narrow, vec4 and quads variants. A 'valid'
/// convolution and a 'valid' pool that drops an odd row are refused with the reason.
#[test]
fn conv2d_forward_gathering_its_batch_is_the_gather_then_the_forward_bit_for_bit() {
    use wgsl_autoencoder::gpu::FoldSet;
    let (same, valid) = (Padding::Same, Padding::Valid);
    let cases = [
        (conv3x3(256, 28, 28, 1, 16, same), Some(same)),
        (conv3x3(3, 7, 9, 1, 8, same), Some(same)),
        (conv3x3(2, 5, 6, 1, 20, same), None),
        (conv3x3(2, 6, 4, 3, 5, same), Some(valid)),
        (conv3x3(3, 6, 6, 4, 8, same), Some(same)),
    ];
    let variants = [
        (
            "narrow",
            FoldSet {
                narrow: true,
                ..FoldSet::NONE
            },
        ),
        (
            "vec4",
            FoldSet {
                vec4: true,
                ..FoldSet::NONE
            },
        ),
        (
            "quads",
            FoldSet {
                pool: true,
                quads: true,
                ..FoldSet::NONE
            },
        ),
    ]
    .map(|(name, folds)| (name, open_folds(folds)));
    for (k, (s, pool)) in cases.into_iter().enumerate() {
        let check = |g: &Gpu, config: &str| {
            let what = format!("{config}: {s:?} pool {pool:?}");
            gathering_forward_case(g, &what, k, &s, pool);
        };
        crate::common::each_gpu(check);
        for (name, g) in &variants {
            check(g, name);
        }
    }
    // Refused: outputs that do not cover every input pixel once.
    let g = crate::common::gpu_with(KernelSet::Gpu);
    for (s, pool) in [
        (conv3x3(2, 6, 6, 1, 4, valid), None),
        (conv3x3(2, 7, 6, 1, 4, same), Some(valid)),
    ] {
        let what = format!("{s:?} pool {pool:?}");
        let pixels = s.input_len() / s.n as u64;
        let images = g
            .upload("images", &vec![0u32; pixels as usize])
            .or_fail(&what);
        let order = g.upload("order", &[0u32, 1, 0, 1]).or_fail(&what);
        let out_len = gathering_output_len(&s, pool);
        let t = |len: u64| g.poisoned("t", len).or_fail(&what);
        let (x, w, b, y, win) = (
            t(s.input_len()),
            t(s.weight_len()),
            t(4),
            t(out_len),
            t(out_len),
        );
        let folds = gathering_folds(pool, &win, &images, &order, &x);
        assert!(!conv2d::gathers(&s, &folds), "{what}");
        match conv2d::forward(g, "t", &s, &folds, true, &x, &w, &b, &y) {
            Err(Error::Shape { detail, .. }) => {
                assert!(
                    detail.contains("cover every input pixel once"),
                    "{what}: {detail}"
                )
            }
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: a gather that leaves pixels unwritten was built"),
        }
    }
}

/// One case of the test above on `g`.
fn gathering_forward_case(g: &Gpu, what: &str, k: usize, s: &Conv2dShape, pool: Option<Padding>) {
    use rand::seq::SliceRandom;
    use wgsl_autoencoder::ops::batch;
    let (count, offset) = (s.n as usize + 3, 2usize);
    let pixels = s.input_len() as usize / s.n as usize;
    let mut r = crate::common::rng(1300 + k as u64);
    let pixel_bytes: Vec<u8> = (0..count * pixels)
        .map(|_| rand::Rng::random(&mut r))
        .collect();
    let mut order: Vec<u32> = (0..count as u32).collect();
    order.shuffle(&mut r);
    let images = g
        .upload("images", &batch::pack_pixels(&pixel_bytes))
        .or_fail(what);
    let order_t = g.upload("order", &order).or_fail(what);
    let w = g.upload(
        "w",
        &crate::common::uniform(&mut r, s.weight_len() as usize, -1.0, 1.0),
    );
    let b = g.upload(
        "b",
        &crate::common::uniform(&mut r, s.co as usize, -1.0, 1.0),
    );
    let (w, b) = (w.or_fail(what), b.or_fail(what));
    let out_len = gathering_output_len(s, pool);
    let t = |len: u64| g.poisoned("t", len).or_fail(what);
    let bits = |t: &Tensor| g.read::<u32>(t).or_fail(what);
    for relu in [false, true] {
        let what = format!("{what} relu={relu}");
        // The gather, then the forward pass.
        let (x0, y0, win0) = (t(s.input_len()), t(out_len), t(out_len));
        let p = batch::Params {
            n: s.n,
            pixels: pixels as u32,
            offset: offset as u32,
            seed: 0,
            noise: 0.0,
            _p: [0; 3],
        };
        let mut d = vec![batch::gather(g, "t", &p, &images, &order_t, &x0).or_fail(&what)];
        let plain = Folds {
            pool: pool.map(|padding| Pooled {
                padding,
                winner: &win0,
            }),
            ..Default::default()
        };
        d.extend(conv2d::forward(g, "t", s, &plain, relu, &x0, &w, &b, &y0).or_fail(&what));
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

        // Gathered by the forward pass, its offset set as a training step sets it.
        let (x1, y1, win1) = (t(s.input_len()), t(out_len), t(out_len));
        let folds = gathering_folds(pool, &win1, &images, &order_t, &x1);
        assert!(conv2d::gathers(s, &folds), "{what}");
        let d = conv2d::forward(g, "t", s, &folds, relu, &x1, &w, &b, &y1).or_fail(&what);
        assert_eq!(d.len(), 1, "{what}: one dispatch");
        conv2d::set_gather_offset(&d[0], 0, offset as u32);
        d[0].flush(g);
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);

        let want = reference::batch::gather(&pixel_bytes, pixels, &order, offset, s.n as usize);
        let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
        assert!(
            bits(&x0) == want,
            "{what}: batch.gather is not the reference's"
        );
        assert!(
            bits(&x1) == want,
            "{what}: the batch written differs in its bits"
        );
        assert!(bits(&y1) == bits(&y0), "{what}: y differs in its bits");
        if pool.is_some() {
            assert!(bits(&win1) == bits(&win0), "{what}: winners differ");
        }
    }
}

/// Elements of a layer's output with a pool of `pool`'s padding folded after it, if any.
fn gathering_output_len(s: &Conv2dShape, pool: Option<Padding>) -> u64 {
    let (h, w) = s.out_hw();
    pool.map_or(s.output_len(), |padding| {
        let c = s.co;
        PoolShape {
            n: s.n,
            h,
            w,
            c,
            padding,
        }
        .output_len()
    })
}

/// A first convolution's folds when it gathers its batch (from `images` through `order`, into
/// `batch`), with a pool of `pool`'s padding after it, its winners in `winner`.
fn gathering_folds<'t>(
    pool: Option<Padding>,
    winner: &'t Tensor,
    images: &'t Tensor,
    order: &'t Tensor,
    batch: &'t Tensor,
) -> Folds<'t> {
    Folds {
        pool: pool.map(|padding| Pooled { padding, winner }),
        gather: Some(conv2d::Gathered {
            images,
            order,
            batch,
        }),
        ..Default::default()
    }
}
