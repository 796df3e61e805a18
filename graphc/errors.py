"""Error types, and the helper that names the user's source line in messages."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class ShapeError(GraphcError, ValueError):
    """Operand shapes that an op cannot accept."""


class DTypeError(GraphcError, TypeError):
    """Operand dtypes that an op cannot accept."""


class FeedError(GraphcError, ValueError):
    """A feed_dict that does not match the graph's placeholders."""


class CheckpointError(GraphcError):
    """A checkpoint file that is unreadable, corrupted, or does not match the variables."""


class UsageError(GraphcError):
    """A mistake in a `graphc` command line or its target (printed as one line)."""


class DistributedError(GraphcError):
    """A collective across MPI ranks failed: a rank died, hung or built a different program."""


class NumericsError(GraphcError, ArithmeticError):
    """gc.check_numerics (or CompileOptions(check_numerics=True)) found a NaN or Inf; the run stopped."""


class ResourceExhaustedError(GraphcError, MemoryError):
    """A run's arrays (outputs, workspace, a feed's copy) could not be allocated (TF1's name)."""


def out_of_memory(what: str, exc: MemoryError) -> MemoryError:
    """numpy's raw MemoryError of a run as a ResourceExhaustedError saying where it happened."""
    if isinstance(exc, GraphcError):
        return exc
    return ResourceExhaustedError(f"{what}: out of memory: {exc or 'an allocation failed'} (graphc checks "
                                  "sizes against the index type, not against the free memory)")


class Float64Warning(UserWarning):
    """float64 entered float32 arithmetic (numpy's promotion), and `gc.enable_x64` is off."""


_OURS: dict[str, bool] = {}  # an absolute source file name -> whether it is in the graphc package


def user_location() -> str:
    """Return "file:line" of the innermost stack frame outside the graphc package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        ours = _OURS.get(filename)
        if ours is None:  # (a relative name depends on the working directory: not remembered)
            ours = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
            if os.path.isabs(filename):
                _OURS[filename] = ours
        if not ours:
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"
