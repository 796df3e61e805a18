"""Train a 64-128-10 MLP on scikit-learn's bundled 8x8 handwritten digits with Adam.

    python examples/mlp_digits.py [--quick] [--epochs N] [--seed N] [--backend NAME]
    mpiexec -n 2 python examples/mlp_digits.py --distributed     (needs pip install 'graphc[mpi]')

The data ships with scikit-learn (no download). The split, the weights and the batch
order all derive from --seed, so the printed losses are the same on every run.

With --distributed, each rank trains on its share of every global batch of --batch-size
(gc.distributed.shard) and gc.distributed.DistributedOptimizer averages the gradients,
weighted by each rank's share, so the run follows the single-process one (same final
accuracy); rank 0 prints.
"""

from __future__ import annotations

import argparse
import builtins
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import graphc as gc
from graphc.backend.llvm.backend import LLVM
from graphc.cli import format_table, program_outputs
from graphc.compiler import optimize
from graphc.ir.traverse import toposort
from graphc.passes.manager import Instrumentation


def load(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels scaled to [0, 1] (float32) and int32 labels, split 75/25 stratified by class."""
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def compile_summary(sess: gc.Session, fetches: list[gc.Tensor], feed: dict) -> list[str]:
    """What the compiler reports about the train-step program; only measured values.

    The pass table is the one ``graphc passes`` prints (the pipeline re-run with
    instrumentation, for the session's options); the program lines come from the
    program the training loop ran.
    """
    lines = [f"graph nodes: forward {len(toposort(fetches[:1]))}, forward+backward+update {len(toposort(fetches))}"]
    if sess.backend != "llvm":
        return lines
    shapes = {p: feed[p].shape for p in feed}
    records = optimize(program_outputs(fetches), shapes, sess.options, Instrumentation(measure=LLVM.measure),
                       backend=LLVM, lower=True).records
    lines.append(f"pass table (train step, batch {len(next(iter(feed.values())))}):")
    lines += ["  " + row for row in format_table(records).splitlines()]
    program = sess.compile(fetches, feed)
    lines += [ln for ln in program.report().splitlines() if ln and not ln.startswith(" ")]
    return lines


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs (used by the tests)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--backend", default=None, help="Session backend (default: graphc's default)")
    parser.add_argument("--distributed", action="store_true", help="data-parallel over the ranks of mpiexec")
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 15)
    D = gc.distributed
    rank, size = (D.rank(), D.size()) if args.distributed else (0, 1)
    print = builtins.print if rank == 0 else (lambda *a, **k: None)  # noqa: A001 (rank 0 prints)

    X_train, X_test, y_train, y_test = load(args.seed)
    print(f"digits: {len(X_train)} train / {len(X_test)} test images of 8x8 pixels, 10 classes")

    x = gc.placeholder(gc.float32, (None, 64), name="x")
    labels = gc.placeholder(gc.int32, (None,), name="labels")
    hidden = gc.nn.dense(x, 128, activation=gc.relu, name="hidden", seed=args.seed)
    logits = gc.nn.dense(hidden, 10, name="logits", seed=args.seed + 1)
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    correct = gc.sum(gc.cast(gc.equal(gc.argmax(logits, axis=1), gc.cast(labels, gc.int64)), gc.int32))
    optimizer = gc.train.Adam(args.lr)
    if args.distributed:  # gradients averaged over the ranks, weighted by each rank's share of the batch
        share = gc.placeholder(gc.float32, (), name="share")
        optimizer = D.DistributedOptimizer(optimizer, weight=share)
        totals_in = gc.placeholder(gc.float64, (3,), name="totals")
        totals = D.allreduce(totals_in, op="sum")  # epoch loss, right and seen, summed over the ranks
    train_op = optimizer.minimize(loss)
    n_params = sum(int(np.prod(v.shape)) for v in gc.trainable_variables())
    print(f"model: 64-128-10 MLP, ReLU, {n_params} parameters; Adam(lr={args.lr}), batch {args.batch_size}"
          + (f" over {size} ranks" if args.distributed else ""))

    data = gc.train.batches(X_train, y_train, batch_size=args.batch_size, seed=args.seed)
    session_args = {} if args.backend is None else {"backend": args.backend}
    with gc.Session(**session_args) as sess:
        if args.distributed:
            D.broadcast_variables(sess)  # every rank starts from rank 0's weights
        steps, first_step, train_time = 0, None, 0.0
        compiling = []  # later steps that compiled: a new batch size (the tail batch) builds the symbolic program
        for epoch in range(1, epochs + 1):
            loss_sum, right, seen = 0.0, 0, 0
            # a bar per epoch on a terminal (it keeps the epoch's loss and accuracy), plain lines otherwise
            bar = tqdm(data, desc=f"epoch {epoch:2d}/{epochs}", file=sys.stderr, disable=True if rank else None,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps{postfix}")
            plain = bool(bar.disable)  # (close() sets disable)
            start = time.perf_counter()
            for xb, yb in bar:
                t0, compiled = time.perf_counter(), gc.compile_count()
                feed = {x: xb, labels: yb}
                if args.distributed:
                    xb, yb = D.shard(xb, yb)
                    feed = {x: xb, labels: yb, share: np.float32(len(xb))}
                batch_loss, batch_right, _ = sess.run([loss, correct, train_op], feed)
                if first_step is None:
                    first_step = time.perf_counter() - t0
                elif gc.compile_count() != compiled:
                    compiling.append(time.perf_counter() - t0)
                steps += 1
                loss_sum += float(batch_loss) * len(xb)
                right += int(batch_right)
                seen += len(xb)
                bar.set_postfix(loss=f"{loss_sum / seen:.6f}", accuracy=f"{right / seen:.4f}", refresh=False)
            bar.close()
            train_time += time.perf_counter() - start
            if args.distributed:
                loss_sum, right, seen = sess.run(totals, {totals_in: np.array([loss_sum, right, seen], np.float64)})
                right, seen = int(right), int(seen)
            if plain:
                print(f"epoch {epoch:2d}/{epochs}  loss {loss_sum / seen:.6f}  train accuracy {right / seen:.4f}")

        test_loss, test_right = sess.run([loss, correct], {x: X_test, labels: y_test})
        accuracy = int(test_right) / len(X_test)
        print(f"test: loss {float(test_loss):.6f}  accuracy {accuracy:.4f} ({int(test_right)}/{len(X_test)})")
        rest = (train_time - first_step - sum(compiling)) / max(1, steps - 1 - len(compiling))
        more = (f", {len(compiling)} step(s) at a new batch size incl. compile {sum(compiling) * 1e3:.1f} ms"
                if compiling else "")
        print(f"speed: {steps} steps in {train_time:.2f} s = {steps / train_time:.0f} steps/s "
              f"(first step incl. compile {first_step * 1e3:.1f} ms{more}, later steps {rest * 1e3:.2f} ms each)")
        print(f"compile: backend {sess.backend}")
        per_rank = -(-args.batch_size // size)  # every rank compiles the summary's program (collectives)
        batch = {x: X_train[:per_rank], labels: y_train[:per_rank]}
        if args.distributed:
            batch[share] = np.float32(per_rank)
        for line in compile_summary(sess, [loss, correct, train_op], batch):
            print("compile: " + line)
    return accuracy


if __name__ == "__main__":
    main()
