"""`loops.printed` (with `irtext`'s lines for the common instructions) gives llvmlite's own text."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import codegen, irtext, loops, tiled


def _plan(fetches, feeds):
    with gc.Session(backend="llvm") as sess:
        sess.run(fetches, feeds)
        (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    return prog.plan


def _training_step():
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (64, 48), name="x")
    y = gc.placeholder(gc.int32, (64,), name="y")
    w1 = gc.Variable(rng.normal(size=(48, 96)).astype(np.float32) * 0.1)
    w2 = gc.Variable(rng.normal(size=(96, 10)).astype(np.float32) * 0.1)
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ w1) @ w2, y)
    update = gc.group(*[gc.assign_sub(w, 0.1 * g) for w, g in zip((w1, w2), gc.gradients(loss, [w1, w2]))])
    return [loss, update], {x: rng.normal(size=(64, 48)).astype(np.float32), y: rng.integers(0, 10, 64)}


def _math_and_loop():
    x = gc.placeholder(gc.float64, (7, 5), name="x")
    h = gc.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, gc.tanh(c[1]) * gc.exp(-c[1])), (0, x))[1]
    out = gc.where(h > 0, gc.log1p(h * h), gc.erf(h)).sum(axis=1)
    return [out], {x: np.linspace(-2, 2, 35).reshape(7, 5)}


def _long_entry():
    x = gc.placeholder(gc.float32, (16,), name="x")
    outs, h = [], x
    for k in range(codegen.UNOPTIMIZED_ENTRY_STEPS + 8):  # an entry compiled optnone, its calls apart
        h = gc.sin(h) + float(k)
        outs.append(gc.sum(h))
    return outs, {x: np.ones(16, np.float32)}


@pytest.mark.parametrize("make", [_training_step, _math_and_loop, _long_entry])
def test_program_text_is_llvmlites(make):
    with gc.Graph().as_default():
        plan = _plan(*make())
    mine, theirs = codegen.build_module(plan), codegen.build_module(plan)
    instructions = [i for fn in mine.functions for b in fn.blocks for i in b.instructions]
    assert sum(irtext.text(i) is not None for i in instructions) > 0.9 * len(instructions)
    assert loops.printed(mine) == str(theirs)


def test_tiled_kernel_text_is_llvmlites():
    if tiled.blocking(np.dtype(np.float32)) is None:
        pytest.skip("no tiled kernel on this host")

    def module():
        f = loops.FunctionBuilder(loops.ir.Module(name="k"), "k", [loops.PTR, loops.I64, loops.I64], internal=False)
        tiled._Kernel(f, loops.F32, *tiled.blocking(np.dtype(np.float32))).emit()
        f.finish()
        return f.fn.module

    assert loops.printed(module()) == str(module())
