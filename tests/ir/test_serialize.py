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
    loaded = gc.load(path)
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
