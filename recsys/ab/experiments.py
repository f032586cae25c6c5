"""Experiments: a TOML file of experiments and the assignment of users to their variants.

::

    [[experiments]]
    name = "hybrid-vs-als"          # unique; what the logs and the report name
    salt = "hybrid-vs-als-2026-11"  # unique; changing it reshuffles this experiment only
    traffic = 1.0                   # share of users enrolled (0 < traffic <= 1)
    control = "als"                 # the variant lifts are measured against (default: the first)
    primary = "ctr"                 # the metric the summary leads with
    start = 2026-11-29T10:00:00Z    # optional: outcomes before it form CUPED's pre-period

      [[experiments.variants]]
      name = "als"
      weight = 0.5
      ranking = "als"               # "hybrid" (the ranking stage) or one scorer of the artifact alone

      [[experiments.variants]]
      name = "hybrid"
      weight = 0.5
      ranking = "hybrid"
      # model_dir = "artifacts/other"   # another artifact for this variant (default: the served one)
      # max_per_category = 3           # a diversity cap on this variant's lists

      [experiments.guardrails]      # optional, these are the defaults
      latency_p99_ratio = 1.25      # a variant's p99 latency may exceed control's by this factor
      max_error_rate = 0.001        # share of a variant's requests that may fail

**Assignment** is a pure function of (salt, user id): a 64-bit hash of ``salt:user`` (blake2b) read
as a number in [0, 1) picks the variant by cumulative weight, and an independent hash
(``salt:traffic:user``) decides enrolment. No state is kept, so assignment is sticky across
requests, workers and restarts, uniform by the hash's uniformity, and independent across
experiments whose salts differ.

A user is served by the first experiment in the file that enrols them; since assignments of
different salts are independent, every experiment's variants still split its users at random.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recsys.config import load_toml
from recsys.errors import ConfigError

HYBRID = "hybrid"
METRICS = ("ctr", "conversion", "revenue_per_user", "clicks_per_user")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WEIGHT_TOLERANCE = 1e-6


def bucket(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by ``salt`` and ``user_id``."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Guardrails:
    latency_p99_ratio: float = 1.25
    max_error_rate: float = 0.001


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    ranking: str = HYBRID  # "hybrid" or the name of one scorer of the artifact
    model_dir: Path | None = None  # another artifact (default: the served one)
    max_per_category: int | None = None

    @property
    def label(self) -> str:
        """What the variant serves, in words."""
        what = "the hybrid ranking stage" if self.ranking == HYBRID else f"{self.ranking} alone"
        if self.model_dir is not None:
            what += f" of {self.model_dir}"
        if self.max_per_category is not None:
            what += f", at most {self.max_per_category} per category"
        return what


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    variants: tuple[Variant, ...]
    traffic: float = 1.0
    control: str = ""
    primary: str = "ctr"
    start: datetime | None = None
    guardrails: Guardrails = field(default_factory=Guardrails)
    _cumulative: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        total = sum(v.weight for v in self.variants)
        bounds, acc = [], 0.0
        for v in self.variants:
            acc += v.weight / total
            bounds.append(acc)
        object.__setattr__(self, "_cumulative", tuple(bounds))
        if not self.control:
            object.__setattr__(self, "control", self.variants[0].name)

    def enrolled(self, user_id: str) -> bool:
        return self.traffic >= 1.0 or bucket(f"{self.salt}:traffic", user_id) < self.traffic

    def variant_of(self, user_id: str) -> Variant:
        """The user's variant (whether or not the traffic share enrols them)."""
        u = bucket(self.salt, user_id)
        for variant, bound in zip(self.variants, self._cumulative, strict=True):
            if u < bound:
                return variant
        return self.variants[-1]

    def assign(self, user_id: str) -> Variant | None:
        """The variant that serves ``user_id``, or None when the user is outside the traffic share."""
        return self.variant_of(user_id) if self.enrolled(user_id) else None

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"experiment {self.name!r} has no variant {name!r}")

    @property
    def weights(self) -> dict[str, float]:
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}


@dataclass(frozen=True)
class Experiments:
    experiments: tuple[Experiment, ...] = ()
    source: str = ""

    def __iter__(self) -> Any:
        return iter(self.experiments)

    def __len__(self) -> int:
        return len(self.experiments)

    def get(self, name: str) -> Experiment:
        for e in self.experiments:
            if e.name == name:
                return e
        known = ", ".join(e.name for e in self.experiments) or "none"
        raise ConfigError(
            f"no experiment {name!r} in {self.source or 'the experiments file'} (known: {known})"
        )

    def assign(self, user_id: str) -> tuple[Experiment, Variant] | None:
        """The first experiment that enrols ``user_id`` and its variant."""
        for e in self.experiments:
            v = e.assign(user_id)
            if v is not None:
                return e, v
        return None

    def check_rankings(self, scorers: Iterable[str], where: str = "the artifact") -> None:
        """Refuse variants whose ``ranking`` names no scorer of the served artifact."""
        known = set(scorers)
        for e in self.experiments:
            for v in e.variants:
                if v.model_dir is None and v.ranking != HYBRID and v.ranking not in known:
                    raise ConfigError(
                        f"{self.source}: experiment {e.name!r} variant {v.name!r}: ranking "
                        f"{v.ranking!r} is not 'hybrid' nor a scorer of {where} ({', '.join(sorted(known))})"
                    )


def load_experiments(path: str | Path) -> Experiments:
    """Read and check an experiments file; every problem is a ``ConfigError`` naming the place."""
    raw = load_toml(path)
    return parse_experiments(raw, str(path), base=Path(path).resolve().parent)


def parse_experiments(
    raw: Mapping[str, Any], source: str = "experiments", base: Path | None = None
) -> Experiments:
    unknown = sorted(set(raw) - {"experiments"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; experiments go in [[experiments]]")
    items = raw.get("experiments", [])
    if not isinstance(items, list):
        raise ConfigError(f"{source}: 'experiments' must be an array of tables ([[experiments]])")
    out: list[Experiment] = []
    names: set[str] = set()
    salts: dict[str, str] = {}
    for i, item in enumerate(items):
        where = f"{source}: experiments[{i}]"
        e = _experiment(item, where, base)
        if e.name in names:
            raise ConfigError(f"{where}: duplicate experiment name {e.name!r}")
        if e.salt in salts:
            raise ConfigError(
                f"{where}: salt {e.salt!r} is already experiment {salts[e.salt]!r}'s; experiments with "
                "one salt assign the same users alike (give each its own)"
            )
        names.add(e.name)
        salts[e.salt] = e.name
        out.append(e)
    return Experiments(tuple(out), source)


_EXPERIMENT_KEYS = {"name", "salt", "traffic", "control", "primary", "start", "variants", "guardrails"}
_VARIANT_KEYS = {"name", "weight", "ranking", "model_dir", "max_per_category"}


def _experiment(item: Any, where: str, base: Path | None) -> Experiment:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(item) - _EXPERIMENT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {sorted(_EXPERIMENT_KEYS)}")
    name = _name(item.get("name"), f"{where}.name")
    where = f"{where} ({name})"
    salt = item.get("salt")
    if not isinstance(salt, str) or not salt.strip():
        raise ConfigError(f"{where}: 'salt' must be a non-empty string")
    traffic = _number(item.get("traffic", 1.0), f"{where}.traffic")
    if not 0.0 < traffic <= 1.0:
        raise ConfigError(f"{where}: traffic must be in (0, 1], not {traffic}")
    raw_variants = item.get("variants")
    if not isinstance(raw_variants, list) or len(raw_variants) < 2:
        raise ConfigError(f"{where}: needs at least two [[experiments.variants]]")
    variants = [_variant(v, f"{where}.variants[{j}]", base) for j, v in enumerate(raw_variants)]
    seen: set[str] = set()
    for v in variants:
        if v.name in seen:
            raise ConfigError(f"{where}: duplicate variant name {v.name!r}")
        seen.add(v.name)
    total = sum(v.weight for v in variants)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        shown = ", ".join(f"{v.name}={v.weight:g}" for v in variants)
        raise ConfigError(f"{where}: variant weights must sum to 1, not {total:g} ({shown})")
    control = item.get("control", variants[0].name)
    if control not in seen:
        raise ConfigError(f"{where}: control {control!r} is not one of its variants {sorted(seen)}")
    primary = item.get("primary", "ctr")
    if primary not in METRICS:
        raise ConfigError(f"{where}: primary {primary!r} is not a metric ({', '.join(METRICS)})")
    start = item.get("start")
    if start is not None:
        if not isinstance(start, datetime):
            raise ConfigError(f"{where}: start must be a TOML date-time like 2026-11-29T10:00:00Z")
        start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    guard = item.get("guardrails", {})
    if not isinstance(guard, Mapping) or set(guard) - {"latency_p99_ratio", "max_error_rate"}:
        raise ConfigError(f"{where}: guardrails takes latency_p99_ratio and max_error_rate only")
    guardrails = Guardrails(
        latency_p99_ratio=_number(
            guard.get("latency_p99_ratio", 1.25), f"{where}.guardrails.latency_p99_ratio"
        ),
        max_error_rate=_number(guard.get("max_error_rate", 0.001), f"{where}.guardrails.max_error_rate"),
    )
    return Experiment(
        name=name,
        salt=salt,
        variants=tuple(variants),
        traffic=traffic,
        control=control,
        primary=primary,
        start=start,
        guardrails=guardrails,
    )


def _variant(item: Any, where: str, base: Path | None) -> Variant:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(item) - _VARIANT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {sorted(_VARIANT_KEYS)}")
    name = _name(item.get("name"), f"{where}.name")
    weight = _number(item.get("weight"), f"{where} ({name}).weight")
    if weight <= 0:
        raise ConfigError(f"{where} ({name}): weight must be positive, not {weight}")
    ranking = item.get("ranking", HYBRID)
    if not isinstance(ranking, str) or not _NAME.match(ranking):
        raise ConfigError(f"{where} ({name}): ranking must be 'hybrid' or a scorer name, not {ranking!r}")
    model_dir = item.get("model_dir")
    if model_dir is not None:
        if not isinstance(model_dir, str) or not model_dir:
            raise ConfigError(f"{where} ({name}): model_dir must be a path string")
        path = Path(model_dir)
        model_dir = path if path.is_absolute() or base is None else (base / path)
        if not (model_dir / "manifest.json").is_file():
            raise ConfigError(
                f"{where} ({name}): model_dir {model_dir} is not an artifact (no manifest.json)"
            )
    cap = item.get("max_per_category")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ConfigError(f"{where} ({name}): max_per_category must be a positive integer, not {cap!r}")
    return Variant(name=name, weight=weight, ranking=ranking, model_dir=model_dir, max_per_category=cap)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{where}: a name of letters, digits, '_', '.', '-' (at most 64) is required, not {value!r}"
        )
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: a finite number is required, not {value!r}")
    return float(value)
