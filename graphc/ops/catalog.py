"""Imports every op family so that each registers its declarations (and Tensor gets its operators)."""

from . import contract, core, create, elementwise, linalg, linalg_solve, methods, rearrange, reduce, scan, selection, shape, state  # noqa: F401
