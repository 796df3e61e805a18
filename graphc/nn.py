"""`gc.nn`: neural-network composites (softmax, log_softmax, losses).

Every function here is built from primitive ops, so gradients, JVPs and fusion come
for free. Softmax-style functions subtract the slice maximum (a constant to autodiff)
before exponentiating, so logits of any finite magnitude give finite results.

Losses take ``reduction``: "mean" (default; the mean over every example, also over dims
that are None until run time), "sum", or "none" (one loss per example, as TensorFlow's
``*_with_logits`` functions return).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import bool_, is_float, is_int, normalize_axes, shape_str
from .errors import ShapeError
from .ir.composite import composite
from .ir.graph import Tensor
from .ir.naming import add_names
from .ops import elementwise as ew
from .ops import shape as shp
from .ops.conv import conv1d, conv2d, conv2d_transpose
from .ops.core import as_tensor, promote
from .ops.pool import avg_pool2d, global_avg_pool2d, max_pool2d
from .ops.reduce import max as reduce_max
from .ops.reduce import mean, sum
from .ops.state import stop_gradient

# Builders defined in other modules, loaded on first use (`__getattr__`, PEP 562): gc.nn's own
# functions do not need those modules (docs/architecture.md, "What `import graphc` loads").
_ELSEWHERE = ("dense", "batch_norm", "update_ops", "dropout", "layer_norm", "rms_norm", "scaled_dot_product_attention",
              "embedding")
__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "sigmoid_cross_entropy", "mse", "conv1d", "conv2d",
           "conv2d_transpose", "max_pool2d", "avg_pool2d", "global_avg_pool2d", *_ELSEWHERE]

REDUCTIONS = ("mean", "sum", "none")


def _floating(*values: Any) -> tuple[Tensor, ...]:
    """Operands promoted to one dtype; integer and bool operands compute in float64."""
    ts = promote(*values)
    if not is_float(ts[0].dtype):
        ts = tuple(ew.cast(t, np.float64) for t in ts)
    return ts


def _with_target(x: Tensor, target: Any) -> tuple[Tensor, Tensor]:
    """x and the target in one float dtype; non-tensor targets take x's dtype."""
    if isinstance(target, Tensor):
        return _floating(x, target)
    return x, as_tensor(target, dtype=x.dtype, graph=x.graph)


def _shifted(x: Tensor, axes: tuple[int, ...]) -> Tensor:
    """x minus its (gradient-stopped) max over axes; x itself when the axes are empty."""
    if any(x.shape[a] == 0 for a in axes):
        return x
    return x - stop_gradient(reduce_max(x, axes, keepdims=True))


@composite
def softmax(x: Any, axis: Any = -1) -> Tensor:
    """exp(x) / sum(exp(x)) over `axis`, stable for large |x|."""
    (t,) = _floating(x)
    axes = normalize_axes(axis, t.ndim)
    e = ew.exp(_shifted(t, axes))
    return e / sum(e, axes, keepdims=True)


@composite
def log_softmax(x: Any, axis: Any = -1) -> Tensor:
    """x - logsumexp(x) over `axis`, stable for large |x|."""
    (t,) = _floating(x)
    axes = normalize_axes(axis, t.ndim)
    s = _shifted(t, axes)
    return s - ew.log(sum(ew.exp(s), axes, keepdims=True))


def _reduce_loss(per_example: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(per_example)
    if reduction == "sum":
        return sum(per_example)
    return per_example


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _is_integer(value: Any) -> bool:
    if isinstance(value, Tensor):
        return is_int(value.dtype)
    return np.asarray(value).dtype.kind in "iu"


def _label_mask(labels: Any, logits: Tensor, axis: int) -> Tensor:
    """Integer class labels as a bool mask shaped like logits (True at the label's class)."""
    (idx,) = promote(labels)
    batch = logits.shape[:axis] + logits.shape[axis + 1:]
    if idx.ndim != len(batch) or any(a is not None and b is not None and a != b for a, b in zip(idx.shape, batch)):
        raise ShapeError(f"softmax_cross_entropy: integer labels of shape {shape_str(idx.shape)} do not match "
                         f"logits {shape_str(logits.shape)} without the class axis {axis} ({shape_str(batch)})")
    depth = logits.shape[axis]
    if depth is None:
        raise ShapeError(f"softmax_cross_entropy: integer labels need a known number of classes, logits are "
                         f"{shape_str(logits.shape)} with class axis {axis} (use probability labels instead)")
    return shp.one_hot(idx, depth, dtype=bool_, axis=axis)


@composite
def softmax_cross_entropy(logits: Any, labels: Any, axis: int = -1, reduction: str = "mean") -> Tensor:
    """Cross-entropy between softmax(logits) and `labels` along the class `axis`.

    `labels` are either integer class indices, shaped like logits without the class axis
    (an index outside [0, depth) selects no class and gives a loss of 0), or class
    probabilities shaped like (or broadcastable to) logits. Returns the mean loss over all
    examples by default; ``reduction="sum"`` sums it and ``reduction="none"`` returns the
    per-example losses (TF's softmax_cross_entropy_with_logits). Entries whose target
    weight is 0 contribute exactly 0, even when their logit is -inf.
    """
    _check_reduction("softmax_cross_entropy", reduction)
    (x,) = _floating(logits)
    (ax,) = normalize_axes(axis, x.ndim)
    lsm = log_softmax(x, ax)
    if _is_integer(labels):
        per = -sum(ew.where(_label_mask(labels, x, ax), lsm, 0), ax)
    else:
        x, z = _with_target(x, labels)
        per = -sum(ew.where(ew.equal(z, 0), 0, z * lsm), ax)
    return _reduce_loss(per, reduction)


@composite
def sigmoid_cross_entropy(logits: Any, labels: Any, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of sigmoid(logits) against targets z in [0, 1], elementwise.

    Uses the stable form max(x, 0) - x*z + log1p(exp(-|x|)); mean over all elements by
    default (``reduction="sum"`` or ``"none"`` for the elementwise losses).
    """
    _check_reduction("sigmoid_cross_entropy", reduction)
    x, z = _with_target(*_floating(logits), labels)
    per = ew.maximum(x, 0) - x * z + ew.log1p(ew.exp(-ew.abs(x)))
    return _reduce_loss(per, reduction)


@composite
def mse(pred: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Squared error (pred - target)**2, averaged over all elements by default."""
    _check_reduction("mse", reduction)
    p, t = _with_target(*_floating(pred), target)
    d = p - t
    return _reduce_loss(d * d, reduction)


add_names(globals(), [n for n in __all__ if n not in _ELSEWHERE])  # name= on every builder (graphc/ir/naming.py)


def __getattr__(name: str) -> Any:
    """A builder of `_ELSEWHERE`, imported (and given ``name=``) on first use."""
    if name in ("scaled_dot_product_attention", "embedding"):
        from . import attention as module
    elif name == "dense":  # creates variables, so it lives in graphc/layers.py
        from . import layers as module
    elif name in ("batch_norm", "update_ops"):
        from . import layers_conv as module
    elif name in ("layer_norm", "rms_norm"):
        from . import normalization as module
    elif name == "dropout":  # in-graph randomness (graphc/random.py)
        from . import regularize as module
    else:
        raise AttributeError(f"module 'graphc.nn' has no attribute {name!r}")
    globals()[name] = getattr(module, name)
    add_names(globals(), [name])
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
