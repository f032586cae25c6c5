import numpy as np
import pytest

from recsys.evaluation.stats import ndcg_at, paired_bootstrap


def test_paired_bootstrap_centres_on_the_mean_difference_and_covers_it():
    rng = np.random.default_rng(0)
    b = rng.random(2000)
    a = b + 0.05 + rng.normal(0, 0.1, 2000)
    out = paired_bootstrap(a, b, n_resamples=500, seed=1)
    assert out["mean_difference"] == pytest.approx(float((a - b).mean()))
    assert out["low"] < 0.05 < out["high"]
    # The standard error of the mean difference is 0.1 / sqrt(2000) ≈ 0.0022: a 95% interval ≈ ±0.0044.
    assert 0.006 < out["high"] - out["low"] < 0.012


def test_paired_bootstrap_is_seeded_and_rejects_bad_input():
    a, b = np.arange(10.0), np.zeros(10)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:5])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=1.5)


def test_ndcg_of_single_targets():
    np.testing.assert_allclose(
        ndcg_at(np.array([0, 1, 9, 10]), 10), [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0]
    )
