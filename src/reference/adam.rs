//! Adam, Keras' update, as `shaders/adam.wgsl`:
//!
//! α_t = lr·√(1−β2^t)/(1−β1^t) ([`AdamConfig::alpha`]); m ← m + (g−m)(1−β1);
//! v ← v + (g²−v)(1−β2); w ← w − α_t·m/(√v + ε).
//!
//! Unlike the other reference ops this one computes in `f32`, operation for operation as the
//! shader does: the update is elementwise (there is no sum whose order or precision a wider
//! type would improve), and `f32` is what Keras itself does, so `f32` here *is* the reference.
//! The GPU may still differ by an ulp or so (a driver may fuse a multiply-add; `sqrt` and the
//! division need not be correctly rounded).
use super::expect_len;
use crate::shapes::AdamConfig;

/// One Adam step at step number `t` (1-based: the first update is `t = 1`), in place.
///
/// # Panics
/// If `t == 0` (α_0 is 0/0) or the slices differ in length.
pub fn step(cfg: &AdamConfig, t: u64, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    assert!(t >= 1, "reference::adam::step: t counts from 1");
    for (name, len) in [("gradient", g.len()), ("m", m.len()), ("v", v.len())] {
        expect_len("adam::step", name, len, w.len() as u64);
    }
    let alpha = cfg.alpha(t);
    for i in 0..w.len() {
        let gi = g[i];
        let mi = m[i] + (gi - m[i]) * (1.0 - cfg.beta1);
        let vi = v[i] + (gi * gi - v[i]) * (1.0 - cfg.beta2);
        m[i] = mi;
        v[i] = vi;
        w[i] -= alpha * mi / (vi.sqrt() + cfg.eps);
    }
}
