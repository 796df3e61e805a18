"""Run by tests/distributed/test_mpi.py under ``mpiexec -n N``: ``python mpi_worker.py SCENARIO DIR``.

Each rank asserts and prints ``OK <scenario> rank <r>`` when everything held (or the error
the scenario expects). `build` and `data` are imported by the test too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np

import graphc as gc

D = gc.distributed
STEPS, BATCH = 20, 16


def data(dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((STEPS * BATCH, 5)).astype(dtype)
    return X, (X[:, 0] + X[:, 1] > X[:, 2]).astype(np.int64) + (X[:, 3] > 0.5)


def build(dtype=np.float64, hidden: int = 8, distributed: bool = False, buckets: int = 1, clip: float | None = None):
    """A 5-hidden-3 MLP trained by Adam; with `distributed`, through DistributedOptimizer(weight=local count)."""
    x = gc.placeholder(dtype, (None, 5), name="x")
    y = gc.placeholder(gc.int64, (None,), name="y")
    w0 = gc.Variable(gc.init.glorot_uniform((5, hidden), seed=1, dtype=dtype), name="w0")
    b0 = gc.Variable(np.zeros(hidden, dtype), name="b0")
    w1 = gc.Variable(gc.init.glorot_uniform((hidden, 3), seed=2, dtype=dtype), name="w1")
    logits = gc.tanh(x @ w0 + b0) @ w1
    loss = gc.nn.softmax_cross_entropy(logits, y)
    opt = gc.train.Adam(0.05)
    count = gc.placeholder(dtype, (), name="count")
    if distributed:
        opt = D.DistributedOptimizer(opt, buckets=buckets, weight=count)
    return {"x": x, "y": y, "count": count, "logits": logits, "loss": loss,
            "train": opt.minimize(loss, clip_norm=clip), "vars": [w0, b0, w1]}


def train(model, sess, distributed: bool, dtype=np.float64) -> None:
    """STEPS global batches of BATCH rows, then one of size-1 rows (so one rank gets none)."""
    X, Y = data(dtype)
    steps = list(gc.train.batches(X, Y, batch_size=BATCH, seed=0)) + [(X[:D.size() - 1], Y[:D.size() - 1])]
    assert len(steps) == STEPS + 1
    for xb, yb in steps:
        if distributed:
            xb, yb = D.shard(xb, yb)
        sess.run(model["train"], {model["x"]: xb, model["y"]: yb, model["count"]: np.asarray(len(xb), dtype)})


def check_collectives(r: int, n: int) -> None:
    x = gc.placeholder(gc.float64, (None, 3), name="x")
    mine = np.arange(6.0).reshape(2, 3) + 10 * r
    every = [np.arange(6.0).reshape(2, 3) + 10 * k for k in range(n)]
    fetches = [D.allreduce(x, op="sum"), D.allreduce(x, op="mean"), D.allgather(x), D.broadcast(x, root=n - 1),
               D.allreduce(gc.cast(x, gc.int32), op="sum")]
    want = [sum(every), sum(every) / n, np.stack(every), every[-1], sum(every).astype(np.int32)]
    for backend, call in (("reference", "c"), ("llvm", "c"), ("llvm", "callback")):
        os.environ["GRAPHC_MPI_CALL"] = call  # how a compiled program calls MPI (read when it compiles)
        got = gc.Session(backend=backend).run(fetches, {x: mine})
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, (backend, call, g, w)
            np.testing.assert_allclose(g, w, rtol=1e-15, err_msg=f"{backend} {call}")
    os.environ["GRAPHC_MPI_CALL"] = "c"


def check_gradients_across_ranks(r: int) -> None:
    """d(sum of every rank's loss)/d(x_r) by reverse and forward mode against central differences."""
    rng = np.random.default_rng(100 + r)
    x0, d = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    u, v, w = (rng.standard_normal(s) for s in [(2, 3), (D.size(), 2, 3), (2, 3)])
    x = gc.placeholder(gc.float64, (2, 3), name="x")
    dx = gc.placeholder(gc.float64, (2, 3), name="dx")
    local = (gc.sum(gc.sin(D.allreduce(x * x, op="sum")) * u) + gc.sum(gc.cos(D.allgather(x)) * v)
             + gc.sum(D.broadcast(gc.exp(x), root=D.size() - 1) * w))
    total = D.allreduce(local, op="sum")
    (grad,) = gc.gradients(local, [x])
    (tangent,) = gc.jvp(local, [x], [dx])
    eps = 1e-6
    for backend in ("reference", "llvm"):
        sess = gc.Session(backend=backend)
        g, t = sess.run([grad, tangent], {x: x0, dx: d})
        hi = sess.run(total, {x: x0 + eps * d})
        lo = sess.run(total, {x: x0 - eps * d})
        fd = (hi - lo) / (2 * eps)
        rev = float(sess.run(D.allreduce(gc.constant(np.sum(g * d)), op="sum")))
        fwd = float(sess.run(D.allreduce(gc.constant(t), op="sum")))
        for name, value in (("reverse", rev), ("forward", fwd)):
            assert abs(value - fd) <= 1e-6 * max(1.0, abs(fd)), (backend, name, value, fd)


def check_training(r: int, out_dir: str) -> None:
    for dtype, buckets, clip, rtol, atol in ((np.float64, 3, 0.5, 1e-6, 1e-9), (np.float32, 1, None, 2e-4, 1e-5)):
        single, multi = gc.Graph(), gc.Graph()
        with single.as_default():
            ref = build(dtype, clip=clip)
            ref_sess = gc.Session()
            train(ref, ref_sess, False, dtype)
        with multi.as_default():
            model = build(dtype, distributed=True, buckets=buckets, clip=clip)
            sess = gc.Session()
            if r:  # broadcast_variables makes every rank start from rank 0's weights
                sess.set_variable_value(model["vars"][0], np.full(model["vars"][0].shape, r, dtype))
            D.broadcast_variables(sess)
            train(model, sess, True, dtype)
        for a, b in zip(ref["vars"], model["vars"]):
            np.testing.assert_allclose(sess.variable_value(b), ref_sess.variable_value(a), rtol=rtol, atol=atol,
                                       err_msg=f"{b.name} {np.dtype(dtype).name} buckets {buckets}")
    # gradient buckets (started during the backward pass, waited for before the update) change no value
    # (exactly: every buffer here is below MPICH's short-message size, so one algorithm sums them all)
    trained = []
    for buckets in (1, 3):
        with gc.Graph().as_default():
            bucketed = build(np.float32, distributed=True, buckets=buckets)
            bucketed_sess = gc.Session()
            train(bucketed, bucketed_sess, True, np.float32)
            trained.append([bucketed_sess.variable_value(v) for v in bucketed["vars"]])
    for one, three in zip(*trained):
        np.testing.assert_array_equal(three, one)
    # the float32 model: rank 0's checkpoint restores on every rank (and in the test, on one)
    path = os.path.join(out_dir, f"ckpt_n{D.size()}")
    if r == 0:
        gc.train.Saver().save(sess, path)
    D.barrier()
    with multi.as_default():
        fresh = gc.Session()
        gc.train.Saver().restore(fresh, path)
        for v in multi.variables:
            np.testing.assert_array_equal(fresh.variable_value(v), sess.variable_value(v), err_msg=v.name)
    if r == 0:
        np.save(os.path.join(out_dir, f"w0_n{D.size()}.npy"), sess.variable_value(model["vars"][0]))


def first_step():
    """The 2-rank model after one training step (compiled, graphs checked) on every rank."""
    model = build(distributed=True)
    sess = gc.Session()
    X, Y = data()
    feed = {model["x"]: D.shard(X[:8]), model["y"]: D.shard(Y[:8]), model["count"]: np.asarray(4.0)}
    sess.run(model["train"], feed)
    return model, sess, feed


def expect_distributed_error(scenario: str, r: int, run) -> None:
    try:
        run()
    except gc.DistributedError as exc:
        print(f"OK {scenario} rank {r}: {exc}", flush=True)
        raise
    raise AssertionError("training went on after a rank failed")


def main(scenario: str, out_dir: str) -> None:
    D.set_timeout(float(os.environ.get("WORKER_TIMEOUT", "60")))
    r, n = D.rank(), D.size()
    if scenario == "main":
        assert D.local_rank() == r  # every rank runs on this machine
        check_collectives(r, n)
        check_gradients_across_ranks(r)
        check_training(r, out_dir)
    elif scenario == "mismatch":  # rank 1 builds a wider hidden layer
        model = build(hidden=9 if r == 1 else 8, distributed=True)
        try:
            train(model, gc.Session(), True)
        except gc.DistributedError as exc:
            print(f"OK {scenario} rank {r}: {exc}", flush=True)
            return
        raise AssertionError("mismatched graphs were not refused")
    elif scenario == "raise":  # rank 1 fails after one step; rank 0's next step must not hang
        model, sess, feed = first_step()
        if r == 1:
            raise RuntimeError("rank 1 fails on purpose")
        expect_distributed_error(scenario, r, lambda: sess.run(model["train"], feed))
    elif scenario == "kill":  # rank 1 is killed by SIGKILL at a random moment of training (steps or collectives)
        model, sess, feed = first_step()
        if r == 1:
            delay = np.random.default_rng().uniform(0.0, 0.3)
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()

        def train_on():
            for _ in range(10**6):  # ends when rank 1 dies: every step has an allreduce
                sess.run(model["train"], feed)

        expect_distributed_error(scenario, r, train_on)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(f"OK {scenario} rank {r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
