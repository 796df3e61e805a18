"""Process-wide native resources are made once, also when threads race for them
(backend/llvm/once.py): a dropped duplicate left builtin functions pointing into freed memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from graphc.backend.llvm.once import once

ROOT = Path(__file__).resolve().parents[3]


def test_once_makes_one_value_when_eight_threads_miss_at_the_same_time():
    made = []

    @once
    def value() -> object:
        time.sleep(0.05)  # every thread arrives while the first one is still making it
        made.append(object())
        return made[-1]

    start = threading.Barrier(8)
    got = []

    def take() -> None:
        start.wait()
        got.append(value())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(got) == 8 and all(g is made[0] for g in got)


def test_first_runs_of_six_threads_at_once_on_a_fresh_process_do_not_crash():
    """Six threads making their first Session.run at the same time in a new process (the
    native call routine, its method definition and the pool made under a race) segfaulted."""
    script = textwrap.dedent("""
        import threading
        import numpy as np
        import graphc as gc
        x = gc.placeholder(gc.float32, (400,), name="x")
        y = x * 2.0
        sess = gc.Session()
        bad = []
        start = threading.Barrier(6)
        def worker(seed):
            v = np.full(400, float(seed), np.float32)
            start.wait()
            for _ in range(60):
                r = sess.run([y, y + 1.0], {x: v})
                if not (np.all(r[0] == 2 * seed) and np.all(r[1] == 2 * seed + 1)):
                    bad.append(seed)
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("wrong results:", len(bad))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr[-2000:]}"
    assert "wrong results: 0" in proc.stdout
