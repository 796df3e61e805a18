"""The `check_numerics` pass: CompileOptions(check_numerics=True) checks every float op's result.

Inside the regions of cond, scan and while_loop nothing is wrapped (a compiled body cannot
call the host): the region op's results are checked where they leave it (`result` nodes).
"""

from __future__ import annotations

from ..ir.graph import Tensor
from ..ir.region import RegionGraph
from ..ops.registry import OpKind
from .manager import register_pass
from .module import Module, rebuild

CHECKED_KINDS = (OpKind.ELEMENTWISE, OpKind.REDUCE, OpKind.INDEX, OpKind.MATMUL, OpKind.LAPACK, OpKind.COLLECTIVE)
MESSAGE = "CompileOptions(check_numerics=True)"


@register_pass("check_numerics", "wrap every float op's result in check_numerics (the option's slow debug mode)")
def check_numerics(module: Module, options: object = None) -> tuple[Module, int]:
    def wrap(node: Tensor) -> Tensor | None:
        if node.dtype is None or node.dtype.kind != "f" or isinstance(node.graph, RegionGraph) \
                or (node.opdef.kind not in CHECKED_KINDS and node.op != "result"):  # (a region op's results)
            return None
        return node.graph.make("check_numerics", (node,), {"message": MESSAGE}, loc=node.loc)

    return rebuild(module, wrap)
