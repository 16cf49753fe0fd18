#!/usr/bin/env bash
# Here, after ../shared/device/prepare.sh: stages the op and training test binaries as
# .device/tests/{ops,training}, so that `bench/device-check.sh core` runs them on the GPU
# (issue 8: every op test and whole-step parity test passes on lavapipe and on the GPU). They
# read assets/ relative to the working directory, the repository's root there.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -d .device/bin ] || { echo "run bash ../shared/device/prepare.sh first" >&2; exit 1; }
mkdir -p .device/tests
for t in ops training; do
  exe=$(cargo test --release --no-run --test "$t" --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$t" | tail -1)
  [ -n "$exe" ] || { echo "no test binary for $t" >&2; exit 1; }
  cp "$exe" ".device/tests/$t"
  strip ".device/tests/$t" 2>/dev/null || true
done
du -sh .device .device/tests/* | sed 's/^/staged: /'
