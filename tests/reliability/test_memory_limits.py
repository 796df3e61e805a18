"""Issue 12: allocations a run cannot make are GraphcErrors, never numpy's raw MemoryError.

A feed whose contiguous copy does not fit is a FeedError; outputs or a workspace that do not
fit are a ResourceExhaustedError (a MemoryError too).
"""

import resource
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc

ADDRESS_SPACE = 12 << 30  # the child's cap: the 32 GiB copy fails whatever the machine's overcommit rule

CHILD = r"""
import sys
import numpy as np
import graphc as gc

x = gc.placeholder(gc.float32, (None,), name="x")
outer = gc.expand_dims(x, 1) * gc.expand_dims(x, 0)  # 4 TiB for an x of 2**20 elements
big = np.broadcast_to(np.float32(1), (2**33,))  # 32 GiB as a contiguous array, 4 bytes as a view
wide = np.ones(2**20, np.float32)
fn = gc.function([x], [x.sum(), outer])
fn(np.ones(3, np.float32))
exported = gc.load_exported(fn.export(sys.argv[1], "huge").parent, "huge")
calls = {}
for feed in ("big", "wide"):
    value = {"big": big, "wide": wide}[feed]
    for b in ("llvm", "reference"):
        calls[f"{feed} Session.run {b}"] = lambda b=b, v=value: gc.Session(backend=b).run([x.sum(), outer], {x: v})
    calls[f"{feed} gc.function"] = lambda v=value: fn(v)
    calls[f"{feed} load_exported"] = lambda v=value: exported(v)
for what, call in calls.items():
    try:
        call()
    except gc.GraphcError as exc:
        print(what, "|", type(exc).__name__, isinstance(exc, MemoryError), "|", str(exc).replace("\n", " "))
    else:
        print(what, "| no error")
"""


def _cap_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_huge_stride_0_feed_and_outputs_beyond_memory_are_graphc_errors(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, preexec_fn=_cap_address_space)
    assert result.returncode == 0, result.stderr
    lines = [line.split(" | ") for line in result.stdout.splitlines()]
    calls = ["Session.run llvm", "Session.run reference", "gc.function", "load_exported"]
    assert [line[0] for line in lines] == [f"{feed} {call}" for feed in ("big", "wide") for call in calls]
    for what, kind, message in lines[:4]:  # the feed's copy: a FeedError naming placeholder, shape and bytes
        assert kind == "FeedError False", what
        assert message.startswith("placeholder x: the fed float32(8589934592,) needs a contiguous float32 copy "
                                  "of 34359738368 bytes (32.0 GiB), which could not be allocated"), message
    for (what, kind, message), where in zip(lines[4:], ["Session.run", "Session.run", "gc.function call", "huge"]):
        assert kind == "ResourceExhaustedError True", what  # the (2**20, 2**20) output
        assert message.startswith(f"{where}: out of memory: Unable to allocate 4.00 TiB") and "(1048576, 1048576)" \
            in message, message


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_stride_0_feed_that_fits_is_copied_and_runs(backend):
    x = gc.placeholder(gc.float32, (None, 3))
    with gc.Session(backend=backend) as sess:
        got = sess.run(x.sum(axis=0), {x: np.broadcast_to(np.float32([1, 2, 3]), (1000, 3))})
    np.testing.assert_array_equal(got, [1000, 2000, 3000])
