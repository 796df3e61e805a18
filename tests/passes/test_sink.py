"""The sink pass: sums of a scan's stacked ys (and their cotangents) computed inside its loops."""

import numpy as np
import pytest

import graphc as gc
from graphc.backend.interpreter import evaluate
from graphc.compiler import optimize
from graphc.ops.registry import OpKind
from graphc.passes.pipeline import pipeline_for
from graphc.testing import check_grads

T, B, NI, H = 6, 3, 2, 4
rng = np.random.default_rng(5)
XS = rng.standard_normal((T, B, NI))
WX = rng.standard_normal((NI, H))
WH = rng.standard_normal((H, H)) * 0.5
WO = rng.standard_normal(H)


def _cell(wx, wh):
    def cell(h, x):
        h = gc.tanh(x @ wx + h @ wh)
        return h, h
    return cell


READOUTS = {  # loss of the stacked hidden states hs [T, B, H] (s: a fed scalar, w: a weight [H])
    "mean of squares": lambda hs, s, w: gc.mean(hs * hs),
    "sum over axis 0, then more": lambda hs, s, w: gc.sum(gc.sum(gc.exp(hs) * np.linspace(0.5, 1.5, H), axis=0) ** 2),
    "fed operand": lambda hs, s, w: gc.mean((hs - s) ** 2) + gc.sum(hs, axis=(0, 2), keepdims=True)[0, 1, 0],
    "half sum of squares": lambda hs, s, w: 0.5 * gc.sum(hs * hs),  # the ys cotangent is the stack itself
    "readout weight": lambda hs, s, w: gc.mean(gc.tanh(hs * w)),  # d/dw: a sum over the stack in the backward
    "leading dim 1": lambda hs, s, w: gc.sum(gc.sigmoid(hs * gc.reshape(s * np.arange(1.0, H + 1), (1, 1, H)))),
}


def _build(readout, reverse=False, fetch_hs=False):
    """(graph, fetches, feed): a tanh RNN's loss, its gradients wrt the weights and xs."""
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, (T, B, NI), name="xs")
        s = gc.placeholder(gc.float64, (), name="s")
        wx, wh, wo = gc.Variable(WX, name="wx"), gc.Variable(WH, name="wh"), gc.Variable(WO, name="wo")
        _, hs = gc.scan(_cell(wx, wh), gc.zeros((B, H), gc.float64), xs, reverse=reverse)
        loss = readout(hs, s, wo)
        fetches = [loss, *gc.gradients(loss, [wx, wh, wo, xs], unconnected="zero")] + ([hs] if fetch_hs else [])
    return g, fetches, {xs: XS, s: np.float64(0.3)}


def _optimized(fetches, feed, **options):
    opt = optimize(fetches, {k: np.shape(v) for k, v in feed.items()}, gc.CompileOptions(**options))
    return opt, {opt.mapping[k]: v for k, v in feed.items() if k in opt.mapping}


def _agree(want, opt, bound, g, fetches, feed, **options):
    """The optimized module (interpreted) and a compiled session both give `want`."""
    for w, a in zip(want, evaluate(opt.module.outputs, bound)):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-13)
    with gc.Session(g, options=gc.CompileOptions(**options)) as sess:
        for w, b in zip(want, sess.run(fetches, feed)):
            np.testing.assert_allclose(b, w, rtol=1e-12, atol=1e-13)


def _stack_maps(module):
    """Elementwise nodes outside the loops over a whole [T, ...] stack: the readout left unsunk."""
    return [n for n in module.nodes if n.opdef.kind is OpKind.ELEMENTWISE and n.shape[:1] == (T,) and n.ndim == 3]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("readout", list(READOUTS))
def test_sunk_readouts_give_the_unsunk_values_and_gradients_on_both_backends(readout, reverse):
    g, fetches, feed = _build(READOUTS[readout], reverse)
    want = evaluate(fetches, feed)  # the user's graph as built: the ys stacked, the readout over the stack
    opt, bound = _optimized(fetches, feed)
    assert _stack_maps(opt.module) == [] and opt.records[[r.name for r in opt.records].index("sink")].changes
    got_ref = evaluate(opt.module.outputs, bound)
    with gc.Session(g) as sess:
        got_llvm = sess.run(fetches, feed)
    for w, a, b in zip(want, got_ref, got_llvm):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-13)  # (the sums add in another order)
        np.testing.assert_allclose(b, w, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("options", [{"checkpoint": "sqrt"}, {"checkpoint": "revolve", "slots": 2},
                                     {"memory_budget": 10**9}])
def test_every_checkpoint_policy_sinks_and_keeps_the_values(options):
    g, fetches, feed = _build(READOUTS["mean of squares"])
    want = evaluate(fetches, feed)
    opt, bound = _optimized(fetches, feed, **options)
    assert _stack_maps(opt.module) == []
    _agree(want, opt, bound, g, fetches, feed, **options)


@pytest.mark.parametrize("readout", ["mean of squares", "fed operand", "readout weight"])
def test_gradients_of_a_sunk_readout_match_finite_differences(readout):
    def loss(wx, wh, wo, xs):
        _, hs = gc.scan(_cell(wx, wh), gc.zeros((B, H), gc.float64), xs)
        return READOUTS[readout](hs, 0.3, wo)

    check_grads(loss, [WX, WH, WO, XS], modes=("rev",), backend="llvm")
    check_grads(loss, [WX, WH, WO, XS], modes=("rev",), backend="reference")


def _matmul_readout(hs, s, w):
    return gc.mean(gc.reshape(hs, (T * B, H)) @ np.ones((H, 2)))


def _stacked_operand(hs, s, w):
    return gc.mean((hs - XS[:, :, :1]) ** 2)  # a [T, B, 1] operand: a different value per slice


@pytest.mark.parametrize("case", ["fetched", "matmul", "stacked operand"])
def test_a_stack_read_otherwise_is_not_sunk(case):
    readout = {"matmul": _matmul_readout, "stacked operand": _stacked_operand}.get(case, READOUTS["mean of squares"])
    g, fetches, feed = _build(readout, fetch_hs=case == "fetched")
    opt, bound = _optimized(fetches, feed)
    if case == "fetched":
        assert any(o.shape == (T, B, H) for o in opt.module.outputs) and _stack_maps(opt.module)
    else:
        assert any(n.shape == (T, B, H) and n.op == "result" for n in opt.module.nodes)
    want = evaluate(fetches, feed)
    _agree(want, opt, bound, g, fetches, feed)


def test_of_two_stacked_ys_the_fetched_one_stays():
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, (T, B, NI), name="xs")
        wx, wh = gc.Variable(WX, name="wx"), gc.Variable(WH, name="wh")

        def cell(h, x):
            h = gc.tanh(x @ wx + h @ wh)
            return h, (h, gc.sum(h * h, axis=1))

        _, (hs, norms) = gc.scan(cell, gc.zeros((B, H), gc.float64), xs)
        loss = gc.mean(hs * hs) + gc.sum(norms * 2.0)
        fetches = [loss, *gc.gradients(loss, [wx, wh]), norms]
    feed = {xs: XS}
    opt, bound = _optimized(fetches, feed)
    assert _stack_maps(opt.module) == [] and opt.module.outputs[3].shape == (T, B)
    want = evaluate(fetches, feed)
    _agree(want, opt, bound, g, fetches, feed)


def _nested(differentiate):
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, (2, T, B, NI), name="xs")  # two sequences, one after the other
        wx, wh = gc.Variable(WX, name="wx"), gc.Variable(WH, name="wh")

        def episode(h, x):
            h, hs = gc.scan(_cell(wx, wh), h, x)
            return h, gc.mean(hs * hs)

        _, per = gc.scan(episode, gc.zeros((B, H), gc.float64), xs)
        loss = gc.sum(per * per)
        fetches = [loss, *gc.gradients(loss, [wx, wh])] if differentiate else [loss]
    return g, fetches, {xs: np.stack([XS, XS[::-1]])}


@pytest.mark.parametrize("differentiate", [False, True])
def test_nested_loops(differentiate):
    g, fetches, feed = _nested(differentiate)
    want = evaluate(fetches, feed)
    opt, bound = _optimized(fetches, feed)
    if not differentiate:  # the inner loop's stack is gone from the outer body: one accumulator instead
        (outer,) = [n for n in opt.module.nodes if n.op == "scan"]
        (inner,) = [n for n in outer.attrs["body"].nodes if n.op == "scan"]
        assert [len(r[0]) for r in inner.opdef.results(inner.inputs, inner.attrs)] == [2, 0]
        assert [len(r[0]) for r in outer.opdef.results(outer.inputs, outer.attrs)] == [2, 0]
    _agree(want, opt, bound, g, fetches, feed)


def test_the_stack_leaves_the_saved_bytes():
    g, fetches, feed = _build(READOUTS["mean of squares"])
    shapes = {k: np.shape(v) for k, v in feed.items()}
    saved = {}
    for sink in (True, False):
        names = [p for p in pipeline_for(2) if sink or p != "sink"]
        for policy in ("none", "revolve"):
            opt = optimize(fetches, shapes, gc.CompileOptions(checkpoint=policy, slots=2), passes=names)
            saved[sink, policy] = opt.checkpoint_report(policy).saved_bytes
    stack = T * B * H * 8
    assert saved[False, "revolve"] >= stack > saved[True, "revolve"]  # 4 slots of (carry, accumulator): 416 B
    assert saved[True, "none"] <= saved[False, "none"]
