"""graphc: a define-and-run automatic-differentiation compiler.

Build a graph with placeholders, variables, constants and ops; differentiate it;
run it with `Session.run`. The public names of each op family are listed in that
module's ``__all__`` and re-exported here. The namespaces and names in `_LAZY_NAMES` load on
first use (PEP 562 ``__getattr__``), so ``import graphc`` stays fast (docs/benchmarks.md, W5).
"""

import sys as _sys
from typing import Any as _Any

from .autodiff import custom_gradient, gradients, jvp
from .control import *  # noqa: F403
from .dtypes import bool_, float32, float64, int32, int64
from .errors import (
    CheckpointError,
    DistributedError,
    DTypeError,
    FeedError,
    Float64Warning,
    GraphcError,
    NumericsError,
    ResourceExhaustedError,
    ShapeError,
)
from .function import Function, function
from .ir.graph import Graph, Tensor, get_default_graph, name_scope, no_grad, reset_default_graph
from .ir.naming import NOT_BUILDERS as _NOT_BUILDERS
from .ir.naming import add_names as _add_names
from .ir.printer import as_text
from .ops import catalog as _catalog  # noqa: F401  (registers every op)
from .ops import contract as _contract
from .ops import core as _core
from .ops import create as _create
from .ops import elementwise as _elementwise
from .ops import linalg as _linalg
from .ops import rearrange as _rearrange
from .ops import reduce as _reduce
from .ops import scan as _scan
from .ops import selection as _selection
from .ops import shape as _shape
from .ops import state as _state
from .ops import ufuncs as _ufuncs
from .ops.contract import *  # noqa: F403
from .ops.core import *  # noqa: F403
from .ops.create import *  # noqa: F403
from .ops.debug import *  # noqa: F403
from .ops.elementwise import *  # noqa: F403
from .ops.linalg import *  # noqa: F403
from .ops.rearrange import *  # noqa: F403
from .ops.reduce import *  # noqa: F403
from .ops.scan import *  # noqa: F403
from .ops.selection import *  # noqa: F403
from .ops.shape import *  # noqa: F403
from .ops.state import *  # noqa: F403
from .ops.ufuncs import *  # noqa: F403
from .options import CompileOptions
from .runtime.counters import compile_count
from .runtime.session import Session
from .version import __version__

# Every public op builder takes ``name=`` (graphc/ir/naming.py); the builder namespaces
# (gc.nn, gc.linalg, gc.special, gc.random) wrap their own on import.
_OP_MODULES = (_contract, _core, _create, _elementwise, _linalg, _rearrange, _reduce, _scan, _selection, _shape,
               _state, _ufuncs)  # their builders are re-exported here
for _module in _OP_MODULES:
    _add_names(globals(), _module.__all__)
del _module

_NAMESPACES = ("distributed", "layers", "linalg", "nn", "random", "special", "train")
_AUTODIFF = ("jacobian", "hessian", "hessian_vector_product", "clip_by_norm", "clip_by_global_norm", "global_norm")
_TRAIN = ("init", "global_variables", "global_variables_initializer", "trainable_variables")
_LAZY_NAMES = (*_NAMESPACES, *_AUTODIFF, *_TRAIN, "ExportedFunction", "load_exported", "LoadedGraph", "load", "save",
               "Profile", "RunMetadata", "RunOptions", "profile")


def __getattr__(name: str) -> _Any:
    """The builder namespaces and the names below, imported on first use (PEP 562), so that
    ``import graphc`` loads only what building and running a graph needs (docs/benchmarks.md, W5)."""
    if name == "__all__":  # ``from graphc import *``: every public name, the ones loaded on first use too
        return sorted({n for n in globals() if not n.startswith("_")} | set(_LAZY_NAMES))
    if name == "_API_MODULES":  # the gc.<module> namespaces of builders
        return tuple(__getattr__(n) for n in ("nn", "linalg", "special", "random"))
    if name == "distributed":
        import graphc.distributed
    elif name == "layers":
        import graphc.layers
    elif name == "linalg":
        import graphc.linalg
    elif name == "nn":
        import graphc.nn
    elif name == "random":
        import graphc.random
    elif name == "special":
        import graphc.special
    elif name == "train":
        import graphc.train
    elif name in _AUTODIFF:
        from . import autodiff as module
    elif name in _TRAIN:
        from . import train as module
    elif name in ("ExportedFunction", "load_exported"):
        from . import export as module
    elif name in ("LoadedGraph", "load", "save"):
        from .ir import serialize as module
    elif name in ("Profile", "RunMetadata", "RunOptions"):
        from . import profiler as module
    elif name == "profile":
        from .profiler import recording as module
    else:
        raise AttributeError(f"module 'graphc' has no attribute {name!r}")
    if name in _NAMESPACES:
        return _sys.modules[f"{__name__}.{name}"]  # the import made it an attribute of graphc too
    value = globals()[name] = getattr(module, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))
