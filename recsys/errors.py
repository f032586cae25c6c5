"""Every error the library raises on purpose lives here.

Messages say what was wrong, where, and what to do about it. A user's bad file never surfaces as a
bare traceback: readers catch what polars, pyarrow or the OS raise and re-raise a ``DataError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class RecsysError(Exception):
    """Base class of the errors this package raises deliberately."""


class DataError(RecsysError, ValueError):
    """A data file or frame does not satisfy the canonical schema.

    Carries the file, the column and a few offending rows so the message can point at the problem.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        column: str | None = None,
        rows: Sequence[object] | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.column = column
        self.rows = list(rows)[:5] if rows is not None else []
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}")
        if column is not None:
            parts.append(f"column {column!r}")
        where = ": ".join(parts)
        text = f"{where}: {message}" if where else message
        if self.rows:
            shown = "\n".join(f"    {row}" for row in self.rows)
            text += f"\n  first offending rows:\n{shown}"
        super().__init__(text)
        self.message = message


class ConfigError(RecsysError, ValueError):
    """A configuration (TOML file, keyword arguments, CLI override) is invalid."""


class NotFittedError(RecsysError, RuntimeError):
    """A model was used before ``fit`` was called."""


class ArtifactError(RecsysError, RuntimeError):
    """A cached or saved artifact is missing, partial, or does not match what it is used with."""
