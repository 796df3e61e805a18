"""Counter-based random numbers (Philox-4x32-10) as index ops, so every backend computes the same bits.

Each element is one Philox call: key = (graph seed, op seed), counter = (the session's run
number, the element's linear index) laid out as (run_lo, index_lo, run_hi, index_hi). Pure
integer math (products of 32-bit words in int64, wrapping, split by floordiv/mod 2**32,
and xor), so the numpy reference, the LLVM kernels and exported C libraries give identical
words. The run number is a graph variable (`run_counter`, saved with the other variables)
that every run reading it advances by one (`counter_steps`), so each run draws fresh numbers.

``random_uniform`` gives [0, 1) with 24 (float32) or 53 (float64) random bits; the floats
are exact, so they are bit-identical on every backend. ``random_normal`` applies Box-Muller
to two such uniforms: its log/sqrt/cos are the backend's, equal to within a few ulp.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..dtypes import as_dtype, as_shape, int64, is_float, shape_str
from ..errors import DTypeError, ShapeError
from ..ir.graph import Graph, Tensor
from .core import Variable
from .registry import OpDef, OpKind, register
from .state import assign

__all__: list[str] = []

M0, M1 = 0xD2511F53, 0xCD9E8D57  # Philox-4x32 multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
ROUNDS = 10
_B32 = 1 << 32


def round_keys(key: tuple[int, int]) -> list[tuple[int, int]]:
    """The key of each of the 10 rounds (Random123's bumpkey)."""
    k0, k1 = key
    return [((k0 + r * W0) % _B32, (k1 + r * W1) % _B32) for r in range(ROUNDS)]


def philox_words(run: int, index: np.ndarray, key: tuple[int, int]) -> list[np.ndarray]:
    """The four 32-bit output words (as uint64 arrays) of Philox-4x32-10 at counter (run, index)."""
    index = np.asarray(index, dtype=np.uint64)
    mask = np.uint64(_B32 - 1)
    run64 = np.uint64(run)
    c = [np.full(index.shape, run64 & mask), index & mask, np.full(index.shape, run64 >> np.uint64(32)),
         index >> np.uint64(32)]
    for k0, k1 in round_keys(key):
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & mask, (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
             p0 & mask]
    return c


def _emit_words(s: Any, run: Any, index: Any, key: tuple[int, int]) -> list[Any]:
    """The same Philox words with an `Emitter`, in int64 (products wrap; floordiv/mod 2**32 split them)."""
    i64 = np.dtype(np.int64)
    b32 = s.const(_B32, i64)

    def lo(v: Any) -> Any:
        return s.mod(v, b32)

    def hi(v: Any) -> Any:
        return s.mod(s.floordiv(v, b32), b32)

    c = [lo(run), lo(index), s.floordiv(run, b32), s.floordiv(index, b32)]
    for k0, k1 in round_keys(key):
        p0 = s.mul(s.const(M0, i64), c[0])
        p1 = s.mul(s.const(M1, i64), c[2])
        c = [s.bitxor(s.bitxor(hi(p1), c[1]), s.const(k0, i64)), lo(p1),
             s.bitxor(s.bitxor(hi(p0), c[3]), s.const(k1, i64)), lo(p0)]
    return c


def _unit_from_words(words: Sequence[Any], dtype: np.dtype, s: Any = None) -> Any:
    """A uniform float in [0, 1) from the first one (float32: 24 bits) or two (float64: 53 bits) words."""
    if s is None:  # numpy on uint64 words
        if dtype == np.float32:
            return ((words[0] >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24))
        bits = ((words[0] >> np.uint64(11)) << np.uint64(32)) | words[1]
        return bits.astype(np.float64) * 2.0 ** -53
    i64 = np.dtype(np.int64)
    if dtype == np.float32:
        top = s.floordiv(words[0], s.const(256, i64))
        return s.mul(s.cast(top, dtype), s.const(2.0 ** -24, dtype))
    top = s.add(s.mul(s.floordiv(words[0], s.const(2048, i64)), s.const(_B32, i64)), words[1])
    return s.mul(s.cast(top, dtype), s.const(2.0 ** -53, dtype))


def _normal_from_words(words: Sequence[Any], dtype: np.dtype, s: Any = None) -> Any:
    """Box-Muller: sqrt(-2 log(1 - u1)) cos(2 pi u2), with u1 from words 0-1 and u2 from words 2-3."""
    u1 = _unit_from_words(words[:2], dtype, s)
    u2 = _unit_from_words(words[2:], dtype, s)
    if s is None:
        one, two, tau = dtype.type(1), dtype.type(-2), dtype.type(2 * np.pi)
        return np.sqrt(two * np.log(one - u1)) * np.cos(tau * u2)
    radius = s.sqrt(s.mul(s.const(-2.0, dtype), s.log(s.sub(s.const(1.0, dtype), u1))))
    return s.mul(radius, s.cos(s.mul(s.const(2 * np.pi, dtype), u2)))


def _linear_index(s: Any, idx: Sequence[Any], shape: Sequence[int]) -> Any:
    i64 = np.dtype(np.int64)
    lin = s.const(0, i64)
    for i, d in zip(idx, shape):
        lin = s.add(s.mul(lin, s.const(int(d), i64)), i)
    return lin


def _random_type(inputs: tuple, attrs: dict):
    counter = inputs[0]
    if counter.dtype != int64 or counter.shape != ():
        raise DTypeError(f"the run counter must be an int64 scalar, got {counter.dtype}{shape_str(counter.shape)}")
    if not is_float(attrs["dtype"]):
        raise DTypeError(f"dtype must be float32 or float64, got {attrs['dtype']}")
    shape = inputs[1].shape if len(inputs) == 2 else attrs["shape"]
    return shape, attrs["dtype"]


def _ref(kind: str):
    def ref(counter, like=None, *, shape, dtype, key):
        out_shape = np.shape(like) if like is not None else shape
        index = np.arange(int(np.prod(out_shape, dtype=np.int64)), dtype=np.uint64).reshape(out_shape)
        words = philox_words(int(counter), index, key)
        make = _unit_from_words if kind == "uniform" else _normal_from_words
        return np.asarray(make(words, np.dtype(dtype)), dtype=dtype)
    return ref


def _gather(kind: str):
    def gather(s, idx, load, node):
        run = load(0, ())
        words = _emit_words(s, run, _linear_index(s, idx, node.shape), node.attrs["key"])
        make = _unit_from_words if kind == "uniform" else _normal_from_words
        return make(words, node.dtype, s)
    return gather


_ATTRS = {"shape": "shape", "dtype": "dtype", "key": "ints"}
for _kind, _doc in (("uniform", "Philox-4x32-10 uniform floats in [0, 1) (24 or 53 random bits)"),
                    ("normal", "Philox-4x32-10 standard normal floats (Box-Muller)")):
    register(OpDef(f"random_{_kind}", OpKind.INDEX, _random_type, ref=_ref(_kind), gather=_gather(_kind),
                   shape_only=(1,), attrs=_ATTRS, arity=(1, 2),
                   doc=f"{_doc}; inputs: the run counter (int64 scalar), optionally a tensor giving the shape"))

# --- the run counter ---------------------------------------------------------------------------

_counters: weakref.WeakKeyDictionary[Graph, Tensor] = weakref.WeakKeyDictionary()
RANDOM_OPS = ("random_uniform", "random_normal")


def run_counter(graph: Graph) -> Tensor:
    """The graph's run counter: an int64 scalar variable ``random/run_count`` (not trainable)."""
    counter = _counters.get(graph)
    if counter is None:  # a graph loaded from a file has its counter among its variables
        counter = next((v for v in graph.variables if v.name == "random/run_count"), None)
    if counter is None:
        with graph.as_default(), graph.name_scope(None), graph.name_scope("random/"):
            counter = Variable(np.zeros((), np.int64), name="run_count", trainable=False)
    _counters[graph] = counter
    return counter


def counter_steps(order: Sequence[Tensor], assigns: Sequence[Tensor]) -> list[Tensor]:
    """The assignment advancing the run counter by one, for a run whose nodes (`order`) draw random
    numbers and whose `assigns` do not set the counter themselves; else nothing."""
    counters = {n.inputs[0] for n in order if n.op in RANDOM_OPS}
    assigned = {a.inputs[0] for a in assigns}
    return [assign(c, c + np.int64(1)) for c in counters - assigned]


def random_node(kind: str, shape: Any, dtype: Any, key: tuple[int, int], graph: Graph) -> Tensor:
    """A random_<kind> node: `shape` is a tuple of ints or a tensor whose (run-time) shape is used."""
    dt = as_dtype(dtype)
    counter = run_counter(graph)
    if isinstance(shape, Tensor):
        if all(d is not None for d in shape.shape):
            return graph.make(f"random_{kind}", (counter,), {"shape": shape.shape, "dtype": dt, "key": key})
        return graph.make(f"random_{kind}", (counter, shape), {"shape": (), "dtype": dt, "key": key})
    dims = as_shape(shape, f"random.{kind}: shape")  # a float dim is refused, never truncated
    if any(d < 0 for d in dims):
        raise ShapeError(f"random.{kind}: shape {dims} has a negative dim")
    return graph.make(f"random_{kind}", (counter,), {"shape": dims, "dtype": dt, "key": key})
