"""The text of the llvmlite instructions the backend emits most, as llvmlite prints them.

llvmlite formats each instruction through several ``str.format`` calls, and reads its own
cached strings through raised and caught AttributeErrors: printing W2's program took about
16 of its 32 ms of codegen. `text` makes the same line with one f-string for the common
kinds and plain instructions (no metadata, alignment, call attributes); `loops.printed`
puts it where llvmlite caches an instruction's string, and llvmlite prints everything
else (and every other instruction) itself. tests/backend/llvm/test_irtext.py checks the
text is llvmlite's own.
"""

from __future__ import annotations

from llvmlite import ir


def text(i: ir.Instruction) -> str | None:
    """``str(i)`` for the common instruction kinds, else None (llvmlite's printer then makes it)."""
    if i.metadata:
        return None
    line = _FORMATS[type(i)](i) if type(i) in _FORMATS else None
    if line is None or isinstance(i.type, ir.VoidType):
        return line and line.rstrip()
    return f"{i.get_reference()} = {line}".rstrip()


def _operation(i: ir.Instruction) -> str:
    opname = " ".join([i.opname, *i.flags]) if i.flags else i.opname
    return f"{opname} {i.type} {', '.join([op.get_reference() for op in i.operands])}"


def _gep(i: ir.GEPInstr) -> str:
    p = i.pointer
    indices = ", ".join([f"{x.type} {x.get_reference()}" for x in i.indices])
    op = "getelementptr inbounds" if i.inbounds else "getelementptr"
    return f"{op} {i.source_etype}, {p.type} {p.get_reference()}, {indices}"


def _load(i: ir.LoadInstr) -> str | None:
    (p,) = i.operands
    return None if i.align is not None else f"load {i.type}, {p.type} {p.get_reference()}"


def _store(i: ir.StoreInstr) -> str | None:
    v, p = i.operands
    return None if i.align is not None else f"store {v.type} {v.get_reference()}, {p.type} {p.get_reference()}"


def _alloca(i: ir.AllocaInstr) -> str | None:
    return None if i.operands or i.align is not None else f"alloca {i.allocated_type}"


def _terminator(i: ir.Instruction) -> str:
    return f"{i.opname} {', '.join([f'{op.type} {op.get_reference()}' for op in i.operands])}"


def _ret(i: ir.Ret) -> str | None:
    return i.opname if not i.operands else None


def _compare(i: ir.ICMPInstr | ir.FCMPInstr) -> str:
    a, b = i.operands
    flags = "".join(" " + f for f in i.flags)
    return f"{i.opname}{flags} {i.op} {a.type} {a.get_reference()}, {b.get_reference()}"


def _select(i: ir.SelectInstr) -> str:
    c, a, b = i.operands
    return (f"select {' '.join(i.flags)} {c.type} {c.get_reference()}, {a.type} {a.get_reference()}, "
            f"{b.type} {b.get_reference()}")


def _cast(i: ir.CastInstr) -> str:
    (v,) = i.operands
    return f"{i.opname} {v.type} {v.get_reference()} to {i.type}"


def _call(i: ir.CallInstr) -> str | None:
    fnty = i.callee.function_type
    if i.cconv or i.tail or i.attributes or i.fastmath or i.arg_attributes or fnty.var_arg:
        return None
    args = ", ".join([f"{a.type} {a.get_reference()}" for a in i.args])
    return f"call {fnty.return_type} {i.callee.get_reference()}({args})"


_FORMATS = {ir.Instruction: _operation, ir.GEPInstr: _gep, ir.LoadInstr: _load, ir.StoreInstr: _store,
            ir.AllocaInstr: _alloca, ir.Branch: _terminator, ir.ConditionalBranch: _terminator, ir.Ret: _ret,
            ir.ICMPInstr: _compare, ir.FCMPInstr: _compare, ir.SelectInstr: _select, ir.CastInstr: _cast,
            ir.CallInstr: _call}
