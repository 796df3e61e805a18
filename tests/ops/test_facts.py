"""The facts an OpDef declares about its op (kind, commutative, effect, heavy, carries, row_major,
speculatable, regions, body_consts) hold."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError
from graphc.ir.region import Region
from graphc.ops.registry import OpDef, OpKind, all_ops, register

OPS = all_ops()


def _operands(op: str) -> tuple[np.ndarray, np.ndarray]:
    """Two random operands of a dtype the op accepts (bool for logical ops, else float64 with a NaN)."""
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.bool_):
        a = gc.placeholder(dtype, (3, 4))
        try:
            a.graph.make(op, (a, a))
        except GraphcError:
            continue
        if dtype == np.bool_:
            return rng.random((3, 4)) < 0.5, rng.random((3, 4)) < 0.5
        x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
        y[0, 0], x[1, 1] = x[0, 0], np.nan  # a tie and a NaN
        return x, y
    raise AssertionError(f"{op}: no dtype fits")


@pytest.mark.parametrize("op", sorted(n for n, o in OPS.items() if o.commutative))
def test_commutative_ops_give_one_result_for_either_operand_order(op):
    opdef = OPS[op]
    assert opdef.kind is OpKind.ELEMENTWISE
    a, b = _operands(op)
    with np.errstate(invalid="ignore"):  # the NaN operand is deliberate
        np.testing.assert_array_equal(opdef.ref(a, b), opdef.ref(b, a))


def test_effects_are_the_state_control_and_host_ops():
    assert {n for n, o in OPS.items() if o.effect} == {n for n, o in OPS.items()
                                                        if o.kind in (OpKind.STATE, OpKind.CONTROL, OpKind.HOST)}


def test_host_ops_have_a_host_rule():
    host = {n for n, o in OPS.items() if o.kind is OpKind.HOST}
    assert host == {n for n, o in OPS.items() if o.host is not None} == {"print", "check_numerics"}


@pytest.mark.parametrize("op", sorted(n for n, o in OPS.items() if o.carries is not None))
def test_carried_input_values_pass_on_unchanged(op):
    """The result holds only values of the carried input (for where: where the condition holds)."""
    x = gc.placeholder(gc.float64, (2, 3), name="x")
    g, big, flat = x.graph, gc.placeholder(gc.float64, (4, 2, 3)), gc.placeholder(gc.float64, (6,))
    out = {"where": lambda: gc.where(x > 0, x, 0.0), "broadcast_to": lambda: gc.broadcast_to(x, (4, 2, 3)),
           "broadcast_like": lambda: g.make("broadcast_like", (x, big)), "reshape": lambda: gc.reshape(x, (3, 2)),
           "reshape_like": lambda: g.make("reshape_like", (x, flat)), "expand_dims": lambda: gc.expand_dims(x, 0),
           "identity": lambda: gc.identity(x), "stop_gradient": lambda: gc.stop_gradient(x)}[op]()
    assert out.op == op and out.inputs[OPS[op].carries] is x
    value = np.arange(1.0, 7.0).reshape(2, 3)
    got = gc.Session(backend="reference").run(out, {x: value, big: np.zeros((4, 2, 3)), flat: np.zeros(6)})
    assert set(np.unique(got)) <= set(value.ravel()) | {0.0}


@pytest.mark.parametrize("op", sorted(n for n, o in OPS.items() if o.row_major))
def test_row_major_ops_keep_the_element_order(op):
    """The result's elements in row-major order are the input's (only the shape changes)."""
    x = gc.placeholder(gc.float64, (2, 3, 4), name="x")
    like = gc.placeholder(gc.float64, (6, 4))
    out = {"reshape": lambda: gc.reshape(x, (6, 4)),
           "reshape_like": lambda: x.graph.make("reshape_like", (x, like))}[op]()
    assert OPS[op].kind is OpKind.INDEX and out.op == op
    value = np.arange(24.0).reshape(2, 3, 4)
    got = gc.Session(backend="reference").run(out, {x: value, like: np.zeros((6, 4))})
    np.testing.assert_array_equal(got.ravel(), value.ravel())


def test_heavy_ops_are_elementwise_float_functions():
    heavy = {n for n, o in OPS.items() if o.heavy}
    assert heavy and all(OPS[n].kind is OpKind.ELEMENTWISE for n in heavy)


def test_kind_is_an_enum_and_an_unknown_kind_is_refused():
    assert all(isinstance(o.kind, OpKind) for o in OPS.values())
    assert OPS["add"].kind == "elementwise" and OPS["add"].kind is OpKind.ELEMENTWISE
    with pytest.raises(GraphcError, match="unknown kind 'elementwize'"):
        register(OpDef("not_an_op", "elementwize", lambda inputs, attrs: ((), None)))
    assert "not_an_op" not in all_ops()


@pytest.mark.parametrize("op", sorted(n for n, o in OPS.items() if not o.speculatable))
def test_unspeculatable_ops_raise_on_some_operand_values(op):
    """speculatable=False is declared by the ops whose reference refuses some values (gathers
    checking their indices), which no pass may compute where the program would not."""
    with pytest.raises(GraphcError, match="out of range"):
        OPS[op].ref(np.arange(6.0).reshape(2, 3), np.full((2, 3), 7), axis=1)


def test_region_ops_name_their_regions_and_loops_their_consts():
    """`regions` lists the region attributes in declaration order (the backend's body order,
    whatever order a node's attributes come in);
    `body_consts` points at the operands the body's const params receive."""
    x = gc.placeholder(gc.float64, (3,), name="x")
    w, v = gc.constant(np.full(3, 2.0)), gc.constant(np.full(3, 5.0))
    _, ys = gc.scan(lambda c, xi: (c * w + xi,) * 2, gc.zeros((3,), gc.float64), gc.stack([x, x]))
    _, h = gc.while_loop(lambda c: gc.sum(c[1] * v) < 100.0, lambda c: (c[0] + 1, c[1] * w),
                         (gc.constant(0), x))
    out = gc.cond(gc.sum(x) > 0, lambda: x * w, lambda: x * v)
    loops = [ys.inputs[0], h.inputs[0]]
    for node in [*loops, out.inputs[0]]:
        assert set(node.opdef.regions) == {k for k, r in node.attrs.items() if isinstance(r, Region)}
    assert OPS["while_loop"].regions == ("cond", "body") and OPS["cond"].regions == ("true_branch", "false_branch")
    for node in loops:
        count, start = node.opdef.body_consts
        start = node.attrs[start] if isinstance(start, str) else start
        consts = node.inputs[start:start + node.attrs[count]]
        assert w in consts and v not in consts  # the body captured w only (v: the while_loop's cond)
    assert {n for n, o in OPS.items() if o.body_consts} == {n for n, o in OPS.items() if "body" in o.regions}
