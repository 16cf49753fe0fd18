//! The CPU reference's backward passes against central finite differences in f64 (DESIGN.md
//! §4.2), plus direct checks of the Keras semantics the gradients cannot see (pool ties and odd
//! edges, conv orientation and kernel layout, Adam's first step, batch gathering).
//!
//! Every gradient check takes a scalar objective L = Σ r ⊙ forward(…) with a fixed random r, so
//! ∂L/∂output = r, and compares the analytic backward fed with r against
//! (L(p + h) − L(p − h)) / 2h for every single parameter p, h = 1e-6.
//!
//! Tolerance: max |analytic − numeric| ≤ 1e-6 · max(1, max |numeric|). The central difference's
//! truncation error is h²/6 · |L'''|: zero for the piecewise-linear ops (conv, dense, pool,
//! upsample, ReLU, as long as no input sits within h of a kink, which the tests ensure) and
//! ~1e-13 for sigmoid and BCE. Its rounding error is ~ε·|L|/h ≈ 1e-10·|L|, at most ~1e-8 for
//! these sizes. So 1e-6 leaves a margin of 100× or more, while an indexing or transposition
//! bug shows up as an error of order 1.
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgsl_autoencoder::reference::*;
use wgsl_autoencoder::shapes::AdamConfig;
use wgsl_autoencoder::shapes::DenseShape;
use wgsl_autoencoder::shapes::PoolShape;
use wgsl_autoencoder::shapes::UpsampleShape;
use wgsl_autoencoder::shapes::{Conv2dShape, Padding, StrideShape};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central differences of `f` at `p`, one coordinate at a time.
fn numeric_grad(p: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut q = p.to_vec();
    (0..p.len())
        .map(|i| {
            let p0 = q[i];
            q[i] = p0 + H;
            let plus = f(&q);
            q[i] = p0 - H;
            let minus = f(&q);
            q[i] = p0;
            (plus - minus) / (2.0 * H)
        })
        .collect()
}

/// The tolerance of the module doc: max abs error ≤ TOL relative to the gradient's scale.
fn assert_grad_close(what: &str, analytic: &[f64], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: lengths differ");
    let scale = numeric.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let (worst, err) = analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| (a - n).abs())
        .enumerate()
        .fold(
            (0, 0.0f64),
            |(wi, we), (i, e)| if e > we { (i, e) } else { (wi, we) },
        );
    assert!(
        err <= TOL * scale,
        "{what}: max |analytic - numeric| = {err:e} at {worst} (analytic {}, numeric {}), \
         allowed {:e}",
        analytic[worst],
        numeric[worst],
        TOL * scale
    );
    // A gradient that is zero everywhere would pass vacuously: make sure something was tested.
    assert!(
        numeric.iter().any(|v| v.abs() > 1e-3),
        "{what}: gradient is all zero"
    );
}

/// Values that keep |v| ≥ `margin`: a random sign times [margin, 1).
fn away_from_zero(rng: &mut ChaCha8Rng, len: usize, margin: f64) -> Vec<f64> {
    (0..len)
        .map(|_| {
            let v = rng.random_range(margin..1.0);
            if rng.random_bool(0.5) {
                v
            } else {
                -v
            }
        })
        .collect()
}

/// Fails if any pre-activation sits so close to ReLU's kink that a step of h could cross it.
fn assert_away_from_kink(what: &str, pre: &[f64]) {
    let closest = pre.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
    assert!(
        closest > 1e-4,
        "{what}: a pre-activation is {closest:e} from 0; change the seed"
    );
}

// ---------------------------------------------------------------------------------- conv2d

/// 3x3 with both paddings and one or three input channels; then kernel sides 1, 5 and 7
/// (both paddings, 7 'valid' on 9x7 leaving 3x1) and a 3x3 with more than 16 channels a side,
/// small enough that every parameter's two extra forward passes stay cheap.
fn conv_shapes() -> Vec<Conv2dShape> {
    let mut shapes = Vec::new();
    for padding in [Padding::Same, Padding::Valid] {
        for ci in [3, 1] {
            shapes.push(Conv2dShape {
                k: 3,
                n: 2,
                h: 7,
                w: 5,
                ci,
                co: 5,
                padding,
            });
        }
    }
    let s = |k, n, h, w, ci, co, padding| Conv2dShape {
        k,
        n,
        h,
        w,
        ci,
        co,
        padding,
    };
    shapes.extend([
        s(1, 2, 4, 3, 3, 5, Padding::Same),
        s(1, 1, 3, 4, 2, 3, Padding::Valid),
        s(5, 1, 6, 5, 2, 3, Padding::Same),
        s(5, 2, 7, 6, 2, 3, Padding::Valid),
        s(7, 1, 7, 6, 2, 2, Padding::Same),
        s(7, 1, 9, 7, 2, 3, Padding::Valid),
        s(3, 1, 4, 3, 18, 17, Padding::Same),
    ]);
    shapes
}

struct ConvCase {
    x: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    r: Vec<f64>,
}

fn conv_case(s: Conv2dShape, seed: u64) -> ConvCase {
    let mut g = rng(seed);
    ConvCase {
        x: uniform(&mut g, s.input_len() as usize, -1.0, 1.0),
        w: uniform(&mut g, s.weight_len() as usize, -1.0, 1.0),
        b: uniform(&mut g, s.co as usize, -1.0, 1.0),
        r: uniform(&mut g, s.output_len() as usize, -1.0, 1.0),
    }
}

#[test]
fn conv2d_backward_input_matches_finite_differences() {
    for (k, s) in conv_shapes().into_iter().enumerate() {
        let c = conv_case(s, 10 + k as u64);
        let numeric = numeric_grad(&c.x, |x| {
            dot(&c.r, &conv2d::forward_f64(&s, false, x, &c.w, &c.b))
        });
        let analytic = conv2d::backward_input_f64(&s, &c.r, &c.w);
        assert_grad_close(&format!("conv2d dx {s:?}"), &analytic, &numeric);
    }
}

#[test]
fn conv2d_backward_weight_matches_finite_differences() {
    for (k, s) in conv_shapes().into_iter().enumerate() {
        let c = conv_case(s, 20 + k as u64);
        let numeric = numeric_grad(&c.w, |w| {
            dot(&c.r, &conv2d::forward_f64(&s, false, &c.x, w, &c.b))
        });
        let analytic = conv2d::backward_weight_f64(&s, &c.x, &c.r);
        assert_grad_close(&format!("conv2d dw {s:?}"), &analytic, &numeric);
    }
}

#[test]
fn conv2d_backward_bias_matches_finite_differences() {
    for (k, s) in conv_shapes().into_iter().enumerate() {
        let c = conv_case(s, 30 + k as u64);
        let numeric = numeric_grad(&c.b, |b| {
            dot(&c.r, &conv2d::forward_f64(&s, false, &c.x, &c.w, b))
        });
        let analytic = conv2d::backward_bias_f64(&s, &c.r);
        assert_grad_close(&format!("conv2d db {s:?}"), &analytic, &numeric);
    }
}

/// The fused conv + ReLU: L = Σ r ⊙ relu(conv(x)), its dy masked by relu_backward.
#[test]
fn conv2d_relu_backward_matches_finite_differences() {
    for (k, s) in conv_shapes().into_iter().enumerate() {
        let c = conv_case(s, 40 + k as u64);
        assert_away_from_kink(
            &format!("conv2d {s:?}"),
            &conv2d::forward_f64(&s, false, &c.x, &c.w, &c.b),
        );
        let y = conv2d::forward_f64(&s, true, &c.x, &c.w, &c.b);
        assert!(
            y.contains(&0.0) && y.iter().any(|&v| v > 0.0),
            "ReLU is not exercised"
        );
        let dy = activation::relu_backward_f64(&y, &c.r);
        let loss =
            |x: &[f64], w: &[f64], b: &[f64]| dot(&c.r, &conv2d::forward_f64(&s, true, x, w, b));
        let what = format!("conv2d+relu {s:?}");
        assert_grad_close(
            &format!("{what} dx"),
            &conv2d::backward_input_f64(&s, &dy, &c.w),
            &numeric_grad(&c.x, |x| loss(x, &c.w, &c.b)),
        );
        assert_grad_close(
            &format!("{what} dw"),
            &conv2d::backward_weight_f64(&s, &c.x, &dy),
            &numeric_grad(&c.w, |w| loss(&c.x, w, &c.b)),
        );
        assert_grad_close(
            &format!("{what} db"),
            &conv2d::backward_bias_f64(&s, &dy),
            &numeric_grad(&c.b, |b| loss(&c.x, &c.w, b)),
        );
    }
}

#[test]
fn conv2d_valid_16x16_gives_14x14() {
    let s = Conv2dShape {
        k: 3,
        n: 2,
        h: 16,
        w: 16,
        ci: 8,
        co: 16,
        padding: Padding::Valid,
    };
    assert_eq!(s.out_hw(), (14, 14));
    let x = vec![0.5f32; s.input_len() as usize];
    let w = vec![0.25f32; s.weight_len() as usize];
    let b = vec![1.0f32; 16];
    let y = conv2d::forward(&s, false, &x, &w, &b);
    assert_eq!(y.len(), 2 * 14 * 14 * 16);
    // Every output of a valid conv sees all 9 taps × 8 channels: 72 · 0.5 · 0.25 + 1.
    assert!(y.iter().all(|&v| v == 10.0));
}

/// Keras' Conv2D is a cross-correlation with kernel [ky][kx][ci][co]: a kernel whose only
/// non-zero tap is (ky, kx) = (0, 0) from channel 1 to channel 2 gives
/// y[oy][ox][2] = x[oy - 1][ox - 1][1] under 'same' padding, and 0 on the top row/left column.
#[test]
fn conv2d_forward_is_a_keras_cross_correlation() {
    let s = Conv2dShape {
        k: 3,
        n: 1,
        h: 4,
        w: 5,
        ci: 2,
        co: 3,
        padding: Padding::Same,
    };
    let x: Vec<f32> = (0..s.input_len()).map(|i| i as f32).collect();
    let mut w = vec![0.0f32; s.weight_len() as usize];
    let (ky, kx, c, o) = (0usize, 0usize, 1usize, 2usize);
    w[((ky * 3 + kx) * 2 + c) * 3 + o] = 1.0;
    let b = [0.0f32, 0.0, 0.5];
    let y = conv2d::forward(&s, false, &x, &w, &b);
    for oy in 0..4usize {
        for ox in 0..5usize {
            let at = |ch: usize| y[(oy * 5 + ox) * 3 + ch];
            assert_eq!(at(0), 0.0);
            assert_eq!(at(1), 0.0);
            let want = if oy == 0 || ox == 0 {
                0.5
            } else {
                x[((oy - 1) * 5 + (ox - 1)) * 2 + c] + 0.5
            };
            assert_eq!(at(2), want, "at ({oy}, {ox})");
        }
    }
}

/// The same for a 5x5 kernel ('same' pads 2): the only non-zero tap (ky, kx) = (4, 1) from
/// channel 0 to channel 1 gives y[oy][ox][1] = x[oy + 2][ox - 1][0], 0 where that is outside.
#[test]
fn conv2d_5x5_forward_is_a_keras_cross_correlation() {
    let s = Conv2dShape {
        k: 5,
        n: 1,
        h: 6,
        w: 5,
        ci: 1,
        co: 2,
        padding: Padding::Same,
    };
    assert_eq!(s.out_hw(), (6, 5));
    let x: Vec<f32> = (0..s.input_len()).map(|i| i as f32 + 1.0).collect();
    let mut w = vec![0.0f32; s.weight_len() as usize];
    let (ky, kx) = (4usize, 1usize);
    w[(ky * 5 + kx) * 2 + 1] = 1.0;
    let y = conv2d::forward(&s, false, &x, &w, &[0.0, 0.0]);
    for oy in 0..6usize {
        for ox in 0..5usize {
            assert_eq!(y[(oy * 5 + ox) * 2], 0.0);
            let want = match (oy + 2 < 6, ox >= 1) {
                (true, true) => x[(oy + 2) * 5 + ox - 1],
                _ => 0.0,
            };
            assert_eq!(y[(oy * 5 + ox) * 2 + 1], want, "at ({oy}, {ox})");
        }
    }
}

/// 'valid' loses k - 1 pixels: 9x7 under a 7x7 kernel gives 3x1, every output the sum of its
/// whole window; a 1x1 kernel keeps the size either way and is a per-pixel matrix product.
#[test]
fn conv2d_valid_sizes_and_the_1x1_kernel() {
    let s = Conv2dShape {
        k: 7,
        n: 1,
        h: 9,
        w: 7,
        ci: 2,
        co: 1,
        padding: Padding::Valid,
    };
    assert_eq!(s.out_hw(), (3, 1));
    let y = conv2d::forward(&s, false, &vec![0.5; 126], &vec![0.25; 98], &[1.0]);
    // 49 taps x 2 channels x 0.5 x 0.25 + 1.
    assert_eq!(y, vec![13.25; 3]);
    for padding in [Padding::Same, Padding::Valid] {
        let s = Conv2dShape {
            k: 1,
            n: 1,
            h: 2,
            w: 3,
            ci: 2,
            co: 3,
            padding,
        };
        assert_eq!(s.out_hw(), (2, 3));
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let w: Vec<f32> = (0..6).map(|i| (i as f32) - 2.0).collect();
        let y = conv2d::forward(&s, false, &x, &w, &[0.0; 3]);
        for pix in 0..6 {
            for o in 0..3 {
                let want = x[pix * 2] * w[o] + x[pix * 2 + 1] * w[3 + o];
                assert_eq!(y[pix * 3 + o], want);
            }
        }
    }
}

// ------------------------------------------------------------------------------------ pool

/// A random permutation of evenly spaced values: all distinct, at least 2/len apart (≫ h), so
/// every window has a unique maximum and the max is differentiable.
fn distinct_values(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..len)
        .map(|i| 2.0 * i as f64 / len as f64 - 1.0)
        .collect();
    v.shuffle(rng);
    v
}

/// Both paddings at odd and even sizes. In 'valid' an odd last row/column never reaches the
/// output, so its numeric gradient is exactly 0 and the analytic one must be too.
#[test]
fn pool_backward_matches_finite_differences() {
    let sizes = [(7, 7), (5, 6), (6, 5), (4, 6)];
    let cases = [Padding::Same, Padding::Valid]
        .into_iter()
        .flat_map(|padding| sizes.into_iter().map(move |hw| (padding, hw)));
    for (k, (padding, (h, w))) in cases.enumerate() {
        let s = PoolShape {
            n: 2,
            h,
            w,
            c: 3,
            padding,
        };
        let mut g = rng(50 + k as u64);
        let x = distinct_values(&mut g, s.input_len() as usize);
        let r = uniform(&mut g, s.output_len() as usize, -1.0, 1.0);
        let (_, winner) = pool::forward_f64(&s, &x);
        let numeric = numeric_grad(&x, |x| dot(&r, &pool::forward_f64(&s, x).0));
        let analytic = pool::backward_f64(&s, &winner, &r);
        assert_grad_close(&format!("pool dx {s:?}"), &analytic, &numeric);
    }
}

#[test]
fn pool_tie_goes_to_first_element() {
    let s = PoolShape {
        padding: Padding::Same,
        n: 1,
        h: 2,
        w: 4,
        c: 1,
    };
    // Window 0 is all equal; window 1 ([0 3; 3 1]) ties between k = 1 and k = 2.
    let x = [2.0f32, 2.0, 0.0, 3.0, 2.0, 2.0, 3.0, 1.0];
    let (y, winner) = pool::forward(&s, &x);
    assert_eq!(y, [2.0, 3.0]);
    assert_eq!(winner, [0, 1]);
    let dx = pool::backward(&s, &winner, &[5.0, 7.0]);
    assert_eq!(dx, [5.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]);
}

/// 7×7 → 4×4: the last window row/column is one input wide, and the missing cells are absent,
/// not zero padding, so on an all-negative input the edge windows still give their input.
#[test]
fn pool_7x7_gives_4x4_with_one_wide_last_windows() {
    let s = PoolShape {
        padding: Padding::Same,
        n: 1,
        h: 7,
        w: 7,
        c: 1,
    };
    assert_eq!(s.out_hw(), (4, 4));
    // Increasing along rows and columns: the window's maximum is its bottom-right cell.
    let x: Vec<f32> = (0..49).map(|i| i as f32 - 100.0).collect();
    let (y, winner) = pool::forward(&s, &x);
    assert_eq!(y.len(), 16);
    for oy in 0..4usize {
        for ox in 0..4usize {
            let iy = (2 * oy + 1).min(6);
            let ix = (2 * ox + 1).min(6);
            assert_eq!(y[oy * 4 + ox], x[iy * 7 + ix], "value at ({oy}, {ox})");
            let k = (iy - 2 * oy) * 2 + (ix - 2 * ox);
            assert_eq!(winner[oy * 4 + ox], k as u32, "winner at ({oy}, {ox})");
        }
    }
    // Backward: each output's gradient lands on its winner only; the rest of dx is zero.
    let dy: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let dx = pool::backward(&s, &winner, &dy);
    assert_eq!(dx.iter().sum::<f32>(), dy.iter().sum::<f32>());
    assert_eq!(dx[6 * 7 + 6], 16.0);
    assert_eq!(dx[5 * 7 + 6], 12.0);
}

/// 'valid': 7×6 → 3×3, the last row dropped (floor, as Keras/TensorFlow's padding='valid'):
/// every window is a full 2×2, so on an all-negative input no window sees the dropped row, and
/// backward leaves it at 0.
#[test]
fn pool_valid_7x6_gives_3x3_and_drops_the_last_row() {
    let s = PoolShape {
        padding: Padding::Valid,
        n: 1,
        h: 7,
        w: 6,
        c: 1,
    };
    assert_eq!(s.out_hw(), (3, 3));
    // Increasing along rows and columns: the window's maximum is its bottom-right cell, and
    // the dropped row 6 holds the largest values of all.
    let x: Vec<f32> = (0..42).map(|i| i as f32 - 100.0).collect();
    let (y, winner) = pool::forward(&s, &x);
    assert_eq!(y.len(), 9);
    for oy in 0..3usize {
        for ox in 0..3usize {
            assert_eq!(
                y[oy * 3 + ox],
                x[(2 * oy + 1) * 6 + 2 * ox + 1],
                "value at ({oy}, {ox})"
            );
            assert_eq!(winner[oy * 3 + ox], 3, "winner at ({oy}, {ox})");
        }
    }
    let dy: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let dx = pool::backward(&s, &winner, &dy);
    assert_eq!(dx.iter().sum::<f32>(), dy.iter().sum::<f32>());
    assert_eq!(dx[5 * 6 + 5], 9.0);
    assert!(dx[6 * 6..].iter().all(|&v| v == 0.0), "dropped row: {dx:?}");
}

/// 'valid' and 'same' agree wherever both have a window: on even sizes everywhere.
#[test]
fn pool_valid_equals_same_on_even_sizes() {
    let mut g = rng(58);
    for (h, w) in [(4, 6), (2, 2), (8, 4)] {
        let shape = |padding| PoolShape {
            padding,
            n: 2,
            h,
            w,
            c: 3,
        };
        let (same, valid) = (shape(Padding::Same), shape(Padding::Valid));
        assert_eq!(same.out_hw(), valid.out_hw());
        let x: Vec<f32> = (0..same.input_len())
            .map(|_| g.random_range(-1.0..1.0))
            .collect();
        let (ys, ws) = pool::forward(&same, &x);
        let (yv, wv) = pool::forward(&valid, &x);
        assert_eq!((&ys, &ws), (&yv, &wv), "{h}x{w}");
        assert_eq!(
            pool::backward(&same, &ws, &ys),
            pool::backward(&valid, &wv, &yv),
            "{h}x{w}"
        );
    }
}

// -------------------------------------------------------------------------------- upsample

#[test]
fn upsample_backward_matches_finite_differences() {
    let s = UpsampleShape {
        n: 2,
        h: 3,
        w: 5,
        c: 3,
    };
    let mut g = rng(60);
    let x = uniform(&mut g, s.input_len() as usize, -1.0, 1.0);
    let r = uniform(&mut g, s.output_len() as usize, -1.0, 1.0);
    let numeric = numeric_grad(&x, |x| dot(&r, &upsample::forward_f64(&s, x)));
    let analytic = upsample::backward_f64(&s, &r);
    assert_grad_close("upsample dx", &analytic, &numeric);
}

#[test]
fn upsample_forward_copies_the_nearest_input() {
    let s = UpsampleShape {
        n: 1,
        h: 2,
        w: 3,
        c: 2,
    };
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let y = upsample::forward(&s, &x);
    assert_eq!(y.len(), 48);
    for oy in 0..4usize {
        for ox in 0..6usize {
            for ch in 0..2usize {
                assert_eq!(
                    y[(oy * 6 + ox) * 2 + ch],
                    x[((oy / 2) * 3 + ox / 2) * 2 + ch]
                );
            }
        }
    }
    // Backward of all-ones sums each 2×2 block: 4 everywhere.
    assert!(upsample::backward(&s, &[1.0; 48]).iter().all(|&v| v == 4.0));
}

// ---------------------------------------------------------------------------------- stride

/// Each index map's reference backward is the other map: against central differences of
/// the forward, both offsets.
#[test]
fn stride_backward_matches_finite_differences() {
    for (oy, ox) in [(1, 1), (0, 1), (0, 0)] {
        let s = StrideShape {
            n: 2,
            h: 3,
            w: 2,
            c: 3,
            hb: 6,
            wb: 5,
            oy,
            ox,
        };
        let mut g = rng(62 + oy as u64 + 2 * ox as u64);
        let small = uniform(&mut g, s.small_len() as usize, -1.0, 1.0);
        let big = uniform(&mut g, s.big_len() as usize, -1.0, 1.0);
        let (rb, rs) = (
            uniform(&mut g, s.big_len() as usize, -1.0, 1.0),
            uniform(&mut g, s.small_len() as usize, -1.0, 1.0),
        );
        let numeric = numeric_grad(&small, |x| dot(&rb, &stride::insert_f64(&s, x)));
        assert_grad_close("stride insert", &stride::take_f64(&s, &rb), &numeric);
        let numeric = numeric_grad(&big, |x| dot(&rs, &stride::take_f64(&s, x)));
        assert_grad_close("stride take", &stride::insert_f64(&s, &rs), &numeric);
    }
}

/// `insert` puts small (y, x) at big (2y + oy, 2x + ox) and zeros everywhere else.
#[test]
fn stride_insert_puts_each_element_at_its_offset() {
    let s = StrideShape {
        n: 1,
        h: 2,
        w: 3,
        c: 2,
        hb: 4,
        wb: 7,
        oy: 1,
        ox: 0,
    };
    let x: Vec<f32> = (1..=12).map(|i| i as f32).collect();
    let y = stride::insert(&s, &x);
    for by in 0..4usize {
        for bx in 0..7usize {
            for ch in 0..2usize {
                let want = match (by % 2, bx % 2, bx / 2 < 3) {
                    (1, 0, true) => x[((by / 2) * 3 + bx / 2) * 2 + ch],
                    _ => 0.0,
                };
                assert_eq!(y[(by * 7 + bx) * 2 + ch], want, "({by}, {bx}, {ch})");
            }
        }
    }
    assert_eq!(stride::take(&s, &y), x);
}

// ------------------------------------------------------------------------------ activation

#[test]
fn relu_backward_matches_finite_differences() {
    let mut g = rng(70);
    // |x| ≥ 1e-3, far from the kink at 0 compared with h.
    let x = away_from_zero(&mut g, 200, 1e-3);
    let r = uniform(&mut g, 200, -1.0, 1.0);
    let numeric = numeric_grad(&x, |x| dot(&r, &activation::relu_forward_f64(x)));
    // Masked by the saved input, and equally by the saved output.
    let by_input = activation::relu_backward_f64(&x, &r);
    let by_output = activation::relu_backward_f64(&activation::relu_forward_f64(&x), &r);
    assert_grad_close("relu dx (saved input)", &by_input, &numeric);
    assert_eq!(by_input, by_output);
}

#[test]
fn relu_gradient_is_zero_at_zero() {
    assert_eq!(
        activation::relu_backward(&[0.0, -0.0, 1e-30], &[1.0, 1.0, 1.0]),
        [0.0, 0.0, 1.0]
    );
}

#[test]
fn sigmoid_backward_matches_finite_differences() {
    let mut g = rng(80);
    let mut x = uniform(&mut g, 200, -6.0, 6.0);
    x.extend([-40.0, -20.0, 0.0, 20.0, 40.0]);
    let r = uniform(&mut g, x.len(), -1.0, 1.0);
    let numeric = numeric_grad(&x, |x| dot(&r, &activation::sigmoid_forward_f64(x)));
    let y = activation::sigmoid_forward_f64(&x);
    let analytic = activation::sigmoid_backward_f64(&y, &r);
    assert_grad_close("sigmoid dx", &analytic, &numeric);
}

#[test]
fn sigmoid_does_not_overflow() {
    assert_eq!(sigmoid(0.0), 0.5);
    assert_eq!(sigmoid(1000.0), 1.0);
    assert_eq!(sigmoid(-1000.0), 0.0);
    assert!((sigmoid(-745.0)).is_finite());
    assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
}

// ------------------------------------------------------------------------------------- bce

#[test]
fn bce_sigmoid_backward_matches_finite_differences() {
    let mut g = rng(90);
    let mut z = uniform(&mut g, 300, -5.0, 5.0);
    z.extend([-30.0, -15.0, 0.0, 15.0, 30.0]);
    // Targets in [0, 1] (pixels), including the exact ends.
    let mut t = uniform(&mut g, 300, 0.0, 1.0);
    t.extend([0.0, 1.0, 0.5, 0.0, 1.0]);
    let numeric = numeric_grad(&z, |z| bce::loss_f64(z, &t));
    let analytic = bce::sigmoid_backward_f64(&z, &t);
    // The mean divides by the count: compare per-element gradients times the count, so the
    // tolerance applies at the scale of one element's gradient, not 1/305 of it.
    let count = z.len() as f64;
    let scale = |v: Vec<f64>| v.into_iter().map(|x| x * count).collect::<Vec<_>>();
    assert_grad_close("bce dz", &scale(analytic), &scale(numeric));
}

#[test]
fn bce_loss_known_values_and_no_overflow() {
    // z = 0: ln 2 whatever the target.
    assert!((bce::loss(&[0.0, 0.0], &[0.0, 1.0]) - std::f64::consts::LN_2).abs() < 1e-15);
    // Matches -t ln σ(z) - (1 - t) ln(1 - σ(z)) where that is computable.
    let (z, t) = (1.3f64, 0.2f64);
    let p = 1.0 / (1.0 + (-z).exp());
    let direct = -t * p.ln() - (1.0 - t) * (1.0 - p).ln();
    assert!((bce::loss(&[z as f32], &[t as f32]) - direct).abs() < 1e-6);
    // Huge logits: finite, and the right asymptotes.
    assert_eq!(bce::loss(&[1000.0], &[1.0]), 0.0);
    assert_eq!(bce::loss(&[-1000.0], &[1.0]), 1000.0);
    let dz = bce::sigmoid_backward(&[1000.0, -1000.0], &[0.0, 1.0]);
    assert_eq!(dz, [0.5, -0.5]);
}

// ----------------------------------------------------------------------------------- dense

struct DenseCase {
    s: DenseShape,
    x: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    r: Vec<f64>,
}

fn dense_case(seed: u64) -> DenseCase {
    let s = DenseShape {
        n: 3,
        fin: 7,
        fout: 5,
    };
    let mut g = rng(seed);
    DenseCase {
        s,
        x: uniform(&mut g, s.input_len() as usize, -1.0, 1.0),
        w: uniform(&mut g, s.weight_len() as usize, -1.0, 1.0),
        b: uniform(&mut g, s.fout as usize, -1.0, 1.0),
        r: uniform(&mut g, s.output_len() as usize, -1.0, 1.0),
    }
}

#[test]
fn dense_backward_input_matches_finite_differences() {
    let c = dense_case(100);
    let numeric = numeric_grad(&c.x, |x| {
        dot(&c.r, &dense::forward_f64(&c.s, false, x, &c.w, &c.b))
    });
    assert_grad_close(
        "dense dx",
        &dense::backward_input_f64(&c.s, &c.r, &c.w),
        &numeric,
    );
}

#[test]
fn dense_backward_weight_matches_finite_differences() {
    let c = dense_case(101);
    let numeric = numeric_grad(&c.w, |w| {
        dot(&c.r, &dense::forward_f64(&c.s, false, &c.x, w, &c.b))
    });
    assert_grad_close(
        "dense dw",
        &dense::backward_weight_f64(&c.s, &c.x, &c.r),
        &numeric,
    );
}

#[test]
fn dense_backward_bias_matches_finite_differences() {
    let c = dense_case(102);
    let numeric = numeric_grad(&c.b, |b| {
        dot(&c.r, &dense::forward_f64(&c.s, false, &c.x, &c.w, b))
    });
    assert_grad_close("dense db", &dense::backward_bias_f64(&c.s, &c.r), &numeric);
}

/// L = Σ r ⊙ relu(dense(x)): the fused ReLU forward, its dy masked by relu_backward.
#[test]
fn dense_relu_backward_matches_finite_differences() {
    let c = dense_case(103);
    let s = c.s;
    assert_away_from_kink("dense", &dense::forward_f64(&s, false, &c.x, &c.w, &c.b));
    let y = dense::forward_f64(&s, true, &c.x, &c.w, &c.b);
    assert!(
        y.contains(&0.0) && y.iter().any(|&v| v > 0.0),
        "ReLU is not exercised"
    );
    let dy = activation::relu_backward_f64(&y, &c.r);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&c.r, &dense::forward_f64(&s, true, x, w, b));
    assert_grad_close(
        "dense+relu dx",
        &dense::backward_input_f64(&s, &dy, &c.w),
        &numeric_grad(&c.x, |x| loss(x, &c.w, &c.b)),
    );
    assert_grad_close(
        "dense+relu dw",
        &dense::backward_weight_f64(&s, &c.x, &dy),
        &numeric_grad(&c.w, |w| loss(&c.x, w, &c.b)),
    );
    assert_grad_close(
        "dense+relu db",
        &dense::backward_bias_f64(&s, &dy),
        &numeric_grad(&c.b, |b| loss(&c.x, &c.w, b)),
    );
}

#[test]
fn dense_forward_uses_the_keras_kernel_layout() {
    // x [1, 2] · W [2, 3] (row i = input i) + b.
    let s = DenseShape {
        n: 1,
        fin: 2,
        fout: 3,
    };
    let y = dense::forward(
        &s,
        false,
        &[1.0, 2.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        &[0.5, 0.0, -20.0],
    );
    assert_eq!(y, [9.5, 12.0, -5.0]);
    let y = dense::forward(
        &s,
        true,
        &[1.0, 2.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        &[0.5, 0.0, -20.0],
    );
    assert_eq!(y, [9.5, 12.0, 0.0]);
}

// ------------------------------------------------------------------------------------ adam

/// At t = 1, m = (1−β1)g and v = (1−β2)g², so with α_1 = lr·√(1−β2)/(1−β1) the step is
/// lr·g/(|g| + ε/√(1−β2)): lr·sign(g) to within ~ε/(|g|·√(1−β2)) ≈ 3e-6/|g| relative.
#[test]
fn adam_first_step_moves_each_weight_by_about_lr() {
    let cfg = AdamConfig::default();
    let expected_alpha = cfg.lr * (1.0 - cfg.beta2).sqrt() / (1.0 - cfg.beta1);
    assert!((cfg.alpha(1) - expected_alpha).abs() <= 1e-6 * expected_alpha);
    let mut g = rng(110);
    let len = 1000;
    let w0: Vec<f32> = (0..len).map(|_| g.random_range(-1.0..1.0)).collect();
    // |g| from 1e-3 to 10, both signs.
    let grad: Vec<f32> = (0..len)
        .map(|_| {
            let mag = 10f32.powf(g.random_range(-3.0..1.0));
            if g.random_bool(0.5) {
                mag
            } else {
                -mag
            }
        })
        .collect();
    let mut w = w0.clone();
    let mut m = vec![0.0f32; len];
    let mut v = vec![0.0f32; len];
    adam::step(&cfg, 1, &mut w, &grad, &mut m, &mut v);
    for i in 0..len {
        let moved = w[i] - w0[i];
        let want = -cfg.lr * grad[i].signum();
        // 1% of lr covers the ε term (≤ 0.3% at |g| = 1e-3) and the f32 rounding of w (~1e-7).
        assert!(
            (moved - want).abs() < 0.01 * cfg.lr,
            "weight {i}: moved {moved}, want {want}"
        );
        assert!((m[i] - 0.1 * grad[i]).abs() <= 1e-6 * grad[i].abs());
        assert!((v[i] - 0.001 * grad[i] * grad[i]).abs() <= 1e-5 * grad[i] * grad[i]);
    }
    // A zero gradient moves nothing on the first step.
    let (mut w, mut m, mut v) = (vec![0.25f32], vec![0.0f32], vec![0.0f32]);
    adam::step(&cfg, 1, &mut w, &[0.0], &mut m, &mut v);
    assert_eq!(w, [0.25]);
}

/// Keras' update, step after step, against the same formula written out in f64: the f32
/// reference stays within f32 rounding of it.
#[test]
fn adam_steps_follow_the_keras_formula() {
    let cfg = AdamConfig::default();
    let mut g = rng(111);
    let len = 50;
    let mut w: Vec<f32> = (0..len).map(|_| g.random_range(-1.0..1.0)).collect();
    let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
    let mut w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let (mut m64, mut v64) = (vec![0.0f64; len], vec![0.0f64; len]);
    let (lr, b1, b2, eps) = (1e-3f64, 0.9f64, 0.999f64, 1e-7f64);
    for t in 1..=20u64 {
        let grad: Vec<f32> = (0..len).map(|_| g.random_range(-1.0..1.0)).collect();
        adam::step(&cfg, t, &mut w, &grad, &mut m, &mut v);
        let alpha = lr * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
        for i in 0..len {
            let gi = grad[i] as f64;
            m64[i] += (gi - m64[i]) * (1.0 - b1);
            v64[i] += (gi * gi - v64[i]) * (1.0 - b2);
            w64[i] -= alpha * m64[i] / (v64[i].sqrt() + eps);
        }
    }
    for i in 0..len {
        assert!(
            (w[i] as f64 - w64[i]).abs() < 1e-5,
            "weight {i}: {} vs {}",
            w[i],
            w64[i]
        );
    }
}

// ----------------------------------------------------------------------------------- batch

#[test]
fn gather_picks_images_through_the_permutation() {
    // Three 2×2 images with known bytes.
    let images: Vec<u8> = vec![0, 1, 2, 3, 10, 20, 30, 40, 255, 128, 0, 7];
    let perm = [2u32, 0, 1];
    let got = batch::gather(&images, 4, &perm, 1, 2);
    let want: Vec<f32> = [0u8, 1, 2, 3, 10, 20, 30, 40]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    assert_eq!(got, want);
    let first = batch::gather(&images, 4, &perm, 0, 1);
    assert_eq!(first, [1.0, 128.0 / 255.0, 0.0, 7.0 / 255.0]);
}

#[test]
fn gather_noisy_is_deterministic_clipped_and_gaussian() {
    let pixels = 64;
    let count = 64;
    // Mid-grey images, so a noise of 0.1 is almost never clipped; one black image, clipped.
    let mut images = vec![128u8; pixels * count];
    images.extend(vec![0u8; pixels]);
    let perm: Vec<u32> = (0..=count as u32).collect();
    let (clean, noisy) = batch::gather_noisy(&images, pixels, &perm, 0, count, 0.1, 7);
    assert_eq!(clean, batch::gather(&images, pixels, &perm, 0, count));
    assert_eq!(
        (clean.clone(), noisy.clone()),
        batch::gather_noisy(&images, pixels, &perm, 0, count, 0.1, 7)
    );
    assert_ne!(
        noisy,
        batch::gather_noisy(&images, pixels, &perm, 0, count, 0.1, 8).1
    );
    // Noise statistics over 4096 samples: mean 0 ± ~0.0016, standard deviation 0.1 ± ~0.001.
    let d: Vec<f64> = clean
        .iter()
        .zip(&noisy)
        .map(|(&c, &n)| (n - c) as f64)
        .collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let sd = (d.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / d.len() as f64).sqrt();
    assert!(mean.abs() < 0.01, "noise mean {mean}");
    assert!((sd - 0.1).abs() < 0.01, "noise sd {sd}");
    // Zero noise: the noisy copy is the clean one.
    let (c0, n0) = batch::gather_noisy(&images, pixels, &perm, 0, count, 0.0, 7);
    assert_eq!(c0, n0);
    // The black image: clipped at 0, so everything is in [0, 1] and some is exactly 0.
    let (_, black) = batch::gather_noisy(&images, pixels, &perm, count, 1, 0.5, 3);
    assert!(black.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(black.contains(&0.0) && black.iter().any(|&v| v > 0.0));
}

/// The integer hash is the shader's: wrapping u32 arithmetic, the PCG constants. Recomputed
/// here step by step in u64 with explicit masking, independently of the wrapping_* calls.
#[test]
fn batch_hash_is_the_shaders_pcg_hash() {
    let reference = |v: u32| -> u32 {
        let m = 0xffff_ffffu64;
        let state = (v as u64 * 747_796_405 + 2_891_336_453) & m;
        let word = (((state >> ((state >> 28) + 4)) ^ state) * 277_803_737) & m;
        ((word >> 22) ^ word) as u32
    };
    for v in [0u32, 1, 2, 255, 0x9e37_79b9, u32::MAX - 1, u32::MAX] {
        assert_eq!(batch::hash(v), reference(v), "hash({v})");
    }
    let u: Vec<f32> = (0..10_000).map(batch::uniform01).collect();
    assert!(u.iter().all(|&x| x > 0.0 && x <= 1.0));
    let mean = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
    assert!((mean - 0.5).abs() < 0.01, "uniform mean {mean}");
}
