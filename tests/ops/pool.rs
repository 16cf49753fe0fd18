//! pool: 2x2 max-pooling forward (maxima and winners), backward and the CPU set's backward with
//! the ReLU mask fused in, with Keras' 'same' padding (out = ceil(in/2)) and 'valid' (out =
//! floor(in/2), an odd last row/column dropped, its dx 0). Exact (no arithmetic).
use crate::common::{assert_close, each_kernel_set, rng, uniform, OrFail};
use wgsl_autoencoder::ops::pool;
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::{Padding, PoolShape};

fn shape(padding: Padding, n: u32, h: u32, w: u32, c: u32) -> PoolShape {
    PoolShape {
        n,
        h,
        w,
        c,
        padding,
    }
}

fn shapes() -> Vec<PoolShape> {
    let s = |n, h, w, c| shape(Padding::Same, n, h, w, c);
    let v = |n, h, w, c| shape(Padding::Valid, n, h, w, c);
    // 'same': odd edges (channels not a multiple of 4 take the GPU kernel on either set; 4, 8
    // and 12 the CPU set's vec4 kernel), then the conv autoencoder's three pools
    // (28 -> 14 -> 7 -> 4), batch 2.
    // 'valid': odd edges in both directions, in one and in neither (7x7 -> 3x3, 5x6 -> 2x3,
    // 6x5 -> 3x2, 8x8 -> 4x4), 2- and 3-wide inputs (one window across), each on both kernels.
    vec![
        s(3, 7, 7, 5),
        s(3, 5, 6, 2),
        s(1, 1, 3, 1),
        s(3, 7, 7, 4),
        s(3, 5, 6, 12),
        s(1, 1, 3, 8),
        s(2, 28, 28, 16),
        s(2, 14, 14, 8),
        s(2, 7, 7, 8),
        v(3, 7, 7, 5),
        v(3, 5, 6, 2),
        v(3, 6, 5, 3),
        v(2, 8, 8, 1),
        v(1, 3, 2, 1),
        v(3, 7, 7, 4),
        v(3, 5, 6, 12),
        v(3, 6, 5, 8),
        v(2, 8, 8, 4),
        v(1, 2, 3, 4),
        v(2, 3, 3, 8),
        v(2, 7, 7, 8),
    ]
}

#[test]
fn pool_forward_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}");
            let mut r = rng(k as u64);
            let mut xs = uniform(&mut r, s.input_len() as usize, -1.0, 1.0);
            // Ties on a few windows: the first maximum in row-major order must win.
            for v in xs.iter_mut().step_by(7) {
                *v = 0.5;
            }
            let x = g.upload("x", &xs).or_fail(&what);
            let y = g.poisoned("y", s.output_len()).or_fail(&what);
            let win = g
                .upload("winner", &vec![u32::MAX; s.output_len() as usize])
                .or_fail(&what);
            run(g, &[pool::forward(g, "t", &s, &x, &y, &win).or_fail(&what)]).or_fail(&what);
            let (want_y, want_w) = reference::pool::forward(&s, &xs);
            assert_close(
                &format!("{what} maxima"),
                &g.read::<f32>(&y).or_fail(&what),
                &want_y,
                0.0,
            );
            assert_eq!(g.read::<u32>(&win).or_fail(&what), want_w, "{what} winners");
        }
    });
}

#[test]
fn pool_backward_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}");
            let mut r = rng(50 + k as u64);
            let xs = uniform(&mut r, s.input_len() as usize, -1.0, 1.0);
            let (_, winners) = reference::pool::forward(&s, &xs);
            let dys = uniform(&mut r, s.output_len() as usize, -1.0, 1.0);
            let (win, dy) = (
                g.upload("winner", &winners).or_fail(&what),
                g.upload("dy", &dys).or_fail(&what),
            );
            let dx = g.poisoned("dx", s.input_len()).or_fail(&what);
            run(
                g,
                &[pool::backward(g, "t", &s, &win, &dy, &dx).or_fail(&what)],
            )
            .or_fail(&what);
            let want = reference::pool::backward(&s, &winners, &dys);
            assert_close(&what, &g.read::<f32>(&dx).or_fail(&what), &want, 0.0);
        }
    });
}

/// The CPU set's backward with the ReLU mask of the layer below fused in: equal to the
/// reference's backward, then its ReLU mask by the pool's input. Where the set has no fused
/// kernel (the GPU set, or channels not a multiple of 4) the launcher must refuse.
#[test]
fn pool_backward_masked_matches_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}, masked");
            let mut r = rng(70 + k as u64);
            let xs = uniform(&mut r, s.input_len() as usize, -1.0, 1.0);
            let (pooled, winners) = reference::pool::forward(&s, &xs);
            let dys = uniform(&mut r, s.output_len() as usize, -1.0, 1.0);
            let (win, dy, py) = (
                g.upload("winner", &winners).or_fail(&what),
                g.upload("dy", &dys).or_fail(&what),
                g.upload("pooled", &pooled).or_fail(&what),
            );
            let dx = g.poisoned("dx", s.input_len()).or_fail(&what);
            let launched = pool::backward_masked(g, "t", &s, &win, &dy, &py, &dx);
            if !pool::fuses_relu_mask(g, &s) {
                assert!(launched.is_err(), "{what}: accepted without a fused kernel");
                continue;
            }
            run(g, &[launched.or_fail(&what)]).or_fail(&what);
            let routed = reference::pool::backward(&s, &winners, &dys);
            let want = reference::activation::relu_backward(&xs, &routed);
            assert_close(&what, &g.read::<f32>(&dx).or_fail(&what), &want, 0.0);
        }
    });
}

/// 'valid' on an input one row or column wide pools to nothing: `PoolShape::check` refuses it,
/// and every launcher returns that error (on every kernel set, vec4 channels or not) rather
/// than panicking or dispatching an empty grid. The same widths pool fine in 'same'.
#[test]
fn pool_valid_refuses_an_empty_output() {
    each_kernel_set(|g, config| {
        for (h, w, c) in [(1, 3, 1), (3, 1, 2), (1, 1, 4), (1, 6, 8), (5, 1, 12)] {
            let s = shape(Padding::Valid, 2, h, w, c);
            let what = format!("{config}: {s:?}");
            assert_eq!(s.output_len(), 0, "{what}");
            assert!(s.check().is_err(), "{what}: check accepted it");
            assert!(
                shape(Padding::Same, 2, h, w, c).check().is_ok(),
                "{what} as 'same'"
            );
            // Buffers of the lengths the shape gives (the outputs empty): the launchers' length
            // checks pass, so the refusal has to come from the shape.
            let x = g.poisoned("x", s.input_len()).or_fail(&what);
            let y = g.poisoned("y", 0).or_fail(&what);
            let win = g.upload::<u32>("winner", &[]).or_fail(&what);
            let dy = g.poisoned("dy", 0).or_fail(&what);
            let dx = g.poisoned("dx", s.input_len()).or_fail(&what);
            let refusals = [
                ("forward", pool::forward(g, "t", &s, &x, &y, &win).err()),
                ("backward", pool::backward(g, "t", &s, &win, &dy, &dx).err()),
                (
                    "backward_masked",
                    pool::backward_masked(g, "t", &s, &win, &dy, &y, &dx).err(),
                ),
            ];
            for (entry, refusal) in refusals {
                let e = refusal.unwrap_or_else(|| panic!("{what}: {entry} accepted it"));
                assert!(
                    e.to_string().contains("empty shape"),
                    "{what}: {entry} refused it for another reason: {e}"
                );
            }
        }
    });
}
