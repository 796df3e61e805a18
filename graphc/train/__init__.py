"""Training: optimizers, initializers, variable collections and minibatches.

``gc.train.Adam(1e-3).minimize(loss)`` builds a train op; ``gc.init.glorot_uniform(shape, seed=0)``
gives initial values; ``gc.train.batches(X, y, batch_size=32)`` iterates minibatches; ``gc.train.Saver()`` saves and
restores variable values.
"""

from typing import Any

from . import init
from .data import Batches, batches
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSProp
from .variables import global_variables, global_variables_initializer, trainable_variables, variables_initializer

__all__ = ["SGD", "Adam", "AdamW", "Batches", "Optimizer", "RMSProp", "Saver", "batches", "global_variables",
           "global_variables_initializer", "init", "trainable_variables", "variables_initializer"]


def __getattr__(name: str) -> Any:
    if name == "Saver":  # loads on first use (its checkpoint files need tempfile, hashlib, json)
        from .saver import Saver

        return Saver
    raise AttributeError(f"module 'graphc.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
