"""docs/ops.md lists every op of the registry (and nothing that is not one)."""

from __future__ import annotations

import re
from pathlib import Path

from graphc.ops.registry import all_ops

DOC = Path(__file__).resolve().parents[2] / "docs" / "ops.md"


def documented_ops() -> set[str]:
    """The op names in the first column of the tables of docs/ops.md."""
    names = set()
    for line in DOC.read_text().splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2 and not set(cells[1].strip()) <= set("-"):
            names.update(re.findall(r"`([a-z_0-9.]+)`", cells[1]))
    return names


def test_every_registered_op_has_a_row():
    missing = sorted(set(all_ops()) - documented_ops())
    assert not missing, f"add a row to docs/ops.md for: {missing}"


def test_rows_name_registered_ops():
    stale = sorted(documented_ops() - set(all_ops()))
    assert not stale, f"docs/ops.md has rows for ops that are not registered: {stale}"
