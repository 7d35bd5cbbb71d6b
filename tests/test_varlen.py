"""Variable-length batches (variant varlen): packed (padding-free) and padded layouts."""
import json

import pytest
from click.testing import CliRunner

from attnsim.cli import cli
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import predict
from attnsim.simulator.workload import Workload

H100 = load_hardware("h100")
LENS = (512, 1024, 77, 4096, 77)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("phase", ["prefill", "train"])
def test_useful_flops_and_bytes_by_hand(causal, phase):
    d, h = 128, 8
    w = Workload(seqlens=LENS, heads_q=h, head_dim_qk=d, causal=causal, phase=phase)
    p = predict(w, H100, "fa2")
    pairs = sum(n * (n + 1) // 2 if causal else n * n for n in LENS)
    per_pair = 4 * d + (2 * (3 * d + 2 * d) if phase == "train" else 0)
    assert p.useful_flops == per_pair * pairs * h
    assert p.kv_cache_bytes == sum(LENS) * h * 2 * d * 2
    assert p.time_s >= p.bound.time_s
    if phase == "prefill":  # Q, K, V, O of the real tokens and one LSE per query row
        assert p.hbm_bytes == sum(LENS) * h * (4 * d * 2 + 4)


def test_equal_lengths_are_the_plain_batch():
    plain = predict(Workload(batch=3, seqlen_q=1000, heads_q=8, head_dim_qk=64, causal=True, phase="train"), H100)
    var = predict(Workload(seqlens=(1000, 1000, 1000), heads_q=8, head_dim_qk=64, causal=True, phase="train"), H100)
    assert (var.time_s, var.flops, var.hbm_bytes, var.useful_flops, var.tiles) == \
        (plain.time_s, plain.flops, plain.hbm_bytes, plain.useful_flops, plain.tiles)


def test_padded_pays_for_the_padding():
    w = Workload(seqlens=LENS, heads_q=8, head_dim_qk=128)
    packed, padded = predict(w, H100, compare=True), predict(w.with_(varlen="padded"), H100)
    # every sequence padded to 4096: fa3's 128 x 176 tiles, 4096 keys ragged in 24 tiles of 176
    assert padded.kernels[0].tile.startswith("128x176")
    assert padded.flops == len(LENS) * 8 * 2 * 4096 * (24 * 176) * 256
    assert packed.useful_flops == padded.useful_flops  # ... the op is the same
    assert packed.bound.time_s == padded.bound.time_s
    assert padded.time_s > packed.time_s
    assert packed.varlen["padded_time_s"] == pytest.approx(padded.time_s)
    assert packed.varlen["padded_over_packed"] > 1


def test_decode_varlen_reads_each_context():
    ctx = (4096, 100_000, 512)
    p = predict(Workload(seqlens=ctx, seqlen_q=1, heads_q=32, heads_kv=8, head_dim_qk=128, phase="decode"), H100)
    cache = sum(ctx) * 8 * 256 * 2
    assert p.kv_cache_bytes == cache
    assert cache <= p.hbm_bytes < 1.1 * cache
    assert p.bound.unit == "hbm" and p.time_s >= p.bound.time_s


def test_bad_lengths():
    with pytest.raises(AttnsimError):
        Workload(seqlens=(10, 0))
    with pytest.raises(AttnsimError):
        Workload(seqlens=(10,), varlen="ragged")


def test_cli_varlen():
    run = lambda *a: CliRunner().invoke(cli, ["predict", "--variant", "varlen", *a])  # noqa: E731
    r = run("--seqlens", "512,1024,77", "--causal", "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["workload"]["batch"] == 3 and j["params"]["lengths"] == [512, 1024, 77]
    assert j["varlen"]["layout"] == "packed" and j["varlen"]["padded_over_packed"] > 1
    sampled = [json.loads(run("--seqlens", "uniform:64:2048", "--batch", "16", "--json").stdout)["params"]["lengths"]
               for _ in range(2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 16 and all(64 <= x <= 2048 for x in sampled[0])
    assert json.loads(run("--seqlens", "100,200", "-p", "layout=padded", "--json").stdout)["varlen"]["layout"] == "padded"
    for args, needle in [(("--seqlens", "1,2", "--batch", "3"), "does not match"),
                         (("--seqlens", "1,0"), "positive integers"),
                         (("--seqlens", "normal:3:4"), "uniform:LO:HI"),
                         (("--seqlens", "8,8", "--seqlen", "8"), "--seqlen"),
                         ((), "--seqlens"),
                         (("--seqlens", "8,8", "-p", "layout=ragged"), "packed, padded"),
                         (("--seqlens", "8,4", "--phase", "decode", "-p", "q_per_step=5"), "shortest context")]:
        r = run(*args)
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.output)
    r = CliRunner().invoke(cli, ["predict", "--seqlens", "1,2"])
    assert r.exit_code == 2 and "varlen" in r.stderr
