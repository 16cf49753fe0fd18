//! eval, decode and an output folder that cannot be written, refused with the reason.
use super::*;

#[test]
fn cli_eval_missing_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(t.path().join("missing.safetensors"))
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).fails_with(&["eval failed", "missing.safetensors", "no such file"]);
    assert_eq!(files(t.path()).len(), 4, "{:?}", files(t.path()));
}

#[test]
fn cli_decode_codes_of_the_wrong_shape() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let src = dense_run(t.path(), &data, "src");
    // A [3, 5] f32 array: the dense model's codes are 32 values.
    let codes = t.path().join("codes.npy");
    let mut npy = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[3, 5])
            .writer(&mut npy)
            .begin_nd()
            .unwrap();
        w.extend((0..15).map(|i| i as f32)).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&codes, npy).unwrap();
    let grid = t.path().join("grid.png");
    let mut c = cli();
    c.args(["decode", "--checkpoint"])
        .arg(&src)
        .arg("--codes")
        .arg(&codes)
        .arg("--out")
        .arg(&grid);
    run_cmd(&mut c).fails_with(&["codes.npy", "[3, 5]", "32 values", "--codes", "encode"]);
    assert!(!grid.exists());
    // Not a .npy at all.
    std::fs::write(&codes, b"not numpy").unwrap();
    run_cmd(&mut c).fails_with(&["codes.npy", "not a .npy file"]);
    assert!(!grid.exists());
    assert_no_stray_files(t.path());
}

#[test]
fn cli_out_folder_cannot_be_written() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = ["--model", "dense", "--epochs", "1", "--batch-size", "16"];
    let forbidden = Path::new("/proc/forbidden");
    train(&data, forbidden, &args).fails_with(&["/proc/forbidden", "cannot be written", "--out"]);
    assert!(!forbidden.exists());
    // Under a regular file.
    let file = t.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("run");
    train(&data, &under, &args).fails_with(&["a-file", "cannot be written", "--out"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert_no_stray_files(t.path());
}
