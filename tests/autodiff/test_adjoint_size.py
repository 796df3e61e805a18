"""The adjoint graph of an MLP is at most a small constant factor larger than the forward graph."""

import numpy as np
import pytest

import graphc as gc
from graphc.ir.traverse import toposort


def _mlp(depth, width=16):
    x = gc.placeholder(gc.float32, (None, width), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    params, h = [], x
    for _ in range(depth):
        w = gc.Variable(np.zeros((width, width), np.float32))
        b = gc.Variable(np.zeros(width, np.float32))
        params += [w, b]
        h = gc.relu(h @ w + b)
    return gc.nn.softmax_cross_entropy(h, labels), params


@pytest.mark.parametrize("depth", [1, 4, 16])
def test_gradient_graph_size_is_linear_in_forward_size(depth):
    loss, params = _mlp(depth)
    grads = gc.gradients(loss, params)
    forward = len(toposort([loss]))
    total = len(toposort([loss, *grads]))
    print(f"depth {depth}: forward graph {forward} nodes, forward + gradient graph {total} nodes "
          f"({total / forward:.2f}x)")
    assert total - forward <= 2 * forward
