"""A call on a rarely-taken branch inside a loop body, without stopping the loop vectorizer.

LLVM's loop vectorizer refuses a loop that calls a plain function, even under a branch.  It
accepts the call when the callee names masked vector variants (the
``vector-function-abi-variant`` attribute, LLVM's vector function ABI): the vectorized loop
then calls ``f.vN(x, key, mask)`` once per vector of N lanes.  Each variant tests the mask and
returns when no lane is set, else hands the set lanes (through memory) to ``f.lanes``, which
calls the scalar f for each.  The variants are always-inline, and the optimizer inlines them
after the vectorizer (`optimizer.optimize_module`), so a vector with no lane set costs the
loop a compare and a branch.  Unvectorized code calls f directly.  f and f.lanes are
``optnone`` (compiled quickly, the rare path is not tuned) and ``noinline``; f.lanes must not
be vectorized itself, since its loop calls f.  Everything is internal to the module: exported
libraries and JIT-compiled programs get the same code.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from .loops import I1, I8, I32, PTR
from .optimizer import RARE_CALL_PREFIX

_VFS = (2, 4, 8, 16)
_USED = "llvm.compiler.used"  # keeps the variants alive until the vectorizer has looked

Build = Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value]


class _Attributes(ir.values.FunctionAttributes):
    """llvmlite's function attributes plus one string attribute (llvmlite knows no string ones)."""

    def __init__(self, names: list[str], extra: str) -> None:
        super().__init__(names)
        self.extra = extra

    def _to_list(self, ret_type: ir.Type) -> list[str]:
        return [*super()._to_list(ret_type), self.extra]


def rare_call(b: ir.IRBuilder, name: str, ty: ir.Type, build: Build, x: ir.Value, key: int,
              cond: ir.Value, common: ir.Value) -> ir.Value:
    """``f(x, key)`` where the i1 `cond` holds, else `common`.

    f (ty, i32 -> ty, named RARE_CALL_PREFIX + name) is emitted once per module with the body
    ``build(builder, x, key)``, which must not read or write memory outside constant globals;
    `key` (a constant, uniform over the loop) lets one f serve several call sites.
    """
    fn = _scalar_function(b.module, RARE_CALL_PREFIX + name, ty, build)
    before = b.block
    with b.if_then(cond, likely=False):
        got = b.call(fn, [x, ir.Constant(I32, key)])
        taken = b.block
    out = b.phi(ty)
    out.add_incoming(common, before)
    out.add_incoming(got, taken)
    return out


def _scalar_function(module: ir.Module, name: str, ty: ir.Type, build: Build) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    # Masked ("M") variants of N lanes, with a vector ("v") and a uniform ("u") parameter.
    variants = ",".join(f"_ZGV_LLVM_M{vf}vu_{name}({name}.v{vf})" for vf in _VFS)
    fn = ir.Function(module, ir.FunctionType(ty, [ty, I32]), name)
    fn.linkage = "internal"
    fn.attributes = _Attributes(["noinline", "nounwind", "optnone"],
                                f'"vector-function-abi-variant"="{variants}"')
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(build(b, *fn.args))
    lanes = _lanes(module, fn, ty)
    _keep(module, [_vector_variant(module, fn, lanes, ty, vf) for vf in _VFS])
    return fn


def _lanes(module: ir.Module, scalar: ir.Function, ty: ir.Type) -> ir.Function:
    """f.lanes(ptr x, ptr flags, ptr out, i32 n, i32 key): out[i] = f(x[i], key) where flags[i] (i8) is set."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, I32, I32]), f"{scalar.name}.lanes")
    fn.linkage = "internal"
    for attr in ("noinline", "nounwind", "optnone"):
        fn.attributes.add(attr)
    xs, flags, out, n, key = fn.args
    entry, head, body, step, done = (fn.append_basic_block(s) for s in ("entry", "lane", "body", "step", "done"))
    b = ir.IRBuilder(entry)
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I32)
    i.add_incoming(ir.Constant(I32, 0), entry)
    b.cbranch(b.icmp_unsigned("<", i, n), body, done)
    b.position_at_end(body)
    with b.if_then(b.icmp_unsigned("!=", b.load(b.gep(flags, [i], source_etype=I8), typ=I8), ir.Constant(I8, 0))):
        b.store(b.call(scalar, [b.load(b.gep(xs, [i], source_etype=ty), typ=ty), key]),
                b.gep(out, [i], source_etype=ty))
    b.branch(step)
    b.position_at_end(step)
    i.add_incoming(b.add(i, ir.Constant(I32, 1)), step)
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn


def _vector_variant(module: ir.Module, scalar: ir.Function, lanes: ir.Function, ty: ir.Type, vf: int
                    ) -> ir.Function:
    """f.vN(<N x ty> x, i32 key, <N x i1> mask): f(x[i], key) in the lanes the mask sets."""
    vty, i8v = ir.VectorType(ty, vf), ir.VectorType(I8, vf)
    fn = ir.Function(module, ir.FunctionType(vty, [vty, I32, ir.VectorType(I1, vf)]),
                     f"{scalar.name}.v{vf}")
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    x, key, mask = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    xs, flags, out = b.alloca(vty), b.alloca(i8v), b.alloca(vty)
    with b.if_then(b.icmp_unsigned("==", b.bitcast(mask, ir.IntType(vf)), ir.Constant(ir.IntType(vf), 0)),
                   likely=True):
        b.ret(ir.Constant(vty, None))
    b.store(x, xs)
    b.store(b.zext(mask, i8v), flags)
    b.store(ir.Constant(vty, None), out)
    b.call(lanes, [xs, flags, out, ir.Constant(I32, vf), key])
    b.ret(b.load(out))
    return fn


def _keep(module: ir.Module, fns: list[ir.Function]) -> None:
    """Add fns to llvm.compiler.used (grown in place: its pointer type is opaque)."""
    used = module.globals.get(_USED)
    if used is None:
        used = ir.GlobalVariable(module, ir.ArrayType(PTR, 0), _USED)
        used.linkage = "appending"
        used.section = "llvm.metadata"
        used.initializer = ir.Constant(ir.ArrayType(PTR, 0), [])
    members = [*used.initializer.constant, *fns]
    used.value_type = ir.ArrayType(PTR, len(members))
    used.initializer = ir.Constant(used.value_type, members)
