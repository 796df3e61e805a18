"""Imports every op family so that each registers its declarations (and Tensor gets its operators)."""

from . import core, create, elementwise, linalg, methods, reduce, shape, state  # noqa: F401
