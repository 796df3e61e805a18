"""graphc.testing.check_grads: passes on correct derivatives, fails readably on wrong ones."""

from dataclasses import replace

import numpy as np
import pytest

import graphc as gc
from graphc.ops import registry
from graphc.testing import check_grads

rng = np.random.default_rng(0)


def test_passes_on_correct_derivatives(backend):
    check_grads(lambda x, w: gc.sum(gc.sin(x) * w), [rng.standard_normal((3, 1)), rng.standard_normal(4)],
                order=2, backend=backend)
    check_grads(lambda x: gc.exp(x) @ gc.transpose(x), [rng.standard_normal((2, 3))], modes=("rev",))


def test_reports_a_wrong_reverse_rule():
    @gc.custom_gradient
    def wrong(x):
        return gc.exp(x), lambda dy: dy * 2.0

    with pytest.raises(AssertionError) as info:
        check_grads(wrong, [rng.standard_normal(3)])
    msg = str(info.value)
    for part in ("reverse mode", "input 0", "expected:", "got:", "max abs error", "custom_vjp("):
        assert part in msg, msg


def test_reports_a_wrong_forward_rule(monkeypatch):
    op = registry.get_op("sin")
    monkeypatch.setitem(registry._REGISTRY, "sin", replace(op, jvp=lambda t, out, x: t[0] * gc.sin(x)))
    check_grads(lambda x: gc.sin(x), [rng.standard_normal(3)], modes=("rev",))
    with pytest.raises(AssertionError, match="forward mode") as info:
        check_grads(lambda x: gc.sin(x), [rng.standard_normal(3)], modes=("fwd",))
    assert "sin(%x0)" in str(info.value)


def test_order_two_catches_a_wrong_second_derivative():
    @gc.custom_gradient
    def cube(x):  # right first derivative, but the rule hides its dependence on x
        return x * x * x, lambda dy: dy * gc.stop_gradient(3.0 * x * x)

    xs = [rng.standard_normal(4)]
    check_grads(cube, xs, order=1)
    with pytest.raises(AssertionError, match="derivative of cube"):
        check_grads(cube, xs, order=2)


def test_names_the_input_that_is_wrong():
    @gc.custom_gradient
    def half_wrong(a, b):
        return a * b, lambda dy: (dy * b, dy * a * 3.0)

    with pytest.raises(AssertionError, match="input 1"):
        check_grads(half_wrong, [rng.standard_normal(2), rng.standard_normal(2)], modes=("rev",))


def test_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        check_grads(gc.sin, [np.ones(2)], order=0)
    with pytest.raises(ValueError, match="modes"):
        check_grads(gc.sin, [np.ones(2)], modes=("forward",))
    with pytest.raises(TypeError, match="float64"):
        check_grads(lambda x: gc.cast(x, gc.float32), [np.ones(2)])
    with pytest.raises(TypeError, match="floating tensor"):
        check_grads(lambda x: x > 0, [np.ones(2)])
