//! upsample: nearest x2 forward and backward. Forward is exact; backward sums 4 terms.
use crate::common::{assert_close, each_kernel_set, rng, uniform, OrFail};
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::ops::upsample;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::UpsampleShape;

fn shapes() -> Vec<UpsampleShape> {
    let s = |n, h, w, c| UpsampleShape { n, h, w, c };
    // odd (channels not a multiple of 4 take the GPU kernel on either set; 4 and 12 the CPU
    // set's vec4 kernel), then the conv autoencoder's three upsamplings (4 -> 8 -> 16,
    // 14 -> 28), batch 2
    vec![
        s(3, 3, 5, 5),
        s(1, 1, 1, 1),
        s(3, 3, 5, 4),
        s(1, 1, 1, 12),
        s(2, 4, 4, 8),
        s(2, 8, 8, 8),
        s(2, 14, 14, 16),
    ]
}

#[test]
fn upsample_forward_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}");
            let xs = uniform(&mut rng(k as u64), s.input_len() as usize, -1.0, 1.0);
            let x = g.upload("x", &xs).or_fail(&what);
            let y = g.poisoned("y", s.output_len()).or_fail(&what);
            run(g, &[upsample::forward(g, "t", &s, &x, &y).or_fail(&what)]).or_fail(&what);
            let want = reference::upsample::forward(&s, &xs);
            assert_close(&what, &g.read::<f32>(&y).or_fail(&what), &want, 0.0);
        }
    });
}

#[test]
fn upsample_backward_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}");
            let dys = uniform(&mut rng(9 + k as u64), s.output_len() as usize, -1.0, 1.0);
            let dy = g.upload("dy", &dys).or_fail(&what);
            let dx = g.poisoned("dx", s.input_len()).or_fail(&what);
            run(
                g,
                &[upsample::backward(g, "t", &s, &dy, &dx).or_fail(&what)],
            )
            .or_fail(&what);
            let want = reference::upsample::backward(&s, &dys);
            assert_close(&what, &g.read::<f32>(&dx).or_fail(&what), &want, 1e-6);
        }
    });
}

/// The CPU set's backward with the ReLU mask of the layer below fused in: the reference's
/// backward, then its ReLU mask by the upsampling's input. Without a fused kernel for the
/// shape and set, the launcher must refuse.
#[test]
fn upsample_backward_masked_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}, masked");
            let mut r = rng(30 + k as u64);
            let xs = uniform(&mut r, s.input_len() as usize, -1.0, 1.0);
            let dys = uniform(&mut r, s.output_len() as usize, -1.0, 1.0);
            let (x, dy) = (
                g.upload("x", &xs).or_fail(&what),
                g.upload("dy", &dys).or_fail(&what),
            );
            let dx = g.poisoned("dx", s.input_len()).or_fail(&what);
            let launched = upsample::backward_masked(g, "t", &s, &dy, &x, &dx);
            if !upsample::fuses_relu_mask(g, &s) {
                assert!(launched.is_err(), "{what}: accepted without a fused kernel");
                continue;
            }
            run(g, &[launched.or_fail(&what)]).or_fail(&what);
            let summed = reference::upsample::backward(&s, &dys);
            let want = reference::activation::relu_backward(&xs, &summed);
            assert_close(&what, &g.read::<f32>(&dx).or_fail(&what), &want, 1e-6);
        }
    });
}
