#!/usr/bin/env bash
# The whole GPU check as one device call: ours beside the peers in the same command (issue 8's
# same-call table), the per-kernel profiles, and the denoising model's 10 epochs (issue 13's run,
# made on lavapipe; the GPU's loss is the cross-check). Everything lands under $OUT.
#
# Here first:   bash ../shared/device/prepare.sh
# Then one device call, carry [".device"], timeout ~540 s:
#               bash bench/device-check.sh
#
# Each step is timed and logged, and a failed step does not stop the rest (its rc is logged):
# the device's minutes are scarce, so one bad step must not cost the others.
set -u
out=${OUT:?run on the device machine, where OUT is set}
log=$out/device-check.log
step() {
  local name=$1
  shift
  local t0=$SECONDS
  "$@" >"$out/$name.txt" 2>&1
  echo "$name: rc=$? in $((SECONDS - t0)) s" | tee -a "$log"
}

source .device/gpu-env.sh >"$out/env.txt" 2>&1
ae=wgsl-autoencoder
step devices $ae devices
# Same command, same card: ours, then the peers (issue 8's table: all four columns).
step ours $ae bench --adapter discrete --epochs 5 --json "$out/ours.json"
for m in conv dense; do
  step "torch-$m" python3 .device/torch_ae.py --data assets/mnist --model $m --variants eager,graph \
    --json "$out/torch-$m.json"
  step "jax-$m" python3 .device/jax_ae.py --data assets/mnist --model $m --json "$out/jax-$m.json"
done
# Where our step's time goes, per kernel (timestamp queries).
step profile-conv $ae profile --adapter discrete --model conv --steps 100 --trace "$out/trace-conv.json"
step profile-dense $ae profile --adapter discrete --model dense --steps 100
step profile-denoising $ae profile --adapter discrete --model assets/models/denoising_conv.json --steps 50
# The blog's denoising model, 10 epochs as on lavapipe (docs/lavapipe/denoising10).
step denoising $ae --adapter discrete --model assets/models/denoising_conv.json --noise 0.5 \
  --epochs 10 --seed 0 --out "$out/denoising" --no-tensorboard
gzip -f "$out/trace-conv.json" 2>/dev/null
cat "$log"
