"""gc.custom_gradient: a subgraph with its own VJP (clipped and straight-through examples)."""

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads


@gc.custom_gradient
def clip_gradient(x):
    """Identity forward; the cotangent is clipped to [-1, 1] on the way back."""
    return gc.identity(x), lambda dy: gc.clip(dy, -1.0, 1.0)


@gc.custom_gradient
def straight_through_round(x):
    """round forward; the gradient passes straight through (as if round were the identity)."""
    return gc.round(x), lambda dy: dy


def test_clipped_gradient(run):
    x = gc.placeholder(gc.float64, (4,))
    y = clip_gradient(x)
    loss = gc.sum(y * np.array([5.0, -3.0, 0.5, 0.0]))
    (g,) = gc.gradients(loss, x)
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    yv, gv = run([y, g], {x: xv})
    np.testing.assert_array_equal(yv, xv)
    np.testing.assert_array_equal(gv, [1.0, -1.0, 0.5, 0.0])
    assert "custom_vjp(" in gc.as_text(y) and "clip(" in gc.as_text(g)


def test_straight_through_estimator(run):
    x = gc.placeholder(gc.float64, (3,))
    w = np.array([2.0, -1.0, 0.5])
    loss = gc.sum(straight_through_round(x) * w)
    (g,) = gc.gradients(loss, x)
    (plain,) = gc.gradients(gc.sum(gc.round(x) * w), x, unconnected="zero")
    xv = np.array([0.4, 1.6, -2.2])
    lv, gv, pv = run([loss, g, plain], {x: xv})
    assert lv == np.sum(np.round(xv) * w)
    np.testing.assert_array_equal(gv, w)
    np.testing.assert_array_equal(pv, np.zeros(3))  # round itself has zero gradient


def test_several_inputs_none_cotangent_and_keyword_config(run):
    @gc.custom_gradient
    def scaled_product(a, b, scale=1.0):
        return a * b * scale, lambda dy: (dy * b * scale, None)

    a = gc.placeholder(gc.float64, (2,))
    b = gc.placeholder(gc.float64, (2,))
    y = scaled_product(a, b, scale=3.0)
    ga, gb = gc.gradients(gc.sum(y), [a, b])
    assert gb is None
    av, bv = np.array([1.0, 2.0]), np.array([3.0, -4.0])
    yv, gav = run([y, ga], {a: av, b: bv})
    np.testing.assert_array_equal(yv, av * bv * 3)
    np.testing.assert_array_equal(gav, bv * 3)


def test_custom_gradient_is_differentiable_again():
    @gc.custom_gradient
    def softplus(x):
        return gc.log1p(gc.exp(x)), lambda dy: dy * gc.sigmoid(x)

    check_grads(softplus, [np.array([-2.0, 0.3, 1.5])], order=2)


def test_forward_mode_differentiates_the_forward_subgraph(run):
    x = gc.placeholder(gc.float64, (2,))
    (t,) = gc.jvp(clip_gradient(x) * 10.0, x, [np.ones(2)])
    np.testing.assert_array_equal(run(t, {x: [1.0, 2.0]}), [10.0, 10.0])


def test_no_grad_around_a_custom_op():
    x = gc.placeholder(gc.float64, (2,))
    with gc.no_grad():
        y = clip_gradient(x)
    assert gc.gradients(gc.sum(y), x) == [None]


def test_bad_custom_gradients():
    x = gc.placeholder(gc.float64, (2,))

    @gc.custom_gradient
    def no_grad_fn(x):
        return x * 2

    with pytest.raises(gc.GraphcError, match=r"\(y, grad_fn\)"):
        no_grad_fn(x)

    @gc.custom_gradient
    def too_many(x):
        return x * 2, lambda dy: (dy, dy)

    with pytest.raises(gc.GraphcError, match="2 cotangents for 1 inputs"):
        gc.gradients(gc.sum(too_many(x)), x)

    @gc.custom_gradient
    def two_outputs(x):
        return (x, x), lambda dy: dy

    with pytest.raises(gc.GraphcError, match="one tensor"):
        two_outputs(x)
