"""The experiments file and assignment: refusals, stickiness, uniformity, independence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recsys.ab.experiments import bucket, load_experiments, parse_experiments
from recsys.errors import ConfigError

IDS = [f"user-{i}" for i in range(100_000)]


def _exp(name="exp", salt="s1", weights=(0.5, 0.5), **extra):
    return {
        "name": name,
        "salt": salt,
        "variants": [{"name": f"v{i}", "weight": w} for i, w in enumerate(weights)],
        **extra,
    }


def test_a_valid_file_loads(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(
        """
[[experiments]]
name = "hybrid-vs-als"
salt = "2026-11"
traffic = 0.5
control = "als"
primary = "conversion"
start = 2026-11-29T10:00:00Z
  [[experiments.variants]]
  name = "als"
  weight = 0.25
  ranking = "als"
  [[experiments.variants]]
  name = "hybrid"
  weight = 0.75
  max_per_category = 3
  [experiments.guardrails]
  max_error_rate = 0.01
"""
    )
    (e,) = load_experiments(path)
    assert e.name == "hybrid-vs-als" and e.control == "als" and e.primary == "conversion"
    assert e.variant("als").ranking == "als" and e.variant("hybrid").ranking == "hybrid"
    assert e.variant("hybrid").max_per_category == 3
    assert e.weights == {"als": 0.25, "hybrid": 0.75}
    assert e.guardrails.max_error_rate == 0.01 and e.start is not None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"experiments": [_exp(weights=(0.5, 0.4))]}, "weights must sum to 1"),
        ({"experiments": [_exp(), _exp(salt="s2")]}, "duplicate experiment name"),
        ({"experiments": [_exp(), _exp(name="other")]}, "salt 's1' is already"),
        ({"experiments": [{**_exp(), "variants": [{"name": "a", "weight": 0.5}] * 2}]}, "duplicate variant"),
        ({"experiments": [_exp(weights=(1.0,))]}, "at least two"),
        ({"experiments": [_exp(traffic=1.5)]}, "traffic must be in"),
        ({"experiments": [_exp(control="nobody")]}, "control 'nobody'"),
        ({"experiments": [_exp(primary="happiness")]}, "primary 'happiness'"),
        ({"experiments": [_exp(colour="red")]}, "unknown key"),
        ({"experiments": [_exp(weights=(-0.5, 1.5))]}, "weight must be positive"),
        ({"experiment": []}, "unknown top-level"),
        (
            {
                "experiments": [
                    {
                        **_exp(),
                        "variants": [
                            {"name": "a", "weight": 0.5, "model_dir": "/nope"},
                            {"name": "b", "weight": 0.5},
                        ],
                    }
                ]
            },
            "not an artifact",
        ),
    ],
)
def test_invalid_files_are_refused_with_the_place(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_experiments(raw, "exp.toml")


def test_a_ranking_that_names_no_scorer_is_refused():
    raw = _exp()
    raw["variants"][0]["ranking"] = "als"
    raw["variants"][1]["ranking"] = "telepathy"
    experiments = parse_experiments({"experiments": [raw]}, "exp.toml")
    with pytest.raises(ConfigError, match="telepathy"):
        experiments.check_rankings(["als", "text"])


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[[experiments]\nname = ")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_experiments(path)


def test_assignment_is_a_pure_function_of_salt_and_user():
    a = parse_experiments({"experiments": [_exp()]}).get("exp")
    b = parse_experiments({"experiments": [_exp()]}).get("exp")
    assert [a.assign(u).name for u in IDS[:2000]] == [b.assign(u).name for u in IDS[:2000]]
    assert bucket("s1", "user-1") == bucket("s1", "user-1") != bucket("s2", "user-1")


def test_assignment_is_uniform_over_100k_ids():
    e = parse_experiments({"experiments": [_exp(weights=(0.2, 0.3, 0.5))]}).get("exp")
    names = [e.assign(u).name for u in IDS]
    observed = np.array([names.count(f"v{i}") for i in range(3)])
    _, p = stats.chisquare(observed, np.array([0.2, 0.3, 0.5]) * len(IDS))
    assert p > 0.01, observed
    buckets = np.array([bucket("s1", u) for u in IDS])
    assert stats.kstest(buckets, "uniform").pvalue > 0.01


def test_traffic_share_enrols_that_share():
    e = parse_experiments({"experiments": [_exp(traffic=0.3)]}).get("exp")
    enrolled = sum(e.assign(u) is not None for u in IDS)
    assert abs(enrolled / len(IDS) - 0.3) < 0.01


def test_changing_one_salt_leaves_the_other_experiment_untouched():
    before = parse_experiments({"experiments": [_exp("a", "salt-a"), _exp("b", "salt-b")]})
    after = parse_experiments({"experiments": [_exp("a", "salt-a-2"), _exp("b", "salt-b")]})
    ids = IDS[:20_000]
    assert [before.get("b").assign(u).name for u in ids] == [after.get("b").assign(u).name for u in ids]
    moved = sum(before.get("a").assign(u).name != after.get("a").assign(u).name for u in ids)
    assert 0.4 < moved / len(ids) < 0.6  # a new salt reshuffles about half of a 50/50 split


def test_assignments_of_different_salts_are_independent():
    a = parse_experiments({"experiments": [_exp("a", "salt-a")]}).get("a")
    b = parse_experiments({"experiments": [_exp("b", "salt-b")]}).get("b")
    table = np.zeros((2, 2))
    for u in IDS[:50_000]:
        table[int(a.assign(u).name[1]), int(b.assign(u).name[1])] += 1
    assert stats.chi2_contingency(table).pvalue > 0.01


def test_the_first_enrolling_experiment_serves_the_user():
    experiments = parse_experiments(
        {"experiments": [_exp("first", "s-first", traffic=0.5), _exp("second", "s-second")]}
    )
    served = [experiments.assign(u)[0].name for u in IDS[:10_000]]
    assert abs(served.count("first") / 10_000 - 0.5) < 0.02
    assert set(served) == {"first", "second"}
