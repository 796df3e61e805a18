"""`fewer_collections`: Python's cyclic garbage collector runs less often while a program compiles.

Planning and code generation allocate many container objects, and llvmlite's IR objects
refer to each other in cycles (an instruction to its block, a block to its function), so
a module built for its text is garbage that only the cyclic collector frees. During a
compile that collector ran about 160 times for W2's symbolic template (five probe builds),
traversing the compile's live objects again at each older-generation pass: 51 ms of the
main thread's CPU of a cold first result (docs/benchmarks.md, W5). While a compile runs,
the youngest generation is collected only after `YOUNG` net allocations instead of 700 (the
default), so a program of W2's or W4's size compiles without a collection and its garbage
waits for the first automatic collection after it, one pass; a larger one still collects,
every `YOUNG` allocations, which bounds the garbage it holds.

The setting is process-wide and shared: the outermost compile in progress (in any thread)
raises the threshold, and the last one to finish restores the thresholds it found.
Reference counting frees everything that is not in a cycle, as always.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["fewer_collections"]

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
YOUNG = 200_000  # youngest generation's threshold during a compile (objects)
_depth = 0
_found: tuple[int, ...] = ()  # the thresholds the outermost compile found


def _enter() -> None:
    global _depth, _found
    with _lock:
        if _depth == 0:
            _found = gc.get_threshold()
            gc.set_threshold(max(_found[0], YOUNG), *_found[1:])
        _depth += 1


def _exit() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            gc.set_threshold(*_found)


def fewer_collections(fn: _F) -> _F:
    """`fn` with the youngest generation's threshold raised while it runs (see the module docstring)."""

    @functools.wraps(fn)
    def collecting_less(*args: Any, **kwargs: Any) -> Any:
        _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _exit()

    return collecting_less  # type: ignore[return-value]
