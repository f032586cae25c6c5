"""Text scorer: cosine between item embeddings and a user vector, zero-shot or fine-tuned.

Item texts are encoded once (cached on disk by ``recsys.text.cache``). The user vector is either

- ``items`` (default): the recency-weighted sum of the user's last ``n_recent`` item embeddings
  (weight ``decay**k`` for the k-th newest), normalised — with ``n_recent = 1``, the cosine to the
  user's last item; no transformer runs for the user;
- ``text``: the user's last ``n_recent`` item texts, newest first, joined by ``separator``, through
  the user tower.

``checkpoint`` points at a folder written by ``recsys train-encoder``; the model and the user-side
settings it was trained with are then read from it, and the prior per item it learned (how much
more often an item is chosen than its text match explains: its popularity) is added to the cosine.
An item the checkpoint never saw in training (a held-out or newly added item) gets the prior of an
item of unknown popularity (see ``EncoderTrainer.score_bias``); ``item_bias = false`` scores by the
cosine alone.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.errors import ArtifactError, ConfigError
from recsys.scorers.base import Scorer, WideTable, grow_rows, history_weights
from recsys.text.cache import base_embeddings, cached_embeddings
from recsys.text.encoder import PROJECTION, EncoderConfig, TextEncoder, default_model_path, weights_digest
from recsys.text.pairs import user_text

USER_INPUTS = ("items", "text")
CHECKPOINT_META = "encoder.json"
ITEM_BIAS = "item_bias.parquet"  # item_id, bias (score units) for the items seen in training


@dataclass(frozen=True)
class TextScorerConfig:
    model_path: str | None = None
    max_length: int = 64
    batch_size: int = 64
    precision: str = "fp32"
    user_input: str = "items"
    n_recent: int = 1
    decay: float = 0.5
    user_model_path: str | None = None  # text mode, separate towers; None: the item model
    user_max_length: int = 128
    separator: str = " | "
    checkpoint: str | None = None
    item_bias: bool = True  # add the checkpoint's learned prior per item (when it has one)
    item_bias_path: str | None = None  # set from the checkpoint
    new_item_bias: float = 0.0  # set from the checkpoint: the prior of an item it never saw
    cache_dir: str | None = None  # None: $RECSYS_CACHE_DIR or ~/.cache/recsys
    progress: bool = False

    def __post_init__(self) -> None:
        if self.n_recent < 1 or not 0.0 < self.decay <= 1.0:
            raise ConfigError("text: n_recent must be >= 1 and decay in (0, 1]")
        if self.user_input not in USER_INPUTS:
            raise ConfigError(f"text: user_input must be one of {USER_INPUTS}, not {self.user_input!r}")

    def encoder_config(self, user: bool = False) -> EncoderConfig:
        path = (self.user_model_path or self.model_path) if user else self.model_path
        return EncoderConfig(
            model_path=path,
            max_length=self.user_max_length if user else self.max_length,
            batch_size=self.batch_size,
            precision=self.precision,
        )


def resolve_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The folder of the best model under ``path`` (a training run or a checkpoint) and its metadata."""
    folder = Path(path)
    meta_path = folder / CHECKPOINT_META
    if not meta_path.exists():
        raise ArtifactError(f"{folder} is not an encoder checkpoint (no {CHECKPOINT_META})")
    meta = json.loads(meta_path.read_text())
    if "best" in meta:  # a training run's pointer to its best checkpoint
        return resolve_checkpoint(folder / meta["best"])
    missing = [t for t in meta.get("towers", {}).values() if not (folder / t / "config.json").exists()]
    if missing or "towers" not in meta:
        raise ArtifactError(f"checkpoint {folder} is incomplete (missing {missing or 'towers'})")
    return folder, meta


def _unchanged_base(meta: dict[str, Any], item_tower: Path) -> str | None:
    """The base model's folder when the checkpoint's item tower is that model's transformer, never
    trained, with a projection after it (``transformer = "base"`` in its metadata, and the base
    weights found with the digest recorded); else None: encode through the checkpoint."""
    if meta.get("transformer") != "base" or not (item_tower / PROJECTION).exists():
        return None
    try:
        configured = meta.get("config", {}).get("base_model")
        base = Path(configured) if configured else default_model_path()
        digest = weights_digest(str(base), (base / "config.json").stat().st_mtime_ns)
    except (ArtifactError, OSError):
        return None
    return str(base) if digest == meta.get("base_model", {}).get("weights") else None


def config_from_checkpoint(config: TextScorerConfig) -> TextScorerConfig:
    if config.checkpoint is None:
        return config
    folder, meta = resolve_checkpoint(config.checkpoint)
    towers, user_side = meta["towers"], meta["scorer"]
    bias = meta.get("item_bias") if config.item_bias else None
    if bias is not None and not (folder / bias["file"]).exists():
        raise ArtifactError(f"checkpoint {folder} is incomplete (missing {bias['file']})")
    return dataclasses.replace(
        config,
        item_bias_path=str(folder / bias["file"]) if bias else None,
        new_item_bias=float(bias["new_item"]) if bias else 0.0,
        model_path=str(folder / towers["item"]),
        user_model_path=str(folder / towers["user"]) if "user" in towers else None,
        **{
            k: user_side[k]
            for k in ("user_input", "n_recent", "decay", "max_length", "user_max_length", "separator")
        },
    )


class TextScorer(Scorer):
    name = "text"

    def __init__(self, config: TextScorerConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = config_from_checkpoint(make_config(TextScorerConfig, config, options))
        self.encoder = TextEncoder(self.config.encoder_config())
        self._user_encoder: TextEncoder | None = None
        self.item_embeddings = np.zeros((0, 0), dtype=np.float32)
        self._wide = WideTable()  # item_embeddings in float64, for user_item_scores
        self.embedding_info: dict[str, Any] = {}
        self.item_bias: np.ndarray | None = None  # (n_items,) added to the cosine; None: none
        self.new_item_bias = self.config.new_item_bias

    @property
    def user_encoder(self) -> TextEncoder:
        if self._user_encoder is None:
            self._user_encoder = TextEncoder(self.config.encoder_config(user=True))
        return self._user_encoder

    def fit(self, data: TrainData, *, item_embeddings: np.ndarray | None = None) -> TextScorer:
        """Encode (or load from the cache) every item; ``item_embeddings`` skips the encoder."""
        if item_embeddings is not None:
            if item_embeddings.shape[0] != data.n_items:
                raise ValueError(
                    f"item_embeddings has {item_embeddings.shape[0]} rows for {data.n_items} items"
                )
            self.item_embeddings, self.embedding_info = item_embeddings, {"cache": "given"}
        elif (base := self._unchanged_base()) is not None:
            self.item_embeddings, self.embedding_info = self._projected_base(data, base)
        else:
            self.item_embeddings, self.embedding_info = cached_embeddings(
                self.encoder, data.item_text, self.config.cache_dir, progress=self.config.progress
            )
        self._data = data
        self.item_bias = self._load_bias(data) if self.config.item_bias_path else None
        return self

    def _unchanged_base(self) -> str | None:
        """The base model's folder when the checkpoint's transformer never trained (the projection
        alone, as ``recsys train`` fits it on a CPU); else None. Resolved when fitting, not when
        constructing: a scorer loaded from an artifact (``set_state``) never needs it, and checking
        means hashing the base model's weights."""
        if self.config.checkpoint is None or self.config.model_path is None:
            return None
        _, meta = resolve_checkpoint(self.config.checkpoint)
        return _unchanged_base(meta, Path(self.config.model_path))

    def _projected_base(self, data: TrainData, base: str) -> tuple[np.ndarray, dict[str, Any]]:
        """The base model's cached item embeddings through the checkpoint's projection, normalised:
        what the checkpoint's tower computes (mean pooling, projection, normalisation; the
        projection has no bias, so the base vectors' own normalisation does not change the
        result), without running the transformer for every item again."""
        cfg = self.config
        pooled, info = base_embeddings(
            base,
            data.item_text,
            max_length=cfg.max_length,
            precision=cfg.precision,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
        )
        assert cfg.model_path is not None  # narrowed by _unchanged_base, which found the tower there
        projection = np.load(Path(cfg.model_path) / PROJECTION).astype(np.float32)  # (d_out, d_in)
        projected = np.asarray(pooled, dtype=np.float32) @ projection.T  # (n_items, d_out)
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        return projected, {**info, "projected": PROJECTION}

    def _load_bias(self, data: TrainData) -> np.ndarray:
        """The checkpoint's prior for each of ``data``'s items (by id); others get the new-item prior."""
        frame = pl.read_parquet(self.config.item_bias_path)
        rows = data.items.index(frame["item_id"])
        bias = np.full(data.n_items, self.new_item_bias, dtype=np.float32)
        bias[rows[rows >= 0]] = frame["bias"].to_numpy()[rows >= 0]
        return bias

    def with_items(self, data: TrainData, rows: np.ndarray) -> TextScorer:
        """A copy over ``data``'s grown or changed catalogue: ``rows`` (new or edited items)
        encoded from their text; new items get the prior of an unknown one."""
        rows = np.asarray(rows, dtype=np.int64)
        out = copy.copy(self)
        out._wide = WideTable()
        emb = grow_rows(self.item_embeddings, data.n_items)
        if len(rows):
            emb[rows] = self.encoder.encode([data.item_text[int(r)] for r in rows])
        out.item_embeddings, out._data = emb, data
        out.item_bias = self.with_new_items(data.n_items)
        return out

    def with_new_items(self, n_items: int) -> np.ndarray | None:
        """The item bias grown to ``n_items`` (items added after training get the new-item prior)."""
        if self.item_bias is None:
            return None
        return grow_rows(self.item_bias, n_items, self.new_item_bias)

    def get_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {"item_embeddings": self.item_embeddings}
        if self.item_bias is not None:
            state.update(item_bias=self.item_bias, new_item_bias=np.array(self.new_item_bias, np.float32))
        return state

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> TextScorer:
        self.item_embeddings = np.ascontiguousarray(state["item_embeddings"], dtype=np.float32)
        self.embedding_info, self._data = {"cache": "artifact"}, data
        if "item_bias" in state and self.config.item_bias:
            self.item_bias = np.asarray(state["item_bias"], dtype=np.float32)
            self.new_item_bias = float(state["new_item_bias"])
        return self

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), dim) unit vectors; zero for a user without history."""
        return self.history_vectors([self.data.history(int(u)) for u in users])

    def history_vectors(self, histories: list[np.ndarray]) -> np.ndarray:
        """(len(histories), dim) unit vectors of item-row histories (oldest first); zero when empty."""
        cfg, data = self.config, self.data
        if cfg.user_input == "text":
            texts = [user_text(data.item_text, h, cfg.n_recent, cfg.separator) for h in histories]
            vec = self.user_encoder.encode(texts) if texts else np.zeros((0, self.item_embeddings.shape[1]))
            empty = np.array([len(h) == 0 for h in histories], dtype=bool)
            vec[empty] = 0.0
            return vec.astype(np.float32)
        rows, cols, vals = history_weights(histories, cfg.n_recent, cfg.decay)
        vec = np.zeros((len(histories), self.item_embeddings.shape[1]), dtype=np.float32)
        np.add.at(vec, rows, self.item_embeddings[cols] * vals[:, None])
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        return vec / np.maximum(norms, 1e-12)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._scores(self.user_vectors(users), items)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        return self._scores(self.history_vectors(histories), items)

    def _scores(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        scores = self._wide.scores(self.item_embeddings, users, items)
        if self.item_bias is not None:
            scores += self.item_bias[None, :] if items is None else self.item_bias[items][None, :]
        return scores


class EncoderScorer(TextScorer):
    """The fine-tuned encoder of ``recsys train-encoder``: a text scorer that requires a checkpoint."""

    name = "encoder"

    def __init__(self, config: TextScorerConfig | None = None, **options: Any) -> None:
        cfg = make_config(TextScorerConfig, config, options)
        if cfg.checkpoint is None:
            raise ConfigError("the 'encoder' model needs a checkpoint: --set encoder.checkpoint=RUN_DIR")
        super().__init__(cfg)
