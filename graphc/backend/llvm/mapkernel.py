"""One mathlib function alone in a compiled loop, ``out[i] = f(in0[i][, in1[i]])``: how its
accuracy tests (tests/backend/llvm/test_mathlib.py) and bench/bench_mathlib.py measure it.

The loop is compiled at O3 for the host CPU through graphc's optimizer pipeline
(`jit.optimize_ir`, which inlines the trig functions' rare-path test) into its own MCJIT
engine: no Session, no disk cache.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from .emitter import mem_type
from .jit import optimize_ir
from .loops import I64, PTR
from .mathlib import MATH_FUNCTIONS
from .optimizer import host_target_machine

BINARY = ("pow", "atan2")  # the functions of MATH_FUNCTIONS with two arguments


def map_module(name: str, dtype: np.dtype) -> ir.Module:
    """``void kernel(ptr noalias in0, [ptr noalias in1,] ptr noalias out, i64 n)``."""
    ty = mem_type(dtype)
    nargs = 2 if name in BINARY else 1
    mod = ir.Module(name=f"mathlib_{name}")
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR] * (nargs + 1) + [I64]), name="kernel")
    *ins, out, n = fn.args
    for ptr in (*ins, out):
        ptr.add_attribute("noalias")
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    args = [b.load(b.gep(p, [i], inbounds=True, source_etype=ty), typ=ty) for p in ins]
    b.store(MATH_FUNCTIONS[name](b, *args), b.gep(out, [i], inbounds=True, source_etype=ty))
    i_next = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(ir.Constant(I64, 0), entry)
    i.add_incoming(i_next, b.block)  # mathlib may have split the body
    b.cbranch(b.icmp_signed("<", i_next, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return mod


class MapKernel:
    """`map_module(name, dtype)` compiled: ``kernel(*arrays)`` returns a new array; `fn` is the
    raw ``fn(in0, [in1,] out, n)`` on addresses; `asm` its assembly."""

    def __init__(self, name: str, dtype: np.dtype) -> None:
        mod = optimize_ir(str(map_module(name, dtype)))
        tm = host_target_machine()  # the engine takes ownership of it: one per kernel
        self.asm = tm.emit_assembly(mod)
        self.dtype = np.dtype(dtype)
        self._engine = llvm.create_mcjit_compiler(mod, tm)
        self._engine.finalize_object()
        nargs = 2 if name in BINARY else 1
        proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (nargs + 1), ctypes.c_int64)
        self.fn = proto(self._engine.get_function_address("kernel"))

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        ins = [np.ascontiguousarray(a, dtype=self.dtype) for a in arrays]
        out = np.empty_like(ins[0])
        self.fn(*[a.ctypes.data for a in ins], out.ctypes.data, out.size)
        return out
