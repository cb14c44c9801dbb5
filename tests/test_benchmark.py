"""Leave-one-out split by hand; throughput and LOO runs on a tiny dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from recsys.bench.train import bench_train
from recsys.config import Params, SplitParams, TrainParams
from recsys.etl.split import temporal_split
from recsys.training.leave_one_out import loo_split, run_loo
from recsys.training.tensors import split_from_frames
from tests.conftest import PROJECT_ROOT, tiny_ratings


def test_loo_takes_last_as_test_and_second_to_last_as_val_ties_by_item():
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [5, 3, 4, 9, 7, 8],
            "rating": [1.0, 2.0, 3.0, 4.0, 5.0, 5.0],
            "timestamp": [10, 30, 30, 20, 1, 2],
        }
    )
    data = loo_split(ratings)
    # user 1 in (time, item) order: 5@10, 9@20, 3@30, 4@30 -> test 4, val 3
    assert data.test[["user_id", "item_id"]].values.tolist() == [[1, 4]]
    assert data.val[["user_id", "item_id"]].values.tolist() == [[1, 3]]
    # user 2 has only 2 events: all train
    assert sorted(data.train["item_id"]) == [5, 7, 8, 9]


def test_bench_train_counts_target_events(tmp_path):
    parts = temporal_split(tiny_ratings(), SplitParams())
    data = split_from_frames(parts["train"], parts["val"], parts["test"])
    params = Params(train=TrainParams(device="cpu"))
    result = bench_train(data, ["bias"], params, epochs=2)["bias"]
    assert result["samples_per_epoch"] == len(data.train)
    assert result["samples_per_s"] == pytest.approx(len(data.train) / result["epoch_s"])
    assert result["L"] == 0


def test_loo_benchmark_reports_ranking_metrics_per_model():
    params = Params(train=TrainParams(device="cpu"))
    result = run_loo(tiny_ratings(), ["mean", "bias"], params)
    assert set(result) == {"mean", "bias"}
    for row in result.values():
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= 1
        assert row["n_users"] == 30  # every tiny user has 12 events


def test_bench_help_defines_a_sample():
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "bench", "train", "--help"],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "A sample is one training target event" in " ".join(proc.stdout.split())


@pytest.mark.slow
def test_bench_cli_prints_json(tmp_path):
    from recsys.etl.split import run_split

    (tmp_path / "ratings.csv").write_text(tiny_ratings().to_csv(index=False))
    run_split(tmp_path / "ratings.csv", tmp_path / "split", SplitParams())
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "bench", "train", "--models", "bias", "--json",
         "--split", str(tmp_path / "split")],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["bias"]) >= {"samples_per_s", "epoch_s", "L", "batch_size"}
