"""Regions in the IR: printing, save/load, verification, passes inside bodies, and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphc as gc
from graphc.compiler import optimize
from graphc.ir.region import Region, walk
from graphc.ir.traverse import toposort
from graphc.passes.verify import VerifyError, verify_nodes

HERE = "test_regions.py"


def run(fetches, feeds=None):
    return gc.Session(backend="reference").run(fetches, feeds)


def _model():
    x = gc.placeholder(gc.float32, (4, 3), name="x")
    w = gc.placeholder(gc.float32, (3,), name="w")

    def step(c, xt):
        c = gc.tanh(c * w + xt)
        return c, gc.cond(gc.sum(c) > 0, lambda u: u * 2.0, lambda u: -u, c)

    h, ys = gc.scan(step, gc.zeros((3,)), x)
    total = gc.while_loop(lambda v: v < 10.0, lambda v: gc.abs(v) * 2.0 + gc.abs(gc.sum(h)) + 1.0, gc.sum(w))
    return x, w, [h, ys, total]


def test_regions_print_nested():
    _, _, outs = _model()
    text = gc.as_text(outs)
    assert "scan(%w, %" in text and "  body(%" in text and "      true_branch(%" in text
    assert "    yield " in text and "  cond(%" in text and text == gc.as_text(outs)
    body_lines = [ln for ln in text.splitlines() if ln.startswith("    %")]
    assert any("tanh" in ln for ln in body_lines)


def test_save_load_round_trip_with_nested_regions(tmp_path):
    x, w, outs = _model()
    path = tmp_path / "g.json"
    gc.save(outs, path)
    loaded = gc.load(path)
    assert gc.as_text(loaded.outputs) == gc.as_text(outs)
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32),
             "w": np.float32([0.5, -0.2, 0.1])}
    want = run(outs, {x: feeds["x"], w: feeds["w"]})
    got = gc.Session(loaded.graph, backend="reference").run(loaded.outputs, {loaded.inputs[k]: v
                                                                            for k, v in feeds.items()})
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def _scan_doc(tmp_path):
    x = gc.placeholder(gc.float32, (4,), name="x")
    c, _ = gc.scan(lambda c, xt: (c + xt, None), np.float32(0), x)
    path = tmp_path / "g.json"
    gc.save(c, path)
    return json.loads(path.read_text())


def _region(doc):
    return next(n["attrs"]["body"]["region"] for n in doc["nodes"] if n["op"] == "scan")


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: _region(d).update(params=[]), "param nodes must be exactly its params"),
    (lambda d: _region(d).update(results=[99]), "bad region results"),
    (lambda d: _region(d)["nodes"][2].update(inputs=[7]), "does not name an earlier node"),
    (lambda d: _region(d)["nodes"].append({"op": "placeholder", "inputs": [], "attrs": {
        "shape": {"tuple": []}, "dtype": {"dtype": "float32"}}}), "cannot be created"),
    (lambda d: _region(d)["nodes"][0]["attrs"].update(dtype={"dtype": "int32"}), r"node 2 \(scan\): node 2 \(add\)"),
    (lambda d: d["nodes"].insert(0, {"op": "param", "inputs": [], "attrs": {
        "index": 0, "shape": {"tuple": []}, "dtype": {"dtype": "float32"}}}), "param node outside a region"),
])
def test_loading_a_garbled_region_is_a_clear_error(tmp_path, corrupt, message):
    doc = _scan_doc(tmp_path)
    corrupt(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(gc.GraphcError, match=message):
        gc.load(path)


def test_passes_run_inside_bodies_and_hoist_only_invariant_values():
    x = gc.placeholder(gc.float32, (4, 3), name="x")
    w = gc.placeholder(gc.float32, (3,), name="w")
    c, ys = gc.scan(lambda c, xt: (gc.negative(-(c * 1.0 + xt * (gc.ones((3,)) * 2.0))), w * w), gc.zeros((3,)), x)
    opt = optimize([c, ys], {x: (4, 3), w: (3,)})
    (scan,) = [n for n in opt.module.nodes if n.op == "scan"]
    body_ops = [n.op for n in toposort(scan.attrs["body"].results)]
    assert "negative" not in body_ops and body_ops.count("multiply") == 1  # simplified and folded inside
    assert [n.op for n in opt.module.nodes if n.op == "multiply"] == ["multiply"]  # w * w is hoisted (invariant)
    verify_nodes(opt.module.nodes)
    xv, wv = np.ones((4, 3), np.float32), np.float32([1, 2, 3])
    got = gc.Session(backend="reference").run([c, ys], {x: xv, w: wv})
    np.testing.assert_allclose(got[0], 8.0)
    np.testing.assert_allclose(got[1], np.tile(wv * wv, (4, 1)))


def test_verifier_catches_a_param_outside_its_region():
    x = gc.placeholder(gc.float32, (3,))
    c, _ = gc.scan(lambda c, _: (c * 2.0, None), x, length=2)
    body = c.inputs[0].attrs["body"]
    with pytest.raises(VerifyError, match="param read outside its region"):
        verify_nodes(toposort(body.results))
    assert isinstance(body, Region) and {n.op for n in walk([c])} >= {"param", "scan", "result", "multiply"}


def test_body_values_used_outside_are_clear_errors():
    x = gc.placeholder(gc.float32, (3,))
    leaked = []
    c, _ = gc.scan(lambda c, _: (leaked.append(c * 2.0) or c + 1.0, None), x, length=2)
    with pytest.raises(gc.GraphcError, match="belongs to another graph"):
        run(leaked[0] + 1.0, {x: np.ones(3, np.float32)})
    with pytest.raises(gc.GraphcError, match="used in a gc.scan body after it was built"):
        x + leaked[0]


@pytest.mark.parametrize("body, message", [
    (lambda c: (gc.assign(gc.Variable(np.float32(0)), c), None), "cannot be created \\(variable\\)"),
    (lambda c: (c + gc.placeholder(gc.float32, ()), None), "cannot be created \\(placeholder\\)"),
])
def test_variables_and_placeholders_inside_a_body_are_errors(body, message):
    with pytest.raises(gc.GraphcError, match=f"(?s){message} inside a gc.scan body.*{HERE}"):
        gc.scan(lambda c, _: body(c), np.float32(1), length=2)


def test_assigning_a_variable_inside_a_body_is_an_error():
    v = gc.Variable(np.float32(0))
    with pytest.raises(gc.GraphcError, match=f"(?s)assign: .*cannot be assigned inside a gc.scan body.*{HERE}"):
        gc.scan(lambda c, _: (gc.assign(v, c) + c, None), np.float32(1), length=2)


@pytest.mark.parametrize("build, message", [
    (lambda x: gc.scan(lambda c, t: (gc.sum(c), t), x, x), r"takes a carry \* of \(f32\(3\)\) but returns a "
     r"carry \* of \(f32\(\)\)"),
    (lambda x: gc.scan(lambda c, t: c, x, x), "must return a pair"),
    (lambda x: gc.scan(lambda c, t: (c, t), x), "give xs or a length"),
    (lambda x: gc.scan(lambda c, t: (c, t), x, x, length=5), r"length=5 but the xs have leading dims \(3,\)"),
    (lambda x: gc.scan(lambda c, t: (c, t), x, gc.sum(x)), "need a leading axis"),
    (lambda x: gc.scan(lambda c, t: (c + gc.ones((4,)), t), x, gc.reshape(x, (3, 1))),
     r"add .*float32\(3,\).*float32\(4,\)"),
    (lambda x: gc.cond(x[0] > 0, lambda a: a, lambda a: (a, a), x), r"true_fn .* returns \* of \(f32\(3\)\) but "
     r"false_fn .* returns \(\*, \*\) of \(f32\(3\), f32\(3\)\)"),
    (lambda x: gc.cond(x[0] > 0, lambda a: a, lambda a: gc.sum(a), x), r"f32\(3\).*f32\(\)"),
    (lambda x: gc.cond(x > 0, lambda a: a, lambda a: a, x), "predicate must be a scalar"),
    (lambda x: gc.while_loop(lambda c: c, lambda c: c, x), "cond_fn .* must return a bool scalar"),
    (lambda x: gc.while_loop(lambda c: gc.sum(c) > 0, lambda c: gc.cast(c, gc.float64), x), "body_fn .*f64"),
    (lambda x: gc.fori_loop(0, x, lambda i, v: v, x), "bounds must be integer scalars"),
])
def test_errors_name_the_function_the_types_and_the_line(build, message):
    x = gc.placeholder(gc.float32, (3,))
    with pytest.raises(gc.GraphcError, match=f"(?s){message}.*{HERE}:"):
        build(x)


@pytest.mark.parametrize("op", ["scan", "cond", "while_loop"])
def test_llvm_matches_reference(op):
    x, w, outs = _model()
    feeds = {x: np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32), w: np.float32([0.5, -0.2, 0.1])}
    fetch = {"scan": outs[:2], "cond": [outs[1]], "while_loop": [outs[2]]}[op]
    for a, b in zip(gc.Session().run(fetch, feeds), run(fetch, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("debug", [lambda c: gc.print(c, "c="), lambda c: gc.check_numerics(c, "c")])
def test_debug_ops_inside_a_body_are_a_clear_error(debug):
    with pytest.raises(gc.GraphcError, match=f"(?s)gc.print and gc.check_numerics are not supported inside a "
                                             f"gc.scan body.*loop's results after it.*{HERE}"):
        gc.scan(lambda c, _: (debug(c), None), np.float32(1), length=2)


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_check_numerics_option_checks_a_loops_results(backend):
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float32, (3, 2))
        carry, _ = gc.scan(lambda h, x: (gc.log(h + x), None), gc.ones((2,), gc.float32), xs)
    options = gc.CompileOptions(check_numerics=True)
    with gc.Session(g, backend=backend, options=options) as sess:
        want = np.ones(2)
        for _ in range(3):
            want = np.log(want + 1)
        np.testing.assert_allclose(sess.run(carry, {xs: np.ones((3, 2), np.float32)}), want, rtol=1e-6)
        with pytest.raises(gc.NumericsError, match="CompileOptions\\(check_numerics=True\\).*result"):
            sess.run(carry, {xs: -np.ones((3, 2), np.float32)})
