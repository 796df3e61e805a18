"""name= on every op builder, gc.name_scope, and what a name does to interning."""

import inspect
import json

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main
from graphc.ops import catalog  # noqa: F401


def _builders():
    """Every public op builder: the functions of gc and its builder namespaces (gc.nn, gc.linalg, ...)."""
    from graphc import _API_MODULES, _NOT_BUILDERS, _OP_MODULES
    out = []
    for module in _OP_MODULES:
        out += [(gc, n) for n in module.__all__ if n not in _NOT_BUILDERS]
    for module in _API_MODULES:
        out += [(module, n) for n in module.__all__
                if inspect.isfunction(getattr(module, n)) and n not in _NOT_BUILDERS]
    assert {m.__name__ for m in _API_MODULES} >= {"graphc.nn", "graphc.linalg", "graphc.special"}
    return out


@pytest.mark.parametrize("module,fn", _builders(), ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_every_builder_takes_name(module, fn):
    assert "name" in inspect.signature(getattr(module, fn)).parameters


def test_non_builders_take_no_name():
    assert "name" not in inspect.signature(gc.random.set_seed).parameters
    assert "name" not in inspect.signature(gc.enable_x64).parameters


def test_name_and_scopes_as_in_tf1():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 3), name="x")
        with gc.name_scope("block1") as scope:
            assert scope == "block1/"
            h = gc.tanh(x, name="act")
            with gc.name_scope("inner"):
                e = gc.exp(x)
            sm = gc.nn.softmax(h, name="probs")
        with gc.name_scope("block1"):  # a used scope name: TF1 makes it unique
            e2 = gc.exp(h)
        with gc.name_scope("block1/"):  # trailing slash: re-enter the exact scope
            e3 = gc.exp(sm)
        d = gc.nn.dense(x, 2)
    assert (h.name, e.name, sm.name, e2.name, e3.name) == (
        "block1/act", "block1/inner/exp", "block1/probs", "block1_1/exp", "block1/exp")
    assert d.name.startswith("dense/") and g.get_tensor_by_name("dense/kernel").op == "variable"
    for t in (h, e, sm, e2, e3):
        assert g.get_tensor_by_name(t.name) is t and g.get_tensor_by_name(t.name + ":0") is t
    # the composite's own nodes are scoped under its name
    assert any(n.name.startswith("block1/probs/exp") for n in g.nodes)
    # duplicate explicit names get TF1's unique suffix
    with g.as_default():
        a, b = gc.sin(x, name="y"), gc.cos(x, name="y")
    assert (a.name, b.name) == ("y", "y_1")
    with g.as_default():
        parts = gc.split(gc.constant(np.arange(6.0)), 3, name="parts")
    assert [p.name for p in parts] == ["parts", "parts:1", "parts:2"]
    assert g.get_tensor_by_name("parts:1") is parts[1] and g.get_tensor_by_name("parts:0") is parts[0]


def test_names_never_split_nodes_first_name_wins():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (3,), name="x")
        auto = gc.add(x, x)
        first = gc.add(x, x, name="first")
        second = gc.add(x, x, name="second")
        same = gc.reshape(x, (3,), name="reshaped")  # returns x itself
    assert auto is first is second  # one node: interning ignores names
    assert first.name == "first"  # it had an automatic name, so the first name given wins
    assert g.get_tensor_by_name("second") is first  # a later name is an alias
    assert g.get_tensor_by_name("add") is first  # and the automatic name still finds it
    assert same is x and x.name == "x"  # a placeholder keeps its name; the new one is an alias
    assert g.get_tensor_by_name("reshaped") is x


def test_bad_names_are_clear_errors():
    x = gc.placeholder(gc.float32, (3,), name="x")
    with pytest.raises(gc.GraphcError, match="exp: 'a b' is not a valid name"):
        gc.exp(x, name="a b")
    with pytest.raises(gc.GraphcError, match="name_scope: 3 is not|must be a string"):
        with gc.name_scope(3):
            pass


def _scoped_mlp():
    x = gc.placeholder(gc.float64, (None, 3), name="x")
    w = gc.Variable(np.ones((3, 4)), name="w")
    with gc.name_scope("block1"):
        h = gc.tanh(x @ w, name="hidden")
        for _ in range(4):
            h = gc.sin(h)
        loss = gc.sum(h * h, name="loss")
    (gw,) = gc.gradients(loss, [w])
    return x, w, h, loss, gw


def test_names_in_text_reports_show_and_export(tmp_path, capsys):
    g = gc.Graph()
    with g.as_default():
        x, w, h, loss, gw = _scoped_mlp()
        text = gc.as_text([loss])
        assert "# block1/hidden" in text and "# block1/loss" in text
        feed = {x: np.ones((5, 3))}
        with gc.Session(options=gc.CompileOptions(checkpoint="sqrt")) as sess:
            report = sess.compile([loss, gw], feed).report()
            assert "block1/" in report
        fn = gc.function([x], [loss, gw])
        fn.export(tmp_path, "named", signatures=[[(5, 3)]])
    manifest = json.loads((tmp_path / "named.json").read_text())
    assert manifest["outputs"][0]["name"] == "block1/loss" and manifest["outputs"][0]["c_name"] == "block1_loss"
    loaded = gc.load_exported(tmp_path, "named")
    np.testing.assert_allclose(loaded(np.ones((5, 3)))[0], fn(np.ones((5, 3)))[0])
    with g.as_default():
        gc.save(loss, tmp_path / "g.json")
    assert main(["show", str(tmp_path / "g.json"), "--shape", "x=5,3"]) == 0
    assert "# block1/loss" in capsys.readouterr().out


def test_layers_inside_a_name_scope():
    g = gc.Graph()
    with g.as_default(), gc.name_scope("block"):
        x = gc.placeholder(gc.float32, (None, 8, 8, 3), name="x")
        conv = gc.layers.Conv2D(4, 3)
        bn = gc.layers.BatchNorm()
        y = bn(conv(x), training=True)
        d = gc.layers.Dense(2)
        d(gc.reshape(y, (-1, 6 * 6 * 4)))
    names = {v.name for v in g.variables}
    assert {"block/conv2d/kernel", "block/conv2d/bias", "block/batch_norm/gamma", "block/batch_norm/moving_mean",
            "block/dense/kernel", "block/dense/bias"} <= names, names
