"""A prediction's arithmetic as formulas over named inputs: what a spreadsheet recomputes.

`symbolic_hardware(hw)` and `symbolic_calibration(cal, ...)` return a Hardware and a Calibration whose
figures are `Expr` leaves (named inputs, each with its value). Priced by the model's own code
(`model.predict`, `problem.predict_problem`), every time the model computes from them is an `Expr`: its
value is the number the model computes (the same floating-point operations, in the same order), and its
tree is how that number follows from the inputs, the model's discrete choices (tile, split count, CTAs
per SM, waves; a kernel's limiting unit) frozen as they were made at those values. `Expr.evaluate(env)`
recomputes a tree with other input values (the Python side of the spreadsheet: the prediction with a
changed figure and the same discrete choices); `Renderer` writes it as spreadsheet formulas.

Arithmetic: + - * / and unary minus, `np.maximum` / `np.minimum` (numpy ufuncs dispatch here through
`__array_ufunc__`), and `largest` / `smallest` for the model's own maxima and minima over a few terms
(builtin max/min would pick one term by value and freeze it). Comparisons, `bool` and `float` read the
value: the model's branches (which unit limits, which tile is legal) are taken at the inputs' values.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import fields, replace

import numpy as np

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3}
_INTERN: dict = {}  # (op, operand keys) -> Expr: `clear_interned` between independent computations


def clear_interned():
    """Forget the shared nodes (they stay valid; later computations build new ones)."""
    _INTERN.clear()


def _val(x) -> float:
    return x.value if isinstance(x, Expr) else float(x)


def _apply(op, vals):
    a = vals[0]
    if op in ("+", "-", "*", "/"):
        b = vals[1]
        if type(a) is np.ndarray or type(b) is np.ndarray:  # a template's per-row values (`Expr.column`)
            with np.errstate(divide="ignore", invalid="ignore"):
                return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
        try:
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            return a / b
        except ZeroDivisionError:
            return math.copysign(math.inf, a) if a else math.nan
    if op == "neg":
        return -a
    if op in ("max", "min"):
        if any(type(v) is np.ndarray for v in vals):
            return (np.maximum if op == "max" else np.minimum).reduce(np.broadcast_arrays(*vals))
        return max(vals) if op == "max" else min(vals)
    if op == "ceil":
        return np.ceil(a) if type(a) is np.ndarray else float(math.ceil(a))
    raise ValueError(op)


def _finite(v) -> bool:
    return bool(np.isfinite(v).all()) if type(v) is np.ndarray else math.isfinite(v)


def _nonzero(v) -> bool:
    return bool((v != 0).all()) if type(v) is np.ndarray else v != 0


def _nonneg(v) -> bool:
    return bool((v >= 0).all()) if type(v) is np.ndarray else v >= 0


def _per_row(e) -> TypeError:
    return TypeError(f"a formula over per-row columns cannot take a branch on its value ({e.formula(_plain_ref)[:80]}): "
                     "every row of a template must make the same choices")


class Expr:
    """A number and how it was computed: op "in" (a named input), "col" (a per-row column of a template: its
    value an array, one entry per row), + - * / neg, max, min, ceil. An Expr over columns has an array value:
    the same formula evaluated on every row of a template at once."""
    __slots__ = ("op", "args", "value")
    __array_priority__ = 1000  # ndarray <op> Expr defers to Expr

    def __init__(self, op: str, args: tuple, value: float):
        self.op, self.args, self.value = op, args, value

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def input(name: str, value: float) -> "Expr":
        return Expr("in", (name,), float(value))

    @staticmethod
    def column(name: str, values) -> "Expr":
        """A per-row constant of a template (a work term: CTAs, tiles, bytes): `values` one per row."""
        return Expr("col", (name,), np.asarray(values))

    @staticmethod
    def _bin(op, a, b):
        ea, eb = type(a) is Expr, type(b) is Expr
        if not ea:
            if isinstance(a, np.generic):
                a = a.item()
            if not isinstance(a, (float, int)) and not isinstance(a, numbers.Real):
                return NotImplemented
            # exact simplifications only: 0 + x, 1 * x; 0 * x and 0 / x are 0 (x finite, nonzero)
            if (op == "+" and a == 0) or (op == "*" and a == 1):
                return b
            if op in ("*", "/") and a == 0 and _finite(b.value) and _nonzero(b.value):
                return 0.0
            ka = (float(a),)
        else:
            ka = id(a)
        if not eb:
            if isinstance(b, np.generic):
                b = b.item()
            if not isinstance(b, (float, int)) and not isinstance(b, numbers.Real):
                return NotImplemented
            # x + 0, x - 0, x * 1, x / 1; x * 0 is 0 (x finite)
            if (op in ("+", "-") and b == 0) or (op in ("*", "/") and b == 1):
                return a
            if op == "*" and b == 0 and _finite(a.value):
                return 0.0
            kb = (float(b),)
        else:
            if op == "+" and a is b:  # x + x is 2 x, exactly
                return Expr._bin("*", 2, a)
            kb = id(b)
        key = (op, ka, kb)
        got = _INTERN.get(key)
        if got is None:  # one node per computation: what the model computes twice is one cell of a sheet
            got = _INTERN[key] = Expr(op, (a, b), _apply(op, (a.value if ea else a, b.value if eb else b)))
        return got

    def __add__(self, o):
        return Expr._bin("+", self, o)

    def __radd__(self, o):
        return Expr._bin("+", o, self)

    def __sub__(self, o):
        return Expr._bin("-", self, o)

    def __rsub__(self, o):
        return Expr._bin("-", o, self)

    def __mul__(self, o):
        return Expr._bin("*", self, o)

    def __rmul__(self, o):
        return Expr._bin("*", o, self)

    def __truediv__(self, o):
        return Expr._bin("/", self, o)

    def __rtruediv__(self, o):
        return Expr._bin("/", o, self)

    def __neg__(self):
        return Expr("neg", (self,), -self.value)

    def __pos__(self):
        return self

    # -- the value, for the model's branches ----------------------------------------------------
    def __float__(self):
        if type(self.value) is np.ndarray:
            raise _per_row(self)
        return self.value

    def _scalar(self):
        if type(self.value) is np.ndarray:
            raise _per_row(self)
        return self.value

    def __bool__(self):
        return self._scalar() != 0

    def __lt__(self, o):
        return self._scalar() < _val(o)

    def __le__(self, o):
        return self._scalar() <= _val(o)

    def __gt__(self, o):
        return self._scalar() > _val(o)

    def __ge__(self, o):
        return self._scalar() >= _val(o)

    def __eq__(self, o):
        return isinstance(o, (Expr, numbers.Real)) and self._scalar() == _val(o)

    def __ne__(self, o):
        return not self.__eq__(o)

    __hash__ = object.__hash__  # by identity: a frozen dataclass holding Exprs stays hashable

    def __repr__(self):
        return f"Expr({self.value!r}: {self.formula(_plain_ref)[:80]})"

    def __format__(self, spec):
        return format(self.value, spec)

    def __round__(self, n=None):
        return round(self.value, n)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        ops = {np.maximum: "max", np.minimum: "min", np.add: "+", np.subtract: "-", np.multiply: "*",
               np.true_divide: "/", np.negative: "neg", np.ceil: "ceil"}
        if method != "__call__" or kwargs or ufunc not in ops:
            return NotImplemented
        args = []
        for x in inputs:
            if isinstance(x, np.ndarray):
                if x.ndim:
                    return NotImplemented  # arrays of Exprs are not modelled: the caller must reduce first
                x = x.item()
            args.append(x.item() if isinstance(x, np.generic) else x)
        op = ops[ufunc]
        if op == "max":
            return largest(args)
        if op == "min":
            return smallest(args)
        if op == "neg":
            return -args[0]
        if op == "ceil":  # waves: ceil(CTAs / slots), of a template's per-row CTA counts
            return Expr("ceil", (args[0],), _apply("ceil", [args[0].value]))
        return Expr._bin(op, *args)

    # -- evaluation and rendering ---------------------------------------------------------------
    def inputs(self) -> dict:
        """{name: value} of the named inputs this tree reads."""
        out, seen, stack = {}, set(), [self]
        while stack:
            e = stack.pop()
            if id(e) in seen:
                continue
            seen.add(id(e))
            if e.op == "in":
                out[e.args[0]] = e.value
            else:
                stack.extend(a for a in e.args if isinstance(a, Expr))
        return out

    def evaluate(self, env: dict, _memo=None) -> float:
        """The tree's value with the named inputs of `env` replaced (others keep their values)."""
        memo = {} if _memo is None else _memo
        hit = memo.get(id(self))
        if hit is not None:
            return hit
        if self.op == "in":
            v = float(env.get(self.args[0], self.value))
        elif self.op == "col":
            v = self.value
        else:
            v = _apply(self.op, [a.evaluate(env, memo) if isinstance(a, Expr) else a for a in self.args])
        memo[id(self)] = v
        return v

    def formula(self, ref, cells=None) -> str:
        """The spreadsheet formula (without '='): `ref(name)` the cell of a named input; `cells`: {id: cell}
        of sub-expressions that have a cell of their own."""
        return _render(self, ref, cells or {}, {})


def _plain_ref(name):
    return name


def _number(x) -> str:
    if isinstance(x, numbers.Integral) and abs(int(x)) < 2 ** 53:
        return str(int(x))
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"a formula cannot hold {v}")
    if v == int(v) and abs(v) < 2 ** 53:
        return str(int(v))
    return repr(v).replace("e+", "E").replace("e-", "E-")


def _render(e, ref, cells, memo) -> str:
    if not isinstance(e, Expr):
        s = _number(e)
        return f"({s})" if s.startswith("-") else s
    got = cells.get(id(e))
    if got is not None:
        return got
    got = memo.get(id(e))
    if got is not None:
        return got
    if e.op in ("in", "col"):
        out = ref(e.args[0])
    elif e.op == "ceil":
        out = f"ROUNDUP({_render(e.args[0], ref, cells, memo)},0)"
    elif e.op in ("max", "min"):
        out = ("MAX(" if e.op == "max" else "MIN(") + ",".join(_render(a, ref, cells, memo) for a in e.args) + ")"
    elif e.op == "neg":
        out = "-" + _wrap(e.args[0], 3, ref, cells, memo)
    else:
        p = _PREC[e.op]
        left = _wrap(e.args[0], p, ref, cells, memo)
        right = _wrap(e.args[1], p + 1, ref, cells, memo)  # a - (b - c), a / (b * c): the right side binds tighter
        out = f"{left}{e.op}{right}"
    memo[id(e)] = out
    return out


def _wrap(a, prec, ref, cells, memo) -> str:
    s = _render(a, ref, cells, memo)
    if isinstance(a, Expr) and id(a) not in cells and a.op in _PREC and _PREC[a.op] < prec:
        return f"({s})"
    return s


def _flat(op, args):
    out = []
    for a in args:
        if isinstance(a, Expr) and a.op == op:
            out.extend(a.args)
        else:
            out.append(a.item() if isinstance(a, np.generic) else a)
    return out


def largest(values):
    """max(values): a number when none is an Expr, else an Expr MAX of them (their largest value)."""
    values = list(values)
    if not any(isinstance(v, Expr) for v in values):
        return max(values)
    if len(values) == 1:
        return values[0]
    args = _flat("max", values)
    if all(_nonneg(_val(a)) for a in args):  # times: a 0 among them changes no maximum
        args = [a for a in args if isinstance(a, Expr) or a != 0] or [0.0]
        if len(args) == 1:
            return args[0]
    return Expr("max", tuple(args), _apply("max", [_val(a) for a in args]))


def smallest(values):
    """min(values): a number when none is an Expr, else an Expr MIN of them."""
    values = list(values)
    if not any(isinstance(v, Expr) for v in values):
        return min(values)
    if len(values) == 1:
        return values[0]
    args = _flat("min", values)
    return Expr("min", tuple(args), _apply("min", [_val(a) for a in args]))


def is_expr(x) -> bool:
    return isinstance(x, Expr)


def values_on(x, n: int) -> np.ndarray:
    """The values of an Expr over a template's n rows (`Expr.column`), or of a number, as n floats."""
    return np.broadcast_to(np.asarray(x.value if isinstance(x, Expr) else x, dtype=float), (n,))


def num(x):
    """float(x), unless x is an Expr (kept: its formula is the point)."""
    return x if isinstance(x, Expr) else float(x)


numbers.Real.register(Expr)  # a Calibration's checks (numbers.Real, finite, in range) read its value


# -- symbolic inputs -------------------------------------------------------------------------------
HARDWARE_INPUTS = ("clock_sustained_hz", "clock_max_hz", "hbm_bandwidth_bytes_per_s", "l2_bandwidth_bytes_per_s",
                   "dram_latency_s", "kernel_launch_overhead_s", "exp_ops_per_clk_per_sm", "fp32_flops_per_clk_per_sm",
                   "smem_bytes_per_clk_per_sm", "exp2_emulation_fp32_ops", "warp_issue_per_clk_per_sm")
CALIBRATION_INPUTS = ("tensor", "exp", "fp32", "smem", "hbm", "l2", "clock_hz", "launch_overhead_s", "overlap",
                      "cta_io", "partial_tile", "causal", "backward", "smem_exposed")


def symbolic_hardware(hw, prefix: str | None = None):
    """`hw` with its rate figures as named inputs "PREFIX.FIELD" (PREFIX: the profile's key): the clocks,
    bandwidths, latency, launch overhead, per-clock rates of each unit and each tensor-core dtype
    ("PREFIX.mma.DTYPE.ACCUM"). Capacities (SMs, shared memory, registers) stay numbers: they decide
    tiles and waves, which a formula holds fixed."""
    prefix = prefix or hw.key
    changes = {}
    for name in HARDWARE_INPUTS:
        v = getattr(hw, name)
        if v is not None:
            changes[name] = Expr.input(f"{prefix}.{name}", v)
    changes["tensor"] = tuple(replace(t, flops_per_clk_per_sm=Expr.input(f"{prefix}.mma.{t.dtype}.{t.accum}",
                                                                        t.flops_per_clk_per_sm)) for t in hw.tensor)
    out = replace(hw, **changes)
    object.__setattr__(out, "sources", hw.sources)
    object.__setattr__(out, "raw", hw.raw)
    return out


def symbolic_calibration(cal, prefix: str):
    """The rates.Calibration `cal` with its factors as named inputs "PREFIX.FIELD" (the identity
    `Calibration()` for an uncalibrated prediction: every factor an input at 1 or 0, so a sheet can still
    edit it). The clock, launch overhead and overlap are inputs only where the calibration replaces them
    (else the hardware's or the family's figure holds)."""
    changes = {}
    for f in fields(cal):
        if f.name not in CALIBRATION_INPUTS:
            continue
        v = getattr(cal, f.name)
        if v is not None:
            changes[f.name] = Expr.input(f"{prefix}.{f.name}", v)
    return replace(cal, **changes)


# -- rendering a row -----------------------------------------------------------------------------------
class Renderer:
    """Formulas of a set of root expressions, sub-expressions used more than once (or long) in cells of
    their own. `ref(name)` -> the cell of a named input; `cell(i)` -> the address of the i-th step cell.
    The same text as `Expr.formula`, built in one pass over the nodes (children first). `col(name, i)` -> the
    text of the i-th per-row column met (`Expr.column`; default: its name), e.g. a placeholder each row of a
    template fills in with `columns[i]`'s value."""

    def __init__(self, ref, cell, max_inline: int = 600, col=None):
        self.ref, self.cell, self.max_inline = ref, cell, max_inline
        self.col = col or (lambda name, i: name)
        self.columns = []  # the values of the per-row columns, in the order met (each node once)
        self._text = {}  # id -> a node's text: its cell's address, or its formula inline
        self._refs = {}

    @property
    def inputs(self):
        """The names of the inputs the formulas laid out so far read."""
        return self._refs.keys()

    def formula(self, e, cells=None) -> str:
        """The formula of `e` (a root of `layout`, or a number)."""
        return self._text[id(e)] if type(e) is Expr else _wrapped_number(e)

    def layout(self, roots):
        """(steps, cells): `steps` the [(address, formula, value)] of the shared sub-expressions in
        dependency order, `cells` {id: address} for them."""
        counts, order = {}, []
        stack = [(r, False) for r in roots if type(r) is Expr]
        while stack:
            e, done = stack.pop()
            if done:
                order.append(e)
                continue
            n = counts.get(id(e), 0)
            counts[id(e)] = n + 1
            if n:
                continue
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if type(a) is Expr)
        text, cells, steps, refs = self._text, {}, [], self._refs
        prec = {}  # id -> precedence of a node's inline text (a cell or a function binds tightest)
        for e in order:  # children before parents
            op = e.op
            if op == "in":
                name = e.args[0]
                t = refs.get(name)
                if t is None:
                    t = refs[name] = self.ref(name)
                text[id(e)], prec[id(e)] = t, 9
                continue
            if op == "col":
                self.columns.append(e.value)
                text[id(e)], prec[id(e)] = self.col(e.args[0], len(self.columns) - 1), 9
                continue
            if op == "ceil":
                a = e.args[0]
                t, p = "ROUNDUP(" + (text[id(a)] if type(a) is Expr else _wrapped_number(a)) + ",0)", 9
            elif op in ("max", "min"):
                t = ("MAX(" if op == "max" else "MIN(") + ",".join(
                    text[id(a)] if type(a) is Expr else _wrapped_number(a) for a in e.args) + ")"
                p = 9
            elif op == "neg":
                a = e.args[0]
                inner = text[id(a)] if type(a) is Expr else _wrapped_number(a)
                t = "-" + (f"({inner})" if type(a) is Expr and prec[id(a)] < 3 else inner)
                p = 3
            else:
                p = _PREC[op]
                a, b = e.args
                left = text[id(a)] if type(a) is Expr else _wrapped_number(a)
                if type(a) is Expr and prec[id(a)] < p:
                    left = f"({left})"
                right = text[id(b)] if type(b) is Expr else _wrapped_number(b)
                if type(b) is Expr and prec[id(b)] < p + 1:
                    right = f"({right})"
                t = f"{left}{op}{right}"
            if (counts[id(e)] > 1 and len(t) > 12) or len(t) > self.max_inline:
                addr = self.cell(len(steps))
                steps.append((addr, t, e.value))
                cells[id(e)] = addr
                t, p = addr, 9
            text[id(e)], prec[id(e)] = t, p
        return steps, cells


_NUMBERS: dict = {}


def operand_text(x) -> str:
    """A number as a formula operand: what a formula holds for it (negative numbers in parentheses)."""
    return _wrapped_number(x)


def _wrapped_number(x) -> str:
    """A constant as a formula operand (negative ones in parentheses), memoized."""
    key = (type(x) is float, x)
    got = _NUMBERS.get(key)
    if got is None:
        s = _number(x)
        got = f"({s})" if s.startswith("-") else s
        if len(_NUMBERS) > 100_000:
            _NUMBERS.clear()
        _NUMBERS[key] = got
    return got
