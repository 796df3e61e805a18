"""An entry of `UNOPTIMIZED_ENTRY_STEPS` steps or more is compiled unoptimized (optnone) and computes
what the reference backend does; smaller entries are optimized."""

import numpy as np

import graphc as gc
from graphc.backend.llvm.codegen import UNOPTIMIZED_ENTRY_STEPS


def _chain(layers: int):
    rng = np.random.default_rng(layers)
    x = gc.placeholder(gc.float32, (3, 4), name="x")
    h = x
    for i in range(layers):
        h = gc.tanh(h @ gc.constant((rng.standard_normal((4, 4)) * 0.5).astype(np.float32)) + float(i % 3))
    return x, gc.sum(h)


def _program(sess):
    (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    return prog


def test_a_long_entry_is_unoptimized_and_right():
    feed = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for layers, optnone in ((3, False), (UNOPTIMIZED_ENTRY_STEPS, True)):
        with gc.Graph().as_default():
            x, y = _chain(layers)
            with gc.Session() as sess, gc.Session(backend="reference") as ref:
                np.testing.assert_allclose(sess.run(y, {x: feed}), ref.run(y, {x: feed}), rtol=1e-4, atol=1e-4)
                prog = _program(sess)
        assert (len(prog.plan.steps) >= UNOPTIMIZED_ENTRY_STEPS) == optnone
        entry = next(line for line in prog.ir_text.splitlines() if line.startswith('define void @"graphc_entry"'))
        assert ("optnone" in entry) == optnone
