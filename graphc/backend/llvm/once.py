"""`once`: a process-wide value made by exactly one call, also when threads race for it.

`functools.cache` lets two threads that miss at the same time both call the function and
keeps one result: the other is dropped. For plain values that only wastes work, but the
native resources of the backend (compiled helper modules, cffi callbacks, the method
definition of a builtin function) are used through raw addresses, and an address taken
from the dropped result points into freed memory (six threads making their first
`Session.run` at once crashed that way). `once` holds a lock per function while it makes
the value.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["once"]

T = TypeVar("T")


def once(make: Callable[[], T]) -> Callable[[], T]:
    """Wrap a function of no arguments: the first call makes the value, every call returns it."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(make)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get
