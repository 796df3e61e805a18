"""Shape and index ops against numpy, generated from the registry so that none is skipped.

Every case runs twice: through the reference interpreter (numpy refs) and through the
ops' `gather` forms evaluated with NumpyEmitter, whose loads assert that every index is in
bounds. VJP rules are checked for adjointness with the JVP rules (no finite differences).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.ir.bind import bind_shapes
from graphc.ir.traverse import toposort
from graphc.ops import selection
from graphc.ops import shape as shp
from graphc.ops.registry import all_ops
from graphc.ops.scalar import NumpyEmitter
from graphc.runtime import session

F32, F64, I32 = np.float32, np.float64, np.int32
DTYPES = (F32, F64, I32)
RNG = np.random.default_rng(0)


def sample(shape, dtype):
    if np.dtype(dtype).kind == "i":
        return RNG.integers(-9, 10, size=shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


# --- evaluating gather forms ------------------------------------------------------------------

def gather_eval(node, arrays):
    """node's gather form on whole arrays; every load must be in bounds for every output element."""
    s = NumpyEmitter()
    idx = tuple(np.indices(node.shape, dtype=np.int64))

    def load(i, index):
        arr = arrays[i]
        assert len(index) == arr.ndim, f"{node.op}: load({i}) with {len(index)} indices for rank {arr.ndim}"
        full = []
        for k, ix in enumerate(index):
            ix = np.broadcast_to(np.asarray(ix), node.shape)
            assert ix.dtype.kind in "iu", f"{node.op}: index of dtype {ix.dtype}"
            bad = (ix < 0) | (ix >= arr.shape[k])
            assert not bad.any(), f"{node.op}: load({i}) reads index {ix[bad][0]} of axis {k} (size {arr.shape[k]})"
            full.append(ix)
        return arr[tuple(full)]

    out = np.asarray(node.opdef.gather(s, idx, load, node))
    assert out.dtype == node.dtype, f"{node.op}: gather gave {out.dtype}, node is {node.dtype}"
    return np.broadcast_to(out, node.shape)


def _ref(node, arrays):
    attrs = {k: v for k, v in node.attrs.items() if k != "uid"}
    return np.asarray(node.opdef.ref(*arrays, **attrs)).astype(node.dtype)


def gather_run(outputs, feeds):
    """Evaluate outputs with gather forms for index ops and numpy refs for the rest."""
    env = {}
    for n in toposort(outputs):
        if n.op == "placeholder":
            env[n] = np.asarray(feeds[n])
        elif n.opdef.kind == "index":
            env[n] = gather_eval(n, [env[i] for i in n.inputs])
        else:
            env[n] = _ref(n, [env[i] for i in n.inputs])
    return [env[o] for o in outputs]


def ref_run(outputs, feeds, backend="reference"):
    return gc.Session(outputs[0].graph, backend=backend).run(list(outputs), feeds)


# --- the table of public-function cases -------------------------------------------------------

@dataclass
class Case:
    label: str
    fn: Callable  # graphc, on placeholders
    oracle: Callable  # numpy, on arrays
    args: tuple  # per input: a shape (random data of the case dtype) or a fixed array
    dtypes: tuple = DTYPES


def _arrays(case, dtype):
    return [sample(a, dtype) if isinstance(a, tuple) else np.asarray(a) for a in case.args]


IDX = np.array([[4, -1], [0, 2], [-5, 3]], np.int32)
LABELS = np.array([[0, 2], [3, -1]], np.int64)
PERM = np.array([[1, 0], [0, 1], [1, 0]])
SLICE_SPEC = ((1, None, 2), 0, (None, None, -1))

CASES = [
    Case("squeeze-all", gc.squeeze, np.squeeze, ((1, 3, 1),)),
    Case("squeeze-negative-axis", lambda x: gc.squeeze(x, -1), lambda a: np.squeeze(a, -1), ((2, 0, 1),)),
    Case("squeeze-tuple", lambda x: gc.squeeze(x, (0, -2)), lambda a: np.squeeze(a, (0, -2)), ((1, 4, 1, 1),)),
    Case("squeeze-scalar", gc.squeeze, np.squeeze, ((),)),
    Case("concatenate", lambda a, b: gc.concatenate([a, b]), lambda a, b: np.concatenate([a, b]), ((2, 3), (4, 3))),
    Case("concatenate-negative-axis-empty-part", lambda a, b, c: gc.concatenate([a, b, c], axis=-1),
         lambda a, b, c: np.concatenate([a, b, c], -1), ((2, 3), (2, 0), (2, 1))),
    Case("concatenate-axis-none", lambda a, b: gc.concatenate([a, b], axis=None),
         lambda a, b: np.concatenate([a, b], axis=None), ((2, 3), (4,))),
    Case("concatenate-all-empty", lambda a, b: gc.concatenate([a, b], 1), lambda a, b: np.concatenate([a, b], 1),
         ((3, 0), (3, 0))),
    Case("concatenate-empty-other-axis", lambda a, b: gc.concatenate([a, b], 1),
         lambda a, b: np.concatenate([a, b], 1), ((0, 2), (0, 3))),
    Case("concatenate-one", lambda a: gc.concatenate([a], 0), lambda a: np.concatenate([a], 0), ((3,),)),
    Case("stack", lambda a, b: gc.stack([a, b]), lambda a, b: np.stack([a, b]), ((2, 3), (2, 3))),
    Case("stack-negative-axis", lambda a, b, c: gc.stack([a, b, c], -1), lambda a, b, c: np.stack([a, b, c], -1),
         ((2, 1), (2, 1), (2, 1))),
    Case("stack-scalars", lambda a, b: gc.stack([a, b]), lambda a, b: np.stack([a, b]), ((), ())),
    Case("stack-empty", lambda a, b: gc.stack([a, b], 1), lambda a, b: np.stack([a, b], 1), ((0, 2), (0, 2))),
    Case("split-sections", lambda x: gc.split(x, 3, axis=-1), lambda a: np.split(a, 3, axis=-1), ((2, 6),)),
    Case("split-indices", lambda x: gc.split(x, [1, -1, 9]), lambda a: np.split(a, [1, -1, 9]), ((5, 2),)),
    Case("split-one-section", lambda x: gc.split(x, 1), lambda a: np.split(a, 1), ((0, 2),)),
    Case("take-flat", lambda x: gc.take(x, IDX), lambda a: np.take(a, IDX), ((2, 3),)),
    Case("take-axis", lambda x: gc.take(x, IDX, axis=1), lambda a: np.take(a, IDX, axis=1), ((2, 5, 3),)),
    Case("take-negative-axis-scalar-index", lambda x: gc.take(x, -2, axis=-1), lambda a: np.take(a, -2, axis=-1),
         ((2, 3),)),
    Case("take_along_axis", lambda x: gc.take_along_axis(x, IDX.T, 1), lambda a: np.take_along_axis(a, IDX.T, 1),
         ((2, 5),)),
    Case("take_along_axis-broadcast", lambda x: gc.take_along_axis(x, IDX[:, :1], 0),
         lambda a: np.take_along_axis(a, IDX[:, :1], 0), ((5, 4),)),
    Case("take_along_axis-x-broadcast", lambda x: gc.take_along_axis(x, IDX.T, -1),
         lambda a: np.take_along_axis(np.broadcast_to(a, (2, 5)), IDX.T, -1), ((1, 5),)),
    Case("take_along_axis-none", lambda x: gc.take_along_axis(x, IDX[:, 1], None),
         lambda a: np.take_along_axis(a, IDX[:, 1], None), ((2, 3),)),
    Case("permute-sort", lambda x: gc.sort(x, axis=0), lambda a: np.sort(a, axis=0), ((4, 3),)),
    Case("permute", lambda x: selection.permute(x, gc.constant(PERM), 1), lambda a: np.take_along_axis(a, PERM, 1),
         ((3, 2),)),
    Case("take-tensor-indices", lambda x, i: gc.take(x, i, axis=0), lambda a, i: np.take(a, i, axis=0),
         ((4, 2), np.array([3, 0, 0, -4], np.int64))),
    Case("take-no-indices", lambda x: gc.take(x, np.zeros((0, 2), np.int32), axis=0),
         lambda a: np.take(a, np.zeros((0, 2), np.int32), axis=0), ((0, 3),)),
    Case("one_hot", lambda i: gc.one_hot(i, 3), lambda i: (i[..., None] == np.arange(3)).astype(F32),
         (LABELS,), (None,)),
    Case("one_hot-axis0-values", lambda i: gc.one_hot(i, 4, on_value=5, off_value=-1, dtype=gc.int32, axis=0),
         lambda i: np.moveaxis(np.where(i[..., None] == np.arange(4), 5, -1), -1, 0).astype(I32), (LABELS,), (None,)),
    Case("one_hot-axis1-f64", lambda i: gc.one_hot(i, 2, dtype=gc.float64, axis=1),
         lambda i: np.moveaxis((i[..., None] == np.arange(2)).astype(F64), -1, 1), (LABELS,), (None,)),
    Case("one_hot-scalar-index", lambda i: gc.one_hot(i, 3), lambda i: (i == np.arange(3)).astype(F32),
         (np.int32(1),), (None,)),
    Case("pad-int", lambda x: gc.pad(x, 1), lambda a: np.pad(a, 1), ((2, 3),)),
    Case("pad-before-after", lambda x: gc.pad(x, (1, 2), constant_values=7), lambda a: np.pad(a, (1, 2),
         constant_values=7), ((2, 3),)),
    Case("pad-per-axis", lambda x: gc.pad(x, ((1, 0), (0, 2)), constant_values=((1, 2), (3, 4))),
         lambda a: np.pad(a, ((1, 0), (0, 2)), constant_values=((1, 2), (3, 4))), ((2, 3),)),
    Case("pad-columns", lambda x: gc.pad(x, ((1,), (2,))), lambda a: np.pad(a, ((1,), (2,))), ((2, 3),)),
    Case("pad-empty-input", lambda x: gc.pad(x, ((1, 1), (0, 1)), constant_values=2.5),
         lambda a: np.pad(a, ((1, 1), (0, 1)), constant_values=2.5), ((0, 2),)),
    Case("pad-scalar", lambda x: gc.pad(x, 2), lambda a: np.pad(a, 2), ((),)),
    Case("getitem-int", lambda x: x[1], lambda a: a[1], ((3, 4),)),
    Case("getitem-mixed", lambda x: x[-1, ::-2, None, 1:4:2], lambda a: a[-1, ::-2, None, 1:4:2], ((2, 5, 4),)),
    Case("getitem-ellipsis", lambda x: x[..., None, -2], lambda a: a[..., None, -2], ((2, 3, 4),)),
    Case("getitem-scalar-newaxis", lambda x: x[None, ...], lambda a: a[None, ...], ((),)),
    Case("getitem-empty-slice", lambda x: x[3:1, ::3], lambda a: a[3:1, ::3], ((4, 5),)),
    Case("getitem-array", lambda x: x[:, [2, 0, -1]], lambda a: a[:, [2, 0, -1]], ((2, 3),)),
    Case("getitem-array-after-ellipsis", lambda x: x[..., np.array([[1], [0]]), :],
         lambda a: a[..., np.array([[1], [0]]), :], ((2, 2, 3, 2),)),
    Case("getitem-tensor", lambda x, i: x[None, i], lambda a, i: a[None, i], ((3, 2), np.array([2, 2], np.int32))),
    # ops declared before this family
    Case("broadcast_to", lambda x: gc.broadcast_to(x, (2, 3, 4)), lambda a: np.broadcast_to(a, (2, 3, 4)),
         ((3, 1),)),
    Case("reshape", lambda x: gc.reshape(x, (3, -1)), lambda a: a.reshape(3, -1), ((2, 3, 2),)),
    Case("expand_dims", lambda x: gc.expand_dims(x, (0, -1)), lambda a: np.expand_dims(a, (0, -1)), ((2, 3),)),
    Case("transpose", lambda x: gc.transpose(x, (1, 2, 0)), lambda a: a.transpose(1, 2, 0), ((2, 3, 4),)),
    # internal primitives (built by getitem, gradients and shape-only helpers)
    Case("broadcast_like", lambda x, y: x.graph.make("broadcast_like", (x, y)),
         lambda a, b: np.broadcast_to(a, b.shape) + 0, ((3,), (2, 3))),
    Case("reshape_like", lambda x, y: x.graph.make("reshape_like", (x, y)), lambda a, b: a.reshape(b.shape),
         ((6,), (2, 3))),
    Case("unslice", lambda g, x: shp.unslice(g, x, SLICE_SPEC), lambda g, x: _np_unslice(g, x.shape),
         ((2, 1, 3), (4, 2, 3))),
    Case("split_like-head", lambda w, a: shp.split_like(w, a, 1, True), lambda w, a: w[:, :2], ((2, 5), (2, 2))),
    Case("split_like-tail", lambda w, a: shp.split_like(w, a, -1, False), lambda w, a: w[:, 2:], ((2, 5), (2, 2))),
    Case("one_hot-wrap", lambda i: _wrapped_one_hot(i, depth=4, dtype=I32, axis=-1),
         lambda i: _np_wrapped_one_hot(i, 4, I32, -1), (LABELS,), (None,)),
    Case("one_hot_like", lambda i, x: _wrapped_one_hot(i, x, depth_axis=1, dtype=F64, axis=0),
         lambda i, x: _np_wrapped_one_hot(i, 3, F64, 0), (LABELS, (2, 3)), (F64,)),
]


def _wrapped_one_hot(ind, *like, **attrs):
    """The one-hot map take's gradient builds: negative indices count from the end."""
    op = "one_hot_like" if like else "one_hot"
    return ind.graph.make(op, (ind, *like), {"on_value": 1, "off_value": 0, "wrap": True, **attrs})


def _np_wrapped_one_hot(ind, depth, dtype, axis):
    ind = np.where(ind < 0, ind + depth, ind)
    return np.moveaxis((ind[..., None] == np.arange(depth)).astype(dtype), -1, axis)


def _np_unslice(g, shape):
    out = np.zeros(shape, g.dtype)
    out[1::2, 0:1, ::-1] = g
    return out


def _build(case, dtype, graph):
    arrays = _arrays(case, dtype)
    with graph.as_default():
        xs = [gc.placeholder(a.dtype, a.shape, name=f"x{i}") for i, a in enumerate(arrays)]
        out = case.fn(*xs)
    outs = list(out) if isinstance(out, list) else [out]
    return xs, arrays, outs, out


CASE_PARAMS = [pytest.param(c, d, id=f"{c.label}-{np.dtype(d).name if d else 'int'}") for c in CASES for d in c.dtypes]


@pytest.mark.parametrize("case, dtype", CASE_PARAMS)
def test_case_matches_numpy(case, dtype, fresh_graph):
    xs, arrays, outs, out = _build(case, dtype, fresh_graph)
    expected = case.oracle(*arrays)
    expected = list(expected) if isinstance(out, list) else [expected]
    feeds = dict(zip(xs, arrays))
    for got_ref, got_gather, want, node in zip(ref_run(outs, feeds), gather_run(outs, feeds), expected, outs):
        want = np.asarray(want)
        assert node.shape == want.shape and node.dtype == want.dtype
        assert got_ref.shape == want.shape and got_ref.dtype == want.dtype
        np.testing.assert_array_equal(got_ref, want)
        np.testing.assert_array_equal(got_gather, want)


@pytest.mark.parametrize("backend", [b for b in session.BACKENDS if b != "reference"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.label) for c in CASES])
def test_case_compiles(case, backend, fresh_graph):
    """The compiled backends agree with numpy on every case (float64, or the case's own dtype)."""
    dtype = F64 if F64 in case.dtypes else case.dtypes[0]
    xs, arrays, outs, out = _build(case, dtype, fresh_graph)
    expected = case.oracle(*arrays)
    expected = list(expected) if isinstance(out, list) else [expected]
    for got, want in zip(ref_run(outs, dict(zip(xs, arrays)), backend), expected):
        np.testing.assert_array_equal(got, want)


# --- generated from the registry ----------------------------------------------------------------

def _case_nodes():
    """op name -> [(node, input arrays)] over all cases, in float64 and int32 where allowed."""
    found: dict[str, list] = {}
    for case in CASES:
        for dtype in case.dtypes:
            if dtype not in (None, F64, I32):
                continue
            g = gc.Graph()
            xs, arrays, outs, _ = _build(case, dtype, g)
            order = toposort(outs)
            values = dict(zip(order, ref_run(order, dict(zip(xs, arrays)))))
            for n in order:
                found.setdefault(n.op, []).append((n, [values[i] for i in n.inputs]))
    return found


CASE_NODES = _case_nodes()
INDEX_OPS = sorted(name for name, op in all_ops().items() if op.kind == "index")
OWN = {name for name in INDEX_OPS if all_ops()[name].gather.__module__ in (shp.__name__, selection.__name__)}


def test_every_shape_op_has_cases():
    assert OWN - set(CASE_NODES) == set()
    assert {"slice", "squeeze", "concatenate", "take", "one_hot", "pad", "unslice", "split_like"} <= OWN


@pytest.mark.parametrize("op", INDEX_OPS)
def test_gather_form_matches_ref(op):
    if op not in OWN:
        pytest.skip(f"{op} is declared in another module")
    for node, arrays in CASE_NODES[op]:
        np.testing.assert_array_equal(gather_eval(node, arrays), _ref(node, arrays), err_msg=f"{node}")


@pytest.mark.parametrize("op", sorted(OWN))
def test_canonical_attrs_are_stable(op):
    """Re-making a node from its attributes (as shape binding does) gives the same node."""
    for node, _ in CASE_NODES[op]:
        assert node.graph.make(node.op, node.inputs, dict(node.attrs)) is node


def _sum_to(arr, shape):
    arr = arr.sum(axis=tuple(range(arr.ndim - len(shape))))
    return arr.sum(axis=tuple(k for k, d in enumerate(shape) if d == 1 and arr.shape[k] != 1), keepdims=True)


@pytest.mark.parametrize("op", sorted(OWN))
def test_vjp_is_adjoint_of_jvp(op):
    """<jvp(t), g> = <t, vjp(g)>; and jvp(t) is the op's linear part applied to t."""
    opdef = all_ops()[op]
    if opdef.vjp is None:
        assert opdef.jvp is None
        return
    checked = 0
    for node, arrays in CASE_NODES[op]:
        if node.dtype != F64:
            continue
        attrs = {k: v for k, v in node.attrs.items() if k != "uid"}
        with gc.Graph().as_default():
            ins = [gc.placeholder(a.dtype, a.shape) for a in arrays]
            node = ins[0].graph.make(node.op, tuple(ins), attrs)
            active = [i for i, x in enumerate(node.inputs) if x.dtype == F64 and i not in opdef.shape_only]
            tans = {i: gc.placeholder(F64, node.inputs[i].shape) for i in active}
            g = gc.placeholder(F64, node.shape)
            jv = opdef.jvp([tans.get(i) for i in range(len(node.inputs))], node, *node.inputs, **attrs)
            cts = opdef.vjp(g, node, *node.inputs, **attrs)
        feeds = dict(zip(node.inputs, arrays))
        t_vals = {i: sample(node.inputs[i].shape, F64) for i in active}
        feeds.update({tans[i]: t_vals[i] for i in active})
        feeds[g] = g_val = sample(node.shape, F64)
        jv_val, *ct_vals = ref_run([jv] + [cts[i] for i in active], feeds)
        lhs = np.sum(jv_val * g_val)
        rhs = sum(np.sum(t_vals[i] * _sum_to(ct, arrays[i].shape)) for i, ct in zip(active, ct_vals))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)
        linear_args = [t_vals[i] if i in t_vals else a for i, a in enumerate(arrays)]
        if op == "pad":
            attrs["constant_values"] = ((0, 0),) * node.ndim
        np.testing.assert_allclose(jv_val, node.opdef.ref(*linear_args, **attrs), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gather_run([jv], feeds)[0], jv_val, rtol=1e-12, atol=1e-12)
        checked += 1
    assert checked, f"no float64 case for {op}"


# --- x[key] --------------------------------------------------------------------------------------

def _slices(n):
    bound = st.none() | st.integers(-n - 2, n + 2)
    return st.builds(slice, bound, bound, st.none() | st.integers(-3, 3).filter(bool))


@st.composite
def shapes_and_keys(draw):
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    per_axis = [draw(_slices(n) | st.integers(-n, n - 1)) if n else draw(_slices(n)) for n in shape]
    lo = draw(st.integers(0, len(shape)))
    hi = draw(st.integers(lo, len(shape)))
    items = per_axis[:lo] + [Ellipsis] + per_axis[hi:] if draw(st.booleans()) else per_axis[:hi]
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), None)
    key = items[0] if len(items) == 1 and draw(st.booleans()) else tuple(items)
    return shape, key


def _check_key(shape, key):
    a = sample(shape, F64)
    with gc.Graph().as_default():
        x = gc.placeholder(F64, shape)
        y = x[key]
        want = a[key]
        assert y.shape == want.shape
        w = gc.placeholder(F64, y.shape)
        (dx,) = gc.gradients(gc.sum(y * w), [x])
        w_val = sample(y.shape, F64)
        feeds = {x: a, w: w_val}
        got, grad = ref_run([y, dx], feeds)
        np.testing.assert_array_equal(got, want)
        g_y, g_dx = gather_run([y, dx], feeds)
        np.testing.assert_array_equal(g_y, want)
        expected = np.zeros(shape)
        expected[key] = w_val  # basic indexing reads each element at most once
        np.testing.assert_array_equal(grad, expected)
        np.testing.assert_array_equal(g_dx, expected)


@settings(max_examples=150, deadline=None)
@given(shapes_and_keys())
def test_getitem_matches_numpy(shape_key):
    _check_key(*shape_key)


@pytest.mark.parametrize("shape, key", [
    ((3, 4), (slice(None, None, -1), 0)), ((5,), slice(-100, 100, 3)), ((5,), slice(100, -100, -2)),
    ((2, 3, 4), (Ellipsis,)), ((2, 3, 4), (0, Ellipsis, 0)), ((2, 3), ()), ((), (None, None)),
    ((3,), np.int64(-3)), ((4, 0), (slice(1, 3), slice(None))), ((2, 3), (None, 1, None, -1, None)),
])
def test_getitem_table(shape, key):
    _check_key(shape, key)


def test_full_slices_build_no_node():
    x = gc.placeholder(F32, (None, 3))
    assert x[:] is x and x[...] is x and x[:, 0:3] is x and x[::1, ...] is x and x[0:] is x
    assert gc.squeeze(x) is x and gc.squeeze(x, ()) is x
    z = gc.placeholder(F32, (5, 3))
    assert z[-100:100, ::1] is z and z[0:5] is z


def test_equal_slices_are_one_node():
    x = gc.placeholder(F32, (5, 3))
    assert x[1:5] is x[1:] and x[-1] is x[4] and x[::-1] is x[4::-1]


# --- unknown dims and shape binding -----------------------------------------------------------------

def _bound_run(outputs, feeds):
    """Bind the fed shapes, then evaluate the static graph with gather forms."""
    bound, mapping = bind_shapes(outputs, {p: np.shape(v) for p, v in feeds.items()})
    return gather_run(bound, {mapping[p]: v for p, v in feeds.items() if p in mapping})


@pytest.mark.parametrize("n", [1, 4])
def test_unknown_dims(n):
    x = gc.placeholder(F64, (None, 3))
    a = sample((n, 3), F64)
    outs = [x[-1], x[1:], x[::-2, None], x[..., 0], gc.squeeze(x[:, :1]), gc.pad(x, ((2, 1), (0, 1))),
            gc.concatenate([x, x[:, :2]], axis=1), gc.concatenate([x, x], axis=0), gc.split(x, [1, 2], axis=0)[1]]
    assert [o.shape for o in outs[:4]] == [(3,), (None, 3), (None, 1, 3), (None,)]
    want = [a[-1], a[1:], a[::-2, None], a[..., 0], np.squeeze(a[:, :1]), np.pad(a, ((2, 1), (0, 1))),
            np.concatenate([a, a[:, :2]], 1), np.concatenate([a, a], 0), np.split(a, [1, 2])[1]]
    for got_ref, got_gather, w in zip(ref_run(outs, {x: a}), _bound_run(outs, {x: a}), want):
        np.testing.assert_array_equal(got_ref, w)
        np.testing.assert_array_equal(got_gather, w)


def test_squeeze_none_keeps_unknown_dims():
    x = gc.placeholder(F32, (None, 1, 3))
    assert gc.squeeze(x).shape == (None, 3)
    assert gc.squeeze(x, 0).shape == (1, 3)
    with pytest.raises(gc.ShapeError, match="cannot squeeze axis 0 of size 2"):
        bind_shapes([gc.squeeze(x, 0)], {x: (2, 1, 3)})


def _grads(y, xs, w_val, feeds):
    with y.graph.as_default():
        w = gc.placeholder(F64, y.shape)
        dxs = gc.gradients(gc.sum(y * w), xs)
    feeds = {**feeds, w: w_val}
    got = ref_run(dxs, feeds)
    for a, b in zip(got, _bound_run(dxs, feeds)):
        np.testing.assert_array_equal(a, b)
    return got, {n.op for n in toposort(dxs)}


def test_concatenate_gradient_with_unknown_offsets():
    a, b, c = (gc.placeholder(F64, (None, 2)) for _ in range(3))
    y = gc.concatenate([a, b, c])
    va, vb, vc = sample((2, 2), F64), sample((3, 2), F64), sample((1, 2), F64)
    w = sample((6, 2), F64)
    (ga, gb, gc_), ops = _grads(y, [a, b, c], w, {a: va, b: vb, c: vc})
    np.testing.assert_array_equal(ga, w[:2])
    np.testing.assert_array_equal(gb, w[2:5])
    np.testing.assert_array_equal(gc_, w[5:])
    assert "split_like" in ops


@pytest.mark.parametrize("head", [True, False])
def test_split_like_gradient_places_zeros(head):
    w, a = gc.placeholder(F64, (None, 2)), gc.placeholder(F64, (None, 2))
    part = shp.split_like(w, a, 0, head)
    vw, va = sample((5, 2), F64), sample((2, 2), F64)
    g = sample((2, 2) if head else (3, 2), F64)
    (gw,), _ = _grads(part, [w], g, {w: vw, a: va})
    np.testing.assert_array_equal(gw, np.concatenate([g, np.zeros((3, 2))] if head else [np.zeros((2, 2)), g]))


@pytest.mark.parametrize("x_shape, fed, axis, path", [
    ((5, 3), (5, 3), 0, "matmul"),  # one_hot contraction by one GEMM
    ((5, 3, 2), (5, 3, 2), 1, "sum"),  # broadcast product summed over the index axes
    ((None, 3), (6, 3), 0, "one_hot_like"),  # depth unknown while building
    ((2, None), (2, 4), -1, "one_hot_like"),
])
def test_take_gradient_scatters_with_repeats(x_shape, fed, axis, path):
    x = gc.placeholder(F64, x_shape)
    ind = np.array([[1, -1], [1, 0], [2, 2]], np.int32)
    y = gc.take(x, ind, axis=axis)
    a = sample(fed, F64)
    want_y = np.take(a, ind, axis=axis)
    np.testing.assert_array_equal(ref_run([y], {x: a})[0], want_y)
    w = sample(want_y.shape, F64)
    (gx,), ops = _grads(y, [x], w, {x: a})
    assert path in ops
    expected = np.zeros(fed)
    moved = np.moveaxis(expected, axis, 0)
    np.add.at(moved, ind % fed[axis], np.moveaxis(w, tuple(range(axis % len(fed), axis % len(fed) + 2)), (0, 1)))
    np.testing.assert_allclose(gx, expected, rtol=1e-12)


def test_split_and_stack_gradients():
    x = gc.placeholder(F64, (4, 3))
    parts = gc.split(x, [1, 3])
    y = gc.stack([parts[2], parts[0]], axis=1) * 2.0
    a = sample((4, 3), F64)
    (gx,), _ = _grads(y, [x], np.ones((1, 2, 3)), {x: a})
    np.testing.assert_array_equal(gx, [[2] * 3, [0] * 3, [0] * 3, [2] * 3])


# --- take: out-of-range indices ---------------------------------------------------------------

def test_take_out_of_range_reference_raises_and_compiled_form_clamps():
    x = gc.placeholder(F64, (4,))
    i = gc.placeholder(I32, (3,))
    y = gc.take(x, i)
    a, bad = sample((4,), F64), np.array([7, -9, 1], np.int32)
    with pytest.raises(gc.GraphcError, match="index 7 is out of range for axis 0 with size 4"):
        gc.Session(backend="reference").run(y, {x: a, i: bad})
    np.testing.assert_array_equal(gather_eval(y, [a, bad]), a[[3, 0, 1]])


@pytest.mark.parametrize("backend", [b for b in session.BACKENDS if b != "reference"])
def test_compiled_take_clamps_out_of_range_indices(backend):
    x = gc.placeholder(F64, (2, 4))
    i = gc.placeholder(I32, (4,))
    a = sample((2, 4), F64)
    got = gc.Session(backend=backend).run(gc.take(x, i, axis=1), {x: a, i: np.array([99, -99, -1, 1], np.int32)})
    np.testing.assert_array_equal(got, a[:, [3, 0, 3, 1]])


def test_one_hot_ignores_out_of_range_indices():
    got = gc.Session().run(gc.one_hot([-1, 3, 1], 3, dtype=gc.int32))
    np.testing.assert_array_equal(got, [[0, 0, 0], [0, 0, 0], [0, 1, 0]])
    assert all_ops()["one_hot"].differentiable is False


# --- errors ----------------------------------------------------------------------------------------

X = (2, 3)


@pytest.mark.parametrize("build, error, message", [
    (lambda x: x[2], gc.ShapeError, r"index 2 is out of range for axis 0 with size 2"),
    (lambda x: x[:, -4], gc.ShapeError, r"index -4 is out of range for axis 1 with size 3"),
    (lambda x: x[0, 0, 0], gc.ShapeError, r"too many indices for a tensor of rank 2: 3 given"),
    (lambda x: x[..., 0, ...], gc.ShapeError, r"single ellipsis"),
    (lambda x: x[::0], gc.ShapeError, r"slice step cannot be zero"),
    (lambda x: x[1.5], gc.GraphcError, r"unsupported index 1.5"),
    (lambda x: x[0:1.5], gc.GraphcError, r"slice bounds must be Python ints"),
    (lambda x: x[[0], [1]], gc.GraphcError, r"use gc.take"),
    (lambda x: x[x > 0], gc.DTypeError, r"indices must be integers, got bool"),
    (lambda x: gc.concatenate([x, gc.zeros((2, 4))], axis=0), gc.ShapeError, r"sizes on axis 1 differ: \[3, 4\]"),
    (lambda x: gc.concatenate([x, gc.zeros((3,))]), gc.ShapeError, r"same rank"),
    (lambda x: gc.concatenate([x, x], axis=2), gc.ShapeError, r"axis 2 is out of range for rank 2"),
    (lambda x: gc.concatenate([x[0, 0], x[0, 0]]), gc.ShapeError, r"zero-dimensional"),
    (lambda x: gc.concatenate([]), gc.GraphcError, r"non-empty list"),
    (lambda x: gc.stack([x, x[:1]]), gc.ShapeError, r"same shape, got \(2, 3\), \(1, 3\)"),
    (lambda x: gc.stack([x, x], axis=3), gc.ShapeError, r"axis 3 is out of range for rank 3"),
    (lambda x: gc.squeeze(x, 1), gc.ShapeError, r"cannot squeeze axis 1 of size 3"),
    (lambda x: gc.squeeze(x, -3), gc.ShapeError, r"axis -3 is out of range"),
    (lambda x: gc.split(x, 2, axis=1), gc.ShapeError, r"3 elements on axis 1 do not divide into 2"),
    (lambda x: gc.split(x, 1, axis=2), gc.ShapeError, r"axis 2 is out of range"),
    (lambda x: gc.take(x, [0], axis=-3), gc.ShapeError, r"axis -3 is out of range"),
    (lambda x: gc.take(x, [0.5]), gc.DTypeError, r"indices must be integers"),
    (lambda x: gc.take(x[:, :0], [1], axis=1), gc.ShapeError, r"cannot take from axis 1 of size 0"),
    (lambda x: gc.one_hot(x, 3), gc.DTypeError, r"indices must be integers, got float32"),
    (lambda x: gc.one_hot([1], 3, axis=2), gc.ShapeError, r"axis 2 is out of range \[-1, 1\]"),
    (lambda x: gc.one_hot([1], -1), gc.ShapeError, r"depth must be >= 0"),
    (lambda x: gc.pad(x, -1), gc.ShapeError, r"pad_width cannot be negative"),
    (lambda x: gc.pad(x, 1.5), gc.ShapeError, r"pad_width must be integers"),
    (lambda x: gc.pad(x, ((1, 2, 3),)), gc.ShapeError, r"pad_width of shape \(1, 3\) does not fit \(2, 2\)"),
])
def test_errors(build, error, message):
    x = gc.placeholder(F32, X, name="x")
    with pytest.raises(error, match=message) as info:
        build(x)
    if error is not gc.GraphcError:
        assert "test_shape.py:" in str(info.value)


def test_unknown_dim_index_errors_when_bound():
    x = gc.placeholder(F32, (None,))
    y = x[3]
    with pytest.raises(gc.ShapeError, match="index 3 is out of range for axis 0 with size 2"):
        bind_shapes([y], {x: (2,)})


def test_split_sections_need_a_known_dim():
    with pytest.raises(gc.ShapeError, match="needs a known size on axis 0"):
        gc.split(gc.placeholder(F32, (None, 2)), 2)


def test_public_names():
    assert {"squeeze", "concatenate", "stack", "split", "take", "one_hot", "pad"} <= set(shp.__all__)
    for name in shp.__all__:
        assert inspect.unwrap(getattr(gc, name)) is getattr(shp, name)  # gc adds name=
