"""gc.train.Saver, the checkpoint file format, and gc.save(session=...)."""

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import checkpoint

# Built the same way in this process and in the child processes below.
MODEL = textwrap.dedent("""
    import numpy as np
    import graphc as gc

    def build():
        x = gc.placeholder(gc.float32, (None, 4), name="x")
        y = gc.placeholder(gc.int64, (None,), name="y")
        w1 = gc.Variable(gc.init.glorot_uniform((4, 8), seed=1), dtype=gc.float32, name="w1")
        b1 = gc.Variable(np.zeros(8, np.float32), name="b1")
        w2 = gc.Variable(gc.init.glorot_uniform((8, 3), seed=2), dtype=gc.float32, name="w2")
        logits = gc.tanh(x @ w1 + b1) @ w2
        loss = gc.nn.softmax_cross_entropy(logits, y)
        train = gc.train.Adam(0.05).minimize(loss)
        return x, y, logits, train

    def data():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((32, 4)).astype(np.float32)
        return X, (X[:, 0] > X[:, 1]).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
""")


def _model():
    scope: dict = {}
    exec(MODEL, scope)
    return scope["build"](), scope["data"]()


def _trained(steps=5):
    (x, y, logits, train), (X, Y) = _model()
    sess = gc.Session()
    for _ in range(steps):
        sess.run(train, {x: X, y: Y})
    return sess, (x, y, logits, train), (X, Y)


def test_round_trip_restores_every_variable_with_slots_and_step(tmp_path):
    sess, (x, y, logits, train), (X, Y) = _trained()
    path = gc.train.Saver().save(sess, tmp_path / "m.ckpt")
    names = {v.name for v in sess.graph.variables}
    assert {"w1", "w1/Adam/m", "w1/Adam/v", "Adam/step"} <= names
    saved = {v: sess.variable_value(v) for v in sess.graph.variables}
    fresh = gc.Session()
    gc.train.Saver().restore(fresh, path)
    for v, want in saved.items():
        got = fresh.variable_value(v)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # training continues identically from the restored state (the step counter drives Adam's bias correction)
    np.testing.assert_array_equal(fresh.run([logits, train], {x: X, y: Y})[0],
                                  sess.run([logits, train], {x: X, y: Y})[0])
    np.testing.assert_array_equal(fresh.run(logits, {x: X}), sess.run(logits, {x: X}))


def test_file_is_the_documented_safetensors_layout(tmp_path):
    sess, *_ = _trained(steps=1)
    path = tmp_path / "m.ckpt"
    gc.train.Saver().save(sess, path)
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0
    header = json.loads(blob[8:8 + n])
    assert header["__metadata__"]["format"] == "graphc-checkpoint"
    w1 = header["w1"]
    assert w1["dtype"] == "F32" and w1["shape"] == [4, 8]
    begin, end = w1["data_offsets"]
    raw = np.frombuffer(blob[8 + n + begin:8 + n + end], "<f4").reshape(4, 8)
    np.testing.assert_array_equal(raw, sess.variable_value(next(v for v in sess.graph.variables if v.name == "w1")))
    assert header["Adam/step"]["dtype"] == "I64" and header["Adam/step"]["shape"] == []


def test_restore_names_each_mismatch_and_changes_nothing(tmp_path):
    a = gc.Variable(np.zeros((2, 3), np.float32), name="a")
    b = gc.Variable(np.zeros(4, np.float64), name="b")
    c = gc.Variable(np.int32(7), name="c")
    path = tmp_path / "other.ckpt"
    checkpoint.write(path, {"a": np.ones((3, 2), np.float32), "b": np.ones(4, np.float32), "d": np.ones(1)})
    sess = gc.Session()
    with pytest.raises(gc.CheckpointError) as info:
        gc.train.Saver().restore(sess, path)
    msg = str(info.value)
    assert "a: the file has float32 (3, 2), the graph float32 (2, 3)" in msg
    assert "b: the file has float32 (4,), the graph float64 (4,)" in msg
    assert "c: not in the file" in msg
    assert sorted(line.split(":")[0].strip() for line in msg.splitlines()[1:]) == ["a", "b", "c"]  # "d" is ignored
    np.testing.assert_array_equal(sess.variable_value(a), np.zeros((2, 3)))
    np.testing.assert_array_equal(sess.variable_value(b), np.zeros(4))
    assert sess.variable_value(c) == 7
    # a var_list dict maps file names to variables
    gc.train.Saver({"a": gc.Variable(np.zeros((3, 2), np.float32), name="z")}).restore(sess, path)


@pytest.mark.parametrize("cut", [0, 5, 8, 20, -9, -1])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    sess, *_ = _trained(steps=1)
    path = tmp_path / "m.ckpt"
    gc.train.Saver().save(sess, path)
    blob = path.read_bytes()
    path.write_bytes(blob[:cut] if cut >= 0 else blob[:len(blob) + cut])
    with pytest.raises(gc.CheckpointError, match="not a valid graphc checkpoint"):
        gc.train.Saver().restore(sess, path)


def test_corrupted_bytes_are_detected(tmp_path):
    sess, *_ = _trained(steps=1)
    path = tmp_path / "m.ckpt"
    gc.train.Saver().save(sess, path)
    blob = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", blob[:8])
    rng = np.random.default_rng(0)
    for pos in [3, 8, 8 + n // 2, 8 + n - 1, *rng.integers(8 + n, len(blob), 5)]:
        bad = blob.copy()
        bad[pos] ^= 0x41
        path.write_bytes(bytes(bad))
        with pytest.raises(gc.CheckpointError):
            gc.train.Saver().restore(sess, path)
    path.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    with pytest.raises(gc.CheckpointError):
        gc.train.Saver().restore(sess, path)
    with pytest.raises(gc.CheckpointError, match="cannot read"):
        gc.train.Saver().restore(sess, tmp_path / "missing.ckpt")


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    sess, (x, y, logits, train), (X, Y) = _trained(steps=1)
    path = tmp_path / "m.ckpt"
    gc.train.Saver().save(sess, path)
    before = path.read_bytes()
    sess.run(train, {x: X, y: Y})

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        gc.train.Saver().save(sess, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.ckpt"]


def test_killed_save_keeps_the_previous_file(tmp_path):
    """A process killed (SIGKILL) after writing the new bytes but before the rename."""
    script = MODEL + textwrap.dedent(f"""
        import os, signal
        from graphc.runtime import checkpoint
        (x, y, logits, train), (X, Y) = build(), data()
        sess = gc.Session()
        saver = gc.train.Saver()
        saver.save(sess, {str(tmp_path / "m.ckpt")!r})
        sess.set_variable_value(sess.graph.variables[0], np.full((4, 8), 3.0, np.float32))
        checkpoint.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        saver.save(sess, {str(tmp_path / "m.ckpt")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    (x, y, logits, train), _ = _model()
    sess = gc.Session()
    gc.train.Saver().restore(sess, tmp_path / "m.ckpt")
    assert not np.any(sess.variable_value(sess.graph.variables[0]) == 3.0)


def test_trained_model_restored_in_a_new_process_predicts_identically(tmp_path):
    sess, (x, y, logits, train), (X, Y) = _trained()
    gc.train.Saver().save(sess, tmp_path / "m.ckpt")
    gc.save(logits, tmp_path / "m.json", session=sess)
    np.save(tmp_path / "want.npy", sess.run(logits, {x: X}))
    script = MODEL + textwrap.dedent(f"""
        (x, y, logits, train), (X, Y) = build(), data()
        sess = gc.Session()
        gc.train.Saver().restore(sess, {str(tmp_path / "m.ckpt")!r})
        np.save({str(tmp_path / "restored.npy")!r}, sess.run(logits, {{x: X}}))
        loaded = gc.load({str(tmp_path / "m.json")!r})
        np.save({str(tmp_path / "loaded.npy")!r}, gc.Session(loaded.graph).run(loaded.outputs, {{"x": X}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    want = np.load(tmp_path / "want.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "restored.npy"), want)
    np.testing.assert_array_equal(np.load(tmp_path / "loaded.npy"), want)


def test_gc_save_without_session_keeps_initial_values(tmp_path):
    sess, (x, y, logits, train), (X, Y) = _trained(steps=2)
    gc.save(logits, tmp_path / "init.json")
    loaded = gc.load(tmp_path / "init.json")
    w1 = next(v for v in loaded.graph.variables if v.name == "w1")
    np.testing.assert_array_equal(w1.attrs["initial"].array, gc.init.glorot_uniform((4, 8), seed=1).astype(np.float32))
    other = gc.Graph()
    with other.as_default(), pytest.raises(gc.GraphcError, match="another graph"):
        gc.save(logits, tmp_path / "x.json", session=gc.Session(other))


def test_set_variable_value_is_checked():
    v = gc.Variable(np.zeros((2, 2), np.float32), name="v")
    sess = gc.Session()
    sess.set_variable_value(v, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(sess.variable_value(v), [[1, 2], [3, 4]])
    with pytest.raises(gc.ShapeError, match=r"v has shape \(2, 2\)"):
        sess.set_variable_value(v, np.zeros(3, np.float32))
    with pytest.raises(gc.DTypeError, match="float64"):
        sess.set_variable_value(v, np.zeros((2, 2)))
    with pytest.raises(gc.GraphcError, match="not a Variable"):
        sess.set_variable_value(v + 1, np.zeros((2, 2), np.float32))
    with pytest.raises(gc.GraphcError, match="Saver: .* is not a Variable"):
        gc.train.Saver([v * 2])
