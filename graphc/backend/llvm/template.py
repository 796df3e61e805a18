"""Symbolic-dim templates: one LLVM module that serves every value of a program's symbolic dims.

A placeholder dim declared ``None`` is a *symbol* (`graphc.runtime.symbolic`). The
backend's planning and code generation work on concrete shapes, so a template is built
at a few *probe* values of the symbols with the same decisions (`graphc.passes.sizing`):

* the *nominal* build, at the base probe (every symbol just above `LIMIT`, the largest
  value a template serves), takes every size-dependent planning decision (fusion, row
  kernels, split reductions, views and facts proven from loop ranges, parallel or serial
  calls, GEMM splits and pairs, size-1 and empty dims) and records it;
* the other builds replay those decisions: one per symbol with that symbol moved by its
  step (the fit probes), then the small values 1, 2 and 37 (`small_probes`). A build
  whose decisions diverge from the recorded ones raises; so does one whose LLVM IR text
  differs from the nominal build's in anything but integer and float literals.

Every literal that differs must be an exact affine function of the symbols, fitted on the
nominal and the fit probes and checked at the small ones: loop bounds, strides, offsets,
BLAS sizes, ``size_of`` immediates. A float literal may also be the reciprocal of an affine
function (``mean``'s ``1/N``). The template replaces each such literal by that function of
the symbols, computed at the top of the function that uses it from the global
``graphc_dims`` (an ``i64`` per symbol, set by the caller before each native call). So the
template's code at 1, 2 and 37 is literally the code planned there under its decisions,
and any size rule the decisions do not cover (a clamp, a threshold, a special case of a
size-1 or empty dim) shows as a differing structure or a literal that misses its fit.

Arena buffers get affine offsets (`affine_arena`): a buffer of ``a * N + b`` bytes gets a
region of ``A * N + ceil64(b)`` bytes, ``A`` being ``a`` rounded up to whole cache lines (or
to 8 bytes when ``a < 64``; those buffers are placed last, one after another). The first
group shares bytes between buffers that are never live at once (`_reuse`: first fit whose
choices are checked at the corners of the symbols' range, so they are right for every
value; else no sharing). Every offset is then aligned for its dtype (cache-line aligned
in the first group), and the arena size, an affine function too, is evaluated per call.

Anything else (a literal that is not affine, a constant array whose contents depend on
the values, a buffer that shrinks as a symbol grows) raises `NotSymbolicError`, and the
caller compiles a program specialized to the fed shapes instead, with the reason in its
``stats()``.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np

from ...ir.graph import Tensor
from ...passes.memory import ALIGNMENT
from .probes import LIMIT, STEPS, NotSymbolicError, small_probes
from .steps import Plan

DIMS = "graphc_dims"
MAX_REUSE = 256  # arena buffers a template places with reuse (the search is quadratic)
_INT_TYPES = {"i64": 64, "i32": 32, "i16": 16, "i8": 8, "i1": 1}
_TOKEN = re.compile(r'(?P<glob>@"[^"]*"|@[\w.$]+)|(?<![\w."%@$-])(?P<lit>0x[0-9A-Fa-f]{16}|-?\d+)(?![\w.])')
_TYPE = re.compile(r"\b(i64|i32|i16|i8|i1|float|double)\b")


@dataclass(frozen=True)
class Affine:
    """``const + sum(coefs[i] * symbol[i])`` with integer (or, for float literals, real) coefficients."""

    coefs: tuple
    const: int | float

    def at(self, values: Sequence[int]) -> int | float:
        return self.const + sum(c * v for c, v in zip(self.coefs, values))

    def __str__(self) -> str:
        terms = [f"{c}*s{i}" for i, c in enumerate(self.coefs) if c]
        return " + ".join(terms + ([str(self.const)] if self.const or not terms else []))


def fit(values: Sequence[int | float], points: Sequence[tuple[int, ...]], exact: bool = True) -> Affine | None:
    """The affine function of the symbols through (points[i], values[i]), or None.

    Integers are fitted on the base and the moved probes (`probes`) and checked exactly on the
    rest; floats are fitted on every point (`_real_fit`) and checked to a relative 1e-6
    (float32 literals are rounded).
    """
    if not exact:
        f = _real_fit(values, points)
    else:
        base, coefs = values[0], []
        for i in range(len(points[0])):
            diff = values[1 + i] - base
            if diff % STEPS[i]:
                return None
            coefs.append(diff // STEPS[i])
        f = Affine(tuple(coefs), base - sum(c * p for c, p in zip(coefs, points[0])))
    for point, value in zip(points, values):
        got = f.at(point)
        if exact and got != value:
            return None
        if not exact and not math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-300):
            return None
    return f


def _real_fit(values: Sequence[float], points: Sequence[tuple[int, ...]]) -> Affine:
    """The real affine function through the points by least squares on relative residuals: the
    large probes fix the slopes, the small ones the constant. A constant taken at the large probes
    alone carries the slopes' rounding times the probe values (1e6): float64 ``c / N`` as
    ``1 / (1.706968330016 * N - 1.08e-6)``, 1.6e-7 relative off at N = 12 (graph-fuzz seed 6101661)."""
    a = np.array([[*p, 1.0] for p in points])
    v = np.array(values, dtype=np.float64)
    w = 1.0 / np.where(v == 0, 1.0, np.abs(v))
    sol = np.linalg.lstsq(a * w[:, None], v * w, rcond=None)[0]
    return Affine(tuple(float(c) for c in sol[:-1]), float(sol[-1]))


def _hex_double(text: str) -> float:
    return struct.unpack(">d", bytes.fromhex(text[2:]))[0]


def _double_hex(value: float) -> str:
    return "0x" + struct.pack(">d", value).hex().upper()


@dataclass(frozen=True)
class _Literal:
    kind: str  # "int" or "float"
    type: str  # i64, i32, float, double
    fn: Affine
    reciprocal: bool = False


class _Token:
    """A literal of an IR text at [start, end); its line and type are read from the text when asked
    (only for literals that differ between probes)."""

    __slots__ = ("start", "end", "text", "_source")

    def __init__(self, start: int, end: int, text: str, source: str):
        self.start, self.end, self.text, self._source = start, end, text, source

    @property
    def line(self) -> str:
        src = self._source
        return src[src.rfind("\n", 0, self.start) + 1:src.find("\n", self.end)]

    @property
    def type(self) -> str | None:
        """The last type named before the literal on its line; None in a vector constant."""
        src = self._source
        before = src[src.rfind("\n", 0, self.start) + 1:self.start]
        types = _TYPE.findall(before) if before.count("<") <= before.count(">") else []
        return types[-1] if types else None


def _scan(text: str) -> tuple[list[str], list[_Token]]:
    """The text split around literals: (skeleton pieces, literals). Global names are replaced by
    their order of appearance in the skeleton (some embed sizes); array and vector lengths and
    alignments stay in the skeleton."""
    pieces, lits, at = [], [], 0
    names: dict[str, str] = {}
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        glob = m.group("glob")
        if glob:
            pieces.append(text[at:start] + names.setdefault(glob, f"@g{len(names)}"))
            at = end
        elif not (start >= 6 and text.startswith("align ", start - 6)) and not text.startswith(" x ", end):
            pieces.append(text[at:start])
            lits.append(_Token(start, end, m.group("lit"), text))
            at = end
    pieces.append(text[at:])
    return pieces, lits


def fit_ir(texts: Sequence[str], points: Sequence[tuple[int, ...]], scans: dict[str, Any] | None = None,
           guess: bool = False) -> str:
    """The template IR: `texts[0]` with every literal that differs across the probes replaced by
    its affine function of the symbols (read from the global `DIMS`). `scans` keeps each text's
    scan for another fit of the same texts.

    With `guess`, the points are the large probes only, where any values of a float literal
    fit a real affine function: an integer or reciprocal-integer fit (a size, ``mean``'s
    ``1/N``) is taken first there, as the small probes would decide. The result is a guess
    that the fit at every probe confirms or not (`symbolic.build_template`)."""
    scans = {} if scans is None else scans
    split = [scans[t] if t in scans else scans.setdefault(t, _scan(t)) for t in texts]
    skeleton, tokens = split[0]
    if any(s[0] != skeleton or len(s[1]) != len(tokens) for s in split[1:]):
        raise NotSymbolicError("the generated code's structure depends on the dim values")
    fitted: dict[int, _Literal] = {}  # literal start -> its function
    for group in zip(*(s[1] for s in split)):
        tok = group[0]
        lits = [t.text for t in group]
        if all(lit == tok.text for lit in lits):
            continue
        where = tok.line.strip()[:80]
        if tok.type is None or tok.line.startswith(("@", "define", "declare")) or "switch" in tok.line:
            raise NotSymbolicError(f"a size-dependent literal in a constant context: {where}")
        if tok.type in _INT_TYPES:
            f = fit([int(v, 0) for v in lits], points)
            if f is None:
                raise NotSymbolicError(f"a size-dependent integer that is not affine in the dims: {where}")
            fitted[tok.start] = _Literal("int", tok.type, f)
            continue
        values = [_hex_double(v) for v in lits]
        f, recip = None, False
        if guess and all(values):
            f, recip = _integer_fit(values, points), False
            if f is None:
                f, recip = _integer_fit([1.0 / v for v in values], points), True
        if f is None:
            f, recip = _float_fit(values, points), False
        if f is None and all(values):
            f, recip = _float_fit([1.0 / v for v in values], points), True
        if f is None:
            raise NotSymbolicError(f"a size-dependent float that is neither affine nor 1/affine: {where}")
        fitted[tok.start] = _Literal("float", tok.type, f, recip)
    _check_ranges(fitted, len(points[0]))
    return _materialize(texts[0], tokens, fitted, len(points[0]))


def _float_fit(values: Sequence[float], points: Sequence[tuple[int, ...]]) -> Affine | None:
    """A float literal's affine function: an integer one when every value is within a float32
    rounding of an integer (a size or a count; fitted exactly, so that it holds at small
    values too), else a real one."""
    return _integer_fit(values, points) or fit(values, points, exact=False)


def _integer_fit(values: Sequence[float], points: Sequence[tuple[int, ...]]) -> Affine | None:
    """The exact affine function of float values that are each within a float32 rounding of an integer."""
    near = [round(v) for v in values]
    if all(math.isclose(v, n, rel_tol=1e-6) for v, n in zip(values, near)):
        return fit(near, points)
    return None


def _check_ranges(fitted: dict[int, _Literal], k: int) -> None:
    """Every integer literal fits its type for all symbol values in 1..LIMIT (affine: check the corners)."""
    corners = list(product((1, LIMIT), repeat=k))
    for lit in fitted.values():
        if lit.kind == "int":
            bits = _INT_TYPES[lit.type]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if any(not lo <= lit.fn.at(c) <= hi for c in corners):
                raise NotSymbolicError(f"{lit.fn} overflows {lit.type} for dims up to {LIMIT}")


def _materialize(text: str, tokens: Sequence[_Token], fitted: dict[int, _Literal], k: int) -> str:
    """Replace the fitted literals by SSA values computed at the top of their functions."""
    bounds = [m.start() + 1 for m in re.finditer(r"\ndefine ", text)] + [len(text)]
    out = [text[:bounds[0]].rstrip("\n") + f'\n\n@"{DIMS}" = global [{k} x i64] zeroinitializer\n\n']
    toks = iter([t for t in tokens if t.start in fitted])
    tok = next(toks, None)
    for lo, hi in zip(bounds, bounds[1:]):
        pieces, lines, exprs, at = [], [], {}, lo
        while tok is not None and tok.start < hi:
            lit = fitted[tok.start]
            key = (lit.type, lit.fn, lit.reciprocal)
            if key not in exprs:
                exprs[key] = _emit(lit, len(exprs), lines, k)
            pieces.append(text[at:tok.start] + exprs[key])
            at = tok.end
            tok = next(toks, None)
        pieces.append(text[at:hi])
        segment = "".join(pieces)
        if lines:
            label = re.search(r"\n[^\s{][^\n]*:\n", segment)  # the first block label
            loads = [f'  %"gc.d{j}" = load i64, ptr getelementptr inbounds ([{k} x i64], ptr @"{DIMS}", '
                     f"i64 0, i64 {j})" for j in range(k)]
            segment = segment[:label.end()] + "\n".join(loads + lines) + "\n" + segment[label.end():]
        out.append(segment)
    return "".join(out)


def _emit(lit: _Literal, index: int, lines: list[str], k: int) -> str:
    """Lines computing the literal's value (in i64, or double for floats); returns its SSA name."""
    name = f'%"gc.e{index}'
    floating = lit.kind == "float"
    ty, mul, add = ("double", "fmul", "fadd") if floating else ("i64", "mul", "add")
    const = (lambda v: _double_hex(float(v))) if floating else str
    acc = const(lit.fn.const)
    for j, c in enumerate(lit.fn.coefs):
        if c:
            dim = f'%"gc.d{j}"'
            if floating:
                lines.append(f'  {name}.f{j}" = sitofp i64 {dim} to double')
                dim = f'{name}.f{j}"'
            lines.append(f'  {name}.m{j}" = {mul} {ty} {dim}, {const(c)}')
            lines.append(f'  {name}.a{j}" = {add} {ty} {acc}, {name}.m{j}"')
            acc = f'{name}.a{j}"'
    if lit.reciprocal:
        lines.append(f'  {name}.r" = fdiv double {const(1)}, {acc}')
        acc = f'{name}.r"'
    if lit.type == ty:
        lines.append(f'  {name}" = {add} {ty} {acc}, {const(0)}')
    else:
        lines.append(f'  {name}" = {"fptrunc" if floating else "trunc"} {ty} {acc} to {lit.type}')
    return f'{name}"'


@dataclass(frozen=True)
class ArenaFormula:
    """A template's arena size in bytes, an affine function of the symbols."""

    size: Affine

    def bytes_at(self, values: Sequence[int]) -> int:
        return max(int(self.size.at(values)), 0)


def affine_arena(plans: Sequence[Plan], points: Sequence[tuple[int, ...]]) -> tuple[list[Plan], ArenaFormula]:
    """The probes' plans with arena buffers placed at affine offsets (see the module doc); a
    buffer no step touches (the gradient of an update folded into its product) gets none."""
    arenas = [[b for b in p.buffers if b.kind == "arena" and b in touched] for p, touched in
              ((p, {buf for step in p.steps for buf in step.buffers()}) for p in plans)]
    first = arenas[0]
    for bufs in arenas[1:]:
        if [(b.name, b.dtype) for b in bufs] != [(b.name, b.dtype) for b in first]:
            raise NotSymbolicError("the arena's buffers depend on the dim values")
    k = len(points[0])
    sizes = []
    for j, buf in enumerate(first):
        f = fit([bufs[j].size for bufs in arenas], points)
        if f is None or f.at((1,) * k) < 0 or any(c < 0 for c in f.coefs):
            raise NotSymbolicError(f"buffer {buf.name}'s size is not an increasing affine function of the dims")
        item = buf.dtype.itemsize
        # bytes per unit of each symbol: whole cache lines when at least one, else 8 (any dtype's alignment)
        per = tuple(-(-c * item // (ALIGNMENT if c * item >= ALIGNMENT else 8)) * (ALIGNMENT if c * item >= ALIGNMENT
                                                                                  else 8) for c in f.coefs)
        sizes.append(Affine(per, -(-f.const * item // ALIGNMENT) * ALIGNMENT))
    lives = _lifetimes(plans[0], first)
    # regions that grow by whole cache lines first, sharing bytes where their lifetimes allow;
    # then the others, one after another (their offsets are only 8-byte aligned)
    lines = [j for j in range(len(first)) if not any(c % ALIGNMENT for c in sizes[j].coefs)]
    offsets: list[Affine] = [Affine((0,) * k, 0)] * len(first)
    reused = _reuse([sizes[j] for j in lines], [lives[j] for j in lines], points[0])
    if reused is None:
        top, rest = Affine((0,) * k, 0), range(len(first))
    else:
        for j, off in zip(lines, reused[0]):
            offsets[j] = off
        top, rest = reused[1], [j for j in range(len(first)) if j not in lines]
    for j in sorted(rest, key=lambda j: j not in lines):
        offsets[j], top = top, _plus(top, sizes[j])
    placed_plans = []
    for plan, bufs, point in zip(plans, arenas, points):
        placed = {b: replace(b, slot=int(off.at(point))) for b, off in zip(bufs, offsets)}
        placed_plans.append(replace(plan, arena_bytes=int(top.at(point)),
                                    steps=tuple(s.with_buffers(placed) for s in plan.steps),
                                    buffers=tuple(placed.get(b, b) for b in plan.buffers)))
    return placed_plans, ArenaFormula(top)


def _plus(a: Affine, b: Affine) -> Affine:
    return Affine(tuple(x + y for x, y in zip(a.coefs, b.coefs)), a.const + b.const)


def _lifetimes(plan: Plan, bufs: Sequence) -> list[tuple[int, int]]:
    """(first, last) step of each arena buffer (`plan.place_arena`'s liveness)."""
    seen: dict = {}
    for i, step in zip(plan.times(), plan.steps):
        for buf in step.buffers():
            if buf.kind == "arena":
                seen[buf] = (seen.get(buf, (i, i))[0], i)
    return [seen[b] for b in bufs]


def _reuse(sizes: Sequence[Affine], lives: Sequence[tuple[int, int]], base: tuple[int, ...]
           ) -> tuple[list[Affine], Affine] | None:
    """Offsets (affine) where buffers live at different steps share bytes, and the arena's end.

    Largest first (by the base probe's sizes, as `graphc.passes.memory.place`), each buffer
    goes to the lowest of 0 and the ends of the buffers placed before that keeps it apart
    from every buffer live at the same time at each corner of the symbols' range 1..LIMIT;
    offsets and sizes being affine, apart at the corners is apart everywhere in it. None
    when no end bounds all the others there (or for more than `MAX_REUSE` buffers).
    """
    k = len(base)
    if len(sizes) > MAX_REUSE:
        return None
    corners = list(product((1, LIMIT), repeat=k))
    zero = Affine((0,) * k, 0)
    offsets: list[Affine] = [zero] * len(sizes)
    ends: list[Affine] = [zero] * len(sizes)

    def apart(lo: Affine, hi: Affine, i: int) -> bool:
        return (all(hi.at(c) <= offsets[i].at(c) for c in corners)
                or all(lo.at(c) >= ends[i].at(c) for c in corners))

    placed: list[int] = []
    for j in sorted(range(len(sizes)), key=lambda j: (-sizes[j].at(base), lives[j][0], j)):
        busy = [i for i in placed if _meet(lives[i], lives[j])]
        for off in sorted([zero, *(ends[i] for i in busy)], key=lambda o: o.at(base)):
            end = _plus(off, sizes[j])
            if all(apart(off, end, i) for i in busy):
                break
        else:
            return None
        offsets[j], ends[j] = off, end
        placed.append(j)
    top = max(ends, key=lambda e: e.at(base), default=zero)
    if any(top.at(c) < e.at(c) for e in ends for c in corners):
        return None
    return offsets, top


def _meet(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def fit_shapes(shapes: Sequence[Sequence[tuple[int, ...]]], points: Sequence[tuple[int, ...]]) -> list[tuple]:
    """Per array, per dim: an int or an Affine of the symbols (shapes[p][i] is array i at probe p)."""
    result = []
    for per_probe in zip(*shapes):
        if len({len(s) for s in per_probe}) != 1:
            raise NotSymbolicError("an output's rank depends on the dim values")
        dims = []
        for values in zip(*per_probe):
            if all(v == values[0] for v in values):
                dims.append(int(values[0]))
                continue
            f = fit(list(values), points)
            if f is None:
                raise NotSymbolicError("an output's shape is not affine in the dims")
            dims.append(f)
        result.append(tuple(dims))
    return result


def check_shapes(bound: Sequence[Mapping[Tensor, Tensor]], points: Sequence[tuple[int, ...]]) -> None:
    """Every bound node's shape is the same affine function of the symbols at every probe.

    `bound[p]` maps each user node to its node bound at `points[p]`: the large probes
    first (`probes`), then the small ones (`small_probes`), where the fit is only evaluated.
    """
    large = len(points) - len(small_probes(len(points[0])))
    for node, first in bound[0].items():
        if first.dtype is None:
            continue
        shapes = [m[node].shape for m in bound]
        if len({len(s) for s in shapes}) != 1:
            raise NotSymbolicError(f"{node.op} {node.name}: its rank depends on the dim values")
        for dims in zip(*shapes):
            if all(d == dims[0] for d in dims):
                continue
            f = fit(list(dims[:large]), points[:large])
            if f is None or any(f.at(p) != d for p, d in zip(points[large:], dims[large:])):
                raise NotSymbolicError(f"{node.op} {node.name}: its shape {shapes[0]} is not an affine function "
                                  "of the dims (a clamped or strided slice, ...)")


def same_consts(plans: Sequence[Plan]) -> None:
    """Constant arrays may not depend on the dim values (they are passed as they are)."""
    first = plans[0].consts
    for p in plans[1:]:
        if len(p.consts) != len(first) or any(a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b)
                                              for a, b in zip(p.consts, first)):
            raise NotSymbolicError("a constant array depends on the dim values")
