"""`attnsim predict --hw CLUSTER --parallel SCHEME [--ranks 1,2,4,8]`: the option plumbing and output of a
prediction on several GPUs (the model is attnsim.simulator.parallel's)."""
from __future__ import annotations

import json

import click

from attnsim.simulator.errors import AttnsimError


def _fmt_time(t: float) -> str:
    from attnsim.cli import _fmt_time as f
    return f(t)


def _fmt_capacity(b) -> str:
    from attnsim.cli import _fmt_capacity as f
    return f(b)


def _split_zigzag(params):
    """-p zigzag=... belongs to the ring scheme, not the variant: (the other -p entries, its value or None)."""
    rest, zig = [], None
    for p in params or ():
        key = str(p).split("=", 1)[0].strip().lower()
        if key == "zigzag":
            if zig is not None:
                raise AttnsimError("-p zigzag given twice")
            zig = str(p).split("=", 1)[1] if "=" in str(p) else ""
        else:
            rest.append(p)
    return tuple(rest), zig


def _ranks_list(text: str) -> list:
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 1 << 20:
            raise AttnsimError(f"--ranks {text!r}: {part!r} is not a rank count; expected counts joined by commas, "
                               f"e.g. 1,2,4,8")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise AttnsimError(f"--ranks {text!r}: a rank count is repeated")
    return out


def predict_parallel_cli(parallel, ranks, as_json, variant, params, hw_name, kernel, uncalibrated=False,
                         calibration_file=None, **shapes):
    from attnsim.simulator.cluster import is_cluster_name, load_cluster
    from attnsim.simulator.parallel import SCHEMES, parse_parallel, predict_parallel, scaling

    if uncalibrated and calibration_file:
        raise click.UsageError("--uncalibrated and --calibration contradict each other (drop one).")
    calibration = None if uncalibrated else calibration_file or "default"
    path_like = str(hw_name).endswith((".yaml", ".yml")) or "/" in str(hw_name)
    if parallel is not None and path_like:
        load_cluster(hw_name)  # a cluster file's own defect, said as such (not "a single GPU")
    if not is_cluster_name(hw_name):
        raise AttnsimError(f"--parallel needs a cluster --hw (e.g. 8xh100-nvlink, 4xrtx4090-pcie, 2x8xh100-nvlink; "
                           f"'attnsim hw list' shows them), not the single GPU {hw_name!r}")
    cluster = load_cluster(hw_name)
    if parallel is None:
        raise AttnsimError(f"--hw {hw_name} is a cluster of {cluster.gpus} GPUs: add --parallel (tp=N, cp=N, "
                           f"ulysses=N, tpla=N, or combinations such as ulysses=2,cp=4), or name its device "
                           f"({cluster.device.key}) for one GPU")
    params, zigzag = _split_zigzag(params)
    scheme = parse_parallel(parallel, zigzag=zigzag)
    if ranks is not None:
        sizes = scheme.sizes()
        if len(sizes) != 1:
            raise AttnsimError(f"--ranks varies one scheme; --parallel {parallel} has {len(sizes) or 'no'} "
                               f"(give one of {', '.join(SCHEMES)})")
        name = next(iter(sizes))
        counts = _ranks_list(ranks)
        for n in counts:
            if n > cluster.gpus:
                raise AttnsimError(f"--ranks {ranks}: {n} ranks on {cluster.key}, which has {cluster.gpus} GPUs")
        try:
            rows = scaling(cluster, name, counts, variant, params, kernel, calibration, zigzag=zigzag, **shapes)
        except AttnsimError as e:
            raise AttnsimError(f"--ranks {ranks}: {e}") from None
        if as_json:
            click.echo(json.dumps({"cluster": cluster.key, "scheme": name, "variant": variant, "scaling": rows},
                                  indent=2))
            return
        click.echo(f"{variant} on {cluster.key} ({cluster.gpus} x {cluster.device.name}; {cluster.intra.describe()})"
                   f" · scaling {name}")
        click.echo(f"  {'ranks':>5}  {'time':>11}  {'compute':>11}  {'exposed comm':>12}  {'memory/GPU':>12}  efficiency")
        for r in rows:
            click.echo(f"  {r['ranks']:>5}  {_fmt_time(r['time_s']):>11}  {_fmt_time(r['compute_s']):>11}  "
                       f"{_fmt_time(r['exposed_comm_s']):>12}  {_fmt_capacity(r['memory_bytes_per_gpu']):>12}  "
                       f"{100 * r['efficiency']:.0f}%")
        click.echo("  efficiency = one GPU's time / (ranks x this time); compute per rank, the scheme's collectives")
        return
    pp = predict_parallel(cluster, scheme, variant, params, kernel, calibration, **shapes)
    if zigzag is not None and not pp.single.workload.causal:
        pp.notes.append("-p zigzag balances a causal ring; without --causal every step is a full block either way")
    rank = pp.rank.to_json()
    whole = pp.single.to_json()
    if as_json:
        out = {"variant": whole["variant"], "kernel": whole["kernel"], "hardware": cluster.key,
               "device": cluster.device.key, "workload": whole["workload"], "time_s": pp.time_s,
               "bound_s": pp.bound_s, "useful_flops": whole["useful_flops"],
               "achieved_tflops": whole["useful_flops"] / pp.time_s / 1e12 if pp.time_s else 0.0,
               "calibrated": rank["calibrated"], "calibration": rank["calibration"],
               "parallel": pp.to_dict(), "rank": rank}
        click.echo(json.dumps(out, indent=2))
        return
    w = pp.single.workload
    lines = [
        f"{whole['variant']} on {cluster.key}: {cluster.gpus} x {cluster.device.name} · kernel {rank['kernel']} · "
        f"{w.phase} · {w.dtype} · --parallel {scheme}" + (" (zigzag)" if scheme.cp > 1 and w.causal and scheme.zigzag
                                                          else ""),
        f"  links      intra-node: {cluster.intra.describe()}"
        + (f"; inter-node: {cluster.inter.describe()}" if cluster.inter and cluster.nodes > 1 else ""),
        f"  workload   batch {w.batch} · seqlen {w.seqlen_q} -> {w.seqlen_kv} · heads {w.heads_q}/{w.heads_kv} kv · "
        f"head dim {w.head_dim_qk}/{w.head_dim_v}" + (" · causal" if w.causal else ""),
        f"  time       {_fmt_time(pp.time_s)} on {scheme.ranks} GPUs (bound {_fmt_time(pp.bound_s)}) · one GPU "
        f"{_fmt_time(pp.single.time_s)} · parallel efficiency {100 * pp.efficiency:.0f}%",
        f"  per rank   compute {_fmt_time(pp.compute_s)} · communication {_fmt_time(pp.comm_s)} "
        f"(overlapped {_fmt_time(pp.overlapped_comm_s)}, exposed {_fmt_time(pp.exposed_comm_s)}) · memory "
        f"{_fmt_capacity(pp.memory_bytes_per_gpu)} of {_fmt_capacity(cluster.device.hbm_capacity_bytes)}"
        + ("" if pp.memory_bytes_per_gpu <= cluster.device.hbm_capacity_bytes else " (DOES NOT FIT)"),
        f"  {'collective':<32}{'op':<12}{'bytes':>14}{'ranks':>7}  {'link':<11}{'time':>11}{'count':>7}",
    ]
    for c in pp.collectives:
        lines.append(f"  {c['name']:<32}{c['op']:<12}{c['bytes']:>14,}{c['group_size']:>7}  {c['link']:<11}"
                     f"{_fmt_time(c['time_s']):>11}{c['count']:>7}")
    if pp.compared:
        c = pp.compared
        lines.append(f"  vs {c['scheme']:<6}  MLA with heads split: {_fmt_time(c['time_s'])} "
                     f"({c['time_s'] / pp.time_s:.2f}x TPLA's time); latent cache per GPU "
                     f"{_fmt_capacity(c['kv_cache_bytes_per_gpu'])} vs TPLA's {_fmt_capacity(c['tpla_kv_cache_bytes_per_gpu'])}")
    from attnsim.cli import _accuracy
    links = ("links calibrated: " + ", ".join(f"{k} (bandwidth x{v['bandwidth']:.3g}, {v['rows']} collectives)"
                                              for k, v in pp.link_calibrations.items())
             if pp.link_calibrations else "links uncalibrated (profile figures)")
    lines.append(f"  per-rank kernels {rank['kernel']} {_accuracy(rank['calibration'], rank['calibrated'])}; {links}")
    if rank["kernel"] != whole["kernel"]:
        lines.append(f"  note: one GPU runs the whole problem with {whole['kernel']}; a rank's smaller problem takes "
                     f"{rank['kernel']}")
    if pp.efficiency > 1:
        lines.append("  note: efficiency above 100%: a rank's kernels run at a better rate than one GPU's kernel on "
                     "the whole problem (e.g. ring steps after the first are non-causal blocks, which carry no causal "
                     "per-tile cost, and short tails)")
    for n in pp.notes:
        lines.append(f"  note: {n}")
    click.echo("\n".join(lines))
