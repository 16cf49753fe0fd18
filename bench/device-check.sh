#!/usr/bin/env bash
# The GPU check as two device calls on one warm machine. `core` is issue 8's same-call table
# (ours beside both peers in the same command), the op and training tests on the GPU, and the
# two models' profiles; `extra` is the folds' bit checks at batch 256, every per-fold profile,
# the per-layer kernel timings, the paired before/after benches and the denoising model's 10
# epochs (issue 13's run, made on lavapipe; the GPU's loss is the cross-check).
#
# Here first:   bash ../shared/device/prepare.sh && bash bench/stage-loop-bounding.sh &&
#               bash bench/stage-tests.sh
# Then, carry [".device"]:
#   device call 1, timeout 410 s (core's step limits sum to 392 s; ~4 minutes normally):
#               bash bench/device-check.sh core
#   device call 2 within the machine's warm window (status's idle_release_s: 30 s), timeout
#   310 s (extra's step limits sum to 303 s; the rest is sourcing the loader and packing):
#               bash bench/device-check.sh extra
# A session's 15 device minutes then still hold a rerun of `core` if it fails early. `extra`
# reads core's ours.json (the folds the start-up timing picked) from /tmp/device-check if the
# machine stayed warm, else it times `auto` again.
#
# Only 8 files come back from $OUT, so every step's output goes to /tmp/device-check, and
# after each step $OUT/results-PART.tar.gz is rewritten with all of it: a call killed at its
# limit still returns what its finished steps wrote. $OUT also gets the log and summary.txt
# (bench/summarize.py; the call prints it last). Here: `mkdir r && tar xzf
# <files_at>/results-extra.tar.gz -C r && python3 bench/summarize.py r`.
#
# Each step is timed and logged, and a failed step does not stop the rest (its rc is logged):
# the device's minutes are scarce, so one bad step must not cost the others.
#
# DEVICE_CHECK_SMOKE=1 OUT=/tmp/smoke runs every step here on lavapipe (adapter 0) with a
# 640-image MNIST, two epochs (the denoising run's too) and two profiled steps, the GPU set of
# kernels, limits x40, and the binary from target/release (no loop-bounding build): ~2 minutes
# for core (~6.5 with the staged tests, which run whole), ~23 for extra. Copy the script
# first if you edit it meanwhile: bash reads it as it runs. It checks the command lines, the packing and the summary, not the speed; the
# peers fail without PyTorch and JAX, and are logged as failed.
set -u
part=${1:-}
case $part in core | extra) ;; *)
  echo "usage: bash bench/device-check.sh core|extra" >&2
  exit 2
  ;;
esac
out=${OUT:?run on the device machine, where OUT is set}
# (The device machine makes it; a smoke run here may name a folder not made yet.)
mkdir -p "$out"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
smoke=${DEVICE_CHECK_SMOKE:-0}
work=/tmp/device-check
[ "$smoke" = 1 ] && work=/tmp/device-check-smoke
[ "$part" = core ] && rm -rf "$work"
mkdir -p "$work"
log=$work/device-check.log
failed=0

# The run's settings, and their smoke-test counterparts.
adapter=discrete data_dir= kernels=auto epochs=5 steps=100 kernel_steps=50 fold_limit=2600
denoise_epochs=10 scale=1
bounded=.device/loop-bounding/wgsl-autoencoder
if [ "$smoke" = 1 ]; then
  adapter=0 data_dir=$work/mnist-small kernels=gpu epochs=2 steps=2 kernel_steps=2 fold_limit=640
  denoise_epochs=2 scale=40
  bounded=/nonexistent
  python3 - assets/mnist "$work/mnist-small" <<'PY' || exit 1
# The first 640 training and 128 test images and labels, as IDX files.
import gzip, os, struct, sys
src, dst = sys.argv[1:3]
os.makedirs(dst, exist_ok=True)
for name, n in (("train", 640), ("t10k", 128)):
    for kind, item in (("images-idx3", 784), ("labels-idx1", 1)):
        raw = gzip.open(f"{src}/{name}-{kind}-ubyte.gz").read()
        dims = raw[3]
        head = bytearray(raw[: 4 + 4 * dims])
        head[4:8] = struct.pack(">I", n)
        open(f"{dst}/{name}-{kind}-ubyte", "wb").write(bytes(head) + raw[len(head):len(head) + n * item])
PY
fi
export adapter data_dir kernels

# pack: everything so far, atomically, where it comes back.
pack() {
  tar czf "$out/results-$part.tar.gz.part" -C "$work" --exclude=mnist-small . &&
    mv "$out/results-$part.tar.gz.part" "$out/results-$part.tar.gz"
  cp "$log" "$out/device-check.log"
}
# step NAME LIMIT_S COMMAND...: its output in NAME.txt, its rc and time in the log; a step past
# its limit is killed (rc 124) so that the rest still run.
step() {
  local name=$1 limit=$(($2 * scale))
  shift 2
  local t0=$SECONDS
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" >"$work/$name.txt" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || failed=1
  echo "$name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$log"
  gzip -f "$work"/trace-*.json 2>/dev/null
  pack
}
# ours SUBCOMMAND ARGS...: our binary on the adapter (with the smoke test's data, and the GPU
# set of kernels that auto picks on a GPU, but bench-kernels times every set); train is the
# binary without a subcommand. Exported: step runs it under timeout, in a child bash.
ours() {
  local sub=$1 set=(--kernels "$kernels")
  shift
  [ "$sub" = bench-kernels ] && set=()
  [ "$sub" = train ] && sub=()
  wgsl-autoencoder "${sub[@]}" --adapter "$adapter" "${set[@]}" ${data_dir:+--data "$data_dir"} "$@"
}
export -f ours

echo "== device-check $part (smoke=$smoke) $(date -u +%FT%TZ)" | tee -a "$log"
if [ "$smoke" = 1 ]; then
  export PATH="$PWD/target/release:$PATH"
elif ! source .device/gpu-env.sh >"$work/env-$part.txt" 2>&1; then
  echo "sourcing .device/gpu-env.sh failed (was .device carried?):" | tee -a "$log"
  tail -5 "$work/env-$part.txt"
  pack
  exit 1
fi

core() {
  step devices 5 wgsl-autoencoder devices
  # Same command, same card: ours, then the peers (issue 8's table: all four columns). On a
  # GPU `auto` times fold sets at start-up: ours.json's folds_by lists each set's µs per step.
  step ours 30 ours bench --epochs $epochs --json "$work/ours.json"
  # The folds' before and after, same call: ours with none (the 44-dispatch conv step and
  # 10-dispatch dense step measured on the H200 before them; all folds: 16 and 2).
  step ours-unfolded 25 ours bench --folds none --epochs $epochs --json "$work/ours-unfolded.json"
  # (The H200's first call took ~30 s for torch's conv, eager and graph.)
  for m in conv dense; do
    step "torch-$m" 45 python3 .device/torch_ae.py --data assets/mnist --model $m --variants eager,graph \
      --json "$work/torch-$m.json"
    step "jax-$m" 50 python3 .device/jax_ae.py --data assets/mnist --model $m --json "$work/jax-$m.json"
  done
  # Every op test and whole-step parity test on the card (bench/stage-tests.sh staged them):
  # each on the adapter alone, with its own limits and WebGPU's defaults, both kernel sets.
  for t in ops training; do
    if [ -x ".device/tests/$t" ]; then
      step "test-$t" 60 env WGSL_AE_TEST_ADAPTER="$adapter" ".device/tests/$t"
    else
      echo "test-$t: skipped, .device/tests/$t not staged (bench/stage-tests.sh)" | tee -a "$log"
    fi
  done
  # Where our step's time goes, per kernel (timestamp queries), with the folds auto picks.
  step profile-conv 12 ours profile --model conv --steps $steps --trace "$work/trace-conv.json"
  step profile-dense 8 ours profile --model dense --steps $steps
}

# picked MODEL: the folds core's `ours` picked for it (its start-up timing), so that the
# before/after runs time the same kernels; auto if there is no such record.
picked() {
  python3 -c 'import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["model"] == sys.argv[2]]
print(rows[0]["folds"] if rows else "auto")' "$work/ours.json" "$1" 2>/dev/null || echo auto
}

# without FOLDS NAME: the --folds value FOLDS (all, none, auto or a list) with NAME left out.
without() {
  python3 -c 'import sys
names = "upsample pool reduces backward loss tiles finish rows vec4 grads narrow single gather quads adam windows textures reuse"
f, drop = sys.argv[1], sys.argv[2]
folds = names.split() if f in ("all", "auto") else ([] if f == "none" else f.split(","))
print(",".join(n for n in folds if n != drop) or "none")' "$1" "$2"
}

extra() {
  # The folds change no bit on the card either (lavapipe's tests say so there, and core's
  # test-training on the card at small batches): one short run
  # with none and one with all, their checkpoints' tensors and their epoch losses (which the
  # loss-only folds, finish and grads' partial sums, alone could change) compared; conv, then
  # dense (rows, grads, gather, vec4) at the default batch of 256, where the weight gradients
  # split. 2600 images end each epoch with a batch of 40 (rows without grads, the per-layer
  # rest); the smoke test's 640, with 128.
  for m in conv dense; do
    for f in none all; do
      step "folds-$m-$f" 12 ours train --model $m --folds $f --epochs 2 --train-limit $fold_limit --seed 3 \
        --out "$work/folds-$m-$f" --no-tensorboard
    done
    step "folds-$m-same-bits" 4 python3 bench/same_bits.py "$work/folds-$m-none" "$work/folds-$m-all"
  done
  for m in conv dense; do
    local f
    f=$(picked $m)
    # Steps per submit's before and after, same call: one step per submit (as before it)
    # against 16 (auto on a GPU), the same folds.
    step "ours-one-per-submit-$m" 15 ours bench --model $m --folds "$f" --steps-per-execution 1 \
      --epochs $epochs --json "$work/ours-one-per-submit-$m.json"
    step "ours-picked-$m" 15 ours bench --model $m --folds "$f" --epochs $epochs \
      --json "$work/ours-picked-$m.json"
    # Adam inside dense.grads (the eighth session), same call: the picked folds without it.
    if [ $m = dense ]; then
      step "ours-without-adam-$m" 10 ours bench --model $m --folds "$(without "$f" adam)" \
        --epochs $epochs --json "$work/ours-without-adam-$m.json"
    fi
    # Loop bounding's before and after, same call: the binary that bench/stage-loop-bounding.sh
    # built with naga's loop bounding (wgpu's default) against ours (without it).
    if [ -x "$bounded" ]; then
      step "ours-loop-bounding-$m" 15 "$bounded" bench --adapter "$adapter" ${data_dir:+--data "$data_dir"} --model $m \
        --folds "$f" --epochs $epochs --json "$work/ours-loop-bounding-$m.json"
    else
      echo "ours-loop-bounding-$m: skipped, $bounded not staged (bench/stage-loop-bounding.sh)" | tee -a "$log"
    fi
  done
  # Each conv fold and variant alone, and the pool and upsample folds without and with quads
  # (loss and finish are one dispatch each, which ours.json's trials time in context).
  for f in none upsample pool reduces backward tiles narrow vec4 upsample,pool upsample,pool,quads; do
    step "profile-conv-folds-${f//,/-}" 5 ours profile --model conv --folds $f --steps $steps \
      --trace "$work/trace-conv-folds-${f//,/-}.json"
  done
  # The dense step's folds and variants alone (rows with two samples per workgroup, and one;
  # rows with grads, and with the batch's gather too, and Adam in grads; vec4) and none
  # (finish is one dispatch, which ours.json's trials time in context). A profiled step runs
  # alone: with adam, its loss's finish (once per execution in training) is one dispatch per
  # step there.
  for f in none rows rows,single rows,grads rows,grads,gather rows,grads,gather,adam vec4; do
    step "profile-dense-folds-${f//,/-}" 5 ours profile --model dense --folds $f --steps $steps
  done
  step profile-denoising 10 ours profile --model assets/models/denoising_conv.json --steps $((steps / 2))
  # Every dispatch under each kernel set and each GPU-set variant the model has, per layer.
  for m in conv dense; do
    step "kernels-$m" 15 ours bench-kernels --model $m --steps $kernel_steps --json "$work/kernels-$m.json"
  done
  # The blog's denoising model, 10 epochs as on lavapipe (docs/lavapipe/denoising10).
  step denoising 20 ours train --model assets/models/denoising_conv.json --noise 0.5 --epochs $denoise_epochs --seed 0 \
    --out "$work/denoising" --no-tensorboard
}

$part
# The tables BENCHMARKS.md needs, from every file so far (bench/summarize.py; 2 s at most).
step summary 2 python3 bench/summarize.py "$work"
cp "$work/summary.txt" "$out/summary.txt"
cat "$log" "$work/summary.txt"
exit $failed
