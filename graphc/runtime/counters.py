"""The process-wide count of compiled programs (`gc.compile_count()`), for tests and monitoring."""

from __future__ import annotations

import itertools
import threading

_lock = threading.Lock()
_counter = itertools.count(1)
_count = 0


def count_compile() -> None:
    """Record one compiled program (called by the LLVM backend for each program it builds)."""
    global _count
    with _lock:
        _count = next(_counter)


def compile_count() -> int:
    """How many programs the LLVM backend has compiled in this process (an object-cache hit counts:
    it builds the program again, minus the LLVM optimization)."""
    return _count
