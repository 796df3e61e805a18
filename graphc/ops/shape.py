"""Shape ops: each output element is one input element read at a computed index."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ..dtypes import (
    as_dim,
    as_dtype,
    as_shape,
    broadcast_shapes,
    int64,
    is_int,
    is_static,
    normalize_axes,
    num_elements,
    shape_str,
)
from ..errors import DTypeError, GraphcError, ShapeError, user_location
from ..ir.graph import Tensor
from ..passes.sizing import unit_dim
from .core import as_tensor, constant, graph_of, promote, to_array
from .registry import OpDef, get_op, register

__all__ = ["broadcast_to", "concatenate", "expand_dims", "gather", "one_hot", "pad", "reshape", "split", "squeeze",
           "stack", "take", "take_along_axis", "transpose"]


def linear_index(s: Any, idx: tuple, shape: tuple) -> Any:
    """Row-major linear offset of `idx` in `shape`, as an int64 scalar value."""
    acc = s.const(0, int64)
    for i, d in zip(idx, shape):
        acc = s.add(s.mul(acc, s.const(d, int64)), i)
    return acc


def unravel_index(s: Any, lin: Any, shape: tuple) -> tuple:
    """Inverse of linear_index."""
    out = []
    for d in reversed(shape):
        out.append(s.mod(lin, s.const(d, int64)))
        lin = s.floordiv(lin, s.const(d, int64))
    return tuple(reversed(out))


def broadcast_index(s: Any, idx: tuple, in_shape: tuple) -> tuple:
    """The index into an operand of shape in_shape that broadcasts to idx's shape."""
    lead = len(idx) - len(in_shape)
    return tuple(s.const(0, int64) if unit_dim(d) else idx[lead + k] for k, d in enumerate(in_shape))


# --- broadcast_to / broadcast_like ---------------------------------------------------------

def _broadcast_to_type(inputs: tuple, attrs: dict):
    x, shape = inputs[0], attrs["shape"]
    if len(shape) < x.ndim or broadcast_shapes(x.shape, shape) != tuple(shape):
        raise ShapeError(f"cannot broadcast {shape_str(x.shape)} to {shape_str(shape)}")
    return shape, x.dtype


def _broadcast_like_type(inputs: tuple, attrs: dict):
    x, like = inputs
    out = broadcast_shapes(x.shape, like.shape) if x.ndim <= like.ndim else None
    if out is None or any(d is not None and d != o for d, o in zip(like.shape, out)):
        raise ShapeError(f"cannot broadcast {shape_str(x.shape)} to {shape_str(like.shape)}")
    return out, x.dtype  # a known dim of x fills an unknown dim of like (checked once bound)


def _broadcast_gather(s, idx, load, node):
    return load(0, broadcast_index(s, idx, node.inputs[0].shape))


register(OpDef(
    "broadcast_to", "index", _broadcast_to_type, carries=0, attrs={"shape": "shape"},
    ref=lambda x, *, shape: np.broadcast_to(x, shape).copy(),
    gather=_broadcast_gather,
    vjp=lambda g, out, x, *, shape: (g,),  # autodiff sums g back to x's shape
    jvp=lambda t, out, x, *, shape: broadcast_to(t[0], shape),
    doc="x repeated along size-1 and new leading axes to `shape`"))


def _to_shape(op: str, x: Any, shape: Any) -> Tensor:
    """x through index op `op` to the static `shape` (x itself when it has that shape already)."""
    (t,) = promote(x)
    shape = as_shape(shape, f"{op} shape")
    return t if t.shape == shape else t.graph.make(op, (t,), {"shape": shape})


def broadcast_to(x: Any, shape: Any) -> Tensor:
    """x broadcast to `shape` (numpy.broadcast_to)."""
    return _to_shape("broadcast_to", x, shape)


def broadcast_like(x: Tensor, like: Tensor) -> Tensor:
    """x broadcast to like's shape; a static broadcast_to when that shape is known."""
    if x.shape == like.shape:
        return x
    if is_static(like.shape):
        return broadcast_to(x, like.shape)
    return x.graph.make("broadcast_like", (x, like))


def _register_like(base: str, name: str, infer: Any, make: Any, doc: str) -> None:
    """Declare `name`, the twin of index op `base` whose target shape is the shape of a second
    operand `like` (read for its shape only, so it may be unknown until run time): `base`'s
    gather, facts, reference and VJP; its JVP applies `make` (the public builder) again."""
    op = get_op(base)
    register(OpDef(
        name, "index", infer, shape_only=(1,), carries=op.carries, row_major=op.row_major,
        ref=lambda x, like: op.ref(x, shape=like.shape),
        gather=op.gather,
        vjp=lambda g, out, x, like: (*op.vjp(g, out, x, shape=like.shape), None),
        jvp=lambda t, out, x, like: None if t[0] is None else make(t[0], like),
        doc=doc))


_register_like("broadcast_to", "broadcast_like", _broadcast_like_type, broadcast_like,
               "x broadcast to the shape of `like` (whose data is not read)")


def filled_like(x: Tensor, value: int, dtype: Any = None) -> Tensor:
    """`value` shaped like x (dims unknown until run time included), of x's dtype unless given."""
    if not isinstance(x, Tensor):
        raise GraphcError(f"expected a graphc tensor, got {type(x).__name__}")
    dt = x.dtype if dtype is None else as_dtype(dtype)
    return broadcast_like(constant(value, dt, graph=graph_of(x)), x)


# --- reshape --------------------------------------------------------------------------------

def _reshape_type(inputs: tuple, attrs: dict):
    x, shape = inputs[0], attrs["shape"]
    if sum(d == -1 for d in shape) > 1 or any(d < -1 for d in shape):
        raise ShapeError(f"bad target shape {shape}: dims must be >= 0 with at most one -1")
    n = num_elements(x.shape)
    known = math.prod(d for d in shape if d != -1)  # Python ints: numpy's int64 product wraps
    if -1 in shape:
        if n is None:
            return tuple(None if d == -1 else d for d in shape), x.dtype
        if known == 0 or n % known:
            raise ShapeError(f"cannot reshape {n} elements into {shape}")
        return tuple(n // known if d == -1 else d for d in shape), x.dtype
    if n is not None and n != known:
        raise ShapeError(f"cannot reshape {n} elements into {shape_str(shape)}")
    return shape, x.dtype


def _reshape_gather(s, idx, load, node):
    return load(0, unravel_index(s, linear_index(s, idx, node.shape), node.inputs[0].shape))


def _reshape_like_type(inputs: tuple, attrs: dict):
    x, like = inputs
    if _as_minus_one(like.shape) is not None:
        return _reshape_type(inputs[:1], {"shape": _as_minus_one(like.shape)})
    n, known = num_elements(x.shape), math.prod(d for d in like.shape if d is not None)
    if n is not None and (n % known if known else n):  # unknown dims: checked again once bound
        raise ShapeError(f"cannot reshape {n} elements into {shape_str(like.shape)}")
    return like.shape, x.dtype


register(OpDef(
    "reshape", "index", _reshape_type, carries=0, row_major=True, attrs={"shape": "ints"},
    ref=lambda x, *, shape: np.reshape(x, shape).copy(),
    gather=_reshape_gather,
    vjp=lambda g, out, x, *, shape: (reshape_like(g, x),),
    jvp=lambda t, out, x, *, shape: reshape(t[0], shape),
    doc="x's elements in row-major order, in a new shape (one dim may be -1)"))


def reshape(x: Any, shape: Any) -> Tensor:
    """numpy.reshape; one dim may be -1."""
    return _to_shape("reshape", x, shape)


def _as_minus_one(shape: tuple) -> tuple | None:
    """shape as a reshape target with -1 for its unknown dim; None if -1 cannot express it.

    That is when several dims are unknown, or one is and the known dims hold 0 elements.
    """
    unknown = sum(d is None for d in shape)
    if unknown > 1 or (unknown and not math.prod(d for d in shape if d is not None)):
        return None
    return tuple(-1 if d is None else d for d in shape)


def reshape_like(x: Tensor, like: Tensor) -> Tensor:
    """x reshaped to like's shape; a static reshape when -1 can stand for its unknown dim."""
    if x.shape == like.shape and is_static(x.shape):
        return x
    target = _as_minus_one(like.shape)
    if target is not None:
        return reshape(x, target)
    return x.graph.make("reshape_like", (x, like))


_register_like("reshape", "reshape_like", _reshape_like_type, reshape_like,
               "x reshaped to the shape of `like` (whose data is not read)")


# --- expand_dims --------------------------------------------------------------------------

def _canon_expand_axes(inputs: tuple, attrs: dict) -> dict:
    axis = attrs["axis"]
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    ndim = inputs[0].ndim + len(axes)
    attrs["axis"] = normalize_axes(axes, ndim)
    return attrs


def _expand_dims_type(inputs: tuple, attrs: dict):
    rest = iter(inputs[0].shape)
    ndim = inputs[0].ndim + len(attrs["axis"])
    return tuple(1 if i in attrs["axis"] else next(rest) for i in range(ndim)), inputs[0].dtype


register(OpDef(
    "expand_dims", "index", _expand_dims_type, canon=_canon_expand_axes, carries=0, attrs={"axis": "ints"},
    ref=lambda x, *, axis: np.expand_dims(x, axis).copy(),
    gather=lambda s, idx, load, node: load(0, tuple(i for k, i in enumerate(idx) if k not in node.attrs["axis"])),
    vjp=lambda g, out, x, *, axis: (squeeze(g, axis),),
    jvp=lambda t, out, x, *, axis: expand_dims(t[0], axis),
    doc="x with new size-1 axes inserted at `axis` (positions in the result)"))


def expand_dims(x: Any, axis: Any) -> Tensor:
    """numpy.expand_dims (axis an int or tuple, positions in the result)."""
    (t,) = promote(x)
    return t.graph.make("expand_dims", (t,), {"axis": axis})


def expand_reduced(g: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """Re-insert reduced axes as size-1 dims (undo keepdims=False)."""
    if keepdims or not axes:
        return g
    return expand_dims(g, axes)


# --- transpose ------------------------------------------------------------------------------

def _canon_perm(inputs: tuple, attrs: dict) -> dict:
    ndim = inputs[0].ndim
    perm = attrs.get("perm")
    perm = tuple(reversed(range(ndim))) if perm is None else tuple(as_dim(p, 'perm') % max(ndim, 1) for p in perm)
    if sorted(perm) != list(range(ndim)):
        raise ShapeError(f"perm {attrs.get('perm')} is not a permutation of {ndim} axes")
    attrs["perm"] = perm
    return attrs


def _transpose_type(inputs: tuple, attrs: dict):
    return tuple(inputs[0].shape[p] for p in attrs["perm"]), inputs[0].dtype


def _transpose_gather(s, idx, load, node):
    src = [None] * len(idx)
    for out_axis, in_axis in enumerate(node.attrs["perm"]):
        src[in_axis] = idx[out_axis]
    return load(0, tuple(src))


register(OpDef(
    "transpose", "index", _transpose_type, canon=_canon_perm, attrs={"perm": "ints"},
    ref=lambda x, *, perm: np.transpose(x, perm).copy(),
    gather=_transpose_gather,
    vjp=lambda g, out, x, *, perm: (transpose(g, tuple(np.argsort(perm))),),
    jvp=lambda t, out, x, *, perm: transpose(t[0], perm),
    doc="x with axes permuted (perm=None reverses them)"))


def transpose(x: Any, perm: Any = None) -> Tensor:
    """numpy.transpose."""
    (t,) = promote(x)
    return t.graph.make("transpose", (t,), {"perm": perm})


def matrix_transpose(x: Tensor) -> Tensor:
    """Swap the last two axes."""
    perm = list(range(x.ndim))
    perm[-2:] = perm[-1], perm[-2]
    return transpose(x, perm)


# --- helpers shared by the index ops below ----------------------------------------------------

def _fail(cls: type, msg: str) -> GraphcError:
    """An error raised from a composite function, naming the user's line like the registry does."""
    return cls(f"{msg}\n  at {user_location()}")


def _i(s: Any, value: int) -> Any:
    return s.const(int(value), int64)


def _clamp(s: Any, v: Any, hi: int) -> Any:
    """v clamped to [0, hi] (an index that is safe to load)."""
    return s.minimum(s.maximum(v, _i(s, 0)), _i(s, hi))


def _merge_dims(dims: list, what: str) -> int | None:
    """The common value of dims that must agree (None = unknown); ShapeError if two known dims differ."""
    known = {d for d in dims if d is not None}
    if len(known) > 1:
        raise ShapeError(f"{what} differ: {sorted(known)}")
    return known.pop() if known else None


def _axis(axis: Any, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ShapeError(f"axis must be an int, got {axis!r}")
    return normalize_axes(int(axis), ndim)[0]


# --- strided slice (the primitive behind x[key]) and its adjoint ------------------------------
# A slice spec has one entry per input axis: an int (the axis keeps size 1, at that index) or a
# (start, stop, step) triple with Python slice semantics. Known dims get a canonical entry.

def _resolve(entry: Any, n: int) -> tuple[int, int, int]:
    """(first index, step, count) of one spec entry on an axis of size n."""
    if isinstance(entry, int):
        return (entry + n if entry < 0 else entry), 1, 1
    start, stop, step = slice(*entry).indices(n)
    return start, step, len(range(start, stop, step))


def _canon_entry(entry: Any, n: int | None, axis: int) -> Any:
    if isinstance(entry, int):
        if n is not None and not -n <= entry < n:
            raise ShapeError(f"index {entry} is out of range for axis {axis} with size {n}")
        return entry % n if n else entry
    start, stop, step = entry
    if step == 0:
        raise ShapeError("slice step cannot be zero")
    if n is None:
        return (None, None, 1) if (start, stop, step) == (0, None, 1) else (start, stop, step)
    first, step, count = _resolve(entry, n)
    if count == 0:
        return (0, 0, 1)
    stop = first + (count - 1) * step + (1 if step > 0 else -1)
    return (first, None if stop < 0 else stop, step)


def _canon_spec(inputs: tuple, attrs: dict) -> dict:
    shape = inputs[-1].shape  # slice(x): x; unslice(g, x): x
    spec = attrs["spec"]
    if len(spec) != len(shape):
        raise ShapeError(f"slice spec {spec} has {len(spec)} entries for rank {len(shape)}")
    attrs["spec"] = tuple(_canon_entry(e, n, k) for k, (e, n) in enumerate(zip(spec, shape)))
    return attrs


def _sliced_shape(shape: tuple, spec: tuple) -> tuple:
    return tuple(None if n is None else _resolve(e, n)[2] for e, n in zip(spec, shape))


def _is_full(entry: Any, n: int | None) -> bool:
    return entry == (None, None, 1) or (n is not None and entry == (0, n, 1))


def _slice_gather(s, idx, load, node):
    src = []
    for i, e, n in zip(idx, node.attrs["spec"], node.inputs[0].shape):
        first, step, _ = _resolve(e, n)
        if isinstance(e, int):
            src.append(_i(s, first))
        else:
            stepped = i if step == 1 else s.mul(i, _i(s, step))
            src.append(stepped if first == 0 else s.add(_i(s, first), stepped))
    return load(0, tuple(src))


def _unslice_type(inputs: tuple, attrs: dict):
    g, x = inputs
    want = _sliced_shape(x.shape, attrs["spec"])
    if len(g.shape) != len(want):
        raise ShapeError(f"cotangent rank {len(g.shape)} differs from the slice's rank {len(want)}")
    for k, (a, b) in enumerate(zip(g.shape, want)):
        _merge_dims([a, b], f"axis {k} sizes of the cotangent and the slice")
    return x.shape, g.dtype


def _unslice_gather(s, idx, load, node):
    zero = s.const(0, node.dtype)
    src, hit = [], None
    for c, e, n in zip(idx, node.attrs["spec"], node.shape):
        first, step, count = _resolve(e, n)
        if count == 0:
            return zero  # nothing was sliced: all zeros (and nothing may be loaded)
        if isinstance(e, int):
            ok, j = s.cmp("eq", c, _i(s, first)), _i(s, 0)
        else:  # c hits the slice when c = first + j*step with 0 <= j < count
            d = s.sub(c, _i(s, first)) if step > 0 else s.sub(_i(s, first), c)
            st = abs(step)
            j = s.floordiv(d, _i(s, st)) if st != 1 else d
            ok = s.and_(s.cmp("ge", d, _i(s, 0)), s.cmp("lt", j, _i(s, count)))
            if st != 1:
                ok = s.and_(ok, s.cmp("eq", s.mod(d, _i(s, st)), _i(s, 0)))
            j = _clamp(s, j, count - 1)
        src.append(j)
        hit = ok if hit is None else s.and_(hit, ok)
    value = load(0, tuple(src))
    return value if hit is None else s.select(hit, value, zero)


def _np_key(spec: tuple) -> tuple:
    """The numpy basic index of a spec (int entries keep their axis)."""
    return tuple(slice(e, e + 1 or None) if isinstance(e, int) else slice(*e) for e in spec)


def _unslice_ref(g: np.ndarray, x: np.ndarray, *, spec: tuple) -> np.ndarray:
    out = np.zeros(x.shape, g.dtype)
    out[_np_key(spec)] = g
    return out


register(OpDef(
    "slice", "index", lambda inputs, attrs: (_sliced_shape(inputs[0].shape, attrs["spec"]), inputs[0].dtype),
    canon=_canon_spec, attrs={"spec": "slice"},
    ref=lambda x, *, spec: x[_np_key(spec)].copy(),
    gather=_slice_gather,
    vjp=lambda g, out, x, *, spec: (unslice(g, x, spec),),
    jvp=lambda t, out, x, *, spec: strided_slice(t[0], spec),
    doc="strided slice: per axis an index (kept as a size-1 axis) or a (start, stop, step) triple"))

register(OpDef(
    "unslice", "index", _unslice_type, canon=_canon_spec, shape_only=(1,), attrs={"spec": "slice"},
    ref=_unslice_ref,
    gather=_unslice_gather,
    vjp=lambda g, out, gin, x, *, spec: (strided_slice(g, spec), None),
    jvp=lambda t, out, gin, x, *, spec: None if t[0] is None else unslice(t[0], x, spec),
    doc="adjoint of slice: g placed at the sliced positions of zeros shaped like x"))


def _takes_all(spec: tuple, x: Tensor) -> bool:
    """Whether every entry of spec takes its whole axis of x (the slice is the identity)."""
    try:
        spec = _canon_spec((x,), {"spec": tuple(spec)})["spec"]
    except ShapeError:
        return False  # a bad spec: Graph.make reports it with the op and the user's line
    return all(_is_full(e, n) for e, n in zip(spec, x.shape))


def strided_slice(x: Tensor, spec: tuple) -> Tensor:
    """The slice primitive (x unchanged when every entry takes a whole axis)."""
    return x if _takes_all(spec, x) else x.graph.make("slice", (x,), {"spec": tuple(spec)})


def unslice(g: Tensor, x: Tensor, spec: tuple) -> Tensor:
    """Zeros shaped like x with g at the positions `strided_slice(x, spec)` reads."""
    return g if _takes_all(spec, x) else g.graph.make("unslice", (g, x), {"spec": tuple(spec)})


# --- x[key] -------------------------------------------------------------------------------------

def _slice_entry(key: slice) -> tuple:
    try:
        step = 1 if key.step is None else operator.index(key.step)
        return tuple(None if v is None else operator.index(v) for v in (key.start, key.stop)) + (step,)
    except TypeError:
        raise _fail(GraphcError, f"slice bounds must be Python ints or None, got {key!r}") from None


def _is_array_index(key: Any) -> bool:
    return isinstance(key, (Tensor, list, np.ndarray)) and not isinstance(key, np.generic)


def getitem(x: Any, key: Any) -> Tensor:
    """numpy basic indexing: ints (negative too), slices with any step, None, Ellipsis.

    One integer tensor/array index among slices, ints, None and Ellipsis is also accepted
    (it is `take` along that axis; as in numpy, its dims go first when ints and the array
    are not adjacent, as in ``x[3, 2:, [1, 3]]``); boolean masks and several array
    indices are not.
    """
    (t,) = promote(x)
    items = list(key) if isinstance(key, tuple) else [key]
    arrays = [k for k, v in enumerate(items) if _is_array_index(v)]
    if arrays:
        if len(arrays) > 1:
            raise _fail(GraphcError, "indexing with several arrays is not supported; use gc.take")
        index = items[arrays[0]]
        items[arrays[0]] = slice(None)
        ints = [k for k, v in enumerate(items) if isinstance(v, (int, np.integer))]
        pos = sum(1 for v in items[:arrays[0]] if v is not Ellipsis and not isinstance(v, (int, np.integer)))
        if Ellipsis in items[:arrays[0]]:
            pos += t.ndim - sum(1 for v in items if v is not None and v is not Ellipsis)
        rest = getitem(t, tuple(items))
        out = take(rest, index, axis=pos)
        advanced = sorted([*ints, arrays[0]])
        if advanced == list(range(advanced[0], advanced[-1] + 1)):
            return out
        r = out.ndim - rest.ndim + 1  # the index's dims, placed first by numpy's rule
        dims = list(range(pos, pos + r))
        return transpose(out, dims + [d for d in range(out.ndim) if d not in dims])
    if sum(v is Ellipsis for v in items) > 1:
        raise _fail(ShapeError, "an index can only have a single ellipsis ('...')")
    used = sum(1 for v in items if v is not None and v is not Ellipsis)
    if used > t.ndim:
        raise _fail(ShapeError, f"too many indices for a tensor of rank {t.ndim}: {used} given")
    fill = [slice(None)] * (t.ndim - used)
    if Ellipsis in items:
        k = items.index(Ellipsis)
        items[k:k + 1] = fill
    else:
        items += fill
    spec, dropped, new_axes, out_pos = [], [], [], 0
    for v in items:
        if v is None:
            new_axes.append(out_pos)
            out_pos += 1
        elif isinstance(v, slice):
            spec.append(_slice_entry(v))
            out_pos += 1
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            dropped.append(len(spec))
            spec.append(int(v))
        else:
            raise _fail(GraphcError, f"unsupported index {v!r}: use ints, slices, None, Ellipsis or one int array")
    out = squeeze(strided_slice(t, tuple(spec)), tuple(dropped)) if dropped else strided_slice(t, tuple(spec))
    return expand_dims(out, tuple(new_axes)) if new_axes else out


# --- squeeze --------------------------------------------------------------------------------------

def _canon_squeeze(inputs: tuple, attrs: dict) -> dict:
    shape, axis = inputs[0].shape, attrs["axis"]
    if axis is None:  # the dims known to be 1 (a dim unknown now is kept, as in TensorFlow)
        attrs["axis"] = tuple(k for k, d in enumerate(shape) if d == 1)
    else:
        attrs["axis"] = normalize_axes(axis, len(shape))
    return attrs


def _squeeze_type(inputs: tuple, attrs: dict):
    shape = inputs[0].shape
    for k in attrs["axis"]:
        if shape[k] not in (1, None):
            raise ShapeError(f"cannot squeeze axis {k} of size {shape[k]}")
    return tuple(d for k, d in enumerate(shape) if k not in attrs["axis"]), inputs[0].dtype


def _squeeze_gather(s, idx, load, node):
    rest = iter(idx)
    return load(0, tuple(_i(s, 0) if k in node.attrs["axis"] else next(rest) for k in range(node.inputs[0].ndim)))


register(OpDef(
    "squeeze", "index", _squeeze_type, canon=_canon_squeeze, attrs={"axis": "ints"},
    ref=lambda x, *, axis: np.squeeze(x, axis).copy(),
    gather=_squeeze_gather,
    vjp=lambda g, out, x, *, axis: (expand_dims(g, axis),),
    jvp=lambda t, out, x, *, axis: squeeze(t[0], axis),
    doc="x without the size-1 axes `axis`"))


def squeeze(x: Any, axis: Any = None) -> Tensor:
    """numpy.squeeze; with axis=None only dims known to be 1 when building are removed."""
    (t,) = promote(x)
    if (axis is None and 1 not in t.shape) or axis == ():
        return t
    return t.graph.make("squeeze", (t,), {"axis": axis})


# --- concatenate / stack / split ------------------------------------------------------------

def _canon_axis(inputs: tuple, attrs: dict) -> dict:
    attrs["axis"] = _axis(attrs["axis"], inputs[0].ndim)
    return attrs


def _canon_concat(inputs: tuple, attrs: dict) -> dict:
    if inputs[0].ndim == 0:
        raise ShapeError("zero-dimensional tensors cannot be concatenated")
    return _canon_axis(inputs, attrs)


def _concat_type(inputs: tuple, attrs: dict):
    axis, ndim = attrs["axis"], inputs[0].ndim
    if any(t.ndim != ndim for t in inputs):
        raise ShapeError("all inputs must have the same rank, got " + ", ".join(shape_str(t.shape) for t in inputs))
    if len({t.dtype for t in inputs}) != 1:
        raise DTypeError("inputs must have one dtype")
    sizes = [t.shape[axis] for t in inputs]
    shape = [(None if None in sizes else sum(sizes)) if k == axis else
             _merge_dims([t.shape[k] for t in inputs], f"sizes on axis {k}") for k in range(ndim)]
    return tuple(shape), inputs[0].dtype


def _concat_gather(s, idx, load, node):
    axis = node.attrs["axis"]
    parts, off = [], 0
    for k, t in enumerate(node.inputs):
        n = t.shape[axis]
        if n:  # empty inputs contribute nothing and must not be loaded
            local = list(idx)
            local[axis] = _clamp(s, s.sub(idx[axis], _i(s, off)), n - 1)
            parts.append((off, load(k, tuple(local))))
        off += n
    if not parts:
        return s.const(0, node.dtype)  # the output is empty too
    value = parts[-1][1]
    for (_, v), (nxt, _) in zip(reversed(parts[:-1]), reversed(parts[1:])):
        value = s.select(s.cmp("lt", idx[axis], _i(s, nxt)), v, value)
    return value


def _concat_vjp(g, out, *xs, axis):
    """Slices of g; where an offset is unknown while building, g is split part by part."""
    grads, off = [], 0
    for k, x in enumerate(xs):
        n, last = x.shape[axis], k == len(xs) - 1
        if off is not None and (n is not None or last):
            spec = [(None, None, 1)] * g.ndim
            spec[axis] = (off, None if last else off + n, 1)
            grads.append(strided_slice(g, tuple(spec)))
        else:
            rest = g
            for before in xs[:k]:
                rest = split_like(rest, before, axis, head=False)
            grads.append(rest if last else split_like(rest, x, axis, head=True))
        off = None if off is None or n is None else off + n
    return tuple(grads)


def _concat_jvp(tangents, out, *xs, axis):
    if all(t is None for t in tangents):
        return None
    return concatenate([filled_like(x, 0, out.dtype) if t is None else t for t, x in zip(tangents, xs)], axis)


register(OpDef(
    "concatenate", "index", _concat_type, canon=_canon_concat, attrs={"axis": "int"}, arity=(1, None),
    ref=lambda *xs, axis: np.concatenate(xs, axis),
    gather=_concat_gather, vjp=_concat_vjp, jvp=_concat_jvp,
    doc="inputs joined along an existing axis"))


def _split_like_type(inputs: tuple, attrs: dict):
    g, like = inputs
    axis = attrs["axis"]
    if like.ndim != g.ndim:
        raise ShapeError(f"like has rank {like.ndim}, the split tensor {g.ndim}")
    n, m = g.shape[axis], like.shape[axis]
    if n is not None and m is not None and m > n:
        raise ShapeError(f"cannot split {m} elements off an axis of size {n}")
    shape = list(g.shape)
    shape[axis] = m if attrs["head"] else (None if n is None or m is None else n - m)
    return tuple(shape), g.dtype


def _split_like_gather(s, idx, load, node):
    axis = node.attrs["axis"]
    if node.attrs["head"]:
        return load(0, tuple(idx))
    src = list(idx)
    src[axis] = s.add(idx[axis], _i(s, node.inputs[1].shape[axis]))
    return load(0, tuple(src))


def _split_like_ref(g: np.ndarray, like: np.ndarray, *, axis: int, head: bool) -> np.ndarray:
    m = like.shape[axis]
    key = (slice(None),) * axis + (slice(None, m) if head else slice(m, None),)
    return g[key].copy()


def _split_like_vjp(g, out, whole, like, *, axis, head):
    other = filled_like(split_like(whole, like, axis, not head), 0, g.dtype)
    return concatenate([g, other] if head else [other, g], axis), None


register(OpDef(
    "split_like", "index", _split_like_type, canon=_canon_axis, shape_only=(1,),
    attrs={"axis": "int", "head": "bool"},
    ref=_split_like_ref, gather=_split_like_gather, vjp=_split_like_vjp,
    jvp=lambda t, out, whole, like, *, axis, head: None if t[0] is None else split_like(t[0], like, axis, head),
    doc="the first like.shape[axis] entries of x along axis (head) or the rest (tail)"))


def split_like(x: Tensor, like: Tensor, axis: int, head: bool) -> Tensor:
    """x split along `axis` after like.shape[axis] entries: the head or the tail part.

    Gradients of concatenate use it when a part's offset is not known while building.
    """
    return x.graph.make("split_like", (x, like), {"axis": axis, "head": bool(head)})


def concatenate(tensors: Any, axis: int | None = 0) -> Tensor:
    """numpy.concatenate (axis=None flattens the inputs first); dtypes promote as in numpy."""
    if isinstance(tensors, Tensor) or not len(tensors):
        raise _fail(GraphcError, "concatenate needs a non-empty list of tensors")
    ts = promote(*tensors)
    if axis is None:
        ts = tuple(reshape(t, -1) for t in ts)
        axis = 0
    return ts[0].graph.make("concatenate", ts, {"axis": axis})


def stack(tensors: Any, axis: int = 0) -> Tensor:
    """numpy.stack: inputs of one shape joined along a new axis."""
    if isinstance(tensors, Tensor) or not len(tensors):
        raise _fail(GraphcError, "stack needs a non-empty list of tensors")
    ts = promote(*tensors)
    try:
        if len({t.ndim for t in ts}) > 1:
            raise ShapeError("ranks differ")
        for k in range(ts[0].ndim):
            _merge_dims([t.shape[k] for t in ts], "shapes")
    except ShapeError:
        raise _fail(ShapeError, "stack: all inputs must have the same shape, got "
                    + ", ".join(shape_str(t.shape) for t in ts)) from None
    try:
        axis = normalize_axes(axis, ts[0].ndim + 1)[0]
    except ShapeError as exc:
        raise _fail(ShapeError, f"stack: {exc}") from None
    return concatenate([expand_dims(t, axis) for t in ts], axis)


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """numpy.split: a list of slices of x along `axis`.

    An int splits into that many equal parts (the dim must be known and divisible);
    a sequence gives the split points, with slicing semantics.
    """
    (t,) = promote(x)
    try:
        axis = normalize_axes(axis, t.ndim)[0]
    except ShapeError as exc:
        raise _fail(ShapeError, f"split: {exc}") from None
    n = t.shape[axis]
    if not (isinstance(indices_or_sections, (tuple, list, range)) or np.ndim(indices_or_sections)):
        parts = as_dim(indices_or_sections, "split: number of sections")
        if parts <= 0:
            raise _fail(ShapeError, f"split: number of sections must be positive, got {parts}")
        if n is None:
            raise _fail(ShapeError, f"split into {parts} sections needs a known size on axis {axis}")
        if n % parts:
            raise _fail(ShapeError, f"split: {n} elements on axis {axis} do not divide into {parts} equal parts")
        bounds = [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]
    else:
        points = [operator.index(p) for p in indices_or_sections]
        bounds = list(zip([0] + points, points + [None]))
    lead = (slice(None),) * axis
    return [getitem(t, lead + (slice(a, b),)) for a, b in bounds]


# --- take ----------------------------------------------------------------------------------------

def _take_type(inputs: tuple, attrs: dict):
    x, ind = inputs
    axis = attrs["axis"]
    if not is_int(ind.dtype):
        raise DTypeError(f"indices must be integers, got {ind.dtype}")
    if x.shape[axis] == 0 and num_elements(ind.shape) not in (0, None):
        raise ShapeError(f"cannot take from axis {axis} of size 0")
    return x.shape[:axis] + ind.shape + x.shape[axis + 1:], x.dtype


def _check_indices(op: str, ind: np.ndarray, n: int, axis: int) -> None:
    """The reference backend's bounds check of gather indices (compiled code clamps instead)."""
    bad = ind[(ind < -n) | (ind >= n)]
    if bad.size:
        raise GraphcError(f"{op}: index {bad.flat[0]} is out of range for axis {axis} with size {n} "
                          "(compiled code clamps it instead)")


def _take_ref(x: np.ndarray, ind: np.ndarray, *, axis: int) -> np.ndarray:
    _check_indices("take", ind, x.shape[axis], axis)
    return np.take(x, ind, axis=axis)


def _take_gather(s, idx, load, node):
    x, ind = node.inputs
    axis, k = node.attrs["axis"], ind.ndim
    n = x.shape[axis]
    v = s.cast(load(1, tuple(idx[axis:axis + k])), int64)
    v = s.select(s.cmp("lt", v, _i(s, 0)), s.add(v, _i(s, n)), v)
    return load(0, tuple(idx[:axis]) + (_clamp(s, v, n - 1),) + tuple(idx[axis + k:]))


def _take_vjp(g, out, x, ind, *, axis):
    """g scattered back onto x through a one-hot contraction: O(n * m) for n = x.shape[axis], m = ind.size."""
    n, k = x.shape[axis], ind.ndim
    rest = x.shape[axis + 1:]
    q = num_elements(rest)
    if axis == 0 and n and q:  # the common embedding lookup: one GEMM
        oh = _take_one_hot(ind, x, axis, g.dtype, 0)  # (n, *ind.shape)
        return reshape_like(reshape(oh, (n, -1)) @ reshape(g, (-1, q)), x), None
    oh = _take_one_hot(ind, x, axis, g.dtype, -1)
    oh = expand_dims(oh, tuple(range(k + 1, k + 1 + len(rest)))) if rest else oh  # (*ind, n, 1...)
    prod = expand_dims(g, axis + k) * oh  # (*pre, *ind, n, *rest)
    return (prod.sum(axis=tuple(range(axis, axis + k))) if k else prod), None


register(OpDef(
    "take", "index", _take_type, canon=_canon_axis, attrs={"axis": "int"}, speculatable=False,
    ref=_take_ref, gather=_take_gather, vjp=_take_vjp,
    jvp=lambda t, out, x, ind, *, axis: None if t[0] is None else take(t[0], ind, axis),
    doc="x gathered along `axis` at integer indices (compiled code clamps out-of-range indices)"))


def gather(x: Any, indices: Any, axis: int = 0) -> Tensor:
    """tf.gather: slices of x along `axis` (default 0) at `indices`; `take` with TF's default axis."""
    return take(x, indices, axis)


def take(x: Any, indices: Any, axis: int | None = None) -> Tensor:
    """numpy.take: elements of x along `axis` (None: of flattened x) at `indices` of any rank.

    Negative indices count from the end. The numpy reference raises GraphcError on an
    out-of-range index; compiled code does not check and clamps it into range instead.
    """
    (t,) = promote(x)
    ind = indices if isinstance(indices, Tensor) else as_tensor(to_array(indices), graph=t.graph)
    if axis is None:
        t, axis = reshape(t, -1), 0
    return t.graph.make("take", (t, ind), {"axis": axis})


# --- take_along_axis ----------------------------------------------------------------------------

def _along_type(inputs: tuple, attrs: dict):
    x, ind = inputs
    axis = attrs["axis"]
    if not is_int(ind.dtype):
        raise DTypeError(f"indices must be integers, got {ind.dtype}")
    if ind.ndim != x.ndim:
        raise ShapeError(f"indices and x must have the same rank, got {ind.ndim} and {x.ndim}")
    if x.shape[axis] == 0 and num_elements(ind.shape) not in (0, None):
        raise ShapeError(f"cannot take from axis {axis} of size 0")
    try:
        rest = broadcast_shapes(tuple(1 if k == axis else d for k, d in enumerate(x.shape)),
                                tuple(1 if k == axis else d for k, d in enumerate(ind.shape)))
    except ShapeError:
        raise ShapeError(f"shapes {shape_str(x.shape)} and {shape_str(ind.shape)} do not broadcast "
                         f"outside axis {axis}") from None
    return rest[:axis] + (ind.shape[axis],) + rest[axis + 1:], x.dtype


def _along_ref(x: np.ndarray, ind: np.ndarray, *, axis: int) -> np.ndarray:
    n = x.shape[axis]
    _check_indices("take_along_axis", ind, n, axis)
    shape = np.broadcast_shapes(x.shape[:axis] + (1,) + x.shape[axis + 1:],
                                ind.shape[:axis] + (1,) + ind.shape[axis + 1:])
    x = np.broadcast_to(x, shape[:axis] + (n,) + shape[axis + 1:])
    ind = np.broadcast_to(ind, shape[:axis] + (ind.shape[axis],) + shape[axis + 1:])
    return np.take_along_axis(x, ind, axis)


def _along_gather(s, idx, load, node):
    x, ind = node.inputs
    axis = node.attrs["axis"]
    n = x.shape[axis]
    v = s.cast(load(1, broadcast_index(s, idx, ind.shape)), int64)
    v = _clamp(s, s.select(s.cmp("lt", v, _i(s, 0)), s.add(v, _i(s, n)), v), n - 1)
    src = broadcast_index(s, idx, x.shape)
    return load(0, src[:axis] + (v,) + src[axis + 1:])


def _along_vjp(g, out, x, ind, *, axis):
    """g scattered back onto x's `axis` by a one-hot contraction: O(n m), n = x.shape[axis], m = ind.shape[axis]."""
    oh = _take_one_hot(ind, x, axis, g.dtype, axis + 1)  # (..., m, n, ...)
    return (expand_dims(g, axis + 1) * oh).sum(axis=axis), None


register(OpDef(
    "take_along_axis", "index", _along_type, canon=_canon_axis, attrs={"axis": "int"}, speculatable=False,
    ref=_along_ref, gather=_along_gather, vjp=_along_vjp,
    jvp=lambda t, out, x, ind, *, axis: None if t[0] is None else take_along_axis(t[0], ind, axis),
    doc="x read along `axis` at integer indices of x's rank (numpy.take_along_axis; other dims broadcast; "
        "compiled code clamps out-of-range indices)"))


def take_along_axis(arr: Any, indices: Any, axis: int | None = -1) -> Tensor:
    """numpy.take_along_axis: out[..., i, ...] = arr[..., indices[..., i, ...], ...] along `axis`.

    axis=None reads the flattened arr with 1-D indices. Negative indices count from the end;
    the numpy reference raises GraphcError on an out-of-range index, compiled code clamps it.
    """
    (t,) = promote(arr)
    ind = indices if isinstance(indices, Tensor) else as_tensor(to_array(indices), graph=t.graph)
    if axis is None:
        if ind.ndim != 1:
            raise _fail(ShapeError, f"take_along_axis with axis=None needs 1-D indices, got {shape_str(ind.shape)}")
        t, axis = reshape(t, -1), 0
    return t.graph.make("take_along_axis", (t, ind), {"axis": axis})


# --- one_hot ----------------------------------------------------------------------------------

ONE_HOT_ATTRS = {"axis": "int", "dtype": "dtype", "on_value": "number", "off_value": "number", "wrap": "bool"}


def _canon_one_hot(inputs: tuple, attrs: dict) -> dict:
    ndim = inputs[0].ndim
    axis = int(attrs["axis"])
    if not -1 <= axis <= ndim:
        raise ShapeError(f"axis {axis} is out of range [-1, {ndim}]")
    attrs["axis"] = ndim if axis == -1 else axis
    dt = as_dtype(attrs["dtype"])
    attrs["dtype"] = dt
    for key in ("on_value", "off_value"):
        attrs[key] = np.asarray(attrs[key]).astype(dt).item()
    attrs["wrap"] = bool(attrs.get("wrap", False))
    if "depth" in attrs:
        attrs["depth"] = as_dim(attrs["depth"], "depth")
        if attrs["depth"] < 0:
            raise ShapeError(f"depth must be >= 0, got {attrs['depth']}")
    return attrs


def _one_hot_type(inputs: tuple, attrs: dict):
    ind = inputs[0]
    if not is_int(ind.dtype):
        raise DTypeError(f"indices must be integers, got {ind.dtype}")
    depth = attrs["depth"] if "depth" in attrs else inputs[1].shape[attrs["depth_axis"]]
    shape = list(ind.shape)
    shape.insert(attrs["axis"], depth)
    return tuple(shape), attrs["dtype"]


def _one_hot_gather(s, idx, load, node):
    axis, dt = node.attrs["axis"], node.attrs["dtype"]
    v = s.cast(load(0, tuple(idx[:axis]) + tuple(idx[axis + 1:])), int64)
    if node.attrs["wrap"]:
        v = s.select(s.cmp("lt", v, _i(s, 0)), s.add(v, _i(s, node.shape[axis])), v)
    on, off = s.const(node.attrs["on_value"], dt), s.const(node.attrs["off_value"], dt)
    return s.select(s.cmp("eq", v, idx[axis]), on, off)


def _one_hot_ref(ind: np.ndarray, *like: np.ndarray, axis: int, on_value: Any, off_value: Any, dtype: np.dtype,
                 wrap: bool, depth: int | None = None, depth_axis: int | None = None) -> np.ndarray:
    depth = like[0].shape[depth_axis] if like else depth
    if wrap:
        ind = np.where(ind < 0, ind + depth, ind)
    hit = np.expand_dims(ind, -1) == np.arange(depth)
    return np.moveaxis(np.where(hit, on_value, off_value).astype(dtype), -1, axis)


register(OpDef(
    "one_hot", "index", _one_hot_type, canon=_canon_one_hot, attrs=ONE_HOT_ATTRS | {"depth": "int"}, arity=(1, 1),
    ref=_one_hot_ref, gather=_one_hot_gather,
    doc="on_value where the new `axis` coordinate equals the index, off_value elsewhere (tf.one_hot); "
        "with wrap, negative indices count from the end"))

register(OpDef(
    "one_hot_like", "index", _one_hot_type, canon=_canon_one_hot, shape_only=(1,), arity=(2, 2),
    attrs=ONE_HOT_ATTRS | {"depth_axis": "int"},
    ref=_one_hot_ref, gather=_one_hot_gather,
    doc="one_hot whose depth is like.shape[depth_axis] (known only at run time)"))


def one_hot(indices: Any, depth: int, on_value: Any = 1, off_value: Any = 0, dtype: Any = np.float32,
            axis: int = -1) -> Tensor:
    """tf.one_hot: a new axis of size `depth`; indices outside [0, depth) give all off_value."""
    ind = indices if isinstance(indices, Tensor) else as_tensor(to_array(indices))
    return ind.graph.make("one_hot", (ind,), {"depth": depth, "on_value": on_value, "off_value": off_value,
                                              "dtype": dtype, "axis": axis})


def _take_one_hot(ind: Tensor, x: Tensor, axis: int, dtype: np.dtype, out_axis: int) -> Tensor:
    """1 where the index (negative counting from the end, as in take) hits x's `axis` coordinate."""
    attrs = {"on_value": 1, "off_value": 0, "dtype": dtype, "axis": out_axis, "wrap": True}
    n = x.shape[axis]
    if n is not None:
        return ind.graph.make("one_hot", (ind,), {**attrs, "depth": n})
    return ind.graph.make("one_hot_like", (ind, x), {**attrs, "depth_axis": axis})


# --- pad ------------------------------------------------------------------------------------------

def _pairs(value: Any, ndim: int, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if ndim == 0 and arr.size == 0:  # the canonical form for a scalar x: ()
        return arr.reshape(0, 2)
    try:
        return np.broadcast_to(arr, (ndim, 2))
    except ValueError:
        raise ShapeError(f"{what} of shape {arr.shape} does not fit ({ndim}, 2)") from None


def _canon_pad(inputs: tuple, attrs: dict) -> dict:
    x = inputs[0]
    widths = _pairs(attrs["pad_width"], x.ndim, "pad_width")
    if widths.size and widths.dtype.kind not in "iu":
        raise ShapeError(f"pad_width must be integers, got {attrs['pad_width']!r}")
    if (widths < 0).any():
        raise ShapeError(f"pad_width cannot be negative, got {attrs['pad_width']!r}")
    attrs["pad_width"] = tuple((int(a), int(b)) for a, b in widths)
    consts = _pairs(attrs["constant_values"], x.ndim, "constant_values").astype(x.dtype)
    attrs["constant_values"] = tuple((a.item(), b.item()) for a, b in consts)
    return attrs


def _pad_type(inputs: tuple, attrs: dict):
    shape = inputs[0].shape
    return tuple(None if d is None else d + a + b for d, (a, b) in zip(shape, attrs["pad_width"])), inputs[0].dtype


def _pad_gather(s, idx, load, node):
    in_shape, dt = node.inputs[0].shape, node.dtype
    widths, consts = node.attrs["pad_width"], node.attrs["constant_values"]
    src = tuple(_clamp(s, s.sub(c, _i(s, b)), n - 1) for c, n, (b, _) in zip(idx, in_shape, widths))
    value = load(0, src) if num_elements(in_shape) else s.const(0, dt)  # empty x: all padding
    for c, n, (b, a), (cb, ca) in zip(idx, in_shape, widths, consts):  # later axes win at corners, as in numpy
        if b:
            value = s.select(s.cmp("lt", c, _i(s, b)), s.const(cb, dt), value)
        if a:
            value = s.select(s.cmp("ge", c, _i(s, b + n)), s.const(ca, dt), value)
    return value


register(OpDef(
    "pad", "index", _pad_type, canon=_canon_pad, attrs={"pad_width": "index", "constant_values": "numbers"},
    ref=lambda x, *, pad_width, constant_values: (
        np.pad(x, pad_width, constant_values=constant_values) if x.ndim else x.copy()),
    gather=_pad_gather,
    vjp=lambda g, out, x, *, pad_width, constant_values: (
        strided_slice(g, tuple((b, -a or None, 1) for b, a in pad_width)),),
    jvp=lambda t, out, x, *, pad_width, constant_values: pad(t[0], pad_width),
    doc="x surrounded by constants (numpy.pad, mode 'constant')"))


def pad(x: Any, pad_width: Any, constant_values: Any = 0) -> Tensor:
    """numpy.pad in mode 'constant': pad_width and constant_values in numpy's forms."""
    (t,) = promote(x)
    return t.graph.make("pad", (t,), {"pad_width": pad_width, "constant_values": constant_values})
