"""Op declarations: one `OpDef` per primitive op, in one registry.

An OpDef holds everything graphc knows about an op: its type rule, its numpy
reference implementation, its VJP and JVP rules (which build graph nodes), and how
it lowers to loops (`kind` plus `scalar`, `gather` or `reduce`), and the facts passes
and backends ask about it (`commutative`, `effect`, `heavy`, `carries`), and its
attributes with their types (`attrs`, see `graphc.ops.attrtypes`; checked on every new
node, so a loaded file passes the same checks as user code): a new op declares
everything about itself here, and no pass keeps a list of op names.

Rule signatures (fixed; autodiff and the backends rely on them):

* ``infer(inputs, attrs) -> (shape, dtype)``; raise ShapeError/DTypeError with a short
  reason, `infer_type` adds the op name, operand types and the user's source line.
* ``ref(*arrays, **attrs) -> np.ndarray`` computes the op with numpy.
* ``vjp(g, out, *inputs, **attrs) -> tuple`` of one cotangent per input (None = zero).
  A cotangent may have the broadcast output's shape; autodiff sums it back.
* ``jvp(tangents, out, *inputs, **attrs) -> Tensor | None`` where ``tangents`` has one
  entry per input (None = zero tangent).
* ``scalar(s, *values, **attrs)`` (kind ELEMENTWISE) evaluates one element with a
  `graphc.ops.scalar.Emitter` ``s``; inputs are read at their broadcast index.
* ``gather(s, idx, load, node)`` (kind INDEX) evaluates one output element at
  integer index values ``idx`` (one per output dim) via ``load(i, index_tuple)``,
  which reads input ``i``. Indices passed to ``load`` must be in bounds.
* ``reduce`` (kind REDUCE) names the combiner: sum, prod, max, min, argmax, argmin;
  the node's ``axes`` and ``keepdims`` attributes give the reduced axes.
* Kind LAPACK ops lower to LAPACK calls, one per matrix of the batch
  (`graphc.backend.llvm.lapack` holds one emitter per op).
* ``host(node, value)`` (kind HOST) is what the program does with the (identity) op's value
  when it runs it; raising stops the run (`graphc.ops.debug`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..dtypes import SUPPORTED, Shape, check_size, shape_str
from ..errors import DTypeError, GraphcError, ShapeError
from ..ir.composite import current_composite
from .attrtypes import Arity, check_declaration, derive_arity


class OpKind(str, Enum):
    """How an op computes, which decides how passes and backends treat it.

    A `str` enum: ``OpKind.ELEMENTWISE == "elementwise"``, and `OpDef` accepts the string.
    """

    SOURCE = "source"  # placeholder, constant, variable: no inputs, the value comes from outside
    ELEMENTWISE = "elementwise"  # `scalar` form on broadcast operands
    REDUCE = "reduce"  # `reduce` combiner over the node's axes
    INDEX = "index"  # `gather` form: each output element reads inputs at computed indices
    MATMUL = "matmul"  # a GEMM
    LAPACK = "lapack"  # LAPACK calls, one per matrix of the batch (graphc.backend.llvm.lapack)
    STATE = "state"  # assign: a variable's new value
    CONTROL = "control"  # group: no value, runs its inputs
    COLLECTIVE = "collective"  # MPI allreduce/allgather/broadcast across ranks (gc.distributed)
    HOST = "host"  # an identity whose value the program hands to the host (`host` rule): print, check_numerics
    REGION = "region"  # owns sub-graphs (cond, scan, while_loop: graphc.ir.region), or reads their results

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class OpDef:
    """Everything about one primitive op (see the module docstring for rule signatures).

    Facts: `commutative` (binary, operands may swap: CSE orders them, patterns match
    either order); `effect` (changes session state, so DCE keeps it inside a group);
    `heavy` (its scalar form costs a libm-style call: the backend's cost model weighs it);
    `carries` (the input whose values the result passes on unchanged, moved, broadcast or
    selected: rewrites look through it); `speculatable` (False: its reference raises on some
    operand values, such as take's out-of-range indices, so no pass may compute it where the
    program would not, e.g. hoist it out of a loop that may run zero times); `body_consts`
    (loop ops: where the `body` region's consts sit among the operands, as (the attribute
    counting them, their first operand: an index or the attribute holding it)); `row_major`
    (index ops: the result is the input's elements in the same row-major order, only the
    shape differs, so the backend reads a dense input's buffer as it is even where the
    gather is not affine, e.g. merging dims);
    `results` (the op has several results, of these types: its node's value is a tuple,
    which ``result`` nodes read one by one; its VJP receives a list of cotangents, None =
    zero, and its JVP returns a tuple of tangents).
    """

    name: str
    kind: OpKind
    infer: Callable[[tuple, dict], tuple[Shape, np.dtype | None]]
    ref: Callable[..., Any] | None = None
    vjp: Callable[..., tuple] | None = None
    jvp: Callable[..., Any] | None = None
    scalar: Callable[..., Any] | None = None
    gather: Callable[..., Any] | None = None
    reduce: str | None = None
    canon: Callable[[tuple, dict], dict] | None = None  # normalises user attrs (e.g. axis)
    shape_only: tuple[int, ...] = ()  # inputs read only for their shape, never their data
    commutative: bool = False
    effect: bool = False
    heavy: bool = False
    carries: int | None = None
    speculatable: bool = True
    body_consts: tuple[str, int | str] | None = None
    row_major: bool = False
    host: Callable[[Any, np.ndarray], None] | None = None  # kind HOST: host(node, value) when the op runs
    results: Callable[[tuple, dict], list[tuple[Shape, np.dtype]]] | None = None  # several results
    attrs: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)  # name -> type
    arity: Arity | None = None  # (min, max) inputs, max None = any; derived from scalar/ref if None
    doc: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", OpKind(self.kind))
        except ValueError:
            raise GraphcError(f"op {self.name!r}: unknown kind {self.kind!r}") from None
        check_declaration(self.name, self.attrs)
        if self.arity is None:
            object.__setattr__(self, "arity", derive_arity(self.kind.value, self.scalar, self.ref))

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    @property
    def regions(self) -> tuple[str, ...]:
        """The names of the op's region attributes, in declaration order (kind region)."""
        return tuple(name for name, ty in self.attrs.items() if ty == "region")


_REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    """Add an op declaration; names are unique."""
    if opdef.name in _REGISTRY:
        raise GraphcError(f"op {opdef.name!r} is declared twice")
    if opdef.kind is OpKind.ELEMENTWISE and opdef.scalar is None:
        raise GraphcError(f"elementwise op {opdef.name!r} needs a scalar form")
    if opdef.kind is OpKind.INDEX and opdef.gather is None:
        raise GraphcError(f"index op {opdef.name!r} needs a gather form")
    if opdef.kind is OpKind.REDUCE and opdef.reduce is None:
        raise GraphcError(f"reduce op {opdef.name!r} needs a combiner")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphcError(f"unknown op {name!r}") from None


def all_ops() -> dict[str, OpDef]:
    """Every registered op, by name (sorted); `import graphc` registers them all (ops/catalog.py)."""
    return dict(sorted(_REGISTRY.items()))


def describe_operands(inputs: tuple) -> str:
    return ", ".join(f"{t.name}: {t.dtype}{shape_str(t.shape)}" for t in inputs)


def located(opdef: OpDef, inputs: tuple, loc: str, exc: ShapeError | DTypeError) -> ShapeError | DTypeError:
    """`exc` again, naming the op, its operands and the user's line."""
    detail = f" with operands {describe_operands(inputs)}" if inputs else ""
    outer = current_composite()
    name = opdef.name if outer is None or outer == opdef.name else f"{outer}: its {opdef.name}"
    return type(exc)(f"{name}{detail}: {exc}\n  at {loc}")


def canonical_attrs(opdef: OpDef, inputs: tuple, attrs: dict, loc: str) -> dict:
    """The op's attributes in canonical form (so equal ops intern to one node)."""
    if opdef.canon is None:
        return attrs
    try:
        return opdef.canon(inputs, dict(attrs))
    except (ShapeError, DTypeError) as exc:
        raise located(opdef, inputs, loc, exc) from None


def infer_type(opdef: OpDef, inputs: tuple, attrs: dict, loc: str) -> tuple[Shape, np.dtype | None]:
    """Run the op's type rule; errors name the op, its operands and the user's line.

    (Every node made runs it, and the verifier again: a try statement, not a context manager,
    which cost about 2 us a call.)"""
    try:
        shape, dtype = opdef.infer(inputs, attrs)
        check_size(shape, dtype)
    except (ShapeError, DTypeError) as exc:
        raise located(opdef, inputs, loc, exc) from None
    if dtype is not None and dtype not in SUPPORTED:
        raise DTypeError(f"{opdef.name}: result dtype {dtype} is not supported\n  at {loc}")
    return tuple(shape), dtype
