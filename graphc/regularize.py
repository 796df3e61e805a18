"""`gc.nn.dropout`: in-graph dropout with a training switch (re-exported by graphc/nn.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import bool_, is_float, shape_str
from .errors import DTypeError, GraphcError, user_location
from .ir.composite import composite
from .ir.graph import Tensor
from .ops import elementwise as ew
from .ops.core import as_tensor
from .random import uniform

__all__ = ["dropout"]


def check_training(fn: str, training: Any, x: Tensor) -> bool | Tensor:
    """`training` as a Python bool or a scalar bool tensor; anything else is a clear error."""
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    if isinstance(training, Tensor) and training.dtype == bool_ and training.shape == ():
        return training
    got = (f"a {training.dtype}{shape_str(training.shape)} tensor" if isinstance(training, Tensor)
           else repr(training))
    raise GraphcError(f"{fn}: training must be a Python bool or a scalar bool tensor (e.g. "
                      f"gc.placeholder(gc.bool_, ())), got {got} (x: {x.dtype}{shape_str(x.shape)})\n  at "
                      f"{user_location()}")


@composite
def dropout(x: Any, rate: float, training: bool | Tensor = True, seed: int | None = None) -> Tensor:
    """Zero each element of x with probability `rate` and scale the rest by 1 / (1 - rate).

    `training` is a Python bool (False: x itself, the inference graph) or a scalar bool
    tensor such as a placeholder (one graph for both: ``where(training, dropped, x)``).
    The mask is drawn in the graph (`gc.random.uniform`, fresh every run); the gradient
    goes through the same mask. `rate` is a Python number in [0, 1) (tf.nn.dropout's).
    """
    t = as_tensor(x)
    if t.dtype is None or not is_float(t.dtype):
        raise DTypeError(f"dropout: x must be floating point, got {t.dtype}{shape_str(t.shape)}\n  at "
                         f"{user_location()}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or not 0 <= rate < 1:
        raise GraphcError(f"dropout: rate must be a number in [0, 1), got {rate!r} (x: {t.dtype}"
                         f"{shape_str(t.shape)})\n  at {user_location()}")
    training = check_training("dropout", training, t)
    if training is False or rate == 0:
        return t
    keep = ew.greater_equal(uniform(t, np.float32, seed=seed), np.float32(rate))
    dropped = ew.where(keep, t * (1.0 / (1.0 - float(rate))), 0.0)
    return dropped if training is True else ew.where(training, dropped, t)
