"""Train a 2-layer causal transformer as a character-level language model, then sample from it.

    python examples/transformer_char.py [--quick] [--steps N] [--seed N]

The text is examples/data/public_domain.txt (about 11 KB, shipped in the repository):
sixteen of Shakespeare's Sonnets (1609; which ones: examples/data/README.md) and
Lincoln's Gettysburg Address (1863), both in the public domain, transcribed in their
common modern spelling. The model: token and
learned position embeddings, two pre-norm blocks (causal multi-head self-attention,
GELU MLP, dropout, residuals), a final layer norm and a projection to the characters;
AdamW with gradient clipping by global norm. Dropout draws its masks inside the graph
(gc.random), switched off for sampling by a bool placeholder. Windows, weights and
dropout masks all derive from --seed, so the printed losses repeat from run to run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import graphc as gc

TEXT = Path(__file__).resolve().parent / "data" / "public_domain.txt"


def block(x: gc.Tensor, d: int, heads: int, rate: float, training: gc.Tensor) -> gc.Tensor:
    """One pre-norm transformer block."""
    with gc.name_scope("attention"):
        att = gc.layers.MultiHeadAttention(heads, d // heads)(gc.layers.LayerNorm()(x), causal=True)
        x = x + gc.nn.dropout(att, rate, training)
    with gc.name_scope("mlp"):
        h = gc.layers.Dense(4 * d, activation=gc.gelu)(gc.layers.LayerNorm()(x))
        x = x + gc.nn.dropout(gc.layers.Dense(d)(h), rate, training)
    return x


def model(ids: gc.Tensor, training: gc.Tensor, vocab: int, length: int, d: int, heads: int, layers: int,
          rate: float) -> gc.Tensor:
    """Logits (batch, length, vocab) for int32 ids (batch, length)."""
    x = gc.layers.Embedding(vocab, d, name="tokens")(ids)
    x = x + gc.layers.Embedding(length, d, name="positions")(gc.constant(np.arange(length, dtype=np.int32)))
    for i in range(layers):
        with gc.name_scope(f"block{i}"):
            x = block(x, d, heads, rate, training)
    return gc.layers.Dense(vocab, name="logits")(gc.layers.LayerNorm(name="final_norm")(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and a few steps (for tests)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    d, heads, length, batch, steps, sample_len = (32, 2, 32, 8, 24, 30) if args.quick else (64, 4, 64, 32, 500, 300)
    steps = args.steps or steps

    text = TEXT.read_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], np.int32)
    rng = np.random.default_rng(args.seed)
    print(f"text: {len(text)} characters, {len(chars)} distinct; model d={d}, heads={heads}, length={length}, "
          f"2 blocks, batch {batch}, {steps} steps")

    gc.random.set_seed(args.seed)
    ids = gc.placeholder(gc.int32, (None, length), name="ids")
    targets = gc.placeholder(gc.int32, (None, length), name="targets")
    training = gc.placeholder(gc.bool_, (), name="training")
    logits = model(ids, training, len(chars), length, d, heads, 2, rate=0.1)
    loss = gc.nn.softmax_cross_entropy(logits, targets, name="loss")
    opt = gc.train.AdamW(lr=3e-3, weight_decay=0.01)
    grads_and_vars = opt.compute_gradients(loss)
    clipped, norm = gc.clip_by_global_norm([g for g, _ in grads_and_vars], 1.0)
    train_op = opt.apply_gradients(list(zip(clipped, [v for _, v in grads_and_vars])))
    probs = gc.nn.softmax(logits[:, -1, :])

    with gc.Session() as sess:
        def windows() -> tuple[np.ndarray, np.ndarray]:
            starts = rng.integers(0, len(data) - length - 1, batch)
            x = np.stack([data[s:s + length] for s in starts])
            return x, np.stack([data[s + 1:s + length + 1] for s in starts])

        start = time.perf_counter()
        report = max(1, steps // 10)
        for step in range(1, steps + 1):
            x, y = windows()
            value, gnorm, _ = sess.run([loss, norm, train_op], {ids: x, targets: y, training: True})
            if step == 1 or step % report == 0:
                print(f"step {step:5d}  loss {value:.4f}  grad norm {gnorm:.3f}")
        elapsed = time.perf_counter() - start
        print(f"trained {steps} steps in {elapsed:.1f} s ({steps / elapsed:.1f} steps/s)")

        context = list(data[:length])
        out = []
        for _ in range(sample_len):
            p = sess.run(probs, {ids: np.array([context[-length:]], np.int32), training: False})[0]
            p = p.astype(np.float64) ** (1 / 0.8)  # temperature 0.8
            nxt = int(rng.choice(len(chars), p=p / p.sum()))
            out.append(chars[nxt])
            context.append(nxt)
        prompt = "".join(chars[i] for i in data[:length])
        print(f"prompt: {prompt!r}")
        print(f"sample: {''.join(out)!r}")


if __name__ == "__main__":
    main()
