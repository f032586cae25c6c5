"""Fine-tune the two-tower encoder on next-item pairs, with early stopping on validation NDCG@10.

The run trains on the validation split's training data (every user's items but the last two),
scores the validation targets with the full-ranking evaluator of ``recsys.evaluation`` every
``eval_every`` steps, and keeps the best checkpoint. The training state is saved every
``save_every`` steps, so a run that is interrupted resumes where it stopped.

Run folder::

    encoder.json        points at the best checkpoint; the settings a scorer needs to use it
    best-000400/        the best checkpoint: item_tower/ (and user_tower/), encoder.json
    state.pt            optimiser, scheduler, step, RNG states: for resuming
    history.jsonl       one line per evaluation
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.atomic import atomic_writer, write_text
from recsys.config import make_config
from recsys.data.dataset import Dataset
from recsys.data.split import Split, all_interactions, make_split
from recsys.data.train_data import TrainData
from recsys.devices import torch_device
from recsys.errors import ArtifactError, ConfigError
from recsys.evaluation.protocol import evaluate
from recsys.scorers.text import CHECKPOINT_META, ITEM_BIAS, TextScorer, TextScorerConfig
from recsys.text.encoder import weights_digest
from recsys.text.losses import InfoNCELoss
from recsys.text.model import TwoTower
from recsys.text.pairs import ItemBatch, TextBatch, item_batches, next_item_pairs, text_batches
from recsys.text.train_config import EncoderTrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_step: int
    best_metrics: dict[str, float]
    steps: int
    seconds: float
    examples: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds else float("nan")


def _pad(
    token_lists: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, toks in enumerate(token_lists):
        ids[row, : len(toks)] = torch.tensor(toks)
        mask[row, : len(toks)] = 1
    return ids.to(device), mask.to(device)


class _LiveScorer(TextScorer):
    """The model being trained, as a scorer: given item embeddings, user vectors from the live towers."""

    def __init__(self, config: TextScorerConfig, trainer: EncoderTrainer) -> None:
        super().__init__(config)
        self.trainer = trainer

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        if self.config.user_input == "items":
            return super().user_vectors(users)
        texts = [self.trainer.user_text(self.data, int(u)) for u in users]
        vec = self.trainer.encode_user_texts(texts)
        vec[self.data.history_lengths()[users] == 0] = 0.0
        return vec


class EncoderTrainer:
    """Holds the model, data and optimiser of one run; ``run()`` trains until a stop condition."""

    def __init__(self, dataset: Dataset, config: EncoderTrainConfig, run_dir: str | Path) -> None:
        from transformers import AutoTokenizer

        self.config = cfg = config
        self.run_dir = Path(run_dir)
        self.device = torch_device(cfg.device, "encoder")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.dataset = dataset
        self.split: Split = (
            make_split(dataset, "valid", cfg.split_kind) if cfg.holdout else all_interactions(dataset)
        )
        self.data = TrainData.from_split(dataset, self.split)
        self.eval_split = self._eval_subset(self.split)
        self.pairs = next_item_pairs(self.data)
        if len(self.pairs) == 0:
            raise ConfigError("no training pairs: every user has fewer than two training events")
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_config().base_path, local_files_only=True)
        self.item_tokens: list[list[int]] = self.tokenizer(
            self.data.item_text, truncation=True, max_length=cfg.max_length
        )["input_ids"]
        self.model = TwoTower(cfg.model_config()).to(self.device)
        self.item_prefix = self._item_prefix() if self.model.n_frozen else None
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.batches_per_epoch = self._count_batches()
        total = math.ceil(self.batches_per_epoch * cfg.epochs / cfg.grad_accum)
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        warmup = max(1, int(cfg.warmup_ratio * self.total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: min(
                (s + 1) / warmup, max(0.0, (self.total_steps - s) / max(1, self.total_steps - warmup))
            ),
        )
        self.loss_fn = InfoNCELoss(cfg.temperature)
        self.hard = self._hard_negatives() if cfg.hard_negatives else None
        self.bank: torch.Tensor | None = None  # (n_items, d) catalogue embeddings, no gradient
        self.bank_step = -1
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.examples = 0
        self.elapsed = 0.0
        self.best: dict[str, Any] = {"ndcg@10": -1.0, "step": -1}
        self.bad_evals = 0
        self.head_done = False
        self.item_bias: torch.Tensor | None = None  # stage 1's learned prior per item (logit units)
        self.history: list[dict[str, Any]] = []

    # ----- data -------------------------------------------------------------------------------
    def _eval_subset(self, split: Split) -> Split:
        n = self.config.eval_users
        if not n or split.targets.height <= n:
            return split
        rng = np.random.default_rng(self.config.seed)
        keep = np.sort(rng.choice(split.targets.height, size=n, replace=False))
        return dataclasses.replace(
            split, targets=split.targets[keep], protocol={**split.protocol, "subsample": n}
        )

    def _batches(self, epoch: int) -> Iterator[ItemBatch | TextBatch]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch])
        if cfg.user_input == "items":
            return item_batches(
                self.data,
                self.pairs,
                n_recent=cfg.n_recent,
                decay=cfg.decay,
                batch_size=cfg.batch_size,
                rng=rng,
            )
        return text_batches(
            self.data,
            self.pairs,
            n_recent=cfg.n_recent,
            separator=cfg.separator,
            batch_size=cfg.batch_size,
            rng=rng,
        )

    def _count_batches(self) -> int:
        if self.config.user_input == "text":
            return math.ceil(len(self.pairs) / self.config.batch_size)
        return sum(1 for _ in self._batches(0))

    def _hard_negatives(self) -> np.ndarray:
        """(n_users, hard_negatives) ALS top items outside each user's training history."""
        from recsys.evaluation.metrics import top_k
        from recsys.scorers.als import ALSScorer

        als = ALSScorer().fit(self.data)
        out = np.empty((self.data.n_users, self.config.hard_negatives), dtype=np.int64)
        for start in range(0, self.data.n_users, 2048):
            users = np.arange(start, min(start + 2048, self.data.n_users))
            scores = als.score(users)
            rows, cols = self.data.matrix[users].nonzero()
            scores[rows, cols] = -np.inf
            out[users] = top_k(scores, self.config.hard_negatives)
        return out

    def user_text(self, data: TrainData, user: int) -> str:
        from recsys.text.pairs import user_text

        return user_text(data.item_text, data.history(user), self.config.n_recent, self.config.separator)

    # ----- model ------------------------------------------------------------------------------
    def _item_prefix(self, batch: int = 128) -> list[torch.Tensor]:
        """Every item's hidden states after the frozen layers, computed once (eval mode, no dropout)."""
        self.model.eval()
        states: list[torch.Tensor] = [torch.empty(0)] * self.data.n_items
        order = np.argsort([len(t) for t in self.item_tokens], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        for s in range(0, len(order), batch):
            rows = order[s : s + batch]
            ids, mask = _pad([self.item_tokens[int(i)] for i in rows], pad, self.device)
            hidden = self.model.item_prefix(ids, mask)
            for k, i in enumerate(rows):
                states[int(i)] = hidden[k, : len(self.item_tokens[int(i)])].clone()
        self.model.train()
        return states

    def _encode_item_rows(self, rows: np.ndarray) -> torch.Tensor:
        if self.item_prefix is None:
            pad = self.tokenizer.pad_token_id or 0
            ids, mask = _pad([self.item_tokens[int(i)] for i in rows], pad, self.device)
            return self.model.encode_items(ids, mask)
        cached = [self.item_prefix[int(i)] for i in rows]  # each (tokens, d)
        width = max(len(c) for c in cached)
        hidden = torch.zeros((len(rows), width, cached[0].shape[-1]), device=self.device)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=self.device)
        for k, c in enumerate(cached):
            hidden[k, : len(c)] = c
            mask[k, : len(c)] = 1
        return self.model.encode_items_from_prefix(hidden, mask)

    def _encode_users(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, truncation=True, max_length=self.config.user_max_length)["input_ids"]
        ids, mask = _pad(tok, self.tokenizer.pad_token_id or 0, self.device)
        return self.model.encode_users(ids, mask)

    def encode_user_texts(self, texts: list[str], batch: int = 64) -> np.ndarray:
        self.model.eval()
        with torch.inference_mode():
            parts = [
                self._encode_users(texts[s : s + batch]).float().cpu().numpy()
                for s in range(0, len(texts), batch)
            ]
        self.model.train()
        return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)

    def encode_all_items(self, batch: int = 128) -> np.ndarray:
        self.model.eval()
        order = np.argsort([len(t) for t in self.item_tokens], kind="stable")
        with torch.inference_mode():
            parts = [
                self._encode_item_rows(order[s : s + batch]).float().cpu().numpy()
                for s in range(0, len(order), batch)
            ]
        self.model.train()
        stacked = np.concatenate(parts)
        out = np.empty_like(stacked)
        out[order] = stacked
        return out

    def _base_item_embeddings(self) -> torch.Tensor:
        """Every item's normalised pooled state under the base model, before the projection:
        (n_items, d). Stage 1 runs before the transformer trains (and LoRA's adapters start as a
        no-op), so these are the zero-shot embeddings of the item texts, which the disk cache that the
        text scorers share already holds (``recsys.text.cache``; equal to ``_pooled_all`` but for
        the order of float sums: ``tests/text/test_train.py``)."""
        from recsys.text.cache import base_embeddings

        embeddings, _ = base_embeddings(
            self.config.model_config().base_path, self.data.item_text, max_length=self.config.max_length
        )
        return torch.from_numpy(np.array(embeddings, dtype=np.float32)).to(self.device)  # a writable copy

    def _pooled_all(self, batch: int = 128) -> torch.Tensor:
        """Every item's pooled state before the projection (eval mode, no gradient): (n_items, d)."""
        self.model.eval()
        out = torch.empty((self.data.n_items, self.model.dim), device=self.device)
        head, self.model.item_head = self.model.item_head, torch.nn.Identity()
        try:
            with torch.no_grad():
                for s in range(0, self.data.n_items, batch):
                    rows = np.arange(s, min(s + batch, self.data.n_items))
                    # With the projection swapped out, this is the normalised pooled state; the
                    # projection has no bias, so the scale does not matter after it is normalised again.
                    out[rows] = self._encode_item_rows(rows)
        finally:
            self.model.item_head = head
            self.model.train()
        return out

    def train_head(self, progress: bool = False) -> None:
        """Stage 1: fit the projection alone over frozen pooled embeddings (full softmax)."""
        from tqdm.auto import tqdm

        cfg = self.config
        t0 = time.perf_counter()
        pooled = self._base_item_embeddings()
        n = cfg.n_recent
        contexts = np.full((len(self.pairs), n), 0, dtype=np.int64)
        weights = np.zeros((len(self.pairs), n), dtype=np.float32)
        targets = np.empty(len(self.pairs), dtype=np.int64)
        for p, (u, t) in enumerate(zip(self.pairs.users, self.pairs.steps, strict=True)):
            seq = self.data.history(int(u))
            ctx = seq[max(0, t - n) : t][::-1]  # newest first
            contexts[p, : len(ctx)] = ctx
            weights[p, : len(ctx)] = cfg.decay ** np.arange(len(ctx))
            targets[p] = seq[t]
        ctx_t, w_t = (
            torch.as_tensor(contexts, device=self.device),
            torch.as_tensor(weights, device=self.device),
        )
        head = self.model.item_head
        if not isinstance(head, torch.nn.Linear):
            raise ConfigError("stage 1 trains the projection: set projection = true")
        bias = torch.zeros(self.data.n_items, device=self.device, requires_grad=cfg.head_item_bias)
        params = [*head.parameters(), bias] if cfg.head_item_bias else list(head.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.head_learning_rate, weight_decay=0.0)
        rng = np.random.default_rng([cfg.seed, 1])
        size = 512
        never_seen = torch.as_tensor(
            (self.data.item_counts == 0) if cfg.head_seen_items_only else np.zeros(self.data.n_items, bool),
            device=self.device,
        )
        identity = torch.eye(self.model.dim, device=self.device)
        bar = tqdm(total=cfg.head_epochs, desc="projection (stage 1)", unit="epoch", disable=not progress)
        for epoch in range(cfg.head_epochs):
            for group in optimizer.param_groups:
                group["lr"] = cfg.head_learning_rate * (1 - epoch / cfg.head_epochs)
            order = rng.permutation(len(targets))
            for start in range(0, len(order), size):
                idx = order[start : start + size]
                emb = torch.nn.functional.normalize(head(pooled), dim=-1)  # (n_items, d)
                users = torch.nn.functional.normalize(
                    (emb[ctx_t[idx]] * w_t[idx][..., None]).sum(dim=1), dim=-1
                )
                exclude = torch.as_tensor(
                    self.data.matrix[self.pairs.users[idx]].toarray() > 0, device=self.device
                )
                exclude |= never_seen[None, :]
                loss = self.loss_fn(
                    users,
                    emb,
                    torch.as_tensor(targets[idx], device=self.device),
                    exclude,
                    bias if cfg.head_item_bias else None,
                )
                if cfg.head_identity_decay:
                    loss = loss + cfg.head_identity_decay * ((head.weight - identity) ** 2).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
        bar.close()
        if cfg.head_mix < 1.0:
            with torch.no_grad():
                head.weight.mul_(cfg.head_mix).add_(identity, alpha=1.0 - cfg.head_mix)
        self.item_bias = bias.detach().clone() if cfg.head_item_bias else None
        self.head_done = True
        self.elapsed += time.perf_counter() - t0
        log.info("projection trained in %.0fs (%d epochs)", time.perf_counter() - t0, cfg.head_epochs)

    def score_bias(self) -> tuple[np.ndarray, float] | None:
        """Stage 1's item bias in score units (τ·b, added to the cosine) for every item with a
        training interaction, and the bias a never-seen item gets, or None without one.

        A new item's popularity is unknown; ranking by p(i | u) ∝ exp(s/τ + b_i), its expected
        factor is E[exp(b)] over the items we know, so it gets τ·log mean exp(b): about the 60th
        percentile here, above the median because popularity is skewed (benchmarks/RESULTS.md).
        """
        if self.item_bias is None:
            return None
        seen = self.data.item_counts > 0
        b = self.item_bias.cpu().numpy().astype(np.float64)
        known = b[seen]
        top = known.max() if len(known) else 0.0
        prior = float(top + np.log(np.mean(np.exp(known - top)))) if len(known) else 0.0
        tau = self.config.temperature
        return (np.where(seen, b, prior) * tau).astype(np.float32), prior * tau

    def refresh_bank(self, embeddings: np.ndarray | None = None) -> None:
        """Re-encode the catalogue for the negative bank (or take embeddings just computed)."""
        emb = self.encode_all_items() if embeddings is None else embeddings
        self.bank = torch.as_tensor(emb, device=self.device)
        self.bank_step = self.step

    def _loss(self, batch: ItemBatch | TextBatch) -> tuple[torch.Tensor, int]:
        extra = np.empty(0, dtype=np.int64)
        if self.hard is not None and self.bank is None:
            extra = np.unique(self.hard[batch.owners].ravel())
        if isinstance(batch, ItemBatch):
            extra = np.setdiff1d(extra, batch.items)
            rows = np.concatenate([batch.items, extra])
            emb = self._encode_item_rows(rows)  # (U + H, d)
            ctx = torch.as_tensor(batch.context.clip(min=0), device=self.device)
            w = torch.as_tensor(batch.weights, device=self.device)
            users = torch.nn.functional.normalize((emb[ctx] * w[..., None]).sum(dim=1), dim=-1)  # (P, d)
            exclude = np.concatenate([batch.exclude, self._history_mask(batch.owners, extra)], axis=1)
            targets = batch.targets
        else:
            extra = np.setdiff1d(extra, batch.targets)
            rows = np.concatenate([batch.targets, extra])
            users = self._encode_users(batch.user_texts)  # (P, d)
            emb = self._encode_item_rows(rows)  # (P + H, d)
            exclude = np.concatenate([batch.exclude, self._history_mask(batch.owners, extra)], axis=1)
            targets = np.arange(len(batch.targets))
        if self.bank is not None:
            # Full softmax over the catalogue, every candidate from the fixed bank (no gradient).
            emb = self.bank  # (n_items, d)
            targets = rows[targets]
            exclude = self.data.matrix[batch.owners].toarray() > 0  # the users' histories
        loss = self.loss_fn(
            users,
            emb,
            torch.as_tensor(targets, device=self.device),
            torch.as_tensor(exclude, device=self.device),
        )
        return loss, len(targets)

    def _history_mask(self, owners: np.ndarray, items: np.ndarray) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((len(owners), 0), dtype=bool)
        return np.stack([np.isin(items, self.data.history(int(u))) for u in owners])

    # ----- evaluation and checkpoints -----------------------------------------------------------
    def validate(self) -> dict[str, float]:
        cfg = self.config
        scorer_cfg = TextScorerConfig(**cfg.scorer_settings(), model_path=None)
        embeddings = self.encode_all_items()
        if cfg.bank_refresh:
            self.refresh_bank(embeddings)
        scorer = _LiveScorer(scorer_cfg, self).fit(self.data, item_embeddings=embeddings)
        bias = self.score_bias()
        if bias is not None:
            scorer.item_bias, scorer.new_item_bias = bias
        return evaluate(scorer, self.data, self.eval_split, ks=(10, 50), coverage_k=()).metrics

    def _meta(self, metrics: dict[str, float]) -> dict[str, Any]:
        base = self.config.model_config().base_path
        return {
            "scorer": self.config.scorer_settings(),
            "config": asdict(self.config),
            "data_fingerprint": self.data.fingerprint,
            "dataset": self.dataset.name,
            "base_model": {
                "name": base.name,
                "weights": weights_digest(str(base), (base / "config.json").stat().st_mtime_ns),
            },
            "step": self.step,
            "validation": metrics,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def save_best(self, metrics: dict[str, float]) -> Path:
        name = f"best-{self.step:06d}"
        tmp = self.run_dir / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        towers = self.model.export(tmp, self.tokenizer)
        meta = {**self._meta(metrics), "towers": towers}
        if self.step == 0:
            # No transformer step yet: the towers hold the base model's weights (a projection after
            # them), so a scorer may project the base model's cached item embeddings instead of
            # encoding the catalogue again (``recsys.scorers.text``).
            meta["transformer"] = "base"
        bias = self.score_bias()
        if bias is not None:
            seen = self.data.item_counts > 0
            frame = pl.DataFrame(
                {"item_id": self.data.items.ids.filter(pl.Series(seen)), "bias": bias[0][seen]}
            )
            frame.write_parquet(tmp / ITEM_BIAS)
            meta["item_bias"] = {"file": ITEM_BIAS, "new_item": bias[1], "items": int(seen.sum())}
        write_text(tmp / CHECKPOINT_META, json.dumps(meta, indent=1))
        final = self.run_dir / name
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        write_text(self.run_dir / CHECKPOINT_META, json.dumps({"best": name, **meta}, indent=1))
        for old in self.run_dir.glob("best-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def save_state(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "counters": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "examples": self.examples,
                "elapsed": self.elapsed,
                "bad_evals": self.bad_evals,
                "head_done": self.head_done,
            },
            "best": self.best,
            "history": self.history,
            "config": asdict(self.config),
            "data_fingerprint": self.data.fingerprint,
            "torch_rng": torch.get_rng_state(),
            "bank": (self.bank.cpu(), self.bank_step) if self.bank is not None else None,
            "item_bias": self.item_bias.cpu() if self.item_bias is not None else None,
        }
        with atomic_writer(self.run_dir / "state.pt") as fh:
            torch.save(state, fh)

    def load_state(self) -> bool:
        path = self.run_dir / "state.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["config"] != asdict(self.config) or state["data_fingerprint"] != self.data.fingerprint:
            raise ArtifactError(
                f"{path} was written by a run with other settings or data; resume with the same "
                "config, or start afresh (--fresh) in a new or cleared folder"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key, value in state["counters"].items():
            setattr(self, key, value)
        self.best, self.history = state["best"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("item_bias") is not None:
            self.item_bias = state["item_bias"].to(self.device)
        if state.get("bank") is not None:
            self.bank, self.bank_step = state["bank"][0].to(self.device), state["bank"][1]
        log.info(
            "resumed %s at step %d (epoch %d, batch %d)",
            self.run_dir,
            self.step,
            self.epoch,
            self.batch_in_epoch,
        )
        return True

    def _evaluate_and_keep(self) -> bool:
        """Validate; save a new best checkpoint; return True when patience is exhausted. Without a
        holdout: keep the model as it is now (the last one wins)."""
        if not self.config.holdout:
            self.best = {"step": self.step}
            self.save_best({})
            return False
        t0 = time.perf_counter()
        metrics = self.validate()
        record = {
            "step": self.step,
            "examples": self.examples,
            **metrics,
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        self.history.append(record)
        with (self.run_dir / "history.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if metrics["ndcg@10"] > self.best["ndcg@10"]:
            self.best = {"step": self.step, **metrics}
            self.save_best(metrics)
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        log.info(
            "step %d: validation ndcg@10 %.4f recall@10 %.4f (best %.4f at step %d)",
            self.step,
            metrics["ndcg@10"],
            metrics["recall@10"],
            self.best["ndcg@10"],
            self.best["step"],
        )
        return self.bad_evals >= self.config.patience

    # ----- the loop ---------------------------------------------------------------------------
    def run(self, *, resume: bool = True, progress: bool = True) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.load_state()
        if not resumed:
            (self.run_dir / "history.jsonl").unlink(missing_ok=True)
            if cfg.eval_at_start and cfg.holdout:
                self._evaluate_and_keep()
        if not self.head_done and cfg.projection and cfg.head_epochs and cfg.user_input == "items":
            self.train_head(progress)
            self._evaluate_and_keep()
            self.save_state()
        self.model.train()
        start = time.perf_counter()
        elapsed0 = self.elapsed
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=f"fine-tuning ({cfg.mode})",
            unit="step",
            disable=not progress,
        )
        stopped, ema = "", float("nan")
        last_eval_step = self.step if not resumed or self.history else -1
        micro = 0
        while not stopped:
            if (
                self.step >= self.total_steps
                or self.epoch + self.batch_in_epoch / self.batches_per_epoch >= cfg.epochs
            ):
                stopped = "already complete" if resumed and micro == 0 else "epochs"
                break
            for index, batch in enumerate(self._batches(self.epoch)):
                if index < self.batch_in_epoch:
                    continue  # resumed: these were trained before the interruption
                if cfg.bank_refresh and (self.bank is None or self.step - self.bank_step >= cfg.bank_refresh):
                    self.refresh_bank()
                loss, n = self._loss(batch)
                (loss / cfg.grad_accum).backward()
                self.examples += n
                micro += 1
                self.batch_in_epoch = index + 1
                ema = loss.item() if math.isnan(ema) else 0.9 * ema + 0.1 * loss.item()
                if micro % cfg.grad_accum:
                    continue
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.elapsed = elapsed0 + time.perf_counter() - start
                bar.set_postfix(loss=f"{ema:.3f}", ex_s=f"{self.examples / max(self.elapsed, 1e-9):.1f}")
                bar.update(1)
                if cfg.holdout and self.step % cfg.eval_every == 0:
                    last_eval_step = self.step
                    if self._evaluate_and_keep():
                        stopped = "early stopping"
                if self.step % cfg.save_every == 0 or stopped:
                    self.save_state()
                if not stopped and self.step >= self.total_steps:
                    stopped = "max steps"
                if not stopped and cfg.max_minutes and self.elapsed >= cfg.max_minutes * 60:
                    stopped = "time limit"
                if stopped:
                    break
                if self.epoch + self.batch_in_epoch / self.batches_per_epoch >= cfg.epochs:
                    stopped = "epochs"
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        if last_eval_step != self.step:
            self._evaluate_and_keep()
        self.elapsed = elapsed0 + time.perf_counter() - start
        self.save_state()
        if cfg.holdout:
            log.info(
                "stopped (%s) at step %d; best validation ndcg@10 %.4f at step %d",
                stopped,
                self.step,
                self.best["ndcg@10"],
                self.best["step"],
            )
        else:
            log.info("stopped (%s) at step %d; no holdout: the last model is kept", stopped, self.step)
        return TrainResult(
            run_dir=self.run_dir,
            best_step=int(self.best["step"]),
            best_metrics={k: v for k, v in self.best.items() if k != "step"},
            steps=self.step,
            seconds=self.elapsed,
            examples=self.examples,
            history=self.history,
            stopped=stopped,
        )


def train_encoder(
    dataset: Dataset,
    run_dir: str | Path,
    config: EncoderTrainConfig | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    **options: Any,
) -> TrainResult:
    """Fine-tune an encoder on ``dataset`` into ``run_dir`` (see the module docstring)."""
    cfg = make_config(EncoderTrainConfig, config, options)
    return EncoderTrainer(dataset, cfg, run_dir).run(resume=resume, progress=progress)
