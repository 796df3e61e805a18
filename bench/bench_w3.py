"""W3: y = x*w + b on 4-element float32 vectors: microseconds per run, value and value+grad.

x is fed on every run; w and b are variables (session state). The gradient is that of
sum(y) with respect to w and b. Targets (issue 11): `Session.run` within 2x of numpy's own
time for the same tiny expression, `gc.function` (w and b as variables) within 1.2x.
"""

from __future__ import annotations

import numpy as np
from _timing import attempt, compare, measure, start, table

X = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
W = np.array([0.5, 0.25, -1.0, 2.0], np.float32)
B = np.array([0.1, 0.2, 0.3, 0.4], np.float32)


def numpy_value(x: np.ndarray) -> np.ndarray:
    return x * W + B


def numpy_value_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = x * W + B
    gy = np.ones_like(y)
    return y, gy * x, gy


def check(name: str, got, want) -> None:
    if not all(np.allclose(g, w) for g, w in zip(got, want)):
        raise AssertionError(f"{name} disagrees with numpy")


def graphc_step(gc, grad: bool):
    """A callable making one `Session.run` (checked once against numpy)."""
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (4,), name="x")
        w, b = gc.Variable(W, name="w"), gc.Variable(B, name="b")
        y = x * w + b
        fetches = [y, *gc.gradients(gc.sum(y), [w, b])] if grad else [y]
        sess = gc.Session()
        check("graphc", sess.run(fetches, {x: X}), numpy_value_grad(X) if grad else [numpy_value(X)])
    return lambda: sess.run(fetches, {x: X})


def graphc_timing(gc, grad: bool, args):
    return measure(graphc_step(gc, grad), args.repeat, args.target)


def function_timing(gc, grad: bool, args):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (4,), name="x")
        w, b = gc.Variable(W, name="w"), gc.Variable(B, name="b")
        y = x * w + b
        f = gc.function([x], [y, *gc.gradients(gc.sum(y), [w, b])] if grad else y)
        check("gc.function", f(X) if grad else [f(X)], numpy_value_grad(X) if grad else [numpy_value(X)])
        return measure(lambda: f(X), args.repeat, args.target)


def jax_step(jax, grad: bool):
    jnp = jax.numpy
    w, b = jax.device_put(W), jax.device_put(B)

    def f(x, w, b):
        return x * w + b

    def value_grad(x, w, b):
        y, pullback = jax.vjp(lambda w_, b_: f(x, w_, b_), w, b)
        return (y, *pullback(jnp.ones_like(y)))

    fn = jax.jit(value_grad if grad else f)
    out = fn(X, w, b)
    check("jax", out if grad else [out], numpy_value_grad(X) if grad else [numpy_value(X)])
    return lambda: jax.block_until_ready(fn(X, w, b))


def jax_timing(jax, grad: bool, args):
    return measure(jax_step(jax, grad), args.repeat, args.target)


def torch_step(torch, grad: bool):
    x, w, b = torch.from_numpy(X), torch.from_numpy(W.copy()), torch.from_numpy(B.copy())
    if not grad:
        def value():
            with torch.no_grad():
                return x * w + b

        check("torch", [value().numpy()], [numpy_value(X)])
        return value
    w.requires_grad_(True)
    b.requires_grad_(True)

    def step():
        w.grad = b.grad = None
        y = x * w + b
        y.sum().backward()
        return y.detach(), w.grad, b.grad

    check("torch", [t.numpy() for t in step()], numpy_value_grad(X))
    return step


def torch_timing(torch, grad: bool, args):
    return measure(torch_step(torch, grad), args.repeat, args.target)


def main() -> None:
    args, gc, backend, jax, torch = start(__doc__)
    for grad in (False, True):
        fn = numpy_value_grad if grad else numpy_value
        results = {"numpy": measure(lambda: fn(X), args.repeat, args.target)}
        results[f"graphc Session.run ({backend})"] = attempt(lambda: graphc_timing(gc, grad, args)) if gc else backend
        results[f"graphc gc.function ({backend})"] = attempt(lambda: function_timing(gc, grad, args)) if gc else backend
        results["jax.jit"] = attempt(lambda: jax_timing(jax, grad, args)) if jax else "not installed"
        results["torch eager"] = attempt(lambda: torch_timing(torch, grad, args)) if torch else "not installed"
        print(table(f"W3 y = x*w + b, 4 float32, {'value + grad' if grad else 'value'}, per run",
                    compare(results), ["impl", "median", "spread", "speed vs numpy"]))


if __name__ == "__main__":
    main()
