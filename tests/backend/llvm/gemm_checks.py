"""Checks shared by the GEMM tests (test_gemm_dispatch.py, test_tiled_gemm.py)."""

from __future__ import annotations

import numpy as np
from test_llvm_memory import Guarded

import graphc as gc


def close(got, want, dtype) -> None:
    """Each of `got` equals the same one of `want` to the dtype's tolerance."""
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def symbolic_sgd_steps_agree(threads: int, width: int, batches, fetches_of, seed: int) -> str:
    """x: (None, 300) and d: (None, width) fed at each batch of `batches` (against guard pages,
    at both ends of their pages, below 100 rows); the fetches `fetches_of(x, d)` agree with the
    reference and an SGD step `w -= 0.01 x.T @ d` (folded into its product) updates w as numpy
    does; one symbolic program each, from the first batch on (`specialize=False`). The train
    program's LLVM IR at the last batch."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder(gc.float32, (None, 300), name="x")
    d = gc.placeholder(gc.float32, (None, width), name="d")
    w = gc.Variable(rng.standard_normal((300, width)).astype(np.float32), name="w")
    fetches = fetches_of(x, d, w)
    train = gc.assign_sub(w, 0.01 * (x.T @ d))
    guard = Guarded()
    with gc.Session(threads=threads, options=gc.CompileOptions(specialize=False)) as sess, \
            gc.Session(backend="reference") as ref:
        for n in batches:
            values = {x: rng.standard_normal((n, 300)).astype(np.float32),
                      d: rng.standard_normal((n, width)).astype(np.float32)}
            for at_end in ((True, False) if n < 100 else (None,)):
                feeds = values if at_end is None else {t: guard.array(v, at_end) for t, v in values.items()}
                close(sess.run(fetches, feeds), ref.run(fetches, values), np.float32)
                before = sess.variable_value(w)
                sess.run(train, feeds)
                ref.run(train, values)
                np.testing.assert_allclose(sess.variable_value(w), before - 0.01 * (values[x].T @ values[d]),
                                           rtol=1e-4, atol=1e-4)
        assert sess.stats() == {"compiles": 2, "symbolic": 2, "specialized": 0, "first_sizes": 0, "not_symbolic": []}
        return sess.compile(train, feeds).ir_text


def train_step_agrees(sess, ref, sides, feeds, values) -> None:
    """One training step on both backends: `sides` holds (variables, loss, train op) for `sess`
    (fed `feeds`) and for the reference session `ref` (fed `values`); the losses and every
    variable after the step agree."""
    mine, theirs = sess.run(sides[0][1:], feeds)[0], ref.run(sides[1][1:], values)[0]
    np.testing.assert_allclose(mine, theirs, rtol=1e-4)
    for a, b in zip(sides[0][0], sides[1][0]):
        np.testing.assert_allclose(sess.variable_value(a), ref.variable_value(b), rtol=1e-4, atol=1e-5)
