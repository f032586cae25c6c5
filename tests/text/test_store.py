"""The embedding store refuses embeddings made by another model or for another catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import ArtifactError
from recsys.scorers.text import resolve_checkpoint
from recsys.text.store import open_store, save_store


def test_round_trip_memory_mapped(tmp_path):
    emb = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    save_store(tmp_path / "s", emb, {"encoder": "abc", "texts": "t1"})
    got = open_store(tmp_path / "s", {"encoder": "abc", "texts": "t1", "n": 5})
    assert isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, emb)


def test_mismatch_is_refused(tmp_path):
    save_store(tmp_path / "s", np.zeros((2, 3), np.float32), {"encoder": "abc", "texts": "t1"})
    with pytest.raises(ArtifactError, match="encoder: store has 'abc', expected 'xyz'"):
        open_store(tmp_path / "s", {"encoder": "xyz", "texts": "t1"})
    with pytest.raises(ArtifactError, match="n: store has 2"):
        open_store(tmp_path / "s", {"encoder": "abc", "n": 3})
    with pytest.raises(ArtifactError, match="not an embedding store"):
        open_store(tmp_path, {})


def test_replacing_a_store_is_whole(tmp_path):
    save_store(tmp_path / "s", np.zeros((2, 3), np.float32), {"encoder": "a"})
    save_store(tmp_path / "s", np.ones((4, 3), np.float32), {"encoder": "b"})
    assert open_store(tmp_path / "s", {"encoder": "b"}).shape == (4, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["s"], "no temporary folders left"


def test_damaged_store_and_partial_checkpoint(tmp_path):
    save_store(tmp_path / "s", np.zeros((2, 3), np.float32), {"encoder": "a"})
    (tmp_path / "s" / "embeddings.npy").write_bytes(b"xx")
    with pytest.raises(ArtifactError, match="cannot be read"):
        open_store(tmp_path / "s", {"encoder": "a"})
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "encoder.json").write_text('{"towers": {"item": "item_tower"}, "scorer": {}}')
    with pytest.raises(ArtifactError, match="incomplete"):
        resolve_checkpoint(ck)
    with pytest.raises(ArtifactError, match="not an encoder checkpoint"):
        resolve_checkpoint(tmp_path / "s")
