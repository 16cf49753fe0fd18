//! No surprises: output, run folders, resume, full disks.
use super::*;

/// A train command on the small dataset, dense model, that `spawn`s with piped output.
fn dense_cmd(data: &Path, out: &Path, epochs: &str) -> Command {
    let mut c = cli();
    c.args(["--model", "dense", "--epochs", epochs, "--batch-size", "16"])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    c
}

/// A reader of a child's stdout that hands over each line as it comes.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Item 1: a closed stdout (`train | head -1`) or a full one (`> /dev/full`) must not cost the
/// run: it finishes, exit 0, every epoch checkpointed. (Before: a panic, exit 101.)
#[test]
fn cli_closed_or_full_stdout_does_not_cost_the_run() {
    use std::process::Stdio;
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("closed");
    let mut child = dense_cmd(&data, &out, "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.state.epoch, 3);

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    let Ok(full) = full else {
        eprintln!("no /dev/full here: its half of the test is skipped");
        return;
    };
    let out = t.path().join("full");
    let o = dense_cmd(&data, &out, "2").stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.join("metrics.csv").is_file());
}

/// Item 2: a run folder belongs to one run. Default names are unique even when the name of
/// this second is taken (made here for the next 60 seconds, each with a file the run must not
/// touch); `--out` onto a non-empty folder is refused, files untouched, unless `--overwrite`,
/// which empties it first; a live run's lock keeps a second process out of its folder.
#[test]
fn cli_runs_never_clobber_each_other() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let runs = t.path().join("runs");
    let now = chrono::Local::now();
    for s in 0..60 {
        let name = (now + chrono::Duration::seconds(s)).format("%Y-%m-%d_%H-%M-%S");
        let d = runs.join(name.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("mine.txt"), b"another run's").unwrap();
    }
    let mut c = cli();
    c.current_dir(t.path())
        .args([
            "--model",
            "dense",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--data",
        ])
        .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    let made: Vec<String> = files(&runs)
        .into_iter()
        .filter(|f| f.ends_with("checkpoint.safetensors"))
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].contains("-2/"), "{made:?}");
    for f in files(&runs).into_iter().filter(|f| f.ends_with("mine.txt")) {
        let dir = runs.join(&f).parent().unwrap().to_path_buf();
        assert_eq!(files(&dir), ["mine.txt"], "{f}");
    }

    // --out onto a finished run's folder: refused, nothing changed.
    let done = dense_run(t.path(), &data, "done");
    let before = std::fs::read(done.join("checkpoint.safetensors")).unwrap();
    train(&data, &done, &["--model", "deep", "--epochs", "1"]).fails_with(&[
        "already holds files",
        "--overwrite",
        "--resume",
    ]);
    assert_eq!(
        std::fs::read(done.join("checkpoint.safetensors")).unwrap(),
        before
    );
    // --overwrite empties it first: only the new run's files remain.
    std::fs::write(done.join("old-notes.txt"), b"x").unwrap();
    train(
        &data,
        &done,
        &[
            "--model",
            "deep",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--overwrite",
        ],
    )
    .ok();
    assert!(!done.join("old-notes.txt").exists());
    let ck = wgsl_autoencoder::checkpoint::load(&done.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.config.model.name(), "deep");

    // A live run holds its folder: a second process is refused, the first finishes.
    let live = t.path().join("live");
    let mut first = dense_cmd(&data, &live, "40")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut first);
    let started = Instant::now();
    while !lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap()
        .starts_with("epoch 1/")
    {
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    train(
        &data,
        &live,
        &["--model", "dense", "--epochs", "1", "--overwrite"],
    )
    .fails_with(&["another run (process", "is using the run folder"]);
    let _ = first.kill();
    first.wait().unwrap();
}

/// Item 3: a resume keeps the run's settings (a changed --batch-size, --seed, --noise or
/// --train-limit is refused by name; --epochs and --lr may change, recorded), takes the
/// dataset from the checkpoint's record (refusing changed files), and resuming an earlier
/// checkpoint branches into a new folder instead of truncating the run's later history.
#[test]
fn cli_resume_keeps_the_run_and_its_history() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    train(
        &data,
        &out,
        &["--model", "dense", "--epochs", "2", "--batch-size", "16"],
    )
    .ok();
    let resume = |extra: &[&str]| {
        let mut c = cli();
        c.arg("--resume").arg(&out).args(extra);
        run_cmd(&mut c)
    };
    for (flag, value) in [
        ("--batch-size", "8"),
        ("--seed", "7"),
        ("--noise", "0.5"),
        ("--train-limit", "32"),
    ] {
        resume(&["--epochs", "3", flag, value]).fails_with(&[flag, "differs from the run's"]);
    }
    // No --data: the recorded dataset (the small one, not the shipped MNIST) is used.
    let r = resume(&["--epochs", "3", "--lr", "5e-4"]);
    r.ok();
    assert!(r.stdout.contains("on 64 training"), "{}", r.stdout);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let sessions = config["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{config}");
    assert!((sessions[1]["lr_changed_from"].as_f64().unwrap() - 1e-3).abs() < 1e-9);
    assert!((config["config"]["adam"]["lr"].as_f64().unwrap() - 5e-4).abs() < 1e-9);
    // The recorded files changed: refused.
    let train_file = data.join(TRAIN_IMAGES);
    let mut bytes = std::fs::read(&train_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&train_file, &bytes).unwrap();
    resume(&["--epochs", "4"]).fails_with(&[TRAIN_IMAGES, "not the file the run trained on"]);
    bytes[last] ^= 0xff;
    std::fs::write(&train_file, &bytes).unwrap();

    // Resume from an earlier checkpoint: a new folder; the run keeps its 3 epochs.
    let mut ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    ck.state.epoch = 1;
    ck.history.truncate(1);
    wgsl_autoencoder::checkpoint::save(&out.join("best.safetensors"), &ck).unwrap();
    let metrics_before = std::fs::read(out.join("metrics.csv")).unwrap();
    let mut c = cli();
    c.current_dir(t.path())
        .arg("--resume")
        .arg(out.join("best.safetensors"))
        .args(["--epochs", "2"]);
    let r = run_cmd(&mut c);
    r.ok();
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).unwrap(),
        metrics_before
    );
    let kept = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(kept.state.epoch, 3);
    let branch: Vec<String> = files(&t.path().join("runs"))
        .into_iter()
        .filter(|f| f.ends_with("config.json"))
        .collect();
    assert_eq!(branch.len(), 1, "{branch:?}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("runs").join(&branch[0])).unwrap(),
    )
    .unwrap();
    let from = &config["sessions"][0]["from"];
    assert_eq!(from["branched"], true, "{config}");
    assert_eq!(from["epoch"], 1, "{config}");
}

/// Item 4: with the disk full, the run stops at the first failed write (within the next
/// epoch, not after all of them) and names the last checkpoint that landed. A tmpfs just
/// big enough for one epoch's files (two checkpoints and change) is the full disk; mounting
/// it needs root, as CI runs.
#[test]
fn cli_a_full_disk_stops_the_run_at_the_first_failed_write() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let probe = dense_run(t.path(), &data, "probe");
    let ck = std::fs::metadata(probe.join("checkpoint.safetensors"))
        .unwrap()
        .len();
    let disk = t.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let size = format!("size={}k", (2 * ck + ck / 2) / 1024);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // SAFETY: geteuid has no preconditions.
        assert_ne!(
            unsafe { libc::geteuid() },
            0,
            "root could not mount a tmpfs"
        );
        eprintln!("not root: no tmpfs to fill, the full-disk test is skipped");
        return;
    }
    let out = disk.join("run");
    let r = run_cmd(&mut dense_cmd(&data, &out, "6"));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap_or_default();
    let landed = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors"));
    let _ = Command::new("umount").arg(&disk).status();
    r.fails_with(&[
        "No space left on device",
        "stopped at the first failed write",
        "last good checkpoint",
        "checkpoint.safetensors (epoch 1)",
    ]);
    assert!(
        !r.stdout.contains("epoch 3/6"),
        "trained on past the failure:\n{}",
        r.stdout
    );
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    assert_eq!(landed.unwrap().state.epoch, 1);
}

/// Item 5, each found by a real try.
#[test]
fn cli_small_surprises() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let run_dir = dense_run(t.path(), &data, "src");

    // A Fortran-order .npy of codes decodes as its C-order twin does.
    let codes = t.path().join("codes.npy");
    let mut c = cli();
    c.args(["encode", "--checkpoint"])
        .arg(&run_dir)
        .arg("--out")
        .arg(&codes)
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).ok();
    let npy = npyz::NpyFile::new(std::fs::File::open(&codes).unwrap()).unwrap();
    let shape = npy.shape().to_vec();
    let values: Vec<f32> = npy.into_vec().unwrap();
    let (rows, cols) = (shape[0] as usize, values.len() / shape[0] as usize);
    let column_major: Vec<f32> = (0..cols)
        .flat_map(|j| (0..rows).map(move |i| (i, j)))
        .map(|(i, j)| values[i * cols + j])
        .collect();
    let fortran = t.path().join("fortran.npy");
    {
        use npyz::WriterBuilder;
        let mut f = std::fs::File::create(&fortran).unwrap();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[rows as u64, cols as u64])
            .order(npyz::Order::Fortran)
            .writer(&mut f)
            .begin_nd()
            .unwrap();
        w.extend(column_major).unwrap();
        w.finish().unwrap();
    }
    let decode = |codes: &Path, png: &Path| {
        let mut c = cli();
        c.args(["decode", "--checkpoint"])
            .arg(&run_dir)
            .arg("--codes")
            .arg(codes)
            .arg("--out")
            .arg(png);
        run_cmd(&mut c).ok();
        std::fs::read(png).unwrap()
    };
    let c_png = decode(&codes, &t.path().join("c.png"));
    let f_png = decode(&fortran, &t.path().join("f.png"));
    assert!(
        f_png == c_png,
        "the Fortran-order codes decode to another picture"
    );

    // A checkpoint whose weights are NaN: eval fails instead of printing NaN with exit 0.
    let mut ck =
        wgsl_autoencoder::checkpoint::load(&run_dir.join("checkpoint.safetensors")).unwrap();
    ck.state.params.iter_mut().for_each(|w| *w = f32::NAN);
    let nan = t.path().join("nan.safetensors");
    wgsl_autoencoder::checkpoint::save(&nan, &ck).unwrap();
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(&nan)
        .arg("--data")
        .arg(&data);
    run_cmd(&mut c).fails_with(&["NaN", "diverged", "best.safetensors"]);

    // Counts that used to be replaced silently are refused.
    let mut c = cli();
    c.args(["profile", "--model", "dense", "--steps", "0", "--data"])
        .arg(&data);
    run_cmd(&mut c).fails_with(&["--steps must be at least 1"]);
    for epochs in ["0", "1"] {
        let mut c = cli();
        c.args(["bench", "--model", "dense", "--epochs", epochs, "--data"])
            .arg(&data);
        run_cmd(&mut c).fails_with(&["--epochs", "at least 2", "warm-up"]);
    }
    // bench --json onto a folder fails before the benchmark, not after it.
    let mut c = cli();
    c.args(["bench", "--model", "dense", "--epochs", "2", "--json"])
        .arg(t.path())
        .arg("--data")
        .arg(&data);
    let r = run_cmd(&mut c);
    r.fails_with(&["--json", "it is a folder"]);
    assert!(
        !r.stdout.contains("s/epoch"),
        "the benchmark ran first:\n{}",
        r.stdout
    );

    // Dense on 2000x2000 images: the weights outgrow the adapter, whatever the batch.
    let big = small_data(&t.path().join("big"), 2, 1, 2000);
    let r = train(
        &big,
        &t.path().join("big-run"),
        &["--model", "dense", "--batch-size", "1"],
    );
    r.fails_with(&["params", "image size, not the batch"]);
    assert!(!r.stderr.contains("smaller --batch-size"), "{}", r.stderr);

    // Files a run writes get the umask's mode, not 0600.
    let mut c = dense_cmd(&data, &t.path().join("modes"), "1");
    // SAFETY: umask only changes this child's file-creation mask, before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            libc::umask(0o022);
            Ok(())
        });
    }
    run_cmd(&mut c).ok();
    use std::os::unix::fs::PermissionsExt;
    for f in files(&t.path().join("modes")) {
        let mode = std::fs::metadata(t.path().join("modes").join(&f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{f}");
    }

    // No Mesa EGL message that reads as ours when XDG_RUNTIME_DIR is unset.
    let mut c = bare();
    c.env_remove("XDG_RUNTIME_DIR").arg("devices");
    let r = run_cmd(&mut c);
    r.ok();
    assert!(!r.stderr.contains("XDG_RUNTIME_DIR"), "{}", r.stderr);
}

/// Item 5: a gzip file corrupted midway, so that it inflates to more than its header promises
/// before its checksum is reached, is reported as corrupt, not as "trailing garbage". The
/// corruption is found by flipping bytes of a real gzip stream in turn until one inflates long.
#[test]
fn cli_gzip_corrupted_midway_is_corrupt() {
    use flate2::read::MultiGzDecoder;
    use std::io::Read;
    let raw = idx_labels(4000, 9);
    let gz = gzip(&raw);
    let long = (20..gz.len() - 8).find_map(|i| {
        (1..=255u8).find_map(|x| {
            let mut bad = gz.clone();
            bad[i] ^= x;
            let mut out = Vec::new();
            let _ = MultiGzDecoder::new(&bad[..])
                .take(raw.len() as u64 + 1)
                .read_to_end(&mut out);
            (out.len() > raw.len() && out[..8] == raw[..8]).then_some(bad)
        })
    });
    let bad = long.expect("some corruption inflates past the payload");
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    std::fs::remove_file(data.join(TEST_LABELS)).unwrap();
    std::fs::write(data.join(format!("{TEST_LABELS}.gz")), &bad).unwrap();
    let mut c = cli();
    c.args(["eval", "--checkpoint"])
        .arg(dense_run(t.path(), &small(&t.path().join("ok")), "ok-run"))
        .arg("--data")
        .arg(&data);
    let r = run_cmd(&mut c);
    r.fails_with(&["corrupt", "gzip"]);
    assert!(!r.stderr.contains("trailing garbage"), "{}", r.stderr);
}
