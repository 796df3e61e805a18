"""The executable layer: Session.run, gc.function and the exported library's loader share it,
and the runtime's modules use no other module's private state."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import executable
from graphc.runtime.executable import Executable, ReadWriteLock, VariableStore

ROOT = Path(gc.__file__).parent
# documented names with a leading underscore: os._exit, ctypes.CDLL._name
ALLOWED = {("os", "_exit"), ("library", "_name")}


def _front_end_files() -> list[Path]:
    return sorted(ROOT.glob("runtime/*.py")) + [ROOT / "function.py", ROOT / "export.py"]


def _own_private_names(src: str) -> set[str]:
    """Private names a module defines itself: its attributes, functions, classes and globals."""
    return (set(re.findall(r"\bself\.(_[A-Za-z]\w*)\s*(?::[^=\n]*)?=", src))
            | set(re.findall(r"^\s*(?:def|class)\s+(_\w+)", src, re.M))
            | set(re.findall(r"^(_\w+)\s*[:=]", src, re.M)))


def test_no_private_state_access_across_modules():
    found = []
    for path in _front_end_files():
        src = path.read_text()
        own = _own_private_names(src)
        for m in re.finditer(r"\b(\w+)\.(_[A-Za-z]\w*)\b", src):
            obj, name = m.groups()
            if obj in ("self", "cls") or name.startswith("__") or name in own or (obj, name) in ALLOWED:
                continue
            found.append(f"{path.relative_to(ROOT)}:{src.count(chr(10), 0, m.start()) + 1}: {obj}.{name}")
        for m in re.finditer(r"^\s*from\s+\S+\s+import\s+\(?([^)\n]*)", src, re.M):
            found += [f"{path.relative_to(ROOT)}: imports {n}" for n in re.findall(r"\b(_[A-Za-z]\w*)", m.group(1))]
    assert not found, "private state used across modules:\n" + "\n".join(found)


def test_the_scan_finds_private_access(tmp_path):
    """The scan above is not vacuous: it reports what function.py used to do."""
    src = "def f(session):\n    return session._values, session._state\nfrom .program import _ffi\n"
    own = _own_private_names(src)
    hits = [m.group(0) for m in re.finditer(r"\b(\w+)\.(_[A-Za-z]\w*)\b", src) if m.group(2) not in own]
    assert hits == ["session._values", "session._state"]


@pytest.fixture
def created(monkeypatch):
    """Every Executable made while the test runs, and how it was used."""
    made: list[tuple[Executable, list[str]]] = []
    init, call, callers = Executable.__init__, Executable.call, Executable.callers

    def record_init(self, program, store):
        init(self, program, store)
        made.append((self, []))

    def use(name, fn):
        def wrapper(self, *args, **kwargs):
            next(u for e, u in made if e is self).append(name)
            return fn(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(Executable, "__init__", record_init)
    monkeypatch.setattr(Executable, "call", use("call", call))
    monkeypatch.setattr(Executable, "callers", use("callers", callers))
    return made


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_session_run_goes_through_one_executable_per_program(created, backend):
    x = gc.placeholder(gc.float32, (None,), name="x")
    v = gc.Variable(np.ones(3, np.float32), name="v")
    with gc.Session(backend=backend) as sess:
        for n in (3, 3):
            np.testing.assert_array_equal(sess.run(x * 2.0, {x: np.ones(n, np.float32)}), np.full(n, 2.0))
        sess.run(gc.assign(v, v + 1.0))
        first, second = [uses for _, uses in created]
        if backend == "llvm":  # the second run makes the cached callable (a checked caller), a third uses it
            assert first == ["call", "call", "callers"] and second == ["call"]
            sess.run(x * 2.0, {x: np.ones(3, np.float32)})
            assert first == ["call", "call", "callers"]
        else:
            assert first == ["call", "call"] and second == ["call"]
        assert all(e.store is sess.variable_store for e, _ in created)
        assert created[1][0].writes and created[1][0].variables == [v]


def test_function_and_session_share_the_store(created):
    v = gc.Variable(np.zeros(2, np.float32), name="v")
    sess = gc.Session()
    bump = gc.function([], v, updates=[(v, v + 1.0)], session=sess)
    bump()
    (exe, uses), = created
    assert uses == ["callers"] and exe.store is sess.variable_store and exe.writes
    np.testing.assert_array_equal(sess.run(v), [1, 1])


def test_variable_store_lock_shuts_on_close():
    store = VariableStore()
    var = gc.Variable(np.arange(3.0), name="w")
    (arr,) = store.arrays([var])
    assert store.arrays([var])[0] is arr  # never replaced
    store.assign(var, np.full(3, 7.0))
    np.testing.assert_array_equal(store.value(var), [7, 7, 7])
    store.close()
    with pytest.raises(gc.GraphcError, match="closed"):
        store.value(var)


def test_arena_is_aligned():
    array, pointer = executable.new_arena(100)
    address = int(executable._ffi.cast("uintptr_t", pointer))
    assert address % 64 == 0 and array.ctypes.data <= address < array.ctypes.data + 64


def _until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_lock_a_waiting_writer_keeps_new_readers_out():
    lock = ReadWriteLock()
    lock.acquire(False)
    order: list[str] = []
    writer = threading.Thread(target=lambda: (lock.acquire(True), order.append("w"), lock.release(True)))
    writer.start()
    _until(lambda: lock.gate)  # the writer waits for the reader
    reader = threading.Thread(target=lambda: (lock.acquire(False), order.append("r"), lock.release(False)))
    reader.start()
    time.sleep(0.05)
    assert order == []  # neither the writer (a reader holds the lock) nor the new reader (a writer waits) went on
    lock.release(False)
    writer.join(10)
    reader.join(10)
    assert order == ["w", "r"] and not lock.gate


def test_lock_shut_waits_for_readers_then_refuses():
    lock = ReadWriteLock()
    lock.acquire(False)
    done = threading.Event()
    closer = threading.Thread(target=lambda: (lock.shut(), done.set()))
    closer.start()
    _until(lambda: lock.gate)
    assert not done.wait(0.05)  # a reader still holds the lock
    lock.release(False)
    closer.join(10)
    assert done.is_set()
    for write in (False, True):
        with pytest.raises(gc.GraphcError, match="closed"):
            lock.acquire(write)
