//! activation: ReLU and sigmoid, forward and backward. ReLU is exact; sigmoid within 1e-6.
use crate::common::{assert_close, gpu, rng, uniform};
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
    let g = gpu();
    for len in LENS {
        let xs = input(len, len as u64);
        let x = g.upload("x", &xs).unwrap();
        let y = g.poisoned("y", len as u64).unwrap();
        run(g, &[activation::relu_forward(g, "t", &x, &y).unwrap()]).unwrap();
        assert_close(
            "relu",
            &g.read::<f32>(&y).unwrap(),
            &reference::activation::relu_forward(&xs),
            0.0,
        );
    }
}

#[test]
fn relu_backward_matches_reference() {
    let g = gpu();
    for len in LENS {
        let xs = input(len, len as u64);
        let dys = uniform(&mut rng(7), len, -1.0, 1.0);
        let (x, dy) = (g.upload("x", &xs).unwrap(), g.upload("dy", &dys).unwrap());
        let dx = g.poisoned("dx", len as u64).unwrap();
        run(
            g,
            &[activation::relu_backward(g, "t", &x, &dy, &dx).unwrap()],
        )
        .unwrap();
        let want = reference::activation::relu_backward(&xs, &dys);
        assert_close("relu'", &g.read::<f32>(&dx).unwrap(), &want, 0.0);
    }
}

#[test]
fn sigmoid_forward_matches_reference() {
    let g = gpu();
    for len in LENS {
        let xs = input(len, 3 + len as u64);
        let x = g.upload("x", &xs).unwrap();
        let y = g.poisoned("y", len as u64).unwrap();
        run(g, &[activation::sigmoid_forward(g, "t", &x, &y).unwrap()]).unwrap();
        let want = reference::activation::sigmoid_forward(&xs);
        assert_close("sigmoid", &g.read::<f32>(&y).unwrap(), &want, 1e-6);
    }
}

#[test]
fn sigmoid_backward_matches_reference() {
    let g = gpu();
    for len in LENS {
        let ys = reference::activation::sigmoid_forward(&input(len, 5 + len as u64));
        let dys = uniform(&mut rng(11), len, -1.0, 1.0);
        let (y, dy) = (g.upload("y", &ys).unwrap(), g.upload("dy", &dys).unwrap());
        let dx = g.poisoned("dx", len as u64).unwrap();
        run(
            g,
            &[activation::sigmoid_backward(g, "t", &y, &dy, &dx).unwrap()],
        )
        .unwrap();
        let want = reference::activation::sigmoid_backward(&ys, &dys);
        assert_close("sigmoid'", &g.read::<f32>(&dx).unwrap(), &want, 1e-6);
    }
}
