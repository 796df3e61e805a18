"""`gc.random`: random numbers drawn inside the graph, reproducibly (graphc/ops/random.py).

Every op draws from Philox-4x32-10 with key (graph seed, op seed) and counter (run number,
element index). The graph seed is `set_seed`'s (0 unless set); an op's seed is `seed=`,
else the number of random ops built in the graph before it, so a script that builds the
same graph draws the same numbers (TF1 picks a random graph seed when none is set; graphc
does not). The run number belongs to the session (the variable ``random/run_count``,
saved by `gc.train.Saver`); every run that draws advances it, so each run draws fresh
numbers and run k of any session, `gc.function` or exported library of the same graph
draws the same ones.

`shape` is a tuple of ints or a tensor, whose shape (dims unknown until run time
included) is used: ``gc.random.uniform(x)`` draws one number per element of x.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from .dtypes import as_dtype, is_float
from .errors import DTypeError, GraphcError
from .ir.composite import composite
from .ir.graph import Graph, Tensor, get_default_graph
from .ir.naming import add_names
from .ops import elementwise as ew
from .ops.core import graph_of
from .ops.random import random_node
from .ops.special import erfinv

__all__ = ["bernoulli", "normal", "set_seed", "truncated_normal", "uniform"]

_graph_seeds: weakref.WeakKeyDictionary[Graph, int] = weakref.WeakKeyDictionary()
_op_counts: weakref.WeakKeyDictionary[Graph, int] = weakref.WeakKeyDictionary()


def set_seed(seed: int, graph: Graph | None = None) -> None:
    """The graph-level seed of the default graph (or `graph`): TF1's ``tf.set_random_seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise GraphcError(f"random.set_seed: the seed must be an int, got {seed!r}")
    _graph_seeds[graph or get_default_graph()] = int(seed) % 2**32


def _key(graph: Graph, seed: Any, fn: str) -> tuple[int, int]:
    n = _op_counts.get(graph, 0)
    _op_counts[graph] = n + 1
    if seed is None:
        seed = n
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise GraphcError(f"random.{fn}: seed must be an int or None, got {seed!r}")
    return _graph_seeds.get(graph, 0), int(seed) % 2**32


def _float_dtype(dtype: Any, fn: str) -> np.dtype:
    dt = as_dtype(dtype)
    if not is_float(dt):
        raise DTypeError(f"random.{fn}: dtype must be float32 or float64, got {dt}")
    return dt


def _draw(kind: str, fn: str, shape: Any, dtype: Any, seed: int | None) -> Tensor:
    """A random_<kind> node for the public function `fn`."""
    dt = _float_dtype(dtype, fn)
    g = graph_of(shape)
    return random_node(kind, shape, dt, _key(g, seed, fn), g)


def _scaled(t: Tensor, scale: float, shift: float) -> Tensor:
    return t if (scale, shift) == (1.0, 0.0) else t * scale + shift


@composite
def uniform(shape: Any, dtype: Any = np.float32, seed: int | None = None, minval: float = 0.0,
            maxval: float = 1.0) -> Tensor:
    """Uniform floats in [minval, maxval) (tf.random.uniform)."""
    return _scaled(_draw("uniform", "uniform", shape, dtype, seed), maxval - minval, minval)


@composite
def normal(shape: Any, dtype: Any = np.float32, seed: int | None = None, mean: float = 0.0,
           stddev: float = 1.0) -> Tensor:
    """Normal floats with `mean` and `stddev` (tf.random.normal)."""
    return _scaled(_draw("normal", "normal", shape, dtype, seed), stddev, mean)


@composite
def truncated_normal(shape: Any, dtype: Any = np.float32, seed: int | None = None, mean: float = 0.0,
                     stddev: float = 1.0) -> Tensor:
    """Normal floats cut to within 2 standard deviations of `mean` (tf.random.truncated_normal).

    Drawn by inverting the normal CDF on [Phi(-2), Phi(2)] (no rejection loop):
    ``sqrt(2) * erfinv(erf(sqrt(2)) * (2u - 1))``.
    """
    u = _draw("uniform", "truncated_normal", shape, dtype, seed)
    return _scaled(erfinv((u * 2 - 1) * math.erf(math.sqrt(2.0))) * math.sqrt(2.0), stddev, mean)


@composite
def bernoulli(shape: Any, p: float = 0.5, seed: int | None = None) -> Tensor:
    """Bools that are True with probability `p` (jax.random.bernoulli): ``uniform < p`` in float32."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
        raise GraphcError(f"random.bernoulli: p must be a number in [0, 1], got {p!r}")
    return ew.less(_draw("uniform", "bernoulli", shape, np.float32, seed), np.float32(p))


add_names(globals(), __all__)  # name= on every builder (graphc/ir/naming.py)
