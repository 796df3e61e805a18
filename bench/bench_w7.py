"""W7: one pre-norm transformer block train step: seq 128, d_model 256, 4 heads, MLP 1024, batch 16.

Forward (layer norm, 4-head causal self-attention, residual, layer norm, GELU MLP,
residual), mean squared error against a fixed target, gradients of all 16 parameters and
an SGD update, float32. Every implementation starts from the same parameters and is
checked once against graphc's reference backend (loss and updated parameters) before it is
timed. No dropout (its random masks differ between frameworks). Target (issue 14): graphc
at least as fast as jax.jit and faster than PyTorch eager. numpy is left out: its
hand-written attention backward would be a second model to get right, not a baseline.
"""

from __future__ import annotations

import numpy as np
from _timing import attempt, compare, measure, start, table

SEQ, D, HEADS, MLP, BATCH = 128, 256, 4, 1024, 16
LR = 0.01
NAMES = ("ln1_s", "ln1_b", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "ln2_s", "ln2_b", "w1", "b1", "w2", "b2")


def init_params(seed: int = 0) -> list[np.ndarray]:
    """The 16 parameters in NAMES order: layer-norm ones/zeros, Glorot-normal weights, zero biases."""
    rng = np.random.default_rng(seed)
    shapes = {"wq": (D, D), "wk": (D, D), "wv": (D, D), "wo": (D, D), "w1": (D, MLP), "w2": (MLP, D)}
    out = []
    for name in NAMES:
        if name in shapes:
            fan_in, fan_out = shapes[name]
            out.append((rng.standard_normal(shapes[name]) * np.sqrt(2 / (fan_in + fan_out))).astype(np.float32))
        elif name.endswith("_s"):
            out.append(np.ones(D, np.float32))
        else:
            out.append(np.zeros(MLP if name == "b1" else D, np.float32))
    return out


def batch(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((BATCH, SEQ, D), dtype=np.float32),
            rng.standard_normal((BATCH, SEQ, D), dtype=np.float32))


def graphc_step(gc, backend: str):
    """(session, params, step(x, y) -> loss) of the W7 step in a fresh graph."""
    with gc.Graph().as_default():
        xp = gc.placeholder(gc.float32, (None, SEQ, D), name="x")
        yp = gc.placeholder(gc.float32, (None, SEQ, D), name="y")
        params = [gc.Variable(p, name=n) for n, p in zip(NAMES, init_params())]
        ln1_s, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_s, ln2_b, w1, b1, w2, b2 = params

        def heads(t):
            return gc.transpose(gc.reshape(t, (-1, SEQ, HEADS, D // HEADS)), (0, 2, 1, 3))

        h = gc.nn.layer_norm(xp, scale=ln1_s, offset=ln1_b)
        att = gc.nn.scaled_dot_product_attention(heads(h @ wq + bq), heads(h @ wk + bk), heads(h @ wv + bv),
                                                 causal=True)
        x1 = xp + gc.reshape(gc.transpose(att, (0, 2, 1, 3)), (-1, SEQ, D)) @ wo + bo
        h2 = gc.nn.layer_norm(x1, scale=ln2_s, offset=ln2_b)
        out = x1 + gc.gelu(h2 @ w1 + b1) @ w2 + b2
        loss = gc.nn.mse(out, yp)
        grads = gc.gradients(loss, params)
        update = gc.group(*[gc.assign_sub(p, LR * g) for p, g in zip(params, grads)])
        # the batch dim's symbolic program from the first step (by default the first batch size runs a
        # program specialized to it: docs/runtime.md), as W7 measured before that default
        sess = gc.Session(backend=backend, options=gc.CompileOptions(specialize=False))
    return sess, params, lambda x, y: sess.run([loss, update], {xp: x, yp: y})[0]


def reference(gc, x, y) -> tuple[float, list[np.ndarray]]:
    """One step on graphc's numpy reference backend: the oracle every implementation is checked against."""
    sess, params, step = graphc_step(gc, "reference")
    loss = float(step(x, y))
    return loss, [sess.variable_value(p) for p in params]


def check(name: str, loss: float, params: list[np.ndarray], ref: tuple[float, list[np.ndarray]]) -> None:
    ref_loss, ref_params = ref
    ok = np.isclose(loss, ref_loss, rtol=1e-4) and all(
        np.allclose(p, r, rtol=1e-3, atol=2e-5) for p, r in zip(params, ref_params))
    if not ok:
        worst = max(float(np.max(np.abs(p - r))) for p, r in zip(params, ref_params))
        raise AssertionError(f"{name}: one step disagrees with the reference (loss {loss} vs {ref_loss}, "
                             f"largest parameter difference {worst:.2e})")


def graphc_timing(gc, backend, x, y, ref, args):
    sess, params, step = graphc_step(gc, backend)
    check("graphc", float(step(x, y)), [sess.variable_value(p) for p in params], ref)
    return measure(lambda: step(x, y), args.repeat, args.target)


def jax_timing(jax, x, y, ref, args):
    jnp = jax.numpy

    def layer_norm(t, s, b):
        m = t.mean(-1, keepdims=True)
        c = t - m
        return c / jnp.sqrt((c * c).mean(-1, keepdims=True) + 1e-5) * s + b

    def heads(t):
        return t.reshape(-1, SEQ, HEADS, D // HEADS).transpose(0, 2, 1, 3)

    def loss_fn(p, xb, yb):
        ln1_s, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_s, ln2_b, w1, b1, w2, b2 = p
        h = layer_norm(xb, ln1_s, ln1_b)
        q, k, v = heads(h @ wq + bq), heads(h @ wk + bk), heads(h @ wv + bv)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D // HEADS)
        s = jnp.where(np.tril(np.ones((SEQ, SEQ), bool)), s, -jnp.inf)
        att = jax.nn.softmax(s, -1) @ v
        x1 = xb + att.transpose(0, 2, 1, 3).reshape(-1, SEQ, D) @ wo + bo
        out = x1 + jax.nn.gelu(layer_norm(x1, ln2_s, ln2_b) @ w1 + b1, approximate=False) @ w2 + b2
        return jnp.mean((out - yb) ** 2)

    @jax.jit
    def step(p, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        return loss, [a - LR * g for a, g in zip(p, grads)]

    xd, yd = jax.device_put(x), jax.device_put(y)
    loss, params = step([jax.device_put(p) for p in init_params()], xd, yd)
    check("jax", float(loss), [np.asarray(p) for p in params], ref)
    state = [params]

    def run():
        loss, state[0] = step(state[0], xd, yd)
        loss.block_until_ready()

    return measure(run, args.repeat, args.target)


def torch_timing(torch, x, y, ref, args):
    F = torch.nn.functional  # noqa: N806 (PyTorch's idiom)
    params = [torch.from_numpy(p.copy()).requires_grad_(True) for p in init_params()]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(params, lr=LR)

    def heads(t):
        return t.reshape(-1, SEQ, HEADS, D // HEADS).transpose(1, 2)

    def step():
        ln1_s, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_s, ln2_b, w1, b1, w2, b2 = params
        h = F.layer_norm(xt, (D,), ln1_s, ln1_b, 1e-5)
        att = F.scaled_dot_product_attention(heads(h @ wq + bq), heads(h @ wk + bk), heads(h @ wv + bv),
                                             is_causal=True)
        x1 = xt + att.transpose(1, 2).reshape(-1, SEQ, D) @ wo + bo
        out = x1 + F.gelu(F.layer_norm(x1, (D,), ln2_s, ln2_b, 1e-5) @ w1 + b1) @ w2 + b2
        loss = F.mse_loss(out, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    loss = step()
    check("torch", float(loss), [p.detach().numpy() for p in params], ref)
    return measure(step, args.repeat, args.target)


def main() -> None:
    args, gc, backend, jax, torch = start(__doc__)
    x, y = batch()
    if gc is None:
        raise SystemExit(f"graphc is needed for the reference: {backend}")
    ref = reference(gc, x, y)
    results = {}
    results["jax.jit"] = attempt(lambda: jax_timing(jax, x, y, ref, args)) if jax else "not installed"
    results[f"graphc ({backend})"] = attempt(lambda: graphc_timing(gc, backend, x, y, ref, args))
    results["torch eager"] = attempt(lambda: torch_timing(torch, x, y, ref, args)) if torch else "not installed"
    if jax and not isinstance(results["jax.jit"], str):  # interleave: time jax again after the others
        results["jax.jit (again)"] = attempt(lambda: jax_timing(jax, x, y, ref, args))
    rows = compare(results, baseline="jax.jit")
    for row, t in zip(rows, results.values()):
        row["steps/s"] = f"{1 / t.median:.1f}" if not isinstance(t, str) else "-"
    print(table(f"W7 transformer block train step (seq {SEQ}, d_model {D}, {HEADS} heads, MLP {MLP}, "
                f"batch {BATCH}, float32)", rows, ["impl", "median", "steps/s", "spread", "speed vs jax.jit"]))


if __name__ == "__main__":
    main()
