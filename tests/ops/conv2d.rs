//! conv2d: forward (with and without ReLU), backward input, weight and bias.
//! Tolerance: 1e-5 of the output's scale; f32 sums of at most a few thousand products.
use crate::common::{assert_close, gpu, rng, uniform};
use wgsl_autoencoder::ops::conv2d::{self, GradOut};
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::{Conv2dShape, Padding};

const TOL: f64 = 1e-5;

fn shapes() -> Vec<Conv2dShape> {
    let s = |n, h, w, ci, co, padding| Conv2dShape {
        n,
        h,
        w,
        ci,
        co,
        padding,
    };
    vec![
        // odd shapes
        s(3, 7, 7, 5, 3, Padding::Same),
        s(3, 7, 5, 5, 3, Padding::Valid),
        s(2, 5, 9, 1, 4, Padding::Same),
        // the conv autoencoder's layers, batch 2
        s(2, 28, 28, 1, 16, Padding::Same),
        s(2, 14, 14, 16, 8, Padding::Same),
        s(2, 7, 7, 8, 8, Padding::Same),
        s(2, 4, 4, 8, 8, Padding::Same),
        s(2, 8, 8, 8, 8, Padding::Same),
        s(2, 16, 16, 8, 16, Padding::Valid),
        s(2, 28, 28, 16, 1, Padding::Same),
    ]
}

struct Case {
    s: Conv2dShape,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn case(s: Conv2dShape, seed: u64) -> Case {
    let mut r = rng(seed);
    Case {
        s,
        x: uniform(&mut r, s.input_len() as usize, -1.0, 1.0),
        w: uniform(&mut r, s.weight_len() as usize, -0.5, 0.5),
        b: uniform(&mut r, s.co as usize, -0.5, 0.5),
        dy: uniform(&mut r, s.output_len() as usize, -1.0, 1.0),
    }
}

#[test]
fn conv2d_forward_matches_reference() {
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
                &[conv2d::forward(g, "t", &s, relu, &x, &w, &b, &y).unwrap()],
            )
            .unwrap();
            let want = reference::conv2d::forward(&s, relu, &c.x, &c.w, &c.b);
            assert_close(
                &format!("{s:?} relu={relu}"),
                &g.read::<f32>(&y).unwrap(),
                &want,
                TOL,
            );
        }
    }
}

/// The upstream gradient as the reference sees it: masked by ReLU' when the layer had ReLU.
fn masked(c: &Case, relu: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    if !relu {
        return (c.dy.clone(), None);
    }
    let act = reference::conv2d::forward(&c.s, true, &c.x, &c.w, &c.b);
    (reference::activation::relu_backward(&act, &c.dy), Some(act))
}

#[test]
fn conv2d_backward_input_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 100 + k as u64);
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
                &[conv2d::backward_input(g, "t", &s, &go, &w, &dx).unwrap()],
            )
            .unwrap();
            let want = reference::conv2d::backward_input(&s, &dy_ref, &c.w);
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
fn conv2d_backward_weight_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 200 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let (x, dy) = (g.upload("x", &c.x).unwrap(), g.upload("dy", &c.dy).unwrap());
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let dw = g.poisoned("dw", s.weight_len()).unwrap();
            let partials = g.poisoned("partials", conv2d::partials_len(&s)).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            let ds = conv2d::backward_weight(g, "t", &s, &go, &x, &partials, &dw).unwrap();
            run(g, &ds).unwrap();
            let want = reference::conv2d::backward_weight(&s, &c.x, &dy_ref);
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
fn conv2d_backward_bias_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 300 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let dy = g.upload("dy", &c.dy).unwrap();
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let db = g.poisoned("db", s.co as u64).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            run(g, &[conv2d::backward_bias(g, "t", &s, &go, &db).unwrap()]).unwrap();
            let want = reference::conv2d::backward_bias(&s, &dy_ref);
            assert_close(
                &format!("{s:?} relu={relu}"),
                &g.read::<f32>(&db).unwrap(),
                &want,
                TOL,
            );
        }
    }
}

#[test]
fn conv2d_rejects_mismatched_buffers() {
    let g = gpu();
    let s = Conv2dShape {
        n: 1,
        h: 4,
        w: 4,
        ci: 2,
        co: 2,
        padding: Padding::Same,
    };
    let x = g.tensor("x", s.input_len() - 1).unwrap();
    let w = g.tensor("w", s.weight_len()).unwrap();
    let b = g.tensor("b", 2).unwrap();
    let y = g.tensor("y", s.output_len()).unwrap();
    let err = conv2d::forward(g, "t", &s, false, &x, &w, &b, &y).unwrap_err();
    assert!(err.to_string().contains("x has 31 elements"), "{err}");
}

/// The fused path training runs: kernel and bias gradients in one split sum.
#[test]
fn conv2d_backward_params_matches_reference() {
    let g = gpu();
    for (k, s) in shapes().into_iter().enumerate() {
        for relu in [false, true] {
            let c = case(s, 400 + k as u64);
            let (dy_ref, act) = masked(&c, relu);
            let (x, dy) = (g.upload("x", &c.x).unwrap(), g.upload("dy", &c.dy).unwrap());
            let act = act.map(|a| g.upload("act", &a).unwrap());
            let dw = g.poisoned("dw", s.weight_len()).unwrap();
            let db = g.poisoned("db", s.co as u64).unwrap();
            let partials = g.poisoned("partials", conv2d::partials_len(&s)).unwrap();
            let go = GradOut {
                dy: &dy,
                relu_output: act.as_ref(),
            };
            run(
                g,
                &conv2d::backward_params(g, "t", &s, &go, &x, &partials, &dw, &db).unwrap(),
            )
            .unwrap();
            let what = format!("{s:?} relu={relu}");
            let want_w = reference::conv2d::backward_weight(&s, &c.x, &dy_ref);
            assert_close(&what, &g.read::<f32>(&dw).unwrap(), &want_w, TOL);
            let want_b = reference::conv2d::backward_bias(&s, &dy_ref);
            assert_close(&what, &g.read::<f32>(&db).unwrap(), &want_b, TOL);
        }
    }
}
