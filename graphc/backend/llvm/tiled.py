"""graphc's own GEMM: register-blocked micro-kernels over column panels of C.

``C = op(A) @ op(B)`` (row-major, beta 0) for compile-time sizes, generated as LLVM IR
(BLIS-style register blocking; see docs/backend.md, "Tiled products"):

- C is cut into *panels* of `nr` columns (two host vectors wide: 32 floats on AVX-512,
  16 on AVX2). A piece of work is a range of panels, so the pool's threads share no
  packed data and no piece repacks anything another piece packed.
- k is cut into blocks of at most `KC_BYTES` of panel (256 rows of 32 floats: the panel
  stays in L1 while the tiles read it), of equal depth. Per panel and block, the block of
  op(B) is packed into a stack buffer (contiguous, one row of nr per k, zero-padded past
  n): masked vector loads along the rows of B, or masked gathers down nr rows of a
  transposed B.
- Per tile of `mr` rows (8 on AVX-512, 6 on AVX2) the micro-kernel keeps the mr x nr
  accumulators in vector registers over the block: per k it loads two vectors of the
  packed panel, broadcasts one element of each of the mr rows of op(A) (read in place,
  either layout; op(A) is prefetched `PREFETCH_K` ahead, for a transposed A, whose tile
  steps a whole row of A per k) and issues 2*mr FMAs. The first block writes C (with no
  read when beta is 0), the others add to it. In a piece's first panel, which reads op(A)
  first, a plain A's next tile is prefetched into L2 before each tile (`_Kernel.ahead_fn`).
- Edges: rows past m read row m-1 (in bounds) and are not stored; columns past n are
  zeros in the packed panel and are not stored (masked stores). Masked lanes of loads,
  gathers and stores touch no memory (a prefetch past the end of A touches none either).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading

import numpy as np
from llvmlite import ir

from . import cache
from .emitter import intrinsic
from .loops import I1, I32, I64, PARALLEL_FOR_TYPE, PTR, FunctionBuilder, entry_allocas, printed

__all__ = ["AUTO_MAX_A", "KC_BYTES", "NARROW_MIN_MK", "PREFETCH_K", "SPLIT_MAX_A", "STORE_K", "TILED_GFLOPS",
           "blocking",
           "emit_narrow_check", "emit_small_a_check", "emit_split_a_check", "emit_tiled_gemm", "gemm_mode", "kernel",
           "kernel_name",
           "narrow", "small_transposed_a", "use_tiled", "work_ns"]

_ELEM = {np.dtype(np.float32): ir.FloatType(), np.dtype(np.float64): ir.DoubleType()}
# what a chunk function reads from its dims: sizes, op(A)'s strides (per row of C, per k), B's row
# stride, C's row stride, whether B is transposed, alpha (float64 bits) and beta (0 or 1)
_DIMS = ("m", "n", "k", "a_row", "a_k", "ldb", "ldc", "trans_b", "alpha", "beta")
# The packed panel of op(B): KC_BYTES of stack, k in blocks of KC_BYTES / (nr * itemsize) rows
# (256 floats): the panel stays in the 48 KB L1 while the tiles of C read it.
KC_BYTES = 32 * 1024
# How many k ahead the micro-kernel prefetches op(A) (a transposed A steps a row of A per k).
PREFETCH_K = 8
# "auto" runs products with a transposed A on the kernel up to this many elements of A, and such a
# product split over the pool up to SPLIT_MAX_A (W2's h.T @ d at batch 256, 512 x 256; its
# 784 x 256 x.T @ d measured faster on the BLAS blocks: docs/backend.md, "Tiled products").
AUTO_MAX_A = 65536
SPLIT_MAX_A = 131072
# The least m * k from which a product narrower than a panel runs on the kernel (`narrow`).
NARROW_MIN_MK = 65536
# Single-thread speed assumed when sizing the pieces of a split (as blas.GEMM_GFLOPS).
TILED_GFLOPS = 60.0
# The least work per piece handed to another thread (as blas.GEMM_MIN_PIECE_NS).
MIN_PIECE_NS = 30_000
# Storing an element of C costs about as much as this many steps of k in the estimate of a piece's
# work (W2's d3 @ W3.T, k = 10: 71 us for 2.6 MFLOP, most of it writing the 256 x 512 result).
STORE_K = 8


@functools.cache
def _vector_bytes() -> int:
    """The host's widest float vector: 64 (AVX-512), 32 (AVX2 with FMA) or 0 (use the BLAS)."""
    from llvmlite import binding as llvm

    llvm.initialize_native_target()
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return 64
    if features.get("avx2") and features.get("fma"):
        return 32
    return 0


def blocking(dtype: object) -> tuple[int, int, int] | None:
    """(vector lanes, mr, nr) for `dtype` on this host, or None when there is no kernel."""
    width = _vector_bytes()
    if not width or np.dtype(dtype) not in _ELEM:
        return None
    lanes = width // np.dtype(dtype).itemsize
    return lanes, (8 if width == 64 else 6), 2 * lanes


def gemm_mode() -> str:
    """``GRAPHC_GEMM``: "auto" (default: the rule of `use_tiled`), "tiled" (every product the
    kernel can take) or "blas" (none)."""
    mode = os.environ.get("GRAPHC_GEMM", "auto").strip().lower() or "auto"
    if mode not in ("auto", "tiled", "blas"):
        raise ValueError(f"GRAPHC_GEMM must be auto, tiled or blas, not {mode!r}")
    return mode


def use_tiled(dtype: object, m: int, n: int, k: int, trans_a: bool) -> bool:
    """Whether an m x n (x k) product runs on graphc's kernel rather than the BLAS.

    "auto" takes the products where the kernel measured faster than OpenBLAS
    (docs/backend.md, "Tiled products"): those with at least one whole panel (n >= nr), of
    any k, whose op(A), when A is transposed, has at most `AUTO_MAX_A` elements (a large
    transposed A, read in place a row of A per k, measured 12-15% slower); `narrow` adds
    narrower products at run time.
    """
    block = blocking(dtype)
    mode = gemm_mode()
    if block is None or mode == "blas" or not (m and n and k):
        return False
    return mode == "tiled" or (n >= block[2] and (m * k <= AUTO_MAX_A or not trans_a))


def narrow(dtype: object, m: int, n: int, k: int) -> bool:
    """Whether a product narrower than a panel (nr / 4 <= n < nr) is offered to the kernel when
    m * k is at least `NARROW_MIN_MK` at run time (`emit_narrow_check`): there the kernel,
    though most of its lanes are padding, measured faster than OpenBLAS (W2's last layer at
    batch 256: 256x512 @ 512x10 43-47 against 54 us, its weight gradient 44-48 against 66 us;
    at batch 32 the BLAS: 5-6 against 7-8 us). "auto" only."""
    block = blocking(dtype)
    return block is not None and gemm_mode() == "auto" and block[2] // 4 <= n < block[2] and m > 0 and k > 0


def work_ns(dtype: object, m: int, n: int, k: int) -> float:
    """The kernel's estimated time for an m x n (x k) product on one thread, as its split sizes
    pieces (`emit_tiled_gemm`): every panel whole (a narrow product's padding included), storing an
    element of C counted as `STORE_K` steps of k, at `TILED_GFLOPS`."""
    nr = blocking(dtype)[2]
    return 2.0 * m * -(-n // nr) * nr * (k + STORE_K) / TILED_GFLOPS


def emit_narrow_check(builder: ir.IRBuilder, m: int, k: int) -> ir.Value:
    """``m * k >= NARROW_MIN_MK``, computed by the code (`_emit_mk_compare`)."""
    return _emit_mk_compare(builder, m, k, ">=", NARROW_MIN_MK)


def small_transposed_a(dtype: object, m: int, n: int, k: int, trans_a: bool) -> bool:
    """Whether the kernel declines a product only because its transposed op(A) has more than
    `AUTO_MAX_A` elements. Such a product is offered to the kernel at run time when it is split
    over the pool and m * k is at most `SPLIT_MAX_A` (`emit_split_a_check`: W2's weight
    gradients x.T @ d at batch 256, where the kernel's claimed pieces beat one BLAS block per
    thread), and, in a symbolic-dim template, whose nominal sizes are huge, also when it runs on
    one thread and m * k is at most `AUTO_MAX_A` (`emit_small_a_check`; those gradients at
    batch 32). "auto" only."""
    block = blocking(dtype)
    return (block is not None and gemm_mode() == "auto" and trans_a and n >= block[2] and m > 0 and k > 0
            and m * k > AUTO_MAX_A)


def emit_small_a_check(builder: ir.IRBuilder, m: int, k: int) -> ir.Value:
    """``m * k <= AUTO_MAX_A``, computed by the code (`_emit_mk_compare`)."""
    return _emit_mk_compare(builder, m, k, "<=", AUTO_MAX_A)


def emit_split_a_check(builder: ir.IRBuilder, m: int, k: int) -> ir.Value:
    """``m * k <= SPLIT_MAX_A``, computed by the code (`_emit_mk_compare`)."""
    return _emit_mk_compare(builder, m, k, "<=", SPLIT_MAX_A)


def _emit_mk_compare(builder: ir.IRBuilder, m: int, k: int, op: str, bound: int) -> ir.Value:
    """``m * k <op> bound``, computed by the code from m and k stored to the stack (the builder
    would fold constants, and a symbolic-dim template needs m and k as affine literals)."""
    (slots,) = entry_allocas(builder, [ir.ArrayType(I64, 2)])
    zero = ir.Constant(I32, 0)
    at = [builder.gep(slots, [zero, ir.Constant(I32, i)]) for i in range(2)]
    for p, value in zip(at, (m, k)):
        builder.store(ir.Constant(I64, value), p)
    size = builder.mul(*(builder.load(p, typ=I64) for p in at))
    return builder.icmp_signed(op, size, ir.Constant(I64, bound))


def emit_tiled_gemm(builder: ir.IRBuilder, parallel_for: ir.Value | None, dtype: object, trans_a: bool,
                    trans_b: bool, m: int, n: int, k: int, a_ptr: ir.Value, lda: int, b_ptr: ir.Value, ldb: int,
                    c_ptr: ir.Value, ldc: int, alpha: float = 1.0, beta: float = 0.0) -> None:
    """Emit ``C = alpha * op(A) @ op(B) + beta * C`` for beta 0 or 1 (C m x n, row stride
    `ldc`; A and B row-major with row strides `lda`, `ldb`, transposed when
    `trans_a`/`trans_b`), split into ranges of panels over ``parallel_for`` (the pool's, as
    in `blas.emit_gemm_parallel`) when that is given and the product is large enough, else
    on the calling thread. With beta 0, C is write-only."""
    if beta not in (0.0, 1.0):
        raise ValueError(f"the tiled kernel takes beta 0 or 1, not {beta}")
    lanes, mr, nr = blocking(dtype)
    chunk = _chunk_function(builder.module, np.dtype(dtype))
    table, dims = entry_allocas(builder, [ir.ArrayType(PTR, 4), ir.ArrayType(I64, len(_DIMS))])
    zero = ir.Constant(I32, 0)
    a_row, a_k = (1, lda) if trans_a else (lda, 1)
    alpha_bits = int(np.array(alpha, np.float64).view(np.int64))
    for i, value in enumerate((m, n, k, a_row, a_k, ldb, ldc, int(trans_b), alpha_bits, int(beta))):
        builder.store(ir.Constant(I64, value), builder.gep(dims, [zero, ir.Constant(I32, i)]))
    for i, p in enumerate((a_ptr, b_ptr, c_ptr, builder.gep(dims, [zero, zero]))):
        builder.store(p, builder.gep(table, [zero, ir.Constant(I32, i)]))
    args = builder.gep(table, [zero, zero])
    # sizes derived from m, n and k are computed by the code from the table (LLVM folds them; the
    # builder would fold constants), so that a symbolic-dim template's m, n and k stay affine literals
    m_v, n_v, k_v = (builder.load(builder.gep(dims, [zero, ir.Constant(I32, i)]), typ=I64) for i in range(3))
    one = ir.Constant(I64, 1)
    panels = builder.udiv(builder.add(n_v, ir.Constant(I64, nr - 1)), ir.Constant(I64, nr))
    if parallel_for is None:
        builder.call(chunk, [args, ir.Constant(I64, 0), panels])
        return
    # the least panels per piece, ceil(MIN_PIECE_NS / ns_per_panel) with ns_per_panel = m * (k + STORE_K) *
    # 2 * nr / TILED_GFLOPS
    work = ir.Constant(I64, math.ceil(MIN_PIECE_NS * TILED_GFLOPS / (2.0 * nr)))

    def least(items: ir.Value, per_item: ir.Value) -> ir.Value:  # ceil(work / (items' size * (k + STORE_K))), >= 1
        size = builder.mul(builder.mul(items, per_item), builder.add(k_v, ir.Constant(I64, STORE_K)))
        size = builder.select(builder.icmp_signed("<", size, one), one, size)
        return builder.sdiv(builder.add(work, builder.sub(size, one)), size)

    min_chunk = least(m_v, one)
    # too few panels for two pieces (a narrow product): blocks of row tiles, one per thread, each
    # packing every panel (`_rows_function`)
    tiles = builder.udiv(builder.add(m_v, ir.Constant(I64, mr - 1)), ir.Constant(I64, mr))
    by_panels = builder.icmp_signed(">=", panels, builder.mul(min_chunk, ir.Constant(I64, 2)))
    rows_fn = _rows_function(builder.module, np.dtype(dtype), chunk)
    fn = builder.inttoptr(builder.ptrtoint(parallel_for, I64), PARALLEL_FOR_TYPE.as_pointer())
    builder.call(fn, [builder.select(by_panels, chunk, rows_fn), args, builder.select(by_panels, panels, tiles),
                      builder.select(by_panels, min_chunk, builder.neg(least(panels, ir.Constant(I64, mr))))])


def _chunk_function(module: ir.Module, dtype: np.dtype) -> ir.Function:
    """``void chunk(void** [A, B, C, i64* dims], i64 begin, i64 end)``: panels [begin, end) of C,
    sizes, strides and B's layout from ``dims`` (`_DIMS`), declared in `module`: its machine code
    is the process's (`kernel`, `graphc.backend.llvm.shared`). One function per dtype: a
    function per shape or layout cost more compile time than constant sizes and strides
    gained (docs/backend.md)."""
    name = kernel_name(dtype)
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64, I64]), name)


def _rows_function(module: ir.Module, dtype: np.dtype, chunk: ir.Function) -> ir.Function:
    """``void rows(void** [A, B, C, i64* dims], i64 begin, i64 end)``: row tiles [begin, end) of C
    (mr rows each, the last clipped at m), every panel: the chunk function over a block of rows of
    op(A) and C, with m the block's rows (rows are independent; each block packs op(B) itself)."""
    name = "row_blocks_" + chunk.name
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    _, mr, nr = blocking(dtype)
    f = FunctionBuilder(module, name, [PTR, I64, I64])
    b = f.b
    args, begin, end = f.args
    a, bm, c, dims = (b.load(b.gep(args, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR) for i in range(4))
    value = [b.load(b.gep(dims, [ir.Constant(I64, i)], source_etype=I64), typ=I64) for i in range(len(_DIMS))]
    m, n, a_row, ldc = (value[_DIMS.index(d)] for d in ("m", "n", "a_row", "ldc"))
    first = b.mul(begin, ir.Constant(I64, mr))
    stop = b.mul(end, ir.Constant(I64, mr))
    stop = b.select(b.icmp_signed("<", stop, m), stop, m)
    table, own = entry_allocas(b, [ir.ArrayType(PTR, 4), ir.ArrayType(I64, len(_DIMS))])
    zero = ir.Constant(I32, 0)
    value[_DIMS.index("m")] = b.sub(stop, first)
    for i, v in enumerate(value):
        b.store(v, b.gep(own, [zero, ir.Constant(I32, i)]))
    elem = _ELEM[dtype]
    block = (b.gep(a, [b.mul(first, a_row)], source_etype=elem), bm,
             b.gep(c, [b.mul(first, ldc)], source_etype=elem), b.gep(own, [zero, zero]))
    for i, p in enumerate(block):
        b.store(p, b.gep(table, [zero, ir.Constant(I32, i)]))
    panels = b.udiv(b.add(n, ir.Constant(I64, nr - 1)), ir.Constant(I64, nr))
    b.call(chunk, [b.gep(table, [zero, zero]), ir.Constant(I64, 0), panels])
    f.finish()
    return f.fn


_kernels: dict[str, tuple[str, str]] = {}
_kernels_lock = threading.Lock()


@functools.cache
def kernel_name(dtype: object) -> str:
    """The chunk function's name for `dtype` on this host, known without making its IR: its dtype
    and blocking, then a digest of what the IR is made from (the blocking, llvmlite's version and
    graphc's source), so a module that declares it names the code it links to."""
    import llvmlite

    dtype = np.dtype(dtype)
    lanes, mr, nr = blocking(dtype)
    made_of = f"{dtype.name} {lanes} {mr} {nr} llvmlite {llvmlite.__version__} graphc {cache.source_digest()}"
    return f"graphc_tiled_{dtype.name}_{lanes}x{mr}_{hashlib.sha256(made_of.encode()).hexdigest()[:24]}"


def kernel(dtype: object) -> tuple[str, str]:
    """(`kernel_name`, IR text of a module defining it) of the chunk function for `dtype` on this
    host, the text made on the first call (a process that loads the kernel from the disk cache
    never makes it)."""
    dtype = np.dtype(dtype)
    with _kernels_lock:  # made once: threads (`shared.prepare`) and code generation may ask at once
        if dtype.name not in _kernels:
            lanes, mr, nr = blocking(dtype)
            name = kernel_name(dtype)
            module = ir.Module(name=name)
            f = FunctionBuilder(module, name, [PTR, I64, I64], internal=False)
            f.fn.attributes.add("noinline")
            _Kernel(f, _ELEM[dtype], lanes, mr, nr).emit()
            f.finish()
            _kernels[dtype.name] = (name, printed(module))
        return _kernels[dtype.name]


class _Kernel:
    """The body of one chunk function (see the module docstring)."""

    def __init__(self, f: FunctionBuilder, elem: ir.Type, lanes: int, mr: int, nr: int):
        self.f, self.b, self.elem = f, f.b, elem
        self.vec = ir.VectorType(elem, lanes)
        self.lanes, self.mr, self.nr = lanes, mr, nr
        suffix = "f32" if isinstance(elem, ir.FloatType) else "f64"
        self.fma = intrinsic(f.fn.module, f"llvm.fma.v{lanes}{suffix}", self.vec, [self.vec] * 3)
        self.prefetch = intrinsic(f.fn.module, "llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])

    def const(self, value: int) -> ir.Constant:
        return ir.Constant(I64, value)

    def at(self, base: ir.Value, index: ir.Value) -> ir.Value:
        return self.b.gep(base, [index], inbounds=True, source_etype=self.elem)

    def vat(self, base: ir.Value, index: ir.Value) -> ir.Value:
        """`at` as a pointer to a vector (llvmlite's type check wants typed pointers to match)."""
        p = self.at(base, index)
        return p if p.type.is_opaque else self.b.bitcast(p, self.vec.as_pointer())

    def emit(self) -> None:
        f, b = self.f, self.b
        args, begin, end = f.args
        a, bm, c, dims = (b.load(b.gep(args, [self.const(i)], source_etype=PTR), typ=PTR) for i in range(4))
        self.m, self.n, self.k, self.a_row, self.a_k, self.ldb, self.ldc, trans_b, alpha, beta = (
            b.load(b.gep(dims, [self.const(i)], source_etype=I64), typ=I64) for i in range(len(_DIMS)))
        self.trans_b = b.icmp_signed("!=", trans_b, self.const(0))
        alpha = b.bitcast(alpha, ir.DoubleType())
        self.alpha = self.splat(alpha if self.elem_bytes == 8 else b.fptrunc(alpha, self.elem))
        self.accumulate = b.icmp_signed("!=", beta, self.const(0))
        self.plain = b.and_(b.icmp_signed("==", beta, self.const(0)),
                            b.fcmp_ordered("==", alpha, ir.Constant(ir.DoubleType(), 1.0)))
        panel = f.top.alloca(self.elem, size=KC_BYTES // self.elem_bytes)
        panel.align = 64
        # k in `blocks` blocks of at most KC_BYTES of panel, of equal depth (the last may be shorter)
        kc = self.const(KC_BYTES // self.elem_bytes // self.nr)
        blocks = b.udiv(b.add(self.k, b.sub(kc, self.const(1))), kc)
        kc = b.udiv(b.add(self.k, b.sub(blocks, self.const(1))), self.smax(blocks, 1))
        with f.loop(begin, end, "panel") as p:
            j0 = b.mul(p, self.const(self.nr))
            cols = self.smin(b.sub(self.n, j0), self.nr)
            lane = ir.Constant(ir.VectorType(I64, self.lanes), list(range(self.lanes)))
            masks = [b.icmp_signed("<", b.add(lane, self.splat(self.const(v * self.lanes))), self.splat(cols))
                     for v in range(self.nr // self.lanes)]  # the columns of each vector inside C
            with f.loop(0, blocks, "kb") as kb:
                k0 = b.mul(kb, kc)
                depth = b.sub(self.k, k0)
                depth = b.select(b.icmp_signed("<", depth, kc), depth, kc)
                self.pack(bm, panel, j0, masks, k0, depth)
                first = b.icmp_signed("==", kb, self.const(0))
                tiles = b.udiv(b.add(self.m, self.const(self.mr - 1)), self.const(self.mr))
                # the piece's first panel reads op(A) first: a plain A is fetched ahead there
                ahead = b.and_(b.icmp_signed("==", p, begin), b.icmp_signed("==", self.a_k, self.const(1)))
                with f.loop(0, tiles, "tile") as t:
                    i0 = b.mul(t, self.const(self.mr))
                    with b.if_then(ahead):
                        b.call(self.ahead_fn, [a, i0, k0, depth, self.m, self.a_row])
                    self.tile(a, panel, c, i0, j0, cols, masks, k0, depth, first)

    @property
    def ahead_fn(self) -> ir.Function:
        """``void ahead(A, i0, k0, depth, m, a_row)`` (plain A, not inlined, so the kernel's loops
        are as without it): prefetch into L2 the next tile's rows of op(A) (rows i0 + mr ..; past
        m-1: row m-1) at columns k0 .. k0 + depth, one prefetch per cache line (a prefetch may pass
        A's end and touches no memory)."""
        module = self.f.fn.module
        name = self.f.fn.name + "_ahead"
        if name in module.globals:
            return module.globals[name]
        g = FunctionBuilder(module, name, [PTR, I64, I64, I64, I64, I64])
        g.fn.attributes.add("noinline")
        a, i0, k0, depth, m, a_row = g.args
        b, mr, line = g.b, self.mr, 64 // self.elem_bytes
        last = b.sub(m, self.const(1))
        starts = []
        for i in range(mr):
            r = b.add(i0, self.const(mr + i))
            r = b.select(b.icmp_signed(">", r, last), last, r)
            starts.append(b.gep(a, [b.add(b.mul(r, a_row), k0)], inbounds=True, source_etype=self.elem))
        with g.loop(0, b.udiv(b.add(depth, self.const(line - 1)), self.const(line)), "ahead") as at:
            for start in starts:
                ahead_at = b.gep(start, [b.mul(at, self.const(line))], source_etype=self.elem)
                b.call(self.prefetch, [ahead_at, ir.Constant(I32, 0), ir.Constant(I32, 2), ir.Constant(I32, 1)])
        g.finish()
        return g.fn

    def smin(self, value: ir.Value, bound: int) -> ir.Value:
        b = self.b
        return b.select(b.icmp_signed("<", value, self.const(bound)), value, self.const(bound))

    def smax(self, value: ir.Value, bound: int) -> ir.Value:
        b = self.b
        return b.select(b.icmp_signed(">", value, self.const(bound)), value, self.const(bound))

    def splat(self, x: ir.Value) -> ir.Value:
        """A vector of `lanes` copies of the scalar `x`."""
        b, vec = self.b, ir.VectorType(x.type, self.lanes)
        first = b.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(I32, 0))
        return b.shuffle_vector(first, ir.Constant(vec, ir.Undefined),
                                ir.Constant(ir.VectorType(I32, self.lanes), [0] * self.lanes))

    def masked(self, op: str, *types: ir.Type) -> ir.Function:
        """The ``llvm.masked.<op>`` intrinsic on this kernel's vectors."""
        mask = ir.VectorType(I1, self.lanes)
        if op == "gather":
            pointers = ir.VectorType(PTR, self.lanes)
            return intrinsic(self.f.fn.module, f"llvm.masked.gather.{self.suffix}.v{self.lanes}p0", self.vec,
                             [pointers, I32, mask, self.vec])
        if op == "load":
            return intrinsic(self.f.fn.module, f"llvm.masked.load.{self.suffix}.p0", self.vec,
                             [PTR, I32, mask, self.vec])
        return intrinsic(self.f.fn.module, f"llvm.masked.store.{self.suffix}.p0", ir.VoidType(),
                         [self.vec, PTR, I32, mask])

    @property
    def suffix(self) -> str:
        return f"v{self.lanes}{'f32' if isinstance(self.elem, ir.FloatType) else 'f64'}"

    def pack(self, bm: ir.Value, panel: ir.Value, j0: ir.Value, masks: list[ir.Value], k0: ir.Value,
             depth: ir.Value) -> None:
        """panel[kk * nr + jj] = op(B)[k0 + kk, j0 + jj] for kk < depth and the columns under the
        masks, else 0: masked vector loads along a row of B, or gathers down nr rows of a
        transposed B (masked lanes read nothing)."""
        f, b, nr, lanes = self.f, self.b, self.nr, self.lanes
        align = ir.Constant(I32, self.elem_bytes)
        zero = ir.Constant(self.vec, [ir.Constant(self.elem, 0.0)] * lanes)
        with b.if_else(self.trans_b) as (then, otherwise):
            with then:  # the address of op(B)[0, j] = B[j, 0] for each lane's column j (j0 past the edge)
                base = self.splat(b.ptrtoint(bm, I64))
                width = self.splat(self.const(self.elem_bytes))
                lane = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
                starts = []
                for v, mask in enumerate(masks):
                    col = b.select(mask, b.add(self.splat(j0), b.add(lane, self.splat(self.const(v * lanes)))),
                                   self.splat(j0))
                    starts.append(b.add(base, b.mul(b.mul(col, self.splat(self.ldb)), width)))
                with f.loop(0, depth, "pg") as kk:
                    dst = self.at(panel, b.mul(kk, self.const(nr)))
                    offset = self.splat(b.mul(b.add(k0, kk), self.const(self.elem_bytes)))
                    for v, mask in enumerate(masks):
                        pointers = b.inttoptr(b.add(starts[v], offset), ir.VectorType(PTR, lanes))
                        x = b.call(self.masked("gather"), [pointers, align, mask, zero])
                        b.store(x, self.vat(dst, self.const(v * lanes)), align=self.vec_align(v))
            with otherwise:
                with f.loop(0, depth, "pl") as kk:
                    dst = self.at(panel, b.mul(kk, self.const(nr)))
                    for v, mask in enumerate(masks):
                        src = self.at(bm, b.add(b.mul(b.add(k0, kk), self.ldb), b.add(j0, self.const(v * lanes))))
                        x = b.call(self.masked("load"), [src, align, mask, zero])
                        b.store(x, self.vat(dst, self.const(v * lanes)), align=self.vec_align(v))

    def vec_align(self, v: int) -> int:
        """Alignment of vector `v` of a row of nr in a 64-byte aligned stack buffer."""
        return math.gcd(64, v * self.lanes * self.elem_bytes) or 64

    @property
    def elem_bytes(self) -> int:
        return 4 if isinstance(self.elem, ir.FloatType) else 8

    def tile(self, a: ir.Value, panel: ir.Value, c: ir.Value, i0: ir.Value, j0: ir.Value, cols: ir.Value,
             masks: list[ir.Value], k0: ir.Value, depth: ir.Value, first: ir.Value) -> None:
        """C[i0:i0+mr, j0:j0+cols] from rows i0.. of op(A), columns k0..k0+depth, and the packed
        panel: written as the caller asked for the first block of k, added to C after it."""
        f, b, mr, nr, lanes = self.f, self.b, self.mr, self.nr, self.lanes
        vectors = nr // lanes
        last = b.sub(self.m, self.const(1))
        rows = []  # pointer to op(A)[row, 0]; the step from one k to the next is a_k
        for i in range(mr):
            r = b.add(i0, self.const(i))
            r = b.select(b.icmp_signed(">", r, last), last, r)  # past m: row m-1, not stored
            rows.append(self.at(a, b.add(b.mul(r, self.a_row), b.mul(k0, self.a_k))))
        step = self.a_k
        zero = ir.Constant(self.vec, [ir.Constant(self.elem, 0.0)] * lanes)
        accs = [[f.slot(self.vec, zero) for _ in range(vectors)] for _ in range(mr)]
        with f.loop(0, depth, "k") as kk:
            pk = self.at(panel, b.mul(kk, self.const(nr)))
            bv = [b.load(self.vat(pk, self.const(v * lanes)), typ=self.vec, align=self.vec_align(v))
                  for v in range(vectors)]
            ak = b.mul(kk, step)
            # a transposed A steps a whole row of A per k: fetch the rows PREFETCH_K ahead (one
            # prefetch covers the tile's mr consecutive elements)
            ahead = b.gep(rows[0], [b.mul(b.add(kk, self.const(PREFETCH_K)), step)], source_etype=self.elem)
            b.call(self.prefetch, [ahead, ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])
            for i in range(mr):
                x = self.splat(b.load(self.at(rows[i], ak), typ=self.elem))
                for v in range(vectors):
                    b.store(b.call(self.fma, [x, bv[v], b.load(accs[i][v], typ=self.vec)]), accs[i][v])
        full = b.and_(b.icmp_signed("==", cols, self.const(nr)),
                      b.icmp_signed("<=", b.add(i0, self.const(mr)), self.m))
        align = ir.Constant(I32, self.elem_bytes)
        with b.if_else(b.and_(self.plain, first)) as (plain, scaled):
            with scaled:  # C = alpha * acc (+ C): every row inside C, columns under the masks
                for i in range(mr):
                    with b.if_then(b.icmp_signed("<", b.add(i0, self.const(i)), self.m)):
                        row = self.at(c, b.add(b.mul(b.add(i0, self.const(i)), self.ldc), j0))
                        for v in range(vectors):
                            at = self.at(row, self.const(v * lanes))
                            old = b.call(self.masked("load"), [at, align, masks[v], zero])
                            old = b.select(b.or_(self.accumulate, b.not_(first)), old, zero)
                            new = b.call(self.fma, [self.alpha, b.load(accs[i][v], typ=self.vec), old])
                            b.call(self.masked("store"), [new, at, align, masks[v]])
            with plain:
                self.store(c, accs, i0, j0, full, masks)

    def store(self, c: ir.Value, accs: list[list[ir.Value]], i0: ir.Value, j0: ir.Value, full: ir.Value,
              masks: list[ir.Value]) -> None:
        """C = acc: whole vectors for a full tile, masked and row by row for an edge tile."""
        b, mr, lanes = self.b, self.mr, self.lanes
        vectors = self.nr // lanes
        align = ir.Constant(I32, self.elem_bytes)
        with b.if_else(full) as (then, otherwise):
            with then:
                for i in range(mr):
                    row = self.at(c, b.add(b.mul(b.add(i0, self.const(i)), self.ldc), j0))
                    for v in range(vectors):
                        b.store(b.load(accs[i][v], typ=self.vec), self.vat(row, self.const(v * lanes)),
                                align=self.elem_bytes)
            with otherwise:  # an edge tile: rows inside C, columns under the masks
                for i in range(mr):
                    with b.if_then(b.icmp_signed("<", b.add(i0, self.const(i)), self.m)):
                        row = self.at(c, b.add(b.mul(b.add(i0, self.const(i)), self.ldc), j0))
                        for v in range(vectors):
                            b.call(self.masked("store"), [b.load(accs[i][v], typ=self.vec),
                                                          self.at(row, self.const(v * lanes)), align, masks[v]])
