"""Hypothesis fuzzing of the readers: malformed CSV, JSON lines and Parquet give a DataError (or a
valid table), never another exception; a command on a bad file leaves no output behind."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data import read_interactions, read_items
from recsys.errors import DataError

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
NAMES = st.sampled_from(
    ["item_id", "user_id", "title", "category", "timestamp", "event", "weight", "position", "x", ""]
)
CELLS = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["", "null", "NaN", "2026-01-01", "2026-13-45T99:99", '"', '""', "\n", "\x00", "é", "1e309"]
    ),
)


def _check(path) -> None:
    """Each reader either refuses with a DataError or returns a table that meets the schema."""
    try:
        items = read_items(path)
    except DataError:
        items = None
    else:
        assert items.height > 0 and items["item_id"].null_count() == 0
        assert items["item_id"].dtype == pl.String and items["item_id"].n_unique() == items.height
    try:
        events = read_interactions(path, items=items)
    except DataError:
        return
    assert events.height > 0
    assert events["user_id"].null_count() == 0 and events["item_id"].null_count() == 0
    if items is not None:
        assert events["item_id"].is_in(items["item_id"].implode()).all()


@st.composite
def csv_text(draw) -> bytes:
    header = draw(st.lists(NAMES, min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=6), max_size=8))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    text = "\n".join(lines)
    if draw(st.booleans()):
        text = text.replace('"', draw(st.sampled_from(['"', '""', "'"])))
    data = text.encode()
    if draw(st.booleans()):  # damage: cut somewhere, or bytes that are not UTF-8
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=6))
    return data


@given(data=csv_text())
@FUZZ
def test_malformed_csv_is_a_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("csv") / "file.csv"
    path.write_bytes(data)
    _check(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def jsonl_text(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["object", "garbage", "other"]))
        if kind == "object":
            obj = draw(st.dictionaries(NAMES, JSON_VALUES, max_size=5))
            lines.append(json.dumps(obj))
        elif kind == "garbage":
            lines.append(draw(st.text(max_size=20)))
        else:
            lines.append(json.dumps(draw(JSON_VALUES)))
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@given(data=jsonl_text())
@FUZZ
def test_malformed_json_lines_are_a_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("jsonl") / "file.jsonl"
    path.write_bytes(data)
    _check(path)


COLUMN = st.sampled_from(
    [
        pl.Series([None, None], dtype=pl.String),
        pl.Series(["a", "b"]),
        pl.Series(["a", "a"]),
        pl.Series([1, 2]),
        pl.Series([1.5, float("nan")]),
        pl.Series([True, False]),
        pl.Series([[1], [2, 3]]),
        pl.Series([{"a": 1}, {"a": 2}]),
        pl.Series([b"\x00", b"\xff"]),
        pl.Series(["2026-01-01", "nope"]),
        pl.Series([-(2**62), 2**62]),
    ]
)


@st.composite
def parquet_bytes(draw) -> bytes:
    names = draw(st.lists(NAMES.filter(bool), min_size=1, max_size=4, unique=True))
    frame = pl.DataFrame({n: draw(COLUMN) for n in names})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        pos = draw(st.integers(0, len(data) - 1))
        data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1 :]
    return data


@given(data=parquet_bytes())
@FUZZ
def test_malformed_parquet_is_a_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pq") / "file.parquet"
    path.write_bytes(data)
    _check(path)


def test_training_on_a_bad_file_leaves_no_artifact(tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,Drill\nb,Saw\n")
    events = tmp_path / "events.csv"
    events.write_text('user_id,item_id\nu1,a\nu2,"unterminated\n')
    out = tmp_path / "model"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "train",
            "--items",
            str(items),
            "--interactions",
            str(events),
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stderr
    assert "events.csv" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists() and not list(tmp_path.glob("model*"))
