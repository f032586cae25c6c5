from __future__ import annotations

from dataclasses import dataclass

import pytest

from recsys.config import apply_overrides, load_toml, make_config, parse_override
from recsys.errors import ConfigError


@dataclass(frozen=True)
class Cfg:
    size: int = 1
    rate: float = 0.5
    name: str = "x"


def test_make_config_from_keywords_or_object():
    assert make_config(Cfg, None, {"size": 3, "rate": 1}) == Cfg(size=3, rate=1.0)
    assert make_config(Cfg, Cfg(size=2), {}) == Cfg(size=2)
    with pytest.raises(ConfigError, match="not both"):
        make_config(Cfg, Cfg(), {"size": 2})
    with pytest.raises(
        ConfigError, match=r"no option\(s\) \['sise'\]; valid options: \['name', 'rate', 'size'\]"
    ):
        make_config(Cfg, None, {"sise": 2})
    with pytest.raises(ConfigError, match="must be int"):
        make_config(Cfg, None, {"size": True})


def test_overrides():
    assert parse_override("als.factors=64") == (["als", "factors"], 64)
    assert parse_override("text.model_path=/m/x") == (["text", "model_path"], "/m/x")
    assert parse_override('a.b="q"') == (["a", "b"], "q")
    base = {"models": {"als": {"factors": 8}}}
    out = apply_overrides(base, ["models.als.factors=16", "models.bpr.iterations=3"])
    assert out == {"models": {"als": {"factors": 16}, "bpr": {"iterations": 3}}}
    assert base == {"models": {"als": {"factors": 8}}}, "the input is not modified"
    with pytest.raises(ConfigError):
        parse_override("nokey")


def test_load_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(bad)


def test_recommender_candidate_sources_are_checked():
    from recsys.recommender import RecommenderConfig

    default = RecommenderConfig()
    assert "popularity" not in default.candidates and default.cold_candidates == {"popularity": 20}
    with pytest.raises(ConfigError, match=r"candidate sources \['nope'\] are not among the scorers"):
        RecommenderConfig(candidates={"nope": 10})
    with pytest.raises(ConfigError, match=r"cold_candidates sources \['nope'\]"):
        RecommenderConfig(cold_candidates={"nope": 10})
    with pytest.raises(ConfigError, match="whole numbers >= 0"):
        RecommenderConfig(candidates={"als": -1})


def test_train_job_merges_candidate_depths_over_the_defaults(tmp_path):
    from pipelines.train import TrainJob

    depths = {"candidates": {"als": 0, "ease": 30, "encoder": 0}, "cold_candidates": {"popularity": 0}}
    job = TrainJob(out=tmp_path, recommender=depths)
    config = job.recommender_config(checkpoint="enc", sasrec="sasrec.pt")
    assert "als" not in config.candidates and config.candidates["ease"] == 30
    assert "encoder" not in config.candidates, "a depth of 0 removes the encoder as a source"
    assert config.candidates["sasrec"] == 100 and config.cold_candidates == {}
    assert "encoder" in config.scorers and config.embeddings_from == "encoder"
