"""The derivative conventions at kinks and ties, as data (docs/autodiff.md shows the same table).

KINKS maps a name in the first column of the doc's table ("Rules at non-differentiable
points") to points where the function has a kink, a tie or an edge of its domain, with
the gradient of sum(f) that graphc defines there. test_kinks.py checks the values (reverse
and forward mode, both backends) and that the doc and this table name the same rows;
test_hvp_routes.py checks that the three Hessian-vector-product routes agree at every point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import graphc as gc

INF = np.inf


@dataclass
class Kink:
    """build(*placeholders) at `inputs`; `grads` is d sum(build) / d input, one per input."""

    build: Callable
    inputs: list
    grads: list
    where: str = ""
    hvp: bool = True  # False where a first derivative is infinite: no Hessian to agree on

    def arrays(self) -> list[np.ndarray]:
        return [np.array(v, dtype=np.float64) for v in self.inputs]


def _power(a, b):
    return a.graph.make("power", (a, b))  # the primitive (gc.power turns b == 2 into square)


KINKS: dict[str, list[Kink]] = {
    "relu": [Kink(gc.relu, [[-1.0, 0.0, 2.0]], [[0.0, 0.0, 1.0]], "x = 0")],
    "abs": [Kink(gc.abs, [[-1.0, 0.0, 2.0]], [[-1.0, 0.0, 1.0]], "x = 0")],
    "maximum": [Kink(gc.maximum, [[1.0, 2.0, 3.0], [1.0, 2.5, 2.0]], [[0.5, 0.0, 1.0], [0.5, 1.0, 0.0]], "a = b")],
    "minimum": [Kink(gc.minimum, [[1.0, 2.0, 3.0], [1.0, 2.5, 2.0]], [[0.5, 1.0, 0.0], [0.5, 0.0, 1.0]], "a = b")],
    "max": [Kink(lambda x: gc.max(x), [[1.0, 3.0, 3.0, 3.0]], [[0.0, 1 / 3, 1 / 3, 1 / 3]], "three-way tie"),
            Kink(lambda x: gc.max(x, axis=1), [[[2.0, 2.0], [1.0, 5.0]]], [[[0.5, 0.5], [0.0, 1.0]]], "tie in a row")],
    "min": [Kink(lambda x: gc.min(x, axis=1), [[[2.0, 2.0], [1.0, 5.0]]], [[[0.5, 0.5], [1.0, 0.0]]], "tie in a row")],
    "clip": [Kink(gc.clip, [[-2.0, -1.0, 0.0, 1.0, 2.0], -1.0, 1.0], [[0.0, 1.0, 1.0, 1.0, 0.0], 1.0, 1.0],
                  "x at both bounds"),
             Kink(gc.clip, [[0.0, 3.0], 2.0, 1.0], [[0.0, 0.0], 0.0, 2.0], "lo > hi: hi wins")],
    "where": [Kink(lambda a, b: gc.where(np.array([True, False]), a, b), [[1.0, 2.0], [1.0, 2.0]],
                   [[1.0, 0.0], [0.0, 1.0]], "a = b")],
    "power": [Kink(_power, [[0.0, 0.0, 0.0, 0.0, -2.0], [0.0, 1.0, 2.0, 3.0, 3.0]],
                   [[0.0, 1.0, 0.0, 0.0, 12.0], [0.0, 0.0, 0.0, 0.0, 0.0]], "a = 0 (b = 0, 1, 2, 3); a < 0"),
              Kink(lambda a: _power(a, gc.constant(0.0, gc.float64)), [[0.0, 2.0]], [[0.0, 0.0]], "x ** 0 at 0"),
              Kink(_power, [[0.0], [0.5]], [[INF], [0.0]], "a = 0, 0 < b < 1: inf", hvp=False)],
    "prod": [Kink(lambda x: gc.prod(x), [[0.0, 2.0, 3.0]], [[6.0, 0.0, 0.0]], "one zero"),
             Kink(lambda x: gc.prod(x), [[0.0, 2.0, 0.0]], [[0.0, 0.0, 0.0]], "two zeros")],
    "sqrt": [Kink(gc.sqrt, [[0.0, 4.0]], [[INF, 0.25]], "x = 0: inf")],
    "fabs": [Kink(gc.fabs, [[-1.0, 0.0, 2.0]], [[-1.0, 0.0, 1.0]], "x = 0")],
    "fmax": [Kink(gc.fmax, [[1.0, 2.0, np.nan], [1.0, np.nan, 2.0]], [[0.5, 1.0, 0.0], [0.5, 0.0, 1.0]],
                  "a = b; a NaN: b takes it")],
    "fmin": [Kink(gc.fmin, [[1.0, 2.0], [1.0, 3.0]], [[0.5, 1.0], [0.5, 0.0]], "a = b")],
    "hypot": [Kink(gc.hypot, [[0.0, 3.0], [0.0, 4.0]], [[0.0, 0.6], [0.0, 0.8]], "origin: 0")],
    "heaviside": [Kink(gc.heaviside, [[0.0, 1.0, -1.0], [0.5, 0.5, 0.5]], [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
                       "x1 = 0: x2 gets the cotangent")],
    "nan_to_num": [Kink(gc.nan_to_num, [[np.inf, -np.inf, 1.0]], [[0.0, 0.0, 1.0]], "x = inf: 0")],
    "mod": [Kink(gc.mod, [[3.0, -1.0], [1.5, 2.0]], [[1.0, 1.0], [-2.0, 1.0]], "at a jump (a = 2b): floor(a/b)")],
    "sinc": [Kink(gc.sinc, [[0.0, 1.0]], [[0.0, -1.0]], "x = 0: 0 (smooth, by its series)")],
    "xlogy": [Kink(gc.special.xlogy, [[0.0, 2.0], [0.0, 0.5]], [[-INF, np.log(0.5)], [0.0, 4.0]],
                   "x = 0: d/dy = 0 (also at y = 0); d/dx = log(y)", hvp=False)],
    "xlog1py": [Kink(gc.special.xlog1py, [[0.0, 2.0], [-1.0, 1.0]], [[-INF, np.log(2.0)], [0.0, 1.0]],
                     "x = 0: d/dy = 0 (also at y = -1)", hvp=False)],
    "std": [Kink(lambda x: gc.std(x), [[1.5, 1.5, 1.5]], [[0.0, 0.0, 0.0]], "zero spread"),
            Kink(lambda x: gc.std(x, axis=1), [[[2.0, 2.0], [1.0, 3.0]]], [[[0.0, 0.0], [-0.5, 0.5]]],
                 "zero spread in one row")],
    "var": [Kink(lambda x: gc.var(x), [[1.5, 1.5, 1.5]], [[0.0, 0.0, 0.0]], "zero spread")],
}
