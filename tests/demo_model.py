"""The examples/mlp_digits.py model for tests: 64-H-10 MLP, ReLU, softmax cross-entropy, accuracy."""

import graphc as gc


def demo_step(optimizer, hidden: int = 128):
    """((x, labels) placeholders with a None batch dim, [loss, correct, train op]) in the default graph."""
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    h = gc.nn.dense(x, hidden, activation=gc.relu, name="hidden", seed=0)
    logits = gc.nn.dense(h, 10, name="logits", seed=1)
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    correct = gc.sum(gc.cast(gc.equal(gc.argmax(logits, axis=1), gc.cast(labels, gc.int64)), gc.int32))
    return (x, labels), [loss, correct, optimizer.minimize(loss)]
