//! adam: Keras' update over a flat buffer, several steps, against the reference (f32 both
//! sides; within 1e-6 of the weights' scale: sqrt and division may round differently).
use crate::common::{assert_close, gpu, rng, uniform};
use wgsl_autoencoder::ops::adam;
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::AdamConfig;

#[test]
fn adam_step_matches_reference() {
    let g = gpu();
    let cfg = AdamConfig::default();
    for len in [1usize, 1001, 12_345] {
        let mut r = rng(len as u64);
        let mut w = uniform(&mut r, len, -1.0, 1.0);
        let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (wt, mt, vt) = (
            g.upload("w", &w).unwrap(),
            g.upload("m", &m).unwrap(),
            g.upload("v", &v).unwrap(),
        );
        for t in 1..=3u64 {
            let grad = uniform(&mut r, len, -0.1, 0.1);
            let gt = g.upload("g", &grad).unwrap();
            run(
                g,
                &[adam::step(g, "t", &cfg, t, &wt, &gt, &mt, &vt).unwrap()],
            )
            .unwrap();
            reference::adam::step(&cfg, t, &mut w, &grad, &mut m, &mut v);
        }
        assert_close("w", &g.read::<f32>(&wt).unwrap(), &w, 1e-6);
        assert_close("m", &g.read::<f32>(&mt).unwrap(), &m, 1e-6);
        assert_close("v", &g.read::<f32>(&vt).unwrap(), &v, 1e-6);
    }
}
