"""The `attnsim` command line: predict, hw list/show, variants.

Bad input never prints a traceback: it exits with code 2 and one line saying what is wrong and
what is allowed. `predict` imports the simulator only (numpy, yaml), never torch/triton/cupy.
"""
from __future__ import annotations

import json
import shlex
import sys

import click

from attnsim import __version__


# click >= 8.2 raises this (a UsageError) for a group run without a command; 8.1 prints the help itself
_NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """Turns every usage error and AttnsimError into one line on stderr and exit code 2; a group run
    without a command (`attnsim`, `attnsim hw`) prints its help on stdout and exits 0. Commands whose
    module is heavy (`validate`) are imported only when run or listed (`_LAZY`)."""

    # name -> (module, attribute, the short help `attnsim --help` shows without importing the module)
    _LAZY = {"validate": ("attnsim.validation.validate", "validate",
                          "Measure kernels and ceilings on this GPU: records for calibrate and report"),
             "sweep": ("attnsim.cli.sweep", "sweep",
                       "Price the cartesian product of lists and ranges: one row per configuration (CSV, Parquet, JSON, XLSX)"),
             "plot": ("attnsim.cli.plot", "plot",
                      "Charts (matplotlib): a prediction's roofline, or curves from a sweep file"),
             "search": ("attnsim.cli.search", "search",
                        "Find the mask parameters that reach a target speed (stride, tiles, windows, blocks)")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | (set(self._LAZY) if self is cli else set()))

    def format_commands(self, ctx, formatter):
        """click's command list, with a lazy command's short help taken from `_LAZY` (not imported)."""
        rows = []
        for name in self.list_commands(ctx):
            if self is cli and name in self._LAZY and name not in self.commands:
                rows.append((name, self._LAZY[name][2]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c if isinstance(c, str) else c.get_short_help_str(limit)) for name, c in rows])

    def get_command(self, ctx, name):
        if self is cli and name in self._LAZY and name not in self.commands:
            import importlib
            module, attr, _ = self._LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from attnsim.simulator.errors import AttnsimError
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_COMMAND as e:
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            hint = f" See '{e.ctx.command_path} --help'." if e.ctx is not None else ""
            click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(2)
        except AttnsimError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, invoke_without_command=False, no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attnsim")
def cli():
    """attnsim: what does this attention variant cost on that GPU?

    \b
    Examples:
      attnsim predict --variant gqa --hw h100 --seqlen 8192 --heads 32 --kv-heads 8 --causal
      attnsim predict --variant mha --hw a100 --phase decode --seqlen-kv 32768 --json
      attnsim compare --hw b200 --token-shape 256x256 --case mha --case "gna kernel_size=80x80"
      attnsim hw list
      attnsim variants
    """


def _fmt_time(t):
    from attnsim.simulator.problem import fmt_time  # one format for the CLI and the notes the simulator writes
    return fmt_time(t)


def _fmt_bytes(b):
    """Traffic in decimal units (bandwidths are decimal)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.2f} {unit}"
    return f"{b:.0f} B"


def _fmt_capacity(b):
    """Memory sizes in binary units (an '80 GB' H100 holds 80 GiB)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.2f} {unit}"
    return f"{b:.0f} B"


_WORKLOAD_OPTIONS = [
    click.option("--hw", "hw_name", default="h100", show_default=True,
                 help="hardware profile name or alias (see 'attnsim hw list') or a path to a YAML profile"),
    click.option("--kernel", default=None, help="kernel family: fa2|fa3|fa4|cudnn|ck|triton|attnsim|eager [default: per hardware]"),
    click.option("--batch", type=int, default=1, show_default=True, help="sequences per batch"),
    click.option("--seqlen", type=int, default=None,
                 help="query tokens per sequence [default: 4096]; decode: the context when --seqlen-kv is not given"),
    click.option("--seqlen-kv", type=int, default=None, help="key/value tokens per sequence [default: --seqlen]; decode: the context"),
    click.option("--seqlens", default=None, metavar="a,b,c|uniform:LO:HI",
                 help="varlen: per-sequence lengths (decode: contexts), or a distribution sampled for --batch"),
    click.option("--token-shape", default=None, metavar="AxBxC",
                 help="na/gna: the token grid, row-major (e.g. 256x256 or 30x48x80); sets --seqlen to its product"),
    click.option("--heads", type=int, default=32, show_default=True, help="query heads"),
    click.option("--kv-heads", type=int, default=None,
                 help="key/value heads [mha: = --heads; mqa: 1; gqa: 8 when it divides --heads]"),
    click.option("--head-dim", type=int, default=None, help="head dim of Q and K [default: 128]"),
    click.option("--head-dim-v", type=int, default=None, help="head dim of V and O [default: --head-dim]"),
    click.option("--dtype", default="bf16", show_default=True, help="compute dtype: bf16, fp16, fp8 (where the hardware has it)"),
    click.option("--kv-dtype", default=None, help="KV-cache storage dtype: bf16, fp16, fp8 [default: --dtype]"),
    click.option("--qk-accum", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]),
                 help="accumulate type of QK^T"),
    click.option("--pv-accum", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]),
                 help="accumulate type of PV"),
    click.option("--phase", default="prefill", show_default=True, type=click.Choice(["prefill", "decode", "train"]),
                 help="prefill = forward; decode = one step; train = forward + backward"),
    click.option("--causal", is_flag=True, help="causal mask, bottom-right aligned when seqlen < seqlen-kv"),
    click.option("--scope", default="attention", show_default=True, type=click.Choice(["attention", "layer"]),
                 help="attention = the core op; layer = with Q/K/V and output projections"),
    click.option("--d-model", type=int, default=None, help="model width for --scope layer [default: heads x head-dim]"),
    click.option("--rope-dim", type=int, default=None,
                 help="--scope layer: RoPE channels per query/key head [default: the head dim; 0: no RoPE]"),
    click.option("--uncalibrated", is_flag=True,
                 help="the raw model: no calibration (default: the shipped calibration of the GPU and kernel, "
                      "fitted to published measurements; $ATTNSIM_CALIBRATION names another file, or none)"),
    click.option("--calibration", "calibration_file", type=click.Path(dir_okay=False), default=None,
                 help="a calibration file of 'attnsim calibrate' instead of the shipped one"),
]


def _workload_options(f):
    """The workload flags shared by predict and compare."""
    for opt in reversed(_WORKLOAD_OPTIONS):
        f = opt(f)
    return f


@cli.command()
@click.option("--variant", default="mha", show_default=True, help="attention variant (see 'attnsim variants')")
@_workload_options
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="variant parameter, repeatable (grammar: 'attnsim variants')")
@click.option("--parallel", default=None, metavar="tp=N|cp=N|ulysses=N|tpla=N[,...]",
              help="run on a cluster --hw (e.g. 8xh100-nvlink, 4xrtx4090-pcie): tp = heads split, cp = ring "
                   "attention (-p zigzag=true|false), ulysses = all-to-all head/sequence swap, tpla = MLA's latent "
                   "sharded; combine with commas (ulysses=2,cp=4)")
@click.option("--ranks", default=None, metavar="1,2,4,8",
              help="with --parallel of one scheme: a scaling table over these rank counts")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (the contract in docs/design.md)")
@click.option("--explain", is_flag=True, help="append a legend of the human output (docs/legend.md)")
def predict(as_json, explain, parallel=None, ranks=None, **opts):
    """Predict the time of one call of an attention op of one layer (train: forward + backward;
    decode: one step for each of --batch sequences); on a cluster with --parallel."""
    if as_json and explain:
        raise click.UsageError("--explain explains the human output; with --json see docs/design.md (drop one).")
    from attnsim.simulator.cluster import is_cluster_name
    if parallel is not None or ranks is not None or is_cluster_name(opts["hw_name"]):
        if explain:
            raise click.UsageError("--explain explains the single-GPU output; on a cluster see docs/design.md "
                                   "section 12 (drop one).")
        from attnsim.cli.parallel import predict_parallel_cli
        predict_parallel_cli(parallel, ranks, as_json, **opts)
        return
    pred, resolved = _predict(**opts)
    if as_json:
        out = pred.to_json()
        out["params"] = _params_json(resolved)
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(render(pred))
        if explain:
            click.echo("\n" + LEGEND)


def _params_json(resolved):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}


def _predict(variant, params, hw_name, kernel, uncalibrated=False, calibration_file=None, **shapes):
    """Option plumbing: the options of `predict` -> (Prediction, the variant's resolved parameters);
    the resolution itself is attnsim.simulator.problem's."""
    from attnsim.simulator.problem import predict_problem, resolve
    if uncalibrated and calibration_file:
        raise click.UsageError("--uncalibrated and --calibration contradict each other (drop one).")
    calibration = None if uncalibrated else calibration_file or "default"
    pred = predict_problem(resolve(variant, params, kernel=kernel, hw=hw_name, **shapes), calibration=calibration)
    return pred, pred.params


# `predict --explain`. docs/legend.md says the same at more length (tests/test_cli_friction.py checks the terms).
LEGEND = """\
legend (docs/legend.md):
  time           predicted time of one call: every kernel of the op at the sustained clock (clock_sustained_hz),
                 with launch overhead, tiles, waves and DRAM latency priced
  bound          speed of light: each unit's useful work at its peak rate at the maximum clock (clock_max_hz),
                 all units overlapped, no tiles or launches; no implementation beats it. X-limited: the unit
                 that sets it; time/bound >= 1
  recompute P    train bound: the backward recomputes S = QK^T and P = softmax(S) (FlashAttention): one more
                 QK^T matmul and a second exp per live pair, P never stored
  keep P in HBM  train bound: the forward writes P to HBM and the backward reads it (eager): fewer FLOPs
                 and exps, more HBM bytes; the bound takes the cheaper of the two and names it
  achieved       useful FLOPs / predicted time
  FLOPs          useful: live (query, key) pairs only; executed: every element of every visited tile, head
                 dims padded
  tiles          the score matrix of each (batch, head) cut into BLOCK_M x BLOCK_N tiles: full (every pair
                 live), partial (some live: masked inside), empty (none live: skipped); live tiles = full +
                 partial; iterated = the tiles the kernel visits (shown when it differs from the live ones);
                 waves = CTAs / (SMs x CTAs per SM)
  tile           128x64 w4 s2 = BLOCK_M (query rows per CTA) x BLOCK_N (key/value rows per inner step),
                 w4 = 4 warps per CTA (32 threads each), s2 = 2 pipeline stages (K/V tiles in flight)
  speedup        over dense attention, four ways: useful FLOPs (dense's / this), live tiles (all tiles of the
                 grid / live tiles), iterated tiles (all tiles / iterated tiles), predicted time (dense at its
                 own best tile / this)
  limit          what sets a kernel's time: tensor (tensor-core matmuls), exp (exponentials: SFU, or emulated
                 on the FP32 pipes), fp32 (other FP32 work: a score function, RoPE, norms), smem (shared-memory
                 traffic), hbm (HBM bandwidth), l2 (L2 bandwidth, where the profile sources one), latency (DRAM
                 latency not hidden: fill and drain, too few stages in flight), issue (the attnsim family: its
                 compiled main loop's warp instructions, at the SM's issue rate); schedule is not a limit label
                 but a kernel's makespan of its CTAs on the SMs, among its unit times in --json"""


def _accuracy(c, calibrated) -> str:
    """The error stated next to a time: the calibration's held-out error, or that it has none."""
    if not calibrated:
        return "(uncalibrated: the raw model)"
    if not c or not c.get("group"):
        return "(calibrated; no held-out error known)"
    err = f"±{c['stated_mape']:.0f}%" if c.get("stated_mape") is not None else "±?"
    if c.get("transferred_from"):
        return f"{err} (fit of {c['transferred_from']} carried over; not measured here)"
    kinds = sorted({s.split(":")[0] for s in c.get("sources", [])})
    if any(q.startswith("approx") for q in c.get("quality") or ()):
        kinds = [k + " chart-read" for k in kinds]  # values read off a chart, not printed numbers
    return f"{err} held out on {c['rows']} {'/'.join(kinds) or ''} rows ({c['group']})"


def render(pred) -> str:
    """The compact human view of a Prediction."""
    j = pred.to_json()
    w = pred.workload
    hw = pred.hardware
    useful, executed = j["useful_flops"], j["flops"]
    lines = [
        f"{j['variant']} on {hw.name} · kernel {j['kernel']} · {w.phase} · {w.dtype}"
        + (f" (KV {w.kv_dtype})" if w.kv_dtype != w.dtype else "") + f" · scope {j['scope']}"
        + (f" (d_model {j['workload']['d_model']})" if "d_model" in j["workload"] else ""),
        f"  workload   batch {w.batch} · " + (
            f"seqlen {w.seqlen_q} -> {w.seqlen_kv}" if w.seqlens is None else
            f"seqlens mean {sum(w.seqlens) / len(w.seqlens):.0f}, max {max(w.seqlens)}"
            + (f" (contexts; {w.seqlen_q} query token{'s' * (w.seqlen_q != 1)} per step)" if w.phase == "decode"
               else "")) + f" · heads {w.heads_q}/{w.heads_kv} kv"
        f" · head dim {w.head_dim_qk}/{w.head_dim_v}" + (" · causal" if w.causal else ""),
        f"  time       {_fmt_time(j['time_s'])} {_accuracy(j['calibration'], j['calibrated'])}"
        f"  (bound {_fmt_time(j['bound_s'])}, {j['bound']}-limited"
        + (f" with {j['bound_strategy']}" if j.get("bound_strategy") else "")
        + f"; time/bound {j['time_s'] / j['bound_s']:.2f})",
        f"  achieved   {j['achieved_tflops']:.1f} TFLOP/s on useful FLOPs",
        f"  FLOPs      useful {useful:.4g} · executed {executed:.4g} ({100 * useful / executed:.0f}% useful)"
        if executed else f"  FLOPs      useful {useful:.4g}",
        f"  HBM        {_fmt_bytes(j['hbm_bytes'])} moved · KV cache {_fmt_capacity(j['kv_cache_bytes'])}"
        f" · memory {_fmt_capacity(j['memory_bytes'])} of {_fmt_capacity(j['hbm_capacity_bytes'])}"
        + (" (fits)" if j["fits"] else " (DOES NOT FIT on this device)"),
        f"  tiles      full {j['tiles']['full']:,} · partial {j['tiles']['partial']:,} · empty {j['tiles']['empty']:,}"
        + (f" · iterated {j['tiles_iterated']:,}" if j["tiles_iterated"] != j["tiles"]["full"] + j["tiles"]["partial"]
           else "") + f" · waves {j['waves']:.2f}",
        *([f"  speedup    over dense: {sp['useful_flops']:.2f}x by useful FLOPs · {sp['live_tiles']:.2f}x by live tiles"
           f" · {sp['iterated_tiles']:.2f}x by iterated tiles · {sp['time']:.2f}x predicted time"
           f" (dense {_fmt_time(sp['dense_time_s'])})"] if (sp := j.get("speedup")) and all(
              sp[k] for k in ("useful_flops", "live_tiles", "iterated_tiles")) else []),
        *([f"  varlen     {j['workload']['seqlens_count']} sequences of {j['workload']['seqlens_min']}.."
           f"{j['workload']['seqlens_max']} tokens (mean {j['workload']['seqlens_mean']:.0f}) · packed "
           f"{_fmt_time(vl['packed_time_s'])} vs padded {_fmt_time(vl['padded_time_s'])} "
           f"({vl['padded_over_packed']:.2f}x)"] if (vl := j.get("varlen")) else []),
        *(["  layout     " + " · ".join(f"{k} {v}" for k, v in j["layout"].items())] if j.get("layout") else []),
        *([f"  train      activations saved for the backward {_fmt_capacity(j['activation_bytes'])}"]
          if j.get("activation_bytes") is not None else []),
        *([f"  vs {alt['impl']:<7} {_fmt_time(alt['time_s'])} ({alt['time_s'] / j['time_s']:.2f}x this) · useful FLOPs "
           f"{alt['useful_flops']:.4g} · HBM {_fmt_bytes(alt['hbm_bytes'])} · memory {_fmt_capacity(alt['memory_bytes'])}"]
          if (alt := j.get("alternative")) else []),
        *([f"  vs fused   {c['kernel']} {_fmt_time(c['time_s'])}: eager takes {c['eager_over_fused_time']:.2f}x the time,"
           f" {c['eager_over_fused_hbm']:.1f}x the HBM traffic, {c['eager_over_fused_memory']:.1f}x the memory"
           f" ({_fmt_capacity(c['memory_bytes'])} fused)"] if (c := j.get("contrast")) else []),
        "  bound by unit (clock_max): "
        + " · ".join(f"{u} {_fmt_time(t)}" for u, t in j["unit_times_s"].items() if t > 0),
        f"  clocks     bound at clock_max {hw.clock_max_hz / 1e9:.3g} GHz; prediction at sustained "
        f"{pred.clock_hz / 1e9:.3g} GHz (--explain: a legend)",
        f"  {'kernel':<16}{'time':>12}  {'limit':<9}{'tile':<18}{'CTAs':>9}{'/SM':>5}{'waves':>8}",
    ]
    for k in j["kernels"]:
        grid = (f"{k['ctas']:>9}{k['ctas_per_sm']:>5}{k['waves']:>8.2f}" if k["ctas"] else f"{'-':>9}{'-':>5}{'-':>8}")
        lines.append(f"  {k['name']:<16}{_fmt_time(k['time_s']):>12}  {k['bound']:<9}{(k['tile'] or '-'):<18}{grid}"
                     + (f"  splits {k['splits']}" if k.get("splits", 1) > 1 else ""))
    if not j["calibrated"]:
        lines.append("  note: uncalibrated: efficiencies are 1 beyond what the model prices; published FlashAttention-2/3"
                     " runs take 1.3-1.6x such predictions, Triton 1.5-3x, eager 1.1-1.8x (benchmarks/bench_published.py)")
    elif (c := j["calibration"]) and c.get("group"):
        lines.append(f"  calibration {c['group']} ({c['file']}, {c['rows']} rows): "
                     + " · ".join(f"{k} {v:.3g}" for k, v in c["params"].items())
                     + (f"; {c['stated_error']}" if c.get("transferred_from") else ""))
    if j["kernel"] == "eager" and w.phase == "train":
        lines.append("  note: useful FLOPs count the backward eager runs: P kept from the forward (dV, dP, dQ, dK),"
                     " not FlashAttention's recomputed S (which counts 2 x head_dim_qk more per live pair)")
    for n in j["notes"]:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


@cli.command()
@click.option("--case", "cases", multiple=True, metavar='"VARIANT [KEY=VALUE ...]"',
              help="a variant with its -p parameters, repeatable; the first is the baseline [default: mha]")
@_workload_options
@click.option("--json", "as_json", is_flag=True, help="print a JSON list, one predict object per case")
def compare(cases, as_json, **opts):
    """Compare variants on one workload, side by side: time, bound, speedup over the first case.

    \b
    Example:
      attnsim compare --hw b200 --token-shape 256x256 --case mha \\
          --case "gna kernel_size=80x80" --case "gna kernel_size=80x80 stride=16x16"
    """
    from attnsim.simulator.cluster import is_cluster_name, load_cluster
    from attnsim.simulator.errors import AttnsimError
    from attnsim.simulator.variants import get_variant
    if is_cluster_name(opts["hw_name"]) and not str(opts["hw_name"]).endswith((".yaml", ".yml")):
        raise AttnsimError(f"compare runs on one GPU; --hw {opts['hw_name']} is a cluster: name its device "
                           f"({load_cluster(opts['hw_name']).device.key}), or use predict --parallel on the cluster")
    results = []
    for case in cases or ("mha",):
        try:
            words = shlex.split(case)
        except ValueError as e:
            raise click.UsageError(f"--case {case!r}: {e}.") from None
        if not words:
            raise click.UsageError("--case is empty; give a variant name and its KEY=VALUE parameters.")
        names = {p.name for p in get_variant(words[0]).params}
        # the grid and the lengths go to the variants that take them; the rest see the same sequence
        o = dict(opts)
        if "token_shape" not in names and o["token_shape"]:
            n = 1
            for x in o.pop("token_shape").lower().split("x"):
                n *= int(x) if x.isdigit() else 1
            o.update(token_shape=None, seqlen=o["seqlen"] or n)
        if "lengths" not in names and o["seqlens"]:
            # the same batch, padded: as many sequences, each as long as the longest given
            lengths = [int(x) for x in o.pop("seqlens").split(",") if x.strip().isdigit()]
            o["seqlens"] = None
            if lengths:
                o.update(batch=len(lengths), seqlen=max(lengths))
        pred, resolved = _predict(variant=words[0], params=tuple(words[1:]), **o)
        results.append((case, pred, resolved))
    base = results[0][1].time_s
    if as_json:
        click.echo(json.dumps([{**p.to_json(), "case": c, "params": _params_json(r), "speedup_vs_first": base / p.time_s}
                               for c, p, r in results], indent=2))
        return
    w = results[0][1].workload
    click.echo(f"{results[0][1].hardware.name} · {w.phase} · batch {w.batch} · seqlen {w.seqlen_q} -> {w.seqlen_kv}"
               f" · heads (the cores' query/kv heads) per case")
    click.echo(f"  {'case':<40}{'kernel':<8}{'heads':>8}{'time':>12}{'bound':>12}{'vs first':>10}{'useful FLOPs':>14}"
               f"{'live tiles':>14}{'iterated':>14}")
    for c, p, _ in results:
        t = p.tiles
        heads = f"{p.workload.heads_q}/{p.workload.heads_kv}"
        click.echo(f"  {c[:39]:<40}{p.family.name:<8}{heads:>8}{_fmt_time(p.time_s):>12}{_fmt_time(p.bound.time_s):>12}"
                   f"{base / p.time_s:>9.2f}x{p.useful_flops:>14.4g}{t['full'] + t['partial']:>14,}"
                   f"{p.tiles_iterated:>14,}")


@cli.group(invoke_without_command=False, no_args_is_help=True)
def hw():
    """Hardware profiles: list them, show one with its sources."""


@hw.command("list")
def hw_list():
    """List the shipped hardware profiles with their aliases and headline figures."""
    from attnsim.simulator.hardware import builtin_profiles
    click.echo(f"{'key':<16}{'name':<28}{'arch':<10}{'SMs':>5}{'bf16 TFLOP/s':>14}{'HBM TB/s':>10}  aliases")
    for key, h in builtin_profiles().items():
        peak = h.peak_flops_per_s("bf16", "fp32", h.tensor_rate("bf16", "fp32").datasheet_clock_hz) / 1e12
        click.echo(f"{key:<16}{h.name:<28}{h.arch:<10}{h.sm_count:>5}{peak:>14.1f}"
                   f"{h.hbm_bandwidth_bytes_per_s / 1e12:>10.2f}  {', '.join(h.aliases)}")
    from attnsim.simulator.cluster import builtin_clusters
    click.echo("\nclusters (--hw NAME --parallel ...; also '<gpus>x<device>-<link>' up to a node's GPUs, "
               "'<nodes>x<gpus>x<device>-<link>' over its network):")
    click.echo(f"{'key':<18}{'GPUs':>5}  {'device':<16}{'intra-node link':<44}inter-node per GPU")
    for key, c in builtin_clusters().items():
        inter = f"{c.inter.kind} {c.inter.bandwidth_bytes_per_s / 1e9:g} GB/s" if c.inter else "-"
        intra = f"{c.intra.kind} {c.intra.topology} {c.intra.bandwidth_bytes_per_s / 1e9:g} GB/s/dir" + \
            ("" if c.intra.p2p else ", no P2P")
        click.echo(f"{key:<18}{c.gpus:>5}  {c.device.key:<16}{intra:<44}{inter}")


@hw.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print the profile as JSON")
def hw_show(name, as_json):
    """Show one profile (NAME: key, alias or YAML path; or a cluster): every figure with its source."""
    from attnsim.simulator.cluster import is_cluster_name
    from attnsim.simulator.hardware import load_hardware
    if is_cluster_name(name):
        _show_cluster(name, as_json)
        return
    h = load_hardware(name)
    if as_json:
        click.echo(json.dumps({"key": h.key, "path": h.path, **h.raw}, indent=2, default=str))
        return
    click.echo(f"{h.name} ({h.key}) · {h.vendor} {h.arch} · compute capability {h.compute_capability}"
               f" · default kernel {h.default_kernel}")
    click.echo(f"  file: {h.path}")
    for k, e in h.raw["figures"].items():
        extra = f" [raw: {e['raw']}" + (f"; {e['conversion']}" if e.get("conversion") else "") + "]" if e.get("raw") else ""
        value = f"{e['value']:g}" if isinstance(e["value"], float) else str(e["value"])
        click.echo(f"  {k:<44}{value:<16}{extra}\n      source: {e['source']}")
    click.echo("  tensor cores (dense, per SM per clock -> at the datasheet clock):")
    for t in h.tensor:
        click.echo(f"    {t.dtype}/{t.accum}-acc  {t.flops_per_clk_per_sm:>7.0f} FLOP/clk/SM -> "
                   f"{t.flops_per_clk_per_sm * h.sm_count * t.datasheet_clock_hz / 1e12:.1f} TFLOP/s at "
                   f"{t.datasheet_clock_hz / 1e9:.3g} GHz (datasheet {t.datasheet_flops_per_s / 1e12:.1f})\n"
                   f"      source: {t.source}")


def _show_cluster(name, as_json):
    from attnsim.simulator.cluster import load_cluster
    c = load_cluster(name)
    links = [("intra_node", c.intra)] + ([("inter_node", c.inter)] if c.inter else [])
    if as_json:
        click.echo(json.dumps({"key": c.key, "name": c.name, "path": c.path, "device": c.device.key,
                               "gpus_per_node": c.gpus_per_node, "nodes": c.nodes, "gpus": c.gpus,
                               **{k: {"kind": lk.kind, "topology": lk.topology, "p2p": lk.p2p,
                                      "in_switch_reduction": lk.in_switch_reduction,
                                      "bandwidth_bytes_per_s_per_direction": lk.bandwidth_bytes_per_s,
                                      "latency_s": lk.latency_s, "sources": lk.sources} for k, lk in links}},
                              indent=2))
        return
    click.echo(f"{c.name} ({c.key}) · {c.nodes} node(s) x {c.gpus_per_node} GPUs = {c.gpus} x {c.device.name} "
               f"({c.device.key})")
    click.echo(f"  file: {c.path}")
    for k, lk in links:
        click.echo(f"  {k}: {lk.describe()}")
        for what, src in lk.sources.items():
            click.echo(f"      {what}: {src}")


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="print a JSON list, one object per variant: name, description, paper, params (name, type, "
                   "default, help, phases), kernel, kv_heads, head_layout, rope, head_dims_from_params")
def variants(as_json):
    """List the attention variants, their papers and parameters, and the -p grammar."""
    from attnsim.simulator.families import FAMILIES
    from attnsim.simulator.variants import PARAM_GRAMMAR, VARIANTS
    if as_json:
        click.echo(json.dumps([v.to_json() for v in VARIANTS.values()], indent=2))
        return
    for v in VARIANTS.values():
        click.echo(f"{v.name:<6} {v.description}")
        click.echo(f"       paper: {v.paper}")
        for p in v.params:
            default = "x".join(map(str, p.default)) if isinstance(p.default, tuple) else p.default
            click.echo(f"       -p {p.name}=<{p.type.__name__}> (default {default}): {p.help}")
    click.echo("\nkernel families (--kernel):")
    for f in FAMILIES.values():
        click.echo(f"  {f.name:<7} {f.description}")
    click.echo("\n" + PARAM_GRAMMAR)


@cli.command()
@click.argument("records", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--source", type=click.Choice(["published"]), default=None,
              help="fit the published reference rows (../shared/reference: FlashAttention papers, SageAttention, "
                   "FA4 commits...) instead of, or besides, RECORDS (our own measurements, JSON Lines)")
@click.option("-o", "--output", default="calibration.json", show_default=True, type=click.Path(dir_okay=False),
              help="the calibration file to write (JSON, with provenance); written only when a group fits")
@click.option("--group", "groups", multiple=True, metavar="HW/FAMILY[/fp8][/decode]",
              help="fit only these groups, repeatable (e.g. h100_sxm5/fa3) [default: every group]")
@click.option("--include-approx", is_flag=True,
              help="also fit approximate chart readings (value_quality approx_*); default: printed numbers only")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 20), help="k of the random k-fold")
@click.option("--cluster", default=None, metavar="NAME",
              help="the cluster the RECORDS' collective measurements ran on (benchmarks/bench_collectives.py): "
                   "fit each link's bandwidth fraction and latency into the file's 'links'")
def calibrate(records, source, output, groups, include_approx, folds, cluster):
    """Fit a few physical parameters per (GPU, kernel family) — tensor efficiency, softmax overlap, a CTA's
    unhidden I/O, exposed shared-memory time, the causal and backward costs, HBM efficiency — to measured times,
    with scipy's least_squares in log space; print the in-sample error and the error held out four ways (random
    k-fold, one sequence length out, one head dim out, causal out) and write the calibration file.

    \b
    Examples:
      attnsim calibrate --source published -o calibration.json
      attnsim calibrate validation/measurements/h100/2026-12-02.jsonl -o h100.json
    """
    from attnsim.simulator.errors import AttnsimError
    from attnsim.validation import calibrate as cal
    if not records and not source:
        raise click.UsageError("nothing to fit: give RECORDS (JSON Lines files of attnsim validate) or --source published")
    rows, sources = [], []
    if source == "published":
        from attnsim.validation.published import load_reference, reference_paths
        try:
            paths = reference_paths()
        except FileNotFoundError as e:
            raise AttnsimError(str(e)) from None
        ref, skipped = load_reference(paths)
        got = cal.rows_from_reference(ref, exact_only=not include_approx)
        rows += got
        sources += [{"kind": "published", "file": p.name, "sha256": _sha256(p),
                     "rows_read": sum(1 for r in ref if r.where.startswith(p.name + ":")),
                     "rows_fitted": sum(1 for r in got if r.where.startswith(p.name + ":"))} for p in paths]
    collectives = []
    for path in records:
        from attnsim.validation.records import read_records
        recs, warns = read_records(path)
        for w in warns:
            click.echo(f"warning: {w}", err=True)
        got = cal.rows_from_records(recs, path)
        coll = [r for r in recs if r.get("kind") == "collective"]
        collectives += coll
        rows += got
        sources.append({"kind": "measured", "file": path, "sha256": _sha256(path), "rows_read": len(recs),
                        "rows_fitted": len(got) + len(coll)})
    links = _fit_links(collectives, cluster)
    if not rows and links:
        content = cal.calibration_file({}, sources, "attnsim calibrate " + " ".join(sys.argv[2:]), links=links)
        _write_json(output, content)
        click.echo(f"wrote {output}: {len(links)} link(s) from {len(collectives)} collective records")
        return
    if not rows:
        raise AttnsimError("no row to fit: none of the inputs has a measurement of a modeled kernel on a profiled GPU")
    known = set(cal.groups_of(rows))
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise AttnsimError(f"--group {unknown[0]}: no rows; groups with rows: {', '.join(sorted(known))}")
    fitted, warns = cal.calibrate_groups(rows, only=set(groups) or None, folds=folds,
                                         progress=lambda k: click.echo(f"fitting {k} ...", err=True))
    for w in warns:
        click.echo(f"warning: {w}", err=True)
    if not fitted:
        raise AttnsimError("no group could be fitted (see the warnings); nothing written")
    click.echo(f"{'group':<30}{'rows':>5}{'raw':>8}{'fit':>7}   held out: {'k-fold':>7}{'seqlen':>8}{'hdim':>7}"
               f"{'causal':>8}   parameters")
    pct = lambda v: f"{v:.1f}%" if v is not None else "-"  # noqa: E731
    for key, g in fitted.items():
        h = g["heldout_mape"]
        params = " ".join(f"{n}={p['value']:.3g}" + (f"±{p['stderr']:.2g}" if p["fitted"] and p["stderr"] is not None
                                                       else "" if p["fitted"] else "(fixed)")
                          for n, p in g["params"].items())
        click.echo(f"{key:<30}{g['rows']:>5}{pct(g['raw_mape']):>8}{pct(g['in_sample_mape']):>7}   {'':>9}"
                   f"{pct(h['kfold']):>7}{pct(h['seqlen']):>8}{pct(h['head_dim']):>7}{pct(h['causal']):>8}   {params}")
    evidence = cal.transfer_evidence(rows, fitted)
    transfers = cal.transfer_plan(fitted, evidence)
    for e in evidence:
        click.echo(f"transfer {e['from']} -> {e['to']}: {e['mape']:.1f}% (measured)")
    click.echo(f"{len(transfers)} (GPU, family) pairs without rows borrow a fit (the file's 'transfers')")
    content = cal.calibration_file(fitted, sources, "attnsim calibrate " + " ".join(sys.argv[2:]), evidence, transfers,
                                   links=links)
    _write_json(output, content)
    click.echo(f"wrote {output}: {len(fitted)} group(s) from {len(rows)} rows"
               + (f"; {len(links)} link(s) from {len(collectives)} collective records" if links else ""))


def _write_json(output, content):
    """Write to a temporary name, then rename: an interrupted run leaves no half-written file."""
    import os
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=1)
        f.write("\n")
    os.replace(tmp, output)


def _fit_links(collectives, cluster) -> dict:
    """'CLUSTER/LINK' -> the fitted link (validation.links) for the collective records, grouped by the link
    each record's group crosses on `cluster`."""
    from attnsim.simulator.errors import AttnsimError
    if not collectives:
        if cluster:
            raise AttnsimError("--cluster fits links to collective records; the RECORDS hold none "
                               "(benchmarks/bench_collectives.py --out FILE writes them)")
        return {}
    if not cluster:
        raise AttnsimError(f"the RECORDS hold {len(collectives)} collective measurements: name the cluster they ran "
                           f"on with --cluster (e.g. 8xh100-nvlink)")
    from attnsim.simulator.cluster import load_cluster
    from attnsim.validation.links import calibrate_link
    cl = load_cluster(cluster)
    by_link = {}
    for r in collectives:
        by_link.setdefault(cl.link_for(int(r["group_size"]), 1)[0], []).append(r)
    out = {}
    for name, recs in sorted(by_link.items()):
        fit = calibrate_link(recs, cl)
        out[f"{cl.key}/{name}"] = {**fit.to_dict(), "source": fit.calibration.source}
        click.echo(f"link {cl.key}/{name}: bandwidth x{fit.calibration.bandwidth:.3g} "
                   f"({fit.bandwidth_bytes_per_s / 1e9:.3g} GB/s), latency {fit.calibration.latency_s * 1e6:.3g} us, "
                   f"{fit.rows} collectives, in-sample {fit.in_sample_mape:.1f}%")
    return out


@cli.command()
@click.argument("records", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--source", type=click.Choice(["published"]), default=None,
              help="show the published reference rows (besides, or instead of, RECORDS)")
@click.option("--calibration", "calibration_file", type=click.Path(dir_okay=False), default=None,
              help="predict with this calibration file [default: the shipped calibration]; its groups' fitted "
                   "parameters and held-out errors are tabled")
@click.option("--uncalibrated", is_flag=True, help="predict with the raw model")
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="the HTML file to write (self-contained)")
@click.option("--include-approx", is_flag=True, help="also show approximate chart readings (approx_*)")
def report(records, source, calibration_file, uncalibrated, output, include_approx):
    """An HTML report of predicted vs measured kernel times: a scatter per family, an error table, a
    roofline per kernel group, the environment.

    \b
    Examples:
      attnsim report --source published -o published.html
      attnsim report validation/measurements/h100/2026-12-02.jsonl --calibration h100.json -o h100.html
    """
    import platform
    from attnsim.simulator.calibrations import load_file, shipped_path
    from attnsim.simulator.errors import AttnsimError
    from attnsim.validation import calibrate as cal
    from attnsim.validation.report import render_report
    if not records and not source:
        raise click.UsageError("nothing to show: give RECORDS (JSON Lines files of attnsim validate) or --source published")
    if uncalibrated and calibration_file:
        raise click.UsageError("--uncalibrated and --calibration contradict each other (drop one).")
    rows, env = [], {"attnsim": __version__, "python": platform.python_version()}
    if source == "published":
        from attnsim.validation.published import load_reference, reference_paths
        try:
            paths = reference_paths()
        except FileNotFoundError as e:
            raise AttnsimError(str(e)) from None
        rows += cal.rows_from_reference(load_reference(paths)[0], exact_only=not include_approx)
        env["published"] = ", ".join(p.name for p in paths)
    for path in records:
        from attnsim.validation.records import read_records
        recs, warns = read_records(path)
        for w in warns:
            click.echo(f"warning: {w}", err=True)
        rows += cal.rows_from_records(recs, path)
        devices = sorted({r["device"].get("name", "") for r in recs if r.get("device")})
        env[f"records {path}"] = f"{len(recs)} records; devices: {', '.join(devices)}"
        for k in ("driver", "cuda", "torch", "triton"):
            vals = sorted({str(r["device"].get(k)) for r in recs if r.get("device", {}).get(k)})
            if vals:
                env[k] = ", ".join(vals)
    if not rows:
        raise AttnsimError("no row to show: none of the inputs has a measurement of a modeled kernel on a profiled GPU")
    calibration = None if uncalibrated else calibration_file or "default"
    table_file = calibration_file or (None if uncalibrated else str(shipped_path()))
    table = None
    if table_file:
        try:
            table = load_file(table_file)
        except AttnsimError:
            if calibration_file:
                raise
    env["calibration"] = "none (raw model)" if uncalibrated else (calibration_file or "shipped")
    points = cal.report_points(rows, calibration)
    path = render_report(points, output, environment=env,
                         calibration={"groups": {k: {"params": {n: p["value"] for n, p in g["params"].items()},
                                                     "heldout_mape": g["heldout_mape"], "rows": g["rows"]}
                                                 for k, g in table["groups"].items()}} if table else None)
    click.echo(f"wrote {path}: {len(points)} rows in {len({p['group'] for p in points})} groups")


def _sha256(path) -> str:
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    cli()
