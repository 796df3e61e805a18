"""``graphc profile TARGET``: run a target's program with random feeds and print its profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import GraphcError
from ..ir.graph import Tensor
from ..options import CompileOptions
from .recording import profile
from .report import Profile


def random_feed(ph: Tensor, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A feed for `ph`: standard normal floats, zeros for integers (valid indices), random bools."""
    kind = np.dtype(ph.dtype).kind
    if kind == "f":
        return rng.standard_normal(shape).astype(ph.dtype)
    if kind == "b":
        return rng.random(shape) < 0.5
    return np.zeros(shape, ph.dtype)


def profile_program(fetches: Sequence[Tensor], shapes: Mapping[Tensor, tuple[int, ...]], runs: int,
                    options: CompileOptions, backend: str = "llvm") -> Profile:
    """`runs` traced runs (after one untraced warm-up run that compiles) of `fetches`."""
    from ..runtime.session import Session

    if runs < 1:
        raise GraphcError(f"--runs must be at least 1, not {runs}")
    rng = np.random.default_rng(0)
    feeds = {ph: random_feed(ph, shape, rng) for ph, shape in shapes.items()}
    with Session(fetches[0].graph, backend=backend, options=options) as sess:
        sess.run(list(fetches), feeds)
        with profile() as prof:
            for _ in range(runs):
                sess.run(list(fetches), feeds)
    return prof
