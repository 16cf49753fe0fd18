//! batch: the GPU gathers a batch through the permutation from packed u8 pixels, with and
//! without the denoising noise. Clean pixels bit for bit: the shaders' u8 / 255 is a multiply
//! and an add that WGSL rounds correctly (`pixel_value` in shaders/common.wgsl), not a
//! division, which WGSL lets be 2.5 ulp off (NVIDIA's was one off); noisy ones within 1e-5
//! (f32 log/cos).
use crate::common::{assert_close, each_gpu, each_kernel_set, rng, OrFail};
use rand::Rng;
use wgsl_autoencoder::ops::batch::{self, pack_pixels, Params};
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::reference;

/// The same bits as the reference's.
fn assert_exact(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: pixel {i} is {g:e}, not {w:e}"
        );
    }
}

fn dataset(count: usize, pixels: usize) -> (Vec<u8>, Vec<u32>) {
    let mut r = rng(4);
    let images: Vec<u8> = (0..count * pixels).map(|_| r.random()).collect();
    let mut perm: Vec<u32> = (0..count as u32).collect();
    perm.reverse();
    perm.swap(0, 5);
    (images, perm)
}

#[test]
fn batch_gather_matches_reference() {
    // 7 pixels per image: images straddle the packed u32 words; 8: each image is two whole
    // words (what the CPU set's kernel takes, a word per invocation).
    for pixels in [7usize, 8] {
        let (images, perm) = dataset(11, pixels);
        gather_case(&images, &perm, pixels, 3, 5);
    }
    // 16 and 784 pixels (MNIST's): whole vec4s of words, what the CPU set's gather16 takes,
    // 16 pixels per invocation.
    for (pixels, count, n, offset) in [(16usize, 13usize, 5usize, 4usize), (784, 9, 7, 1)] {
        let (images, perm) = dataset(count, pixels);
        gather_case(&images, &perm, pixels, n, offset);
    }
    // Every byte value, 64 images of 4 pixels gathered in reverse.
    let every: Vec<u8> = (0..=255).collect();
    let reverse: Vec<u32> = (0..64).rev().collect();
    gather_case(&every, &reverse, 4, 64, 0);
}

fn gather_case(images: &[u8], perm: &[u32], pixels: usize, n: usize, offset: usize) {
    each_kernel_set(|g, config| {
        let what = format!("{config}: gather of {n} {pixels}-pixel images");
        let (img, pm) = (
            g.upload("images", &pack_pixels(images)).or_fail(&what),
            g.upload("perm", perm).or_fail(&what),
        );
        let target = g.poisoned("target", (n * pixels) as u64).or_fail(&what);
        let p = Params {
            n: n as u32,
            pixels: pixels as u32,
            offset: offset as u32,
            seed: 0,
            noise: 0.0,
            _p: [0; 3],
        };
        run(
            g,
            &[batch::gather(g, "t", &p, &img, &pm, &target).or_fail(&what)],
        )
        .or_fail(&what);
        let want = reference::batch::gather(images, pixels, perm, offset, n);
        assert_exact(&what, &g.read::<f32>(&target).or_fail(&what), &want);
    });
}

#[test]
fn batch_gather_noisy_matches_reference() {
    let (count, pixels, n, offset) = (9usize, 784usize, 4usize, 2usize);
    let (images, perm) = dataset(count, pixels);
    let (clean, want_noisy) =
        reference::batch::gather_noisy(&images, pixels, &perm, offset, n, 0.5, 1234);
    each_gpu(|g, config| {
        let what = format!("{config}: noisy gather");
        let (img, pm) = (
            g.upload("images", &pack_pixels(&images)).or_fail(&what),
            g.upload("perm", &perm).or_fail(&what),
        );
        let target = g.poisoned("target", (n * pixels) as u64).or_fail(&what);
        let noisy = g.poisoned("noisy", (n * pixels) as u64).or_fail(&what);
        let p = Params {
            n: n as u32,
            pixels: pixels as u32,
            offset: offset as u32,
            seed: 1234,
            noise: 0.5,
            _p: [0; 3],
        };
        run(
            g,
            &[batch::gather_noisy(g, "t", &p, &img, &pm, &target, &noisy).or_fail(&what)],
        )
        .or_fail(&what);
        assert_exact(
            &format!("{what}, clean"),
            &g.read::<f32>(&target).or_fail(&what),
            &clean,
        );
        let got = g.read::<f32>(&noisy).or_fail(&what);
        assert_close(&format!("{what}, noisy"), &got, &want_noisy, 1e-5);
        assert!(
            got.iter().all(|v| (0.0..=1.0).contains(v)),
            "{what}: noisy pixels are clipped to [0, 1]"
        );
    });
}
