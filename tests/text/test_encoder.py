"""The encoder wrapper equals the raw transformers forward pass; the embedding cache is keyed right."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.errors import ArtifactError, ConfigError
from recsys.text.cache import cached_embeddings
from recsys.text.encoder import TextEncoder, mean_pool

TEXTS = [
    "Cordless brushless drill with two batteries",
    "Borosilicate glass beaker, 500 ml, graduated",
    "PLA filament 1.75 mm, 1 kg spool, green",
    "Nitrile gloves",
    "A very long description " * 40,
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(batch_size=2)


def test_equals_raw_transformers(encoder):
    ours = encoder.encode(TEXTS)
    tok = encoder.tokenizer(TEXTS, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(**tok).last_hidden_state
    raw = torch.nn.functional.normalize(mean_pool(hidden, tok["attention_mask"]), dim=-1).numpy()
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, raw, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_similar_texts_are_closer(encoder):
    e = encoder.encode(["cordless drill", "battery powered drill", "glass beaker"])
    assert e[0] @ e[1] > e[0] @ e[2]


def test_encoders_of_one_folder_share_weights_and_recent_texts(monkeypatch):
    a, b = TextEncoder(), TextEncoder(batch_size=8)  # batch size does not change the output
    assert a.model is b.model  # one copy of the weights per folder and precision
    first = a.encode(TEXTS[:3])
    monkeypatch.setattr(TextEncoder, "_encode", lambda *args: pytest.fail("encoded again"))
    again = b.encode(TEXTS[:3])
    np.testing.assert_array_equal(again, first)
    again[:] = 0.0  # callers own what they get: the memo keeps its own copy
    np.testing.assert_array_equal(a.encode(TEXTS[:3]), first)
    with pytest.raises(pytest.fail.Exception, match="encoded again"):
        TextEncoder(precision="bf16").encode(TEXTS[:3])  # another precision: other embeddings


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 2.0]]


def test_empty_input(encoder):
    assert encoder.encode([]).shape == (0, 384)


def test_cache_hit_miss_and_key(encoder, tmp_path):
    a, info = cached_embeddings(encoder, TEXTS[:3], tmp_path)
    assert info["cache"] == "miss"
    b, info2 = cached_embeddings(encoder, TEXTS[:3], tmp_path)
    assert info2["cache"] == "hit" and info2["key"] == info["key"]
    np.testing.assert_array_equal(a, b)
    _, info3 = cached_embeddings(encoder, [*TEXTS[:2], "changed text"], tmp_path)
    assert info3["cache"] == "miss" and info3["key"] != info["key"]
    other = TextEncoder(max_length=16)
    _, info4 = cached_embeddings(other, TEXTS[:3], tmp_path)
    assert info4["key"] != info["key"], "a different max_length must not reuse embeddings"
    assert not list(tmp_path.glob(".*")), "no temporary files left behind"


def test_damaged_cache_entry_is_recomputed(encoder, tmp_path):
    a, info = cached_embeddings(encoder, TEXTS[:2], tmp_path)
    (tmp_path / info["key"] / "embeddings.npy").write_bytes(b"garbage")
    b, info2 = cached_embeddings(encoder, TEXTS[:2], tmp_path)
    assert info2["cache"] == "miss"
    np.testing.assert_allclose(a, b, atol=1e-6)
    meta = json.loads((tmp_path / info["key"] / "store.json").read_text())
    assert meta["identity"]["weights"] == encoder.identity()["weights"]


def test_bad_model_folder_and_options(tmp_path):
    with pytest.raises(ArtifactError, match="not a transformers model folder"):
        TextEncoder(model_path=str(tmp_path))
    with pytest.raises(ConfigError, match="pooling"):
        TextEncoder(pooling="max")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_parity(encoder, precision):
    texts = [*TEXTS, "Digital caliper 150 mm", "Epoxy resin two-part, clear", "LED headlamp rechargeable"]
    fast = TextEncoder(precision=precision, batch_size=4).encode(texts)
    reference = encoder.encode(texts)
    cos = np.sum(fast * reference, axis=1)
    assert cos.min() >= 0.99, cos
    assert np.abs(fast - reference).max() > 1e-5  # the precision really changed the computation


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_with_a_fine_tuned_projection(encoder_checkpoint, precision):
    from recsys.scorers.text import resolve_checkpoint

    folder, _ = resolve_checkpoint(encoder_checkpoint)
    path = str(folder / "item_tower")
    reference = TextEncoder(model_path=path).encode(TEXTS)
    fast = TextEncoder(model_path=path, precision=precision).encode(TEXTS)
    assert fast.dtype == np.float32 and np.sum(fast * reference, axis=1).min() >= 0.99
