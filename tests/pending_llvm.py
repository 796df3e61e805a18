"""Tests of the control-flow ops on the LLVM backend, pending its lowering of regions (#13).

The LLVM backend refuses cond, scan and while_loop with a clear GraphcError for now.
`pending_on_llvm` marks such a test as a strict xfail that expects that error: once the
backend lowers them the test passes, the strict xfail fails, and the mark must go
(set LOWERS_REGIONS = True).
"""

from __future__ import annotations

import pytest

from graphc.errors import GraphcError

LOWERS_REGIONS = True
REGION_OPS = frozenset({"cond", "scan", "while_loop", "param", "result"})


def pending_on_llvm(request: pytest.FixtureRequest, op: str) -> None:
    """Mark the running test of `op` on the LLVM backend as expected to fail with the clear error."""
    if op in REGION_OPS and not LOWERS_REGIONS:
        request.node.add_marker(pytest.mark.xfail(raises=GraphcError, strict=True,
                                                  reason="the LLVM backend does not lower region ops yet"))


def pending_llvm_ops() -> frozenset[str]:
    """The ops whose LLVM tests are pending (the random-graph fuzzer leaves them out until then)."""
    return frozenset() if LOWERS_REGIONS else REGION_OPS
