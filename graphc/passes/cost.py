"""Static cost estimates of nodes: bytes of their values and floating-point operations."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Tensor
from ..ops.registry import OpKind


def is_source(node: Tensor) -> bool:
    """A placeholder, constant or variable: its value comes from outside the program."""
    return node.opdef.kind is OpKind.SOURCE


def nbytes(node: Tensor) -> int:
    """Bytes of the node's value (0 for ops without a value); shapes must be static."""
    if node.dtype is None:
        return 0
    return int(np.prod(node.shape, dtype=np.int64)) * node.dtype.itemsize


def flops(node: Tensor) -> int:
    """Rough floating-point operation count: 2mnk per GEMM, one per element read otherwise
    (a LAPACK op: its factorization's order of magnitude)."""
    return flops_of(node.opdef.kind, node.shape, node.inputs[0].shape if node.inputs else ())


def flops_of(kind: OpKind, shape: tuple[int, ...], first_input: tuple[int, ...]) -> int:
    """`flops` of an op of `kind` from its result's shape and its first input's shape."""
    if kind == OpKind.MATMUL:
        return 2 * int(np.prod(shape, dtype=np.int64)) * int(first_input[-1])
    if kind == OpKind.REDUCE:
        return int(np.prod(first_input, dtype=np.int64))
    if kind == OpKind.ELEMENTWISE:
        return int(np.prod(shape, dtype=np.int64))
    if kind == OpKind.LAPACK:  # a factorization of each matrix: ~ min(m, n)² max(m, n)
        m, n = first_input[-2:]
        return int(np.prod(first_input[:-2], dtype=np.int64)) * min(m, n) ** 2 * max(m, n)
    return 0
