"""Training pairs come from the training split only and batches cover every pair once."""

from __future__ import annotations

import numpy as np

from recsys.text.pairs import item_batches, next_item_pairs, text_batches, user_text


def test_pairs_and_user_text(loo_test):
    _, data = loo_test
    pairs = next_item_pairs(data)
    lengths = data.history_lengths()
    assert len(pairs) == int(np.maximum(lengths - 1, 0).sum())
    assert (pairs.steps >= 1).all() and (pairs.steps < lengths[pairs.users]).all()
    assert user_text(["a", "b", "c", "d"], np.array([0, 1, 3]), 2, " | ") == "d | b"


def test_item_batches_cover_each_pair_once_with_right_context(loo_test):
    _, data = loo_test
    pairs = next_item_pairs(data)
    seen = []
    rng = np.random.default_rng(0)
    for batch in item_batches(data, pairs, n_recent=3, decay=0.5, batch_size=32, rng=rng):
        for p in range(len(batch.targets)):
            u = int(batch.owners[p])
            target = int(batch.items[batch.targets[p]])
            ctx = [int(batch.items[i]) for i in batch.context[p] if i >= 0]
            seq = data.history(u).tolist()
            # Find the step: the context is the (up to) 3 items before the target, newest first.
            steps = [
                t for t in range(1, len(seq)) if seq[t] == target and seq[max(0, t - 3) : t][::-1] == ctx
            ]
            assert steps, (u, target, ctx)
            seen.append((u, steps[0]))
            assert batch.weights[p, : len(ctx)].tolist() == [0.5**k for k in range(len(ctx))]
            # Every item of the user's training history is flagged (the loss never excludes the target).
            flagged = {int(batch.items[i]) for i in np.flatnonzero(batch.exclude[p])}
            assert flagged == set(seq) & set(batch.items.tolist())
    assert len(seen) == len(pairs)


def test_text_batches_exclude_duplicates_and_history(loo_test):
    _, data = loo_test
    pairs = next_item_pairs(data)
    batch = next(
        text_batches(data, pairs, n_recent=2, separator=" | ", batch_size=64, rng=np.random.default_rng(0))
    )
    assert len(batch.user_texts) == 64 and batch.exclude.shape == (64, 64)
    for p in range(64):
        same = np.flatnonzero(batch.targets == batch.targets[p])
        assert batch.exclude[p, same].all()
        hist = data.history(int(batch.owners[p]))
        assert batch.exclude[p, np.flatnonzero(np.isin(batch.targets, hist))].all()
