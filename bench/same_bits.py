#!/usr/bin/env python3
"""Whether two runs trained the same bits: python3 bench/same_bits.py RUN_A RUN_B

Compares their checkpoint.safetensors' tensor bytes and the epoch losses their histories
record (exact JSON floats; the loss-only folds could change those alone). Exits 1 if either
differs, 2 if a checkpoint cannot be read. bench/device-check.sh runs it on the folds' pairs.
"""
import json
import struct
import sys


def read(run):
    """(metadata, tensor bytes) of the run folder's checkpoint."""
    with open(run + "/checkpoint.safetensors", "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8 : 8 + n]).get("__metadata__", {}), b[8 + n :]


def losses(meta):
    return [(e["loss"], e["val_loss"]) for e in json.loads(meta["history"])]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        (meta_a, a), (meta_b, b) = read(sys.argv[1]), read(sys.argv[2])
        la, lb = losses(meta_a), losses(meta_b)
    except (OSError, ValueError, KeyError, struct.error) as e:
        print(f"cannot read a checkpoint: {e}")
        sys.exit(2)
    same = a == b
    print("same tensor bytes" if same else "DIFFERENT tensor bytes")
    same_loss = la == lb
    print("same epoch losses" if same_loss else f"DIFFERENT epoch losses: {la} {lb}")
    sys.exit(0 if same and same_loss else 1)


main()
