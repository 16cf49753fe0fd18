//! UpSampling2D(2), nearest, as `shaders/upsample.wgsl`: NHWC, out `[n, 2h, 2w, c]`,
//! `out[y][x] = in[y/2][x/2]`; backward sums each input's 2×2 block of `dy`.
use super::{expect_len, to_f32, to_f64};
use crate::shapes::UpsampleShape;

/// Calls `f(y_index, x_index)` for every output element and the input it copies.
fn for_each_copy(s: &UpsampleShape, mut f: impl FnMut(usize, usize)) {
    let (n, h, w, c) = (s.n as usize, s.h as usize, s.w as usize, s.c as usize);
    for b in 0..n {
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                for ch in 0..c {
                    let yi = ((b * 2 * h + oy) * 2 * w + ox) * c + ch;
                    let xi = ((b * h + oy / 2) * w + ox / 2) * c + ch;
                    f(yi, xi);
                }
            }
        }
    }
}

/// Nearest-neighbour ×2.
pub fn forward_f64(s: &UpsampleShape, x: &[f64]) -> Vec<f64> {
    expect_len("upsample::forward", "x", x.len(), s.input_len());
    let mut y = vec![0.0; s.output_len() as usize];
    for_each_copy(s, |yi, xi| y[yi] = x[xi]);
    y
}

/// Each input's gradient is the sum of its 2×2 block of `dy`.
pub fn backward_f64(s: &UpsampleShape, dy: &[f64]) -> Vec<f64> {
    expect_len("upsample::backward", "dy", dy.len(), s.output_len());
    let mut dx = vec![0.0; s.input_len() as usize];
    for_each_copy(s, |yi, xi| dx[xi] += dy[yi]);
    dx
}

/// `f32` face of [`forward_f64`].
pub fn forward(s: &UpsampleShape, x: &[f32]) -> Vec<f32> {
    to_f32(&forward_f64(s, &to_f64(x)))
}

/// `f32` face of [`backward_f64`].
pub fn backward(s: &UpsampleShape, dy: &[f32]) -> Vec<f32> {
    to_f32(&backward_f64(s, &to_f64(dy)))
}
