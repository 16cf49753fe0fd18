//! MaxPooling2D(2), stride 2, as `shaders/pool.wgsl` and `shaders/cpu/pool.wgsl`: NHWC, with
//! either of Keras' paddings ([`PoolShape::padding`]).
//!
//! The window of output (oy, ox) is input rows 2oy, 2oy+1 and columns 2ox, 2ox+1.
//! - 'same': out = ceil(in/2). At an odd bottom/right edge the last window is one row/column
//!   wide: the missing row/column is simply absent (not zero-padded), so it never wins.
//! - 'valid': out = floor(in/2). Every window is a full 2x2; an odd last row/column belongs to
//!   no window, so it never reaches the output and its gradient is 0.
//!
//! The winner is recorded as k = dy·2 + dx (row-major in the window); only a strictly greater
//! value replaces the current best, so the first maximum wins ties. Backward routes each
//! output's gradient to its winner; every other input (losers, and in 'valid' the dropped
//! row/column) gets 0.
use super::{expect_len, to_f32, to_f64};
use crate::shapes::PoolShape;

/// Calls `f(y_index, k, x_index)` for every input position k (0..4) of every window that lies
/// inside the input, k in increasing order within a window. The windows are those of
/// [`PoolShape::out_hw`], so in 'valid' an odd last row/column is never visited.
fn for_each_window_cell(s: &PoolShape, mut f: impl FnMut(usize, u32, usize)) {
    let (n, h, w, c) = (s.n as usize, s.h as usize, s.w as usize, s.c as usize);
    let (ho, wo) = s.out_hw();
    let (ho, wo) = (ho as usize, wo as usize);
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                for ch in 0..c {
                    let yi = ((b * ho + oy) * wo + ox) * c + ch;
                    for k in 0..4u32 {
                        let iy = 2 * oy + (k / 2) as usize;
                        let ix = 2 * ox + (k % 2) as usize;
                        if iy < h && ix < w {
                            f(yi, k, ((b * h + iy) * w + ix) * c + ch);
                        }
                    }
                }
            }
        }
    }
}

/// The maxima and the winner (0..4) of every window, for either padding.
pub fn forward_f64(s: &PoolShape, x: &[f64]) -> (Vec<f64>, Vec<u32>) {
    expect_len("pool::forward", "x", x.len(), s.input_len());
    let len = s.output_len() as usize;
    let mut y = vec![f64::NEG_INFINITY; len];
    let mut winner = vec![0u32; len];
    // k = 0 always exists (2oy < h and 2ox < w for both paddings), so every window starts
    // from its first cell.
    for_each_window_cell(s, |yi, k, xi| {
        if k == 0 || x[xi] > y[yi] {
            y[yi] = x[xi];
            winner[yi] = k;
        }
    });
    (y, winner)
}

/// `dx` = `dy` of its window at the window's winner, 0 elsewhere (the window's other cells and,
/// in 'valid', an odd last row/column that no window covers).
pub fn backward_f64(s: &PoolShape, winner: &[u32], dy: &[f64]) -> Vec<f64> {
    expect_len("pool::backward", "winner", winner.len(), s.output_len());
    expect_len("pool::backward", "dy", dy.len(), s.output_len());
    let mut dx = vec![0.0; s.input_len() as usize];
    for_each_window_cell(s, |yi, k, xi| {
        if winner[yi] == k {
            dx[xi] = dy[yi];
        }
    });
    dx
}

/// `f32` face of [`forward_f64`] (widening to f64 keeps every comparison, so the winners are
/// those of the f32 input).
pub fn forward(s: &PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (y, winner) = forward_f64(s, &to_f64(x));
    (to_f32(&y), winner)
}

/// `f32` face of [`backward_f64`].
pub fn backward(s: &PoolShape, winner: &[u32], dy: &[f32]) -> Vec<f32> {
    to_f32(&backward_f64(s, winner, &to_f64(dy)))
}
