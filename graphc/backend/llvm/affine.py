"""Affine integer index expressions over loop variables with known ranges.

Index ops declare their gathers with ordinary integer arithmetic (`linear_index`,
`unravel_index`, ...). Evaluated on `Affine` values, that arithmetic folds at compile
time: ``reshape`` of a row-major buffer becomes the identity on offsets, ``transpose``
a permutation of strides. `floordiv`/`mod` by a constant fold whenever the loop ranges
prove the remainder stays in ``[0, d)``; otherwise the caller falls back to real code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Affine:
    """``const + sum(coef * var)``; ``ranges[var]`` is the var's trip count (values 0..n-1)."""

    const: int
    terms: tuple[tuple[int, int], ...] = ()  # sorted (var id, nonzero coefficient)

    @staticmethod
    def var(vid: int) -> Affine:
        return Affine(0, ((vid, 1),))

    @property
    def is_const(self) -> bool:
        return not self.terms

    def coef(self, vid: int) -> int:
        return dict(self.terms).get(vid, 0)

    def add(self, other: Affine) -> Affine:
        coefs = dict(self.terms)
        for v, c in other.terms:
            coefs[v] = coefs.get(v, 0) + c
        return Affine(self.const + other.const, tuple(sorted((v, c) for v, c in coefs.items() if c)))

    def scale(self, k: int) -> Affine:
        if k == 0:
            return Affine(0)
        return Affine(self.const * k, tuple((v, c * k) for v, c in self.terms))

    def bounds(self, ranges: dict[int, int]) -> tuple[int, int]:
        """Smallest and largest value over the loop ranges."""
        lo = hi = self.const
        for v, c in self.terms:
            span = c * (ranges[v] - 1)
            lo, hi = (lo + span, hi) if span < 0 else (lo, hi + span)
        return lo, hi

    def divmod(self, d: int, ranges: dict[int, int]) -> tuple[Affine, Affine] | None:
        """(self // d, self % d) as affine forms when provable, else None (needs d > 0)."""
        q0, r0 = divmod(self.const, d)
        quot, rem = [], []
        for v, c in self.terms:
            (quot.append((v, c // d)) if c % d == 0 else rem.append((v, c)))
        r = Affine(r0, tuple(rem))
        lo, hi = r.bounds(ranges)
        if lo < 0 or hi >= d:
            return None
        return Affine(q0, tuple(quot)), r
