//! The checkpoint reader against damaged and hostile bytes, at the library level (no GPU):
//! every truncation of a small real checkpoint, seeded single-byte flips, edited metadata,
//! newer format versions, the committed regression corpus, and proptest over random and
//! mutated files (including version-1 files, whose metadata the checksum does not cover, so
//! that hostile metadata reaches every parser behind the checksum).
//!
//! Properties: `checkpoint::decode` never panics; it refuses (`Error::Checkpoint`) anything
//! that is not the checkpoint that was written, or accepts bytes that mean exactly that
//! checkpoint (a flipped JSON padding space that becomes a tab); and its largest single
//! allocation stays within twice the file's size (never what a header claims).
//!
//! Each proptest is seeded and bounded (`PROPTEST_CASES` fuzzes longer; failures are kept in
//! tests/regressions/proptest/ and the inputs that broke the reader in
//! tests/regressions/checkpoint/, which [`regression_corpus`] reads).
mod fuzz_support;

use fuzz_support::{config, corpus, largest_allocation, mutation, Mutation, Tracking};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;
use wgsl_autoencoder::checkpoint::{self, Checkpoint, State};
use wgsl_autoencoder::model::{Features, Model, ModelKind};
use wgsl_autoencoder::train::{EpochMetrics, TrainConfig};
use wgsl_autoencoder::Error;

#[global_allocator]
static ALLOC: Tracking = Tracking;

const P: &str = "fuzzed.safetensors";

/// A checkpoint as training writes it: Glorot weights, moments shaped like Adam's, two epochs
/// of history, `step` steps into the third epoch.
fn sample(kind: ModelKind, input: Features, step: usize) -> Checkpoint {
    let model = Model::new(kind, input).unwrap();
    let params = model.init(3);
    let mut r = ChaCha8Rng::seed_from_u64(11);
    let mut config = TrainConfig::new(kind);
    config.batch_size = 16;
    config.train_limit = Some(64);
    config.epochs = 5;
    Checkpoint {
        input,
        train_count: 64,
        config,
        history: (1..=2)
            .map(|epoch| EpochMetrics {
                epoch,
                loss: r.random_range(0.1..0.7),
                val_loss: r.random_range(0.1..0.7),
                seconds: 0.25,
                train_seconds: 0.2,
            })
            .collect(),
        state: State {
            adam_m: params.iter().map(|w| w * 1e-2).collect(),
            adam_v: params.iter().map(|w| w * w * 1e-3).collect(),
            params,
            epoch: 2,
            iterations: 8 + step as u64,
        },
        step,
        partial_losses: (0..step).map(|_| r.random_range(0.6f32..0.7)).collect(),
        data: Some(wgsl_autoencoder::data::DataRecord {
            dir: "data/mnist-8x8".into(),
            files: ["train-images", "train-labels", "t10k-images", "t10k-labels"]
                .iter()
                .map(|n| wgsl_autoencoder::data::FileRecord {
                    name: format!("{n}.gz"),
                    bytes: 1234,
                    sha256: "ab".repeat(32),
                })
                .collect(),
        }),
    }
}

fn dense8() -> Features {
    Features { h: 8, w: 8, c: 1 }
}

/// The dense 8x8 checkpoint 3 steps into an epoch (about 50 KB).
fn dense_bytes() -> &'static (Checkpoint, Vec<u8>) {
    static B: OnceLock<(Checkpoint, Vec<u8>)> = OnceLock::new();
    B.get_or_init(|| {
        let ck = sample(ModelKind::Dense, dense8(), 3);
        let bytes = checkpoint::encode(&ck).unwrap();
        (ck, bytes)
    })
}

fn conv_bytes() -> &'static (Checkpoint, Vec<u8>) {
    static B: OnceLock<(Checkpoint, Vec<u8>)> = OnceLock::new();
    B.get_or_init(|| {
        let ck = sample(ModelKind::Conv, Features { h: 28, w: 28, c: 1 }, 0);
        let bytes = checkpoint::encode(&ck).unwrap();
        (ck, bytes)
    })
}

/// What decoding `bytes` may do: refuse them with a checkpoint error, or return `original`.
/// Never panic, never allocate more than twice the file (plus a little for small files).
#[track_caller]
fn refused_or_identical(bytes: &[u8], original: Option<&Checkpoint>) -> bool {
    refused_or(bytes, |ck| {
        let want = original.expect("these bytes should have been refused");
        assert!(ck == want, "bytes were accepted as a different checkpoint");
    })
}

/// Like [`refused_or_identical`], with `check` judging what was accepted.
#[track_caller]
fn refused_or(bytes: &[u8], check: impl FnOnce(&Checkpoint)) -> bool {
    let (r, largest) = largest_allocation(|| checkpoint::decode(bytes, Path::new(P)));
    assert!(
        largest <= 2 * bytes.len() + 64 * 1024,
        "decoding {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    match r {
        Err(Error::Checkpoint { path, detail }) => {
            assert_eq!(path, Path::new(P));
            assert!(!detail.is_empty());
            false
        }
        Err(e) => panic!("not a checkpoint error: {e:?}"),
        Ok(ck) => {
            check(&ck);
            true
        }
    }
}

/// Metadata of a checkpoint file.
fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().clone().unwrap()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrites `bytes` with edited metadata and a checksum that matches, as format `version`
/// computes it (1: the tensors; 2: the tensors, then every metadata entry but `sha256` in key
/// order) - how hostile metadata gets past the checksum to the parsers behind it.
fn resealed(
    bytes: &[u8],
    version: u32,
    edit: impl FnOnce(&mut HashMap<String, String>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut meta = metadata(bytes);
    if version == 1 {
        meta.remove("step");
        meta.remove("partial_losses");
    }
    meta.insert("format_version".into(), version.to_string());
    edit(&mut meta);
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut h = Sha256::new();
    let mut item = |name: &[u8], data: &[u8]| {
        h.update(name);
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    };
    for n in &names {
        item(n.as_bytes(), st.tensor(n).unwrap().data());
    }
    if version >= 2 {
        item(b"__metadata__", &[]);
        let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "sha256").collect();
        keys.sort();
        for k in keys {
            item(k.as_bytes(), meta[k].as_bytes());
        }
    }
    meta.insert("sha256".into(), hex(&h.finalize()));
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

fn message(bytes: &[u8]) -> String {
    match checkpoint::decode(bytes, Path::new(P)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn encode_decode_round_trip() {
    let (ck, bytes) = dense_bytes();
    assert_eq!(&checkpoint::decode(bytes, Path::new(P)).unwrap(), ck);
    let (ck, bytes) = conv_bytes();
    assert_eq!(&checkpoint::decode(bytes, Path::new(P)).unwrap(), ck);
    // The resealing helper computes the very checksum the program writes.
    let (ck, bytes) = dense_bytes();
    assert_eq!(
        &checkpoint::decode(&resealed(bytes, 2, |_| {}), Path::new(P)).unwrap(),
        ck
    );
}

/// Every length from 0 to the whole file minus one byte: refused, without a panic.
#[test]
fn every_truncation_is_refused() {
    let t0 = Instant::now();
    let (_, bytes) = dense_bytes();
    for len in 0..bytes.len() {
        refused_or_identical(&bytes[..len], None);
    }
    // The conv checkpoint: every length through its header, then 200 seeded ones.
    let (_, conv) = conv_bytes();
    let header = 8 + u64::from_le_bytes(conv[..8].try_into().unwrap()) as usize;
    let mut r = ChaCha8Rng::seed_from_u64(5);
    let lens: Vec<usize> = (0..header + 16)
        .chain((0..200).map(|_| r.random_range(0..conv.len())))
        .collect();
    for &len in &lens {
        refused_or_identical(&conv[..len], None);
    }
    eprintln!(
        "{} truncations of the dense checkpoint ({} bytes) and {} of the conv one refused in {:.2}s",
        bytes.len(),
        bytes.len(),
        lens.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(message(&bytes[..bytes.len() - 1]).contains("truncated"));
}

/// 500 seeded single-byte changes anywhere in the file and 500 inside the JSON header.
#[test]
fn seeded_byte_flips_are_refused_or_harmless() {
    let t0 = Instant::now();
    let (ck, bytes) = dense_bytes();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut r = ChaCha8Rng::seed_from_u64(500);
    let mut accepted = 0;
    for k in 0..1000 {
        let at = if k < 500 {
            r.random_range(0..bytes.len())
        } else {
            r.random_range(0..header)
        };
        let mut b = bytes.clone();
        b[at] ^= r.random_range(1..=255u8);
        if refused_or_identical(&b, Some(ck)) {
            // Only JSON whitespace may change without changing the checkpoint.
            assert!(
                at < header && bytes[at].is_ascii_whitespace() && b[at].is_ascii_whitespace(),
                "byte {at} changed from {:#04x} to {:#04x} and was accepted",
                bytes[at],
                b[at]
            );
            accepted += 1;
        }
    }
    eprintln!(
        "1000 byte flips: {} refused, {accepted} harmless (padding whitespace), {:.2}s",
        1000 - accepted,
        t0.elapsed().as_secs_f64()
    );
}

/// Every metadata entry is covered by the checksum (format 2): editing one, even into
/// something sensible, is refused.
#[test]
fn edited_metadata_is_refused() {
    let (_, bytes) = dense_bytes();
    let edits: Vec<(&str, &str)> = vec![
        ("epoch", "3"),
        ("step", "2"),
        ("partial_losses", "[0.5,0.5,0.5]"),
        ("train_count", "65"),
        ("history", "[]"),
        ("model", "deep"),
        ("input", "8x8x1 "),
    ];
    for (key, value) in edits {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let mut meta = metadata(bytes);
        meta.insert(key.into(), value.into());
        let edited = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
        let m = message(&edited);
        assert!(
            m.contains("checksum mismatch") || m.contains("unreadable") || m.contains("tensors"),
            "{key}: {m}"
        );
    }
    // A changed lr (the CLI test that diverges on purpose rewrites through the library).
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut meta = metadata(bytes);
    let cfg = meta["config"].replace("0.001", "1e30");
    assert_ne!(cfg, meta["config"]);
    meta.insert("config".into(), cfg);
    let edited = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    assert!(message(&edited).contains("checksum mismatch"));
}

#[test]
fn format_versions() {
    let (ck, bytes) = dense_bytes();
    let newer = resealed(bytes, checkpoint::FORMAT_VERSION + 1, |_| {});
    let m = message(&newer);
    assert!(m.contains("newer than this program's"), "{m}");
    assert!(m.contains("update wgsl-autoencoder"), "{m}");
    let m = message(&resealed(bytes, 2, |m| {
        m.insert("format_version".into(), "0".into());
    }));
    assert!(m.contains("version 0"), "{m}");
    let m = message(&resealed(bytes, 2, |m| {
        m.insert("format_version".into(), "two".into());
    }));
    assert!(m.contains("format_version"), "{m}");
    // Version 1 (before mid-epoch checkpoints) still loads, as an epoch-end checkpoint.
    let ck0 = sample(ModelKind::Dense, dense8(), 0);
    let v1 = resealed(&checkpoint::encode(&ck0).unwrap(), 1, |_| {});
    assert_eq!(checkpoint::decode(&v1, Path::new(P)).unwrap(), ck0);
    // A version-1 file's metadata is outside its checksum, but a step cannot hide in it.
    let got = checkpoint::decode(&resealed(bytes, 1, |_| {}), Path::new(P)).unwrap();
    assert_eq!((got.step, got.partial_losses.len()), (0, 0));
    assert_eq!(got.state, ck.state);
}

/// Inputs that once broke the reader (and a few that nearly could), kept as files:
/// `ok-*` must load, everything else must be refused.
#[test]
fn regression_corpus() {
    let files = corpus("checkpoint");
    assert!(files.len() >= 5, "the corpus is missing: {files:?}");
    for (name, bytes) in &files {
        let (r, largest) = largest_allocation(|| checkpoint::decode(bytes, Path::new(name)));
        assert!(
            largest <= 2 * bytes.len() + 64 * 1024,
            "{name}: {largest} bytes allocated at once"
        );
        match (name.starts_with("ok-"), r) {
            (true, Ok(_)) | (false, Err(Error::Checkpoint { .. })) => {}
            (_, r) => panic!("{name}: {:?}", r.map(|_| "loaded")),
        }
    }
}

/// Writes the corpus's generated files (run with `--ignored` after a reader fix; the files
/// are committed).
#[test]
#[ignore]
fn write_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, bytes) = dense_bytes();
    let w = |name: &str, b: &[u8]| std::fs::write(dir.join(name), b).unwrap();
    w("ok-dense-8x8-step3.safetensors", bytes);
    w(
        "ok-v1-dense-8x8.safetensors",
        &resealed(
            &checkpoint::encode(&sample(ModelKind::Dense, dense8(), 0)).unwrap(),
            1,
            |_| {},
        ),
    );
    // Found by fuzz_metadata (its seed is in tests/regressions/proptest/): a dense model's
    // tensor names do not depend on its input, so a version-1 file (metadata outside the
    // checksum) claiming 28x28 for 8x8 tensors passed the name check, and the reader sized
    // its three buffers from the claim (the shapes were checked only while copying).
    w(
        "v1-input-28x28-on-8x8-tensors.safetensors",
        &resealed(bytes, 1, |m| {
            m.insert("input".into(), "28x28x1".into());
        }),
    );
    // The same, claiming 10^10 pixels: three 2.5 TB buffers.
    w(
        "v1-input-larger-than-the-file.safetensors",
        &resealed(bytes, 1, |m| {
            m.insert("input".into(), "100000x100000x1".into());
        }),
    );
    // The input's element count overflows u64 (`Features::len`: a panic where overflow is
    // checked, a wrong size where not).
    w(
        "v1-input-overflows.safetensors",
        &resealed(bytes, 1, |m| {
            m.insert("input".into(), "4294967295x4294967295x4294967295".into());
        }),
    );
    w(
        "v1-input-zero.safetensors",
        &resealed(bytes, 1, |m| {
            m.insert("input".into(), "0x8x1".into());
        }),
    );
    w(
        "v2-step-without-losses.safetensors",
        &resealed(bytes, 2, |m| {
            m.insert("step".into(), "18446744073709551615".into());
        }),
    );
    w(
        "v2-deeply-nested-history.safetensors",
        &resealed(bytes, 2, |m| {
            m.insert("history".into(), "[".repeat(100_000));
        }),
    );
    w(
        "v2-newer-version.safetensors",
        &resealed(bytes, checkpoint::FORMAT_VERSION + 1, |_| {}),
    );
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    w("header-length-u64-max.bin", &huge);
    let mut n = 100_000_000u64.to_le_bytes().to_vec();
    n.extend(b"{\"a\":");
    w("header-length-beyond-file.bin", &n);
    w("empty.bin", b"");
    w("truncated-dense-8x8.safetensors", &bytes[..bytes.len() / 2]);
}

// ---- proptest ------------------------------------------------------------------------------

/// Applies `ms`, half of the positions in the header (where the structure is).
fn mutate(base: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let header = (u64::from_le_bytes(base[..8].try_into().unwrap()) as usize).saturating_add(8);
    fuzz_support::mutate(base, ms, header)
}

/// JSON-ish text for metadata values: valid values, numbers at the edges, and garbage.
fn meta_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(h, w, c)| format!("{h}x{w}x{c}")),
        (0u32..64, 0u32..64, 0u32..3).prop_map(|(h, w, c)| format!("{h}x{w}x{c}")),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("28x28x1".to_string()),
        Just("dense".to_string()),
        Just("conv".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        "[\\[\\]{}\":,0-9a-z.eE+-]{0,40}",
        ".{0,40}",
    ]
}

fn keys() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "format",
        "format_version",
        "model",
        "input",
        "train_count",
        "epoch",
        "config",
        "history",
        "step",
        "partial_losses",
    ])
}

proptest! {
    #![proptest_config(config(30000, 0xC0FFEE, "fuzz_checkpoint_random"))]

    /// Random bytes, with and without a plausible header length in front.
    #[test]
    fn fuzz_random_bytes(mut b in prop::collection::vec(any::<u8>(), 0..2048), framed in any::<bool>()) {
        if framed && b.len() > 8 {
            let n = (b.len() - 8) as u64;
            b[..8].copy_from_slice(&n.to_le_bytes());
            b[8] = b'{';
        }
        refused_or_identical(&b, None);
    }
}

proptest! {
    #![proptest_config(config(20000, 0xBADC0DE, "fuzz_checkpoint_mutated"))]

    /// A real checkpoint with 1 to 6 mutations: format 2 (everything checksummed: what loads
    /// is the original), or format 1, whose checksum covers only the tensors (what loads has
    /// the original's weights, moments and step count; its metadata may differ, and `train`
    /// still checks model, input and dataset against the run).
    #[test]
    fn fuzz_mutated(v1 in any::<bool>(), ms in prop::collection::vec(mutation(), 1..6)) {
        let (ck, bytes) = dense_bytes();
        if v1 {
            let b = mutate(&resealed(bytes, 1, |_| {}), &ms);
            refused_or(&b, |got| {
                assert_eq!(
                    (&got.state.params, &got.state.adam_m, &got.state.adam_v),
                    (&ck.state.params, &ck.state.adam_m, &ck.state.adam_v)
                );
                assert_eq!(got.state.iterations, ck.state.iterations);
                assert_eq!((got.step, got.partial_losses.len()), (0, 0));
            });
        } else {
            refused_or_identical(&mutate(bytes, &ms), Some(ck));
        }
    }
}

proptest! {
    #![proptest_config(config(10000, 0xC0DE5, "fuzz_checkpoint_corpus"))]

    /// The committed corpus as seeds: any file, 1 to 8 mutations. Whatever loads is the seed
    /// file's checkpoint when that one is a format-2 checkpoint.
    #[test]
    fn fuzz_corpus_mutations(pick in any::<prop::sample::Index>(), ms in prop::collection::vec(mutation(), 1..8)) {
        static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
        let seeds = SEEDS.get_or_init(|| corpus("checkpoint"));
        let (_, base) = pick.get(seeds);
        let b = if base.len() >= 8 { mutate(base, &ms) } else { base.clone() };
        let original = checkpoint::decode(base, Path::new(P)).ok();
        refused_or(&b, |got| {
            if let Some(o) = original.as_ref().filter(|o| o.step > 0) {
                assert!(got == o, "a mutated format-2 checkpoint loaded as another");
            }
        });
    }
}

proptest! {
    #![proptest_config(config(10000, 0x5EA1, "fuzz_checkpoint_metadata"))]

    /// Hostile metadata behind a valid checksum (format 1 leaves metadata out of it; format 2
    /// resealed as the program would): any value in any key, or a key removed. Whatever
    /// loads must be self-consistent.
    #[test]
    fn fuzz_metadata(
        version in 1u32..=2,
        edits in prop::collection::vec((keys(), prop::option::weighted(0.9, meta_value())), 1..4),
    ) {
        let (_, bytes) = dense_bytes();
        let b = resealed(bytes, version, |m| {
            for (k, v) in edits {
                match v {
                    Some(v) => m.insert(k.to_string(), v),
                    None => m.remove(k),
                };
            }
        });
        let (r, largest) = largest_allocation(|| checkpoint::decode(&b, Path::new(P)));
        prop_assert!(largest <= 2 * b.len() + 64 * 1024, "{largest} bytes at once");
        if let Ok(ck) = r {
            let model = ck.model().unwrap();
            prop_assert_eq!(ck.state.params.len() as u64, model.param_len);
            prop_assert_eq!(ck.partial_losses.len(), ck.step);
        }
    }
}
