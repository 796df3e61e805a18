"""Jacobians, Hessians and Hessian-vector products built from `gradients` and `jvp`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import is_float, is_static, num_elements, shape_str
from ..errors import GraphcError, ShapeError
from ..ir.graph import Tensor
from ..ops import shape as shp
from ..ops.core import as_tensor, constant
from ..ops.reduce import sum as reduce_sum
from ..ops.state import stop_gradient
from .forward import jvp
from .reverse import add_all, as_list, gradients

__all__ = ["jacobian", "hessian", "hessian_vector_product"]

MODES = ("auto", "fwd", "rev")


def choose_mode(y: Tensor, x: Tensor, mode: str = "auto") -> str:
    """The mode `jacobian` uses: "fwd" when x has fewer elements than y, else "rev"."""
    if mode not in MODES:
        raise GraphcError(f"jacobian: mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    return "fwd" if num_elements(x.shape) < num_elements(y.shape) else "rev"


def _unit(index: int, like: Tensor) -> Tensor:
    e = np.zeros(num_elements(like.shape), dtype=like.dtype)
    e[index] = 1
    return constant(e.reshape(like.shape), graph=like.graph)


def _check(y: Tensor, x: Tensor, what: str) -> None:
    for t, role in ((y, "y"), (x, "x")):
        if not is_static(t.shape):
            raise ShapeError(f"{what} needs static shapes, but {role} = {t.name} has shape {shape_str(t.shape)}; "
                             "give the placeholder a full shape")
        if not is_float(t.dtype):
            raise GraphcError(f"{what} needs floating tensors, but {role} = {t.name} is {t.dtype}")


def _jacobian_one(y: Tensor, x: Tensor, mode: str) -> Tensor:
    _check(y, x, "jacobian")
    mode = choose_mode(y, x, mode)
    ny, nx = num_elements(y.shape), num_elements(x.shape)
    if ny == 0 or nx == 0:
        return constant(np.zeros(y.shape + x.shape, dtype=y.dtype), graph=y.graph)
    if mode == "fwd":
        cols = [shp.reshape(jvp(y, x, _unit(j, x))[0], (ny,)) for j in range(nx)]
        flat = shp.stack(cols, axis=1)
    else:
        rows = [shp.reshape(gradients(y, x, grad_ys=_unit(i, y), unconnected="zero")[0], (nx,))
                for i in range(ny)]
        flat = shp.stack(rows, axis=0)
    return shp.reshape(flat, y.shape + x.shape)


def jacobian(y: Tensor, x: Any, mode: str = "auto") -> Tensor | list[Tensor]:
    """dy/dx with shape ``y.shape + x.shape`` (a list of them when x is a list).

    ``mode="fwd"`` builds one forward pass (a JVP) per element of x, each giving a column;
    ``"rev"`` one reverse pass (a VJP) per element of y, each giving a row; ``"auto"``
    picks "fwd" when x has fewer elements than y. Shapes must be static.
    """
    if isinstance(x, (list, tuple)):
        return [_jacobian_one(y, xi, mode) for xi in as_list(x, "jacobian: x")]
    return _jacobian_one(y, as_list(x, "jacobian: x")[0], mode)


def hessian(y: Tensor, x: Any, mode: str = "fwd") -> Tensor:
    """d²y/dx² for a scalar y, with shape ``x.shape + x.shape``.

    The gradient is built by reverse mode and differentiated again with `jacobian` in
    `mode` (default "fwd": forward-over-reverse, one JVP of the gradient per element of x).
    """
    x = as_list(x, "hessian: x")
    if len(x) != 1:
        raise GraphcError("hessian: x must be a single tensor")
    x = x[0]
    _check(y, x, "hessian")
    if y.shape != ():
        raise ShapeError(f"hessian needs a scalar y, but {y.name} has shape {shape_str(y.shape)}")
    (g,) = gradients(y, x, unconnected="zero")
    return _jacobian_one(g, x, mode)


def hessian_vector_product(y: Tensor, xs: Any, vs: Any) -> list[Tensor]:
    """H v for scalar y without forming H: the gradient of <grad y, v> (v held constant).

    `xs` and `vs` are a tensor or matching lists; returns one tensor per x.
    """
    xs_list, vs_list = as_list(xs, "hessian_vector_product: xs"), list(vs) if isinstance(vs, (list, tuple)) else [vs]
    if len(xs_list) != len(vs_list):
        raise GraphcError(f"hessian_vector_product: {len(xs_list)} xs but {len(vs_list)} vs")
    if y.shape != ():
        raise ShapeError(f"hessian_vector_product needs a scalar y, but {y.name} has shape {shape_str(y.shape)}")
    grads = gradients(y, xs_list, unconnected="zero")
    inner = add_all([reduce_sum(g * stop_gradient(as_tensor(v, dtype=x.dtype, graph=x.graph)))
                     for g, v, x in zip(grads, vs_list, xs_list)])
    return gradients(inner, xs_list, unconnected="zero")
