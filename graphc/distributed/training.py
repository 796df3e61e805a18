"""Data-parallel training: gradient averaging in flat buffers, weight broadcast, dataset shards."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dtypes import shape_str
from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ops.collective import allreduce_sum
from ..ops.elementwise import cast
from ..ops.shape import concatenate, reshape
from ..runtime import mpi as comm
from ..runtime.mpi_check import ITEM_SEPARATOR, verify_same
from ..train.optimizers import GradsAndVars, Optimizer


class DistributedOptimizer(Optimizer):
    """Averages gradients over the ranks before `optimizer` applies them (Horovod's).

    The gradients are packed into one flat buffer per dtype and reduced with one allreduce
    per step; ``buckets=k`` splits each buffer into k parts of about equal bytes, taken in
    reverse variable order (the order backward produces them), each reduced as soon as
    its gradients exist. ``minimize(loss, clip_norm=c)`` clips the *averaged* gradients by
    their global norm. With ``weight`` (a float scalar tensor, e.g. this rank's number of
    examples), the average is weighted: sum_r(w_r g_r) / sum_r(w_r), so ranks with uneven
    shares of a batch give the gradient of the whole batch's mean loss (a rank whose share
    is empty has weight 0; tests/distributed checks such a step). The slots and step
    counter are the wrapped optimizer's, under its names, so checkpoints match a
    single-process run's.
    """

    def __init__(self, optimizer: Optimizer, buckets: int = 1, weight: Tensor | None = None):
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DistributedOptimizer):
            raise GraphcError(f"DistributedOptimizer wraps a gc.train optimizer, got {optimizer!r}")
        if int(buckets) < 1:
            raise GraphcError(f"buckets must be at least 1, got {buckets!r}")
        if weight is not None and (not isinstance(weight, Tensor) or weight.shape != () or weight.dtype.kind != "f"):
            raise GraphcError(f"weight must be a float scalar tensor, got {weight!r}")
        comm.mpi()
        self.optimizer = optimizer
        self.lr, self.name, self.slot_names = optimizer.lr, optimizer.name, optimizer.slot_names
        self.buckets = int(buckets)
        self.weight = weight

    def compute_gradients(self, loss: Tensor, var_list: list[Tensor] | None = None) -> GradsAndVars:
        """[(averaged gradient or None, variable)] of `loss` for var_list."""
        return average_gradients(self.optimizer.compute_gradients(loss, var_list), self.buckets, self.weight)

    def apply_gradients(self, grads_and_vars: GradsAndVars, name: str | None = None) -> Tensor:
        return self.optimizer.apply_gradients(grads_and_vars, name)

    def step_variable(self, graph):
        return self.optimizer.step_variable(graph)

    def get_slot(self, var: Tensor, slot: str) -> Tensor:
        return self.optimizer.get_slot(var, slot)

    def _update(self, var, g, slots, t):
        return self.optimizer._update(var, g, slots, t)


def average_gradients(pairs: GradsAndVars, buckets: int = 1, weight: Tensor | None = None) -> GradsAndVars:
    """`pairs` with each gradient replaced by its (weighted) mean over the ranks (see DistributedOptimizer)."""
    out = list(pairs)
    connected = [i for i in reversed(range(len(out))) if out[i][0] is not None]
    dtypes = list(dict.fromkeys(out[i][1].dtype for i in connected))
    for dtype in dtypes:
        same = [i for i in connected if out[i][1].dtype == dtype]
        for part in _buckets(same, [int(np.prod(out[i][1].shape)) for i in same], buckets):
            grads = [out[i][0] for i in part]
            flat = [reshape(g, (-1,)) for g in grads]
            if weight is not None:
                w = weight if weight.dtype == dtype else cast(weight, dtype)
                flat = [f * w for f in flat] + [reshape(w, (1,))]
            label = ITEM_SEPARATOR.join(f"{out[i][1].name} {shape_str(out[i][1].shape)} {dtype}" for i in part)
            total = allreduce_sum(concatenate(flat) if len(flat) > 1 else flat[0], label=label)
            offset = 0
            for i, g in zip(part, grads):
                n = int(np.prod(g.shape))
                piece = total[offset:offset + n]
                mean = piece / total[-1] if weight is not None else piece / float(comm.size())
                out[i] = (reshape(mean, g.shape), out[i][1])
                offset += n
    return out


def _buckets(items: list[int], sizes: list[int], k: int) -> list[list[int]]:
    """`items` split in order into at most k consecutive runs of about equal total size
    (each item goes to the k-th of the total its middle falls in)."""
    total = sum(sizes) or 1
    runs: dict[int, list[int]] = {}
    acc = 0
    for item, n in zip(items, sizes):
        runs.setdefault(min(k - 1, int((acc + n / 2) * k // total)), []).append(item)
        acc += n
    return list(runs.values())


def broadcast_variables(sess: Any, root: int = 0, variables: list[Tensor] | None = None) -> None:
    """Set every rank's variables (default: all of the session's graph) to rank `root`'s values.

    The ranks first check that they hold the same variables (names, shapes, dtypes); a
    difference raises DistributedError on every rank, naming it.
    """
    variables = sorted(sess.graph.variables if variables is None else variables, key=lambda v: v.name)
    items = [f"{v.name} {shape_str(v.shape)} {v.dtype}" for v in variables]
    verify_same([ITEM_SEPARATOR.join(items)], "the variables of broadcast_variables")
    for dtype in dict.fromkeys(v.dtype for v in variables):
        group = [v for v in variables if v.dtype == dtype]
        flat = np.concatenate([sess.variable_value(v).reshape(-1) for v in group]) if group else np.zeros(0, dtype)
        flat = comm.broadcast(flat, root, "broadcast_variables")
        offset = 0
        for v in group:
            n = int(np.prod(v.shape))
            sess.set_variable_value(v, flat[offset:offset + n].reshape(v.shape))
            offset += n


def shard(*arrays: Any, seed: int | None = None, rank: int | None = None, size: int | None = None) -> Any:
    """This rank's share of `arrays` (aligned along axis 0): one of `size` contiguous parts.

    With a `seed`, the rows are first permuted by ``np.random.Generator(PCG64(seed))``, the
    same permutation on every rank; parts differ by at most one row (``np.array_split``),
    so the ranks together hold every row exactly once. Returns one array or a tuple.
    """
    if not arrays:
        raise GraphcError("shard() needs at least one array")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise GraphcError(f"shard(): arrays have different lengths {[len(a) for a in arrays]}")
    rank = comm.rank() if rank is None else int(rank)
    size = comm.size() if size is None else int(size)
    if not 0 <= rank < size:
        raise GraphcError(f"shard(): rank {rank} is not in 0..{size - 1}")
    order = np.arange(n) if seed is None else np.random.Generator(np.random.PCG64(seed)).permutation(n)
    mine = np.array_split(order, size)[rank]
    parts = tuple(a[mine] for a in arrays)
    return parts[0] if len(parts) == 1 else parts
