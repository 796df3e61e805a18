"""Issue 12 item 5: a long fused elementwise chain compiles (emission does not recurse per op)."""

import sys

import numpy as np

import graphc as gc


def _depth() -> int:
    frame, n = sys._getframe(), 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n


def test_long_fused_chain_compiles_without_recursion():
    x = gc.placeholder(gc.float64, (None,))
    y = x
    for i in range(600):  # one fused kernel; emission used to recurse once per op (RecursionError near 500)
        y = gc.tanh(y) if i % 3 == 0 else (y * 1.0001 if i % 3 == 1 else y + 0.001)
    (g,) = gc.gradients(y.sum(), [x])
    feeds = {x: np.linspace(-1, 1, 5)}
    want = gc.Session(backend="reference").run([y, g], feeds)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_depth() + 150)  # far below the chain's length: nothing may recurse per op
    try:
        got = gc.Session().run([y, g], feeds)
    finally:
        sys.setrecursionlimit(limit)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


def test_long_chain_is_split_into_bounded_kernels():
    """LLVM's time grows faster than linearly in a function's size: a kernel holds at most
    MAX_INLINED ops, so a 10,000-op chain compiles in seconds, not hours."""
    from graphc.backend.llvm.grouping import MAX_INLINED

    x = gc.placeholder(gc.float64, (5,))
    y = x
    for i in range(3 * MAX_INLINED):
        y = gc.tanh(y) if i % 2 else y * 1.0001
    feeds = {x: np.linspace(-1, 1, 5)}
    program = gc.Session().compile([y], feeds)
    kernels = program.report().split("kernels: ")[1].split()[0]
    assert int(kernels) >= 3
    want = gc.Session(backend="reference").run(y, feeds)
    np.testing.assert_allclose(gc.Session().run(y, feeds), want, rtol=1e-12)
