"""How to lower a convolution, per shape class: im2col + one GEMM (per group) against a
direct formulation (one fused elementwise kernel summing the K window offsets: x shifted by
each offset times that offset's filter slice), forward only and forward + both gradients,
float32, in one process, interleaved. The direct form is built from graphc primitives (slices
of the padded input, broadcast multiplies, adds), so the backend fuses it into one loop nest
per output; its gradients are what autodiff makes of it (one reduction per offset).
"""

from __future__ import annotations

import numpy as np
from _timing import fmt_time, measure, start, table

# name: (batch, H, W, C in, K, C out, groups)
CLASSES = {
    "W6 conv1: 28x28x1, 5x5 -> 32": (64, 28, 28, 1, 5, 32, 1),
    "W6 conv2: 14x14x32, 5x5 -> 64": (64, 14, 14, 32, 5, 64, 1),
    "depthwise 3x3, 14x14x64": (64, 14, 14, 64, 3, 64, 64),
    "1x1, 14x14x64 -> 64": (64, 14, 14, 64, 1, 64, 1),
}


def im2col(gc, x, w, k: int, groups: int):
    """SAME, stride 1: the conv_patches buffer times the filter, one (batched, per group) GEMM."""
    from graphc.ops.window import patches

    n, h, wd, c = x.shape
    cg, o = c // groups, w.shape[-1]
    pads = ((k - 1) // 2, k - 1 - (k - 1) // 2)
    cols = gc.reshape(patches(x, (k, k), (1, 1), (1, 1), (pads, pads)), (n * h * wd, k * k, groups, cg))
    rows = gc.reshape(gc.transpose(cols, (2, 0, 1, 3)), (groups, n * h * wd, k * k * cg))
    ws = gc.reshape(gc.transpose(gc.reshape(w, (k * k, cg, groups, o // groups)), (2, 0, 1, 3)),
                    (groups, k * k * cg, o // groups))
    return gc.reshape(gc.transpose(rows @ ws, (1, 0, 2)), (n, h, wd, o))


def direct(gc, x, w, k: int, groups: int):
    """SAME, stride 1: sum over offsets of the shifted input times the offset's filter slice."""
    pad = (k - 1) // 2
    xp = gc.pad(x, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
    h, wd = x.shape[1], x.shape[2]
    out = None
    for i in range(k):
        for j in range(k):
            xs = xp[:, i:i + h, j:j + wd, :]
            if groups == 1 and x.shape[3] == 1:
                term = xs * w[i, j, 0, :]  # (N, H, W, 1) * (O,)
            elif groups == x.shape[3]:
                term = xs * w[i, j, 0, :]  # depthwise, multiplier 1: (N, H, W, C) * (C,)
            else:
                term = gc.tensordot(xs, w[i, j], axes=1)  # a GEMM per offset
            out = term if out is None else out + term
    return out


def main() -> None:
    args, gc, backend, _, _ = start(__doc__)
    rows = []
    for name, (n, h, wd, c, k, o, groups) in CLASSES.items():
        rng = np.random.default_rng(0)
        xv = rng.standard_normal((n, h, wd, c)).astype(np.float32)
        wv = (rng.standard_normal((k, k, c // groups, o)) * 0.1).astype(np.float32)
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float32, xv.shape, name="x")
            w = gc.placeholder(gc.float32, wv.shape, name="w")
            forms = {"im2col+GEMM": im2col(gc, x, w, k, groups),
                     "direct": direct(gc, x, w, k, groups)}
            fetches = {f: [y, *gc.gradients(gc.sum(y * y), [x, w])] for f, y in forms.items()}
        sess = gc.Session(graph)
        feed = {x: xv, w: wv}
        got = {f: sess.run(fs, feed) for f, fs in fetches.items()}
        for a, b in zip(got["im2col+GEMM"], got["direct"]):
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(np.abs(b).max()))
        times = {}
        for _ in range(2):  # interleaved, best median of two rounds
            for f, fs in fetches.items():
                for what, fetch in (("forward", fs[0]), ("fwd+grads", fs)):
                    t = measure(lambda fetch=fetch: sess.run(fetch, feed), args.repeat, args.target).median
                    times[f, what] = min(t, times.get((f, what), t))
        rows.append({"shape class": name, **{f"{f} {what}": fmt_time(t) for (f, what), t in times.items()}})
    cols = ["shape class"] + [f"{f} {what}" for f in ("im2col+GEMM", "direct") for what in ("forward", "fwd+grads")]
    print(table(f"conv2d lowering per shape class, SAME, stride 1, float32 (graphc {backend})", rows, cols))


if __name__ == "__main__":
    main()
