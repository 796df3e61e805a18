"""ns/element of graphc's vectorized math functions against numpy, on float32 arrays.

Usage: python3 bench/bench_mathlib.py [--cpu] [name ...]   (default: exp tanh; names from MATH_FUNCTIONS)
Each figure is the median of 5 runs over 1e7 elements, uniform in [-10, 10]; sin, cos and tan
also over 1e7 magnitudes log-uniform in [1e7, 1e30] (beyond the Cody-Waite range: Payne-Hanek).
--cpu: the minimum thread CPU time of 400 runs over 65,536 elements (in cache), steadier than
wall time on a shared machine.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphc.backend.llvm.mathlib import MATH_FUNCTIONS  # noqa: E402
from graphc.backend.llvm.optimizer import optimize_module  # noqa: E402

CPU = "--cpu" in sys.argv
N = 65_536 if CPU else 10_000_000
REPEATS = 5
# numpy equivalents writing into a preallocated output.
NUMPY: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
    "exp": lambda x, out: np.exp(x, out=out),
    "expm1": lambda x, out: np.expm1(x, out=out),
    "log": lambda x, out: np.log(x, out=out),
    "log1p": lambda x, out: np.log1p(x, out=out),
    "tanh": lambda x, out: np.tanh(x, out=out),
    "sin": lambda x, out: np.sin(x, out=out),
    "cos": lambda x, out: np.cos(x, out=out),
    "tan": lambda x, out: np.tan(x, out=out),
}
TRIG = ("sin", "cos", "tan")


def compile_map(name: str) -> tuple[Callable[[int, int, int], None], object]:
    """kernel(in, out, n): out[i] = f(in[i]) over float32, compiled at O3 for the host."""
    f32, i64 = ir.FloatType(), ir.IntType(64)
    mod = ir.Module(name=name)
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ir.PointerType()] * 2 + [i64]), "kernel")
    src, dst, n = fn.args
    src.add_attribute("noalias")
    dst.add_attribute("noalias")
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    x = b.load(b.gep(src, [i], inbounds=True, source_etype=f32), typ=f32)
    b.store(MATH_FUNCTIONS[name](b, x), b.gep(dst, [i], inbounds=True, source_etype=f32))
    i_next = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(ir.Constant(i64, 0), entry)
    i.add_incoming(i_next, b.block)  # mathlib may have split the body
    b.cbranch(b.icmp_signed("<", i_next, n), loop, done)
    b.position_at_end(done)
    b.ret_void()

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
        opt=3, jit=True)
    parsed = llvm.parse_assembly(str(mod))
    parsed.triple = tm.triple
    parsed.data_layout = str(tm.target_data)
    optimize_module(parsed, tm)  # graphc's pipeline (it inlines the trig functions' rare-path test)
    engine = llvm.create_mcjit_compiler(parsed, tm)
    engine.finalize_object()
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    return proto(engine.get_function_address("kernel")), engine  # keep the engine alive


def ns_per_element(run: Callable[[], object]) -> float:
    if CPU:
        best = min(_cpu_ns(run) for _ in range(400))
        return best / N
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / N * 1e9


def _cpu_ns(run: Callable[[], object]) -> int:
    t0 = time.thread_time_ns()
    run()
    return time.thread_time_ns() - t0


def main(names: list[str]) -> None:
    x = np.random.default_rng(0).uniform(-10, 10, N).astype(np.float32)
    if any(name in ("log", "log1p") for name in names):
        x = np.abs(x)
    far = (10.0 ** np.random.default_rng(1).uniform(7, 30, N)).astype(np.float32)
    out = np.empty_like(x)
    how = "minimum thread CPU time of 400" if CPU else f"median of {REPEATS}"
    print(f"float32, n = {N}, {how} (ns/element)")
    print(f"{'function':10s} {'graphc':>8s} {'numpy':>8s} {'large: graphc':>14s} {'numpy':>8s}")
    for name in names:
        kernel, _engine = compile_map(name)
        ref = NUMPY.get(name)
        row = []
        for arg in (x, far) if name in TRIG else (x,):
            row.append(ns_per_element(lambda: kernel(arg.ctypes.data, out.ctypes.data, N)))
            row.append(ns_per_element(lambda: ref(arg, out)) if ref else float("nan"))
        print(f"{name:10s} {row[0]:8.2f} {row[1]:8.2f}" + (f" {row[2]:14.2f} {row[3]:8.2f}" if len(row) > 2 else ""))


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if a != "--cpu"] or ["exp", "tanh"])
