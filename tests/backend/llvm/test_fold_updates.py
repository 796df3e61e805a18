"""SGD updates folded into the product that computes the gradient (`updates.fold_updates`):
the folded step against the reference backend, on the BLAS and on the tiled kernel, and the
cases that must not fold."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.steps import Gemm, Kernel

LR = 0.05


def _mlp(rng, batch: int | None = 13):
    x = gc.placeholder(gc.float32, (batch, 40), name="x")
    w1 = gc.Variable((rng.standard_normal((40, 48)) * 0.3).astype(np.float32), name="w1")
    w2 = gc.Variable((rng.standard_normal((48, 33)) * 0.3).astype(np.float32), name="w2")
    loss = gc.sum(gc.tanh(gc.relu(x @ w1) @ w2) ** 2)
    return x, [w1, w2], loss


def _train(backend: str, threads: int, fetch_grads: bool = False, steps: int = 2, batch: int = 13):
    rng = np.random.default_rng(0)
    with gc.Graph().as_default():
        x, ws, loss = _mlp(rng)
        grads = gc.gradients(loss, ws)
        update = gc.group(*[gc.assign_sub(w, LR * g) for w, g in zip(ws, grads)])
        fetches = [loss, update] + (grads if fetch_grads else [])
        with gc.Session(backend=backend, threads=threads) as sess:
            xv = rng.standard_normal((batch, 40)).astype(np.float32)
            for _ in range(steps):
                got = sess.run(fetches, {x: xv})
            values = [sess.variable_value(w) for w in ws]
            progs = [e.program for plan in sess._requests.values() for e in plan.programs.values()] \
                if backend == "llvm" else []
    return got, values, progs


def _folded(prog) -> list[Gemm]:
    return [s for s in prog.plan.steps if isinstance(s, Gemm) and s.update is not None]


@pytest.mark.parametrize("mode", ["blas", "tiled"])
@pytest.mark.parametrize("threads", [1, 2])
def test_folded_updates_match_reference(monkeypatch, mode, threads):
    monkeypatch.setenv("GRAPHC_GEMM", mode)
    _, want, _ = _train("reference", 1)
    _, got, (prog,) = _train("llvm", threads)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    folded = _folded(prog)
    # at least w1's update (x.T @ d: no input gradient reads w1 afterwards)
    assert folded and all(s.alpha == pytest.approx(-LR) for s in folded)
    updates = [m for s in folded for m in s.update.members if m.op == "assign"]
    assert not any(isinstance(s, Kernel) and s.root in updates for s in prog.plan.steps)
    assert "accumulated" in prog.as_text("kernels")


def test_fetched_gradients_are_not_folded():
    _, want, _ = _train("reference", 1, fetch_grads=True)
    got, values, (prog,) = _train("llvm", 2, fetch_grads=True)
    for g, w in zip(values, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert not _folded(prog)


def test_empty_batch_leaves_the_variables(monkeypatch):
    """k = 0: the accumulated product adds nothing (it must not zero the variable)."""
    monkeypatch.setenv("GRAPHC_GEMM", "tiled")
    rng = np.random.default_rng(1)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (None, 40), name="x")
        w = gc.Variable((rng.standard_normal((40, 48)) * 0.3).astype(np.float32), name="w")
        d = gc.placeholder(gc.float32, (None, 48), name="d")
        step = gc.assign_sub(w, LR * (gc.transpose(x) @ d))
        with gc.Session(threads=2) as sess:
            before = sess.variable_value(w).copy()
            sess.run(step, {x: np.zeros((0, 40), np.float32), d: np.zeros((0, 48), np.float32)})
            np.testing.assert_array_equal(sess.variable_value(w), before)
            xv, dv = rng.standard_normal((3, 40)).astype(np.float32), rng.standard_normal((3, 48)).astype(np.float32)
            sess.run(step, {x: xv, d: dv})
            np.testing.assert_allclose(sess.variable_value(w), before - LR * (xv.T @ dv), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [None, 13])
def test_every_layer_folds_when_the_input_gradient_reads_the_old_weights(batch):
    """A middle layer's weight gradient moves after the input gradient that reads the old
    weights (`grouping._sink_update_product`), so its update folds too: all three layers fold,
    and the weights match the reference backend (the input gradient saw the old weights)."""
    rng = np.random.default_rng(2)
    results = {}
    for backend in ("reference", "llvm"):
        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, (batch, 24), name="x")
            ws = [gc.Variable((rng.standard_normal(s) * 0.3).astype(np.float32), name=f"w{i}")
                  for i, s in enumerate([(24, 40), (40, 36), (36, 17)])]
            h = x
            for w in ws:
                h = gc.relu(h @ w)
            loss = gc.sum(h ** 2)
            update = gc.group(*[gc.assign_sub(w, LR * g) for w, g in zip(ws, gc.gradients(loss, ws))])
            with gc.Session(backend=backend, threads=2, options=gc.CompileOptions(specialize=False)) as sess:
                xv = np.random.default_rng(3).standard_normal((13, 24)).astype(np.float32)
                for _ in range(2):
                    sess.run([loss, update], {x: xv})
                results[backend] = [sess.variable_value(w) for w in ws]
                if backend == "llvm":
                    (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
        rng = np.random.default_rng(2)
    for g, w in zip(results["llvm"], results["reference"]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert len(_folded(prog)) == 3
    if batch is None:  # the symbolic program's arena holds no folded gradient (its size: all but per-row bytes)
        assert prog.arena_formula.size.const < 36 * 17 * 4, prog.arena_formula.size
