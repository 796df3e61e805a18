import numpy as np
import pytest

import graphc as gc


def test_nodes_are_interned():
    x = gc.placeholder(gc.float32, (None, 3))
    assert (x * 2.0) is (x * 2.0)
    assert gc.exp(x) is gc.exp(x)
    assert gc.placeholder(gc.float32, (3,)) is not gc.placeholder(gc.float32, (3,))


def test_tensors_are_immutable():
    x = gc.placeholder(gc.float32, (3,))
    with pytest.raises(AttributeError):
        x.op = "other"


def test_graph_context_and_default():
    g = gc.Graph()
    with g.as_default():
        assert gc.get_default_graph() is g
        x = gc.constant(1.0)
    assert x.graph is g
    assert gc.get_default_graph() is not g


def test_mixing_graphs_is_refused():
    a = gc.constant(1.0)
    with gc.Graph().as_default():
        b = gc.constant(2.0)
    with pytest.raises(gc.GraphcError, match="another graph"):
        gc.add(a, b)


def test_shape_error_names_op_shapes_and_line():
    a = gc.placeholder(gc.float32, (2, 3), name="a")
    b = gc.placeholder(gc.float32, (4, 3), name="b")
    with pytest.raises(gc.ShapeError) as info:
        a @ b
    msg = str(info.value)
    assert "matmul" in msg and "(2, 3)" in msg and "(4, 3)" in msg
    assert "test_graph.py:" in msg
    assert isinstance(info.value, ValueError)


def test_python_scalars_take_the_tensor_dtype():
    x = gc.placeholder(gc.float32, (3,))
    assert (x * 2).dtype == np.float32
    assert (2.5 * x).dtype == np.float32
    i = gc.placeholder(gc.int32, (3,))
    assert (i + 1).dtype == np.int32


def test_session_runs_fetch_structures():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.sum(x * 2.0, axis=1)
    with gc.Session() as sess:
        out = sess.run({"y": y, "both": [y, (x,)]}, {x: np.ones((2, 3))})
    np.testing.assert_array_equal(out["y"], [6.0, 6.0])
    assert isinstance(out["both"][1], tuple)
    assert out["both"][1][0].dtype == np.float32


def _live_nodes(graph):
    import gc as pygc

    pygc.collect()
    return set(graph.nodes)


def test_a_user_graph_keeps_every_node_as_tf1s_does():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (3,), name="x")
        gc.exp(x)
    assert [n.op for n in g.nodes] == ["placeholder", "exp"]


def test_a_weak_graph_frees_a_dropped_subgraph_and_still_interns_live_nodes():
    import weakref

    g = gc.Graph(keep_all=False)
    with g.as_default():
        x = gc.placeholder(gc.float32, (3,), name="x")
        w = gc.Variable(np.ones(3, np.float32), name="w")
        y = gc.tanh(x * w)
        assert gc.tanh(x * w) is y  # live nodes are still interned
        dead = weakref.ref(gc.exp(x) + 1.0)
        for _ in range(200):
            gc.gradients(gc.sum(gc.sigmoid(x * 3.0)), [x])  # built and dropped
        assert dead() is None
        assert _live_nodes(g) == {x, w, x * w, y} and g.variables == [w]  # the graph keeps its variables
        assert [n.name for n in g.nodes] == ["x", "w", "multiply", "tanh"]


def test_a_compiled_program_keeps_only_its_module_alive():
    """The passes' intermediate nodes in the program's bound graph are freed once the pipeline is done."""
    from graphc.ir.traverse import toposort

    x = gc.placeholder(gc.float32, (4, 3), name="x")
    w = gc.Variable(np.ones((3, 2), np.float32))
    loss = gc.sum(gc.log(gc.nn.softmax(x @ w)) * -1.0 + 0.0)
    (gw,) = gc.gradients(loss, [w])
    with gc.Session() as sess:
        program = sess.compile([loss, gw], {x: np.ones((4, 3), np.float32)})
        module = program.optimized.module
        bound = module.outputs[0].graph
        assert bound is not x.graph
        assert _live_nodes(bound) == set(toposort(module.outputs)) | set(bound.variables)
