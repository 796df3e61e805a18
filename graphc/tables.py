"""Plain-text tables: columns two spaces apart under a rule of dashes (the `graphc` command's
pass and memory tables, the profiler's step tables)."""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[Sequence[str]], left: int = 1, ragged_last: bool = False) -> str:
    """`rows` (the first is the header) as aligned text: the first `left` columns left-aligned,
    the others right-aligned; with `ragged_last` the last column is free text, not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1 if ragged_last else None

    def line(row: Sequence[str]) -> str:
        return "  ".join(c if i == last else c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(rows[0]), line(["-" * w for w in widths]), *(line(r) for r in rows[1:])])
