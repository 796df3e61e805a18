"""Checking and converting a feed_dict before anything runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..dtypes import out_of_range, shape_str
from ..errors import FeedError, GraphcError
from ..ir.graph import Graph, Tensor


def check_feeds(feed_dict: Mapping[Any, Any] | None, graph: Graph | None,
                needed: Iterable[Tensor]) -> dict[Tensor, np.ndarray]:
    """Validate feeds: known placeholders, every needed one fed, shapes and dtypes compatible.

    A key is a placeholder or its name (``"x"`` or TF1's ``"x:0"``, looked up in `graph`).
    Returns C-contiguous arrays of exactly the placeholders' dtypes.
    """
    feeds: dict[Tensor, np.ndarray] = {}
    for key, value in (feed_dict or {}).items():
        if isinstance(key, str) and graph is not None:
            try:
                key = graph.get_tensor_by_name(key)
            except GraphcError as exc:
                raise FeedError(f"feed key: {exc}") from None
        if not isinstance(key, Tensor) or key.op != "placeholder":
            raise FeedError(f"feed key {key!r} is not a placeholder")
        if graph is not None and key.graph is not graph:
            raise FeedError(f"placeholder {key.name} belongs to another graph than the session's")
        if key in feeds:
            raise FeedError(f"placeholder {key.name} is fed twice (by the tensor and by its name)")
        feeds[key] = convert_feed(key, value)
    missing = [n.name for n in needed if n.op == "placeholder" and n not in feeds]
    if missing:
        raise FeedError("the fetches need placeholder(s) that were not fed: " + ", ".join(missing))
    return feeds


def convert_feed(ph: Tensor, value: Any) -> np.ndarray:
    """One feed value as a C-contiguous array of ph's dtype, or FeedError."""
    expected = f"{ph.dtype}{shape_str(ph.shape)}"
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise FeedError(f"placeholder {ph.name}: cannot convert the fed value to an array ({exc})") from None
    if arr.dtype == object or not np.can_cast(arr.dtype, ph.dtype, casting="same_kind"):
        raise FeedError(f"placeholder {ph.name}: expected {expected}, got {arr.dtype}{shape_str(arr.shape)} "
                        f"({arr.dtype} does not cast to {ph.dtype} under same_kind rules)")
    if arr.ndim != len(ph.shape) or any(d is not None and d != a for d, a in zip(ph.shape, arr.shape)):
        raise FeedError(f"placeholder {ph.name}: expected {expected}, got {arr.dtype}{shape_str(arr.shape)}")
    _check_int_range(ph, arr)
    try:
        return np.asarray(arr, dtype=ph.dtype, order="C")  # ascontiguousarray would make 0-d arrays 1-d
    except MemoryError:  # a broadcast (stride-0) view of 2**33 elements, say: its copy does not fit
        nbytes = arr.size * np.dtype(ph.dtype).itemsize
        raise FeedError(f"placeholder {ph.name}: the fed {arr.dtype}{shape_str(arr.shape)} needs a contiguous "
                        f"{ph.dtype} copy of {nbytes} bytes ({nbytes / 2**30:.1f} GiB), which could not be "
                        "allocated (graphc copies a broadcast or strided feed)") from None


def _check_int_range(ph: Tensor, arr: np.ndarray) -> None:
    """Refuse integer values that ph's integer dtype cannot hold."""
    bad = out_of_range(arr, ph.dtype)
    if bad is not None:
        raise FeedError(f"placeholder {ph.name}: the fed {bad.removeprefix('the ')}")
