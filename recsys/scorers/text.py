"""Zero-shot text scorer: cosine between item embeddings and a user vector from recent items.

Item texts are encoded once (cached on disk by ``recsys.text.cache``). A user's vector is the
recency-weighted sum of their last ``n_recent`` items' embeddings (weight ``decay**k`` for the k-th
newest), normalised; with ``n_recent = 1`` it is the cosine to the user's last item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.errors import ConfigError
from recsys.scorers.base import Scorer, recency_weights
from recsys.text.cache import cached_embeddings
from recsys.text.encoder import EncoderConfig, TextEncoder


@dataclass(frozen=True)
class TextScorerConfig:
    model_path: str | None = None
    max_length: int = 64
    batch_size: int = 64
    precision: str = "fp32"
    n_recent: int = 1
    decay: float = 0.5
    cache_dir: str | None = None  # None: $RECSYS_CACHE_DIR or ~/.cache/recsys
    progress: bool = False

    def __post_init__(self) -> None:
        if self.n_recent < 1 or not 0.0 < self.decay <= 1.0:
            raise ConfigError("text: n_recent must be >= 1 and decay in (0, 1]")

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            model_path=self.model_path,
            max_length=self.max_length,
            batch_size=self.batch_size,
            precision=self.precision,
        )


class TextScorer(Scorer):
    name = "text"

    def __init__(
        self, config: TextScorerConfig | None = None, *, encoder: TextEncoder | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = make_config(TextScorerConfig, config, options)
        self.encoder = encoder or TextEncoder(self.config.encoder_config())
        self.item_embeddings = np.zeros((0, 0), dtype=np.float32)
        self.embedding_info: dict[str, Any] = {}

    def fit(self, data: TrainData) -> TextScorer:
        self.item_embeddings, self.embedding_info = cached_embeddings(
            self.encoder, data.item_text, self.config.cache_dir, progress=self.config.progress
        )
        self._data = data
        return self

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), dim) unit vectors; zero for a user without history."""
        rows, cols, vals = recency_weights(self.data, users, self.config.n_recent, self.config.decay)
        vec = np.zeros((len(users), self.item_embeddings.shape[1]), dtype=np.float32)
        np.add.at(vec, rows, self.item_embeddings[cols] * vals[:, None])
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        return vec / np.maximum(norms, 1e-12)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        emb = self.item_embeddings if items is None else self.item_embeddings[items]
        return self.user_vectors(users) @ emb.T  # (users, dim) @ (dim, items)
