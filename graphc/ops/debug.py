"""Debugging ops (kind HOST): identities that call back into the host when the program runs them.

* ``print(x, message, summarize)`` writes the message and x's value to stdout, as
  ``jax.debug.print`` does (TensorFlow's ``tf.print`` writes to stderr), and returns x.
* ``check_numerics(x, message)`` returns x, or stops the run with `NumericsError` (naming
  the op, the user's line and the message) when x holds a NaN or an infinity. A stopped run
  returns nothing and changes no variable: the LLVM backend writes variables only after
  every host call (docs/runtime.md).

What the program does with the value is the OpDef's `host` rule, ``host(node, value)``: the
reference interpreter calls it after computing the node, compiled programs through a
callback (`graphc.backend.llvm.host`), exported libraries through the C wrapper's own
(`graphc.backend.llvm.capi`). Derivatives pass through unchanged, as for ``identity``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..dtypes import shape_str
from ..errors import DTypeError, GraphcError, NumericsError, user_location
from ..ir.graph import Tensor
from .core import as_tensor
from .registry import OpDef, OpKind, register

__all__ = ["check_numerics", "print"]


def _same_type(inputs: tuple, attrs: dict):
    (x,) = inputs
    if x.dtype is None:
        raise DTypeError("needs a value, not an op")
    return x.shape, x.dtype


def _float_type(inputs: tuple, attrs: dict):
    shape, dtype = _same_type(inputs, attrs)
    if dtype.kind != "f":
        raise DTypeError(f"checks float tensors, not {dtype}")
    return shape, dtype


def format_value(value: np.ndarray, summarize: int) -> str:
    """x as print shows it: numpy's layout with the first and last `summarize` entries of each
    dim (all of them when `summarize` is negative), as TensorFlow's ``summarize``."""
    if summarize < 0:
        return np.array2string(value, threshold=sys.maxsize, separator=" ")
    return np.array2string(value, threshold=0, edgeitems=summarize, separator=" ")


def _print_host(node: Tensor, value: np.ndarray) -> None:
    text = format_value(value, node.attrs["summarize"])
    message = node.attrs["message"]
    sys.stdout.write(f"{message} {text}\n" if message else f"{text}\n")
    sys.stdout.flush()


def check_finite(x: Tensor, value: np.ndarray, message: str, loc: str) -> None:
    """Raise NumericsError naming x's op, `message` and `loc` unless every entry of `value` is finite."""
    if np.isfinite(value).all():
        return
    nans, infs = int(np.isnan(value).sum()), int(np.isinf(value).sum())
    raise NumericsError(f"check_numerics: {message}: {x.name} (op {x.op}, {x.dtype}{shape_str(x.shape)}) has "
                        f"{nans} NaN and {infs} Inf values\n  at {loc}")


def _check_host(node: Tensor, value: np.ndarray) -> None:
    check_finite(node.inputs[0], value, node.attrs["message"], node.loc)


def _identity_vjp(g, out, x, **attrs):
    return (g,)


def _identity_jvp(t, out, x, **attrs):
    return t[0]


register(OpDef("print", OpKind.HOST, _same_type, ref=lambda x, **attrs: x.copy(), vjp=_identity_vjp,
               jvp=_identity_jvp, effect=True, host=_print_host, attrs={"message": "str", "summarize": "int"},
               arity=(1, 1), doc="x; prints the message and x when the program runs it"))
register(OpDef("check_numerics", OpKind.HOST, _float_type, ref=lambda x, **attrs: x.copy(), vjp=_identity_vjp,
               jvp=_identity_jvp, effect=True, host=_check_host, attrs={"message": "str"}, arity=(1, 1),
               doc="x; stops the run with NumericsError when x has a NaN or Inf"))


def print(x: Any, message: str = "", summarize: int = 3) -> Tensor:  # noqa: A001  (gc.print, as tf.print)
    """x, printed to stdout with `message` each time the program computes it (``summarize``:
    entries shown at each end of every dim; -1 shows all). Use the result, or DCE drops it."""
    if isinstance(summarize, bool) or not isinstance(summarize, (int, np.integer)) or summarize == 0 or summarize < -1:
        raise GraphcError(f"print: summarize is a count of entries >= 1, or -1 for all, not {summarize!r}\n"
                          f"  at {user_location()}")
    t = as_tensor(x)
    return t.graph.make("print", (t,), {"message": str(message), "summarize": int(summarize)})


def check_numerics(x: Any, message: str = "") -> Tensor:
    """x; a run in which x holds a NaN or an infinity stops with `gc.NumericsError`, changing no
    output and no variable. Use the result, or DCE drops the check."""
    t = as_tensor(x)
    return t.graph.make("check_numerics", (t,), {"message": str(message)})
