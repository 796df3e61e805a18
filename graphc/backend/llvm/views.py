"""Which index ops are strided views, found by running their gather forms symbolically.

An index op whose gather reads one input element at an affine index (reshape of a
row-major buffer, transpose, expand_dims, broadcast_to, slicing with steps, ...) costs
nothing at run time: its readers address the input's memory through new strides. The
probe below evaluates a gather on `Affine` loop indices; any operation that is not
integer index arithmetic (a select, a cast of loaded data, ...) makes it "not a view".
An op whose gather yields a compile-time constant (size_of) becomes an immediate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...dtypes import int64
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...passes.sizing import decide, unit_dim
from .affine import Affine


class NotAffineError(Exception):
    """The gather does more than affine index arithmetic and one load."""


@dataclass(frozen=True)
class Loaded:
    """A probe load: input `i` read at `index` (one Affine per input dim)."""

    i: int
    index: tuple[Affine, ...]


@dataclass(frozen=True)
class Immediate:
    """A compile-time scalar of a dtype."""

    value: Any
    dtype: np.dtype


@dataclass(frozen=True)
class Flat:
    """A `row_major` index op over a dense input: the input's buffer read with the result's row-major strides."""


FLAT = Flat()


def loop_index(shape: tuple[int, ...]) -> tuple[tuple[Affine, ...], dict[int, int]]:
    """Affine loop variables over `shape` (size-1 dims are the constant 0) and their ranges."""
    idx = tuple(Affine(0) if unit_dim(d) else Affine.var(k) for k, d in enumerate(shape))
    return idx, {k: d for k, d in enumerate(shape)}


class ProbeEmitter:
    """The Emitter protocol on Affine int64 values; anything else raises NotAffineError."""

    def __init__(self, ranges: dict[int, int]):
        self.ranges = ranges

    def const(self, value: Any, dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        if dtype == int64 and isinstance(value, (int, np.integer)):
            return Affine(int(value))
        return Immediate(np.asarray(value, dtype=dtype).item(), dtype)

    def dtype_of(self, v: Any) -> np.dtype:
        if isinstance(v, Affine):
            return int64
        if isinstance(v, Immediate):
            return v.dtype
        raise NotAffineError

    def cast(self, v: Any, dtype: np.dtype) -> Any:
        if isinstance(v, Affine) and v.is_const:
            return self.const(v.const, dtype)
        if isinstance(v, Affine) and np.dtype(dtype) == int64:
            return v
        raise NotAffineError

    def add(self, a: Any, b: Any) -> Affine:
        return _aff(a).add(_aff(b))

    def sub(self, a: Any, b: Any) -> Affine:
        return _aff(a).add(_aff(b).scale(-1))

    def mul(self, a: Any, b: Any) -> Affine:
        a, b = _aff(a), _aff(b)
        if b.is_const:
            return a.scale(b.const)
        if a.is_const:
            return b.scale(a.const)
        raise NotAffineError

    def neg(self, a: Any) -> Affine:
        return _aff(a).scale(-1)

    def floordiv(self, a: Any, b: Any) -> Affine:
        return self._divmod(a, b)[0]

    def mod(self, a: Any, b: Any) -> Affine:
        return self._divmod(a, b)[1]

    def _divmod(self, a: Any, b: Any) -> tuple[Affine, Affine]:
        a, b = _aff(a), _aff(b)
        if not b.is_const or b.const <= 0:
            raise NotAffineError
        out = a.divmod(b.const, self.ranges)
        if out is None:
            raise NotAffineError
        return out

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise NotAffineError
        return refuse


def _aff(v: Any) -> Affine:
    if isinstance(v, Affine):
        return v
    raise NotAffineError


def probe_gather(node: Tensor) -> Loaded | Immediate | None:
    """A view's single affine load, an immediate, or None when the gather must run as code.

    Which of the three is a size decision (`graphc.passes.sizing`): a gather that is code at
    a template's nominal build stays code where the sizes make it a view or a constant (the
    gradient of ``x[1:]`` reads nothing of an empty slice at N = 1)."""
    found = _probe_gather(node)
    if decide("view", type(found).__name__) == "NoneType":
        return None
    return found


def _probe_gather(node: Tensor) -> Loaded | Immediate | None:
    idx, ranges = loop_index(node.shape)
    loads: list[Loaded] = []

    def load(i: int, index: tuple) -> Loaded:
        index = tuple(index)
        if not all(isinstance(v, Affine) for v in index):
            raise NotAffineError
        item = Loaded(i, index)
        loads.append(item)
        return item

    try:
        result = node.opdef.gather(ProbeEmitter(ranges), idx, load, node)
    except NotAffineError:
        return None
    if isinstance(result, Affine) and result.is_const:
        return Immediate(result.const, node.dtype)
    if isinstance(result, Immediate):
        return Immediate(np.asarray(result.value, dtype=node.dtype).item(), node.dtype)
    if not isinstance(result, Loaded) or len(loads) != 1:
        return None
    src = node.inputs[result.i]
    if len(result.index) != src.ndim:
        raise GraphcError(f"{node.op} {node.name}: gather indexes input {result.i} with "
                          f"{len(result.index)} indices for rank {src.ndim}")
    if np.prod(node.shape, dtype=np.int64) > 0:
        for ix, dim in zip(result.index, src.shape):
            lo, hi = ix.bounds(ranges)
            if lo < 0 or hi >= dim:
                raise GraphcError(f"{node.op} {node.name}: gather reads index range [{lo}, {hi}] "
                                  f"of a dim of size {dim}")
    return result
