"""gc.distributed in one process: the missing-extra error, shards, buckets, op checks (a world of one)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.distributed.training import _buckets
from graphc.ir.traverse import toposort

D = gc.distributed


def test_import_graphc_never_needs_mpi4py_and_the_error_says_what_to_install():
    script = textwrap.dedent("""
        import sys
        sys.modules["mpi4py"] = None  # as if the extra were not installed
        import graphc as gc
        assert "mpi4py" not in [m for m in sys.modules if sys.modules[m] is not None]
        try:
            gc.distributed.rank()
        except gc.DistributedError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'graphc[mpi]'" in proc.stdout and "mpiexec -n 2" in proc.stdout


@pytest.mark.parametrize("code, status, says", [
    ("raise SystemExit(3)", 3, None),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9, "killed by SIGKILL; exit status 137"),
])
def test_supervise_ends_with_the_ranks_status_as_an_exit_code(code, status, says):
    """graphc.distributed.supervise exits normally even when its rank was killed by a signal."""
    proc = subprocess.run([sys.executable, "-m", "graphc.distributed.supervise", "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == status, proc.stderr
    assert (says in proc.stderr) if says else proc.stderr == ""


def test_a_bad_timeout_in_the_environment_is_a_clear_error():
    script = textwrap.dedent("""
        import graphc as gc
        try:
            gc.distributed.barrier()
        except gc.DistributedError as exc:
            print(exc)
    """)
    env = dict(os.environ, GRAPHC_DIST_TIMEOUT="soon")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "GRAPHC_DIST_TIMEOUT must be a positive number of seconds, got 'soon'" in proc.stdout


def test_shard_splits_every_row_once_deterministically():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    parts = [D.shard(X, y, seed=3, rank=r, size=3) for r in range(3)]
    assert [len(p[1]) for p in parts] == [4, 3, 3]
    assert sorted(np.concatenate([p[1] for p in parts]).tolist()) == list(range(10))
    for xs, ys in parts:
        np.testing.assert_array_equal(xs[:, 0], 2 * ys)  # rows stay aligned
    again = D.shard(X, y, seed=3, rank=1, size=3)
    np.testing.assert_array_equal(again[1], parts[1][1])
    assert D.shard(y, rank=0, size=3).tolist() == [0, 1, 2, 3]  # no seed: contiguous, in order
    assert D.shard(y, seed=4, rank=0, size=3).tolist() != parts[0][1].tolist()
    with pytest.raises(gc.GraphcError, match="rank 3 is not in 0..2"):
        D.shard(y, rank=3, size=3)
    with pytest.raises(gc.GraphcError, match="different lengths"):
        D.shard(X, y[:5])


def test_buckets_are_consecutive_runs_of_about_equal_size():
    assert _buckets([0, 1, 2, 3], [10, 10, 10, 10], 2) == [[0, 1], [2, 3]]
    assert _buckets([0, 1, 2, 3], [100, 1, 1, 1], 2) == [[0], [1, 2, 3]]
    assert _buckets([0, 1], [5, 5], 1) == [[0, 1]]
    assert _buckets([0, 1], [5, 5], 5) == [[0], [1]]


def _allreduces(t):
    return [n for n in toposort([t]) if n.op == "allreduce"]


@pytest.mark.parametrize("buckets", [1, 2])
def test_distributed_optimizer_reduces_one_flat_buffer_per_bucket(buckets):
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    h = gc.nn.dense(x, 6, activation=gc.tanh, name="h", seed=0)
    loss = gc.mean(gc.nn.dense(h, 1, name="out", seed=1) ** 2)
    train = D.DistributedOptimizer(gc.train.SGD(0.1), buckets=buckets).minimize(loss)
    reduces = _allreduces(train)
    assert len(reduces) == buckets
    assert sum(int(np.prod(r.shape)) for r in reduces) == 4 * 6 + 6 + 6 + 1
    # in a world of one, a step is the wrapped optimizer's step
    feed = {x: np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)}
    plain = gc.train.SGD(0.1).minimize(loss)
    one, two = gc.Session(), gc.Session()
    one.run(train, feed)
    two.run(plain, feed)
    for v in gc.trainable_variables():
        np.testing.assert_allclose(one.variable_value(v), two.variable_value(v), rtol=1e-6)


def test_bucket_collectives_start_early_and_are_waited_for_before_their_first_reader():
    """With buckets, each allreduce starts right after its gradients, the rest of the backward pass
    runs while it is in flight, and its wait comes before the first step touching its buffers."""
    from graphc.backend.llvm.steps import Collective, CollectiveWait, Gemm

    x = gc.placeholder(gc.float32, (None, 4), name="x")
    h = gc.nn.dense(gc.nn.dense(x, 6, activation=gc.tanh, name="h1", seed=0), 5, activation=gc.tanh, name="h2", seed=1)
    loss = gc.mean(gc.nn.dense(h, 1, name="out", seed=2) ** 2)
    train = D.DistributedOptimizer(gc.train.Adam(0.1), buckets=3).minimize(loss)
    feed = {x: np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)}
    steps = list(gc.Session().compile(train, feed).plan.steps)
    starts = [i for i, s in enumerate(steps) if isinstance(s, Collective)]
    waits = {s.start: i for i, s in enumerate(steps) if isinstance(s, CollectiveWait)}
    assert len(starts) == 3 and sorted(waits) == sorted(steps[i].name for i in starts)
    for i in starts:
        start, w = steps[i], waits[steps[i].name]
        assert i < w and steps[w].out.buffer is start.out.buffer
        first = next(j for j in range(i + 1, len(steps)) if {start.src.buffer, start.out.buffer} & set(
            steps[j].buffers()))
        assert first == w  # nothing touches the buffers before the wait; the wait is the first
        assert any(start.out.buffer in steps[j].buffers() for j in range(w + 1, len(steps)))  # its reader follows
    first_start = starts[0]
    assert any(isinstance(s, Gemm) for s in steps[first_start:waits[steps[first_start].name]])  # backward overlaps
    assert max(starts) < min(waits.values())  # every bucket starts before the first wait


def test_bad_arguments_are_clear_errors():
    x = gc.placeholder(gc.int32, (3,), name="x")
    with pytest.raises(gc.DistributedError, match="'sum' or 'mean'"):
        D.allreduce(x, op="max")
    with pytest.raises(gc.DistributedError, match="floating-point"):
        D.allreduce(x, op="mean")
    with pytest.raises(gc.DTypeError, match="allreduce"):
        D.allreduce(gc.cast(x, gc.bool_), op="sum")
    with pytest.raises(gc.ShapeError, match="root 1 is not a rank of a world of 1"):
        D.broadcast(x, root=1)
    with pytest.raises(gc.DistributedError, match="positive"):
        D.set_timeout(0)
    with pytest.raises(gc.GraphcError, match="wraps a gc.train optimizer"):
        D.DistributedOptimizer("sgd")
    with pytest.raises(gc.GraphcError, match="float scalar"):
        D.DistributedOptimizer(gc.train.SGD(0.1), weight=x)


def test_rank_size_barrier_and_broadcast_variables_in_a_world_of_one():
    assert (D.rank(), D.size(), D.local_rank()) == (0, 1, 0)
    D.barrier()
    v = gc.Variable(np.arange(3.0), name="v")
    sess = gc.Session()
    D.broadcast_variables(sess)
    np.testing.assert_array_equal(sess.variable_value(v), np.arange(3.0))


def test_programs_with_collectives_are_not_exported(tmp_path):
    x = gc.placeholder(gc.float32, (3,), name="x")
    f = gc.function([x], [D.allreduce(x)])
    with pytest.raises(gc.GraphcError, match="need MPI"):
        f.export(tmp_path, "f")
