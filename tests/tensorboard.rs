//! The TensorBoard logs of a run, read back with a reader written here (TFRecord framing with
//! both CRCs checked bit by bit, and the few protobuf fields of `Event` decoded by hand), not
//! with the library's own code: the tags, steps and values must be what Keras' callback would
//! write and what `metrics.csv` says.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/mod.rs"]
mod common;

// ---- the reader ---------------------------------------------------------------------------

/// CRC-32C (Castagnoli), bit by bit.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The records of a TFRecord file, each checked; the bytes left after the last whole record.
fn tfrecords(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 12 {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(
            len_crc,
            masked(&bytes[at..at + 8]),
            "length CRC of record {}",
            out.len()
        );
        if bytes.len() - at < 12 + len + 4 {
            break;
        }
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(data), "data CRC of record {}", out.len());
        out.push(data.to_vec());
        at += 16 + len;
    }
    (out, bytes.len() - at)
}

/// One protobuf field: its number and its value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Fixed64(u64::from_le_bytes(b[at - 8..at].try_into().unwrap()))
            }
            2 => {
                let len = varint(b, &mut at) as usize;
                at += len;
                Field::Bytes(&b[at - len..at])
            }
            5 => {
                at += 4;
                Field::Fixed32(u32::from_le_bytes(b[at - 4..at].try_into().unwrap()))
            }
            w => panic!("wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

/// What a summary value holds.
#[derive(Debug)]
enum Val {
    Scalar(f32),
    Image {
        width: u64,
        height: u64,
        png: Vec<u8>,
    },
    Histo {
        num: f64,
        counts: Vec<f64>,
    },
}

#[derive(Debug)]
struct Ev {
    step: i64,
    file_version: Option<String>,
    values: Vec<(String, Val)>,
}

fn doubles(f: &Field) -> Vec<f64> {
    match f {
        Field::Bytes(b) => b
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Field::Fixed64(v) => vec![f64::from_bits(*v)],
        _ => panic!("not doubles"),
    }
}

fn value(b: &[u8]) -> (String, Val) {
    let mut tag = String::new();
    let mut val = None;
    for (n, f) in fields(b) {
        match (n, f) {
            (1, Field::Bytes(s)) => tag = String::from_utf8(s.to_vec()).unwrap(),
            (2, Field::Fixed32(v)) => val = Some(Val::Scalar(f32::from_bits(v))),
            (4, Field::Bytes(img)) => {
                let (mut width, mut height, mut png) = (0, 0, Vec::new());
                for (n, f) in fields(img) {
                    match (n, f) {
                        (1, Field::Varint(v)) => height = v,
                        (2, Field::Varint(v)) => width = v,
                        (4, Field::Bytes(p)) => png = p.to_vec(),
                        _ => {}
                    }
                }
                val = Some(Val::Image { width, height, png });
            }
            (5, Field::Bytes(h)) => {
                let (mut num, mut counts) = (0.0, Vec::new());
                for (n, f) in fields(h) {
                    match n {
                        3 => num = doubles(&f)[0],
                        7 => counts.extend(doubles(&f)),
                        _ => {}
                    }
                }
                val = Some(Val::Histo { num, counts });
            }
            _ => {}
        }
    }
    (tag, val.expect("a value"))
}

fn event(b: &[u8]) -> Ev {
    let mut e = Ev {
        step: 0,
        file_version: None,
        values: Vec::new(),
    };
    for (n, f) in fields(b) {
        match (n, f) {
            (2, Field::Varint(v)) => e.step = v as i64,
            (3, Field::Bytes(s)) => e.file_version = Some(String::from_utf8(s.to_vec()).unwrap()),
            (5, Field::Bytes(s)) => {
                for (n, f) in fields(s) {
                    if let (1, Field::Bytes(v)) = (n, f) {
                        e.values.push(value(v));
                    }
                }
            }
            _ => {}
        }
    }
    e
}

/// The one event file of `dir`, decoded.
fn events(dir: &Path) -> Vec<Ev> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("tfevents"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (records, left) = tfrecords(&std::fs::read(&files[0]).unwrap());
    assert_eq!(
        left,
        0,
        "a partial record at the end of {}",
        files[0].display()
    );
    records.iter().map(|r| event(r)).collect()
}

/// Every scalar of `tag`: step to value.
fn scalars(evs: &[Ev], tag: &str) -> Vec<(i64, f32)> {
    let mut out = Vec::new();
    for e in evs {
        for (t, v) in &e.values {
            if let (true, Val::Scalar(x)) = (t == tag, v) {
                out.push((e.step, *x));
            }
        }
    }
    out
}

// ---- runs -------------------------------------------------------------------------------

fn bin() -> Command {
    let xdg = std::env::temp_dir().join("wgsl-ae-tb-xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgsl-autoencoder"));
    c.env("XDG_RUNTIME_DIR", &xdg)
        .args(["--adapter", &common::adapter_name()]);
    c
}

/// A dense run on the first 1,024 shipped MNIST images, batch 64 (16 steps per epoch).
fn train(out: &Path, extra: &[&str]) {
    let o = bin()
        .args([
            "--model",
            "dense",
            "--train-limit",
            "1024",
            "--batch-size",
            "64",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `metrics.csv`: epoch to (loss, val_loss).
fn metrics(run: &Path) -> BTreeMap<i64, (f64, f64)> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
}

/// Keras' layout: `train/` and `validation/` each with `epoch_loss` at steps 0..epochs, equal to
/// metrics.csv; the learning rate, images/s and the running loss (at Adam's step count) in
/// train; one reconstructions PNG and a histogram of every weight tensor per epoch.
#[test]
fn the_logs_hold_what_keras_writes_and_metrics_csv_says() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    train(&run, &["--epochs", "3"]);
    let (train_ev, val_ev) = (events(&run.join("train")), events(&run.join("validation")));
    for evs in [&train_ev, &val_ev] {
        assert_eq!(evs[0].file_version.as_deref(), Some("brain.Event:2"));
    }
    let m = metrics(&run);
    let close = |a: f32, b: f64| (a as f64 - b).abs() <= 5e-7 + 1e-6 * b.abs();
    let loss = scalars(&train_ev, "epoch_loss");
    let val = scalars(&val_ev, "epoch_loss");
    assert_eq!(loss.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(val.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2]);
    for ((step, l), (_, v)) in loss.iter().zip(&val) {
        let (want_l, want_v) = m[&(step + 1)];
        assert!(close(*l, want_l), "epoch {step}: {l} vs {want_l}");
        assert!(close(*v, want_v), "epoch {step}: {v} vs {want_v}");
    }
    let lr = scalars(&train_ev, "epoch_learning_rate");
    assert!(
        lr.len() == 3 && lr.iter().all(|(_, v)| (*v - 1e-3).abs() < 1e-9),
        "{lr:?}"
    );
    let speed = scalars(&train_ev, "epoch_images_per_second");
    assert!(
        speed.len() == 3 && speed.iter().all(|(_, v)| *v > 0.0),
        "{speed:?}"
    );
    // The running loss: strictly increasing steps within the 192 Adam steps, positive values,
    // some in every epoch.
    let batch = scalars(&train_ev, "batch_loss");
    assert!(!batch.is_empty());
    assert!(batch.windows(2).all(|w| w[0].0 < w[1].0), "{batch:?}");
    assert!(
        batch.iter().all(|(s, v)| (1..=48).contains(s) && *v > 0.0),
        "{batch:?}"
    );
    // One image and four histograms (dense/kernel, dense/bias, dense_1/...) per epoch.
    let sizes = [
        ("dense/kernel", 784.0 * 32.0),
        ("dense/bias", 32.0),
        ("dense_1/kernel", 32.0 * 784.0),
        ("dense_1/bias", 784.0),
    ];
    for step in 0..3 {
        let e = train_ev
            .iter()
            .find(|e| e.step == step && e.values.iter().any(|v| v.0 == "epoch_loss"))
            .unwrap();
        let image = e.values.iter().find(|v| v.0 == "reconstructions").unwrap();
        match &image.1 {
            Val::Image { width, height, png } => {
                assert!(png.starts_with(b"\x89PNG"));
                // Ten 28x28 digits scaled 4x with 2-pixel gaps, two rows.
                assert_eq!((*width, *height), (10 * 112 + 9 * 2, 2 * 112 + 2));
            }
            other => panic!("{other:?}"),
        }
        for (name, n) in sizes {
            match &e.values.iter().find(|v| v.0 == name).unwrap().1 {
                Val::Histo { num, counts } => {
                    assert_eq!(*num, n, "{name}");
                    assert_eq!(counts.iter().sum::<f64>(), n, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}

/// A resumed run appends to the same files without logging a step twice, also after a kill
/// left events past its checkpoint and a record cut in half: epoch 3 is logged, then its
/// checkpoint is taken back to epoch 2's (as if the process died before it landed) and half a
/// record is left at the end; the resume logs epoch 3 again, once.
#[test]
fn a_resumed_run_logs_every_step_once() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    train(&run, &["--epochs", "2"]);
    let ck = run.join("checkpoint.safetensors");
    let epoch2 = std::fs::read(&ck).unwrap();
    let resume = || {
        let o = bin()
            .arg("--resume")
            .arg(&run)
            .args(["--epochs", "3"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    resume();
    std::fs::write(&ck, &epoch2).unwrap();
    let file = std::fs::read_dir(run.join("train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let (records, _) = tfrecords(&bytes);
    let last = records.last().unwrap().len() + 16;
    let half = bytes[bytes.len() - last..bytes.len() - last / 2].to_vec();
    bytes.extend_from_slice(&half);
    std::fs::write(&file, &bytes).unwrap();
    resume();
    for split in ["train", "validation"] {
        let evs = events(&run.join(split));
        let steps: Vec<i64> = scalars(&evs, "epoch_loss").iter().map(|s| s.0).collect();
        assert_eq!(steps, [0, 1, 2], "{split}");
    }
    let batch = scalars(&events(&run.join("train")), "batch_loss");
    assert!(batch.windows(2).all(|w| w[0].0 < w[1].0), "{batch:?}");
}

/// The reader stops at a record cut in half: everything before it reads.
#[test]
fn a_file_cut_mid_record_reads_up_to_the_last_whole_record() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    train(&run, &["--epochs", "1"]);
    let file = std::fs::read_dir(run.join("validation"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let (whole, left) = tfrecords(&bytes);
    assert_eq!((whole.len(), left), (2, 0));
    let cut = &bytes[..bytes.len() - 7];
    let (records, left) = tfrecords(cut);
    assert_eq!(records.len(), 1);
    assert_eq!(left, whole[1].len() + 16 - 7);
    assert_eq!(
        event(&records[0]).file_version.as_deref(),
        Some("brain.Event:2")
    );
}

#[test]
fn no_tensorboard_writes_no_logs() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    train(&run, &["--epochs", "1", "--no-tensorboard"]);
    assert!(!run.join("train").exists() && !run.join("validation").exists());
    assert!(run.join("metrics.csv").is_file());
}

#[test]
fn the_reader_checks_crcs() {
    // Known CRC-32C values (RFC 3720's test vector: 32 zero bytes).
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}
