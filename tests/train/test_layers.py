"""gc.layers: variables created once and shared by every call, scopes, values against numpy, errors."""

import numpy as np
import pytest

import graphc as gc
from graphc.ir.traverse import toposort

RNG = np.random.default_rng(5)


def test_dense_called_twice_shares_its_variables():
    g = gc.Graph()
    with g.as_default():
        x1 = gc.placeholder(gc.float32, (None, 3), name="x1")
        x2 = gc.placeholder(gc.float32, (None, 3), name="x2")
        layer = gc.layers.Dense(4, activation=gc.tanh)
        y1, y2 = layer(x1), layer(x2)
        other = gc.layers.Dense(4)(x1)
        fresh = [gc.nn.dense(x1, 2), gc.nn.dense(x1, 2)]  # gc.nn.dense: new variables every call
    assert [v.name for v in layer.variables] == ["dense/kernel", "dense/bias"]
    assert len(g.variables) == 2 + 2 + 4 and other.name.startswith("dense_1/")
    assert y1.name.startswith("dense/") and y2.name.startswith("dense/")
    assert fresh[0].name.startswith("dense_2/") and fresh[1].name.startswith("dense_3/")
    a, b = RNG.standard_normal((5, 3)).astype(np.float32), RNG.standard_normal((2, 3)).astype(np.float32)
    with gc.Session(g) as sess:
        w, bias = sess.variable_value(layer.kernel), sess.variable_value(layer.bias)
        got1, got2 = sess.run([y1, y2], {x1: a, x2: b})
    np.testing.assert_allclose(got1, np.tanh(a @ w + bias), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got2, np.tanh(b @ w + bias), rtol=1e-5, atol=1e-6)


def test_shared_layer_gets_gradients_from_every_call():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, (2, 3))
        layer = gc.layers.Dense(3, use_bias=False, seed=1)
        y = layer(layer(x))
        (gk,) = gc.gradients(gc.sum(y), [layer.kernel])
    a = RNG.standard_normal((2, 3))
    with gc.Session(g) as sess:
        w = sess.variable_value(layer.kernel)
        got = sess.run(gk, {x: a})
    want = a.T @ np.ones((2, 3)) @ w.T + (a @ w).T @ np.ones((2, 3))  # d/dW sum(x W W)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_layer_norm_dropout_embedding_layers():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 6))
        ids = gc.placeholder(gc.int32, (None, 4))
        training = gc.placeholder(gc.bool_, ())
        ln = gc.layers.LayerNorm()
        emb = gc.layers.Embedding(10, 6, seed=3)
        drop = gc.layers.Dropout(0.5)
        out = drop(ln(x), training)
        e1, e2 = emb(ids), emb(ids[:, :2])
    assert [v.name for v in ln.variables] == ["layer_norm/scale", "layer_norm/offset"]
    assert len(emb.variables) == 1 and emb.table.shape == (10, 6)
    a = RNG.standard_normal((3, 6)).astype(np.float32)
    i = RNG.integers(0, 10, (2, 4)).astype(np.int32)
    with gc.Session(g) as sess:
        got, got_e1, got_e2 = sess.run([out, e1, e2], {x: a, ids: i, training: False})
        table = sess.variable_value(emb.table)
        dropped = sess.run(out, {x: a, ids: i, training: True})
    m = a - a.mean(-1, keepdims=True)
    np.testing.assert_allclose(got, m / np.sqrt((m * m).mean(-1, keepdims=True) + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got_e1, table[i])
    np.testing.assert_array_equal(got_e2, table[i[:, :2]])
    assert set(np.unique(np.isclose(dropped, 2 * got, rtol=1e-5) | (dropped == 0))) == {True}


def _np_mha(layer, values, q, kv, keep):
    def dense(d, x):
        return x @ values[d.kernel] + values[d.bias]

    h, dk = layer.num_heads, layer.key_dim

    def heads(x):
        return x.reshape(x.shape[0], x.shape[1], h, dk).transpose(0, 2, 1, 3)

    qh = heads(dense(layer.query_dense, q))
    kh, vh = heads(dense(layer.key_dense, kv)), heads(dense(layer.value_dense, kv))
    s = qh @ kh.transpose(0, 1, 3, 2) / np.sqrt(dk)
    s = np.where(keep, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = (p @ vh).transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], h * dk)
    return dense(layer.output_dense, o)


def test_multi_head_attention_against_numpy_with_unknown_batch():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, (None, 5, 8), name="x")
        mem = gc.placeholder(gc.float64, (None, 7, 8), name="mem")
        mha = gc.layers.MultiHeadAttention(num_heads=2, key_dim=4, seed=0)
        self_att = mha(x, causal=True)
        cross = mha(x, mem)
        grads = gc.gradients(gc.sum(self_att * self_att) + gc.sum(cross), mha.trainable_variables)
    assert len(mha.trainable_variables) == 8 and len(g.variables) == 8  # shared by both calls
    assert mha.query_dense.kernel.name == "multi_head_attention/query/kernel"
    a, m = RNG.standard_normal((3, 5, 8)), RNG.standard_normal((3, 7, 8))
    with gc.Session(g) as sess:
        values = {v: sess.variable_value(v) for v in g.variables}
        got_self, got_cross, *gs = sess.run([self_att, cross, *grads], {x: a, mem: m})
    np.testing.assert_allclose(got_self, _np_mha(mha, values, a, a, np.tril(np.ones((5, 5), bool))), rtol=1e-10)
    np.testing.assert_allclose(got_cross, _np_mha(mha, values, a, m, np.ones((5, 7), bool)), rtol=1e-10)
    assert all(np.isfinite(v).all() and np.abs(v).sum() > 0 for v in gs)


def test_layer_errors():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    with pytest.raises(gc.ShapeError, match="Dense needs units >= 1"):
        gc.layers.Dense(0)
    layer = gc.layers.Dense(2)
    layer(x)
    with pytest.raises(gc.ShapeError, match=r"layer dense(_\d+)?: built for 3 input features, called on "
                                            r"float32\(\?, 4\)(.|\n)*test_layers.py:\d+"):
        layer(gc.placeholder(gc.float32, (None, 4)))
    with pytest.raises(gc.ShapeError, match=r"Dense: needs an input whose feature dim .* is known"):
        gc.layers.Dense(2)(gc.placeholder(gc.float32, (2, None)))
    with gc.Graph().as_default():
        with pytest.raises(gc.GraphcError, match="built in another graph"):
            layer(gc.placeholder(gc.float32, (None, 3)))
    with pytest.raises(gc.ShapeError, match="MultiHeadAttention needs num_heads >= 1"):
        gc.layers.MultiHeadAttention(0, 4)


def test_multi_head_attention_dropout_drops_weights_only_in_training():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 6, 8))
        training = gc.placeholder(gc.bool_, ())
        mha = gc.layers.MultiHeadAttention(2, 4, dropout=0.5, seed=1)
        plain = gc.layers.MultiHeadAttention(2, 4, seed=1)
        out, ref = mha(x, causal=True, training=training), plain(x, causal=True)
        ops = {n.op for n in toposort([out])}
    a = RNG.standard_normal((2, 6, 8)).astype(np.float32)
    with gc.Session(g) as sess:
        for v, w in zip(mha.trainable_variables, plain.trainable_variables):
            sess.set_variable_value(w, sess.variable_value(v))
        inference, want = sess.run([out, ref], {x: a, training: False})
        train1, train2 = (sess.run(out, {x: a, training: True}) for _ in range(2))
    np.testing.assert_allclose(inference, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(train1, want) and not np.array_equal(train1, train2)  # fresh masks every run
    assert "random_uniform" in ops
