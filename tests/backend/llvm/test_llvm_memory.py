"""Memory safety and odd sizes on the LLVM backend.

Guard pages: feeds are placed so that their first byte follows, or their last byte
precedes, a PROT_NONE page; any read outside the buffer crashes the process instead of
passing silently. Sizes: 0, 1, 7, lengths around the vector width and 1e6 + 3.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np
import pytest

import graphc as gc

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class Guarded:
    """Arrays placed against PROT_NONE pages: [guard][data pages][guard]."""

    def __init__(self):
        self.maps = []

    def array(self, values: np.ndarray, at_end: bool) -> np.ndarray:
        values = np.ascontiguousarray(values)
        nbytes = values.nbytes
        data_pages = max(1, -(-nbytes // PAGE))
        mm = mmap.mmap(-1, (data_pages + 2) * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        for page in (0, data_pages + 1):
            assert _libc.mprotect(base + page * PAGE, PAGE, 0) == 0, ctypes.get_errno()
        self.maps.append(mm)
        start = PAGE + (data_pages * PAGE - nbytes if at_end else 0)
        arr = np.frombuffer(mm, dtype=values.dtype, count=values.size, offset=start).reshape(values.shape)
        arr[...] = values
        return arr


GRAPHS = {
    "elementwise": lambda a, b: gc.tanh(a) * b + 1.0,
    "broadcast": lambda a, b: a[:, None] * b[None, :],
    "sum-rows": lambda a, b: gc.sum(a[:, None] * b[None, :], axis=1),
    "sum-cols": lambda a, b: gc.sum(a[:, None] * b[None, :], axis=0),
    "max-all": lambda a, b: gc.max(a) + gc.max(b),
    "argmin": lambda a, b: gc.argmin(a - b[:1]),
    "reverse-slice": lambda a, b: a[::-1] + b[-1],
    "concat-pad": lambda a, b: gc.pad(gc.concatenate([a, b]), (3, 2)),
    "matmul": lambda a, b: gc.reshape(a, (-1, 1)) @ gc.reshape(b, (1, -1)),
    "outer-T": lambda a, b: gc.transpose(gc.reshape(a, (-1, 1)) * b),
}


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_feeds_against_guard_pages(n):
    rng = np.random.default_rng(n)
    a = gc.placeholder(gc.float32, (None,), name="a")
    b = gc.placeholder(gc.float32, (None,), name="b")
    idx = gc.placeholder(gc.int64, (None,), name="idx")
    fetches = {name: build(a, b) for name, build in GRAPHS.items()}
    fetches["take"] = gc.take(a, idx)  # negative indices count from the end
    guard = Guarded()
    av, bv = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    iv = np.array([0, n - 1, -1, -n], np.int64)
    with gc.Session(backend="reference") as ref:
        want = ref.run(fetches, {a: av, b: bv, idx: iv})
    for at_end in (True, False):
        feeds = {a: guard.array(av, at_end), b: guard.array(bv, at_end), idx: guard.array(iv, at_end)}
        with gc.Session(backend="llvm") as sess:
            got = sess.run(fetches, feeds)
        for name in fetches:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1_000_003])
def test_odd_lengths(n):
    rng = np.random.default_rng(n)
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = gc.placeholder(gc.float64, (None,), name="y")
    fetches = [gc.exp(x) * 0.5 + x, gc.sum(x), gc.sum(y * y), gc.cast(x, gc.float64) + y, x[1::2] * 2.0]
    if n:
        fetches += [gc.max(x), gc.argmax(y), gc.min(y)]
    xv = rng.standard_normal(n).astype(np.float32)
    yv = rng.standard_normal(n)
    want = gc.Session(backend="reference").run(fetches, {x: xv, y: yv})
    got = gc.Session(backend="llvm").run(fetches, {x: xv, y: yv})
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        tol = 1e-5 if w.dtype == np.float32 else 1e-11
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.sqrt(max(n, 1)), err_msg=str(i))


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 1), (7, 9), (1000, 3), (3, 1001)])
def test_odd_matrix_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    x = gc.placeholder(gc.float64, shape, name="x")
    fetches = [gc.sum(x, 0), gc.sum(x, 1, keepdims=True), x.T + 1.0, x @ x.T, gc.prod(x * 0.1 + 1.0, 0)]
    xv = rng.standard_normal(shape)
    want = gc.Session(backend="reference").run(fetches, {x: xv})
    got = gc.Session(backend="llvm").run(fetches, {x: xv})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11)


def test_float32_sum_of_1e7_is_accurate():
    x = gc.placeholder(gc.float32, (None,), name="x")
    rng = np.random.default_rng(0)
    xv = rng.uniform(0.0, 1.0, 10_000_000).astype(np.float32)
    exact = xv.astype(np.float64).sum()
    with gc.Session(backend="llvm") as sess:
        total, mean = sess.run([gc.sum(x), gc.mean(x)], {x: xv})
        assert abs(float(total) - exact) <= 1e-6 * exact
        assert abs(float(mean) - exact / xv.size) <= 1e-6 * exact / xv.size
        cols = sess.run(gc.sum(gc.reshape(x, (-1, 10)), axis=0), {x: xv})
    exact_cols = xv.astype(np.float64).reshape(-1, 10).sum(axis=0)
    np.testing.assert_allclose(cols, exact_cols, rtol=1e-6)


WINDOW_GRAPHS = {  # sliding-window kernels (im2col with padding, col2im with strides) and their gradients
    "conv-same": lambda x, w: gc.nn.conv2d(x, w, strides=(2, 1), padding="SAME", dilations=(1, 2)),
    "conv-explicit": lambda x, w: gc.nn.conv2d(x, w, padding=[(2, 3), (1, 1)]),
    "conv-transpose": lambda x, w: gc.nn.conv2d_transpose(x, gc.transpose(w, (0, 1, 3, 2)), strides=(3, 2),
                                                          padding="SAME"),
    "conv-depthwise": lambda x, w: gc.nn.conv2d(x, w[:, :, :1, :3], strides=(1, 2), padding="SAME", groups=3),
    "conv-grads": lambda x, w: gc.concatenate([gc.reshape(g, (-1,)) for g in gc.gradients(
        gc.sum(gc.nn.conv2d(x, w, strides=2, padding="SAME") ** 2), [x, w])]),
}


@pytest.mark.parametrize("spatial", [(1, 1), (5, 7)])
def test_window_kernels_against_guard_pages(spatial):
    rng = np.random.default_rng(sum(spatial))
    x = gc.placeholder(gc.float32, (None, *spatial, 3), name="x")
    w = gc.placeholder(gc.float32, (2, 3, 3, 5), name="w")
    fetches = {name: build(x, w) for name, build in WINDOW_GRAPHS.items()}
    xv = rng.standard_normal((2, *spatial, 3)).astype(np.float32)
    wv = rng.standard_normal((2, 3, 3, 5)).astype(np.float32)
    want = gc.Session(backend="reference").run(fetches, {x: xv, w: wv})
    guard = Guarded()
    for at_end in (True, False):
        with gc.Session(backend="llvm") as sess:
            got = sess.run(fetches, {x: guard.array(xv, at_end), w: guard.array(wv, at_end)})
        for name in fetches:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)
