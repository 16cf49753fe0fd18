//! Pictures: each writer produces a decodable PNG of the documented size, and bad input or an
//! unwritable path is an error, not a panic. Set REPORT_SAMPLES=DIR to keep sample pictures.
use std::path::{Path, PathBuf};

use wgsl_autoencoder::report::{
    codes_png, grid_png, loss_png, reconstructions_png, GAP, LOSS_PLOT_SIZE, SCALE,
};

/// Where pictures go: $REPORT_SAMPLES when set (to look at them), else a temporary folder.
fn out_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("REPORT_SAMPLES") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (None, PathBuf::from(d))
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

fn decode(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap()
}

/// A synthetic 28x28 "digit": a ring whose radius depends on `k`, values in [0, 1].
fn digit(k: usize, blur: f32) -> Vec<f32> {
    let r0 = 5.0 + k as f32;
    (0..28 * 28)
        .map(|i| {
            let (y, x) = ((i / 28) as f32 - 13.5, (i % 28) as f32 - 13.5);
            let d = ((x * x + y * y).sqrt() - r0).abs();
            (1.0 - d / (1.5 + blur)).clamp(0.0, 1.0)
        })
        .collect()
}

fn digits(n: usize, blur: f32) -> Vec<f32> {
    (0..n).flat_map(|k| digit(k % 8, blur)).collect()
}

fn unwritable(dir: &Path, name: &str) -> PathBuf {
    dir.join("missing-folder").join(name)
}

#[test]
fn reconstructions_png_size_and_content() {
    let (_t, dir) = out_dir();
    let n = 10;
    let orig = digits(n, 0.0);
    let recon = digits(n, 2.0);
    let path = dir.join("reconstructions.png");
    reconstructions_png(&path, &orig, &recon, n, 28, 28).unwrap();
    let img = decode(&path).to_luma8();
    assert_eq!(img.width() as usize, n * 28 * SCALE + (n - 1) * GAP);
    assert_eq!(img.height() as usize, 2 * 28 * SCALE + GAP);
    // Corner of the first digit is background (black), the gap is white, and the centre
    // row of the first ring (radius 5 from centre 13.5) is white at x = 13.5 + 5.
    assert_eq!(img.get_pixel(0, 0).0[0], 0);
    assert_eq!(img.get_pixel((28 * SCALE) as u32, 0).0[0], 255);
    assert!(img.get_pixel((18 * SCALE) as u32, (13 * SCALE) as u32).0[0] > 100);
    // More values than needed are fine (the first `count` are drawn).
    reconstructions_png(&path, &orig, &recon, 3, 28, 28).unwrap();
    assert_eq!(decode(&path).width() as usize, 3 * 28 * SCALE + 2 * GAP);
}

#[test]
fn reconstructions_png_rejects_bad_input() {
    let (_t, dir) = out_dir();
    let path = dir.join("bad.png");
    let d = digits(2, 0.0);
    assert!(reconstructions_png(&path, &d, &d, 3, 28, 28).is_err());
    assert!(reconstructions_png(&path, &d, &d[..100], 2, 28, 28).is_err());
    assert!(reconstructions_png(&path, &d, &d, 0, 28, 28).is_err());
    assert!(reconstructions_png(&path, &d, &d, 1, usize::MAX, 2).is_err());
    assert!(!path.exists());
    let e = reconstructions_png(&unwritable(&dir, "r.png"), &d, &d, 2, 28, 28).unwrap_err();
    assert!(e.to_string().contains("r.png"), "{e}");
}

#[test]
fn codes_png_size_and_normalisation() {
    let (_t, dir) = out_dir();
    let (n, ch, cw, c) = (10, 4, 4, 8);
    // Code i: value = position in the NHWC layout, scaled differently per image.
    let codes: Vec<f32> = (0..n)
        .flat_map(|i| (0..ch * cw * c).map(move |j| j as f32 * (i + 1) as f32))
        .collect();
    let path = dir.join("codes.png");
    codes_png(&path, &codes, n, ch, cw, c).unwrap();
    let img = decode(&path).to_luma8();
    // Each code is (4, 32) transposed: 32 high, 4 wide.
    assert_eq!(img.width() as usize, n * ch * SCALE + (n - 1) * GAP);
    assert_eq!(img.height() as usize, cw * c * SCALE);
    // Per-image min/max: element 0 (top-left) black, element 127 (bottom-right) white,
    // element [row 1, col 0] = flat 32 sits at picture (y 0, x 1).
    let px = |cell: usize, y: usize, x: usize| {
        let ox = cell * (ch * SCALE + GAP);
        img.get_pixel((ox + x * SCALE) as u32, (y * SCALE) as u32).0[0]
    };
    for cell in [0, 9] {
        assert_eq!(px(cell, 0, 0), 0);
        assert_eq!(px(cell, 31, 3), 255);
        assert_eq!(px(cell, 0, 1), (32.0f32 / 127.0 * 255.0).round() as u8);
        assert_eq!(px(cell, 1, 0), (1.0f32 / 127.0 * 255.0).round() as u8);
    }
    // A constant code (and NaNs) must not divide by zero or panic.
    let flat = vec![0.5f32; ch * cw * c];
    codes_png(&path, &flat, 1, ch, cw, c).unwrap();
    let mut nan = flat.clone();
    nan[3] = f32::NAN;
    codes_png(&path, &nan, 1, ch, cw, c).unwrap();
    assert!(codes_png(&path, &flat, 2, ch, cw, c).is_err());
    assert!(codes_png(&unwritable(&dir, "c.png"), &flat, 1, ch, cw, c).is_err());
}

#[test]
fn grid_png_size() {
    let (_t, dir) = out_dir();
    let n = 23;
    let imgs = digits(n, 0.5);
    let path = dir.join("grid.png");
    grid_png(&path, &imgs, n, 28, 28, 10).unwrap();
    let img = decode(&path).to_luma8();
    assert_eq!(img.width() as usize, 10 * 28 * SCALE + 9 * GAP);
    assert_eq!(img.height() as usize, 3 * 28 * SCALE + 2 * GAP);
    // The unused cells of the last row stay white.
    let last = img.get_pixel(img.width() - 1, img.height() - 1).0[0];
    assert_eq!(last, 255);
    // Fewer images than columns: the grid narrows.
    grid_png(&path, &imgs, 4, 28, 28, 10).unwrap();
    assert_eq!(decode(&path).width() as usize, 4 * 28 * SCALE + 3 * GAP);
    assert!(grid_png(&path, &imgs, 4, 28, 28, 0).is_err());
    assert!(grid_png(&path, &imgs, n + 1, 28, 28, 10).is_err());
    assert!(grid_png(&unwritable(&dir, "g.png"), &imgs, 4, 28, 28, 10).is_err());
}

#[test]
fn loss_png_many_epochs() {
    let (_t, dir) = out_dir();
    let rows: Vec<(usize, f64, f64)> = (1..=50)
        .map(|e| {
            let t = e as f64;
            (e, 0.09 + 0.2 / t, 0.092 + 0.19 / t)
        })
        .collect();
    let path = dir.join("loss.png");
    loss_png(&path, &rows).unwrap();
    let img = decode(&path).to_rgb8();
    assert_eq!((img.width(), img.height()), LOSS_PLOT_SIZE);
    // Both curve colours and some dark text are present.
    let has = |f: &dyn Fn([u8; 3]) -> bool| img.pixels().any(|p| f(p.0));
    assert!(
        has(&|[r, g, b]| b > 150 && r < 80 && g > 90 && g < 150),
        "no blue curve"
    );
    assert!(
        has(&|[r, g, b]| r > 220 && g > 100 && g < 150 && b < 60),
        "no orange curve"
    );
    assert!(has(&|[r, g, b]| r < 40 && g < 40 && b < 40), "no dark text");
}

#[test]
fn loss_png_one_epoch_and_odd_values() {
    let (_t, dir) = out_dir();
    let path = dir.join("loss-one-epoch.png");
    loss_png(&path, &[(1, 0.25, 0.24)]).unwrap();
    let img = decode(&path).to_rgb8();
    assert_eq!((img.width(), img.height()), LOSS_PLOT_SIZE);
    // The single points are drawn as markers.
    assert!(
        img.pixels().any(|p| p.0 == [31, 119, 180]),
        "no loss marker"
    );
    assert!(
        img.pixels().any(|p| p.0 == [255, 127, 14]),
        "no val_loss marker"
    );

    // No validation loss: only the training curve; a NaN epoch is skipped.
    let path = dir.join("loss-no-val.png");
    let rows = [
        (1, 0.3, f64::NAN),
        (2, f64::NAN, f64::NAN),
        (3, 0.2, f64::NAN),
    ];
    loss_png(&path, &rows).unwrap();
    assert_eq!(decode(&path).width(), LOSS_PLOT_SIZE.0);

    // Equal values (flat range).
    loss_png(&path, &[(1, 0.1, 0.1), (2, 0.1, 0.1)]).unwrap();

    assert!(loss_png(&dir.join("empty.png"), &[]).is_err());
    assert!(loss_png(&dir.join("nan.png"), &[(1, f64::NAN, f64::INFINITY)]).is_err());
    let e = loss_png(&unwritable(&dir, "l.png"), &[(1, 0.2, 0.2)]).unwrap_err();
    assert!(e.to_string().contains("l.png"), "{e}");
}

/// latent.png: three clusters in 6-D, apart along one direction, give a picture of the
/// documented size with each cluster's colour, and a fit that puts nearly all the variance on
/// PC 1. Mismatched input and an unwritable path are errors.
#[test]
fn latent_png_size_colours_and_errors() {
    use wgsl_autoencoder::report::{latent_png, LATENT_PLOT_SIZE};
    let (_t, dir) = out_dir();
    let dim = 6;
    let mut codes = Vec::new();
    let mut labels = Vec::new();
    for i in 0..300 {
        let digit = (i % 3) as u8 * 3; // 0, 3, 6
        let wobble = |k: usize| ((i * 7 + k * 13) % 11) as f32 / 110.0;
        codes.extend((0..dim).map(|k| digit as f32 * (k as f32 - 2.5) + wobble(k)));
        labels.push(digit);
    }
    let path = dir.join("latent.png");
    let pca = latent_png(&path, &codes, &labels, dim).unwrap();
    assert!(pca.explained()[0] > 0.99, "{:?}", pca.explained());
    let img = decode(&path).to_rgb8();
    assert_eq!((img.width(), img.height()), LATENT_PLOT_SIZE);
    let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
    assert!(has([31, 119, 180]) && has([214, 39, 40]) && has([227, 119, 194]));
    assert!(!has([255, 127, 14]), "digit 1's colour, but there is no 1");

    assert!(latent_png(&dir.join("x.png"), &codes[..5], &labels, dim).is_err());
    assert!(latent_png(&dir.join("x.png"), &codes, &labels, 0).is_err());
    let nan = vec![f32::NAN; dim * 2];
    assert!(latent_png(&dir.join("x.png"), &nan, &[1, 2], dim).is_err());
    let e = latent_png(&unwritable(&dir, "l.png"), &codes, &labels, dim).unwrap_err();
    assert!(e.to_string().contains("l.png"), "{e}");
}
