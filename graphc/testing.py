"""Test helpers: `check_grads` compares autodiff against finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autodiff import gradients, jvp
from .dtypes import float64, is_float, shape_str
from .ir.graph import Graph, Tensor
from .ir.printer import as_text
from .ops.core import constant, placeholder
from .ops.reduce import sum as reduce_sum
from .runtime.session import Session

__all__ = ["check_grads"]

EPS, RTOL, ATOL = 1e-6, 1e-5, 1e-6
_MAX_GRAPH_LINES = 40


class _Problem:
    """One function to check: its graph, placeholders, output and evaluators."""

    def __init__(self, build: Callable[..., Tensor], arrays: list[np.ndarray], backend: str, label: str):
        self.graph = Graph()
        self.arrays = arrays
        self.label = label
        with self.graph.as_default():
            self.xs = [placeholder(float64, a.shape, name=f"x{i}") for i, a in enumerate(arrays)]
            out = build(*self.xs)
        if not isinstance(out, Tensor) or not is_float(out.dtype):
            raise TypeError(f"check_grads: {label} must build one floating tensor, got {out!r}")
        if out.dtype != float64:
            raise TypeError(f"check_grads: {label} returned a {out.dtype} tensor; finite differences need float64")
        self.out = out
        self.ref = Session(self.graph, backend="reference")
        self.sess = self.ref if backend == "reference" else Session(self.graph, backend=backend)

    def value(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.ref.run(self.out, dict(zip(self.xs, arrays))), dtype=np.float64)

    def run(self, fetches: Any) -> Any:
        with self.graph.as_default():
            return self.sess.run(fetches, dict(zip(self.xs, self.arrays)))

    def moved(self, i: int, direction: np.ndarray, step: float) -> list[np.ndarray]:
        arrays = list(self.arrays)
        arrays[i] = arrays[i] + step * direction
        return arrays

    def central(self, i: int, direction: np.ndarray, eps: float) -> np.ndarray:
        """(f(x + eps d) - f(x - eps d)) / 2 eps, moving only input i."""
        return (self.value(self.moved(i, direction, eps)) - self.value(self.moved(i, direction, -eps))) / (2 * eps)

    def report(self, mode: str, i: int, expected: np.ndarray, got: np.ndarray, err: float) -> str:
        lines = as_text(self.out).splitlines()
        if len(lines) > _MAX_GRAPH_LINES:
            lines = lines[:_MAX_GRAPH_LINES // 2] + ["..."] + lines[-_MAX_GRAPH_LINES // 2:]
        shapes = ", ".join(shape_str(a.shape) for a in self.arrays)
        return (f"check_grads: {mode} of {self.label}, input {i} (inputs {shapes}), "
                f"differs from central finite differences\n"
                f"  expected: {np.array2string(np.asarray(expected), precision=8)}\n"
                f"  got:      {np.array2string(np.asarray(got), precision=8)}\n"
                f"  max abs error: {err:.3g}\n  graph:\n    " + "\n    ".join(lines))


def _close(expected: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> tuple[bool, float]:
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return False, float("inf")
    if expected.size == 0:
        return True, 0.0
    err = np.abs(expected - got)
    ok = bool(np.all(np.isfinite(got)) and np.all(err <= atol + rtol * np.abs(expected)))
    return ok, float(np.max(err))


def _check_rev(p: _Problem, rng: np.random.Generator, eps: float, rtol: float, atol: float) -> None:
    u = rng.standard_normal(p.out.shape)
    with p.graph.as_default():
        vjps = gradients(p.out, p.xs, grad_ys=constant(u, dtype=float64), unconnected="zero")
    values = p.run(vjps)
    for i, (a, v) in enumerate(zip(p.arrays, values)):
        d = rng.standard_normal(a.shape)
        got = np.sum(np.asarray(v) * d)
        expected = np.sum(u * p.central(i, d, eps))
        scale = np.sum(np.abs(np.asarray(v) * d))  # sum of |terms|: the size rounding errors scale with
        ok, err = _close(expected, got, rtol, atol + rtol * scale)
        if not ok:
            raise AssertionError(p.report("reverse mode (u^T J d)", i, expected, got, err))


def _check_fwd(p: _Problem, rng: np.random.Generator, eps: float, rtol: float, atol: float) -> None:
    for i, a in enumerate(p.arrays):
        d = rng.standard_normal(a.shape)
        with p.graph.as_default():
            tangents = [constant(d, dtype=float64) if k == i else None for k in range(len(p.xs))]
            (t,) = jvp(p.out, p.xs, tangents)
        got = np.asarray(p.run(t))
        ok, err = _close(p.central(i, d, eps), got, rtol, atol)
        if not ok:
            raise AssertionError(p.report("forward mode (J d)", i, p.central(i, d, eps), got, err))


def _derived(build: Callable[..., Tensor], mode: str, arrays: list[np.ndarray], out_shape: tuple,
             rng: np.random.Generator) -> Callable[..., Tensor]:
    """A scalar function of the inputs made of build's first derivative in `mode`."""
    u = rng.standard_normal(out_shape)
    ws = [rng.standard_normal(a.shape) for a in arrays]
    ds = [rng.standard_normal(a.shape) for a in arrays]

    def rev(*xs: Tensor) -> Tensor:
        grads = gradients(build(*xs), list(xs), grad_ys=constant(u, dtype=float64), unconnected="zero")
        total = constant(0.0, dtype=float64)
        for g, w in zip(grads, ws):
            total = total + reduce_sum(g * constant(w, dtype=float64))
        return total

    def fwd(*xs: Tensor) -> Tensor:
        (t,) = jvp(build(*xs), list(xs), [constant(d, dtype=float64) for d in ds])
        return reduce_sum(t * constant(u, dtype=float64))

    return rev if mode == "rev" else fwd


def _check(build: Callable[..., Tensor], arrays: list[np.ndarray], order: int, modes: Sequence[str],
           tols: tuple[float, float, float], rng: np.random.Generator, backend: str, label: str) -> None:
    eps, rtol, atol = tols
    p = _Problem(build, arrays, backend, label)
    if "rev" in modes:
        _check_rev(p, rng, eps, rtol, atol)
    if "fwd" in modes:
        _check_fwd(p, rng, eps, rtol, atol)
    if order > 1:
        for mode in modes:
            inner = f"{mode} derivative of {label}"
            _check(_derived(build, mode, arrays, p.out.shape, rng), arrays, order - 1, modes, tols, rng, backend,
                   inner)


def check_grads(build: Callable[..., Tensor], inputs: Sequence[Any], order: int = 1,
                modes: Sequence[str] = ("fwd", "rev"), eps: float | None = None, rtol: float | None = None,
                atol: float | None = None, seed: int = 0, backend: str = "reference") -> None:
    """Check `build`'s derivatives against central finite differences in float64.

    `build(*placeholders)` receives one float64 placeholder per array in `inputs` and
    returns a floating tensor. Reverse mode is checked as uᵀJd and forward mode as Jd
    along random directions u, d (one d per input); ``order=2`` also checks the
    derivatives of the first derivatives (every combination of `modes`). Finite
    differences run on the reference backend; the derivative graphs run on `backend`.
    Raises AssertionError with a report naming the mode, the input, expected and got
    values, the largest error and the graph.
    """
    if order < 1:
        raise ValueError(f"check_grads: order must be >= 1, got {order}")
    bad = [m for m in modes if m not in ("fwd", "rev")]
    if bad or not modes:
        raise ValueError(f"check_grads: modes must be a non-empty subset of ('fwd', 'rev'), got {modes!r}")
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    tols = (EPS if eps is None else eps, RTOL if rtol is None else rtol, ATOL if atol is None else atol)
    name = getattr(build, "__name__", "build")
    _check(build, arrays, order, tuple(modes), tols, np.random.default_rng(seed), backend, name)
