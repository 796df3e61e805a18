"""Programs specialized to their feed shapes in the disk cache (`program_entries.specialized_program`):
a fresh process with a warm cache runs them without optimizing, planning or generating code."""

import json
import os
import subprocess
import sys

import numpy as np

import graphc as gc
from graphc.backend.llvm import template_cache

LAYERS, WIDTH, BATCH = 4, 16, 8

CHILD = f"""
import json
import numpy as np
import graphc as gc
from graphc.backend.llvm import program, template_cache

planned = []
optimize, module_text = program.optimize, program.module_text
program.optimize = lambda *a, **k: (planned.append("optimize"), optimize(*a, **k))[1]
program.module_text = lambda plan: (planned.append("module_text"), module_text(plan))[1]
rng = np.random.default_rng(0)
ws = [gc.Variable(rng.standard_normal(({WIDTH}, {WIDTH})).astype(np.float32) / 4, name=f"w{{i}}")
      for i in range({LAYERS})]
x = gc.placeholder(gc.float32, ({BATCH}, {WIDTH}), name="x")
h = x
for w in ws:
    h = gc.tanh(h @ w)
loss = gc.sum(h)
fetches = [loss, *gc.gradients(loss, ws)]
with gc.Session() as sess:
    out = sess.run(fetches, {{x: np.linspace(-1, 1, {BATCH * WIDTH}, dtype=np.float32).reshape({BATCH}, {WIDTH})}})
print(json.dumps({{"counts": template_cache.counts(), "planned": planned,
                  "out": [np.asarray(v).tolist() for v in out]}}))
"""


def _child(cache_dir) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    env.pop("GRAPHC_CACHE", None)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reference() -> list:
    """W4's loss and weight gradients in numpy (tanh layers, the sum of the last)."""
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 4 for _ in range(LAYERS)]
    hs = [np.linspace(-1, 1, BATCH * WIDTH, dtype=np.float32).reshape(BATCH, WIDTH).astype(np.float64)]
    for w in ws:
        hs.append(np.tanh(hs[-1] @ w))
    g, grads = np.ones_like(hs[-1]), []
    for i in reversed(range(LAYERS)):
        d = g * (1 - hs[i + 1] ** 2)
        grads.insert(0, hs[i].T @ d)
        g = d @ ws[i].T
    return [hs[-1].sum(), *grads]


def test_a_warm_process_runs_a_static_program_without_planning(tmp_path):
    """W4's shape of graph (no None dims): the second process loads the program's description
    and object code, plans nothing, and gets the first process's values (the reference's)."""
    first, second = _child(tmp_path), _child(tmp_path)
    assert first["counts"]["specialized_loaded"] == 0 and "optimize" in first["planned"]
    assert second["counts"] == {"probed": 0, "loaded": 0, "first_loaded": 0, "specialized_loaded": 1}
    assert second["planned"] == []
    assert second["out"] == first["out"]
    for got, want in zip(second["out"], _reference()):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def _program(x, y, feeds):
    """A new session's program for `y` and the counts' change."""
    before = template_cache.counts()
    with gc.Session(x.graph) as sess:
        program = sess.compile(y, feeds)
        got = sess.run(y, feeds)
    after = template_cache.counts()
    return program, got, {k: after[k] - before[k] for k in after}["specialized_loaded"]


def test_damaged_entries_are_misses_and_loaded_programs_report(tmp_path, monkeypatch):
    """A truncated or flipped description (or object code) entry is compiled again, with the right
    values; a loaded program's report and listings are the compiled one's (built on first use)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (3, 4), name="x")
        w = gc.Variable(np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5), name="w")
        y = gc.tanh(x @ w) * 2.0
    feeds = {x: np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)}
    want = np.tanh(feeds[x] @ np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)) * 2.0
    compiled, got, loaded = _program(x, y, feeds)
    assert loaded == 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    program, got, loaded = _program(x, y, feeds)
    assert loaded == 1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert program.plan.arena_bytes == compiled.plan.arena_bytes
    assert [program.report(), *(program.as_text(s) for s in ("graph", "kernels", "llvm"))] == \
        [compiled.report(), *(compiled.as_text(s) for s in ("graph", "kernels", "llvm"))]
    descriptions = [p for p in tmp_path.rglob("*.o") if b'"ir": ' in p.read_bytes()]
    assert len(descriptions) == 1
    for damage in (lambda b: b[:len(b) // 2], lambda b: b[:-1] + bytes([b[-1] ^ 1])):
        for paths in (descriptions, list(tmp_path.rglob("*.o"))):
            for path in paths:
                path.write_bytes(damage(path.read_bytes()))
            _, got, loaded = _program(x, y, feeds)
            assert loaded == 0
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    _, got, loaded = _program(x, y, feeds)  # the misses stored good entries again
    assert loaded == 1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
