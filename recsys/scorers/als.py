"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through the ``implicit`` library, on the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.config import make_config
from recsys.errors import ConfigError
from recsys.scorers.factor import FactorScorer


@dataclass(frozen=True)
class ALSConfig:
    factors: int = 128
    regularization: float = 0.05
    alpha: float = 20.0  # confidence = 1 + alpha * interaction
    iterations: int = 20
    seed: int = 0
    threads: int = 0  # 0: all cores (implicit's own threads; BLAS is held to 1)

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ConfigError("als: factors and iterations must be at least 1")
        if self.regularization < 0 or self.alpha <= 0:
            raise ConfigError("als: regularization must be >= 0 and alpha > 0")


class ALSScorer(FactorScorer):
    name = "als"

    def __init__(self, config: ALSConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(ALSConfig, config, options)

    def _make_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        return AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            random_state=c.seed,
            num_threads=c.threads,
        )

    def fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """The ALS user step for each history, item factors fixed (what one more sweep would give).

        x = (YᵀY + Yᵀ(C − I)Y + λI)⁻¹ Yᵀ C p with confidence c = 1 + alpha on the history's items.
        """
        y = self._wide.of(self.item_factors)
        gram = self._wide.gram(self.item_factors) + self.config.regularization * np.eye(y.shape[1])
        out = np.zeros((len(histories), y.shape[1]), dtype=np.float32)
        for r, h in enumerate(histories):
            items = np.unique(h)
            if len(items) == 0:
                continue
            yi = y[items]  # (n, factors)
            a = gram + self.config.alpha * yi.T @ yi
            b = (1.0 + self.config.alpha) * yi.sum(axis=0)
            out[r] = np.linalg.solve(a, b)
        return out
