"""Pairs: two independent products run at the same time, one on each of two threads.

`pair_steps` (run by `plan.build_steps` on the draft, before the arena is placed) finds the
pairs and moves the second product of each up to run right after the first; the plan
records them (`Plan.pairs`), and liveness treats the two steps of a pair as one time
(`Plan.times`), so no buffer of one shares bytes with a buffer of the other, in a
specialized program and in a symbolic-dim template alike. Code generation hands each pair
to the pool as two items (`pair_items`: the products whole, or the larger cut in two blocks
so that both threads get about half the work). docs/backend.md, "Threads".
"""

from __future__ import annotations

from collections.abc import Sequence

from ...passes.sizing import decide, templating
from . import blas
from .steps import Buffer, Gemm, Kernel, KernelMode, Step, numel

# The least work (at blas.GEMM_GFLOPS) of each product of a pair that runs on two threads.
PAIR_MIN_NS = 20_000
PAIR_MAX_RATIO = 2.0  # products whole: the larger has at most this many times the other's work
PAIR_WINDOW = 4  # how many steps ahead the second product of a pair may be
# A pair whose larger product has more than PAIR_BALANCE times the other's work is balanced: the
# larger is cut into two blocks of rows (or columns) of C, the thread of the smaller product runs
# the first block after it, the other thread the second block. With a cut, any ratio pairs.
PAIR_BALANCE = 1.15
# The least work of a product that is cut: a cut pair replaces the pool's split of the larger
# product, whose column halves keep each core's half of a weight matrix in its L2 from the forward
# product to the folded update; below this the products are short and that matters more (W2 at
# batch 32: 0.739 ms median paired and cut against 0.720 ms not paired; docs/benchmarks.md).
PAIR_CUT_MIN_NS = 1_000_000
PAIR_MIN_BLOCK = 32  # the least rows (columns) of either block; cuts are multiples of PAIR_CUT_ALIGN
PAIR_CUT_ALIGN = 16
# A dim at least this large at a template's nominal build is a symbolic one (`template.LIMIT`):
# a cut, decided there, is never along it.
_SYMBOLIC_AT = 1 << 20

Block = tuple[bool, int, int]  # (rows, start, stop): rows (else columns) [start, stop) of C
Items = list[list[tuple[Gemm, Block | None]]]


def pair_steps(steps: Sequence[Step]) -> tuple[tuple[Step, ...], tuple[int, ...], tuple[int, ...]]:
    """`steps` with the second product of each pair moved up right after the first, the index of
    the first of each pair (its second is the next step), and those of the pairs that run the
    epilogue of the step before them (`deferred_epilogues`)."""
    pairs = concurrent_pairs(steps)
    seconds = set(pairs.values())
    out: list[Step] = []
    firsts: list[int] = []
    for i, step in enumerate(steps):
        if i in seconds:
            continue
        out.append(step)
        if i in pairs:
            firsts.append(len(out) - 1)
            out.append(steps[pairs[i]])
    return tuple(out), tuple(firsts), deferred_epilogues(out, firsts)


def deferred_epilogues(steps: Sequence[Step], firsts: Sequence[int]) -> tuple[int, ...]:
    """The pairs (index of the first product) that run the epilogue of the product just before
    them (`pair_ops`): its epilogue is a reduce-outer kernel (a bias gradient's column sum, which
    runs on one thread), and at least one product of the pair neither reads nor writes what the
    epilogue writes, nor writes what it reads. That product may be the second of a pair itself:
    its epilogue, when it runs after that pair (the product cut in blocks), runs in this one.
    W2: `d3 @ W3.T`'s mask and bias gradient beside the last layer's folded update, and `d2 @
    W2.T`'s beside W2's. Liveness gives that step the pair's time (`Plan.times`)."""
    out = []
    for i in firsts:
        prev = steps[i - 1] if i > 0 else None
        if (isinstance(prev, Gemm) and prev.epilogue is not None and prev.epilogue.mode is KernelMode.REDUCE_OUTER
                and any(_independent(g, prev.epilogue) for g in steps[i:i + 2])):
            out.append(i)
    return tuple(out)


def concurrent_pairs(steps: Sequence[Step]) -> dict[int, int]:
    """{i: j}: GEMM steps i and j > i that can run at the same time, one on each of two threads.

    Two products (with their epilogues) pair up when each has at least `PAIR_MIN_NS` of work,
    the larger has at most `PAIR_MAX_RATIO` times the other's or can be cut (`pair_items`),
    and step j can move up to run right after step i: neither it nor any step between writes
    a buffer the other reads or writes, and no LAPACK, collective or host-call step lies
    between. Typically the weight gradient and the input gradient of one layer, or the folded
    weight-gradient updates of two layers. Each product (block) then runs as one
    single-threaded call, without the repacking that splitting it costs.

    The steps are the draft's: arena buffers are compared by identity (they are placed after,
    by liveness that treats a pair as one time). In a symbolic-dim template the sizes are the
    nominal build's decisions, and the code checks at run time that both products are worth
    a thread at the fed sizes (`codegen._emit_pair_check`).
    """
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    touched: dict[int, tuple[set, set]] = {}  # step index -> `_touched` (each step is asked often)

    def apart(j: int, h: int) -> bool:
        for k in (j, h):
            if k not in touched:
                touched[k] = _touched(steps[k])
        return _apart(touched[j], touched[h])

    for i, first in enumerate(steps):
        if i in taken or not isinstance(first, Gemm) or not decide("pair", work_ns(first) >= PAIR_MIN_NS):
            continue
        for j in range(i + 1, min(i + 1 + PAIR_WINDOW, len(steps))):
            second = steps[j]
            if not isinstance(second, (Gemm, Kernel)):  # LAPACK, collectives and host calls stay in place
                break
            if j not in taken and isinstance(second, Gemm) and all(apart(j, h) for h in range(i, j)) and decide(
                    "pair", _balanced(first, second)):
                pairs[i] = j
                taken.update((i, j))
                break
    return pairs


def work_ns(step: object) -> float:
    """A GEMM step's work at blas.GEMM_GFLOPS, in ns (0 for other steps)."""
    if not isinstance(step, Gemm):
        return 0.0
    return 2.0 * numel(step.node.shape) * step.node.inputs[0].shape[-1] / blas.GEMM_GFLOPS


def _balanced(first: Gemm, second: Gemm) -> bool:
    a, b = work_ns(first), work_ns(second)
    if min(a, b) < PAIR_MIN_NS:
        return False
    small, large = (first, second) if a <= b else (second, first)
    return max(a, b) <= PAIR_MAX_RATIO * min(a, b) or _cut(small, large) is not None


def _written(step: Gemm | Kernel) -> list[Buffer]:
    """The buffers a GEMM (with its epilogue) or a kernel writes."""
    kernels = [step] if isinstance(step, Kernel) else [step.epilogue] if step.epilogue is not None else []
    out = [step.out.buffer] if isinstance(step, Gemm) else []
    for k in kernels:
        out += [k.out.buffer, *(x.out.buffer for x in k.more)]
        out += [s for s in (k.scratch, *(x.scratch for x in k.more)) if s is not None]
    return out


def overlap(x: Buffer, y: Buffer) -> bool:
    """Whether two buffers of a draft plan are the same memory: arena buffers are distinct until
    placed (by identity), table buffers by kind and slot."""
    return _memory(x) == _memory(y)


def _memory(buf: Buffer) -> object:
    """What `overlap` compares: an arena buffer itself, a table buffer's kind and slot."""
    return id(buf) if buf.kind == "arena" else (buf.kind, buf.slot)


def _independent(g: Gemm, step: Gemm | Kernel) -> bool:
    """Neither step writes a buffer the other reads or writes."""
    return _apart(_touched(g), _touched(step))


def _touched(step: Gemm | Kernel) -> tuple[set, set]:
    """(the memory a step writes, the memory it reads or writes), as `overlap` compares it."""
    return {_memory(w) for w in _written(step)}, {_memory(b) for b in step.buffers()}


def _apart(a: tuple[set, set], b: tuple[set, set]) -> bool:
    """Neither of two steps' `_touched` writes what the other reads or writes."""
    return a[0].isdisjoint(b[1]) and b[0].isdisjoint(a[1])


def pair_items(pair: tuple[Gemm, Gemm], extra_ns: float = 0.0) -> Items:
    """What each of the pair's two threads runs, in order: a product whole, or a block of one.

    The products whole, one per thread, unless the larger has more than `PAIR_BALANCE` times
    the other's work and can be cut (`_cut`): then the first block goes after the smaller
    product and the second to the other thread, so that both get about half the work, counting
    `extra_ns` of other work before the second block (a deferred epilogue, `pair_ops`).
    """
    small, large = pair[::-1] if decide("pair order", work_ns(pair[1]) < work_ns(pair[0])) else pair
    cut = decide("pair cut", _cut(small, large, extra_ns))
    if cut is None:
        return [[(pair[0], None)], [(pair[1], None)]]
    rows, at, stop = cut
    return [[(small, None), (large, (rows, 0, at))], [(large, (rows, at, stop))]]


# What one of a pair's threads runs, in order: ("gemm", product, block), ("epilogue", kernel), ("signal",)
# (the deferred epilogue is done) or ("wait",) (until it is).
Op = tuple
# The estimated cost of a deferred epilogue per element of its input (W2's mask, bias gradient and
# update over 256 x 512: 45-49 us on one thread).
EPILOGUE_NS_PER_ELEMENT = 0.35


def epilogue_ns(epilogue: Kernel | None) -> float:
    """The estimated one-thread time of a deferred epilogue (0 for none)."""
    return 0.0 if epilogue is None else EPILOGUE_NS_PER_ELEMENT * numel(epilogue.reduction.inputs[0].shape)


def pair_ops(items: Items, epilogue: Kernel | None) -> list[list[Op]]:
    """What each of a pair's two threads runs (`items`, from `pair_items` with the epilogue's
    `epilogue_ns`), with a deferred `epilogue` (of the step before the pair:
    `deferred_epilogues`) first on the thread of a product that depends on it (after a cut, the
    thread of the second block, unless the smaller product depends on it), and on the other
    thread a wait for it before the first product or block that depends on it.

    The epilogue's thread is item 0, which the pool's caller claims first and which runs first
    when the pool runs both items on one thread: a wait never waits for an item not started."""
    ops = [[("gemm", g, block) for g, block in item] for item in items]
    if epilogue is None:
        return ops
    bound = [not _independent(item[0][0], epilogue) for item in items]  # the first product of each thread
    if len(items[0]) == 2:  # cut: [smaller, first block], [second block]
        own = 0 if bound[0] else 1
    else:
        own = 0 if bound[0] and not bound[1] else 1
    other: list[Op] = []
    for op in ops[1 - own]:
        if not _independent(op[1], epilogue) and ("wait",) not in other:
            other.append(("wait",))
        other.append(op)
    first: list[Op] = [("epilogue", epilogue)] + ([("signal",)] if ("wait",) in other else [])
    return [first + ops[own], other]


def _cut(small: Gemm, large: Gemm, extra_ns: float = 0.0) -> Block | None:
    """(rows, cut, size): the larger product's rows (columns) [0, cut) go with the smaller one,
    or None when its work is not more than `PAIR_BALANCE` times the smaller's, is less than
    `PAIR_CUT_MIN_NS` or it has no cut.

    Along the dim whose shared operand is the smaller (as `blas.gemm_split`: a block of rows
    packs op(B) again, one of columns op(A)); in a template never along a symbolic dim, whose
    size the nominal build's cut would not fit, so along the other dim or not at all.
    """
    node = large.node
    share = (work_ns(small) - extra_ns) / max(work_ns(large), 1.0)  # the smaller's work net of the other side's extra
    if node.shape[:-2] or share * PAIR_BALANCE >= 1.0 or work_ns(large) < PAIR_CUT_MIN_NS:
        return None
    m, n = node.shape
    k = node.inputs[0].shape[-1]
    dims = [rows for rows in (m * k > k * n, m * k <= k * n)  # rows first when that repacks less
            if not templating() or (m if rows else n) < _SYMBOLIC_AT]
    if not dims:
        return None
    size = m if dims[0] else n
    cut = round(size * (1.0 - share) / 2 / PAIR_CUT_ALIGN) * PAIR_CUT_ALIGN
    return (dims[0], cut, size) if PAIR_MIN_BLOCK <= cut <= size - PAIR_MIN_BLOCK else None


def blocked(g: Gemm, items: Items) -> bool:
    """Whether `items` cut product `g` in blocks."""
    return any(h is g and block is not None for item in items for h, block in item)
