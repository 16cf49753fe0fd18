//! The GPU set's kernel variants (tiles, narrow, vec4, quads) give the plain kernels' bits;
//! the merged reduce with Adam.
use super::folds::{gpu_set_folded_cases, Folded};
use super::*;

/// Whether a launch runs the quads (`--folds quads`: QUADS on), and its workgroups.
fn spreads_window(d: &wgsl_autoencoder::gpu::Dispatch) -> (bool, u64) {
    let [x, y, z] = d.workgroups;
    (d.launch.contains("QUADS=1"), x as u64 * y as u64 * z as u64)
}

/// Workgroups of 64 for `per_window` invocations per pixel of `pixels`, in each channel group
/// of a side of `channels` on `g`.
fn window_workgroups(g: &Gpu, pixels: u64, per_window: u64, channels: u32) -> u64 {
    let groups = channels.div_ceil(conv2d::group(g, "t")) as u64;
    (pixels * per_window).div_ceil(64) * groups
}

/// A device on the GPU set with every fold, the tiles and the narrow channel groups as asked.
fn open_variant(tiles: bool, narrow: bool) -> Gpu {
    open_variants(tiles, narrow, true)
}

/// As [`open_variant`], with the vec4 loads as asked too (and a folded window on one
/// invocation: [`open_quads`] spreads it over four).
fn open_variants(tiles: bool, narrow: bool, vec4: bool) -> Gpu {
    use wgsl_autoencoder::gpu::FoldSet;
    open_folds(FoldSet {
        tiles,
        narrow,
        vec4,
        quads: false,
        ..FoldSet::ALL
    })
}

/// As [`open_variants`], with each folded 2x2 window on four invocations (`--folds quads`).
fn open_quads(tiles: bool, narrow: bool, vec4: bool) -> Gpu {
    use wgsl_autoencoder::gpu::FoldSet;
    open_folds(FoldSet {
        tiles,
        narrow,
        vec4,
        ..FoldSet::ALL
    })
}

/// A device on the GPU set with exactly `folds`.
pub(super) fn open_folds(folds: wgsl_autoencoder::gpu::FoldSet) -> Gpu {
    crate::common::open_with_folds(KernelSet::Gpu, folds)
}

/// [`gpu_set_folded_cases`], a layer of 24 -> 20 channels with a pool: more than one group of
/// channels a side, the last partly live, and chunks longer than 16; and a 4x4 8 -> 8 layer
/// with neither fold (the conv model's fourth), as the vec4 loads meet it.
fn variant_cases() -> Vec<Folded> {
    let mut cases = gpu_set_folded_cases();
    cases.push(Folded {
        s: Conv2dShape {
            k: 3,
            n: 3,
            h: 4,
            w: 4,
            ci: 8,
            co: 8,
            padding: Padding::Same,
        },
        up: false,
        pool: None,
    });
    cases.push(Folded {
        s: Conv2dShape {
            k: 3,
            n: 2,
            h: 7,
            w: 7,
            ci: 24,
            co: 20,
            padding: Padding::Same,
        },
        up: false,
        pool: Some(Padding::Same),
    });
    cases
}

/// The weight-gradient partials' tiled variant (`--folds tiles`), the pair (`backward_pair`
/// then the layer's reduce), the narrow channel groups (`--folds narrow`: 4 channels per
/// invocation, not 16) and the vec4 variant's skipped lanes (`--folds vec4`) give the plain
/// per-row kernels' kernel, bias and input gradients bit for bit, on six devices (the plain
/// kernels, the per-row ones with the vec4 variant, the tiles, tiles with narrow, the quads,
/// and the quads with tiles, narrow and vec4), for
/// every GPU-set fold case (a pool's routing, an upsampled input: also with the quads, `--folds
/// quads`, alone and with the rest), with and without ReLU, with and
/// without the bias row (`backward_weight`), and on a layer with chunks longer than 16 and more
/// than 16 channels a side (which the tiles leave to the per-row kernel, and which is 5 and 6
/// narrow groups against 2 wide ones, the last of each partly live).
#[test]
fn conv2d_tiled_weight_partials_are_the_per_row_kernel_bit_for_bit() {
    // The plain kernels load every lane of a vec4; the variants below skip the lanes past the
    // last output channel (`--folds vec4`), which the 1- and 3-channel cases meet.
    let per_row = open_variants(false, false, false);
    let per_row_vec4 = open_variant(false, false);
    let tiled = open_variant(true, false);
    // With the tiles too: the wide case's long chunks run the narrow per-row partials (and
    // `folds_change_no_bit_of_training` runs them on a whole model), so a fourth device
    // would only add pipelines to compile (minutes through llvmpipe's GL).
    let narrow = open_variant(true, true);
    // The quads (an upsampled input's input gradient on four invocations per pixel of x):
    // wide and per-row, and narrow with the tiles and vec4 loads.
    let quads = open_quads(false, false, false);
    let quads_narrow = open_quads(true, true, true);
    assert_eq!(conv2d::group(&per_row, "t"), conv2d::WIDE_GROUP);
    assert_eq!(conv2d::group(&narrow, "t"), conv2d::NARROW_GROUP);
    for (k, case) in variant_cases().into_iter().enumerate() {
        let s = case.s;
        let short_chunks = s.weight_len() + (s.co as u64) <= 2048;
        assert_eq!(conv2d::tiles(&tiled, "t", &s), short_chunks, "{case:?}");
        assert!(!conv2d::tiles(&per_row, "t", &s), "{case:?}");
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let pool_len = case.pool.map(|p| case.pool_shape(p).output_len());
            let out_len = pool_len.unwrap_or(s.output_len());
            let x_len = if case.up {
                case.upsample().input_len()
            } else {
                s.input_len()
            };
            let mut r = crate::common::rng(1300 + k as u64);
            let mut draw = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
            let (xs, ws, dys, acts) = (
                draw(x_len),
                draw(s.weight_len()),
                draw(out_len),
                draw(out_len),
            );
            // Winners 0..3 drawn at random: any routing is a valid input to the backward.
            let wins: Vec<u32> = draw(out_len)
                .iter()
                .map(|v| ((v + 1.0) * 2.0) as u32 % 4)
                .collect();
            // (kernel, bias, input gradient; kernel gradient without the bias row) as bits.
            let run_on = |g: &Gpu, paired: bool| {
                let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
                let (x, w, dy, act) = (up(&xs), up(&ws), up(&dys), up(&acts));
                let winner = g.upload("w", &wins).or_fail(&what);
                let folds = Folds {
                    input: if case.up {
                        Input::Upsampled2x
                    } else {
                        Input::Direct
                    },
                    pool: case.pool.map(|padding| Pooled {
                        padding,
                        winner: &winner,
                    }),
                    take: None,
                    gather: None,
                };
                let go = GradOut {
                    dy: &dy,
                    relu_output: relu.then_some(&act),
                };
                let poison = |len| g.poisoned("out", len).or_fail(&what);
                let (dw, db, dx, dw_only) = (
                    poison(s.weight_len()),
                    poison(s.co as u64),
                    poison(x_len),
                    poison(s.weight_len()),
                );
                let (p1, p2) = (
                    partials(g, &s, &folds).or_fail(&what),
                    partials(g, &s, &folds).or_fail(&what),
                );
                let mut d = Vec::new();
                if paired {
                    let pair = conv2d::backward_pair(g, "t", &s, &folds, &go, &x, &w, &p1, &dx);
                    d.push(pair.or_fail(&what));
                    let reduce = conv2d::backward_params_reduce(g, "t", &s, &folds, &p1, &dw, &db);
                    d.push(reduce.or_fail(&what));
                } else {
                    let params =
                        conv2d::backward_params(g, "t", &s, &folds, &go, &x, &p1, &dw, &db);
                    d.extend(params.or_fail(&what));
                    let dx_of = conv2d::backward_input(g, "t", &s, &folds, &go, &w, &dx);
                    d.extend(dx_of.or_fail(&what));
                }
                let weight = conv2d::backward_weight(g, "t", &s, &folds, &go, &x, &p2, &dw_only);
                d.extend(weight.or_fail(&what));
                // The input gradient (alone or in the pair) runs the quads where its input is
                // upsampled, and only there.
                let quads = conv2d::quads(g, "t") && case.up;
                let input_kernels = ["conv2d.backward_input", "conv2d.backward_pair"];
                let inputs: Vec<_> = d
                    .iter()
                    .filter(|x| input_kernels.contains(&x.kernel))
                    .collect();
                assert!(!inputs.is_empty(), "{what}: no input gradient");
                for x in inputs {
                    let spread = spreads_window(x).0;
                    assert_eq!(spread, quads, "{what}: {}: the quads ran or not", x.kernel);
                }
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
                let bits = |t: &Tensor| g.read::<u32>(t).or_fail(&what);
                [bits(&dw), bits(&db), bits(&dx), bits(&dw_only)]
            };
            let want = run_on(&per_row, false);
            assert!(
                want.iter().flatten().all(|b| !f32::from_bits(*b).is_nan()),
                "{what}: an output unwritten"
            );
            for (g, paired, name) in [
                (&per_row, true, "the per-row pair"),
                (&per_row_vec4, false, "the per-row partials' vec4 variant"),
                (&tiled, false, "the tiled partials"),
                (&tiled, true, "the tiled pair"),
                (&narrow, false, "the narrow tiled partials"),
                (&narrow, true, "the narrow tiled pair"),
                (&quads, false, "the quads' input gradient"),
                (&quads, true, "the quads' pair"),
                (
                    &quads_narrow,
                    false,
                    "the narrow quads' input gradient with vec4 loads",
                ),
                (
                    &quads_narrow,
                    true,
                    "the narrow tiled quads' pair with vec4 loads",
                ),
            ] {
                let got = run_on(g, paired);
                for (i, out) in ["dw", "db", "dx", "dw without the bias row"]
                    .iter()
                    .enumerate()
                {
                    assert!(
                        want[i] == got[i],
                        "{what}: {name}: {out} differs in its bits"
                    );
                }
            }
        }
    }
    // A layer's own variants (the start-up timing's pick per layer) apply to that layer's
    // launchers only.
    let mut mixed = per_row;
    let own = wgsl_autoencoder::gpu::FoldSet {
        narrow: true,
        tiles: true,
        ..mixed.folds
    };
    mixed.layer_folds.insert("t".into(), own);
    let s = variant_cases()[0].s;
    assert_eq!(conv2d::group(&mixed, "t"), conv2d::NARROW_GROUP);
    assert_eq!(conv2d::group(&mixed, "u"), conv2d::WIDE_GROUP);
    assert!(conv2d::tiles(&mixed, "t", &s) && !conv2d::tiles(&mixed, "u", &s));
}

/// A layer whose tensors are shorter than one vec4 (one 1x1 pixel, 1 -> 1 and 1 -> 3
/// channels, batch 1) runs under the vec4 variant: its unread vec4 views get the device's
/// placeholder (a binding must hold a whole vec4), and the forward pass, the input gradient
/// and the pair give the plain kernels' bits.
#[test]
fn conv2d_vec4_variant_binds_tensors_shorter_than_a_vec4() {
    let (plain, vec4) = (
        open_variants(true, false, false),
        open_variants(true, false, true),
    );
    for co in [1, 3] {
        let s = Conv2dShape {
            k: 3,
            n: 1,
            h: 1,
            w: 1,
            ci: 1,
            co,
            padding: Padding::Same,
        };
        let what = format!("{s:?}");
        let mut r = crate::common::rng(1500 + co as u64);
        let mut draw = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
        let (xs, ws, bs, dys) = (
            draw(s.input_len()),
            draw(s.weight_len()),
            draw(s.co as u64),
            draw(s.output_len()),
        );
        let run_on = |g: &Gpu| {
            let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
            let (x, w, b, dy) = (up(&xs), up(&ws), up(&bs), up(&dys));
            let poison = |len| g.poisoned("out", len).or_fail(&what);
            let (y, dx, dx_pair) = (
                poison(s.output_len()),
                poison(s.input_len()),
                poison(s.input_len()),
            );
            let folds = Folds {
                input: Input::Direct,
                pool: None,
                take: None,
                gather: None,
            };
            let go = GradOut {
                dy: &dy,
                relu_output: None,
            };
            let p = partials(g, &s, &folds).or_fail(&what);
            let mut d = conv2d::forward(g, "t", &s, &folds, false, &x, &w, &b, &y).or_fail(&what);
            d.extend(conv2d::backward_input(g, "t", &s, &folds, &go, &w, &dx).or_fail(&what));
            d.push(
                conv2d::backward_pair(g, "t", &s, &folds, &go, &x, &w, &p, &dx_pair).or_fail(&what),
            );
            wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
            let bits = |t: &Tensor| g.read::<u32>(t).or_fail(&what);
            [bits(&y), bits(&dx), bits(&dx_pair)]
        };
        let want = run_on(&plain);
        assert!(
            want.iter().flatten().all(|b| !f32::from_bits(*b).is_nan()),
            "{what}: an output unwritten"
        );
        assert!(run_on(&vec4) == want, "{what}: the vec4 variant differs");
    }
}

/// The narrow channel groups (`--folds narrow`), the vec4 loads (`--folds vec4`: input
/// channels where they are a multiple of 4, the kernel's output channels where they are, the
/// lanes past CO left unloaded where they are not) and the quads (`--folds quads`: a folded
/// pool's window on four invocations), alone and together, give the wide scalar
/// forward pass bit for bit: plain, with a max pool folded in (values and winners), and
/// reading an upsampled input, with and without ReLU, for every GPU-set fold case and a layer of 24 ->
/// 20 channels (6 narrow groups of input, 5 of output, against 2 wide ones).
#[test]
fn conv2d_narrow_groups_and_vec4_loads_give_the_plain_forward_bit_for_bit() {
    let plain = open_variants(true, false, false);
    let variants = [
        (open_variants(true, true, false), "the narrow groups'"),
        (open_variants(true, false, true), "the vec4 loads'"),
        (
            open_variants(true, true, true),
            "the narrow groups' with vec4 loads",
        ),
        (open_quads(true, false, false), "the quads'"),
        (
            open_quads(true, true, true),
            "the quads' with narrow groups and vec4 loads",
        ),
    ];
    let mut loaded_by_vec4 = 0;
    // The kernel's two vec4 paths: whole vec4 loads (CO a multiple of 4), and a last partial
    // vec4 (CO not), with one output group and with several (24 -> 20, narrow).
    let cases = variant_cases();
    let kernel_vec4 = cases.iter().filter(|c| c.s.co % 4 == 0).count();
    assert!(kernel_vec4 >= 4 && cases.len() - kernel_vec4 >= 2);
    assert!(cases.iter().any(|c| c.s.co > 16 && c.s.co % 4 == 0));
    for (k, case) in cases.into_iter().enumerate() {
        let s = case.s;
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let out_len = case
                .pool
                .map_or(s.output_len(), |p| case.pool_shape(p).output_len());
            let x_len = match case.up {
                true => case.upsample().input_len(),
                false => s.input_len(),
            };
            let mut r = crate::common::rng(1400 + k as u64);
            let mut draw = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
            let (xs, ws, bs) = (draw(x_len), draw(s.weight_len()), draw(s.co as u64));
            let run_on = |g: &Gpu| {
                let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
                let (x, w, b) = (up(&xs), up(&ws), up(&bs));
                let y = g.poisoned("y", out_len).or_fail(&what);
                let winner = g
                    .upload("w", &vec![u32::MAX; out_len as usize])
                    .or_fail(&what);
                let folds = Folds {
                    input: match case.up {
                        true => Input::Upsampled2x,
                        false => Input::Direct,
                    },
                    pool: case.pool.map(|padding| Pooled {
                        padding,
                        winner: &winner,
                    }),
                    take: None,
                    gather: None,
                };
                let d = conv2d::forward(g, "t", &s, &folds, relu, &x, &w, &b, &y).or_fail(&what);
                assert_eq!(d.len(), 1, "{what}: the GPU set's forward is one dispatch");
                let spread = spreads_window(&d[0]);
                wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
                (
                    g.read::<u32>(&y).or_fail(&what),
                    g.read::<u32>(&winner).or_fail(&what),
                    spread,
                )
            };
            let want = run_on(&plain);
            assert!(
                want.0.iter().all(|b| !f32::from_bits(*b).is_nan()),
                "{what}: an output unwritten"
            );
            if case.pool.is_some() {
                assert!(want.1.iter().all(|w| *w < 4), "{what}: a winner unwritten");
            }
            assert!(!conv2d::forward_vec4(&plain, "t", &s));
            if !relu {
                loaded_by_vec4 += conv2d::forward_vec4(&variants[1].0, "t", &s) as usize;
            }
            assert!(!want.2 .0, "{what}: the plain forward spreads its window");
            for (g, name) in &variants {
                let got = run_on(g);
                assert!(want.0 == got.0, "{what}: {name} output differs in its bits");
                assert!(want.1 == got.1, "{what}: {name} winners differ");
                // The quads run where a pool is folded, and only there: an invocation per
                // window pixel.
                let quads = conv2d::quads(g, "t") && case.pool.is_some();
                let per_window = if quads { 4 } else { 1 };
                let wg = window_workgroups(g, out_len / s.co as u64, per_window, s.co);
                assert_eq!(got.2, (quads, wg), "{what}: {name}: the quads' launch");
            }
        }
    }
    // Pooled, upsampled and plain layers among them: 10 of the 20 cases.
    assert!(
        loaded_by_vec4 >= 10,
        "too few cases load by vec4: {loaded_by_vec4}"
    );
}

/// `conv2d::backward_params_reduce_adam` (`--folds adam` with `reduces`) writes the gradients
/// the merged reduce wrote (`merged`'s bits), takes Adam's step 4 for each of them from
/// random weights and moments as `adam::step` over those gradients does, bit for bit, leaving
/// what no share covers as it was; and its last workgroup writes `bce.loss_finish`'s bits
/// for the loss partials into the slot staged (uniform slot 1 of 2), no other.
pub(super) fn reduce_adam_case(
    g: &Gpu,
    shares: &[conv2d::ReduceShare],
    partials: &Tensor,
    len: u64,
    merged: &[u32],
) {
    use wgsl_autoencoder::ops::{adam, bce};
    use wgsl_autoencoder::shapes::AdamConfig;
    let what = "reduce with Adam";
    let mut r = crate::common::rng(78);
    let mut random = |lo: f32, hi: f32| crate::common::uniform(&mut r, len as usize, lo, hi);
    let (w0, m0, v0) = (random(-1.0, 1.0), random(-0.1, 0.1), random(0.0, 0.01));
    let total_elements = 3 * 4096 + 17;
    let loss_partials = crate::common::uniform(&mut r, 4, 0.0, 3000.0);
    assert_eq!(bce::partials_len(total_elements), 4);
    let up = |v: &[f32]| g.upload("t", v).or_fail(what);
    let read = |t: &Tensor| g.read::<f32>(t).or_fail(what);
    let (cfg, t, slot) = (AdamConfig::default(), 4, 3);

    let (w, m, v) = (up(&w0), up(&m0), up(&v0));
    let grads = g.poisoned("grads", len).or_fail(what);
    let (lp, loss) = (up(&loss_partials), g.poisoned("loss", 5).or_fail(what));
    let io = conv2d::ReduceAdam {
        params: &w,
        m: &m,
        v: &v,
        loss_partials: &lp,
        total: total_elements,
        loss: &loss,
    };
    let fused = conv2d::backward_params_reduce_adam(g, "t", shares, partials, &grads, &io, &cfg)
        .or_fail(what)
        .with_slots(g, 2)
        .or_fail(what);
    conv2d::set_reduce_adam_step(&fused, 1, &cfg, t, slot);
    fused.flush(g);
    crate::common::run_slot(g, &fused, 1);
    let got_g = g.read::<u32>(&grads).or_fail(what);
    assert!(got_g == merged, "{what}: not the merged reduce's gradients");

    // adam.step over those gradients (zero where no share wrote one: compared only where one
    // did, as random moments move a weight even with a zero gradient).
    let gz: Vec<f32> = merged
        .iter()
        .map(|b| f32::from_bits(*b))
        .map(|f| if f.is_nan() { 0.0 } else { f })
        .collect();
    let (w1, m1, v1) = (up(&w0), up(&m0), up(&v0));
    let step = adam::step(g, "t", &cfg, t, &w1, &up(&gz), &m1, &v1).or_fail(what);
    let one = g.poisoned("loss", 1).or_fail(what);
    let finish = bce::loss_finish(g, "t", total_elements, &lp, &one, 0).or_fail(what);
    wgsl_autoencoder::ops::run(g, &[step, finish]).or_fail(what);
    let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for (name, fused, plain, start) in [
        ("weights", &w, &w1, &w0),
        ("m", &m, &m1, &m0),
        ("v", &v, &v1, &v0),
    ] {
        let (got, want) = (bits(read(fused)), bits(read(plain)));
        for (i, b) in merged.iter().enumerate() {
            match f32::from_bits(*b).is_nan() {
                false => assert_eq!(got[i], want[i], "{what}: {name}[{i}] not adam.step's"),
                true => assert_eq!(got[i], start[i].to_bits(), "{what}: {name}[{i}] moved"),
            }
        }
    }
    let (got, want) = (read(&loss), read(&one)[0]);
    for (s, v) in got.iter().enumerate() {
        match s == slot as usize {
            true => assert_eq!(v.to_bits(), want.to_bits(), "{what}: the loss"),
            false => assert!(v.is_nan(), "{what}: loss slot {s} written"),
        }
    }
}
