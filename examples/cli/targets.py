"""Small graphs for the `graphc` command line (see `graphc --help`).

    graphc passes examples/cli/targets.py:mlp
    graphc memory examples/cli/targets.py:chain
"""

import numpy as np

import graphc as gc


def mlp():
    """Loss and gradients of a 64-32-10 ReLU MLP; the batch dim is bound to 16."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    w1 = gc.Variable(rng.standard_normal((64, 32)).astype(np.float32) * 0.1, name="w1")
    b1 = gc.Variable(np.zeros(32, np.float32), name="b1")
    w2 = gc.Variable(rng.standard_normal((32, 10)).astype(np.float32) * 0.1, name="w2")
    logits = gc.relu(x @ w1 + b1) @ w2
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    grads = gc.gradients(loss, [w1, b1, w2])
    return [loss, *grads], {"x": (16, 64), "labels": (16,)}


def chain(layers: int = 16):
    """A chain of `layers` tanh layers and the gradients of all its weights (for checkpointing)."""
    rng = np.random.default_rng(0)
    h = gc.placeholder(gc.float32, (32, 64), name="x")
    ws = [gc.Variable(rng.standard_normal((64, 64)).astype(np.float32) * 0.1, name=f"w{i}") for i in range(layers)]
    for w in ws:
        h = gc.tanh(h @ w)
    loss = gc.sum(h * h)
    return [loss, *gc.gradients(loss, ws)]


def w1():
    """The W1 benchmark graph: L = sum(tanh(x)*sigmoid(x) + 0.5*x*x) and dL/dx."""
    x = gc.placeholder(gc.float32, (1000,), name="x")
    loss = gc.sum(gc.tanh(x) * gc.sigmoid(x) + 0.5 * x * x)
    return [loss, *gc.gradients(loss, [x])]
