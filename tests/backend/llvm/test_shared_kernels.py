"""graphc's tiled GEMM kernels are shared by the programs of a process (`graphc.backend.llvm.shared`):
declared by each program, compiled once, cached on disk under their name."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import cache, jit, shared, tiled

pytestmark = pytest.mark.skipif(tiled.blocking(np.float32) is None, reason="host has no AVX2/FMA kernel")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process with no kernel made yet and an empty disk cache; every product on the kernel."""
    monkeypatch.setenv("GRAPHC_GEMM", "tiled")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    monkeypatch.setattr(shared, "_made", {})
    monkeypatch.setattr(jit, "may_fork", lambda: False)  # compiled here (test_forked_compile forks)


def _product(n: int, scale: float):
    """A program computing a (5 x n) @ (n x 40) product (scaled: distinct programs), its value and want."""
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((5, n)).astype(np.float32), rng.standard_normal((n, 40)).astype(np.float32)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, a.shape, name="x")
        y = (x @ gc.constant(b)) * scale
        with gc.Session() as sess:
            got = sess.run(y, {x: a})
            (prog,) = [e.program for plan in sess._requests.values() for e in plan.programs.values()]
    np.testing.assert_allclose(got, (a @ b) * scale, rtol=1e-4, atol=1e-4)
    return prog


def test_programs_declare_one_kernel_made_once(fresh):
    name, text = tiled.kernel(np.float32)
    first, second = _product(7, 1.0), _product(9, 2.0)
    for prog in (first, second):
        assert shared.declared(prog.ir_text) == [name]
        assert f'declare void @"{name}"' in prog.ir_text and "panel.head" not in prog.ir_text  # not its body
    assert list(shared._made) == [name]
    kernel = shared._made[name].result()
    assert not kernel.from_cache and kernel.ir_text == text
    assert shared.symbols(first.ir_text) == {name: kernel.address}


def test_the_name_is_known_without_the_ir_and_names_it():
    name, text = tiled.kernel(np.float32)
    assert tiled.kernel_name(np.float32) == name and name.startswith("graphc_tiled_float32_")
    assert f'define void @"{name}"' in text and shared.definition(name) == text
    if tiled.blocking(np.float64) is not None:
        assert tiled.kernel_name(np.float64).startswith("graphc_tiled_float64_")


def test_a_warm_cache_gives_the_kernel_without_its_ir(fresh, monkeypatch):
    name, _ = tiled.kernel(np.float32)
    _product(11, 1.0)
    monkeypatch.setattr(shared, "_made", {})  # as a fresh process with this cache
    monkeypatch.setattr(shared, "definition", lambda n: pytest.fail("the kernel's IR was made on a cache hit"))
    monkeypatch.setattr(tiled, "kernel", lambda d: pytest.fail("the kernel's IR was made on a cache hit"))
    _product(11, 3.0)
    kernel = shared._made[name].result()
    assert kernel.from_cache and kernel.ir_text == ""


def test_a_damaged_kernel_entry_is_compiled_again(fresh, monkeypatch, tmp_path):
    name, _ = tiled.kernel(np.float32)
    _product(13, 1.0)
    entries = list(tmp_path.rglob("*.o"))
    for path in entries:  # damage every entry: programs and the kernel alike
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 0xFF
        path.write_bytes(bytes(blob))
    assert entries and all(cache.load(p.stem) is None for p in entries)
    monkeypatch.setattr(shared, "_made", {})
    _product(13, 1.0)  # values checked against numpy
    assert not shared._made[name].result().from_cache


def test_a_kernel_name_this_graphc_does_not_make_is_refused():
    name, _ = tiled.kernel(np.float32)
    with pytest.raises(gc.GraphcError, match="not a kernel this graphc makes"):
        shared.definition(name[:-4] + "0000" if not name.endswith("0000") else name[:-4] + "1111")


def test_a_process_that_exits_while_the_kernel_compiles_waits_for_it(tmp_path):
    """The kernel's compile, started for a graph that then never compiles, finishes before the
    process exits (its entry is in the disk cache); the process exits cleanly."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import numpy as np, graphc as gc\n"
              "from graphc.backend.llvm import shared\n"
              "with gc.Graph().as_default():\n"
              "    x = gc.placeholder(gc.float32, (3, 40), name='x')\n"
              "    shared.prepare_for([x @ gc.constant(np.ones((40, 40), np.float32))])\n")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(root)}
    env.pop("GRAPHC_CACHE", None)
    env.pop("GRAPHC_GEMM", None)
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert list(tmp_path.rglob("*.o")), "the kernel's compile did not finish before the exit"


def test_the_kernel_starts_before_the_program_is_made(fresh, monkeypatch):
    """A Session's and a gc.function's first compile start the kernel before the backend makes the
    program (loading the template modules, keying the template cache, planning)."""
    from graphc.backend.llvm import template_cache

    events = []
    prepare, make = shared.prepare_for, template_cache.symbolic_program
    monkeypatch.setattr(shared, "prepare_for", lambda nodes: (events.append("kernel"), prepare(nodes))[1])
    monkeypatch.setattr(template_cache, "symbolic_program",
                        lambda *a, **k: (events.append("program"), make(*a, **k))[1])
    a = np.ones((3, 8), np.float32)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (None, 8), name="x")
        y = x @ gc.constant(np.eye(8, dtype=np.float32))
        np.testing.assert_allclose(gc.Session().run(y, {x: a}), a)
        assert events[:2] == ["kernel", "program"]
        events.clear()
        np.testing.assert_allclose(gc.function([x], y * 2.0)(a), 2 * a)
        assert events[:2] == ["kernel", "program"]
