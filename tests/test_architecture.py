"""The simulator's shape, checked from its source: one direction of imports (no cycle, function-level
imports included), masks that import nothing that prices, one module that reads the hardware's rates,
and kernel-family traits read from the family table rather than branched on by name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from attnsim.simulator.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "simulator"
MODULES = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(SIM.glob("*.py")) if p.stem != "__init__"}


def _type_only(tree) -> set:
    """Nodes under `if TYPE_CHECKING:` (imports for annotations only: never executed)."""
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for stmt in node.body for n in ast.walk(stmt)}


def _imports(tree) -> set:
    """Simulator modules a module imports, at any depth (inside functions too; not type-only ones)."""
    out = set()
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 and mod:
                out.add(mod.split(".")[0])
            elif node.level == 1:  # from . import x
                out.update(a.name for a in node.names)
            elif mod.startswith("attnsim.simulator."):
                out.add(mod.split(".")[2])
            elif mod == "attnsim.simulator":
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("attnsim.simulator."):
                    out.add(a.name.split(".")[2])
    return out & set(MODULES)


GRAPH = {m: _imports(t) for m, t in MODULES.items()}


def _cycle():
    """One import cycle among the simulator's modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(GRAPH):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_sees_function_level_imports():
    """The checker itself: an import inside a function counts (a hand-made module)."""
    tree = ast.parse("def f():\n    from .model import predict\n    from . import schedule\n"
                     "if TYPE_CHECKING:\n    from .hardware import Hardware\n")
    assert _imports(tree) == {"model", "schedule"}


def test_no_import_cycle_among_simulator_modules():
    assert _cycle() is None, " -> ".join(_cycle())


def test_a_cycle_would_be_found():
    """The search finds a planted cycle (so the test above can fail)."""
    saved = dict(GRAPH)
    try:
        GRAPH["ops"] = GRAPH["ops"] | {"model"}
        assert _cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


PRICING = {"pricing", "model", "rates", "bound", "vectorized", "layouts", "heads", "families", "hardware",
           "schedule", "problem", "variants"}


@pytest.mark.parametrize("geometry", ["masks", "na"])
def test_masks_are_geometry_only(geometry):
    """A mask says which pairs and tiles are live; it describes its own extra work as operations
    (`ops`) and imports nothing that prices or reads hardware."""
    assert not GRAPH[geometry] & PRICING, GRAPH[geometry] & PRICING


# hardware figures that are rates, clocks or overheads: only `rates` (and the loader) read them
RATE_FIGURES = {"clock_sustained_hz", "clock_max_hz", "fp32_flops_per_clk_per_sm", "exp_ops_per_clk_per_sm",
                "smem_bytes_per_clk_per_sm", "hbm_bandwidth_bytes_per_s", "l2_bandwidth_bytes_per_s",
                "kernel_launch_overhead_s", "dram_latency_s", "exp2_emulation_fp32_ops", "peak_flops_per_s",
                "mma_flops_per_clk_per_sm"}


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"hardware", "rates"}))
def test_only_rates_reads_the_hardware_rates(module):
    """`rates(hw, family, calibration)` is the single place where peaks, clocks, efficiencies and
    overheads are read: a calibration then reaches every price."""
    read = sorted({n.attr for n in ast.walk(MODULES[module])
                   if isinstance(n, ast.Attribute) and n.attr in RATE_FIGURES
                   and not (isinstance(n.value, ast.Name) and n.value.id in ("r", "rates", "lib", "self"))})
    # Rates' own fields share no name with these figures except through `r.hw.<figure>`, caught here
    assert not read, f"{module} reads {read} from the hardware; take them from a Rates"


def _name_branches(tree):
    """Comparisons of some `.name` with a kernel family's name: `fam.name == "fa2"`, `.name in ("fa3", ...)`."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any(isinstance(s, ast.Attribute) and s.attr == "name" for s in sides):
            continue
        consts = [c.value for s in sides for c in ast.walk(s) if isinstance(c, ast.Constant)]
        if any(c in FAMILIES for c in consts):
            out.append(ast.unparse(node))
    return out


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for d in ("simulator", "cli", "kernels")
                                        for p in (ROOT / d).glob("*.py")))
def test_family_traits_are_data(path):
    """A new kernel family is a table entry (`families.FAMILIES`): nothing branches on a family's name,
    the table's own module included (its tile tables are fields)."""
    assert not _name_branches(ast.parse((ROOT / path).read_text())), _name_branches(ast.parse((ROOT / path).read_text()))


def test_name_branch_checker_finds_one():
    assert _name_branches(ast.parse('x = fam.name == "fa2" or f.name in ("fa3", "fa4")'))
