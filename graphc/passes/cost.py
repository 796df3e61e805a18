"""Static cost estimates of nodes: bytes of their values and floating-point operations."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Tensor

SOURCE_OPS = frozenset({"placeholder", "variable", "constant"})


def nbytes(node: Tensor) -> int:
    """Bytes of the node's value (0 for ops without a value); shapes must be static."""
    if node.dtype is None:
        return 0
    return int(np.prod(node.shape, dtype=np.int64)) * node.dtype.itemsize


def flops(node: Tensor) -> int:
    """Rough floating-point operation count: 2mnk per GEMM, one per element read otherwise."""
    kind = node.opdef.kind
    if kind == "matmul":
        a, _ = node.inputs
        return 2 * int(np.prod(node.shape, dtype=np.int64)) * int(a.shape[-1])
    if kind == "reduce":
        return int(np.prod(node.inputs[0].shape, dtype=np.int64))
    if kind == "elementwise":
        return int(np.prod(node.shape, dtype=np.int64))
    return 0
