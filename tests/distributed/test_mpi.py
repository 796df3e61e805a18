"""gc.distributed across ranks: each test starts ``mpiexec -n N`` on localhost (needs the extra graphc[mpi])."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("mpi4py", reason="the distributed tests need the extra: pip install 'graphc[mpi]'")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
TIMEOUT = 300  # seconds for a whole mpiexec job; a hang would hit it, a healthy job takes a few seconds


def mpiexec(n: int, scenario: str, out_dir: Path, *flags: str, timeout: float = 60,
            supervise: bool = False) -> subprocess.CompletedProcess:
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec next to {sys.executable} (install the extra graphc[mpi])")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               WORKER_TIMEOUT=str(timeout))
    rank = [sys.executable, *(["-m", "graphc.distributed.supervise"] if supervise else []), str(HERE / "mpi_worker.py")]
    cmd = [str(MPIEXEC), *flags, "-n", str(n), *rank, scenario, str(out_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=ROOT)


def oks(proc: subprocess.CompletedProcess, scenario: str) -> list[str]:
    return sorted(re.findall(rf"OK {scenario} rank (\d+)", proc.stdout))  # ranks' lines may interleave


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_gradients_training_and_checkpoints_across_ranks(n, tmp_path):
    """Values of allreduce/allgather/broadcast; gradients through them against finite differences
    across ranks; DistributedOptimizer (weighted, uneven shards at n=3, buckets, clipping) after 20 steps
    against one process on the same global batches, float64 and float32; broadcast_variables; a rank-0
    checkpoint restored on every rank and here, in one process."""
    proc = mpiexec(n, "main", tmp_path)
    assert proc.returncode == 0 and oks(proc, "main") == [str(r) for r in range(n)], proc.stdout + proc.stderr
    from mpi_worker import build  # noqa: E402  (the same model, built in this process)

    model = build(np.float32, distributed=False)
    sess = gc.Session()
    gc.train.Saver().restore(sess, tmp_path / f"ckpt_n{n}")
    np.testing.assert_array_equal(sess.variable_value(model["vars"][0]), np.load(tmp_path / f"w0_n{n}.npy"))


def test_mismatched_graphs_are_refused_naming_the_difference(tmp_path):
    proc = mpiexec(2, "mismatch", tmp_path)
    assert proc.returncode == 0 and oks(proc, "mismatch") == ["0", "1"], proc.stdout + proc.stderr
    assert "w0 (5, 8) float64 on rank 0, w0 (5, 9) float64 on rank 1" in proc.stdout
    assert "b0 (8,) float64 on rank 0, b0 (9,) float64 on rank 1" in proc.stdout


WAITED_FOR = "allreduce float64 (73,) of w1 (8, 3) float64; b0 (8,) float64; w0 (5, 8) float64"


@pytest.mark.parametrize("supervised", [False, True])
def test_a_failing_rank_gives_the_others_a_distributed_error_within_the_timeout(supervised, tmp_path):
    """Rank 1 raises after one step. Under the recommended launch for fault reporting nobody kills
    rank 1, whose MPI_Finalize at exit would wait for rank 0 forever: its watchdog ends it."""
    flags = ("-disable-auto-cleanup",) if supervised else ()
    proc = mpiexec(2, "raise", tmp_path, *flags, timeout=2, supervise=supervised)
    assert proc.returncode != 0
    assert oks(proc, "raise") == ["0"], proc.stdout + proc.stderr
    assert f"{WAITED_FOR} (a collective of a compiled program): rank 0 waited 2 s for the other ranks" in proc.stdout
    assert "DistributedError" in proc.stderr and "rank 1 fails on purpose" in proc.stderr


def test_a_killed_rank_gives_the_others_a_distributed_error_within_the_timeout(tmp_path):
    """Rank 1 is SIGKILLed at a random moment of training; under the recommended launch
    (-disable-auto-cleanup, each rank under graphc.distributed.supervise) rank 0 survives and
    its next collective raises DistributedError after the 2 s timeout."""
    proc = mpiexec(2, "kill", tmp_path, "-disable-auto-cleanup", timeout=2, supervise=True)
    assert proc.returncode != 0
    assert oks(proc, "kill") == ["0"], proc.stdout + proc.stderr
    assert f"{WAITED_FOR} (a collective of a compiled program): rank 0 waited 2 s for the other ranks" in proc.stdout
    assert "graphc.distributed.supervise: the rank" in proc.stderr and "killed by SIGKILL" in proc.stderr
    assert "DistributedError" in proc.stderr


def test_a_killed_rank_ends_the_job_under_plain_mpiexec(tmp_path):
    """Under plain mpiexec (hydra's auto-cleanup) a rank killed by a signal makes the launcher
    SIGKILL every rank at once: the job ends, without a DistributedError."""
    # The launcher ends the job as soon as rank 1 dies, whatever the collectives' timeout; 2 s
    # let a loaded machine (a first compile of 2 s or more) time rank 0 out before the kill.
    proc = mpiexec(2, "kill", tmp_path, timeout=30)
    assert proc.returncode != 0
    assert "Killed (signal 9)" in proc.stdout + proc.stderr


def test_mlp_digits_distributed_prints_the_single_process_results(tmp_path):
    """examples/mlp_digits.py --distributed under mpiexec -n 2: rank 0 alone prints the same
    epoch losses and final accuracy as one process with the same global batch."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    example = str(ROOT / "examples" / "mlp_digits.py")
    runs = [subprocess.run(prefix + [sys.executable, example, "--epochs", "1", *extra], capture_output=True, text=True,
                           timeout=TIMEOUT, env=env, cwd=ROOT)
            for prefix, extra in (([], []), ([str(MPIEXEC), "-n", "2"], ["--distributed"]))]
    for proc in runs:
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def results(out: str) -> list[str]:
        return re.findall(r"^(?:epoch .*|test: .*)$", out, flags=re.M)

    single, distributed = (results(p.stdout) for p in runs)
    assert len(single) == 2 and distributed == single
    assert runs[1].stdout.count("test: loss") == 1 and "over 2 ranks" in runs[1].stdout
