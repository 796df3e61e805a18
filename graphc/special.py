"""`gc.special`: scipy.special functions with gradients (declared in graphc/ops/special.py)."""

from .ir.naming import add_names
from .ops.elementwise import sigmoid as expit
from .ops.special import digamma, erfc, erfinv, gammaln, log_ndtr, logit, ndtr, polygamma, xlog1py, xlogy

__all__ = ["digamma", "erfc", "erfinv", "expit", "gammaln", "log_ndtr", "logit", "ndtr", "polygamma", "xlog1py",
           "xlogy"]


add_names(globals(), __all__)  # name= on every builder (graphc/ir/naming.py)
