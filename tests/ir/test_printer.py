"""Golden tests of the text form (set GRAPHC_UPDATE_GOLDEN=1 to rewrite the files after a deliberate change)."""

import os
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

GOLDEN = Path(__file__).parent / "golden"


def _mlp():
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    w = gc.Variable(np.zeros((4, 3), np.float32), name="w")
    b = gc.Variable(np.zeros((3,), np.float32), name="b")
    h = gc.exp(x @ w + b)
    return [gc.sum(h, axis=-1, keepdims=True), gc.transpose(h)]


def _shapes():
    x = gc.placeholder(gc.float64, (2, 3, 4), name="x")
    y = gc.reshape(gc.transpose(x, (2, 0, 1)), (4, -1))
    z = gc.broadcast_to(gc.expand_dims(gc.sum(y, axis=0), 0), (5, 6))
    return [z, gc.cast(z, gc.int32) < 3]


def _constants():
    big = gc.constant(np.arange(20, dtype=np.int32).reshape(4, 5))
    small = gc.constant([[1.5, -2.0]])
    return [gc.sum(big * 2, axis=(0, 1)), small * np.float32(0.5)]


CASES = {"mlp": _mlp, "shapes": _shapes, "constants": _constants}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_text(name):
    text = gc.as_text(CASES[name]())
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("GRAPHC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_is_deterministic_across_graphs(name):
    first = gc.as_text(CASES[name]())
    with gc.Graph().as_default():
        assert gc.as_text(CASES[name]()) == first


def test_whole_graph_prints_every_node():
    x = gc.placeholder(gc.float32, (3,), name="x")
    gc.exp(x)
    gc.sum(x * 2.0)
    text = gc.as_text(gc.get_default_graph())
    assert "exp(%x)" in text and "sum(" in text
    assert text.splitlines()[-1].startswith("return %")


def test_gather_is_take_along_axis_zero():
    x = gc.constant(np.arange(12.0).reshape(4, 3))
    with gc.Session(backend="reference") as sess:
        np.testing.assert_array_equal(sess.run(gc.gather(x, [2, 0])), np.arange(12.0).reshape(4, 3)[[2, 0]])
