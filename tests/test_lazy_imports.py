"""What a fresh process loads: modules a first result does not use stay unloaded (docs/architecture.md,
"What `import graphc` loads"; their import time counts in W5's figures, docs/benchmarks.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FIRST_SIZE = """
import json, sys
import numpy as np
import graphc as gc
at_import = sorted(sys.modules)
with gc.Graph().as_default():
    x = gc.placeholder(gc.float32, (None, 3))
    y = gc.placeholder(gc.int32, (None,))
    w = gc.Variable(np.ones((3, 2), np.float32))
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ w), y)
    grads = gc.gradients(loss, [w])
    sess = gc.Session()
value = sess.run([loss, *grads], {x: np.ones((4, 3), np.float32), y: np.array([0, 1, 0, 1], np.int32)})[0]
print(json.dumps({"import": at_import, "run": sorted(sys.modules), "value": float(value),
                  "stats": sess.stats()}))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    """The modules loaded by ``import graphc`` and by then compiling and running a W2-like step for
    a None dim's first size (softmax cross-entropy of a matmul, its gradient) on a cold disk cache."""
    tmp = tmp_path_factory.mktemp("lazy")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHC_CACHE_DIR": str(tmp / "cache")}
    env.pop("GRAPHC_CACHE", None)
    out = subprocess.run([sys.executable, "-c", FIRST_SIZE], capture_output=True, text=True, env=env, cwd=tmp)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.splitlines()[-1])
    assert math.isclose(found["value"], math.log(2), rel_tol=1e-6)
    assert found["stats"]["first_sizes"] == 1
    assert "graphc.backend.llvm.program_entries" in found["run"]  # the run did compile
    return found


def test_import_graphc_loads_no_backend_training_or_namespaces(loaded):
    for name in ("llvmlite", "scipy", "graphc.backend", "graphc.train", "graphc.autodiff.api", "graphc.autodiff.clip",
                 "graphc.nn", "graphc.layers"):
        assert name not in loaded["import"], name


def test_a_first_size_loads_only_what_it_uses(loaded):
    """A None dim's first size runs a program specialized to it (docs/runtime.md): neither the
    template machinery, nor lowering for loops, LAPACK or MPI, nor the layers gc.nn re-exports."""
    for name in ("graphc.backend.llvm.symbolic", "graphc.backend.llvm.template", "graphc.backend.llvm.control",
                 "graphc.backend.llvm.lapack", "graphc.backend.llvm.collective", "graphc.passes.loop_revolve",
                 "graphc.layers", "graphc.layers_conv", "graphc.attention", "graphc.normalization", "graphc.train"):
        assert name not in loaded["run"], name
