"""Bayesian Personalised Ranking (Rendle et al. 2009) through the ``implicit`` library, on the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recsys.config import make_config
from recsys.errors import ConfigError
from recsys.scorers.factor import FactorScorer


@dataclass(frozen=True)
class BPRConfig:
    factors: int = 128
    learning_rate: float = 0.05
    regularization: float = 0.01
    iterations: int = 200
    seed: int = 0
    # One thread by default: implicit's BPR updates in parallel without locks, so more threads
    # trade exact reproducibility for speed.
    threads: int = 1

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1 or self.learning_rate <= 0:
            raise ConfigError("bpr: factors and iterations must be at least 1, learning_rate > 0")


class BPRScorer(FactorScorer):
    name = "bpr"

    def __init__(self, config: BPRConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(BPRConfig, config, options)

    def _make_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        # implicit adds a bias column to the item factors (and a constant 1 to the users').
        return BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            random_state=c.seed,
            num_threads=c.threads,
        )
