"""A small helper around one LLVM function: stack slots in the entry block and counted loops.

Loop counters and accumulators live in allocas; LLVM's SROA turns them into SSA values,
so the loops reach the vectorizer in canonical form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from llvmlite import ir

from . import irtext

# The backend's LLVM scalar and pointer types, defined here only.
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
# A chunk function ``f(args, begin, end)`` and the pool's ``parallel_for(f, args, n, min_chunk)``
# (parallel.py), as the generated code calls them through pointers.
CHUNK_TYPE = ir.FunctionType(ir.VoidType(), [PTR, I64, I64])
PARALLEL_FOR_TYPE = ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I64])


def printed(module: ir.Module) -> str:
    """The module's IR text; the module is taken apart once printed. Its objects refer to each
    other in cycles (an instruction to its block, a block to its function, a function to its
    module), which only Python's cyclic collector would free; taken apart, reference counting
    frees almost all of it at once (W2's symbolic template prints five of 10,000 objects each).

    The common instructions' lines are made by `irtext.text` and put where llvmlite caches an
    instruction's string (``_StrCaching``), so llvmlite prints the rest around them: the same
    text, in about half the time."""
    for fn in module.functions:
        for block in fn.blocks:
            for instruction in block.instructions:
                line = irtext.text(instruction)
                if line is not None:
                    instruction._StrCaching__cached_str = line
    text = str(module)
    for fn in module.functions:
        for block in fn.blocks:
            block.instructions.clear()
        fn.blocks.clear()
    module.globals.clear()
    return text


def entry_allocas(builder: ir.IRBuilder, types: list[ir.Type]) -> list[ir.Value]:
    """Stack slots at the top of the function's entry block, so code inside a loop reuses them.

    Like llvmlite's ``goto_block``, this leaves the builder at the end of its current block.
    The one stack-allocation helper of the backend (`FunctionBuilder.slot` calls it).
    """
    block = builder.block
    builder.position_at_start(builder.function.entry_basic_block)
    slots = [builder.alloca(ty) for ty in types]
    builder.position_at_end(block)
    return slots


def emit_ceil_div(builder: ir.IRBuilder, numerator: int | ir.Value, factors: tuple[int, ...]) -> ir.Value:
    """``ceil(numerator / max(1, prod(factors)))`` for a numerator >= 0, computed by the generated
    code from the factors as i64 literals (the least items of a piece worth `numerator` of work
    when an item costs the product of `factors`; the panels of n columns). In a symbolic-dim
    template each factor is a literal the template computes from the dims (docs/runtime.md), so
    a size-dependent count or threshold is computed per call, not fixed at the nominal build."""
    cost: ir.Value = ir.Constant(I64, 1)
    for f in factors:
        cost = builder.mul(cost, ir.Constant(I64, f))
    one = ir.Constant(I64, 1)
    cost = builder.select(builder.icmp_signed("<", cost, one), one, cost)
    numerator = numerator if isinstance(numerator, ir.Value) else ir.Constant(I64, numerator)
    return builder.sdiv(builder.add(numerator, builder.sub(cost, one)), cost)


class FunctionBuilder:
    """An `ir.Function` under construction: `b` is the builder, `slot` makes stack variables."""

    def __init__(self, module: ir.Module, name: str, params: list[ir.Type], *, internal: bool = True):
        self.fn = ir.Function(module, ir.FunctionType(ir.VoidType(), params), name)
        if internal:
            self.fn.linkage = "internal"
        self.fn.attributes.add("nounwind")
        entry = self.fn.append_basic_block("entry")
        body = self.fn.append_basic_block("body")
        ir.IRBuilder(entry).branch(body)
        self.b = ir.IRBuilder(body)

    @property
    def args(self) -> tuple[ir.Argument, ...]:
        return self.fn.args

    @property
    def top(self) -> ir.IRBuilder:
        """A builder at the end of the entry block: what it emits dominates the whole function."""
        entry = self.fn.entry_basic_block
        builder = ir.IRBuilder(entry)
        builder.position_before(entry.terminator)
        return builder

    def slot(self, ty: ir.Type, init: ir.Value | None = None) -> ir.Value:
        """A stack variable (allocated in the entry block); `init` is stored at the current point."""
        (ptr,) = entry_allocas(self.b, [ty])
        if init is not None:
            self.b.store(init, ptr)
        return ptr

    @contextlib.contextmanager
    def loop(self, start: ir.Value | int, stop: ir.Value | int, name: str = "i") -> Iterator[ir.Value]:
        """``for i in range(start, stop)``; yields the i64 counter inside the body."""
        b = self.b
        start = start if isinstance(start, ir.Value) else ir.Constant(I64, start)
        stop = stop if isinstance(stop, ir.Value) else ir.Constant(I64, stop)
        counter = self.slot(I64, start)
        head = self.fn.append_basic_block(f"{name}.head")
        body = self.fn.append_basic_block(f"{name}.body")
        done = self.fn.append_basic_block(f"{name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.load(counter, name=name)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        yield i
        b.store(b.add(i, ir.Constant(I64, 1), flags=("nsw",)), counter)
        b.branch(head)
        b.position_at_end(done)

    def nest(self, dims: list[int], body: Callable[[list[ir.Value]], None]) -> None:
        """``body(indices)`` inside one counted loop per dim (no loop for no dims)."""
        def go(level: int, idx: list[ir.Value]) -> None:
            if level == len(dims):
                body(idx)
                return
            with self.loop(0, dims[level], f"batch{level}") as i:
                go(level + 1, idx + [i])
        go(0, [])

    @contextlib.contextmanager
    def when(self, cond: ir.Value) -> Iterator[None]:
        """Emit the body only where `cond` (i1) holds."""
        b = self.b
        then = self.fn.append_basic_block("then")
        after = self.fn.append_basic_block("after")
        b.cbranch(cond, then, after)
        b.position_at_end(then)
        yield
        b.branch(after)
        b.position_at_end(after)

    def finish(self) -> None:
        self.b.ret_void()
