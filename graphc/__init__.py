"""graphc: a define-and-run automatic-differentiation compiler.

Build a graph with placeholders, variables, constants and ops; differentiate it;
run it with `Session.run`. The public names of each op family are listed in that
module's ``__all__`` and re-exported here.
"""

from . import distributed, layers, linalg, nn, random, special, train
from .autodiff import *  # noqa: F403
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
    ShapeError,
)
from .export import ExportedFunction, load_exported
from .function import Function, function
from .ir.graph import Graph, Tensor, get_default_graph, name_scope, no_grad, reset_default_graph
from .ir.naming import add_names as _add_names
from .ir.printer import as_text
from .ir.serialize import LoadedGraph, load, save
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
from .passes import pipeline as _pipeline  # noqa: F401  (registers every graph pass)
from .profiler import Profile, RunMetadata, RunOptions
from .profiler.recording import profile
from .runtime.counters import compile_count
from .runtime.session import Session
from .train import global_variables, global_variables_initializer, init, trainable_variables
from .version import __version__

# Every public op builder takes ``name=`` (graphc/ir/naming.py); these are not builders.
_NOT_BUILDERS = {"einsum_path", "enable_x64", "set_seed", "update_ops"}
_OP_MODULES = (_contract, _core, _create, _elementwise, _linalg, _rearrange, _reduce, _scan, _selection, _shape,
               _state, _ufuncs)  # their builders are re-exported here
_API_MODULES = (nn, linalg, special, random)  # the gc.<module> namespaces of builders
for _module in _OP_MODULES:
    _add_names(globals(), [n for n in _module.__all__ if n not in _NOT_BUILDERS])
for _module in _API_MODULES:
    _add_names(vars(_module), [n for n in _module.__all__ if n not in _NOT_BUILDERS])
del _module
