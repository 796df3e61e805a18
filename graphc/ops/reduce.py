"""Reductions over axes (numpy's axis=None|int|tuple, keepdims, negative axes).

Primitives: sum, prod, max, min, argmax, argmin, and `size_of` (an element count read
from a shape, so a mean over a dim that is None until run time still works).
Composites built from them: mean, var, std, logsumexp.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from ..dtypes import as_dtype, broadcast_shapes, int64, is_float, normalize_axes, num_elements
from ..errors import ShapeError
from ..ir.composite import composite
from ..ir.graph import Tensor
from . import elementwise as ew
from . import semantics
from .core import as_tensor, promote
from .registry import OpDef, register
from .shape import broadcast_like, expand_reduced, reshape_like
from .state import stop_gradient

__all__ = ["sum", "prod", "max", "min", "argmax", "argmin", "size_of", "mean", "var", "std", "logsumexp"]


def reduced_shape(shape: tuple, axes: tuple[int, ...], keepdims: bool) -> tuple:
    """The shape left after reducing `axes`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


REDUCE_ATTRS = {"axis": "ints", "keepdims": "bool"}


def canon_axis(inputs: tuple, attrs: dict) -> dict:
    """axis=None|int|tuple becomes a sorted tuple of non-negative axes; keepdims a bool."""
    attrs["axis"] = normalize_axes(attrs.get("axis"), inputs[0].ndim)
    if "keepdims" in attrs:
        attrs["keepdims"] = bool(attrs["keepdims"])
    return attrs


def _reduce_type(inputs: tuple, attrs: dict):
    """sum/prod: floats keep their dtype, ints and bools accumulate in int64 (numpy)."""
    x = inputs[0]
    dtype = x.dtype if is_float(x.dtype) else int64
    return reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), dtype


def _nonempty(x: Tensor, axes: tuple[int, ...], what: str) -> None:
    if any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"{what} of an empty axis is undefined (reduced dims of size 0)")


def _extremum_type(inputs: tuple, attrs: dict):
    x = inputs[0]
    _nonempty(x, attrs["axis"], "the maximum/minimum")
    return reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), x.dtype


def _arg_type(inputs: tuple, attrs: dict):
    x = inputs[0]
    _nonempty(x, attrs["axis"], "the arg-maximum/arg-minimum")
    return reduced_shape(x.shape, attrs["axis"], attrs["keepdims"]), int64


def _np_reduce(fn):
    return lambda x, *, axis, keepdims: np.asarray(fn(x, axis=axis, keepdims=keepdims))


def _np_arg(fn):
    """numpy's argmax/argmin take one axis or None (flattened); canonical axes are one of those."""
    def ref(x: np.ndarray, *, axis: tuple, keepdims: bool) -> np.ndarray:
        if len(axis) == x.ndim:
            return np.asarray(fn(x, axis=None, keepdims=keepdims))
        return np.asarray(fn(x, axis=axis[0], keepdims=keepdims))
    return ref


def _keep(g: Tensor, axis: tuple, keepdims: bool) -> Tensor:
    return expand_reduced(g, axis, keepdims)


def _float_only(rule):
    """Integer operands have no gradient: the rule is skipped for them."""
    def wrapped(g, out, x, **attrs):
        return rule(g, out, x, **attrs) if is_float(x.dtype) else (None,)
    return wrapped


# --- sum ------------------------------------------------------------------------------------

def _spread(g: Tensor, x: Tensor) -> Tensor:
    """g (reduced axes kept as size 1) broadcast over x's shape.

    A cotangent can know a dim that x leaves None (it met a static operand downstream);
    then the result takes the broadcast of both shapes, via an exact multiply by ones.
    """
    if broadcast_shapes(g.shape, x.shape) == x.shape:
        return broadcast_like(g, x)
    return g * broadcast_like(as_tensor(1, dtype=g.dtype, graph=g.graph), x)


register(OpDef(
    "sum", "reduce", _reduce_type, ref=_np_reduce(np.sum), reduce="sum", canon=canon_axis, attrs=REDUCE_ATTRS,
    vjp=lambda g, out, x, *, axis, keepdims: (_spread(_keep(g, axis, keepdims), x),),
    jvp=lambda t, out, x, *, axis, keepdims: sum(t[0], axis, keepdims),
    doc="sum over axes"))


# --- prod -----------------------------------------------------------------------------------

def _prod_partials(x: Tensor, axis: tuple) -> Tensor:
    """d prod(x) / d x_i, the product of the other elements, without dividing by zero.

    With p the product of the nonzero elements and z the product of the zeros (1 when
    there are none): a nonzero x_i gets z * p / x_i; a zero gets p times the product of
    the other zeros, which is 1 with one zero, the other zero with two, 0 with more. The
    values are exact, and so are their first derivatives (the Hessian of prod, symmetric,
    also at zeros); third derivatives at two or more exact zeros are not.
    """
    is_zero = ew.equal(x, 0)
    zeros = sum(ew.cast(is_zero, x.dtype), axis, keepdims=True)
    safe = ew.where(is_zero, 1, x)
    p = prod(safe, axis, keepdims=True)
    z = prod(ew.where(is_zero, x, 1), axis, keepdims=True)
    other_zero = sum(ew.where(is_zero, x, 0), axis, keepdims=True) - x  # the other zero, when there are two
    at_zero = ew.where(ew.equal(zeros, 1), 1, ew.where(ew.equal(zeros, 2), other_zero, 0))
    return ew.where(is_zero, p * at_zero, z * (p / safe))


register(OpDef(
    "prod", "reduce", _reduce_type, ref=_np_reduce(np.prod), reduce="prod", canon=canon_axis, attrs=REDUCE_ATTRS,
    vjp=_float_only(lambda g, out, x, *, axis, keepdims: (_keep(g, axis, keepdims) * _prod_partials(x, axis),)),
    jvp=lambda t, out, x, *, axis, keepdims: (
        None if t[0] is None or not is_float(x.dtype) else sum(t[0] * _prod_partials(x, axis), axis, keepdims)),
    doc="product over axes"))


# --- max / min ------------------------------------------------------------------------------

def _ties(x: Tensor, out: Tensor, axis: tuple, keepdims: bool) -> tuple[Tensor, Tensor]:
    """A float mask of the elements equal to the extremum, and the tie count per slice."""
    mask = ew.cast(ew.equal(x, broadcast_like(_keep(out, axis, keepdims), x)), x.dtype)
    return mask, sum(mask, axis, keepdims=True)


def _extremum_vjp(g: Tensor, out: Tensor, x: Tensor, *, axis: tuple, keepdims: bool) -> tuple:
    mask, count = _ties(x, out, axis, keepdims)
    return (_keep(g, axis, keepdims) / count * mask,)


def _extremum_jvp(t: tuple, out: Tensor, x: Tensor, *, axis: tuple, keepdims: bool) -> Tensor | None:
    if t[0] is None or not is_float(x.dtype):
        return None
    mask, count = _ties(x, out, axis, keepdims)
    return sum(t[0] * mask, axis, keepdims) / (count if keepdims else sum(mask, axis))


for _name, _np_fn in (("max", np.max), ("min", np.min)):
    register(OpDef(
        _name, "reduce", _extremum_type, reduce=_name, canon=canon_axis, attrs=REDUCE_ATTRS,
        ref=lambda x, *, axis, keepdims, fn=_np_fn: semantics.reduce_extremum(fn, x, axis, keepdims),
        vjp=_float_only(_extremum_vjp), jvp=_extremum_jvp,
        doc=f"{_name}imum over axes; ties share the cotangent evenly"))

for _name, _np_fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    register(OpDef(
        _name, "reduce", _arg_type, ref=_np_arg(_np_fn), reduce=_name, canon=canon_axis, attrs=REDUCE_ATTRS,
        doc=f"int64 index of the first {_name[3:]}imum along one axis, or in the flattened array "
            "(the reduced axes are one axis or all axes); no gradient"))


# --- size_of --------------------------------------------------------------------------------

def _count(shape: tuple, axes: tuple[int, ...]) -> int:
    return math.prod(shape[a] for a in axes)


def _canon_size_of(inputs: tuple, attrs: dict) -> dict:
    attrs["axis"] = normalize_axes(attrs.get("axis"), inputs[0].ndim)
    attrs["dtype"] = as_dtype(attrs["dtype"])
    return attrs


register(OpDef(
    "size_of", "index", lambda inputs, attrs: ((), attrs["dtype"]), canon=_canon_size_of, shape_only=(0,),
    attrs={"axis": "ints", "dtype": "dtype"},
    ref=lambda x, *, axis, dtype: np.asarray(_count(x.shape, axis), dtype=dtype),
    gather=lambda s, idx, load, node: s.const(_count(node.inputs[0].shape, node.attrs["axis"]), node.attrs["dtype"]),
    doc="the number of elements of x over `axis` (None: all), as a scalar of `dtype`; x's data is not read"))


# --- public primitives ----------------------------------------------------------------------

def _reduction(op: str, x: Any, axis: Any, keepdims: bool) -> Tensor:
    (t,) = promote(x)
    return t.graph.make(op, (t,), {"axis": axis, "keepdims": keepdims})


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001 (numpy's name)
    """Sum of elements over `axis` (None: all); ints and bools sum to int64."""
    return _reduction("sum", x, axis, keepdims)


def prod(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Product of elements over `axis` (None: all); ints and bools multiply to int64."""
    return _reduction("prod", x, axis, keepdims)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001 (numpy's name)
    """Maximum over `axis` (None: all); an empty reduced axis is a ShapeError. NaN propagates."""
    return _reduction("max", x, axis, keepdims)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001 (numpy's name)
    """Minimum over `axis` (None: all); an empty reduced axis is a ShapeError. NaN propagates."""
    return _reduction("min", x, axis, keepdims)


def _arg_reduction(op: str, x: Any, axis: int | None, keepdims: bool) -> Tensor:
    if axis is not None and not isinstance(axis, (int, np.integer)):
        raise ShapeError(f"{op}: axis must be an int or None (flattened), got {axis!r}")
    return _reduction(op, x, axis, keepdims)


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """int64 index of the first maximum along `axis` (None: in the flattened array)."""
    return _arg_reduction("argmax", x, axis, keepdims)


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """int64 index of the first minimum along `axis` (None: in the flattened array)."""
    return _arg_reduction("argmin", x, axis, keepdims)


def size_of(x: Any, axis: Any = None, dtype: Any = int64) -> Tensor:
    """The number of elements of x over `axis` (None: all) as a scalar of `dtype`.

    Its value is read from x's shape when the graph runs, so it works for dims that are
    None while building.
    """
    (t,) = promote(x)
    return t.graph.make("size_of", (t,), {"axis": axis, "dtype": dtype})


# --- composites -----------------------------------------------------------------------------

def _floating(x: Any) -> Tensor:
    """numpy's rule for statistics: float inputs keep their dtype, ints and bools use float64."""
    (t,) = promote(x)
    return t if is_float(t.dtype) else ew.cast(t, np.float64)


def _count_of(t: Tensor, axes: tuple[int, ...]) -> Any:
    """The element count over axes: a Python int when static, else a size_of node."""
    n = num_elements(tuple(t.shape[a] for a in axes))
    return size_of(t, axes, t.dtype) if n is None else n


@composite
def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over `axis` (ints and bools averaged in float64); empty slices give NaN."""
    t = _floating(x)
    axes = normalize_axes(axis, t.ndim)
    return sum(t, axes, keepdims) / _count_of(t, axes)


@composite
def var(x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance mean(|x - mean(x)|**2) over `axis`, divided by N - ddof (numpy.var)."""
    t = _floating(x)
    axes = normalize_axes(axis, t.ndim)
    d = t - mean(t, axes, keepdims=True)
    n = _count_of(t, axes)
    if ddof:
        n = builtins.max(n - ddof, 0) if isinstance(n, int) else ew.maximum(n - ddof, 0)
    return sum(d * d, axes, keepdims) / n


@composite
def std(x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Standard deviation, sqrt(var(x, axis, keepdims, ddof)).

    At zero spread its gradient is 0 (PyTorch's and autograd's choice; JAX gives NaN):
    std is a norm of x - mean(x), and 0 is its smallest subgradient there, as abs'(0) = 0.
    """
    v = var(x, axis, keepdims, ddof)
    flat = ew.equal(v, 0)
    return ew.where(flat, 0, ew.sqrt(ew.where(flat, 1, v)))  # the inner where keeps sqrt'(0) = inf out


@composite
def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over `axis`, computed stably (scipy.special.logsumexp).

    The max of each slice (a constant to autodiff) is subtracted before exponentiating;
    a non-finite max is replaced by 0, so slices of all -inf give -inf and +inf entries
    give +inf. An empty slice gives -inf when its size is known while building.
    """
    t = _floating(x)
    axes = normalize_axes(axis, t.ndim)
    if any(t.shape[a] == 0 for a in axes):
        return ew.log(sum(ew.exp(t), axes, keepdims))
    m = stop_gradient(max(t, axes, keepdims=True))
    m = ew.where(ew.less(ew.abs(m), np.inf), m, 0)
    lse = ew.log(sum(ew.exp(t - m), axes, keepdims))
    return lse + (m if keepdims else reshape_like(m, lse))

