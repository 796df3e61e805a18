"""Threads: graphc's pool overhead and crossover, and the BLAS thread-pool policy.

1. A vectorized chunk kernel out[i] = tanh(x[i]) * sigmoid(x[i]) (graphc's mathlib), run
   inline and split over ThreadPool(2): where splitting starts to pay
   (graphc.backend.llvm.parallel.MIN_PARALLEL_NS).
2. numpy and scipy each bundle an OpenBLAS with a spinning pool. A numpy matmul followed by
   a scipy sgemm, with both pools multi-threaded, against either one capped at 1 thread.
3. GEMM shapes of W2 and W4: scipy's sgemm on 1 thread, split over graphc's pool
   (emit_gemm_parallel), scipy's own 2 threads, and numpy's matmul.
"""

from __future__ import annotations

import ctypes

import numpy as np
from _timing import describe, fmt_time, measure, parse_args, table
from llvmlite import binding as llvm
from llvmlite import ir
from threadpoolctl import ThreadpoolController

from graphc.backend.llvm import blas, mathlib
from graphc.backend.llvm.parallel import ThreadPool

F32, I64 = ir.FloatType(), ir.IntType(64)
PTR = ir.PointerType()


class Jit:
    """Compiles llvmlite modules at O3 for the host; keeps every engine alive."""

    def __init__(self):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        for name, address in blas.gemm_symbols().items():
            llvm.add_symbol(name, address)
        self.engines = []

    def compile(self, module: ir.Module, name: str) -> int:
        target = llvm.Target.from_triple(llvm.get_process_triple())
        tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                          features=llvm.get_host_cpu_features().flatten(), opt=3, jit=True)
        mod = llvm.parse_assembly(str(module))
        mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
        engine = llvm.create_mcjit_compiler(mod, tm)
        engine.finalize_object()
        self.engines.append(engine)
        return engine.get_function_address(name)


def chunk_kernel(jit: Jit) -> int:
    """void k(void** [x, out], i64 begin, i64 end): out[i] = tanh(x[i]) * sigmoid(x[i])."""
    module = ir.Module("threads")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64, I64]), "k")
    for a in fn.args[:1]:
        a.add_attribute("noalias")
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    args, begin, end = fn.args
    x = b.load(b.gep(args, [ir.Constant(I64, 0)], source_etype=PTR), typ=PTR)
    out = b.load(b.gep(args, [ir.Constant(I64, 1)], source_etype=PTR), typ=PTR)
    b.cbranch(b.icmp_signed("<", begin, end), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(begin, entry)
    v = b.load(b.gep(x, [i], source_etype=F32), typ=F32)
    one = ir.Constant(F32, 1.0)
    sigmoid = b.fdiv(one, b.fadd(one, mathlib.emit_exp(b, b.fneg(v))))
    b.store(b.fmul(mathlib.emit_tanh(b, v), sigmoid), b.gep(out, [i], source_etype=F32))
    nxt = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, end), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return jit.compile(module, "k")


def pointer_table(*arrays: np.ndarray) -> tuple[ctypes.Array, int]:
    table = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
    return table, ctypes.addressof(table)


def crossover(jit: Jit, pool: ThreadPool, args) -> None:
    kernel = chunk_kernel(jit)
    rows = []
    for n in (1_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 10_000_000):
        x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        out = np.empty_like(x)
        keep, ptr = pointer_table(x, out)
        inline = measure(lambda: pool.run(kernel, ptr, n, n), args.repeat, args.target)
        split = measure(lambda: pool.run(kernel, ptr, n, 1), args.repeat, args.target)
        np.testing.assert_allclose(out, np.tanh(x) / (1 + np.exp(-x)), rtol=1e-5, atol=1e-6)
        rows.append({"n": f"{n:.0e}", "inline": fmt_time(inline.median), "2 threads": fmt_time(split.median),
                     "gain": f"{inline.median / split.median:.2f}x",
                     "ns/item": f"{inline.median * 1e9 / n:.2f}",
                     "spread": f"{max(inline.spread(), split.spread()):.0%}"})
    print(table("Pool: tanh(x)*sigmoid(x) chunk kernel, inline vs ThreadPool(2)", rows,
                ["n", "inline", "2 threads", "gain", "ns/item", "spread"]))


def gemm_kernel(jit: Jit, m: int, n: int, k: int) -> tuple[int, int]:
    """Two entries gemm(pf, a, b, c): plain emit_gemm and emit_gemm_parallel."""
    addresses = []
    for parallel in (False, True):
        module = ir.Module("gemm")
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * 4), "gemm")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        pf, a_, b_, c_ = fn.args
        if parallel:
            blas.emit_gemm_parallel(b, pf, np.float32, False, False, m, n, k, a_, k, b_, n, c_, n)
        else:
            blas.emit_gemm(b, np.float32, False, False, m, n, k, a_, k, b_, n, c_, n)
        b.ret_void()
        addresses.append(jit.compile(module, "gemm"))
    return addresses[0], addresses[1]


def blas_libraries() -> tuple[object, object]:
    ctl = ThreadpoolController().select(user_api="blas")
    scipy_lib = numpy_lib = None
    for lib in ctl.lib_controllers:
        if "scipy.libs" in lib.filepath or "/scipy/" in lib.filepath:
            scipy_lib = lib
        elif "numpy" in lib.filepath:
            numpy_lib = lib
    return scipy_lib, numpy_lib


def gemms(jit: Jit, pool: ThreadPool, args) -> None:
    scipy_lib, numpy_lib = blas_libraries()
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    rng = np.random.default_rng(0)
    pool_rows, fight_rows = [], []
    for m, k, n in ((256, 784, 512), (32, 784, 512), (256, 512, 10), (64, 256, 256)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c, c2 = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
        inline, split = (call(f) for f in gemm_kernel(jit, m, n, k))
        ptrs = (pool.parallel_for_address, a.ctypes.data, b.ctypes.data, c.ctypes.data)
        run_inline, run_split = (lambda: inline(*ptrs)), (lambda: split(*ptrs))
        run_numpy = lambda: np.matmul(a, b, out=c2)
        run_split()
        np.testing.assert_allclose(c, a @ b, rtol=1e-3, atol=1e-3)
        gflop = 2 * m * n * k / 1e9
        res = {}
        scipy_lib.set_num_threads(1)
        res["scipy 1 thread"] = measure(run_inline, args.repeat, args.target)
        res["scipy 1 thread, split over pool(2)"] = measure(run_split, args.repeat, args.target)
        res["numpy (own pool)"] = measure(run_numpy, args.repeat, args.target)
        scipy_lib.set_num_threads(2)
        res["scipy 2 threads"] = measure(run_inline, args.repeat, args.target)
        fight = {"both pools 2 threads": measure(lambda: (run_numpy(), run_inline()), args.repeat, args.target)}
        scipy_lib.set_num_threads(1)
        fight["scipy capped at 1, split over pool(2)"] = measure(lambda: (run_numpy(), run_split()), args.repeat,
                                                                  args.target)
        fight["scipy capped at 1, inline"] = measure(lambda: (run_numpy(), run_inline()), args.repeat, args.target)
        numpy_lib.set_num_threads(1)
        scipy_lib.set_num_threads(2)
        fight["numpy capped at 1, scipy 2 threads"] = measure(lambda: (run_numpy(), run_inline()), args.repeat,
                                                               args.target)
        numpy_lib.set_num_threads(2)
        scipy_lib.set_num_threads(1)
        shape = f"{m}x{k} @ {k}x{n}"
        for name, t in res.items():
            pool_rows.append({"shape": shape, "impl": name, "median": fmt_time(t.median),
                              "GFLOP/s": f"{gflop / t.median:.0f}", "spread": f"{t.spread():.0%}"})
        for name, t in fight.items():
            fight_rows.append({"shape": shape, "pools": name, "numpy matmul + graphc sgemm": fmt_time(t.median),
                               "spread": f"{t.spread():.0%}"})
    print(table("GEMM: single-thread BLAS split over graphc's pool vs the BLAS's own threads", pool_rows,
                ["shape", "impl", "median", "GFLOP/s", "spread"]))
    print(table("Two BLAS pools: a numpy matmul then a graphc (scipy) sgemm, alternating", fight_rows,
                ["shape", "pools", "numpy matmul + graphc sgemm", "spread"]))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    print(describe())
    jit = Jit()
    with ThreadPool(2) as pool:
        crossover(jit, pool, args)
        gemms(jit, pool, args)


if __name__ == "__main__":
    main()
