"""W1: L = sum(tanh(x) * sigmoid(x) + 0.5 * x * x) and dL/dx, x float32 of 1e6 and 1e7 elements.

Target (issue 4): graphc at least 10x faster than numpy eager at 1e7.
"""

from __future__ import annotations

import numpy as np
from _timing import attempt, compare, measure, start, table

SIZES = (1_000_000, 10_000_000)


def numpy_step(x: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """Forward and hand-written backward, as one would write them in numpy."""
    t = np.tanh(x)
    s = 1 / (1 + np.exp(-x))
    loss = np.sum(t * s + 0.5 * x * x)
    grad = (1 - t * t) * s + t * s * (1 - s) + x
    return loss, grad


def reference(x: np.ndarray) -> tuple[float, np.ndarray]:
    x64 = x.astype(np.float64)
    loss, grad = numpy_step(x64)
    return float(loss), grad


def check(name: str, loss: float, grad: np.ndarray, ref: tuple[float, np.ndarray]) -> None:
    if not (np.isclose(loss, ref[0], rtol=1e-4) and np.allclose(grad, ref[1], rtol=1e-4, atol=1e-5)):
        raise AssertionError(f"{name} disagrees with the float64 reference (loss {loss} vs {ref[0]})")


def graphc_step(gc, x: np.ndarray, ref):
    """A callable running the compiled value and gradient (checked once against the reference)."""
    with gc.Graph().as_default():
        xp = gc.placeholder(gc.float32, x.shape, name="x")
        loss = gc.sum(gc.tanh(xp) * gc.sigmoid(xp) + 0.5 * xp * xp)
        (grad,) = gc.gradients(loss, [xp])
        sess = gc.Session()
    value, g = sess.run([loss, grad], {xp: x})
    check("graphc", float(value), g, ref)
    return lambda: sess.run([loss, grad], {xp: x})


def graphc_timing(gc, x: np.ndarray, ref, args) -> object:
    return measure(graphc_step(gc, x, ref), args.repeat, args.target)


def jax_step(jax, x: np.ndarray, ref):
    jnp = jax.numpy

    def f(v):
        return jnp.sum(jnp.tanh(v) * jax.nn.sigmoid(v) + 0.5 * v * v)

    step = jax.jit(jax.value_and_grad(f))
    xd = jax.device_put(x)
    value, g = step(xd)
    check("jax", float(value), np.asarray(g), ref)
    return lambda: step(xd)[1].block_until_ready()


def jax_timing(jax, x: np.ndarray, ref, args) -> object:
    return measure(jax_step(jax, x, ref), args.repeat, args.target)


def torch_step(torch, x: np.ndarray, ref):
    xt = torch.from_numpy(x)

    def step():
        v = xt.detach().requires_grad_(True)
        loss = torch.sum(torch.tanh(v) * torch.sigmoid(v) + 0.5 * v * v)
        loss.backward()
        return loss.detach(), v.grad

    value, g = step()
    check("torch", float(value), g.numpy(), ref)
    return step


def torch_timing(torch, x: np.ndarray, ref, args) -> object:
    return measure(torch_step(torch, x, ref), args.repeat, args.target)


def main() -> None:
    args, gc, backend, jax, torch = start(__doc__)
    rng = np.random.default_rng(0)
    for n in SIZES:
        x = rng.standard_normal(n, dtype=np.float32) * 2
        ref = reference(x)
        loss, grad = numpy_step(x)
        check("numpy", float(loss), grad, ref)
        results = {"numpy": measure(lambda: numpy_step(x), args.repeat, args.target)}
        results[f"graphc ({backend})"] = attempt(lambda: graphc_timing(gc, x, ref, args)) if gc else backend
        results["jax.jit"] = attempt(lambda: jax_timing(jax, x, ref, args)) if jax else "not installed"
        results["torch eager"] = attempt(lambda: torch_timing(torch, x, ref, args)) if torch else "not installed"
        print(table(f"W1 value+grad, n = {n:.0e} float32", compare(results),
                    ["impl", "median", "spread", "speed vs numpy"]))


if __name__ == "__main__":
    main()
