"""A fitted ``Recommender`` as one folder: everything it needs to serve, and a manifest to check it.

Layout::

    manifest.json          format, versions, configs, data fingerprint, file list with sizes
    data/items.parquet     the catalogue
    data/users.parquet     the user ids, in row order
    data/train.parquet     the histories the scorers were fitted on (user_id, item_id, seq)
    scorers/<name>.npz     each scorer's fitted arrays (its config is in the manifest)
    encoders/<name>/       the fine-tuned encoder checkpoint of each ``encoder`` scorer
    models/<name>.pt       single-file checkpoints (``sasrec``)
    ranker.txt             the LightGBM model

The folder is written beside its destination and renamed into place, so a reader sees the old
artifact or the new one, never half of one. Loading checks the format, that every listed file is
there with its size, that the rebuilt training data has the manifest's fingerprint, and that the
ranker's features match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.atomic import exchange
from recsys.data.train_data import TrainData
from recsys.errors import ArtifactError
from recsys.rank.ranker import Ranker
from recsys.recommender import Recommender, RecommenderConfig
from recsys.scorers import build_scorer
from recsys.scorers.text import TextScorer, resolve_checkpoint

FORMAT = 1
MANIFEST = "manifest.json"
# Scorer options whose default changed, with the value artifacts written before had: saving writes
# each explicitly, loading fills the old value where an artifact lacks it, so refitting an old
# artifact's scorers (``recsys evaluate --models hybrid``) learns what it learned.
CHANGED_DEFAULTS: dict[str, dict[str, Any]] = {"seqlinear": {"text_prior": 0.0}}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("recsys", "numpy", "polars", "lightgbm", "implicit", "torch", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def save_recommender(rec: Recommender, folder: str | Path, *, report: dict[str, Any] | None = None) -> Path:
    """Write ``rec`` to ``folder`` atomically (replacing an artifact already there)."""
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "data").mkdir(parents=True)
        (tmp / "scorers").mkdir()
        data = rec.data
        data.item_frame.write_parquet(tmp / "data" / "items.parquet")
        pl.DataFrame({"user_id": data.users.ids}).write_parquet(tmp / "data" / "users.parquet")
        data.train_frame.write_parquet(tmp / "data" / "train.parquet")
        scorers: dict[str, dict[str, Any]] = {}
        for name, scorer in rec.scorers.items():
            with (tmp / "scorers" / f"{name}.npz").open("wb") as fh:
                np.savez(fh, **scorer.get_state())  # type: ignore[arg-type]
            spec = dict(rec.config.scorers[name])
            for option in CHANGED_DEFAULTS.get(spec["model"], {}):
                spec.setdefault(option, getattr(scorer.config, option))
            checkpoint = spec.get("checkpoint")
            if checkpoint and Path(checkpoint).is_file():  # a single-file model (sasrec)
                (tmp / "models").mkdir(exist_ok=True)
                shutil.copy2(checkpoint, tmp / "models" / f"{name}{Path(checkpoint).suffix}")
                spec["checkpoint"] = f"models/{name}{Path(checkpoint).suffix}"
            elif checkpoint:
                source, _ = resolve_checkpoint(checkpoint)
                shutil.copytree(source, tmp / "encoders" / name)
                spec["checkpoint"] = f"encoders/{name}"  # relative to the artifact
            scorers[name] = spec
        ranker_meta = rec.ranker.save(tmp)
        config = dataclasses.replace(rec.config, scorers=scorers)
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "config": dataclasses.asdict(config),
            "data": {"fingerprint": data.fingerprint, "users": data.n_users, "items": data.n_items},
            "ranker": ranker_meta,
            "report": report or {},
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if target.exists():
            # One atomic swap: a process killed at any point leaves a complete artifact at ``target``.
            if not exchange(tmp, target):  # no renameat2: two renames, undone by ``_recover``
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def artifact_version(folder: str | Path) -> str:
    """The artifact's version as responses and cache keys carry it: a digest of its manifest."""
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()[:12]


def _recover(folder: Path) -> None:
    """Where a save without an atomic swap was killed between its two renames, put the previous
    artifact back."""
    if folder.exists():
        return
    for old in sorted(folder.parent.glob(f".{folder.name}.old-*")):
        if (old / MANIFEST).is_file():
            os.replace(old, folder)
            return


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    _recover(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise ArtifactError(
            f"{folder} is not a recommender artifact (no {MANIFEST}); train one with `recsys train`"
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ArtifactError(
            f"{path} has format {manifest.get('format')!r}; this version reads format {FORMAT}"
        )
    return manifest


def load_recommender(folder: str | Path) -> Recommender:
    """Load and check an artifact written by ``save_recommender``."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = []
    for name, size in manifest["files"].items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} has {path.stat().st_size} bytes, the manifest says {size}")
    if problems:
        raise ArtifactError(f"artifact {folder} is incomplete or altered: " + "; ".join(problems[:5]))
    items = pl.read_parquet(folder / "data" / "items.parquet")
    users = pl.read_parquet(folder / "data" / "users.parquet")["user_id"]
    train = pl.read_parquet(folder / "data" / "train.parquet")
    data = TrainData.build(users, items, train)
    if data.fingerprint != manifest["data"]["fingerprint"]:
        raise ArtifactError(
            f"artifact {folder}: its training data has fingerprint {data.fingerprint}, "
            f"the manifest says {manifest['data']['fingerprint']}"
        )
    raw = manifest["config"]
    specs = {
        name: {**spec, "checkpoint": str(folder / spec["checkpoint"])} if spec.get("checkpoint") else spec
        for name, spec in raw["scorers"].items()
    }
    specs = {name: {**CHANGED_DEFAULTS.get(spec["model"], {}), **spec} for name, spec in specs.items()}
    # An artifact written before ``count_features`` existed has a ranker that learned raw counts;
    # one written before ``cold_candidates``, candidates from its ``candidates`` sources alone; one
    # written before ``history_features``, a ranker that never saw them.
    old = {"count_features": "raw", "cold_candidates": {}, "history_features": False}
    config = RecommenderConfig(**{**old, **raw, "scorers": specs})
    scorers = {}
    for name, spec in specs.items():
        scorer = build_scorer(spec["model"], {k: v for k, v in spec.items() if k != "model"})
        with np.load(folder / "scorers" / f"{name}.npz") as npz:
            state = {k: npz[k] for k in npz.files}
        scorers[name] = scorer.set_state(state, data)
        if isinstance(scorer, TextScorer) and scorer.item_embeddings.shape[0] != data.n_items:
            raise ArtifactError(f"artifact {folder}: scorer {name} has embeddings for another catalogue")
    ranker = Ranker.load(folder, manifest["ranker"])
    return Recommender(config, data, scorers, ranker)
