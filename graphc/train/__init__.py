"""Training: optimizers, initializers, variable collections and minibatches.

``gc.train.Adam(1e-3).minimize(loss)`` builds a train op; ``gc.init.glorot_uniform(shape, seed=0)``
gives initial values; ``gc.train.batches(X, y, batch_size=32)`` iterates minibatches; ``gc.train.Saver()`` saves and
restores variable values.
"""

from . import init
from .data import Batches, batches
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSProp
from .saver import Saver
from .variables import global_variables, global_variables_initializer, trainable_variables, variables_initializer

__all__ = ["SGD", "Adam", "AdamW", "Batches", "Optimizer", "RMSProp", "Saver", "batches", "global_variables",
           "global_variables_initializer", "init", "trainable_variables", "variables_initializer"]
