"""A shared kernel compiled in a forked child (`optimizer.Forked`, `jit.compile_shared`): the same
object code as in process, and every failure of the child (an error, an exit without a reply, a
timeout) leaves the compile to this process. Forking runs in fresh processes (one thread, as
`optimizer.may_fork` requires), not in the test process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from graphc.backend.llvm import optimizer, tiled

pytestmark = pytest.mark.skipif(tiled.blocking(np.float32) is None or not sys.platform.startswith("linux"),
                                reason="host has no AVX2/FMA kernel, or no fork")

_ROOT = Path(__file__).resolve().parents[3]

_FORKED = """
import json, os, sys, time
import numpy as np
from graphc.backend.llvm import jit, optimizer, tiled

tm = jit.target_machine()
_, text = tiled.kernel(np.float32)
out = {"may_fork": optimizer.may_fork()}
out["same"] = optimizer.Forked(lambda: text, tm).object_code() == optimizer.object_code(text, tm)

def fails():
    raise RuntimeError("no IR")

out["raises"] = optimizer.Forked(fails, tm).object_code()
out["exits"] = optimizer.Forked(lambda: os._exit(0), tm).object_code()
optimizer.FORK_TIMEOUT_S = 0.5
start = time.monotonic()
out["slow"] = optimizer.Forked(lambda: time.sleep(60) or text, tm).object_code()
out["slow_seconds"] = time.monotonic() - start
print(json.dumps(out))
"""

_SESSION = """
import json, sys
import numpy as np
import graphc as gc
from graphc.backend.llvm import cache, jit, optimizer, shared, tiled

if sys.argv[1] == "failing child":  # the child's compile raises (the parent compiles with optimize_ir)
    def fails(ir_text, tm):
        raise RuntimeError("child")
    optimizer.object_code = fails
forks = []
forked = jit.Forked
jit.Forked = lambda *args: forks.append(1) or forked(*args)
rng = np.random.default_rng(0)
a, b = rng.standard_normal((6, 50)).astype(np.float32), rng.standard_normal((50, 70)).astype(np.float32)
with gc.Graph().as_default():
    x = gc.placeholder(gc.float32, a.shape, name="x")
    got = gc.Session().run(x @ gc.constant(b), {x: a})
np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)
name, text = tiled.kernel_name(np.float32), tiled.kernel(np.float32)[1]
kernel = shared._made[name].result()
print(json.dumps({"forked": len(forks), "from_cache": kernel.from_cache, "has_ir": kernel.ir_text == text}))
"""


def _run(script: str, *args: str, cache_dir: Path | None = None, python_flags: tuple[str, ...] = ()) -> dict:
    env = {**os.environ, "PYTHONPATH": str(_ROOT), "GRAPHC_GEMM": "tiled"}
    for name in ("GRAPHC_CACHE", "GRAPHC_OPT_PROCESS"):
        env.pop(name, None)
    if cache_dir is not None:
        env["GRAPHC_CACHE_DIR"] = str(cache_dir)
    run = subprocess.run([sys.executable, *python_flags, "-c", script, *args], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_forked_child_gives_the_in_process_code_and_nothing_when_it_fails(tmp_path):
    out = _run(_FORKED, cache_dir=tmp_path)
    assert out["may_fork"] and out["same"]
    assert out["raises"] is None and out["exits"] is None
    assert out["slow"] is None and out["slow_seconds"] < 30  # killed at the timeout, not waited for


def test_a_cold_process_compiles_the_kernel_in_a_child_and_the_next_loads_it(tmp_path):
    cold = _run(_SESSION, "plain", cache_dir=tmp_path)
    assert cold == {"forked": 1, "from_cache": False, "has_ir": False}  # made in the child: no IR here
    warm = _run(_SESSION, "plain", cache_dir=tmp_path)  # the entry the child's object made is complete
    assert warm == {"forked": 0, "from_cache": True, "has_ir": False}


def test_a_failing_child_leaves_the_kernel_to_this_process(tmp_path):
    out = _run(_SESSION, "failing child", cache_dir=tmp_path)
    assert out == {"forked": 1, "from_cache": False, "has_ir": True}  # compiled in process, values checked


def test_no_fork_with_other_threads_or_compiles_kept_in_process(monkeypatch):
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not optimizer.may_fork()
    finally:
        release.set()
        other.join()
    monkeypatch.setenv("GRAPHC_OPT_PROCESS", "0")
    assert not optimizer.may_fork()


@pytest.mark.parametrize("module", ["jax", "mpi4py.MPI"])
def test_no_fork_with_jax_or_mpi_loaded(monkeypatch, module):
    monkeypatch.delenv("GRAPHC_OPT_PROCESS", raising=False)
    monkeypatch.setitem(sys.modules, module, sys)  # any module object: only its name is looked up
    assert not optimizer.may_fork()


_WARNING_FORK = """
import json, os, warnings
from graphc.backend.llvm import jit, optimizer, tiled

fork = os.fork
def warning_fork():  # as Python 3.12+ does in a process with native threads
    warnings.warn("This process is multi-threaded, use of fork() may lead to deadlocks", DeprecationWarning)
    return fork()
os.fork = warning_fork
tm = jit.target_machine()
_, text = tiled.kernel(__import__("numpy").float32)
print(json.dumps({"same": optimizer.Forked(lambda: text, tm).object_code() == optimizer.object_code(text, tm)}))
"""


def test_a_fork_warning_made_an_error_does_not_stop_the_compile(tmp_path):
    assert _run(_WARNING_FORK, cache_dir=tmp_path, python_flags=("-W", "error")) == {"same": True}
