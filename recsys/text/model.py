"""The two-tower encoder: a user tower and an item tower over one pretrained transformer.

One shared tower by default (the same weights read the user's items and the candidate item);
separate towers as an option. Fine-tuning is full (every weight trains) or LoRA through ``peft``
(low-rank adapters on the attention and feed-forward projections; the base weights stay frozen).
A trained model is exported as plain transformers folders, LoRA adapters merged into the weights,
so inference loads it like any other model.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.errors import ConfigError
from recsys.text.encoder import PROJECTION, default_model_path, mean_pool

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODES = ("full", "lora")


@dataclass(frozen=True)
class TwoTowerConfig:
    base_model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    mode: str = "full"  # full | lora
    shared_towers: bool = True
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("query", "key", "value", "dense")
    # Train only the top N transformer layers (0: all). The layers below are frozen, so their
    # outputs for the item texts can be computed once and reused: about 3x faster per step with N=2.
    train_layers: int = 0
    # Dropout inside the transformer while training. Off by default: the negative bank holds
    # embeddings computed without dropout, and a positive computed with it would stand out.
    dropout: float = 0.0
    # A linear projection after pooling (identity at the start): a learned metric over the text
    # embedding space, cheap to train and saved beside the weights as ``projection.npy``.
    projection: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"encoder mode must be one of {MODES}, not {self.mode!r}")
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ConfigError("lora_rank and lora_alpha must be at least 1")
        if self.train_layers < 0:
            raise ConfigError("train_layers must be >= 0 (0: all layers)")

    @property
    def base_path(self) -> Path:
        return Path(self.base_model) if self.base_model else default_model_path()


def _load_tower(cfg: TwoTowerConfig) -> nn.Module:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(cfg.base_path, local_files_only=True)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = cfg.dropout
    n_layers = len(model.encoder.layer)
    first = frozen_layers(cfg, n_layers)
    if cfg.mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            layers_to_transform=list(range(first, n_layers)) if first else None,
            bias="none",
        )
        return get_peft_model(model, lora)
    if first:
        for param in model.embeddings.parameters():
            param.requires_grad_(False)
        for layer in model.encoder.layer[:first]:
            for param in layer.parameters():
                param.requires_grad_(False)
    return model


def frozen_layers(cfg: TwoTowerConfig, n_layers: int) -> int:
    """How many bottom layers stay frozen (their outputs can be cached)."""
    if cfg.train_layers > n_layers:
        raise ConfigError(f"train_layers is {cfg.train_layers} but the model has {n_layers} layers")
    return n_layers - cfg.train_layers if cfg.train_layers else 0


def _bert(tower: Any) -> Any:
    """The transformers model inside a tower (under peft's wrapper for LoRA)."""
    return tower.get_base_model() if hasattr(tower, "get_base_model") else tower


class TwoTower(nn.Module):
    """``encode_items`` / ``encode_users`` map token batches to unit vectors (mean pooling)."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = config
        self.item_tower = _load_tower(config)
        self.user_tower = self.item_tower if config.shared_towers else _load_tower(config)
        self.dim = dim = int(_bert(self.item_tower).config.hidden_size)
        self.item_head = _head(dim) if config.projection else nn.Identity()
        self.user_head = self.item_head if config.shared_towers or not config.projection else _head(dim)

    def _encode(
        self, tower: nn.Module, head: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        hidden = tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
        return nn.functional.normalize(head(mean_pool(hidden, attention_mask)), dim=-1)  # (B, d)

    def encode_items(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._encode(self.item_tower, self.item_head, input_ids, attention_mask)

    def encode_users(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._encode(self.user_tower, self.user_head, input_ids, attention_mask)

    def pooled_items(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled item states before the projection, no gradient: (B, d)."""
        with torch.no_grad():
            hidden = self.item_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return mean_pool(hidden, attention_mask)

    @property
    def n_frozen(self) -> int:
        return frozen_layers(self.config, len(_bert(self.item_tower).encoder.layer))

    def item_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen bottom layers of the item tower: (B, T, d), no gradient."""
        bert = _bert(self.item_tower)
        with torch.no_grad():
            hidden = bert.embeddings(input_ids=input_ids)
            mask = self._mask(bert, attention_mask, hidden)
            for layer in bert.encoder.layer[: self.n_frozen]:
                hidden = layer(hidden, mask)
        return hidden

    def encode_items_from_prefix(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The rest of the item tower over cached ``item_prefix`` states: equals ``encode_items``."""
        bert = _bert(self.item_tower)
        mask = self._mask(bert, attention_mask, hidden)
        for layer in bert.encoder.layer[self.n_frozen :]:
            hidden = layer(hidden, mask)
        return nn.functional.normalize(self.item_head(mean_pool(hidden, attention_mask)), dim=-1)

    @staticmethod
    def _mask(bert: Any, attention_mask: torch.Tensor, hidden: torch.Tensor) -> Any:
        # The attention mask in the form the layers take, for the model's attention implementation:
        # the public builder an encoder's forward calls (the model's own helper around it is private
        # and changed its arguments in transformers 5.25).
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    def towers(self) -> dict[str, nn.Module]:
        return (
            {"item": self.item_tower}
            if self.config.shared_towers
            else {
                "item": self.item_tower,
                "user": self.user_tower,
            }
        )

    def export(self, folder: Path, tokenizer: Any) -> dict[str, str]:
        """Write each tower as a plain transformers folder (LoRA merged); returns tower → subfolder."""
        out = {}
        heads = {"item": self.item_head, "user": self.user_head}
        for name, tower in self.towers().items():
            plain: Any = copy.deepcopy(tower)
            if self.config.mode == "lora":
                plain = plain.merge_and_unload()
            target = folder / f"{name}_tower"
            plain.save_pretrained(target, safe_serialization=True)
            tokenizer.save_pretrained(target)
            head = heads[name]
            if isinstance(head, nn.Linear):
                np.save(target / PROJECTION, head.weight.detach().cpu().numpy().astype(np.float32))
            out[name] = target.name
        return out


def _head(dim: int) -> nn.Linear:
    head = nn.Linear(dim, dim, bias=False)
    nn.init.eye_(head.weight)  # starts as the pretrained embedding space
    return head
