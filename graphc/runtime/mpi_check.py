"""Refusing mismatched ranks: every rank must run the same collectives, in the same order.

Before the first run of a program with collectives, each rank describes them (op, dtype,
shape, root and the label, e.g. the variables whose gradients a buffer holds) and the
ranks allgather a sha256 of that list. When the digests differ, they allgather the
descriptions and every rank raises the same `DistributedError`, naming what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from ..dtypes import shape_str
from ..errors import DistributedError
from ..ir.graph import Tensor
from . import mpi as comm

ITEM_SEPARATOR = "; "  # between the variables of a label: "w (3, 2) float32; b (2,) float32"


def describe(node: Tensor) -> str:
    """One line naming what a collective node exchanges."""
    text = f"{node.op} {node.inputs[0].dtype} {shape_str(node.inputs[0].shape)}"
    if node.op == "broadcast":
        text += f" from rank {node.attrs['root']}"
    label = node.attrs.get("label")
    return f"{text} of {label}" if label else text


def check_program(collectives: Sequence[Tensor]) -> None:
    """Raise DistributedError on every rank unless all ranks run these collectives (in this order)."""
    verify_same([describe(n) for n in collectives], "the compiled program's collectives")


def verify_same(entries: list[str], what: str) -> None:
    """Raise DistributedError on every rank unless every rank passes the same `entries`."""
    text = json.dumps(entries)
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
    digests = comm.allgather(digest, f"checking {what}")
    if (digests == digests[0]).all():
        return
    lists = [json.loads(b) for b in comm.allgather_bytes(text.encode(), f"checking {what}")]
    lines = [f"the ranks differ in {what} (checked at the first run):"]
    for r in range(1, len(lists)):
        if (digests[r] != digests[0]).any():
            lines += [f"  rank {r} vs rank 0: {d}" for d in differences(lists[0], lists[r], r)]
    raise DistributedError("\n".join(lines))


def differences(a: list[str], b: list[str], rank: int) -> list[str]:
    """What differs between rank 0's entries `a` and rank `rank`'s entries `b`."""
    out = []
    if len(a) != len(b):
        out.append(f"{len(a)} collectives on rank 0, {len(b)} on rank {rank}")
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            continue
        head_x, _, items_x = x.partition(" of ")
        head_y, _, items_y = y.partition(" of ")
        if items_x and items_y and items_x != items_y:
            out += [f"collective {i}: {d}" for d in _item_differences(items_x, items_y, rank)]
        if head_x != head_y or not (items_x and items_y):
            out.append(f"collective {i}: rank 0 has {x!r}, rank {rank} has {y!r}")
    return out


def _item_differences(x: str, y: str, rank: int) -> list[str]:
    def by_name(text: str) -> dict[str, str]:
        return {item.split(" ", 1)[0]: item for item in text.split(ITEM_SEPARATOR)}

    ix, iy = by_name(x), by_name(y)
    out = [f"{name} only on rank 0" for name in ix if name not in iy]
    out += [f"{name} only on rank {rank}" for name in iy if name not in ix]
    out += [f"{ix[name]} on rank 0, {iy[name]} on rank {rank}" for name in ix if name in iy and ix[name] != iy[name]]
    if not out:
        out.append(f"the same items in another order: rank 0 {x!r}, rank {rank} {y!r}")
    return out
