"""A fixed corpus of predictions for redesigns: run it before and after a change and compare.

    python benchmarks/corpus.py -o before.jsonl          # every case's `predict --json` (or its error line)
    python benchmarks/corpus.py --compare before.jsonl   # rerun, print each case whose output changed

A redesign that keeps behaviour prints "0 of N cases changed". The corpus is every variant on
several GPUs, phases, masks and scopes (2,400 cases, about 20 s); it checks equality, it asserts nothing
about what the numbers should be.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys

from click.testing import CliRunner

from attnsim.cli import cli

# each variant with arguments it needs (and one variation of its parameters)
VARIANT_ARGS = {
    "mha": [[]], "gqa": [["--kv-heads", "8"], ["--kv-heads", "4", "-p", "q_per_step=4"]], "mqa": [[]],
    "swa": [["-p", "window_size=512,0"], ["-p", "window_size=1000", "-p", "sink=4"],
            ["-p", "window_size=256,0", "-p", "attention_chunk=1024"]],
    "segment": [["-p", "segments=1024"], ["-p", "levels=256,1024"], ["-p", "segments=1000,1000,2096"]],
    "moba": [[], ["-p", "density=0.3"]],
    "vmoba": [["--token-shape", "16x32x8", "-p", "block=4x8x8"]],
    "moa": [[], ["-p", "spans=512,1024", "-p", "betas=0.1,0.2"]],
    "sparse": [[], ["-p", "clusters=4", "-p", "select=scores"]],
    "topk": [[]], "dma": [[]],
    "duplex": [["-p", "segments=1024,1024,2048"]],
    "varlen": [["--seqlens", "100,2000,4096,333"], ["--seqlens", "uniform:64:3000", "--batch", "6", "-p", "layout=padded"]],
    "na": [["--token-shape", "64x64", "-p", "kernel_size=13x13"], ["--token-shape", "16x16x16", "-p", "kernel_size=7"]],
    "gna": [["--token-shape", "128x128", "-p", "kernel_size=32x32", "-p", "stride=8x8"],
            ["--token-shape", "4096", "-p", "kernel_size=512", "-p", "stride=256", "-p", "token_order=rowmajor"]],
    "sqa": [[]], "ssqa": [[]], "xsqa": [[]],
    "mla": [[], ["-p", "absorb=false"]], "kvcompress": [["--kv-heads", "8", "-p", "rank=256"]],
    "cca": [[]], "ccgqa": [["--kv-heads", "8"]],
    "moh": [[], ["-p", "impl=ideal"]], "uoe": [[]], "prune": [["-p", "pruned_heads=8"]],
    "shvit": [["--d-model", "512", "--heads", "1", "--scope", "layer"]],
    "rcmha": [[]], "complexformer": [[]], "gaam": [[]], "eager": [[]],
}
HARDWARE = ["a100", "h100", "b200", "mi300x", "rtx4090"]
SHAPES = [["--seqlen", "4096"], ["--seqlen", "1000", "--batch", "3"]]


def cases():
    for variant, arg_sets in VARIANT_ARGS.items():
        for args, hw, phase, causal, shape in itertools.product(arg_sets, HARDWARE, ("prefill", "decode", "train"),
                                                                (False, True), SHAPES):
            grid = any(a in ("--token-shape", "--seqlens") for a in args)
            if grid and shape is not SHAPES[0]:
                continue
            if phase == "decode":
                shape = [] if grid else ["--seqlen-kv", shape[1]] + shape[2:]
            elif grid:
                shape = []
            extra = ["--causal"] if causal else []
            yield ["predict", "--json", "--variant", variant, "--hw", hw, "--phase", phase, *shape, *extra, *args]
        yield ["predict", "--json", "--variant", variant, "--hw", "h100", "--scope", "layer",
               *(["--token-shape", "32x32"] if variant in ("na", "gna", "vmoba") else []),
               *(["--seqlens", "100,300"] if variant == "varlen" else []),
               *(arg_sets[0] if variant not in ("na", "gna", "vmoba", "varlen", "shvit") else [])]


def run_all():
    runner = CliRunner()
    out = []
    for args in cases():
        r = runner.invoke(cli, args)
        out.append({"args": args, "exit": r.exit_code,
                    "out": json.loads(r.stdout) if r.exit_code == 0 else (r.stderr or r.output).strip()})
    return out


def diff(a, b, path="", rel=1e-12):
    """The paths where two JSON values differ (numbers beyond `rel`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{path}.{k} only in {'after' if k in b else 'before'}"
            else:
                yield from diff(a[k], b[k], f"{path}.{k}", rel)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]", rel)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not math.isclose(a, b, rel_tol=rel, abs_tol=0.0):
            yield f"{path}: {a!r} -> {b!r}"
    elif a != b:
        yield f"{path}: {str(a)[:80]!r} -> {str(b)[:80]!r}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", help="write the corpus's outputs here (JSON Lines)")
    ap.add_argument("--compare", help="a file written by -o: print the cases whose output changed")
    ap.add_argument("--rel", type=float, default=1e-12, help="relative tolerance on numbers [1e-12]")
    a = ap.parse_args()
    now = run_all()
    if a.output:
        with open(a.output, "w") as f:
            for row in now:
                f.write(json.dumps(row) + "\n")
        print(f"{len(now)} cases written to {a.output}")
    if a.compare:
        with open(a.compare) as f:
            before = {json.dumps(r["args"]): r for r in map(json.loads, f)}
        changed = 0
        for row in now:
            old = before.get(json.dumps(row["args"]))
            if old is None:
                print("new case:", " ".join(row["args"]))
                continue
            d = list(diff({"exit": old["exit"], "out": old["out"]}, {"exit": row["exit"], "out": row["out"]}, rel=a.rel))
            if d:
                changed += 1
                print(" ".join(row["args"]))
                for line in d[:8]:
                    print("   ", line)
        print(f"{changed} of {len(now)} cases changed")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
