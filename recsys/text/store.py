"""The item-embedding store: a folder with ``embeddings.npy`` (memory-mapped) and ``store.json``.

``store.json`` records what made the embeddings: the encoder's fingerprint (weights and options),
a digest of the item texts, the item count and dimension. Opening a store with different
expectations is refused, so embeddings from another model or catalogue are never used by mistake.
A store is written into a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import ArtifactError

ARRAY, META = "embeddings.npy", "store.json"


def save_store(folder: str | Path, embeddings: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write a store atomically; an existing store at ``folder`` is replaced whole."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        np.save(tmp / ARRAY, np.ascontiguousarray(embeddings, dtype=np.float32))
        full = {**meta, "n": int(embeddings.shape[0]), "dim": int(embeddings.shape[1])}
        (tmp / META).write_text(json.dumps(full, indent=1, sort_keys=True))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{tmp.name}")
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_meta(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    try:
        return json.loads((folder / META).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} is not an embedding store (no {META})") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{folder / META} is damaged ({exc})") from None


def open_store(folder: str | Path, expected: dict[str, Any]) -> np.ndarray:
    """The store's embeddings, memory-mapped, after checking every key of ``expected``."""
    folder = Path(folder)
    meta = read_meta(folder)
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        detail = "; ".join(f"{k}: store has {a!r}, expected {b!r}" for k, (a, b) in wrong.items())
        raise ArtifactError(
            f"embedding store {folder} does not match: {detail}. Rebuild it for this model and data."
        )
    try:
        array = np.load(folder / ARRAY, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder / ARRAY} cannot be read ({exc})") from None
    if array.shape != (meta["n"], meta["dim"]):
        raise ArtifactError(
            f"{folder / ARRAY} has shape {array.shape}, store.json says ({meta['n']}, {meta['dim']})"
        )
    return array
