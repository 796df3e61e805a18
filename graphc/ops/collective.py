"""Collective ops across the ranks of an MPI job (kind COLLECTIVE; public in gc.distributed).

Every rank must run the same collectives in the same order, as in any MPI program: the
ranks build the same graph, and the first run of each program checks that (see
`graphc.runtime.mpi_check`). The reference backend runs them through mpi4py, the LLVM
backend as one step of the compiled program (`graphc.backend.llvm.collective`).

Derivatives, with L the sum of every rank's objective:
* ``allreduce`` (sum): VJP and JVP are the sum-allreduce of the cotangents / tangents.
* ``allgather`` (stacks on a new leading axis, as ``jax.lax.all_gather``): the tangent is the
  allgather of the tangents; the cotangent of rank r's input is row r of the sum-allreduce
  of the cotangents.
* ``broadcast`` from `root`: the tangent is the broadcast of the tangents; the root's
  cotangent is the sum-allreduce of the cotangents, every other rank's is zero.
"""

from __future__ import annotations

from typing import Any

from ..errors import DTypeError, GraphcError, ShapeError
from ..ir.graph import Tensor
from .core import as_tensor
from .registry import OpDef, OpKind, register

__all__: list[str] = []  # public through gc.distributed

REDUCIBLE = ("float32", "float64", "int32", "int64")


def _comm():
    from ..runtime import mpi as comm

    return comm


def _allreduce_type(inputs: tuple, attrs: dict):
    (x,) = inputs
    if x.dtype is None or x.dtype.name not in REDUCIBLE:
        raise DTypeError(f"allreduce sums {', '.join(REDUCIBLE)}, not {x.dtype}")
    return x.shape, x.dtype


def _allgather_type(inputs: tuple, attrs: dict):
    (x,) = inputs
    if x.dtype is None:
        raise DTypeError("allgather needs a value, not an op")
    return (attrs["size"],) + tuple(x.shape), x.dtype


def _broadcast_type(inputs: tuple, attrs: dict):
    (x,) = inputs
    if x.dtype is None:
        raise DTypeError("broadcast needs a value, not an op")
    if not 0 <= attrs["root"] < attrs["size"]:
        raise ShapeError(f"root {attrs['root']} is not a rank of a world of {attrs['size']}")
    return x.shape, x.dtype


def _allgather_vjp(g, out, x, *, size, label):
    return (allreduce_sum(g)[_comm().rank()],)


def _broadcast_vjp(g, out, x, *, root, size, label):
    total = allreduce_sum(g)
    return (total if _comm().rank() == root else total * 0,)


register(OpDef("allreduce", OpKind.COLLECTIVE, _allreduce_type, attrs={"label": "str"}, arity=(1, 1),
               ref=lambda x, label: _comm().allreduce_sum(x, f"allreduce {label}".strip()),
               vjp=lambda g, out, x, label: (allreduce_sum(g),),
               jvp=lambda t, out, x, label: None if t[0] is None else allreduce_sum(t[0]),
               doc="elementwise sum over the ranks"))
register(OpDef("allgather", OpKind.COLLECTIVE, _allgather_type, attrs={"size": "int", "label": "str"},
               arity=(1, 1),
               ref=lambda x, size, label: _comm().allgather(x, f"allgather {label}".strip()),
               vjp=_allgather_vjp,
               jvp=lambda t, out, x, size, label: None if t[0] is None else allgather(t[0]),
               doc="every rank's value, stacked on a new leading axis in rank order"))
register(OpDef("broadcast", OpKind.COLLECTIVE, _broadcast_type, attrs={"root": "int", "size": "int", "label": "str"},
               arity=(1, 1),
               ref=lambda x, root, size, label: _comm().broadcast(x, root, f"broadcast {label}".strip()),
               vjp=_broadcast_vjp,
               jvp=lambda t, out, x, root, size, label: None if t[0] is None else broadcast(t[0], root),
               doc="the root rank's value on every rank"))


def _tensor(x: Any, what: str) -> Tensor:
    t = as_tensor(x)
    if t.dtype is None:
        raise GraphcError(f"{what}: {t.name} is an op without a value")
    return t


def allreduce_sum(x: Any, label: str = "") -> Tensor:
    """The elementwise sum of `x` over all ranks (`label` names the data in error messages)."""
    t = _tensor(x, "allreduce")
    _comm().mpi()
    return t.graph.make("allreduce", (t,), {"label": label})


def allgather(x: Any, label: str = "") -> Tensor:
    """Every rank's `x` (one shape and dtype on all ranks), stacked: result[r] is rank r's."""
    t = _tensor(x, "allgather")
    return t.graph.make("allgather", (t,), {"size": _comm().size(), "label": label})


def broadcast(x: Any, root: int = 0, label: str = "") -> Tensor:
    """Rank `root`'s `x` on every rank (one shape and dtype on all ranks)."""
    t = _tensor(x, "broadcast")
    return t.graph.make("broadcast", (t,), {"root": int(root), "size": _comm().size(), "label": label})
