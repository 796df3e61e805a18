"""Parameter updates folded into the product that computes their gradient.

An SGD step ``W -= lr * (x.T @ d)`` plans as a GEMM writing the gradient into the arena and
a map kernel ``assign(W, subtract(W, multiply(lr, gradient)))`` writing W in place. When
nothing else reads the gradient, `fold_updates` makes the GEMM accumulate into W
directly, ``W = W + alpha * (x.T @ d)`` with ``alpha = -lr`` (BLAS's alpha and beta = 1,
or the tiled kernel's update mode): the gradient is never stored and the map kernel is
gone. The folded kernel stays on the GEMM step (`Gemm.update`) for reports and profiles.
"""

from __future__ import annotations

from dataclasses import replace

from ...ir.graph import Tensor
from ...passes.sizing import same
from .steps import Gemm, Kernel, KernelMode, Step, row_major_strides

__all__ = ["fold_updates", "update_scale"]


def update_scale(kernel: Kernel, product: Tensor) -> float | None:
    """alpha when `kernel` is ``assign(p, subtract(p, multiply(c, product)))`` (or without the
    multiply: alpha = -1), writing the variable in place, else None."""
    members = kernel.members
    if kernel.mode is not KernelMode.MAP or kernel.more or kernel.scratch is not None or len(members) not in (2, 3):
        return None
    assign, sub = members[-1], members[-2]
    if assign.op != "assign" or kernel.root is not assign or sub.op != "subtract" or assign.inputs[1] is not sub:
        return None
    var = assign.inputs[0]
    if sub.inputs[0] is not var or not same(var.shape, product.shape) or var.dtype != product.dtype:
        return None
    scaled = sub.inputs[1]
    if len(members) == 2:
        return -1.0 if scaled is product else None
    if members[0] is not scaled or scaled.op != "multiply" or product not in scaled.inputs:
        return None
    (other,) = [i for i in scaled.inputs if i is not product] or [product]
    imm = kernel.immediates.get(other)
    if imm is None or other.ndim != 0:
        return None
    return -float(imm.value)


def fold_updates(steps: list[Step]) -> list[Step]:
    """The steps with each foldable (GEMM, update kernel) pair made one GEMM step.

    Folded when the GEMM (2-D, no epilogue) writes its product to an arena buffer that only
    the update kernel reads, the kernel writes the variable densely in place, the GEMM's
    operands are not the variable, and no step between the two reads or writes the
    variable (the variable now changes at the GEMM instead of at the kernel).
    """
    out = list(steps)
    i = 0
    while i < len(out):
        g = out[i]
        j = _update_of(out, i) if isinstance(g, Gemm) else None
        if j is not None:
            k = out[j]
            alpha = update_scale(k, g.node)
            out[i] = replace(g, out=k.out, alpha=alpha, update=k)
            del out[j]
        i += 1
    return out


def _update_of(steps: list[Step], i: int) -> int | None:
    """The index of the update kernel that GEMM step i can absorb, if any."""
    g = steps[i]
    product = g.out.buffer
    if g.epilogue is not None or g.update is not None or g.node.ndim != 2 or product.kind != "arena":
        return None
    readers = [j for j, s in enumerate(steps) if j != i and product in s.buffers()]
    if len(readers) != 1:
        return None
    (j,) = readers
    k = steps[j]
    if j < i or not isinstance(k, Kernel) or update_scale(k, g.node) is None:
        return None
    dense = row_major_strides(g.node.shape)
    var = k.out.buffer
    if k.out.offset or k.out.strides != dense or var.kind != "variable" or k.reads.get(g.node) != g.out:
        return None
    if g.out.offset or g.out.strides != dense or var in (g.a.buffer, g.b.buffer):
        return None
    if any(var in s.buffers() for s in steps[i + 1:j]):
        return None
    return j
