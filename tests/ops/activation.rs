//! activation: ReLU and sigmoid, forward and backward. ReLU is exact; sigmoid within 1e-6.
use crate::common::{assert_close, each_gpu, each_kernel_set, rng, uniform, OrFail};
use wgsl_autoencoder::ops::{activation, run};
use wgsl_autoencoder::reference;

// Odd length (not a multiple of the workgroup), and a large one that spans many workgroups.
const LENS: [usize; 3] = [1, 1001, 3 * 28 * 28 * 16];

fn input(len: usize, seed: u64) -> Vec<f32> {
    let mut x = uniform(&mut rng(seed), len, -20.0, 20.0);
    if len > 3 {
        x[1] = 0.0; // ReLU's gradient at exactly 0 is 0 in Keras
        x[2] = -90.0; // sigmoid far into saturation must not overflow
        x[3] = 90.0;
    }
    x
}

#[test]
fn relu_forward_matches_reference() {
    each_gpu(|g, config| {
        for len in LENS {
            let what = format!("{config}: relu, {len} elements");
            let xs = input(len, len as u64);
            let x = g.upload("x", &xs).or_fail(&what);
            let y = g.poisoned("y", len as u64).or_fail(&what);
            run(
                g,
                &[activation::relu_forward(g, "t", &x, &y).or_fail(&what)],
            )
            .or_fail(&what);
            assert_close(
                &what,
                &g.read::<f32>(&y).or_fail(&what),
                &reference::activation::relu_forward(&xs),
                0.0,
            );
        }
    });
}

#[test]
fn relu_backward_matches_reference() {
    each_kernel_set(|g, config| {
        for len in LENS {
            let what = format!("{config}: relu', {len} elements");
            let xs = input(len, len as u64);
            let dys = uniform(&mut rng(7), len, -1.0, 1.0);
            let (x, dy) = (
                g.upload("x", &xs).or_fail(&what),
                g.upload("dy", &dys).or_fail(&what),
            );
            let dx = g.poisoned("dx", len as u64).or_fail(&what);
            run(
                g,
                &[activation::relu_backward(g, "t", &x, &dy, &dx).or_fail(&what)],
            )
            .or_fail(&what);
            let want = reference::activation::relu_backward(&xs, &dys);
            assert_close(&what, &g.read::<f32>(&dx).or_fail(&what), &want, 0.0);
        }
    });
}

#[test]
fn sigmoid_forward_matches_reference() {
    each_gpu(|g, config| {
        for len in LENS {
            let what = format!("{config}: sigmoid, {len} elements");
            let xs = input(len, 3 + len as u64);
            let x = g.upload("x", &xs).or_fail(&what);
            let y = g.poisoned("y", len as u64).or_fail(&what);
            run(
                g,
                &[activation::sigmoid_forward(g, "t", &x, &y).or_fail(&what)],
            )
            .or_fail(&what);
            let want = reference::activation::sigmoid_forward(&xs);
            assert_close(&what, &g.read::<f32>(&y).or_fail(&what), &want, 1e-6);
        }
    });
}

#[test]
fn sigmoid_backward_matches_reference() {
    each_gpu(|g, config| {
        for len in LENS {
            let what = format!("{config}: sigmoid', {len} elements");
            let ys = reference::activation::sigmoid_forward(&input(len, 5 + len as u64));
            let dys = uniform(&mut rng(11), len, -1.0, 1.0);
            let (y, dy) = (
                g.upload("y", &ys).or_fail(&what),
                g.upload("dy", &dys).or_fail(&what),
            );
            let dx = g.poisoned("dx", len as u64).or_fail(&what);
            run(
                g,
                &[activation::sigmoid_backward(g, "t", &y, &dy, &dx).or_fail(&what)],
            )
            .or_fail(&what);
            let want = reference::activation::sigmoid_backward(&ys, &dys);
            assert_close(&what, &g.read::<f32>(&dx).or_fail(&what), &want, 1e-6);
        }
    });
}
