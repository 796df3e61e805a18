"""The default for None dims (`CompileOptions(specialize=None)`): on a cold disk cache, the first
size fed gets a program specialized to it; a second size builds the symbolic template, which
serves every later size without compiling; a warm cache loads the template at once."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_symbolic_dims import _mlp

import graphc as gc
from graphc.backend.llvm import template_cache
from graphc.backend.llvm.symbolic import SymbolicAt, SymbolicProgram

SIZES = (5, 1, 7, 32, 500)  # the first size, then the template at the others (1 included)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty disk cache of this test's own."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    return tmp_path


def _mlp_train():
    """test_symbolic_dims's MLP: x, y, [loss, *gradients], an SGD step, its variables."""
    x, y, fetches = _mlp()
    variables = list(gc.get_default_graph().variables)
    train = gc.group(*[gc.assign_sub(v, 0.1 * g) for v, g in zip(variables, fetches[1:])])
    return x, y, fetches, train, variables


def _feeds(x, y, n):
    rng = np.random.default_rng(n)
    return {x: rng.standard_normal((n, 6)).astype(np.float32), y: rng.integers(0, 3, n).astype(np.int32)}


def _delta(before):
    after = template_cache.counts()
    return {k: after[k] - before[k] for k in after}


def test_first_size_specialized_then_one_template_for_every_later_size(cache_dir):
    """Loss, gradients and an SGD step against the reference backend at every size; the first size
    runs a specialized program, the second builds the template, the later ones compile nothing."""
    x, y, fetches, train, variables = _mlp_train()
    before, counts = gc.compile_count(), template_cache.counts()
    with gc.Session() as sess, gc.Session(backend="reference") as ref:
        for k, n in enumerate(SIZES):
            feeds = _feeds(x, y, n)
            for got, want in zip(sess.run(fetches, feeds), ref.run(fetches, feeds)):
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5, err_msg=f"batch {n}")
            sess.run(train, feeds)
            ref.run(train, feeds)
            for v in variables:
                np.testing.assert_allclose(sess.variable_value(v), ref.variable_value(v), rtol=2e-5, atol=1e-6,
                                           err_msg=f"{v.name} after batch {n}")
            program = sess.compile(fetches, feeds)
            if k == 0:
                assert not isinstance(program, (SymbolicProgram, SymbolicAt))
                assert sess.stats() == {"compiles": 2, "symbolic": 0, "specialized": 2, "first_sizes": 2,
                                        "not_symbolic": []}  # the fetches and the train op
            else:
                assert isinstance(program, SymbolicAt) and program.values == (n,)
            if k == 1:
                compiled = gc.compile_count()
        assert gc.compile_count() == compiled  # sizes 7, 32 and 500: no compile
        assert sess.stats() == {"compiles": 4, "symbolic": 2, "specialized": 2, "first_sizes": 2, "not_symbolic": []}
        assert not isinstance(sess.compile(fetches, _feeds(x, y, SIZES[0])), SymbolicAt)  # still its own program
    assert gc.compile_count() - before == 4
    assert _delta(counts) == {"probed": 2, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}


def test_gc_function_first_size_then_template(cache_dir):
    """gc.function: the same policy as Session.run, and the same values as the reference."""
    x, y, fetches, _, _ = _mlp_train()
    f = gc.function([x, y], fetches)
    with gc.Session(backend="reference") as ref:
        for n in SIZES:
            feeds = _feeds(x, y, n)
            for got, want in zip(f(feeds[x], feeds[y]), ref.run(fetches, feeds)):
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5, err_msg=f"batch {n}")
    assert f.stats() == {"compiles": 2, "symbolic": 1, "specialized": 1, "first_sizes": 1, "not_symbolic": []}
    assert not isinstance(f.program([(SIZES[0], 6), (SIZES[0],)]), SymbolicProgram)
    assert isinstance(f.program([(3, 6), (3,)]), SymbolicProgram)


def test_warm_cache_loads_the_template_on_first_use(cache_dir):
    """A session whose disk cache holds the template (built by an earlier session at two sizes)
    loads it at its first size: one compile, no first-size program; and one that ran a single
    size before loads that first-size program without planning."""
    x, y, fetches, _, _ = _mlp_train()
    with gc.Session() as sess:
        want = [sess.run(fetches, _feeds(x, y, n)) for n in SIZES[:2]]
    counts = template_cache.counts()
    with gc.Session() as sess:
        got = [sess.run(fetches, _feeds(x, y, n)) for n in SIZES[:2]]
        assert isinstance(sess.compile(fetches, _feeds(x, y, SIZES[0])), SymbolicAt)
        assert sess.stats() == {"compiles": 1, "symbolic": 1, "specialized": 0, "first_sizes": 0, "not_symbolic": []}
    assert _delta(counts) == {"probed": 0, "loaded": 1, "first_loaded": 0, "specialized_loaded": 0}
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)
    # another fetch list run at one size: its first-size program is stored, and loaded by the next session
    for k in range(2):
        counts = template_cache.counts()
        with gc.Session() as sess:
            value = sess.run(fetches[0], _feeds(x, y, 9))
            assert sess.stats()["first_sizes"] == 1
            report = sess.compile(fetches[0], _feeds(x, y, 9)).report()  # the plan, built on demand
        assert _delta(counts) == {"probed": 0, "loaded": 0, "first_loaded": k, "specialized_loaded": 0}
        assert "planned peak (arena)" in report
        if k == 0:
            first_value, first_report = value, report
    assert value == first_value and report == first_report


CHILD = """
import json, sys
import numpy as np
import graphc as gc
from graphc.backend.llvm import template_cache

x = gc.placeholder(gc.float32, (None, 6), name="x")
w = gc.Variable(np.arange(18, dtype=np.float32).reshape(6, 3) / 10, name="w")
loss = gc.sum(gc.relu(x @ w + np.array([0.5, -1.0, 2.0], np.float32)))
fetches = [loss, *gc.gradients(loss, [w])]
with gc.Session() as sess:
    out = [[np.asarray(v).tolist() for v in sess.run(fetches, {x: np.full((n, 6), 0.5, np.float32)})]
           for n in map(int, sys.argv[1:])]
    stats = sess.stats()
print(json.dumps({"counts": template_cache.counts(), "stats": stats, "out": out}))
"""


def test_fresh_processes_one_size_then_two_then_warm(cache_dir):
    """Processes on one cache: one size (a first-size program, stored), the same size and another
    (that program loaded, the template built at the second), then any size (the template loaded
    at once); the same values for the same sizes."""
    def child(*sizes):
        env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
        done = subprocess.run([sys.executable, "-c", CHILD, *map(str, sizes)], env=env, capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    runs = [child(4), child(4, 11), child(11, 4)]
    assert [r["counts"] for r in runs] == [{"probed": 0, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0},
                                           {"probed": 1, "loaded": 0, "first_loaded": 1, "specialized_loaded": 0},
                                           {"probed": 0, "loaded": 1, "first_loaded": 0, "specialized_loaded": 0}]
    assert [(r["stats"]["symbolic"], r["stats"]["first_sizes"]) for r in runs] == [(0, 1), (1, 1), (1, 0)]
    assert runs[0]["out"][0] == runs[1]["out"][0] == runs[2]["out"][1]
    assert runs[1]["out"][1] == runs[2]["out"][0]
    row = np.maximum(np.full(6, 0.5) @ (np.arange(18).reshape(6, 3) / 10) + [0.5, -1.0, 2.0], 0)
    np.testing.assert_allclose(runs[2]["out"][0][0], 11 * row.sum(), rtol=1e-5)


def test_a_loaded_first_size_program_profiles_and_exports(cache_dir, tmp_path_factory):
    """A first-size program loaded from the disk cache builds its plan when the profiler or the
    exporter asks: a traced call and an exported library give the values of the first process."""
    x = gc.placeholder(gc.float32, (None, 6), name="x")
    w = gc.Variable(np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3), name="w")
    y = gc.sum(gc.relu(x @ w), axis=1)
    a = np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)
    want = gc.function([x], y)(a)  # compiles and stores the first-size program
    counts = template_cache.counts()
    f = gc.function([x], y)
    got, meta = f.profile(a)
    assert _delta(counts) == {"probed": 0, "loaded": 0, "first_loaded": 1, "specialized_loaded": 0} and meta.step_stats
    out = tmp_path_factory.mktemp("export")
    f.export(out, "first", signatures=[[(4, 6)]])
    for value in (got, gc.load_exported(out, "first")(a)):
        np.testing.assert_allclose(value, want, rtol=1e-6)
