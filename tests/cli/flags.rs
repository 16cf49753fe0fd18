//! The kernel-set and folds flags: checked, recorded in config.json, printed; `tune`'s
//! choices per layer.
use super::*;

/// `--kernels`: an unknown set is refused before anything is created, naming the choices; a
/// run with a set forced records it in `config.json` and prints it, and each set trains.
#[test]
fn cli_kernels_flag_is_checked_recorded_and_printed() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("bogus");
    train(
        &data,
        &out,
        &["--kernels", "fast", "--model", "dense", "--epochs", "1"],
    )
    .fails_with(&["fast", "auto, gpu or cpu"]);
    assert_not_created(&out);
    for set in ["gpu", "cpu"] {
        let out = t.path().join(set);
        let r = train(
            &data,
            &out,
            &[
                "--kernels",
                set,
                "--model",
                "dense",
                "--epochs",
                "1",
                "--batch-size",
                "16",
            ],
        );
        r.ok();
        assert!(
            r.stdout.contains(&format!("{set} kernels")),
            "the run should say it uses the {set} kernels:\n{}",
            r.stdout
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["sessions"][0]["kernels"], set, "{config}");
    }
}

/// `--folds`: an unknown choice is refused before anything is created, naming the choices;
/// a run records the folds it used in `config.json` and prints them (`auto`: all on the GPU
/// set, `loss` and `windows` on the CPU set); and `profile` counts the dispatches they save (44 -> 16 for the
/// conv model).
#[test]
fn cli_folds_flag_is_checked_recorded_and_printed() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let out = t.path().join("bogus");
    train(&data, &out, &["--folds", "pool,some", "--epochs", "1"]).fails_with(&[
        "'some'",
        "upsample, pool, reduces, backward, loss, tiles, finish, rows, vec4, grads, narrow, single, gather, quads, adam, windows, textures, reuse and lanes",
    ]);
    assert_not_created(&out);
    for (kernels, folds, recorded) in [
        // On a CPU adapter `auto` leaves out rows, slower there.
        (
            "gpu",
            "auto",
            "upsample,pool,reduces,backward,loss,tiles,finish,vec4,single",
        ),
        ("cpu", "auto", "loss,windows,textures,reuse,lanes"),
        ("gpu", "reduces,pool", "pool,reduces"),
    ] {
        let out = t.path().join(format!("{kernels}-{folds}"));
        let args = [
            "--kernels",
            kernels,
            "--folds",
            folds,
            "--epochs",
            "1",
            "--batch-size",
            "32",
        ];
        let r = train(&data, &out, &args);
        r.ok();
        assert!(
            r.stdout
                .contains(&format!("{kernels} kernels, folds: {recorded}")),
            "the run should say it folds {recorded}:\n{}",
            r.stdout
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let folds = &config["sessions"][0]["folds"];
        for kind in FoldSet::NAMES {
            let want = recorded == "all" || recorded.split(',').any(|f| f == kind);
            assert_eq!(folds[kind], want, "{kind}: {config}");
        }
    }
    let counts = [
        ("none", 44),
        ("upsample", 38),
        ("pool", 38),
        ("reduces", 38),
        ("backward", 38),
        ("loss", 43),
        ("tiles", 44),
        ("finish", 43),
        ("rows", 44),
        ("narrow", 44),
        ("single", 44),
        ("gather", 43),
        ("quads", 44),
        ("adam", 44),
        ("windows", 44),
        ("reduces,adam", 36),
        ("all", 16),
    ];
    for (folds, dispatches) in counts {
        let r = run(&[
            "profile",
            "--kernels",
            "gpu",
            "--folds",
            folds,
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "8",
            "--data",
            data.to_str().unwrap(),
        ]);
        r.ok();
        assert!(
            r.stdout
                .contains(&format!("{dispatches} dispatches per step")),
            "--folds {folds}:\n{}",
            r.stdout
        );
    }
}

/// `--folds tune` on a conv model: after the search, each conv layer's dispatches are timed
/// with `narrow` and with `tiles` flipped (per dispatch, by timestamps), and a layer faster
/// past the margin keeps its own variants when the whole step with them beats the pick.
/// Whatever the timing chose, `config.json` records every comparison and the layers' own
/// variants consistently with it, the losses and weights are the unfolded run's bit for bit,
/// and a resumed run under `auto` keeps the layers' variants too.
#[test]
fn cli_folds_tune_picks_conv_variants_per_layer() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = |folds: &'static str| {
        [
            "--model",
            "conv",
            "--kernels",
            "gpu",
            "--folds",
            folds,
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--train-limit",
            "6",
        ]
    };
    let tuned = t.path().join("tuned");
    train(&data, &tuned, &args("tune")).ok();
    let config = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let session = config(&tuned)["sessions"][0].clone();
    let by = &session["folds_by"];
    let folds: FoldSet = serde_json::from_value(session["folds"].clone()).unwrap();
    let layers = by["layers"].as_array().unwrap_or_else(|| panic!("{by}"));
    let convs = [
        "conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_5", "conv2d_6",
    ];
    // Every conv layer compared under each per-layer variant that changes its launches,
    // nothing else: narrow, tiles and vec4 change every layer's; quads those that fold a
    // window (the three pooled layers with the pool fold, the three with an upsampled input
    // with the upsample fold), never conv2d_3's.
    let variants = wgsl_autoencoder::train::tune::PER_LAYER;
    assert_eq!(variants, ["narrow", "tiles", "vec4", "quads"]);
    let windows: Vec<&str> = [(folds.pool, 0..3), (folds.upsample, 4..7)]
        .into_iter()
        .filter(|(on, _)| *on)
        .flat_map(|(_, at)| convs[at].to_vec())
        .collect();
    let compared: std::collections::BTreeSet<(&str, &str)> = layers
        .iter()
        .map(|l| (l["layer"].as_str().unwrap(), l["variant"].as_str().unwrap()))
        .collect();
    let expected: std::collections::BTreeSet<(&str, &str)> = variants
        .iter()
        .flat_map(|v| convs.iter().map(move |c| (*c, *v)))
        .filter(|(c, v)| *v != "quads" || windows.contains(c))
        .collect();
    assert_eq!(compared, expected, "{by}");
    assert_eq!(layers.len(), expected.len(), "{by}");
    let mut want = std::collections::BTreeMap::new();
    for l in layers {
        let layer = l["layer"].as_str().unwrap();
        let variant = l["variant"].as_str().unwrap();
        let (a, b) = (
            l["us_picked"].as_f64().unwrap(),
            l["us_flipped"].as_f64().unwrap(),
        );
        assert!(a > 0.0 && b > 0.0, "{l}");
        // The flipped set has the variant on exactly when the pick has it off.
        let picked_on = folds.name() == "all" || folds.name().split(',').any(|f| f == variant);
        assert_eq!(
            l["on"].as_bool(),
            Some(!picked_on),
            "{l} against {}",
            folds.name()
        );
        if l["kept"] == true {
            assert!(b < a * (1.0 - wgsl_autoencoder::train::tune::MARGIN), "{l}");
            let own = want.entry(layer.to_string()).or_insert(folds);
            *own = own.with(variant).or_else(|| own.without(variant)).unwrap();
        }
    }
    let recorded: std::collections::BTreeMap<String, FoldSet> =
        serde_json::from_value(session["layer_folds"].clone()).unwrap();
    assert_eq!(recorded, want, "{session}");
    let trials = by["trials"].as_array().unwrap();
    let mixed = trials.iter().find(|t| {
        t["folds"]
            .as_str()
            .unwrap()
            .ends_with(" with the layers' own variants")
    });
    if !want.is_empty() {
        let us = |t: &serde_json::Value| t["us_per_step"].as_f64().unwrap();
        let picked = trials.iter().find(|t| t["folds"] == folds.name()).unwrap();
        assert!(us(mixed.unwrap()) < us(picked), "{by}");
    }

    let plain = t.path().join("plain");
    train(&data, &plain, &args("none")).ok();
    let load = |dir: &Path| {
        wgsl_autoencoder::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap()
    };
    let (a, b) = (load(&tuned), load(&plain));
    let bits = |ck: &wgsl_autoencoder::checkpoint::Checkpoint| {
        ck.history
            .iter()
            .map(|m| (m.loss.to_bits(), m.val_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&a), bits(&b), "the layers' variants changed a loss");
    assert!(
        a.state == b.state,
        "the layers' variants changed the weights"
    );

    let dir = tuned.to_str().unwrap();
    run(&["--kernels", "gpu", "--resume", dir, "--epochs", "2"]).ok();
    let resumed = config(&tuned)["sessions"][1].clone();
    assert_eq!(resumed["folds_by"]["by"], "resumed_run", "{resumed}");
    assert_eq!(resumed["layer_folds"], session["layer_folds"], "{resumed}");
}

/// `--folds tune`: the run times sets of folds at start-up, says so, records every set it
/// timed in `config.json` beside the one it kept (the fastest but for the margin), and
/// trains to the same losses and weights, bit for bit, as the same run with no folds; a
/// resumed run with `auto` keeps the folds recorded for its adapter instead of timing again,
/// and with `tune` times again.
/// Where there is nothing to time (the cpu kernel set, whose folds change float rounding;
/// `eval`; `bench-kernels`), `tune` is refused with the fix.
#[test]
fn cli_folds_tune_picks_by_timing_records_it_and_changes_no_bit() {
    let t = tempfile::tempdir().unwrap();
    let data = small(t.path());
    let args = |kernels: &'static str, folds: &'static str| {
        [
            "--model",
            "dense",
            "--kernels",
            kernels,
            "--folds",
            folds,
            "--epochs",
            "1",
            "--batch-size",
            "8",
        ]
    };
    let refused = t.path().join("cpu-tune");
    train(&data, &refused, &args("cpu", "tune")).fails_with(&["--folds tune", "--kernels gpu"]);
    assert_not_created(&refused);

    let tuned = t.path().join("tuned");
    let r = train(&data, &tuned, &args("gpu", "tune"));
    r.ok();
    assert!(
        r.stdout.contains("(timed by ") && r.stdout.contains(", fastest of "),
        "the run should say how it picked its folds:\n{}",
        r.stdout
    );
    let config = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let session = config(&tuned)["sessions"][0].clone();
    let by = &session["folds_by"];
    assert_eq!(by["by"], "timing", "{session}");
    let trials = by["trials"].as_array().unwrap();
    assert_eq!(trials[0]["folds"], "all", "{by}");
    let kept: FoldSet = serde_json::from_value(session["folds"].clone()).unwrap();
    let us = |t: &serde_json::Value| t["us_per_step"].as_f64().unwrap();
    let kept_us = trials
        .iter()
        .find(|t| t["folds"] == kept.name())
        .map(us)
        .unwrap_or_else(|| panic!("the kept set {} was not timed: {by}", kept.name()));
    for trial in trials {
        assert!(
            us(trial) > 0.0 && trial["dispatches"].as_u64() > Some(0),
            "{trial}"
        );
        // Every set rejected was at most the margin faster than the one kept.
        assert!(
            kept_us * (1.0 - wgsl_autoencoder::train::tune::MARGIN) <= us(trial) + 1e-9,
            "{by}"
        );
    }

    let plain = t.path().join("plain");
    train(&data, &plain, &args("gpu", "none")).ok();
    let load = |dir: &Path| {
        wgsl_autoencoder::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap()
    };
    let (a, b) = (load(&tuned), load(&plain));
    let losses = |ck: &wgsl_autoencoder::checkpoint::Checkpoint| {
        ck.history
            .iter()
            .map(|m| (m.loss.to_bits(), m.val_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        losses(&a),
        losses(&b),
        "folds {} changed a loss",
        kept.name()
    );
    assert!(
        a.state == b.state,
        "folds {} changed the weights",
        kept.name()
    );

    let r = run(&[
        "--kernels",
        "gpu",
        "--resume",
        tuned.to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    r.ok();
    assert!(r.stdout.contains("the resumed run's"), "{}", r.stdout);
    let resumed = config(&tuned)["sessions"][1].clone();
    assert_eq!(resumed["folds_by"]["by"], "resumed_run", "{resumed}");
    assert_eq!(resumed["folds"], session["folds"], "{resumed}");
    // bench times its folds too, and says so beside its table and in its JSON.
    let json = t.path().join("bench.json");
    let mut c = cli();
    c.args([
        "--kernels",
        "gpu",
        "--folds",
        "tune",
        "bench",
        "--model",
        "dense",
    ])
    .args(["--batch-size", "8", "--epochs", "2", "--json"])
    .arg(&json)
    .arg("--data")
    .arg(&data);
    let r = run_cmd(&mut c);
    r.ok();
    assert!(
        r.stdout.contains("dense: gpu kernels, folds: "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("(timed by "), "{}", r.stdout);
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(bench[0]["folds_by"]["by"], "timing", "{bench}");
    // Asked to tune, a resumed run times again.
    let dir = tuned.to_str().unwrap();
    run(&[
        "--kernels",
        "gpu",
        "--folds",
        "tune",
        "--resume",
        dir,
        "--epochs",
        "3",
    ])
    .ok();
    assert_eq!(config(&tuned)["sessions"][2]["folds_by"]["by"], "timing");

    run(&[
        "eval",
        "--folds",
        "tune",
        "--checkpoint",
        tuned.to_str().unwrap(),
    ])
    .fails_with(&["--folds tune", "trains nothing"]);
    run(&[
        "bench-kernels",
        "--folds",
        "tune",
        "--data",
        data.to_str().unwrap(),
    ])
    .fails_with(&["--folds tune", "kernel sets"]);
}
