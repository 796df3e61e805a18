"""layer_norm, rms_norm, scaled_dot_product_attention, embedding and batched matmul: numpy references on
both backends, finite-difference gradients in float64, JAX where installed, bad input."""

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads

RNG = np.random.default_rng(3)
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}


def np_layer_norm(x, axis=-1, eps=1e-5):
    m = x.mean(axis, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(axis, keepdims=True) + eps)


def np_rms_norm(x, axis=-1, eps=1e-6):
    return x / np.sqrt((x * x).mean(axis, keepdims=True) + eps)


def np_attention(q, k, v, keep=None, scale=None):
    s = (q @ np.swapaxes(k, -1, -2)) * (scale if scale is not None else 1 / np.sqrt(q.shape[-1]))
    if keep is None:
        keep = np.ones(s.shape, bool)
    keep = np.broadcast_to(keep, s.shape)
    s = np.where(keep, s, -np.inf)
    m = np.max(s, -1, keepdims=True)
    e = np.where(keep, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
    tot = e.sum(-1, keepdims=True)
    return (e / np.where(tot > 0, tot, 1)) @ v


def _run_both(build, arrays):
    g = gc.Graph()
    with g.as_default():
        phs = [gc.placeholder(a.dtype, a.shape) for a in arrays]
        out = build(*phs)
    feed = dict(zip(phs, arrays))
    return [gc.Session(g, backend=b).run(out, feed) for b in ("llvm", "reference")]


def _mask(shape, p=0.7):
    return RNG.random(shape) < p


CASES = {
    "layer_norm": (lambda x: gc.nn.layer_norm(x), lambda x: np_layer_norm(x), [(4, 7)]),
    "layer_norm_axes": (lambda x: gc.nn.layer_norm(x, axis=(1, 2), eps=1e-3),
                        lambda x: np_layer_norm(x, (1, 2), 1e-3), [(2, 3, 5)]),
    "layer_norm_affine": (lambda x, s, b: gc.nn.layer_norm(x, scale=s, offset=b),
                          lambda x, s, b: np_layer_norm(x) * s + b, [(3, 6), (6,), (6,)]),
    "rms_norm": (lambda x, s: gc.nn.rms_norm(x, scale=s), lambda x, s: np_rms_norm(x) * s, [(5, 8), (8,)]),
    "attention": (gc.nn.scaled_dot_product_attention, np_attention, [(2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 3)]),
    "attention_broadcast_batch": (gc.nn.scaled_dot_product_attention, np_attention,
                                  [(2, 1, 5, 4), (1, 3, 6, 4), (3, 6, 2)]),
    "attention_causal": (lambda q, k, v: gc.nn.scaled_dot_product_attention(q, k, v, causal=True),
                         lambda q, k, v: np_attention(q, k, v, np.tril(np.ones((5, 5), bool))),
                         [(2, 5, 4), (2, 5, 4), (2, 5, 3)]),
    "batched_matmul_broadcast": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 6)]),
    "einsum_heads": (lambda a, b: gc.einsum("bhqd,bhkd->bhqk", a, b),
                     lambda a, b: np.einsum("bhqd,bhkd->bhqk", a, b), [(2, 3, 4, 5), (2, 3, 6, 5)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy_on_both_backends(name, dtype):
    build, ref, shapes = CASES[name]
    arrays = [RNG.standard_normal(s).astype(dtype) * 2 + 1 for s in shapes]
    want = ref(*[a.astype(np.float64) for a in arrays])
    for got in _run_both(build, arrays):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    build, _, shapes = CASES[name]
    check_grads(build, [RNG.standard_normal(s) for s in shapes], modes=("fwd", "rev"), backend="llvm")


def test_masked_attention_fully_masked_rows_are_zero_and_finite():
    q, k, v = (RNG.standard_normal(s).astype(np.float32) for s in [(2, 4, 3), (2, 5, 3), (2, 5, 2)])
    keep = _mask((2, 4, 5))
    keep[0, 1] = False  # a fully masked row
    keep[1, 3] = False
    g = gc.Graph()
    with g.as_default():
        phs = [gc.placeholder(gc.float32, a.shape) for a in (q, k, v)]
        m = gc.placeholder(gc.bool_, keep.shape)
        out = gc.nn.scaled_dot_product_attention(*phs, mask=m)
        grads = gc.gradients(gc.sum(out * out), phs)
    feed = {**dict(zip(phs, (q, k, v))), m: keep}
    for backend in ("llvm", "reference"):
        got, *gs = gc.Session(g, backend=backend).run([out, *grads], feed)
        np.testing.assert_allclose(got, np_attention(q, k, v, keep), rtol=2e-5, atol=2e-6)
        assert np.all(got[0, 1] == 0) and np.all(got[1, 3] == 0)
        assert all(np.isfinite(x).all() for x in gs)
    check_grads(lambda q, k, v: gc.nn.scaled_dot_product_attention(q, k, v, mask=gc.constant(keep)),
                [q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)])


def test_attention_stable_for_large_scores():
    q = np.full((1, 2, 4), 300.0, np.float32)
    k = RNG.standard_normal((1, 3, 4)).astype(np.float32) * 100
    v = RNG.standard_normal((1, 3, 2)).astype(np.float32)
    for got in _run_both(gc.nn.scaled_dot_product_attention, [q, k, v]):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, np_attention(q.astype(float), k.astype(float), v.astype(float)),
                                   rtol=1e-4, atol=1e-5)


def test_embedding_accumulates_repeated_ids():
    table = RNG.standard_normal((6, 3))
    ids = np.array([[1, 4, 1], [1, 0, 5]], np.int32)
    g = gc.Graph()
    with g.as_default():
        t = gc.placeholder(gc.float64, (6, 3))
        i = gc.placeholder(gc.int32, (None, 3))
        out = gc.nn.embedding(t, i)
        (gt,) = gc.gradients(gc.sum(out), [t])
    for backend in ("llvm", "reference"):
        got, grad = gc.Session(g, backend=backend).run([out, gt], {t: table, i: ids})
        np.testing.assert_array_equal(got, table[ids])
        np.testing.assert_array_equal(grad[:, 0], np.bincount(ids.ravel(), minlength=6))
    check_grads(lambda t: gc.nn.embedding(t, gc.constant(ids)) ** 2, [table])


def test_bad_input_names_the_function_shapes_and_line():
    x = gc.placeholder(gc.float32, (2, 3), name="x")
    with pytest.raises(gc.DTypeError, match=r"layer_norm: x must be floating point, got int32\(2, 3\)"
                                            r"(.|\n)*test_dl_composites.py:\d+"):
        gc.nn.layer_norm(gc.placeholder(gc.int32, (2, 3)))
    with pytest.raises(gc.GraphcError, match="rms_norm: eps must be a number >= 0, got -1"):
        gc.nn.rms_norm(x, eps=-1)
    with pytest.raises(gc.ShapeError, match=r"q and k need one feature size.*q: float32\(2, 3\), k: float32\(2, 4\)"
                                            r"(.|\n)*test_dl_composites.py:\d+"):
        gc.nn.scaled_dot_product_attention(x, gc.placeholder(gc.float32, (2, 4)), x)
    with pytest.raises(gc.ShapeError, match="need rank >= 2"):
        gc.nn.scaled_dot_product_attention(gc.placeholder(gc.float32, (3,)), x, x)
    with pytest.raises(gc.DTypeError, match="mask must be bool"):
        gc.nn.scaled_dot_product_attention(x, x, x, mask=gc.placeholder(gc.float32, (2, 2)))
    with pytest.raises(gc.ShapeError, match=r"embedding: the table must be 2-D.*table: float32\(2, 3, 1\)"):
        gc.nn.embedding(gc.placeholder(gc.float32, (2, 3, 1)), gc.constant([1]))
    with pytest.raises(gc.DTypeError, match=r"embedding: ids must be integers.*ids: float32"):
        gc.nn.embedding(x, x)


def test_against_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    q, k, v = (RNG.standard_normal(s) for s in [(2, 5, 3, 4), (2, 6, 3, 4), (2, 6, 3, 4)])  # BTNH (jax layout)
    keep = _mask((2, 3, 5, 6), 0.8)
    keep[..., 0] = True
    want = jax.nn.dot_product_attention(q, k, v, mask=keep)
    tr = [np.swapaxes(a, 1, 2) for a in (q, k, v)]  # graphc: (batch, heads, length, features)
    got = _run_both(lambda a, b, c: gc.nn.scaled_dot_product_attention(a, b, c, mask=gc.constant(keep)), tr)[0]
    jax_tol = dict(rtol=2e-5, atol=1e-6)  # JAX takes the softmax in float32 even for float64 inputs
    np.testing.assert_allclose(np.swapaxes(got, 1, 2), want, **jax_tol)
    causal = jax.nn.dot_product_attention(q, k[:, :5], v[:, :5], is_causal=True)
    got = _run_both(lambda a, b, c: gc.nn.scaled_dot_product_attention(a, b, c, causal=True),
                    [tr[0], tr[1][:, :, :5], tr[2][:, :, :5]])[0]
    np.testing.assert_allclose(np.swapaxes(got, 1, 2), causal, **jax_tol)
    x = RNG.standard_normal((4, 6)) * 3 + 5
    got = _run_both(lambda a: gc.nn.layer_norm(a, eps=1e-5), [x])[0]
    np.testing.assert_allclose(got, jax.nn.standardize(x, axis=-1, epsilon=1e-5), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["layer_norm_affine", "rms_norm", "attention_causal"])
def test_second_order_matches_finite_differences(name):
    build, _, shapes = CASES[name]
    small = [tuple(min(d, 3) for d in s) for s in shapes]
    check_grads(build, [RNG.standard_normal(s) for s in small], order=2)
