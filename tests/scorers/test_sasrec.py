"""SASRec with item text: the frozen text embeddings travel with the model and shape its item vectors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import ArtifactError, ConfigError
from recsys.evaluation import evaluate
from recsys.scorers import build_scorer
from recsys.scorers.lexical import LexicalScorer
from recsys.scorers.sasrec import SASRecConfig, SASRecModel
from recsys.text.train_config import EncoderTrainConfig

FAST = {"epochs": 8, "dim": 32, "threads": 1}


@pytest.fixture(scope="module")
def text_sasrec(loo_test, embedding_cache):
    _, data = loo_test
    return build_scorer("sasrec", {**FAST, "text": True, "cache_dir": str(embedding_cache)}).fit(data)


def test_item_vectors_are_id_plus_projected_text():
    text = torch.eye(4, 6)
    model = SASRecModel(4, SASRecConfig(dim=8, heads=2), text)
    table = model.item_table()
    assert table.shape == (5, 8)
    assert torch.equal(table[0], torch.zeros(8))  # padding stays zero
    expected = model.items.weight[1:] + text @ model.text_proj.weight.T
    torch.testing.assert_close(table[1:], expected)
    with pytest.raises(ConfigError, match="3 text embeddings for 4 items"):
        SASRecModel(4, SASRecConfig(dim=8, heads=2), torch.zeros(3, 6))


def test_text_changes_the_model_and_is_learned_through(text_sasrec, loo_test, embedding_cache):
    _, data = loo_test
    plain = build_scorer("sasrec", {**FAST, "text": False}).fit(data)
    users = np.arange(20)
    assert not np.allclose(plain.score(users), text_sasrec.score(users))
    proj = text_sasrec.model.text_proj
    assert proj is not None and float(proj.weight.detach().abs().sum()) > 0
    # the text rows are the cached zero-shot embeddings of the items, in row order
    text = text_sasrec.model.text[1:].numpy()
    assert text.shape[0] == data.n_items
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-4)


def test_text_model_round_trips_through_checkpoint_and_state(text_sasrec, loo_test, tmp_path):
    _, data = loo_test
    users = np.arange(25)
    path = text_sasrec.save_checkpoint(tmp_path / "sasrec.pt")
    loaded = build_scorer("sasrec", {"checkpoint": str(path)}).fit(data)
    assert loaded.config.text
    np.testing.assert_array_equal(loaded.score(users), text_sasrec.score(users))
    state = {k: np.array(v) for k, v in text_sasrec.get_state().items()}
    restored = build_scorer("sasrec").set_state(state, data)
    np.testing.assert_array_equal(restored.score(users), text_sasrec.score(users))
    histories = [data.history(int(u)) for u in users]
    np.testing.assert_allclose(
        loaded.score_histories(histories), text_sasrec.score(users), rtol=1e-5, atol=1e-6
    )


def test_gru_architecture_learns_and_round_trips(loo_test, tmp_path):
    split, data = loo_test
    gru = build_scorer(
        "sasrec", {**FAST, "epochs": 20, "text": False, "architecture": "gru", "layers": 1}
    ).fit(data)
    assert isinstance(gru.model.blocks, torch.nn.GRU)
    # users follow item successors in the synthetic data: the recurrent model must pick them up
    pop = evaluate(build_scorer("popularity").fit(data), data, split).metrics
    ours = evaluate(gru, data, split).metrics
    assert ours["ndcg@10"] >= 2 * pop["ndcg@10"], (ours, pop)
    users = np.arange(25)
    # the same windows, read by a recurrent model instead of attention: different scores
    plain = build_scorer("sasrec", {**FAST, "text": False}).fit(data)
    assert not np.allclose(plain.score(users), gru.score(users))
    # causal: the state after the newest item does not change when items are cut off before the window
    histories = [data.history(int(u)) for u in users]
    np.testing.assert_allclose(gru.score_histories(histories), gru.score(users), rtol=1e-5, atol=1e-6)
    # through a checkpoint and through an artifact's state
    path = gru.save_checkpoint(tmp_path / "gru.pt")
    loaded = build_scorer("sasrec", {"checkpoint": str(path)}).fit(data)
    assert loaded.config.architecture == "gru"
    np.testing.assert_array_equal(loaded.score(users), gru.score(users))
    state = {k: np.array(v) for k, v in gru.get_state().items()}
    restored = build_scorer("sasrec").set_state(state, data)
    assert restored.config.architecture == "gru"
    np.testing.assert_array_equal(restored.score(users), gru.score(users))


def test_state_without_an_architecture_loads_as_sasrec(loo_test):
    """Artifacts written before the GRU option hold four numbers of architecture: a transformer."""
    _, data = loo_test
    sasrec = build_scorer("sasrec", {**FAST, "text": False, "epochs": 2}).fit(data)
    state = {k: np.array(v) for k, v in sasrec.get_state().items()}
    state["arch"] = state["arch"][:4]
    restored = build_scorer("sasrec").set_state(state, data)
    assert restored.config.architecture == "transformer"
    np.testing.assert_array_equal(restored.score(np.arange(5)), sasrec.score(np.arange(5)))


def test_unknown_architecture_is_refused():
    with pytest.raises(ConfigError, match="architecture must be one of transformer, gru, not 'lstm'"):
        SASRecConfig(architecture="lstm")


def test_device_is_checked_and_auto_trains_where_torch_can(loo_test):
    with pytest.raises(ConfigError, match="sasrec: device must be cpu, cuda, cuda:N or auto, not 'gpu'"):
        SASRecConfig(device="gpu")
    with pytest.raises(ConfigError, match="encoder: device must be cpu, cuda, cuda:N or auto, not 'tpu'"):
        EncoderTrainConfig(device="tpu")
    _, data = loo_test
    options = {**FAST, "epochs": 2, "text": False}
    assert SASRecConfig().device == "auto"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA GPU here"):
            build_scorer("sasrec", {**options, "device": "cuda:0"}).fit(data)
        # auto falls back to the CPU: the same model as asking for it
        auto = build_scorer("sasrec", options).fit(data)
        cpu = build_scorer("sasrec", {**options, "device": "cpu"}).fit(data)
        np.testing.assert_array_equal(auto.score(np.arange(10)), cpu.score(np.arange(10)))
    else:  # trained on the GPU, scored on the CPU
        gpu = build_scorer("sasrec", {**options, "device": "cuda"}).fit(data)
        assert next(gpu.model.parameters()).device.type == "cpu"
        assert np.isfinite(gpu.score(np.arange(10))).all()


def test_heads_constrain_dim_only_for_attention(loo_test):
    with pytest.raises(ConfigError, match=r"dim \(30\) must be a multiple of heads \(4\)"):
        SASRecConfig(dim=30, heads=4)
    _, data = loo_test  # a GRU has no heads: any dim trains and loads back
    options = {**FAST, "epochs": 1, "text": False, "architecture": "gru", "dim": 30, "heads": 4}
    gru = build_scorer("sasrec", options).fit(data)
    restored = build_scorer("sasrec").set_state({k: np.array(v) for k, v in gru.get_state().items()}, data)
    np.testing.assert_array_equal(restored.score(np.arange(5)), gru.score(np.arange(5)))
    with pytest.raises(ConfigError, match="dim and layers must be positive"):
        SASRecConfig(architecture="gru", dim=0)


def test_item_vectors_add_the_weighted_vectors_of_their_words():
    words = sp.csr_matrix(np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    model = SASRecModel(4, SASRecConfig(dim=8, heads=2), words=words)
    table = model.item_table()
    assert model.word_vectors is not None and model.word_vectors.shape == (3, 8)
    assert torch.equal(table[0], torch.zeros(8))  # padding stays zero
    dense = torch.as_tensor(words.toarray(), dtype=torch.float32)
    torch.testing.assert_close(table[1:], model.items.weight[1:] + dense @ model.word_vectors)
    # an item without words keeps its ID vector; every word gets a gradient through its items
    torch.testing.assert_close(table[3], model.items.weight[3])
    table.sum().backward()
    assert model.word_vectors.grad is not None
    assert bool((model.word_vectors.grad.abs().sum(1) > 0).all())
    with pytest.raises(ConfigError, match="word weights for 3 items, not 4"):
        SASRecModel(4, SASRecConfig(dim=8, heads=2), words=words[:3])


def test_words_are_learned_and_round_trip_through_checkpoint_and_state(loo_test, tmp_path):
    _, data = loo_test
    words = build_scorer("sasrec", {**FAST, "text": False, "words": True}).fit(data)
    plain = build_scorer("sasrec", {**FAST, "text": False}).fit(data)
    users = np.arange(25)
    assert not np.allclose(plain.score(users), words.score(users))
    learned = words.model.word_vectors
    assert learned is not None and learned.shape[0] == LexicalScorer().fit(data).vectors.shape[1]
    path = words.save_checkpoint(tmp_path / "sasrec.pt")
    loaded = build_scorer("sasrec", {"checkpoint": str(path)}).fit(data)
    assert loaded.config.words and not loaded.config.text
    np.testing.assert_array_equal(loaded.score(users), words.score(users))
    state = {k: np.array(v) for k, v in words.get_state().items()}
    restored = build_scorer("sasrec").set_state(state, data)
    assert restored.config.words
    np.testing.assert_array_equal(restored.score(users), words.score(users))


def test_damaged_word_weights_are_refused_on_load(loo_test):
    _, data = loo_test
    words = build_scorer("sasrec", {**FAST, "epochs": 1, "text": False, "words": True}).fit(data)
    state = {k: np.array(v) for k, v in words.get_state().items()}
    state["w:word_index"][0, -1] = data.n_items + 5  # an item beyond the catalogue
    with pytest.raises(ArtifactError, match="word weights"):
        build_scorer("sasrec").set_state(state, data)


def test_new_and_edited_items_are_scored_from_their_text(text_sasrec, loo_test):
    from recsys.live import _extend_data, _merge_frames

    _, data = loo_test
    n = data.n_items
    users = np.arange(30)
    before = text_sasrec.score(users)
    copy_of, edited = 3, 5
    new_rows = data.item_frame[[copy_of]].with_columns(item_id=pl.lit("NEW-copy"))
    edit = data.item_frame[[edited]].with_columns(title=pl.lit("an entirely different product"))
    grown = _extend_data(data, _merge_frames(data.item_frame, pl.concat([new_rows, edit], how="diagonal")))
    assert grown.n_items == n + 1
    after = text_sasrec.with_items(grown, np.array([edited, n]))
    scores = after.score(users)
    assert scores.shape == (30, n + 1) and np.isfinite(scores[:, n]).all()
    model = after.model
    # the new item's vector is its text's projection alone: the copied item's, without its ID vector
    table = model.item_table().detach()
    old_table = text_sasrec.model.item_table().detach()
    torch.testing.assert_close(
        table[n + 1], old_table[copy_of + 1] - text_sasrec.model.items.weight[copy_of + 1]
    )
    # the edited item keeps its ID vector and reads its new text
    torch.testing.assert_close(model.items.weight[edited + 1], text_sasrec.model.items.weight[edited + 1])
    assert not torch.allclose(table[edited + 1], old_table[edited + 1])
    # users who never had the edited item keep every old item's score
    clean = np.array([edited not in data.history(int(u)) for u in users])
    np.testing.assert_allclose(
        scores[clean][:, :n][:, np.arange(n) != edited],
        before[clean][:, np.arange(n) != edited],
        rtol=1e-5,
        atol=1e-6,
    )
    # the fitted scorer is unchanged, and the grown one round-trips through an artifact's state
    assert text_sasrec.n_items == n
    np.testing.assert_array_equal(text_sasrec.score(users), before)
    # the transformer's weights are shared with the fitted model, not copied
    old_params = dict(text_sasrec.model.named_parameters())
    for name, param in model.named_parameters():
        if name.startswith("blocks."):
            assert param.data_ptr() == old_params[name].data_ptr(), name
    restored = build_scorer("sasrec").set_state({k: np.array(v) for k, v in after.get_state().items()}, grown)
    np.testing.assert_array_equal(restored.score(users), scores)


def test_a_grown_gru_reads_its_new_items(loo_test, embedding_cache):
    from recsys.live import _extend_data, _merge_frames

    _, data = loo_test
    options = {**FAST, "epochs": 1, "architecture": "gru", "layers": 1, "cache_dir": str(embedding_cache)}
    gru = build_scorer("sasrec", options).fit(data)
    new = data.item_frame[[2]].with_columns(item_id=pl.lit("NEW-2"))
    grown = _extend_data(data, _merge_frames(data.item_frame, new))
    after = gru.with_items(grown, np.array([data.n_items]))
    users = np.arange(10)
    scores = after.score(users)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:, : data.n_items], gru.score(users), rtol=1e-5, atol=1e-6)


def test_a_model_without_text_leaves_new_items_out(loo_test):
    from recsys.live import _extend_data, _merge_frames

    _, data = loo_test
    plain = build_scorer("sasrec", {**FAST, "text": False, "epochs": 1}).fit(data)
    new = data.item_frame[[2]].with_columns(item_id=pl.lit("NEW-2"))
    grown = _extend_data(data, _merge_frames(data.item_frame, new))
    assert plain.with_items(grown, np.array([data.n_items])) is plain


def test_an_edited_item_drops_its_old_words(loo_test, embedding_cache):
    from recsys.live import _extend_data, _merge_frames

    _, data = loo_test
    options = {**FAST, "epochs": 1, "words": True, "cache_dir": str(embedding_cache)}
    words = build_scorer("sasrec", options).fit(data)
    edited = 4
    edit = data.item_frame[[edited]].with_columns(title=pl.lit("an entirely different product"))
    grown = _extend_data(data, _merge_frames(data.item_frame, edit))
    after = words.with_items(grown, np.array([edited]))
    rows = after.model.word_index[0]
    assert not bool((rows == edited + 1).any()) and bool((words.model.word_index[0] == edited + 1).any())
    assert int((rows != edited + 1).sum()) == int((words.model.word_index[0] != edited + 1).sum())
    state = {k: np.array(v) for k, v in after.get_state().items()}
    restored = build_scorer("sasrec").set_state(state, grown)
    np.testing.assert_array_equal(restored.score(np.arange(10)), after.score(np.arange(10)))


def test_hidden_input_items_change_training_reproducibly_and_it_still_learns(loo_test):
    """``item_mask`` hides a share of the input items at each step (seeded by the model's seed):
    the same seed gives the same model, the plain model differs, and successors are still learned."""
    split, data = loo_test
    options = {**FAST, "text": False, "epochs": 20}
    masked = build_scorer("sasrec", {**options, "item_mask": 0.3}).fit(data)
    again = build_scorer("sasrec", {**options, "item_mask": 0.3}).fit(data)
    plain = build_scorer("sasrec", options).fit(data)
    users = np.arange(25)
    np.testing.assert_array_equal(masked.score(users), again.score(users))
    assert not np.allclose(masked.score(users), plain.score(users))
    pop = evaluate(build_scorer("popularity").fit(data), data, split).metrics
    assert evaluate(masked, data, split).metrics["ndcg@10"] >= 1.5 * pop["ndcg@10"]
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="item_mask must be in"):
            SASRecConfig(item_mask=bad)
