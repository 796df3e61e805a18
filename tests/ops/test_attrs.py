"""Every op declares what a node of it may hold: its arity and attribute types (checked in Graph.make)."""

import pytest

from graphc.ops.attrtypes import TYPES
from graphc.ops.registry import all_ops

OPS = all_ops()


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_an_arity_and_typed_attributes(name):
    opdef = OPS[name]
    assert opdef.arity is not None, f"{name}: declare arity=(min, max) on its OpDef (it cannot be derived)"
    low, high = opdef.arity
    assert low >= 0 and (high is None or high >= low)
    assert all(kind.rstrip("?") in TYPES for kind in opdef.attrs.values())
