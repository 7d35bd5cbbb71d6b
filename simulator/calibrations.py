"""Which calibration a prediction uses by default: the shipped one (hardware_profiles/calibrations.json,
written by `attnsim calibrate --source published`), a file named by $ATTNSIM_CALIBRATION, or none.

    choose(calibration, hw, family, dtype, phase) -> (Calibration | None, info dict | None)

`calibration` as callers pass it: "default" (the shipped file, or $ATTNSIM_CALIBRATION: a path, or
"none" for the raw model), None (the raw model), a path to a calibration file, or a
`rates.Calibration` (used as given). A file's group for (GPU, family[, fp8][, decode]) applies as
fitted; without one, the same GPU and family's 16-bit or non-decode group applies, or the file's
`transfers` entry (a fit carried to another GPU or family line), each saying so (`transferred_from`)
with a wider stated error. `info` is what a prediction reports: the group, its rows and sources, the
held-out error (random k-fold) and the error stated for this use.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from .errors import AttnsimError
from .rates import Calibration, LinkCalibration

ENV_VAR = "ATTNSIM_CALIBRATION"
SCHEMA = "attnsim.calibration/1"
DEFAULT = "default"
FIELDS = ("tensor", "exp", "fp32", "smem", "hbm", "l2", "overlap", "cta_io", "partial_tile", "causal", "backward",
          "smem_exposed", "clock_hz", "launch_overhead_s")
# a fit used for another dtype or phase of the same GPU and family, never measured: its error doubled,
# and at least this (percent)
UNMEASURED_FLOOR = 10.0


def shipped_path() -> Path:
    from importlib import resources
    return Path(str(resources.files("attnsim.hardware_profiles"))) / "calibrations.json"


@lru_cache(maxsize=8)
def load_file(path: str) -> dict:
    """A calibration file's content, checked (one AttnsimError line naming the file otherwise)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise AttnsimError(f"calibration file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise AttnsimError(f"calibration file {path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("groups"), dict):
        raise AttnsimError(f"calibration file {path}: not an attnsim calibration (schema {SCHEMA!r} with groups); "
                           f"write one with 'attnsim calibrate'")
    for key, g in doc["groups"].items():
        try:
            _calibration(g, key)
        except (AttnsimError, KeyError, TypeError, AttributeError) as e:
            raise AttnsimError(f"calibration file {path}: group {key!r}: {e}") from None
    links = doc.get("links", {})
    if not isinstance(links, dict):
        raise AttnsimError(f"calibration file {path}: 'links' must be an object keyed CLUSTER/LINK")
    for key, g in links.items():
        try:
            _link_calibration(g, key)
        except (AttnsimError, KeyError, TypeError, AttributeError) as e:
            raise AttnsimError(f"calibration file {path}: link {key!r}: {e}") from None
    return doc


def _link_calibration(entry: dict, key: str) -> LinkCalibration:
    return LinkCalibration(bandwidth=entry["bandwidth"], latency_s=entry["latency_s"], source=key)


def _file_path(calibration):
    """The calibration file a 'default' / path argument names, or None for the raw model."""
    path = str(calibration)
    if path == DEFAULT:
        path = os.environ.get(ENV_VAR) or ""
        if path.lower() == "none":
            return None
        path = path or str(shipped_path())
        if not os.path.exists(path) and path == str(shipped_path()):
            return None
    return path


def choose_link(calibration, cluster_key: str, link_name: str):
    """(LinkCalibration or None, info or None) for one link of a cluster: the calibration file's
    `links` entry "CLUSTER/LINK" (fitted by `attnsim calibrate RECORDS --cluster` on collective records),
    or None (the profile's figures). `calibration` as for `choose`; a rates.Calibration (one kernel
    group's factors) says nothing of links."""
    if calibration is None or isinstance(calibration, Calibration):
        return None, None
    if isinstance(calibration, LinkCalibration):
        return calibration, {"source": calibration.source or "given"}
    path = _file_path(calibration)
    if path is None:
        return None, None
    entry = load_file(path).get("links", {}).get(f"{cluster_key}/{link_name}")
    if entry is None:
        return None, None
    return _link_calibration(entry, f"{cluster_key}/{link_name}"), {"file": path, **entry}


def _calibration(group: dict, key: str) -> Calibration:
    values = {n: p["value"] for n, p in group["params"].items()}
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise AttnsimError(f"unknown parameter {sorted(unknown)[0]!r}; allowed: {', '.join(FIELDS)}")
    return Calibration(**values, source=key)


def _kfold(group: dict):
    h = group.get("heldout_mape") or {}
    return h.get("kfold") if h.get("kfold") is not None else group.get("in_sample_mape")


def choose(calibration, hw, family, dtype: str, phase: str):
    """(Calibration or None, info or None) for one prediction; see the module docstring."""
    if isinstance(calibration, Calibration):
        return calibration, {"source": calibration.source or "given", "group": None}
    if calibration is None:
        return None, None
    if not isinstance(calibration, (str, os.PathLike)):
        raise AttnsimError(f"calibration={calibration!r}: expected 'default', None, a calibration file's path or a "
                           f"rates.Calibration")
    path = _file_path(calibration)
    if path is None:
        return None, None  # $ATTNSIM_CALIBRATION=none, or no shipped file (a build without one): the raw model
    return _lookup(path, getattr(hw, "key", None), family.name, dtype, phase)


@lru_cache(maxsize=1024)
def _lookup(path, hw_key, family, dtype, phase):
    doc = load_file(path)
    groups = doc["groups"]
    base = f"{hw_key}/{family}"
    fp8, decode = ("/fp8" if dtype == "fp8" else ""), ("/decode" if phase == "decode" else "")
    own = base + fp8 + decode
    for key in (own, base + fp8, base + decode, base):
        if key in groups:
            g = groups[key]
            k = _kfold(g)
            if key == own:
                stated, why = k, "held out (random k-fold)"
            else:
                stated = max(UNMEASURED_FLOOR, 2 * k) if k is not None else None
                why = (f"{key}'s held-out error doubled (at least {UNMEASURED_FLOOR:g}%): carried to "
                       f"{'fp8' if fp8 and '/fp8' not in key else 'decode'} without rows of its own")
            return _calibration(g, key), _info(path, key, g, None if key == own else key, stated, why)
    t = doc.get("transfers", {}).get(base)
    if t and t.get("from") in groups:
        g = groups[t["from"]]
        return _calibration(g, t["from"]), _info(path, t["from"], g, t["from"], t.get("stated_mape"), t.get("why", ""))
    return None, None


def _info(path, key, group, transferred_from, stated, why) -> dict:
    return {"file": os.path.basename(path), "group": key, "rows": group.get("rows"), "quality": group.get("quality"),
            "sources": group.get("sources", []), "heldout_mape": group.get("heldout_mape"),
            "transferred_from": transferred_from, "stated_mape": stated, "stated_error": why,
            "params": {n: p["value"] for n, p in group["params"].items()}}
