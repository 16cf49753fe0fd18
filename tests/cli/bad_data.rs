//! Bad data: a missing folder or file, wrong magic, a truncated payload, mismatched counts,
//! images the model cannot take.
use super::*;

#[test]
fn cli_missing_data_folder() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let gone = t.path().join("no-such-mnist");
    train(&gone, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        "no-such-mnist",
        "folder not found",
        "--data",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_data_folder_missing_a_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    std::fs::remove_file(data.join(TEST_LABELS)).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TEST_LABELS,
        "no such file",
        "--data",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_wrong_magic() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let mut b = idx_images(64, 28, 28, 1);
    b[2] = 0x12;
    std::fs::write(data.join(TRAIN_IMAGES), b).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TRAIN_IMAGES,
        "wrong magic",
        "0x00000803",
        "intact copy",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_truncated_payload() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let b = idx_images(64, 28, 28, 1);
    std::fs::write(data.join(TRAIN_IMAGES), &b[..b.len() - 100]).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TRAIN_IMAGES,
        "truncated",
        "50176",
        "intact copy",
    ]);
    assert_not_created(&out);
    // The same inside a gzip stream: the compressed test images, cut.
    let gz = gzip(&idx_images(32, 28, 28, 3));
    std::fs::write(data.join(TRAIN_IMAGES), idx_images(64, 28, 28, 1)).unwrap();
    std::fs::write(data.join(format!("{TEST_IMAGES}.gz")), &gz[..gz.len() / 2]).unwrap();
    train(&data, &out, &["--model", "dense", "--epochs", "1"])
        .fails_with(&[TEST_IMAGES, "truncated"]);
    assert_not_created(&out);
}

#[test]
fn cli_image_label_count_mismatch() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    std::fs::write(data.join(TRAIN_LABELS), idx_labels(63, 2)).unwrap();
    let out = t.path().join("run");
    train(&data, &out, &["--model", "dense", "--epochs", "1"]).fails_with(&[
        TRAIN_LABELS,
        "64 images",
        "63 labels",
        "must agree",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_conv_needs_28x28_and_dense_takes_8x8() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(&t.path().join("data8"), 64, 32, 8);
    let out = t.path().join("run");
    train(&data, &out, &["--model", "conv", "--epochs", "1"]).fails_with(&[
        "conv model needs 28x28",
        "8x8",
        "--model dense",
        "deep",
    ]);
    assert_not_created(&out);
    // The dense model takes any size.
    let r = train(
        &data,
        &out,
        &["--model", "dense", "--epochs", "1", "--batch-size", "16"],
    );
    r.ok();
    assert!(r.stdout.contains("dense on 64 training and 32 test images"));
    for f in [
        "checkpoint.safetensors",
        "reconstructions.png",
        "metrics.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing: {:?}", files(&out));
    }
    assert_no_stray_files(&out);
}
