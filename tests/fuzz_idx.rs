//! The IDX reader against random and mutated files, raw and gzip-compressed, at the library
//! level: `parse_images` / `parse_labels` on bytes, `read_images` / `read_labels` on files.
//!
//! Properties: no panic; a refusal is `Error::Data` (or `Error::Io`) naming the file; what
//! loads is consistent (count x rows x cols pixels, the payload as written); and the largest
//! single allocation is bounded by the file (raw) or by what the stream really decompresses
//! to (gzip), never by the header's promise (which can be 2^96 bytes).
//!
//! Seeded and bounded (`PROPTEST_CASES` fuzzes longer); failures are kept in
//! tests/regressions/proptest/ and the committed inputs in tests/regressions/idx/, which
//! [`regression_corpus`] reads and the last proptest mutates.
mod fuzz_support;

use flate2::write::GzEncoder;
use flate2::Compression;
use fuzz_support::{config, corpus, largest_allocation, mutation, Mutation, Tracking};
use proptest::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wgsl_autoencoder::data::{parse_images, parse_labels, read_images, read_labels, Images};
use wgsl_autoencoder::{Error, Result};

#[global_allocator]
static ALLOC: Tracking = Tracking;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b
}

fn images_file(count: u32, rows: u32, cols: u32, seed: u8) -> Vec<u8> {
    let mut b = header(IMAGES_MAGIC, &[count, rows, cols]);
    let n = (count * rows * cols) as usize;
    b.extend((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

fn labels_file(count: u32, seed: u8) -> Vec<u8> {
    let mut b = header(LABELS_MAGIC, &[count]);
    b.extend((0..count).map(|i| ((i as u8).wrapping_add(seed)) % 10));
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn path() -> PathBuf {
    PathBuf::from("fuzzed/train-images-idx3-ubyte")
}

/// A refusal must be a data or I/O error naming the file.
#[track_caller]
fn refusal_names_the_file<T>(r: &Result<T>, p: &Path) {
    match r {
        Ok(_) => {}
        Err(e @ (Error::Data { path, .. } | Error::Io { path, .. })) => {
            assert_eq!(path, p, "{e}");
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
        Err(e) => panic!("unexpected error kind: {e:?}"),
    }
}

#[track_caller]
fn consistent(im: &Images) {
    assert!(im.count > 0 && im.rows > 0 && im.cols > 0);
    assert_eq!(im.pixels.len(), im.count * im.rows * im.cols);
}

/// Parses `bytes` both ways; allocations within the file's size.
fn check_parse(bytes: &[u8]) {
    let p = path();
    let (r, largest) = largest_allocation(|| parse_images(bytes, &p));
    assert!(largest <= bytes.len() + 4096, "{largest} bytes at once");
    refusal_names_the_file(&r, &p);
    if let Ok(im) = r {
        consistent(&im);
        assert_eq!(im.pixels, &bytes[16..]);
    }
    let (r, largest) = largest_allocation(|| parse_labels(bytes, &p));
    assert!(largest <= bytes.len() + 4096, "{largest} bytes at once");
    refusal_names_the_file(&r, &p);
    if let Ok(l) = r {
        assert_eq!(l, &bytes[8..]);
        assert!(!l.is_empty());
    }
}

/// Writes `bytes` to a file and reads it both ways. A gzip stream of a few KB cannot
/// decompress to more than about a MB, so 4 MB bounds every honest buffer; a buffer sized from
/// a header's promise would be far larger.
fn check_read(bytes: &[u8]) {
    // One folder per thread, one file rewritten: the fuzzer is not a file-system benchmark.
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    let p = DIR.with(|d| d.path().join("t10k-images-idx3-ubyte.gz"));
    std::fs::write(&p, bytes).unwrap();
    let bound = 8 * bytes.len() + 4 * 1024 * 1024;
    let (r, largest) = largest_allocation(|| read_images(&p));
    assert!(largest <= bound, "{largest} bytes at once");
    refusal_names_the_file(&r, &p);
    if let Ok(im) = r {
        consistent(&im);
    }
    let (r, largest) = largest_allocation(|| read_labels(&p));
    assert!(largest <= bound, "{largest} bytes at once");
    refusal_names_the_file(&r, &p);
    if let Ok(l) = r {
        assert!(!l.is_empty());
    }
}

#[test]
fn regression_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/idx");
    let files = corpus("idx");
    assert!(files.len() >= 8, "the corpus is missing: {files:?}");
    for (name, bytes) in &files {
        check_parse(bytes);
        let p = dir.join(name);
        let (images, im_alloc) = largest_allocation(|| read_images(&p));
        let (labels, lb_alloc) = largest_allocation(|| read_labels(&p));
        assert!(
            im_alloc.max(lb_alloc) <= 8 * bytes.len() + 4 * 1024 * 1024,
            "{name}: {im_alloc}/{lb_alloc} bytes at once"
        );
        refusal_names_the_file(&images, &p);
        refusal_names_the_file(&labels, &p);
        let loaded = match name.split('-').next() {
            Some("ok") if name.contains("images") => images.map(|im| consistent(&im)).is_ok(),
            Some("ok") => labels.is_ok(),
            _ => images.is_ok() || labels.is_ok(),
        };
        assert_eq!(loaded, name.starts_with("ok-"), "{name}");
    }
}

/// Writes the corpus (run with `--ignored`; the files are committed).
#[test]
#[ignore]
fn write_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/idx");
    std::fs::create_dir_all(&dir).unwrap();
    let w = |name: &str, b: &[u8]| std::fs::write(dir.join(name), b).unwrap();
    w("ok-images-3x2x4", &images_file(3, 2, 4, 1));
    w("ok-images-5x7x3.gz", &gz(&images_file(5, 7, 3, 2)));
    w("ok-labels-9", &labels_file(9, 3));
    w("ok-labels-4.gz", &gz(&labels_file(4, 4)));
    // Headers that promise 2^96 or 60000 x 28 x 28 bytes, with almost nothing behind them.
    let mut b = header(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX]);
    b.extend([1, 2, 3]);
    w("images-dims-overflow.gz", &gz(&b));
    w("images-dims-overflow", &b);
    let mut b = header(IMAGES_MAGIC, &[60000, 28, 28]);
    b.extend([0; 10]);
    w("images-promises-47-mb.gz", &gz(&b));
    let mut b = header(LABELS_MAGIC, &[u32::MAX]);
    b.push(7);
    w("labels-promises-4-gb.gz", &gz(&b));
    // A gzip stream cut in half, one with garbage after it, and a second member that is not
    // gzip.
    let g = gz(&images_file(20, 5, 5, 5));
    w("images-gzip-cut.gz", &g[..g.len() / 2]);
    let mut t = g.clone();
    t.extend(b"trailing");
    w("images-gzip-then-garbage.gz", &t);
    // A stream whose CRC does not match.
    let mut c = g.clone();
    let n = c.len();
    c[n - 6] ^= 0x40;
    w("images-gzip-bad-crc.gz", &c);
    // Zeros that decompress 1000:1 under a header that wants fewer bytes.
    let mut z = header(IMAGES_MAGIC, &[1, 4, 4]);
    z.extend(vec![0u8; 200_000]);
    w("images-zeros-beyond-the-header.gz", &gz(&z));
    w("empty", b"");
    w("gzip-magic-only.gz", &[0x1f, 0x8b]);
    w("images-header-only", &header(IMAGES_MAGIC, &[2, 2, 2]));
}

/// Applies `ms`, half of the positions in the first 24 bytes (the headers).
fn mutate(base: &[u8], ms: &[Mutation]) -> Vec<u8> {
    fuzz_support::mutate(base, ms, 24)
}

/// A valid images or labels file of small random shape.
fn valid_file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (1u32..6, 1u32..9, 1u32..9, any::<u8>()).prop_map(|(n, r, c, s)| images_file(n, r, c, s)),
        (1u32..40, any::<u8>()).prop_map(|(n, s)| labels_file(n, s)),
    ]
}

/// A header with arbitrary dimensions (edges of u32 included), then up to 64 bytes.
fn hostile_header() -> impl Strategy<Value = Vec<u8>> {
    let dim = prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(0x8000_0000),
        any::<u32>(),
        0u32..64
    ];
    (
        prop::sample::select(vec![IMAGES_MAGIC, LABELS_MAGIC, 0x0000_0903, 0x1f8b_0800]),
        prop::collection::vec(dim, 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, dims, tail)| {
            let mut b = header(m, &dims);
            b.extend(tail);
            b
        })
}

proptest! {
    #![proptest_config(config(20000, 0x1D3, "fuzz_idx_parse"))]

    /// Random bytes, hostile headers, and mutated valid files, parsed from memory.
    #[test]
    fn fuzz_parse(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        hostile in hostile_header(),
        base in valid_file(),
        ms in prop::collection::vec(mutation(), 1..6),
    ) {
        check_parse(&raw);
        check_parse(&hostile);
        check_parse(&mutate(&base, &ms));
    }
}

proptest! {
    #![proptest_config(config(3000, 0x6217, "fuzz_idx_read_gz"))]

    /// Files on disk: a gzip of a hostile header or of a mutated valid file, or a valid
    /// file's gzip stream mutated itself (header, deflate blocks, CRC, length), or raw.
    #[test]
    fn fuzz_read(
        hostile in hostile_header(),
        base in valid_file(),
        ms in prop::collection::vec(mutation(), 1..6),
        gz_ms in prop::collection::vec(mutation(), 0..4),
        which in 0u8..4,
    ) {
        let bytes = match which {
            0 => gz(&hostile),
            1 => mutate(&gz(&mutate(&base, &ms)), &gz_ms),
            2 => mutate(&gz(&base), &ms),
            _ => mutate(&base, &ms),
        };
        check_read(&bytes);
    }
}

proptest! {
    #![proptest_config(config(3000, 0xC0B5, "fuzz_idx_corpus"))]

    /// The committed corpus as seeds, mutated, read from disk.
    #[test]
    fn fuzz_corpus_mutations(pick in any::<prop::sample::Index>(), ms in prop::collection::vec(mutation(), 1..6)) {
        static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
        let seeds = SEEDS.get_or_init(|| corpus("idx"));
        let (_, base) = pick.get(seeds);
        let b = mutate(base, &ms);
        check_parse(&b);
        check_read(&b);
    }
}
