"""Measurement records (validation/records.py): the schema's checks name FILE:LINE and say what is
allowed, a crash-truncated last line is skipped, every append is fsynced, and junk never raises
anything but RecordError."""
from __future__ import annotations

import copy
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnsim.simulator.errors import AttnsimError
from attnsim.validation import records as R

DEVICE = {"name": "NVIDIA H100 80GB HBM3", "hw_key": "h100_sxm5", "sm_count": 132, "clock_max_hz": 1.98e9,
          "memory_bytes": 85045821440, "l2_bytes": 52428800, "driver": "550.54.15", "cuda": "12.4",
          "torch": "2.5.1", "triton": "3.1.0", "cupy": None, "cc": "9.0"}
TIMING = {"median_s": 1.0e-3, "p10_s": 0.9e-3, "p90_s": 1.2e-3, "min_s": 0.8e-3, "max_s": 2.0e-3, "n": 30,
          "method": "cuda_events"}


def kernel_rec(**over):
    r = {"schema": R.SCHEMA, "kind": "kernel", "kernel": "sdpa_flash", "family": "fa2", "phase": "prefill",
         "shape": {"batch": 4, "seqlen_q": 4096, "seqlen_kv": 4096, "heads_q": 16, "heads_kv": 16, "head_dim": 128,
                   "causal": True, "dtype": "bf16"},
         "device": dict(DEVICE), "timing": dict(TIMING),
         "error": {"max_abs": 3e-3, "max_rel": 1e-3, "reference": "float64", "ok": True},
         "prediction": {"time_s": 1.1e-3, "bound_s": 0.7e-3, "calibrated": False, "kernel_family": "fa2"},
         "date": "2025-01-31T12:00:00+00:00", "attnsim_version": "0.1.0"}
    r.update(over)
    return r


def ceiling_rec(**over):
    r = {"schema": R.SCHEMA, "kind": "ceiling", "ceiling": "hbm_copy", "value": 3.0e12, "unit": "bytes/s",
         "device": dict(DEVICE), "timing": dict(TIMING), "date": "2025-01-31T12:00:00Z", "attnsim_version": "0.1.0"}
    r.update(over)
    return r


def write_lines(path, lines, end="\n"):
    path.write_text("\n".join(lines) + end)
    return str(path)


def refused(tmp_path, line: str, at: int = 2):
    """The RecordError message for `line` placed at line `at` of a file of valid records."""
    lines = [json.dumps(kernel_rec())] * (at - 1) + [line, json.dumps(ceiling_rec())]
    p = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(R.RecordError) as e:
        R.read_records(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{at}: "), msg
    assert "\n" not in msg and "; " in msg, msg
    return msg


def mutated(fn, base=None):
    r = copy.deepcopy(base or kernel_rec())
    fn(r)
    return json.dumps(r)


# -- what is refused, and the message -------------------------------------------------------

def test_record_error_is_an_attnsim_error():
    assert issubclass(R.RecordError, AttnsimError)


@pytest.mark.parametrize("line, words", [
    ("{not json", "not JSON"),
    ('{"schema": NaN}', "not JSON"),
    ("[1, 2]", "an array; allowed: a JSON object"),
    ("42", "an integer; allowed: a JSON object"),
    ('"text"', "a string"),
    ("null", "null"),
])
def test_not_json_or_not_an_object(tmp_path, line, words):
    assert words in refused(tmp_path, line)


def test_not_utf8(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"a": "\xff\xfe"}\n' + json.dumps(kernel_rec()).encode() + b"\n")
    with pytest.raises(R.RecordError, match=r":1: not UTF-8 text; allowed"):
        R.read_records(p)


def test_unknown_schema(tmp_path):
    msg = refused(tmp_path, mutated(lambda r: r.update(schema="attnsim.measurement/2")))
    assert "unknown schema 'attnsim.measurement/2'" in msg and R.SCHEMA in msg
    assert "missing key 'schema'" in refused(tmp_path, mutated(lambda r: r.pop("schema")))


def test_unknown_kind(tmp_path):
    msg = refused(tmp_path, mutated(lambda r: r.update(kind="bench")))
    assert "kind='bench' is not known; allowed: kernel, ceiling" in msg


@pytest.mark.parametrize("drop, name", [
    (lambda r: r.pop("kernel"), "missing key 'kernel'; a kernel record needs:"),
    (lambda r: r.pop("timing"), "missing block 'timing'"),
    (lambda r: r["shape"].pop("dtype"), "missing key 'shape.dtype'; the shape block needs: batch, seqlen_q"),
    (lambda r: r["device"].pop("hw_key"), "missing key 'device.hw_key'"),
    (lambda r: r["timing"].pop("p90_s"), "missing key 'timing.p90_s'"),
    (lambda r: r["error"].pop("reference"), "missing key 'error.reference'"),
    (lambda r: r["prediction"].pop("calibrated"), "missing key 'prediction.calibrated'"),
])
def test_missing_key(tmp_path, drop, name):
    assert name in refused(tmp_path, mutated(drop))


def test_missing_key_of_a_ceiling(tmp_path):
    msg = refused(tmp_path, mutated(lambda r: r.pop("unit"), ceiling_rec()))
    assert "missing key 'unit'; a ceiling record needs:" in msg


@pytest.mark.parametrize("change, words", [
    (lambda r: r["shape"].update(batch="4"), "shape.batch='4' is a string; allowed: an integer >= 1"),
    (lambda r: r["shape"].update(batch=True), "shape.batch=True is a boolean; allowed: an integer >= 1"),
    (lambda r: r["shape"].update(head_dim=64.0), "shape.head_dim=64.0 is a number; allowed: an integer >= 1"),
    (lambda r: r["shape"].update(heads_q=0), "shape.heads_q=0 is not positive"),
    (lambda r: r["shape"].update(causal=1), "shape.causal=1 is an integer; allowed: true or false"),
    (lambda r: r["shape"].update(dtype="bfloat16"), "shape.dtype='bfloat16' is not known; allowed: bf16, fp16"),
    (lambda r: r.update(shape=[4, 4096]), "shape is an array; allowed: an object with keys batch"),
    (lambda r: r.update(family="flash"), "family='flash' is not known; allowed: fa2, fa3, fa4, cudnn"),
    (lambda r: r.update(phase="forward"), "phase='forward' is not known; allowed: prefill, train, decode"),
    (lambda r: r.update(kernel=""), "kernel='' is empty; allowed: a non-empty string"),
    (lambda r: r["device"].update(sm_count=None), "device.sm_count=None is null; allowed: an integer >= 1"),
    (lambda r: r["timing"].update(n=0), "timing.n=0 is not positive"),
    (lambda r: r["timing"].update(method=3), "timing.method=3 is an integer"),
    (lambda r: r["error"].update(ok="yes"), "error.ok='yes' is a string; allowed: true or false"),
    (lambda r: r["error"].update(max_rel=-1.0), "error.max_rel=-1.0 is negative"),
    (lambda r: r["prediction"].update(time_s="1ms"),
     "prediction.time_s='1ms' is a string; allowed: a finite number > 0, or null"),
    (lambda r: r.update(date="yesterday"), "date='yesterday' is not an ISO-8601 timestamp"),
    (lambda r: r.update(date="2025-01-31T12:00:00"), "is not in UTC"),
    (lambda r: r.update(date="2025-01-31T12:00:00+02:00"), "is not in UTC"),
    (lambda r: r.update(attnsim_version=None), "attnsim_version=None is null"),
])
def test_wrong_type_or_value(tmp_path, change, words):
    assert words in refused(tmp_path, mutated(change))


@pytest.mark.parametrize("field", ["median_s", "p10_s", "p90_s", "min_s", "max_s"])
@pytest.mark.parametrize("value, words", [("0", "is not positive"), ("-1e-3", "is not positive"),
                                          ("1e999", "is not finite"), ("1" + "0" * 400, "is not finite")])
def test_non_positive_or_non_finite_time(tmp_path, field, value, words):
    line = mutated(lambda r: r["timing"].update({field: "@"})).replace('"@"', value)  # 1e999 is JSON; Python reads inf
    msg = refused(tmp_path, line)
    assert f"timing.{field}=" in msg and words in msg and "allowed: a finite number > 0" in msg


def test_nan_time_is_not_json(tmp_path):
    line = json.dumps(kernel_rec()).replace('"median_s": 0.001', '"median_s": NaN')
    assert "not JSON (NaN is not JSON)" in refused(tmp_path, line)


def test_timing_out_of_order(tmp_path):
    msg = refused(tmp_path, mutated(lambda r: r["timing"].update(p10_s=1.5e-3)))
    assert "timing.p10_s=0.0015 > timing.median_s=0.001" in msg and "min_s <= p10_s <= median_s" in msg


def test_ceiling_value_and_unit(tmp_path):
    assert "value=0 is not positive" in refused(tmp_path, mutated(lambda r: r.update(value=0), ceiling_rec()))
    assert "unit='GB/s' is not known; allowed: bytes/s, FLOP/s, ops/s" in refused(
        tmp_path, mutated(lambda r: r.update(unit="GB/s"), ceiling_rec()))


def test_nullable_figures_and_extra_keys_are_accepted(tmp_path):
    r = kernel_rec(config={"BLOCK_M": 128}, notes=["x"])
    r["device"].update(hw_key=None, clock_max_hz=None, l2_bytes=None, driver=None, triton=None, uuid="GPU-1")
    r["prediction"].update(time_s=None, bound_s=None, kernel_family=None)
    r["error"].update(max_abs=None, max_rel=None, ok=False)
    del r["error"]["ok"]
    p = write_lines(tmp_path / "m.jsonl", [json.dumps(r)])
    assert R.read_records(p) == ([r], [])


# -- truncation and blank lines -------------------------------------------------------------

def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    full = json.dumps(kernel_rec())
    p = tmp_path / "m.jsonl"
    p.write_text(full + "\n" + json.dumps(ceiling_rec()) + "\n" + full[:57])  # a crash mid-append
    recs, warnings = R.read_records(p)
    assert [r["kind"] for r in recs] == ["kernel", "ceiling"]
    assert warnings == [f"{p}:3: truncated last record skipped"]


def test_truncated_last_line_cut_in_a_utf8_character(tmp_path):
    full = json.dumps(kernel_rec(kernel="sdpa_flash_\u00e9"), ensure_ascii=False).encode()
    p = tmp_path / "m.jsonl"
    cut = full.index("\u00e9".encode()) + 1  # between the two bytes of é
    p.write_bytes(full + b"\n" + full[:cut])
    recs, warnings = R.read_records(p)
    assert len(recs) == 1 and warnings == [f"{p}:2: truncated last record skipped"]


def test_truncated_middle_line_is_refused(tmp_path):
    full = json.dumps(kernel_rec())
    p = write_lines(tmp_path / "m.jsonl", [full, full[:57], full])
    with pytest.raises(R.RecordError, match=r"m\.jsonl:2: not JSON .*; allowed: one JSON object per line"):
        R.read_records(p)


def test_unparsable_last_line_with_its_newline_is_refused(tmp_path):
    """Written in full (it has its newline), so it is not a crash's leftover: refused."""
    p = write_lines(tmp_path / "m.jsonl", [json.dumps(kernel_rec()), "{oops"])
    with pytest.raises(R.RecordError, match=r":2: not JSON"):
        R.read_records(p)


def test_complete_last_line_without_newline_is_read(tmp_path):
    p = write_lines(tmp_path / "m.jsonl", [json.dumps(kernel_rec()), json.dumps(ceiling_rec())], end="")
    assert len(R.read_records(p)[0]) == 2


def test_invalid_record_on_an_unterminated_last_line_is_refused(tmp_path):
    """Only a line that is not JSON counts as truncated; a complete JSON object is checked."""
    p = write_lines(tmp_path / "m.jsonl", [json.dumps(kernel_rec()), '{"schema": "x"}'], end="")
    with pytest.raises(R.RecordError, match=r":2: unknown schema"):
        R.read_records(p)


def test_blank_lines_are_skipped(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("\n  \n" + json.dumps(kernel_rec()) + "\n\r\n\n" + json.dumps(ceiling_rec()) + "\n\n")
    recs, warnings = R.read_records(p)
    assert len(recs) == 2 and warnings == []


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    assert R.read_records(tmp_path / "e.jsonl") == ([], [])
    with pytest.raises(R.RecordError, match=r"cannot read the measurement file"):
        R.read_records(tmp_path / "missing.jsonl")


def test_read_many(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json.dumps(kernel_rec())])
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps(ceiling_rec()) + "\n{trunc")
    recs, warnings = R.read_many([a, b])
    assert [r["kind"] for r in recs] == ["kernel", "ceiling"] and warnings == [f"{b}:2: truncated last record skipped"]


# -- writing --------------------------------------------------------------------------------

def test_round_trip(tmp_path):
    p = tmp_path / "m.jsonl"
    recs = [kernel_rec(), ceiling_rec(), kernel_rec(kernel="triton_fwd", family="triton")]
    for r in recs:
        assert R.append_record(p, r) is None
    assert R.read_records(p) == (recs, [])
    assert p.read_text().count("\n") == 3


def test_builders_fill_schema_date_and_version(tmp_path):
    r = R.kernel_record(kernel="sdpa_flash", family="fa2", phase="decode", shape=kernel_rec()["shape"], device=DEVICE,
                        timing=TIMING, error={"max_abs": 0.0, "max_rel": 0.0, "reference": "float64"},
                        prediction={"time_s": None, "bound_s": None, "calibrated": False, "kernel_family": None},
                        seed=7)
    c = R.ceiling_record(ceiling="exp", value=4e12, unit="ops/s", device=DEVICE, timing=TIMING)
    from attnsim import __version__
    assert r["schema"] == c["schema"] == R.SCHEMA and r["attnsim_version"] == __version__ and r["seed"] == 7
    assert r["date"].endswith("+00:00")
    R.append_record(tmp_path / "m.jsonl", r)
    R.append_record(tmp_path / "m.jsonl", c)
    assert R.read_records(tmp_path / "m.jsonl")[0] == [r, c]
    with pytest.raises(R.RecordError, match="timing.median_s"):
        R.ceiling_record(ceiling="exp", value=1.0, unit="ops/s", device=DEVICE, timing={**TIMING, "median_s": -1})


def test_append_record_fsyncs_each_record(tmp_path, monkeypatch):
    p = tmp_path / "m.jsonl"
    p.write_text("")
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    for i in range(3):
        R.append_record(p, kernel_rec(kernel=f"k{i}"))
        assert len(calls) == i + 1
    assert len(R.read_records(p)[0]) == 3


def test_append_record_to_a_new_file_fsyncs_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    R.append_record(tmp_path / "new.jsonl", ceiling_rec())
    assert len(calls) >= 1  # the file (and, where the platform allows, its folder's entry)


def test_append_record_refuses_a_bad_record_and_writes_nothing(tmp_path):
    p = tmp_path / "m.jsonl"
    R.append_record(p, kernel_rec())
    before = p.read_bytes()
    with pytest.raises(R.RecordError, match=r"timing.median_s=-1 is not positive"):
        R.append_record(p, kernel_rec(timing={**TIMING, "median_s": -1}))
    with pytest.raises(R.RecordError, match="cannot be written as JSON"):
        R.append_record(p, kernel_rec(extra={1, 2}))
    assert p.read_bytes() == before


def test_append_never_rewrites_existing_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    R.append_record(p, kernel_rec())
    first = p.read_bytes()
    R.append_record(p, ceiling_rec())
    assert p.read_bytes().startswith(first)


def test_append_after_a_crash_cuts_the_truncated_tail(tmp_path):
    p = tmp_path / "m.jsonl"
    full = json.dumps(kernel_rec())
    p.write_text(full + "\n" + full[:40])
    warning = R.append_record(p, ceiling_rec())
    assert warning is not None and "truncated last record" in warning
    recs, warnings = R.read_records(p)
    assert [r["kind"] for r in recs] == ["kernel", "ceiling"] and warnings == []
    assert p.read_text().startswith(full + "\n")


def test_append_after_a_complete_unterminated_record_adds_the_newline(tmp_path):
    p = tmp_path / "m.jsonl"
    full = json.dumps(kernel_rec())
    p.write_text(full)
    assert R.append_record(p, ceiling_rec()) is None
    assert [r["kind"] for r in R.read_records(p)[0]] == ["kernel", "ceiling"]


def test_append_jsonl_still_appends_plain_dicts(tmp_path):
    p = tmp_path / "bench.jsonl"
    assert R.append_jsonl(str(p), [{"what": "x", "value": 1}, {"what": "y"}]) == 2
    assert R.append_jsonl(str(p), iter([{"z": 3}])) == 1
    assert [json.loads(x) for x in p.read_text().splitlines()] == [{"what": "x", "value": 1}, {"what": "y"}, {"z": 3}]


# -- property: junk is a RecordError or valid records, never anything else ------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))


@st.composite
def mutated_records(draw):
    """A valid record with one key deleted or one value replaced by random JSON."""
    rec = copy.deepcopy(draw(st.sampled_from([kernel_rec(), ceiling_rec()])))
    path = draw(st.sampled_from([p for p in _paths(rec) if p]))
    parent = rec
    for k in path[:-1]:
        parent = parent[k]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(rec)


junk_line = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_records().map(str.encode),
    st.just(json.dumps(kernel_rec()).encode()),
    st.integers(1, 5000).map(lambda n: (b"[" * n) + (b"]" * n)),
    st.sampled_from([b"NaN", b"-Infinity", b'{"schema": Infinity}', b"1e999", b"\xef\xbb\xbf{}", b"9" * 5000]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(junk_line, min_size=1, max_size=4), st.booleans())
def test_junk_lines_give_records_or_record_error(lines, newline_at_end):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "junk.jsonl")
        with open(p, "wb") as f:
            f.write(b"\n".join(lines) + (b"\n" if newline_at_end else b""))
        try:
            recs, warnings = R.read_records(p)
        except R.RecordError as e:
            msg = str(e)
            assert msg.startswith(p + ":") and "\n" not in msg
            return
        for r in recs:
            assert R.check_record(r) is r
        assert all(w.endswith("truncated last record skipped") for w in warnings)
        assert len(warnings) <= 1
