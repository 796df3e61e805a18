"""Row kernels (backend/llvm/rows.py): a row reduction and the maps around it in one kernel;
column reductions with the maps before and after them (alone and as GEMM epilogues).

Every form is checked against the reference backend at odd sizes (one column, one row,
lengths around the vector width, rows longer than a 1024-element block), on transposed
operands, with NaN and Inf in some rows, and with the feeds against guard pages.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_llvm_memory import Guarded

import graphc as gc


def _layer_norm(x, axis=-1):
    mean = gc.mean(x, axis=axis, keepdims=True)
    centered = x - mean
    var = gc.mean(centered * centered, axis=axis, keepdims=True)
    return centered / gc.sqrt(var + 1e-5)


def _cases(x, labels):
    """name -> fetch, each over float32 x (rows, cols) and int32 labels (rows,)."""
    ln = _layer_norm(x)
    ce = gc.nn.softmax_cross_entropy(x, labels)
    return {
        "softmax": gc.nn.softmax(x),
        "log_softmax": gc.nn.log_softmax(x),
        "softmax_T": gc.nn.softmax(gc.transpose(x) * 2.0),
        "softmax_cols": gc.nn.softmax(x, axis=0),
        "logsumexp": gc.logsumexp(x, axis=1),
        "ce": ce,
        "ce_grad": gc.gradients(ce, [x])[0],
        "layer_norm": ln,
        "layer_norm_grad": gc.gradients(gc.sum(ln * gc.tanh(x)), [x])[0],
        "argmax_and_max": gc.cast(gc.argmax(x, axis=1), gc.float32) + gc.max(x, axis=1),
        "centered_sum": gc.sum(x - gc.mean(x, axis=1, keepdims=True), axis=1) + gc.sum(x, axis=1),
        **_column_cases(x),
    }


def _column_cases(x):
    """Column reductions with the maps after them, alone and as GEMM epilogues (bias gradients)."""
    w = gc.constant(np.linspace(-1, 1, x.shape[1] * 5, dtype=np.float32).reshape(x.shape[1], 5))
    h = gc.relu(x @ w)
    xtx = gc.transpose(x) @ x
    return {
        "colsum_map": gc.sum(gc.tanh(x), axis=0) * 2.0 + 1.0,
        "colmax_map": gc.exp(gc.max(x, axis=0, keepdims=True) * 0.1),
        "gemm_relu": h,
        "gemm_colsum_map": gc.sum(h, axis=0) * 0.5 - 1.0,
        "gemm_T_colsum": gc.sum(gc.where(xtx > 0, xtx, 0.0), axis=0) * 0.25,
    }


def _run(xv: np.ndarray, yv: np.ndarray, place=lambda a: a):
    """(llvm, reference) results of every case; `place` puts each feed where the LLVM run reads it."""
    x = gc.placeholder(gc.float32, (None, xv.shape[1]), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    fetches = _cases(x, labels)
    want = gc.Session(backend="reference").run(fetches, {x: xv, labels: yv})
    with gc.Session(backend="llvm") as sess:
        got = sess.run(fetches, {x: place(xv), labels: place(yv)})
    return got, want


def _check(got, want) -> None:
    for name in want:
        assert got[name].shape == want[name].shape and got[name].dtype == want[name].dtype, name
        np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 9), (33, 17), (5, 1003), (2, 2050), (257, 10)])
def test_row_kernels_match_the_reference(shape):
    rng = np.random.default_rng(sum(shape))
    xv = (rng.standard_normal(shape) * 3).astype(np.float32)
    yv = rng.integers(0, shape[1], shape[0]).astype(np.int32)
    _check(*_run(xv, yv))


def test_row_kernels_with_nan_and_inf_rows():
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((6, 11)).astype(np.float32)
    xv[1, 3] = np.nan
    xv[2, 0] = np.inf
    xv[3, 10] = -np.inf
    xv[4, :] = -np.inf
    yv = np.array([0, 3, 0, 10, 2, 7], np.int32)
    got, want = _run(xv, yv)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-6, equal_nan=True, err_msg=name)


def test_row_kernels_read_only_their_feeds_against_guard_pages():
    rng = np.random.default_rng(2)
    xv = rng.standard_normal((9, 13)).astype(np.float32)
    yv = rng.integers(0, 13, 9).astype(np.int32)
    guard = Guarded()
    for at_end in (True, False):
        _check(*_run(xv, yv, lambda a, at_end=at_end: guard.array(a, at_end)))


def _steps(fetches, feed) -> list[str]:
    with gc.Session() as sess:
        listing = sess.compile(fetches, feed).as_text("kernels")
    return [line for line in listing.splitlines() if line.startswith("  ") and " = " in line
            and not line.startswith("    ")]


def test_softmax_log_softmax_and_layer_norm_are_one_kernel_each():
    x = gc.placeholder(gc.float32, (32, 10), name="x")
    feed = {x: np.ones((32, 10), np.float32)}
    for y in (gc.nn.softmax(x), gc.nn.log_softmax(x), _layer_norm(x)):
        steps = _steps([y], feed)
        assert len(steps) == 1 and "reduce-inner" in steps[0], steps


def test_cross_entropy_forward_and_backward_over_the_logits_share_one_kernel():
    logits = gc.placeholder(gc.float32, (32, 10), name="logits")
    labels = gc.placeholder(gc.int32, (32,), name="labels")
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    (g,) = gc.gradients(loss, [logits])
    steps = _steps([loss, g], {logits: np.ones((32, 10), np.float32), labels: np.zeros(32, np.int32)})
    # the row kernel (forward and gradient per row), the mean over the batch, and the constant 1/32
    assert len(steps) <= 3, steps


def test_rows_of_a_middle_axis_and_three_dims():
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float32, (4, 5, 6), name="x")
    xv = rng.standard_normal((4, 5, 6)).astype(np.float32)
    fetches = [gc.nn.softmax(x), _layer_norm(x, axis=(0, 2)), gc.nn.softmax(x, axis=1)]
    want = gc.Session(backend="reference").run(fetches, {x: xv})
    got = gc.Session().run(fetches, {x: xv})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)
    assert len(_steps(fetches[:2], {x: xv})) == 2


def test_bias_gradient_and_update_fuse_into_the_gemm_epilogue():
    x = gc.placeholder(gc.float32, (33, 7), name="x")
    w = gc.Variable(np.linspace(-1, 1, 35, dtype=np.float32).reshape(7, 5), name="w")
    b = gc.Variable(np.zeros(5, np.float32), name="b")
    loss = gc.sum(gc.tanh(gc.relu(x @ w + b)))
    gw, gb = gc.gradients(loss, [w, b])
    train = gc.group(gc.assign_sub(w, 0.1 * gw), gc.assign_sub(b, 0.1 * gb))
    xv = np.random.default_rng(4).standard_normal((33, 7)).astype(np.float32)
    results = []
    for backend in ("reference", "llvm"):
        with gc.Session(backend=backend) as sess:
            losses = [float(sess.run([loss, train], {x: xv})[0]) for _ in range(3)]
            results.append([losses, sess.variable_value(w), sess.variable_value(b)])
            if backend == "llvm":
                listing = sess.compile([loss, train], {x: xv}).as_text("kernels")
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the bias gradient's column sum and the bias update share one kernel, which writes b in place
    assert "copy assign" not in listing and "reduce-outer" in listing, listing
