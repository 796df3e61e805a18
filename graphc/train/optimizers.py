"""Gradient-descent optimizers, TensorFlow 1 style: `minimize` returns one train op.

Running the train op reads every variable and slot at its start-of-run value and assigns
all new values (and the step counter) together at the end of the run, so fetching
``[loss, train_op]`` gives the loss before the update. Slots (momentum buffers, Adam
moments) and the step counter are non-trainable session variables; run
``gc.global_variables_initializer()`` to reset them.

The update formulas are PyTorch's (``torch.optim``), written out in each class docstring;
``t`` is the 1-based step number and ``g`` the (optionally clipped) gradient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..autodiff.clip import clip_by_global_norm
from ..autodiff.reverse import gradients
from ..errors import GraphcError
from ..ir.graph import Graph, Tensor
from ..ops.core import Variable
from ..ops.elementwise import cast, sqrt
from ..ops.state import assign, group
from .variables import trainable_variables

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSProp"]

GradsAndVars = list[tuple[Tensor | None, Tensor]]
Hyper = float | Tensor  # a Python number or a scalar tensor (e.g. a placeholder for a schedule)


class Optimizer(ABC):
    """Base class: a subclass names its slots and builds one variable's update."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, lr: Hyper, name: str):
        _check_hyper("lr", lr, positive=True)
        self.lr = lr
        self.name = name
        self._slots: dict[Tensor, dict[str, Tensor]] = {}
        self._steps: dict[Graph, Tensor] = {}

    def compute_gradients(self, loss: Tensor, var_list: list[Tensor] | None = None) -> GradsAndVars:
        """[(gradient or None, variable)] of `loss` for var_list (default: the trainable variables)."""
        if not isinstance(loss, Tensor) or loss.dtype is None or loss.dtype.kind != "f":
            raise GraphcError(f"minimize needs a floating-point loss tensor, got {loss!r}")
        if var_list is None:
            var_list = trainable_variables(loss.graph)
        var_list = list(var_list)
        if not var_list:
            raise GraphcError("no variables to optimize (no trainable variables in the loss's graph)")
        for v in var_list:
            if not isinstance(v, Tensor) or v.op != "variable":
                raise GraphcError(f"{self.name}: {v!r} is not a Variable")
        if len(set(var_list)) != len(var_list):
            raise GraphcError(f"{self.name}: var_list names a variable twice")
        grads = gradients(loss, var_list)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars: GradsAndVars, name: str | None = None) -> Tensor:
        """One op applying every update and incrementing the step counter; None gradients are skipped."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            raise GraphcError(f"{self.name}: no gradients to apply (no variable is connected to the loss)")
        seen: set[Tensor] = set()
        for g, v in pairs:
            if v in seen:
                raise GraphcError(f"{self.name}: variable {v.name} has two gradients")
            seen.add(v)
            if v.dtype.kind != "f":
                raise GraphcError(f"{self.name}: cannot optimize non-float variable {v.name} ({v.dtype})")
            if g.shape != v.shape or g.dtype != v.dtype:
                raise GraphcError(f"{self.name}: gradient {g!r} does not match variable {v!r}")
        graph = pairs[0][1].graph
        step = self.step_variable(graph)
        t = step + 1
        assigns = []
        for g, v in pairs:
            slots = self._slots_for(v)
            new_value, new_slots = self._update(v, g, slots, t)
            assigns.append(assign(v, new_value))
            assigns.extend(assign(slots[k], new_slots[k]) for k in self.slot_names if k in new_slots)
        assigns.append(assign(step, t))
        return group(*assigns, name=name or self.name)

    def minimize(self, loss: Tensor, var_list: list[Tensor] | None = None, clip_norm: float | None = None,
                 name: str | None = None) -> Tensor:
        """The train op for `loss`; with clip_norm the gradients are clipped by their global norm first."""
        pairs = self.compute_gradients(loss, var_list)
        if clip_norm is not None:
            connected = [i for i, (g, _) in enumerate(pairs) if g is not None]
            clipped, _ = clip_by_global_norm([pairs[i][0] for i in connected], clip_norm)
            for i, g in zip(connected, clipped):
                pairs[i] = (g, pairs[i][1])
        return self.apply_gradients(pairs, name=name)

    def step_variable(self, graph: Graph) -> Tensor:
        """The int64 counter of applied steps in `graph` (0 before the first step)."""
        step = self._steps.get(graph)
        if step is None:
            with graph.as_default():
                step = Variable(np.int64(0), name=f"{self.name}/step", trainable=False)
            self._steps[graph] = step
        return step

    def get_slot(self, var: Tensor, slot: str) -> Tensor:
        """The slot variable `slot` of `var` (created by apply_gradients)."""
        try:
            return self._slots[var][slot]
        except KeyError:
            raise GraphcError(f"{self.name} has no slot {slot!r} for {var.name}") from None

    def _slots_for(self, var: Tensor) -> dict[str, Tensor]:
        slots = self._slots.get(var)
        if slots is None:
            with var.graph.as_default():
                slots = {s: Variable(np.zeros(var.shape, var.dtype), name=f"{var.name}/{self.name}/{s}",
                                        trainable=False) for s in self.slot_names}
            self._slots[var] = slots
        return slots

    @abstractmethod
    def _update(self, var: Tensor, g: Tensor, slots: dict[str, Tensor], t: Tensor) -> tuple[Tensor, dict]:
        """(new value of var, {slot name: new slot value}) given gradient g at 1-based step t."""


def _check_hyper(name: str, value: Any, *, positive: bool = False, below_one: bool = False) -> None:
    if isinstance(value, Tensor):
        if value.shape != () or value.dtype is None or value.dtype.kind != "f":
            raise GraphcError(f"hyperparameter {name} must be a float scalar tensor, got {value!r}")
        return
    v = float(value)
    if v < 0 or (positive and v == 0) or (below_one and v >= 1):
        bound = "in [0, 1)" if below_one else ("> 0" if positive else ">= 0")
        raise ValueError(f"hyperparameter {name} must be {bound}, got {value}")


def _hyper(value: Hyper, dtype: np.dtype) -> Hyper:
    """A hyperparameter in the variable's dtype (Python numbers stay weak scalars)."""
    if isinstance(value, Tensor) and value.dtype != dtype:
        return cast(value, dtype)
    return value


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    Without momentum: ``p -= lr * g``. With momentum ``mu``: ``b = mu * b + g``, then
    ``p -= lr * b``, or with Nesterov ``p -= lr * (g + mu * b)`` (TF1's MomentumOptimizer
    computes the same values).
    """

    def __init__(self, lr: Hyper, momentum: float = 0.0, nesterov: bool = False, name: str = "SGD"):
        super().__init__(lr, name)
        _check_hyper("momentum", momentum, below_one=True)
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    def _update(self, var, g, slots, t):
        lr = _hyper(self.lr, var.dtype)
        if not self.momentum:
            return var - lr * g, {}
        buf = self.momentum * slots["momentum"] + g
        direction = g + self.momentum * buf if self.nesterov else buf
        return var - lr * direction, {"momentum": buf}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, as ``torch.optim.Adam``.

    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
    ``p -= lr/(1-b1**t) * m / (sqrt(v)/sqrt(1-b2**t) + eps)``, i.e. lr * m_hat / (sqrt(v_hat) + eps).
    (TF1's AdamOptimizer puts eps outside the bias correction of v instead.)
    """

    slot_names = ("m", "v")

    def __init__(self, lr: Hyper = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 name: str = "Adam"):
        super().__init__(lr, name)
        for key, value in (("beta1", beta1), ("beta2", beta2)):
            _check_hyper(key, value, below_one=True)
        _check_hyper("eps", eps)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _decayed(self, var: Tensor) -> Tensor:
        return var

    def _update(self, var, g, slots, t):
        b1, b2 = self.beta1, self.beta2
        m = b1 * slots["m"] + (1.0 - b1) * g
        v = b2 * slots["v"] + (1.0 - b2) * (g * g)
        # Bias corrections in float64, as PyTorch computes them in Python floats: in float32,
        # 1 - 0.999**t would carry a relative error of ~1e-5.
        t64 = cast(t, np.float64)
        step_size = _hyper(self.lr, var.dtype) * cast(1.0 / (1.0 - b1 ** t64), var.dtype)
        denom = sqrt(v) / cast(sqrt(1.0 - b2 ** t64), var.dtype) + self.eps
        return self._decayed(var) - step_size * (m / denom), {"m": m, "v": v}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``.

    ``p = p * (1 - lr*weight_decay)``, then the Adam step of `Adam` (from the decayed p).
    """

    def __init__(self, lr: Hyper = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 1e-2, name: str = "AdamW"):
        super().__init__(lr, beta1, beta2, eps, name=name)
        _check_hyper("weight_decay", weight_decay)
        self.weight_decay = float(weight_decay)

    def _decayed(self, var: Tensor) -> Tensor:
        if not self.weight_decay:
            return var
        return var * (1.0 - _hyper(self.lr, var.dtype) * self.weight_decay)


class RMSProp(Optimizer):
    """RMSProp (Hinton 2012), as ``torch.optim.RMSprop`` (`rho` is PyTorch's ``alpha``).

    ``s = rho*s + (1-rho)*g**2``; centered: ``a = rho*a + (1-rho)*g`` and ``d = sqrt(s - a**2) + eps``,
    else ``d = sqrt(s) + eps``. Without momentum ``p -= lr * g/d``; with momentum ``mu``:
    ``b = mu*b + g/d`` and ``p -= lr * b``. (TF1's RMSPropOptimizer puts eps inside the sqrt.)
    """

    def __init__(self, lr: Hyper = 1e-2, rho: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, name: str = "RMSProp"):
        super().__init__(lr, name)
        _check_hyper("rho", rho, below_one=True)
        _check_hyper("eps", eps)
        _check_hyper("momentum", momentum, below_one=True)
        self.rho, self.eps, self.momentum, self.centered = float(rho), float(eps), float(momentum), bool(centered)
        self.slot_names = ("s",) + (("a",) if self.centered else ()) + (("momentum",) if self.momentum else ())

    def _update(self, var, g, slots, t):
        rho = self.rho
        new = {"s": rho * slots["s"] + (1.0 - rho) * (g * g)}
        if self.centered:
            new["a"] = rho * slots["a"] + (1.0 - rho) * g
            denom = sqrt(new["s"] - new["a"] * new["a"]) + self.eps
        else:
            denom = sqrt(new["s"]) + self.eps
        lr = _hyper(self.lr, var.dtype)
        if not self.momentum:
            return var - lr * (g / denom), new
        new["momentum"] = self.momentum * slots["momentum"] + g / denom
        return var - lr * new["momentum"], new
