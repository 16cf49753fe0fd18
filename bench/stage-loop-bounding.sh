#!/usr/bin/env bash
# Here, after ../shared/device/prepare.sh: stages a second binary built with naga's loop
# bounding (the `naga-loop-bounding` feature: wgpu's default, which src/gpu/pipeline.rs leaves
# out) as .device/loop-bounding/wgsl-autoencoder, so that bench/device-check.sh can time both
# in the same call. Only this crate is rebuilt; the default binary is rebuilt after it.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -d .device/bin ] || { echo "run bash ../shared/device/prepare.sh first" >&2; exit 1; }
cargo build --release --features naga-loop-bounding --bin wgsl-autoencoder
mkdir -p .device/loop-bounding
cp target/release/wgsl-autoencoder .device/loop-bounding/
strip .device/loop-bounding/wgsl-autoencoder 2>/dev/null || true
cargo build --release --bin wgsl-autoencoder
du -sh .device .device/loop-bounding/wgsl-autoencoder | sed 's/^/staged: /'
