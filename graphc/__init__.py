"""graphc: a define-and-run automatic-differentiation compiler.

Build a graph with placeholders, variables, constants and ops; differentiate it;
run it with `Session.run`.
"""

from .dtypes import bool_, float32, float64, int32, int64
from .errors import DTypeError, FeedError, GraphcError, ShapeError
from .ir.graph import Graph, Tensor, get_default_graph, no_grad, reset_default_graph
from .ir.printer import as_text
from .ops import catalog as _catalog  # noqa: F401  (registers every op)
from .ops.core import Variable, constant, placeholder
from .ops.elementwise import add, cast, exp, less, multiply
from .ops.linalg import dot, matmul
from .ops.reduce import sum
from .ops.shape import broadcast_to, expand_dims, reshape, transpose
from .ops.state import assign, assign_add, assign_sub, group, identity, stop_gradient
from .runtime.session import Session

__version__ = "0.1.0"

__all__ = [
    "DTypeError", "FeedError", "Graph", "GraphcError", "Session", "ShapeError", "Tensor", "Variable",
    "add", "as_text", "assign", "assign_add", "assign_sub", "bool_", "broadcast_to", "cast", "constant", "dot",
    "exp", "expand_dims", "float32", "float64", "get_default_graph", "group", "identity", "int32", "int64",
    "less", "matmul", "multiply", "no_grad", "placeholder", "reset_default_graph", "reshape", "stop_gradient",
    "sum", "transpose",
]
