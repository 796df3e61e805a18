"""Automatic differentiation: reverse and forward mode as graph transformations."""

from .api import hessian, hessian_vector_product, jacobian
from .clip import clip_by_global_norm, clip_by_norm, global_norm
from .custom import custom_gradient
from .forward import jvp
from .reverse import gradients

__all__ = ["gradients", "jvp", "jacobian", "hessian", "hessian_vector_product", "custom_gradient",
           "clip_by_norm", "clip_by_global_norm", "global_norm"]
