"""gc.print, gc.check_numerics and CompileOptions(check_numerics=True) on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm.steps import HostCall

BACKENDS = ["llvm", "reference"]


def _line(marker: str) -> int:
    """The line of this file that contains `marker` (the user's line an error must name)."""
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if marker in line and "_line(" not in line)


@pytest.mark.parametrize("backend", BACKENDS)
def test_print_writes_message_and_value_each_run(backend, capfd):
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    y = gc.print(x * 2.0, message="twice x:", summarize=1)
    with gc.Session(backend=backend) as sess:
        out = sess.run(gc.sum(y), {x: np.arange(8, dtype=np.float32).reshape(2, 4)})
        assert out == 56.0
        sess.run(gc.sum(y), {x: np.ones((1, 4), np.float32)})
        sess.run(gc.group(gc.print(x, "grouped")), {x: np.zeros((1, 4), np.float32)})  # kept by DCE: an effect
    printed = capfd.readouterr().out.splitlines()
    assert printed == ["twice x: [[ 0. ...  6.]", " [ 8. ... 14.]]", "twice x: [[2. ... 2.]]",
                       "grouped [[0. 0. 0. 0.]]"]


def test_print_in_a_function_and_its_gradient(capfd):
    x = gc.placeholder(gc.float64, (3,), name="x")
    y = gc.print(gc.sin(x), "sin", summarize=-1)
    f = gc.function([x], [y, gc.gradients(gc.sum(y * y), x)[0]])
    xv = np.array([0.5, 1.0, 2.0])
    value, grad = f(xv)
    np.testing.assert_allclose(grad, 2 * np.sin(xv) * np.cos(xv))
    assert capfd.readouterr().out == f"sin {np.array2string(np.sin(xv), separator=' ')}\n"  # once per call


def _failing_step(dtype=np.float32):
    """A step whose check fails on negative x, with a variable assignment independent of it."""
    x = gc.placeholder(dtype, (3,), name="x")
    v = gc.Variable(np.ones(3, dtype), name="v")
    w = gc.Variable(np.ones(3, dtype), name="w")
    checked = gc.check_numerics(gc.log(x), message="log of x")  # the check's line
    step = gc.group(gc.assign(v, v * 2.0), gc.assign(w, w + checked))
    return x, v, w, checked, step


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_numerics_stops_the_run_and_changes_no_variable(backend):
    x, v, w, checked, step = _failing_step()
    with gc.Session(backend=backend) as sess:
        sess.run(step, {x: np.ones(3, np.float32)})
        before = sess.variable_value(v), sess.variable_value(w)
        for _ in range(2):  # also through the cached callable of a repeated run
            with pytest.raises(gc.NumericsError) as err:
                sess.run([checked, step], {x: np.array([1.0, -1.0, 0.0], np.float32)})
            message = str(err.value)
            assert "log of x" in message and "op log" in message and "1 NaN and 1 Inf" in message
            assert f"{__file__}:{_line('# the check' + chr(39) + 's line')}" in message
            np.testing.assert_array_equal(sess.variable_value(v), before[0])
            np.testing.assert_array_equal(sess.variable_value(w), before[1])
        sess.run(step, {x: np.ones(3, np.float32)})  # the session works on
        np.testing.assert_array_equal(sess.variable_value(v), before[0] * 2)


def test_a_program_with_host_calls_writes_variables_only_after_them():
    x, v, w, checked, step = _failing_step()
    with gc.Session() as sess:
        program = sess.compile(step, {x: np.ones(3, np.float32)})
    steps = program.plan.steps
    last_host = max(i for i, s in enumerate(steps) if isinstance(s, HostCall))
    writers = [i for i, s in enumerate(steps) if not isinstance(s, HostCall) and hasattr(s, "out")
               and s.out.buffer.kind == "variable"]
    assert len(writers) == 2 and min(writers) > last_host


def test_check_numerics_in_a_function_keeps_the_updates_back():
    x, v, w, checked, step = _failing_step(np.float64)
    f = gc.function([x], checked, updates=[(v, v + 1.0)])
    np.testing.assert_allclose(f(np.full(3, np.e)), 1.0)
    for _ in range(2):
        with pytest.raises(gc.NumericsError, match="log of x"):
            f(np.array([1.0, 2.0, -3.0]))
    np.testing.assert_array_equal(f.session.variable_value(v), [2.0, 2.0, 2.0])


def test_print_refuses_a_bad_summarize():
    x = gc.placeholder(gc.float32, (2,), name="x")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(gc.GraphcError, match=f"summarize.*{bad!r}"):
            gc.print(x, summarize=bad)


def test_check_numerics_refuses_integers():
    with pytest.raises(gc.DTypeError, match=f"(?s)check_numerics.*int32.*{_line('gc.check_numerics(n)')}"):
        n = gc.placeholder(gc.int32, (2,), name="n")
        gc.check_numerics(n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_option_checks_every_float_op(backend):
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = gc.sqrt(x) * 2.0  # the op that fails
    loss = gc.sum(y * y)
    options = gc.CompileOptions(check_numerics=True)
    with gc.Session(backend=backend, options=options) as sess:
        assert sess.run(loss, {x: np.array([1.0, 4.0], np.float32)}) == 20.0
        with pytest.raises(gc.NumericsError) as err:
            sess.run(loss, {x: np.array([1.0, -4.0], np.float32)})
    message = str(err.value)
    assert "CompileOptions(check_numerics=True)" in message and "op sqrt" in message
    assert f":{_line('# the op that fails')}" in message
    with gc.Session(backend=backend) as sess:  # without the option the NaN goes through
        assert np.isnan(sess.run(loss, {x: np.array([1.0, -4.0], np.float32)}))


def test_compile_option_in_a_function():
    x = gc.placeholder(gc.float64, (2,), name="x")
    f = gc.function([x], gc.sum(gc.log(x)), options=gc.CompileOptions(check_numerics=True))
    assert f(np.array([1.0, 1.0])) == 0.0
    with pytest.raises(gc.NumericsError, match="op log"):
        f(np.array([1.0, 0.0]))
    assert "check_numerics" in f.as_text("graph")
