"""`recsys bench train`: training throughput on a tiny split."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recsys.bench.train import bench_train
from recsys.config import Params, SplitParams, TrainParams
from recsys.etl.split import temporal_split
from recsys.training.tensors import split_from_frames
from tests.conftest import PROJECT_ROOT, tiny_ratings


def test_bench_train_counts_target_events(tmp_path):
    parts = temporal_split(tiny_ratings(), SplitParams())
    data = split_from_frames(parts["train"], parts["val"], parts["test"])
    params = Params(train=TrainParams(device="cpu"))
    result = bench_train(data, ["bias"], params, epochs=2)["bias"]
    assert result["samples_per_epoch"] == len(data.train)
    assert result["samples_per_s"] == pytest.approx(len(data.train) / result["epoch_s"])
    assert result["L"] == 0


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
