import json

import numpy as np
import pytest

import graphc as gc


def _model():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    w = gc.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
    c = gc.constant(np.array([np.nan, np.inf], np.float64), name="c")
    y = gc.exp(x @ w).sum(axis=1)
    return x, w, c, y


def test_round_trip_text_and_values(tmp_path):
    x, w, c, y = _model()
    path = tmp_path / "g.json"
    gc.save({"y": y, "rest": [x, (c,)]}, path)
    loaded = gc.load(path).outputs
    assert gc.as_text(loaded["y"]) == gc.as_text(y)
    assert isinstance(loaded["rest"][1], tuple)
    lx, lc = loaded["rest"][0], loaded["rest"][1][0]
    assert lx.shape == (None, 3) and lx.dtype == np.float32
    feed = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    with gc.Session() as s1:
        want = s1.run(y, {x: feed})
    with gc.Session(loaded["y"].graph) as s2:
        got, cval = s2.run([loaded["y"], lc], {lx: feed})
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(cval, [np.nan, np.inf])


def test_saving_twice_gives_the_same_bytes(tmp_path):
    *_, y = _model()
    gc.save(y, tmp_path / "a.json")
    gc.save(gc.load(tmp_path / "a.json"), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


@pytest.mark.parametrize("content", [
    "", "not json", "[1, 2]", '{"format": "graphc-graph", "version": 99}',
    '{"format": "graphc-graph", "version": 1, "nodes": [{"op": "no_such_op", "inputs": [], "attrs": {}}],'
    ' "fetches": 0}',
    '{"format": "graphc-graph", "version": 1, "nodes": [{"op": "exp", "inputs": [3], "attrs": {}}], "fetches": 0}',
    '{"format": "graphc-graph", "version": 1, "nodes": [], "fetches": 5}',
    '{"format": "graphc-graph", "version": 1, "nodes": [{"op": "constant", "inputs": [], "attrs": {"value":'
    ' {"array": {"dtype": "float32", "shape": [4], "base64": "AAAA"}}}}], "fetches": 0}',
    '{"format": "graphc-graph", "version": 1, "nodes": [{"op": "constant", "inputs": [], "attrs": {"value":'
    ' {"__reduce__": "os.system"}}}], "fetches": 0}',
])
def test_garbled_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(gc.GraphcError):
        gc.load(path)


def test_truncated_real_file_is_refused(tmp_path):
    *_, y = _model()
    path = tmp_path / "g.json"
    gc.save(y, path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(gc.GraphcError):
        gc.load(path)


def test_format_is_plain_json(tmp_path):
    *_, y = _model()
    gc.save(y, tmp_path / "g.json")
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["format"] == "graphc-graph" and doc["version"] == 1
    assert [n["op"] for n in doc["nodes"]][:2] == ["placeholder", "variable"]


def _saved(tmp_path, fetches) -> tuple:
    path = tmp_path / "g.json"
    gc.save(fetches, path)
    return path, json.loads(path.read_text())


def _node(doc, op):
    return next(n for n in doc["nodes"] if n["op"] == op)


def _refused(path, doc, match):
    path.write_text(json.dumps(doc))
    with pytest.raises(gc.GraphcError, match=match):
        gc.load(path)


def test_crafted_variable_shape_is_refused_at_load(tmp_path):
    """A variable whose shape/dtype disagree with its initial array (a heap overflow once) is refused."""
    v = gc.Variable(np.ones(2, np.float32), name="v")
    path, doc = _saved(tmp_path, (v * 2.0).sum())
    _node(doc, "variable")["attrs"]["shape"] = {"tuple": [1000]}
    _refused(path, doc, r"node 0 \(variable\): .*initial value is float32\(2,\), the variable is declared "
                        r"float32\(1000,\)")
    _node(doc, "variable")["attrs"]["shape"] = {"tuple": [2]}
    _node(doc, "variable")["attrs"]["dtype"] = {"dtype": "float64"}
    _refused(path, doc, "initial value is float32")


def test_load_validates_attributes_and_arity(tmp_path):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reshape(gc.exp(x).sum(axis=1, keepdims=True), (-1,))
    path, original = _saved(tmp_path, y)
    cases = [
        ("sum", lambda a: a.pop("keepdims"), "missing attribute 'keepdims'"),
        ("sum", lambda a: a.update(bogus=1), "unknown attribute 'bogus'"),
        ("placeholder", lambda a: a.update(shape={"tuple": [2.5, 3]}), "attribute 'shape' must be a tuple of non-neg"),
        ("reshape", lambda a: a.update(shape={"tuple": [1.5]}), "attribute 'shape' must be a tuple of ints"),
        ("placeholder", lambda a: a.update(dtype="float32"), "attribute 'dtype' must be a supported dtype"),
        ("placeholder", lambda a: a.update(shape={"tuple": [-2, 3]}), "attribute 'shape' must be a tuple of non-neg"),
        ("placeholder", lambda a: a.update(uid=7), "'uid' is not saved"),
    ]
    for op, change, match in cases:
        doc = json.loads(json.dumps(original))
        change(_node(doc, op)["attrs"])
        _refused(path, doc, match)
    doc = json.loads(json.dumps(original))
    _node(doc, "exp")["inputs"] = [0, 0]
    _refused(path, doc, r"\(exp\): exp: takes 1 input\(s\), got 2")
    doc = json.loads(json.dumps(original))
    _node(doc, "exp")["inputs"] = []
    _refused(path, doc, r"exp: takes 1 input\(s\), got 0")
    for bad, match in (({"nodes": {}}, "no node list"), ({"nodes": [1]}, "node 0: a node is an object"),
                       ({"fetches": {"dict": [[1, 0]]}}, "bad fetch structure"),
                       ({"fetches": {"list": 3}}, "bad fetch structure")):
        doc = json.loads(json.dumps(original))
        doc.update(bad)
        _refused(path, doc, match)


def test_user_code_gets_the_same_attribute_checks():
    x = gc.placeholder(gc.float32, (3,), name="x")
    with pytest.raises(gc.GraphcError, match="unknown attribute 'nope'"):
        x.graph.make("exp", (x,), {"nope": 1})
    with pytest.raises(gc.GraphcError, match=r"takes 2 input\(s\), got 1"):
        x.graph.make("add", (x,))


def test_fuzz_findings_slice_spec_and_one_hot_arity_refused_at_load(tmp_path):
    """Crafted-file fuzzer findings (seed 7): a slice spec entry (None, None, (-5,)) and a one_hot
    with its input listed twice loaded, then raised a raw TypeError at the first run."""
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    path, original = _saved(tmp_path, [x[:, 1:3], gc.one_hot(labels, 5)])
    doc = json.loads(json.dumps(original))
    _node(doc, "slice")["attrs"]["spec"]["tuple"][1]["tuple"][2] = {"tuple": [-5]}
    _refused(path, doc, "attribute 'spec' must be a slice spec")
    doc = json.loads(json.dumps(original))
    one_hot = _node(doc, "one_hot")
    one_hot["inputs"] = one_hot["inputs"] * 2
    _refused(path, doc, r"one_hot: takes 1 input\(s\), got 2")
    path.write_text(json.dumps(original))
    loaded = gc.load(path).outputs
    with gc.Session(loaded[0].graph) as sess:
        got = sess.run(loaded, {loaded[0].inputs[0]: np.ones((2, 4), np.float32),
                                loaded[1].inputs[0]: np.array([1, 4], np.int32)})
    assert got[0].shape == (2, 2) and got[1].shape == (2, 5)


def test_load_returns_outputs_inputs_and_graph(tmp_path):
    x, w, c, y = _model()
    gc.save({"y": y}, tmp_path / "m.json")
    loaded = gc.load(tmp_path / "m.json")
    assert isinstance(loaded, gc.LoadedGraph) and set(loaded.outputs) == {"y"}
    assert list(loaded.inputs) == ["x"] and loaded.inputs["x"].op == "placeholder"
    assert loaded.graph is loaded.outputs["y"].graph
    assert loaded.graph.get_tensor_by_name("x:0") is loaded.inputs["x"]
    feed = np.ones((2, 3), np.float32)
    with gc.Session(loaded.graph) as sess:
        np.testing.assert_array_equal(sess.run(loaded.outputs["y"], {"x": feed}),
                                      gc.Session().run(y, {x: feed}))
    gc.save(loaded, tmp_path / "again.json")  # a LoadedGraph saves its outputs
    assert (tmp_path / "again.json").read_text() == (tmp_path / "m.json").read_text()
