"""gc.train.batches: covering every row once per epoch, seeded shuffles, last-batch handling."""

import numpy as np
import pytest

from graphc.train import batches


def test_unshuffled_batches_in_order_with_short_last():
    x = np.arange(10)
    out = list(batches(x, batch_size=4, shuffle=False))
    assert [b.tolist() for b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(batches(x, batch_size=4)) == 3
    assert len(batches(x, batch_size=4, drop_last=True)) == 2
    assert [len(b) for b in batches(x, batch_size=4, drop_last=True)] == [4, 4]


def test_shuffled_epochs_cover_all_rows_keep_pairs_and_differ():
    x = np.arange(50)
    y = x * 10
    data = batches(x, y, batch_size=8, seed=3)
    epochs = []
    for _ in range(2):
        xs = []
        for xb, yb in data:
            np.testing.assert_array_equal(yb, xb * 10)
            xs.append(xb)
        epochs.append(np.concatenate(xs))
    for e in epochs:
        assert sorted(e.tolist()) == list(range(50))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], x)


def test_same_seed_same_order():
    x = np.arange(30).reshape(15, 2)

    def run(seed):
        data = batches(x, batch_size=4, seed=seed)
        return [b.tolist() for _ in range(3) for b in data]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_errors():
    with pytest.raises(ValueError, match="lengths"):
        batches(np.zeros(3), np.zeros(4), batch_size=2)
    with pytest.raises(ValueError):
        batches(np.zeros(3), batch_size=0)
    with pytest.raises(ValueError):
        batches(batch_size=2)
