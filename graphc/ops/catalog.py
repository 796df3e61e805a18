"""Imports every op family so that each registers its declarations (and Tensor gets its operators)."""

from . import (  # noqa: F401
    collective,
    contract,
    conv,
    core,
    create,
    debug,
    elementwise,
    linalg,
    linalg_decomp,
    linalg_solve,
    methods,
    rearrange,
    reduce,
    scan,
    selection,
    shape,
    special,
    state,
    ufuncs,
    window,
)
