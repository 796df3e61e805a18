"""The disk cache of symbolic templates (`graphc.backend.llvm.template_cache`)."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import template_cache
from graphc.runtime.symbolic import pattern_of, shapes_at

SIZES = (1, 7, 32)

CHILD = """
import json, sys
import numpy as np
import graphc as gc
from graphc.backend.llvm import template_cache

x = gc.placeholder(gc.float32, (None, 6), name="x")
w = gc.Variable(np.arange(18, dtype=np.float32).reshape(6, 3) / 10, name="w")
loss = gc.sum(gc.relu(x @ w + np.array([0.5, -1.0, 2.0], np.float32)))
fetches = [loss, *gc.gradients(loss, [w])]
out = {}
with gc.Session() as sess:
    for n in (1, 7, 32):
        feed = (np.arange(n * 6, dtype=np.float32).reshape(n, 6) % 5 - 2)
        out[n] = [np.asarray(v).tolist() for v in sess.run(fetches, {x: feed})]
    stats = sess.stats()
print(json.dumps({"counts": template_cache.counts(), "stats": stats, "out": out}))
"""


def _child(cache_dir: Path) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    env.pop("GRAPHC_CACHE", None)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_template(tmp_path):
    """A second process with the same cache does not probe and gets the same values at every size."""
    first, second = _child(tmp_path), _child(tmp_path)
    assert first["counts"] == {"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}
    assert second["counts"] == {"probed": 0, "loaded": 1, "first_loaded": 0, "specialized_loaded": 0}
    assert first["stats"]["symbolic"] == second["stats"]["symbolic"] == 1
    assert second["out"] == first["out"]
    w = np.arange(18, dtype=np.float32).reshape(6, 3) / 10
    for n in SIZES:
        feed = np.arange(n * 6, dtype=np.float32).reshape(n, 6) % 5 - 2
        pre = feed @ w + np.array([0.5, -1.0, 2.0], np.float32)
        np.testing.assert_allclose(second["out"][str(n)][0], np.maximum(pre, 0).sum(), rtol=1e-5)
        np.testing.assert_allclose(second["out"][str(n)][1], feed.T @ (pre > 0), rtol=1e-5, atol=1e-5)


def _model(const, initial):
    """x and y in a graph of their own (as a fresh process builds them: the same names)."""
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (None, 4), name="x")
        w = gc.Variable(initial, name="w")
        return x, gc.tanh(x @ w + const) * 2.0


def _run(x, y, options=None):
    """Values of y at each size in a new session (its own program cache), and the counts' change."""
    before = template_cache.counts()
    rng = np.random.default_rng(3)
    feeds = [rng.standard_normal((n, 4)).astype(np.float32) for n in SIZES]
    with gc.Session(x.graph, options=options) as sess:
        got = [sess.run(y, {x: f}) for f in feeds]
    after = template_cache.counts()
    return got, feeds, {k: after[k] - before[k] for k in after}


def _check(got, feeds, const, initial):
    for g, f in zip(got, feeds):
        np.testing.assert_allclose(g, np.tanh(f @ initial + const) * 2.0, rtol=1e-5, atol=1e-6)


CONST = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)[0]  # 5 values: printed in full
BIG = np.linspace(-1, 1, 16, dtype=np.float32)  # printed as <f32[16] array>


def test_hits_misses_and_damaged_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    rng = np.random.default_rng(0)
    initial = rng.standard_normal((4, 16)).astype(np.float32)
    x, y = _model(BIG, initial)
    got, feeds, delta = _run(x, y)
    assert delta == {"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}
    _check(got, feeds, BIG, initial)
    got, feeds, delta = _run(x, y)
    assert delta == {"probed": 0, "loaded": 1, "first_loaded": 0, "specialized_loaded": 0}
    _check(got, feeds, BIG, initial)
    # another constant (printed alike), other options: other keys; other initial values: the same key
    other = BIG[::-1].copy()
    x2, y2 = _model(other, initial)
    got, feeds, delta = _run(x2, y2)
    assert delta == {"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}
    _check(got, feeds, other, initial)
    got, feeds, delta = _run(x, y, gc.CompileOptions(opt_level=1))
    assert delta == {"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}
    _check(got, feeds, BIG, initial)
    initial2 = initial * -0.5
    x3, y3 = _model(BIG, initial2)
    got, feeds, delta = _run(x3, y3)
    assert delta == {"probed": 0, "loaded": 1, "first_loaded": 0, "specialized_loaded": 0}
    _check(got, feeds, BIG, initial2)
    # every entry truncated, then every entry with a flipped payload byte: recompiled, right values
    for damage in (lambda b: b[:len(b) // 2], lambda b: b[:-1] + bytes([b[-1] ^ 1])):
        for path in tmp_path.rglob("*.o"):
            path.write_bytes(damage(path.read_bytes()))
        got, feeds, delta = _run(x, y)
        assert delta == {"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}
        _check(got, feeds, BIG, initial)


def test_loaded_program_reports_and_prints(tmp_path, monkeypatch):
    """A loaded template builds its optimized graph and plan when a report or listing asks:
    they read as the probed program's."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    x, y = _model(CONST, np.eye(4, 5, dtype=np.float32))
    pattern, _, where = pattern_of([x], [(3, 4)])
    texts, deltas = [], []
    for _ in range(2):
        before = template_cache.counts()
        program = template_cache.symbolic_program([y], [], where, functools.partial(shapes_at, [x], pattern))
        deltas.append({k: template_cache.counts()[k] - before[k] for k in before})
        texts.append([program.report(), *(program.as_text(stage) for stage in ("graph", "kernels", "llvm"))])
        assert program.arena_at((1,)) <= program.arena_at((100,))
    assert deltas == [{"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0},
                      {"probed": 0, "loaded": 1, "first_loaded": 0, "specialized_loaded": 0}]
    assert texts[0] == texts[1]


@pytest.mark.parametrize("value", ["0", "off"])
def test_cache_off_probes_every_time(tmp_path, monkeypatch, value):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_CACHE", value)
    x, y = _model(CONST, np.eye(4, 5, dtype=np.float32))
    for _ in range(2):
        got, feeds, delta = _run(x, y)
        assert delta == {"probed": 1, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}
        _check(got, feeds, CONST, np.eye(4, 5, dtype=np.float32))
    assert not list(tmp_path.rglob("*.o"))
