"""Scorers behind one batch interface, and a registry to build them by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys.errors import ConfigError
from recsys.scorers.als import ALSConfig, ALSScorer
from recsys.scorers.base import Scorer
from recsys.scorers.bpr import BPRConfig, BPRScorer
from recsys.scorers.covisit import CovisitConfig, CovisitScorer
from recsys.scorers.ease import EASEConfig, EASEScorer
from recsys.scorers.lexical import LexicalConfig, LexicalScorer
from recsys.scorers.popularity import PopularityConfig, PopularityScorer
from recsys.scorers.sasrec import SASRecConfig, SASRecScorer
from recsys.scorers.seqlinear import SeqLinearConfig, SeqLinearScorer
from recsys.scorers.sknn import SessionKNNConfig, SessionKNNScorer
from recsys.scorers.text import EncoderScorer, TextScorer, TextScorerConfig

SCORERS: dict[str, type[Scorer]] = {
    "popularity": PopularityScorer,
    "covisit": CovisitScorer,
    "als": ALSScorer,
    "ease": EASEScorer,
    "bpr": BPRScorer,
    "sasrec": SASRecScorer,
    "seqlinear": SeqLinearScorer,
    "sknn": SessionKNNScorer,
    "lexical": LexicalScorer,
    "text": TextScorer,
    "encoder": EncoderScorer,
}


def build_scorer(name: str, options: Mapping[str, Any] | None = None) -> Scorer:
    """A scorer by registry name, configured from ``options`` (unknown keys are refused)."""
    cls = SCORERS.get(name)
    if cls is None:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(SCORERS)}")
    return cls(**dict(options or {}))


__all__ = [
    "SCORERS",
    "ALSConfig",
    "ALSScorer",
    "BPRConfig",
    "BPRScorer",
    "CovisitConfig",
    "CovisitScorer",
    "EASEConfig",
    "EASEScorer",
    "EncoderScorer",
    "LexicalConfig",
    "LexicalScorer",
    "PopularityConfig",
    "PopularityScorer",
    "SASRecConfig",
    "SASRecScorer",
    "Scorer",
    "SeqLinearConfig",
    "SeqLinearScorer",
    "SessionKNNConfig",
    "SessionKNNScorer",
    "TextScorer",
    "TextScorerConfig",
    "build_scorer",
]
