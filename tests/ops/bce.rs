//! bce: the mean loss from logits (two-pass tree) and its gradient fused with the sigmoid.
//! Loss within 1e-5 relative (f32 tree sums of up to ~10^5 terms); gradient within 1e-6.
use crate::common::{assert_close, gpu, rng, uniform};
use wgsl_autoencoder::ops::{bce, run};
use wgsl_autoencoder::reference;

// Odd sizes, one below and one above a partial-sum chunk, and a batch of 3 MNIST images.
const LENS: [usize; 4] = [1, 4095, 4097 + 13, 3 * 784];

fn data(len: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let mut z = uniform(&mut r, len, -12.0, 12.0);
    if len > 2 {
        z[0] = 80.0; // saturated logits: log(1 + exp(-|z|)) must stay finite
        z[1] = -80.0;
    }
    (z, uniform(&mut r, len, 0.0, 1.0))
}

#[test]
fn bce_loss_matches_reference() {
    let g = gpu();
    for (k, len) in LENS.into_iter().enumerate() {
        let (zs, ts) = data(len, k as u64);
        let (z, t) = (g.upload("z", &zs).unwrap(), g.upload("t", &ts).unwrap());
        let partials = g
            .poisoned("partials", bce::partials_len(len as u64))
            .unwrap();
        let loss = g.poisoned("loss", 4).unwrap();
        let slot = 2;
        run(
            g,
            &[
                bce::loss_partial(g, "t", &z, &t, &partials).unwrap(),
                bce::loss_finish(g, "t", len as u64, &partials, &loss, slot).unwrap(),
            ],
        )
        .unwrap();
        let got = g.read::<f32>(&loss).unwrap();
        let want = reference::bce::loss(&zs, &ts);
        assert!(
            got[0].is_nan() && got[1].is_nan() && got[3].is_nan(),
            "only the slot is written: {got:?}"
        );
        let err = (got[slot as usize] as f64 - want).abs() / want.abs().max(1e-3);
        assert!(
            err < 1e-5,
            "len {len}: loss {} vs reference {want} (rel {err:e})",
            got[slot as usize]
        );
    }
}

#[test]
fn bce_loss_is_bitwise_deterministic() {
    let g = gpu();
    let (zs, ts) = data(50_000, 9);
    let (z, t) = (g.upload("z", &zs).unwrap(), g.upload("t", &ts).unwrap());
    let partials = g
        .tensor("partials", bce::partials_len(zs.len() as u64))
        .unwrap();
    let loss = g.tensor("loss", 8).unwrap();
    let mut ds = vec![bce::loss_partial(g, "t", &z, &t, &partials).unwrap()];
    for slot in 0..8 {
        ds.push(bce::loss_finish(g, "t", zs.len() as u64, &partials, &loss, slot).unwrap());
    }
    run(g, &ds).unwrap();
    let got = g.read::<f32>(&loss).unwrap();
    assert!(
        got.iter().all(|v| v.to_bits() == got[0].to_bits()),
        "{got:?}"
    );
}

#[test]
fn bce_sigmoid_backward_matches_reference() {
    let g = gpu();
    for (k, len) in LENS.into_iter().enumerate() {
        let (zs, ts) = data(len, 20 + k as u64);
        let (z, t) = (g.upload("z", &zs).unwrap(), g.upload("t", &ts).unwrap());
        let dz = g.poisoned("dz", len as u64).unwrap();
        run(g, &[bce::sigmoid_backward(g, "t", &z, &t, &dz).unwrap()]).unwrap();
        let want = reference::bce::sigmoid_backward(&zs, &ts);
        let scale = 1.0 / len as f64; // the gradient is divided by the count
        let got: Vec<f32> = g
            .read::<f32>(&dz)
            .unwrap()
            .iter()
            .map(|v| (*v as f64 / scale) as f32)
            .collect();
        let want: Vec<f32> = want.iter().map(|v| (*v as f64 / scale) as f32).collect();
        assert_close(&format!("len {len}"), &got, &want, 1e-6);
    }
}
