//! Keras model files.
use super::*;

/// The shipped `assets/models/NAME.json` as JSON, to edit into a file the program refuses.
fn keras_model(name: &str) -> serde_json::Value {
    let path = format!("{}/assets/models/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every unsupported feature the issue names, each in a file of its own, refused through the
/// binary before anything is created, the message naming the layer, its position and the
/// option.
#[test]
fn cli_keras_files_with_unsupported_features_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(&t.path().join("data28"), 16, 8, 28);
    let out = t.path().join("run");
    let conv = keras_model("conv");
    type Edit = fn(&mut serde_json::Value);
    // (what, edit of conv.json, words the message must hold)
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "stride 3",
            |m| m["config"]["layers"][1]["config"]["strides"] = serde_json::json!([3, 3]),
            vec![
                "layer 1",
                "'conv2d'",
                "Conv2D",
                "strides [3,3]",
                "only 1 or 2",
            ],
        ),
        (
            "unequal strides",
            |m| m["config"]["layers"][1]["config"]["strides"] = serde_json::json!([1, 2]),
            vec![
                "layer 1",
                "'conv2d'",
                "strides [1,2]",
                "the same on both axes",
            ],
        ),
        (
            "a strided output layer",
            |m| m["config"]["layers"][13]["config"]["strides"] = serde_json::json!([2, 2]),
            vec!["layer 13", "'conv2d_6'", "strides 2 on the output layer"],
        ),
        (
            "activity regularizer",
            |m| {
                m["config"]["layers"][3]["config"]["activity_regularizer"] =
                    serde_json::json!({"class_name": "L2", "config": {"l2": 0.01}})
            },
            vec![
                "layer 3",
                "'conv2d_1'",
                "activity_regularizer",
                "not supported",
            ],
        ),
        (
            "skip connection",
            |m| {
                // conv2d_1's input becomes the InputLayer's output, skipping two layers.
                m["config"]["layers"][3]["inbound_nodes"][0]["args"][0]["config"]
                    ["keras_history"][0] = serde_json::json!("input_layer");
            },
            vec!["layer 3", "'conv2d_1'", "single chain", "skip connections"],
        ),
        (
            "a 4-D input that is not 28x28x1",
            |m| {
                m["config"]["layers"][0]["config"]["batch_shape"] =
                    serde_json::json!([null, 32, 32, 3])
            },
            vec!["layer 0", "InputLayer", "[32, 32, 3]", "28x28x1"],
        ),
        (
            "an unsupported layer",
            |m| m["config"]["layers"][2]["class_name"] = serde_json::json!("Dropout"),
            vec![
                "layer 2",
                "'max_pooling2d'",
                "Dropout is not supported",
                "Conv2D",
            ],
        ),
        (
            "an even kernel",
            |m| m["config"]["layers"][5]["config"]["kernel_size"] = serde_json::json!([4, 4]),
            vec!["layer 5", "'conv2d_2'", "kernel_size [4,4]", "1, 3, 5 or 7"],
        ),
        (
            "dilation",
            |m| m["config"]["layers"][5]["config"]["dilation_rate"] = serde_json::json!([2, 2]),
            vec!["layer 5", "dilation_rate [2,2]"],
        ),
        (
            "an unsupported activation",
            |m| m["config"]["layers"][1]["config"]["activation"] = serde_json::json!("tanh"),
            vec!["layer 1", "activation \"tanh\"", "'relu'"],
        ),
        (
            "a last layer that is not sigmoid",
            |m| m["config"]["layers"][13]["config"]["activation"] = serde_json::json!("relu"),
            vec!["layer 13", "'conv2d_6'", "must be 'sigmoid'"],
        ),
        (
            "another loss",
            |m| m["compile_config"]["loss"] = serde_json::json!("mse"),
            vec!["compile_config", "loss 'mse'", "binary_crossentropy"],
        ),
        (
            "label smoothing",
            |m| {
                m["compile_config"]["loss"] = serde_json::json!({"class_name": "BinaryCrossentropy",
                    "config": {"label_smoothing": 0.1, "from_logits": false}})
            },
            vec!["compile_config", "label_smoothing"],
        ),
        (
            "an initializer given by name",
            |m| {
                m["config"]["layers"][3]["config"]["kernel_initializer"] =
                    serde_json::json!("he_normal")
            },
            vec!["layer 3", "kernel_initializer he_normal", "GlorotUniform"],
        ),
        (
            "a fixed batch size",
            |m| {
                m["config"]["layers"][0]["config"]["batch_shape"] =
                    serde_json::json!([32, 28, 28, 1])
            },
            vec!["layer 0", "batch size", "--batch-size"],
        ),
        (
            "a frozen layer",
            |m| m["config"]["layers"][1]["config"]["trainable"] = serde_json::json!(false),
            vec!["layer 1", "trainable false"],
        ),
    ];
    // Conv2DTranspose (the keras.io model's layers 5 and 6): what is not taken.
    let transpose: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "transpose stride 3",
            |m| m["config"]["layers"][5]["config"]["strides"] = serde_json::json!([3, 3]),
            vec![
                "layer 5",
                "'conv2d_transpose'",
                "Conv2DTranspose",
                "strides [3,3]",
                "1 or 2",
            ],
        ),
        (
            "transpose valid",
            |m| m["config"]["layers"][6]["config"]["padding"] = serde_json::json!("valid"),
            vec![
                "layer 6",
                "'conv2d_transpose_1'",
                "padding 'valid'",
                "only 'same'",
            ],
        ),
        (
            "transpose output padding",
            |m| m["config"]["layers"][5]["config"]["output_padding"] = serde_json::json!([1, 1]),
            vec!["layer 5", "output_padding [1,1]", "None"],
        ),
        (
            // After a strided Conv2DTranspose (a zero insertion and a convolution here), the
            // position named is still the file's.
            "dense on images after transposes",
            |m| {
                m["config"]["layers"][7]["class_name"] = serde_json::json!("Dense");
                m["config"]["layers"][7]["config"] =
                    serde_json::json!({"name": "conv2d_2", "units": 1, "activation": "sigmoid"});
            },
            vec!["layer 7", "'conv2d_2'", "28x28x32", "add a Flatten"],
        ),
        (
            "transpose stride 2 kernel 1",
            |m| m["config"]["layers"][5]["config"]["kernel_size"] = serde_json::json!([1, 1]),
            vec![
                "layer 5",
                "kernel_size [1,1]",
                "3, 5 or 7",
                "with strides 2",
            ],
        ),
    ];
    let bases = [(conv, cases), (keras_model("conv_transpose"), transpose)];
    for (what, base, edit, words) in bases
        .iter()
        .flat_map(|(base, cases)| cases.iter().map(move |(w, e, ws)| (w, base, e, ws.clone())))
    {
        let mut m = base.clone();
        edit(&mut m);
        let file = t.path().join(format!("{}.json", what.replace(' ', "_")));
        std::fs::write(&file, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        eprintln!("{what}");
        let mut words = words;
        words.push(file.to_str().unwrap());
        train(
            &data,
            &out,
            &["--model", file.to_str().unwrap(), "--epochs", "1"],
        )
        .fails_with(&words);
        assert_not_created(&out);
    }
    // A Dense on images: Keras applies it to the channels alone, so it needs a Flatten.
    let mut m = keras_model("sequential_conv");
    let layers = m["config"]["layers"].as_array_mut().unwrap();
    layers.remove(5); // flatten
    let file = t.path().join("no_flatten.json");
    std::fs::write(&file, serde_json::to_string(&m).unwrap()).unwrap();
    train(&data, &out, &["--model", file.to_str().unwrap()]).fails_with(&[
        "'dense'",
        "Dense",
        "7x7x8",
        "add a Flatten",
    ]);
    assert_not_created(&out);
    // An output of another shape than the input: flat 784 from 28x28x1 images.
    let mut m = keras_model("sequential_conv");
    let layers = m["config"]["layers"].as_array_mut().unwrap();
    layers.truncate(6); // input .. flatten
    let mut last = layers[0].clone();
    last["class_name"] = serde_json::json!("Dense");
    last["config"] = serde_json::json!({"name": "out", "units": 784, "activation": "sigmoid"});
    layers.push(last);
    let file = t.path().join("flat_output.json");
    std::fs::write(&file, serde_json::to_string(&m).unwrap()).unwrap();
    train(&data, &out, &["--model", file.to_str().unwrap()]).fails_with(&[
        "output is flat [784]",
        "input is 28x28x1",
        "Reshape",
    ]);
    assert_not_created(&out);
    // Not a file at all, and not JSON.
    train(&data, &out, &["--model", "convv"]).fails_with(&["--model convv", "conv, dense, deep"]);
    train(&data, &out, &["--model", "nope.json"]).fails_with(&[
        "--model nope.json",
        "no such file",
        "model.to_json()",
    ]);
    std::fs::write(t.path().join("bad.json"), "{ not json").unwrap();
    let bad = t.path().join("bad.json");
    train(&data, &out, &["--model", bad.to_str().unwrap()])
        .fails_with(&["not JSON", "model.to_json()"]);
    assert_not_created(&out);
}

/// A Keras file trains through every command: train (tensors under the file's own layer
/// names), eval, encode and decode with --code-layer; export writes the built-ins' files.
#[test]
fn cli_keras_file_trains_and_export_writes_the_builtins() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(&t.path().join("data28"), 16, 8, 28);
    let file = format!(
        "{}/assets/models/sequential_conv.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = t.path().join("run");
    let r = train(
        &data,
        &out,
        &[
            "--model",
            &file,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--code-layer",
            "dense",
            "--no-tensorboard",
        ],
    );
    r.ok();
    assert!(
        r.stdout.contains("sequential_conv on 16 training"),
        "{}",
        r.stdout
    );
    let ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let names: Vec<String> = ck
        .model()
        .unwrap()
        .params
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "conv2d/kernel",
            "conv2d/bias",
            "conv2d_1/kernel",
            "conv2d_1/bias",
            "dense/kernel",
            "dense/bias",
            "dense_1/kernel",
            "dense_1/bias",
            "conv2d_2/kernel",
            "conv2d_2/bias",
            "conv2d_3/kernel",
            "conv2d_3/bias"
        ]
    );
    assert_eq!(ck.model().unwrap().code().len(), 32);
    let ckp = out.join("checkpoint.safetensors");
    let ckp = ckp.to_str().unwrap();
    let datas = data.to_str().unwrap();
    let r = run(&["eval", "--checkpoint", ckp, "--data", datas]);
    assert!(
        r.ok().stdout.contains("sequential_conv model"),
        "{}",
        r.stdout
    );
    let codes = t.path().join("codes.npy");
    let r = run(&[
        "encode",
        "--checkpoint",
        ckp,
        "--data",
        datas,
        "--out",
        codes.to_str().unwrap(),
    ]);
    r.ok();
    assert!(r.stdout.contains("8 codes of 1x1x32"), "{}", r.stdout);
    // --resume needs no file: the checkpoint carries the description. The same file again
    // (by another path) is the same model.
    let copy = t.path().join("copy.json");
    std::fs::copy(&file, &copy).unwrap();
    let mut c = cli();
    c.args([
        "--resume",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--no-tensorboard",
    ]);
    c.args(["--model", copy.to_str().unwrap()]);
    run_cmd(&mut c).ok();
    let ck = wgsl_autoencoder::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.history.len(), 2);
    // An unknown --code-layer names the layers there are.
    train(
        &data,
        &t.path().join("run2"),
        &["--model", &file, "--code-layer", "nope"],
    )
    .fails_with(&["--code-layer nope", "no such layer", "conv2d_1", "reshape"]);
    // export: the built-ins' own files, never over an existing file.
    for kind in ["conv", "dense", "deep"] {
        let f = t.path().join(format!("{kind}.json"));
        run(&["export", "--model", kind, "--out", f.to_str().unwrap()]).ok();
        let want = std::fs::read_to_string(format!(
            "{}/assets/models/{kind}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), want);
        run(&["export", "--model", kind, "--out", f.to_str().unwrap()]).fails_with(&["exists"]);
    }
}
