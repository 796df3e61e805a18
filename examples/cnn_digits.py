"""Train a LeNet-style CNN (conv, batch norm, max pool, dropout) on scikit-learn's 8x8 digits.

    python examples/cnn_digits.py [--quick] [--epochs N] [--seed N] [--backend NAME]

Model: conv 3x3x16 SAME, batch norm (momentum 0.9), ReLU, 2x2 max pool (4x4), conv 3x3x32 SAME, batch norm,
ReLU, 2x2 max pool (2x2), dense 64 ReLU, dropout 0.25, dense 10, trained with Adam. Batch
norm and dropout run in training mode (batch statistics, moving averages updated by
`gc.nn.update_ops()`, a fresh dropout mask per step) while training and in inference mode
(moving averages, no dropout) for the test set: one bool placeholder selects it. The
data ships with scikit-learn (no download); the split, weights and batch order derive
from --seed, so the printed losses are the same on every run.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import graphc as gc


def load(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, 8, 8, 1) scaled to [0, 1] (float32) and int32 labels, split 75/25 stratified."""
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def shifted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by up to one pixel in each direction (zeros shift in): data augmentation."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dy, dx = rng.integers(0, 3, (2, len(images)))
    return np.stack([p[i:i + 8, j:j + 8] for p, i, j in zip(padded, dy, dx)])


def model(x: gc.Tensor, training: gc.Tensor, seed: int) -> gc.Tensor:
    """The logits of the CNN (NHWC)."""
    h = x
    for k, filters in enumerate((16, 32)):
        h = gc.layers.Conv2D(filters, 3, padding="SAME", use_bias=False, name=f"conv{k + 1}", seed=seed + k)(h)
        h = gc.relu(gc.layers.BatchNorm(momentum=0.9, name=f"bn{k + 1}")(h, training))
        h = gc.nn.max_pool2d(h, 2)
    h = gc.reshape(h, (-1, 2 * 2 * 32))
    h = gc.nn.dense(h, 64, activation=gc.relu, name="fc1", seed=seed + 2)
    h = gc.nn.dropout(h, 0.25, training, seed=seed + 4)
    return gc.nn.dense(h, 10, name="fc2", seed=seed + 3)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs (used by the tests)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--backend", default=None, help="Session backend (default: graphc's default)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (3 if args.quick else 20)

    X_train, X_test, y_train, y_test = load(args.seed)
    print(f"digits: {len(X_train)} train / {len(X_test)} test images of 8x8 pixels, 10 classes")
    x = gc.placeholder(gc.float32, (None, 8, 8, 1), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    training = gc.placeholder(gc.bool_, (), name="training")
    lr = gc.placeholder(gc.float32, (), name="lr")  # cosine decay from --lr to 0 over the run
    logits = model(x, training, args.seed)
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    correct = gc.sum(gc.cast(gc.equal(gc.argmax(logits, axis=1), gc.cast(labels, gc.int64)), gc.int32))
    train_op = gc.group(gc.train.Adam(lr).minimize(loss), *gc.nn.update_ops())
    n_params = sum(int(np.prod(v.shape)) for v in gc.trainable_variables())
    print(f"model: conv16-bn-pool conv32-bn-pool dense64-dropout dense10, {n_params} parameters; "
          f"Adam(lr={args.lr}, cosine decay), batch {args.batch_size}, shifts of up to 1 pixel")

    data = gc.train.batches(X_train, y_train, batch_size=args.batch_size, seed=args.seed)
    session_args = {} if args.backend is None else {"backend": args.backend}
    with gc.Session(**session_args) as sess:
        steps, first_step, train_time = 0, None, 0.0
        total_steps, rng = epochs * len(data), np.random.default_rng(args.seed)
        for epoch in range(1, epochs + 1):
            loss_sum, right, seen = 0.0, 0, 0
            bar = tqdm(data, desc=f"epoch {epoch:2d}/{epochs}", file=sys.stderr, disable=None,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps{postfix}")
            plain = bool(bar.disable)
            start = time.perf_counter()
            for xb, yb in bar:
                t0 = time.perf_counter()
                rate = np.float32(0.5 * args.lr * (1 + np.cos(np.pi * steps / total_steps)))
                feed = {x: shifted(xb, rng), labels: yb, training: True, lr: rate}
                batch_loss, batch_right, _ = sess.run([loss, correct, train_op], feed)
                if first_step is None:
                    first_step = time.perf_counter() - t0
                steps += 1
                loss_sum += float(batch_loss) * len(xb)
                right += int(batch_right)
                seen += len(xb)
                bar.set_postfix(loss=f"{loss_sum / seen:.6f}", accuracy=f"{right / seen:.4f}", refresh=False)
            bar.close()
            train_time += time.perf_counter() - start
            if plain:
                print(f"epoch {epoch:2d}/{epochs}  loss {loss_sum / seen:.6f}  train accuracy {right / seen:.4f}")
        test_loss, test_right = sess.run([loss, correct], {x: X_test, labels: y_test, training: False})
        accuracy = int(test_right) / len(X_test)
        print(f"test: loss {float(test_loss):.6f}  accuracy {accuracy:.4f} ({int(test_right)}/{len(X_test)})")
        rest = (train_time - first_step) / max(1, steps - 1)
        print(f"speed: {steps} steps in {train_time:.2f} s = {steps / train_time:.0f} steps/s "
              f"(first step incl. compile {first_step * 1e3:.1f} ms, later steps {rest * 1e3:.2f} ms each)")
    return accuracy


if __name__ == "__main__":
    main()
