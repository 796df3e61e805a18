"""LAPACK calls from generated code, by the same route as GEMM (`blas.py`).

``scipy.linalg.cython_lapack`` publishes the Fortran LAPACK routines of scipy's bundled
OpenBLAS (every argument by pointer, 32-bit ints, column-major) as PyCapsules; generated
code declares the ones it calls under private names (``graphc_lapack_dgesv``, ...) and
the JIT resolves them to the capsule addresses (`lapack_symbols`). scipy's OpenBLAS is
capped at one thread, as for GEMM.

A `Lapack` step is one function: a loop over the batch; per matrix, the inputs are
copied column-major into the step's workspace (any strides, broadcast batch dims too),
one LAPACK routine (two for QR) runs there, and the results are copied into the dense
output, NaN everywhere in that matrix's output when LAPACK reports a failure (singular,
not positive definite, no convergence). A matrix with a NaN or ±inf among the entries
LAPACK would read is never handed to LAPACK (its iterations can hang on them: gesdd does
on -inf): the copy-in notes it, the call is skipped, and that matrix's output is NaN.
One emitter per op (`EMITTERS`) does the middle part; workspace sizes are fixed when the
plan is made (`workspace`), from LAPACK's own workspace query (lwork = -1) made through
ctypes at the same addresses.

Every op computes in float64, float32 ones included (the d-routines, on copies widened to
double; results rounded once when copied out), as numpy.linalg does ("the computation
type is always double"). So both backends factor the same input the same way: the
singular vectors and eigenvectors LAPACK picks where they are not unique (repeated or
zero singular values, rank-deficient QR) are the same vectors, and float32 results are
numpy's to float32 rounding (sgesdd picked other null-space vectors: graph-fuzz seed
3012619).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ...errors import GraphcError
from . import blas, mathlib
from .emitter import intrinsic, mem_type
from .loops import I1, I8, I32, I64, PTR, FunctionBuilder
from .steps import Lapack, numel, row_major_strides

__all__ = ["EMITTERS", "lapack_buffers", "lapack_function", "lapack_symbols", "workspace"]

ROUTINES = ("gesv", "trtrs", "potrf", "getrf", "syevd", "gesdd", "geqrf", "orgqr")
_ALIGN = 16  # workspace segments start on 16-element boundaries


COMPUTE = ir.DoubleType()  # the workspace's element type: every op computes in float64


def symbol(routine: str) -> str:
    return f"graphc_lapack_d{routine}"


@functools.cache
def lapack_symbols() -> dict[str, int]:
    """Symbol name -> address of every routine `EMITTERS` call (the float64 ones)."""
    capi = blas.cython_module("cython_lapack").__pyx_capi__
    blas.limit_scipy_blas_threads()
    return {symbol(r): blas.capsule_address(capi[symbol(r).rsplit("_", 1)[1]]) for r in ROUTINES}


# --- workspace ----------------------------------------------------------------------------------

def _segments(node) -> dict[str, tuple[int, bool]]:
    """Workspace segments of one matrix's call: name -> (element count, holds int32)."""
    a = node.inputs[0]
    n, m = a.shape[-2:]
    if node.op in ("solve", "triangular_solve"):
        k = node.inputs[1].shape[-1]
        return {"a": (n * m, False), "b": (n * k, False), "ipiv": (n, True)}
    if node.op == "cholesky":
        return {"a": (n * n, False)}
    if node.op == "slogdet":
        return {"a": (n * n, False), "ipiv": (n, True)}
    k = min(n, m)
    if node.op == "eigh":
        lwork, liwork = _optimal("syevd", n, m)
        return {"a": (n * n, False), "w": (n, False), "work": (lwork, False), "iwork": (liwork, True)}
    if node.op == "svd":
        full = node.attrs["full"]
        lwork, _ = _optimal("gesdd", n, m, "A" if full else "S")
        ucols, vrows = (n, m) if full else (k, k)
        return {"a": (n * m, False), "s": (k, False), "u": (n * ucols, False), "vt": (vrows * m, False),
                "work": (lwork, False), "iwork": (8 * k, True)}
    if node.op == "qr":
        kq = node.shape[-2]
        lwork = max(_optimal("geqrf", n, m)[0], _optimal("orgqr", n, kq, k)[0])
        return {"a": (n * max(m, kq), False), "tau": (k, False), "work": (lwork, False)}
    raise GraphcError(f"internal: no LAPACK lowering for {node.op}")


@functools.cache
def _optimal(routine: str, m: int, n: int, extra: int | str = 0) -> tuple[int, int]:
    """(lwork, liwork) from LAPACK's own workspace query (lwork = -1), called through ctypes
    at the address generated code calls; at least the documented minimum. `extra` is
    gesdd's jobz or orgqr's k."""
    k = min(m, n)
    real = ctypes.c_double
    work, iwork, info, dummy = real(0), ctypes.c_int(0), ctypes.c_int(0), (real * 1)()
    ref = ctypes.pointer

    def i(v: int):
        return ref(ctypes.c_int(v))

    def c(ch: str):
        return ctypes.c_char_p(ch.encode())

    minus = i(-1)
    if routine == "syevd":
        args = [c("V"), c("L"), i(m), dummy, i(max(1, m)), dummy, ref(work), minus, ref(iwork), minus, ref(info)]
        minimum = (1 + 6 * m + 2 * m * m, 3 + 5 * m)
    elif routine == "gesdd":
        ldvt = max(1, n if extra == "A" else k)
        args = [c(str(extra)), i(m), i(n), dummy, i(max(1, m)), dummy, dummy, i(max(1, m)), dummy, i(ldvt),
                ref(work), minus, (ctypes.c_int * 1)(), ref(info)]
        minimum = (3 * k + max(m, n, 5 * k * k + 4 * k), 0)
    elif routine == "geqrf":
        args = [i(m), i(n), dummy, i(max(1, m)), dummy, ref(work), minus, ref(info)]
        minimum = (n, 0)
    else:  # orgqr: m x n Q from k reflectors
        args = [i(m), i(n), i(int(extra)), dummy, i(max(1, m)), dummy, ref(work), minus, ref(info)]
        minimum = (n, 0)
    address = lapack_symbols()[symbol(routine)]
    ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * len(args))(address)(*[ctypes.cast(a, ctypes.c_void_p) for a in args])
    return max(int(work.value) + 1, minimum[0], 1), max(iwork.value, minimum[1], 1)


def workspace(node) -> tuple[dict[str, int], int]:
    """Element offset of each segment in the workspace (in float64 elements), and the total."""
    offsets, at = {}, 0
    for name, (count, is_int) in _segments(node).items():
        offsets[name] = at
        size = -(-count // 2) if is_int else count
        at += -(-max(size, 1) // _ALIGN) * _ALIGN
    return offsets, at


# --- the step function --------------------------------------------------------------------------

def lapack_buffers(step: Lapack) -> list:
    """The distinct buffers of a LAPACK step, in parameter order."""
    return list(dict.fromkeys([*(v.buffer for v in step.inputs), step.out.buffer, step.work]))


@dataclass
class Ctx:
    """What an op's emitter works with, for one matrix of the batch."""

    f: FunctionBuilder
    out_elem: ir.Type  # the output's (and the inputs') element type; the workspace's is COMPUTE
    node: object
    src: list[Callable[[ir.Value, ir.Value], ir.Value]]  # input k: (i, j) -> element pointer
    out: ir.Value  # this matrix's dense output
    work: dict[str, ir.Value]
    finite: ir.Value  # i1 slot: no NaN or ±inf among the entries copied in so far that LAPACK reads
    elem: ir.Type = COMPUTE

    @property
    def b(self) -> ir.IRBuilder:
        return self.f.b

    def widen(self, v: ir.Value) -> ir.Value:
        return v if self.out_elem == self.elem else self.b.fpext(v, self.elem)

    def narrow(self, v: ir.Value) -> ir.Value:
        """A computed value in the output's type (rounded once)."""
        return v if self.out_elem == self.elem else self.b.fptrunc(v, self.out_elem)

    def i32(self, value: int) -> ir.Value:
        """Pointer to an int argument (Fortran passes everything by reference)."""
        return self.f.slot(I32, ir.Constant(I32, value))

    def char(self, c: str) -> ir.Value:
        return self.f.slot(I8, ir.Constant(I8, ord(c)))

    def call(self, routine: str, *args: ir.Value) -> None:
        """The routine, only when every entry copied in is finite (else its info stays -1)."""
        name = symbol(routine)
        fn = self.b.module.globals.get(name) or ir.Function(
            self.b.module, ir.FunctionType(ir.VoidType(), [PTR] * len(args)), name)
        with self.b.if_then(self.b.load(self.finite, typ=I1)):
            self.b.call(fn, list(args))

    def info(self) -> ir.Value:
        """LAPACK's info argument, -1 (a failure) until a call sets it."""
        return self.f.slot(I32, ir.Constant(I32, -1))

    def at(self, base: ir.Value, index: ir.Value, ty: ir.Type | None = None) -> ir.Value:
        return self.b.gep(base, [index], inbounds=True, source_etype=ty or self.elem)

    def idx(self, *terms: tuple[ir.Value | int, int]) -> ir.Value:
        """sum of value * coefficient, as i64."""
        acc: ir.Value = ir.Constant(I64, 0)
        for v, c in terms:
            v = v if isinstance(v, ir.Value) else ir.Constant(I64, v)
            acc = self.b.add(acc, self.b.mul(v, ir.Constant(I64, c)))
        return acc

    def copy_in(self, k: int, dst: ir.Value, rows: int, cols: int,
                read: Callable[[ir.Value, ir.Value], ir.Value] | None = None) -> None:
        """Input k (rows x cols) into `dst`, column-major with leading dim `rows`; `finite` is
        cleared by a NaN or ±inf where `read(i, j)` (LAPACK reads the entry; default: all)."""
        b = self.b
        inf = ir.Constant(self.elem, float("inf"))
        fabs = intrinsic(b.module, f"llvm.fabs.{_suffix(self.elem)}", self.elem, [self.elem])
        with self.f.loop(0, cols, "cj") as j, self.f.loop(0, rows, "ci") as i:
            v = self.widen(b.load(self.src[k](i, j), typ=self.out_elem))
            b.store(v, self.at(dst, self.idx((i, 1), (j, rows))))
            ok = b.fcmp_ordered("<", b.call(fabs, [v]), inf)  # false for NaN and ±inf
            if read is not None:
                ok = b.or_(ok, b.not_(read(i, j)))
            b.store(b.and_(b.load(self.finite, typ=I1), ok), self.finite)

    def copy_out(self, src: ir.Value, rows: int, cols: int, ld: int, ok: ir.Value, row0: int = 0,
                 col0: int = 0, transpose: bool = False, keep: Callable | None = None) -> None:
        """Output rows [row0, row0 + rows), cols [col0, col0 + cols) from column-major `src`
        (element (i, j) at i + j*ld, or at j + i*ld when `transpose`); NaN unless `ok`,
        0 where `keep(i, j)` is false."""
        b = self.b
        width = self.node.shape[-1]
        nan, zero = ir.Constant(self.out_elem, float("nan")), ir.Constant(self.out_elem, 0.0)
        with self.f.loop(0, rows, "oi") as i, self.f.loop(0, cols, "oj") as j:
            at = self.idx((j, 1), (i, ld)) if transpose else self.idx((i, 1), (j, ld))
            v = self.narrow(b.load(self.at(src, at), typ=self.elem))
            if keep is not None:
                v = b.select(keep(i, j), v, zero)
            v = b.select(ok, v, nan)
            b.store(v, self.out_at(self.idx((i, width), (j, 1), (row0 * width + col0, 1))))

    def out_at(self, index: ir.Value) -> ir.Value:
        return self.at(self.out, index, self.out_elem)

    def info_ok(self, info: ir.Value) -> ir.Value:
        return self.b.icmp_signed("==", self.b.load(info, typ=I32), ir.Constant(I32, 0))


def lapack_function(module: ir.Module, step: Lapack) -> ir.Function:
    """``void step(buffers...)``: the op on every matrix of the batch."""
    node = step.node
    a = node.inputs[0]
    batch = a.shape[:-2]
    bufs = lapack_buffers(step)
    f = FunctionBuilder(module, step.name, [PTR] * len(bufs))
    f.fn.attributes.add("noinline")
    ptr = dict(zip(bufs, f.args))
    out_elem = mem_type(np.dtype(node.dtype))
    offsets, _ = workspace(node)
    per_out = numel(node.shape[len(batch):])

    def body(idx: list[ir.Value]) -> None:
        b = f.b

        def source(view, shape):
            def element(i: ir.Value, j: ir.Value) -> ir.Value:
                terms = [(v, s) for v, s, d in zip(idx, view.strides[:-2], shape[:-2]) if d != 1 and s]
                terms += [(i, view.strides[-2]), (j, view.strides[-1]), (view.offset, 1)]
                return ctx.at(ptr[view.buffer], ctx.idx(*terms), mem_type(view.buffer.dtype))
            return element

        flat = [(v, s * per_out) for v, s in zip(idx, row_major_strides(batch))]
        ctx = Ctx(f, out_elem, node, [], None, {}, f.slot(I1, ir.Constant(I1, 1)))
        ctx.out = ctx.at(ptr[step.out.buffer], ctx.idx(*flat), out_elem) if flat else ptr[step.out.buffer]
        ctx.src = [source(v, i.shape) for v, i in zip(step.inputs, node.inputs)]
        ctx.work = {name: b.gep(ptr[step.work], [ir.Constant(I64, off)], inbounds=True, source_etype=COMPUTE)
                    for name, off in offsets.items()}
        EMITTERS[node.op](ctx, **node.params)

    f.nest(list(batch), body)
    f.finish()
    return f.fn


# --- one emitter per op ---------------------------------------------------------------------------

def _solve(ctx: Ctx, lower: bool | None = None, trans: bool = False, unit: bool = False) -> None:
    """gesv (or trtrs for triangular_solve) on copies of A and B; X is written over B's copy."""
    n = ctx.node.inputs[0].shape[-1]
    k = ctx.node.shape[-1]
    wa, wb = ctx.work["a"], ctx.work["b"]
    ctx.copy_in(0, wa, n, n, None if lower is None else _triangle(ctx, lower, unit))
    ctx.copy_in(1, wb, n, k)
    info = ctx.info()
    ld = ctx.i32(max(1, n))
    if lower is None:
        ctx.call("gesv", ctx.i32(n), ctx.i32(k), wa, ld, ctx.work["ipiv"], wb, ld, info)
    else:
        ctx.call("trtrs", ctx.char("L" if lower else "U"), ctx.char("T" if trans else "N"),
                 ctx.char("U" if unit else "N"), ctx.i32(n), ctx.i32(k), wa, ld, wb, ld, info)
    ctx.copy_out(wb, n, k, n, ctx.info_ok(info))


def _triangle(ctx: Ctx, lower: bool, unit: bool) -> Callable[[ir.Value, ir.Value], ir.Value]:
    """(i, j) -> whether trtrs reads A[i, j]: its triangle, without the diagonal when `unit`."""
    op = (">" if unit else ">=") if lower else ("<" if unit else "<=")
    return lambda i, j: ctx.b.icmp_signed(op, i, j)


def _lower(ctx: Ctx) -> Callable[[ir.Value, ir.Value], ir.Value]:
    return _triangle(ctx, True, False)


def _cholesky(ctx: Ctx) -> None:
    """potrf on the lower triangle (the column-major copy has A's own layout)."""
    n = ctx.node.shape[-1]
    wa = ctx.work["a"]
    ctx.copy_in(0, wa, n, n, _lower(ctx))
    info = ctx.info()
    ctx.call("potrf", ctx.char("L"), ctx.i32(n), wa, ctx.i32(max(1, n)), info)
    ctx.copy_out(wa, n, n, n, ctx.info_ok(info), keep=_lower(ctx))


def _slogdet(ctx: Ctx) -> None:
    """getrf, then sign and log|det| from U's diagonal and the pivots (zero pivot: 0, -inf;
    NaN, NaN when A holds NaN or ±inf and getrf was skipped)."""
    n = ctx.node.inputs[0].shape[-1]
    b, elem = ctx.b, ctx.elem
    wa, ipiv = ctx.work["a"], ctx.work["ipiv"]
    ctx.copy_in(0, wa, n, n)
    info = ctx.info()
    ctx.call("getrf", ctx.i32(n), ctx.i32(n), wa, ctx.i32(max(1, n)), ipiv, info)
    sign = ctx.f.slot(elem, ir.Constant(elem, 1.0))
    logabs = ctx.f.slot(elem, ir.Constant(elem, 0.0))
    one, zero = ir.Constant(elem, 1.0), ir.Constant(elem, 0.0)
    with ctx.f.loop(0, n, "d") as i:
        d = b.load(ctx.at(wa, ctx.idx((i, n + 1))), typ=elem)
        piv = b.load(ctx.at(ipiv, i, I32), typ=I32)
        swapped = b.icmp_signed("!=", b.sext(piv, I64), b.add(i, ir.Constant(I64, 1)))
        s = b.select(b.fcmp_ordered(">", d, zero), one, b.select(b.fcmp_ordered("<", d, zero), b.fneg(one), zero))
        s = b.select(swapped, b.fneg(s), s)
        b.store(b.fmul(b.load(sign, typ=elem), s), sign)
        absd = b.call(intrinsic(b.module, f"llvm.fabs.{_suffix(elem)}", elem, [elem]), [d])
        b.store(b.fadd(b.load(logabs, typ=elem), mathlib.MATH_FUNCTIONS["log"](b, absd)), logabs)
    finite, nan = b.load(ctx.finite, typ=I1), ir.Constant(ctx.out_elem, float("nan"))
    signed = b.fadd(b.load(sign, typ=elem), zero)  # a zero pivot after a swap gave -0.0: numpy's is +0.0
    b.store(b.select(finite, ctx.narrow(signed), nan), ctx.out)
    b.store(b.select(finite, ctx.narrow(b.load(logabs, typ=elem)), nan), ctx.out_at(ir.Constant(I64, 1)))


def _suffix(elem: ir.Type) -> str:
    return "f64" if isinstance(elem, ir.DoubleType) else "f32"


def _eigh(ctx: Ctx) -> None:
    """syevd on the lower triangle: eigenvalues to row 0, eigenvectors (columns) below."""
    n = ctx.node.shape[-1]
    w = ctx.work
    ctx.copy_in(0, w["a"], n, n, _lower(ctx))
    info = ctx.info()
    sizes = _segments(ctx.node)
    ctx.call("syevd", ctx.char("V"), ctx.char("L"), ctx.i32(n), w["a"], ctx.i32(max(1, n)), w["w"], w["work"],
             ctx.i32(sizes["work"][0]), w["iwork"], ctx.i32(sizes["iwork"][0]), info)
    ok = ctx.info_ok(info)
    ctx.copy_out(w["w"], 1, n, 1, ok)
    ctx.copy_out(w["a"], n, n, n, ok, row0=1)


def _svd(ctx: Ctx, full: bool) -> None:
    """gesdd ('S', or 'A' when `full`): rows [U; s; V] of the output, blocks zero-padded
    (NaN-padded, as the rest, when gesdd fails)."""
    m, n = ctx.node.inputs[0].shape[-2:]
    k = min(m, n)
    ucols, vcols = (m, n) if full else (k, k)
    w = ctx.work
    ctx.copy_in(0, w["a"], m, n)
    info = ctx.info()
    sizes = _segments(ctx.node)
    ctx.call("gesdd", ctx.char("A" if full else "S"), ctx.i32(m), ctx.i32(n), w["a"], ctx.i32(max(1, m)), w["s"],
             w["u"], ctx.i32(max(1, m)), w["vt"], ctx.i32(max(1, vcols)), w["work"], ctx.i32(sizes["work"][0]),
             w["iwork"], info)
    ok = ctx.info_ok(info)
    width = ctx.node.shape[-1]
    pad = ctx.b.select(ok, ir.Constant(ctx.out_elem, 0.0), ir.Constant(ctx.out_elem, float("nan")))
    for row0, rows, cols in ((0, m, ucols), (m, 1, k), (m + 1, n, vcols)):  # the padding right of each block
        if cols < width:
            with ctx.f.loop(0, rows, "pi") as i, ctx.f.loop(cols, width, "pj") as j:
                ctx.b.store(pad, ctx.out_at(ctx.idx((i, width), (j, 1), (row0 * width, 1))))
    ctx.copy_out(w["u"], m, ucols, m, ok)
    ctx.copy_out(w["s"], 1, k, 1, ok, row0=m)
    ctx.copy_out(w["vt"], n, vcols, vcols, ok, row0=m + 1, transpose=True)


def _qr(ctx: Ctx, mode: str) -> None:
    """geqrf, R copied out (upper triangle), then orgqr makes Q: the output is [Qᵀ | R]."""
    m, n = ctx.node.inputs[0].shape[-2:]
    k, kq = min(m, n), ctx.node.shape[-2]
    w = ctx.work
    ctx.copy_in(0, w["a"], m, n)
    info = ctx.info()
    lwork = ctx.i32(_segments(ctx.node)["work"][0])
    ld = ctx.i32(max(1, m))
    ctx.call("geqrf", ctx.i32(m), ctx.i32(n), w["a"], ld, w["tau"], w["work"], lwork, info)
    ok = ctx.info_ok(info)
    ctx.copy_out(w["a"], kq, n, m, ok, col0=m, keep=lambda i, j: ctx.b.icmp_signed("<=", i, j))
    ctx.call("orgqr", ctx.i32(m), ctx.i32(kq), ctx.i32(k), w["a"], ld, w["tau"], w["work"], lwork, info)
    ctx.copy_out(w["a"], kq, m, m, ctx.info_ok(info), transpose=True)


EMITTERS: dict[str, Callable[..., None]] = {
    "solve": _solve,
    "triangular_solve": _solve,
    "cholesky": _cholesky,
    "slogdet": _slogdet,
    "eigh": _eigh,
    "svd": _svd,
    "qr": _qr,
}
