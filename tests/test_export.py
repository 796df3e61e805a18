"""Ahead-of-time export: the library against in-process results, the C ABI's error codes,
manifest checks, loading without llvmlite, threads, the CLI, and the C example."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc").split()[0]) is None,
                                reason="exporting needs a C compiler")


def _mlp(batch_dim=None, updates=False, dtype=np.float32):
    """Loss and gradients of a small MLP (and, with `updates`, an SGD step on its weights)."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(dtype, (batch_dim, 12), name="x")
    labels = gc.placeholder(gc.int32, (batch_dim,), name="labels")
    w1 = gc.Variable((rng.standard_normal((12, 16)) * 0.3).astype(dtype), name="w1")
    b1 = gc.Variable(np.zeros(16, dtype), name="b1")
    w2 = gc.Variable((rng.standard_normal((16, 5)) * 0.3).astype(dtype), name="w2")
    params = [w1, b1, w2]
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, labels)
    grads = gc.gradients(loss, params)
    ups = [(p, p - 0.1 * g) for p, g in zip(params, grads)] if updates else None
    return gc.function([x, labels], [loss, *grads], updates=ups)


def _batch(n, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 12)).astype(dtype), (np.arange(n) % 5).astype(np.int32)


def _close(got, want, rtol=1e-6):
    """Within `rtol` of the largest magnitude of `want` (float32 results of other summation orders)."""
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.max(np.abs(w), initial=0.0)))


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    """(directory, in-process function) of an MLP exported for batches of 8 and 3."""
    with gc.Graph().as_default():
        fn = _mlp()
        directory = tmp_path_factory.mktemp("mlp")
        library = fn.export(directory, "mlp", signatures=[[(8, 12), (8,)], [(3, 12), (3,)]],
                            output_names=["loss", "grad_w1", "grad_b1", "grad_w2"])
        assert library == directory / "libmlp.so"
        yield directory, fn


def test_exported_results_match_in_process(mlp_export):
    directory, fn = mlp_export
    for blas in ("auto", None):
        loaded = gc.load_exported(directory, "mlp", blas=blas)
        for n in (8, 3):
            _close(loaded(*_batch(n)), fn(*_batch(n)))
    with pytest.raises(gc.FeedError, match="match no exported signature"):
        loaded(*_batch(5))
    with pytest.raises(gc.FeedError, match="placeholder labels"):
        loaded(_batch(8)[0], np.zeros(8, np.float32))


def test_loaded_library_runs_through_the_executable_layer(mlp_export, monkeypatch):
    """gc.load_exported is a front end of `Executable`, as Session.run and gc.function are."""
    from graphc.runtime.executable import Executable

    directory, fn = mlp_export
    loaded = gc.load_exported(directory, "mlp")
    calls = []
    run = Executable.run
    monkeypatch.setattr(Executable, "run", lambda self, *a: calls.append(self) or run(self, *a))
    _close(loaded(*_batch(8)), fn(*_batch(8)))
    (exe,) = calls
    assert exe.store.values is loaded.state and exe.variables == ["w1", "b1", "w2"] and not exe.writes


def test_int_feed_out_of_range_refused(mlp_export):
    directory, _ = mlp_export
    loaded = gc.load_exported(directory, "mlp")
    labels = np.full(8, 3_000_000_000, np.int64)  # would wrap to -1294967296 as int32
    with pytest.raises(gc.FeedError, match="placeholder labels: the fed value 3000000000 is out of range for int32"):
        loaded(_batch(8)[0], labels)


def test_files_and_manifest(mlp_export):
    directory, _ = mlp_export
    manifest = json.loads((directory / "mlp.json").read_text())
    assert manifest["inputs"][0] == {"name": "x", "c_name": "x", "dtype": "float32", "shape": [None, 12]}
    assert [s["name"] for s in manifest["state"]] == ["w1", "b1", "w2"]
    assert [o["name"] for o in manifest["outputs"]] == ["loss", "grad_w1", "grad_b1", "grad_w2"]
    assert manifest["signatures"][0]["inputs"] == [[8, 12], [8]]  # in the order given
    assert manifest["signatures"][0]["outputs"][0] == []
    assert manifest["target"]["cpu"] == "x86-64-v3" and manifest["graphc_version"] == gc.__version__
    header = (directory / "mlp.h").read_text()
    assert "int mlp(\n    const float* x, int64_t x_dim0, int64_t x_dim1," in header
    assert "void mlp_set_sgemm(mlp_sgemm_t sgemm);" in header and "size_t mlp_workspace_size(void);" in header
    assert "#define MLP_ERR_DIMS 2" in header
    exported = subprocess.run(["nm", "-D", "--defined-only", str(directory / "libmlp.so")], capture_output=True,
                              text=True).stdout if shutil.which("nm") else ""
    if exported:
        names = {line.split()[-1] for line in exported.splitlines() if " T " in line}
        assert names == {"mlp", "mlp_abi", "mlp_strerror", "mlp_workspace_size", "mlp_set_sgemm", "mlp_set_dgemm"}


class _Direct:
    """Calls of the exported C function through ctypes with hand-made arguments."""

    def __init__(self, directory: Path):
        self.lib = ctypes.CDLL(str(directory / "libmlp.so"))
        self.lib.mlp.restype = ctypes.c_int
        self.lib.mlp_strerror.restype = ctypes.c_char_p
        self.lib.mlp_workspace_size.restype = ctypes.c_size_t
        self.shapes = [(8, 12), (8,), (12, 16), (16,), (16, 5), (), (12, 16), (16,), (16, 5)]
        dtypes = [np.float32, np.int32] + [np.float32] * 7
        self.arrays = [np.ones(s, d) for s, d in zip(self.shapes, dtypes)]

    def call(self, pointers=None, shapes=None, workspace=None, workspace_bytes=0):
        pointers = pointers or [a.ctypes.data for a in self.arrays]
        args = []
        for p, s in zip(pointers, shapes or self.shapes):
            args.append(ctypes.c_void_p(p))
            args += [ctypes.c_int64(d) for d in s]
        return self.lib.mlp(*args, ctypes.c_void_p(workspace), ctypes.c_size_t(workspace_bytes))


def test_c_calls_report_bad_arguments_with_codes(mlp_export):
    directory, _ = mlp_export
    c = _Direct(directory)
    assert c.call() == 0
    assert c.lib.mlp_strerror(0) == b"success"
    before = [a.copy() for a in c.arrays[5:]]
    for a in c.arrays[5:]:
        a.fill(-7)
    shapes = list(c.shapes)
    shapes[0] = (9, 12)  # more rows than compiled: must not read past the buffer
    assert c.call(shapes=shapes) == 2
    shapes = list(c.shapes)
    shapes[2] = (16, 12)  # a state array's dims
    assert c.call(shapes=shapes) == 2
    assert all((a == -7).all() for a in c.arrays[5:])  # nothing written on error
    for k in (0, 1, 3, 5, 8):  # inputs, state and outputs may not be NULL
        pointers = [a.ctypes.data for a in c.arrays]
        pointers[k] = 0
        assert c.call(pointers) == 1, k
    pointers = [a.ctypes.data for a in c.arrays]
    pointers[6] = pointers[0]  # an output over an input
    assert c.call(pointers) == 5
    needed = c.lib.mlp_workspace_size()
    assert needed > 0
    workspace = np.zeros(needed, np.uint8)
    assert c.call(workspace=workspace.ctypes.data, workspace_bytes=needed - 1) == 3
    assert c.call(workspace=workspace.ctypes.data, workspace_bytes=needed) == 0
    np.testing.assert_array_equal(c.arrays[5], before[0])
    assert b"dims" in c.lib.mlp_strerror(2) and c.lib.mlp_strerror(99) == b"unknown return code"



def test_input_inside_workspace_returns_overlap_error(mlp_export):
    """An input lying in the workspace was overwritten by the arena: the call returned 0 with wrong outputs."""
    directory, _ = mlp_export
    c = _Direct(directory)
    needed = c.lib.mlp_workspace_size()
    workspace = np.zeros(needed + 4096, np.uint8)
    for k in (0, 1, 2):  # inputs and read-only state
        pointers = [a.ctypes.data for a in c.arrays]
        inside = workspace[128:128 + c.arrays[k].nbytes]
        inside[:] = c.arrays[k].view(np.uint8).ravel()
        pointers[k] = inside.ctypes.data
        assert c.call(pointers, workspace=workspace.ctypes.data, workspace_bytes=workspace.size) == 5, k
        assert b"overlaps the workspace" in c.lib.mlp_strerror(5)
    pointers = [a.ctypes.data for a in c.arrays]
    pointers[0] = workspace.ctypes.data + needed + 64  # past the part a call uses: allowed
    assert c.call(pointers, workspace=workspace.ctypes.data, workspace_bytes=workspace.size) == 0

def _guarded(values: np.ndarray, keep: list) -> np.ndarray:
    """A copy of `values` whose last byte is followed by a PROT_NONE page (reads past it crash)."""
    page = mmap.PAGESIZE
    pages = max(1, -(-values.nbytes // page))
    mm = mmap.mmap(-1, (pages + 1) * page)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(ctypes.addressof(ctypes.c_char.from_buffer(mm)) + pages * page, page, 0) == 0
    keep.append(mm)
    arr = np.frombuffer(mm, values.dtype, values.size, pages * page - values.nbytes).reshape(values.shape)
    arr[...] = values
    return arr


@pytest.mark.parametrize("blas", ["auto", None])
def test_arrays_against_guard_pages(mlp_export, blas):
    directory, fn = mlp_export
    loaded = gc.load_exported(directory, "mlp", blas=blas)  # sets the library's BLAS slots
    c = _Direct(directory)
    keep: list = []
    x, labels = _batch(8)
    state = [fn.session.variable_value(v) for v in fn.variables]
    c.arrays = [_guarded(a, keep) for a in [x, labels, *state]] + [_guarded(np.zeros(s, np.float32), keep)
                                                                   for s in c.shapes[5:]]
    assert c.call() == 0
    _close(c.arrays[5:], fn(x, labels))
    shapes = list(c.shapes)
    shapes[0] = (9, 12)
    assert c.call(shapes=shapes) == 2
    del loaded


def test_built_in_gemm_across_block_edges_and_transposes(tmp_path):
    m, k, n = 100, 300, 13  # past the 96-row, 256-deep blocks; not multiples of the 16x6 / 8x6 tiles
    a = gc.placeholder(gc.float32, (m, k), name="a")
    b = gc.placeholder(gc.float32, (k, n), name="b")
    c = gc.placeholder(gc.float32, (m, 20), name="c")
    d = gc.placeholder(gc.float64, (7, k), name="d")
    fn = gc.function([a, b, c, d], [a @ b, a.T @ c, b @ b.T, d @ gc.cast(b, gc.float64), gc.sum(a @ b)])
    fn.export(tmp_path, "mm")
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(s).astype(t) for s, t in
            (((m, k), np.float32), ((k, n), np.float32), ((m, 20), np.float32), ((7, k), np.float64))]
    av, bv, cv, dv = (x.astype(np.float64) for x in args)
    wants = [av @ bv, av.T @ cv, bv @ bv.T, dv @ bv, (av @ bv).sum()]
    loaded = gc.load_exported(tmp_path, "mm", blas=None)
    for got, want in zip(loaded(*args), wants):
        np.testing.assert_allclose(got, want, rtol=1e-4 if got.dtype == np.float32 else 1e-12,
                                   atol=1e-4 * np.abs(want).max())
    calls = []
    i32p, f32p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_float)

    def host_sgemm(ta, tb, m_, n_, k_, alpha, a_, lda, b_, ldb, beta, c_, ldc):  # fills C with 7
        calls.append((m_[0], n_[0], k_[0]))
        for j in range(n_[0]):
            ctypes.memmove(c_ + 4 * j * ldc[0], np.full(m_[0], 7, np.float32).ctypes.data, 4 * m_[0])

    sgemm_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, i32p, i32p, i32p, f32p, ctypes.c_void_p,
                                  i32p, ctypes.c_void_p, i32p, f32p, ctypes.c_void_p, i32p)
    host = sgemm_type(host_sgemm)
    loaded.set_blas(ctypes.cast(host, ctypes.c_void_p).value, None)
    product = loaded(*args)[0]
    assert calls and (product == 7).all()  # the host's sgemm ran, through the slot
    loaded.set_blas(None, None)
    np.testing.assert_allclose(loaded(*args)[0], wants[0], rtol=1e-4, atol=1e-4 * np.abs(wants[0]).max())


def test_many_ops_export_like_in_process(tmp_path):
    x = gc.placeholder(gc.float32, (6, 5), name="x")
    y = gc.placeholder(gc.float64, (5,), name="y")
    i = gc.placeholder(gc.int32, (6,), name="i")
    pos = gc.abs(x) + 0.5
    outputs = [gc.exp(x), gc.log(pos), gc.tanh(x) * gc.sigmoid(x), gc.erf(x), gc.sin(x) + gc.cos(x),
               gc.power(pos, 1.7), gc.floor(x * 3.0) + gc.round(x * 2.0), gc.sqrt(pos), gc.maximum(x, 0.1),
               gc.gelu(x), gc.softplus(x), gc.where(x > 0, x, -x), gc.log1p(pos) - gc.expm1(x),
               gc.logsumexp(x, axis=1), gc.argmax(x, axis=0), gc.var(x, axis=0), gc.max(x),
               gc.nn.softmax(x), gc.concatenate([x, x[:, ::-1]], axis=1), gc.pad(x, ((1, 0), (0, 2))),
               gc.one_hot(i, 4), gc.take(x, gc.minimum(i, 5), axis=0), gc.transpose(x) @ x, gc.exp(y) * 2.0 + gc.sum(y),
               gc.cast(i, gc.int64) * 3 - 1, gc.logical_and(x > 0, x < 1)]
    fn = gc.function([x, y, i], outputs)
    fn.export(tmp_path, "ops")
    rng = np.random.default_rng(4)
    args = (rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal(5), np.arange(6, dtype=np.int32) * 5)
    for got, want in zip(gc.load_exported(tmp_path, "ops")(*args), fn(*args)):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()))
        else:
            np.testing.assert_array_equal(got, want)


def test_concurrent_calls_from_two_threads(mlp_export):
    directory, fn = mlp_export
    loaded = gc.load_exported(directory, "mlp")
    batches = [_batch(8, seed=s) for s in (10, 11)]
    wants = [fn(*b) for b in batches]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(200):
                _close(loaded(*batches[k]), wants[k])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_manifest_mismatches_are_clear_errors(mlp_export, tmp_path):
    directory, _ = mlp_export
    other = tmp_path / "other"
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (8, 12), name="x")
        gc.function([x], gc.sum(x**2)).export(other, "mlp")
    bad = tmp_path / "bad"
    shutil.copytree(directory, bad)
    shutil.copy(other / "mlp.json", bad / "mlp.json")  # a consistent manifest of another export
    with pytest.raises(gc.GraphcError, match="does not match the manifest|has .* bytes, the manifest records"):
        gc.load_exported(bad, "mlp")
    manifest = json.loads((directory / "mlp.json").read_text())
    manifest["signatures"][0]["inputs"][0] = [4, 12]  # edited by hand
    (bad / "mlp.json").write_text(json.dumps(manifest))
    with pytest.raises(gc.GraphcError, match="modified after export"):
        gc.load_exported(bad, "mlp")
    (bad / "mlp.json").write_text("{not json")
    with pytest.raises(gc.GraphcError, match="not valid JSON"):
        gc.load_exported(bad, "mlp")
    with pytest.raises(gc.GraphcError, match="cannot read the manifest"):
        gc.load_exported(tmp_path / "missing", "mlp")
    with pytest.raises(gc.GraphcError, match="describes the export 'mlp'"):
        shutil.copy(directory / "mlp.json", bad / "other.json")
        gc.load_exported(bad, "other")



LOAD_IN_CHILD = """
import sys
import graphc as gc
try:
    gc.load_exported(sys.argv[1], "mlp")
except gc.GraphcError as exc:
    print("GraphcError:", exc)
"""


def _load_in_child(directory: Path) -> str:
    """load_exported in a child process: a crash there (SIGBUS, SIGSEGV) fails the test, not the run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", LOAD_IN_CHILD, str(directory)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, f"the loader died with {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


def test_truncated_library_is_refused_before_dlopen(mlp_export, tmp_path):
    """A truncated lib<NAME>.so once killed the process with SIGBUS inside dlopen."""
    directory, _ = mlp_export
    for cut in (0.5, 0.99):
        bad = tmp_path / f"cut{cut}"
        shutil.copytree(directory, bad)
        data = (bad / "libmlp.so").read_bytes()
        (bad / "libmlp.so").write_bytes(data[:int(len(data) * cut)])
        out = _load_in_child(bad)
        assert "GraphcError: the library" in out and "bytes, the manifest records" in out
    flipped = tmp_path / "flipped"
    shutil.copytree(directory, flipped)
    data = bytearray((flipped / "libmlp.so").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "libmlp.so").write_bytes(bytes(data))
    assert "SHA-256 differs" in _load_in_child(flipped)


def test_every_manifest_field_is_hashed_and_validated(mlp_export, tmp_path):
    """State offsets/nbytes and single_output were outside the ABI hash: a shifted offset loaded other bytes."""
    from graphc import manifest as mf

    directory, _ = mlp_export
    original = json.loads((directory / "mlp.json").read_text())
    bad = tmp_path / "bad"
    shutil.copytree(directory, bad)
    edits = {
        "state offset": lambda m: m["state"][1].update(offset=m["state"][1]["offset"] + 64),
        "state nbytes": lambda m: m["state"][0].update(nbytes=4),
        "single_output": lambda m: m.update(single_output=True),
        "updated": lambda m: m["state"][0].update(updated=True),
        "target": lambda m: m["target"].update(cpu="x"),
        "version": lambda m: m.update(graphc_version="0"),
        "file name": lambda m: m["files"].update(library="../libmlp.so"),
        "state digest": lambda m: m["state_file"].update(bytes=1),
        "unknown field": lambda m: m.update(extra=1),
    }
    rehashed_errors = {"state offset": "bad state offset|do not fit", "state nbytes": "nbytes 4 is not",
                       "single_output": "single_output", "file name": "files are not",
                       "state digest": "do not fit", "unknown field": "missing or unknown"}
    for what, edit in edits.items():
        manifest = json.loads(json.dumps(original))
        edit(manifest)
        (bad / "mlp.json").write_text(json.dumps(manifest))
        with pytest.raises(gc.GraphcError, match="modified after export"):
            gc.load_exported(bad, "mlp")
        if what in rehashed_errors:  # edited and re-hashed: the validation names the field
            manifest["abi_hash"] = mf.abi_hash(manifest)
            (bad / "mlp.json").write_text(json.dumps(manifest))
            with pytest.raises(gc.GraphcError, match=rehashed_errors[what]):
                gc.load_exported(bad, "mlp")
    (bad / "mlp.json").write_text(json.dumps(original))
    state = bytearray((bad / "mlp.state.bin").read_bytes())
    state[5] ^= 1
    (bad / "mlp.state.bin").write_bytes(bytes(state))
    with pytest.raises(gc.GraphcError, match="state file .* does not match the manifest"):
        gc.load_exported(bad, "mlp")

def test_crafted_fuzz_export_seed_4000000_signature_inputs_not_a_list(mlp_export, tmp_path):
    """crafted-file fuzz, export kind, seed 4000000 (case 2226 and 28 more): a re-hashed manifest
    whose signature `inputs` was a number, a bool or null raised a raw TypeError in validation."""
    from graphc import manifest as mf

    directory, _ = mlp_export
    bad = tmp_path / "bad"
    shutil.copytree(directory, bad)
    for value in (float("nan"), False, 7, None, -0.0, {}):
        manifest = json.loads((directory / "mlp.json").read_text())
        manifest["signatures"][0]["inputs"] = value
        manifest["abi_hash"] = mf.abi_hash(manifest)
        (bad / "mlp.json").write_text(json.dumps(manifest))
        with pytest.raises(gc.GraphcError, match="inputs shapes"):
            gc.load_exported(bad, "mlp")


BLOCK_LLVMLITE = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "llvmlite" or name.startswith("llvmlite."):
            raise ImportError("llvmlite is blocked in this process")
        return None
sys.meta_path.insert(0, _Block())
try:
    import llvmlite  # noqa
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not work")
import numpy as np
import graphc as gc
f = gc.load_exported(sys.argv[1], "mlp")
x, labels = np.load(sys.argv[2]), np.load(sys.argv[3])
np.savez(sys.argv[4], *f(x, labels))
assert "llvmlite" not in sys.modules
"""


def test_load_exported_without_llvmlite(mlp_export, tmp_path):
    directory, fn = mlp_export
    x, labels = _batch(8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "labels.npy", labels)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", BLOCK_LLVMLITE, str(directory), str(tmp_path / "x.npy"),
                             str(tmp_path / "labels.npy"), str(tmp_path / "out.npz")], capture_output=True,
                            text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out.npz") as out:
        _close([out[f"arr_{i}"] for i in range(4)], fn(x, labels))


def test_state_updates_and_float64(tmp_path):
    fn = _mlp(batch_dim=6, updates=True, dtype=np.float64)
    fn.export(tmp_path, "step")
    loaded = gc.load_exported(tmp_path, "step")
    assert all(np.array_equal(loaded.state[v.name], fn.session.variable_value(v)) for v in fn.variables)
    for seed in range(3):
        _close(loaded(*_batch(6, np.float64, seed)), fn(*_batch(6, np.float64, seed)), rtol=1e-12)
    for v in fn.variables:
        np.testing.assert_allclose(loaded.state[v.name], fn.session.variable_value(v), rtol=1e-12)
    header = (tmp_path / "step.h").read_text()
    assert "double* w1, int64_t w1_dim0" in header and "state, updated 'w1'" in header


def test_print_and_check_numerics_in_a_library(tmp_path, capfd):
    """print writes to stdout from C; a failed check returns NAME_ERR_NUMERICS, updating no state."""
    x = gc.placeholder(gc.float32, (4,), name="x")
    w = gc.Variable(np.ones(4, np.float32), name="w")
    shown = gc.print(x * w, "xw", summarize=1)
    loss = gc.sum(gc.check_numerics(gc.log(shown), "log of xw"))
    fn = gc.function([x], loss, updates=[(w, w + 1.0)])
    fn.export(tmp_path, "dbg")
    header = (tmp_path / "dbg.h").read_text()
    assert "DBG_ERR_NUMERICS 6" in header
    loaded = gc.load_exported(tmp_path, "dbg")
    capfd.readouterr()
    assert loaded(np.full(4, np.e, np.float32)) == pytest.approx(4.0)
    assert capfd.readouterr().out == "xw [2.718282 ... 2.718282]\n"
    with pytest.raises(gc.NumericsError, match="returned 6: a check_numerics op found a NaN or Inf"):
        loaded(np.array([1, 2, -3, 4], np.float32))
    assert "check_numerics: log of xw" in capfd.readouterr().err
    np.testing.assert_array_equal(loaded.state["w"], [2, 2, 2, 2])  # the failed call updated nothing
    lib = ctypes.CDLL(str(tmp_path / "libdbg.so"))
    xs, out, state = np.array([1, -1, 1, 1], np.float32), np.zeros((), np.float32), loaded.state["w"]
    args = [ctypes.c_void_p(a.ctypes.data) for a in (xs, state)]
    rc = lib.dbg(args[0], ctypes.c_int64(4), args[1], ctypes.c_int64(4), ctypes.c_void_p(out.ctypes.data), None,
                 ctypes.c_size_t(0))
    assert rc == 6 and state.tolist() == [2, 2, 2, 2]


def test_repeated_outputs_zero_sizes_and_null_pointers(tmp_path):
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    y = x * 2.0
    fn = gc.function([x], [y, gc.sum(x), y])
    fn.export(tmp_path, "twice", signatures=[[(3, 2)], [(0, 2)]])
    loaded = gc.load_exported(tmp_path, "twice")
    a, total, b = loaded(np.arange(6, dtype=np.float32).reshape(3, 2))
    np.testing.assert_array_equal(a, np.arange(6).reshape(3, 2) * 2)
    np.testing.assert_array_equal(b, a)
    assert total == 15 and not np.shares_memory(a, b)
    empty = loaded(np.zeros((0, 2), np.float32))
    assert [e.shape for e in empty] == [(0, 2), (), (0, 2)] and empty[1] == 0
    lib = ctypes.CDLL(str(tmp_path / "libtwice.so"))
    out = np.zeros((), np.float32)
    i64 = ctypes.c_int64
    null = ctypes.c_void_p(0)
    # zero-element arrays may be NULL; the scalar output may not
    for total, code in ((ctypes.c_void_p(out.ctypes.data), 0), (null, 1)):
        assert lib.twice(null, i64(0), i64(2), null, i64(0), i64(2), total, null, i64(0), i64(2), null,
                         ctypes.c_size_t(0)) == code


def test_export_argument_errors(tmp_path):
    x = gc.placeholder(gc.float32, (None,), name="x")
    with pytest.raises(gc.GraphcError, match="unknown dims"):  # no symbolic program: shapes are needed
        gc.function([x], x + 1.0, options=gc.CompileOptions(specialize=True)).export(tmp_path, "f")
    fn = gc.function([x], x + 1.0)
    with pytest.raises(gc.GraphcError, match="C identifier"):
        fn.export(tmp_path, "my-lib", signatures=[[(2,)]])
    with pytest.raises(gc.GraphcError, match="one shape per input"):
        fn.export(tmp_path, "f", signatures=[[(2,), (3,)]])
    with pytest.raises(gc.GraphcError, match="output_names"):
        fn.export(tmp_path, "f", signatures=[[(2,)]], output_names=["a", "b"])
    with pytest.raises(gc.FeedError):
        fn.export(tmp_path, "f", signatures=[[(2, 2)]])


def test_cli_export(tmp_path, capsys):
    target = f"{ROOT / 'examples' / 'cli' / 'targets.py'}:mlp"
    code = cli_main(["export", target, "--name", "mlpcli", "-o", str(tmp_path), "--inputs", "x,labels",
                     "--outputs", "0", "--grad-wrt", "w1,w2"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "mlpcli.json").read_text())
    assert [o["name"] for o in manifest["outputs"]][1:] == ["grad_w1", "grad_w2"]
    assert manifest["signatures"][0]["inputs"] == [[16, 64], [16]]
    loaded = gc.load_exported(tmp_path, "mlpcli")
    rng = np.random.default_rng(0)
    loss, g1, g2 = loaded(rng.standard_normal((16, 64)).astype(np.float32), np.arange(16, dtype=np.int32) % 10)
    assert np.isfinite(loss) and g1.shape == (64, 32) and g2.shape == (32, 10)
    assert cli_main(["export", target, "--name", "bad", "-o", str(tmp_path), "--grad-wrt", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_c_example_builds_runs_and_matches_in_process(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    example = ROOT / "examples" / "export_c"
    env = {**os.environ, "PYTHON": sys.executable}
    built = subprocess.run(["make", "-s", "-C", str(example), f"OUT={tmp_path}", "run"], capture_output=True,
                           text=True, env=env)
    assert built.returncode == 0, built.stderr + built.stdout
    reference = subprocess.run([sys.executable, str(example / "export_mlp.py"), "-o", str(tmp_path / "ref"),
                                "--reference"], capture_output=True, text=True, env=env)
    assert reference.returncode == 0, reference.stderr
    c_losses = [float(v) for v in re.findall(r"step \d+: loss ([\d.]+)", built.stdout)]
    py_losses = [float(v) for v in re.findall(r"step \d+: loss ([\d.]+)", reference.stdout)]
    assert len(c_losses) == len(py_losses) == 8
    np.testing.assert_allclose(c_losses, py_losses, rtol=1e-5)
    assert c_losses[-1] < 0.5 * c_losses[0]
    assert "code 2" in built.stdout


def test_replaced_state_is_checked_or_converted(tmp_path):
    """State entries replaced by float64, non-contiguous or negative-stride arrays were passed unchecked."""
    with gc.Graph().as_default():
        fn = _mlp(batch_dim=4, updates=True)
        fn.export(tmp_path, "step")
        want = fn(*_batch(4))
    for make in (lambda a: a.astype(np.float64),  # another dtype
                 lambda a: np.asfortranarray(a),  # another layout
                 lambda a: np.ascontiguousarray(a[::-1])[::-1],  # negative strides
                 lambda a: np.repeat(a, 2, axis=-1)[..., ::2]):  # non-contiguous
        loaded = gc.load_exported(tmp_path, "step")
        original = {k: v.copy() for k, v in loaded.state.items()}
        for k, v in original.items():
            loaded.state[k] = make(v)
            np.testing.assert_array_equal(loaded.state[k], v)
        _close(loaded(*_batch(4)), want, rtol=1e-5)
        for k, v in loaded.state.items():  # updated in place: the converted arrays hold the new values
            assert v.dtype == np.float32 and v.flags.c_contiguous
            assert not np.array_equal(v, original[k]) or k == "b1"
    loaded = gc.load_exported(tmp_path, "step")
    loaded.state["w1"] = np.zeros((3, 3), np.float32)
    with pytest.raises(gc.GraphcError, match=r"state\['w1'\] was replaced by an unusable value: w1: expected "
                                             r"float32\(12, 16\), got float32\(3, 3\)"):
        loaded(*_batch(4))
    loaded.state["w1"] = np.zeros((12, 16), np.complex64)
    with pytest.raises(gc.GraphcError, match="was replaced by an unusable value"):
        loaded(*_batch(4))
    del loaded.state["w1"]
    with pytest.raises(gc.GraphcError, match=r"state\['w1'\] is missing"):
        loaded(*_batch(4))
