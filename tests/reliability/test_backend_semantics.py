"""Issue 12 item 11: one semantics per case, followed by both backends (docs/reliability.md)."""

import numpy as np
import pytest

import graphc as gc

BACKENDS = ["llvm", "reference"]


def _run(backend, fetches, feeds):
    with gc.Session(backend=backend) as sess:
        return sess.run(fetches, feeds)


def _signs(values):
    return [np.signbit(v).tolist() for v in values]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_zero_maximum_minimum_clip_agree(dtype):
    x, y = gc.placeholder(dtype, (None,)), gc.placeholder(dtype, (None,))
    a = np.array([-0.0, 0.0, -0.0, 0.0], dtype)
    b = np.array([0.0, -0.0, -0.0, 0.0], dtype)
    outs = [gc.maximum(x, y), gc.minimum(x, y), gc.clip(x, 0.0, 1.0), gc.clip(x, -1.0, -0.0),
            gc.max(gc.stack([x, y]), 0), gc.min(gc.stack([x, y]), 0)]
    want = [[False, False, True, False], [True, True, True, False], [False] * 4, [True] * 4,
            [False, False, True, False], [True, True, True, False]]
    for backend in BACKENDS:
        assert _signs(_run(backend, outs, {x: a, y: b})) == want, backend


@pytest.mark.parametrize("src", [np.float32, np.float64])
@pytest.mark.parametrize("dst", [np.int32, np.int64])
def test_nan_inf_out_of_range_float_to_int_casts_saturate(src, dst):
    x = gc.placeholder(src, (None,))
    info = np.iinfo(dst)
    v = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 2.0**31, -(2.0**31) - 2**10, -2.7, 2.7], src)
    want = np.array([0, info.max, info.min, info.max, info.min, min(2**31, info.max), max(-(2**31) - 2**10, info.min),
                     -2, 2], dst)
    for backend in BACKENDS:
        np.testing.assert_array_equal(_run(backend, gc.cast(x, dst), {x: v}), want, err_msg=backend)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_power_negative_integer_truncates(dtype):
    a, b = gc.placeholder(dtype, (None,)), gc.placeholder(dtype, (None,))
    av = np.array([2, 1, 1, -1, -1, 0, 3, -2], dtype)
    bv = np.array([-1, -5, -6, -3, -2, -1, 2, 3], dtype)
    for backend in BACKENDS:
        np.testing.assert_array_equal(_run(backend, a ** b, {a: av, b: bv}), [0, 1, 1, -1, 1, 0, 9, -8],
                                      err_msg=backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_negative_tail_agrees(dtype):
    x = gc.placeholder(dtype, (None,))
    v = -np.geomspace(0.5, 60, 300).astype(dtype)
    got, want = (_run(b, gc.gelu(x), {x: v}) for b in BACKENDS)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)
    # the formula 0.5 x (1 + erf(x / sqrt 2)), as TensorFlow and PyTorch: -0.0 once 1 + erf rounds to 0
    assert np.signbit(want[-1]) and want[-1] == 0 and np.signbit(got[-1]) and got[-1] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_interning_keeps_negative_zero_attribute_apart(backend):
    x = gc.placeholder(gc.float64, (2,))
    neg, pos = gc.pad(x, 1, constant_values=-0.0), gc.pad(x, 1, constant_values=0.0)
    assert neg is not pos
    a, b = _run(backend, [neg, pos], {x: np.ones(2)})
    assert np.signbit(a[[0, -1]]).all() and not np.signbit(b[[0, -1]]).any()


@pytest.mark.parametrize("dtype, bound", [(np.float32, 2.0**20), (np.float64, 2.0**47)])
def test_llvm_sin_cos_tan_large_arguments_match_numpy(dtype, bound, tmp_path):
    """Issue 12 #7: beyond the Cody-Waite range the LLVM backend reduces by Payne-Hanek (was NaN)."""
    rng = np.random.default_rng(12)
    big = 10.0 ** rng.uniform(np.log10(bound), np.log10(np.finfo(dtype).max), 500) * rng.choice([-1, 1], 500)
    values = np.concatenate([rng.uniform(-bound, bound, 500), big, [bound, np.nextafter(dtype(bound), dtype(np.inf)),
                                                                    4e6, 1e16, 1e30, -3e38, np.inf, np.nan]])
    values = values.astype(dtype)
    x = gc.placeholder(dtype, (None,))
    outs = [gc.sin(x), gc.cos(x), gc.tan(x)]
    with np.errstate(invalid="ignore"):
        want = [f(values.astype(np.float64)) for f in (np.sin, np.cos, np.tan)]
    eps = np.finfo(dtype).eps
    fn = gc.function([x], outs)
    fn.export(tmp_path, "trig", signatures=[[values.shape]])
    exported = gc.load_exported(tmp_path, "trig")(values)
    for name, got in [*((b, _run(b, outs, {x: values})) for b in BACKENDS), ("export", exported)]:
        for g, w in zip(got, want):
            # within 2 ulp of float64 numpy; NaN (inf, nan) exactly where numpy's is
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), name)
            ok = ~np.isnan(w)
            assert np.all(np.abs(g[ok] - w[ok]) <= 2 * eps * np.abs(w[ok])), name
