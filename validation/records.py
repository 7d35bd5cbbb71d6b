"""Measurement records: one JSON object per line (JSON Lines), appended and fsynced one at a time,
never rewritten; each carries its device, library versions, timing distribution and date.

Schema ``attnsim.measurement/1`` has two kinds of record.

* ``"kind": "kernel"`` — one attention kernel timed on one shape::

    {"schema": SCHEMA, "kind": "kernel", "kernel": "sdpa_flash", "family": "fa2", "phase": "prefill",
     "shape": {"batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim", "causal", "dtype"},
     "device": {"name", "hw_key", "sm_count", "clock_max_hz", "memory_bytes", "l2_bytes", "driver",
                "cuda", "torch", "triton", "cupy", "cc"},
     "timing": {"median_s", "p10_s", "p90_s", "min_s", "max_s", "n", "method"},
     "error": {"max_abs", "max_rel", "reference"[, "ok"]},
     "prediction": {"time_s", "bound_s", "calibrated", "kernel_family"},
     "date": "2025-01-31T12:00:00+00:00", "attnsim_version": "0.1.0"}

* ``"kind": "ceiling"`` — one hardware ceiling (HBM copy, a large matmul, ``exp``)::

    {"schema", "kind": "ceiling", "ceiling": "hbm_copy", "value": 3.1e12, "unit": "bytes/s",
     "device": {...}, "timing": {...}, "date", "attnsim_version"}

* ``"kind": "collective"`` — one collective on one link (validation/distributed.py's benchmark)::

    {"schema", "kind": "collective", "op": "all_reduce", "bytes": 1048576, "group_size": 4,
     "backend": "nccl", "link": "intra_node", "device": {...}, "timing": {...}, "date", "attnsim_version"}

Keys beyond these are allowed (a tile configuration, notes); the listed ones are checked. Device
figures that a machine may not report (``hw_key``, clocks, L2, driver, library versions) may be
null; ``error.max_abs``/``max_rel`` are null when the output held NaN or inf (then ``ok`` is false);
``prediction.time_s``/``bound_s`` are null when no attnsim profile matched the card.

`read_records` refuses a malformed record with ``RecordError("FILE:LINE: what is wrong; what is
allowed")``. The one exception is a truncated last line — no newline after it and not JSON, what a
crash in the middle of an append leaves — which is skipped with a warning. `append_record` checks a
record the same way before it writes it.
"""
from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path

from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.ops import COLLECTIVE_OPS

SCHEMA = "attnsim.measurement/1"
KINDS = ("kernel", "ceiling", "collective")
FAMILIES = ("fa2", "fa3", "fa4", "cudnn", "triton", "eager")
PHASES = ("prefill", "train", "decode", "backward")
DTYPES = ("bf16", "fp16", "fp32", "fp8")
UNITS = ("bytes/s", "FLOP/s", "ops/s")


class RecordError(AttnsimError):
    """A measurement file or record that does not follow the schema; the message is one line,
    ``FILE:LINE: what is wrong; what is allowed``."""


# -- field checks ---------------------------------------------------------------------------
# A check returns None when the value is fine, else (what is wrong, what is allowed).

def _brief(v, limit: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _json_type(v) -> str:
    for t, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                    (list, "an array"), (dict, "an object")):
        if isinstance(v, t):
            return name
    return "null" if v is None else type(v).__name__


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer past float's range
        return False


def _number(v, allowed: str, lo: float, strict: bool, null: bool):
    if v is None and null:
        return None
    if not _is_number(v):
        return f"is {_json_type(v)}", allowed
    if not _finite(v):
        return "is not finite", allowed
    if v < lo or (strict and v == lo):
        return ("is not positive" if strict else "is negative"), allowed
    return None


def _positive(v):
    return _number(v, "a finite number > 0", 0, True, False)


def _positive_or_null(v):
    return _number(v, "a finite number > 0, or null", 0, True, True)


def _non_negative_or_null(v):
    return _number(v, "a finite number >= 0, or null", 0, False, True)


def _count(v, null: bool = False):
    allowed = "an integer >= 1" + (", or null" if null else "")
    if v is None and null:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        return f"is {_json_type(v)}", allowed
    return None if v >= 1 else ("is not positive", allowed)


def _count_or_null(v):
    return _count(v, null=True)


def _text(v, null: bool = False):
    allowed = "a non-empty string" + (", or null" if null else "")
    if v is None and null:
        return None
    if not isinstance(v, str):
        return f"is {_json_type(v)}", allowed
    return None if v.strip() else ("is empty", allowed)


def _text_or_null(v):
    return _text(v, null=True)


def _boolean(v):
    return None if isinstance(v, bool) else (f"is {_json_type(v)}", "true or false")


def _one_of(allowed):
    def check(v):
        return None if isinstance(v, str) and v in allowed else ("is not known", ", ".join(allowed))
    return check


def _schema(v):
    return None if v == SCHEMA else ("is not known", f"{SCHEMA!r} (the only schema this attnsim reads)")


def _date(v):
    allowed = "an ISO-8601 UTC timestamp, e.g. '2025-01-31T12:00:00+00:00'"
    if not isinstance(v, str):
        return f"is {_json_type(v)}", allowed
    try:  # Python 3.10's fromisoformat takes no 'Z'
        t = datetime.datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
    except (ValueError, OverflowError, TypeError):
        return "is not an ISO-8601 timestamp", allowed
    if t.utcoffset() != datetime.timedelta(0):
        return "is not in UTC", allowed
    return None


SHAPE = {"batch": _count, "seqlen_q": _count, "seqlen_kv": _count, "heads_q": _count, "heads_kv": _count,
         "head_dim": _count, "causal": _boolean, "dtype": _one_of(DTYPES)}
DEVICE = {"name": _text, "hw_key": _text_or_null, "sm_count": _count, "clock_max_hz": _positive_or_null,
          "memory_bytes": _count, "l2_bytes": _count_or_null, "driver": _text_or_null, "cuda": _text_or_null,
          "torch": _text_or_null, "triton": _text_or_null, "cupy": _text_or_null, "cc": _text_or_null}
TIMES = ("min_s", "p10_s", "median_s", "p90_s", "max_s")  # in order: each <= the next
TIMING = {**{k: _positive for k in TIMES}, "n": _count, "method": _text}
ERROR = {"max_abs": _non_negative_or_null, "max_rel": _non_negative_or_null, "reference": _text}
PREDICTION = {"time_s": _positive_or_null, "bound_s": _positive_or_null, "calibrated": _boolean,
              "kernel_family": _text_or_null}
COMMON = {"schema": _schema, "kind": _one_of(KINDS), "device": DEVICE, "timing": TIMING, "date": _date,
          "attnsim_version": _text}
KERNEL = {**COMMON, "kernel": _text, "family": _one_of(FAMILIES), "phase": _one_of(PHASES), "shape": SHAPE,
          "error": ERROR, "prediction": PREDICTION}
CEILING = {**COMMON, "ceiling": _text, "value": _positive, "unit": _one_of(UNITS)}
COLLECTIVE = {**COMMON, "op": _one_of(COLLECTIVE_OPS), "bytes": _count, "group_size": _count, "backend": _text,
              "link": _text}  # validation/distributed.py's collective benchmark (one link's α–β data)
OPTIONAL = {"error.ok": _boolean}  # keys that may be absent, checked when present


def _check_block(obj: dict, spec: dict, where: str, label: str):
    """Raise RecordError (without the FILE:LINE prefix) for the first defect of `obj` against `spec`."""
    for key, check in spec.items():
        name = f"{where}{key}"
        if key not in obj:
            kind = "block" if isinstance(check, dict) else "key"
            raise RecordError(f"missing {kind} {name!r}; {label} needs: {', '.join(spec)}")
        v = obj[key]
        if isinstance(check, dict):
            if not isinstance(v, dict):
                raise RecordError(f"{name} is {_json_type(v)}; allowed: an object with keys {', '.join(check)}")
            _check_block(v, check, name + ".", f"the {name} block")
            continue
        bad = check(v)
        if bad is not None:
            raise RecordError(f"{name}={_brief(v)} {bad[0]}; allowed: {bad[1]}")
    for k, c in OPTIONAL.items():
        head, _, leaf = k.rpartition(".")
        if head + "." == where and leaf in obj:
            bad = c(obj[leaf])
            if bad is not None:
                raise RecordError(f"{k}={_brief(obj[leaf])} {bad[0]}; allowed: {bad[1]}")


def check_record(record) -> dict:
    """Return `record` if it follows the schema, else raise RecordError (one line, without a file
    position): not an object, unknown schema or kind, a missing key, a wrong type, a time that is
    not positive and finite, or timing quantiles out of order."""
    if not isinstance(record, dict):
        raise RecordError(f"the line is {_json_type(record)}; allowed: a JSON object (one record)")
    if "schema" not in record:
        raise RecordError(f"missing key 'schema'; allowed: a record with \"schema\": {SCHEMA!r}")
    if _schema(record["schema"]) is not None:
        raise RecordError(f"unknown schema {_brief(record['schema'])}; allowed: {SCHEMA!r}")
    kind = record.get("kind")
    if "kind" not in record or _one_of(KINDS)(kind) is not None:
        raise RecordError(f"kind={_brief(kind)} is not known; allowed: {', '.join(KINDS)}")
    _check_block(record, {"kernel": KERNEL, "ceiling": CEILING, "collective": COLLECTIVE}[kind], "",
                 f"a {kind} record")
    t = record["timing"]
    for a, b in zip(TIMES, TIMES[1:]):
        if t[a] > t[b]:
            raise RecordError(f"timing.{a}={t[a]!r} > timing.{b}={t[b]!r}; allowed: "
                              f"min_s <= p10_s <= median_s <= p90_s <= max_s")
    return record


# -- reading --------------------------------------------------------------------------------

def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _parse(text: str):
    """The JSON value of one line; ValueError (with a reason) for anything that is not strict JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_records(path) -> tuple[list, list]:
    """Read a measurement file: ``(records, warnings)``.

    Blank lines are skipped. A truncated last line (no newline after it and not JSON: a crash in the
    middle of an append) is skipped with the warning ``"FILE:LINE: truncated last record skipped"``.
    Every other defect raises RecordError("FILE:LINE: what is wrong; what is allowed"), a truncated
    line in the middle of the file included.
    """
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RecordError(f"{path}: cannot read the measurement file ({e.strerror or e})") from None
    lines = data.split(b"\n")
    unterminated = len(lines) - 1  # index of the last line (b"" when the file ends with a newline)
    records, warnings = [], []
    for i, raw in enumerate(lines):
        where = f"{path}:{i + 1}"
        if not raw.strip():
            continue
        try:
            obj = _parse(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            if i == unterminated:
                warnings.append(f"{where}: truncated last record skipped")
                continue
            reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else f"not JSON ({_json_reason(e)})"
            raise RecordError(f"{where}: {reason}; allowed: one JSON object per line") from None
        try:
            records.append(check_record(obj))
        except RecordError as e:
            raise RecordError(f"{where}: {e}") from None
    return records, warnings


def _json_reason(e: ValueError) -> str:
    return " ".join(str(e).split())[:120]


def read_many(paths) -> tuple[list, list]:
    """`read_records` over several files, in order: all their records and all their warnings."""
    records, warnings = [], []
    for p in paths:
        r, w = read_records(p)
        records.extend(r)
        warnings.extend(w)
    return records, warnings


# -- writing --------------------------------------------------------------------------------

def _encode(record) -> bytes:
    return (json.dumps(record, allow_nan=False, sort_keys=False) + "\n").encode("utf-8")


def _unterminated_tail(path, size: int) -> tuple[int, bytes]:
    """(offset, bytes) of the file's last line when no newline ends it, else (size, b"")."""
    chunk, end, tail = 1 << 16, size, b""
    with open(path, "rb") as f:
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            block = f.read(end - start)
            if end == size and block.endswith(b"\n"):
                return size, b""
            cut = block.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1, block[cut + 1:] + tail
            tail = block + tail
            end = start
    return 0, tail


def _append_line(path, line: bytes) -> str | None:
    """Append one newline-terminated line and fsync it; a new file's directory entry is fsynced too.

    A file that ends without a newline is first mended so the new line stays on a line of its own: a
    complete JSON record there gets its newline; a truncated one (not JSON: a crash mid-append, which
    `read_records` skips anyway) is cut off. Returns a warning when something was cut off, else None.
    """
    path = Path(path)
    created = not path.exists()
    warning = None
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        offset, tail = _unterminated_tail(path, size) if size else (0, b"")
        if tail:
            try:
                _parse(tail.decode("utf-8"))
                complete = True
            except (UnicodeDecodeError, ValueError):
                complete = False
            if complete or not tail.strip():
                line = b"\n" + line
            else:
                os.ftruncate(fd, offset)
                warning = f"{path}: dropped a truncated last record ({len(tail)} bytes) before appending"
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)
    return warning


def _fsync_dir(folder: Path):
    try:
        dfd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def append_record(path, record: dict) -> str | None:
    """Check `record` (`check_record`), then append it to `path` as one line: one write, then
    ``os.fsync``, so a crash loses at most this record and never damages the ones before it. Existing
    lines are never rewritten (a truncated tail left by an earlier crash is cut off first: see
    `_append_line`; the warning saying so is returned, else None)."""
    check_record(record)
    try:
        line = _encode(record)
    except (TypeError, ValueError) as e:
        raise RecordError(f"record cannot be written as JSON ({e}); allowed: JSON values, finite numbers") from None
    return _append_line(path, line)


def append_jsonl(path: str, records) -> int:
    """Append `records` (dicts, unchecked: the benchmark scripts' own formats) to `path`, one JSON
    object per line, each fsynced; returns how many were written."""
    n = 0
    for r in records:
        _append_line(path, (json.dumps(r) + "\n").encode("utf-8"))
        n += 1
    return n


# -- building -------------------------------------------------------------------------------

def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    from attnsim import __version__
    return __version__


def kernel_record(*, kernel: str, family: str, phase: str, shape: dict, device: dict, timing: dict, error: dict,
                  prediction: dict, date: str | None = None, **extra) -> dict:
    """A checked kernel record; `date` defaults to now (UTC); `extra` keys are kept as given."""
    return check_record({"schema": SCHEMA, "kind": "kernel", "kernel": kernel, "family": family, "phase": phase,
                         "shape": shape, "device": device, "timing": timing, "error": error,
                         "prediction": prediction, "date": date or utc_now(), "attnsim_version": _version(),
                         **extra})


def ceiling_record(*, ceiling: str, value: float, unit: str, device: dict, timing: dict, date: str | None = None,
                   **extra) -> dict:
    """A checked ceiling record; `date` defaults to now (UTC); `extra` keys are kept as given."""
    return check_record({"schema": SCHEMA, "kind": "ceiling", "ceiling": ceiling, "value": value, "unit": unit,
                         "device": device, "timing": timing, "date": date or utc_now(),
                         "attnsim_version": _version(), **extra})
