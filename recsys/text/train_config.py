"""The settings of one encoder fine-tuning run (``recsys train-encoder``; TOML section ``[encoder]``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from recsys.devices import check_device
from recsys.errors import ConfigError
from recsys.text.model import TwoTowerConfig


@dataclass(frozen=True)
class EncoderTrainConfig:
    # What the user side sees (kept in the checkpoint for the scorer).
    user_input: str = "items"  # items: pool the item tower's embeddings of recent items; text: user tower
    n_recent: int = 3
    decay: float = 0.7  # chosen on validation (benchmarks/RESULTS.md)
    separator: str = " | "
    max_length: int = 64  # item text tokens
    user_max_length: int = 128  # user text tokens (text mode)
    # Model: the fields of recsys.text.model.TwoTowerConfig, with its defaults and meanings.
    base_model: str | None = TwoTowerConfig.base_model
    mode: str = TwoTowerConfig.mode  # full | lora
    shared_towers: bool = TwoTowerConfig.shared_towers
    lora_rank: int = TwoTowerConfig.lora_rank
    lora_alpha: int = TwoTowerConfig.lora_alpha
    lora_dropout: float = TwoTowerConfig.lora_dropout
    lora_targets: tuple[str, ...] = TwoTowerConfig.lora_targets
    train_layers: int = TwoTowerConfig.train_layers  # top N layers train (0: all)
    dropout: float = TwoTowerConfig.dropout  # transformer dropout while training
    projection: bool = TwoTowerConfig.projection  # a linear projection after pooling
    # Stage 1 (items mode): train the projection alone over the frozen pooled embeddings of every
    # item, with a full softmax over the catalogue: seconds per epoch. Stage 2 then fine-tunes.
    head_epochs: int = 40
    head_learning_rate: float = 3e-3  # decays linearly to 0 over the stage
    # Items without a training interaction never win the softmax; as candidates they would only
    # ever be pushed down, so a new item would start below every trained one. Leave them out.
    head_seen_items_only: bool = True
    # Pull the projection toward the identity (the pretrained space): weight × ||W − I||². Keeps the
    # metric from specialising to the trained items: 0.01 lifts never-seen items above zero-shot
    # (cold start) at a cost on the others (benchmarks/RESULTS.md), so the default is off.
    head_identity_decay: float = 0.0
    # A learned prior per item in the stage-1 softmax (its popularity: how much more often it is
    # chosen than its text match explains), kept with the checkpoint and added to the cosine when
    # scoring. The projection then learns what matches a user rather than what sells, and an item
    # never seen in training gets the prior of an item of unknown popularity instead of being held
    # down by a metric fitted to the trained ones (benchmarks/RESULTS.md: warm and cold start both
    # gain over the projection without it).
    head_item_bias: bool = True
    # Weight-space ensembling with the pretrained space after stage 1 (as WiSE-FT, Wortsman et al.,
    # CVPR 2022): the projection becomes mix × W + (1 − mix) × I. With the item prior on, 0.6 costs
    # warm validation NDCG@10 0.0002 and ranks never-seen items better (benchmarks/RESULTS.md).
    head_mix: float = 0.6
    # Optimisation.
    batch_size: int = 64  # pairs per micro-batch
    grad_accum: int = 1
    learning_rate: float = 0.0  # 0: 5e-5 for full fine-tuning, 5e-4 for LoRA
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    temperature: float = 0.07
    epochs: float = 1.0  # of stage 2; 0: the projection (stage 1) only
    max_steps: int = 0  # 0: no limit
    max_minutes: float = 0.0  # 0: no limit; counts time across resumed runs
    hard_negatives: int = 0  # per user, from ALS's top items outside the history
    # Candidates from the whole catalogue: every item's embedding, re-encoded every ``bank_refresh``
    # steps and held fixed in between (a target network, as in MoCo or DQN); the gradient flows
    # through the user side. The loss is then a full softmax over the catalogue, as the evaluation
    # ranks it. Mixing fresh positives with stale negatives instead lets the model tell them apart
    # by age, which it learns quickly and which does not generalise. 0: in-batch negatives only.
    bank_refresh: int = 0
    # Early stopping and checkpoints.
    # Hold out each user's last two events (validation and test targets) to validate and stop
    # early on; False: learn from every interaction given, for a run of fixed length (stage 1
    # alone, or a fixed ``epochs`` of stage 2) whose model should be as recent as its data. Without
    # a holdout there is no validation: the last model is kept, with no validation figures.
    holdout: bool = True
    split_kind: str = "auto"
    eval_every: int = 100
    eval_users: int = 2000  # validation users scored per evaluation (0: all)
    patience: int = 3
    eval_at_start: bool = True
    save_every: int = 50
    # Runtime.
    seed: int = 0
    device: str = "auto"  # auto (a CUDA GPU where torch sees one) | cpu | cuda | cuda:N
    threads: int = 0

    def __post_init__(self) -> None:
        if self.user_input not in ("items", "text"):
            raise ConfigError(f"user_input must be 'items' or 'text', not {self.user_input!r}")
        if self.batch_size < 2 or self.grad_accum < 1 or self.n_recent < 1:
            raise ConfigError("batch_size must be >= 2, grad_accum and n_recent >= 1")
        if self.epochs < 0 or self.temperature <= 0 or self.eval_every < 1 or self.save_every < 1:
            raise ConfigError("temperature, eval_every and save_every must be positive, epochs >= 0")
        if not 0.0 <= self.head_mix <= 1.0:
            raise ConfigError(f"head_mix must be in [0, 1], not {self.head_mix}")
        check_device(self.device, "encoder")
        self.model_config()  # validates mode and LoRA settings

    def model_config(self) -> TwoTowerConfig:
        options = {f.name: getattr(self, f.name) for f in fields(TwoTowerConfig)}
        return TwoTowerConfig(**{**options, "lora_targets": tuple(self.lora_targets)})

    @property
    def lr(self) -> float:
        return self.learning_rate or (5e-4 if self.mode == "lora" else 5e-5)

    def scorer_settings(self) -> dict[str, Any]:
        return {
            "user_input": self.user_input,
            "n_recent": self.n_recent,
            "decay": self.decay,
            "max_length": self.max_length,
            "user_max_length": self.user_max_length,
            "separator": self.separator,
        }
