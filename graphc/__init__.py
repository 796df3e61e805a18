"""graphc: a define-and-run automatic-differentiation compiler.

Build a graph with placeholders, variables, constants and ops; differentiate it;
run it with `Session.run`. The public names of each op family are listed in that
module's ``__all__`` and re-exported here.
"""

from . import distributed, linalg, nn, special, train
from .autodiff import *  # noqa: F403
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
from .ir.graph import Graph, Tensor, get_default_graph, no_grad, reset_default_graph
from .ir.printer import as_text
from .ir.serialize import LoadedGraph, load, save
from .ops import catalog as _catalog  # noqa: F401  (registers every op)
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
from .runtime.session import Session
from .train import global_variables, global_variables_initializer, init, trainable_variables
from .version import __version__
