"""GEMM through an optimized BLAS, called by function pointer from generated code.

The BLAS is the OpenBLAS that scipy bundles: ``scipy.linalg.cython_blas`` publishes
Fortran-convention ``sgemm``/``dgemm`` (every argument by pointer, 32-bit ints,
column-major) as PyCapsules. Generated code declares them under private names
(`SGEMM`, `DGEMM`) and the JIT resolves those names to the capsule addresses that
`gemm_symbols` returns (``llvm.add_symbol`` for MCJIT, ``import_symbol`` for LLJIT).

Threads: numpy and scipy each bundle an OpenBLAS with its own spinning thread pool. When
both pools run multi-threaded and calls alternate between them, each pool's spinning
workers starve the other's (measured: docs/backend.md, "Threads"). The same would happen
between scipy's pool and graphc's own kernel pool (`graphc.backend.llvm.parallel`). So
`gemm_symbols` caps scipy's OpenBLAS at one thread (threadpoolctl) and graphc's pool is the
one pool that parallelizes our work: `emit_gemm_parallel` splits a large product into
blocks of rows or columns of C, one single-threaded BLAS call each, over that pool.
numpy's own pool is left alone.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import sys

import numpy as np
from llvmlite import ir

from ...passes.sizing import decide
from .loops import I8, I32, I64, emit_ceil_div, entry_allocas

__all__ = ["DGEMM", "GEMM_GFLOPS", "GEMM_MIN_PIECE_NS", "GEMM_MIN_WIDTH", "SGEMM", "capsule_address", "cython_module",
           "declare_gemm", "emit_gemm", "emit_gemm_parallel", "gemm_split", "gemm_symbols", "limit_scipy_blas_threads"]

SGEMM = "graphc_sgemm"
DGEMM = "graphc_dgemm"

# Single-thread GEMM speed assumed when deciding whether a product is worth splitting: below
# every figure measured for sgemm (docs/backend.md, "Threads").
GEMM_GFLOPS = 60.0
# The least rows or columns of C per piece of a split product, and the least work (at
# GEMM_GFLOPS): below these, repacking and waking a worker cost more than the piece gains.
GEMM_MIN_WIDTH = 128
GEMM_MIN_PIECE_NS = 30_000

_I8P = I8.as_pointer()
_CHUNK_TYPE = ir.FunctionType(ir.VoidType(), [_I8P.as_pointer(), I64, I64])
_PARALLEL_FOR_TYPE = ir.FunctionType(ir.VoidType(), [_I8P, _I8P.as_pointer(), I64, I64])
_I32_MAX = 2**31 - 1
_SYMBOLS = {np.dtype(np.float32): (SGEMM, "sgemm", ir.FloatType()),
            np.dtype(np.float64): (DGEMM, "dgemm", ir.DoubleType())}


def capsule_address(capsule: object) -> int:
    """The pointer stored in a PyCapsule (looked up under the capsule's own name)."""
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    if not address:
        raise RuntimeError("empty BLAS capsule")
    return address


@functools.cache
def gemm_symbols() -> dict[str, int]:
    """Symbol name -> address of the sgemm/dgemm that `emit_gemm` calls.

    Register each pair with the JIT before finalizing a module that calls them. The
    first call also caps scipy's OpenBLAS at one thread (see the module docstring).
    """
    capi = _cython_blas().__pyx_capi__  # loads scipy's BLAS if nothing had yet
    limit_scipy_blas_threads()
    return {name: capsule_address(capi[blas_name]) for name, blas_name, _ in _SYMBOLS.values()}


def _cython_blas() -> object:
    return cython_module("cython_blas")


def cython_module(stem: str) -> object:
    """``scipy.linalg.<stem>`` (cython_blas, cython_lapack) without running ``scipy.linalg/__init__``.

    The package import is most of a warm start; the extension alone loads in next to no time
    (docs/benchmarks.md, W5). The module is registered under its usual name, so
    later imports of it get the same module (though a later ``import scipy.linalg`` does not
    set the attribute on the package). Falls back to the normal import.
    """
    name = "scipy.linalg." + stem
    if name in sys.modules:
        return sys.modules[name]
    if "scipy.linalg" not in sys.modules:  # else already paid for: import normally
        import scipy

        try:
            folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, stem + suffix)
                if os.path.exists(path):
                    spec = importlib.util.spec_from_file_location(name, path)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    sys.modules.setdefault(name, module)
                    return sys.modules[name]
        except ImportError:
            pass
    return importlib.import_module(name)


def limit_scipy_blas_threads(threads: int = 1) -> list[str]:
    """Cap scipy's bundled BLAS (not numpy's) at `threads`; returns the paths capped.

    A BLAS library shared by numpy and scipy (one pool only, as in conda builds) is left
    alone, as is any library outside scipy's installation.
    """
    import scipy
    from threadpoolctl import ThreadpoolController

    base = os.path.dirname(os.path.realpath(scipy.__file__))
    roots = (base + os.sep, base + ".libs" + os.sep)
    capped = []
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        path = os.path.realpath(lib.filepath)
        if path.startswith(roots):
            lib.set_num_threads(threads)
            capped.append(path)
    return capped


def declare_gemm(module: ir.Module, dtype: object) -> ir.Function:
    """Declare (once per module) the Fortran-convention GEMM for float32 or float64.

    ``void gemm(char* ta, char* tb, i32* m, i32* n, i32* k, T* alpha, T* a, i32* lda,
    T* b, i32* ldb, T* beta, T* c, i32* ldc)``, column-major.
    """
    name, _, elem = _lookup(dtype)
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    i8p, i32p, tp = I8.as_pointer(), I32.as_pointer(), elem.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i8p, i32p, i32p, i32p, tp, tp, i32p, tp, i32p, tp, tp, i32p])
    return ir.Function(module, fnty, name)


def emit_gemm(builder: ir.IRBuilder, dtype: object, trans_a: bool, trans_b: bool,
              m: int | ir.Value, n: int | ir.Value, k: int | ir.Value,
              a_ptr: ir.Value, lda: int | ir.Value, b_ptr: ir.Value, ldb: int | ir.Value,
              c_ptr: ir.Value, ldc: int | ir.Value,
              alpha: float | ir.Value = 1.0, beta: float | ir.Value = 0.0) -> None:
    """Emit ``C = alpha * op(A) @ op(B) + beta * C`` on row-major buffers.

    C is m x n with row stride `ldc`; op(A) is m x k and op(B) is k x n, where op transposes
    when `trans_a`/`trans_b` is set, so the stored A is m x k (or k x m) with row stride
    `lda`, likewise B. Sizes and strides are Python ints or integer IR values; they must fit
    in 32 bits (scipy's BLAS is LP64). With beta == 0, C is write-only. Zero sizes are
    allowed: k == 0 gives C = beta * C, m == 0 or n == 0 does nothing.

    Row-major C is column-major C^T = op(B)^T @ op(A)^T, so the call swaps the operands:
    ``gemm(tb, ta, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc)``.
    """
    fn = declare_gemm(builder.module, dtype)
    _, _, elem = _lookup(dtype)
    values = [ir.Constant(I8, ord("T" if trans_b else "N")), ir.Constant(I8, ord("T" if trans_a else "N"))]
    values += [_as_i32(builder, v) for v in (n, m, k)]
    # Fortran requires every leading dimension >= 1, even when a size is 0.
    values += [_at_least_one(builder, _as_i32(builder, v)) for v in (ldb, lda, ldc)]
    values += [_as_float(builder, elem, alpha), _as_float(builder, elem, beta)]
    slots = entry_allocas(builder, [v.type for v in values])
    for value, slot in zip(values, slots):
        builder.store(value, slot)
    ta, tb, n_p, m_p, k_p, ldb_p, lda_p, ldc_p, alpha_p, beta_p = slots
    # llvmlite's bitcast is a no-op for opaque pointers, which match any pointer parameter.
    b_arg, a_arg, c_arg = (builder.bitcast(p, elem.as_pointer()) for p in (b_ptr, a_ptr, c_ptr))
    builder.call(fn, [ta, tb, n_p, m_p, k_p, alpha_p, b_arg, ldb_p, a_arg, lda_p, beta_p, c_arg, ldc_p])


def emit_gemm_parallel(builder: ir.IRBuilder, parallel_for: ir.Value, dtype: object, trans_a: bool, trans_b: bool,
                       m: int, n: int, k: int, a_ptr: ir.Value, lda: int, b_ptr: ir.Value, ldb: int,
                       c_ptr: ir.Value, ldc: int, alpha: float = 1.0, beta: float = 0.0) -> None:
    """`emit_gemm` for compile-time sizes, split across a thread pool when that pays.

    `parallel_for` is a pointer to ``void parallel_for(void* f, void** args, int64 n,
    int64 min_chunk)`` (`graphc.backend.llvm.parallel.ThreadPool.parallel_for_address`).
    The product is split into blocks of columns or rows of C, each one single-threaded BLAS
    call (`gemm_split`). Products too small for two blocks are emitted as one inline
    `emit_gemm`.
    """
    split = gemm_split(m, n, k)
    if split is None:
        emit_gemm(builder, dtype, trans_a, trans_b, m, n, k, a_ptr, lda, b_ptr, ldb, c_ptr, ldc, alpha, beta)
        return
    by_rows, _ = split
    chunk = _gemm_chunk_function(builder.module, dtype, trans_a, trans_b, by_rows, m, n, k, lda, ldb, ldc,
                                 alpha, beta)
    slots = ir.ArrayType(_I8P, 3)
    (table,) = entry_allocas(builder, [slots])
    zero = ir.Constant(I32, 0)
    for i, p in enumerate((a_ptr, b_ptr, c_ptr)):
        builder.store(builder.bitcast(p, _I8P), builder.gep(table, [zero, ir.Constant(I32, i)]))
    # the least piece (`gemm_split`) computed by the code from the sizes (LLVM folds it), so that a
    # symbolic-dim template's small sizes get pieces worth their cost, or run inline
    items, per_item = (m, n) if by_rows else (n, m)
    least = emit_ceil_div(builder, _piece_flops(), (2, per_item, k))
    width = ir.Constant(I64, GEMM_MIN_WIDTH)
    least = builder.select(builder.icmp_signed("<", least, width), width, least)
    builder.call(_function_pointer(builder, parallel_for, _PARALLEL_FOR_TYPE),
                 [builder.bitcast(chunk, _I8P), builder.gep(table, [zero, zero]),
                  ir.Constant(I64, items), builder.sub(ir.Constant(I64, 0), least)])


def _piece_flops() -> int:
    """The work of the least piece of a split product: `GEMM_MIN_PIECE_NS` at `GEMM_GFLOPS`."""
    return round(GEMM_MIN_PIECE_NS * GEMM_GFLOPS)


def gemm_split(m: int, n: int, k: int) -> tuple[bool, int] | None:
    """How to split an m x n (x k) product over a pool: (by rows, least rows or columns per
    piece), or None to run it as one call.

    Each piece is a separate BLAS call that packs the operand it shares with the others
    again: splitting columns of C repacks all of op(A) (m x k), splitting rows all of op(B)
    (k x n). So the product is split along the dim whose shared operand is smaller, into
    pieces of at least `GEMM_MIN_WIDTH` rows or columns (then the repacking costs about 10%
    of a piece, measured: docs/backend.md, "Threads") and at least `GEMM_MIN_PIECE_NS` of
    work at `GEMM_GFLOPS`, at most one piece per thread (`emit_gemm_parallel` passes the
    least piece to ``parallel_for`` negated, computed by the generated code from the sizes,
    so a symbolic-dim template's small sizes run inline). Whether to split, and along which
    dim, is a decision (`graphc.passes.sizing.decide`).
    """
    if not k:
        return None
    by_rows = m * k > k * n
    items, per_item = (m, n) if by_rows else (n, m)
    split = decide("gemm split", by_rows if items >= 2 * _least(per_item, k) else None)
    if split is None:
        return None
    return split, _least(n if split else m, k)


def _least(per_item: int, k: int) -> int:
    """The least rows or columns of a piece whose rows or columns cost 2 * per_item * k FLOPs
    each (the code `emit_gemm_parallel` emits computes the same)."""
    return max(GEMM_MIN_WIDTH, -(-_piece_flops() // max(1, 2 * per_item * k)))


def _gemm_chunk_function(module: ir.Module, dtype: object, trans_a: bool, trans_b: bool, by_rows: bool,
                         m: int, n: int, k: int, lda: int, ldb: int, ldc: int, alpha: float,
                         beta: float) -> ir.Function:
    """``void chunk(void** [A, B, C], i64 begin, i64 end)``: rows (or columns) [begin, end) of C."""
    spec = repr((np.dtype(dtype).name, trans_a, trans_b, by_rows, m, n, k, lda, ldb, ldc, float(alpha), float(beta)))
    name = decide("gemm chunk", "graphc_gemm_chunk_" + hashlib.sha1(spec.encode()).hexdigest()[:16])
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ir.Function(module, _CHUNK_TYPE, name)
    fn.linkage = "internal"
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    args, begin, end = fn.args
    _, _, elem = _lookup(dtype)
    a, b, c = (builder.load(builder.gep(args, [ir.Constant(I64, i)], source_etype=_I8P), typ=_I8P)
               for i in range(3))
    count = builder.sub(end, begin)

    def shifted(base: ir.Value, step: int) -> ir.Value:
        return builder.gep(base, [builder.mul(begin, ir.Constant(I64, step))], source_etype=elem)

    if by_rows:  # rows of C are rows of op(A): a row of A, or a column of a transposed A
        emit_gemm(builder, dtype, trans_a, trans_b, count, n, k, shifted(a, 1 if trans_a else lda), lda,
                  b, ldb, shifted(c, ldc), ldc, alpha, beta)
    else:  # columns of C are columns of op(B)
        emit_gemm(builder, dtype, trans_a, trans_b, m, count, k, a, lda,
                  shifted(b, ldb if trans_b else 1), ldb, shifted(c, 1), ldc, alpha, beta)
    builder.ret_void()
    return fn


def _lookup(dtype: object) -> tuple[str, str, ir.Type]:
    try:
        return _SYMBOLS[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise TypeError(f"BLAS GEMM supports float32 and float64, not {dtype}") from None


def _as_i32(builder: ir.IRBuilder, value: int | ir.Value) -> ir.Value:
    if not isinstance(value, ir.Value):
        if not 0 <= value <= _I32_MAX:
            raise ValueError(f"GEMM size or stride {value} does not fit the BLAS's 32-bit ints")
        return ir.Constant(I32, value)
    width = value.type.width
    if width == 32:
        return value
    return builder.trunc(value, I32) if width > 32 else builder.zext(value, I32)


def _at_least_one(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    if isinstance(value, ir.Constant):
        return ir.Constant(I32, max(1, value.constant))
    one = ir.Constant(I32, 1)
    return builder.select(builder.icmp_signed("<", value, one), one, value)


def _as_float(builder: ir.IRBuilder, elem: ir.Type, value: float | ir.Value) -> ir.Value:
    if not isinstance(value, ir.Value):
        return ir.Constant(elem, float(value))
    if value.type == elem:
        return value
    if isinstance(elem, ir.DoubleType):
        return builder.fpext(value, elem)
    return builder.fptrunc(value, elem)


def _function_pointer(builder: ir.IRBuilder, value: ir.Value, fnty: ir.FunctionType) -> ir.Value:
    """`value` as a pointer llvmlite can call with type `fnty` (an opaque ``ptr`` cannot be)."""
    ty = value.type
    if isinstance(ty, ir.PointerType) and not ty.is_opaque and ty.pointee == fnty:
        return value
    return builder.inttoptr(builder.ptrtoint(value, I64), fnty.as_pointer())
