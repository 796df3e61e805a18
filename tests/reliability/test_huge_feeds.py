"""Issue 12: a feed whose contiguous copy cannot be allocated is a FeedError, not numpy's MemoryError."""

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
y = x.sum()
big = np.broadcast_to(np.float32(1), (2**33,))  # 32 GiB as a contiguous array, 4 bytes as a view
fn = gc.function([x], y)
fn(np.ones(3, np.float32))
exported = gc.load_exported(fn.export(sys.argv[1], "huge").parent, "huge")
calls = {f"Session.run {b}": (lambda b=b: gc.Session(backend=b).run(y, {x: big})) for b in ("llvm", "reference")}
calls.update({"gc.function": lambda: fn(big), "load_exported": lambda: exported(big)})
for what, call in calls.items():
    try:
        call()
    except gc.FeedError as exc:
        print(what, "|", exc)
    else:
        print(what, "| no error")
"""


def _cap_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_huge_stride_0_feed_is_a_feed_error_naming_placeholder_shape_and_bytes(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, preexec_fn=_cap_address_space)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "Session.run llvm", "Session.run reference", "gc.function", "load_exported"]
    for line in lines:
        assert "placeholder x: the fed float32(8589934592,) needs a contiguous float32 copy of " \
               "34359738368 bytes (32.0 GiB), which could not be allocated" in line, line


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_stride_0_feed_that_fits_is_copied_and_runs(backend):
    x = gc.placeholder(gc.float32, (None, 3))
    with gc.Session(backend=backend) as sess:
        got = sess.run(x.sum(axis=0), {x: np.broadcast_to(np.float32([1, 2, 3]), (1000, 3))})
    np.testing.assert_array_equal(got, [1000, 2000, 3000])
