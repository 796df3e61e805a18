"""W4: 64 layers of h = tanh(h @ W_i), 256x256 float32, batch 64; gradient of sum(h) w.r.t. all W_i.

The weights are variables; each run returns the loss and the 64 weight gradients.
"""

from __future__ import annotations

import numpy as np
from _timing import attempt, compare, measure, start, table
from threadpoolctl import threadpool_limits

LAYERS, WIDTH, BATCH = 64, 256, 64


def weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(WIDTH)
    return [(rng.standard_normal((WIDTH, WIDTH)) * scale).astype(np.float32) for _ in range(LAYERS)]


def inputs(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, WIDTH), dtype=np.float32)


def numpy_step(ws: list[np.ndarray], x: np.ndarray) -> tuple[np.float32, list[np.ndarray]]:
    """Forward keeping every activation, then the hand-written backward pass."""
    hs = [x]
    for w in ws:
        hs.append(np.tanh(hs[-1] @ w))
    loss = hs[-1].sum()
    g = np.ones_like(hs[-1])
    grads = [None] * len(ws)
    for i in range(len(ws) - 1, -1, -1):
        gz = g * (1 - hs[i + 1] * hs[i + 1])
        grads[i] = hs[i].T @ gz
        g = gz @ ws[i].T
    return loss, grads


def reference(ws, x):
    loss, grads = numpy_step([w.astype(np.float64) for w in ws], x.astype(np.float64))
    return float(loss), grads


def check(name: str, loss: float, grads, ref) -> None:
    scale = max(float(np.abs(g).max()) for g in ref[1])
    ok = np.isclose(loss, ref[0], rtol=1e-3) and all(
        np.allclose(g, r, rtol=1e-2, atol=1e-3 * scale) for g, r in zip(grads, ref[1]))
    if not ok:
        raise AssertionError(f"{name} disagrees with the float64 reference (loss {loss} vs {ref[0]})")


def build_network(gc, ws):
    """The W4 network in a fresh graph: (graph, placeholder x, [loss, [grad W_i]])."""
    graph = gc.Graph()
    with graph.as_default():
        xp = gc.placeholder(gc.float32, (BATCH, WIDTH), name="x")
        vs = [gc.Variable(w, name=f"w{i}") for i, w in enumerate(ws)]
        h = xp
        for v in vs:
            h = gc.tanh(h @ v)
        loss = gc.sum(h)
        fetches = [loss, gc.gradients(loss, vs)]
    return graph, xp, fetches


def graphc_model(gc, ws):
    """step(x) -> (loss, [grad W_i]) through a default Session."""
    graph, xp, fetches = build_network(gc, ws)
    sess = gc.Session(graph)
    return lambda x, **kw: sess.run(fetches, {xp: x}, **kw)


def graphc_timing(gc, ws, x, ref, args):
    step = graphc_model(gc, ws)
    value, grads = step(x)
    check("graphc", float(value), grads, ref)
    return measure(lambda: step(x), args.repeat, args.target)


def jax_step(jax, ws, x, ref):
    """A callable running the jitted JAX value and gradients (checked once against the reference)."""
    jnp = jax.numpy

    def f(ws_, x_):
        h = x_
        for w in ws_:
            h = jnp.tanh(h @ w)
        return jnp.sum(h)

    step = jax.jit(jax.value_and_grad(f))
    wd, xd = [jax.device_put(w) for w in ws], jax.device_put(x)
    value, grads = step(wd, xd)
    check("jax", float(value), [np.asarray(g) for g in grads], ref)
    return lambda: jax.block_until_ready(step(wd, xd))


def jax_timing(jax, ws, x, ref, args):
    return measure(jax_step(jax, ws, x, ref), args.repeat, args.target)


def torch_step(torch, ws, x, ref):
    """A callable running the eager PyTorch value and gradients (checked once against the reference)."""
    wt = [torch.from_numpy(w.copy()).requires_grad_(True) for w in ws]
    xt = torch.from_numpy(x)

    def step():
        for w in wt:
            w.grad = None
        h = xt
        for w in wt:
            h = torch.tanh(h @ w)
        loss = h.sum()
        loss.backward()
        return loss.detach(), [w.grad for w in wt]

    value, grads = step()
    check("torch", float(value), [g.numpy() for g in grads], ref)
    return step


def torch_timing(torch, ws, x, ref, args):
    return measure(torch_step(torch, ws, x, ref), args.repeat, args.target)


def main() -> None:
    args, gc, backend, jax, torch = start(__doc__)
    ws, x = weights(), inputs()
    ref = reference(ws, x)
    loss, grads = numpy_step(ws, x)
    check("numpy", float(loss), grads, ref)
    results = {"numpy": measure(lambda: numpy_step(ws, x), args.repeat, args.target)}
    with threadpool_limits(1, user_api="blas"):
        results["numpy, BLAS 1 thread"] = measure(lambda: numpy_step(ws, x), args.repeat, args.target)
    results[f"graphc ({backend})"] = attempt(lambda: graphc_timing(gc, ws, x, ref, args)) if gc else backend
    results["jax.jit"] = attempt(lambda: jax_timing(jax, ws, x, ref, args)) if jax else "not installed"
    results["torch eager"] = attempt(lambda: torch_timing(torch, ws, x, ref, args)) if torch else "not installed"
    print(table(f"W4 {LAYERS} x tanh(h @ W), {WIDTH}x{WIDTH}, batch {BATCH}, loss + all weight grads",
                compare(results), ["impl", "median", "spread", "speed vs numpy"]))


if __name__ == "__main__":
    main()
