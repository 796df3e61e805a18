"""An entry of `UNOPTIMIZED_ENTRY_STEPS` steps or more is compiled unoptimized (optnone) and computes
what the reference backend does; smaller entries are optimized."""

import re

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


def test_the_function_of_one_product_is_unoptimized_and_a_batched_ones_is_not():
    """A GEMM step's function without batch dims is call setup (optnone); with batch dims it loops
    (optimized); both compute what the reference backend does."""
    rng = np.random.default_rng(1)
    for shape_a, shape_b, optnone in (((5, 40), (40, 33), True), ((3, 5, 40), (3, 40, 33), False)):
        a_val, b_val = rng.standard_normal(shape_a).astype(np.float32), rng.standard_normal(shape_b).astype(np.float32)
        with gc.Graph().as_default():
            a, b = gc.placeholder(gc.float32, shape_a, name="a"), gc.placeholder(gc.float32, shape_b, name="b")
            y = a @ b
            with gc.Session() as sess, gc.Session(backend="reference") as ref:
                np.testing.assert_allclose(sess.run(y, {a: a_val, b: b_val}), ref.run(y, {a: a_val, b: b_val}),
                                           rtol=1e-4, atol=1e-4)
                prog = _program(sess)
        (gemm,) = [line for line in prog.ir_text.splitlines() if line.startswith('define internal void @"g')]
        assert ("optnone" in gemm) == optnone


def test_a_long_entry_calls_one_shared_function_per_pair_and_pool_call_and_is_right():
    """In an entry of `UNOPTIMIZED_ENTRY_STEPS` steps or more, the products run as pairs and the
    epilogues over the pool are calls of shared functions (`codegen._Calls.apart`), with the pool and
    without one (threads=1: their serial branches)."""
    rng = np.random.default_rng(2)
    layers, width, batch = 43, 128, 256
    ws = [(rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for _ in range(layers)]
    feed = rng.standard_normal((batch, width)).astype(np.float32)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (batch, width), name="x")
        vs = [gc.Variable(w) for w in ws]
        h = x
        for v in vs:
            h = gc.tanh(h @ v)
        loss = gc.sum(h)
        fetches = [loss, gc.gradients(loss, vs)]
        with gc.Session(backend="reference") as ref:
            want_loss, want_grads = ref.run(fetches, {x: feed})
        for threads in (2, 1):
            with gc.Session(options=gc.CompileOptions(threads=threads)) as sess:
                got_loss, got_grads = sess.run(fetches, {x: feed})
                prog = _program(sess)
            np.testing.assert_allclose(got_loss, want_loss, rtol=1e-4)
            for got, want in zip(got_grads, want_grads):
                np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
            assert len(prog.plan.steps) >= UNOPTIMIZED_ENTRY_STEPS and len(prog.plan.pairs) == layers - 1
            text = prog.ir_text
            entry = text[text.index('define void @"graphc_entry"'):]
            entry = entry[:entry.index("\n}\n")]
            defined = re.findall(r'^define internal void @"(\w+)"', text, re.M)
            pair_calls = [entry.count(f'call void @"{name}"') for name in defined if name.startswith("run_pair_")]
            assert sum(pair_calls) == layers - 1 and max(pair_calls) > 1  # one call per pair, functions shared
            assert any(re.fullmatch(r"k\d+_pool\d+", name) and f'call void @"{name}"' in entry for name in defined)
            assert "inttoptr" not in entry and ".if:" not in entry  # no pool call (a cast, a branch) left inline
