"""GEMM by BLAS function pointer from JIT-compiled code, checked against numpy."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from llvmlite import binding as llvm
from llvmlite import ir

from graphc.backend.llvm import blas

_I64 = ir.IntType(64)


@pytest.fixture(scope="module", autouse=True)
def _jit_symbols():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for name, address in blas.gemm_symbols().items():
        llvm.add_symbol(name, address)


class _Compiled:
    """One MCJIT engine holding one function; keeps the engine alive with the pointer."""

    def __init__(self, module: ir.Module, name: str, restype, argtypes):
        target = llvm.Target.from_triple(llvm.get_process_triple())
        # The engine takes ownership of its target machine: one per engine.
        tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                          features=llvm.get_host_cpu_features().flatten(), opt=2, jit=True)
        mod = llvm.parse_assembly(str(module))
        mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
        mod.verify()
        self.engine = llvm.create_mcjit_compiler(mod, tm)
        self.engine.finalize_object()
        self.fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.engine.get_function_address(name))


def _dynamic_gemm(dtype, trans_a: bool, trans_b: bool, alpha: float, beta: float) -> _Compiled:
    """gemm(a, b, c, m, n, k, lda, ldb, ldc) with every size a run-time i64 argument."""
    elem = ir.FloatType() if dtype == np.float32 else ir.DoubleType()
    tp = elem.as_pointer()
    module = ir.Module("gemm_test")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [tp, tp, tp] + [_I64] * 6), "gemm")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    a, b, c, m, n, k, lda, ldb, ldc = fn.args
    blas.emit_gemm(builder, dtype, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, alpha=alpha, beta=beta)
    builder.ret_void()
    return _Compiled(module, "gemm", None, [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6)


@contextlib.contextmanager
def _loop(builder: ir.IRBuilder, count: int):
    """for (i = 0; i < count; ++i) { body }, with i an i64."""
    head = builder.append_basic_block("head")
    body = builder.append_basic_block("body")
    done = builder.append_basic_block("done")
    start = builder.block
    builder.branch(head)
    builder.position_at_end(head)
    i = builder.phi(_I64)
    i.add_incoming(ir.Constant(_I64, 0), start)
    builder.cbranch(builder.icmp_signed("<", i, ir.Constant(_I64, count)), body, done)
    builder.position_at_end(body)
    yield i
    i.add_incoming(builder.add(i, ir.Constant(_I64, 1)), builder.block)
    builder.branch(head)
    builder.position_at_end(done)


def _ptr(x: np.ndarray) -> int:
    return x.ctypes.data


def _operand(rng, rows: int, cols: int, ld: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A rows x cols view of a rows x ld buffer (ld >= cols); returns (buffer, view)."""
    buf = rng.standard_normal((rows, ld)).astype(dtype)
    return buf, buf[:, :cols]


def _tol(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-11}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 1, 129), (129, 7, 1), (7, 129, 7), (33, 17, 65)])
def test_matches_numpy(dtype, trans_a, trans_b, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    extra = 3  # every leading dimension exceeds the row length
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a_buf, a = _operand(rng, *a_shape, a_shape[1] + extra, dtype)
    b_buf, b = _operand(rng, *b_shape, b_shape[1] + extra, dtype)
    c_buf = np.full((m, n + extra), 7.0, dtype)
    gemm = _dynamic_gemm(dtype, trans_a, trans_b, 1.0, 0.0)
    gemm.fn(_ptr(a_buf), _ptr(b_buf), _ptr(c_buf), m, n, k, a_buf.shape[1], b_buf.shape[1], c_buf.shape[1])
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(c_buf[:, :n], expected, **_tol(dtype))
    assert np.all(c_buf[:, n:] == 7.0), "wrote into the padding past n"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alpha_beta_accumulate(dtype):
    rng = np.random.default_rng(0)
    m, n, k = 5, 9, 13
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    gemm = _dynamic_gemm(dtype, False, True, 0.5, 2.0)
    gemm.fn(_ptr(a), _ptr(b), _ptr(c), m, n, k, k, k, n)
    np.testing.assert_allclose(c, 0.5 * a @ b.T + 2.0 * c0, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_sizes_and_zero_k(dtype):
    """Python-int sizes; k == 0 with beta == 0 gives zeros (BLAS scales C by beta)."""
    elem = ir.FloatType() if dtype == np.float32 else ir.DoubleType()
    tp = elem.as_pointer()
    module = ir.Module("gemm_const")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [tp, tp, tp, tp]), "gemm")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    a, b, c, c_zero = fn.args
    blas.emit_gemm(builder, dtype, False, False, 4, 6, 5, a, 5, b, 6, c, 6)
    blas.emit_gemm(builder, dtype, False, False, 4, 6, 0, a, 0, b, 6, c_zero, 6)
    builder.ret_void()
    compiled = _Compiled(module, "gemm", None, [ctypes.c_void_p] * 4)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 5)).astype(dtype), rng.standard_normal((5, 6)).astype(dtype)
    out, zero = np.empty((4, 6), dtype), np.full((4, 6), np.nan, dtype)
    compiled.fn(_ptr(x), _ptr(y), _ptr(out), _ptr(zero))
    np.testing.assert_allclose(out, x @ y, **_tol(dtype))
    assert np.all(zero == 0)


def test_gemm_in_a_loop_reuses_entry_slots():
    """A batched matmul: emit_gemm inside a loop body, sizes from the loop."""
    dtype, batch, m, n, k = np.float32, 3, 4, 5, 6
    tp = ir.FloatType().as_pointer()
    module = ir.Module("gemm_loop")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [tp, tp, tp]), "bmm")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    a, b, c = fn.args
    with _loop(builder, batch) as i:
        a_i = builder.gep(a, [builder.mul(i, ir.Constant(_I64, m * k))])
        b_i = builder.gep(b, [builder.mul(i, ir.Constant(_I64, k * n))])
        c_i = builder.gep(c, [builder.mul(i, ir.Constant(_I64, m * n))])
        blas.emit_gemm(builder, dtype, False, False, m, n, k, a_i, k, b_i, n, c_i, n)
    builder.ret_void()
    entry_allocas = [ins for ins in fn.entry_basic_block.instructions if ins.opname == "alloca"]
    assert len(entry_allocas) == 10
    compiled = _Compiled(module, "bmm", None, [ctypes.c_void_p] * 3)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((batch, m, k)).astype(dtype), rng.standard_normal((batch, k, n)).astype(dtype)
    out = np.empty((batch, m, n), dtype)
    compiled.fn(_ptr(x), _ptr(y), _ptr(out))
    np.testing.assert_allclose(out, x @ y, rtol=1e-4, atol=1e-4)


def test_rejects_other_dtypes_and_huge_sizes():
    module = ir.Module()
    with pytest.raises(TypeError, match="float32 and float64"):
        blas.declare_gemm(module, np.int32)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.FloatType().as_pointer()]), "f")
    builder = ir.IRBuilder(fn.append_basic_block())
    p = fn.args[0]
    with pytest.raises(ValueError, match="32-bit"):
        blas.emit_gemm(builder, np.float32, False, False, 2**31, 1, 1, p, 1, p, 1, p, 1)


def test_declared_once_per_module():
    module = ir.Module()
    assert blas.declare_gemm(module, np.float64) is blas.declare_gemm(module, "float64")
    assert blas.declare_gemm(module, np.float32).name == blas.SGEMM


def test_symbols_are_addresses_and_scipy_pool_is_capped():
    from threadpoolctl import threadpool_info

    symbols = blas.gemm_symbols()
    assert set(symbols) == {blas.SGEMM, blas.DGEMM}
    assert all(isinstance(v, int) and v for v in symbols.values())
    capped = blas.limit_scipy_blas_threads()
    for info in threadpool_info():
        if info["filepath"] in capped:
            assert info["num_threads"] == 1


def _parallel_gemm(dtype, trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta) -> _Compiled:
    """gemm(parallel_for, a, b, c) with compile-time sizes and opaque pointer arguments."""
    module = ir.Module("gemm_parallel")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.PointerType()] * 4), "gemm")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    pf, a, b, c = fn.args
    blas.emit_gemm_parallel(builder, pf, dtype, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, alpha, beta)
    builder.ret_void()
    return _Compiled(module, "gemm", None, [ctypes.c_void_p] * 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k,split", [(1031, 5, 1800, "rows"), (3, 3001, 1000, "columns"), (32, 32, 32, None)])
def test_parallel_gemm_matches_numpy(dtype, trans_a, trans_b, m, n, k, split):
    from graphc.backend.llvm.parallel import PARALLEL_FOR_FN, ThreadPool

    rng = np.random.default_rng(m + n + k)
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a_buf, a = _operand(rng, *a_shape, a_shape[1] + 2, dtype)
    b_buf, b = _operand(rng, *b_shape, b_shape[1] + 1, dtype)
    c0 = rng.standard_normal((m, n + 3)).astype(dtype)
    c_buf = c0.copy()
    calls = []
    with ThreadPool(3) as pool:
        def recording_parallel_for(fn, args, count, min_chunk):
            calls.append((count, min_chunk))
            pool.run(fn, args, count, min_chunk)

        callback = PARALLEL_FOR_FN(recording_parallel_for)
        gemm = _parallel_gemm(dtype, trans_a, trans_b, m, n, k, a_buf.shape[1], b_buf.shape[1], c_buf.shape[1],
                              0.5, 1.0)
        gemm.fn(ctypes.cast(callback, ctypes.c_void_p).value, _ptr(a_buf), _ptr(b_buf), _ptr(c_buf))
    expected = 0.5 * (a.T if trans_a else a) @ (b.T if trans_b else b) + c0[:, :n]
    np.testing.assert_allclose(c_buf[:, :n], expected, **_tol(dtype))
    np.testing.assert_array_equal(c_buf[:, n:], c0[:, n:])
    if split:
        items = m if split == "rows" else n
        assert len(calls) == 1 and calls[0][0] == items and 2 * -calls[0][1] <= items  # one piece per thread
    else:
        assert calls == []


def test_symbols_match_scipy_in_a_fresh_process():
    """The fast loader of cython_blas gives the same functions as scipy's own import."""
    code = textwrap.dedent("""
        import sys
        from graphc.backend.llvm import blas
        preloaded = "scipy.linalg" in sys.modules
        symbols = blas.gemm_symbols()
        assert preloaded or "scipy.linalg" not in sys.modules, "loaded the whole scipy.linalg package"
        from scipy.linalg import cython_blas
        capi = cython_blas.__pyx_capi__
        assert symbols[blas.SGEMM] == blas.capsule_address(capi["sgemm"])
        assert symbols[blas.DGEMM] == blas.capsule_address(capi["dgemm"])
        import scipy.linalg.cython_blas as again
        assert again is cython_blas
        import os, scipy
        from threadpoolctl import threadpool_info
        scipy_dir = os.path.dirname(os.path.realpath(scipy.__file__))
        ours = [i for i in threadpool_info() if os.path.realpath(i["filepath"]).startswith(scipy_dir)]
        assert all(i["num_threads"] == 1 for i in ours), ours
        print(len(ours))
    """)
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(root)),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "0":
        pytest.skip("scipy's BLAS is not bundled inside scipy here (shared with numpy)")
