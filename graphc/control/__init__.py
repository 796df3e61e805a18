"""Control flow: regions in the IR (graphc/ir/region.py) and the ops and API built on them."""

from .api import cond, fori_loop, scan, while_loop

__all__ = ["cond", "fori_loop", "scan", "while_loop"]
