//! Conv2D k×k (k = 1, 3, 5 or 7), stride 1, with bias, as `shaders/conv2d.wgsl` and Keras:
//! NHWC input `[n, h, w, ci]`, kernel `[k, k, ci, co]` (index `((ky·k + kx)·ci + c)·co + o`),
//! bias `[co]`, any channel counts. 'same' pads (k − 1)/2 on every side, 'valid' pads none
//! (out = in − (k − 1)). Like Keras (TensorFlow) this is a cross-correlation:
//! `y[oy][ox] = Σ x[oy + ky − pad][ox + kx − pad] · k[ky][kx]`.
//!
//! All four functions walk the same list of (output, input, weight) index triples
//! ([`for_each_tap`]); each backward is the forward's multiply-add transposed, which makes it
//! the adjoint by construction. The backward functions take `dy` already masked by the ReLU.
use super::{expect_len, to_f32, to_f64};
use crate::shapes::Conv2dShape;

/// Calls `f(y_index, x_index, w_index)` for every multiply-add of the forward pass: every
/// output element (b, oy, ox, o) with every kernel tap (ky, kx, c) that lands inside the input.
/// Taps in the padding contribute zero and are skipped.
pub fn for_each_tap(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
    let (n, h, w) = (s.n as usize, s.h as usize, s.w as usize);
    let (ci, co) = (s.ci as usize, s.co as usize);
    let (ho, wo) = s.out_hw();
    let (ho, wo) = (ho as usize, wo as usize);
    let pad = s.pad() as usize;
    let k = s.k as usize;
    // The input coordinate under kernel offset d of output coordinate o, if inside the input.
    let tap = |o: usize, d: usize, size: usize| (o + d).checked_sub(pad).filter(|&i| i < size);
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                let y_pix = (b * ho + oy) * wo + ox;
                for ky in 0..k {
                    let Some(iy) = tap(oy, ky, h) else { continue };
                    for kx in 0..k {
                        let Some(ix) = tap(ox, kx, w) else { continue };
                        let x_pix = (b * h + iy) * w + ix;
                        for c in 0..ci {
                            for o in 0..co {
                                f(
                                    y_pix * co + o,
                                    x_pix * ci + c,
                                    ((ky * k + kx) * ci + c) * co + o,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check(s: &Conv2dShape) {
    let (ho, wo) = s.out_hw();
    assert!(
        crate::shapes::CONV_KERNEL_SIZES.contains(&s.k),
        "reference::conv2d: kernel size {} (1, 3, 5 or 7)",
        s.k
    );
    assert!(
        s.n > 0 && s.ci > 0 && s.co > 0 && ho > 0 && wo > 0,
        "reference::conv2d: empty or too small shape {s:?}"
    );
}

/// `y = conv(x, w) + b`, then `max(y, 0)` if `relu`.
pub fn forward_f64(s: &Conv2dShape, relu: bool, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    check(s);
    expect_len("conv2d::forward", "x", x.len(), s.input_len());
    expect_len("conv2d::forward", "kernel", w.len(), s.weight_len());
    expect_len("conv2d::forward", "bias", b.len(), s.co as u64);
    let co = s.co as usize;
    let mut y: Vec<f64> = (0..s.output_len() as usize).map(|i| b[i % co]).collect();
    for_each_tap(s, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    if relu {
        for v in &mut y {
            *v = v.max(0.0);
        }
    }
    y
}

/// `dx[xi] = Σ dy[yi] · w[wi]` over the forward's taps (the transposed convolution).
pub fn backward_input_f64(s: &Conv2dShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    check(s);
    expect_len("conv2d::backward_input", "dy", dy.len(), s.output_len());
    expect_len("conv2d::backward_input", "kernel", w.len(), s.weight_len());
    let mut dx = vec![0.0; s.input_len() as usize];
    for_each_tap(s, |yi, xi, wi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// `dw[wi] = Σ x[xi] · dy[yi]` over the forward's taps, summed over the batch.
pub fn backward_weight_f64(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    check(s);
    expect_len("conv2d::backward_weight", "x", x.len(), s.input_len());
    expect_len("conv2d::backward_weight", "dy", dy.len(), s.output_len());
    let mut dw = vec![0.0; s.weight_len() as usize];
    for_each_tap(s, |yi, xi, wi| dw[wi] += x[xi] * dy[yi]);
    dw
}

/// `db[o] = Σ dy[.., o]` over the batch and every output pixel.
pub fn backward_bias_f64(s: &Conv2dShape, dy: &[f64]) -> Vec<f64> {
    check(s);
    expect_len("conv2d::backward_bias", "dy", dy.len(), s.output_len());
    let co = s.co as usize;
    let mut db = vec![0.0; co];
    for (i, &g) in dy.iter().enumerate() {
        db[i % co] += g;
    }
    db
}

/// `f32` face of [`forward_f64`].
pub fn forward(s: &Conv2dShape, relu: bool, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    to_f32(&forward_f64(s, relu, &to_f64(x), &to_f64(w), &to_f64(b)))
}

/// `f32` face of [`backward_input_f64`].
pub fn backward_input(s: &Conv2dShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    to_f32(&backward_input_f64(s, &to_f64(dy), &to_f64(w)))
}

/// `f32` face of [`backward_weight_f64`].
pub fn backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    to_f32(&backward_weight_f64(s, &to_f64(x), &to_f64(dy)))
}

/// `f32` face of [`backward_bias_f64`].
pub fn backward_bias(s: &Conv2dShape, dy: &[f32]) -> Vec<f32> {
    to_f32(&backward_bias_f64(s, &to_f64(dy)))
}
