"""Automatic differentiation: reverse and forward mode as graph transformations.

`jacobian`, `hessian`, `hessian_vector_product` and the gradient clipping functions load on
first use (PEP 562); `custom` registers its op on import, so it loads with the package.
"""

from typing import Any

from .custom import custom_gradient
from .forward import jvp
from .reverse import gradients

__all__ = ["gradients", "jvp", "jacobian", "hessian", "hessian_vector_product", "custom_gradient",
           "clip_by_norm", "clip_by_global_norm", "global_norm"]


def __getattr__(name: str) -> Any:
    if name in ("jacobian", "hessian", "hessian_vector_product"):
        from . import api as module
    elif name in ("clip_by_norm", "clip_by_global_norm", "global_norm"):
        from . import clip as module
    else:
        raise AttributeError(f"module 'graphc.autodiff' has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
