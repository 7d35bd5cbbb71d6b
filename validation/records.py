"""Measurement records: one JSON object per line (JSON Lines), appended, never rewritten — each
carries its device, versions and date (see the benchmark scripts that write them)."""
from __future__ import annotations

import json


def append_jsonl(path: str, records) -> int:
    """Append `records` (dicts) to `path`, one JSON object per line; returns how many were written."""
    n = 0
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
            n += 1
    return n
