#!/usr/bin/env bash
# The whole GPU check as one device call: ours beside the peers in the same command (issue 8's
# same-call table), the per-kernel profiles, and the denoising model's 10 epochs (issue 13's run,
# made on lavapipe; the GPU's loss is the cross-check). Everything lands under $OUT.
#
# Here first:   bash ../shared/device/prepare.sh && bash bench/stage-loop-bounding.sh
# Then one device call, carry [".device"], timeout 600 s (the step limits below sum to 598 s
# at worst; a normal run takes ~5 minutes):
#               bash bench/device-check.sh
#
# Each step is timed and logged, and a failed step does not stop the rest (its rc is logged):
# the device's minutes are scarce, so one bad step must not cost the others.
set -u
out=${OUT:?run on the device machine, where OUT is set}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log=$out/device-check.log
failed=0
# step NAME LIMIT_S COMMAND...: its output in $OUT/NAME.txt, its rc and time in the log; a
# step past its limit is killed (rc 124) so that the rest still run.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || failed=1
  echo "$name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$log"
}

if ! source .device/gpu-env.sh >"$out/env.txt" 2>&1; then
  echo "sourcing .device/gpu-env.sh failed (was .device carried?):" | tee -a "$log"
  tail -5 "$out/env.txt"
  exit 1
fi
ae=wgsl-autoencoder
step devices 5 $ae devices
# Same command, same card: ours, then the peers (issue 8's table: all four columns). On a GPU
# `auto` times fold sets at start-up: ours.json's folds_by lists each set's µs per step.
step ours 30 $ae bench --adapter discrete --epochs 5 --json "$out/ours.json"
# The folds' before and after, same call: ours with none (the 44-dispatch conv step and
# 10-dispatch dense step measured on the H200 before them; all folds: 18 and 3).
step ours-unfolded 25 $ae bench --adapter discrete --folds none --epochs 5 --json "$out/ours-unfolded.json"
# The folds `ours` picked for model $1 (its start-up timing), so that the before/after runs
# below time the same kernels; auto if ours.json has no such model.
picked() {
  python3 -c 'import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["model"] == sys.argv[2]]
print(rows[0]["folds"] if rows else "auto")' "$out/ours.json" "$1" 2>/dev/null || echo auto
}
bounded=.device/loop-bounding/wgsl-autoencoder
for m in conv dense; do
  f=$(picked $m)
  # Steps per submit's before and after, same call: one step per submit (as before it)
  # against ours (auto: 16 on a GPU).
  step "ours-one-per-submit-$m" 15 $ae bench --adapter discrete --model $m --folds "$f" \
    --steps-per-execution 1 --epochs 5 --json "$out/ours-one-per-submit-$m.json"
  # Loop bounding's before and after, same call: the binary that bench/stage-loop-bounding.sh
  # built with naga's loop bounding (wgpu's default) against ours (without it).
  if [ -x "$bounded" ]; then
    step "ours-loop-bounding-$m" 15 "$bounded" bench --adapter discrete --model $m --folds "$f" \
      --epochs 5 --json "$out/ours-loop-bounding-$m.json"
  else
    echo "ours-loop-bounding-$m: skipped, $bounded not staged (bench/stage-loop-bounding.sh)" | tee -a "$log"
  fi
done
for m in conv dense; do
  step "torch-$m" 60 python3 .device/torch_ae.py --data assets/mnist --model $m --variants eager,graph \
    --json "$out/torch-$m.json"
  step "jax-$m" 70 python3 .device/jax_ae.py --data assets/mnist --model $m --json "$out/jax-$m.json"
done
# Where our step's time goes, per kernel (timestamp queries).
step profile-conv 12 $ae profile --adapter discrete --model conv --steps 100 --trace "$out/trace-conv.json"
for f in none upsample pool reduces backward loss tiles finish narrow; do
  step "profile-conv-folds-$f" 5 $ae profile --adapter discrete --model conv --folds $f --steps 100 \
    --trace "$out/trace-conv-folds-$f.json"
done
step profile-dense 8 $ae profile --adapter discrete --model dense --steps 100
# The dense step's folds and variants alone (rows with two samples per workgroup, and one;
# rows with grads, and with the batch's gather too; vec4, finish) and none.
for f in none rows rows,single rows,grads rows,grads,gather vec4 finish; do
  step "profile-dense-folds-${f//,/-}" 5 $ae profile --adapter discrete --model dense --folds $f --steps 100
done
step profile-denoising 10 $ae profile --adapter discrete --model assets/models/denoising_conv.json --steps 50
# Every dispatch under each kernel set and each GPU-set variant the model has, per layer.
for m in conv dense; do
  step "kernels-$m" 15 $ae bench-kernels --adapter discrete --model $m --steps 50 --json "$out/kernels-$m.json"
done
# The folds change no bit on the card either (lavapipe's tests say so there): one short run
# with none and one with all, their checkpoints' tensors and their epoch losses (which the
# loss-only folds, finish and grads' partial sums, alone could change) compared; conv, then
# dense (rows, grads, gather, vec4) at the default batch of 256, where the weight gradients split.
# 2600 images end each epoch with a batch of 40 (rows without grads, the per-layer rest).
for m in conv dense; do
  for f in none all; do
    step "folds-$m-$f" 12 $ae --adapter discrete --model $m --folds $f --epochs 2 \
      --train-limit 2600 --seed 3 --out "$out/folds-$m-$f" --no-tensorboard
  done
  step "folds-$m-same-bits" 4 python3 - "$out/folds-$m-none" "$out/folds-$m-all" <<'PY'
import json, struct, sys
def read(run):
    b = open(run + "/checkpoint.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]).get("__metadata__", {}), b[8 + n:]
def tensors(run):
    return read(run)[1]
def losses(run):
    # The history holds each epoch's losses as exact JSON floats.
    return [(e["loss"], e["val_loss"]) for e in json.loads(read(run)[0]["history"])]
a, b = sys.argv[1:3]
same = tensors(a) == tensors(b)
print("same tensor bytes" if same else "DIFFERENT tensor bytes")
same_loss = losses(a) == losses(b)
print("same epoch losses" if same_loss else f"DIFFERENT epoch losses: {losses(a)} {losses(b)}")
sys.exit(0 if same and same_loss else 1)
PY
done
# The blog's denoising model, 10 epochs as on lavapipe (docs/lavapipe/denoising10).
step denoising 20 $ae --adapter discrete --model assets/models/denoising_conv.json --noise 0.5 \
  --epochs 10 --seed 0 --out "$out/denoising" --no-tensorboard
gzip -f "$out"/trace-conv*.json 2>/dev/null
# The tables BENCHMARKS.md needs, from the files above (bench/summarize.py; 2 s at most).
step summary 2 python3 bench/summarize.py "$out"
cat "$log" "$out/summary.txt"
exit $failed
