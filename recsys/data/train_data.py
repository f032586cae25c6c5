"""What a scorer is fitted on: vocabularies, the user × item matrix, histories and item texts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data.dataset import Dataset, frame_fingerprint, item_texts
from recsys.data.matrix import sequences, user_item_matrix
from recsys.data.split import Split
from recsys.data.vocab import IdVocab


@dataclass(frozen=True)
class TrainData:
    """Training interactions in row-number space.

    ``users`` covers every user of the dataset (users without training events have empty rows), so
    targets and histories index the same rows; ``items`` is the whole catalogue in catalogue order.
    """

    users: IdVocab
    items: IdVocab
    matrix: sp.csr_matrix  # users × items, binary
    seq_indptr: np.ndarray  # (n_users + 1,)
    seq_items: np.ndarray  # time-ordered item rows of every user, concatenated
    item_text: list[str]
    item_frame: pl.DataFrame
    fingerprint: str

    @classmethod
    def from_split(cls, dataset: Dataset, split: Split) -> TrainData:
        users = dataset.interactions["user_id"].unique(maintain_order=True).sort()
        return cls.build(users, dataset.items, split.train)

    @classmethod
    def build(cls, user_ids: pl.Series, item_frame: pl.DataFrame, train: pl.DataFrame) -> TrainData:
        """From the user ids (rows in this order), the catalogue and the training interactions."""
        users = IdVocab(user_ids)
        items = IdVocab(item_frame["item_id"])
        u = users.index(train["user_id"])
        i = items.index(train["item_id"])
        matrix = user_item_matrix(u, i, len(users), len(items))
        indptr, seq_items = sequences(u, i, train["seq"].to_numpy(), len(users))
        return cls(
            users=users,
            items=items,
            matrix=matrix,
            seq_indptr=indptr,
            seq_items=seq_items,
            item_text=item_texts(item_frame),
            item_frame=item_frame,
            fingerprint=frame_fingerprint(item_frame, _canonical(train)),
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def train_frame(self) -> pl.DataFrame:
        """The training interactions as (user_id, item_id, seq), in user-row then time order."""
        user_rows = np.repeat(np.arange(self.n_users), np.diff(self.seq_indptr))
        seq = np.arange(len(self.seq_items)) - np.repeat(self.seq_indptr[:-1], np.diff(self.seq_indptr))
        return pl.DataFrame(
            {
                "user_id": self.users.ids.gather(user_rows),
                "item_id": self.items.ids.gather(self.seq_items),
                "seq": seq,
            }
        )

    def history(self, user: int) -> np.ndarray:
        """User row ``user``'s training items, oldest first."""
        return self.seq_items[self.seq_indptr[user] : self.seq_indptr[user + 1]]

    def history_lengths(self) -> np.ndarray:
        return np.diff(self.seq_indptr)

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Training interactions per item (repeats counted)."""
        return np.bincount(self.seq_items, minlength=self.n_items).astype(np.float64)

    def target_pairs(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """The split's targets as (user rows, item rows)."""
        return self.users.index(split.targets["user_id"]), self.items.index(split.targets["item_id"])


def _canonical(train: pl.DataFrame) -> pl.DataFrame:
    """The histories in a fixed order and form, so equal histories give equal fingerprints."""
    return (
        train.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), pl.col("seq"))
        .sort("user_id", "seq")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("user_id").alias("seq"))
    )
