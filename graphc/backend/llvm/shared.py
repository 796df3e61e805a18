"""Functions that programs share, compiled once per process: graphc's tiled GEMM kernels.

A program's module declares the kernel it calls (`tiled.kernel_name`: one per dtype, named
``graphc_tiled_float32_16x8_<digest>``, the digest of what its IR is made from: the blocking,
llvmlite's version, graphc's source) instead of defining it. Its machine code is made once per
process, in an engine of its own that lives as long as the process, and whose address the
programs' objects link to (`symbols`, passed to `jit.compile_ir`). The disk cache keys it by
its name (`jit.compile_shared`): a process with a warm cache loads it without making its IR
(`tiled.kernel`, about 20-30 ms of Python), and a cold one compiles it once, not once per
program. `prepare_for` starts that on a thread of its own (the IR is made there too) as soon
as a graph with a float matrix product is about to be compiled (a Session or `gc.function`
calls it first), so the kernel compiles while the rest of the backend loads and the program
is planned and generated.
An exported library links each kernel's definition into each program's module (`definition`)
as an internal function.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

import numpy as np

from ...errors import GraphcError
from ...ir.graph import Tensor
from . import tiled
from .jit import Compiling, compile_shared

__all__ = ["definition", "prepare_for", "symbols"]

_DECLARED = re.compile(r'^declare void @"(graphc_tiled_[^"]+)"', re.M)
_lock = threading.Lock()
_made: dict[str, Compiling] = {}  # kernel name -> its compile (or load)


def declared(ir_text: str) -> list[str]:
    """The shared functions a module's IR declares."""
    return list(dict.fromkeys(_DECLARED.findall(ir_text)))


def symbols(ir_text: str) -> dict[str, int]:
    """Name -> address of each shared function the IR declares (made, or waited for, now)."""
    return {name: _start(name).result().address for name in declared(ir_text)}


def prepare_for(nodes: Iterable[Tensor]) -> None:
    """Start making the kernel of each float dtype of a matrix product among `nodes` (when this
    host has one and ``GRAPHC_GEMM`` is not "blas"), unless it is made or started already. The
    products the planner then gives to the BLAS make it for nothing (once per process and cache)."""
    if tiled.gemm_mode() == "blas":
        return
    for dtype in {np.dtype(n.dtype) for n in nodes if n.op == "matmul" and n.dtype is not None}:
        if tiled.blocking(dtype) is not None:
            _start(tiled.kernel_name(dtype), lambda dtype=dtype: tiled.kernel(dtype)[1])


def definition(name: str) -> str:
    """The IR of a module defining the shared function `name`."""
    for dtype in (np.float32, np.float64):
        if tiled.blocking(dtype) is not None and tiled.kernel_name(dtype) == name:
            return tiled.kernel(dtype)[1]
    raise GraphcError(f"{name}: not a kernel this graphc makes on this host (IR from another version or CPU)")


def _start(name: str, text: Callable[[], str] | None = None) -> Compiling:
    """The compile (or load) of the shared function `name`, started now unless it was; `text`
    makes its IR (on a cache miss only, on the compile's thread; default `definition`)."""
    with _lock:
        if name not in _made:
            _made[name] = compile_shared(name, text or (lambda: definition(name)))
        return _made[name]
