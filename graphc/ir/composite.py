"""Composite functions (public functions built from primitives): their names, for error messages.

`@composite` marks such a function; nodes built inside it are recorded as its parts
(`Graph.composite`), and type errors raised inside name it (`ops.registry.located`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

_state = threading.local()


def composite_stack() -> list[str]:
    """This thread's stack of composite functions being built (outermost first)."""
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def current_composite() -> str | None:
    """The outermost composite function (e.g. "logsumexp") being built, if any."""
    stack = composite_stack()
    return stack[0] if stack else None


@contextlib.contextmanager
def composite_scope(name: str | None) -> Iterator[None]:
    """Nodes built inside are recorded as parts of the composite `name`; errors name it."""
    if not name:
        yield
        return
    stack = composite_stack()
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def composite(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a public function built from primitives, so its errors name it."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with composite_scope(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper
