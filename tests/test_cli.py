"""The ``recsys`` command end to end on small files: table, JSON shape, exit codes, clear errors."""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys.cli import main
from recsys.data import synthetic_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    ds = synthetic_dataset(n_users=120, n_items=60, seed=1)
    ds.items.rename({"item_id": "sku"}).write_csv(folder / "items.csv")
    inter = ds.interactions.drop("seq").rename({"user_id": "customer", "item_id": "sku"})
    inter.with_columns(pl.col("timestamp").dt.epoch("s")).write_parquet(folder / "events.parquet")
    return folder


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_own_files(files, tmp_path, capsys):
    output = tmp_path / "results.json"
    code, out, _ = run(
        capsys,
        "evaluate",
        "--items",
        str(files / "items.csv"),
        "--interactions",
        str(files / "events.parquet"),
        "--item-columns",
        "item_id=sku",
        "--interaction-columns",
        "user_id=customer,item_id=sku",
        "--models",
        "popularity,covisit,als",
        "--set",
        "als.factors=16",
        "--set",
        "als.iterations=5",
        "--output",
        str(output),
        "--no-progress",
        "--slices",
    )
    assert code == 0
    assert "recall@10" in out and "covisit" in out and "by history_length" in out
    report = json.loads(output.read_text())
    assert report["protocol"]["kind"] == "global-temporal"
    assert set(report["results"]) == {"popularity", "covisit", "als"}
    for metrics in report["results"].values():
        assert {"recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "coverage@10"} <= set(metrics)
    assert report["models"]["als"]["config"]["factors"] == 16


def test_toml_config(files, tmp_path, capsys):
    cfg = tmp_path / "eval.toml"
    cfg.write_text(
        '[evaluate]\nmodels = ["covisit"]\nsplit = "valid"\nsplit_kind = "leave-one-out"\n'
        "[models.covisit]\nn_recent = 2\n"
    )
    output = tmp_path / "r.json"
    code, _, _ = run(
        capsys,
        "evaluate",
        "--items",
        str(files / "items.csv"),
        "--item-columns",
        "item_id=sku",
        "--interactions",
        str(files / "events.parquet"),
        "--interaction-columns",
        "user_id=customer,item_id=sku",
        "--config",
        str(cfg),
        "--output",
        str(output),
        "--no-progress",
    )
    assert code == 0
    report = json.loads(output.read_text())
    assert report["protocol"]["split"] == "valid" and report["protocol"]["kind"] == "leave-one-out"
    assert report["models"]["covisit"]["config"]["n_recent"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--models", "popularity"], "no data"),
        (["evaluate", "--dataset", "amazon-scientific"], "needs --data-dir"),
        (
            ["evaluate", "--items", "i.csv", "--interactions", "e.csv", "--models", "nosuchmodel"],
            "unknown model",
        ),
        (["evaluate", "--items", "i.csv", "--interactions", "e.csv", "--set", "als"], "section.key=value"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_data_error_exit_1_names_the_file(files, capsys):
    code, _, err = run(
        capsys,
        "validate",
        "--items",
        str(files / "items.csv"),
        "--interactions",
        str(files / "events.parquet"),
    )
    assert code == 1
    assert "items.csv" in err and "item_id" in err and "Traceback" not in err


def test_validate_summary(files, capsys):
    code, out, _ = run(
        capsys,
        "validate",
        "--items",
        str(files / "items.csv"),
        "--item-columns",
        "item_id=sku",
        "--interactions",
        str(files / "events.parquet"),
        "--interaction-columns",
        "user_id=customer,item_id=sku",
    )
    assert code == 0 and "interactions" in out and "fingerprint" in out


def test_argparse_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--split", "train"])
    assert info.value.code == 2


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shop")
    ds = synthetic_dataset(n_users=400, n_items=150, seed=3)
    ds.items.write_csv(folder / "items.csv")
    ds.interactions.drop("seq").write_parquet(folder / "events.parquet")
    return folder


@pytest.mark.slow
def test_train_writes_an_artifact_that_evaluate_ranks(
    shop_files, tmp_path, capsys, caplog, monkeypatch, embedding_cache
):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(embedding_cache))
    data = ["--items", str(shop_files / "items.csv"), "--interactions", str(shop_files / "events.parquet")]
    artifact = tmp_path / "artifact"
    code, out, err = run(
        capsys,
        "train",
        *data,
        "--out",
        str(artifact),
        "--set",
        "encoder.max_length=24",
        "--set",
        "encoder.head_epochs=2",
        "--set",
        "encoder.eval_users=50",
        "--set",
        "sasrec.epochs=5",
        "--set",
        "sasrec.dim=32",
        "--set",
        "ranker.max_rounds=40",
        "--set",
        "ranker.min_data_in_leaf=5",
        "--evaluate",
        "--output",
        str(tmp_path / "report.json"),
        "--no-progress",
    )
    assert code == 0, err
    assert "candidate recall" in out and "hybrid" in out and "stage times" in out
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert {"encoder", "sasrec"} <= set(manifest["config"]["scorers"])
    assert (artifact / "models" / "sasrec.pt").exists()
    assert (artifact / "encoders" / "encoder" / "encoder.json").exists()
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["models"]) == {"labels", "serve", "test"}
    # one SASRec per label fold (here one: the shop has timestamps, so a temporal split)
    assert set(report["models"]["labels"]["sasrec"]) == {"fold 0"}
    assert (tmp_path / "artifact.work" / "labels" / "sasrec_fold0.pt").exists()
    assert set(report["test"]) >= {"hybrid", "als", "ease", "sasrec", "encoder"}
    code, out, err = run(
        capsys,
        "evaluate",
        *data,
        "--models",
        "als,hybrid",
        "--set",
        f"hybrid.artifact={artifact}",
        "--no-progress",
    )
    assert code == 0, err
    assert "hybrid" in out
    assert "keep the weights the artifact was trained with" in caplog.text  # the encoder and SASRec


def test_train_refuses_bad_config_before_work(shop_files, tmp_path, capsys):
    data = ["--items", str(shop_files / "items.csv"), "--interactions", str(shop_files / "events.parquet")]
    code, _, err = run(
        capsys, "train", *data, "--out", str(tmp_path / "a"), "--set", "recommender.candidates.nope=5"
    )
    assert code == 2 and "nope" in err
    code, _, err = run(capsys, "train", *data, "--out", str(tmp_path / "a"), "--set", "ranker.num_leavs=5")
    assert code == 2 and "num_leavs" in err
    assert not (tmp_path / "a").exists()
