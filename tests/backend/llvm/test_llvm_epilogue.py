"""GEMM epilogues: elementwise consumers of a matrix product run in place over it."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import grouping
from graphc.backend.llvm.program import LLVMProgram
from graphc.backend.llvm.steps import Gemm


def _program(fetches, feeds) -> tuple[list, LLVMProgram]:
    with gc.Session(backend="llvm") as sess:
        got = sess.run(fetches, feeds)
        (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    return got, prog


def _unfused(monkeypatch, fetches, feeds) -> tuple[list, LLVMProgram]:
    with monkeypatch.context() as m:
        m.setattr(grouping, "_attach_epilogues", lambda nodes, group: None)
        m.setenv("GRAPHC_CACHE", "0")  # the disk cache would give the fused program (same key)
        return _program(fetches, feeds)


def _epilogues(prog: LLVMProgram) -> list[Gemm]:
    return [s for s in prog.plan.steps if isinstance(s, Gemm) and s.epilogue is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_relu_is_one_step_without_a_product_buffer(dtype, monkeypatch):
    rng = np.random.default_rng(0)
    x = gc.placeholder(dtype, (33, 70), name="x")
    w = gc.Variable(rng.standard_normal((70, 19)).astype(dtype) * 0.2)
    b = gc.Variable(rng.standard_normal(19).astype(dtype))
    y = gc.relu(x @ w + b)
    feeds = {x: rng.standard_normal((33, 70)).astype(dtype)}
    got, prog = _program(y, feeds)
    tol = 1e-5 if dtype == np.float32 else 1e-12  # graphc's own kernel sums in another order than numpy
    np.testing.assert_allclose(got, gc.Session(backend="reference").run(y, feeds), rtol=tol, atol=tol)
    assert len(prog.plan.steps) == 1 and len(_epilogues(prog)) == 1
    assert prog.plan.arena_bytes == 0  # the product is computed in the output array
    text = prog.as_text("kernels")
    assert "epilogue" in text and "relu = relu(add)" in text
    before, unfused = _unfused(monkeypatch, y, feeds)
    np.testing.assert_array_equal(got, before)
    assert len(unfused.plan.steps) == 2 and unfused.plan.arena_bytes > 0


def test_relu_gradient_of_a_product_fuses_into_the_backward_gemm(monkeypatch):
    rng = np.random.default_rng(1)
    x = gc.placeholder(gc.float32, (32, 40), name="x")
    w1 = gc.Variable(rng.standard_normal((40, 24)).astype(np.float32) * 0.3)
    b1 = gc.Variable(rng.standard_normal(24).astype(np.float32) * 0.1)
    w2 = gc.Variable(rng.standard_normal((24, 5)).astype(np.float32) * 0.3)
    h = gc.relu(x @ w1 + b1)
    loss = gc.sum(gc.tanh(h @ w2))
    fetches = [loss, gc.gradients(loss, [w1, b1, w2])]
    feeds = {x: rng.standard_normal((32, 40)).astype(np.float32)}
    got, prog = _program(fetches, feeds)
    want = gc.Session(backend="reference").run(fetches, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, r in zip(got[1], want[1]):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
    fused = _epilogues(prog)
    ops = [{m.op for m in g.epilogue.members} for g in fused]
    assert any({"relu", "add"} <= o for o in ops)  # forward: bias and activation (+ the relu mask, maybe)
    assert any("where" in o or "greater" in o for o in ops)  # backward: the relu gradient of g @ w2.T
    unfused_got, unfused = _unfused(monkeypatch, fetches, feeds)
    assert len(prog.plan.steps) <= len(unfused.plan.steps) - 2
    assert prog.plan.arena_bytes < unfused.plan.arena_bytes
    np.testing.assert_array_equal(got[0], unfused_got[0])
    for g, u in zip(got[1], unfused_got[1]):
        np.testing.assert_array_equal(g, u)


def test_products_read_elsewhere_are_not_fused():
    rng = np.random.default_rng(2)
    x = gc.placeholder(gc.float64, (6, 5), name="x")
    w = gc.Variable(rng.standard_normal((5, 4)))
    v = gc.Variable(rng.standard_normal((5, 5)))
    p = x @ w
    q = x[:5] @ v
    fetches = [gc.tanh(p), p,  # the product is fetched itself
               gc.exp(q) + gc.transpose(q),  # a view of the product is read
               gc.cast(x @ v[:, :3], gc.float32) * 2.0]  # no result in the product's dtype
    feeds = {x: rng.standard_normal((6, 5))}
    got, prog = _program(fetches, feeds)
    want = gc.Session(backend="reference").run(fetches, feeds)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-6)
    assert not _epilogues(prog)


def test_one_gemm_per_epilogue_and_batched_products():
    rng = np.random.default_rng(3)
    a = gc.placeholder(gc.float32, (3, 8, 9), name="a")
    b = gc.placeholder(gc.float32, (9, 7), name="b")
    c = gc.placeholder(gc.float32, (3, 8, 7), name="c")
    y = gc.sigmoid(a @ b + (c * c) @ gc.ones((7, 7), gc.float32)) - 0.5
    feeds = {a: rng.standard_normal((3, 8, 9)).astype(np.float32), b: rng.standard_normal((9, 7)).astype(np.float32),
             c: rng.standard_normal((3, 8, 7)).astype(np.float32)}
    got, prog = _program(y, feeds)
    np.testing.assert_allclose(got, gc.Session(backend="reference").run(y, feeds), rtol=1e-5, atol=1e-6)
    gemms = [s for s in prog.plan.steps if isinstance(s, Gemm)]
    assert len(gemms) == 2 and len(_epilogues(prog)) == 1


def test_mlp_training_steps_match_the_reference():
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((64, 20)).astype(np.float32)
    labels = rng.integers(0, 3, 64)
    losses = {}
    for backend in ("reference", "llvm"):
        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (None, 20), name="x")
            y = gc.placeholder(gc.int64, (None,), name="y")
            h = gc.nn.dense(x, 32, activation=gc.relu, seed=1)
            h = gc.nn.dense(h, 32, activation=gc.tanh, seed=2)
            loss = gc.nn.softmax_cross_entropy(gc.nn.dense(h, 3, seed=3), y)
            step = gc.train.SGD(0.1).minimize(loss)
            with gc.Session(backend=backend) as sess:
                losses[backend] = [sess.run([loss, step], {x: xs, y: labels})[0] for _ in range(5)]
                if backend == "llvm":
                    (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
                    assert len(_epilogues(prog)) >= 2
    np.testing.assert_allclose(losses["llvm"], losses["reference"], rtol=1e-4)
    assert losses["llvm"][-1] < losses["llvm"][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_bias_relu_is_the_epilogue_of_its_gemm_through_the_reshape(dtype, monkeypatch):
    """conv2d's product (N*OH*OW, O) is reshaped to (N, OH, OW, O) before the bias: still one step."""
    rng = np.random.default_rng(5)
    x = gc.placeholder(dtype, (3, 6, 5, 4), name="x")
    w = gc.Variable(rng.standard_normal((3, 3, 4, 7)).astype(dtype) * 0.3)
    b = gc.Variable(rng.standard_normal(7).astype(dtype))
    y = gc.relu(gc.nn.conv2d(x, w, padding="SAME") + b)
    feeds = {x: rng.standard_normal((3, 6, 5, 4)).astype(dtype)}
    got, prog = _program(y, feeds)
    np.testing.assert_allclose(got, gc.Session(backend="reference").run(y, feeds), rtol=1e-5, atol=1e-6)
    (fused,) = _epilogues(prog)
    assert {m.op for m in fused.epilogue.members} == {"reshape", "add", "relu"}
    before, unfused = _unfused(monkeypatch, y, feeds)
    np.testing.assert_array_equal(got, before)
    assert len(prog.plan.steps) < len(unfused.plan.steps)


@pytest.mark.parametrize("threads", [1, 2])
def test_epilogue_of_a_split_product_runs_over_the_pool(threads):
    """A product split over the pool hands its (map) epilogue to the pool as well, in pieces of
    `parallel.WARM_PARALLEL_NS` (the workers are awake): same values as the reference."""
    rng = np.random.default_rng(4)
    x = gc.placeholder(gc.float32, (256, 16), name="x")
    w = gc.Variable(rng.standard_normal((16, 512)).astype(np.float32) * 0.3)
    b = gc.Variable(rng.standard_normal(512).astype(np.float32))
    y = gc.relu(x @ w + b) * 0.5
    feeds = {x: rng.standard_normal((256, 16)).astype(np.float32)}
    with gc.Session(backend="llvm", threads=threads) as sess:
        got = sess.run(y, feeds)
        (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    np.testing.assert_allclose(got, gc.Session(backend="reference").run(y, feeds), rtol=1e-5, atol=1e-5)
    (g,) = _epilogues(prog)
    assert f"{g.epilogue.name}_chunk" in prog.ir_text  # called through parallel_for
