"""Graph-fuzz steps beyond the op table: products above the tiled GEMM kernel's thresholds, layers, an SGD step.

The op table's matmul cases (tests/backend/llvm/test_llvm_ops.py) are all narrower than a panel of
the tiled kernel (graphc/backend/llvm/tiled.py: 8-32 columns by dtype and host), so random graphs
built from it alone never reach the kernel, its k blocks, its narrow and small-transposed-A
run-time checks, the pool's split products, GEMM epilogues or SGD updates folded into products.
A step here builds one of

* ``product``: ``act(op(A) @ op(B) [+ bias])``, A transposed or batched at random;
* ``dense``: one or two `gc.layers.Dense` layers, optionally followed by `gc.layers.LayerNorm`;
* ``sgd``: a two-layer MLP's mean square, minimized by one `gc.train.SGD` step (the train op is
  fetched: the harness compares the variables after the run too);

over placeholders drawn by the fuzzer's Builder (odd layouts, None dims, NaN/inf sprinkled in).
"""

from __future__ import annotations

import numpy as np

import graphc as gc

# (m, k, n): panels of 40 and 33 columns over 37 and 300 k (k blocks of 256 rows); a narrow product
# with m * k >= tiled.NARROW_MIN_MK; a transposed A of m * k > tiled.AUTO_MAX_A; ragged edges; and
# 128 x 256 x 128 (8 MFLOP), which the pool splits between threads
SIZES = ((9, 37, 40), (20, 300, 33), (260, 256, 9), (230, 300, 40), (3, 5, 70), (128, 256, 128), (33, 17, 64))
ACTIVATIONS = (None, gc.relu, gc.tanh, gc.gelu)
KINDS = ("product", "product", "dense", "sgd")


def step(b, pick: np.random.Generator) -> gc.Tensor:
    """One step of a random kind for the Builder `b` (placeholders from `b.leaf`); `pick` draws the structure."""
    kind = KINDS[pick.integers(len(KINDS))]
    m, k, n = SIZES[pick.integers(len(SIZES))]
    dtype = np.dtype((np.float32, np.float64)[pick.integers(2)])
    act = ACTIVATIONS[pick.integers(len(ACTIVATIONS))]
    if kind == "product":
        return _product(b, pick, (m, k, n), dtype, act)
    x = b.leaf((m, k), dtype, "unit", static=1)  # a layer needs its input's feature dim
    seed = int(pick.integers(1 << 16))
    if kind == "dense":
        y = gc.layers.Dense(n, activation=act, seed=seed)(x)
        if pick.random() < 0.5:
            y = gc.layers.Dense(int(pick.integers(1, 40)), seed=seed + 1)(y)
        return gc.layers.LayerNorm()(y) if pick.random() < 0.3 else y
    h = gc.layers.Dense(n, activation=act, seed=seed)(x)
    y = gc.layers.Dense(int(pick.integers(1, 40)), seed=seed + 1)(h)
    loss = gc.mean(y * y)
    b.effects.append(gc.train.SGD(0.1).minimize(loss))
    return loss


def _product(b, pick, mkn: tuple, dtype: np.dtype, act) -> gc.Tensor:
    m, k, n = mkn
    batch = (2,) if pick.random() < 0.25 else ()
    if pick.random() < 0.5:
        a = gc.transpose(b.leaf(batch + (k, m), dtype, "unit"), (0, 2, 1) if batch else (1, 0))
    else:
        a = b.leaf(batch + (m, k), dtype, "unit")
    if pick.random() < 0.3:
        w = b.leaf((n, k), dtype, "unit").T
    else:
        w = b.leaf((k, n), dtype, "unit")
    y = a @ w
    if pick.random() < 0.5:
        y = y + b.leaf((n,), dtype, "unit")
    return y if act is None else act(y)
