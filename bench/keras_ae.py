#!/usr/bin/env python3
"""The seed's Keras autoencoders ("Building Autoencoders in Keras"), timed as `bench` times ours.

    python3 bench/keras_ae.py --model conv|dense [--epochs 3] [--seed S] [--train-limit N] [--json out.json]
    python3 bench/keras_ae.py --model-json assets/models/denoising_conv.json --noise 0.5 --epochs 10

--model-json trains the model a `model.to_json()` file describes (what our `--model FILE.json`
trains); --noise F trains the blog's denoising variant: inputs + F * N(0, 1) clipped to [0, 1],
each image's noisy copy drawn once, targets clean, validation on the noisy test images.

Reads the shipped MNIST (assets/mnist), trains with the seed's settings (Adam, binary
cross-entropy, batch 256, shuffle) and reports steady-state training throughput: the median
training time of the epochs after the first (validation excluded, as in `bench`).
"""
import argparse, gzip, json, os, statistics, struct, time

import numpy as np
import keras
from keras import layers


def read_idx(path):
    raw = gzip.open(path).read()
    magic, n = struct.unpack(">II", raw[:8])
    rows, cols = struct.unpack(">II", raw[8:16])
    return np.frombuffer(raw, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)


def conv_ae():
    inp = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(inp)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(x)
    encoded = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(encoded)
    x = layers.UpSampling2D((2, 2))(x)
    x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(x)
    x = layers.UpSampling2D((2, 2))(x)
    x = layers.Conv2D(16, (3, 3), activation="relu")(x)
    x = layers.UpSampling2D((2, 2))(x)
    decoded = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    return keras.Model(inp, decoded)


def dense_ae():
    inp = keras.Input(shape=(784,))
    encoded = layers.Dense(32, activation="relu")(inp)
    decoded = layers.Dense(784, activation="sigmoid")(encoded)
    return keras.Model(inp, decoded)


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # on_epoch_end runs after validation; on_test_begin marks its start.
        self.train.append(self.t_val - self.t0)

    def on_test_begin(self, logs=None):
        self.t_val = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["conv", "dense"], default="conv")
    ap.add_argument("--model-json")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--data", default="assets/mnist")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.seed is not None:
        keras.utils.set_random_seed(a.seed)
    load = lambda n: read_idx(os.path.join(a.data, n)).astype("float32") / 255.0
    x_train, x_test = load("train-images-idx3-ubyte.gz"), load("t10k-images-idx3-ubyte.gz")
    if a.train_limit:
        x_train = x_train[: a.train_limit]
    if a.model_json:
        model = keras.models.model_from_json(open(a.model_json).read())
        shape = (-1,) + tuple(model.input_shape[1:])
        x_train, x_test = x_train.reshape(shape), x_test.reshape(shape)
        a.model = os.path.basename(a.model_json)
    elif a.model == "conv":
        x_train, x_test = x_train[..., None], x_test[..., None]
        model = conv_ae()
    else:
        x_train, x_test = x_train.reshape(-1, 784), x_test.reshape(-1, 784)
        model = dense_ae()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    noisy = lambda x: np.clip(x + a.noise * np.random.normal(size=x.shape), 0.0, 1.0).astype("float32")
    in_train, in_test = (noisy(x_train), noisy(x_test)) if a.noise > 0 else (x_train, x_test)
    timer = EpochTimer()
    timer.train = []
    hist = model.fit(in_train, x_train, epochs=a.epochs, batch_size=256, shuffle=True,
                     validation_data=(in_test, x_test), callbacks=[timer], verbose=2)
    steady = timer.train[1:] or timer.train
    med = statistics.median(steady)
    out = dict(model=a.model, noise=a.noise, keras=keras.__version__, backend=keras.backend.backend(),
               train_images=len(x_train), epoch_train_seconds=timer.train,
               median_train_epoch_s=med, train_images_per_s=len(x_train) / med,
               val_loss=hist.history["val_loss"], threads=os.cpu_count())
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
