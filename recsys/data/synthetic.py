"""A synthetic e-commerce log with a known answer, for tests and scale runs.

Items belong to categories and carry text written from templates (category words in the title and
description), so text models can tell categories apart. Each user has hidden interests (one or two
categories); their sequences stay within them, and with probability ``chain_prob`` the next item is
the current item's fixed "successor" (the accessory bought after the printer), which co-visitation
can learn. A model that learns categories or successors therefore has a known edge over popularity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.schema import validate_interactions, validate_items
from recsys.errors import ConfigError

_CATEGORIES = {
    "Lab Glassware": (
        ["beaker", "flask", "pipette", "burette", "test tube", "funnel"],
        ["borosilicate", "graduated"],
    ),
    "3D Printing": (
        ["filament", "nozzle", "print bed", "extruder", "spool holder", "resin"],
        ["PLA", "PETG"],
    ),
    "Power Tools": (
        ["drill", "sander", "grinder", "jigsaw", "router", "heat gun"],
        ["cordless", "brushless"],
    ),
    "Safety Gear": (
        ["goggles", "gloves", "respirator", "ear muffs", "hard hat", "face shield"],
        ["protective", "certified"],
    ),
    "Electronics": (
        ["multimeter", "oscilloscope", "soldering iron", "breadboard", "resistor kit", "power supply"],
        ["digital", "bench"],
    ),
    "Fasteners": (["screws", "bolts", "washers", "rivets", "anchors", "nuts"], ["stainless", "zinc-plated"]),
    "Adhesives": (
        ["epoxy", "super glue", "sealant", "tape", "glue sticks", "adhesive spray"],
        ["waterproof", "industrial"],
    ),
    "Measuring": (
        ["caliper", "micrometer", "tape measure", "level", "thermometer", "scale"],
        ["precision", "metric"],
    ),
    "Abrasives": (
        ["sanding discs", "sandpaper", "grinding wheel", "polishing pad", "wire brush", "file set"],
        ["coarse", "fine grit"],
    ),
    "Lighting": (
        ["work light", "headlamp", "flashlight", "LED strip", "lantern", "magnifier lamp"],
        ["rechargeable", "dimmable"],
    ),
    "Plumbing": (
        ["pipe wrench", "fittings", "valve", "hose", "pipe cutter", "plumber tape"],
        ["brass", "PVC"],
    ),
    "Storage": (
        ["tool box", "parts bin", "drawer cabinet", "tool bag", "shelf", "organizer"],
        ["stackable", "heavy-duty"],
    ),
}
_BRANDS = [
    "Acme",
    "Bolt&Co",
    "Corvid",
    "Dynatek",
    "Everline",
    "Fulcrum",
    "Gridiron",
    "Helix",
    "Ionis",
    "Juniper",
]


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 500
    n_items: int = 300
    n_categories: int = 8
    min_length: int = 5
    max_length: int = 20
    chain_prob: float = 0.5
    zipf: float = 1.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_categories <= len(_CATEGORIES):
            raise ConfigError(f"n_categories must be in 1..{len(_CATEGORIES)}")
        if self.n_items < 2 * self.n_categories or self.n_users < 1:
            raise ConfigError("need at least two items per category and one user")
        if not 2 <= self.min_length <= self.max_length:
            raise ConfigError("need 2 <= min_length <= max_length")
        if not 0.0 <= self.chain_prob <= 1.0:
            raise ConfigError("chain_prob must be in [0, 1]")


def synthetic_items(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[pl.DataFrame, np.ndarray]:
    """The catalogue and each item's category index."""
    names = list(_CATEGORIES)[: cfg.n_categories]
    category = np.arange(cfg.n_items) % cfg.n_categories
    rows = []
    for i, c in enumerate(category):
        nouns, adjectives = _CATEGORIES[names[c]]
        noun, adj = nouns[rng.integers(len(nouns))], adjectives[rng.integers(len(adjectives))]
        brand = _BRANDS[rng.integers(len(_BRANDS))]
        rows.append(
            {
                "item_id": f"I{i:06d}",
                "title": f"{brand} {adj} {noun} model {rng.integers(100, 999)}",
                "category": f"Industrial & Scientific > {names[c]}",
                "brand": brand,
                "description": f"A {adj} {noun} for {names[c].lower()} work.",
            }
        )
    return pl.DataFrame(rows), category


def synthetic_dataset(cfg: SyntheticConfig | None = None, **overrides: object) -> Dataset:
    """Generate a seeded dataset; keywords override ``SyntheticConfig`` fields."""
    if cfg is not None and overrides:
        raise ConfigError("pass either a SyntheticConfig or keyword overrides, not both")
    cfg = cfg or SyntheticConfig(**overrides)  # type: ignore[arg-type]
    rng = np.random.default_rng(cfg.seed)
    items, category = synthetic_items(cfg, rng)
    by_cat = [np.flatnonzero(category == c) for c in range(cfg.n_categories)]
    # Popularity within a category follows a Zipf law; each item has one fixed successor in its category.
    pop = [1.0 / np.arange(1, len(ix) + 1) ** cfg.zipf for ix in by_cat]
    pop = [p / p.sum() for p in pop]
    successor = np.empty(cfg.n_items, dtype=np.int64)
    for ix in by_cat:
        cycle = rng.permutation(ix)  # one random cycle through the category: no item succeeds itself
        successor[cycle] = np.roll(cycle, -1)
    start = datetime(2026, 1, 1)
    users, item_rows, stamps, events = [], [], [], []
    for u in range(cfg.n_users):
        interests = rng.choice(cfg.n_categories, size=1 + int(rng.random() < 0.4), replace=False)
        length = int(rng.integers(cfg.min_length, cfg.max_length + 1))
        t = start + timedelta(days=float(rng.uniform(0, 60)))
        current = -1
        for _ in range(length):
            if current >= 0 and rng.random() < cfg.chain_prob:
                current = int(successor[current])
            else:
                c = int(rng.choice(interests))
                current = int(rng.choice(by_cat[c], p=pop[c]))
            users.append(f"U{u:06d}")
            item_rows.append(current)
            stamps.append(t)
            events.append("purchase" if rng.random() < 0.2 else "view")
            t += timedelta(hours=float(rng.exponential(24.0)))
    interactions = pl.DataFrame(
        {
            "user_id": users,
            "item_id": items["item_id"].gather(item_rows),
            "timestamp": pl.Series(stamps, dtype=pl.Datetime("us")),
            "event": events,
        }
    )
    items = validate_items(items, "<synthetic items>")
    interactions = validate_interactions(interactions, "<synthetic interactions>", item_ids=items["item_id"])
    return Dataset(
        name="synthetic", items=items, interactions=interactions, source={"synthetic": asdict(cfg)}
    )


def synthetic_scale(cfg: SyntheticConfig | None = None, **overrides: object) -> Dataset:
    """The same shop as ``synthetic_dataset`` (categories, Zipf popularity, successor chains),
    generated a position at a time over all users at once: a million users in seconds.

    Draws differ from ``synthetic_dataset`` for the same seed; use this one for scale runs.
    """
    if cfg is not None and overrides:
        raise ConfigError("pass either a SyntheticConfig or keyword overrides, not both")
    cfg = cfg or SyntheticConfig(**overrides)  # type: ignore[arg-type]
    rng = np.random.default_rng(cfg.seed)
    items, category = synthetic_items(cfg, rng)
    n_cat, n_users = cfg.n_categories, cfg.n_users
    by_cat = [np.flatnonzero(category == c) for c in range(n_cat)]
    cum = [np.cumsum(1.0 / np.arange(1, len(ix) + 1) ** cfg.zipf) for ix in by_cat]
    successor = np.empty(cfg.n_items, dtype=np.int64)
    for ix in by_cat:
        cycle = rng.permutation(ix)
        successor[cycle] = np.roll(cycle, -1)
    # (U, 2) interests; a user with one interest repeats it.
    first = rng.integers(n_cat, size=n_users)
    second = np.where(
        rng.random(n_users) < 0.4, (first + rng.integers(1, max(n_cat, 2), size=n_users)) % n_cat, first
    )
    lengths = rng.integers(cfg.min_length, cfg.max_length + 1, size=n_users)
    seq = np.full((n_users, cfg.max_length), -1, dtype=np.int64)  # (U, L) item rows
    current = np.full(n_users, -1, dtype=np.int64)
    for pos in range(cfg.max_length):
        chain = (current >= 0) & (rng.random(n_users) < cfg.chain_prob)
        cat = np.where(rng.random(n_users) < 0.5, first, second)
        fresh = np.empty(n_users, dtype=np.int64)
        for c in range(n_cat):
            who = np.flatnonzero(cat == c)
            draw = np.searchsorted(cum[c], rng.random(len(who)) * cum[c][-1])
            fresh[who] = by_cat[c][np.minimum(draw, len(by_cat[c]) - 1)]
        current = np.where(chain, successor[np.maximum(current, 0)], fresh)
        seq[:, pos] = current
    alive = np.arange(cfg.max_length)[None, :] < lengths[:, None]  # (U, L)
    user_rows = np.repeat(np.arange(n_users), lengths)
    start = np.datetime64("2026-01-01T00:00:00", "us")
    offsets = rng.uniform(0, 60 * 86400, size=n_users)[user_rows] + np.concatenate(
        [np.cumsum(rng.exponential(86400.0, size=n)) for n in lengths]
    )
    interactions = pl.DataFrame(
        {
            "user_id": pl.Series(np.char.add("U", np.char.zfill(np.arange(n_users).astype(str), 7))).gather(
                user_rows
            ),
            "item_id": items["item_id"].gather(seq[alive]),
            "timestamp": start + (offsets * 1e6).astype("timedelta64[us]"),
            "event": np.where(rng.random(len(user_rows)) < 0.2, "purchase", "view"),
        }
    )
    items = validate_items(items, "<synthetic items>")
    interactions = validate_interactions(interactions, "<synthetic interactions>", item_ids=items["item_id"])
    return Dataset(
        name="synthetic-scale",
        items=items,
        interactions=interactions,
        source={"synthetic_scale": asdict(cfg)},
    )
