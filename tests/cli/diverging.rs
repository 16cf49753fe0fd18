//! A diverging run: a NaN loss stops it and keeps the last good checkpoint.
use super::*;

/// From the first steps: Adam moves every weight by about --lr, so the second step's loss is
/// NaN. Nothing but the settings is left.
#[test]
fn cli_nan_loss_in_the_first_epoch() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let args = [
        "--model",
        "dense",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "1e30",
    ];
    train(&data, &out, &args).fails_with(&[
        "the loss became",
        "at epoch 1, step 2",
        "No checkpoint had been written yet",
        "smaller --lr",
    ]);
    assert_eq!(files(&out), ["config.json"]);
    // One step per epoch: the training loss of epoch 1 is still finite, its validation loss
    // is not, and such weights are not saved as a checkpoint either.
    std::fs::remove_dir_all(&out).unwrap();
    let one_step = [
        "--model",
        "dense",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "1e30",
    ];
    train(&data, &out, &one_step).fails_with(&[
        "the loss became",
        "at epoch 1, step 1",
        "validation loss",
        "No checkpoint had been written yet",
        "smaller --lr",
    ]);
    assert_eq!(files(&out), ["config.json"]);
}

/// After a good epoch. --lr cannot change on --resume (the checkpoint's settings win), so the
/// good epoch-1 checkpoint is rewritten with lr = 1e30 in its settings (through the library:
/// the checksum covers the settings too); resuming it then diverges in epoch 2, and the
/// epoch-1 files stay as they were.
#[test]
fn cli_nan_loss_keeps_the_last_good_checkpoint() {
    use wgsl_autoencoder::checkpoint;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let dir = dense_run(t.path(), &data, "run");
    let ck = dir.join("checkpoint.safetensors");
    let mut good = checkpoint::load(&ck).unwrap();
    good.config.adam.lr = 1e30;
    let edited = checkpoint::encode(&good).unwrap();
    std::fs::write(&ck, &edited).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let best = std::fs::read(dir.join("best.safetensors")).unwrap();

    let mut c = cli();
    c.arg("--resume")
        .arg(&dir)
        .args(["--epochs", "3", "--data"])
        .arg(&data);
    let r = run_cmd(&mut c);
    r.fails_with(&[
        "the loss became",
        "at epoch 2, step 2",
        &format!("The last good checkpoint is {} (epoch 1)", ck.display()),
        "smaller --lr",
    ]);
    assert!(r.stdout.contains("epochs 2..=3"), "{}", r.stdout);
    assert!(!r.stdout.contains("epoch 2/3 - "), "{}", r.stdout);
    // Nothing of epoch 2 was written.
    assert_eq!(std::fs::read(&ck).unwrap(), edited);
    assert_eq!(std::fs::read(dir.join("best.safetensors")).unwrap(), best);
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.csv")).unwrap(),
        metrics
    );
    assert_no_stray_files(&dir);
    // And the kept checkpoint is a working one.
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(&ck)
        .arg("--data")
        .arg(&data);
    let e = run_cmd(&mut c);
    e.ok();
    assert!(
        e.stdout.contains("dense model, epoch 1: val_loss 0."),
        "{}",
        e.stdout
    );
}
