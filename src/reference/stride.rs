//! The strided layers' index maps, as `shaders/stride.wgsl`: NHWC, small element `(y, x)` at
//! big position `(2y + oy, 2x + ox)`. `insert` fills the big side (zeros where nothing lands),
//! `take` reads the small side out of it; each is the other's gradient.
use super::{expect_len, to_f32, to_f64};
use crate::shapes::StrideShape;

/// Calls `f(big_index, small_index)` for every small element and the big one it maps to.
fn for_each_landing(s: &StrideShape, mut f: impl FnMut(usize, usize)) {
    let (n, h, w, c) = (s.n as usize, s.h as usize, s.w as usize, s.c as usize);
    let (hb, wb, oy, ox) = (s.hb as usize, s.wb as usize, s.oy as usize, s.ox as usize);
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let big = ((b * hb + 2 * y + oy) * wb + 2 * x + ox) * c + ch;
                    let small = ((b * h + y) * w + x) * c + ch;
                    f(big, small);
                }
            }
        }
    }
}

/// The big side: each small element at its position, zeros elsewhere.
pub fn insert_f64(s: &StrideShape, small: &[f64]) -> Vec<f64> {
    expect_len("stride::insert", "small", small.len(), s.small_len());
    let mut big = vec![0.0; s.big_len() as usize];
    for_each_landing(s, |b, i| big[b] = small[i]);
    big
}

/// The small side: the big side's elements at the small ones' positions.
pub fn take_f64(s: &StrideShape, big: &[f64]) -> Vec<f64> {
    expect_len("stride::take", "big", big.len(), s.big_len());
    let mut small = vec![0.0; s.small_len() as usize];
    for_each_landing(s, |b, i| small[i] = big[b]);
    small
}

/// `f32` face of [`insert_f64`].
pub fn insert(s: &StrideShape, small: &[f32]) -> Vec<f32> {
    to_f32(&insert_f64(s, &to_f64(small)))
}

/// `f32` face of [`take_f64`].
pub fn take(s: &StrideShape, big: &[f32]) -> Vec<f32> {
    to_f32(&take_f64(s, &to_f64(big)))
}
