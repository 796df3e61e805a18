"""Derivatives at kinks, ties and domain edges: the convention table of docs/autodiff.md.

The table's rows are kinks.KINKS; each point is checked in reverse and forward mode on
every backend, and the doc's table must name exactly the rows of KINKS plus the ops that
have no gradient.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from kinks import KINKS

import graphc as gc

DOC = Path(__file__).resolve().parents[2] / "docs" / "autodiff.md"
NO_GRADIENT = {"floor", "ceil", "round", "sign", "argmax", "argmin", "size_of", "one_hot", "cast", "take",
               "stop_gradient", "no_grad"}


def _doc_rows() -> set[str]:
    text = DOC.read_text()
    section = text[text.index("## Rules at non-differentiable points"):]
    section = section[:section.index("\n## ", 1)]
    names = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            names.update(re.findall(r"`([a-z_0-9.]+)", cells[1]))
    return names


def test_doc_table_and_kinks_name_the_same_rows():
    rows = _doc_rows()
    assert set(KINKS) <= rows, f"docs/autodiff.md's table lacks rows for {sorted(set(KINKS) - rows)}"
    untested = sorted(rows - set(KINKS) - NO_GRADIENT)
    assert not untested, f"rows without test points in kinks.KINKS: {untested}"


@pytest.mark.parametrize("name", sorted(KINKS))
def test_convention_table(name, run):
    for kink in KINKS[name]:
        arrays = kink.arrays()
        xs = [gc.placeholder(gc.float64, a.shape) for a in arrays]
        y = gc.sum(kink.build(*xs))
        grads = gc.gradients(y, xs, unconnected="zero")
        ones = [np.ones(a.shape) for a in arrays]
        tangents = [gc.jvp(y, xs, [o if j == i else None for j, o in enumerate(ones)])[0] for i in range(len(xs))]
        got = run([*grads, *tangents], dict(zip(xs, arrays)))
        for i, want in enumerate(kink.grads):
            np.testing.assert_allclose(got[i], want, rtol=1e-15, err_msg=f"{name} at {kink.where}: d/d input {i}")
            np.testing.assert_allclose(got[len(xs) + i], np.sum(want), rtol=1e-15,
                                       err_msg=f"{name} at {kink.where}: forward mode, input {i}")


def test_piecewise_constant_ops_have_zero_gradient(run):
    x = gc.placeholder(gc.float64, (4,))
    for fn in (gc.floor, gc.ceil, gc.round, gc.sign):
        (g,) = gc.gradients(gc.sum(fn(x)), x, unconnected="zero")
        (t,) = gc.jvp(gc.sum(fn(x)), x, [np.ones(4)])
        gv, tv = run([g, t], {x: [-1.5, 0.0, 0.5, 2.0]})
        np.testing.assert_array_equal(gv, np.zeros(4))
        assert tv == 0
    assert gc.gradients(gc.argmax(x), x) == [None]
    assert gc.gradients(gc.cast(x > 0, gc.float64), x) == [None]
