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
