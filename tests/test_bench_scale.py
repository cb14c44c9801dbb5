"""`recsys bench scale` at ml-100k's size: the JSON contract and figures that add up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recsys.config import apply_preset
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def fast_ncf_params(tmp_path: Path) -> Path:
    """params.yaml with the smoke preset's small NCF and the default SS4Rec."""
    params, preset = tmp_path / "params.yaml", tmp_path / "configs/fast_ncf.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params)
    smoke = yaml.safe_load((PROJECT_ROOT / "configs/smoke.yaml").read_text())
    preset.parent.mkdir()
    preset.write_text(yaml.safe_dump({"ncf": smoke["ncf"]}))
    apply_preset("fast_ncf", params, preset.parent)
    return params


def test_bench_scale_runs_etl_and_one_epoch_and_projects_a_cut_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    cmd = [
        sys.executable, "-m", "recsys.cli", "bench", "scale", "--sizes", "ml-100k", "--json",
        "--params", str(fast_ncf_params(tmp_path)), "--models", "ncf", "ss4rec",
        "--max-epoch-s", "5",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["ml-100k"]
    assert (result["rows"], result["users"], result["items"]) == (100_000, 943, 1_682)
    assert result["test_rows"] == 10_000 and result["quarantined"] == 0
    assert 50 < result["etl_peak_rss_mb"] <= result["peak_rss_mb"] < 6_000

    # the training targets, worked out from the generated ratings: the oldest 80 % train
    csv = next((tmp_path / "cache/synth").glob("rows_100000_*/ratings.csv"))
    train = pd.read_csv(csv).iloc[:80_000]
    ncf, ss4rec = result["train"]["ncf"], result["train"]["ss4rec"]
    assert ncf["epoch_samples"] == 80_000  # one rating per target
    # every training event is a target once (a user's first ones: of the empty state)
    assert ss4rec["epoch_samples"] == len(train) == 80_000
    parts = (
        result["split_s"]
        + result["batches_s"]
        + sum(t["prep_s"] + t["trained_s"] for t in result["train"].values())
    )
    assert parts <= result["total_s"] + 0.05

    for t in (ncf, ss4rec):  # complete epochs are measured, cut ones projected
        if t["epoch_complete"]:
            assert t["samples"] == t["epoch_samples"] and t["epoch_s"] == t["trained_s"]
        else:
            assert 0 < t["samples"] < t["epoch_samples"] and t["trained_s"] >= 5
            projected = t["epoch_samples"] / t["samples_per_s"]
            assert t["epoch_s"] == pytest.approx(projected, rel=0.01)
            assert t["epoch_s"] > t["trained_s"]
    # a small NCF's 80k ratings take about a second here, the default SS4Rec's about 20 s
    assert ncf["epoch_complete"] and not ss4rec["epoch_complete"]


def test_bench_scale_unknown_model_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "recsys.cli", "bench", "scale", "--models", "nosuch"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 1
    assert proc.stderr.startswith("recsys bench: error: unknown model 'nosuch'")
    assert proc.stderr.count("\n") == 1


def test_sizes_are_the_releases_fetch_knows():
    from recsys.bench.scale import SIZES
    from recsys.config import DATASETS

    assert tuple(SIZES) == DATASETS
