"""Programs' descriptions in the disk cache, keyed before planning, so that a warm process
loads a program without optimizing, planning or generating it to learn its IR (the object
code's key).

A key holds what determines the program: its nodes as `gc.save` encodes them (without
variables' initial values), the feed shapes (`specialized_program`; a template's probe
signature, `template_cache`; `entry_key`), the `CompileOptions`, a digest of graphc's own source,
``GRAPHC_GEMM`` and the thresholds of `pairs`, `tiled` and `ops.selection` (upper-case module
settings that choose code besides the graph, the options and the source), and (through
`cache.cache_key`) the cache format version, LLVM and the host CPU and its features. An
entry holds what running the program needs: its IR text (whose object code `cache` keeps),
arena size (a template's formula), output shapes, pointer table layout, constants, which
original placeholder or variable each slot takes. The optimized graph and plan, which only
`report`, `as_text`, export and the profiler read, are built again when first asked for.

Entries use `cache`'s file format and its `load`/`store` (checked header and SHA-256, atomic
writes, ``GRAPHC_CACHE=0`` turns it off). The payload is a little-endian length, a JSON
document and the constants' bytes; anything that does not decode into a consistent entry
is a miss. Programs with LAPACK, collective or host-callback steps are not stored.
`counts()` says how many programs were probed and loaded (templates, first sizes, other
specialized programs).

This module does not import the template machinery (`symbolic`, `template`): a graph
without None dims does not pay for it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ...compiler import optimize
from ...errors import GraphcError
from ...ir.graph import Tensor
from ...ir.serialize import encode_program
from ...ops import selection
from ...options import CompileOptions
from ...runtime.counters import count_compile
from . import blas, cache, pairs, shared, tiled
from .backend import LLVM
from .codegen import ENTRY
from .collector import fewer_collections
from .jit import compile_ir
from .parallel import default_threads, get_pool
from .program import LLVMProgram
from .steps import Gemm, Lapack

__all__ = ["COUNTS", "PlanAt", "counts", "encode", "entry_key", "load_into", "read_entry", "specialized_program"]

_SPECIALIZED_VERSION = "graphc-specialized-program-v1"
_LENGTH = struct.Struct("<Q")
COUNTS = {"probed": 0, "loaded": 0, "first_loaded": 0, "specialized_loaded": 0}


def counts() -> dict[str, int]:
    """Templates built by probing and loaded from the disk cache in this process
    (`template_cache`), and specialized programs loaded from it (`specialized_program`): those
    of a symbolic pattern's first size, and the others."""
    return dict(COUNTS)


@fewer_collections
def specialized_program(fetches: Sequence[Tensor], assigns: Sequence[Tensor],
                        shapes: Mapping[Tensor, tuple[int, ...]], options: CompileOptions | None = None,
                        first: bool = False) -> LLVMProgram:
    """`LLVMProgram(fetches, assigns, shapes, options)`, loaded from the disk cache when an entry
    for it is there (else compiled and stored); `first`: a symbolic pattern's first size (which
    count a load goes to)."""
    options = options or CompileOptions()
    fetches, assigns = list(fetches), list(assigns)
    order, key = entry_key(fetches, assigns, lambda index: {"shapes": sorted((index[ph], list(shape))
                                                                        for ph, shape in shapes.items()
                                                                        if ph in index)}, options,
                      _SPECIALIZED_VERSION)
    entry = read_entry(key, order)
    if entry is not None:
        COUNTS["first_loaded" if first else "specialized_loaded"] += 1
        return _LoadedSpecialized(fetches, assigns, shapes, options, entry)
    program = LLVMProgram(fetches, assigns, shapes, options)
    if key is not None and not (program.hosts or program.uses_mpi
                                or any(isinstance(s, Lapack) for s in program.plan.all_steps())):
        cache.store(key, encode(program, order, program.plan.arena_bytes,
                                 [shape for shape, _, _ in program.out_slots]))
    return program


def read_entry(key: str | None, order: list[Tensor], affine_type: Callable | None = None) -> dict | None:
    """The decoded entry stored under `key`, or None (no key, missing, damaged)."""
    payload = None if key is None else cache.load(key)
    return None if payload is None else decode(payload, order, affine_type)


def entry_key(fetches: list[Tensor], assigns: list[Tensor], fields: Callable[[dict], dict], options: CompileOptions,
         version: str) -> tuple[list[Tensor], str | None]:
    """(the program's nodes in `encode_program` order, the entry's key: their encoding, `fields(index
    of each node)`, the options and graphc's source; None if the cache is off or the graph has
    attributes `gc.save` cannot encode)."""
    if not cache.enabled():
        return [], None
    try:
        order, nodes = encode_program(fetches + assigns)
    except GraphcError:
        return [], None
    index = {n: i for i, n in enumerate(order)}
    doc = {"nodes": nodes, "fetches": [index[f] for f in fetches], "assigns": [index[a] for a in assigns],
           **fields(index), "options": repr(replace(options, specialize=False)), "source": cache.source_digest(),
           "settings": _settings()}
    return order, cache.cache_key(json.dumps(doc, sort_keys=True), version)


def _settings() -> list:
    """``GRAPHC_GEMM`` and the upper-case number and string settings of the modules whose
    thresholds choose code (products, pairs, rank sorts; tests set some), sorted."""
    found = [["GRAPHC_GEMM", tiled.gemm_mode()]]
    for module in (pairs, tiled, selection):
        found += sorted([f"{module.__name__}.{k}", v] for k, v in vars(module).items()
                        if k.isupper() and isinstance(v, (int, float, str)))
    return found


def _affine(a: Any) -> Any:
    """A size as JSON: an int, or a template's affine formula."""
    return a if isinstance(a, int) else {"coefs": list(a.coefs), "const": a.const}


def encode(program: LLVMProgram, order: list[Tensor], arena: Any, out_shapes: Sequence[Sequence[Any]]) -> bytes:
    index = {n: i for i, n in enumerate(order)}
    consts, blobs, offset = [], [], 0
    for c in program.plan.consts:
        data = np.ascontiguousarray(c).astype(c.dtype.newbyteorder("<")).tobytes()
        consts.append([c.dtype.name, list(c.shape), offset, len(data)])
        blobs.append(data)
        offset += len(data)
    doc = {
        "ir": program.ir_text,
        "arena": _affine(arena),
        "out_shapes": [[_affine(d) for d in shape] for shape in out_shapes],
        "bases": program.bases,
        "feeds": [[index[ph], slot] for ph, slot in program.feed_slots],
        "variables": [[index[v], slot] for v, slot in program.var_slots],
        "outputs": [[list(shape), np.dtype(dtype).name, slot] for shape, dtype, slot in program.out_slots],
        "fetch_index": program.fetch_index,
        "gemm": any(isinstance(s, Gemm) for s in program.plan.all_steps()),
        "consts": consts,
    }
    text = json.dumps(doc).encode()
    return _LENGTH.pack(len(text)) + text + b"".join(blobs)


def decode(payload: bytes, order: list[Tensor], affine_type: Callable | None = None) -> dict | None:
    """The entry in `payload` with tensors and arrays restored (symbolic sizes made by `affine_type`,
    a template's; none in a specialized program's), or None when it does not decode."""
    try:
        (length,) = _LENGTH.unpack_from(payload)
        doc = json.loads(payload[_LENGTH.size:_LENGTH.size + length])
        blob = payload[_LENGTH.size + length:]
        consts = []
        for dtype, shape, start, size in doc["consts"]:
            dt = np.dtype(dtype)
            if start < 0 or start + size > len(blob) or size != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
                return None
            raw = np.frombuffer(blob, dt.newbyteorder("<"), size // dt.itemsize, start)
            consts.append(raw.astype(dt).reshape(shape))

        def affine(d: Any) -> Any:
            if isinstance(d, dict) and affine_type is not None:
                return affine_type(tuple(d["coefs"]), d["const"])
            return int(d)

        def tensor(i: int, op: str) -> Tensor:
            if not 0 <= i < len(order) or order[i].op != op:
                raise ValueError(f"slot {i} is not a {op}")
            return order[i]

        return {"ir": str(doc["ir"]), "arena": affine(doc["arena"]),
                "out_shapes": [tuple(affine(d) for d in shape) for shape in doc["out_shapes"]],
                "bases": {str(k): int(v) for k, v in doc["bases"].items()},
                "feeds": [(tensor(i, "placeholder"), int(slot)) for i, slot in doc["feeds"]],
                "variables": [(tensor(i, "variable"), int(slot)) for i, slot in doc["variables"]],
                "outputs": [(tuple(map(int, shape)), np.dtype(dtype), int(slot))
                            for shape, dtype, slot in doc["outputs"]],
                "fetch_index": [None if i is None else int(i) for i in doc["fetch_index"]],
                "gemm": bool(doc["gemm"]), "consts": tuple(consts)}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error):
        return None


def load_into(program: LLVMProgram, assigns: list[Tensor], options: CompileOptions, entry: dict) -> None:
    """Set what running `program` needs from a cache entry: its code (object code from `cache`),
    table layout, slots and constants."""
    program.options = options
    program.ir_text, program.consts = entry["ir"], entry["consts"]
    program.uses_mpi, program.hosts, program._host_key, program.checks_after_run = False, [], 0, False
    program.compiled = compile_ir(program.ir_text, ENTRY, lambda: (blas.gemm_symbols() if entry["gemm"] else {})
                                  | shared.symbols(program.ir_text))
    count_compile()
    program.entry = program.compiled.address
    program.bases = entry["bases"]
    program.feed_slots, program.var_slots = entry["feeds"], entry["variables"]
    program.variables = [var for var, _ in program.var_slots]
    program.writes = bool(assigns)
    program.out_slots = entry["outputs"]
    program.fetch_index = entry["fetch_index"]
    used = [i for i in program.fetch_index if i is not None]
    program._unique = len(used) == len(set(used))
    program.threads = default_threads() if options.threads is None else options.threads
    program._pool_ref = get_pool(program.threads) if program.threads > 1 else None


class _LoadedSpecialized(LLVMProgram):
    """A specialized `LLVMProgram` made from a cache entry: compiled (object code from `cache`)
    without planning; `plan` knows its arena size, the rest of the plan and the optimized graph
    are built on first use."""

    def __init__(self, fetches: list[Tensor], assigns: list[Tensor], shapes: Mapping[Tensor, tuple[int, ...]],
                 options: CompileOptions, entry: dict):
        load_into(self, assigns, options, entry)
        # the plan outlives the program where a caller keeps it alone, and refers to it not at
        # all (no cycle: the program is freed when unused, as a compiled one)
        self._rebuild = rebuild = _Rebuild(fetches, assigns, shapes, options)
        self.plan = PlanAt(lambda: rebuild()[1], int(entry["arena"]))

    def __getattr__(self, name: str) -> Any:
        if name not in ("optimized", "fetches", "assigns"):
            raise AttributeError(name)
        self.optimized, _, self.fetches, self.assigns = self._rebuild()
        return getattr(self, name)


class _Rebuild:
    """A loaded specialized program's (optimized graph, plan, bound fetches, bound assigns), built
    on the first call."""

    def __init__(self, fetches: list[Tensor], assigns: list[Tensor], shapes: Mapping[Tensor, tuple[int, ...]],
                 options: CompileOptions):
        self.args, self.built = (fetches, assigns, shapes, options), None

    def __call__(self) -> tuple:
        if self.built is None:
            fetches, assigns, shapes, options = self.args
            optimized = optimize(fetches + assigns, shapes, options, backend=LLVM)
            bound = list(optimized.module.outputs)
            plan, _ = LLVM.lower(bound[:len(fetches)], bound[len(fetches):])
            self.built = (optimized, plan, bound[:len(fetches)], bound[len(fetches):])
        return self.built


class PlanAt:
    """A loaded program's plan with a known arena size: the size without building the plan."""

    def __init__(self, plan: Callable[[], Any], arena: int):
        self.plan, self.arena_bytes = plan, arena

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plan(), name)
