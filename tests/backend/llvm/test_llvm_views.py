"""Reshapes that merge dims (not affine in the result's index) are free views of dense buffers."""

from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.backend.llvm.steps import Kernel


def _run(fetches, feeds):
    with gc.Session(backend="llvm") as sess:
        got = sess.run(fetches, feeds)
        (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    want = gc.Session(backend="reference").run(fetches, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=1e-15)
    return [s for s in prog.plan.steps if isinstance(s, Kernel)]


def test_merging_reshapes_of_dense_buffers_need_no_kernel():
    x = gc.placeholder(gc.float64, (2, 3, 4), name="x")
    w = gc.placeholder(gc.float64, (4, 5), name="w")
    t = gc.tanh(x)  # a computed (dense) buffer
    y = gc.reshape(gc.reshape(t, (6, 4)), (24,))  # merges twice
    z = gc.reshape(x, (6, 4)) @ w  # a feed, merged, as a GEMM operand
    rng = np.random.default_rng(0)
    kernels = _run([y, z], {x: rng.standard_normal((2, 3, 4)), w: rng.standard_normal((4, 5))})
    assert not [k for k in kernels if any(n.op == "reshape" for n in k.members)]


def test_merging_reshape_of_a_strided_view_is_computed():
    x = gc.placeholder(gc.float64, (4, 3, 2), name="x")
    y = gc.reshape(gc.transpose(x, (2, 1, 0)), (6, 4)) * 2.0  # the transpose is a view with permuted strides
    kernels = _run([y], {x: np.arange(24.0).reshape(4, 3, 2)})
    assert any(n.op == "reshape" for k in kernels for n in k.members)
