//! Bad settings: zero or negative numbers, a batch over the adapter's limits, an adapter
//! that is not there.
use super::*;

#[test]
fn cli_batch_size_0() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    train(
        &small(t.path()),
        &out,
        &["--model", "dense", "--batch-size", "0"],
    )
    .fails_with(&["--batch-size", "at least 1"]);
    assert_not_created(&out);
}

#[test]
fn cli_epochs_0() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    train(
        &small(t.path()),
        &out,
        &["--model", "dense", "--epochs", "0"],
    )
    .fails_with(&["--epochs", "at least 1"]);
    assert_not_created(&out);
}

#[test]
fn cli_negative_lr_and_noise() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    // `--lr -1` (a negative number after the flag) as well as `--lr=-1`.
    for args in [["--lr", "-1"], ["--lr=-1", "--epochs=1"], ["--lr", "0"]] {
        train(
            &data,
            &out,
            &[&["--model", "dense"][..], &args[..]].concat(),
        )
        .fails_with(&["--lr", "positive"]);
    }
    train(&data, &out, &["--model", "dense", "--lr", "NaN"]).fails_with(&["--lr", "positive"]);
    train(&data, &out, &["--model", "dense", "--noise", "-1"]).fails_with(&["--noise", ">= 0"]);
    assert_not_created(&out);
}

#[test]
fn cli_train_limit_0() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    train(
        &small(t.path()),
        &out,
        &["--model", "dense", "--train-limit", "0"],
    )
    .fails_with(&["--train-limit", "at least 1"]);
    assert_not_created(&out);
}

/// The batch is capped at the dataset, so the full MNIST is what makes 100,000,000 too big:
/// 60,000 images of 784 floats (188 MB) exceed lavapipe's 128 MiB binding limit. The check
/// happens before any such buffer is created, so this takes about as long as reading MNIST.
#[test]
fn cli_batch_size_over_the_adapter_limits() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let start = Instant::now();
    let r = run(&[
        "--model".as_ref(),
        "dense".as_ref(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--batch-size".as_ref(),
        "100000000".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    r.fails_with(&["--batch-size", "smaller", "allows"]);
    assert!(
        r.stderr.contains("max_storage_buffer_binding_size")
            || r.stderr.contains("max_buffer_size"),
        "the message should name the limit: {}",
        r.stderr
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}: the limit must be checked before anything is allocated",
        start.elapsed()
    );
    assert_not_created(&out);
}

#[test]
fn cli_adapter_nosuchgpu() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let mut c = bare();
    c.args([
        "--adapter",
        "nosuchgpu",
        "--model",
        "dense",
        "--epochs",
        "1",
    ])
    .arg("--data")
    .arg(&data)
    .arg("--out")
    .arg(&out);
    run_cmd(&mut c).fails_with(&[
        "nosuchgpu",
        "Adapters seen",
        "--adapter auto",
        "--adapter cpu",
    ]);
    assert_not_created(&out);
}

#[test]
fn cli_adapter_99() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let mut c = bare();
    c.args(["--adapter", "99", "--model", "dense", "--epochs", "1"])
        .arg("--data")
        .arg(small(t.path()))
        .arg("--out")
        .arg(&out);
    let r = run_cmd(&mut c);
    r.fails_with(&[
        "99",
        "Adapters seen",
        "[0] ",
        "--adapter auto",
        "--adapter cpu",
    ]);
    assert_not_created(&out);
    // `devices` needs no adapter to be chosen.
    run_cmd(bare().args(["devices", "--adapter", "99"])).ok();
}
