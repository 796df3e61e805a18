"""Checkpoint placement: which forward values the backward part keeps, which it recomputes.

The joint forward+backward module is split by `Graph.adjoint` (nodes autodiff built):
backward = those nodes and everything computed from them; forward = the rest. A
*residual* is a forward value (not an input) that a backward node reads. A policy picks
the residuals to keep; `recompute` gives backward consumers of every other residual a
clone of it (tagged ``_remat``), built from kept values and inputs, so the original dies
at the end of the forward part and the clone is computed right before its use.

Policies: ``none`` keeps all; ``sqrt`` (Chen et al. 2016) keeps every k-th residual,
k ≈ √n, and all of the last segment (the backward part starts with it); ``mincut`` keeps
the set of least total bytes from which the backward part can recompute everything else
using only cheap (elementwise and index) ops — a networkx minimum cut, as in PyTorch's
AOTAutograd partitioner; ``revolve`` (chains only)
places Griewank–Walther binomial checkpoints for a number of slots; a memory budget
takes the least recomputation whose planned peak fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..ops.registry import OpKind
from .cost import flops, is_source, nbytes
from .loop_checkpoint import LoopReport, checkpoint_loops, share_forward
from .manager import register_pass
from .memory import arena_peak
from .mincut import keep_by_min_cut
from .module import Module

PeakFn = Callable[[Module], int]


def _graph_peak(module: Module) -> int:
    return arena_peak(module.outputs)


@dataclass(frozen=True)
class Split:
    """Forward nodes (in order), backward nodes, and the residuals between them.

    `residuals` are the ones that cost memory; `free` ones are index ops over inputs
    (``xs[t]`` of a fed sequence): views of buffers that exist anyway, always kept and not
    counted, so they neither dilute sqrt's segments nor break revolve's chain.
    """

    forward: list[Tensor]
    backward: frozenset[Tensor]
    residuals: list[Tensor]
    free: frozenset[Tensor] = frozenset()


def split(module: Module) -> Split:
    """Forward and backward parts of a module.

    Backward: the nodes autodiff built, everything computed from them, assignments, and
    values that only backward nodes read (an optimizer's ``beta1 * m``): those can be
    computed when needed, so they are not residuals kept across the two parts.
    """
    backward: set[Tensor] = set()
    users: dict[Tensor, list[Tensor]] = {n: [] for n in module.nodes}
    for n in module.nodes:
        for i in n.inputs:
            users[i].append(n)
        if n in module.adjoint or n.op == "assign" or any(i in backward for i in n.inputs):
            backward.add(n)  # (assignments are the update at the end of a step)
    outputs = set(module.outputs)
    for n in reversed(module.nodes):
        if n not in backward and not is_source(n) and n not in outputs and users[n] \
                and all(u in backward for u in users[n]):
            backward.add(n)
    forward = [n for n in module.nodes if n not in backward]
    read_by_backward = {i for n in backward for i in n.inputs}
    views: set[Tensor] = set()  # index ops over inputs only
    for n in forward:
        if n.opdef.kind is OpKind.INDEX and all(is_source(i) or i in views for i in n.inputs):
            views.add(n)
    residuals = [n for n in forward if not is_source(n) and n in read_by_backward]
    return Split(forward, frozenset(backward), [r for r in residuals if r not in views],
                 frozenset(r for r in residuals if r in views))


@dataclass
class CheckpointReport:
    """What a checkpoint policy saved and recomputed."""

    policy: str
    saved: list[tuple[str, tuple, int]] = field(default_factory=list)  # (name, shape, bytes)
    recomputed: list[tuple[str, str, int]] = field(default_factory=list)  # (name, op, flops)
    forward_flops: int = 0
    backward_flops: int = 0
    note: str = ""  # why the policy was not applied, when it was not
    loops: list[LoopReport] = field(default_factory=list)  # the loops checkpointed (str: the report's line)

    @property
    def saved_bytes(self) -> int:
        return sum(b for *_, b in self.saved)

    @property
    def recomputed_flops(self) -> int:
        return sum(f for *_, f in self.recomputed)

    def as_text(self) -> str:
        lines = [f"checkpoint policy: {self.policy}"] + ([f"  {self.note}"] if self.note else []) + [
                 f"saved residuals: {len(self.saved)} ({self.saved_bytes} bytes)"]
        lines += [f"  {name} {list(shape)} {b} B" for name, shape, b in self.saved]
        lines.append(f"recomputed nodes: {len(self.recomputed)} ({self.recomputed_flops} FLOPs)")
        lines += [f"  {name} {op} {f} FLOPs" for name, op, f in self.recomputed]
        lines += [f"loop {line}" for line in self.loops]
        lines.append(f"forward FLOPs: {self.forward_flops}  backward FLOPs: {self.backward_flops}")
        return "\n".join(lines)


def recompute(module: Module, keep: Iterable[Tensor], tag: int = 1) -> Module:
    """Give backward readers of residuals not in `keep` recomputed clones."""
    parts = split(module)
    keep = set(keep) | parts.free
    forward = set(parts.forward)
    clones: dict[Tensor, Tensor] = {}

    def clone(x: Tensor) -> Tensor:
        if x in keep or is_source(x) or x.op == "assign" or x not in forward:
            return x  # (a cloned assign would assign its variable twice)
        if x not in clones:
            inputs = tuple(clone(i) for i in x.inputs)
            clones[x] = x.graph.make(x.op, inputs, {**x.attrs, "_remat": tag}, name=x.name, loc=x.loc)
        return clones[x]

    mapping: dict[Tensor, Tensor] = {}
    for n in module.nodes:
        if n in forward:
            continue
        inputs = tuple(clone(i) if i in forward else mapping[i] for i in n.inputs)
        mapping[n] = n if inputs == n.inputs else n.graph.make(n.op, inputs, n.attrs, name=n.name, loc=n.loc)
    out = module.remap(mapping)
    return Module(out.outputs, out.adjoint | frozenset(mapping.values()) | frozenset(clones.values()))


def original_of(clone: Tensor, memo: dict[Tensor, Tensor]) -> Tensor:
    """The node a ``_remat`` clone recomputes (interning finds it by structure)."""
    if "_remat" not in clone.attrs:
        return clone
    if clone not in memo:
        attrs = {k: v for k, v in clone.attrs.items() if k != "_remat"}
        inputs = tuple(original_of(i, memo) for i in clone.inputs)
        memo[clone] = clone.graph.make(clone.op, inputs, attrs, loc=clone.loc)
    return memo[clone]


def report(module: Module, policy: str) -> CheckpointReport:
    """Saved residuals, and clones whose original is still computed (true recomputation)."""
    parts = split(module)
    live = set(module.nodes)
    memo: dict[Tensor, Tensor] = {}
    rep = CheckpointReport(policy)
    read = {(b.inputs[0], b.attrs["index"]): b for b in parts.backward if b.op == "result"}
    for n in parts.residuals:
        if n.dtype is not None:
            rep.saved.append((n.name, n.shape, nbytes(n)))
            continue
        for i, b in sorted((i, b) for (m, i), b in read.items() if m is n):  # a region op: the results read
            rep.saved.append((f"{n.name}.{i}", b.shape, nbytes(b)))
    rep.recomputed = [(original_of(n, memo).name, n.op, flops(n)) for n in module.nodes
                      if "_remat" in n.attrs and original_of(n, memo) in live]
    rep.forward_flops = sum(flops(n) for n in parts.forward)
    rep.backward_flops = sum(flops(n) for n in parts.backward) - rep.recomputed_flops
    return rep


def keep_sqrt(parts: Split) -> set[Tensor]:
    """Chen et al.: segments of k ≈ √n residuals in forward order; keep each segment's last
    residual, and every residual of the last segment.

    The backward part starts with the last segment: recomputing it would run its forward
    again right after the forward part ran it, and its values would be alive together all the
    same (to recompute the value the backward reads first, the whole segment is recomputed,
    and its other values wait for their own backward readers). Kept, they cost the same
    bytes at that time and nothing to recompute: one segment in √n less recomputation at the
    same planned peak (PyTorch's `checkpoint_sequential` runs its last segment unchecked too).
    """
    n = len(parts.residuals)
    k = max(1, math.ceil(math.sqrt(n)))
    return every_kth(parts, k) | set(parts.residuals[k * ((n - 1) // k):])


def every_kth(parts: Split, k: int) -> set[Tensor]:
    """Keep residuals k-1, 2k-1, ... in forward order (k = 1 keeps all)."""
    return {r for i, r in enumerate(parts.residuals) if (i + 1) % k == 0}


def keep_mincut(parts: Split) -> set[Tensor]:
    """The forward values of least bytes from which cheap ops recompute what backward reads."""
    forward = set(parts.forward)
    read = {i for b in parts.backward for i in b.inputs if i in forward}
    kept = keep_by_min_cut(parts.forward, read, lambda n: 0 if is_source(n) else nbytes(n), is_source)
    return {n for n in kept if not is_source(n)} if read else set(parts.residuals)


LOOP_REVOLVE_SLOTS = (1, 2, 4, 8)  # the loop revolve candidates a memory budget weighs


def loop_policy(module: Module, policy: str, slots: int | None = None) -> tuple[Module, list[LoopReport]]:
    """The module with its differentiated scans checkpointed by `policy` (sqrt: segments;
    revolve: the binomial schedule for `slots`), and one report per loop rewritten."""
    if policy == "sqrt":
        return checkpoint_loops(module)
    if policy == "revolve":
        from .loop_revolve import revolve_loops  # loaded by the policy that uses it (docs/architecture.md)

        return revolve_loops(module, slots or 1)
    return module, []


def _candidates(module: Module, parts: Split) -> Iterator[tuple[str, Module, list[LoopReport]]]:
    """Every module `fit_budget` weighs, with the reports of its checkpointed loops: none, loops in
    segments and loops on revolve's schedule (for LOOP_REVOLVE_SLOTS) when the module has
    differentiated scans, mincut, keep-every-k, and revolve for 1, 2, 3, 4, 6, 8, ... slots
    when the residuals form a chain."""
    from .loop_revolve import revolve_loops
    from .revolve import chain_steps, revolve

    n = len(parts.residuals)
    yield "none", module, []
    segmented, loops = checkpoint_loops(module)
    if loops:
        yield "loops in segments", segmented, loops
    for s in LOOP_REVOLVE_SLOTS:
        looped, loops = revolve_loops(module, s)
        if loops:
            yield f"loops revolve ({s} slots)", looped, loops
    yield "mincut", recompute(module, keep_mincut(parts)), []
    for k in range(2, n + 1):
        yield f"every {k}", recompute(module, every_kth(parts, k)), []
    try:
        chain_steps(parts.residuals, set(parts.forward), parts.free)
    except GraphcError:
        return
    slots = sorted({s for k in range(n.bit_length()) for s in (1 << k, 3 << k >> 1) if 1 <= s < n})
    for s in slots:
        yield f"revolve ({s} slots)", revolve(module, parts, s), []


def fit_budget(module: Module, budget: int, peak_bytes: PeakFn | None = None,
               ) -> tuple[Module, str, list[LoopReport]]:
    """The least-recomputation candidate whose planned peak fits `budget` bytes (its label
    and the reports of its checkpointed loops; a loop's recomputation: its recomputed
    iterations times its body's FLOPs).

    `peak_bytes(module)` measures a candidate; by default the graph-level plan (one buffer
    per intermediate), which a backend replaces with the arena of the program it would build.
    """
    peak_bytes = peak_bytes or _graph_peak
    parts = split(module)
    best: tuple[int, Module, str, list[LoopReport]] | None = None
    smallest: tuple[int, str] | None = None
    for name, candidate, loops in _candidates(module, parts):
        peak = peak_bytes(candidate)
        if smallest is None or peak < smallest[0]:
            smallest = (peak, name)
        if peak <= budget:
            cost = report(candidate, name).recomputed_flops + sum(r.recomputed * r.body_flops for r in loops)
            if best is None or cost < best[0]:
                best = (cost, candidate, name, loops)
    if best is None:
        assert smallest is not None
        raise GraphcError(f"memory budget of {budget} bytes cannot be met: the smallest planned peak found is "
                          f"{smallest[0]} bytes ({smallest[1]}); raise the budget to at least {smallest[0]}")
    return best[1:]


def apply_policy(module: Module, policy: str, slots: int | None = None) -> tuple[Module, str]:
    """The module rewritten by one policy (no measurement), and the policy's label."""
    out, label, _ = _apply(module, policy, slots)
    return out, label


def _apply(module: Module, policy: str, slots: int | None) -> tuple[Module, str, list[LoopReport]]:
    """`apply_policy`, with the reports of the loops it checkpointed."""
    label = f"revolve ({slots or 1} slots)" if policy == "revolve" else policy
    looped, loops = loop_policy(module, policy, slots)  # differentiated scans (loop_checkpoint.py, loop_revolve.py)
    if loops:  # (the residual policy on top would recompute whole loops by cloning them)
        return looped, label, loops
    parts = split(module)
    if policy == "none" or not parts.residuals:
        return module, label, []
    if policy == "sqrt":
        return recompute(module, keep_sqrt(parts)), label, []
    if policy == "mincut":
        return recompute(module, keep_mincut(parts)), label, []
    if policy == "revolve":
        from .revolve import revolve
        return revolve(module, parts, slots or 1), label, []
    raise GraphcError(f"unknown checkpoint policy {policy!r}")


def place_checkpoints(module: Module, policy: str = "none", memory_budget: int | None = None,
                      slots: int | None = None, peak_bytes: PeakFn | None = None,
                      ) -> tuple[Module, CheckpointReport]:
    """Apply a checkpoint policy (or fit a memory budget); return the module and its report.

    A policy whose planned peak (`peak_bytes`, by default the graph-level plan) is not
    below the peak of keeping everything is not used: the module is returned unchanged
    and the report's `note` says so, so no policy ever raises the peak.
    """
    if memory_budget is not None:
        out, chosen, loops = fit_budget(module, memory_budget, peak_bytes)
        rep = report(out, f"budget {memory_budget} B -> {chosen}")
        rep.loops = loops
        return out, rep
    out, label, loops = _apply(module, policy, slots)
    if out is module:
        return module, report(module, label)
    peak_bytes = peak_bytes or _graph_peak
    base, peak = peak_bytes(module), peak_bytes(out)
    if peak >= base:
        rep = report(module, label)
        rep.note = (f"not used: its planned peak ({peak} B) is not below keeping every residual "
                    f"({base} B), so every residual is kept")
        return module, rep
    rep = report(out, label)
    rep.loops = loops
    return out, rep


@register_pass("checkpoint", "choose saved vs recomputed forward values (policy or memory budget)")
def checkpoint(module: Module, options: object = None) -> tuple[Module, int]:
    policy = getattr(options, "checkpoint", "none")
    budget = getattr(options, "memory_budget", None)
    module, shared = share_forward(module)
    if policy == "none" and budget is None:
        return module, shared
    out, rep = place_checkpoints(module, policy, budget, getattr(options, "slots", None),
                                 getattr(options, "peak_bytes", None))
    reports = getattr(options, "reports", None)
    if reports is not None:
        reports["checkpoint"] = rep
    return out, len(rep.recomputed)
