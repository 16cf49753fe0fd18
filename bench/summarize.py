#!/usr/bin/env python3
"""The tables issue 8 asks for, from what `bench/device-check.sh` left in one folder.

    python3 bench/summarize.py OUT [> summary.md]

Reads ours*.json (`bench --json`), torch-*.json (`torch_ae.py --json`), jax-*.json
(`jax_ae.py --json`), profile-*.txt, test-*.txt, folds-*-same-bits.txt and device-check.log,
and prints Markdown: the same-call table (seconds per steady-state epoch, each peer's best
variant, ours against the strongest), the before/after rows the script's paired benches give,
the folds the start-up timing tried, every profile's dispatches and times, the tests' results
on the card, the bit checks and the failed steps. Anything missing is named as missing, never filled in. Standard library only: it runs
on the device machine at the end of the check, and here on the files that came back.
"""
import glob
import json
import os
import re
import sys

MODELS = ("conv", "dense")
# Issue 8's targets, seconds per epoch on the H200 or H100.
TARGETS = {"conv": (0.11, "0.11"), "dense": (0.010, "0.010")}


def load(folder, name):
    path = os.path.join(folder, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ours(folder, name, model):
    """Our `bench` record of `model` in `name`, or None."""
    rows = load(folder, name) or []
    return next((r for r in rows if r.get("model") == model), None)


def peers(folder, model):
    """{variant: s/epoch} of the peers' records for `model`."""
    found = {}
    for name in (f"torch-{model}.json", f"jax-{model}.json"):
        for r in load(folder, name) or []:
            if r.get("model") == model and "median_train_epoch_s" in r:
                found[r["variant"]] = r["median_train_epoch_s"]
    return found


def secs(v):
    return "missing" if v is None else f"{v:.4f}"


def same_call(folder):
    out = ["## Same call: seconds per steady-state epoch", ""]
    card = next((r for m in MODELS if (r := ours(folder, "ours.json", m))), None)
    if card:
        out.append(f"Card: {card.get('adapter')} ({card.get('backend')}, driver {card.get('driver')}).")
        out.append("")
    out.append("| model | ours | PyTorch eager | PyTorch, CUDA graph | JAX, `lax.scan` epoch "
               "| strongest peer | ours vs it | target |")
    out.append("|---|---:|---:|---:|---:|---|---:|---|")
    for m in MODELS:
        mine = ours(folder, "ours.json", m)
        s = mine and mine.get("seconds_per_epoch")
        p = peers(folder, m)
        best = min(p.items(), key=lambda kv: kv[1]) if p else None
        ratio = f"{best[1] / s:.2f}×" if best and s else "missing"
        target, shown = TARGETS[m]
        verdict = "missing" if s is None else f"≤ {shown}: {'met' if s <= target else 'not met'}"
        out.append(f"| {m} | {secs(s)} | {secs(p.get('eager'))} | {secs(p.get('graph'))} "
                   f"| {secs(p.get('jax-scan'))} | {best[0] if best else 'missing'} | {ratio} | {verdict} |")
    out.append("")
    out.append("ours vs it: the strongest peer's seconds over ours (above 1: we are faster).")
    out += ["", "Correctness and memory beside the speed: the last epoch's validation loss of each "
            "(the same 5 epochs, seeds differ), and our GPU buffers (issue 8: conv at batch 256 "
            "under 256 MiB).", "",
            "| model | ours val_loss | peers' val_loss | our GPU MiB |", "|---|---:|---|---:|"]
    for m in MODELS:
        mine = ours(folder, "ours.json", m) or {}
        loss = mine.get("final_val_loss")
        theirs = ", ".join(f"{v} {l:.4f}" for v, l in peer_losses(folder, m).items()) or "missing"
        mib = mine.get("gpu_buffer_bytes")
        mem = "missing" if mib is None else f"{mib / 2**20:.1f}"
        if m == "conv" and mib is not None:
            mem += " (≤ 256: " + ("met" if mib <= 256 * 2**20 else "not met") + ")"
        out.append(f"| {m} | {secs(loss)} | {theirs} | {mem} |")
    return out


def peer_losses(folder, model):
    """{variant: the last epoch's val_loss} of the peers' records for `model`."""
    found = {}
    for name in (f"torch-{model}.json", f"jax-{model}.json"):
        for r in load(folder, name) or []:
            epochs = r.get("epochs") or []
            if r.get("model") == model and epochs and "val_loss" in epochs[-1]:
                found[r["variant"]] = epochs[-1]["val_loss"]
    return found


def before_after(folder):
    out = ["## Before and after, same call", "",
           "| change | model | before s/epoch | after s/epoch | before ms/step | after ms/step | after/before |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        # The folds' pair ran in core's call; the other two beside a bench of their own with
        # the same model-wide folds (ours-picked: a flag cannot name per-layer variants), in
        # extra's call, and against ours.json only where an older script left no such bench.
        picked = ours(folder, f"ours-picked-{m}.json", m) or ours(folder, "ours.json", m)
        rows = [("folds (none → picked)", ours(folder, "ours-unfolded.json", m), ours(folder, "ours.json", m)),
                ("steps per execution (1 → auto)", ours(folder, f"ours-one-per-submit-{m}.json", m), picked),
                ("naga loop bounding (on → off)", ours(folder, f"ours-loop-bounding-{m}.json", m), picked)]
        if m == "dense":
            rows.append(("adam (off → picked)", ours(folder, "ours-without-adam-dense.json", m), picked))
        for what, before, after in rows:
            b = before and before.get("seconds_per_epoch")
            a = after and after.get("seconds_per_epoch")
            bms = before and before.get("ms_per_step")
            ams = after and after.get("ms_per_step")
            ratio = f"{a / b:.3f}" if a and b else "missing"
            out.append(f"| {what} | {m} | {secs(b)} | {secs(a)} | {secs(bms)} | {secs(ams)} | {ratio} |")
    out.append("")
    return out


def timing(folder):
    out = ["## Folds picked at start-up (`ours.json`)", ""]
    for m in MODELS:
        r = ours(folder, "ours.json", m)
        if not r:
            out += [f"{m}: missing", ""]
            continue
        by = r.get("folds_by") or {}
        took = f" in {by['seconds']:.2f} s" if "seconds" in by else ""
        out.append(f"{m}: folds `{r.get('folds', 'missing')}`, chosen by {by.get('by', 'missing')}{took};"
                   f" {r.get('steps_per_execution', 'missing')} steps per submit;"
                   f" layers with variants of their own: {', '.join(r.get('layer_folds') or {}) or 'none'}")
        trials = by.get("trials") or []
        if trials:
            out += ["", "| folds | dispatches | µs per step |", "|---|---:|---:|"]
            out += [f"| {t['folds']} | {t['dispatches']} | {t['us_per_step']:.1f} |" for t in trials]
        layers = by.get("layers") or []
        if layers:
            out += ["", "| layer | variant flipped to | µs picked | µs flipped | kept |",
                    "|---|---|---:|---:|---|"]
            out += [f"| {t['layer']} | {t['variant']} {'on' if t['on'] else 'off'} | {t['us_picked']:.1f} "
                    f"| {t['us_flipped']:.1f} | {'yes' if t['kept'] else 'no'} |" for t in layers]
        out.append("")
    return out


def profiles(folder):
    out = ["## Profiles", "", "| file | dispatches per step | kernels ms/step | wall ms/step |",
           "|---|---:|---:|---:|"]
    for path in sorted(glob.glob(os.path.join(folder, "profile-*.txt"))):
        text = open(path, errors="replace").read()
        d = re.search(r"(\d+) dispatches per step", text)
        k = re.search(r"= ([\d.]+) ms per step", text)
        w = re.search(r"step wall time ([\d.]+) ms", text)
        cell = lambda m: m.group(1) if m else "missing"
        out.append(f"| {os.path.basename(path)} | {cell(d)} | {cell(k)} | {cell(w)} |")
    out.append("")
    return out


def checks(folder):
    out = ["## Checks", ""]
    # The staged test binaries on the card: libtest's summary line, and each failed test.
    for name in ("test-ops.txt", "test-training.txt"):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            out.append(f"- {name}: missing")
            continue
        text = open(path, errors="replace").read()
        result = re.findall(r"^test result: .*$", text, re.M)
        failed = re.findall(r"^test (\S+) \.\.\. FAILED$", text, re.M)
        out.append(f"- {name}: {result[-1] if result else 'no result line (crashed or killed)'}"
                   + (f"; failed: {', '.join(failed)}" if failed else ""))
    for path in sorted(glob.glob(os.path.join(folder, "folds-*-same-bits.txt"))):
        text = " / ".join(line.strip() for line in open(path, errors="replace") if line.strip())
        out.append(f"- {os.path.basename(path)}: {text or 'empty'}")
    log = os.path.join(folder, "device-check.log")
    if os.path.exists(log):
        failed = [line.strip() for line in open(log) if re.search(r"rc=(?!0 )\d+", line)]
        out.append(f"- failed steps: {', '.join(failed) if failed else 'none'}")
    else:
        out.append("- device-check.log: missing")
    out.append("")
    return out


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: summarize.py OUT (the folder bench/device-check.sh wrote)")
    folder = sys.argv[1]
    lines = same_call(folder) + [""] + before_after(folder) + timing(folder) + profiles(folder) + checks(folder)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
