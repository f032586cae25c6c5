"""The learned ranking stage: LightGBM LambdaRank over candidate features, one query per user.

Labels come from held-out next items (the validation targets) with features built from the
histories before them; a share of the users is kept aside for early stopping on NDCG@10.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from recsys.atomic import write_text
from recsys.errors import ArtifactError, ConfigError, NotFittedError

log = logging.getLogger(__name__)


OBJECTIVES = ("lambdarank", "rank_xendcg", "binary")


@dataclass(frozen=True)
class RankerConfig:
    # lambdarank | rank_xendcg (LightGBM's listwise objectives) | binary (pointwise log loss).
    # On Amazon Scientific LambdaRank leads: binary 0.2148 holdout NDCG@10 against 0.2240, test
    # 0.1109 against 0.1125 over the same features (benchmarks/RESULTS.md).
    objective: str = "lambdarank"
    num_leaves: int = 31
    learning_rate: float = 0.05
    max_rounds: int = 2000
    # At least 200 pairs per leaf and an L2 of 10 on the leaf values: the few thousand queries with
    # a target among their candidates overfit 50 and 1 (out-of-fold NDCG@10 per labelled user
    # 0.1136 against 0.1128, test 0.1134 against 0.1130; benchmarks/RESULTS.md).
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 10.0
    # Rounds past a model's best before it stops. Over run 42's checkpoints on Amazon Scientific,
    # 50 rather than 100 gave the same validation and test NDCG@10 (to four places; one of five
    # models kept round 76 instead of 70) and LambdaRank took 388 s instead of 523 s
    # (benchmarks/RESULTS.md, issue 4).
    early_stopping_rounds: int = 50
    # The holdout's NDCG@10 per round is noisy (about 1,200 queries on Amazon Scientific; the raw
    # best round fell anywhere from 16 to 142 between runs): the round kept is the best of its
    # moving average over this many rounds (1: the raw best round).
    smooth_rounds: int = 25
    # Then learn again on every user, held-out ones included, for that many rounds (15% more
    # queries; test NDCG@10 0.1087 against 0.1083 without, within run-to-run noise).
    refit_all: bool = True
    # Features left out of the model (ablations; names as in the importance report).
    exclude_features: tuple[str, ...] = ()
    # Features held to act one way (LightGBM's monotone constraints): name → 1 (a higher value never
    # lowers the score) or -1 (never raises it); the rest free. E.g. {"seqlinear_rank": -1}: the
    # model's answer to a scorer becomes predictable. Off by default: every scorer's score, rank and
    # gap held one way was level on Amazon Scientific (out of fold 0.1133 both, test NDCG@10 0.1135
    # against 0.1137; benchmarks/RESULTS.md).
    monotone: dict[str, int] = field(default_factory=dict)
    # Code columns of the feature frame the model also reads as categories (LightGBM's categorical
    # splits: a category's own lift, learned from its candidates): ``category`` (the candidate's
    # category path from its text), ``brand``, ``item``; -1 (unknown) is missing. Off by default:
    # on Amazon Scientific (777 categories, 1,561 brands, 4,385 items over 8,600 queries with a
    # target) each overfits, out-of-fold NDCG@10 of fold 0 −0.0037 (category), −0.0035 (and brand),
    # −0.0027 (item), test −0.0025, −0.0034, −0.0034 (benchmarks/RESULTS.md). A shop with many
    # labelled queries per category is where it may pay.
    categorical: tuple[str, ...] = ()
    holdout_users: float = 0.15  # share of labelled users kept aside for early stopping
    truncation_level: int = 30  # LambdaRank: pairs considered below the top of each list
    # LambdaRank's pair weight: the steepness of the logistic on a pair's score difference
    # (LightGBM's ``sigmoid``), and whether each query's gradients are normalised by its pairs'
    # total (``lambdarank_norm``). LightGBM's defaults: over run 25's checkpoints, out-of-fold
    # NDCG@10 of every user's validation event / test against them, sigmoid 2: +0.0004 / −0.0011,
    # 0.5: −0.0001 / −0.0008; no normalisation −0.0024 (95% interval −0.0041 to −0.0006) / −0.0005
    # (benchmarks/RESULTS.md, issue 4).
    sigmoid: float = 1.0
    lambdarank_norm: bool = True
    # The gain, against the target's 1, of each user's event after the target (the frame's
    # ``later`` column: a label fold's next event; a frame without it has none) when LambdaRank
    # learns; 0 leaves it a negative, as the pointwise objective always does. The holdout, and so
    # the round kept, still counts the target alone. 0.5 against 0 over five sets of checkpoints
    # and features: holdout NDCG@10 +0.0024, +0.0005 (within the candidates), +0.0018, −0.0009,
    # −0.0002 (per labelled user); test +0.0007, −0.0001, +0.0006, 0.0000, +0.0003: level, within
    # the noise (benchmarks/RESULTS.md).
    later_gain: float = 0.5
    # A weight per label fold (fold 0 first) on its queries' gradients when LambdaRank learns;
    # empty: every fold weighs 1. The holdout is scored unweighted.
    fold_weights: tuple[float, ...] = ()
    # LambdaRank models whose scores are averaged, seeds seed, seed + 1, ...: each draws its own
    # rows and features per round and chooses its own round on the same holdout users. Three
    # averaged gave test NDCG@10 0.1121 against 0.1106 for one, over the same features
    # (benchmarks/RESULTS.md).
    ensemble: int = 3
    # Cross-fitting instead of one holdout (0: off): the labelled users fall into this many parts
    # (a user's queries of every label fold in one part, by the frame's ``person`` column),
    # model m learns from the others and stops early on part m, and the scores of all of them are
    # averaged (``ensemble``, ``holdout_users`` and ``refit_all`` then do not apply). Every user is
    # scored once by a model that did not learn from them, so the validation figure
    # (``holdout_ndcg@10``, out of fold) counts every labelled user instead of a 15% sample: on
    # Amazon Scientific 8,600 queries instead of 1,300, which is what lets settings that differ by
    # a few thousandths be told apart. Test NDCG@10 0.1130 against 0.1129 for the holdout ensemble
    # over the same features, at about the same cost (five models instead of three learned twice).
    # Ten parts: test NDCG@10 −0.0005 over run 25's features, while their out-of-fold figure, each
    # part stopped on a noisier tenth of the users, flatters them (+0.0012; benchmarks/RESULTS.md).
    cv_folds: int = 5
    # Cross-fitting repeated over this many draws of the parts (seeds seed, seed + 1, ...): every
    # repeat's models are kept and averaged, and each user's out-of-fold score is the mean over the
    # repeats of the model that did not learn from them: steadier scores for that many times the
    # training and scoring. Over run 27's checkpoints (benchmarks/RESULTS.md, issue 4), 2 / 3
    # repeats: validation event NDCG@10 +0.0007 / +0.0011, test +0.0007 / +0.0005; but with the
    # popular items kept out of the candidates (``cold_candidates``) 2 repeats gave −0.0006 on the
    # validation event against one, test level. Off (1) by default.
    cv_repeats: int = 1
    # How each cross-fitted model's round is chosen: "each" on its own part's holdout curve (a
    # fifth of the users), or "pooled", one round for all of them, the best of their curves
    # averaged per query (every labelled user, as LightGBM's own cv chooses): less noise in the
    # choice, and the out-of-fold figure no longer scores a part with the round it chose itself.
    # Level on Amazon Scientific (over run 38's checkpoints one event earlier: that event +0.0001,
    # 95% interval −0.0005 to +0.0007; benchmarks/RESULTS.md, issue 4): "each" stays.
    cv_rounds: str = "each"
    # LightGBM's regularisers of the trees' shape, all off by default; over run 22's checkpoints
    # (benchmarks/RESULTS.md), fold 0 out of fold / test NDCG@10 against the defaults:
    # extra_trees (a random threshold per feature at each split) −0.0002 / −0.0007; max_bin 1023
    # (finer splits on the scores) −0.0011 / −0.0001; path_smooth (each leaf's value pulled toward
    # its parent's, by leaf size against this weight) 3 / 10 / 30: −0.0009 / −0.0003 / −0.0009 on
    # fold 0, test −0.0002 / +0.0010 / +0.0006: validation does not choose it.
    extra_trees: bool = False
    path_smooth: float = 0.0
    # gbdt | dart (LightGBM's boosting: DART drops a random share ``drop_rate`` of the trees so
    # far while it fits each new one, and rescales them after). DART has no early stopping and a
    # model's first rounds change as it grows: each model learns ``max_rounds`` rounds watching
    # its holdout, then learns again for the round kept (the same seed gives the same trees), so
    # set ``max_rounds`` to a few hundred with it. Over run 31's checkpoints, 250 rounds at
    # learning rate 0.1 against the defaults: NDCG@10 of the validation event +0.0003 (95% interval
    # −0.0013 to +0.0018), test −0.0004, for four times the time (benchmarks/RESULTS.md, issue 4).
    # gbdt stays.
    boosting: str = "gbdt"
    drop_rate: float = 0.1
    max_bin: int = 255  # histogram bins per feature
    # Piecewise-linear trees (LightGBM's ``linear_tree``): each leaf fits a ridge regression, with
    # weight ``linear_lambda`` on its slopes, on the features split on along its path, instead of
    # a constant. Reasons still work (they replace features, not TreeSHAP, which LightGBM lacks for
    # such trees), but ``compile`` leaves them to LightGBM. Off: over run 34's checkpoints, linear
    # leaves (linear_lambda 1 / 10 / 30 / 100) against constant ones: NDCG@10 of the validation
    # event 0.0000 / +0.0002 / 0.0000 / −0.0002, test −0.0008 / +0.0003 / +0.0002 / −0.0003, each
    # interval across zero (benchmarks/RESULTS.md, issue 4).
    linear_tree: bool = False
    linear_lambda: float = 0.0
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            valid = ", ".join(OBJECTIVES)
            raise ConfigError(f"ranker.objective must be one of {valid}, not {self.objective!r}")
        if not 0.0 < self.holdout_users < 1.0:
            raise ConfigError("ranker.holdout_users must be in (0, 1)")
        if isinstance(self.exclude_features, str) or not all(
            isinstance(f, str) for f in self.exclude_features
        ):
            raise ConfigError("ranker.exclude_features must be a list of feature names")
        object.__setattr__(self, "exclude_features", tuple(self.exclude_features))
        if isinstance(self.categorical, str) or not all(isinstance(f, str) for f in self.categorical):
            raise ConfigError("ranker.categorical must be a list of column names")
        object.__setattr__(self, "categorical", tuple(self.categorical))
        if isinstance(self.fold_weights, (str, bytes)) or not all(
            isinstance(w, (int, float)) and w >= 0 for w in self.fold_weights
        ):
            raise ConfigError("ranker.fold_weights must be a list of weights >= 0, one per label fold")
        object.__setattr__(self, "fold_weights", tuple(float(w) for w in self.fold_weights))
        if not isinstance(self.monotone, dict) or not all(
            isinstance(k, str) and v in (-1, 1) and not isinstance(v, bool) for k, v in self.monotone.items()
        ):
            raise ConfigError("ranker.monotone must map feature names to 1 (increasing) or -1 (decreasing)")
        if not 0.0 <= self.later_gain < 1.0:
            raise ConfigError(f"ranker.later_gain must be in [0, 1), not {self.later_gain}")
        if self.smooth_rounds < 1:
            raise ConfigError("ranker.smooth_rounds must be at least 1")
        if self.ensemble < 1:
            raise ConfigError(f"ranker.ensemble must be at least 1, not {self.ensemble}")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ConfigError(f"ranker.cv_folds must be 0 (one holdout) or at least 2, not {self.cv_folds}")
        if self.cv_rounds not in ("each", "pooled"):
            raise ConfigError(f"ranker.cv_rounds must be 'each' or 'pooled', not {self.cv_rounds!r}")
        if self.cv_rounds == "pooled" and self.boosting == "dart":
            raise ConfigError(
                "ranker.cv_rounds = 'pooled' needs gbdt: DART relearns each model to its own round"
            )
        if self.cv_repeats < 1:
            raise ConfigError(f"ranker.cv_repeats must be at least 1, not {self.cv_repeats}")
        if self.sigmoid <= 0:
            raise ConfigError(f"ranker.sigmoid must be positive, not {self.sigmoid}")
        if self.boosting not in ("gbdt", "dart"):
            raise ConfigError(f"ranker.boosting must be gbdt or dart, not {self.boosting!r}")
        if not 0.0 < self.drop_rate <= 1.0:
            raise ConfigError(f"ranker.drop_rate must be in (0, 1], not {self.drop_rate}")
        if self.linear_lambda < 0:
            raise ConfigError(f"ranker.linear_lambda must be >= 0, not {self.linear_lambda}")
        if self.path_smooth < 0 or self.max_bin < 2:
            raise ConfigError("ranker: path_smooth >= 0 and max_bin >= 2 are required")
        if self.num_leaves < 2 or self.max_rounds < 1 or self.learning_rate <= 0:
            raise ConfigError("ranker: num_leaves >= 2, max_rounds >= 1 and learning_rate > 0 are required")

    @property
    def members(self) -> int:
        """How many models the ranker averages: one per part with cross-fitting, else ``ensemble``."""
        return self.cv_folds * self.cv_repeats or self.ensemble


class _Rows(NamedTuple):
    """A training frame's rows as arrays, sorted by user (query)."""

    x: np.ndarray  # (rows, features) float32
    y: np.ndarray  # 1 on the target
    y_learn: np.ndarray  # the labels LambdaRank learns (graded with a later event)
    weight: np.ndarray | None  # per row (by label fold), or None
    users: np.ndarray  # the users (queries) with a target, sorted
    row_users: np.ndarray  # each row's user
    # each row's person: the queries one person asks (one per label fold) fall into the same
    # cross-fitting part; the query itself where the frame has no ``person`` column
    row_people: np.ndarray


class Ranker:
    """LambdaRank models (``RankerConfig.members`` of them, scores averaged) over named feature columns."""

    def __init__(self, config: RankerConfig, features: list[str]) -> None:
        self.config = config
        self.features = list(features)
        # the features the config names (held monotone, read as categories) must be model inputs
        for option in ("monotone", "categorical"):
            unknown = sorted(set(getattr(config, option)) - set(self.features))
            if unknown:
                raise ConfigError(f"ranker.{option} names {unknown}, not among the features {self.features}")
        self.boosters: list[Any] = []
        self.info: dict[str, Any] = {}
        # After a cross-fitted fit: every labelled query (``user``, with its ``fold`` when the frame
        # has one) and the NDCG@10 of its out-of-fold scores (``ndcg@10``; 0 where the target is not
        # among the candidates), sorted by user, for paired comparisons of settings. Not saved.
        self.oof: pl.DataFrame | None = None
        # After a cross-fitted fit: the out-of-fold score (``score``) of every candidate of the
        # queries with a target among them (``user``, and ``item`` where the frame has it), from
        # the one model that did not learn from its user: what a model stacked on the ranker's
        # output learns from (``benchmarks/second_stage.py``). Not saved.
        self.oof_scores: pl.DataFrame | None = None
        self.predict_threads: int | None = None  # runtime option: threads per predict (None: LightGBM's)
        # The trees as native code (``compile``), one per booster, used by predict when set.
        self.compiled: list[Any] | None = None

    @property
    def booster(self) -> Any:
        """The first model (the only one unless ``ensemble`` > 1), or None before training."""
        return self.boosters[0] if self.boosters else None

    def _params(self, member: int = 0) -> dict[str, Any]:
        c = self.config
        return {
            "objective": c.objective,
            "metric": "ndcg",
            "eval_at": [10],
            "num_leaves": c.num_leaves,
            "learning_rate": c.learning_rate,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction,
            "bagging_fraction": c.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": c.lambda_l2,
            "lambdarank_truncation_level": c.truncation_level,
            "sigmoid": c.sigmoid,
            "lambdarank_norm": c.lambdarank_norm,
            **({"extra_trees": True} if c.extra_trees else {}),
            **({"path_smooth": c.path_smooth} if c.path_smooth else {}),
            **({"linear_tree": True, "linear_lambda": c.linear_lambda} if c.linear_tree else {}),
            **(
                {"boosting": "dart", "drop_rate": c.drop_rate, "drop_seed": c.seed + member}
                if self._dart
                else {}
            ),
            **(
                {
                    "monotone_constraints": [c.monotone.get(f, 0) for f in self.features],
                    "monotone_constraints_method": "intermediate",
                }
                if c.monotone
                else {}
            ),
            # Labels 0 (other), 1 (the later event), 2 (the target); the holdout's are 0 and 1.
            **({"label_gain": [0.0, c.later_gain, 1.0]} if self._graded else {}),
            "seed": c.seed + member,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": c.threads,
            "verbosity": -1,
        }

    def fit(self, frame: pl.DataFrame, *, progress: bool = False) -> Ranker:
        """Train on ``frame`` (columns ``user``, ``label`` and the features), sorted by user.
        Optional columns: ``person`` (cross-fitting keeps a person's queries in one part),
        ``fold`` (the label fold: per-fold figures, ``fold_weights``), ``later`` (graded labels).

        Users without a positive among their candidates teach LambdaRank nothing and are dropped.
        """
        missing = [c for c in ("user", "label", *self.features) if c not in frame.columns]
        if missing:
            raise ConfigError(f"ranker training frame lacks columns {missing}")
        self.oof = self.oof_scores = None
        labelled = frame["user"].n_unique()
        labelled_frame = frame.select("user", *(["fold"] if "fold" in frame.columns else []))
        useful = frame.group_by("user").agg(pl.col("label").max().alias("has")).filter(pl.col("has") > 0)
        frame = frame.join(useful.select("user"), on="user", how="semi").sort("user")
        users = frame["user"].unique().sort().to_numpy()
        if len(users) < 10:
            raise ConfigError(f"only {len(users)} users have their target among the candidates; need >= 10")
        # One conversion of the whole frame; the training, holdout and refit sets are its rows.
        x = frame.select(self.features).to_numpy().astype(np.float32)
        y = (frame["label"].to_numpy() > 0).astype(np.int8)
        y_learn, weight = self._learning_labels(frame, y)
        people = frame["person" if "person" in frame.columns else "user"].to_numpy()
        rows = _Rows(x, y, y_learn, weight, users, frame["user"].to_numpy(), people)
        if self.config.cv_folds:
            keys = [c for c in ("user", "item") if c in frame.columns]
            self.oof_scores = frame.select(keys).with_columns(score=pl.Series(self._fit_cv(rows, progress)))
        else:
            self._fit_holdout(rows, progress)
        if self.oof is not None:
            self._every_query(labelled_frame)
        # The holdout counts only users whose target is among their candidates, so a candidate set
        # that finds more (hard) targets lowers it. Per labelled user, a user without the target
        # among the candidates scores 0: the holdout's figure times the share that have it, which
        # compares across candidate sets.
        self.info["useful_share"] = len(users) / max(labelled, 1)
        final = self.info.get("holdout_ndcg@10_ensemble", self.info["holdout_ndcg@10"])
        self.info["holdout_ndcg@10_every_user"] = float(final) * self.info["useful_share"]
        return self

    def _fit_holdout(self, rows: _Rows, progress: bool) -> None:
        """``ensemble`` models early-stopped on one holdout of users (then refitted on all)."""
        import lightgbm as lgb

        x, y, y_learn, weight, users, row_users, _ = rows

        rng = np.random.default_rng(self.config.seed)
        held = rng.random(len(users)) < self.config.holdout_users
        in_holdout = np.isin(row_users, users[held])
        train = ~in_holdout
        sets = {
            "train": self._dataset(x[train], y_learn[train], row_users[train], _part(weight, train)),
            "valid": self._dataset(x[in_holdout], y[in_holdout], row_users[in_holdout]),
        }
        sets["valid"].reference = sets["train"]
        full = self._dataset(x, y_learn, row_users, weight) if self.config.refit_all else None
        held_groups = np.unique(row_users[in_holdout], return_counts=True)[1]
        self.boosters, bests, curves, held_scores = [], [], [], []
        for member in range(self.config.ensemble):
            booster, best, curve = self._train_member(member, sets["train"], sets["valid"], progress)
            held_scores.append(booster.predict(x[in_holdout], num_iteration=best))
            if full is not None:
                booster = lgb.train(self._params(member), full, num_boost_round=best)
            booster.best_iteration = best
            self.boosters.append(booster)
            bests.append(best)
            curves.append(curve)
        self.info = {
            "train_users": int((~held).sum()),
            "holdout_users": int(held.sum()),
            "train_rows": int(train.sum()),
            "best_round": bests[0],
            "raw_best_round": int(np.argmax(curves[0])) + 1,
            "holdout_ndcg@10": float(curves[0][bests[0] - 1]),
        }
        if self.config.ensemble > 1:
            self.info["best_rounds"] = bests
            self.info["holdout_ndcg@10_members"] = [
                float(c[b - 1]) for c, b in zip(curves, bests, strict=True)
            ]
            mean = np.mean(held_scores, axis=0)
            self.info["holdout_ndcg@10_ensemble"] = ndcg_at(mean, y[in_holdout], held_groups, 10)
        if full is not None:
            self.info["refit_users"] = len(users)

    def _fit_cv(self, rows: _Rows, progress: bool) -> np.ndarray:
        """``cv_folds`` models, model m learning from every part of the users but part m and
        stopping early on it; the validation figure is NDCG@10 of every user's out-of-fold score.
        Returns the rows' out-of-fold scores."""
        x, y, y_learn, weight, users, row_users, row_people = rows
        k = self.config.cv_folds
        people, person_of = np.unique(row_people, return_inverse=True)
        if len(people) < 2 * k:
            need = f"{2 * k} or more users with a target"
            raise ConfigError(f"ranker.cv_folds = {k} needs {need}, not {len(people)}")
        # By person, not by query: a model never learns from a person's other label fold while it
        # is scored on this one (their histories overlap all but an event).
        oof = np.zeros(len(y), np.float64)
        self.boosters, bests, curves = [], [], []
        for repeat in range(self.config.cv_repeats):
            rng = np.random.default_rng(self.config.seed + repeat)
            part = (rng.permutation(len(people)) % k)[person_of]
            members: list[tuple[Any, int, np.ndarray, np.ndarray]] = []
            for m in range(k):
                held = part == m
                train = ~held
                train_set = self._dataset(x[train], y_learn[train], row_users[train], _part(weight, train))
                valid_set = self._dataset(x[held], y[held], row_users[held])
                valid_set.reference = train_set
                booster, best, curve = self._train_member(repeat * k + m, train_set, valid_set, progress)
                members.append((booster, best, curve, held))
            if self.config.cv_rounds == "pooled":
                pooled = pooled_best(
                    [c for _, _, c, _ in members],
                    [len(np.unique(row_users[h])) for *_, h in members],
                    self.config.smooth_rounds,
                )
                members = [(b, pooled, c, h) for b, _, c, h in members]
            for booster, best, curve, held in members:
                oof[held] += booster.predict(x[held], num_iteration=best) / self.config.cv_repeats
                booster.best_iteration = best
                self.boosters.append(booster)
                bests.append(best)
                curves.append(curve)
        groups = np.unique(row_users, return_counts=True)[1]
        per_query = ndcg_per_query(oof, y, groups, 10)
        self.oof = pl.DataFrame({"user": users, "ndcg@10": per_query})
        self.info = {
            "cv_folds": k,
            "cv_repeats": self.config.cv_repeats,
            "train_users": len(users),
            "holdout_users": len(users),
            "train_rows": len(y),
            "best_round": bests[0],
            "best_rounds": bests,
            "raw_best_round": int(np.argmax(curves[0])) + 1,
            # Out of fold: each user scored by the one model that did not learn from them.
            "holdout_ndcg@10": float(per_query.mean()),
            "holdout_ndcg@10_members": [float(c[b - 1]) for c, b in zip(curves, bests, strict=True)],
        }
        return oof

    def _every_query(self, labelled: pl.DataFrame) -> None:
        """Widen ``oof`` (the useful queries) to every labelled query, 0 where the target is not
        among the candidates; with label folds, each fold's mean into
        ``info["holdout_ndcg@10_every_user_by_fold"]``."""
        assert self.oof is not None
        self.oof = (
            labelled.unique("user")
            .join(self.oof, on="user", how="left")
            .with_columns(pl.col("ndcg@10").fill_null(0.0))
            .sort("user")
        )
        if "fold" in self.oof.columns:
            by_fold = self.oof.group_by("fold").agg(pl.col("ndcg@10").mean()).sort("fold")
            self.info["holdout_ndcg@10_every_user_by_fold"] = [float(v) for v in by_fold["ndcg@10"]]

    def _train_member(
        self, member: int, train: Any, valid: Any, progress: bool
    ) -> tuple[Any, int, np.ndarray]:
        """One model of the ensemble, early-stopped on the holdout: the model, the round kept (best
        of the smoothed holdout curve) and the curve (holdout NDCG@10 per round)."""
        import lightgbm as lgb

        evals: dict[str, Any] = {}
        callbacks: list[Any] = [lgb.record_evaluation(evals)]
        if not self._dart:
            callbacks.append(lgb.early_stopping(self.config.early_stopping_rounds, verbose=False))
        if progress:
            callbacks.append(lgb.log_evaluation(100))
        booster = lgb.train(
            self._params(member),
            train,
            num_boost_round=self.config.max_rounds,
            valid_sets=[valid],
            valid_names=["holdout"],
            callbacks=callbacks,
        )
        curve = np.asarray(evals["holdout"]["ndcg@10"])
        best = smoothed_best(curve, self.config.smooth_rounds)
        if self._dart and best < booster.current_iteration():
            booster = lgb.train(self._params(member), train, num_boost_round=best)
        return booster, best, curve

    @property
    def _dart(self) -> bool:
        return self.config.boosting == "dart"

    @property
    def _graded(self) -> bool:
        """Whether LambdaRank learns graded labels (a later event below the target)."""
        return bool(self.config.later_gain) and self.config.objective != "binary"

    def _learning_labels(self, frame: pl.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The labels LambdaRank learns (2 target, 1 later event, 0 other with ``later_gain``;
        else ``y``) and the rows' weights by fold (None: all 1)."""
        c = self.config
        y_learn = y
        if self._graded:
            later = (frame["later"].to_numpy() > 0) if "later" in frame.columns else np.zeros(len(y), bool)
            y_learn = np.where(y > 0, 2, later.astype(np.int8)).astype(np.int8)
        if not c.fold_weights:
            return y_learn, None
        if "fold" not in frame.columns:
            raise ConfigError("ranker.fold_weights needs the frame's fold column (recsys.rank.training)")
        fold = frame["fold"].to_numpy()
        if fold.max() >= len(c.fold_weights):
            raise ConfigError(
                f"ranker.fold_weights has {len(c.fold_weights)} weights for {int(fold.max()) + 1} label folds"
            )
        return y_learn, np.asarray(c.fold_weights, np.float64)[fold]

    def _dataset(
        self, x: np.ndarray, label: np.ndarray, users: np.ndarray, weight: np.ndarray | None = None
    ) -> Any:
        """A LightGBM dataset of rows sorted by user, one query per user (``weight`` per row)."""
        import lightgbm as lgb

        _, groups = np.unique(users, return_counts=True)
        return lgb.Dataset(
            x,
            label=label,
            weight=weight,
            group=groups,
            feature_name=self.features,
            categorical_feature=list(self.config.categorical) or "auto",
            # a code of -1 (unknown) is missing, as meant: no warning
            params={"verbosity": -1, "max_bin": self.config.max_bin},
            free_raw_data=True,
        )

    def _check(self) -> list[Any]:
        if not self.boosters:
            raise NotFittedError("the ranker is not trained: call fit() or load it from an artifact")
        return self.boosters

    @staticmethod
    def _rounds(booster: Any) -> int | None:
        best = int(getattr(booster, "best_iteration", 0) or 0)
        return best if best > 0 else None  # a loaded model holds only its best rounds

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """(rows, features) float32: the model's input columns of ``frame``, in order."""
        # Column by column: a few hundred rows (a request) convert several times faster this way
        # than through select().to_numpy(); nulls become NaN (LightGBM's missing) either way.
        if not frame.height:
            return np.zeros((0, len(self.features)), np.float32)
        return np.column_stack([frame.get_column(f).to_numpy() for f in self.features]).astype(
            np.float32, copy=False
        )

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return self.predict_array(self.matrix(frame))

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        """Scores of a (rows, features) array in ``features`` order."""
        if self.compiled is not None and len(x):
            x64 = np.asarray(x, dtype=np.float64)
            outs = [m.predict(x64, n_jobs=self.predict_threads or 1) for m in self.compiled]
        else:
            kw = {} if self.predict_threads is None else {"num_threads": self.predict_threads}
            outs = [b.predict(x, num_iteration=self._rounds(b), **kw) for b in self._check()]
        return np.asarray(outs[0] if len(outs) == 1 else np.mean(outs, axis=0), np.float64)

    def compile(self, cache_dir: str | Path | None = None) -> bool:
        """Compile the trees to native code for this CPU (lleaves, through LLVM): the same scores
        as LightGBM's (checked here on random rows with missing values) at a fraction of the time
        per row, which is what a served request spends most on. The object files are cached under
        ``cache_dir`` (default ``$RECSYS_CACHE_DIR/ranker``), named by each model's text, the CPU
        and the compiler, so only the first load on a machine compiles (seconds). Returns False,
        and LightGBM keeps predicting, where lleaves is not installed or a check fails."""
        try:
            import lleaves  # noqa: F401
            import llvmlite.binding as llvm
        except ImportError:
            log.info("lleaves is not installed: the ranker predicts with LightGBM")
            return False
        if self.config.linear_tree:
            log.info("lleaves does not compile linear trees: the ranker predicts with LightGBM")
            return False
        cpu = f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"
        folder = Path(cache_dir) if cache_dir else default_compile_dir()
        rng = np.random.default_rng(0)
        probe = rng.standard_normal((64, len(self.features)))
        probe[rng.random(probe.shape) < 0.2] = np.nan
        for f in self.config.categorical:  # codes: whole numbers, -1 unknown
            probe[:, self.features.index(f)] = rng.integers(-1, 50, len(probe))
        compiled = []
        for booster in self._check():
            model = _compile_one(booster.model_to_string(num_iteration=self._rounds(booster)), cpu, folder)
            if model is None:
                return False
            expected = booster.predict(probe, num_iteration=self._rounds(booster))
            if not np.allclose(model.predict(probe, n_jobs=1), expected, rtol=1e-6, atol=1e-9):
                log.warning("the compiled ranker disagrees with LightGBM: LightGBM predicts")
                return False
            compiled.append(model)
        self.compiled = compiled
        return True

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """(rows, n_features) each feature's additive contribution to the score (TreeSHAP; the
        mean over the models, as the score is)."""
        if self.config.linear_tree:
            raise ConfigError("ranker: LightGBM has no TreeSHAP contributions for linear trees (linear_tree)")
        x = frame.select(self.features).to_numpy().astype(np.float32)
        outs = [b.predict(x, num_iteration=self._rounds(b), pred_contrib=True) for b in self._check()]
        return np.mean(outs, axis=0)[:, : len(self.features)]

    def importance(self) -> dict[str, float]:
        """Total gain per feature over every model, largest first."""
        gains = sum(
            b.feature_importance(importance_type="gain", iteration=self._rounds(b)) for b in self._check()
        )
        pairs = sorted(zip(self.features, np.asarray(gains).tolist(), strict=True), key=lambda p: -p[1])
        return {name: round(float(g), 2) for name, g in pairs}

    # ----- persistence ------------------------------------------------------------------------
    def save(self, folder: Path) -> dict[str, Any]:
        for member, booster in enumerate(self._check()):
            text = booster.model_to_string(num_iteration=self._rounds(booster))
            (folder / model_file_name(member)).write_text(text)
        return {"config": asdict(self.config), "features": self.features, "info": self.info}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Ranker:
        import lightgbm as lgb

        # An artifact written before ``ensemble`` existed holds one model; one written before
        # ``cv_folds``, a holdout ensemble.
        ranker = cls(RankerConfig(**{"ensemble": 1, "cv_folds": 0, **meta["config"]}), meta["features"])
        for member in range(ranker.config.members):
            path = folder / model_file_name(member)
            if not path.exists():
                raise ArtifactError(
                    f"{folder} has no {path.name} (a ranker of {ranker.config.members} models)"
                )
            booster = lgb.Booster(model_file=str(path))
            if list(booster.feature_name()) != ranker.features:
                raise ArtifactError(f"{path} was trained on other features than its manifest lists")
            ranker.boosters.append(booster)
        ranker.info = meta.get("info", {})
        return ranker


def _part(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


def model_file_name(member: int) -> str:
    """The file of an artifact's ``member``-th LambdaRank model: ranker.txt, ranker-1.txt, ..."""
    return "ranker.txt" if member == 0 else f"ranker-{member}.txt"


def _compile_one(text: str, cpu: str, folder: Path) -> Any:
    """One LightGBM model's text compiled by lleaves (cached in ``folder``), or None on failure."""
    import lleaves

    key = "|".join([text, cpu, version("lleaves"), version("llvmlite")])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            model_file, obj = folder / f"{digest}.txt", folder / f"{digest}.o"
            if not model_file.exists():
                write_text(model_file, text)
        except OSError as exc:  # a read-only home: compile without keeping the result
            log.warning("ranker cache %s not writable (%s): compiled for this process", folder, exc)
            with tempfile.TemporaryDirectory() as tmp_dir:
                model_file = Path(tmp_dir) / "ranker.txt"
                model_file.write_text(text)
                compiled = lleaves.Model(model_file=str(model_file))
                compiled.compile()
        else:
            compiled = lleaves.Model(model_file=str(model_file))
            if obj.exists():
                compiled.compile(cache=str(obj))
            else:  # compile into a file of our own, then publish it whole
                tmp = folder / f"{digest}.{os.getpid()}.o"
                compiled.compile(cache=str(tmp))
                os.replace(tmp, obj)
    except Exception as exc:  # a broken toolchain: LightGBM still answers
        log.warning("could not compile the ranker (%s): LightGBM predicts", exc)
        return None
    return compiled


def ndcg_at(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Mean NDCG@k over queries (consecutive rows, ``groups`` long each) with binary labels, by the
    evaluation's own metric (``recsys.evaluation.metrics``), ties in score broken by row order; a
    query without a positive counts 1, as in LightGBM."""
    return float(ndcg_per_query(scores, labels, groups, k).mean()) if len(groups) else 0.0


def ndcg_per_query(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """(queries,) NDCG@k of each query of ``ndcg_at`` (1 for a query without a positive)."""
    from recsys.evaluation.metrics import ranking_metrics

    n_queries = len(groups)
    query = np.repeat(np.arange(n_queries), groups)
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores), query))
    position = np.empty(len(scores), np.int64)
    position[order] = np.arange(len(scores)) - np.repeat(np.cumsum(groups) - groups, groups)
    positive = np.asarray(labels) > 0
    answered, user_of = np.unique(query[positive], return_inverse=True)
    per_query = np.ones(n_queries, np.float64)
    per_query[answered] = ranking_metrics(position[positive], user_of, len(answered), ks=(k,))[f"ndcg@{k}"]
    return per_query


def pooled_best(curves: list[np.ndarray], queries: list[int], window: int) -> int:
    """The one round (1-based) for every cross-fitted model: the smoothed best (``smoothed_best``)
    of their holdout curves averaged per query, over the rounds every model reached (each ran at
    least ``early_stopping_rounds`` past its own best)."""
    reached = min(len(c) for c in curves)
    stacked = np.stack([np.asarray(c[:reached], np.float64) for c in curves])  # (models, rounds)
    return smoothed_best(np.average(stacked, axis=0, weights=queries), window)


def smoothed_best(curve: np.ndarray, window: int) -> int:
    """The round (1-based) whose centred moving average of ``curve`` over ``window`` rounds is highest
    (the window shrinks at the ends)."""
    if window <= 1 or len(curve) <= 1:
        return int(np.argmax(curve)) + 1
    sums = np.r_[0.0, np.cumsum(curve)]
    half = window // 2
    lo = np.maximum(np.arange(len(curve)) - half, 0)
    hi = np.minimum(np.arange(len(curve)) + half + 1, len(curve))
    return int(np.argmax((sums[hi] - sums[lo]) / (hi - lo))) + 1


def default_compile_dir() -> Path:
    return Path(os.environ.get("RECSYS_CACHE_DIR", Path.home() / ".cache" / "recsys")) / "ranker"
