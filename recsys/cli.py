"""The ``recsys`` command: one entry point, sub-commands, TOML configs with command-line overrides.

Exit codes: 0 success, 1 bad data or artifacts, 2 usage or configuration errors.
The CLI is the one place that reaches the ``pipelines`` package, and only when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, ConfigError, DataError

log = logging.getLogger("recsys")


def _mapping(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out = {}
    for pair in text.split(","):
        canon, sep, theirs = pair.partition("=")
        if not sep or not canon.strip() or not theirs.strip():
            raise ConfigError(f"column mapping {pair!r} must look like canonical=their_column")
        out[canon.strip()] = theirs.strip()
    return out


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (a named dataset, or your own files)")
    g.add_argument("--dataset", choices=["amazon-scientific"], help="a dataset in its published format")
    g.add_argument("--data-dir", type=Path, help="folder of the named dataset")
    g.add_argument("--items", type=Path, help="items file (.csv, .tsv, .parquet, .jsonl)")
    g.add_argument("--interactions", type=Path, help="interactions file (.csv, .tsv, .parquet, .jsonl)")
    g.add_argument(
        "--item-columns",
        metavar="MAP",
        help="rename item columns, canonical=yours, comma-separated (e.g. item_id=sku,title=name)",
    )
    g.add_argument(
        "--interaction-columns",
        metavar="MAP",
        help="rename interaction columns (e.g. user_id=customer,item_id=sku,timestamp=ts)",
    )
    g.add_argument(
        "--unknown-items",
        choices=["error", "drop"],
        default="error",
        help="interactions naming items missing from the items file: fail (default) or drop",
    )
    g.add_argument(
        "--timestamp-unit",
        choices=["s", "ms", "us"],
        default="s",
        help="unit of numeric epoch timestamps (default: s)",
    )


def load_dataset(args: argparse.Namespace) -> Any:
    from recsys.data import DATASETS, load_files

    if args.dataset:
        if args.items or args.interactions:
            raise ConfigError("give either --dataset or --items/--interactions, not both")
        if args.data_dir is None:
            raise ConfigError(f"--dataset {args.dataset} needs --data-dir (the folder holding its files)")
        return DATASETS[args.dataset](args.data_dir)
    if not (args.items and args.interactions):
        raise ConfigError("no data: give --dataset NAME --data-dir DIR, or --items FILE --interactions FILE")
    return load_files(
        args.items,
        args.interactions,
        item_columns=_mapping(args.item_columns),
        interaction_columns=_mapping(args.interaction_columns),
        unknown_items=args.unknown_items,
        timestamp_unit=args.timestamp_unit,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args)
    for key, value in dataset.summary().items():
        print(f"{key:>20}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="An LLM-enhanced recommendation engine: "
        "text encoder + collaborative filtering, evaluated by full ranking.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from recsys.cli_ab import add_ab_parser
    from recsys.cli_ops import add_ops_parsers
    from recsys.cli_train import add_train_parsers

    add_train_parsers(sub)
    add_ops_parsers(sub)
    add_ab_parser(sub)
    va = sub.add_parser("validate", help="check data files against the canonical schema and summarise them")
    add_data_arguments(va)
    va.set_defaults(func=cmd_validate)
    return parser


def _serving_threads(argv: Sequence[str]) -> None:
    """``recsys serve``: polars' thread pool as small as the model's threads. Polars sizes its pool
    when it is first imported, so this runs before the parser imports it. A served request is a
    frame of a few hundred rows, where a pool of more threads costs more in hand-overs than it
    gives (the feature frame took twice as long with 2 threads as with 1 on 2 cores)."""
    import os

    if list(argv[:1]) == ["serve"]:
        os.environ.setdefault("POLARS_MAX_THREADS", os.environ.get("RECSYS_MODEL_THREADS", "1"))


def main(argv: Sequence[str] | None = None) -> int:
    _serving_threads(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (DataError, ArtifactError) as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
