"""Size-independent planning (graphc.passes.sizing): decisions recorded once, replayed at other sizes."""

import re

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.backend import LLVM
from graphc.compiler import optimize
from graphc.passes.sizing import SizesDivergedError, Tape, decide, same, taping, unit_dim


def test_decide_outside_a_tape_is_the_value():
    assert decide("x", 3) == 3 and same((1, 5), (1, 5)) and unit_dim(1) and not unit_dim(2)


def test_a_tape_replays_the_recorded_decisions():
    tape = Tape()
    with taping(tape):
        assert unit_dim(1048583) is False and same((1048583, 5), (1, 5)) is False
        tape.finished()
    tape.rewind()
    with taping(tape):  # at N = 1 both would be True: the nominal build's answers are taken
        assert unit_dim(1) is False and same((1, 5), (1, 5)) is False
        tape.finished()
    assert tape.overridden == ["unit dim", "same shape"]


def test_a_diverging_build_raises():
    tape = Tape()
    with taping(tape):
        decide("parallel call", True)
        decide("gemm split", None)
    tape.rewind()
    with taping(tape), pytest.raises(SizesDivergedError, match="gemm split"):
        decide("gemm split", None)
    tape.rewind()
    with taping(tape), pytest.raises(SizesDivergedError, match="took 1 decisions"):
        decide("parallel call", False)
        tape.finished()


def _numbers_out(text):
    return re.sub(r"\d+(\.\d*)?(e-?\d+)?", "#", text)


def _plan_text(fetches, x, y, n, tape=None):
    shapes = {x: (n, 6), y: (n,)}
    if tape is None:
        opt = optimize(fetches, shapes, backend=LLVM)
        return _numbers_out(LLVM.lower(list(opt.module.outputs))[0].as_text())
    with taping(tape):
        opt = optimize(fetches, shapes, backend=LLVM)
        text = _numbers_out(LLVM.lower(list(opt.module.outputs))[0].as_text())
        tape.finished()
    tape.rewind()
    return text


def test_the_planner_at_batch_1_under_the_nominal_decisions_plans_the_same_steps():
    """An MLP's loss and gradients: planned alone, batch 1 and batch 2**20 + 7 differ (size-1
    dims, row-kernel limits, split reductions); replaying the large build's decisions, the
    plan at batch 1 is the same steps over other sizes."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 6), name="x")
    y = gc.placeholder(gc.int32, (None,), name="y")
    w1 = gc.Variable(rng.standard_normal((6, 5)).astype(np.float32), name="w1")
    w2 = gc.Variable(rng.standard_normal((5, 3)).astype(np.float32), name="w2")
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ w1) @ w2, y)
    fetches = [loss, *gc.gradients(loss, [w1, w2])]
    big = (1 << 20) + 7
    assert _plan_text(fetches, x, y, big) != _plan_text(fetches, x, y, 1)
    tape = Tape()
    nominal = _plan_text(fetches, x, y, big, tape)
    assert _plan_text(fetches, x, y, 1, tape) == nominal
    assert "unit dim" in tape.overridden
