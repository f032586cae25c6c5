"""Fine-tuning on the synthetic shop: the loss falls, it beats zero-shot, LoRA, resume, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data import synthetic_dataset
from recsys.errors import ArtifactError, ConfigError
from recsys.scorers.text import TextScorer, _unchanged_base, resolve_checkpoint
from recsys.text.encoder import EncoderConfig, TextEncoder
from recsys.text.train import EncoderTrainConfig, EncoderTrainer, train_encoder

pytestmark = pytest.mark.slow

SMALL = {"batch_size": 16, "max_length": 24, "eval_users": 0, "seed": 0, "threads": 0}


@pytest.fixture(scope="module")
def shop():
    # Successor chains are not in the text: only behaviour can teach them.
    return synthetic_dataset(n_users=150, n_items=60, n_categories=6, chain_prob=0.7, seed=5)


def test_training_lowers_loss_and_beats_zero_shot(shop, tmp_path):
    cfg = EncoderTrainConfig(**SMALL, max_steps=30, eval_every=15, learning_rate=2e-4, n_recent=1)
    trainer = EncoderTrainer(shop, cfg, tmp_path / "run")
    batch = next(iter(trainer._batches(0)))
    with torch.no_grad():
        before = trainer._loss(batch)[0].item()
    result = trainer.run(progress=False)
    with torch.no_grad():
        after = trainer._loss(batch)[0].item()
    assert after < before
    zero_shot = result.history[0]
    assert result.history[0]["step"] == 0
    assert result.best_metrics["ndcg@10"] > zero_shot["ndcg@10"] + 0.02, result.history
    folder, meta = resolve_checkpoint(tmp_path / "run")
    assert meta["step"] == result.best_step and meta["data_fingerprint"] == trainer.data.fingerprint
    assert meta["base_model"]["weights"] and (folder / "item_tower" / "model.safetensors").exists()
    assert (folder / "item_tower" / "projection.npy").exists()


def test_exported_checkpoint_encodes_like_the_trainer(shop, tmp_path):
    cfg = EncoderTrainConfig(
        **SMALL, max_steps=3, eval_every=100, eval_at_start=False, head_epochs=2, train_layers=2
    )
    trainer = EncoderTrainer(shop, cfg, tmp_path / "run")
    trainer.run(progress=False)
    trainer.save_best({"ndcg@10": 0.0})  # export the final state
    live = trainer.encode_all_items()
    scorer = TextScorer(checkpoint=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache")).fit(trainer.data)
    np.testing.assert_allclose(scorer.item_embeddings, live, atol=1e-5)


def test_lora_changes_only_adapter_weights(shop, tmp_path):
    cfg = EncoderTrainConfig(**SMALL, mode="lora", max_steps=3, eval_every=100, eval_at_start=False)
    trainer = EncoderTrainer(shop, cfg, tmp_path / "lora")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run(progress=False)
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "training changed nothing"
    # Only the adapters (and the projection after pooling, which is not a base weight) move.
    assert all("lora_" in k or k.split(".")[0] in ("item_head", "user_head") for k in changed), sorted(
        changed
    )[:5]
    assert any("lora_B" in k for k in changed)
    # The export merges the adapters: a plain transformers folder that differs from the base model.
    folder, _ = resolve_checkpoint(tmp_path / "lora")
    assert (folder / "item_tower" / "config.json").exists()
    assert not (folder / "item_tower" / "adapter_config.json").exists()


class Interrupt(Exception):
    pass


@pytest.fixture
def one_thread():
    # Multi-threaded CPU kernels sum in varying order (differences of ~1e-6 between two identical
    # runs); one thread makes runs bit-for-bit repeatable, so resume can be compared exactly.
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("bank_refresh", [0, 2])
def test_resume_after_interruption_gives_the_same_state(shop, tmp_path, one_thread, bank_refresh):
    cfg = EncoderTrainConfig(
        **{**SMALL, "threads": 1},
        bank_refresh=bank_refresh,
        max_steps=6,
        eval_every=100,
        eval_at_start=False,
        save_every=1,
        head_epochs=2,
    )
    straight = EncoderTrainer(shop, cfg, tmp_path / "straight")
    straight.run(progress=False)

    broken = EncoderTrainer(shop, cfg, tmp_path / "broken")
    save = broken.save_state

    def save_then_die() -> None:
        save()
        if broken.step == 3:
            raise Interrupt

    broken.save_state = save_then_die  # type: ignore[method-assign]
    with pytest.raises(Interrupt):
        broken.run(progress=False)
    resumed = EncoderTrainer(shop, cfg, tmp_path / "broken")
    result = resumed.run(progress=False)
    assert result.steps == 6 and resumed.examples == straight.examples
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_resume_with_other_settings_is_refused(shop, tmp_path):
    cfg = EncoderTrainConfig(**SMALL, max_steps=1, eval_every=100, eval_at_start=False)
    train_encoder(shop, tmp_path / "r", cfg, progress=False)
    other = EncoderTrainConfig(**{**SMALL, "batch_size": 8}, max_steps=1, eval_every=100, eval_at_start=False)
    with pytest.raises(ArtifactError, match="other settings"):
        train_encoder(shop, tmp_path / "r", other, progress=False)


def test_text_mode_separate_towers_and_hard_negatives(shop, tmp_path):
    cfg = EncoderTrainConfig(
        **SMALL,
        user_input="text",
        shared_towers=False,
        hard_negatives=4,
        max_steps=2,
        eval_every=100,
        eval_at_start=False,
        user_max_length=48,
    )
    result = train_encoder(shop, tmp_path / "t", cfg, progress=False)
    _, meta = resolve_checkpoint(tmp_path / "t")
    assert set(meta["towers"]) == {"item", "user"} and meta["scorer"]["user_input"] == "text"
    assert np.isfinite(result.best_metrics["ndcg@10"])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError):
        EncoderTrainConfig(mode="qlora")
    with pytest.raises(ConfigError):
        EncoderTrainConfig(user_input="images")
    with pytest.raises(ConfigError, match="head_mix"):
        EncoderTrainConfig(head_mix=1.5)


def test_head_mix_interpolates_the_projection_with_the_identity(shop, tmp_path):
    opts = {**SMALL, "epochs": 0.0, "head_epochs": 3, "eval_at_start": False}
    heads = {}
    for mix in (1.0, 0.25, 0.0):
        trainer = EncoderTrainer(shop, EncoderTrainConfig(**opts, head_mix=mix), tmp_path / f"m{mix}")
        trainer.train_head()
        heads[mix] = trainer.model.item_head.weight.detach().numpy().copy()
    eye = np.eye(heads[1.0].shape[0], dtype=np.float32)
    assert np.abs(heads[1.0] - eye).max() > 1e-3  # stage 1 learned something
    np.testing.assert_allclose(heads[0.25], 0.25 * heads[1.0] + 0.75 * eye, atol=1e-5)
    np.testing.assert_allclose(heads[0.0], eye, atol=1e-7)  # the pretrained space itself


def test_item_prior_is_kept_with_the_checkpoint_and_new_items_get_the_unknown_prior(shop, tmp_path):
    from recsys.data import without_items

    held = shop.items["item_id"].head(3)
    data_set = without_items(shop, held)
    opts = {**SMALL, "epochs": 0.0, "head_epochs": 4, "eval_at_start": False}
    trainer = EncoderTrainer(data_set, EncoderTrainConfig(**opts), tmp_path / "run")
    trainer.run(progress=False)
    bias, prior = trainer.score_bias()
    seen = trainer.data.item_counts > 0
    assert not seen[:3].any() and seen[3:].all()
    raw = trainer.item_bias.numpy()[seen].astype(np.float64)
    tau = trainer.config.temperature
    # The prior of an item of unknown popularity: τ·log mean exp(b) over the known items.
    assert prior == pytest.approx(tau * np.log(np.mean(np.exp(raw))), rel=1e-5)
    assert np.ptp(raw) > 1e-3 and tau * raw.mean() <= prior <= tau * raw.max()
    np.testing.assert_allclose(bias[:3], prior)

    with_bias = TextScorer(checkpoint=str(tmp_path / "run"), cache_dir=str(tmp_path / "c")).fit(trainer.data)
    plain = TextScorer(checkpoint=str(tmp_path / "run"), cache_dir=str(tmp_path / "c"), item_bias=False)
    plain.fit(trainer.data)
    np.testing.assert_allclose(with_bias.item_bias, bias, atol=1e-6)
    assert plain.item_bias is None
    users = np.arange(5)
    np.testing.assert_allclose(with_bias.score(users), plain.score(users) + bias[None, :], atol=1e-5)
    # The bias travels in the artifact state, and an item added later gets the unknown prior.
    state = with_bias.get_state()
    again = TextScorer(checkpoint=str(tmp_path / "run")).set_state(state, trainer.data)
    np.testing.assert_array_equal(again.item_bias, with_bias.item_bias)
    grown = with_bias.with_new_items(trainer.data.n_items + 2)
    assert grown is not None and grown[-2:].tolist() == pytest.approx([prior, prior])


def test_without_a_holdout_it_learns_every_event_and_keeps_the_last_model(shop, tmp_path):
    cfg = EncoderTrainConfig(**SMALL, holdout=False, epochs=0.0, head_epochs=2)
    trainer = EncoderTrainer(shop, cfg, tmp_path / "all")
    assert trainer.data.history_lengths().sum() == shop.interactions.height  # nothing held out
    result = trainer.run(progress=False)
    assert result.best_metrics == {} and result.history == []  # no validation without a holdout
    _, meta = resolve_checkpoint(tmp_path / "all")
    assert meta["validation"] == {} and meta["data_fingerprint"] == trainer.data.fingerprint
    live = trainer.encode_all_items()
    scorer = TextScorer(checkpoint=str(tmp_path / "all"), cache_dir=str(tmp_path / "cache")).fit(trainer.data)
    np.testing.assert_allclose(scorer.item_embeddings, live, atol=1e-5)


def test_a_projection_alone_is_scored_from_the_base_models_cached_embeddings(shop, tmp_path):
    cfg = EncoderTrainConfig(**SMALL, holdout=False, epochs=0.0, head_epochs=2)
    trainer = EncoderTrainer(shop, cfg, tmp_path / "run")
    # Stage 1 reads the base model's embeddings from the disk cache: the trainer's own pooling.
    np.testing.assert_allclose(
        trainer._base_item_embeddings().numpy(), trainer._pooled_all().numpy(), atol=1e-5
    )
    trainer.run(progress=False)
    folder, meta = resolve_checkpoint(tmp_path / "run")
    assert meta["transformer"] == "base"  # no transformer step: the towers hold the base weights
    scorer = TextScorer(checkpoint=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    scorer.fit(trainer.data)
    assert scorer.embedding_info["projected"] == "projection.npy"
    # Equal to encoding every item through the checkpoint's own tower and projection.
    through_tower = TextEncoder(EncoderConfig(model_path=str(folder / "item_tower"), max_length=24))
    np.testing.assert_allclose(
        scorer.item_embeddings, through_tower.encode(trainer.data.item_text), atol=1e-5
    )
    np.testing.assert_allclose(scorer.item_embeddings, trainer.encode_all_items(), atol=1e-5)


def test_a_trained_or_foreign_transformer_is_encoded_through_the_checkpoint(shop, tmp_path):
    cfg = EncoderTrainConfig(**SMALL, max_steps=2, eval_every=100, eval_at_start=False, head_epochs=1)
    trainer = EncoderTrainer(shop, cfg, tmp_path / "run")
    trainer.run(progress=False)
    folder, meta = resolve_checkpoint(tmp_path / "run")
    assert meta["step"] == 2 and "transformer" not in meta
    scorer = TextScorer(checkpoint=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    assert "projected" not in scorer.fit(trainer.data).embedding_info
    # Marked as the base model's, but its weights' digest is not the installed base model's.
    tower = folder / "item_tower"
    assert _unchanged_base({**meta, "transformer": "base"}, tower) is not None
    assert _unchanged_base({**meta, "transformer": "base", "base_model": {"weights": "other"}}, tower) is None
    assert _unchanged_base({**meta, "transformer": "base"}, tmp_path) is None  # no projection there
