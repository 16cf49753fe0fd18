//! stride: the strided layers' index maps, both ways, exactly: odd shapes with every offset,
//! and the shapes of the shipped models' strided layers (batch 2).
use crate::common::{assert_close, each_kernel_set, rng, uniform, OrFail};
use wgsl_autoencoder::ops::run;
use wgsl_autoencoder::ops::stride;
use wgsl_autoencoder::reference;
use wgsl_autoencoder::shapes::StrideShape;

fn shapes() -> Vec<StrideShape> {
    let s = |n, h, w, c, hb, wb, oy, ox| StrideShape {
        n,
        h,
        w,
        c,
        hb,
        wb,
        oy,
        ox,
    };
    vec![
        s(3, 3, 2, 5, 6, 5, 1, 0),
        s(1, 1, 1, 1, 1, 2, 0, 1),
        s(2, 4, 3, 3, 7, 6, 0, 1),
        // Conv2DTranspose 7 -> 14 and 14 -> 28 (32 channels); Conv2D strides 2 'same' on 28
        // (offset 1) and on 7 (offset 0), 'valid' 3x3 on 14 (12 -> 6).
        s(2, 7, 7, 32, 14, 14, 1, 1),
        s(2, 14, 14, 32, 28, 28, 1, 1),
        s(2, 14, 14, 16, 28, 28, 1, 1),
        s(2, 4, 4, 8, 7, 7, 0, 0),
        // Channels in vec4s with unequal offsets and odd big sides (the CPU set's kernels),
        // and with a big side wider than twice the small one (insert: the GPU set's on either
        // set; take: still the CPU set's).
        s(2, 3, 4, 8, 5, 8, 0, 1),
        s(1, 4, 3, 4, 8, 5, 1, 0),
        s(1, 2, 3, 4, 5, 7, 1, 0),
        s(2, 6, 6, 8, 12, 12, 0, 0),
    ]
}

#[test]
fn stride_insert_and_take_match_reference() {
    each_kernel_set(|g, config| {
        for (k, s) in shapes().into_iter().enumerate() {
            let what = format!("{config}: {s:?}");
            let mut r = rng(80 + k as u64);
            let smalls = uniform(&mut r, s.small_len() as usize, -1.0, 1.0);
            let bigs = uniform(&mut r, s.big_len() as usize, -1.0, 1.0);
            let (small, big) = (
                g.upload("small", &smalls).or_fail(&what),
                g.upload("big", &bigs).or_fail(&what),
            );
            let big_out = g.poisoned("big_out", s.big_len()).or_fail(&what);
            let small_out = g.poisoned("small_out", s.small_len()).or_fail(&what);
            let insert = stride::insert(g, "t", &s, &small, &big_out).or_fail(&what);
            let take = stride::take(g, "t", &s, &big, &small_out).or_fail(&what);
            run(g, &[insert, take]).or_fail(&what);
            let want = reference::stride::insert(&s, &smalls);
            assert_close(&what, &g.read::<f32>(&big_out).or_fail(&what), &want, 0.0);
            let want = reference::stride::take(&s, &bigs);
            assert_close(&what, &g.read::<f32>(&small_out).or_fail(&what), &want, 0.0);
        }
    });
}

/// A small side that does not fit the big one (or an offset past 1) is refused.
#[test]
fn stride_refuses_a_small_side_outside_the_big_one() {
    each_kernel_set(|g, config| {
        let bad = [
            StrideShape {
                n: 1,
                h: 4,
                w: 4,
                c: 1,
                hb: 7,
                wb: 8,
                oy: 0,
                ox: 1,
            }, // 2*3+1 = 7
            StrideShape {
                n: 1,
                h: 2,
                w: 2,
                c: 1,
                hb: 5,
                wb: 5,
                oy: 2,
                ox: 0,
            },
            StrideShape {
                n: 1,
                h: 0,
                w: 2,
                c: 1,
                hb: 4,
                wb: 4,
                oy: 0,
                ox: 0,
            },
        ];
        for s in bad {
            let t = g.poisoned("t", 64).or_fail(config);
            assert!(
                stride::insert(g, "t", &s, &t, &t).is_err(),
                "{config}: {s:?}"
            );
            assert!(stride::take(g, "t", &s, &t, &t).is_err(), "{config}: {s:?}");
        }
    });
}
