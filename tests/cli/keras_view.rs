//! What a Keras user looks at: latent.png, the interpolation strip, sampling.
use super::*;

/// A PNG's pixels, checked to be a PNG.
fn png(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}",
        path.display()
    );
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap()
}

/// matplotlib's tab10, the colour of each digit in latent.png.
const TAB10: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Every run folder, dense and conv, holds latent.png: a PNG of the documented size whose
/// legend shows the colour of every digit among the test labels (the legend's dots are
/// opaque, so each colour appears exactly), and no colour of a digit that is absent.
#[test]
fn cli_latent_png_in_every_run_folder() {
    use wgsl_autoencoder::report::LATENT_PLOT_SIZE;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let labels: std::collections::BTreeSet<u8> = idx_labels(32, 4)[8..].iter().copied().collect();
    let dense = dense_run(t.path(), &data, "dense");
    let conv = t.path().join("conv");
    train(
        &data,
        &conv,
        &["--model", "conv", "--epochs", "1", "--batch-size", "16"],
    )
    .ok();
    assert!(conv.join("codes.png").is_file(), "{:?}", files(&conv));
    for dir in [&dense, &conv] {
        let img = png(&dir.join("latent.png")).to_rgb8();
        assert_eq!(img.dimensions(), LATENT_PLOT_SIZE, "{}", dir.display());
        let colours: std::collections::BTreeSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        for (digit, c) in TAB10.iter().enumerate() {
            assert_eq!(
                colours.contains(c),
                labels.contains(&(digit as u8)),
                "{}: digit {digit}'s colour {c:?} (labels {labels:?})",
                dir.display()
            );
        }
        assert_no_stray_files(dir);
    }
}

/// A one-epoch dense run on `data` in `dir/src` whose weights barely leave their random
/// initialisation (lr 1e-7): trained on noise, a model soon learns to draw the mean whatever
/// the code, and then every decoded code looks alike.
fn fresh_run(dir: &Path, data: &Path) -> PathBuf {
    let src = dir.join("src");
    let args = [
        "--model",
        "dense",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-7",
    ];
    train(data, &src, &args).ok();
    src
}

/// The gray level the grids draw for a value (as src/report/grid.rs does).
fn gray(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Cell `k` of a one-row strip of 28x28 digits, one value per source pixel.
fn strip_cell(img: &image::GrayImage, k: usize) -> Vec<u8> {
    let x0 = k * (28 * 4 + 2);
    (0..28 * 28)
        .map(|i| {
            img.get_pixel((x0 + (i % 28) * 4) as u32, ((i / 28) * 4) as u32)
                .0[0]
        })
        .collect()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

/// `decode --interpolate 0,1 --steps 5`: one row of five digits, the first the
/// reconstruction of test image 0, the last that of test image 1, and those between the
/// decoded codes (1 - t) c0 + t c1 for t = 1/4, 1/2, 3/4, all computed here through the
/// library (within one gray level). Test images 0 and 1 are all black and all white and the
/// model is a [`fresh_run`], so the two reconstructions differ and a swapped or constant
/// strip fails.
#[test]
fn cli_decode_interpolate_strip() {
    use wgsl_autoencoder::infer::Inference;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let mut test = idx_images(32, 28, 28, 3);
    test[16..16 + 784].fill(0);
    test[16 + 784..16 + 2 * 784].fill(255);
    std::fs::write(data.join(format!("{TEST_IMAGES}.gz")), gzip(&test)).unwrap();
    let src = fresh_run(t.path(), &data);
    let out = t.path().join("strip.png");
    let r = run_cmd(
        cli()
            .args([
                "decode",
                "--interpolate",
                "0,1",
                "--steps",
                "5",
                "--checkpoint",
            ])
            .arg(&src)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out),
    );
    r.ok();
    assert!(
        r.stdout
            .contains("decoded 5 codes interpolated from test image 0 to test image 1"),
        "{}",
        r.stdout
    );
    let img = png(&out).to_luma8();
    assert_eq!(img.dimensions(), ((5 * 28 * 4 + 4 * 2) as u32, 28 * 4));

    let ck = wgsl_autoencoder::checkpoint::load(&src.join("checkpoint.safetensors")).unwrap();
    let gpu = common::gpu();
    let model = ck.model().unwrap();
    let inf = Inference::new(gpu, model, &ck.state.params).unwrap();
    let test = wgsl_autoencoder::data::load(&data, None)
        .unwrap()
        .test
        .images;
    let images: Vec<f32> = test.pixels[..2 * 784]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    let recon: Vec<u8> = inf
        .reconstruct(gpu, &images)
        .unwrap()
        .into_iter()
        .map(gray)
        .collect();
    let apart = max_diff(&recon[..784], &recon[784..]);
    assert!(
        apart > 8,
        "the two ends look alike: {apart} gray levels apart at most"
    );
    assert!(
        max_diff(&strip_cell(&img, 0), &recon[..784]) <= 1,
        "first cell"
    );
    assert!(
        max_diff(&strip_cell(&img, 4), &recon[784..]) <= 1,
        "last cell"
    );
    let codes = inf.encode(gpu, &images).unwrap();
    let (c0, c1) = codes.split_at(codes.len() / 2);
    for k in 1..4 {
        let s = k as f32 / 4.0;
        let mid: Vec<f32> = c0
            .iter()
            .zip(c1)
            .map(|(a, b)| (1.0 - s) * a + s * b)
            .collect();
        let want: Vec<u8> = inf
            .decode(gpu, &mid)
            .unwrap()
            .into_iter()
            .map(gray)
            .collect();
        assert!(max_diff(&strip_cell(&img, k), &want) <= 1, "cell {k}");
    }
    assert_no_stray_files(t.path());
}

/// `decode --sample 20`: a grid of 10 x 2 digits, the same file for the same seed, another
/// for another seed.
#[test]
fn cli_decode_sample_is_seeded() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = fresh_run(t.path(), &data);
    let sample = |seed: &str, name: &str| {
        let out = t.path().join(name);
        let r = run_cmd(
            cli()
                .args(["decode", "--sample", "20", "--seed", seed, "--checkpoint"])
                .arg(&src)
                .arg("--data")
                .arg(&data)
                .arg("--out")
                .arg(&out),
        );
        r.ok();
        assert!(
            r.stdout.contains("decoded 20 codes sampled"),
            "{}",
            r.stdout
        );
        std::fs::read(out).unwrap()
    };
    let (a, b, c) = (
        sample("1", "a.png"),
        sample("1", "b.png"),
        sample("2", "c.png"),
    );
    assert_eq!(a, b, "the same seed gave different samples");
    assert_ne!(a, c, "seeds 1 and 2 gave the same samples");
    let img = png(&t.path().join("a.png"));
    let (w, h) = (10 * 28 * 4 + 9 * 2, 2 * 28 * 4 + 2);
    assert_eq!((img.width(), img.height()), (w, h));
}

/// Exactly one of --codes, --interpolate, --sample; a test image that does not exist, a
/// malformed A,B and a one-step strip are refused by name, and nothing is written. --codes
/// still needs no dataset.
#[test]
fn cli_decode_refuses_bad_sources() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    let out = t.path().join("out.png");
    let decode = |args: &[&str]| {
        let mut c = cli();
        c.args(["decode", "--checkpoint"])
            .arg(&src)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(args);
        let r = run_cmd(&mut c);
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
        r
    };
    decode(&["--interpolate", "0,1", "--sample", "3"]).fails_with(&["cannot be used with"]);
    decode(&["--codes", "c.npy", "--sample", "3"]).fails_with(&["cannot be used with"]);
    decode(&["--codes", "c.npy", "--interpolate", "0,1"]).fails_with(&["cannot be used with"]);
    decode(&[]).fails_with(&["--codes", "--interpolate", "--sample"]);
    decode(&["--sample", "3", "--steps", "4"]).fails_with(&["--steps", "cannot be used with"]);
    decode(&["--interpolate", "0,32"]).fails_with(&[
        "--interpolate 0,32",
        "no test image 32",
        "32 images",
        "0 to 31",
    ]);
    decode(&["--interpolate", "40,2"]).fails_with(&["no test image 40"]);
    for bad in ["0", "0;1", "a,1", "-1,2", "1,2,3"] {
        decode(&["--interpolate", bad]).fails_with(&["--interpolate", "A,B", bad]);
    }
    decode(&["--interpolate", "0,1", "--steps", "1"]).fails_with(&["--steps 1", "both ends"]);
    decode(&["--sample", "0"]).fails_with(&["--sample 0"]);

    // --codes reads no dataset: a missing --data folder does not matter.
    let codes = t.path().join("codes.npy");
    run_cmd(
        cli()
            .args(["encode", "--checkpoint"])
            .arg(&src)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&codes),
    )
    .ok();
    let grid = t.path().join("grid.png");
    let r = run_cmd(
        cli()
            .args(["decode", "--count", "7", "--checkpoint"])
            .arg(&src)
            .arg("--codes")
            .arg(&codes)
            .arg("--data")
            .arg(t.path().join("no-such-folder"))
            .arg("--out")
            .arg(&grid),
    );
    r.ok();
    assert!(r.stdout.contains("decoded 7 codes into"), "{}", r.stdout);
    assert_eq!(png(&grid).width(), 7 * 28 * 4 + 6 * 2);
    assert_no_stray_files(t.path());
}
