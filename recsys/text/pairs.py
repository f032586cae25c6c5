"""Training examples for the encoder, from the training split only.

A user's state at step t is their items up to t (oldest first in the data, newest first in the
text); the label is the item at t + 1. Two shapes of batch:

- ``items`` mode: the user vector is pooled from the item tower's embeddings of their last
  ``n_recent`` items. A batch is a few users' windows of consecutive steps: each distinct item is
  encoded once and serves as context, target and negative for every pair in the batch.
- ``text`` mode: the user text (the last ``n_recent`` item texts, newest first, joined by a
  separator) goes through the user tower; the batch's targets are each other's negatives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from recsys.data.train_data import TrainData


@dataclass(frozen=True)
class Pairs:
    """All (user, step) pairs: the target is ``seq[t]`` and the history is ``seq[:t]``."""

    users: np.ndarray  # (P,) user rows
    steps: np.ndarray  # (P,) index of the target within the user's training sequence (>= 1)

    def __len__(self) -> int:
        return len(self.users)


def next_item_pairs(data: TrainData, users: np.ndarray | None = None) -> Pairs:
    """Every step with at least one earlier item, for ``users`` (default: all)."""
    rows = np.arange(data.n_users) if users is None else np.asarray(users)
    lengths = data.history_lengths()[rows]
    counts = np.maximum(lengths - 1, 0)
    pair_users = np.repeat(rows, counts)
    starts = np.cumsum(counts) - counts
    steps = np.arange(int(counts.sum())) - np.repeat(starts, counts) + 1
    return Pairs(users=pair_users.astype(np.int64), steps=steps.astype(np.int64))


def user_text(texts: list[str], history: np.ndarray, n_recent: int, separator: str) -> str:
    """The last ``n_recent`` items' texts, newest first, joined by ``separator``."""
    return separator.join(texts[int(i)] for i in history[-n_recent:][::-1])


@dataclass(frozen=True)
class ItemBatch:
    """A batch in ``items`` mode; indices point into ``items`` (the distinct items to encode)."""

    items: np.ndarray  # (U,) item rows
    context: np.ndarray  # (P, n_recent) positions in ``items``, newest first, -1 = padding
    weights: np.ndarray  # (P, n_recent) recency weights, 0 at padding
    targets: np.ndarray  # (P,) positions in ``items``
    exclude: np.ndarray  # (P, U) True where the candidate is in the user's history (not the target)
    owners: np.ndarray  # (P,) user row of each pair


def item_batches(
    data: TrainData, pairs: Pairs, *, n_recent: int, decay: float, batch_size: int, rng: np.random.Generator
) -> Iterator[ItemBatch]:
    """Shuffle users' runs of consecutive steps and pack them into batches of about ``batch_size`` pairs.

    Each user contributes windows of up to ``batch_size // 4`` consecutive steps, so one batch
    mixes several users and their neighbouring steps share encoded items.
    """
    window = max(1, batch_size // 4)
    order = np.lexsort((pairs.steps, pairs.users))
    users, steps = pairs.users[order], pairs.steps[order]
    # Break each user's steps into windows; a window is (user, first step, last step).
    starts = np.flatnonzero(
        np.r_[True, (users[1:] != users[:-1]) | ((np.arange(1, len(users)) % window) == 0)]
    )
    ends = np.r_[starts[1:], len(users)]
    perm = rng.permutation(len(starts))
    batch: list[tuple[int, int, int]] = []
    n_pairs = 0
    for w in perm:
        batch.append((int(users[starts[w]]), int(steps[starts[w]]), int(steps[ends[w] - 1])))
        n_pairs += int(ends[w] - starts[w])
        if n_pairs >= batch_size:
            yield _pack(data, batch, n_recent, decay)
            batch, n_pairs = [], 0
    if batch:
        yield _pack(data, batch, n_recent, decay)


def _pack(data: TrainData, windows: list[tuple[int, int, int]], n_recent: int, decay: float) -> ItemBatch:
    contexts, targets, owners = [], [], []
    for u, first, last in windows:
        seq = data.history(u)
        for t in range(first, last + 1):
            contexts.append(seq[max(0, t - n_recent) : t][::-1])  # newest first
            targets.append(int(seq[t]))
            owners.append(u)
    items = np.unique(np.concatenate([np.asarray(targets), *contexts]))
    pos = {int(i): k for k, i in enumerate(items)}
    context = np.full((len(targets), n_recent), -1, dtype=np.int64)
    weights = np.zeros((len(targets), n_recent), dtype=np.float32)
    for p, ctx in enumerate(contexts):
        context[p, : len(ctx)] = [pos[int(i)] for i in ctx]
        weights[p, : len(ctx)] = decay ** np.arange(len(ctx))
    exclude = np.zeros((len(targets), len(items)), dtype=bool)
    history_cache: dict[int, np.ndarray] = {}
    for p, u in enumerate(owners):
        if u not in history_cache:
            history_cache[u] = np.searchsorted(items, np.intersect1d(data.history(u), items))
        exclude[p, history_cache[u]] = True
    return ItemBatch(
        items=items,
        context=context,
        weights=weights,
        targets=np.asarray([pos[t] for t in targets], dtype=np.int64),
        exclude=exclude,
        owners=np.asarray(owners, dtype=np.int64),
    )


@dataclass(frozen=True)
class TextBatch:
    """A batch in ``text`` mode: user texts, their target items, and which targets are not negatives."""

    user_texts: list[str]
    targets: np.ndarray  # (P,) item rows; candidate j of query p is targets[j]
    exclude: np.ndarray  # (P, P) True where target j is in user p's history or equals p's own target
    owners: np.ndarray  # (P,) user row of each pair


def text_batches(
    data: TrainData,
    pairs: Pairs,
    *,
    n_recent: int,
    separator: str,
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[TextBatch]:
    """Shuffled pairs in batches of ``batch_size``."""
    perm = rng.permutation(len(pairs))
    for start in range(0, len(perm), batch_size):
        idx = perm[start : start + batch_size]
        texts, targets, histories = [], [], []
        for u, t in zip(pairs.users[idx], pairs.steps[idx], strict=True):
            seq = data.history(int(u))
            texts.append(user_text(data.item_text, seq[:t], n_recent, separator))
            targets.append(int(seq[t]))
            histories.append(seq)
        tgt = np.asarray(targets, dtype=np.int64)
        exclude = np.stack([np.isin(tgt, h) for h in histories]) | (tgt[:, None] == tgt[None, :])
        yield TextBatch(user_texts=texts, targets=tgt, exclude=exclude, owners=pairs.users[idx])
