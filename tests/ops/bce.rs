//! bce: the mean loss from logits (two-pass tree) and its gradient fused with the sigmoid.
//! Loss within 1e-5 relative (f32 tree sums of up to ~10^5 terms); gradient within 1e-6.
use crate::common::{assert_close, each_kernel_set, rng, uniform, OrFail};
use wgsl_autoencoder::ops::{bce, run};
use wgsl_autoencoder::reference;

// Odd sizes, one below and one above a partial-sum chunk, a batch of 3 MNIST images, and two
// chunks and a tail in whole vec4s (the CPU set's kernels take multiples of 4).
const LENS: [usize; 5] = [1, 4095, 4097 + 13, 3 * 784, 2 * 4096 + 8];

fn data(len: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let mut z = uniform(&mut r, len, -12.0, 12.0);
    if len > 2 {
        z[0] = 80.0; // saturated logits: log(1 + exp(-|z|)) must stay finite
        z[1] = -80.0;
    }
    (z, uniform(&mut r, len, 0.0, 1.0))
}

#[test]
fn bce_loss_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, len) in LENS.into_iter().enumerate() {
            let what = format!("{config}: loss of {len} elements");
            let (zs, ts) = data(len, k as u64);
            let (z, t) = (
                g.upload("z", &zs).or_fail(&what),
                g.upload("t", &ts).or_fail(&what),
            );
            let partials = g
                .poisoned("partials", bce::partials_len(len as u64))
                .or_fail(&what);
            let loss = g.poisoned("loss", 4).or_fail(&what);
            let slot = 2;
            run(
                g,
                &[
                    bce::loss_partial(g, "t", &z, &t, &partials).or_fail(&what),
                    bce::loss_finish(g, "t", len as u64, &partials, &loss, slot).or_fail(&what),
                ],
            )
            .or_fail(&what);
            let got = g.read::<f32>(&loss).or_fail(&what);
            let want = reference::bce::loss(&zs, &ts);
            assert!(
                got[0].is_nan() && got[1].is_nan() && got[3].is_nan(),
                "{what}: only the slot is written: {got:?}"
            );
            let err = (got[slot as usize] as f64 - want).abs() / want.abs().max(1e-3);
            assert!(
                err < 1e-5,
                "{what}: loss {} vs reference {want} (rel {err:e})",
                got[slot as usize]
            );
        }
    });
}

#[test]
fn bce_loss_is_bitwise_deterministic() {
    let (zs, ts) = data(50_000, 9);
    each_kernel_set(|g, config| {
        let (z, t) = (
            g.upload("z", &zs).or_fail(config),
            g.upload("t", &ts).or_fail(config),
        );
        let partials = g
            .tensor("partials", bce::partials_len(zs.len() as u64))
            .or_fail(config);
        let loss = g.tensor("loss", 8).or_fail(config);
        let mut ds = vec![bce::loss_partial(g, "t", &z, &t, &partials).or_fail(config)];
        for slot in 0..8 {
            ds.push(
                bce::loss_finish(g, "t", zs.len() as u64, &partials, &loss, slot).or_fail(config),
            );
        }
        run(g, &ds).or_fail(config);
        let got = g.read::<f32>(&loss).or_fail(config);
        assert!(
            got.iter().all(|v| v.to_bits() == got[0].to_bits()),
            "{config}: {got:?}"
        );
    });
}

#[test]
fn bce_sigmoid_backward_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, len) in LENS.into_iter().enumerate() {
            let what = format!("{config}: gradient of {len} elements");
            let (zs, ts) = data(len, 20 + k as u64);
            let (z, t) = (
                g.upload("z", &zs).or_fail(&what),
                g.upload("t", &ts).or_fail(&what),
            );
            let dz = g.poisoned("dz", len as u64).or_fail(&what);
            run(
                g,
                &[bce::sigmoid_backward(g, "t", &z, &t, &dz).or_fail(&what)],
            )
            .or_fail(&what);
            let want = reference::bce::sigmoid_backward(&zs, &ts);
            let scale = 1.0 / len as f64; // the gradient is divided by the count
            let got: Vec<f32> = g
                .read::<f32>(&dz)
                .or_fail(&what)
                .iter()
                .map(|v| (*v as f64 / scale) as f32)
                .collect();
            let want: Vec<f32> = want.iter().map(|v| (*v as f64 / scale) as f32).collect();
            assert_close(&what, &got, &want, 1e-6);
        }
    });
}

/// The loss pass that also writes the gradient (`--folds loss`) gives the set's partial sums
/// and `sigmoid_backward`'s gradient bit for bit, every element of both written: on the GPU
/// set, and on the CPU set (its own fused kernel where the count is a multiple of 4, with a
/// partial last chunk at 2 x 4096 + 8).
#[test]
fn bce_loss_partial_gradient_is_the_two_kernels_bit_for_bit() {
    use wgsl_autoencoder::gpu::KernelSet;
    for (set, k, len) in [KernelSet::Gpu, KernelSet::Cpu]
        .into_iter()
        .flat_map(|set| {
            LENS.into_iter()
                .enumerate()
                .map(move |(k, len)| (set, k, len))
        })
    {
        let g = crate::common::gpu_with(set);
        let what = format!("{set} set, {len} elements");
        let (zs, ts) = data(len, 50 + k as u64);
        let (z, t) = (
            g.upload("z", &zs).or_fail(&what),
            g.upload("t", &ts).or_fail(&what),
        );
        let n = bce::partials_len(len as u64);
        let out = |name, len| g.poisoned(name, len).or_fail(&what);
        let (p0, p1, dz0, dz1) = (
            out("p", n),
            out("p", n),
            out("dz", len as u64),
            out("dz", len as u64),
        );
        let fused = bce::loss_partial_gradient(g, "t", &z, &t, &p1, &dz1).or_fail(&what);
        let own = set == KernelSet::Cpu && len % 4 == 0;
        assert_eq!(fused.source.shader == "cpu/bce", own, "{what}");
        run(
            g,
            &[
                bce::loss_partial(g, "t", &z, &t, &p0).or_fail(&what),
                bce::sigmoid_backward(g, "t", &z, &t, &dz0).or_fail(&what),
                fused,
            ],
        )
        .or_fail(&what);
        for (name, a, b) in [("partials", &p0, &p1), ("dz", &dz0, &dz1)] {
            let (a, b) = (
                g.read::<u32>(a).or_fail(&what),
                g.read::<u32>(b).or_fail(&what),
            );
            assert!(a == b, "{what}: {name} differs in its bits");
            assert!(
                b.iter().all(|v| !f32::from_bits(*v).is_nan()),
                "{what}: {name} unwritten"
            );
        }
    }
}

/// `loss_finish_steps` (`--folds adam`): each region's loss, from a header and the partial
/// sums `loss_partial` wrote after it, into the loss log's slot the header names, bit for bit
/// as `loss_finish` gives it from the same partials (and within 1e-5 of the reference); a
/// region whose header names no slot (0) is skipped; a finished region's slot is cleared, so
/// a second run writes nothing. Regions of every length in LENS, in an order of slots that
/// is not theirs, on both kernel sets (`loss_partial` is the CPU set's there); the rest of
/// the loss log poisoned. Regions too short for a header and a sum are refused.
#[test]
fn bce_loss_finish_steps_matches_loss_finish() {
    each_kernel_set(|g, config| {
        let stride = bce::step_region_len(LENS.iter().copied().max().unwrap_or(1) as u64);
        let slots = [Some(6u32), Some(0), None, Some(3), Some(1)];
        let regions = g
            .poisoned("regions", LENS.len() as u64 * stride)
            .or_fail(config);
        let loss = g.poisoned("loss", 8).or_fail(config);
        let mut want: Vec<Option<(u32, f64)>> = vec![None; 8];
        for (r, (len, slot)) in LENS.into_iter().zip(slots).enumerate() {
            let what = format!("{config}: region {r} of {len} elements");
            let (zs, ts) = data(len, 30 + r as u64);
            let (z, t) = (
                g.upload("z", &zs).or_fail(&what),
                g.upload("t", &ts).or_fail(&what),
            );
            let n = bce::partials_len(len as u64);
            // loss_finish from the partials: the bits to match.
            let own = g.poisoned("partials", n).or_fail(&what);
            let one = g.poisoned("loss", 1).or_fail(&what);
            run(
                g,
                &[
                    bce::loss_partial(g, "t", &z, &t, &own).or_fail(&what),
                    bce::loss_finish(g, "t", len as u64, &own, &one, 0).or_fail(&what),
                ],
            )
            .or_fail(&what);
            // The region: its header, then the same partials (dense.grads_adam indexes into
            // the buffer; a storage binding's offset could not start at a header's end).
            let named = slot.map_or(0.0, |s| (s + 1) as f32);
            let mut region = vec![named, n as f32, len as f32];
            region.extend(g.read::<f32>(&own).or_fail(&what));
            g.write(
                &regions.view(r as u64 * stride, region.len() as u64),
                &region,
            );
            if let Some(s) = slot {
                let bits = g.read::<u32>(&one).or_fail(&what)[0];
                want[s as usize] = Some((bits, reference::bce::loss(&zs, &ts)));
            }
        }
        let count = LENS.len() as u32;
        let finish = bce::loss_finish_steps(g, "t", &regions, stride, count, &loss).or_fail(config);
        run(g, std::slice::from_ref(&finish)).or_fail(config);
        let got = g.read::<f32>(&loss).or_fail(config);
        for (s, (got, want)) in got.iter().zip(&want).enumerate() {
            match want {
                None => assert!(got.is_nan(), "{config}: slot {s} written: {got}"),
                Some((bits, reference)) => {
                    assert_eq!(
                        got.to_bits(),
                        *bits,
                        "{config}: slot {s}: not loss_finish's bits"
                    );
                    let err = (*got as f64 - reference).abs() / reference.abs().max(1e-3);
                    assert!(err < 1e-5, "{config}: slot {s}: {got} vs {reference}");
                }
            }
        }
        let headers = g.read::<f32>(&regions).or_fail(config);
        for r in 0..LENS.len() {
            let slot = headers[r * stride as usize];
            assert_eq!(slot, 0.0, "{config}: region {r}'s slot not cleared");
        }
        // Nothing left to finish: a second run writes no slot.
        g.write(&loss, &[f32::NAN; 8]);
        run(g, &[finish]).or_fail(config);
        let again = g.read::<f32>(&loss).or_fail(config);
        assert!(again.iter().all(|v| v.is_nan()), "{config}: {again:?}");
        for (stride, count) in [(bce::STEP_HEADER, 1), (stride, count + 1), (stride, 0)] {
            let refused = bce::loss_finish_steps(g, "t", &regions, stride, count, &loss);
            assert!(
                refused.is_err(),
                "{config}: {count} regions of {stride} accepted"
            );
        }
    });
}
