"""Row kernels: reductions over the same axes and the maps around them in one loop nest.

A reduce-inner kernel loops over its *rows* (the kept dims of its reductions' input
space S) and, inside a row, over the reduced dims. Its members may be

* *full* nodes, of shape S (maps, computed index ops), evaluated at each element;
* reductions of S over the kernel's axes (keepdims or not), and *row* nodes: maps of a
  reduction's shape that combine row values, and views between row shapes and S
  (``expand_dims``, ``broadcast_like`` of a row value to S).

A member's *level* counts the reductions on its longest path inside the kernel. Each
row runs one pass over its elements per level: pass ``l`` accumulates the reductions whose
input is at level ``l`` and stores the full results of level ``l``; the reductions'
results are then row values that later passes read from registers. Softmax (max, then
exp and its sum, then the division) is one kernel of three passes per row; a full member
needed again in a later pass is recomputed from the same inputs (same instructions, same
value), never stored and re-read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...ir.graph import Tensor
from ...ops.registry import OpKind
from ...passes.sizing import decide, same, templating, unit_dim
from .affine import Affine
from .steps import KernelMode, numel
from .views import Flat, Immediate, Loaded

OUTER_MAP_LIMIT = 1 << 18  # elements: a larger map stays its own (parallel) kernel before a column reduction
SINGLE_ROW_LIMIT = 1 << 16  # elements: a longer space in fewer rows than ROWS_MIN keeps separate kernels
ROWS_MIN = 16  # (a single long row is better as a split reduction plus a parallel map)


@dataclass(frozen=True)
class RowSpace:
    """The input space of a kernel's reductions and their axes."""

    space: tuple[int, ...]
    axes: tuple[int, ...]

    @staticmethod
    def of(reduction: Tensor) -> RowSpace:
        return RowSpace(reduction.inputs[0].shape, tuple(reduction.attrs["axis"]))

    @property
    def kept(self) -> list[int]:
        return [a for a in range(len(self.space)) if a not in self.axes]

    @property
    def rows(self) -> int:
        return numel([self.space[a] for a in self.kept])

    def kind(self, shape: tuple[int, ...]) -> str | None:
        """'full' (S), 'rowk' (a keepdims reduction's shape), 'row' (kept dims only), or None."""
        if same(shape, self.space):
            return "full"
        if same(shape, tuple(1 if a in self.axes else d for a, d in enumerate(self.space))):
            return "rowk"
        if same(shape, tuple(self.space[a] for a in self.kept)):
            return "row"
        return None

    def row_dims(self, shape: tuple[int, ...]) -> list[int]:
        """Positions of the kept coordinates in a node of this shape."""
        return self.kept if len(shape) == len(self.space) else list(range(len(self.kept)))

    def row_index(self, shape: tuple[int, ...], idx: Mapping[int, Affine]) -> tuple[Affine, ...]:
        """The index of a row node of `shape` in the row whose loop indices are `idx`."""
        if len(shape) == len(self.space):
            return tuple(Affine(0) if a in self.axes else idx[a] for a in range(len(self.space)))
        return tuple(idx[a] for a in self.kept)


def reduce_mode(node: Tensor) -> KernelMode:
    """reduce-inner when the innermost non-trivial input dim is reduced, else reduce-outer."""
    x = node.inputs[0]
    live = [k for k, d in enumerate(x.shape) if not unit_dim(d)]
    if not live or live[-1] in node.attrs["axis"]:
        return KernelMode.REDUCE_INNER
    return KernelMode.REDUCE_OUTER


def space_reduction(members: Sequence[Tensor]) -> Tensor | None:
    """The first reduction of a kernel: its input shape and axes are the kernel's loop space."""
    return next((m for m in members if m.opdef.kind is OpKind.REDUCE), None)


def levels(members: Sequence[Tensor]) -> dict[Tensor, int]:
    """Each member's level: the most reductions on a path to it inside the kernel."""
    level: dict[Tensor, int] = {}
    for m in members:
        level[m] = max((level[i] + (i.opdef.kind is OpKind.REDUCE) for i in m.inputs if i in level), default=0)
    return level


def single_pass(members: Sequence[Tensor]) -> bool:
    """No member reads a member reduction and every other member has the space's shape
    (the form a split reduction, whose rows are parts of one long dim, can compute)."""
    red = space_reduction(members)
    level = levels(members)
    return all(level[m] == 0 and (m.opdef.kind is OpKind.REDUCE or same(m.shape, red.inputs[0].shape)) for m in members)


def row_fusable(union: Sequence[Tensor], probes: Mapping[Tensor, Loaded | Flat | Immediate | None]) -> bool:
    """Can one reduce-inner loop nest compute `union` (module docstring)?

    Every reduction reduces the same space S over the same axes (reduce-inner); every
    other member is full or a row node; members read other members only at their own row:
    full maps read full or keepdims-row members (broadcast along the reduced dims), row
    maps read members of their own shape, views map each row to itself, computed index
    ops read no member.
    """
    red = space_reduction(union)
    if red is None or reduce_mode(red) is not KernelMode.REDUCE_INNER:
        return False
    rs = RowSpace.of(red)
    if all(unit_dim(rs.space[a]) for a in rs.axes):  # full and keepdims-row shapes would coincide
        return False
    if decide("few long rows", numel(rs.space) >= SINGLE_ROW_LIMIT and rs.rows < ROWS_MIN) and not single_pass(union):
        return False
    inside = set(union)
    for m in union:
        kind = m.opdef.kind
        member_inputs = [(pos, i) for pos, i in enumerate(m.inputs) if i in inside and pos not in m.opdef.shape_only]
        if kind is OpKind.REDUCE:
            if RowSpace.of(m) != rs:
                return False
            continue
        shape_kind = rs.kind(m.shape)
        if shape_kind is None or kind not in (OpKind.ELEMENTWISE, OpKind.INDEX):
            return False
        if kind is OpKind.ELEMENTWISE:
            allowed = ("full", "rowk") if shape_kind == "full" else (shape_kind,)
            if any(rs.kind(i.shape) not in allowed for _, i in member_inputs):
                return False
        elif member_inputs and not _keeps_rows(rs, m, probes.get(m)):
            return False
    return True


def _keeps_rows(rs: RowSpace, m: Tensor, probe: Loaded | Flat | Immediate | None) -> bool:
    """Does the view `m` read its input at the same row (each kept coordinate to itself)?"""
    if not isinstance(probe, Loaded):
        return False
    src = m.inputs[probe.i]
    if rs.kind(src.shape) is None:
        return False
    for j, (a_in, a_out) in enumerate(zip(rs.row_dims(src.shape), rs.row_dims(m.shape))):
        want = Affine(0) if unit_dim(rs.space[rs.kept[j]]) else Affine.var(a_out)
        if probe.index[a_in] != want:
            return False
    return True


def after_reduction(members: Sequence[Tensor], r: Tensor) -> set[Tensor]:
    """The members of a reduce-outer kernel computed after its reduction `r`, over r's shape:
    r itself, the members that read r, and the members of r's shape that read no member
    (a parameter's decay in an optimizer update)."""
    inside = set(members)
    after = {r}
    for m in members:
        ins = [i for pos, i in enumerate(m.inputs) if i in inside and pos not in m.opdef.shape_only]
        if any(i in after for i in ins) or (not ins and same(m.shape, r.shape)
                                            and not same(m.shape, r.inputs[0].shape)):
            after.add(m)
    return after


def outer_fusable(union: Sequence[Tensor]) -> bool:
    """Can one reduce-outer loop nest compute `union`: one reduction r over the outer axes of
    its input space S, maps over S before it (stored as they are computed), and maps and
    assignments over r's shape after it (run over r's result once it is complete: a bias
    gradient and the bias update)?"""
    reduces = [m for m in union if m.opdef.kind is OpKind.REDUCE]
    if len(reduces) != 1 or reduce_mode(reduces[0]) is not KernelMode.REDUCE_OUTER:
        return False
    (r,) = reduces
    space = r.inputs[0].shape
    if same(r.shape, space):
        return False
    inside, after = set(union), after_reduction(union, r)
    if not templating() and numel(space) > OUTER_MAP_LIMIT and any(m not in after for m in union):
        return False  # the reduction runs on one thread: a large map before it keeps the pool
    for m in union:
        if m is r:
            continue
        ins = [i for pos, i in enumerate(m.inputs) if i in inside and pos not in m.opdef.shape_only]
        if m in after:
            if m.opdef.kind not in (OpKind.ELEMENTWISE, OpKind.STATE) or not same(m.shape, r.shape) \
                    or any(i not in after for i in ins):
                return False
        elif not same(m.shape, space) or not (m.opdef.kind is OpKind.ELEMENTWISE
                                              or (m.opdef.kind is OpKind.INDEX and not ins)):
            return False
    return True
