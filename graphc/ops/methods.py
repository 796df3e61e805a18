"""Operator overloads and convenience methods of `Tensor`, attached once at import."""

from __future__ import annotations

from typing import Any

from ..ir.graph import Tensor
from . import contract, linalg, rearrange, reduce, scan, selection, shape, ufuncs
from . import elementwise as ew


def _swap(fn):
    return lambda self, other: fn(other, self)


def _methods() -> dict[str, Any]:
    return {
        "__add__": lambda a, b: ew.add(a, b), "__radd__": _swap(lambda a, b: ew.add(a, b)),
        "__sub__": lambda a, b: ew.subtract(a, b), "__rsub__": _swap(lambda a, b: ew.subtract(a, b)),
        "__mul__": lambda a, b: ew.multiply(a, b), "__rmul__": _swap(lambda a, b: ew.multiply(a, b)),
        "__truediv__": lambda a, b: ew.divide(a, b), "__rtruediv__": _swap(lambda a, b: ew.divide(a, b)),
        "__pow__": lambda a, b: ew.power(a, b), "__rpow__": _swap(lambda a, b: ew.power(a, b)),
        "__mod__": lambda a, b: ufuncs.mod(a, b), "__rmod__": _swap(lambda a, b: ufuncs.mod(a, b)),
        "__matmul__": lambda a, b: linalg.matmul(a, b), "__rmatmul__": _swap(lambda a, b: linalg.matmul(a, b)),
        "__neg__": lambda a: ew.negative(a),
        "__pos__": lambda a: a,
        "__abs__": lambda a: ew.abs(a),
        "__lt__": lambda a, b: ew.less(a, b),
        "__le__": lambda a, b: ew.less_equal(a, b),
        "__gt__": lambda a, b: ew.greater(a, b),
        "__ge__": lambda a, b: ew.greater_equal(a, b),
        "__getitem__": lambda a, key: shape.getitem(a, key),
        "T": property(lambda a: shape.transpose(a)),
        "sum": lambda a, axis=None, keepdims=False: reduce.sum(a, axis, keepdims),
        "mean": lambda a, axis=None, keepdims=False: reduce.mean(a, axis, keepdims),
        "max": lambda a, axis=None, keepdims=False: reduce.max(a, axis, keepdims),
        "min": lambda a, axis=None, keepdims=False: reduce.min(a, axis, keepdims),
        "reshape": lambda a, *shp: shape.reshape(a, shp[0] if len(shp) == 1 else shp),
        "astype": lambda a, dtype: ew.cast(a, dtype),
        "transpose": lambda a, *perm: shape.transpose(a, (perm[0] if len(perm) == 1 else perm) or None),
        "ravel": lambda a: rearrange.ravel(a),
        "flatten": lambda a: rearrange.ravel(a),
        "squeeze": lambda a, axis=None: shape.squeeze(a, axis),
        "swapaxes": lambda a, axis1, axis2: rearrange.swapaxes(a, axis1, axis2),
        "repeat": lambda a, repeats, axis=None: rearrange.repeat(a, repeats, axis),
        "diagonal": lambda a, offset=0, axis1=0, axis2=1: contract.diagonal(a, offset, axis1, axis2),
        "trace": lambda a, offset=0, axis1=0, axis2=1, dtype=None: contract.trace(a, offset, axis1, axis2, dtype),
        "cumsum": lambda a, axis=None, dtype=None: scan.cumsum(a, axis, dtype),
        "cumprod": lambda a, axis=None, dtype=None: scan.cumprod(a, axis, dtype),
        "argsort": lambda a, axis=-1, kind=None, order=None: selection.argsort(a, axis, kind, order),
    }


for _name, _fn in _methods().items():
    type.__setattr__(Tensor, _name, _fn)
