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
    without a command (`attnsim`, `attnsim hw`) prints its help on stdout and exits 0."""

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
    if t >= 1:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3f} ms"
    return f"{t * 1e6:.2f} us"


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
    click.option("--kernel", default=None, help="kernel family: fa2|fa3|fa4|triton|eager [default: per hardware]"),
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
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (the contract in docs/design.md)")
@click.option("--explain", is_flag=True, help="append a legend of the human output (docs/legend.md)")
def predict(as_json, explain, **opts):
    """Predict the time of one call of an attention op of one layer (train: forward + backward;
    decode: one step for each of --batch sequences)."""
    if as_json and explain:
        raise click.UsageError("--explain explains the human output; with --json see docs/design.md (drop one).")
    pred, resolved = _build(**opts)
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


def _build(variant, hw_name, kernel, batch, seqlen, seqlen_kv, seqlens, token_shape, heads, kv_heads, head_dim,
           head_dim_v, dtype, kv_dtype, qk_accum, pv_accum, phase, causal, params, scope, d_model, rope_dim):
    """The options of `predict` -> (Prediction, the variant's resolved parameters)."""
    from attnsim.simulator.errors import AttnsimError, UnsupportedCore
    from attnsim.simulator.hardware import load_hardware
    from attnsim.simulator.model import predict as run
    from attnsim.simulator.variants import get_variant, parse_param, sample_lengths
    from attnsim.simulator.workload import MAX_D_MODEL, Workload, check_limit

    var = get_variant(variant)
    notes = []
    given = {}
    for text in params:
        key, value = parse_param(text)
        if key in given:
            raise AttnsimError(f"-p {key} given twice ({given[key]!r} and {value!r}); give it once")
        given[key] = value
    if token_shape is not None:
        if "token_shape" not in {p.name for p in var.params}:
            raise AttnsimError(f"--token-shape applies to the grid variants (na, gna, vmoba), not {var.name!r}")
        if "token_shape" in given:
            raise AttnsimError("give the token grid once: --token-shape or -p token_shape")
        try:
            given["token_shape"] = tuple(int(x) for x in token_shape.lower().split("x"))
        except ValueError:
            raise AttnsimError(f"--token-shape {token_shape!r}: expected integers joined by 'x' (e.g. 256x256)") from None
    if seqlens is not None:
        if var.name != "varlen":
            raise AttnsimError(f"--seqlens applies to --variant varlen, not {var.name!r}")
        if "lengths" in given:
            raise AttnsimError("give the lengths once: --seqlens or -p lengths")
        given["lengths"] = parse_param(f"lengths={seqlens}")[1]
    resolved = var.resolve(given)
    lengths = None
    if var.name == "varlen":
        if resolved["lengths"] is None:
            raise AttnsimError("variant 'varlen' needs --seqlens a,b,c (or uniform:LO:HI with --batch)")
        if resolved["lengths"][0] == "uniform":
            if batch < 1:
                raise AttnsimError(f"batch={batch} must be a positive integer")
            if batch == 1:
                notes.append("one sequence sampled: give --batch for a batch of lengths")
            lengths = sample_lengths(resolved["lengths"], batch)
            notes.append(f"lengths sampled from {':'.join(map(str, resolved['lengths']))} with seed 0")
        else:
            lengths = resolved["lengths"]
            if batch not in (1, len(lengths)):
                raise AttnsimError(f"--batch {batch} does not match the {len(lengths)} lengths given; "
                                   f"drop --batch or give {batch} lengths")
        for flag, v in (("--seqlen", seqlen), ("--seqlen-kv", seqlen_kv)):
            if v is not None:
                raise AttnsimError(f"{flag} does not apply with per-sequence lengths (--seqlens)")
        resolved["lengths"] = list(lengths)
    if resolved.get("token_shape") is not None:
        n_tokens = 1
        for x in resolved["token_shape"]:
            n_tokens *= x
        for flag, v in (("--seqlen", seqlen), ("--seqlen-kv", seqlen_kv)):
            if v is not None and v != n_tokens:
                raise AttnsimError(f"{flag} {v} differs from the {n_tokens} tokens of token shape "
                                   f"{'x'.join(map(str, resolved['token_shape']))}; drop {flag}")
        seqlen = n_tokens
        if causal and given.get("is_causal") is not None:
            raise AttnsimError("--causal and -p is_causal both given: give causality once (-p is_causal per dimension)")
    if "q_per_step" in given and phase != "decode":
        raise AttnsimError("-p q_per_step applies to --phase decode only")
    if var.heads_kv_rule == "mha":
        if kv_heads not in (None, heads):
            raise AttnsimError(f"variant {var.name!r} has --kv-heads = --heads ({heads}); got {kv_heads}: "
                               f"{var.kv_heads_hint}")
        kv_heads = heads
    elif var.heads_kv_rule == "mqa":
        if kv_heads not in (None, 1):
            raise AttnsimError(f"variant 'mqa' has one kv head; got --kv-heads {kv_heads}: {var.kv_heads_hint}")
        kv_heads = 1
    elif kv_heads is None and var.heads_kv_rule == "any":
        kv_heads = heads
    elif kv_heads is None:
        if heads > 8 and heads % 8 == 0:
            kv_heads = 8
            notes.append(f"kv heads: 8 (default for {var.name}; set --kv-heads)")
        else:
            raise AttnsimError(f"variant 'gqa' needs --kv-heads (a divisor of --heads={heads})")
    if var.head_dims_from_params:
        for flag, v in (("--head-dim", head_dim), ("--head-dim-v", head_dim_v)):
            if v is not None:
                notes.append(f"{flag} {v} not used: {var.name}'s head dims come from its -p parameters")
        head_dim, head_dim_v = 128, None
    head_dim = 128 if head_dim is None else head_dim
    if d_model is not None and scope != "layer" and not var.d_model_in_core:
        if d_model != heads * head_dim:
            raise AttnsimError("--d-model applies to --scope layer only")
        d_model = None  # the default (heads x head dim) restated: accepted, no effect at attention scope
    if d_model is not None and d_model < 1:
        raise AttnsimError(f"--d-model={d_model} must be a positive integer")
    if d_model is not None:
        check_limit("--d-model", d_model, MAX_D_MODEL, "channels (2^20)")
    if rope_dim is not None:
        if scope != "layer":
            raise AttnsimError("--rope-dim applies to --scope layer only")
        if not var.rope:
            raise AttnsimError(f"variant {var.name!r} has no RoPE (its positions come from its own score); drop --rope-dim")
        if var.head_dims_from_params:
            raise AttnsimError(f"variant {var.name!r} sets its RoPE dims with -p qk_rope_head_dim; drop --rope-dim")
    if var.kernel is not None:
        if kernel is not None and kernel.strip().lower() != var.kernel:
            raise AttnsimError(f"variant {var.name!r} is the {var.kernel} kernel; got --kernel {kernel}: drop --kernel "
                               f"(the output contrasts it with the fused kernel)")
        kernel = var.kernel
    if lengths is not None:
        seqlen_q, context = (resolved.get("q_per_step", 1), None) if phase == "decode" else (None, None)
    elif phase == "decode":
        if seqlen is not None and seqlen_kv is not None:
            raise AttnsimError(f"in decode --seqlen-kv is the context and the query tokens of a step are "
                               f"-p q_per_step (default 1); got --seqlen {seqlen} as well: drop it")
        context = seqlen_kv if seqlen_kv is not None else (4096 if seqlen is None else seqlen)
        seqlen_q = resolved.get("q_per_step", 1)
        if context < 1:
            raise AttnsimError(f"the decode context (--seqlen-kv) is {context}: it must be a positive integer")
        if seqlen_q > context:
            raise AttnsimError(f"-p q_per_step={seqlen_q} exceeds the context of {context} tokens")
    else:
        seqlen_q, context = (4096 if seqlen is None else seqlen), seqlen_kv
    dtype, kv_dtype = dtype.lower(), kv_dtype.lower() if kv_dtype else None
    if kernel is not None and not kernel.strip():
        raise AttnsimError("--kernel is empty; allowed: eager, fa2, fa3, fa4, triton")
    if lengths is not None and phase == "decode" and seqlen_q > min(lengths):
        raise AttnsimError(f"-p q_per_step={seqlen_q} exceeds the shortest context ({min(lengths)} tokens)")
    w = Workload(batch=batch, seqlen_q=seqlen_q, seqlen_kv=context, heads_q=heads, heads_kv=kv_heads,
                 head_dim_qk=head_dim, head_dim_v=head_dim_v, dtype=dtype, kv_dtype=kv_dtype, qk_accum=qk_accum,
                 pv_accum=pv_accum, causal=causal, phase=phase, seqlens=lengths,
                 varlen=resolved.get("layout", "packed"))
    hw = load_hardware(hw_name)
    mask = var.make_mask(resolved, causal)
    layout = None
    rd = head_dim if rope_dim is None else rope_dim
    if var.layout is not None or rope_dim is not None:
        from attnsim.simulator.layouts import check_rope
        check_rope(rd, head_dim)
    if var.layout is not None:
        layout = var.layout(resolved, w, d_model or heads * head_dim, rd)
        resolved.update({k: v for k, v in layout.shapes.items() if k in resolved})  # the values used, not placeholders
    try:
        pred = run(w, hw, kernel, mask=mask, variant=var.name, scope=scope, d_model=d_model, layout=layout,
                   rope_dim=rope_dim, compare=True)
    except UnsupportedCore as e:  # the default family has no kernel for this core: the next family that has one
        if kernel is not None or layout is None:
            raise
        pred = _fallback(e, hw, lambda k: run(w, hw, k, mask=mask, variant=var.name, scope=scope, d_model=d_model,
                                                layout=layout, rope_dim=rope_dim, compare=True), notes)
    if var.kernel is not None:  # eager attention: the fused kernel on the same problem, side by side
        try:
            fused = run(w, hw, None, mask=mask, variant=var.name, scope=scope, d_model=d_model, compare=False,
                        rope_dim=rope_dim)
        except AttnsimError as e:
            fused = None
            notes.append(f"no fused contrast: {e}")
    if var.kernel is not None and fused is not None:
        pred.contrast = {"kernel": fused.family.name, "time_s": fused.time_s, "hbm_bytes": fused.hbm_bytes,
                         "memory_bytes": fused.memory_bytes, "eager_over_fused_time": pred.time_s / fused.time_s,
                         "eager_over_fused_hbm": pred.hbm_bytes / fused.hbm_bytes,
                         "eager_over_fused_memory": pred.memory_bytes / fused.memory_bytes,
                         "eager_hbm_floor_s": pred.hbm_bytes / hw.hbm_bandwidth_bytes_per_s}
        notes.append(f"bound_s is the op's speed of light (what a fused kernel could reach); eager's own traffic "
                     f"alone takes {_fmt_time(pred.contrast['eager_hbm_floor_s'])} at full HBM bandwidth")
    pred.notes.extend(notes)
    if hasattr(mask, "resolved"):  # neighborhood attention: per-dimension values and the boxes used
        fwd = next((k.tile_obj for k in pred.kernels if k.name == "attn_fwd"), None)
        resolved = {**resolved, **mask.resolved(fwd)}
    if var.name == "varlen" and pred.family.name == "eager":
        pred.notes.append("eager attention pads every sequence to the longest: the varlen layout does not apply")
    return pred, resolved


def _fallback(error, hw, run, notes):
    """Run with the families after the hardware's default, in order (fa3, fa2, triton, eager); the first
    that runs wins and a note says why; none: the default's error."""
    from attnsim.simulator.errors import AttnsimError
    from attnsim.simulator.families import FAMILIES
    for name in ("fa3", "fa2", "triton", "eager"):
        if name == hw.default_kernel or hw.arch not in FAMILIES[name].archs:
            continue
        try:
            pred = run(name)
        except AttnsimError:
            continue
        notes.append(f"kernel {name}: the default {hw.default_kernel} cannot run this core ({error})")
        return pred
    raise error


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
                 latency not hidden: fill and drain, too few stages in flight); schedule is not a limit label
                 but a kernel's makespan of its CTAs on the SMs, among its unit times in --json"""


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
        f"  time       {_fmt_time(j['time_s'])}  (bound {_fmt_time(j['bound_s'])}, {j['bound']}-limited"
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
        f"{hw.clock_sustained_hz / 1e9:.3g} GHz (--explain: a legend)",
        f"  {'kernel':<16}{'time':>12}  {'limit':<9}{'tile':<18}{'CTAs':>9}{'/SM':>5}{'waves':>8}",
    ]
    for k in j["kernels"]:
        grid = (f"{k['ctas']:>9}{k['ctas_per_sm']:>5}{k['waves']:>8.2f}" if k["ctas"] else f"{'-':>9}{'-':>5}{'-':>8}")
        lines.append(f"  {k['name']:<16}{_fmt_time(k['time_s']):>12}  {k['bound']:<9}{(k['tile'] or '-'):<18}{grid}"
                     + (f"  splits {k['splits']}" if k.get("splits", 1) > 1 else ""))
    if not j["calibrated"]:
        lines.append("  note: uncalibrated: efficiencies are 1 beyond what the model prices; published FlashAttention-2/3"
                     " runs take 1.3-1.6x such predictions, Triton and eager 2-3x (benchmarks/bench_published.py)")
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
    from attnsim.simulator.variants import get_variant
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
        pred, resolved = _build(variant=words[0], params=tuple(words[1:]), **o)
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


@hw.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print the profile as JSON")
def hw_show(name, as_json):
    """Show one profile (NAME: key, alias or YAML path): every figure with its source."""
    from attnsim.simulator.hardware import load_hardware
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


@cli.command()
def variants():
    """List the attention variants, their papers and parameters, and the -p grammar."""
    from attnsim.simulator.families import FAMILIES
    from attnsim.simulator.variants import PARAM_GRAMMAR, VARIANTS
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


def main():
    cli()
