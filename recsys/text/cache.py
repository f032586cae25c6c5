"""Item embeddings computed once and kept on disk, keyed by a fingerprint of model and texts.

A cache entry is ``<key>.npy`` plus ``<key>.json`` (what made it); both are written to temporary
names and renamed into place, so a crash never leaves a half-written entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from recsys.atomic import atomic_writer, write_text
from recsys.text.encoder import TextEncoder


def default_cache_dir() -> Path:
    return Path(os.environ.get("RECSYS_CACHE_DIR", Path.home() / ".cache" / "recsys")) / "embeddings"


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def cached_embeddings(
    encoder: TextEncoder, texts: list[str], cache_dir: str | Path | None = None, *, progress: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of ``texts`` from the cache, or encoded now and stored. Returns (array, metadata)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    meta = {"encoder": encoder.identity(), "texts": texts_digest(texts), "n": len(texts)}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
    npy, info = folder / f"{key}.npy", folder / f"{key}.json"
    if npy.exists() and info.exists():
        try:
            stored = json.loads(info.read_text())
            array = np.load(npy, mmap_mode="r")
            if stored == meta and array.shape[0] == len(texts):
                return np.asarray(array, dtype=np.float32), {**meta, "cache": "hit", "key": key}
        except (OSError, ValueError, json.JSONDecodeError):
            pass  # a damaged entry is recomputed and replaced
    array = encoder.encode(texts, progress=progress, desc="encoding items")
    with atomic_writer(npy) as fh:
        np.save(fh, array)
    write_text(info, json.dumps(meta, sort_keys=True, indent=1))
    return array, {**meta, "cache": "miss", "key": key}
