"""The garbage collector's youngest threshold is raised while a program compiles, and restored."""

import gc as pygc
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.backend.llvm import collector, program
from graphc.backend.llvm.collector import YOUNG, fewer_collections


@pytest.fixture
def thresholds():
    found = pygc.get_threshold()
    pygc.set_threshold(900, 11, 12)
    yield
    pygc.set_threshold(*found)


def test_raised_inside_restored_after_also_on_error(thresholds):
    seen = []

    @fewer_collections
    def inner(fail):
        seen.append(pygc.get_threshold())
        if fail:
            raise ValueError("boom")

    @fewer_collections
    def outer():
        inner(False)  # nested: the outermost restores
        seen.append(pygc.get_threshold())

    outer()
    assert seen == [(YOUNG, 11, 12), (YOUNG, 11, 12)]
    assert pygc.get_threshold() == (900, 11, 12)
    with pytest.raises(ValueError, match="boom"):
        inner(True)
    assert pygc.get_threshold() == (900, 11, 12)


def test_threads_share_the_setting(thresholds):
    entered, release = threading.Barrier(2), threading.Event()

    @fewer_collections
    def hold():
        entered.wait()
        release.wait()

    t = threading.Thread(target=hold)
    t.start()
    entered.wait()
    fewer_collections(lambda: None)()  # another compile ends while the first runs: still raised
    assert pygc.get_threshold()[0] == YOUNG
    release.set()
    t.join()
    assert pygc.get_threshold() == (900, 11, 12)


def test_a_compile_runs_with_it(thresholds, monkeypatch):
    seen = []
    text = program.module_text
    monkeypatch.setattr(program, "module_text", lambda plan: (seen.append(pygc.get_threshold()), text(plan))[1])
    monkeypatch.setenv("GRAPHC_CACHE", "0")  # a warm disk cache would load the program without generating it
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (3,), name="x")
        y = gc.exp(x) * 2.0
        out = gc.Session().run(y, {x: np.zeros(3, np.float32)})
    np.testing.assert_allclose(out, 2.0)
    assert seen and all(t == (YOUNG, 11, 12) for t in seen)
    assert pygc.get_threshold() == (900, 11, 12)
    assert collector._depth == 0
