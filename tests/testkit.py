"""Helpers that several test modules share (importable as `testkit`: tests/ is on sys.path)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import graphc as gc


def run_threads(target: Callable[[Any], object], args: Iterable[Any],
                during: Callable[[], object] | None = None) -> None:
    """target(arg) in one thread per arg; `during()` 2 ms after they start; then join them all."""
    threads = [threading.Thread(target=target, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    if during is not None:
        time.sleep(0.002)
        during()
    for t in threads:
        t.join()


def race_close(calls: Iterable[Callable[[], object]], close: Callable[[], object], closed: str
               ) -> list[BaseException]:
    """Repeat each call in its own thread until it raises, closing 2 ms in; the unexpected errors.

    Expected is a GraphcError whose message contains `closed`; anything else (the defect was a
    raw KeyError) is returned.
    """
    errors: list[BaseException] = []

    def repeat(call: Callable[[], object]) -> None:
        while True:
            try:
                call()
            except gc.GraphcError as exc:
                if closed not in str(exc):
                    errors.append(exc)
                return
            except BaseException as exc:  # noqa: BLE001 (reported to the test)
                errors.append(exc)
                return

    run_threads(repeat, calls, during=close)
    return errors


def custom_exp(x: gc.Tensor) -> gc.Tensor:
    """exp with its gradient given by gc.custom_gradient (dy * e)."""
    @gc.custom_gradient
    def f(t):
        e = gc.exp(t)
        return e, lambda dy: dy * e

    return f(x)
