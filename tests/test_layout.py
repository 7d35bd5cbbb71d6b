"""Package layout rules: the simulator stays torch/triton/cupy-free, imports go through `attnsim.`."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("attnsim", "simulator", "cli", "kernels", "validation", "benchmarks", "tests")
                 for p in (ROOT / d).rglob("*.py"))
BANNED_EVERYWHERE = {"simulator", "cli", "kernels", "validation", "hardware_profiles"}  # bare top-level names
BANNED_IN_SIMULATOR = {"torch", "triton", "cupy"}


def imported_roots(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_through_the_attnsim_namespace(path):
    bad = [(ln, m) for ln, m in imported_roots(path) if m in BANNED_EVERYWHERE]
    assert not bad, f"{path}: import attnsim.<pkg>, not a bare top-level name: {bad}"


@pytest.mark.parametrize("path", sorted((ROOT / "simulator").rglob("*.py")), ids=lambda p: p.name)
def test_simulator_imports_no_gpu_framework(path):
    bad = [(ln, m) for ln, m in imported_roots(path) if m in BANNED_IN_SIMULATOR]
    assert not bad, f"{path}: the simulator must not import {bad}"

# `attnsim predict` importing no torch/triton/cupy/scipy: tests/test_cli.py::test_predict_does_not_import_gpu_stacks
