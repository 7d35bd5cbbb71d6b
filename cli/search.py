"""`attnsim search`: the mask parameters that reach a target speed (the model is attnsim.simulator.search's)."""
from __future__ import annotations

import json
import os
import sys

import click


@click.command(context_settings={"max_content_width": 110})
@click.option("--variant", required=True, metavar="NAME", help="a variant with parameters to search: gna, na, swa, moba, "
              "vmoba, segment, moa")
@click.option("--hw", "hardware", default="h100", show_default=True, metavar="NAME", help="hardware profile (name or YAML path)")
@click.option("--kernel", default=None, metavar="FAMILY", help="kernel family [default: the hardware's]")
@click.option("--vary", required=True, metavar="LIST", help="parameters to enumerate, joined by commas (e.g. stride,q_tile,kv_tile)")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="a fixed -p value; for a varied parameter its candidates, joined by ';' (-p stride=4x8;8x16, "
                   "-p window_size=512,0;1024,0), or for a one-number parameter a range: a..b doubles from a, "
                   "a..b:s steps by s (-p stride=1..512:1); repeatable")
@click.option("--token-shape", default=None, metavar="AxBxC", help="na/gna/vmoba: the token grid")
@click.option("--seqlen", default=None, type=click.IntRange(1), help="tokens per sequence [default 4096; a grid: its product]")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1), help="sequences per batch")
@click.option("--heads", default=32, show_default=True, type=click.IntRange(1), help="query heads")
@click.option("--kv-heads", default=None, type=click.IntRange(1), help="key/value heads [default: --heads]")
@click.option("--head-dim", default=128, show_default=True, type=click.IntRange(1), help="head dim")
@click.option("--dtype", default="bf16", show_default=True, type=click.Choice(["bf16", "fp16", "fp8"]),
              help="input dtype")
@click.option("--phase", default="prefill", show_default=True, type=click.Choice(["prefill", "train"]),
              help="prefill (forward) or train (forward + backward)")
@click.option("--causal", is_flag=True, help="causal mask (na/gna: every dimension; -p is_causal per dimension)")
@click.option("--objective", default="time", show_default=True, type=click.Choice(["time", "speedup"]),
              help="rank by predicted time, or by speedup over dense attention (the same order at one problem size)")
@click.option("--top", default=20, show_default=True, type=click.IntRange(0),
              help="the best candidates to print, and to write with --json or -o (0: every one that meets the constraints)")
@click.option("--min-reach", default=None, metavar="N|P%",
              help="keep candidates whose queries see at least N keys (mean), or P% of the dense (non-causal) pairs")
@click.option("--max-time", default=None, type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="keep candidates predicted to take at most this many seconds")
@click.option("--budget", default=None, type=click.IntRange(1), metavar="N",
              help="moa --vary spans: candidates are spans per head group (powers of two) whose mean is at most N")
@click.option("--groups", default=None, type=click.IntRange(1, 64),
              help="moa --vary spans: head groups of the candidate span lists [default: 4]")
@click.option("--uncalibrated", is_flag=True, help="the raw model (default: the shipped calibration)")
@click.option("--json", "as_json", is_flag=True, help="print JSON: evaluated, illegal, candidates, pareto, ...")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="write the ranked candidates (--top of them) as CSV, one row each")
@click.option("--force", is_flag=True, help="search more than 131,072 combinations")
def search(variant, hardware, kernel, vary, params, token_shape, seqlen, batch, heads, kv_heads, head_dim, dtype, phase,
           causal, objective, top, min_reach, max_time, budget, groups, uncalibrated, as_json, output, force):
    """Enumerate every legal combination of the varied mask parameters, price each as 'attnsim predict'
    does, and print the best: predicted time, bound, speedup over dense attention (as predict: dense
    non-causal attention on the same kernel family; by time, useful FLOPs, live tiles and iterated tiles),
    the useful fraction of executed FLOPs, partial tiles, whether the mask is fully block-sparse (no
    partial tile), and its reach (keys each query sees; the fraction of the dense non-causal pairs kept,
    at most about 50% under --causal). Then the Pareto front of speedup against reach (one candidate
    per point: ties are not listed), and, when the stride varies over a fixed window, the smallest stride
    that makes the mask fully block-sparse for the family's tiles (fewest product; a larger stride need
    not be block-sparse) with, on a grid of several dimensions, every minimal one.

    \b
    Default candidates when a varied parameter has no -p values: stride 1..kernel_size per dimension;
    dilation 1..extent/kernel_size; kernel_size 1..extent (odd sizes); q_tile/kv_tile the power-of-two
    boxes holding a tile side the kernel family runs; window_size, block_size, segments powers of two;
    top_k 1..8. Combinations the rules forbid (stride > kernel_size, kernel_size x dilation > extent, a
    tile the family cannot run) are counted by reason, never ranked.

    \b
    Examples:
      attnsim search --variant gna --hw b200 --token-shape 32768 -p kernel_size=2048 --vary stride
      attnsim search --variant gna --hw h100 --token-shape 16x32 -p kernel_size=8x16 --vary stride,q_tile,kv_tile
      attnsim search --variant swa --seqlen 32768 --causal --vary window_size -p "window_size=1024,0;4096,0;8192,0"
      attnsim search --variant moba --seqlen 65536 --vary block_size,top_k --min-reach 10%
      attnsim search --variant moa --seqlen 16384 --causal --vary spans --budget 2048 --groups 4
    """
    from attnsim.simulator import search as Q
    from attnsim.simulator import sweep as S
    from attnsim.simulator.errors import AttnsimError
    if groups is not None and budget is None:
        raise click.UsageError("--groups sizes the candidate span lists of --budget (moa --vary spans): give --budget")

    names = [n.strip() for n in vary.split(",")]
    if not all(names):
        raise AttnsimError(f"--vary {vary!r}: an empty name; join names with commas")
    fixed, varied = {}, {n: None for n in dict.fromkeys(names)}
    for text in params:
        key, alts = S.alternatives(text)
        if key in varied:
            if varied[key] is not None:
                raise AttnsimError(f"-p {key} given twice; join its candidates with ';'")
            varied[key] = _candidates(key, alts)
        else:
            if key in fixed:
                raise AttnsimError(f"-p {key} given twice")
            if len(alts) > 1:
                raise AttnsimError(f"-p {key} has alternatives ({'; '.join(alts)}) but is not varied: add it to --vary")
            fixed[key] = alts[0]
    if token_shape is not None:
        if "token_shape" in fixed:
            raise AttnsimError("give the token grid once: --token-shape or -p token_shape")
        fixed["token_shape"] = token_shape
    workload = dict(batch=batch, heads=heads, kv_heads=kv_heads, head_dim=head_dim, dtype=dtype, phase=phase,
                    causal=causal)
    if seqlen is not None:
        workload["seqlen"] = seqlen
    spec = Q.Spec(variant=variant, hardware=hardware, vary=varied, fixed=fixed, workload=workload, kernel=kernel,
                  objective=objective, top=top, min_reach=min_reach, max_time=max_time, budget=budget,
                  groups=groups or 4,
                  calibration=None if uncalibrated else "default")
    if output is not None:
        if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
            raise AttnsimError(f"-o {output}: the folder {os.path.dirname(os.path.abspath(output))} does not exist")
        if not output.lower().endswith(".csv"):
            raise AttnsimError(f"-o {output}: attnsim search writes .csv")
    show = sys.stderr.isatty() and not as_json
    if show:
        with click.progressbar(length=1, label="searching", file=sys.stderr) as bar:
            last = [0]

            def progress(done, total):
                bar.length = total
                bar.update(done - last[0])
                last[0] = done
            res = Q.run(spec, force=force, progress=progress)
    else:
        res = Q.run(spec, force=force)
    if output is not None:
        _write_csv(res, list(varied), output)
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2))
        return
    _print(res, list(varied), spec)


def _candidates(name, alts):
    """A varied parameter's candidates: alternatives joined by ';', each a value or (for a number) a range
    in the sweep grammar (a..b doubling, a..b:s steps)."""
    from attnsim.simulator import sweep as S
    from attnsim.simulator.errors import AttnsimError
    out = []
    for a in alts:
        if ".." in a and "x" not in a and "," not in a:
            try:
                out += [str(v) for v in S.values(name, a)]
            except AttnsimError as e:  # the sweep's words name an option: this is -p NAME
                raise AttnsimError(str(e).replace(f"--{name}:", f"-p {name}:", 1)) from None
        elif ".." in a:
            raise AttnsimError(f"-p {name}={a}: ranges are for one number (a..b, a..b:s); give per-dimension "
                               f"candidates joined by ';' (e.g. 4x8;8x16)")
        else:
            out.append(a)
    return list(dict.fromkeys(out))


def _row(c, names):
    sp = c["speedup"]
    return ([c["params"][n] for n in names] + [c["kernel"], c["time_s"], c["bound_s"], sp["time"], sp["useful_flops"],
                                                sp["live_tiles"], sp["iterated_tiles"], c["useful_fraction"],
                                                c["tiles"]["full"], c["tiles"]["partial"], c["fully_block_sparse"],
                                                c["reach"]["keys_per_query"], c["reach"]["fraction"]])


HEADER = ["kernel", "time_s", "bound_s", "speedup_time", "speedup_useful_flops", "speedup_live_tiles",
          "speedup_iterated_tiles", "useful_fraction", "tiles_full", "tiles_partial", "fully_block_sparse",
          "reach_keys_per_query", "reach_fraction"]


def _write_csv(res, names, path):
    import csv
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names + HEADER)
            for c in res.candidates:
                w.writerow(_row(c, names))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _print(res, names, spec):
    from attnsim.simulator.problem import fmt_time
    click.echo(f"{res.evaluated:,} candidates priced of {res.total:,} combinations"
               + (f"; {sum(res.illegal.values()):,} illegal" if res.illegal else "")
               + (f"; {res.constrained_out:,} left out by the constraints" if res.constrained_out else ""))
    for reason, n in sorted(res.illegal.items(), key=lambda kv: -kv[1]):
        click.echo(f"  illegal ({n:,}): {res.illegal_examples.get(reason, reason)}")
    if not res.candidates:
        click.echo(f"no candidate: {res.reason}")
    else:
        cols = names + ["time", "bound", "speedup", "useful", "partial", "block-sparse", "keys/query", "reach"]
        rows = []
        for c in res.candidates:
            rows.append([c["params"][n] for n in names] + [
                fmt_time(c["time_s"]), fmt_time(c["bound_s"]), f"{c['speedup']['time']:.2f}x",
                f"{100 * c['useful_fraction']:.0f}%" if c["useful_fraction"] is not None else "-",
                f"{c['tiles']['partial']:,}", "yes" if c["fully_block_sparse"] else "no",
                f"{c['reach']['keys_per_query']:,.0f}", f"{100 * c['reach']['fraction']:.2f}%"])
        widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
        click.echo("  ".join(str(h).rjust(wd) for h, wd in zip(cols, widths)))
        for r in rows:
            click.echo("  ".join(str(x).rjust(wd) for x, wd in zip(r, widths)))
    if res.pareto:
        pts = ", ".join(f"{'/'.join(c['params'][n] for n in names)} ({c['speedup']['time']:.2f}x, "
                        f"{100 * c['reach']['fraction']:.2f}%)" for c in res.pareto[:12])
        click.echo(f"Pareto front (speedup vs reach, {len(res.pareto)}): {pts}" + (" ..." if len(res.pareto) > 12 else ""))
    if res.minimal_strides is not None:
        click.echo("smallest fully block-sparse stride: " + (res.fully_block_sparse_min_stride or
                                                               "none (every stride leaves partial tiles)"))
        if len(res.minimal_strides) > 1:
            click.echo(f"  minimal block-sparse strides (none smaller in every dimension): "
                       f"{', '.join(res.minimal_strides[:16])}" + (" ..." if len(res.minimal_strides) > 16 else ""))
    elif "stride" in names:
        click.echo("smallest fully block-sparse stride: not reported (the window varies: kernel_size or dilation)")
