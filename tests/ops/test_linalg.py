"""gc.linalg against numpy.linalg / scipy.linalg on both backends, batched and unbatched.

The table is keyed by the public names in `gc.linalg.__all__`, so a function added
without a case here fails. Inputs are generated for what each function needs: general
well-conditioned matrices, symmetric positive definite ones (x xᵀ + nI), triangles.
JAX, when installed, is a second oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.linalg as sla

import graphc as gc
from graphc.ir.traverse import toposort
from graphc.ops.registry import all_ops

L = gc.linalg


def general(rng, shape):
    n = shape[-1]
    return rng.standard_normal(shape) + 2 * n * np.eye(n) * (shape[-2] == n)


def spd(rng, shape):
    x = rng.standard_normal(shape)
    return x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])


def normal(rng, shape):
    return rng.standard_normal(shape)


@dataclass
class Case:
    """fn(*tensors) vs want(*arrays) on inputs drawn by `draws` with `shapes`."""

    fn: Callable
    want: Callable
    shapes: list
    draws: tuple


def _cho_solve_ref(c, b):
    return np.stack([sla.cho_solve((ci, True), bi) for ci, bi in zip(c.reshape(-1, *c.shape[-2:]),
                                                                       b.reshape(-1, *b.shape[-2:]))]).reshape(b.shape)


def _tri_ref(a, b, lower, trans, unit):
    flat_a, flat_b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    out = [sla.solve_triangular(x, y, trans=trans, lower=lower, unit_diagonal=unit) for x, y in zip(flat_a, flat_b)]
    return np.stack(out).reshape(b.shape)


CASES: dict[str, list[Case]] = {
    "solve": [Case(L.solve, np.linalg.solve, [(4, 4), (4, 2)], (general, normal)),
              Case(L.solve, np.linalg.solve, [(2, 3, 3), (3,)], (general, normal)),
              Case(L.solve, np.linalg.solve, [(2, 1, 3, 3), (4, 3, 2)], (general, normal))],
    "inv": [Case(L.inv, np.linalg.inv, [(4, 4)], (general,)), Case(L.inv, np.linalg.inv, [(2, 3, 3)], (general,))],
    "det": [Case(L.det, np.linalg.det, [(4, 4)], (normal,)), Case(L.det, np.linalg.det, [(3, 2, 2)], (normal,))],
    "slogdet": [Case(lambda a: gc.stack(L.slogdet(a)), lambda a: np.stack(np.linalg.slogdet(a)), [(2, 5, 5)],
                     (normal,))],
    "cholesky": [Case(L.cholesky, np.linalg.cholesky, [(4, 4)], (spd,)),
                 Case(L.cholesky, np.linalg.cholesky, [(2, 3, 3)], (spd,))],
    "triangular_solve": [Case(lambda a, b: L.triangular_solve(a, b), lambda a, b: _tri_ref(a, b, True, 0, False),
                              [(2, 4, 4), (2, 4, 3)], (general, normal)),
                         Case(lambda a, b: L.triangular_solve(a, b, lower=False, adjoint=True),
                              lambda a, b: _tri_ref(a, b, False, 1, False), [(4, 4), (4, 1)], (general, normal))],
    "solve_triangular": [Case(lambda a, b: L.solve_triangular(a, b, trans="T", lower=True, unit_diagonal=True),
                              lambda a, b: sla.solve_triangular(a, b, trans="T", lower=True, unit_diagonal=True),
                              [(4, 4), (4,)], (normal, normal))],
    "cho_solve": [Case(lambda a, b: L.cho_solve((L.cholesky(a), True), b),
                       lambda a, b: _cho_solve_ref(np.linalg.cholesky(a), b), [(2, 4, 4), (2, 4, 2)], (spd, normal)),
                  Case(lambda a, b: L.cho_solve((gc.transpose(L.cholesky(a)), False), b),
                       lambda a, b: sla.cho_solve((np.linalg.cholesky(a).T, False), b), [(3, 3), (3,)], (spd, normal))],
    "eigh": [Case(lambda a: _sign_free_eigh(*L.eigh(a)), lambda a: _sign_free_eigh(*np.linalg.eigh(a)), [(2, 4, 4)],
                  (spd,)),
             Case(lambda a: _sign_free_eigh(*L.eigh(a, UPLO="U")),
                  lambda a: _sign_free_eigh(*np.linalg.eigh(a, UPLO="U")), [(3, 3)], (normal,))],
    "eigvalsh": [Case(L.eigvalsh, np.linalg.eigvalsh, [(2, 5, 5)], (normal,))],
    "svd": [Case(lambda a: _sign_free_svd(*L.svd(a, full_matrices=False)),
                 lambda a: _sign_free_svd(*np.linalg.svd(a, full_matrices=False)), [(2, 5, 3)], (normal,)),
            Case(lambda a: _sign_free_svd(*L.svd(a)), lambda a: _sign_free_svd(*np.linalg.svd(a)), [(4, 4)], (normal,)),
            Case(lambda a: L.svd(a, compute_uv=False), lambda a: np.linalg.svd(a, compute_uv=False), [(3, 6)],
                 (normal,))],
    "svdvals": [Case(L.svdvals, np.linalg.svdvals, [(2, 3, 4)], (normal,))],
    "qr": [Case(lambda a: gc.concatenate(list(L.qr(a)), -2), lambda a: np.concatenate(np.linalg.qr(a), -2),
                [(2, 5, 3)], (normal,)),
           Case(lambda a: gc.concatenate(list(L.qr(a, "complete")), -1),
                lambda a: np.concatenate(np.linalg.qr(a, "complete"), -1), [(5, 3)], (normal,)),
           Case(lambda a: L.qr(a, "r"), lambda a: np.linalg.qr(a, "r"), [(3, 5)], (normal,))],
    "pinv": [Case(L.pinv, np.linalg.pinv, [(2, 5, 3)], (normal,)),
             Case(L.pinv, np.linalg.pinv, [(4, 4)], (lambda rng, s: np.diag([3.0, 1.0, 0.0, 0.0]),))],
    "matrix_power": [Case(lambda a, n=n: L.matrix_power(a, n), lambda a, n=n: np.linalg.matrix_power(a, n),
                          [(2, 3, 3)], (general,)) for n in (0, 1, 2, 5, -3)],
    "norm": [Case(lambda x, o=o, ax=ax, k=k: L.norm(x, o, ax, k),
                  lambda x, o=o, ax=ax, k=k: np.linalg.norm(x, o, ax, k), [(2, 3, 4)], (normal,))
             for o, ax, k in ((None, None, False), (None, None, True), (2, 1, False), (1, -1, True), (0, 0, False),
                              (np.inf, 2, False), (-np.inf, 1, False), (3.5, 1, False), (-1, 2, False),
                              ("fro", (1, 2), False), ("nuc", (2, 1), True), (2, (1, 2), False), (-2, (0, 2), False),
                              (1, (1, 2), False), (-1, (2, 0), True), (np.inf, (1, 2), False),
                              (-np.inf, (1, 2), False))]
    + [Case(lambda x: L.norm(x, 1), lambda x: np.linalg.norm(x, 1), [(3, 4)], (normal,)),
       Case(lambda x: L.norm(x, np.inf), lambda x: np.linalg.norm(x, np.inf), [(5,)], (normal,))],
}


def _sign_free_eigh(w, v):
    stack = gc.concatenate if isinstance(w, gc.Tensor) else np.concatenate
    return stack([w[..., None, :], v * v], -2)


def _sign_free_svd(u, s, vh):
    stack = gc.concatenate if isinstance(u, gc.Tensor) else np.concatenate
    return stack([u * u, s[..., None, :], (u * s[..., None, :]) @ vh], -2)


def test_every_public_function_has_a_case():
    assert set(L.__all__) == set(CASES)


def test_every_lapack_op_is_reached_by_the_table():
    reached = set()
    for cases in CASES.values():
        for case in cases:
            with gc.Graph().as_default():
                phs = [gc.placeholder(np.float64, s) for s in case.shapes]
                reached |= {n.op for n in toposort([case.fn(*phs)])}
    assert {n for n, op in all_ops().items() if op.kind == "lapack"} <= reached


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy(name, dtype):
    rng = np.random.default_rng(sum(map(ord, name)))
    graph = gc.Graph()
    fetches, feeds, wants = [], {}, []
    with graph.as_default():
        for case in CASES[name]:
            arrays = [draw(rng, s).astype(dtype) for draw, s in zip(case.draws, case.shapes)]
            phs = [gc.placeholder(dtype, a.shape) for a in arrays]
            fetches.append(case.fn(*phs))
            feeds.update(zip(phs, arrays))
            wants.append(np.asarray(case.want(*[a.astype(np.float64) for a in arrays])))
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for backend in ("reference", "llvm"):
        got = gc.Session(graph, backend=backend).run(fetches, feeds)
        for g, w in zip(got, wants):
            assert g.dtype == dtype and g.shape == w.shape, (backend, g.dtype, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{name} on {backend}")


def _run(fetches, feeds):
    return [gc.Session(backend=b).run(fetches, feeds) for b in ("reference", "llvm")]


def test_singular_and_not_positive_definite_give_nan_and_numpy_det():
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    a = gc.placeholder(np.float64, (2, 2))
    for solved, inverse, det, (sign, logdet), chol in _run(
            [L.solve(a, np.ones(2)), L.inv(a), L.det(a), L.slogdet(a), L.cholesky(a - 10 * np.eye(2))],
            {a: singular}):
        assert np.isnan(solved).all() and np.isnan(inverse).all() and np.isnan(chol).all()
        assert det == 0.0 and sign == 0.0 and logdet == -np.inf
        assert not np.signbit(sign) and not np.signbit(det)  # +0.0 as numpy's (LU swaps rows here)


def test_one_bad_matrix_leaves_the_rest_of_the_batch_alone():
    batch = np.stack([np.eye(2) * 2, np.zeros((2, 2)), np.diag([1.0, 4.0])])
    a = gc.placeholder(np.float64, (3, 2, 2))
    for inverse, chol in _run([L.inv(a), L.cholesky(a)], {a: batch}):
        np.testing.assert_allclose(inverse[[0, 2]], np.linalg.inv(batch[[0, 2]]))
        np.testing.assert_allclose(chol[[0, 2]], np.linalg.cholesky(batch[[0, 2]]))
        assert np.isnan(inverse[1]).all() and np.isnan(chol[1]).all()


def test_cholesky_reads_only_the_lower_triangle_like_numpy():
    x = spd(np.random.default_rng(3), (4, 4))
    polluted = np.tril(x) + np.triu(np.full((4, 4), 99.0), 1)
    a = gc.placeholder(np.float64, (4, 4))
    for (got,) in _run([L.cholesky(a)], {a: polluted}):
        np.testing.assert_allclose(got, np.linalg.cholesky(x))


@pytest.mark.parametrize("build, message", [
    (lambda: L.inv(gc.placeholder(np.float64, (3, 4))), "must be square"),
    (lambda: L.det(gc.placeholder(np.float64, (4,))), "rank >= 2"),
    (lambda: L.cholesky(gc.placeholder(np.int32, (3, 3))), "float32 or float64"),
    (lambda: L.solve(gc.placeholder(np.float64, (3, 3)), gc.placeholder(np.float64, (4, 2))), "rows"),
    (lambda: L.solve(gc.placeholder(np.float64, (2, 3, 3)), gc.placeholder(np.float64, (4, 3, 1))), "broadcast"),
    (lambda: L.slogdet(gc.placeholder(np.float64, (None, None))), "must be known"),
    (lambda: L.solve_triangular(gc.placeholder(np.float64, (2, 2)), np.ones(2), trans=3), "trans must be"),
    (lambda: L.qr(gc.placeholder(np.float64, (3, 2)), "raw"), "mode must be"),
    (lambda: L.eigh(gc.placeholder(np.float64, (3, 3)), "X"), "UPLO"),
    (lambda: L.norm(gc.placeholder(np.float64, (3, 3)), "fro", axis=0), "matrix norm"),
    (lambda: L.norm(gc.placeholder(np.float64, (3, 3)), 3, axis=(0, 1)), "invalid matrix norm"),
    (lambda: L.norm(gc.placeholder(np.float64, (3, 3, 3)), 1), "1-D or 2-D"),
    (lambda: L.matrix_power(gc.placeholder(np.float64, (3, 3)), 1.5), "integer"),
])
def test_bad_input_is_a_clear_error_at_the_users_line(build, message):
    with gc.Graph().as_default(), pytest.raises(gc.GraphcError, match=message) as info:
        build()
    assert "test_linalg.py" in str(info.value)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 6), (4, 4)])
def test_svd_full_matrices_like_numpy(shape):
    x = np.random.default_rng(2).standard_normal(shape)
    a = gc.placeholder(np.float64, shape)
    k = min(shape[-2:])
    want_u, want_s, want_vh = np.linalg.svd(x)
    for u, s, vh in _run(list(L.svd(a)), {a: x}):
        assert u.shape == want_u.shape and vh.shape == want_vh.shape
        np.testing.assert_allclose(s, want_s, atol=1e-12)
        np.testing.assert_allclose(np.abs(u[..., :k]), np.abs(want_u[..., :k]), atol=1e-10)
        np.testing.assert_allclose(np.abs(vh[..., :k, :]), np.abs(want_vh[..., :k, :]), atol=1e-10)
        for q in (u, vh):  # the completed bases are orthonormal
            np.testing.assert_allclose(q @ np.swapaxes(q, -1, -2), np.broadcast_to(np.eye(q.shape[-1]), q.shape),
                                       atol=1e-12)
        np.testing.assert_allclose((u[..., :k] * s[..., None, :]) @ vh[..., :k, :], x, atol=1e-12)


DEGENERATE = [np.array([[2, -8, -5], [2, -8, -5]]), np.outer([1, -2, 3, 0], [4, 1, -1]), np.zeros((3, 2)),
              np.ones((3, 3)), 2 * np.eye(3), np.arange(25).reshape(5, 5) % 3 - 1.0]


@pytest.mark.parametrize("a", DEGENERATE, ids=lambda a: "x".join(map(str, a.shape)))
def test_fuzz_seed_3012619_float32_factors_of_degenerate_matrices_match_numpy(a):
    """graph-fuzz seed 3012619: the float32 full SVD of [[2, -8, -5], [2, -8, -5]] had other
    null-space singular vectors on the LLVM backend (sgesdd in float32) than numpy, which
    computes float32 linalg in float64. Both backends now compute in float64, so where
    factors are not unique (zero or repeated singular values and eigenvalues, rank-deficient
    QR) they pick the same ones, numpy's."""
    a = a.astype(np.float32)
    x = gc.placeholder(np.float32, a.shape)
    fetches = [*L.svd(x), *L.svd(x, full_matrices=False), *L.qr(x), *L.qr(x, mode="complete")]
    wants = [*np.linalg.svd(a), *np.linalg.svd(a, full_matrices=False), *np.linalg.qr(a),
             *np.linalg.qr(a, mode="complete")]
    if a.shape[0] == a.shape[1]:
        fetches += list(L.eigh(x @ x.T))
        wants += list(np.linalg.eigh(a @ a.T))
    for got in _run(fetches, {x: a}):
        for g, w in zip(got, wants):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(a).max()) ** 2)


def test_svd_full_matrices_of_a_non_square_matrix_has_no_derivative():
    with gc.Graph().as_default():
        a = gc.placeholder(np.float64, (3, 2))
        with pytest.raises(gc.GraphcError, match="full_matrices=True has no derivative when m != n") as info:
            gc.gradients(gc.sum(L.svd(a).U), [a])
    assert "test_linalg.py" in str(info.value)


def test_qr_derivative_in_complete_mode_of_a_tall_matrix_is_refused_clearly():
    with gc.Graph().as_default():
        a = gc.placeholder(np.float64, (3, 2))
        with pytest.raises(gc.GraphcError, match="mode 'complete' has no derivative when m > n") as info:
            gc.gradients(gc.sum(L.qr(a, "complete").Q), [a])
    assert "test_linalg.py" in str(info.value)


def test_repeated_eigenvalues_and_singular_values_give_finite_gradients():
    """The documented convention: pairs with exactly equal values are left out of the vector part."""
    a = gc.placeholder(np.float64, (3, 3))
    loss = gc.sum(L.eigvalsh(a) * np.array([1.0, 2.0, 3.0])) + gc.sum(L.eigh(a).eigenvectors ** 2) \
        + gc.sum(L.svdvals(a)) + gc.sum(L.svd(a).U ** 2)
    (grad,) = gc.gradients(loss, [a])
    for got in _run([grad], {a: np.diag([2.0, 2.0, 5.0])}):
        assert np.isfinite(got[0]).all()
    # eigenvalue gradients stay exact: d(sum w * c)/dA = V diag(c) Vᵀ on the lower triangle
    (gw,) = gc.gradients(gc.sum(L.eigvalsh(a) * np.array([1.0, 1.0, 3.0])), [a])
    for (got,) in _run([gw], {a: np.diag([2.0, 2.0, 5.0])}):
        np.testing.assert_allclose(got, np.diag([1.0, 1.0, 3.0]), atol=1e-12)


def test_unknown_batch_dims_bind_at_run_time():
    a = gc.placeholder(np.float64, (None, 3, 3))
    x = spd(np.random.default_rng(0), (5, 3, 3))
    for (got,) in _run([L.det(a)], {a: x}):
        np.testing.assert_allclose(got, np.linalg.det(x))


def test_jax_agrees_on_decomposition_gradients():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x = np.random.default_rng(1).standard_normal((4, 3))
    weights = np.arange(1.0, 13.0).reshape(4, 3)

    def loss_jax(m):
        q, r = jnp.linalg.qr(m)
        s = jnp.linalg.svd(m, compute_uv=False)
        return jnp.sum(q * weights) + jnp.sum(r) + jnp.sum(s ** 3) + jnp.sum(jnp.linalg.eigvalsh(m.T @ m) ** 2)

    m = gc.placeholder(np.float64, (4, 3))
    q, r = L.qr(m)
    loss = gc.sum(q * weights) + gc.sum(r) + gc.sum(L.svdvals(m) ** 3) + gc.sum(L.eigvalsh(m.T @ m) ** 2)
    (grad,) = gc.Session().run(gc.gradients(loss, [m]), {m: x})
    np.testing.assert_allclose(grad, jax.grad(loss_jax)(x), rtol=1e-8)


def test_jax_agrees_on_values_and_gradients():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    rng = np.random.default_rng(0)
    x, b = spd(rng, (3, 3)), rng.standard_normal((3, 2))

    def loss_jax(m, r):
        return (jnp.linalg.slogdet(m)[1] + jnp.sum(jnp.linalg.solve(m, r) ** 2)
                + jnp.sum(jnp.linalg.cholesky(m) * jnp.linalg.inv(m)))

    m, r = gc.placeholder(np.float64, (3, 3)), gc.placeholder(np.float64, (3, 2))
    loss = L.slogdet(m)[1] + gc.sum(L.solve(m, r) ** 2) + gc.sum(L.cholesky(m) * L.inv(m))
    value, gm, gr = gc.Session().run([loss, *gc.gradients(loss, [m, r])], {m: x, r: b})
    np.testing.assert_allclose(value, loss_jax(x, b))
    jm, jr = jax.grad(loss_jax, (0, 1))(x, b)
    np.testing.assert_allclose(gr, jr, rtol=1e-9)
    # JAX symmetrizes a Cholesky input, graphc reads its lower triangle (as numpy): same
    # derivative along every symmetric direction.
    d = rng.standard_normal((3, 3))
    d = d + d.T
    np.testing.assert_allclose(np.sum(gm * d), np.sum(np.asarray(jm) * d), rtol=1e-9)


def test_export_refuses_lapack_ops_clearly(tmp_path):
    with gc.Graph().as_default():
        a = gc.placeholder(np.float64, (3, 3))
        f = gc.function(a, L.inv(a) * 2.0)
    with pytest.raises(gc.GraphcError, match="solve .gc.linalg. calls LAPACK"):
        f.export(tmp_path, "inv_twice")


def test_derivatives_with_unknown_batch_dims_agree_in_both_modes():
    a, b = gc.placeholder(np.float64, (None, 3, 3)), gc.placeholder(np.float64, (None, 3, 2))
    rng = np.random.default_rng(4)
    x, y = spd(rng, (5, 3, 3)), rng.standard_normal((5, 3, 2))
    loss = (gc.sum(L.det(a)) + gc.sum(L.cholesky(a)) + gc.sum(L.eigvalsh(a) ** 2) + gc.sum(L.svdvals(a))
            + gc.sum(L.qr(a).R) + gc.sum(L.solve(a, b)) + gc.sum(L.pinv(a)))
    da, db = rng.standard_normal(x.shape), rng.standard_normal(y.shape)
    (tangent,) = gc.jvp(loss, [a, b], [gc.constant(da), gc.constant(db)])
    for ga, gb, t in _run([*gc.gradients(loss, [a, b]), tangent], {a: x, b: y}):
        np.testing.assert_allclose(np.sum(ga * da) + np.sum(gb * db), t, rtol=1e-10)


def test_graphs_with_linalg_ops_save_and_load(tmp_path):
    with gc.Graph().as_default():
        a = gc.placeholder(np.float64, (4, 3), name="a")
        out = gc.sum(L.qr(a, "complete").R) + L.norm(a, "nuc") + gc.sum(L.svd(a).U ** 2) \
            + gc.sum(L.solve_triangular(a[:3], a[:3, :2], lower=True))
        gc.save([out], tmp_path / "g.json")
        x = np.random.default_rng(5).standard_normal((4, 3))
        want = gc.Session().run(out, {a: x})
    graph = gc.Graph()
    (loaded,) = gc.load(tmp_path / "g.json", graph).outputs
    (feed,) = [n for n in toposort([loaded]) if n.op == "placeholder"]
    np.testing.assert_allclose(gc.Session(graph).run(loaded, {feed: x}), want, rtol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("sa, sb, fa, fb", [
    ((None, 3, 3), (3, 2), (5, 3, 3), (3, 2)),
    ((None, 3, 3), (3,), (4, 3, 3), (3,)),
    ((2, None, 3, 3), (None, 1, 3, 2), (2, 4, 3, 3), (2, 1, 3, 2)),
    ((1, 3, 3), (None, 3, 2), (1, 3, 3), (4, 3, 2)),
])
def test_linalg_broadcast_to_the_unknown_batch(backend, sa, sb, fa, fb):
    """Fuzz finding (issue 12): solve/triangular_solve refused "cannot broadcast ... to the unknown batch"
    when one operand's batch dims were None and the other's had to be broadcast to them."""
    rng = np.random.default_rng(3)
    av, bv = rng.standard_normal(fa) + 3 * np.eye(3), rng.standard_normal(fb)
    g = gc.Graph()
    with g.as_default():
        a, b = gc.placeholder(np.float64, sa), gc.placeholder(np.float64, sb)
        x = gc.linalg.solve(a, b)
        t = gc.linalg.triangular_solve(a, b if len(sb) > 1 else b[:, None], lower=True)
        gb = gc.gradients(gc.sum(x), b)[0]
    with gc.Session(g, backend=backend) as sess:
        xv, tv, gbv = sess.run([x, t, gb], {a: av, b: bv})
    col = bv if len(fb) > 1 else bv[:, None]
    batch = np.broadcast_shapes(av.shape[:-2], col.shape[:-2])
    want = np.linalg.solve(av, np.broadcast_to(col, batch + col.shape[-2:]))
    np.testing.assert_allclose(xv, want if len(fb) > 1 else want[..., 0], rtol=1e-10)
    np.testing.assert_allclose(tv, np.linalg.solve(np.tril(av), np.broadcast_to(col, want.shape)), rtol=1e-10)
    gw = np.linalg.solve(np.swapaxes(av, -1, -2), np.ones(want.shape))  # d sum(x) / d b = A⁻ᵀ 1, per matrix
    gw = gw.sum(axis=tuple(range(gw.ndim - col.ndim)))  # summed over the batch dims b was broadcast along
    gw = gw.sum(axis=tuple(i for i, d in enumerate(col.shape) if d == 1 and gw.shape[i] != 1), keepdims=True)
    np.testing.assert_allclose(gbv, gw.reshape(fb), rtol=1e-10)
