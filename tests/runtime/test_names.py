import numpy as np
import pytest

import graphc as gc


def _graph():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 2), name="inputs")
        w = gc.Variable(np.ones((2, 2), np.float32), name="w")
        y = gc.matmul(x, w)  # named after its op: "matmul"
    return g, x, w, y


def test_lookup_by_name_and_tf1_tensor_names():
    g, x, w, y = _graph()
    assert g.get_tensor_by_name("inputs") is x
    assert g.get_tensor_by_name("inputs:0") is x
    assert g.get_operation_by_name("w") is w
    assert g.get_tensor_by_name("matmul:0") is y
    with pytest.raises(gc.GraphcError, match=r"no node named 'input'; did you mean 'inputs'"):
        g.get_tensor_by_name("input")
    with pytest.raises(gc.GraphcError, match=r"no node named 'nothing_alike'$"):
        g.get_operation_by_name("nothing_alike")
    with pytest.raises(gc.GraphcError, match="one output, matmul:0"):
        g.get_tensor_by_name("matmul:1")
    with pytest.raises(gc.GraphcError, match="must be a string"):
        g.get_tensor_by_name(x)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_feed_dict_keys_may_be_names(backend):
    g, x, w, y = _graph()
    feed = np.arange(6, dtype=np.float32).reshape(3, 2)
    with gc.Session(g, backend=backend) as sess:
        want = sess.run(y, {x: feed})
        np.testing.assert_array_equal(sess.run(y, {"inputs": feed}), want)
        np.testing.assert_array_equal(sess.run(y, {"inputs:0": feed.tolist()}), want)
        with pytest.raises(gc.FeedError, match="did you mean 'inputs'"):
            sess.run(y, {"input": feed})
        with pytest.raises(gc.FeedError, match="'w' is not a placeholder|w .* is not a placeholder"):
            sess.run(y, {"w": feed})
        with pytest.raises(gc.FeedError, match="fed twice"):
            sess.run(y, {"inputs": feed, x: feed})
