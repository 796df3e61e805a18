"""Constant folding: ops whose inputs are all constants become constants."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Tensor
from ..ops.core import constant
from ..ops.registry import OpKind
from .manager import register_pass
from .module import Module, rebuild

_FOLDABLE_KINDS = (OpKind.ELEMENTWISE, OpKind.REDUCE, OpKind.INDEX, OpKind.MATMUL)
_MAX_GROWTH = 64  # never fold a broadcast that makes a constant much larger than its inputs


def _fold(node: Tensor) -> Tensor | None:
    if node.opdef.kind not in _FOLDABLE_KINDS or not node.inputs:
        return None
    if any(i.op != "constant" for i in node.inputs):
        return None
    biggest = max(i.attrs["value"].array.size for i in node.inputs)
    size = int(np.prod(node.shape))
    if size > max(biggest, _MAX_GROWTH):
        return None
    args = [i.attrs["value"].array for i in node.inputs]
    with np.errstate(all="ignore"):
        value = np.asarray(node.opdef.ref(*args, **node.params)).astype(node.dtype)
    return constant(value, graph=node.graph)


@register_pass("fold", "evaluate ops whose inputs are all constants (no large broadcasts)")
def fold(module: Module, options: object = None) -> tuple[Module, int]:
    return rebuild(module, _fold)
