"""Layers that create their own variables (re-exported as ``gc.nn.dense``)."""

from __future__ import annotations

from collections.abc import Callable

from .errors import ShapeError
from .ir.graph import Tensor
from .layers_conv import BatchNorm, Conv2D
from .ops.core import Variable, as_tensor
from .ops.linalg import matmul
from .train import init

__all__ = ["BatchNorm", "Conv2D", "dense"]


def dense(x: Tensor, units: int, activation: Callable[[Tensor], Tensor] | None = None, name: str | None = None,
          seed: int | None = None) -> Tensor:
    """A fully connected layer: ``activation(x @ W + b)`` with new variables W and b.

    W has shape (x.shape[-1], units) with Glorot-uniform values drawn with `seed` and b is
    zeros, both in x's dtype. ``seed=None`` uses the number of variables already in the
    graph, so a script that builds the same model gets the same weights on every run.
    The variables are named ``<name>/kernel`` and ``<name>/bias`` (name defaults to "dense",
    made unique and put under the open `gc.name_scope`), as are the ops it builds.
    """
    x = as_tensor(x)
    if x.ndim < 1 or x.shape[-1] is None:
        raise ShapeError(f"dense needs an input whose last dim is known, got shape {x.shape}")
    if x.dtype is None or x.dtype.kind != "f":
        raise ShapeError(f"dense needs a floating-point input, got {x.dtype}")
    units = int(units)
    if units < 1:
        raise ShapeError(f"dense needs units >= 1, got {units}")
    graph = x.graph
    if seed is None:
        seed = len(graph.variables)
    with graph.as_default(), graph.name_scope(name or "dense"):
        kernel = Variable(init.glorot_uniform((x.shape[-1], units), seed=seed, dtype=x.dtype), name="kernel")
        bias = Variable(init.zeros((units,), dtype=x.dtype), name="bias")
        y = matmul(x, kernel) + bias
        return y if activation is None else activation(y)
