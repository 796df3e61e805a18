"""W2: MLP 784-512-512-10 (ReLU), softmax cross-entropy on int labels, forward + backward + SGD.

Training steps per second at batch 256 and 32, float32. Target (issue 4): graphc no slower
than numpy eager at batch 256. The batch dim is None, and graphc's row is the symbolic-dim
program (one for every batch size: ``CompileOptions(specialize=False)``, since by default a
session's first batch size runs a program specialized to it, docs/runtime.md); ``--specialized``
adds rows for it and for the program compiled for that batch size only
(``CompileOptions(specialize=True)``), timed in alternation.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from _timing import Timing, attempt, compare, measure, start, table
from threadpoolctl import threadpool_limits

SIZES = (784, 512, 512, 10)
BATCHES = (256, 32)
LR = 0.01


def init_params(seed: int = 0) -> list[np.ndarray]:
    """[W1, b1, W2, b2, W3, b3], He-normal weights and zero biases, float32."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    return params


def batch(size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], size).astype(np.int32)


def numpy_step(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.float32:
    """One SGD step, forward and hand-written backward; updates `params` in place."""
    w1, b1, w2, b2, w3, b3 = params
    z1 = x @ w1 + b1
    h1 = np.maximum(z1, 0)
    z2 = h1 @ w2 + b2
    h2 = np.maximum(z2, 0)
    logits = h2 @ w3 + b3
    rows = np.arange(len(y))
    top = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - top)
    total = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(total[:, 0]) + top[:, 0] - logits[rows, y])
    d = e / total
    d[rows, y] -= 1
    d /= len(y)
    grads = [None] * 6
    grads[4], grads[5] = h2.T @ d, d.sum(axis=0)
    d = (d @ w3.T) * (z2 > 0)
    grads[2], grads[3] = h1.T @ d, d.sum(axis=0)
    d = (d @ w2.T) * (z1 > 0)
    grads[0], grads[1] = x.T @ d, d.sum(axis=0)
    for p, g in zip(params, grads):
        p -= LR * g
    return loss


def check(name: str, loss: float, params: list[np.ndarray], ref_loss: float, ref_params: list[np.ndarray]) -> None:
    ok = np.isclose(loss, ref_loss, rtol=1e-4) and all(
        np.allclose(p, r, rtol=1e-3, atol=1e-5) for p, r in zip(params, ref_params))
    if not ok:
        raise AssertionError(f"{name}: one step disagrees with numpy (loss {loss} vs {ref_loss})")


def graphc_loss(gc):
    """The W2 network in the default graph: (x placeholder, y placeholder, params, loss)."""
    xp = gc.placeholder(gc.float32, (None, SIZES[0]), name="x")
    yp = gc.placeholder(gc.int32, (None,), name="y")
    params = [gc.Variable(p, name=f"p{i}") for i, p in enumerate(init_params())]
    h = xp
    for i in range(0, 6, 2):
        h = h @ params[i] + params[i + 1]
        if i < 4:
            h = gc.relu(h)
    return xp, yp, params, gc.nn.softmax_cross_entropy(h, yp)


def symbolic(gc):
    """Options under which the first run builds the symbolic program (the rows W2 reports)."""
    return gc.CompileOptions(specialize=False)


def graphc_model(gc, options=None):
    """The W2 training step in a fresh graph: (session, params, step(x, y) -> loss). The batch dim
    is None: with the default options the first batch size gets a program of its own (W5's first
    result), `symbolic(gc)` gives the symbolic program at once; `options` may specialize."""
    with gc.Graph().as_default():
        xp, yp, params, loss = graphc_loss(gc)
        grads = gc.gradients(loss, params)
        update = gc.group(*[gc.assign_sub(p, LR * g) for p, g in zip(params, grads)])
        sess = gc.Session(options=options)
    return sess, params, lambda x, y, **kw: sess.run([loss, update], {xp: x, yp: y}, **kw)[0]


def graphc_timing(gc, x, y, ref, args):
    sess, params, step = graphc_model(gc, symbolic(gc))
    check("graphc", float(step(x, y)), [sess.variable_value(p) for p in params], *ref)
    return measure(lambda: step(x, y), args.repeat, args.target)


def symbolic_vs_specialized(gc, x, y, ref, rounds: int = 41) -> dict[str, Timing]:
    """The symbolic and the specialized W2 step timed in alternation (one step each per round,
    medians), so a noisy machine slows both alike."""
    steps = {}
    for label, options in (("graphc, symbolic batch dim", symbolic(gc)),
                           ("graphc, specialize=True", gc.CompileOptions(specialize=True))):
        sess, params, step = graphc_model(gc, options)
        check(label, float(step(x, y)), [sess.variable_value(p) for p in params], *ref)
        steps[label] = step
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            start = time.perf_counter()
            step(x, y)
            times[label].append(time.perf_counter() - start)
    return {label: Timing(statistics.median(t), min(t), max(t), 1) for label, t in times.items()}


def jax_step(jax, x, y, ref):
    """A callable running one jitted JAX training step (checked once against numpy)."""
    jnp = jax.numpy

    def loss_fn(params, xb, yb):
        h = xb
        for i in range(0, 6, 2):
            h = h @ params[i] + params[i + 1]
            if i < 4:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    @jax.jit
    def step(params, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        return loss, [p - LR * g for p, g in zip(params, grads)]

    xd, yd = jax.device_put(x), jax.device_put(y)
    loss, params = step([jax.device_put(p) for p in init_params()], xd, yd)
    check("jax", float(loss), [np.asarray(p) for p in params], *ref)
    state = [params]

    def run():
        loss, state[0] = step(state[0], xd, yd)
        loss.block_until_ready()

    return run


def jax_timing(jax, x, y, ref, args):
    return measure(jax_step(jax, x, y, ref), args.repeat, args.target)


def torch_step(torch, x, y, ref):
    """A callable running one eager PyTorch training step (checked once against numpy)."""
    params = [torch.from_numpy(p.copy()).requires_grad_(True) for p in init_params()]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.SGD(params, lr=LR)

    def step():
        h = xt
        for i in range(0, 6, 2):
            h = h @ params[i] + params[i + 1]
            if i < 4:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    loss = step()
    check("torch", float(loss), [p.detach().numpy() for p in params], *ref)
    return step


def torch_timing(torch, x, y, ref, args):
    return measure(torch_step(torch, x, y, ref), args.repeat, args.target)


def main() -> None:
    args, gc, backend, jax, torch = start(__doc__, {"--specialized": "also time the program specialized to the "
                                                                      "batch size (CompileOptions(specialize=True))"})
    for size in BATCHES:
        x, y = batch(size)
        ref_params = init_params()
        ref_loss = float(numpy_step(ref_params, x, y))
        ref = (ref_loss, ref_params)
        params = init_params()
        results = {"numpy": measure(lambda: numpy_step(params, x, y), args.repeat, args.target)}
        with threadpool_limits(1, user_api="blas"):
            results["numpy, BLAS 1 thread"] = measure(lambda: numpy_step(params, x, y), args.repeat, args.target)
        results[f"graphc ({backend})"] = attempt(lambda: graphc_timing(gc, x, y, ref, args)) if gc else backend
        if gc and args.specialized:  # the same step compiled for this batch size only, in alternation
            results.update(symbolic_vs_specialized(gc, x, y, ref))
        results["jax.jit"] = attempt(lambda: jax_timing(jax, x, y, ref, args)) if jax else "not installed"
        results["torch eager"] = attempt(lambda: torch_timing(torch, x, y, ref, args)) if torch else "not installed"
        rows = compare(results)
        for row, t in zip(rows, results.values()):
            row["steps/s"] = f"{1 / t.median:.0f}" if not isinstance(t, str) else "-"
        print(table(f"W2 MLP {'-'.join(map(str, SIZES))} SGD step, batch {size}", rows,
                    ["impl", "median", "steps/s", "spread", "speed vs numpy"]))


if __name__ == "__main__":
    main()
