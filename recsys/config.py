"""Typed component configs: build from a config object or from keywords, never both.

Also reads TOML files and ``section.key=value`` overrides given on the command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import tomllib

from recsys.errors import ConfigError

C = TypeVar("C")


def make_config(cls: type[C], config: C | None, options: Mapping[str, Any]) -> C:
    """``config`` as given, or ``cls(**options)`` after refusing unknown or ill-typed keys."""
    if config is not None and options:
        raise ConfigError(f"pass either a {cls.__name__} or keyword options, not both")
    if config is not None:
        if not isinstance(config, cls):
            raise ConfigError(f"expected a {cls.__name__}, got {type(config).__name__}")
        return config
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option(s) {unknown}; valid options: {sorted(fields)}")
    hints = get_type_hints(cls)
    coerced = {k: _coerce(cls.__name__, k, v, hints.get(k)) for k, v in options.items()}
    try:
        return cls(**coerced)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def _coerce(owner: str, key: str, value: Any, hint: Any) -> Any:
    """Accept an int where a float is expected; refuse a value of the wrong kind with a clear message."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    simple = {int: (int,), float: (float,), bool: (bool,), str: (str,)}
    if hint in simple and (not isinstance(value, simple[hint]) or (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{owner}.{key} must be {hint.__name__}, got {value!r}")
    return value


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"als.factors=64"`` → (["als", "factors"], 64); the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [part.strip() for part in key.split(".")], value


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``config`` with ``section.key=value`` overrides applied."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node[part] = child = dict(child)
            node = child
        node[path[-1]] = value
    return out
