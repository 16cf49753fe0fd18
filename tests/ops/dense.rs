//! dense: forward (with and without ReLU), backward input, weight and bias.
//! Tolerance: 1e-5 of the output's scale (f32 sums of at most 784 products).
use crate::common::{assert_close, gpu, rng, uniform};
use wgsl_autoencoder::ops::dense::{self, GradOut};
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::DenseShape;

const TOL: f64 = 1e-5;

fn shapes() -> Vec<DenseShape> {
    let s = |n, fin, fout| DenseShape { n, fin, fout };
    // odd, then the dense and deep models' layers, batch 3 (long sums over 784 inputs or
    // outputs take the split-K kernels), then a batch of 130 (split-K weight gradients)
    vec![
        s(130, 20, 9),
        s(130, 784, 32),
        s(3, 7, 5),
        s(1, 1, 1),
        s(3, 784, 32),
        s(3, 32, 784),
        s(3, 784, 128),
        s(3, 128, 64),
        s(3, 64, 32),
    ]
}

struct Case {
    s: DenseShape,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn case(s: DenseShape, seed: u64) -> Case {
    let mut r = rng(seed);
    Case {
        s,
        x: uniform(&mut r, s.input_len() as usize, -1.0, 1.0),
        w: uniform(&mut r, s.weight_len() as usize, -0.3, 0.3),
        b: uniform(&mut r, s.fout as usize, -0.5, 0.5),
        dy: uniform(&mut r, s.output_len() as usize, -1.0, 1.0),
    }
}

fn masked(c: &Case, relu: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    if !relu {
        return (c.dy.clone(), None);
    }
    let act = reference::dense::forward(&c.s, true, &c.x, &c.w, &c.b);
    (reference::activation::relu_backward(&act, &c.dy), Some(act))
}

#[test]
fn dense_forward_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, k as u64);
            let (x, w, b) = (
                g.upload("x", &c.x).unwrap(),
                g.upload("w", &c.w).unwrap(),
                g.upload("b", &c.b).unwrap(),
            );
            let y = g.poisoned("y", s.output_len()).unwrap();
            run(
                g,
                &[dense::forward(g, "t", &s, relu, &x, &w, &b, &y).unwrap()],
            )
            .unwrap();
            let want = reference::dense::forward(&s, relu, &c.x, &c.w, &c.b);
            assert_close(
                &format!("{s:?} relu={relu}"),
                &g.read::<f32>(&y).unwrap(),
                &want,
                TOL,
            );
        }
    }
}

#[test]
fn dense_backward_input_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 10 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let (w, dy) = (g.upload("w", &c.w).unwrap(), g.upload("dy", &c.dy).unwrap());
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let dx = g.poisoned("dx", s.input_len()).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            run(
                g,
                &[dense::backward_input(g, "t", &s, &go, &w, &dx).unwrap()],
            )
            .unwrap();
            let want = reference::dense::backward_input(&s, &dy_ref, &c.w);
            assert_close(
                &format!("{s:?} relu={relu}"),
                &g.read::<f32>(&dx).unwrap(),
                &want,
                TOL,
            );
        }
    }
}

#[test]
fn dense_backward_weight_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 20 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let (x, dy) = (g.upload("x", &c.x).unwrap(), g.upload("dy", &c.dy).unwrap());
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let dw = g.poisoned("dw", s.weight_len()).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            run(
                g,
                &[dense::backward_weight(g, "t", &s, &go, &x, &dw).unwrap()],
            )
            .unwrap();
            let want = reference::dense::backward_weight(&s, &c.x, &dy_ref);
            assert_close(
                &format!("{s:?} relu={relu}"),
                &g.read::<f32>(&dw).unwrap(),
                &want,
                TOL,
            );
        }
    }
}

#[test]
fn dense_backward_bias_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 30 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let dy = g.upload("dy", &c.dy).unwrap();
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let db = g.poisoned("db", s.fout as u64).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            run(g, &[dense::backward_bias(g, "t", &s, &go, &db).unwrap()]).unwrap();
            let want = reference::dense::backward_bias(&s, &dy_ref);
            assert_close(
                &format!("{s:?} relu={relu}"),
                &g.read::<f32>(&db).unwrap(),
                &want,
                TOL,
            );
        }
    }
}

/// The fused path training runs: kernel and bias gradients together (split-K from a batch of
/// 128 on, with the bias as an extra input row).
#[test]
fn dense_backward_params_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 40 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let (x, dy) = (g.upload("x", &c.x).unwrap(), g.upload("dy", &c.dy).unwrap());
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let dw = g.poisoned("dw", s.weight_len()).unwrap();
            let db = g.poisoned("db", s.fout as u64).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            run(
                g,
                &dense::backward_params(g, "t", &s, &go, &x, &dw, &db).unwrap(),
            )
            .unwrap();
            let what = format!("{s:?} relu={relu}");
            let want_w = reference::dense::backward_weight(&s, &c.x, &dy_ref);
            assert_close(&what, &g.read::<f32>(&dw).unwrap(), &want_w, TOL);
            let want_b = reference::dense::backward_bias(&s, &dy_ref);
            assert_close(&what, &g.read::<f32>(&db).unwrap(), &want_b, TOL);
        }
    }
}
