#!/usr/bin/env python3
"""Keras rebuilds one of our checkpoints and evaluates it: the architecture from the run's
Keras description (`--model FILE.json`'s text, which the checkpoint carries, or a built-in's
file in assets/models/), the weights set layer by layer under the checkpoint's tensor names.

    python3 bench/keras_check.py RUN/checkpoint.safetensors [--data assets/mnist]

Prints Keras' validation loss on the test split beside the one our run recorded for the same
weights. Needs keras (any backend) and numpy; reads safetensors without its package.
"""
import argparse, gzip, json, os, struct, sys

import numpy as np
import keras

HERE = os.path.dirname(os.path.abspath(__file__))


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[t["dtype"]]
        tensors[name] = np.frombuffer(raw[base + start : base + end], dtype).reshape(t["shape"])
    return meta, tensors


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    raw = opener(path, "rb").read()
    _, n = struct.unpack(">II", raw[:8])
    rows, cols = struct.unpack(">II", raw[8:16])
    return np.frombuffer(raw, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)


def test_images(data):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"):
        p = os.path.join(data, name)
        if os.path.exists(p):
            return read_idx(p).astype("float32") / 255.0
    sys.exit(f"no t10k-images-idx3-ubyte(.gz) in {data}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=os.path.join(HERE, "..", "assets", "mnist"))
    a = ap.parse_args()
    meta, tensors = read_safetensors(a.checkpoint)
    config = json.loads(meta["config"])
    model_arg = config["model"]
    if isinstance(model_arg, str):
        text = open(os.path.join(HERE, "..", "assets", "models", model_arg + ".json")).read()
    else:
        text = model_arg["json"]
    model = keras.models.model_from_json(text)
    for layer in model.layers:
        names = [f"{layer.name}/kernel", f"{layer.name}/bias"]
        weights = [tensors[n] for n in names if n in tensors]
        if weights:
            layer.set_weights(weights)
    model.compile(loss="binary_crossentropy")
    x = test_images(a.data)
    x = x.reshape((len(x),) + tuple(model.input_shape[1:]))
    keras_loss = model.evaluate(x, x, batch_size=256, verbose=0)
    if config.get("noise", 0) > 0 or int(meta.get("step", "0")) != 0:
        print("note: our val_loss below is on noisy inputs or from an earlier epoch's end; "
              "Keras' is on the clean test split with these weights", file=sys.stderr)
    ours = json.loads(meta["history"])[-1]["val_loss"]
    print(f"model {meta['model']}, epoch {meta['epoch']}: Keras val_loss {keras_loss:.6f}, "
          f"ours {ours:.6f}, difference {abs(keras_loss - ours):.2e}")


if __name__ == "__main__":
    main()
