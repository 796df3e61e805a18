"""Data-parallel training across processes on MPI (the optional extra ``graphc[mpi]``).

Launch one process per rank (``mpiexec -n 2 python train.py``); each builds the same graph.
``import graphc`` does not need MPI: mpi4py is imported (and MPI initialized) by the first
call into this module, which raises DistributedError saying what to install when the
extra is missing. See docs/distributed.md.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import DistributedError
from ..ir.graph import Tensor
from ..ops.collective import allgather, allreduce_sum, broadcast
from ..runtime.mpi import barrier, rank, set_timeout, size, timeout
from .training import DistributedOptimizer, average_gradients, broadcast_variables, shard

__all__ = ["DistributedError", "DistributedOptimizer", "allgather", "allreduce", "average_gradients", "barrier",
           "broadcast", "broadcast_variables", "local_rank", "rank", "set_timeout", "shard", "size", "timeout"]

_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def allreduce(x: Any, op: str = "mean", label: str = "") -> Tensor:
    """The elementwise sum (``op="sum"``) or mean (``op="mean"``, Horovod's default) of x over the ranks."""
    if op == "sum":
        return allreduce_sum(x, label)
    if op == "mean":
        total = allreduce_sum(x, label)
        if total.dtype.kind != "f":
            raise DistributedError(f"allreduce op='mean' needs floating-point values, not {total.dtype}")
        return total / float(size())
    raise DistributedError(f"allreduce op must be 'sum' or 'mean', got {op!r}")


def local_rank() -> int:
    """This process's rank among the ranks on its machine.

    Read from the launcher's environment (MPICH's hydra, Open MPI, Slurm); otherwise found
    by splitting the world by shared memory, which is collective: every rank must call it.
    """
    for name in _LOCAL_RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    from ..runtime.mpi import mpi

    MPI = mpi()
    return MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
