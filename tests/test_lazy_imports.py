"""What a fresh process loads: modules a first result does not use stay unloaded (docs/architecture.md,
"Import structure"; their import time counts in W5's figures, docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST_SIZE = """
import json, sys
import numpy as np
import graphc as gc
at_import = sorted(sys.modules)
with gc.Graph().as_default():
    x = gc.placeholder(gc.float32, (None, 3))
    w = gc.Variable(np.ones((3, 2), np.float32))
    loss = gc.sum(gc.relu(x @ w))
    grads = gc.gradients(loss, [w])
    sess = gc.Session()
value = sess.run([loss, *grads], {x: np.ones((4, 3), np.float32)})[0]
print(json.dumps({"import": at_import, "run": sorted(sys.modules), "value": float(value),
                  "stats": sess.stats()}))
"""


def _loaded(tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("GRAPHC_CACHE", None)
    out = subprocess.run([sys.executable, "-c", FIRST_SIZE], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_a_first_size_loads_no_template_machinery(tmp_path):
    """A None dim's first size runs a program specialized to it (docs/runtime.md): building and
    running it loads neither the template builder nor the template IR fitter."""
    found = _loaded(tmp_path)
    assert found["value"] == 24.0
    assert found["stats"]["first_sizes"] == 1
    assert "graphc.backend.llvm.program_entries" in found["run"]  # the run did compile
    for name in ("graphc.backend.llvm.symbolic", "graphc.backend.llvm.template"):
        assert name not in found["run"], name
