"""Item embeddings computed once and kept on disk, keyed by a fingerprint of model and texts.

Each entry is an embedding store (``recsys.text.store``) under ``<cache_dir>/<key>``; a damaged or
mismatched entry is re-encoded and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import ArtifactError
from recsys.text.encoder import EncoderConfig, TextEncoder
from recsys.text.store import open_store, save_store


def default_cache_dir() -> Path:
    return Path(os.environ.get("RECSYS_CACHE_DIR", Path.home() / ".cache" / "recsys")) / "embeddings"


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def store_meta(encoder: TextEncoder, texts: list[str]) -> dict[str, Any]:
    """What a store of ``texts`` encoded by ``encoder`` must record."""
    return {"encoder": encoder.fingerprint(), "texts": texts_digest(texts), "n": len(texts)}


def cached_embeddings(
    encoder: TextEncoder, texts: list[str], cache_dir: str | Path | None = None, *, progress: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of ``texts`` from the cache, or encoded now and stored. Returns (array, metadata)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    meta = store_meta(encoder, texts)
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
    entry = folder / key
    if entry.exists():
        try:
            array = open_store(entry, meta)
            return np.asarray(array, dtype=np.float32), {**meta, "cache": "hit", "key": key}
        except ArtifactError:
            pass  # damaged: re-encode and replace below
    array = encoder.encode(texts, progress=progress, desc="encoding items")
    save_store(entry, array, {**meta, "identity": encoder.identity()})
    return array, {**meta, "cache": "miss", "key": key}


def base_embeddings(
    base: str | Path,
    texts: list[str],
    *,
    max_length: int,
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``cached_embeddings`` of ``texts`` under the model folder ``base`` as it is (mean pooling,
    normalised): a fine-tuned encoder's starting point. The trainer's stage 1 and a scorer of a
    checkpoint whose transformer never trained both read it here, so at the same ``max_length`` and
    ``precision`` they share one cache entry, which the text scorers have usually stored already."""
    config = EncoderConfig(model_path=str(base), max_length=max_length, precision=precision)
    return cached_embeddings(TextEncoder(config), texts, cache_dir, progress=progress)
