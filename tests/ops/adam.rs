//! adam: Keras' update over a flat buffer, several steps, against the reference (f32 both
//! sides; within 1e-6 of the weights' scale: sqrt and division may round differently).
use crate::common::{assert_close, each_kernel_set, rng, uniform, OrFail};
use wgsl_autoencoder::ops::adam;
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::AdamConfig;

#[test]
fn adam_step_matches_reference() {
    let cfg = AdamConfig::default();
    each_kernel_set(|g, config| {
        for len in [1usize, 1001, 12_345, 12_288] {
            let what = |t: &str| format!("{config}: {len} elements, {t}");
            let mut r = rng(len as u64);
            let mut w = uniform(&mut r, len, -1.0, 1.0);
            let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
            let (wt, mt, vt) = (
                g.upload("w", &w).or_fail(&what("w")),
                g.upload("m", &m).or_fail(&what("m")),
                g.upload("v", &v).or_fail(&what("v")),
            );
            for t in 1..=3u64 {
                let step = what(&format!("step {t}"));
                let grad = uniform(&mut r, len, -0.1, 0.1);
                let gt = g.upload("g", &grad).or_fail(&step);
                run(
                    g,
                    &[adam::step(g, "t", &cfg, t, &wt, &gt, &mt, &vt).or_fail(&step)],
                )
                .or_fail(&step);
                reference::adam::step(&cfg, t, &mut w, &grad, &mut m, &mut v);
            }
            for (name, t, want) in [("w", &wt, &w), ("m", &mt, &m), ("v", &vt, &v)] {
                let what = what(name);
                assert_close(&what, &g.read::<f32>(t).or_fail(&what), want, 1e-6);
            }
        }
    });
}

/// `step_loss_finish` (`--folds finish`) is `adam.step` and `bce.loss_finish` in one dispatch:
/// the same weights, moments and loss, bit for bit, whatever the kernel set (the fold runs the
/// GPU set's scalar update, which the CPU set's vec4 one matches element by element). The
/// loss lands in its slot only; the other slots keep their NaN.
#[test]
fn adam_step_loss_finish_is_the_two_dispatches_bit_for_bit() {
    use wgsl_autoencoder::ops::bce;
    let cfg = AdamConfig::default();
    each_kernel_set(|g, config| {
        // 12,288 elements fill whole workgroups; 1,001 leaves the last one part-empty. 200,704
        // losses are a dense batch of 256; 5 need one partial sum.
        for (len, total) in [(1001usize, 200_704u64), (12_288, 5)] {
            let what = format!("{config}: {len} elements, a loss of {total}");
            let mut r = rng(len as u64 + 7);
            let w = uniform(&mut r, len, -1.0, 1.0);
            let grad = uniform(&mut r, len, -0.1, 0.1);
            let m = uniform(&mut r, len, -0.01, 0.01);
            let v = uniform(&mut r, len, 0.0, 0.01);
            let partials = uniform(&mut r, bce::partials_len(total) as usize, 0.0, 3000.0);
            let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
            let run_with = |folded: bool| {
                let (wt, gt, mt, vt, pt) = (up(&w), up(&grad), up(&m), up(&v), up(&partials));
                let loss = g.poisoned("loss", 3).or_fail(&what);
                let d = match folded {
                    true => vec![adam::step_loss_finish(
                        g, "t", &cfg, 2, &wt, &gt, &mt, &vt, total, &pt, &loss, 1,
                    )
                    .or_fail(&what)],
                    false => vec![
                        adam::step(g, "t", &cfg, 2, &wt, &gt, &mt, &vt).or_fail(&what),
                        bce::loss_finish(g, "t", total, &pt, &loss, 1).or_fail(&what),
                    ],
                };
                run(g, &d).or_fail(&what);
                [wt, mt, vt, loss].map(|t| g.read::<u32>(&t).or_fail(&what))
            };
            let (plain, folded) = (run_with(false), run_with(true));
            for (name, a, b) in ["w", "m", "v", "loss"]
                .iter()
                .zip(&plain)
                .zip(&folded)
                .map(|((n, a), b)| (n, a, b))
            {
                assert!(a == b, "{what}: {name} differs");
            }
            assert!(f32::from_bits(folded[3][1]).is_finite(), "{what}: no loss");
            assert!(f32::from_bits(folded[3][0]).is_nan() && f32::from_bits(folded[3][2]).is_nan());
        }
    });
}
