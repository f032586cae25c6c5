"""The two-tower model: the cached-prefix fast path equals the full forward pass."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from recsys.errors import ConfigError
from recsys.text.encoder import default_model_path
from recsys.text.model import TwoTower, TwoTowerConfig


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_prefix_cache_equals_full_forward(mode):
    tok = AutoTokenizer.from_pretrained(default_model_path())
    model = TwoTower(TwoTowerConfig(mode=mode, train_layers=2)).eval()
    batch = tok(
        ["cordless drill with two batteries", "beaker", "PLA filament, 1 kg"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        full = model.encode_items(batch["input_ids"], batch["attention_mask"])
        prefix = model.item_prefix(batch["input_ids"], batch["attention_mask"])
        fast = model.encode_items_from_prefix(prefix, batch["attention_mask"])
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-5)
    assert model.n_frozen == 4


def test_frozen_layers_do_not_train():
    model = TwoTower(TwoTowerConfig(mode="full", train_layers=1))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    heads = ("item_head.", "user_head.")
    assert trainable and all(".layer.5." in n or "pooler" in n or n.startswith(heads) for n in trainable)
    with pytest.raises(ConfigError, match="has 6 layers"):
        TwoTower(TwoTowerConfig(train_layers=7))
