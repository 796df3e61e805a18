"""W6: a LeNet-style CNN train step (SGD) on 28x28x1 inputs, batch 64, float32.

conv 5x5x32 SAME + bias + ReLU, 2x2 max pool, conv 5x5x64 SAME + bias + ReLU, 2x2 max pool,
dense 3136 -> 1024 ReLU, dense 10, mean softmax cross-entropy; one step = forward, backward
and the SGD update of all 8 parameters. Every implementation starts from the same weights
and batch; each one's first step is checked against a float64 numpy reference (loss and
updated weights). Columns: graphc, numpy (im2col by hand), JAX jit, PyTorch eager and
torch.compile (JAX and PyTorch are optional: their rows say "not installed" without them).
"""

from __future__ import annotations

import numpy as np
from _timing import attempt, compare, measure, start, table

BATCH, LR = 64, 0.01
SHAPES = {"w1": (5, 5, 1, 32), "b1": (32,), "w2": (5, 5, 32, 64), "b2": (64,), "w3": (3136, 1024), "b3": (1024,),
          "w4": (1024, 10), "b4": (10,)}


def params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, s in SHAPES.items():
        fan_in = int(np.prod(s[:-1])) if len(s) > 1 else 1
        out[k] = (rng.standard_normal(s) / np.sqrt(fan_in) if len(s) > 1 else rng.standard_normal(s) * 0.1)
        out[k] = out[k].astype(np.float32)
    return out


def batch(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((BATCH, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, BATCH).astype(np.int64)


# --- numpy: im2col by hand ------------------------------------------------------------------------

def _im2col(x: np.ndarray) -> np.ndarray:
    """(B, H, W, C) -> (B*H*W, 25*C): 5x5 SAME windows, (kh, kw, c) order."""
    b, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (5, 5), axis=(1, 2))  # (B, H, W, C, 5, 5)
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(b * h * w, 25 * c)


def _col2im(cols: np.ndarray, shape: tuple) -> np.ndarray:
    b, h, w, c = shape
    cols = cols.reshape(b, h, w, 5, 5, c)
    out = np.zeros((b, h + 4, w + 4, c), cols.dtype)
    for i in range(5):
        for j in range(5):
            out[:, i:i + h, j:j + w] += cols[:, :, :, i, j]
    return out[:, 2:-2, 2:-2]


def _pool(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pool and the one-hot of the first maximum of every window."""
    b, h, w, c = a.shape
    win = a.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4, c)
    first = win.argmax(axis=3)
    return np.take_along_axis(win, first[:, :, :, None], 3)[:, :, :, 0], first


def _unpool(g: np.ndarray, first: np.ndarray) -> np.ndarray:
    b, h, w, c = g.shape
    win = (np.arange(4)[:, None] == first[:, :, :, None, :]) * g[:, :, :, None, :]
    return win.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)


def numpy_step(p: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Loss and the updated parameters (p is not modified)."""
    c1 = _im2col(x)
    a1 = np.maximum(c1 @ p["w1"].reshape(25, 32) + p["b1"], 0).reshape(BATCH, 28, 28, 32)
    p1, m1 = _pool(a1)
    c2 = _im2col(p1)
    a2 = np.maximum(c2 @ p["w2"].reshape(800, 64) + p["b2"], 0).reshape(BATCH, 14, 14, 64)
    p2, m2 = _pool(a2)
    f = p2.reshape(BATCH, 3136)
    h = np.maximum(f @ p["w3"] + p["b3"], 0)
    z = h @ p["w4"] + p["b4"]
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    loss = float(np.mean(lse - z[np.arange(BATCH), y]))
    dz = np.exp(z - lse[:, None])
    dz[np.arange(BATCH), y] -= 1
    dz /= BATCH
    g = {"w4": h.T @ dz, "b4": dz.sum(0)}
    dh = (dz @ p["w4"].T) * (h > 0)
    g["w3"], g["b3"] = f.T @ dh, dh.sum(0)
    da2 = _unpool((dh @ p["w3"].T).reshape(BATCH, 7, 7, 64), m2) * (a2 > 0)
    d2 = da2.reshape(-1, 64)
    g["w2"], g["b2"] = (c2.T @ d2).reshape(SHAPES["w2"]), d2.sum(0)
    da1 = _unpool(_col2im(d2 @ p["w2"].reshape(800, 64).T, (BATCH, 14, 14, 32)), m1) * (a1 > 0)
    d1 = da1.reshape(-1, 32)
    g["w1"], g["b1"] = (c1.T @ d1).reshape(SHAPES["w1"]), d1.sum(0)
    return loss, {k: p[k] - LR * g[k].astype(p[k].dtype) for k in p}


def check(name: str, loss: float, new: dict, ref: tuple) -> None:
    bad = [k for k in SHAPES if not np.allclose(new[k], ref[1][k], rtol=1e-3, atol=1e-5)]
    if not np.isclose(loss, ref[0], rtol=1e-4) or bad:
        raise AssertionError(f"{name} disagrees with the float64 reference: loss {loss} vs {ref[0]}, params {bad}")


# --- graphc ---------------------------------------------------------------------------------------

def graphc_timing(gc, p, x, y, ref, args):
    graph = gc.Graph()
    with graph.as_default():
        xp = gc.placeholder(gc.float32, (BATCH, 28, 28, 1), name="x")
        yp = gc.placeholder(gc.int64, (BATCH,), name="y")
        v = {k: gc.Variable(a, name=k) for k, a in p.items()}
        h = gc.nn.max_pool2d(gc.relu(gc.nn.conv2d(xp, v["w1"], padding="SAME") + v["b1"]), 2)
        h = gc.nn.max_pool2d(gc.relu(gc.nn.conv2d(h, v["w2"], padding="SAME") + v["b2"]), 2)
        h = gc.relu(gc.reshape(h, (BATCH, 3136)) @ v["w3"] + v["b3"])
        loss = gc.nn.softmax_cross_entropy(h @ v["w4"] + v["b4"], yp)
        train = gc.train.SGD(LR).minimize(loss)
    sess = gc.Session(graph)
    feed = {xp: x, yp: y}
    first = sess.run(loss, feed)  # the value before the update
    sess.run(train, feed)
    check("graphc", float(first), dict(zip(v, sess.run(list(v.values())))), ref)
    return measure(lambda: sess.run([loss, train], feed), args.repeat, args.target)


# --- JAX ------------------------------------------------------------------------------------------

def jax_timing(jax, p, x, y, ref, args):
    jnp, lax = jax.numpy, jax.lax

    def conv(a, w, b):
        return jax.nn.relu(lax.conv_general_dilated(a, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                           + b)

    def pool(a):
        return lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def loss_fn(q, xb, yb):
        h = pool(conv(pool(conv(xb, q["w1"], q["b1"])), q["w2"], q["b2"]))
        h = jax.nn.relu(h.reshape(BATCH, 3136) @ q["w3"] + q["b3"])
        z = h @ q["w4"] + q["b4"]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, yb[:, None], 1)[:, 0])

    @jax.jit
    def step(q, xb, yb):
        value, g = jax.value_and_grad(loss_fn)(q, xb, yb)
        return value, jax.tree_util.tree_map(lambda a, b: a - LR * b, q, g)

    q, xd, yd = jax.device_put(p), jax.device_put(x), jax.device_put(y.astype(np.int32))
    value, new = step(q, xd, yd)
    check("jax", float(value), {k: np.asarray(a) for k, a in new.items()}, ref)
    state = {"q": q}

    def run():
        state["q"] = jax.block_until_ready(step(state["q"], xd, yd))[1]

    return measure(run, args.repeat, args.target)


# --- PyTorch --------------------------------------------------------------------------------------

def torch_timing(torch, p, x, y, ref, args, compiled: bool):
    F = torch.nn.functional
    t = {k: torch.from_numpy(np.ascontiguousarray(np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a.copy()))
         .requires_grad_(True) for k, a in p.items()}  # conv weights OIHW
    xt, yt = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))), torch.from_numpy(y)

    def loss_fn(xb, yb):
        h = F.max_pool2d(F.relu(F.conv2d(xb, t["w1"], t["b1"], padding=2)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, t["w2"], t["b2"], padding=2)), 2)
        h = F.relu(h.permute(0, 2, 3, 1).reshape(BATCH, 3136) @ t["w3"] + t["b3"])  # NHWC flatten order
        return F.cross_entropy(h @ t["w4"] + t["b4"], yb)

    forward = torch.compile(loss_fn) if compiled else loss_fn

    def step():
        loss = forward(xt, yt)
        loss.backward()
        with torch.no_grad():
            for a in t.values():
                a -= LR * a.grad
                a.grad = None
        return loss.detach()

    value = step()
    new = {k: (np.transpose(a.detach().numpy(), (2, 3, 1, 0)) if a.ndim == 4 else a.detach().numpy())
           for k, a in t.items()}
    check("torch.compile" if compiled else "torch", float(value), new, ref)
    return measure(step, args.repeat, args.target)


def main() -> None:
    args, gc, backend, jax, torch = start(__doc__)
    p, (x, y) = params(), batch()
    ref = numpy_step({k: a.astype(np.float64) for k, a in p.items()}, x.astype(np.float64), y)
    loss, new = numpy_step(p, x, y)
    check("numpy", loss, new, ref)
    results = {}
    # interleaved: each system in turn, twice, keeping the better median (a shared, noisy machine)
    for _ in range(1 if args.quick else 2):
        runs = {f"graphc ({backend})": (lambda: graphc_timing(gc, p, x, y, ref, args)) if gc else None,
                "numpy (im2col)": lambda: measure(lambda: numpy_step(p, x, y), args.repeat, args.target),
                "jax.jit": (lambda: jax_timing(jax, p, x, y, ref, args)) if jax else None,
                "torch eager": (lambda: torch_timing(torch, p, x, y, ref, args, False)) if torch else None,
                "torch.compile": (lambda: torch_timing(torch, p, x, y, ref, args, True)) if torch else None}
        for name, run in runs.items():
            got = attempt(run) if run else "not installed"
            old = results.get(name)
            if old is None or isinstance(old, str) or (not isinstance(got, str) and got.median < old.median):
                results[name] = got
    print(table(f"W6 LeNet train step (SGD), 28x28x1, batch {BATCH}, float32", compare(results, "numpy (im2col)"),
                ["impl", "median", "spread", "speed vs numpy (im2col)"]))


if __name__ == "__main__":
    main()
