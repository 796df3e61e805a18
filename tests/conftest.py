"""Shared fixtures: every test builds in a fresh default graph."""

import pytest

import graphc as gc


@pytest.fixture(autouse=True)
def fresh_graph():
    g = gc.Graph()
    with g.as_default():
        yield g
