"""Sparse user × item matrices and time-ordered histories, in vocabulary row numbers."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

Weighting = Literal["binary", "count"]


def user_item_matrix(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    weights: np.ndarray | None = None,
    weighting: Weighting = "binary",
) -> sp.csr_matrix:
    """A CSR users × items matrix (float32); repeated pairs are summed, or set to 1 when ``binary``."""
    if users.shape != items.shape:
        raise ValueError(f"users and items differ in length: {users.shape} vs {items.shape}")
    if len(users) and (users.min() < 0 or items.min() < 0):
        raise ValueError(
            "negative row numbers reached the matrix builder: map ids through a vocabulary first"
        )
    values = np.ones(len(users), dtype=np.float32) if weights is None else weights.astype(np.float32)
    mat = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    mat.sum_duplicates()
    if weighting == "binary":
        mat.data[:] = 1.0
    mat.sort_indices()
    return mat


def sequences(
    users: np.ndarray, items: np.ndarray, seq: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Histories as (indptr, items): user ``u``'s items in time order are ``items[indptr[u]:indptr[u+1]]``."""
    order = np.lexsort((seq, users))
    counts = np.bincount(users, minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, items[order].astype(np.int64)
