//! The CPU set's variants (textures, reuse, lanes, the masked input gradient) give the
//! plain kernels' bits.
use super::folds::{folded_cases, Folded};
use super::strided::{inserted_shapes, taken_shapes, StridedConv};
use super::upsampled::{upsampled_shapes, Upsampled};
use super::*;

/// A dispatch as run: its shader, entry point, whether it fills textures, and its launch
/// (`Dispatch::launch`: the override constants and workgroups).
type Launched = (&'static str, &'static str, bool, String);

/// One convolution as [`conv2d_cpu_textures_give_the_storage_bits`] runs it: its shape, what
/// it folds, and the lengths of x and of y (and dy).
#[derive(Debug)]
struct TexCase {
    s: Conv2dShape,
    input: Input,
    pool: Option<Padding>,
    take: Option<Strided>,
    x_len: u64,
    out_len: u64,
}

impl TexCase {
    fn plain(s: Conv2dShape) -> Self {
        TexCase {
            s,
            input: Input::Direct,
            pool: None,
            take: None,
            x_len: s.input_len(),
            out_len: s.output_len(),
        }
    }
    fn upsampled(u: Upsampled) -> Self {
        TexCase {
            input: Input::Upsampled2x,
            x_len: u.0.input_len() / 4,
            ..Self::plain(u.0)
        }
    }
    fn strided(c: StridedConv) -> Self {
        let s = c.shape();
        TexCase {
            input: c.folds().input,
            take: c.folds().take,
            x_len: c.input_len(),
            out_len: c.output_len(),
            ..Self::plain(s)
        }
    }
    fn pooled(f: Folded) -> Self {
        let pool = f.pool.map(|p| f.pool_shape(p).output_len());
        TexCase {
            pool: f.pool,
            out_len: pool.unwrap_or(f.s.output_len()),
            ..Self::plain(f.s)
        }
    }

    /// What the layer folds, a pool's winners in `winner`.
    fn folds<'w>(&self, winner: &'w Tensor) -> Folds<'w> {
        Folds {
            input: self.input,
            pool: self.pool.map(|padding| Pooled { padding, winner }),
            take: self.take,
            gather: None,
        }
    }

    /// y, winners (a pool's, else an untouched poison), dx, dw and db from random inputs
    /// into NaN, ReLU on or off; and each dispatch's shader, entry point and whether it
    /// copied tensors into textures.
    fn run(&self, g: &Gpu, relu: bool, seed: u64) -> ([Vec<u32>; 5], Vec<Launched>) {
        let what = format!("{self:?} relu={relu}");
        let s = &self.s;
        let mut r = crate::common::rng(seed);
        let mut random = |len: u64| {
            let v = crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
            g.upload("t", &v).or_fail(&what)
        };
        let (x, w, b, dy) = (
            random(self.x_len),
            random(s.weight_len()),
            random(s.co as u64),
            random(self.out_len),
        );
        let t = |len: u64| g.poisoned("t", len).or_fail(&what);
        let (y, winner) = (t(self.out_len), t(self.out_len));
        let (dx, dw, db) = (t(self.x_len), t(s.weight_len()), t(s.co as u64));
        let folds = self.folds(&winner);
        let mut d = conv2d::forward(g, "t", s, &folds, relu, &x, &w, &b, &y).or_fail(&what);
        let go = GradOut {
            dy: &dy,
            relu_output: relu.then_some(&y),
        };
        let partials = partials(g, s, &folds).or_fail(&what);
        let params = conv2d::backward_params(g, "t", s, &folds, &go, &x, &partials, &dw, &db);
        d.extend(params.or_fail(&what));
        let dx_of = conv2d::backward_input(g, "t", s, &folds, &go, &w, &dx);
        d.extend(dx_of.or_fail(&what));
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
        let entries = d
            .iter()
            .map(|d| {
                let source = d.source;
                (
                    source.shader,
                    source.entry,
                    d.fills_textures(),
                    d.launch.clone(),
                )
            })
            .collect();
        let bits = [y, winner, dx, dw, db].map(|t| g.read::<u32>(&t).or_fail(&what));
        (bits, entries)
    }

    /// dx from random inputs (a pool's winners too) as `conv2d::backward_input_masked` stores
    /// it, masked by a random ReLU output of the layer below (a quarter of it exactly 0), and as
    /// `backward_input` then `activation::relu_backward` make it: both into NaN, the
    /// layer's own ReLU on or off.
    fn masked_and_relu_backward(&self, g: &Gpu, relu: bool, seed: u64) -> [Vec<u32>; 2] {
        let what = format!("{self:?} relu={relu}");
        let s = &self.s;
        let mut r = crate::common::rng(seed);
        let mut random = |len: u64| crate::common::uniform(&mut r, len as usize, -1.0, 1.0);
        let (w, dy, y) = (
            random(s.weight_len()),
            random(self.out_len),
            random(self.out_len),
        );
        let below: Vec<f32> = random(self.x_len)
            .into_iter()
            .map(|v| if v < -0.5 { 0.0 } else { v })
            .collect();
        // A pool's winners: places 0..3 of each window.
        let winner: Vec<u32> = random(self.out_len)
            .into_iter()
            .map(|v| ((v + 1.0) * 2.0).min(3.0) as u32)
            .collect();
        let up = |v: &[f32]| g.upload("t", v).or_fail(&what);
        let (w, dy, y, below) = (up(&w), up(&dy), up(&y), up(&below));
        let winner = g.upload("t", &winner).or_fail(&what);
        let t = |len: u64| g.poisoned("t", len).or_fail(&what);
        let (dx, masked, fused) = (t(self.x_len), t(self.x_len), t(self.x_len));
        let folds = self.folds(&winner);
        let go = GradOut {
            dy: &dy,
            relu_output: relu.then_some(&y),
        };
        let mut d = conv2d::backward_input(g, "t", s, &folds, &go, &w, &dx).or_fail(&what);
        let mask = wgsl_autoencoder::ops::activation::relu_backward(g, "t", &below, &dx, &masked);
        d.push(mask.or_fail(&what));
        let one = conv2d::backward_input_masked(g, "t", s, &folds, &go, &w, &fused, &below);
        d.extend(one.or_fail(&what));
        wgsl_autoencoder::ops::run(g, &d).or_fail(&what);
        [masked, fused].map(|t| g.read::<u32>(&t).or_fail(&what))
    }

    /// Whether the CPU set's kernels of `entry` read a tensor through a texture under
    /// `textures`: the forward pass x where the input channels are a multiple of 4, the
    /// input gradient dy (and act) where the output channels are; the weight gradients none.
    fn reads_texture(&self, entry: &str) -> bool {
        match entry {
            "forward" => self.s.ci.is_multiple_of(4),
            "backward_input" => self.s.co.is_multiple_of(4),
            _ => false,
        }
    }
}

/// CPU-set devices with no fold, and with the variant `name` alone.
fn cpu_without_and_with(name: &str) -> (Gpu, Gpu) {
    use wgsl_autoencoder::gpu::FoldSet;
    let with = FoldSet::NONE
        .with(name)
        .unwrap_or_else(|| panic!("no variant {name}"));
    (
        crate::common::open_with_folds(KernelSet::Cpu, FoldSet::NONE),
        crate::common::open_with_folds(KernelSet::Cpu, with),
    )
}

/// `after`'s y, winners, dx, dw and db ([`TexCase::run`]'s) bit for bit as `before`'s, every
/// one but the untouched winners written (no NaN left of the poison).
fn assert_same_outputs(what: &str, before: &[Vec<u32>; 5], after: &[Vec<u32>; 5]) {
    for (name, i) in [("y", 0), ("winner", 1), ("dx", 2), ("dw", 3), ("db", 4)] {
        assert!(before[i] == after[i], "{what}: {name} differs in its bits");
    }
    for (name, i) in [("y", 0), ("dx", 2), ("dw", 3), ("db", 4)] {
        let nan = after[i].iter().any(|v| f32::from_bits(*v).is_nan());
        assert!(!nan, "{what}: {name} left unwritten");
    }
}

/// The CPU set's `textures` variant (the forward pass's x, the input gradient's dy and the
/// ReLU mask's activations read through textures the op's first dispatch copies them into)
/// gives the storage loads' bits: the same floats loaded, so the same sums. Plain layers (the
/// conv autoencoder's, two groups a side, odd channel counts that no texture serves, one
/// channel on either side), upsampled, inserted, taken and pooled inputs and outputs, ReLU on
/// and off, outputs starting as NaN;
/// each dispatch is checked to have copied textures exactly where its kernel reads a
/// tensor four channels at a time and no earlier dispatch of its op (a phase, a channel
/// group) copied it just before, and the plain set never to.
#[test]
fn conv2d_cpu_textures_give_the_storage_bits() {
    let (storage, textured) = cpu_without_and_with("textures");
    let p = |n, h, w, ci, co, padding| TexCase::plain(conv3x3(n, h, w, ci, co, padding));
    let (same, valid) = (Padding::Same, Padding::Valid);
    let mut cases = vec![
        p(2, 14, 14, 16, 8, same),
        p(2, 28, 28, 1, 16, same),
        p(2, 7, 7, 24, 20, valid),
        p(3, 7, 7, 5, 3, same),
        // more than 32 channels: the GPU set's kernels, which read no texture
        p(1, 6, 5, 36, 40, same),
    ];
    // The decoder's last two layers (8 -> 16 'valid', 16 -> 1), scalar channels, and the
    // last at batch 8: an x of 6272 texels, a whole texture row (4096) and a part one.
    let upsampled = upsampled_shapes();
    let picked = [1, 2, 3, 8].map(|i| TexCase::upsampled(upsampled[i]));
    cases.extend(picked);
    let (inserted, taken) = (inserted_shapes(), taken_shapes());
    cases.extend([inserted[6], taken[1]].map(TexCase::strided));
    // The first layer's pool ('same'), and a 'valid' one on odd sides.
    let folded = folded_cases();
    let pooled = folded
        .into_iter()
        .filter(|f| !f.up && (f.pool == Some(valid) || f.s.ci == 1));
    cases.extend(pooled.take(2).map(TexCase::pooled));
    // Dispatches that read a texture an earlier dispatch of their op copied.
    let mut reread = 0;
    for (k, case) in cases.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let (a, plain) = case.run(&storage, relu, 1300 + k as u64);
            let (b, tex) = case.run(&textured, relu, 1300 + k as u64);
            assert!(
                plain.iter().all(|(_, _, fills, _)| !fills),
                "{what}: {plain:?}"
            );
            // The first dispatch of an entry copies; its later phases or channel groups,
            // run right after it, read that copy.
            let mut seen = Vec::new();
            for (shader, entry, fills, _) in &tex {
                let reads = *shader == "cpu/conv2d" && case.reads_texture(entry);
                let first = !seen.contains(entry);
                seen.push(*entry);
                assert_eq!(*fills, reads && first, "{what}: {entry} ({tex:?})");
                reread += (reads && !first) as usize;
            }
            assert_same_outputs(&what, &a, &b);
        }
    }
    // The inserted case's forward phases and the taken and 24 -> 20 cases' input gradients.
    assert!(
        reread >= 3 * 2,
        "{reread} dispatches read an earlier one's copy"
    );
}

/// The CPU set's `reuse` variant (each pixel loaded once for every tap that reads it: a
/// kernel row's three weight-gradient taps per invocation sliding along the row; the 4x4
/// patch a pooled window's or an upsampled pixel's taps read) gives the bits of the kernels
/// that load it per tap (and, for an input gradient, per pixel of x: two neighbours of a row
/// per invocation, UP_PAIR for an upsampled layer, BIN_PAIR for a plain one): the same floats
/// meet the same sums in the same order. Plain layers
/// whose chunks of 256 pixels start inside a row (14 wide, two images) and end past the last
/// pixel, 'valid' padding, two groups a side, odd channel counts and widths, one output
/// channel; one output channel through
/// an upsampling ('same' from 16 channels, 'valid' from five, an odd row, two input groups);
/// one input channel into a
/// 'same' pool on even sides and on odd ones (the clamped last row and column, two output
/// groups). ReLU on and off, outputs
/// starting as NaN. The plain layers must run BIN_PAIR (and, with more than one channel a
/// side, `backward_params_row`) under `reuse` and neither without it, so the comparison cannot
/// pass by running the same code.
#[test]
fn conv2d_cpu_reuse_gives_the_same_bits() {
    let (per_tap, reused) = cpu_without_and_with("reuse");
    let shape = conv3x3;
    let (same, valid) = (Padding::Same, Padding::Valid);
    // Plain layers: their weight gradients by kernel rows, their input gradients by pairs of
    // pixels (the encoder's 16 -> 8; rows of odd length, whose last pair's second pixel is not
    // stored; three and one output channels, loaded lane by lane; two groups a side).
    let plain = [
        shape(2, 14, 14, 16, 8, same),
        shape(2, 9, 7, 5, 3, valid),
        shape(2, 6, 5, 24, 20, same),
        shape(3, 5, 7, 6, 1, same),
    ];
    let mut cases: Vec<TexCase> = plain.into_iter().map(TexCase::plain).collect();
    let up =
        |n, h, w, ci, co, padding| TexCase::upsampled(Upsampled(shape(n, h, w, ci, co, padding)));
    // Input gradients by pairs of x pixels: the decoder's 8 -> 16 ('valid'), a half-size row
    // of odd length (the last pair's second pixel not stored), two output groups from 5
    // channels (the second adding to dx, stored lane by lane); and with one output channel,
    // the last layer's 16 -> 1, 5 channels stored lane by lane ('valid'), an odd row, and two
    // input groups (the denoising model's 32 -> 1).
    let up_pairs = cases.len()..cases.len() + 7;
    let up_pairs_first = up_pairs.start;
    cases.extend([
        up(2, 16, 16, 8, 16, valid),
        up(3, 10, 6, 4, 4, same),
        up(2, 6, 4, 5, 20, same),
        up(2, 28, 28, 16, 1, same),
        up(2, 6, 8, 5, 1, valid),
        up(3, 10, 6, 16, 1, same),
        up(2, 8, 10, 32, 1, same),
    ]);
    let pooled = |n, h, w, co, pool| {
        TexCase::pooled(Folded {
            s: shape(n, h, w, 1, co, same),
            up: false,
            pool: Some(pool),
        })
    };
    let patched = cases.len()..cases.len() + 2;
    cases.extend([pooled(2, 28, 28, 16, same), pooled(2, 7, 9, 20, same)]);
    // Forward passes through an upsampling with at least 4 output channels and input
    // channels a multiple of 4: the x pixels a window (4 to 8 outputs: a pair's) reads loaded
    // once each (REUSE). The decoder's 8 -> 16 and the 4 -> 4 pairs above, and: 12 outputs
    // (pairs in the input gradient too), two input groups (20 -> 12) and two output groups
    // (8 -> 20, rows of x of odd length), 'same'; 8 -> 8 pairs, 'valid' (rows of odd length),
    // and two input groups of pairs (20 -> 8).
    let up_windows = cases.len()..cases.len() + 5;
    cases.extend([
        up(2, 6, 8, 4, 12, same),
        up(2, 4, 6, 20, 12, same),
        up(1, 10, 6, 8, 20, same),
        up(2, 8, 10, 8, 8, valid),
        up(1, 6, 6, 20, 8, same),
    ]);
    let up_pairs =
        |k: usize| up_pairs.contains(&k) || (up_windows.contains(&k) && cases[k].s.ci <= 8);
    let rows = plain.len();
    for (k, case) in cases.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let (a, before) = case.run(&per_tap, relu, 1500 + k as u64);
            let (b, after) = case.run(&reused, relu, 1500 + k as u64);
            let runs = |d: &[Launched], entry| d.iter().any(|(_, e, ..)| *e == entry);
            assert!(!runs(&before, "backward_params_row"), "{what}: {before:?}");
            // (A layer with one channel a side takes the thin weight gradient instead.)
            let thin = case.s.ci == 1 || case.s.co == 1;
            assert_eq!(
                runs(&after, "backward_params_row"),
                k < rows && !thin,
                "{what}: {after:?}"
            );
            let has = |d: &[Launched], c: &str| d.iter().any(|(.., l)| l.contains(c));
            for pairs in ["UP_PAIR=1", "BIN_PAIR=1"] {
                assert!(!has(&before, pairs), "{what}: {before:?}");
            }
            assert_eq!(has(&after, "UP_PAIR=1"), up_pairs(k), "{what}: {after:?}");
            // The forward pass's reads once per pixel: the pooled window's patch, and through
            // an upsampling with at least 4 output channels and whole vec4s of input ones the
            // window's x pixels (the decoder's 8 -> 16, the 4 -> 4 pairs and up_windows).
            let reads_once = |d: &[Launched]| {
                d.iter()
                    .any(|(_, e, _, l)| *e == "forward" && l.contains("REUSE=1"))
            };
            assert!(!reads_once(&before), "{what}: {before:?}");
            let up = case.input == Input::Upsampled2x;
            let windows = up && case.s.co >= 4 && case.s.ci.is_multiple_of(4);
            assert_eq!(
                windows,
                [up_pairs_first, up_pairs_first + 1].contains(&k) || up_windows.contains(&k),
                "{what}"
            );
            let once = patched.contains(&k) || windows;
            assert_eq!(reads_once(&after), once, "{what}: {after:?}");
            assert_eq!(has(&after, "BIN_PAIR=1"), k < rows, "{what}: {after:?}");
            assert_same_outputs(&what, &a, &b);
        }
    }
}

/// The CPU set's `lanes` variant (a subgroup takes whole rows, two pixels of a row per lane,
/// each lane loading its own columns of the window and taking the ones beside them from its
/// neighbours) gives the bits of the kernels without it: the forward pass's pairs and the
/// per-pixel input gradients (an upsampled layer's too, folded taps over x's half-size
/// rows). 'Same' layers with no fold: the encoder's 16 -> 8 (7 pairs
/// a row, one lane idle), its 7x7 and 4x4 layers (rows of odd length; 2 and 4 rows per
/// subgroup, the last subgroup part idle), a row of 8 pairs (every lane busy) and of 15
/// pixels, one vec4 of channels, two input groups (the forward pass's second slice) and two
/// output groups (the input gradient's second dispatch adding to dx; no forward pairs); a
/// 'valid' layer, which takes neither, and a row of 9 pairs, which takes them only where a
/// subgroup is wider than 8. Upsampled layers' input gradients: the decoder's 8 -> 16
/// ('valid') and 8 -> 8, an x row of odd length, two output groups from 5 input channels, x
/// rows of 8 pairs, and with one output channel the last layer's 16 -> 1 (a lane's columns
/// one vec4 of dy), an x row of 3, a 'valid' layer, two input groups and 5 input channels;
/// their forward pass with one output channel: the last layer's 16 -> 1, an
/// x row of 3, rows of 8 groups, and a 'valid' layer and one of 32 channels (not taken).
/// ReLU on and off, outputs starting as NaN. On an adapter
/// without subgroups of one width the variant changes nothing, which the test checks
/// instead.
#[test]
fn conv2d_cpu_lanes_gives_the_same_bits() {
    let (without, with) = cpu_without_and_with("lanes");
    let shape = conv3x3;
    let (same, valid) = (Padding::Same, Padding::Valid);
    // (shape, whether the forward pass's shape takes lanes, whether the input gradient's
    // does): each then runs them where a subgroup holds a row's pairs.
    let cases = [
        (shape(2, 14, 14, 16, 8, same), true, true),
        (shape(2, 7, 7, 8, 8, same), true, true),
        (shape(3, 4, 4, 8, 8, same), true, true),
        (shape(1, 5, 16, 4, 4, same), true, true),
        (shape(2, 3, 15, 8, 4, same), true, true),
        (shape(1, 6, 6, 32, 8, same), true, true),
        (shape(2, 6, 5, 24, 20, same), false, true),
        (shape(2, 9, 7, 8, 8, valid), false, false),
        (shape(1, 3, 18, 8, 8, same), true, true),
    ];
    // Upsampled layers' input gradients (UP_PAIR's sums; x's rows in pairs): the decoder's
    // 8 -> 16 ('valid') and 8 -> 8, a half-size row of odd length, two output groups from 5
    // channels (stored lane by lane), x rows of 8 pairs; and with one output channel (a
    // lane's four columns of a row one vec4 of dy where 'same' rows are whole vec4s, else
    // four loads): the last layer's 16 -> 1 (vec4s), an x row of 3 (loads), x rows of 16
    // pairs (taken only where a subgroup is wider than 8), a 'valid' layer (loads), two input
    // groups (32 -> 1) and 5 input channels (dx stored lane by lane).
    let up = |n, h, w, ci, co, padding| Upsampled(shape(n, h, w, ci, co, padding));
    // With one output channel, the forward pass: the last layer's 16 -> 1 (4 groups of
    // UP_ROW x pixels a row, the last half full), an x row of 3 (one group, 8 rows per
    // subgroup), rows of 8 groups (every lane busy); a 'valid' one and one of 32 channels
    // take neither.
    let upsampled = [
        (up(2, 16, 16, 8, 16, valid), false, true),
        (up(3, 8, 8, 8, 8, same), false, true),
        (up(3, 10, 6, 4, 4, same), false, true),
        (up(2, 6, 4, 5, 20, same), false, true),
        (up(1, 4, 32, 8, 4, same), false, true),
        (up(2, 28, 28, 16, 1, same), true, true),
        (up(3, 10, 6, 4, 1, same), true, true),
        (up(1, 4, 64, 8, 1, same), true, true),
        (up(2, 8, 10, 8, 1, valid), false, true),
        (up(1, 8, 8, 32, 1, same), false, true),
        (up(2, 6, 8, 5, 1, same), false, true),
    ];
    // (The lanes a row takes, forward and input gradient: its pairs, but the upsampled
    // forward pass's UP_ROW x pixels with one output channel.)
    let cases = cases
        .into_iter()
        .map(|(s, fwd, bin)| (TexCase::plain(s), fwd, bin, [s.w.div_ceil(2); 2]))
        .chain(upsampled.into_iter().map(|(u, fwd, bin)| {
            let per_lane = if u.0.co == 1 { 4 } else { 2 };
            let row = u.0.w / 2;
            (
                TexCase::upsampled(u),
                fwd,
                bin,
                [row.div_ceil(per_lane), row.div_ceil(2)],
            )
        }));
    let width = with.subgroup_lanes();
    let entries = [
        "forward_lanes",
        "backward_input_lanes",
        "forward_up_lanes",
        "backward_input_up_lanes",
    ];
    let mut ran = [0; 4];
    for (k, (case, fwd, bin, lanes)) in cases.enumerate() {
        let fits = lanes.map(|n| width.is_some_and(|w| n <= w && 128 % w == 0));
        let up = case.input == Input::Upsampled2x;
        let (fwd, bin) = (fwd && fits[0], bin && fits[1]);
        let want = [fwd && !up, bin && !up, fwd && up, bin && up];
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu} subgroups {width:?}");
            let (a, before) = case.run(&without, relu, 1700 + k as u64);
            let (b, after) = case.run(&with, relu, 1700 + k as u64);
            let runs = |d: &[Launched], entry| d.iter().any(|(_, e, ..)| *e == entry);
            for (i, entry) in entries.into_iter().enumerate() {
                assert!(!runs(&before, entry), "{what}: {before:?}");
                assert_eq!(runs(&after, entry), want[i], "{what}: {entry} {after:?}");
                ran[i] += want[i] as usize;
            }
            assert_same_outputs(&what, &a, &b);
        }
    }
    // lavapipe (a CPU adapter through Vulkan) has subgroups, its 8-wide vectors: there the
    // variant must have run, and the 9 pairs of an 18-wide row taken neither.
    let cpu_vulkan = with.info.device_type == wgpu::DeviceType::Cpu
        && with.info.backend == wgpu::Backend::Vulkan;
    assert!(
        !cpu_vulkan || width == Some(8),
        "{}: subgroups {width:?}",
        with.name()
    );
    assert!(
        !cpu_vulkan || ran == [12, 14, 6, 20],
        "the lanes entry points ran {ran:?} times on {}",
        with.name()
    );
}

/// The CPU set's input gradient masked as it is stored (`backward_input_masked`: the ReLU
/// mask of the layer below, which then runs no pass of its own) gives the bits of the input
/// gradient followed by `activation::relu_backward`: exact zeros in the mask masked, as
/// there. Plain layers (the conv autoencoder's 16 -> 8, two groups a side, whose second
/// output group adds to the masked sum, odd channel counts), the decoder's upsampled layers,
/// an inserted and a taken input (one dispatch per phase) and a pooled output; ReLU on and
/// off; outputs starting as NaN. On the GPU set it is refused by name.
#[test]
fn conv2d_cpu_input_gradient_masked_gives_relu_backward_bits() {
    let cpu = crate::common::gpu_with(KernelSet::Cpu);
    let p = |n, h, w, ci, co, padding| TexCase::plain(conv3x3(n, h, w, ci, co, padding));
    let (same, valid) = (Padding::Same, Padding::Valid);
    let mut cases = vec![
        p(2, 14, 14, 16, 8, same),
        p(2, 7, 7, 24, 20, valid),
        p(3, 7, 5, 5, 3, same),
    ];
    let upsampled = upsampled_shapes();
    cases.extend([1, 2].map(|i| TexCase::upsampled(upsampled[i])));
    let (inserted, taken) = (inserted_shapes(), taken_shapes());
    cases.extend([inserted[6], taken[1]].map(TexCase::strided));
    let pooled = folded_cases().into_iter().find(|f| !f.up && f.s.ci > 1);
    cases.extend(pooled.map(TexCase::pooled));
    for (k, case) in cases.iter().enumerate() {
        for relu in [false, true] {
            let what = format!("{case:?} relu={relu}");
            let [apart, fused] = case.masked_and_relu_backward(cpu, relu, 1700 + k as u64);
            assert!(apart == fused, "{what}: the masked dx differs in its bits");
            let nan = fused.iter().any(|v| f32::from_bits(*v).is_nan());
            assert!(!nan, "{what}: dx left unwritten");
            let zeros = fused.iter().filter(|v| f32::from_bits(**v) == 0.0).count();
            assert!(zeros >= fused.len() / 8, "{what}: {zeros} of dx masked");
        }
    }
    let gpu = crate::common::gpu_with(KernelSet::Gpu);
    let s = cases[0].s;
    let t = |len| {
        gpu.upload("t", &vec![0.5f32; len as usize])
            .or_fail("upload")
    };
    let (w, dy, dx) = (t(s.weight_len()), t(s.output_len()), t(s.input_len()));
    let go = GradOut {
        dy: &dy,
        relu_output: None,
    };
    let folds = Folds::default();
    match conv2d::backward_input_masked(gpu, "t", &s, &folds, &go, &w, &dx, &dx) {
        Err(Error::Shape { detail, .. }) => assert!(detail.contains("CPU kernel set"), "{detail}"),
        other => panic!(
            "the GPU set took a masked input gradient: {:?}",
            other.map(|d| d.len())
        ),
    }
}
