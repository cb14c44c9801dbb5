"""The train and evaluate stages end to end through their command lines on a tiny split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recsys.config import SplitParams
from recsys.etl.split import run_split
from tests.conftest import PROJECT_ROOT, dvc, git, tiny_ratings

CONTRACT_KEYS = {"rmse", "mae", "hr@10", "ndcg@10", "mrr@10", "n_events", "warm", "cold"}


def stage(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    (root / "ratings.csv").write_text(tiny_ratings().to_csv(index=False))
    run_split(root / "ratings.csv", root / "split", SplitParams())
    return root / "split"


@pytest.mark.slow
def test_train_then_evaluate_write_the_contract_files(split_dir: Path, tmp_path: Path):
    params = str(PROJECT_ROOT / "params.yaml")
    ckpt = tmp_path / "models" / "bias.pt"
    trained = stage("recsys.training.train", "--model", "bias", "--split", str(split_dir), "--out",
                    str(ckpt), "--params", params)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "train bias: 1 epoch(s)" in trained.stdout

    metrics, preds = tmp_path / "eval" / "bias.json", tmp_path / "pred" / "bias.parquet"
    evaluated = stage("recsys.training.evaluate", "--model", "bias", "--checkpoint", str(ckpt),
                      "--split", str(split_dir), "--metrics", str(metrics),
                      "--predictions", str(preds), "--params", params)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr

    report = json.loads(metrics.read_text())
    test = pd.read_parquet(split_dir / "test.parquet")
    train_users = set(pd.read_parquet(split_dir / "train.parquet")["user_id"])
    n_items = len(pd.read_parquet(split_dir / "items.parquet"))
    for part in ("val", "test"):
        assert set(report[part]) >= CONTRACT_KEYS
        assert (
            report[part]["warm"]["n_events"] + report[part]["cold"]["n_events"]
            == (report[part]["n_events"])
        )
    assert report["test"]["n_events"] == len(test)
    assert report["epochs"] == {"ranking": 1, "rating": 1}  # one pass: one epoch for both
    assert report["test"]["warm"]["n_events"] == int(test["user_id"].isin(train_users).sum())
    assert set(report["baselines"]) == {"mean", "bias", "markov"}
    # the stage's model is the bias baseline itself: its row must equal the sanity row
    assert report["test"]["rmse"] == pytest.approx(report["baselines"]["bias"]["test"]["rmse"])
    assert report["baselines"]["mean"]["test"]["rmse"] > 0

    predictions = pd.read_parquet(preds)
    assert list(predictions.columns) == [
        "user_id", "item_id", "timestamp", "rating", "pred_rating", "rank"
    ]  # fmt: skip
    assert len(predictions) == len(test)
    assert predictions[["user_id", "item_id", "timestamp"]].equals(
        test[["user_id", "item_id", "timestamp"]]
    )
    assert predictions["rank"].between(1, n_items).all()
    unknown = ~predictions["item_id"].isin(pd.read_parquet(split_dir / "items.parquet")["raw_id"])
    assert (predictions.loc[unknown, "rank"] == n_items).all()
    assert report["test"]["n_unknown_items"] == int(unknown.sum())


def test_evaluate_names_a_missing_checkpoint_in_one_line(split_dir: Path, tmp_path: Path):
    proc = stage("recsys.training.evaluate", "--model", "ncf",
                 "--checkpoint", str(tmp_path / "no.pt"), "--split", str(split_dir),
                 "--metrics", str(tmp_path / "m.json"),
                 "--predictions", str(tmp_path / "p.parquet"),
                 "--params", str(PROJECT_ROOT / "params.yaml"))  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"evaluate ncf: error: {tmp_path / 'no.pt'}: no checkpoint; run `dvc repro train@<model>` "
        "first"
    ]


@pytest.mark.slow
def test_dvc_repro_trains_and_evaluates_the_bias_model(dvc_repo: Path):
    from recsys.data.canonical import write_canonical

    ratings = tiny_ratings(n_users=40, per_user=10)
    movies = pd.DataFrame({"item_id": range(1, 41), "title": "Film (1990)", "genres": "Drama"})
    write_canonical(ratings, movies, dvc_repo / "data" / "tiny")
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["data"]["dataset"] = "tiny"
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the test copy trains the bias baseline in place of the real models
    pipeline = (dvc_repo / "dvc.yaml").read_text()
    pipeline = pipeline.replace("foreach: [ncf, ss4rec]", "foreach: [bias]")
    pipeline = pipeline.replace("recsys/models/${item}.py", "recsys/models/baselines.py")
    (dvc_repo / "dvc.yaml").write_text(pipeline)
    assert dvc(dvc_repo, "add", "-q", "data").returncode == 0
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "tiny dataset, bias model")

    repro = dvc(dvc_repo, "repro", "evaluate@bias")
    assert repro.returncode == 0, repro.stderr + repro.stdout
    report = json.loads((dvc_repo / "metrics/eval/bias.json").read_text())
    assert report["test"]["n_events"] == round(len(ratings) * 0.1)
    assert (dvc_repo / "dvclive/bias/metrics.json").is_file()
    shown = dvc(dvc_repo, "metrics", "show", "--json")
    assert "metrics/scores/bias.json" in shown.stdout  # the headline; the full report is an out
    again = dvc(dvc_repo, "repro", "evaluate@bias")
    assert "didn't change, skipping" in again.stdout
