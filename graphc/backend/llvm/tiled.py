"""graphc's own GEMM: register-blocked micro-kernels over column panels of C.

``C = op(A) @ op(B)`` (row-major, beta 0) for compile-time sizes, generated as LLVM IR
(BLIS-style register blocking; see docs/backend.md, "Tiled products"):

- C is cut into *panels* of `nr` columns (two host vectors wide: 32 floats on AVX-512,
  16 on AVX2). A piece of work is a range of panels, so the pool's threads share no
  packed data and no piece repacks anything another piece packed.
- Per panel, the k x nr block of op(B) is packed once into a stack buffer (contiguous, one
  row of nr per k, zero-padded past n), from either layout of B (a transposed B in blocks
  of lanes x lanes, transposed in registers).
- Per tile of `mr` rows (8 on AVX-512, 6 on AVX2) the micro-kernel keeps the mr x nr
  accumulators in vector registers over the whole of k: per k it loads two vectors of the
  packed panel, broadcasts one element of each of the mr rows of op(A) (read in place,
  either layout) and issues 2*mr FMAs. C is written once, with no read.
- Edges: rows past m read row m-1 (in bounds) and are not stored; columns past n are
  zeros in the packed panel and are not stored. A tile with either edge goes through a
  stack tile and a scalar copy of its valid part.

The packed panel takes k * nr elements of stack, so products with a larger k
(`MAX_PANEL_BYTES`) stay with the BLAS.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os

import numpy as np
from llvmlite import ir

from .emitter import intrinsic
from .loops import I64, PTR, FunctionBuilder, entry_allocas

__all__ = ["AUTO_MAX_A", "MAX_PANEL_BYTES", "TILED_GFLOPS", "blocking", "emit_tiled_gemm", "gemm_mode", "use_tiled"]

I1, I32 = ir.IntType(1), ir.IntType(32)
_ELEM = {np.dtype(np.float32): ir.FloatType(), np.dtype(np.float64): ir.DoubleType()}
_PARALLEL_FOR = ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I64])
# Stack the packed panel of op(B) may take (k * nr elements).
MAX_PANEL_BYTES = 128 * 1024
# "auto" runs products with a transposed A on the kernel up to this many elements of A.
AUTO_MAX_A = 65536
# Single-thread speed assumed when sizing the pieces of a split (as blas.GEMM_GFLOPS).
TILED_GFLOPS = 60.0
# The least work per piece handed to another thread (as blas.GEMM_MIN_PIECE_NS).
MIN_PIECE_NS = 30_000


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
    (docs/backend.md, "Tiled products"): those whose packed panel fits `MAX_PANEL_BYTES`,
    with at least one whole panel (n >= nr), and whose op(A), when A is transposed, has at
    most `AUTO_MAX_A` elements (a large transposed A, read in place with a long stride,
    measured slower).
    """
    block = blocking(dtype)
    mode = gemm_mode()
    if block is None or mode == "blas" or not (m and n and k):
        return False
    if k * block[2] * np.dtype(dtype).itemsize > MAX_PANEL_BYTES:
        return False
    return mode == "tiled" or (n >= block[2] and (m * k <= AUTO_MAX_A or not trans_a))


def emit_tiled_gemm(builder: ir.IRBuilder, parallel_for: ir.Value | None, dtype: object, trans_a: bool,
                    trans_b: bool, m: int, n: int, k: int, a_ptr: ir.Value, lda: int, b_ptr: ir.Value, ldb: int,
                    c_ptr: ir.Value, ldc: int) -> None:
    """Emit ``C = op(A) @ op(B)`` (C m x n, row stride `ldc`; A and B row-major with row
    strides `lda`, `ldb`, transposed when `trans_a`/`trans_b`), split into ranges of panels
    over ``parallel_for`` (the pool's, as in `blas.emit_gemm_parallel`) when that is given
    and the product is large enough, else on the calling thread."""
    lanes, mr, nr = blocking(dtype)
    chunk = _chunk_function(builder.module, np.dtype(dtype), trans_a, trans_b, m, n, k, lda, ldb, ldc)
    panels = -(-n // nr)
    (table,) = entry_allocas(builder, [ir.ArrayType(PTR, 3)])
    zero = ir.Constant(I32, 0)
    for i, p in enumerate((a_ptr, b_ptr, c_ptr)):
        builder.store(p, builder.gep(table, [zero, ir.Constant(I32, i)]))
    args = builder.gep(table, [zero, zero])
    if parallel_for is None:
        builder.call(chunk, [args, ir.Constant(I64, 0), ir.Constant(I64, panels)])
        return
    ns_per_panel = 2.0 * m * nr * k / TILED_GFLOPS
    min_chunk = max(1, math.ceil(MIN_PIECE_NS / ns_per_panel))
    fn = builder.inttoptr(builder.ptrtoint(parallel_for, I64), _PARALLEL_FOR.as_pointer())
    builder.call(fn, [chunk, args, ir.Constant(I64, panels), ir.Constant(I64, min_chunk)])


def _chunk_function(module: ir.Module, dtype: np.dtype, trans_a: bool, trans_b: bool, m: int, n: int, k: int,
                    lda: int, ldb: int, ldc: int) -> ir.Function:
    """``void chunk(void** [A, B, C], i64 begin, i64 end)``: panels [begin, end) of C."""
    lanes, mr, nr = blocking(dtype)
    spec = repr((dtype.name, trans_a, trans_b, m, n, k, lda, ldb, ldc, lanes, mr))
    name = "graphc_tiled_" + hashlib.sha1(spec.encode()).hexdigest()[:16]
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    f = FunctionBuilder(module, name, [PTR, I64, I64])
    f.fn.attributes.add("noinline")
    _Kernel(f, _ELEM[dtype], lanes, mr, nr, trans_a, trans_b, m, n, k, lda, ldb, ldc).emit()
    f.finish()
    return f.fn


class _Kernel:
    """The body of one chunk function (see the module docstring)."""

    def __init__(self, f: FunctionBuilder, elem: ir.Type, lanes: int, mr: int, nr: int, trans_a: bool,
                 trans_b: bool, m: int, n: int, k: int, lda: int, ldb: int, ldc: int):
        self.f, self.b, self.elem = f, f.b, elem
        self.vec = ir.VectorType(elem, lanes)
        self.lanes, self.mr, self.nr = lanes, mr, nr
        self.trans_a, self.trans_b = trans_a, trans_b
        self.m, self.n, self.k, self.lda, self.ldb, self.ldc = m, n, k, lda, ldb, ldc
        suffix = "f32" if isinstance(elem, ir.FloatType) else "f64"
        self.fma = intrinsic(f.fn.module, f"llvm.fma.v{lanes}{suffix}", self.vec, [self.vec] * 3)

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
        a, bm, c = (b.load(b.gep(args, [self.const(i)], source_etype=PTR), typ=PTR) for i in range(3))
        top = f.top
        panel = top.alloca(self.elem, size=self.k * self.nr)
        panel.align = 64
        tile = top.alloca(self.elem, size=self.mr * self.nr)
        tile.align = 64
        with f.loop(begin, end, "panel") as p:
            j0 = b.mul(p, self.const(self.nr))
            cols = self.smin(b.sub(self.const(self.n), j0), self.nr)
            self.pack(bm, panel, j0, cols)
            with f.loop(0, -(-self.m // self.mr), "tile") as t:
                self.tile(a, panel, c, tile, b.mul(t, self.const(self.mr)), j0, cols)

    def smin(self, value: ir.Value, bound: int) -> ir.Value:
        b = self.b
        return b.select(b.icmp_signed("<", value, self.const(bound)), value, self.const(bound))

    def pack(self, bm: ir.Value, panel: ir.Value, j0: ir.Value, cols: ir.Value) -> None:
        """panel[kk * nr + jj] = op(B)[kk, j0 + jj] for jj < cols, else 0."""
        f, b, nr = self.f, self.b, self.nr
        full = b.icmp_signed("==", cols, self.const(nr))
        with b.if_else(full) as (then, otherwise):
            with then:
                if self.trans_b:
                    self.pack_transposed(bm, panel, j0)
                else:  # whole rows of B: vector copies
                    with f.loop(0, self.k, "pk") as kk:
                        src = self.at(bm, b.add(b.mul(kk, self.const(self.ldb)), j0))
                        dst = self.at(panel, b.mul(kk, self.const(nr)))
                        for v in range(0, nr, self.lanes):
                            x = b.load(self.vat(src, self.const(v)), typ=self.vec, align=self.elem_bytes)
                            b.store(x, self.vat(dst, self.const(v)), align=self.elem_bytes)
            with otherwise:  # the last panel, narrower than nr: zeros, then its columns
                zero = ir.Constant(self.vec, [ir.Constant(self.elem, 0.0)] * self.lanes)
                with f.loop(0, self.k, "pz") as kk:
                    for v in range(0, nr, self.lanes):
                        b.store(zero, self.vat(panel, b.add(b.mul(kk, self.const(nr)), self.const(v))),
                                align=self.vec_align(v // self.lanes))
                outer, inner = (("pj", cols), ("pk", self.k)) if self.trans_b else (("pk", self.k), ("pj", cols))
                with f.loop(0, outer[1], outer[0]) as x:
                    with f.loop(0, inner[1], inner[0]) as y:
                        jj, kk = (x, y) if self.trans_b else (y, x)
                        col = b.add(j0, jj)
                        index = (b.add(b.mul(col, self.const(self.ldb)), kk) if self.trans_b
                                 else b.add(b.mul(kk, self.const(self.ldb)), col))
                        b.store(b.load(self.at(bm, index), typ=self.elem),
                                self.at(panel, b.add(b.mul(kk, self.const(nr)), jj)))

    def pack_transposed(self, bm: ir.Value, panel: ir.Value, j0: ir.Value) -> None:
        """A whole panel of a transposed B (nr of its rows, contiguous along k): blocks of
        lanes x lanes elements transposed in registers, the last k % lanes elements one by one."""
        f, b, lanes, nr = self.f, self.b, self.lanes, self.nr
        blocks = self.k // lanes
        with f.loop(0, blocks, "tk") as kb:
            k0 = b.mul(kb, self.const(lanes))
            for jb in range(0, nr, lanes):
                rows = [b.load(self.vat(bm, b.add(b.mul(b.add(j0, self.const(jb + r)), self.const(self.ldb)), k0)),
                                typ=self.vec, align=self.elem_bytes) for r in range(lanes)]
                for c, column in enumerate(self.transpose(rows)):
                    b.store(column, self.vat(panel, b.add(b.mul(b.add(k0, self.const(c)), self.const(nr)),
                                                          self.const(jb))), align=self.vec_align(jb // lanes))
        with f.loop(blocks * lanes, self.k, "tr") as kk:
            for jj in range(nr):
                x = b.load(self.at(bm, b.add(b.mul(b.add(j0, self.const(jj)), self.const(self.ldb)), kk)),
                           typ=self.elem)
                b.store(x, self.at(panel, b.add(b.mul(kk, self.const(nr)), self.const(jj))))

    def transpose(self, rows: list[ir.Value]) -> list[ir.Value]:
        """The columns of a lanes x lanes block given as its rows: log2(lanes) rounds of
        interleaving row i with row i + lanes/2 (lanes shuffles a round)."""
        b, lanes, half = self.b, self.lanes, self.lanes // 2
        mask_type = ir.VectorType(I32, lanes)
        low = ir.Constant(mask_type, [x for i in range(half) for x in (i, lanes + i)])
        high = ir.Constant(mask_type, [x for i in range(half, lanes) for x in (i, lanes + i)])
        for _ in range(lanes.bit_length() - 1):
            out = []
            for i in range(half):
                out += [b.shuffle_vector(rows[i], rows[i + half], low), b.shuffle_vector(rows[i], rows[i + half], high)]
            rows = out
        return rows

    def vec_align(self, v: int) -> int:
        """Alignment of vector `v` of a row of nr in a 64-byte aligned stack buffer."""
        return math.gcd(64, v * self.lanes * self.elem_bytes) or 64

    @property
    def elem_bytes(self) -> int:
        return 4 if isinstance(self.elem, ir.FloatType) else 8

    def tile(self, a: ir.Value, panel: ir.Value, c: ir.Value, tile: ir.Value, i0: ir.Value, j0: ir.Value,
             cols: ir.Value) -> None:
        """C[i0:i0+mr, j0:j0+cols] from rows i0.. of op(A) and the packed panel."""
        f, b, mr, nr, lanes = self.f, self.b, self.mr, self.nr, self.lanes
        vectors = nr // lanes
        last = self.const(self.m - 1)
        rows = []  # pointer to op(A)[row, 0] and the step from one k to the next
        for i in range(mr):
            r = b.add(i0, self.const(i))
            r = b.select(b.icmp_signed(">", r, last), last, r)  # past m: row m-1, not stored
            rows.append(self.at(a, r if self.trans_a else b.mul(r, self.const(self.lda))))
        step = self.lda if self.trans_a else 1
        zero = ir.Constant(self.vec, [ir.Constant(self.elem, 0.0)] * lanes)
        accs = [[f.slot(self.vec, zero) for _ in range(vectors)] for _ in range(mr)]
        with f.loop(0, self.k, "k") as kk:
            pk = self.at(panel, b.mul(kk, self.const(nr)))
            bv = [b.load(self.vat(pk, self.const(v * lanes)), typ=self.vec, align=self.vec_align(v))
                  for v in range(vectors)]
            ak = b.mul(kk, self.const(step))
            for i in range(mr):
                x = b.load(self.at(rows[i], ak), typ=self.elem)
                splat = b.shuffle_vector(b.insert_element(ir.Constant(self.vec, ir.Undefined), x, ir.Constant(I32, 0)),
                                         ir.Constant(self.vec, ir.Undefined),
                                         ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))
                for v in range(vectors):
                    b.store(b.call(self.fma, [splat, bv[v], b.load(accs[i][v], typ=self.vec)]), accs[i][v])
        full = b.and_(b.icmp_signed("==", cols, self.const(nr)),
                      b.icmp_signed("<=", b.add(i0, self.const(mr)), self.const(self.m)))
        with b.if_else(full) as (then, otherwise):
            with then:
                for i in range(mr):
                    row = self.at(c, b.add(b.mul(b.add(i0, self.const(i)), self.const(self.ldc)), j0))
                    for v in range(vectors):
                        b.store(b.load(accs[i][v], typ=self.vec), self.vat(row, self.const(v * lanes)),
                                align=self.elem_bytes)
            with otherwise:  # an edge tile: through the stack tile, then its valid part
                for i in range(mr):
                    for v in range(vectors):
                        b.store(b.load(accs[i][v], typ=self.vec), self.vat(tile, self.const(i * nr + v * lanes)),
                                align=self.vec_align(v))
                rows_left = self.smin(b.sub(self.const(self.m), i0), mr)
                with f.loop(0, rows_left, "ei") as i:
                    dst = self.at(c, b.add(b.mul(b.add(i0, i), self.const(self.ldc)), j0))
                    src = self.at(tile, b.mul(i, self.const(nr)))
                    with f.loop(0, cols, "ej") as j:
                        b.store(b.load(self.at(src, j), typ=self.elem), self.at(dst, j))

