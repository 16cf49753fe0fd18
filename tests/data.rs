//! The MNIST IDX reader: synthetic files (raw and gzip, both namings), every malformed case,
//! and the shipped copy in assets/mnist.
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use wgsl_autoencoder::data::{
    default_dir, find_file, load_dir, parse_images, parse_labels, read_images, read_labels,
};
use wgsl_autoencoder::Error;

fn images_bytes(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x0000_0803u32.to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(rows.to_be_bytes());
    b.extend(cols.to_be_bytes());
    let n = (count * rows * cols) as usize;
    b.extend((0..n).map(|i| (i * 7 % 256) as u8));
    b
}

fn labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x0000_0801u32.to_be_bytes());
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The error's message, which must be a Data error naming `path`.
fn data_msg(r: Result<impl std::fmt::Debug, Error>, path: &Path) -> String {
    match r {
        Err(e @ Error::Data { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "message does not name {}: {msg}",
                path.display()
            );
            msg
        }
        other => panic!("expected Error::Data, got {other:?}"),
    }
}

fn p() -> PathBuf {
    PathBuf::from("some/file-idx3-ubyte")
}

#[test]
fn parses_good_images_and_labels() {
    let b = images_bytes(3, 2, 4);
    let im = parse_images(&b, &p()).unwrap();
    assert_eq!((im.count, im.rows, im.cols), (3, 2, 4));
    assert_eq!(im.pixels, &b[16..]);
    assert_eq!(im.image_len(), 8);
    assert_eq!(im.image(1).unwrap(), &b[24..32]);
    assert!(im.image(3).is_none());
    let l = parse_labels(&labels_bytes(&[5, 0, 4]), &p()).unwrap();
    assert_eq!(l, vec![5, 0, 4]);
}

#[test]
fn wrong_magic_says_expected_and_found() {
    let mut b = images_bytes(1, 2, 2);
    b[2] = 0x09;
    let m = data_msg(parse_images(&b, &p()), &p());
    assert!(m.contains("0x00000803") && m.contains("0x00000903"), "{m}");
    let m = data_msg(parse_labels(b"PK\x03\x04zzzzzzzz", &p()), &p());
    assert!(m.contains("0x00000801") && m.contains("not an IDX"), "{m}");
}

#[test]
fn images_labels_mix_up_is_hinted() {
    let m = data_msg(parse_images(&labels_bytes(&[1, 2, 3]), &p()), &p());
    assert!(m.contains("labels") && m.contains("swapped"), "{m}");
    let m = data_msg(parse_labels(&images_bytes(1, 2, 2), &p()), &p());
    assert!(m.contains("images") && m.contains("swapped"), "{m}");
}

#[test]
fn gzip_bytes_given_to_parse_are_named() {
    let m = data_msg(parse_images(&gz(&images_bytes(1, 2, 2)), &p()), &p());
    assert!(m.contains("gzip"), "{m}");
}

#[test]
fn truncated_header() {
    let b = images_bytes(1, 2, 2);
    for n in [0, 3, 4, 15] {
        let m = data_msg(parse_images(&b[..n], &p()), &p());
        assert!(m.contains("header truncated"), "{n}: {m}");
    }
    let m = data_msg(parse_labels(&labels_bytes(&[1])[..6], &p()), &p());
    assert!(
        m.contains("header truncated") && m.contains("8 bytes"),
        "{m}"
    );
}

#[test]
fn zero_dims() {
    for (c, r, k) in [(0, 2, 2), (1, 0, 2), (1, 2, 0)] {
        let m = data_msg(parse_images(&images_bytes(c, r, k), &p()), &p());
        assert!(m.contains("zero dimension"), "{m}");
    }
    let m = data_msg(parse_labels(&labels_bytes(&[]), &p()), &p());
    assert!(m.contains("zero dimension"), "{m}");
}

#[test]
fn truncated_payload_says_expected_and_found() {
    let b = images_bytes(3, 2, 4);
    let m = data_msg(parse_images(&b[..b.len() - 5], &p()), &p());
    assert!(
        m.contains("truncated") && m.contains("24") && m.contains("19"),
        "{m}"
    );
    let l = labels_bytes(&[1, 2, 3]);
    let m = data_msg(parse_labels(&l[..l.len() - 1], &p()), &p());
    assert!(m.contains("truncated") && m.contains("expected 3"), "{m}");
}

#[test]
fn trailing_garbage_is_rejected() {
    let mut b = images_bytes(3, 2, 4);
    b.extend([0, 0]);
    let m = data_msg(parse_images(&b, &p()), &p());
    assert!(
        m.contains("trailing garbage") && m.contains("2 extra"),
        "{m}"
    );
    let mut l = labels_bytes(&[1, 2, 3]);
    l.push(9);
    let m = data_msg(parse_labels(&l, &p()), &p());
    assert!(m.contains("trailing garbage"), "{m}");
}

#[test]
fn huge_dims_do_not_allocate_or_panic() {
    // 4e9 x 4e9 x 4e9 overflows any usize; 4e9 x 60000 x 1 fits on 64-bit but is truncated.
    let mut b = images_bytes(1, 1, 1);
    b[4..16].copy_from_slice(&[0xff; 12]);
    let m = data_msg(parse_images(&b, &p()), &p());
    assert!(m.contains("overflow") || m.contains("truncated"), "{m}");
    let dir = tempfile::tempdir().unwrap();
    // The same lies on disk, raw and gzip: the reader must stop at what the file holds.
    let raw = write(dir.path(), "lie", &b);
    data_msg(read_images(&raw), &raw);
    let mut b2 = images_bytes(1, 1, 1);
    b2[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    b2[8..12].copy_from_slice(&60000u32.to_be_bytes());
    let gzp = write(dir.path(), "lie.gz", &gz(&b2));
    let m = data_msg(read_images(&gzp), &gzp);
    assert!(m.contains("truncated") || m.contains("overflow"), "{m}");
}

#[test]
fn reads_raw_and_gzip_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let b = images_bytes(2, 3, 3);
    let l = labels_bytes(&[7, 1]);
    // Gzip data without .gz, raw data with .gz: sniffing decides.
    let a = write(dir.path(), "a-idx3-ubyte", &gz(&b));
    let c = write(dir.path(), "c-idx3-ubyte.gz", &b);
    let d = write(dir.path(), "d-idx1-ubyte.gz", &gz(&l));
    let e = write(dir.path(), "e-idx1-ubyte", &l);
    let want = parse_images(&b, &a).unwrap();
    assert_eq!(read_images(&a).unwrap(), want);
    assert_eq!(read_images(&c).unwrap(), want);
    assert_eq!(read_labels(&d).unwrap(), vec![7, 1]);
    assert_eq!(read_labels(&e).unwrap(), vec![7, 1]);
}

#[test]
fn read_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file: an Io error naming it.
    let missing = dir.path().join("nope");
    let e = read_images(&missing).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("nope"), "{e}");

    // Truncated and padded, raw and gzip.
    let b = images_bytes(2, 3, 3);
    let short = write(dir.path(), "short", &b[..b.len() - 1]);
    assert!(data_msg(read_images(&short), &short).contains("truncated"));
    let short_gz = write(dir.path(), "short.gz", &gz(&b[..b.len() - 1]));
    assert!(data_msg(read_images(&short_gz), &short_gz).contains("truncated"));
    let mut long = b.clone();
    long.extend([1, 2, 3]);
    let long_raw = write(dir.path(), "long", &long);
    let m = data_msg(read_images(&long_raw), &long_raw);
    assert!(
        m.contains("trailing garbage") && m.contains("3 extra"),
        "{m}"
    );
    let long_gz = write(dir.path(), "long.gz", &gz(&long));
    assert!(data_msg(read_images(&long_gz), &long_gz).contains("trailing garbage"));
    // Non-gzip bytes after a valid gzip member are garbage too.
    let mut after = gz(&b);
    after.extend(b"junk");
    let after_gz = write(dir.path(), "after.gz", &after);
    data_msg(read_images(&after_gz), &after_gz);

    // Header problems through the file readers.
    let mix = write(dir.path(), "mix.gz", &gz(&labels_bytes(&[1])));
    assert!(data_msg(read_images(&mix), &mix).contains("swapped"));
    let tiny = write(dir.path(), "tiny", &b[..10]);
    assert!(data_msg(read_images(&tiny), &tiny).contains("header truncated"));
    let empty = write(dir.path(), "empty", &[]);
    assert!(data_msg(read_labels(&empty), &empty).contains("header truncated"));
}

#[test]
fn corrupt_gzip_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = gz(&images_bytes(4, 5, 5));
    // Flip bytes in the deflate body, cut the stream short, break the CRC.
    let mut flipped = good.clone();
    for i in (12..good.len() - 8).step_by(3) {
        flipped[i] ^= 0x5a;
    }
    let cut = good[..good.len() / 2].to_vec();
    let mut crc = good.clone();
    let n = crc.len();
    crc[n - 8] ^= 0xff;
    let only_magic = vec![0x1f, 0x8b];
    for (name, bytes) in [
        ("flipped.gz", flipped),
        ("cut.gz", cut),
        ("crc.gz", crc),
        ("magic.gz", only_magic),
    ] {
        let path = write(dir.path(), name, &bytes);
        let m = data_msg(read_images(&path), &path);
        assert!(
            m.contains("gzip") || m.contains("truncated") || m.contains("magic"),
            "{name}: {m}"
        );
    }
}

/// A complete small dataset in `dir`, gzip'd or not, in either naming.
fn write_set(dir: &Path, dotted: bool, gzip: bool, train_n: u32, test_n: u32) {
    let name = |stem: &str| {
        let s = if dotted {
            stem.replacen("-idx", ".idx", 1)
        } else {
            stem.to_string()
        };
        if gzip {
            format!("{s}.gz")
        } else {
            s
        }
    };
    let enc = |b: Vec<u8>| if gzip { gz(&b) } else { b };
    let tl: Vec<u8> = (0..train_n).map(|i| (i % 10) as u8).collect();
    let sl: Vec<u8> = (0..test_n).map(|i| (9 - i % 10) as u8).collect();
    write(
        dir,
        &name("train-images-idx3-ubyte"),
        &enc(images_bytes(train_n, 4, 3)),
    );
    write(
        dir,
        &name("train-labels-idx1-ubyte"),
        &enc(labels_bytes(&tl)),
    );
    write(
        dir,
        &name("t10k-images-idx3-ubyte"),
        &enc(images_bytes(test_n, 4, 3)),
    );
    write(
        dir,
        &name("t10k-labels-idx1-ubyte"),
        &enc(labels_bytes(&sl)),
    );
}

#[test]
fn find_file_accepts_both_namings_with_or_without_gz() {
    for (dotted, gzip, file) in [
        (false, false, "train-images-idx3-ubyte"),
        (false, true, "train-images-idx3-ubyte.gz"),
        (true, false, "train-images.idx3-ubyte"),
        (true, true, "train-images.idx3-ubyte.gz"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), dotted, gzip, 5, 3);
        let found = find_file(dir.path(), "train-images-idx3-ubyte").unwrap();
        assert_eq!(found, dir.path().join(file));
        let ds = load_dir(dir.path()).unwrap();
        assert_eq!(ds.dir, dir.path());
        assert_eq!(ds.train.images.count, 5);
        assert_eq!(ds.train.labels, vec![0, 1, 2, 3, 4]);
        assert_eq!(ds.test.images.count, 3);
        assert_eq!(ds.test.labels, vec![9, 8, 7]);
        assert_eq!((ds.test.images.rows, ds.test.images.cols), (4, 3));
    }
}

#[test]
fn missing_file_names_dir_tries_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let m = data_msg(find_file(dir.path(), "t10k-labels-idx1-ubyte"), dir.path());
    for s in [
        "t10k-labels-idx1-ubyte",
        "t10k-labels-idx1-ubyte.gz",
        "t10k-labels.idx1-ubyte",
        "t10k-labels.idx1-ubyte.gz",
        "--data DIR",
    ] {
        assert!(m.contains(s), "{s} missing from: {m}");
    }
    let gone = dir.path().join("no-such-dir");
    let m = data_msg(load_dir(&gone), &gone);
    assert!(m.contains("folder not found"), "{m}");
}

#[test]
fn load_dir_checks_counts_and_sizes() {
    // Labels count differs from images count.
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), false, false, 5, 3);
    write(dir.path(), "t10k-labels-idx1-ubyte", &labels_bytes(&[1, 2]));
    let m = data_msg(load_dir(dir.path()), dir.path());
    assert!(m.contains("3 images") && m.contains("2 labels"), "{m}");

    // Test images a different size from train images.
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), false, true, 5, 3);
    write(
        dir.path(),
        "t10k-images-idx3-ubyte.gz",
        &gz(&images_bytes(3, 3, 4)),
    );
    let m = data_msg(load_dir(dir.path()), dir.path());
    assert!(m.contains("4x3") && m.contains("3x4"), "{m}");

    // One file missing.
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), true, false, 5, 3);
    std::fs::remove_file(dir.path().join("train-labels.idx1-ubyte")).unwrap();
    let m = data_msg(load_dir(dir.path()), dir.path());
    assert!(m.contains("train-labels-idx1-ubyte"), "{m}");
}

#[test]
fn shipped_mnist() {
    let dir = default_dir();
    assert!(dir.join("train-images-idx3-ubyte.gz").is_file(), "{dir:?}");
    let ds = load_dir(&dir).unwrap();
    let (tr, te) = (&ds.train, &ds.test);
    assert_eq!(
        (tr.images.count, tr.images.rows, tr.images.cols),
        (60000, 28, 28)
    );
    assert_eq!(
        (te.images.count, te.images.rows, te.images.cols),
        (10000, 28, 28)
    );
    assert_eq!(tr.images.pixels.len(), 60000 * 784);
    assert_eq!(te.images.pixels.len(), 10000 * 784);
    assert_eq!(tr.labels.len(), 60000);
    assert_eq!(te.labels.len(), 10000);
    assert_eq!(&tr.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&te.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert!(tr.labels.iter().chain(&te.labels).all(|&l| l < 10));
    // Digits are mostly background with some full-intensity strokes.
    let first = tr.images.image(0).unwrap();
    assert!(first.iter().filter(|&&v| v == 0).count() > 500);
    assert_eq!(first.iter().copied().max(), Some(255));
}
