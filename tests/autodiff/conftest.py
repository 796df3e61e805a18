"""Autodiff tests run on every backend the Session offers (reference and llvm)."""

import pytest

import graphc as gc
from graphc.runtime import session

BACKENDS = [b for b in ("reference", "llvm") if b in session.BACKENDS]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def run(backend):
    """run(fetches, feed_dict=None) on a fresh session of the parametrized backend."""

    def _run(fetches, feed_dict=None):
        return gc.Session(backend=backend).run(fetches, feed_dict)

    return _run
