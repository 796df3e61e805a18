"""Minibatch iteration over numpy arrays, shuffled reproducibly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Batches", "batches"]


class Batches:
    """Re-iterable minibatches of aligned arrays; each pass over it is one epoch.

    With ``shuffle=True`` every epoch uses a new permutation drawn from one
    ``np.random.Generator(np.random.PCG64(seed))``, so the sequence of epochs is the same
    on every run. A pass yields one array per batch when built from one array, else a tuple.
    """

    def __init__(self, arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int | None,
                 drop_last: bool):
        if not arrays:
            raise ValueError("batches() needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"batches(): arrays have different lengths {[len(a) for a in self.arrays]}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n = lengths.pop()
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Any]:
        order = self._rng.permutation(self.n) if self.shuffle else None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(self.n, (b + 1) * self.batch_size)
            if order is None:
                parts = tuple(a[lo:hi] for a in self.arrays)
            else:
                idx = order[lo:hi]
                parts = tuple(a[idx] for a in self.arrays)
            yield parts[0] if len(parts) == 1 else parts


def batches(*arrays: Any, batch_size: int, shuffle: bool = True, seed: int | None = 0,
            drop_last: bool = False) -> Batches:
    """Minibatches of `arrays` (aligned along axis 0); iterate once per epoch.

    ``for xb, yb in gc.train.batches(X, y, batch_size=32, seed=0): ...``. The last batch is
    smaller unless ``drop_last``. Slices of unshuffled batches are views of the input.
    """
    return Batches(arrays, batch_size, shuffle, seed, drop_last)
