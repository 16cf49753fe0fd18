//! The happy path: a whole run on the shipped MNIST, its Keras-style lines and run folder;
//! train, profile and bench-kernels.
use super::*;

/// `epoch 1/2 - 7.6s - loss: 0.6920 - val_loss: 0.6878 - run ETA 8s` -> (loss, val_loss).
/// Every epoch but the last ends with the run's ETA (`45s`, `3m24s`, `2h05m`).
#[track_caller]
fn keras_line(line: &str, epoch: usize, epochs: usize) -> (f64, f64) {
    let parts: Vec<&str> = line.split(" - ").collect();
    assert_eq!(parts.len(), if epoch < epochs { 5 } else { 4 }, "{line}");
    if let Some(eta) = parts.get(4) {
        let t = eta.strip_prefix("run ETA ").expect(line);
        assert!(is_duration(t), "{line}: run ETA as 45s, 3m24s or 2h05m");
    }
    assert_eq!(parts[0], format!("epoch {epoch}/{epochs}"), "{line}");
    let secs = parts[1].strip_suffix('s').expect(line);
    assert!(secs.parse::<f64>().is_ok() && secs.contains('.'), "{line}");
    let value = |p: &str, key: &str| -> f64 {
        let v = p.strip_prefix(key).expect(line);
        assert!(v.starts_with("0.") && v.len() == 6, "{line}: 4 decimals");
        v.parse().unwrap()
    };
    (value(parts[2], "loss: "), value(parts[3], "val_loss: "))
}

/// `45s`, `3m24s` or `2h05m`.
fn is_duration(t: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let two = |s: &str, unit: char| s.len() == 3 && s.ends_with(unit) && num(&s[..2]);
    if let Some((h, m)) = t.split_once('h') {
        num(h) && two(m, 'm')
    } else if let Some((m, s)) = t.split_once('m') {
        num(m) && two(s, 's')
    } else {
        t.strip_suffix('s').is_some_and(num)
    }
}

fn epoch_lines(stdout: &str, epochs: usize) -> Vec<(f64, f64)> {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(lines.len(), epochs, "{stdout}");
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| keras_line(l, i + 1, epochs))
        .collect()
}

#[test]
fn cli_happy_path() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run");
    let r = run(&[
        "--model".as_ref(),
        "dense".as_ref(),
        "--train-limit".as_ref(),
        "512".as_ref(),
        "--epochs".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    r.ok();
    assert!(
        r.stdout
            .contains("dense on 512 training and 10000 test images, 2 steps per epoch"),
        "{}",
        r.stdout
    );
    let losses = epoch_lines(&r.stdout, 2);
    for f in [
        "config.json",
        "metrics.csv",
        "checkpoint.safetensors",
        "best.safetensors",
        "reconstructions.png",
        "loss.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing: {:?}", files(&dir));
    }
    assert_no_stray_files(&dir);
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("epoch,loss,val_loss"), "{csv}");
    for (row, (loss, val)) in rows[1..].iter().zip(&losses) {
        let v: Vec<f64> = row
            .split(',')
            .skip(1)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        assert!(
            (v[0] - loss).abs() <= 5e-5 && (v[1] - val).abs() <= 5e-5,
            "{row}"
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["model"], "dense");
    assert_eq!(config["train_images"], 512);

    // eval: --adapter may come before the command (cli() puts it there) or after it.
    let e = run_cmd(cli().args(["eval", "--checkpoint"]).arg(&dir));
    e.ok();
    let want = format!("dense model, epoch 2: val_loss {:.4}", losses[1].1);
    assert!(e.stdout.contains(&want), "{want} not in {}", e.stdout);
    let mut c = bare();
    c.args(["eval", "--checkpoint"])
        .arg(&dir)
        .args(["--adapter", &adapter_name()]);
    assert!(run_cmd(&mut c).ok().stdout.contains(&want));

    // encode, then decode what it wrote.
    let codes = t.path().join("codes.npy");
    let en = run_cmd(
        cli()
            .args(["encode", "--checkpoint"])
            .arg(&dir)
            .arg("--out")
            .arg(&codes),
    );
    en.ok();
    assert!(
        en.stdout.contains("wrote 10000 codes of 1x1x32"),
        "{}",
        en.stdout
    );
    let labels = t.path().join("codes.labels.npy");
    for (p, shape) in [(&codes, vec![10000u64, 1, 1, 32]), (&labels, vec![10000])] {
        let npy = npyz::NpyFile::new(std::fs::File::open(p).unwrap()).unwrap();
        assert_eq!(npy.shape(), &shape[..], "{}", p.display());
    }
    let grid = t.path().join("grid.png");
    let de = run_cmd(
        cli()
            .args(["decode", "--checkpoint"])
            .arg(&dir)
            .arg("--codes")
            .arg(&codes)
            .arg("--out")
            .arg(&grid),
    );
    de.ok();
    assert!(de.stdout.contains("decoded 100 codes"), "{}", de.stdout);
    assert!(std::fs::read(&grid).unwrap().starts_with(b"\x89PNG"));

    let dv = run(&["devices"]);
    dv.ok();
    assert!(dv.stdout.starts_with("[0] "), "{}", dv.stdout);
    assert!(dv.stdout.contains("max_storage_buffer_binding_size"));
    assert_no_stray_files(t.path());
}

/// `train` is the default command: the same flags give the same losses (same seed, bit for bit
/// in metrics.csv). On the small dataset, to keep it quick.
#[test]
fn cli_train_subcommand_equals_the_default_command() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = [
        "--model",
        "dense",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--seed",
        "7",
    ];
    let a = t.path().join("default");
    let b = t.path().join("train");
    let ra = train(&data, &a, &args);
    ra.ok();
    let mut c = cli();
    c.arg("train")
        .args(args)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&b);
    let rb = run_cmd(&mut c);
    rb.ok();
    assert_eq!(epoch_lines(&ra.stdout, 2), epoch_lines(&rb.stdout, 2));
    let losses = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    // Training flags before another command would be ignored: refused.
    let mut c = cli();
    c.args(["--model", "dense", "train", "--epochs", "1"]);
    run_cmd(&mut c).fails_with(&["--model", "before the `train` command"]);
}

/// `train --profile` leaves the per-kernel table and a Chrome trace in the run folder.
#[test]
fn cli_train_profile_writes_the_table_and_a_trace() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("run");
    let r = train(
        &data,
        &out,
        &[
            "train",
            "--model",
            "dense",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--profile",
        ],
    );
    r.ok();
    let table = std::fs::read_to_string(out.join("profile.txt")).unwrap();
    // Batch 16: on the GPU set the register-tiled weight and bias gradients (split-K starts at
    // 128), on the CPU set one pass for both.
    let backward = if table.contains("cpu kernels") {
        "dense.backward_params"
    } else {
        "dense.backward_weight"
    };
    for want in [
        "kernel",
        "dense.forward",
        backward,
        "adam.step",
        "ms per step",
    ] {
        assert!(table.contains(want), "profile.txt lacks {want}:\n{table}");
    }
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    // 20 profiled steps of the dense model's dispatches, each a complete event with a duration.
    assert!(events.len() >= 20 * 8, "{} events", events.len());
    for e in events {
        assert_eq!(e["ph"], "X");
        assert!(
            e["dur"].as_f64().unwrap() > 0.0 && e["ts"].as_f64().unwrap() >= 0.0,
            "{e}"
        );
    }
    assert_no_stray_files(&out);
}

/// `bench-kernels` times the step's dispatches under both kernel sets and each of their
/// variants that changes one of the model's dispatches (the GPU set's; the CPU set's
/// `windows`, `textures`, `reuse` and `lanes`), and puts each layer's kernel side by side; a variant's dispatch
/// that runs its set's very code is marked the same, not timed against it. `--kernels SET`
/// times that set and its variants only.
#[test]
fn cli_bench_kernels_times_each_layer_under_both_sets() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let json = t.path().join("kernels.json");
    let mut c = cli();
    c.args([
        "bench-kernels",
        "--model",
        "dense",
        "--batch-size",
        "16",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
    ])
    .arg(&json)
    .arg("--data")
    .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    for want in [
        "gpu µs",
        "gpu+vec4 µs",
        "cpu µs",
        "cpu+windows µs",
        "fastest",
        "dense.forward",
        "adam.step",
        "= gpu",
        "not timed (no dispatch of this model changes): gpu+tiles, gpu+narrow, gpu+single, gpu+quads, cpu+textures, cpu+reuse, cpu+lanes",
    ] {
        assert!(r.stdout.contains(want), "no {want} in:\n{}", r.stdout);
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The dense model has split-K products (its 784-wide layer), which vec4 changes, and no
    // convolution or rows fold for the other variants; on the CPU set its 32-wide layer's
    // kernels read one operand through uniform windows; it has no convolution to read
    // through textures, load a pixel once for several taps or share a row across lanes.
    assert_eq!(
        v["sets"],
        serde_json::json!(["gpu", "gpu+vec4", "cpu", "cpu+windows"])
    );
    assert_eq!(
        v["unchanged"],
        serde_json::json!([
            "gpu+tiles",
            "gpu+narrow",
            "gpu+single",
            "gpu+quads",
            "cpu+textures",
            "cpu+reuse",
            "cpu+lanes"
        ])
    );
    let rows = v["rows"].as_array().unwrap();
    let row = |layer: &str, kernel: &str| {
        rows.iter()
            .find(|r| r["layer"] == layer && r["kernel"] == kernel)
            .unwrap_or_else(|| panic!("no {layer} {kernel} in {rows:?}"))
    };
    // Each set runs each Dense layer's forward: the GPU and CPU sets with their own kernels,
    // timed under both (once per step), the faster one named.
    for layer in ["dense", "dense_1"] {
        let r = row(layer, "dense.forward");
        let per_set = r["per_set"].as_array().unwrap();
        assert_eq!(per_set.len(), 4);
        assert_ne!(per_set[0]["source"], per_set[2]["source"], "{r}");
        assert_ne!(per_set[2]["source"], per_set[3]["source"], "{r}");
        for d in per_set {
            assert_eq!(d["calls_per_step"], 1.0, "{r}");
            assert!(d["us_per_step"].as_f64().unwrap() > 0.0, "{r}");
        }
        assert_eq!(r["same_kernel"], false);
        assert!(
            ["gpu", "gpu+vec4", "cpu", "cpu+windows"].contains(&r["fastest"].as_str().unwrap()),
            "{r}"
        );
    }
    // vec4 changes the first layer's split-K forward (784 features), not the second's
    // register-tiled one (32): there its column is the GPU set's code, and never the fastest.
    let first = row("dense", "dense.forward");
    assert_ne!(first["per_set"][0]["source"], first["per_set"][1]["source"]);
    assert!(first["same_as"][1].is_null(), "{first}");
    let second = row("dense_1", "dense.forward");
    assert_eq!(second["same_as"][1], "gpu", "{second}");
    assert_ne!(second["fastest"], "gpu+vec4", "{second}");
    // Each set ran its own kernels: at batch 16 the GPU set's bias gradient is a pass of its
    // own, the CPU set's weight gradient sums it in the same pass.
    let bias = row("dense_1", "dense.backward_bias");
    assert!(
        bias["per_set"][0].is_object() && bias["per_set"][2].is_null(),
        "{bias}"
    );
    assert!(bias["per_set"][3].is_null(), "{bias}");
    let params = row("dense_1", "dense.backward_params");
    assert!(
        params["per_set"][0].is_null() && params["per_set"][2].is_object(),
        "{params}"
    );
    assert!(params["per_set"][3].is_object(), "{params}");
    assert!(bias["fastest"].is_null() && params["fastest"].is_null());
    // The loss's last pass is one kernel on every set: no winner named between equal code.
    let finish = row("loss", "bce.loss_finish");
    assert_eq!(finish["same_kernel"], true, "{finish}");
    assert_eq!(
        finish["same_as"],
        serde_json::json!([null, "gpu", "gpu", "gpu"])
    );
    assert!(finish["fastest"].is_null(), "{finish}");
    for ms in v["kernel_ms_per_step"].as_array().unwrap() {
        assert!(ms.as_f64().unwrap() > 0.0, "{v}");
    }
    // One set: its columns only.
    let mut c = cli();
    c.args([
        "--kernels",
        "cpu",
        "bench-kernels",
        "--model",
        "dense",
        "--batch-size",
        "16",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--json",
    ])
    .arg(&json)
    .arg("--data")
    .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    assert!(!r.stdout.contains("gpu µs"), "{}", r.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["sets"], serde_json::json!(["cpu", "cpu+windows"]));
    assert_eq!(
        v["unchanged"],
        serde_json::json!(["cpu+textures", "cpu+reuse", "cpu+lanes"])
    );
}
