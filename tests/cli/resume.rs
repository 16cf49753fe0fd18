//! Resuming from a checkpoint that is missing, truncated, foreign, of another model or
//! damaged.
use super::*;

#[test]
fn cli_resume_missing_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let gone = t.path().join("gone.safetensors");
    train(
        &data,
        &out,
        &["--resume", gone.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&["gone.safetensors", "no such file", "checkpoint"]);
    assert_not_created(&out);
}

#[test]
fn cli_resume_truncated_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    let bytes = std::fs::read(src.join("checkpoint.safetensors")).unwrap();
    let out = t.path().join("run");
    // Cut in the tensors, and cut in the header.
    for (name, len) in [
        ("half.safetensors", bytes.len() / 2),
        ("head.safetensors", 100),
    ] {
        let cut = t.path().join(name);
        std::fs::write(&cut, &bytes[..len]).unwrap();
        train(
            &data,
            &out,
            &["--resume", cut.to_str().unwrap(), "--epochs", "2"],
        )
        .fails_with(&[name, "not a readable safetensors file", "truncated"]);
        assert_not_created(&out);
    }
    // eval says the same.
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(t.path().join("half.safetensors"))
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).fails_with(&["half.safetensors", "truncated"]);
}

#[test]
fn cli_resume_foreign_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    // Random bytes.
    let random = t.path().join("random.safetensors");
    std::fs::write(&random, noise(7, 5000)).unwrap();
    train(
        &data,
        &out,
        &["--resume", random.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&["random.safetensors", "not a readable safetensors file"]);
    // A valid safetensors file without our metadata.
    let values = [1.0f32, 2.0, 3.0, 4.0];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &bytes).unwrap();
    let other = t.path().join("other.safetensors");
    std::fs::write(
        &other,
        safetensors::serialize([("dense/kernel", view)], None).unwrap(),
    )
    .unwrap();
    train(
        &data,
        &out,
        &["--resume", other.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&["other.safetensors", "not a wgsl-autoencoder checkpoint"]);
    assert_not_created(&out);
}

#[test]
fn cli_resume_other_model() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "dense_run");
    let before = std::fs::read(src.join("checkpoint.safetensors")).unwrap();
    let out = t.path().join("run");
    // The checkpoint is a dense model: --model conv is refused, naming both.
    train(
        &data,
        &out,
        &[
            "--resume",
            src.to_str().unwrap(),
            "--model",
            "conv",
            "--epochs",
            "2",
        ],
    )
    .fails_with(&["dense model", "--model conv", "drop --model", "--resume"]);
    assert_not_created(&out);
    assert_eq!(
        std::fs::read(src.join("checkpoint.safetensors")).unwrap(),
        before
    );
    // Without --model (or with the same one) it continues as the dense model it is.
    for extra in [&[][..], &["--model", "dense"][..]] {
        let args = [
            &["--resume", src.to_str().unwrap(), "--epochs", "2"][..],
            extra,
        ]
        .concat();
        let r = train(&data, &out, &args);
        r.ok();
        assert!(
            r.stdout.contains("dense on 64 training") && r.stdout.contains("epoch 2/2 - "),
            "{}",
            r.stdout
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn cli_resume_flipped_byte() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    let mut bytes = std::fs::read(src.join("checkpoint.safetensors")).unwrap();
    // The header is 8 bytes of length then JSON; the tensors follow.
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = 8 + header + (bytes.len() - 8 - header) / 2;
    bytes[at] ^= 0x40;
    let flipped = t.path().join("flipped.safetensors");
    std::fs::write(&flipped, &bytes).unwrap();
    let out = t.path().join("run");
    train(
        &data,
        &out,
        &["--resume", flipped.to_str().unwrap(), "--epochs", "2"],
    )
    .fails_with(&[
        "flipped.safetensors",
        "checksum mismatch",
        "another checkpoint",
    ]);
    assert_not_created(&out);
}
